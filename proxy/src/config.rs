//! The node's configuration: one TOML file, read into one serde tree and
//! validated before any socket is bound.
//!
//! Ordering invariant: `Config::load` returns only a validated config; no
//! listener is bound and no backend is contacted with a config that failed
//! validation.
//!
//! The annotated example in `deploy/tandem.example.toml` documents every field
//! and is parsed by a test, so it cannot drift from this module.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// RFC 9051 section 5.4: an inactivity autologout timer must be at least
/// 30 minutes.
pub const MIN_AUTOLOGOUT: Duration = Duration::from_secs(30 * 60);

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the expected shape
    /// (unknown field, wrong type, missing section).
    #[error("config file {path} is not valid: {source}")]
    Parse {
        /// The file that was read.
        path: PathBuf,
        /// The TOML error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// The file parsed but its values are inconsistent or out of range.
    #[error("config file {path} has {} problem(s):\n{}", problems.len(), Problems(problems))]
    Invalid {
        /// The file that was read.
        path: PathBuf,
        /// Every problem found, each naming its field.
        problems: Vec<String>,
    },
    /// A password file named in the config could not be read.
    #[error("cannot read {field} file {path}: {source}")]
    Secret {
        /// The config field that named the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// The whole configuration of one tandem node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this node is and where it keeps its state.
    pub node: NodeConfig,
    /// The addresses this node listens on.
    pub listen: ListenConfig,
    /// The local IMAP server this node fronts. Absent on a witness.
    pub backend: Option<BackendConfig>,
    /// The other voters of the cluster.
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
    /// Limits on what clients may ask of this node.
    #[serde(default)]
    pub limits: Limits,
    /// When `/readyz` on `listen.metrics` says ready.
    #[serde(default)]
    pub health: HealthConfig,
    /// TLS for clients: required for `listen.imaps` and STARTTLS.
    pub tls: Option<TlsConfig>,
    /// The replicated log: the cluster's mutual-TLS material and Raft
    /// timing. Required on every node (`validate` says so when it is
    /// missing): a node without it would serve mutations nobody replicates.
    /// A node without `[[peer]]`s is a cluster of one.
    pub cluster: Option<ClusterConfig>,
}

/// The replicated log's settings: who may talk to this node (the cluster
/// CA and this node's certificate from `tandem certs`) and the Raft timing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster CA certificate (PEM, `ca.pem`): peers must present a
    /// certificate it signed.
    pub ca: PathBuf,
    /// This node's certificate (PEM, `node-<id>.pem`); it names
    /// `node-<id>.tandem`, so it must be the one issued for `node.id`.
    pub cert: PathBuf,
    /// This node's private key (PEM, `node-<id>.key`).
    pub key: PathBuf,
    /// Leader heartbeat interval. openraft also uses it as the timeout of
    /// every AppendEntries RPC, so it must exceed a round trip plus the
    /// time to send and fsync a batch of entries.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// A follower that hears no leader for a random time between these
    /// two starts an election.
    #[serde(default = "default_election_timeout_min_ms")]
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    #[serde(default = "default_election_timeout_max_ms")]
    pub election_timeout_max_ms: u64,
    /// How long a mutation may wait for commit and local apply before the
    /// client gets `NO [UNAVAILABLE]`. A message over 64 KiB gets its
    /// transfer time at `min_link_kib_per_sec` on top.
    #[serde(default = "default_proposal_timeout_secs")]
    pub proposal_timeout_secs: u64,
    /// The slowest link to a peer, in KiB per second, a large message is
    /// given time for: at the default 256, a 1 MiB APPEND may take 4 s
    /// more than `proposal_timeout_secs`, a 64 MiB one 256 s, plus the
    /// transfer time of the large messages already on their way. A slow or
    /// lossy link then delays large messages instead of failing them; a
    /// peer that is gone is noticed within seconds anyway (QUIC's idle
    /// timeout).
    #[serde(default = "default_min_link_kib_per_sec")]
    pub min_link_kib_per_sec: u64,
    /// Applied entries kept in the log for lagging nodes; a node further
    /// behind receives a snapshot and must resync its backend.
    #[serde(default = "default_keep_log_entries")]
    pub keep_log_entries: u64,
    /// Size of one raft log segment file, in MiB. Each new segment is
    /// zero-filled in the background before it is used, so a node's data
    /// directory holds up to one spare segment.
    #[serde(default = "default_log_segment_mib")]
    pub log_segment_mib: u64,
    /// How often, in milliseconds, while the log moves, the state machine's
    /// and the applier's progress is made durable (one fsync). A crash
    /// loses at most this much of it: the entries are applied again and
    /// the applier's items are looked for on the backend before they are
    /// applied again, so it bounds restart work, not safety.
    #[serde(default = "default_state_sync_ms")]
    pub state_sync_ms: u64,
}

fn default_heartbeat_ms() -> u64 {
    250
}

fn default_election_timeout_min_ms() -> u64 {
    1000
}

fn default_election_timeout_max_ms() -> u64 {
    2000
}

fn default_proposal_timeout_secs() -> u64 {
    5
}

fn default_min_link_kib_per_sec() -> u64 {
    tandem_replicator::MIN_LINK_RATE / 1024
}

fn default_keep_log_entries() -> u64 {
    100_000
}

fn default_log_segment_mib() -> u64 {
    32
}

fn default_state_sync_ms() -> u64 {
    200
}

/// The certificate clients see, and when TLS is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Refuse LOGIN and AUTHENTICATE before TLS (advertise LOGINDISABLED),
    /// except from `plaintext_networks`.
    #[serde(default)]
    pub require_tls_for_login: bool,
    /// Networks (CIDR, e.g. "127.0.0.0/8") allowed to log in without TLS
    /// when `require_tls_for_login` is set.
    #[serde(default)]
    pub plaintext_networks: Vec<String>,
}

/// Parses "a.b.c.d/n" or "v6/n" (or a bare address).
pub fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().ok()?),
        None => (s, if s.contains(':') { 128 } else { 32 }),
    };
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// Whether `ip` is inside the network `(net, len)`.
pub fn in_network(ip: std::net::IpAddr, net: (std::net::IpAddr, u8)) -> bool {
    use std::net::IpAddr;
    match (ip, net.0) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if net.1 == 0 {
                0
            } else {
                u32::MAX << (32 - net.1)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if net.1 == 0 {
                0
            } else {
                u128::MAX << (128 - net.1)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Identity and storage of the node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's id in the cluster: unique, non-zero, never reused for
    /// another machine. Node certificates are pinned to it.
    pub id: u64,
    /// Where the node keeps its log, its UID maps and its state.
    pub data_dir: PathBuf,
    /// `mail` (the default) fronts a backend; `witness` votes and keeps the
    /// log but has no backend.
    #[serde(default)]
    pub role: Role,
}

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A voter with a backend mail server.
    #[default]
    Mail,
    /// A voter without a backend: it lets two mail nodes fail over.
    Witness,
}

/// Listening addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Plain IMAP (with STARTTLS once TLS is configured).
    pub imap: Option<SocketAddr>,
    /// IMAP over implicit TLS.
    pub imaps: Option<SocketAddr>,
    /// Prometheus metrics and health endpoints.
    pub metrics: Option<SocketAddr>,
    /// Replication traffic from peers (QUIC over UDP).
    pub peer: SocketAddr,
}

/// The backend IMAP server and how tandem acts on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Which server software this is.
    pub kind: BackendKind,
    /// `host:port` of its IMAP listener.
    pub address: String,
    /// The admin (Dovecot master user, Cyrus admin) that acts as any user.
    pub admin_user: String,
    /// The admin's password, inline. Exactly one of `admin_password` and
    /// `admin_password_file` must be set.
    pub admin_password: Option<Secret<String>>,
    /// A file whose first line is the admin's password.
    pub admin_password_file: Option<PathBuf>,
    /// How the admin acts as a user.
    #[serde(default)]
    pub admin_method: AdminMethod,
    /// The separator of a Dovecot master-user login (`user*admin`).
    #[serde(default = "default_master_separator")]
    pub master_separator: String,
    /// `none` (default): plain TCP, for a backend on the same host.
    /// `implicit`: TLS from the first byte (the backend's IMAPS port),
    /// verified against `tls_ca` or pinned with `tls_pin_sha256`.
    #[serde(default)]
    pub tls: BackendTlsMode,
    /// PEM file of the CA that signed the backend's certificate.
    pub tls_ca: Option<PathBuf>,
    /// SHA-256 of the backend certificate (DER), hex: accept that one
    /// certificate only, whoever signed it.
    pub tls_pin_sha256: Option<String>,
    /// The name to verify in the backend's certificate (default: the host
    /// of `address`).
    pub tls_server_name: Option<String>,
    /// Give up connecting to the backend after this many seconds.
    #[serde(default = "default_backend_timeout")]
    pub connect_timeout_secs: u64,
    /// Give up on one backend command after this many seconds.
    #[serde(default = "default_backend_command_timeout")]
    pub command_timeout_secs: u64,
}

fn default_master_separator() -> String {
    "*".to_string()
}

fn default_backend_timeout() -> u64 {
    5
}

fn default_backend_command_timeout() -> u64 {
    30
}

/// How tandem talks to its backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendTlsMode {
    /// Plain TCP.
    #[default]
    None,
    /// TLS from the first byte.
    Implicit,
}

/// The backend's server software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Dovecot 2.3 or later.
    Dovecot,
    /// Cyrus IMAP 3.x.
    Cyrus,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Dovecot => "dovecot",
            BackendKind::Cyrus => "cyrus",
        })
    }
}

/// How the backend admin authenticates as another user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminMethod {
    /// SASL PLAIN with the user as authorization id (Dovecot and Cyrus).
    #[default]
    Authzid,
    /// LOGIN as `user<separator>admin` (Dovecot master users only).
    MasterLogin,
}

/// A voting peer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's node id.
    pub id: u64,
    /// `host:port` of the peer's replication listener.
    pub address: String,
    /// `host:port` of the peer's `listen.metrics`, if `tandem status
    /// --config` should ask it too.
    #[serde(default)]
    pub metrics: Option<String>,
}

/// Limits on clients. Each has a default meant for production.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Client connections open at once, over all addresses.
    pub max_connections: u32,
    /// Client connections open at once from one IP address.
    pub max_connections_per_ip: u32,
    /// Largest literal a client may send (an APPEND over it gets
    /// `NO [TOOBIG]`); also advertised as APPENDLIMIT.
    pub max_literal_bytes: u64,
    /// Longest command line, literals excluded (over it: BAD, then close).
    pub max_line_bytes: u32,
    /// Seconds a client has from connecting to authenticating.
    pub login_timeout_secs: u64,
    /// Seconds of inactivity before autologout (RFC 9051: at least 1800).
    pub idle_timeout_secs: u64,
    /// Seconds one IDLE command may last before the server ends it.
    pub idle_command_timeout_secs: u64,
}

/// When the node reports itself ready (`/readyz`): a leader is known, the
/// backend answers, and the backend's replication lag is under the bound.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Largest replication lag, in seconds, of a ready node.
    pub ready_max_lag_seconds: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            ready_max_lag_seconds: 30,
        }
    }
}

impl Limits {
    /// Each limit within its range.
    fn validate(&self, p: &mut Vec<String>) {
        let l = self;
        if l.max_connections == 0 {
            p.push("limits.max_connections must be at least 1".to_string());
        }
        if l.max_connections_per_ip == 0 || l.max_connections_per_ip > l.max_connections {
            p.push(format!(
                "limits.max_connections_per_ip must be between 1 and limits.max_connections ({})",
                l.max_connections
            ));
        }
        if l.max_literal_bytes < 1024 {
            p.push("limits.max_literal_bytes must be at least 1024".to_string());
        }
        if l.max_line_bytes < 1024 {
            p.push(
                "limits.max_line_bytes must be at least 1024 (RFC 7162 asks for 8192)".to_string(),
            );
        }
        if l.login_timeout_secs == 0 {
            p.push("limits.login_timeout_secs must be at least 1".to_string());
        }
        if Duration::from_secs(l.idle_timeout_secs) < MIN_AUTOLOGOUT {
            p.push(format!(
                "limits.idle_timeout_secs must be at least {} (RFC 9051 section 5.4)",
                MIN_AUTOLOGOUT.as_secs()
            ));
        }
        if l.idle_command_timeout_secs == 0 {
            p.push("limits.idle_command_timeout_secs must be at least 1".to_string());
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_connections_per_ip: 200,
            max_literal_bytes: 64 * 1024 * 1024,
            max_line_bytes: 64 * 1024,
            login_timeout_secs: 60,
            idle_timeout_secs: 30 * 60,
            idle_command_timeout_secs: 30 * 60,
        }
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates `text`; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Every inconsistency of the config, each naming its field. Empty when
    /// the config can be used.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.node.id == 0 {
            p.push("node.id must be a positive integer".to_string());
        }
        if self.node.data_dir.as_os_str().is_empty() {
            p.push("node.data_dir must not be empty".to_string());
        }

        self.validate_roles(&mut p);
        self.validate_peers(&mut p);
        self.validate_listeners(&mut p);
        self.limits.validate(&mut p);
        p
    }

    /// What the node's role asks for: a backend and a client listener on a
    /// mail node, neither on a witness; TLS and the cluster section.
    fn validate_roles(&self, p: &mut Vec<String>) {
        match (self.node.role, &self.backend) {
            (Role::Mail, None) => {
                p.push("a node with role \"mail\" needs a [backend] section".to_string())
            }
            (Role::Witness, Some(_)) => {
                p.push("a witness has no backend: remove [backend] or set node.role".to_string())
            }
            _ => {}
        }
        if self.node.role == Role::Mail && self.listen.imap.is_none() && self.listen.imaps.is_none()
        {
            p.push("a mail node needs listen.imap or listen.imaps".to_string());
        }
        if let Some(b) = &self.backend {
            b.validate(p);
        }
        match &self.tls {
            None if self.listen.imaps.is_some() => {
                p.push("listen.imaps needs a [tls] section with cert and key".to_string())
            }
            None => {}
            Some(t) => {
                for (i, n) in t.plaintext_networks.iter().enumerate() {
                    if parse_cidr(n).is_none() {
                        p.push(format!(
                            "tls.plaintext_networks[{i}] {n:?} is not a CIDR network"
                        ));
                    }
                }
            }
        }

        if self.node.role == Role::Witness {
            for (name, addr) in [("imap", self.listen.imap), ("imaps", self.listen.imaps)] {
                if addr.is_some() {
                    p.push(format!(
                        "a witness serves no clients: remove listen.{name} or set node.role"
                    ));
                }
            }
        }
        if self.listen.peer.port() == 0 {
            p.push("listen.peer must have a port between 1 and 65535 (peers dial it)".to_string());
        }
        match &self.cluster {
            None => p.push(
                "a [cluster] section (ca, cert, key) is required: every node replicates; \
                 a node without [[peer]]s is a cluster of one"
                    .to_string(),
            ),
            Some(c) => c.validate(p),
        }
    }

    /// Peer ids and addresses: positive, unique, not this node's.
    fn validate_peers(&self, p: &mut Vec<String>) {
        let mut ids = BTreeSet::new();
        ids.insert(self.node.id);
        let mut addresses: Vec<&str> = Vec::new();
        for (i, peer) in self.peers.iter().enumerate() {
            if peer.id == 0 {
                p.push(format!("peer[{i}].id must be a positive integer"));
            } else if peer.id == self.node.id {
                p.push(format!(
                    "peer[{i}].id {} is node.id: list only the other nodes as [[peer]]",
                    peer.id
                ));
            } else if !ids.insert(peer.id) {
                p.push(format!(
                    "peer[{i}].id {} is used twice (peer ids must be unique)",
                    peer.id
                ));
            }
            if let Err(e) = check_host_port(&peer.address) {
                p.push(format!("peer[{i}].address {:?}: {e}", peer.address));
            } else if addresses.contains(&peer.address.as_str()) {
                p.push(format!(
                    "peer[{i}].address {:?} is the address of another peer",
                    peer.address
                ));
            }
            addresses.push(&peer.address);
        }
    }

    /// No two listeners on one address.
    fn validate_listeners(&self, p: &mut Vec<String>) {
        let mut bound: Vec<(&str, SocketAddr)> = Vec::new();
        for (name, addr) in [
            ("listen.imap", self.listen.imap),
            ("listen.imaps", self.listen.imaps),
            ("listen.metrics", self.listen.metrics),
        ] {
            if let Some(addr) = addr {
                if let Some((other, _)) = bound.iter().find(|(_, a)| *a == addr) {
                    p.push(format!("{name} {addr} is also {other}"));
                }
                bound.push((name, addr));
            }
        }
    }

    /// The backend section; `None` on a witness.
    pub fn backend(&self) -> Option<&BackendConfig> {
        self.backend.as_ref()
    }
}

impl ClusterConfig {
    fn validate(&self, p: &mut Vec<String>) {
        for (name, path) in [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)] {
            if path.as_os_str().is_empty() {
                p.push(format!("cluster.{name} must name a PEM file"));
            }
        }
        if self.heartbeat_ms == 0 {
            p.push("cluster.heartbeat_ms must be at least 1".to_string());
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            p.push(format!(
                "cluster.election_timeout_min_ms ({}) must be below election_timeout_max_ms ({})",
                self.election_timeout_min_ms, self.election_timeout_max_ms
            ));
        }
        if self.heartbeat_ms >= self.election_timeout_min_ms {
            p.push(format!(
                "cluster.heartbeat_ms ({}) must be below election_timeout_min_ms ({}): \
                 followers would elect a new leader between two heartbeats",
                self.heartbeat_ms, self.election_timeout_min_ms
            ));
        }
        if self.proposal_timeout_secs == 0 {
            p.push("cluster.proposal_timeout_secs must be at least 1".to_string());
        }
        if !(1..=10 << 20).contains(&self.min_link_kib_per_sec) {
            p.push("cluster.min_link_kib_per_sec must be between 1 and 10485760".to_string());
        }
        if self.keep_log_entries == 0 {
            p.push("cluster.keep_log_entries must be at least 1".to_string());
        }
        if !(1..=1024).contains(&self.log_segment_mib) {
            p.push("cluster.log_segment_mib must be between 1 and 1024".to_string());
        }
        if !(1..=60_000).contains(&self.state_sync_ms) {
            p.push("cluster.state_sync_ms must be between 1 and 60000".to_string());
        }
    }

    /// The leader's heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// The election timeout range (min, max).
    pub fn election_timeout(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.election_timeout_min_ms),
            Duration::from_millis(self.election_timeout_max_ms),
        )
    }

    /// How long a proposal may wait for commit and local apply.
    pub fn proposal_timeout(&self) -> Duration {
        Duration::from_secs(self.proposal_timeout_secs)
    }
}

impl BackendConfig {
    fn validate(&self, p: &mut Vec<String>) {
        if let Err(e) = check_host_port(&self.address) {
            p.push(format!("backend.address {:?}: {e}", self.address));
        }
        if self.admin_user.is_empty() {
            p.push("backend.admin_user must not be empty".to_string());
        }
        if has_control(&self.admin_user) {
            p.push("backend.admin_user must not contain control characters".to_string());
        }
        match (&self.admin_password, &self.admin_password_file) {
            (None, None) => {
                p.push("backend: set one of admin_password and admin_password_file".to_string())
            }
            (Some(_), Some(_)) => {
                p.push("backend: admin_password and admin_password_file are exclusive".to_string())
            }
            (Some(pw), None) if pw.expose().is_empty() => {
                p.push("backend.admin_password must not be empty".to_string())
            }
            _ => {}
        }
        if self.admin_method == AdminMethod::MasterLogin {
            if self.kind == BackendKind::Cyrus {
                p.push(
                    "backend.admin_method \"master-login\" is Dovecot-only; Cyrus needs \"authzid\""
                        .to_string(),
                );
            }
            if self.master_separator.is_empty() || has_control(&self.master_separator) {
                p.push("backend.master_separator must be a printable string".to_string());
            }
        }
        if self.connect_timeout_secs == 0 {
            p.push("backend.connect_timeout_secs must be at least 1".to_string());
        }
        if self.tls == BackendTlsMode::Implicit
            && self.tls_ca.is_none()
            && self.tls_pin_sha256.is_none()
        {
            p.push(
                "backend.tls = \"implicit\" needs tls_ca (verify) or tls_pin_sha256 (pin)"
                    .to_string(),
            );
        }
        if let Some(pin) = &self.tls_pin_sha256 {
            let hex: String = pin.chars().filter(|c| *c != ':').collect();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                p.push("backend.tls_pin_sha256 must be 64 hex digits".to_string());
            }
        }
        if self.command_timeout_secs == 0 {
            p.push("backend.command_timeout_secs must be at least 1".to_string());
        }
    }

    /// The admin's password, read from the config or its file.
    pub fn admin_password(&self) -> Result<Secret<String>, ConfigError> {
        if let Some(pw) = &self.admin_password {
            return Ok(pw.clone());
        }
        let path = self.admin_password_file.clone().unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Secret {
            field: "backend.admin_password_file",
            path: path.clone(),
            source,
        })?;
        let line = text.lines().next().unwrap_or("").to_string();
        Ok(Secret::new(line))
    }

    /// Seconds to wait for a TCP connection to the backend.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// Seconds to wait for one backend command.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Checks that `s` looks like `host:port` (or `[v6]:port`) with a non-zero
/// port. The host is resolved only when used.
fn check_host_port(s: &str) -> Result<(), String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return match addr.port() {
            0 => Err("port must be between 1 and 65535".to_string()),
            _ => Ok(()),
        };
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("expected host:port".to_string());
    };
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains(':') {
        return Err("expected host:port (write IPv6 addresses as [addr]:port)".to_string());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err("port must be between 1 and 65535".to_string()),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [node]
        id = 1
        data_dir = "/var/lib/tandem"
        [listen]
        imap = "127.0.0.1:1143"
        peer = "127.0.0.1:1700"
        [backend]
        kind = "dovecot"
        address = "127.0.0.1:1144"
        admin_user = "admin"
        admin_password = "secret"
        [cluster]
        ca = "/etc/tandem/ca.pem"
        cert = "/etc/tandem/node-1.pem"
        key = "/etc/tandem/node-1.key"
        [[peer]]
        id = 2
        address = "127.0.0.1:2700"
    "#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn minimal_config_is_valid_and_has_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.node.id, 1);
        assert_eq!(c.node.role, Role::Mail);
        let b = c.backend().unwrap();
        assert_eq!(b.admin_method, AdminMethod::Authzid);
        assert_eq!(b.master_separator, "*");
        assert_eq!(c.limits.idle_timeout_secs, 1800);
        assert_eq!(c.peers.len(), 1);
        let cluster = c.cluster.as_ref().unwrap();
        assert_eq!(cluster.heartbeat(), Duration::from_millis(250));
        assert_eq!(
            cluster.election_timeout(),
            (Duration::from_millis(1000), Duration::from_millis(2000))
        );
        assert_eq!(cluster.proposal_timeout(), Duration::from_secs(5));
        assert_eq!(cluster.keep_log_entries, 100_000);
        assert_eq!(cluster.log_segment_mib, 32);
        assert_eq!(cluster.state_sync_ms, 200);
    }

    #[test]
    fn cluster_section_is_required_even_without_peers() {
        let start = MINIMAL.find("[cluster]").unwrap();
        let end = MINIMAL.find("[[peer]]").unwrap();
        let text = format!("{}{}", &MINIMAL[..start], &MINIMAL[end..]);
        assert!(problems(&text).iter().any(|s| s.contains("[cluster]")));
        let alone = &MINIMAL[..end];
        assert!(
            parse(alone).is_ok(),
            "a node without peers is a cluster of one"
        );
    }

    #[test]
    fn raft_timing_is_checked() {
        let text = MINIMAL.replace(
            "key = \"/etc/tandem/node-1.key\"",
            "key = \"/etc/tandem/node-1.key\"\nheartbeat_ms = 1500\n\
             election_timeout_min_ms = 3000\nelection_timeout_max_ms = 3000\n\
             proposal_timeout_secs = 0\nkeep_log_entries = 0",
        );
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|s| s.contains("must be below election_timeout_max_ms")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|s| s.contains("proposal_timeout_secs")),
            "{p:?}"
        );
        assert!(p.iter().any(|s| s.contains("keep_log_entries")), "{p:?}");
        let text = MINIMAL.replace(
            "key = \"/etc/tandem/node-1.key\"",
            "key = \"/etc/tandem/node-1.key\"\nheartbeat_ms = 1000",
        );
        let p = problems(&text);
        assert!(
            p.iter()
                .any(|s| s.contains("heartbeat_ms (1000) must be below election_timeout_min_ms")),
            "{p:?}"
        );
    }

    #[test]
    fn peers_must_be_distinct_from_each_other() {
        let text = format!("{MINIMAL}\n[[peer]]\nid = 2\naddress = \"127.0.0.1:2700\"\n");
        let p = problems(&text);
        assert!(
            p.iter().any(|s| s.contains("peer[1].id 2 is used twice")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|s| s.contains("peer[1].address") && s.contains("another peer")),
            "{p:?}"
        );
    }

    #[test]
    fn witness_serves_no_clients() {
        let start = MINIMAL.find("[backend]").unwrap();
        let end = MINIMAL.find("[cluster]").unwrap();
        let witness = format!("{}{}", &MINIMAL[..start], &MINIMAL[end..])
            .replace("id = 1\n", "id = 1\nrole = \"witness\"\n");
        let p = problems(&witness);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("remove listen.imap"), "{p:?}");
        let witness = witness.replace("imap = \"127.0.0.1:1143\"\n", "");
        assert!(parse(&witness).is_ok());
    }

    #[test]
    fn password_never_appears_in_debug_output() {
        let c = parse(MINIMAL).unwrap();
        let dump = format!("{c:?}");
        assert!(!dump.contains("secret"), "{dump}");
        assert!(dump.contains("<redacted>"));
    }

    #[test]
    fn unknown_field_is_a_parse_error_with_position() {
        let text = MINIMAL.replace("admin_user", "admin_usr");
        let err = parse(&text).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Parse { .. }));
        assert!(msg.contains("admin_usr"), "{msg}");
    }

    #[test]
    fn duplicate_ids_zero_id_and_bad_addresses_are_all_reported() {
        let text = MINIMAL
            .replace("id = 2", "id = 1")
            .replace("\"127.0.0.1:2700\"", "\"nohost\"")
            .replace("\"127.0.0.1:1144\"", "\"127.0.0.1:0\"");
        let p = problems(&text);
        assert!(p.iter().any(|s| s.contains("is node.id")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("peer[0].address")), "{p:?}");
        assert!(p.iter().any(|s| s.contains("backend.address")), "{p:?}");
    }

    #[test]
    fn idle_timeout_below_rfc_minimum_is_refused() {
        let text = format!("{MINIMAL}\n[limits]\nidle_timeout_secs = 60\n");
        let p = problems(&text);
        assert!(p.iter().any(|s| s.contains("RFC 9051")), "{p:?}");
    }

    #[test]
    fn password_and_password_file_are_exclusive() {
        let text = MINIMAL.replace(
            "admin_password = \"secret\"",
            "admin_password = \"x\"\nadmin_password_file = \"/x\"",
        );
        assert!(problems(&text).iter().any(|s| s.contains("exclusive")));
        let text = MINIMAL.replace("admin_password = \"secret\"", "");
        assert!(problems(&text).iter().any(|s| s.contains("set one of")));
    }

    #[test]
    fn master_login_is_refused_for_cyrus() {
        let text = MINIMAL
            .replace("\"dovecot\"", "\"cyrus\"")
            .replace("admin_user", "admin_method = \"master-login\"\nadmin_user");
        assert!(problems(&text).iter().any(|s| s.contains("Dovecot-only")));
    }

    #[test]
    fn witness_must_not_have_a_backend() {
        let text = MINIMAL.replace("id = 1\n", "id = 1\nrole = \"witness\"\n");
        assert!(problems(&text).iter().any(|s| s.contains("witness")));
    }

    #[test]
    fn example_config_in_deploy_parses_and_validates() {
        let text = include_str!("../../deploy/tandem.example.toml");
        let c = Config::from_toml(text, Path::new("deploy/tandem.example.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.node.id, 1);
        assert_eq!(c.peers.len(), 2);
        let cluster = c.cluster.as_ref().unwrap();
        assert_eq!(cluster.heartbeat_ms, 250);
        assert_eq!(cluster.keep_log_entries, 100_000);
        let b = c.backend().unwrap();
        assert_eq!(b.kind, BackendKind::Dovecot);
        assert!(b.admin_password.is_none() && b.admin_password_file.is_some());
        let defaults = Limits::default();
        assert_eq!(c.limits.max_literal_bytes, defaults.max_literal_bytes);
        assert_eq!(c.limits.max_line_bytes, defaults.max_line_bytes);
    }

    #[test]
    fn cidr_networks() {
        let net = parse_cidr("10.1.0.0/16").unwrap();
        assert!(in_network("10.1.2.3".parse().unwrap(), net));
        assert!(!in_network("10.2.0.1".parse().unwrap(), net));
        assert!(in_network(
            "::1".parse().unwrap(),
            parse_cidr("::1").unwrap()
        ));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("nonsense").is_none());
        let text =
            format!("{MINIMAL}\n[tls]\ncert = \"c\"\nkey = \"k\"\nplaintext_networks = [\"x\"]\n");
        assert!(problems(&text)
            .iter()
            .any(|s| s.contains("plaintext_networks")));
    }

    #[test]
    fn host_port_forms() {
        assert!(check_host_port("mail1.example.org:7700").is_ok());
        assert!(check_host_port("[::1]:7700").is_ok());
        assert!(check_host_port("::1:7700").is_err());
        assert!(check_host_port("host").is_err());
        assert!(check_host_port("host:99999").is_err());
    }
}
