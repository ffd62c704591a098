//! The canonical state machine: per user, the mailboxes with their
//! canonical UIDVALIDITY, UIDNEXT and UIDs, and the subscriptions. Every
//! node applies the same committed entries in the same order and so derives
//! the same canonical numbers; no node's backend is asked.
//!
//! Invariants, one line each:
//! - UIDs are allocated only here, as entries apply: a mailbox's UIDNEXT
//!   only grows, so a canonical UID is never given to two messages.
//! - A UIDVALIDITY is allocated only here, from one cluster-wide counter
//!   that only grows: a mailbox deleted and created again never gets the
//!   same UIDVALIDITY back.
//! - Refusals that depend only on canonical state (no such mailbox, already
//!   exists, has children) are decided here, identically on every node, and
//!   produce no backend work anywhere ([`Outcome::No`]).
//! - Every accepted mutation puts exactly one [`Work`] item into the outbox,
//!   under a sequence number that grows by one per item; the node's applier
//!   carries the outbox to its backend in that order.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tandem_parser::seqset::Ranges;
use tandem_replicator::{NodeId, SmError, StateMachine};

/// `user \0 name` -> postcard [`Mailbox`].
pub const MAILBOXES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("canon_mailboxes");
/// `user \0 name` -> () for each subscription.
pub const SUBSCRIPTIONS: TableDefinition<'_, &str, ()> =
    TableDefinition::new("canon_subscriptions");
/// Counters: `uidvalidity` (the last one given), `seq` (the last outbox item).
pub const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("canon_counters");
/// `node \0 user \0 local UIDVALIDITY \0 local UID` of every message
/// adopted from a backend, so that one is never adopted twice.
pub const ADOPTED: TableDefinition<'_, &str, ()> = TableDefinition::new("canon_adopted");
/// Outbox sequence number -> postcard [`Queued`], for the applier.
pub const OUTBOX: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("canon_outbox");

/// The key of a user's mailbox in [`MAILBOXES`] and [`SUBSCRIPTIONS`].
pub fn key(user: &str, name: &str) -> String {
    format!("{user}\0{name}")
}

/// `INBOX` is case-insensitive (RFC 9051 section 5.1); every other name is
/// kept as the client wrote it (modified UTF-7 or UTF-8 bytes).
pub fn normalize(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

/// A canonical mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// Canonical UIDVALIDITY; also the mailbox's identity while it exists.
    pub uidvalidity: u32,
    /// The next UID to give.
    pub uidnext: u32,
    /// The UIDs of the messages in it, as sorted inclusive ranges.
    pub uids: Vec<(u32, u32)>,
}

impl Mailbox {
    /// The UIDs as a set.
    pub fn uid_set(&self) -> Ranges {
        Ranges::from_ranges(self.uids.iter().copied())
    }

    /// The number of messages.
    pub fn messages(&self) -> u64 {
        self.uid_set().len()
    }
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
}

/// The COUNTERS key that records node `node`'s backend `kind`.
fn backend_key(kind: &str, node: u64) -> String {
    format!("backend/{kind}/{node}")
}

/// Whether a node in front of Cyrus has registered: then messages Cyrus
/// refuses (`tandem_parser::message`) are refused on every node. A
/// Dovecot-only cluster takes them, as Dovecot does. Those rules are part
/// of the state machine: replaying the log must give the same answers, so
/// they must never change in place (a new rule set needs a new entry kind
/// or a version in the registration).
fn strict_messages_in(t: &impl redb::ReadableTable<&'static str, u64>) -> SmResult<bool> {
    let prefix = "backend/cyrus/";
    let mut range = t.range(prefix..)?;
    Ok(match range.next() {
        Some(r) => r?.0.value().starts_with(prefix),
        None => false,
    })
}

/// [`strict_messages_in`] from the committed state (the session's
/// pre-check; the state machine decides).
pub fn strict_messages(db: &redb::Database) -> bool {
    use redb::ReadableDatabase;
    let Ok(txn) = db.begin_read() else {
        return true;
    };
    match txn.open_table(COUNTERS) {
        Ok(t) => strict_messages_in(&t).unwrap_or(true),
        Err(redb::TableError::TableDoesNotExist(_)) => false,
        Err(_) => true,
    }
}

/// The registered (node, backend kind) pairs, by node.
pub fn registered_backends(db: &redb::Database) -> Vec<(u64, String)> {
    use redb::ReadableDatabase;
    let Ok(txn) = db.begin_read() else {
        return Vec::new();
    };
    let Ok(t) = txn.open_table(COUNTERS) else {
        return Vec::new();
    };
    let Ok(range) = t.range("backend/"..) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, String)> = range
        .flatten()
        .map_while(|(k, _)| {
            let rest = k.value().strip_prefix("backend/")?.to_string();
            let (kind, node) = rest.split_once('/')?;
            Some((node.parse().ok()?, kind.to_string()))
        })
        .collect();
    out.sort();
    out
}

/// Whether node `node`'s backend `kind` is registered.
pub fn backend_registered(db: &redb::Database, node: u64, kind: &str) -> bool {
    use redb::ReadableDatabase;
    let Ok(txn) = db.begin_read() else {
        return false;
    };
    let Ok(t) = txn.open_table(COUNTERS) else {
        return false;
    };
    t.get(backend_key(kind, node).as_str())
        .ok()
        .flatten()
        .is_some()
}

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

fn no(code: &str, text: impl Into<String>) -> Outcome {
    Outcome::No {
        code: code.to_string(),
        text: text.into(),
    }
}

/// The state machine. Its state lives in redb tables (see the constants);
/// the struct holds only how this node uses it.
#[derive(Debug, Default)]
pub struct Canon {
    /// Whether this node has a backend: a witness keeps the canonical state
    /// but no outbox.
    pub outbox: bool,
    /// The proposer's clock of the entry being applied (outbox items carry
    /// it, for the replication lag in seconds).
    entry_secs: u64,
}

impl Canon {
    /// The state machine of a mail node (`outbox`) or a witness.
    pub fn new(outbox: bool) -> Canon {
        Canon {
            outbox,
            entry_secs: 0,
        }
    }
}

/// An outbox item as stored: the proposer's clock when it was proposed,
/// and the work.
pub type Queued = (u64, Work);

type SmResult<T> = Result<T, SmError>;

fn get_mailbox(
    t: &redb::Table<'_, &str, &[u8]>,
    user: &str,
    name: &str,
) -> SmResult<Option<Mailbox>> {
    match t.get(key(user, name).as_str())? {
        Some(v) => Ok(Some(postcard::from_bytes(v.value())?)),
        None => Ok(None),
    }
}

fn put_mailbox(
    t: &mut redb::Table<'_, &str, &[u8]>,
    user: &str,
    name: &str,
    m: &Mailbox,
) -> SmResult<()> {
    t.insert(key(user, name).as_str(), postcard::to_stdvec(m)?.as_slice())?;
    Ok(())
}

/// The names of `user`'s mailboxes strictly under `name` (by `separator`).
fn children(
    t: &redb::Table<'_, &str, &[u8]>,
    user: &str,
    name: &str,
    separator: Option<char>,
) -> SmResult<Vec<String>> {
    let Some(sep) = separator else {
        return Ok(Vec::new());
    };
    let prefix = key(user, &format!("{name}{sep}"));
    let mut out = Vec::new();
    for r in t.range(prefix.as_str()..)? {
        let (k, _) = r?;
        let k = k.value();
        if !k.starts_with(&prefix) {
            break;
        }
        out.push(k[user.len() + 1..].to_string());
    }
    Ok(out)
}

impl Canon {
    fn next_uidvalidity(counters: &mut redb::Table<'_, &str, u64>, at_secs: u64) -> SmResult<u32> {
        let last = counters.get("uidvalidity")?.map(|v| v.value()).unwrap_or(0);
        let v = (last + 1).max(at_secs.min(u64::from(u32::MAX)));
        if v > u64::from(u32::MAX) {
            return Err("UIDVALIDITY space exhausted".into());
        }
        counters.insert("uidvalidity", v)?;
        Ok(v as u32)
    }

    fn push_work(&self, txn: &redb::WriteTransaction, work: &Work) -> SmResult<u64> {
        let mut counters = txn.open_table(COUNTERS)?;
        let seq = counters.get("seq")?.map(|v| v.value()).unwrap_or(0) + 1;
        counters.insert("seq", seq)?;
        if self.outbox {
            let mut outbox = txn.open_table(OUTBOX)?;
            let item: (u64, &Work) = (self.entry_secs, work);
            outbox.insert(seq, postcard::to_stdvec(&item)?.as_slice())?;
        }
        Ok(seq)
    }

    fn apply_op(&self, txn: &redb::WriteTransaction, e: Entry) -> SmResult<Outcome> {
        let user = e.user;
        let mut boxes = txn.open_table(MAILBOXES)?;
        let ok = |seq, uidvalidity, uids, source| Outcome::Ok {
            seq,
            uidvalidity,
            uids,
            source,
        };
        match e.op {
            Op::Create { name } => {
                let name = normalize(&name);
                if get_mailbox(&boxes, &user, &name)?.is_some() {
                    return Ok(no("ALREADYEXISTS", "Mailbox already exists"));
                }
                let mut counters = txn.open_table(COUNTERS)?;
                let uidvalidity = Self::next_uidvalidity(&mut counters, e.at_secs)?;
                drop(counters);
                let m = Mailbox {
                    uidvalidity,
                    uidnext: 1,
                    uids: Vec::new(),
                };
                put_mailbox(&mut boxes, &user, &name, &m)?;
                drop(boxes);
                let seq = self.push_work(
                    txn,
                    &Work::Create {
                        user,
                        name,
                        uidvalidity,
                    },
                )?;
                Ok(ok(seq, uidvalidity, Vec::new(), Vec::new()))
            }
            Op::Delete { name: n, .. } | Op::DeleteLeaf { name: n, .. }
                if normalize(&n) == "INBOX" =>
            {
                Ok(no("CANNOT", "INBOX cannot be deleted"))
            }
            Op::DeleteLeaf { name, separator }
                if get_mailbox(&boxes, &user, &normalize(&name))?.is_some()
                    && !children(&boxes, &user, &normalize(&name), separator)?.is_empty() =>
            {
                Ok(no("HASCHILDREN", "Mailbox has inferior hierarchical names"))
            }
            Op::Delete { name } | Op::DeleteLeaf { name, .. } => {
                let name = normalize(&name);
                let Some(m) = get_mailbox(&boxes, &user, &name)? else {
                    return Ok(no("NONEXISTENT", "No such mailbox"));
                };
                boxes.remove(key(&user, &name).as_str())?;
                drop(boxes);
                let seq = self.push_work(
                    txn,
                    &Work::Delete {
                        user,
                        name,
                        uidvalidity: m.uidvalidity,
                    },
                )?;
                Ok(ok(seq, m.uidvalidity, Vec::new(), Vec::new()))
            }
            Op::Rename {
                from,
                to,
                separator,
            } => {
                let (from, to) = (normalize(&from), normalize(&to));
                if to == "INBOX" {
                    return Ok(no("ALREADYEXISTS", "INBOX already exists"));
                }
                let Some(mut src) = get_mailbox(&boxes, &user, &from)? else {
                    return Ok(no("NONEXISTENT", "No such mailbox"));
                };
                if get_mailbox(&boxes, &user, &to)?.is_some() {
                    return Ok(no("ALREADYEXISTS", "Mailbox already exists"));
                }
                if let Some(sep) = separator {
                    if to.starts_with(&format!("{from}{sep}")) {
                        return Ok(no("CANNOT", "Cannot rename a mailbox into itself"));
                    }
                }
                let mut inbox = None;
                if from == "INBOX" {
                    // RFC 9051 6.3.6: INBOX's messages move to a new mailbox;
                    // INBOX stays, empty, with its UIDVALIDITY and UIDNEXT.
                    let mut counters = txn.open_table(COUNTERS)?;
                    let uidvalidity = Self::next_uidvalidity(&mut counters, e.at_secs)?;
                    drop(counters);
                    let old: Vec<u32> = src.uid_set().iter().collect();
                    let new: Vec<u32> = (1..=old.len() as u32).collect();
                    let m = Mailbox {
                        uidvalidity,
                        uidnext: new.len() as u32 + 1,
                        uids: Ranges::from_ranges(new.iter().map(|&u| (u, u)))
                            .ranges()
                            .to_vec(),
                    };
                    put_mailbox(&mut boxes, &user, &to, &m)?;
                    src.uids.clear();
                    put_mailbox(&mut boxes, &user, &from, &src)?;
                    inbox = Some(InboxMove {
                        inbox_uidvalidity: src.uidvalidity,
                        uidvalidity,
                        pairs: old.into_iter().zip(new).collect(),
                    });
                } else {
                    let kids = children(&boxes, &user, &from, separator)?;
                    boxes.remove(key(&user, &from).as_str())?;
                    put_mailbox(&mut boxes, &user, &to, &src)?;
                    for kid in kids {
                        let Some(m) = get_mailbox(&boxes, &user, &kid)? else {
                            continue;
                        };
                        boxes.remove(key(&user, &kid).as_str())?;
                        let moved = format!("{to}{}", &kid[from.len()..]);
                        put_mailbox(&mut boxes, &user, &moved, &m)?;
                    }
                }
                drop(boxes);
                let uidvalidity = inbox.as_ref().map_or(src.uidvalidity, |i| i.uidvalidity);
                let seq = self.push_work(
                    txn,
                    &Work::Rename {
                        user,
                        from,
                        to,
                        inbox,
                    },
                )?;
                Ok(ok(seq, uidvalidity, Vec::new(), Vec::new()))
            }
            Op::Subscribe { name } => self.subscribe(txn, boxes, user, name, true),
            Op::RegisterBackend { node, kind } => {
                drop(boxes);
                let mut counters = txn.open_table(COUNTERS)?;
                counters.insert(backend_key(&kind, node).as_str(), 1)?;
                Ok(ok(0, 0, Vec::new(), Vec::new()))
            }
            Op::Unsubscribe { name } => self.subscribe(txn, boxes, user, name, false),
            Op::Append {
                mailbox,
                messages,
                replaces,
            } => {
                let mailbox = normalize(&mailbox);
                let Some(mut m) = get_mailbox(&boxes, &user, &mailbox)? else {
                    return Ok(no("TRYCREATE", "No such mailbox"));
                };
                // Refused before anything is recorded (adoptions included).
                {
                    let counters = txn.open_table(COUNTERS)?;
                    if strict_messages_in(&counters)? {
                        for msg in &messages {
                            if let Err(defect) = tandem_parser::message::check(&msg.body) {
                                return Ok(no("CANNOT", defect.to_string()));
                            }
                        }
                    }
                }
                if let Some(r) = &replaces {
                    if r.uids.len() != messages.len() {
                        return Ok(no("CANNOT", "Adoption does not match its messages"));
                    }
                    let mut adopted = txn.open_table(ADOPTED)?;
                    let keys: Vec<String> = r
                        .uids
                        .iter()
                        .map(|uid| format!("{}\0{user}\0{}\0{uid}", r.node, r.local_uidvalidity))
                        .collect();
                    for k in &keys {
                        if adopted.get(k.as_str())?.is_some() {
                            return Ok(no("ALREADYEXISTS", "Already adopted"));
                        }
                    }
                    for k in &keys {
                        adopted.insert(k.as_str(), ())?;
                    }
                }
                let n = messages.len() as u32;
                let first = m.uidnext;
                let Some(next) = first.checked_add(n).filter(|&x| x < u32::MAX) else {
                    return Ok(no("LIMIT", "The mailbox has used up its UIDs"));
                };
                let uids: Vec<u32> = (first..next).collect();
                let mut set = m.uid_set();
                if n > 0 {
                    set.insert(first, next - 1);
                }
                m.uids = set.ranges().to_vec();
                m.uidnext = next;
                put_mailbox(&mut boxes, &user, &mailbox, &m)?;
                drop(boxes);
                let seq = self.push_work(
                    txn,
                    &Work::Append {
                        user,
                        mailbox,
                        uidvalidity: m.uidvalidity,
                        uids: uids.clone(),
                        messages,
                        replaces,
                    },
                )?;
                Ok(ok(seq, m.uidvalidity, uids, Vec::new()))
            }
            Op::Copy {
                from,
                from_uidvalidity,
                uids,
                to,
                remove,
            } => {
                let (from, to) = (normalize(&from), normalize(&to));
                let Some(mut src) = get_mailbox(&boxes, &user, &from)? else {
                    return Ok(no("NONEXISTENT", "The selected mailbox no longer exists"));
                };
                if src.uidvalidity != from_uidvalidity {
                    return Ok(no("NONEXISTENT", "The selected mailbox was replaced"));
                }
                let Some(mut dst) = get_mailbox(&boxes, &user, &to)? else {
                    return Ok(no("TRYCREATE", "No such mailbox"));
                };
                let present = src.uid_set().intersection(&Ranges::from_ranges(uids));
                let n = present.len();
                let first = dst.uidnext;
                let Some(next) = u32::try_from(n)
                    .ok()
                    .and_then(|n| first.checked_add(n))
                    .filter(|&x| x < u32::MAX)
                else {
                    return Ok(no("LIMIT", "The mailbox has used up its UIDs"));
                };
                let source: Vec<u32> = present.iter().collect();
                let given: Vec<u32> = (first..next).collect();
                if n > 0 {
                    let mut set = dst.uid_set();
                    set.insert(first, next - 1);
                    dst.uids = set.ranges().to_vec();
                    dst.uidnext = next;
                }
                if remove && from != to {
                    src.uids = src.uid_set().difference(&present).ranges().to_vec();
                    put_mailbox(&mut boxes, &user, &from, &src)?;
                } else if remove {
                    // MOVE into the selected mailbox itself: the copies stay,
                    // the originals go.
                    let mut set = dst.uid_set().difference(&present);
                    if n > 0 {
                        set.insert(first, next - 1);
                    }
                    dst.uids = set.ranges().to_vec();
                }
                put_mailbox(&mut boxes, &user, &to, &dst)?;
                drop(boxes);
                let seq = self.push_work(
                    txn,
                    &Work::Copy {
                        user,
                        from,
                        from_uidvalidity,
                        to,
                        to_uidvalidity: dst.uidvalidity,
                        pairs: source.iter().copied().zip(given.iter().copied()).collect(),
                        remove,
                    },
                )?;
                Ok(ok(seq, dst.uidvalidity, given, source))
            }
            Op::Store {
                mailbox,
                uidvalidity,
                uids,
                mode,
                flags,
            } => {
                let mailbox = normalize(&mailbox);
                let Some(m) = get_mailbox(&boxes, &user, &mailbox)? else {
                    return Ok(no("NONEXISTENT", "The selected mailbox no longer exists"));
                };
                if m.uidvalidity != uidvalidity {
                    return Ok(no("NONEXISTENT", "The selected mailbox was replaced"));
                }
                let present = m.uid_set().intersection(&Ranges::from_ranges(uids));
                drop(boxes);
                let touched: Vec<u32> = present.iter().collect();
                let seq = self.push_work(
                    txn,
                    &Work::Store {
                        user,
                        mailbox,
                        uidvalidity,
                        uids: present.ranges().to_vec(),
                        mode,
                        flags,
                    },
                )?;
                Ok(ok(seq, uidvalidity, touched, Vec::new()))
            }
            Op::Expunge {
                mailbox,
                uidvalidity,
                uids,
            } => {
                let mailbox = normalize(&mailbox);
                let Some(mut m) = get_mailbox(&boxes, &user, &mailbox)? else {
                    return Ok(no("NONEXISTENT", "The selected mailbox no longer exists"));
                };
                if m.uidvalidity != uidvalidity {
                    return Ok(no("NONEXISTENT", "The selected mailbox was replaced"));
                }
                let present = m.uid_set().intersection(&Ranges::from_ranges(uids));
                m.uids = m.uid_set().difference(&present).ranges().to_vec();
                put_mailbox(&mut boxes, &user, &mailbox, &m)?;
                drop(boxes);
                let touched: Vec<u32> = present.iter().collect();
                let seq = self.push_work(
                    txn,
                    &Work::Expunge {
                        user,
                        mailbox,
                        uidvalidity,
                        uids: present.ranges().to_vec(),
                    },
                )?;
                Ok(ok(seq, uidvalidity, touched, Vec::new()))
            }
        }
    }

    fn subscribe(
        &self,
        txn: &redb::WriteTransaction,
        boxes: redb::Table<'_, &str, &[u8]>,
        user: String,
        name: String,
        on: bool,
    ) -> SmResult<Outcome> {
        let name = normalize(&name);
        if on && get_mailbox(&boxes, &user, &name)?.is_none() {
            return Ok(no("NONEXISTENT", "No such mailbox"));
        }
        drop(boxes);
        let mut subs = txn.open_table(SUBSCRIPTIONS)?;
        if on {
            subs.insert(key(&user, &name).as_str(), ())?;
        } else {
            subs.remove(key(&user, &name).as_str())?;
        }
        drop(subs);
        let seq = self.push_work(txn, &Work::Subscribe { user, name, on })?;
        Ok(Outcome::Ok {
            seq,
            uidvalidity: 0,
            uids: Vec::new(),
            source: Vec::new(),
        })
    }
}

/// What a snapshot holds: the canonical tables (the outbox is local work
/// and is not part of it; a node that installs a snapshot resyncs).
#[derive(Serialize, Deserialize)]
struct Snapshot {
    mailboxes: Vec<(String, Vec<u8>)>,
    subscriptions: Vec<String>,
    counters: Vec<(String, u64)>,
    adopted: Vec<String>,
}

fn read_all<K, V, T>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<'_, K, V>,
    f: impl Fn(redb::AccessGuard<'_, K>, redb::AccessGuard<'_, V>) -> T,
) -> SmResult<Vec<T>>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let t = match txn.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for r in t.iter()? {
        let (k, v) = r?;
        out.push(f(k, v));
    }
    Ok(out)
}

impl StateMachine for Canon {
    type Entry = Entry;
    type Output = Outcome;

    fn apply(
        &mut self,
        txn: &redb::WriteTransaction,
        _index: u64,
        entry: Entry,
    ) -> Result<Outcome, SmError> {
        self.entry_secs = entry.at_secs;
        self.apply_op(txn, entry)
    }

    fn snapshot(&self, txn: &redb::ReadTransaction) -> Result<Vec<u8>, SmError> {
        let s = Snapshot {
            mailboxes: read_all(txn, MAILBOXES, |k, v| {
                (k.value().to_string(), v.value().to_vec())
            })?,
            subscriptions: read_all(txn, SUBSCRIPTIONS, |k, _| k.value().to_string())?,
            counters: read_all(txn, COUNTERS, |k, v| (k.value().to_string(), v.value()))?,
            adopted: read_all(txn, ADOPTED, |k, _| k.value().to_string())?,
        };
        Ok(postcard::to_stdvec(&s)?)
    }

    fn restore(&mut self, txn: &redb::WriteTransaction, snapshot: &[u8]) -> Result<(), SmError> {
        let s: Snapshot = postcard::from_bytes(snapshot)?;
        let mut boxes = txn.open_table(MAILBOXES)?;
        boxes.retain(|_, _| false)?;
        for (k, v) in &s.mailboxes {
            boxes.insert(k.as_str(), v.as_slice())?;
        }
        let mut subs = txn.open_table(SUBSCRIPTIONS)?;
        subs.retain(|_, _| false)?;
        for k in &s.subscriptions {
            subs.insert(k.as_str(), ())?;
        }
        let mut counters = txn.open_table(COUNTERS)?;
        counters.retain(|_, _| false)?;
        for (k, v) in &s.counters {
            counters.insert(k.as_str(), *v)?;
        }
        let mut adopted = txn.open_table(ADOPTED)?;
        adopted.retain(|_, _| false)?;
        for k in &s.adopted {
            adopted.insert(k.as_str(), ())?;
        }
        // Work queued before the snapshot is superseded by the resync.
        let mut outbox = txn.open_table(OUTBOX)?;
        outbox.retain(|_, _| false)?;
        Ok(())
    }
}

/// The sequence number of the last outbox item queued (on every node,
/// witnesses included, though only mail nodes keep the items).
pub fn last_seq(db: &redb::Database) -> u64 {
    use redb::ReadableDatabase;
    let read = || -> Option<u64> {
        let txn = db.begin_read().ok()?;
        let t = txn.open_table(COUNTERS).ok()?;
        let v = t.get("seq").ok()??;
        Some(v.value())
    };
    read().unwrap_or(0)
}

/// Reads a user's mailbox from the committed canonical state.
pub fn read_mailbox(db: &redb::Database, user: &str, name: &str) -> Option<Mailbox> {
    use redb::ReadableDatabase;
    let txn = db.begin_read().ok()?;
    let t = txn.open_table(MAILBOXES).ok()?;
    let v = t.get(key(user, &normalize(name)).as_str()).ok()??;
    postcard::from_bytes(v.value()).ok()
}

/// Every mailbox of `user`, by name.
pub fn read_mailboxes(db: &redb::Database, user: &str) -> Vec<(String, Mailbox)> {
    use redb::ReadableDatabase;
    let Ok(txn) = db.begin_read() else {
        return Vec::new();
    };
    let Ok(t) = txn.open_table(MAILBOXES) else {
        return Vec::new();
    };
    let prefix = format!("{user}\0");
    let Ok(range) = t.range(prefix.as_str()..) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in range {
        let Ok((k, v)) = r else { break };
        let Some(name) = k.value().strip_prefix(&prefix) else {
            break;
        };
        if let Ok(m) = postcard::from_bytes(v.value()) {
            out.push((name.to_string(), m));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    fn db() -> redb::Database {
        redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap()
    }

    struct Fixture {
        db: redb::Database,
        sm: Canon,
        clock: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                db: db(),
                sm: Canon::new(true),
                clock: 1_700_000_000,
            }
        }

        fn run(&mut self, op: Op) -> Outcome {
            let txn = self.db.begin_write().unwrap();
            let out = self
                .sm
                .apply(
                    &txn,
                    1,
                    Entry {
                        origin: 1,
                        at_secs: self.clock,
                        user: "alice".to_string(),
                        op,
                    },
                )
                .unwrap();
            txn.commit().unwrap();
            out
        }

        fn outbox_len(&self) -> usize {
            let txn = self.db.begin_read().unwrap();
            match txn.open_table(OUTBOX) {
                Ok(t) => t.iter().unwrap().count(),
                Err(_) => 0,
            }
        }

        fn mailbox(&self, name: &str) -> Option<Mailbox> {
            read_mailbox(&self.db, "alice", name)
        }
    }

    fn create(name: &str) -> Op {
        Op::Create {
            name: name.to_string(),
        }
    }

    fn append(mailbox: &str, n: usize) -> Op {
        Op::Append {
            mailbox: mailbox.to_string(),
            messages: (0..n)
                .map(|i| NewMessage {
                    flags: vec![],
                    date: None,
                    body: format!("m{i}").into_bytes(),
                })
                .collect(),
            replaces: None,
        }
    }

    fn ok_uids(o: &Outcome) -> (u32, Vec<u32>, Vec<u32>) {
        match o {
            Outcome::Ok {
                uidvalidity,
                uids,
                source,
                ..
            } => (*uidvalidity, uids.clone(), source.clone()),
            Outcome::No { code, text } => panic!("refused: {code} {text}"),
        }
    }

    fn refused(o: &Outcome) -> &str {
        match o {
            Outcome::No { code, .. } => code,
            Outcome::Ok { .. } => panic!("accepted"),
        }
    }

    #[test]
    fn uids_only_grow_and_a_recreated_mailbox_gets_a_new_uidvalidity() {
        let mut f = Fixture::new();
        let (uv, ..) = ok_uids(&f.run(create("Box")));
        assert!(u64::from(uv) >= f.clock, "looks like a clock value");
        assert_eq!(ok_uids(&f.run(append("Box", 2))).1, vec![1, 2]);
        assert_eq!(ok_uids(&f.run(append("Box", 1))).1, vec![3]);
        assert_eq!(refused(&f.run(append("box", 1))), "TRYCREATE");
        assert_eq!(refused(&f.run(create("Box"))), "ALREADYEXISTS");
        ok_uids(&f.run(Op::Expunge {
            mailbox: "Box".into(),
            uidvalidity: uv,
            uids: vec![(3, 3)],
        }));
        // UIDNEXT does not go back when the last message goes.
        assert_eq!(ok_uids(&f.run(append("Box", 1))).1, vec![4]);
        ok_uids(&f.run(Op::Delete { name: "Box".into() }));
        // The clock went back (another proposer): still a new UIDVALIDITY.
        f.clock -= 1000;
        let (uv2, ..) = ok_uids(&f.run(create("Box")));
        assert!(uv2 > uv, "{uv2} after {uv}");
        assert_eq!(ok_uids(&f.run(append("Box", 1))).1, vec![1]);
    }

    #[test]
    fn messages_cyrus_refuses_are_refused_once_a_cyrus_node_registers() {
        let mut f = Fixture::new();
        ok_uids(&f.run(create("INBOX")));
        let bare_lf = || Op::Append {
            mailbox: "INBOX".into(),
            messages: vec![NewMessage {
                flags: vec![],
                date: None,
                body: b"Subject: a\n\nbare newlines\n".to_vec(),
            }],
            replaces: None,
        };
        // Dovecot-only: taken, as Dovecot takes it.
        assert_eq!(ok_uids(&f.run(bare_lf())).1, vec![1]);
        ok_uids(&f.run(Op::RegisterBackend {
            node: 1,
            kind: "dovecot".into(),
        }));
        assert_eq!(ok_uids(&f.run(bare_lf())).1, vec![2]);
        let queued = f.outbox_len();
        ok_uids(&f.run(Op::RegisterBackend {
            node: 2,
            kind: "cyrus".into(),
        }));
        assert_eq!(f.outbox_len(), queued, "a registration queues no work");
        assert_eq!(refused(&f.run(bare_lf())), "CANNOT");
        let before = f.mailbox("INBOX");
        assert_eq!(before.unwrap().uidnext, 3, "a refusal allocates no UID");
        // Well-formed mail still goes through.
        let good = Op::Append {
            mailbox: "INBOX".into(),
            messages: vec![NewMessage {
                flags: vec![],
                date: None,
                body: b"Subject: a\r\n\r\nfine\r\n".to_vec(),
            }],
            replaces: None,
        };
        assert_eq!(ok_uids(&f.run(good)).1, vec![3]);
    }

    #[test]
    fn a_mailbox_with_children_is_not_deleted_until_they_are_gone() {
        let mut f = Fixture::new();
        ok_uids(&f.run(create("Parent")));
        ok_uids(&f.run(create("Parent.Child")));
        ok_uids(&f.run(create("Parentless")));
        let delete = |name: &str| Op::DeleteLeaf {
            name: name.into(),
            separator: Some('.'),
        };
        let queued = f.outbox_len();
        assert_eq!(refused(&f.run(delete("Parent"))), "HASCHILDREN");
        assert_eq!(f.outbox_len(), queued, "a refusal queues nothing");
        assert_eq!(refused(&f.run(delete("INBOX"))), "CANNOT");
        assert_eq!(refused(&f.run(delete("Nowhere"))), "NONEXISTENT");
        ok_uids(&f.run(delete("Parent.Child")));
        ok_uids(&f.run(delete("Parent")));
        ok_uids(&f.run(delete("Parentless")));
        // Entries written before DeleteLeaf keep their meaning.
        ok_uids(&f.run(create("Old")));
        ok_uids(&f.run(create("Old.Kid")));
        ok_uids(&f.run(Op::Delete { name: "Old".into() }));
    }

    #[test]
    fn refusals_change_nothing_and_accepted_ops_queue_one_item_each() {
        let mut f = Fixture::new();
        ok_uids(&f.run(create("INBOX")));
        ok_uids(&f.run(append("INBOX", 3)));
        assert_eq!(f.outbox_len(), 2);
        let before = f.mailbox("INBOX");
        assert_eq!(
            refused(&f.run(Op::Delete {
                name: "inbox".into()
            })),
            "CANNOT"
        );
        assert_eq!(refused(&f.run(create("inbox"))), "ALREADYEXISTS");
        assert_eq!(
            refused(&f.run(Op::Store {
                mailbox: "INBOX".into(),
                uidvalidity: 1,
                uids: vec![(1, 3)],
                mode: FlagMode::Add,
                flags: vec!["\\Seen".into()],
            })),
            "NONEXISTENT",
            "a stale UIDVALIDITY is refused"
        );
        assert_eq!(f.mailbox("INBOX"), before);
        assert_eq!(f.outbox_len(), 2);
    }

    #[test]
    fn copy_takes_only_existing_messages_and_move_removes_them() {
        let mut f = Fixture::new();
        let (src_uv, ..) = ok_uids(&f.run(create("A")));
        ok_uids(&f.run(create("B")));
        ok_uids(&f.run(append("A", 3)));
        ok_uids(&f.run(Op::Expunge {
            mailbox: "A".into(),
            uidvalidity: src_uv,
            uids: vec![(2, 2)],
        }));
        let copy = |remove| Op::Copy {
            from: "A".into(),
            from_uidvalidity: src_uv,
            uids: vec![(1, 10)],
            to: "B".into(),
            remove,
        };
        let (_, given, source) = ok_uids(&f.run(copy(false)));
        assert_eq!((given, source), (vec![1, 2], vec![1, 3]));
        let (_, given, source) = ok_uids(&f.run(copy(true)));
        assert_eq!((given, source), (vec![3, 4], vec![1, 3]));
        assert!(f.mailbox("A").unwrap().uids.is_empty());
        assert_eq!(f.mailbox("B").unwrap().uids, vec![(1, 4)]);
        // Nothing left to copy: accepted, nothing given.
        let (_, given, _) = ok_uids(&f.run(copy(false)));
        assert!(given.is_empty());
    }

    #[test]
    fn rename_moves_children_and_keeps_uidvalidity_but_rename_inbox_moves_messages() {
        let mut f = Fixture::new();
        let (uv, ..) = ok_uids(&f.run(create("a")));
        let (kid_uv, ..) = ok_uids(&f.run(create("a.b")));
        ok_uids(&f.run(create("ab")));
        let rename = |from: &str, to: &str| Op::Rename {
            from: from.into(),
            to: to.into(),
            separator: Some('.'),
        };
        assert_eq!(refused(&f.run(rename("a", "a.c"))), "CANNOT");
        ok_uids(&f.run(rename("a", "z")));
        assert_eq!(f.mailbox("z").unwrap().uidvalidity, uv);
        assert_eq!(f.mailbox("z.b").unwrap().uidvalidity, kid_uv);
        assert!(f.mailbox("a").is_none() && f.mailbox("a.b").is_none());
        assert!(f.mailbox("ab").is_some(), "not a child of a");

        let (inbox_uv, ..) = ok_uids(&f.run(create("INBOX")));
        ok_uids(&f.run(append("INBOX", 2)));
        let (saved_uv, ..) = ok_uids(&f.run(rename("INBOX", "Saved")));
        let inbox = f.mailbox("INBOX").unwrap();
        assert_eq!((inbox.uidvalidity, inbox.uidnext), (inbox_uv, 3));
        assert!(inbox.uids.is_empty());
        let saved = f.mailbox("Saved").unwrap();
        assert_eq!(
            (saved.uidvalidity, saved.uids.clone()),
            (saved_uv, vec![(1, 2)])
        );
    }

    #[test]
    fn a_message_is_adopted_once() {
        let mut f = Fixture::new();
        ok_uids(&f.run(create("INBOX")));
        let adopt = || Op::Append {
            mailbox: "INBOX".into(),
            messages: vec![NewMessage {
                flags: vec![],
                date: None,
                body: b"x".to_vec(),
            }],
            replaces: Some(Replaces {
                node: 2,
                local_uidvalidity: 77,
                uids: vec![5],
            }),
        };
        assert_eq!(ok_uids(&f.run(adopt())).1, vec![1]);
        assert_eq!(refused(&f.run(adopt())), "ALREADYEXISTS");
        assert_eq!(f.mailbox("INBOX").unwrap().uidnext, 2);
    }

    #[test]
    fn a_snapshot_restores_the_same_state() {
        let mut f = Fixture::new();
        ok_uids(&f.run(create("INBOX")));
        ok_uids(&f.run(append("INBOX", 3)));
        ok_uids(&f.run(Op::Subscribe {
            name: "INBOX".into(),
        }));
        let snap = f.sm.snapshot(&f.db.begin_read().unwrap()).unwrap();
        let mut g = Fixture::new();
        let txn = g.db.begin_write().unwrap();
        g.sm.restore(&txn, &snap).unwrap();
        txn.commit().unwrap();
        assert_eq!(g.mailbox("INBOX"), f.mailbox("INBOX"));
        assert_eq!(g.sm.snapshot(&g.db.begin_read().unwrap()).unwrap(), snap);
        // Both go on identically.
        assert_eq!(g.run(append("INBOX", 1)), f.run(append("INBOX", 1)));
    }
}
