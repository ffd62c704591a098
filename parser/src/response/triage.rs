//! What can be said of a backend response line that did not parse: whether
//! it may carry a UID (so a proxy must withhold it rather than pass it on
//! unrewritten), and its shape for a log line.
//!
//! Invariants, one line each:
//! - Both functions read only the first few tokens of the line, never a
//!   literal's data, and never panic.
//! - [`shape`] shows a token only if it looks like protocol (upper-case
//!   keywords, numbers, sets, brackets); quoted strings and any other word
//!   are replaced by `…`, so message content, mailbox names and credentials
//!   never reach a log.

use crate::lexer::{is_tag_char, Lexer, Upper, DEFAULT_MAX_DEPTH};

/// Whether a response line (CRLF included or not) is of a kind that
/// carries UIDs when it parses: a FETCH response, SEARCH, ESEARCH, SORT,
/// THREAD (UIDs after a UID command), STATUS (UIDNEXT, UIDVALIDITY),
/// VANISHED, or a status response whose code is UIDNEXT, UIDVALIDITY,
/// APPENDUID or COPYUID. Anything else (EXISTS, EXPUNGE, LIST, a
/// continuation request, a line that is not a response at all) is `false`.
///
/// For a line that [`super::Response::parse`] refused: a proxy that
/// rewrites UIDs must withhold it when this is `true` and may pass it on
/// when `false`.
pub fn may_carry_uid(line: &[u8]) -> bool {
    let mut l = Lexer::new(line, DEFAULT_MAX_DEPTH);
    let tagged = if l.eat(b'*') {
        false
    } else if l.take_while1(is_tag_char, "tag").is_ok() {
        true
    } else {
        return false;
    };
    if !l.eat(b' ') {
        return false;
    }
    if !tagged && l.peek().is_some_and(|b| b.is_ascii_digit()) {
        return l.number().is_ok() && l.eat(b' ') && l.keyword(b"FETCH");
    }
    let Ok(word) = l.atom() else {
        return false;
    };
    let upper = Upper::of(word.of(line));
    match &upper[..] {
        b"OK" | b"NO" | b"BAD" | b"BYE" | b"PREAUTH" => {
            if !(l.eat(b' ') && l.eat(b'[')) {
                return false;
            }
            let Ok(code) = l.take_while1(|b| b.is_ascii_alphanumeric() || b == b'-', "code") else {
                return false;
            };
            matches!(
                &Upper::of(code.of(line))[..],
                b"UIDNEXT" | b"UIDVALIDITY" | b"APPENDUID" | b"COPYUID"
            )
        }
        b"SEARCH" | b"ESEARCH" | b"SORT" | b"THREAD" | b"STATUS" | b"VANISHED" => !tagged,
        _ => false,
    }
}

/// How many tokens [`shape`] shows after the first.
const SHAPE_TOKENS: usize = 8;

/// How many bytes of the line [`shape`] looks at.
const SHAPE_BYTES: usize = 160;

/// A short description of a response line for logs: `*`, `+` or `tag`,
/// then the first few tokens, each shown only if it is protocol (`FETCH`,
/// `(UID`, `12`, `[APPENDUID`, `BODY[1.MIME]`, `{20}`) and `…` otherwise;
/// `…` at the end when the line goes on. E.g. `* 3 FETCH (ENVELOPE ("…" …`.
pub fn shape(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let cut = line.len().min(SHAPE_BYTES);
    let mut rest = &line[..cut];
    let mut out = String::new();
    let mut shown = 0;
    while !rest.is_empty() && shown <= SHAPE_TOKENS {
        let (token, after) = next_token(rest);
        if shown == 0 {
            out.push_str(match token {
                b"*" => "*",
                b"+" => "+",
                _ => "tag",
            });
        } else {
            out.push(' ');
            out.push_str(&show(token));
        }
        shown += 1;
        rest = after;
        if is_literal(token) {
            break;
        }
    }
    if !rest.is_empty() || cut < line.len() {
        out.push_str(" …");
    }
    out
}

/// The next token (a quoted string whole, else up to a space) and what
/// follows it, its separating spaces skipped.
fn next_token(b: &[u8]) -> (&[u8], &[u8]) {
    let end = match b.iter().position(|&c| c == b'"') {
        // A quoted string, possibly after `(`: to its closing quote.
        Some(q) if b[..q].iter().all(|&c| c == b'(') => {
            let mut k = q + 1;
            while k < b.len() && b[k] != b'"' {
                k += if b[k] == b'\\' { 2 } else { 1 };
            }
            let close = (k + 1).min(b.len());
            close + b[close..].iter().take_while(|&&c| c != b' ').count()
        }
        _ => b
            .iter()
            .position(|&c| matches!(c, b' ' | b'\r' | b'\n'))
            .unwrap_or(b.len()),
    };
    let after = &b[end..];
    let skip = after.iter().take_while(|&&c| c == b' ').count();
    (&b[..end], &after[skip..])
}

/// `{n}`, `{n+}`, `~{n}` at the end of a token: literal data follows.
fn is_literal(token: &[u8]) -> bool {
    token.ends_with(b"}") && token.contains(&b'{')
}

/// A token as shown: itself if protocol, else `…` (keeping the list
/// parentheses and quotes around it, which tell the structure).
fn show(token: &[u8]) -> String {
    let protocol = |c: u8| {
        c.is_ascii_uppercase()
            || c.is_ascii_digit()
            || matches!(
                c,
                b'.' | b'-'
                    | b'['
                    | b']'
                    | b'<'
                    | b'>'
                    | b'('
                    | b')'
                    | b'{'
                    | b'}'
                    | b'~'
                    | b'+'
                    | b'*'
                    | b':'
                    | b','
                    | b'\\'
                    | b'$'
            )
    };
    if token.len() <= 40 && token.iter().all(|&c| protocol(c)) {
        return String::from_utf8_lossy(token).into_owned();
    }
    let opens = token.iter().take_while(|&&c| c == b'(').count();
    let closes = token[opens..]
        .iter()
        .rev()
        .take_while(|&&c| c == b')')
        .count();
    let inner = &token[opens..token.len() - closes];
    let quoted = inner.len() >= 2 && inner.starts_with(b"\"") && inner.ends_with(b"\"");
    let mut s = "(".repeat(opens);
    s.push_str(if quoted { "\"…\"" } else { "…" });
    s.push_str(&")".repeat(closes));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_that_carry_uids() {
        for (line, want) in [
            (&b"* 12 FETCH (UID 5 ENVELOPE (\"broken\r\n"[..], true),
            (b"* 1 fetch (x\r\n", true),
            (b"* SEARCH 1 2 x\r\n", true),
            (b"* ESEARCH (TAG \"a\") UID ALL 1:*\r\n", true),
            (b"* STATUS INBOX (UIDNEXT x)\r\n", true),
            (b"* VANISHED (EARLIER) 1:*\r\n", true),
            (b"* SORT 2 3 x\r\n", true),
            (b"* THREAD (1 2\r\n", true),
            (b"* OK [UIDNEXT 0] x\r\n", true),
            (b"* OK [UIDVALIDITY x] x\r\n", true),
            (b"a1 OK [APPENDUID 1 *] done\r\n", true),
            (b"a2 NO [COPYUID 1 2] x\r\n", true),
            (b"* 3 EXISTS\r\n", false),
            (b"* 3 EXPUNGE x\r\n", false),
            (b"* 3 RECENT\r\n", false),
            (b"* LIST (\\Noselect) \"/\" {3}\r\n", false),
            (b"* OK [ALERT] x\r\n", false),
            (b"* OK [HIGHESTMODSEQ 7 x\r\n", false),
            (b"* OK UIDNEXT 5\r\n", false),
            (b"a1 OK done [APPENDUID 1 2]\r\n", false),
            (b"a1 SEARCH 1 2\r\n", false),
            (b"+ [APPENDUID 1 2]\r\n", false),
            (b"* NAMESPACE ((\"\" \"/\")\r\n", false),
            (b"\r\n", false),
            (b"", false),
            (b"*", false),
            (b"* 99999999999 FETCH (\r\n", false),
            (b"\0\xff garbage", false),
        ] {
            assert_eq!(may_carry_uid(line), want, "{}", line.escape_ascii());
        }
    }

    #[test]
    fn shape_shows_protocol_and_hides_content() {
        for (line, want) in [
            (
                &b"* 3 FETCH (ENVELOPE (\"Mon, 7 Dec 2026\" \"secret subject\" NIL))\r\n"[..],
                "* 3 FETCH (ENVELOPE (\"…\" \"…\" NIL))",
            ),
            (
                b"* 12 FETCH (UID 4 BODY[HEADER.FIELDS (SUBJECT)] {22}\r\nSubject: hush\r\n\r\n)\r\n",
                "* 12 FETCH (UID 4 BODY[HEADER.FIELDS (SUBJECT)] {22} …",
            ),
            (b"a1 OK [APPENDUID 1 2] Append completed\r\n", "tag OK [APPENDUID 1 2] … …"),
            (b"* STATUS \"Private stuff\" (MESSAGES 1)\r\n", "* STATUS \"…\" (MESSAGES 1)"),
            (b"* LIST (\\HasNoChildren) \"/\" secret\r\n", "* LIST (…) \"…\" …"),
            (b"* 1 FETCH (FLAGS (\\Seen Private))\r\n", "* 1 FETCH (FLAGS (… …))"),
            (b"+ \r\n", "+"),
            (b"", ""),
            (b"* 1 FETCH (A B C D E F G H)\r\n", "* 1 FETCH (A B C D E F …"),
        ] {
            assert_eq!(shape(line), want, "{}", line.escape_ascii());
        }
        // Long lines are cut, any bytes are safe.
        let mut long = b"* 1 FETCH (".to_vec();
        long.extend(std::iter::repeat_n(b'x', 10_000));
        assert!(shape(&long).len() < 80);
        assert_eq!(shape(b"\xff\0 \"unterminated"), "tag …");
    }
}
