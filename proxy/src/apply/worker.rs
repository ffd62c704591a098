//! A user's worker: applies that user's outbox items in order over the
//! user's backend sessions, one per mailbox ([`Lanes`]; a run of
//! single-mailbox items over them in parallel), retries while the backend is unreachable or says a passing NO,
//! and records each item with its map changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::Durability;
use tandem_parser::encode::{self, MailboxVerb};
use tandem_parser::response::Response;
use tandem_replicator::LocalTables;
use tandem_state::{Work, OUTBOX};
use tokio::sync::mpsc;

use super::doubt::Evidence;
use super::maps::{MailboxMap, Maps};
use super::progress::{Additions, Progress, UserLocks};
use super::seam::{BackendSession, Connect};
use super::{ApplyError, Change, StoreError};
use crate::backend::{Reply, Status};

/// Most backend sessions of one user ([`Lanes`]): a worker holds no other.
const MAX_LANES: usize = 4;

/// A lane unused for this long closes its backend session.
const LANE_IDLE: Duration = Duration::from_secs(10);

/// Which backend session of a user's worker applies an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    /// The lane of this mailbox, beside the other mailboxes' lanes.
    Lane(&'a str),
    /// The lane of this mailbox, while no other lane runs: a COPY or MOVE
    /// (on its source's lane), or an item in doubt after a restart (lanes
    /// of different mailboxes may have finished out of order before the
    /// crash, so each is looked for alone).
    LaneAlone(&'a str),
    /// A lane of its own, alone (mailbox operations; a DELETE or RENAME
    /// closes the other lanes first).
    Alone,
}

/// Where `work` is applied; `in_doubt` for an item at or below the horizon.
fn route(work: &Work, in_doubt: bool) -> Route<'_> {
    match (work, single_mailbox(work)) {
        (_, Some(mailbox)) if in_doubt => Route::LaneAlone(mailbox),
        (_, Some(mailbox)) => Route::Lane(mailbox),
        (Work::Copy { from, .. }, None) => Route::LaneAlone(from),
        _ => Route::Alone,
    }
}

/// How many items at the front of `batch` run over their lanes in
/// parallel: [`Route::Lane`] items of at most [`MAX_LANES`] mailboxes.
fn lane_run(batch: &std::collections::VecDeque<(u64, Work)>, horizon: u64) -> usize {
    let mut mailboxes: Vec<&str> = Vec::new();
    batch
        .iter()
        .take_while(|(seq, w)| match route(w, *seq <= horizon) {
            Route::Lane(m) if mailboxes.contains(&m) => true,
            Route::Lane(m) if mailboxes.len() < MAX_LANES => {
                mailboxes.push(m);
                true
            }
            _ => false,
        })
        .count()
}

/// Whether applying `work` removes messages or mailboxes that the in-doubt
/// check of an earlier item would look for (see the module's doc).
fn destroys_evidence(work: &Work, node: u64) -> bool {
    match work {
        Work::Expunge { .. } | Work::Delete { .. } | Work::Rename { .. } => true,
        Work::Copy { remove, .. } => *remove,
        Work::Append { replaces, .. } => replaces.as_ref().is_some_and(|r| r.node == node),
        Work::Create { .. }
        | Work::Subscribe { .. }
        | Work::Store { .. }
        | Work::AppendLiteral8 { .. } => false,
    }
}

/// The mailbox an item touches, if it touches exactly one.
fn single_mailbox(work: &Work) -> Option<&str> {
    match work {
        Work::Append { mailbox, .. }
        | Work::AppendLiteral8 { mailbox, .. }
        | Work::Store { mailbox, .. }
        | Work::Expunge { mailbox, .. } => Some(mailbox),
        _ => None,
    }
}

/// How often a NO that may be passing (see [`is_soft`]) is retried before
/// it counts as the backend's refusal (about half a minute of backoff).
const MAX_SOFT_REFUSALS: u32 = 10;

/// Whether a backend's NO may be passing: no response code, or one that
/// says so (RFC 5530 UNAVAILABLE, SERVERBUG, INUSE). TRYCREATE, NONEXISTENT,
/// OVERQUOTA, TOOBIG, LIMIT and the like are final, and so are Cyrus's
/// refusals of a message it never takes, which carry no code
/// ([`NEVER_TAKEN`]).
fn is_soft(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    if NEVER_TAKEN.iter().any(|t| upper.contains(t)) {
        return false;
    }
    match upper.split_once('[') {
        None => true,
        Some((_, rest)) => ["UNAVAILABLE", "SERVERBUG", "INUSE"]
            .iter()
            .any(|c| rest.starts_with(c)),
    }
}

/// Cyrus's answers, without a response code, to an APPEND of a message it
/// never takes (bare LF line ends, NUL, a bad or missing header: "Message
/// contains bare newlines", "Message has no header/body separator", ...;
/// `deploy/CYRUS.md`). Retrying them only holds up the user's next changes.
const NEVER_TAKEN: [&str; 2] = ["MESSAGE CONTAINS ", "MESSAGE HAS NO HEADER"];

/// A worker with nothing to do for this long exits.
const WORKER_IDLE: Duration = Duration::from_secs(60);

/// A backend session of the admin acting as one user.
pub(super) struct UserConn {
    pub(super) conn: Box<dyn BackendSession>,
    pub(super) selected: Option<String>,
    /// The [`Additions`] count of the selected mailbox when this session
    /// last synchronized its view of it.
    pub(super) synced: u64,
}

/// Most backend connections the applier keeps open (one per user).
const MAX_CONNS: usize = 32;

/// An item in a few words, for traces (never message bodies).
struct Brief<'a>(&'a Work);

impl std::fmt::Display for Brief<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Work::Create { user, name, .. } => write!(f, "{user}: CREATE {name}"),
            Work::Delete { user, name, .. } => write!(f, "{user}: DELETE {name}"),
            Work::Rename { user, from, to, .. } => write!(f, "{user}: RENAME {from} {to}"),
            Work::Subscribe { user, name, on } => write!(f, "{user}: SUBSCRIBE({on}) {name}"),
            Work::Append {
                user,
                mailbox,
                uids,
                replaces,
                ..
            } => write!(
                f,
                "{user}: APPEND {mailbox} {uids:?}{}",
                if replaces.is_some() {
                    " (adoption)"
                } else {
                    ""
                }
            ),
            Work::AppendLiteral8 {
                user,
                mailbox,
                uids,
                ..
            } => write!(f, "{user}: APPEND {mailbox} {uids:?} (literal8)"),
            Work::Copy {
                user,
                from,
                to,
                pairs,
                remove,
                ..
            } => {
                let verb = if *remove { "MOVE" } else { "COPY" };
                write!(f, "{user}: {verb} {from} -> {to} {pairs:?}")
            }
            Work::Store {
                user,
                mailbox,
                uids,
                mode,
                flags,
                ..
            } => write!(f, "{user}: STORE {mailbox} {uids:?} {mode:?} {flags:?}"),
            Work::Expunge {
                user,
                mailbox,
                uids,
                ..
            } => {
                write!(f, "{user}: EXPUNGE {mailbox} {uids:?}")
            }
        }
    }
}

/// Applies one user's items, in order, over that user's backend session.
pub(super) struct Worker {
    pub(super) db: LocalTables,
    /// Opens the backend sessions (the admin acting as each user).
    pub(super) connect: Arc<dyn Connect>,
    pub(super) maps: Arc<Maps>,
    pub(super) progress: Arc<Progress>,
    pub(super) conns: HashMap<String, UserConn>,
    /// Items at or below `horizon` (the durable high-water mark at start)
    /// may have reached the backend before a crash without their UIDs being
    /// recorded: look before applying them.
    pub(super) horizon: u64,
    /// Set by `apply` when the item was found already applied.
    pub(super) found: bool,
    /// For a MOVE in doubt: its sources as recorded before it ran.
    pub(super) evidence: Option<Evidence>,
    /// This node's id (adoption expunges originals on their node only).
    pub(super) node: u64,
    pub(super) locks: Arc<UserLocks>,
    /// Shared by the user's worker and its lanes.
    pub(super) additions: Arc<Additions>,
}

/// A user's lanes: one backend session per mailbox, each keeping its
/// mailbox selected; at most [`MAX_LANES`] (the least recently used goes
/// first), each closed after [`LANE_IDLE`] unused. `W` is the worker that
/// owns each session (plain values in tests).
struct Lanes<W = Worker>(HashMap<String, (W, Instant)>);

impl<W> Default for Lanes<W> {
    fn default() -> Self {
        Lanes(HashMap::new())
    }
}

impl<W> Lanes<W> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The lane of `mailbox`, made when missing.
    fn get(&mut self, mailbox: &str, make: impl FnOnce() -> W) -> &mut W {
        if !self.0.contains_key(mailbox) {
            self.put(mailbox.to_string(), make());
        }
        let (lane, used) = self.0.get_mut(mailbox).expect("put above");
        *used = Instant::now();
        lane
    }

    /// Takes the lane of `mailbox` out (to run beside the others), or
    /// makes one.
    fn take(&mut self, mailbox: &str, make: impl FnOnce() -> W) -> W {
        self.0.remove(mailbox).map_or_else(make, |(lane, _)| lane)
    }

    /// Puts a lane back, closing the least recently used past the limit.
    fn put(&mut self, mailbox: String, lane: W) {
        while self.0.len() >= MAX_LANES {
            let Some(oldest) = self
                .0
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(m, _)| m.clone())
            else {
                break;
            };
            self.0.remove(&oldest);
        }
        self.0.insert(mailbox, (lane, Instant::now()));
    }

    /// Closes every lane but the one of `keep`.
    fn close_all_but(&mut self, keep: &str) {
        self.0.retain(|mailbox, _| mailbox == keep);
    }

    /// Closes the lanes unused for `idle` ([`LANE_IDLE`]).
    fn close_idle(&mut self, idle: Duration) {
        self.0.retain(|_, (_, used)| used.elapsed() < idle);
    }
}

impl Worker {
    pub(super) fn fork(&self) -> Worker {
        Worker {
            db: self.db.clone(),
            connect: self.connect.clone(),
            maps: self.maps.clone(),
            progress: self.progress.clone(),
            conns: HashMap::new(),
            horizon: self.horizon,
            found: false,
            evidence: None,
            node: self.node,
            locks: self.locks.clone(),
            additions: self.additions.clone(),
        }
    }

    /// Applies the user's items as they come, each on the backend session
    /// [`route`] says: one session per mailbox (a *lane*) keeps that
    /// mailbox selected, so that a user working in several mailboxes costs
    /// no SELECT per item. A run of items that each touch one mailbox
    /// (APPEND, STORE, EXPUNGE) is spread over their lanes, in parallel,
    /// each mailbox's items in order; anything else waits for the run
    /// before it and runs alone.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<(u64, Work)>) {
        let mut lanes = Lanes::default();
        let mut idle_since = Instant::now();
        let mut user = String::new();
        loop {
            // Lanes unused for LANE_IDLE close; the worker, with none left,
            // exits after WORKER_IDLE without work.
            let wait = if lanes.is_empty() {
                WORKER_IDLE.saturating_sub(idle_since.elapsed())
            } else {
                LANE_IDLE
            };
            let first = match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(first)) => first,
                Ok(None) => return,
                Err(_) if lanes.is_empty() => return self.exit(&user, rx, lanes).await,
                Err(_) => {
                    lanes.close_idle(LANE_IDLE);
                    continue;
                }
            };
            user = first.1.user().to_string();
            let mut batch = std::collections::VecDeque::from([first]);
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(item) => batch.push_back(item),
                    Err(_) => break,
                }
            }
            let lock = self.locks.of(&user);
            let _guard = lock.lock().await;
            self.apply_batch(batch, &mut lanes).await;
            lanes.close_idle(LANE_IDLE);
            idle_since = Instant::now();
        }
    }

    /// Leaves after WORKER_IDLE without work. The dispatcher may have sent
    /// an item since the wait ended: the channel closes (its next send
    /// fails and starts a new worker), and what it holds is applied first,
    /// under the user's lock, which the new worker waits for.
    async fn exit(&mut self, user: &str, mut rx: mpsc::Receiver<(u64, Work)>, mut lanes: Lanes) {
        let lock = self.locks.of(user);
        let _guard = lock.lock().await;
        rx.close();
        let mut batch = std::collections::VecDeque::new();
        while let Ok(item) = rx.try_recv() {
            batch.push_back(item);
        }
        self.apply_batch(batch, &mut lanes).await;
    }

    /// Applies a batch of the user's items in order, each where [`route`]
    /// says: a run of items of at most [`MAX_LANES`] mailboxes over their
    /// lanes in parallel, anything else alone.
    async fn apply_batch(
        &mut self,
        mut batch: std::collections::VecDeque<(u64, Work)>,
        lanes: &mut Lanes,
    ) {
        while !batch.is_empty() {
            let run = lane_run(&batch, self.horizon);
            if run == 0 {
                if let Some((seq, work)) = batch.pop_front() {
                    self.alone(seq, &work, lanes).await;
                }
                continue;
            }
            let mut groups: Vec<(String, Vec<(u64, Work)>)> = Vec::new();
            for (seq, work) in batch.drain(..run) {
                let mailbox = single_mailbox(&work).unwrap_or_default().to_string();
                match groups.iter_mut().find(|g| g.0 == mailbox) {
                    Some(g) => g.1.push((seq, work)),
                    None => groups.push((mailbox, vec![(seq, work)])),
                }
            }
            if let [(mailbox, items)] = groups.as_slice() {
                // One mailbox: no task to spawn.
                let lane = lanes.get(mailbox, || self.fork());
                for (seq, work) in items {
                    lane.apply_one(*seq, work).await;
                }
                continue;
            }
            let mut running = tokio::task::JoinSet::new();
            for (mailbox, items) in groups {
                let mut lane = lanes.take(&mailbox, || self.fork());
                running.spawn(async move {
                    for (seq, work) in items {
                        lane.apply_one(seq, &work).await;
                    }
                    (mailbox, lane)
                });
            }
            while let Some(done) = running.join_next().await {
                if let Ok((mailbox, lane)) = done {
                    lanes.put(mailbox, lane);
                }
            }
        }
    }

    /// Applies an item that runs alone ([`Route::LaneAlone`] or
    /// [`Route::Alone`]).
    async fn alone(&mut self, seq: u64, work: &Work, lanes: &mut Lanes) {
        match route(work, seq <= self.horizon) {
            Route::Lane(mailbox) | Route::LaneAlone(mailbox) => {
                lanes
                    .get(mailbox, || self.fork())
                    .apply_one(seq, work)
                    .await;
            }
            Route::Alone => {
                // A backend session whose selected mailbox is deleted or
                // renamed under it may be disconnected at its next
                // command: the other lanes close first. Mailbox operations
                // have a lane of their own (no mailbox is named "").
                if matches!(work, Work::Delete { .. } | Work::Rename { .. }) {
                    lanes.close_all_but("");
                }
                lanes.get("", || self.fork()).apply_one(seq, work).await;
            }
        }
    }

    /// Applies one item, retrying while the backend is unreachable.
    pub(super) async fn apply_one(&mut self, seq: u64, work: &Work) {
        if destroys_evidence(work, self.node) {
            metrics::counter!("tandem_apply_barriers_total").increment(1);
            // After a crash (in doubt) the sources may be gone already: the
            // evidence recorded the first time stays.
            let evidence = if seq <= self.horizon {
                None
            } else {
                self.evidence_of(seq, work).await
            };
            while let Err(e) = self.barrier(seq, work.user(), evidence.as_ref()) {
                tracing::error!(error = %e, "applier cannot make its progress durable");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        let mut backoff = Duration::from_millis(100);
        let mut refusals = 0;
        // A command whose answer was lost (the backend stopped or the link
        // broke mid-command) may have been carried out: every retry after
        // a transient error looks first, as after a crash.
        let mut interrupted = false;
        loop {
            // Every item up to the horizon is looked for (lanes of different
            // mailboxes may have finished out of order before a crash).
            let doubt = seq <= self.horizon || interrupted;
            self.found = false;
            self.evidence = doubt
                .then(|| self.recorded_evidence(seq, work.user()))
                .flatten();
            let started = std::time::Instant::now();
            tracing::debug!(seq, doubt, item = %Brief(work), "applying");
            let result = self.apply(work, doubt).await;
            tracing::debug!(seq, found = self.found, ok = result.is_ok(), "applied");
            metrics::histogram!("tandem_apply_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(changes) => {
                    if self.found {
                        tracing::info!(seq, "item found applied before a restart");
                    }
                    if let Err(e) = self.commit(seq, changes) {
                        tracing::error!(error = %e, "applier cannot record progress");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    self.progress.finish(seq, work.user(), None);
                    return;
                }
                Err(ApplyError::Refused(text))
                    if refusals < MAX_SOFT_REFUSALS && is_soft(&text) =>
                {
                    // A backend shutting down or busy answers NO too: retry
                    // a while before calling it a refusal.
                    refusals += 1;
                    tracing::warn!(seq, reason = %text, "backend said NO; will retry");
                    self.conns.clear();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(ApplyError::Refused(text)) => {
                    tracing::warn!(seq, reason = %text, "backend refused a replicated change");
                    if self.commit(seq, Vec::new()).is_ok() {
                        self.progress.finish(seq, work.user(), Some(text));
                        return;
                    }
                }
                Err(ApplyError::Transient(e)) => {
                    tracing::warn!(seq, error = %e, "backend unavailable; will retry");
                    interrupted = true;
                    self.conns.clear();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    pub(super) fn items_from(&self, first: u64) -> Result<Vec<(u64, Work)>, StoreError> {
        let txn = self.db.begin_read()?;
        let t = match txn.open_table(OUTBOX) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for r in t.range(first..)? {
            let (k, v) = r?;
            let (_, work): tandem_state::Queued = postcard::from_bytes(v.value())?;
            out.push((k.value(), work));
            if out.len() >= 256 {
                break;
            }
        }
        Ok(out)
    }

    /// Records item `seq` as applied with its map changes, in one redb
    /// transaction. Not fsync'd on its own: the next durable redb commit
    /// carries it (the log store's syncer's, `cluster.state_sync_ms` apart
    /// while the log moves, a barrier's or the next high-water mark's), and
    /// what a crash loses is found again on the backend (in doubt).
    pub(super) fn commit(&self, seq: u64, changes: Vec<Change>) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)?;
        Maps::write(&txn, &changes)?;
        {
            let mut outbox = txn.open_table(OUTBOX)?;
            outbox.remove(seq)?;
        }
        txn.commit()?;
        self.maps.committed(changes);
        Ok(())
    }

    pub(super) async fn conn(&mut self, user: &str) -> Result<&mut UserConn, ApplyError> {
        if !self.conns.contains_key(user) {
            if self.conns.len() >= MAX_CONNS {
                self.conns.clear();
            }
            let conn = self.connect.open(user).await?;
            self.conns.insert(
                user.to_string(),
                UserConn {
                    conn,
                    selected: None,
                    synced: 0,
                },
            );
        }
        Ok(self.conns.get_mut(user).expect("inserted above"))
    }

    /// Sends one encoded command (made for the given tag).
    pub(super) async fn send(
        &mut self,
        user: &str,
        make: impl FnOnce(&[u8]) -> Result<Vec<u8>, encode::EncodeError>,
    ) -> Result<Reply, ApplyError> {
        let c = self.conn(user).await?;
        let line = make(b"x").map_err(|e| ApplyError::Refused(e.to_string()))?;
        // BackendConn::command adds its own tag and CRLF.
        let body = line
            .strip_prefix(b"x ")
            .and_then(|l| l.strip_suffix(b"\r\n"))
            .ok_or_else(|| ApplyError::Refused("cannot encode the command".to_string()))?;
        let started = std::time::Instant::now();
        let reply = c.conn.command(body).await?;
        metrics::histogram!("tandem_backend_command_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(reply)
    }

    /// Selects `mailbox` with a view that holds every message added to it
    /// so far (see [`Additions`]).
    pub(super) async fn select(&mut self, user: &str, mailbox: &str) -> Result<(), ApplyError> {
        let added = self.additions.get(user, mailbox);
        let c = self.conn(user).await?;
        if c.selected.as_deref() == Some(mailbox) {
            if c.synced == added {
                return Ok(());
            }
            if c.conn.command(b"NOOP").await?.status == Status::Ok {
                c.synced = added;
                return Ok(());
            }
        }
        let r = self
            .send(user, |t| {
                encode::mailbox_command(t, MailboxVerb::Select, mailbox.as_bytes())
            })
            .await?;
        let c = self.conn(user).await?;
        if r.status != Status::Ok {
            c.selected = None;
            return Err(ApplyError::Refused(format!("SELECT {mailbox}: {}", r.text)));
        }
        c.selected = Some(mailbox.to_string());
        c.synced = added;
        Ok(())
    }

    /// After an APPEND of this session into `mailbox`: when it has the
    /// mailbox selected and was in sync before (`before`, the
    /// [`Additions`] count then), an EXISTS in the answer says the
    /// backend synchronized the session's view with the new message in it
    /// (Dovecot does after an APPEND into the selected mailbox), so the
    /// next item needs no NOOP first.
    pub(super) fn synced_by_append(&mut self, user: &str, mailbox: &str, before: u64, r: &Reply) {
        let exists = r.untagged.iter().any(|l| {
            Response::parse(l)
                .is_ok_and(|r| matches!(r.body, tandem_parser::response::ResponseBody::Exists(_)))
        });
        let now = self.additions.get(user, mailbox);
        if let Some(c) = self.conns.get_mut(user) {
            if exists
                && now == before + 1
                && c.synced == before
                && c.selected.as_deref() == Some(mailbox)
            {
                c.synced = now;
            }
        }
    }

    pub(super) async fn local_uidvalidity(
        &mut self,
        user: &str,
        mailbox: &str,
    ) -> Result<u32, ApplyError> {
        let mut cmd = b"STATUS ".to_vec();
        encode::astring(&mut cmd, mailbox.as_bytes());
        cmd.extend_from_slice(b" (UIDVALIDITY)");
        let c = self.conn(user).await?;
        let r = c.conn.command(&cmd).await?;
        if r.status != Status::Ok {
            return Err(ApplyError::Refused(format!("STATUS {mailbox}: {}", r.text)));
        }
        for line in &r.untagged {
            if let Ok(resp) = Response::parse(line) {
                if let tandem_parser::response::ResponseBody::MailboxStatus { items, .. } =
                    &resp.body
                {
                    for item in items {
                        if item.name.of(line).eq_ignore_ascii_case(b"UIDVALIDITY") {
                            return u32::try_from(item.value)
                                .map_err(|_| ApplyError::Refused("bad UIDVALIDITY".to_string()));
                        }
                    }
                }
            }
        }
        Err(ApplyError::Refused(format!(
            "STATUS {mailbox} gave no UIDVALIDITY"
        )))
    }

    pub(super) fn map_of(&self, user: &str, uv: u32) -> Result<MailboxMap, ApplyError> {
        self.maps
            .get(user, uv)
            .map(|m| (*m).clone())
            .ok_or_else(|| ApplyError::Refused(format!("no local mailbox for UIDVALIDITY {uv}")))
    }
}

#[cfg(test)]
mod tests {
    use super::{
        destroys_evidence, is_soft, lane_run, route, single_mailbox, Lanes, Route, MAX_LANES,
    };
    use tandem_state::{Replaces, Work};

    /// alice's COPY (or MOVE) of one message from A to B.
    fn copy_a_to_b(remove: bool) -> Work {
        Work::Copy {
            user: "alice".into(),
            from: "A".into(),
            from_uidvalidity: 1,
            to: "B".into(),
            to_uidvalidity: 2,
            pairs: vec![(1, 1)],
            remove,
        }
    }

    /// alice's STORE of \\Seen on one message of `mailbox`.
    fn store_in(mailbox: &str) -> Work {
        Work::Store {
            user: "alice".into(),
            mailbox: mailbox.into(),
            uidvalidity: 1,
            uids: vec![(1, 1)],
            mode: tandem_state::FlagMode::Add,
            flags: vec!["\\Seen".into()],
        }
    }

    #[test]
    fn a_no_without_code_is_soft_unless_cyrus_never_takes_the_message() {
        assert!(is_soft("Server shutting down"));
        assert!(is_soft("[UNAVAILABLE] try later"));
        assert!(!is_soft("[TRYCREATE] No such mailbox"));
        for cyrus in [
            "Message contains bare newlines",
            "Message contains NUL characters",
            "Message contains invalid header",
            "Message contains non-ASCII characters in headers",
            "Message has no header/body separator",
        ] {
            assert!(!is_soft(cyrus), "{cyrus}");
        }
    }

    fn append(replaces_node: Option<u64>) -> Work {
        Work::Append {
            user: "alice".into(),
            mailbox: "INBOX".into(),
            uidvalidity: 1,
            uids: vec![1],
            messages: Vec::new(),
            replaces: replaces_node.map(|node| Replaces {
                node,
                local_uidvalidity: 7,
                uids: vec![3],
            }),
        }
    }

    #[test]
    fn items_that_remove_messages_or_mailboxes_get_a_barrier_first() {
        let user = || "alice".to_string();
        let copy = copy_a_to_b;
        let cases: Vec<(Work, bool, Option<&str>)> = vec![
            (append(None), false, Some("INBOX")),
            // An adoption expunges its originals on their node only.
            (append(Some(1)), true, Some("INBOX")),
            (append(Some(2)), false, Some("INBOX")),
            (copy(false), false, None),
            (copy(true), true, None),
            (
                Work::Expunge {
                    user: user(),
                    mailbox: "A".into(),
                    uidvalidity: 1,
                    uids: vec![(1, 1)],
                },
                true,
                Some("A"),
            ),
            (store_in("A"), false, Some("A")),
            (
                Work::Delete {
                    user: user(),
                    name: "A".into(),
                    uidvalidity: 1,
                },
                true,
                None,
            ),
            (
                Work::Rename {
                    user: user(),
                    from: "A".into(),
                    to: "B".into(),
                    inbox: None,
                },
                true,
                None,
            ),
            (
                Work::Create {
                    user: user(),
                    name: "A".into(),
                    uidvalidity: 1,
                },
                false,
                None,
            ),
            (
                Work::Subscribe {
                    user: user(),
                    name: "A".into(),
                    on: true,
                },
                false,
                None,
            ),
        ];
        for (work, barrier, lane) in cases {
            assert_eq!(destroys_evidence(&work, 1), barrier, "{work:?}");
            assert_eq!(single_mailbox(&work), lane, "{work:?}");
        }
    }

    #[test]
    fn each_mailbox_keeps_its_session_and_mailbox_operations_run_alone() {
        let store = store_in("A");
        assert_eq!(route(&store, false), Route::Lane("A"));
        assert_eq!(route(&append(None), false), Route::Lane("INBOX"));
        // In doubt after a restart: looked for alone, on the same session.
        assert_eq!(route(&store, true), Route::LaneAlone("A"));
        for remove in [false, true] {
            let copy = copy_a_to_b(remove);
            assert_eq!(route(&copy, false), Route::LaneAlone("A"));
            assert_eq!(route(&copy, true), Route::LaneAlone("A"));
        }
        let rename = Work::Rename {
            user: "alice".into(),
            from: "A".into(),
            to: "B".into(),
            inbox: None,
        };
        let delete = Work::Delete {
            user: "alice".into(),
            name: "A".into(),
            uidvalidity: 1,
        };
        assert_eq!(route(&rename, false), Route::Alone);
        assert_eq!(route(&delete, false), Route::Alone);
    }

    #[test]
    fn lanes_are_bounded_and_the_least_recently_used_closes_first() {
        let mut lanes: Lanes<u32> = Lanes::default();
        let mut made = 0;
        for (k, mailbox) in ["INBOX", "A", "B", "C"].iter().enumerate() {
            *lanes.get(mailbox, || {
                made += 1;
                k as u32
            }) += 0;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!((made, lanes.0.len()), (4, MAX_LANES));
        // INBOX used again: A is now the least recently used.
        assert_eq!(*lanes.get("INBOX", || 99), 0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        lanes.get("D", || 4);
        assert!(!lanes.0.contains_key("A"));
        assert!(lanes.0.contains_key("INBOX") && lanes.0.contains_key("D"));
        // Taken out to run beside the others, then put back.
        let b = lanes.take("B", || 99);
        assert_eq!(b, 2);
        lanes.put("B".into(), b);
        assert_eq!(lanes.0.len(), MAX_LANES);
        lanes.close_idle(std::time::Duration::from_secs(3600));
        assert_eq!(lanes.0.len(), MAX_LANES);
        lanes.close_idle(std::time::Duration::ZERO);
        assert!(lanes.is_empty());
    }

    #[test]
    fn a_parallel_run_spans_at_most_max_lanes_mailboxes_and_stops_at_a_copy() {
        let store = |seq: u64, mailbox: &str| (seq, store_in(mailbox));
        let boxes = ["A", "B", "A", "C", "D", "B", "E", "A"];
        let batch: std::collections::VecDeque<_> = boxes
            .iter()
            .enumerate()
            .map(|(k, m)| store(10 + k as u64, m))
            .collect();
        // A, B, C, D: the fifth mailbox (E) ends the run.
        assert_eq!(MAX_LANES, 4);
        assert_eq!(lane_run(&batch, 0), 6);
        // Items in doubt (at or below the horizon) run alone.
        assert_eq!(lane_run(&batch, 10), 0);
        let mut with_copy = batch.clone();
        with_copy.insert(2, (99, copy_a_to_b(false)));
        assert_eq!(lane_run(&with_copy, 0), 2);
    }
}
