//! STARTTLS and IMAPS toward clients, against a test CA, with Python's
//! imaplib and ssl as the client; LOGINDISABLED before TLS; the STARTTLS
//! command-injection case (bytes pipelined after STARTTLS); and the backend
//! reached over TLS. Each in front of Dovecot and of Cyrus.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{both_backends, start_proxy_at, start_proxy_for};
use tandem_tests::{Backend, BackendKind};

/// Writes ca.pem, server.pem and server.key (for localhost and 127.0.0.1).
fn test_ca(dir: &Path) {
    tandem_proxy::demo::write_demo_tls(dir).unwrap();
}

fn tls_section(dir: &Path) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nrequire_tls_for_login = true\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    )
}

fn python(script: &str, args: &[String]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    text
}

both_backends!(
    starttls_and_imaps_with_imaplib_and_logindisabled_before_tls,
    bytes_pipelined_after_starttls_close_the_connection,
    backend_over_tls_verified_by_ca_or_pinned,
);

fn starttls_and_imaps_with_imaplib_and_logindisabled_before_tls(kind: BackendKind) {
    let backend = Backend::start(kind);
    let certs = tempfile::tempdir().unwrap();
    test_ca(certs.path());
    let proxy = start_proxy_for(&backend, &tls_section(certs.path()));
    let script = r#"
import imaplib, ssl, sys
ca, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
M = imaplib.IMAP4('127.0.0.1', port)
assert 'STARTTLS' in M.capabilities and 'LOGINDISABLED' in M.capabilities, M.capabilities
try:
    M.login('alice', 'demo')
    raise SystemExit('login before TLS was accepted')
except imaplib.IMAP4.error as e:
    assert 'PRIVACYREQUIRED' in str(e), e
M.starttls(ssl_context=ctx)
assert 'LOGINDISABLED' not in M.capabilities and 'STARTTLS' not in M.capabilities, M.capabilities
M.login('alice', 'demo')
assert M.select('INBOX')[0] == 'OK'
M.logout()
S = imaplib.IMAP4_SSL('127.0.0.1', sport, ssl_context=ctx)
assert 'LOGINDISABLED' not in S.capabilities, S.capabilities
S.login('bob', 'demo')
assert S.select('INBOX')[0] == 'OK'
S.logout()
other = ssl.create_default_context()
try:
    imaplib.IMAP4_SSL('127.0.0.1', sport, ssl_context=other)
    raise SystemExit('a certificate from an unknown CA was accepted')
except ssl.SSLError:
    pass
print('tls ok')
"#;
    let text = python(
        script,
        &[
            certs.path().join("ca.pem").display().to_string(),
            proxy.addr.port().to_string(),
            proxy.imaps.unwrap().port().to_string(),
        ],
    );
    assert!(text.contains("tls ok"), "{text}");
}

fn bytes_pipelined_after_starttls_close_the_connection(kind: BackendKind) {
    let backend = Backend::start(kind);
    let certs = tempfile::tempdir().unwrap();
    test_ca(certs.path());
    let proxy = start_proxy_for(&backend, &tls_section(certs.path()));
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 512];
    let _ = s.read(&mut greeting).unwrap();
    // The injection: a command sent in the clear right after STARTTLS.
    s.write_all(b"s1 STARTTLS\r\ns2 LOGIN alice demo\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("* BYE"), "{reply}");
    assert!(!reply.contains("s1 OK"), "{reply}");
    assert!(!reply.contains("s2 OK"), "{reply}");
}

fn pin_of(cert: &Path) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_file(cert).unwrap();
    ring::digest::digest(&ring::digest::SHA256, der.as_ref())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn backend_over_tls_verified_by_ca_or_pinned(kind: BackendKind) {
    let certs = tempfile::tempdir().unwrap();
    test_ca(certs.path());
    let server = Backend::start_tls(
        kind,
        &certs.path().join("server.pem"),
        &certs.path().join("server.key"),
    );
    let backend = server.imaps_addr().unwrap();
    let start_proxy = |addr, extra: &str| start_proxy_at(kind, addr, extra);

    let verified = start_proxy(
        backend,
        &format!(
            "tls = \"implicit\"\ntls_ca = \"{}\"\n",
            certs.path().join("ca.pem").display()
        ),
    );
    let mut c = tandem_tests::ImapClient::login(verified.addr, "alice", "demo");
    c.command("SELECT INBOX").unwrap().ok();

    let pin = pin_of(&certs.path().join("server.pem"));
    let pinned = start_proxy(
        backend,
        &format!("tls = \"implicit\"\ntls_pin_sha256 = \"{pin}\"\n"),
    );
    let mut c = tandem_tests::ImapClient::login(pinned.addr, "bob", "demo");
    c.command("SELECT INBOX").unwrap().ok();

    let wrong = "00".repeat(32);
    let mismatched = start_proxy(
        backend,
        &format!("tls = \"implicit\"\ntls_pin_sha256 = \"{wrong}\"\n"),
    );
    let c = tandem_tests::ImapClient::connect(mismatched.addr).unwrap();
    assert!(
        c.greeting.starts_with("* BYE [UNAVAILABLE]"),
        "{}",
        c.greeting
    );

    // A CA that did not sign the backend's certificate is refused too.
    let other = tempfile::tempdir().unwrap();
    test_ca(other.path());
    let untrusted = start_proxy(
        backend,
        &format!(
            "tls = \"implicit\"\ntls_ca = \"{}\"\n",
            other.path().join("ca.pem").display()
        ),
    );
    let c = tandem_tests::ImapClient::connect(untrusted.addr).unwrap();
    assert!(
        c.greeting.starts_with("* BYE [UNAVAILABLE]"),
        "{}",
        c.greeting
    );
}
