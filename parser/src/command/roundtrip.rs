//! parse(encode(x)) == x: commands built from generated parts parse back
//! into the same parts.

use super::*;
use crate::seqset::{SeqItem, SeqNum, SequenceSet};
use proptest::prelude::*;

/// A string argument in one of its three forms, and its value.
pub(crate) fn astring() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    prop_oneof![
        "[A-Za-z0-9._/&+-]{1,10}".prop_map(|s| (s.clone().into_bytes(), s.into_bytes())),
        "[ -~]{0,10}".prop_map(|s| {
            let mut enc = b"\"".to_vec();
            for b in s.bytes() {
                if b == b'"' || b == b'\\' {
                    enc.push(b'\\');
                }
                enc.push(b);
            }
            enc.push(b'"');
            (enc, s.into_bytes())
        }),
        (proptest::collection::vec(any::<u8>(), 0..20), any::<bool>()).prop_map(|(v, plus)| {
            let mut enc =
                format!("{{{}{}}}\r\n", v.len(), if plus { "+" } else { "" }).into_bytes();
            enc.extend_from_slice(&v);
            (enc, v)
        }),
    ]
}

pub(crate) fn set() -> impl Strategy<Value = SequenceSet> {
    let num = prop_oneof![4 => (1u32..100_000).prop_map(SeqNum::Value), 1 => Just(SeqNum::Star)];
    let item = prop_oneof![
        num.clone().prop_map(SeqItem::One),
        (num.clone(), num).prop_map(|(a, b)| SeqItem::Range(a, b)),
    ];
    proptest::collection::vec(item, 1..5).prop_map(|v| SequenceSet::from_items(v).unwrap())
}

fn flags() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![
            Just("\\Seen".to_string()),
            Just("\\Deleted".to_string()),
            "\\$?[A-Za-z][A-Za-z0-9_]{0,8}".prop_map(|s| s.replace('\\', "")),
        ],
        0..4,
    )
}

proptest! {
    #[test]
    fn store_parses_back(tag in "[A-Za-z0-9.]{1,8}", uid in any::<bool>(), s in set(), mode in 0u8..3, silent in any::<bool>(), f in flags()) {
        let sign = ["", "+", "-"][usize::from(mode)];
        let line = format!(
            "{tag} {}STORE {} {sign}FLAGS{} ({})\r\n",
            if uid { "UID " } else { "" },
            String::from_utf8(s.to_bytes()).unwrap(),
            if silent { ".SILENT" } else { "" },
            f.join(" ")
        );
        let c = Command::parse(line.as_bytes()).unwrap();
        prop_assert_eq!(c.tag(), tag.as_bytes());
        prop_assert_eq!(c.uid, uid);
        let CommandBody::Store { set: SetArg::Set { set: got, .. }, mode: m, silent: si, flags: fl, .. } = &c.body else {
            return Err(TestCaseError::fail("not a STORE"));
        };
        prop_assert_eq!(got, &s);
        prop_assert_eq!(*m, [StoreMode::Replace, StoreMode::Add, StoreMode::Remove][usize::from(mode)]);
        prop_assert_eq!(*si, silent);
        let got: Vec<&[u8]> = fl.iter().map(|sp| sp.of(c.buf)).collect();
        let want: Vec<&[u8]> = f.iter().map(|x| x.as_bytes()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn copy_and_move_parse_back(uid in any::<bool>(), mv in any::<bool>(), s in set(), mb in astring()) {
        let mut line = format!("t {}{} {} ", if uid { "UID " } else { "" }, if mv { "MOVE" } else { "COPY" }, String::from_utf8(s.to_bytes()).unwrap()).into_bytes();
        line.extend_from_slice(&mb.0);
        line.extend_from_slice(b"\r\n");
        let c = Command::parse(&line).unwrap();
        let (set_arg, mailbox) = match &c.body {
            CommandBody::Copy { set, mailbox } if !mv => (set, mailbox),
            CommandBody::Move { set, mailbox } if mv => (set, mailbox),
            _ => return Err(TestCaseError::fail("wrong command")),
        };
        prop_assert_eq!(set_arg, &SetArg::Set { set: s.clone(), span: set_arg.span() });
        prop_assert_eq!(&*mailbox.value(&line), &mb.1[..]);
        prop_assert_eq!(mailbox.raw.of(&line), &mb.0[..]);
        prop_assert_eq!(c.uid_sets().len(), usize::from(uid));
    }

    #[test]
    fn multiappend_parses_back(mb in astring(), msgs in proptest::collection::vec((flags(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..50), 0u8..3), 1..4)) {
        let mut line = b"A APPEND ".to_vec();
        line.extend_from_slice(&mb.0);
        for (f, date, data, kind) in &msgs {
            line.push(b' ');
            if !f.is_empty() {
                line.extend_from_slice(format!("({}) ", f.join(" ")).as_bytes());
            }
            if *date {
                line.extend_from_slice(b"\"05-Jan-2021 14:20:00 +0100\" ");
            }
            let head = match kind {
                0 => format!("{{{}}}\r\n", data.len()),
                1 => format!("{{{}+}}\r\n", data.len()),
                _ => format!("~{{{}}}\r\n", data.len()),
            };
            line.extend_from_slice(head.as_bytes());
            line.extend_from_slice(data);
        }
        line.extend_from_slice(b"\r\n");
        let c = Command::parse(&line).unwrap();
        let CommandBody::Append { mailbox, messages } = &c.body else {
            return Err(TestCaseError::fail("not an APPEND"));
        };
        prop_assert_eq!(&*mailbox.value(&line), &mb.1[..]);
        prop_assert_eq!(messages.len(), msgs.len());
        for (m, (f, date, data, _)) in messages.iter().zip(&msgs) {
            prop_assert_eq!(&*m.message.value(&line), &data[..]);
            prop_assert_eq!(m.flags.len(), f.len());
            prop_assert_eq!(m.date.is_some(), *date);
        }
    }

    #[test]
    fn login_parses_back(user in astring(), pass in astring()) {
        let mut line = b"a LOGIN ".to_vec();
        line.extend_from_slice(&user.0);
        line.push(b' ');
        line.extend_from_slice(&pass.0);
        line.extend_from_slice(b"\r\n");
        let c = Command::parse(&line).unwrap();
        let CommandBody::Login { user: u, password: p } = &c.body else {
            return Err(TestCaseError::fail("not a LOGIN"));
        };
        prop_assert_eq!(&*u.value(&line), &user.1[..]);
        prop_assert_eq!(&*p.value(&line), &pass.1[..]);
    }
}
