//! tandem in front of Cyrus IMAP 3.6 (issue 10, first steps): three
//! in-process nodes, each in front of its own real Cyrus, or a cluster that
//! mixes Cyrus and Dovecot nodes, replicate what clients do through any of
//! them, with the same canonical UIDs and flags everywhere.

use std::time::{Duration, Instant};

use tandem_tests::imap::{ImapClient, Status};
use tandem_tests::inproc::Cluster;

/// The literal of the `BODY[]` in a FETCH answer.
fn fetched_body(untagged: &[Vec<u8>]) -> Option<&[u8]> {
    untagged.iter().find_map(|l| {
        let at = l.windows(8).position(|w| w == b"BODY[] {")? + 8;
        let close = at + l[at..].iter().position(|&b| b == b'}')?;
        let n: usize = std::str::from_utf8(&l[at..close]).ok()?.parse().ok()?;
        l.get(close + 3..close + 3 + n)
    })
}

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
/// client works through the Cyrus node, the checks read all three. First,
/// messages that Cyrus would refuse are refused through a Dovecot node too,
/// before anything is replicated: the views below start at UID 1.
#[test]
fn a_cluster_of_cyrus_and_dovecot_nodes_shows_one_canonical_view() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_mixed(&[false, true, false]);
    let mut c = cluster.login(0, "alice");
    for (message, text) in [
        (&b"Subject: a\n\nbare newlines\n"[..], "bare newlines"),
        (b"Subject: a\r\n\r\nN\0L\r\n", "NUL"),
        (b"no header at all\r\n", "invalid header"),
    ] {
        let r = c.append("INBOX", message).unwrap();
        assert_eq!(r.status, Status::No, "{r:?}");
        assert!(r.code("CANNOT").is_some() && r.text.contains(text), "{r:?}");
    }
    // Names Cyrus refuses and Dovecot takes, and the other way round.
    for name in ["\"a;b\"", "\"Other Users\"", "\"~a\"", "\"a..b\""] {
        let r = c.command(&format!("CREATE {name}")).unwrap();
        assert_eq!(r.status, Status::No, "{name}: {r:?}");
        assert!(r.code("CANNOT").is_some(), "{r:?}");
    }
    // Cyrus refuses to DELETE a mailbox with children, Dovecot's Maildir
    // does not: tandem refuses it on every node.
    c.command("CREATE Parent").unwrap().ok();
    c.command("CREATE Parent.Child").unwrap().ok();
    let r = c.command("DELETE Parent").unwrap();
    assert_eq!(r.status, Status::No, "{r:?}");
    assert!(r.code("HASCHILDREN").is_some(), "{r:?}");
    c.command("DELETE Parent.Child").unwrap().ok();
    c.command("DELETE Parent").unwrap().ok();
    drop(c);
    exercise(&cluster, 1);
    for node in 0..3 {
        let mut c = cluster.login(node, "alice");
        let list = c
            .command("LIST \"\" \"*\"")
            .unwrap()
            .ok()
            .lines()
            .join("\n");
        assert!(!list.contains("Parent"), "node {node}: {list}");
    }
}

/// Without a Cyrus node, what Dovecot takes is taken: a message with bare
/// LF line ends (which a Cyrus node would refuse) is replicated to every
/// Dovecot under one UID.
#[test]
fn a_dovecot_only_cluster_takes_what_dovecot_takes() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start(3);
    let mut c = cluster.login(0, "alice");
    let r = c
        .append("INBOX", b"Subject: lf\n\nbare newlines\n")
        .unwrap()
        .ok();
    let uid = r.code("APPENDUID").unwrap()[1].clone();
    for node in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = view(&cluster, node, "INBOX");
            if got.len() == 1 {
                assert_eq!(got[0].0.to_string(), uid, "node {node}");
                break;
            }
            assert!(Instant::now() < deadline, "node {node}: {got:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// tandem's check of a new mailbox name (`tandem_parser::names`) against
/// a real Dovecot and a real Cyrus: on a name it lets through, both agree
/// (both create it, or both refuse it, as malformed modified UTF-7, which
/// the check leaves to them); a name it refuses, at least one refuses.
#[test]
fn tandem_refuses_the_names_dovecot_or_cyrus_refuses() {
    let dovecot = tandem_tests::Dovecot::start();
    let cyrus = tandem_tests::Cyrus::start();
    let mut d = ImapClient::login(dovecot.imap_addr(), "alice", "demo");
    let mut c = ImapClient::login(cyrus.imap_addr(), "alice", "demo");
    let long = |n: usize| format!("\"{}\"", "L".repeat(n));
    let mut names: Vec<String> = [
        "Archive",
        "\"a b\"",
        "x.y.z",
        "INBOX.x",
        "&AOk-",
        "&-",
        "\"a*b\"",
        "a:b",
        "#news",
        "-dash",
        "x~",
        "\"q.~a\"",
        "\"other users\"",
        "\"Other Users2\"",
        "\"r.Other Users\"",
        "user.bob",
        "\"a/b\"",
        "\"a;b\"",
        "\"a%b\"",
        "\"a\\\\b\"",
        "\"a\\\"b\"",
        "\"a!b\"",
        "\"a<b\"",
        "\"a>b\"",
        "\"a`b\"",
        "\"a{b\"",
        "\"a|b\"",
        "\"a}b\"",
        "\"~a\"",
        "\".a\"",
        "\"a..b\"",
        "\"Other Users\"",
        "\"Other Users.x\"",
        "\"Shared Folders\"",
        "&AOk",
        "\"&AOk-&AOk-\"",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    names.extend([long(250), long(254), long(255), long(300)]);
    for name in &names {
        let bare = name
            .trim_matches('"')
            .replace("\\\\", "\\")
            .replace("\\\"", "\"");
        let verdict = tandem_parser::names::check_new_name(bare.as_bytes(), Some(b'.'));
        let on_dovecot = d.command(&format!("CREATE {name}")).unwrap().status;
        let on_cyrus = c.command(&format!("CREATE {name}")).unwrap().status;
        match verdict {
            Ok(()) => assert_eq!(
                on_dovecot, on_cyrus,
                "{name}: tandem takes it, Dovecot and Cyrus disagree"
            ),
            Err(why) => assert!(
                on_dovecot != Status::Ok || on_cyrus != Status::Ok,
                "{name}: tandem refuses it ({why}) but both backends take it"
            ),
        }
    }
}

/// tandem's check before proposing an APPEND (`tandem_parser::message`)
/// against a real Cyrus: each message it lets through, Cyrus stores byte for
/// byte (with `munge8bit: no`, which tandem needs; see deploy/CYRUS.md);
/// each it refuses, Cyrus refuses too.
#[test]
fn tandem_refuses_exactly_what_cyrus_refuses() {
    let cyrus = tandem_tests::Cyrus::start();
    let mut c = ImapClient::connect(cyrus.imap_addr()).unwrap();
    c.command("LOGIN alice demo").unwrap().ok();
    let cases: &[&[u8]] = &[
        b"Subject: a\r\n\r\nbody\r\n",
        b"Subject: a\r\n\r\nbody\nmore\r\n",
        b"Subject: a\nFrom: b\r\n\r\nbody\r\n",
        b"Subject: a\n\nbody\n",
        b"Subject: a\r\n\nbody\r\n",
        b"Subject: a\r\n\r\nbo\rdy\r\n",
        b"Subj\rect: a\r\n\r\nbody\r\n",
        b"Subject: a\r\n\r\nbo\0dy\r\n",
        b"Subject: a\0\r\n\r\nbody\r\n",
        b"abc",
        b"abc\r\n",
        b"\r\nbody\r\n",
        b"\r\n",
        b"Subject: a\r\n",
        b"Subject: a",
        b"Subject: a\r\nTo: b",
        b"Sub ject: a\r\n\r\nbody\r\n",
        b"Subject : a\r\n\r\nbody\r\n",
        b": a\r\n\r\nbody\r\n",
        b" folded\r\nSubject: a\r\n\r\nbody\r\n",
        b"Subject: a\r\n b\r\n\r\nbody\r\n",
        b"Sub\tject: a\r\n\r\nbody\r\n",
        "Subject: caf\u{e9}\r\n\r\nbody\r\n".as_bytes(),
        "Subj\u{e9}ct: a\r\n\r\nbody\r\n".as_bytes(),
        "Subject: a\r\n\r\ncaf\u{e9}\r\n".as_bytes(),
        b"From someone Mon Jan 1\r\nSubject: a\r\n\r\nbody\r\n",
        b"Subject: a\r\nbogus\r\n\r\nbody\r\n",
        b"Subject: a\x01b\r\n\r\nbody\r\n",
        b"Subject: a\r\n\r\na\x01b\r\n",
        b"Sub\x7fject: a\r\n\r\nbody\r\n",
        b"Subject: a\r\r\n\r\nbody\r\n",
        b"Subject: a\r\n\r\nx\r\r\ny\r\n",
        b"Subject: a\r\n\r\nbody without a line end",
        b"Subject: a\r\n\r\n: no header rules in the body\r\n",
    ];
    c.command("SELECT INBOX").unwrap().ok();
    for &message in cases {
        let shown = String::from_utf8_lossy(message);
        let verdict = tandem_parser::message::check(message);
        let r = c.append("INBOX", message).unwrap();
        match verdict {
            Ok(()) => {
                let r = r.ok();
                let uid = r.code("APPENDUID").unwrap()[1].clone();
                let f = c
                    .command(&format!("UID FETCH {uid} (BODY.PEEK[])"))
                    .unwrap()
                    .ok();
                assert_eq!(
                    fetched_body(&f.untagged),
                    Some(message),
                    "{shown:?}: stored otherwise"
                );
            }
            Err(defect) => {
                assert_eq!(r.status, Status::No, "{shown:?}: Cyrus took it");
                assert_eq!(r.text, defect.to_string(), "{shown:?}");
            }
        }
    }
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

/// The number after `name ` in an ESEARCH line, if there.
fn esearch_item(line: &str, name: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == name)?;
    words.next().map(str::to_string)
}

/// In a cluster with Cyrus, a message delivered straight into a Dovecot
/// node's backend that Cyrus could not store stays hidden on that node.
/// A UID ESEARCH through that node counts only what the client sees: the
/// hidden message is in neither COUNT, MIN, MAX nor ALL.
#[test]
fn mail_hidden_on_a_node_is_left_out_of_esearch_results() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_mixed(&[false, true, false]);
    let mut c = cluster.login(0, "alice");
    let mut uids = Vec::new();
    for i in 0..3 {
        let body = format!("Subject: seen {i}\r\n\r\nvisible\r\n");
        let r = c.append("INBOX", body.as_bytes()).unwrap().ok();
        uids.push(r.code("APPENDUID").expect("APPENDUID")[1].clone());
    }
    // Bare LF line ends: Cyrus would refuse it, so it cannot be adopted.
    cluster
        .backend(0)
        .deliver("alice", "INBOX", b"Subject: hidden\n\nbare newlines\n");
    c.command("SELECT INBOX").unwrap().ok();
    for ret in ["(MIN MAX COUNT)", "(COUNT)", "(MAX)"] {
        let r = c
            .command(&format!("UID SEARCH RETURN {ret} ALL"))
            .unwrap()
            .ok();
        let lines = r.lines();
        let line = lines
            .iter()
            .find(|l| l.starts_with("* ESEARCH"))
            .unwrap_or_else(|| panic!("{ret}: no ESEARCH in {lines:?}"));
        for (item, want) in [("MIN", &uids[0]), ("MAX", &uids[2])] {
            if ret.contains(item) {
                assert_eq!(
                    esearch_item(line, item).as_ref(),
                    Some(want),
                    "{ret}: {line}"
                );
            }
        }
        if ret.contains("COUNT") {
            assert_eq!(esearch_item(line, "COUNT").as_deref(), Some("3"), "{line}");
        }
        assert_eq!(esearch_item(line, "ALL"), None, "ALL was not asked: {line}");
    }
    let r = c.command("UID SEARCH RETURN (ALL COUNT) ALL").unwrap().ok();
    let line = r.lines().into_iter().find(|l| l.starts_with("* ESEARCH"));
    let line = line.expect("ESEARCH");
    assert_eq!(esearch_item(&line, "COUNT").as_deref(), Some("3"), "{line}");
    assert_eq!(
        esearch_item(&line, "ALL"),
        Some(format!("{}:{}", uids[0], uids[2])),
        "{line}"
    );
    let r = c.command("UID SEARCH ALL").unwrap().ok();
    let search = r.lines().into_iter().find(|l| l.starts_with("* SEARCH"));
    assert_eq!(search, Some(format!("* SEARCH {}", uids.join(" "))));
}
