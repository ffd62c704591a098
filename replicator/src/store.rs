//! Durable storage of the log, the vote and the state machine: the log's
//! entries in segment files ([`crate::segments`]), everything else (vote,
//! purge point, state machine, snapshot) in one redb database per node.
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

/// One write for the log writer thread, in the order openraft issued it.
enum WriteOp {
    /// Entries to persist; `callback` reports the flush to openraft.
    Append {
        entries: Vec<(LogId, Vec<u8>)>,
        /// `None` only in this module's tests.
        callback: Option<LogFlushed<TypeConfig>>,
    },
    /// Remove `[from, +oo)`.
    Truncate {
        from: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Remove `(-oo, upto]` and record the purge point.
    Purge {
        upto: u64,
        purged: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// A key of the raft meta table (the vote), durably.
    Meta {
        key: &'static str,
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), String>>,
    },
}

/// The log and the vote.
///
/// `append` keeps the entries in memory (readable at once, as openraft
/// requires) and hands them to one writer thread, which writes every
/// operation queued meanwhile with a single sync and then calls each
/// append's flush callback: group commit. Truncate, purge and vote writes go
/// through the same queue, so all writes keep openraft's order, and their
/// callers wait until they are durable.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    log: Arc<Segments>,
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
    writer: std::sync::mpsc::Sender<WriteOp>,
    /// The latest committed-index hint, not yet written.
    hint: Arc<Mutex<Option<Vec<u8>>>>,
    /// Held only to end the redb syncer with the last clone.
    _syncer: Arc<std::sync::mpsc::Sender<()>>,
}

/// While the log moves, redb gets a durable commit this often by default.
/// The state machine and the application (tandem's applier: its UID maps)
/// commit to redb without an fsync of their own, counting on a durable
/// commit soon after: what a crash loses of them is applied again (the
/// state machine) or looked for on the backend (the applier's items in
/// doubt), so the interval bounds restart work, not safety.
pub const STATE_SYNC_INTERVAL: Duration = Duration::from_millis(200);
/// ... and for this long after the log last moved (the applier trails it).
const REDB_SYNC_TRAIL: Duration = Duration::from_secs(3);

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

/// The directory of the segment files, under a node's data directory.
const SEGMENT_DIR: &str = "raft-log";
/// The default size of a log segment file.
pub const LOG_SEGMENT_BYTES: u64 = 32 << 20;

impl LogStore {
    /// The log store of the node whose data directory is `dir` and whose
    /// redb database is `db`, with its writer thread, and a thread that
    /// gives redb a durable commit every `sync_interval` while the log
    /// moves. A log kept in redb by an older version is moved into segment
    /// files first. The threads end when the last clone of the store is
    /// dropped.
    pub fn open(
        db: Arc<Database>,
        dir: &Path,
        segment_bytes: u64,
        sync_interval: Duration,
    ) -> Result<LogStore, StoreError> {
        let seg_dir = dir.join(SEGMENT_DIR);
        let log_err = |source: std::io::Error| StoreError::Log {
            path: seg_dir.clone(),
            source,
        };
        let purged = get_meta::<LogId>(&db, RAFT_META, KEY_LAST_PURGED)
            .map_err(|e| log_err(std::io::Error::other(e)))?
            .map(|l| l.index);
        if !seg_dir.exists() {
            migrate_from_redb(&db, dir, &seg_dir, purged, segment_bytes).map_err(log_err)?;
        }
        clear_redb_log(&db).map_err(|e| StoreError::Init(Box::new(e)))?;
        let log = Arc::new(Segments::open(&seg_dir, purged, segment_bytes).map_err(log_err)?);
        let pending = Arc::new(Mutex::new(BTreeMap::new()));
        let hint = Arc::new(Mutex::new(None));
        let (tx, rx) = std::sync::mpsc::channel();
        let base = Instant::now();
        let moved = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db: db.clone(),
            log: log.clone(),
            pending: pending.clone(),
            moved: (base, moved.clone()),
        };
        std::thread::Builder::new()
            .name("tandem-log-writer".to_string())
            .spawn(move || writer.run(rx))
            .expect("spawn the log writer thread");
        let (sync_tx, sync_rx) = std::sync::mpsc::channel();
        let (sdb, shint) = (db.clone(), hint.clone());
        std::thread::Builder::new()
            .name("tandem-redb-sync".to_string())
            .spawn(move || redb_syncer(sdb, shint, base, moved, sync_rx, sync_interval))
            .expect("spawn the redb sync thread");
        Ok(LogStore {
            db,
            log,
            pending,
            writer: tx,
            hint,
            _syncer: Arc::new(sync_tx),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an operation and waits until the writer made it durable.
    async fn submit(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> WriteOp,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(make(tx))
            .map_err(|_| "the log writer stopped".to_string())?;
        rx.await.map_err(|_| "the log writer stopped".to_string())?
    }

    /// `append`: entries readable at once, queued for the writer.
    fn append_inner(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        callback: Option<LogFlushed<TypeConfig>>,
    ) -> Result<(), StorageError> {
        let mut encoded = Vec::new();
        {
            let mut pending = self.pending();
            for entry in entries {
                encoded.push((entry.log_id, encode(&entry).map_err(io_write)?));
                pending.insert(entry.log_id.index, entry);
            }
        }
        self.writer
            .send(WriteOp::Append {
                entries: encoded,
                callback,
            })
            .map_err(|_| io_write("the log writer stopped"))
    }

    fn last_purged(&self) -> Result<Option<LogId>, StorageError> {
        get_meta(&self.db, RAFT_META, KEY_LAST_PURGED).map_err(io_read)
    }

    /// The entries of `[start, end)`: those not yet flushed from memory, the
    /// others from the segment files.
    fn read_range(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, StorageError> {
        // The writer publishes an entry's place in the segments before it
        // removes the entry from `pending`, under this lock. Holding the
        // lock while locating, an entry missing from `pending` is therefore
        // found in the segments; looking in the segments first and `pending`
        // after would miss entries flushed in between (a hole).
        let (locs, unflushed) = {
            let pending = self.pending();
            let locs = self.log.locate(start, end);
            let bounds = (
                Bound::Included(start),
                end.map_or(Bound::Unbounded, Bound::Excluded),
            );
            let unflushed: Vec<(u64, Entry)> = pending
                .range(bounds)
                .map(|(k, e)| (*k, e.clone()))
                .collect();
            (locs, unflushed)
        };
        let mut out = BTreeMap::new();
        for loc in &locs {
            let bytes = Segments::read(loc).map_err(io_read)?;
            let entry: Entry = decode(&bytes).map_err(io_read)?;
            out.insert(entry.log_id.index, entry);
        }
        // Entries not yet flushed supersede what is on disk.
        out.extend(unflushed);
        Ok(out.into_values().collect())
    }

    /// The index of the last entry in the log, if any.
    pub(crate) fn last_index(&self) -> Option<u64> {
        self.log.last_index()
    }

    /// The hashes of every blob the stored log refers to (entries kept for
    /// lagging nodes included): the blobs that must be kept.
    pub fn blob_hashes(&self) -> Result<std::collections::HashSet<crate::blob::Hash>, String> {
        fn walk(p: &Payload, out: &mut std::collections::HashSet<crate::blob::Hash>) {
            match p {
                Payload::Blob { hash, .. } => {
                    out.insert(*hash);
                }
                Payload::Batch(items) => items.iter().for_each(|i| walk(i, out)),
                Payload::Inline(_) => {}
            }
        }
        let mut out = std::collections::HashSet::new();
        let mut start = 0;
        loop {
            // In slices, so a long log is never held in memory at once.
            let entries = self
                .read_range(start, Some(start.saturating_add(1000)))
                .map_err(|e| e.to_string())?;
            for entry in &entries {
                if let EntryPayload::Normal(p) = &entry.payload {
                    walk(p, &mut out);
                }
            }
            match entries.last() {
                Some(e) => start = e.log_id.index + 1,
                None if self.log.last_index().is_some_and(|l| l >= start) => {
                    start = start.saturating_add(1000)
                }
                None => return Ok(out),
            }
        }
    }
}

/// Moves a log kept in redb's `raft_log` table (before segment files) into
/// `seg_dir`: written to a fresh directory, synced, then renamed, so a
/// crash leaves either no segment directory or a complete one.
fn migrate_from_redb(
    db: &Database,
    dir: &Path,
    seg_dir: &Path,
    purged: Option<u64>,
    segment_bytes: u64,
) -> std::io::Result<()> {
    let tmp = dir.join(format!("{SEGMENT_DIR}.new"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let log = Segments::open_unprepared(&tmp, purged, segment_bytes)?;
    let txn = db.begin_read().map_err(std::io::Error::other)?;
    let mut moved = 0u64;
    match txn.open_table(LOG) {
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(std::io::Error::other(e)),
        Ok(table) => {
            let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut files = Vec::new();
            let mut flush = |batch: &mut Vec<(u64, Vec<u8>)>| -> std::io::Result<()> {
                let records: Vec<(u64, &[u8])> =
                    batch.iter().map(|(i, b)| (*i, b.as_slice())).collect();
                files.extend(log.append(&records)?);
                batch.clear();
                Ok(())
            };
            for item in table.iter().map_err(std::io::Error::other)? {
                let (k, v) = item.map_err(std::io::Error::other)?;
                if purged.is_some_and(|p| k.value() <= p) {
                    continue;
                }
                batch.push((k.value(), v.value().to_vec()));
                moved += 1;
                if batch.len() >= 1000 {
                    flush(&mut batch)?;
                }
            }
            flush(&mut batch)?;
            Segments::sync(&files)?;
        }
    }
    drop(log);
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, seg_dir)?;
    std::fs::File::open(dir)?.sync_all()?;
    if moved > 0 {
        tracing::info!(
            entries = moved,
            "moved the raft log from redb into segment files"
        );
    }
    Ok(())
}

/// Empties redb's old log table once its entries are in segment files.
fn clear_redb_log(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_read()?;
    let empty = match txn.open_table(LOG) {
        Ok(t) => t.is_empty()?,
        Err(redb::TableError::TableDoesNotExist(_)) => true,
        Err(e) => return Err(e.into()),
    };
    drop(txn);
    if !empty {
        let mut w = db.begin_write()?;
        w.set_durability(Durability::Immediate)?;
        w.delete_table(LOG)?;
        w.commit()?;
    }
    Ok(())
}

/// Gives redb a durable commit every `interval` while the log moves and
/// for `REDB_SYNC_TRAIL` after (`moved`: milliseconds after `base`
/// of the last log write), carrying the latest committed-index hint. Ends
/// when the last clone of the store is gone.
fn redb_syncer(
    db: Arc<Database>,
    hint: Arc<Mutex<Option<Vec<u8>>>>,
    base: Instant,
    moved: Arc<AtomicU64>,
    rx: std::sync::mpsc::Receiver<()>,
    interval: Duration,
) {
    let mut synced = 0u64;
    loop {
        if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) = rx.recv_timeout(interval) {
            return;
        }
        let last = moved.load(Ordering::Relaxed);
        let now = base.elapsed().as_millis() as u64;
        if last == 0 || now.saturating_sub(last) > REDB_SYNC_TRAIL.as_millis() as u64 {
            continue;
        }
        synced += 1;
        // A hint for a faster restart: a lost one only means re-applying
        // from an older point.
        let hint = hint.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let run = || -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut meta = txn.open_table(RAFT_META)?;
                meta.insert(KEY_SYNCED, synced.to_le_bytes().as_slice())?;
                if let Some(bytes) = &hint {
                    meta.insert(KEY_COMMITTED, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        };
        if let Err(e) = run() {
            tracing::warn!(error = %e, "durable redb commit failed");
        }
    }
}

/// What the writer thread works on.
struct Writer {
    db: Arc<Database>,
    log: Arc<Segments>,
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
    /// When the log last moved (see [`redb_syncer`]).
    moved: (Instant, Arc<AtomicU64>),
}

impl Writer {
    /// The writer thread: drains the queue, writes everything with one
    /// sync, then reports.
    fn run(self, rx: std::sync::mpsc::Receiver<WriteOp>) {
        let Writer {
            ref db,
            ref log,
            ref pending,
            ..
        } = self;
        // After one failed write nothing more is written: a later batch
        // landing after a lost one would leave a hole in the log on disk.
        let mut failed: Option<String> = None;
        while let Ok(first) = rx.recv() {
            Self::batch(db, log, pending, &mut failed, first, &rx);
            let (base, moved) = &self.moved;
            moved.store(base.elapsed().as_millis().max(1) as u64, Ordering::Relaxed);
        }
    }

    fn batch(
        db: &Database,
        log: &Segments,
        pending: &Mutex<BTreeMap<u64, Entry>>,
        failed: &mut Option<String>,
        first: WriteOp,
        rx: &std::sync::mpsc::Receiver<WriteOp>,
    ) {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = match &failed {
            Some(e) => Err(format!("the log store failed earlier: {e}")),
            None => write_batch(db, log, &batch),
        };
        if let Err(e) = &result {
            if failed.is_none() {
                tracing::error!(error = %e, "log write failed; the log store stops writing");
                *failed = Some(e.clone());
            }
        }
        if result.is_ok() {
            let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
            for op in &batch {
                if let WriteOp::Append { entries, .. } = op {
                    for (id, _) in entries {
                        if p.get(&id.index).map(|e| e.log_id) == Some(*id) {
                            p.remove(&id.index);
                        }
                    }
                }
            }
        }
        for op in batch {
            match op {
                WriteOp::Append { callback, .. } => {
                    if let Some(callback) = callback {
                        callback.log_io_completed(result.clone().map_err(std::io::Error::other))
                    }
                }
                WriteOp::Truncate { done, .. } | WriteOp::Purge { done, .. } => {
                    let _ = done.send(result.clone());
                }
                WriteOp::Meta { done, .. } => {
                    let _ = done.send(result.clone());
                }
            }
        }
    }
}

/// Writes one batch in order: appends go to the segment files and are
/// synced together, before any other operation and at the end; votes and
/// purge points are durable redb commits.
fn write_batch(db: &Database, log: &Segments, batch: &[WriteOp]) -> Result<(), String> {
    let mut unsynced = Vec::new();
    let meta = |key: &str, bytes: &[u8]| -> Result<(), String> {
        let run = || -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.open_table(RAFT_META)?.insert(key, bytes)?;
            txn.commit()?;
            Ok(())
        };
        run().map_err(|e| e.to_string())
    };
    let sync = |files: &mut Vec<Arc<std::fs::File>>| -> Result<(), String> {
        Segments::sync(files).map_err(|e| format!("log sync: {e}"))?;
        files.clear();
        Ok(())
    };
    for op in batch {
        match op {
            WriteOp::Append { entries, .. } => {
                let records: Vec<(u64, &[u8])> = entries
                    .iter()
                    .map(|(id, bytes)| (id.index, bytes.as_slice()))
                    .collect();
                unsynced.extend(
                    log.append(&records)
                        .map_err(|e| format!("log append: {e}"))?,
                );
            }
            WriteOp::Truncate { from, .. } => {
                sync(&mut unsynced)?;
                log.truncate(*from)
                    .map_err(|e| format!("log truncate: {e}"))?;
            }
            WriteOp::Purge { upto, purged, .. } => {
                sync(&mut unsynced)?;
                meta(KEY_LAST_PURGED, purged)?;
                log.purge(*upto).map_err(|e| format!("log purge: {e}"))?;
            }
            WriteOp::Meta { key, bytes, .. } => {
                sync(&mut unsynced)?;
                meta(key, bytes)?;
            }
        }
    }
    sync(&mut unsynced)?;
    Ok(())
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
            Bound::Included(&e) => Some(e.saturating_add(1)),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        self.read_range(start, end)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged()?;
        let last_pending = self.pending().values().next_back().map(|e| e.log_id);
        let last = match last_pending {
            Some(id) => Some(id),
            None => match self.log.last_index() {
                Some(i) => self.read_range(i, Some(i + 1))?.last().map(|e| e.log_id),
                None => None,
            },
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
        self.submit(|done| WriteOp::Meta {
            key: KEY_VOTE,
            bytes,
            done,
        })
        .await
        .map_err(|e| StorageIOError::write_vote(&std::io::Error::other(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        get_meta(&self.db, RAFT_META, KEY_VOTE).map_err(io_read)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // A hint for a faster restart, not a safety property: openraft
        // recomputes the commit index from a quorum. Kept in memory; the
        // redb syncer records the latest one with its durable commits.
        let bytes = encode(&committed).map_err(io_write)?;
        *self.hint.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if let Some(bytes) = self.hint.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return decode::<Option<LogId>>(bytes).map_err(io_read);
        }
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
        self.append_inner(entries, Some(callback))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Remove [log_id.index, +oo): conflicting entries of an old term.
        self.pending().retain(|index, _| *index < log_id.index);
        self.submit(|done| WriteOp::Truncate {
            from: log_id.index,
            done,
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&std::io::Error::other(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Remove (-oo, log_id.index], recording the purge point with it.
        let purged = encode(&log_id).map_err(io_write)?;
        self.pending().retain(|index, _| *index > log_id.index);
        self.submit(|done| WriteOp::Purge {
            upto: log_id.index,
            purged,
            done,
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&std::io::Error::other(e)).into())
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
    blobs: Arc<crate::blob::Blobs>,
    applied: Option<LogId>,
    membership: StoredMembership,
    /// The index of the last entry applied (or installed by a snapshot),
    /// sent once its transaction is committed.
    applied_tx: Arc<tokio::sync::watch::Sender<u64>>,
}

impl<S: StateMachine> SmStore<S> {
    /// The index of the last entry applied, as it changes: the application
    /// waits on it for work its state machine queued.
    pub fn applied_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }

    fn applied_changed(&self) {
        let index = self.applied.map_or(0, |l| l.index);
        self.applied_tx.send_if_modified(|v| {
            let moved = *v != index;
            *v = index;
            moved
        });
    }

    /// Opens the state machine side over `db`, reading back what was applied.
    pub fn new(
        db: Arc<Database>,
        sm: Arc<std::sync::Mutex<S>>,
        blobs: Arc<crate::blob::Blobs>,
    ) -> Result<SmStore<S>, StorageError> {
        let applied = get_meta::<Option<LogId>>(&db, SM_META, KEY_APPLIED)
            .map_err(io_read)?
            .flatten();
        let membership = get_meta::<StoredMembership>(&db, SM_META, KEY_MEMBERSHIP)
            .map_err(io_read)?
            .unwrap_or_default();
        let applied_tx = Arc::new(tokio::sync::watch::channel(applied.map_or(0, |l| l.index)).0);
        Ok(SmStore {
            db,
            sm,
            blobs,
            applied,
            membership,
            applied_tx,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, S> {
        // A panic inside apply already aborted the node's Raft task; the
        // state behind the lock is still the last committed transaction.
        self.sm.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // openraft runs the builder in its own task while entries go on
        // applying: the log id and membership must come from the same read
        // transaction as the data, not from when the builder was made.
        let txn = self.db.begin_read().map_err(io_read)?;
        let data = self.lock().snapshot(&txn).map_err(io_read)?;
        let last = read_meta::<Option<LogId>>(&txn, SM_META, KEY_APPLIED)
            .map_err(io_read)?
            .flatten();
        let membership = read_meta::<StoredMembership>(&txn, SM_META, KEY_MEMBERSHIP)
            .map_err(io_read)?
            .unwrap_or_default();
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
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
            // A snapshot installed while this one was built is newer: keep
            // it (openraft ignores a built snapshot older than its own).
            let newer = match t.get(KEY_SNAPSHOT).map_err(io_read)? {
                Some(v) => decode::<StoredSnapshot>(v.value())
                    .map_err(io_read)?
                    .meta
                    .last_log_id
                    .is_some_and(|l| Some(l) > last),
                None => false,
            };
            if !newer {
                t.insert(KEY_SNAPSHOT, bytes.as_slice()).map_err(io_write)?;
            }
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

/// The bytes of a single (non-batch) payload, borrowed, never copied: a
/// payload may be a whole message. A blob comes from `fetched`.
fn payload_bytes<'a>(p: &'a Payload, fetched: &'a BTreeMap<[u8; 32], Vec<u8>>) -> Option<&'a [u8]> {
    match p {
        Payload::Inline(b) => Some(b),
        Payload::Blob { hash, .. } => fetched.get(hash).map(Vec::as_slice),
        Payload::Batch(_) => None,
    }
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
        let entries: Vec<Entry> = entries.into_iter().collect();
        // Large payloads come from the blob store; a node that missed the
        // push fetches them from its peers before applying (and waits).
        let mut fetched: BTreeMap<[u8; 32], Vec<u8>> = BTreeMap::new();
        for entry in &entries {
            if let EntryPayload::Normal(payload) = &entry.payload {
                let items = match payload {
                    Payload::Batch(items) => items.as_slice(),
                    single => std::slice::from_ref(single),
                };
                for item in items {
                    if let Payload::Blob { hash, len } = item {
                        if !fetched.contains_key(hash) {
                            fetched.insert(*hash, self.blobs.fetch(hash, *len).await);
                        }
                    }
                }
            }
        }
        let db = self.db.clone();
        let sm = self.sm.clone();
        let mut applied = self.applied;
        let mut membership = self.membership.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut outputs = Vec::with_capacity(entries.len());
            // Durability::None: the log already holds these entries durably,
            // and the redb syncer's next commit persists this one; after a
            // crash the state machine may be some entries behind (state and
            // applied index always agree) and openraft applies them again.
            let mut txn = db.begin_write().map_err(io_write)?;
            txn.set_durability(Durability::None).map_err(io_write)?;
            {
                let mut sm = sm.lock().unwrap_or_else(|p| p.into_inner());
                for entry in entries {
                    applied = Some(entry.log_id);
                    match entry.payload {
                        EntryPayload::Blank => outputs.push(Output::default()),
                        EntryPayload::Membership(m) => {
                            membership = StoredMembership::new(Some(entry.log_id), m);
                            outputs.push(Output::default());
                        }
                        EntryPayload::Normal(payload) => {
                            let index = entry.log_id.index;
                            let fail = |e: crate::sm::SmError| -> StorageError {
                                StorageIOError::apply(
                                    entry.log_id,
                                    &std::io::Error::other(e.to_string()),
                                )
                                .into()
                            };
                            let bytes_of = |p| {
                                payload_bytes(p, &fetched)
                                    .ok_or_else(|| fail("payload missing or nested batch".into()))
                            };
                            let out = match &payload {
                                Payload::Batch(items) => {
                                    let mut outs = Vec::with_capacity(items.len());
                                    for item in items {
                                        let bytes = bytes_of(item)?;
                                        outs.push(
                                            sm.apply_encoded(&txn, index, bytes).map_err(fail)?,
                                        );
                                    }
                                    encode(&outs).map_err(io_write)?
                                }
                                single => {
                                    let bytes = bytes_of(single)?;
                                    sm.apply_encoded(&txn, index, bytes).map_err(fail)?
                                }
                            };
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
            Ok::<_, StorageError>((outputs, applied, membership))
        });
        let (outputs, applied, membership) = task
            .await
            .map_err(|e| io_write(format!("apply task failed: {e}")))??;
        self.applied = applied;
        self.membership = membership;
        self.applied_changed();
        Ok(outputs)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            inner: SmStore {
                db: self.db.clone(),
                sm: self.sm.clone(),
                blobs: self.blobs.clone(),
                applied: self.applied,
                membership: self.membership.clone(),
                applied_tx: self.applied_tx.clone(),
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
        let mut resync = ResyncNeeded {
            applied_before: self.applied.map(|l| l.index),
            snapshot_upto: meta.last_log_id.map(|l| l.index).unwrap_or(0),
        };
        // A marker not yet cleared by a resync keeps its first skipped entry:
        // the backend never saw the entries the earlier snapshot covered.
        if let Some(earlier) = resync_needed(&self.db).map_err(io_read)? {
            resync.applied_before = resync.applied_before.min(earlier.applied_before);
        }
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
        self.applied_changed();
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
