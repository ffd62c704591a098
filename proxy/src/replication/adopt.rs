//! Adoption: messages a backend holds without a canonical UID (delivered
//! straight into it, behind tandem) are replicated to every node as new
//! messages with canonical UIDs, and the originals expunged on their node
//! (`Op::Append` with `replaces`). This is where importing existing mail
//! grows.

use std::sync::Arc;
use std::time::Duration;

use tandem_parser::response::Response;
use tandem_parser::seqset::Ranges;
use tandem_state::{NewMessage, Op, Outcome, Replaces};

use super::Replication;
use crate::backend::{BackendConn, Status};

/// Most messages adopted by one entry.
const ADOPT_BATCH: usize = 50;

/// Most gaps between mapped runs an adoption scan names in its search; with
/// more, it searches everything from its cursor up and leaves out what is
/// mapped afterwards.
const MAX_SCAN_GAPS: usize = 500;

/// The local UIDs from `from` up that `to_canon` (local -> canonical) does
/// not map: the gaps between its runs, and everything above them.
fn unmapped_from(to_canon: &tandem_parser::uidmap::RunMap, from: u32) -> Ranges {
    let mut gaps = Vec::new();
    let mut next = u64::from(from);
    for &(start, _, len) in to_canon.runs() {
        let (start, end) = (u64::from(start), u64::from(start) + u64::from(len) - 1);
        if end < next {
            continue;
        }
        if start > next {
            gaps.push((next as u32, (start - 1) as u32));
        }
        next = end + 1;
    }
    if next <= u64::from(u32::MAX) {
        gaps.push((next as u32, u32::MAX));
    }
    if gaps.len() > MAX_SCAN_GAPS {
        gaps = vec![(from, u32::MAX)];
    }
    Ranges::from_ranges(gaps)
}

/// Flags, internal date and body of a `UID FETCH (FLAGS INTERNALDATE
/// BODY.PEEK[])` reply.
fn fetched_message(r: &crate::backend::Reply) -> Option<NewMessage> {
    r.untagged.iter().find_map(|line| {
        let resp = Response::parse(line).ok()?;
        let body = resp.first_literal()?.to_vec();
        let flags = resp
            .fetch_flags()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| !f.eq_ignore_ascii_case(b"\\Recent"))
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        let date = resp
            .internal_date()
            .map(|d| String::from_utf8_lossy(&d).into_owned());
        Some(NewMessage { flags, date, body })
    })
}

impl Replication {
    /// Asks for the messages of `user`'s `mailbox` that this node's backend
    /// holds without a canonical UID (delivered straight into the backend)
    /// to be adopted: replicated to every node as new messages with
    /// canonical UIDs, the originals expunged here. Runs in the background;
    /// a second request for a mailbox being scanned is ignored. `seen` is
    /// the message count the backend reported (`u64::MAX` if unknown): once
    /// the applier is done with the item in hand, a map that covers it means
    /// there is nothing to adopt (the usual case: a message the applier was
    /// still recording).
    pub fn request_adoption(self: &Arc<Self>, user: &str, mailbox: &str, seen: u64) {
        let key = (user.to_string(), tandem_state::normalize(mailbox));
        let fresh = self
            .adopting
            .lock()
            .map(|mut a| a.insert(key.clone()))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            drop(me.locks.of(&key.0).lock().await);
            let covered = me
                .mailbox(&key.0, &key.1)
                .and_then(|m| me.map(&key.0, m.uidvalidity))
                .is_some_and(|m| {
                    let left = me.unadoptable_in(&key.0, &key.1, m.local_uidvalidity);
                    m.to_local.len() + left >= seen
                });
            let result = if covered {
                Ok(0)
            } else {
                me.adopt(&key.0, &key.1).await
            };
            match result {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(mailbox = %key.1, messages = n, "adopted messages delivered behind tandem")
                }
                Err(e) => {
                    tracing::warn!(mailbox = %key.1, error = %e, "adoption failed; will retry when seen again")
                }
            }
            if let Ok(mut a) = me.adopting.lock() {
                a.remove(&key);
            }
        });
    }

    /// Whether every change of `user` this node knows of has reached its
    /// backend: a leader is known, the entries the local log held at start
    /// (or all of it, if less) are applied, and the applier has handed on
    /// every queued item and holds none of the user's. Until then, an
    /// unmapped message may be the applier's own, applied before a crash
    /// and about to be found again (in doubt), not mail delivered behind
    /// tandem. Waits up to 5 s.
    async fn settled(&self, user: &str) -> bool {
        let Some(progress) = &self.progress else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let settled = {
                let s = self.node.status();
                let applied = s.applied.unwrap_or(0);
                let last = s.last_log_index.unwrap_or(0);
                let queued = self
                    .node
                    .read(|txn| Some(tandem_state::last_seq(txn)))
                    .unwrap_or(0);
                s.leader.is_some()
                    && applied >= last.min(self.start_log_index)
                    && progress.read_to() >= queued
                    && progress.idle(user)
            };
            if settled {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn adopt(&self, user: &str, mailbox: &str) -> Result<usize, String> {
        let strict = self.strict_messages();
        let (cfg, password) = self.backend.clone().ok_or("no backend")?;
        let canon = self.mailbox(user, mailbox).ok_or("no such mailbox")?;
        let mut conn = BackendConn::connect(&cfg)
            .await
            .map_err(|e| e.to_string())?;
        let r = conn
            .login_as(&cfg, &password, user)
            .await
            .map_err(|e| e.to_string())?;
        if r.status != Status::Ok {
            return Err(format!("admin login refused: {}", r.text));
        }
        let mut total = 0;
        // Local UIDs at or below it have been looked at in this scan: the
        // copies an adoption appends get UIDs above the originals not yet
        // looked at, so the next search starts here, not above the map.
        let mut cursor: Option<u32> = None;
        loop {
            if !self.settled(user).await {
                return Err("the applier has this user's changes in hand".to_string());
            }
            // Scanned while the applier is paused: every message it appends
            // is mapped before it lets go.
            let lock = self.locks.of(user);
            let guard = lock.lock().await;
            let map = self.map(user, canon.uidvalidity).ok_or("no local map")?;
            let mut cmd = b"EXAMINE ".to_vec();
            tandem_parser::encode::astring(&mut cmd, mailbox.as_bytes());
            let r = conn.command(&cmd).await.map_err(|e| e.to_string())?;
            if r.status != Status::Ok {
                return Err(format!("EXAMINE: {}", r.text));
            }
            let local_uv = r
                .untagged
                .iter()
                .find_map(|l| Response::parse(l).ok()?.uidvalidity())
                .ok_or("no UIDVALIDITY")?;
            if local_uv != map.local_uidvalidity {
                return Err("the backend's mailbox was replaced behind tandem".to_string());
            }
            // Every local UID from here up that the map does not hold: a
            // message delivered behind tandem may sit between two the
            // applier appended, below the highest mapped one.
            let from = match cursor {
                None => 1,
                Some(u32::MAX) => return Ok(total),
                Some(c) => c + 1,
            };
            let mut q = b"UID SEARCH UID ".to_vec();
            q.extend_from_slice(&unmapped_from(&map.to_canon, from).to_bytes());
            let r = conn.command(&q).await.map_err(|e| e.to_string())?;
            let mut found: Vec<u32> = crate::apply::search_numbers(&r)
                .into_iter()
                .filter(|&u| u >= from)
                .collect();
            found.sort_unstable();
            found.truncate(ADOPT_BATCH);
            let Some(&last) = found.last() else {
                return Ok(total);
            };
            cursor = Some(last);
            // Copies appended by this scan's earlier batches are mapped.
            found.retain(|&u| tandem_parser::uidmap::UidMap::map_one(&map.to_canon, u).is_none());
            let mut messages = Vec::new();
            let mut adopted = Vec::new();
            for uid in found {
                let q = format!("UID FETCH {uid} (FLAGS INTERNALDATE BODY.PEEK[])");
                let r = conn
                    .command(q.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                let message = fetched_message(&r).ok_or("cannot read a message to adopt")?;
                // What another node's backend would refuse stays here,
                // hidden (never shown through tandem): replicating it would
                // leave the nodes disagreeing.
                if let Err(defect) = tandem_parser::message::check(&message.body) {
                    if strict {
                        let first = self.unadoptable.lock().is_ok_and(|mut s| {
                            s.insert((user.to_string(), mailbox.to_string(), local_uv, uid))
                        });
                        if first {
                            tracing::warn!(%mailbox, uid, %defect, "a message delivered behind tandem is not adopted and stays hidden: a Cyrus node could not store it");
                        }
                        continue;
                    }
                }
                messages.push(message);
                adopted.push(uid);
            }
            drop(guard);
            if messages.is_empty() {
                continue;
            }
            let found = adopted;
            let n = found.len();
            let op = Op::Append {
                mailbox: mailbox.to_string(),
                messages,
                replaces: Some(Replaces {
                    node: self.node.id(),
                    local_uidvalidity: local_uv,
                    uids: found,
                }),
            };
            match self.propose(user, op).await {
                Ok(Outcome::Ok { .. }) => total += n,
                Ok(Outcome::No { text, .. }) => return Err(text),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// How many messages of `user`'s `mailbox` (local UIDVALIDITY
    /// `local_uv`) were left unadopted.
    fn unadoptable_in(&self, user: &str, mailbox: &str, local_uv: u32) -> u64 {
        self.unadoptable.lock().map_or(0, |s| {
            s.iter()
                .filter(|(u, m, v, _)| u == user && m == mailbox && *v == local_uv)
                .count() as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::unmapped_from;
    use tandem_parser::uidmap::RunMap;

    #[test]
    fn the_scan_names_the_gaps_between_mapped_runs_and_everything_above() {
        // Local 1-3 and 6-7 mapped; 4-5 delivered behind tandem between them.
        let map = RunMap::from_runs(vec![(1, 1, 3), (6, 4, 2)]).unwrap();
        let all = unmapped_from(&map, 1);
        assert_eq!(all.ranges(), [(4, 5), (8, u32::MAX)]);
        assert_eq!(unmapped_from(&map, 5).ranges(), [(5, 5), (8, u32::MAX)]);
        assert_eq!(unmapped_from(&map, 9).ranges(), [(9, u32::MAX)]);
        assert_eq!(
            unmapped_from(&RunMap::default(), 1).ranges(),
            [(1, u32::MAX)]
        );
        let full = RunMap::from_runs(vec![(1, 1, u32::MAX)]).unwrap();
        assert!(unmapped_from(&full, 1).is_empty());
    }

    #[test]
    fn too_many_gaps_become_one_range_from_the_cursor() {
        let runs = (0..1000).map(|i| (1 + 2 * i, 1 + i, 1)).collect();
        let map = RunMap::from_runs(runs).unwrap();
        assert_eq!(unmapped_from(&map, 3).ranges(), [(3, u32::MAX)]);
    }
}
