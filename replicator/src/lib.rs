//! # tandem-replicator
//!
//! The consensus log that orders every mutation of the cluster: a Raft log
//! (openraft 0.9, the stable branch) carried over QUIC (quinn) with mutual
//! TLS (rustls, ring), kept in an embedded crash-safe store (redb), and
//! applied in order to a deterministic state machine supplied by the
//! application.
//!
//! What this crate never does: it never parses or speaks IMAP, and it never
//! decides on its own that a write succeeded: an entry counts only once a
//! majority of voters holds it. No home-made election, lease or lock: terms
//! and votes are openraft's.
//!
//! # Layout
//! - [`types`]: the openraft type configuration; opaque payloads.
//! - [`sm`]: the [`StateMachine`] trait the application implements.
//! - [`store`]: the log (segment files, `segments`) and the redb store of
//!   vote, applied index, state machine and snapshots.
//! - [`tls`]: cluster CA, node certificates pinned to node ids, rustls
//!   configurations for quinn.
//! - [`transport`]: Raft RPCs and forwarded proposals over QUIC streams.
//! - [`blob`]: large payloads as content-addressed files pushed to a
//!   majority beside the log; only their hash goes through Raft.
//! - [`node`]: [`Node`], which wires it all and offers `propose`.
//! - `relay`: the UDP fault relay used by tests and the chaos campaign, and
//!   `testing`: a tiny state machine for tests and benchmarks of the log;
//!   both only with the `testing` feature (the test harness turns it on;
//!   the `tandem` binary is built without it).
#![forbid(unsafe_code)]

pub mod blob;
pub mod node;
#[cfg(feature = "testing")]
pub mod relay;
mod segments;
pub mod sm;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod transport;
pub mod types;

pub use node::{LocalTables, Node, NodeConfig, NodeError, NodeStatus, ProposeError, MIN_LINK_RATE};
pub use sm::{SmError, StateMachine};
pub use types::NodeId;
