//! The canonical state's tables in the node's redb database, their keys,
//! and the reads the rest of tandem makes of the committed state.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tandem_parser::seqset::Ranges;

use crate::SmResult;

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

/// The COUNTERS key that records node `node`'s backend `kind`.
pub(crate) fn backend_key(kind: &str, node: u64) -> String {
    format!("backend/{kind}/{node}")
}

/// Whether a node in front of Cyrus has registered: then messages Cyrus
/// refuses (`tandem_parser::message`) are refused on every node. A
/// Dovecot-only cluster takes them, as Dovecot does. Those rules are part
/// of the state machine: replaying the log must give the same answers, so
/// they must never change in place (a new rule set needs a new entry kind
/// or a version in the registration).
pub(crate) fn strict_messages_in(
    t: &impl redb::ReadableTable<&'static str, u64>,
) -> SmResult<bool> {
    let prefix = "backend/cyrus/";
    let mut range = t.range(prefix..)?;
    Ok(match range.next() {
        Some(r) => r?.0.value().starts_with(prefix),
        None => false,
    })
}

/// [`strict_messages_in`] from the committed state (the session's
/// pre-check; the state machine decides).
pub fn strict_messages(txn: &redb::ReadTransaction) -> bool {
    match txn.open_table(COUNTERS) {
        Ok(t) => strict_messages_in(&t).unwrap_or(true),
        Err(redb::TableError::TableDoesNotExist(_)) => false,
        Err(_) => true,
    }
}

/// The registered (node, backend kind) pairs, by node.
pub fn registered_backends(txn: &redb::ReadTransaction) -> Vec<(u64, String)> {
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
pub fn backend_registered(txn: &redb::ReadTransaction, node: u64, kind: &str) -> bool {
    let Ok(t) = txn.open_table(COUNTERS) else {
        return false;
    };
    t.get(backend_key(kind, node).as_str())
        .ok()
        .flatten()
        .is_some()
}

/// The sequence number of the last outbox item queued (on every node,
/// witnesses included, though only mail nodes keep the items).
pub fn last_seq(txn: &redb::ReadTransaction) -> u64 {
    let read = || -> Option<u64> {
        let t = txn.open_table(COUNTERS).ok()?;
        let v = t.get("seq").ok()??;
        Some(v.value())
    };
    read().unwrap_or(0)
}

/// Reads a user's mailbox from the committed canonical state.
///
/// The reads here take a read transaction of the node's database
/// (`tandem_replicator::Node::read`), so that one caller can make several
/// of them on the same state.
pub fn read_mailbox(txn: &redb::ReadTransaction, user: &str, name: &str) -> Option<Mailbox> {
    let t = txn.open_table(MAILBOXES).ok()?;
    let v = t.get(key(user, &normalize(name)).as_str()).ok()??;
    postcard::from_bytes(v.value()).ok()
}

/// Every mailbox of `user`, by name.
pub fn read_mailboxes(txn: &redb::ReadTransaction, user: &str) -> Vec<(String, Mailbox)> {
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

/// A user's mailbox, from an open [`MAILBOXES`] table.
pub(crate) fn get_mailbox(
    t: &redb::Table<'_, &str, &[u8]>,
    user: &str,
    name: &str,
) -> SmResult<Option<Mailbox>> {
    match t.get(key(user, name).as_str())? {
        Some(v) => Ok(Some(postcard::from_bytes(v.value())?)),
        None => Ok(None),
    }
}

/// Writes a user's mailbox into an open [`MAILBOXES`] table.
pub(crate) fn put_mailbox(
    t: &mut redb::Table<'_, &str, &[u8]>,
    user: &str,
    name: &str,
    m: &Mailbox,
) -> SmResult<()> {
    t.insert(key(user, name).as_str(), postcard::to_stdvec(m)?.as_slice())?;
    Ok(())
}

/// The names of `user`'s mailboxes strictly under `name` (by `separator`).
pub(crate) fn children(
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
