//! The command line of `tandem`.
//!
//! Exit codes: 0 success; 1 a check failed or a command could not finish;
//! 2 the command line or the config is invalid.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// Synchronous replication for existing IMAP servers.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about)]
pub struct Cli {
    /// Log format on stderr: `text` (default) or `json` (one object per
    /// line). The level comes from TANDEM_LOG (default `warn`).
    #[arg(long, global = true, default_value = "text")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file and probe its backend: reachable, IMAP
    /// greeting, the admin can act as a user, CAPABILITY has UIDPLUS,
    /// LITERAL+ and MOVE, the namespace, and a probe message stored byte for
    /// byte.
    Check {
        /// The node's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The user the admin acts as during the probe.
        #[arg(long, default_value = "alice")]
        user: String,
        /// Only validate the config; do not contact the backend.
        #[arg(long)]
        offline: bool,
        /// Do not run the storage probe (it creates, fills and deletes a
        /// scratch mailbox `tandem-check-*` of the user).
        #[arg(long)]
        no_write: bool,
    },
    /// Run the node: its Raft node on listen.peer and, on a mail node, IMAP
    /// clients served in front of the configured backend. A witness runs
    /// only the Raft node.
    Run {
        /// The node's config file.
        #[arg(long, short)]
        config: PathBuf,
        /// First start of a brand-new cluster only: on an empty log, write
        /// the initial membership (every node of the new cluster may pass
        /// it). Never pass it again, nor for a node whose disk was
        /// replaced: such a node must be brought up to date by a leader
        /// before it may vote.
        #[arg(long)]
        bootstrap: bool,
    },
    /// Start a local cluster of real Dovecot (or Cyrus) backends and tandem
    /// nodes, each its own process, and print where to connect. Ctrl-C or
    /// SIGTERM stops everything.
    Demo {
        /// Where to keep configs, logs and data (default: a new directory
        /// under the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Number of nodes (1 to 9).
        #[arg(long, default_value_t = 3)]
        nodes: u16,
        /// The backend every node runs: `dovecot` or `cyrus` (Cyrus 3.6,
        /// as `make deps` installs it).
        #[arg(long, value_enum, default_value = "dovecot")]
        backend: crate::config::BackendKind,
        /// Node n's ports are n * BASE + 143 (IMAP), + 144 (Dovecot), ...
        /// Tests use another base to stay off the documented ports.
        #[arg(long, default_value_t = 1000, hide = true)]
        port_base: u16,
    },
    /// Print the status of nodes from their metrics endpoints
    /// (`listen.metrics`): role, Raft state, term, leader, indexes,
    /// replication lag, backend health. With --config: that node and every
    /// `[[peer]]` that names its `metrics` address. Exit 1 if a node does
    /// not answer.
    Status {
        /// A node's config file: its `listen.metrics` is asked.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Metrics endpoints to ask (host:port), repeatable.
        #[arg(long)]
        addr: Vec<String>,
    },
    /// Create a cluster CA and node certificates for replication (mutual
    /// TLS). Reuses DIR/ca.key when present, so nodes can be added later;
    /// never overwrites a node's files.
    Certs {
        /// Where to write ca.pem, ca.key, node-<id>.pem and node-<id>.key.
        #[arg(long)]
        dir: PathBuf,
        /// Node ids, comma-separated (e.g. 1,2,3).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<u64>,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        // Colours only on a terminal: node logs usually go to files.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match cli.command {
        Command::Check {
            config,
            user,
            offline,
            no_write,
        } => check(config, &user, offline, !no_write),
        Command::Certs { dir, nodes } => certs(&dir, &nodes),
        Command::Status { config, addr } => status(config, addr),
        Command::Run { config, bootstrap } => run(config, bootstrap),
        Command::Demo {
            dir,
            nodes,
            backend,
            port_base,
        } => demo(dir, nodes, port_base, backend),
    }
}

fn demo(dir: Option<PathBuf>, nodes: u16, base: u16, kind: crate::config::BackendKind) -> ExitCode {
    if !(1..=9).contains(&nodes) {
        eprintln!("tandem demo: --nodes must be between 1 and 9");
        return ExitCode::from(2);
    }
    if base < 1000 || u32::from(base) * u32::from(nodes) + 993 > 65535 {
        eprintln!("tandem demo: --port-base out of range");
        return ExitCode::from(2);
    }
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tandem-demo-{}", std::process::id()))
    });
    let tandem = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tandem demo: cannot find the tandem binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Signals are handled from here on: Ctrl-C during the start stops what
    // was started (Cyrus masters run in process groups of their own and
    // would outlive a killed demo).
    let (signalled, signal) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(shutdown_signal());
        }
        crate::demo::INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = signalled.send(());
    });
    let mut demo = match crate::demo::Demo::start(&dir, nodes, base, &tandem, kind) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("tandem demo: {e}; logs are in {}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    println!(
        "tandem demo: {nodes} node(s) in front of {kind} in {}",
        dir.display()
    );
    for n in 1..=nodes {
        let p = crate::demo::NodePorts::of(n, base);
        println!(
            "  node {n}: IMAP 127.0.0.1:{} (STARTTLS)  IMAPS 127.0.0.1:{}  {kind} 127.0.0.1:{}  LMTP 127.0.0.1:{}",
            p.imap, p.imaps, p.backend, p.lmtp
        );
    }
    println!(
        "  TLS:   certificates from the demo CA {}",
        dir.join("ca.pem").display()
    );
    println!("  users: alice, bob; password: demo");
    println!("  try:   python3 -c \"import imaplib; M=imaplib.IMAP4('127.0.0.1', {}); print(M.login('alice','demo'))\"", crate::demo::NodePorts::of(1, base).imap);
    if nodes > 1 {
        println!(
            "  note:  the nodes form one Raft cluster: what a client changes through one node \
             is on every node's {kind}, with the same UIDs"
        );
    }
    println!("tandem demo: ready; Ctrl-C stops everything");
    let _ = signal.recv();
    demo.stop();
    println!("tandem demo: stopped");
    ExitCode::SUCCESS
}

fn run(path: PathBuf, bootstrap: bool) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    // Everything that can be checked is checked before a port is bound.
    let tls = match config.tls.as_ref().map(crate::tls::acceptor).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    let node_config = match crate::cluster::node_config(&config, bootstrap) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("tandem: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let witness = config.node.role == crate::config::Role::Witness;
        let mut listeners = Vec::new();
        for (addr, implicit_tls) in [(config.listen.imap, false), (config.listen.imaps, true)] {
            let Some(addr) = addr else { continue };
            match tokio::net::TcpListener::bind(addr).await {
                Ok(socket) => {
                    tracing::info!(%addr, implicit_tls, "serving IMAP");
                    listeners.push(crate::server::Listener {
                        socket,
                        implicit_tls,
                    });
                }
                Err(e) => {
                    eprintln!("tandem: cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if listeners.is_empty() && !witness {
            eprintln!("tandem: nothing to serve: set listen.imap or listen.imaps");
            return ExitCode::from(2);
        }
        let metrics_listener = match config.listen.metrics {
            Some(addr) => match crate::status::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("tandem: cannot listen on {addr} (listen.metrics): {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let handle = crate::metrics::install();
        let replication = match crate::replication::Replication::start(&config, node_config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("tandem: cannot start the replicated log: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(
            id = config.node.id,
            peer = %config.listen.peer,
            bootstrap,
            witness,
            "replicated log started"
        );
        let config = std::sync::Arc::new(config);
        let source = crate::status::Source::new(config.clone(), replication.clone());
        let raft_dir = crate::cluster::raft_dir(&config);
        let mut tasks = vec![tokio::spawn(crate::status::sampler(source.clone(), raft_dir))];
        if let Some(l) = metrics_listener {
            tracing::info!(addr = ?l.local_addr().ok(), "serving metrics, /healthz, /readyz, /status");
            tasks.push(tokio::spawn(crate::status::serve(l, handle, source)));
        }
        if witness {
            shutdown_signal().await;
        } else {
            crate::server::run(
                listeners,
                config,
                tls,
                Some(replication.clone()),
                shutdown_signal(),
            )
            .await;
        }
        for t in tasks {
            t.abort();
        }
        replication.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn certs(dir: &std::path::Path, nodes: &[u64]) -> ExitCode {
    if let Some(bad) = nodes.iter().find(|id| **id == 0) {
        eprintln!("tandem certs: node id {bad} is invalid: ids are positive integers");
        return ExitCode::from(2);
    }
    match tandem_replicator::tls::write_cluster_certs(dir, nodes) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            println!(
                "Give each node ca.pem, its node-<id>.pem and node-<id>.key; keep ca.key offline."
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tandem certs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: PathBuf, user: &str, offline: bool, write: bool) -> ExitCode {
    println!("tandem check: {}", path.display());
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            println!("  FAIL  config       {e}");
            println!("check FAILED: the config is invalid");
            return ExitCode::from(2);
        }
    };
    if offline {
        println!("  ok    config       valid (backend not probed: --offline)");
        println!("check passed");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tandem: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(crate::check::run(&config, user, write));
    println!("{report}");
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `tandem status`: asks each endpoint's `/status` and prints one line per
/// node.
fn status(config: Option<PathBuf>, mut addrs: Vec<String>) -> ExitCode {
    if let Some(path) = config {
        match Config::load(&path) {
            Ok(c) => match c.listen.metrics {
                Some(a) => {
                    // This node, then the peers whose endpoints are known.
                    let peers = c.peers.iter().filter_map(|p| p.metrics.clone());
                    let all: Vec<String> = std::iter::once(a.to_string()).chain(peers).collect();
                    addrs.splice(0..0, all);
                }
                None => {
                    eprintln!("tandem: {} has no listen.metrics", path.display());
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                eprintln!("tandem: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if addrs.is_empty() {
        eprintln!("tandem: give --config or --addr");
        return ExitCode::from(2);
    }
    println!(
        "{:<22} {:>4} {:<8} {:<10} {:>6} {:>7} {:>10} {:>10} {:>8} {:>8} {:<8}",
        "endpoint",
        "id",
        "role",
        "state",
        "term",
        "leader",
        "committed",
        "applied",
        "lag",
        "lag s",
        "backend"
    );
    let mut failed = false;
    for a in &addrs {
        match fetch_status(a) {
            Ok(s) => {
                let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
                println!(
                    "{:<22} {:>4} {:<8} {:<10} {:>6} {:>7} {:>10} {:>10} {:>8} {:>8.1} {:<8}",
                    a,
                    s.id,
                    s.role,
                    s.state,
                    s.term,
                    opt(s.leader),
                    opt(s.committed),
                    opt(s.applied),
                    s.lag_entries,
                    s.lag_seconds,
                    match s.backend_up {
                        Some(true) => "up",
                        Some(false) => "DOWN",
                        None => "-",
                    }
                );
                for (peer, lag) in &s.followers {
                    println!("{:<22}   follower {peer} lacks {lag} entries", "");
                }
                if s.resync_needed {
                    println!("{:<22}   NEEDS RESYNC", "");
                }
            }
            Err(e) => {
                failed = true;
                println!("{a:<22} unreachable: {e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// GET /status over plain HTTP/1.0.
fn fetch_status(addr: &str) -> Result<crate::status::Status, String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(3))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET /status HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.take(1 << 20)
        .read_to_end(&mut resp)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("not HTTP")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    serde_json::from_str(body).map_err(|e| e.to_string())
}
