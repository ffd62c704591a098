//! Client commands: parsed enough for tandem to act on them, with the
//! spans of every part that may be rewritten (UID sets, mailbox names).
//!
//! A [`Command`] borrows the buffer it was parsed from and holds offsets
//! into it, never copies: the proxy forwards the original bytes and
//! re-encodes only rewritten spans (see [`crate::rewrite`]).
//!
//! Invariants, one line each:
//! - A command tandem acts on either parses completely (every byte up to the
//!   final CRLF accounted for by the grammar) or is an error: a mutation is
//!   never half-understood.
//! - A command tandem does not act on is [`CommandBody::Other`] only if its
//!   arguments are well-formed IMAP tokens (atoms, strings, literals, lists),
//!   so a quoted string or literal can never hide a second command.
//! - `Debug` of a command shows offsets, never bytes: a LOGIN password or a
//!   SASL response cannot reach a log through it.

use std::fmt;

use crate::lexer::{is_tag_char, Lexer, ParseError, Span, StrToken, Upper, DEFAULT_MAX_DEPTH};
use crate::seqset::SequenceSet;

/// A sequence set or UID set argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetArg {
    /// A set as written.
    Set {
        /// The set.
        set: SequenceSet,
        /// Where it is in the buffer.
        span: Span,
    },
    /// `$`: the result saved by a previous SEARCH (RFC 5182 SEARCHRES). It
    /// names backend-local state and is never rewritten.
    Saved {
        /// Where it is in the buffer.
        span: Span,
    },
}

impl SetArg {
    /// Where the argument is in the buffer.
    pub fn span(&self) -> Span {
        match self {
            SetArg::Set { span, .. } | SetArg::Saved { span } => *span,
        }
    }
}

/// How STORE changes flags (RFC 9051 section 6.4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// One message of an APPEND (several with MULTIAPPEND, RFC 3502).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    /// Spans of the flags (`\Seen`, `$Label`), without the parentheses.
    pub flags: Vec<Span>,
    /// The date-time string, if given.
    pub date: Option<StrToken>,
    /// The message literal (`{n}`, `{n+}` or `~{n}`).
    pub message: StrToken,
}

/// What a command asks for. Spans point into the buffer given to
/// [`Command::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    /// CAPABILITY.
    Capability,
    /// NOOP.
    Noop,
    /// LOGOUT.
    Logout,
    /// STARTTLS.
    StartTls,
    /// IDLE (RFC 2177); the proxy then reads lines until `DONE`.
    Idle,
    /// CHECK.
    Check,
    /// CLOSE (expunges silently in a read-write mailbox: a mutation).
    Close,
    /// UNSELECT (RFC 3691).
    Unselect,
    /// LOGIN user password.
    Login {
        /// The user name.
        user: StrToken,
        /// The password. Never log its value.
        password: StrToken,
    },
    /// AUTHENTICATE mechanism \[initial-response\] (RFC 9051 section 6.2.2,
    /// RFC 4959 SASL-IR).
    Authenticate {
        /// The mechanism name, e.g. `PLAIN`.
        mechanism: Span,
        /// The base64 initial response, or `=` for an empty one.
        initial: Option<Span>,
    },
    /// SELECT mailbox \[params\].
    Select {
        /// The mailbox.
        mailbox: StrToken,
        /// Raw parameter list, e.g. `(CONDSTORE)`.
        params: Option<Span>,
    },
    /// EXAMINE mailbox \[params\].
    Examine {
        /// The mailbox.
        mailbox: StrToken,
        /// Raw parameter list.
        params: Option<Span>,
    },
    /// CREATE mailbox \[params\].
    Create {
        /// The mailbox.
        mailbox: StrToken,
        /// Raw parameter list (RFC 4466).
        params: Option<Span>,
    },
    /// DELETE mailbox.
    Delete {
        /// The mailbox.
        mailbox: StrToken,
    },
    /// RENAME from to.
    Rename {
        /// Existing name.
        from: StrToken,
        /// New name.
        to: StrToken,
    },
    /// SUBSCRIBE mailbox.
    Subscribe {
        /// The mailbox.
        mailbox: StrToken,
    },
    /// UNSUBSCRIBE mailbox.
    Unsubscribe {
        /// The mailbox.
        mailbox: StrToken,
    },
    /// STATUS mailbox (items).
    Status {
        /// The mailbox.
        mailbox: StrToken,
        /// The item names (`MESSAGES`, `UIDNEXT`, ...).
        items: Vec<Span>,
    },
    /// APPEND mailbox, one or more messages (MULTIAPPEND).
    Append {
        /// The mailbox.
        mailbox: StrToken,
        /// The messages, in order.
        messages: Vec<AppendMessage>,
    },
    /// COPY / UID COPY set mailbox.
    Copy {
        /// Message numbers or UIDs ([`Command::uid`]).
        set: SetArg,
        /// Destination.
        mailbox: StrToken,
    },
    /// MOVE / UID MOVE set mailbox (RFC 6851).
    Move {
        /// Message numbers or UIDs.
        set: SetArg,
        /// Destination.
        mailbox: StrToken,
    },
    /// STORE / UID STORE set \[modifiers\] (+|-)FLAGS[.SILENT] flags.
    Store {
        /// Message numbers or UIDs.
        set: SetArg,
        /// Raw modifier list, e.g. `(UNCHANGEDSINCE 5)` (RFC 7162).
        modifiers: Option<Span>,
        /// Replace, add or remove.
        mode: StoreMode,
        /// `.SILENT`.
        silent: bool,
        /// Spans of the flags and keywords.
        flags: Vec<Span>,
    },
    /// EXPUNGE, or UID EXPUNGE set (RFC 4315) when `uids` is given.
    Expunge {
        /// The UIDs of UID EXPUNGE.
        uids: Option<SetArg>,
    },
    /// FETCH / UID FETCH set items \[modifiers\].
    Fetch {
        /// Message numbers or UIDs.
        set: SetArg,
        /// Raw item or list of items.
        items: Span,
        /// Raw modifier list, e.g. `(CHANGEDSINCE 5 VANISHED)`.
        modifiers: Option<Span>,
    },
    /// SEARCH / UID SEARCH.
    Search {
        /// Raw `RETURN (...)` options (RFC 4731 ESEARCH).
        ret: Option<Span>,
        /// The CHARSET argument.
        charset: Option<StrToken>,
        /// All criteria, raw.
        criteria: Span,
        /// Every `UID set` criterion, at any depth (these are UIDs even in
        /// a plain SEARCH); bare sets are message numbers and are not here.
        uid_criteria: Vec<SetArg>,
    },
    /// ENABLE capabilities (RFC 5161).
    Enable {
        /// The capability names.
        capabilities: Vec<Span>,
    },
    /// ID params (RFC 2971), raw (`NIL` or a list).
    Id {
        /// The parameter list.
        params: Span,
    },
    /// COMPRESS mechanism (RFC 4978).
    Compress {
        /// The mechanism, e.g. `DEFLATE`.
        mechanism: Span,
    },
    /// A command tandem does not act on; forwarded byte for byte.
    Other,
}

/// A parsed command. Its `Debug` shows the tag, the name and the offsets
/// of the parts, never the bytes of the buffer (which may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Command<'a> {
    /// The whole command, as given to [`Command::parse`].
    pub buf: &'a [u8],
    /// The tag.
    pub tag: Span,
    /// The command name (after `UID ` for the UID forms).
    pub name: Span,
    /// Whether this is a `UID` form: its set holds UIDs.
    pub uid: bool,
    /// What it asks for.
    pub body: CommandBody,
}

impl fmt::Debug for Command<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Command")
            .field("tag", &String::from_utf8_lossy(self.tag()))
            .field("name", &String::from_utf8_lossy(self.name()))
            .field("uid", &self.uid)
            .field("len", &self.buf.len())
            .field("body", &self.body)
            .finish()
    }
}

impl<'a> Command<'a> {
    /// Parses one complete command (as cut by [`crate::frame::CommandFramer`],
    /// CRLF included) with the default nesting limit.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        Self::parse_with_depth(buf, DEFAULT_MAX_DEPTH)
    }

    /// Parses one complete command; lists may nest `max_depth` deep.
    pub fn parse_with_depth(buf: &'a [u8], max_depth: usize) -> Result<Self, ParseError> {
        let mut l = Lexer::new(buf, max_depth);
        let tag = l.take_while1(is_tag_char, "tag")?;
        l.sp()?;
        let mut name = l.take_while1(
            |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
            "command name",
        )?;
        let mut uid = false;
        if name.of(buf).eq_ignore_ascii_case(b"UID") {
            uid = true;
            l.sp()?;
            name = l.take_while1(
                |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
                "command name",
            )?;
        }
        let upper = Upper::of(name.of(buf));
        let body = if uid {
            match &upper[..] {
                b"COPY" => copy_or_move(&mut l, false)?,
                b"MOVE" => copy_or_move(&mut l, true)?,
                b"STORE" => store(&mut l)?,
                b"FETCH" => fetch(&mut l)?,
                b"SEARCH" => search(&mut l)?,
                b"EXPUNGE" => {
                    l.sp()?;
                    CommandBody::Expunge {
                        uids: Some(set_arg(&mut l)?),
                    }
                }
                _ => other(&mut l)?,
            }
        } else {
            match &upper[..] {
                b"CAPABILITY" => CommandBody::Capability,
                b"NOOP" => CommandBody::Noop,
                b"LOGOUT" => CommandBody::Logout,
                b"STARTTLS" => CommandBody::StartTls,
                b"IDLE" => CommandBody::Idle,
                b"CHECK" => CommandBody::Check,
                b"CLOSE" => CommandBody::Close,
                b"UNSELECT" => CommandBody::Unselect,
                b"EXPUNGE" => CommandBody::Expunge { uids: None },
                b"LOGIN" => {
                    l.sp()?;
                    let user = l.astring()?;
                    l.sp()?;
                    let password = l.astring()?;
                    CommandBody::Login { user, password }
                }
                b"AUTHENTICATE" => {
                    l.sp()?;
                    let mechanism = l.atom()?;
                    let initial = if l.eat(b' ') {
                        Some(l.take_while1(
                            |b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='),
                            "base64",
                        )?)
                    } else {
                        None
                    };
                    CommandBody::Authenticate { mechanism, initial }
                }
                b"SELECT" | b"EXAMINE" | b"CREATE" => {
                    l.sp()?;
                    let mailbox = l.mailbox()?;
                    let params = if l.eat(b' ') {
                        Some(list(&mut l)?)
                    } else {
                        None
                    };
                    match &upper[..] {
                        b"SELECT" => CommandBody::Select { mailbox, params },
                        b"EXAMINE" => CommandBody::Examine { mailbox, params },
                        _ => CommandBody::Create { mailbox, params },
                    }
                }
                b"DELETE" | b"SUBSCRIBE" | b"UNSUBSCRIBE" => {
                    l.sp()?;
                    let mailbox = l.mailbox()?;
                    match &upper[..] {
                        b"DELETE" => CommandBody::Delete { mailbox },
                        b"SUBSCRIBE" => CommandBody::Subscribe { mailbox },
                        _ => CommandBody::Unsubscribe { mailbox },
                    }
                }
                b"RENAME" => {
                    l.sp()?;
                    let from = l.mailbox()?;
                    l.sp()?;
                    let to = l.mailbox()?;
                    CommandBody::Rename { from, to }
                }
                b"STATUS" => {
                    l.sp()?;
                    let mailbox = l.mailbox()?;
                    l.sp()?;
                    let (items, _) = l.atom_list()?;
                    CommandBody::Status { mailbox, items }
                }
                b"APPEND" => append(&mut l)?,
                b"COPY" => copy_or_move(&mut l, false)?,
                b"MOVE" => copy_or_move(&mut l, true)?,
                b"STORE" => store(&mut l)?,
                b"FETCH" => fetch(&mut l)?,
                b"SEARCH" => search(&mut l)?,
                b"ENABLE" => {
                    let mut capabilities = Vec::new();
                    while l.eat(b' ') {
                        capabilities.push(l.atom()?);
                    }
                    if capabilities.is_empty() {
                        return Err(l.err("capability"));
                    }
                    CommandBody::Enable { capabilities }
                }
                b"ID" => {
                    l.sp()?;
                    let params = l.value()?;
                    CommandBody::Id { params }
                }
                b"LIST" => list_args(&mut l, false)?,
                b"LSUB" => list_args(&mut l, true)?,
                b"COMPRESS" => {
                    l.sp()?;
                    CommandBody::Compress {
                        mechanism: l.atom()?,
                    }
                }
                _ => other(&mut l)?,
            }
        };
        l.end()?;
        Ok(Command {
            buf,
            tag,
            name,
            uid,
            body,
        })
    }

    /// The tag's bytes.
    pub fn tag(&self) -> &'a [u8] {
        self.tag.of(self.buf)
    }

    /// The command name's bytes as written (after `UID `).
    pub fn name(&self) -> &'a [u8] {
        self.name.of(self.buf)
    }

    /// Every set argument that holds UIDs of the selected mailbox and so
    /// must be rewritten canonical -> local: the set of a UID command and
    /// the `UID` criteria of a SEARCH.
    pub fn uid_sets(&self) -> Vec<&SetArg> {
        let main = match &self.body {
            CommandBody::Copy { set, .. }
            | CommandBody::Move { set, .. }
            | CommandBody::Store { set, .. }
            | CommandBody::Fetch { set, .. }
                if self.uid =>
            {
                Some(set)
            }
            CommandBody::Expunge { uids: Some(set) } => Some(set),
            _ => None,
        };
        let mut v: Vec<&SetArg> = main.into_iter().collect();
        if let CommandBody::Search { uid_criteria, .. } = &self.body {
            v.extend(uid_criteria.iter());
        }
        v
    }

    /// Whether the command may carry UIDs (or a UIDVALIDITY) that this
    /// parser does not locate, so that [`Command::uid_sets`] is not the
    /// whole story: a `UID` form of a command it does not know (`UID SORT`,
    /// `UID THREAD`, ...), SORT and THREAD (RFC 5256: their criteria may hold
    /// `UID set`, their results are UIDs after `UID`), and SELECT / EXAMINE
    /// with QRESYNC parameters (RFC 7162: UIDVALIDITY and known UIDs). The
    /// proxy must not forward such a command untranslated: answer BAD, and
    /// keep SORT, THREAD and QRESYNC out of the advertised capabilities.
    pub fn has_unparsed_uids(&self) -> bool {
        match &self.body {
            CommandBody::Other => {
                let name = Upper::of(self.name());
                self.uid || matches!(&name[..], b"SORT" | b"THREAD" | b"ESEARCH")
            }
            CommandBody::Select {
                params: Some(p), ..
            }
            | CommandBody::Examine {
                params: Some(p), ..
            } => p
                .of(self.buf)
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"QRESYNC")),
            _ => false,
        }
    }

    /// Every mailbox name argument, in order.
    pub fn mailboxes(&self) -> Vec<&StrToken> {
        match &self.body {
            CommandBody::Select { mailbox, .. }
            | CommandBody::Examine { mailbox, .. }
            | CommandBody::Create { mailbox, .. }
            | CommandBody::Delete { mailbox }
            | CommandBody::Subscribe { mailbox }
            | CommandBody::Unsubscribe { mailbox }
            | CommandBody::Status { mailbox, .. }
            | CommandBody::Append { mailbox, .. }
            | CommandBody::Copy { mailbox, .. }
            | CommandBody::Move { mailbox, .. } => vec![mailbox],
            CommandBody::Rename { from, to } => vec![from, to],
            _ => Vec::new(),
        }
    }

    /// Whether the command changes mailbox state and so must go through the
    /// replicated log: APPEND, COPY, MOVE, STORE, EXPUNGE, CLOSE, CREATE,
    /// DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE. (SELECT clears `\Recent`,
    /// FETCH BODY[] sets `\Seen`: implicit flag changes are the proxy's call.)
    pub fn is_mutation(&self) -> bool {
        matches!(
            self.body,
            CommandBody::Append { .. }
                | CommandBody::Copy { .. }
                | CommandBody::Move { .. }
                | CommandBody::Store { .. }
                | CommandBody::Expunge { .. }
                | CommandBody::Close
                | CommandBody::Create { .. }
                | CommandBody::Delete { .. }
                | CommandBody::Rename { .. }
                | CommandBody::Subscribe { .. }
                | CommandBody::Unsubscribe { .. }
        )
    }
}

/// A line a client sends during AUTHENTICATE, read with
/// [`crate::frame::CommandFramer::next_line`] (RFC 9051 section 6.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLine {
    /// `*`: the client cancels; answer with a tagged BAD.
    Cancel,
    /// A base64 response (possibly empty); the span excludes the CRLF.
    Response(Span),
}

/// Parses an AUTHENTICATE continuation line (CRLF included).
pub fn parse_auth_line(line: &[u8]) -> Result<AuthLine, ParseError> {
    let mut l = Lexer::new(line, 1);
    if l.eat(b'*') {
        l.end()?;
        return Ok(AuthLine::Cancel);
    }
    let start = l.pos;
    while l
        .peek()
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        l.pos += 1;
    }
    let span = Span { start, end: l.pos };
    l.end()?;
    Ok(AuthLine::Response(span))
}

/// The credentials of a SASL PLAIN response (RFC 4616). `Debug` never
/// shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslPlain {
    /// The identity to act as; empty when the same as `authcid`.
    pub authzid: Vec<u8>,
    /// The identity whose password is given.
    pub authcid: Vec<u8>,
    /// The password. Never log it.
    pub password: Vec<u8>,
}

impl fmt::Debug for SaslPlain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslPlain")
            .field("authzid", &String::from_utf8_lossy(&self.authzid))
            .field("authcid", &String::from_utf8_lossy(&self.authcid))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a SASL PLAIN response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not valid base64.
    #[error("SASL response is not valid base64")]
    Base64,
    /// Not `authzid NUL authcid NUL password` with non-empty authcid and
    /// password.
    #[error("malformed SASL PLAIN message")]
    Malformed,
}

/// Decodes a base64 SASL PLAIN response, as given in AUTHENTICATE's
/// initial response or continuation line (`=` is an empty response).
pub fn sasl_plain(b64: &[u8]) -> Result<SaslPlain, SaslError> {
    use base64::Engine as _;
    let raw = if b64 == b"=" {
        Vec::new()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| SaslError::Base64)?
    };
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(SaslPlain {
        authzid: authzid.to_vec(),
        authcid: authcid.to_vec(),
        password: password.to_vec(),
    })
}

/// Whether `line` (CRLF included) is the `DONE` that ends IDLE (RFC 2177),
/// in any case.
pub fn is_idle_done(line: &[u8]) -> bool {
    line.len() == 6 && line[..4].eq_ignore_ascii_case(b"DONE") && &line[4..] == b"\r\n"
}

/// A parenthesized list, raw.
fn list(l: &mut Lexer<'_>) -> Result<Span, ParseError> {
    if !l.at(b'(') {
        return Err(l.err("("));
    }
    l.value()
}

fn set_arg(l: &mut Lexer<'_>) -> Result<SetArg, ParseError> {
    if l.at(b'$') {
        let start = l.pos;
        l.pos += 1;
        return Ok(SetArg::Saved {
            span: Span { start, end: l.pos },
        });
    }
    let (set, span) = l.seqset()?;
    Ok(SetArg::Set { set, span })
}

fn copy_or_move(l: &mut Lexer<'_>, is_move: bool) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let set = set_arg(l)?;
    l.sp()?;
    let mailbox = l.mailbox()?;
    Ok(if is_move {
        CommandBody::Move { set, mailbox }
    } else {
        CommandBody::Copy { set, mailbox }
    })
}

/// A flag or keyword: `\Seen`, `$Label`, `NonJunk`.
fn flag(l: &mut Lexer<'_>) -> Result<Span, ParseError> {
    let start = l.pos;
    l.eat(b'\\');
    l.atom()?;
    Ok(Span { start, end: l.pos })
}

fn flag_list(l: &mut Lexer<'_>) -> Result<Vec<Span>, ParseError> {
    l.expect(b'(', "(")?;
    let mut v = Vec::new();
    if l.eat(b')') {
        return Ok(v);
    }
    loop {
        v.push(flag(l)?);
        if l.eat(b')') {
            return Ok(v);
        }
        l.sp()?;
    }
}

fn store(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let set = set_arg(l)?;
    l.sp()?;
    let modifiers = if l.at(b'(') {
        let m = list(l)?;
        l.sp()?;
        Some(m)
    } else {
        None
    };
    let mode = if l.eat(b'+') {
        StoreMode::Add
    } else if l.eat(b'-') {
        StoreMode::Remove
    } else {
        StoreMode::Replace
    };
    let silent = if l.keyword(b"FLAGS.SILENT") {
        true
    } else if l.keyword(b"FLAGS") {
        false
    } else {
        return Err(l.err("FLAGS or FLAGS.SILENT"));
    };
    l.sp()?;
    let flags = if l.at(b'(') {
        flag_list(l)?
    } else {
        let mut v = vec![flag(l)?];
        while l.eat(b' ') {
            v.push(flag(l)?);
        }
        v
    };
    Ok(CommandBody::Store {
        set,
        modifiers,
        mode,
        silent,
        flags,
    })
}

fn fetch(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let set = set_arg(l)?;
    l.sp()?;
    let items = l.value()?;
    let modifiers = if l.eat(b' ') { Some(list(l)?) } else { None };
    Ok(CommandBody::Fetch {
        set,
        items,
        modifiers,
    })
}

fn append(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let mailbox = l.mailbox()?;
    let mut messages = Vec::new();
    while l.eat(b' ') {
        let flags = if l.at(b'(') {
            let f = flag_list(l)?;
            l.sp()?;
            f
        } else {
            Vec::new()
        };
        let date = if l.at(b'"') {
            let d = l.quoted()?;
            l.sp()?;
            Some(d)
        } else {
            None
        };
        if !(l.at(b'{') || l.at(b'~')) {
            return Err(l.err("message literal"));
        }
        let message = l.literal()?;
        messages.push(AppendMessage {
            flags,
            date,
            message,
        });
    }
    if messages.is_empty() {
        return Err(l.err("message literal"));
    }
    Ok(CommandBody::Append { mailbox, messages })
}

fn search(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let ret = if l.keyword(b"RETURN") {
        l.sp()?;
        let r = list(l)?;
        l.sp()?;
        Some(r)
    } else {
        None
    };
    let charset = if l.keyword(b"CHARSET") {
        l.sp()?;
        let c = l.astring()?;
        l.sp()?;
        Some(c)
    } else {
        None
    };
    let start = l.pos;
    let mut uid_criteria = Vec::new();
    search_key(l, &mut uid_criteria)?;
    while l.eat(b' ') {
        search_key(l, &mut uid_criteria)?;
    }
    Ok(CommandBody::Search {
        ret,
        charset,
        criteria: Span { start, end: l.pos },
        uid_criteria,
    })
}

/// One search key (RFC 9051 `search-key`, with RFC 7162 MODSEQ, RFC 5032
/// OLDER/YOUNGER, RFC 8474 EMAILID/THREADID, RFC 8514 SAVEDATE, RFC 6203
/// FUZZY). Unknown keys are an error: their arity is unknown, so a UID set
/// after one could not be told from its argument.
fn search_key(l: &mut Lexer<'_>, uids: &mut Vec<SetArg>) -> Result<(), ParseError> {
    if l.at(b'(') {
        l.enter()?;
        l.pos += 1;
        search_key(l, uids)?;
        while l.eat(b' ') {
            search_key(l, uids)?;
        }
        l.expect(b')', ")")?;
        l.leave();
        return Ok(());
    }
    if matches!(l.peek(), Some(b'0'..=b'9' | b'*' | b'$')) {
        set_arg(l)?;
        return Ok(());
    }
    let word = l.atom()?;
    let key = Upper::of(word.of(l.buf));
    match &key[..] {
        b"ALL" | b"ANSWERED" | b"DELETED" | b"DRAFT" | b"FLAGGED" | b"NEW" | b"OLD" | b"RECENT"
        | b"SEEN" | b"UNANSWERED" | b"UNDELETED" | b"UNDRAFT" | b"UNFLAGGED" | b"UNSEEN"
        | b"SAVEDATESUPPORTED" => {}
        b"BCC" | b"BODY" | b"CC" | b"FROM" | b"SUBJECT" | b"TEXT" | b"TO" | b"KEYWORD"
        | b"UNKEYWORD" | b"BEFORE" | b"ON" | b"SINCE" | b"SENTBEFORE" | b"SENTON"
        | b"SENTSINCE" | b"SAVEDBEFORE" | b"SAVEDON" | b"SAVEDSINCE" | b"EMAILID" | b"THREADID" => {
            l.sp()?;
            l.astring()?;
        }
        b"LARGER" | b"SMALLER" | b"OLDER" | b"YOUNGER" => {
            l.sp()?;
            l.number64()?;
        }
        b"HEADER" => {
            l.sp()?;
            l.astring()?;
            l.sp()?;
            l.astring()?;
        }
        b"UID" => {
            l.sp()?;
            uids.push(set_arg(l)?);
        }
        b"NOT" | b"FUZZY" => {
            l.sp()?;
            l.enter()?;
            search_key(l, uids)?;
            l.leave();
        }
        b"OR" => {
            l.sp()?;
            l.enter()?;
            search_key(l, uids)?;
            l.sp()?;
            search_key(l, uids)?;
            l.leave();
        }
        b"MODSEQ" => {
            l.sp()?;
            if l.at(b'"') {
                l.quoted()?;
                l.sp()?;
                l.atom()?;
                l.sp()?;
            }
            l.number64()?;
        }
        _ => {
            return Err(ParseError::Expected {
                expected: "known search key",
                offset: word.start,
            })
        }
    }
    Ok(())
}

/// The arguments of LIST (RFC 9051, with RFC 5258's selection options,
/// several patterns and RETURN options) and LSUB, checked by their grammar
/// and passed on whole (`Other`): a pattern is a `list-mailbox`, so `[`,
/// `]`, `%` and `*` may stand unquoted (`LIST "" foo[bar`).
fn list_args(l: &mut Lexer<'_>, lsub: bool) -> Result<CommandBody, ParseError> {
    l.sp()?;
    if !lsub && l.at(b'(') {
        list(l)?;
        l.sp()?;
    }
    l.mailbox()?;
    l.sp()?;
    if !lsub && l.eat(b'(') {
        loop {
            l.list_mailbox()?;
            if l.eat(b')') {
                break;
            }
            l.sp()?;
        }
    } else {
        l.list_mailbox()?;
    }
    if !lsub && l.eat(b' ') {
        if !l.keyword(b"RETURN") {
            return Err(l.err("RETURN"));
        }
        l.sp()?;
        list(l)?;
    }
    Ok(CommandBody::Other)
}

/// Arguments of a command tandem does not act on: well-formed tokens only.
fn other(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    while l.eat(b' ') {
        l.value()?;
    }
    Ok(CommandBody::Other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::StrKind;

    fn parse(b: &[u8]) -> Command<'_> {
        match Command::parse(b) {
            Ok(c) => c,
            Err(e) => panic!("{e} in {:?}", String::from_utf8_lossy(b)),
        }
    }

    fn set_bytes<'a>(c: &Command<'a>, s: &SetArg) -> &'a [u8] {
        s.span().of(c.buf)
    }

    #[test]
    fn rfc9051_simple_commands() {
        for (line, body) in [
            (&b"a001 CAPABILITY\r\n"[..], CommandBody::Capability),
            (b"a002 NOOP\r\n", CommandBody::Noop),
            (b"A023 LOGOUT\r\n", CommandBody::Logout),
            (b"a002 STARTTLS\r\n", CommandBody::StartTls),
            (b"a002 idle\r\n", CommandBody::Idle),
            (b"A341 CLOSE\r\n", CommandBody::Close),
            (b"A341 UNSELECT\r\n", CommandBody::Unselect),
            (b"A202 EXPUNGE\r\n", CommandBody::Expunge { uids: None }),
        ] {
            assert_eq!(
                parse(line).body,
                body,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn rfc9051_login_with_quoted_and_literal_arguments() {
        let b = b"a001 LOGIN SMITH SESAME\r\n";
        let c = parse(b);
        let CommandBody::Login { user, password } = &c.body else {
            panic!()
        };
        assert_eq!(&*user.value(b), b"SMITH");
        assert_eq!(&*password.value(b), b"SESAME");
        let b = b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man\r\n";
        let c = parse(b);
        let CommandBody::Login { user, password } = &c.body else {
            panic!()
        };
        assert_eq!(&*user.value(b), b"FRED FOOBAR");
        assert_eq!(&*password.value(b), b"fat man");
        // Debug shows offsets only, never the password, in any form.
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("fat man"), "{dbg}");
        assert!(!dbg.contains("102, 97, 116"), "{dbg}");
        assert!(dbg.contains("A001") && dbg.contains("LOGIN"), "{dbg}");
    }

    #[test]
    fn authenticate_plain_with_and_without_initial_response() {
        let b = b"a AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n";
        let c = parse(b);
        let CommandBody::Authenticate { mechanism, initial } = c.body else {
            panic!()
        };
        assert_eq!(mechanism.of(b), b"PLAIN");
        assert_eq!(initial.unwrap().of(b), b"dGVzdAB0ZXN0AHRlc3Q=");
        let b = b"a AUTHENTICATE PLAIN\r\n";
        assert_eq!(
            parse(b).body,
            CommandBody::Authenticate {
                mechanism: Span { start: 15, end: 20 },
                initial: None
            }
        );
        assert!(Command::parse(b"a AUTHENTICATE PLAIN ab cd\r\n").is_err());
    }

    #[test]
    fn select_examine_create_with_mailbox_spans() {
        let b = b"A142 SELECT INBOX\r\n";
        let c = parse(b);
        assert_eq!(c.mailboxes()[0].raw.of(b), b"INBOX");
        let b = b"A142 SELECT \"Sent Items\" (CONDSTORE)\r\n";
        let c = parse(b);
        let CommandBody::Select { mailbox, params } = &c.body else {
            panic!()
        };
        assert_eq!(mailbox.raw.of(b), b"\"Sent Items\"");
        assert_eq!(&*mailbox.value(b), b"Sent Items");
        assert_eq!(params.unwrap().of(b), b"(CONDSTORE)");
        assert!(matches!(
            parse(b"A932 EXAMINE blurdybloop\r\n").body,
            CommandBody::Examine { .. }
        ));
        assert!(matches!(
            parse(b"A003 CREATE owatagusiam/\r\n").body,
            CommandBody::Create { .. }
        ));
        assert!(matches!(
            parse(b"A683 DELETE blurdybloop\r\n").body,
            CommandBody::Delete { .. }
        ));
        let b = b"A683 RENAME blurdybloop sarasoop\r\n";
        let c = parse(b);
        let names: Vec<_> = c.mailboxes().iter().map(|m| m.raw.of(b)).collect();
        assert_eq!(names, vec![&b"blurdybloop"[..], b"sarasoop"]);
        assert!(matches!(
            parse(b"A002 SUBSCRIBE #news.comp.mail.mime\r\n").body,
            CommandBody::Subscribe { .. }
        ));
        assert!(matches!(
            parse(b"A002 UNSUBSCRIBE #news.comp.mail.mime\r\n").body,
            CommandBody::Unsubscribe { .. }
        ));
    }

    #[test]
    fn rfc9051_status_items() {
        let b = b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n";
        let c = parse(b);
        let CommandBody::Status { items, .. } = &c.body else {
            panic!()
        };
        let items: Vec<_> = items.iter().map(|s| s.of(b)).collect();
        assert_eq!(items, vec![&b"UIDNEXT"[..], b"MESSAGES"]);
    }

    #[test]
    fn rfc9051_append_with_flags_date_and_literal() {
        let b = b"A003 APPEND saved-messages (\\Seen) \"05-Jan-2021 14:20:00 +0100\" {22}\r\nSubject: hi\r\n\r\nhello\r\n\r\n";
        let c = parse(b);
        let CommandBody::Append { mailbox, messages } = &c.body else {
            panic!()
        };
        assert_eq!(mailbox.raw.of(b), b"saved-messages");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].flags[0].of(b), b"\\Seen");
        assert_eq!(
            &*messages[0].date.unwrap().value(b),
            b"05-Jan-2021 14:20:00 +0100"
        );
        assert_eq!(
            &*messages[0].message.value(b),
            b"Subject: hi\r\n\r\nhello\r\n"
        );
    }

    #[test]
    fn rfc3502_multiappend_has_one_entry_per_message() {
        let b = b"A003 APPEND saved-messages (\\Seen) {3+}\r\nabc (\\Flagged $Label) ~{2}\r\nde {1+}\r\nf\r\n";
        let c = parse(b);
        let CommandBody::Append { messages, .. } = &c.body else {
            panic!()
        };
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[1].flags.len(), 2);
        assert!(matches!(
            messages[1].message.kind,
            StrKind::Literal { binary: true, .. }
        ));
        assert!(messages[2].flags.is_empty());
        assert_eq!(&*messages[2].message.value(b), b"f");
    }

    #[test]
    fn append_without_message_or_with_catenate_is_rejected() {
        assert!(Command::parse(b"A APPEND INBOX\r\n").is_err());
        assert!(Command::parse(b"A APPEND INBOX (\\Seen)\r\n").is_err());
        assert!(Command::parse(b"A APPEND INBOX CATENATE (TEXT {1}\r\nx)\r\n").is_err());
    }

    #[test]
    fn uid_forms_expose_their_uid_sets() {
        let b = b"A003 UID COPY 2:4,8 MEETING\r\n";
        let c = parse(b);
        assert!(c.uid);
        assert!(c.is_mutation());
        assert_eq!(set_bytes(&c, c.uid_sets()[0]), b"2:4,8");
        let b = b"a uid move 1:* Trash\r\n";
        let c = parse(b);
        assert!(matches!(c.body, CommandBody::Move { .. }));
        assert_eq!(set_bytes(&c, c.uid_sets()[0]), b"1:*");
        // Plain COPY carries sequence numbers: nothing to rewrite.
        assert!(parse(b"A003 COPY 2:4 MEETING\r\n").uid_sets().is_empty());
        // RFC 4315 UID EXPUNGE.
        let b = b"A003 UID EXPUNGE 3000:3002\r\n";
        let c = parse(b);
        assert_eq!(set_bytes(&c, c.uid_sets()[0]), b"3000:3002");
        assert!(Command::parse(b"A003 UID EXPUNGE\r\n").is_err());
    }

    #[test]
    fn rfc9051_store_forms() {
        let b = b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n";
        let c = parse(b);
        let CommandBody::Store {
            mode,
            silent,
            flags,
            ..
        } = &c.body
        else {
            panic!()
        };
        assert_eq!((*mode, *silent, flags.len()), (StoreMode::Add, false, 1));
        let b = b"A4 UID STORE 7 -FLAGS.SILENT (\\Seen $Junk NonJunk)\r\n";
        let c = parse(b);
        let CommandBody::Store {
            mode,
            silent,
            flags,
            set,
            ..
        } = &c.body
        else {
            panic!()
        };
        assert_eq!((*mode, *silent, flags.len()), (StoreMode::Remove, true, 3));
        assert_eq!(flags[1].of(b), b"$Junk");
        assert_eq!(set.span().of(b), b"7");
        let b = b"A5 STORE 1 FLAGS \\Seen \\Answered\r\n";
        let CommandBody::Store { mode, flags, .. } = parse(b).body else {
            panic!()
        };
        assert_eq!((mode, flags.len()), (StoreMode::Replace, 2));
        // RFC 7162 section 3.1.3 UNCHANGEDSINCE.
        let b = b"d105 UID STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n";
        let c = parse(b);
        let CommandBody::Store { modifiers, .. } = &c.body else {
            panic!()
        };
        assert_eq!(modifiers.unwrap().of(b), b"(UNCHANGEDSINCE 320162338)");
        assert!(Command::parse(b"A STORE 1 +FLAGZ (\\Seen)\r\n").is_err());
    }

    #[test]
    fn fetch_items_and_modifiers() {
        let b = b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n";
        let c = parse(b);
        let CommandBody::Fetch { items, .. } = &c.body else {
            panic!()
        };
        assert_eq!(items.of(b), b"(FLAGS BODY[HEADER.FIELDS (DATE FROM)])");
        let b = b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n";
        let c = parse(b);
        assert_eq!(set_bytes(&c, c.uid_sets()[0]), b"300:500");
        let b = b"a UID FETCH 1:* FAST\r\n";
        assert!(matches!(parse(b).body, CommandBody::Fetch { .. }));
        let b = b"a UID FETCH $ (UID)\r\n";
        assert!(matches!(parse(b).uid_sets()[0], SetArg::Saved { .. }));
    }

    #[test]
    fn search_finds_uid_criteria_at_any_depth_and_not_in_arguments() {
        let b = b"A282 SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (UID 1:5 FLAGGED) NOT UID 9 SUBJECT UID 4:6 HEADER UID \"UID\"\r\n";
        let c = parse(b);
        let sets: Vec<_> = c.uid_sets().iter().map(|s| set_bytes(&c, s)).collect();
        // "SUBJECT UID" is a subject; "4:6" after it is a sequence set.
        assert_eq!(sets, vec![&b"1:5"[..], b"9"]);
        let CommandBody::Search { ret, charset, .. } = &c.body else {
            panic!()
        };
        assert_eq!(ret.unwrap().of(b), b"(MIN COUNT)");
        assert_eq!(charset.unwrap().raw.of(b), b"UTF-8");
        let b = b"a UID SEARCH 1:10 MODSEQ \"/flags/\\\\draft\" all 620162338 LARGER 5 SINCE 1-Feb-1994\r\n";
        let c = parse(b);
        assert!(c.uid && c.uid_sets().is_empty());
        assert!(Command::parse(b"a SEARCH XUNKNOWN 5 UID 3\r\n").is_err());
    }

    #[test]
    fn enable_id_compress() {
        let b = b"t2 ENABLE CONDSTORE X-GOOD-IDEA\r\n";
        let CommandBody::Enable { capabilities } = parse(b).body else {
            panic!()
        };
        assert_eq!(capabilities.len(), 2);
        let b = b"a023 ID (\"name\" \"sodr\" \"version\" \"19.34\")\r\n";
        assert!(matches!(parse(b).body, CommandBody::Id { .. }));
        assert!(matches!(
            parse(b"a ID NIL\r\n").body,
            CommandBody::Id { .. }
        ));
        let b = b"a COMPRESS DEFLATE\r\n";
        let CommandBody::Compress { mechanism } = parse(b).body else {
            panic!()
        };
        assert_eq!(mechanism.of(b), b"DEFLATE");
    }

    #[test]
    fn unknown_commands_are_other_when_well_formed() {
        let b = b"A101 LIST \"\" %\r\n";
        assert_eq!(parse(b).body, CommandBody::Other);
        assert_eq!(parse(b"a GETQUOTAROOT INBOX\r\n").body, CommandBody::Other);
        assert_eq!(parse(b"a NAMESPACE\r\n").body, CommandBody::Other);
        assert_eq!(parse(b"a XFOO {3}\r\nabc\r\n").body, CommandBody::Other);
        assert_eq!(parse(b"a UID XFOO 1\r\n").body, CommandBody::Other);
        assert!(Command::parse(b"a LIST \"unterminated\r\n").is_err());
        assert!(Command::parse(b"a XFOO ((\r\n").is_err());
    }

    #[test]
    fn rfc9051_list_and_lsub_patterns_table() {
        // list-mailbox = 1*list-char / string; list-char = ATOM-CHAR /
        // list-wildcards / resp-specials: "[" and "]" stand unquoted.
        for b in [
            &b"a LIST \"\" foo[bar\r\n"[..],
            b"a LIST \"\" \"foo[bar\"\r\n",
            b"a LIST \"\" foo]bar\r\n",
            b"a LIST \"\" [\r\n",
            b"a LIST \"\" %[*]%\r\n",
            b"a LIST ref[ *\r\n",
            b"a LIST \"\" {7}\r\nfoo[bar\r\n",
            b"a LSUB \"#news.\" comp.mail.*\r\n",
            b"a LSUB \"\" foo[bar\r\n",
            // RFC 5258 LIST-EXTENDED.
            b"a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"*\" foo[ %) RETURN (CHILDREN STATUS (MESSAGES UIDNEXT))\r\n",
            b"a LIST () \"\" (INBOX)\r\n",
            b"a LIST \"\" \"%\" RETURN (SPECIAL-USE)\r\n",
            // Other commands whose astrings hold "[" or "]".
            b"a GETQUOTAROOT foo[bar\r\n",
            b"a MYRIGHTS foo]bar\r\n",
            b"a SETACL foo[bar fred +r\r\n",
            b"a GETMETADATA foo[ (/shared/comment)\r\n",
        ] {
            assert_eq!(
                Command::parse(b).map(|c| c.body),
                Ok(CommandBody::Other),
                "{}",
                b.escape_ascii()
            );
        }
        for b in [
            &b"a LIST \"\"\r\n"[..],
            b"a LIST \"\" foo bar\r\n",
            b"a LIST \"\" foo(bar\r\n",
            b"a LIST \"\" (foo\r\n",
            b"a LIST \"\" * RETURN\r\n",
            b"a LIST \"\" * EXTRA ()\r\n",
            b"a LSUB () \"\" *\r\n",
            b"a LIST () \"\" ()\r\n",
            b"a LSUB \"\" * RETURN ()\r\n",
        ] {
            assert!(Command::parse(b).is_err(), "{}", b.escape_ascii());
        }
        // Mailbox names hold "[" and "]" as astrings (ASTRING-CHAR).
        let b = b"a SELECT foo[bar]\r\n";
        let CommandBody::Select { mailbox, .. } = parse(b).body else {
            panic!()
        };
        assert_eq!(mailbox.raw.of(b), b"foo[bar]");
    }

    #[test]
    fn authenticate_lines_and_idle_done() {
        assert_eq!(parse_auth_line(b"*\r\n"), Ok(AuthLine::Cancel));
        assert_eq!(
            parse_auth_line(b"dGVzdAB0ZXN0AHRlc3Q=\r\n"),
            Ok(AuthLine::Response(Span { start: 0, end: 20 }))
        );
        assert_eq!(
            parse_auth_line(b"\r\n"),
            Ok(AuthLine::Response(Span { start: 0, end: 0 }))
        );
        assert!(parse_auth_line(b"abc def\r\n").is_err());
        assert!(parse_auth_line(b"* x\r\n").is_err());
        assert!(is_idle_done(b"DONE\r\n"));
        assert!(is_idle_done(b"done\r\n"));
        assert!(!is_idle_done(b"DONE \r\n"));
        assert!(!is_idle_done(b"a DONE\r\n"));
    }

    #[test]
    fn commands_with_uids_this_parser_does_not_locate_are_flagged() {
        for line in [
            &b"a UID SORT (DATE) UTF-8 ALL\r\n"[..],
            b"a SORT (DATE) UTF-8 UID 1:5\r\n",
            b"a THREAD REFERENCES UTF-8 UID 1:5\r\n",
            b"a UID XFOO 1:5\r\n",
            b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211))\r\n",
        ] {
            assert!(
                parse(line).has_unparsed_uids(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [
            &b"a UID FETCH 1:5 FLAGS\r\n"[..],
            b"a SELECT INBOX (CONDSTORE)\r\n",
            b"a LIST \"\" *\r\n",
            b"a SEARCH UID 1:5\r\n",
        ] {
            assert!(
                !parse(line).has_unparsed_uids(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn rfc4616_sasl_plain_is_decoded_and_redacted() {
        // "\0tim\0tanstaaftanstaaf", RFC 4616 section 4.
        let p = sasl_plain(b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap();
        assert_eq!(p.authzid, b"");
        assert_eq!(p.authcid, b"tim");
        assert_eq!(p.password, b"tanstaaftanstaaf");
        assert!(!format!("{p:?}").contains("tanstaaf"));
        // "Ursel\0Kurt\0xipj3plmq"
        let p = sasl_plain(b"VXJzZWwAS3VydAB4aXBqM3BsbXE=").unwrap();
        assert_eq!(
            (&p.authzid[..], &p.authcid[..]),
            (&b"Ursel"[..], &b"Kurt"[..])
        );
        assert_eq!(sasl_plain(b"!!"), Err(SaslError::Base64));
        assert_eq!(sasl_plain(b"="), Err(SaslError::Malformed));
        // "a\0b" has no password.
        assert_eq!(sasl_plain(b"YQBi"), Err(SaslError::Malformed));
    }

    #[test]
    fn trailing_garbage_and_missing_crlf_are_errors() {
        assert!(Command::parse(b"a NOOP\r\n").is_ok());
        assert!(Command::parse(b"a NOOP").is_err());
        assert!(Command::parse(b"a NOOP x\r\n").is_err());
        assert!(Command::parse(b"a NOOP\r\nb NOOP\r\n").is_err());
        assert!(Command::parse(b"a SELECT INBOX extra\r\n").is_err());
        assert!(Command::parse(b"+ NOOP\r\n").is_err());
        assert!(Command::parse(b" NOOP\r\n").is_err());
    }

    #[test]
    fn a_literal_cannot_hide_a_second_command() {
        // The literal's data holds what looks like a command; it is data.
        let b = b"a LOGIN {19}\r\nx\r\nb DELETE INBOX\r\n pw\r\n";
        let c = parse(b);
        assert!(matches!(c.body, CommandBody::Login { .. }));
        let CommandBody::Login { user, .. } = &c.body else {
            panic!()
        };
        assert_eq!(&*user.value(b), b"x\r\nb DELETE INBOX\r\n");
    }
}

#[cfg(test)]
mod roundtrip {
    //! parse(encode(x)) == x: commands built from generated parts parse back
    //! into the same parts.
    use super::*;
    use crate::seqset::{SeqItem, SeqNum};
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
        let num =
            prop_oneof![4 => (1u32..100_000).prop_map(SeqNum::Value), 1 => Just(SeqNum::Star)];
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
}
