//! `tandem check`: validate a config and probe the backend the way tandem
//! will use it, so an operator learns what is wrong before starting a node.
//!
//! The probe: TCP connect, IMAP greeting, the admin authenticates as a named
//! user (by the configured method), CAPABILITY after login has what the
//! applier uses (UIDPLUS, LITERAL+, MOVE), the user's namespace, the user's
//! INBOX can be examined, and (unless `--no-write`) a probe message comes
//! back byte for byte from a scratch mailbox that is deleted afterwards:
//! Cyrus's default `munge8bit: yes` rewrites 8-bit header bytes, which
//! would make its copy of a message differ from the other nodes'. Each step
//! is reported; the first failed step ends the probe because later ones
//! depend on it.

use std::fmt;
use std::time::Instant;

use tandem_parser::response::Response;

use crate::backend::{self, BackendConn, Status};
use crate::config::{BackendConfig, Config, Role};
use crate::secret::Secret;

/// Capabilities tandem cannot work without: UIDPLUS to learn backend UIDs,
/// LITERAL+ for the applier's `{n+}` literals, MOVE for `UID MOVE`.
pub const REQUIRED_CAPABILITIES: &[&str] = &["IMAP4REV1", "UIDPLUS", "LITERAL+", "MOVE"];

/// What the storage probe appends: 8-bit header and body bytes, a bare CR
/// and a long line, which a backend that rewrites messages would change.
const PROBE_MESSAGE: &str = "From: tandem check <check@localhost>\r\n\
    Subject: tandem check caf\u{e9} \u{2713}\r\n\
    X-Tandem-Check: bare\rCR\r\n\
    \r\n\
    caf\u{e9} \u{2713}\r\n";

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
/// backend as `user`; with `write`, the storage probe too.
pub async fn run(config: &Config, user: &str, write: bool) -> Report {
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

    if !admin(&mut conn, backend, &password, user, &mut report).await {
        return report;
    }
    if !capabilities(&mut conn, &mut report).await {
        conn.logout().await;
        return report;
    }
    let Some(personal_prefix) = namespace(&mut conn, &mut report).await else {
        return report;
    };
    inbox(&mut conn, user, &mut report).await;
    if write && report.passed() {
        match storage_probe(&mut conn, &personal_prefix).await {
            Ok(()) => report.pass(
                "storage",
                "a probe message (8-bit headers, a bare CR) came back byte for byte",
            ),
            Err(e) => report.fail("storage", e),
        }
    }
    conn.logout().await;
    report
}

/// The admin acts as `user`; `false` when it cannot.
async fn admin(
    conn: &mut BackendConn,
    backend: &BackendConfig,
    password: &Secret<String>,
    user: &str,
    report: &mut Report,
) -> bool {
    let method = match backend.admin_method {
        crate::config::AdminMethod::Authzid => "AUTHENTICATE PLAIN with authzid",
        crate::config::AdminMethod::MasterLogin => "master-user LOGIN",
    };
    match conn.login_as(backend, password, user).await {
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
            return false;
        }
        Err(e) => {
            report.fail("admin", e.to_string());
            return false;
        }
    }
    true
}

/// The capabilities the applier needs; `false` when one is missing.
async fn capabilities(conn: &mut BackendConn, report: &mut Report) -> bool {
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
                        "CAPABILITY after login lacks {} (tandem's applier needs UIDPLUS to \
                         learn backend UIDs, LITERAL+ and MOVE to apply); the backend \
                         advertised: {}",
                        missing.join(", "),
                        caps.join(" ")
                    ),
                );
                return false;
            }
        }
        Ok(reply) => {
            report.fail(
                "capability",
                format!("CAPABILITY failed: {:?} {}", reply.status, reply.text),
            );
            return false;
        }
        Err(e) => {
            report.fail("capability", e.to_string());
            return false;
        }
    }
    true
}

/// The personal namespace's prefix; `None` when there is none.
async fn namespace(conn: &mut BackendConn, report: &mut Report) -> Option<String> {
    match conn.command(b"NAMESPACE").await {
        Ok(reply) if reply.status == Status::Ok => match personal_namespace(&reply.untagged) {
            Some((prefix, sep)) => {
                report.pass(
                    "namespace",
                    format!(
                        "personal prefix {prefix:?}, separator {sep:?} (every node of a \
                             cluster must show the same)"
                    ),
                );
                Some(prefix)
            }
            None => {
                let lines: Vec<_> = reply
                    .untagged
                    .iter()
                    .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
                    .collect();
                report.fail(
                    "namespace",
                    format!("NAMESPACE gave no personal namespace: {lines:?}"),
                );
                None
            }
        },
        Ok(reply) => {
            report.fail(
                "namespace",
                format!("NAMESPACE failed: {:?} {}", reply.status, reply.text),
            );
            None
        }
        Err(e) => {
            report.fail("namespace", e.to_string());
            None
        }
    }
}

/// The user's INBOX opens.
async fn inbox(conn: &mut BackendConn, user: &str, report: &mut Report) {
    match conn.command(b"EXAMINE INBOX").await {
        Ok(reply) if reply.status == Status::Ok => {
            let exists = reply
                .untagged
                .iter()
                .find_map(|l| Response::parse(l).ok()?.exists())
                .map_or_else(String::new, |n| format!("{n} EXISTS"));
            report.pass("mailbox", format!("INBOX of {user:?} opens ({exists})"));
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
}

/// The personal namespace's prefix and separator (`NIL` when there is
/// none) from the `* NAMESPACE (("prefix" "sep") ...) ...` response among
/// `untagged`.
fn personal_namespace(untagged: &[Vec<u8>]) -> Option<(String, String)> {
    untagged.iter().find_map(|line| {
        let resp = Response::parse(line).ok()?;
        let ns = resp.personal_namespace()?;
        let sep = ns.delimiter.map_or("NIL".to_string(), |s| {
            String::from_utf8_lossy(&s).into_owned()
        });
        Some((String::from_utf8_lossy(&ns.prefix).into_owned(), sep))
    })
}

/// Appends [`PROBE_MESSAGE`] to a new scratch mailbox under the personal
/// namespace's `prefix`, reads it back, compares, and deletes the mailbox
/// whatever happened.
async fn storage_probe(conn: &mut BackendConn, prefix: &str) -> Result<(), String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("{prefix}tandem-check-{}-{nanos}", std::process::id());
    let mut quoted = Vec::new();
    tandem_parser::encode::astring(&mut quoted, name.as_bytes());
    let mailbox = String::from_utf8_lossy(&quoted).to_string();
    let r = conn
        .command(format!("CREATE {mailbox}").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    if r.status != Status::Ok {
        return Err(format!(
            "cannot create the scratch mailbox {mailbox}: {:?} {}",
            r.status, r.text
        ));
    }
    let result = probe_in(conn, &mailbox).await;
    let deleted = conn
        .command(format!("DELETE {mailbox}").as_bytes())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| match r.status {
            Status::Ok => Ok(()),
            _ => Err(format!("{:?} {}", r.status, r.text)),
        });
    match (result, deleted) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(format!(
            "the probe passed but the scratch mailbox {mailbox} could not be deleted: {e}"
        )),
        (Ok(()), Ok(())) => Ok(()),
    }
}

async fn probe_in(conn: &mut BackendConn, mailbox: &str) -> Result<(), String> {
    let message = PROBE_MESSAGE.as_bytes();
    let mut cmd = format!("APPEND {mailbox} ").into_bytes();
    tandem_parser::encode::literal(&mut cmd, message);
    let r = conn.command(&cmd).await.map_err(|e| e.to_string())?;
    if r.status != Status::Ok {
        return Err(format!(
            "APPEND of the probe message failed: {:?} {}",
            r.status, r.text
        ));
    }
    let r = conn
        .command(format!("SELECT {mailbox}").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    if r.status != Status::Ok {
        return Err(format!("SELECT {mailbox}: {:?} {}", r.status, r.text));
    }
    let r = conn
        .command(b"FETCH 1 (BODY.PEEK[])")
        .await
        .map_err(|e| e.to_string())?;
    let stored = r.untagged.iter().find_map(|l| fetched_literal(l));
    let r2 = conn.command(b"UNSELECT").await;
    if let Ok(r2) = r2 {
        if r2.status != Status::Ok {
            let _ = conn.command(b"EXAMINE INBOX").await;
        }
    }
    match stored {
        Some(s) if s == message => Ok(()),
        Some(s) => Err(format!(
            "the backend changed a message on the way in (sent {:?}, stored {:?}); every \
             node must store the bytes it is given. On Cyrus, set `munge8bit: no` in \
             imapd.conf (deploy/CYRUS.md)",
            String::from_utf8_lossy(message),
            String::from_utf8_lossy(s)
        )),
        None => Err(format!(
            "FETCH of the probe message gave no body: {:?}",
            r.text
        )),
    }
}

/// The body of a FETCH response (`... BODY[] {n}\r\n<n bytes>)`).
fn fetched_literal(line: &[u8]) -> Option<&[u8]> {
    Response::parse(line).ok()?.first_literal()
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

#[cfg(test)]
mod tests {
    use super::personal_namespace;

    #[test]
    fn the_personal_namespace_is_read_with_or_without_a_separator() {
        let ns = |line: &str| personal_namespace(&[format!("{line}\r\n").into_bytes()]);
        // Cyrus 3.6, then Dovecot 2.3.
        assert_eq!(
            ns(r#"* NAMESPACE (("" ".")) (("Other Users." ".")) (("Shared Folders." "."))"#),
            Some((String::new(), ".".to_string()))
        );
        assert_eq!(
            ns(r#"* NAMESPACE (("" ".")) NIL NIL"#),
            Some((String::new(), ".".to_string()))
        );
        assert_eq!(
            ns(r#"* NAMESPACE (("INBOX." ".")) NIL NIL"#),
            Some(("INBOX.".to_string(), ".".to_string()))
        );
        assert_eq!(
            ns(r#"* NAMESPACE (("" NIL)) NIL NIL"#),
            Some((String::new(), "NIL".to_string()))
        );
        assert_eq!(ns("* NAMESPACE NIL NIL NIL"), None);
        assert_eq!(personal_namespace(&[]), None);
    }
}
