//! Running a script against one target (a backend straight, or a tandem
//! cluster) into a [`Transcript`]: every step's answer, raw and normalized.
//!
//! Steps run one at a time, in script order, each session on its own
//! connection, so the interleaving is the script's and nothing else's. On
//! a cluster of several nodes, session A connects to node 1, B to node 2,
//! C to node 3, D to node 1, E to node 2, and after every step the runner
//! waits until every node has applied every committed entry to its
//! backend, so what one session did is there for the next step of another.

use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::imap::{ImapClient, Status};
use crate::{Backend, TandemCluster, ADMIN_PASSWORD, ADMIN_USER, USER_PASSWORD};

use super::normalize::{self, Side};
use super::script::{self, letter, Expanded, Script, MAX_SESSIONS};

/// How long a session waits for one answer.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `DONE` waits for a first unprompted response of an IDLE.
const IDLE_FIRST: Duration = Duration::from_millis(1500);
/// How long `DONE` then waits for more, after the last one.
const IDLE_QUIET: Duration = Duration::from_millis(300);
/// How long a cluster may take to apply everything everywhere.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a backend may lag once every entry is applied to the state.
const STUCK_LAG: Duration = Duration::from_secs(2);

/// Where a script runs.
#[derive(Debug)]
pub enum Target {
    /// A backend, straight.
    Direct(Backend),
    /// tandem in front of backends.
    Tandem(TandemCluster),
}

impl Target {
    /// `direct`, `tandem-1node`, `tandem-3nodes`.
    pub fn label(&self) -> String {
        match self {
            Target::Direct(_) => "direct".to_string(),
            Target::Tandem(c) if c.mail_ids().len() == 1 => "tandem-1node".to_string(),
            Target::Tandem(c) => format!("tandem-{}nodes", c.mail_ids().len()),
        }
    }

    /// Which side answers come from.
    pub fn side(&self) -> Side {
        match self {
            Target::Direct(_) => Side::Direct,
            Target::Tandem(_) => Side::Tandem,
        }
    }

    fn backends(&self) -> Vec<&Backend> {
        match self {
            Target::Direct(b) => vec![b],
            Target::Tandem(c) => c.mail_ids().into_iter().map(|id| c.backend(id)).collect(),
        }
    }

    /// Where session `s` connects (the setup session is session 0's).
    pub fn addr(&self, session: usize) -> SocketAddr {
        match self {
            Target::Direct(b) => b.imap_addr(),
            Target::Tandem(c) => {
                let ids = c.mail_ids();
                c.imap_addr(ids[session % ids.len()])
            }
        }
    }

    /// Makes `users` known to every backend, with the usual password.
    /// Dovecot reads its passwd-file again at most once a second, when it
    /// changed: this writes them all at once, then lets a second pass.
    pub fn add_users(&self, users: &[String]) -> Result<(), String> {
        let mut dovecot = false;
        for b in self.backends() {
            match b {
                Backend::Dovecot(d) => {
                    use std::io::Write as _;
                    let path = d.dir().join("users");
                    let known = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    for user in users {
                        if !known.lines().any(|l| l.starts_with(&format!("{user}:"))) {
                            writeln!(f, "{user}:{{PLAIN}}{USER_PASSWORD}")
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    dovecot = true;
                }
                Backend::Cyrus(c) => {
                    for user in users {
                        add_cyrus_user(c, user)?;
                    }
                }
            }
        }
        if dovecot {
            std::thread::sleep(Duration::from_millis(1100));
        }
        Ok(())
    }

    /// On a cluster of several nodes: waits until every node has applied
    /// every committed entry to its canonical state and to its backend
    /// (all but `tolerated_lag` entries, the nodes' lag before the script
    /// began, so that one script's stuck entry is not blamed on the next).
    /// `Err` when that does not happen: a backend lag that stays after
    /// everything is applied ([`STUCK_LAG`]) is a finding the caller
    /// records; a log that does not catch up is fatal to the script.
    pub fn settle(&self, tolerated_lag: u64) -> Result<(), Unsettled> {
        let Target::Tandem(c) = self else {
            return Ok(());
        };
        let ids = c.mail_ids();
        if ids.len() < 2 {
            return Ok(());
        }
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut applied_since: Option<Instant> = None;
        loop {
            let last: Vec<Option<(u64, u64, u64)>> = ids
                .iter()
                .map(|&id| node_progress(c.metrics_addr(id)))
                .collect();
            let p: Vec<(u64, u64, u64)> = last.iter().flatten().copied().collect();
            let committed = p.iter().map(|x| x.1).max().unwrap_or(0);
            let applied = p.len() == ids.len() && p.iter().all(|&(a, _, _)| a == committed);
            let lag: u64 = p.iter().map(|&(_, _, lag)| lag).sum();
            if applied && lag <= tolerated_lag {
                return Ok(());
            }
            if applied {
                let since = *applied_since.get_or_insert_with(Instant::now);
                if since.elapsed() > STUCK_LAG {
                    return Err(Unsettled::Lag(
                        lag,
                        format!(
                            "a backend lags behind its applied log for over {STUCK_LAG:?}: \
                         (applied, committed, lag entries) per node {last:?}"
                        ),
                    ));
                }
            } else {
                applied_since = None;
            }
            if Instant::now() > deadline {
                return Err(Unsettled::Log(format!(
                    "the cluster did not converge in {SETTLE_TIMEOUT:?}: \
                     (applied, committed, lag entries) per node {last:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Target {
    /// The backend lag summed over the nodes now (entries applied to the
    /// log but not yet to a backend; the previous script ended settled,
    /// so what remains is stuck); 0 for a backend straight.
    pub fn lag(&self) -> u64 {
        let Target::Tandem(c) = self else {
            return 0;
        };
        c.mail_ids()
            .iter()
            .filter_map(|&id| node_progress(c.metrics_addr(id)))
            .map(|p| p.2)
            .sum()
    }
}

/// Why a cluster did not settle.
#[derive(Debug, Clone)]
pub enum Unsettled {
    /// Everything committed is applied, but a backend still lags (by so
    /// many entries, summed over the nodes).
    Lag(u64, String),
    /// The log itself is not applied everywhere.
    Log(String),
}

/// A node's (applied, committed, backend lag in entries) from `/status`.
fn node_progress(addr: SocketAddr) -> Option<(u64, u64, u64)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET /status HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some((
        v.get("applied")?.as_u64().unwrap_or(0),
        v.get("committed")?.as_u64().unwrap_or(0),
        v.get("lag_entries")?.as_u64()?,
    ))
}

/// Creates a Cyrus user: a SASL secret and an INBOX the admin may act on.
fn add_cyrus_user(c: &crate::Cyrus, user: &str) -> Result<(), String> {
    use std::io::Write as _;
    let sasldb = c.dir().join("sasldb2");
    let mut child = std::process::Command::new(tandem_backends::cyrus::SASLPASSWD_BIN)
        .arg("-f")
        .arg(&sasldb)
        .args(["-u", tandem_backends::cyrus::SERVERNAME, "-p", "-c", user])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("saslpasswd2: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(USER_PASSWORD.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "saslpasswd2 {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let _ = std::process::Command::new("chown")
        .arg("cyrus")
        .arg(&sasldb)
        .status();
    let sep = c.separator();
    let mut admin = ImapClient::login(c.imap_addr(), ADMIN_USER, ADMIN_PASSWORD);
    let mailbox = format!("user{sep}{user}");
    let r = admin
        .command(&format!("CREATE \"{mailbox}\""))
        .map_err(|e| e.to_string())?;
    if r.status != Status::Ok && !r.text.contains("exists") {
        return Err(format!("CREATE {mailbox}: {r:?}"));
    }
    admin
        .command(&format!(
            "SETACL \"{mailbox}\" {ADMIN_USER} {}",
            tandem_backends::cyrus::ADMIN_RIGHTS
        ))
        .map_err(|e| e.to_string())?;
    let _ = admin.command("LOGOUT");
    Ok(())
}

/// What happened at one step.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Each response as received (literals inline).
    pub raw: Vec<String>,
    /// Each response normalized; the tagged one last, without its tag.
    pub lines: Vec<String>,
    /// How long the step took (IDLE's DONE: with the wait for responses).
    pub elapsed: Duration,
}

/// Everything a script's run produced.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// Which target.
    pub target: String,
    /// Why the run could not go on, if it could not (setup refused, a
    /// session lost...), with the step index it stopped at.
    pub aborted: Option<(usize, String)>,
    /// The greeting of each `noauth` session, normalized.
    pub greetings: Vec<(usize, String)>,
    /// One outcome per step run.
    pub steps: Vec<Outcome>,
    /// How long the run took.
    pub elapsed: Duration,
    /// Every capability list an authenticated session was shown (LOGIN's
    /// code, CAPABILITY), raw, as (where, set): they must all agree.
    pub capabilities: Vec<(String, BTreeSet<String>)>,
}

struct Session {
    client: Option<ImapClient>,
    next_tag: u32,
    /// The tag of the IDLE in progress and what it has said so far.
    idle: Option<(String, Outcome)>,
    authenticated: bool,
}

impl Session {
    fn tag(&mut self, s: usize) -> String {
        self.next_tag += 1;
        format!("{}{}", letter(s), self.next_tag)
    }
}

/// Runs `script` against `target`, whose backends must know the script's
/// user ([`Target::add_users`]).
pub fn run(target: &Target, script: &Script) -> Transcript {
    let started = Instant::now();
    let mut t = run_steps(target, script);
    t.elapsed = started.elapsed();
    t
}

fn run_steps(target: &Target, script: &Script) -> Transcript {
    let mut t = Transcript {
        target: target.label(),
        ..Transcript::default()
    };
    let user = script.user();
    let mut tolerated = target.lag();
    if let Err(e) = setup(target, script, &user, tolerated) {
        t.aborted = Some((0, format!("setup: {e}")));
        return t;
    }
    let side = target.side();
    let mut sessions: Vec<Option<Session>> = (0..MAX_SESSIONS).map(|_| None).collect();
    for &s in &script.sessions {
        match open(target, s, &user, script.noauth.contains(&s), side, &mut t) {
            Ok(session) => sessions[s] = Some(session),
            Err(e) => {
                t.aborted = Some((0, format!("session {}: {e}", letter(s))));
                return t;
            }
        }
    }
    for (i, step) in script.steps.iter().enumerate() {
        let session = sessions[step.session]
            .as_mut()
            .expect("every session of the script is open");
        let began = Instant::now();
        let outcome = match one_step(session, step.session, &step.command, &user, side, &mut t) {
            Ok(o) => Outcome {
                elapsed: began.elapsed(),
                ..o
            },
            Err(e) => {
                let mut o = Outcome::default();
                o.lines.push(format!("!! {e}"));
                o.raw.push(format!("!! {e}"));
                session.client = None;
                o
            }
        };
        t.steps.push(outcome);
        if !may_change(&step.command) {
            continue;
        }
        match target.settle(tolerated) {
            Ok(()) => {}
            Err(Unsettled::Lag(lag, e)) => {
                // Reported once: later steps answer for new lag only.
                tolerated = lag;
                let last = t.steps.last_mut().expect("just pushed");
                last.lines.push(format!("!! {e}"));
                last.raw.push(format!("!! {e}"));
            }
            Err(Unsettled::Log(e)) => {
                t.aborted = Some((i + 1, e));
                break;
            }
        }
    }
    for s in sessions.iter_mut().flatten() {
        if let Some(mut c) = s.client.take() {
            if let Some((tag, _)) = s.idle.take() {
                let _ = c.write(b"DONE\r\n");
                let _ = c.finish(&tag);
            }
            let _ = c.command("LOGOUT");
        }
    }
    t
}

/// Whether a command may change what other sessions see (so that, on
/// several nodes, the next step must wait until every node applied it):
/// everything but the commands that only read, and a FETCH that sets no
/// `\Seen` (only PEEK sections, no RFC822 or RFC822.TEXT).
fn may_change(command: &str) -> bool {
    let upper = command.to_ascii_uppercase();
    let mut words = upper.split_whitespace();
    let mut verb = words.next().unwrap_or("");
    if verb == "UID" {
        verb = words.next().unwrap_or("");
    }
    match verb {
        "NOOP" | "CHECK" | "CAPABILITY" | "SELECT" | "EXAMINE" | "LIST" | "LSUB" | "STATUS"
        | "SEARCH" | "NAMESPACE" | "ID" | "ENABLE" | "LOGIN" | "AUTHENTICATE" | "IDLE"
        | "LOGOUT" | "UNSELECT" => false,
        "FETCH" => {
            let unpeeked = upper.replace(".PEEK[", "").replace("RFC822.SIZE", "");
            ["BODY[", "BINARY[", "RFC822"]
                .iter()
                .any(|k| unpeeked.contains(k))
        }
        _ => true,
    }
}

/// Runs the `setup:` lines through a session of their own (on session A's
/// node), each must answer OK; then waits for the cluster to settle.
fn setup(target: &Target, script: &Script, user: &str, tolerated: u64) -> Result<(), String> {
    if script.setup.is_empty() {
        return Ok(());
    }
    let mut c = login(target.addr(0), user)?;
    let mut n = 0;
    for line in &script.setup {
        for cmd in script::setup_commands(line)? {
            n += 1;
            let tag = format!("S{n}");
            let e = script::expand(&cmd, user)?;
            // A node that has just seen the user may not have registered
            // its INBOX yet: retry what it calls unavailable.
            let mut tries = 0;
            loop {
                let o = send(&mut c, &tag, &e, Side::Direct).map_err(|e| format!("{cmd}: {e}"))?;
                let last = o.raw.last().cloned().unwrap_or_default();
                if o.lines.last().is_some_and(|l| l.starts_with("OK")) {
                    break;
                }
                tries += 1;
                if !last.contains("UNAVAILABLE") || tries > 50 {
                    return Err(format!("{cmd}: {last}"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let _ = c.command("LOGOUT");
    match target.settle(tolerated) {
        Err(Unsettled::Log(e)) => Err(e),
        // A lag the setup leaves is the first step's to report.
        Ok(()) | Err(Unsettled::Lag(..)) => Ok(()),
    }
}

fn login(addr: SocketAddr, user: &str) -> Result<ImapClient, String> {
    let mut c = ImapClient::connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(READ_TIMEOUT)
        .map_err(|e| format!("timeout: {e}"))?;
    let r = c
        .command(&format!("LOGIN {user} {USER_PASSWORD}"))
        .map_err(|e| format!("LOGIN: {e}"))?;
    if r.status != Status::Ok {
        return Err(format!("LOGIN {user}: {r:?}"));
    }
    Ok(c)
}

fn open(
    target: &Target,
    s: usize,
    user: &str,
    noauth: bool,
    side: Side,
    t: &mut Transcript,
) -> Result<Session, String> {
    let addr = target.addr(s);
    let client = if noauth {
        let mut c = ImapClient::connect(addr).map_err(|e| format!("connect: {e}"))?;
        c.set_read_timeout(READ_TIMEOUT)
            .map_err(|e| format!("timeout: {e}"))?;
        let g = format!("{}\r\n", c.greeting);
        t.greetings
            .push((s, normalize::untagged(g.as_bytes(), side)));
        c
    } else {
        let mut c = ImapClient::connect(addr).map_err(|e| format!("connect: {e}"))?;
        c.set_read_timeout(READ_TIMEOUT)
            .map_err(|e| format!("timeout: {e}"))?;
        let r = c
            .command(&format!("LOGIN {user} {USER_PASSWORD}"))
            .map_err(|e| format!("LOGIN: {e}"))?;
        if r.status != Status::Ok {
            return Err(format!("LOGIN {user}: {r:?}"));
        }
        if let Some(words) = r.code("CAPABILITY") {
            t.capabilities.push((
                format!("{}: LOGIN (before the steps)", letter(s)),
                words.iter().map(|w| w.to_ascii_uppercase()).collect(),
            ));
        }
        c
    };
    Ok(Session {
        client: Some(client),
        next_tag: 0,
        idle: None,
        authenticated: !noauth,
    })
}

/// Runs one step of session `s`.
fn one_step(
    session: &mut Session,
    s: usize,
    command: &str,
    user: &str,
    side: Side,
    t: &mut Transcript,
) -> Result<Outcome, String> {
    let upper = command.trim().to_ascii_uppercase();
    if let Some((tag, mut so_far)) = session.idle.take() {
        if upper != "DONE" {
            return Err(format!(
                "session {} is idling: only DONE may follow",
                letter(s)
            ));
        }
        let c = session.client.as_mut().ok_or("session closed")?;
        collect_unprompted(c, &mut so_far, side).map_err(|e| format!("during IDLE: {e}"))?;
        c.write(b"DONE\r\n").map_err(|e| e.to_string())?;
        let rest = finish(c, &tag, side).map_err(|e| format!("after DONE: {e}"))?;
        so_far.raw.extend(rest.raw);
        so_far.lines.extend(rest.lines);
        return Ok(so_far);
    }
    if session.client.is_none() {
        return Err("session closed".to_string());
    }
    let tag = session.tag(s);
    let c = session.client.as_mut().expect("checked above");
    if upper == "IDLE" {
        c.write(format!("{tag} IDLE\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut o = Outcome::default();
        loop {
            let r = c.read_response().map_err(|e| e.to_string())?;
            push(&mut o, &r, side);
            if r.starts_with(b"+") {
                session.idle = Some((tag, o.clone()));
                o.lines.push("(idling)".to_string());
                return Ok(o);
            }
            if !r.starts_with(b"* ") {
                // The IDLE was refused: its tagged answer.
                let line = normalize::display(&r);
                o.lines.pop();
                o.lines.push(tagged_line(&line, &tag, side));
                return Ok(o);
            }
        }
    }
    let e = script::expand(command, user)?;
    let o = send(c, &tag, &e, side).map_err(|e| e.to_string())?;
    let last = o.lines.last().cloned().unwrap_or_default();
    let verb = upper.split(' ').next().unwrap_or("");
    if last.starts_with("OK") && matches!(verb, "LOGIN" | "AUTHENTICATE") {
        session.authenticated = true;
    }
    if session.authenticated {
        let where_ = format!("{}: {command}", letter(s));
        for raw in &o.raw {
            if let Some(words) = capability_words(raw) {
                t.capabilities.push((where_.clone(), words));
            }
        }
    }
    // LOGOUT, or a BYE: the server closes the connection.
    if verb == "LOGOUT" || o.raw.iter().any(|l| l.starts_with("* BYE")) {
        session.client = None;
    }
    Ok(o)
}

/// The raw capability words of a `* CAPABILITY` response or a status line
/// with a CAPABILITY code, upper-cased.
fn capability_words(raw: &str) -> Option<BTreeSet<String>> {
    let upper = raw.to_ascii_uppercase();
    let words = if let Some(rest) = upper.strip_prefix("* CAPABILITY ") {
        rest.to_string()
    } else {
        let at = upper.find("[CAPABILITY ")?;
        let rest = &upper[at + "[CAPABILITY ".len()..];
        rest.split(']').next()?.to_string()
    };
    Some(words.split_whitespace().map(str::to_string).collect())
}

/// Reads what a server says on its own during IDLE: waits up to
/// [`IDLE_FIRST`] for a first response, then until [`IDLE_QUIET`] passes
/// without another.
fn collect_unprompted(c: &mut ImapClient, o: &mut Outcome, side: Side) -> io::Result<()> {
    // The "(idling)" marker of the IDLE step is not part of the answer.
    let mut wait = IDLE_FIRST;
    while let Some(r) = c.poll_response(wait)? {
        push(o, &r, side);
        wait = IDLE_QUIET;
    }
    Ok(())
}

fn push(o: &mut Outcome, raw: &[u8], side: Side) {
    o.raw.push(normalize::display(raw));
    o.lines.push(normalize::untagged(raw, side));
}

fn tagged_line(line: &str, tag: &str, side: Side) -> String {
    let rest = line
        .strip_prefix(tag)
        .and_then(|r| r.strip_prefix(' '))
        .unwrap_or(line);
    let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = match word.to_ascii_uppercase().as_str() {
        "OK" => Status::Ok,
        "NO" => Status::No,
        "BAD" => Status::Bad,
        _ => return format!("?? {line}"),
    };
    normalize::tagged(status, text, side)
}

/// Sends an expanded command (waiting for each literal's continuation) and
/// reads its answer up to the tagged line.
fn send(c: &mut ImapClient, tag: &str, e: &Expanded, side: Side) -> io::Result<Outcome> {
    let mut o = Outcome::default();
    let mut head = format!("{tag} ").into_bytes();
    for (i, part) in e.parts.iter().enumerate() {
        head.extend_from_slice(part);
        let Some(literal) = e.literals.get(i) else {
            break;
        };
        if e.nonsync[i] {
            head.extend_from_slice(format!("{{{}+}}\r\n", literal.len()).as_bytes());
            head.extend_from_slice(literal);
            continue;
        }
        head.extend_from_slice(format!("{{{}}}\r\n", literal.len()).as_bytes());
        c.write(&head)?;
        head.clear();
        loop {
            let r = c.read_response()?;
            if r.starts_with(b"+") {
                break;
            }
            if r.starts_with(b"* ") {
                push(&mut o, &r, side);
                continue;
            }
            // Refused before the literal was sent: this is the answer.
            let line = normalize::display(&r);
            o.raw.push(line.clone());
            o.lines.push(tagged_line(&line, tag, side));
            return Ok(o);
        }
        c.write(literal)?;
    }
    head.extend_from_slice(b"\r\n");
    c.write(&head)?;
    let rest = finish(c, tag, side)?;
    o.raw.extend(rest.raw);
    o.lines.extend(rest.lines);
    Ok(o)
}

/// Reads up to the tagged line of `tag`. A continuation request here
/// (AUTHENTICATE asking for more) is answered with `*`, which cancels.
fn finish(c: &mut ImapClient, tag: &str, side: Side) -> io::Result<Outcome> {
    let mut o = Outcome::default();
    loop {
        let r = c.read_response()?;
        if r.starts_with(b"* ") {
            push(&mut o, &r, side);
            continue;
        }
        if r.starts_with(b"+") {
            push(&mut o, &r, side);
            c.write(b"*\r\n")?;
            continue;
        }
        let line = normalize::display(&r);
        if !line.starts_with(&format!("{tag} ")) {
            return Err(io::Error::other(format!("unexpected line {line:?}")));
        }
        o.raw.push(line.clone());
        o.lines.push(tagged_line(&line, tag, side));
        return Ok(o);
    }
}

#[cfg(test)]
mod tests {
    use super::may_change;

    #[test]
    fn only_reads_go_on_without_waiting_for_the_cluster() {
        for c in [
            "NOOP",
            "UID SEARCH ALL",
            "FETCH 1 (BODY.PEEK[] RFC822.SIZE)",
            "SELECT INBOX",
        ] {
            assert!(!may_change(c), "{c}");
        }
        for c in [
            "FETCH 1 (BODY[])",
            "UID FETCH 1 RFC822",
            "STORE 1 +FLAGS (\\Seen)",
            "DONE",
            "CLOSE",
        ] {
            assert!(may_change(c), "{c}");
        }
    }
}
