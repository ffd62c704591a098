//! The chaos campaign: concurrent IMAP clients against every node of a
//! cluster of `tandem run` processes in front of real Dovecots, while faults
//! are injected at random from a printed seed (SIGKILL and restart, the
//! leader isolated, one-way cuts, 2% loss with 50 ms delay on every link,
//! a backend stopped and restarted). One APPEND in [`LARGE_ONE_IN`] carries
//! a message of 100-300 KiB, which travels as a blob beside the log (pushed
//! to a majority before it is proposed, fetched by a node that missed it).
//! Every request is recorded with its
//! start, end and answer; after healing and a quiet period a checker reads
//! every node (through tandem, and its backend directly) and reports every
//! violation of the invariants:
//!
//! - a. no (user, mailbox, UIDVALIDITY, UID) names two different messages;
//! - b. every acknowledged APPEND / COPY is on every node under the UID it
//!   was given (unless a later request may have moved or expunged it);
//! - c./d. all nodes hold identical mailboxes, messages, flags and UID
//!   order, and each backend holds them in that order (so nothing is
//!   half-applied and sequence numbers agree);
//! - e. within a mailbox, a UID given after another was acknowledged is
//!   larger.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::TandemCluster;
use crate::imap::{ImapClient, Status};
use crate::BackendKind;
use crate::USER_PASSWORD;

/// Set by [`interrupt`]: the fault phase ends early, and the campaign heals,
/// checks and cleans up as usual.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ends the fault phase of a running campaign early (Ctrl-C).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// How a campaign runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Length of the fault phase.
    pub duration: Duration,
    /// Seed of every random choice (faults, clients, relay loss).
    pub seed: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Mail nodes.
    pub nodes: u64,
    /// Start the nodes with `TANDEM_TEST_ACK_BEFORE_COMMIT=1` (the negative
    /// control: the checker must find violations).
    pub negative_control: bool,
    /// The `tandem` binary (default: the harness's search).
    pub binary: Option<std::path::PathBuf>,
    /// The mail nodes' servers, in node order, repeated as needed (one
    /// kind, or a mix).
    pub backends: Vec<BackendKind>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(600),
            seed: 1,
            clients: 6,
            nodes: 3,
            negative_control: false,
            binary: None,
            backends: vec![BackendKind::Dovecot],
        }
    }
}

/// What a campaign found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Requests sent.
    pub ops: u64,
    /// Requests answered OK.
    pub acknowledged: u64,
    /// APPENDs of a large message (a blob) answered OK.
    pub large_acknowledged: u64,
    /// Every violation, with context.
    pub violations: Vec<String>,
    /// Requests refused (NO, BAD) and left without an answer.
    pub refused: u64,
    /// Requests left without an answer (a node died under them).
    pub unanswered: u64,
    /// A few refusals and losses, to show what the clients met.
    pub samples: Vec<String>,
    /// Where the nodes' logs were kept (only when a violation was found).
    pub logs: Option<PathBuf>,
}

impl Summary {
    /// The campaign's one-line result.
    pub fn line(&self) -> String {
        format!(
            "chaos: seed {}, {} faults, {} ops ({} acknowledged, {} of them large APPENDs), {} violations",
            self.seed,
            self.faults.values().sum::<u64>(),
            self.ops,
            self.acknowledged,
            self.large_acknowledged,
            self.violations.len()
        )
    }
}

/// A xorshift generator: reproducible from the printed seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const MAILBOXES: [&str; 3] = ["INBOX", "Box1", "Box2"];

/// One APPEND in this many carries a large message (a blob).
pub const LARGE_ONE_IN: u64 = 25;

/// A message with `marker` as its subject: a few bytes, or when `large`,
/// 100-300 KiB of 78-byte lines.
fn chaos_message(marker: &str, large: bool, rng: &mut Rng) -> Vec<u8> {
    let mut body = format!("From: chaos@example.org\r\nSubject: {marker}\r\n\r\nbody\r\n");
    if large {
        let lines = (100 * 1024 + rng.below(200 * 1024)) / 78;
        let line = format!("{}\r\n", "x".repeat(76));
        body.push_str(&line.repeat(lines as usize));
    }
    body.into_bytes()
}

/// One request of the history.
#[derive(Debug, Clone)]
enum Kind {
    Append {
        mailbox: String,
        marker: String,
        /// 100-300 KiB (see [`LARGE_ONE_IN`]).
        large: bool,
    },
    Store {
        mailbox: String,
        uid: u32,
    },
    Copy {
        from: String,
        uid: u32,
        to: String,
    },
    Move {
        from: String,
        uid: u32,
        to: String,
    },
    Expunge {
        mailbox: String,
        uid: u32,
    },
    Create {
        name: String,
    },
}

#[derive(Debug, Clone)]
enum Answer {
    /// OK, with the UIDVALIDITY and UIDs of APPENDUID / COPYUID (dest).
    Ok {
        uidvalidity: Option<u32>,
        uids: Vec<u32>,
    },
    /// NO or BAD, with the text.
    Refused(String),
    /// No answer (connection lost).
    Unknown(String),
}

#[derive(Debug, Clone)]
struct Record {
    client: usize,
    user: &'static str,
    node: usize,
    kind: Kind,
    start: Instant,
    end: Instant,
    answer: Answer,
}

fn code_numbers(text: &str, code: &str) -> Option<(u32, Vec<u32>)> {
    let inner = text.split(&format!("[{code} ")).nth(1)?.split(']').next()?;
    let words: Vec<&str> = inner.split(' ').collect();
    let uv = words.first()?.parse().ok()?;
    let set = words.last()?;
    let mut uids = Vec::new();
    for part in set.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                uids.extend(a.min(b)..=a.max(b));
            }
            None => uids.push(part.parse().ok()?),
        }
    }
    Some((uv, uids))
}

/// One client: picks requests at random, moves to the next node when its
/// node stops answering, records everything.
fn client(
    id: usize,
    addrs: Vec<SocketAddr>,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> (Vec<Record>, u64) {
    let mut rng = Rng::new(seed ^ ((id as u64 + 1) * 7919));
    let user: &'static str = if id % 2 == 0 { "alice" } else { "bob" };
    let mut node = id % addrs.len();
    let mut history = Vec::new();
    let mut known: Vec<(String, u32)> = Vec::new();
    let mut n = 0u64;
    let mut ops = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = ImapClient::connect(addrs[node]) else {
            node = (node + 1) % addrs.len();
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        if c.command(&format!("LOGIN {user} {USER_PASSWORD}"))
            .map(|r| r.status)
            .ok()
            != Some(Status::Ok)
        {
            node = (node + 1) % addrs.len();
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        let mut selected: Option<String> = None;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let roll = rng.below(100);
            let pick = |rng: &mut Rng| MAILBOXES[rng.below(3) as usize].to_string();
            let target = if known.is_empty() {
                None
            } else {
                Some(known[rng.below(known.len() as u64) as usize].clone())
            };
            let kind = match (roll, target) {
                (0..=54, _) | (_, None) => Kind::Append {
                    mailbox: pick(&mut rng),
                    marker: format!("c{id}-{n}-{seed}"),
                    large: rng.below(LARGE_ONE_IN) == 0,
                },
                (55..=69, Some((mailbox, uid))) => Kind::Store { mailbox, uid },
                (70..=79, Some((from, uid))) => {
                    let to = loop {
                        let t = pick(&mut rng);
                        if t != from {
                            break t;
                        }
                    };
                    Kind::Copy { from, uid, to }
                }
                (80..=87, Some((from, uid))) => {
                    let to = loop {
                        let t = pick(&mut rng);
                        if t != from {
                            break t;
                        }
                    };
                    Kind::Move { from, uid, to }
                }
                (88..=96, Some((mailbox, uid))) => Kind::Expunge { mailbox, uid },
                _ => Kind::Create {
                    name: format!("New{id}x{n}"),
                },
            };
            ops += 1;
            let start = Instant::now();
            let result = perform(&mut c, &kind, &mut selected, &mut rng);
            let end = Instant::now();
            let lost = matches!(result, Answer::Unknown(_));
            if let (Kind::Append { mailbox, .. }, Answer::Ok { uids, .. }) = (&kind, &result) {
                if let Some(&u) = uids.first() {
                    known.push((mailbox.clone(), u));
                }
            }
            if let (Kind::Copy { to, .. }, Answer::Ok { uids, .. }) = (&kind, &result) {
                if let Some(&u) = uids.first() {
                    known.push((to.clone(), u));
                }
            }
            history.push(Record {
                client: id,
                user,
                node,
                kind,
                start,
                end,
                answer: result,
            });
            if lost {
                break;
            }
        }
        node = (node + 1) % addrs.len();
    }
    (history, ops)
}

fn perform(
    c: &mut ImapClient,
    kind: &Kind,
    selected: &mut Option<String>,
    rng: &mut Rng,
) -> Answer {
    let answer = |r: std::io::Result<crate::imap::Reply>, code: &str| match r {
        Err(e) => Answer::Unknown(e.to_string()),
        Ok(r) if r.status == Status::Ok => {
            let found = code_numbers(&r.text, code)
                .or_else(|| r.lines().iter().find_map(|l| code_numbers(l, code)));
            Answer::Ok {
                uidvalidity: found.as_ref().map(|f| f.0),
                uids: found.map(|f| f.1).unwrap_or_default(),
            }
        }
        Ok(r) => Answer::Refused(r.text),
    };
    let mut select = |c: &mut ImapClient, m: &str| -> Result<(), Answer> {
        if selected.as_deref() == Some(m) {
            return Ok(());
        }
        *selected = None;
        match c.command(&format!("SELECT {m}")) {
            Err(e) => Err(Answer::Unknown(e.to_string())),
            Ok(r) if r.status != Status::Ok => Err(Answer::Refused(r.text)),
            Ok(_) => {
                *selected = Some(m.to_string());
                Ok(())
            }
        }
    };
    match kind {
        Kind::Append {
            mailbox,
            marker,
            large,
        } => {
            let body = chaos_message(marker, *large, rng);
            answer(c.append(mailbox, &body), "APPENDUID")
        }
        Kind::Store { mailbox, uid } => {
            if let Err(a) = select(c, mailbox) {
                return a;
            }
            let sign = if rng.below(2) == 0 { '+' } else { '-' };
            answer(
                c.command(&format!("UID STORE {uid} {sign}FLAGS (\\Flagged)")),
                "",
            )
        }
        Kind::Copy { from, uid, to } | Kind::Move { from, uid, to } => {
            if let Err(a) = select(c, from) {
                return a;
            }
            let verb = if matches!(kind, Kind::Move { .. }) {
                "MOVE"
            } else {
                "COPY"
            };
            answer(c.command(&format!("UID {verb} {uid} {to}")), "COPYUID")
        }
        Kind::Expunge { mailbox, uid } => {
            if let Err(a) = select(c, mailbox) {
                return a;
            }
            match c.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)")) {
                Err(e) => return Answer::Unknown(e.to_string()),
                Ok(r) if r.status != Status::Ok => return Answer::Refused(r.text),
                Ok(_) => {}
            }
            answer(c.command(&format!("UID EXPUNGE {uid}")), "")
        }
        Kind::Create { name } => answer(c.command(&format!("CREATE {name}")), ""),
    }
}

/// What one node shows of a user's mailbox: UIDVALIDITY and, by UID, the
/// subject and the sorted flags with the size (`"\\Flagged size=123"`: a
/// large message cut short or mixed up with another shows).
type MailboxView = (u32, BTreeMap<u32, (String, String)>);
/// Every mailbox of every user, as one node shows it.
type View = BTreeMap<(String, String), MailboxView>;

fn read_view(addr: SocketAddr) -> Result<View, String> {
    let mut view = View::new();
    for user in ["alice", "bob"] {
        let mut c = ImapClient::connect(addr).map_err(|e| e.to_string())?;
        let r = c
            .command(&format!("LOGIN {user} {USER_PASSWORD}"))
            .map_err(|e| e.to_string())?;
        if r.status != Status::Ok {
            return Err(format!("login: {}", r.text));
        }
        let list = c.command("LIST \"\" \"*\"").map_err(|e| e.to_string())?;
        let names: Vec<String> = list
            .lines()
            .iter()
            .filter_map(|l| {
                l.rsplit(' ')
                    .next()
                    .map(|s| s.trim_matches('"').to_string())
            })
            .collect();
        for name in names {
            let r = c
                .command(&format!("EXAMINE {name}"))
                .map_err(|e| e.to_string())?;
            if r.status != Status::Ok {
                continue; // on the backend only (not tandem's)
            }
            let uv = r
                .lines()
                .iter()
                .find_map(|l| {
                    l.split("[UIDVALIDITY ")
                        .nth(1)?
                        .split(']')
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
            let f = c
                .command("UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                .map_err(|e| e.to_string())?;
            let mut msgs = BTreeMap::new();
            for l in f.lines() {
                let Some(uid) = l
                    .split("UID ")
                    .nth(1)
                    .and_then(|s| s.split([' ', ')']).next())
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let mut flags: Vec<&str> = l
                    .split("FLAGS (")
                    .nth(1)
                    .and_then(|s| s.split(')').next())
                    .map(|s| {
                        s.split(' ')
                            .filter(|f| !f.is_empty() && *f != "\\Recent")
                            .collect()
                    })
                    .unwrap_or_default();
                flags.sort_unstable();
                let subject = l
                    .split("Subject: ")
                    .nth(1)
                    .and_then(|s| s.split(['\r', '\n']).next())
                    .unwrap_or("")
                    .to_string();
                let size = l
                    .split("RFC822.SIZE ")
                    .nth(1)
                    .and_then(|s| s.split([' ', ')']).next())
                    .unwrap_or("?");
                msgs.insert(uid, (subject, format!("{} size={size}", flags.join(" "))));
            }
            view.insert((user.to_string(), name), (uv, msgs));
        }
    }
    Ok(view)
}

/// Subjects of a backend's mailbox, in the backend's own UID order.
fn backend_order(addr: SocketAddr, user: &str, mailbox: &str) -> Option<Vec<String>> {
    let mut c = ImapClient::connect(addr).ok()?;
    c.command(&format!("LOGIN {user} {USER_PASSWORD}")).ok()?;
    let r = c.command(&format!("EXAMINE {mailbox}")).ok()?;
    if r.status != Status::Ok {
        return None;
    }
    let f = c
        .command("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        .ok()?;
    Some(
        f.lines()
            .iter()
            .filter_map(|l| {
                l.split("Subject: ")
                    .nth(1)
                    .and_then(|s| s.split(['\r', '\n']).next())
                    .map(str::to_string)
            })
            .collect(),
    )
}

/// Runs a campaign and checks its outcome.
pub fn run(opts: &Options) -> Summary {
    let mut builder = TandemCluster::builder()
        .nodes(opts.nodes)
        .backends(&opts.backends)
        .relay(opts.seed);
    if let Some(b) = &opts.binary {
        builder = builder.binary(b);
    }
    if opts.negative_control {
        builder = builder.env("TANDEM_TEST_ACK_BEFORE_COMMIT", "1");
    }
    let mut cluster = builder.start();
    let ids = cluster.ids();
    let addrs: Vec<SocketAddr> = ids.iter().map(|&id| cluster.imap_addr(id)).collect();
    let mut summary = Summary {
        seed: opts.seed,
        ..Summary::default()
    };
    for user in ["alice", "bob"] {
        let mut c = cluster.login(ids[0], user);
        for m in &MAILBOXES[1..] {
            let _ = c.command(&format!("CREATE {m}"));
        }
        let _ = c.command("SELECT INBOX");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..opts.clients)
        .map(|id| {
            let (addrs, stop) = (addrs.clone(), stop.clone());
            let seed = opts.seed;
            std::thread::spawn(move || client(id, addrs, seed, stop))
        })
        .collect();

    let mut rng = Rng::new(opts.seed);
    let deadline = Instant::now() + opts.duration;
    let pause = |rng: &mut Rng, lo: u64, hi: u64| {
        std::thread::sleep(Duration::from_millis(lo + rng.below(hi - lo)));
    };
    while Instant::now() < deadline && !INTERRUPTED.load(Ordering::Relaxed) {
        pause(&mut rng, 1000, 3000);
        let victim = ids[rng.below(ids.len() as u64) as usize];
        let kind: &'static str = match rng.below(6) {
            0 => {
                cluster.kill(victim);
                pause(&mut rng, 1000, 3000);
                cluster.restart(victim);
                "kill"
            }
            1 => {
                let l = cluster.leader().unwrap_or(victim);
                cluster.kill(l);
                pause(&mut rng, 1000, 3000);
                cluster.restart(l);
                "kill-leader"
            }
            2 => {
                let l = cluster.leader().unwrap_or(victim);
                cluster.net().isolate(l);
                pause(&mut rng, 2000, 4000);
                cluster.net().heal();
                "partition-leader"
            }
            3 => {
                let other =
                    ids[(ids.iter().position(|&i| i == victim).unwrap_or(0) + 1) % ids.len()];
                cluster.net().cut_one_way(victim, other);
                pause(&mut rng, 2000, 4000);
                cluster.net().heal();
                "one-way-cut"
            }
            4 => {
                cluster
                    .net()
                    .degrade_all(0.02, Duration::from_millis(50), Duration::ZERO);
                pause(&mut rng, 3000, 6000);
                cluster.net().heal();
                "loss-and-delay"
            }
            _ => {
                cluster.stop_backend(victim);
                pause(&mut rng, 1000, 3000);
                cluster.start_backend(victim);
                "backend-restart"
            }
        };
        *summary.faults.entry(kind).or_default() += 1;
        eprintln!("chaos: fault {kind} (node {victim})");
    }
    stop.store(true, Ordering::Relaxed);
    let mut history = Vec::new();
    for w in workers {
        if let Ok((h, ops)) = w.join() {
            history.extend(h);
            summary.ops += ops;
        }
    }
    for r in &history {
        match &r.answer {
            Answer::Ok { .. } => {
                summary.acknowledged += 1;
                if let Kind::Append { large: true, .. } = r.kind {
                    summary.large_acknowledged += 1;
                }
            }
            Answer::Refused(t) => {
                summary.refused += 1;
                if summary.samples.len() < 8 {
                    summary.samples.push(format!("refused: {t}"));
                }
            }
            Answer::Unknown(t) => {
                summary.unanswered += 1;
                if summary.samples.len() < 8 {
                    summary.samples.push(format!("no answer: {t}"));
                }
            }
        }
    }

    // Quiet: every node current, then read everything twice apart so a
    // late apply cannot pass for a difference.
    cluster.net().heal();
    cluster.wait_ready();
    let quiet = Instant::now() + Duration::from_secs(90);
    let mut views: Vec<View> = Vec::new();
    while Instant::now() < quiet {
        views = addrs.iter().filter_map(|&a| read_view(a).ok()).collect();
        if views.len() == addrs.len() && views.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    check(&cluster, &ids, &history, &views, &mut summary);
    if opts.negative_control {
        // A `tandem` built without the test-hooks feature ignores the
        // switch: say so instead of reporting a blind checker.
        let armed = ids
            .iter()
            .any(|&id| cluster.log(id).contains("TANDEM_TEST_ACK_BEFORE_COMMIT=1"));
        assert!(
            armed,
            "negative control: the tandem binary ignores TANDEM_TEST_ACK_BEFORE_COMMIT \
             (build it with `cargo build -p tandem-proxy --features test-hooks`)"
        );
    }
    if !summary.violations.is_empty() && !opts.negative_control {
        summary.logs = keep_logs(&cluster, opts.seed);
    }
    summary
}

/// Copies every node's log out of the cluster's temporary directory, which
/// goes with the cluster, so that a violation can be traced afterwards.
fn keep_logs(cluster: &TandemCluster, seed: u64) -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tandem-chaos-seed-{seed}"));
    std::fs::create_dir_all(&dir).ok()?;
    for id in cluster.ids() {
        std::fs::write(dir.join(format!("node{id}.log")), cluster.log(id)).ok()?;
    }
    Some(dir)
}

fn check(
    cluster: &TandemCluster,
    ids: &[u64],
    history: &[Record],
    views: &[View],
    summary: &mut Summary,
) {
    let v = &mut summary.violations;
    if views.len() != ids.len() {
        v.push(format!(
            "only {} of {} nodes could be read",
            views.len(),
            ids.len()
        ));
        return;
    }
    // d. Identical everywhere.
    for (i, view) in views.iter().enumerate().skip(1) {
        if view != &views[0] {
            let keys: BTreeSet<_> = view.keys().chain(views[0].keys()).collect();
            for k in keys {
                let (a, b) = (views[0].get(k), view.get(k));
                if a == b {
                    continue;
                }
                let detail = match (a, b) {
                    (Some((uva, ma)), Some((uvb, mb))) if uva == uvb => {
                        let uids: BTreeSet<&u32> = ma.keys().chain(mb.keys()).collect();
                        let diffs: Vec<String> = uids
                            .into_iter()
                            .filter(|u| ma.get(u) != mb.get(u))
                            .take(10)
                            .map(|u| format!("UID {u}: {:?} vs {:?}", ma.get(u), mb.get(u)))
                            .collect();
                        diffs.join("; ")
                    }
                    (Some((uva, _)), Some((uvb, _))) => format!("UIDVALIDITY {uva} vs {uvb}"),
                    _ => format!("present {} vs {}", a.is_some(), b.is_some()),
                };
                v.push(format!(
                    "d: node {} and node {} differ in {k:?}: {detail}",
                    ids[0], ids[i]
                ));
            }
        }
    }
    let view = &views[0];
    // d'. Each backend holds the messages in canonical order.
    for (i, &id) in ids.iter().enumerate() {
        for ((user, mailbox), (_, msgs)) in &views[i] {
            let canonical: Vec<String> = msgs.values().map(|m| m.0.clone()).collect();
            match backend_order(cluster.backend(id).imap_addr(), user, mailbox) {
                Some(local) if local == canonical => {}
                Some(local) => {
                    let at = local
                        .iter()
                        .zip(canonical.iter())
                        .position(|(a, b)| a != b)
                        .unwrap_or(local.len().min(canonical.len()));
                    v.push(format!(
                        "d: node {id}'s backend holds {user}/{mailbox} in another order from position {at}: {:?} vs canonical {:?} ({} vs {} messages)",
                        local.get(at..(at + 3).min(local.len())),
                        canonical.get(at..(at + 3).min(canonical.len())),
                        local.len(),
                        canonical.len()
                    ))
                }
                None => v.push(format!("d: node {id}'s backend lacks {user}/{mailbox}")),
            }
        }
    }
    // a. One message per (user, mailbox, UIDVALIDITY, UID), in the history
    // and in the final view; a message appended once is in a mailbox once.
    let mut bound: BTreeMap<(String, String, u32, u32), String> = BTreeMap::new();
    let mut bind = |key: (String, String, u32, u32), marker: &str, v: &mut Vec<String>| {
        if let Some(old) = bound.get(&key) {
            if old != marker {
                v.push(format!("a: {key:?} named both {old} and {marker}"));
            }
        } else {
            bound.insert(key, marker.to_string());
        }
    };
    for r in history {
        if let (
            Kind::Append {
                mailbox, marker, ..
            },
            Answer::Ok {
                uidvalidity: Some(uv),
                uids,
            },
        ) = (&r.kind, &r.answer)
        {
            for &u in uids {
                bind((r.user.to_string(), mailbox.clone(), *uv, u), marker, v);
            }
        }
    }
    for ((user, mailbox), (uv, msgs)) in view {
        for (uid, (subject, _)) in msgs {
            bind((user.clone(), mailbox.clone(), *uv, *uid), subject, v);
        }
    }
    // A message appended once is in a mailbox once, unless a COPY or MOVE
    // (answered or not) may have put another copy there.
    let by_uid: BTreeMap<(String, String, u32), String> = bound
        .iter()
        .map(|((u, m, _, uid), marker)| ((u.clone(), m.clone(), *uid), marker.clone()))
        .collect();
    let copied: BTreeSet<&String> = history
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Copy { from, uid, .. } | Kind::Move { from, uid, .. } => {
                by_uid.get(&(r.user.to_string(), from.clone(), *uid))
            }
            _ => None,
        })
        .collect();
    for ((user, mailbox), (_, msgs)) in view {
        let mut seen = BTreeSet::new();
        for (subject, _) in msgs.values() {
            if !seen.insert(subject) && !copied.contains(subject) {
                v.push(format!(
                    "a: {user}/{mailbox} holds {subject} twice (never copied)"
                ));
            }
        }
    }
    // b. Acknowledged appends are there, under their UID, unless something
    // later may have moved or expunged them.
    let touched: BTreeSet<(String, String, u32)> = history
        .iter()
        .filter_map(|r| match &r.kind {
            Kind::Move { from, uid, .. } => Some((r.user.to_string(), from.clone(), *uid)),
            Kind::Expunge { mailbox, uid } => Some((r.user.to_string(), mailbox.clone(), *uid)),
            _ => None,
        })
        .collect();
    for r in history {
        let (
            Kind::Append {
                mailbox, marker, ..
            },
            Answer::Ok {
                uidvalidity: Some(uv),
                uids,
            },
        ) = (&r.kind, &r.answer)
        else {
            continue;
        };
        for &u in uids {
            if touched.contains(&(r.user.to_string(), mailbox.clone(), u)) {
                continue;
            }
            let here = view
                .get(&(r.user.to_string(), mailbox.clone()))
                .filter(|(v_uv, _)| v_uv == uv)
                .and_then(|(_, m)| m.get(&u))
                .map(|m| m.0.as_str());
            if here != Some(marker.as_str()) {
                v.push(format!(
                    "b: acknowledged APPEND {marker} ({}/{mailbox} UIDVALIDITY {uv} UID {u}, client {} via node index {}) is {here:?}",
                    r.user, r.client, r.node
                ));
            }
        }
    }
    // e. UIDs only grow: an APPEND that started after another was
    // acknowledged got a larger UID.
    // (start, end, UID) of the acknowledged appends of each mailbox.
    type Timed = Vec<(Instant, Instant, u32)>;
    let mut per_box: BTreeMap<(String, String, u32), Timed> = BTreeMap::new();
    for r in history {
        if let (
            Kind::Append { mailbox, .. },
            Answer::Ok {
                uidvalidity: Some(uv),
                uids,
            },
        ) = (&r.kind, &r.answer)
        {
            if let Some(&u) = uids.first() {
                per_box
                    .entry((r.user.to_string(), mailbox.clone(), *uv))
                    .or_default()
                    .push((r.start, r.end, u));
            }
        }
    }
    for (key, ops) in per_box {
        for a in &ops {
            for b in &ops {
                if b.0 > a.1 && b.2 <= a.2 {
                    v.push(format!(
                        "e: in {key:?}, UID {} was given after UID {} was acknowledged",
                        b.2, a.2
                    ));
                }
            }
        }
    }
}
