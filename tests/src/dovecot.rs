//! Real Dovecot instances for tests.
//!
//! Each instance lives in its own temporary directory with its own config,
//! base_dir, log and mail, listens for IMAP and LMTP on free 127.0.0.1 ports,
//! knows the users alice and bob and a master user `admin` that can act as
//! any of them (`alice*admin` LOGIN, or SASL PLAIN with authzid `alice`).
//!
//! Ordering invariants:
//! - `start` returns only after the IMAP and LMTP listeners have greeted.
//! - `stop` returns only after the master process has exited, so a restart
//!   never races the old master for its ports or base_dir.
//! - Dropping an instance stops it (SIGTERM, then SIGKILL) even during a
//!   panic, and prints its log when the test is failing.
//!
//! The configuration is `tandem_backends::dovecot::DovecotSetup`'s, the same the
//! demo runs. Measured pitfalls of Dovecot 2.3.19 on Debian 12 it handles:
//! mail processes may not run as uid 0 (mail runs as `mail`, with
//! `first_valid_uid = 8`); a 0700 directory breaks the login and auth
//! processes (the directory is made 0755); Unix socket paths must stay short
//! (base_dir is a short path under /tmp).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{Credentials, ADMIN_PASSWORD, ADMIN_USER, USERS, USER_PASSWORD};

pub use tandem_backends::DOVECOT_BIN;

/// Dovecot's admin tool, installed by Debian's `dovecot-core`.
pub const DOVEADM_BIN: &str = "/usr/bin/doveadm";

/// How long an instance may take to greet after start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Options for a new instance.
#[derive(Debug, Default, Clone)]
pub struct DovecotBuilder {
    extra_config: String,
    user_passdb_fields: String,
    imap_capability: Option<String>,
    tls: Option<(PathBuf, PathBuf)>,
}

impl DovecotBuilder {
    /// Appends raw Dovecot settings to the generated config.
    pub fn extra_config(mut self, text: &str) -> Self {
        self.extra_config.push_str(text);
        self.extra_config.push('\n');
        self
    }

    /// Adds fields to every successful passdb lookup of a regular user
    /// (Dovecot's `override_fields`), e.g. `proxy=y host=127.0.0.1
    /// port=143` to make the instance a proxy (see
    /// [`crate::dovecot_proxy`]). Master-user logins do not get them.
    pub fn user_passdb_fields(mut self, fields: &str) -> Self {
        if !self.user_passdb_fields.is_empty() {
            self.user_passdb_fields.push(' ');
        }
        self.user_passdb_fields.push_str(fields);
        self
    }

    /// Overrides the post-login CAPABILITY (Dovecot's `imap_capability`),
    /// e.g. to start a backend without UIDPLUS.
    pub fn imap_capability(mut self, caps: &str) -> Self {
        self.imap_capability = Some(caps.to_string());
        self
    }

    /// Serves IMAPS too, with this PEM certificate and key.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Starts the instance and waits for its greetings. Retries with new
    /// ports if a port was taken in the meantime.
    pub fn start(self) -> Dovecot {
        self.try_start()
            .unwrap_or_else(|e| panic!("Dovecot did not start:\n{e}"))
    }

    /// Like [`DovecotBuilder::start`], but says why the instance did not
    /// start (after five tries with new ports) instead of panicking: for
    /// callers whose `extra_config` holds ports of their own, which they
    /// pick again before another try.
    pub fn try_start(self) -> Result<Dovecot, String> {
        let dir = tempfile::Builder::new()
            .prefix("tdv")
            .tempdir_in("/tmp")
            .expect("create temp dir for Dovecot");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod Dovecot dir");
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut instance = Dovecot {
                imap_port: crate::ports::free_tcp_port(),
                lmtp_port: crate::ports::free_tcp_port(),
                imaps_port: if self.tls.is_some() {
                    crate::ports::free_tcp_port()
                } else {
                    0
                },
                dir: Some(dir_path(&dir)),
                child: None,
                options: self.clone(),
                _tmp: None,
            };
            instance.write_files();
            match instance.spawn() {
                Ok(()) => {
                    instance._tmp = Some(dir);
                    return Ok(instance);
                }
                Err(e) => {
                    last_error = e;
                    instance.dir = None; // keep the tempdir for the next try
                    let _ = fs::remove_file(dir.path().join("dovecot.log"));
                }
            }
        }
        Err(last_error)
    }
}

fn dir_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

/// A running Dovecot.
#[derive(Debug)]
pub struct Dovecot {
    imap_port: u16,
    lmtp_port: u16,
    imaps_port: u16,
    dir: Option<PathBuf>,
    child: Option<Child>,
    options: DovecotBuilder,
    _tmp: Option<tempfile::TempDir>,
}

impl Dovecot {
    /// A builder for an instance with non-default settings.
    pub fn builder() -> DovecotBuilder {
        DovecotBuilder::default()
    }

    /// Starts an instance with the default settings.
    pub fn start() -> Dovecot {
        DovecotBuilder::default().start()
    }

    /// Where clients connect for IMAP.
    pub fn imap_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.imap_port))
    }

    /// Where clients connect for IMAPS (only with `DovecotBuilder::tls`).
    pub fn imaps_addr(&self) -> Option<SocketAddr> {
        (self.imaps_port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], self.imaps_port)))
    }

    /// Where mail is delivered with LMTP.
    pub fn lmtp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.lmtp_port))
    }

    /// The instance's directory (config, log, mail).
    pub fn dir(&self) -> &Path {
        self.dir.as_deref().expect("instance has a directory")
    }

    /// The instance's generated config file (`doveadm -c` takes it).
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("dovecot.conf")
    }

    /// Runs `doveadm -c <this instance's config> ARGS` and waits for it;
    /// `Err` holds what it printed when it could not be run or failed.
    /// The instance must be running (doveadm talks to its sockets under
    /// base_dir).
    pub fn doveadm(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(DOVEADM_BIN)
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {DOVEADM_BIN} (make deps): {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "doveadm {} exited with {}: {stdout}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The PID of the Dovecot master process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The credentials of a regular user (`alice` or `bob`).
    pub fn user(&self, name: &str) -> Credentials {
        assert!(USERS.contains(&name), "no test user {name:?}");
        Credentials {
            user: name.to_string(),
            password: USER_PASSWORD.to_string(),
        }
    }

    /// The master user's credentials.
    pub fn admin(&self) -> Credentials {
        Credentials {
            user: ADMIN_USER.to_string(),
            password: ADMIN_PASSWORD.to_string(),
        }
    }

    /// The instance's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("dovecot.log")).unwrap_or_default()
    }

    /// Stops the master (SIGTERM, SIGKILL after 10 s) and waits until it has
    /// exited.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }

    /// Stops the master like [`Dovecot::stop`], but once `grace` has passed
    /// kills it and every process it started (as [`Dovecot::kill_all`]):
    /// for instances whose orderly shutdown may wait several seconds on
    /// work in flight that the test does not need (a dsync process waits
    /// 5 s for the stats process the master already stopped).
    pub fn stop_within(&mut self, grace: Duration) {
        let Some(pid) = self.pid() else {
            return;
        };
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => std::thread::sleep(Duration::from_millis(20)),
                Some(Err(_)) => break,
                Some(Ok(Some(_))) | None => {
                    self.child = None;
                    return;
                }
            }
        }
        self.kill_all();
    }

    /// Kills the master with SIGKILL (a crash) and reaps it. Its session
    /// processes (imap, auth) live on until they notice; see
    /// [`Dovecot::kill_all`] for a machine that dies.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the master and every process it
    /// started: a backend that hangs without closing its connections.
    pub fn freeze(&self, frozen: bool) {
        let Some(pid) = self.pid() else {
            return;
        };
        let signal = if frozen {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        if frozen {
            // First the master, so it starts nothing while its tree is read.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
        }
        let mut all = descendants(pid);
        all.push(pid);
        for p in all {
            let _ = kill(Pid::from_raw(p as i32), signal);
        }
    }

    /// Kills the master and every process it started with SIGKILL, as when
    /// the machine dies: open IMAP sessions end at once.
    pub fn kill_all(&mut self) {
        let Some(pid) = self.pid() else {
            return;
        };
        // Freeze the master so it starts no process while its tree is read.
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGSTOP);
        let victims = descendants(pid);
        for &p in &victims {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
        self.kill();
        // Wait until they are gone (or zombies), so their sockets are closed
        // before a restart looks at them.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && victims.iter().any(|p| {
                fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|st| {
                        !st.rsplit_once(')')
                            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(false)
            })
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the instance again on the same ports and directory, after a
    /// `stop` or `kill`; waits for the greetings.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn()
            .unwrap_or_else(|e| panic!("Dovecot did not restart:\n{e}"));
    }

    fn write_files(&self) {
        tandem_backends::dovecot::DovecotSetup {
            dir: self.dir().to_path_buf(),
            imap_port: self.imap_port,
            lmtp_port: self.lmtp_port,
            imap_capability: self.options.imap_capability.clone(),
            extra_config: self.options.extra_config.clone(),
            user_passdb_fields: self.options.user_passdb_fields.clone(),
            tls: self
                .options
                .tls
                .clone()
                .map(|(c, k)| (c, k, self.imaps_port)),
        }
        .write()
        .expect("write the Dovecot config");
    }

    /// Starts the master in the foreground (`-F`, so its PID is ours) and
    /// waits for both greetings.
    fn spawn(&mut self) -> Result<(), String> {
        let dir = self.dir().to_path_buf();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stderr.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new(DOVECOT_BIN)
            .arg("-F")
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("cannot run {DOVECOT_BIN} (is dovecot-imapd installed? `make deps`): {e}")
            })?;
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        let mut ready = [false, false];
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "dovecot exited with {status}\n{}\n{}",
                    fs::read_to_string(dir.join("stderr.log")).unwrap_or_default(),
                    self.log()
                ));
            }
            ready[0] = ready[0] || greets(self.imap_addr(), b"* OK");
            ready[1] = ready[1] || greets(self.lmtp_addr(), b"220 ");
            if ready == [true, true] {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let log = self.log();
        self.stop();
        Err(format!("no greeting within {START_TIMEOUT:?}\n{log}"))
    }
}

/// Every process below `root` in the process tree, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces, so split
            // after its closing parenthesis.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// True when a server at `addr` sends a greeting that starts with `prefix`.
fn greets(addr: SocketAddr, prefix: &[u8]) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    while got.len() < prefix.len() {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let ok = got.starts_with(prefix);
    let quit: &[u8] = if prefix.starts_with(b"*") {
        b"x LOGOUT\r\n"
    } else {
        b"QUIT\r\n"
    };
    let _ = s.write_all(quit);
    ok
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if std::thread::panicking() && self.dir.is_some() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            eprintln!(
                "---- dovecot log ({}), last {} lines ----",
                self.dir().display(),
                tail.len()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            eprintln!("---- end of dovecot log ----");
        }
        self.stop();
    }
}
