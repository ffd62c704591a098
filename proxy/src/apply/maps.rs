//! The canonical <-> local UID maps of this node, one per canonical
//! mailbox, durable in redb and cached in memory. Sessions read them to
//! rewrite UIDs; only the applier's workers change them (`Worker::commit`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use tandem_parser::uidmap::RunMap;
use tandem_replicator::LocalTables;
use tokio::sync::watch;

use super::{Change, StoreError};

/// `user \0 canonical UIDVALIDITY` -> postcard [`StoredMap`].
const MAPS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("applier_maps");

fn map_key(user: &str, uidvalidity: u32) -> String {
    format!("{user}\0{uidvalidity}")
}

#[derive(Serialize, Deserialize)]
struct StoredMap {
    local_uidvalidity: u32,
    runs: Vec<(u32, u32, u32)>,
}

/// The UID map of one canonical mailbox on this node.
#[derive(Debug, Clone, Default)]
pub struct MailboxMap {
    /// The backend's UIDVALIDITY for it.
    pub local_uidvalidity: u32,
    /// Canonical -> local.
    pub to_local: RunMap,
    /// Local -> canonical.
    pub to_canon: RunMap,
}

/// Every UID map of this node, cached in memory over the durable table.
#[derive(Debug)]
pub struct Maps {
    db: LocalTables,
    cache: Mutex<HashMap<(String, u32), Arc<MailboxMap>>>,
    version: watch::Sender<u64>,
}

impl Maps {
    pub(super) fn new(db: LocalTables) -> Maps {
        Maps {
            db,
            cache: Mutex::new(HashMap::new()),
            version: watch::channel(0).0,
        }
    }

    /// The map of `user`'s mailbox with canonical `uidvalidity`, if this
    /// node's backend holds it.
    pub fn get(&self, user: &str, uidvalidity: u32) -> Option<Arc<MailboxMap>> {
        let k = (user.to_string(), uidvalidity);
        if let Some(m) = self.cache.lock().ok()?.get(&k) {
            return Some(m.clone());
        }
        let txn = self.db.begin_read().ok()?;
        let t = txn.open_table(MAPS).ok()?;
        let v = t.get(map_key(user, uidvalidity).as_str()).ok()??;
        let stored: StoredMap = postcard::from_bytes(v.value()).ok()?;
        let to_local = RunMap::from_runs(stored.runs)?;
        let m = Arc::new(MailboxMap {
            local_uidvalidity: stored.local_uidvalidity,
            to_canon: to_local.inverse(),
            to_local,
        });
        self.cache.lock().ok()?.insert(k, m.clone());
        Some(m)
    }

    /// A number that changes whenever a map does.
    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Changes whenever a map does (sessions wait on it for a UID the
    /// applier is about to record).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

impl Maps {
    /// Creates the durable table if it is missing (so that sessions can
    /// read it before the first item is applied).
    pub(super) fn create_table(txn: &redb::WriteTransaction) -> Result<(), redb::TableError> {
        txn.open_table(MAPS).map(drop)
    }

    /// Writes `changes` into `txn`, which the caller commits together with
    /// the item's removal from the outbox.
    pub(super) fn write(
        txn: &redb::WriteTransaction,
        changes: &[Change],
    ) -> Result<(), StoreError> {
        let mut maps = txn.open_table(MAPS)?;
        for c in changes {
            match c {
                Change::Put(user, uv, m) => {
                    let stored = StoredMap {
                        local_uidvalidity: m.local_uidvalidity,
                        runs: m.to_local.runs().to_vec(),
                    };
                    let bytes = postcard::to_stdvec(&stored)?;
                    maps.insert(map_key(user, *uv).as_str(), bytes.as_slice())?;
                }
                Change::Remove(user, uv) => {
                    maps.remove(map_key(user, *uv).as_str())?;
                }
            }
        }
        Ok(())
    }

    /// After `changes` were committed: the cache follows, and sessions
    /// waiting for a map are woken.
    pub(super) fn committed(&self, changes: Vec<Change>) {
        if let Ok(mut cache) = self.cache.lock() {
            for c in changes {
                match c {
                    Change::Put(user, uv, m) => {
                        cache.insert((user, uv), Arc::new(m));
                    }
                    Change::Remove(user, uv) => {
                        cache.remove(&(user, uv));
                    }
                }
            }
        }
        self.version.send_modify(|v| *v += 1);
    }
}
