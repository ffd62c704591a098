//! What a replicating session's client hears of its backend connection:
//! every response line the backend sends, for the client's commands and
//! for tandem's own, passes here once, through the client's [`View`].
//!
//! - `* n EXISTS` counts the messages the client has not yet heard gone.
//! - `* n EXPUNGE` reaches the client only during a command that may
//!   report it ([`Policy::expunges`]); else it is owed, and paid before the
//!   tagged line of the next command that may.
//! - `* n FETCH` is renumbered to the client's numbering, never names a
//!   number the client was not told, and a flag change a STORE's answer
//!   already told is not told twice.
//! - non-UID `* SEARCH` numbers are the client's.

use tandem_parser::response::{FetchItem, Response};
use tandem_parser::seqset::SequenceSet;
use tandem_state::FlagMode;

use super::maps::needs_rewrite;
use super::view::{asks_fetch, reports_expunges, View};
use super::Session;
use tandem_parser::command::Command;

/// What the command being answered allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Policy {
    /// EXPUNGE responses may be sent ([`reports_expunges`]).
    pub(super) expunges: bool,
    /// FETCH data was asked for: a FETCH is never a repeated report.
    pub(super) fetch: bool,
    /// SEARCH results are message numbers (not UIDs).
    pub(super) numbers: bool,
}

impl Policy {
    pub(super) fn of(cmd: &Command<'_>) -> Policy {
        Policy {
            expunges: reports_expunges(cmd),
            fetch: asks_fetch(cmd),
            numbers: !cmd.uid,
        }
    }
}

/// The kinds of `* <number> <word>` responses the view follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Numbered {
    Exists,
    Expunge,
    Fetch,
}

/// `* n EXISTS`, `* n EXPUNGE`, `* n FETCH ...`: the number, the kind, and
/// where the number ends. Reads a few bytes, parses nothing.
fn numbered(line: &[u8]) -> Option<(u32, Numbered, usize)> {
    let rest = line.strip_prefix(b"* ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 10 || rest.get(digits) != Some(&b' ') {
        return None;
    }
    let n: u32 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let word = &rest[digits + 1..];
    let is = |w: &[u8]| word.len() >= w.len() && word[..w.len()].eq_ignore_ascii_case(w);
    let kind = if is(b"EXISTS\r\n") {
        Numbered::Exists
    } else if is(b"EXPUNGE\r\n") {
        Numbered::Expunge
    } else if is(b"FETCH ") {
        Numbered::Fetch
    } else {
        return None;
    };
    Some((n, kind, 2 + digits))
}

/// `line` with its message number (ending at `end`) replaced by `n`.
fn renumber(line: &[u8], end: usize, n: u32) -> Vec<u8> {
    let mut out = format!("* {n}").into_bytes();
    out.extend_from_slice(&line[end..]);
    out
}

/// The flags of an unasked flag report (`* n FETCH (FLAGS (...))`, maybe
/// with UID or MODSEQ), in a form that compares equal whatever the order
/// and case; `None` for a FETCH carrying anything else.
pub(super) fn flag_report(line: &[u8]) -> Option<Vec<u8>> {
    fetched_flags(line).and_then(|(f, only)| only.then_some(f))
}

/// The FLAGS of a FETCH response as [`flag_report`] writes them, and
/// whether the response holds nothing else (but UID and MODSEQ).
pub(super) fn fetched_flags(line: &[u8]) -> Option<(Vec<u8>, bool)> {
    let cheap = line.windows(6).any(|w| w.eq_ignore_ascii_case(b"FLAGS "));
    if !cheap {
        return None;
    }
    let resp = Response::parse(line).ok()?;
    let mut flags = None;
    let mut only = true;
    for item in resp.fetch_items() {
        match item {
            FetchItem::Flags(spans) => {
                let mut v: Vec<Vec<u8>> = spans
                    .iter()
                    .map(|s| s.of(line).to_ascii_uppercase())
                    .collect();
                v.sort();
                flags = Some(v.join(&b' '));
            }
            FetchItem::Uid { .. } | FetchItem::ModSeq { .. } => {}
            FetchItem::Other { .. } => only = false,
        }
    }
    flags.map(|f| (f, only))
}

/// The answer to a STORE for a message expunged elsewhere that this
/// session still shows (RFC 2180 section 4.1): its FETCH with the flags it
/// would have now, as Dovecot answers its own clients. `line` is the
/// backend's `* n FETCH (FLAGS (...))` of it; `None` if it has no FLAGS.
pub(super) fn stored_flags(line: &[u8], mode: FlagMode, flags: &[String]) -> Option<Vec<u8>> {
    let resp = Response::parse(line).ok()?;
    let n = resp.fetch_seq()?;
    let had: Vec<String> = resp
        .fetch_flags()?
        .iter()
        .map(|f| String::from_utf8_lossy(f).to_string())
        .collect();
    let same = |a: &String, b: &String| a.eq_ignore_ascii_case(b);
    let now: Vec<String> = match mode {
        FlagMode::Replace => flags.to_vec(),
        FlagMode::Add => {
            let mut v = had.clone();
            for f in flags {
                if !v.iter().any(|h| same(h, f)) {
                    v.push(f.clone());
                }
            }
            v
        }
        FlagMode::Remove => had
            .into_iter()
            .filter(|h| !flags.iter().any(|f| same(h, f)))
            .collect(),
    };
    Some(format!("* {n} FETCH (FLAGS ({}))\r\n", now.join(" ")).into_bytes())
}

/// `line` (a FETCH, or the head of one before a literal) with the list of
/// its FLAGS item replaced by `flags`; unchanged without one.
pub(super) fn with_flags(line: &[u8], flags: &[u8]) -> Vec<u8> {
    let upper = line.to_ascii_uppercase();
    let Some(at) = upper.windows(7).position(|w| w == b"FLAGS (") else {
        return line.to_vec();
    };
    let open = at + 6;
    let Some(len) = line[open..].iter().position(|&b| b == b')') else {
        return line.to_vec();
    };
    let mut out = line[..=open].to_vec();
    out.extend_from_slice(flags);
    out.extend_from_slice(&line[open + len..]);
    out
}

/// What the backend reported during one command, as a server reports one
/// sync: a flag report of a message expunged later in the same batch is
/// left out. Lines are in the backend's numbering and order.
pub(super) fn as_one_sync(lines: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let kinds: Vec<Option<(u32, Numbered)>> = lines
        .iter()
        .map(|l| numbered(l).map(|(n, k, _)| (n, k)))
        .collect();
    if !kinds
        .iter()
        .any(|k| matches!(k, Some((_, Numbered::Expunge))))
    {
        return lines;
    }
    // Each line's message as its number before the batch: follow every
    // number back through the EXPUNGEs before it.
    let mut removed: Vec<u32> = Vec::new(); // original numbers, in order
    let original = |n: u32, removed: &[u32]| {
        let mut sorted: Vec<u32> = removed.to_vec();
        sorted.sort_unstable();
        let mut o = n;
        for r in sorted {
            if r <= o {
                o += 1;
            }
        }
        o
    };
    let mut origin: Vec<Option<u32>> = Vec::with_capacity(lines.len());
    for k in &kinds {
        match k {
            Some((n, Numbered::Expunge)) => {
                let o = original(*n, &removed);
                removed.push(o);
                origin.push(Some(o));
            }
            Some((n, _)) => origin.push(Some(original(*n, &removed))),
            None => origin.push(None),
        }
    }
    let mut out = Vec::with_capacity(lines.len());
    let mut gone_before: Vec<u32> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        match kinds[i] {
            Some((_, Numbered::Expunge)) => {
                // A run of EXPUNGEs: highest original number first.
                let mut run: Vec<u32> = Vec::new();
                while i < lines.len() && matches!(kinds[i], Some((_, Numbered::Expunge))) {
                    run.extend(origin[i]);
                    i += 1;
                }
                // In the backend's own order (Dovecot's highest first,
                // Cyrus's lowest first).
                for o in run {
                    let below = gone_before.iter().filter(|&&g| g < o).count() as u32;
                    out.push(format!("* {} EXPUNGE\r\n", o - below).into_bytes());
                    gone_before.push(o);
                }
            }
            Some((_, Numbered::Fetch)) => {
                let o = origin[i].unwrap_or(0);
                let later = removed.contains(&o) && !gone_before.contains(&o);
                if !(later && flag_report(&lines[i]).is_some()) {
                    out.push(lines[i].clone());
                }
                i += 1;
            }
            _ => {
                out.push(lines[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// `* SEARCH` numbers in the client's numbering (backend numbers the view
/// does not know, and messages gone elsewhere, are left out).
fn search_to_client(line: &[u8], view: &View) -> Option<Vec<u8>> {
    let body = line.strip_prefix(b"* ")?;
    if body.len() < 6 || !body[..6].eq_ignore_ascii_case(b"SEARCH") {
        return None;
    }
    let text = std::str::from_utf8(&body[6..]).ok()?.trim_end();
    let mut out = b"* SEARCH".to_vec();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        match word.parse::<u32>() {
            Ok(b) => {
                // A message gone elsewhere whose STORE was answered as if
                // it worked: the backend searched its old flags.
                if let Some(c) = view.to_client(b).filter(|&c| view.kept_flags(c).is_none()) {
                    out.extend_from_slice(format!(" {c}").as_bytes());
                }
            }
            // `(MODSEQ n)` and the like: kept as they are.
            Err(_) => {
                out.push(b' ');
                out.extend_from_slice(word.as_bytes());
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

impl Session {
    /// What the command whose answer the backend is sending allows: the
    /// command tandem is answering itself, else the oldest in flight
    /// (the backend answers in order); nothing between commands.
    pub(super) fn policy(&self) -> Policy {
        if let Some(p) = self.answering_policy {
            return p;
        }
        self.pending.front().map(|p| p.3).unwrap_or_default()
    }

    /// One response line of the backend (with `literal`, the head of a
    /// FETCH whose literal follows) as the client must get it; `None` to
    /// withhold it, its literal included.
    pub(super) async fn deliver(&mut self, line: &[u8], literal: bool) -> Option<Vec<u8>> {
        let policy = self.policy();
        let mut out = Vec::new();
        if !line.starts_with(b"* ") {
            // A tagged line or a continuation (IDLE's `+`): the end of, or
            // the wait in, a command that may be owed expunges.
            if policy.expunges {
                self.pay_expunges(&mut out);
            }
            if !literal {
                self.replicate_seen(line).await;
            }
            if !literal && super::relay::needs_parsing(line) {
                self.on_response(line);
                out.extend_from_slice(&self.filter_single(line));
            } else {
                out.extend_from_slice(line);
            }
            return Some(out);
        }
        let line: std::borrow::Cow<'_, [u8]> = match numbered(line) {
            Some((n, Numbered::Exists, _)) if !literal => {
                let c = self.view.on_exists(n);
                self.check_exists(n);
                out.extend_from_slice(format!("* {c} EXISTS\r\n").as_bytes());
                return Some(out);
            }
            Some((n, Numbered::Expunge, _)) if !literal => {
                match self.view.on_expunge(n, policy.expunges) {
                    Some(told) => {
                        for c in told {
                            out.extend_from_slice(format!("* {c} EXPUNGE\r\n").as_bytes());
                        }
                    }
                    None => {
                        tracing::error!(number = n, "backend EXPUNGE beyond its own count");
                        crate::metrics::count_withheld("expunge");
                    }
                }
                return Some(out);
            }
            Some((n, Numbered::Fetch, end)) => {
                let Some(c) = self.view.to_client(n) else {
                    tracing::error!(number = n, "backend FETCH beyond what the client was told");
                    crate::metrics::count_withheld("fetch");
                    return None;
                };
                if !literal && self.view.remembers_flags() {
                    if let Some((flags, only)) = fetched_flags(line) {
                        // Any FLAGS the client gets is what it knows now.
                        let repeat = self.view.is_repeat(c, &flags);
                        if repeat && only && !policy.fetch {
                            return Some(out);
                        }
                    }
                }
                let line: std::borrow::Cow<'_, [u8]> = if c == n {
                    line.into()
                } else {
                    renumber(line, end, c).into()
                };
                match self.view.kept_flags(c) {
                    Some(flags) => with_flags(&line, flags).into(),
                    None => line,
                }
            }
            _ if policy.numbers
                && (!self.view.aligned() || self.view.keeps_flags())
                && !literal =>
            {
                match search_to_client(line, &self.view) {
                    Some(l) => l.into(),
                    None => line.into(),
                }
            }
            _ => line.into(),
        };
        let rewritten = if needs_rewrite(&line) {
            self.rewrite_line(&line, literal).await?.into()
        } else {
            line
        };
        if !literal && super::relay::needs_parsing(&rewritten) {
            // CAPABILITY, whatever else the line holds.
            out.extend_from_slice(&self.filter_single(&rewritten));
        } else {
            out.extend_from_slice(&rewritten);
        }
        Some(out)
    }

    /// A message-number set the client wrote, as the backend numbers:
    /// unchanged while they number alike; `None` when it names only
    /// messages the client has not yet heard gone.
    pub(super) fn backend_numbers(&self, set: &SequenceSet, raw: &[u8]) -> Option<Vec<u8>> {
        if self.view.aligned() {
            return Some(raw.to_vec());
        }
        let client = set.resolve(self.view.client_count());
        let backend = self.view.set_to_backend(&client);
        (!backend.is_empty()).then(|| backend.to_bytes())
    }

    /// The EXPUNGEs the client is owed, into `out`.
    pub(super) fn pay_expunges(&mut self, out: &mut Vec<u8>) {
        for c in self.view.flush() {
            out.extend_from_slice(format!("* {c} EXPUNGE\r\n").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_lines_are_told_apart_without_parsing() {
        type Row = (&'static [u8], Option<(u32, Numbered)>);
        let table: [Row; 7] = [
            (b"* 3 EXISTS\r\n", Some((3, Numbered::Exists))),
            (b"* 12 expunge\r\n", Some((12, Numbered::Expunge))),
            (b"* 7 FETCH (FLAGS ())\r\n", Some((7, Numbered::Fetch))),
            (b"* 7 RECENT\r\n", None),
            (b"* OK [UIDNEXT 4] x\r\n", None),
            (b"* SEARCH 1 2\r\n", None),
            (b"* 99999999999 EXISTS\r\n", None),
        ];
        for (line, want) in table {
            let got = numbered(line).map(|(n, k, _)| (n, k));
            assert_eq!(got, want, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn a_fetch_is_renumbered_in_place() {
        let line = b"* 12 FETCH (UID 40 FLAGS (\\Seen))\r\n";
        let (_, _, end) = numbered(line).unwrap();
        assert_eq!(
            renumber(line, end, 13),
            b"* 13 FETCH (UID 40 FLAGS (\\Seen))\r\n".to_vec()
        );
    }

    #[test]
    fn flag_reports_compare_whatever_the_order_and_case() {
        let a = flag_report(b"* 2 FETCH (FLAGS (\\Seen \\Flagged))\r\n");
        let b = flag_report(b"* 2 FETCH (UID 3 FLAGS (\\flagged \\SEEN))\r\n");
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(flag_report(b"* 2 FETCH (FLAGS ())\r\n"), Some(Vec::new()));
        // Anything more than flags is an answer, not a report.
        assert_eq!(flag_report(b"* 2 FETCH (FLAGS () RFC822.SIZE 4)\r\n"), None);
        assert_eq!(flag_report(b"* 2 FETCH (UID 3)\r\n"), None);
    }

    #[test]
    fn a_store_on_a_message_gone_elsewhere_is_answered_as_if_it_were_there() {
        let line = b"* 4 FETCH (FLAGS (\\Deleted $a))\r\n";
        let s = |v: &[&str]| v.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let table: [(FlagMode, Vec<String>, &str); 4] = [
            (
                FlagMode::Add,
                s(&["$b", "$A"]),
                "* 4 FETCH (FLAGS (\\Deleted $a $b))\r\n",
            ),
            (
                FlagMode::Remove,
                s(&["$A"]),
                "* 4 FETCH (FLAGS (\\Deleted))\r\n",
            ),
            (
                FlagMode::Replace,
                s(&["\\Seen"]),
                "* 4 FETCH (FLAGS (\\Seen))\r\n",
            ),
            (FlagMode::Replace, s(&[]), "* 4 FETCH (FLAGS ())\r\n"),
        ];
        for (mode, flags, want) in table {
            let got = stored_flags(line, mode, &flags).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), want, "{mode:?} {flags:?}");
        }
        assert_eq!(
            stored_flags(b"* 4 FETCH (UID 3)\r\n", FlagMode::Add, &[]),
            None
        );
    }

    #[test]
    fn flags_are_replaced_in_place() {
        let table: [(&[u8], &[u8], &[u8]); 3] = [
            (
                b"* 8 FETCH (UID 131 FLAGS () RFC822.SIZE 0 BODY[] NIL)\r\n",
                b"$s2",
                b"* 8 FETCH (UID 131 FLAGS ($s2) RFC822.SIZE 0 BODY[] NIL)\r\n",
            ),
            (
                b"* 8 FETCH (FLAGS (\\Seen $a) BODY[] {3}\r\n",
                b"",
                b"* 8 FETCH (FLAGS () BODY[] {3}\r\n",
            ),
            (b"* 8 FETCH (UID 3)\r\n", b"$a", b"* 8 FETCH (UID 3)\r\n"),
        ];
        for (line, flags, want) in table {
            assert_eq!(with_flags(line, flags), want.to_vec());
        }
    }

    fn text(lines: &[&str]) -> Vec<Vec<u8>> {
        lines
            .iter()
            .map(|l| format!("{l}\r\n").into_bytes())
            .collect()
    }

    #[test]
    fn a_batch_reads_as_one_sync() {
        // EXPUNGEs keep the backend's order.
        assert_eq!(
            as_one_sync(text(&["* 2 EXPUNGE", "* 2 EXPUNGE"])),
            text(&["* 2 EXPUNGE", "* 2 EXPUNGE"])
        );
        // A flag report of a message that goes later is left out; one of
        // a message that stays is kept.
        assert_eq!(
            as_one_sync(text(&[
                "* 4 FETCH (FLAGS (\\Deleted))",
                "* 2 FETCH (FLAGS (\\Seen))",
                "* 1 EXPUNGE",
                "* 3 EXPUNGE",
            ])),
            text(&["* 2 FETCH (FLAGS (\\Seen))", "* 1 EXPUNGE", "* 3 EXPUNGE"])
        );
        // Between runs, numbers are as the client reads them.
        assert_eq!(
            as_one_sync(text(&[
                "* 1 EXPUNGE",
                "* 5 EXISTS",
                "* 1 EXPUNGE",
                "* 3 EXPUNGE"
            ])),
            text(&["* 1 EXPUNGE", "* 5 EXISTS", "* 1 EXPUNGE", "* 3 EXPUNGE"])
        );
        let plain = text(&["* 1 FETCH (FLAGS ())", "* 3 EXISTS"]);
        assert_eq!(as_one_sync(plain.clone()), plain);
    }

    #[test]
    fn search_numbers_become_the_clients() {
        let mut v = View::default();
        v.on_exists(4);
        v.on_expunge(2, false);
        assert_eq!(
            search_to_client(b"* SEARCH 1 2 3\r\n", &v),
            Some(b"* SEARCH 1 3 4\r\n".to_vec())
        );
        assert_eq!(
            search_to_client(b"* SEARCH\r\n", &v),
            Some(b"* SEARCH\r\n".to_vec())
        );
        assert_eq!(search_to_client(b"* ESEARCH (TAG \"a\")\r\n", &v), None);
    }

    #[test]
    fn a_search_leaves_out_a_message_gone_elsewhere() {
        let mut v = View::default();
        v.on_exists(3);
        v.keep_flags(1, b"(\\Deleted)");
        assert_eq!(
            search_to_client(b"* SEARCH 1 3\r\n", &v),
            Some(b"* SEARCH 3\r\n".to_vec())
        );
    }
}
