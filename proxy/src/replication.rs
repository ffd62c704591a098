//! A mail node's replication: the Raft node with the canonical state
//! machine, the applier that carries committed entries to the local backend,
//! and the UID maps the sessions rewrite with.
//!
//! (Being built: see issue #6.)

use std::sync::Arc;

use tandem_replicator::{Node, NodeConfig};

use crate::canon::Canon;
use crate::config::Config;

/// A running replicated node.
pub struct Replication {
    /// The Raft node.
    pub node: Node<Canon>,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication").finish_non_exhaustive()
    }
}

impl Replication {
    /// Starts the Raft node for `config` (node settings from
    /// `node_config`) and the applier toward the configured backend.
    pub async fn start(
        config: &Config,
        node_config: NodeConfig,
    ) -> Result<Arc<Replication>, String> {
        let _ = config;
        let node = Node::start(node_config, Canon::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Replication { node }))
    }

    /// Stops the applier and the Raft node.
    pub async fn shutdown(self: Arc<Self>) {
        match Arc::try_unwrap(self) {
            Ok(r) => r.node.shutdown().await,
            Err(r) => {
                let _ = r.node.raft().shutdown().await;
            }
        }
    }
}
