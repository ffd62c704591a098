//! Whole clusters as an operator runs them: `tandem run` processes with
//! their replicated log, each in front of its own real Dovecot (and each
//! test again with Cyrus), started, killed and restarted through
//! `tandem_tests::TandemCluster`.

mod common;

use common::both_backends;
use tandem_tests::{BackendKind, TandemCluster};

/// A cluster of `n` mail nodes, every one serving a LOGIN.
fn cluster(kind: BackendKind, n: u64) -> TandemCluster {
    TandemCluster::builder()
        .binary(env!("CARGO_BIN_EXE_tandem"))
        .backend(kind)
        .nodes(n)
        .start()
}

both_backends!(three_nodes_serve_and_two_survive_a_killed_one);
fn three_nodes_serve_and_two_survive_a_killed_one(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let mut c = cluster(kind, 3);
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

both_backends!(a_witness_runs_the_log_without_serving_imap);
fn a_witness_runs_the_log_without_serving_imap(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let mut c = TandemCluster::builder()
        .binary(env!("CARGO_BIN_EXE_tandem"))
        .backend(kind)
        .nodes(2)
        .witnesses(1)
        .start();
    assert_eq!(c.mail_ids(), [1, 2]);
    assert!(c.is_running(3));
    // The start waits for the mail nodes; the witness may log a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut log = c.log(3);
    while !log.contains("replicated log started") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        log = c.log(3);
    }
    assert!(log.contains("replicated log started"), "{log}");
    assert!(!log.contains("serving IMAP"), "{log}");
    for id in c.mail_ids() {
        c.login(id, "alice").command("SELECT INBOX").unwrap().ok();
    }
    c.stop(3);
    assert!(!c.is_running(3));
}

both_backends!(an_append_through_one_node_reaches_every_backend);
fn an_append_through_one_node_reaches_every_backend(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let c = cluster(kind, 3);
    let mut alice = c.login(1, "alice");
    alice
        .append("INBOX", b"Subject: wired\r\n\r\nthrough the log\r\n")
        .unwrap()
        .ok();
    for id in c.ids() {
        let backend = c.backend(id);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let mut direct = backend.login("alice");
            let exists = direct.command("SELECT INBOX").unwrap().ok().exists();
            if exists == Some(1) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {id}'s {:?} has {exists:?} messages",
                backend.kind()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Every message of alice's INBOX through node `id`: (UID, subject).
fn inbox(c: &TandemCluster, id: u64) -> Vec<(u32, String)> {
    mailbox(c, id, "INBOX")
}

/// (UID, subject) of alice's `name` through node `id`.
fn mailbox(c: &TandemCluster, id: u64, name: &str) -> Vec<(u32, String)> {
    let mut alice = c.login(id, "alice");
    alice.command(&format!("EXAMINE {name}")).unwrap().ok();
    let r = alice
        .command("UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .unwrap()
        .ok();
    r.lines()
        .iter()
        .filter_map(|l| {
            let uid = l.split("UID ").nth(1)?.split(' ').next()?.parse().ok()?;
            let subject = l.split("Subject: ").nth(1)?.split(['\r', '\n']).next()?;
            Some((uid, subject.to_string()))
        })
        .collect()
}

/// Waits until every running node shows the same INBOX, and returns it.
fn converged(c: &TandemCluster, ids: &[u64]) -> Vec<(u32, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let views: Vec<_> = ids.iter().map(|&id| inbox(c, id)).collect();
        if views.windows(2).all(|w| w[0] == w[1]) {
            return views[0].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nodes never converged: {views:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

both_backends!(killing_nodes_during_a_stream_of_appends_loses_and_reuses_no_uid);
fn killing_nodes_during_a_stream_of_appends_loses_and_reuses_no_uid(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tandem_tests::imap::Status;

    let mut c = cluster(kind, 3);
    let addrs: Vec<_> = c.ids().iter().map(|&id| c.imap_addr(id)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    // One writer per node; a writer whose node dies moves to the next one.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let addrs = addrs.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut attempt = 0;
                let mut node = w;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut client) = tandem_tests::ImapClient::connect(addrs[node]) else {
                        node = (node + 1) % addrs.len();
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    };
                    if client.command("LOGIN alice demo").map(|r| r.status).ok() != Some(Status::Ok)
                    {
                        node = (node + 1) % addrs.len();
                        continue;
                    }
                    while !stop.load(Ordering::Relaxed) {
                        attempt += 1;
                        let marker = format!("w{w}-{attempt}");
                        let msg = format!("Subject: {marker}\r\n\r\nbody\r\n");
                        match client.append("INBOX", msg.as_bytes()) {
                            Ok(r) if r.status == Status::Ok => {
                                let uid: u32 = r.code("APPENDUID").unwrap()[1].parse().unwrap();
                                acked.push((uid, marker));
                            }
                            // NO [UNAVAILABLE] during the election: try again.
                            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
                            // The node died under us: the outcome is unknown.
                            Err(_) => break,
                        }
                    }
                    node = (node + 1) % addrs.len();
                }
                acked
            })
        })
        .collect();
    // Kill every node in turn (the leader among them), restarting each.
    for id in c.ids() {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        c.kill(id);
        std::thread::sleep(std::time::Duration::from_millis(1500));
        c.restart(id);
    }
    std::thread::sleep(std::time::Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let mut acked: Vec<(u32, String)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    acked.sort();
    assert!(
        acked.len() > 20,
        "too few writes went through: {}",
        acked.len()
    );
    let final_view = converged(&c, &c.ids());
    // No UID names two messages, and none is missing or doubled.
    let mut seen = std::collections::BTreeMap::new();
    for (uid, subject) in &final_view {
        assert!(
            seen.insert(*uid, subject.clone()).is_none(),
            "UID {uid} twice"
        );
    }
    let subjects: std::collections::BTreeSet<_> = final_view.iter().map(|m| &m.1).collect();
    assert_eq!(
        subjects.len(),
        final_view.len(),
        "a message was applied twice"
    );
    for (uid, marker) in &acked {
        assert_eq!(
            seen.get(uid),
            Some(marker),
            "acknowledged UID {uid} ({marker}) is not that message everywhere"
        );
    }
}

/// mbsync of alice's mail from `server` into `dir` (its state kept there).
fn mbsync(server: std::net::SocketAddr, dir: &std::path::Path) -> Vec<String> {
    let (mail, text) = tandem_tests::mbsync(server, dir, "INBOX");
    // "Maildir notice: no UIDVALIDITY, creating new." is the first run's
    // near side; a far side that changed UIDVALIDITY is an error.
    assert!(
        !text
            .lines()
            .any(|l| l.contains("UIDVALIDITY") && l.to_ascii_lowercase().contains("change")),
        "mbsync saw a UIDVALIDITY change: {text}"
    );
    let mut files = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(rd) = std::fs::read_dir(mail.join("INBOX").join(sub)) {
            files.extend(
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string()),
            );
        }
    }
    files.sort();
    files
}

both_backends!(mbsync_fails_over_to_another_node_without_downloading_again);
fn mbsync_fails_over_to_another_node_without_downloading_again(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let mut c = cluster(kind, 3);
    let mut alice = c.login(1, "alice");
    for i in 0..3 {
        alice
            .append(
                "INBOX",
                format!("Subject: m{i}\r\n\r\nbody {i}\r\n").as_bytes(),
            )
            .unwrap()
            .ok();
    }
    drop(alice);
    let dir = tempfile::tempdir().unwrap();
    let first = mbsync(c.imap_addr(1), dir.path());
    assert_eq!(first.len(), 3, "{first:?}");
    let state = std::fs::read_to_string(dir.path().join("mail/INBOX/.mbsyncstate")).unwrap();
    c.kill(1);
    let mut alice = c.login(2, "alice");
    alice
        .append("INBOX", b"Subject: after\r\n\r\nafter the failover\r\n")
        .unwrap()
        .ok();
    drop(alice);
    converged(&c, &[2, 3]);
    let second = mbsync(c.imap_addr(2), dir.path());
    // The three files from node 1 are untouched (nothing downloaded again),
    // one new message came, nothing was lost.
    assert_eq!(second.len(), 4, "{second:?}");
    for f in &first {
        assert!(second.contains(f), "{f} was replaced: {second:?}");
    }
    let state2 = std::fs::read_to_string(dir.path().join("mail/INBOX/.mbsyncstate")).unwrap();
    let uv = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("FarUidValidity"))
            .map(str::to_string)
    };
    assert_eq!(uv(&state), uv(&state2), "{state}\n---\n{state2}");
    assert!(uv(&state).is_some(), "{state}");
}

/// Three nodes whose state sync is far longer than a test: a SIGKILL leaves
/// everything the applier did since its last barrier in doubt.
fn slow_sync_cluster(kind: BackendKind) -> TandemCluster {
    TandemCluster::builder()
        .binary(env!("CARGO_BIN_EXE_tandem"))
        .backend(kind)
        .nodes(3)
        .state_sync_ms(60_000)
        .start()
}

/// A message whose subject (and body) is `s`.
fn mail(s: &str) -> Vec<u8> {
    format!("Subject: {s}\r\n\r\nbody of {s}\r\n").into_bytes()
}

/// Waits until node 3's backend holds exactly `want` (subjects, in order)
/// in alice's `mailbox`.
fn wait_backend(c: &TandemCluster, mailbox: &str, want: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c.backend(3).subjects("alice", mailbox) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "node 3's {mailbox} never held {want:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Waits until nodes 1 to 3 all show alice's `name` with exactly `want`
/// (subjects, in order). Looking through node 3 gets mail delivered behind
/// tandem there adopted.
fn wait_everywhere(c: &TandemCluster, name: &str, want: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let views: Vec<Vec<String>> = [1, 2, 3]
            .iter()
            .map(|&id| mailbox(c, id, name).into_iter().map(|(_, s)| s).collect())
            .collect();
        if views.iter().all(|v| v == want) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{views:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

both_backends!(a_move_in_doubt_is_found_past_mail_delivered_behind_tandem);
/// A message delivered straight into a MOVE's destination on one backend,
/// then the MOVE, then a SIGKILL that left the MOVE in doubt: its sources
/// are gone, so its copies are told from the delivered message by the
/// sources' size and date, recorded before the MOVE (it used to take the
/// first unmapped message: the delivered one got the moved message's UID
/// on that node, and the moved one was adopted as a second copy).
fn a_move_in_doubt_is_found_past_mail_delivered_behind_tandem(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let mut c = slow_sync_cluster(kind);
    let mut alice = c.login(1, "alice");
    alice.command("CREATE Work").unwrap().ok();
    alice.append("INBOX", &mail("moved")).unwrap().ok();
    wait_backend(&c, "INBOX", &["moved"]);
    c.backend(3)
        .deliver("alice", "Work", &mail("delivered behind tandem"));
    alice.command("SELECT INBOX").unwrap().ok();
    alice.command("UID MOVE 1:* Work").unwrap().ok();
    wait_backend(&c, "Work", &["delivered behind tandem", "moved"]);
    c.kill(3);
    c.restart(3);
    c.wait_ready();
    let want = ["moved", "delivered behind tandem"];
    wait_everywhere(&c, "Work", &want);
    assert_eq!(c.backend(3).subjects("alice", "Work"), want);
    assert!(c.backend(3).subjects("alice", "INBOX").is_empty());
}

both_backends!(a_node_killed_before_its_progress_was_durable_holds_each_message_once);
/// With a state sync interval far longer than the test, a SIGKILL leaves
/// every item of the applier since its last barrier in doubt: restarted, it
/// looks for each on its backend. An APPEND whose message a later MOVE or
/// EXPUNGE took away must not be appended again (the barrier before those
/// made it durable).
fn a_node_killed_before_its_progress_was_durable_holds_each_message_once(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let mut c = slow_sync_cluster(kind);
    let mut alice = c.login(1, "alice");
    alice.command("CREATE Work").unwrap().ok();
    for s in ["a", "b"] {
        alice.append("INBOX", &mail(s)).unwrap().ok();
    }
    alice.command("SELECT INBOX").unwrap().ok();
    alice.command("UID MOVE 1 Work").unwrap().ok();
    for s in ["c", "d"] {
        alice.append("INBOX", &mail(s)).unwrap().ok();
    }
    alice
        .command("UID STORE 2 +FLAGS (\\Deleted)")
        .unwrap()
        .ok();
    alice.command("UID EXPUNGE 2").unwrap().ok();
    for s in ["e", "f"] {
        alice.append("INBOX", &mail(s)).unwrap().ok();
    }
    alice.command("UID COPY 3 Work").unwrap().ok();
    alice.command("LOGOUT").unwrap().ok();

    let (inbox_subjects, work_subjects) = (["c", "d", "e", "f"], ["a", "c"]);
    wait_backend(&c, "INBOX", &inbox_subjects);
    wait_backend(&c, "Work", &work_subjects);
    c.kill(3);
    c.restart(3);
    c.wait_ready();
    let view = converged(&c, &[1, 2, 3]);
    assert_eq!(view.len(), 4, "{view:?}");
    assert_eq!(c.backend(3).subjects("alice", "INBOX"), inbox_subjects);
    assert_eq!(c.backend(3).subjects("alice", "Work"), work_subjects);
    let log = c.log(3);
    assert!(log.contains("found applied before a restart"), "{log}");
}

both_backends!(an_append_in_doubt_is_found_past_mail_delivered_behind_tandem);
/// A message delivered straight into a backend between two APPENDs the
/// applier made there: after a SIGKILL that left both in doubt, the second
/// is found past it (not appended again), and the delivered one is adopted.
fn an_append_in_doubt_is_found_past_mail_delivered_behind_tandem(kind: BackendKind) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let mut c = slow_sync_cluster(kind);
    let mut alice = c.login(1, "alice");
    alice.append("INBOX", &mail("a")).unwrap().ok();
    wait_backend(&c, "INBOX", &["a"]);
    c.backend(3).deliver("alice", "INBOX", &mail("behind"));
    alice.append("INBOX", &mail("b")).unwrap().ok();
    wait_backend(&c, "INBOX", &["a", "behind", "b"]);
    c.kill(3);
    c.restart(3);
    c.wait_ready();
    let want = ["a", "b", "behind"];
    wait_everywhere(&c, "INBOX", &want);
    assert_eq!(c.backend(3).subjects("alice", "INBOX"), want);
}
