//! # tandem-proxy
//!
//! The `tandem` binary and the code that moves bytes: client sessions, the
//! backend sessions behind them, TLS, metrics, and the wiring of a node to
//! the replicated log.
//!
//! What this crate never does: it never decides protocol questions by itself
//! (framing, parsing and UID rewriting belong to `tandem-parser`), never
//! orders mutations on its own (that is `tandem-replicator`'s log), and never
//! sends a client a UID that its log entry has not made durable on a majority.
//! The canonical state machine it replicates is `tandem-state`'s.
//!
//! # Layout
//! - [`config`]: the TOML config, validated before any socket is bound.
//! - [`secret`]: `Secret<T>`, which keeps credentials out of logs.
//! - [`backend`]: tandem's own IMAP client for its backend (admin sessions).
//! - [`check`]: `tandem check`, the operator's pre-flight probe.
//! - [`server`]: the client listener, connection limits, graceful shutdown.
//! - [`session`]: one client and its backend connection: framing, literal
//!   limits, capability filtering, timeouts; the mutation policy as pure
//!   functions (`session/plan.rs`).
//! - [`demo`]: `tandem demo`, a local cluster of real Dovecots (or Cyrus
//!   servers) and nodes; their setups are `tandem-backends`', shared with
//!   the test harness.
//! - [`tls`]: the client-facing TLS acceptor, an upgradable stream, and
//!   the backend connector.
//! - [`apply`]: carries committed entries to the local backend; the
//!   canonical <-> local UID maps.
//! - [`cluster`]: a node's config turned into its Raft node's settings
//!   (members, cluster TLS, timing, log directory).
//! - [`metrics`]: the metric names, descriptions and bounded labels.
//! - [`status`]: `/metrics`, `/healthz`, `/readyz`, `/status` and the
//!   sampler behind them.
//! - [`replication`]: a node's Raft node, applier and UID maps, and the
//!   adoption of mail delivered behind tandem.
//! - [`cli`]: the command line.
#![forbid(unsafe_code)]

pub mod apply;
pub mod backend;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod replication;
pub mod secret;
pub mod server;
pub mod session;
pub mod status;
pub mod tls;
