//! Client framing: any split of the input into chunks gives the same frames
//! as the whole input at once; no length ever exceeds the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_parser::frame::{CommandFramer, CommandProgress, FrameError, Limits};

fn limits() -> Limits {
    Limits {
        max_line: 200,
        max_literal: 300,
        max_nonsync_literal: 250,
        max_message: 1000,
    }
}

/// Frames `input` fed in chunks of the given sizes; accepts every literal.
fn frames(input: &[u8], chunk: usize) -> (Vec<Vec<u8>>, Option<FrameError>) {
    let mut f = CommandFramer::new(limits());
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match f.next(&buf) {
            Ok(CommandProgress::Complete { len }) => {
                assert!(len > 0 && len <= buf.len());
                out.push(buf.drain(..len).collect());
            }
            Ok(CommandProgress::LiteralAnnounced(a)) => {
                assert!(a.data_start <= buf.len());
                f.accept_literal();
            }
            Ok(CommandProgress::Incomplete) => {
                if fed == input.len() {
                    return (out, None);
                }
                let n = chunk.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&c, input)) = data.split_first() else {
        return;
    };
    let whole = frames(input, usize::MAX);
    let chunked = frames(input, usize::from(c % 17) + 1);
    assert_eq!(whole, chunked);
});
