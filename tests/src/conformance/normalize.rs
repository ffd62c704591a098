//! What two answers must share to count as the same: each response becomes
//! one normalized line. Texts of status responses are dropped (a response
//! code is kept), values that differ per server by design are masked
//! (UIDVALIDITY, MODSEQ, HIGHESTMODSEQ, the RECENT count and the `\Recent`
//! flag, which belongs to whichever session saw a message first: through
//! tandem that is the applier's), flag lists are sorted, and capability
//! lists become sorted sets, minus what tandem documents that it hides
//! (direct side) or adds (tandem side). Cyrus's MAILBOXID code is masked
//! (each server's own), and a HIGHESTMODSEQ or MAILBOXID code on a tagged
//! line dropped (Cyrus sends them unasked; tandem, which hides CONDSTORE
//! and OBJECTID, does not pass them on).

use std::collections::BTreeSet;

use crate::imap::Status;

/// What `* n RECENT` becomes; [`crate::conformance::compare`] leaves such
/// lines out: through tandem the applier's session is the first to see a
/// message, so the client's sessions never get `\Recent` (deprecated by
/// IMAP4rev2, and not replicated).
pub const RECENT: &str = "* _ RECENT";

/// Which path an answer came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Straight from the backend.
    Direct,
    /// Through tandem.
    Tandem,
}

/// Capabilities tandem documents that it never shows a client: the list
/// of `proxy/src/session/capability.rs` (`is_filtered_capability`), kept
/// here by hand because that module is private to the proxy. A backend's
/// capability missing through tandem is a difference unless it is here.
pub fn hidden_by_tandem(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    const EXACT: &[&str] = &[
        "CONDSTORE",
        "QRESYNC",
        "OBJECTID",
        "NOTIFY",
        "UIDONLY",
        "STARTTLS",
        "SORT",
        "ESORT",
        "SEARCHRES",
        "CATENATE",
        "LOGINDISABLED",
        "ANNOTATE-EXPERIMENT-1",
        "METADATA",
        "METADATA-SERVER",
        "LIST-METADATA",
        "CREATE-SPECIAL-USE",
        "URLAUTH",
        "SCAN",
        "XMOVE",
        "REPLACE",
        "MULTISEARCH",
        "UNAUTHENTICATE",
    ];
    const PREFIXES: &[&str] = &[
        "COMPRESS=",
        "SORT=",
        "THREAD=",
        "CONTEXT=",
        "UTF8=",
        "APPENDLIMIT",
        "X-",
        "XLIST",
        "URLAUTH=",
    ];
    if EXACT.contains(&upper.as_str()) || PREFIXES.iter().any(|p| upper.starts_with(p)) {
        return true;
    }
    upper.strip_prefix("AUTH=").is_some_and(|m| m != "PLAIN")
}

/// Capabilities tandem adds of its own (STARTTLS when configured,
/// LOGINDISABLED, APPENDLIMIT from its literal limit).
pub fn added_by_tandem(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper == "STARTTLS" || upper == "LOGINDISABLED" || upper.starts_with("APPENDLIMIT")
}

/// A capability list as the set compared: upper-cased, minus what the side
/// may differ in.
pub fn capability_set<'a>(words: impl Iterator<Item = &'a str>, side: Side) -> BTreeSet<String> {
    words
        .filter(|w| !w.is_empty())
        .filter(|w| match side {
            Side::Direct => !hidden_by_tandem(w),
            Side::Tandem => !added_by_tandem(w),
        })
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The response as one line of text: literals inline, CRLFs inside shown
/// as `⏎`, the final CRLF dropped.
pub fn display(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.strip_suffix("\r\n").unwrap_or(&text);
    text.replace("\r\n", "⏎")
}

/// One untagged (`* ...`) or continuation (`+ ...`) response, normalized.
pub fn untagged(raw: &[u8], side: Side) -> String {
    let line = display(raw);
    if line.starts_with('+') {
        return "+".to_string();
    }
    let Some(rest) = line.strip_prefix("* ") else {
        return line;
    };
    let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let upper = first.to_ascii_uppercase();
    match upper.as_str() {
        "OK" | "NO" | "BAD" | "BYE" | "PREAUTH" => {
            let code = status_code(after, side, true);
            return format!("* {upper}{code}");
        }
        "CAPABILITY" => {
            let set = capability_set(after.split(' '), side);
            return format!("* CAPABILITY {}", join(&set));
        }
        _ => {}
    }
    if after.eq_ignore_ascii_case("RECENT") {
        return RECENT.to_string();
    }
    sort_flag_lists(&mask_numbers(&line))
}

/// A tagged status line's rest (after the tag), normalized: the status and
/// its response code; a code's arguments are kept only for CAPABILITY (as
/// a set), APPENDUID and COPYUID (UIDVALIDITY masked).
pub fn tagged(status: Status, text: &str, side: Side) -> String {
    let word = match status {
        Status::Ok => "OK",
        Status::No => "NO",
        Status::Bad => "BAD",
    };
    format!("{word}{}", status_code(text, side, false))
}

/// ` [CODE args]` of a status response's text, or `""`.
fn status_code(text: &str, side: Side, untagged: bool) -> String {
    let Some(inner) = text.strip_prefix('[').and_then(|t| t.split_once(']')) else {
        return String::new();
    };
    let inner = inner.0;
    let (name, args) = inner.split_once(' ').unwrap_or((inner, ""));
    let name = name.to_ascii_uppercase();
    match name.as_str() {
        "CAPABILITY" => {
            let set = capability_set(args.split(' '), side);
            format!(" [CAPABILITY {}]", join(&set))
        }
        "APPENDUID" | "COPYUID" => format!(" {}", mask_numbers(&format!("[{name} {args}]"))),
        // Each server's own values (Cyrus sends them unasked).
        "MAILBOXID" if untagged => " [MAILBOXID (_)]".to_string(),
        "MAILBOXID" => String::new(),
        "HIGHESTMODSEQ" if !untagged => String::new(),
        _ if untagged => {
            let code = if args.is_empty() {
                format!("[{name}]")
            } else {
                format!("[{name} {args}]")
            };
            format!(" {}", sort_flag_lists(&mask_numbers(&code)))
        }
        _ => format!(" [{name}]"),
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(" ")
}

/// Masks the number after each of UIDVALIDITY, MODSEQ (also in
/// HIGHESTMODSEQ and `MODSEQ (n)`), RECENT (STATUS), APPENDUID and COPYUID
/// (their first argument is a UIDVALIDITY) with `_`, and the quoted date
/// after SAVEDATE (when the message was saved: each run's own).
pub fn mask_numbers(line: &str) -> String {
    let mut out = mask_quoted_after(line, "SAVEDATE ");
    for key in [
        "UIDVALIDITY ",
        "MODSEQ (",
        "MODSEQ ",
        "RECENT ",
        "[APPENDUID ",
        "[COPYUID ",
    ] {
        out = mask_after(&out, key);
    }
    out
}

fn mask_quoted_after(line: &str, key: &str) -> String {
    let upper = line.to_ascii_uppercase();
    let Some(found) = upper.find(key) else {
        return line.to_string();
    };
    let start = found + key.len();
    let rest = &line[start..];
    let Some(body) = rest.strip_prefix('"') else {
        return line.to_string();
    };
    let Some(end) = body.find('"') else {
        return line.to_string();
    };
    format!("{}_{}", &line[..start], &body[end + 1..])
}

fn mask_after(line: &str, key: &str) -> String {
    let upper = line.to_ascii_uppercase();
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    while let Some(found) = upper[at..].find(key) {
        let start = at + found + key.len();
        out.push_str(&line[at..start]);
        let digits = line[start..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push('_');
        }
        at = start + digits;
    }
    out.push_str(&line[at..]);
    out
}

/// Sorts the flags inside every `FLAGS (...)` (also PERMANENTFLAGS), and
/// drops `\Recent` from them.
pub fn sort_flag_lists(line: &str) -> String {
    let upper = line.to_ascii_uppercase();
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    while let Some(found) = upper[at..].find("FLAGS (") {
        let open = at + found + "FLAGS (".len();
        let Some(len) = line[open..].find(')') else {
            break;
        };
        out.push_str(&line[at..open]);
        let mut flags: Vec<&str> = line[open..open + len]
            .split(' ')
            .filter(|f| !f.is_empty() && !f.eq_ignore_ascii_case("\\Recent"))
            .collect();
        flags.sort_by_key(|f| f.to_ascii_lowercase());
        out.push_str(&flags.join(" "));
        at = open + len;
    }
    out.push_str(&line[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_texts_go_and_codes_stay() {
        assert_eq!(
            untagged(b"* OK [UIDVALIDITY 1712345] UIDs valid\r\n", Side::Direct),
            "* OK [UIDVALIDITY _]"
        );
        assert_eq!(
            untagged(
                b"* OK [PERMANENTFLAGS (\\Seen \\Answered \\*)] Ok\r\n",
                Side::Direct
            ),
            "* OK [PERMANENTFLAGS (\\* \\Answered \\Seen)]"
        );
        assert_eq!(untagged(b"* BYE Logging out\r\n", Side::Direct), "* BYE");
        assert_eq!(
            tagged(
                Status::Ok,
                "[READ-WRITE] Select completed (0.001 secs).",
                Side::Direct
            ),
            "OK [READ-WRITE]"
        );
        assert_eq!(
            tagged(
                Status::Ok,
                "[APPENDUID 1700000000 4] Append completed.",
                Side::Tandem
            ),
            "OK [APPENDUID _ 4]"
        );
        assert_eq!(tagged(Status::No, "Nope", Side::Tandem), "NO");
    }

    #[test]
    fn per_server_values_are_masked_and_flags_sorted() {
        assert_eq!(untagged(b"* 3 RECENT\r\n", Side::Direct), "* _ RECENT");
        assert_eq!(
            untagged(
                b"* 2 FETCH (UID 3 MODSEQ (12) FLAGS (\\Seen \\Recent $Label \\Answered))\r\n",
                Side::Direct
            ),
            "* 2 FETCH (UID 3 MODSEQ (_) FLAGS ($Label \\Answered \\Seen))"
        );
        assert_eq!(
            untagged(
                b"* STATUS INBOX (MESSAGES 2 RECENT 1 UIDVALIDITY 99 HIGHESTMODSEQ 7)\r\n",
                Side::Direct
            ),
            "* STATUS INBOX (MESSAGES 2 RECENT _ UIDVALIDITY _ HIGHESTMODSEQ _)"
        );
        assert_eq!(
            untagged(b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\n", Side::Direct),
            "* 1 FETCH (BODY[] {5}⏎ab⏎c)"
        );
    }

    #[test]
    fn capability_lists_are_sets_minus_documented_differences() {
        assert_eq!(
            untagged(
                b"* CAPABILITY IMAP4rev1 SORT IDLE CONDSTORE AUTH=LOGIN\r\n",
                Side::Direct
            ),
            "* CAPABILITY IDLE IMAP4REV1"
        );
        assert_eq!(
            untagged(
                b"* CAPABILITY IDLE APPENDLIMIT=10 CONDSTORE IMAP4rev1\r\n",
                Side::Tandem
            ),
            "* CAPABILITY CONDSTORE IDLE IMAP4REV1"
        );
        assert_eq!(
            tagged(
                Status::Ok,
                "[CAPABILITY IMAP4rev1 SORT] Logged in",
                Side::Direct
            ),
            "OK [CAPABILITY IMAP4REV1]"
        );
    }
}
