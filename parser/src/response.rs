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

use crate::lexer::{is_tag_char, Lexer, ParseError, Span, StrToken, Upper, DEFAULT_MAX_DEPTH};
use crate::seqset::SequenceSet;

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
        /// The items.
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

pub(crate) fn status_word(l: &mut Lexer<'_>) -> Option<Status> {
    for (w, s) in [
        (&b"OK"[..], Status::Ok),
        (b"NO", Status::No),
        (b"BAD", Status::Bad),
        (b"PREAUTH", Status::PreAuth),
        (b"BYE", Status::Bye),
    ] {
        if l.keyword(w) {
            return Some(s);
        }
    }
    None
}

/// A `uid-set` (RFC 4315): a sequence set without `*`.
fn uid_set(l: &mut Lexer<'_>) -> Result<(SequenceSet, Span), ParseError> {
    let start = l.pos;
    let (set, span) = l.seqset()?;
    if set.has_star() {
        return Err(ParseError::Expected {
            expected: "uid-set without *",
            offset: start,
        });
    }
    Ok((set, span))
}

fn nz(l: &mut Lexer<'_>) -> Result<(u32, Span), ParseError> {
    l.nz_number()
}

/// `[` code `]`, the cursor on `[`.
pub(crate) fn code(l: &mut Lexer<'_>) -> Result<Code, ParseError> {
    l.expect(b'[', "[")?;
    let name = l.take_while1(
        |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.',
        "code name",
    )?;
    let upper = Upper::of(name.of(l.buf));
    let code = match &upper[..] {
        b"UIDNEXT" => {
            l.sp()?;
            let (value, span) = nz(l)?;
            Code::UidNext { value, span }
        }
        b"UIDVALIDITY" => {
            l.sp()?;
            let (value, span) = nz(l)?;
            Code::UidValidity { value, span }
        }
        b"APPENDUID" => {
            l.sp()?;
            let (uidvalidity, uidvalidity_span) = nz(l)?;
            l.sp()?;
            let (uids, uids_span) = uid_set(l)?;
            Code::AppendUid {
                uidvalidity,
                uidvalidity_span,
                uids,
                uids_span,
            }
        }
        b"COPYUID" => {
            l.sp()?;
            let (uidvalidity, uidvalidity_span) = nz(l)?;
            l.sp()?;
            let (source, source_span) = uid_set(l)?;
            l.sp()?;
            let (dest, dest_span) = uid_set(l)?;
            Code::CopyUid {
                uidvalidity,
                uidvalidity_span,
                source,
                source_span,
                dest,
                dest_span,
            }
        }
        b"UIDNOTSTICKY" => Code::UidNotSticky,
        b"TRYCREATE" => Code::TryCreate,
        b"READ-ONLY" => Code::ReadOnly,
        b"READ-WRITE" => Code::ReadWrite,
        b"PERMANENTFLAGS" => {
            l.sp()?;
            Code::PermanentFlags(l.atom_list()?.0)
        }
        b"CAPABILITY" => {
            let mut v = Vec::new();
            while l.eat(b' ') {
                v.push(l.atom()?);
            }
            Code::Capability(v)
        }
        _ => {
            let args = if l.eat(b' ') {
                let start = l.pos;
                let n = l.buf[start..]
                    .iter()
                    .take_while(|&&b| b != b']' && b != b'\r' && b != b'\n')
                    .count();
                l.pos += n;
                Some(Span { start, end: l.pos })
            } else {
                None
            };
            Code::Other { name, args }
        }
    };
    l.expect(b']', "]")?;
    Ok(code)
}

/// `resp-text`: optional code, then text to the CRLF.
fn resp_text(l: &mut Lexer<'_>) -> Result<(Option<Code>, Span), ParseError> {
    let code = if l.at(b'[') {
        let c = code(l)?;
        // RFC 9051 wants SP text; servers sometimes end right after "]".
        l.eat(b' ');
        Some(c)
    } else {
        None
    };
    let text = l.text();
    Ok((code, text))
}

fn atoms_to_end(l: &mut Lexer<'_>) -> Result<Vec<Span>, ParseError> {
    let mut v = Vec::new();
    while l.eat(b' ') {
        v.push(l.atom()?);
    }
    Ok(v)
}

fn fetch_items(l: &mut Lexer<'_>) -> Result<Vec<FetchItem>, ParseError> {
    fetch_items_inner(l, false).map(|(items, _)| items)
}

/// The items of a FETCH. With `head`, the buffer may end anywhere after a
/// literal announcement: the items complete so far are returned with
/// `false` (not complete).
fn fetch_items_inner(l: &mut Lexer<'_>, head: bool) -> Result<(Vec<FetchItem>, bool), ParseError> {
    l.expect(b'(', "(")?;
    let mut items = Vec::new();
    if l.eat(b')') {
        return Ok((items, true));
    }
    loop {
        let item = match fetch_item(l) {
            Ok(item) => item,
            Err(e) if head && e.offset() >= l.buf.len() => return Ok((items, false)),
            Err(e) => return Err(e),
        };
        items.push(item);
        if head && l.pos == l.buf.len() {
            return Ok((items, false));
        }
        if l.eat(b')') {
            return Ok((items, true));
        }
        l.sp()?;
    }
}

fn fetch_item(l: &mut Lexer<'_>) -> Result<FetchItem, ParseError> {
    let name = l.value()?;
    let upper = Upper::of(name.of(l.buf));
    l.sp()?;
    Ok(match &upper[..] {
        b"UID" => {
            let (value, span) = nz(l)?;
            FetchItem::Uid { value, span }
        }
        b"FLAGS" => FetchItem::Flags(l.atom_list()?.0),
        b"MODSEQ" => {
            l.expect(b'(', "(")?;
            let (value, span) = l.number64()?;
            l.expect(b')', ")")?;
            FetchItem::ModSeq { value, span }
        }
        _ => FetchItem::Other {
            name,
            value: l.value()?,
        },
    })
}

fn esearch(l: &mut Lexer<'_>) -> Result<ResponseBody, ParseError> {
    let mut tag = None;
    let mut uid = false;
    let mut items = Vec::new();
    if l.eat(b' ') {
        if l.at(b'(') {
            l.pos += 1;
            if !l.keyword(b"TAG") {
                return Err(l.err("TAG"));
            }
            l.sp()?;
            tag = Some(l.string()?);
            l.expect(b')', ")")?;
            if !l.eat(b' ') {
                return Ok(ResponseBody::Esearch { tag, uid, items });
            }
        }
        if l.keyword(b"UID") {
            uid = true;
            if !l.eat(b' ') {
                return Ok(ResponseBody::Esearch { tag, uid, items });
            }
        }
        loop {
            let name = l.atom()?;
            let upper = Upper::of(name.of(l.buf));
            l.sp()?;
            let item = match &upper[..] {
                b"MIN" => {
                    let (value, span) = nz(l)?;
                    EsearchItem::Min { value, span }
                }
                b"MAX" => {
                    let (value, span) = nz(l)?;
                    EsearchItem::Max { value, span }
                }
                b"COUNT" => {
                    let (value, span) = l.number()?;
                    EsearchItem::Count { value, span }
                }
                b"ALL" => {
                    let (set, span) = l.seqset()?;
                    if set.has_star() {
                        return Err(ParseError::Expected {
                            expected: "set without *",
                            offset: span.start,
                        });
                    }
                    EsearchItem::All { set, span }
                }
                _ => EsearchItem::Other {
                    name,
                    value: l.value()?,
                },
            };
            items.push(item);
            if !l.eat(b' ') {
                break;
            }
        }
    }
    Ok(ResponseBody::Esearch { tag, uid, items })
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

fn untagged(l: &mut Lexer<'_>) -> Result<ResponseBody, ParseError> {
    if l.peek().is_some_and(|b| b.is_ascii_digit()) {
        let (n, _) = l.number()?;
        l.sp()?;
        let name = l.atom()?;
        let upper = Upper::of(name.of(l.buf));
        return Ok(match &upper[..] {
            b"EXISTS" => ResponseBody::Exists(n),
            b"RECENT" => ResponseBody::Recent(n),
            b"EXPUNGE" => ResponseBody::Expunge(n),
            b"FETCH" => {
                l.sp()?;
                ResponseBody::Fetch {
                    seq: n,
                    items: fetch_items(l)?,
                }
            }
            _ => {
                l.pos = l.buf.len() - 2;
                ResponseBody::Other { name }
            }
        });
    }
    if let Some(status) = status_word(l) {
        let (code, text) = if l.eat(b' ') {
            resp_text(l)?
        } else {
            (
                None,
                Span {
                    start: l.pos,
                    end: l.pos,
                },
            )
        };
        return Ok(ResponseBody::Status {
            tag: None,
            status,
            code,
            text,
        });
    }
    let name = l.atom()?;
    let upper = Upper::of(name.of(l.buf));
    Ok(match &upper[..] {
        b"CAPABILITY" => ResponseBody::Capability(atoms_to_end(l)?),
        b"ENABLED" => ResponseBody::Enabled(atoms_to_end(l)?),
        b"FLAGS" => {
            l.sp()?;
            ResponseBody::Flags(l.atom_list()?.0)
        }
        b"SEARCH" => {
            let mut numbers = Vec::new();
            let mut modseq = None;
            while l.eat(b' ') {
                // Some servers end an empty or full result with a space.
                if l.at_end() {
                    break;
                }
                if l.at(b'(') {
                    let start = l.pos;
                    l.pos += 1;
                    if !l.keyword(b"MODSEQ") {
                        return Err(l.err("MODSEQ"));
                    }
                    l.sp()?;
                    l.number64()?;
                    l.expect(b')', ")")?;
                    modseq = Some(Span { start, end: l.pos });
                    break;
                }
                numbers.push(nz(l)?);
            }
            ResponseBody::Search { numbers, modseq }
        }
        b"ESEARCH" => esearch(l)?,
        b"STATUS" => {
            l.sp()?;
            let mailbox = l.mailbox()?;
            l.sp()?;
            l.expect(b'(', "(")?;
            let mut items = Vec::new();
            if !l.eat(b')') {
                loop {
                    let name = l.atom()?;
                    l.sp()?;
                    let (value, span) = l.number64()?;
                    items.push(StatusItem { name, value, span });
                    if l.eat(b')') {
                        break;
                    }
                    l.sp()?;
                }
            }
            // Some servers put a space before the CRLF here.
            l.eat(b' ');
            ResponseBody::MailboxStatus { mailbox, items }
        }
        b"VANISHED" => {
            l.sp()?;
            let earlier = if l.at(b'(') {
                l.pos += 1;
                if !l.keyword(b"EARLIER") {
                    return Err(l.err("EARLIER"));
                }
                l.expect(b')', ")")?;
                l.sp()?;
                true
            } else {
                false
            };
            let (uids, span) = uid_set(l)?;
            ResponseBody::Vanished {
                earlier,
                uids,
                span,
            }
        }
        _ => {
            l.pos = l.buf.len() - 2;
            ResponseBody::Other { name }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Response<'_> {
        match Response::parse(b) {
            Ok(r) => r,
            Err(e) => panic!("{e} in {:?}", String::from_utf8_lossy(b)),
        }
    }

    #[test]
    fn rfc9051_select_responses() {
        assert_eq!(parse(b"* 172 EXISTS\r\n").body, ResponseBody::Exists(172));
        assert_eq!(parse(b"* 1 RECENT\r\n").body, ResponseBody::Recent(1));
        assert_eq!(parse(b"* 3 EXPUNGE\r\n").body, ResponseBody::Expunge(3));
        let b = b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n";
        let r = parse(b);
        let Some(Code::UidValidity { value, span }) = r.code() else {
            panic!()
        };
        assert_eq!(*value, 3857529045);
        assert_eq!(span.of(b), b"3857529045");
        let b = b"* OK [UIDNEXT 4392] Predicted next UID\r\n";
        assert!(matches!(
            parse(b).code(),
            Some(Code::UidNext { value: 4392, .. })
        ));
        let b = b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n";
        let ResponseBody::Flags(f) = parse(b).body else {
            panic!()
        };
        assert_eq!(f.len(), 5);
        let b = b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n";
        let Some(Code::PermanentFlags(f)) = parse(b).code().cloned() else {
            panic!()
        };
        assert_eq!(f[2].of(b), b"\\*");
        let b = b"A142 OK [READ-WRITE] SELECT completed\r\n";
        let r = parse(b);
        assert_eq!(r.tag(), Some(&b"A142"[..]));
        assert_eq!(r.code(), Some(&Code::ReadWrite));
    }

    #[test]
    fn rfc4315_appenduid_and_copyuid() {
        let b = b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n";
        let r = parse(b);
        let Some(Code::AppendUid {
            uidvalidity,
            uids,
            uids_span,
            ..
        }) = r.code()
        else {
            panic!()
        };
        assert_eq!(*uidvalidity, 38505);
        assert_eq!(uids.to_bytes(), b"3955");
        assert_eq!(uids_span.of(b), b"3955");
        let b = b"A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n";
        let r = parse(b);
        let Some(Code::CopyUid {
            source_span,
            dest_span,
            ..
        }) = r.code()
        else {
            panic!()
        };
        assert_eq!(source_span.of(b), b"304,319:320");
        assert_eq!(dest_span.of(b), b"3956:3958");
        assert!(Response::parse(b"A OK [APPENDUID 1 1:*] x\r\n").is_err());
        assert!(Response::parse(b"A OK [COPYUID 1 2] x\r\n").is_err());
        let b = b"A OK [UIDNOTSTICKY] Non-persistent UIDs\r\n";
        assert_eq!(parse(b).code(), Some(&Code::UidNotSticky));
        let b = b"A003 NO [TRYCREATE] Mailbox doesn't exist: foo\r\n";
        assert_eq!(parse(b).code(), Some(&Code::TryCreate));
    }

    #[test]
    fn dovecot_greeting_and_capability_code() {
        let b = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot (Debian) ready.\r\n";
        let Some(Code::Capability(c)) = parse(b).code().cloned() else {
            panic!()
        };
        assert_eq!(c.len(), 8);
        assert_eq!(c[6].of(b), b"LITERAL+");
        let b = b"* CAPABILITY IMAP4rev1 UIDPLUS MOVE CONDSTORE QRESYNC\r\n";
        let ResponseBody::Capability(c) = parse(b).body else {
            panic!()
        };
        assert_eq!(c.len(), 5);
        let b = b"a OK [ALERT] System shutdown in 10 minutes\r\n";
        assert!(matches!(
            parse(b).code(),
            Some(Code::Other { args: None, .. })
        ));
        let b = b"a1 OK [HIGHESTMODSEQ 715194045007] Ok\r\n";
        let Some(Code::Other { args: Some(a), .. }) = parse(b).code().cloned() else {
            panic!()
        };
        assert_eq!(a.of(b), b"715194045007");
    }

    #[test]
    fn dovecot_fetch_with_uid_flags_and_body_literal() {
        let b = b"* 12 FETCH (UID 4827313 MODSEQ (5) FLAGS (\\Seen $Forwarded) RFC822.SIZE 44827 BODY[] {12}\r\nHello\r\n(UID))\r\n";
        let ResponseBody::Fetch { seq, items } = parse(b).body else {
            panic!()
        };
        assert_eq!(seq, 12);
        let FetchItem::Uid { value, span } = &items[0] else {
            panic!()
        };
        assert_eq!((*value, span.of(b)), (4827313, &b"4827313"[..]));
        assert!(matches!(items[1], FetchItem::ModSeq { value: 5, .. }));
        assert!(matches!(&items[2], FetchItem::Flags(f) if f.len() == 2));
        let FetchItem::Other { name, value } = &items[4] else {
            panic!()
        };
        assert_eq!(name.of(b), b"BODY[]");
        assert_eq!(value.of(b), b"{12}\r\nHello\r\n(UID)");
        // UID after a body, and sections with spaces.
        let b = b"* 1 FETCH (BODY[HEADER.FIELDS (FROM)] {3}\r\nabc UID 9)\r\n";
        let ResponseBody::Fetch { items, .. } = parse(b).body else {
            panic!()
        };
        assert!(matches!(items[1], FetchItem::Uid { value: 9, .. }));
        let b = b"* 2 FETCH (ENVELOPE (\"date\" \"subj\" ((NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL NIL \"<id>\") UID 3)\r\n";
        let ResponseBody::Fetch { items, .. } = parse(b).body else {
            panic!()
        };
        assert!(matches!(items[1], FetchItem::Uid { value: 3, .. }));
        let b = b"* 3 FETCH (BINARY[1] ~{3}\r\n\0\0\0 UID 4)\r\n";
        let ResponseBody::Fetch { items, .. } = parse(b).body else {
            panic!()
        };
        assert!(matches!(items[1], FetchItem::Uid { value: 4, .. }));
    }

    #[test]
    fn skeleton_without_literal_data_gives_the_uid_spans() {
        let b = b"* 12 FETCH (BODY[] {100000}\r\n UID 4827313 FLAGS (\\Seen))\r\n";
        let r = Response::parse_skeleton(b).unwrap();
        let ResponseBody::Fetch { items, .. } = &r.body else {
            panic!()
        };
        let FetchItem::Uid { value, span } = &items[1] else {
            panic!()
        };
        assert_eq!(*value, 4827313);
        assert_eq!(span.of(b), b"4827313");
        // The same bytes are not a complete response: the data is missing.
        assert!(Response::parse(b).is_err());
    }

    #[test]
    fn fetch_head_gives_the_uid_before_a_streamed_body() {
        let b = b"* 12 FETCH (UID 4827313 FLAGS (\\Seen) BODY[] {100000}\r\n";
        let r = Response::parse_fetch_head(b).unwrap();
        let ResponseBody::Fetch { seq, items } = &r.body else {
            panic!()
        };
        assert_eq!(*seq, 12);
        assert_eq!(items.len(), 3);
        assert!(matches!(items[0], FetchItem::Uid { value: 4827313, .. }));
        // A literal nested inside ENVELOPE ends the head too.
        let b = b"* 1 FETCH (UID 5 ENVELOPE (\"date\" {300}\r\n";
        let r = Response::parse_fetch_head(b).unwrap();
        let ResponseBody::Fetch { items, .. } = &r.body else {
            panic!()
        };
        assert_eq!(items.len(), 1);
        // A whole response is a head too.
        assert!(Response::parse_fetch_head(b"* 1 FETCH (UID 5)\r\n").is_ok());
        assert!(Response::parse_fetch_head(b"* 1 FETCH (UID 5) x\r\n").is_err());
        assert!(Response::parse_fetch_head(b"* 1 FETCH (UID 0 BODY[] {3}\r\n").is_err());
    }

    #[test]
    fn rfc9051_search_and_condstore_modseq() {
        let b = b"* SEARCH 2 84 882\r\n";
        let ResponseBody::Search { numbers, modseq } = parse(b).body else {
            panic!()
        };
        assert_eq!(
            numbers.iter().map(|n| n.0).collect::<Vec<_>>(),
            vec![2, 84, 882]
        );
        assert_eq!(numbers[1].1.of(b), b"84");
        assert_eq!(modseq, None);
        let ResponseBody::Search { numbers, .. } = parse(b"* SEARCH\r\n").body else {
            panic!()
        };
        assert!(numbers.is_empty());
        let b = b"* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n";
        let ResponseBody::Search { numbers, modseq } = parse(b).body else {
            panic!()
        };
        assert_eq!(numbers.len(), 10);
        assert_eq!(modseq.unwrap().of(b), b"(MODSEQ 917162500)");
    }

    #[test]
    fn rfc4731_esearch() {
        let b = b"* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n";
        let ResponseBody::Esearch { tag, uid, items } = parse(b).body else {
            panic!()
        };
        assert_eq!(&*tag.unwrap().value(b), b"A282");
        assert!(!uid);
        assert!(matches!(items[0], EsearchItem::Min { value: 2, .. }));
        assert!(matches!(items[1], EsearchItem::Count { value: 3, .. }));
        let b = b"* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800\r\n";
        let ResponseBody::Esearch { uid, items, .. } = parse(b).body else {
            panic!()
        };
        assert!(uid);
        assert!(matches!(items[1], EsearchItem::Max { value: 3800, .. }));
        let b = b"* ESEARCH (TAG \"A284\") UID ALL 4:10,20\r\n";
        let ResponseBody::Esearch { items, .. } = parse(b).body else {
            panic!()
        };
        let EsearchItem::All { span, .. } = &items[0] else {
            panic!()
        };
        assert_eq!(span.of(b), b"4:10,20");
        let b = b"* ESEARCH (TAG \"A283\")\r\n";
        let ResponseBody::Esearch { items, .. } = parse(b).body else {
            panic!()
        };
        assert!(items.is_empty());
        assert!(matches!(
            parse(b"* ESEARCH UID COUNT 0\r\n").body,
            ResponseBody::Esearch { uid: true, .. }
        ));
    }

    #[test]
    fn rfc9051_status_response() {
        let b = b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 1)\r\n";
        let ResponseBody::MailboxStatus { mailbox, items } = parse(b).body else {
            panic!()
        };
        assert_eq!(&*mailbox.value(b), b"blurdybloop");
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].name.of(b), b"UIDNEXT");
        assert_eq!(items[1].span.of(b), b"44292");
        let b = b"* STATUS \"Sent Items\" (UIDNEXT 7) \r\n";
        assert!(matches!(parse(b).body, ResponseBody::MailboxStatus { .. }));
    }

    #[test]
    fn rfc7162_vanished() {
        let b = b"* VANISHED (EARLIER) 300:310,405,411\r\n";
        let ResponseBody::Vanished { earlier, span, .. } = parse(b).body else {
            panic!()
        };
        assert!(earlier);
        assert_eq!(span.of(b), b"300:310,405,411");
        let b = b"* VANISHED 405,407,410\r\n";
        assert!(matches!(
            parse(b).body,
            ResponseBody::Vanished { earlier: false, .. }
        ));
        assert!(Response::parse(b"* VANISHED 1:*\r\n").is_err());
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
