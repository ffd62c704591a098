//! Replicated mutations with canonical UIDs, in-process: N tandem nodes
//! (Raft, applier, IMAP server) in one test process, each in front of its
//! own real Dovecot, and each test again with Cyrus backends. Process-level
//! faults (SIGKILL) are in `cluster.rs`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::both_backends;
use tandem_tests::imap::{ImapClient, Reply, Status};
use tandem_tests::inproc::Cluster;
use tandem_tests::BackendKind;

fn uid_fetch(c: &mut ImapClient, what: &str) -> Vec<String> {
    c.command(&format!("UID FETCH 1:* ({what})"))
        .unwrap()
        .ok()
        .lines()
}

/// The `* n FETCH` lines with a UID among `lines` as (n, UID, flags in the
/// order sent), whatever order the backend puts the items in (Cyrus:
/// `FLAGS (..) UID u`). `\Recent` is left out: it belongs to the session
/// that first saw the message, and is not replicated.
fn fetched_flags(lines: &[String]) -> Vec<(u32, u32, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let (seq, rest) = l.strip_prefix("* ")?.split_once(" FETCH (")?;
            let uid = rest.split("UID ").nth(1)?.split([' ', ')']).next()?;
            let flags = rest.split("FLAGS (").nth(1)?.split(')').next()?;
            let flags: Vec<&str> = flags.split(' ').filter(|f| *f != "\\Recent").collect();
            Some((seq.parse().ok()?, uid.parse().ok()?, flags.join(" ")))
        })
        .collect()
}

fn wait_for<T: PartialEq + std::fmt::Debug>(what: &str, expected: &T, mut f: impl FnMut() -> T) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = f();
        if &got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: expected {expected:?}, got {got:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn body(marker: &str) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: {marker}\r\n\r\nbody {marker}\r\n").into_bytes()
}

fn appenduid(r: &Reply) -> (u32, u32) {
    let code = r.code("APPENDUID").expect("APPENDUID");
    (code[0].parse().unwrap(), code[1].parse().unwrap())
}

both_backends!(append_through_one_node_is_seen_with_the_same_uid_everywhere);
fn append_through_one_node_is_seen_with_the_same_uid_everywhere(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    let r = c1.append("INBOX", &body("m1")).unwrap().ok();
    let (uv, uid) = appenduid(&r);
    let r = c1.append("INBOX", &body("m2")).unwrap().ok();
    assert_eq!(appenduid(&r), (uv, uid + 1));
    for node in 0..3 {
        let mut c = cluster.login(node, "alice");
        let sel = c.command("SELECT INBOX").unwrap().ok();
        let lines = sel.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("[UIDVALIDITY {uv}]"))),
            "node {node}: {lines:?}"
        );
        wait_for(&format!("node {node} UIDs"), &2, || {
            uid_fetch(&mut c, "UID")
                .iter()
                .filter(|l| l.contains("FETCH"))
                .count()
        });
        let lines = uid_fetch(&mut c, "UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]");
        let text = lines.join("\n");
        assert!(text.contains(&format!("UID {uid} ")), "node {node}: {text}");
        assert!(
            text.contains(&format!("UID {} ", uid + 1)),
            "node {node}: {text}"
        );
        assert!(
            text.contains("m1") && text.contains("m2"),
            "node {node}: {text}"
        );
    }
}

both_backends!(store_copy_move_expunge_and_mailboxes_replicate);
fn store_copy_move_expunge_and_mailboxes_replicate(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    c1.command("CREATE Work").unwrap().ok();
    for i in 0..3 {
        c1.append("INBOX", &body(&format!("s{i}"))).unwrap().ok();
    }
    c1.command("SELECT INBOX").unwrap().ok();
    let r = c1
        .command("UID STORE 1:2 +FLAGS (\\Flagged $Label)")
        .unwrap()
        .ok();
    let flagged = "\\Flagged $Label".to_string();
    assert_eq!(
        fetched_flags(&r.lines()),
        [(1, 1, flagged.clone()), (2, 2, flagged.clone())],
        "{r:?}"
    );
    // One FETCH per message: not also the backend's unasked report of the
    // change the applier made.
    let fetches = r.lines().iter().filter(|l| l.contains(" FETCH ")).count();
    assert_eq!(fetches, 2, "{r:?}");
    let r = c1.command("UID COPY 2:3 Work").unwrap().ok();
    let code = r.code("COPYUID").expect("COPYUID");
    assert_eq!(code[1], "2:3");
    assert_eq!(code[2], "1:2");
    let r = c1.command("UID MOVE 1 Work").unwrap().ok();
    assert!(
        r.lines()
            .iter()
            .any(|l| l.contains("COPYUID") && l.contains(" 1 3]")),
        "{r:?}"
    );
    assert!(r.lines().iter().any(|l| l.ends_with("EXPUNGE")), "{r:?}");
    c1.command("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
        .unwrap()
        .ok();
    let r = c1.command("EXPUNGE").unwrap().ok();
    assert!(r.lines().iter().any(|l| l.ends_with("EXPUNGE")), "{r:?}");
    c1.command("CREATE Old").unwrap().ok();
    c1.command("RENAME Old Archive").unwrap().ok();
    c1.command("CREATE Gone").unwrap().ok();
    c1.command("DELETE Gone").unwrap().ok();
    let r = c1.command("CREATE Work").unwrap();
    assert_eq!(r.status, Status::No);
    assert!(r.text.contains("ALREADYEXISTS"), "{r:?}");

    for node in 0..3 {
        let mut c = cluster.login(node, "alice");
        wait_for(
            &format!("node {node} INBOX"),
            &vec![(1, 2, flagged.clone())],
            || {
                c.command("EXAMINE INBOX").unwrap().ok();
                fetched_flags(&uid_fetch(&mut c, "UID FLAGS"))
            },
        );
        wait_for(&format!("node {node} Work"), &3, || {
            c.command("EXAMINE Work").unwrap().ok();
            uid_fetch(&mut c, "UID").len()
        });
        let work = fetched_flags(&uid_fetch(&mut c, "UID FLAGS"));
        assert_eq!(
            work,
            [
                (1, 1, flagged.clone()),
                (2, 2, String::new()),
                (3, 3, flagged.clone())
            ],
            "node {node}"
        );
        wait_for(
            &format!("node {node} mailboxes"),
            &(true, false, false),
            || {
                let list = c
                    .command("LIST \"\" \"*\"")
                    .unwrap()
                    .ok()
                    .lines()
                    .join("\n");
                (
                    list.contains("Archive"),
                    list.contains("Old"),
                    list.contains("Gone"),
                )
            },
        );
    }
}

both_backends!(mail_delivered_straight_into_one_backend_is_adopted_everywhere);
fn mail_delivered_straight_into_one_backend_is_adopted_everywhere(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    let (uv, first) = appenduid(&c1.append("INBOX", &body("through-tandem")).unwrap().ok());
    // Straight into node 2's backend, behind tandem's back (as a local
    // delivery would).
    cluster
        .backend(1)
        .deliver("alice", "INBOX", &body("behind-tandem"));
    // Node 2 notices when a client selects the mailbox.
    let mut c2 = cluster.login(1, "alice");
    c2.command("SELECT INBOX").unwrap().ok();
    for node in 0..3 {
        let mut c = cluster.login(node, "alice");
        wait_for(&format!("node {node} adopted"), &2, || {
            c.command("EXAMINE INBOX").unwrap().ok();
            let lines = uid_fetch(&mut c, "UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]");
            lines.iter().filter(|l| l.contains("FETCH")).count()
        });
        let text = uid_fetch(&mut c, "UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]").join("\n");
        assert!(
            text.contains(&format!("UID {first} ")),
            "node {node}: {text}"
        );
        assert!(
            text.contains(&format!("UID {} ", first + 1)),
            "node {node}: {text}"
        );
        assert!(text.contains("behind-tandem"), "node {node}: {text}");
        let sel = c.command("EXAMINE INBOX").unwrap().ok().lines().join("\n");
        assert!(sel.contains(&format!("[UIDVALIDITY {uv}]")), "{sel}");
    }
}

both_backends!(mail_delivered_behind_tandem_before_an_applied_append_is_adopted);
/// A message delivered straight into a backend just before the applier
/// appends one there ends up below the highest mapped local UID: the
/// adoption scan must still find it.
fn mail_delivered_behind_tandem_before_an_applied_append_is_adopted(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    c1.append("INBOX", &body("first")).unwrap().ok();
    wait_for("node 2 has first", &1, || {
        contents(&cluster, 1, "INBOX").len()
    });
    cluster
        .backend(1)
        .deliver("alice", "INBOX", &body("behind"));
    c1.append("INBOX", &body("second")).unwrap().ok();
    wait_for(
        "node 2's backend has all three",
        &vec![
            "first".to_string(),
            "behind".to_string(),
            "second".to_string(),
        ],
        || cluster.backend(1).subjects("alice", "INBOX"),
    );
    let mut c2 = cluster.login(1, "alice");
    c2.command("SELECT INBOX").unwrap().ok();
    let adopted: Vec<String> = ["first", "second", "behind"].map(String::from).to_vec();
    for node in 0..3 {
        wait_for(&format!("node {node} adopted"), &adopted, || {
            contents(&cluster, node, "INBOX")
                .into_iter()
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
        });
    }
    assert_eq!(
        cluster.backend(1).subjects("alice", "INBOX"),
        ["first", "second", "behind"]
    );
}

both_backends!(more_mail_behind_tandem_than_one_adoption_batch_is_all_adopted);
/// More messages delivered behind tandem's back than one adoption batch
/// (50): the copies of the first batch get local UIDs above the rest, and
/// the scan must still find the rest.
fn more_mail_behind_tandem_than_one_adoption_batch_is_all_adopted(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    c1.command("CREATE Bulk").unwrap().ok();
    let mut direct = cluster.backend(1).login("alice");
    for i in 0..120 {
        direct
            .append("Bulk", &body(&format!("bulk-{i}")))
            .unwrap()
            .ok();
    }
    let mut c2 = cluster.login(1, "alice");
    c2.command("SELECT Bulk").unwrap().ok();
    let expected: Vec<String> = (0..120).map(|i| format!("bulk-{i}")).collect();
    for node in 0..3 {
        wait_for(&format!("node {node} adopted all"), &expected, || {
            let mut got: Vec<String> = contents(&cluster, node, "Bulk")
                .into_iter()
                .map(|(_, s)| s)
                .collect();
            got.sort_by_key(|s| s[5..].parse::<u32>().unwrap_or(0));
            got
        });
    }
}

/// Every message of alice's `mailbox` through node `node`: (UID, subject).
fn contents(cluster: &Cluster, node: usize, mailbox: &str) -> Vec<(u32, String)> {
    let mut c = cluster.login(node, "alice");
    if c.command(&format!("EXAMINE {mailbox}")).unwrap().status != Status::Ok {
        // Not there yet (the node is catching up).
        return Vec::new();
    }
    let r = c
        .command("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .unwrap()
        .ok();
    let mut out = Vec::new();
    for l in r.lines() {
        let Some(uid) = l.split("UID ").nth(1).and_then(|s| s.split(' ').next()) else {
            continue;
        };
        let subject = l
            .split("Subject: ")
            .nth(1)
            .and_then(|s| s.split(['\r', '\n']).next())
            .map(str::to_string)
            .unwrap_or_default();
        out.push((uid.parse().unwrap(), subject));
    }
    out
}

/// What node `node`'s backend holds for alice, straight from it: subjects
/// in UID order.
fn backend_subjects(cluster: &Cluster, node: usize, mailbox: &str) -> Vec<String> {
    cluster.backend(node).subjects("alice", mailbox)
}

both_backends!(concurrent_appends_through_all_nodes_get_distinct_increasing_uids_in_one_order);
fn concurrent_appends_through_all_nodes_get_distinct_increasing_uids_in_one_order(
    kind: BackendKind,
) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.imap).collect();
    let threads: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(i, &addr)| {
            std::thread::spawn(move || {
                let mut c = ImapClient::login(addr, "alice", tandem_tests::USER_PASSWORD);
                let mut got = Vec::new();
                for k in 0..10 {
                    let marker = format!("n{i}-{k}");
                    let r = c.append("INBOX", &body(&marker)).unwrap().ok();
                    got.push((appenduid(&r).1, marker));
                }
                got
            })
        })
        .collect();
    let per_client: Vec<Vec<(u32, String)>> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    // Each client's UIDs increase in the order it got them.
    for (i, got) in per_client.iter().enumerate() {
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "client {i}: {got:?}"
        );
    }
    let mut acked: Vec<(u32, String)> = per_client.into_iter().flatten().collect();
    acked.sort();
    let uids: std::collections::BTreeSet<u32> = acked.iter().map(|a| a.0).collect();
    assert_eq!(uids.len(), 30, "a UID was given twice: {acked:?}");
    for node in 0..3 {
        wait_for(&format!("node {node} contents"), &acked, || {
            contents(&cluster, node, "INBOX")
        });
        // The backend itself holds them in the same order (so sequence
        // numbers agree).
        let order: Vec<String> = acked.iter().map(|a| a.1.clone()).collect();
        assert_eq!(
            backend_subjects(&cluster, node, "INBOX"),
            order,
            "node {node}"
        );
    }
}

both_backends!(without_quorum_a_mutation_gets_unavailable_and_nothing_is_applied);
fn without_quorum_a_mutation_gets_unavailable_and_nothing_is_applied(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let mut cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    c1.append("INBOX", &body("before")).unwrap().ok();
    for node in 1..3 {
        wait_for("applied everywhere", &vec!["before".to_string()], || {
            backend_subjects(&cluster, node, "INBOX")
        });
    }
    cluster.stop_node(1);
    cluster.stop_node(2);
    let started = Instant::now();
    let r = c1.append("INBOX", &body("lost")).unwrap();
    assert_eq!(r.status, Status::No, "{r:?}");
    assert!(r.text.contains("[UNAVAILABLE]"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let r = c1.command("CREATE Nope").unwrap();
    assert!(r.text.contains("[UNAVAILABLE]"), "{r:?}");
    // Reads still work, and nothing of the refused writes reached a backend.
    for node in 0..3 {
        assert_eq!(
            backend_subjects(&cluster, node, "INBOX"),
            vec!["before"],
            "node {node}"
        );
    }
}

both_backends!(a_stopped_backend_catches_up_when_it_returns);
fn a_stopped_backend_catches_up_when_it_returns(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let mut cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    c1.append("INBOX", &body("one")).unwrap().ok();
    cluster.backend_mut(2).stop();
    let mut acked = vec![];
    for k in 0..5 {
        let marker = format!("while-down-{k}");
        let r = c1.append("INBOX", &body(&marker)).unwrap().ok();
        acked.push((appenduid(&r).1, marker));
    }
    c1.command("SELECT INBOX").unwrap().ok();
    c1.command("UID STORE 1 +FLAGS (\\Seen)").unwrap().ok();
    cluster.backend_mut(2).restart();
    let expected = contents(&cluster, 0, "INBOX");
    assert_eq!(expected.len(), 6);
    wait_for("node 3 caught up", &expected, || {
        contents(&cluster, 2, "INBOX")
    });
    let mut c3 = cluster.login(2, "alice");
    c3.command("EXAMINE INBOX").unwrap().ok();
    let flags = fetched_flags(&uid_fetch(&mut c3, "UID FLAGS"));
    assert_eq!(flags.len(), 6, "{flags:?}");
    assert_eq!(flags[0], (1, 1, "\\Seen".to_string()), "{flags:?}");
    assert!(flags[1..].iter().all(|f| f.2.is_empty()), "{flags:?}");
}

both_backends!(a_node_catching_up_moves_what_its_other_sessions_appended);
/// A node catching up applies runs of APPENDs over parallel backend
/// sessions; the session that then moves those messages must see them
/// (Dovecot skips UIDs a session has not seen yet, and the MOVE would be
/// lost on this node only).
fn a_node_catching_up_moves_what_its_other_sessions_appended(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    c1.command("CREATE Work").unwrap().ok();
    c1.append("INBOX", &body("a")).unwrap().ok();
    wait_for("node 3 has a", &1, || contents(&cluster, 2, "INBOX").len());
    // Node 3's applier waits on its frozen backend in the first MOVE while
    // the rest queues up behind it; thawed, it appends b, c and d over
    // parallel sessions, then moves them over the session of the first.
    cluster.backend(2).freeze(true);
    c1.command("SELECT INBOX").unwrap().ok();
    c1.command("UID MOVE 1 Work").unwrap().ok();
    for m in ["b", "c", "d"] {
        c1.append("INBOX", &body(m)).unwrap().ok();
    }
    c1.command("UID MOVE 2:4 Work").unwrap().ok();
    cluster.backend(2).freeze(false);
    let work: Vec<(u32, String)> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, m)| (i as u32 + 1, m.to_string()))
        .collect();
    assert_eq!(contents(&cluster, 0, "Work"), work);
    wait_for("node 3 Work", &work, || contents(&cluster, 2, "Work"));
    assert_eq!(contents(&cluster, 2, "INBOX"), vec![]);
    assert_eq!(backend_subjects(&cluster, 2, "INBOX"), Vec::<String>::new());
    assert_eq!(backend_subjects(&cluster, 2, "Work"), ["a", "b", "c", "d"]);
}

both_backends!(a_change_whose_answer_was_lost_is_applied_exactly_once);
/// A backend that carries out a command and then loses the connection before
/// answering (it was stopped, the link broke) must not get the command a
/// second time: the retry looks first, and records what it finds.
fn a_change_whose_answer_was_lost_is_applied_exactly_once(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_with_cutters(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    c1.command("CREATE Work").unwrap().ok();
    c1.append("INBOX", &body("first")).unwrap().ok();
    c1.append("INBOX", &body("second")).unwrap().ok();
    wait_for("node 3 has both", &2, || {
        contents(&cluster, 2, "INBOX").len()
    });
    let cutter = &cluster.cutters[2];
    let cut = |n: u64| wait_for("the answer cut on node 3", &n, || cutter.cuts());

    cutter.arm("APPEND");
    c1.append("INBOX", &body("third")).unwrap().ok();
    cut(1);
    c1.command("SELECT INBOX").unwrap().ok();
    cutter.arm("UID COPY");
    c1.command("UID COPY 1 Work").unwrap().ok();
    cut(2);
    cutter.arm("UID MOVE");
    c1.command("UID MOVE 2 Work").unwrap().ok();
    cut(3);

    let s = |v: &[(u32, &str)]| -> Vec<(u32, String)> {
        v.iter().map(|(u, m)| (*u, m.to_string())).collect()
    };
    let inbox = s(&[(1, "first"), (3, "third")]);
    let work = s(&[(1, "first"), (2, "second")]);
    assert_eq!(contents(&cluster, 0, "INBOX"), inbox);
    assert_eq!(contents(&cluster, 0, "Work"), work);
    for node in 1..3 {
        wait_for(&format!("node {node} INBOX"), &inbox, || {
            contents(&cluster, node, "INBOX")
        });
        wait_for(&format!("node {node} Work"), &work, || {
            contents(&cluster, node, "Work")
        });
    }
    assert_eq!(backend_subjects(&cluster, 2, "INBOX"), ["first", "third"]);
    assert_eq!(backend_subjects(&cluster, 2, "Work"), ["first", "second"]);
}

both_backends!(a_backend_refusal_on_the_client_node_is_undone_on_the_others);
fn a_backend_refusal_on_the_client_node_is_undone_on_the_others(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    c1.command("CREATE Box").unwrap().ok();
    c1.append("Box", &body("kept")).unwrap().ok();
    wait_for("Box everywhere", &vec!["kept".to_string()], || {
        backend_subjects(&cluster, 2, "Box")
    });
    // Behind tandem's back, node 1's backend loses the mailbox: its apply
    // of the next APPEND fails there.
    let mut direct = cluster.backend(0).login("alice");
    direct.command("DELETE Box").unwrap().ok();
    let r = c1.append("Box", &body("refused")).unwrap();
    assert_eq!(r.status, Status::No, "{r:?}");
    // The other nodes appended it, then the compensating expunge removed
    // it again: nobody keeps a message the client was told NO about.
    for node in 1..3 {
        wait_for(
            &format!("node {node} undone"),
            &vec!["kept".to_string()],
            || backend_subjects(&cluster, node, "Box"),
        );
    }
}

both_backends!(uids_are_rewritten_both_ways_where_local_and_canonical_differ);
fn uids_are_rewritten_both_ways_where_local_and_canonical_differ(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    // Node 2's backend already holds a message before alice first comes
    // through tandem: it is adopted, so node 2's local UIDs run one ahead
    // of the canonical ones.
    cluster.backend(1).deliver("alice", "INBOX", &body("early"));
    let mut c2 = cluster.login(1, "alice");
    c2.command("SELECT INBOX").unwrap().ok();
    wait_for("adopted", &1, || contents(&cluster, 0, "INBOX").len());
    let mut c1 = cluster.login(0, "alice");
    for m in ["m1", "m2"] {
        c1.append("INBOX", &body(m)).unwrap().ok();
    }
    wait_for("node 2 has all", &3, || {
        contents(&cluster, 1, "INBOX").len()
    });
    let mut c2 = cluster.login(1, "alice");
    let sel = c2.command("SELECT INBOX").unwrap().ok().lines().join("\n");
    let uv = contents(&cluster, 0, "INBOX");
    assert_eq!(uv.iter().map(|m| m.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(sel.contains("[UIDNEXT 4]"), "{sel}");
    // The backend's own numbers are not the canonical ones.
    let mut d = cluster.backend(1).login("alice");
    let local = d.command("EXAMINE INBOX").unwrap().ok().lines().join("\n");
    assert!(!local.contains("[UIDNEXT 4]"), "{local}");

    let r = c2.command("UID SEARCH ALL").unwrap().ok().lines();
    assert_eq!(r, vec!["* SEARCH 1 2 3"]);
    let r = c2.command("UID SEARCH UID 2:3").unwrap().ok().lines();
    assert_eq!(r, vec!["* SEARCH 2 3"]);
    let r = c2
        .command("UID SEARCH RETURN (ALL MIN MAX) ALL")
        .unwrap()
        .ok()
        .lines()
        .join("\n");
    assert!(
        r.contains("MIN 1") && r.contains("MAX 3") && r.contains("ALL 1:3"),
        "{r}"
    );
    let r = c2
        .command("UID FETCH 2 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .unwrap()
        .ok();
    let text = r.lines().join("\n");
    assert!(text.contains("UID 2 ") && text.contains("m1"), "{text}");
    let r = c2.command("UID FETCH 9 (UID)").unwrap().ok();
    assert!(r.untagged.is_empty(), "{r:?}");
    let r = c2
        .command("STATUS INBOX (UIDNEXT MESSAGES)")
        .unwrap()
        .ok()
        .lines()
        .join("\n");
    assert!(r.contains("UIDNEXT 4") && r.contains("MESSAGES 3"), "{r}");
    c2.command("UID STORE 3 +FLAGS (\\Seen)").unwrap().ok();
    let mut c1 = cluster.login(0, "alice");
    c1.command("EXAMINE INBOX").unwrap().ok();
    let flags = c1
        .command("UID FETCH 3 (FLAGS)")
        .unwrap()
        .ok()
        .lines()
        .join("\n");
    assert!(flags.contains("\\Seen"), "{flags}");
    // What tandem cannot translate or replicate is refused, not passed on.
    for cmd in [
        "UID SORT (DATE) UTF-8 ALL",
        "SETACL INBOX bob lr",
        "XAPPLEPUSHSERVICE",
    ] {
        let r = c2.command(cmd).unwrap();
        assert_eq!(r.status, Status::Bad, "{cmd}: {r:?}");
        assert!(r.text.contains("[CANNOT]"), "{cmd}: {r:?}");
    }
    c2.command("NAMESPACE").unwrap().ok();
    // Sequence numbers agree: message 2 is UID 2 on every node.
    for node in 0..3 {
        let mut c = cluster.login(node, "alice");
        c.command("EXAMINE INBOX").unwrap().ok();
        let r = c.command("FETCH 2 (UID)").unwrap().ok().lines();
        assert_eq!(r, vec!["* 2 FETCH (UID 2)"], "node {node}");
    }
}

both_backends!(rename_inbox_moves_its_messages_with_new_canonical_uids);
fn rename_inbox_moves_its_messages_with_new_canonical_uids(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 2);
    let mut c1 = cluster.login(0, "alice");
    for m in ["a", "b"] {
        c1.append("INBOX", &body(m)).unwrap().ok();
    }
    c1.command("RENAME INBOX Saved").unwrap().ok();
    for node in 0..2 {
        wait_for(
            &format!("node {node} Saved"),
            &vec![(1, "a".to_string()), (2, "b".to_string())],
            || contents(&cluster, node, "Saved"),
        );
        assert!(contents(&cluster, node, "INBOX").is_empty());
    }
    let r = c1.append("INBOX", &body("c")).unwrap().ok();
    assert_eq!(appenduid(&r).1, 3, "INBOX keeps its UIDNEXT");
}

both_backends!(a_rename_the_client_nodes_backend_refuses_is_undone_everywhere);
fn a_rename_the_client_nodes_backend_refuses_is_undone_everywhere(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    c1.command("CREATE Old").unwrap().ok();
    c1.append("Old", &body("kept")).unwrap().ok();
    // Node 1's backend has a mailbox tandem does not know (from before it).
    let mut direct = cluster.backend(0).login("alice");
    direct.command("CREATE New").unwrap().ok();
    let r = c1.command("RENAME Old New").unwrap();
    assert_eq!(r.status, Status::No, "{r:?}");
    for node in 0..3 {
        wait_for(
            &format!("node {node} has Old back"),
            &vec![(1, "kept".to_string())],
            || contents(&cluster, node, "Old"),
        );
        let mut c = cluster.login(node, "alice");
        let r = c.command("EXAMINE New").unwrap();
        assert_eq!(r.status, Status::No, "node {node}: {r:?}");
    }
}

both_backends!(deleting_a_mailbox_with_children_leaves_what_the_client_was_told);
/// DELETE of a mailbox that has children: Cyrus refuses it with
/// `NO [HASCHILDREN]` (Dovecot by itself deletes it, its messages go and the
/// children stay), so tandem refuses it on every backend. Every node shows
/// what the client was told: the mailbox is there with its messages, and
/// the children keep theirs.
fn deleting_a_mailbox_with_children_leaves_what_the_client_was_told(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(kind, 3);
    let mut c1 = cluster.login(0, "alice");
    c1.command("CREATE Parent").unwrap().ok();
    c1.command("CREATE Parent.Child").unwrap().ok();
    c1.append("Parent", &body("p1")).unwrap().ok();
    c1.append("Parent.Child", &body("c1")).unwrap().ok();
    let r = c1.command("DELETE Parent").unwrap();
    assert_eq!(r.status, Status::No, "{r:?}");
    let parent: Vec<(u32, String)> = match r.status {
        Status::Ok => vec![],
        _ => {
            assert!(r.text.contains("[HASCHILDREN]"), "{r:?}");
            vec![(1, "p1".into())]
        }
    };
    for node in 0..3 {
        wait_for(&format!("node {node} Parent"), &parent, || {
            contents(&cluster, node, "Parent")
        });
        wait_for(
            &format!("node {node} Parent.Child"),
            &vec![(1, "c1".to_string())],
            || contents(&cluster, node, "Parent.Child"),
        );
        if parent.is_empty() {
            // Gone from the backend too (Dovecot keeps the name above the
            // child, not selectable).
            let mut d = cluster.backend(node).login("alice");
            let r = d.command("EXAMINE Parent").unwrap();
            assert!(
                r.status != Status::Ok || r.exists() == Some(0),
                "node {node}: {r:?}"
            );
        } else {
            assert_eq!(cluster.backend(node).subjects("alice", "Parent"), ["p1"]);
        }
    }
    if !parent.is_empty() {
        // The mailbox the client was told is still there takes mail.
        let r = c1.append("Parent", &body("p2")).unwrap().ok();
        assert_eq!(appenduid(&r).1, 2, "{r:?}");
    }
}
