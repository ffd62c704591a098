//! # tandem-replicator
//!
//! The consensus log that orders every mutation of the cluster: a Raft log
//! (from an existing, well-tested implementation) carried over QUIC with
//! mutual TLS, kept in an embedded crash-safe store, and applied in order to
//! a deterministic state machine that owns canonical UIDVALIDITY and UIDNEXT.
//!
//! What this crate never does: it never parses or speaks IMAP, and it never
//! decides on its own that a write succeeded: an entry counts only once a
//! majority of voters holds it. No home-made election, lease or lock.
//!
//! # Layout
//! The modules arrive with the replicator issue; at this stage the crate only
//! marks its place in the workspace.
#![forbid(unsafe_code)]
