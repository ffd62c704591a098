//! Span-based rewriting: translate the UID-carrying parts of a command or
//! a response and leave every other byte exactly as it was.
//!
//! Commands go canonical -> local ([`command_edits`]); responses go
//! local -> canonical ([`response_edits`], with a [`ResponseMaps`] that
//! knows which mailbox each part belongs to). Both produce a list of
//! [`Edit`]s; [`apply`] splices them into the original bytes.
//!
//! Invariants, one line each:
//! - Bytes outside the edited spans are copied unchanged; a part whose
//!   translation equals its original value is not edited at all, so the
//!   identity map changes no byte.
//! - A single UID (FETCH UID, ESEARCH MIN/MAX) without a mapping is an
//!   error ([`RewriteError::Unmapped`]), never passed through: a local UID
//!   shown to a client as if it were canonical would name another message.
//! - In sets, unmapped UIDs are dropped ([`crate::uidmap`]); a set left
//!   empty is an error ([`RewriteError::NoneMapped`]), since IMAP cannot
//!   express it.
//! - APPENDUID and COPYUID pair UIDs by position (RFC 4315 section 3), so
//!   every UID in them must be mapped, or the whole code is an error.
//! - SEARCH numbers are rewritten only when the caller says they are UIDs
//!   (the answer to UID SEARCH); plain SEARCH returns sequence numbers.
//! - A UID ESEARCH whose ALL holds unmapped UIDs (or whose ALL tandem
//!   asked for) is rebuilt from the mapped ALL: unmapped UIDs drop out of
//!   MIN, MAX and COUNT too. Without ALL (the proxy adds it where it can),
//!   COUNT is left as the backend sent it.

use std::borrow::Cow;

use crate::command::{Command, SetArg};
use crate::lexer::Span;
use crate::response::{Code, EsearchItem, FetchItem, Response, ResponseBody};
use crate::seqset::{push_u32, Ranges, SequenceSet};
use crate::uidmap::{map_ranges, map_sequence_set, UidMap};

/// Replace the bytes of `span` with `bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// What to replace, in the original buffer.
    pub span: Span,
    /// The replacement.
    pub bytes: Vec<u8>,
}

/// Why a command or response could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// A single value (UID, UIDVALIDITY, UIDNEXT) has no mapping.
    #[error("{what} {value} has no mapping")]
    Unmapped {
        /// What kind of value.
        what: &'static str,
        /// The value.
        value: u32,
        /// Where it is.
        span: Span,
    },
    /// No UID of a set has a mapping (or, for APPENDUID / COPYUID, not all).
    #[error("{what} at {}..{} has no mapping", span.start, span.end)]
    NoneMapped {
        /// What kind of set.
        what: &'static str,
        /// Where it is.
        span: Span,
    },
    /// No map for the mailbox a part belongs to was given.
    #[error("no UID map for the {what}")]
    NoMap {
        /// Which mailbox was missing.
        what: &'static str,
    },
}

/// Splices `edits` (sorted by position, not overlapping) into `buf`.
/// Borrows `buf` unchanged when there is nothing to do.
pub fn apply<'a>(buf: &'a [u8], edits: &[Edit]) -> Cow<'a, [u8]> {
    if edits.is_empty() {
        return Cow::Borrowed(buf);
    }
    let grow: usize = edits.iter().map(|e| e.bytes.len()).sum();
    let mut out = Vec::with_capacity(buf.len() + grow);
    let mut at = 0;
    for e in edits {
        out.extend_from_slice(&buf[at..e.span.start]);
        out.extend_from_slice(&e.bytes);
        at = e.span.end;
    }
    out.extend_from_slice(&buf[at..]);
    Cow::Owned(out)
}

fn set_edit(
    buf: &[u8],
    set: &SequenceSet,
    span: Span,
    star: u32,
    map: &dyn UidMap,
    what: &'static str,
) -> Result<Option<Edit>, RewriteError> {
    let out = map_sequence_set(set, star, map).ok_or(RewriteError::NoneMapped { what, span })?;
    let bytes = out.to_bytes();
    if bytes == span.of(buf) {
        return Ok(None);
    }
    Ok(Some(Edit { span, bytes }))
}

/// A set whose every member must be mapped (APPENDUID, COPYUID).
fn complete_set_edit(
    buf: &[u8],
    set: &SequenceSet,
    span: Span,
    map: &dyn UidMap,
    what: &'static str,
) -> Result<Option<Edit>, RewriteError> {
    let resolved = set.resolve(u32::MAX);
    let image = map_ranges(&resolved, map);
    if image.len() != resolved.len() {
        return Err(RewriteError::NoneMapped { what, span });
    }
    set_edit(buf, set, span, u32::MAX, map, what)
}

fn number_edit(span: Span, old: u32, new: u32) -> Option<Edit> {
    if old == new {
        return None;
    }
    let mut bytes = Vec::with_capacity(10);
    push_u32(&mut bytes, new);
    Some(Edit { span, bytes })
}

/// The edits that carry the UID sets of `cmd` (see
/// [`Command::uid_sets`]) from canonical to local UIDs through `map`,
/// `*` standing for `star`, the largest canonical UID of the selected
/// mailbox (0 if it is empty). `$` (SEARCHRES) is left alone.
pub fn command_edits(
    cmd: &Command<'_>,
    star: u32,
    map: &dyn UidMap,
) -> Result<Vec<Edit>, RewriteError> {
    let mut edits = Vec::new();
    for arg in cmd.uid_sets() {
        if let SetArg::Set { set, span } = arg {
            if let Some(e) = set_edit(cmd.buf, set, *span, star, map, "UID set")? {
                edits.push(e);
            }
        }
    }
    edits.sort_by_key(|e| e.span.start);
    Ok(edits)
}

/// [`command_edits`] applied: the command to send to the backend.
pub fn rewrite_command<'a>(
    cmd: &Command<'a>,
    star: u32,
    map: &dyn UidMap,
) -> Result<Cow<'a, [u8]>, RewriteError> {
    Ok(apply(cmd.buf, &command_edits(cmd, star, map)?))
}

/// Which mailbox a part of a response belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The selected mailbox (FETCH, SEARCH, ESEARCH, VANISHED, the
    /// UIDNEXT / UIDVALIDITY codes sent while selecting, COPYUID source).
    Selected,
    /// The destination of the APPEND, COPY or MOVE being answered
    /// (APPENDUID, COPYUID destination and UIDVALIDITY).
    Destination,
    /// A mailbox named in the response (STATUS), as written on the wire
    /// (decoded from quoted or literal form).
    Mailbox(&'a [u8]),
}

/// What [`response_edits`] needs from the proxy: the local -> canonical
/// maps, in the context of the command being answered.
pub trait ResponseMaps {
    /// The local -> canonical UID map of a mailbox; `None` if unknown
    /// (then any UID in that scope is an error).
    fn uids(&self, scope: Scope<'_>) -> Option<&dyn UidMap>;
    /// The canonical UIDVALIDITY for a local one; `None` if unknown.
    fn uid_validity(&self, scope: Scope<'_>, local: u32) -> Option<u32>;
    /// The canonical UIDNEXT for a local one; `None` if unknown.
    fn uid_next(&self, scope: Scope<'_>, local: u32) -> Option<u32>;
    /// Whether the numbers of a `* SEARCH` response are UIDs (the command
    /// answered was UID SEARCH).
    fn search_returns_uids(&self) -> bool;
    /// Whether tandem added `ALL` to the RETURN options of the UID SEARCH
    /// answered (to count what the client sees), so that the `ALL` of its
    /// `* ESEARCH` response goes after MIN, MAX and COUNT are computed.
    fn esearch_added_all(&self) -> bool {
        false
    }
}

fn scope_map<'m>(
    maps: &'m dyn ResponseMaps,
    scope: Scope<'_>,
    what: &'static str,
) -> Result<&'m dyn UidMap, RewriteError> {
    maps.uids(scope).ok_or(RewriteError::NoMap { what })
}

fn uid_one(
    map: &dyn UidMap,
    value: u32,
    span: Span,
    what: &'static str,
) -> Result<Option<Edit>, RewriteError> {
    let new = map
        .map_one(value)
        .ok_or(RewriteError::Unmapped { what, value, span })?;
    Ok(number_edit(span, value, new))
}

fn code_edits(
    buf: &[u8],
    code: &Code,
    maps: &dyn ResponseMaps,
    edits: &mut Vec<Edit>,
) -> Result<(), RewriteError> {
    match code {
        Code::UidNext { value, span } => {
            let new = maps
                .uid_next(Scope::Selected, *value)
                .ok_or(RewriteError::Unmapped {
                    what: "UIDNEXT",
                    value: *value,
                    span: *span,
                })?;
            edits.extend(number_edit(*span, *value, new));
        }
        Code::UidValidity { value, span } => {
            let new = maps
                .uid_validity(Scope::Selected, *value)
                .ok_or(RewriteError::Unmapped {
                    what: "UIDVALIDITY",
                    value: *value,
                    span: *span,
                })?;
            edits.extend(number_edit(*span, *value, new));
        }
        Code::AppendUid {
            uidvalidity,
            uidvalidity_span,
            uids,
            uids_span,
        } => {
            let v = maps.uid_validity(Scope::Destination, *uidvalidity).ok_or(
                RewriteError::Unmapped {
                    what: "APPENDUID UIDVALIDITY",
                    value: *uidvalidity,
                    span: *uidvalidity_span,
                },
            )?;
            edits.extend(number_edit(*uidvalidity_span, *uidvalidity, v));
            let map = scope_map(maps, Scope::Destination, "APPEND destination")?;
            edits.extend(complete_set_edit(
                buf,
                uids,
                *uids_span,
                map,
                "APPENDUID set",
            )?);
        }
        Code::CopyUid {
            uidvalidity,
            uidvalidity_span,
            source,
            source_span,
            dest,
            dest_span,
        } => {
            let v = maps.uid_validity(Scope::Destination, *uidvalidity).ok_or(
                RewriteError::Unmapped {
                    what: "COPYUID UIDVALIDITY",
                    value: *uidvalidity,
                    span: *uidvalidity_span,
                },
            )?;
            edits.extend(number_edit(*uidvalidity_span, *uidvalidity, v));
            let src = scope_map(maps, Scope::Selected, "selected mailbox")?;
            edits.extend(complete_set_edit(
                buf,
                source,
                *source_span,
                src,
                "COPYUID source set",
            )?);
            let dst = scope_map(maps, Scope::Destination, "COPY destination")?;
            edits.extend(complete_set_edit(
                buf,
                dest,
                *dest_span,
                dst,
                "COPYUID destination set",
            )?);
        }
        _ => {}
    }
    Ok(())
}

/// The edits that carry every UID-carrying part of `resp` from local to
/// canonical numbers. See the module invariants for unmapped values.
pub fn response_edits(
    resp: &Response<'_>,
    maps: &dyn ResponseMaps,
) -> Result<Vec<Edit>, RewriteError> {
    let buf = resp.buf;
    let mut edits = Vec::new();
    match &resp.body {
        ResponseBody::Status {
            code: Some(code), ..
        }
        | ResponseBody::Continue {
            code: Some(code), ..
        } => {
            code_edits(buf, code, maps, &mut edits)?;
        }
        ResponseBody::Fetch { items, .. } => {
            for item in items {
                if let FetchItem::Uid { value, span } = item {
                    let map = scope_map(maps, Scope::Selected, "selected mailbox")?;
                    edits.extend(uid_one(map, *value, *span, "FETCH UID")?);
                }
            }
        }
        ResponseBody::Search { numbers, .. } if maps.search_returns_uids() => {
            let map = scope_map(maps, Scope::Selected, "selected mailbox")?;
            for &(value, span) in numbers {
                match map.map_one(value) {
                    Some(new) => edits.extend(number_edit(span, value, new)),
                    // Drop the number with the SP before it.
                    None => edits.push(Edit {
                        span: Span {
                            start: span.start - 1,
                            end: span.end,
                        },
                        bytes: Vec::new(),
                    }),
                }
            }
        }
        ResponseBody::Esearch {
            uid: true, items, ..
        } if maps.esearch_added_all() || esearch_hides(items, maps) => {
            let map = scope_map(maps, Scope::Selected, "selected mailbox")?;
            edits.extend(esearch_from_all(buf, items, map, maps.esearch_added_all()));
        }
        ResponseBody::Esearch {
            uid: true, items, ..
        } => {
            let map = scope_map(maps, Scope::Selected, "selected mailbox")?;
            for item in items {
                match item {
                    EsearchItem::Min { value, span } => {
                        edits.extend(uid_one(map, *value, *span, "ESEARCH MIN")?)
                    }
                    EsearchItem::Max { value, span } => {
                        edits.extend(uid_one(map, *value, *span, "ESEARCH MAX")?)
                    }
                    EsearchItem::All { set, span } => {
                        edits.extend(set_edit(buf, set, *span, 0, map, "ESEARCH ALL")?);
                    }
                    _ => {}
                }
            }
        }
        ResponseBody::MailboxStatus { mailbox, items } => {
            let name = mailbox.value(buf);
            for item in items {
                let what = item.name.of(buf);
                let Ok(value) = u32::try_from(item.value) else {
                    continue;
                };
                let new = if what.eq_ignore_ascii_case(b"UIDNEXT") {
                    Some(maps.uid_next(Scope::Mailbox(&name), value).ok_or(
                        RewriteError::Unmapped {
                            what: "STATUS UIDNEXT",
                            value,
                            span: item.span,
                        },
                    )?)
                } else if what.eq_ignore_ascii_case(b"UIDVALIDITY") {
                    Some(maps.uid_validity(Scope::Mailbox(&name), value).ok_or(
                        RewriteError::Unmapped {
                            what: "STATUS UIDVALIDITY",
                            value,
                            span: item.span,
                        },
                    )?)
                } else {
                    None
                };
                if let Some(new) = new {
                    edits.extend(number_edit(item.span, value, new));
                }
            }
        }
        ResponseBody::Vanished { uids, span, .. } => {
            let map = scope_map(maps, Scope::Selected, "selected mailbox")?;
            edits.extend(set_edit(buf, uids, *span, 0, map, "VANISHED set")?);
        }
        _ => {}
    }
    edits.sort_by_key(|e| e.span.start);
    Ok(edits)
}

/// Whether the ALL of an ESEARCH response holds UIDs without a canonical
/// UID (mail hidden on this node).
fn esearch_hides(items: &[EsearchItem], maps: &dyn ResponseMaps) -> bool {
    let Some(map) = maps.uids(Scope::Selected) else {
        return false;
    };
    items.iter().any(|i| match i {
        EsearchItem::All { set, .. } => {
            let all = set.resolve(u32::MAX);
            map_ranges(&all, map).len() < all.len()
        }
        _ => false,
    })
}

/// Rewrites the data of a `* ESEARCH ... UID` response that has `ALL`:
/// UIDs with no canonical UID (mail hidden on this node) drop out of ALL,
/// and MIN, MAX and COUNT are those of what is left, so they agree with
/// what the client can see. Without a match MIN, MAX and ALL are left out
/// (RFC 4731). `strip_all` leaves out ALL too (tandem asked for it).
fn esearch_from_all(
    buf: &[u8],
    items: &[EsearchItem],
    map: &dyn UidMap,
    strip_all: bool,
) -> Option<Edit> {
    if items.is_empty() {
        return None;
    }
    let keyword = |value: &Span, len: usize| value.start.saturating_sub(len + 1);
    let mut found = Ranges::new();
    let (mut start, mut end) = (usize::MAX, 0);
    for item in items {
        let (s, e) = match item {
            EsearchItem::Min { span, .. } | EsearchItem::Max { span, .. } => {
                (keyword(span, 3), span.end)
            }
            EsearchItem::Count { span, .. } => (keyword(span, 5), span.end),
            EsearchItem::All { set, span } => {
                found = found.union(&map_ranges(&set.resolve(u32::MAX), map));
                (keyword(span, 3), span.end)
            }
            EsearchItem::Other { name, value } => (name.start, value.end),
        };
        start = start.min(s);
        end = end.max(e);
    }
    let mut out = Vec::new();
    for item in items {
        let piece: Option<Vec<u8>> = match item {
            EsearchItem::Min { .. } => found.min().map(|v| format!("MIN {v}").into_bytes()),
            EsearchItem::Max { .. } => found.max().map(|v| format!("MAX {v}").into_bytes()),
            EsearchItem::Count { .. } => Some(format!("COUNT {}", found.len()).into_bytes()),
            EsearchItem::All { .. } if strip_all || found.is_empty() => None,
            EsearchItem::All { .. } => {
                let mut v = b"ALL ".to_vec();
                v.extend_from_slice(&found.to_bytes());
                Some(v)
            }
            EsearchItem::Other { name, value } => Some(buf[name.start..value.end].to_vec()),
        };
        if let Some(piece) = piece {
            out.push(b' ');
            out.extend_from_slice(&piece);
        }
    }
    // From the SP before the first item to the end of the last.
    let span = Span {
        start: start.checked_sub(1)?,
        end,
    };
    (span.of(buf) != out.as_slice()).then_some(Edit { span, bytes: out })
}

/// The RETURN options of a UID SEARCH (`(MIN COUNT)`, raw) with `ALL`
/// added, when MIN, MAX or COUNT are asked without ALL: the answer's ALL
/// lets MIN, MAX and COUNT leave out mail hidden on this node (see
/// [`ResponseMaps::esearch_added_all`]). `None` when nothing is to add: ALL
/// or nothing asked (`()` means ALL), SAVE asked, or options unknown here.
pub fn return_with_all(raw: &[u8]) -> Option<Vec<u8>> {
    let inner = raw.strip_prefix(b"(")?.strip_suffix(b")")?;
    let words: Vec<&[u8]> = inner
        .split(|b| *b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    let is = |w: &[u8], k: &[u8]| w.eq_ignore_ascii_case(k);
    let counted = words
        .iter()
        .all(|w| is(w, b"MIN") || is(w, b"MAX") || is(w, b"COUNT"));
    if words.is_empty() || !counted {
        return None;
    }
    let mut out = raw[..raw.len() - 1].to_vec();
    out.extend_from_slice(b" ALL)");
    Some(out)
}

/// [`response_edits`] applied: the response to send to the client.
pub fn rewrite_response<'a>(
    resp: &Response<'a>,
    maps: &dyn ResponseMaps,
) -> Result<Cow<'a, [u8]>, RewriteError> {
    Ok(apply(resp.buf, &response_edits(resp, maps)?))
}

/// The edits that remove from a CAPABILITY response, a `[CAPABILITY ...]`
/// code or an ENABLED response every name for which `drop` says yes (with
/// the SP before it), so that capabilities tandem cannot keep consistent
/// across nodes (CONDSTORE, QRESYNC, OBJECTID, ...) never reach a client.
/// Names are compared as written; `drop` should compare case-insensitively.
pub fn capability_edits(resp: &Response<'_>, drop: &dyn Fn(&[u8]) -> bool) -> Vec<Edit> {
    let names: &[Span] = match &resp.body {
        ResponseBody::Capability(v) | ResponseBody::Enabled(v) => v,
        ResponseBody::Status {
            code: Some(Code::Capability(v)),
            ..
        }
        | ResponseBody::Continue {
            code: Some(Code::Capability(v)),
            ..
        } => v,
        _ => return Vec::new(),
    };
    names
        .iter()
        .filter(|s| drop(s.of(resp.buf)))
        .map(|s| Edit {
            span: Span {
                start: s.start - 1,
                end: s.end,
            },
            bytes: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uidmap::tests::{invert, sparse};
    use crate::uidmap::{FnMap, Identity};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Maps for tests: one UID map for the selected mailbox and one for the
    /// destination; UIDVALIDITY and UIDNEXT shifted by fixed amounts.
    struct Maps<'m> {
        selected: &'m dyn UidMap,
        dest: &'m dyn UidMap,
        validity_shift: i64,
        next_shift: i64,
        search_uids: bool,
        added_all: bool,
    }

    fn shift(v: u32, by: i64) -> Option<u32> {
        u32::try_from(i64::from(v) + by).ok().filter(|&v| v > 0)
    }

    impl ResponseMaps for Maps<'_> {
        fn uids(&self, scope: Scope<'_>) -> Option<&dyn UidMap> {
            match scope {
                Scope::Selected => Some(self.selected),
                Scope::Destination => Some(self.dest),
                Scope::Mailbox(_) => None,
            }
        }
        fn uid_validity(&self, _: Scope<'_>, local: u32) -> Option<u32> {
            shift(local, self.validity_shift)
        }
        fn uid_next(&self, _: Scope<'_>, local: u32) -> Option<u32> {
            shift(local, self.next_shift)
        }
        fn search_returns_uids(&self) -> bool {
            self.search_uids
        }
        fn esearch_added_all(&self) -> bool {
            self.added_all
        }
    }

    fn identity_maps() -> Maps<'static> {
        Maps {
            selected: &Identity,
            dest: &Identity,
            validity_shift: 0,
            next_shift: 0,
            search_uids: true,
            added_all: false,
        }
    }

    fn rw_resp(b: &[u8], maps: &dyn ResponseMaps) -> Result<Vec<u8>, RewriteError> {
        let r = Response::parse(b).unwrap();
        rewrite_response(&r, maps).map(|c| c.into_owned())
    }

    fn rw_cmd(b: &[u8], star: u32, map: &dyn UidMap) -> Result<Vec<u8>, RewriteError> {
        let c = Command::parse(b).unwrap();
        rewrite_command(&c, star, map).map(|c| c.into_owned())
    }

    #[test]
    fn uid_command_sets_are_rewritten_and_nothing_else() {
        let m: BTreeMap<u32, u32> = (1..=20).map(|k| (k, k + 1000)).collect();
        assert_eq!(
            rw_cmd(b"A3 uid copy 2:4,8 \"2:4\"\r\n", 20, &m).unwrap(),
            b"A3 uid copy 1002:1004,1008 \"2:4\"\r\n"
        );
        assert_eq!(
            rw_cmd(b"a UID STORE 5:* +FLAGS.SILENT (\\Seen 7)\r\n", 20, &m).unwrap(),
            b"a UID STORE 1005:1020 +FLAGS.SILENT (\\Seen 7)\r\n"
        );
        // Sequence numbers are not UIDs.
        assert_eq!(
            rw_cmd(b"a FETCH 2:4 (UID)\r\n", 20, &m).unwrap(),
            b"a FETCH 2:4 (UID)\r\n"
        );
        // SEARCH: only the UID criteria.
        assert_eq!(
            rw_cmd(b"a SEARCH 1:3 UID 1:3 SUBJECT UID\r\n", 20, &m).unwrap(),
            b"a SEARCH 1:3 UID 1001:1003 SUBJECT UID\r\n"
        );
        assert_eq!(
            rw_cmd(b"a UID EXPUNGE 7\r\n", 20, &m).unwrap(),
            b"a UID EXPUNGE 1007\r\n"
        );
        assert_eq!(
            rw_cmd(b"a UID FETCH $ FLAGS\r\n", 20, &m).unwrap(),
            b"a UID FETCH $ FLAGS\r\n"
        );
    }

    #[test]
    fn unmapped_command_uids_are_never_replaced_by_another_uid() {
        let m = sparse(&[2, 5], 20);
        assert_eq!(
            rw_cmd(b"a UID FETCH 1:10 FLAGS\r\n", 10, &m).unwrap(),
            b"a UID FETCH 20,23 FLAGS\r\n"
        );
        assert!(matches!(
            rw_cmd(b"a UID STORE 3 +FLAGS (\\Deleted)\r\n", 10, &m),
            Err(RewriteError::NoneMapped { .. })
        ));
    }

    #[test]
    fn rfc4315_appenduid_and_copyuid_are_rewritten_completely_or_not_at_all() {
        let sel: BTreeMap<u32, u32> = [(304, 4), (319, 19), (320, 20)].into_iter().collect();
        let dst: BTreeMap<u32, u32> = [(3956, 56), (3957, 57), (3958, 58)].into_iter().collect();
        let maps = Maps {
            selected: &sel,
            dest: &dst,
            validity_shift: 1000,
            next_shift: 0,
            search_uids: false,
            added_all: false,
        };
        assert_eq!(
            rw_resp(
                b"A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
                &maps
            )
            .unwrap(),
            b"A004 OK [COPYUID 39505 4,19:20 56:58] Done\r\n"
        );
        assert_eq!(
            rw_resp(
                b"A003 OK [APPENDUID 38505 3957] APPEND completed\r\n",
                &maps
            )
            .unwrap(),
            b"A003 OK [APPENDUID 39505 57] APPEND completed\r\n"
        );
        // 3959 has no mapping: the pairing would break, so no rewrite.
        assert!(matches!(
            rw_resp(
                b"A004 OK [COPYUID 38505 304,319:320 3956:3957,3959] Done\r\n",
                &maps
            ),
            Err(RewriteError::NoneMapped {
                what: "COPYUID destination set",
                ..
            })
        ));
        assert!(matches!(
            rw_resp(b"A OK [APPENDUID 38505 3955:3956] x\r\n", &maps),
            Err(RewriteError::NoneMapped { .. })
        ));
    }

    #[test]
    fn fetch_uid_without_mapping_is_an_error() {
        let sel = sparse(&[7], 70);
        let maps = Maps {
            selected: &sel,
            ..identity_maps()
        };
        assert_eq!(
            rw_resp(b"* 1 FETCH (FLAGS (\\Seen) UID 7)\r\n", &maps).unwrap(),
            b"* 1 FETCH (FLAGS (\\Seen) UID 70)\r\n"
        );
        assert_eq!(
            rw_resp(b"* 1 FETCH (FLAGS (\\Seen) UID 8)\r\n", &maps),
            Err(RewriteError::Unmapped {
                what: "FETCH UID",
                value: 8,
                span: Span { start: 29, end: 30 }
            })
        );
    }

    #[test]
    fn fetch_body_literal_is_never_touched() {
        let sel = FnMap(|u: u32| Some(u + 100));
        let maps = Maps {
            selected: &sel,
            ..identity_maps()
        };
        let b = b"* 1 FETCH (UID 5 BODY[] {10}\r\nUID 5 ))\r\n)\r\n";
        assert_eq!(
            rw_resp(b, &maps).unwrap(),
            b"* 1 FETCH (UID 105 BODY[] {10}\r\nUID 5 ))\r\n)\r\n"
        );
    }

    #[test]
    fn streamed_fetch_head_rewrite_matches_the_whole_rewrite() {
        use crate::frame::{Limits, ResponseFramer, Segment};
        let sel = FnMap(|u: u32| Some(u + 100));
        let maps = Maps {
            selected: &sel,
            ..identity_maps()
        };
        let whole = b"* 3 FETCH (UID 7 BODY[] {11}\r\nhello UID 7 FLAGS (\\Seen))\r\n";
        let mut f = ResponseFramer::new(Limits::default());
        let Ok(Segment::Line {
            len,
            literal: Some(_),
        }) = f.next_segment(whole)
        else {
            panic!()
        };
        let head = Response::parse_fetch_head(&whole[..len]).unwrap();
        let mut streamed = rewrite_response(&head, &maps).unwrap().into_owned();
        streamed.extend_from_slice(&whole[len..]);
        assert_eq!(streamed, rw_resp(whole, &maps).unwrap());
        assert_eq!(&streamed[..20], b"* 3 FETCH (UID 107 B");
    }

    #[test]
    fn search_numbers_are_rewritten_only_after_uid_search() {
        let sel = sparse(&[2, 84, 882], 10);
        let mut maps = Maps {
            selected: &sel,
            ..identity_maps()
        };
        assert_eq!(
            rw_resp(b"* SEARCH 2 84 882\r\n", &maps).unwrap(),
            b"* SEARCH 10 13 16\r\n"
        );
        assert_eq!(
            rw_resp(b"* SEARCH 2 83 882\r\n", &maps).unwrap(),
            b"* SEARCH 10 16\r\n"
        );
        assert_eq!(rw_resp(b"* SEARCH 83\r\n", &maps).unwrap(), b"* SEARCH\r\n");
        maps.search_uids = false;
        assert_eq!(
            rw_resp(b"* SEARCH 2 84 882\r\n", &maps).unwrap(),
            b"* SEARCH 2 84 882\r\n"
        );
    }

    #[test]
    fn esearch_vanished_status_and_select_codes() {
        let sel: BTreeMap<u32, u32> = (1..=4000).map(|k| (k, k + 1)).collect();
        let maps = Maps {
            selected: &sel,
            dest: &Identity,
            validity_shift: 5,
            next_shift: 10,
            search_uids: false,
            added_all: false,
        };
        assert_eq!(
            rw_resp(
                b"* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800 COUNT 2\r\n",
                &maps
            )
            .unwrap(),
            b"* ESEARCH (TAG \"A285\") UID MIN 8 MAX 3801 COUNT 2\r\n"
        );
        assert_eq!(
            rw_resp(b"* ESEARCH (TAG \"A285\") MIN 7\r\n", &maps).unwrap(),
            b"* ESEARCH (TAG \"A285\") MIN 7\r\n"
        );
        assert_eq!(
            rw_resp(b"* ESEARCH UID ALL 4:10,20\r\n", &maps).unwrap(),
            b"* ESEARCH UID ALL 5:11,21\r\n"
        );
        assert_eq!(
            rw_resp(b"* VANISHED (EARLIER) 300:310,405\r\n", &maps).unwrap(),
            b"* VANISHED (EARLIER) 301:311,406\r\n"
        );
        assert_eq!(
            rw_resp(
                b"* STATUS INBOX (MESSAGES 3 UIDNEXT 44 UIDVALIDITY 9)\r\n",
                &maps
            )
            .unwrap(),
            b"* STATUS INBOX (MESSAGES 3 UIDNEXT 54 UIDVALIDITY 14)\r\n"
        );
        assert_eq!(
            rw_resp(b"* OK [UIDNEXT 4392] Predicted next UID\r\n", &maps).unwrap(),
            b"* OK [UIDNEXT 4402] Predicted next UID\r\n"
        );
        assert_eq!(
            rw_resp(b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n", &maps).unwrap(),
            b"* OK [UIDVALIDITY 3857529050] UIDs valid\r\n"
        );
    }

    #[test]
    fn all_is_added_only_to_counted_returns() {
        assert_eq!(return_with_all(b"(MIN COUNT)").unwrap(), b"(MIN COUNT ALL)");
        assert_eq!(return_with_all(b"(count)").unwrap(), b"(count ALL)");
        for raw in [
            &b"()"[..],
            b"(ALL)",
            b"(MIN ALL)",
            b"(SAVE MIN)",
            b"(PARTIAL 1:10)",
            b"MIN",
        ] {
            assert_eq!(
                return_with_all(raw),
                None,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    /// Mail hidden on this node (local UIDs 5 and 9 have no canonical UID)
    /// must not count: MIN, MAX and COUNT come from the mapped ALL.
    #[test]
    fn esearch_with_all_is_recounted_without_hidden_mail() {
        let sel: BTreeMap<u32, u32> = [(4, 40), (6, 60), (7, 70), (8, 80)].into();
        let mut maps = Maps {
            selected: &sel,
            dest: &Identity,
            validity_shift: 0,
            next_shift: 0,
            search_uids: true,
            added_all: false,
        };
        let cases: &[(&[u8], &[u8])] = &[
            (
                b"* ESEARCH (TAG \"a\") UID COUNT 6 MIN 4 MAX 9 ALL 4:9\r\n",
                b"* ESEARCH (TAG \"a\") UID COUNT 4 MIN 40 MAX 80 ALL 40,60,70,80\r\n",
            ),
            // The hidden ones are the extremes.
            (
                b"* ESEARCH (TAG \"a\") UID MIN 5 MAX 9 ALL 5,7,9\r\n",
                b"* ESEARCH (TAG \"a\") UID MIN 70 MAX 70 ALL 70\r\n",
            ),
            // Only hidden mail matched: COUNT 0, no MIN, MAX or ALL.
            (
                b"* ESEARCH (TAG \"a\") UID MIN 5 COUNT 2 ALL 5,9 MAX 9\r\n",
                b"* ESEARCH (TAG \"a\") UID COUNT 0\r\n",
            ),
            (
                b"* ESEARCH (TAG \"a\") UID ALL 5,9\r\n",
                b"* ESEARCH (TAG \"a\") UID\r\n",
            ),
            // Other items pass as they are.
            (
                b"* ESEARCH UID ALL 4:6 MODSEQ 917162500\r\n",
                b"* ESEARCH UID ALL 40,60 MODSEQ 917162500\r\n",
            ),
        ];
        for (i, (from, to)) in cases.iter().enumerate() {
            assert_eq!(
                String::from_utf8_lossy(&rw_resp(from, &maps).unwrap()),
                String::from_utf8_lossy(to),
                "case {i}"
            );
        }
        // ALL asked by tandem only: it goes after the counting.
        maps.added_all = true;
        assert_eq!(
            rw_resp(b"* ESEARCH (TAG \"b\") UID\r\n", &maps).unwrap(),
            b"* ESEARCH (TAG \"b\") UID\r\n"
        );
        assert_eq!(
            rw_resp(b"* ESEARCH (TAG \"b\") UID COUNT 0\r\n", &maps).unwrap(),
            b"* ESEARCH (TAG \"b\") UID COUNT 0\r\n"
        );
        assert_eq!(
            rw_resp(
                b"* ESEARCH (TAG \"b\") UID MIN 4 COUNT 6 ALL 4:9\r\n",
                &maps
            )
            .unwrap(),
            b"* ESEARCH (TAG \"b\") UID MIN 40 COUNT 4\r\n"
        );
    }

    #[test]
    fn capabilities_are_filtered_in_responses_and_codes() {
        let hide = |c: &[u8]| {
            [&b"CONDSTORE"[..], b"QRESYNC", b"OBJECTID"]
                .iter()
                .any(|h| c.eq_ignore_ascii_case(h))
        };
        let b = b"* CAPABILITY IMAP4rev1 condstore UIDPLUS QRESYNC MOVE\r\n";
        let r = Response::parse(b).unwrap();
        assert_eq!(
            &*apply(b, &capability_edits(&r, &hide)),
            b"* CAPABILITY IMAP4rev1 UIDPLUS MOVE\r\n"
        );
        let b = b"a OK [CAPABILITY IMAP4rev1 CONDSTORE] Logged in\r\n";
        let r = Response::parse(b).unwrap();
        assert_eq!(
            &*apply(b, &capability_edits(&r, &hide)),
            b"a OK [CAPABILITY IMAP4rev1] Logged in\r\n"
        );
        let b = b"* ENABLED CONDSTORE\r\n";
        let r = Response::parse(b).unwrap();
        assert_eq!(&*apply(b, &capability_edits(&r, &hide)), b"* ENABLED\r\n");
        let b = b"* 1 EXISTS\r\n";
        assert!(capability_edits(&Response::parse(b).unwrap(), &hide).is_empty());
    }

    #[test]
    fn missing_uidvalidity_mapping_is_an_error() {
        let maps = Maps {
            validity_shift: -10,
            ..identity_maps()
        };
        assert!(matches!(
            rw_resp(b"* OK [UIDVALIDITY 5] x\r\n", &maps),
            Err(RewriteError::Unmapped {
                what: "UIDVALIDITY",
                value: 5,
                ..
            })
        ));
    }

    /// Responses carrying UIDs, generated with UIDs in 1..=500.
    fn uid_response() -> impl Strategy<Value = Vec<u8>> {
        let uid = 1u32..500;
        let set = proptest::collection::vec((1u32..500, 0u32..5), 1..4).prop_map(|v| {
            v.iter()
                .map(|&(a, l)| {
                    if l == 0 {
                        a.to_string()
                    } else {
                        format!("{a}:{}", a + l)
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        });
        prop_oneof![
            (
                1u32..100,
                uid.clone(),
                proptest::collection::vec(any::<u8>(), 0..20)
            )
                .prop_map(|(n, u, body)| {
                    let mut v =
                        format!("* {n} FETCH (UID {u} BODY[] {{{}}}\r\n", body.len()).into_bytes();
                    v.extend_from_slice(&body);
                    v.extend_from_slice(b" FLAGS (\\Seen))\r\n");
                    v
                }),
            proptest::collection::vec(uid.clone(), 0..6).prop_map(|v| {
                let mut s = b"* SEARCH".to_vec();
                for u in v {
                    s.extend_from_slice(format!(" {u}").as_bytes());
                }
                s.extend_from_slice(b"\r\n");
                s
            }),
            (set.clone(), set.clone())
                .prop_map(|(a, b)| format!("A1 OK [COPYUID 77 {a} {b}] done\r\n").into_bytes()),
            set.clone()
                .prop_map(|a| format!("A1 OK [APPENDUID 77 {a}] done\r\n").into_bytes()),
            set.clone()
                .prop_map(|a| format!("* VANISHED (EARLIER) {a}\r\n").into_bytes()),
            (uid.clone(), uid.clone(), set).prop_map(|(a, b, s)| format!(
                "* ESEARCH (TAG \"x\") UID MIN {a} MAX {b} ALL {s}\r\n"
            )
            .into_bytes()),
            (uid.clone(), uid).prop_map(|(a, b)| format!(
                "* STATUS \"a b\" (UIDNEXT {a} UIDVALIDITY {b} MESSAGES 3)\r\n"
            )
            .into_bytes()),
            Just(b"* OK [UIDNEXT 12] x\r\n".to_vec()),
        ]
    }

    fn uid_command() -> impl Strategy<Value = Vec<u8>> {
        let set =
            proptest::collection::vec((1u32..500, 0u32..5, any::<bool>()), 1..4).prop_map(|v| {
                v.iter()
                    .map(|&(a, l, rev)| match (l, rev) {
                        (0, _) => a.to_string(),
                        (_, false) => format!("{a}:{}", a + l),
                        (_, true) => format!("{}:{a}", a + l),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            });
        prop_oneof![
            set.clone().prop_map(|s| format!("t UID FETCH {s} (UID FLAGS)\r\n").into_bytes()),
            set.clone().prop_map(|s| format!("t UID STORE {s} +FLAGS.SILENT (\\Deleted)\r\n").into_bytes()),
            set.clone().prop_map(|s| format!("t uid copy {s} \"Sent Items\"\r\n").into_bytes()),
            set.clone().prop_map(|s| format!("t UID MOVE {s} Trash\r\n").into_bytes()),
            set.clone().prop_map(|s| format!("t UID EXPUNGE {s}\r\n").into_bytes()),
            (set.clone(), set).prop_map(|(a, b)| format!("t SEARCH {a} OR UID {b} NOT UID {a}\r\n").into_bytes()),
        ]
    }

    proptest! {
        #[test]
        fn identity_maps_change_no_byte_of_a_response(r in uid_response()) {
            prop_assert_eq!(rw_resp(&r, &identity_maps()).unwrap(), r);
        }

        #[test]
        fn identity_map_changes_no_byte_of_a_command(c in uid_command()) {
            prop_assert_eq!(rw_cmd(&c, 500, &Identity).unwrap(), c);
        }

        #[test]
        fn response_rewrite_then_reverse_gives_the_original(r in uid_response(), by in 1u32..100_000) {
            let fwd: BTreeMap<u32, u32> = (1..=504).map(|k| (k, k + by)).collect();
            let back = invert(&fwd);
            let there = Maps { selected: &fwd, dest: &fwd, validity_shift: i64::from(by), next_shift: i64::from(by), search_uids: true, added_all: false };
            let again = Maps { selected: &back, dest: &back, validity_shift: -i64::from(by), next_shift: -i64::from(by), search_uids: true, added_all: false };
            let out = rw_resp(&r, &there).unwrap();
            prop_assert_eq!(rw_resp(&out, &again).unwrap(), r);
        }

        #[test]
        fn command_rewrite_then_reverse_gives_the_original(c in uid_command(), by in 1u32..100_000) {
            let fwd: BTreeMap<u32, u32> = (1..=504).map(|k| (k, k + by)).collect();
            let back = invert(&fwd);
            let out = rw_cmd(&c, 504, &fwd).unwrap();
            prop_assert_eq!(rw_cmd(&out, 504 + by, &back).unwrap(), c);
        }

        #[test]
        fn only_uid_spans_change(r in uid_response(), by in 1u32..100_000) {
            // Every byte outside an edit survives: removing the edited spans
            // from input and output leaves the same bytes.
            let fwd: BTreeMap<u32, u32> = (1..=504).map(|k| (k, k + by)).collect();
            let maps = Maps { selected: &fwd, dest: &fwd, validity_shift: 0, next_shift: 0, search_uids: true, added_all: false };
            let resp = Response::parse(&r).unwrap();
            let edits = response_edits(&resp, &maps).unwrap();
            let blanked: Vec<Edit> = edits.iter().map(|e| Edit { span: e.span, bytes: Vec::new() }).collect();
            let mut at = 0;
            for e in &edits {
                prop_assert!(e.span.start >= at);
                at = e.span.end;
            }
            let out = apply(&r, &edits).into_owned();
            let reparsed = Response::parse(&out).unwrap();
            prop_assert_eq!(std::mem::discriminant(&reparsed.body), std::mem::discriminant(&resp.body));
            prop_assert_eq!(apply(&r, &blanked).len() + edits.iter().map(|e| e.bytes.len()).sum::<usize>(), out.len());
        }
    }
}
