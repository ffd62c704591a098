//! Status responses: the status word, the response code (`[...]`) and
//! the text after it. The codes that carry UIDs (UIDNEXT, UIDVALIDITY,
//! APPENDUID, COPYUID) are parsed strictly; any other code is kept raw.

use super::{Code, Status};
use crate::lexer::{is_atom_char, Lexer, ParseError, Span, Upper};
use crate::seqset::SequenceSet;

pub(crate) fn status_word(l: &mut Lexer<'_>) -> Option<Status> {
    for (w, s) in [
        (&b"OK"[..], Status::Ok),
        (b"NO", Status::No),
        (b"BAD", Status::Bad),
        (b"PREAUTH", Status::PreAuth),
        (b"BYE", Status::Bye),
    ] {
        if l.keyword(w) {
            return Some(s);
        }
    }
    None
}

/// A `uid-set` (RFC 4315): a sequence set without `*`.
pub(super) fn uid_set(l: &mut Lexer<'_>) -> Result<(SequenceSet, Span), ParseError> {
    let start = l.pos;
    let (set, span) = l.seqset()?;
    if set.has_star() {
        return Err(ParseError::Expected {
            expected: "uid-set without *",
            offset: start,
        });
    }
    Ok((set, span))
}

pub(super) fn nz(l: &mut Lexer<'_>) -> Result<(u32, Span), ParseError> {
    l.nz_number()
}

/// `[` code `]`, the cursor on `[`.
pub(crate) fn code(l: &mut Lexer<'_>) -> Result<Code, ParseError> {
    l.expect(b'[', "[")?;
    // resp-text-code's `atom [SP 1*<any TEXT-CHAR except "]">]`: an
    // atom never holds "]".
    let name = l.take_while1(is_atom_char, "code name")?;
    let upper = Upper::of(name.of(l.buf));
    let code = match &upper[..] {
        b"UIDNEXT" => {
            l.sp()?;
            let (value, span) = nz(l)?;
            Code::UidNext { value, span }
        }
        b"UIDVALIDITY" => {
            l.sp()?;
            let (value, span) = nz(l)?;
            Code::UidValidity { value, span }
        }
        b"APPENDUID" => {
            l.sp()?;
            let (uidvalidity, uidvalidity_span) = nz(l)?;
            l.sp()?;
            let (uids, uids_span) = uid_set(l)?;
            Code::AppendUid {
                uidvalidity,
                uidvalidity_span,
                uids,
                uids_span,
            }
        }
        b"COPYUID" => {
            l.sp()?;
            let (uidvalidity, uidvalidity_span) = nz(l)?;
            l.sp()?;
            let (source, source_span) = uid_set(l)?;
            l.sp()?;
            let (dest, dest_span) = uid_set(l)?;
            Code::CopyUid {
                uidvalidity,
                uidvalidity_span,
                source,
                source_span,
                dest,
                dest_span,
            }
        }
        b"UIDNOTSTICKY" => Code::UidNotSticky,
        b"TRYCREATE" => Code::TryCreate,
        b"READ-ONLY" => Code::ReadOnly,
        b"READ-WRITE" => Code::ReadWrite,
        b"PERMANENTFLAGS" => {
            l.sp()?;
            Code::PermanentFlags(l.atom_list()?.0)
        }
        b"CAPABILITY" => {
            let mut v = Vec::new();
            while l.eat(b' ') {
                v.push(l.atom()?);
            }
            Code::Capability(v)
        }
        _ => {
            let args = if l.eat(b' ') {
                let start = l.pos;
                let n = l.buf[start..]
                    .iter()
                    .take_while(|&&b| b != b']' && b != b'\r' && b != b'\n')
                    .count();
                l.pos += n;
                Some(Span { start, end: l.pos })
            } else {
                None
            };
            Code::Other { name, args }
        }
    };
    l.expect(b']', "]")?;
    Ok(code)
}

/// `resp-text`: optional code, then text to the CRLF.
pub(super) fn resp_text(l: &mut Lexer<'_>) -> Result<(Option<Code>, Span), ParseError> {
    let code = if l.at(b'[') {
        let c = code(l)?;
        // RFC 9051 wants SP text; servers sometimes end right after "]".
        l.eat(b' ');
        Some(c)
    } else {
        None
    };
    let text = l.text();
    Ok((code, text))
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::*;

    #[test]
    fn rfc9051_select_responses() {
        assert_eq!(parse(b"* 172 EXISTS\r\n").body, ResponseBody::Exists(172));
        assert_eq!(parse(b"* 1 RECENT\r\n").body, ResponseBody::Recent(1));
        assert_eq!(parse(b"* 3 EXPUNGE\r\n").body, ResponseBody::Expunge(3));
        let b = b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n";
        let r = parse(b);
        let Some(Code::UidValidity { value, span }) = r.code() else {
            panic!()
        };
        assert_eq!(*value, 3857529045);
        assert_eq!(span.of(b), b"3857529045");
        let b = b"* OK [UIDNEXT 4392] Predicted next UID\r\n";
        assert!(matches!(
            parse(b).code(),
            Some(Code::UidNext { value: 4392, .. })
        ));
        let b = b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n";
        let ResponseBody::Flags(f) = parse(b).body else {
            panic!()
        };
        assert_eq!(f.len(), 5);
        let b = b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n";
        let Some(Code::PermanentFlags(f)) = parse(b).code().cloned() else {
            panic!()
        };
        assert_eq!(f[2].of(b), b"\\*");
        let b = b"A142 OK [READ-WRITE] SELECT completed\r\n";
        let r = parse(b);
        assert_eq!(r.tag(), Some(&b"A142"[..]));
        assert_eq!(r.code(), Some(&Code::ReadWrite));
    }

    #[test]
    fn rfc4315_appenduid_and_copyuid() {
        let b = b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n";
        let r = parse(b);
        let Some(Code::AppendUid {
            uidvalidity,
            uids,
            uids_span,
            ..
        }) = r.code()
        else {
            panic!()
        };
        assert_eq!(*uidvalidity, 38505);
        assert_eq!(uids.to_bytes(), b"3955");
        assert_eq!(uids_span.of(b), b"3955");
        let b = b"A004 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n";
        let r = parse(b);
        let Some(Code::CopyUid {
            source_span,
            dest_span,
            ..
        }) = r.code()
        else {
            panic!()
        };
        assert_eq!(source_span.of(b), b"304,319:320");
        assert_eq!(dest_span.of(b), b"3956:3958");
        assert!(Response::parse(b"A OK [APPENDUID 1 1:*] x\r\n").is_err());
        assert!(Response::parse(b"A OK [COPYUID 1 2] x\r\n").is_err());
        let b = b"A OK [UIDNOTSTICKY] Non-persistent UIDs\r\n";
        assert_eq!(parse(b).code(), Some(&Code::UidNotSticky));
        let b = b"A003 NO [TRYCREATE] Mailbox doesn't exist: foo\r\n";
        assert_eq!(parse(b).code(), Some(&Code::TryCreate));
    }

    #[test]
    fn dovecot_greeting_and_capability_code() {
        let b = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot (Debian) ready.\r\n";
        let Some(Code::Capability(c)) = parse(b).code().cloned() else {
            panic!()
        };
        assert_eq!(c.len(), 8);
        assert_eq!(c[6].of(b), b"LITERAL+");
        let b = b"* CAPABILITY IMAP4rev1 UIDPLUS MOVE CONDSTORE QRESYNC\r\n";
        let ResponseBody::Capability(c) = parse(b).body else {
            panic!()
        };
        assert_eq!(c.len(), 5);
        let b = b"a OK [ALERT] System shutdown in 10 minutes\r\n";
        assert!(matches!(
            parse(b).code(),
            Some(Code::Other { args: None, .. })
        ));
        let b = b"a1 OK [HIGHESTMODSEQ 715194045007] Ok\r\n";
        let Some(Code::Other { args: Some(a), .. }) = parse(b).code().cloned() else {
            panic!()
        };
        assert_eq!(a.of(b), b"715194045007");
    }
}
