//! What clients see of the backend's capabilities: those tandem cannot
//! keep consistent or follow are filtered out, and tandem's own are added
//! (STARTTLS when it offers it, LOGINDISABLED, APPENDLIMIT from its literal
//! limit). Pure: a response line in, a response line out.

use tandem_parser::command::{Command, CommandBody};
use tandem_parser::lexer::Span;
use tandem_parser::response::{Code, Response, ResponseBody};
use tandem_parser::rewrite::{apply, capability_edits};

/// Capabilities a client never sees through tandem, because their values
/// differ per node (MODSEQ, OBJECTID), because the proxy cannot follow them
/// (COMPRESS, NOTIFY, UIDONLY, SORT/THREAD results not rewritten yet),
/// because their commands change state tandem does not replicate and are
/// refused (Cyrus's ANNOTATE, METADATA, URLAUTH, SCAN, XMOVE; special-use
/// on CREATE; REPLACE, MULTISEARCH, UNAUTHENTICATE), or because tandem
/// cannot learn the user (SASL mechanisms other than PLAIN).
pub fn is_filtered_capability(name: &[u8]) -> bool {
    let upper = name.to_ascii_uppercase();
    let exact: &[&[u8]] = &[
        b"CONDSTORE",
        b"QRESYNC",
        b"OBJECTID",
        b"NOTIFY",
        b"UIDONLY",
        b"STARTTLS",
        b"SORT",
        b"ESORT",
        b"SEARCHRES",
        b"CATENATE",
        b"LOGINDISABLED",
        b"ANNOTATE-EXPERIMENT-1",
        b"METADATA",
        b"METADATA-SERVER",
        b"LIST-METADATA",
        b"CREATE-SPECIAL-USE",
        b"URLAUTH",
        b"SCAN",
        b"XMOVE",
        b"REPLACE",
        b"MULTISEARCH",
        b"UNAUTHENTICATE",
    ];
    let prefixes: &[&[u8]] = &[
        b"COMPRESS=",
        b"SORT=",
        b"THREAD=",
        b"CONTEXT=",
        b"UTF8=",
        b"APPENDLIMIT",
        b"X-",
        b"XLIST",
        b"URLAUTH=",
    ];
    if exact.contains(&upper.as_slice()) || prefixes.iter().any(|p| upper.starts_with(p)) {
        return true;
    }
    if let Some(mech) = upper.strip_prefix(b"AUTH=") {
        return mech != b"PLAIN";
    }
    false
}

/// The capabilities tandem adds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Added {
    /// STARTTLS (offered on a plain connection when configured).
    pub(super) starttls: bool,
    /// LOGINDISABLED (plaintext login refused here).
    pub(super) login_disabled: bool,
    /// APPENDLIMIT: the largest literal accepted.
    pub(super) append_limit: u64,
}

/// A single-line response with filtered capabilities and tandem's own
/// added; any other line unchanged.
pub(super) fn filter(line: &[u8], added: Added) -> Vec<u8> {
    let Ok(resp) = Response::parse(line) else {
        return line.to_vec();
    };
    let is_caps = matches!(
        resp.body,
        ResponseBody::Capability(_)
            | ResponseBody::Status {
                code: Some(Code::Capability(_)),
                ..
            }
            | ResponseBody::Continue {
                code: Some(Code::Capability(_)),
                ..
            }
    );
    if !is_caps {
        return line.to_vec();
    }
    let edits = capability_edits(&resp, &is_filtered_capability);
    let mut out = apply(line, &edits).into_owned();
    let mut extra = String::new();
    if added.starttls {
        extra.push_str(" STARTTLS");
    }
    if added.login_disabled {
        extra.push_str(" LOGINDISABLED");
    }
    extra.push_str(&format!(" APPENDLIMIT={}", added.append_limit));
    let at = if matches!(resp.body, ResponseBody::Capability(_)) {
        out.len().saturating_sub(2)
    } else {
        // Inside the [CAPABILITY ...] code: before its "]".
        out.iter().position(|&b| b == b']').unwrap_or(out.len())
    };
    out.splice(at..at, extra.bytes());
    out
}

/// Whether `cmd` would turn CONDSTORE on or ask for MODSEQ values
/// (RFC 7162 section 3.1: SELECT/EXAMINE `(CONDSTORE)`, FETCH `MODSEQ` or
/// `CHANGEDSINCE`, SEARCH `MODSEQ`, STATUS `HIGHESTMODSEQ`): the answers
/// would be one node's own numbers, different on every node, so tandem
/// refuses them like any command it cannot translate until MODSEQs come
/// from the replicated state. (STORE `UNCHANGEDSINCE` is refused by the
/// mutation policy; ENABLE CONDSTORE enables nothing.)
pub(super) fn uses_modseq(cmd: &Command<'_>) -> bool {
    let raw = |s: &Span| s.of(cmd.buf);
    match &cmd.body {
        CommandBody::Select { params, .. } | CommandBody::Examine { params, .. } => params
            .as_ref()
            .is_some_and(|p| has_atom(raw(p), b"CONDSTORE")),
        CommandBody::Fetch {
            items, modifiers, ..
        } => {
            has_atom(raw(items), b"MODSEQ")
                || modifiers
                    .as_ref()
                    .is_some_and(|m| has_atom(raw(m), b"CHANGEDSINCE"))
        }
        CommandBody::Search { criteria, .. } => has_atom(raw(criteria), b"MODSEQ"),
        CommandBody::Status { items, .. } => items
            .iter()
            .any(|i| raw(i).eq_ignore_ascii_case(b"HIGHESTMODSEQ")),
        _ => false,
    }
}

/// Whether `cmd` asks the server to keep a search result (`RETURN (SAVE)`,
/// RFC 5182 SEARCHRES): `$` would then name backend-local state, and
/// SEARCHRES is not advertised.
pub(super) fn saves_search(cmd: &Command<'_>) -> bool {
    match &cmd.body {
        CommandBody::Search { ret: Some(r), .. } => has_atom(r.of(cmd.buf), b"SAVE"),
        _ => false,
    }
}

/// Whether `raw` holds the atom `word` (any case) outside quoted strings
/// and literals.
fn has_atom(raw: &[u8], word: &[u8]) -> bool {
    let delimiter = |b: u8| matches!(b, b' ' | b'(' | b')' | b'[' | b']' | b'\r' | b'\n');
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'"' => {
                i += 1;
                while i < raw.len() && raw[i] != b'"' {
                    i += if raw[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' => {
                // {n} or {n+} then CRLF, then n bytes.
                let digits: Vec<u8> = raw[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .copied()
                    .collect();
                let n: usize = std::str::from_utf8(&digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0);
                let close = raw[i..].iter().position(|&b| b == b'\n');
                i = match close {
                    Some(c) => i + c + 1 + n,
                    None => raw.len(),
                };
            }
            b if delimiter(b) => i += 1,
            _ => {
                let end = raw[i..]
                    .iter()
                    .position(|&b| delimiter(b) || b == b'"')
                    .map_or(raw.len(), |p| i + p);
                if raw[i..end].eq_ignore_ascii_case(word) {
                    return true;
                }
                i = end.max(i + 1);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_asking_for_modseqs_are_told_apart() {
        let table = [
            ("a SELECT INBOX (CONDSTORE)", true),
            ("a EXAMINE INBOX (condstore)", true),
            ("a SELECT INBOX", false),
            ("a FETCH 1 (MODSEQ)", true),
            ("a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12)", true),
            ("a FETCH 1 (FLAGS MODSEQ UID)", true),
            (
                "a FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (X-MODSEQ)])",
                false,
            ),
            ("a FETCH 1 FLAGS", false),
            ("a SEARCH MODSEQ 5", true),
            ("a UID SEARCH OR SEEN (MODSEQ 7)", true),
            ("a SEARCH SUBJECT \"modseq\"", false),
            ("a SEARCH SUBJECT {6+}\r\nMODSEQ", false),
            ("a STATUS INBOX (MESSAGES HIGHESTMODSEQ)", true),
            ("a STATUS INBOX (MESSAGES UIDNEXT)", false),
            ("a NOOP", false),
        ];
        let saves = |l: &str| {
            let raw = format!("{l}\r\n");
            saves_search(&Command::parse(raw.as_bytes()).unwrap())
        };
        assert!(saves("a SEARCH RETURN (SAVE) ALL"));
        assert!(saves("a UID SEARCH RETURN (MIN save) SEEN"));
        assert!(!saves("a SEARCH RETURN (MIN) SUBJECT SAVE"));
        for (line, want) in table {
            let raw = format!("{line}\r\n");
            let cmd = Command::parse(raw.as_bytes()).expect(line);
            assert_eq!(uses_modseq(&cmd), want, "{line}");
        }
    }

    #[test]
    fn filtered_capabilities() {
        for c in [
            "CONDSTORE",
            "qresync",
            "AUTH=SCRAM-SHA-256-PLUS",
            "AUTH=LOGIN",
            "COMPRESS=DEFLATE",
            "X-FOO",
            "THREAD=REFS",
            "APPENDLIMIT=1000",
            // Cyrus 3.6's, whose commands tandem refuses.
            "ANNOTATE-EXPERIMENT-1",
            "METADATA",
            "LIST-METADATA",
            "CREATE-SPECIAL-USE",
            "URLAUTH=BINARY",
            "SCAN",
            "XMOVE",
        ] {
            assert!(is_filtered_capability(c.as_bytes()), "{c}");
        }
        for c in [
            "IMAP4rev1",
            "UIDPLUS",
            "MOVE",
            "AUTH=PLAIN",
            "IDLE",
            "LITERAL+",
            "MULTIAPPEND",
            "SPECIAL-USE",
            "LIST-STATUS",
            "ESEARCH",
        ] {
            assert!(!is_filtered_capability(c.as_bytes()), "{c}");
        }
    }

    #[test]
    fn tandem_adds_its_own_capabilities_where_the_backend_lists_them() {
        let added = Added {
            starttls: true,
            login_disabled: false,
            append_limit: 1000,
        };
        assert_eq!(
            filter(b"* CAPABILITY IMAP4rev1 CONDSTORE IDLE\r\n", added),
            b"* CAPABILITY IMAP4rev1 IDLE STARTTLS APPENDLIMIT=1000\r\n".to_vec()
        );
        assert_eq!(
            filter(b"* OK [CAPABILITY IMAP4rev1 SORT] ready\r\n", added),
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS APPENDLIMIT=1000] ready\r\n".to_vec()
        );
        let plain = b"* 3 EXISTS\r\n";
        assert_eq!(filter(plain, added), plain.to_vec());
    }
}
