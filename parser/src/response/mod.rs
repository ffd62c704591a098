//! Server responses: parsed enough to find every UID-carrying part, with
//! its span, so [`crate::rewrite`] can translate it and leave every other
//! byte alone.
//!
//! Invariants, one line each:
//! - Every part that carries a UID, a UID set, a UIDVALIDITY or a UIDNEXT
//!   in the responses tandem rewrites (FETCH UID, SEARCH, ESEARCH, VANISHED,
//!   STATUS, and the codes UIDNEXT, UIDVALIDITY, APPENDUID, COPYUID) is
//!   parsed strictly: a malformed one is an error, never passed as is.
//! - Responses tandem does not look into are [`ResponseBody::Other`]; their
//!   extent was fixed by [`crate::frame::ResponseFramer`], literals included.

mod code;
mod fetch;
mod triage;
mod untagged;

pub use triage::{may_carry_uid, shape};

pub(crate) use code::{code, status_word};

use crate::lexer::{is_tag_char, Lexer, ParseError, Span, StrToken, DEFAULT_MAX_DEPTH};
use crate::seqset::SequenceSet;
use code::resp_text;
use fetch::fetch_items_inner;
use untagged::untagged;

/// The status of a status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// OK.
    Ok,
    /// NO.
    No,
    /// BAD.
    Bad,
    /// PREAUTH (greeting).
    PreAuth,
    /// BYE.
    Bye,
}

/// A response code (`[...]` at the start of a status text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// `UIDNEXT n`.
    UidNext {
        /// The value.
        value: u32,
        /// Where the number is.
        span: Span,
    },
    /// `UIDVALIDITY n`.
    UidValidity {
        /// The value.
        value: u32,
        /// Where the number is.
        span: Span,
    },
    /// `APPENDUID uidvalidity uid-set` (RFC 4315).
    AppendUid {
        /// UIDVALIDITY of the destination mailbox.
        uidvalidity: u32,
        /// Where it is.
        uidvalidity_span: Span,
        /// UIDs of the appended messages.
        uids: SequenceSet,
        /// Where they are.
        uids_span: Span,
    },
    /// `COPYUID uidvalidity source-set dest-set` (RFC 4315); the n-th
    /// source UID was copied to the n-th destination UID.
    CopyUid {
        /// UIDVALIDITY of the destination mailbox.
        uidvalidity: u32,
        /// Where it is.
        uidvalidity_span: Span,
        /// UIDs in the source (selected) mailbox.
        source: SequenceSet,
        /// Where they are.
        source_span: Span,
        /// UIDs in the destination mailbox.
        dest: SequenceSet,
        /// Where they are.
        dest_span: Span,
    },
    /// `UIDNOTSTICKY` (RFC 4315).
    UidNotSticky,
    /// `TRYCREATE`.
    TryCreate,
    /// `READ-ONLY`.
    ReadOnly,
    /// `READ-WRITE`.
    ReadWrite,
    /// `PERMANENTFLAGS (...)`: spans of the flags, `\*` included.
    PermanentFlags(Vec<Span>),
    /// `CAPABILITY ...`: spans of the capability names.
    Capability(Vec<Span>),
    /// Any other code: its name and raw arguments.
    Other {
        /// The code's name (`ALERT`, `HIGHESTMODSEQ`, ...).
        name: Span,
        /// Everything between the name's trailing SP and `]`.
        args: Option<Span>,
    },
}

/// One item of a FETCH response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    /// `UID n`.
    Uid {
        /// The UID.
        value: u32,
        /// Where the number is.
        span: Span,
    },
    /// `FLAGS (...)`: spans of the flags.
    Flags(Vec<Span>),
    /// `MODSEQ (n)` (RFC 7162).
    ModSeq {
        /// The value.
        value: u64,
        /// Where the number is.
        span: Span,
    },
    /// Any other item (BODY[...], ENVELOPE, ...): name and raw value.
    Other {
        /// The item name, section and partial included.
        name: Span,
        /// The value, literal included.
        value: Span,
    },
}

/// One item of an ESEARCH response (RFC 4731).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EsearchItem {
    /// `MIN n`.
    Min {
        /// The value.
        value: u32,
        /// Where it is.
        span: Span,
    },
    /// `MAX n`.
    Max {
        /// The value.
        value: u32,
        /// Where it is.
        span: Span,
    },
    /// `COUNT n`.
    Count {
        /// The value.
        value: u32,
        /// Where it is.
        span: Span,
    },
    /// `ALL set`.
    All {
        /// The set.
        set: SequenceSet,
        /// Where it is.
        span: Span,
    },
    /// Anything else (MODSEQ, PARTIAL, ...): name and raw value.
    Other {
        /// The item name.
        name: Span,
        /// The raw value.
        value: Span,
    },
}

/// One item of a STATUS response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusItem {
    /// The item name (`MESSAGES`, `UIDNEXT`, ...).
    pub name: Span,
    /// The value.
    pub value: u64,
    /// Where the value is.
    pub span: Span,
}

/// What a response says. Spans point into the buffer given to
/// [`Response::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    /// A status response, tagged (`tag: Some`) or untagged.
    Status {
        /// The tag; `None` for `*`.
        tag: Option<Span>,
        /// OK, NO, BAD, PREAUTH or BYE.
        status: Status,
        /// The response code, if any.
        code: Option<Code>,
        /// The human-readable text after the code.
        text: Span,
    },
    /// A continuation request (`+ ...`).
    Continue {
        /// The response code, if any.
        code: Option<Code>,
        /// The text or base64 challenge.
        text: Span,
    },
    /// `* n EXISTS`.
    Exists(u32),
    /// `* n RECENT`.
    Recent(u32),
    /// `* n EXPUNGE` (a sequence number).
    Expunge(u32),
    /// `* n FETCH (...)`.
    Fetch {
        /// The message sequence number.
        seq: u32,
        /// The items, in order.
        items: Vec<FetchItem>,
    },
    /// `* SEARCH n...` (numbers are UIDs after UID SEARCH only).
    Search {
        /// The numbers and their spans.
        numbers: Vec<(u32, Span)>,
        /// `(MODSEQ n)` (RFC 7162), raw.
        modseq: Option<Span>,
    },
    /// `* ESEARCH ...` (RFC 4731).
    Esearch {
        /// The `(TAG "...")` correlator's tag string.
        tag: Option<StrToken>,
        /// Whether the results are UIDs.
        uid: bool,
        /// The return data.
        items: Vec<EsearchItem>,
    },
    /// `* STATUS mailbox (...)`.
    MailboxStatus {
        /// The mailbox.
        mailbox: StrToken,
        /// The items whose value is a number (UIDNEXT and UIDVALIDITY
        /// must be one); the others (`APPENDLIMIT NIL`, `MAILBOXID (...)`)
        /// are left out.
        items: Vec<StatusItem>,
    },
    /// `* CAPABILITY ...`: spans of the names.
    Capability(Vec<Span>),
    /// `* ENABLED ...` (RFC 5161).
    Enabled(Vec<Span>),
    /// `* FLAGS (...)`.
    Flags(Vec<Span>),
    /// `* VANISHED [(EARLIER)] uids` (RFC 7162).
    Vanished {
        /// `(EARLIER)`.
        earlier: bool,
        /// The UIDs.
        uids: SequenceSet,
        /// Where they are.
        span: Span,
    },
    /// Anything else (LIST, NAMESPACE, ID, ...), forwarded as is.
    Other {
        /// The response name.
        name: Span,
    },
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// The whole response, as given to [`Response::parse`].
    pub buf: &'a [u8],
    /// What it says.
    pub body: ResponseBody,
}

impl<'a> Response<'a> {
    /// Parses one complete response (as cut by
    /// [`crate::frame::ResponseFramer`], CRLF included).
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_with_depth(buf, DEFAULT_MAX_DEPTH)
    }

    /// Parses a response whose literal data has been left out: `buf` is
    /// the concatenation of the [`crate::frame::Segment::Line`]s of one
    /// response, without the [`crate::frame::Segment::LiteralData`]
    /// between them. This is how a FETCH with a large body is rewritten
    /// without buffering the body: every span this returns lies in a line,
    /// and a literal's value reads as empty (its `data` span is empty).
    pub fn parse_skeleton(buf: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_inner(buf, DEFAULT_MAX_DEPTH, true)
    }

    /// Parses the first line of a FETCH response that announces a literal
    /// (the first [`crate::frame::Segment::Line`] of a streamed response,
    /// `* n FETCH (... BODY[] {n}\r\n`): the items before the literal, and
    /// the literal's item with an empty value. Lets the proxy rewrite the
    /// UID of a FETCH whose body it streams, when the UID comes before the
    /// body (as Dovecot sends it). A line that is a complete response
    /// parses as with [`Response::parse`]. Returns `Fetch` or an error.
    pub fn parse_fetch_head(line: &'a [u8]) -> Result<Self, ParseError> {
        let mut l = Lexer::new(line, DEFAULT_MAX_DEPTH);
        l.elided_literals = true;
        l.expect(b'*', "*")?;
        l.sp()?;
        let (seq, _) = l.number()?;
        l.sp()?;
        if !l.keyword(b"FETCH") {
            return Err(l.err("FETCH"));
        }
        l.sp()?;
        let (items, complete) = fetch_items_inner(&mut l, true)?;
        if complete {
            l.end()?;
        }
        Ok(Response {
            buf: line,
            body: ResponseBody::Fetch { seq, items },
        })
    }

    /// Parses one complete response; lists may nest `max_depth` deep.
    pub fn parse_with_depth(buf: &'a [u8], max_depth: usize) -> Result<Self, ParseError> {
        Self::parse_inner(buf, max_depth, false)
    }

    fn parse_inner(buf: &'a [u8], max_depth: usize, elided: bool) -> Result<Self, ParseError> {
        let mut l = Lexer::new(buf, max_depth);
        l.elided_literals = elided;
        let body = if l.eat(b'+') {
            if l.at_end() {
                ResponseBody::Continue {
                    code: None,
                    text: Span {
                        start: l.pos,
                        end: l.pos,
                    },
                }
            } else {
                l.sp()?;
                let (code, text) = resp_text(&mut l)?;
                ResponseBody::Continue { code, text }
            }
        } else if l.eat(b'*') {
            l.sp()?;
            untagged(&mut l)?
        } else {
            let tag = l.take_while1(is_tag_char, "tag")?;
            l.sp()?;
            let status = status_word(&mut l).ok_or(l.err("OK, NO or BAD"))?;
            if matches!(status, Status::PreAuth | Status::Bye) {
                return Err(l.err("OK, NO or BAD"));
            }
            let (code, text) = if l.eat(b' ') {
                resp_text(&mut l)?
            } else {
                (
                    None,
                    Span {
                        start: l.pos,
                        end: l.pos,
                    },
                )
            };
            ResponseBody::Status {
                tag: Some(tag),
                status,
                code,
                text,
            }
        };
        l.end()?;
        Ok(Response { buf, body })
    }

    /// The tag of a tagged status response.
    pub fn tag(&self) -> Option<&'a [u8]> {
        match &self.body {
            ResponseBody::Status { tag: Some(t), .. } => Some(t.of(self.buf)),
            _ => None,
        }
    }

    /// The response code of a status response or continuation request.
    pub fn code(&self) -> Option<&Code> {
        match &self.body {
            ResponseBody::Status { code, .. } | ResponseBody::Continue { code, .. } => {
                code.as_ref()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn parse(b: &[u8]) -> Response<'_> {
        match Response::parse(b) {
            Ok(r) => r,
            Err(e) => panic!("{e} in {:?}", String::from_utf8_lossy(b)),
        }
    }

    #[test]
    fn continuation_requests() {
        let b = b"+ Ready for additional command text\r\n";
        assert!(matches!(
            parse(b).body,
            ResponseBody::Continue { code: None, .. }
        ));
        assert!(matches!(
            parse(b"+\r\n").body,
            ResponseBody::Continue { .. }
        ));
        assert!(matches!(
            parse(b"+ \r\n").body,
            ResponseBody::Continue { .. }
        ));
        let b = b"+ [ALERT] idling\r\n";
        assert!(matches!(
            parse(b).body,
            ResponseBody::Continue { code: Some(_), .. }
        ));
    }

    #[test]
    fn other_responses_pass_whole() {
        let b = b"* LIST (\\HasNoChildren) \".\" {5}\r\nIN\"BX\r\n";
        assert!(matches!(parse(b).body, ResponseBody::Other { .. }));
        assert!(matches!(
            parse(b"* 5 XFOO bar\r\n").body,
            ResponseBody::Other { .. }
        ));
        assert!(matches!(
            parse(b"* BYE Logging out\r\n").body,
            ResponseBody::Status {
                status: Status::Bye,
                ..
            }
        ));
        assert!(Response::parse(b"a BYE x\r\n").is_err());
        assert!(Response::parse(b"* OK x").is_err());
        assert!(Response::parse(b"* 1 FETCH (UID 0)\r\n").is_err());
    }
}

#[cfg(test)]
#[cfg(test)]
mod roundtrip {
    //! parse(encode(x)) == x: responses built from generated parts parse
    //! back into the same parts.
    use super::*;
    use crate::seqset::{SeqItem, SeqNum};
    use proptest::prelude::*;

    fn uid_set() -> impl Strategy<Value = SequenceSet> {
        let num = (1u32..=u32::MAX).prop_map(SeqNum::Value);
        let item = prop_oneof![
            num.clone().prop_map(SeqItem::One),
            (num.clone(), num).prop_map(|(a, b)| SeqItem::Range(a, b)),
        ];
        proptest::collection::vec(item, 1..5).prop_map(|v| SequenceSet::from_items(v).unwrap())
    }

    #[derive(Debug, Clone)]
    enum Item {
        Uid(u32),
        Flags(Vec<String>),
        Body(Vec<u8>),
        Size(u32),
    }

    fn item() -> impl Strategy<Value = Item> {
        prop_oneof![
            (1u32..=u32::MAX).prop_map(Item::Uid),
            proptest::collection::vec("\\\\?[A-Za-z$][A-Za-z0-9]{0,6}", 0..4).prop_map(Item::Flags),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Item::Body),
            any::<u32>().prop_map(Item::Size),
        ]
    }

    proptest! {
        #[test]
        fn fetch_parses_back(seq in 1u32..=u32::MAX, items in proptest::collection::vec(item(), 0..6)) {
            let mut b = format!("* {seq} FETCH (").into_bytes();
            for (k, it) in items.iter().enumerate() {
                if k > 0 {
                    b.push(b' ');
                }
                match it {
                    Item::Uid(u) => b.extend_from_slice(format!("UID {u}").as_bytes()),
                    Item::Flags(f) => b.extend_from_slice(format!("FLAGS ({})", f.join(" ")).as_bytes()),
                    Item::Size(s) => b.extend_from_slice(format!("RFC822.SIZE {s}").as_bytes()),
                    Item::Body(d) => {
                        b.extend_from_slice(format!("BODY[] {{{}}}\r\n", d.len()).as_bytes());
                        b.extend_from_slice(d);
                    }
                }
            }
            b.extend_from_slice(b")\r\n");
            let r = Response::parse(&b).unwrap();
            let ResponseBody::Fetch { seq: s, items: got } = &r.body else {
                return Err(TestCaseError::fail("not a FETCH"));
            };
            prop_assert_eq!(*s, seq);
            prop_assert_eq!(got.len(), items.len());
            for (g, want) in got.iter().zip(&items) {
                match (g, want) {
                    (FetchItem::Uid { value, .. }, Item::Uid(u)) => prop_assert_eq!(value, u),
                    (FetchItem::Flags(f), Item::Flags(w)) => {
                        let f: Vec<&[u8]> = f.iter().map(|s| s.of(&b)).collect();
                        let w: Vec<&[u8]> = w.iter().map(|s| s.as_bytes()).collect();
                        prop_assert_eq!(f, w);
                    }
                    (FetchItem::Other { name, value }, Item::Size(s)) => {
                        prop_assert_eq!(name.of(&b), b"RFC822.SIZE");
                        let want = s.to_string();
                        prop_assert_eq!(value.of(&b), want.as_bytes());
                    }
                    (FetchItem::Other { name, value }, Item::Body(d)) => {
                        prop_assert_eq!(name.of(&b), b"BODY[]");
                        prop_assert!(value.of(&b).ends_with(d));
                    }
                    _ => return Err(TestCaseError::fail(format!("{g:?} for {want:?}"))),
                }
            }
        }

        #[test]
        fn uid_codes_parse_back(tag in "[A-Za-z0-9]{1,6}", v in 1u32..=u32::MAX, a in uid_set(), b in uid_set(), which in 0u8..4) {
            let (a_s, b_s) = (String::from_utf8(a.to_bytes()).unwrap(), String::from_utf8(b.to_bytes()).unwrap());
            let line = match which {
                0 => format!("{tag} OK [APPENDUID {v} {a_s}] APPEND completed\r\n"),
                1 => format!("{tag} OK [COPYUID {v} {a_s} {b_s}] Done\r\n"),
                2 => format!("* OK [UIDNEXT {v}] Predicted next UID\r\n"),
                _ => format!("* VANISHED (EARLIER) {a_s}\r\n"),
            };
            let r = Response::parse(line.as_bytes()).unwrap();
            match (&r.body, which) {
                (ResponseBody::Status { code: Some(Code::AppendUid { uidvalidity, uids, .. }), .. }, 0) => {
                    prop_assert_eq!(*uidvalidity, v);
                    prop_assert_eq!(uids, &a);
                    prop_assert_eq!(r.tag(), Some(tag.as_bytes()));
                }
                (ResponseBody::Status { code: Some(Code::CopyUid { uidvalidity, source, dest, .. }), .. }, 1) => {
                    prop_assert_eq!(*uidvalidity, v);
                    prop_assert_eq!(source, &a);
                    prop_assert_eq!(dest, &b);
                }
                (ResponseBody::Status { code: Some(Code::UidNext { value, .. }), tag: None, .. }, 2) => prop_assert_eq!(*value, v),
                (ResponseBody::Vanished { uids, earlier: true, .. }, 3) => prop_assert_eq!(uids, &a),
                _ => return Err(TestCaseError::fail(format!("{:?}", r.body))),
            }
        }
    }
}
