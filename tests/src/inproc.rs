//! A tandem cluster in one process, for tests and benchmarks that need no
//! SIGKILL: N nodes (Raft node, applier, IMAP server, each on its own tokio
//! runtime whose threads are named `tandem-node`), each in front of its own
//! real Dovecot or Cyrus.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_proxy::config::Config;
use tandem_proxy::replication::Replication;
use tandem_replicator::tls::{write_cluster_certs, TlsFiles, TlsMaterial};
use tandem_replicator::NodeConfig;

use crate::backend::{Backend, BackendKind};
use crate::cutter::Cutter;
use crate::imap::{ImapClient, Status};
use crate::ports::{free_tcp_port, free_udp_port};

/// Thread name of every node runtime's threads (for CPU accounting).
pub const THREAD_NAME: &str = "tandem-node";

/// One node.
#[derive(Debug)]
pub struct Node {
    /// Its IMAP listener.
    pub imap: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The node's replication, once started.
    rep: Option<Arc<Replication>>,
}

impl Node {
    /// The node's current leader and term, as it sees them.
    pub fn leader_and_term(&self) -> Option<(Option<u64>, u64)> {
        let rep = self.rep.as_ref()?;
        Some((rep.node.leader(), rep.node.term()))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The node's own runtime must hold the last handle when it stops.
        self.rep.take();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, in id order.
    pub nodes: Vec<Node>,
    /// Each node's backend (Dovecot or Cyrus), in node order.
    pub backends: Vec<Backend>,
    /// Where each node's backend listens for IMAP, in node order.
    pub backend_addrs: Vec<SocketAddr>,
    /// With [`Cluster::start_with_cutters`], the relay between each node
    /// and its backend.
    pub cutters: Vec<Cutter>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes, each in front of its own Dovecot, and waits until
    /// the cluster takes writes.
    pub fn start(n: u64) -> Cluster {
        Cluster::start_on(BackendKind::Dovecot, n)
    }

    /// Like [`Cluster::start`], each node in front of its own backend of
    /// `kind`.
    pub fn start_on(kind: BackendKind, n: u64) -> Cluster {
        Cluster::start_inner(&vec![kind == BackendKind::Cyrus; n as usize], false)
    }

    /// Like [`Cluster::start_on`], each node reaching its backend through a
    /// [`Cutter`] that can lose the answer to one command.
    pub fn start_with_cutters(kind: BackendKind, n: u64) -> Cluster {
        Cluster::start_inner(&vec![kind == BackendKind::Cyrus; n as usize], true)
    }

    /// Like [`Cluster::start`], each node in front of its own Cyrus.
    pub fn start_cyrus(n: u64) -> Cluster {
        Cluster::start_inner(&vec![true; n as usize], false)
    }

    /// One node per element, in front of a Cyrus where it is true and of a
    /// Dovecot where it is false (a mixed cluster).
    pub fn start_mixed(cyrus: &[bool]) -> Cluster {
        Cluster::start_inner(cyrus, false)
    }

    fn start_inner(cyrus_nodes: &[bool], cut: bool) -> Cluster {
        let n = cyrus_nodes.len() as u64;
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<u64> = (1..=n).collect();
        write_cluster_certs(&dir.path().join("certs"), &ids).unwrap();
        let peers: BTreeMap<u64, u16> = ids.iter().map(|&i| (i, free_udp_port())).collect();
        let members: BTreeMap<u64, String> = peers
            .iter()
            .map(|(&i, p)| (i, format!("127.0.0.1:{p}")))
            .collect();
        let mut backends = Vec::new();
        let mut cutters = Vec::new();
        let mut nodes = Vec::new();
        let mut backend_addrs = Vec::new();
        for &id in &ids {
            let b = Backend::start(if cyrus_nodes[id as usize - 1] {
                BackendKind::Cyrus
            } else {
                BackendKind::Dovecot
            });
            let kind = b.kind().config_name();
            let mut backend = b.imap_addr();
            backends.push(b);
            backend_addrs.push(backend);
            if cut {
                let c = Cutter::start(backend);
                backend = c.addr();
                cutters.push(c);
            }
            let imap_port = free_tcp_port();
            let certs = dir.path().join("certs");
            let text = format!(
                r#"
[node]
id = {id}
data_dir = "{data}"
[listen]
imap = "127.0.0.1:{imap_port}"
peer = "127.0.0.1:{peer}"
[cluster]
ca = "{ca}"
cert = "{cert}"
key = "{key}"
log_segment_mib = 2
[backend]
kind = "{kind}"
address = "{backend}"
admin_user = "{admin_user}"
admin_password = "{admin_password}"
command_timeout_secs = 10
"#,
                data = dir.path().join(format!("n{id}")).display(),
                peer = peers[&id],
                ca = certs.join("ca.pem").display(),
                cert = certs.join(format!("node-{id}.pem")).display(),
                key = certs.join(format!("node-{id}.key")).display(),
                admin_user = crate::ADMIN_USER,
                admin_password = crate::ADMIN_PASSWORD,
            );
            let config = Arc::new(Config::from_toml(&text, Path::new("test.toml")).unwrap());
            let tls = TlsMaterial::load(&TlsFiles {
                ca: certs.join("ca.pem"),
                cert: certs.join(format!("node-{id}.pem")),
                key: certs.join(format!("node-{id}.key")),
            })
            .unwrap();
            let mut nc = NodeConfig::new(
                id,
                format!("127.0.0.1:{}", peers[&id]).parse().unwrap(),
                members.clone(),
                dir.path().join(format!("n{id}")).join("raft"),
                tls,
            );
            nc.bootstrap = true;
            // The production defaults: shorter timeouts elect needlessly when
            // a test machine's two cores are busy with many Dovecots.
            nc.heartbeat = Duration::from_millis(250);
            nc.election_timeout = (Duration::from_millis(1000), Duration::from_millis(2000));
            let listener = std::net::TcpListener::bind(("127.0.0.1", imap_port)).unwrap();
            listener.set_nonblocking(true).unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let (rep_tx, rep_rx) = std::sync::mpsc::channel();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(THREAD_NAME)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let rep = Replication::start(&config, nc).await.unwrap();
                    let _ = rep_tx.send(rep.clone());
                    let listeners = vec![tandem_proxy::server::Listener {
                        socket: tokio::net::TcpListener::from_std(listener).unwrap(),
                        implicit_tls: false,
                    }];
                    tandem_proxy::server::run(listeners, config, None, Some(rep.clone()), async {
                        let _ = rx.await;
                    })
                    .await;
                    rep.shutdown().await;
                });
            });
            let rep = rep_rx.recv_timeout(Duration::from_secs(30)).ok();
            nodes.push(Node {
                imap: format!("127.0.0.1:{imap_port}").parse().unwrap(),
                stop: Some(tx),
                thread: Some(thread),
                rep,
            });
        }
        let c = Cluster {
            nodes,
            backends,
            backend_addrs,
            cutters,
            _dir: dir,
        };
        c.wait_writable();
        c.wait_stable();
        c.wait_registered();
        c
    }

    /// Waits until every node knows every node's backend kind (each mail
    /// node registers it when it starts; from the first Cyrus on, messages
    /// Cyrus refuses are refused everywhere).
    pub fn wait_registered(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let n = self.nodes.len();
        while !self.nodes.iter().all(|node| {
            node.rep
                .as_ref()
                .is_some_and(|r| r.registered_backends().len() == n)
        }) {
            assert!(
                Instant::now() < deadline,
                "the nodes never registered their backends"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every node names the same leader in the same term and
    /// keeps doing so for longer than an election timeout: the elections of
    /// a cluster's first seconds are over.
    pub fn wait_stable(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut since = Instant::now();
        let mut last = None;
        loop {
            let views: Vec<_> = self.nodes.iter().map(Node::leader_and_term).collect();
            let agreed = views.windows(2).all(|w| w[0] == w[1])
                && views
                    .first()
                    .is_some_and(|v| v.is_some_and(|(l, _)| l.is_some()));
            let now = views.first().cloned().flatten();
            if !agreed || now != last {
                since = Instant::now();
                last = now;
            }
            if agreed && since.elapsed() > Duration::from_millis(2500) {
                return;
            }
            assert!(Instant::now() < deadline, "no stable leader: {views:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until a mutation through node 1 succeeds (a leader exists).
    pub fn wait_writable(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut c) = ImapClient::connect(self.nodes[0].imap) {
                if c.command(&format!("LOGIN alice {}", crate::USER_PASSWORD))
                    .map(|r| r.status)
                    .ok()
                    == Some(Status::Ok)
                {
                    let r = c.command("SUBSCRIBE INBOX").unwrap();
                    if r.status == Status::Ok {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "cluster never became writable");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Logs `user` in through node `node`.
    pub fn login(&self, node: usize, user: &str) -> ImapClient {
        ImapClient::login(self.nodes[node].imap, user, crate::USER_PASSWORD)
    }

    /// Node `node`'s backend (Dovecot or Cyrus), for what tandem does not
    /// see: direct sessions, stop, restart, freeze.
    pub fn backend(&self, node: usize) -> &Backend {
        &self.backends[node]
    }

    /// Node `node`'s backend, mutably.
    pub fn backend_mut(&mut self, node: usize) -> &mut Backend {
        &mut self.backends[node]
    }
}

impl Cluster {
    /// Stops node `i`'s tandem (its backend keeps running).
    pub fn stop_node(&mut self, i: usize) {
        self.nodes[i].rep.take();
        if let Some(s) = self.nodes[i].stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.nodes[i].thread.take() {
            let _ = t.join();
        }
    }
}
