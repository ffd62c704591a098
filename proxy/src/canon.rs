//! The canonical state machine (being built: issue #6).

use serde::{Deserialize, Serialize};
use tandem_replicator::{SmError, StateMachine};

/// The canonical mailbox state of the cluster.
#[derive(Debug, Default)]
pub struct Canon;

/// A replicated mutation.
#[derive(Debug, Serialize, Deserialize)]
pub enum Entry {
    /// Nothing.
    Noop,
}

impl StateMachine for Canon {
    type Entry = Entry;
    type Output = ();
    fn apply(
        &mut self,
        _txn: &redb::WriteTransaction,
        _index: u64,
        _entry: Entry,
    ) -> Result<(), SmError> {
        Ok(())
    }
    fn snapshot(&self, _txn: &redb::ReadTransaction) -> Result<Vec<u8>, SmError> {
        Ok(Vec::new())
    }
    fn restore(&mut self, _txn: &redb::WriteTransaction, _snapshot: &[u8]) -> Result<(), SmError> {
        Ok(())
    }
}
