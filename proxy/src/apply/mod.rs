//! The applier: carries the committed outbox of the canonical state machine
//! to this node's backend, in order, through the backend's own IMAP with the
//! admin acting as each user, and keeps the durable canonical <-> local UID
//! maps that the sessions rewrite with.
//!
//! Ordering invariants:
//! - Each user's items are applied in sequence order (items of different
//!   mailboxes in parallel lanes). The map changes of an item and its
//!   removal from the outbox are committed together, without an fsync of
//!   their own: redb's next durable commit carries them (the log store's
//!   syncer's, or a barrier below). After a crash, every item up to the
//!   durable high-water mark is *in doubt*: it is looked for on the backend
//!   (the unmapped messages, in order, byte for byte) before it is applied.
//! - Looking works only while the evidence is still there, so an item that
//!   destroys evidence (EXPUNGE, MOVE, DELETE, RENAME, the expunge of
//!   adopted originals) is preceded by a durable commit, a *barrier*: the
//!   items before it are never in doubt once it has run, and what a crash
//!   leaves in doubt is at most one such item per mailbox followed by items
//!   that only add messages or change flags.
//! - Local UIDs are learned only from the backend's APPENDUID / COPYUID
//!   (RFC 4315), and pushed into strictly increasing maps: canonical order
//!   and local order agree, so sequence numbers agree across nodes.
//! - A backend that cannot be reached stops the applier on this node only
//!   (it retries, its lag grows); a backend that refuses an item is recorded
//!   as a failure of that item and the applier goes on.
//!
//! # Layout
//! - `maps`: the canonical <-> local UID maps the sessions read.
//! - `progress`: which items are applied, the refusals kept for their
//!   proposers, the per-user locks and addition counts.
//! - `dispatch`: the dispatcher ([`Applier`]): outbox to per-user workers,
//!   under a durable high-water mark.
//! - `worker`: a user's worker: lanes, retries, the backend sessions.
//! - `ops`: one function per kind of outbox item.
//! - `doubt`: items in doubt after a crash or a lost answer: barriers, MOVE
//!   evidence, and the pure look-ups of what already reached the backend.
//! - `reading`: what the applier reads out of the backend's answers.
//! - `seam`: the backend sessions the workers use (`BackendConn` with the
//!   admin's login; a scripted backend in unit tests).

mod dispatch;
mod doubt;
mod maps;
mod ops;
mod progress;
mod reading;
#[cfg(test)]
mod scripted;
mod seam;
mod worker;

pub use dispatch::Applier;
pub use maps::{MailboxMap, Maps};
pub use progress::{Failure, Progress, UserLocks};
pub(crate) use reading::search_numbers;

use std::sync::Arc;

use redb::{ReadableTable, TableDefinition};
use tandem_replicator::LocalTables;
use tandem_state::{COUNTERS, OUTBOX};

use crate::backend::BackendError;

/// How far ahead the high-water mark is raised at a time (one fsync each).
const HIGH_WATER_STEP: u64 = 256;
/// Key of the high-water mark in [`STATE`].
const DISPATCHED: &str = "dispatched";
/// Key of the last barrier's item in [`STATE`] (written to have something
/// to commit durably).
const BARRIER: &str = "barrier";
/// The applier's own durable values.
const STATE: TableDefinition<'_, &str, u64> = TableDefinition::new("applier_state");
/// Per user, what the sources of the user's last MOVE looked like before it
/// ran ([`doubt::Evidence`]), written by the barrier before it.
const MOVE_EVIDENCE: TableDefinition<'_, &str, &[u8]> =
    TableDefinition::new("applier_move_evidence");

/// Why the applier could not read or write its tables (a full disk, an
/// I/O error, a corrupt database, a value that does not decode).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb refused.
    #[error("applier store: {0}")]
    Db(#[from] redb::Error),
    /// A stored value did not encode or decode.
    #[error("applier store encoding: {0}")]
    Codec(#[from] postcard::Error),
}

macro_rules! store_error_from {
    ($($t:ty),*) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        })*
    };
}
store_error_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// Why an item could not be applied.
enum ApplyError {
    /// The backend is unreachable or broke the connection: retry later.
    Transient(String),
    /// The backend refused: record and go on.
    Refused(String),
}

impl ApplyError {
    /// The backend's answer to a command it did not carry out. A BAD says
    /// the command is wrong and always will be: it is final at once, never
    /// retried like a NO that may be passing.
    fn refused(status: crate::backend::Status, text: String) -> ApplyError {
        if status == crate::backend::Status::Bad {
            ApplyError::Refused(format!("[CLIENTBUG] {text}"))
        } else {
            ApplyError::Refused(text)
        }
    }
}

impl From<BackendError> for ApplyError {
    fn from(e: BackendError) -> Self {
        ApplyError::Transient(e.to_string())
    }
}

/// A map change to commit with the cursor.
enum Change {
    Put(String, u32, MailboxMap),
    Remove(String, u32),
}

/// Opens the maps and the progress of this node's applier. Everything
/// below the oldest item left in the outbox is applied.
pub fn open(db: LocalTables) -> Result<(Arc<Maps>, Arc<Progress>), StoreError> {
    let txn = db.begin_write()?;
    let (cursor, done) = {
        Maps::create_table(&txn)?;
        let outbox = txn.open_table(OUTBOX)?;
        let mut queued = std::collections::BTreeSet::new();
        for r in outbox.iter()? {
            queued.insert(r?.0.value());
        }
        match (queued.first(), queued.last()) {
            // Between the queued items, the missing ones are applied.
            (Some(&first), Some(&last)) => (
                first - 1,
                (first..=last).filter(|s| !queued.contains(s)).collect(),
            ),
            _ => {
                let c = txn.open_table(COUNTERS)?;
                let v = c.get("seq")?;
                (v.map(|v| v.value()).unwrap_or(0), Default::default())
            }
        }
    };
    txn.commit()?;
    let progress = Arc::new(Progress::new(cursor, done));
    Ok((Arc::new(Maps::new(db)), progress))
}
