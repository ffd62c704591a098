//! A minimal deterministic state machine for tests and benchmarks of the
//! log: an append-only list whose positions are allocated in log order, the
//! way the mail state machine allocates UIDs. Not used by the product.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::{Node, SmError, StateMachine};

const ITEMS: TableDefinition<'_, u64, &str> = TableDefinition::new("test_items");
const NEXT: TableDefinition<'_, &str, u64> = TableDefinition::new("test_next");

/// An entry: record `value` under the next sequence number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Put(pub String);

/// The test state machine: a durable, append-only list whose positions are
/// allocated in log order (a stand-in for UIDNEXT).
#[derive(Debug, Default)]
pub struct Seq;

impl StateMachine for Seq {
    type Entry = Put;
    type Output = u64;

    fn apply(
        &mut self,
        txn: &redb::WriteTransaction,
        _index: u64,
        entry: Put,
    ) -> Result<u64, SmError> {
        let mut next = txn.open_table(NEXT)?;
        let n = next.get("next")?.map(|v| v.value()).unwrap_or(1);
        next.insert("next", n + 1)?;
        let mut items = txn.open_table(ITEMS)?;
        items.insert(n, entry.0.as_str())?;
        Ok(n)
    }

    fn snapshot(&self, txn: &redb::ReadTransaction) -> Result<Vec<u8>, SmError> {
        let items: Vec<(u64, String)> = match txn.open_table(ITEMS) {
            Ok(t) => t
                .iter()?
                .map(|r| r.map(|(k, v)| (k.value(), v.value().to_string())))
                .collect::<Result<_, _>>()?,
            Err(redb::TableError::TableDoesNotExist(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(postcard::to_stdvec(&items)?)
    }

    fn restore(&mut self, txn: &redb::WriteTransaction, snapshot: &[u8]) -> Result<(), SmError> {
        let items: Vec<(u64, String)> = postcard::from_bytes(snapshot)?;
        let mut t = txn.open_table(ITEMS)?;
        t.retain(|_, _| false)?;
        let mut next = 1;
        for (k, v) in &items {
            t.insert(*k, v.as_str())?;
            next = next.max(k + 1);
        }
        txn.open_table(NEXT)?.insert("next", next)?;
        Ok(())
    }
}

/// What a node's state machine holds, in order.
pub fn items(node: &Node<Seq>) -> Vec<(u64, String)> {
    node.read(|txn| {
        let t = txn.open_table(ITEMS).ok()?;
        let items = t
            .iter()
            .ok()?
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.value(), v.value().to_string())
            })
            .collect();
        Some(items)
    })
    .unwrap_or_default()
}
