//! Dovecot's own IMAP proxy in front of a test backend: what tandem is
//! compared with when it only passes traffic through.
//!
//! The proxy is a second [`Dovecot`] with the harness's usual config whose
//! regular users' passdb adds `proxy=y host=127.0.0.1 port=<backend IMAP>`
//! (Dovecot's `override_fields`). The proxy checks the password itself
//! against its own copy of the users (the same users and password as every
//! test backend), then logs in to the backend with the client's name and
//! password, and from then on relays bytes: the client sees the backend's
//! mailboxes. Nothing is needed on the backend beyond the harness's config;
//! its `login_trusted_networks = 127.0.0.0/8` makes it log the client's
//! address that the proxy forwards (`ID x-originating-ip`) rather than the
//! proxy's.
//!
//! Ordering invariants:
//! - `start` returns only after the proxy's listeners have greeted; the
//!   backend must already run (it is not contacted before a login).
//! - Dropping the proxy stops its master (SIGTERM, then SIGKILL), also
//!   during a panic; the backend is left alone.
//!
//! Master-user logins (`alice*admin`) are not proxied usefully: the proxy
//! would forward the master's password under the user's name.

use std::net::SocketAddr;

use crate::dovecot::{Dovecot, DovecotBuilder};

/// A running Dovecot proxy forwarding every regular login to one backend.
#[derive(Debug)]
pub struct DovecotProxy {
    backend: SocketAddr,
    dovecot: Dovecot,
}

impl DovecotProxy {
    /// Starts a proxy in front of `backend` (its plain IMAP listener) with
    /// the default settings; waits for the proxy's greetings.
    pub fn start(backend: &Dovecot) -> DovecotProxy {
        DovecotProxy::start_with(backend, Dovecot::builder())
    }

    /// Starts a proxy in front of `backend` from `builder`, e.g. with
    /// `extra_config("service imap-login {\n service_count = 0\n}")` for
    /// Dovecot's high-performance login mode (the default is one login
    /// process per connection, which lives as long as the proxied session).
    pub fn start_with(backend: &Dovecot, builder: DovecotBuilder) -> DovecotProxy {
        let addr = backend.imap_addr();
        let dovecot = builder
            .user_passdb_fields(&format!("proxy=y host={} port={}", addr.ip(), addr.port()))
            .start();
        DovecotProxy {
            backend: addr,
            dovecot,
        }
    }

    /// Where clients connect (plain IMAP).
    pub fn imap_addr(&self) -> SocketAddr {
        self.dovecot.imap_addr()
    }

    /// The backend it forwards to.
    pub fn backend_addr(&self) -> SocketAddr {
        self.backend
    }

    /// The PID of the proxy's Dovecot master, while it runs: its process
    /// tree (login, auth, config, log processes) is the proxy's cost.
    pub fn pid(&self) -> Option<u32> {
        self.dovecot.pid()
    }

    /// The proxy's own instance (directory, log, config).
    pub fn dovecot(&self) -> &Dovecot {
        &self.dovecot
    }

    /// Stops the proxy's master and waits until it has exited; the
    /// backend keeps running.
    pub fn stop(&mut self) {
        self.dovecot.stop();
    }
}
