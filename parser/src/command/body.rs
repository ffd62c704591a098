//! The command vocabulary: [`CommandBody`], what a command asks for, and
//! its parts ([`SetArg`], [`StoreMode`], [`AppendMessage`]). Names,
//! strings and lists are spans into the parsed buffer, never copies.

use crate::lexer::{Span, StrToken};
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
/// [`Command::parse`](super::Command::parse).
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
        /// Message numbers or UIDs ([`Command::uid`](super::Command::uid)).
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
