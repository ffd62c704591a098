//! What an applied entry produces: the [`Outcome`] its proposer gets, and
//! the [`Work`] item every mail node's applier carries to its backend.

use serde::{Deserialize, Serialize};

use crate::entry::{FlagMode, NewMessage, Replaces};

/// Backend work for the applier: what to do on every mail node's backend,
/// with every canonical number already decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Work {
    /// Create the mailbox; record its local UIDVALIDITY.
    Create {
        /// User.
        user: String,
        /// Name.
        name: String,
        /// Canonical UIDVALIDITY.
        uidvalidity: u32,
    },
    /// Delete the mailbox.
    Delete {
        /// User.
        user: String,
        /// Name.
        name: String,
        /// Canonical UIDVALIDITY.
        uidvalidity: u32,
    },
    /// Rename `from` to `to` (children follow on the backend).
    Rename {
        /// User.
        user: String,
        /// Old name.
        from: String,
        /// New name.
        to: String,
        /// For RENAME INBOX: the messages move to a new mailbox (backends
        /// are not asked to RENAME INBOX; Dovecot refuses it).
        inbox: Option<InboxMove>,
    },
    /// Subscribe or unsubscribe.
    Subscribe {
        /// User.
        user: String,
        /// Name.
        name: String,
        /// Subscribe (true) or unsubscribe.
        on: bool,
    },
    /// Append the messages under the given canonical UIDs.
    Append {
        /// User.
        user: String,
        /// Mailbox.
        mailbox: String,
        /// Canonical UIDVALIDITY.
        uidvalidity: u32,
        /// Canonical UIDs, one per message.
        uids: Vec<u32>,
        /// The messages.
        messages: Vec<NewMessage>,
        /// Originals to expunge on one node (adoption).
        replaces: Option<Replaces>,
    },
    /// Copy or move: `pairs` maps canonical source UIDs to canonical
    /// destination UIDs.
    Copy {
        /// User.
        user: String,
        /// Source mailbox.
        from: String,
        /// Its canonical UIDVALIDITY.
        from_uidvalidity: u32,
        /// Destination mailbox.
        to: String,
        /// Its canonical UIDVALIDITY.
        to_uidvalidity: u32,
        /// (source, destination) canonical UIDs, ascending.
        pairs: Vec<(u32, u32)>,
        /// MOVE.
        remove: bool,
    },
    /// Change flags.
    Store {
        /// User.
        user: String,
        /// Mailbox.
        mailbox: String,
        /// Canonical UIDVALIDITY.
        uidvalidity: u32,
        /// Canonical UIDs.
        uids: Vec<(u32, u32)>,
        /// Mode.
        mode: FlagMode,
        /// Flags.
        flags: Vec<String>,
    },
    /// Expunge.
    Expunge {
        /// User.
        user: String,
        /// Mailbox.
        mailbox: String,
        /// Canonical UIDVALIDITY.
        uidvalidity: u32,
        /// Canonical UIDs.
        uids: Vec<(u32, u32)>,
    },
    /// [`Work::Append`] of messages some of which came as a literal8
    /// ([`crate::Op::AppendLiteral8`]): each is sent to the backend as the
    /// client sent it. Last in the enum, so that older items decode as
    /// before.
    AppendLiteral8 {
        /// User.
        user: String,
        /// Mailbox.
        mailbox: String,
        /// Canonical UIDVALIDITY.
        uidvalidity: u32,
        /// Canonical UIDs, one per message.
        uids: Vec<u32>,
        /// The messages.
        messages: Vec<NewMessage>,
        /// `literal8[k]`: message `k` came as a literal8.
        literal8: Vec<bool>,
    },
}

impl Work {
    /// The user it is for.
    pub fn user(&self) -> &str {
        match self {
            Work::Create { user, .. }
            | Work::Delete { user, .. }
            | Work::Rename { user, .. }
            | Work::Subscribe { user, .. }
            | Work::Append { user, .. }
            | Work::AppendLiteral8 { user, .. }
            | Work::Copy { user, .. }
            | Work::Store { user, .. }
            | Work::Expunge { user, .. } => user,
        }
    }
}

/// RENAME INBOX as the applier carries it out: create the new mailbox and
/// move INBOX's messages into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMove {
    /// INBOX's canonical UIDVALIDITY.
    pub inbox_uidvalidity: u32,
    /// The new mailbox's canonical UIDVALIDITY.
    pub uidvalidity: u32,
    /// (UID in INBOX, UID in the new mailbox), ascending.
    pub pairs: Vec<(u32, u32)>,
}

/// What an entry did, returned to its proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Accepted; backend work is outbox item `seq`.
    Ok {
        /// The outbox sequence number of the work.
        seq: u64,
        /// The destination's UIDVALIDITY (APPEND, COPY, MOVE, CREATE).
        uidvalidity: u32,
        /// Canonical UIDs given (APPEND, COPY / MOVE destination) or touched
        /// (STORE, EXPUNGE, COPY / MOVE source), ascending.
        uids: Vec<u32>,
        /// For COPY / MOVE: the source UIDs copied, paired with `uids`.
        source: Vec<u32>,
    },
    /// Refused on canonical grounds, identically on every node; nothing
    /// happens anywhere.
    No {
        /// An RFC 5530 response code (`NONEXISTENT`, `ALREADYEXISTS`, ...).
        code: String,
        /// Human-readable text.
        text: String,
    },
}

/// A refusal on canonical grounds.
pub(crate) fn no(code: &str, text: impl Into<String>) -> Outcome {
    Outcome::No {
        code: code.to_string(),
        text: text.into(),
    }
}

/// An outbox item as stored: the proposer's clock when it was proposed,
/// and the work.
pub type Queued = (u64, Work);
