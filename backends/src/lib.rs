//! The real mail servers tandem runs in front of, set up in a directory of
//! their own on 127.0.0.1 ports: the Dovecot and Cyrus configurations that
//! `tandem demo` and the test harness (`tandem-tests`) both write, so that
//! what the demo runs is what the tests test. Files and processes only: no
//! IMAP, no tandem.
//!
//! # Layout
//! - [`dovecot`]: [`dovecot::DovecotSetup`], a Dovecot 2.3 instance's config,
//!   users and master user.
//! - [`cyrus`]: [`cyrus::CyrusSetup`], a Cyrus 3.6 instance's files, its
//!   master's command line in a process group (and a private `/dev/log`),
//!   provisioning, stopping a process group.
#![forbid(unsafe_code)]

pub mod cyrus;
pub mod dovecot;

pub use dovecot::DOVECOT_BIN;

use std::process::Child;
use std::time::{Duration, Instant};

/// The regular users of a demo or test backend.
pub const USERS: &[&str] = &["alice", "bob"];
/// Their password.
pub const USER_PASSWORD: &str = "demo";
/// The master user that acts as any user.
pub const ADMIN_USER: &str = "admin";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-secret";
/// Debian's `mail` user, which owns the mail (Dovecot refuses uid 0).
pub const MAIL_UID: u32 = 8;

/// Sends `child` SIGTERM and waits up to `grace` for it to exit (and reaps
/// it). False when it still runs: the caller decides how to kill it.
pub fn terminate(child: &mut Child, grace: Duration) -> bool {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return false,
        }
    }
}
