//! A node's background upkeep: log compaction behind the slowest voter,
//! and the collection of blobs no entry refers to any more.

#[allow(unused_imports)]
use super::*;

/// An unreferenced blob younger than this may belong to a proposal in
/// flight (blobs are stored before their entry is proposed) and is kept.
pub(super) const BLOB_MIN_AGE: Duration = Duration::from_secs(3600);

/// Every ten minutes, deletes the blobs no entry of the log refers to any
/// more (their entries were compacted away: a node that still needed them
/// gets a snapshot instead).
pub(super) async fn collect_blobs(log: LogStore, blobs: Arc<Blob>) {
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (log, blobs) = (log.clone(), blobs.clone());
        let result = tokio::task::spawn_blocking(move || {
            let live = log.blob_hashes()?;
            Ok::<_, String>(blobs.collect(&live, BLOB_MIN_AGE))
        })
        .await;
        match result {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(deleted = n, "unreferenced blobs collected"),
            Ok(Err(e)) => tracing::warn!(error = %e, "blob collection failed"),
            Err(_) => return,
        }
    }
}

/// Keeps at most `keep` applied entries beyond what every voter has (on the
/// leader) or beyond this node's applied index (elsewhere): snapshots the
/// state machine, then purges the log up to the snapshot.
pub(super) async fn compact(raft: Raft, keep: u64, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let m = raft.metrics().borrow().clone();
        if m.running_state.is_err() {
            return;
        }
        let Some(applied) = m.last_applied.map(|l| l.index) else {
            continue;
        };
        let behind_floor = applied.saturating_sub(keep);
        let upto = match (&m.state, &m.replication) {
            (ServerState::Leader, Some(repl)) => {
                let members: BTreeSet<NodeId> = m.membership_config.voter_ids().collect();
                let slowest = members
                    .iter()
                    .map(|id| {
                        if *id == m.id {
                            applied
                        } else {
                            repl.get(id)
                                .copied()
                                .flatten()
                                .map(|l| l.index)
                                .unwrap_or(0)
                        }
                    })
                    .min()
                    .unwrap_or(0);
                slowest.min(applied).max(behind_floor)
            }
            _ => behind_floor,
        };
        let purged = m.purged.map(|l| l.index);
        let batch = (keep / 10).clamp(1, 1000);
        if upto == 0 || purged.is_some_and(|p| upto < p + batch) {
            continue;
        }
        if m.snapshot.map(|l| l.index) < Some(upto) {
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            let waited = raft
                .wait(Some(Duration::from_secs(30)))
                .metrics(
                    |mm| mm.snapshot.map(|l| l.index) >= Some(upto),
                    "snapshot for compaction",
                )
                .await;
            if waited.is_err() {
                continue;
            }
        }
        if raft.trigger().purge_log(upto).await.is_err() {
            return;
        }
        tracing::debug!(upto, "log compacted");
    }
}
