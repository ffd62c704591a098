//! A node's replication: the Raft node with the canonical state machine,
//! the applier that carries committed entries to the local backend, and the
//! UID maps the sessions rewrite with.
//!
//! Ordering invariants:
//! - A session learns the outcome of a mutation only from
//!   [`Replication::mutate`], which returns after the entry is committed on
//!   a majority, applied to the canonical state here, and applied to this
//!   node's backend.
//! - A proposal that fails may still commit later (see
//!   [`tandem_replicator::ProposeError`]); it then applies everywhere like
//!   any entry. The client was told NO [UNAVAILABLE], never OK.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_parser::response::Response;
use tandem_parser::seqset::Ranges;
use tandem_replicator::{Node, NodeConfig, ProposeError};
use tokio::sync::watch;

use crate::apply::{self, Applier, MailboxMap, Maps, Progress};
use crate::backend::{BackendConn, Status};
use crate::config::{BackendConfig, Config};
use crate::secret::Secret;
use tandem_state::{Canon, Entry, Mailbox, NewMessage, Op, Outcome, Replaces};

/// Most messages adopted by one entry.
const ADOPT_BATCH: usize = 50;

/// A running replicated node.
pub struct Replication {
    /// The Raft node.
    pub node: Node<Canon>,
    maps: Option<Arc<Maps>>,
    progress: Option<Arc<Progress>>,
    applier: Option<tokio::task::JoinHandle<()>>,
    /// How long a session waits for the local backend to apply a committed
    /// entry before answering NO.
    apply_timeout: Duration,
    backend: Option<(BackendConfig, Secret<String>)>,
    /// Shared with the applier: a user's lock is held while one of the
    /// user's items is applied.
    locks: Arc<apply::UserLocks>,
    /// Mailboxes being scanned for adoption.
    adopting: Mutex<HashSet<(String, String)>>,
    /// Messages delivered behind tandem that a Cyrus node could not store,
    /// left unadopted: (user, mailbox, local UIDVALIDITY, local UID). Kept
    /// so each is warned about once and counted as covered.
    unadoptable: Mutex<HashSet<(String, String, u32, u32)>>,
    /// The task that registers this node's backend kind (aborted at
    /// shutdown: it may hold the node during a proposal).
    registering: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The last index of the local log when the node started: entries up
    /// to it may have been applied before a crash (see [`Self::settled`]).
    start_log_index: u64,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("node", &self.node.id())
            .finish_non_exhaustive()
    }
}

/// Flags, internal date and body of a `UID FETCH (FLAGS INTERNALDATE
/// BODY.PEEK[])` reply.
fn fetched_message(r: &crate::backend::Reply) -> Option<NewMessage> {
    r.untagged.iter().find_map(|line| {
        let resp = Response::parse(line).ok()?;
        let body = resp.first_literal()?.to_vec();
        let flags = resp
            .fetch_flags()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| !f.eq_ignore_ascii_case(b"\\Recent"))
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        let date = resp
            .internal_date()
            .map(|d| String::from_utf8_lossy(&d).into_owned());
        Some(NewMessage { flags, date, body })
    })
}

/// `TANDEM_TEST_ACK_BEFORE_COMMIT=1`: the chaos campaign's negative
/// control, which breaks invariant 1 on purpose so the checker can be seen
/// to catch it. Logged loudly at start. Compiled only with the
/// `test-hooks` feature (the test harness's builds): a `tandem` built for
/// production cannot acknowledge before commit, whatever its environment.
#[cfg(not(feature = "test-hooks"))]
fn unsafe_ack_for_tests() -> bool {
    false
}

/// See above: the build with `test-hooks`.
#[cfg(feature = "test-hooks")]
fn unsafe_ack_for_tests() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var("TANDEM_TEST_ACK_BEFORE_COMMIT").as_deref() == Ok("1");
        if on {
            tracing::error!("TANDEM_TEST_ACK_BEFORE_COMMIT=1: APPENDs are acknowledged before commit (test only; UIDs may be reused)");
        }
        on
    })
}

/// Why a mutation did not go through.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    /// Not committed (no quorum, timeout, shutdown): answer
    /// `NO [UNAVAILABLE]`.
    #[error("{0}")]
    Unavailable(#[from] ProposeError),
    /// Committed, but the local backend refused or has not applied it.
    #[error("{text}")]
    Backend {
        /// The outcome the log gave (UIDs allocated).
        outcome: Outcome,
        /// The backend's words.
        text: String,
    },
}

impl Replication {
    /// Starts the Raft node for `config` (node settings from
    /// `node_config`) and, on a mail node, the applier toward its backend.
    pub async fn start(
        config: &Config,
        node_config: NodeConfig,
    ) -> Result<Arc<Replication>, String> {
        let backend = config.backend().cloned();
        let sm = Canon::new(backend.is_some());
        let node = Node::start(node_config, sm)
            .await
            .map_err(|e| e.to_string())?;
        let locks = Arc::new(apply::UserLocks::default());
        let mut backend_access = None;
        let (maps, progress, applier, apply_timeout) = match backend {
            Some(b) => {
                let password = b.admin_password().map_err(|e| e.to_string())?;
                backend_access = Some((b.clone(), password.clone()));
                let (maps, progress) = apply::open(node.local_tables())?;
                let timeout = b.command_timeout();
                // The applied index moves once applied entries are
                // committed to the store: the applier then sees the new
                // outbox items.
                let task = Applier::new(
                    node.local_tables(),
                    b,
                    password,
                    maps.clone(),
                    progress.clone(),
                    node.applied(),
                    node.id(),
                    locks.clone(),
                );
                let handle = tokio::spawn(task.run());
                (Some(maps), Some(progress), Some(handle), timeout)
            }
            None => (None, None, None, Duration::from_secs(30)),
        };
        let kind = backend_access.as_ref().map(|(b, _)| b.kind.to_string());
        let start_log_index = node.log_index_at_start();
        let rep = Arc::new(Replication {
            node,
            maps,
            progress,
            applier,
            apply_timeout,
            backend: backend_access,
            locks,
            adopting: Mutex::new(HashSet::new()),
            unadoptable: Mutex::new(HashSet::new()),
            registering: Mutex::new(None),
            start_log_index,
        });
        if let Some(kind) = kind {
            let task = tokio::spawn(register_backend(Arc::downgrade(&rep), kind));
            if let Ok(mut r) = rep.registering.lock() {
                *r = Some(task);
            }
        }
        Ok(rep)
    }

    /// The mail nodes' backend kinds registered so far, as (node, kind).
    pub fn registered_backends(&self) -> Vec<(u64, String)> {
        self.node
            .read(|txn| Some(tandem_state::registered_backends(txn)))
            .unwrap_or_default()
    }

    /// Whether APPENDs of messages Cyrus refuses are refused (a node in
    /// front of Cyrus has registered), in the committed state.
    pub fn strict_messages(&self) -> bool {
        self.node
            .read(|txn| Some(tandem_state::strict_messages(txn)))
            .unwrap_or(true)
    }

    /// Asks for the messages of `user`'s `mailbox` that this node's backend
    /// holds without a canonical UID (delivered straight into the backend)
    /// to be adopted: replicated to every node as new messages with
    /// canonical UIDs, the originals expunged here. Runs in the background;
    /// a second request for a mailbox being scanned is ignored. `seen` is
    /// the message count the backend reported (`u64::MAX` if unknown): once
    /// the applier is done with the item in hand, a map that covers it means
    /// there is nothing to adopt (the usual case: a message the applier was
    /// still recording).
    pub fn request_adoption(self: &Arc<Self>, user: &str, mailbox: &str, seen: u64) {
        let key = (user.to_string(), tandem_state::normalize(mailbox));
        let fresh = self
            .adopting
            .lock()
            .map(|mut a| a.insert(key.clone()))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            drop(me.locks.of(&key.0).lock().await);
            let covered = me
                .mailbox(&key.0, &key.1)
                .and_then(|m| me.map(&key.0, m.uidvalidity))
                .is_some_and(|m| {
                    let left = me.unadoptable_in(&key.0, &key.1, m.local_uidvalidity);
                    m.to_local.len() + left >= seen
                });
            let result = if covered {
                Ok(0)
            } else {
                me.adopt(&key.0, &key.1).await
            };
            match result {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(mailbox = %key.1, messages = n, "adopted messages delivered behind tandem")
                }
                Err(e) => {
                    tracing::warn!(mailbox = %key.1, error = %e, "adoption failed; will retry when seen again")
                }
            }
            if let Ok(mut a) = me.adopting.lock() {
                a.remove(&key);
            }
        });
    }

    /// Whether every change of `user` this node knows of has reached its
    /// backend: a leader is known, the entries the local log held at start
    /// (or all of it, if less) are applied, and the applier has handed on
    /// every queued item and holds none of the user's. Until then, an
    /// unmapped message may be the applier's own, applied before a crash
    /// and about to be found again (in doubt), not mail delivered behind
    /// tandem. Waits up to 5 s.
    async fn settled(&self, user: &str) -> bool {
        let Some(progress) = &self.progress else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let settled = {
                let s = self.node.status();
                let applied = s.applied.unwrap_or(0);
                let last = s.last_log_index.unwrap_or(0);
                let queued = self
                    .node
                    .read(|txn| Some(tandem_state::last_seq(txn)))
                    .unwrap_or(0);
                s.leader.is_some()
                    && applied >= last.min(self.start_log_index)
                    && progress.read_to() >= queued
                    && progress.idle(user)
            };
            if settled {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn adopt(&self, user: &str, mailbox: &str) -> Result<usize, String> {
        let strict = self.strict_messages();
        let (cfg, password) = self.backend.clone().ok_or("no backend")?;
        let canon = self.mailbox(user, mailbox).ok_or("no such mailbox")?;
        let mut conn = BackendConn::connect(&cfg)
            .await
            .map_err(|e| e.to_string())?;
        let r = conn
            .login_as(&cfg, &password, user)
            .await
            .map_err(|e| e.to_string())?;
        if r.status != Status::Ok {
            return Err(format!("admin login refused: {}", r.text));
        }
        let mut total = 0;
        // Local UIDs at or below it have been looked at in this scan: the
        // copies an adoption appends get UIDs above the originals not yet
        // looked at, so the next search starts here, not above the map.
        let mut cursor: Option<u32> = None;
        loop {
            if !self.settled(user).await {
                return Err("the applier has this user's changes in hand".to_string());
            }
            // Scanned while the applier is paused: every message it appends
            // is mapped before it lets go.
            let lock = self.locks.of(user);
            let guard = lock.lock().await;
            let map = self.map(user, canon.uidvalidity).ok_or("no local map")?;
            let mut cmd = b"EXAMINE ".to_vec();
            tandem_parser::encode::astring(&mut cmd, mailbox.as_bytes());
            let r = conn.command(&cmd).await.map_err(|e| e.to_string())?;
            if r.status != Status::Ok {
                return Err(format!("EXAMINE: {}", r.text));
            }
            let local_uv = r
                .untagged
                .iter()
                .find_map(|l| Response::parse(l).ok()?.uidvalidity())
                .ok_or("no UIDVALIDITY")?;
            if local_uv != map.local_uidvalidity {
                return Err("the backend's mailbox was replaced behind tandem".to_string());
            }
            // Every local UID from here up that the map does not hold: a
            // message delivered behind tandem may sit between two the
            // applier appended, below the highest mapped one.
            let from = match cursor {
                None => 1,
                Some(u32::MAX) => return Ok(total),
                Some(c) => c + 1,
            };
            let mut q = b"UID SEARCH UID ".to_vec();
            q.extend_from_slice(&unmapped_from(&map.to_canon, from).to_bytes());
            let r = conn.command(&q).await.map_err(|e| e.to_string())?;
            let mut found: Vec<u32> = crate::apply::search_numbers(&r)
                .into_iter()
                .filter(|&u| u >= from)
                .collect();
            found.sort_unstable();
            found.truncate(ADOPT_BATCH);
            let Some(&last) = found.last() else {
                return Ok(total);
            };
            cursor = Some(last);
            // Copies appended by this scan's earlier batches are mapped.
            found.retain(|&u| tandem_parser::uidmap::UidMap::map_one(&map.to_canon, u).is_none());
            let mut messages = Vec::new();
            let mut adopted = Vec::new();
            for uid in found {
                let q = format!("UID FETCH {uid} (FLAGS INTERNALDATE BODY.PEEK[])");
                let r = conn
                    .command(q.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                let message = fetched_message(&r).ok_or("cannot read a message to adopt")?;
                // What another node's backend would refuse stays here,
                // hidden (never shown through tandem): replicating it would
                // leave the nodes disagreeing.
                if let Err(defect) = tandem_parser::message::check(&message.body) {
                    if strict {
                        let first = self.unadoptable.lock().is_ok_and(|mut s| {
                            s.insert((user.to_string(), mailbox.to_string(), local_uv, uid))
                        });
                        if first {
                            tracing::warn!(%mailbox, uid, %defect, "a message delivered behind tandem is not adopted and stays hidden: a Cyrus node could not store it");
                        }
                        continue;
                    }
                }
                messages.push(message);
                adopted.push(uid);
            }
            drop(guard);
            if messages.is_empty() {
                continue;
            }
            let found = adopted;
            let n = found.len();
            let op = Op::Append {
                mailbox: mailbox.to_string(),
                messages,
                replaces: Some(Replaces {
                    node: self.node.id(),
                    local_uidvalidity: local_uv,
                    uids: found,
                }),
            };
            match self.propose(user, op).await {
                Ok(Outcome::Ok { .. }) => total += n,
                Ok(Outcome::No { text, .. }) => return Err(text),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// How many messages of `user`'s `mailbox` (local UIDVALIDITY
    /// `local_uv`) were left unadopted.
    fn unadoptable_in(&self, user: &str, mailbox: &str, local_uv: u32) -> u64 {
        self.unadoptable.lock().map_or(0, |s| {
            s.iter()
                .filter(|(u, m, v, _)| u == user && m == mailbox && *v == local_uv)
                .count() as u64
        })
    }

    /// Stops the applier and the Raft node.
    pub async fn shutdown(self: Arc<Self>) {
        let registering = self.registering.lock().ok().and_then(|mut r| r.take());
        if let Some(task) = registering {
            task.abort();
            let _ = task.await;
        }
        if let Some(a) = &self.applier {
            a.abort();
        }
        match Arc::try_unwrap(self) {
            Ok(r) => r.node.shutdown().await,
            Err(r) => {
                r.node.halt().await;
            }
        }
    }

    /// Proposes `op` for `user` and waits until it is committed and applied
    /// to this node's backend. `Ok(Outcome::No)` is a canonical refusal
    /// (nothing happened anywhere).
    pub async fn mutate(self: &Arc<Self>, user: &str, op: Op) -> Result<Outcome, MutateError> {
        if let (
            true,
            Op::Append {
                mailbox, messages, ..
            },
        ) = (unsafe_ack_for_tests(), &op)
        {
            // The negative control of the chaos checker: answer from the
            // local view before anything is committed. Never in production.
            let m = self.mailbox(user, mailbox).ok_or_else(|| {
                MutateError::Unavailable(ProposeError::Codec("no mailbox".to_string()))
            })?;
            let uids = (m.uidnext..m.uidnext + messages.len() as u32).collect();
            let me = self.clone();
            let (user, op) = (user.to_string(), op.clone());
            tokio::spawn(async move { me.propose(&user, op).await });
            return Ok(Outcome::Ok {
                seq: 0,
                uidvalidity: m.uidvalidity,
                uids,
                source: Vec::new(),
            });
        }
        self.propose(user, op).await
    }

    async fn propose(&self, user: &str, op: Op) -> Result<Outcome, MutateError> {
        let entry = Entry {
            origin: self.node.id(),
            at_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            user: user.to_string(),
            op,
        };
        let started = std::time::Instant::now();
        let count = |outcome: &'static str| {
            metrics::counter!("tandem_proposals_total", "outcome" => outcome).increment(1);
        };
        let outcome: Outcome = match self.node.propose(&entry).await {
            Ok(o) => o,
            Err(e) => {
                count("unavailable");
                return Err(e.into());
            }
        };
        metrics::histogram!("tandem_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Outcome::Ok { seq, .. } = &outcome {
            if let Some(p) = &self.progress {
                if let Err(text) = p.wait(*seq, self.apply_timeout).await {
                    count("backend_refused");
                    return Err(MutateError::Backend { outcome, text });
                }
            }
            count("ok");
        } else {
            count("refused");
        }
        Ok(outcome)
    }

    /// The committed canonical state of `user`'s mailbox `name`.
    pub fn mailbox(&self, user: &str, name: &str) -> Option<Mailbox> {
        self.node
            .read(|txn| tandem_state::read_mailbox(txn, user, name))
    }

    /// This node's UID map of a canonical mailbox.
    pub fn map(&self, user: &str, uidvalidity: u32) -> Option<Arc<MailboxMap>> {
        self.maps.as_ref()?.get(user, uidvalidity)
    }

    /// This node's UID map of a canonical mailbox, waiting for it up to the
    /// backend's command timeout while this node's backend has committed
    /// items to apply: a mailbox just created through another node is on
    /// its way. With nothing left to apply (the backend refused it), at once.
    pub async fn wait_map(&self, user: &str, uidvalidity: u32) -> Option<Arc<MailboxMap>> {
        let mut changes = self.map_changes()?;
        let deadline = tokio::time::Instant::now() + self.apply_timeout;
        loop {
            if let Some(m) = self.map(user, uidvalidity) {
                return Some(m);
            }
            if self.lag().0 == 0 {
                return None;
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            // A map change wakes it; the lag is looked at again at least
            // every 100 ms (an item the backend refused changes no map).
            let tick = (tokio::time::Instant::now() + Duration::from_millis(100)).min(deadline);
            if let Ok(Err(_)) = tokio::time::timeout_at(tick, changes.changed()).await {
                return self.map(user, uidvalidity);
            }
        }
    }

    /// A number that changes whenever a UID map does.
    pub fn map_version(&self) -> u64 {
        self.maps.as_ref().map_or(0, |m| m.version())
    }

    /// Changes whenever a UID map does.
    pub fn map_changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.maps.as_ref()?.subscribe())
    }

    /// The backend's replication lag: committed items it has not applied,
    /// and the age in seconds of the oldest (by its proposer's clock).
    pub fn lag(&self) -> (u64, f64) {
        use redb::{ReadableTable, ReadableTableMetadata};
        let read = |txn: &redb::ReadTransaction| -> Option<(u64, f64)> {
            let t = txn.open_table(tandem_state::OUTBOX).ok()?;
            let n = t.len().ok()?;
            let (_, first) = t.first().ok()??;
            let (at, _): tandem_state::Queued = postcard::from_bytes(first.value()).ok()?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()?
                .as_secs_f64();
            Some((n, (now - at as f64).max(0.0)))
        };
        self.node.read(read).unwrap_or((0, 0.0))
    }
}

/// Most gaps between mapped runs an adoption scan names in its search; with
/// more, it searches everything from its cursor up and leaves out what is
/// mapped afterwards.
const MAX_SCAN_GAPS: usize = 500;

/// The local UIDs from `from` up that `to_canon` (local -> canonical) does
/// not map: the gaps between its runs, and everything above them.
fn unmapped_from(to_canon: &tandem_parser::uidmap::RunMap, from: u32) -> Ranges {
    let mut gaps = Vec::new();
    let mut next = u64::from(from);
    for &(start, _, len) in to_canon.runs() {
        let (start, end) = (u64::from(start), u64::from(start) + u64::from(len) - 1);
        if end < next {
            continue;
        }
        if start > next {
            gaps.push((next as u32, (start - 1) as u32));
        }
        next = end + 1;
    }
    if next <= u64::from(u32::MAX) {
        gaps.push((next as u32, u32::MAX));
    }
    if gaps.len() > MAX_SCAN_GAPS {
        gaps = vec![(from, u32::MAX)];
    }
    Ranges::from_ranges(gaps)
}

/// Records this mail node's backend kind in the replicated state, once
/// (`Op::RegisterBackend`), retrying until it is committed or the node
/// stops. Holds the node weakly, so shutdown is not held up.
async fn register_backend(rep: std::sync::Weak<Replication>, kind: String) {
    loop {
        let Some(me) = rep.upgrade() else { return };
        let id = me.node.id();
        let registered = me
            .node
            .read(|txn| Some(tandem_state::backend_registered(txn, id, &kind)))
            .unwrap_or(false);
        if registered {
            return;
        }
        let op = Op::RegisterBackend {
            node: id,
            kind: kind.clone(),
        };
        match me.propose("", op).await {
            Ok(_) => return,
            Err(e) => tracing::debug!(error = %e, "registering the backend kind; will retry"),
        }
        drop(me);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::unmapped_from;
    use tandem_parser::uidmap::RunMap;

    #[test]
    fn the_scan_names_the_gaps_between_mapped_runs_and_everything_above() {
        // Local 1-3 and 6-7 mapped; 4-5 delivered behind tandem between them.
        let map = RunMap::from_runs(vec![(1, 1, 3), (6, 4, 2)]).unwrap();
        let all = unmapped_from(&map, 1);
        assert_eq!(all.ranges(), [(4, 5), (8, u32::MAX)]);
        assert_eq!(unmapped_from(&map, 5).ranges(), [(5, 5), (8, u32::MAX)]);
        assert_eq!(unmapped_from(&map, 9).ranges(), [(9, u32::MAX)]);
        assert_eq!(
            unmapped_from(&RunMap::default(), 1).ranges(),
            [(1, u32::MAX)]
        );
        let full = RunMap::from_runs(vec![(1, 1, u32::MAX)]).unwrap();
        assert!(unmapped_from(&full, 1).is_empty());
    }

    #[test]
    fn too_many_gaps_become_one_range_from_the_cursor() {
        let runs = (0..1000).map(|i| (1 + 2 * i, 1 + i, 1)).collect();
        let map = RunMap::from_runs(runs).unwrap();
        assert_eq!(unmapped_from(&map, 3).ranges(), [(3, u32::MAX)]);
    }
}
