//! `tandem demo` as a newcomer runs it: real processes, a client through
//! each node, and SIGTERM leaving nothing behind. The test shifts the ports
//! (hidden `--port-base`) so that it never takes the documented ones.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tandem_proxy::config::BackendKind;
use tandem_proxy::demo::NodePorts;
use tandem_tests::ImapClient;

fn ports_free(base: u16, nodes: u16) -> bool {
    (1..=nodes).all(|n| {
        let p = NodePorts::of(n, base);
        [p.imap, p.imaps, p.backend, p.lmtp, p.metrics]
            .iter()
            .all(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
            && UdpSocket::bind(("127.0.0.1", p.peer)).is_ok()
    })
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|st| {
            !st.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The demo process; SIGTERM on drop, so a failing test leaves nothing
/// running.
struct DemoProcess(std::process::Child);

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn demo_starts_real_nodes_and_sigterm_leaves_nothing_behind() {
    demo_run(BackendKind::Dovecot);
}

#[test]
fn demo_on_cyrus_starts_real_nodes_and_sigterm_leaves_nothing_behind() {
    demo_run(BackendKind::Cyrus);
}

/// `tandem demo --nodes 2 --backend KIND`: a client through each node, the
/// mail on both, and SIGTERM stopping every process it started.
fn demo_run(kind: BackendKind) {
    // One demo at a time: both would pick the same port range.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let nodes = 2;
    let mut base = 12000 + (std::process::id() % 97) as u16 * 150;
    while !ports_free(base, nodes) {
        base += 7;
        assert!(base < 32000, "no free port range");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut demo = DemoProcess(
        Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args([
                "demo",
                "--nodes",
                "2",
                "--backend",
                &kind.to_string(),
                "--port-base",
                &base.to_string(),
                "--dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(demo.0.stdout.take().unwrap());
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("demo exited early:\n{printed}");
        }
        printed.push_str(&line);
        if line.contains("ready") {
            break;
        }
        assert!(Instant::now() < deadline, "{printed}");
    }
    let p1 = NodePorts::of(1, base);
    assert!(
        printed.contains(&format!("127.0.0.1:{}", p1.imap)),
        "{printed}"
    );
    assert!(printed.contains("alice"), "{printed}");

    let mut pids = Vec::new();
    for n in 1..=nodes {
        let p = NodePorts::of(n, base);
        let addr = SocketAddr::from(([127, 0, 0, 1], p.imap));
        let mut c = ImapClient::login(addr, "alice", "demo");
        c.append("INBOX", b"Subject: hello demo\r\n\r\nhi\r\n")
            .unwrap()
            .ok();
        // The nodes form one cluster: once mutations replicate, INBOX
        // also holds what was appended through the earlier nodes, so only
        // "at least this one" holds either way (tests/cluster.rs checks
        // replication itself).
        let exists = c.command("SELECT INBOX").unwrap().ok().exists();
        assert!(exists.is_some_and(|k| k >= 1), "{exists:?}");
        c.command("LOGOUT").unwrap().ok();
        assert!(
            TcpStream::connect(("127.0.0.1", p.imaps)).is_ok(),
            "IMAPS listens"
        );
        let node_dir = dir.path().join(format!("node{n}"));
        let pid: u32 = std::fs::read_to_string(node_dir.join("tandem.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(alive(pid));
        pids.push(pid);
        let master =
            std::fs::read_to_string(node_dir.join(format!("{kind}/run/master.pid"))).unwrap();
        pids.push(master.trim().parse().unwrap());
    }
    // Each node's message is on both: one cluster, one mailbox.
    for n in 1..=nodes {
        let addr = SocketAddr::from(([127, 0, 0, 1], NodePorts::of(n, base).imap));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut c = ImapClient::login(addr, "alice", "demo");
            let exists = c.command("EXAMINE INBOX").unwrap().ok().exists();
            if exists == Some(u32::from(nodes)) {
                break;
            }
            assert!(Instant::now() < deadline, "node {n}: {exists:?} messages");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let status = Command::new("kill")
        .args(["-TERM", &demo.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = demo.0.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert!(rest.contains("stopped"), "{rest}");
    for pid in pids {
        assert!(!alive(pid), "process {pid} outlived the demo");
        // A Cyrus master leads a process group: its imapd, idled... too.
        if kind == BackendKind::Cyrus {
            assert!(
                !tandem_backends::cyrus::group_alive(pid as i32),
                "a process of group {pid} outlived the demo"
            );
        }
    }
    for n in 1..=nodes {
        let p = NodePorts::of(n, base);
        for port in [p.imap, p.imaps, p.backend] {
            assert!(
                TcpStream::connect(("127.0.0.1", port)).is_err(),
                "port {port} still open"
            );
        }
    }
    assert!(Path::new(&dir.path().join("node1/tandem.toml")).exists());
}
