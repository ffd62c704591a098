//! The differential conformance suite: scripted conversations of one to
//! five interleaved sessions, run straight against a backend (Dovecot or
//! Cyrus) and through tandem (one node, or the sessions spread over three
//! nodes), whose answers must be the same up to normalization
//! ([`normalize`]). `proxy/tests/conformance.rs` runs it; a script is a
//! small text file under `tests/scripts/`.
//!
//! # Script format
//!
//! One directive per line; blank lines are ignored.
//!
//! ```text
//! # Free text: what the script checks (shown in the report).
//! setup: CREATE Work                 any command, run before the sessions
//! setup: fill INBOX 3                APPEND m1..m3 with fixed dates
//! noauth: C                          C connects but does not log in
//! A: SELECT INBOX                    session A sends a command
//! B: STORE 1 +FLAGS (\Deleted)
//! A: APPEND INBOX (\Seen) "01-Jan-2024 10:00:00 +0000" {msg:m4}
//! B: IDLE                            B idles while the next steps run...
//! A: EXPUNGE
//! B: DONE                            ...and DONE collects what B heard
//! A: SELECT INBOX (CONDSTORE)
//! differs: MODSEQs are per node, tandem hides CONDSTORE => BAD
//! cyrus: skip Dovecot's own extension
//! ```
//!
//! - Every user of the script is a fresh one, named after the file
//!   (`cf_<name>`), so mailboxes start empty and UIDs at 1 on every path.
//! - Sessions are `A` to `E`. Each logs in (LOGIN) before the first step,
//!   unless listed in `noauth:`, in which case its greeting is compared
//!   and the script logs it in (`LOGIN $USER $PASS`, `AUTHENTICATE PLAIN
//!   $PLAIN`).
//! - Steps run one at a time in file order; each reads the command's
//!   whole answer (untagged responses in order, then the tagged line).
//!   Through three nodes, session A uses node 1, B node 2, C node 3, D
//!   node 1, E node 2, and after each step every node applies everything
//!   committed before the next step starts.
//! - Placeholders: `{msg:NAME}` is a literal holding a small text message
//!   with subject NAME, `{mime:NAME}` a multipart one, `{lit:TEXT}` a
//!   literal of TEXT; literals are synchronizing (the runner waits for
//!   `+`). `$USER`, `$PASS`, `$PLAIN` are the user's name, password and
//!   SASL PLAIN initial response.
//! - `IDLE` starts an IDLE; later steps of other sessions run while it
//!   lasts; the session's next step must be `DONE`, whose answer is all the
//!   session heard since `+` (waiting up to 1.5 s for a first response)
//!   plus the IDLE's tagged answer.
//! - `differs: <reason> [=> <answer>]` after a step documents that tandem
//!   must answer it otherwise than the backend: the step is not compared,
//!   and with `=> NO [CANNOT]` tandem's tagged answer must start so.
//!   Capabilities tandem hides or adds need no `differs:`: capability
//!   lists are compared as sets minus those ([`normalize::hidden_by_tandem`]).
//! - `cyrus: <reason>` leaves the script out of the Cyrus runs.
//!
//! Besides the step-by-step comparison, every capability list an
//! authenticated session is shown (LOGIN's code, CAPABILITY) must be the
//! same one through tandem.
//!
//! # Running
//!
//! `cargo test -p tandem-proxy --test conformance` runs every script
//! direct and through tandem; `CONFORMANCE_SCRIPT=name1,name2` runs only
//! the scripts whose names contain one of those; `CONFORMANCE_VERBOSE=1`
//! prints the report of every script, not only of those that differ;
//! `CONFORMANCE_LOGS=1` prints the tandem nodes' logs after the run.

pub mod compare;
pub mod normalize;
pub mod runner;
pub mod script;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub use compare::{compare, Verdict};
pub use runner::{run, Target, Transcript};
pub use script::Script;

use crate::{Backend, BackendKind, TandemCluster};

/// `tests/scripts`.
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// The scripts to run: all of them, or those `CONFORMANCE_SCRIPT` names
/// (comma-separated substrings of names); those marked `cyrus:` are left
/// out for Cyrus. Panics on a script that does not parse.
pub fn selected(kind: BackendKind) -> Vec<Script> {
    let all = script::load_dir(&scripts_dir()).unwrap_or_else(|e| panic!("{e}"));
    let filter = std::env::var("CONFORMANCE_SCRIPT").unwrap_or_default();
    let wanted: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    all.into_iter()
        .filter(|s| wanted.is_empty() || wanted.iter().any(|w| s.name.contains(w)))
        .filter(|s| kind != BackendKind::Cyrus || s.skip_cyrus.is_none())
        .collect()
}

/// Runs `scripts` straight against a fresh backend of `kind`, then through
/// a fresh tandem cluster of `nodes` nodes (with the `tandem` at
/// `binary`), and compares. Returns one verdict per script.
pub fn run_suite(binary: &Path, kind: BackendKind, nodes: u64, scripts: &[Script]) -> Vec<Verdict> {
    let users: Vec<String> = scripts.iter().map(Script::user).collect();
    let direct_runs = direct_runs(kind, scripts);
    let cluster = TandemCluster::builder()
        .binary(binary)
        .nodes(nodes)
        .backend(kind)
        .start();
    let tandem = Target::Tandem(cluster);
    tandem
        .add_users(&users)
        .unwrap_or_else(|e| panic!("adding users: {e}"));
    let verdicts = scripts
        .iter()
        .zip(&direct_runs)
        .map(|(s, d)| compare(s, d, &run(&tandem, s)))
        .collect();
    if std::env::var_os("CONFORMANCE_LOGS").is_some() {
        if let Target::Tandem(c) = &tandem {
            for id in c.mail_ids() {
                eprintln!("---- tandem node {id} ----\n{}", c.log(id));
            }
        }
    }
    verdicts
}

/// The scripts' transcripts straight from a fresh backend of `kind`,
/// run once per process and kind (the tests of several cluster sizes
/// share them).
fn direct_runs(kind: BackendKind, scripts: &[Script]) -> Vec<Transcript> {
    type Cache = Mutex<HashMap<(String, Vec<String>), Vec<Transcript>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (
        format!("{kind:?}"),
        scripts.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
    );
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(runs) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return runs.clone();
    }
    let users: Vec<String> = scripts.iter().map(Script::user).collect();
    let direct = Target::Direct(Backend::start(kind));
    direct
        .add_users(&users)
        .unwrap_or_else(|e| panic!("adding users: {e}"));
    let runs: Vec<Transcript> = scripts.iter().map(|s| run(&direct, s)).collect();
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, runs.clone());
    runs
}

/// The report of a suite's run: every differing script's report (every
/// script's with `CONFORMANCE_VERBOSE`), then the list of those that
/// differ, one line each with their first differences.
pub fn report(label: &str, verdicts: &[Verdict]) -> String {
    let verbose = std::env::var_os("CONFORMANCE_VERBOSE").is_some();
    let mut out = String::new();
    for v in verdicts {
        if verbose || !v.conforms() {
            out.push_str(&v.report);
            out.push('\n');
        }
    }
    let mut slow: Vec<&Verdict> = verdicts.iter().collect();
    slow.sort_by_key(|v| std::cmp::Reverse(v.elapsed));
    let total: std::time::Duration = verdicts.iter().map(|v| v.elapsed).sum();
    out.push_str(&format!(
        "{label}: scripts took {total:.1?} (direct and tandem); slowest:"
    ));
    for v in slow.iter().take(5) {
        out.push_str(&format!(" {} {:.1?};", v.script, v.elapsed));
    }
    out.push('\n');
    let differing: Vec<&Verdict> = verdicts.iter().filter(|v| !v.conforms()).collect();
    out.push_str(&format!(
        "{label}: {} of {} scripts differ\n",
        differing.len(),
        verdicts.len()
    ));
    for v in differing {
        out.push_str(&format!("  {}: {}\n", v.script, v.differences.join("; ")));
    }
    out
}
