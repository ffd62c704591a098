//! Snapshots of the canonical tables, for a node too far behind to be sent
//! the log.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::tables::{ADOPTED, COUNTERS, MAILBOXES, OUTBOX, SUBSCRIPTIONS};
use crate::SmResult;

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

/// The canonical tables, encoded.
pub(crate) fn take(txn: &redb::ReadTransaction) -> SmResult<Vec<u8>> {
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

/// Replaces the canonical tables with a snapshot's, and empties the outbox.
pub(crate) fn restore(txn: &redb::WriteTransaction, snapshot: &[u8]) -> SmResult<()> {
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
