//! `lognode`: one replicator node as its own OS process, for tests that kill
//! nodes with SIGKILL and for benchmarks of the log. It runs the
//! replicator's test state machine and answers a line protocol on a local
//! TCP control port:
//!
//! - `PUT <value>` -> `OK <number>` or `ERR <reason>`
//! - `STATUS` -> `STATUS leader=<id|-> term=<t> applied=<index|-> resync=<0|1>`
//! - `ITEMS` -> `ITEM <number> <value>` lines, then `END`
//!
//! `--bootstrap` on the first start of a new cluster only (see
//! `NodeConfig::bootstrap`).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tandem_replicator::testing::{items, Put, Seq};
use tandem_replicator::tls::{TlsFiles, TlsMaterial};
use tandem_replicator::{Node, NodeConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

struct Args {
    id: u64,
    listen: SocketAddr,
    members: BTreeMap<u64, String>,
    data: PathBuf,
    certs: PathBuf,
    control: SocketAddr,
    heartbeat: Duration,
    election: Duration,
    bootstrap: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut id = None;
    let mut listen = None;
    let mut members = BTreeMap::new();
    let mut data = None;
    let mut certs = None;
    let mut control = None;
    let mut heartbeat = Duration::from_millis(100);
    let mut election = Duration::from_millis(500);
    let mut bootstrap = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--bootstrap" {
            bootstrap = true;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--id" => id = Some(value.parse().map_err(|e| bad(&e))?),
            "--listen" => listen = Some(value.parse().map_err(|e| bad(&e))?),
            "--member" => {
                let (k, v) = value.split_once('=').ok_or(bad(&"expected id=addr"))?;
                members.insert(k.parse().map_err(|e| bad(&e))?, v.to_string());
            }
            "--data" => data = Some(PathBuf::from(value)),
            "--certs" => certs = Some(PathBuf::from(value)),
            "--control" => control = Some(value.parse().map_err(|e| bad(&e))?),
            "--heartbeat-ms" => {
                heartbeat = Duration::from_millis(value.parse().map_err(|e| bad(&e))?)
            }
            "--election-ms" => {
                election = Duration::from_millis(value.parse().map_err(|e| bad(&e))?)
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        id: id.ok_or("--id is required")?,
        listen: listen.ok_or("--listen is required")?,
        members,
        data: data.ok_or("--data is required")?,
        certs: certs.ok_or("--certs is required")?,
        control: control.ok_or("--control is required")?,
        heartbeat,
        election,
        bootstrap,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lognode: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lognode: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let tls = TlsMaterial::load(&TlsFiles {
        ca: args.certs.join("ca.pem"),
        cert: args.certs.join(format!("node-{}.pem", args.id)),
        key: args.certs.join(format!("node-{}.key", args.id)),
    })?;
    let mut config = NodeConfig::new(args.id, args.listen, args.members, args.data, tls);
    config.heartbeat = args.heartbeat;
    config.election_timeout = (args.election, args.election * 2);
    config.proposal_timeout = Duration::from_secs(3);
    config.bootstrap = args.bootstrap;
    let node = Arc::new(Node::start(config, Seq).await?);
    let listener = TcpListener::bind(args.control).await?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = answer(&node, &line).await;
                if write.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn answer(node: &Node<Seq>, line: &str) -> String {
    let (cmd, arg) = line.split_once(' ').unwrap_or((line, ""));
    match cmd {
        "PUT" => match node.propose::<Put, u64>(&Put(arg.to_string())).await {
            Ok(n) => format!("OK {n}\n"),
            Err(e) => format!("ERR {e}\n"),
        },
        "STATUS" => {
            let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            format!(
                "STATUS leader={} term={} applied={} resync={}\n",
                opt(node.leader()),
                node.term(),
                opt(node.applied_index()),
                u8::from(node.needs_resync().is_some())
            )
        }
        "ITEMS" => {
            let mut out = String::new();
            for (n, v) in items(node) {
                out.push_str(&format!("ITEM {n} {v}\n"));
            }
            out.push_str("END\n");
            out
        }
        _ => "ERR unknown command\n".to_string(),
    }
}
