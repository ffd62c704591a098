//! The client's view of the selected mailbox, pure: which message numbers
//! the client has been told of, and the EXPUNGEs it is owed.
//!
//! A replicating session's backend connection knows more than its client:
//! tandem runs its own commands on it (`UID SEARCH DELETED`, `UID FETCH`,
//! `NOOP` after a mutation), and the backend reports other connections'
//! expunges during them. RFC 9051 section 7.5.1 forbids an EXPUNGE while
//! answering FETCH, STORE or SEARCH, and when no command is in progress;
//! Dovecot goes further and reports expunges only during commands that may
//! break sequence numbers ([`reports_expunges`]). An EXPUNGE the client may
//! not hear yet becomes a *ghost*: the client keeps the message number
//! until a command that may report it, and tandem translates message
//! numbers between the client's numbering and the backend's meanwhile.
//!
//! The client's numbering is the backend's with the ghosts put back:
//! - client count = backend count + ghosts;
//! - backend number `b` is the `b`-th client number that is not a ghost.
//!
//! Every EXISTS the client gets counts the ghosts, every EXPUNGE it gets
//! is in its own numbering, and no FETCH names a number beyond what it was
//! told. The flags a STORE's answer told the client are remembered
//! ([`View::told_flags`]) so that the backend's later report of the same
//! change (the applier made it on another connection) is not a second,
//! unasked FETCH.

use std::collections::BTreeMap;

use tandem_parser::command::{Command, CommandBody};
use tandem_parser::seqset::Ranges;

/// Most remembered STORE answers per session; past it, the oldest are
/// forgotten (a forgotten one costs a duplicate FETCH, never a wrong one).
const MAX_TOLD_FLAGS: usize = 10_000;

/// Whether the server may report expunges while answering `cmd`, as
/// Dovecot does (its `COMMAND_FLAG_BREAKS_SEQS`): NOOP, CHECK, APPEND,
/// EXPUNGE, COPY, MOVE, IDLE and every UID command. Never during FETCH,
/// STORE, SEARCH (RFC 9051 section 7.5.1), nor during commands that do not
/// look at the selected mailbox (LIST, STATUS, CREATE, ...), nor during
/// SELECT, EXAMINE, CLOSE, UNSELECT and LOGOUT, which leave it.
pub(crate) fn reports_expunges(cmd: &Command<'_>) -> bool {
    if cmd.uid {
        return true;
    }
    match &cmd.body {
        CommandBody::Noop
        | CommandBody::Check
        | CommandBody::Append { .. }
        | CommandBody::Expunge { .. }
        | CommandBody::Copy { .. }
        | CommandBody::Move { .. }
        | CommandBody::Idle => true,
        CommandBody::Other => false,
        _ => false,
    }
}

/// Whether `cmd` asks for message data: its answer's FETCH lines are
/// solicited, never taken for a repeated report.
pub(crate) fn asks_fetch(cmd: &Command<'_>) -> bool {
    matches!(cmd.body, CommandBody::Fetch { .. })
}

/// The client's numbering of the selected mailbox against the backend's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct View {
    /// Messages in the backend connection's numbering: its last EXISTS less
    /// the EXPUNGEs it reported since.
    backend: u32,
    /// Client numbers of messages expunged in the backend that the client
    /// has not been told of, ascending.
    ghosts: Vec<u32>,
    /// The flags (as the FETCH wrote them) a STORE's answer told the
    /// client, by client number.
    told: BTreeMap<u32, Vec<u8>>,
    /// The flags of messages expunged elsewhere that the client still
    /// has and STOREd to (RFC 2180 section 4.1: the store is answered as
    /// if it worked), by client number: every FETCH of them says these.
    kept: BTreeMap<u32, Vec<u8>>,
}

impl View {
    /// A mailbox was selected, or left: nothing is known, nothing is owed.
    pub(crate) fn reset(&mut self) {
        *self = View::default();
    }

    /// How many messages the client has been told of.
    pub(crate) fn client_count(&self) -> u32 {
        self.backend + self.ghosts.len() as u32
    }

    /// Whether client and backend number alike.
    pub(crate) fn aligned(&self) -> bool {
        self.ghosts.is_empty()
    }

    /// The backend said `* n EXISTS`: the number of the EXISTS the client
    /// gets.
    pub(crate) fn on_exists(&mut self, n: u32) -> u32 {
        self.backend = n;
        self.client_count()
    }

    /// The backend said `* b EXPUNGE`. With `allowed`, the client numbers
    /// to report now, in order (earlier ghosts included); else none, and
    /// the message becomes a ghost. `None`: `b` was not a message of the
    /// backend's (out of range).
    pub(crate) fn on_expunge(&mut self, b: u32, allowed: bool) -> Option<Vec<u32>> {
        let c = self.to_client(b)?;
        self.backend -= 1;
        let at = self.ghosts.partition_point(|&g| g < c);
        self.ghosts.insert(at, c);
        Some(if allowed { self.flush() } else { Vec::new() })
    }

    /// The EXPUNGEs the client is owed, to report now: highest number
    /// first, so that each is right when the client reads it.
    pub(crate) fn flush(&mut self) -> Vec<u32> {
        let out: Vec<u32> = self.ghosts.drain(..).rev().collect();
        for &c in &out {
            self.forget_told(c);
        }
        out
    }

    /// The client's number of backend message `b`; `None` when `b` is
    /// beyond what the backend told.
    pub(crate) fn to_client(&self, b: u32) -> Option<u32> {
        if b == 0 || b > self.backend {
            return None;
        }
        let mut c = b;
        for &g in &self.ghosts {
            if g <= c {
                c += 1;
            } else {
                break;
            }
        }
        Some(c)
    }

    /// The backend's number of client message `c`; `None` for a ghost or
    /// a number beyond what the client was told.
    pub(crate) fn to_backend(&self, c: u32) -> Option<u32> {
        if c == 0 || c > self.client_count() {
            return None;
        }
        match self.ghosts.binary_search(&c) {
            Ok(_) => None,
            Err(before) => Some(c - before as u32),
        }
    }

    /// Client message numbers as the backend's (ghosts left out). Numbers
    /// beyond the client's count stay beyond the backend's, so that the
    /// backend refuses them as it would have.
    pub(crate) fn set_to_backend(&self, client: &Ranges) -> Ranges {
        let count = self.client_count();
        let mut out = Ranges::new();
        for &(lo, hi) in client.ranges() {
            let in_lo = lo.min(count + 1);
            for c in in_lo..=hi.min(count) {
                if let Some(b) = self.to_backend(c) {
                    out.insert(b, b);
                }
            }
            if hi > count {
                let past = lo.max(count + 1) - self.ghosts.len() as u32;
                out.insert(past, hi - self.ghosts.len() as u32);
            }
        }
        out
    }

    /// Whether any STORE's answer is remembered (else no FETCH needs a
    /// look).
    pub(crate) fn remembers_flags(&self) -> bool {
        !self.told.is_empty()
    }

    /// A STORE's answer told the client these flags of message `c`.
    pub(crate) fn told_flags(&mut self, c: u32, flags: &[u8]) {
        if self.told.len() >= MAX_TOLD_FLAGS {
            self.told.pop_first();
        }
        self.told.insert(c, flags.to_vec());
    }

    /// An unasked FETCH of message `c` reports these flags: whether the
    /// client already has them from a STORE's answer (then it is not sent
    /// again). A different report replaces what was told.
    pub(crate) fn is_repeat(&mut self, c: u32, flags: &[u8]) -> bool {
        match self.told.get(&c) {
            Some(f) if f.as_slice() == flags => {
                self.told.remove(&c);
                true
            }
            Some(_) => {
                self.told.remove(&c);
                false
            }
            None => false,
        }
    }

    /// Message `c` is gone for the client: numbers above it move down.
    fn forget_told(&mut self, c: u32) {
        for map in [&mut self.told, &mut self.kept] {
            if map.is_empty() {
                continue;
            }
            let above = map.split_off(&c);
            for (n, f) in above {
                if n > c {
                    map.insert(n - 1, f);
                }
            }
        }
    }

    /// A STORE was answered for client message `c`, gone elsewhere, as if
    /// it had these flags (as written between the parentheses).
    pub(crate) fn keep_flags(&mut self, c: u32, flags: &[u8]) {
        self.kept.insert(c, flags.to_vec());
    }

    /// The flags client message `c` was answered to have though it is
    /// gone elsewhere.
    /// Whether some message gone elsewhere keeps the flags its STORE told.
    pub(crate) fn keeps_flags(&self) -> bool {
        !self.kept.is_empty()
    }

    pub(crate) fn kept_flags(&self, c: u32) -> Option<&[u8]> {
        if self.kept.is_empty() {
            return None;
        }
        self.kept.get(&c).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(backend: u32) -> View {
        let mut v = View::default();
        v.on_exists(backend);
        v
    }

    #[test]
    fn an_expunge_the_client_may_hear_is_reported_at_once() {
        let mut v = view(3);
        assert_eq!(v.on_expunge(2, true), Some(vec![2]));
        assert_eq!(v.client_count(), 2);
        assert!(v.aligned());
    }

    #[test]
    fn an_expunge_during_a_fetch_waits_and_numbers_are_translated_meanwhile() {
        // The client knows 1..=5; message 2 goes while it may not hear it.
        let mut v = view(5);
        assert_eq!(v.on_expunge(2, false), Some(vec![]));
        assert_eq!(v.client_count(), 5);
        // Backend 1 is client 1; backend 2 is client 3 (client 2 is a ghost).
        let table = [
            (1, Some(1)),
            (2, Some(3)),
            (3, Some(4)),
            (4, Some(5)),
            (5, None),
        ];
        for (b, c) in table {
            assert_eq!(v.to_client(b), c, "backend {b}");
        }
        let table = [
            (1, Some(1)),
            (2, None),
            (3, Some(2)),
            (5, Some(4)),
            (6, None),
        ];
        for (c, b) in table {
            assert_eq!(v.to_backend(c), b, "client {c}");
        }
        // New mail: the client's EXISTS counts the ghost.
        assert_eq!(v.on_exists(6), 7);
        // The next command that may: the client hears of 2.
        assert_eq!(v.flush(), vec![2]);
        assert_eq!(v.client_count(), 6);
        assert!(v.aligned());
    }

    #[test]
    fn ghosts_are_reported_highest_first_so_each_number_is_right() {
        let mut v = view(5);
        // Backend 2 (client 2), then backend 3 (client 4 now), then
        // backend 1 (client 1).
        v.on_expunge(2, false);
        v.on_expunge(3, false);
        assert_eq!(v.ghosts, vec![2, 4]);
        // Reported with the next allowed expunge, all at once.
        assert_eq!(v.on_expunge(1, true), Some(vec![4, 2, 1]));
        assert_eq!(v.client_count(), 2);
    }

    #[test]
    fn an_expunge_beyond_the_backends_count_is_refused() {
        let mut v = view(2);
        assert_eq!(v.on_expunge(3, true), None);
        assert_eq!(v.on_expunge(0, true), None);
        assert_eq!(v.client_count(), 2);
    }

    #[test]
    fn client_sets_become_backend_sets_without_ghosts() {
        let mut v = view(6);
        v.on_expunge(3, false); // client 3 is a ghost
        let set = |r: &[(u32, u32)]| Ranges::from_ranges(r.iter().copied());
        type Row = (&'static [(u32, u32)], &'static [(u32, u32)]);
        let table: [Row; 4] = [
            (&[(1, 2)], &[(1, 2)]),
            (&[(2, 4)], &[(2, 3)]),
            (&[(3, 3)], &[]),
            // Beyond the client's 6: beyond the backend's 5, as refused.
            (&[(6, 8)], &[(5, 7)]),
        ];
        for (client, backend) in table {
            assert_eq!(v.set_to_backend(&set(client)), set(backend), "{client:?}");
        }
    }

    #[test]
    fn a_reported_flag_change_the_store_already_told_is_not_repeated() {
        let mut v = view(3);
        v.told_flags(2, b"(\\Seen)");
        assert!(v.is_repeat(2, b"(\\Seen)"));
        // Once only.
        assert!(!v.is_repeat(2, b"(\\Seen)"));
        // A different report is news, and replaces what was told.
        v.told_flags(3, b"(\\Seen)");
        assert!(!v.is_repeat(3, b"(\\Seen \\Flagged)"));
        assert!(!v.is_repeat(3, b"(\\Seen)"));
    }

    #[test]
    fn what_was_told_moves_down_with_an_expunge_below_it() {
        let mut v = view(3);
        v.told_flags(3, b"(\\Seen)");
        v.keep_flags(3, b"$a");
        assert_eq!(v.on_expunge(1, true), Some(vec![1]));
        assert!(v.is_repeat(2, b"(\\Seen)"));
        assert_eq!(v.kept_flags(2), Some(&b"$a"[..]));
        assert_eq!(v.kept_flags(3), None);
        // Reported gone: forgotten.
        assert_eq!(v.on_expunge(2, true), Some(vec![2]));
        assert_eq!(v.kept_flags(2), None);
    }

    #[test]
    fn the_commands_that_may_report_expunges_are_dovecots() {
        let table = [
            ("a NOOP", true),
            ("a CHECK", true),
            ("a EXPUNGE", true),
            ("a UID EXPUNGE 1", true),
            ("a IDLE", true),
            ("a COPY 1 x", true),
            ("a MOVE 1 x", true),
            ("a UID FETCH 1 FLAGS", true),
            ("a UID STORE 1 +FLAGS (x)", true),
            ("a UID SEARCH ALL", true),
            ("a FETCH 1 FLAGS", false),
            ("a STORE 1 +FLAGS (x)", false),
            ("a SEARCH ALL", false),
            ("a LIST \"\" *", false),
            ("a STATUS x (MESSAGES)", false),
            ("a CREATE x", false),
            ("a CLOSE", false),
            ("a UNSELECT", false),
            ("a SELECT x", false),
            ("a CAPABILITY", false),
        ];
        for (line, want) in table {
            let raw = format!("{line}\r\n");
            let cmd = Command::parse(raw.as_bytes()).expect(line);
            assert_eq!(reports_expunges(&cmd), want, "{line}");
        }
    }
}
