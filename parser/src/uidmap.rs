//! Mapping UIDs between canonical (cluster-wide) and backend-local numbers.
//!
//! The proxy owns the maps (they are durable state); this module only
//! defines how a set of UIDs is carried through one, in either direction:
//! the caller passes a map canonical -> local for commands and a map
//! local -> canonical for responses.
//!
//! Invariants, one line each:
//! - **A UID with no mapping is dropped, never replaced**: the image of a
//!   set is exactly the images of its mapped members, so a UID absent from
//!   the map can never come out as the number of another message.
//! - The image of a range is never widened to a range of images: canonical
//!   `1:10` with only 2 and 5 mapped (to 20 and 50) becomes `20,50`, never
//!   `20:50`, which could name local messages the client never saw.
//! - `*` is resolved with the caller's largest UID before mapping (RFC 9051
//!   section 9), so the result never depends on the other side's `*`.
//! - An empty image is reported as `None`: IMAP cannot express an empty
//!   set, and the proxy decides what to answer (for a UID command on a set
//!   none of whose UIDs exist, RFC 9051 section 6.4.9 says the command
//!   succeeds and does nothing).

use std::collections::BTreeMap;

use crate::seqset::{Ranges, SeqItem, SeqNum, SequenceSet};

/// A map from one UID space to another. Implementations must be
/// deterministic; they need not be monotonic, though tandem's are.
pub trait UidMap {
    /// Adds to `out` the image of every mapped UID in `lo..=hi`
    /// (`lo <= hi`). UIDs without a mapping add nothing.
    fn map_range(&self, lo: u32, hi: u32, out: &mut Ranges);

    /// The image of one UID, `None` if it has no mapping.
    fn map_one(&self, uid: u32) -> Option<u32> {
        let mut r = Ranges::new();
        self.map_range(uid, uid, &mut r);
        r.min()
    }
}

impl<M: UidMap + ?Sized> UidMap for &M {
    fn map_range(&self, lo: u32, hi: u32, out: &mut Ranges) {
        (**self).map_range(lo, hi, out)
    }
    fn map_one(&self, uid: u32) -> Option<u32> {
        (**self).map_one(uid)
    }
}

/// The identity: every UID maps to itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl UidMap for Identity {
    fn map_range(&self, lo: u32, hi: u32, out: &mut Ranges) {
        out.insert(lo, hi);
    }
    fn map_one(&self, uid: u32) -> Option<u32> {
        Some(uid)
    }
}

impl UidMap for BTreeMap<u32, u32> {
    fn map_range(&self, lo: u32, hi: u32, out: &mut Ranges) {
        for (_, &v) in self.range(lo..=hi) {
            out.insert(v, v);
        }
    }
    fn map_one(&self, uid: u32) -> Option<u32> {
        self.get(&uid).copied()
    }
}

/// A monotonic map kept as runs of consecutive UIDs mapped to consecutive
/// UIDs, the shape tandem's maps have (messages applied in log order get
/// increasing UIDs on both sides). `map_range` costs O(log runs + runs
/// touched), so `1:*` over a mailbox of a million messages stays cheap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunMap {
    /// `(from, to, len)`: `from + i` maps to `to + i` for `i < len`;
    /// sorted by `from`, and by `to`, without overlaps.
    runs: Vec<(u32, u32, u32)>,
}

/// Why [`RunMap::push`] refused a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pair {from} -> {to} is not above the last pair of the map")]
pub struct NotIncreasing {
    /// The UID mapped from.
    pub from: u32,
    /// The UID mapped to.
    pub to: u32,
}

impl RunMap {
    /// The empty map.
    pub fn new() -> Self {
        RunMap::default()
    }

    /// Adds `from -> to`; both must be above every pair already in the map
    /// (and non-zero), which keeps the map strictly increasing.
    pub fn push(&mut self, from: u32, to: u32) -> Result<(), NotIncreasing> {
        let err = NotIncreasing { from, to };
        if from == 0 || to == 0 {
            return Err(err);
        }
        match self.runs.last_mut() {
            Some(&mut (f, t, len))
                if u64::from(from) < u64::from(f) + u64::from(len)
                    || u64::from(to) < u64::from(t) + u64::from(len) =>
            {
                Err(err)
            }
            Some(last)
                if u64::from(from) == u64::from(last.0) + u64::from(last.2)
                    && u64::from(to) == u64::from(last.1) + u64::from(last.2) =>
            {
                last.2 += 1;
                Ok(())
            }
            _ => {
                self.runs.push((from, to, 1));
                Ok(())
            }
        }
    }

    /// Removes the mapping of `from` (an expunged message), if any.
    pub fn remove(&mut self, from: u32) {
        let i = self
            .runs
            .partition_point(|&(f, _, len)| u64::from(f) + u64::from(len) <= u64::from(from));
        let Some(&(f, t, len)) = self.runs.get(i) else {
            return;
        };
        if from < f {
            return;
        }
        let k = from - f;
        let mut repl = Vec::with_capacity(2);
        if k > 0 {
            repl.push((f, t, k));
        }
        if k + 1 < len {
            repl.push((from + 1, t + k + 1, len - k - 1));
        }
        self.runs.splice(i..=i, repl);
    }

    /// The inverse map (local -> canonical from canonical -> local).
    pub fn inverse(&self) -> RunMap {
        RunMap {
            runs: self.runs.iter().map(|&(f, t, l)| (t, f, l)).collect(),
        }
    }

    /// Number of mapped UIDs.
    pub fn len(&self) -> u64 {
        self.runs.iter().map(|r| u64::from(r.2)).sum()
    }

    /// Whether no UID is mapped.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The runs `(from, to, len)`, for storing the map.
    pub fn runs(&self) -> &[(u32, u32, u32)] {
        &self.runs
    }

    /// A map from stored runs; `None` if they are not strictly increasing
    /// on both sides or a run is empty or overflows.
    pub fn from_runs(runs: Vec<(u32, u32, u32)>) -> Option<RunMap> {
        let mut prev: Option<(u64, u64)> = None;
        for &(f, t, len) in &runs {
            let (end_f, end_t) = (u64::from(f) + u64::from(len), u64::from(t) + u64::from(len));
            if len == 0 || f == 0 || t == 0 || end_f > 1 << 32 || end_t > 1 << 32 {
                return None;
            }
            if let Some((pf, pt)) = prev {
                if u64::from(f) < pf || u64::from(t) < pt {
                    return None;
                }
            }
            prev = Some((end_f, end_t));
        }
        Some(RunMap { runs })
    }

    /// The largest UID mapped to (the `*` of the target side).
    pub fn max_to(&self) -> Option<u32> {
        self.runs.last().map(|&(_, t, l)| t + (l - 1))
    }

    /// The largest UID mapped from (the `*` of the source side).
    pub fn max_from(&self) -> Option<u32> {
        self.runs.last().map(|&(f, _, l)| f + (l - 1))
    }
}

impl UidMap for RunMap {
    fn map_range(&self, lo: u32, hi: u32, out: &mut Ranges) {
        let mut i = self
            .runs
            .partition_point(|&(f, _, len)| u64::from(f) + u64::from(len) <= u64::from(lo));
        while let Some(&(f, t, len)) = self.runs.get(i) {
            if f > hi {
                break;
            }
            let last = f + (len - 1);
            let a = lo.max(f);
            let b = hi.min(last);
            if a <= b {
                out.insert(t + (a - f), t + (b - f));
            }
            i += 1;
        }
    }

    fn map_one(&self, uid: u32) -> Option<u32> {
        let i = self
            .runs
            .partition_point(|&(f, _, len)| u64::from(f) + u64::from(len) <= u64::from(uid));
        let &(f, t, _) = self.runs.get(i)?;
        (uid >= f).then(|| t + (uid - f))
    }
}

/// A map given as a function of one UID. `map_range` calls it once per UID
/// of the range, so use it with resolved sets of reasonable size (tests,
/// small mailboxes); real maps should implement `map_range` over their runs.
#[derive(Debug, Clone, Copy)]
pub struct FnMap<F>(pub F);

impl<F: Fn(u32) -> Option<u32>> UidMap for FnMap<F> {
    fn map_range(&self, lo: u32, hi: u32, out: &mut Ranges) {
        for uid in lo..=hi {
            if let Some(v) = (self.0)(uid) {
                out.insert(v, v);
            }
        }
    }
    fn map_one(&self, uid: u32) -> Option<u32> {
        (self.0)(uid)
    }
}

/// Carries a resolved set through `map`. Empty if no member is mapped.
pub fn map_ranges<M: UidMap + ?Sized>(set: &Ranges, map: &M) -> Ranges {
    let mut out = Ranges::new();
    for &(lo, hi) in set.ranges() {
        map.map_range(lo, hi, &mut out);
    }
    out
}

/// Carries a set as written through `map`, keeping its shape where the map
/// allows: each item becomes the items of its image, in the item's place; a
/// range whose image is one range stays a range written in the same
/// direction (`5:3` stays `15:13`, `3:3` stays `13:13`); a single number
/// stays a single number. `*` is resolved with `star` first (and with
/// `star == 0`, an empty mailbox, items with `*` stand for nothing).
/// `None` when no member of the set is mapped.
pub fn map_sequence_set<M: UidMap + ?Sized>(
    set: &SequenceSet,
    star: u32,
    map: &M,
) -> Option<SequenceSet> {
    let mut items = Vec::with_capacity(set.items().len());
    for &item in set.items() {
        if star == 0 && item.has_star() {
            continue;
        }
        let (lo, hi) = item.bounds(star);
        let mut image = Ranges::new();
        map.map_range(lo, hi, &mut image);
        match (item, image.ranges()) {
            (_, []) => {}
            (SeqItem::Range(a, b), &[(x, y)]) => {
                if a.resolve(star) > b.resolve(star) {
                    items.push(SeqItem::Range(SeqNum::Value(y), SeqNum::Value(x)));
                } else {
                    items.push(SeqItem::Range(SeqNum::Value(x), SeqNum::Value(y)));
                }
            }
            (_, ranges) => {
                for &(x, y) in ranges {
                    items.push(if x == y {
                        SeqItem::One(SeqNum::Value(x))
                    } else {
                        SeqItem::Range(SeqNum::Value(x), SeqNum::Value(y))
                    });
                }
            }
        }
    }
    SequenceSet::from_items(items)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A strictly increasing sparse map, as tandem keeps: canonical UIDs
    /// `keys` to local UIDs `base + 3 * i`.
    pub(crate) fn sparse(keys: &[u32], base: u32) -> BTreeMap<u32, u32> {
        keys.iter()
            .enumerate()
            .map(|(i, &k)| (k, base + 3 * i as u32))
            .collect()
    }

    pub(crate) fn invert(m: &BTreeMap<u32, u32>) -> BTreeMap<u32, u32> {
        m.iter().map(|(&k, &v)| (v, k)).collect()
    }

    fn set(s: &str) -> SequenceSet {
        SequenceSet::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn unmapped_uids_are_dropped_not_replaced() {
        let m = sparse(&[2, 5], 20); // 2 -> 20, 5 -> 23
        let out = map_sequence_set(&set("1:10"), 10, &m).unwrap();
        // Never "20:23": local 21 and 22 are not images of anything.
        assert_eq!(out.to_bytes(), b"20,23");
        assert_eq!(map_sequence_set(&set("3"), 10, &m), None);
        assert_eq!(map_sequence_set(&set("3,4,6:9"), 10, &m), None);
        assert_eq!(m.map_one(3), None);
    }

    #[test]
    fn star_is_resolved_with_the_callers_largest_uid() {
        let m: BTreeMap<u32, u32> = (1..=10).map(|k| (k, k + 100)).collect();
        assert_eq!(
            map_sequence_set(&set("8:*"), 10, &m).unwrap().to_bytes(),
            b"108:110"
        );
        // 12:* with largest 10 is 10:12 (RFC 9051 section 9).
        assert_eq!(
            map_sequence_set(&set("12:*"), 10, &m).unwrap().to_bytes(),
            b"110:110"
        );
        assert_eq!(map_sequence_set(&set("1:*"), 0, &m), None);
    }

    #[test]
    fn shape_is_kept_where_the_image_allows() {
        let shift = FnMap(|u: u32| u.checked_add(10));
        let out = map_sequence_set(&set("5:3,7,9:9,1"), 100, &shift).unwrap();
        assert_eq!(out.to_bytes(), b"15:13,17,19:19,11");
    }

    #[test]
    fn map_ranges_of_a_non_monotonic_map_is_still_exact() {
        let m: BTreeMap<u32, u32> = [(1, 9), (2, 3), (3, 5)].into_iter().collect();
        assert_eq!(
            map_ranges(&Ranges::from_ranges([(1, 3)]), &m).to_bytes(),
            b"3,5,9"
        );
    }

    #[test]
    fn run_map_maps_ranges_by_runs_and_refuses_decreasing_pairs() {
        let mut m = RunMap::new();
        for (f, t) in [(1, 101), (2, 102), (3, 103), (7, 104), (8, 110)] {
            m.push(f, t).unwrap();
        }
        assert_eq!(m.runs.len(), 3);
        assert_eq!(m.push(8, 200), Err(NotIncreasing { from: 8, to: 200 }));
        assert_eq!(m.push(9, 110), Err(NotIncreasing { from: 9, to: 110 }));
        assert_eq!(
            map_ranges(&Ranges::from_ranges([(2, 7)]), &m).to_bytes(),
            b"102:104"
        );
        assert_eq!(
            map_ranges(&Ranges::from_ranges([(4, 6)]), &m).to_bytes(),
            b""
        );
        assert_eq!(m.map_one(8), Some(110));
        assert_eq!(m.inverse().map_one(104), Some(7));
        m.remove(2);
        assert_eq!(
            map_ranges(&Ranges::from_ranges([(1, 3)]), &m).to_bytes(),
            b"101,103"
        );
        assert_eq!(m.len(), 4);
        assert_eq!(m.max_from(), Some(8));
    }

    fn set_without_star() -> impl Strategy<Value = SequenceSet> {
        let num = (1u32..60).prop_map(SeqNum::Value);
        let item = prop_oneof![
            num.clone().prop_map(SeqItem::One),
            (num.clone(), num).prop_map(|(a, b)| SeqItem::Range(a, b)),
        ];
        proptest::collection::vec(item, 1..6).prop_map(|i| SequenceSet::from_items(i).unwrap())
    }

    proptest! {
        #[test]
        fn run_map_agrees_with_a_btree_map(
            steps in proptest::collection::vec((1u32..4, 1u32..4), 0..40),
            removals in proptest::collection::vec(1u32..120, 0..10),
            lo in 1u32..130, len in 0u32..130,
        ) {
            let (mut f, mut t) = (0u32, 0u32);
            let mut runs = RunMap::new();
            let mut tree = BTreeMap::new();
            for (df, dt) in steps {
                f += df;
                t += dt;
                runs.push(f, t).unwrap();
                tree.insert(f, t);
            }
            for r in removals {
                runs.remove(r);
                tree.remove(&r);
            }
            let hi = lo.saturating_add(len);
            let mut a = Ranges::new();
            let mut b = Ranges::new();
            runs.map_range(lo, hi, &mut a);
            tree.map_range(lo, hi, &mut b);
            prop_assert_eq!(a, b);
            prop_assert_eq!(runs.len(), tree.len() as u64);
            for x in lo..=hi.min(140) {
                prop_assert_eq!(runs.map_one(x), tree.get(&x).copied());
            }
            let inv = runs.inverse();
            for (&k, &v) in &tree {
                prop_assert_eq!(inv.map_one(v), Some(k));
            }
        }

        #[test]
        fn identity_map_gives_the_same_bytes(s in set_without_star()) {
            prop_assert_eq!(map_sequence_set(&s, 60, &Identity).unwrap().to_bytes(), s.to_bytes());
        }

        #[test]
        fn shift_then_unshift_gives_the_original_bytes(s in set_without_star(), by in 1u32..1000) {
            let fwd = FnMap(move |u: u32| u.checked_add(by));
            let back = FnMap(move |u: u32| u.checked_sub(by).filter(|&v| v > 0));
            let there = map_sequence_set(&s, 60, &fwd).unwrap();
            let again = map_sequence_set(&there, 60 + by, &back).unwrap();
            prop_assert_eq!(again.to_bytes(), s.to_bytes());
        }

        #[test]
        fn image_is_exactly_the_mapped_members(
            s in set_without_star(),
            keys in proptest::collection::btree_set(1u32..60, 0..40),
            star in 1u32..60,
        ) {
            let keys: Vec<u32> = keys.into_iter().collect();
            let m = sparse(&keys, 1000);
            let expected: Ranges = Ranges::from_ranges(
                s.resolve(star).iter().filter_map(|u| m.get(&u).map(|&v| (v, v))),
            );
            match map_sequence_set(&s, star, &m) {
                None => prop_assert!(expected.is_empty()),
                Some(out) => prop_assert_eq!(out.resolve(u32::MAX), expected),
            }
            // And back: every image maps back to a member of the original.
            let back = map_ranges(&map_ranges(&s.resolve(star), &m), &invert(&m));
            prop_assert_eq!(back.difference(&s.resolve(star)), Ranges::new());
        }
    }
}
