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
//! The binaries: `master` and the tools come from Debian's `cyrus-common`;
//! `imapd` and `idled` from Debian's `cyrus-imapd`, which conflicts with
//! `dovecot-imapd` and is therefore not installed but unpacked by `make
//! deps` into [`CYRUS_ROOT`]. See `deploy/CYRUS.md` for what was measured.
//!
//! Cyrus logs only with syslog(3), to `/dev/log`. When the harness may
//! (root with CAP_SYS_ADMIN, as on CI), it starts the master in a private
//! mount namespace whose `/dev` is a small tmpfs holding the usual device
//! nodes (bind-mounted from the real `/dev`) and a `/dev/log` that points to
//! a datagram socket of the instance's directory; a thread of the test
//! process writes what arrives there to `cyrus.log`. Nothing outside the
//! namespace changes. Where that is not possible, [`Cyrus::log`] holds only
//! what the master wrote to stderr.
//!
//! Each master runs in a process group of its own: on SIGTERM it sends
//! SIGTERM to its whole process group (`kill(0, SIGTERM)`), which, in the
//! test process's group, stopped the other instances' services (they run
//! as the same `cyrus` user). The group is also how the harness finds every
//! process of an instance, orphans included.
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
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{chown, Pid, User};

use crate::imap::{quote, ImapClient};
use crate::{Credentials, ADMIN_PASSWORD, ADMIN_USER, USERS, USER_PASSWORD};

/// Where `make deps` unpacks Debian's `cyrus-imapd` (of the same version as
/// the installed `cyrus-common`); it writes that version to `VERSION` there.
pub const CYRUS_ROOT: &str = "/opt/tandem-cyrus";

/// The IMAP server, from the unpacked `cyrus-imapd`.
pub const IMAPD_BIN: &str = "/opt/tandem-cyrus/usr/lib/cyrus/bin/imapd";

/// The IDLE notification daemon, from the unpacked `cyrus-imapd`.
pub const IDLED_BIN: &str = "/opt/tandem-cyrus/usr/lib/cyrus/bin/idled";

/// Cyrus's master process, from Debian's `cyrus-common`.
pub const MASTER_BIN: &str = "/usr/lib/cyrus/bin/master";

/// Cyrus's database tool (recovery at start, checkpoints), from
/// `cyrus-common`.
pub const CTL_CYRUSDB_BIN: &str = "/usr/lib/cyrus/bin/ctl_cyrusdb";

/// Writes the sasldb, from Debian's `sasl2-bin`.
pub const SASLPASSWD_BIN: &str = "/usr/sbin/saslpasswd2";

/// The instance's `servername` and the SASL realm of its users, so that
/// the sasldb does not depend on the machine's host name.
pub const SERVERNAME: &str = "tandem-cyrus";

/// The rights the admin gets on each user's INBOX (all of Cyrus 3.6's).
pub const ADMIN_RIGHTS: &str = "lrswipkxtecdan";

/// The system user Cyrus runs as (created by `cyrus-common`); the instance's
/// directory belongs to it.
const CYRUS_USER: &str = "cyrus";

/// How long an instance may take to greet after start (a master runs
/// database recovery first; generous for a busy two-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Run by `sh` inside a private mount namespace (`unshare --mount`): gives
/// it a `/dev` of its own whose `log` is the instance's syslog socket, then
/// execs the master. `$1` is the instance's directory, the rest the
/// master's command line. If /dev cannot be replaced, the master runs with
/// the real /dev (and its syslog goes nowhere).
const NAMESPACE_SCRIPT: &str = r#"d="$1"; shift
if mkdir -p "$d/ns-dev" && mount --rbind /dev "$d/ns-dev"; then
  if mount -t tmpfs -o mode=755,size=64k tandem-cyrus-dev /dev; then
    for n in null zero full random urandom tty; do
      if [ -e "$d/ns-dev/$n" ]; then
        : > "/dev/$n" && mount --bind "$d/ns-dev/$n" "/dev/$n" || echo "tandem: no /dev/$n" >&2
      fi
    done
    if [ -d "$d/ns-dev/shm" ]; then mkdir /dev/shm && mount --bind "$d/ns-dev/shm" /dev/shm; fi
    ln -s /proc/self/fd /dev/fd
    ln -s /proc/self/fd/0 /dev/stdin
    ln -s /proc/self/fd/1 /dev/stdout
    ln -s /proc/self/fd/2 /dev/stderr
    ln -s "$d/log.sock" /dev/log
  else
    echo "tandem: cannot mount a private /dev; Cyrus's syslog is lost" >&2
  fi
  umount -l "$d/ns-dev"
fi
exec "$@"
"#;

/// Options for a new instance.
#[derive(Debug, Default, Clone)]
pub struct CyrusBuilder {
    extra_config: String,
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
        check_installed()?;
        let cyrus = User::from_name(CYRUS_USER)
            .ok()
            .flatten()
            .ok_or("no system user `cyrus` (is cyrus-common installed? run `make deps`)")?;
        let mut last_error = String::new();
        for _ in 0..3 {
            // Short: Unix socket paths (idle, notify, lmtp) must fit 108 bytes.
            let tmp = tempfile::Builder::new()
                .prefix("tcy")
                .tempdir_in("/tmp")
                .map_err(|e| format!("create temp dir for Cyrus: {e}"))?;
            let mut instance = Cyrus {
                imap_port: crate::ports::free_tcp_port(),
                dir: tmp.path().to_path_buf(),
                child: None,
                options: self.clone(),
                separator: '.',
                syslog: None,
                private_dev: false,
                _tmp: None,
            };
            instance.write_files(&cyrus)?;
            instance.syslog = Some(SyslogSink::start(&instance.dir)?);
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
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = Pid::from_raw(child.id() as i32);
        if !tandem_proxy::demo::terminate(&mut child, STOP_GRACE) {
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
        // The services got the master's SIGTERM; what outlives it is killed.
        wait_group_gone(pgid, Duration::from_secs(3));
        let _ = killpg(pgid, Signal::SIGKILL);
        wait_group_gone(pgid, Duration::from_secs(5));
    }

    /// Kills the master and every process of the instance with SIGKILL, as
    /// when the machine dies: open IMAP sessions end at once, and the next
    /// start runs Cyrus's database recovery.
    pub fn kill_all(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = Pid::from_raw(child.id() as i32);
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
        wait_group_gone(pgid, Duration::from_secs(5));
    }

    /// Starts the instance again on the same port and directory (mail,
    /// users and ACLs kept), after a `stop` or `kill_all`, or stops it
    /// first; waits for the greeting.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn()
            .unwrap_or_else(|e| panic!("Cyrus did not restart:\n{e}\n{}", self.log()));
    }

    /// Writes the configs and the sasldb, makes Cyrus's directories, and
    /// gives the whole directory to the `cyrus` user.
    fn write_files(&self, cyrus: &User) -> Result<(), String> {
        let d = &self.dir;
        let ds = d.display();
        for sub in [
            "config/db",
            "config/socket",
            "config/proc",
            "config/lock",
            "config/log",
            "config/msg",
            "config/ptclient",
            "config/sync",
            "config/user",
            "config/quota",
            "spool",
            "sieve",
            "run",
        ] {
            fs::create_dir_all(d.join(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
        }
        let defaults = format!(
            "servername: {SERVERNAME}
configdirectory: {ds}/config
defaultpartition: default
partition-default: {ds}/spool
sievedir: {ds}/sieve
proc_path: {ds}/config/proc
mboxname_lockpath: {ds}/config/lock
idlesocket: {ds}/run/idle
notifysocket: {ds}/run/notify
lmtpsocket: {ds}/run/lmtp
syslog_prefix: tandem-cyrus
admins: {ADMIN_USER}
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {ds}/sasldb2
sasl_mech_list: PLAIN LOGIN
altnamespace: yes
unixhierarchysep: no
delete_mode: immediate
failedloginpause: 0
hashimapspool: true
"
        );
        // Cyrus refuses an option given twice: the builder's replace ours.
        let key = |line: &str| line.split_once(':').map(|(k, _)| k.trim().to_string());
        let overridden: Vec<String> = self.options.extra_config.lines().filter_map(key).collect();
        let mut imapd_conf = String::from(
            "# Generated by tandem-tests for one test instance; not for production.\n",
        );
        for line in defaults.lines() {
            if !key(line).is_some_and(|k| overridden.contains(&k)) {
                imapd_conf.push_str(line);
                imapd_conf.push('\n');
            }
        }
        imapd_conf.push_str(&self.options.extra_config);
        // `master` does not hand its -C to the services: each command names
        // the config itself.
        let conf = self.config_path();
        let c = conf.display();
        let cyrus_conf = format!(
            "# Generated by tandem-tests for one test instance; not for production.
START {{
  recover cmd=\"{CTL_CYRUSDB_BIN} -C {c} -r\"
}}
SERVICES {{
  imap cmd=\"{IMAPD_BIN} -C {c}\" listen=\"127.0.0.1:{port}\" prefork=0 maxchild=100
}}
EVENTS {{
  checkpoint cmd=\"{CTL_CYRUSDB_BIN} -C {c} -c\" period=30
}}
DAEMON {{
  idled cmd=\"{IDLED_BIN} -C {c}\"
}}
",
            port = self.imap_port
        );
        fs::write(&conf, imapd_conf).map_err(|e| format!("write imapd.conf: {e}"))?;
        fs::write(d.join("cyrus.conf"), cyrus_conf)
            .map_err(|e| format!("write cyrus.conf: {e}"))?;

        let sasldb = d.join("sasldb2");
        let users = USERS
            .iter()
            .map(|u| (*u, USER_PASSWORD))
            .chain([(ADMIN_USER, ADMIN_PASSWORD)]);
        for (user, password) in users {
            let mut child = Command::new(SASLPASSWD_BIN)
                .arg("-f")
                .arg(&sasldb)
                .args(["-u", SERVERNAME, "-p", "-c", user])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| {
                    format!("cannot run {SASLPASSWD_BIN} (is sasl2-bin installed? run `make deps`): {e}")
                })?;
            // -p: the password is stdin, without a newline.
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(password.as_bytes())
                .map_err(|e| format!("saslpasswd2 stdin: {e}"))?;
            let out = child
                .wait_with_output()
                .map_err(|e| format!("saslpasswd2: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "saslpasswd2 for {user} exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }

        chown_tree(d, cyrus)?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod {ds}: {e}"))?;
        Ok(())
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
        let master_args = [
            MASTER_BIN.into(),
            "-D".into(),
            "-C".into(),
            self.config_path(),
            "-M".into(),
            dir.join("cyrus.conf"),
            "-p".into(),
            dir.join("run/master.pid"),
        ];
        self.private_dev = private_dev_possible();
        let mut cmd = if self.private_dev {
            let mut cmd = Command::new("unshare");
            cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(NAMESPACE_SCRIPT)
                .arg("sh")
                .arg(&dir)
                .args(&master_args);
            cmd
        } else {
            let mut cmd = Command::new(&master_args[0]);
            cmd.args(&master_args[1..]);
            cmd
        };
        // A process group of its own: the master signals its whole group
        // when it shuts down, which would otherwise hit every other
        // instance this test process started (measured).
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
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
        let fail = |what: &str, e: String| format!("provisioning Cyrus ({what}): {e}");
        let mut c =
            ImapClient::connect(self.imap_addr()).map_err(|e| fail("connect", e.to_string()))?;
        let run = |c: &mut ImapClient, cmd: &str| -> Result<crate::Reply, String> {
            let reply = c.command(cmd).map_err(|e| fail(cmd, e.to_string()))?;
            if reply.status != crate::Status::Ok {
                return Err(fail(cmd, format!("{reply:?}")));
            }
            Ok(reply)
        };
        run(
            &mut c,
            &format!("LOGIN {} {}", quote(ADMIN_USER), quote(ADMIN_PASSWORD)),
        )?;
        let list = run(&mut c, "LIST \"\" \"\"")?;
        self.separator = list
            .lines()
            .iter()
            .find_map(|l| {
                let rest = l.strip_prefix("* LIST (")?.split_once(") \"")?.1;
                rest.chars().next()
            })
            .ok_or_else(|| fail("separator", format!("{list:?}")))?;
        for user in USERS {
            let mailbox = self.user_mailbox(user);
            run(&mut c, &format!("CREATE {}", quote(&mailbox)))?;
            run(
                &mut c,
                &format!("SETACL {} {ADMIN_USER} {ADMIN_RIGHTS}", quote(&mailbox)),
            )?;
        }
        let _ = c.command("LOGOUT");
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

/// The instance's syslog: a datagram socket `log.sock` in its directory
/// (the `/dev/log` of its mount namespace) and a thread appending what
/// arrives, one line a message without the `<priority>`, to `cyrus.log`.
/// Dropping it stops the thread and closes the socket.
#[derive(Debug)]
struct SyslogSink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SyslogSink {
    fn start(dir: &Path) -> Result<SyslogSink, String> {
        let path = dir.join("log.sock");
        let socket = UnixDatagram::bind(&path).map_err(|e| format!("bind {path:?}: {e}"))?;
        // Cyrus's processes run as `cyrus` and must be able to send to it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("chmod {path:?}: {e}"))?;
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let mut out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("cyrus.log"))
            .map_err(|e| format!("open cyrus.log: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cyrus-syslog".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !stopping.load(Ordering::Relaxed) {
                    let Ok(n) = socket.recv(&mut buf) else {
                        continue;
                    };
                    let msg = String::from_utf8_lossy(&buf[..n]);
                    let msg = msg.trim_end_matches(['\n', '\0']);
                    let msg = match msg.strip_prefix('<').and_then(|r| r.split_once('>')) {
                        Some((pri, rest)) if pri.bytes().all(|b| b.is_ascii_digit()) => rest,
                        _ => msg,
                    };
                    let _ = writeln!(out, "{msg}");
                }
            })
            .map_err(|e| format!("spawn the syslog thread: {e}"))?;
        Ok(SyslogSink {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for SyslogSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fails with a hint to `make deps` when a binary is missing.
fn check_installed() -> Result<(), String> {
    for (bin, package) in [
        (MASTER_BIN, "cyrus-common"),
        (CTL_CYRUSDB_BIN, "cyrus-common"),
        (SASLPASSWD_BIN, "sasl2-bin"),
        (IMAPD_BIN, "cyrus-imapd (unpacked into /opt/tandem-cyrus)"),
        (IDLED_BIN, "cyrus-imapd (unpacked into /opt/tandem-cyrus)"),
    ] {
        if !Path::new(bin).exists() {
            return Err(format!(
                "{bin} is missing: is cyrus installed ({package})? run `make deps`"
            ));
        }
    }
    Ok(())
}

/// True when this process may start a program in a private mount namespace
/// (root with CAP_SYS_ADMIN and util-linux's `unshare`); asked once.
fn private_dev_possible() -> bool {
    static POSSIBLE: OnceLock<bool> = OnceLock::new();
    *POSSIBLE.get_or_init(|| {
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Gives `path` and everything below it to `user` (group `mail`, its
/// primary group).
fn chown_tree(path: &Path, user: &User) -> Result<(), String> {
    chown(path, Some(user.uid), Some(user.gid)).map_err(|e| format!("chown {path:?}: {e}"))?;
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path).map_err(|e| format!("read {path:?}: {e}"))? {
            let entry = entry.map_err(|e| e.to_string())?;
            chown_tree(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// Waits up to `limit` until no live (non-zombie) process is left in the
/// process group `pgid`, from /proc.
fn wait_group_gone(pgid: Pid, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && group_alive(pgid.as_raw()) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while a process of group `pgid` exists and is not a zombie, from
/// /proc.
fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|entry| {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(pgid) && state != Some("Z")
    })
}
