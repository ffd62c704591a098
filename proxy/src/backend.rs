//! A small IMAP client for tandem's own conversations with its backend:
//! `tandem check` today, the admin sessions that apply log entries later.
//!
//! It frames responses with the parser's `ResponseFramer` (literals
//! included) and never holds more than 16 MiB of one response in memory. It is not the client-facing
//! proxy path: that forwards bytes as they come.

use std::time::Duration;

use base64::Engine as _;
use tandem_parser::encode;
use tandem_parser::frame::{FrameError, Limits, ResponseFramer, ResponseProgress};
use tandem_parser::reply::Reply as TaggedReply;
pub use tandem_parser::response::Status;
use tandem_parser::response::{Code, Response, ResponseBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::{AdminMethod, BackendConfig};
use crate::secret::Secret;
use crate::tls::Stream;

/// What went wrong talking to the backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No TCP connection could be made.
    #[error("cannot connect to backend {address}: {source}")]
    Connect {
        /// The configured address.
        address: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The backend's TLS settings could not be loaded.
    #[error("backend TLS setup: {0}")]
    Tls(String),
    /// The backend did not answer in time.
    #[error("backend {address} did not answer within {timeout:?} ({during})")]
    Timeout {
        /// The configured address.
        address: String,
        /// The limit that was hit.
        timeout: Duration,
        /// What tandem was waiting for.
        during: &'static str,
    },
    /// The connection failed or closed mid-conversation.
    #[error("backend connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The backend closed the connection.
    #[error("backend closed the connection ({during})")]
    Closed {
        /// What tandem was waiting for.
        during: &'static str,
    },
    /// The greeting was not `* OK` (or `* PREAUTH`).
    #[error("unexpected greeting from backend: {0:?}")]
    Greeting(String),
    /// A response line or literal exceeded the limit.
    #[error("backend response exceeds {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
    /// A response that is not IMAP.
    #[error("malformed response from backend: {0:?}")]
    Malformed(String),
}

/// The end of one command: the untagged responses that came with it and the
/// tagged status line, parsed.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Untagged responses (`* ...`), each with its literals inline.
    pub untagged: Vec<Vec<u8>>,
    /// `OK`, `NO` or `BAD` (the tagged line's, for its many readers).
    pub status: Status,
    /// The tagged line after the status word, e.g. `[APPENDUID 1 2] done`,
    /// as text for messages and logs; decisions read [`Reply::tagged`].
    pub text: String,
    /// The tagged line: its code (APPENDUID, COPYUID, NONEXISTENT...).
    pub tagged: TaggedReply,
}

impl Reply {
    /// A reply made of `untagged` and the tagged line `tagged`.
    pub fn new(untagged: Vec<Vec<u8>>, tagged: TaggedReply) -> Reply {
        Reply {
            untagged,
            status: tagged.status(),
            text: String::from_utf8_lossy(tagged.resp_text())
                .trim_end()
                .to_string(),
            tagged,
        }
    }
}

/// Largest response tandem's own backend sessions accept.
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// One IMAP connection to the backend.
#[derive(Debug)]
pub struct BackendConn {
    stream: Stream,
    /// Bytes read but not yet framed.
    buf: Vec<u8>,
    framer: ResponseFramer,
    address: String,
    timeout: Duration,
    next_tag: u32,
    /// The greeting line, as received (without CRLF).
    pub greeting: String,
    /// Whether the greeting's `[CAPABILITY ...]` offers SASL-IR.
    sasl_ir: bool,
}

impl BackendConn {
    /// Connects and reads the greeting.
    pub async fn connect(cfg: &BackendConfig) -> Result<BackendConn, BackendError> {
        let address = cfg.address.clone();
        let tls = crate::tls::backend_tls(cfg).map_err(|e| BackendError::Tls(e.to_string()))?;
        let stream = match crate::tls::connect_backend(cfg, tls.as_ref()).await {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(BackendError::Timeout {
                    address,
                    timeout: cfg.connect_timeout(),
                    during: "connect",
                })
            }
            Err(source) => return Err(BackendError::Connect { address, source }),
        };
        let mut conn = BackendConn {
            stream,
            buf: Vec::new(),
            framer: ResponseFramer::new(Limits {
                max_message: MAX_RESPONSE_BYTES,
                ..Limits::responses()
            }),
            address,
            timeout: cfg.command_timeout(),
            next_tag: 1,
            greeting: String::new(),
            sasl_ir: false,
        };
        let line = conn.read_response("greeting").await?;
        let greeting = String::from_utf8_lossy(&line).trim_end().to_string();
        let welcome = TaggedReply::parse(&line)
            .ok()
            .filter(|r| r.tag().is_none() && matches!(r.status(), Status::Ok | Status::PreAuth));
        let Some(welcome) = welcome else {
            return Err(BackendError::Greeting(greeting));
        };
        if let Some(Code::Capability(names)) = welcome.code() {
            conn.sasl_ir = names
                .iter()
                .any(|n| n.of(welcome.line()).eq_ignore_ascii_case(b"SASL-IR"));
        }
        conn.greeting = greeting;
        Ok(conn)
    }

    /// Authenticates as `user` with the admin's credentials, by the
    /// configured method. The password goes only onto the socket.
    pub async fn login_as(
        &mut self,
        cfg: &BackendConfig,
        password: &Secret<String>,
        user: &str,
    ) -> Result<Reply, BackendError> {
        match cfg.admin_method {
            AdminMethod::Authzid => {
                let mut sasl = Vec::new();
                sasl.extend_from_slice(user.as_bytes());
                sasl.push(0);
                sasl.extend_from_slice(cfg.admin_user.as_bytes());
                sasl.push(0);
                sasl.extend_from_slice(password.expose().as_bytes());
                let b64 = Secret::new(base64::engine::general_purpose::STANDARD.encode(&sasl));
                self.authenticate_plain(&b64).await
            }
            AdminMethod::MasterLogin => {
                let login = format!("{user}{}{}", cfg.master_separator, cfg.admin_user);
                let mut cmd = b"LOGIN ".to_vec();
                encode::astring(&mut cmd, login.as_bytes());
                cmd.push(b' ');
                encode::astring(&mut cmd, password.expose().as_bytes());
                let cmd = Secret::new(cmd);
                self.command(cmd.expose()).await
            }
        }
    }

    async fn authenticate_plain(&mut self, b64: &Secret<String>) -> Result<Reply, BackendError> {
        // SASL-IR (RFC 4959) when the greeting offers it, else a
        // continuation round trip.
        let tag = self.tag();
        if self.sasl_ir {
            let line = format!("{tag} AUTHENTICATE PLAIN {}\r\n", b64.expose());
            self.write(line.as_bytes()).await?;
        } else {
            self.write(format!("{tag} AUTHENTICATE PLAIN\r\n").as_bytes())
                .await?;
            let cont = self.read_response("AUTHENTICATE continuation").await?;
            if !cont.starts_with(b"+") {
                return self.finish(tag, Some(cont)).await;
            }
            self.write(format!("{}\r\n", b64.expose()).as_bytes())
                .await?;
        }
        self.finish(tag, None).await
    }

    /// Sends `cmd` (without tag and CRLF) and reads until its tagged reply.
    pub async fn command(&mut self, cmd: &[u8]) -> Result<Reply, BackendError> {
        let tag = self.tag();
        let mut line = Vec::with_capacity(cmd.len() + tag.len() + 3);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(cmd);
        line.extend_from_slice(b"\r\n");
        self.write(&line).await?;
        self.finish(tag, None).await
    }

    /// Sends LOGOUT and waits for the reply; errors are ignored because the
    /// session is over either way.
    pub async fn logout(mut self) {
        let _ = self.command(b"LOGOUT").await;
    }

    fn tag(&mut self) -> String {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), BackendError> {
        let timeout = self.timeout;
        let fut = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(BackendError::Timeout {
                address: self.address.clone(),
                timeout,
                during: "write",
            }),
            Ok(r) => Ok(r?),
        }
    }

    async fn finish(&mut self, tag: String, first: Option<Vec<u8>>) -> Result<Reply, BackendError> {
        let mut untagged = Vec::new();
        let mut pending = first;
        loop {
            let resp = match pending.take() {
                Some(r) => r,
                None => self.read_response("command reply").await?,
            };
            if resp.starts_with(b"* ") || resp.starts_with(b"+") {
                untagged.push(resp);
                continue;
            }
            return match TaggedReply::parse(&resp) {
                Ok(tagged) if tagged.tag() == Some(tag.as_bytes()) => {
                    Ok(Reply::new(untagged, tagged))
                }
                _ => Err(BackendError::Malformed(
                    String::from_utf8_lossy(&resp).trim_end().to_string(),
                )),
            };
        }
    }

    /// Reads one response: a line, and when it ends in a literal announcement
    /// `{n}`, the literal and the rest of the line, repeatedly.
    async fn read_response(&mut self, during: &'static str) -> Result<Vec<u8>, BackendError> {
        let timeout = self.timeout;
        let address = self.address.clone();
        match tokio::time::timeout(timeout, self.read_response_inner(during)).await {
            Err(_) => Err(BackendError::Timeout {
                address,
                timeout,
                during,
            }),
            Ok(r) => r,
        }
    }

    async fn read_response_inner(&mut self, during: &'static str) -> Result<Vec<u8>, BackendError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.framer.next(&self.buf) {
                Ok(ResponseProgress::Complete { len }) => {
                    return Ok(self.buf.drain(..len).collect());
                }
                Ok(ResponseProgress::Incomplete) => {}
                Err(FrameError::LiteralTooBig { .. } | FrameError::MessageTooBig { .. }) => {
                    return Err(BackendError::TooLong {
                        limit: MAX_RESPONSE_BYTES as usize,
                    })
                }
                Err(e) => return Err(BackendError::Malformed(e.to_string())),
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(BackendError::Closed { during });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The capabilities named in a `* CAPABILITY ...` response or a
/// `[CAPABILITY ...]` code, upper-cased.
pub fn capabilities(reply: &Reply) -> Vec<String> {
    let mut caps = Vec::new();
    let mut add = |names: &[tandem_parser::lexer::Span], line: &[u8]| {
        caps.extend(
            names
                .iter()
                .map(|n| String::from_utf8_lossy(n.of(line)).to_ascii_uppercase()),
        );
    };
    for line in &reply.untagged {
        let Ok(resp) = Response::parse(line) else {
            continue;
        };
        match (&resp.body, resp.code()) {
            (ResponseBody::Capability(names), _) => add(names, line),
            (_, Some(Code::Capability(names))) => add(names, line),
            _ => {}
        }
    }
    if let Some(Code::Capability(names)) = reply.tagged.code() {
        add(names, reply.tagged.line());
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_come_from_untagged_and_code() {
        let tagged = TaggedReply::parse(b"t1 OK [CAPABILITY IMAP4rev1 MOVE] Logged in\r\n");
        let reply = Reply::new(
            vec![b"* CAPABILITY IMAP4rev1 uidplus\r\n".to_vec()],
            tagged.unwrap(),
        );
        assert_eq!(reply.status, Status::Ok);
        assert_eq!(reply.text, "[CAPABILITY IMAP4rev1 MOVE] Logged in");
        let caps = capabilities(&reply);
        assert!(caps.contains(&"UIDPLUS".to_string()));
        assert!(caps.contains(&"MOVE".to_string()));
    }
}
