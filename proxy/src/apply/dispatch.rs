//! The dispatcher: reads the outbox and hands each item to the worker of
//! its user, after a durable high-water mark covers it (after a restart,
//! every item up to that mark is in doubt).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redb::{Durability, ReadableTable};
use tandem_replicator::LocalTables;

use super::seam::AdminLogin;
use tandem_state::{Work, OUTBOX};
use tokio::sync::{mpsc, watch};

use super::maps::Maps;
use super::progress::{Progress, UserLocks};
use super::worker::Worker;
use super::{StoreError, DISPATCHED, HIGH_WATER_STEP, STATE};
use crate::config::BackendConfig;
use crate::secret::Secret;

/// Reads the outbox and hands each item to the worker of its user; workers
/// of different users apply in parallel, each user's items in order.
pub struct Applier {
    template: Worker,
    /// The node's applied index: it moves once applied entries (and the
    /// outbox items they queued) are committed.
    applied: watch::Receiver<u64>,
    workers: HashMap<String, mpsc::Sender<(u64, Work)>>,
    /// The durable high-water mark: no item above it was handed to a worker.
    dispatched: u64,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("cursor", &self.template.progress.cursor())
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Applier {
    /// An applier over `db` toward `backend`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: LocalTables,
        backend: BackendConfig,
        password: Secret<String>,
        maps: Arc<Maps>,
        progress: Arc<Progress>,
        applied: watch::Receiver<u64>,
        node: u64,
        locks: Arc<UserLocks>,
    ) -> Applier {
        // Items up to the durable high-water mark may have been in flight at
        // a crash (the outbox itself may lack them: it is rebuilt as Raft
        // applies its log again).
        let read = db.begin_read().ok();
        let last_queued = read
            .as_ref()
            .and_then(|t| t.open_table(OUTBOX).ok())
            .and_then(|t| t.last().ok().flatten().map(|(k, _)| k.value()))
            .unwrap_or(0);
        let dispatched = read
            .as_ref()
            .and_then(|t| t.open_table(STATE).ok())
            .and_then(|t| t.get(DISPATCHED).ok().flatten().map(|v| v.value()))
            .unwrap_or(0);
        drop(read);
        let horizon = last_queued.max(dispatched);
        Applier {
            template: Worker {
                db,
                connect: Arc::new(AdminLogin { backend, password }),
                maps,
                progress,
                conns: HashMap::new(),
                horizon,
                found: false,
                evidence: None,
                node,
                locks,
                additions: Arc::default(),
            },
            applied,
            workers: HashMap::new(),
            dispatched: horizon,
        }
    }

    /// Records durably that items up to `upto` may reach the backend.
    fn raise_high_water(&mut self, upto: u64) -> Result<(), StoreError> {
        let mut txn = self.template.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = txn.open_table(STATE)?;
            t.insert(DISPATCHED, upto)?;
        }
        txn.commit()?;
        self.dispatched = upto;
        Ok(())
    }

    /// Runs until the task is aborted or the node stops.
    pub async fn run(mut self) {
        let mut next = self.template.progress.cursor() + 1;
        loop {
            // Read first: an empty outbox from `next` on means every item up
            // to it was handed on (a snapshot may have skipped some).
            // Whatever is applied from here on wakes the wait below.
            self.applied.borrow_and_update();
            let queued = self
                .template
                .db
                .begin_read()
                .map_or(0, |txn| tandem_state::last_seq(&txn));
            let items = match self.template.items_from(next) {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(error = %e, "applier cannot read its outbox");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if items.is_empty() {
                self.template.progress.read_up_to(queued);
                if self.applied.changed().await.is_err() {
                    // The node is gone: nothing will be applied any more.
                    return;
                }
                continue;
            }
            for (seq, work) in items {
                if seq > self.dispatched {
                    if let Err(e) = self.raise_high_water(seq + HIGH_WATER_STEP) {
                        tracing::error!(error = %e, "applier cannot record its high-water mark");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                }
                next = seq + 1;
                let user = work.user().to_string();
                self.template.progress.dispatched(seq, &user);
                let mut item = (seq, work);
                loop {
                    let tx = self.workers.entry(user.clone()).or_insert_with(|| {
                        let (tx, rx) = mpsc::channel(1024);
                        let worker = self.template.fork();
                        tokio::spawn(worker.run(rx));
                        tx
                    });
                    match tx.send(item).await {
                        Ok(()) => break,
                        // The worker went idle and exited: start another.
                        Err(mpsc::error::SendError(back)) => {
                            self.workers.remove(&user);
                            item = back;
                        }
                    }
                }
            }
        }
    }
}
