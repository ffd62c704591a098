//! A STORE's answer: what its client is told once the change is through,
//! in Dovecot's order, from the session's own backend connection, and
//! what the session's view remembers of it.

use std::collections::HashMap;

use tandem_parser::response::Response;
use tandem_parser::seqset::{Ranges, SequenceSet};
use tandem_parser::uidmap::map_ranges;
use tandem_state::FlagMode;
use tokio::io::AsyncWrite;

use super::internal::Keep;
use super::{End, Session};
use crate::tls::Stream;

impl Session {
    /// After a STORE: the new flags of the messages it named, from this
    /// session's backend connection (which also reports the applier's
    /// change unasked: one FETCH per message reaches the client). By
    /// message number for a STORE by number, during which the backend
    /// reports no expunge; by UID for UID STORE. A `.SILENT` STORE's own
    /// messages are not reported; what was told is remembered, so that a
    /// later report of the same change is not a second FETCH.
    pub(super) async fn store_flags<S>(
        &mut self,
        uids: &[u32],
        silent: bool,
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        // Numbers of messages the STORE named that the canonical state no
        // longer has (`uids`: those it changed).
        let gone: Vec<u32> = std::mem::take(&mut self.store.numbered)
            .into_iter()
            .filter(|(_, c)| c.is_none_or(|c| !uids.contains(&c)))
            .map(|(n, _)| n)
            .collect();
        let change = self.store.change.take();
        let Some((mut q, named)) = self.store_query(uids) else {
            self.internal(backend, b"NOOP", Keep::Nothing).await?;
            return Ok(());
        };
        q.extend_from_slice(b" (FLAGS)");
        let (_, _, untagged) = self.internal(backend, &q, Keep::All).await?;
        // What the backend reported before (other sessions' changes) the
        // client gets even for a .SILENT STORE, as from Dovecot; only the
        // STORE's own results are silent.
        let held = std::mem::take(&mut self.held);
        let ours = |l: &Vec<u8>| {
            let r = Response::parse(l).ok()?;
            let n = r.fetch_seq()?;
            named.holds(n, r.fetch_uid()).then_some(n)
        };
        if silent {
            return self
                .store_silent(held, untagged, &named, (&gone, change.as_ref()), client)
                .await;
        }
        let mut lines = held;
        lines.extend(untagged);
        for line in in_answer_order(lines, &named) {
            match ours(&line) {
                Some(n) => {
                    let line = self.store_answer(line, n, &gone, change.as_ref());
                    self.relay_untagged(client, line.clone()).await?;
                    self.told_store_answer(&line, n);
                }
                None => self.relay_untagged(client, line).await?,
            }
        }
        Ok(())
    }

    /// The FETCH that asks the backend for the new flags of the messages
    /// a STORE named (without its items), and how they are named.
    fn store_query(&mut self, uids: &[u32]) -> Option<(Vec<u8>, Named)> {
        match self.store.numbers.take() {
            Some(numbers) => {
                let set = SequenceSet::parse(&numbers)
                    .map(|s| s.resolve(self.view.client_count()))
                    .unwrap_or_default();
                let mut q = b"FETCH ".to_vec();
                q.extend_from_slice(&numbers);
                Some((q, Named::Numbers(set)))
            }
            None => self
                .maps()
                .and_then(|m| m.selected)
                .map(|(map, _)| {
                    map_ranges(
                        &Ranges::from_ranges(uids.iter().map(|&u| (u, u))),
                        &map.to_local,
                    )
                })
                .filter(|l| !l.is_empty())
                .map(|local| {
                    let mut q = b"UID FETCH ".to_vec();
                    q.extend_from_slice(&local.to_bytes());
                    (q, Named::Uids(local))
                }),
        }
    }

    /// A `.SILENT` STORE's answer: the STORE's own results only teach what
    /// the client has; the rest goes out as one sync. By UID, the
    /// backend's unasked report of the applier's change has no UID: it is
    /// the STORE's own too when its number is.
    async fn store_silent<S>(
        &mut self,
        held: Vec<Vec<u8>>,
        untagged: Vec<Vec<u8>>,
        named: &Named,
        (gone, change): (&[u32], Option<&(FlagMode, Vec<String>)>),
        client: &mut S,
    ) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        let ours = |l: &Vec<u8>| {
            let r = Response::parse(l).ok()?;
            let n = r.fetch_seq()?;
            named.holds(n, r.fetch_uid()).then_some(n)
        };
        let own_numbers: Vec<u32> = untagged.iter().filter_map(&ours).collect();
        let (own, others): (Vec<_>, Vec<_>) = untagged.into_iter().partition(|l| {
            ours(l).is_some()
                || Response::parse(l).is_ok_and(|r| {
                    r.fetch_uid().is_none()
                        && r.fetch_seq().is_some_and(|n| own_numbers.contains(&n))
                })
        });
        let mut lines = held;
        lines.extend(others);
        let number = |line: &Vec<u8>| {
            ours(line)
                .or_else(|| Response::parse(line).ok()?.fetch_seq())
                .unwrap_or(0)
        };
        if lines.iter().any(|l| is_expunge(l)) {
            // EXPUNGEs renumber: the answers are read once they went out.
            for line in super::deliver::as_one_sync(lines) {
                self.relay_untagged(client, line).await?;
            }
            for line in own {
                let n = number(&line);
                let line = self.store_answer(line, n, gone, change);
                self.told_store_answer(&line, n);
            }
            return Ok(());
        }
        let answers: Vec<(u32, Vec<u8>)> = own
            .into_iter()
            .map(|line| {
                let n = number(&line);
                (n, self.store_answer(line, n, gone, change))
            })
            .collect();
        // Another session's change to one of the STORE's messages, reported
        // before the STORE applied, is told with the flags after it (as
        // Dovecot tells it): not a stale report.
        for line in without_superseded_fetches(lines, false) {
            let line = fresher(line, &answers);
            self.relay_untagged(client, line).await?;
        }
        // After what went out: it is news, not a repeat of these.
        for (n, line) in answers {
            self.told_store_answer(&line, n);
        }
        Ok(())
    }

    /// One FETCH of a STORE's own answer (backend message `n`): what the
    /// client is told, and what the view remembers of it. A message gone
    /// elsewhere is answered as if the STORE worked, and every later FETCH
    /// of it agrees until its EXPUNGE is reported.
    fn store_answer(
        &mut self,
        line: Vec<u8>,
        n: u32,
        gone: &[u32],
        change: Option<&(FlagMode, Vec<String>)>,
    ) -> Vec<u8> {
        let c = self.view.to_client(n);
        let line = match change {
            Some((mode, flags)) if gone.contains(&n) => {
                let had = c.and_then(|c| self.view.kept_flags(c));
                let line = had.map_or(line.clone(), |f| super::deliver::with_flags(&line, f));
                let now = super::deliver::stored_flags(&line, *mode, flags);
                if let (Some(c), Some(f)) = (c, now.as_ref().and_then(|l| flags_between(l))) {
                    self.view.keep_flags(c, &f);
                }
                now.unwrap_or(line)
            }
            _ => line,
        };
        line
    }

    /// Remembers that the client was told the flags in `line`, a FETCH of
    /// backend message `n` in a STORE's answer (after it is sent: until
    /// then it would be taken for a repeat of itself).
    fn told_store_answer(&mut self, line: &[u8], n: u32) {
        if let (Some(c), Some(flags)) = (self.view.to_client(n), super::deliver::flag_report(line))
        {
            self.view.told_flags(c, &flags);
        }
    }
}

/// `line`, unless it is a flag report of a message the STORE answered
/// (`answers`, by backend number): then that answer, which is newer.
fn fresher(line: Vec<u8>, answers: &[(u32, Vec<u8>)]) -> Vec<u8> {
    if super::deliver::flag_report(&line).is_none() {
        return line;
    }
    let Some(n) = Response::parse(&line).ok().and_then(|r| r.fetch_seq()) else {
        return line;
    };
    match answers.iter().find(|(m, _)| *m == n) {
        Some((_, answer)) => answer.clone(),
        None => line,
    }
}

/// A STORE's answer (what was held, then the backend's answer) in the
/// order Dovecot gives it. By number, the backend reports changes before
/// it answers: the last FETCH of a message is the newest. By UID, its
/// unasked report may follow its answer, which carries the UID. Unless
/// EXPUNGEs renumber (then one sync): what the sync brought (other
/// sessions' flags, FLAGS, PERMANENTFLAGS), the STORE's own FETCHes by
/// number, then new mail. (Dovecot leaves out a message the STORE did not
/// change; tandem reports each, as RFC 9051 6.4.6 asks: it cannot tell a
/// change another session made, which the client must hear of, from
/// none.)
fn in_answer_order(lines: Vec<Vec<u8>>, named: &Named) -> Vec<Vec<u8>> {
    let by_uid = matches!(named, Named::Uids(_));
    let lines = without_superseded_fetches(lines, by_uid);
    if lines.iter().any(|l| is_expunge(l)) {
        return super::deliver::as_one_sync(lines);
    }
    let own_seq = |l: &Vec<u8>| {
        let r = Response::parse(l).ok()?;
        let n = r.fetch_seq()?;
        named.holds(n, r.fetch_uid()).then_some(n)
    };
    let (mut own, rest): (Vec<_>, Vec<_>) = lines.into_iter().partition(|l| own_seq(l).is_some());
    own.sort_by_key(|l| own_seq(l));
    let (late, early): (Vec<_>, Vec<_>) = rest.into_iter().partition(|l| is_new_mail(l));
    early.into_iter().chain(own).chain(late).collect()
}

/// `lines` with one `* n FETCH` per message: the last one that carries a
/// UID (the answer to a UID FETCH does; the backend's unasked report of a
/// flag change does not), else the last one. Left as they are when an
/// EXPUNGE among them renumbers the messages.
fn without_superseded_fetches(lines: Vec<Vec<u8>>, prefer_uid: bool) -> Vec<Vec<u8>> {
    // Per line: the FETCH's message number and whether it has a UID.
    let fetches: Vec<Option<(u32, bool)>> = lines
        .iter()
        .map(|l| {
            let r = Response::parse(l).ok()?;
            Some((r.fetch_seq()?, r.fetch_uid().is_some()))
        })
        .collect();
    let renumbered = lines
        .iter()
        .any(|l| Response::parse(l).is_ok_and(|r| r.removes_messages()));
    if renumbered {
        return lines;
    }
    let mut keep: HashMap<u32, (usize, bool)> = HashMap::new();
    for (i, f) in fetches.iter().enumerate() {
        if let Some((n, uid)) = *f {
            match keep.get(&n) {
                Some(&(_, true)) if prefer_uid && !uid => {}
                _ => {
                    keep.insert(n, (i, uid));
                }
            }
        }
    }
    lines
        .into_iter()
        .zip(fetches)
        .enumerate()
        .filter(|(i, (_, f))| f.is_none_or(|(n, _)| keep.get(&n).map(|k| k.0) == Some(*i)))
        .map(|(_, (l, _))| l)
        .collect()
}

/// What the answer of a STORE needs from its planning.
#[derive(Debug, Default)]
pub(super) struct StoreAnswer {
    /// The backend's numbers of the messages a STORE by number named.
    pub(super) numbers: Option<Vec<u8>>,
    /// Each one's canonical UID, if it still has one.
    pub(super) numbered: Vec<(u32, Option<u32>)>,

    /// The change, for the messages gone.
    pub(super) change: Option<(FlagMode, Vec<String>)>,
}

/// What stands between the parentheses of `FLAGS (...)` in `line`.
fn flags_between(line: &[u8]) -> Option<Vec<u8>> {
    let upper = line.to_ascii_uppercase();
    let open = upper.windows(7).position(|w| w == b"FLAGS (")? + 7;
    let len = line[open..].iter().position(|&b| b == b')')?;
    Some(line[open..open + len].to_vec())
}

/// Whether `line` is `* n EXISTS` or `* n RECENT`.
fn is_new_mail(line: &[u8]) -> bool {
    let upper = line.to_ascii_uppercase();
    line.starts_with(b"* ") && (upper.ends_with(b" EXISTS\r\n") || upper.ends_with(b" RECENT\r\n"))
}

/// Whether `line` is `* n EXPUNGE`.
fn is_expunge(line: &[u8]) -> bool {
    Response::parse(line).is_ok_and(|r| r.removes_messages())
}

/// The messages a STORE named on the backend connection.
enum Named {
    /// By the backend's message numbers.
    Numbers(Ranges),
    /// By local UIDs.
    Uids(Ranges),
}

impl Named {
    /// Whether the FETCH of backend message `n` (with its UID if given)
    /// is of one of them.
    fn holds(&self, n: u32, uid: Option<u32>) -> bool {
        match self {
            Named::Numbers(set) => set.contains(n),
            Named::Uids(set) => uid.is_some_and(|u| set.contains(u)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fresher, in_answer_order, without_superseded_fetches, Named};
    use tandem_parser::seqset::Ranges;

    fn without_superseded_fetches_by_uid(lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        without_superseded_fetches(lines, true)
    }

    #[test]
    fn by_number_the_last_fetch_of_a_message_is_the_newest() {
        let got = without_superseded_fetches(
            lines(&[
                "* 1 FETCH (FLAGS ())",
                "* 3 EXISTS",
                "* 1 FETCH (UID 7 FLAGS (\\Seen))",
                "* 1 FETCH (FLAGS (\\Seen \\Flagged))",
            ]),
            false,
        );
        assert_eq!(
            got,
            lines(&["* 3 EXISTS", "* 1 FETCH (FLAGS (\\Seen \\Flagged))"])
        );
    }

    fn lines(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|l| format!("{l}\r\n").into_bytes()).collect()
    }

    #[test]
    fn a_report_older_than_the_stores_answer_is_replaced_by_it() {
        let answers = vec![(35, b"* 35 FETCH (FLAGS (\\Flagged))\r\n".to_vec())];
        let stale = b"* 35 FETCH (FLAGS (\\Flagged $s2))\r\n".to_vec();
        assert_eq!(fresher(stale, &answers), answers[0].1);
        let other = b"* 36 FETCH (FLAGS (\\Flagged $s2))\r\n".to_vec();
        assert_eq!(fresher(other.clone(), &answers), other);
        let exists = b"* 40 EXISTS\r\n".to_vec();
        assert_eq!(fresher(exists.clone(), &answers), exists);
    }

    #[test]
    fn a_store_answer_is_in_dovecots_order() {
        let named = Named::Numbers(Ranges::from_ranges([(2, 3)]));
        let got = in_answer_order(
            lines(&[
                "* 3 FETCH (FLAGS (\\Seen))",
                "* 5 EXISTS",
                "* 1 FETCH (FLAGS ($other))",
                "* 2 FETCH (FLAGS (\\Seen))",
                "* FLAGS (\\Seen $other)",
            ]),
            &named,
        );
        assert_eq!(
            got,
            lines(&[
                "* 1 FETCH (FLAGS ($other))",
                "* FLAGS (\\Seen $other)",
                "* 2 FETCH (FLAGS (\\Seen))",
                "* 3 FETCH (FLAGS (\\Seen))",
                "* 5 EXISTS",
            ])
        );
        // An EXPUNGE among them: one sync, in the backend's order.
        let with_expunge = lines(&[
            "* 3 FETCH (FLAGS ())",
            "* 1 EXPUNGE",
            "* 2 FETCH (FLAGS ())",
        ]);
        let got = in_answer_order(with_expunge.clone(), &named);
        assert!(got.iter().any(|l| l.starts_with(b"* 1 EXPUNGE")), "{got:?}");
    }

    #[test]
    fn a_later_fetch_of_the_same_message_supersedes_an_earlier_one() {
        let got = without_superseded_fetches_by_uid(lines(&[
            "* 1 FETCH (FLAGS (\\Flagged))",
            "* 3 EXISTS",
            "* 2 FETCH (FLAGS (\\Flagged))",
            "* 1 FETCH (UID 7 FLAGS (\\Flagged))",
            "* 2 FETCH (UID 8 FLAGS (\\Flagged))",
        ]));
        assert_eq!(
            got,
            lines(&[
                "* 3 EXISTS",
                "* 1 FETCH (UID 7 FLAGS (\\Flagged))",
                "* 2 FETCH (UID 8 FLAGS (\\Flagged))",
            ])
        );
    }

    #[test]
    fn the_answer_with_a_uid_wins_over_a_later_report_without() {
        let got = without_superseded_fetches_by_uid(lines(&[
            "* 1 FETCH (UID 7 FLAGS (\\Flagged))",
            "* 1 FETCH (FLAGS (\\Flagged))",
            "* 2 FETCH (FLAGS (\\Seen) UID 8)",
        ]));
        assert_eq!(
            got,
            lines(&[
                "* 1 FETCH (UID 7 FLAGS (\\Flagged))",
                "* 2 FETCH (FLAGS (\\Seen) UID 8)",
            ])
        );
    }

    #[test]
    fn an_expunge_among_them_keeps_every_fetch() {
        let v = lines(&[
            "* 2 FETCH (FLAGS (\\Seen))",
            "* 1 EXPUNGE",
            "* 2 FETCH (UID 9 FLAGS (\\Seen))",
        ]);
        assert_eq!(without_superseded_fetches(v.clone(), true), v);
        assert_eq!(without_superseded_fetches(v.clone(), false), v);
    }
}
