//! tandem's canonical state machine: per user, the mailboxes with their
//! canonical UIDVALIDITY, UIDNEXT and UIDs, and the subscriptions. Every
//! node applies the same committed entries in the same order and so derives
//! the same canonical numbers; no node's backend is asked.
//!
//! What this crate never does: network, files, clocks, environment, or a
//! backend. Its only effects are writes into the redb transaction that the
//! replicator hands to [`StateMachine::apply`], so replaying a log gives
//! the same state and the same answers on every node. Time comes in the
//! entry (the proposer's clock, [`Entry::at_secs`]). clippy's
//! `disallowed-methods` (this crate's `clippy.toml`) keeps clocks and the
//! environment out.
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
//! - The rules an entry is judged by never change in place: a new rule needs
//!   a new entry kind (as [`Op::DeleteLeaf`] beside [`Op::Delete`]).
//!
//! # Layout
//! - [`entry`]: the log's vocabulary, [`Entry`] and [`Op`].
//! - [`work`]: what applying produces, [`Outcome`] and the outbox's [`Work`].
//! - [`tables`]: the redb tables, their keys, and reads of committed state.
//! - `mailboxes`, `messages`: `apply` for each op family.
//! - `snapshot`: snapshot and restore.

#![forbid(unsafe_code)]

pub mod entry;
mod mailboxes;
mod messages;
mod snapshot;
pub mod tables;
pub mod work;

pub use entry::{Entry, FlagMode, NewMessage, Op, Replaces};
pub use tables::{
    backend_registered, key, last_seq, normalize, read_mailbox, read_mailboxes,
    registered_backends, strict_messages, Mailbox, ADOPTED, COUNTERS, MAILBOXES, OUTBOX,
    SUBSCRIPTIONS,
};
pub use work::{InboxMove, Outcome, Queued, Work};

use tandem_replicator::{SmError, StateMachine};

pub(crate) type SmResult<T> = Result<T, SmError>;

/// The state machine. Its state lives in redb tables (see [`tables`]);
/// the struct holds only how this node uses it.
#[derive(Debug, Default)]
pub struct Canon {
    /// Whether this node has a backend: a witness keeps the canonical state
    /// but no outbox.
    pub outbox: bool,
}

impl Canon {
    /// The state machine of a mail node (`outbox`) or a witness.
    pub fn new(outbox: bool) -> Canon {
        Canon { outbox }
    }
}

/// One entry being applied: the transaction, whose entry it is, and
/// whether this node keeps an outbox.
pub(crate) struct Apply<'t> {
    txn: &'t redb::WriteTransaction,
    user: String,
    /// The proposer's clock: a floor for new UIDVALIDITYs, and the outbox
    /// item's age (for the replication lag in seconds).
    at_secs: u64,
    outbox: bool,
}

impl<'t> Apply<'t> {
    /// The mailboxes table.
    fn mailboxes(&self) -> SmResult<redb::Table<'t, &'static str, &'static [u8]>> {
        Ok(self.txn.open_table(MAILBOXES)?)
    }

    /// A new UIDVALIDITY: above the last one given, and at least the
    /// proposer's clock (so values look like Dovecot's).
    fn next_uidvalidity(&self) -> SmResult<u32> {
        use redb::ReadableTable;
        let mut counters = self.txn.open_table(COUNTERS)?;
        let last = counters.get("uidvalidity")?.map(|v| v.value()).unwrap_or(0);
        let v = (last + 1).max(self.at_secs.min(u64::from(u32::MAX)));
        if v > u64::from(u32::MAX) {
            return Err("UIDVALIDITY space exhausted".into());
        }
        counters.insert("uidvalidity", v)?;
        Ok(v as u32)
    }

    /// Queues `work` under the next outbox sequence number (counted on a
    /// witness too, which keeps no items) and answers with it.
    fn queue(&self, work: &Work) -> SmResult<u64> {
        use redb::ReadableTable;
        let mut counters = self.txn.open_table(COUNTERS)?;
        let seq = counters.get("seq")?.map(|v| v.value()).unwrap_or(0) + 1;
        counters.insert("seq", seq)?;
        if self.outbox {
            let mut outbox = self.txn.open_table(OUTBOX)?;
            let item: (u64, &Work) = (self.at_secs, work);
            outbox.insert(seq, postcard::to_stdvec(&item)?.as_slice())?;
        }
        Ok(seq)
    }
}

/// An accepted entry's outcome.
pub(crate) fn accepted(seq: u64, uidvalidity: u32, uids: Vec<u32>, source: Vec<u32>) -> Outcome {
    Outcome::Ok {
        seq,
        uidvalidity,
        uids,
        source,
    }
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
        let cx = Apply {
            txn,
            user: entry.user,
            at_secs: entry.at_secs,
            outbox: self.outbox,
        };
        match entry.op {
            Op::Create { name } => mailboxes::create(cx, name),
            Op::Delete { name } => mailboxes::delete(cx, name, None),
            Op::DeleteLeaf { name, separator } => mailboxes::delete(cx, name, Some(separator)),
            Op::Rename {
                from,
                to,
                separator,
            } => mailboxes::rename(cx, from, to, separator),
            Op::Subscribe { name } => mailboxes::subscribe(cx, name, true),
            Op::Unsubscribe { name } => mailboxes::subscribe(cx, name, false),
            Op::RegisterBackend { node, kind } => mailboxes::register_backend(cx, node, &kind),
            Op::Append {
                mailbox,
                messages,
                replaces,
            } => messages::append(cx, mailbox, messages, replaces, Vec::new()),
            Op::AppendLiteral8 {
                mailbox,
                messages,
                literal8,
            } => messages::append(cx, mailbox, messages, None, literal8),
            Op::Copy {
                from,
                from_uidvalidity,
                uids,
                to,
                remove,
            } => messages::copy(cx, (from, from_uidvalidity), uids, to, remove),
            Op::Store {
                mailbox,
                uidvalidity,
                uids,
                mode,
                flags,
            } => messages::store(cx, (mailbox, uidvalidity), uids, mode, flags),
            Op::Expunge {
                mailbox,
                uidvalidity,
                uids,
            } => messages::expunge(cx, (mailbox, uidvalidity), uids),
        }
    }

    fn snapshot(&self, txn: &redb::ReadTransaction) -> Result<Vec<u8>, SmError> {
        snapshot::take(txn)
    }

    fn restore(&mut self, txn: &redb::WriteTransaction, snapshot: &[u8]) -> Result<(), SmError> {
        snapshot::restore(txn, snapshot)
    }
}

#[cfg(test)]
mod tests;
