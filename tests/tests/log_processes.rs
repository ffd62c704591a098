//! The replicated log with every node in its own process: SIGKILL of the
//! leader, restart from the store, and the two-voters-plus-witness layout.
//!
//! A put that fails may still commit (its outcome is unknown), so every
//! attempt carries its own value (`name#k`): a retry never duplicates an
//! acknowledged value, and the checks are about acknowledged values only.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tandem_tests::lognode::LogCluster;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lognode"))
}

/// Puts `name#k` through the running `nodes`, a new `k` per attempt, until
/// one is acknowledged; returns its number and value.
fn put_anywhere(c: &LogCluster, nodes: &[u64], name: &str, within: Duration) -> (u64, String) {
    let deadline = Instant::now() + within;
    let mut attempt = 0;
    loop {
        for &id in nodes {
            attempt += 1;
            let value = format!("{name}#{attempt}");
            if let Ok(n) = c.put(id, &value) {
                return (n, value);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no node accepted {name:?} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `nodes` hold identical logs, numbered 1..=len without gaps,
/// containing every acknowledged (number, value).
fn converged(c: &LogCluster, nodes: &[u64], acked: &BTreeMap<u64, String>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let logs: Vec<Vec<(u64, String)>> = nodes
            .iter()
            .map(|&id| c.items(id).unwrap_or_default())
            .collect();
        let reference = &logs[0];
        let same = logs.iter().all(|l| l == reference);
        let dense = reference
            .iter()
            .enumerate()
            .all(|(i, (n, _))| *n == i as u64 + 1);
        let has_acked = acked
            .iter()
            .all(|(n, v)| reference.iter().any(|(m, w)| m == n && w == v));
        if same && dense && has_acked {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nodes {nodes:?} did not converge on the acknowledged entries:\n{logs:?}\nacked: {acked:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Raft §5.2 and §5.4: SIGKILL of the leader process; the survivors elect a
/// new leader within seconds; every acknowledged entry survives with its
/// number; numbering continues; the killed node restarts from its store and
/// converges.
#[test]
fn leader_killed_with_sigkill_loses_no_acknowledged_entry() {
    let mut c = LogCluster::start(bin(), 3);
    let leader = c.leader(Duration::from_secs(15));
    let mut acked = BTreeMap::new();
    for i in 0..15u64 {
        let (n, v) = put_anywhere(
            &c,
            &[1 + i % 3],
            &format!("before-{i}"),
            Duration::from_secs(10),
        );
        acked.insert(n, v);
    }
    let highest_before = *acked.keys().last().unwrap();

    let killed_at = Instant::now();
    c.kill(leader);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (n, v) = put_anywhere(&c, &survivors, "after-kill", Duration::from_secs(10));
    let failover = killed_at.elapsed();
    eprintln!("failover: SIGKILL of the leader to the first acknowledged put: {failover:?}");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    assert!(
        n > highest_before,
        "number {n} reused (highest before: {highest_before})"
    );
    acked.insert(n, v);
    converged(&c, &survivors, &acked, Duration::from_secs(10));

    c.spawn(leader);
    let (n, v) = put_anywhere(&c, &[1, 2, 3], "after-restart", Duration::from_secs(10));
    acked.insert(n, v);
    converged(&c, &[1, 2, 3], &acked, Duration::from_secs(15));
}

/// Two mail nodes and a witness are three voters: either mail node can die
/// and writes continue through the other; the witness keeps up.
#[test]
fn two_voters_and_a_witness_survive_the_loss_of_either_voter() {
    let mut c = LogCluster::start(bin(), 3);
    c.leader(Duration::from_secs(15));
    let witness = 3;
    let mut acked = BTreeMap::new();
    for (down, up) in [(1u64, 2u64), (2, 1)] {
        c.kill(down);
        let (n, v) = put_anywhere(
            &c,
            &[up],
            &format!("while-{down}-down"),
            Duration::from_secs(10),
        );
        assert!(acked.keys().all(|m| *m < n), "number {n} reused");
        acked.insert(n, v);
        converged(&c, &[up, witness], &acked, Duration::from_secs(10));
        c.spawn(down);
        let (n, v) = put_anywhere(
            &c,
            &[down, up],
            &format!("after-{down}-back"),
            Duration::from_secs(10),
        );
        acked.insert(n, v);
    }
    converged(&c, &[1, 2, witness], &acked, Duration::from_secs(15));
}
