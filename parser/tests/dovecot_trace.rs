//! A Dovecot 2.3 session, server side and client side, framed, parsed and
//! rewritten end to end through the public API, the way the proxy will.

use std::collections::BTreeMap;

use tandem_parser::command::{Command, CommandBody};
use tandem_parser::frame::{
    CommandFramer, CommandProgress, Limits, ResponseFramer, ResponseProgress,
};
use tandem_parser::response::{Code, Response, ResponseBody};
use tandem_parser::rewrite::{
    apply, capability_edits, rewrite_command, rewrite_response, ResponseMaps, Scope,
};
use tandem_parser::uidmap::{RunMap, UidMap};

const SERVER: &[u8] = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.\r\n\
a1 OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE] Logged in\r\n\
* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
* 2 EXISTS\r\n\
* 0 RECENT\r\n\
* OK [UIDVALIDITY 1700000000] UIDs valid\r\n\
* OK [UIDNEXT 3] Predicted next UID\r\n\
a2 OK [READ-WRITE] Select completed (0.002 + 0.000 + 0.001 secs).\r\n\
+ OK\r\n\
* 3 EXISTS\r\n\
* 1 RECENT\r\n\
a3 OK [APPENDUID 1700000000 3] Append completed (0.004 + 0.000 + 0.003 secs).\r\n\
* 1 FETCH (UID 1 FLAGS (\\Seen))\r\n\
* 2 FETCH (UID 2 FLAGS ())\r\n\
* 3 FETCH (UID 3 FLAGS (\\Seen \\Recent) BODY[] {22}\r\nSubject: hi\r\n\r\nhello\r\n)\r\n\
a4 OK Fetch completed (0.001 + 0.000 secs).\r\n\
a5 OK [COPYUID 1700000001 1:2 1:2] Copy completed (0.002 + 0.000 + 0.001 secs).\r\n\
* ESEARCH (TAG \"a6\") UID ALL 1:3\r\n\
a6 OK Search completed (0.001 + 0.000 secs).\r\n\
* STATUS Archive (MESSAGES 2 UIDNEXT 3 UIDVALIDITY 1700000001)\r\n\
a7 OK Status completed (0.001 + 0.000 secs).\r\n\
a8 NO [TRYCREATE] Mailbox doesn't exist: Nope{5} (0.001 + 0.000 secs).\r\n\
* LIST (\\HasNoChildren) \"/\" INBOX\r\n\
* LIST (\\HasNoChildren \\Sent) \"/\" {4}\r\nSent\r\n\
a9 OK List completed (0.001 + 0.000 secs).\r\n\
* BYE Logging out\r\n\
a10 OK Logout completed (0.001 + 0.000 secs).\r\n";

const CLIENT: &[u8] = b"a1 LOGIN user {4+}\r\npass\r\n\
a2 SELECT INBOX\r\n\
a3 APPEND INBOX (\\Seen) {22}\r\nSubject: hi\r\n\r\nhello\r\n\r\n\
a4 UID FETCH 1:* (UID FLAGS)\r\n\
a5 UID COPY 101:102 Archive\r\n\
a6 UID SEARCH RETURN (ALL) UID 1:* NOT DELETED\r\n\
a7 STATUS Archive (MESSAGES UIDNEXT UIDVALIDITY)\r\n\
a8 UID MOVE 2 Nope\r\n\
a9 LIST \"\" *\r\n\
a10 LOGOUT\r\n";

fn frames_of_responses(input: &[u8]) -> Vec<&[u8]> {
    let mut f = ResponseFramer::new(Limits::default());
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(ResponseProgress::Complete { len }) = f.next(&input[at..]) {
        out.push(&input[at..at + len]);
        at += len;
    }
    assert_eq!(at, input.len(), "framing stopped early");
    out
}

fn frames_of_commands(input: &[u8]) -> Vec<&[u8]> {
    let mut f = CommandFramer::new(Limits::default());
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match f.next(&input[at..]).unwrap() {
            CommandProgress::Complete { len } => {
                out.push(&input[at..at + len]);
                at += len;
            }
            CommandProgress::LiteralAnnounced(_) => f.accept_literal(),
            CommandProgress::Incomplete => break,
        }
    }
    assert_eq!(at, input.len(), "framing stopped early");
    out
}

/// Canonical UIDs are local + 100 in INBOX and local + 200 in Archive;
/// UIDVALIDITY canonical = 42 for INBOX, 43 for Archive.
struct Maps {
    inbox: RunMap,
    archive: RunMap,
    /// The command answered is an APPEND to INBOX (else a COPY to Archive).
    append_to_inbox: bool,
}

impl ResponseMaps for Maps {
    fn uids(&self, scope: Scope<'_>) -> Option<&dyn UidMap> {
        match scope {
            Scope::Selected => Some(&self.inbox),
            Scope::Destination if self.append_to_inbox => Some(&self.inbox),
            Scope::Destination => Some(&self.archive),
            Scope::Mailbox(_) => None,
        }
    }
    fn uid_validity(&self, scope: Scope<'_>, local: u32) -> Option<u32> {
        match (scope, local) {
            (Scope::Selected, 1700000000) => Some(42),
            (Scope::Destination, 1700000000) if self.append_to_inbox => Some(42),
            (Scope::Destination, 1700000001) | (Scope::Mailbox(b"Archive"), 1700000001) => Some(43),
            _ => None,
        }
    }
    fn uid_next(&self, scope: Scope<'_>, local: u32) -> Option<u32> {
        match scope {
            Scope::Mailbox(b"Archive") => Some(local + 200),
            _ => Some(local + 100),
        }
    }
    fn search_returns_uids(&self) -> bool {
        true
    }
}

fn maps() -> Maps {
    let mut inbox = RunMap::new();
    let mut archive = RunMap::new();
    for local in 1..=3 {
        inbox.push(local, local + 100).unwrap();
        archive.push(local, local + 200).unwrap();
    }
    Maps {
        inbox,
        archive,
        append_to_inbox: false,
    }
}

#[test]
fn every_dovecot_response_frames_parses_and_identity_rewrites_to_itself() {
    let frames = frames_of_responses(SERVER);
    assert_eq!(frames.len(), 28);
    for f in &frames {
        let r =
            Response::parse(f).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(f)));
        assert!(capability_edits(&r, &|_| false).is_empty());
    }
}

#[test]
fn dovecot_session_rewrites_every_uid_and_nothing_else() {
    let copying = maps();
    let appending = Maps {
        append_to_inbox: true,
        ..maps()
    };
    let out: Vec<u8> = frames_of_responses(SERVER)
        .into_iter()
        .flat_map(|f| {
            let r = Response::parse(f).unwrap();
            let m = if r.tag() == Some(b"a3") {
                &appending
            } else {
                &copying
            };
            rewrite_response(&r, m).unwrap().into_owned()
        })
        .collect();
    let out = String::from_utf8(out).unwrap();
    for expected in [
        "* OK [UIDVALIDITY 42] UIDs valid\r\n",
        "* OK [UIDNEXT 103] Predicted next UID\r\n",
        "a3 OK [APPENDUID 42 103] Append",
        "* 1 FETCH (UID 101 FLAGS (\\Seen))\r\n",
        "* 3 FETCH (UID 103 FLAGS (\\Seen \\Recent) BODY[] {22}\r\nSubject: hi\r\n\r\nhello\r\n)\r\n",
        "a5 OK [COPYUID 43 101:102 201:202] Copy completed",
        "* ESEARCH (TAG \"a6\") UID ALL 101:103\r\n",
        "* STATUS Archive (MESSAGES 2 UIDNEXT 203 UIDVALIDITY 43)\r\n",
        "a8 NO [TRYCREATE] Mailbox doesn't exist: Nope{5} (0.001 + 0.000 secs).\r\n",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    // Same length budget: only numbers changed.
    assert_eq!(
        out.lines().count(),
        String::from_utf8_lossy(SERVER).lines().count()
    );
}

#[test]
fn dovecot_session_commands_parse_and_uid_sets_map_to_local() {
    let frames = frames_of_commands(CLIENT);
    assert_eq!(frames.len(), 10);
    let canonical_to_local: BTreeMap<u32, u32> = (1..=3).map(|l| (l + 100, l)).collect();
    let mut mutations = 0;
    let mut out = Vec::new();
    for f in frames {
        let c =
            Command::parse(f).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(f)));
        mutations += usize::from(c.is_mutation());
        out.extend_from_slice(
            &rewrite_command(&c, 103, &canonical_to_local).unwrap_or_else(|_| f.into()),
        );
        if let CommandBody::Append { messages, .. } = &c.body {
            assert_eq!(messages.len(), 1);
        }
    }
    // APPEND, UID COPY, UID MOVE.
    assert_eq!(mutations, 3);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("a5 UID COPY 1:2 Archive\r\n"), "{out}");
    assert!(out.contains("a4 UID FETCH 1:3 (UID FLAGS)\r\n"), "{out}");
    assert!(
        out.contains("a6 UID SEARCH RETURN (ALL) UID 1:3 NOT DELETED\r\n"),
        "{out}"
    );
}

#[test]
fn hiding_capabilities_removes_only_their_names() {
    let hide = |c: &[u8]| {
        [
            &b"CONDSTORE"[..],
            b"QRESYNC",
            b"SEARCHRES",
            b"CATENATE",
            b"NOTIFY",
        ]
        .iter()
        .any(|h| c.eq_ignore_ascii_case(h))
    };
    let frame = frames_of_responses(SERVER)[1];
    let r = Response::parse(frame).unwrap();
    let Some(Code::Capability(_)) = r.code() else {
        panic!()
    };
    let out = apply(frame, &capability_edits(&r, &hide)).into_owned();
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("CONDSTORE") && !out.contains("QRESYNC") && !out.contains("CATENATE"));
    assert!(out.contains(" UIDPLUS ") && out.contains("MOVE") && out.ends_with("] Logged in\r\n"));
    assert!(matches!(
        Response::parse(out.as_bytes()).unwrap().body,
        ResponseBody::Status { .. }
    ));
}
