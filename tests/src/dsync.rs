//! Dovecot's own replication: two local instances that replicate each
//! other with the replicator and dsync, what tandem is compared with.
//!
//! Each side is a harness [`Dovecot`] with, added to its config: the
//! `notify` and `replication` mail plugins (every change queues its user
//! for replication), the aggregator that collects those notifications, a
//! replicator that runs a dsync per queued user, a doveadm TCP listener on
//! 127.0.0.1 with a `doveadm_password` where the peer's dsync connects, and
//! `mail_replica = tcp:127.0.0.1:<peer's doveadm port>`. Measured on Debian
//! 12's Dovecot 2.3.19.1:
//! - the replicator's `replicator-doveadm` socket must be `mode = 0600,
//!   user = mail`, or the dsync it starts (running as `mail`) cannot report
//!   back ("Permission denied"); the aggregator's sockets are `mail`'s too;
//! - the replicator lists users from a userdb that can iterate: a
//!   passwd-file of names only, next to the harness's static userdb (the
//!   harness's users file holds passwords only, and passwd-file skips such
//!   entries when listing);
//! - replication is asynchronous: a change reaches the peer about 0.55 s
//!   after it was answered (a fixed 0.5 s delay in the plugin, then the
//!   dsync);
//! - the synchronous mode (`replication_sync_timeout`, whole seconds only:
//!   `2s` is rejected) crashes the replicator on every save; see
//!   [`DsyncPair::sync_mode_failure`].
//!
//! Ordering invariants:
//! - A user must never be opened on the replica before its INBOX came
//!   from the primary: an INBOX created on each side on its own (opening a
//!   missing INBOX creates it, `doveadm mailbox status` included) gets its
//!   own GUID, and the two never converge. So `start` creates alice's and
//!   bob's INBOXes on the primary, dsyncs each user to the replica and
//!   checks the INBOX GUIDs match before it returns.
//! - Only one side starts dsyncs at a time while the pair starts: two
//!   dsyncs of one user started from both sides at once can block each
//!   other on the user's lock until its 30 s timeout. So `start` starts the
//!   primary and waits until its replicator has tried its first syncs
//!   (they fail: no replica yet, and the primary's log says `doveadm(alice):
//!   Fatal: connect(...) failed: Connection refused`; expected), then starts
//!   the replica and waits for its first syncs (which succeed, and create
//!   nothing), then seeds, then waits until both replicators are idle
//!   (the seeding made the replica sync back).
//! - Both sides use the unix sockets under their own short base_dir;
//!   everything listens on free 127.0.0.1 ports.
//! - Dropping the pair stops both masters at once (SIGTERM, then SIGKILL
//!   of the whole process tree after 3 s), also during a panic, which
//!   prints their logs; their replicators and dsync processes are their
//!   children and go with them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::dovecot::Dovecot;
use crate::imap::{quote, ImapClient};
use crate::{USERS, USER_PASSWORD};

/// The password both sides' doveadm servers require (test-only).
const DOVEADM_PASSWORD: &str = "dsync-test";

/// How long the dsync that seeds a user may wait for the user's lock
/// (held by a replicator's own dsync at that moment).
const SYNC_LOCK_SECS: &str = "30";

/// How long [`DsyncPair::sync_mode_failure`] waits for the crash.
const CRASH_WAIT: Duration = Duration::from_secs(15);

/// Two running Dovecots replicating each other with dsync.
#[derive(Debug)]
pub struct DsyncPair {
    primary: Dovecot,
    replica: Dovecot,
    /// Holds the user list both sides read; removed after both stopped
    /// (fields drop in order).
    _tmp: tempfile::TempDir,
}

impl DsyncPair {
    /// Starts a pair in Dovecot's (asynchronous) replication mode and
    /// returns once alice's and bob's INBOXes exist on both sides with the
    /// same GUID. Clients write to [`DsyncPair::primary`]; the replica is
    /// for reading what arrived (it replicates back too).
    pub fn start() -> DsyncPair {
        DsyncPair::start_with("")
    }

    /// Starts a pair with `plugin_settings` added inside `plugin {}`.
    fn start_with(plugin_settings: &str) -> DsyncPair {
        let tmp = tempfile::Builder::new()
            .prefix("tds")
            .tempdir_in("/tmp")
            .expect("create temp dir for the dsync pair");
        // Dovecot's auth process reads the user list; 0700 would hide it.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod the dsync pair's dir");
        let user_list = tmp.path().join("userdb");
        // Name only: enough for listing; the static userdb answers lookups.
        let names: String = USERS.iter().map(|u| format!("{u}:::::::\n")).collect();
        fs::write(&user_list, names).expect("write the dsync pair's user list");

        // One replicator at a time: the primary's first syncs fail (no
        // replica yet), then the replica's succeed, before any dsync of
        // ours. Two dsyncs of one user started from both sides at once can
        // block each other on the user's lock for 30 s.
        let mut last_error = String::new();
        let mut started = None;
        for _ in 0..5 {
            // Each side's config names both doveadm ports, so a taken port
            // means new ports for both, and a new primary.
            let primary_doveadm = crate::ports::free_tcp_port();
            let replica_doveadm = crate::ports::free_tcp_port();
            let side = |own, peer| {
                Dovecot::builder()
                    .extra_config(&replication_config(&user_list, own, peer, plugin_settings))
                    .try_start()
            };
            let primary = match side(primary_doveadm, replica_doveadm) {
                Ok(primary) => primary,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            // A panic from here on drops what runs, which prints its log.
            wait_replicator_idle(&primary).unwrap_or_else(|e| panic!("dsync pair: primary: {e}"));
            match side(replica_doveadm, primary_doveadm) {
                Ok(replica) => {
                    started = Some((primary, replica));
                    break;
                }
                Err(e) => last_error = e, // the primary stops here
            }
        }
        let Some((primary, replica)) = started else {
            panic!("dsync pair did not start:\n{last_error}");
        };
        let pair = DsyncPair {
            primary,
            replica,
            _tmp: tmp,
        };
        wait_replicator_idle(&pair.replica).unwrap_or_else(|e| panic!("dsync pair: replica: {e}"));
        for user in USERS {
            pair.seed_inbox(user)
                .unwrap_or_else(|e| panic!("dsync pair did not start: {e}"));
        }
        // The seeding changed the replica, whose replicator syncs back.
        pair.wait_idle()
            .unwrap_or_else(|e| panic!("dsync pair did not settle: {e}"));
        pair
    }

    /// Waits until neither replicator has work queued or a dsync running
    /// (seen twice in a row, 100 ms apart), up to 60 s; `Err` says what
    /// the replicator showed last. While clients keep writing, it may
    /// never be idle.
    pub fn wait_idle(&self) -> Result<(), String> {
        wait_replicator_idle(&self.primary).map_err(|e| format!("primary: {e}"))?;
        wait_replicator_idle(&self.replica).map_err(|e| format!("replica: {e}"))
    }

    /// The side clients write to.
    pub fn primary(&self) -> &Dovecot {
        &self.primary
    }

    /// The side that receives the primary's changes (and sends its own
    /// back). Its PID and the primary's are the pair's cost.
    pub fn replica(&self) -> &Dovecot {
        &self.replica
    }

    /// Runs one dsync of `user` between the primary and the replica now
    /// (the primary's `doveadm sync -d`, both ways) and returns when it
    /// has finished: afterwards each side holds what the other held when
    /// it started. Waits for idle replicators first, so that no dsync of
    /// the replica's holds the user's lock, and retries a few times (dsync
    /// asks for another run when the mailboxes changed meanwhile). For
    /// loading a mailbox through the primary before measuring; clients
    /// should not write meanwhile.
    pub fn sync(&self, user: &str) -> Result<(), String> {
        self.wait_idle()?;
        self.sync_now(user)
    }

    /// `doveadm sync` of `user` from the primary, retried a few times.
    fn sync_now(&self, user: &str) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..5 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200));
            }
            match self
                .primary
                .doveadm(&["sync", "-u", user, "-d", "-l", SYNC_LOCK_SECS])
            {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(format!("dsync of {user} failed 5 times; last: {last}"))
    }

    /// Creates `user`'s INBOX on the primary, dsyncs it to the replica and
    /// checks both have the same INBOX (by GUID). The replica's INBOX is
    /// looked at only after the dsync created it there.
    fn seed_inbox(&self, user: &str) -> Result<(), String> {
        let guid = inbox_guid(&self.primary, user)?;
        self.sync_now(user)?;
        let replica_guid = inbox_guid(&self.replica, user)?;
        if guid == replica_guid {
            Ok(())
        } else {
            Err(format!(
                "{user}'s INBOX has GUID {guid} on the primary but {replica_guid} on the replica"
            ))
        }
    }

    /// Shows that Dovecot's synchronous replication is unusable here:
    /// starts a fresh pair with `replication_sync_timeout = 2` (the IMAP
    /// process waits up to 2 s for the replicator after each save), APPENDs
    /// one message as alice to the primary, and returns the first crash
    /// line the replicators log (on 2.3.19.1: `replicator: Panic: data
    /// stack: Out of memory when allocating 268435496 bytes`). `Err`
    /// describes what happened instead when no crash is logged within 15 s,
    /// or why the APPEND could not be made. The pair is stopped before it
    /// returns.
    pub fn sync_mode_failure() -> Result<String, String> {
        let pair = DsyncPair::start_with("  replication_sync_timeout = 2\n");
        let logged_before = [pair.primary.log().len(), pair.replica.log().len()];
        let started = Instant::now();
        let answer = append_one(&pair.primary);
        let answered_after = started.elapsed();
        let answer = answer?;
        let deadline = Instant::now() + CRASH_WAIT;
        loop {
            for (side, before) in [&pair.primary, &pair.replica]
                .into_iter()
                .zip(logged_before)
            {
                let log = side.log();
                if let Some(line) = crash_line(log.get(before..).unwrap_or(&log)) {
                    return Ok(line.to_string());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no replicator crash logged within {CRASH_WAIT:?} with \
                     replication_sync_timeout = 2; the APPEND was answered \
                     {answer:?} after {answered_after:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DsyncPair {
    /// Stops both sides at once, each killed (with every process it
    /// started) if it has not exited 3 s after SIGTERM: a dsync between
    /// them may be in flight, and only delays the shutdown. Their logs are
    /// printed afterwards when a test is failing (by `Dovecot`'s drop).
    fn drop(&mut self) {
        let grace = Duration::from_secs(3);
        let (primary, replica) = (&mut self.primary, &mut self.replica);
        std::thread::scope(|s| {
            s.spawn(|| primary.stop_within(grace));
            replica.stop_within(grace);
        });
    }
}

/// Waits until `side`'s replicator has tried to sync every user at least
/// once, has none queued, and runs no dsync: seen twice in a row, 100 ms
/// apart, so that a notification on its way is not missed. Up to 60 s
/// (two replicators' dsyncs blocking each other give up after 30 s).
fn wait_replicator_idle(side: &Dovecot) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut idle_seen = 0;
    let mut last = String::new();
    loop {
        let state = side
            .doveadm(&["replicator", "status", "*"])
            .and_then(|status| {
                side.doveadm(&["replicator", "dsync-status"])
                    .map(|dsyncs| (status, dsyncs))
            });
        match state {
            Ok((status, dsyncs)) if replicator_idle(&status, &dsyncs) => {
                idle_seen += 1;
                if idle_seen == 2 {
                    return Ok(());
                }
            }
            Ok((status, dsyncs)) => {
                idle_seen = 0;
                last = format!("{status}{dsyncs}");
            }
            Err(e) => {
                idle_seen = 0;
                last = e;
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the replicator was not idle within 60 s; last seen:\n{last}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `doveadm replicator status '*'` and `doveadm replicator
/// dsync-status` say: every test user was synced or failed once, none is
/// queued (priority `none`), and no dsync runs (a running one's line
/// starts with its user's name, an idle connection's with blanks).
fn replicator_idle(status: &str, dsyncs: &str) -> bool {
    let users_done = USERS.iter().all(|user| {
        status.lines().skip(1).any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // username, priority, fast sync, full sync, success sync, failed
            cols.len() == 6
                && cols[0] == *user
                && cols[1] == "none"
                && (cols[4] != "-" || cols[5] == "y")
        })
    });
    let none_running = dsyncs
        .lines()
        .skip(1)
        .all(|line| line.trim().is_empty() || line.starts_with(char::is_whitespace));
    users_done && none_running
}

/// The settings one side adds to the harness's config: replicate to the
/// peer whose doveadm server listens on `peer_doveadm`, and serve dsync on
/// `own_doveadm`.
fn replication_config(
    user_list: &Path,
    own_doveadm: u16,
    peer_doveadm: u16,
    plugin_settings: &str,
) -> String {
    format!(
        "# Dovecot's own replication (tandem-tests dsync pair)
mail_plugins = $mail_plugins notify replication
userdb {{
  driver = passwd-file
  args = {users}
}}
service aggregator {{
  fifo_listener replication-notify-fifo {{
    user = mail
  }}
  unix_listener replication-notify {{
    user = mail
  }}
}}
service replicator {{
  process_min_avail = 1
  unix_listener replicator-doveadm {{
    mode = 0600
    user = mail
  }}
}}
service doveadm {{
  inet_listener dsync {{
    address = 127.0.0.1
    port = {own_doveadm}
  }}
}}
doveadm_password = {DOVEADM_PASSWORD}
plugin {{
  mail_replica = tcp:127.0.0.1:{peer_doveadm}
{plugin_settings}}}
",
        users = user_list.display(),
    )
}

/// `user`'s INBOX GUID on `side`; creates the INBOX there if it is
/// missing (which is why the replica is asked only after a dsync).
fn inbox_guid(side: &Dovecot, user: &str) -> Result<String, String> {
    let out = side.doveadm(&["mailbox", "status", "-u", user, "guid", "INBOX"])?;
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("guid="))
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .ok_or_else(|| format!("no INBOX GUID in doveadm's answer {out:?}"))
}

/// Logs in as alice on `server` and APPENDs one small message; returns the
/// tagged answer's text.
fn append_one(server: &Dovecot) -> Result<String, String> {
    let err = |e: std::io::Error| format!("IMAP to {}: {e}", server.imap_addr());
    let mut client = ImapClient::connect(server.imap_addr()).map_err(err)?;
    let login = client
        .command(&format!("LOGIN alice {}", quote(USER_PASSWORD)))
        .map_err(err)?;
    if login.status != crate::Status::Ok {
        return Err(format!("LOGIN refused: {login:?}"));
    }
    let message = b"From: bench@example.org\r\nSubject: sync mode\r\n\r\nsync mode\r\n";
    let reply = client.append("INBOX", message).map_err(err)?;
    Ok(format!("{:?} {}", reply.status, reply.text))
}

/// The first line of `log` that says a replicator crashed: its panic, or
/// else the master's report of its death.
fn crash_line(log: &str) -> Option<&str> {
    log.lines()
        .find(|l| l.contains("replicator: Panic:"))
        .or_else(|| {
            log.lines().find(|l| {
                l.contains("replicator: Fatal:")
                    || (l.contains("service(replicator)") && l.contains("killed with signal"))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_HEADER: &str =
        "username            priority fast sync full sync success sync failed\n";
    const DSYNC_HEADER: &str = "username                           type status       \n";

    #[test]
    fn idle_needs_every_user_tried_nothing_queued_nothing_running() {
        let idle_dsyncs = format!(
            "{DSYNC_HEADER}                                   -    Not connected\n\
             {}-    Not connected\n",
            " ".repeat(35)
        );
        let done = format!(
            "{STATUS_HEADER}alice               none     00:00:05  00:00:05  00:00:05     -     \n\
             bob                 none     00:00:01  00:00:01  -            y     \n"
        );
        assert!(replicator_idle(&done, &idle_dsyncs));
        let untried = format!(
            "{STATUS_HEADER}alice               none     00:00:05  00:00:05  00:00:05     -     \n\
             bob                 none     -         -         -            -     \n"
        );
        assert!(!replicator_idle(&untried, &idle_dsyncs));
        let queued = done.replace("bob                 none", "bob                 high");
        assert!(!replicator_idle(&queued, &idle_dsyncs));
        let missing = format!(
            "{STATUS_HEADER}alice               none     00:00:05  00:00:05  00:00:05     -     \n"
        );
        assert!(!replicator_idle(&missing, &idle_dsyncs));
        let running = format!(
            "{DSYNC_HEADER}bob                                full Waiting for handshake\n"
        );
        assert!(!replicator_idle(&done, &running));
    }

    #[test]
    fn crash_line_prefers_the_panic() {
        let log = "Nov 28 22:42:23 imap(alice): Warning: replication(alice): Sync failure: \n\
                   Nov 28 22:42:23 replicator: Fatal: master: service(replicator): child 9802 killed with signal 6\n\
                   Nov 28 22:42:23 replicator: Panic: data stack: Out of memory\n";
        assert_eq!(
            crash_line(log),
            Some("Nov 28 22:42:23 replicator: Panic: data stack: Out of memory")
        );
        let log = "x\nNov 28 replicator: Fatal: master: service(replicator): child 1 killed with signal 6\n";
        assert!(crash_line(log).unwrap().contains("killed with signal 6"));
        assert_eq!(crash_line("master: Info: starting up\n"), None);
    }
}
