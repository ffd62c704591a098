//! A mail backend of either kind (Dovecot or Cyrus), for the harnesses that
//! run both: the same calls start, address, stop and restart either.

use std::net::SocketAddr;

use crate::{Cyrus, Dovecot};

/// Which server a node runs behind tandem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// Dovecot 2.3 (`dovecot-imapd`).
    #[default]
    Dovecot,
    /// Cyrus IMAP 3.6 (unpacked by `make deps`).
    Cyrus,
}

impl BackendKind {
    /// The `[backend] kind` of tandem's config.
    pub fn config_name(self) -> &'static str {
        match self {
            BackendKind::Dovecot => "dovecot",
            BackendKind::Cyrus => "cyrus",
        }
    }

    /// Parses `dovecot` or `cyrus`.
    pub fn parse(name: &str) -> Option<BackendKind> {
        match name {
            "dovecot" => Some(BackendKind::Dovecot),
            "cyrus" => Some(BackendKind::Cyrus),
            _ => None,
        }
    }
}

/// A running backend; stops when dropped.
#[derive(Debug)]
pub enum Backend {
    /// A Dovecot.
    Dovecot(Dovecot),
    /// A Cyrus.
    Cyrus(Cyrus),
}

impl Backend {
    /// Starts one of `kind`, with users alice and bob and the admin.
    pub fn start(kind: BackendKind) -> Backend {
        match kind {
            BackendKind::Dovecot => Backend::Dovecot(Dovecot::start()),
            BackendKind::Cyrus => Backend::Cyrus(Cyrus::start()),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> BackendKind {
        match self {
            Backend::Dovecot(_) => BackendKind::Dovecot,
            Backend::Cyrus(_) => BackendKind::Cyrus,
        }
    }

    /// Where IMAP clients (and tandem) connect.
    pub fn imap_addr(&self) -> SocketAddr {
        match self {
            Backend::Dovecot(d) => d.imap_addr(),
            Backend::Cyrus(c) => c.imap_addr(),
        }
    }

    /// The master process's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Backend::Dovecot(d) => d.pid(),
            Backend::Cyrus(c) => c.pid(),
        }
    }

    /// Stops it (graceful, then by force); returns once it is gone.
    pub fn stop(&mut self) {
        match self {
            Backend::Dovecot(d) => d.stop(),
            Backend::Cyrus(c) => c.stop(),
        }
    }

    /// Starts it again on its ports and mail.
    pub fn restart(&mut self) {
        match self {
            Backend::Dovecot(d) => d.restart(),
            Backend::Cyrus(c) => c.restart(),
        }
    }
}
