//! The backend's response stream on its way to the client: framed by
//! segments (literal data streams through), each line delivered as the
//! session's policy says ([`Session::deliver`] when replicating, the
//! capability filter otherwise), tagged completions followed, and written
//! to a client that may have stopped reading.

use std::time::Duration;

use tandem_parser::frame::Segment;
use tandem_parser::response::{Response, ResponseBody};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{capability, End, Mode, Pending, ResponseStream, Session};

impl Session {
    /// Passes on every complete response line and all literal data in
    /// `bbuf`, filtering single-line responses.
    pub(super) async fn pump_backend<S>(&mut self, client: &mut S) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        // Everything complete in the buffer goes out in as few writes as
        // possible (a FETCH of 1,000 headers is 3,000 segments); at most
        // 64 KiB is held before a write.
        let bbuf = std::mem::take(&mut self.bbuf);
        let mut pos = 0;
        let mut out: Vec<u8> = Vec::new();
        let result = loop {
            let segment = match self.rframer.next_segment(&bbuf[pos..]) {
                Ok(s) => s,
                Err(e) => break Err(End::Protocol(format!("backend: {e}"))),
            };
            match segment {
                Segment::Incomplete => break Ok(()),
                Segment::LiteralData { len, .. } => {
                    if self.stream != ResponseStream::Withholding {
                        out.extend_from_slice(&bbuf[pos..pos + len]);
                    }
                    pos += len;
                }
                Segment::Line { len, literal } => {
                    let line = &bbuf[pos..pos + len];
                    // What the rest of this response does, if a literal
                    // follows.
                    let mut rest = ResponseStream::Passing;
                    if self.stream != ResponseStream::Between {
                        if self.stream == ResponseStream::Passing {
                            out.extend_from_slice(line);
                        }
                        rest = self.stream;
                    } else if self.rep.is_some() {
                        match self.deliver(line, literal.is_some()).await {
                            Some(l) => out.extend_from_slice(&l),
                            None => rest = ResponseStream::Withholding,
                        }
                    } else if literal.is_none() && needs_parsing(line) {
                        self.on_response(line);
                        out.extend_from_slice(&self.filter_single(line));
                    } else {
                        out.extend_from_slice(line);
                    }
                    self.stream = if literal.is_some() {
                        rest
                    } else {
                        ResponseStream::Between
                    };
                    pos += len;
                }
            }
            if out.len() >= 64 * 1024 {
                if let Err(e) = self.write_client(client, &out).await {
                    break Err(e);
                }
                self.bytes_out += out.len() as u64;
                out.clear();
            }
        };
        let mut bbuf = bbuf;
        bbuf.drain(..pos);
        bbuf.extend_from_slice(&self.bbuf);
        self.bbuf = bbuf;
        result?;
        if !out.is_empty() {
            self.write_client(client, &out).await?;
            self.bytes_out += out.len() as u64;
        }
        Ok(())
    }

    /// Writes to a client that may have stopped reading: a write that
    /// makes no progress for the autologout time ends the session, so a
    /// dead reader holds neither a task nor a backend connection forever.
    pub(super) async fn write_client<S>(&self, client: &mut S, bytes: &[u8]) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        let limit = Duration::from_secs(self.config.limits.idle_timeout_secs);
        tokio::time::timeout(limit, client.write_all(bytes))
            .await
            .map_err(|_| End::Protocol("client stopped reading".to_string()))??;
        Ok(())
    }

    /// Tracks tagged completions of the commands in flight.
    pub(super) fn on_response(&mut self, line: &[u8]) {
        let Ok(resp) = Response::parse(line) else {
            return;
        };
        if let ResponseBody::Status {
            tag: Some(tag),
            status,
            ..
        } = resp.body
        {
            let tag = tag.of(line);
            let Some(pos) = self.pending.iter().position(|(t, ..)| t == tag) else {
                return;
            };
            let Some((_, kind, label, _)) = self.pending.remove(pos) else {
                return;
            };
            crate::metrics::count_command(label, status_label(status));
            match kind {
                Pending::Login | Pending::Authenticate => {
                    if self.mode == Mode::Authenticating {
                        self.mode = Mode::Commands;
                    }
                    if status == tandem_parser::response::Status::Ok {
                        self.user = self.candidate_user.take();
                    } else {
                        self.candidate_user = None;
                    }
                }
                Pending::Logout => self.logging_out = true,
                Pending::Select if status != tandem_parser::response::Status::Ok => {
                    self.selected = None;
                    self.view.reset();
                }
                Pending::Select | Pending::UidSearch { .. } | Pending::Other => {
                    if matches!(self.mode, Mode::Idling { .. }) {
                        self.mode = Mode::Commands;
                    }
                }
            }
        }
    }

    /// A single-line response with filtered capabilities and tandem's
    /// own (STARTTLS, LOGINDISABLED, APPENDLIMIT); anything else unchanged.
    pub(super) fn filter_single(&self, line: &[u8]) -> Vec<u8> {
        capability::filter(
            line,
            capability::Added {
                starttls: self.tls.is_some() && !self.secure,
                login_disabled: self.front().login_disabled(),
                append_limit: self.config.limits.max_literal_bytes,
            },
        )
    }
}

/// The metric label of a tagged status.
pub(super) fn status_label(status: tandem_parser::response::Status) -> &'static str {
    match status {
        tandem_parser::response::Status::Ok => "ok",
        tandem_parser::response::Status::No => "no",
        _ => "bad",
    }
}

/// Whether a single-line response can matter to the session: a tagged
/// status (commands in flight) or anything carrying CAPABILITY. Most
/// untagged lines (EXISTS, FLAGS, `OK [UIDNEXT ...]`) pass unparsed.
pub(super) fn needs_parsing(line: &[u8]) -> bool {
    if !line.starts_with(b"* ") && !line.starts_with(b"+") {
        return true;
    }
    line.windows(10)
        .any(|w| w.eq_ignore_ascii_case(b"CAPABILITY"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tagged_and_capability_lines_are_parsed() {
        assert!(needs_parsing(b"a1 OK done\r\n"));
        assert!(needs_parsing(b"* OK [CAPABILITY IMAP4rev1] hi\r\n"));
        assert!(needs_parsing(b"* capability IMAP4rev1\r\n"));
        assert!(!needs_parsing(b"* 3 EXISTS\r\n"));
        assert!(!needs_parsing(b"* OK [UIDNEXT 4] next\r\n"));
    }
}
