//! # tandem-bench
//!
//! The side-by-side benchmark (`make bench`): what a replicated tandem
//! costs and gains next to a single Dovecot, Dovecot's own proxy, and
//! Dovecot's own (asynchronous) replication, measured the same way in one
//! run on one machine. The servers are started with the test harness
//! (`tandem-tests`); the driver is `src/bin/bench.rs`.
//!
//! - [`procs`]: CPU time and peak memory of process trees, from /proc.
//! - [`report`]: the table, `bench/results.json` and the PNG chart.
//!
//! Every configuration is a [`Target`]: where clients connect, and which
//! processes are the front (tandem, or Dovecot's proxy) and which the
//! backends. Rounds of each workload alternate the configurations so the
//! machine's noise hits all of them alike.

pub mod procs;
pub mod report;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tandem_tests::{ImapClient, Status, USER_PASSWORD};

/// One configuration under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in the report.
    pub name: String,
    /// Where the clients connect.
    pub addr: SocketAddr,
    /// The front processes (tandem nodes, witnesses included, or Dovecot's
    /// proxy); empty when clients talk to the backend itself.
    pub front: Vec<u32>,
    /// The backends' master processes.
    pub backends: Vec<u32>,
    /// Whether its writes are replicated (the write workloads' targets
    /// compare these with direct Dovecot).
    pub replicated: bool,
}

/// What the clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// APPEND of a 4 KiB message, each client to its own mailbox.
    Append4k,
    /// APPEND of a 1 MiB message.
    Append1m,
    /// `STORE 1:1000 +FLAGS.SILENT (\Flagged)`, then `-FLAGS`, in turn.
    Store1000,
    /// `FETCH 1:1000 (UID BODY.PEEK[HEADER])` of the large mailbox.
    Fetch1000,
    /// `SELECT` of the 10,000-message mailbox.
    Select10k,
}

/// The mailbox of the read workloads (alice's) and its size.
pub const BIG: &str = "big";
/// Messages in [`BIG`].
pub const BIG_MESSAGES: u32 = 10_000;
/// The mailbox of the STORE workload (alice's and bob's) and its size.
pub const FLAGS: &str = "flags";
/// Messages in [`FLAGS`].
pub const FLAGS_MESSAGES: u32 = 1_000;

impl Workload {
    /// Every workload, reads first.
    pub const ALL: [Workload; 5] = [
        Workload::Fetch1000,
        Workload::Select10k,
        Workload::Append4k,
        Workload::Store1000,
        Workload::Append1m,
    ];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Append4k => "APPEND 4 KiB",
            Workload::Append1m => "APPEND 1 MiB",
            Workload::Store1000 => "STORE flags of 1,000",
            Workload::Fetch1000 => "FETCH 1,000 headers",
            Workload::Select10k => "SELECT 10,000",
        }
    }

    /// Whether it changes mail (and so goes through the replicated log).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Workload::Append4k | Workload::Append1m | Workload::Store1000
        )
    }
}

/// A message of about `size` bytes whose subject carries `n`.
pub fn message(size: usize, n: u64) -> Vec<u8> {
    let mut m = format!("From: bench@example.org\r\nSubject: bench {n}\r\n\r\n").into_bytes();
    while m.len() + 2 < size {
        m.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n");
    }
    m.truncate(size - 2);
    m.extend_from_slice(b"\r\n");
    m
}

/// The `p` quantile (0..=1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Fills alice's [`BIG`] and alice's and bob's [`FLAGS`] through `addr`,
/// 50 messages per MULTIAPPEND. A mailbox already full is left alone.
pub fn seed(addr: SocketAddr) -> Result<(), String> {
    let fill = |user: &str, mailbox: &str, count: u32, size: usize| -> Result<(), String> {
        let mut c = ImapClient::login(addr, user, USER_PASSWORD);
        let _ = c.command(&format!("CREATE {mailbox}"));
        let r = c
            .command(&format!("EXAMINE {mailbox}"))
            .map_err(|e| e.to_string())?;
        let mut n = r.exists().unwrap_or(0);
        while n < count {
            let mut bytes = format!("s APPEND {mailbox}").into_bytes();
            for _ in 0..50.min(count - n) {
                let m = message(size, u64::from(n));
                bytes.extend_from_slice(format!(" {{{}+}}\r\n", m.len()).as_bytes());
                bytes.extend_from_slice(&m);
                n += 1;
            }
            bytes.extend_from_slice(b"\r\n");
            c.write(&bytes).map_err(|e| e.to_string())?;
            let r = c.finish("s").map_err(|e| e.to_string())?;
            if r.status != Status::Ok {
                return Err(format!("seeding {user}/{mailbox}: {}", r.text));
            }
        }
        Ok(())
    };
    fill("alice", BIG, BIG_MESSAGES, 1024)?;
    fill("alice", FLAGS, FLAGS_MESSAGES, 1024)?;
    fill("bob", FLAGS, FLAGS_MESSAGES, 1024)
}

/// What one client saw in one round.
#[derive(Debug, Default)]
struct ClientRound {
    lat: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

/// One round of `w` by `clients` clients against `addr` for `seconds`.
fn round(addr: SocketAddr, w: Workload, clients: usize, seconds: f64) -> ClientRound {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..clients)
        .map(|i| std::thread::spawn(move || client(addr, w, i, deadline)))
        .collect();
    let mut out = ClientRound::default();
    for h in handles {
        match h.join() {
            Ok(r) => {
                out.lat.extend(r.lat);
                out.errors += r.errors;
                out.first_error = out.first_error.or(r.first_error);
            }
            Err(_) => {
                out.errors += 1;
                out.first_error.get_or_insert("a client panicked".into());
            }
        }
    }
    out
}

fn client(addr: SocketAddr, w: Workload, i: usize, deadline: Instant) -> ClientRound {
    let mut out = ClientRound::default();
    let user = if i % 2 == 0 || !w.writes() {
        "alice"
    } else {
        "bob"
    };
    let mut c = match ImapClient::connect(addr) {
        Ok(c) => c,
        Err(e) => {
            out.errors += 1;
            out.first_error = Some(format!("connect: {e}"));
            return out;
        }
    };
    let _ = c.command(&format!("LOGIN {user} {USER_PASSWORD}"));
    let mailbox = format!("bench{i}");
    let body = message(
        if w == Workload::Append1m {
            1 << 20
        } else {
            4096
        },
        i as u64,
    );
    let prepare = match w {
        Workload::Append4k | Workload::Append1m => {
            let _ = c.command(&format!("CREATE {mailbox}"));
            None
        }
        Workload::Store1000 => Some(format!("SELECT {FLAGS}")),
        Workload::Fetch1000 => Some(format!("EXAMINE {BIG}")),
        Workload::Select10k => None,
    };
    if let Some(p) = prepare {
        match c.command(&p) {
            Ok(r) if r.status == Status::Ok => {}
            other => {
                out.errors += 1;
                out.first_error = Some(format!("{p}: {other:?}"));
                return out;
            }
        }
    }
    let mut k = 0u64;
    while Instant::now() < deadline {
        let t = Instant::now();
        let r = match w {
            Workload::Append4k | Workload::Append1m => c.append(&mailbox, &body),
            Workload::Store1000 => {
                let sign = if k % 2 == 0 { '+' } else { '-' };
                c.command(&format!(
                    "STORE 1:{FLAGS_MESSAGES} {sign}FLAGS.SILENT (\\Flagged)"
                ))
            }
            Workload::Fetch1000 => c.command("FETCH 1:1000 (UID BODY.PEEK[HEADER])"),
            Workload::Select10k => c.command(&format!("SELECT {BIG}")),
        };
        let elapsed = t.elapsed();
        k += 1;
        let problem = match &r {
            Err(e) => Some(e.to_string()),
            Ok(r) if r.status != Status::Ok => Some(format!("{:?} {}", r.status, r.text)),
            Ok(r) if w == Workload::Fetch1000 && r.untagged.len() < 1000 => {
                Some(format!("FETCH returned {} messages", r.untagged.len()))
            }
            Ok(r) if w == Workload::Select10k && r.exists() != Some(BIG_MESSAGES) => {
                Some(format!("SELECT said EXISTS {:?}", r.exists()))
            }
            Ok(_) => None,
        };
        match problem {
            None => out.lat.push(elapsed),
            Some(p) => {
                out.errors += 1;
                out.first_error.get_or_insert(p);
                if r.is_err() {
                    break;
                }
            }
        }
    }
    out
}

/// The measurements of one workload with some clients on one target,
/// summed over its rounds.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    /// Every successful operation's latency.
    pub lat: Vec<Duration>,
    /// Operations that failed.
    pub errors: u64,
    /// The first failure, to show.
    pub first_error: Option<String>,
    /// Wall-clock seconds of the rounds.
    pub seconds: f64,
    /// CPU seconds of the front processes.
    pub front_cpu: f64,
    /// CPU seconds of the backends (all their processes).
    pub backend_cpu: f64,
    /// Largest resident set of one front process, bytes.
    pub front_rss: u64,
    /// Largest resident set of one backend process, bytes.
    pub backend_rss: u64,
}

/// Runs one round on `t` and adds what it measured to `s`.
pub fn measure(t: &Target, w: Workload, clients: usize, seconds: f64, s: &mut Sample) {
    let sampler = procs::RssSampler::start(
        vec![t.front.clone(), t.backends.clone()],
        Duration::from_millis(250),
    );
    let (f0, b0) = (
        procs::cpu_seconds(&t.front),
        procs::cpu_seconds(&t.backends),
    );
    let started = Instant::now();
    let r = round(t.addr, w, clients, seconds);
    s.seconds += started.elapsed().as_secs_f64();
    s.front_cpu += procs::cpu_seconds(&t.front) - f0;
    // Sessions end with the round; their master reaps them and counts
    // their time.
    std::thread::sleep(Duration::from_millis(200));
    s.backend_cpu += procs::cpu_seconds(&t.backends) - b0;
    let peaks = sampler.finish();
    s.front_rss = s.front_rss.max(peaks[0]);
    s.backend_rss = s.backend_rss.max(peaks[1]);
    s.lat.extend(r.lat);
    s.errors += r.errors;
    if s.first_error.is_none() {
        s.first_error = r.first_error;
    }
}

/// How long after an APPEND was acknowledged on `write` the message could
/// be read on every one of `read`, `samples` times. The first element of
/// each pair is that delay; the second whether the message was there at
/// the first look.
pub fn visibility(
    write: SocketAddr,
    read: &[SocketAddr],
    samples: usize,
    user: &str,
) -> Result<Vec<(Duration, bool)>, String> {
    const MAILBOX: &str = "lag";
    let mut w = ImapClient::login(write, user, USER_PASSWORD);
    let _ = w.command(&format!("CREATE {MAILBOX}"));
    let mut readers: Vec<ImapClient> = read
        .iter()
        .map(|&a| ImapClient::login(a, user, USER_PASSWORD))
        .collect();
    // The mailbox must exist everywhere before anything is timed.
    let deadline = Instant::now() + Duration::from_secs(60);
    for r in &mut readers {
        while !r
            .command(&format!("EXAMINE {MAILBOX}"))
            .is_ok_and(|x| x.status == Status::Ok)
        {
            if Instant::now() > deadline {
                return Err("the lag mailbox never reached every node".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut out = Vec::new();
    for k in 0..samples {
        let marker = format!("lag{}x{k}", std::process::id());
        let body = format!("From: bench@example.org\r\nSubject: {marker}\r\n\r\nlag\r\n");
        let r = w
            .append(MAILBOX, body.as_bytes())
            .map_err(|e| e.to_string())?;
        if r.status != Status::Ok {
            return Err(format!("APPEND: {}", r.text));
        }
        let acked = Instant::now();
        let mut first_look = true;
        for r in &mut readers {
            loop {
                r.command(&format!("EXAMINE {MAILBOX}"))
                    .map_err(|e| e.to_string())?;
                let found = r
                    .command(&format!("UID SEARCH SUBJECT {marker}"))
                    .map_err(|e| e.to_string())?
                    .lines()
                    .iter()
                    .any(|l| l.starts_with("* SEARCH ") && l.len() > "* SEARCH ".len());
                if found {
                    break;
                }
                first_look = false;
                if acked.elapsed() > Duration::from_secs(60) {
                    return Err(format!("{marker} never became readable"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        out.push((acked.elapsed(), first_look));
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(out)
}

/// How long after an APPEND and after a flag change were acknowledged on
/// `write` a session on `read`, in IDLE on the same mailbox, was told of
/// them (`* n EXISTS`, `* n FETCH (FLAGS ...)`), `samples` times each: what
/// a client of another node waits for, Dovecot's own IDLE notification
/// delay included (the same two sessions on one Dovecot show that alone).
pub fn idle_notification(
    write: SocketAddr,
    read: SocketAddr,
    samples: usize,
    user: &str,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    const MAILBOX: &str = "idle";
    let e = |e: std::io::Error| e.to_string();
    let mut w = ImapClient::login(write, user, USER_PASSWORD);
    let _ = w.command(&format!("CREATE {MAILBOX}"));
    let mut r = ImapClient::login(read, user, USER_PASSWORD);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut exists = loop {
        let x = r.command(&format!("SELECT {MAILBOX}")).map_err(e)?;
        if x.status == Status::Ok {
            break x.exists().unwrap_or(0);
        }
        if Instant::now() > deadline {
            return Err("the idle mailbox never reached the reader's node".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    w.command(&format!("SELECT {MAILBOX}")).map_err(e)?;
    r.set_read_timeout(Duration::from_secs(30)).map_err(e)?;
    let (mut appends, mut flags) = (Vec::new(), Vec::new());
    for k in 0..samples {
        r.write(format!("i{k} IDLE\r\n").as_bytes()).map_err(e)?;
        wait_line(&mut r, |l| l.starts_with('+'))?;
        let body = format!("From: bench@example.org\r\nSubject: idle {k}\r\n\r\nidle\r\n");
        let a = w.append(MAILBOX, body.as_bytes()).map_err(e)?;
        if a.status != Status::Ok {
            return Err(format!("APPEND: {}", a.text));
        }
        let acked = Instant::now();
        exists += 1;
        let want = format!("* {exists} EXISTS");
        wait_line(&mut r, |l| l == want)?;
        appends.push(acked.elapsed());
        let s = w
            .command(&format!("STORE {exists} +FLAGS.SILENT (\\Flagged)"))
            .map_err(e)?;
        if s.status != Status::Ok {
            return Err(format!("STORE: {}", s.text));
        }
        let acked = Instant::now();
        let want = format!("* {exists} FETCH");
        wait_line(&mut r, |l| l.starts_with(&want) && l.contains("\\Flagged"))?;
        flags.push(acked.elapsed());
        r.write(b"DONE\r\n").map_err(e)?;
        wait_line(&mut r, |l| l.starts_with(&format!("i{k} ")))?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((appends, flags))
}

/// Reads responses until one (its first line) satisfies `want`.
fn wait_line(c: &mut ImapClient, want: impl Fn(&str) -> bool) -> Result<(), String> {
    loop {
        let r = c.read_response().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&r);
        if want(text.lines().next().unwrap_or("").trim_end()) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_size_asked() {
        for size in [1024, 4096, 1 << 20] {
            let m = message(size, 7);
            assert_eq!(m.len(), size);
            assert!(m.ends_with(b"\r\n"));
        }
    }

    #[test]
    fn percentiles_pick_from_the_sorted_list() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
