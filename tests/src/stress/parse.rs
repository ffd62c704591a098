//! What the stress model reads of a server's responses: the untagged
//! responses that name messages (EXISTS, EXPUNGE, FETCH, SEARCH), status
//! responses with their code, and tagged completions. Pure: the bytes of
//! one response (its line and any literals, as read) in, a value out.
//!
//! Deliberately independent of `tandem-parser`, so that a bug in tandem's
//! parsing cannot hide in the tests that check it.

use std::hash::{DefaultHasher, Hash, Hasher};

/// One response as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `* n EXISTS`
    Exists(u32),
    /// `* n EXPUNGE`
    Expunge(u32),
    /// `* n FETCH (...)`
    Fetch(u32, FetchData),
    /// `* SEARCH n...`
    Search(Vec<u32>),
    /// `* OK|NO|BAD|BYE|PREAUTH [code] text`
    Status {
        /// The condition, upper case.
        cond: String,
        /// The response code, if any.
        code: Option<Code>,
    },
    /// `+ ...`
    Continue,
    /// `tag OK|NO|BAD [code] text`
    Tagged {
        /// The tag.
        tag: String,
        /// `OK`, `NO` or `BAD`, upper case.
        status: String,
        /// The response code, if any.
        code: Option<Code>,
    },
    /// Any other untagged response (FLAGS, RECENT, LIST, CAPABILITY...).
    Other,
    /// What the model cannot read at all.
    Malformed(String),
}

/// A response code: its name (upper case) and its arguments as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// `APPENDUID`, `COPYUID`, `UIDVALIDITY`...
    pub name: String,
    /// The words after the name.
    pub args: Vec<String>,
}

impl Code {
    /// `[UIDVALIDITY n]`, `[UIDNEXT n]`: the number.
    pub fn number(&self) -> Option<u32> {
        self.args.first()?.parse().ok()
    }

    /// `[APPENDUID uv uids]`: the UIDVALIDITY and the UIDs.
    pub fn appenduid(&self) -> Option<(u32, Vec<u32>)> {
        if self.name != "APPENDUID" || self.args.len() != 2 {
            return None;
        }
        Some((self.args[0].parse().ok()?, uid_set(&self.args[1])?))
    }

    /// `[COPYUID uv src dst]`: the UIDVALIDITY and the pairs (source
    /// UID, destination UID) in order.
    pub fn copyuid(&self) -> Option<(u32, Vec<(u32, u32)>)> {
        if self.name != "COPYUID" || self.args.len() != 3 {
            return None;
        }
        let src = uid_set(&self.args[1])?;
        let dst = uid_set(&self.args[2])?;
        if src.len() != dst.len() {
            return None;
        }
        Some((
            self.args[0].parse().ok()?,
            src.into_iter().zip(dst).collect(),
        ))
    }
}

/// `1:3,7` as the numbers it names, in the order written (RFC 4315's
/// pairing of COPYUID sets is by that order).
pub fn uid_set(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a <= b {
                    out.extend(a..=b);
                } else {
                    out.extend((b..=a).rev());
                }
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// The items of a FETCH response the model checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchData {
    /// `UID n`
    pub uid: Option<u32>,
    /// `FLAGS (...)`, as written.
    pub flags: Option<Vec<String>>,
    /// `RFC822.SIZE n`
    pub size: Option<u64>,
    /// `BODY[] ...`: the hash and length of the whole message.
    pub body: Option<(u64, u64)>,
    /// `BODY[] NIL`: Dovecot's answer for a message another session
    /// expunged that this one was not told of yet (with `RFC822.SIZE 0`).
    pub body_nil: bool,
}

/// The hash the model keeps of a message's bytes.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Reads one response (line and literals, CRLF included).
pub fn parse(bytes: &[u8]) -> Resp {
    let mut p = Cursor { b: bytes, at: 0 };
    if bytes.starts_with(b"+") {
        return Resp::Continue;
    }
    if !bytes.starts_with(b"* ") {
        let Some(tag) = p.atom() else {
            return malformed(bytes);
        };
        let tag = String::from_utf8_lossy(tag).into_owned();
        p.space();
        let Some(status) = p.atom() else {
            return malformed(bytes);
        };
        let status = String::from_utf8_lossy(status).to_ascii_uppercase();
        p.space();
        return Resp::Tagged {
            tag,
            status,
            code: p.code(),
        };
    }
    p.at = 2;
    let Some(first) = p.atom() else {
        return malformed(bytes);
    };
    let first = String::from_utf8_lossy(first).to_ascii_uppercase();
    if let Ok(n) = first.parse::<u32>() {
        p.space();
        let word = p.atom().map(|w| w.to_ascii_uppercase());
        return match word.as_deref() {
            Some(b"EXISTS") => Resp::Exists(n),
            Some(b"EXPUNGE") => Resp::Expunge(n),
            Some(b"FETCH") => {
                p.space();
                match p.value() {
                    Some(Val::List(items)) => match fetch_data(&items) {
                        Some(d) => Resp::Fetch(n, d),
                        None => malformed(bytes),
                    },
                    _ => malformed(bytes),
                }
            }
            Some(_) => Resp::Other,
            None => malformed(bytes),
        };
    }
    match first.as_str() {
        "SEARCH" => {
            let mut out = Vec::new();
            while p.space() {
                match p
                    .atom()
                    .map(|a| std::str::from_utf8(a).ok().and_then(|s| s.parse().ok()))
                {
                    Some(Some(n)) => out.push(n),
                    Some(None) => break, // (MODSEQ n) and the like: not asked for
                    None => break,
                }
            }
            Resp::Search(out)
        }
        "OK" | "NO" | "BAD" | "BYE" | "PREAUTH" => {
            p.space();
            Resp::Status {
                cond: first,
                code: p.code(),
            }
        }
        _ => Resp::Other,
    }
}

fn malformed(bytes: &[u8]) -> Resp {
    Resp::Malformed(String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned())
}

/// A value of a FETCH response.
#[derive(Debug)]
enum Val<'a> {
    Atom(&'a [u8]),
    Str(&'a [u8]),
    List(Vec<Val<'a>>),
}

fn fetch_data(items: &[Val<'_>]) -> Option<FetchData> {
    let mut d = FetchData::default();
    let mut it = items.iter();
    while let Some(name) = it.next() {
        let Val::Atom(name) = name else { return None };
        let value = it.next()?;
        let name = name.to_ascii_uppercase();
        let number = || match value {
            Val::Atom(a) => std::str::from_utf8(a).ok()?.parse::<u64>().ok(),
            _ => None,
        };
        match name.as_slice() {
            b"UID" => d.uid = Some(u32::try_from(number()?).ok()?),
            b"RFC822.SIZE" => d.size = Some(number()?),
            b"FLAGS" => {
                let Val::List(flags) = value else { return None };
                d.flags = Some(
                    flags
                        .iter()
                        .map(|f| match f {
                            Val::Atom(a) | Val::Str(a) => {
                                Some(String::from_utf8_lossy(a).into_owned())
                            }
                            Val::List(_) => None,
                        })
                        .collect::<Option<Vec<_>>>()?,
                );
            }
            b"BODY[]" | b"RFC822" => match value {
                Val::Str(s) => d.body = Some((hash_bytes(s), s.len() as u64)),
                Val::Atom(a) if a.eq_ignore_ascii_case(b"NIL") => d.body_nil = true,
                _ => return None,
            },
            _ => {}
        }
    }
    Some(d)
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn space(&mut self) -> bool {
        if self.peek() == Some(b' ') {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// An atom; a `[...]` inside it (a section, with spaces) belongs to it.
    fn atom(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b' ' | b'(' | b')' if depth == 0 => break,
                b'\r' | b'\n' => break,
                _ => {}
            }
            self.at += 1;
        }
        (self.at > start).then(|| &self.b[start..self.at])
    }

    fn value(&mut self) -> Option<Val<'a>> {
        match self.peek()? {
            b'(' => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    while self.space() {}
                    if self.peek()? == b')' {
                        self.at += 1;
                        return Some(Val::List(items));
                    }
                    items.push(self.value()?);
                }
            }
            b'"' => {
                self.at += 1;
                let start = self.at;
                loop {
                    match self.peek()? {
                        b'\\' => self.at += 2,
                        b'"' => break,
                        _ => self.at += 1,
                    }
                }
                let s = &self.b[start..self.at];
                self.at += 1;
                Some(Val::Str(s))
            }
            b'{' | b'~' => {
                let open = self.b[self.at..].iter().position(|&c| c == b'{')? + self.at;
                let close = self.b[open..].iter().position(|&c| c == b'}')? + open;
                let digits = &self.b[open + 1..close];
                let digits = digits.strip_suffix(b"+").unwrap_or(digits);
                let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
                let start = close + 3; // "}\r\n"
                let s = self.b.get(start..start + len)?;
                self.at = start + len;
                Some(Val::Str(s))
            }
            _ => self.atom().map(Val::Atom),
        }
    }

    /// `[NAME args...]` at the cursor, if there.
    fn code(&mut self) -> Option<Code> {
        if self.peek()? != b'[' {
            return None;
        }
        let rest = &self.b[self.at + 1..];
        let close = rest.iter().position(|&c| c == b']')?;
        let inner = String::from_utf8_lossy(&rest[..close]).into_owned();
        let mut words = inner.split_ascii_whitespace();
        let name = words.next()?.to_ascii_uppercase();
        Some(Code {
            name,
            args: words.map(str::to_string).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(line: &str) -> (u32, FetchData) {
        match parse(line.as_bytes()) {
            Resp::Fetch(n, d) => (n, d),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn reads_the_responses_the_model_checks() {
        assert_eq!(parse(b"* 3 EXISTS\r\n"), Resp::Exists(3));
        assert_eq!(parse(b"* 2 EXPUNGE\r\n"), Resp::Expunge(2));
        assert_eq!(parse(b"* 0 RECENT\r\n"), Resp::Other);
        assert_eq!(parse(b"* SEARCH 1 4 9\r\n"), Resp::Search(vec![1, 4, 9]));
        assert_eq!(parse(b"* SEARCH\r\n"), Resp::Search(vec![]));
        assert_eq!(parse(b"+ idling\r\n"), Resp::Continue);
        assert_eq!(parse(b"* FLAGS (\\Seen $s1)\r\n"), Resp::Other);
        let Resp::Tagged { tag, status, code } =
            parse(b"A12 OK [APPENDUID 1700000000 17] Append completed.\r\n")
        else {
            panic!()
        };
        assert_eq!((tag.as_str(), status.as_str()), ("A12", "OK"));
        assert_eq!(code.unwrap().appenduid(), Some((1_700_000_000, vec![17])));
        let Resp::Status { cond, code } = parse(b"* OK [COPYUID 9 4:5,7 20:22] Moved\r\n") else {
            panic!()
        };
        assert_eq!(cond, "OK");
        assert_eq!(
            code.unwrap().copyuid(),
            Some((9, vec![(4, 20), (5, 21), (7, 22)]))
        );
        let Resp::Status { code, .. } = parse(b"* OK [UIDVALIDITY 42] UIDs valid\r\n") else {
            panic!()
        };
        assert_eq!(code.unwrap().number(), Some(42));
    }

    #[test]
    fn reads_fetch_items_in_any_order_with_literals() {
        let (n, d) = fetch("* 4 FETCH (FLAGS (\\Seen $s2) UID 31)\r\n");
        assert_eq!((n, d.uid), (4, Some(31)));
        assert_eq!(d.flags, Some(vec!["\\Seen".into(), "$s2".into()]));
        let (_, d) =
            fetch("* 1 FETCH (UID 5 RFC822.SIZE 8 BODY[] {8}\r\nab\r\ncd\r\n FLAGS ())\r\n");
        assert_eq!(d.size, Some(8));
        assert_eq!(d.body, Some((hash_bytes(b"ab\r\ncd\r\n"), 8)));
        assert_eq!(d.flags, Some(vec![]));
        let (_, d) = fetch(
            "* 2 FETCH (UID 6 BODY[HEADER.FIELDS (SUBJECT)] {4}\r\nx\r\n\r INTERNALDATE \"01-Jan-2024 00:00:00 +0000\")\r\n",
        );
        assert_eq!((d.uid, d.body), (Some(6), None));
        assert!(matches!(
            parse(b"* 2 FETCH (UID x)\r\n"),
            Resp::Malformed(_)
        ));
    }
}
