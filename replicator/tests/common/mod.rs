//! An in-process cluster for the replicator's tests: N nodes on 127.0.0.1,
//! each with its own store and certificate, optionally behind a fault relay,
//! and a small deterministic state machine that allocates sequence numbers
//! the way the mail state machine allocates UIDs.

#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tandem_replicator::relay::FaultNet;
pub use tandem_replicator::testing::{items, Put, Seq};
use tandem_replicator::tls::{self, TlsMaterial};
use tandem_replicator::{Node, NodeConfig, NodeId};

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
    /// Small in tests: every node zero-fills its next segment at start.
    pub log_segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            relay: false,
            proposal_timeout: Duration::from_secs(5),
            keep_log_entries: 100_000,
            compaction_interval: Duration::from_secs(3600),
            heartbeat: Duration::from_millis(150),
            election_timeout: (Duration::from_millis(800), Duration::from_millis(1600)),
            log_segment_bytes: 2 << 20,
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
    pub bootstrapped: std::collections::BTreeSet<NodeId>,
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
            bootstrapped: Default::default(),
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
        c.log_segment_bytes = self.options.log_segment_bytes;
        c
    }

    pub fn material(&self, id: NodeId) -> TlsMaterial {
        let pair = tls::issue_node_cert(&self.ca_key, id).unwrap();
        TlsMaterial::from_pem(&self.ca_cert, &pair.cert, &pair.key).unwrap()
    }

    /// Starts node `id`: with `bootstrap` the first time, as an operator
    /// creating the cluster would; afterwards (a restart, a wiped disk)
    /// without.
    pub async fn start_node(&mut self, id: NodeId) {
        let mut config = self.config(id, self.material(id));
        config.bootstrap = self.bootstrapped.insert(id);
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
        // A leader every running node follows in the same term, seen twice
        // 150 ms apart: all nodes start at once, and a second election right
        // after the first is common on a loaded machine.
        let deadline = Instant::now() + within;
        let mut seen: Option<(NodeId, u64)> = None;
        loop {
            let leaders: Vec<NodeId> = self
                .nodes
                .values()
                .filter(|n| n.is_leader())
                .map(|n| n.id())
                .collect();
            if let [l] = leaders[..] {
                let term = self.nodes[&l].term();
                let agreed = self
                    .nodes
                    .values()
                    .all(|n| n.leader() == Some(l) && n.term() == term);
                if agreed && seen == Some((l, term)) {
                    return l;
                }
                seen = agreed.then_some((l, term));
                tokio::time::sleep(Duration::from_millis(150)).await;
                continue;
            }
            seen = None;
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
