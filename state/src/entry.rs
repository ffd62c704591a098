//! The vocabulary of the log: an [`Entry`] is one user's [`Op`], proposed
//! by one node. Entries are in every node's log for as long as it keeps
//! them, so a variant is never changed or removed, and new ones go last
//! (postcard encodes the variant's position).

use serde::{Deserialize, Serialize};
use tandem_replicator::NodeId;

/// A log entry: an operation of one user, proposed by one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The proposing node.
    pub origin: NodeId,
    /// The proposer's clock (seconds since the epoch): a lower bound for a
    /// new UIDVALIDITY, so values look like Dovecot's. Only ever read from
    /// the entry, never from the applying node's clock.
    pub at_secs: u64,
    /// The user.
    pub user: String,
    /// What to do.
    pub op: Op,
}

/// A message to append, as the client gave it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// Flags and keywords, as written (`\Seen`, `$Label`).
    pub flags: Vec<String>,
    /// The internal date as written (`"01-Jan-2026 10:00:00 +0000"`), if given.
    pub date: Option<String>,
    /// The message (serialized as bytes, not as a sequence of numbers:
    /// postcard then copies it in one go).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

impl std::fmt::Debug for NewMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMessage")
            .field("flags", &self.flags)
            .field("bytes", &self.body.len())
            .finish()
    }
}

/// Messages found on one node's backend without a canonical UID (delivered
/// straight into the backend), replicated as new messages; that node then
/// expunges the originals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaces {
    /// The node whose backend holds the originals.
    pub node: NodeId,
    /// Their mailbox's local UIDVALIDITY there.
    pub local_uidvalidity: u32,
    /// Their local UIDs, one per message appended.
    pub uids: Vec<u32>,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlagMode {
    /// Replace (`FLAGS`).
    Replace,
    /// Add (`+FLAGS`).
    Add,
    /// Remove (`-FLAGS`).
    Remove,
}

/// What a client asked for, in canonical terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// CREATE.
    Create {
        /// Mailbox name.
        name: String,
    },
    /// DELETE.
    Delete {
        /// Mailbox name.
        name: String,
    },
    /// RENAME; children (`from` + separator + ...) move along, except for
    /// RENAME INBOX, which moves INBOX's messages into a new mailbox.
    Rename {
        /// Existing name.
        from: String,
        /// New name.
        to: String,
        /// The hierarchy separator (from the proposer's backend).
        separator: Option<char>,
    },
    /// SUBSCRIBE.
    Subscribe {
        /// Mailbox name.
        name: String,
    },
    /// UNSUBSCRIBE.
    Unsubscribe {
        /// Mailbox name.
        name: String,
    },
    /// APPEND (one or more messages, MULTIAPPEND).
    Append {
        /// Mailbox name.
        mailbox: String,
        /// The messages, in order.
        messages: Vec<NewMessage>,
        /// Set when the messages are adopted from a backend.
        replaces: Option<Replaces>,
    },
    /// COPY, or MOVE when `remove` is set.
    Copy {
        /// The source mailbox and the UIDVALIDITY the client saw.
        from: String,
        /// Its UIDVALIDITY.
        from_uidvalidity: u32,
        /// Canonical source UIDs.
        uids: Vec<(u32, u32)>,
        /// Destination mailbox.
        to: String,
        /// MOVE.
        remove: bool,
    },
    /// STORE.
    Store {
        /// Mailbox.
        mailbox: String,
        /// Its UIDVALIDITY.
        uidvalidity: u32,
        /// Canonical UIDs.
        uids: Vec<(u32, u32)>,
        /// Replace, add or remove.
        mode: FlagMode,
        /// Flags and keywords as written.
        flags: Vec<String>,
    },
    /// EXPUNGE of explicit canonical UIDs.
    Expunge {
        /// Mailbox.
        mailbox: String,
        /// Its UIDVALIDITY.
        uidvalidity: u32,
        /// Canonical UIDs.
        uids: Vec<(u32, u32)>,
    },
    /// DELETE, refused with `[HASCHILDREN]` while the mailbox has children
    /// (Cyrus refuses such a DELETE and Dovecot's Maildir does not: a
    /// cluster that mixes them must refuse it everywhere). Sessions propose
    /// this one; [`Op::Delete`] stays for entries already in logs. Last in
    /// the enum, so that older entries decode as before.
    DeleteLeaf {
        /// Mailbox name.
        name: String,
        /// The hierarchy separator (from the proposer's backend).
        separator: Option<char>,
    },
    /// A mail node says which server its backend is (`dovecot`, `cyrus`),
    /// once, when it starts. From the first Cyrus on, APPENDs of messages
    /// Cyrus refuses are refused everywhere ([`strict_messages`]).
    RegisterBackend {
        /// The node.
        node: u64,
        /// Its backend's kind, as in the config.
        kind: String,
    },
    /// APPEND of messages some of which came as a literal8 (RFC 3516
    /// `~{n}`): every node sends each message as the client did, because a
    /// backend may store a literal8 differently (Dovecot turns a
    /// `Content-Transfer-Encoding: binary` part into base64, and only
    /// then). Sessions propose this when a message came as a literal8 and
    /// [`Op::Append`] otherwise. Last in the enum, so that older entries
    /// decode as before.
    AppendLiteral8 {
        /// Mailbox name.
        mailbox: String,
        /// The messages, in order.
        messages: Vec<NewMessage>,
        /// `literal8[k]`: message `k` came as a literal8; one per message.
        literal8: Vec<bool>,
    },
}
