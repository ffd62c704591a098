//! The long stress (see `tandem_tests::stress`): random commands from many
//! sessions, every response checked against what its session was told.
//!
//! `stress [--seconds N] [--seed S] [--sessions N] [--users 1|2]
//! [--mode direct|one-node|leader|follower|three-nodes|single]... [--transcripts DIR]` (several
//! `--mode`s run one after the other; default: direct then one-node;
//! `--transcripts` writes every session's commands and responses to
//! `DIR/<mode>-<user>-<n>.txt`; `--against HOST:PORT`, repeated, runs
//! against servers already running, whose users alice and bob have the
//! test password; `--pin 1` gives the sessions' node and the sessions CPU
//! 0 and the other nodes CPU 1, each node on a core of its own); exits 1 when the model found a violation
//! in any mode.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use tandem_tests::stress::{run, Mode, Options};

fn main() -> ExitCode {
    let mut opts = Options {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        duration: Duration::from_secs(60),
        ..Options::default()
    };
    let mut modes = Vec::new();
    let mut examples = 3;
    let mut transcripts: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().unwrap_or_default();
        let number = value.parse::<u64>().ok();
        match (a.as_str(), number) {
            ("--seconds", Some(n)) => opts.duration = Duration::from_secs(n),
            ("--seed", Some(n)) => opts.seed = n,
            ("--sessions", Some(n)) => opts.sessions = n as usize,
            ("--users", Some(n @ 1..=2)) => opts.users = n as usize,
            ("--examples", Some(n)) => examples = n as usize,
            ("--pin", Some(n)) => opts.pin = n != 0,
            ("--transcripts", _) => {
                opts.record = true;
                transcripts = Some(value.into());
            }
            ("--against", _) => match value.parse() {
                Ok(addr) => {
                    opts.against.push(addr);
                    if !modes.contains(&Mode::Against) {
                        modes.push(Mode::Against);
                    }
                }
                Err(_) => {
                    eprintln!("stress: --against takes HOST:PORT, not {value:?}");
                    return ExitCode::from(2);
                }
            },
            ("--mode", _) => match Mode::parse(&value) {
                Some(m) => modes.push(m),
                None => {
                    eprintln!("stress: --mode is direct, one-node, leader, follower, three-nodes or single, not {value:?}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("stress: unknown argument {a} {value}");
                return ExitCode::from(2);
            }
        }
    }
    if modes.is_empty() {
        modes = vec![Mode::Direct, Mode::OneNode];
    }
    let mut failed = false;
    let mut lines = Vec::new();
    for mode in modes {
        eprintln!(
            "stress: {} for {} s, seed {}, {} sessions x {} users",
            mode.name(),
            opts.duration.as_secs(),
            opts.seed,
            opts.sessions,
            opts.users
        );
        let summary = run(&Options {
            mode,
            ..opts.clone()
        });
        println!("{}", summary.report(examples));
        println!("{}", summary.time_table());
        if let Some(dir) = &transcripts {
            if let Err(e) = write_transcripts(dir, &summary) {
                eprintln!("stress: cannot write transcripts to {}: {e}", dir.display());
            }
        }
        failed |= !summary.violations.is_empty();
        lines.push(summary.line());
    }
    for l in lines {
        println!("{l}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn write_transcripts(
    dir: &std::path::Path,
    summary: &tandem_tests::stress::Summary,
) -> std::io::Result<()> {
    use tandem_tests::stress::model::{shown, Event};
    std::fs::create_dir_all(dir)?;
    for (name, events) in &summary.transcripts {
        let mut text = String::new();
        for e in events {
            match e {
                Event::Sent { tag, cmd } => {
                    text.push_str(&format!("C: {tag} {}\n", cmd.text("***")))
                }
                Event::Received(bytes) => text.push_str(&format!("S: {}\n", shown(bytes))),
                Event::Closed(why) => text.push_str(&format!("closed: {why}\n")),
            }
        }
        let file = format!("{}-{}.txt", summary.mode, name.replace('/', "-"));
        std::fs::write(dir.join(file), text)?;
    }
    Ok(())
}
