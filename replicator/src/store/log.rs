//! openraft's log storage: entries in segment files, the vote and the
//! purge point in redb, one writer thread, the redb syncer.

#![allow(clippy::result_large_err)]

#[allow(unused_imports)]
use super::*;

/// One write for the log writer thread, in the order openraft issued it.
pub(super) enum WriteOp {
    /// Entries to persist; `callback` reports the flush to openraft.
    Append {
        entries: Vec<(LogId, Vec<u8>)>,
        /// `None` only in this module's tests.
        callback: Option<LogFlushed<TypeConfig>>,
    },
    /// Remove `[from, +oo)`.
    Truncate {
        from: u64,
        done: oneshot::Sender<Result<(), WriteError>>,
    },
    /// Remove `(-oo, upto]` and record the purge point.
    Purge {
        upto: u64,
        purged: Vec<u8>,
        done: oneshot::Sender<Result<(), WriteError>>,
    },
    /// A key of the raft meta table (the vote), durably.
    Meta {
        key: &'static str,
        bytes: Vec<u8>,
        done: oneshot::Sender<Result<(), WriteError>>,
    },
}

/// Why the log writer could not make a write durable. Every write of a
/// failed batch gets it, and so does every later one: the writer stops
/// writing after its first failure.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum WriteError {
    /// The writer thread is gone.
    #[error("the log writer stopped")]
    Stopped,
    /// A segment file operation failed.
    #[error("log {what}: {source}")]
    Segments {
        what: &'static str,
        source: Arc<std::io::Error>,
    },
    /// A durable write of the raft meta table failed.
    #[error("raft meta: {0}")]
    Meta(Arc<redb::Error>),
    /// An earlier batch failed.
    #[error("the log store failed earlier: {0}")]
    Earlier(Box<WriteError>),
}

impl WriteError {
    fn segments(what: &'static str) -> impl FnOnce(std::io::Error) -> WriteError {
        move |e| WriteError::Segments {
            what,
            source: Arc::new(e),
        }
    }
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
pub(super) const REDB_SYNC_TRAIL: Duration = Duration::from_secs(3);

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

/// The directory of the segment files, under a node's data directory.
pub(super) const SEGMENT_DIR: &str = "raft-log";
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
        make: impl FnOnce(oneshot::Sender<Result<(), WriteError>>) -> WriteOp,
    ) -> Result<(), WriteError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(make(tx))
            .map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }

    /// `append`: entries readable at once, queued for the writer.
    pub(super) fn append_inner(
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
pub(super) fn migrate_from_redb(
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
pub(super) fn clear_redb_log(db: &Database) -> Result<(), redb::Error> {
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
pub(super) fn redb_syncer(
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
pub(super) struct Writer {
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
        let mut failed: Option<WriteError> = None;
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
        failed: &mut Option<WriteError>,
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
            Some(e) => Err(WriteError::Earlier(Box::new(e.clone()))),
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
pub(super) fn write_batch(
    db: &Database,
    log: &Segments,
    batch: &[WriteOp],
) -> Result<(), WriteError> {
    let mut unsynced = Vec::new();
    let meta = |key: &str, bytes: &[u8]| -> Result<(), WriteError> {
        let run = || -> Result<(), redb::Error> {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.open_table(RAFT_META)?.insert(key, bytes)?;
            txn.commit()?;
            Ok(())
        };
        run().map_err(|e| WriteError::Meta(Arc::new(e)))
    };
    let sync = |files: &mut Vec<Arc<std::fs::File>>| -> Result<(), WriteError> {
        Segments::sync(files).map_err(WriteError::segments("sync"))?;
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
                        .map_err(WriteError::segments("append"))?,
                );
            }
            WriteOp::Truncate { from, .. } => {
                sync(&mut unsynced)?;
                log.truncate(*from)
                    .map_err(WriteError::segments("truncate"))?;
            }
            WriteOp::Purge { upto, purged, .. } => {
                sync(&mut unsynced)?;
                meta(KEY_LAST_PURGED, purged)?;
                log.purge(*upto).map_err(WriteError::segments("purge"))?;
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
