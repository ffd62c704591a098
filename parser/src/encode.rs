//! Writing commands: what a node sends to its own backend when it applies a
//! committed log entry (APPEND, UID STORE, UID COPY / MOVE, UID EXPUNGE,
//! mailbox commands). Every command written here parses back with
//! [`crate::command::Command::parse`] into the same parts.
//!
//! Invariants, one line each:
//! - A string is written as an atom when it can be, else quoted, else as a
//!   non-synchronizing literal `{n+}` (the backend must advertise LITERAL+,
//!   as Dovecot and Cyrus do); a value is never altered.
//! - A flag or tag that is not a valid atom is an error, never written.

use crate::command::StoreMode;
use crate::lexer::{is_astring_char, is_atom_char, is_tag_char};
use crate::seqset::SequenceSet;

/// Why a command could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The tag is empty or holds a byte a tag cannot.
    #[error("invalid tag")]
    BadTag,
    /// A flag is not `\Atom` or `Atom`.
    #[error("invalid flag {0:?}")]
    BadFlag(Vec<u8>),
    /// A date-time holds a byte a quoted string cannot.
    #[error("invalid date-time")]
    BadDate,
    /// APPEND without a message.
    #[error("APPEND needs at least one message")]
    NoMessage,
}

/// Appends `v` as an `astring`: atom, quoted string or `{n+}` literal.
pub fn astring(out: &mut Vec<u8>, v: &[u8]) {
    if !v.is_empty() && v.iter().all(|&b| is_astring_char(b) && b < 0x80) {
        out.extend_from_slice(v);
    } else if v
        .iter()
        .all(|&b| (1..0x80).contains(&b) && b != b'\r' && b != b'\n')
    {
        out.push(b'"');
        for &b in v {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, v);
    }
}

/// Appends `v` as a non-synchronizing literal `{n+}` CRLF data.
pub fn literal(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(format!("{{{}+}}\r\n", v.len()).as_bytes());
    out.extend_from_slice(v);
}

fn tag(out: &mut Vec<u8>, t: &[u8]) -> Result<(), EncodeError> {
    if t.is_empty() || !t.iter().all(|&b| is_tag_char(b)) {
        return Err(EncodeError::BadTag);
    }
    out.extend_from_slice(t);
    out.push(b' ');
    Ok(())
}

fn flag_list(out: &mut Vec<u8>, flags: &[&[u8]]) -> Result<(), EncodeError> {
    out.push(b'(');
    for (k, f) in flags.iter().enumerate() {
        let atom = f.strip_prefix(b"\\").unwrap_or(f);
        if atom.is_empty() || !atom.iter().all(|&b| is_atom_char(b) && b < 0x80) {
            return Err(EncodeError::BadFlag(f.to_vec()));
        }
        if k > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(f);
    }
    out.push(b')');
    Ok(())
}

/// One message of an APPEND.
#[derive(Debug, Clone, Copy)]
pub struct AppendItem<'a> {
    /// Flags and keywords (`\Seen`, `$Label`).
    pub flags: &'a [&'a [u8]],
    /// The internal date, as a date-time string
    /// (`"05-Jan-2021 14:20:00 +0100"` without the quotes).
    pub date: Option<&'a [u8]>,
    /// The message.
    pub message: &'a [u8],
    /// Send it as a literal8 `~{n+}` (RFC 3516, with LITERAL+), as the
    /// client did: a backend may store a literal8 differently.
    pub literal8: bool,
}

/// `tag APPEND mailbox (flags) "date" {n+}` ... for one or more messages
/// (MULTIAPPEND, RFC 3502, when more than one).
pub fn append(
    t: &[u8],
    mailbox: &[u8],
    messages: &[AppendItem<'_>],
) -> Result<Vec<u8>, EncodeError> {
    if messages.is_empty() {
        return Err(EncodeError::NoMessage);
    }
    let mut out =
        Vec::with_capacity(64 + messages.iter().map(|m| m.message.len() + 32).sum::<usize>());
    tag(&mut out, t)?;
    out.extend_from_slice(b"APPEND ");
    astring(&mut out, mailbox);
    for m in messages {
        out.push(b' ');
        if !m.flags.is_empty() {
            flag_list(&mut out, m.flags)?;
            out.push(b' ');
        }
        if let Some(d) = m.date {
            if !d
                .iter()
                .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            {
                return Err(EncodeError::BadDate);
            }
            out.push(b'"');
            out.extend_from_slice(d);
            out.extend_from_slice(b"\" ");
        }
        if m.literal8 {
            out.push(b'~');
        }
        literal(&mut out, m.message);
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// `tag UID STORE set (+|-)FLAGS[.SILENT] (flags)`.
pub fn uid_store(
    t: &[u8],
    set: &SequenceSet,
    mode: StoreMode,
    silent: bool,
    flags: &[&[u8]],
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    tag(&mut out, t)?;
    out.extend_from_slice(b"UID STORE ");
    set.encode(&mut out);
    out.push(b' ');
    match mode {
        StoreMode::Replace => {}
        StoreMode::Add => out.push(b'+'),
        StoreMode::Remove => out.push(b'-'),
    }
    out.extend_from_slice(if silent { b"FLAGS.SILENT " } else { b"FLAGS " });
    flag_list(&mut out, flags)?;
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

fn set_and_mailbox(
    t: &[u8],
    name: &[u8],
    set: &SequenceSet,
    mailbox: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    tag(&mut out, t)?;
    out.extend_from_slice(name);
    out.push(b' ');
    set.encode(&mut out);
    out.push(b' ');
    astring(&mut out, mailbox);
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// `tag UID COPY set mailbox`.
pub fn uid_copy(t: &[u8], set: &SequenceSet, mailbox: &[u8]) -> Result<Vec<u8>, EncodeError> {
    set_and_mailbox(t, b"UID COPY", set, mailbox)
}

/// `tag UID MOVE set mailbox` (RFC 6851).
pub fn uid_move(t: &[u8], set: &SequenceSet, mailbox: &[u8]) -> Result<Vec<u8>, EncodeError> {
    set_and_mailbox(t, b"UID MOVE", set, mailbox)
}

/// `tag UID EXPUNGE set` (RFC 4315).
pub fn uid_expunge(t: &[u8], set: &SequenceSet) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    tag(&mut out, t)?;
    out.extend_from_slice(b"UID EXPUNGE ");
    set.encode(&mut out);
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// A command whose one argument is a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxVerb {
    /// SELECT.
    Select,
    /// EXAMINE.
    Examine,
    /// CREATE.
    Create,
    /// DELETE.
    Delete,
    /// SUBSCRIBE.
    Subscribe,
    /// UNSUBSCRIBE.
    Unsubscribe,
}

/// `tag VERB mailbox`.
pub fn mailbox_command(
    t: &[u8],
    verb: MailboxVerb,
    mailbox: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    tag(&mut out, t)?;
    out.extend_from_slice(match verb {
        MailboxVerb::Select => b"SELECT ",
        MailboxVerb::Examine => b"EXAMINE ",
        MailboxVerb::Create => b"CREATE ",
        MailboxVerb::Delete => b"DELETE ",
        MailboxVerb::Subscribe => b"SUBSCRIBE ",
        MailboxVerb::Unsubscribe => b"UNSUBSCRIBE ",
    });
    astring(&mut out, mailbox);
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// `tag RENAME from to`.
pub fn rename(t: &[u8], from: &[u8], to: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    tag(&mut out, t)?;
    out.extend_from_slice(b"RENAME ");
    astring(&mut out, from);
    out.push(b' ');
    astring(&mut out, to);
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, CommandBody, SetArg};
    use crate::frame::{CommandFramer, CommandProgress, Limits};
    use proptest::prelude::*;

    fn astring_bytes(v: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        astring(&mut out, v);
        out
    }

    #[test]
    fn strings_take_the_lightest_form_that_holds_them() {
        assert_eq!(astring_bytes(b"INBOX"), b"INBOX");
        assert_eq!(astring_bytes(b"Sent Items"), b"\"Sent Items\"");
        assert_eq!(astring_bytes(b""), b"\"\"");
        assert_eq!(astring_bytes(b"a\"b\\c"), b"\"a\\\"b\\\\c\"");
        assert_eq!(astring_bytes(b"a\r\nb"), b"{4+}\r\na\r\nb");
        assert_eq!(
            astring_bytes("Entw\u{fc}rfe".as_bytes()),
            b"{9+}\r\nEntw\xc3\xbcrfe"
        );
        assert_eq!(astring_bytes(b"a{b"), b"\"a{b\"");
    }

    #[test]
    fn invalid_tags_and_flags_are_refused() {
        let set = SequenceSet::parse(b"1").unwrap();
        assert_eq!(uid_expunge(b"", &set), Err(EncodeError::BadTag));
        assert_eq!(uid_expunge(b"a+b", &set), Err(EncodeError::BadTag));
        assert_eq!(
            uid_store(b"t", &set, StoreMode::Add, false, &[b"\\Se en"]),
            Err(EncodeError::BadFlag(b"\\Se en".to_vec()))
        );
        assert!(uid_store(b"t", &set, StoreMode::Add, false, &[b"("]).is_err());
        assert_eq!(append(b"t", b"INBOX", &[]), Err(EncodeError::NoMessage));
    }

    #[test]
    fn written_commands_are_known_answers() {
        let set = SequenceSet::parse(b"4:6,9").unwrap();
        assert_eq!(
            uid_store(
                b"r1",
                &set,
                StoreMode::Remove,
                true,
                &[b"\\Seen", b"$Label"]
            )
            .unwrap(),
            b"r1 UID STORE 4:6,9 -FLAGS.SILENT (\\Seen $Label)\r\n"
        );
        assert_eq!(
            uid_move(b"r2", &set, b"Trash").unwrap(),
            b"r2 UID MOVE 4:6,9 Trash\r\n"
        );
        assert_eq!(
            rename(b"r3", b"a b", b"c").unwrap(),
            b"r3 RENAME \"a b\" c\r\n"
        );
        assert_eq!(
            append(
                b"r4",
                b"INBOX",
                &[AppendItem {
                    flags: &[b"\\Seen"],
                    date: Some(b"05-Jan-2021 14:20:00 +0100"),
                    message: b"hi\r\n",
                    literal8: false,
                }]
            )
            .unwrap(),
            b"r4 APPEND INBOX (\\Seen) \"05-Jan-2021 14:20:00 +0100\" {4+}\r\nhi\r\n\r\n"
        );
        // RFC 3516 section 4.4: a literal8, non-synchronizing (RFC 7888).
        assert_eq!(
            append(
                b"r5",
                b"INBOX",
                &[AppendItem {
                    flags: &[],
                    date: None,
                    message: b"a\0b",
                    literal8: true,
                }]
            )
            .unwrap(),
            b"r5 APPEND INBOX ~{3+}\r\na\0b\r\n"
        );
    }

    fn frames_as_one_command(b: &[u8]) -> bool {
        let mut f = CommandFramer::new(Limits::default());
        loop {
            match f.next(b) {
                Ok(CommandProgress::Complete { len }) => return len == b.len(),
                Ok(CommandProgress::LiteralAnnounced(_)) => f.accept_literal(),
                _ => return false,
            }
        }
    }

    proptest! {
        #[test]
        fn any_mailbox_name_round_trips(name in proptest::collection::vec(any::<u8>(), 0..30), verb in 0usize..6) {
            let verbs = [MailboxVerb::Select, MailboxVerb::Examine, MailboxVerb::Create, MailboxVerb::Delete, MailboxVerb::Subscribe, MailboxVerb::Unsubscribe];
            let b = mailbox_command(b"m1", verbs[verb], &name).unwrap();
            prop_assert!(frames_as_one_command(&b));
            let c = Command::parse(&b).unwrap();
            prop_assert_eq!(&*c.mailboxes()[0].value(&b), &name[..]);
            let b = rename(b"m2", &name, b"x").unwrap();
            let c = Command::parse(&b).unwrap();
            prop_assert_eq!(&*c.mailboxes()[0].value(&b), &name[..]);
        }

        #[test]
        fn multiappend_round_trips(
            mailbox in proptest::collection::vec(any::<u8>(), 1..20),
            msgs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..100), any::<bool>(), any::<bool>(), any::<bool>()), 1..4),
        ) {
            let items: Vec<AppendItem<'_>> = msgs
                .iter()
                .map(|(m, seen, dated, literal8)| AppendItem {
                    flags: if *seen { &[b"\\Seen", b"$X"] } else { &[] },
                    date: dated.then_some(&b"05-Jan-2021 14:20:00 +0100"[..]),
                    message: m,
                    literal8: *literal8,
                })
                .collect();
            let b = append(b"a1", &mailbox, &items).unwrap();
            prop_assert!(frames_as_one_command(&b));
            let c = Command::parse(&b).unwrap();
            let CommandBody::Append { mailbox: mb, messages } = &c.body else {
                return Err(TestCaseError::fail("not an APPEND"));
            };
            prop_assert_eq!(&*mb.value(&b), &mailbox[..]);
            prop_assert_eq!(messages.len(), msgs.len());
            for (got, (m, seen, dated, literal8)) in messages.iter().zip(&msgs) {
                prop_assert_eq!(&*got.message.value(&b), &m[..]);
                let binary = match got.message.kind {
                    crate::lexer::StrKind::Literal { binary, non_sync: true, .. } => Some(binary),
                    _ => None,
                };
                prop_assert_eq!(binary, Some(*literal8));
                prop_assert_eq!(got.flags.len(), if *seen { 2 } else { 0 });
                prop_assert_eq!(got.date.is_some(), *dated);
            }
        }

        #[test]
        fn uid_commands_round_trip(a in 1u32..1000, l in 0u32..50, mailbox in proptest::collection::vec(any::<u8>(), 0..20)) {
            let set = SequenceSet::parse(format!("{a}:{},{}", a + l, a + l + 2).as_bytes()).unwrap();
            for b in [
                uid_copy(b"c", &set, &mailbox).unwrap(),
                uid_move(b"c", &set, &mailbox).unwrap(),
                uid_expunge(b"c", &set).unwrap(),
                uid_store(b"c", &set, StoreMode::Add, true, &[b"\\Deleted"]).unwrap(),
            ] {
                let c = Command::parse(&b).unwrap();
                prop_assert!(c.uid);
                let sets = c.uid_sets();
                let SetArg::Set { set: got, .. } = sets[0] else {
                    return Err(TestCaseError::fail("no set"));
                };
                prop_assert_eq!(got, &set);
            }
        }
    }
}
