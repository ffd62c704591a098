//! `tandem check`: validate a config and probe the backend the way tandem
//! will use it, so an operator learns what is wrong before starting a node.
//!
//! The probe: TCP connect, IMAP greeting, the admin authenticates as a named
//! user (by the configured method), CAPABILITY after login has UIDPLUS, and
//! the user's INBOX can be examined. Each step is reported; the first failed
//! step ends the probe because later ones depend on it.

use std::fmt;
use std::time::Instant;

use crate::backend::{self, BackendConn, Status};
use crate::config::{Config, Role};

/// Capabilities tandem cannot work without.
pub const REQUIRED_CAPABILITIES: &[&str] = &["IMAP4REV1", "UIDPLUS"];

/// The outcome of one step of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The step passed; the text says what was seen.
    Pass(String),
    /// The step failed; the text says what is wrong and what to do.
    Fail(String),
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Step {
    /// What was checked.
    pub name: &'static str,
    /// What came of it.
    pub outcome: Outcome,
}

/// Every step of a check, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The steps run.
    pub steps: Vec<Step>,
}

impl Report {
    /// True when no step failed.
    pub fn passed(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.outcome, Outcome::Pass(_)))
    }

    fn pass(&mut self, name: &'static str, text: impl Into<String>) {
        self.steps.push(Step {
            name,
            outcome: Outcome::Pass(text.into()),
        });
    }

    fn fail(&mut self, name: &'static str, text: impl Into<String>) {
        self.steps.push(Step {
            name,
            outcome: Outcome::Fail(text.into()),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            let (mark, text) = match &step.outcome {
                Outcome::Pass(t) => ("ok  ", t),
                Outcome::Fail(t) => ("FAIL", t),
            };
            writeln!(f, "  {mark}  {:<12} {text}", step.name)?;
        }
        let failed = self
            .steps
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Fail(_)))
            .count();
        if failed == 0 {
            write!(f, "check passed")
        } else {
            write!(f, "check FAILED: {failed} problem(s)")
        }
    }
}

/// Runs every check against an already validated `config`, probing the
/// backend as `user`.
pub async fn run(config: &Config, user: &str) -> Report {
    let mut report = Report::default();
    report.pass(
        "config",
        format!(
            "node {} ({}), {} peer(s), data_dir {}",
            config.node.id,
            match config.node.role {
                Role::Mail => "mail",
                Role::Witness => "witness",
            },
            config.peers.len(),
            config.node.data_dir.display()
        ),
    );
    check_data_dir(config, &mut report);

    let Some(backend) = config.backend() else {
        report.pass("backend", "a witness has no backend to probe");
        return report;
    };
    if user.is_empty() || user.chars().any(char::is_control) {
        report.fail("user", "the probe user must be a non-empty printable name");
        return report;
    }
    let password = match backend.admin_password() {
        Ok(pw) => pw,
        Err(e) => {
            report.fail("admin", e.to_string());
            return report;
        }
    };

    let started = Instant::now();
    let mut conn = match BackendConn::connect(backend).await {
        Ok(conn) => conn,
        Err(e) => {
            report.fail(
                "connect",
                format!("{e}; is the {} backend running there?", backend.kind),
            );
            return report;
        }
    };
    report.pass(
        "connect",
        format!(
            "{} {} reachable ({:.1} ms)",
            backend.kind,
            backend.address,
            started.elapsed().as_secs_f64() * 1000.0
        ),
    );
    report.pass("greeting", conn.greeting.clone());

    let method = match backend.admin_method {
        crate::config::AdminMethod::Authzid => "AUTHENTICATE PLAIN with authzid",
        crate::config::AdminMethod::MasterLogin => "master-user LOGIN",
    };
    match conn.login_as(backend, &password, user).await {
        Ok(reply) if reply.status == Status::Ok => report.pass(
            "admin",
            format!(
                "admin {:?} acts as user {user:?} ({method})",
                backend.admin_user
            ),
        ),
        Ok(reply) => {
            report.fail(
                "admin",
                format!(
                    "admin {:?} cannot act as user {user:?} ({method}): {:?} {}; check the \
                     admin password, the master user / admin setup, and that the user exists",
                    backend.admin_user, reply.status, reply.text
                ),
            );
            return report;
        }
        Err(e) => {
            report.fail("admin", e.to_string());
            return report;
        }
    }

    match conn.command(b"CAPABILITY").await {
        Ok(reply) if reply.status == Status::Ok => {
            let caps = backend::capabilities(&reply);
            let missing: Vec<&str> = REQUIRED_CAPABILITIES
                .iter()
                .copied()
                .filter(|need| !caps.iter().any(|c| c == need))
                .collect();
            if missing.is_empty() {
                report.pass(
                    "capability",
                    format!("has {}", REQUIRED_CAPABILITIES.join(", ")),
                );
            } else {
                report.fail(
                    "capability",
                    format!(
                        "CAPABILITY after login lacks {} (tandem needs it to learn backend \
                         UIDs); the backend advertised: {}",
                        missing.join(", "),
                        caps.join(" ")
                    ),
                );
                conn.logout().await;
                return report;
            }
        }
        Ok(reply) => {
            report.fail(
                "capability",
                format!("CAPABILITY failed: {:?} {}", reply.status, reply.text),
            );
            return report;
        }
        Err(e) => {
            report.fail("capability", e.to_string());
            return report;
        }
    }

    match conn.command(b"EXAMINE INBOX").await {
        Ok(reply) if reply.status == Status::Ok => {
            let exists = reply
                .untagged
                .iter()
                .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
                .find(|l| l.ends_with(" EXISTS"))
                .unwrap_or_default();
            report.pass(
                "mailbox",
                format!(
                    "INBOX of {user:?} opens ({})",
                    exists.trim_start_matches("* ")
                ),
            );
        }
        Ok(reply) => report.fail(
            "mailbox",
            format!(
                "EXAMINE INBOX as {user:?} failed: {:?} {}",
                reply.status, reply.text
            ),
        ),
        Err(e) => report.fail("mailbox", e.to_string()),
    }
    conn.logout().await;
    report
}

fn check_data_dir(config: &Config, report: &mut Report) {
    let dir = &config.node.data_dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            if m.permissions().readonly() {
                report.fail("data_dir", format!("{} is read-only", dir.display()));
            } else {
                report.pass("data_dir", format!("{} exists", dir.display()));
            }
        }
        Ok(_) => report.fail(
            "data_dir",
            format!("{} exists and is not a directory", dir.display()),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.pass("data_dir", format!("{} will be created", dir.display()))
        }
        Err(e) => report.fail("data_dir", format!("{}: {e}", dir.display())),
    }
}
