//! One member of the cluster: storage, transport and Raft wired together,
//! and the proposal path the proxy uses.
//!
//! Ordering invariants:
//! - `propose` resolves `Ok` only after the entry is committed (held durably
//!   by a majority) and applied on this node: read-your-writes.
//! - A proposal is retried only when it provably was not taken (this node or
//!   the node asked is not the leader, or the leader could not be dialled).
//!   Once a request may have reached a leader, a failure is reported as
//!   such and never retried, so an entry is never proposed twice.
//! - Without a quorum a proposal fails after `proposal_timeout`; it never
//!   succeeds locally.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::blob::Blobs as Blob;
use crate::sm::StateMachine;
use crate::store::{self, LogStore, ResyncNeeded, SmStore};
use crate::tls::{TlsError, TlsMaterial};
use crate::transport::{
    self, CallError, ForwardError, Network, PeerClient, ProposeFuture, Proposed, Request, Response,
    TransportConfig,
};
use crate::types::raft::Raft;
use crate::types::{NodeId, Payload};

mod submit;
mod upkeep;

pub use self::submit::MIN_LINK_RATE;
#[allow(unused_imports)]
use self::submit::*;
#[allow(unused_imports)]
use self::upkeep::*;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// The UDP address to serve peers on.
    pub listen: SocketAddr,
    /// Every voter of the cluster, this node included, with the `host:port`
    /// this node uses to reach it.
    pub members: BTreeMap<NodeId, String>,
    /// Where the log and the state machine are kept.
    pub data_dir: PathBuf,
    /// This node's certificate, key and the cluster CA.
    pub tls: TlsMaterial,
    /// Leader heartbeat interval. openraft 0.9 also uses it as the timeout
    /// of every AppendEntries RPC, so it must exceed the round trip plus the
    /// time to send and fsync a full batch of entries.
    pub heartbeat: Duration,
    /// Election timeout range: a follower that hears no leader for a random
    /// time in this range starts an election.
    pub election_timeout: (Duration, Duration),
    /// How long a proposal may wait for commit and local apply. A payload
    /// that travels as a blob gets its transfer time at `min_link_rate` on
    /// top, and so do the push and fetch of one.
    pub proposal_timeout: Duration,
    /// The slowest transfer to a peer, in bytes per second, a large
    /// payload is given time for.
    pub min_link_rate: u64,
    /// Applied entries kept in the log for lagging nodes. A node further
    /// behind than this receives a snapshot and must resync its backend.
    pub keep_log_entries: u64,
    /// How often the log is compacted.
    pub compaction_interval: Duration,
    /// Size of one log segment file. The next one is zero-filled in the
    /// background before it is needed.
    pub log_segment_bytes: u64,
    /// How often, while the log moves, redb gets a durable commit (the
    /// state machine's and the application's writes have no fsync of
    /// their own).
    pub state_sync_interval: Duration,
    /// Transport limits.
    pub transport: TransportConfig,
    /// Encoded entries larger than this travel as blobs beside the log.
    pub inline_limit: usize,
    /// Whether this start may create the cluster: on an empty store, write
    /// the initial membership and take part in elections at once. Only for
    /// the very first start of a new cluster. Otherwise a node with an empty
    /// store (a new disk, a wiped directory) waits to be brought up to date
    /// by a leader and refuses to vote until then, so its vote can never
    /// elect a node that lacks committed entries.
    pub bootstrap: bool,
}

impl NodeConfig {
    /// A config with production defaults.
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        members: BTreeMap<NodeId, String>,
        data_dir: PathBuf,
        tls: TlsMaterial,
    ) -> NodeConfig {
        NodeConfig {
            id,
            listen,
            members,
            data_dir,
            tls,
            heartbeat: Duration::from_millis(250),
            election_timeout: (Duration::from_millis(1000), Duration::from_millis(2000)),
            proposal_timeout: Duration::from_secs(5),
            min_link_rate: MIN_LINK_RATE,
            keep_log_entries: 100_000,
            compaction_interval: Duration::from_secs(10),
            log_segment_bytes: crate::store::LOG_SEGMENT_BYTES,
            state_sync_interval: crate::store::STATE_SYNC_INTERVAL,
            transport: TransportConfig::default(),
            inline_limit: 64 * 1024,
            bootstrap: false,
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The config is inconsistent.
    #[error("invalid node config: {0}")]
    Config(String),
    /// The data directory could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// TLS material was refused.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The UDP socket could not be bound.
    #[error("cannot listen for peers on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// openraft refused to start.
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// Why a proposal did not resolve. Every variant means the client must not
/// be told the mutation happened; the proxy answers `NO [UNAVAILABLE]`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// No commit within the timeout: no quorum, or no leader. The entry may
    /// still commit later (then it applies everywhere, as any entry).
    #[error("not committed within {0:?}: no quorum reachable")]
    Timeout(Duration),
    /// The request reached the leader but its reply was lost; the outcome
    /// is unknown.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// A large payload could not be stored on a majority; nothing was
    /// proposed.
    #[error("payload not replicated: {0}")]
    Unreplicated(#[from] crate::blob::ReplicateError),
    /// The node is shutting down or its Raft stopped.
    #[error("the node is shutting down")]
    Shutdown,
    /// The entry could not be encoded or the output decoded.
    #[error("cannot encode or decode: {0}")]
    Codec(String),
    /// Raft stopped with an error.
    #[error("raft failed: {0}")]
    Fatal(String),
}

/// A running node.
pub struct Node<S: StateMachine> {
    id: NodeId,
    raft: Raft,
    db: Arc<redb::Database>,
    log: LogStore,
    sm: Arc<std::sync::Mutex<S>>,
    endpoint: quinn::Endpoint,
    proposal_timeout: Duration,
    inline_limit: usize,
    quorum: usize,
    blobs: Arc<Blob>,
    batch: mpsc::Sender<Job>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The last index of the local log when the node started.
    log_index_at_start: u64,
    /// The last applied index, as it changes.
    applied: tokio::sync::watch::Receiver<u64>,
}

/// A node's view of the cluster at one moment (for `/status`, metrics and
/// readiness), read from one snapshot of openraft's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub state: String,
    /// The current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The last index of the local log.
    pub last_log_index: Option<u64>,
    /// The last index applied here.
    pub applied: Option<u64>,
    /// On the leader: per other member, how many entries of the leader's
    /// log it has not acknowledged.
    pub followers: Vec<(NodeId, u64)>,
    /// On the leader: milliseconds since a majority last acknowledged it.
    pub quorum_ack_ms: Option<u64>,
    /// The number of voters in the membership.
    pub voters: usize,
}

/// The node's own tables beside the replicated state, in the same redb
/// database: local, not replicated (the application's UID maps, its
/// progress, and the work its state machine queues for it). Their commits ride on the log store's durable commits
/// (`state_sync_interval`) unless a transaction asks for
/// `Durability::Immediate` itself.
#[derive(Debug, Clone)]
pub struct LocalTables(Arc<redb::Database>);

impl LocalTables {
    /// Tables over a database of their own, outside a node (the
    /// application's unit tests and tools).
    pub fn standalone(db: redb::Database) -> LocalTables {
        LocalTables(Arc::new(db))
    }

    /// A read transaction (sees committed state, the state machine's too).
    pub fn begin_read(&self) -> Result<redb::ReadTransaction, redb::TransactionError> {
        use redb::ReadableDatabase;
        self.0.begin_read()
    }

    /// A write transaction, for the node's own tables only: the replicated
    /// state is written by applying entries, never here.
    pub fn begin_write(&self) -> Result<redb::WriteTransaction, redb::TransactionError> {
        self.0.begin_write()
    }
}

impl<S: StateMachine> std::fmt::Debug for Node<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.id).finish()
    }
}

impl<S: StateMachine> Node<S> {
    /// Opens the store, binds the peer socket, starts Raft and, on a fresh
    /// store, initializes the cluster with the configured members (every
    /// node does this with the same list, which openraft allows).
    pub async fn start(config: NodeConfig, state_machine: S) -> Result<Node<S>, NodeError> {
        if !config.members.contains_key(&config.id) {
            return Err(NodeError::Config(format!(
                "node {} is not among the members {:?}",
                config.id,
                config.members.keys().collect::<Vec<_>>()
            )));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let db = store::open_database(&config.data_dir.join("raft.redb"))?;

        let endpoint = endpoint(&config)?;
        let peers = peer_clients(&config, &endpoint);

        let raft_config = raft_config(&config)?;

        let blobs = Arc::new(
            Blob::open(
                config.data_dir.join("blobs"),
                peers.clone(),
                config.proposal_timeout,
                config.min_link_rate,
            )
            .map_err(|source| NodeError::DataDir {
                path: config.data_dir.join("blobs"),
                source,
            })?,
        );
        let sm = Arc::new(std::sync::Mutex::new(state_machine));
        let log_store = LogStore::open(
            db.clone(),
            &config.data_dir,
            config.log_segment_bytes,
            config.state_sync_interval,
        )?;
        let log = log_store.clone();
        let log_index_at_start = log_store.last_index().unwrap_or(0);
        let sm_store = SmStore::new(db.clone(), sm.clone(), blobs.clone())
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let applied = sm_store.applied_watch();
        let network = Network {
            peers: peers.clone(),
        };
        let raft = openraft::Raft::new(config.id, raft_config, network, log_store, sm_store)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;

        let members: Arc<Vec<NodeId>> = Arc::new(config.members.keys().copied().collect());
        let leader_raft = raft.clone();
        let propose_here: Arc<dyn Fn(Payload) -> ProposeFuture + Send + Sync> =
            Arc::new(move |payload| {
                let raft = leader_raft.clone();
                Box::pin(async move { write_as_leader(&raft, payload).await })
            });
        let mut tasks = vec![tokio::spawn(transport::serve(
            endpoint.clone(),
            raft.clone(),
            members,
            config.transport.clone(),
            propose_here,
            blobs.clone(),
        ))];

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if !initialized && config.bootstrap {
            bootstrap(&raft, &config).await;
        }

        let submitter = Arc::new(Submitter {
            id: config.id,
            raft: raft.clone(),
            peers: peers.clone(),
            proposal_timeout: config.proposal_timeout,
        });
        let (batch, batch_rx) = mpsc::channel(4 * MAX_BATCH);
        tasks.push(tokio::spawn(batcher(submitter, batch_rx)));
        tasks.push(tokio::spawn(compact(
            raft.clone(),
            config.keep_log_entries,
            config.compaction_interval,
        )));
        tasks.push(tokio::spawn(collect_blobs(log.clone(), blobs.clone())));

        Ok(Node {
            id: config.id,
            raft,
            db,
            log,
            sm,
            endpoint,
            proposal_timeout: config.proposal_timeout,
            inline_limit: config.inline_limit,
            quorum: config.members.len() / 2 + 1,
            blobs,
            batch,
            tasks,
            log_index_at_start,
            applied,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft handle, for the replicator's own tests (membership
    /// changes, metrics waits); the application uses [`Node::status`] and
    /// [`Node::applied`].
    #[cfg(feature = "testing")]
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The node's view of the cluster now.
    pub fn status(&self) -> NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let followers = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != m.id)
                    .map(|(id, matched)| (*id, last.saturating_sub(matched.map_or(0, |l| l.index))))
                    .collect()
            })
            .unwrap_or_default();
        NodeStatus {
            id: m.id,
            state: format!("{:?}", m.state).to_lowercase(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            applied: m.last_applied.map(|l| l.index),
            followers,
            quorum_ack_ms: m.millis_since_quorum_ack,
            voters: m.membership_config.membership().voter_ids().count(),
        }
    }

    /// The index of the last entry applied here (or installed by a
    /// snapshot), as it changes: sent after the transaction that applied
    /// it is committed, so what the state machine wrote is readable then.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Reads committed state: `f` gets a read transaction over the state
    /// machine's tables (and the node's own, [`Node::local_tables`]).
    pub fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Option<T>) -> Option<T> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read().ok()?;
        f(&txn)
    }

    /// The application's state machine, for reads. Reads see applied
    /// entries only.
    pub fn state_machine(&self) -> &Arc<std::sync::Mutex<S>> {
        &self.sm
    }

    /// The node's own tables (see [`LocalTables`]).
    pub fn local_tables(&self) -> LocalTables {
        LocalTables(self.db.clone())
    }

    /// The last index of the local log when the node started: entries up
    /// to it may have been applied before a crash, and are applied again
    /// once known committed.
    pub fn log_index_at_start(&self) -> u64 {
        self.log_index_at_start
    }

    /// The hashes of every blob this node's log refers to.
    pub fn blobs_in_log(&self) -> Result<std::collections::HashSet<crate::blob::Hash>, String> {
        self.log.blob_hashes()
    }

    /// The current leader, as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// True while this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The index of the last entry applied here.
    pub fn applied_index(&self) -> Option<u64> {
        self.raft.metrics().borrow().last_applied.map(|l| l.index)
    }

    /// Whether this node skipped entries by installing a snapshot, so its
    /// backend must be resynchronized (see [`ResyncNeeded`]).
    pub fn needs_resync(&self) -> Option<ResyncNeeded> {
        store::resync_needed(&self.db).ok().flatten()
    }

    /// Proposes `entry`; resolves with the state machine's output once the
    /// entry is committed and applied on this node.
    pub async fn propose<E, O>(&self, entry: &E) -> Result<O, ProposeError>
    where
        E: Serialize,
        O: DeserializeOwned,
    {
        let bytes = postcard::to_stdvec(entry).map_err(|e| ProposeError::Codec(e.to_string()))?;
        let started = Instant::now();
        // A large payload gets its transfer time, and that of the pushes
        // ahead of it on the same links, on top.
        let outgoing =
            (bytes.len() > self.inline_limit).then(|| self.blobs.outgoing(bytes.len() as u64));
        let limit = self.proposal_timeout + outgoing.as_ref().map_or(Duration::ZERO, |o| o.time);
        let deadline = started + limit;
        let submit = async {
            let payload = if let Some(outgoing) = outgoing {
                let len = bytes.len() as u64;
                let hash = self
                    .blobs
                    .replicate(Arc::new(bytes), self.quorum, outgoing.time)
                    .await
                    .map_err(ProposeError::Unreplicated)?;
                drop(outgoing);
                Payload::Blob { hash, len }
            } else {
                Payload::Inline(bytes)
            };
            let (tx, rx) = oneshot::channel();
            self.batch
                .send((payload, tx))
                .await
                .map_err(|_| ProposeError::Shutdown)?;
            rx.await.map_err(|_| ProposeError::Shutdown)?
        };
        let (index, output) = tokio::time::timeout(limit, submit)
            .await
            .map_err(|_| ProposeError::Timeout(limit))??;
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "proposal applied locally")
            .await
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => ProposeError::Timeout(limit),
                openraft::metrics::WaitError::ShuttingDown => ProposeError::Shutdown,
            })?;
        postcard::from_bytes(&output).map_err(|e| ProposeError::Codec(e.to_string()))
    }

    /// Stops Raft while other handles still hold the node (the rest stops
    /// with [`Node::shutdown`] or when the node is dropped).
    pub async fn halt(&self) {
        let _ = self.raft.shutdown().await;
    }

    /// Stops Raft, closes the peer endpoint and ends the node's tasks.
    pub async fn shutdown(self) {
        let _ = self.raft.shutdown().await;
        self.endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
        for t in &self.tasks {
            t.abort();
        }
        self.endpoint.wait_idle().await;
    }
}

/// The node's QUIC endpoint: it listens for peers and dials them, mutual
/// TLS both ways.
fn endpoint(config: &NodeConfig) -> Result<quinn::Endpoint, NodeError> {
    let mut server = config.tls.quinn_server()?;
    server.transport_config(transport::quic_transport());
    let mut client = config.tls.quinn_client()?;
    client.transport_config(transport::quic_transport());
    let mut endpoint =
        quinn::Endpoint::server(server, config.listen).map_err(|source| NodeError::Bind {
            addr: config.listen,
            source,
        })?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// A client for every other member, over `endpoint`.
fn peer_clients(
    config: &NodeConfig,
    endpoint: &quinn::Endpoint,
) -> Arc<BTreeMap<NodeId, Arc<PeerClient>>> {
    let peers: BTreeMap<NodeId, Arc<PeerClient>> = config
        .members
        .iter()
        .filter(|(id, _)| **id != config.id)
        .map(|(id, addr)| {
            let client = PeerClient::new(
                *id,
                addr.clone(),
                endpoint.clone(),
                config.transport.clone(),
            );
            (*id, Arc::new(client))
        })
        .collect();
    Arc::new(peers)
}

/// openraft's configuration from the node's.
fn raft_config(config: &NodeConfig) -> Result<Arc<openraft::Config>, NodeError> {
    let raft_config = openraft::Config {
        cluster_name: "tandem".to_string(),
        heartbeat_interval: config.heartbeat.as_millis() as u64,
        election_timeout_min: config.election_timeout.0.as_millis() as u64,
        election_timeout_max: config.election_timeout.1.as_millis() as u64,
        install_snapshot_timeout: 10_000,
        max_payload_entries: 16,
        snapshot_policy: SnapshotPolicy::Never,
        // openraft purges up to (snapshot - this) after every snapshot;
        // the compaction task decides what to purge (it keeps what the
        // slowest voter still needs), so openraft never purges by itself.
        max_in_snapshot_log_to_keep: u64::MAX,
        purge_batch_size: 1,
        ..Default::default()
    }
    .validate()
    .map_err(|e| NodeError::Config(e.to_string()))?;
    Ok(Arc::new(raft_config))
}

/// The very first start of a new cluster: every node initializes with the
/// same members; a node that already received the membership from another
/// refuses, which is fine.
async fn bootstrap(raft: &Raft, config: &NodeConfig) {
    let voters: BTreeMap<NodeId, BasicNode> = config
        .members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    if let Err(e) = raft.initialize(voters).await {
        tracing::debug!(error = %e, "initialize skipped");
    }
}
