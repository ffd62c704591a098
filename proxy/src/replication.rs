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

use tandem_replicator::{Node, NodeConfig, ProposeError};
use tokio::sync::watch;

use crate::apply::{self, Applier, MailboxMap, Maps, Progress};
use crate::config::{BackendConfig, Config};
use crate::secret::Secret;

mod adopt;
use tandem_state::{Canon, Entry, Mailbox, Op, Outcome};

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

/// Why a node's replication could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Raft node did not start (store, socket, TLS, membership).
    #[error(transparent)]
    Node(#[from] tandem_replicator::NodeError),
    /// The applier's tables could not be opened.
    #[error(transparent)]
    Store(#[from] apply::StoreError),
    /// The backend's admin password could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Replication {
    /// Starts the Raft node for `config` (node settings from
    /// `node_config`) and, on a mail node, the applier toward its backend.
    pub async fn start(
        config: &Config,
        node_config: NodeConfig,
    ) -> Result<Arc<Replication>, StartError> {
        let backend = config.backend().cloned();
        let sm = Canon::new(backend.is_some());
        let node = Node::start(node_config, sm).await?;
        let locks = Arc::new(apply::UserLocks::default());
        let mut backend_access = None;
        let (maps, progress, applier, apply_timeout) = match backend {
            Some(b) => {
                let password = b.admin_password()?;
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
