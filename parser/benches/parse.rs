//! Throughput of framing, parsing and rewriting on a realistic mix:
//! FETCH responses with 100 KiB bodies, APPENDs of 100 KiB messages, and
//! small commands and responses (flags, EXISTS, tagged OKs).
//!
//! Run with `cargo bench -p tandem-parser`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tandem_parser::command::Command;
use tandem_parser::frame::{
    CommandFramer, CommandProgress, Limits, ResponseFramer, ResponseProgress,
};
use tandem_parser::response::Response;
use tandem_parser::rewrite::{command_edits, response_edits, ResponseMaps, Scope};
use tandem_parser::uidmap::{RunMap, UidMap};

const BODY: usize = 100 * 1024;

fn body(i: usize) -> Vec<u8> {
    let line = format!("Line {i} of a message body, with some text to fill it up.\r\n");
    line.as_bytes().iter().copied().cycle().take(BODY).collect()
}

/// A server stream: per message one FETCH with a 100 KiB body, then small
/// responses in between, as a mail client syncing a folder sees.
fn response_stream() -> Vec<u8> {
    let mut v = Vec::new();
    for i in 1..=64u32 {
        let b = body(i as usize);
        v.extend_from_slice(
            format!(
                "* {i} FETCH (UID {} MODSEQ ({}) FLAGS (\\Seen $Forwarded) RFC822.SIZE {} BODY[] {{{}}}\r\n",
                i + 1000,
                i + 50_000,
                b.len(),
                b.len()
            )
            .as_bytes(),
        );
        v.extend_from_slice(&b);
        v.extend_from_slice(b")\r\n");
        for j in 0..8 {
            v.extend_from_slice(
                format!(
                    "* {} FETCH (UID {} FLAGS (\\Seen \\Answered))\r\n",
                    j + 1,
                    j + 2000
                )
                .as_bytes(),
            );
        }
        v.extend_from_slice(b"* 65 EXISTS\r\n");
        v.extend_from_slice(
            format!("A{i} OK [READ-WRITE] Fetch completed (0.001 + 0.000 secs).\r\n").as_bytes(),
        );
    }
    v
}

/// Small responses only: what a flag resync looks like.
fn small_response_stream() -> Vec<u8> {
    let mut v = Vec::new();
    for j in 1..=10_000u32 {
        v.extend_from_slice(
            format!(
                "* {j} FETCH (UID {} MODSEQ (77) FLAGS (\\Seen \\Answered $Label1))\r\n",
                j + 2000
            )
            .as_bytes(),
        );
    }
    v.extend_from_slice(b"A1 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n");
    v
}

/// A client stream: APPENDs of 100 KiB (LITERAL+) between small commands.
fn command_stream() -> Vec<u8> {
    let mut v = Vec::new();
    for i in 1..=64u32 {
        let b = body(i as usize);
        v.extend_from_slice(
            format!(
                "a{i} APPEND INBOX (\\Seen) \"05-Jan-2021 14:20:00 +0100\" {{{}+}}\r\n",
                b.len()
            )
            .as_bytes(),
        );
        v.extend_from_slice(&b);
        v.extend_from_slice(b"\r\n");
        for j in 0..8 {
            v.extend_from_slice(
                format!(
                    "b{i}.{j} UID STORE {}:{} +FLAGS.SILENT (\\Seen)\r\n",
                    j * 10 + 1,
                    j * 10 + 9
                )
                .as_bytes(),
            );
        }
        v.extend_from_slice(format!("c{i} UID FETCH 1:* (UID FLAGS)\r\nd{i} NOOP\r\n").as_bytes());
    }
    v
}

fn frame_responses(buf: &[u8]) -> usize {
    let mut f = ResponseFramer::new(Limits::default());
    let mut at = 0;
    let mut n = 0;
    while let Ok(ResponseProgress::Complete { len }) = f.next(&buf[at..]) {
        at += len;
        n += 1;
    }
    assert_eq!(at, buf.len());
    n
}

/// Frames `buf` as it would arrive from a socket in `chunk`-byte reads:
/// each call sees the bytes arrived so far, from the start of the response.
fn frame_responses_chunked(buf: &[u8], chunk: usize) -> usize {
    let mut f = ResponseFramer::new(Limits::default());
    let (mut start, mut filled, mut n) = (0, 0, 0);
    while start < buf.len() {
        match f.next(&buf[start..filled]) {
            Ok(ResponseProgress::Complete { len }) => {
                start += len;
                n += 1;
            }
            Ok(ResponseProgress::Incomplete) => filled = (filled + chunk).min(buf.len()),
            Err(e) => panic!("{e}"),
        }
    }
    n
}

fn frame_commands(buf: &[u8]) -> usize {
    let mut f = CommandFramer::new(Limits::default());
    let mut at = 0;
    let mut n = 0;
    loop {
        match f.next(&buf[at..]) {
            Ok(CommandProgress::Complete { len }) => {
                at += len;
                n += 1;
            }
            Ok(CommandProgress::LiteralAnnounced(_)) => f.accept_literal(),
            _ => break,
        }
    }
    assert_eq!(at, buf.len());
    n
}

fn split(buf: &[u8], commands: bool) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    if commands {
        let mut f = CommandFramer::new(Limits::default());
        loop {
            match f.next(&buf[at..]) {
                Ok(CommandProgress::Complete { len }) => {
                    out.push(&buf[at..at + len]);
                    at += len;
                }
                Ok(CommandProgress::LiteralAnnounced(_)) => f.accept_literal(),
                _ => break,
            }
        }
    } else {
        let mut f = ResponseFramer::new(Limits::default());
        while let Ok(ResponseProgress::Complete { len }) = f.next(&buf[at..]) {
            out.push(&buf[at..at + len]);
            at += len;
        }
    }
    out
}

struct Shift(RunMap);

impl ResponseMaps for Shift {
    fn uids(&self, _: Scope<'_>) -> Option<&dyn UidMap> {
        Some(&self.0)
    }
    fn uid_validity(&self, _: Scope<'_>, local: u32) -> Option<u32> {
        Some(local + 1)
    }
    fn uid_next(&self, _: Scope<'_>, local: u32) -> Option<u32> {
        Some(local + 1)
    }
    fn search_returns_uids(&self) -> bool {
        true
    }
}

fn benches(c: &mut Criterion) {
    let responses = response_stream();
    let small = small_response_stream();
    let commands = command_stream();

    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(responses.len() as u64));
    g.bench_function("responses_100k_bodies", |b| {
        b.iter(|| frame_responses(black_box(&responses)))
    });
    g.bench_function("responses_100k_bodies_16k_reads", |b| {
        b.iter(|| frame_responses_chunked(black_box(&responses), 16 * 1024))
    });
    g.throughput(Throughput::Bytes(commands.len() as u64));
    g.bench_function("commands_100k_appends", |b| {
        b.iter(|| frame_commands(black_box(&commands)))
    });
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("responses_small", |b| {
        b.iter(|| frame_responses(black_box(&small)))
    });
    g.finish();

    let mut g = c.benchmark_group("frame_and_parse");
    g.throughput(Throughput::Bytes(responses.len() as u64));
    g.bench_function("responses_100k_bodies", |b| {
        b.iter(|| {
            for r in split(black_box(&responses), false) {
                black_box(Response::parse(r).unwrap());
            }
        })
    });
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("responses_small", |b| {
        b.iter(|| {
            for r in split(black_box(&small), false) {
                black_box(Response::parse(r).unwrap());
            }
        })
    });
    g.throughput(Throughput::Bytes(commands.len() as u64));
    g.bench_function("commands_100k_appends", |b| {
        b.iter(|| {
            for r in split(black_box(&commands), true) {
                black_box(Command::parse(r).unwrap());
            }
        })
    });
    g.finish();

    let mut runs = RunMap::new();
    for k in 1..=100_000 {
        runs.push(k, k + 7).unwrap();
    }
    let map = Shift(runs);
    let mut g = c.benchmark_group("frame_parse_rewrite");
    g.throughput(Throughput::Bytes(small.len() as u64));
    g.bench_function("responses_small", |b| {
        b.iter(|| {
            for r in split(black_box(&small), false) {
                let resp = Response::parse(r).unwrap();
                black_box(response_edits(&resp, &map).unwrap());
            }
        })
    });
    g.throughput(Throughput::Bytes(commands.len() as u64));
    g.bench_function("commands_100k_appends", |b| {
        b.iter(|| {
            for r in split(black_box(&commands), true) {
                let cmd = Command::parse(r).unwrap();
                black_box(command_edits(&cmd, 100_000, &map.0).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(parse, benches);
criterion_main!(parse);
