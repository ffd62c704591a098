//! Raft RPCs over QUIC with mutual TLS.
//!
//! One QUIC connection per ordered pair of nodes (the caller's client to the
//! callee's server), one bidirectional stream per RPC: the request is a
//! postcard message written and finished, the reply likewise. Streams are
//! independent, so a large AppendEntries does not hold up a vote or a
//! proposal on another stream.
//!
//! Ordering invariants:
//! - A server answers an RPC only after checking that the caller's
//!   certificate is the one of the node the RPC claims to come from.
//! - A node with an empty log grants no vote (see `NodeConfig::bootstrap`).
//! - A failed stream never closes the connection other streams share; a
//!   closed connection is dialled again on the next call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::tls::{node_name, peer_node_id};
use crate::types::raft::Raft;
use crate::types::{Hash, NodeId, Output, Payload, TypeConfig};

/// What the transport serves of a node's large payloads. The store itself
/// (`crate::blob`) pushes and fetches through the transport, so the
/// transport knows it only by this trait: the dependency goes one way.
pub(crate) trait BlobStore: Send + Sync {
    /// Stores `data` durably; its hash.
    fn put(&self, data: &[u8]) -> std::io::Result<Hash>;
    /// The payload with this hash, if this node holds it.
    fn get(&self, hash: &Hash) -> Option<Vec<u8>>;
}

/// A request on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower forwards an application entry to the leader.
    Propose(Payload),
    /// Store a large payload (see [`crate::blob`]).
    PutBlob {
        hash: Hash,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Send a large payload this node may hold.
    GetBlob {
        hash: Hash,
    },
}

/// A reply on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Propose(Result<Proposed, ForwardError>),
    BlobStored(Result<(), String>),
    Blob(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The server refused the request (wrong sender, undecodable).
    Refused(String),
}

/// A proposal the leader committed: its index and the leader's apply output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Proposed {
    pub index: u64,
    pub output: Output,
}

/// Why the leader did not take a forwarded proposal.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("node is not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("{0}")]
    Failed(String),
}

/// Transport limits and timeouts.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Largest request or reply accepted on one stream.
    pub max_message_bytes: usize,
    /// Dial timeout.
    pub connect_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_message_bytes: 256 * 1024 * 1024,
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Errors of one call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("cannot reach node {target} at {addr}: {message}")]
    Unreachable {
        target: NodeId,
        addr: String,
        message: String,
    },
    #[error("RPC to node {target} failed: {message}")]
    Failed { target: NodeId, message: String },
}

/// QUIC transport settings shared by both sides: keep-alives detect a dead
/// peer; windows let large entries through.
pub(crate) fn quic_transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_millis(300)));
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(2)).expect("2 s is a valid idle timeout"),
    ));
    t.stream_receive_window(quinn::VarInt::from_u32(16 * 1024 * 1024));
    t.receive_window(quinn::VarInt::from_u32(64 * 1024 * 1024));
    t.send_window(64 * 1024 * 1024);
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(1024));
    // BBR does not read random loss as congestion the way Cubic does; with
    // 2% loss it keeps large transfers moving.
    t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    Arc::new(t)
}

/// A client to one peer, shared by the Raft network and the proposal
/// forwarder.
#[derive(Debug)]
pub(crate) struct PeerClient {
    target: NodeId,
    addr: String,
    endpoint: quinn::Endpoint,
    config: TransportConfig,
    conn: Mutex<Option<quinn::Connection>>,
}

impl PeerClient {
    pub(crate) fn new(
        target: NodeId,
        addr: String,
        endpoint: quinn::Endpoint,
        config: TransportConfig,
    ) -> PeerClient {
        PeerClient {
            target,
            addr,
            endpoint,
            config,
            conn: Mutex::new(None),
        }
    }

    async fn connection(&self) -> Result<quinn::Connection, CallError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.close_reason().is_none() {
                return Ok(c.clone());
            }
        }
        let unreachable = |message: String| CallError::Unreachable {
            target: self.target,
            addr: self.addr.clone(),
            message,
        };
        let addr: SocketAddr = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("no address".to_string()))?;
        let connecting = self
            .endpoint
            .connect(addr, &node_name(self.target))
            .map_err(|e| unreachable(e.to_string()))?;
        let conn = tokio::time::timeout(self.config.connect_timeout, connecting)
            .await
            .map_err(|_| unreachable("connect timed out".to_string()))?
            .map_err(|e| unreachable(e.to_string()))?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Sends one request and waits for its reply, within `timeout`.
    pub(crate) async fn call(
        &self,
        req: &Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let bytes = postcard::to_stdvec(req).map_err(|e| CallError::Failed {
            target: self.target,
            message: e.to_string(),
        })?;
        self.call_encoded(&bytes, timeout).await
    }

    /// Like [`PeerClient::call`] with a request already encoded, so one
    /// encoding can go to several peers (a blob is not copied per peer).
    pub(crate) async fn call_encoded(
        &self,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let result = tokio::time::timeout(timeout, self.call_inner(bytes)).await;
        // A timed-out stream is dropped (reset) by leaving this scope; the
        // connection stays for the other streams. A dead connection is
        // noticed by its close reason (idle timeout, stateless reset) and
        // dialled again on the next call.
        match result {
            Ok(r) => r,
            Err(_) => Err(CallError::Failed {
                target: self.target,
                message: format!("no reply within {timeout:?}"),
            }),
        }
    }

    async fn call_inner(&self, bytes: &[u8]) -> Result<Response, CallError> {
        let conn = self.connection().await?;
        let failed = |message: String| CallError::Failed {
            target: self.target,
            message,
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
        send.write_all(bytes)
            .await
            .map_err(|e| failed(e.to_string()))?;
        send.finish().map_err(|e| failed(e.to_string()))?;
        let reply = recv
            .read_to_end(self.config.max_message_bytes)
            .await
            .map_err(|e| failed(e.to_string()))?;
        postcard::from_bytes(&reply).map_err(|e| failed(format!("undecodable reply: {e}")))
    }
}

/// Creates Raft network clients from the local table of peer addresses
/// (not from the addresses in the membership: each node may reach a peer
/// by a different route, e.g. through a test relay).
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub(crate) peers: Arc<BTreeMap<NodeId, Arc<PeerClient>>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        PeerNetwork {
            target,
            client: self.peers.get(&target).cloned(),
        }
    }
}

/// The Raft network to one peer.
#[derive(Debug)]
pub(crate) struct PeerNetwork {
    target: NodeId,
    client: Option<Arc<PeerClient>>,
}

impl PeerNetwork {
    async fn rpc<E: std::error::Error>(
        &self,
        req: Request,
        option: &RPCOption,
    ) -> Result<Response, RPCError<NodeId, BasicNode, E>> {
        let Some(client) = &self.client else {
            let e = std::io::Error::other(format!("node {} has no address", self.target));
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        match client.call(&req, option.hard_ttl()).await {
            Ok(Response::Refused(why)) => Err(RPCError::Network(NetworkError::new(
                &std::io::Error::other(format!("refused by node {}: {why}", self.target)),
            ))),
            Ok(r) => Ok(r),
            Err(e @ CallError::Unreachable { .. }) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

fn unexpected<E: std::error::Error>(target: NodeId) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
        "node {target} sent a reply of the wrong kind"
    ))))
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.rpc(Request::AppendEntries(rpc), &option).await? {
            Response::AppendEntries(Ok(r)) => Ok(r),
            Response::AppendEntries(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected(self.target)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.rpc(Request::InstallSnapshot(rpc), &option).await? {
            Response::InstallSnapshot(Ok(r)) => Ok(r),
            Response::InstallSnapshot(Err(e)) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected(self.target)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.rpc(Request::Vote(rpc), &option).await? {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(unexpected(self.target)),
        }
    }
}

/// Serves Raft RPCs and forwarded proposals on `endpoint` until it closes.
pub(crate) async fn serve(
    endpoint: quinn::Endpoint,
    raft: Raft,
    members: Arc<Vec<NodeId>>,
    config: TransportConfig,
    propose: Arc<dyn Fn(Payload) -> ProposeFuture + Send + Sync>,
    blobs: Arc<dyn BlobStore>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let blobs = blobs.clone();
        let raft = raft.clone();
        let members = members.clone();
        let config = config.clone();
        let propose = propose.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "peer handshake failed");
                    return;
                }
            };
            let Some(peer) = identify(&conn, &members) else {
                tracing::warn!(remote = %conn.remote_address(), "refused a peer whose certificate names no cluster member");
                conn.close(quinn::VarInt::from_u32(1), b"unknown node");
                return;
            };
            loop {
                let (send, recv) = match conn.accept_bi().await {
                    Ok(s) => s,
                    Err(_) => return,
                };
                let raft = raft.clone();
                let config = config.clone();
                let propose = propose.clone();
                let blobs = blobs.clone();
                tokio::spawn(async move {
                    handle_stream(peer, send, recv, raft, config, propose, blobs).await;
                });
            }
        });
    }
}

/// A boxed future of a forwarded proposal's outcome.
pub(crate) type ProposeFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Proposed, ForwardError>> + Send>>;

fn identify(conn: &quinn::Connection, members: &[NodeId]) -> Option<NodeId> {
    let identity = conn.peer_identity()?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    let leaf = certs.first()?;
    peer_node_id(leaf, members.iter().copied())
}

async fn handle_stream(
    peer: NodeId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    raft: Raft,
    config: TransportConfig,
    propose: Arc<dyn Fn(Payload) -> ProposeFuture + Send + Sync>,
    blobs: Arc<dyn BlobStore>,
) {
    let Ok(bytes) = recv.read_to_end(config.max_message_bytes).await else {
        return;
    };
    let response = match postcard::from_bytes::<Request>(&bytes) {
        Err(e) => Response::Refused(format!("undecodable request: {e}")),
        Ok(Request::AppendEntries(rpc)) if rpc.vote.leader_id.node_id != peer => {
            Response::Refused(format!(
                "node {peer} sent entries as node {}",
                rpc.vote.leader_id.node_id
            ))
        }
        Ok(Request::Vote(rpc)) if rpc.vote.leader_id.node_id != peer => Response::Refused(format!(
            "node {peer} asked a vote for node {}",
            rpc.vote.leader_id.node_id
        )),
        Ok(Request::InstallSnapshot(rpc)) if rpc.vote.leader_id.node_id != peer => {
            Response::Refused(format!(
                "node {peer} sent a snapshot as node {}",
                rpc.vote.leader_id.node_id
            ))
        }
        Ok(Request::AppendEntries(rpc)) => Response::AppendEntries(raft.append_entries(rpc).await),
        // A node whose log is empty has not been bootstrapped and has not
        // heard from a leader: it may have lost its disk. Its vote could
        // elect a candidate lacking committed entries, so it gives none.
        Ok(Request::Vote(_)) if raft.metrics().borrow().last_log_index.is_none() => {
            Response::Refused("this node has an empty log and does not vote yet".to_string())
        }
        Ok(Request::Vote(rpc)) => Response::Vote(raft.vote(rpc).await),
        Ok(Request::InstallSnapshot(rpc)) => {
            Response::InstallSnapshot(raft.install_snapshot(rpc).await)
        }
        Ok(Request::Propose(payload)) => Response::Propose(propose(payload).await),
        Ok(Request::PutBlob { hash, data }) => {
            let blobs = blobs.clone();
            let stored = tokio::task::spawn_blocking(move || blobs.put(&data)).await;
            Response::BlobStored(match stored {
                Ok(Ok(h)) if h == hash => Ok(()),
                Ok(Ok(_)) => Err("content does not match its hash".to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(e.to_string()),
            })
        }
        Ok(Request::GetBlob { hash }) => {
            let blobs = blobs.clone();
            Response::Blob(
                tokio::task::spawn_blocking(move || blobs.get(&hash))
                    .await
                    .ok()
                    .flatten(),
            )
        }
    };
    let Ok(bytes) = postcard::to_stdvec(&response) else {
        return;
    };
    if send.write_all(&bytes).await.is_ok() {
        let _ = send.finish();
    }
}
