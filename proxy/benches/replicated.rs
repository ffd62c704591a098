//! Replicated writes side by side in one run: direct Dovecot, tandem with
//! one node, tandem with three nodes (each in front of its own Dovecot, all
//! on this machine). APPEND of 4 KiB and 1 MiB and STORE of one flag, with 1
//! and 16 clients; rounds alternate the configurations so machine noise hits
//! all of them. Also tandem's own CPU per replicated APPEND (the threads of
//! the nodes' runtimes; the Dovecots and the bench's clients excluded).
//!
//! Run: `cargo bench -p tandem-proxy --bench replicated` (or `make bench`).
//! `BENCH_SECONDS` sets the time per round (default 3), `BENCH_ROUNDS` the
//! rounds per configuration (default 2), `BENCH_FILTER` a part of the
//! workload names to run (e.g. `1 MiB`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tandem_tests::inproc::{Cluster, THREAD_NAME};
use tandem_tests::{Dovecot, ImapClient, USER_PASSWORD};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Append4k,
    Append1m,
    Store,
    FetchHeaders,
    Select,
}

/// The mailbox the read workloads use, with this many messages.
const SEEDED: &str = "seeded";
const SEEDED_MESSAGES: u32 = 1000;

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Append4k => "APPEND 4 KiB",
            Workload::Append1m => "APPEND 1 MiB",
            Workload::Store => "STORE +/-FLAGS one message",
            Workload::FetchHeaders => "FETCH 1:1000 headers",
            Workload::Select => "EXAMINE 1,000 messages",
        }
    }
}

fn message(size: usize, n: u64) -> Vec<u8> {
    let mut m = format!("From: bench@example.org\r\nSubject: bench {n}\r\n\r\n").into_bytes();
    while m.len() + 2 < size {
        m.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n");
    }
    m.truncate(size - 2);
    m.extend_from_slice(b"\r\n");
    m
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `clients` threads for `seconds`; each on its own mailbox so STORE
/// and APPEND from different clients do not queue on one mailbox lock.
fn round(addr: SocketAddr, w: Workload, clients: usize, seconds: f64) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            std::thread::spawn(move || {
                let reading = matches!(w, Workload::FetchHeaders | Workload::Select);
                let user = if i % 2 == 0 || reading {
                    "alice"
                } else {
                    "bob"
                };
                let mut c = ImapClient::login(addr, user, USER_PASSWORD);
                if matches!(w, Workload::FetchHeaders | Workload::Select) {
                    return reads(&mut c, w, deadline);
                }
                let mailbox = format!("bench{i}");
                let _ = c.command(&format!("CREATE {mailbox}")).unwrap();
                let body = message(
                    if w == Workload::Append1m {
                        1 << 20
                    } else {
                        4096
                    },
                    i as u64,
                );
                if w == Workload::Store {
                    if c.command(&format!("SELECT {mailbox}")).unwrap().exists() == Some(0) {
                        c.append(&mailbox, &body).unwrap().ok();
                    }
                    c.command(&format!("SELECT {mailbox}")).unwrap().ok();
                }
                let mut lat = Vec::new();
                let mut k = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match w {
                        Workload::Append4k | Workload::Append1m => {
                            c.append(&mailbox, &body).unwrap().ok();
                        }
                        Workload::Store | Workload::FetchHeaders | Workload::Select => {
                            let sign = if k % 2 == 0 { '+' } else { '-' };
                            c.command(&format!("STORE 1 {sign}FLAGS.SILENT (\\Flagged)"))
                                .unwrap()
                                .ok();
                        }
                    }
                    lat.push(t.elapsed());
                    k += 1;
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

/// The read workloads on alice's seeded mailbox, until `deadline`.
fn reads(c: &mut ImapClient, w: Workload, deadline: Instant) -> Vec<Duration> {
    let mut lat = Vec::new();
    c.command(&format!("EXAMINE {SEEDED}")).unwrap().ok();
    while Instant::now() < deadline {
        let t = Instant::now();
        if w == Workload::Select {
            let r = c.command(&format!("EXAMINE {SEEDED}")).unwrap().ok();
            assert_eq!(r.exists(), Some(SEEDED_MESSAGES));
        } else {
            let r = c
                .command("UID FETCH 1:* (UID BODY.PEEK[HEADER])")
                .unwrap()
                .ok();
            assert_eq!(r.untagged.len(), SEEDED_MESSAGES as usize);
        }
        lat.push(t.elapsed());
    }
    lat
}

/// Puts the read workloads' messages into alice's `seeded` mailbox
/// through `addr`, 50 per MULTIAPPEND.
fn seed(addr: SocketAddr) {
    let mut c = ImapClient::login(addr, "alice", USER_PASSWORD);
    let _ = c.command(&format!("CREATE {SEEDED}")).unwrap();
    let mut n = 0;
    while n < SEEDED_MESSAGES {
        let mut bytes = format!("s APPEND {SEEDED}").into_bytes();
        for _ in 0..50 {
            let m = message(2048, u64::from(n));
            bytes.extend_from_slice(format!(" {{{}+}}\r\n", m.len()).as_bytes());
            bytes.extend_from_slice(&m);
            n += 1;
        }
        bytes.extend_from_slice(b"\r\n");
        c.write(&bytes).unwrap();
        c.finish("s").unwrap().ok();
    }
}

/// CPU seconds used so far by the threads of the node runtimes.
fn node_cpu_seconds() -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(THREAD_NAME) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // After the comm: state is field 3, utime 14 and stime 15.
        let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
        let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        total += utime + stime;
    }
    total as f64 / ticks
}

/// CPU seconds used so far by a Dovecot: its master, its running children,
/// and the children it has reaped (`cutime` + `cstime`), so a session that
/// ends between two readings still counts.
fn dovecot_cpu_seconds(master: u32) -> f64 {
    // (ppid, own utime + stime, reaped children's cutime + cstime)
    let read = |pid: &str| -> Option<(u32, u64, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let close = stat.rfind(')')?;
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some((f.get(1)?.parse().ok()?, n(11) + n(12), n(13) + n(14)))
    };
    let Some((_, own, reaped)) = read(&master.to_string()) else {
        return 0.0;
    };
    let mut ticks = own + reaped;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some((ppid, own, _)) = read(&e.file_name().to_string_lossy()) {
                if ppid == master {
                    ticks += own;
                }
            }
        }
    }
    ticks as f64 / 100.0 // USER_HZ
}

struct Stats {
    lat: Vec<Duration>,
    seconds: f64,
    cpu: f64,
    backend_cpu: f64,
}

fn main() {
    // `cargo bench` passes `--bench`; a plain test run passes nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let direct = Dovecot::start();
    let one = Cluster::start(1);
    let three = Cluster::start(3);
    for addr in [direct.imap_addr(), one.nodes[0].imap, three.nodes[0].imap] {
        seed(addr);
    }
    let configs: [(&str, SocketAddr, Vec<u32>); 3] = [
        (
            "direct Dovecot",
            direct.imap_addr(),
            direct.pid().into_iter().collect(),
        ),
        (
            "tandem 1 node",
            one.nodes[0].imap,
            one.dovecots.iter().filter_map(|d| d.pid()).collect(),
        ),
        (
            "tandem 3 nodes",
            three.nodes[0].imap,
            three.dovecots.iter().filter_map(|d| d.pid()).collect(),
        ),
    ];
    let backend_cpu = |pids: &[u32]| pids.iter().map(|&p| dovecot_cpu_seconds(p)).sum::<f64>();
    println!(
        "{:<28} {:>3} {:<16} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
        "workload",
        "cl",
        "configuration",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "vs direct",
        "tandem cpu",
        "backend cpu"
    );
    println!("{:>104}", "(CPU: ms per op, all nodes)");
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    for w in [
        Workload::FetchHeaders,
        Workload::Select,
        Workload::Append4k,
        Workload::Store,
        Workload::Append1m,
    ] {
        if !w.name().contains(filter.as_str()) {
            continue;
        }
        for clients in [1usize, 16] {
            let mut stats: Vec<Stats> = (0..3)
                .map(|_| Stats {
                    lat: Vec::new(),
                    seconds: 0.0,
                    cpu: 0.0,
                    backend_cpu: 0.0,
                })
                .collect();
            for _ in 0..rounds {
                for (i, (_, addr, pids)) in configs.iter().enumerate() {
                    let cpu0 = node_cpu_seconds();
                    let b0 = backend_cpu(pids);
                    let t = Instant::now();
                    let lat = round(*addr, w, clients, seconds);
                    stats[i].seconds += t.elapsed().as_secs_f64();
                    stats[i].cpu += node_cpu_seconds() - cpu0;
                    // Sessions end with the round; the master reaps them.
                    std::thread::sleep(Duration::from_millis(200));
                    stats[i].backend_cpu += backend_cpu(pids) - b0;
                    stats[i].lat.extend(lat);
                }
            }
            let direct_rate = stats[0].lat.len() as f64 / stats[0].seconds;
            for (i, (name, _, _)) in configs.iter().enumerate() {
                let s = &mut stats[i];
                s.lat.sort();
                let rate = s.lat.len() as f64 / s.seconds;
                let cpu = if i == 0 || s.lat.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.2}", s.cpu * 1000.0 / s.lat.len() as f64)
                };
                let backend = if s.lat.is_empty() {
                    0.0
                } else {
                    s.backend_cpu * 1000.0 / s.lat.len() as f64
                };
                println!(
                    "{:<28} {:>3} {:<16} {:>9.0} {:>9.2} {:>9.2} {:>9.0}% {:>10} {:>10.2}",
                    w.name(),
                    clients,
                    name,
                    rate,
                    percentile(&s.lat, 0.5).as_secs_f64() * 1000.0,
                    percentile(&s.lat, 0.99).as_secs_f64() * 1000.0,
                    100.0 * rate / direct_rate,
                    cpu,
                    backend
                );
            }
        }
    }
}
