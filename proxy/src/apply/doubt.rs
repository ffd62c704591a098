//! Items in doubt. After a crash (every item up to the durable high-water
//! mark) or a lost answer (a retry after a transient error), an item may
//! already have reached the backend without its UIDs being recorded: it is
//! looked for before it is applied again. Looking needs the evidence, so an
//! item that destroys evidence is preceded by a durable barrier, which also
//! records what a MOVE's sources looked like ([`Evidence`]).
//!
//! The decisions are pure functions of what the backend holds
//! ([`scan_run`], [`moved_copies_at`]), table-tested below; the worker's
//! methods here only fetch what they ask for.

use std::collections::{HashMap, HashSet};

use redb::Durability;
use serde::{Deserialize, Serialize};
use tandem_parser::seqset::Ranges;
use tandem_parser::uidmap::UidMap;
use tandem_state::Work;

use super::maps::MailboxMap;
use super::reading::{first_literal, search_numbers, size_and_date};
use super::worker::Worker;
use super::{ApplyError, StoreError, BARRIER, MOVE_EVIDENCE, STATE};

/// How many unmapped messages an item in doubt skips, at most, looking for
/// what it may have applied before a crash (mail delivered behind tandem
/// in between).
const MAX_DOUBT_SCAN: usize = 64;

/// The sources of a MOVE as they were before it ran, in the order of their
/// copies: a MOVE in doubt after a crash has no sources left to compare
/// with, and mail delivered behind tandem into its destination must not be
/// taken for its copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Evidence {
    /// The MOVE's outbox item.
    pub(super) seq: u64,
    /// (RFC822.SIZE, INTERNALDATE) of each source.
    pub(super) sources: Vec<(u32, String)>,
}

/// Where a scan for a run of known messages stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scan {
    /// The run starts at this index of `found`.
    Found(usize),
    /// The body of local UID `uid` is needed; scan again from `start`.
    Need {
        /// The UID whose body to fetch.
        uid: u32,
        /// Where to resume (earlier starts failed already).
        start: usize,
    },
    /// No run within reach.
    Absent,
}

/// Where in `found` (unmapped local UIDs, in order) a run of messages byte
/// for byte `wanted` starts, trying the starts from `from` up to
/// [`MAX_DOUBT_SCAN`]: what it skips is mail delivered behind tandem in
/// between, left to adoption. `bodies` holds those fetched so far.
pub(super) fn scan_run(
    found: &[u32],
    wanted: &[&[u8]],
    bodies: &HashMap<u32, Vec<u8>>,
    from: usize,
) -> Scan {
    if wanted.is_empty() || found.len() < wanted.len() {
        return Scan::Absent;
    }
    for start in from..=(found.len() - wanted.len()).min(MAX_DOUBT_SCAN) {
        let mut all = true;
        for (i, w) in wanted.iter().enumerate() {
            let uid = found[start + i];
            match bodies.get(&uid) {
                None => return Scan::Need { uid, start },
                Some(b) if b.as_slice() != *w => {
                    all = false;
                    break;
                }
                Some(_) => {}
            }
        }
        if all {
            return Scan::Found(start);
        }
    }
    Scan::Absent
}

/// Where in `found` (the destination's unmapped UIDs, in order) the copies
/// of a MOVE whose sources are gone start: the first run whose
/// (RFC822.SIZE, INTERNALDATE), from `by_uid`, are those the sources had
/// (`sources`, recorded by the barrier before it ran), within
/// [`MAX_DOUBT_SCAN`] starts.
pub(super) fn moved_copies_at(
    found: &[u32],
    by_uid: &HashMap<u32, (u32, String)>,
    sources: &[(u32, String)],
) -> Option<usize> {
    (0..=found
        .len()
        .saturating_sub(sources.len())
        .min(MAX_DOUBT_SCAN))
        .find(|&start| {
            sources
                .iter()
                .enumerate()
                .all(|(i, want)| found.get(start + i).and_then(|u| by_uid.get(u)) == Some(want))
        })
}

impl Worker {
    /// Makes every commit so far durable (see the module's doc): an item
    /// about to remove messages or mailboxes must not leave the items
    /// before it to be found on the backend after a crash. A MOVE's
    /// `evidence` is recorded with it.
    pub(super) fn barrier(
        &self,
        seq: u64,
        user: &str,
        evidence: Option<&Evidence>,
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = txn.open_table(STATE)?;
            t.insert(BARRIER, seq)?;
            if let Some(ev) = evidence {
                let bytes = postcard::to_stdvec(ev)?;
                let mut t = txn.open_table(MOVE_EVIDENCE)?;
                t.insert(user, bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The evidence the barrier before MOVE `seq` recorded, if any.
    pub(super) fn recorded_evidence(&self, seq: u64, user: &str) -> Option<Evidence> {
        let txn = self.db.begin_read().ok()?;
        let t = txn.open_table(MOVE_EVIDENCE).ok()?;
        let bytes = t.get(user).ok()??;
        let ev: Evidence = postcard::from_bytes(bytes.value()).ok()?;
        (ev.seq == seq).then_some(ev)
    }

    /// What the sources of MOVE `seq` look like on the backend now (size
    /// and date, in the order of their copies); `None` for anything else,
    /// or when they cannot be read (then a MOVE in doubt after a crash
    /// takes the first unmapped messages of its destination).
    pub(super) async fn evidence_of(&mut self, seq: u64, work: &Work) -> Option<Evidence> {
        let Work::Copy {
            user,
            from,
            from_uidvalidity,
            pairs,
            remove: true,
            ..
        } = work
        else {
            return None;
        };
        let src = self.map_of(user, *from_uidvalidity).ok()?;
        let local: Vec<u32> = pairs
            .iter()
            .filter_map(|&(cs, _)| src.to_local.map_one(cs))
            .collect();
        self.select(user, from).await.ok()?;
        let by_uid = self.sizes_and_dates(user, &local).await.ok()?;
        let sources = local
            .iter()
            .map(|l| by_uid.get(l).cloned())
            .collect::<Option<Vec<_>>>()?;
        Some(Evidence { seq, sources })
    }

    /// The local UIDs of `mailbox` above every mapped one: messages the
    /// backend holds that tandem has not recorded (selects the mailbox).
    pub(super) async fn unmapped(
        &mut self,
        user: &str,
        mailbox: &str,
        map: &MailboxMap,
    ) -> Result<Vec<u32>, ApplyError> {
        let above = map.to_local.max_to().unwrap_or(0);
        self.select(user, mailbox).await?;
        let q = format!("UID SEARCH UID {}:*", u64::from(above) + 1);
        if above == u32::MAX {
            return Ok(Vec::new());
        }
        let r = self.conn(user).await?.conn.command(q.as_bytes()).await?;
        // `n:*` always includes the last message, even below n.
        Ok(search_numbers(&r)
            .into_iter()
            .filter(|&u| u > above)
            .collect())
    }

    /// Where in `found` (the unmapped messages of `to`, in order) a COPY
    /// (or MOVE, `remove`) of the `held` messages (canonical source,
    /// canonical destination, local source) put its copies, if it already
    /// reached the backend. A MOVE took place when no source is left in
    /// `from` (its copies are the first unmapped messages); a COPY when a
    /// run of unmapped messages is byte for byte the sources.
    pub(super) async fn copied_already(
        &mut self,
        user: &str,
        from: &str,
        to: &str,
        held: &[(u32, u32, u32)],
        found: &[u32],
        remove: bool,
    ) -> Result<Option<usize>, ApplyError> {
        let local: Vec<u32> = held.iter().map(|&(_, _, l)| l).collect();
        self.select(user, from).await?;
        if remove {
            let set = Ranges::from_ranges(local.iter().map(|&l| (l, l)));
            let Some(set) = set.to_sequence_set() else {
                return Ok(None);
            };
            let mut q = b"UID SEARCH UID ".to_vec();
            set.encode(&mut q);
            let r = self.conn(user).await?.conn.command(&q).await?;
            let left: HashSet<u32> = search_numbers(&r).into_iter().collect();
            if local.iter().any(|l| left.contains(l)) {
                return Ok(None);
            }
            // Moved: its copies are the run of unmapped messages that
            // looks like the sources did (mail delivered behind tandem
            // may come first), else the first ones.
            let Some(ev) = self.evidence.take() else {
                return Ok(Some(0));
            };
            self.select(user, to).await?;
            let by_uid = self.sizes_and_dates(user, found).await?;
            let at = moved_copies_at(found, &by_uid, &ev.sources);
            if at.is_none() {
                tracing::warn!(mailbox = %to, "no unmapped messages look like a MOVE's sources; taking the first ones");
            }
            return Ok(Some(at.unwrap_or(0)));
        }
        let sources = self.bodies(user, &local).await?;
        if sources.iter().any(Vec::is_empty) {
            return Ok(None);
        }
        self.select(user, to).await?;
        let wanted: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
        self.find_run(user, found, &wanted).await
    }

    /// Where in `found` (unmapped local UIDs of the selected mailbox, in
    /// order) a run of messages byte for byte `wanted` starts: [`scan_run`],
    /// fetching each body it asks for once.
    pub(super) async fn find_run(
        &mut self,
        user: &str,
        found: &[u32],
        wanted: &[&[u8]],
    ) -> Result<Option<usize>, ApplyError> {
        let mut bodies: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut from = 0;
        loop {
            match scan_run(found, wanted, &bodies, from) {
                Scan::Found(start) => return Ok(Some(start)),
                Scan::Absent => return Ok(None),
                Scan::Need { uid, start } => {
                    let b = self.bodies(user, &[uid]).await?;
                    bodies.insert(uid, b.into_iter().next().unwrap_or_default());
                    from = start;
                }
            }
        }
    }

    /// The bodies of the given local UIDs of the selected mailbox, in order.
    pub(super) async fn bodies(
        &mut self,
        user: &str,
        uids: &[u32],
    ) -> Result<Vec<Vec<u8>>, ApplyError> {
        let mut out = Vec::new();
        for uid in uids {
            let q = format!("UID FETCH {uid} (BODY.PEEK[])");
            let r = self.conn(user).await?.conn.command(q.as_bytes()).await?;
            out.push(
                r.untagged
                    .iter()
                    .find_map(|l| first_literal(l))
                    .unwrap_or_default(),
            );
        }
        Ok(out)
    }
    /// RFC822.SIZE and INTERNALDATE of the given local UIDs of the selected
    /// mailbox, by UID (500 UIDs per command).
    pub(super) async fn sizes_and_dates(
        &mut self,
        user: &str,
        uids: &[u32],
    ) -> Result<HashMap<u32, (u32, String)>, ApplyError> {
        let mut out = HashMap::new();
        for chunk in uids.chunks(500) {
            let Some(set) = Ranges::from_ranges(chunk.iter().map(|&l| (l, l))).to_sequence_set()
            else {
                continue;
            };
            let mut q = b"UID FETCH ".to_vec();
            set.encode(&mut q);
            q.extend_from_slice(b" (UID RFC822.SIZE INTERNALDATE)");
            let r = self.conn(user).await?.conn.command(&q).await?;
            out.extend(
                r.untagged
                    .iter()
                    .filter_map(|l| size_and_date(l))
                    .map(|(uid, size, date)| (uid, (size, date))),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{moved_copies_at, scan_run, Scan, MAX_DOUBT_SCAN};
    use std::collections::HashMap;

    /// Runs [`scan_run`] the way `Worker::find_run` does, over a backend
    /// whose unmapped messages are `backend` (UID, body); returns where the
    /// run starts and the UIDs whose bodies were fetched, in order.
    fn scan(backend: &[(u32, &str)], wanted: &[&str]) -> (Option<usize>, Vec<u32>) {
        let found: Vec<u32> = backend.iter().map(|&(u, _)| u).collect();
        let wanted: Vec<&[u8]> = wanted.iter().map(|w| w.as_bytes()).collect();
        let mut bodies = HashMap::new();
        let mut fetched = Vec::new();
        let mut from = 0;
        loop {
            match scan_run(&found, &wanted, &bodies, from) {
                Scan::Found(start) => return (Some(start), fetched),
                Scan::Absent => return (None, fetched),
                Scan::Need { uid, start } => {
                    assert!(!fetched.contains(&uid), "UID {uid} fetched twice");
                    fetched.push(uid);
                    let body = backend.iter().find(|&&(u, _)| u == uid).map(|&(_, b)| b);
                    bodies.insert(uid, body.unwrap_or_default().as_bytes().to_vec());
                    from = start;
                }
            }
        }
    }

    #[test]
    fn an_item_in_doubt_is_found_past_mail_delivered_behind_tandem() {
        type Case<'a> = (&'a str, &'a [(u32, &'a str)], &'a [&'a str], Option<usize>);
        let cases: &[Case<'_>] = &[
            (
                "applied, nothing else",
                &[(5, "a"), (6, "b")],
                &["a", "b"],
                Some(0),
            ),
            (
                "past three foreign messages",
                &[(5, "x"), (6, "y"), (7, "z"), (8, "a"), (9, "b")],
                &["a", "b"],
                Some(3),
            ),
            (
                "a foreign message after the run changes nothing",
                &[(5, "a"), (6, "b"), (7, "x")],
                &["a", "b"],
                Some(0),
            ),
            ("never applied", &[(5, "x")], &["a"], None),
            ("nothing unmapped", &[], &["a"], None),
            (
                "half the run only",
                &[(5, "x"), (6, "a")],
                &["a", "b"],
                None,
            ),
            (
                "a run broken by a foreign message is not the item",
                &[(5, "a"), (6, "x"), (7, "b")],
                &["a", "b"],
                None,
            ),
            (
                "the same body twice: the first run",
                &[(5, "a"), (6, "a"), (7, "a")],
                &["a", "a"],
                Some(0),
            ),
            ("nothing wanted", &[(5, "a")], &[], None),
        ];
        for (name, backend, wanted, expected) in cases {
            assert_eq!(scan(backend, wanted).0, *expected, "{name}");
        }
    }

    #[test]
    fn a_scan_fetches_each_body_once_and_stops_at_the_run() {
        let backend = [(5, "x"), (6, "a"), (7, "b"), (8, "c")];
        let (at, fetched) = scan(&backend, &["a", "b"]);
        assert_eq!(at, Some(1));
        assert_eq!(fetched, vec![5, 6, 7], "UID 8 is never needed");
    }

    #[test]
    fn a_scan_gives_up_after_max_doubt_scan_foreign_messages() {
        let foreign: Vec<(u32, String)> = (0..=MAX_DOUBT_SCAN as u32)
            .map(|i| (100 + i, format!("foreign {i}")))
            .collect();
        let mut backend: Vec<(u32, &str)> = foreign.iter().map(|(u, b)| (*u, b.as_str())).collect();
        backend.push((999, "a"));
        assert_eq!(
            scan(&backend, &["a"]).0,
            None,
            "{} starts at most",
            MAX_DOUBT_SCAN + 1
        );
        backend.remove(0);
        assert_eq!(scan(&backend, &["a"]).0, Some(MAX_DOUBT_SCAN));
    }

    #[test]
    fn a_move_in_doubt_finds_its_copies_by_size_and_date() {
        let d = |s: &str| s.to_string();
        let sources = vec![
            (100, d("01-Dec-2026 10:00:00 +0000")),
            (200, d("02-Dec-2026 10:00:00 +0000")),
        ];
        let by_uid: HashMap<u32, (u32, String)> = [
            // Delivered behind tandem into the destination before the MOVE.
            (7, (300, d("03-Dec-2026 10:00:00 +0000"))),
            (8, sources[0].clone()),
            (9, sources[1].clone()),
        ]
        .into_iter()
        .collect();
        assert_eq!(moved_copies_at(&[7, 8, 9], &by_uid, &sources), Some(1));
        assert_eq!(moved_copies_at(&[8, 9, 7], &by_uid, &sources), Some(0));
        // One copy missing (or another size): not these.
        assert_eq!(moved_copies_at(&[7, 8], &by_uid, &sources), None);
        assert_eq!(moved_copies_at(&[9, 8], &by_uid, &sources), None);
    }
}
