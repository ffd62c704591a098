//! A small IMAP client for tandem's own conversations with its backend:
//! `tandem check` today, the admin sessions that apply log entries later.
//!
//! It reads whole responses, literals included, and never holds more than
//! `max_response_bytes` of one response in memory. It is not the client-facing
//! proxy path: that forwards bytes as they come.

use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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
/// tagged status line.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Untagged responses (`* ...`), each with its literals inline.
    pub untagged: Vec<Vec<u8>>,
    /// `OK`, `NO` or `BAD`.
    pub status: Status,
    /// The tagged line after the status word, e.g. `[APPENDUID 1 2] done`.
    pub text: String,
}

/// The result of a tagged command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok,
    /// Failure.
    No,
    /// Protocol error.
    Bad,
}

/// One IMAP connection to the backend.
#[derive(Debug)]
pub struct BackendConn {
    stream: BufReader<Stream>,
    address: String,
    timeout: Duration,
    next_tag: u32,
    max_response_bytes: usize,
    /// The greeting line, as received (without CRLF).
    pub greeting: String,
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
            stream: BufReader::new(stream),
            address,
            timeout: cfg.command_timeout(),
            next_tag: 1,
            max_response_bytes: 16 * 1024 * 1024,
            greeting: String::new(),
        };
        let line = conn.read_response("greeting").await?;
        let greeting = String::from_utf8_lossy(&line).trim_end().to_string();
        if !(greeting.starts_with("* OK") || greeting.starts_with("* PREAUTH")) {
            return Err(BackendError::Greeting(greeting));
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
                let cmd = format!("LOGIN {} {}", astring(&login), astring(password.expose()));
                self.command(cmd.as_bytes()).await
            }
        }
    }

    async fn authenticate_plain(&mut self, b64: &Secret<String>) -> Result<Reply, BackendError> {
        // SASL-IR (RFC 4959) when the greeting offers it, else a
        // continuation round trip.
        let tag = self.tag();
        if self.greeting.to_ascii_uppercase().contains("SASL-IR") {
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

    /// Sends an APPEND of `message` to `mailbox` with a synchronizing
    /// literal, waiting for the continuation as RFC 9051 requires.
    pub async fn append(
        &mut self,
        mailbox: &str,
        flags: &str,
        message: &[u8],
    ) -> Result<Reply, BackendError> {
        let tag = self.tag();
        let head = format!(
            "{tag} APPEND {} ({flags}) {{{}}}\r\n",
            astring(mailbox),
            message.len()
        );
        self.write(head.as_bytes()).await?;
        let cont = self.read_response("APPEND continuation").await?;
        if !cont.starts_with(b"+") {
            return self.finish(tag, Some(cont)).await;
        }
        self.write(message).await?;
        self.write(b"\r\n").await?;
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
            self.stream.get_mut().write_all(bytes).await?;
            self.stream.get_mut().flush().await
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
            let text = String::from_utf8_lossy(&resp).trim_end().to_string();
            let Some(rest) = text
                .strip_prefix(tag.as_str())
                .and_then(|r| r.strip_prefix(' '))
            else {
                return Err(BackendError::Malformed(text));
            };
            let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let status = match word.to_ascii_uppercase().as_str() {
                "OK" => Status::Ok,
                "NO" => Status::No,
                "BAD" => Status::Bad,
                _ => return Err(BackendError::Malformed(rest.to_string())),
            };
            return Ok(Reply {
                untagged,
                status,
                text: text.to_string(),
            });
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
        let limit = self.max_response_bytes;
        let mut out = Vec::new();
        loop {
            let start = out.len();
            let n = (&mut self.stream)
                .take((limit - start) as u64 + 1)
                .read_until(b'\n', &mut out)
                .await?;
            if n == 0 {
                return Err(BackendError::Closed { during });
            }
            if out.len() > limit {
                return Err(BackendError::TooLong { limit });
            }
            if !out.ends_with(b"\n") {
                return Err(BackendError::Closed { during });
            }
            match literal_length(&out[start..]) {
                None => return Ok(out),
                Some(len) => {
                    if out.len() + len > limit {
                        return Err(BackendError::TooLong { limit });
                    }
                    let at = out.len();
                    out.resize(at + len, 0);
                    self.stream.read_exact(&mut out[at..]).await?;
                }
            }
        }
    }
}

/// The length of the literal announced at the end of `line` (`{n}\r\n`).
fn literal_length(line: &[u8]) -> Option<usize> {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `s` as an IMAP astring: quoted, with `"` and `\` escaped. Callers pass
/// only strings without CR, LF or NUL (config validation ensures this).
pub fn astring(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The capabilities named in a `* CAPABILITY ...` response or a
/// `[CAPABILITY ...]` code, upper-cased.
pub fn capabilities(reply: &Reply) -> Vec<String> {
    let mut caps = Vec::new();
    for line in &reply.untagged {
        let text = String::from_utf8_lossy(line);
        if let Some(rest) = strip_prefix_ci(text.trim_end(), "* CAPABILITY ") {
            caps.extend(rest.split_ascii_whitespace().map(str::to_ascii_uppercase));
        }
    }
    if let Some(code) = strip_prefix_ci(&reply.text, "[CAPABILITY ") {
        if let Some((list, _)) = code.split_once(']') {
            caps.extend(list.split_ascii_whitespace().map(str::to_ascii_uppercase));
        }
    }
    caps
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_length_reads_sync_and_nonsync_announcements() {
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] {12}\r\n"), Some(12));
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] {3+}\r\n"), Some(3));
        assert_eq!(literal_length(b"* OK done\r\n"), None);
        assert_eq!(literal_length(b"* OK {}\r\n"), None);
        assert_eq!(literal_length(b"* OK {99999999999}\r\n"), None);
    }

    #[test]
    fn astring_escapes_quotes_and_backslashes() {
        assert_eq!(astring(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn capabilities_come_from_untagged_and_code() {
        let reply = Reply {
            untagged: vec![b"* CAPABILITY IMAP4rev1 uidplus\r\n".to_vec()],
            status: Status::Ok,
            text: "[CAPABILITY IMAP4rev1 MOVE] Logged in".to_string(),
        };
        let caps = capabilities(&reply);
        assert!(caps.contains(&"UIDPLUS".to_string()));
        assert!(caps.contains(&"MOVE".to_string()));
    }
}
