//! Commit latency and throughput of the replicated log: 3 in-process nodes
//! on loopback, each with its own redb store (fsync per append batch) and
//! QUIC with mutual TLS between them. Proposals go to the leader; a
//! proposal counts when it is committed on a majority and applied on the
//! leader.
//!
//! Run: `cargo bench -p tandem-replicator --bench commit` (or `make bench`).
//! Set `BENCH_SECONDS` to change the time per configuration (default 4) and
//! `BENCH_FILTER` to run only the configurations whose label contains it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Cluster, Options, Put};

struct Row {
    name: String,
    size: usize,
    concurrency: usize,
    ops: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
    failed: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn run(
    name: &str,
    nodes: u64,
    loss: bool,
    size: usize,
    concurrency: usize,
    seconds: f64,
) -> Row {
    let cluster = Cluster::start(Options {
        nodes,
        relay: loss,
        proposal_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_millis(250),
        election_timeout: (Duration::from_millis(1000), Duration::from_millis(2000)),
        // The production default.
        log_segment_bytes: tandem_replicator::store::LOG_SEGMENT_BYTES,
        ..Options::default()
    })
    .await;
    cluster.leader(Duration::from_secs(15)).await;
    // Let the first election settle (all nodes start at once) before
    // measuring.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let leader = cluster.leader(Duration::from_secs(15)).await;
    if loss {
        cluster.net.as_ref().expect("relay").degrade_all(
            0.02,
            Duration::from_millis(1),
            Duration::ZERO,
        );
    }
    let cluster = Arc::new(cluster);
    let value = "x".repeat(size);
    for _ in 0..20 {
        let _ = cluster.propose(leader, &value).await;
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let cluster = cluster.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                match cluster
                    .node(leader)
                    .propose::<Put, u64>(&Put(value.clone()))
                    .await
                {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(_) => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (lat, f) = t.await.expect("bench task");
        all.extend(lat);
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let row = Row {
        name: name.to_string(),
        size,
        concurrency,
        ops: all.len(),
        seconds: elapsed,
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        failed,
    };
    match Arc::try_unwrap(cluster) {
        Ok(c) => c.shutdown().await,
        Err(_) => unreachable!("all bench tasks finished"),
    }
    row
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // BENCH_FILTER=substring runs only the matching configurations, e.g.
    // "4096x64" or "loss".
    let filter = std::env::var("BENCH_FILTER").unwrap_or_default();
    let mut rows = Vec::new();
    for (name, nodes, loss) in [
        ("1 node (no replication)", 1, false),
        ("3 nodes", 3, false),
        ("3 nodes, 2% loss + 1 ms", 3, true),
    ] {
        for (size, concurrency) in [(4096, 1), (4096, 64), (1 << 20, 1), (1 << 20, 16)] {
            let label = format!("{name} {size}x{concurrency}");
            if !label.contains(&filter) {
                continue;
            }
            let row = runtime.block_on(run(name, nodes, loss, size, concurrency, seconds));
            eprintln!(
                "{name}: {} B x {concurrency}: {} ops, p50 {:?}",
                size, row.ops, row.p50
            );
            rows.push(row);
        }
    }
    println!("\n| configuration | entry | proposers | commits/s | p50 ms | p99 ms | failed |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        let size = if r.size >= 1 << 20 {
            format!("{} MiB", r.size >> 20)
        } else {
            format!("{} KiB", r.size >> 10)
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            r.name,
            size,
            r.concurrency,
            r.ops as f64 / r.seconds,
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0,
            r.failed
        );
    }
}
