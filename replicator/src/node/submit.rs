//! Proposals: the batcher that puts concurrent proposals into one entry,
//! and the submitter that hands each entry to this node's Raft when it
//! leads, or to the leader over the transport.

#[allow(unused_imports)]
use super::*;

/// Hands payloads to the leader: this node's Raft when it leads, else the
/// leader over the transport.
pub(super) struct Submitter {
    pub(super) id: NodeId,
    pub(super) raft: Raft,
    pub(super) peers: Arc<BTreeMap<NodeId, Arc<PeerClient>>>,
    pub(super) proposal_timeout: Duration,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitter").field("id", &self.id).finish()
    }
}

impl Submitter {
    async fn submit(&self, payload: Payload) -> Result<Proposed, ProposeError> {
        let mut backoff = Duration::from_millis(20);
        loop {
            let leader = match write_as_leader(&self.raft, payload.clone()).await {
                Ok(p) => return Ok(p),
                Err(ForwardError::NotLeader(leader)) => leader,
                Err(ForwardError::Failed(e))
                    if self.raft.metrics().borrow().running_state.is_err() =>
                {
                    return Err(ProposeError::Fatal(e))
                }
                Err(ForwardError::Failed(e)) => return Err(ProposeError::Unknown(e)),
            };
            if let Some((leader, client)) = leader
                .filter(|l| *l != self.id)
                .and_then(|l| self.peers.get(&l).map(|c| (l, c)))
            {
                // Give up early when this node learns of another leader: the
                // old one is gone or deposed. The request may have reached
                // it, so the outcome is unknown, and it is not retried.
                let mut metrics = self.raft.metrics();
                // Only a known *other* leader counts: "no leader" is also
                // seen while a follower merely suspects the leader.
                let deposed = async move {
                    while metrics.borrow().current_leader.is_none_or(|l| l == leader) {
                        if metrics.changed().await.is_err() {
                            break;
                        }
                    }
                };
                let request = Request::Propose(payload.clone());
                let call = client.call(&request, self.proposal_timeout);
                let reply = tokio::select! {
                    reply = call => reply,
                    () = deposed => {
                        return Err(ProposeError::Unknown(format!(
                            "leader {leader} was replaced while it had the proposal"
                        )))
                    }
                };
                match reply {
                    Ok(Response::Propose(Ok(p))) => return Ok(p),
                    // Not taken: the leader moved on. Ask again.
                    Ok(Response::Propose(Err(ForwardError::NotLeader(_)))) => {}
                    Ok(Response::Propose(Err(ForwardError::Failed(e)))) => {
                        return Err(ProposeError::Unknown(e))
                    }
                    Ok(other) => {
                        return Err(ProposeError::Unknown(format!("unexpected reply {other:?}")))
                    }
                    // Never sent: safe to ask again.
                    Err(CallError::Unreachable { .. }) => {}
                    Err(e @ CallError::Failed { .. }) => {
                        return Err(ProposeError::Unknown(e.to_string()))
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }
}

/// A proposal waiting for the batcher: its payload and where its result goes.
pub(super) type Job = (
    Payload,
    oneshot::Sender<Result<(u64, Vec<u8>), ProposeError>>,
);

/// Proposals waiting together go into one log entry (one fsync, one
/// round of replication): openraft 0.9 flushes each client write before it
/// takes the next, so unbatched writes cost an fsync each.
pub(super) const MAX_BATCH: usize = 512;

/// The default of [`NodeConfig::min_link_rate`]: 256 KiB/s, so a 64 MiB
/// message gets 256 s on top of the proposal timeout.
pub const MIN_LINK_RATE: u64 = 256 * 1024;
/// Inline bytes in one batch at most (large payloads travel as blobs).
pub(super) const MAX_BATCH_BYTES: usize = 1024 * 1024;

pub(super) async fn batcher(sub: Arc<Submitter>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut bytes = inline_len(&jobs[0].0);
        while jobs.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += inline_len(&job.0);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        // A proposer that gave up (timeout) is not proposed after the fact.
        jobs.retain(|(_, tx)| !tx.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let (mut payloads, senders): (Vec<Payload>, Vec<_>) = jobs.into_iter().unzip();
        let single = payloads.len() == 1;
        let payload = if single {
            payloads.pop().expect("one payload")
        } else {
            Payload::Batch(payloads)
        };
        match sub.submit(payload).await {
            Ok(p) if single => {
                for tx in senders {
                    let _ = tx.send(Ok((p.index, p.output.0.clone())));
                }
            }
            Ok(p) => match postcard::from_bytes::<Vec<Vec<u8>>>(&p.output.0) {
                Ok(outs) if outs.len() == senders.len() => {
                    for (tx, out) in senders.into_iter().zip(outs) {
                        let _ = tx.send(Ok((p.index, out)));
                    }
                }
                _ => {
                    for tx in senders {
                        let _ = tx.send(Err(ProposeError::Codec(
                            "batch output does not match the batch".to_string(),
                        )));
                    }
                }
            },
            Err(e) => {
                for tx in senders {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
    }
}

pub(super) fn inline_len(p: &Payload) -> usize {
    match p {
        Payload::Inline(b) => b.len(),
        _ => 64,
    }
}

/// Appends `payload` if this node is the leader; waits for commit and apply
/// on the leader.
///
/// `NotLeader` means the entry was not handed to openraft. openraft answers
/// `ForwardToLeader` both when it refuses a write and when a new leader
/// truncated the entry it had appended, and a truncated entry can still
/// commit (Raft §5.4.2, Figure 8): once the write was handed over, that
/// answer is an unknown outcome, never a reason to propose again.
pub(super) async fn write_as_leader(
    raft: &Raft,
    payload: Payload,
) -> Result<Proposed, ForwardError> {
    let (state, leader) = {
        let m = raft.metrics();
        let m = m.borrow();
        (m.state, m.current_leader)
    };
    if state != ServerState::Leader {
        return Err(ForwardError::NotLeader(leader));
    }
    match raft.client_write(payload).await {
        Ok(resp) => Ok(Proposed {
            index: resp.log_id.index,
            output: resp.data,
        }),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ForwardError::Failed(format!(
                "leadership moved to {:?} while this node had the proposal: outcome unknown",
                f.leader_id
            )))
        }
        Err(e) => Err(ForwardError::Failed(e.to_string())),
    }
}
