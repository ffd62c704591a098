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
        v.push(l.atom()?);
    }
    Ok(v)
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
        b"SEARCH" => {
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
            ResponseBody::Search { numbers, modseq }
        }
        b"ESEARCH" => esearch(l)?,
        b"STATUS" => {
            l.sp()?;
            let mailbox = l.mailbox()?;
            l.sp()?;
            l.expect(b'(', "(")?;
            let mut items = Vec::new();
            if !l.eat(b')') {
                loop {
                    let name = l.atom()?;
                    l.sp()?;
                    let (value, span) = l.number64()?;
                    items.push(StatusItem { name, value, span });
                    if l.eat(b')') {
                        break;
                    }
                    l.sp()?;
                }
            }
            // Some servers put a space before the CRLF here.
            l.eat(b' ');
            ResponseBody::MailboxStatus { mailbox, items }
        }
        b"VANISHED" => {
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
            ResponseBody::Vanished {
                earlier,
                uids,
                span,
            }
        }
        _ => {
            l.pos = l.buf.len() - 2;
            ResponseBody::Other { name }
        }
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
}
