//! Hand-written transcripts, each breaking one rule (or none).

use super::*;
use crate::stress::parse::hash_bytes;

/// A transcript being written: commands get tags `A1`, `A2`...; `TAG` in
/// a response stands for the tag of the command in progress.
struct T {
    s: Session,
    reg: Registry,
    n: u32,
}

impl T {
    fn new() -> T {
        T::of("alice/1")
    }

    fn of(name: &str) -> T {
        T {
            s: Session::new(name, "alice", "$s1"),
            reg: Registry::default(),
            n: 0,
        }
    }

    fn cmd(&mut self, cmd: Cmd) -> &mut T {
        self.n += 1;
        let tag = format!("A{}", self.n);
        self.s.feed(&Event::Sent { tag, cmd }, &mut self.reg);
        self
    }

    fn recv(&mut self, line: &str) -> &mut T {
        let line = line.replace("TAG", &format!("A{}", self.n));
        let line = if line.ends_with("\r\n") {
            line
        } else {
            format!("{line}\r\n")
        };
        self.s
            .feed(&Event::Received(line.into_bytes()), &mut self.reg);
        self
    }

    fn ok(&mut self) -> &mut T {
        self.recv("TAG OK done")
    }

    /// SELECT INBOX (UIDVALIDITY 7) with `uids` in it, all fetched (and
    /// confirmed, as if some session had appended them).
    fn selected(&mut self, uids: &[u32]) -> &mut T {
        confirm(self, uids);
        self.cmd(Cmd::Select {
            mailbox: "INBOX".into(),
        })
        .recv(&format!("* {} EXISTS", uids.len()))
        .recv("* OK [UIDVALIDITY 7] UIDs valid")
        .recv("TAG OK [READ-WRITE] Select completed");
        if !uids.is_empty() {
            self.cmd(fetch(false, 1, uids.len() as u32));
            for (i, u) in uids.iter().enumerate() {
                self.recv(&format!("* {} FETCH (UID {u} FLAGS ())", i + 1));
            }
            self.ok();
        }
        self
    }

    fn kinds(&mut self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.s.take_violations().iter().map(|v| v.kind).collect();
        v.extend(self.reg.finish().iter().map(|v| v.kind));
        v
    }
}

fn fetch(uid: bool, a: u32, b: u32) -> Cmd {
    Cmd::Fetch {
        uid,
        set: vec![(a, b)],
        body: false,
    }
}

fn store(uid: bool, n: u32, op: FlagOp) -> Cmd {
    Cmd::Store {
        uid,
        set: vec![(n, n)],
        op,
        flags: vec!["$s1".into()],
        silent: false,
    }
}

fn append(body: &[u8]) -> Cmd {
    Cmd::Append {
        mailbox: "INBOX".into(),
        seen: false,
        hash: hash_bytes(body),
        size: body.len() as u64,
    }
}

/// Confirms UIDs as if some session had appended them.
fn confirm(t: &mut T, uids: &[u32]) {
    for &u in uids {
        t.reg
            .observe(&("alice".into(), "INBOX".into(), 7, u), None, None, true);
    }
}

#[test]
fn a_clean_session_breaks_no_rule() {
    let mut t = T::new();
    t.cmd(Cmd::Login {
        user: "alice".into(),
    })
    .ok();
    t.selected(&[3, 5, 9]);
    confirm(&mut t, &[3, 5, 9, 11]);
    t.cmd(store(false, 2, FlagOp::Add))
        .recv("* 2 FETCH (FLAGS ($s1) UID 5)")
        .ok()
        .cmd(Cmd::Noop)
        .recv("* 1 EXPUNGE")
        .recv("* 3 EXISTS")
        .recv("* 2 FETCH (FLAGS (\\Flagged $s1))")
        .ok()
        .cmd(Cmd::Search {
            uid: false,
            criteria: Criteria::All,
        })
        .recv("* SEARCH 1 2 3")
        .ok()
        .cmd(Cmd::Search {
            uid: true,
            criteria: Criteria::Keyword("$s1".into()),
        })
        .recv("* SEARCH 5")
        .ok()
        .cmd(fetch(true, 1, 20))
        .recv("* 2 EXPUNGE") // a UID FETCH may see an EXPUNGE
        .recv("* 1 FETCH (UID 5 FLAGS ($s1))")
        .recv("* 2 FETCH (UID 11 FLAGS ())")
        .ok()
        .cmd(Cmd::Idle { ms: 10 })
        .recv("+ idling")
        .recv("* 3 EXISTS")
        .ok()
        .cmd(Cmd::Logout)
        .recv("* BYE Logging out")
        .ok();
    t.s.feed(&Event::Closed("EOF".into()), &mut t.reg);
    assert_eq!(t.kinds(), Vec::<&str>::new());
}

#[test]
fn an_expunge_while_a_fetch_store_or_search_by_number_is_answered() {
    for cmd in [
        fetch(false, 1, 2),
        store(false, 1, FlagOp::Add),
        Cmd::Search {
            uid: false,
            criteria: Criteria::All,
        },
    ] {
        let mut t = T::new();
        t.selected(&[1, 2])
            .cmd(cmd.clone())
            .recv("* 2 EXPUNGE")
            .ok();
        assert_eq!(
            t.kinds(),
            ["EXPUNGE during FETCH, STORE or SEARCH"],
            "{cmd:?}"
        );
    }
    // Their UID forms, COPY, NOOP and EXPUNGE may see one.
    for cmd in [
        fetch(true, 1, 2),
        store(true, 1, FlagOp::Add),
        Cmd::Search {
            uid: true,
            criteria: Criteria::All,
        },
        Cmd::Noop,
        Cmd::Expunge,
    ] {
        let mut t = T::new();
        t.selected(&[1, 2])
            .cmd(cmd.clone())
            .recv("* 2 EXPUNGE")
            .ok();
        assert_eq!(t.kinds(), Vec::<&str>::new(), "{cmd:?}");
    }
}

/// The case: told of 2 messages, `* 3 FETCH` during an APPEND.
#[test]
fn a_fetch_above_exists() {
    let mut t = T::new();
    t.selected(&[1, 2]);
    t.cmd(append(b"Subject: x\r\n\r\nx\r\n"))
        .recv("+ OK")
        .recv("* 3 FETCH (FLAGS (\\Seen))")
        .recv("TAG OK [APPENDUID 7 3] Append completed");
    assert_eq!(t.kinds(), ["FETCH above EXISTS"]);
}

#[test]
fn exists_and_expunge_keep_the_count() {
    let mut t = T::new();
    t.selected(&[1, 2, 3])
        .cmd(Cmd::Noop)
        .recv("* 2 EXISTS")
        .ok();
    assert_eq!(t.kinds(), ["EXISTS decreased"]);
    let mut t = T::new();
    t.selected(&[1, 2, 3])
        .cmd(Cmd::Noop)
        .recv("* 3 EXPUNGE")
        .recv("* 2 EXISTS") // 3 - 1: fine
        .recv("* 3 EXPUNGE") // only 2 now
        .recv("* 0 EXPUNGE")
        .ok();
    assert_eq!(t.kinds(), ["EXPUNGE out of range", "EXPUNGE out of range"]);
}

#[test]
fn a_message_keeps_its_uid_and_uids_ascend() {
    let mut t = T::new();
    t.selected(&[4, 6, 8])
        .cmd(fetch(false, 2, 2))
        .recv("* 2 FETCH (UID 7)")
        .ok();
    assert!(t.kinds().contains(&"UID of a message changed"));
    let mut t = T::new();
    t.selected(&[4, 6]).cmd(Cmd::Noop).recv("* 3 EXISTS").ok();
    t.cmd(fetch(false, 3, 3)).recv("* 3 FETCH (UID 5)").ok();
    assert!(t.kinds().contains(&"UIDs out of order"));
}

#[test]
fn an_expunged_uid_never_comes_back() {
    let mut t = T::new();
    t.selected(&[4, 6]).cmd(Cmd::Noop).recv("* 1 EXPUNGE").ok();
    t.cmd(Cmd::Search {
        uid: true,
        criteria: Criteria::All,
    })
    .recv("* SEARCH 4 6")
    .ok();
    assert!(t.kinds().contains(&"expunged UID came back"));
}

#[test]
fn search_results_name_messages_the_session_knows() {
    let mut t = T::new();
    t.selected(&[1, 2]);
    confirm(&mut t, &[1, 2]);
    t.cmd(Cmd::Search {
        uid: false,
        criteria: Criteria::All,
    })
    .recv("* SEARCH 1 2 3")
    .ok();
    assert_eq!(t.kinds(), ["SEARCH result above EXISTS"]);
    // A UID nobody was ever given.
    let mut t = T::new();
    t.selected(&[1, 2]);
    confirm(&mut t, &[1, 2]);
    t.cmd(Cmd::Search {
        uid: true,
        criteria: Criteria::All,
    })
    .recv("* SEARCH 1 2 40")
    .ok();
    assert_eq!(t.kinds(), ["UID no APPEND or COPY gave"]);
}

#[test]
fn a_body_never_changes_across_sessions_and_copies() {
    let body = b"Subject: a\r\n\r\na\r\n";
    let mut a = T::of("alice/1");
    a.selected(&[])
        .cmd(append(body))
        .recv("+ OK")
        .recv("* 1 EXISTS")
        .recv("TAG OK [APPENDUID 7 1] done");
    // Another session of the same user reads other bytes under that UID.
    let mut b = T::of("alice/2");
    std::mem::swap(&mut b.reg, &mut a.reg);
    b.selected(&[1]).cmd(Cmd::Fetch {
        uid: false,
        set: vec![(1, 1)],
        body: true,
    });
    b.recv(&format!(
        "* 1 FETCH (UID 1 RFC822.SIZE {} BODY[] {{{}}}\r\nSubject: b\r\n\r\na\r\n)",
        body.len(),
        body.len()
    ))
    .ok();
    assert_eq!(b.kinds(), ["message changed"]);
    // A COPY carries the source's bytes to the copy's UID.
    let mut c = T::of("alice/3");
    std::mem::swap(&mut c.reg, &mut b.reg);
    c.selected(&[1]).cmd(Cmd::Copy {
        uid: true,
        set: vec![(1, 1)],
        to: "Box1".into(),
        moving: true,
    });
    c.recv("* OK [COPYUID 8 1 5] Moved")
        .recv("* 1 EXPUNGE")
        .ok();
    c.cmd(Cmd::Select {
        mailbox: "Box1".into(),
    })
    .recv("* 1 EXISTS")
    .recv("* OK [UIDVALIDITY 8] ok")
    .ok()
    .cmd(Cmd::Fetch {
        uid: false,
        set: vec![(1, 1)],
        body: true,
    })
    .recv("* 1 FETCH (UID 5 RFC822.SIZE 3 BODY[] {3}\r\nxyz)")
    .ok();
    assert_eq!(c.kinds(), ["message changed"]);
}

#[test]
fn flags_follow_the_sessions_own_stores() {
    // The STORE's own answer without the keyword.
    let mut t = T::new();
    t.selected(&[1, 2])
        .cmd(store(false, 2, FlagOp::Add))
        .recv("* 2 FETCH (FLAGS ())")
        .ok();
    assert_eq!(t.kinds(), ["FLAGS do not follow the STORE"]);
    // A later FETCH that lost it, and one of a COPY of it.
    let mut t = T::new();
    t.selected(&[1, 2])
        .cmd(store(true, 2, FlagOp::Add))
        .recv("* 2 FETCH (UID 2 FLAGS ($s1))")
        .ok();
    t.cmd(Cmd::Noop).recv("* 2 FETCH (FLAGS (\\Seen))").ok();
    t.cmd(Cmd::Copy {
        uid: false,
        set: vec![(2, 2)],
        to: "INBOX".into(),
        moving: false,
    })
    .recv("* 3 EXISTS")
    .recv("TAG OK [COPYUID 7 2 3] done");
    t.cmd(fetch(false, 3, 3))
        .recv("* 3 FETCH (UID 3 FLAGS ())")
        .ok();
    assert_eq!(
        t.kinds(),
        [
            "FLAGS do not follow the STORE",
            "FLAGS do not follow the STORE"
        ]
    );
    // Cleared, then still there; and found by KEYWORD.
    let mut t = T::new();
    t.selected(&[1, 2])
        .cmd(store(false, 1, FlagOp::Remove))
        .recv("* 1 FETCH (FLAGS ($s1))")
        .ok();
    t.cmd(Cmd::Search {
        uid: false,
        criteria: Criteria::Keyword("$s1".into()),
    })
    .recv("* SEARCH 1")
    .ok();
    assert_eq!(
        t.kinds(),
        [
            "FLAGS do not follow the STORE",
            "FLAGS do not follow the STORE"
        ]
    );
    // Other sessions' flags come and go freely.
    let mut t = T::new();
    t.selected(&[1])
        .cmd(Cmd::Noop)
        .recv("* 1 FETCH (FLAGS ($s2))")
        .recv("* 1 FETCH (FLAGS ())")
        .ok();
    assert_eq!(t.kinds(), Vec::<&str>::new());
}

#[test]
fn one_fetch_per_message_in_a_store_answer() {
    let mut t = T::new();
    t.selected(&[1, 2])
        .cmd(store(false, 2, FlagOp::Add))
        .recv("* 2 FETCH (FLAGS ($s1))")
        .recv("* 2 FETCH (FLAGS ($s1))")
        .ok();
    assert_eq!(t.kinds(), ["duplicate FETCH in a STORE answer"]);
}

#[test]
fn nothing_about_messages_between_commands() {
    let mut t = T::new();
    t.selected(&[1, 2]).recv("* 3 EXISTS").recv("* 1 EXPUNGE");
    assert_eq!(
        t.kinds(),
        [
            "untagged response between commands",
            "untagged response between commands"
        ]
    );
}

#[test]
fn no_bye_but_logouts_no_bad_no_lost_connection() {
    let mut t = T::new();
    t.selected(&[])
        .cmd(Cmd::Noop)
        .recv("* BYE shutting down")
        .recv("TAG BAD no");
    t.s.feed(&Event::Closed("EOF".into()), &mut t.reg);
    assert_eq!(t.kinds(), ["BYE but for LOGOUT", "BAD", "connection lost"]);
}

#[test]
fn uidvalidity_never_changes() {
    let mut t = T::new();
    t.selected(&[]);
    t.cmd(Cmd::Select {
        mailbox: "INBOX".into(),
    })
    .recv("* 0 EXISTS")
    .recv("* OK [UIDVALIDITY 8] ok")
    .ok();
    assert_eq!(t.kinds(), ["UIDVALIDITY changed"]);
}

#[test]
fn a_violation_carries_the_sessions_last_lines() {
    let mut t = T::new();
    t.selected(&[1]).cmd(fetch(false, 1, 1)).recv("* 1 EXPUNGE");
    let v = t.s.take_violations().remove(0);
    assert_eq!(v.session, "alice/1");
    assert_eq!(v.context.last().map(String::as_str), Some("S: * 1 EXPUNGE"));
    assert!(
        v.context.iter().any(|l| l == "C: A3 FETCH 1 (UID FLAGS)"),
        "{v}"
    );
}

/// Found by the first direct run: a UID range reaches past the messages
/// that exist; a later APPEND's UID in it was never stored.
#[test]
fn a_uid_store_covers_only_messages_the_session_knows() {
    let mut t = T::new();
    t.selected(&[1, 2])
        .cmd(Cmd::Store {
            uid: true,
            set: vec![(2, 5)],
            op: FlagOp::Add,
            flags: vec!["$s1".into()],
            silent: false,
        })
        .recv("* 2 FETCH (UID 2 FLAGS ($s1))")
        .ok();
    confirm(&mut t, &[3]);
    t.cmd(Cmd::Noop)
        .recv("* 3 EXISTS")
        .ok()
        .cmd(fetch(false, 3, 3))
        .recv("* 3 FETCH (UID 3 FLAGS ())")
        .ok();
    assert_eq!(t.kinds(), Vec::<&str>::new());
}

/// Found by a direct run: a UID STORE names a message whose UID the
/// session does not know yet; what an earlier STORE by number told of it
/// no longer holds once a FETCH names its UID.
#[test]
fn a_uid_store_overrides_a_store_by_number_of_a_message_not_yet_named() {
    let mut t = T::new();
    t.selected(&[1]);
    confirm(&mut t, &[2, 3]);
    t.cmd(Cmd::Noop).recv("* 3 EXISTS").ok();
    t.cmd(Cmd::Store {
        uid: false,
        set: vec![(1, 3)],
        op: FlagOp::Remove,
        flags: vec!["$s1".into()],
        silent: true,
    })
    .ok();
    t.cmd(Cmd::Store {
        uid: true,
        set: vec![(2, 3)],
        op: FlagOp::Add,
        flags: vec!["$s1".into()],
        silent: true,
    })
    .ok();
    t.cmd(fetch(false, 1, 3))
        .recv("* 1 FETCH (UID 1 FLAGS ())")
        .recv("* 2 FETCH (UID 2 FLAGS ($s1))")
        .recv("* 3 FETCH (UID 3 FLAGS ($s1))")
        .ok();
    assert_eq!(t.kinds(), Vec::<&str>::new());
}

/// A UID STORE reaches UIDs the session saw before a SELECT (out of
/// view now).
#[test]
fn a_uid_store_updates_what_was_known_out_of_view() {
    let mut t = T::new();
    t.selected(&[1, 2])
        .cmd(store(true, 2, FlagOp::Add))
        .recv("* 2 FETCH (UID 2 FLAGS ($s1))")
        .ok();
    t.cmd(Cmd::Select {
        mailbox: "INBOX".into(),
    })
    .recv("* 2 EXISTS")
    .recv("* OK [UIDVALIDITY 7] ok")
    .ok();
    t.cmd(Cmd::Store {
        uid: true,
        set: vec![(2, 2)],
        op: FlagOp::Remove,
        flags: vec!["$s1".into()],
        silent: true,
    })
    .ok();
    t.cmd(fetch(false, 2, 2))
        .recv("* 2 FETCH (UID 2 FLAGS ())")
        .ok();
    assert_eq!(t.kinds(), Vec::<&str>::new());
}

/// Found by the first direct run: a STORE by number on a message whose
/// UID the session no longer knew (after a SELECT) replaces what it knew
/// of that UID once a FETCH names it.
#[test]
fn a_store_by_number_of_an_unknown_uid_counts_once_the_uid_is_known() {
    let mut t = T::new();
    t.selected(&[1, 2])
        .cmd(store(true, 2, FlagOp::Remove))
        .recv("* 2 FETCH (UID 2 FLAGS ())")
        .ok();
    t.cmd(Cmd::Select {
        mailbox: "INBOX".into(),
    })
    .recv("* 2 EXISTS")
    .recv("* OK [UIDVALIDITY 7] ok")
    .ok();
    t.cmd(store(false, 2, FlagOp::Add))
        .recv("* 2 FETCH (FLAGS ($s1))")
        .ok();
    t.cmd(fetch(false, 2, 2))
        .recv("* 2 FETCH (UID 2 FLAGS ($s1))")
        .ok();
    assert_eq!(t.kinds(), Vec::<&str>::new());
}

/// Dovecot answers `RFC822.SIZE 0 BODY[] NIL` for a message another
/// session expunged that this one was not told of yet.
#[test]
fn a_nil_body_is_no_change() {
    let mut t = T::new();
    t.selected(&[1]);
    t.reg.observe(
        &("alice".into(), "INBOX".into(), 7, 1),
        Some(5),
        Some(40),
        true,
    );
    t.cmd(Cmd::Fetch {
        uid: false,
        set: vec![(1, 1)],
        body: true,
    })
    .recv("* 1 FETCH (UID 1 FLAGS () RFC822.SIZE 0 BODY[] NIL)")
    .ok();
    assert_eq!(t.kinds(), Vec::<&str>::new());
}

/// Found by the first direct run: a STORE by number on messages whose
/// UIDs the session does not know may have changed any UID it knew of
/// before (but no longer sees), so what it knew of those is forgotten.
#[test]
fn a_store_of_unknown_uids_forgets_what_was_known_out_of_view() {
    let mut t = T::new();
    t.selected(&[1, 2])
        .cmd(store(true, 2, FlagOp::Add))
        .recv("* 2 FETCH (UID 2 FLAGS ($s1))")
        .ok();
    t.cmd(Cmd::Select {
        mailbox: "INBOX".into(),
    })
    .recv("* 2 EXISTS")
    .recv("* OK [UIDVALIDITY 7] ok")
    .ok();
    t.cmd(store(false, 2, FlagOp::Remove)).ok(); // UID 2 unknown here
    t.cmd(Cmd::Select {
        mailbox: "INBOX".into(),
    })
    .recv("* 2 EXISTS")
    .recv("* OK [UIDVALIDITY 7] ok")
    .ok();
    t.cmd(fetch(false, 1, 2))
        .recv("* 1 FETCH (UID 1 FLAGS ())")
        .recv("* 2 FETCH (UID 2 FLAGS ())")
        .ok();
    assert_eq!(t.kinds(), Vec::<&str>::new());
}

/// An EXPUNGE during a STORE by number (itself a violation) does not
/// make the model lose track of which messages the STORE meant.
#[test]
fn a_store_by_number_means_the_messages_numbered_when_it_was_sent() {
    let mut t = T::new();
    t.selected(&[1, 2, 3])
        .cmd(store(false, 3, FlagOp::Add))
        .recv("* 1 EXPUNGE")
        .recv("* 2 FETCH (FLAGS ($s1))")
        .ok();
    t.cmd(fetch(false, 1, 2))
        .recv("* 1 FETCH (UID 2 FLAGS ())")
        .recv("* 2 FETCH (UID 3 FLAGS ($s1))")
        .ok();
    assert_eq!(t.kinds(), ["EXPUNGE during FETCH, STORE or SEARCH"]);
}
