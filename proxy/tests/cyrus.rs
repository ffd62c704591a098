//! tandem in front of Cyrus IMAP 3.6 (issue 10, first step): three
//! in-process nodes, each in front of its own real Cyrus, replicate what a
//! client does through one of them, with the same canonical UIDs and flags
//! everywhere.

use std::time::{Duration, Instant};

use tandem_tests::imap::{ImapClient, Status};
use tandem_tests::inproc::Cluster;

/// `UID FETCH 1:* (UID FLAGS)` of `mailbox` through node `node`, flags
/// without \Recent (which is per session); empty while the node has not
/// caught up.
fn view(cluster: &Cluster, node: usize, mailbox: &str) -> Vec<String> {
    let mut c = cluster.login(node, "alice");
    if c.command(&format!("EXAMINE {mailbox}")).unwrap().status != Status::Ok {
        return Vec::new();
    }
    c.command("UID FETCH 1:* (UID FLAGS)")
        .unwrap()
        .ok()
        .lines()
        .iter()
        .map(|l| {
            l.replace("\\Recent ", "")
                .replace(" \\Recent", "")
                .replace("\\Recent", "")
        })
        .collect()
}

#[test]
fn mutations_through_one_node_reach_every_cyrus_with_the_same_uids() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_cyrus(3);
    let mut c = cluster.login(0, "alice");
    let caps = c.command("CAPABILITY").unwrap().ok().lines().join(" ");
    for kept in [" UIDPLUS", " MOVE", " LITERAL+", " MULTIAPPEND"] {
        assert!(caps.contains(kept), "{kept} missing: {caps}");
    }
    for filtered in [
        " CONDSTORE",
        " QRESYNC",
        " OBJECTID",
        " ANNOTATE-EXPERIMENT-1",
        " METADATA",
        " URLAUTH",
        " XMOVE",
        " LOGINDISABLED",
        " COMPRESS=",
        " X-",
    ] {
        assert!(!caps.contains(filtered), "{filtered} offered: {caps}");
    }
    c.command("CREATE Work").unwrap().ok();
    let body = b"From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n";
    for _ in 0..2 {
        let r = c.append("INBOX", body).unwrap().ok();
        assert!(r.code("APPENDUID").is_some(), "{r:?}");
    }
    c.command("SELECT INBOX").unwrap().ok();
    c.command("UID STORE 1 +FLAGS (\\Flagged)").unwrap().ok();
    let r = c.command("UID COPY 1 Work").unwrap().ok();
    assert_eq!(r.code("COPYUID").unwrap()[1..], ["1", "1"]);
    let r = c.command("UID MOVE 2 Work").unwrap().ok();
    assert!(
        r.lines()
            .iter()
            .any(|l| l.contains("COPYUID") && l.ends_with(" 2 2] Moved")),
        "{r:?}"
    );
    c.command("RENAME Work Archive").unwrap().ok();

    let inbox = vec!["* 1 FETCH (FLAGS (\\Flagged) UID 1)".to_string()];
    let archive = vec![
        "* 1 FETCH (FLAGS (\\Flagged) UID 1)".to_string(),
        "* 2 FETCH (FLAGS () UID 2)".to_string(),
    ];
    for node in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = (
                view(&cluster, node, "INBOX"),
                view(&cluster, node, "Archive"),
            );
            if got == (inbox.clone(), archive.clone()) {
                break;
            }
            assert!(Instant::now() < deadline, "node {node}: {got:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        // Straight from that node's Cyrus: the messages moved there too.
        let cyrus = &cluster.cyruses[node];
        let mut direct = ImapClient::connect(cyrus.imap_addr()).unwrap();
        direct
            .authenticate_plain("alice", "alice", tandem_tests::USER_PASSWORD)
            .unwrap()
            .ok();
        assert_eq!(
            direct.command("EXAMINE INBOX").unwrap().ok().exists(),
            Some(1)
        );
        assert_eq!(
            direct.command("EXAMINE Archive").unwrap().ok().exists(),
            Some(2)
        );
        assert_eq!(direct.command("EXAMINE Work").unwrap().status, Status::No);
    }
}
