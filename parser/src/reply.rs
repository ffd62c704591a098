//! Reading what a backend answered, for the decisions tandem takes on its
//! own conversations: accessors on a parsed [`Response`] (an EXISTS count,
//! a FETCH's number, UID, flags, size, date and first literal, the
//! delimiter of a LIST or NAMESPACE response, a UIDVALIDITY code) and
//! [`Reply`], a status line (a tagged completion or a greeting) kept owned
//! with its tag, status, code and text.
//!
//! Invariants, one line each:
//! - An accessor reads a value the grammar located, never a byte pattern
//!   searched for in the line (a FETCH's UID is an item, not the letters
//!   `UID` inside a body or a flag).
//! - Nothing here panics on any input; a value that is absent or does not
//!   parse is `None`.
//! - [`Reply::parse`] fails only when the tag or the status word cannot be
//!   read: a response code that does not parse is no code (its bytes stay
//!   in the text), so a backend's OK or NO is never lost to a malformed
//!   code, and a code-dependent answer (APPENDUID) is simply absent.

use std::borrow::Cow;

use crate::lexer::{is_tag_char, Lexer, ParseError, Span, StrKind, StrToken, DEFAULT_MAX_DEPTH};
use crate::response::{code, status_word, Code, FetchItem, Response, ResponseBody, Status};
use crate::seqset::SequenceSet;

/// Most UIDs an APPENDUID or COPYUID set is expanded to, in all and per
/// range (a backend that names more is not taken at its word).
const MAX_EXPANDED: usize = 10_000_000;

/// The tag of a tagged line (`a1 OK ...`, `a1 BAD ...`): the tag
/// characters before the first SP. `None` for `*` and `+` lines and for a
/// line that does not start with a tag and SP.
pub fn tag(line: &[u8]) -> Option<&[u8]> {
    let mut l = Lexer::new(line, DEFAULT_MAX_DEPTH);
    let t = l.take_while1(is_tag_char, "tag").ok()?;
    l.sp().ok()?;
    Some(t.of(line))
}

impl<'a> Response<'a> {
    /// `n` of `* n EXISTS`.
    pub fn exists(&self) -> Option<u32> {
        match self.body {
            ResponseBody::Exists(n) => Some(n),
            _ => None,
        }
    }

    /// Whether the response reports messages removed: `* n EXPUNGE` or
    /// `* VANISHED ...` (RFC 7162).
    pub fn removes_messages(&self) -> bool {
        matches!(
            self.body,
            ResponseBody::Expunge(_) | ResponseBody::Vanished { .. }
        )
    }

    /// The message sequence number of `* n FETCH (...)`.
    pub fn fetch_seq(&self) -> Option<u32> {
        match self.body {
            ResponseBody::Fetch { seq, .. } => Some(seq),
            _ => None,
        }
    }

    /// The items of a FETCH response; empty for any other response.
    pub fn fetch_items(&self) -> &[FetchItem] {
        match &self.body {
            ResponseBody::Fetch { items, .. } => items,
            _ => &[],
        }
    }

    /// The `UID n` item of a FETCH response, wherever it stands (Dovecot
    /// answers it first, Cyrus after other items).
    pub fn fetch_uid(&self) -> Option<u32> {
        self.fetch_items().iter().find_map(|i| match i {
            FetchItem::Uid { value, .. } => Some(*value),
            _ => None,
        })
    }

    /// The flags of a FETCH response's `FLAGS (...)` item, as written.
    pub fn fetch_flags(&self) -> Option<Vec<&'a [u8]>> {
        self.fetch_items().iter().find_map(|i| match i {
            FetchItem::Flags(spans) => Some(spans.iter().map(|s| s.of(self.buf)).collect()),
            _ => None,
        })
    }

    /// The raw value of a FETCH item named `name` (any case), for items
    /// the parser keeps whole (`RFC822.SIZE`, `INTERNALDATE`, `BODY[]`...;
    /// not UID, FLAGS or MODSEQ, which have their own accessors).
    pub fn fetch_value(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.fetch_items().iter().find_map(|i| match i {
            FetchItem::Other { name: n, value } if n.of(self.buf).eq_ignore_ascii_case(name) => {
                Some(value.of(self.buf))
            }
            _ => None,
        })
    }

    /// The `RFC822.SIZE n` item of a FETCH response.
    pub fn rfc822_size(&self) -> Option<u32> {
        whole_number(self.fetch_value(b"RFC822.SIZE")?)
    }

    /// The date of a FETCH response's `INTERNALDATE "..."` item, without
    /// its quotes (Cyrus pads a one-digit day with a space, as RFC 9051's
    /// `date-day-fixed`; Dovecot does too).
    pub fn internal_date(&self) -> Option<Cow<'a, [u8]>> {
        let value = self.fetch_value(b"INTERNALDATE")?;
        let mut l = Lexer::new(value, DEFAULT_MAX_DEPTH);
        let t = l.quoted().ok()?;
        if l.pos != value.len() {
            return None;
        }
        Some(t.value(value))
    }

    /// The data of the first literal of a FETCH response, in the order the
    /// items were written (the body of a `BODY[]` item, or a literal inside
    /// an ENVELOPE before it).
    pub fn first_literal(&self) -> Option<&'a [u8]> {
        self.fetch_items().iter().find_map(|i| match i {
            FetchItem::Other { value, .. } => literal_in(self.buf, *value),
            _ => None,
        })
    }

    /// The value of an `[UIDVALIDITY n]` code.
    pub fn uidvalidity(&self) -> Option<u32> {
        match self.code()? {
            Code::UidValidity { value, .. } => Some(*value),
            _ => None,
        }
    }

    /// The hierarchy delimiter of `* LIST (flags) delimiter name`:
    /// `Some(None)` for NIL; `None` when the response is not a LIST or its
    /// delimiter is not one byte.
    pub fn list_delimiter(&self) -> Option<Option<u8>> {
        let mut l = Lexer::new(self.buf, DEFAULT_MAX_DEPTH);
        l.expect(b'*', "*").ok()?;
        l.sp().ok()?;
        if !l.keyword(b"LIST") {
            return None;
        }
        l.sp().ok()?;
        l.atom_list().ok()?;
        l.sp().ok()?;
        match delimiter(&mut l)? {
            None => Some(None),
            Some(d) => match d[..] {
                [c] => Some(Some(c)),
                _ => None,
            },
        }
    }

    /// The first personal namespace of `* NAMESPACE ((prefix delimiter)
    /// ...) ...` (RFC 2342). `None` when the response is not NAMESPACE or
    /// has no personal namespace.
    pub fn personal_namespace(&self) -> Option<Namespace<'a>> {
        let mut l = Lexer::new(self.buf, DEFAULT_MAX_DEPTH);
        l.expect(b'*', "*").ok()?;
        l.sp().ok()?;
        if !l.keyword(b"NAMESPACE") {
            return None;
        }
        l.sp().ok()?;
        l.expect(b'(', "(").ok()?;
        l.expect(b'(', "(").ok()?;
        let prefix = l.string().ok()?;
        l.sp().ok()?;
        let delimiter = delimiter(&mut l)?;
        Some(Namespace {
            prefix: prefix.value(self.buf),
            delimiter,
        })
    }
}

/// One namespace of a NAMESPACE response (RFC 2342).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace<'a> {
    /// The prefix (`""`, `INBOX.`).
    pub prefix: Cow<'a, [u8]>,
    /// The hierarchy delimiter; `None` for NIL.
    pub delimiter: Option<Cow<'a, [u8]>>,
}

/// `DQUOTE QUOTED-CHAR DQUOTE / nil` of LIST and NAMESPACE: `Some(None)`
/// for NIL, `None` when neither.
fn delimiter<'a>(l: &mut Lexer<'a>) -> Option<Option<Cow<'a, [u8]>>> {
    if l.keyword(b"NIL") {
        return Some(None);
    }
    let t = l.quoted().ok()?;
    Some(Some(t.value(l.buf)))
}

/// A value that is a number and nothing else.
fn whole_number(b: &[u8]) -> Option<u32> {
    let mut l = Lexer::new(b, DEFAULT_MAX_DEPTH);
    let (n, _) = l.number().ok()?;
    (l.pos == b.len()).then_some(n)
}

/// The data of the first literal inside `span` of `buf` (a value the
/// response parser already walked): quoted strings are skipped whole, so a
/// `{` inside one is not taken for a literal.
fn literal_in(buf: &[u8], span: Span) -> Option<&[u8]> {
    let mut l = Lexer::new(buf.get(..span.end)?, DEFAULT_MAX_DEPTH);
    l.pos = span.start;
    while l.pos < span.end {
        match l.peek()? {
            b'"' => {
                l.quoted().ok()?;
            }
            b'{' | b'~' => {
                let start = l.pos;
                match l.literal() {
                    Ok(StrToken {
                        kind: StrKind::Literal { data, .. },
                        ..
                    }) => return Some(data.of(buf)),
                    _ => l.pos = start + 1,
                }
            }
            _ => l.pos += 1,
        }
    }
    None
}

/// The members of a UID set in the order written (RFC 4315 pairs the
/// sets of COPYUID by position), at most [`MAX_EXPANDED`].
fn uids_in_order(set: &SequenceSet) -> Vec<u32> {
    let mut out = Vec::new();
    for item in set.items() {
        let (lo, hi) = item.bounds(u32::MAX);
        if (hi - lo) as usize >= MAX_EXPANDED - out.len().min(MAX_EXPANDED) {
            break;
        }
        out.extend(lo..=hi);
    }
    out
}

impl Code {
    /// `[APPENDUID uidvalidity uids]` (RFC 4315): the destination's
    /// UIDVALIDITY and the new UIDs, in the order written.
    pub fn appenduid(&self) -> Option<(u32, Vec<u32>)> {
        match self {
            Code::AppendUid {
                uidvalidity, uids, ..
            } => Some((*uidvalidity, uids_in_order(uids))),
            _ => None,
        }
    }

    /// `[COPYUID uidvalidity source dest]` (RFC 4315): the destination's
    /// UIDVALIDITY and the source and destination UIDs, paired by position;
    /// `None` when the two sets do not have as many UIDs.
    pub fn copyuid(&self) -> Option<(u32, Vec<u32>, Vec<u32>)> {
        match self {
            Code::CopyUid {
                uidvalidity,
                source,
                dest,
                ..
            } => {
                let (s, d) = (uids_in_order(source), uids_in_order(dest));
                (s.len() == d.len()).then_some((*uidvalidity, s, d))
            }
            _ => None,
        }
    }
}

/// A status line, owned: a tagged completion (`a1 OK [APPENDUID 7 3]
/// APPEND completed`) or an untagged one (a greeting, `* BYE`), with its
/// status, code and text. The code's spans point into [`Reply::line`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    line: Vec<u8>,
    tag: Option<Span>,
    status: Status,
    code: Option<Code>,
    code_name: Option<Span>,
    resp_text: Span,
    text: Span,
}

impl Reply {
    /// Parses one status line, CRLF included (as cut by
    /// [`crate::frame::ResponseFramer`]; a line without it is taken too).
    /// Tagged lines are OK, NO or BAD; untagged ones may also be PREAUTH
    /// or BYE. A code that does not parse is left in the text.
    pub fn parse(line: &[u8]) -> Result<Reply, ParseError> {
        let end = line.strip_suffix(b"\r\n").map_or(line.len(), <[u8]>::len);
        let mut l = Lexer::new(line, DEFAULT_MAX_DEPTH);
        let tag = if l.eat(b'*') {
            None
        } else {
            Some(l.take_while1(is_tag_char, "tag")?)
        };
        l.sp()?;
        let status = status_word(&mut l).ok_or(l.err("OK, NO or BAD"))?;
        if tag.is_some() && matches!(status, Status::PreAuth | Status::Bye) {
            return Err(l.err("OK, NO or BAD"));
        }
        if l.pos < end {
            l.sp()?;
        }
        let resp_text = Span {
            start: l.pos.min(end),
            end,
        };
        let (mut code_found, mut code_name) = (None, None);
        if l.at(b'[') {
            let mut probe = l.clone();
            if let Ok(c) = code(&mut probe) {
                if probe.pos <= end {
                    let start = l.pos + 1;
                    let n = line[start..]
                        .iter()
                        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                        .count();
                    code_name = Some(Span {
                        start,
                        end: start + n,
                    });
                    code_found = Some(c);
                    l = probe;
                    // RFC 9051 wants SP text; servers sometimes end at "]".
                    l.eat(b' ');
                }
            }
        }
        Ok(Reply {
            line: line.to_vec(),
            tag,
            status,
            code: code_found,
            code_name,
            resp_text,
            text: Span {
                start: l.pos.min(end),
                end,
            },
        })
    }

    /// The whole line as received.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// The tag; `None` for an untagged line.
    pub fn tag(&self) -> Option<&[u8]> {
        self.tag.map(|t| t.of(&self.line))
    }

    /// OK, NO, BAD (PREAUTH or BYE untagged).
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether the status is OK.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// The response code, if one parsed; its spans point into
    /// [`Reply::line`].
    pub fn code(&self) -> Option<&Code> {
        self.code.as_ref()
    }

    /// Whether the code is named `name` (any case), e.g. `NONEXISTENT`,
    /// `ALREADYEXISTS` (RFC 5530).
    pub fn has_code(&self, name: &[u8]) -> bool {
        self.code_name
            .is_some_and(|n| n.of(&self.line).eq_ignore_ascii_case(name))
    }

    /// The text after the code (all of it after the status when no code
    /// parsed), without CRLF.
    pub fn text(&self) -> &[u8] {
        self.text.of(&self.line)
    }

    /// Everything after the status word and its SP, code included, without
    /// CRLF: what a log line or an error message shows.
    pub fn resp_text(&self) -> &[u8] {
        self.resp_text.of(&self.line)
    }

    /// The APPENDUID code's UIDVALIDITY and UIDs (see [`Code::appenduid`]).
    pub fn appenduid(&self) -> Option<(u32, Vec<u32>)> {
        self.code()?.appenduid()
    }

    /// The COPYUID code's UIDVALIDITY and paired UIDs (see
    /// [`Code::copyuid`]).
    pub fn copyuid(&self) -> Option<(u32, Vec<u32>, Vec<u32>)> {
        self.code()?.copyuid()
    }
}

#[cfg(test)]
mod tests {
    //! Lines as Dovecot 2.3.19 and Cyrus 3.6.1 sent them (captured from
    //! the test harness's servers).
    use super::*;

    fn parse(b: &[u8]) -> Response<'_> {
        match Response::parse(b) {
            Ok(r) => r,
            Err(e) => panic!("{e} in {:?}", String::from_utf8_lossy(b)),
        }
    }

    #[test]
    fn exists_and_removals() {
        assert_eq!(parse(b"* 2 EXISTS\r\n").exists(), Some(2));
        assert_eq!(parse(b"* 0 exists\r\n").exists(), Some(0));
        assert_eq!(parse(b"* 2 RECENT\r\n").exists(), None);
        assert_eq!(parse(b"* OK [UIDNEXT 3] Ok\r\n").exists(), None);
        assert!(parse(b"* 2 EXPUNGE\r\n").removes_messages());
        assert!(parse(b"* VANISHED 405,407\r\n").removes_messages());
        assert!(!parse(b"* 2 EXISTS\r\n").removes_messages());
        assert!(Response::parse(b"* 2x EXISTS\r\n").is_err());
        assert!(Response::parse(b"* 99999999999 EXISTS\r\n").is_err());
    }

    #[test]
    fn fetch_number_uid_and_flags_of_either_backend() {
        // Dovecot: UID first.
        let b = b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent $Foo))\r\n";
        let r = parse(b);
        assert_eq!((r.fetch_seq(), r.fetch_uid()), (Some(1), Some(1)));
        assert_eq!(
            r.fetch_flags(),
            Some(vec![&b"\\Seen"[..], b"\\Recent", b"$Foo"])
        );
        // Cyrus: UID after FLAGS.
        let r = parse(b"* 2 FETCH (FLAGS (\\Recent) UID 2)\r\n");
        assert_eq!((r.fetch_seq(), r.fetch_uid()), (Some(2), Some(2)));
        assert_eq!(r.fetch_flags(), Some(vec![&b"\\Recent"[..]]));
        // A flag change reported unasked carries no UID.
        let r = parse(b"* 3 FETCH (FLAGS (\\Flagged))\r\n");
        assert_eq!((r.fetch_seq(), r.fetch_uid()), (Some(3), None));
        // The letters UID in a body are not a UID item.
        let r = parse(b"* 4 FETCH (BODY[] {9}\r\n(UID 77 ))\r\n");
        assert_eq!(r.fetch_uid(), None);
        assert_eq!(parse(b"* 4 EXISTS\r\n").fetch_seq(), None);
        assert!(parse(b"* 4 EXISTS\r\n").fetch_items().is_empty());
    }

    #[test]
    fn size_and_date_of_either_backend() {
        let b = b"* 1 FETCH (UID 1 RFC822.SIZE 33 INTERNALDATE \"07-Dec-2026 13:07:20 +0000\")\r\n";
        let r = parse(b);
        assert_eq!((r.fetch_uid(), r.rfc822_size()), (Some(1), Some(33)));
        assert_eq!(
            r.internal_date().as_deref(),
            Some(&b"07-Dec-2026 13:07:20 +0000"[..])
        );
        // Cyrus: another order, and a space-padded day.
        let b = b"* 2 FETCH (UID 2 INTERNALDATE \" 7-Dec-2026 13:07:21 +0000\" RFC822.SIZE 33)\r\n";
        let r = parse(b);
        assert_eq!((r.fetch_uid(), r.rfc822_size()), (Some(2), Some(33)));
        assert_eq!(
            r.internal_date().as_deref(),
            Some(&b" 7-Dec-2026 13:07:21 +0000"[..])
        );
        assert_eq!(r.fetch_value(b"rfc822.size"), Some(&b"33"[..]));
        // Absent or malformed values are None.
        let r = parse(b"* 1 FETCH (UID 12 FLAGS (\\Seen))\r\n");
        assert_eq!((r.rfc822_size(), r.internal_date()), (None, None));
        let r = parse(b"* 1 FETCH (RFC822.SIZE 12x INTERNALDATE NIL)\r\n");
        assert_eq!((r.rfc822_size(), r.internal_date()), (None, None));
        let r = parse(b"* 1 FETCH (RFC822.SIZE 99999999999)\r\n");
        assert_eq!(r.rfc822_size(), None);
    }

    #[test]
    fn first_literal_is_the_body_of_either_backend() {
        let body = b"From: a@b.c\r\nSubject: x\r\n\r\nbody\r\n";
        let b = b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent $Foo) INTERNALDATE \"07-Dec-2026 13:07:20 +0000\" BODY[] {33}\r\nFrom: a@b.c\r\nSubject: x\r\n\r\nbody\r\n)\r\n";
        let r = parse(b);
        assert_eq!(r.first_literal(), Some(&body[..]));
        assert_eq!(r.fetch_flags().map(|f| f.len()), Some(3));
        assert!(r.internal_date().is_some());
        let b = b"* 1 FETCH (FLAGS (\\Recent \\Seen $Foo) UID 1 INTERNALDATE \" 7-Dec-2026 13:07:21 +0000\" BODY[] {33}\r\nFrom: a@b.c\r\nSubject: x\r\n\r\nbody\r\n)\r\n";
        let r = parse(b);
        assert_eq!(r.first_literal(), Some(&body[..]));
        assert_eq!(r.fetch_uid(), Some(1));
        let b = b"* 1 FETCH (BODY[] {33}\r\nFrom: a@b.c\r\nSubject: x\r\n\r\nbody\r\n)\r\n";
        assert_eq!(parse(b).first_literal(), Some(&body[..]));
        // Empty, binary, nested in a list, a brace in a quoted string.
        assert_eq!(
            parse(b"* 1 FETCH (BODY[] {0}\r\n)\r\n").first_literal(),
            Some(&b""[..])
        );
        assert_eq!(
            parse(b"* 1 FETCH (BINARY[] ~{2}\r\n\0\x01)\r\n").first_literal(),
            Some(&b"\0\x01"[..])
        );
        let b = b"* 1 FETCH (ENVELOPE (\"{5}\" {3}\r\nabc NIL) BODY[] {1}\r\nx)\r\n";
        assert_eq!(parse(b).first_literal(), Some(&b"abc"[..]));
        assert_eq!(
            parse(b"* 1 FETCH (UID 1 FLAGS ())\r\n").first_literal(),
            None
        );
        let b = b"* LIST (\\HasNoChildren) \".\" {5}\r\nIN\"BX\r\n";
        assert_eq!(parse(b).first_literal(), None);
    }

    #[test]
    fn uidvalidity_code_of_either_backend() {
        let r = parse(b"* OK [UIDVALIDITY 1796648841] UIDs valid\r\n");
        assert_eq!(r.uidvalidity(), Some(1796648841));
        let r = parse(b"* OK [UIDVALIDITY 1796648842] Ok\r\n");
        assert_eq!(r.uidvalidity(), Some(1796648842));
        assert_eq!(parse(b"* OK [UIDNEXT 3] Ok\r\n").uidvalidity(), None);
        assert_eq!(
            parse(b"* OK [MAILBOXID (4ufxl4v3a4qv8bnzeghshee5)] Ok\r\n").uidvalidity(),
            None
        );
        assert!(Response::parse(b"* OK [UIDVALIDITY 0] x\r\n").is_err());
        assert!(Response::parse(b"* OK [UIDVALIDITY x] x\r\n").is_err());
    }

    #[test]
    fn list_delimiter_of_either_backend() {
        let d = |b: &[u8]| parse(b).list_delimiter();
        assert_eq!(d(b"* LIST (\\Noselect) \".\" \"\"\r\n"), Some(Some(b'.')));
        assert_eq!(
            d(b"* LIST (\\HasNoChildren) \".\" INBOX.Sub\r\n"),
            Some(Some(b'.'))
        );
        assert_eq!(d(b"* LIST (\\Noselect) \"/\" \"\"\r\n"), Some(Some(b'/')));
        assert_eq!(d(b"* LIST () \"\\\\\" x\r\n"), Some(Some(b'\\')));
        assert_eq!(d(b"* list () NIL \"\"\r\n"), Some(None));
        assert_eq!(d(b"* LIST () \"ab\" x\r\n"), None);
        assert_eq!(d(b"* LSUB () \".\" x\r\n"), None);
        assert_eq!(d(b"* LIST x \".\" x\r\n"), None);
        assert_eq!(d(b"* 1 EXISTS\r\n"), None);
    }

    #[test]
    fn personal_namespace_of_either_backend() {
        let ns = |b: &[u8]| {
            parse(b)
                .personal_namespace()
                .map(|n| (n.prefix.into_owned(), n.delimiter.map(Cow::into_owned)))
        };
        let dot = Some(b".".to_vec());
        assert_eq!(
            ns(b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n"),
            Some((Vec::new(), dot.clone()))
        );
        assert_eq!(
            ns(b"* NAMESPACE ((\"\" \".\")) ((\"Other Users.\" \".\")) ((\"Shared Folders.\" \".\"))\r\n"),
            Some((Vec::new(), dot.clone()))
        );
        assert_eq!(
            ns(b"* NAMESPACE ((\"INBOX.\" \".\")) NIL NIL\r\n"),
            Some((b"INBOX.".to_vec(), dot))
        );
        assert_eq!(
            ns(b"* NAMESPACE ((\"\" NIL)) NIL NIL\r\n"),
            Some((Vec::new(), None))
        );
        assert_eq!(ns(b"* NAMESPACE NIL NIL NIL\r\n"), None);
        assert_eq!(ns(b"* LIST () \".\" x\r\n"), None);
    }

    #[test]
    fn tagged_replies_of_either_backend() {
        let r = Reply::parse(
            b"t3 OK [APPENDUID 1796648841 1] Append completed (0.003 + 0.001 + 0.001 secs).\r\n",
        )
        .unwrap();
        assert_eq!(r.tag(), Some(&b"t3"[..]));
        assert!(r.is_ok());
        assert!(r.has_code(b"appenduid"));
        assert_eq!(r.appenduid(), Some((1796648841, vec![1])));
        assert_eq!(r.copyuid(), None);
        assert_eq!(r.text(), b"Append completed (0.003 + 0.001 + 0.001 secs).");
        assert_eq!(
            r.resp_text(),
            b"[APPENDUID 1796648841 1] Append completed (0.003 + 0.001 + 0.001 secs)."
        );
        let r = Reply::parse(b"t9 OK [COPYUID 1796648842 1:2 1:2] Completed\r\n").unwrap();
        assert_eq!(r.copyuid(), Some((1796648842, vec![1, 2], vec![1, 2])));
        let r = Reply::parse(b"t1 OK [COPYUID 7 304,319:320 3956:3958] Done\r\n").unwrap();
        assert_eq!(
            r.copyuid(),
            Some((7, vec![304, 319, 320], vec![3956, 3957, 3958]))
        );
        // Uneven sets pair nothing.
        let r = Reply::parse(b"t1 OK [COPYUID 7 1:3 5] Done\r\n").unwrap();
        assert_eq!(r.copyuid(), None);
        // Dovecot says NONEXISTENT and ALREADYEXISTS; Cyrus gives no code.
        let r = Reply::parse(
            b"t4 NO [NONEXISTENT] Mailbox doesn't exist: nosuch (0.001 + 0.000 secs).\r\n",
        )
        .unwrap();
        assert_eq!(r.status(), Status::No);
        assert!(r.has_code(b"NONEXISTENT") && !r.has_code(b"ALREADYEXISTS"));
        let r = Reply::parse(b"t4 NO Mailbox already exists\r\n").unwrap();
        assert!(!r.has_code(b"ALREADYEXISTS") && r.code().is_none());
        assert_eq!(r.text(), b"Mailbox already exists");
        let r =
            Reply::parse(b"t2 OK [MAILBOXID (q9rhp2v48mwqe2irn9c7beeb)] Completed\r\n").unwrap();
        assert!(r.has_code(b"MAILBOXID"));
        assert_eq!(r.text(), b"Completed");
        let r = Reply::parse(b"tandem7 BAD Unrecognized command\r\n").unwrap();
        assert_eq!(r.status(), Status::Bad);
        assert_eq!(r.tag(), Some(&b"tandem7"[..]));
        let r = Reply::parse(b"t5 OK [READ-ONLY] Completed\r\n").unwrap();
        assert_eq!(r.code(), Some(&Code::ReadOnly));
        // Bare status, lower case, no CRLF.
        let r = Reply::parse(b"a ok\r\n").unwrap();
        assert!(r.is_ok() && r.text().is_empty() && r.resp_text().is_empty());
        assert!(Reply::parse(b"a NO").is_ok());
    }

    #[test]
    fn greetings_are_untagged_status_lines() {
        let r = Reply::parse(b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN] Dovecot (Debian) ready.\r\n").unwrap();
        assert_eq!((r.tag(), r.status()), (None, Status::Ok));
        assert!(matches!(r.code(), Some(Code::Capability(c)) if c.len() == 9));
        let r = Reply::parse(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE AUTH=PLAIN AUTH=LOGIN SASL-IR] tandem-cyrus Cyrus IMAP 3.6.1-Debian-3.6.1-4+deb12u5 server ready\r\n").unwrap();
        assert!(r.has_code(b"CAPABILITY"));
        let r = Reply::parse(b"* PREAUTH ready\r\n").unwrap();
        assert_eq!(r.status(), Status::PreAuth);
        let r = Reply::parse(b"* BYE Too many connections\r\n").unwrap();
        assert_eq!(r.status(), Status::Bye);
    }

    #[test]
    fn a_malformed_code_is_text_and_the_status_stays() {
        for b in [
            &b"t1 OK [APPENDUID 0 1] done\r\n"[..],
            b"t1 OK [APPENDUID 1 1:*] done\r\n",
            b"t1 OK [COPYUID 1 2] done\r\n",
            b"t1 OK [UIDNEXT x] done\r\n",
            b"t1 OK [ALERT unclosed\r\n",
            b"t1 OK [] done\r\n",
        ] {
            let r = Reply::parse(b).unwrap();
            assert!(r.is_ok(), "{b:?}");
            assert_eq!(r.code(), None, "{b:?}");
            assert_eq!(r.appenduid(), None);
            assert_eq!(r.text(), r.resp_text());
            assert!(r.text().starts_with(b"["));
        }
    }

    #[test]
    fn lines_without_a_tag_or_status_are_errors() {
        for b in [
            &b""[..],
            b"\r\n",
            b"t1\r\n",
            b"t1 \r\n",
            b"t1 OKAY done\r\n",
            b"t1 OK(x)\r\n",
            b"t1 PREAUTH x\r\n",
            b"t1 BYE x\r\n",
            b"+ go ahead\r\n",
            b"* 1 EXISTS\r\n",
            b"t{1} OK x\r\n",
        ] {
            assert!(Reply::parse(b).is_err(), "{b:?}");
        }
    }

    #[test]
    fn the_tag_of_a_line() {
        assert_eq!(
            tag(b"tandem-id OK ID completed.\r\n"),
            Some(&b"tandem-id"[..])
        );
        assert_eq!(tag(b"t1 BAD x\r\n"), Some(&b"t1"[..]));
        assert_eq!(tag(b"* OK x\r\n"), None);
        assert_eq!(tag(b"+ x\r\n"), None);
        assert_eq!(tag(b"t1\r\n"), None);
        assert_eq!(tag(b""), None);
    }

    #[test]
    fn uid_sets_are_expanded_in_order_and_bounded() {
        let set = SequenceSet::parse(b"5,1:3,9").unwrap();
        assert_eq!(uids_in_order(&set), vec![5, 1, 2, 3, 9]);
        let set = SequenceSet::parse(b"3:1").unwrap();
        assert_eq!(uids_in_order(&set), vec![1, 2, 3]);
        let set = SequenceSet::parse(b"1:4294967295").unwrap();
        assert!(uids_in_order(&set).is_empty());
    }
}

#[cfg(test)]
mod properties {
    //! No input makes a reader panic.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn readers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = tag(&b);
            if let Ok(r) = Reply::parse(&b) {
                let _ = (r.appenduid(), r.copyuid(), r.has_code(b"X"), r.text(), r.resp_text());
            }
            for r in [Response::parse(&b), Response::parse_fetch_head(&b), Response::parse_skeleton(&b)].into_iter().flatten() {
                let _ = (r.exists(), r.fetch_seq(), r.fetch_uid(), r.fetch_flags(), r.rfc822_size());
                let _ = (r.internal_date(), r.first_literal(), r.uidvalidity(), r.list_delimiter(), r.personal_namespace());
            }
        }

        #[test]
        fn a_tagged_line_keeps_its_status_whatever_follows(
            tag in "[A-Za-z0-9.-]{1,8}",
            status in prop_oneof![Just("OK"), Just("NO"), Just("BAD")],
            rest in proptest::collection::vec(any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'), 0..60),
        ) {
            let mut line = format!("{tag} {status} ").into_bytes();
            line.extend_from_slice(&rest);
            line.extend_from_slice(b"\r\n");
            let r = Reply::parse(&line).unwrap();
            prop_assert_eq!(r.tag(), Some(tag.as_bytes()));
            let want = match status { "OK" => Status::Ok, "NO" => Status::No, _ => Status::Bad };
            prop_assert_eq!(r.status(), want);
            prop_assert_eq!(r.resp_text(), &rest[..]);
        }
    }
}
