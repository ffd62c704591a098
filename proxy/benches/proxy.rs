//! The proxy against direct Dovecot, side by side in one run: FETCH of 1,000
//! message headers, and SELECT of a 1,000-message mailbox, with 1 and 16
//! clients; rounds alternate direct and proxy so machine noise hits both.
//! Then the memory of idle, logged-in client sessions.
//!
//! Run: `cargo bench -p tandem-proxy --bench proxy` (or `make bench`).
//! `BENCH_SECONDS` sets the time per round (default 3); `BENCH_FILTER`
//! runs only the rows whose "workload clients" label contains it (e.g.
//! `SELECT 1,000 messages 16`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tandem_tests::{Dovecot, ImapClient};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[derive(Clone, Copy)]
enum Workload {
    FetchHeaders,
    Select,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::FetchHeaders => "FETCH 1:1000 headers",
            Workload::Select => "SELECT 1,000 messages",
        }
    }
}

/// Runs `clients` threads against `addr` for `seconds`; latencies of ops.
fn round(addr: SocketAddr, w: Workload, clients: usize, seconds: f64) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = ImapClient::login(addr, "alice", "demo");
                if let Workload::FetchHeaders = w {
                    c.command("EXAMINE INBOX").unwrap().ok();
                }
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match w {
                        Workload::FetchHeaders => {
                            let r = c.command("FETCH 1:1000 (BODY.PEEK[HEADER])").unwrap().ok();
                            assert_eq!(r.untagged.len(), 1000);
                        }
                        Workload::Select => {
                            let r = c.command("EXAMINE INBOX").unwrap().ok();
                            assert_eq!(r.exists(), Some(1000));
                        }
                    }
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Opens `n` logged-in, idle sessions with raw sockets (no client-side
/// buffers in this process).
fn idle_sessions(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(format!("l{i} LOGIN alice demo\r\n").as_bytes())
                .unwrap();
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains(&format!("l{i} OK")) {
                let k = s.read(&mut buf).unwrap();
                assert!(k > 0, "session {i} closed");
                got.extend_from_slice(&buf[..k]);
            }
            s
        })
        .collect()
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let dovecot = Dovecot::builder()
        .extra_config(
            "default_process_limit = 2000\ndefault_client_limit = 4000\n\
             service imap {\n  process_limit = 2000\n}\nservice imap-login {\n  process_limit = 2000\n}",
        )
        .start();
    {
        let mut c = ImapClient::login(dovecot.imap_addr(), "alice", "demo");
        for i in 0..1000 {
            let msg = format!(
                "From: sender{i}@example.org\r\nTo: alice@example.org\r\nSubject: message {i}\r\n\
                 Date: Sat, 28 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{i}@bench>\r\n\r\nbody {i}\r\n"
            );
            c.append("INBOX", msg.as_bytes()).unwrap().ok();
        }
    }
    let proxy = common::start_proxy(
        dovecot.imap_addr(),
        "[limits]\nmax_connections_per_ip = 5000\nmax_connections = 5000\n",
    );
    let direct = dovecot.imap_addr();

    println!("| workload | clients | direct ops/s | proxy ops/s | ratio | direct p50 ms | proxy p50 ms | added p50 ms | proxy p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    for w in [Workload::FetchHeaders, Workload::Select] {
        for clients in [1, 16] {
            if !format!("{} {clients}", w.name()).contains(&filter) {
                continue;
            }
            // Two alternating rounds each, to spread noise over both sides.
            let (mut d, mut p) = (Vec::new(), Vec::new());
            for _ in 0..2 {
                d.extend(round(direct, w, clients, seconds / 2.0));
                p.extend(round(proxy.addr, w, clients, seconds / 2.0));
            }
            d.sort();
            p.sort();
            let (dr, pr) = (d.len() as f64 / seconds, p.len() as f64 / seconds);
            let (d50, p50) = (percentile(&d, 0.5), percentile(&p, 0.5));
            println!(
                "| {} | {clients} | {dr:.0} | {pr:.0} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} |",
                w.name(),
                pr / dr,
                d50.as_secs_f64() * 1e3,
                p50.as_secs_f64() * 1e3,
                (p50.as_secs_f64() - d50.as_secs_f64()) * 1e3,
                percentile(&p, 0.99).as_secs_f64() * 1e3,
            );
        }
    }

    let n = 500;
    // Warm up the runtime and allocator with a few sessions first.
    drop(idle_sessions(proxy.addr, 20));
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib();
    let held = idle_sessions(proxy.addr, n);
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib();
    println!(
        "\nmemory: {n} idle logged-in sessions through the proxy add {} KiB to its RSS: {:.1} KiB per session",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / n as f64
    );
    drop(held);
}
