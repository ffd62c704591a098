//! The front door of a session, pure: what happens to a command before
//! replication has a say (STARTTLS, PRIVACYREQUIRED, the extensions tandem
//! hides, LOGIN and AUTHENTICATE, IDLE), and the small byte helpers of the
//! client side (tags, SASL PLAIN, synchronizing literals).

use tandem_parser::command::{sasl_plain, Command, CommandBody};
use tandem_parser::rewrite::Edit;

use super::capability::is_filtered_capability;
use super::Pending;

/// What the session knows of its client connection when a command comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Front {
    /// STARTTLS is configured.
    pub(super) tls_offered: bool,
    /// The client connection is encrypted.
    pub(super) secure: bool,
    /// LOGIN / AUTHENTICATE are allowed without TLS from this client.
    pub(super) plaintext_ok: bool,
}

impl Front {
    /// Whether LOGIN and AUTHENTICATE are refused until TLS.
    pub(super) fn login_disabled(self) -> bool {
        !self.secure && !self.plaintext_ok
    }
}

/// The mode a command puts the client side in until its tagged answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Entering {
    /// AUTHENTICATE: continuation lines.
    Authenticating,
    /// IDLE: one `DONE` line.
    Idle,
}

/// What the front door does with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Door {
    /// Answered here with these lines (tagged last).
    Answer(String),
    /// STARTTLS accepted: answer and upgrade.
    StartTls,
    /// ENABLE without the capabilities tandem hides: this line goes to the
    /// backend instead.
    Enable(Vec<u8>),
    /// Goes on, waiting as `kind`. `candidate`: the user the LOGIN or
    /// AUTHENTICATE names (`Some(None)`: not known yet).
    Pass {
        kind: Pending,
        candidate: Option<Option<String>>,
        entering: Option<Entering>,
    },
}

/// Decides what the front door does with `cmd` (parsed from `raw`).
pub(super) fn door(cmd: &Command<'_>, raw: &[u8], front: Front) -> Door {
    let tag = String::from_utf8_lossy(cmd.tag());
    let pass = |kind| Door::Pass {
        kind,
        candidate: None,
        entering: None,
    };
    match &cmd.body {
        CommandBody::StartTls if !front.tls_offered || front.secure => {
            Door::Answer(format!("{tag} BAD STARTTLS is not available here\r\n"))
        }
        CommandBody::StartTls => Door::StartTls,
        CommandBody::Login { .. } | CommandBody::Authenticate { .. } if front.login_disabled() => {
            Door::Answer(format!(
                "{tag} NO [PRIVACYREQUIRED] Log in over TLS (STARTTLS or IMAPS)\r\n"
            ))
        }
        CommandBody::Compress { .. } => Door::Answer(format!(
            "{tag} NO [CANNOT] COMPRESS is not available through this proxy\r\n"
        )),
        CommandBody::Enable { capabilities } => {
            let kept: Vec<&[u8]> = capabilities
                .iter()
                .map(|c| c.of(raw))
                .filter(|c| !is_filtered_capability(c))
                .collect();
            if kept.len() == capabilities.len() {
                return pass(Pending::Other);
            }
            if kept.is_empty() {
                // RFC 5161: unknown capabilities are ignored; none left.
                return Door::Answer(format!(
                    "* ENABLED\r\n{tag} OK ENABLE completed (nothing enabled)\r\n"
                ));
            }
            let mut line = cmd.tag().to_vec();
            line.extend_from_slice(b" ENABLE");
            for c in kept {
                line.push(b' ');
                line.extend_from_slice(c);
            }
            line.extend_from_slice(b"\r\n");
            Door::Enable(line)
        }
        CommandBody::Login { user, .. } => Door::Pass {
            kind: Pending::Login,
            candidate: Some(Some(String::from_utf8_lossy(&user.value(raw)).to_string())),
            entering: None,
        },
        CommandBody::Authenticate { mechanism, .. }
            if !mechanism.of(raw).eq_ignore_ascii_case(b"PLAIN") =>
        {
            Door::Answer(format!(
                "{tag} NO [CANNOT] Only AUTHENTICATE PLAIN is offered\r\n"
            ))
        }
        CommandBody::Authenticate { initial, .. } => Door::Pass {
            kind: Pending::Authenticate,
            candidate: Some(initial.and_then(|i| plain_user(i.of(raw)))),
            entering: Some(Entering::Authenticating),
        },
        CommandBody::Idle => Door::Pass {
            kind: Pending::Other,
            candidate: None,
            entering: Some(Entering::Idle),
        },
        CommandBody::Logout => pass(Pending::Logout),
        _ => pass(Pending::Other),
    }
}

/// The user a SASL PLAIN response names (authzid if given, else authcid).
pub(super) fn plain_user(b64: &[u8]) -> Option<String> {
    let p = sasl_plain(b64).ok()?;
    let who = if p.authzid.is_empty() {
        p.authcid
    } else {
        p.authzid
    };
    Some(String::from_utf8_lossy(&who).to_string())
}

/// `raw` as pieces to write in order, with a `+` before each `}` at
/// `marks` (`{n}` -> `{n+}`), without copying `raw`.
pub(super) fn nonsync_pieces<'a>(raw: &'a [u8], marks: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(2 * marks.len() + 1);
    let mut from = 0;
    for &m in marks {
        if m < raw.len() && raw[m] == b'}' && m >= from {
            out.push(&raw[from..m]);
            out.push(b"+");
            from = m;
        }
    }
    out.push(&raw[from..]);
    out
}

/// Where the literal marks of a command are once `edits` (sorted, not
/// overlapping) were applied to it.
pub(super) fn shifted_marks(marks: &[usize], edits: &[Edit]) -> Vec<usize> {
    marks
        .iter()
        .map(|&m| {
            let mut at = m as isize;
            for e in edits.iter().filter(|e| e.span.end <= m) {
                at += e.bytes.len() as isize - (e.span.end - e.span.start) as isize;
            }
            at as usize
        })
        .collect()
}

/// The tag of a command that does not parse, as far as it reads.
pub(super) fn leading_tag(raw: &[u8]) -> Vec<u8> {
    raw.iter()
        .take_while(|b| b.is_ascii_graphic() && **b != b'{' && **b != b'*')
        .take(64)
        .copied()
        .collect()
}

/// A tag fit to answer with, or `*`.
pub(super) fn tag_or_star(tag: &[u8]) -> String {
    if tag.is_empty() || tag.len() > 64 || !tag.iter().all(u8::is_ascii_graphic) {
        "*".to_string()
    } else {
        String::from_utf8_lossy(tag).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Front = Front {
        tls_offered: true,
        secure: false,
        plaintext_ok: true,
    };
    const TLS_REQUIRED: Front = Front {
        plaintext_ok: false,
        ..PLAIN
    };
    const OVER_TLS: Front = Front {
        secure: true,
        ..TLS_REQUIRED
    };

    fn at(line: &str, front: Front) -> Door {
        let cmd = Command::parse(line.as_bytes()).expect("parses");
        door(&cmd, line.as_bytes(), front)
    }

    fn answer(s: &str) -> Door {
        Door::Answer(s.to_string())
    }

    fn pass(kind: Pending) -> Door {
        Door::Pass {
            kind,
            candidate: None,
            entering: None,
        }
    }

    #[test]
    fn starttls_only_where_offered_and_not_yet_secure() {
        assert_eq!(at("a STARTTLS\r\n", PLAIN), Door::StartTls);
        assert_eq!(
            at("a STARTTLS\r\n", OVER_TLS),
            answer("a BAD STARTTLS is not available here\r\n")
        );
        let no_tls = Front {
            tls_offered: false,
            ..PLAIN
        };
        assert_eq!(
            at("a STARTTLS\r\n", no_tls),
            answer("a BAD STARTTLS is not available here\r\n")
        );
    }

    #[test]
    fn login_needs_tls_where_required() {
        let refused = answer("a NO [PRIVACYREQUIRED] Log in over TLS (STARTTLS or IMAPS)\r\n");
        assert_eq!(at("a LOGIN bob pw\r\n", TLS_REQUIRED), refused);
        assert_eq!(at("a AUTHENTICATE PLAIN\r\n", TLS_REQUIRED), refused);
        assert_eq!(
            at("a LOGIN bob pw\r\n", OVER_TLS),
            Door::Pass {
                kind: Pending::Login,
                candidate: Some(Some("bob".to_string())),
                entering: None,
            }
        );
        assert_eq!(
            at("a LOGIN \"bob\" pw\r\n", PLAIN),
            Door::Pass {
                kind: Pending::Login,
                candidate: Some(Some("bob".to_string())),
                entering: None,
            }
        );
    }

    #[test]
    fn authenticate_plain_only_and_its_user() {
        assert_eq!(
            at("a AUTHENTICATE CRAM-MD5\r\n", PLAIN),
            answer("a NO [CANNOT] Only AUTHENTICATE PLAIN is offered\r\n")
        );
        assert_eq!(
            at("a AUTHENTICATE PLAIN\r\n", PLAIN),
            Door::Pass {
                kind: Pending::Authenticate,
                candidate: Some(None),
                entering: Some(Entering::Authenticating),
            }
        );
        // "\0bob\0pw"
        assert_eq!(
            at("a AUTHENTICATE PLAIN AGJvYgBwdw==\r\n", PLAIN),
            Door::Pass {
                kind: Pending::Authenticate,
                candidate: Some(Some("bob".to_string())),
                entering: Some(Entering::Authenticating),
            }
        );
    }

    #[test]
    fn hidden_extensions_are_refused_or_filtered() {
        assert_eq!(
            at("a COMPRESS DEFLATE\r\n", PLAIN),
            answer("a NO [CANNOT] COMPRESS is not available through this proxy\r\n")
        );
        assert_eq!(
            at("a ENABLE CONDSTORE\r\n", PLAIN),
            answer("* ENABLED\r\na OK ENABLE completed (nothing enabled)\r\n")
        );
        assert_eq!(
            at("a ENABLE QRESYNC IMAP4rev2\r\n", PLAIN),
            Door::Enable(b"a ENABLE IMAP4rev2\r\n".to_vec())
        );
        assert_eq!(at("a ENABLE IMAP4rev2\r\n", PLAIN), pass(Pending::Other));
    }

    #[test]
    fn idle_and_logout_and_the_rest_pass() {
        assert_eq!(
            at("a IDLE\r\n", PLAIN),
            Door::Pass {
                kind: Pending::Other,
                candidate: None,
                entering: Some(Entering::Idle),
            }
        );
        assert_eq!(at("a LOGOUT\r\n", PLAIN), pass(Pending::Logout));
        assert_eq!(at("a NOOP\r\n", TLS_REQUIRED), pass(Pending::Other));
    }

    #[test]
    fn sync_literals_become_nonsync() {
        let raw = b"a LOGIN {5}\r\nalice {4}\r\npass\r\n";
        let marks: Vec<usize> = raw
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'}')
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            nonsync_pieces(raw, &marks).concat(),
            b"a LOGIN {5+}\r\nalice {4+}\r\npass\r\n".to_vec()
        );
    }

    #[test]
    fn marks_follow_the_edits_before_them() {
        use tandem_parser::lexer::Span;
        // "a UID COPY 5 {3}\r\nabc": the set "5" (11..12) becomes "17:19".
        let edits = [Edit {
            span: Span { start: 11, end: 12 },
            bytes: b"17:19".to_vec(),
        }];
        assert_eq!(shifted_marks(&[15, 30], &edits), vec![19, 34]);
        assert_eq!(shifted_marks(&[5], &edits), vec![5]);
    }

    #[test]
    fn tags_for_answers() {
        assert_eq!(leading_tag(b"a1 FOO {3}\r\n"), b"a1".to_vec());
        assert_eq!(tag_or_star(b"a1"), "a1");
        assert_eq!(tag_or_star(b""), "*");
        assert_eq!(tag_or_star(&[b'x'; 65]), "*");
    }
}
