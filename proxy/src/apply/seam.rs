//! The applier's seam to its backend: a session acting as one user that
//! answers one command at a time ([`BackendSession`]), and how such
//! sessions are opened ([`Connect`]). The real ones are [`BackendConn`]
//! and the admin's master-user login ([`AdminLogin`]); unit tests put a
//! scripted backend here, so that the applier's command sequences (in-doubt
//! look-ups after a crash above all) are tested without a server.

use std::future::Future;
use std::pin::Pin;

use super::ApplyError;
use crate::backend::{BackendConn, BackendError, Reply, Status};
use crate::config::BackendConfig;
use crate::secret::Secret;

/// A boxed future, for the seam's object-safe traits.
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend session as the applier uses it.
pub(super) trait BackendSession: Send + std::fmt::Debug {
    /// Sends `cmd` (without tag and CRLF) and reads to its tagged reply.
    fn command<'a>(&'a mut self, cmd: &'a [u8]) -> BoxFuture<'a, Result<Reply, BackendError>>;
}

impl BackendSession for BackendConn {
    fn command<'a>(&'a mut self, cmd: &'a [u8]) -> BoxFuture<'a, Result<Reply, BackendError>> {
        Box::pin(BackendConn::command(self, cmd))
    }
}

/// Opens a backend session acting as `user`.
pub(super) trait Connect: Send + Sync + std::fmt::Debug {
    fn open<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn BackendSession>, ApplyError>>;
}

/// The admin logs in as each user (a master user: Dovecot's `user*admin`,
/// Cyrus's proxy authorization).
#[derive(Debug, Clone)]
pub(super) struct AdminLogin {
    pub(super) backend: BackendConfig,
    pub(super) password: Secret<String>,
}

impl Connect for AdminLogin {
    fn open<'a>(
        &'a self,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn BackendSession>, ApplyError>> {
        Box::pin(async move {
            let mut conn = BackendConn::connect(&self.backend).await?;
            let reply = conn.login_as(&self.backend, &self.password, user).await?;
            if reply.status != Status::Ok {
                return Err(ApplyError::Transient(format!(
                    "admin login as {user} refused: {}",
                    reply.text
                )));
            }
            Ok(Box::new(conn) as Box<dyn BackendSession>)
        })
    }
}
