//! An in-process cluster for the replicator's tests: N nodes on 127.0.0.1,
//! each with its own store and certificate, optionally behind a fault relay,
//! and a small deterministic state machine that allocates sequence numbers
//! the way the mail state machine allocates UIDs.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tandem_replicator::relay::FaultNet;
use tandem_replicator::tls::{self, TlsMaterial};
use tandem_replicator::{Node, NodeConfig, NodeId, SmError, StateMachine};

const ITEMS: TableDefinition<'_, u64, &str> = TableDefinition::new("test_items");
const NEXT: TableDefinition<'_, &str, u64> = TableDefinition::new("test_next");

/// An entry: record `value` under the next sequence number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Put(pub String);

/// The test state machine: a durable, append-only list whose positions are
/// allocated in log order (a stand-in for UIDNEXT).
#[derive(Debug, Default)]
pub struct Seq;

impl StateMachine for Seq {
    type Entry = Put;
    type Output = u64;

    fn apply(
        &mut self,
        txn: &redb::WriteTransaction,
        _index: u64,
        entry: Put,
    ) -> Result<u64, SmError> {
        let mut next = txn.open_table(NEXT)?;
        let n = next.get("next")?.map(|v| v.value()).unwrap_or(1);
        next.insert("next", n + 1)?;
        let mut items = txn.open_table(ITEMS)?;
        items.insert(n, entry.0.as_str())?;
        Ok(n)
    }

    fn snapshot(&self, txn: &redb::ReadTransaction) -> Result<Vec<u8>, SmError> {
        let items: Vec<(u64, String)> = match txn.open_table(ITEMS) {
            Ok(t) => t
                .iter()?
                .map(|r| r.map(|(k, v)| (k.value(), v.value().to_string())))
                .collect::<Result<_, _>>()?,
            Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(postcard::to_stdvec(&items)?)
    }

    fn restore(&mut self, txn: &redb::WriteTransaction, snapshot: &[u8]) -> Result<(), SmError> {
        let items: Vec<(u64, String)> = postcard::from_bytes(snapshot)?;
        let mut t = txn.open_table(ITEMS)?;
        t.retain(|_, _| false)?;
        let mut next = 1;
        for (k, v) in &items {
            t.insert(*k, v.as_str())?;
            next = next.max(k + 1);
        }
        txn.open_table(NEXT)?.insert("next", next)?;
        Ok(())
    }
}

/// What a node's state machine holds.
pub fn items(node: &Node<Seq>) -> Vec<(u64, String)> {
    let txn = node.database().begin_read().unwrap();
    match txn.open_table(ITEMS) {
        Ok(t) => t
            .iter()
            .unwrap()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value(), v.value().to_string())
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub fn free_udp_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Options of a test cluster.
#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: u64,
    pub relay: bool,
    pub proposal_timeout: Duration,
    pub keep_log_entries: u64,
    pub compaction_interval: Duration,
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            relay: false,
            proposal_timeout: Duration::from_secs(5),
            keep_log_entries: 100_000,
            compaction_interval: Duration::from_secs(3600),
            heartbeat: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(300), Duration::from_millis(600)),
        }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub ca_key: String,
    pub ca_cert: String,
    pub listen: BTreeMap<NodeId, SocketAddr>,
    pub net: Option<FaultNet>,
    pub nodes: BTreeMap<NodeId, Node<Seq>>,
    pub options: Options,
}

impl Cluster {
    pub async fn start(options: Options) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
            )
            .with_test_writer()
            .try_init();
        let ca = tls::generate_ca().unwrap();
        let listen: BTreeMap<NodeId, SocketAddr> = (1..=options.nodes)
            .map(|id| (id, free_udp_addr()))
            .collect();
        let net = if options.relay {
            Some(FaultNet::start(&listen, 0x5eed).await.unwrap())
        } else {
            None
        };
        let mut cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
            ca_key: ca.key,
            ca_cert: ca.cert,
            listen,
            net,
            nodes: BTreeMap::new(),
            options,
        };
        for id in 1..=cluster.options.nodes {
            cluster.start_node(id).await;
        }
        cluster
    }

    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    pub fn config(&self, id: NodeId, tls: TlsMaterial) -> NodeConfig {
        let members = self
            .listen
            .iter()
            .map(|(&peer, &addr)| {
                let addr = match (&self.net, peer == id) {
                    (Some(net), false) => net.addr(id, peer),
                    _ => addr,
                };
                (peer, addr.to_string())
            })
            .collect();
        let mut c = NodeConfig::new(id, self.listen[&id], members, self.data_dir(id), tls);
        c.heartbeat = self.options.heartbeat;
        c.election_timeout = self.options.election_timeout;
        c.proposal_timeout = self.options.proposal_timeout;
        c.keep_log_entries = self.options.keep_log_entries;
        c.compaction_interval = self.options.compaction_interval;
        c
    }

    pub fn material(&self, id: NodeId) -> TlsMaterial {
        let pair = tls::issue_node_cert(&self.ca_key, id).unwrap();
        TlsMaterial::from_pem(&self.ca_cert, &pair.cert, &pair.key).unwrap()
    }

    pub async fn start_node(&mut self, id: NodeId) {
        let config = self.config(id, self.material(id));
        let node = Node::start(config, Seq).await.unwrap();
        self.nodes.insert(id, node);
    }

    pub async fn stop_node(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await;
        }
    }

    pub fn node(&self, id: NodeId) -> &Node<Seq> {
        &self.nodes[&id]
    }

    /// Waits until the running nodes agree on a leader among them.
    pub async fn leader(&self, within: Duration) -> NodeId {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<NodeId> = self
                .nodes
                .values()
                .filter(|n| n.is_leader())
                .map(|n| n.id())
                .collect();
            if let [l] = leaders[..] {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no single leader within {within:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn applied_everywhere(&self, index: u64, within: Duration) {
        for node in self.nodes.values() {
            node.raft()
                .wait(Some(within))
                .applied_index_at_least(Some(index), "catch up")
                .await
                .unwrap_or_else(|e| panic!("node {} did not apply {index}: {e}", node.id()));
        }
    }

    pub async fn propose(
        &self,
        via: NodeId,
        value: &str,
    ) -> Result<u64, tandem_replicator::ProposeError> {
        self.node(via).propose(&Put(value.to_string())).await
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop_node(id).await;
        }
    }
}
