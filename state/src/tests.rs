use super::*;
use redb::{ReadableDatabase, ReadableTable};
use tandem_replicator::StateMachine;

fn db() -> redb::Database {
    redb::Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .unwrap()
}

struct Fixture {
    db: redb::Database,
    sm: Canon,
    clock: u64,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            db: db(),
            sm: Canon::new(true),
            clock: 1_700_000_000,
        }
    }

    fn run(&mut self, op: Op) -> Outcome {
        let txn = self.db.begin_write().unwrap();
        let out = self
            .sm
            .apply(
                &txn,
                1,
                Entry {
                    origin: 1,
                    at_secs: self.clock,
                    user: "alice".to_string(),
                    op,
                },
            )
            .unwrap();
        txn.commit().unwrap();
        out
    }

    fn outbox_len(&self) -> usize {
        let txn = self.db.begin_read().unwrap();
        match txn.open_table(OUTBOX) {
            Ok(t) => t.iter().unwrap().count(),
            Err(_) => 0,
        }
    }

    fn mailbox(&self, name: &str) -> Option<Mailbox> {
        read_mailbox(&self.db.begin_read().unwrap(), "alice", name)
    }
}

fn create(name: &str) -> Op {
    Op::Create {
        name: name.to_string(),
    }
}

fn append(mailbox: &str, n: usize) -> Op {
    Op::Append {
        mailbox: mailbox.to_string(),
        messages: (0..n)
            .map(|i| NewMessage {
                flags: vec![],
                date: None,
                body: format!("m{i}").into_bytes(),
            })
            .collect(),
        replaces: None,
    }
}

fn ok_uids(o: &Outcome) -> (u32, Vec<u32>, Vec<u32>) {
    match o {
        Outcome::Ok {
            uidvalidity,
            uids,
            source,
            ..
        } => (*uidvalidity, uids.clone(), source.clone()),
        Outcome::No { code, text } => panic!("refused: {code} {text}"),
    }
}

fn refused(o: &Outcome) -> &str {
    match o {
        Outcome::No { code, .. } => code,
        Outcome::Ok { .. } => panic!("accepted"),
    }
}

#[test]
fn uids_only_grow_and_a_recreated_mailbox_gets_a_new_uidvalidity() {
    let mut f = Fixture::new();
    let (uv, ..) = ok_uids(&f.run(create("Box")));
    assert!(u64::from(uv) >= f.clock, "looks like a clock value");
    assert_eq!(ok_uids(&f.run(append("Box", 2))).1, vec![1, 2]);
    assert_eq!(ok_uids(&f.run(append("Box", 1))).1, vec![3]);
    assert_eq!(refused(&f.run(append("box", 1))), "TRYCREATE");
    assert_eq!(refused(&f.run(create("Box"))), "ALREADYEXISTS");
    ok_uids(&f.run(Op::Expunge {
        mailbox: "Box".into(),
        uidvalidity: uv,
        uids: vec![(3, 3)],
    }));
    // UIDNEXT does not go back when the last message goes.
    assert_eq!(ok_uids(&f.run(append("Box", 1))).1, vec![4]);
    ok_uids(&f.run(Op::Delete { name: "Box".into() }));
    // The clock went back (another proposer): still a new UIDVALIDITY.
    f.clock -= 1000;
    let (uv2, ..) = ok_uids(&f.run(create("Box")));
    assert!(uv2 > uv, "{uv2} after {uv}");
    assert_eq!(ok_uids(&f.run(append("Box", 1))).1, vec![1]);
}

#[test]
fn messages_cyrus_refuses_are_refused_once_a_cyrus_node_registers() {
    let mut f = Fixture::new();
    ok_uids(&f.run(create("INBOX")));
    let bare_lf = || Op::Append {
        mailbox: "INBOX".into(),
        messages: vec![NewMessage {
            flags: vec![],
            date: None,
            body: b"Subject: a\n\nbare newlines\n".to_vec(),
        }],
        replaces: None,
    };
    // Dovecot-only: taken, as Dovecot takes it.
    assert_eq!(ok_uids(&f.run(bare_lf())).1, vec![1]);
    ok_uids(&f.run(Op::RegisterBackend {
        node: 1,
        kind: "dovecot".into(),
    }));
    assert_eq!(ok_uids(&f.run(bare_lf())).1, vec![2]);
    let queued = f.outbox_len();
    ok_uids(&f.run(Op::RegisterBackend {
        node: 2,
        kind: "cyrus".into(),
    }));
    assert_eq!(f.outbox_len(), queued, "a registration queues no work");
    assert_eq!(refused(&f.run(bare_lf())), "CANNOT");
    let before = f.mailbox("INBOX");
    assert_eq!(before.unwrap().uidnext, 3, "a refusal allocates no UID");
    // Well-formed mail still goes through.
    let good = Op::Append {
        mailbox: "INBOX".into(),
        messages: vec![NewMessage {
            flags: vec![],
            date: None,
            body: b"Subject: a\r\n\r\nfine\r\n".to_vec(),
        }],
        replaces: None,
    };
    assert_eq!(ok_uids(&f.run(good)).1, vec![3]);
}

#[test]
fn a_mailbox_with_children_is_not_deleted_until_they_are_gone() {
    let mut f = Fixture::new();
    ok_uids(&f.run(create("Parent")));
    ok_uids(&f.run(create("Parent.Child")));
    ok_uids(&f.run(create("Parentless")));
    let delete = |name: &str| Op::DeleteLeaf {
        name: name.into(),
        separator: Some('.'),
    };
    let queued = f.outbox_len();
    assert_eq!(refused(&f.run(delete("Parent"))), "HASCHILDREN");
    assert_eq!(f.outbox_len(), queued, "a refusal queues nothing");
    assert_eq!(refused(&f.run(delete("INBOX"))), "CANNOT");
    assert_eq!(refused(&f.run(delete("Nowhere"))), "NONEXISTENT");
    ok_uids(&f.run(delete("Parent.Child")));
    ok_uids(&f.run(delete("Parent")));
    ok_uids(&f.run(delete("Parentless")));
    // Entries written before DeleteLeaf keep their meaning.
    ok_uids(&f.run(create("Old")));
    ok_uids(&f.run(create("Old.Kid")));
    ok_uids(&f.run(Op::Delete { name: "Old".into() }));
}

#[test]
fn refusals_change_nothing_and_accepted_ops_queue_one_item_each() {
    let mut f = Fixture::new();
    ok_uids(&f.run(create("INBOX")));
    ok_uids(&f.run(append("INBOX", 3)));
    assert_eq!(f.outbox_len(), 2);
    let before = f.mailbox("INBOX");
    assert_eq!(
        refused(&f.run(Op::Delete {
            name: "inbox".into()
        })),
        "CANNOT"
    );
    assert_eq!(refused(&f.run(create("inbox"))), "ALREADYEXISTS");
    assert_eq!(
        refused(&f.run(Op::Store {
            mailbox: "INBOX".into(),
            uidvalidity: 1,
            uids: vec![(1, 3)],
            mode: FlagMode::Add,
            flags: vec!["\\Seen".into()],
        })),
        "NONEXISTENT",
        "a stale UIDVALIDITY is refused"
    );
    assert_eq!(f.mailbox("INBOX"), before);
    assert_eq!(f.outbox_len(), 2);
}

#[test]
fn copy_takes_only_existing_messages_and_move_removes_them() {
    let mut f = Fixture::new();
    let (src_uv, ..) = ok_uids(&f.run(create("A")));
    ok_uids(&f.run(create("B")));
    ok_uids(&f.run(append("A", 3)));
    ok_uids(&f.run(Op::Expunge {
        mailbox: "A".into(),
        uidvalidity: src_uv,
        uids: vec![(2, 2)],
    }));
    let copy = |remove| Op::Copy {
        from: "A".into(),
        from_uidvalidity: src_uv,
        uids: vec![(1, 10)],
        to: "B".into(),
        remove,
    };
    let (_, given, source) = ok_uids(&f.run(copy(false)));
    assert_eq!((given, source), (vec![1, 2], vec![1, 3]));
    let (_, given, source) = ok_uids(&f.run(copy(true)));
    assert_eq!((given, source), (vec![3, 4], vec![1, 3]));
    assert!(f.mailbox("A").unwrap().uids.is_empty());
    assert_eq!(f.mailbox("B").unwrap().uids, vec![(1, 4)]);
    // Nothing left to copy: accepted, nothing given.
    let (_, given, _) = ok_uids(&f.run(copy(false)));
    assert!(given.is_empty());
}

#[test]
fn rename_moves_children_and_keeps_uidvalidity_but_rename_inbox_moves_messages() {
    let mut f = Fixture::new();
    let (uv, ..) = ok_uids(&f.run(create("a")));
    let (kid_uv, ..) = ok_uids(&f.run(create("a.b")));
    ok_uids(&f.run(create("ab")));
    let rename = |from: &str, to: &str| Op::Rename {
        from: from.into(),
        to: to.into(),
        separator: Some('.'),
    };
    assert_eq!(refused(&f.run(rename("a", "a.c"))), "CANNOT");
    ok_uids(&f.run(rename("a", "z")));
    assert_eq!(f.mailbox("z").unwrap().uidvalidity, uv);
    assert_eq!(f.mailbox("z.b").unwrap().uidvalidity, kid_uv);
    assert!(f.mailbox("a").is_none() && f.mailbox("a.b").is_none());
    assert!(f.mailbox("ab").is_some(), "not a child of a");

    let (inbox_uv, ..) = ok_uids(&f.run(create("INBOX")));
    ok_uids(&f.run(append("INBOX", 2)));
    let (saved_uv, ..) = ok_uids(&f.run(rename("INBOX", "Saved")));
    let inbox = f.mailbox("INBOX").unwrap();
    assert_eq!((inbox.uidvalidity, inbox.uidnext), (inbox_uv, 3));
    assert!(inbox.uids.is_empty());
    let saved = f.mailbox("Saved").unwrap();
    assert_eq!(
        (saved.uidvalidity, saved.uids.clone()),
        (saved_uv, vec![(1, 2)])
    );
}

#[test]
fn a_message_is_adopted_once() {
    let mut f = Fixture::new();
    ok_uids(&f.run(create("INBOX")));
    let adopt = || Op::Append {
        mailbox: "INBOX".into(),
        messages: vec![NewMessage {
            flags: vec![],
            date: None,
            body: b"x".to_vec(),
        }],
        replaces: Some(Replaces {
            node: 2,
            local_uidvalidity: 77,
            uids: vec![5],
        }),
    };
    assert_eq!(ok_uids(&f.run(adopt())).1, vec![1]);
    assert_eq!(refused(&f.run(adopt())), "ALREADYEXISTS");
    assert_eq!(f.mailbox("INBOX").unwrap().uidnext, 2);
}

#[test]
fn a_snapshot_restores_the_same_state() {
    let mut f = Fixture::new();
    ok_uids(&f.run(create("INBOX")));
    ok_uids(&f.run(append("INBOX", 3)));
    ok_uids(&f.run(Op::Subscribe {
        name: "INBOX".into(),
    }));
    let snap = f.sm.snapshot(&f.db.begin_read().unwrap()).unwrap();
    let mut g = Fixture::new();
    let txn = g.db.begin_write().unwrap();
    g.sm.restore(&txn, &snap).unwrap();
    txn.commit().unwrap();
    assert_eq!(g.mailbox("INBOX"), f.mailbox("INBOX"));
    assert_eq!(g.sm.snapshot(&g.db.begin_read().unwrap()).unwrap(), snap);
    // Both go on identically.
    assert_eq!(g.run(append("INBOX", 1)), f.run(append("INBOX", 1)));
}

#[test]
fn a_literal8_append_queues_the_literal_kind_of_each_message() {
    let mut f = Fixture::new();
    ok_uids(&f.run(create("INBOX")));
    let Op::Append { messages, .. } = append("INBOX", 2) else {
        unreachable!()
    };
    let op = |literal8: Vec<bool>| Op::AppendLiteral8 {
        mailbox: "INBOX".to_string(),
        messages: messages.clone(),
        literal8,
    };
    let queued = f.outbox_len();
    assert!(matches!(f.run(op(vec![true])), Outcome::No { .. }));
    assert_eq!(f.outbox_len(), queued, "a refusal queues nothing");
    let (_, uids, _) = ok_uids(&f.run(op(vec![false, true])));
    assert_eq!(uids, [1, 2]);
    let Work::AppendLiteral8 { uids, literal8, .. } = f.last_work() else {
        panic!()
    };
    assert_eq!((uids, literal8), (vec![1, 2], vec![false, true]));
    // Without a literal8 it is a plain append.
    ok_uids(&f.run(op(vec![false, false])));
    assert!(matches!(f.last_work(), Work::Append { .. }));
}

impl Fixture {
    fn last_work(&self) -> Work {
        let txn = self.db.begin_read().unwrap();
        let outbox = txn.open_table(OUTBOX).unwrap();
        let last = outbox.iter().unwrap().next_back().unwrap().unwrap();
        let (_, work): (u64, Work) = postcard::from_bytes(last.1.value()).unwrap();
        work
    }
}
