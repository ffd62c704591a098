//! Framing: where one command (client side) or one response (server side)
//! ends in a byte stream, and where the literals inside it are.
//!
//! The framers never own a buffer. The caller appends whatever arrived to its
//! own buffer and calls the framer with the whole buffer; the framer remembers
//! how far it has already looked, so a byte is examined once however the input
//! is split into chunks, and the bytes of a literal are never examined at all.
//!
//! Invariants, one line each:
//! - A framer never returns a length larger than the buffer it was given.
//! - A line is never longer than `Limits::max_line` (CRLF included) and a
//!   literal never larger than `Limits::max_literal`: beyond, an error, so the
//!   caller never needs to buffer more than the limits allow.
//! - A synchronizing literal is never skipped before the caller decided on it
//!   ([`CommandFramer::accept_literal`] or [`CommandFramer::reject_literal`]).
//! - Lines end with CRLF; a bare LF is an error, never a line end, so the proxy
//!   and a backend that would treat LF as a line end never disagree on where a
//!   command ends.
//! - `{n-}` is not a literal (RFC 7888 has no such syntax: LITERAL- uses
//!   `{n+}` with a 4096-byte limit, see [`Limits::max_nonsync_literal`]).

use std::fmt;

/// Size limits, fixed when a framer is constructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, CRLF included, outside literals.
    pub max_line: usize,
    /// Largest literal of any kind.
    pub max_literal: u64,
    /// Largest non-synchronizing literal (`{n+}`): `u64::MAX` when the
    /// server side advertises LITERAL+, 4096 when it advertises LITERAL-
    /// (RFC 7888 section 4); a larger one is an error even if it is below
    /// `max_literal`.
    pub max_nonsync_literal: u64,
    /// Largest command or response: all lines and literals together. It is
    /// checked when a literal is announced, so a command can exceed it by
    /// at most the one `max_line` line that follows its last literal.
    pub max_message: u64,
}

impl Default for Limits {
    /// 64 KiB lines (Dovecot's `imap_max_line_length`), 64 MiB literals,
    /// LITERAL+ semantics, 256 MiB per command or response.
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_literal: 64 * 1024 * 1024,
            max_nonsync_literal: u64::MAX,
            max_message: 256 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Limits for a backend's responses: 16 MiB lines (a `* SEARCH` or
    /// `* VANISHED` over a large mailbox is one long line), 1 GiB literals,
    /// 2 GiB per response. In whole-response mode the caller buffers up to
    /// `max_message`; stream larger responses with
    /// [`ResponseFramer::next_segment`], which never buffers a literal.
    pub fn responses() -> Self {
        Limits {
            max_line: 16 * 1024 * 1024,
            max_literal: 1024 * 1024 * 1024,
            max_nonsync_literal: u64::MAX,
            max_message: 2 * 1024 * 1024 * 1024,
        }
    }
}

/// How a literal was announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Literal {
    /// Number of octets that follow the CRLF of the announcing line.
    pub length: u64,
    /// `{n}` or `~{n}`: the sender waits for a continuation request (client
    /// side). `false` for `{n+}` and `~{n+}` (RFC 7888).
    pub synchronizing: bool,
    /// `~{n}` (RFC 3516 BINARY `literal8`): may contain NUL.
    pub binary: bool,
}

/// Recognizes a literal announcement at the end of `line` (the line without
/// its CRLF): `{n}`, `{n+}`, `~{n}`, `~{n+}`. Returns the literal and the
/// offset in `line` where the announcement (`{` or `~`) starts.
///
/// `Err(())` when the line ends in something shaped like an announcement
/// whose number does not fit in 63 bits.
pub(crate) fn literal_suffix(line: &[u8]) -> Result<Option<(Literal, usize)>, ()> {
    let n = line.len();
    if n < 3 || line[n - 1] != b'}' {
        return Ok(None);
    }
    let mut end = n - 1; // index of '}'
    let synchronizing = if line[end - 1] == b'+' {
        end -= 1;
        false
    } else {
        true
    };
    let mut start = end;
    while start > 0 && line[start - 1].is_ascii_digit() {
        start -= 1;
    }
    if start == end || start == 0 || line[start - 1] != b'{' {
        return Ok(None);
    }
    let digits = &line[start..end];
    let mut length: u64 = 0;
    for &d in digits {
        length = length
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(())?;
    }
    if length > i64::MAX as u64 {
        return Err(());
    }
    let brace = start - 1;
    let (binary, at) = if brace > 0 && line[brace - 1] == b'~' {
        (true, brace - 1)
    } else {
        (false, brace)
    };
    Ok(Some((
        Literal {
            length,
            synchronizing,
            binary,
        },
        at,
    )))
}

/// The tag of a command or response: the bytes before the first SP, CR or
/// LF, at most 64 of them. Used only to address errors and announcements.
pub(crate) fn leading_tag(buf: &[u8]) -> Vec<u8> {
    buf.iter()
        .take(64)
        .take_while(|&&b| b != b' ' && b != b'\r' && b != b'\n')
        .copied()
        .collect()
}

/// A framing error. Each carries the tag of the command it concerns (empty
/// if none could be read) so the proxy can answer `tag BAD` / `tag NO
/// [TOOBIG]`. [`FrameError::discard`] says whether the stream can go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A line (outside literals) is longer than `Limits::max_line`. Fatal:
    /// the rest of the line cannot be told apart from a new command.
    #[error("line too long (limit {limit} octets)")]
    LineTooLong {
        /// Tag of the command, possibly empty.
        tag: Vec<u8>,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// A LF without a CR before it. Fatal.
    #[error("bare LF without CR")]
    BareLineFeed {
        /// Tag of the command, possibly empty.
        tag: Vec<u8>,
    },
    /// A literal announcement whose number does not fit in 63 bits. Fatal:
    /// a client that sent it non-synchronizing would follow with data.
    #[error("literal length out of range")]
    LiteralLengthOutOfRange {
        /// Tag of the command, possibly empty.
        tag: Vec<u8>,
    },
    /// A literal larger than the limit. For a synchronizing literal the
    /// client has not sent the data: drop `discard` bytes, answer
    /// `tag NO [TOOBIG]` and go on. For a non-synchronizing one the data is
    /// already on its way: answer `tag BAD [TOOBIG]` and close (RFC 7888
    /// section 4); `discard` is then `None`.
    #[error("literal of {size} octets exceeds the limit of {limit}")]
    LiteralTooBig {
        /// Tag of the command, possibly empty.
        tag: Vec<u8>,
        /// The announced size.
        size: u64,
        /// The limit that was exceeded.
        limit: u64,
        /// Whether the literal was synchronizing.
        synchronizing: bool,
        /// Bytes to drop from the front of the buffer to resume, if the
        /// stream can be resumed.
        discard: Option<usize>,
    },
    /// The command or response as a whole exceeds `Limits::max_message`.
    /// Resumable exactly when a `LiteralTooBig` would be.
    #[error("message of at least {size} octets exceeds the limit of {limit}")]
    MessageTooBig {
        /// Tag of the command, possibly empty.
        tag: Vec<u8>,
        /// Size reached with the offending literal.
        size: u64,
        /// The limit that was exceeded.
        limit: u64,
        /// Bytes to drop from the front of the buffer to resume, if the
        /// stream can be resumed.
        discard: Option<usize>,
    },
}

impl FrameError {
    /// Bytes to drop from the front of the buffer so that framing resumes
    /// with the next command; `None` when the connection must be closed.
    pub fn discard(&self) -> Option<usize> {
        match self {
            FrameError::LiteralTooBig { discard, .. }
            | FrameError::MessageTooBig { discard, .. } => *discard,
            _ => None,
        }
    }

    /// The tag of the command concerned (possibly empty).
    pub fn tag(&self) -> &[u8] {
        match self {
            FrameError::LineTooLong { tag, .. }
            | FrameError::BareLineFeed { tag }
            | FrameError::LiteralLengthOutOfRange { tag }
            | FrameError::LiteralTooBig { tag, .. }
            | FrameError::MessageTooBig { tag, .. } => tag,
        }
    }
}

/// Result of looking for the end of one line.
enum LineScan {
    /// No LF yet.
    Incomplete,
    /// The line ends at this offset (exclusive, CRLF included).
    End(usize),
}

/// Searches `buf[from..]` for LF; checks the line length and the CR.
fn scan_line(
    buf: &[u8],
    line_start: usize,
    from: usize,
    max_line: usize,
) -> Result<LineScan, FrameError> {
    match memchr::memchr(b'\n', &buf[from..]) {
        None => {
            if buf.len() - line_start > max_line {
                return Err(FrameError::LineTooLong {
                    tag: leading_tag(buf),
                    limit: max_line,
                });
            }
            Ok(LineScan::Incomplete)
        }
        Some(i) => {
            let lf = from + i;
            if lf + 1 - line_start > max_line {
                return Err(FrameError::LineTooLong {
                    tag: leading_tag(buf),
                    limit: max_line,
                });
            }
            if lf == line_start || buf[lf - 1] != b'\r' {
                return Err(FrameError::BareLineFeed {
                    tag: leading_tag(buf),
                });
            }
            Ok(LineScan::End(lf + 1))
        }
    }
}

/// A literal announced by a client, as reported by
/// [`CommandFramer::next`].
#[derive(Clone, PartialEq, Eq)]
pub struct LiteralAnnounced {
    /// Tag of the command (possibly empty if the client sent garbage).
    pub tag: Vec<u8>,
    /// The literal.
    pub literal: Literal,
    /// Offset in the buffer just past the CRLF of the announcing line: the
    /// literal data starts here.
    pub data_start: usize,
}

impl fmt::Debug for LiteralAnnounced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiteralAnnounced")
            .field("tag", &String::from_utf8_lossy(&self.tag))
            .field("literal", &self.literal)
            .field("data_start", &self.data_start)
            .finish()
    }
}

/// What [`CommandFramer::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandProgress {
    /// More bytes are needed. Keep the buffer as it is and call again when
    /// more have arrived.
    Incomplete,
    /// `buf[..len]` is one complete command, literals included. Remove those
    /// bytes from the front of the buffer before the next call.
    Complete {
        /// Length of the command in bytes.
        len: usize,
    },
    /// A literal was announced and is within the limits. If it is
    /// synchronizing, the caller must now call
    /// [`CommandFramer::accept_literal`] (and send a continuation request to
    /// the client) or [`CommandFramer::reject_literal`] (and answer with a
    /// tagged NO or BAD); until then `next` reports the same announcement.
    /// A non-synchronizing literal needs no decision: call `next` again.
    LiteralAnnounced(LiteralAnnounced),
}

/// What [`CommandFramer::next_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineProgress {
    /// More bytes are needed.
    Incomplete,
    /// `buf[..len]` is one line, CRLF included.
    Line {
        /// Length of the line with its CRLF.
        len: usize,
    },
}

/// Client-side framer: finds complete commands in the bytes a client sent.
///
/// ```
/// use tandem_parser::frame::{CommandFramer, CommandProgress, Limits};
/// let mut f = CommandFramer::new(Limits::default());
/// let mut buf = b"a1 LOGIN {4}\r\n".to_vec();
/// let CommandProgress::LiteralAnnounced(ann) = f.next(&buf).unwrap() else { panic!() };
/// assert_eq!(ann.literal.length, 4);
/// f.accept_literal(); // and send "+ go ahead\r\n" to the client
/// buf.extend_from_slice(b"user secret\r\n");
/// assert_eq!(f.next(&buf).unwrap(), CommandProgress::Complete { len: buf.len() });
/// ```
#[derive(Debug, Clone)]
pub struct CommandFramer {
    limits: Limits,
    /// Offset of the start of the current line.
    line_start: usize,
    /// Offset up to which LF has been searched for in the current line.
    scanned: usize,
    /// Offset where the literal being skipped ends, if inside one.
    literal_end: Option<usize>,
    /// A synchronizing literal waiting for the caller's decision.
    pending: Option<LiteralAnnounced>,
    /// A fatal error already reported.
    failed: Option<FrameError>,
}

impl CommandFramer {
    /// A framer that enforces `limits`.
    pub fn new(limits: Limits) -> Self {
        CommandFramer {
            limits,
            line_start: 0,
            scanned: 0,
            literal_end: None,
            pending: None,
            failed: None,
        }
    }

    /// The limits this framer enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn reset(&mut self) {
        self.line_start = 0;
        self.scanned = 0;
        self.literal_end = None;
        self.pending = None;
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        if e.discard().is_some() {
            self.reset();
        } else {
            self.failed = Some(e.clone());
        }
        e
    }

    /// Looks for the end of the command at the front of `buf`. `buf` must be
    /// the same buffer as in the previous call, possibly with bytes appended,
    /// or with a complete command / discarded bytes removed from its front as
    /// the previous result asked.
    ///
    /// After a fatal error (one whose [`FrameError::discard`] is `None`) the
    /// same error is returned forever.
    pub fn next(&mut self, buf: &[u8]) -> Result<CommandProgress, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Some(p) = &self.pending {
            return Ok(CommandProgress::LiteralAnnounced(p.clone()));
        }
        if let Some(end) = self.literal_end {
            if buf.len() < end {
                return Ok(CommandProgress::Incomplete);
            }
            self.literal_end = None;
            self.line_start = end;
            self.scanned = end;
        }
        let scan = scan_line(buf, self.line_start, self.scanned, self.limits.max_line);
        let line_end = match scan {
            Ok(LineScan::Incomplete) => {
                self.scanned = buf.len();
                return Ok(CommandProgress::Incomplete);
            }
            Ok(LineScan::End(e)) => e,
            Err(e) => return Err(self.fail(e)),
        };
        let line = &buf[self.line_start..line_end - 2];
        let literal = match literal_suffix(line) {
            Ok(None) => {
                self.reset();
                return Ok(CommandProgress::Complete { len: line_end });
            }
            Ok(Some((lit, _))) => lit,
            Err(()) => {
                let tag = leading_tag(buf);
                return Err(self.fail(FrameError::LiteralLengthOutOfRange { tag }));
            }
        };
        let discard = if literal.synchronizing {
            Some(line_end)
        } else {
            None
        };
        let limit = if literal.synchronizing {
            self.limits.max_literal
        } else {
            self.limits.max_literal.min(self.limits.max_nonsync_literal)
        };
        if literal.length > limit {
            let e = FrameError::LiteralTooBig {
                tag: leading_tag(buf),
                size: literal.length,
                limit,
                synchronizing: literal.synchronizing,
                discard,
            };
            return Err(self.fail(e));
        }
        let total = line_end as u64 + literal.length;
        if total > self.limits.max_message {
            let e = FrameError::MessageTooBig {
                tag: leading_tag(buf),
                size: total,
                limit: self.limits.max_message,
                discard,
            };
            return Err(self.fail(e));
        }
        let Ok(end) = usize::try_from(total) else {
            let e = FrameError::MessageTooBig {
                tag: leading_tag(buf),
                size: total,
                limit: self.limits.max_message,
                discard,
            };
            return Err(self.fail(e));
        };
        let ann = LiteralAnnounced {
            tag: leading_tag(buf),
            literal,
            data_start: line_end,
        };
        self.literal_end = Some(end);
        if literal.synchronizing {
            self.pending = Some(ann.clone());
        }
        Ok(CommandProgress::LiteralAnnounced(ann))
    }

    /// Accepts the pending synchronizing literal: the caller sends a
    /// continuation request and calls [`CommandFramer::next`] again. Does
    /// nothing when no literal is pending.
    pub fn accept_literal(&mut self) {
        self.pending = None;
    }

    /// Refuses the pending synchronizing literal. Returns the number of
    /// bytes to drop from the front of the buffer (the command so far; the
    /// client will not send the literal nor the rest of the command); the
    /// caller answers with a tagged NO or BAD. Returns `None` (and does
    /// nothing) when no literal is pending.
    pub fn reject_literal(&mut self) -> Option<usize> {
        let p = self.pending.take()?;
        self.reset();
        Some(p.data_start)
    }

    /// Reads one line outside command framing: an AUTHENTICATE
    /// continuation line (RFC 9051 section 6.2.2) or the `DONE` that ends
    /// IDLE (RFC 2177). Call only between commands (after a `Complete`).
    /// Literals are not recognized in such a line.
    pub fn next_line(&mut self, buf: &[u8]) -> Result<LineProgress, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match scan_line(buf, 0, self.scanned, self.limits.max_line) {
            Ok(LineScan::Incomplete) => {
                self.scanned = buf.len();
                Ok(LineProgress::Incomplete)
            }
            Ok(LineScan::End(len)) => {
                self.reset();
                Ok(LineProgress::Line { len })
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// What [`ResponseFramer::next`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseProgress {
    /// More bytes are needed.
    Incomplete,
    /// `buf[..len]` is one complete response, literals included.
    Complete {
        /// Length of the response in bytes.
        len: usize,
    },
}

/// What [`ResponseFramer::next_segment`] found: a response cut into lines
/// and literal data, so that a large literal can be passed on as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// More bytes are needed.
    Incomplete,
    /// `buf[..len]` is a line, CRLF included. With `literal: None` it ends
    /// the response; otherwise the literal's data follows.
    Line {
        /// Length of the line with its CRLF.
        len: usize,
        /// The literal announced at the end of the line, if any.
        literal: Option<Literal>,
    },
    /// `buf[..len]` is literal data; `remaining` more bytes of the same
    /// literal follow. When `remaining` is 0 a `Line` continues the response.
    LiteralData {
        /// Bytes of literal data at the front of the buffer.
        len: usize,
        /// Bytes of the literal still to come after these.
        remaining: u64,
    },
}

/// Whether a response's first line is a status response or a continuation
/// request, whose text may end in `{n}` without announcing a literal
/// (RFC 9051 `resp-text`; Dovecot echoes mailbox names into such texts).
fn is_text_response(line: &[u8]) -> bool {
    if line.first() == Some(&b'+') {
        return true;
    }
    let Some(sp) = memchr::memchr(b' ', line) else {
        return false;
    };
    let rest = &line[sp + 1..];
    let word_end = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'[')
        .unwrap_or(rest.len());
    let word = &rest[..word_end];
    // "* 3 NO" is not a status: a status always follows the tag directly.
    [&b"OK"[..], b"NO", b"BAD", b"BYE", b"PREAUTH"]
        .iter()
        .any(|s| word.eq_ignore_ascii_case(s))
}

/// Server-side framer: finds complete responses in the bytes a backend
/// sent, in one piece ([`ResponseFramer::next`]) or streaming
/// ([`ResponseFramer::next_segment`]). Use one mode per framer.
///
/// Literals are recognized at the end of lines of data responses only: the
/// text of a status response (`tag OK ...`, `* NO ...`) or a continuation
/// request may end in `{n}` and still end at its CRLF. Servers send only
/// synchronizing-form literals; `{n+}` in a response is not a literal.
#[derive(Debug, Clone)]
pub struct ResponseFramer {
    limits: Limits,
    line_start: usize,
    scanned: usize,
    literal_end: Option<usize>,
    /// Streaming mode: bytes of the current literal still to come.
    literal_remaining: u64,
    /// Streaming mode: whether the next line continues a response.
    continuing: bool,
    /// Streaming mode: bytes of the current response so far.
    message_len: u64,
    failed: Option<FrameError>,
}

impl ResponseFramer {
    /// A framer that enforces `limits` (`max_nonsync_literal` is unused).
    pub fn new(limits: Limits) -> Self {
        ResponseFramer {
            limits,
            line_start: 0,
            scanned: 0,
            literal_end: None,
            literal_remaining: 0,
            continuing: false,
            message_len: 0,
            failed: None,
        }
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.failed = Some(e.clone());
        e
    }

    /// Checks a literal announced at the end of `line`, which is the line
    /// starting at `line_start` of a response starting at 0.
    fn response_literal(
        &self,
        buf: &[u8],
        line: &[u8],
        first_line: bool,
        size_so_far: u64,
    ) -> Result<Option<Literal>, FrameError> {
        if first_line && is_text_response(line) {
            return Ok(None);
        }
        let lit = match literal_suffix(line) {
            Ok(Some((lit, _))) if lit.synchronizing => lit,
            Ok(_) => return Ok(None),
            Err(()) => {
                return Err(FrameError::LiteralLengthOutOfRange {
                    tag: leading_tag(buf),
                })
            }
        };
        if lit.length > self.limits.max_literal {
            return Err(FrameError::LiteralTooBig {
                tag: leading_tag(buf),
                size: lit.length,
                limit: self.limits.max_literal,
                synchronizing: true,
                discard: None,
            });
        }
        let total = size_so_far + lit.length;
        if total > self.limits.max_message {
            return Err(FrameError::MessageTooBig {
                tag: leading_tag(buf),
                size: total,
                limit: self.limits.max_message,
                discard: None,
            });
        }
        Ok(Some(lit))
    }

    /// Looks for the end of the response at the front of `buf` (same
    /// contract as [`CommandFramer::next`]). Every error is fatal here: the
    /// backend broke the protocol or sent more than the limits allow.
    pub fn next(&mut self, buf: &[u8]) -> Result<ResponseProgress, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        loop {
            if let Some(end) = self.literal_end {
                if buf.len() < end {
                    return Ok(ResponseProgress::Incomplete);
                }
                self.literal_end = None;
                self.line_start = end;
                self.scanned = end;
            }
            let line_end = match scan_line(buf, self.line_start, self.scanned, self.limits.max_line)
            {
                Ok(LineScan::Incomplete) => {
                    self.scanned = buf.len();
                    return Ok(ResponseProgress::Incomplete);
                }
                Ok(LineScan::End(e)) => e,
                Err(e) => return Err(self.fail(e)),
            };
            let line = &buf[self.line_start..line_end - 2];
            let first = self.line_start == 0;
            match self.response_literal(buf, line, first, line_end as u64) {
                Ok(None) => {
                    self.line_start = 0;
                    self.scanned = 0;
                    return Ok(ResponseProgress::Complete { len: line_end });
                }
                Ok(Some(lit)) => {
                    // Checked against max_message, which a usize holds on
                    // any platform where the buffer could hold the data.
                    let end = usize::try_from(line_end as u64 + lit.length).unwrap_or(usize::MAX);
                    self.literal_end = Some(end);
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Streaming mode: the next line or piece of literal data at the front
    /// of `buf`. After each `Line` or `LiteralData`, remove its `len` bytes
    /// from the front of the buffer before calling again. A literal is never
    /// buffered: its data is reported as soon as any of it is there.
    pub fn next_segment(&mut self, buf: &[u8]) -> Result<Segment, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.literal_remaining > 0 {
            if buf.is_empty() {
                return Ok(Segment::Incomplete);
            }
            let take = (buf.len() as u64).min(self.literal_remaining);
            self.literal_remaining -= take;
            return Ok(Segment::LiteralData {
                len: take as usize,
                remaining: self.literal_remaining,
            });
        }
        let line_end = match scan_line(buf, 0, self.scanned, self.limits.max_line) {
            Ok(LineScan::Incomplete) => {
                self.scanned = buf.len();
                return Ok(Segment::Incomplete);
            }
            Ok(LineScan::End(e)) => e,
            Err(e) => return Err(self.fail(e)),
        };
        self.scanned = 0;
        let line = &buf[..line_end - 2];
        let first = !self.continuing;
        if first {
            self.message_len = 0;
        }
        self.message_len += line_end as u64;
        match self.response_literal(buf, line, first, self.message_len) {
            Ok(None) => {
                self.continuing = false;
                Ok(Segment::Line {
                    len: line_end,
                    literal: None,
                })
            }
            Ok(Some(lit)) => {
                self.continuing = true;
                self.literal_remaining = lit.length;
                self.message_len += lit.length;
                Ok(Segment::Line {
                    len: line_end,
                    literal: Some(lit),
                })
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits {
            max_line: 100,
            max_literal: 1000,
            max_nonsync_literal: u64::MAX,
            max_message: 5000,
        }
    }

    /// Frames `input` fed in the given chunk sizes, accepting every
    /// synchronizing literal; returns the commands found and the error, if
    /// any.
    fn frame_commands(input: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, Option<FrameError>) {
        let mut f = CommandFramer::new(limits());
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let mut sizes = chunks.iter().copied().cycle();
        loop {
            match f.next(&buf) {
                Ok(CommandProgress::Complete { len }) => {
                    out.push(buf.drain(..len).collect());
                }
                Ok(CommandProgress::LiteralAnnounced(_)) => f.accept_literal(),
                Ok(CommandProgress::Incomplete) => {
                    if fed == input.len() {
                        return (out, None);
                    }
                    let n = sizes.next().unwrap_or(1).max(1).min(input.len() - fed);
                    buf.extend_from_slice(&input[fed..fed + n]);
                    fed += n;
                }
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn simple_commands_end_at_crlf() {
        let (cmds, err) = frame_commands(b"a NOOP\r\nb CAPABILITY\r\n", &[1000]);
        assert_eq!(err, None);
        assert_eq!(
            cmds,
            vec![b"a NOOP\r\n".to_vec(), b"b CAPABILITY\r\n".to_vec()]
        );
    }

    #[test]
    fn rfc9051_login_with_synchronizing_literals_is_one_command() {
        // RFC 9051 section 4.3 style: each literal waits for "+".
        let input = b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\nA002 NOOP\r\n";
        let (cmds, err) = frame_commands(input, &[3]);
        assert_eq!(err, None);
        assert_eq!(
            cmds[0],
            b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n".to_vec()
        );
        assert_eq!(cmds[1], b"A002 NOOP\r\n".to_vec());
    }

    #[test]
    fn synchronizing_literal_waits_for_the_callers_decision() {
        let mut f = CommandFramer::new(limits());
        let buf = b"t1 APPEND INBOX {5}\r\nhello\r\n";
        let ann = match f.next(buf).unwrap() {
            CommandProgress::LiteralAnnounced(a) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(ann.tag, b"t1");
        assert_eq!(
            ann.literal,
            Literal {
                length: 5,
                synchronizing: true,
                binary: false
            }
        );
        assert_eq!(ann.data_start, 21);
        // Still pending: same answer, data not skipped.
        assert_eq!(f.next(buf).unwrap(), CommandProgress::LiteralAnnounced(ann));
        f.accept_literal();
        assert_eq!(
            f.next(buf).unwrap(),
            CommandProgress::Complete { len: buf.len() }
        );
    }

    #[test]
    fn rejected_literal_discards_the_command_and_framing_resumes() {
        let mut f = CommandFramer::new(limits());
        let mut buf = b"t1 APPEND INBOX {5}\r\n".to_vec();
        assert!(matches!(
            f.next(&buf),
            Ok(CommandProgress::LiteralAnnounced(_))
        ));
        let n = f.reject_literal().unwrap();
        assert_eq!(n, buf.len());
        buf.drain(..n);
        buf.extend_from_slice(b"t2 NOOP\r\n");
        assert_eq!(f.next(&buf).unwrap(), CommandProgress::Complete { len: 9 });
        assert_eq!(f.reject_literal(), None);
    }

    #[test]
    fn rfc7888_nonsynchronizing_literal_needs_no_decision() {
        let input = b"A1 APPEND INBOX {5+}\r\nhello\r\nA2 NOOP\r\n";
        let mut f = CommandFramer::new(limits());
        match f.next(input).unwrap() {
            CommandProgress::LiteralAnnounced(a) => {
                assert!(!a.literal.synchronizing);
                assert_eq!(a.literal.length, 5);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            f.next(input).unwrap(),
            CommandProgress::Complete { len: 29 }
        );
    }

    #[test]
    fn rfc3516_binary_literal_is_recognized_and_may_hold_crlf_and_nul() {
        let input = b"A1 APPEND INBOX ~{6}\r\n\0\r\n{1}\r\n";
        let mut f = CommandFramer::new(limits());
        match f.next(input).unwrap() {
            CommandProgress::LiteralAnnounced(a) => {
                assert!(a.literal.binary && a.literal.synchronizing);
                assert_eq!(a.literal.length, 6);
            }
            other => panic!("{other:?}"),
        }
        f.accept_literal();
        assert_eq!(
            f.next(input).unwrap(),
            CommandProgress::Complete { len: input.len() }
        );
        assert_eq!(
            literal_suffix(b"x ~{7+}").unwrap(),
            Some((
                Literal {
                    length: 7,
                    synchronizing: false,
                    binary: true
                },
                2
            ))
        );
    }

    #[test]
    fn minus_form_is_not_a_literal() {
        // RFC 7888 has no "{n-}"; a backend would not wait for data either.
        let (cmds, err) = frame_commands(b"a LOGIN {5-}\r\nb NOOP\r\n", &[1000]);
        assert_eq!(err, None);
        assert_eq!(
            cmds,
            vec![b"a LOGIN {5-}\r\n".to_vec(), b"b NOOP\r\n".to_vec()]
        );
    }

    #[test]
    fn literal_suffix_rejects_lookalikes() {
        for line in [&b"a {}"[..], b"a 5}", b"{5", b"a {+}", b"a {5 }", b"}"] {
            assert_eq!(literal_suffix(line), Ok(None), "{line:?}");
        }
        assert_eq!(literal_suffix(b"a {99999999999999999999}"), Err(()));
        assert_eq!(literal_suffix(b"a {9223372036854775808}"), Err(()));
        assert!(literal_suffix(b"a {9223372036854775807}")
            .unwrap()
            .is_some());
    }

    #[test]
    fn too_long_line_is_fatal_even_without_lf() {
        let mut f = CommandFramer::new(limits());
        let buf = vec![b'x'; 101];
        let e = f.next(&buf).unwrap_err();
        assert!(matches!(e, FrameError::LineTooLong { limit: 100, .. }));
        assert_eq!(e.discard(), None);
        assert_eq!(f.next(b"a NOOP\r\n").unwrap_err(), e);
    }

    #[test]
    fn line_of_exactly_max_line_is_accepted() {
        let mut line = vec![b'a'; 98];
        line.extend_from_slice(b"\r\n");
        let mut f = CommandFramer::new(limits());
        assert_eq!(
            f.next(&line).unwrap(),
            CommandProgress::Complete { len: 100 }
        );
        let mut f = CommandFramer::new(limits());
        line.insert(0, b'a');
        assert!(matches!(f.next(&line), Err(FrameError::LineTooLong { .. })));
    }

    #[test]
    fn bare_lf_is_fatal() {
        let mut f = CommandFramer::new(limits());
        let e = f.next(b"a1 NOOP\nb2 NOOP\r\n").unwrap_err();
        assert_eq!(
            e,
            FrameError::BareLineFeed {
                tag: b"a1".to_vec()
            }
        );
    }

    #[test]
    fn too_big_synchronizing_literal_is_refused_and_resumable() {
        let mut f = CommandFramer::new(limits());
        let mut buf = b"x APPEND INBOX {1001}\r\n".to_vec();
        let e = f.next(&buf).unwrap_err();
        assert_eq!(
            e,
            FrameError::LiteralTooBig {
                tag: b"x".to_vec(),
                size: 1001,
                limit: 1000,
                synchronizing: true,
                discard: Some(buf.len()),
            }
        );
        buf.drain(..e.discard().unwrap());
        buf.extend_from_slice(b"y NOOP\r\n");
        assert_eq!(f.next(&buf).unwrap(), CommandProgress::Complete { len: 8 });
    }

    #[test]
    fn too_big_nonsynchronizing_literal_is_fatal() {
        let mut f = CommandFramer::new(limits());
        let e = f.next(b"x APPEND INBOX {1001+}\r\n").unwrap_err();
        assert!(matches!(
            e,
            FrameError::LiteralTooBig {
                synchronizing: false,
                discard: None,
                ..
            }
        ));
    }

    #[test]
    fn literal_minus_limit_applies_to_nonsynchronizing_literals_only() {
        let mut f = CommandFramer::new(Limits {
            max_nonsync_literal: 4096,
            ..Limits::default()
        });
        assert!(matches!(
            f.next(b"x APPEND INBOX {4097+}\r\n"),
            Err(FrameError::LiteralTooBig { limit: 4096, .. })
        ));
        let mut f = CommandFramer::new(Limits {
            max_nonsync_literal: 4096,
            ..Limits::default()
        });
        assert!(matches!(
            f.next(b"x APPEND INBOX {4097}\r\n"),
            Ok(CommandProgress::LiteralAnnounced(_))
        ));
    }

    #[test]
    fn many_literals_cannot_exceed_max_message() {
        let mut input = Vec::new();
        input.extend_from_slice(b"m APPEND INBOX {900+}\r\n");
        for _ in 0..6 {
            input.extend(std::iter::repeat_n(b'z', 900));
            input.extend_from_slice(b" {900+}\r\n");
        }
        let (cmds, err) = frame_commands(&input, &[4096]);
        assert!(cmds.is_empty());
        assert!(matches!(
            err,
            Some(FrameError::MessageTooBig {
                limit: 5000,
                discard: None,
                ..
            })
        ));
    }

    #[test]
    fn authenticate_continuation_and_idle_done_are_read_as_lines() {
        let mut f = CommandFramer::new(limits());
        let buf = b"a AUTHENTICATE PLAIN\r\ndGVzdAB0ZXN0AHRlc3Q=\r\n";
        assert_eq!(f.next(buf).unwrap(), CommandProgress::Complete { len: 22 });
        let rest = &buf[22..];
        assert_eq!(f.next_line(&rest[..5]).unwrap(), LineProgress::Incomplete);
        assert_eq!(
            f.next_line(rest).unwrap(),
            LineProgress::Line { len: rest.len() }
        );
        // A line that looks like a literal is still just a line here.
        assert_eq!(
            f.next_line(b"{5}\r\n").unwrap(),
            LineProgress::Line { len: 5 }
        );
        assert_eq!(
            f.next_line(b"DONE\r\n").unwrap(),
            LineProgress::Line { len: 6 }
        );
    }

    #[test]
    fn response_with_fetch_literal_is_one_response() {
        let input = b"* 1 FETCH (UID 7 BODY[] {5}\r\nhello)\r\na OK done\r\n";
        let mut f = ResponseFramer::new(limits());
        assert_eq!(
            f.next(input).unwrap(),
            ResponseProgress::Complete { len: 37 }
        );
        assert_eq!(
            f.next(&input[37..]).unwrap(),
            ResponseProgress::Complete { len: 11 }
        );
    }

    #[test]
    fn status_response_text_ending_in_braces_is_not_a_literal() {
        // Dovecot echoes mailbox names into the text of NO responses.
        let input = b"a3 NO [NONEXISTENT] Mailbox doesn't exist: x{5}\r\n* 1 EXISTS\r\n";
        let mut f = ResponseFramer::new(limits());
        assert_eq!(
            f.next(input).unwrap(),
            ResponseProgress::Complete { len: 49 }
        );
        let mut f = ResponseFramer::new(limits());
        assert_eq!(
            f.next(b"+ {3}\r\n").unwrap(),
            ResponseProgress::Complete { len: 7 }
        );
        let mut f = ResponseFramer::new(limits());
        assert_eq!(
            f.next(b"* BYE {3}\r\n").unwrap(),
            ResponseProgress::Complete { len: 11 }
        );
    }

    #[test]
    fn streaming_reports_literal_data_as_it_arrives() {
        let mut f = ResponseFramer::new(limits());
        let mut buf = b"* 1 FETCH (BODY[] {10}\r\nhel".to_vec();
        assert_eq!(
            f.next_segment(&buf).unwrap(),
            Segment::Line {
                len: 24,
                literal: Some(Literal {
                    length: 10,
                    synchronizing: true,
                    binary: false
                })
            }
        );
        buf.drain(..24);
        assert_eq!(
            f.next_segment(&buf).unwrap(),
            Segment::LiteralData {
                len: 3,
                remaining: 7
            }
        );
        buf.clear();
        assert_eq!(f.next_segment(&buf).unwrap(), Segment::Incomplete);
        buf.extend_from_slice(b"lo worldUID 5)\r\n");
        assert_eq!(
            f.next_segment(&buf).unwrap(),
            Segment::LiteralData {
                len: 7,
                remaining: 0
            }
        );
        buf.drain(..7);
        // "UID 5)" continues the FETCH: even if it ended in "{3}" it would be
        // a literal, since it is not the first line.
        assert_eq!(
            f.next_segment(&buf).unwrap(),
            Segment::Line {
                len: 9,
                literal: None
            }
        );
    }

    #[test]
    fn response_limits_admit_a_long_search_line() {
        let mut line = b"* SEARCH".to_vec();
        for uid in 1..200_000u32 {
            line.extend_from_slice(format!(" {uid}").as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        let mut f = ResponseFramer::new(Limits::responses());
        assert_eq!(
            f.next(&line).unwrap(),
            ResponseProgress::Complete { len: line.len() }
        );
        let mut f = ResponseFramer::new(Limits::default());
        assert!(matches!(f.next(&line), Err(FrameError::LineTooLong { .. })));
    }

    #[test]
    fn response_literal_over_limit_is_an_error() {
        let mut f = ResponseFramer::new(limits());
        assert!(matches!(
            f.next(b"* 1 FETCH (BODY[] {1001}\r\n"),
            Err(FrameError::LiteralTooBig { size: 1001, .. })
        ));
    }

    /// Splits `input` by the given chunk sizes and frames responses with
    /// both modes; returns complete responses.
    fn frame_responses(input: &[u8], chunks: &[usize]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut whole = Vec::new();
        let mut streamed = Vec::new();
        let mut f = ResponseFramer::new(limits());
        let mut s = ResponseFramer::new(limits());
        let mut buf = Vec::new();
        let mut sbuf = Vec::new();
        let mut cur = Vec::new();
        let mut fed = 0;
        let mut sizes = chunks.iter().copied().cycle();
        loop {
            let mut progressed = false;
            if let Ok(ResponseProgress::Complete { len }) = f.next(&buf) {
                whole.push(buf.drain(..len).collect());
                progressed = true;
            }
            match s.next_segment(&sbuf) {
                Ok(Segment::Line { len, literal }) => {
                    cur.extend(sbuf.drain(..len));
                    if literal.is_none() {
                        streamed.push(std::mem::take(&mut cur));
                    }
                    progressed = true;
                }
                Ok(Segment::LiteralData { len, .. }) => {
                    cur.extend(sbuf.drain(..len));
                    progressed = true;
                }
                _ => {}
            }
            if !progressed {
                if fed == input.len() {
                    return (whole, streamed);
                }
                let n = sizes.next().unwrap_or(1).max(1).min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                sbuf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
    }

    fn command_strategy() -> impl Strategy<Value = Vec<u8>> {
        let atom = "[A-Za-z0-9]{1,8}";
        let lit = (
            proptest::collection::vec(any::<u8>(), 0..40),
            any::<bool>(),
            any::<bool>(),
        );
        (
            atom,
            proptest::collection::vec((atom, proptest::option::of(lit)), 0..4),
        )
            .prop_map(|(tag, parts)| {
                let mut v = tag.into_bytes();
                v.extend_from_slice(b" X");
                for (word, lit) in parts {
                    v.push(b' ');
                    v.extend_from_slice(word.as_bytes());
                    if let Some((data, plus, tilde)) = lit {
                        v.push(b' ');
                        if tilde {
                            v.push(b'~');
                        }
                        v.extend_from_slice(
                            format!("{{{}{}}}\r\n", data.len(), if plus { "+" } else { "" })
                                .as_bytes(),
                        );
                        v.extend_from_slice(&data);
                    }
                }
                v.extend_from_slice(b"\r\n");
                v
            })
    }

    proptest! {
        #[test]
        fn any_split_of_commands_gives_the_same_frames(
            cmds in proptest::collection::vec(command_strategy(), 1..5),
            chunks in proptest::collection::vec(1usize..50, 1..10),
        ) {
            let input: Vec<u8> = cmds.concat();
            let (got, err) = frame_commands(&input, &chunks);
            prop_assert_eq!(err, None);
            prop_assert_eq!(got, cmds);
        }

        #[test]
        fn any_split_of_responses_gives_the_same_frames_in_both_modes(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 1..5),
            chunks in proptest::collection::vec(1usize..50, 1..10),
        ) {
            let mut expected = Vec::new();
            for (i, b) in bodies.iter().enumerate() {
                let mut r = format!("* {} FETCH (UID {} BODY[] {{{}}}\r\n", i + 1, i + 10, b.len()).into_bytes();
                r.extend_from_slice(b);
                r.extend_from_slice(b")\r\n");
                expected.push(r);
                expected.push(format!("* {} EXISTS\r\n", i).into_bytes());
            }
            expected.push(b"a1 OK [READ-WRITE] {2} done\r\n".to_vec());
            let input = expected.concat();
            let (whole, streamed) = frame_responses(&input, &chunks);
            prop_assert_eq!(&whole, &expected);
            prop_assert_eq!(&streamed, &expected);
        }

        #[test]
        fn framer_never_panics_and_never_overreads(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut f = CommandFramer::new(limits());
            let mut buf = input.clone();
            for _ in 0..50 {
                match f.next(&buf) {
                    Ok(CommandProgress::Complete { len }) => {
                        prop_assert!(len <= buf.len() && len > 0);
                        buf.drain(..len);
                    }
                    Ok(CommandProgress::LiteralAnnounced(a)) => {
                        prop_assert!(a.data_start <= buf.len());
                        f.accept_literal();
                    }
                    Ok(CommandProgress::Incomplete) | Err(_) => break,
                }
            }
            let mut r = ResponseFramer::new(limits());
            let _ = r.next(&input);
        }
    }
}
