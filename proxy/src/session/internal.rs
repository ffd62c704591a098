//! The session's own commands on its backend connection (`tandemN` tags):
//! draining what is in flight, one internal command and what it answers
//! ([`Keep`]), the untagged lines held for the client meanwhile
//! ([`Session::held`]) and the lines the session writes itself.

use std::time::Duration;

use tandem_parser::command::{Command, SetArg};
use tandem_parser::frame::{Limits, ResponseFramer, ResponseProgress};
use tandem_parser::reply::{self, Reply};
use tandem_parser::response::{Response, ResponseBody};
use tandem_parser::seqset::Ranges;
use tandem_parser::uidmap::{map_ranges, UidMap};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::plan::SetError;
use super::{End, Session};
use crate::tls::Stream;

impl Session {
    /// Waits until every command in flight has its tagged response.
    pub(super) async fn drain<S>(&mut self, client: &mut S, backend: &mut Stream) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        let timeout = self.command_timeout();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            self.pump_backend(client).await?;
            if self.pending.is_empty() {
                return Ok(());
            }
            self.read_backend(backend, &mut chunk, timeout).await?;
        }
    }

    /// Reads what the backend sent next into `bbuf`, within `timeout`.
    async fn read_backend(
        &mut self,
        backend: &mut Stream,
        chunk: &mut [u8],
        timeout: Duration,
    ) -> Result<(), End> {
        let n = tokio::time::timeout(timeout, backend.read(chunk))
            .await
            .map_err(|_| End::Protocol("backend did not answer in time".to_string()))??;
        if n == 0 {
            return Err(End::BackendClosed);
        }
        self.bbuf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn command_timeout(&self) -> Duration {
        self.config
            .backend()
            .map_or(Duration::from_secs(30), |b| b.command_timeout())
    }

    /// Sends one of the session's own commands on its backend connection
    /// (after [`Session::drain`]) and reads to its tagged response. The
    /// untagged responses that are its answer (`keep`) are returned; every
    /// other one is held for the client ([`Session::held`]), who gets it
    /// through [`Session::deliver`] before the tagged line, so that no
    /// EXISTS, EXPUNGE or flag change the backend reports is lost.
    pub(super) async fn internal(
        &mut self,
        backend: &mut Stream,
        cmd: &[u8],
        keep: Keep,
    ) -> Result<(bool, String, Vec<Vec<u8>>), End> {
        self.internal += 1;
        let tag = format!("tandem{}", self.internal);
        let mut line = Vec::with_capacity(cmd.len() + 16);
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(cmd);
        line.extend_from_slice(b"\r\n");
        backend.write_all(&line).await?;
        let mut framer = ResponseFramer::new(Limits::responses());
        let mut untagged = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let timeout = self.command_timeout();
        loop {
            match framer.next(&self.bbuf) {
                Ok(ResponseProgress::Complete { len }) => {
                    let resp: Vec<u8> = self.bbuf.drain(..len).collect();
                    if reply::tag(&resp) == Some(tag.as_bytes()) {
                        // A tagged line whose status does not read is a
                        // failure, never taken for an untagged response.
                        let parsed = Reply::parse(&resp);
                        let ok = parsed.as_ref().is_ok_and(Reply::is_ok);
                        let text = parsed
                            .as_ref()
                            .map_or(&resp[tag.len() + 1..], |r| r.resp_text());
                        let text = String::from_utf8_lossy(text).trim_end().to_string();
                        return Ok((ok, text, untagged));
                    }
                    if keep.keeps(&resp) {
                        untagged.push(resp);
                    } else {
                        // Passed on with the command's answer, as one sync.
                        self.held.push(resp);
                    }
                    continue;
                }
                Ok(ResponseProgress::Incomplete) => {}
                Err(e) => return Err(End::Protocol(format!("backend: {e}"))),
            }
            self.read_backend(backend, &mut chunk, timeout).await?;
        }
    }

    /// Sends one untagged backend response to the client as
    /// [`Session::deliver`] says.
    pub(super) async fn relay_untagged<S>(
        &mut self,
        client: &mut S,
        resp: Vec<u8>,
    ) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        if let Some(out) = self.deliver(&resp, false).await {
            self.write_client(client, &out).await?;
            self.bytes_out += out.len() as u64;
        }
        Ok(())
    }

    pub(super) async fn separator(&mut self, backend: &mut Stream) -> Result<Option<char>, End> {
        if let Some(s) = self.separator {
            return Ok(s);
        }
        let (_, _, untagged) = self
            .internal(backend, b"LIST \"\" \"\"", Keep::List)
            .await?;
        let mut sep = None;
        for line in &untagged {
            if let Some(d) = list_delimiter(line) {
                sep = d;
            }
        }
        self.separator = Some(sep);
        Ok(sep)
    }

    /// The canonical UIDs a set argument names in the selected mailbox.
    pub(super) async fn canonical_set(
        &mut self,
        cmd: &Command<'_>,
        set: &SetArg,
        backend: &mut Stream,
    ) -> Result<Result<Ranges, SetError>, End> {
        let SetArg::Set { set, span } = set else {
            return Ok(Err(SetError::Bad(
                "the saved search result ($) is not supported",
            )));
        };
        let Some(maps) = self.maps() else {
            return Ok(Err(SetError::Bad("no mailbox selected")));
        };
        let Some((map, _)) = maps.selected else {
            return Ok(Err(SetError::Bad("no mailbox selected")));
        };
        if cmd.uid {
            let star = map.to_local.max_from().unwrap_or(0);
            return Ok(Ok(set.resolve(star)));
        }
        // Message numbers: the backend session knows which messages they
        // are; ask it for their UIDs with a FETCH, during which it reports
        // no expunge (a UID SEARCH would, and renumber first).
        let Some(numbers) = self.backend_numbers(set, span.of(cmd.buf)) else {
            return Ok(Err(SetError::Bad("no such message")));
        };
        let mut q = b"FETCH ".to_vec();
        q.extend_from_slice(&numbers);
        q.extend_from_slice(b" (UID)");
        let (ok, text, answer) = self.fetch_with_uids(backend, &q).await?;
        if !ok {
            tracing::debug!(reply = %text, "message numbers not resolved");
            return Ok(Err(SetError::Bad("invalid message numbers")));
        }
        let local = fetched_uids(&answer);
        // A message the applier has put into the backend but not yet
        // recorded has no canonical UID: wait for it briefly, or the
        // change would leave it out.
        if !self.wait_mapped(&local).await {
            return Ok(Err(SetError::NotYet));
        }
        // Which message each number is, canonically: one expunged
        // elsewhere that this session still shows is out of the STORE's
        // reach, and its answer says what it would be. That includes one
        // expunged canonically that this node's applier has not removed
        // from the backend yet.
        if let Some(now) = self.maps().and_then(|m| m.selected) {
            let present = now.1.uid_set();
            self.store.numbered = answer
                .iter()
                .filter_map(|l| {
                    let r = Response::parse(l).ok()?;
                    let canonical = now.0.to_canon.map_one(r.fetch_uid()?);
                    let canonical = canonical.filter(|&c| present.contains(c));
                    Some((r.fetch_seq()?, canonical))
                })
                .collect();
        }
        self.store.numbers = Some(numbers);
        let map = self
            .maps()
            .and_then(|m| m.selected)
            .map(|s| s.0)
            .unwrap_or(map);
        Ok(Ok(map_ranges(&local, &map.to_canon)))
    }

    /// Runs one of the session's own FETCHes that asks for UIDs: its
    /// answer is the lines that carry one. What else the backend reported
    /// meanwhile (flag changes, new mail) is held for the client, in
    /// order, so that a STORE's answer has one FETCH per message.
    pub(super) async fn fetch_with_uids(
        &mut self,
        backend: &mut Stream,
        query: &[u8],
    ) -> Result<(bool, String, Vec<Vec<u8>>), End> {
        let (ok, text, untagged) = self.internal(backend, query, Keep::All).await?;
        let (answer, other): (Vec<_>, Vec<_>) = untagged
            .into_iter()
            .partition(|l| Response::parse(l).is_ok_and(|r| r.fetch_uid().is_some()));
        self.held.extend(other);
        Ok((ok, text, answer))
    }

    /// Waits (at most a second) until every UID of `local` in the selected
    /// mailbox has its canonical one (messages expunged since the SELECT
    /// keep theirs); `false` if some still have none.
    async fn wait_mapped(&self, local: &Ranges) -> bool {
        let mut changes = self.rep.as_ref().and_then(|r| r.map_changes());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let Some(map) = self.maps().and_then(|m| m.remembered) else {
                return true;
            };
            if map_ranges(local, &map).len() == local.len() {
                return true;
            }
            tracing::debug!("waiting for the applier to map a message named by number");
            let Some(rx) = changes.as_mut() else {
                return false;
            };
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .map_or(true, |r| r.is_err())
            {
                return false;
            }
        }
    }

    /// The canonical UIDs of the messages marked \Deleted in the selected
    /// mailbox, as this session's backend sees them.
    pub(super) async fn deleted(&mut self, backend: &mut Stream) -> Result<Ranges, End> {
        // The backend searches its connection's view, which may not yet
        // have other sessions' latest flags: bring it up to date first
        // (EXPUNGE may report what that brings).
        self.internal(backend, b"NOOP", Keep::Nothing).await?;
        let (_, _, untagged) = self
            .internal(backend, b"UID SEARCH DELETED", Keep::Search)
            .await?;
        let local = search_result(&untagged);
        // One not mapped yet stays; its EXPUNGE comes with a later one.
        self.wait_mapped(&local).await;
        Ok(match self.maps().and_then(|m| m.selected) {
            Some((map, _)) => map_ranges(&local, &map.to_canon),
            None => Ranges::new(),
        })
    }

    /// Passes on what the backend reported during tandem's own commands
    /// ([`Session::held`]), in order.
    pub(super) async fn flush_held<S>(&mut self, client: &mut S) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        let held = std::mem::take(&mut self.held);
        for line in super::deliver::as_one_sync(held) {
            self.relay_untagged(client, line).await?;
        }
        Ok(())
    }

    /// Writes a line the session makes itself; before a tagged one, what
    /// the backend reported meanwhile ([`Session::flush_held`]).
    pub(super) async fn reply<S>(&mut self, client: &mut S, line: String) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        if !line.starts_with('*') {
            self.flush_held(client).await?;
        }
        // The tagged answer of a command the session answers itself.
        if let Some((tag, label)) = &self.answering {
            if reply::tag(line.as_bytes()) == Some(tag.as_slice()) {
                let status = Reply::parse(line.as_bytes()).map(|r| r.status());
                let result = status.map_or("bad", super::relay::status_label);
                crate::metrics::count_command(label, result);
                self.answering = None;
            }
        }
        self.write_client(client, line.as_bytes()).await?;
        self.bytes_out += line.len() as u64;
        Ok(())
    }
}

/// Which of an internal command's untagged responses are its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// None (NOOP, CLOSE, UNSELECT): everything goes to the client.
    Nothing,
    /// `* LIST`.
    List,
    /// `* SEARCH` and `* ESEARCH`.
    Search,
    /// Every untagged response, in order (the caller passes on what is
    /// not its answer, in that order: numbers depend on it).
    All,
}

impl Keep {
    pub(super) fn keeps(self, resp: &[u8]) -> bool {
        let starts = |p: &[u8]| resp.len() >= p.len() && resp[..p.len()].eq_ignore_ascii_case(p);
        match self {
            Keep::Nothing => false,
            Keep::List => starts(b"* LIST "),
            Keep::Search => starts(b"* SEARCH") || starts(b"* ESEARCH"),
            Keep::All => true,
        }
    }
}

/// The UIDs of `* n FETCH (UID u)` responses.
fn fetched_uids(untagged: &[Vec<u8>]) -> Ranges {
    let mut out = Ranges::new();
    for line in untagged {
        if let Some(u) = Response::parse(line).ok().and_then(|r| r.fetch_uid()) {
            out.insert(u, u);
        }
    }
    out
}

/// The hierarchy delimiter of a `* LIST (flags) "d" name` response:
/// `Some(None)` for NIL.
fn list_delimiter(line: &[u8]) -> Option<Option<char>> {
    let d = Response::parse(line).ok()?.list_delimiter()?;
    Some(d.map(char::from))
}

/// The numbers of `* SEARCH` responses.
fn search_result(untagged: &[Vec<u8>]) -> Ranges {
    let mut out = Ranges::new();
    for line in untagged {
        if let Ok(resp) = Response::parse(line) {
            if let ResponseBody::Search { numbers, .. } = &resp.body {
                for &(n, _) in numbers {
                    out.insert(n, n);
                }
            }
        }
    }
    out
}
