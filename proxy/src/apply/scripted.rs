//! A scripted backend for the applier's unit tests, and the command
//! sequences of items in doubt tested with it: each case says what the
//! backend holds, what the applier must send, and what it records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tandem_parser::reply::Reply as TaggedReply;
use tandem_parser::uidmap::{RunMap, UidMap};
use tandem_replicator::LocalTables;
use tandem_state::{NewMessage, Work};

use super::maps::{MailboxMap, Maps};
use super::progress::{Additions, Progress, UserLocks};
use super::seam::{BackendSession, BoxFuture, Connect};
use super::worker::Worker;
use super::{ApplyError, Change};
use crate::backend::{BackendError, Reply};

/// One step of a script: the command must start with `expect`; the
/// backend answers `reply` (untagged lines, then the tagged status without
/// its tag, CRLF-separated).
#[derive(Debug, Clone, Copy)]
struct Step {
    expect: &'static str,
    reply: &'static str,
}

const fn step(expect: &'static str, reply: &'static str) -> Step {
    Step { expect, reply }
}

/// A backend session that answers by its script, in order, and keeps what
/// it was sent.
#[derive(Debug, Clone, Default)]
struct Scripted {
    steps: Arc<Mutex<std::collections::VecDeque<Step>>>,
    sent: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn new(steps: &[Step]) -> Scripted {
        Scripted {
            steps: Arc::new(Mutex::new(steps.iter().copied().collect())),
            sent: Arc::default(),
        }
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().expect("lock").clone()
    }

    fn left(&self) -> usize {
        self.steps.lock().expect("lock").len()
    }
}

/// Splits a scripted reply into untagged responses (framed by the
/// parser's `ResponseFramer`, literals inline) and the tagged line.
fn reply_of(text: &str) -> Reply {
    use tandem_parser::frame::{Limits, ResponseFramer, ResponseProgress};
    let bytes = format!("{text}\r\n").into_bytes();
    let mut framer = ResponseFramer::new(Limits::responses());
    let mut untagged = Vec::new();
    let mut at = 0;
    loop {
        let Ok(ResponseProgress::Complete { len }) = framer.next(&bytes[at..]) else {
            panic!("a scripted reply that does not frame: {text:?}");
        };
        let response = &bytes[at..at + len];
        at += len;
        if !response.starts_with(b"* ") {
            let mut tagged = b"t ".to_vec();
            tagged.extend_from_slice(response);
            let tagged = TaggedReply::parse(&tagged).expect("tagged line");
            return Reply::new(untagged, tagged);
        }
        untagged.push(response.to_vec());
    }
}

impl BackendSession for Scripted {
    fn command<'a>(&'a mut self, cmd: &'a [u8]) -> BoxFuture<'a, Result<Reply, BackendError>> {
        let cmd = String::from_utf8_lossy(cmd).to_string();
        let next = self.steps.lock().expect("lock").pop_front();
        self.sent.lock().expect("lock").push(cmd.clone());
        let reply = match next {
            Some(s) if cmd.starts_with(s.expect) => reply_of(s.reply),
            Some(s) => panic!("expected {:?}, the applier sent {cmd:?}", s.expect),
            None => panic!("the script is over, the applier sent {cmd:?}"),
        };
        Box::pin(async move { Ok(reply) })
    }
}

impl Connect for Scripted {
    fn open<'a>(
        &'a self,
        _user: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn BackendSession>, ApplyError>> {
        let session = self.clone();
        Box::pin(async move { Ok(Box::new(session) as Box<dyn BackendSession>) })
    }
}

/// Canonical UIDVALIDITY of the mailbox in the cases; its local one.
const UV: u32 = 100;
const LOCAL_UV: u32 = 7;

/// A worker over `script` whose map of bob's INBOX says canonical 1..=3
/// are local 1..=3, with every item up to `horizon` in doubt.
fn worker(script: &Scripted, horizon: u64) -> Worker {
    let db = redb::Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .expect("in-memory database");
    let db = LocalTables::standalone(db);
    let maps = Arc::new(Maps::new(db.clone()));
    let mut to_local = RunMap::new();
    for u in 1..=3 {
        to_local.push(u, u).expect("increasing");
    }
    maps.committed(vec![Change::Put(
        "bob".to_string(),
        UV,
        MailboxMap {
            local_uidvalidity: LOCAL_UV,
            to_canon: to_local.inverse(),
            to_local,
        },
    )]);
    Worker {
        db,
        connect: Arc::new(script.clone()),
        maps,
        progress: Arc::new(Progress::new(0, Default::default())),
        conns: HashMap::new(),
        horizon,
        found: false,
        evidence: None,
        node: 1,
        locks: Arc::new(UserLocks::default()),
        additions: Arc::new(Additions::default()),
    }
}

fn append(uid: u32, body: &str) -> Work {
    Work::Append {
        user: "bob".to_string(),
        mailbox: "INBOX".to_string(),
        uidvalidity: UV,
        uids: vec![uid],
        messages: vec![NewMessage {
            flags: Vec::new(),
            date: None,
            body: body.as_bytes().to_vec(),
        }],
        replaces: None,
    }
}

/// The local UID canonical `uid` of bob's INBOX is mapped to.
fn mapped(w: &Worker, uid: u32) -> Option<u32> {
    w.maps.get("bob", UV)?.to_local.map_one(uid)
}

fn run(w: &mut Worker, seq: u64, work: &Work) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(w.apply_one(seq, work));
}

#[test]
fn an_append_in_doubt_is_found_past_three_foreign_messages() {
    let script = Scripted::new(&[
        step("SELECT", "* 7 EXISTS\r\nOK [READ-WRITE] done"),
        step("UID SEARCH UID 4:*", "* SEARCH 4 5 6 7\r\nOK done"),
        step(
            "UID FETCH 4 (BODY.PEEK[])",
            "* 4 FETCH (UID 4 BODY[] {3}\r\nabc)\r\nOK done",
        ),
        step(
            "UID FETCH 5 (BODY.PEEK[])",
            "* 5 FETCH (UID 5 BODY[] {3}\r\ndef)\r\nOK done",
        ),
        step(
            "UID FETCH 6 (BODY.PEEK[])",
            "* 6 FETCH (UID 6 BODY[] {3}\r\nghi)\r\nOK done",
        ),
        step(
            "UID FETCH 7 (BODY.PEEK[])",
            "* 7 FETCH (UID 7 BODY[] {4}\r\nmine)\r\nOK done",
        ),
    ]);
    let mut w = worker(&script, 10);
    run(&mut w, 5, &append(4, "mine"));
    assert!(w.found, "found applied before the crash");
    assert_eq!(mapped(&w, 4), Some(7), "{:?}", script.sent());
    assert!(!script.sent().iter().any(|c| c.starts_with("APPEND")));
    assert_eq!(script.left(), 0);
}

#[test]
fn an_append_in_doubt_that_never_arrived_is_appended_once() {
    let script = Scripted::new(&[
        step("SELECT", "* 4 EXISTS\r\nOK [READ-WRITE] done"),
        // `4:*` names the last message even when it is below 4.
        step("UID SEARCH UID 4:*", "* SEARCH 3\r\nOK done"),
        step("APPEND INBOX", "OK [APPENDUID 7 9] done"),
    ]);
    let mut w = worker(&script, 10);
    run(&mut w, 5, &append(4, "mine"));
    assert!(!w.found);
    assert_eq!(mapped(&w, 4), Some(9), "{:?}", script.sent());
    assert_eq!(script.left(), 0);
}

#[test]
fn an_append_in_doubt_does_not_take_a_foreign_message_with_other_bytes() {
    let script = Scripted::new(&[
        step("SELECT", "* 5 EXISTS\r\nOK [READ-WRITE] done"),
        step("UID SEARCH UID 4:*", "* SEARCH 5\r\nOK done"),
        step(
            "UID FETCH 5 (BODY.PEEK[])",
            "* 4 FETCH (UID 5 BODY[] {4}\r\nMINE)\r\nOK done",
        ),
        step("APPEND INBOX", "OK [APPENDUID 7 6] done"),
    ]);
    let mut w = worker(&script, 10);
    run(&mut w, 5, &append(4, "mine"));
    assert_eq!(mapped(&w, 4), Some(6), "{:?}", script.sent());
    assert_eq!(script.left(), 0);
}

#[test]
fn an_append_not_in_doubt_is_sent_without_looking() {
    let script = Scripted::new(&[step("APPEND INBOX", "OK [APPENDUID 7 4] done")]);
    let mut w = worker(&script, 0);
    run(&mut w, 5, &append(4, "mine"));
    assert_eq!(mapped(&w, 4), Some(4), "{:?}", script.sent());
    assert_eq!(script.left(), 0);
}

#[test]
fn an_append_recorded_already_sends_nothing() {
    let script = Scripted::new(&[]);
    let mut w = worker(&script, 10);
    run(&mut w, 5, &append(3, "mine"));
    assert!(w.found);
    assert!(script.sent().is_empty());
}
