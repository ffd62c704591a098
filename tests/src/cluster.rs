//! A whole tandem cluster for tests: n real Dovecots and n `tandem run`
//! processes (plus optional witnesses), each node in its own directory with
//! its own config, certificate, log file and Raft data, on free 127.0.0.1
//! ports. Nodes are OS processes so a test can SIGKILL one and restart it
//! on its data directory.
//!
//! Ordering invariants:
//! - `start` returns only after every mail node greets and a LOGIN through
//!   it succeeds (`wait_ready`).
//! - Only the first start of each node passes `--bootstrap`; `restart`
//!   never does (a restarted node must be brought up to date by a leader).
//! - Dropping the cluster kills every tandem by PID (SIGKILL) before its
//!   Dovecots stop, also during a panic, and prints each tandem's log when
//!   the test is failing.
//!
//! Node ids run from 1; mail nodes come first, witnesses after them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::{free_tcp_port, free_udp_port};
use crate::{
    Backend, BackendKind, Dovecot, ImapClient, Status, ADMIN_PASSWORD, ADMIN_USER, USER_PASSWORD,
};

/// How long a node may take to serve after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `tandem` binary the tests run: `$TANDEM_BIN`, else
/// `$CARGO_BIN_EXE_tandem`, else `target/<profile>/tandem` beside the
/// running test executable (`target/<profile>/deps/...`). Cargo builds it
/// before the integration tests of `tandem-proxy` run, so tests using this
/// harness belong in `proxy/tests/`.
pub fn tandem_binary() -> PathBuf {
    for var in ["TANDEM_BIN", "CARGO_BIN_EXE_tandem"] {
        if let Some(p) = std::env::var_os(var) {
            return PathBuf::from(p);
        }
    }
    let exe = std::env::current_exe().expect("current test executable");
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("tandem"))
        .expect("test executable lives in target/<profile>/deps");
    assert!(
        candidate.exists(),
        "no tandem binary at {}: run the test from proxy/tests (cargo builds the binary \
         first), run `cargo build -p tandem-proxy`, or set TANDEM_BIN",
        candidate.display()
    );
    candidate
}

/// Options for a new cluster.
#[derive(Debug, Clone)]
pub struct TandemClusterBuilder {
    binary: Option<PathBuf>,
    mail_nodes: u64,
    witnesses: u64,
    cluster: String,
    extra: String,
    relay: Option<u64>,
    env: Vec<(String, String)>,
    /// Mail node i runs `backends[i % len]`.
    backends: Vec<BackendKind>,
    /// `cluster.log_segment_mib`: small by default, since every node
    /// zero-fills its next log segment when it starts.
    log_segment_mib: u64,
}

impl Default for TandemClusterBuilder {
    fn default() -> Self {
        TandemClusterBuilder {
            binary: None,
            mail_nodes: 3,
            witnesses: 0,
            cluster: String::new(),
            extra: String::new(),
            relay: None,
            env: Vec::new(),
            backends: vec![BackendKind::Dovecot],
            log_segment_mib: 2,
        }
    }
}

impl TandemClusterBuilder {
    /// The `tandem` binary (default: [`tandem_binary`]); from
    /// `proxy/tests`, `env!("CARGO_BIN_EXE_tandem")`.
    pub fn binary(mut self, path: impl AsRef<Path>) -> Self {
        self.binary = Some(path.as_ref().to_path_buf());
        self
    }

    /// Mail nodes, each with its own Dovecot (default 3).
    pub fn nodes(mut self, n: u64) -> Self {
        self.mail_nodes = n;
        self
    }

    /// The mail nodes' server (default Dovecot).
    pub fn backend(mut self, kind: BackendKind) -> Self {
        self.backends = vec![kind];
        self
    }

    /// The mail nodes' servers, in node order, repeated as needed: `[Dovecot,
    /// Cyrus, Dovecot]` makes a mixed cluster.
    pub fn backends(mut self, kinds: &[BackendKind]) -> Self {
        if !kinds.is_empty() {
            self.backends = kinds.to_vec();
        }
        self
    }

    /// Witnesses (voters without a backend), numbered after the mail nodes.
    pub fn witnesses(mut self, n: u64) -> Self {
        self.witnesses = n;
        self
    }

    /// Raft timing in milliseconds for every node (default: the config's
    /// defaults, 250 / 1000 / 2000).
    pub fn timing(mut self, heartbeat_ms: u64, election_min_ms: u64, election_max_ms: u64) -> Self {
        self.cluster = format!(
            "heartbeat_ms = {heartbeat_ms}\nelection_timeout_min_ms = {election_min_ms}\n\
             election_timeout_max_ms = {election_max_ms}\n"
        );
        self
    }

    /// `cluster.state_sync_ms` for every node (tandem's default: 200): a
    /// long one leaves everything since the last barrier in doubt at a
    /// SIGKILL.
    pub fn state_sync_ms(mut self, ms: u64) -> Self {
        self.cluster.push_str(&format!("state_sync_ms = {ms}\n"));
        self
    }

    /// The raft log's segment size in MiB (default 2; tandem's own default
    /// is 32).
    pub fn log_segment_mib(mut self, mib: u64) -> Self {
        self.log_segment_mib = mib;
        self
    }

    /// An environment variable for every `tandem run` (e.g. a test-only
    /// switch).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Routes every replication link through the project's fault relay
    /// ([`tandem_replicator::relay::FaultNet`], run by the harness), with
    /// `seed` driving its loss and jitter; see [`TandemCluster::net`].
    pub fn relay(mut self, seed: u64) -> Self {
        self.relay = Some(seed);
        self
    }

    /// Raw TOML appended to every node's config (whole sections, e.g.
    /// `"[limits]\nmax_literal_bytes = 1048576\n"`).
    pub fn extra_config(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    /// Starts the Dovecots and the nodes (every node with `--bootstrap`,
    /// all at once) and waits until every mail node serves a LOGIN.
    pub fn start(self) -> TandemCluster {
        assert!(self.mail_nodes >= 1, "a cluster needs a mail node");
        let binary = self.binary.clone().unwrap_or_else(tandem_binary);
        let dir = tempfile::Builder::new()
            .prefix("tandem-cluster")
            .tempdir()
            .expect("temp dir for the cluster");
        let total = self.mail_nodes + self.witnesses;
        let ids: Vec<u64> = (1..=total).collect();
        let certs = dir.path().join("certs");
        tandem_replicator::tls::write_cluster_certs(&certs, &ids).expect("cluster certificates");

        let mut nodes = BTreeMap::new();
        for &id in &ids {
            let mail = id <= self.mail_nodes;
            let node_dir = dir.path().join(format!("node{id}"));
            std::fs::create_dir_all(&node_dir).expect("node dir");
            nodes.insert(
                id,
                Node {
                    imap: mail.then(|| SocketAddr::from(([127, 0, 0, 1], free_tcp_port()))),
                    metrics: SocketAddr::from(([127, 0, 0, 1], free_tcp_port())),
                    peer: SocketAddr::from(([127, 0, 0, 1], free_udp_port())),
                    backend: mail.then(|| {
                        Backend::start(self.backends[(id as usize - 1) % self.backends.len()])
                    }),
                    config: node_dir.join("tandem.toml"),
                    dir: node_dir,
                    child: None,
                },
            );
        }
        let relay = self.relay.map(|seed| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("relay runtime");
            let peers: BTreeMap<u64, SocketAddr> =
                nodes.iter().map(|(&id, n)| (id, n.peer)).collect();
            let net = rt
                .block_on(tandem_replicator::relay::FaultNet::start(&peers, seed))
                .expect("fault relay");
            (rt, net)
        });
        let cluster_section = format!(
            "{}log_segment_mib = {}\n",
            self.cluster, self.log_segment_mib
        );
        for (&id, node) in &nodes {
            let text = node_config(
                id,
                node,
                &nodes,
                &certs,
                &cluster_section,
                &self.extra,
                relay.as_ref().map(|r| &r.1),
            );
            std::fs::write(&node.config, text).expect("write node config");
        }
        let mut cluster = TandemCluster {
            binary,
            nodes,
            relay,
            env: self.env.clone(),
            _dir: dir,
        };
        for id in ids {
            cluster.spawn(id, true);
        }
        cluster.wait_ready();
        cluster
    }
}

fn node_config(
    id: u64,
    node: &Node,
    all: &BTreeMap<u64, Node>,
    certs: &Path,
    cluster: &str,
    extra: &str,
    relay: Option<&tandem_replicator::relay::FaultNet>,
) -> String {
    let mut text = format!(
        "# tandem-tests cluster node {id}\n[node]\nid = {id}\ndata_dir = \"{data}\"\n{role}\n\
         [listen]\npeer = \"{peer}\"\nmetrics = \"{metrics}\"\n",
        data = node.dir.join("data").display(),
        role = if node.backend.is_some() {
            ""
        } else {
            "role = \"witness\"\n"
        },
        peer = node.peer,
        metrics = node.metrics,
    );
    if let Some(imap) = node.imap {
        let _ = writeln!(text, "imap = \"{imap}\"");
    }
    let _ = write!(
        text,
        "\n[cluster]\nca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n{cluster}\n",
        ca = certs.join("ca.pem").display(),
        cert = certs.join(format!("node-{id}.pem")).display(),
        key = certs.join(format!("node-{id}.key")).display(),
    );
    if let Some(b) = &node.backend {
        let _ = write!(
            text,
            "[backend]\nkind = \"{}\"\naddress = \"{}\"\nadmin_user = \"{ADMIN_USER}\"\n\
             admin_password = \"{ADMIN_PASSWORD}\"\nconnect_timeout_secs = 2\n\
             command_timeout_secs = 10\n\n",
            b.kind().config_name(),
            b.imap_addr()
        );
    }
    for (&other, n) in all {
        if other != id {
            let _ = write!(
                text,
                "[[peer]]\nid = {other}\naddress = \"{}\"\nmetrics = \"{}\"\n\n",
                relay.map_or(n.peer, |net| net.addr(id, other)),
                n.metrics
            );
        }
    }
    text.push_str(extra);
    text
}

/// One node: its addresses, files, backend and process.
#[derive(Debug)]
struct Node {
    /// tandem's IMAP listener; `None` on a witness.
    imap: Option<SocketAddr>,
    /// Its metrics endpoint.
    metrics: SocketAddr,
    /// The replication (UDP) address.
    peer: SocketAddr,
    /// The backend; `None` on a witness.
    backend: Option<Backend>,
    /// The node's config file.
    config: PathBuf,
    /// The node's directory: config, `data/`, `tandem.log`.
    dir: PathBuf,
    /// The running `tandem run`.
    child: Option<Child>,
}

/// A running cluster of tandem nodes in front of real Dovecots.
#[derive(Debug)]
pub struct TandemCluster {
    binary: PathBuf,
    nodes: BTreeMap<u64, Node>,
    /// Extra environment of every node process.
    env: Vec<(String, String)>,
    /// The fault relay and the runtime it runs on, when asked for.
    relay: Option<(tokio::runtime::Runtime, tandem_replicator::relay::FaultNet)>,
    _dir: tempfile::TempDir,
}

impl TandemCluster {
    /// `n` mail nodes with default settings, ready to serve.
    pub fn start(n: u64) -> TandemCluster {
        TandemClusterBuilder::default().nodes(n).start()
    }

    /// A builder for other layouts or settings.
    pub fn builder() -> TandemClusterBuilder {
        TandemClusterBuilder::default()
    }

    /// Every node id, mail nodes first.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The node whose `/status` says it is the leader, if any.
    pub fn leader(&self) -> Option<u64> {
        self.ids().into_iter().find(|&id| {
            self.node(id).child.is_some()
                && status(self.metrics_addr(id))
                    .is_some_and(|s| s.contains("\"state\": \"leader\""))
        })
    }

    /// The mail nodes' ids.
    pub fn mail_ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.backend.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id} (ids: {:?})", self.ids()))
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        let ids = self.ids();
        self.nodes
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no node {id} (ids: {ids:?})"))
    }

    /// The fault relay every replication link goes through (built with
    /// [`TandemClusterBuilder::relay`]): cut, isolate, degrade, heal.
    pub fn net(&self) -> &tandem_replicator::relay::FaultNet {
        &self
            .relay
            .as_ref()
            .expect("cluster built without .relay(seed)")
            .1
    }

    /// Node `id`'s metrics endpoint (`/metrics`, `/healthz`, `/readyz`,
    /// `/status`).
    pub fn metrics_addr(&self, id: u64) -> SocketAddr {
        self.node(id).metrics
    }

    /// Where clients connect to node `id` (plain IMAP).
    pub fn imap_addr(&self, id: u64) -> SocketAddr {
        self.node(id)
            .imap
            .unwrap_or_else(|| panic!("node {id} is a witness: it serves no IMAP"))
    }

    /// Node `id`'s backend, Dovecot or Cyrus, for direct checks
    /// (`ImapClient::login(c.backend(1).imap_addr(), ..)` bypasses tandem).
    pub fn backend(&self, id: u64) -> &Backend {
        self.node(id)
            .backend
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is a witness: it has no backend"))
    }

    /// Node `id`'s backend, mutably (`kill_all`, ...).
    pub fn backend_mut(&mut self, id: u64) -> &mut Backend {
        self.node_mut(id)
            .backend
            .as_mut()
            .unwrap_or_else(|| panic!("node {id} is a witness: it has no backend"))
    }

    /// Node `id`'s Dovecot (panics on a Cyrus node).
    pub fn dovecot(&self, id: u64) -> &Dovecot {
        match self.backend(id) {
            Backend::Dovecot(d) => d,
            Backend::Cyrus(_) => panic!("node {id} runs Cyrus"),
        }
    }

    /// Node `id`'s Dovecot, mutably (`freeze`, `kill_all`, ...).
    pub fn dovecot_mut(&mut self, id: u64) -> &mut Dovecot {
        match self.backend_mut(id) {
            Backend::Dovecot(d) => d,
            Backend::Cyrus(_) => panic!("node {id} runs Cyrus"),
        }
    }

    /// A client logged in as `user` (alice or bob) through node `id`.
    #[track_caller]
    pub fn login(&self, id: u64, user: &str) -> ImapClient {
        ImapClient::login(self.imap_addr(id), user, USER_PASSWORD)
    }

    /// Node `id`'s config file.
    pub fn config_path(&self, id: u64) -> &Path {
        &self.node(id).config
    }

    /// Node `id`'s data directory (`node.data_dir`; the log is in `raft/`).
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node(id).dir.join("data")
    }

    /// The PID of node `id`'s tandem process, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    /// Whether node `id`'s tandem process runs (it has not exited).
    pub fn is_running(&mut self, id: u64) -> bool {
        let node = self.node_mut(id);
        match node.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                node.child = None;
                false
            }
            None => false,
        }
    }

    /// Node `id`'s log (tandem's stderr) so far, across restarts.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.node(id).dir.join("tandem.log")).unwrap_or_default()
    }

    /// Kills node `id`'s tandem with SIGKILL (a crash: nothing flushed, no
    /// goodbye) and reaps it. Its Dovecot keeps running.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.node_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops node `id`'s tandem with SIGTERM (graceful) and waits for it to
    /// exit, SIGKILL after 15 s.
    pub fn stop(&mut self, id: u64) {
        let Some(mut child) = self.node_mut(id).child.take() else {
            return;
        };
        if !tandem_backends::terminate(&mut child, Duration::from_secs(15)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `id` again on its config and data, without
    /// `--bootstrap` (killing it first if it runs), and waits until it
    /// serves a LOGIN (a witness: until it runs).
    pub fn restart(&mut self, id: u64) {
        self.kill(id);
        self.spawn(id, false);
        self.wait_node(id);
    }

    /// Stops node `id`'s backend (SIGTERM; returns once it exited). tandem
    /// keeps running.
    pub fn stop_backend(&mut self, id: u64) {
        self.backend_mut(id).stop();
    }

    /// Starts node `id`'s backend again on its ports and mail.
    pub fn start_backend(&mut self, id: u64) {
        self.backend_mut(id).restart();
    }

    /// Waits until every running mail node greets and a LOGIN as alice
    /// through it succeeds, and every running witness still runs.
    pub fn wait_ready(&mut self) {
        for id in self.ids() {
            if self.node(id).child.is_some() {
                self.wait_node(id);
            }
        }
    }

    fn wait_node(&mut self, id: u64) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if !self.is_running(id) {
                panic!("tandem node {id} exited:\n{}", self.log(id));
            }
            let Some(addr) = self.node(id).imap else {
                return; // a witness: running is all it can show
            };
            let Err(last) = try_login(addr) else {
                return;
            };
            assert!(
                Instant::now() < deadline,
                "tandem node {id} did not serve a LOGIN within {READY_TIMEOUT:?}: {last}\n{}",
                self.log(id)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(&mut self, id: u64, bootstrap: bool) {
        let binary = self.binary.clone();
        let env = self.env.clone();
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.join("tandem.log"))
            .expect("node log");
        let mut cmd = Command::new(&binary);
        cmd.arg("run").arg("--config").arg(&node.config);
        if bootstrap {
            cmd.arg("--bootstrap");
        }
        let filter = std::env::var("TANDEM_LOG").unwrap_or_else(|_| "info,openraft=warn".into());
        let child = cmd
            .envs(env)
            .env("TANDEM_LOG", filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        node.child = Some(child);
    }
}

/// The body of a node's `GET /status` (JSON), if it answers.
fn status(addr: SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET /status HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Connects, expects `* OK`, logs in as alice.
fn try_login(addr: SocketAddr) -> Result<(), String> {
    let mut c = ImapClient::connect(addr).map_err(|e| format!("connect: {e}"))?;
    if !c.greeting.starts_with("* OK") {
        return Err(format!("greeting {:?}", c.greeting));
    }
    let reply = c
        .command(&format!("LOGIN alice {USER_PASSWORD}"))
        .map_err(|e| format!("LOGIN: {e}"))?;
    if reply.status != Status::Ok {
        return Err(format!("LOGIN: {reply:?}"));
    }
    let _ = c.command("LOGOUT");
    Ok(())
}

impl Drop for TandemCluster {
    fn drop(&mut self) {
        let ids = self.ids();
        for &id in &ids {
            self.kill(id);
        }
        if std::thread::panicking() {
            for &id in &ids {
                let node = self.node(id);
                eprintln!(
                    "---- tandem node {id} ({}) ----\n{}---- end of tandem node {id} ----",
                    node.dir.display(),
                    self.log(id)
                );
            }
        }
        // The Dovecots stop as their fields drop (and print their logs).
    }
}
