//! openraft's state machine storage: applies committed entries through the
//! application's state machine, keeps the applied log id, the membership,
//! the latest snapshot and the resync marker.

#![allow(clippy::result_large_err)]

#[allow(unused_imports)]
use super::*;

/// A snapshot as stored and as sent: the state machine's own bytes and the
/// position they correspond to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredSnapshot {
    pub(super) meta: SnapshotMeta,
    pub(super) data: Vec<u8>,
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
pub(super) fn payload_bytes<'a>(
    p: &'a Payload,
    fetched: &'a BTreeMap<[u8; 32], Vec<u8>>,
) -> Option<&'a [u8]> {
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
