//! The `\Seen` a FETCH sets as a side effect (RFC 9051 section 6.4.5: a
//! body item without `.PEEK`), replicated like a STORE. Before such a FETCH
//! goes to the backend, the session learns which of its messages lack
//! `\Seen` (`FETCH ... (UID FLAGS)` on its own connection); when the FETCH's
//! tagged OK comes, `+FLAGS (\Seen)` on those is committed to the log
//! before the client gets the OK. The FETCH's own answer (with the new
//! FLAGS) is the backend's, as a direct client would get it; the applier's
//! STORE on this node changes nothing there, and sets `\Seen` everywhere
//! else.

use tandem_parser::command::{Command, SetArg};
use tandem_parser::reply::{self, Reply};
use tandem_parser::response::Response;
use tandem_parser::seqset::Ranges;
use tandem_parser::uidmap::UidMap;
use tandem_state::{FlagMode, Op, Outcome};

use super::{End, Session};
use crate::replication::MutateError;
use crate::tls::Stream;

/// Whether FETCH items (raw, a list or one item) set `\Seen`: `BODY[...]`,
/// `BINARY[...]`, `RFC822` or `RFC822.TEXT` (not their `.PEEK` forms, not
/// `RFC822.HEADER`, `RFC822.SIZE` or `BODY` without a section). Words inside
/// a section (`BODY.PEEK[HEADER.FIELDS (RFC822)]`) are not items.
pub(super) fn sets_seen(items: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut word: Vec<u8> = Vec::new();
    let mut found = false;
    let mut end_word = |word: &mut Vec<u8>| {
        let w = word.to_ascii_uppercase();
        if w.starts_with(b"BODY[")
            || w.starts_with(b"BINARY[")
            || w == b"RFC822"
            || w == b"RFC822.TEXT"
        {
            found = true;
        }
        word.clear();
    };
    for &b in items {
        match b {
            b'[' => {
                if depth == 0 {
                    word.push(b);
                    end_word(&mut word);
                }
                depth += 1;
            }
            b']' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            b' ' | b'(' | b')' => end_word(&mut word),
            _ => word.push(b),
        }
    }
    end_word(&mut word);
    found
}

/// Whether a FETCH response's FLAGS hold `\Seen`.
fn has_seen(line: &[u8]) -> bool {
    super::deliver::fetched_flags(line).is_some_and(|(flags, _)| {
        flags
            .split(|&b| b == b' ' || b == b'(' || b == b')')
            .any(|f| f.eq_ignore_ascii_case(b"\\Seen"))
    })
}

impl Session {
    /// The canonical UIDs among the messages `set` names that lack
    /// `\Seen` now, as this session's backend connection sees them; `None`
    /// when there are none (or they cannot be told).
    pub(super) async fn unseen(
        &mut self,
        cmd: &Command<'_>,
        set: &SetArg,
        backend: &mut Stream,
    ) -> Result<Option<Ranges>, End> {
        let SetArg::Set { set, span } = set else {
            return Ok(None);
        };
        let Some(map) = self.maps().and_then(|m| m.remembered) else {
            return Ok(None);
        };
        let mut q = Vec::new();
        if cmd.uid {
            let local = map.to_local(&set.resolve(map.max_canonical()));
            if local.is_empty() {
                return Ok(None);
            }
            q.extend_from_slice(b"UID FETCH ");
            q.extend_from_slice(&local.to_bytes());
        } else {
            let Some(numbers) = self.backend_numbers(set, span.of(cmd.buf)) else {
                return Ok(None);
            };
            q.extend_from_slice(b"FETCH ");
            q.extend_from_slice(&numbers);
        }
        q.extend_from_slice(b" (UID FLAGS)");
        let (ok, _, answer) = self.fetch_with_uids(backend, &q).await?;
        if !ok {
            return Ok(None);
        }
        let Some(map) = self.maps().and_then(|m| m.selected).map(|s| s.0) else {
            return Ok(None);
        };
        let mut out = Ranges::new();
        for line in answer.iter().filter(|l| !has_seen(l)) {
            let uid = Response::parse(line).ok().and_then(|r| r.fetch_uid());
            if let Some(c) = uid.and_then(|u| map.to_canon.map_one(u)) {
                out.insert(c, c);
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// At a tagged line: if it ends the FETCH that set `\Seen` with OK,
    /// commits `+FLAGS (\Seen)` on its messages first.
    pub(super) async fn replicate_seen(&mut self, line: &[u8]) {
        let Some((tag, _)) = &self.seen else {
            return;
        };
        if reply::tag(line) != Some(tag.as_slice()) {
            return;
        }
        let Some((_, uids)) = self.seen.take() else {
            return;
        };
        if !Reply::parse(line).is_ok_and(|r| r.is_ok()) {
            return;
        }
        let (Some(rep), Some(user), Some(s)) = (&self.rep, &self.user, &self.selected) else {
            return;
        };
        let op = Op::Store {
            mailbox: s.name.clone(),
            uidvalidity: s.uidvalidity,
            uids: uids.ranges().to_vec(),
            mode: FlagMode::Add,
            flags: vec!["\\Seen".to_string()],
        };
        match rep.mutate(user, op).await {
            Ok(Outcome::Ok { .. }) => {}
            Ok(Outcome::No { text, .. }) => {
                tracing::warn!(reason = %text, "the \\Seen a FETCH set was refused");
            }
            Err(MutateError::Unavailable(e)) => {
                // The FETCH is answered; this node's backend has the flag.
                tracing::warn!(error = %e, "the \\Seen a FETCH set is not replicated");
                crate::metrics::count_seen_not_replicated();
            }
            Err(MutateError::Backend { text, .. }) => {
                tracing::warn!(reason = %text, "this node's backend refused the \\Seen a FETCH set");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_fetch_items_set_seen() {
        for (items, sets) in [
            ("BODY[]", true),
            ("(UID BODY[TEXT])", true),
            ("(FLAGS body[header.fields (subject)])", true),
            ("BODY[1.2]<0.100>", true),
            ("BINARY[1]", true),
            ("RFC822", true),
            ("(UID RFC822.TEXT)", true),
            ("(UID BODY.PEEK[])", false),
            ("BINARY.PEEK[1]", false),
            ("(RFC822.SIZE RFC822.HEADER)", false),
            ("(BODY BODYSTRUCTURE ENVELOPE)", false),
            ("FULL", false),
            ("BODY.PEEK[HEADER.FIELDS (RFC822 BODY[])]", false),
            ("(FLAGS)", false),
        ] {
            assert_eq!(sets_seen(items.as_bytes()), sets, "{items}");
        }
    }

    #[test]
    fn seen_is_read_from_the_fetched_flags() {
        assert!(has_seen(b"* 1 FETCH (UID 4 FLAGS (\\Answered \\Seen))\r\n"));
        assert!(has_seen(b"* 1 FETCH (UID 4 FLAGS (\\seen))\r\n"));
        assert!(!has_seen(b"* 1 FETCH (UID 4 FLAGS (\\Flagged $Seen))\r\n"));
        assert!(!has_seen(b"* 1 FETCH (UID 4 FLAGS ())\r\n"));
    }
}
