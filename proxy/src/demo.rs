//! `tandem demo`: a local cluster of real Dovecot (or Cyrus) backends and
//! tandem nodes, each its own OS process, in one directory, on fixed
//! documented ports, for a newcomer and for scripts. Ctrl-C or SIGTERM
//! stops it all.
//!
//! Node n (1..=9) serves IMAP on 127.0.0.1:n143, IMAPS on n993, metrics on
//! n090 and peers on UDP n700; its backend listens on n144 and LMTP on
//! n024. Users alice and bob, password `demo`.
//!
//! The Dovecot configuration written here, and the Cyrus one in
//! [`cyrus`], are also the ones the test harness uses (`tandem-tests`), so
//! what the demo runs is what the tests test.

pub use tandem_backends::{cyrus, dovecot::DovecotSetup, DOVECOT_BIN};
use tandem_backends::{terminate, ADMIN_PASSWORD, ADMIN_USER};

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::BackendKind;

/// Set by `tandem demo`'s signal handler: a start in progress gives up (and
/// stops what it started) instead of leaving Cyrus masters, which run in
/// process groups of their own, behind.
pub static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn interrupted() -> io::Result<()> {
    if INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(io::Error::other("interrupted"));
    }
    Ok(())
}

/// The ports of demo node `n` counted from `base` (1000 for the
/// documented layout: node 1 serves IMAP on 1143).
#[derive(Debug, Clone, Copy)]
pub struct NodePorts {
    /// tandem's IMAP listener.
    pub imap: u16,
    /// tandem's IMAPS listener.
    pub imaps: u16,
    /// Metrics.
    pub metrics: u16,
    /// Replication (UDP).
    pub peer: u16,
    /// The backend's IMAP.
    pub backend: u16,
    /// The backend's LMTP.
    pub lmtp: u16,
}

impl NodePorts {
    /// Node `n`'s ports: `base * n` plus 143, 993, 90, 700, 144, 24.
    pub fn of(n: u16, base: u16) -> NodePorts {
        let b = base * n;
        NodePorts {
            imap: b + 143,
            imaps: b + 993,
            metrics: b + 90,
            peer: b + 700,
            backend: b + 144,
            lmtp: b + 24,
        }
    }
}

/// Whether something answers on 127.0.0.1:`port` with a line starting
/// with `prefix`.
fn greets(port: u16, prefix: &[u8]) -> bool {
    use std::io::Read;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(prefix))
}

fn wait_for(port: u16, prefix: &[u8], what: &str, child: &mut Child) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        interrupted()?;
        if greets(port, prefix) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(io::Error::other(format!("{what} exited with {status}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(io::Error::other(format!(
        "{what} did not answer on port {port}"
    )))
}

/// Writes a demo CA (`DIR/ca.pem`) and one server certificate for
/// localhost and 127.0.0.1 (`DIR/server.pem`, `DIR/server.key`); returns
/// the (cert, key) paths. The demo's nodes and the TLS tests use it.
pub fn write_demo_tls(dir: &Path) -> io::Result<(PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let err = |e: rcgen::Error| io::Error::other(format!("demo certificate: {e}"));
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.distinguished_name
        .push(DnType::CommonName, "tandem demo CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().map_err(err)?;
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(err)?;
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    fs::write(&cert_path, cert.pem())?;
    fs::write(&key_path, key.serialize_pem())?;
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))?;
    Ok((cert_path, key_path))
}

/// A running demo: its processes, stopped in reverse order on drop.
#[derive(Debug)]
pub struct Demo {
    children: Vec<DemoProcess>,
    /// The Cyrus instances' syslog capture, dropped after every process.
    syslogs: Vec<cyrus::SyslogSink>,
}

/// One process of a demo.
#[derive(Debug)]
struct DemoProcess {
    name: String,
    child: Child,
    /// Leads a process group of its own (a Cyrus master): stopping it stops
    /// the whole group.
    group: bool,
}

impl Demo {
    /// Starts `nodes` backends of `kind` and tandem nodes under `dir`, with
    /// ports counted from `base`. `tandem` is the path of the tandem binary.
    pub fn start(
        dir: &Path,
        nodes: u16,
        base: u16,
        tandem: &Path,
        kind: BackendKind,
    ) -> io::Result<Demo> {
        if kind == BackendKind::Cyrus {
            cyrus::check_installed()?;
        }
        let lmtp_off = check_ports(nodes, base)?;
        fs::create_dir_all(dir)?;
        let (cert, key) = write_demo_tls(dir)?;
        // The cluster CA and node certificates for the replicated log, in
        // DIR/cluster; a reused demo dir keeps the ones it has.
        let cluster_dir = dir.join("cluster");
        let missing: Vec<u64> = (1..=u64::from(nodes))
            .filter(|id| !cluster_dir.join(format!("node-{id}.pem")).exists())
            .collect();
        if !missing.is_empty() || !cluster_dir.join("ca.pem").exists() {
            tandem_replicator::tls::write_cluster_certs(&cluster_dir, &missing)
                .map_err(|e| io::Error::other(format!("cluster certificates: {e}")))?;
        }
        let mut demo = Demo {
            children: Vec::new(),
            syslogs: Vec::new(),
        };
        for n in 1..=nodes {
            interrupted()?;
            let ports = NodePorts::of(n, base);
            let node_dir = dir.join(format!("node{n}"));
            let data_dir = node_dir.join("data");
            // A node whose log exists was started before: it restarts
            // without --bootstrap, on the mail its backend already has.
            let fresh = !crate::cluster::raft_dir_of(&data_dir).exists();
            fs::create_dir_all(&node_dir)?;
            let marker = node_dir.join("backend");
            if fresh {
                fs::write(&marker, format!("{kind}\n"))?;
            } else {
                // Directories from before the marker held Dovecots.
                let was = fs::read_to_string(&marker).unwrap_or_else(|_| "dovecot".into());
                if was.trim() != kind.to_string() {
                    return Err(io::Error::other(format!(
                        "node {n} of {} ran in front of {}, not {kind}; start the demo with a \
                         new --dir",
                        dir.display(),
                        was.trim()
                    )));
                }
            }
            let lmtp = if lmtp_off.contains(&n) { 0 } else { ports.lmtp };
            demo.start_backend(kind, n, &ports, lmtp, fresh, &node_dir)?;

            let config = node_config(
                n,
                nodes,
                base,
                kind,
                &data_dir,
                &cluster_dir,
                (cert.as_path(), key.as_path()),
            );
            let config_path = node_dir.join("tandem.toml");
            fs::write(&config_path, config)?;
            let log = fs::File::create(node_dir.join("tandem.log"))?;
            let mut command = Command::new(tandem);
            command.arg("run").arg("--config").arg(&config_path);
            // A brand-new cluster is bootstrapped on its first start only.
            if fresh {
                command.arg("--bootstrap");
            }
            let node = command
                .env("TANDEM_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?;
            fs::write(node_dir.join("tandem.pid"), format!("{}\n", node.id()))?;
            demo.children.push(DemoProcess {
                name: format!("tandem{n}"),
                child: node,
                group: false,
            });
        }
        // Every node runs before any is waited for: a node may need the
        // others (a quorum) before it serves.
        for n in 1..=nodes {
            let name = format!("tandem{n}");
            let Some(node) = demo.children.iter_mut().find(|c| c.name == name) else {
                continue;
            };
            let port = NodePorts::of(n, base).imap;
            wait_for(port, b"* OK", &format!("tandem node {n}"), &mut node.child)?;
        }
        Ok(demo)
    }

    /// The PIDs of every process the demo started.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|p| p.child.id()).collect()
    }

    /// Stops every process (SIGTERM, then SIGKILL after 10 s), newest
    /// first, and waits for each; a Cyrus master's whole process group.
    pub fn stop(&mut self) {
        while let Some(mut p) = self.children.pop() {
            if p.group {
                cyrus::stop_group(&mut p.child, Duration::from_secs(10));
            } else if !terminate(&mut p.child, Duration::from_secs(10)) {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
        self.syslogs.clear();
    }

    /// Starts node `n`'s backend of `kind` (on a `fresh` node, on new mail)
    /// and waits for its greeting; its directory is linked from `node_dir`.
    fn start_backend(
        &mut self,
        kind: BackendKind,
        n: u16,
        ports: &NodePorts,
        lmtp: u16,
        fresh: bool,
        node_dir: &Path,
    ) -> io::Result<()> {
        // Short socket paths: the backend's sockets live under /tmp.
        let backend_dir = std::env::temp_dir().join(format!("tandem-demo-{}-{n}", ports.imap));
        if fresh {
            let _ = fs::remove_dir_all(&backend_dir);
        } else if !backend_dir.exists() {
            return Err(io::Error::other(format!(
                "node {n} has a replicated log in {} but its {kind} mail ({}) is gone; \
                 start the demo with a new --dir",
                node_dir.display(),
                backend_dir.display()
            )));
        }
        fs::create_dir_all(&backend_dir)?;
        let _ = fs::remove_file(node_dir.join(kind.to_string()));
        let _ = std::os::unix::fs::symlink(&backend_dir, node_dir.join(kind.to_string()));
        let log = fs::File::create(node_dir.join(format!("{kind}.stderr")))?;
        let name = format!("{kind}{n}");
        let mut child = match kind {
            BackendKind::Dovecot => {
                let conf = DovecotSetup {
                    dir: backend_dir.clone(),
                    imap_port: ports.backend,
                    lmtp_port: lmtp,
                    imap_capability: None,
                    extra_config: String::new(),
                    user_passdb_fields: String::new(),
                    tls: None,
                }
                .write()?;
                Command::new(DOVECOT_BIN)
                    .arg("-F")
                    .arg("-c")
                    .arg(&conf)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .map_err(|e| {
                        io::Error::other(format!("cannot run {DOVECOT_BIN}: {e} (make deps)"))
                    })?
            }
            BackendKind::Cyrus => {
                let setup = cyrus::CyrusSetup {
                    dir: backend_dir.clone(),
                    imap_port: ports.backend,
                    lmtp_port: lmtp,
                    tls: None,
                    extra_config: String::new(),
                };
                if fresh {
                    setup.write()?;
                }
                let private_dev = cyrus::private_dev_possible();
                if private_dev {
                    self.syslogs.push(cyrus::SyslogSink::start(&backend_dir)?);
                }
                setup
                    .master_command(private_dev)
                    .stderr(log)
                    .spawn()
                    .map_err(|e| {
                        io::Error::other(format!(
                            "cannot run {}: {e} (make deps)",
                            cyrus::MASTER_BIN
                        ))
                    })?
            }
        };
        let waited = wait_for(ports.backend, b"* OK", &name, &mut child);
        self.children.push(DemoProcess {
            name,
            child,
            group: kind == BackendKind::Cyrus,
        });
        waited?;
        if kind == BackendKind::Cyrus && fresh {
            cyrus::provision(SocketAddr::from(([127, 0, 0, 1], ports.backend)))
                .map_err(|e| io::Error::other(format!("provisioning cyrus {n}: {e}")))?;
        }
        Ok(())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Checks every port of the demo's nodes first, so that a busy one is
/// named, not discovered through a backend's log; the nodes whose LMTP
/// port is taken (they run without LMTP).
fn check_ports(nodes: u16, base: u16) -> io::Result<Vec<u16>> {
    let mut lmtp_off = Vec::new();
    for n in 1..=nodes {
        let p = NodePorts::of(n, base);
        for (port, what) in [
            (p.imap, "tandem IMAP"),
            (p.imaps, "tandem IMAPS"),
            (p.metrics, "metrics"),
            (p.backend, "backend IMAP"),
            (p.lmtp, "backend LMTP"),
        ] {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                if what == "backend LMTP" {
                    eprintln!(
                        "tandem demo: port {port} ({what} of node {n}) is taken by another \
                         program; node {n} runs without LMTP"
                    );
                    lmtp_off.push(n);
                } else {
                    return Err(io::Error::other(format!(
                        "port {port} ({what} of node {n}) is taken by another program"
                    )));
                }
            }
        }
        if std::net::UdpSocket::bind(("127.0.0.1", p.peer)).is_err() {
            return Err(io::Error::other(format!(
                "UDP port {} (replication of node {n}) is taken by another program",
                p.peer
            )));
        }
    }
    Ok(lmtp_off)
}

/// The `tandem.toml` of demo node `n`.
fn node_config(
    n: u16,
    nodes: u16,
    base: u16,
    kind: BackendKind,
    data_dir: &Path,
    cluster_dir: &Path,
    (cert, key): (&Path, &Path),
) -> String {
    let ports = NodePorts::of(n, base);
    let peers: String = (1..=nodes)
        .filter(|m| *m != n)
        .map(|m| {
            format!(
                "[[peer]]\nid = {m}\naddress = \"127.0.0.1:{}\"\n",
                NodePorts::of(m, base).peer
            )
        })
        .collect();
    format!(
        "# tandem demo node {n}\n[node]\nid = {n}\ndata_dir = \"{data}\"\n\n\
         [listen]\nimap = \"127.0.0.1:{imap}\"\nimaps = \"127.0.0.1:{imaps}\"\n\
         metrics = \"127.0.0.1:{metrics}\"\npeer = \"127.0.0.1:{peer}\"\n\n\
         [tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n\n\
         [cluster]\nca = \"{cluster_ca}\"\ncert = \"{cluster_cert}\"\n\
         key = \"{cluster_key}\"\n\n\
         [backend]\nkind = \"{kind}\"\naddress = \"127.0.0.1:{backend}\"\n\
         admin_user = \"{ADMIN_USER}\"\nadmin_password = \"{ADMIN_PASSWORD}\"\n\n{peers}",
        data = data_dir.display(),
        cluster_ca = cluster_dir.join("ca.pem").display(),
        cluster_cert = cluster_dir.join(format!("node-{n}.pem")).display(),
        cluster_key = cluster_dir.join(format!("node-{n}.key")).display(),
        imap = ports.imap,
        imaps = ports.imaps,
        cert = cert.display(),
        key = key.display(),
        metrics = ports.metrics,
        peer = ports.peer,
        backend = ports.backend,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demo_nodes_config_is_valid_and_names_the_other_nodes_as_peers() {
        let text = node_config(
            2,
            3,
            1000,
            BackendKind::Dovecot,
            Path::new("/tmp/demo/node2/data"),
            Path::new("/tmp/demo/cluster"),
            (
                Path::new("/tmp/demo/cert.pem"),
                Path::new("/tmp/demo/key.pem"),
            ),
        );
        let config = crate::config::Config::from_toml(&text, Path::new("node2.toml"))
            .unwrap_or_else(|e| panic!("{e}:\n{text}"));
        assert_eq!(config.node.id, 2);
        let peers: Vec<(u64, &str)> = config
            .peers
            .iter()
            .map(|p| (p.id, p.address.as_str()))
            .collect();
        let address = |m| format!("127.0.0.1:{}", NodePorts::of(m, 1000).peer);
        assert_eq!(
            peers,
            vec![(1, address(1).as_str()), (3, address(3).as_str())]
        );
        assert_eq!(
            config.listen.imap,
            Some(([127, 0, 0, 1], NodePorts::of(2, 1000).imap).into())
        );
    }
}
