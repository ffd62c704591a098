//! # tandem-tests
//!
//! The harness for tandem's integration and fault-injection suites, and the
//! suites themselves (under `tests/`). It starts real IMAP servers (Debian's
//! Dovecot) in temporary directories on free 127.0.0.1 ports, hands out
//! their addresses and credentials, and stops them by PID when dropped, also
//! when a test panics, printing the server's log so a failure can be read.
//!
//! The side-by-side benchmark (`make bench`) is a crate of its own,
//! `tandem-bench` (`bench/`), that starts its servers with this harness.
//!
//! What this crate never does: it never mocks a server, never binds a fixed
//! port (the demo's ports, n143, n144, n993, n024, n090, n700, are left
//! alone), and never sends traffic beyond 127.0.0.0/8.
//!
//! # Layout
//! - [`backend`]: a Dovecot or a Cyrus behind the same calls.
//! - [`chaos`]: the chaos campaign (workload, faults, checker).
//! - [`cluster`]: a tandem cluster as processes (`tandem run` in front of
//!   real Dovecots): kill, restart, stop a backend.
//! - [`conformance`]: the differential conformance suite: scripted sessions
//!   run straight against a backend and through tandem, answers compared.
//! - [`cutter`]: a TCP relay that loses one command's answer on purpose.
//! - [`cyrus`]: start, stop and restart real Cyrus IMAP 3.6 instances.
//! - [`dovecot`]: start, stop and restart real Dovecot instances.
//! - [`dovecot_proxy`]: Dovecot's own IMAP proxy in front of a test
//!   backend, for comparing with tandem.
//! - [`dsync`]: two Dovecots replicating each other with Dovecot's own
//!   replicator (dsync), for comparing with tandem.
//! - [`imap`]: a small blocking IMAP client for asserting what a server says.
//! - [`inproc`]: a tandem cluster inside the test process, for tests
//!   and benchmarks without SIGKILL.
//! - [`lognode`]: replicator nodes as separate processes (the `lognode`
//!   binary), for SIGKILL tests.
//! - [`ports`]: free-port picking that avoids the demo's fixed ports.
//! - [`stress`]: the randomized stress with a client-side model: random
//!   commands from many sessions, every response checked against what its
//!   session was told.
#![forbid(unsafe_code)]

pub mod backend;
pub mod chaos;
pub mod cluster;
pub mod conformance;
pub mod cutter;
pub mod cyrus;
pub mod dovecot;
pub mod dovecot_proxy;
pub mod dsync;
pub mod imap;
pub mod inproc;
pub mod lognode;
pub mod ports;
pub mod stress;

pub use backend::{Backend, BackendKind};
pub use cluster::{TandemCluster, TandemClusterBuilder};
pub use cyrus::{Cyrus, CyrusBuilder};
pub use dovecot::{Dovecot, DovecotBuilder};
pub use dovecot_proxy::DovecotProxy;
pub use dsync::DsyncPair;
pub use imap::{ImapClient, Reply, Status};

/// A user's name and password as the test servers know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Login name.
    pub user: String,
    /// Password (test-only; never a real secret).
    pub password: String,
}

/// The regular users every test server has, their password, and the admin
/// (Dovecot master user) that can act as any of them: the demo's.
pub use tandem_backends::{ADMIN_PASSWORD, ADMIN_USER, USERS, USER_PASSWORD};

/// Runs the tests of one test binary that start clusters one at a time:
/// several three-node clusters with their Dovecots on a two-core machine
/// starve the Raft heartbeats and cause elections. Hold the guard for the
/// test's length.
pub fn one_cluster_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs mbsync (isync) as alice against `server`, syncing the mailboxes
/// matching `patterns` into the Maildir `dir/mail` with its state kept
/// there; panics unless it succeeds. Returns the Maildir root and what
/// mbsync printed.
pub fn mbsync(
    server: std::net::SocketAddr,
    dir: &std::path::Path,
    patterns: &str,
) -> (std::path::PathBuf, String) {
    let mail = dir.join("mail");
    std::fs::create_dir_all(&mail).expect("mail dir");
    let config = dir.join("mbsyncrc");
    std::fs::write(
        &config,
        format!(
            "IMAPAccount t\nHost {}\nPort {}\nUser alice\nPass {USER_PASSWORD}\nSSLType None\nAuthMechs LOGIN\n\n\
             IMAPStore remote\nAccount t\n\n\
             MaildirStore local\nPath {m}/\nInbox {m}/INBOX\nSubFolders Verbatim\n\n\
             Channel c\nFar :remote:\nNear :local:\nPatterns {patterns}\nCreate Near\nSyncState *\n",
            server.ip(),
            server.port(),
            m = mail.display()
        ),
    )
    .expect("mbsyncrc");
    let out = std::process::Command::new("mbsync")
        .arg("-c")
        .arg(&config)
        .arg("-a")
        .output()
        .expect("run mbsync (isync installed? make deps)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mbsync failed: {text}");
    (mail, text)
}
