//! What an operator sees: the metrics endpoint, /healthz, /readyz and
//! `tandem status`, against whole clusters of `tandem run` processes in
//! front of real Dovecots, and again in front of Cyrus servers.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::both_backends;
use tandem_tests::{BackendKind, TandemCluster};

fn cluster(kind: BackendKind, n: u64) -> TandemCluster {
    TandemCluster::builder()
        .binary(env!("CARGO_BIN_EXE_tandem"))
        .backend(kind)
        .nodes(n)
        .start()
}

/// GET `path`: (status code, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// The value of an unlabelled sample in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

both_backends!(lag_rises_while_a_backend_is_stopped_and_returns_to_zero);
fn lag_rises_while_a_backend_is_stopped_and_returns_to_zero(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let mut c = cluster(kind, 3);
    let m3 = c.metrics_addr(3);
    let (code, text) = get(m3, "/metrics");
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains("# TYPE tandem_replication_lag_entries gauge"),
        "{text}"
    );
    assert!(
        text.contains("# HELP tandem_replication_lag_seconds"),
        "{text}"
    );
    wait_until("node 3 ready", 20, || get(m3, "/readyz").0 == 200);
    assert_eq!(get(m3, "/healthz").0, 200);
    // Every mail node registered its backend in the log; with Cyrus, the
    // cluster refuses what Cyrus would.
    let (name, strict) = match kind {
        BackendKind::Dovecot => ("dovecot", false),
        BackendKind::Cyrus => ("cyrus", true),
    };
    let expected: Vec<serde_json::Value> =
        (1..=3).map(|id| serde_json::json!([id, name])).collect();
    wait_until("backends registered", 20, || {
        let status: serde_json::Value = serde_json::from_str(&get(m3, "/status").1).unwrap();
        status["backends"].as_array() == Some(&expected)
            && status["strict_messages"] == serde_json::json!(strict)
    });

    c.stop_backend(3);
    let mut alice = c.login(1, "alice");
    for i in 0..5 {
        alice
            .append("INBOX", format!("Subject: lag {i}\r\n\r\nx\r\n").as_bytes())
            .unwrap()
            .ok();
    }
    wait_until("lag on node 3", 20, || {
        sample(&get(m3, "/metrics").1, "tandem_replication_lag_entries").unwrap_or(0.0) >= 5.0
    });
    wait_until("node 3 reports its backend down", 20, || {
        let (code, body) = get(m3, "/readyz");
        code == 503 && body.contains("backend")
    });
    let text = get(m3, "/metrics").1;
    assert_eq!(sample(&text, "tandem_backend_up"), Some(0.0), "{text}");
    // The other nodes are current.
    let text1 = get(c.metrics_addr(1), "/metrics").1;
    assert_eq!(
        sample(&text1, "tandem_replication_lag_entries"),
        Some(0.0),
        "{text1}"
    );
    assert!(
        text1.contains("tandem_proposals_total{outcome=\"ok\"}"),
        "{text1}"
    );
    assert!(
        text1.contains("tandem_imap_commands_total{command=\"APPEND\",result=\"ok\"}"),
        "{text1}"
    );

    c.start_backend(3);
    wait_until("node 3 caught up", 60, || {
        let text = get(m3, "/metrics").1;
        sample(&text, "tandem_replication_lag_entries") == Some(0.0)
            && sample(&text, "tandem_replication_lag_seconds") == Some(0.0)
    });
    wait_until("node 3 ready again", 20, || get(m3, "/readyz").0 == 200);

    // tandem status prints the whole cluster from one node's config (its
    // peers' endpoints are in it).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("status")
        .arg("--config")
        .arg(c.config_path(2))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("leader"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains(" up")).count(),
        3,
        "{text}"
    );
}

both_backends!(readyz_turns_unready_without_quorum_and_ready_again);
fn readyz_turns_unready_without_quorum_and_ready_again(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let mut c = cluster(kind, 3);
    let m1 = c.metrics_addr(1);
    wait_until("node 1 ready", 20, || get(m1, "/readyz").0 == 200);
    c.kill(2);
    c.kill(3);
    wait_until("node 1 unready", 30, || {
        let (code, body) = get(m1, "/readyz");
        code == 503 && body.contains("quorum")
    });
    assert_eq!(get(m1, "/healthz").0, 200, "alive all the same");
    c.restart(2);
    wait_until("node 1 ready again", 30, || get(m1, "/readyz").0 == 200);
}
