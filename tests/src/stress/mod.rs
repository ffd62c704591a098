//! The randomized stress with a client-side model (issue #20): N sessions
//! of one user (or of two users) doing random APPEND, FETCH, STORE,
//! EXPUNGE, UID EXPUNGE, SELECT, SEARCH, COPY, MOVE, IDLE, NOOP and now and
//! then LOGOUT, each a thread with its own seeded generator, against
//! Dovecot directly (the control), one tandem node, or three (sessions
//! spread over them). Every response is checked against what its session
//! was told ([`model`]); a three-node session sees other nodes' changes
//! once its node applied them, and that is fine: the model checks only
//! that what each session is told is consistent.
//!
//! - [`model`]: what a session was told and the rules (pure);
//! - [`parse`]: the responses the model reads (pure);
//! - [`workload`]: one session's thread.

pub mod model;
pub mod parse;
pub mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::TandemCluster;
use crate::dovecot::Dovecot;
use crate::imap::ImapClient;
use crate::USER_PASSWORD;
use model::{Event, Registry, Session, Violation};

/// The mailboxes the sessions use (INBOX and two more, for COPY, MOVE and
/// SELECT changes).
pub const MAILBOXES: [&str; 3] = ["INBOX", "Box1", "Box2"];

/// Where the sessions connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One Dovecot, no tandem: the control.
    Direct,
    /// A three-node tandem cluster, every session through node 1 (the
    /// leader or not, as the election went).
    OneNode,
    /// A three-node tandem cluster, every session through the leader.
    Leader,
    /// A three-node tandem cluster, every session through a follower
    /// (each mutation forwarded to the leader).
    Follower,
    /// A three-node tandem cluster, sessions spread over its nodes.
    ThreeNodes,
    /// A cluster of one node: the proxy's own cost, with no other node's
    /// backend on the same cores.
    Single,
    /// Servers already running (`stress --against`), sessions spread over
    /// them: for looking at a cluster while it is stressed.
    Against,
}

impl Mode {
    /// The name the `stress` binary takes.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::OneNode => "one-node",
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Single => "single",
            Mode::ThreeNodes => "three-nodes",
            Mode::Against => "against",
        }
    }

    /// The mode named `name`.
    pub fn parse(name: &str) -> Option<Mode> {
        [
            Mode::Direct,
            Mode::OneNode,
            Mode::Leader,
            Mode::Follower,
            Mode::ThreeNodes,
            Mode::Single,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }
}

/// How a stress runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where.
    pub mode: Mode,
    /// How long the sessions run.
    pub duration: Duration,
    /// Seed of every session's generator.
    pub seed: u64,
    /// Sessions per user.
    pub sessions: usize,
    /// alice only (1) or alice and bob (2).
    pub users: usize,
    /// Keep every session's events (for replays; memory grows with time).
    pub record: bool,
    /// The `tandem` binary (default: the harness's search).
    pub binary: Option<PathBuf>,
    /// The servers of [`Mode::Against`].
    pub against: Vec<SocketAddr>,
    /// Give the sessions' node (its tandem and its backend, or the direct
    /// Dovecot) and this process CPU 0, and the other nodes CPU 1: each
    /// node on cores of its own, as on a real cluster (Linux only).
    pub pin: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Direct,
            duration: Duration::from_secs(20),
            seed: 1,
            sessions: 5,
            users: 1,
            record: false,
            binary: None,
            against: Vec::new(),
            pin: false,
        }
    }
}

/// What a stress found.
#[derive(Debug, Default)]
pub struct Summary {
    /// The mode's name.
    pub mode: &'static str,
    /// The seed.
    pub seed: u64,
    /// Sessions (all users).
    pub sessions: usize,
    /// How long the sessions ran.
    pub elapsed: Duration,
    /// Commands answered.
    pub ops: u64,
    /// LOGINs answered OK.
    pub logins: u64,
    /// Connections that could not be made.
    pub connect_failures: u64,
    /// Tagged answers by status.
    pub answers: BTreeMap<String, u64>,
    /// Time from command to tagged answer by command kind (all
    /// sessions): count and total.
    pub time: BTreeMap<&'static str, (u64, Duration)>,
    /// The nodes the sessions went through, and their roles at the start.
    pub through: String,
    /// The first node's duration histograms at the end (tandem modes):
    /// name, count, mean in seconds.
    pub node_times: Vec<(String, u64, f64)>,
    /// Every violation, with its session's last lines.
    pub violations: Vec<Violation>,
    /// Each session's name and events, when recorded.
    pub transcripts: Vec<(String, Vec<Event>)>,
}

impl Summary {
    /// Commands answered per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(0.001)
    }

    /// Violations by kind.
    pub fn kinds(&self) -> BTreeMap<&'static str, usize> {
        let mut kinds = BTreeMap::new();
        for v in &self.violations {
            *kinds.entry(v.kind).or_default() += 1;
        }
        kinds
    }

    /// The one-line result.
    pub fn line(&self) -> String {
        format!(
            "stress {}{}: seed {}, {} sessions, {:.1} s, {} ops ({:.0} ops/s), {} logins, answers {:?}, {} violations {:?}",
            self.mode,
            if self.through.is_empty() {
                String::new()
            } else {
                format!(" through {}", self.through)
            },
            self.seed,
            self.sessions,
            self.elapsed.as_secs_f64(),
            self.ops,
            self.ops_per_sec(),
            self.logins,
            self.answers,
            self.violations.len(),
            self.kinds()
        )
    }

    /// Where the sessions' time went: per command kind, how many, the mean
    /// time to the tagged answer, and the share of all command time.
    pub fn time_table(&self) -> String {
        let total: Duration = self.time.values().map(|(_, t)| *t).sum();
        let mut rows: Vec<_> = self.time.iter().collect();
        rows.sort_by_key(|(_, (_, t))| std::cmp::Reverse(*t));
        let mut out = format!("stress {}: time by command", self.mode);
        for (kind, (n, t)) in rows {
            out.push_str(&format!(
                "\n  {kind:<12} {n:>7} x {:>7.2} ms = {:>4.1}%",
                t.as_secs_f64() * 1000.0 / (*n).max(1) as f64,
                100.0 * t.as_secs_f64() / total.as_secs_f64().max(1e-9)
            ));
        }
        for (name, n, mean) in &self.node_times {
            out.push_str(&format!("\n  node 1: {name} {n} x {:.2} ms", mean * 1000.0));
        }
        out
    }

    /// The line, then up to `per_kind` examples of each kind of violation.
    pub fn report(&self, per_kind: usize) -> String {
        let mut out = self.line();
        for kind in self.kinds().keys() {
            for v in self
                .violations
                .iter()
                .filter(|v| v.kind == *kind)
                .take(per_kind)
            {
                out.push_str(&format!("\n{v}"));
            }
        }
        out
    }
}

/// A xorshift generator: reproducible from the printed seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Starts the servers `opts.mode` needs, runs the stress, stops them.
pub fn run(opts: &Options) -> Summary {
    match opts.mode {
        Mode::Direct => {
            let dovecot = Dovecot::start();
            if opts.pin {
                pin::tree(std::process::id(), 0);
                dovecot.pid().into_iter().for_each(|p| pin::tree(p, 0));
            }
            run_against(&[dovecot.imap_addr()], opts)
        }
        Mode::Against => run_against(&opts.against, opts),
        Mode::OneNode | Mode::Leader | Mode::Follower | Mode::ThreeNodes | Mode::Single => {
            let nodes = if opts.mode == Mode::Single { 1 } else { 3 };
            let mut builder = TandemCluster::builder().nodes(nodes);
            if let Some(b) = &opts.binary {
                builder = builder.binary(b);
            }
            let cluster = builder.start();
            let leader = wait_leader(&cluster);
            let all = cluster.ids();
            let ids = match opts.mode {
                Mode::OneNode => vec![all[0]],
                Mode::Leader => vec![leader.unwrap_or(all[0])],
                Mode::Follower => all
                    .iter()
                    .copied()
                    .filter(|&i| Some(i) != leader)
                    .take(1)
                    .collect(),
                _ => all,
            };
            let addrs: Vec<SocketAddr> = ids.iter().map(|&id| cluster.imap_addr(id)).collect();
            if opts.pin {
                pin::tree(std::process::id(), 0);
                for id in cluster.ids() {
                    let cpu = usize::from(id != ids[0]);
                    let pids = [cluster.pid(id), cluster.backend(id).pid()];
                    pids.into_iter().flatten().for_each(|p| pin::tree(p, cpu));
                }
            }
            let mut summary = run_against(&addrs, opts);
            summary.node_times = node_times(cluster.metrics_addr(ids[0]));
            let role = |id| {
                if Some(id) == leader {
                    "leader"
                } else {
                    "follower"
                }
            };
            summary.through = ids
                .iter()
                .map(|&id| format!("node {id} ({})", role(id)))
                .collect::<Vec<_>>()
                .join(", ");
            if cluster.leader() != leader {
                summary
                    .through
                    .push_str(&format!("; the leader changed to {:?}", cluster.leader()));
            }
            if !summary.violations.is_empty() {
                for &id in &ids {
                    let log = cluster.log(id);
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    eprintln!("--- node {id} log tail ---");
                    for l in tail.into_iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
            summary
        }
    }
}

/// Runs the stress against servers already running: session i of each
/// user connects to `addrs[i % addrs.len()]`. Creates the mailboxes first
/// (through `addrs[0]`) and waits until every address shows them.
pub fn run_against(addrs: &[SocketAddr], opts: &Options) -> Summary {
    let users: Vec<&'static str> = ["alice", "bob"]
        .into_iter()
        .take(opts.users.max(1))
        .collect();
    for user in &users {
        prepare(addrs, user);
    }
    let reg = Arc::new(Mutex::new(Registry::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut threads = Vec::new();
    for user in &users {
        for i in 0..opts.sessions {
            let worker = workload::Worker::new(
                user,
                i,
                addrs[i % addrs.len()],
                opts.seed,
                reg.clone(),
                opts.record,
            );
            let stop = stop.clone();
            let name = format!("{user}/{i}");
            threads.push((name, std::thread::spawn(move || worker.run(&stop))));
        }
    }
    std::thread::sleep(opts.duration);
    stop.store(true, Ordering::Relaxed);
    let mut summary = Summary {
        mode: opts.mode.name(),
        seed: opts.seed,
        sessions: threads.len(),
        ..Summary::default()
    };
    for (name, t) in threads {
        let Ok(out) = t.join() else {
            summary.violations.push(Violation {
                kind: "session thread panicked",
                session: name,
                detail: String::new(),
                context: Vec::new(),
            });
            continue;
        };
        summary.ops += out.ops;
        summary.logins += out.logins;
        summary.connect_failures += out.connect_failures;
        for (k, v) in out.answers {
            *summary.answers.entry(k).or_default() += v;
        }
        for (k, (n, t)) in out.time {
            let e = summary.time.entry(k).or_default();
            e.0 += n;
            e.1 += t;
        }
        summary.violations.extend(out.violations);
        if let Some(events) = out.events {
            summary.transcripts.push((name, events));
        }
    }
    summary.elapsed = started.elapsed();
    let reg = reg.lock().unwrap_or_else(|e| e.into_inner());
    summary.violations.extend(reg.finish());
    summary
}

/// CPU affinity for [`Options::pin`], with `taskset` (util-linux).
mod pin {
    /// Puts process `pid`, every thread of it and every process below it
    /// on CPU `cpu`.
    pub fn tree(pid: u32, cpu: usize) {
        let mut todo = vec![pid];
        while let Some(p) = todo.pop() {
            let _ = std::process::Command::new("taskset")
                .args(["-a", "-p", "-c", &cpu.to_string(), &p.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            todo.extend(children(p));
        }
    }

    /// The processes whose parent is `pid`.
    fn children(pid: u32) -> Vec<u32> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                        == Some(pid)
                })
            })
            .collect()
    }
}

/// The leader, once `/status` names one (up to 10 s).
fn wait_leader(cluster: &TandemCluster) -> Option<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leader = cluster.leader();
        if leader.is_some() || Instant::now() > deadline {
            return leader;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `*_duration_seconds` histograms of a node's `/metrics`: name,
/// count and mean (empty when the node does not answer).
fn node_times(addr: SocketAddr) -> Vec<(String, u64, f64)> {
    use std::io::{Read, Write};
    let mut text = String::new();
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return Vec::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    if s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").is_err()
        || s.read_to_string(&mut text).is_err()
    {
        return Vec::new();
    }
    let value = |suffix: &str| -> BTreeMap<String, f64> {
        text.lines()
            .filter_map(|l| {
                let (name, v) = l.rsplit_once(' ')?;
                let base = name.split('{').next()?.strip_suffix(suffix)?;
                base.ends_with("_duration_seconds")
                    .then(|| Some((base.to_string(), v.parse().ok()?)))?
            })
            .collect()
    };
    let sums = value("_sum");
    value("_count")
        .into_iter()
        .map(|(name, n)| {
            let sum = sums.get(&name).copied().unwrap_or(0.0);
            (name, n as u64, sum / n.max(1.0))
        })
        .collect()
}

/// Creates Box1 and Box2 and selects INBOX (tandem registers it) as
/// `user`, then waits (up to 10 s) until every address can select them.
fn prepare(addrs: &[SocketAddr], user: &str) {
    let mut c = ImapClient::login(addrs[0], user, USER_PASSWORD);
    for m in &MAILBOXES[1..] {
        let _ = c.command(&format!("CREATE {m}"));
    }
    let _ = c.command("SELECT INBOX");
    let _ = c.command("LOGOUT");
    let deadline = Instant::now() + Duration::from_secs(10);
    for &addr in addrs {
        let mut c = ImapClient::login(addr, user, USER_PASSWORD);
        for m in MAILBOXES {
            while c.command(&format!("EXAMINE {m}")).ok().map(|r| r.status)
                != Some(crate::Status::Ok)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = c.command("LOGOUT");
    }
}

/// Feeds one recorded session to a fresh model (with a registry of its
/// own: the checks across sessions are left out) and returns what it
/// finds. The name must be the one it was recorded under (`alice/3`).
pub fn replay(name: &str, events: &[Event]) -> Vec<Violation> {
    let (user, index) = name.split_once('/').unwrap_or((name, "0"));
    let mut session = Session::new(name, user, &format!("$s{index}"));
    let mut reg = Registry::default();
    for e in events {
        session.feed(e, &mut reg);
    }
    session.take_violations()
}
