//! The replicated log with every node in its own process: SIGKILL of the
//! leader, restart from the store, and the two-voters-plus-witness layout.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tandem_tests::lognode::LogCluster;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_lognode"))
}

/// Retries `put` through any running node until one accepts it.
fn put_anywhere(c: &LogCluster, nodes: &[u64], value: &str, within: Duration) -> (u64, u64) {
    let deadline = Instant::now() + within;
    loop {
        for &id in nodes {
            if let Ok(n) = c.put(id, value) {
                return (id, n);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no node accepted {value:?} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Raft §5.2 and §5.4: SIGKILL of the leader process; the survivors elect a
/// new leader within seconds; every acknowledged entry survives with its
/// number; the killed node restarts from its store and converges.
#[test]
fn leader_killed_with_sigkill_loses_no_acknowledged_entry() {
    let mut c = LogCluster::start(bin(), 3);
    let leader = c.leader(Duration::from_secs(15));
    let mut acked = BTreeMap::new();
    for i in 0..15u64 {
        let via = 1 + i % 3;
        let n = c
            .put(via, &format!("before-{i}"))
            .expect("put before the kill");
        acked.insert(n, format!("before-{i}"));
    }

    let killed_at = Instant::now();
    c.kill(leader);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let (_, n) = put_anywhere(&c, &survivors, "after-kill", Duration::from_secs(10));
    let failover = killed_at.elapsed();
    eprintln!("failover: SIGKILL of the leader to the first acknowledged put: {failover:?}");
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    assert_eq!(n, 16, "numbering continues without reuse");
    acked.insert(n, "after-kill".to_string());

    c.spawn(leader);
    let (_, n) = put_anywhere(&c, &[1, 2, 3], "after-restart", Duration::from_secs(10));
    acked.insert(n, "after-restart".to_string());
    let expected: Vec<(u64, String)> = acked.into_iter().collect();

    let deadline = Instant::now() + Duration::from_secs(10);
    for id in 1..=3 {
        loop {
            let items = c.items(id).unwrap();
            if items == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} holds {items:?}, want {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Two mail nodes and a witness are three voters: either mail node can die
/// and writes continue through the other.
#[test]
fn two_voters_and_a_witness_survive_the_loss_of_either_voter() {
    let mut c = LogCluster::start(bin(), 3);
    c.leader(Duration::from_secs(15));
    let witness = 3;
    let mut last = 0;
    for (down, up) in [(1u64, 2u64), (2, 1)] {
        c.kill(down);
        let (_, n) = put_anywhere(
            &c,
            &[up],
            &format!("while-{down}-down"),
            Duration::from_secs(10),
        );
        assert!(n > last);
        last = n;
        assert!(c.status(witness).unwrap().applied.is_some());
        c.spawn(down);
        put_anywhere(
            &c,
            &[down, up],
            &format!("after-{down}-back"),
            Duration::from_secs(10),
        );
        last += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.items(witness).unwrap().len() as u64 != last {
        assert!(Instant::now() < deadline, "the witness did not converge");
        std::thread::sleep(Duration::from_millis(50));
    }
}
