//! The differential conformance suite (`tandem_tests::conformance`): every
//! script under `tests/scripts/` run straight against a backend and
//! through tandem, whose answers must match up to normalization and the
//! differences the scripts document. Each test fails listing the scripts
//! that differ, with both answers of each differing step side by side.
//!
//! `CONFORMANCE_SCRIPT=expunge,idle cargo test -p tandem-proxy --test
//! conformance` runs only the scripts whose names contain `expunge` or
//! `idle`; `CONFORMANCE_VERBOSE=1` prints every script's report.

use tandem_tests::conformance;
use tandem_tests::BackendKind;

fn suite(kind: BackendKind, nodes: u64) {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let scripts = conformance::selected(kind);
    if scripts.is_empty() {
        eprintln!("no script selected");
        return;
    }
    let verdicts =
        conformance::run_suite(env!("CARGO_BIN_EXE_tandem").as_ref(), kind, nodes, &scripts);
    let label = format!("{kind:?}, direct vs tandem on {nodes} node(s)");
    let report = conformance::report(&label, &verdicts);
    eprintln!("{report}");
    let differing = verdicts.iter().filter(|v| !v.conforms()).count();
    assert_eq!(
        differing, 0,
        "{label}: {differing} scripts differ (see the report above)"
    );
}

/// Dovecot straight vs every session through one tandem node.
#[test]
fn dovecot_through_one_node() {
    suite(BackendKind::Dovecot, 1);
}

/// Dovecot straight vs sessions spread over three tandem nodes.
#[test]
fn dovecot_through_three_nodes() {
    suite(BackendKind::Dovecot, 3);
}

/// Cyrus straight vs every session through one tandem node (the scripts
/// not marked `cyrus:`).
#[test]
fn cyrus_through_one_node() {
    suite(BackendKind::Cyrus, 1);
}
