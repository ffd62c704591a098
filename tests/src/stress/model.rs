//! The client-side model: what one session has been told, and the rules
//! every untagged response must keep with it (RFC 3501 sections 5.5, 7.4.1,
//! 7.2.5; RFC 9051 section 7.5.1; RFC 4315; RFC 6851). Pure: events (a
//! command sent, a response received, the connection closed) in,
//! violations out, so a hand-written transcript can drive it.
//!
//! Per session, the selected mailbox's messages as the client knows them,
//! by sequence number: UID once a FETCH told it, flags, and the hash and
//! size of the body once fetched. The rules:
//!
//! - EXISTS never goes below the messages the session knows (it shrinks
//!   only by the EXPUNGEs it was told);
//! - EXPUNGE names 1..=count, and never arrives while a FETCH, STORE or
//!   SEARCH by sequence number is answered (their UID forms may see one);
//! - FETCH names 1..=count; a message's UID, once told, never changes;
//!   UIDs ascend with sequence numbers; a UID the session saw expunged
//!   never comes back (in FETCH or SEARCH);
//! - SEARCH results are in 1..=count; UID SEARCH and FETCH UIDs are UIDs
//!   some APPENDUID or COPYUID gave (checked at the end, [`Registry::finish`]);
//! - a message's body and size never change: one map (user, mailbox,
//!   UIDVALIDITY, UID) -> (hash, size) shared by all sessions, fed by
//!   APPEND (APPENDUID with the hash of what was sent), COPY and MOVE
//!   (COPYUID carries the source's facts over) and every FETCH of a body;
//! - a mailbox's UIDVALIDITY never changes;
//! - each session has its own keyword (`$sN`) that only it stores; a
//!   FETCH of a target during its STORE shows the keyword as stored, and
//!   any later FETCH of that UID (or of a copy) agrees with it;
//! - EXISTS, EXPUNGE and FETCH never arrive between commands (only during
//!   a command, IDLE included); no BAD; no BYE but LOGOUT's; no duplicate
//!   FETCH of one message within one STORE's answer.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;

use super::parse::{parse, Code, FetchData, Resp};

/// A sequence or UID set as written: inclusive ranges.
pub type Set = Vec<(u32, u32)>;

/// Writes a set: `3`, `2:5,9`.
pub fn set_text(set: &Set) -> String {
    set.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}:{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn in_set(set: &Set, n: u32) -> bool {
    set.iter().any(|&(a, b)| a.min(b) <= n && n <= a.max(b))
}

/// How a STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `+FLAGS`
    Add,
    /// `-FLAGS`
    Remove,
    /// `FLAGS`
    Replace,
}

/// What a SEARCH asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criteria {
    /// `ALL`
    All,
    /// `FLAGGED`
    Flagged,
    /// `KEYWORD k`
    Keyword(String),
}

/// A command the workload sends (and the model understands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// `LOGIN user password`
    Login {
        /// The user.
        user: String,
    },
    /// `SELECT mailbox`
    Select {
        /// The mailbox.
        mailbox: String,
    },
    /// `APPEND mailbox [(flags)] {size}` and the message.
    Append {
        /// The mailbox.
        mailbox: String,
        /// `\Seen` on append.
        seen: bool,
        /// The hash of the message sent ([`super::parse::hash_bytes`]).
        hash: u64,
        /// Its length.
        size: u64,
    },
    /// `[UID] FETCH set (UID FLAGS [RFC822.SIZE BODY.PEEK[]])`
    Fetch {
        /// UID FETCH.
        uid: bool,
        /// The set.
        set: Set,
        /// Also the body and its size.
        body: bool,
    },
    /// `[UID] STORE set [+-]FLAGS[.SILENT] (flags)`
    Store {
        /// UID STORE.
        uid: bool,
        /// The set.
        set: Set,
        /// How.
        op: FlagOp,
        /// The flags.
        flags: Vec<String>,
        /// `.SILENT`
        silent: bool,
    },
    /// `EXPUNGE`
    Expunge,
    /// `UID EXPUNGE set`
    UidExpunge {
        /// The UIDs.
        set: Set,
    },
    /// `[UID] SEARCH criteria`
    Search {
        /// UID SEARCH.
        uid: bool,
        /// What.
        criteria: Criteria,
    },
    /// `[UID] COPY|MOVE set mailbox`
    Copy {
        /// UID COPY / UID MOVE.
        uid: bool,
        /// The set.
        set: Set,
        /// The destination.
        to: String,
        /// MOVE rather than COPY.
        moving: bool,
    },
    /// `IDLE`, then `DONE` after `ms`.
    Idle {
        /// How long the client idles.
        ms: u64,
    },
    /// `NOOP`
    Noop,
    /// `LOGOUT`
    Logout,
}

impl Cmd {
    /// The command line after the tag, without CRLF (an APPEND's ends
    /// with its literal's announcement).
    pub fn text(&self, password: &str) -> String {
        let uid = |u: bool| if u { "UID " } else { "" };
        match self {
            Cmd::Login { user } => format!("LOGIN {user} {password}"),
            Cmd::Select { mailbox } => format!("SELECT {mailbox}"),
            Cmd::Append {
                mailbox,
                seen,
                size,
                ..
            } => format!(
                "APPEND {mailbox} {}{{{size}}}",
                if *seen { "(\\Seen) " } else { "" }
            ),
            Cmd::Fetch { uid: u, set, body } => format!(
                "{}FETCH {} (UID FLAGS{})",
                uid(*u),
                set_text(set),
                if *body {
                    " RFC822.SIZE BODY.PEEK[]"
                } else {
                    ""
                }
            ),
            Cmd::Store {
                uid: u,
                set,
                op,
                flags,
                silent,
            } => format!(
                "{}STORE {} {}FLAGS{} ({})",
                uid(*u),
                set_text(set),
                match op {
                    FlagOp::Add => "+",
                    FlagOp::Remove => "-",
                    FlagOp::Replace => "",
                },
                if *silent { ".SILENT" } else { "" },
                flags.join(" ")
            ),
            Cmd::Expunge => "EXPUNGE".into(),
            Cmd::UidExpunge { set } => format!("UID EXPUNGE {}", set_text(set)),
            Cmd::Search { uid: u, criteria } => format!(
                "{}SEARCH {}",
                uid(*u),
                match criteria {
                    Criteria::All => "ALL".to_string(),
                    Criteria::Flagged => "FLAGGED".to_string(),
                    Criteria::Keyword(k) => format!("KEYWORD {k}"),
                }
            ),
            Cmd::Copy {
                uid: u,
                set,
                to,
                moving,
            } => format!(
                "{}{} {} {to}",
                uid(*u),
                if *moving { "MOVE" } else { "COPY" },
                set_text(set)
            ),
            Cmd::Idle { .. } => "IDLE".into(),
            Cmd::Noop => "NOOP".into(),
            Cmd::Logout => "LOGOUT".into(),
        }
    }

    /// A FETCH, STORE or SEARCH by sequence number: no EXPUNGE while it
    /// is answered.
    fn holds_expunges(&self) -> bool {
        matches!(
            self,
            Cmd::Fetch { uid: false, .. }
                | Cmd::Store { uid: false, .. }
                | Cmd::Search { uid: false, .. }
        )
    }

    /// The command's name (UID forms and MOVE named apart), in
    /// violations and the time-by-command table.
    pub fn verb(&self) -> &'static str {
        match self {
            Cmd::Login { .. } => "LOGIN",
            Cmd::Select { .. } => "SELECT",
            Cmd::Append { .. } => "APPEND",
            Cmd::Fetch { uid: false, .. } => "FETCH",
            Cmd::Fetch { uid: true, .. } => "UID FETCH",
            Cmd::Store { uid: false, .. } => "STORE",
            Cmd::Store { uid: true, .. } => "UID STORE",
            Cmd::Expunge => "EXPUNGE",
            Cmd::UidExpunge { .. } => "UID EXPUNGE",
            Cmd::Search { uid: false, .. } => "SEARCH",
            Cmd::Search { uid: true, .. } => "UID SEARCH",
            Cmd::Copy { moving: false, .. } => "COPY",
            Cmd::Copy { moving: true, .. } => "MOVE",
            Cmd::Idle { .. } => "IDLE",
            Cmd::Noop => "NOOP",
            Cmd::Logout => "LOGOUT",
        }
    }
}

/// What happened on a session's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The client sent a command.
    Sent {
        /// Its tag.
        tag: String,
        /// The command.
        cmd: Cmd,
    },
    /// One response (line and literals), as read.
    Received(Vec<u8>),
    /// The connection ended (EOF or an error, with its text).
    Closed(String),
}

/// One broken rule, with the session's last lines.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Which rule (a short fixed text, for counting).
    pub kind: &'static str,
    /// The session (`alice/3`).
    pub session: String,
    /// What exactly.
    pub detail: String,
    /// The session's last commands and responses, oldest first.
    pub context: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.kind, self.session, self.detail)?;
        for line in &self.context {
            write!(f, "\n    {line}")?;
        }
        Ok(())
    }
}

/// A message everywhere: (user, mailbox, UIDVALIDITY, UID).
pub type Key = (String, String, u32, u32);

#[derive(Debug, Default)]
struct Fact {
    hash: Option<u64>,
    size: Option<u64>,
    /// Given by an APPENDUID or COPYUID.
    confirmed: bool,
}

/// What all sessions share: facts about messages (UIDs are per mailbox,
/// not per session) and each mailbox's UIDVALIDITY.
#[derive(Debug, Default)]
pub struct Registry {
    uidvalidity: HashMap<(String, String), u32>,
    facts: HashMap<Key, Fact>,
    /// UIDs a FETCH or UID SEARCH named before any APPENDUID or COPYUID
    /// gave them: (key, session, the line).
    claims: Vec<(Key, String, String)>,
}

impl Registry {
    /// A mailbox's UIDVALIDITY as seen; the one seen before if it differs.
    fn uidvalidity(&mut self, user: &str, mailbox: &str, uv: u32) -> Option<u32> {
        let old = *self
            .uidvalidity
            .entry((user.to_string(), mailbox.to_string()))
            .or_insert(uv);
        (old != uv).then_some(old)
    }

    /// What a response says of a message's bytes; a conflict with what was
    /// known before, as text.
    fn observe(
        &mut self,
        key: &Key,
        hash: Option<u64>,
        size: Option<u64>,
        confirm: bool,
    ) -> Option<String> {
        let f = self.facts.entry(key.clone()).or_default();
        f.confirmed |= confirm;
        let mut conflict = None;
        if let (Some(new), Some(old)) = (size, f.size) {
            if new != old {
                conflict = Some(format!("size {new}, before {old}"));
            }
        }
        if let (Some(new), Some(old)) = (hash, f.hash) {
            if new != old {
                conflict = Some(format!("body hash {new:016x}, before {old:016x}"));
            }
        }
        f.size = f.size.or(size);
        f.hash = f.hash.or(hash);
        conflict
    }

    fn claim(&mut self, key: Key, session: &str, line: &str) {
        if !self.facts.get(&key).is_some_and(|f| f.confirmed) {
            self.claims
                .push((key, session.to_string(), line.to_string()));
        }
    }

    /// The UIDs that were named but that no APPENDUID or COPYUID gave.
    pub fn finish(&self) -> Vec<Violation> {
        self.claims
            .iter()
            .filter(|(key, ..)| !self.facts.get(key).is_some_and(|f| f.confirmed))
            .map(|((user, mailbox, uv, uid), session, line)| Violation {
                kind: "UID no APPEND or COPY gave",
                session: session.clone(),
                detail: format!("{user} {mailbox} UIDVALIDITY {uv} UID {uid}"),
                context: vec![line.clone()],
            })
            .collect()
    }
}

#[derive(Debug, Clone, Default)]
struct Msg {
    uid: Option<u32>,
    /// Body hash and size fetched before the UID was known.
    pending: (Option<u64>, Option<u64>),
    /// The session's keyword after its STORE, while the UID is unknown.
    own: Option<bool>,
}

#[derive(Debug)]
struct Selected {
    mailbox: String,
    uidvalidity: u32,
    msgs: Vec<Msg>,
}

#[derive(Debug)]
struct Current {
    tag: String,
    cmd: Cmd,
    /// Sequence numbers a FETCH FLAGS answered during this STORE.
    stored: HashSet<u32>,
    /// A STORE by number: the UIDs of its targets when it was sent (the
    /// numbers were the client's then), and whether an EXPUNGE (a
    /// violation) has moved the numbers since.
    targets: Vec<Option<u32>>,
    shifted: bool,
    /// A COPYUID seen in an untagged OK (MOVE).
    copyuid: Option<Code>,
    /// The selected mailbox when the command was sent.
    source: Option<(String, u32)>,
    bye: bool,
}

/// How many lines of context a violation carries.
const CONTEXT: usize = 14;

/// One session as its client knows it.
#[derive(Debug)]
pub struct Session {
    name: String,
    user: String,
    keyword: String,
    current: Option<Current>,
    selected: Option<Selected>,
    /// This session's keyword on a UID after its STORE (or a COPY of it).
    own: HashMap<(String, u32, u32), bool>,
    /// UIDs this session was told are expunged.
    gone: HashSet<(String, u32, u32)>,
    /// LOGOUT completed: the connection may end.
    closing: bool,
    context: VecDeque<String>,
    violations: Vec<Violation>,
    /// Tagged answers by status (`OK`, `NO`, `BAD`).
    pub answers: BTreeMap<String, u64>,
}

impl Session {
    /// A session of `user` named `name` whose keyword is `keyword`.
    pub fn new(name: &str, user: &str, keyword: &str) -> Session {
        Session {
            name: name.to_string(),
            user: user.to_string(),
            keyword: keyword.to_string(),
            current: None,
            selected: None,
            own: HashMap::new(),
            gone: HashSet::new(),
            closing: false,
            context: VecDeque::new(),
            violations: Vec::new(),
            answers: BTreeMap::new(),
        }
    }

    /// Messages of the selected mailbox the session knows of.
    pub fn count(&self) -> u32 {
        self.selected.as_ref().map_or(0, |s| s.msgs.len() as u32)
    }

    /// The selected mailbox (also while its SELECT is answered).
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_ref().map(|s| s.mailbox.as_str())
    }

    /// The UIDs the session knows in the selected mailbox, ascending.
    pub fn known_uids(&self) -> Vec<u32> {
        self.selected
            .as_ref()
            .map(|s| s.msgs.iter().filter_map(|m| m.uid).collect())
            .unwrap_or_default()
    }

    /// The session's keyword.
    pub fn keyword(&self) -> &str {
        &self.keyword
    }

    /// A command is in progress (sent, not completed).
    pub fn busy(&self) -> bool {
        self.current.is_some()
    }

    /// Takes the violations found so far.
    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }

    fn note(&mut self, line: String) {
        if self.context.len() == CONTEXT {
            self.context.pop_front();
        }
        self.context.push_back(line);
    }

    fn violation(&mut self, kind: &'static str, detail: String) {
        self.violations.push(Violation {
            kind,
            session: self.name.clone(),
            detail,
            context: self.context.iter().cloned().collect(),
        });
    }

    /// Feeds one event.
    pub fn feed(&mut self, event: &Event, reg: &mut Registry) {
        match event {
            Event::Sent { tag, cmd } => self.sent(tag, cmd),
            Event::Received(bytes) => {
                self.note(format!("S: {}", shown(bytes)));
                self.received(bytes, reg);
            }
            Event::Closed(why) => {
                self.note(format!("closed: {why}"));
                let clean = self.closing
                    || self
                        .current
                        .as_ref()
                        .is_some_and(|c| c.cmd == Cmd::Logout && c.bye);
                if !clean {
                    let during = self
                        .current
                        .as_ref()
                        .map_or("between commands", |c| c.cmd.verb());
                    self.violation("connection lost", format!("{why} ({during})"));
                }
                self.current = None;
                self.selected = None;
            }
        }
    }

    fn sent(&mut self, tag: &str, cmd: &Cmd) {
        self.note(format!("C: {tag} {}", cmd.text("***")));
        if let Some(c) = &self.current {
            let detail = format!("{} {} sent before {} completed", tag, cmd.verb(), c.tag);
            self.violation("client sent two commands", detail);
        }
        self.closing = false;
        let targets = match (cmd, &self.selected) {
            (
                Cmd::Store {
                    uid: false, set, ..
                },
                Some(sel),
            ) => sel
                .msgs
                .iter()
                .enumerate()
                .filter(|(i, _)| in_set(set, *i as u32 + 1))
                .map(|(_, m)| m.uid)
                .collect(),
            _ => Vec::new(),
        };
        let source = self
            .selected
            .as_ref()
            .map(|s| (s.mailbox.clone(), s.uidvalidity));
        match cmd {
            Cmd::Select { mailbox } => {
                self.selected = Some(Selected {
                    mailbox: mailbox.clone(),
                    uidvalidity: 0,
                    msgs: Vec::new(),
                });
            }
            Cmd::Login { .. } => self.selected = None,
            _ => {}
        }
        self.current = Some(Current {
            tag: tag.to_string(),
            cmd: cmd.clone(),
            stored: HashSet::new(),
            targets,
            shifted: false,
            copyuid: None,
            source,
            bye: false,
        });
    }

    fn received(&mut self, bytes: &[u8], reg: &mut Registry) {
        let resp = parse(bytes);
        let names_message = matches!(resp, Resp::Exists(_) | Resp::Expunge(_) | Resp::Fetch(..));
        if names_message {
            if self.current.is_none() {
                self.violation("untagged response between commands", shown(bytes));
            } else if self.selected.is_none() {
                self.violation("message response with no mailbox selected", shown(bytes));
                return;
            }
        }
        match resp {
            Resp::Exists(n) => self.exists(n),
            Resp::Expunge(n) => self.expunge(n),
            Resp::Fetch(n, d) => self.fetch(n, &d, bytes, reg),
            Resp::Search(results) => self.search(&results, bytes, reg),
            Resp::Status { cond, code } => {
                if cond == "BYE" {
                    match &mut self.current {
                        Some(c) if c.cmd == Cmd::Logout => c.bye = true,
                        _ => self.violation("BYE but for LOGOUT", shown(bytes)),
                    }
                }
                match (code, &mut self.current, &mut self.selected) {
                    (Some(code), Some(c), Some(sel))
                        if code.name == "UIDVALIDITY" && matches!(c.cmd, Cmd::Select { .. }) =>
                    {
                        sel.uidvalidity = code.number().unwrap_or(0);
                    }
                    (Some(code), Some(c), _) if code.name == "COPYUID" => c.copyuid = Some(code),
                    _ => {}
                }
            }
            Resp::Continue => {
                if !matches!(
                    self.current.as_ref().map(|c| &c.cmd),
                    Some(Cmd::Append { .. } | Cmd::Idle { .. })
                ) {
                    self.violation("unexpected continuation", shown(bytes));
                }
            }
            Resp::Tagged { tag, status, code } => self.tagged(&tag, &status, code, bytes, reg),
            Resp::Other => {}
            Resp::Malformed(text) => self.violation("unreadable response", text),
        }
    }

    fn exists(&mut self, n: u32) {
        let count = self.count();
        if n < count {
            self.violation(
                "EXISTS decreased",
                format!("{n} EXISTS but the session knows {count} messages"),
            );
            return;
        }
        if let Some(sel) = &mut self.selected {
            sel.msgs.resize(n as usize, Msg::default());
        }
    }

    fn expunge(&mut self, n: u32) {
        if let Some(c) = &mut self.current {
            c.shifted = true;
            if c.cmd.holds_expunges() {
                let detail = format!("* {n} EXPUNGE while answering {} {}", c.tag, c.cmd.verb());
                self.violation("EXPUNGE during FETCH, STORE or SEARCH", detail);
            }
        }
        let count = self.count();
        if n == 0 || n > count {
            self.violation(
                "EXPUNGE out of range",
                format!("* {n} EXPUNGE but the session knows {count} messages"),
            );
            return;
        }
        let Some(sel) = &mut self.selected else {
            return;
        };
        let m = sel.msgs.remove(n as usize - 1);
        if let Some(uid) = m.uid {
            self.gone
                .insert((sel.mailbox.clone(), sel.uidvalidity, uid));
        }
    }

    fn fetch(&mut self, n: u32, d: &FetchData, bytes: &[u8], reg: &mut Registry) {
        let count = self.count();
        if n == 0 || n > count {
            self.violation(
                "FETCH above EXISTS",
                format!(
                    "* {n} FETCH but the session knows {count} messages: {}",
                    shown(bytes)
                ),
            );
            return;
        }
        if let Some(c) = &mut self.current {
            if matches!(c.cmd, Cmd::Store { uid: false, .. })
                && d.flags.is_some()
                && !c.stored.insert(n)
            {
                let detail = format!("second FETCH FLAGS of {n} in one STORE: {}", shown(bytes));
                self.violation("duplicate FETCH in a STORE answer", detail);
            }
        }
        let Some(sel) = &mut self.selected else {
            return;
        };
        let (mailbox, uv) = (sel.mailbox.clone(), sel.uidvalidity);
        let i = n as usize - 1;
        let mut problems: Vec<(&'static str, String)> = Vec::new();
        if let Some(uid) = d.uid {
            match sel.msgs[i].uid {
                Some(old) if old != uid => problems.push((
                    "UID of a message changed",
                    format!("message {n} had UID {old}, now UID {uid}"),
                )),
                Some(_) => {}
                None => {
                    sel.msgs[i].uid = Some(uid);
                    if let Some(own) = sel.msgs[i].own {
                        self.own.insert((mailbox.clone(), uv, uid), own);
                    }
                }
            }
            let below = sel.msgs[..i].iter().rev().find_map(|m| m.uid);
            let above = sel.msgs[i + 1..].iter().find_map(|m| m.uid);
            if below.is_some_and(|b| b >= uid) || above.is_some_and(|a| a <= uid) {
                problems.push((
                    "UIDs out of order",
                    format!("message {n} UID {uid} between UIDs {below:?} and {above:?}"),
                ));
            }
            if self.gone.contains(&(mailbox.clone(), uv, uid)) {
                problems.push(("expunged UID came back", format!("UID {uid} at {n}")));
            }
            reg.claim(
                (self.user.clone(), mailbox.clone(), uv, uid),
                &self.name,
                &shown(bytes),
            );
        }
        let msg = &mut sel.msgs[i];
        let hash = d.body.map(|b| b.0).or(msg.pending.0);
        // BODY[] NIL and RFC822.SIZE 0: expunged meanwhile (not a change).
        let d_size = d.size.filter(|_| !d.body_nil);
        let size = d_size.or(d.body.map(|b| b.1)).or(msg.pending.1);
        match msg.uid {
            Some(uid) => {
                msg.pending = (None, None);
                let key = (self.user.clone(), mailbox.clone(), uv, uid);
                if let (Some(b), Some(s)) = (d.body, d_size) {
                    if b.1 != s {
                        problems.push((
                            "message changed",
                            format!("UID {uid}: RFC822.SIZE {s} but BODY[] of {}", b.1),
                        ));
                    }
                }
                if let Some(conflict) = reg.observe(&key, hash, size, false) {
                    problems.push(("message changed", format!("UID {uid}: {conflict}")));
                }
            }
            None => msg.pending = (hash, size),
        }
        let uid = msg.uid;
        for (kind, detail) in problems {
            self.violation(kind, detail);
        }
        if let (Some(flags), Some(uid)) = (&d.flags, uid) {
            self.check_keyword(n, uid, flags, &mailbox, uv, bytes);
        }
    }

    /// The session's own keyword in a FETCH FLAGS of message `n` (UID `uid`).
    fn check_keyword(
        &mut self,
        n: u32,
        uid: u32,
        flags: &[String],
        mailbox: &str,
        uv: u32,
        bytes: &[u8],
    ) {
        let has = flags.iter().any(|f| f.eq_ignore_ascii_case(&self.keyword));
        if let Some(Current {
            cmd:
                Cmd::Store {
                    uid: by_uid,
                    set,
                    op,
                    flags: stored,
                    ..
                },
            targets,
            shifted,
            ..
        }) = &self.current
        {
            let target = match (*by_uid, *shifted) {
                (true, _) => in_set(set, uid),
                (false, false) => in_set(set, n),
                (false, true) => targets.contains(&Some(uid)),
            };
            if let (true, Some(want)) = (target, keyword_after(*op, stored, &self.keyword)) {
                if has != want {
                    let detail = format!(
                        "STORE of {} but its answer says {}",
                        self.keyword,
                        shown(bytes)
                    );
                    self.violation("FLAGS do not follow the STORE", detail);
                }
                return;
            }
        }
        let key = (mailbox.to_string(), uv, uid);
        if let Some(&want) = self.own.get(&key) {
            if has != want {
                let detail = format!(
                    "{} is {} on UID {uid} since this session's STORE, but: {}",
                    self.keyword,
                    if want { "set" } else { "clear" },
                    shown(bytes)
                );
                self.violation("FLAGS do not follow the STORE", detail);
            }
        }
    }

    fn search(&mut self, results: &[u32], bytes: &[u8], reg: &mut Registry) {
        let Some(c) = &self.current else {
            self.violation("untagged response between commands", shown(bytes));
            return;
        };
        let Cmd::Search { uid, criteria } = &c.cmd else {
            return;
        };
        let (uid, criteria) = (*uid, criteria.clone());
        let count = self.count();
        let (mailbox, uv) = match &self.selected {
            Some(s) => (s.mailbox.clone(), s.uidvalidity),
            None => return,
        };
        let own_search = criteria == Criteria::Keyword(self.keyword.clone());
        for &r in results {
            let uid_of = if uid {
                if self.gone.contains(&(mailbox.clone(), uv, r)) {
                    self.violation(
                        "expunged UID came back",
                        format!("UID {r} in {}", shown(bytes)),
                    );
                }
                reg.claim(
                    (self.user.clone(), mailbox.clone(), uv, r),
                    &self.name,
                    &shown(bytes),
                );
                Some(r)
            } else if r == 0 || r > count {
                let detail = format!("{r} in SEARCH but the session knows {count} messages");
                self.violation("SEARCH result above EXISTS", detail);
                None
            } else {
                self.selected
                    .as_ref()
                    .and_then(|s| s.msgs[r as usize - 1].uid)
            };
            if let (true, Some(u)) = (own_search, uid_of) {
                if self.own.get(&(mailbox.clone(), uv, u)) == Some(&false) {
                    let detail = format!(
                        "UID {u} found by KEYWORD {} after it was cleared",
                        self.keyword
                    );
                    self.violation("FLAGS do not follow the STORE", detail);
                }
            }
        }
    }

    fn tagged(
        &mut self,
        tag: &str,
        status: &str,
        code: Option<Code>,
        bytes: &[u8],
        reg: &mut Registry,
    ) {
        let Some(c) = self.current.take() else {
            self.violation("tagged response between commands", shown(bytes));
            return;
        };
        if c.tag != tag {
            self.violation(
                "tagged response for another command",
                format!("expected {}: {}", c.tag, shown(bytes)),
            );
        }
        *self.answers.entry(status.to_string()).or_default() += 1;
        if status == "BAD" {
            self.violation("BAD", format!("{}: {}", c.cmd.verb(), shown(bytes)));
        }
        let ok = status == "OK";
        match &c.cmd {
            Cmd::Select { mailbox } => {
                if !ok {
                    self.selected = None;
                } else if let Some(sel) = &self.selected {
                    if let Some(old) = reg.uidvalidity(&self.user, mailbox, sel.uidvalidity) {
                        let detail =
                            format!("{mailbox}: UIDVALIDITY {} after {old}", sel.uidvalidity);
                        self.violation("UIDVALIDITY changed", detail);
                    }
                }
            }
            Cmd::Append {
                mailbox,
                hash,
                size,
                ..
            } if ok => match code.as_ref().and_then(Code::appenduid) {
                Some((uv, uids)) => {
                    if let Some(old) = reg.uidvalidity(&self.user, mailbox, uv) {
                        self.violation(
                            "UIDVALIDITY changed",
                            format!("APPENDUID {uv} in {mailbox} after {old}"),
                        );
                    }
                    for uid in uids {
                        let key = (self.user.clone(), mailbox.clone(), uv, uid);
                        if let Some(conflict) = reg.observe(&key, Some(*hash), Some(*size), true) {
                            self.violation(
                                "message changed",
                                format!("appended as UID {uid}: {conflict}"),
                            );
                        }
                    }
                }
                None => self.violation("no APPENDUID", shown(bytes)),
            },
            Cmd::Store {
                uid,
                set,
                op,
                flags,
                ..
            } => {
                if let Some(after) = keyword_after(*op, flags, &self.keyword) {
                    let shifted = (!*uid && c.shifted).then_some(c.targets.as_slice());
                    self.stored(c.source.as_ref(), *uid, set, shifted, ok.then_some(after));
                }
            }
            Cmd::Copy { to, .. } if ok => {
                let code = code.filter(|k| k.name == "COPYUID").or(c.copyuid);
                // Nothing copied (all expunged meanwhile) has no COPYUID;
                // a copy that was made but not told shows up as a UID no
                // COPYUID gave ([`Registry::finish`]).
                if let (Some((uv, pairs)), Some((from, from_uv))) =
                    (code.as_ref().and_then(Code::copyuid), &c.source)
                {
                    if let Some(old) = reg.uidvalidity(&self.user, to, uv) {
                        self.violation(
                            "UIDVALIDITY changed",
                            format!("COPYUID {uv} in {to} after {old}"),
                        );
                    }
                    for (src, dst) in pairs {
                        let skey = (self.user.clone(), from.clone(), *from_uv, src);
                        let (hash, size) = reg
                            .facts
                            .get(&skey)
                            .map_or((None, None), |f| (f.hash, f.size));
                        let dkey = (self.user.clone(), to.clone(), uv, dst);
                        if let Some(conflict) = reg.observe(&dkey, hash, size, true) {
                            self.violation(
                                "message changed",
                                format!("UID {src} copied to {to} UID {dst}: {conflict}"),
                            );
                        }
                        if let Some(&own) = self.own.get(&(from.clone(), *from_uv, src)) {
                            self.own.insert((to.clone(), uv, dst), own);
                        }
                    }
                }
            }
            Cmd::Logout => {
                self.selected = None;
                self.closing = true;
            }
            _ => {}
        }
    }

    /// The session's keyword after its STORE completed: `after` on
    /// success, unknown (`None`) after a NO.
    /// `shifted`: the targets' UIDs when a STORE by number was sent, if
    /// an EXPUNGE moved the numbers since.
    fn stored(
        &mut self,
        source: Option<&(String, u32)>,
        by_uid: bool,
        set: &Set,
        shifted: Option<&[Option<u32>]>,
        after: Option<bool>,
    ) {
        let (Some((mailbox, uv)), Some(sel)) = (source, &mut self.selected) else {
            return;
        };
        // Only messages the session knows: a UID range may also cover
        // messages appended after the STORE.
        let mut uids = Vec::new();
        let mut unknown = shifted.is_some_and(|t| t.contains(&None));
        for (i, m) in sel.msgs.iter_mut().enumerate() {
            // `maybe`: the message may be a target, the session cannot
            // tell (its UID is unknown): what it knew of it is forgotten.
            let (target, maybe) = match (by_uid, m.uid, shifted) {
                (true, Some(u), _) => (in_set(set, u), false),
                (true, None, _) => (false, true),
                (false, Some(u), Some(t)) => (t.contains(&Some(u)), false),
                (false, None, Some(t)) => (false, t.contains(&None)),
                (false, _, None) => (in_set(set, i as u32 + 1), false),
            };
            if maybe {
                m.own = None;
            }
            if target {
                m.own = after;
                uids.extend(m.uid);
                unknown |= m.uid.is_none();
            }
        }
        if unknown {
            // A message whose UID the session does not know changed: what
            // it knew of UIDs not in view may be about that message.
            let known: HashSet<u32> = sel.msgs.iter().filter_map(|m| m.uid).collect();
            self.own
                .retain(|(m, v, u), _| m != mailbox || v != uv || known.contains(u));
        }
        if by_uid {
            // UIDs the session saw before, out of view now: the STORE
            // reached them if they still exist.
            uids.extend(
                self.own
                    .keys()
                    .filter(|(m, v, u)| m == mailbox && v == uv && in_set(set, *u))
                    .map(|k| k.2)
                    .collect::<Vec<_>>(),
            );
        }
        for uid in uids {
            let key = (mailbox.clone(), *uv, uid);
            match after {
                Some(has) => self.own.insert(key, has),
                None => self.own.remove(&key),
            };
        }
    }
}

/// Whether a STORE leaves `keyword` set, if it touches it.
fn keyword_after(op: FlagOp, flags: &[String], keyword: &str) -> Option<bool> {
    let named = flags.iter().any(|f| f.eq_ignore_ascii_case(keyword));
    match op {
        FlagOp::Add => named.then_some(true),
        FlagOp::Remove => named.then_some(false),
        FlagOp::Replace => Some(named),
    }
}

/// A response as one line of context: CRLFs shown, literals cut short.
pub fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end().replace("\r\n", "⏎");
    if text.chars().count() > 160 {
        format!("{}…", text.chars().take(160).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
