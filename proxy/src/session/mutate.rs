//! The replicated half of a session: mutations go through the log, and UIDs
//! are rewritten between canonical (what clients see) and local (what this
//! node's backend holds).
//!
//! Ordering invariants:
//! - A mutation is handled only once every earlier command of the session
//!   has its tagged response ([`Session::drain`]), so the backend session's
//!   view (sequence numbers, flags) is the one the client knows.
//! - The tagged OK of a mutation, and any UID in it, is written only after
//!   [`Replication::mutate`] returned: committed on a majority, applied to
//!   the canonical state and to this node's backend.
//! - The untagged responses a client expects after a mutation (EXISTS,
//!   EXPUNGE, FETCH FLAGS) come from the session's own backend connection
//!   (NOOP or UID FETCH after the apply), rewritten like any response.
//! - A backend UID without a canonical mapping never reaches the client: the
//!   response carrying it waits briefly for the applier, then is dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tandem_parser::command::{Command, CommandBody, SetArg};
use tandem_parser::frame::{Limits, ResponseFramer, ResponseProgress};
use tandem_parser::reply::{self, Reply};
use tandem_parser::response::{Response, ResponseBody};
use tandem_parser::rewrite::{return_with_all, rewrite_response, Edit, ResponseMaps, Scope};
use tandem_parser::seqset::Ranges;
use tandem_parser::uidmap::{map_ranges, UidMap};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::plan::{self, Answer, Facts, Failed, Plan, Then};
use super::{End, Pending, Selected, Session};
use crate::apply::MailboxMap;
use crate::replication::{MutateError, Replication};
use crate::tls::Stream;
use tandem_state::{Mailbox, Op, Outcome};

/// The maps a response is rewritten with.
pub(super) struct SessionMaps {
    rep: Arc<Replication>,
    user: String,
    pub(super) selected: Option<(Arc<MailboxMap>, Arc<Mailbox>)>,
    /// Local -> canonical, the messages gone since the SELECT included.
    remembered: Option<Remembered>,
    search_uids: bool,
    added_all: bool,
}

/// The selected mailbox's map and canonical state, kept while neither the
/// maps nor the canonical state changed (a FETCH of 1,000 messages is 1,000
/// lines to rewrite), and the canonical UIDs of the messages expunged since
/// the SELECT.
#[derive(Default)]
pub(super) struct SelectedCache {
    key: Option<(String, u32, u64, Option<u64>)>,
    found: Option<(Arc<MailboxMap>, Arc<Mailbox>)>,
    /// Local -> canonical of messages the map lost while selected: the
    /// backend connection still shows them until it reports their EXPUNGE
    /// (RFC 2180 section 4.1), and its answers about them are rewritten.
    gone: Arc<BTreeMap<u32, u32>>,
}

/// Most remembered expunged messages per session; past it, the lowest
/// UIDs are forgotten (their late answers are withheld, as before).
const MAX_GONE: usize = 10_000;

impl SelectedCache {
    /// A new map replaced `before`: remembers what it lost.
    fn remember(&mut self, before: &MailboxMap, now: &MailboxMap) {
        let domain = |m: &MailboxMap| {
            Ranges::from_ranges(m.to_canon.runs().iter().map(|&(f, _, l)| (f, f + (l - 1))))
        };
        let lost = domain(before).difference(&domain(now));
        if lost.is_empty() {
            return;
        }
        let gone = Arc::make_mut(&mut self.gone);
        for local in lost.iter().take(MAX_GONE) {
            if let Some(c) = before.to_canon.map_one(local) {
                gone.insert(local, c);
            }
        }
        while gone.len() > MAX_GONE {
            gone.pop_first();
        }
    }
}

/// The selected mailbox's local -> canonical map with the messages gone
/// since the SELECT.
struct Remembered {
    now: Arc<MailboxMap>,
    gone: Arc<BTreeMap<u32, u32>>,
}

impl Remembered {
    /// The highest canonical UID, gone messages included (`*`).
    fn max_canonical(&self) -> u32 {
        let gone = self.gone.values().max().copied();
        self.now.to_local.max_from().max(gone).unwrap_or(0)
    }

    /// Canonical UIDs as local ones, gone messages included.
    fn to_local(&self, canonical: &Ranges) -> Ranges {
        let mut out = map_ranges(canonical, &self.now.to_local);
        for (&l, &c) in self.gone.iter() {
            if canonical.contains(c) {
                out.insert(l, l);
            }
        }
        out
    }
}

impl UidMap for Remembered {
    fn map_range(&self, lo: u32, hi: u32, out: &mut Ranges) {
        self.now.to_canon.map_range(lo, hi, out);
        for (_, &c) in self.gone.range(lo..=hi) {
            out.insert(c, c);
        }
    }
}

impl ResponseMaps for SessionMaps {
    fn uids(&self, scope: Scope<'_>) -> Option<&dyn UidMap> {
        match scope {
            Scope::Selected => self.remembered.as_ref().map(|m| m as &dyn UidMap),
            _ => None,
        }
    }

    fn uid_validity(&self, scope: Scope<'_>, local: u32) -> Option<u32> {
        match scope {
            Scope::Selected => {
                let (m, c) = self.selected.as_ref()?;
                (m.local_uidvalidity == local).then_some(c.uidvalidity)
            }
            Scope::Mailbox(name) => {
                let c = self
                    .rep
                    .mailbox(&self.user, &String::from_utf8_lossy(name))?;
                let m = self.rep.map(&self.user, c.uidvalidity)?;
                (m.local_uidvalidity == local).then_some(c.uidvalidity)
            }
            Scope::Destination => None,
        }
    }

    fn uid_next(&self, scope: Scope<'_>, _local: u32) -> Option<u32> {
        match scope {
            Scope::Selected => {
                // Read fresh by maps(): UIDs given since the SELECT count.
                let (_, c) = self.selected.as_ref()?;
                Some(c.uidnext)
            }
            Scope::Mailbox(name) => self
                .rep
                .mailbox(&self.user, &String::from_utf8_lossy(name))
                .map(|c| c.uidnext),
            Scope::Destination => None,
        }
    }

    fn search_returns_uids(&self) -> bool {
        self.search_uids
    }

    fn esearch_added_all(&self) -> bool {
        self.added_all
    }
}

/// Whether a rewrite failed on a UID of the selected mailbox (which the
/// applier may be about to record), rather than on a mailbox tandem does not
/// know.
fn selected_uid_error(e: &tandem_parser::rewrite::RewriteError) -> bool {
    use tandem_parser::rewrite::RewriteError;
    match e {
        RewriteError::Unmapped { what, .. } | RewriteError::NoneMapped { what, .. } => {
            !what.starts_with("STATUS")
                && !what.contains("UIDVALIDITY")
                && !what.contains("UIDNEXT")
        }
        RewriteError::NoMap { .. } => false,
    }
}

/// Commands tandem does not parse but may pass on when replicating: they
/// neither change replicated state nor carry or return UIDs. Anything else
/// unknown (SETACL, SETMETADATA, SETQUOTA, vendor extensions) would change
/// one node only, or leak local numbers, and is refused.
fn is_known_safe(cmd: &Command<'_>) -> bool {
    if !matches!(cmd.body, CommandBody::Other) {
        return true;
    }
    const SAFE: [&[u8]; 9] = [
        b"LIST",
        b"LSUB",
        b"NAMESPACE",
        b"GETQUOTA",
        b"GETQUOTAROOT",
        b"MYRIGHTS",
        b"GETACL",
        b"LISTRIGHTS",
        b"GETMETADATA",
    ];
    !cmd.uid && SAFE.iter().any(|s| cmd.name().eq_ignore_ascii_case(s))
}

/// Whether a response line may carry a UID, UIDVALIDITY or UIDNEXT.
pub(super) fn needs_rewrite(line: &[u8]) -> bool {
    const WORDS: [&[u8]; 6] = [
        b"FETCH",
        b"SEARCH",
        b"STATUS",
        b"UIDNEXT",
        b"UIDVALIDITY",
        b"UID",
    ];
    line.starts_with(b"* ") && {
        let upper = line.to_ascii_uppercase();
        WORDS
            .iter()
            .any(|w| upper.windows(w.len()).any(|x| x == *w))
    }
}

fn name_of(raw: &[u8], t: &tandem_parser::lexer::StrToken) -> Result<String, ()> {
    String::from_utf8(t.value(raw).into_owned()).map_err(|_| ())
}

impl Session {
    /// More messages in the selected mailbox than mapped UIDs (`n` of
    /// `* n EXISTS`): some came into the backend behind tandem's back; have
    /// them adopted.
    pub(super) fn check_exists(&self, n: u32) {
        let n = u64::from(n);
        let (Some(maps), Some(s)) = (self.maps(), &self.selected) else {
            return;
        };
        if let Some((map, _)) = &maps.selected {
            if n > map.to_local.len() {
                maps.rep.request_adoption(&maps.user, &s.name, n);
            }
        }
    }

    pub(super) fn maps(&self) -> Option<SessionMaps> {
        let rep = self.rep.clone()?;
        let user = self.user.clone()?;
        let (selected, remembered) = match self.selected.as_ref() {
            None => (None, None),
            Some(s) => {
                let key = (
                    s.name.clone(),
                    s.uidvalidity,
                    rep.map_version(),
                    rep.node.applied_index(),
                );
                let mut cache = self.selected_cache.lock().ok()?;
                if cache.key.as_ref() != Some(&key) {
                    let found = rep.mailbox(&user, &s.name).and_then(|c| {
                        if c.uidvalidity != s.uidvalidity {
                            return None;
                        }
                        Some((rep.map(&user, s.uidvalidity)?, Arc::new(c)))
                    });
                    let same = cache
                        .key
                        .as_ref()
                        .is_some_and(|k| k.0 == key.0 && k.1 == key.1);
                    if !same {
                        cache.gone = Arc::default();
                    }
                    if let (true, Some((before, _)), Some((now, _))) = (same, &cache.found, &found)
                    {
                        if !Arc::ptr_eq(before, now) {
                            let before = before.clone();
                            cache.remember(&before, now);
                        }
                    }
                    cache.key = Some(key);
                    cache.found = found;
                }
                let remembered = cache.found.as_ref().map(|(m, _)| Remembered {
                    now: m.clone(),
                    gone: cache.gone.clone(),
                });
                (cache.found.clone(), remembered)
            }
        };
        Some(SessionMaps {
            rep,
            user,
            selected,
            remembered,
            search_uids: matches!(
                self.pending.front(),
                Some((_, Pending::UidSearch { .. }, ..))
            ),
            added_all: matches!(
                self.pending.front(),
                Some((_, Pending::UidSearch { added_all: true }, ..))
            ),
        })
    }

    /// Rewrites one response line (or the head of a FETCH with a literal)
    /// local -> canonical; `None` to drop it.
    pub(super) async fn rewrite_line(&mut self, line: &[u8], literal: bool) -> Option<Vec<u8>> {
        let mut changes = self.rep.as_ref().and_then(|r| r.map_changes());
        for attempt in 0..2 {
            let result = {
                let parsed = if literal {
                    Response::parse_fetch_head(line)
                } else {
                    Response::parse(line)
                };
                let Ok(resp) = parsed else {
                    // A response that cannot hold a UID goes on as it is;
                    // one that may is never guessed at: withheld, loudly.
                    if !tandem_parser::response::may_carry_uid(line) {
                        return Some(line.to_vec());
                    }
                    let shape = tandem_parser::response::shape(line);
                    tracing::error!(%shape, "unparsable backend response withheld");
                    crate::metrics::count_withheld("unparsable");
                    return None;
                };
                let Some(maps) = self.maps() else {
                    return Some(line.to_vec());
                };
                rewrite_response(&resp, &maps).map(|c| c.into_owned())
            };
            match result {
                Ok(out) => return Some(out),
                Err(e) if attempt == 0 && selected_uid_error(&e) => {
                    // The applier may be recording this very message.
                    tracing::debug!(error = %e, "waiting for the UID map");
                    if let Some(rx) = changes.as_mut() {
                        let _ =
                            tokio::time::timeout(Duration::from_millis(1000), rx.changed()).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "response with an unmapped UID withheld");
                    crate::metrics::count_withheld("unmapped");
                    // A message delivered straight into the backend: adopt it.
                    if let (true, Some(rep), Some(user), Some(s)) = (
                        selected_uid_error(&e),
                        &self.rep,
                        &self.user,
                        &self.selected,
                    ) {
                        rep.request_adoption(user, &s.name, u64::MAX);
                    }
                }
            }
        }
        None
    }

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

    /// Makes sure the user's INBOX exists in the canonical state (the first
    /// login of a user through tandem creates it there).
    pub(super) async fn ensure_inbox(&mut self) {
        if self.inbox_ready {
            return;
        }
        let (Some(rep), Some(user)) = (self.rep.clone(), self.user.clone()) else {
            return;
        };
        if rep.mailbox(&user, "INBOX").is_some() {
            self.inbox_ready = true;
            return;
        }
        match rep
            .mutate(
                &user,
                Op::Create {
                    name: "INBOX".to_string(),
                },
            )
            .await
        {
            Ok(_) => self.inbox_ready = true,
            Err(e) => tracing::warn!(error = %e, "cannot register INBOX"),
        }
    }

    async fn separator(&mut self, backend: &mut Stream) -> Result<Option<char>, End> {
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
    async fn canonical_set(
        &mut self,
        cmd: &Command<'_>,
        set: &SetArg,
        backend: &mut Stream,
    ) -> Result<Result<Ranges, &'static str>, End> {
        let SetArg::Set { set, span } = set else {
            return Ok(Err("the saved search result ($) is not supported"));
        };
        let Some(maps) = self.maps() else {
            return Ok(Err("no mailbox selected"));
        };
        let Some((map, _)) = maps.selected else {
            return Ok(Err("no mailbox selected"));
        };
        if cmd.uid {
            let star = map.to_local.max_from().unwrap_or(0);
            return Ok(Ok(set.resolve(star)));
        }
        // Message numbers: the backend session knows which messages they
        // are; ask it for their UIDs with a FETCH, during which it reports
        // no expunge (a UID SEARCH would, and renumber first).
        let Some(numbers) = self.backend_numbers(set, span.of(cmd.buf)) else {
            return Ok(Err("no such message"));
        };
        let mut q = b"FETCH ".to_vec();
        q.extend_from_slice(&numbers);
        q.extend_from_slice(b" (UID)");
        let (ok, text, untagged) = self.internal(backend, &q, Keep::All).await?;
        // What else the backend reported meanwhile (flag changes, new
        // mail) reaches the client with the answer, in order, so that a
        // STORE's answer has one FETCH per message.
        let (answer, other): (Vec<_>, Vec<_>) = untagged
            .into_iter()
            .partition(|l| Response::parse(l).is_ok_and(|r| r.fetch_uid().is_some()));
        self.held.extend(other);

        if !ok {
            tracing::debug!(reply = %text, "message numbers not resolved");
            return Ok(Err("invalid message numbers"));
        }
        let local = fetched_uids(&answer);
        // Which message each number is, canonically: one expunged
        // elsewhere that this session still shows is out of the STORE's
        // reach, and its answer says what it would be.
        if let Some(now) = self.maps().and_then(|m| m.selected) {
            self.store.numbered = answer
                .iter()
                .filter_map(|l| {
                    let r = Response::parse(l).ok()?;
                    let canonical = now.0.to_canon.map_one(r.fetch_uid()?);
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

    /// The canonical UIDs of the messages marked \Deleted in the selected
    /// mailbox, as this session's backend sees them.
    async fn deleted(&mut self, backend: &mut Stream) -> Result<Ranges, End> {
        // The backend searches its connection's view, which may not yet
        // have other sessions' latest flags: bring it up to date first
        // (EXPUNGE may report what that brings).
        self.internal(backend, b"NOOP", Keep::Nothing).await?;
        let (_, _, untagged) = self
            .internal(backend, b"UID SEARCH DELETED", Keep::Search)
            .await?;
        let local = search_result(&untagged);
        Ok(match self.maps().and_then(|m| m.selected) {
            Some((map, _)) => map_ranges(&local, &map.to_canon),
            None => Ranges::new(),
        })
    }

    /// A SELECT or EXAMINE that fails leaves no mailbox selected (RFC 9051
    /// section 6.3.2): the backend connection leaves the one it has, and
    /// the client is told so as Dovecot tells it (`[CLOSED]`).
    async fn close_selected<S>(&mut self, client: &mut S, backend: &mut Stream) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        if self.selected.take().is_none() {
            return Ok(());
        }
        self.internal(backend, b"UNSELECT", Keep::Nothing).await?;
        self.view.reset();
        self.reply(
            client,
            "* OK [CLOSED] Previous mailbox closed.\r\n".to_string(),
        )
        .await
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
    async fn reply<S>(&mut self, client: &mut S, line: String) -> Result<(), End>
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
                let result = status.map_or("bad", super::status_label);
                crate::metrics::count_command(label, result);
                self.answering = None;
            }
        }
        self.write_client(client, line.as_bytes()).await?;
        self.bytes_out += line.len() as u64;
        Ok(())
    }

    /// Handles a mutation of a logged-in user: learns what [`plan::needs`]
    /// asks of the backend, plans it ([`plan::plan`]), proposes it, and
    /// answers as [`plan::answer`] says. The client's tagged OK, with any
    /// UID, is written only after [`Replication::mutate`] returned.
    pub(super) async fn mutation<S>(
        &mut self,
        cmd: &Command<'_>,
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        let (Some(rep), Some(user)) = (self.rep.clone(), self.user.clone()) else {
            return Ok(());
        };
        let tag = String::from_utf8_lossy(cmd.tag()).to_string();
        let selected = self.selected.clone();
        self.store = super::store::StoreAnswer::default();
        let needs = plan::needs(cmd, selected.as_ref());
        let facts = self.gather(cmd, &needs, &rep, backend).await?;
        let (op, after) = match plan::plan(cmd, selected.as_ref(), &facts) {
            Plan::NotMine => return Ok(()),
            Plan::Refuse(line) => {
                if facts.gone && self.policy().expunges {
                    // COPY and MOVE report what is gone, as Dovecot does.
                    self.internal(backend, b"NOOP", Keep::Nothing).await?;
                }
                return self.reply(client, line).await;
            }
            Plan::CloseReadOnly => {
                self.internal(backend, b"CLOSE", Keep::Nothing).await?;
                self.selected = None;
                self.view.reset();
                return self
                    .reply(client, format!("{tag} OK CLOSE completed\r\n"))
                    .await;
            }
            Plan::Propose { op, after } => (op, after),
        };
        if let Op::Store { mode, flags, .. } = &op {
            self.store.change = Some((*mode, flags.clone()));
        }
        let outcome = if plan::proposes_nothing(&op) {
            Ok(Outcome::Ok {
                seq: 0,
                uidvalidity: 0,
                uids: Vec::new(),
                source: Vec::new(),
            })
        } else {
            rep.mutate(&user, op.clone()).await
        };
        let outcome = match outcome {
            Ok(o) => Ok(o),
            Err(MutateError::Unavailable(e)) => {
                tracing::warn!(error = %e, "mutation not replicated");
                Err(Failed::Unavailable(e.to_string()))
            }
            Err(MutateError::Backend { outcome, text }) => {
                self.compensate(&rep, &user, &op, &outcome).await;
                Err(Failed::Backend(text))
            }
        };
        let answer = plan::answer(&tag, &op, after, outcome.as_ref());
        self.carry_out(answer, &rep, &user, client, backend).await
    }

    /// Learns from the backend what [`plan::needs`] asked for.
    async fn gather(
        &mut self,
        cmd: &Command<'_>,
        needs: &plan::Needs<'_>,
        rep: &Replication,
        backend: &mut Stream,
    ) -> Result<Facts, End> {
        let mut facts = Facts::default();
        if needs.separator {
            facts.separator = self.separator(backend).await?;
        }
        if needs.strict {
            facts.strict = rep.strict_messages();
        }
        if needs.deleted {
            facts.deleted = Some(self.deleted(backend).await?);
        }
        if let Some(set) = needs.set {
            facts.set = Some(self.canonical_set(cmd, set, backend).await?);
            facts.gone = self.store.numbered.iter().any(|(_, c)| c.is_none());
        }
        Ok(facts)
    }

    /// Sends a mutation's answer: its untagged line, what its client
    /// expects from the backend (EXISTS, EXPUNGE, FETCH FLAGS), then the
    /// tagged line.
    async fn carry_out<S>(
        &mut self,
        answer: Answer,
        rep: &Replication,
        user: &str,
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        if let Some(line) = answer.untagged {
            self.reply(client, line).await?;
        }
        match answer.then {
            Then::Nothing => {}
            Then::Noop => {
                self.internal(backend, b"NOOP", Keep::Nothing).await?;
            }
            Then::FetchFlags { uids, silent } => {
                self.store_flags(&uids, silent, client, backend).await?;
            }
            Then::RecheckSelected => {
                if let Some(s) = &self.selected {
                    if rep.mailbox(user, &s.name).map(|m| m.uidvalidity) != Some(s.uidvalidity) {
                        self.selected = None;
                    }
                }
            }
            Then::Unselect => {
                // CLOSE reports nothing of the mailbox it leaves.
                self.held.clear();
                // Expunged through the log; leave without expunging again.
                self.internal(backend, b"UNSELECT", Keep::Nothing).await?;
                self.selected = None;
                self.view.reset();
            }
        }
        self.reply(client, answer.tagged).await
    }

    /// Undoes, through the log, what the other nodes applied of a mutation
    /// this node's backend refused ([`plan::undo`]).
    async fn compensate(&self, rep: &Arc<Replication>, user: &str, op: &Op, outcome: &Outcome) {
        let Some(undo) = plan::undo(op, outcome, self.separator.flatten()) else {
            if matches!(outcome, Outcome::Ok { .. }) {
                tracing::error!("the local backend refused a change the others applied; this node differs until it is resynced");
            }
            return;
        };
        match rep.mutate(user, undo).await {
            Ok(Outcome::Ok { .. }) => {}
            Ok(Outcome::No { text, .. }) => {
                tracing::error!(reason = %text, "compensating change refused; nodes may differ")
            }
            Err(e) => {
                tracing::error!(error = %e, "compensating change failed; nodes may differ")
            }
        }
    }

    /// Handles a command of a logged-in user of a replicating node that is
    /// not a mutation: refuses what cannot be translated, tracks SELECT,
    /// and rewrites UID sets canonical -> local. Returns the bytes to
    /// forward (`None`: answered here) and the pending kind.
    pub(super) async fn translate<S>(
        &mut self,
        cmd: &Command<'_>,
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<Option<(Vec<Edit>, Pending)>, End>
    where
        S: AsyncWrite + Unpin,
    {
        let tag = String::from_utf8_lossy(cmd.tag()).to_string();
        let (Some(rep), Some(user)) = (self.rep.clone(), self.user.clone()) else {
            return Ok(Some((Vec::new(), Pending::Other)));
        };
        if super::capability::saves_search(cmd) {
            self.reply(
                client,
                format!("{tag} BAD [CANNOT] SEARCHRES is not available through tandem\r\n"),
            )
            .await?;
            return Ok(None);
        }
        if super::capability::uses_modseq(cmd) {
            self.reply(
                client,
                format!(
                    "{tag} BAD [CANNOT] CONDSTORE and MODSEQ are not available through tandem\r\n"
                ),
            )
            .await?;
            return Ok(None);
        }
        if cmd.has_unparsed_uids() || !is_known_safe(cmd) {
            self.reply(
                client,
                format!("{tag} BAD [CANNOT] This command is not available through tandem\r\n"),
            )
            .await?;
            return Ok(None);
        }
        let mut kind = Pending::Other;
        let mut ret_edit = None;
        match &cmd.body {
            CommandBody::Select { mailbox, .. } | CommandBody::Examine { mailbox, .. } => {
                self.drain(client, backend).await?;
                let Ok(name) = name_of(cmd.buf, mailbox) else {
                    self.close_selected(client, backend).await?;
                    self.reply(client, format!("{tag} BAD Mailbox names must be UTF-8\r\n"))
                        .await?;
                    return Ok(None);
                };
                if tandem_state::normalize(&name) == "INBOX" {
                    // A user's first visit through tandem registers INBOX.
                    self.ensure_inbox().await;
                }
                let Some(m) = rep.mailbox(&user, &name) else {
                    self.close_selected(client, backend).await?;
                    let line = if tandem_state::normalize(&name) == "INBOX" {
                        format!("{tag} NO [UNAVAILABLE] INBOX is not registered yet, try again\r\n")
                    } else {
                        format!("{tag} NO [NONEXISTENT] No such mailbox\r\n")
                    };
                    self.reply(client, line).await?;
                    return Ok(None);
                };
                if rep.wait_map(&user, m.uidvalidity).await.is_none() {
                    self.close_selected(client, backend).await?;
                    self.reply(
                        client,
                        format!("{tag} NO [UNAVAILABLE] This node has not caught up yet\r\n"),
                    )
                    .await?;
                    return Ok(None);
                }
                self.view.reset();
                self.selected = Some(Selected {
                    name,
                    uidvalidity: m.uidvalidity,
                    read_only: matches!(cmd.body, CommandBody::Examine { .. }),
                });
                kind = Pending::Select;
            }
            CommandBody::Unselect => {
                self.drain(client, backend).await?;
                self.selected = None;
                self.view.reset();
            }
            CommandBody::Fetch {
                set: SetArg::Set { set, span },
                ..
            } if !cmd.uid && !self.view.aligned() => {
                // The client numbers messages it has not heard gone.
                self.drain(client, backend).await?;
                match self.backend_numbers(set, span.of(cmd.buf)) {
                    Some(bytes) => ret_edit = Some(Edit { span: *span, bytes }),
                    None => {
                        self.reply(
                            client,
                            format!("{tag} NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n"),
                        )
                        .await?;
                        return Ok(None);
                    }
                }
            }
            CommandBody::Search { ret, .. } if cmd.uid => {
                // MIN, MAX and COUNT without ALL: ask ALL too, so that mail
                // hidden on this node is left out of them.
                match ret.and_then(|r| Some((r, return_with_all(r.of(cmd.buf))?))) {
                    Some((span, bytes)) => {
                        ret_edit = Some(Edit { span, bytes });
                        kind = Pending::UidSearch { added_all: true };
                    }
                    None => kind = Pending::UidSearch { added_all: false },
                }
            }
            _ => {}
        }
        let mut edits: Vec<Edit> = ret_edit.into_iter().collect();
        let sets = cmd.uid_sets();
        if sets.is_empty() {
            return Ok(Some((edits, kind)));
        }
        let Some(map) = self.maps().and_then(|m| m.remembered) else {
            // Nothing selected: the backend answers BAD itself.
            return Ok(Some((edits, kind)));
        };
        // Messages expunged since the SELECT that this session has not
        // been told of are still there for it (and for its backend
        // connection): UIDs name them too.
        let star = map.max_canonical();
        // A set with no message here names nothing: the largest UID, which
        // no backend gives out, keeps the command valid and empty.
        for arg in sets {
            if let SetArg::Set { set, span } = arg {
                let local = map.to_local(&set.resolve(star));
                let bytes = if local.is_empty() {
                    b"4294967295".to_vec()
                } else {
                    local.to_bytes()
                };
                if bytes != span.of(cmd.buf) {
                    edits.push(Edit { span: *span, bytes });
                }
            }
        }
        edits.sort_by_key(|e| e.span.start);
        Ok(Some((edits, kind)))
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
