//! tandem in front of Cyrus IMAP 3.6 (issue 10, first steps): three
//! in-process nodes, each in front of its own real Cyrus, or a cluster that
//! mixes Cyrus and Dovecot nodes, replicate what clients do through any of
//! them, with the same canonical UIDs and flags everywhere.

use std::time::{Duration, Instant};

use tandem_tests::imap::{ImapClient, Status};
use tandem_tests::inproc::Cluster;

/// `UID FETCH 1:* (UID FLAGS)` of `mailbox` through node `node` as (UID,
/// flags without \Recent, which is per session), whatever order the
/// backend puts the items in; empty while the node has not caught up.
fn view(cluster: &Cluster, node: usize, mailbox: &str) -> Vec<(u32, String)> {
    let mut c = cluster.login(node, "alice");
    if c.command(&format!("EXAMINE {mailbox}")).unwrap().status != Status::Ok {
        return Vec::new();
    }
    let lines = c.command("UID FETCH 1:* (UID FLAGS)").unwrap().ok().lines();
    lines
        .iter()
        .map(|l| {
            let uid = l
                .split("UID ")
                .nth(1)
                .and_then(|s| s.split([' ', ')']).next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let flags = l
                .split("FLAGS (")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .unwrap_or_default()
                .split(' ')
                .filter(|f| !f.is_empty() && *f != "\\Recent")
                .collect::<Vec<_>>()
                .join(" ");
            (uid, flags)
        })
        .collect()
}

#[test]
fn mutations_through_one_node_reach_every_cyrus_with_the_same_uids() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_cyrus(3);
    exercise(&cluster, 0);
}

/// Node 1 in front of Dovecot, node 2 of Cyrus, node 3 of Dovecot; the
/// client works through the Cyrus node, the checks read all three.
#[test]
fn a_cluster_of_cyrus_and_dovecot_nodes_shows_one_canonical_view() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_mixed(&[false, true, false]);
    exercise(&cluster, 1);
}

/// Mutations through node `through` (in front of a Cyrus), then the same
/// view on every node, through tandem and straight from each backend.
fn exercise(cluster: &Cluster, through: usize) {
    let mut c = cluster.login(through, "alice");
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

    let inbox = vec![(1, "\\Flagged".to_string())];
    let archive = vec![(1, "\\Flagged".to_string()), (2, String::new())];
    for node in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = (view(cluster, node, "INBOX"), view(cluster, node, "Archive"));
            if got == (inbox.clone(), archive.clone()) {
                break;
            }
            assert!(Instant::now() < deadline, "node {node}: {got:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
        // Straight from that node's backend: the messages moved there too.
        let mut direct = ImapClient::connect(cluster.backend_addrs[node]).unwrap();
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
