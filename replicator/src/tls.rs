//! Mutual TLS between nodes: a private cluster CA, node certificates pinned
//! to node ids, and the rustls configurations quinn uses.
//!
//! A node's certificate names it `node-<id>.tandem` (a DNS subject
//! alternative name). A client connecting to node N asks for that name, so
//! only N's certificate is accepted; a server accepts only certificates from
//! the cluster CA and learns the caller's node id from the name, so a node
//! cannot speak for another. One crypto provider, ring, is used throughout:
//! mixing ring and aws-lc-rs makes rustls panic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::types::NodeId;

/// The ALPN protocol of tandem's replication traffic.
pub const ALPN: &[u8] = b"tandem-raft/1";

/// The common name of every cluster CA tandem makes. Node certificates
/// issued later from the same CA key carry the same issuer name.
const CA_COMMON_NAME: &str = "tandem cluster CA";

/// What went wrong with certificates or TLS setup.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {what} from {path}: {message}")]
    Read {
        /// Which file it was (CA, certificate, key).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Generating a key or a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the material (e.g. key and certificate do not match).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("cannot build the peer verifier: {0}")]
    Verifier(String),
    /// quinn refused the rustls configuration.
    #[error("QUIC does not accept this TLS configuration: {0}")]
    Quic(String),
}

/// The DNS name in node `id`'s certificate.
pub fn node_name(id: NodeId) -> String {
    format!("node-{id}.tandem")
}

/// A PEM certificate and its PEM private key.
#[derive(Clone)]
pub struct PemPair {
    /// The certificate, PEM.
    pub cert: String,
    /// The private key, PEM (PKCS#8). Secret.
    pub key: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemPair")
            .field("cert", &format_args!("{} bytes", self.cert.len()))
            .field("key", &"<redacted>")
            .finish()
    }
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Makes a new cluster CA.
pub fn generate_ca() -> Result<PemPair, TlsError> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Issues node `id`'s certificate from the CA key `ca_key_pem` (made by
/// [`generate_ca`]).
pub fn issue_node_cert(ca_key_pem: &str, id: NodeId) -> Result<PemPair, TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![node_name(id)])?;
    params
        .distinguished_name
        .push(DnType::CommonName, node_name(id));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params.signed_by(&key, &issuer)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Where a node's TLS files are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
}

/// A node's TLS material, parsed.
#[derive(Debug)]
pub struct TlsMaterial {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        TlsMaterial {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsMaterial {
    /// Parses PEM text: the CA certificate, this node's certificate and key.
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<TlsMaterial, TlsError> {
        let bad = |what: &'static str, e: rustls::pki_types::pem::Error| TlsError::Read {
            what,
            path: PathBuf::from("<memory>"),
            message: e.to_string(),
        };
        Ok(TlsMaterial {
            ca: CertificateDer::from_pem_slice(ca.as_bytes()).map_err(|e| bad("CA", e))?,
            chain: vec![CertificateDer::from_pem_slice(cert.as_bytes())
                .map_err(|e| bad("certificate", e))?],
            key: PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| bad("key", e))?,
        })
    }

    /// Reads the three PEM files.
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, TlsError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read_to_string(path).map_err(|e| TlsError::Read {
                what,
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        };
        let ca = read("the CA certificate", &files.ca)?;
        let cert = read("the node certificate", &files.cert)?;
        let key = read("the node key", &files.key)?;
        TlsMaterial::from_pem(&ca, &cert, &key).map_err(|e| match e {
            TlsError::Read { what, message, .. } => TlsError::Read {
                what,
                path: match what {
                    "CA" => files.ca.clone(),
                    "certificate" => files.cert.clone(),
                    _ => files.key.clone(),
                },
                message,
            },
            other => other,
        })
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(roots)
    }

    /// The QUIC server side: TLS 1.3, client certificates from the cluster
    /// CA required.
    pub fn quinn_server(&self) -> Result<quinn::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        crypto.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
    }

    /// The QUIC client side: presents this node's certificate, accepts only
    /// servers with a cluster-CA certificate for the name it dials.
    pub fn quinn_client(&self) -> Result<quinn::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        crypto.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        Ok(quinn::ClientConfig::new(Arc::new(quic)))
    }
}

/// The node id a verified peer certificate is valid for, among `candidates`.
pub fn peer_node_id(
    cert: &CertificateDer<'_>,
    candidates: impl IntoIterator<Item = NodeId>,
) -> Option<NodeId> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    candidates.into_iter().find(|&id| {
        ServerName::try_from(node_name(id))
            .map(|name| ee.verify_is_valid_for_subject_name(&name).is_ok())
            .unwrap_or(false)
    })
}

/// Writes a cluster CA and certificates for `ids` into `dir` (created if
/// missing): `ca.pem`, `ca.key`, `node-<id>.pem`, `node-<id>.key`. Keys are
/// written mode 0600. An existing `ca.key` is reused, so nodes can be added
/// later; an existing node file is never overwritten.
pub fn write_cluster_certs(dir: &Path, ids: &[NodeId]) -> Result<Vec<PathBuf>, TlsError> {
    let io = |path: &Path, e: std::io::Error| TlsError::Read {
        what: "a certificate file",
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let ca_key_path = dir.join("ca.key");
    let ca_cert_path = dir.join("ca.pem");
    let mut written = Vec::new();
    let ca_key = if ca_key_path.exists() {
        std::fs::read_to_string(&ca_key_path).map_err(|e| io(&ca_key_path, e))?
    } else {
        let ca = generate_ca()?;
        write_private(&ca_key_path, &ca.key).map_err(|e| io(&ca_key_path, e))?;
        std::fs::write(&ca_cert_path, &ca.cert).map_err(|e| io(&ca_cert_path, e))?;
        written.push(ca_cert_path.clone());
        written.push(ca_key_path.clone());
        ca.key
    };
    for &id in ids {
        let cert_path = dir.join(format!("node-{id}.pem"));
        let key_path = dir.join(format!("node-{id}.key"));
        if cert_path.exists() || key_path.exists() {
            return Err(io(
                &cert_path,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "refusing to overwrite"),
            ));
        }
        let pair = issue_node_cert(&ca_key, id)?;
        std::fs::write(&cert_path, &pair.cert).map_err(|e| io(&cert_path, e))?;
        write_private(&key_path, &pair.key).map_err(|e| io(&key_path, e))?;
        written.push(cert_path);
        written.push(key_path);
    }
    Ok(written)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificate_is_pinned_to_its_id() {
        let ca = generate_ca().unwrap();
        let node = issue_node_cert(&ca.key, 7).unwrap();
        let der = CertificateDer::from_pem_slice(node.cert.as_bytes()).unwrap();
        assert_eq!(peer_node_id(&der, [1, 2, 7, 9]), Some(7));
        assert_eq!(peer_node_id(&der, [1, 2, 3]), None);
    }

    #[test]
    fn pem_pair_debug_hides_the_key() {
        let ca = generate_ca().unwrap();
        let dump = format!("{ca:?}");
        assert!(!dump.contains("PRIVATE KEY"), "{dump}");
    }

    #[test]
    fn certs_written_to_disk_load_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_cluster_certs(dir.path(), &[1, 2]).unwrap();
        // A node added later is signed by the same CA.
        write_cluster_certs(dir.path(), &[3]).unwrap();
        assert!(
            write_cluster_certs(dir.path(), &[3]).is_err(),
            "no overwrite"
        );
        for id in [1, 2, 3] {
            let m = TlsMaterial::load(&TlsFiles {
                ca: dir.path().join("ca.pem"),
                cert: dir.path().join(format!("node-{id}.pem")),
                key: dir.path().join(format!("node-{id}.key")),
            })
            .unwrap();
            m.quinn_server().unwrap();
            m.quinn_client().unwrap();
            let mode = std::fs::metadata(dir.path().join(format!("node-{id}.key")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key readable by others");
        }
    }
}
