//! Untagged responses other than status and FETCH: CAPABILITY, ENABLED,
//! FLAGS, SEARCH, ESEARCH (RFC 4731), STATUS and VANISHED (RFC 7162).
//! Anything else (LIST, NAMESPACE, ID, QUOTA, METADATA, ...) is
//! [`ResponseBody::Other`], passed whole.

use super::code::{nz, resp_text, status_word, uid_set};
use super::fetch::fetch_items;
use super::{EsearchItem, ResponseBody, StatusItem};
use crate::lexer::{Lexer, ParseError, Span, Upper};

fn atoms_to_end(l: &mut Lexer<'_>) -> Result<Vec<Span>, ParseError> {
    let mut v = Vec::new();
    while l.eat(b' ') {
        // Some servers end the list with a space.
        if l.at_end() {
            break;
        }
        v.push(l.atom()?);
    }
    Ok(v)
}

/// The value of one STATUS item, the cursor after `name SP`: a number
/// (MESSAGES, UIDNEXT, SIZE (RFC 8438), HIGHESTMODSEQ, DELETED (RFC
/// 9051), ...), or, for an item that carries no UID, any value
/// (`APPENDLIMIT NIL`, RFC 7889; `MAILBOXID (...)`, RFC 8474; Dovecot's
/// `X-GUID`), which is skipped: `None`.
fn status_item(l: &mut Lexer<'_>, name: Span) -> Result<Option<StatusItem>, ParseError> {
    let upper = Upper::of(name.of(l.buf));
    let uid_item = matches!(&upper[..], b"UIDNEXT" | b"UIDVALIDITY");
    if uid_item {
        let (value, span) = l.number64()?;
        return Ok(Some(StatusItem { name, value, span }));
    }
    let start = l.pos;
    if let Ok((value, span)) = l.number64() {
        if l.at(b' ') || l.at(b')') {
            return Ok(Some(StatusItem { name, value, span }));
        }
    }
    l.pos = start;
    l.value()?;
    Ok(None)
}

fn esearch(l: &mut Lexer<'_>) -> Result<ResponseBody, ParseError> {
    let mut tag = None;
    let mut uid = false;
    let mut items = Vec::new();
    if l.eat(b' ') {
        if l.at(b'(') {
            l.pos += 1;
            if !l.keyword(b"TAG") {
                return Err(l.err("TAG"));
            }
            l.sp()?;
            tag = Some(l.string()?);
            l.expect(b')', ")")?;
            if !l.eat(b' ') {
                return Ok(ResponseBody::Esearch { tag, uid, items });
            }
        }
        if l.keyword(b"UID") {
            uid = true;
            if !l.eat(b' ') {
                return Ok(ResponseBody::Esearch { tag, uid, items });
            }
        }
        loop {
            let name = l.atom()?;
            let upper = Upper::of(name.of(l.buf));
            l.sp()?;
            let item = match &upper[..] {
                b"MIN" => {
                    let (value, span) = nz(l)?;
                    EsearchItem::Min { value, span }
                }
                b"MAX" => {
                    let (value, span) = nz(l)?;
                    EsearchItem::Max { value, span }
                }
                b"COUNT" => {
                    let (value, span) = l.number()?;
                    EsearchItem::Count { value, span }
                }
                b"ALL" => {
                    let (set, span) = l.seqset()?;
                    if set.has_star() {
                        return Err(ParseError::Expected {
                            expected: "set without *",
                            offset: span.start,
                        });
                    }
                    EsearchItem::All { set, span }
                }
                _ => EsearchItem::Other {
                    name,
                    value: l.value()?,
                },
            };
            items.push(item);
            if !l.eat(b' ') {
                break;
            }
        }
    }
    Ok(ResponseBody::Esearch { tag, uid, items })
}

pub(super) fn untagged(l: &mut Lexer<'_>) -> Result<ResponseBody, ParseError> {
    if l.peek().is_some_and(|b| b.is_ascii_digit()) {
        let (n, _) = l.number()?;
        l.sp()?;
        let name = l.atom()?;
        let upper = Upper::of(name.of(l.buf));
        return Ok(match &upper[..] {
            b"EXISTS" => ResponseBody::Exists(n),
            b"RECENT" => ResponseBody::Recent(n),
            b"EXPUNGE" => ResponseBody::Expunge(n),
            b"FETCH" => {
                l.sp()?;
                ResponseBody::Fetch {
                    seq: n,
                    items: fetch_items(l)?,
                }
            }
            _ => {
                l.pos = l.buf.len() - 2;
                ResponseBody::Other { name }
            }
        });
    }
    if let Some(status) = status_word(l) {
        let (code, text) = if l.eat(b' ') {
            resp_text(l)?
        } else {
            (
                None,
                Span {
                    start: l.pos,
                    end: l.pos,
                },
            )
        };
        return Ok(ResponseBody::Status {
            tag: None,
            status,
            code,
            text,
        });
    }
    let name = l.atom()?;
    let upper = Upper::of(name.of(l.buf));
    Ok(match &upper[..] {
        b"CAPABILITY" => ResponseBody::Capability(atoms_to_end(l)?),
        b"ENABLED" => ResponseBody::Enabled(atoms_to_end(l)?),
        b"FLAGS" => {
            l.sp()?;
            ResponseBody::Flags(l.atom_list()?.0)
        }
        b"SEARCH" => search(l)?,
        b"ESEARCH" => esearch(l)?,
        b"STATUS" => mailbox_status(l)?,
        b"VANISHED" => vanished(l)?,
        _ => {
            l.pos = l.buf.len() - 2;
            ResponseBody::Other { name }
        }
    })
}

/// `SEARCH` results after the name: numbers, and RFC 7162's `(MODSEQ n)`.
fn search(l: &mut Lexer<'_>) -> Result<ResponseBody, ParseError> {
    let mut numbers = Vec::new();
    let mut modseq = None;
    while l.eat(b' ') {
        // Some servers end an empty or full result with a space.
        if l.at_end() {
            break;
        }
        if l.at(b'(') {
            let start = l.pos;
            l.pos += 1;
            if !l.keyword(b"MODSEQ") {
                return Err(l.err("MODSEQ"));
            }
            l.sp()?;
            l.number64()?;
            l.expect(b')', ")")?;
            modseq = Some(Span { start, end: l.pos });
            break;
        }
        numbers.push(nz(l)?);
    }
    Ok(ResponseBody::Search { numbers, modseq })
}

/// `STATUS mailbox (items)` after the name.
fn mailbox_status(l: &mut Lexer<'_>) -> Result<ResponseBody, ParseError> {
    l.sp()?;
    let mailbox = l.mailbox()?;
    l.sp()?;
    l.expect(b'(', "(")?;
    let mut items = Vec::new();
    if !l.eat(b')') {
        loop {
            let name = l.atom()?;
            l.sp()?;
            if let Some(item) = status_item(l, name)? {
                items.push(item);
            }
            if l.eat(b')') {
                break;
            }
            l.sp()?;
        }
    }
    // Some servers put a space before the CRLF here.
    l.eat(b' ');
    Ok(ResponseBody::MailboxStatus { mailbox, items })
}

/// RFC 7162's `VANISHED [(EARLIER)] uids` after the name.
fn vanished(l: &mut Lexer<'_>) -> Result<ResponseBody, ParseError> {
    l.sp()?;
    let earlier = if l.at(b'(') {
        l.pos += 1;
        if !l.keyword(b"EARLIER") {
            return Err(l.err("EARLIER"));
        }
        l.expect(b')', ")")?;
        l.sp()?;
        true
    } else {
        false
    };
    let (uids, span) = uid_set(l)?;
    Ok(ResponseBody::Vanished {
        earlier,
        uids,
        span,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::*;

    #[test]
    fn rfc9051_search_and_condstore_modseq() {
        let b = b"* SEARCH 2 84 882\r\n";
        let ResponseBody::Search { numbers, modseq } = parse(b).body else {
            panic!()
        };
        assert_eq!(
            numbers.iter().map(|n| n.0).collect::<Vec<_>>(),
            vec![2, 84, 882]
        );
        assert_eq!(numbers[1].1.of(b), b"84");
        assert_eq!(modseq, None);
        let ResponseBody::Search { numbers, .. } = parse(b"* SEARCH\r\n").body else {
            panic!()
        };
        assert!(numbers.is_empty());
        let b = b"* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n";
        let ResponseBody::Search { numbers, modseq } = parse(b).body else {
            panic!()
        };
        assert_eq!(numbers.len(), 10);
        assert_eq!(modseq.unwrap().of(b), b"(MODSEQ 917162500)");
    }

    #[test]
    fn rfc4731_esearch() {
        let b = b"* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n";
        let ResponseBody::Esearch { tag, uid, items } = parse(b).body else {
            panic!()
        };
        assert_eq!(&*tag.unwrap().value(b), b"A282");
        assert!(!uid);
        assert!(matches!(items[0], EsearchItem::Min { value: 2, .. }));
        assert!(matches!(items[1], EsearchItem::Count { value: 3, .. }));
        let b = b"* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800\r\n";
        let ResponseBody::Esearch { uid, items, .. } = parse(b).body else {
            panic!()
        };
        assert!(uid);
        assert!(matches!(items[1], EsearchItem::Max { value: 3800, .. }));
        let b = b"* ESEARCH (TAG \"A284\") UID ALL 4:10,20\r\n";
        let ResponseBody::Esearch { items, .. } = parse(b).body else {
            panic!()
        };
        let EsearchItem::All { span, .. } = &items[0] else {
            panic!()
        };
        assert_eq!(span.of(b), b"4:10,20");
        let b = b"* ESEARCH (TAG \"A283\")\r\n";
        let ResponseBody::Esearch { items, .. } = parse(b).body else {
            panic!()
        };
        assert!(items.is_empty());
        assert!(matches!(
            parse(b"* ESEARCH UID COUNT 0\r\n").body,
            ResponseBody::Esearch { uid: true, .. }
        ));
    }

    #[test]
    fn rfc9051_status_response() {
        let b = b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 1)\r\n";
        let ResponseBody::MailboxStatus { mailbox, items } = parse(b).body else {
            panic!()
        };
        assert_eq!(&*mailbox.value(b), b"blurdybloop");
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].name.of(b), b"UIDNEXT");
        assert_eq!(items[1].span.of(b), b"44292");
        let b = b"* STATUS \"Sent Items\" (UIDNEXT 7) \r\n";
        assert!(matches!(parse(b).body, ResponseBody::MailboxStatus { .. }));
    }

    #[test]
    fn rfc7162_vanished() {
        let b = b"* VANISHED (EARLIER) 300:310,405,411\r\n";
        let ResponseBody::Vanished { earlier, span, .. } = parse(b).body else {
            panic!()
        };
        assert!(earlier);
        assert_eq!(span.of(b), b"300:310,405,411");
        let b = b"* VANISHED 405,407,410\r\n";
        assert!(matches!(
            parse(b).body,
            ResponseBody::Vanished { earlier: false, .. }
        ));
        assert!(Response::parse(b"* VANISHED 1:*\r\n").is_err());
    }

    #[test]
    fn status_items_of_every_extension() {
        // RFC 9051 DELETED, RFC 8438 SIZE (64-bit), RFC 7889 APPENDLIMIT
        // (number or NIL), RFC 8474 MAILBOXID, Dovecot's X-GUID.
        let b = b"* STATUS INBOX (MESSAGES 7 SIZE 9223372036854775807 DELETED 0 APPENDLIMIT NIL MAILBOXID (F2212ea87) X-GUID 0c3e8e5e UIDNEXT 8 UIDVALIDITY 1796660872 HIGHESTMODSEQ 10)\r\n";
        let ResponseBody::MailboxStatus { items, .. } = parse(b).body else {
            panic!()
        };
        let names: Vec<&[u8]> = items.iter().map(|i| i.name.of(b)).collect();
        assert_eq!(
            names,
            [
                &b"MESSAGES"[..],
                b"SIZE",
                b"DELETED",
                b"UIDNEXT",
                b"UIDVALIDITY",
                b"HIGHESTMODSEQ"
            ]
        );
        assert_eq!(items[1].value, i64::MAX as u64);
        let b = b"* STATUS {5}\r\nIN BX (APPENDLIMIT 1000)\r\n";
        assert!(matches!(parse(b).body, ResponseBody::MailboxStatus { .. }));
        // An item that carries a UID must be a number.
        assert!(Response::parse(b"* STATUS a (UIDNEXT NIL)\r\n").is_err());
        assert!(Response::parse(b"* STATUS a (UIDVALIDITY \"1\")\r\n").is_err());
    }

    #[test]
    fn responses_passed_whole_table() {
        // RFC 5258 LIST-EXTENDED (CHILDINFO, OLDNAME), RFC 6154, RFC 2342
        // NAMESPACE with extensions, RFC 2971 ID, RFC 9208 QUOTA, RFC 5464
        // METADATA, RFC 4314 ACL, RFC 5255 LANGUAGE, RFC 5256 SORT/THREAD.
        for b in [
            &b"* LIST (\\Subscribed \\NonExistent) \"/\" \"Foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n"[..],
            b"* LIST (\\HasChildren) \"/\" \"a\" (\"CHILDINFO\" (\"SUBSCRIBED\") \"OLDNAME\" (\"b\"))\r\n",
            b"* LIST () \"/\" foo[bar\r\n",
            b"* LIST (\\Sent \\HasNoChildren) NIL {4}\r\nSent\r\n",
            b"* LSUB () \".\" #news.comp.mail.misc\r\n",
            b"* NAMESPACE ((\"\" \"/\")) ((\"~\" \"/\")) ((\"#shared/\" \"/\")(\"#public/\" \"/\" \"X-PARAM\" (\"FLAG1\" \"FLAG2\")))\r\n",
            b"* ID (\"name\" \"Dovecot\" \"version\" NIL)\r\n",
            b"* ID NIL\r\n",
            b"* QUOTA \"\" (STORAGE 10 512 MESSAGE 3 100)\r\n",
            b"* QUOTAROOT INBOX \"\"\r\n",
            b"* METADATA \"\" (/shared/comment {11}\r\nhello\r\nthere)\r\n",
            b"* METADATA INBOX /shared/comment /private/comment\r\n",
            b"* ACL INBOX Fred rwipslxetad \"a b\" lr\r\n",
            b"* MYRIGHTS INBOX rwiptsldaex\r\n",
            b"* LISTRIGHTS ~/Mail/saved smith la r swicdkxte\r\n",
            b"* LANGUAGE (EN DE IT i-default)\r\n",
            b"* COMPARATOR i;basic\r\n",
            b"* CONVERTED 2 (UID 5) BINARY[1] NIL\r\n",
            b"* 3 XFOO bar\r\n",
        ] {
            assert!(
                matches!(parse(b).body, ResponseBody::Other { .. }),
                "{}",
                b.escape_ascii()
            );
        }
        // ENABLED and CAPABILITY with a trailing space.
        assert!(
            matches!(parse(b"* ENABLED CONDSTORE \r\n").body, ResponseBody::Enabled(v) if v.len() == 1)
        );
        assert!(
            matches!(parse(b"* CAPABILITY IMAP4rev1 \r\n").body, ResponseBody::Capability(v) if v.len() == 1)
        );
        // SORT and THREAD carry UIDs after UID SORT / UID THREAD, which
        // tandem refuses; they are passed whole.
        for b in [
            &b"* SORT 2 3 6\r\n"[..],
            b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n",
        ] {
            assert!(matches!(parse(b).body, ResponseBody::Other { .. }));
        }
    }

    #[test]
    fn status_responses_with_any_code() {
        for b in [
            &b"* OK [X_UNDERSCORE] x\r\n"[..],
            b"* NO [BADCHARSET (UTF-8 US-ASCII)] x\r\n",
            b"* OK [METADATA LONGENTRIES 2000] x\r\n",
            b"* NO [OVERQUOTA] x\r\n",
            b"t OK [CLIENTBUG] Status on selected mailbox completed\r\n",
            b"t NO [CANNOT] Invalid mailbox name: Name must not have '/' characters\r\n",
            b"* OK [NOMODSEQ] x\r\n",
            b"* OK [CLOSED]\r\n",
            b"* OK [MAILBOXID (F2212ea87)] Ok\r\n",
            b"* OK [HIGHESTMODSEQ 715194045007]\r\n",
        ] {
            assert!(
                matches!(parse(b).body, ResponseBody::Status { code: Some(_), .. }),
                "{}",
                b.escape_ascii()
            );
        }
    }
}
