//! A short chaos campaign on every submission (`make chaos` runs the long
//! one): faults from a fixed seed against a three-node cluster of `tandem
//! run` processes, and the negative control that shows the checker catches
//! an acknowledgement before commit.

use std::time::Duration;

use tandem_tests::chaos::{run, Options, Summary};

fn options(seconds: u64, seed: u64) -> Options {
    Options {
        duration: Duration::from_secs(seconds),
        seed,
        clients: 6,
        nodes: 3,
        negative_control: false,
        binary: Some(env!("CARGO_BIN_EXE_tandem").into()),
        ..Options::default()
    }
}

// Its first CI run found a MOVE applied on one node only: a node catching
// up appended over parallel backend sessions, and the session that then
// moved those messages had not seen them (Dovecot skipped their UIDs and
// said OK). `replication.rs` now has a test for exactly that.
#[test]
fn a_short_campaign_finds_no_violation() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let summary = run(&options(60, 20261128));
    assert_clean(&summary);
}

/// The same against three Cyrus backends (issue 10).
#[test]
fn a_short_campaign_on_cyrus_finds_no_violation() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let summary = run(&Options {
        backends: vec![tandem_tests::BackendKind::Cyrus],
        ..options(45, 20261129)
    });
    assert_clean(&summary);
}

/// And against a mixed cluster: Dovecot, Cyrus, Dovecot.
#[test]
fn a_short_campaign_on_a_mixed_cluster_finds_no_violation() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let summary = run(&Options {
        backends: vec![
            tandem_tests::BackendKind::Dovecot,
            tandem_tests::BackendKind::Cyrus,
        ],
        ..options(45, 20261201)
    });
    assert_clean(&summary);
}

/// A campaign that injected faults, got answers and found no violation.
fn assert_clean(summary: &Summary) {
    println!("{}", summary.line());
    assert!(summary.faults.values().sum::<u64>() >= 5, "{summary:?}");
    assert!(summary.acknowledged > 100, "{summary:?}");
    assert!(summary.large_acknowledged > 0, "no blob: {summary:?}");
    assert!(
        summary.violations.is_empty(),
        "{}\n{}\nnode logs kept in {:?}",
        summary.line(),
        summary.violations.join("\n"),
        summary.logs
    );
}

#[test]
fn the_checker_catches_acknowledgement_before_commit() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let summary = run(&Options {
        negative_control: true,
        ..options(15, 7)
    });
    println!("{}", summary.line());
    assert!(
        summary.violations.iter().any(|v| v.starts_with("a:")),
        "the negative control went unnoticed: {}",
        summary.line()
    );
}
