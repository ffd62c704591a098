//! The applier's progress (which outbox items are applied, the refusals
//! kept for the sessions that proposed them), the per-user locks, and the
//! per-mailbox count of additions its backend sessions share.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// A backend refusal of one outbox item, kept for the session that proposed
/// it.
pub type Failure = String;

/// The applier's progress: which outbox items are applied, and the
/// backend refusals kept for the sessions that proposed them.
#[derive(Debug)]
pub struct Progress {
    state: Mutex<ProgressState>,
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct ProgressState {
    /// Every item up to here is applied.
    cursor: u64,
    /// Items above the cursor applied already (users are applied in
    /// parallel, so items finish out of order).
    done: BTreeSet<u64>,
    failures: HashMap<u64, Failure>,
    /// The last item the dispatcher read from the outbox.
    read_to: u64,
    /// Per user, items handed to its worker and not yet finished.
    in_hand: HashMap<String, u64>,
}

impl Progress {
    /// The progress of an applier whose items up to `cursor`, and those in
    /// `done` above it, are applied.
    pub(super) fn new(cursor: u64, done: BTreeSet<u64>) -> Progress {
        Progress {
            state: Mutex::new(ProgressState {
                cursor,
                done,
                read_to: cursor,
                ..ProgressState::default()
            }),
            changed: watch::channel(0).0,
        }
    }

    /// Every outbox item up to this one is applied.
    pub fn cursor(&self) -> u64 {
        self.state.lock().map(|s| s.cursor).unwrap_or(0)
    }

    /// The dispatcher read item `seq`, of `user`, and handed it on.
    pub(super) fn dispatched(&self, seq: u64, user: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.read_to = s.read_to.max(seq);
            *s.in_hand.entry(user.to_string()).or_default() += 1;
        }
    }

    /// Every outbox item up to `seq` has been handed on.
    pub(super) fn read_up_to(&self, seq: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.read_to = s.read_to.max(seq);
        }
    }

    /// The last outbox item the dispatcher has handed on.
    pub fn read_to(&self) -> u64 {
        self.state.lock().map(|s| s.read_to).unwrap_or(0)
    }

    /// Whether none of `user`'s items is being applied or waits for it.
    pub fn idle(&self, user: &str) -> bool {
        self.state
            .lock()
            .map(|s| !s.in_hand.contains_key(user))
            .unwrap_or(false)
    }

    pub(super) fn is_done(&self, seq: u64) -> bool {
        self.state
            .lock()
            .map(|s| seq <= s.cursor || s.done.contains(&seq))
            .unwrap_or(false)
    }

    pub(super) fn finish(&self, seq: u64, user: &str, failure: Option<Failure>) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(n) = s.in_hand.get_mut(user) {
                *n -= 1;
                if *n == 0 {
                    s.in_hand.remove(user);
                }
            }
            if let Some(f) = failure {
                if s.failures.len() > 10_000 {
                    s.failures.clear();
                }
                s.failures.insert(seq, f);
            }
            if seq > s.cursor {
                s.done.insert(seq);
            }
            loop {
                let next = s.cursor + 1;
                if !s.done.remove(&next) {
                    break;
                }
                s.cursor = next;
            }
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Waits until item `seq` is applied to the backend (at most
    /// `timeout`); `Err` with the backend's words if it refused the item,
    /// or if the wait timed out.
    pub async fn wait(&self, seq: u64, timeout: Duration) -> Result<(), Failure> {
        let mut rx = self.changed.subscribe();
        let reached = tokio::time::timeout(timeout, async {
            while !self.is_done(seq) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        if reached.is_err() || !self.is_done(seq) {
            return Err("the local mail backend has not applied it yet".to_string());
        }
        match self.state.lock() {
            Ok(mut s) => s.failures.remove(&seq).map_or(Ok(()), Err),
            Err(_) => Ok(()),
        }
    }
}

/// Per (user, mailbox), how many times messages were added to it through
/// any of this node's apply sessions. A session that selected the mailbox
/// earlier does not see messages another session added until it syncs
/// (Dovecot silently skips UIDs outside a session's view in UID MOVE, COPY
/// and STORE), so it sends NOOP first when the count moved.
#[derive(Debug, Default)]
pub(super) struct Additions(Mutex<HashMap<(String, String), u64>>);

impl Additions {
    pub(super) fn get(&self, user: &str, mailbox: &str) -> u64 {
        self.0.lock().map_or(0, |m| {
            m.get(&(user.to_string(), mailbox.to_string()))
                .copied()
                .unwrap_or(0)
        })
    }

    pub(super) fn bump(&self, user: &str, mailbox: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry((user.to_string(), mailbox.to_string()))
                .or_default() += 1;
        }
    }
}

/// Per-user locks: a user's worker holds its lock while it applies an
/// item, and an adoption scan of that user's mailboxes takes it too.
#[derive(Debug, Default)]
pub struct UserLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl UserLocks {
    /// The lock of `user`.
    pub fn of(&self, user: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut m) = self.0.lock() else {
            return Arc::new(tokio::sync::Mutex::new(()));
        };
        if m.len() > 10_000 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(user.to_string()).or_default().clone()
    }
}
