//! Sequence sets and UID sets (RFC 9051 `sequence-set`, RFC 4315
//! `uid-set`): parsing, exact re-encoding, resolution of `*`, and the algebra
//! of resolved sets.
//!
//! Two types, two jobs:
//! - [`SequenceSet`] is a set *as written*: its items in the order and form
//!   the sender used (`5:1`, `*`, `3,1`), so that `encode(parse(x)) == x`.
//! - [`Ranges`] is a resolved set: sorted, disjoint, non-adjacent inclusive
//!   ranges of non-zero numbers, no `*`. Membership, iteration, union,
//!   intersection, difference and the compact encoding live there.
//!
//! Invariants, one line each:
//! - A `SequenceSet` never holds 0 and is never empty.
//! - A `Ranges` is always normalized: sorted, disjoint, non-adjacent, no 0.
//! - `a:b` and `b:a` denote the same numbers (RFC 9051 section 9,
//!   `seq-range`); `*` is the largest number in use, so with 10 messages
//!   `12:*` contains 10, 11 and 12 (and resolves to `10:12`).

use std::fmt;

/// One end of an item in a sequence set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqNum {
    /// A non-zero number.
    Value(u32),
    /// `*`: the largest number in use in the mailbox.
    Star,
}

impl SeqNum {
    /// The number this stands for, `*` being `star`.
    pub fn resolve(self, star: u32) -> u32 {
        match self {
            SeqNum::Value(v) => v,
            SeqNum::Star => star,
        }
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            SeqNum::Value(v) => push_u32(out, v),
            SeqNum::Star => out.push(b'*'),
        }
    }
}

/// One item of a sequence set as written: a number or a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqItem {
    /// `n` or `*`.
    One(SeqNum),
    /// `a:b`, in the order written.
    Range(SeqNum, SeqNum),
}

impl SeqItem {
    /// The inclusive range of numbers this item stands for, `*` being `star`.
    pub fn bounds(self, star: u32) -> (u32, u32) {
        match self {
            SeqItem::One(n) => {
                let v = n.resolve(star);
                (v, v)
            }
            SeqItem::Range(a, b) => {
                let (a, b) = (a.resolve(star), b.resolve(star));
                (a.min(b), a.max(b))
            }
        }
    }

    /// Whether the item mentions `*`.
    pub fn has_star(self) -> bool {
        match self {
            SeqItem::One(n) => n == SeqNum::Star,
            SeqItem::Range(a, b) => a == SeqNum::Star || b == SeqNum::Star,
        }
    }

    fn encode(self, out: &mut Vec<u8>) {
        match self {
            SeqItem::One(n) => n.encode(out),
            SeqItem::Range(a, b) => {
                a.encode(out);
                out.push(b':');
                b.encode(out);
            }
        }
    }
}

/// Why a sequence set did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// Nothing where a set was expected.
    #[error("empty sequence set")]
    Empty,
    /// A byte that cannot appear at this offset of a set.
    #[error("unexpected byte at offset {0} of a sequence set")]
    Unexpected(usize),
    /// `0`, a leading zero, or a number above 4294967295.
    #[error("number out of range at offset {0} of a sequence set")]
    BadNumber(usize),
}

/// A sequence set or UID set as written (RFC 9051 `sequence-set`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SequenceSet {
    items: Vec<SeqItem>,
}

impl fmt::Debug for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SequenceSet({})",
            String::from_utf8_lossy(&self.to_bytes())
        )
    }
}

/// Parses a `nz-number` at the front of `b`; returns it and its length.
fn parse_nz(b: &[u8], at: usize) -> Result<(u32, usize), SetError> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Err(SetError::Unexpected(at));
    }
    if b[0] == b'0' || digits > 10 {
        return Err(SetError::BadNumber(at));
    }
    let mut v: u64 = 0;
    for &d in &b[..digits] {
        v = v * 10 + u64::from(d - b'0');
    }
    let v = u32::try_from(v).map_err(|_| SetError::BadNumber(at))?;
    Ok((v, digits))
}

fn parse_seqnum(b: &[u8], at: usize) -> Result<(SeqNum, usize), SetError> {
    if b.first() == Some(&b'*') {
        return Ok((SeqNum::Star, 1));
    }
    let (v, n) = parse_nz(b, at)?;
    Ok((SeqNum::Value(v), n))
}

impl SequenceSet {
    /// Parses a whole sequence set; every byte of `b` must belong to it.
    pub fn parse(b: &[u8]) -> Result<Self, SetError> {
        let (set, n) = Self::parse_prefix(b)?;
        if n != b.len() {
            return Err(SetError::Unexpected(n));
        }
        Ok(set)
    }

    /// Parses the sequence set at the front of `b`; returns it and the
    /// number of bytes it took. Stops before the first byte that cannot
    /// continue the set (a space, a parenthesis).
    pub fn parse_prefix(b: &[u8]) -> Result<(Self, usize), SetError> {
        if b.is_empty() {
            return Err(SetError::Empty);
        }
        let mut items = Vec::new();
        let mut i = 0;
        loop {
            let (a, n) = parse_seqnum(&b[i..], i)?;
            i += n;
            if b.get(i) == Some(&b':') {
                i += 1;
                let (c, n) = parse_seqnum(&b[i..], i)?;
                i += n;
                items.push(SeqItem::Range(a, c));
            } else {
                items.push(SeqItem::One(a));
            }
            if b.get(i) == Some(&b',') {
                i += 1;
            } else {
                return Ok((SequenceSet { items }, i));
            }
        }
    }

    /// A set from items as they should be written. `None` if `items` is
    /// empty or holds a 0.
    pub fn from_items(items: Vec<SeqItem>) -> Option<Self> {
        let zero = |n: SeqNum| n == SeqNum::Value(0);
        let bad = items.iter().any(|i| match *i {
            SeqItem::One(a) => zero(a),
            SeqItem::Range(a, b) => zero(a) || zero(b),
        });
        if items.is_empty() || bad {
            return None;
        }
        Some(SequenceSet { items })
    }

    /// The items as written.
    pub fn items(&self) -> &[SeqItem] {
        &self.items
    }

    /// Whether any item mentions `*`.
    pub fn has_star(&self) -> bool {
        self.items.iter().any(|i| i.has_star())
    }

    /// Appends the set, exactly in the form it was written, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for (k, item) in self.items.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            item.encode(out);
        }
    }

    /// The set as written, as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// The numbers this set stands for when the largest number in use is
    /// `star`. With `star == 0` (empty mailbox) items mentioning `*` stand
    /// for nothing.
    pub fn resolve(&self, star: u32) -> Ranges {
        let mut r = Ranges::new();
        for &item in &self.items {
            if star == 0 && item.has_star() {
                continue;
            }
            let (lo, hi) = item.bounds(star);
            r.insert(lo, hi);
        }
        r
    }

    /// Whether `n` is in the set when the largest number in use is `star`.
    pub fn contains(&self, n: u32, star: u32) -> bool {
        self.items.iter().any(|&item| {
            if star == 0 && item.has_star() {
                return false;
            }
            let (lo, hi) = item.bounds(star);
            lo <= n && n <= hi
        })
    }
}

/// A resolved set of non-zero numbers, kept as sorted, disjoint,
/// non-adjacent inclusive ranges.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Ranges {
    ranges: Vec<(u32, u32)>,
}

impl fmt::Debug for Ranges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("Ranges()");
        }
        write!(f, "Ranges({})", String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl Ranges {
    /// The empty set.
    pub fn new() -> Self {
        Ranges::default()
    }

    /// The set of the given inclusive ranges, in any order, overlapping or
    /// not, `a:b` or `b:a`; zeros are dropped.
    pub fn from_ranges<I: IntoIterator<Item = (u32, u32)>>(it: I) -> Self {
        let mut r = Ranges::new();
        for (a, b) in it {
            r.insert(a.min(b), a.max(b));
        }
        r
    }

    /// Adds the numbers `lo..=hi` (nothing if `lo > hi`; 0 is dropped).
    /// Appending in ascending order costs O(1).
    pub fn insert(&mut self, lo: u32, hi: u32) {
        let lo = lo.max(1);
        if lo > hi {
            return;
        }
        // Fast path: at or after the end.
        if let Some(last) = self.ranges.last_mut() {
            if lo > last.1 {
                if lo - last.1 == 1 {
                    last.1 = hi;
                } else {
                    self.ranges.push((lo, hi));
                }
                return;
            }
        } else {
            self.ranges.push((lo, hi));
            return;
        }
        // First range that could touch [lo, hi]: its end + 1 >= lo.
        let start = self
            .ranges
            .partition_point(|&(_, e)| u64::from(e) + 1 < u64::from(lo));
        // One past the last range that touches: its start <= hi + 1.
        let end = self
            .ranges
            .partition_point(|&(s, _)| u64::from(s) <= u64::from(hi) + 1);
        if start >= end {
            self.ranges.insert(start, (lo, hi));
            return;
        }
        let new_lo = lo.min(self.ranges[start].0);
        let new_hi = hi.max(self.ranges[end - 1].1);
        self.ranges.drain(start + 1..end);
        self.ranges[start] = (new_lo, new_hi);
    }

    /// The ranges, sorted, disjoint and non-adjacent.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// How many numbers the set holds.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|&(a, b)| u64::from(b - a) + 1).sum()
    }

    /// Smallest number, if any.
    pub fn min(&self) -> Option<u32> {
        self.ranges.first().map(|r| r.0)
    }

    /// Largest number, if any.
    pub fn max(&self) -> Option<u32> {
        self.ranges.last().map(|r| r.1)
    }

    /// Whether `n` is in the set. O(log ranges).
    pub fn contains(&self, n: u32) -> bool {
        let i = self.ranges.partition_point(|&(_, e)| e < n);
        self.ranges.get(i).is_some_and(|&(s, _)| s <= n)
    }

    /// The numbers in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| a..=b)
    }

    /// Numbers in either set.
    pub fn union(&self, other: &Ranges) -> Ranges {
        let mut r = self.clone();
        for &(a, b) in &other.ranges {
            r.insert(a, b);
        }
        r
    }

    /// Numbers in both sets.
    pub fn intersection(&self, other: &Ranges) -> Ranges {
        let mut r = Ranges::new();
        let (mut i, mut j) = (0, 0);
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a1, b1) = self.ranges[i];
            let (a2, b2) = other.ranges[j];
            let lo = a1.max(a2);
            let hi = b1.min(b2);
            if lo <= hi {
                r.ranges.push((lo, hi));
            }
            if b1 < b2 {
                i += 1;
            } else {
                j += 1;
            }
        }
        r
    }

    /// Numbers in `self` but not in `other`.
    pub fn difference(&self, other: &Ranges) -> Ranges {
        let mut r = Ranges::new();
        let mut j = 0;
        for &(a, b) in &self.ranges {
            let mut lo = a;
            while j < other.ranges.len() && other.ranges[j].1 < lo {
                j += 1;
            }
            let mut k = j;
            let mut done = false;
            while k < other.ranges.len() && other.ranges[k].0 <= b {
                let (c, d) = other.ranges[k];
                if c > lo {
                    r.ranges.push((lo, c - 1));
                }
                if d >= b {
                    done = true;
                    break;
                }
                lo = d + 1;
                k += 1;
            }
            if !done {
                r.ranges.push((lo, b));
            }
        }
        r
    }

    /// The compact encoding (`1:3,5,7:9`), appended to `out`. Nothing for
    /// the empty set, which IMAP cannot express.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for (k, &(a, b)) in self.ranges.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            push_u32(out, a);
            if b != a {
                out.push(b':');
                push_u32(out, b);
            }
        }
    }

    /// The compact encoding as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// The set in compact form as a [`SequenceSet`]; `None` if empty.
    pub fn to_sequence_set(&self) -> Option<SequenceSet> {
        let items = self
            .ranges
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    SeqItem::One(SeqNum::Value(a))
                } else {
                    SeqItem::Range(SeqNum::Value(a), SeqNum::Value(b))
                }
            })
            .collect();
        SequenceSet::from_items(items)
    }
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u32(out: &mut Vec<u8>, v: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn rfc9051_example_set_resolves_with_star() {
        // RFC 9051 section 9 (sequence-set): "2,4:7,9,12:*" with 15 messages
        // is 2,4,5,6,7,9,12,13,14,15.
        let s = set("2,4:7,9,12:*");
        let r = s.resolve(15);
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![2, 4, 5, 6, 7, 9, 12, 13, 14, 15]
        );
        assert_eq!(r.to_bytes(), b"2,4:7,9,12:15");
    }

    #[test]
    fn rfc9051_star_range_below_star_includes_the_largest() {
        // "*:4" with 3 messages stands for 3:4 (RFC 9051 section 9): the
        // classic surprise of "UID n:*" returning the last message.
        assert_eq!(set("*:4").resolve(3).to_bytes(), b"3:4");
        assert_eq!(set("12:*").resolve(10).to_bytes(), b"10:12");
        assert!(set("100:*").contains(10, 10));
        assert!(!set("100:*").contains(9, 10));
    }

    #[test]
    fn reversed_range_is_the_same_set() {
        assert_eq!(set("5:1").resolve(9), set("1:5").resolve(9));
        assert_eq!(set("5:1").to_bytes(), b"5:1");
    }

    #[test]
    fn star_in_an_empty_mailbox_stands_for_nothing() {
        assert!(set("1:*").resolve(0).is_empty());
        assert_eq!(set("3,1:*").resolve(0).to_bytes(), b"3");
        assert!(!set("*").contains(0, 0));
    }

    #[test]
    fn malformed_sets_are_rejected_with_offsets() {
        assert_eq!(SequenceSet::parse(b""), Err(SetError::Empty));
        assert_eq!(SequenceSet::parse(b"0"), Err(SetError::BadNumber(0)));
        assert_eq!(SequenceSet::parse(b"1:0"), Err(SetError::BadNumber(2)));
        assert_eq!(SequenceSet::parse(b"01"), Err(SetError::BadNumber(0)));
        assert_eq!(
            SequenceSet::parse(b"4294967296"),
            Err(SetError::BadNumber(0))
        );
        assert_eq!(SequenceSet::parse(b"1,"), Err(SetError::Unexpected(2)));
        assert_eq!(SequenceSet::parse(b"1:"), Err(SetError::Unexpected(2)));
        assert_eq!(SequenceSet::parse(b"1 2"), Err(SetError::Unexpected(1)));
        assert_eq!(SequenceSet::parse(b"$"), Err(SetError::Unexpected(0)));
        assert_eq!(
            SequenceSet::parse(b"4294967295").unwrap().to_bytes(),
            b"4294967295"
        );
    }

    #[test]
    fn parse_prefix_stops_before_a_space() {
        let (s, n) = SequenceSet::parse_prefix(b"1:3,7 FLAGS").unwrap();
        assert_eq!(n, 5);
        assert_eq!(s.to_bytes(), b"1:3,7");
    }

    #[test]
    fn set_algebra_known_answers() {
        let a = Ranges::from_ranges([(1, 10), (20, 30)]);
        let b = Ranges::from_ranges([(5, 25)]);
        assert_eq!(a.union(&b).to_bytes(), b"1:30");
        assert_eq!(a.intersection(&b).to_bytes(), b"5:10,20:25");
        assert_eq!(a.difference(&b).to_bytes(), b"1:4,26:30");
        assert_eq!(b.difference(&a).to_bytes(), b"11:19");
        assert_eq!(a.len(), 21);
        let full = Ranges::from_ranges([(1, u32::MAX)]);
        assert_eq!(full.len(), u64::from(u32::MAX));
        assert_eq!(full.difference(&full), Ranges::new());
        assert_eq!(
            full.difference(&Ranges::from_ranges([(u32::MAX, u32::MAX)]))
                .to_bytes(),
            b"1:4294967294"
        );
    }

    #[test]
    fn adjacent_ranges_merge_and_zero_is_dropped() {
        let r = Ranges::from_ranges([(3, 4), (1, 2), (6, 6), (5, 5), (0, 0)]);
        assert_eq!(r.ranges(), &[(1, 6)]);
        let r = Ranges::from_ranges([(10, 12), (1, 2), (4, 5), (3, 3)]);
        assert_eq!(r.ranges(), &[(1, 5), (10, 12)]);
    }

    fn seqset_strategy() -> impl Strategy<Value = SequenceSet> {
        let num = prop_oneof![
            4 => (1u32..50).prop_map(SeqNum::Value),
            1 => Just(SeqNum::Star),
            1 => any::<u32>().prop_map(|v| SeqNum::Value(v.max(1))),
        ];
        let item = prop_oneof![
            num.clone().prop_map(SeqItem::One),
            (num.clone(), num).prop_map(|(a, b)| SeqItem::Range(a, b)),
        ];
        proptest::collection::vec(item, 1..8)
            .prop_map(|items| SequenceSet::from_items(items).unwrap())
    }

    fn small_ranges() -> impl Strategy<Value = Ranges> {
        proptest::collection::vec((1u32..200, 0u32..20), 0..10)
            .prop_map(|v| Ranges::from_ranges(v.into_iter().map(|(a, l)| (a, a + l))))
    }

    fn model(r: &Ranges) -> BTreeSet<u32> {
        r.iter().collect()
    }

    proptest! {
        #[test]
        fn encode_of_parse_is_identity(s in seqset_strategy()) {
            let bytes = s.to_bytes();
            prop_assert_eq!(SequenceSet::parse(&bytes).unwrap(), s);
        }

        #[test]
        fn ranges_stay_normalized(v in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..20)) {
            let r = Ranges::from_ranges(v.iter().map(|&(a, b)| (a % 300, b % 300)));
            for w in r.ranges().windows(2) {
                prop_assert!(u64::from(w[0].1) + 1 < u64::from(w[1].0));
            }
            for &(a, b) in r.ranges() {
                prop_assert!(a >= 1 && a <= b);
            }
            let expected: BTreeSet<u32> = v
                .iter()
                .flat_map(|&(a, b)| {
                    let (a, b) = (a % 300, b % 300);
                    a.min(b).max(1)..=a.max(b)
                })
                .collect();
            prop_assert_eq!(model(&r), expected);
        }

        #[test]
        fn resolve_and_contains_agree(s in seqset_strategy(), star in 0u32..60, n in 1u32..70) {
            prop_assert_eq!(s.resolve(star).contains(n), s.contains(n, star));
        }

        #[test]
        fn compact_encoding_parses_back_to_the_same_set(r in small_ranges()) {
            if let Some(s) = r.to_sequence_set() {
                prop_assert_eq!(&s.to_bytes(), &r.to_bytes());
                prop_assert_eq!(SequenceSet::parse(&r.to_bytes()).unwrap().resolve(1), r);
            } else {
                prop_assert!(r.is_empty());
            }
        }

        #[test]
        fn algebra_matches_a_model(a in small_ranges(), b in small_ranges()) {
            let (ma, mb) = (model(&a), model(&b));
            prop_assert_eq!(model(&a.union(&b)), ma.union(&mb).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(model(&a.intersection(&b)), ma.intersection(&mb).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(model(&a.difference(&b)), ma.difference(&mb).copied().collect::<BTreeSet<_>>());
            prop_assert_eq!(a.len(), ma.len() as u64);
            for n in 0..230 {
                prop_assert_eq!(a.contains(n), ma.contains(&n));
            }
            // Results are normalized too.
            prop_assert_eq!(Ranges::from_ranges(a.difference(&b).ranges().iter().copied()), a.difference(&b));
            prop_assert_eq!(Ranges::from_ranges(a.intersection(&b).ranges().iter().copied()), a.intersection(&b));
        }
    }
}
