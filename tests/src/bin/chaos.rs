//! `make chaos`: a chaos campaign against a cluster of `tandem run`
//! processes in front of real Dovecots or Cyrus servers (see
//! `tandem_tests::chaos`).
//!
//! `chaos [--seconds N] [--seed S] [--clients C] [--backend dovecot|cyrus]
//! [--negative-control]`;
//! exits 1 when the checker found a violation (or, with
//! `--negative-control`, when it found none).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let mut opts = tandem_tests::chaos::Options {
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        ..Default::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse::<u64>().ok());
        match a.as_str() {
            "--seconds" => opts.duration = Duration::from_secs(value().unwrap_or(600)),
            "--seed" => opts.seed = value().unwrap_or(1),
            "--clients" => opts.clients = value().unwrap_or(6) as usize,
            "--negative-control" => opts.negative_control = true,
            "--backend" => {
                let name = args.next().unwrap_or_default();
                opts.backends = match (name.as_str(), tandem_tests::BackendKind::parse(&name)) {
                    (_, Some(kind)) => vec![kind],
                    // Node 2 in front of Cyrus, the others of Dovecot.
                    ("mixed", None) => vec![
                        tandem_tests::BackendKind::Dovecot,
                        tandem_tests::BackendKind::Cyrus,
                    ],
                    _ => {
                        eprintln!("chaos: --backend is dovecot, cyrus or mixed, not {name:?}");
                        return ExitCode::from(2);
                    }
                };
            }
            other => {
                eprintln!("chaos: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    eprintln!(
        "chaos: seed {}, {} s, {} clients, {}{}",
        opts.seed,
        opts.duration.as_secs(),
        opts.clients,
        opts.backends
            .iter()
            .map(|k| k.config_name())
            .collect::<Vec<_>>()
            .join("+"),
        if opts.negative_control {
            ", negative control (acknowledge before commit)"
        } else {
            ""
        }
    );
    // Ctrl-C or SIGTERM: stop injecting faults, then heal, check and stop
    // every process as usual (a killed campaign would leave them running).
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("chaos: interrupted; healing and checking");
        tandem_tests::chaos::interrupt();
    });
    let summary = tandem_tests::chaos::run(&opts);
    for v in summary.violations.iter().take(50) {
        println!("violation: {v}");
    }
    println!("faults: {:?}", summary.faults);
    println!(
        "answers: {} ok, {} refused, {} without an answer",
        summary.acknowledged, summary.refused, summary.unanswered
    );
    for s in &summary.samples {
        println!("  {s}");
    }
    if let Some(dir) = &summary.logs {
        println!("node logs kept in {}", dir.display());
    }
    println!("{}", summary.line());
    let failed = summary.violations.is_empty() == opts.negative_control;
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
