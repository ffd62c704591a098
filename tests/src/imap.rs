//! A small blocking IMAP client for tests: send a tagged command, collect
//! the untagged responses (literals included) and the tagged status.
//!
//! It is deliberately independent of tandem's own code, so that a bug in
//! tandem's IMAP handling cannot hide in the tests that check it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine as _;

/// The tagged status of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`
    Ok,
    /// `NO`
    No,
    /// `BAD`
    Bad,
}

/// Everything a server sent in answer to one command.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Untagged responses and continuation requests, each with its literals.
    pub untagged: Vec<Vec<u8>>,
    /// The tagged status.
    pub status: Status,
    /// The rest of the tagged line (response code and text), without CRLF.
    pub text: String,
}

impl Reply {
    /// Panics with the whole reply unless the status is OK.
    #[track_caller]
    pub fn ok(self) -> Reply {
        assert_eq!(self.status, Status::Ok, "expected OK, got {self:?}");
        self
    }

    /// The untagged responses as lossy text lines.
    pub fn lines(&self) -> Vec<String> {
        self.untagged
            .iter()
            .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
            .collect()
    }

    /// The number in `* n EXISTS`, if the reply has one (the last one).
    pub fn exists(&self) -> Option<u32> {
        self.lines().iter().rev().find_map(|l| {
            let rest = l.strip_prefix("* ")?;
            let (n, word) = rest.split_once(' ')?;
            word.eq_ignore_ascii_case("EXISTS")
                .then(|| n.parse().ok())
                .flatten()
        })
    }

    /// The words inside the response code `[NAME a b c]` of the tagged line.
    pub fn code(&self, name: &str) -> Option<Vec<String>> {
        let inner = self.text.strip_prefix('[')?.split_once(']')?.0;
        let mut words = inner.split_ascii_whitespace();
        let first = words.next()?;
        first
            .eq_ignore_ascii_case(name)
            .then(|| words.map(str::to_string).collect())
    }
}

/// A connected client.
#[derive(Debug)]
pub struct ImapClient {
    reader: BufReader<TcpStream>,
    next_tag: u32,
    /// The server's greeting line.
    pub greeting: String,
}

impl ImapClient {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> io::Result<ImapClient> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        let mut client = ImapClient {
            reader: BufReader::new(stream),
            next_tag: 1,
            greeting: String::new(),
        };
        let greeting = client.read_response()?;
        client.greeting = String::from_utf8_lossy(&greeting).trim_end().to_string();
        Ok(client)
    }

    /// Connects, logs in with LOGIN and panics unless it worked.
    #[track_caller]
    pub fn login(addr: SocketAddr, user: &str, password: &str) -> ImapClient {
        let mut c = ImapClient::connect(addr).expect("connect");
        c.command(&format!("LOGIN {} {}", quote(user), quote(password)))
            .expect("LOGIN")
            .ok();
        c
    }

    /// `AUTHENTICATE PLAIN` with an initial response (RFC 4959):
    /// authorization id, authentication id, password.
    pub fn authenticate_plain(
        &mut self,
        authzid: &str,
        authcid: &str,
        password: &str,
    ) -> io::Result<Reply> {
        let payload = format!("{authzid}\0{authcid}\0{password}");
        let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
        self.command(&format!("AUTHENTICATE PLAIN {b64}"))
    }

    /// Sends one command (no tag, no CRLF) and reads its reply.
    pub fn command(&mut self, cmd: &str) -> io::Result<Reply> {
        let tag = self.tag();
        self.write(format!("{tag} {cmd}\r\n").as_bytes())?;
        self.finish(&tag)
    }

    /// APPENDs `message` to `mailbox` with a synchronizing literal.
    pub fn append(&mut self, mailbox: &str, message: &[u8]) -> io::Result<Reply> {
        let tag = self.tag();
        self.write(
            format!("{tag} APPEND {} {{{}}}\r\n", quote(mailbox), message.len()).as_bytes(),
        )?;
        let cont = self.read_response()?;
        if !cont.starts_with(b"+") {
            return Err(io::Error::other(format!(
                "APPEND not continued: {}",
                String::from_utf8_lossy(&cont)
            )));
        }
        self.write(message)?;
        self.write(b"\r\n")?;
        self.finish(&tag)
    }

    /// Sends raw bytes.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = self.reader.get_mut();
        s.write_all(bytes)?;
        s.flush()
    }

    /// Reads until the tagged response for `tag`.
    pub fn finish(&mut self, tag: &str) -> io::Result<Reply> {
        let mut untagged = Vec::new();
        loop {
            let resp = self.read_response()?;
            if resp.starts_with(b"* ") || resp.starts_with(b"+") {
                untagged.push(resp);
                continue;
            }
            let line = String::from_utf8_lossy(&resp).trim_end().to_string();
            let rest = line
                .strip_prefix(tag)
                .and_then(|r| r.strip_prefix(' '))
                .ok_or_else(|| io::Error::other(format!("unexpected line {line:?}")))?;
            let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let status = match word.to_ascii_uppercase().as_str() {
                "OK" => Status::Ok,
                "NO" => Status::No,
                "BAD" => Status::Bad,
                _ => return Err(io::Error::other(format!("bad status in {line:?}"))),
            };
            return Ok(Reply {
                untagged,
                status,
                text: text.to_string(),
            });
        }
    }

    /// Reads one response line with any literals it announces.
    pub fn read_response(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            if self.reader.read_until(b'\n', &mut out)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let Some(len) = announced_literal(&out[start..]) else {
                return Ok(out);
            };
            let at = out.len();
            out.resize(at + len, 0);
            self.reader.read_exact(&mut out[at..])?;
        }
    }

    /// Sets how long a read may wait (the default is 30 s).
    pub fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(timeout))
    }

    /// Waits up to `timeout` for a response to start arriving and then
    /// reads it whole (with its literals); `None` if nothing came. For
    /// responses a server sends unprompted, as during IDLE.
    pub fn poll_response(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        if self.reader.buffer().is_empty() {
            let old = self.reader.get_ref().read_timeout()?;
            self.reader
                .get_ref()
                .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
            let filled = self.reader.fill_buf().map(|b| b.len());
            self.reader.get_ref().set_read_timeout(old)?;
            match filled {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
        self.read_response().map(Some)
    }

    fn tag(&mut self) -> String {
        let tag = format!("A{:03}", self.next_tag);
        self.next_tag += 1;
        tag
    }
}

fn announced_literal(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `s` as a quoted IMAP string.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
