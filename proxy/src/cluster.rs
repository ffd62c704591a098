//! From a node's config to the settings of its Raft node: the members (this
//! node and its `[[peer]]`s), the cluster's mutual-TLS material, where the
//! log lives and the timing of `[cluster]`.
//!
//! Bootstrap invariant: only the very first start of a brand-new cluster
//! passes `bootstrap = true`; a node whose log directory is new for any
//! other reason (a replaced disk) must join without it, so that it cannot
//! vote before a leader brings it up to date (see
//! `tandem_replicator::NodeConfig::bootstrap`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_replicator::tls::{TlsFiles, TlsMaterial};
use tandem_replicator::NodeConfig;

use crate::config::Config;

/// Where a node keeps its replicated log: `<node.data_dir>/raft`.
pub fn raft_dir(config: &Config) -> PathBuf {
    raft_dir_of(&config.node.data_dir)
}

/// The log directory under a node's `data_dir`.
pub fn raft_dir_of(data_dir: &Path) -> PathBuf {
    data_dir.join("raft")
}

/// The Raft node settings for `config`, with its TLS material loaded.
/// `bootstrap`: this start creates the cluster (first start only).
pub fn node_config(config: &Config, bootstrap: bool) -> Result<NodeConfig, String> {
    let cluster = config
        .cluster
        .as_ref()
        .ok_or("the config has no [cluster] section")?;
    let tls = TlsMaterial::load(&TlsFiles {
        ca: cluster.ca.clone(),
        cert: cluster.cert.clone(),
        key: cluster.key.clone(),
    })
    .map_err(|e| format!("cluster TLS material: {e}"))?;
    check_cert_names_node(&cluster.cert, config.node.id)?;
    let mut members: BTreeMap<u64, String> = config
        .peers
        .iter()
        .map(|p| (p.id, p.address.clone()))
        .collect();
    if members.contains_key(&config.node.id) {
        return Err(format!(
            "node.id {} is also listed as a [[peer]]",
            config.node.id
        ));
    }
    // This node's own entry is only a label (nobody dials it from here).
    members.insert(config.node.id, config.listen.peer.to_string());
    let mut node = NodeConfig::new(
        config.node.id,
        config.listen.peer,
        members,
        raft_dir(config),
        tls,
    );
    node.heartbeat = cluster.heartbeat();
    node.election_timeout = cluster.election_timeout();
    node.proposal_timeout = cluster.proposal_timeout();
    node.min_link_rate = cluster.min_link_kib_per_sec * 1024;
    node.keep_log_entries = cluster.keep_log_entries;
    node.log_segment_bytes = cluster.log_segment_mib << 20;
    node.state_sync_interval = Duration::from_millis(cluster.state_sync_ms);
    node.bootstrap = bootstrap;
    Ok(node)
}

/// Peers accept this node only if its certificate names
/// `node-<id>.tandem`; a certificate issued for another id would fail every
/// handshake, so it is refused here with a message that says why.
fn check_cert_names_node(path: &std::path::Path, id: u64) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(path)
        .map_err(|e| format!("cluster.cert {}: {e}", path.display()))?;
    match tandem_replicator::tls::peer_node_id(&der, [id]) {
        Some(_) => Ok(()),
        None => Err(format!(
            "cluster.cert {} is not node {id}'s certificate (it must name {}); \
             use the node-{id}.pem that `tandem certs` wrote",
            path.display(),
            tandem_replicator::tls::node_name(id)
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(certs: &Path, id: u64) -> Config {
        let text = format!(
            r#"
            [node]
            id = {id}
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
            ca = "{ca}"
            cert = "{cert}"
            key = "{key}"
            heartbeat_ms = 100
            election_timeout_min_ms = 500
            election_timeout_max_ms = 900
            proposal_timeout_secs = 3
            min_link_kib_per_sec = 100
            keep_log_entries = 42
            [[peer]]
            id = 2
            address = "mail2.example.org:2700"
            [[peer]]
            id = 3
            address = "127.0.0.1:3700"
            "#,
            ca = certs.join("ca.pem").display(),
            cert = certs.join("node-1.pem").display(),
            key = certs.join("node-1.key").display(),
        );
        Config::from_toml(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn members_timing_and_data_dir_come_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        tandem_replicator::tls::write_cluster_certs(dir.path(), &[1, 2, 3]).unwrap();
        let node = node_config(&config(dir.path(), 1), true).unwrap();
        assert_eq!(node.id, 1);
        assert_eq!(node.listen, "127.0.0.1:1700".parse().unwrap());
        let members: Vec<(u64, &str)> = node
            .members
            .iter()
            .map(|(id, a)| (*id, a.as_str()))
            .collect();
        assert_eq!(
            members,
            [
                (1, "127.0.0.1:1700"),
                (2, "mail2.example.org:2700"),
                (3, "127.0.0.1:3700")
            ]
        );
        assert_eq!(node.data_dir, Path::new("/var/lib/tandem/raft"));
        assert_eq!(node.heartbeat.as_millis(), 100);
        assert_eq!(node.election_timeout.0.as_millis(), 500);
        assert_eq!(node.election_timeout.1.as_millis(), 900);
        assert_eq!(node.proposal_timeout.as_secs(), 3);
        assert_eq!(node.min_link_rate, 100 * 1024);
        assert_eq!(node.keep_log_entries, 42);
        assert!(node.bootstrap);
        assert!(
            !node_config(&config(dir.path(), 1), false)
                .unwrap()
                .bootstrap
        );
    }

    #[test]
    fn another_nodes_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        tandem_replicator::tls::write_cluster_certs(dir.path(), &[1, 2]).unwrap();
        let d = dir.path();
        std::fs::rename(d.join("node-2.pem"), d.join("node-1.pem")).unwrap();
        std::fs::remove_file(d.join("node-1.key")).unwrap();
        std::fs::rename(d.join("node-2.key"), d.join("node-1.key")).unwrap();
        let err = node_config(&config(d, 1), false).unwrap_err();
        assert!(err.contains("is not node 1's certificate"), "{err}");
        assert!(err.contains("node-1.tandem"), "{err}");
    }

    #[test]
    fn missing_certificate_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = node_config(&config(dir.path(), 1), false).unwrap_err();
        assert!(err.contains("cluster TLS material"), "{err}");
        assert!(err.contains("ca.pem"), "{err}");
    }
}
