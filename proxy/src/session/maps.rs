//! The maps a session rewrites backend responses with (local -> canonical),
//! the selected mailbox's cache of them, and the rewriting of one response
//! line. A backend UID without a canonical mapping never reaches the
//! client: the response carrying it waits briefly for the applier, then is
//! dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tandem_parser::response::Response;
use tandem_parser::rewrite::{rewrite_response, ResponseMaps, Scope};
use tandem_parser::seqset::Ranges;
use tandem_parser::uidmap::{map_ranges, UidMap};

use super::{Pending, Session};
use crate::apply::MailboxMap;
use crate::replication::Replication;
use tandem_state::Mailbox;

/// The maps a response is rewritten with.
pub(super) struct SessionMaps {
    rep: Arc<Replication>,
    user: String,
    pub(super) selected: Option<(Arc<MailboxMap>, Arc<Mailbox>)>,
    /// Local -> canonical, the messages gone since the SELECT included.
    pub(super) remembered: Option<Remembered>,
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
pub(super) struct Remembered {
    now: Arc<MailboxMap>,
    gone: Arc<BTreeMap<u32, u32>>,
}

impl Remembered {
    /// The highest canonical UID, gone messages included (`*`).
    pub(super) fn max_canonical(&self) -> u32 {
        let gone = self.gone.values().max().copied();
        self.now.to_local.max_from().max(gone).unwrap_or(0)
    }

    /// Canonical UIDs as local ones, gone messages included.
    pub(super) fn to_local(&self, canonical: &Ranges) -> Ranges {
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
}
