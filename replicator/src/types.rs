//! The Raft type configuration and the opaque payloads the log carries.
//!
//! The log itself never looks inside an entry: the application's typed
//! entries are encoded with postcard into [`Payload`] by [`crate::Node`] and
//! decoded again only by the application's [`crate::StateMachine`].

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A node's id in the cluster.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of tandem's log.
    pub TypeConfig:
        D = Payload,
        R = Output,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// An application entry, encoded: inline when small, else the hash of a
/// blob that travels beside the log (see [`crate::blob`]). `Debug` shows only
/// sizes: entries carry mail, which never goes to logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// The encoded entry itself.
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The SHA-256 of the encoded entry, stored as a blob on a majority.
    Blob {
        /// Content hash.
        hash: Hash,
        /// Length in bytes.
        len: u64,
    },
    /// Entries proposed together (each `Inline` or `Blob`), applied in
    /// order under one log index; the output is the postcard encoding of
    /// their outputs, in the same order. One batch costs one fsync.
    Batch(Vec<Payload>),
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Inline(b) => write!(f, "Payload({} bytes)", b.len()),
            Payload::Blob { len, .. } => write!(f, "Payload(blob, {len} bytes)"),
            Payload::Batch(items) => write!(f, "Payload(batch of {})", items.len()),
        }
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What applying an entry produced, encoded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Output(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Output({} bytes)", self.0.len())
    }
}

/// Shorthands for openraft's generic types over [`TypeConfig`].
pub mod raft {
    use super::{NodeId, TypeConfig};

    /// An entry of the log.
    pub type Entry = openraft::Entry<TypeConfig>;
    /// A log position (term, leader, index).
    pub type LogId = openraft::LogId<NodeId>;
    /// A persisted vote.
    pub type Vote = openraft::Vote<NodeId>;
    /// The cluster's member list as stored in the log.
    pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
    /// A snapshot's identity and position.
    pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
    /// A storage failure, as openraft wants it.
    pub type StorageError = openraft::StorageError<NodeId>;
    /// The Raft handle.
    pub type Raft = openraft::Raft<TypeConfig>;
}

/// A SHA-256 content hash: the name of a large payload kept beside the
/// log (see [`crate::blob`]).
pub type Hash = [u8; 32];
