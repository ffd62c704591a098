//! Durable storage of the log, the vote and the state machine: the log's
//! entries in segment files ([`crate::segments`]), everything else (vote,
//! purge point, state machine, snapshot) in one redb database per node.
//! `log.rs` is openraft's log storage ([`LogStore`]: the writer thread, the
//! redb syncer, the migration from a log kept in redb); `sm.rs` its state
//! machine storage ([`SmStore`]: apply, snapshots, the resync marker); this
//! file holds what both use.
//!
//! Ordering invariants:
//! - An append is reported flushed to openraft only after its segment file
//!   was `fdatasync`'d. The writer puts every operation queued during one
//!   sync into the next batch, so concurrent proposals share one sync
//!   (group commit).
//! - A vote is durable (a redb commit with `Durability::Immediate`) before
//!   `save_vote` returns, hence before any message that depends on it is
//!   sent. The purge point is durable before any segment is deleted.
//! - The state machine's own writes and the applied log id are committed in
//!   one transaction: after a crash, the state and the applied index agree.
//!   That transaction is not fsync'd on its own (the log holds the entries
//!   durably): redb gets a durable commit every `cluster.state_sync_ms`
//!   (200 ms by default) while the log moves (`redb_syncer`, which also
//!   records the committed-index hint); after a crash the state machine may
//!   restart some entries back and re-apply them.
//! - Log writes (appends, truncations, purges, votes) go through one writer
//!   thread in the order openraft issued them; an append is readable as soon
//!   as `append` returns and reported flushed only after the writer's sync.
//!   State machine writes run on the blocking pool. Neither blocks the async
//!   workers.

// openraft's traits fix the error type (StorageError, over 200 bytes); the
// private helpers return the same type so `?` works without conversions.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    EntryPayload, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot, StorageIOError,
};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::segments::Segments;
use crate::sm::StateMachine;
use crate::types::raft::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, Vote};
use crate::types::{Output, Payload, TypeConfig};

mod log;
mod sm;

#[allow(unused_imports)]
use self::log::*;
pub use self::log::{LogStore, LOG_SEGMENT_BYTES, STATE_SYNC_INTERVAL};
#[allow(unused_imports)]
use self::sm::*;
pub use self::sm::{resync_needed, SmStore, SnapshotBuilder};

/// Where logs were kept before segment files; read once to migrate them.
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
const KEY_SYNCED: &str = "synced";

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
    /// The segment files of the log could not be opened (or are corrupt).
    #[error("cannot open the raft log in {path}: {source}")]
    Log {
        /// The segment directory.
        path: std::path::PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
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
    read_meta(&txn, table, key)
}

fn read_meta<T: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
) -> Result<Option<T>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Put, Seq};

    fn put(index: u64, value: &str) -> Entry {
        Entry {
            log_id: openraft::testing::log_id(1, 1, index),
            payload: EntryPayload::Normal(Payload::Inline(
                postcard::to_stdvec(&Put(value.to_string())).unwrap(),
            )),
        }
    }

    fn sm_store(dir: &tempfile::TempDir) -> (Arc<Database>, SmStore<Seq>) {
        let db = open_database(&dir.path().join("raft.redb")).unwrap();
        let blobs = crate::blob::Blobs::open(
            dir.path().join("blobs"),
            Arc::new(BTreeMap::new()),
            std::time::Duration::from_secs(1),
            crate::MIN_LINK_RATE,
        )
        .unwrap();
        let sm = SmStore::new(db.clone(), Arc::new(Mutex::new(Seq)), Arc::new(blobs)).unwrap();
        (db, sm)
    }

    /// A snapshot of `Seq` holding `n` items, as the leader would send it.
    fn snapshot_upto(n: u64) -> (SnapshotMeta, Box<Cursor<Vec<u8>>>) {
        let items: Vec<(u64, String)> = (1..=n).map(|i| (i, format!("v{i}"))).collect();
        let meta = SnapshotMeta {
            last_log_id: Some(openraft::testing::log_id(1, 1, n)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("s{n}"),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: postcard::to_stdvec(&items).unwrap(),
        };
        (meta, Box::new(Cursor::new(encode(&stored).unwrap())))
    }

    /// openraft 0.9 runs the snapshot builder in its own task while the
    /// state machine worker goes on applying (core/sm/worker.rs). The
    /// snapshot's log id must describe exactly the data it holds: a
    /// snapshot whose data is ahead of its log id makes a follower that
    /// installs it apply the entries past the log id a second time
    /// (another sequence number, another UID, for the same entry).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_log_id_matches_its_data_when_entries_apply_during_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, mut sm) = sm_store(&dir);
        sm.apply(vec![put(1, "a"), put(2, "b")]).await.unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        sm.apply(vec![put(3, "c")]).await.unwrap();
        let snap = builder.build_snapshot().await.unwrap();
        let stored: StoredSnapshot = decode(snap.snapshot.get_ref()).unwrap();
        let items: Vec<(u64, String)> = postcard::from_bytes(&stored.data).unwrap();
        assert_eq!(
            snap.meta.last_log_id.map(|l| l.index),
            items.last().map(|(n, _)| *n),
            "snapshot log id vs the last entry its data holds"
        );
        assert_eq!(stored.meta.last_log_id, snap.meta.last_log_id);
    }

    /// `Seq`, whose `snapshot` tells when it started and waits to be let go.
    struct GatedSeq {
        started: std::sync::mpsc::Sender<()>,
        go: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
    }

    impl StateMachine for GatedSeq {
        type Entry = Put;
        type Output = u64;
        fn apply(
            &mut self,
            txn: &redb::WriteTransaction,
            index: u64,
            entry: Put,
        ) -> Result<u64, crate::SmError> {
            Seq.apply(txn, index, entry)
        }
        fn snapshot(&self, txn: &redb::ReadTransaction) -> Result<Vec<u8>, crate::SmError> {
            let _ = self.started.send(());
            let _ = self.go.lock().unwrap().recv();
            Seq.snapshot(txn)
        }
        fn restore(
            &mut self,
            txn: &redb::WriteTransaction,
            snapshot: &[u8],
        ) -> Result<(), crate::SmError> {
            Seq.restore(txn, snapshot)
        }
    }

    /// A snapshot built from an older state must not replace a newer one
    /// installed meanwhile (openraft builds in its own task while the state
    /// machine worker installs): the stored snapshot is what a leader sends,
    /// and the log before the installed one is purged.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_build_finishing_after_an_install_keeps_the_newer_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("raft.redb")).unwrap();
        let blobs = crate::blob::Blobs::open(
            dir.path().join("blobs"),
            Arc::new(BTreeMap::new()),
            std::time::Duration::from_secs(1),
            crate::MIN_LINK_RATE,
        )
        .unwrap();
        let (started_tx, started) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel();
        let gated = GatedSeq {
            started: started_tx,
            go: Arc::new(Mutex::new(go_rx)),
        };
        let mut sm = SmStore::new(db, Arc::new(Mutex::new(gated)), Arc::new(blobs)).unwrap();
        sm.apply(vec![put(1, "a"), put(2, "b")]).await.unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        let rt = tokio::runtime::Handle::current();
        let build = {
            let rt = rt.clone();
            std::thread::spawn(move || rt.block_on(builder.build_snapshot()).map(|s| s.meta))
        };
        started.recv().unwrap();
        let install = std::thread::spawn(move || {
            let (meta, data) = snapshot_upto(10);
            rt.block_on(sm.install_snapshot(&meta, data)).unwrap();
            sm
        });
        // Let the install take the write transaction, then finish the build.
        std::thread::sleep(std::time::Duration::from_millis(200));
        go.send(()).unwrap();
        build.join().unwrap().unwrap();
        let mut sm = install.join().unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(10));
    }

    /// A second snapshot installed before the backend was resynchronized
    /// must not forget the entries the first one skipped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resync_marker_keeps_the_first_skipped_entry_across_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut sm) = sm_store(&dir);
        sm.apply(vec![put(1, "a")]).await.unwrap();
        let (meta, data) = snapshot_upto(10);
        sm.install_snapshot(&meta, data).await.unwrap();
        assert_eq!(
            resync_needed(&db).unwrap(),
            Some(ResyncNeeded {
                applied_before: Some(1),
                snapshot_upto: 10
            })
        );
        let (meta, data) = snapshot_upto(20);
        sm.install_snapshot(&meta, data).await.unwrap();
        assert_eq!(
            resync_needed(&db).unwrap(),
            Some(ResyncNeeded {
                applied_before: Some(1),
                snapshot_upto: 20
            }),
            "entries 2..=10 were never applied to the backend either"
        );
    }

    /// A node upgraded from a version that kept its log in redb finds its
    /// entries (past the purge point) in segment files, and the old table
    /// emptied; a crash halfway (a leftover `raft-log.new`) redoes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_kept_in_redb_by_an_older_version_moves_into_segments() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("raft.redb")).unwrap();
        {
            let txn = db.begin_write().unwrap();
            {
                let mut log = txn.open_table(LOG).unwrap();
                for i in 3..=2500u64 {
                    log.insert(i, encode(&put(i, &format!("v{i}"))).unwrap().as_slice())
                        .unwrap();
                }
                let mut meta = txn.open_table(RAFT_META).unwrap();
                let purged = encode(&openraft::testing::log_id(1, 1, 2)).unwrap();
                meta.insert(KEY_LAST_PURGED, purged.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
        std::fs::create_dir(dir.path().join("raft-log.new")).unwrap();
        std::fs::write(
            dir.path().join("raft-log.new/00000000000000000001.seg"),
            b"junk",
        )
        .unwrap();
        let mut store =
            LogStore::open(db.clone(), dir.path(), 1 << 20, STATE_SYNC_INTERVAL).unwrap();
        let entries = store.try_get_log_entries(0..).await.unwrap();
        assert_eq!(entries.len(), 2498);
        assert_eq!(entries[0].log_id.index, 3);
        assert_eq!(entries.last().unwrap().log_id.index, 2500);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(2500));
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(2));
        assert!(!dir.path().join("raft-log.new").exists());
        let txn = db.begin_read().unwrap();
        assert!(
            matches!(
                txn.open_table(LOG),
                Err(redb::TableError::TableDoesNotExist(_))
            ),
            "the old table is gone"
        );
        drop(txn);
        drop(store);
        let mut store = LogStore::open(db, dir.path(), 1 << 20, STATE_SYNC_INTERVAL).unwrap();
        assert_eq!(store.try_get_log_entries(2500..).await.unwrap().len(), 1);
    }

    /// `append` makes entries readable at once; the writer thread moves them
    /// from memory to disk concurrently. A reader must never see a hole
    /// (openraft's replication sends what it reads as one AppendEntries, and
    /// `get_log_entries` fails the Raft core on a missing entry).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appended_entries_stay_readable_while_the_writer_flushes_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_database(&dir.path().join("raft.redb")).unwrap();
        let store = LogStore::open(db, dir.path(), 64 * 1024, STATE_SYNC_INTERVAL).unwrap();
        let appended = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (mut store, appended, stop) = (store.clone(), appended.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let n = appended.load(std::sync::atomic::Ordering::SeqCst);
                    let got: Vec<u64> = store
                        .try_get_log_entries(1..n + 1)
                        .await
                        .unwrap()
                        .iter()
                        .map(|e| e.log_id.index)
                        .collect();
                    let want: Vec<u64> = (1..=n).collect();
                    if got != want {
                        return Err(format!(
                            "read [1, {}) after {reads} reads: {} entries, first missing {:?}",
                            n + 1,
                            got.len(),
                            want.iter().find(|i| !got.contains(i))
                        ));
                    }
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                Ok(reads)
            })
        };
        let big = "x".repeat(2000);
        for index in 1..=3000u64 {
            store.append_inner(vec![put(index, &big)], None).unwrap();
            appended.store(index, std::sync::atomic::Ordering::SeqCst);
            if index % 7 == 0 {
                tokio::task::yield_now().await;
            }
            if reader.is_finished() {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let reads = reader.await.unwrap().unwrap();
        assert!(reads > 0);
    }
}

#[cfg(test)]
mod openraft_suite {
    use super::*;
    use crate::testing::Seq;

    struct Builder;

    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, SmStore<Seq>, tempfile::TempDir>
        for Builder
    {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, SmStore<Seq>), StorageError> {
            let dir = tempfile::tempdir().map_err(io_write)?;
            let db = open_database(&dir.path().join("raft.redb")).map_err(io_write)?;
            let blobs = crate::blob::Blobs::open(
                dir.path().join("blobs"),
                Arc::new(BTreeMap::new()),
                std::time::Duration::from_secs(1),
                crate::MIN_LINK_RATE,
            )
            .map_err(io_write)?;
            let sm = SmStore::new(db.clone(), Arc::new(Mutex::new(Seq)), Arc::new(blobs))?;
            let log =
                LogStore::open(db, dir.path(), 1 << 20, STATE_SYNC_INTERVAL).map_err(io_write)?;
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage conformance suite.
    #[test]
    fn openraft_storage_suite() {
        openraft::testing::Suite::test_all(Builder).unwrap();
    }
}
