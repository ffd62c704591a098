//! `tandem check` as an operator runs it: the real binary against real
//! Dovecot instances, asserting the exit code and the report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tandem_tests::{ports, Cyrus, Dovecot, ImapClient};

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

fn write_config(backend: &str, method: &str, password: &str) -> Setup {
    write_config_for("dovecot", backend, method, password)
}

fn write_config_for(kind: &str, backend: &str, method: &str, password: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tandem.toml");
    let text = format!(
        r#"
[node]
id = 1
data_dir = "{data}"

[listen]
imap = "127.0.0.1:{imap}"
peer = "127.0.0.1:{peer}"

# `tandem check` does not start the log, so these files are never read.
[cluster]
ca = "/nonexistent/ca.pem"
cert = "/nonexistent/node-1.pem"
key = "/nonexistent/node-1.key"

[backend]
kind = "{kind}"
address = "{backend}"
admin_user = "admin"
admin_password = "{password}"
admin_method = "{method}"
connect_timeout_secs = 2
command_timeout_secs = 10

[[peer]]
id = 2
address = "127.0.0.1:{peer2}"
"#,
        data = dir.path().join("data").display(),
        imap = ports::free_tcp_port(),
        peer = ports::free_udp_port(),
        peer2 = ports::free_udp_port(),
    );
    std::fs::write(&config, text).unwrap();
    Setup { _dir: dir, config }
}

fn tandem_check(config: &Path) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["check", "--config"])
        .arg(config)
        .args(["--user", "alice"])
        .output()
        .expect("run tandem");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn check_passes_against_real_dovecot_with_authzid() {
    let dovecot = Dovecot::start();
    let setup = write_config(&dovecot.imap_addr().to_string(), "authzid", "admin-secret");
    let (out, text) = tandem_check(&setup.config);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("has IMAP4REV1, UIDPLUS, LITERAL+, MOVE"),
        "{text}"
    );
    assert!(text.contains("acts as user \"alice\""), "{text}");
    assert!(
        text.contains("personal prefix \"\", separator \".\""),
        "{text}"
    );
    assert!(text.contains("ok    storage"), "{text}");
    assert!(text.contains("check passed"), "{text}");
    assert!(
        !text.contains("admin-secret"),
        "the password leaked: {text}"
    );
}

/// A config in front of `cyrus`, the admin acting through authzid.
fn cyrus_config(cyrus: &Cyrus) -> Setup {
    write_config_for(
        "cyrus",
        &cyrus.imap_addr().to_string(),
        "authzid",
        "admin-secret",
    )
}

/// The storage probe's scratch mailbox is gone, whatever the check said.
fn assert_no_scratch_mailbox(cyrus: &Cyrus) {
    let mut c = ImapClient::login(cyrus.imap_addr(), "alice", "demo");
    let list = c
        .command("LIST \"\" \"*\"")
        .unwrap()
        .ok()
        .lines()
        .join("\n");
    assert!(!list.contains("tandem-check"), "{list}");
}

#[test]
fn check_passes_against_real_cyrus_and_leaves_no_scratch_mailbox() {
    let cyrus = Cyrus::start();
    let setup = cyrus_config(&cyrus);
    let (out, text) = tandem_check(&setup.config);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("connect      cyrus"), "{text}");
    assert!(text.contains("ok    storage"), "{text}");
    assert_no_scratch_mailbox(&cyrus);
}

/// Cyrus's default `munge8bit: yes` turns 8-bit header bytes into `X`: its
/// copy of a message would differ from the other nodes'.
#[test]
fn check_fails_on_a_cyrus_that_rewrites_8bit_headers() {
    let cyrus = Cyrus::builder().extra_config("munge8bit: yes").start();
    let setup = cyrus_config(&cyrus);
    let (out, text) = tandem_check(&setup.config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  storage"), "{text}");
    assert!(text.contains("munge8bit: no"), "{text}");
    assert_no_scratch_mailbox(&cyrus);
}

#[test]
fn check_passes_against_real_dovecot_with_master_login() {
    let dovecot = Dovecot::start();
    let setup = write_config(
        &dovecot.imap_addr().to_string(),
        "master-login",
        "admin-secret",
    );
    let (out, text) = tandem_check(&setup.config);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("master-user LOGIN"), "{text}");
}

#[test]
fn check_fails_clearly_on_a_wrong_port() {
    let port = ports::free_tcp_port(); // nothing listens there
    let setup = write_config(&format!("127.0.0.1:{port}"), "authzid", "admin-secret");
    let (out, text) = tandem_check(&setup.config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  connect"), "{text}");
    assert!(
        text.contains(&format!("cannot connect to backend 127.0.0.1:{port}")),
        "{text}"
    );
    assert!(text.contains("check FAILED"), "{text}");
}

#[test]
fn check_fails_clearly_on_a_wrong_admin_password() {
    let dovecot = Dovecot::start();
    for method in ["authzid", "master-login"] {
        let setup = write_config(&dovecot.imap_addr().to_string(), method, "not-the-password");
        let (out, text) = tandem_check(&setup.config);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("FAIL  admin"), "{text}");
        assert!(text.contains("cannot act as user \"alice\""), "{text}");
        assert!(text.contains("AUTHENTICATIONFAILED"), "{text}");
        assert!(
            !text.contains("not-the-password"),
            "the password leaked: {text}"
        );
    }
}

#[test]
fn check_fails_clearly_without_uidplus() {
    let dovecot = Dovecot::builder()
        .imap_capability("IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE MOVE")
        .start();
    let setup = write_config(&dovecot.imap_addr().to_string(), "authzid", "admin-secret");
    let (out, text) = tandem_check(&setup.config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  capability"), "{text}");
    assert!(text.contains("lacks UIDPLUS"), "{text}");
}

#[test]
fn check_fails_clearly_on_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        r#"
[node]
id = 0
data_dir = "/tmp/x"
[listen]
imap = "127.0.0.1:1"
peer = "127.0.0.1:2"
[backend]
kind = "dovecot"
address = "localhost"
admin_user = "admin"
admin_password = "pw"
[limits]
idle_timeout_secs = 10
"#,
    )
    .unwrap();
    let (out, text) = tandem_check(&config);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("node.id must be a positive integer"),
        "{text}"
    );
    assert!(text.contains("backend.address"), "{text}");
    assert!(text.contains("RFC 9051"), "{text}");

    std::fs::write(&config, "[node]\nid = \"one\"\n").unwrap();
    let (out, text) = tandem_check(&config);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("is not valid"), "{text}");

    let (out, text) = tandem_check(&dir.path().join("missing.toml"));
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("cannot read config file"), "{text}");
}

#[test]
fn certs_creates_a_ca_and_node_certificates_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let run = |nodes: &str| {
        Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["certs", "--dir"])
            .arg(dir.path())
            .args(["--nodes", nodes])
            .output()
            .unwrap()
    };
    let out = run("1,2,3");
    assert!(out.status.success(), "{out:?}");
    for f in ["ca.pem", "ca.key", "node-1.pem", "node-2.key", "node-3.pem"] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let out = run("4");
    assert!(out.status.success(), "a node added later: {out:?}");
    let out = run("2");
    assert_eq!(out.status.code(), Some(1), "overwrite refused: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
}

#[test]
fn check_passes_against_a_tls_backend_and_fails_on_a_wrong_pin() {
    let certs = tempfile::tempdir().unwrap();
    tandem_proxy::demo::write_demo_tls(certs.path()).unwrap();
    let dovecot = Dovecot::builder()
        .tls(
            &certs.path().join("server.pem"),
            &certs.path().join("server.key"),
        )
        .start();
    let backend = dovecot.imaps_addr().unwrap().to_string();
    let setup = write_config(&backend, "authzid", "admin-secret");
    let base = std::fs::read_to_string(&setup.config).unwrap();
    let with_tls = |extra: &str| {
        let text = base.replace(
            "connect_timeout_secs = 2\n",
            &format!("connect_timeout_secs = 2\n{extra}"),
        );
        std::fs::write(&setup.config, text).unwrap();
    };
    with_tls(&format!(
        "tls = \"implicit\"\ntls_ca = \"{}\"\n",
        certs.path().join("ca.pem").display()
    ));
    let (out, text) = tandem_check(&setup.config);
    assert!(out.status.success(), "{text}");
    with_tls(&format!(
        "tls = \"implicit\"\ntls_pin_sha256 = \"{}\"\n",
        "ab".repeat(32)
    ));
    let (out, text) = tandem_check(&setup.config);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("tls_pin_sha256"), "{text}");
}
