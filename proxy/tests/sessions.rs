//! What concurrent sessions of one user are told, through tandem and
//! straight at Dovecot, in the same interleaving: the cases of issue 20
//! (a lost EXPUNGE, an EXPUNGE inside a STORE's answer, a flag change told
//! twice). Each conversation runs against a fresh direct Dovecot and
//! through a fresh one-node tandem cluster, and the untagged responses of
//! every step must be the same.

use tandem_tests::dovecot::Dovecot;
use tandem_tests::imap::ImapClient;
use tandem_tests::inproc::Cluster;
use tandem_tests::BackendKind;

/// One step: which session (0, 1, ...) sends which command.
type Step = (usize, &'static str);

/// The untagged responses of one step, as comparable text: `\Recent` is
/// left out of flags (the applier's connection sees new mail first), and
/// `* OK [...]` lines (UIDVALIDITY, HIGHESTMODSEQ: per server) are dropped.
fn normalized(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .filter(|l| !l.starts_with("* OK ["))
        .map(|l| {
            l.replace(" \\Recent", "")
                .replace("\\Recent ", "")
                .replace("\\Recent", "")
        })
        .collect()
}

fn message(n: usize) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: m{n}\r\n\r\nbody {n}\r\n").into_bytes()
}

/// Runs `steps` over `sessions` sessions made by `login`, after appending
/// `messages` messages; the normalized untagged responses of each step.
fn run(
    login: &dyn Fn() -> ImapClient,
    sessions: usize,
    messages: usize,
    steps: &[Step],
) -> Vec<(Step, Vec<String>, String)> {
    let mut s: Vec<ImapClient> = (0..sessions).map(|_| login()).collect();
    for n in 0..messages {
        s[0].append("INBOX", &message(n + 1)).unwrap().ok();
    }
    steps
        .iter()
        .map(|&(who, cmd)| {
            let r = s[who].command(cmd).unwrap();
            ((who, cmd), normalized(r.lines()), format!("{:?}", r.status))
        })
        .collect()
}

/// The same conversation straight at Dovecot and through tandem: every
/// step's untagged responses and status must match.
fn same_as_dovecot(sessions: usize, messages: usize, steps: &[Step]) {
    let direct = Dovecot::start();
    let who = direct.user("alice");
    let addr = direct.imap_addr();
    let want = run(
        &|| ImapClient::login(addr, &who.user, &who.password),
        sessions,
        messages,
        steps,
    );
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(BackendKind::Dovecot, 1);
    let got = run(&|| cluster.login(0, "alice"), sessions, messages, steps);
    let mut report = String::new();
    for (w, g) in want.iter().zip(&got) {
        if w != g {
            let ((who, cmd), _, _) = w;
            report.push_str(&format!(
                "session {who}: {cmd}\n  dovecot: {:?} {}\n  tandem:  {:?} {}\n",
                w.1, w.2, g.1, g.2
            ));
        }
    }
    assert!(report.is_empty(), "tandem differs from Dovecot:\n{report}");
}

#[test]
fn a_session_expunging_what_another_expunged_hears_of_it() {
    same_as_dovecot(
        2,
        3,
        &[
            (0, "SELECT INBOX"),
            (1, "SELECT INBOX"),
            (0, "STORE 1 +FLAGS.SILENT (\\Deleted)"),
            (1, "STORE 1 +FLAGS.SILENT (\\Deleted)"),
            (0, "EXPUNGE"),
            (1, "EXPUNGE"),
            (1, "NOOP"),
            (1, "FETCH 1:* (UID FLAGS)"),
        ],
    );
}

#[test]
fn no_expunge_inside_a_store_by_number() {
    same_as_dovecot(
        2,
        3,
        &[
            (0, "SELECT INBOX"),
            (1, "SELECT INBOX"),
            (0, "STORE 1 +FLAGS.SILENT (\\Deleted)"),
            (0, "EXPUNGE"),
            (1, "STORE 2 FLAGS (\\Seen)"),
            (1, "FETCH 3 (UID FLAGS)"),
            (1, "SEARCH SEEN"),
            (1, "NOOP"),
            (1, "FETCH 1:* (UID FLAGS)"),
        ],
    );
}

#[test]
fn a_store_by_number_while_expunges_are_owed_names_the_clients_messages() {
    same_as_dovecot(
        2,
        4,
        &[
            (0, "SELECT INBOX"),
            (1, "SELECT INBOX"),
            (0, "STORE 2 +FLAGS.SILENT (\\Deleted)"),
            (0, "EXPUNGE"),
            // Session 1 still numbers 1..=4; its message 3 is the third
            // message it knows.
            (1, "STORE 3 +FLAGS (\\Flagged)"),
            (1, "STORE 4 +FLAGS.SILENT (\\Answered)"),
            (1, "FETCH 1:4 (UID FLAGS)"),
            (1, "UID FETCH 1:* (FLAGS)"),
            (1, "FETCH 1:* (UID FLAGS)"),
        ],
    );
}

#[test]
fn a_stores_flags_are_told_once() {
    same_as_dovecot(
        2,
        3,
        &[
            (0, "SELECT INBOX"),
            (1, "SELECT INBOX"),
            (1, "STORE 2 +FLAGS (\\Seen)"),
            (1, "NOOP"),
            (1, "UID STORE 3 +FLAGS (\\Flagged)"),
            (1, "NOOP"),
            (1, "STORE 1 +FLAGS.SILENT (\\Answered)"),
            (1, "NOOP"),
            (0, "NOOP"),
            (0, "FETCH 1:* (FLAGS)"),
        ],
    );
}

#[test]
fn new_mail_and_expunges_reach_the_other_sessions_as_dovecot_tells_them() {
    same_as_dovecot(
        3,
        2,
        &[
            (0, "SELECT INBOX"),
            (1, "SELECT INBOX"),
            (2, "EXAMINE INBOX"),
            (0, "STORE 1 +FLAGS.SILENT (\\Deleted)"),
            (0, "EXPUNGE"),
            (1, "FETCH 1:* (FLAGS)"),
            (1, "SEARCH ALL"),
            (2, "UID SEARCH ALL"),
            (1, "UID FETCH 1:* (FLAGS)"),
            (2, "NOOP"),
            (1, "NOOP"),
        ],
    );
}

/// Capabilities whose answers differ per node or that tandem cannot
/// follow (issue 20, case 9).
const HIDDEN: [&str; 9] = [
    "CONDSTORE",
    "QRESYNC",
    "SORT",
    "THREAD=",
    "ESORT",
    "CATENATE",
    "NOTIFY",
    "SEARCHRES",
    "CONTEXT=SEARCH",
];

/// The capability names of a `CAPABILITY` response or `[CAPABILITY ...]`
/// code in `line`.
fn capabilities(line: &str) -> Option<Vec<String>> {
    let upper = line.to_ascii_uppercase();
    let at = upper.find("CAPABILITY ")?;
    let rest = &line[at + "CAPABILITY ".len()..];
    let rest = rest.split(']').next()?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn assert_hidden(path: &str, caps: &[String]) {
    for c in caps {
        let c = c.to_ascii_uppercase();
        assert!(
            !HIDDEN
                .iter()
                .any(|h| c == *h || (h.ends_with('=') && c.starts_with(h))),
            "{path}: {c} reaches the client: {caps:?}"
        );
    }
}

#[test]
fn every_path_to_the_capabilities_filters_them_alike() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(BackendKind::Dovecot, 1);
    let addr = cluster.nodes[0].imap;
    let mut c = ImapClient::connect(addr).unwrap();
    if let Some(caps) = capabilities(&c.greeting) {
        assert_hidden("greeting", &caps);
    }
    let before = c.command("CAPABILITY").unwrap().ok();
    let caps = before
        .lines()
        .iter()
        .find_map(|l| capabilities(l))
        .expect("CAPABILITY");
    assert_hidden("CAPABILITY before login", &caps);
    let login = c
        .command(&format!("LOGIN alice {}", tandem_tests::USER_PASSWORD))
        .unwrap()
        .ok();
    let after = c.command("CAPABILITY").unwrap().ok();
    let mut after = after
        .lines()
        .iter()
        .find_map(|l| capabilities(l))
        .expect("CAPABILITY");
    assert_hidden("CAPABILITY after login", &after);
    // Dovecot puts the list in LOGIN's OK only when the client did not ask
    // before: a second session does not.
    let mut c2 = ImapClient::connect(addr).unwrap();
    let login2 = c2
        .command(&format!("LOGIN alice {}", tandem_tests::USER_PASSWORD))
        .unwrap()
        .ok();
    let codes: Vec<String> = [login.text.as_str(), login2.text.as_str()]
        .iter()
        .filter_map(|t| capabilities(t))
        .map(|mut caps| {
            assert_hidden("LOGIN", &caps);
            caps.sort();
            caps.join(" ")
        })
        .collect();
    assert!(!codes.is_empty(), "no [CAPABILITY] in {login:?} {login2:?}");
    after.sort();
    for code in codes {
        assert_eq!(code, after.join(" "), "LOGIN's code and CAPABILITY differ");
    }
    let enabled = c
        .command("ENABLE CONDSTORE QRESYNC UTF8=ACCEPT")
        .unwrap()
        .ok();
    for l in enabled.lines() {
        assert!(!l.to_ascii_uppercase().contains("CONDSTORE"), "{l}");
        assert!(!l.to_ascii_uppercase().contains("QRESYNC"), "{l}");
    }
}

#[test]
fn modseqs_which_differ_per_node_are_refused() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(BackendKind::Dovecot, 1);
    let mut c = cluster.login(0, "alice");
    c.append("INBOX", &message(1)).unwrap().ok();
    for cmd in [
        "SELECT INBOX (CONDSTORE)",
        "EXAMINE INBOX (CONDSTORE)",
        "STATUS INBOX (MESSAGES HIGHESTMODSEQ)",
    ] {
        let r = c.command(cmd).unwrap();
        assert_eq!(r.status, tandem_tests::imap::Status::Bad, "{cmd}: {r:?}");
        assert!(r.text.contains("[CANNOT]"), "{cmd}: {r:?}");
    }
    let sel = c.command("SELECT INBOX").unwrap().ok();
    assert!(
        !sel.lines().iter().any(|l| l.contains("MODSEQ")),
        "{:?}",
        sel.lines()
    );
    for cmd in [
        "FETCH 1 (MODSEQ)",
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
        "SEARCH MODSEQ 1",
        "STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)",
    ] {
        let r = c.command(cmd).unwrap();
        assert_eq!(r.status, tandem_tests::imap::Status::Bad, "{cmd}: {r:?}");
        assert!(
            !r.lines().iter().any(|l| l.contains("MODSEQ")),
            "{cmd}: {r:?}"
        );
    }
    // What does not ask for them still works.
    let r = c.command("FETCH 1 (FLAGS UID)").unwrap().ok();
    assert!(r.lines().iter().all(|l| !l.contains("MODSEQ")), "{r:?}");
}

/// Reads responses until one satisfies `want`, within `limit`.
fn read_until(
    c: &mut ImapClient,
    limit: std::time::Duration,
    want: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let start = std::time::Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < limit {
        let line = String::from_utf8_lossy(&c.read_response().unwrap())
            .trim_end()
            .to_string();
        let done = want(&line);
        seen.push(line);
        if done {
            return seen;
        }
    }
    panic!("not seen within {limit:?}: {seen:?}");
}

#[test]
fn a_session_on_another_node_hears_of_changes_in_idle_and_at_noop() {
    use std::time::{Duration, Instant};
    let _serial = tandem_tests::one_cluster_at_a_time();
    let cluster = Cluster::start_on(BackendKind::Dovecot, 3);
    let mut writer = cluster.login(0, "alice");
    writer.append("INBOX", &message(1)).unwrap().ok();
    writer.append("INBOX", &message(2)).unwrap().ok();
    writer.command("SELECT INBOX").unwrap().ok();
    // The reader on node 2 waits until its node has both messages.
    let mut reader = cluster.login(1, "alice");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = reader.command("SELECT INBOX").unwrap();
        if r.exists() == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never had both: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // IDLE: new mail through node 1 arrives unasked.
    reader.write(b"i1 IDLE\r\n").unwrap();
    read_until(&mut reader, Duration::from_secs(5), &|l| l.starts_with('+'));
    let sent = Instant::now();
    writer.append("INBOX", &message(3)).unwrap().ok();
    read_until(&mut reader, Duration::from_secs(20), &|l| l == "* 3 EXISTS");
    eprintln!(
        "IDLE on node 2 heard of an APPEND through node 1 after {:?}",
        sent.elapsed()
    );
    reader.write(b"DONE\r\n").unwrap();
    let r = reader.finish("i1").unwrap().ok();
    assert!(r.lines().iter().all(|l| !l.contains("EXPUNGE")), "{r:?}");
    // NOOP: a flag change and an expunge through node 1.
    writer.command("STORE 1 +FLAGS (\\Flagged)").unwrap().ok();
    writer
        .command("STORE 2 +FLAGS.SILENT (\\Deleted)")
        .unwrap()
        .ok();
    writer.command("EXPUNGE").unwrap().ok();
    let sent = Instant::now();
    let mut told = Vec::new();
    while !(told.iter().any(|l: &String| l == "* 2 EXPUNGE")
        && told
            .iter()
            .any(|l| l.starts_with("* 1 FETCH") && l.contains("\\Flagged")))
    {
        assert!(sent.elapsed() < Duration::from_secs(15), "{told:?}");
        let r = reader.command("NOOP").unwrap().ok();
        told.extend(r.lines());
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "NOOP on node 2 heard of a STORE and an EXPUNGE through node 1 after {:?}",
        sent.elapsed()
    );
    let r = reader.command("FETCH 1:* (FLAGS)").unwrap().ok();
    assert_eq!(
        r.lines().iter().filter(|l| l.contains("FETCH")).count(),
        2,
        "{r:?}"
    );
}
