//! `make bench`: tandem next to a single Dovecot, Dovecot's own proxy and
//! Dovecot's own replication, in one run on this machine.
//!
//! It starts every configuration itself (real Dovecots in temporary
//! directories, `tandem run` processes, all on 127.0.0.1), fills each with
//! the same mail, runs every workload with 1 and 16 clients in rounds that
//! alternate the configurations, then measures how soon a write is readable
//! elsewhere and how long a failover takes, and writes:
//! - the table on stdout (Markdown, as the README shows it);
//! - `<out>/results.json`: the machine, versions, date and every figure;
//! - `<out>/latency.png`: the latency distribution per configuration.
//!
//! Options: `--seconds S` per round (default 3, or `BENCH_SECONDS`),
//! `--rounds R` per configuration (default 2, or `BENCH_ROUNDS`), `--filter
//! TEXT` to run only workloads whose name contains it (or `BENCH_FILTER`),
//! `--out DIR` (default `bench`). The `tandem` binary is `$TANDEM_BIN`
//! (`make bench` builds and sets a release one).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tandem_bench::report::{self, Row};
use tandem_bench::{self as bench, Sample, Target, Workload};
use tandem_tests::dovecot_proxy::DovecotProxy;
use tandem_tests::dsync::DsyncPair;
use tandem_tests::{Dovecot, ImapClient, Status, TandemCluster, USER_PASSWORD};

struct Options {
    seconds: f64,
    rounds: usize,
    filter: String,
    out: PathBuf,
}

fn options() -> Result<Options, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut o = Options {
        seconds: env("BENCH_SECONDS")
            .map(|v| v.parse().map_err(|_| "BENCH_SECONDS: a number"))
            .transpose()?
            .unwrap_or(3.0),
        rounds: env("BENCH_ROUNDS")
            .map(|v| v.parse().map_err(|_| "BENCH_ROUNDS: a number"))
            .transpose()?
            .unwrap_or(2),
        filter: env("BENCH_FILTER").unwrap_or_default(),
        out: PathBuf::from("bench"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => o.seconds = value()?.parse().map_err(|_| "--seconds: a number")?,
            "--rounds" => o.rounds = value()?.parse().map_err(|_| "--rounds: a number")?,
            "--filter" => o.filter = value()?,
            "--out" => o.out = PathBuf::from(value()?),
            // `cargo bench` passes this.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

/// Everything under test; dropping it stops every process.
struct Setups {
    direct: Dovecot,
    proxied: (Dovecot, DovecotProxy),
    one: TandemCluster,
    three: TandemCluster,
    witness: TandemCluster,
    lossy: TandemCluster,
    dsync: DsyncPair,
}

/// Raft timing (heartbeat, election timeout min and max, ms) of the extra
/// failover measurement; the other clusters run the defaults (250, 1000,
/// 2000).
const FAST_TIMING: (u64, u64, u64) = (150, 500, 900);

/// The loss and delay of the lossy cluster's replication links.
const LOSS: f64 = 0.02;
const DELAY: Duration = Duration::from_millis(1);

fn tandem_target(name: &str, c: &TandemCluster) -> Target {
    let mail = c.mail_ids();
    let leader = c.leader();
    let at = match std::env::var("BENCH_AT").as_deref() {
        Ok("leader") => leader.filter(|l| mail.contains(l)).unwrap_or(mail[0]),
        Ok("follower") => *mail
            .iter()
            .find(|&&m| Some(m) != leader)
            .unwrap_or(&mail[0]),
        _ => mail[0],
    };
    eprintln!("bench: {name}: clients at node {at}, leader {leader:?}");
    Target {
        name: name.to_string(),
        addr: c.imap_addr(at),
        front: c.ids().iter().filter_map(|&id| c.pid(id)).collect(),
        backends: mail.iter().filter_map(|&id| c.dovecot(id).pid()).collect(),
        replicated: true,
    }
}

impl Setups {
    fn start() -> Setups {
        eprintln!("bench: starting the configurations");
        let direct = Dovecot::start();
        let backend = Dovecot::start();
        let proxy = DovecotProxy::start(&backend);
        // tandem's default log segment size, as in production.
        let one = TandemCluster::builder()
            .nodes(1)
            .log_segment_mib(32)
            .start();
        let three = TandemCluster::builder()
            .nodes(3)
            .log_segment_mib(32)
            .start();
        let witness = TandemCluster::builder()
            .nodes(2)
            .witnesses(1)
            .log_segment_mib(32)
            .start();
        let lossy = TandemCluster::builder()
            .nodes(3)
            .relay(1)
            .log_segment_mib(32)
            .start();
        let dsync = DsyncPair::start();
        Setups {
            direct,
            proxied: (backend, proxy),
            one,
            three,
            witness,
            lossy,
            dsync,
        }
    }

    fn targets(&self) -> Vec<Target> {
        let d = &self.direct;
        let (backend, proxy) = &self.proxied;
        vec![
            Target {
                name: "direct Dovecot".into(),
                addr: d.imap_addr(),
                front: Vec::new(),
                backends: d.pid().into_iter().collect(),
                replicated: false,
            },
            Target {
                name: "Dovecot proxy".into(),
                addr: proxy.imap_addr(),
                front: proxy.pid().into_iter().collect(),
                backends: backend.pid().into_iter().collect(),
                replicated: false,
            },
            tandem_target("tandem 1 node", &self.one),
            tandem_target("tandem 3 nodes", &self.three),
            tandem_target("tandem 2 + witness", &self.witness),
            tandem_target("tandem 3, 2% loss", &self.lossy),
            Target {
                name: "dsync (async)".into(),
                addr: self.dsync.primary().imap_addr(),
                front: Vec::new(),
                backends: [self.dsync.primary().pid(), self.dsync.replica().pid()]
                    .into_iter()
                    .flatten()
                    .collect(),
                replicated: true,
            },
        ]
    }
}

/// From SIGKILL of the leader to the first APPEND a survivor acknowledges,
/// `trials` times; the killed node is restarted after each.
fn failover(c: &mut TandemCluster, trials: usize) -> Vec<Result<Duration, String>> {
    let mut out = Vec::new();
    for _ in 0..trials {
        let deadline = Instant::now() + Duration::from_secs(30);
        let leader = loop {
            if let Some(l) = c.leader() {
                break Some(l);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let Some(leader) = leader else {
            out.push(Err("no leader".to_string()));
            continue;
        };
        let Some(survivor) = c.mail_ids().into_iter().find(|&i| i != leader) else {
            out.push(Err("no survivor".to_string()));
            continue;
        };
        let addr = c.imap_addr(survivor);
        let body = bench::message(4096, 1);
        let mut client = ImapClient::login(addr, "alice", USER_PASSWORD);
        let _ = client.command("CREATE failover");
        if !client
            .append("failover", &body)
            .is_ok_and(|r| r.status == Status::Ok)
        {
            out.push(Err(
                "the survivor took no APPEND before the kill".to_string()
            ));
            continue;
        }
        c.kill(leader);
        let killed = Instant::now();
        let result = loop {
            match client.append("failover", &body) {
                Ok(r) if r.status == Status::Ok => break Ok(killed.elapsed()),
                Ok(_) => {}
                Err(_) => {
                    if let Ok(mut c) = ImapClient::connect(addr) {
                        let _ = c.command(&format!("LOGIN alice {USER_PASSWORD}"));
                        client = c;
                    }
                }
            }
            if killed.elapsed() > Duration::from_secs(60) {
                break Err("no APPEND acknowledged within 60 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        out.push(result);
        c.restart(leader);
        c.wait_ready();
        std::thread::sleep(Duration::from_secs(3));
    }
    out
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown");
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_bytes": mem_kib * 1024,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "os": std::fs::read_to_string("/etc/debian_version").map(|v| format!("Debian {}", v.trim())).unwrap_or_default(),
    })
}

/// The targets of the issue, each with what was measured.
fn targets(
    rows: &[Row],
    failovers: &[(String, Vec<Result<Duration, String>>)],
) -> Vec<(bool, String)> {
    let find = |w: Workload, clients: usize, config: &str| {
        rows.iter()
            .find(|r| r.workload == w && r.clients == clients && r.config == config)
    };
    let tandems: Vec<&str> = rows
        .iter()
        .filter(|r| r.config.starts_with("tandem"))
        .map(|r| r.config.as_str())
        .fold(Vec::new(), |mut v, c| {
            if !v.contains(&c) {
                v.push(c);
            }
            v
        });
    let mut out = Vec::new();
    for &t in &tandems {
        if let (Some(r), Some(d)) = (
            find(Workload::Append4k, 1, t),
            find(Workload::Append4k, 1, "direct Dovecot"),
        ) {
            let extra = r.ms(0.5) - d.ms(0.5);
            out.push((
                extra <= 1.0,
                format!(
                    "{t}: APPEND p50 {:.2} ms = direct + {extra:.2} ms (target + 1 ms)",
                    r.ms(0.5)
                ),
            ));
        }
        if let Some(r) = find(Workload::Append4k, 16, t) {
            out.push((
                r.ratio() >= 0.5,
                format!(
                    "{t}: 16-client APPEND at {:.0}% of direct (target 50%)",
                    100.0 * r.ratio()
                ),
            ));
        }
        if let Some(r) = find(Workload::Append4k, 1, t) {
            out.push((
                r.sample.front_cpu <= r.sample.backend_cpu,
                format!(
                    "{t}: tandem CPU {:.2} s per 1,000 APPENDs, backends {:.2} (target: no more)",
                    r.front_cpu_per_1k(),
                    r.backend_cpu_per_1k()
                ),
            ));
        }
        for w in [Workload::Fetch1000, Workload::Select10k] {
            for clients in [1, 16] {
                let (Some(r), Some(p)) = (find(w, clients, t), find(w, clients, "Dovecot proxy"))
                else {
                    continue;
                };
                out.push((
                    r.ratio() >= 0.9 && r.rate() > p.rate(),
                    format!(
                        "{t}: {} with {clients} client(s) at {:.0}% of direct, Dovecot proxy {:.0}% (target 90% and ahead of the proxy)",
                        w.name(),
                        100.0 * r.ratio(),
                        100.0 * p.ratio()
                    ),
                ));
            }
        }
    }
    for clients in [1, 16] {
        if let (Some(l), Some(n)) = (
            find(Workload::Append4k, clients, "tandem 3, 2% loss"),
            find(Workload::Append4k, clients, "tandem 3 nodes"),
        ) {
            let cost = 1.0 - l.rate() / n.rate().max(f64::MIN_POSITIVE);
            out.push((
                cost <= 0.2,
                format!(
                    "2% loss and 1 ms delay cost {:.0}% of APPEND throughput with {clients} client(s) (target 20%)",
                    100.0 * cost
                ),
            ));
        }
    }
    for (name, trials) in failovers {
        let worst = trials
            .iter()
            .map(|t| t.as_ref().map_or(f64::INFINITY, |d| d.as_secs_f64()))
            .fold(0.0, f64::max);
        let shown: Vec<String> = trials
            .iter()
            .map(|t| match t {
                Ok(d) => format!("{:.2} s", d.as_secs_f64()),
                Err(e) => e.clone(),
            })
            .collect();
        out.push((
            worst <= 2.0,
            format!("{name}: failover {} (target 2 s)", shown.join(", ")),
        ));
    }
    out
}

/// How soon a write is seen elsewhere: readable on the other nodes
/// (dsync's replica, tandem's other nodes), and told to a session in IDLE
/// (two sessions on direct Dovecot; tandem, across nodes).
fn delays(setups: &Setups, all: &[Target]) -> (Value, Value, Value, Value) {
    eprintln!("bench: how soon a write is readable elsewhere");
    let primary = setups.dsync.primary().imap_addr();
    let replica = setups.dsync.replica().imap_addr();
    let three: Vec<SocketAddr> = setups
        .three
        .mail_ids()
        .iter()
        .map(|&i| setups.three.imap_addr(i))
        .collect();
    let lag = |write, read: &[SocketAddr]| match bench::visibility(write, read, 20, "bob") {
        Ok(v) => json!({
            "delay": report::stats_json(&v.iter().map(|s| s.0).collect::<Vec<_>>()),
            "readable_at_first_look": v.iter().filter(|s| s.1).count(),
            "samples": v.len(),
        }),
        Err(e) => json!({ "error": e }),
    };
    let dsync_lag = lag(primary, &[replica]);
    let tandem_lag = lag(three[0], &three[1..]);
    eprintln!("bench: how soon a session in IDLE on another node is told");
    let idle = |write, read| match bench::idle_notification(write, read, 20, "bob") {
        Ok((appends, flags)) => json!({
            "new_message": report::stats_json(&appends),
            "flag_change": report::stats_json(&flags),
        }),
        Err(e) => json!({ "error": e }),
    };
    let idle_direct = idle(all[0].addr, all[0].addr);
    let idle_tandem = idle(three[0], three[1]);
    (dsync_lag, tandem_lag, idle_direct, idle_tandem)
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]);
    let mut setups = Setups::start();
    let all = setups.targets();
    eprintln!("bench: seeding {} configurations", all.len());
    for t in &all {
        if let Err(e) = bench::seed(t.addr) {
            eprintln!("bench: {}: {e}", t.name);
            return ExitCode::FAILURE;
        }
    }
    setups.lossy.net().degrade_all(LOSS, DELAY, Duration::ZERO);

    let (dsync_lag, tandem_lag, idle_direct, idle_tandem) = delays(&setups, &all);
    let sync_mode = DsyncPair::sync_mode_failure().unwrap_or_else(|e| e);

    let mut rows: Vec<Row> = Vec::new();
    for w in Workload::ALL {
        if !w.name().contains(o.filter.as_str()) {
            continue;
        }
        for clients in [1usize, 16] {
            eprintln!("bench: {} with {clients} client(s)", w.name());
            let mut samples: Vec<Sample> = vec![Sample::default(); all.len()];
            for _ in 0..o.rounds {
                for (t, s) in all.iter().zip(samples.iter_mut()) {
                    bench::measure(t, w, clients, o.seconds, s);
                }
            }
            let direct_rate =
                samples[0].lat.len() as f64 / samples[0].seconds.max(f64::MIN_POSITIVE);
            for (t, mut s) in all.iter().zip(samples) {
                s.lat.sort();
                rows.push(Row {
                    workload: w,
                    clients,
                    config: t.name.clone(),
                    replicated: t.replicated,
                    fronted: !t.front.is_empty(),
                    sample: s,
                    direct_rate,
                });
            }
        }
    }

    eprintln!("bench: failover (SIGKILL of the leader)");
    let mut failovers = vec![
        ("tandem 3 nodes".to_string(), failover(&mut setups.three, 3)),
        (
            "tandem 2 + witness".to_string(),
            failover(&mut setups.witness, 3),
        ),
    ];
    drop(setups);
    // openraft refuses votes for election_timeout_max after the last
    // heartbeat (its leader lease), so a failover takes at least that long
    // plus an election timeout: the same with tighter timing.
    let (hb, min, max) = FAST_TIMING;
    let mut fast = TandemCluster::builder()
        .nodes(3)
        .timing(hb, min, max)
        .start();
    failovers.push((
        format!("tandem 3 nodes, heartbeat {hb} ms, election {min}-{max} ms"),
        failover(&mut fast, 3),
    ));
    drop(fast);
    let goals = targets(&rows, &failovers);

    println!("{}", report::table(&rows));
    println!("Replication lag (from an acknowledged APPEND until readable on the other nodes):");
    println!("  dsync (async): {dsync_lag}");
    println!("  tandem 3 nodes: {tandem_lag}");
    println!("dsync synchronous mode (replication_sync_timeout = 2): {sync_mode}");
    println!("A session in IDLE told of an APPEND and a STORE by another session:");
    println!("  both on direct Dovecot: {idle_direct}");
    println!("  tandem, written on node 1, idling on node 2: {idle_tandem}");
    println!("\nTargets:");
    for (met, text) in &goals {
        println!("  [{}] {text}", if *met { "met" } else { "NOT met" });
    }

    let results = json!({
        "date": started,
        "machine": machine(),
        "versions": {
            "tandem": env!("CARGO_PKG_VERSION"),
            "tandem_commit": command_line("git", &["rev-parse", "--short", "HEAD"]),
            "dovecot": command_line(tandem_tests::dovecot::DOVECOT_BIN, &["--version"]),
            "rustc": command_line("rustc", &["--version"]),
        },
        "settings": {
            "seconds_per_round": o.seconds,
            "rounds": o.rounds,
            "loss": LOSS,
            "delay_ms": DELAY.as_secs_f64() * 1000.0,
        },
        "rows": report::rows_json(&rows),
        "replication_lag": { "dsync": dsync_lag, "tandem_3_nodes": tandem_lag },
        "dsync_sync_mode": sync_mode,
        "idle_notification": { "direct_dovecot": idle_direct, "tandem_3_nodes": idle_tandem },
        "failover_seconds": failovers.iter().map(|(n, t)| json!({
            "configuration": n,
            "trials": t.iter().map(|r| match r {
                Ok(d) => json!(d.as_secs_f64()),
                Err(e) => json!({ "error": e }),
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "targets": goals.iter().map(|(met, text)| json!({ "met": met, "what": text })).collect::<Vec<_>>(),
    });
    if let Err(e) = std::fs::create_dir_all(&o.out) {
        eprintln!("bench: {}: {e}", o.out.display());
        return ExitCode::FAILURE;
    }
    let json_path = o.out.join("results.json");
    let text = serde_json::to_string_pretty(&results).unwrap_or_default();
    if let Err(e) = std::fs::write(&json_path, text + "\n") {
        eprintln!("bench: {}: {e}", json_path.display());
        return ExitCode::FAILURE;
    }
    let png = o.out.join("latency.png");
    match report::chart(&rows, &png) {
        Ok(()) => eprintln!("bench: wrote {} and {}", json_path.display(), png.display()),
        Err(e) => eprintln!("bench: wrote {}; no chart: {e}", json_path.display()),
    }
    ExitCode::SUCCESS
}
