//! The applier: carries the committed outbox of the canonical state machine
//! to this node's backend, in order, through the backend's own IMAP with the
//! admin acting as each user, and keeps the durable canonical <-> local UID
//! maps that the sessions rewrite with.
//!
//! Ordering invariants:
//! - Each user's items are applied in sequence order (items of different
//!   mailboxes in parallel lanes). The map changes of an item and its
//!   removal from the outbox are committed together, without an fsync of
//!   their own: redb's next durable commit carries them (the log store's
//!   syncer's, or a barrier below). After a crash, every item up to the
//!   durable high-water mark is *in doubt*: it is looked for on the backend
//!   (the unmapped messages, in order, byte for byte) before it is applied.
//! - Looking works only while the evidence is still there, so an item that
//!   destroys evidence (EXPUNGE, MOVE, DELETE, RENAME, the expunge of
//!   adopted originals) is preceded by a durable commit, a *barrier*: the
//!   items before it are never in doubt once it has run, and what a crash
//!   leaves in doubt is at most one such item per mailbox followed by items
//!   that only add messages or change flags.
//! - Local UIDs are learned only from the backend's APPENDUID / COPYUID
//!   (RFC 4315), and pushed into strictly increasing maps: canonical order
//!   and local order agree, so sequence numbers agree across nodes.
//! - A backend that cannot be reached stops the applier on this node only
//!   (it retries, its lag grows); a backend that refuses an item is recorded
//!   as a failure of that item and the applier goes on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tandem_parser::encode::{self, AppendItem, MailboxVerb};
use tandem_parser::response::Response;
use tandem_parser::seqset::Ranges;
use tandem_parser::uidmap::{map_ranges, RunMap, UidMap};
use tokio::sync::{mpsc, watch, Notify};

use crate::backend::{BackendConn, BackendError, Reply, Status};
use crate::canon::{FlagMode, Work, COUNTERS, OUTBOX};
use crate::config::BackendConfig;
use crate::secret::Secret;

/// `user \0 canonical UIDVALIDITY` -> postcard [`StoredMap`].
const MAPS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("applier_maps");

fn map_key(user: &str, uidvalidity: u32) -> String {
    format!("{user}\0{uidvalidity}")
}

#[derive(Serialize, Deserialize)]
struct StoredMap {
    local_uidvalidity: u32,
    runs: Vec<(u32, u32, u32)>,
}

/// The UID map of one canonical mailbox on this node.
#[derive(Debug, Clone, Default)]
pub struct MailboxMap {
    /// The backend's UIDVALIDITY for it.
    pub local_uidvalidity: u32,
    /// Canonical -> local.
    pub to_local: RunMap,
    /// Local -> canonical.
    pub to_canon: RunMap,
}

/// Every UID map of this node, cached in memory over the durable table.
#[derive(Debug)]
pub struct Maps {
    db: Arc<Database>,
    cache: Mutex<HashMap<(String, u32), Arc<MailboxMap>>>,
    version: watch::Sender<u64>,
}

impl Maps {
    fn new(db: Arc<Database>) -> Maps {
        Maps {
            db,
            cache: Mutex::new(HashMap::new()),
            version: watch::channel(0).0,
        }
    }

    /// The map of `user`'s mailbox with canonical `uidvalidity`, if this
    /// node's backend holds it.
    pub fn get(&self, user: &str, uidvalidity: u32) -> Option<Arc<MailboxMap>> {
        let k = (user.to_string(), uidvalidity);
        if let Some(m) = self.cache.lock().ok()?.get(&k) {
            return Some(m.clone());
        }
        let txn = self.db.begin_read().ok()?;
        let t = txn.open_table(MAPS).ok()?;
        let v = t.get(map_key(user, uidvalidity).as_str()).ok()??;
        let stored: StoredMap = postcard::from_bytes(v.value()).ok()?;
        let to_local = RunMap::from_runs(stored.runs)?;
        let m = Arc::new(MailboxMap {
            local_uidvalidity: stored.local_uidvalidity,
            to_canon: to_local.inverse(),
            to_local,
        });
        self.cache.lock().ok()?.insert(k, m.clone());
        Some(m)
    }

    /// A number that changes whenever a map does.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Changes whenever a map does (sessions wait on it for a UID the
    /// applier is about to record).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

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
    done: std::collections::BTreeSet<u64>,
    failures: HashMap<u64, Failure>,
    /// The last item the dispatcher read from the outbox.
    read_to: u64,
    /// Per user, items handed to its worker and not yet finished.
    in_hand: HashMap<String, u64>,
}

impl Progress {
    /// Every outbox item up to this one is applied.
    pub fn cursor(&self) -> u64 {
        self.state.lock().map(|s| s.cursor).unwrap_or(0)
    }

    /// The dispatcher read item `seq`, of `user`, and handed it on.
    fn dispatched(&self, seq: u64, user: &str) {
        if let Ok(mut s) = self.state.lock() {
            s.read_to = s.read_to.max(seq);
            *s.in_hand.entry(user.to_string()).or_default() += 1;
        }
    }

    /// Every outbox item up to `seq` has been handed on.
    fn read_up_to(&self, seq: u64) {
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

    fn is_done(&self, seq: u64) -> bool {
        self.state
            .lock()
            .map(|s| seq <= s.cursor || s.done.contains(&seq))
            .unwrap_or(false)
    }

    fn finish(&self, seq: u64, user: &str, failure: Option<Failure>) {
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

/// Why an item could not be applied.
enum ApplyError {
    /// The backend is unreachable or broke the connection: retry later.
    Transient(String),
    /// The backend refused: record and go on.
    Refused(String),
}

impl From<BackendError> for ApplyError {
    fn from(e: BackendError) -> Self {
        ApplyError::Transient(e.to_string())
    }
}

/// A map change to commit with the cursor.
enum Change {
    Put(String, u32, MailboxMap),
    Remove(String, u32),
}

struct UserConn {
    conn: BackendConn,
    selected: Option<String>,
    /// The [`Additions`] count of the selected mailbox when this session
    /// last synchronized its view of it.
    synced: u64,
}

/// Per (user, mailbox), how many times messages were added to it through
/// any of this node's apply sessions. A session that selected the mailbox
/// earlier does not see messages another session added until it syncs
/// (Dovecot silently skips UIDs outside a session's view in UID MOVE, COPY
/// and STORE), so it sends NOOP first when the count moved.
#[derive(Debug, Default)]
struct Additions(Mutex<HashMap<(String, String), u64>>);

impl Additions {
    fn get(&self, user: &str, mailbox: &str) -> u64 {
        self.0.lock().map_or(0, |m| {
            m.get(&(user.to_string(), mailbox.to_string()))
                .copied()
                .unwrap_or(0)
        })
    }

    fn bump(&self, user: &str, mailbox: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry((user.to_string(), mailbox.to_string()))
                .or_default() += 1;
        }
    }
}

/// Most backend connections the applier keeps open (one per user).
const MAX_CONNS: usize = 32;

/// Opens the maps and the progress of this node's applier. Everything
/// below the oldest item left in the outbox is applied.
pub fn open(db: Arc<Database>) -> Result<(Arc<Maps>, Arc<Progress>), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let txn = db.begin_write().map_err(|x| e(&x))?;
    let (cursor, done) = {
        txn.open_table(MAPS).map_err(|x| e(&x))?;
        let outbox = txn.open_table(OUTBOX).map_err(|x| e(&x))?;
        let mut queued = std::collections::BTreeSet::new();
        for r in outbox.iter().map_err(|x| e(&x))? {
            queued.insert(r.map_err(|x| e(&x))?.0.value());
        }
        match (queued.first(), queued.last()) {
            // Between the queued items, the missing ones are applied.
            (Some(&first), Some(&last)) => (
                first - 1,
                (first..=last).filter(|s| !queued.contains(s)).collect(),
            ),
            _ => {
                let c = txn.open_table(COUNTERS).map_err(|x| e(&x))?;
                let v = c.get("seq").map_err(|x| e(&x))?;
                (v.map(|v| v.value()).unwrap_or(0), Default::default())
            }
        }
    };
    txn.commit().map_err(|x| e(&x))?;
    let progress = Arc::new(Progress {
        state: Mutex::new(ProgressState {
            cursor,
            done,
            read_to: cursor,
            ..ProgressState::default()
        }),
        changed: watch::channel(0).0,
    });
    Ok((Arc::new(Maps::new(db)), progress))
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

/// Reads the outbox and hands each item to the worker of its user; workers
/// of different users apply in parallel, each user's items in order.
pub struct Applier {
    template: Worker,
    notify: Arc<Notify>,
    workers: HashMap<String, mpsc::Sender<(u64, Work)>>,
    /// The durable high-water mark: no item above it was handed to a worker.
    dispatched: u64,
}

/// How far ahead the high-water mark is raised at a time (one fsync each).
const HIGH_WATER_STEP: u64 = 256;
/// Key of the high-water mark in [`STATE`].
const DISPATCHED: &str = "dispatched";
/// Key of the last barrier's item in [`STATE`] (written to have something
/// to commit durably).
const BARRIER: &str = "barrier";
/// The applier's own durable values.
const STATE: TableDefinition<'_, &str, u64> = TableDefinition::new("applier_state");
/// Per user, what the sources of the user's last MOVE looked like before it
/// ran ([`Evidence`]), written by the barrier before it.
const MOVE_EVIDENCE: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("applier_move_evidence");

/// The sources of a MOVE as they were before it ran, in the order of their
/// copies: a MOVE in doubt after a crash has no sources left to compare
/// with, and mail delivered behind tandem into its destination must not be
/// taken for its copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Evidence {
    /// The MOVE's outbox item.
    seq: u64,
    /// (RFC822.SIZE, INTERNALDATE) of each source.
    sources: Vec<(u32, String)>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("cursor", &self.template.progress.cursor())
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// Most parallel backend sessions (one per mailbox) a user's worker keeps.
const MAX_LANES: usize = 8;

/// Whether applying `work` removes messages or mailboxes that the in-doubt
/// check of an earlier item would look for (see the module's doc).
fn destroys_evidence(work: &Work, node: u64) -> bool {
    match work {
        Work::Expunge { .. } | Work::Delete { .. } | Work::Rename { .. } => true,
        Work::Copy { remove, .. } => *remove,
        Work::Append { replaces, .. } => replaces.as_ref().is_some_and(|r| r.node == node),
        Work::Create { .. } | Work::Subscribe { .. } | Work::Store { .. } => false,
    }
}

/// The mailbox an item touches, if it touches exactly one.
fn single_mailbox(work: &Work) -> Option<&str> {
    match work {
        Work::Append { mailbox, .. }
        | Work::Store { mailbox, .. }
        | Work::Expunge { mailbox, .. } => Some(mailbox),
        _ => None,
    }
}

/// How often a NO that may be passing (see [`is_soft`]) is retried before
/// it counts as the backend's refusal (about half a minute of backoff).
const MAX_SOFT_REFUSALS: u32 = 10;

/// Whether a backend's NO may be passing: no response code, or one that
/// says so (RFC 5530 UNAVAILABLE, SERVERBUG, INUSE). TRYCREATE, NONEXISTENT,
/// OVERQUOTA, TOOBIG, LIMIT and the like are final, and so are Cyrus's
/// refusals of a message it never takes, which carry no code
/// ([`NEVER_TAKEN`]).
fn is_soft(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    if NEVER_TAKEN.iter().any(|t| upper.contains(t)) {
        return false;
    }
    match upper.split_once('[') {
        None => true,
        Some((_, rest)) => ["UNAVAILABLE", "SERVERBUG", "INUSE"]
            .iter()
            .any(|c| rest.starts_with(c)),
    }
}

/// Cyrus's answers, without a response code, to an APPEND of a message it
/// never takes (bare LF line ends, NUL, a bad or missing header: "Message
/// contains bare newlines", "Message has no header/body separator", ...;
/// `deploy/CYRUS.md`). Retrying them only holds up the user's next changes.
const NEVER_TAKEN: [&str; 2] = ["MESSAGE CONTAINS ", "MESSAGE HAS NO HEADER"];

/// How many unmapped messages an item in doubt skips, at most, looking for
/// what it may have applied before a crash (mail delivered behind tandem
/// in between).
const MAX_DOUBT_SCAN: usize = 64;

/// A worker with nothing to do for this long exits.
const WORKER_IDLE: Duration = Duration::from_secs(60);

impl Applier {
    /// An applier over `db` toward `backend`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Arc<Database>,
        backend: BackendConfig,
        password: Secret<String>,
        maps: Arc<Maps>,
        progress: Arc<Progress>,
        notify: Arc<Notify>,
        node: u64,
        locks: Arc<UserLocks>,
    ) -> Applier {
        // Items up to the durable high-water mark may have been in flight at
        // a crash (the outbox itself may lack them: it is rebuilt as Raft
        // applies its log again).
        let read = db.begin_read().ok();
        let last_queued = read
            .as_ref()
            .and_then(|t| t.open_table(OUTBOX).ok())
            .and_then(|t| t.last().ok().flatten().map(|(k, _)| k.value()))
            .unwrap_or(0);
        let dispatched = read
            .as_ref()
            .and_then(|t| t.open_table(STATE).ok())
            .and_then(|t| t.get(DISPATCHED).ok().flatten().map(|v| v.value()))
            .unwrap_or(0);
        drop(read);
        let horizon = last_queued.max(dispatched);
        Applier {
            template: Worker {
                db,
                backend,
                password,
                maps,
                progress,
                conns: HashMap::new(),
                horizon,
                found: false,
                evidence: None,
                node,
                locks,
                additions: Arc::default(),
            },
            notify,
            workers: HashMap::new(),
            dispatched: horizon,
        }
    }

    /// Records durably that items up to `upto` may reach the backend.
    fn raise_high_water(&mut self, upto: u64) -> Result<(), String> {
        let mut txn = self.template.db.begin_write().map_err(|e| e.to_string())?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| e.to_string())?;
        {
            let mut t = txn.open_table(STATE).map_err(|e| e.to_string())?;
            t.insert(DISPATCHED, upto).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())?;
        self.dispatched = upto;
        Ok(())
    }

    /// Runs until the task is aborted.
    pub async fn run(mut self) {
        let mut next = self.template.progress.cursor() + 1;
        loop {
            // Read first: an empty outbox from `next` on means every item up
            // to it was handed on (a snapshot may have skipped some).
            let queued = crate::canon::last_seq(&self.template.db);
            let items = match self.template.items_from(next) {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(error = %e, "applier cannot read its outbox");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if items.is_empty() {
                self.template.progress.read_up_to(queued);
                let _ = tokio::time::timeout(Duration::from_secs(1), self.notify.notified()).await;
                continue;
            }
            for (seq, work) in items {
                if seq > self.dispatched {
                    if let Err(e) = self.raise_high_water(seq + HIGH_WATER_STEP) {
                        tracing::error!(error = %e, "applier cannot record its high-water mark");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
                next = seq + 1;
                let user = work.user().to_string();
                self.template.progress.dispatched(seq, &user);
                let mut item = (seq, work);
                loop {
                    let tx = self.workers.entry(user.clone()).or_insert_with(|| {
                        let (tx, rx) = mpsc::channel(1024);
                        let worker = self.template.fork();
                        tokio::spawn(worker.run(rx));
                        tx
                    });
                    match tx.send(item).await {
                        Ok(()) => break,
                        // The worker went idle and exited: start another.
                        Err(mpsc::error::SendError(back)) => {
                            self.workers.remove(&user);
                            item = back;
                        }
                    }
                }
            }
        }
    }
}

/// An item in a few words, for traces (never message bodies).
struct Brief<'a>(&'a Work);

impl std::fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Work::Create { user, name, .. } => write!(f, "{user}: CREATE {name}"),
            Work::Delete { user, name, .. } => write!(f, "{user}: DELETE {name}"),
            Work::Rename { user, from, to, .. } => write!(f, "{user}: RENAME {from} {to}"),
            Work::Subscribe { user, name, on } => write!(f, "{user}: SUBSCRIBE({on}) {name}"),
            Work::Append {
                user,
                mailbox,
                uids,
                replaces,
                ..
            } => write!(
                f,
                "{user}: APPEND {mailbox} {uids:?}{}",
                if replaces.is_some() {
                    " (adoption)"
                } else {
                    ""
                }
            ),
            Work::Copy {
                user,
                from,
                to,
                pairs,
                remove,
                ..
            } => {
                let verb = if *remove { "MOVE" } else { "COPY" };
                write!(f, "{user}: {verb} {from} -> {to} {pairs:?}")
            }
            Work::Store {
                user,
                mailbox,
                uids,
                mode,
                flags,
                ..
            } => write!(f, "{user}: STORE {mailbox} {uids:?} {mode:?} {flags:?}"),
            Work::Expunge {
                user,
                mailbox,
                uids,
                ..
            } => {
                write!(f, "{user}: EXPUNGE {mailbox} {uids:?}")
            }
        }
    }
}

/// Applies one user's items, in order, over that user's backend session.
struct Worker {
    db: Arc<Database>,
    backend: BackendConfig,
    password: Secret<String>,
    maps: Arc<Maps>,
    progress: Arc<Progress>,
    conns: HashMap<String, UserConn>,
    /// Items at or below `horizon` (the durable high-water mark at start)
    /// may have reached the backend before a crash without their UIDs being
    /// recorded: look before applying them.
    horizon: u64,
    /// Set by `apply` when the item was found already applied.
    found: bool,
    /// For a MOVE in doubt: its sources as recorded before it ran.
    evidence: Option<Evidence>,
    /// This node's id (adoption expunges originals on their node only).
    node: u64,
    locks: Arc<UserLocks>,
    /// Shared by the user's worker and its lanes.
    additions: Arc<Additions>,
}

impl Worker {
    fn fork(&self) -> Worker {
        Worker {
            db: self.db.clone(),
            backend: self.backend.clone(),
            password: self.password.clone(),
            maps: self.maps.clone(),
            progress: self.progress.clone(),
            conns: HashMap::new(),
            horizon: self.horizon,
            found: false,
            evidence: None,
            node: self.node,
            locks: self.locks.clone(),
            additions: self.additions.clone(),
        }
    }

    /// Applies the user's items as they come. A run of items that each
    /// touch one mailbox (APPEND, STORE, EXPUNGE) is spread over one backend
    /// session per mailbox, in parallel, each mailbox's items in order;
    /// anything else (COPY, MOVE, mailbox operations) waits for the run
    /// before it and runs alone.
    async fn run(mut self, mut rx: mpsc::Receiver<(u64, Work)>) {
        let mut lanes: HashMap<String, Worker> = HashMap::new();
        loop {
            let Ok(Some(first)) = tokio::time::timeout(WORKER_IDLE, rx.recv()).await else {
                return;
            };
            let mut batch = std::collections::VecDeque::from([first]);
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(item) => batch.push_back(item),
                    Err(_) => break,
                }
            }
            let lock = self.locks.of(batch[0].1.user());
            let _guard = lock.lock().await;
            while !batch.is_empty() {
                let run = batch
                    .iter()
                    .take_while(|(seq, w)| *seq > self.horizon && single_mailbox(w).is_some())
                    .count();
                if run < 2 {
                    if let Some((seq, work)) = batch.pop_front() {
                        if single_mailbox(&work).is_none() {
                            // Mailboxes may be renamed or replaced: the lanes
                            // select again before their next STORE or EXPUNGE.
                            for lane in lanes.values_mut() {
                                for c in lane.conns.values_mut() {
                                    c.selected = None;
                                }
                            }
                        }
                        self.apply_one(seq, &work).await;
                    }
                    continue;
                }
                let mut groups: Vec<(String, Vec<(u64, Work)>)> = Vec::new();
                for (seq, work) in batch.drain(..run) {
                    let mailbox = single_mailbox(&work).unwrap_or_default().to_string();
                    match groups.iter_mut().find(|g| g.0 == mailbox) {
                        Some(g) => g.1.push((seq, work)),
                        None => groups.push((mailbox, vec![(seq, work)])),
                    }
                }
                let mut running = tokio::task::JoinSet::new();
                for (mailbox, items) in groups {
                    let mut lane = lanes.remove(&mailbox).unwrap_or_else(|| self.fork());
                    running.spawn(async move {
                        for (seq, work) in items {
                            lane.apply_one(seq, &work).await;
                        }
                        (mailbox, lane)
                    });
                }
                while let Some(done) = running.join_next().await {
                    if let Ok((mailbox, lane)) = done {
                        lanes.insert(mailbox, lane);
                    }
                }
                if lanes.len() > MAX_LANES {
                    lanes.clear();
                }
            }
        }
    }

    /// Makes every commit so far durable (see the module's doc): an item
    /// about to remove messages or mailboxes must not leave the items
    /// before it to be found on the backend after a crash. A MOVE's
    /// `evidence` is recorded with it.
    fn barrier(&self, seq: u64, user: &str, evidence: Option<&Evidence>) -> Result<(), String> {
        let mut txn = self.db.begin_write().map_err(|e| e.to_string())?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| e.to_string())?;
        {
            let mut t = txn.open_table(STATE).map_err(|e| e.to_string())?;
            t.insert(BARRIER, seq).map_err(|e| e.to_string())?;
            if let Some(ev) = evidence {
                let bytes = postcard::to_stdvec(ev).map_err(|e| e.to_string())?;
                let mut t = txn.open_table(MOVE_EVIDENCE).map_err(|e| e.to_string())?;
                t.insert(user, bytes.as_slice())
                    .map_err(|e| e.to_string())?;
            }
        }
        txn.commit().map_err(|e| e.to_string())
    }

    /// The evidence the barrier before MOVE `seq` recorded, if any.
    fn recorded_evidence(&self, seq: u64, user: &str) -> Option<Evidence> {
        let txn = self.db.begin_read().ok()?;
        let t = txn.open_table(MOVE_EVIDENCE).ok()?;
        let bytes = t.get(user).ok()??;
        let ev: Evidence = postcard::from_bytes(bytes.value()).ok()?;
        (ev.seq == seq).then_some(ev)
    }

    /// What the sources of MOVE `seq` look like on the backend now (size
    /// and date, in the order of their copies); `None` for anything else,
    /// or when they cannot be read (then a MOVE in doubt after a crash
    /// takes the first unmapped messages of its destination).
    async fn evidence_of(&mut self, seq: u64, work: &Work) -> Option<Evidence> {
        let Work::Copy {
            user,
            from,
            from_uidvalidity,
            pairs,
            remove: true,
            ..
        } = work
        else {
            return None;
        };
        let src = self.map_of(user, *from_uidvalidity).ok()?;
        let local: Vec<u32> = pairs
            .iter()
            .filter_map(|&(cs, _)| src.to_local.map_one(cs))
            .collect();
        self.select(user, from).await.ok()?;
        let by_uid = self.sizes_and_dates(user, &local).await.ok()?;
        let sources = local
            .iter()
            .map(|l| by_uid.get(l).cloned())
            .collect::<Option<Vec<_>>>()?;
        Some(Evidence { seq, sources })
    }

    /// Applies one item, retrying while the backend is unreachable.
    async fn apply_one(&mut self, seq: u64, work: &Work) {
        if destroys_evidence(work, self.node) {
            metrics::counter!("tandem_apply_barriers_total").increment(1);
            // After a crash (in doubt) the sources may be gone already: the
            // evidence recorded the first time stays.
            let evidence = if seq <= self.horizon {
                None
            } else {
                self.evidence_of(seq, work).await
            };
            while let Err(e) = self.barrier(seq, work.user(), evidence.as_ref()) {
                tracing::error!(error = %e, "applier cannot make its progress durable");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let mut backoff = Duration::from_millis(100);
        let mut refusals = 0;
        // A command whose answer was lost (the backend stopped or the link
        // broke mid-command) may have been carried out: every retry after
        // a transient error looks first, as after a crash.
        let mut interrupted = false;
        loop {
            // Every item up to the horizon is looked for (lanes of different
            // mailboxes may have finished out of order before a crash).
            let doubt = seq <= self.horizon || interrupted;
            self.found = false;
            self.evidence = doubt
                .then(|| self.recorded_evidence(seq, work.user()))
                .flatten();
            let started = std::time::Instant::now();
            tracing::debug!(seq, doubt, item = %Brief(work), "applying");
            let result = self.apply(work, doubt).await;
            tracing::debug!(seq, found = self.found, ok = result.is_ok(), "applied");
            metrics::histogram!("tandem_apply_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(changes) => {
                    if self.found {
                        tracing::info!(seq, "item found applied before a restart");
                    }
                    if let Err(e) = self.commit(seq, changes) {
                        tracing::error!(error = %e, "applier cannot record progress");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    self.progress.finish(seq, work.user(), None);
                    return;
                }
                Err(ApplyError::Refused(text))
                    if refusals < MAX_SOFT_REFUSALS && is_soft(&text) =>
                {
                    // A backend shutting down or busy answers NO too: retry
                    // a while before calling it a refusal.
                    refusals += 1;
                    tracing::warn!(seq, reason = %text, "backend said NO; will retry");
                    self.conns.clear();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(ApplyError::Refused(text)) => {
                    tracing::warn!(seq, reason = %text, "backend refused a replicated change");
                    if self.commit(seq, Vec::new()).is_ok() {
                        self.progress.finish(seq, work.user(), Some(text));
                        return;
                    }
                }
                Err(ApplyError::Transient(e)) => {
                    tracing::warn!(seq, error = %e, "backend unavailable; will retry");
                    interrupted = true;
                    self.conns.clear();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn items_from(&self, first: u64) -> Result<Vec<(u64, Work)>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let t = match txn.open_table(OUTBOX) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let mut out = Vec::new();
        for r in t.range(first..).map_err(|e| e.to_string())? {
            let (k, v) = r.map_err(|e| e.to_string())?;
            let (_, work): crate::canon::Queued =
                postcard::from_bytes(v.value()).map_err(|e| e.to_string())?;
            out.push((k.value(), work));
            if out.len() >= 256 {
                break;
            }
        }
        Ok(out)
    }

    fn commit(&self, seq: u64, changes: Vec<Change>) -> Result<(), String> {
        // Not fsynced on its own: the next durable redb commit carries it
        // (the log store's syncer's, 5 ms apart while the log moves, or the
        // next high-water mark's), and what a crash loses is found again on
        // the backend (in doubt).
        let mut txn = self.db.begin_write().map_err(|e| e.to_string())?;
        txn.set_durability(Durability::None)
            .map_err(|e| e.to_string())?;
        {
            let mut maps = txn.open_table(MAPS).map_err(|e| e.to_string())?;
            for c in &changes {
                match c {
                    Change::Put(user, uv, m) => {
                        let stored = StoredMap {
                            local_uidvalidity: m.local_uidvalidity,
                            runs: m.to_local.runs().to_vec(),
                        };
                        let bytes = postcard::to_stdvec(&stored).map_err(|e| e.to_string())?;
                        maps.insert(map_key(user, *uv).as_str(), bytes.as_slice())
                            .map_err(|e| e.to_string())?;
                    }
                    Change::Remove(user, uv) => {
                        maps.remove(map_key(user, *uv).as_str())
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            let mut outbox = txn.open_table(OUTBOX).map_err(|e| e.to_string())?;
            outbox.remove(seq).map_err(|e| e.to_string())?;
        }
        txn.commit().map_err(|e| e.to_string())?;
        if let Ok(mut cache) = self.maps.cache.lock() {
            for c in changes {
                match c {
                    Change::Put(user, uv, m) => {
                        cache.insert((user, uv), Arc::new(m));
                    }
                    Change::Remove(user, uv) => {
                        cache.remove(&(user, uv));
                    }
                }
            }
        }
        self.maps.version.send_modify(|v| *v += 1);
        Ok(())
    }

    async fn conn(&mut self, user: &str) -> Result<&mut UserConn, ApplyError> {
        if !self.conns.contains_key(user) {
            if self.conns.len() >= MAX_CONNS {
                self.conns.clear();
            }
            let mut conn = BackendConn::connect(&self.backend).await?;
            let reply = conn.login_as(&self.backend, &self.password, user).await?;
            if reply.status != Status::Ok {
                return Err(ApplyError::Transient(format!(
                    "admin login as {user} refused: {}",
                    reply.text
                )));
            }
            self.conns.insert(
                user.to_string(),
                UserConn {
                    conn,
                    selected: None,
                    synced: 0,
                },
            );
        }
        Ok(self.conns.get_mut(user).expect("inserted above"))
    }

    /// Sends one encoded command (made for the given tag).
    async fn send(
        &mut self,
        user: &str,
        make: impl FnOnce(&[u8]) -> Result<Vec<u8>, encode::EncodeError>,
    ) -> Result<Reply, ApplyError> {
        let c = self.conn(user).await?;
        let line = make(b"x").map_err(|e| ApplyError::Refused(e.to_string()))?;
        // BackendConn::command adds its own tag and CRLF.
        let body = line
            .strip_prefix(b"x ")
            .and_then(|l| l.strip_suffix(b"\r\n"))
            .ok_or_else(|| ApplyError::Refused("cannot encode the command".to_string()))?;
        let started = std::time::Instant::now();
        let reply = c.conn.command(body).await?;
        metrics::histogram!("tandem_backend_command_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(reply)
    }

    /// Selects `mailbox` with a view that holds every message added to it
    /// so far (see [`Additions`]).
    async fn select(&mut self, user: &str, mailbox: &str) -> Result<(), ApplyError> {
        let added = self.additions.get(user, mailbox);
        let c = self.conn(user).await?;
        if c.selected.as_deref() == Some(mailbox) {
            if c.synced == added {
                return Ok(());
            }
            if c.conn.command(b"NOOP").await?.status == Status::Ok {
                c.synced = added;
                return Ok(());
            }
        }
        let r = self
            .send(user, |t| {
                encode::mailbox_command(t, MailboxVerb::Select, mailbox.as_bytes())
            })
            .await?;
        let c = self.conn(user).await?;
        if r.status != Status::Ok {
            c.selected = None;
            return Err(ApplyError::Refused(format!("SELECT {mailbox}: {}", r.text)));
        }
        c.selected = Some(mailbox.to_string());
        c.synced = added;
        Ok(())
    }

    async fn local_uidvalidity(&mut self, user: &str, mailbox: &str) -> Result<u32, ApplyError> {
        let mut cmd = b"STATUS ".to_vec();
        encode::astring(&mut cmd, mailbox.as_bytes());
        cmd.extend_from_slice(b" (UIDVALIDITY)");
        let c = self.conn(user).await?;
        let r = c.conn.command(&cmd).await?;
        if r.status != Status::Ok {
            return Err(ApplyError::Refused(format!("STATUS {mailbox}: {}", r.text)));
        }
        for line in &r.untagged {
            if let Ok(resp) = Response::parse(line) {
                if let tandem_parser::response::ResponseBody::MailboxStatus { items, .. } =
                    &resp.body
                {
                    for item in items {
                        if item.name.of(line).eq_ignore_ascii_case(b"UIDVALIDITY") {
                            return u32::try_from(item.value)
                                .map_err(|_| ApplyError::Refused("bad UIDVALIDITY".to_string()));
                        }
                    }
                }
            }
        }
        Err(ApplyError::Refused(format!(
            "STATUS {mailbox} gave no UIDVALIDITY"
        )))
    }

    fn map_of(&self, user: &str, uv: u32) -> Result<MailboxMap, ApplyError> {
        self.maps
            .get(user, uv)
            .map(|m| (*m).clone())
            .ok_or_else(|| ApplyError::Refused(format!("no local mailbox for UIDVALIDITY {uv}")))
    }

    /// Applies one item; sets `found` when it was already applied (looked
    /// for only when `doubt`).
    async fn apply(&mut self, work: &Work, doubt: bool) -> Result<Vec<Change>, ApplyError> {
        match work {
            Work::Create {
                user,
                name,
                uidvalidity,
            } => {
                let local = self.create_local(user, name).await?;
                Ok(vec![Change::Put(
                    user.clone(),
                    *uidvalidity,
                    MailboxMap {
                        local_uidvalidity: local,
                        ..MailboxMap::default()
                    },
                )])
            }
            Work::Delete {
                user,
                name,
                uidvalidity,
            } => {
                if let Some(c) = self.conns.get_mut(user) {
                    c.selected = None;
                }
                let r = self
                    .send(user, |t| {
                        encode::mailbox_command(t, MailboxVerb::Delete, name.as_bytes())
                    })
                    .await?;
                if r.status != Status::Ok && !r.tagged.has_code(b"NONEXISTENT") {
                    return Err(ApplyError::Refused(format!("DELETE {name}: {}", r.text)));
                }
                Ok(vec![Change::Remove(user.clone(), *uidvalidity)])
            }
            Work::Rename {
                user,
                from,
                to,
                inbox,
            } => {
                if let Some(c) = self.conns.get_mut(user) {
                    c.selected = None;
                }
                if let Some(mv) = inbox {
                    return self.move_inbox(user, to, mv, doubt).await;
                }
                let r = self
                    .send(user, |t| encode::rename(t, from.as_bytes(), to.as_bytes()))
                    .await?;
                if r.status != Status::Ok {
                    // Re-applied after a restart: already renamed.
                    let done = self.local_uidvalidity(user, to).await.is_ok()
                        && self.local_uidvalidity(user, from).await.is_err();
                    if !done {
                        return Err(ApplyError::Refused(format!("RENAME: {}", r.text)));
                    }
                    self.found = true;
                }
                Ok(Vec::new())
            }
            Work::Subscribe { user, name, on } => {
                let verb = if *on {
                    MailboxVerb::Subscribe
                } else {
                    MailboxVerb::Unsubscribe
                };
                // A refusal (already subscribed, ...) changes nothing.
                let _ = self
                    .send(user, |t| encode::mailbox_command(t, verb, name.as_bytes()))
                    .await?;
                Ok(Vec::new())
            }
            Work::Append {
                user,
                mailbox,
                uidvalidity,
                uids,
                messages,
                replaces,
            } => {
                let mut map = self.map_of(user, *uidvalidity)?;
                if uids
                    .first()
                    .is_some_and(|&u| map.to_local.map_one(u).is_some())
                {
                    // Recorded already (applied before a restart).
                    self.found = true;
                    return Ok(Vec::new());
                }
                // Adopted originals on this node: expunged once their
                // copies are appended.
                let originals = replaces
                    .as_ref()
                    .filter(|r| r.node == self.node && r.local_uidvalidity == map.local_uidvalidity)
                    .map(|r| Ranges::from_ranges(r.uids.iter().map(|&u| (u, u))));
                if doubt {
                    let mut found = self.unmapped(user, mailbox, &map).await?;
                    // The originals are unmapped too, and byte for byte the
                    // copies: only what follows them can be the copies.
                    if let Some(o) = &originals {
                        found.retain(|&u| !o.contains(u));
                    }
                    let wanted: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
                    let at = self.find_run(user, &found, &wanted).await?;
                    if let Some(at) = at.filter(|_| !uids.is_empty()) {
                        tracing::info!(mailbox, "append found already applied before a restart");
                        for (&c, l) in uids.iter().zip(found[at..].iter()) {
                            push(&mut map, c, l);
                        }
                        map.to_canon = map.to_local.inverse();
                        if let Some(set) = &originals {
                            self.remove_local(user, mailbox, set).await?;
                        }
                        self.found = true;
                        return Ok(vec![Change::Put(user.clone(), *uidvalidity, map)]);
                    }
                }
                let flags: Vec<Vec<&[u8]>> = messages
                    .iter()
                    .map(|m| m.flags.iter().map(|f| f.as_bytes()).collect())
                    .collect();
                let items: Vec<AppendItem<'_>> = messages
                    .iter()
                    .zip(flags.iter())
                    .map(|(m, f)| AppendItem {
                        flags: f,
                        date: m.date.as_deref().map(str::as_bytes),
                        message: &m.body,
                    })
                    .collect();
                self.additions.bump(user, mailbox);
                let r = self
                    .send(user, |t| encode::append(t, mailbox.as_bytes(), &items))
                    .await?;
                if r.status != Status::Ok {
                    return Err(ApplyError::Refused(r.text));
                }
                let Some((_, local)) = appenduid(&r) else {
                    return Err(ApplyError::Refused(
                        "the backend gave no APPENDUID (UIDPLUS is required)".to_string(),
                    ));
                };
                for (&c, l) in uids.iter().zip(local.iter()) {
                    push(&mut map, c, l);
                }
                map.to_canon = map.to_local.inverse();
                if let Some(set) = &originals {
                    // The originals were adopted: their copies now carry
                    // canonical UIDs everywhere.
                    self.remove_local(user, mailbox, set).await?;
                }
                Ok(vec![Change::Put(user.clone(), *uidvalidity, map)])
            }
            Work::Copy {
                user,
                from,
                from_uidvalidity,
                to,
                to_uidvalidity,
                pairs,
                remove,
            } => {
                let mut src = self.map_of(user, *from_uidvalidity)?;
                let mut dst = if from_uidvalidity == to_uidvalidity {
                    src.clone()
                } else {
                    self.map_of(user, *to_uidvalidity)?
                };
                if pairs
                    .first()
                    .is_some_and(|&(_, d)| dst.to_local.map_one(d).is_some())
                {
                    self.found = true;
                    return Ok(Vec::new());
                }
                if doubt && !pairs.is_empty() {
                    // Only the sources this backend holds were copied here.
                    let held: Vec<(u32, u32, u32)> = pairs
                        .iter()
                        .filter_map(|&(cs, cd)| Some((cs, cd, src.to_local.map_one(cs)?)))
                        .collect();
                    let found = self.unmapped(user, to, &dst).await?;
                    let at = if !held.is_empty() && found.len() >= held.len() {
                        self.copied_already(user, from, to, &held, &found, *remove)
                            .await?
                    } else {
                        None
                    };
                    if let Some(at) = at {
                        tracing::info!(mailbox = %to, "copy found already applied");
                        for (&(cs, cd, _), l) in held.iter().zip(found[at..].iter()) {
                            push(&mut dst, cd, l);
                            if *remove {
                                src.to_local.remove(cs);
                            }
                        }
                        dst.to_canon = dst.to_local.inverse();
                        src.to_canon = src.to_local.inverse();
                        let mut changes = vec![Change::Put(user.clone(), *to_uidvalidity, dst)];
                        if from_uidvalidity != to_uidvalidity && *remove {
                            changes.push(Change::Put(user.clone(), *from_uidvalidity, src));
                        }
                        self.found = true;
                        return Ok(changes);
                    }
                }
                let canon_src = Ranges::from_ranges(pairs.iter().map(|&(s, _)| (s, s)));
                let local_src = map_ranges(&canon_src, &src.to_local);
                let Some(set) = local_src.to_sequence_set() else {
                    return Ok(Vec::new());
                };
                self.select(user, from).await?;
                self.additions.bump(user, to);
                let r = self
                    .send(user, |t| {
                        if *remove {
                            encode::uid_move(t, &set, to.as_bytes())
                        } else {
                            encode::uid_copy(t, &set, to.as_bytes())
                        }
                    })
                    .await?;
                if r.status != Status::Ok {
                    return Err(ApplyError::Refused(r.text));
                }
                // No COPYUID: the backend copied nothing (the messages were
                // gone here); `tandem check` makes sure it has UIDPLUS.
                let (lsrc, ldst) = copyuid(&r).unwrap_or_default();
                if lsrc.is_empty() {
                    tracing::warn!(from = %from, to = %to, "nothing copied here: the messages are gone on this node");
                }
                record_copies(&mut dst, &src, pairs, &lsrc, &ldst);
                if *remove {
                    for ls in &lsrc {
                        if let Some(cs) = src.to_canon.map_one(*ls) {
                            if from_uidvalidity == to_uidvalidity {
                                dst.to_local.remove(cs);
                            } else {
                                src.to_local.remove(cs);
                            }
                        }
                    }
                }
                dst.to_canon = dst.to_local.inverse();
                src.to_canon = src.to_local.inverse();
                let mut changes = vec![Change::Put(user.clone(), *to_uidvalidity, dst)];
                if from_uidvalidity != to_uidvalidity && *remove {
                    changes.push(Change::Put(user.clone(), *from_uidvalidity, src));
                }
                Ok(changes)
            }
            Work::Store {
                user,
                mailbox,
                uidvalidity,
                uids,
                mode,
                flags,
            } => {
                let map = self.map_of(user, *uidvalidity)?;
                let local = map_ranges(&Ranges::from_ranges(uids.iter().copied()), &map.to_local);
                let Some(set) = local.to_sequence_set() else {
                    return Ok(Vec::new());
                };
                self.select(user, mailbox).await?;
                let flags: Vec<&[u8]> = flags.iter().map(|f| f.as_bytes()).collect();
                let mode = match mode {
                    FlagMode::Replace => tandem_parser::command::StoreMode::Replace,
                    FlagMode::Add => tandem_parser::command::StoreMode::Add,
                    FlagMode::Remove => tandem_parser::command::StoreMode::Remove,
                };
                let r = self
                    .send(user, |t| encode::uid_store(t, &set, mode, true, &flags))
                    .await?;
                if r.status != Status::Ok {
                    return Err(ApplyError::Refused(r.text));
                }
                Ok(Vec::new())
            }
            Work::Expunge {
                user,
                mailbox,
                uidvalidity,
                uids,
            } => {
                let mut map = self.map_of(user, *uidvalidity)?;
                let canon = Ranges::from_ranges(uids.iter().copied());
                let local = map_ranges(&canon, &map.to_local);
                if local.is_empty() {
                    return Ok(Vec::new());
                }
                self.remove_local(user, mailbox, &local).await?;
                for c in canon.iter() {
                    map.to_local.remove(c);
                }
                map.to_canon = map.to_local.inverse();
                Ok(vec![Change::Put(user.clone(), *uidvalidity, map)])
            }
        }
    }
}

impl Worker {
    /// Creates `name` on the backend (one that exists already is taken as
    /// it is) and returns its local UIDVALIDITY.
    async fn create_local(&mut self, user: &str, name: &str) -> Result<u32, ApplyError> {
        let r = self
            .send(user, |t| {
                encode::mailbox_command(t, MailboxVerb::Create, name.as_bytes())
            })
            .await?;
        if r.status == Status::Ok || r.tagged.has_code(b"ALREADYEXISTS") {
            return self.local_uidvalidity(user, name).await;
        }
        // Not every server says [ALREADYEXISTS] (Cyrus: "NO Mailbox already
        // exists"; INBOX always exists there): a mailbox that is there is
        // taken as it is.
        match self.local_uidvalidity(user, name).await {
            Ok(uv) => Ok(uv),
            Err(_) => Err(ApplyError::Refused(format!("CREATE {name}: {}", r.text))),
        }
    }

    /// RENAME INBOX: creates `to` and moves INBOX's messages into it, then
    /// maps each new local UID to the canonical one decided for it.
    async fn move_inbox(
        &mut self,
        user: &str,
        to: &str,
        mv: &crate::canon::InboxMove,
        doubt: bool,
    ) -> Result<Vec<Change>, ApplyError> {
        let local_uv = self.create_local(user, to).await?;
        let mut dst = match self.maps.get(user, mv.uidvalidity) {
            Some(m) if m.local_uidvalidity == local_uv => (*m).clone(),
            _ => MailboxMap {
                local_uidvalidity: local_uv,
                ..MailboxMap::default()
            },
        };
        let mut inbox = self.map_of(user, mv.inbox_uidvalidity)?;
        let held: Vec<(u32, u32, u32)> = mv
            .pairs
            .iter()
            .filter_map(|&(cs, cd)| Some((cs, cd, inbox.to_local.map_one(cs)?)))
            .collect();
        let mut moved = false;
        if doubt && !held.is_empty() {
            let found = self.unmapped(user, to, &dst).await?;
            let at = if found.len() >= held.len() {
                self.copied_already(user, "INBOX", to, &held, &found, true)
                    .await?
            } else {
                None
            };
            if let Some(at) = at {
                tracing::info!(mailbox = %to, "INBOX's messages found moved already");
                for (&(_, cd, _), l) in held.iter().zip(found[at..].iter()) {
                    push(&mut dst, cd, l);
                }
                self.found = true;
                moved = true;
            }
        }
        let canon_src = Ranges::from_ranges(mv.pairs.iter().map(|&(s, _)| (s, s)));
        let local_src = map_ranges(&canon_src, &inbox.to_local);
        if let Some(set) = local_src.to_sequence_set().filter(|_| !moved) {
            self.select(user, "INBOX").await?;
            self.additions.bump(user, to);
            let r = self
                .send(user, |t| encode::uid_move(t, &set, to.as_bytes()))
                .await?;
            if r.status != Status::Ok {
                return Err(ApplyError::Refused(format!("MOVE to {to}: {}", r.text)));
            }
            let Some((lsrc, ldst)) = copyuid(&r) else {
                return Err(ApplyError::Refused(
                    "the backend gave no COPYUID (UIDPLUS is required)".to_string(),
                ));
            };
            record_copies(&mut dst, &inbox, &mv.pairs, &lsrc, &ldst);
        }
        dst.to_canon = dst.to_local.inverse();
        inbox.to_local = RunMap::new();
        inbox.to_canon = RunMap::new();
        Ok(vec![
            Change::Put(user.to_string(), mv.uidvalidity, dst),
            Change::Put(user.to_string(), mv.inbox_uidvalidity, inbox),
        ])
    }

    /// Expunges exactly the local UIDs `set` of `mailbox`: marks them
    /// \Deleted first, since UID EXPUNGE removes only marked messages.
    async fn remove_local(
        &mut self,
        user: &str,
        mailbox: &str,
        set: &Ranges,
    ) -> Result<(), ApplyError> {
        let Some(set) = set.to_sequence_set() else {
            return Ok(());
        };
        self.select(user, mailbox).await?;
        let deleted: [&[u8]; 1] = [b"\\Deleted"];
        let r = self
            .send(user, |t| {
                encode::uid_store(
                    t,
                    &set,
                    tandem_parser::command::StoreMode::Add,
                    true,
                    &deleted,
                )
            })
            .await?;
        if r.status != Status::Ok {
            return Err(ApplyError::Refused(r.text));
        }
        let r = self.send(user, |t| encode::uid_expunge(t, &set)).await?;
        if r.status != Status::Ok {
            return Err(ApplyError::Refused(r.text));
        }
        Ok(())
    }

    /// The local UIDs of `mailbox` above every mapped one: messages the
    /// backend holds that tandem has not recorded (selects the mailbox).
    async fn unmapped(
        &mut self,
        user: &str,
        mailbox: &str,
        map: &MailboxMap,
    ) -> Result<Vec<u32>, ApplyError> {
        let above = map.to_local.max_to().unwrap_or(0);
        self.select(user, mailbox).await?;
        let q = format!("UID SEARCH UID {}:*", u64::from(above) + 1);
        if above == u32::MAX {
            return Ok(Vec::new());
        }
        let r = self.conn(user).await?.conn.command(q.as_bytes()).await?;
        // `n:*` always includes the last message, even below n.
        Ok(search_numbers(&r)
            .into_iter()
            .filter(|&u| u > above)
            .collect())
    }

    /// Where in `found` (the unmapped messages of `to`, in order) a COPY
    /// (or MOVE, `remove`) of the `held` messages (canonical source,
    /// canonical destination, local source) put its copies, if it already
    /// reached the backend. A MOVE took place when no source is left in
    /// `from` (its copies are the first unmapped messages); a COPY when a
    /// run of unmapped messages is byte for byte the sources.
    async fn copied_already(
        &mut self,
        user: &str,
        from: &str,
        to: &str,
        held: &[(u32, u32, u32)],
        found: &[u32],
        remove: bool,
    ) -> Result<Option<usize>, ApplyError> {
        let local: Vec<u32> = held.iter().map(|&(_, _, l)| l).collect();
        self.select(user, from).await?;
        if remove {
            let set = Ranges::from_ranges(local.iter().map(|&l| (l, l)));
            let Some(set) = set.to_sequence_set() else {
                return Ok(None);
            };
            let mut q = b"UID SEARCH UID ".to_vec();
            set.encode(&mut q);
            let r = self.conn(user).await?.conn.command(&q).await?;
            let left: HashSet<u32> = search_numbers(&r).into_iter().collect();
            if local.iter().any(|l| left.contains(l)) {
                return Ok(None);
            }
            // Moved: its copies are the run of unmapped messages that
            // looks like the sources did (mail delivered behind tandem
            // may come first), else the first ones.
            let Some(ev) = self.evidence.take() else {
                return Ok(Some(0));
            };
            self.select(user, to).await?;
            let by_uid = self.sizes_and_dates(user, found).await?;
            let at = (0..=found
                .len()
                .saturating_sub(ev.sources.len())
                .min(MAX_DOUBT_SCAN))
                .find(|&start| {
                    ev.sources.iter().enumerate().all(|(i, want)| {
                        found.get(start + i).and_then(|u| by_uid.get(u)) == Some(want)
                    })
                });
            if at.is_none() {
                tracing::warn!(mailbox = %to, "no unmapped messages look like a MOVE's sources; taking the first ones");
            }
            return Ok(Some(at.unwrap_or(0)));
        }
        let sources = self.bodies(user, &local).await?;
        if sources.iter().any(Vec::is_empty) {
            return Ok(None);
        }
        self.select(user, to).await?;
        let wanted: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
        self.find_run(user, found, &wanted).await
    }

    /// Where in `found` (unmapped local UIDs of the selected mailbox, in
    /// order) a run of messages byte for byte `wanted` starts, looking at
    /// the first [`MAX_DOUBT_SCAN`] starts. What it skips is mail delivered
    /// behind tandem in between, left to adoption.
    async fn find_run(
        &mut self,
        user: &str,
        found: &[u32],
        wanted: &[&[u8]],
    ) -> Result<Option<usize>, ApplyError> {
        if wanted.is_empty() || found.len() < wanted.len() {
            return Ok(None);
        }
        let mut bodies: HashMap<u32, Vec<u8>> = HashMap::new();
        for start in 0..=(found.len() - wanted.len()).min(MAX_DOUBT_SCAN) {
            let mut all = true;
            for (i, w) in wanted.iter().enumerate() {
                let uid = found[start + i];
                if let std::collections::hash_map::Entry::Vacant(e) = bodies.entry(uid) {
                    let b = self.bodies(user, &[uid]).await?;
                    e.insert(b.into_iter().next().unwrap_or_default());
                }
                if bodies.get(&uid).map(Vec::as_slice) != Some(*w) {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(Some(start));
            }
        }
        Ok(None)
    }

    /// The bodies of the given local UIDs of the selected mailbox, in order.
    async fn bodies(&mut self, user: &str, uids: &[u32]) -> Result<Vec<Vec<u8>>, ApplyError> {
        let mut out = Vec::new();
        for uid in uids {
            let q = format!("UID FETCH {uid} (BODY.PEEK[])");
            let r = self.conn(user).await?.conn.command(q.as_bytes()).await?;
            out.push(
                r.untagged
                    .iter()
                    .find_map(|l| first_literal(l))
                    .unwrap_or_default(),
            );
        }
        Ok(out)
    }
}

impl Worker {
    /// RFC822.SIZE and INTERNALDATE of the given local UIDs of the selected
    /// mailbox, by UID (500 UIDs per command).
    async fn sizes_and_dates(
        &mut self,
        user: &str,
        uids: &[u32],
    ) -> Result<HashMap<u32, (u32, String)>, ApplyError> {
        let mut out = HashMap::new();
        for chunk in uids.chunks(500) {
            let Some(set) = Ranges::from_ranges(chunk.iter().map(|&l| (l, l))).to_sequence_set()
            else {
                continue;
            };
            let mut q = b"UID FETCH ".to_vec();
            set.encode(&mut q);
            q.extend_from_slice(b" (UID RFC822.SIZE INTERNALDATE)");
            let r = self.conn(user).await?.conn.command(&q).await?;
            out.extend(
                r.untagged
                    .iter()
                    .filter_map(|l| size_and_date(l))
                    .map(|(uid, size, date)| (uid, (size, date))),
            );
        }
        Ok(out)
    }
}

/// (UID, RFC822.SIZE, INTERNALDATE) of a FETCH response that has them.
fn size_and_date(line: &[u8]) -> Option<(u32, u32, String)> {
    let r = Response::parse(line).ok()?;
    let date = String::from_utf8_lossy(&r.internal_date()?).into_owned();
    Some((r.fetch_uid()?, r.rfc822_size()?, date))
}

/// The data of the first literal in a response.
pub(crate) fn first_literal(resp: &[u8]) -> Option<Vec<u8>> {
    Response::parse(resp)
        .ok()?
        .first_literal()
        .map(<[u8]>::to_vec)
}

/// Records in `dst` the copies a COPYUID reported (`lsrc[i]` copied to
/// `ldst[i]`, local UIDs), each under the canonical UID `pairs` decided for
/// its source (canonical via `src`).
fn record_copies(
    dst: &mut MailboxMap,
    src: &MailboxMap,
    pairs: &[(u32, u32)],
    lsrc: &[u32],
    ldst: &[u32],
) {
    let by_src: HashMap<u32, u32> = pairs.iter().copied().collect();
    let mut new: Vec<(u32, u32)> = lsrc
        .iter()
        .zip(ldst.iter())
        .filter_map(|(ls, ld)| Some((*by_src.get(&src.to_canon.map_one(*ls)?)?, *ld)))
        .collect();
    new.sort_unstable();
    for (c, l) in new {
        push(dst, c, &l);
    }
}

fn push(map: &mut MailboxMap, canon: u32, local: &u32) {
    if let Err(e) = map.to_local.push(canon, *local) {
        // Only a backend that reuses or reorders UIDs gets here.
        tracing::error!(error = %e, "backend UIDs out of order; message left unmapped");
    }
}

pub(crate) fn search_numbers(r: &Reply) -> Vec<u32> {
    let mut out = Vec::new();
    for line in &r.untagged {
        if let Ok(resp) = Response::parse(line) {
            if let tandem_parser::response::ResponseBody::Search { numbers, .. } = &resp.body {
                out.extend(numbers.iter().map(|(n, _)| *n));
            }
        }
    }
    out.sort_unstable();
    out
}

/// The local UIDVALIDITY and UIDs of an APPENDUID code, in order.
fn appenduid(r: &Reply) -> Option<(u32, Vec<u32>)> {
    r.tagged.appenduid()
}

/// The source and destination UIDs of a COPYUID code (tagged or untagged,
/// as MOVE sends it), paired by position.
fn copyuid(r: &Reply) -> Option<(Vec<u32>, Vec<u32>)> {
    let untagged = r.untagged.iter().filter_map(|line| {
        let resp = Response::parse(line).ok()?;
        resp.code()?.copyuid()
    });
    let mut all = untagged.chain(r.tagged.copyuid());
    all.next().map(|(_, s, d)| (s, d))
}

#[cfg(test)]
mod tests {
    use super::{is_soft, size_and_date};

    #[test]
    fn size_and_date_are_read_from_fetch_responses_of_either_backend() {
        assert_eq!(
            size_and_date(
                b"* 3 FETCH (UID 7 RFC822.SIZE 1234 INTERNALDATE \"29-Nov-2026 11:00:00 +0000\")\r\n"
            ),
            Some((7, 1234, "29-Nov-2026 11:00:00 +0000".to_string()))
        );
        // Another order (Cyrus may answer UID last).
        assert_eq!(
            size_and_date(
                b"* 1 FETCH (RFC822.SIZE 9 INTERNALDATE \" 1-Dec-2026 01:02:03 -0500\" UID 12)\r\n"
            ),
            Some((12, 9, " 1-Dec-2026 01:02:03 -0500".to_string()))
        );
        assert_eq!(
            size_and_date(b"* 1 FETCH (UID 12 FLAGS (\\Seen))\r\n"),
            None
        );
    }

    #[test]
    fn a_no_without_code_is_soft_unless_cyrus_never_takes_the_message() {
        assert!(is_soft("Server shutting down"));
        assert!(is_soft("[UNAVAILABLE] try later"));
        assert!(!is_soft("[TRYCREATE] No such mailbox"));
        for cyrus in [
            "Message contains bare newlines",
            "Message contains NUL characters",
            "Message contains invalid header",
            "Message contains non-ASCII characters in headers",
            "Message has no header/body separator",
        ] {
            assert!(!is_soft(cyrus), "{cyrus}");
        }
    }
}
