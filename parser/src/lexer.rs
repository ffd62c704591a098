//! The byte-level cursor the command and response parsers are written
//! with: atoms, numbers, quoted strings, literals, parenthesized lists and
//! generic values, each with its span (offsets into the original buffer).
//!
//! It works on one complete command or response, as cut by [`crate::frame`]:
//! a literal's data is skipped by its announced length, never scanned.
//!
//! Invariants, one line each:
//! - The cursor never moves past the end of the buffer and never panics on
//!   any input.
//! - Nesting of lists and brackets is bounded by `max_depth` (an error past
//!   it), so hostile input cannot exhaust the stack.

use std::borrow::Cow;
use std::fmt;

use crate::frame::literal_suffix;
use crate::seqset::{SequenceSet, SetError};

/// A range of offsets into the buffer a command or response was parsed
/// from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// The bytes this span covers in `buf`.
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start..self.end]
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Why a command or response did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Something else than expected at this offset.
    #[error("expected {expected} at offset {offset}")]
    Expected {
        /// What the grammar wanted.
        expected: &'static str,
        /// Offset in the buffer.
        offset: usize,
    },
    /// A sequence set that does not parse.
    #[error("bad sequence set at offset {offset}: {error}")]
    BadSet {
        /// Offset of the set in the buffer.
        offset: usize,
        /// What was wrong with it.
        error: SetError,
    },
    /// Lists or brackets nested deeper than the limit.
    #[error("nesting deeper than {limit} at offset {offset}")]
    TooDeep {
        /// The limit.
        limit: usize,
        /// Offset in the buffer.
        offset: usize,
    },
}

impl ParseError {
    /// The offset in the buffer where the error was found.
    pub fn offset(&self) -> usize {
        match *self {
            ParseError::Expected { offset, .. }
            | ParseError::BadSet { offset, .. }
            | ParseError::TooDeep { offset, .. } => offset,
        }
    }
}

/// Default bound on nesting of parenthesized lists and brackets.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// How a string was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrKind {
    /// An atom (`astring` without quotes), or `NIL` where NIL is allowed.
    Atom,
    /// A quoted string; the value may contain `\"` / `\\` escapes.
    Quoted,
    /// A literal; `data` is where its octets are.
    Literal {
        /// The literal data (without the `{n}\r\n` announcement).
        data: Span,
        /// `{n+}`.
        non_sync: bool,
        /// `~{n}`.
        binary: bool,
    },
}

/// A string argument: its whole token (`raw`, what a rewrite replaces) and
/// how to read its value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StrToken {
    /// The token as written, quotes or literal announcement included.
    pub raw: Span,
    /// How it was written.
    pub kind: StrKind,
}

impl fmt::Debug for StrToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StrToken({:?}, {}..{})",
            self.kind, self.raw.start, self.raw.end
        )
    }
}

impl StrToken {
    /// Whether this token is a literal.
    pub fn is_literal(&self) -> bool {
        matches!(self.kind, StrKind::Literal { .. })
    }

    /// The value: an atom as is, a quoted string unescaped, a literal's
    /// data.
    pub fn value<'a>(&self, buf: &'a [u8]) -> Cow<'a, [u8]> {
        match self.kind {
            StrKind::Atom => Cow::Borrowed(self.raw.of(buf)),
            StrKind::Literal { data, .. } => Cow::Borrowed(data.of(buf)),
            StrKind::Quoted => {
                let inner = &buf[self.raw.start + 1..self.raw.end - 1];
                if !inner.contains(&b'\\') {
                    return Cow::Borrowed(inner);
                }
                let mut v = Vec::with_capacity(inner.len());
                let mut esc = false;
                for &b in inner {
                    if !esc && b == b'\\' {
                        esc = true;
                    } else {
                        v.push(b);
                        esc = false;
                    }
                }
                Cow::Owned(v)
            }
        }
    }
}

/// `atom-specials` without CTL and SP, which are tested apart.
fn is_atom_special(b: u8) -> bool {
    matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// RFC 9051 ATOM-CHAR, leniently with 8-bit bytes (which no delimiter uses).
pub(crate) fn is_atom_char(b: u8) -> bool {
    b > b' ' && b != 0x7f && !is_atom_special(b)
}

/// RFC 9051 ASTRING-CHAR: ATOM-CHAR or `]`.
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// Bytes allowed in a tag: ASTRING-CHAR except `+`.
pub(crate) fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// A keyword folded to upper case without allocating: up to 24 bytes;
/// longer words fold to an empty key, which matches no known keyword.
#[derive(Clone, Copy)]
pub(crate) struct Upper {
    bytes: [u8; 24],
    len: usize,
}

impl Upper {
    pub(crate) fn of(word: &[u8]) -> Self {
        let mut bytes = [0u8; 24];
        if word.len() > bytes.len() {
            return Upper { bytes, len: 0 };
        }
        for (d, s) in bytes.iter_mut().zip(word) {
            *d = s.to_ascii_uppercase();
        }
        Upper {
            bytes,
            len: word.len(),
        }
    }
}

impl std::ops::Deref for Upper {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The cursor.
#[derive(Debug, Clone)]
pub(crate) struct Lexer<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    depth: usize,
    max_depth: usize,
    /// Literal data is not in the buffer: a literal ends right after the
    /// CRLF of its announcement (see `Response::parse_skeleton`).
    pub(crate) elided_literals: bool,
    /// Sections (`[...]`, `<...>`) the cursor is inside.
    sections: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(buf: &'a [u8], max_depth: usize) -> Self {
        Lexer {
            buf,
            pos: 0,
            depth: 0,
            max_depth,
            elided_literals: false,
            sections: 0,
        }
    }

    pub(crate) fn err(&self, expected: &'static str) -> ParseError {
        ParseError::Expected {
            expected,
            offset: self.pos,
        }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn at(&self, b: u8) -> bool {
        self.peek() == Some(b)
    }

    /// Consumes `b` if it is next.
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.at(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, b: u8, what: &'static str) -> Result<(), ParseError> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    pub(crate) fn sp(&mut self) -> Result<(), ParseError> {
        self.expect(b' ', "SP")
    }

    /// CRLF that ends the command or response: nothing may follow it.
    pub(crate) fn end(&mut self) -> Result<(), ParseError> {
        if self.buf.len() == self.pos + 2 && self.buf[self.pos..] == *b"\r\n" {
            self.pos += 2;
            Ok(())
        } else {
            Err(self.err("CRLF at the end"))
        }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.buf[self.pos..] == *b"\r\n"
    }

    /// Consumes `word` case-insensitively if it is next and is followed
    /// by something that cannot continue an atom.
    pub(crate) fn keyword(&mut self, word: &[u8]) -> bool {
        let end = self.pos + word.len();
        if end <= self.buf.len()
            && self.buf[self.pos..end].eq_ignore_ascii_case(word)
            && !self.buf.get(end).is_some_and(|&b| is_atom_char(b))
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    /// Bytes satisfying `pred`, at least one.
    pub(crate) fn take_while1(
        &mut self,
        pred: impl Fn(u8) -> bool,
        what: &'static str,
    ) -> Result<Span, ParseError> {
        let start = self.pos;
        let n = self.buf[start..].iter().take_while(|&&b| pred(b)).count();
        if n == 0 {
            return Err(self.err(what));
        }
        self.pos += n;
        Ok(Span {
            start,
            end: self.pos,
        })
    }

    pub(crate) fn atom(&mut self) -> Result<Span, ParseError> {
        self.take_while1(is_atom_char, "atom")
    }

    /// A `number` (RFC 9051: up to 32 bits).
    pub(crate) fn number(&mut self) -> Result<(u32, Span), ParseError> {
        let (v, span) = self.number64()?;
        let v = u32::try_from(v).map_err(|_| ParseError::Expected {
            expected: "32-bit number",
            offset: span.start,
        })?;
        Ok((v, span))
    }

    /// A `number64` (RFC 9051: up to 63 bits).
    pub(crate) fn number64(&mut self) -> Result<(u64, Span), ParseError> {
        let start = self.pos;
        let span = self.take_while1(|b| b.is_ascii_digit(), "number")?;
        let mut v: u64 = 0;
        for &d in span.of(self.buf) {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .filter(|&v| v <= i64::MAX as u64)
                .ok_or(ParseError::Expected {
                    expected: "63-bit number",
                    offset: start,
                })?;
        }
        Ok((v, span))
    }

    /// An `nz-number`.
    pub(crate) fn nz_number(&mut self) -> Result<(u32, Span), ParseError> {
        let start = self.pos;
        let (v, span) = self.number()?;
        if v == 0 {
            return Err(ParseError::Expected {
                expected: "non-zero number",
                offset: start,
            });
        }
        Ok((v, span))
    }

    /// A sequence set, up to the first byte that cannot continue it.
    pub(crate) fn seqset(&mut self) -> Result<(SequenceSet, Span), ParseError> {
        let start = self.pos;
        let (set, n) =
            SequenceSet::parse_prefix(&self.buf[start..]).map_err(|e| ParseError::BadSet {
                offset: start,
                error: e,
            })?;
        self.pos += n;
        Ok((
            set,
            Span {
                start,
                end: self.pos,
            },
        ))
    }

    pub(crate) fn quoted(&mut self) -> Result<StrToken, ParseError> {
        let start = self.pos;
        self.expect(b'"', "quoted string")?;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(StrToken {
                        raw: Span {
                            start,
                            end: self.pos,
                        },
                        kind: StrKind::Quoted,
                    });
                }
                Some(b'\\') => {
                    self.pos += 1;
                    if !matches!(self.peek(), Some(b'"' | b'\\')) {
                        return Err(self.err("quoted-special after backslash"));
                    }
                    self.pos += 1;
                }
                Some(b'\r' | b'\n') | None => return Err(self.err("closing quote")),
                Some(0) => return Err(self.err("no NUL in quoted string")),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// A literal or literal8 (`{n}`, `{n+}`, `~{n}`, `~{n+}` CRLF data).
    pub(crate) fn literal(&mut self) -> Result<StrToken, ParseError> {
        let start = self.pos;
        let Some(nl) = memchr::memchr(b'\n', &self.buf[start..]) else {
            return Err(self.err("literal"));
        };
        let lf = start + nl;
        if lf < 1 || self.buf[lf - 1] != b'\r' {
            return Err(self.err("literal"));
        }
        let head = &self.buf[start..lf - 1];
        match literal_suffix(head) {
            Ok(Some((lit, 0))) => {
                let data_start = lf + 1;
                let len = if self.elided_literals {
                    0
                } else {
                    usize::try_from(lit.length).map_err(|_| self.err("literal data"))?
                };
                let data_end = data_start
                    .checked_add(len)
                    .filter(|&e| e <= self.buf.len())
                    .ok_or(self.err("literal data"))?;
                self.pos = data_end;
                Ok(StrToken {
                    raw: Span {
                        start,
                        end: data_end,
                    },
                    kind: StrKind::Literal {
                        data: Span {
                            start: data_start,
                            end: data_end,
                        },
                        non_sync: !lit.synchronizing,
                        binary: lit.binary,
                    },
                })
            }
            _ => Err(self.err("literal")),
        }
    }

    /// A `string`: quoted or literal (not literal8).
    pub(crate) fn string(&mut self) -> Result<StrToken, ParseError> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err(self.err("string")),
        }
    }

    /// An `astring`: atom of ASTRING-CHARs, quoted or literal.
    pub(crate) fn astring(&mut self) -> Result<StrToken, ParseError> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let raw = self.take_while1(is_astring_char, "astring")?;
                Ok(StrToken {
                    raw,
                    kind: StrKind::Atom,
                })
            }
        }
    }

    /// A LIST or LSUB pattern, `list-mailbox = 1*list-char / string`,
    /// where `list-char = ATOM-CHAR / list-wildcards / resp-specials`.
    pub(crate) fn list_mailbox(&mut self) -> Result<StrToken, ParseError> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let raw = self.take_while1(
                    |b| is_astring_char(b) || b == b'%' || b == b'*',
                    "list-mailbox",
                )?;
                Ok(StrToken {
                    raw,
                    kind: StrKind::Atom,
                })
            }
        }
    }

    /// A mailbox name: an astring (`INBOX` in any case is INBOX).
    pub(crate) fn mailbox(&mut self) -> Result<StrToken, ParseError> {
        self.astring()
    }

    pub(crate) fn enter(&mut self) -> Result<(), ParseError> {
        if self.depth >= self.max_depth {
            return Err(ParseError::TooDeep {
                limit: self.max_depth,
                offset: self.pos,
            });
        }
        self.depth += 1;
        Ok(())
    }

    pub(crate) fn leave(&mut self) {
        self.depth -= 1;
    }

    /// A parenthesized list of flags or atoms: `(a b \c)`; returns the
    /// spans of the elements and of the whole list.
    pub(crate) fn atom_list(&mut self) -> Result<(Vec<Span>, Span), ParseError> {
        let start = self.pos;
        self.expect(b'(', "(")?;
        let mut v = Vec::new();
        if !self.eat(b')') {
            loop {
                let s = self.pos;
                self.eat(b'\\');
                // "\*" in PERMANENTFLAGS.
                if !self.eat(b'*') {
                    self.atom()?;
                }
                v.push(Span {
                    start: s,
                    end: self.pos,
                });
                if self.eat(b')') {
                    break;
                }
                self.sp()?;
            }
        }
        Ok((
            v,
            Span {
                start,
                end: self.pos,
            },
        ))
    }

    /// Skips one generic value and returns its span: a parenthesized list,
    /// a quoted string, a literal, or a run of other bytes in which `[...]`
    /// and `<...>` sections may hold spaces (`BODY[HEADER.FIELDS (A B)]<0>`).
    pub(crate) fn value(&mut self) -> Result<Span, ParseError> {
        self.value_until(None)
    }

    /// [`Lexer::value`], where a run of bytes also stops at `stop` (the
    /// closing bracket of an enclosing section).
    fn value_until(&mut self, stop: Option<u8>) -> Result<Span, ParseError> {
        let start = self.pos;
        match self.peek() {
            Some(b'(') => {
                self.enter()?;
                self.pos += 1;
                let mut first = true;
                let mut after_list = false;
                loop {
                    if self.eat(b')') {
                        break;
                    }
                    // Lists of lists are written without SP between them:
                    // an envelope's addresses (`1*address`), a multipart's
                    // parts (`1*body`), NAMESPACE's namespaces, THREAD.
                    if !first && (!after_list || !self.at(b'(')) {
                        self.sp()?;
                    }
                    first = false;
                    let v = self.value()?;
                    after_list = self.buf[v.start] == b'(';
                }
                self.leave();
            }
            Some(b'"') => {
                self.quoted()?;
            }
            Some(b'{') => {
                self.literal()?;
            }
            Some(b'~') if self.buf.get(self.pos + 1) == Some(&b'{') => {
                self.literal()?;
            }
            _ => {
                let mut any = false;
                let mut after_section = false;
                loop {
                    match self.peek() {
                        Some(b'[') => {
                            let (pos, depth, outer) = (self.pos, self.depth, self.sections);
                            match self.bracketed(b'[', b']') {
                                Ok(()) => after_section = true,
                                // A `[` that closes nothing is an ATOM-CHAR
                                // (`LIST "" foo[bar`). Only an outermost
                                // section is retried so: a failed attempt
                                // stops at the line's end or `max_depth`
                                // levels in, so retries stay linear.
                                Err(_) if outer == 0 => {
                                    (self.pos, self.depth) = (pos + 1, depth);
                                    self.sections = 0;
                                    after_section = false;
                                }
                                Err(e) => return Err(e),
                            }
                            any = true;
                        }
                        Some(b'<') if after_section => {
                            self.bracketed(b'<', b'>')?;
                            after_section = false;
                        }
                        Some(b)
                            if b > b' '
                                && b != 0x7f
                                && Some(b) != stop
                                && !matches!(b, b'(' | b')' | b'{' | b'"') =>
                        {
                            self.pos += 1;
                            any = true;
                            after_section = false;
                        }
                        _ => break,
                    }
                }
                if !any {
                    return Err(self.err("value"));
                }
            }
        }
        Ok(Span {
            start,
            end: self.pos,
        })
    }

    /// Skips `open ... close`, where the inside may hold spaces, lists,
    /// quoted strings and literals.
    fn bracketed(&mut self, open: u8, close: u8) -> Result<(), ParseError> {
        self.enter()?;
        self.sections += 1;
        self.expect(open, "opening bracket")?;
        loop {
            match self.peek() {
                Some(b) if b == close => {
                    self.pos += 1;
                    break;
                }
                Some(b' ') => self.pos += 1,
                Some(b'\r' | b'\n') | None => return Err(self.err("closing bracket")),
                Some(_) => {
                    self.value_until(Some(close))?;
                }
            }
        }
        self.sections -= 1;
        self.leave();
        Ok(())
    }

    /// Skips to the end of the line that holds the cursor (text), not
    /// past its CRLF. Returns the span skipped.
    pub(crate) fn text(&mut self) -> Span {
        let start = self.pos;
        let n = memchr::memchr(b'\r', &self.buf[start..]).unwrap_or(self.buf.len() - start);
        self.pos += n;
        Span {
            start,
            end: self.pos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lx(b: &[u8]) -> Lexer<'_> {
        Lexer::new(b, DEFAULT_MAX_DEPTH)
    }

    #[test]
    fn quoted_string_value_is_unescaped() {
        let b = br#""a\"b\\c" x"#;
        let mut l = lx(b);
        let t = l.quoted().unwrap();
        assert_eq!(t.raw, Span { start: 0, end: 9 });
        assert_eq!(&*t.value(b), br#"a"b\c"#);
        assert!(lx(br#""a\xb""#).quoted().is_err());
        assert!(lx(b"\"ab\r\n\"").quoted().is_err());
    }

    #[test]
    fn literal_is_skipped_by_length_even_with_crlf_inside() {
        let b = b"{5}\r\na\r\n)b rest";
        let mut l = lx(b);
        let t = l.literal().unwrap();
        assert_eq!(&*t.value(b), b"a\r\n)b");
        assert_eq!(l.pos, 10);
        assert!(lx(b"{50}\r\nshort").literal().is_err());
        let b = b"~{2+}\r\n\0\0";
        let t = lx(b).literal().unwrap();
        assert!(matches!(
            t.kind,
            StrKind::Literal {
                non_sync: true,
                binary: true,
                ..
            }
        ));
    }

    #[test]
    fn generic_value_skips_fetch_section_names_with_spaces() {
        let b = b"BODY[HEADER.FIELDS (DATE FROM)]<0.100> rest";
        let mut l = lx(b);
        let s = l.value().unwrap();
        assert_eq!(s.of(b), b"BODY[HEADER.FIELDS (DATE FROM)]<0.100>");
        let b = b"(\"a\" (NIL {3}\r\nx y) b) rest";
        let mut l = lx(b);
        assert_eq!(l.value().unwrap().end, 22);
    }

    #[test]
    fn lists_of_lists_may_touch_without_sp() {
        // RFC 9051 env-to = "(" 1*address ")", body-type-mpart = 1*body SP
        // media-subtype: the elements follow each other without SP.
        for b in [
            &b"((NIL NIL \"g\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL NIL NIL)) x"[..],
            b"((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1)(\"text\" \"html\" NIL NIL NIL \"7bit\" 1 1) \"alternative\") x",
            b"((\"\" \".\")(\"#shared\" \".\")) x",
            b"(3 6 (4 23)(44 7 96)) x",
            b"() x",
        ] {
            let mut l = lx(b);
            let s = l.value().unwrap_or_else(|e| panic!("{e} in {}", b.escape_ascii()));
            assert_eq!(s.end, b.len() - 2, "{}", b.escape_ascii());
        }
        // Only a list may touch the list before it.
        for b in [&b"((a)b)"[..], b"(a(b))", b"(\"a\"\"b\")", b"((a) )"] {
            assert!(lx(b).value().is_err(), "{}", b.escape_ascii());
        }
    }

    #[test]
    fn a_bracket_that_closes_nothing_is_an_atom_char() {
        // RFC 9051: ATOM-CHAR excludes atom-specials, which hold "]" but
        // not "["; a list-mailbox may hold both.
        for (b, want) in [
            (&b"foo[bar rest"[..], &b"foo[bar"[..]),
            (b"[ x", b"["),
            (b"a[b]c[ d", b"a[b]c["),
            (b"foo]bar x", b"foo]bar"),
            (
                b"BODY[HEADER.FIELDS (A B)]<0> x",
                b"BODY[HEADER.FIELDS (A B)]<0>",
            ),
            (b"x[[[ y", b"x[[["),
        ] {
            let mut l = lx(b);
            assert_eq!(l.value().unwrap().of(b), want, "{}", b.escape_ascii());
            assert_eq!(l.depth, 0);
            assert_eq!(l.sections, 0);
        }
        // An unclosed "<" after a section is still an error.
        assert!(lx(b"BODY[]<0 x").value().is_err());
    }

    #[test]
    fn unclosed_brackets_cost_linear_time() {
        // 200 KB of unclosed brackets: linear work is a fraction of a
        // second, a quadratic retry would not finish (the parser has no
        // clock to time itself with).
        for unit in [&b"["[..], b"x[ ", b"[(", b"[ a[ \"q\" "] {
            let mut b = unit.repeat(200_000 / unit.len());
            b.extend_from_slice(b"\r\n");
            let mut l = lx(&b);
            while l.value().is_ok() && l.eat(b' ') {}
            assert!(l.pos > 0);
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_an_error_not_a_stack_overflow() {
        let mut b = vec![b'('; 100_000];
        b.extend(vec![b')'; 100_000]);
        let mut l = lx(&b);
        assert!(matches!(
            l.value(),
            Err(ParseError::TooDeep { limit: 64, .. })
        ));
        let mut b = vec![b'('; 64];
        b.extend(vec![b')'; 64]);
        assert!(lx(&b).value().is_ok());
    }

    #[test]
    fn keyword_needs_a_word_boundary() {
        assert!(lx(b"uid FETCH").keyword(b"UID"));
        assert!(!lx(b"UIDX").keyword(b"UID"));
        assert!(lx(b"NIL)").keyword(b"NIL"));
    }

    #[test]
    fn numbers_are_bounded() {
        assert_eq!(lx(b"4294967295").number().unwrap().0, u32::MAX);
        assert!(lx(b"4294967296").number().is_err());
        assert!(lx(b"9223372036854775808").number64().is_err());
        assert!(lx(b"0").nz_number().is_err());
    }
}
