//! A mail backend of either kind (Dovecot or Cyrus), for the harnesses that
//! run both: the same calls start, address, stop and restart either.

use std::net::SocketAddr;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::imap::{ImapClient, Reply};
use crate::{Credentials, Cyrus, Dovecot};

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

    /// Starts one of `kind` with an IMAPS listener (implicit TLS) using
    /// this certificate and key (PEM); [`Backend::imaps_addr`] says where.
    pub fn start_tls(kind: BackendKind, cert: &std::path::Path, key: &std::path::Path) -> Backend {
        match kind {
            BackendKind::Dovecot => Backend::Dovecot(Dovecot::builder().tls(cert, key).start()),
            BackendKind::Cyrus => Backend::Cyrus(Cyrus::builder().tls(cert, key).start()),
        }
    }

    /// Where IMAPS (implicit TLS) listens, when started with TLS.
    pub fn imaps_addr(&self) -> Option<SocketAddr> {
        match self {
            Backend::Dovecot(d) => d.imaps_addr(),
            Backend::Cyrus(c) => c.imaps_addr(),
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

    /// The credentials of a regular user (`alice` or `bob`).
    pub fn user(&self, name: &str) -> Credentials {
        match self {
            Backend::Dovecot(d) => d.user(name),
            Backend::Cyrus(c) => c.user(name),
        }
    }

    /// The admin's credentials (Dovecot's master user; Cyrus's admin, which
    /// acts as a user with AUTHENTICATE PLAIN and an authzid).
    pub fn admin(&self) -> Credentials {
        match self {
            Backend::Dovecot(d) => d.admin(),
            Backend::Cyrus(c) => c.admin(),
        }
    }

    /// The hierarchy separator users see (`.` for both in the harness).
    pub fn separator(&self) -> char {
        match self {
            Backend::Dovecot(_) => '.',
            Backend::Cyrus(c) => c.separator(),
        }
    }

    /// The instance's log so far.
    pub fn log(&self) -> String {
        match self {
            Backend::Dovecot(d) => d.log(),
            Backend::Cyrus(c) => c.log(),
        }
    }

    /// A session of `user`'s straight to the backend (LOGIN), behind
    /// tandem's back; panics unless the login works.
    #[track_caller]
    pub fn login(&self, user: &str) -> ImapClient {
        let who = self.user(user);
        ImapClient::login(self.imap_addr(), &who.user, &who.password)
    }

    /// Puts `message` into `user`'s `mailbox` straight in the backend,
    /// behind tandem's back (as a local delivery would): an IMAP APPEND as
    /// the user; panics unless the backend says OK. The message must be
    /// one Cyrus takes too (CRLF line ends, a header block, no NUL).
    #[track_caller]
    pub fn deliver(&self, user: &str, mailbox: &str, message: &[u8]) -> Reply {
        self.login(user)
            .append(mailbox, message)
            .expect("APPEND straight to the backend")
            .ok()
    }

    /// What the backend itself holds in `user`'s `mailbox`: the `Subject:`
    /// of each message in the backend's UID order (so sequence numbers can
    /// be compared across nodes). Panics if the mailbox cannot be examined.
    #[track_caller]
    pub fn subjects(&self, user: &str, mailbox: &str) -> Vec<String> {
        let mut c = self.login(user);
        c.command(&format!("EXAMINE {}", crate::imap::quote(mailbox)))
            .expect("EXAMINE")
            .ok();
        let r = c
            .command("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            .expect("UID FETCH")
            .ok();
        r.lines()
            .iter()
            .filter_map(|l| {
                let s = l.split("Subject: ").nth(1)?;
                s.split(['\r', '\n']).next().map(str::to_string)
            })
            .collect()
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) every process of the backend: a
    /// server that hangs without closing its connections.
    pub fn freeze(&self, frozen: bool) {
        match self {
            Backend::Dovecot(d) => d.freeze(frozen),
            Backend::Cyrus(c) => c.freeze(frozen),
        }
    }

    /// Kills every process of the backend with SIGKILL, as when the
    /// machine dies: open sessions end at once. [`Backend::restart`] starts
    /// it again.
    pub fn kill_all(&mut self) {
        match self {
            Backend::Dovecot(d) => d.kill_all(),
            Backend::Cyrus(c) => c.kill_all(),
        }
    }
}

/// What the tests need of a Cyrus beyond `tests/src/cyrus.rs`, from its
/// public API only.
impl Cyrus {
    /// Freezes (SIGSTOP) or thaws (SIGCONT) the master and every process of
    /// its group (the master runs in a process group of its own whose id is
    /// its PID): a backend that hangs without closing its connections.
    pub fn freeze(&self, frozen: bool) {
        let Some(pid) = self.pid() else {
            return;
        };
        let signal = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        let _ = killpg(Pid::from_raw(pid as i32), signal);
    }
}
