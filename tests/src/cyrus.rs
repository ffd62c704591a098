//! Real Cyrus IMAP 3.6 instances for tests.
//!
//! Each instance lives in its own temporary directory with its own
//! `imapd.conf`, `cyrus.conf`, sasldb, databases, spool and sockets, listens
//! for IMAP on a free 127.0.0.1 port, and knows the users alice and bob and
//! an admin (`admin`, in Cyrus's `admins`) that can act as any of them with
//! SASL PLAIN and an authorization id (`AUTHENTICATE PLAIN` with authzid
//! `alice`); Cyrus has no `alice*admin` LOGIN form. The users' INBOXes
//! exist after [`Cyrus::start`], and the admin has every right on them
//! (`SETACL user.alice admin lrswipkxtecdan`), which mailboxes the users
//! create below inherit: without an explicit ACL a Cyrus admin may only
//! list and administer (`la`), and STATUS, SELECT or DELETE of a user's
//! mailbox are refused.
//!
//! The files, the master's command line (in a private mount namespace that
//! captures Cyrus's syslog when the test process may make one), the
//! provisioning and the process-group handling are
//! `tandem_backends::cyrus`'s, shared with `tandem demo --backend
//! cyrus`; see `deploy/CYRUS.md` for what was measured.
//!
//! Ordering invariants:
//! - `start` returns only after the IMAP listener has greeted and the users'
//!   INBOXes exist with the admin's ACL.
//! - `stop` returns only after the master has exited and every process of
//!   its group is gone, so a restart never races the old master for its
//!   port, databases or sockets.
//! - Dropping an instance stops it (SIGTERM, then SIGKILL of the whole
//!   process group) even during a panic, and prints its log's tail when the
//!   test is failing; the log capture stops only after the master.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use tandem_backends::cyrus::{self as shared, CyrusSetup, SyslogSink};

use crate::imap::ImapClient;
use crate::{Credentials, ADMIN_PASSWORD, ADMIN_USER, USERS, USER_PASSWORD};

pub use tandem_backends::cyrus::{
    ADMIN_RIGHTS, CTL_CYRUSDB_BIN, CYRUS_ROOT, IDLED_BIN, IMAPD_BIN, MASTER_BIN, SASLPASSWD_BIN,
    SERVERNAME,
};

/// How long an instance may take to greet after start (a master runs
/// database recovery first; generous for a busy two-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Options for a new instance.
#[derive(Debug, Default, Clone)]
pub struct CyrusBuilder {
    extra_config: String,
    tls: Option<(PathBuf, PathBuf)>,
}

impl CyrusBuilder {
    /// Adds raw `imapd.conf` settings (`key: value` lines), replacing the
    /// harness's own of the same key (Cyrus refuses a key given twice),
    /// e.g. `unixhierarchysep: yes` for `/` as the hierarchy separator.
    pub fn extra_config(mut self, text: &str) -> Self {
        self.extra_config.push_str(text);
        self.extra_config.push('\n');
        self
    }

    /// Adds an IMAPS listener (implicit TLS, `imapd -s`) with this
    /// certificate and key (PEM); [`Cyrus::imaps_addr`] says where.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Starts the instance, waits for its greeting and creates the users'
    /// INBOXes. Retries with a new port if the port was taken in the
    /// meantime.
    pub fn start(self) -> Cyrus {
        self.try_start()
            .unwrap_or_else(|e| panic!("Cyrus did not start:\n{e}"))
    }

    /// Like [`CyrusBuilder::start`], but says why the instance did not start
    /// (after three tries with new ports) instead of panicking.
    pub fn try_start(self) -> Result<Cyrus, String> {
        shared::check_installed().map_err(|e| e.to_string())?;
        let mut last_error = String::new();
        for _ in 0..3 {
            // Short: Unix socket paths (idle, notify, lmtp) must fit 108 bytes.
            let tmp = tempfile::Builder::new()
                .prefix("tcy")
                .tempdir_in("/tmp")
                .map_err(|e| format!("create temp dir for Cyrus: {e}"))?;
            let mut instance = Cyrus {
                imap_port: crate::ports::free_tcp_port(),
                imaps_port: self.tls.as_ref().map(|_| crate::ports::free_tcp_port()),
                dir: tmp.path().to_path_buf(),
                child: None,
                options: self.clone(),
                separator: '.',
                syslog: None,
                private_dev: false,
                _tmp: None,
            };
            instance
                .setup()
                .write()
                .map_err(|e| format!("write the instance's files: {e}"))?;
            instance.syslog = Some(
                SyslogSink::start(&instance.dir)
                    .map_err(|e| format!("start the syslog sink: {e}"))?,
            );
            match instance.spawn().and_then(|()| instance.provision()) {
                Ok(()) => {
                    instance._tmp = Some(tmp);
                    return Ok(instance);
                }
                Err(e) => {
                    instance.stop();
                    last_error = format!("{e}\n{}", instance.log());
                }
            }
        }
        Err(last_error)
    }
}

/// A running Cyrus IMAP server.
#[derive(Debug)]
pub struct Cyrus {
    imap_port: u16,
    imaps_port: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
    options: CyrusBuilder,
    separator: char,
    syslog: Option<SyslogSink>,
    private_dev: bool,
    _tmp: Option<tempfile::TempDir>,
}

impl Cyrus {
    /// A builder for an instance with non-default settings.
    pub fn builder() -> CyrusBuilder {
        CyrusBuilder::default()
    }

    /// Starts an instance with the default settings.
    pub fn start() -> Cyrus {
        CyrusBuilder::default().start()
    }

    /// Where clients connect for IMAP.
    pub fn imap_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.imap_port))
    }

    /// Where clients connect for IMAPS (implicit TLS), when the builder
    /// asked for TLS.
    pub fn imaps_addr(&self) -> Option<SocketAddr> {
        self.imaps_port
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
    }

    /// The instance's directory (configs, sasldb, databases, spool, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The instance's `imapd.conf` (Cyrus's tools take it with `-C`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("imapd.conf")
    }

    /// The PID of the master process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The hierarchy separator (`.` by default; `/` with
    /// `unixhierarchysep: yes`), as the server's `LIST "" ""` says.
    pub fn separator(&self) -> char {
        self.separator
    }

    /// The name of `user`'s INBOX as the admin sees it (`user.alice`); the
    /// user's mailbox `Foo` is `user.alice.Foo` for the admin (altnamespace).
    pub fn user_mailbox(&self, user: &str) -> String {
        format!("user{}{user}", self.separator)
    }

    /// The credentials of a regular user (`alice` or `bob`).
    pub fn user(&self, name: &str) -> Credentials {
        assert!(USERS.contains(&name), "no test user {name:?}");
        Credentials {
            user: name.to_string(),
            password: USER_PASSWORD.to_string(),
        }
    }

    /// The admin's credentials (in Cyrus's `admins`; acts as a user with
    /// SASL PLAIN and that user as authorization id).
    pub fn admin(&self) -> Credentials {
        Credentials {
            user: ADMIN_USER.to_string(),
            password: ADMIN_PASSWORD.to_string(),
        }
    }

    /// True when the master runs with a private `/dev/log` whose messages
    /// [`Cyrus::log`] holds (see the module's documentation).
    pub fn captures_syslog(&self) -> bool {
        self.private_dev
    }

    /// The instance's log so far: what Cyrus sent to syslog (when it could
    /// be captured), then what the master wrote to stderr.
    pub fn log(&self) -> String {
        let syslog = fs::read_to_string(self.dir.join("cyrus.log")).unwrap_or_default();
        let stderr = fs::read_to_string(self.dir.join("master.log")).unwrap_or_default();
        if stderr.is_empty() {
            syslog
        } else {
            format!("{syslog}---- master stderr ----\n{stderr}")
        }
    }

    /// Stops the master (SIGTERM; it passes the signal on to its process
    /// group, which is the instance's alone), SIGKILLs the whole group if
    /// the master has not exited after 10 s or something outlives it, and
    /// returns once every process of the instance is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            shared::stop_group(&mut child, STOP_GRACE);
        }
    }

    /// Kills the master and every process of the instance with SIGKILL, as
    /// when the machine dies: open IMAP sessions end at once, and the next
    /// start runs Cyrus's database recovery.
    pub fn kill_all(&mut self) {
        if let Some(mut child) = self.child.take() {
            shared::kill_group(&mut child);
        }
    }

    /// Starts the instance again on the same port and directory (mail,
    /// users and ACLs kept), after a `stop` or `kill_all`, or stops it
    /// first; waits for the greeting.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn()
            .unwrap_or_else(|e| panic!("Cyrus did not restart:\n{e}\n{}", self.log()));
    }

    /// The instance's files, as the demo writes them.
    fn setup(&self) -> CyrusSetup {
        CyrusSetup {
            dir: self.dir.clone(),
            imap_port: self.imap_port,
            lmtp_port: 0,
            tls: match (&self.options.tls, self.imaps_port) {
                (Some((cert, key)), Some(port)) => Some((cert.clone(), key.clone(), port)),
                _ => None,
            },
            extra_config: self.options.extra_config.clone(),
        }
    }

    /// Starts the master in the foreground (its PID is the child's: `sh`
    /// and `unshare` exec into it) and waits for the greeting.
    fn spawn(&mut self) -> Result<(), String> {
        let dir = self.dir.clone();
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("master.log"))
            .map_err(|e| format!("open master.log: {e}"))?;
        self.private_dev = shared::private_dev_possible();
        let child = self
            .setup()
            .master_command(self.private_dev)
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                format!("cannot run {MASTER_BIN} (is cyrus-common installed? run `make deps`): {e}")
            })?;
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        let log_before = self.syslog_len();
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!("the Cyrus master exited with {status}"));
            }
            if let Ok(mut c) = ImapClient::connect(self.imap_addr()) {
                let greeted = c.greeting.starts_with("* OK");
                let _ = c.command("LOGOUT");
                if greeted {
                    return Ok(());
                }
                let greeting = c.greeting.clone();
                self.stop();
                return Err(format!("unexpected greeting {greeting:?}"));
            }
            // The master logs a port it cannot bind and goes on without it.
            let log = fs::read(self.dir.join("cyrus.log")).unwrap_or_default();
            if String::from_utf8_lossy(log.get(log_before..).unwrap_or_default())
                .contains("unable to bind")
            {
                self.stop();
                return Err(format!("port {} was taken", self.imap_port));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        self.stop();
        Err(format!("no greeting within {START_TIMEOUT:?}"))
    }

    fn syslog_len(&self) -> usize {
        fs::metadata(self.dir.join("cyrus.log")).map_or(0, |m| m.len() as usize)
    }

    /// As the admin: learns the separator, creates the users' INBOXes and
    /// gives the admin every right on them.
    fn provision(&mut self) -> Result<(), String> {
        self.separator =
            shared::provision(self.imap_addr()).map_err(|e| format!("provisioning Cyrus: {e}"))?;
        Ok(())
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        self.stop();
        // Only now: the services may log until the master has stopped them.
        self.syslog.take();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!(
                "---- cyrus log ({}), last {} lines ----",
                self.dir.display(),
                tail.len()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            eprintln!("---- end of cyrus log ----");
        }
    }
}
