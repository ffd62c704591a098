//! Durable storage of the log, the vote and the state machine, in one redb
//! database per node.
//!
//! Ordering invariants:
//! - An append is reported flushed to openraft only after its redb
//!   transaction committed with `Durability::Immediate` (an fsync). openraft
//!   batches the entries it has ready into one `append`, so concurrent
//!   proposals share one sync (group commit).
//! - A vote is durable before `save_vote` returns, hence before any message
//!   that depends on it is sent.
//! - The state machine's own writes and the applied log id are committed in
//!   one transaction: after a crash, the state and the applied index agree.

// openraft's traits fix the error type (StorageError, over 200 bytes); the
// private helpers return the same type so `?` works without conversions.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    EntryPayload, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot, StorageIOError,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::sm::StateMachine;
use crate::types::raft::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, Vote};
use crate::types::{Output, TypeConfig};

const LOG: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("raft_log");
const RAFT_META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("raft_meta");
const SM_META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sm_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_APPLIED: &str = "applied";
const KEY_MEMBERSHIP: &str = "membership";
const KEY_SNAPSHOT: &str = "snapshot";
const KEY_RESYNC: &str = "resync";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb could not open or create the database file.
    #[error("cannot open the log store {path}: {source}")]
    Open {
        /// The database file.
        path: std::path::PathBuf,
        /// redb's error.
        source: Box<redb::DatabaseError>,
    },
    /// Creating the tables failed.
    #[error("cannot initialize the log store: {0}")]
    Init(#[from] Box<redb::Error>),
}

/// Entries this node's state machine skipped because it received a snapshot
/// instead: its backend never saw them and must be resynchronized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncNeeded {
    /// The last index applied from the log before the snapshot.
    pub applied_before: Option<u64>,
    /// The last index the snapshot covers.
    pub snapshot_upto: u64,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// Opens (or creates) the database at `path` with every table present.
pub fn open_database(path: &Path) -> Result<Arc<Database>, StoreError> {
    let db = Database::create(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let init = || -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(RAFT_META)?;
        txn.open_table(SM_META)?;
        txn.commit()?;
        Ok(())
    };
    init().map_err(|e| StoreError::Init(Box::new(e)))?;
    Ok(Arc::new(db))
}

fn get_meta<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
) -> Result<Option<T>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let t = txn.open_table(table).map_err(|e| e.to_string())?;
    match t.get(key).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(v) => decode(v.value()).map(Some).map_err(|e| e.to_string()),
    }
}

fn io_read(e: impl ToString) -> StorageError {
    StorageIOError::read(&std::io::Error::other(e.to_string())).into()
}

fn io_write(e: impl ToString) -> StorageError {
    StorageIOError::write(&std::io::Error::other(e.to_string())).into()
}

/// The log and the vote.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// A log store over `db`.
    pub fn new(db: Arc<Database>) -> LogStore {
        LogStore { db }
    }

    fn write_meta(&self, key: &str, bytes: &[u8]) -> Result<(), redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = txn.open_table(RAFT_META)?;
            t.insert(key, bytes)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        get_meta(&self.db, RAFT_META, KEY_LAST_PURGED).map_err(io_read)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Bound::Included(e),
            Bound::Excluded(&e) => Bound::Excluded(e),
            Bound::Unbounded => Bound::Unbounded,
        };
        let txn = self.db.begin_read().map_err(io_read)?;
        let t = txn.open_table(LOG).map_err(io_read)?;
        let mut out = Vec::new();
        for item in t.range((Bound::Included(start), end)).map_err(io_read)? {
            let (_, v) = item.map_err(io_read)?;
            out.push(decode::<Entry>(v.value()).map_err(io_read)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged()?;
        let txn = self.db.begin_read().map_err(io_read)?;
        let t = txn.open_table(LOG).map_err(io_read)?;
        let last = match t.last().map_err(io_read)? {
            Some((_, v)) => Some(decode::<Entry>(v.value()).map_err(io_read)?.log_id),
            None => None,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = encode(vote).map_err(io_write)?;
        self.write_meta(KEY_VOTE, &bytes)
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        get_meta(&self.db, RAFT_META, KEY_VOTE).map_err(io_read)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let bytes = encode(&committed).map_err(io_write)?;
        self.write_meta(KEY_COMMITTED, &bytes).map_err(io_write)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(
            get_meta::<Option<LogId>>(&self.db, RAFT_META, KEY_COMMITTED)
                .map_err(io_read)?
                .flatten(),
        )
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let write = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut t = txn.open_table(LOG)?;
                for entry in entries {
                    let bytes =
                        encode(&entry).map_err(|e| redb::Error::Io(std::io::Error::other(e)))?;
                    t.insert(entry.log_id.index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        };
        let result = write();
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err: StorageError = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Remove [log_id.index, +oo): conflicting entries of an old term.
        let run = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut t = txn.open_table(LOG)?;
                t.retain_in(log_id.index.., |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        };
        run().map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Remove (-oo, log_id.index], recording the purge point first.
        let run = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut meta = txn.open_table(RAFT_META)?;
                let bytes =
                    encode(&log_id).map_err(|e| redb::Error::Io(std::io::Error::other(e)))?;
                meta.insert(KEY_LAST_PURGED, bytes.as_slice())?;
                let mut t = txn.open_table(LOG)?;
                t.retain_in(..=log_id.index, |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        };
        run().map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

/// A snapshot as stored and as sent: the state machine's own bytes and the
/// position they correspond to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine side of the store: applies committed entries through
/// the application's [`StateMachine`], keeps the applied log id, the
/// membership and the latest snapshot.
#[derive(Debug)]
pub struct SmStore<S> {
    db: Arc<Database>,
    sm: Arc<std::sync::Mutex<S>>,
    applied: Option<LogId>,
    membership: StoredMembership,
}

impl<S: StateMachine> SmStore<S> {
    /// Opens the state machine side over `db`, reading back what was applied.
    pub fn new(
        db: Arc<Database>,
        sm: Arc<std::sync::Mutex<S>>,
    ) -> Result<SmStore<S>, StorageError> {
        let applied = get_meta::<Option<LogId>>(&db, SM_META, KEY_APPLIED)
            .map_err(io_read)?
            .flatten();
        let membership = get_meta::<StoredMembership>(&db, SM_META, KEY_MEMBERSHIP)
            .map_err(io_read)?
            .unwrap_or_default();
        Ok(SmStore {
            db,
            sm,
            applied,
            membership,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        // A panic inside apply already aborted the node's Raft task; the
        // state behind the lock is still the last committed transaction.
        self.sm.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let txn = self.db.begin_read().map_err(io_read)?;
        let data = self.lock().snapshot(&txn).map_err(io_read)?;
        let last = self.applied;
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.membership.clone(),
            snapshot_id: match last {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
                None => "empty".to_string(),
            },
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let bytes = encode(&stored).map_err(io_write)?;
        let mut w = self.db.begin_write().map_err(io_write)?;
        w.set_durability(Durability::Immediate).map_err(io_write)?;
        {
            let mut t = w.open_table(SM_META).map_err(io_write)?;
            t.insert(KEY_SNAPSHOT, bytes.as_slice()).map_err(io_write)?;
        }
        w.commit().map_err(io_write)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

/// Reads whether this node's state machine was restored from a snapshot
/// past entries it never applied (see [`ResyncNeeded`]).
pub fn resync_needed(db: &Database) -> Result<Option<ResyncNeeded>, String> {
    get_meta(db, SM_META, KEY_RESYNC)
}

/// Builds snapshots for openraft.
#[derive(Debug)]
pub struct SnapshotBuilder<S> {
    inner: SmStore<S>,
}

impl<S: StateMachine> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.inner.build()
    }
}

impl<S: StateMachine> RaftStateMachine<TypeConfig> for SmStore<S> {
    type SnapshotBuilder = SnapshotBuilder<S>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Output>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut outputs = Vec::new();
        let mut txn = self.db.begin_write().map_err(io_write)?;
        txn.set_durability(Durability::Immediate)
            .map_err(io_write)?;
        let mut applied = self.applied;
        let mut membership = self.membership.clone();
        {
            let mut sm = self.sm.lock().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => outputs.push(Output::default()),
                    EntryPayload::Membership(m) => {
                        membership = StoredMembership::new(Some(entry.log_id), m);
                        outputs.push(Output::default());
                    }
                    EntryPayload::Normal(payload) => {
                        let out = sm
                            .apply_encoded(&txn, entry.log_id.index, &payload.0)
                            .map_err(|e| {
                                StorageIOError::apply(
                                    entry.log_id,
                                    &std::io::Error::other(e.to_string()),
                                )
                            })?;
                        outputs.push(Output(out));
                    }
                }
            }
        }
        {
            let mut t = txn.open_table(SM_META).map_err(io_write)?;
            let a = encode(&applied).map_err(io_write)?;
            t.insert(KEY_APPLIED, a.as_slice()).map_err(io_write)?;
            let m = encode(&membership).map_err(io_write)?;
            t.insert(KEY_MEMBERSHIP, m.as_slice()).map_err(io_write)?;
        }
        txn.commit().map_err(io_write)?;
        self.applied = applied;
        self.membership = membership;
        Ok(outputs)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            inner: SmStore {
                db: self.db.clone(),
                sm: self.sm.clone(),
                applied: self.applied,
                membership: self.membership.clone(),
            },
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let stored: StoredSnapshot = decode(&bytes).map_err(io_read)?;
        let resync = ResyncNeeded {
            applied_before: self.applied.map(|l| l.index),
            snapshot_upto: meta.last_log_id.map(|l| l.index).unwrap_or(0),
        };
        let mut txn = self.db.begin_write().map_err(io_write)?;
        txn.set_durability(Durability::Immediate)
            .map_err(io_write)?;
        {
            let mut sm = self.sm.lock().unwrap_or_else(|p| p.into_inner());
            sm.restore(&txn, &stored.data).map_err(io_write)?;
        }
        {
            let mut t = txn.open_table(SM_META).map_err(io_write)?;
            t.insert(
                KEY_APPLIED,
                encode(&meta.last_log_id).map_err(io_write)?.as_slice(),
            )
            .map_err(io_write)?;
            t.insert(
                KEY_MEMBERSHIP,
                encode(&meta.last_membership).map_err(io_write)?.as_slice(),
            )
            .map_err(io_write)?;
            t.insert(KEY_SNAPSHOT, bytes.as_slice()).map_err(io_write)?;
            if resync.applied_before < Some(resync.snapshot_upto) {
                t.insert(KEY_RESYNC, encode(&resync).map_err(io_write)?.as_slice())
                    .map_err(io_write)?;
            }
        }
        txn.commit().map_err(io_write)?;
        if resync.applied_before < Some(resync.snapshot_upto) {
            tracing::warn!(
                applied_before = ?resync.applied_before,
                snapshot_upto = resync.snapshot_upto,
                "installed a snapshot past entries this node never applied: its backend must be resynchronized"
            );
        }
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let txn = self.db.begin_read().map_err(io_read)?;
        let t = txn.open_table(SM_META).map_err(io_read)?;
        let Some(v) = t.get(KEY_SNAPSHOT).map_err(io_read)? else {
            return Ok(None);
        };
        let bytes = v.value().to_vec();
        let stored: StoredSnapshot = decode(&bytes).map_err(io_read)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
