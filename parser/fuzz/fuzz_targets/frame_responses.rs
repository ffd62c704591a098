//! Server framing: whole-response mode and streaming mode agree on every
//! response, for any split of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_parser::frame::{Limits, ResponseFramer, ResponseProgress, Segment};

fn limits() -> Limits {
    Limits {
        max_line: 200,
        max_literal: 300,
        max_nonsync_literal: u64::MAX,
        max_message: 1000,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(c % 13) + 1;
    // Whole mode, all input at once.
    let mut whole = Vec::new();
    let mut f = ResponseFramer::new(limits());
    let mut at = 0;
    while let Ok(ResponseProgress::Complete { len }) = f.next(&input[at..]) {
        assert!(len > 0 && at + len <= input.len());
        whole.push(input[at..at + len].to_vec());
        at += len;
    }
    // Streaming mode, chunked.
    let mut streamed = Vec::new();
    let mut s = ResponseFramer::new(limits());
    let mut buf = Vec::new();
    let mut cur = Vec::new();
    let mut fed = 0;
    loop {
        match s.next_segment(&buf) {
            Ok(Segment::Line { len, literal }) => {
                assert!(len <= buf.len());
                cur.extend(buf.drain(..len));
                if literal.is_none() {
                    streamed.push(std::mem::take(&mut cur));
                }
            }
            Ok(Segment::LiteralData { len, .. }) => {
                assert!(len > 0 && len <= buf.len());
                cur.extend(buf.drain(..len));
            }
            Ok(Segment::Incomplete) => {
                if fed == input.len() {
                    break;
                }
                let n = chunk.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            Err(_) => break,
        }
    }
    // Streaming may stop early on a limit that whole mode hits later (and
    // vice versa), so compare the common prefix.
    let n = whole.len().min(streamed.len());
    assert_eq!(whole[..n], streamed[..n]);
});
