//! TLS toward the backend: the connector, verified against a CA file or
//! pinned by the SHA-256 of the backend's certificate (handshake signatures
//! still checked), and the connect with its timeout.

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, TlsStream};

use super::{Stream, TlsSetupError};
use crate::config::{BackendConfig, BackendTlsMode};

/// How tandem reaches its backend over TLS: the connector (verifying against
/// a CA file or a pinned certificate) and the name to verify.
#[derive(Clone)]
pub struct BackendTls {
    connector: TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("name", &self.name)
            .finish()
    }
}

/// The backend's TLS setup, or `None` for a plain backend connection.
pub fn backend_tls(cfg: &BackendConfig) -> Result<Option<BackendTls>, TlsSetupError> {
    if cfg.tls == BackendTlsMode::None {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if let Some(pin) = &cfg.tls_pin_sha256 {
        let pin = parse_pin(pin).ok_or_else(|| TlsSetupError::Pem {
            what: "pin",
            path: "backend.tls_pin_sha256".into(),
            message: "expected 64 hex digits".to_string(),
        })?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCert { pin, provider }))
            .with_no_client_auth()
    } else {
        let path = cfg.tls_ca.clone().unwrap_or_default();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsSetupError::Pem {
                what: "CA certificate",
                path: path.clone(),
                message: e.to_string(),
            })?
        {
            roots.add(cert)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let host = cfg
        .tls_server_name
        .clone()
        .unwrap_or_else(|| backend_host(&cfg.address));
    let name =
        rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| TlsSetupError::Pem {
            what: "server name",
            path: host.into(),
            message: e.to_string(),
        })?;
    Ok(Some(BackendTls {
        connector: TlsConnector::from(Arc::new(config)),
        name,
    }))
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn backend_host(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

fn parse_pin(hex: &str) -> Option<[u8; 32]> {
    let hex: String = hex.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Accepts exactly one certificate, by the SHA-256 of its DER, and checks
/// the handshake signatures with it (so the peer holds its key).
#[derive(Debug)]
struct PinnedCert {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref());
        if digest.as_ref() == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "backend certificate does not match backend.tls_pin_sha256".to_string(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connects to the backend (TCP, then TLS when configured) within the
/// configured connect timeout.
pub async fn connect_backend(cfg: &BackendConfig, tls: Option<&BackendTls>) -> io::Result<Stream> {
    let fut = async {
        let tcp = TcpStream::connect(&cfg.address).await?;
        tcp.set_nodelay(true)?;
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(t) => {
                let s = t.connector.connect(t.name.clone(), tcp).await?;
                Ok(Stream::Tls(Box::new(TlsStream::Client(s))))
            }
        }
    };
    tokio::time::timeout(cfg.connect_timeout(), fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "backend connect timed out"))?
}
