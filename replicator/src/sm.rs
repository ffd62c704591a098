//! The interface between the log and the application's state machine.
//!
//! Ordering invariants:
//! - Committed entries are applied one at a time, in log order, on every
//!   node; `apply` sees each index exactly once per node (a node restored
//!   from a snapshot skips the indexes the snapshot covers).
//! - `apply` is deterministic: its output and its writes depend only on the
//!   tables in the transaction it is given and on the entry. It never reads
//!   a clock, a random source, the network or the backend mail server.
//! - The writes `apply` makes in its transaction are committed together with
//!   the applied index, so a crash never separates them.
//!
//! Side effects on the mail backend do not belong here: they follow the
//! applied log in the proxy, with their own durable cursor.

use serde::{de::DeserializeOwned, Serialize};

/// An error from the application's state machine. Returning one stops the
/// node's Raft (a state machine that cannot apply a committed entry must not
/// go on), so deterministic refusals ("no such mailbox") belong in `Output`.
pub type SmError = Box<dyn std::error::Error + Send + Sync>;

/// The application's deterministic state machine.
pub trait StateMachine: Send + Sync + 'static {
    /// A typed log entry.
    type Entry: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What applying an entry returns to its proposer.
    type Output: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Applies the committed entry at log `index`; writes go into `txn`.
    /// Entries proposed together share one log index and are applied one
    /// after the other, in the order they were batched.
    fn apply(
        &mut self,
        txn: &redb::WriteTransaction,
        index: u64,
        entry: Self::Entry,
    ) -> Result<Self::Output, SmError>;

    /// Serializes the whole state as of the committed data visible in `txn`.
    fn snapshot(&self, txn: &redb::ReadTransaction) -> Result<Vec<u8>, SmError>;

    /// Replaces the whole state with a snapshot made by [`Self::snapshot`].
    fn restore(&mut self, txn: &redb::WriteTransaction, snapshot: &[u8]) -> Result<(), SmError>;

    /// Decodes an entry, applies it and encodes the output. Not meant to be
    /// overridden.
    fn apply_encoded(
        &mut self,
        txn: &redb::WriteTransaction,
        index: u64,
        entry: &[u8],
    ) -> Result<Vec<u8>, SmError> {
        let entry: Self::Entry = postcard::from_bytes(entry)?;
        let output = self.apply(txn, index, entry)?;
        Ok(postcard::to_stdvec(&output)?)
    }
}
