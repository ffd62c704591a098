//! A Cyrus IMAP 3.6 instance in a directory of its own: the backend of
//! `tandem demo --backend cyrus`, and what the test harness
//! (`tandem-tests`'s `Cyrus`) starts, so that the demo runs what the tests
//! test. `deploy/CYRUS.md` has what was measured about each setting.
//!
//! The binaries: `master` and the tools come from Debian's `cyrus-common`;
//! `imapd` and `idled` from Debian's `cyrus-imapd`, which conflicts with
//! `dovecot-imapd` and is therefore not installed but unpacked by `make
//! deps` into [`CYRUS_ROOT`].
//!
//! Cyrus logs only with syslog(3), to `/dev/log`. Where this process may
//! (root with CAP_SYS_ADMIN), [`CyrusSetup::master_command`] starts the
//! master in a private mount namespace whose `/dev` is a small tmpfs holding
//! the usual device nodes (bind-mounted from the real `/dev`) and a
//! `/dev/log` that points to a datagram socket of the instance's directory;
//! a [`SyslogSink`] thread copies what arrives there to `cyrus.log`. Nothing
//! outside the namespace changes.
//!
//! The master runs in a process group of its own: on SIGTERM it sends
//! SIGTERM to its whole process group (`kill(0, SIGTERM)`), which would
//! otherwise reach whatever started it. The group is also the handle on
//! every process of the instance ([`stop_group`], [`kill_group`]).

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
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

use crate::{ADMIN_PASSWORD, ADMIN_USER, USERS, USER_PASSWORD};

/// Where `make deps` unpacks Debian's `cyrus-imapd` (of the same version as
/// the installed `cyrus-common`); it writes that version to `VERSION` there.
pub const CYRUS_ROOT: &str = "/opt/tandem-cyrus";
/// The IMAP server, from the unpacked `cyrus-imapd`.
pub const IMAPD_BIN: &str = "/opt/tandem-cyrus/usr/lib/cyrus/bin/imapd";
/// The IDLE notification daemon, from the unpacked `cyrus-imapd`.
pub const IDLED_BIN: &str = "/opt/tandem-cyrus/usr/lib/cyrus/bin/idled";
/// Cyrus's master process, from Debian's `cyrus-common`.
pub const MASTER_BIN: &str = "/usr/lib/cyrus/bin/master";
/// Cyrus's LMTP server, from `cyrus-common`.
pub const LMTPD_BIN: &str = "/usr/lib/cyrus/bin/lmtpd";
/// Cyrus's database tool (recovery at start, checkpoints), from
/// `cyrus-common`.
pub const CTL_CYRUSDB_BIN: &str = "/usr/lib/cyrus/bin/ctl_cyrusdb";
/// Writes the sasldb, from Debian's `sasl2-bin`.
pub const SASLPASSWD_BIN: &str = "/usr/sbin/saslpasswd2";
/// The instance's `servername` and the SASL realm of its users, so that the
/// sasldb does not depend on the machine's host name.
pub const SERVERNAME: &str = "tandem-cyrus";
/// The rights the admin gets on each user's INBOX (all of Cyrus 3.6's).
pub const ADMIN_RIGHTS: &str = "lrswipkxtecdan";
/// The system user Cyrus runs as (created by `cyrus-common`); the
/// instance's directory belongs to it.
pub const CYRUS_USER: &str = "cyrus";

/// Run by `sh` inside a private mount namespace (`unshare --mount`): gives
/// it a `/dev` of its own whose `log` is the instance's syslog socket, then
/// execs the master. `$1` is the instance's directory, the rest the
/// master's command line. If /dev cannot be replaced, the master runs with
/// the real /dev (and its syslog goes wherever the machine's goes).
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

/// One Cyrus instance's files: `imapd.conf`, `cyrus.conf`, the sasldb with
/// the users and the admin, and Cyrus's directories.
#[derive(Debug, Clone)]
pub struct CyrusSetup {
    /// Its directory. Keep the path short: Unix socket paths under it
    /// (idle, notify, lmtp) must fit in 108 bytes.
    pub dir: PathBuf,
    /// IMAP port on 127.0.0.1.
    pub imap_port: u16,
    /// LMTP port on 127.0.0.1 (`lmtpd -a`: no authentication, for
    /// 127.0.0.1 only); 0 for no LMTP listener.
    pub lmtp_port: u16,
    /// TLS certificate and key (PEM files, copied into the directory so
    /// that the `cyrus` user can read them) and the IMAPS port, if any.
    pub tls: Option<(PathBuf, PathBuf, u16)>,
    /// Raw `imapd.conf` settings (`key: value` lines) that replace the
    /// defaults of the same key (Cyrus refuses a key given twice), e.g.
    /// `unixhierarchysep: yes`.
    pub extra_config: String,
}

impl CyrusSetup {
    /// The instance's `imapd.conf` (Cyrus's tools take it with `-C`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("imapd.conf")
    }

    /// Writes the configs and the sasldb, makes Cyrus's directories, and
    /// gives the whole directory to the `cyrus` user.
    pub fn write(&self) -> io::Result<()> {
        check_installed()?;
        let cyrus = User::from_name(CYRUS_USER).ok().flatten().ok_or_else(|| {
            io::Error::other("no system user `cyrus` (is cyrus-common installed? run `make deps`)")
        })?;
        let d = &self.dir;
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
            fs::create_dir_all(d.join(sub))?;
        }
        if let Some((cert, key, _)) = &self.tls {
            fs::copy(cert, d.join("tls-cert.pem"))?;
            fs::copy(key, d.join("tls-key.pem"))?;
            fs::set_permissions(d.join("tls-key.pem"), fs::Permissions::from_mode(0o600))?;
        }
        let conf = self.config_path();
        fs::write(&conf, self.imapd_conf())?;
        fs::write(d.join("cyrus.conf"), self.cyrus_conf())?;

        self.add_sasl_users()?;
        chown_tree(d, &cyrus)?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
        Ok(())
    }

    /// imapd.conf: the test defaults, each replaced by the same option in
    /// `extra_config`, then `extra_config`.
    fn imapd_conf(&self) -> String {
        let ds = self.dir.display();
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
munge8bit: no
"
        );
        // Cyrus refuses an option given twice: the extra ones replace ours.
        let key = |line: &str| line.split_once(':').map(|(k, _)| k.trim().to_string());
        let overridden: Vec<String> = self.extra_config.lines().filter_map(key).collect();
        let mut imapd_conf =
            String::from("# Generated by tandem for a demo or a test; not for production.\n");
        for line in defaults.lines() {
            if !key(line).is_some_and(|k| overridden.contains(&k)) {
                imapd_conf.push_str(line);
                imapd_conf.push('\n');
            }
        }
        if self.tls.is_some() {
            imapd_conf.push_str(&format!(
                "tls_server_cert: {ds}/tls-cert.pem\ntls_server_key: {ds}/tls-key.pem\n"
            ));
        }
        imapd_conf.push_str(&self.extra_config);
        if !imapd_conf.ends_with('\n') {
            imapd_conf.push('\n');
        }
        imapd_conf
    }

    /// cyrus.conf: the services, each naming the config itself (`master`
    /// does not hand its -C to them).
    fn cyrus_conf(&self) -> String {
        let conf = self.config_path();
        let c = conf.display();
        format!(
            "# Generated by tandem for a demo or a test; not for production.
START {{
  recover cmd=\"{CTL_CYRUSDB_BIN} -C {c} -r\"
}}
SERVICES {{
  imap cmd=\"{IMAPD_BIN} -C {c}\" listen=\"127.0.0.1:{port}\" prefork=0 maxchild=100
{lmtp}}}
EVENTS {{
  checkpoint cmd=\"{CTL_CYRUSDB_BIN} -C {c} -c\" period=30
}}
DAEMON {{
  idled cmd=\"{IDLED_BIN} -C {c}\"
}}
",
            port = self.imap_port,
            lmtp = {
                let mut more = String::new();
                if self.lmtp_port != 0 {
                    more.push_str(&format!(
                        "  lmtp cmd=\"{LMTPD_BIN} -a -C {c}\" listen=\"127.0.0.1:{}\" prefork=0 maxchild=20\n",
                        self.lmtp_port
                    ));
                }
                if let Some((_, _, port)) = &self.tls {
                    more.push_str(&format!(
                        "  imaps cmd=\"{IMAPD_BIN} -s -C {c}\" listen=\"127.0.0.1:{port}\" prefork=0 maxchild=100\n"
                    ));
                }
                more
            },
        )
    }

    /// The users' and the admin's SASL secrets.
    fn add_sasl_users(&self) -> io::Result<()> {
        let d = &self.dir;
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
                    io::Error::other(format!(
                        "cannot run {SASLPASSWD_BIN} (is sasl2-bin installed? run `make deps`): {e}"
                    ))
                })?;
            // -p: the password is stdin, without a newline.
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(password.as_bytes())?;
            }
            let out = child.wait_with_output()?;
            if !out.status.success() {
                return Err(io::Error::other(format!(
                    "saslpasswd2 for {user} exited with {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
        }
        Ok(())
    }

    /// The command that starts the master in the foreground, in a process
    /// group of its own (the child's PID is the master's: `sh` and
    /// `unshare` exec into it). With `private_dev` (see
    /// [`private_dev_possible`]) it runs in a mount namespace whose
    /// `/dev/log` is `DIR/log.sock`, which a [`SyslogSink`] should serve.
    /// Standard input and output are null; the caller sets stderr.
    pub fn master_command(&self, private_dev: bool) -> Command {
        let dir = &self.dir;
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
        let mut cmd = if private_dev {
            let mut cmd = Command::new("unshare");
            cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(NAMESPACE_SCRIPT)
                .arg("sh")
                .arg(dir)
                .args(&master_args);
            cmd
        } else {
            let mut cmd = Command::new(&master_args[0]);
            cmd.args(&master_args[1..]);
            cmd
        };
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }
}

/// Logs in as the admin at `addr`, learns the hierarchy separator (`LIST ""
/// ""`), creates the users' INBOXes (those that exist are kept) and gives
/// the admin every right on them; returns the separator. Without that ACL
/// a Cyrus admin may only list and administer a user's mailboxes.
pub fn provision(addr: SocketAddr) -> io::Result<char> {
    let mut c = LineClient::connect(addr)?;
    c.ok(&format!("LOGIN {ADMIN_USER} \"{ADMIN_PASSWORD}\""))?;
    let list = c.ok("LIST \"\" \"\"")?;
    let separator = list
        .iter()
        .find_map(|l| {
            let rest = l.strip_prefix("* LIST (")?.split_once(") \"")?.1;
            rest.chars().next()
        })
        .ok_or_else(|| io::Error::other(format!("no separator in {list:?}")))?;
    for user in USERS {
        let mailbox = format!("user{separator}{user}");
        let (done, text) = c.command(&format!("CREATE \"{mailbox}\""))?;
        if !done && !text.contains("already exists") {
            return Err(io::Error::other(format!("CREATE {mailbox}: {text}")));
        }
        c.ok(&format!("SETACL \"{mailbox}\" {ADMIN_USER} {ADMIN_RIGHTS}"))?;
    }
    let _ = c.command("LOGOUT");
    Ok(separator)
}

/// A line-at-a-time IMAP client for [`provision`]: commands without
/// literals, answers read up to their tagged line.
struct LineClient {
    reader: BufReader<TcpStream>,
    tag: u32,
}

impl LineClient {
    fn connect(addr: SocketAddr) -> io::Result<LineClient> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = LineClient {
            reader: BufReader::new(stream),
            tag: 0,
        };
        let greeting = c.line()?;
        if !greeting.starts_with("* OK") {
            return Err(io::Error::other(format!("greeting {greeting:?}")));
        }
        Ok(c)
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::other("the server closed the connection"));
        }
        Ok(line.trim_end().to_string())
    }

    /// Sends `command`; returns whether it ended in OK, and the tagged
    /// line's text.
    fn command(&mut self, command: &str) -> io::Result<(bool, String)> {
        let (ok, lines) = self.exchange(command)?;
        Ok((ok, lines.last().cloned().unwrap_or_default()))
    }

    /// Sends `command` and fails unless it ends in OK; returns every line
    /// of the answer.
    fn ok(&mut self, command: &str) -> io::Result<Vec<String>> {
        let (ok, lines) = self.exchange(command)?;
        if !ok {
            // The command itself may hold a password: name its verb only.
            let verb = command.split(' ').next().unwrap_or_default();
            return Err(io::Error::other(format!("{verb}: {lines:?}")));
        }
        Ok(lines)
    }

    fn exchange(&mut self, command: &str) -> io::Result<(bool, Vec<String>)> {
        self.tag += 1;
        let tag = format!("p{}", self.tag);
        let stream = self.reader.get_mut();
        stream.write_all(format!("{tag} {command}\r\n").as_bytes())?;
        let mut lines = Vec::new();
        loop {
            let line = self.line()?;
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                let ok = rest.starts_with("OK");
                lines.push(line);
                return Ok((ok, lines));
            }
            lines.push(line);
        }
    }
}

/// The instance's syslog: a datagram socket `log.sock` in its directory
/// (the `/dev/log` of its mount namespace) and a thread appending what
/// arrives, one line a message without the `<priority>`, to `cyrus.log`.
/// Dropping it stops the thread and closes the socket: drop it after the
/// master has stopped, so that the last messages are kept.
#[derive(Debug)]
pub struct SyslogSink {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SyslogSink {
    /// Binds `DIR/log.sock` (removing a stale one) and starts the thread.
    pub fn start(dir: &Path) -> io::Result<SyslogSink> {
        let path = dir.join("log.sock");
        let _ = fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        // Cyrus's processes run as `cyrus` and must be able to send to it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666))?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("cyrus.log"))?;
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
            })?;
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
pub fn check_installed() -> io::Result<()> {
    for (bin, package) in [
        (MASTER_BIN, "cyrus-common"),
        (CTL_CYRUSDB_BIN, "cyrus-common"),
        (SASLPASSWD_BIN, "sasl2-bin"),
        (IMAPD_BIN, "cyrus-imapd (unpacked into /opt/tandem-cyrus)"),
        (IDLED_BIN, "cyrus-imapd (unpacked into /opt/tandem-cyrus)"),
    ] {
        if !Path::new(bin).exists() {
            return Err(io::Error::other(format!(
                "{bin} is missing: is cyrus installed ({package})? run `make deps`"
            )));
        }
    }
    Ok(())
}

/// True when this process may start a program in a private mount namespace
/// (root with CAP_SYS_ADMIN and util-linux's `unshare`); asked once.
pub fn private_dev_possible() -> bool {
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

/// Stops the instance whose master is `child` (SIGTERM; the master passes
/// it on to its process group), SIGKILLs the whole group if the master has
/// not exited after `grace` or something outlives it, and returns once
/// every process of the group is gone.
pub fn stop_group(child: &mut Child, grace: Duration) {
    let pgid = Pid::from_raw(child.id() as i32);
    if !crate::terminate(child, grace) {
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
    // The services got the master's SIGTERM; what outlives it is killed
    // (only while the group exists: its id could be reused later).
    wait_group_gone(pgid, Duration::from_secs(3));
    if group_alive(pgid.as_raw()) {
        let _ = killpg(pgid, Signal::SIGKILL);
        wait_group_gone(pgid, Duration::from_secs(5));
    }
}

/// Kills every process of the instance whose master is `child` with
/// SIGKILL, as when the machine dies, and waits until they are gone.
pub fn kill_group(child: &mut Child) {
    let pgid = Pid::from_raw(child.id() as i32);
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.kill();
    let _ = child.wait();
    wait_group_gone(pgid, Duration::from_secs(5));
}

/// Gives `path` and everything below it to `user` (and its primary group).
fn chown_tree(path: &Path, user: &User) -> io::Result<()> {
    chown(path, Some(user.uid), Some(user.gid)).map_err(io::Error::from)?;
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// Waits up to `limit` until no live (non-zombie) process is left in the
/// process group `pgid`.
fn wait_group_gone(pgid: Pid, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && group_alive(pgid.as_raw()) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while a process of group `pgid` exists and is not a zombie, from
/// /proc.
pub fn group_alive(pgid: i32) -> bool {
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
