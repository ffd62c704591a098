//! Mutation policy, pure: what a replicated command needs to know from the
//! session's backend ([`needs`]), what it becomes ([`plan`]: an [`Op`] to
//! propose, or a refusal), how its outcome is answered ([`answer`]), and
//! how a change the local backend refused is undone ([`undo`]). The
//! session's driver (`mutate.rs`) does the I/O around these; each policy
//! is a table test below.

use tandem_parser::command::{Command, CommandBody, SetArg, StoreMode};
use tandem_parser::lexer::StrToken;
use tandem_parser::seqset::Ranges;
use tandem_state::{FlagMode, NewMessage, Op, Outcome};

use super::Selected;

mod validate;

/// What a mutation's answer needs once its entry is through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// A mailbox operation: `OK <verb> completed`.
    Plain(&'static str),
    /// APPEND: APPENDUID; the new EXISTS when it went into the selected
    /// mailbox.
    Append { into_selected: bool },
    /// COPY or MOVE: COPYUID; MOVE's EXPUNGEs, COPY's EXISTS into the
    /// selected mailbox.
    Copy { remove: bool, into_selected: bool },
    /// STORE: the new flags unless `.SILENT`.
    Store { silent: bool },
    /// EXPUNGE: the EXPUNGEs.
    Expunge,
    /// CLOSE: expunged through the log, then leave the mailbox.
    Close,
}

/// What the session must learn from its backend before [`plan`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Needs<'c> {
    /// The hierarchy separator (mailbox names).
    pub(super) separator: bool,
    /// The canonical UIDs this set names in the selected mailbox.
    pub(super) set: Option<&'c SetArg>,
    /// The canonical UIDs of the messages marked `\Deleted`.
    pub(super) deleted: bool,
    /// Whether APPENDs are held to Cyrus's rules.
    pub(super) strict: bool,
}

/// What the session learned (each only if [`needs`] asked for it).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Facts {
    /// The backend's hierarchy separator.
    pub(super) separator: Option<char>,
    /// The set argument in canonical UIDs, or why it cannot be.
    pub(super) set: Option<Result<Ranges, SetError>>,
    /// The canonical UIDs marked `\Deleted` in this session's view.
    pub(super) deleted: Option<Ranges>,
    /// APPENDs are held to Cyrus's rules (a Cyrus node is in the cluster).
    pub(super) strict: bool,
    /// The set names, by number, a message expunged elsewhere that this
    /// session still shows.
    pub(super) gone: bool,
}

/// What a command becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    /// Propose `op`; answer as `after` says.
    Propose {
        /// The operation, in canonical terms.
        op: Op,
        /// How to answer once it is through.
        after: After,
    },
    /// Answer with this tagged line; nothing is proposed.
    Refuse(String),
    /// CLOSE of a mailbox selected with EXAMINE: the backend's own CLOSE
    /// (which expunges nothing there), then OK.
    CloseReadOnly,
    /// Not a mutation.
    NotMine,
}

/// What a command needs to know before it can be planned. A command that
/// will be refused whatever the backend says needs nothing.
pub(super) fn needs<'c>(cmd: &'c Command<'_>, selected: Option<&Selected>) -> Needs<'c> {
    let writable = selected.is_some_and(|s| !s.read_only);
    match &cmd.body {
        CommandBody::Create { .. } | CommandBody::Delete { .. } | CommandBody::Rename { .. } => {
            Needs {
                separator: true,
                ..Needs::default()
            }
        }
        CommandBody::Append { .. } => Needs {
            strict: true,
            ..Needs::default()
        },
        CommandBody::Copy { set, .. } if selected.is_some() => Needs {
            set: Some(set),
            ..Needs::default()
        },
        CommandBody::Move { set, .. } if writable => Needs {
            set: Some(set),
            ..Needs::default()
        },
        CommandBody::Store { set, modifiers, .. } if writable && modifiers.is_none() => Needs {
            set: Some(set),
            ..Needs::default()
        },
        CommandBody::Expunge { uids } if writable => Needs {
            deleted: true,
            set: uids.as_ref(),
            ..Needs::default()
        },
        CommandBody::Close if writable => Needs {
            deleted: true,
            ..Needs::default()
        },
        _ => Needs::default(),
    }
}

/// A mailbox name argument, or the refusal of one that is neither UTF-8
/// nor modified UTF-7.
fn name_of(tag: &str, raw: &[u8], t: &StrToken) -> Result<String, String> {
    String::from_utf8(t.value(raw).into_owned())
        .map_err(|_| format!("{tag} BAD Mailbox names must be UTF-8 or modified UTF-7\r\n"))
}

/// Whether every supported backend takes `name` for a new mailbox
/// (`tandem_parser::names`); INBOX is the backends' own business.
fn new_name_allowed(
    name: &str,
    separator: Option<char>,
) -> Result<(), tandem_parser::names::NameDefect> {
    if tandem_state::normalize(name) == "INBOX" {
        return Ok(());
    }
    let sep = separator.and_then(|c| u8::try_from(c).ok());
    tandem_parser::names::check_new_name(name.as_bytes(), sep)
}

/// The selected mailbox a command that changes it works on, or the refusal.
fn writable(tag: &str, selected: Option<&Selected>) -> Result<Selected, String> {
    match selected {
        Some(s) if !s.read_only => Ok(s.clone()),
        Some(_) => Err(format!("{tag} NO [CANNOT] The mailbox is read-only\r\n")),
        None => Err(format!("{tag} BAD No mailbox selected\r\n")),
    }
}

/// The canonical set [`needs`] asked for, or the refusal.
fn canonical(tag: &str, facts: &Facts) -> Result<Ranges, String> {
    match &facts.set {
        Some(Ok(set)) => Ok(set.clone()),
        Some(Err(SetError::Bad(why))) => Err(format!("{tag} BAD {why}\r\n")),
        Some(Err(SetError::NotYet)) => Err(format!(
            "{tag} NO [UNAVAILABLE] Some of the messages are not replicated to this node yet, try again\r\n"
        )),
        None => Err(format!("{tag} BAD no mailbox selected\r\n")),
    }
}

/// Why a set argument has no canonical UIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SetError {
    /// The client's mistake: `BAD` with this text.
    Bad(&'static str),
    /// A message it names is on this node's backend without a canonical
    /// UID yet (the applier is recording it, or it came behind tandem's
    /// back and awaits adoption): `NO [UNAVAILABLE]`, never a change that
    /// silently leaves it out.
    NotYet,
}

/// What a replicated command becomes, given what [`needs`] asked for.
pub(super) fn plan(cmd: &Command<'_>, selected: Option<&Selected>, facts: &Facts) -> Plan {
    let tag = String::from_utf8_lossy(cmd.tag()).to_string();
    match plan_body(&tag, cmd, selected, facts) {
        Ok(plan) => plan,
        Err(line) => Plan::Refuse(line),
    }
}

fn plan_body(
    tag: &str,
    cmd: &Command<'_>,
    selected: Option<&Selected>,
    facts: &Facts,
) -> Result<Plan, String> {
    match &cmd.body {
        CommandBody::Create { .. }
        | CommandBody::Delete { .. }
        | CommandBody::Rename { .. }
        | CommandBody::Subscribe { .. }
        | CommandBody::Unsubscribe { .. } => plan_mailbox(tag, cmd, facts),
        CommandBody::Append { mailbox, messages } => {
            plan_append(tag, cmd.buf, mailbox, messages, selected, facts)
        }
        CommandBody::Copy { .. } | CommandBody::Move { .. } => plan_copy(tag, cmd, selected, facts),
        CommandBody::Store { .. } => plan_store(tag, cmd, selected, facts),
        CommandBody::Expunge { uids } => {
            let s = writable(tag, selected)?;
            let mut deleted = facts.deleted.clone().unwrap_or_default();
            if uids.is_some() {
                deleted = deleted.intersection(&canonical(tag, facts)?);
            }
            Ok(Plan::Propose {
                op: Op::Expunge {
                    mailbox: s.name,
                    uidvalidity: s.uidvalidity,
                    uids: deleted.ranges().to_vec(),
                },
                after: After::Expunge,
            })
        }
        CommandBody::Close => match selected {
            None => Err(format!("{tag} BAD No mailbox selected\r\n")),
            Some(s) if s.read_only => Ok(Plan::CloseReadOnly),
            Some(s) => Ok(Plan::Propose {
                op: Op::Expunge {
                    mailbox: s.name.clone(),
                    uidvalidity: s.uidvalidity,
                    uids: facts.deleted.clone().unwrap_or_default().ranges().to_vec(),
                },
                after: After::Close,
            }),
        },
        _ => Ok(Plan::NotMine),
    }
}

/// CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE.
fn plan_mailbox(tag: &str, cmd: &Command<'_>, facts: &Facts) -> Result<Plan, String> {
    let raw = cmd.buf;
    let separator = facts.separator;
    let (op, verb) = match &cmd.body {
        CommandBody::Create { mailbox, params } => {
            // RFC 4466 parameters (CREATE-SPECIAL-USE's USE) are not
            // replicated, and tandem does not advertise them.
            if params.is_some() {
                return Err(format!(
                    "{tag} NO [CANNOT] CREATE parameters are not available through tandem\r\n"
                ));
            }
            let mut name = name_of(tag, raw, mailbox)?;
            if let Some(sep) = separator {
                while name.len() > 1 && name.ends_with(sep) {
                    name.pop();
                }
            }
            if let Err(why) = new_name_allowed(&name, separator) {
                return Err(format!("{tag} NO [CANNOT] {why}\r\n"));
            }
            (Op::Create { name }, "CREATE")
        }
        CommandBody::Delete { mailbox } => {
            let name = name_of(tag, raw, mailbox)?;
            (Op::DeleteLeaf { name, separator }, "DELETE")
        }
        CommandBody::Rename { from, to } => {
            let (from, to) = (name_of(tag, raw, from)?, name_of(tag, raw, to)?);
            if let Err(why) = new_name_allowed(&to, separator) {
                return Err(format!("{tag} NO [CANNOT] {why}\r\n"));
            }
            let op = Op::Rename {
                from,
                to,
                separator,
            };
            (op, "RENAME")
        }
        CommandBody::Subscribe { mailbox } => {
            let name = name_of(tag, raw, mailbox)?;
            (Op::Subscribe { name }, "SUBSCRIBE")
        }
        CommandBody::Unsubscribe { mailbox } => {
            let name = name_of(tag, raw, mailbox)?;
            (Op::Unsubscribe { name }, "UNSUBSCRIBE")
        }
        _ => return Ok(Plan::NotMine),
    };
    Ok(Plan::Propose {
        op,
        after: After::Plain(verb),
    })
}

/// APPEND (and MULTIAPPEND).
fn plan_append(
    tag: &str,
    raw: &[u8],
    mailbox: &StrToken,
    messages: &[tandem_parser::command::AppendMessage],
    selected: Option<&Selected>,
    facts: &Facts,
) -> Result<Plan, String> {
    let name = name_of(tag, raw, mailbox)?;
    // Once a Cyrus node is in the cluster, every node refuses what Cyrus
    // would, so that no node's backend refuses what another stored (the
    // state machine decides; this saves a proposal). An empty message no
    // backend takes, whatever the cluster.
    for m in messages {
        if let Some(flag) = validate::bad_flag(m.flags.iter().map(|f| f.of(raw))) {
            return Err(format!("{tag} BAD Invalid flag {flag}\r\n"));
        }
        if let Some(date) = &m.date {
            if !validate::is_date_time(&String::from_utf8_lossy(&date.value(raw))) {
                return Err(format!("{tag} BAD Invalid date-time\r\n"));
            }
        }
        let body = m.message.value(raw);
        let verdict = if facts.strict {
            tandem_parser::message::check(&body)
        } else if body.is_empty() {
            Err(tandem_parser::message::Defect::Empty)
        } else {
            Ok(())
        };
        if let Err(defect) = verdict {
            return Err(format!("{tag} NO [CANNOT] {defect}\r\n"));
        }
    }
    // A literal8 (RFC 3516) goes to every backend as a literal8: Dovecot
    // stores a binary part differently when it comes as one.
    let literal8: Vec<bool> = messages
        .iter()
        .map(|m| {
            matches!(
                m.message.kind,
                tandem_parser::lexer::StrKind::Literal { binary: true, .. }
            )
        })
        .collect();
    let messages = messages
        .iter()
        .map(|m| NewMessage {
            flags: m
                .flags
                .iter()
                .map(|f| String::from_utf8_lossy(f.of(raw)).to_string())
                .collect(),
            date: m
                .date
                .as_ref()
                .map(|d| String::from_utf8_lossy(&d.value(raw)).to_string()),
            body: m.message.value(raw).into_owned(),
        })
        .collect();
    let into_selected = selected
        .is_some_and(|s| tandem_state::normalize(&s.name) == tandem_state::normalize(&name));
    Ok(Plan::Propose {
        op: if literal8.contains(&true) {
            Op::AppendLiteral8 {
                mailbox: name,
                messages,
                literal8,
            }
        } else {
            Op::Append {
                mailbox: name,
                messages,
                replaces: None,
            }
        },
        after: After::Append { into_selected },
    })
}

/// COPY and MOVE.
fn plan_copy(
    tag: &str,
    cmd: &Command<'_>,
    selected: Option<&Selected>,
    facts: &Facts,
) -> Result<Plan, String> {
    let (CommandBody::Copy { mailbox, .. } | CommandBody::Move { mailbox, .. }) = &cmd.body else {
        return Ok(Plan::NotMine);
    };
    let remove = matches!(cmd.body, CommandBody::Move { .. });
    let s = match selected {
        Some(s) if !(remove && s.read_only) => s.clone(),
        _ => writable(tag, selected)?,
    };
    let to = name_of(tag, cmd.buf, mailbox)?;
    let uids = canonical(tag, facts)?;
    if facts.gone {
        // As Dovecot: nothing is copied when one of them is gone.
        return Err(format!(
            "{tag} NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n"
        ));
    }
    let into_selected = tandem_state::normalize(&s.name) == tandem_state::normalize(&to);
    Ok(Plan::Propose {
        op: Op::Copy {
            from: s.name,
            from_uidvalidity: s.uidvalidity,
            uids: uids.ranges().to_vec(),
            to,
            remove,
        },
        after: After::Copy {
            remove,
            into_selected,
        },
    })
}

/// STORE (flags; modifiers such as UNCHANGEDSINCE are refused).
fn plan_store(
    tag: &str,
    cmd: &Command<'_>,
    selected: Option<&Selected>,
    facts: &Facts,
) -> Result<Plan, String> {
    let CommandBody::Store {
        modifiers,
        mode,
        silent,
        flags,
        ..
    } = &cmd.body
    else {
        return Ok(Plan::NotMine);
    };
    let s = writable(tag, selected)?;
    if modifiers.is_some() {
        return Err(format!("{tag} BAD STORE modifiers are not supported\r\n"));
    }
    if let Some(flag) = validate::bad_flag(flags.iter().map(|f| f.of(cmd.buf))) {
        return Err(format!("{tag} BAD Invalid flag {flag}\r\n"));
    }
    let uids = canonical(tag, facts)?;
    Ok(Plan::Propose {
        op: Op::Store {
            mailbox: s.name,
            uidvalidity: s.uidvalidity,
            uids: uids.ranges().to_vec(),
            mode: match mode {
                StoreMode::Replace => FlagMode::Replace,
                StoreMode::Add => FlagMode::Add,
                StoreMode::Remove => FlagMode::Remove,
            },
            flags: flags
                .iter()
                .map(|f| String::from_utf8_lossy(f.of(cmd.buf)).to_string())
                .collect(),
        },
        after: After::Store { silent: *silent },
    })
}

/// Whether `op` changes nothing anywhere, so that no entry is proposed
/// (an EXPUNGE with nothing marked `\Deleted`).
pub(super) fn proposes_nothing(op: &Op) -> bool {
    matches!(op, Op::Expunge { uids, .. } if uids.is_empty())
}

/// What the session does on its own backend connection before the tagged
/// line, so that the client gets the untagged responses it expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Then {
    /// Nothing.
    Nothing,
    /// NOOP, relaying its untagged responses (EXISTS, EXPUNGE, FETCH).
    Noop,
    /// The new flags of the messages a STORE named (these canonical UIDs):
    /// relayed unless `silent` (NOOP when none is mapped here).
    FetchFlags { uids: Vec<u32>, silent: bool },
    /// The selected mailbox may have been renamed or deleted: deselect it
    /// if its canonical UIDVALIDITY is gone.
    RecheckSelected,
    /// UNSELECT (CLOSE expunged through the log), then deselect.
    Unselect,
}

/// How a mutation is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    /// An untagged response first (MOVE's `* OK [COPYUID ...]`).
    pub(super) untagged: Option<String>,
    /// What the session does on its backend connection next.
    pub(super) then: Then,
    /// The tagged line.
    pub(super) tagged: String,
}

/// Why a proposal did not give an outcome (`MutateError`, in plain values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failed {
    /// Not committed: the client may try again.
    Unavailable(String),
    /// Committed, but this node's backend refused it (or did not apply it
    /// in time); the backend's words.
    Backend(String),
}

/// A set of UIDs as IMAP writes it (`1:3,7`).
fn uid_set(v: &[u32]) -> String {
    String::from_utf8_lossy(&Ranges::from_ranges(v.iter().map(|&u| (u, u))).to_bytes()).to_string()
}

/// The answer to a mutation tagged `tag`, from its outcome.
pub(super) fn answer(
    tag: &str,
    op: &Op,
    after: After,
    outcome: Result<&Outcome, &Failed>,
) -> Answer {
    let only = |tagged: String| Answer {
        untagged: None,
        then: Then::Nothing,
        tagged,
    };
    let (uidvalidity, uids, source) = match outcome {
        Err(Failed::Unavailable(e)) => {
            return only(format!(
                "{tag} NO [UNAVAILABLE] Not replicated, try again: {e}\r\n"
            ))
        }
        Err(Failed::Backend(text)) => {
            let text = text.replace(['\r', '\n'], " ");
            return only(format!("{tag} NO {text}\r\n"));
        }
        Ok(Outcome::No { code, text }) => return only(format!("{tag} NO [{code}] {text}\r\n")),
        Ok(Outcome::Ok {
            uidvalidity,
            uids,
            source,
            ..
        }) => (*uidvalidity, uids, source),
    };
    let with = |then, tagged| Answer {
        untagged: None,
        then,
        tagged,
    };
    let noop_if = |b: bool| if b { Then::Noop } else { Then::Nothing };
    match after {
        After::Plain(what) => {
            let moved = matches!(
                op,
                Op::Rename { .. } | Op::Delete { .. } | Op::DeleteLeaf { .. }
            );
            let then = if moved {
                Then::RecheckSelected
            } else {
                Then::Nothing
            };
            with(then, format!("{tag} OK {what} completed\r\n"))
        }
        After::Append { into_selected } => with(
            noop_if(into_selected),
            format!(
                "{tag} OK [APPENDUID {uidvalidity} {}] APPEND completed\r\n",
                uid_set(uids)
            ),
        ),
        After::Copy {
            remove,
            into_selected,
        } => {
            let code = if uids.is_empty() {
                String::new()
            } else {
                format!(
                    "[COPYUID {uidvalidity} {} {}] ",
                    uid_set(source),
                    uid_set(uids)
                )
            };
            if remove {
                Answer {
                    untagged: (!code.is_empty()).then(|| format!("* OK {code}Moved\r\n")),
                    then: Then::Noop,
                    tagged: format!("{tag} OK MOVE completed\r\n"),
                }
            } else {
                with(
                    noop_if(into_selected),
                    format!("{tag} OK {code}COPY completed\r\n"),
                )
            }
        }
        After::Store { silent } => with(
            Then::FetchFlags {
                uids: uids.clone(),
                silent,
            },
            format!("{tag} OK STORE completed\r\n"),
        ),
        After::Expunge => with(Then::Noop, format!("{tag} OK EXPUNGE completed\r\n")),
        After::Close => with(Then::Unselect, format!("{tag} OK CLOSE completed\r\n")),
    }
}

/// What undoes, through the log, a mutation that the other nodes applied
/// and this node's backend refused, so that no node keeps what the client
/// was told NO about. `None`: nothing can (the node differs until it is
/// resynced).
pub(super) fn undo(op: &Op, outcome: &Outcome, separator: Option<char>) -> Option<Op> {
    let Outcome::Ok {
        uidvalidity, uids, ..
    } = outcome
    else {
        return None;
    };
    match op {
        Op::Append { mailbox, .. }
        | Op::AppendLiteral8 { mailbox, .. }
        | Op::Copy {
            to: mailbox,
            remove: false,
            ..
        } if !uids.is_empty() => Some(Op::Expunge {
            mailbox: mailbox.clone(),
            uidvalidity: *uidvalidity,
            uids: Ranges::from_ranges(uids.iter().map(|&u| (u, u)))
                .ranges()
                .to_vec(),
        }),
        // A mailbox this backend would not create, or a name it would not
        // rename to (one that exists here only, from before tandem).
        // DeleteLeaf: a child created meanwhile through another node keeps
        // the mailbox everywhere, rather than on Cyrus nodes only.
        Op::Create { name } => Some(Op::DeleteLeaf {
            name: name.clone(),
            separator,
        }),
        Op::Rename {
            from,
            to,
            separator,
        } if tandem_state::normalize(from) != "INBOX" => Some(Op::Rename {
            from: to.clone(),
            to: from.clone(),
            separator: *separator,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(read_only: bool) -> Selected {
        Selected {
            name: "INBOX".into(),
            uidvalidity: 7,
            read_only,
        }
    }

    fn plan_of(line: &str, sel: Option<&Selected>, facts: &Facts) -> Plan {
        let cmd = Command::parse(line.as_bytes()).expect("parses");
        plan(&cmd, sel, facts)
    }

    fn refusal(line: &str, sel: Option<&Selected>, facts: &Facts) -> String {
        match plan_of(line, sel, facts) {
            Plan::Refuse(l) => l,
            other => panic!("{line}: not refused: {other:?}"),
        }
    }

    fn set(lo: u32, hi: u32) -> Facts {
        Facts {
            set: Some(Ok(Ranges::from_ranges([(lo, hi)]))),
            ..Facts::default()
        }
    }

    #[test]
    fn a_command_that_will_be_refused_asks_the_backend_nothing() {
        let rw = selected(false);
        let ro = selected(true);
        let cases: [(&str, Option<&Selected>, bool, bool, bool); 9] = [
            // (command, selected, separator, set, deleted)
            ("a CREATE x\r\n", None, true, false, false),
            (
                "a STORE 1 +FLAGS (\\Seen)\r\n",
                Some(&rw),
                false,
                true,
                false,
            ),
            (
                "a STORE 1 +FLAGS (\\Seen)\r\n",
                Some(&ro),
                false,
                false,
                false,
            ),
            ("a STORE 1 +FLAGS (\\Seen)\r\n", None, false, false, false),
            ("a COPY 1 B\r\n", Some(&ro), false, true, false),
            ("a MOVE 1 B\r\n", Some(&ro), false, false, false),
            ("a UID EXPUNGE 3\r\n", Some(&rw), false, true, true),
            ("a EXPUNGE\r\n", Some(&rw), false, false, true),
            ("a CLOSE\r\n", Some(&ro), false, false, false),
        ];
        for (line, sel, separator, set, deleted) in cases {
            let cmd = Command::parse(line.as_bytes()).unwrap();
            let n = needs(&cmd, sel);
            assert_eq!(
                (n.separator, n.set.is_some(), n.deleted),
                (separator, set, deleted),
                "{line}"
            );
        }
    }

    #[test]
    fn refusals_are_decided_before_anything_is_proposed() {
        let rw = selected(false);
        let ro = selected(true);
        let none = Facts::default();
        let cases: [(&str, Option<&Selected>, Facts, &str); 10] = [
            (
                "a STORE 1 +FLAGS (\\Seen)\r\n",
                None,
                none.clone(),
                "a BAD No mailbox selected\r\n",
            ),
            (
                "a STORE 1 +FLAGS (\\Seen)\r\n",
                Some(&ro),
                none.clone(),
                "a NO [CANNOT] The mailbox is read-only\r\n",
            ),
            (
                "a MOVE 1 B\r\n",
                Some(&ro),
                none.clone(),
                "a NO [CANNOT] The mailbox is read-only\r\n",
            ),
            (
                "a EXPUNGE\r\n",
                None,
                none.clone(),
                "a BAD No mailbox selected\r\n",
            ),
            (
                "a CLOSE\r\n",
                None,
                none.clone(),
                "a BAD No mailbox selected\r\n",
            ),
            (
                "a STORE 1 (UNCHANGEDSINCE 5) +FLAGS (\\Seen)\r\n",
                Some(&rw),
                set(1, 1),
                "a BAD STORE modifiers are not supported\r\n",
            ),
            (
                "a STORE 9 +FLAGS (\\Seen)\r\n",
                Some(&rw),
                Facts {
                    set: Some(Err(SetError::Bad("invalid message numbers"))),
                    ..Facts::default()
                },
                "a BAD invalid message numbers\r\n",
            ),
            (
                "a STORE 2 +FLAGS (\\Seen)\r\n",
                Some(&rw),
                Facts {
                    set: Some(Err(SetError::NotYet)),
                    ..Facts::default()
                },
                "a NO [UNAVAILABLE] Some of the messages are not replicated to this node yet, try again\r\n",
            ),
            (
                "a APPEND INBOX {0+}\r\n\r\n",
                None,
                none.clone(),
                "a NO [CANNOT] Zero-length message literal\r\n",
            ),
            (
                "a APPEND INBOX {7+}\r\nab\ncd\r\n\r\n",
                None,
                Facts {
                    strict: true,
                    ..Facts::default()
                },
                "",
            ),
        ];
        for (line, sel, facts, expected) in cases {
            let got = refusal(line, sel, &facts);
            if expected.is_empty() {
                assert!(got.starts_with("a NO [CANNOT] "), "{line}: {got}");
            } else {
                assert_eq!(got, expected, "{line}");
            }
        }
        // Without a Cyrus node, bare LFs are Dovecot's business.
        assert!(matches!(
            plan_of("a APPEND INBOX {7+}\r\nab\ncd\r\n\r\n", None, &none),
            Plan::Propose { .. }
        ));
        assert_eq!(
            plan_of("a CLOSE\r\n", Some(&ro), &none),
            Plan::CloseReadOnly
        );
        assert_eq!(plan_of("a NOOP\r\n", Some(&rw), &none), Plan::NotMine);
    }

    #[test]
    fn commands_become_canonical_operations() {
        let rw = selected(false);
        let sep = Facts {
            separator: Some('.'),
            ..Facts::default()
        };
        // A trailing separator goes (RFC 3501 section 6.3.3).
        assert_eq!(
            plan_of("a CREATE Work.\r\n", None, &sep),
            Plan::Propose {
                op: Op::Create {
                    name: "Work".into()
                },
                after: After::Plain("CREATE"),
            }
        );
        assert_eq!(
            plan_of("a DELETE Work\r\n", None, &sep),
            Plan::Propose {
                op: Op::DeleteLeaf {
                    name: "Work".into(),
                    separator: Some('.'),
                },
                after: After::Plain("DELETE"),
            }
        );
        let Plan::Propose { op, after } =
            plan_of("a UID MOVE 1:3 inbox\r\n", Some(&rw), &set(1, 3))
        else {
            panic!("not proposed");
        };
        assert_eq!(
            (op, after),
            (
                Op::Copy {
                    from: "INBOX".into(),
                    from_uidvalidity: 7,
                    uids: vec![(1, 3)],
                    to: "inbox".into(),
                    remove: true,
                },
                After::Copy {
                    remove: true,
                    into_selected: true
                }
            )
        );
        // EXPUNGE takes what this session sees marked \Deleted, UID
        // EXPUNGE only those of its set.
        let facts = Facts {
            deleted: Some(Ranges::from_ranges([(2, 5)])),
            ..set(4, 9)
        };
        let Plan::Propose { op, .. } = plan_of("a UID EXPUNGE 4:9\r\n", Some(&rw), &facts) else {
            panic!("not proposed");
        };
        assert!(matches!(op, Op::Expunge { ref uids, .. } if uids == &vec![(4, 5)]));
        let Plan::Propose { op, after } = plan_of("a CLOSE\r\n", Some(&rw), &Facts::default())
        else {
            panic!("not proposed");
        };
        assert!(proposes_nothing(&op), "nothing marked: no entry");
        assert_eq!(after, After::Close);
    }

    fn ok(uids: &[u32], source: &[u32]) -> Outcome {
        Outcome::Ok {
            seq: 1,
            uidvalidity: 42,
            uids: uids.to_vec(),
            source: source.to_vec(),
        }
    }

    #[test]
    fn outcomes_are_answered_with_canonical_uids() {
        let append = Op::Subscribe { name: "x".into() };
        let a = |after, outcome: Result<&Outcome, &Failed>| answer("t", &append, after, outcome);
        let cases: Vec<(Answer, Option<&str>, Then, &str)> = vec![
            (
                a(
                    After::Append {
                        into_selected: false,
                    },
                    Ok(&ok(&[5, 6, 7, 9], &[])),
                ),
                None,
                Then::Nothing,
                "t OK [APPENDUID 42 5:7,9] APPEND completed\r\n",
            ),
            (
                a(
                    After::Append {
                        into_selected: true,
                    },
                    Ok(&ok(&[5], &[])),
                ),
                None,
                Then::Noop,
                "t OK [APPENDUID 42 5] APPEND completed\r\n",
            ),
            (
                a(
                    After::Copy {
                        remove: false,
                        into_selected: false,
                    },
                    Ok(&ok(&[10, 11], &[3, 8])),
                ),
                None,
                Then::Nothing,
                "t OK [COPYUID 42 3,8 10:11] COPY completed\r\n",
            ),
            (
                a(
                    After::Copy {
                        remove: true,
                        into_selected: false,
                    },
                    Ok(&ok(&[10], &[3])),
                ),
                Some("* OK [COPYUID 42 3 10] Moved\r\n"),
                Then::Noop,
                "t OK MOVE completed\r\n",
            ),
            (
                a(
                    After::Copy {
                        remove: true,
                        into_selected: false,
                    },
                    Ok(&ok(&[], &[])),
                ),
                None,
                Then::Noop,
                "t OK MOVE completed\r\n",
            ),
            (
                a(After::Store { silent: false }, Ok(&ok(&[2, 4], &[]))),
                None,
                Then::FetchFlags {
                    uids: vec![2, 4],
                    silent: false,
                },
                "t OK STORE completed\r\n",
            ),
            (
                a(After::Store { silent: true }, Ok(&ok(&[2], &[]))),
                None,
                Then::FetchFlags {
                    uids: vec![2],
                    silent: true,
                },
                "t OK STORE completed\r\n",
            ),
            (
                a(After::Close, Ok(&ok(&[2], &[]))),
                None,
                Then::Unselect,
                "t OK CLOSE completed\r\n",
            ),
            (
                a(
                    After::Plain("CREATE"),
                    Ok(&Outcome::No {
                        code: "ALREADYEXISTS".into(),
                        text: "Mailbox already exists".into(),
                    }),
                ),
                None,
                Then::Nothing,
                "t NO [ALREADYEXISTS] Mailbox already exists\r\n",
            ),
            (
                a(
                    After::Expunge,
                    Err(&Failed::Unavailable("no quorum".into())),
                ),
                None,
                Then::Nothing,
                "t NO [UNAVAILABLE] Not replicated, try again: no quorum\r\n",
            ),
            (
                a(
                    After::Expunge,
                    Err(&Failed::Backend("[OVERQUOTA] full\r\n".into())),
                ),
                None,
                Then::Nothing,
                "t NO [OVERQUOTA] full  \r\n",
            ),
        ];
        for (got, untagged, then, tagged) in cases {
            assert_eq!(got.untagged.as_deref(), untagged, "{tagged}");
            assert_eq!(got.then, then, "{tagged}");
            assert_eq!(got.tagged, tagged);
        }
        let rename = Op::Rename {
            from: "a".into(),
            to: "b".into(),
            separator: None,
        };
        let got = answer("t", &rename, After::Plain("RENAME"), Ok(&ok(&[], &[])));
        assert_eq!(
            got.then,
            Then::RecheckSelected,
            "the selected mailbox may be gone"
        );
    }

    #[test]
    fn what_the_local_backend_refused_is_undone_everywhere() {
        let appended = Op::Append {
            mailbox: "INBOX".into(),
            messages: Vec::new(),
            replaces: None,
        };
        assert_eq!(
            undo(&appended, &ok(&[5, 6], &[]), None),
            Some(Op::Expunge {
                mailbox: "INBOX".into(),
                uidvalidity: 42,
                uids: vec![(5, 6)],
            })
        );
        assert_eq!(
            undo(&Op::Create { name: "x".into() }, &ok(&[], &[]), Some('/')),
            Some(Op::DeleteLeaf {
                name: "x".into(),
                separator: Some('/'),
            })
        );
        let rename = |from: &str| Op::Rename {
            from: from.into(),
            to: "b".into(),
            separator: None,
        };
        assert_eq!(
            undo(&rename("a"), &ok(&[], &[]), None),
            Some(Op::Rename {
                from: "b".into(),
                to: "a".into(),
                separator: None,
            })
        );
        assert_eq!(undo(&rename("inbox"), &ok(&[], &[]), None), None);
        let moved = Op::Copy {
            from: "a".into(),
            from_uidvalidity: 1,
            uids: vec![(1, 1)],
            to: "b".into(),
            remove: true,
        };
        assert_eq!(
            undo(&moved, &ok(&[3], &[1]), None),
            None,
            "a MOVE cannot be undone"
        );
        let refused = Outcome::No {
            code: "NONEXISTENT".into(),
            text: String::new(),
        };
        assert_eq!(
            undo(&appended, &refused, None),
            None,
            "nothing happened anywhere"
        );
    }
}
