//! The operator material in `deploy/` checked against the code, so it cannot
//! rot: the example clusters parse with tandem's own config parser and agree
//! with each other and with the Prometheus scrape config; the alert rules
//! pass `promtool check rules` and their unit tests when promtool is
//! installed (Debian package `prometheus`), and a structural check
//! otherwise; every metric the rules and the Grafana dashboard name is one
//! tandem exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use tandem_proxy::config::{Config, Role};

/// The gauges and counters tandem exports on `listen.metrics`
/// (`proxy/src/metrics.rs`), without their labels.
const METRICS: &[&str] = &[
    "tandem_replication_lag_entries",
    "tandem_replication_lag_seconds",
    "tandem_raft_follower_lag_entries",
    "tandem_proposals_total",
    "tandem_imap_commands_total",
    "tandem_client_connections",
    "tandem_client_connections_total",
    "tandem_backend_up",
    "tandem_raft_term",
    "tandem_raft_is_leader",
    "tandem_raft_leader_id",
    "tandem_raft_applied_index",
    "tandem_log_size_bytes",
    "tandem_resync_needed",
    "tandem_tls_handshake_failures_total",
    "tandem_limit_rejections_total",
];

/// The histograms; PromQL sees each as `_bucket`, `_sum` and `_count`.
const HISTOGRAMS: &[&str] = &[
    "tandem_commit_duration_seconds",
    "tandem_apply_duration_seconds",
    "tandem_backend_command_duration_seconds",
];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The metric a series name belongs to, if tandem (or Prometheus, for `up`)
/// exports it.
fn exported(series: &str) -> Option<&'static str> {
    if series == "up" {
        return Some("up");
    }
    if let Some(m) = METRICS.iter().find(|m| **m == series) {
        return Some(m);
    }
    HISTOGRAMS.iter().copied().find(|h| {
        series
            .strip_prefix(h)
            .is_some_and(|rest| ["_bucket", "_sum", "_count"].contains(&rest))
    })
}

// ---------------------------------------------------------------- configs

fn load(dir: &str, names: &[&str]) -> Vec<(String, Config)> {
    names
        .iter()
        .map(|name| {
            let path = deploy()
                .join("examples")
                .join(dir)
                .join(format!("{name}.toml"));
            let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                config.validate().is_empty(),
                "{}: {:?}",
                path.display(),
                config.validate()
            );
            (format!("{dir}/{name}.toml"), config)
        })
        .collect()
}

/// Every node lists every other node as a `[[peer]]` at the address that
/// node listens on, and only those; ids are distinct; each node uses its
/// own certificate; metrics are served on an internal address.
fn assert_cluster_agrees(nodes: &[(String, Config)]) {
    let by_id: BTreeMap<u64, String> = nodes
        .iter()
        .map(|(_, c)| (c.node.id, c.listen.peer.to_string()))
        .collect();
    assert_eq!(by_id.len(), nodes.len(), "node ids must be distinct");
    for (name, c) in nodes {
        let peers: BTreeMap<u64, String> =
            c.peers.iter().map(|p| (p.id, p.address.clone())).collect();
        let mut expected = by_id.clone();
        expected.remove(&c.node.id);
        assert_eq!(peers, expected, "{name}: [[peer]]s");
        let cluster = c.cluster.as_ref().expect("[cluster]");
        let own = format!("node-{}.", c.node.id);
        for path in [&cluster.cert, &cluster.key] {
            assert!(
                path.to_string_lossy().contains(&own),
                "{name}: {} is not node {}'s",
                path.display(),
                c.node.id
            );
        }
        assert_eq!(c.health.ready_max_lag_seconds, 30, "{name}: [health]");
        let metrics = c.listen.metrics.expect("listen.metrics");
        assert!(
            !metrics.ip().is_unspecified(),
            "{name}: listen.metrics {metrics} is unauthenticated: bind an internal address"
        );
        assert_eq!(
            metrics.ip(),
            c.listen.peer.ip(),
            "{name}: metrics and replication share the private address"
        );
    }
}

#[test]
fn three_node_example_configs_parse_and_agree() {
    let nodes = load("three-node", &["node1", "node2", "node3"]);
    assert_cluster_agrees(&nodes);
    for (name, c) in &nodes {
        assert_eq!(c.node.role, Role::Mail, "{name}");
        let b = c.backend().expect("[backend]");
        assert!(
            b.address.starts_with("127.0.0.1:"),
            "{name}: backend.address"
        );
        assert!(c.tls.as_ref().is_some_and(|t| t.require_tls_for_login));
    }
}

#[test]
fn two_plus_witness_example_configs_parse_and_agree() {
    let nodes = load("two-plus-witness", &["mail1", "mail2", "witness"]);
    assert_cluster_agrees(&nodes);
    let roles: Vec<Role> = nodes.iter().map(|(_, c)| c.node.role).collect();
    assert_eq!(roles, [Role::Mail, Role::Mail, Role::Witness]);
    let witness = &nodes[2].1;
    assert!(witness.backend().is_none() && witness.tls.is_none());
    assert!(witness.listen.imap.is_none() && witness.listen.imaps.is_none());
}

#[test]
fn prometheus_scrapes_the_example_nodes() {
    let yml = read(&deploy().join("prometheus/prometheus.yml"));
    let active: String = yml
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for (name, c) in load("three-node", &["node1", "node2", "node3"]) {
        let target = format!(
            "targets: [\"{}\"]\n        labels: {{ cluster: mail, node: \"{}\", role: mail }}",
            c.listen.metrics.unwrap(),
            c.node.id
        );
        assert!(
            active.contains(&target),
            "prometheus.yml lacks {name}: {target}"
        );
    }
    let witness = &load("two-plus-witness", &["witness"])[0].1;
    let target = format!(
        "# - targets: [\"{}\"]\n      #   labels: {{ cluster: mail, node: \"{}\", role: witness }}",
        witness.listen.metrics.unwrap(),
        witness.node.id
    );
    assert!(
        yml.contains(&target),
        "prometheus.yml lacks the witness: {target}"
    );
}

// ------------------------------------------------------------- alert rules

/// promtool's answer, or `None` when it is not installed.
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(deploy().join("prometheus"))
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("promtool: {e}"),
    }
}

#[test]
fn alert_rules_pass_promtool_when_installed() {
    for args in [
        &["check", "rules", "tandem.rules.yml"][..],
        &["test", "rules", "tandem.rules.test.yml"],
        &["check", "config", "prometheus.yml"],
    ] {
        let Some(out) = promtool(args) else {
            eprintln!("promtool not installed: only the structural check of the rules ran");
            return;
        };
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One alerting rule as written in the YAML file.
#[derive(Debug, Default)]
struct Rule {
    alert: String,
    expr: String,
    /// `for`.
    duration: Option<String>,
    /// `labels.x` and `annotations.x` keys with their values.
    nested: BTreeMap<String, String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The rules of a Prometheus rule file: a line-based reader for the subset
/// of YAML the file uses (block mappings, `>-` folded scalars), enough to
/// check the shape without a YAML crate.
fn parse_rules(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let mut rules = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = lines[i].trim_start().strip_prefix("- alert:") else {
            assert!(
                !lines[i].trim_start().starts_with("- record:"),
                "only alerting rules are expected"
            );
            i += 1;
            continue;
        };
        let dash = indent(lines[i]);
        let key_indent = dash + 2;
        let mut rule = Rule {
            alert: name.trim().to_string(),
            ..Rule::default()
        };
        i += 1;
        let mut section = String::new();
        while i < lines.len() && indent(lines[i]) > dash {
            let line = lines[i];
            let (key, value) = line.trim().split_once(':').unwrap_or((line.trim(), ""));
            let value = value.trim();
            // A folded block scalar: the following more-indented lines.
            let mut full = value.to_string();
            if value.starts_with('>') || value.starts_with('|') {
                let mut parts = Vec::new();
                while i + 1 < lines.len() && indent(lines[i + 1]) > indent(line) {
                    i += 1;
                    parts.push(lines[i].trim());
                }
                full = parts.join(" ");
            }
            let full = full.trim_matches('"').to_string();
            if indent(line) == key_indent {
                match key {
                    "expr" => rule.expr = full,
                    "for" => rule.duration = Some(full),
                    "labels" | "annotations" => section = key.to_string(),
                    other => panic!("rule {}: unexpected key {other}", rule.alert),
                }
            } else {
                assert!(
                    !section.is_empty(),
                    "rule {}: stray line {line:?}",
                    rule.alert
                );
                rule.nested.insert(format!("{section}.{key}"), full);
            }
            i += 1;
        }
        rules.push(rule);
    }
    rules
}

/// The series names a PromQL expression selects: string literals, label
/// matchers, ranges, function names and grouping label lists removed.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Operators, and aggregations (`sum by (x) (...)` is not a call of sum).
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Strings, {...} and [...] first: they hold label names and durations.
    let mut plain = String::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if !escaped && d == c {
                        break;
                    }
                    escaped = !escaped && d == '\\';
                }
                plain.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                for d in chars.by_ref() {
                    if d == close {
                        break;
                    }
                }
                plain.push(' ');
            }
            c => plain.push(c),
        }
    }
    let bytes = plain.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() || c == b'.' {
            // A number or a duration (0.99, 5m, 1e3).
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            continue;
        }
        if !(c.is_ascii_alphabetic() || c == b'_' || c == b':') {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len()
            && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
        {
            i += 1;
        }
        let word = &plain[start..i];
        let mut next = i;
        while next < bytes.len() && bytes[next].is_ascii_whitespace() {
            next += 1;
        }
        let call = bytes.get(next) == Some(&b'(');
        if GROUPING.contains(&word) {
            if call {
                // Skip the label list.
                while next < bytes.len() && bytes[next] != b')' {
                    next += 1;
                }
                i = next;
            }
        } else if !call && !KEYWORDS.contains(&word) {
            names.insert(word.to_string());
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le, node) \
         (rate(tandem_commit_duration_seconds_bucket{cluster=~\"$cluster\"}[$__rate_interval])))\n\
         or max without(instance) (up{job=\"x\"}) > bool 0.5 unless on (node) tandem_raft_term",
    );
    let expected: BTreeSet<String> = [
        "tandem_commit_duration_seconds_bucket",
        "up",
        "tandem_raft_term",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);
}

#[test]
fn alert_rules_have_their_parts_and_use_exported_metrics() {
    let rules = parse_rules(&read(&deploy().join("prometheus/tandem.rules.yml")));
    let mut used = BTreeSet::new();
    let mut alerts = BTreeSet::new();
    for rule in &rules {
        let a = &rule.alert;
        assert!(alerts.insert(a.clone()), "alert {a} is defined twice");
        assert!(!rule.expr.is_empty(), "{a}: expr");
        let duration = rule
            .duration
            .as_deref()
            .unwrap_or_else(|| panic!("{a}: for"));
        assert!(
            duration.len() > 1
                && duration[..duration.len() - 1]
                    .chars()
                    .all(|c| c.is_ascii_digit())
                && duration.ends_with(['s', 'm', 'h']),
            "{a}: for {duration:?}"
        );
        let severity = rule.nested.get("labels.severity");
        assert!(
            matches!(severity.map(String::as_str), Some("critical" | "warning")),
            "{a}: labels.severity {severity:?}"
        );
        assert!(
            rule.nested
                .get("annotations.summary")
                .is_some_and(|s| !s.is_empty()),
            "{a}: annotations.summary"
        );
        let names = metric_names(&rule.expr);
        assert!(!names.is_empty(), "{a}: no metric in {:?}", rule.expr);
        for name in names {
            let metric = exported(&name)
                .unwrap_or_else(|| panic!("{a}: {name} is not a metric tandem exports"));
            used.insert(metric);
        }
    }
    for alert in [
        "TandemReplicationLagHigh",
        "TandemNoLeader",
        "TandemBackendDown",
        "TandemResyncNeeded",
        "TandemNodeDown",
    ] {
        assert!(alerts.contains(alert), "no alert {alert}");
    }
    // What issue 7 asks the rules to watch.
    for metric in [
        "tandem_replication_lag_seconds",
        "tandem_raft_is_leader",
        "tandem_raft_leader_id",
        "tandem_backend_up",
        "tandem_resync_needed",
        "up",
    ] {
        assert!(used.contains(metric), "no alert watches {metric}");
    }
}

// --------------------------------------------------------------- dashboard

fn panels(value: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    for p in value["panels"].as_array().into_iter().flatten() {
        out.push(p.clone());
        panels(p, out);
    }
}

#[test]
fn grafana_dashboard_is_json_over_exported_metrics() {
    let path = deploy().join("grafana/tandem-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    let mut all = Vec::new();
    panels(&dashboard, &mut all);
    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for p in &all {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{title}: id used twice"
        );
        assert!(p["gridPos"]["w"].is_u64(), "{title}: gridPos");
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: no metric in {expr:?}");
            for name in names {
                let metric = exported(&name)
                    .unwrap_or_else(|| panic!("{title}: {name} is not a metric tandem exports"));
                used.insert(metric);
            }
        }
    }
    for metric in METRICS.iter().chain(HISTOGRAMS) {
        assert!(
            used.contains(metric),
            "the dashboard does not show {metric}"
        );
    }
}

/// Once `proxy/src/metrics.rs` exists, every name the deploy material
/// relies on must be registered there under that exact name.
#[test]
fn metric_names_match_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs");
    let Ok(code) = std::fs::read_to_string(&path) else {
        eprintln!("{} does not exist yet", path.display());
        return;
    };
    for metric in METRICS.iter().chain(HISTOGRAMS) {
        assert!(
            code.contains(&format!("\"{metric}\"")),
            "{metric} is not named in {}",
            path.display()
        );
    }
}
