//! The metric vocabulary: the process-wide Prometheus recorder, every
//! metric's name and description, and the bounded labels. What serves them
//! (with health and `/status`) is [`crate::status`].
//!
//! Names follow Prometheus conventions: base units, `_total` for counters,
//! `_seconds` and `_bytes` suffixes. Every metric is described in
//! [`describe`]; `deploy/` has the alert rules and the dashboard over them.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Counted IMAP command names; anything else counts as `OTHER`.
const COMMANDS: [&str; 31] = [
    "APPEND",
    "AUTHENTICATE",
    "CAPABILITY",
    "CHECK",
    "CLOSE",
    "COPY",
    "CREATE",
    "DELETE",
    "ENABLE",
    "EXAMINE",
    "EXPUNGE",
    "FETCH",
    "GETQUOTAROOT",
    "ID",
    "IDLE",
    "LIST",
    "LOGIN",
    "LOGOUT",
    "LSUB",
    "MOVE",
    "NAMESPACE",
    "NOOP",
    "RENAME",
    "SEARCH",
    "SELECT",
    "STARTTLS",
    "STATUS",
    "STORE",
    "SUBSCRIBE",
    "UNSELECT",
    "UNSUBSCRIBE",
];

/// The label for a command name (a fixed set, so a client cannot grow the
/// metric's label space).
pub fn command_label(name: &[u8]) -> &'static str {
    COMMANDS
        .iter()
        .find(|c| c.as_bytes().eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or("OTHER")
}

/// Counts one completed IMAP command.
pub fn count_command(command: &'static str, result: &'static str) {
    metrics::counter!("tandem_imap_commands_total", "command" => command, "result" => result)
        .increment(1);
}

/// Counts one refusal by a limit.
pub fn count_limit(limit: &'static str) {
    metrics::counter!("tandem_limit_rejections_total", "limit" => limit).increment(1);
}

/// Counts one backend response withheld from a client (`what`: `fetch`,
/// `expunge`, `unmapped`, `unparsable`): each is also an ERROR or WARN log
/// line with its shape.
pub fn count_withheld(what: &'static str) {
    metrics::counter!("tandem_responses_withheld_total", "what" => what).increment(1);
}

/// Counts one FETCH whose implicit `\Seen` could not be committed (no
/// quorum): this node's backend has the flag, the others do not.
pub fn count_seen_not_replicated() {
    metrics::counter!("tandem_seen_not_replicated_total").increment(1);
}

/// Installs the process-wide Prometheus recorder (once) and returns the
/// handle that renders it.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder already installed (tests): render that one.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// Describes every metric tandem exports.
pub fn describe() {
    describe_gauge!(
        "tandem_replication_lag_entries",
        "Committed entries this node's backend has not applied yet."
    );
    describe_gauge!(
        "tandem_replication_lag_seconds",
        Unit::Seconds,
        "Age of the oldest committed entry this node's backend has not applied (0 when caught up; measured against the proposer's clock)."
    );
    describe_gauge!(
        "tandem_raft_follower_lag_entries",
        "On the leader: how many log entries each follower lacks."
    );
    describe_histogram!(
        "tandem_commit_duration_seconds",
        Unit::Seconds,
        "From a proposal to its commit on a majority and its canonical apply here."
    );
    describe_histogram!(
        "tandem_apply_duration_seconds",
        Unit::Seconds,
        "One committed entry applied to this node's backend."
    );
    describe_counter!(
        "tandem_proposals_total",
        "Mutations proposed by this node's clients, by outcome: ok, refused (canonical NO), unavailable (not committed), backend_refused."
    );
    describe_counter!(
        "tandem_imap_commands_total",
        "IMAP commands completed, by command and result (ok, no, bad)."
    );
    describe_gauge!("tandem_client_connections", "Client connections open now.");
    describe_counter!(
        "tandem_client_connections_total",
        "Client connections accepted."
    );
    describe_gauge!(
        "tandem_backend_up",
        "1 when this node's backend answered its last probe with a greeting, else 0."
    );
    describe_histogram!(
        "tandem_backend_command_duration_seconds",
        Unit::Seconds,
        "Commands tandem's own sessions (applier, probe) sent to the backend."
    );
    describe_gauge!("tandem_raft_term", "The current Raft term.");
    describe_gauge!("tandem_raft_is_leader", "1 on the leader, else 0.");
    describe_gauge!(
        "tandem_raft_leader_id",
        "The leader this node knows of (0: none)."
    );
    describe_gauge!(
        "tandem_raft_applied_index",
        "The last log index applied to the canonical state here."
    );
    describe_gauge!(
        "tandem_log_size_bytes",
        Unit::Bytes,
        "The node's Raft directory on disk (log, state, blobs)."
    );
    describe_gauge!(
        "tandem_resync_needed",
        "1 when this node skipped entries through a snapshot and its backend must be resynchronized."
    );
    describe_counter!(
        "tandem_tls_handshake_failures_total",
        "Client TLS handshakes that failed or timed out."
    );
    describe_counter!(
        "tandem_responses_withheld_total",
        "Backend responses a client did not get, by what: fetch (a number it was not told), expunge (beyond the backend's count), unmapped (a UID without a canonical one), unparsable."
    );
    describe_counter!(
        "tandem_seen_not_replicated_total",
        "FETCHes that set \\Seen on this node's backend whose change could not be committed to the log (no quorum)."
    );
    describe_counter!(
        "tandem_limit_rejections_total",
        "Requests refused by a configured limit (connections, connections_per_ip, literal, line)."
    );
}
