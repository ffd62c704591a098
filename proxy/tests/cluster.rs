//! Whole clusters as an operator runs them: `tandem run` processes with
//! their replicated log, each in front of its own real Dovecot, started,
//! killed and restarted through `tandem_tests::TandemCluster`.

use tandem_tests::TandemCluster;

/// A cluster of `n` mail nodes, every one serving a LOGIN.
fn cluster(n: u64) -> TandemCluster {
    TandemCluster::builder()
        .binary(env!("CARGO_BIN_EXE_tandem"))
        .nodes(n)
        .start()
}

#[test]
fn three_nodes_serve_and_two_survive_a_killed_one() {
    let mut c = cluster(3);
    for id in c.ids() {
        let mut alice = c.login(id, "alice");
        alice.command("SELECT INBOX").unwrap().ok();
        alice.command("LOGOUT").unwrap().ok();
    }
    c.kill(1);
    assert!(!c.is_running(1));
    for id in [2, 3] {
        let mut bob = c.login(id, "bob");
        bob.command("SELECT INBOX").unwrap().ok();
    }
    c.restart(1);
    c.wait_ready();
}

#[test]
fn a_witness_runs_the_log_without_serving_imap() {
    let mut c = TandemCluster::builder()
        .binary(env!("CARGO_BIN_EXE_tandem"))
        .nodes(2)
        .witnesses(1)
        .start();
    assert_eq!(c.mail_ids(), [1, 2]);
    assert!(c.is_running(3));
    let log = c.log(3);
    assert!(log.contains("replicated log started"), "{log}");
    assert!(!log.contains("serving IMAP"), "{log}");
    for id in c.mail_ids() {
        c.login(id, "alice").command("SELECT INBOX").unwrap().ok();
    }
    c.stop(3);
    assert!(!c.is_running(3));
}

#[test]
fn an_append_through_one_node_reaches_every_backend() {
    let c = cluster(3);
    let mut alice = c.login(1, "alice");
    alice
        .append("INBOX", b"Subject: wired\r\n\r\nthrough the log\r\n")
        .unwrap()
        .ok();
    for id in c.ids() {
        let backend = c.dovecot(id).imap_addr();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let mut direct = tandem_tests::ImapClient::login(backend, "alice", "demo");
            let exists = direct.command("SELECT INBOX").unwrap().ok().exists();
            if exists == Some(1) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {id}'s Dovecot has {exists:?} messages"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
