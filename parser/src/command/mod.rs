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
//!
//! Where things are: [`CommandBody`] and its parts in `body.rs`; the
//! parsers by command family in `session.rs` (LOGIN, AUTHENTICATE, ENABLE,
//! ID, COMPRESS), `mailbox.rs` (SELECT ... STATUS, LIST, LSUB),
//! `message.rs` (APPEND, COPY, MOVE, STORE, FETCH) and `search.rs`; the
//! pieces they share in `args.rs`; the lines sent after a continuation
//! request (AUTHENTICATE, SASL PLAIN, IDLE's DONE) in `continuation.rs`.

mod args;
mod body;
mod continuation;
mod mailbox;
mod message;
mod search;
mod session;

#[cfg(test)]
mod roundtrip;
#[cfg(test)]
mod tests;

pub use body::{AppendMessage, CommandBody, SetArg, StoreMode};
pub use continuation::{is_idle_done, parse_auth_line, sasl_plain, AuthLine, SaslError, SaslPlain};

use std::fmt;

use crate::lexer::{is_tag_char, Lexer, ParseError, Span, StrToken, Upper, DEFAULT_MAX_DEPTH};
use args::{other, set_arg};
use mailbox::{delete_or_subscribe, list_args, rename, select_examine_create, status};
use message::{append, copy_or_move, fetch, store};
use search::search;
use session::{authenticate, compress, enable, id, login};

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
            uid_body(&mut l, &upper)?
        } else {
            body(&mut l, &upper)?
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

/// The arguments of a `UID` form, by the name after `UID` (`upper`, in
/// upper case). A `UID` form tandem does not know is [`CommandBody::Other`]
/// (and flagged by [`Command::has_unparsed_uids`]).
fn uid_body(l: &mut Lexer<'_>, upper: &[u8]) -> Result<CommandBody, ParseError> {
    Ok(match upper {
        b"COPY" => copy_or_move(l, false)?,
        b"MOVE" => copy_or_move(l, true)?,
        b"STORE" => store(l)?,
        b"FETCH" => fetch(l)?,
        b"SEARCH" => search(l)?,
        b"EXPUNGE" => {
            l.sp()?;
            CommandBody::Expunge {
                uids: Some(set_arg(l)?),
            }
        }
        _ => other(l)?,
    })
}

/// The arguments of a command other than a `UID` form, by its name
/// (`upper`, in upper case), family by family.
fn body(l: &mut Lexer<'_>, upper: &[u8]) -> Result<CommandBody, ParseError> {
    Ok(match upper {
        b"CAPABILITY" => CommandBody::Capability,
        b"NOOP" => CommandBody::Noop,
        b"LOGOUT" => CommandBody::Logout,
        b"STARTTLS" => CommandBody::StartTls,
        b"IDLE" => CommandBody::Idle,
        b"CHECK" => CommandBody::Check,
        b"CLOSE" => CommandBody::Close,
        b"UNSELECT" => CommandBody::Unselect,
        b"EXPUNGE" => CommandBody::Expunge { uids: None },
        b"LOGIN" => login(l)?,
        b"AUTHENTICATE" => authenticate(l)?,
        b"SELECT" | b"EXAMINE" | b"CREATE" => select_examine_create(l, upper)?,
        b"DELETE" | b"SUBSCRIBE" | b"UNSUBSCRIBE" => delete_or_subscribe(l, upper)?,
        b"RENAME" => rename(l)?,
        b"STATUS" => status(l)?,
        b"APPEND" => append(l)?,
        b"COPY" => copy_or_move(l, false)?,
        b"MOVE" => copy_or_move(l, true)?,
        b"STORE" => store(l)?,
        b"FETCH" => fetch(l)?,
        b"SEARCH" => search(l)?,
        b"ENABLE" => enable(l)?,
        b"ID" => id(l)?,
        b"LIST" => list_args(l, false)?,
        b"LSUB" => list_args(l, true)?,
        b"COMPRESS" => compress(l)?,
        _ => other(l)?,
    })
}
