//! A sequence set that parses re-encodes to the same bytes, and its
//! resolution agrees with membership.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_parser::seqset::SequenceSet;

fuzz_target!(|data: &[u8]| {
    let Some((&star, input)) = data.split_first() else {
        return;
    };
    if let Ok(set) = SequenceSet::parse(input) {
        assert_eq!(set.to_bytes(), input);
        let star = u32::from(star);
        let r = set.resolve(star);
        for n in 0..300 {
            assert_eq!(r.contains(n), set.contains(n, star));
        }
        if let Some(compact) = r.to_sequence_set() {
            assert_eq!(compact.resolve(star), r);
        }
    }
});
