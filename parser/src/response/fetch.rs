//! FETCH responses: the items of `* n FETCH (...)`. UID, FLAGS and MODSEQ
//! are read; every other item (ENVELOPE, BODYSTRUCTURE, BODY[...],
//! BINARY[...], PREVIEW, ...) is kept as its name and raw value, whose
//! extent the lexer finds whatever the item's grammar (lists of lists
//! without SP, literals and literal8 included).

use super::code::nz;
use super::FetchItem;
use crate::lexer::{Lexer, ParseError, Upper};

pub(super) fn fetch_items(l: &mut Lexer<'_>) -> Result<Vec<FetchItem>, ParseError> {
    fetch_items_inner(l, false).map(|(items, _)| items)
}

/// The items of a FETCH. With `head`, the buffer may end anywhere after a
/// literal announcement: the items complete so far are returned with
/// `false` (not complete).
pub(super) fn fetch_items_inner(
    l: &mut Lexer<'_>,
    head: bool,
) -> Result<(Vec<FetchItem>, bool), ParseError> {
    l.expect(b'(', "(")?;
    let mut items = Vec::new();
    if l.eat(b')') {
        return Ok((items, true));
    }
    loop {
        let item = match fetch_item(l) {
            Ok(item) => item,
            Err(e) if head && e.offset() >= l.buf.len() => return Ok((items, false)),
            Err(e) => return Err(e),
        };
        items.push(item);
        if head && l.pos == l.buf.len() {
            return Ok((items, false));
        }
        if l.eat(b')') {
            return Ok((items, true));
        }
        l.sp()?;
    }
}

fn fetch_item(l: &mut Lexer<'_>) -> Result<FetchItem, ParseError> {
    let name = l.value()?;
    let upper = Upper::of(name.of(l.buf));
    l.sp()?;
    Ok(match &upper[..] {
        b"UID" => {
            let (value, span) = nz(l)?;
            FetchItem::Uid { value, span }
        }
        b"FLAGS" => FetchItem::Flags(l.atom_list()?.0),
        b"MODSEQ" => {
            l.expect(b'(', "(")?;
            let (value, span) = l.number64()?;
            l.expect(b')', ")")?;
            FetchItem::ModSeq { value, span }
        }
        _ => FetchItem::Other {
            name,
            value: l.value()?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::*;

    #[test]
    fn dovecot_fetch_with_uid_flags_and_body_literal() {
        let b = b"* 12 FETCH (UID 4827313 MODSEQ (5) FLAGS (\\Seen $Forwarded) RFC822.SIZE 44827 BODY[] {12}\r\nHello\r\n(UID))\r\n";
        let ResponseBody::Fetch { seq, items } = parse(b).body else {
            panic!()
        };
        assert_eq!(seq, 12);
        let FetchItem::Uid { value, span } = &items[0] else {
            panic!()
        };
        assert_eq!((*value, span.of(b)), (4827313, &b"4827313"[..]));
        assert!(matches!(items[1], FetchItem::ModSeq { value: 5, .. }));
        assert!(matches!(&items[2], FetchItem::Flags(f) if f.len() == 2));
        let FetchItem::Other { name, value } = &items[4] else {
            panic!()
        };
        assert_eq!(name.of(b), b"BODY[]");
        assert_eq!(value.of(b), b"{12}\r\nHello\r\n(UID)");
        // UID after a body, and sections with spaces.
        let b = b"* 1 FETCH (BODY[HEADER.FIELDS (FROM)] {3}\r\nabc UID 9)\r\n";
        let ResponseBody::Fetch { items, .. } = parse(b).body else {
            panic!()
        };
        assert!(matches!(items[1], FetchItem::Uid { value: 9, .. }));
        let b = b"* 2 FETCH (ENVELOPE (\"date\" \"subj\" ((NIL NIL \"a\" \"b.c\")) NIL NIL NIL NIL NIL NIL \"<id>\") UID 3)\r\n";
        let ResponseBody::Fetch { items, .. } = parse(b).body else {
            panic!()
        };
        assert!(matches!(items[1], FetchItem::Uid { value: 3, .. }));
        let b = b"* 3 FETCH (BINARY[1] ~{3}\r\n\0\0\0 UID 4)\r\n";
        let ResponseBody::Fetch { items, .. } = parse(b).body else {
            panic!()
        };
        assert!(matches!(items[1], FetchItem::Uid { value: 4, .. }));
    }

    #[test]
    fn skeleton_without_literal_data_gives_the_uid_spans() {
        let b = b"* 12 FETCH (BODY[] {100000}\r\n UID 4827313 FLAGS (\\Seen))\r\n";
        let r = Response::parse_skeleton(b).unwrap();
        let ResponseBody::Fetch { items, .. } = &r.body else {
            panic!()
        };
        let FetchItem::Uid { value, span } = &items[1] else {
            panic!()
        };
        assert_eq!(*value, 4827313);
        assert_eq!(span.of(b), b"4827313");
        // The same bytes are not a complete response: the data is missing.
        assert!(Response::parse(b).is_err());
    }

    #[test]
    fn fetch_head_gives_the_uid_before_a_streamed_body() {
        let b = b"* 12 FETCH (UID 4827313 FLAGS (\\Seen) BODY[] {100000}\r\n";
        let r = Response::parse_fetch_head(b).unwrap();
        let ResponseBody::Fetch { seq, items } = &r.body else {
            panic!()
        };
        assert_eq!(*seq, 12);
        assert_eq!(items.len(), 3);
        assert!(matches!(items[0], FetchItem::Uid { value: 4827313, .. }));
        // A literal nested inside ENVELOPE ends the head too.
        let b = b"* 1 FETCH (UID 5 ENVELOPE (\"date\" {300}\r\n";
        let r = Response::parse_fetch_head(b).unwrap();
        let ResponseBody::Fetch { items, .. } = &r.body else {
            panic!()
        };
        assert_eq!(items.len(), 1);
        // A whole response is a head too.
        assert!(Response::parse_fetch_head(b"* 1 FETCH (UID 5)\r\n").is_ok());
        assert!(Response::parse_fetch_head(b"* 1 FETCH (UID 5) x\r\n").is_err());
        assert!(Response::parse_fetch_head(b"* 1 FETCH (UID 0 BODY[] {3}\r\n").is_err());
    }

    /// `(items, uid)`: the number of items and the UID of each FETCH.
    fn items_and_uid(b: &[u8]) -> (usize, Option<u32>) {
        let r = parse(b);
        let ResponseBody::Fetch { items, .. } = &r.body else {
            panic!("not a FETCH: {}", b.escape_ascii())
        };
        (items.len(), r.fetch_uid())
    }

    #[test]
    fn rfc9051_fetch_grammar_table() {
        for (b, want) in [
            // env-to etc. = "(" 1*address ")": addresses touch; a group is
            // (NIL NIL "name" NIL) ... (NIL NIL NIL NIL) (RFC 9051 7.5.2).
            (
                &b"* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) ((NIL NIL \"g\" NIL)(\"J\" NIL \"j\" \"x.org\")(NIL NIL NIL NIL)) NIL NIL) UID 7)\r\n"[..],
                (2, Some(7)),
            ),
            // A literal subject, then more items.
            (
                b"* 2 FETCH (ENVELOPE (NIL {5}\r\nab\"\r\n NIL NIL NIL NIL NIL NIL NIL NIL) UID 8 FLAGS ())\r\n",
                (3, Some(8)),
            ),
            // body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart];
            // body-ext-mpart = body-fld-param [SP body-fld-dsp [SP
            // body-fld-lang [SP body-fld-loc *(SP body-extension)]]].
            (
                b"* 3 FETCH (UID 9 BODYSTRUCTURE (((\"text\" \"plain\" NIL NIL NIL \"7bit\" 1 1 NIL NIL \"en\" NIL)(\"text\" \"html\" NIL NIL NIL \"7bit\" 1 1 NIL (\"inline\" NIL) (\"en\" \"de\") \"loc\" 5 (6 \"x\" (7 NIL)) ~{2}\r\n\0\0) \"alternative\" (\"boundary\" \"b\") (\"inline\" (\"a\" \"b\")) NIL NIL 1 ((\"x\"))) \"mixed\" NIL NIL NIL NIL))\r\n",
                (2, Some(9)),
            ),
            // body-type-msg: envelope SP body SP body-fld-lines.
            (
                b"* 4 FETCH (BODY (\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 75 (NIL \"s\" NIL NIL NIL ((NIL NIL \"g\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL) (\"text\" \"plain\" NIL NIL NIL \"7bit\" 18 1) 5) UID 10)\r\n",
                (2, Some(10)),
            ),
            // Multipart with no extension data, nested three deep.
            (
                b"* 5 FETCH (BODY (((\"a\" \"b\" NIL NIL NIL \"7bit\" 1)(\"a\" \"b\" NIL NIL NIL \"7bit\" 1) \"x\")((\"a\" \"b\" NIL NIL NIL \"7bit\" 1) \"y\") \"mixed\"))\r\n",
                (1, None),
            ),
            // RFC 3516: BINARY[section] nstring / literal8; BINARY.SIZE.
            (
                b"* 6 FETCH (UID 11 BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\nab\0cd\r\n BINARY[2]<0> ~{3}\r\n\0)( BINARY[3] NIL)\r\n",
                (5, Some(11)),
            ),
            // RFC 8970 PREVIEW: nstring, a literal, or NIL (LAZY).
            (
                b"* 7 FETCH (PREVIEW NIL PREVIEW \"x\" UID 12 PREVIEW {3}\r\n\xc3\xa9 )\r\n",
                (4, Some(12)),
            ),
            // Dovecot's SNIPPET (draft of RFC 8970).
            (
                b"* 8 FETCH (SNIPPET (FUZZY {3}\r\nx\"y) UID 13)\r\n",
                (2, Some(13)),
            ),
            // RFC 7162 MODSEQ; RFC 8474 EMAILID, THREADID; SAVEDATE.
            (
                b"* 9 FETCH (MODSEQ (12345678901234) EMAILID (M6d99ac3275bb4e) THREADID NIL SAVEDATE \"07-Dec-2026 16:15:04 +0000\" UID 14)\r\n",
                (5, Some(14)),
            ),
            // Sections with spaces, partial origins, an empty literal.
            (
                b"* 10 FETCH (BODY[HEADER.FIELDS.NOT (A B)]<0> {0}\r\n BODY[4.TEXT]<2> \"\" UID 15)\r\n",
                (3, Some(15)),
            ),
        ] {
            assert_eq!(items_and_uid(b), want, "{}", b.escape_ascii());
        }
    }

    #[test]
    fn fetch_heads_before_literals_table() {
        // The first line of a response with a literal: the items before it,
        // the literal's own item, and the UID when it comes first.
        for (b, n, uid) in [
            (&b"* 1 FETCH (UID 5 ENVELOPE ((NIL NIL \"g\" NIL)(NIL NIL NIL NIL)) BODY[] {300}\r\n"[..], 3, Some(5)),
            (b"* 2 FETCH (UID 6 ENVELOPE (NIL {20}\r\n", 1, Some(6)),
            (b"* 3 FETCH (UID 7 BODYSTRUCTURE ((\"a\" \"b\" NIL NIL NIL \"7bit\" 1)(\"a\" \"b\" NIL NIL NIL \"7bit\" 1) \"mixed\") BINARY[1] ~{9}\r\n", 3, Some(7)),
            (b"* 4 FETCH (UID 8 RFC822.SIZE 868 BODY[] {868}\r\n", 3, Some(8)),
            (b"* 5 FETCH (PREVIEW {10}\r\n", 1, None),
        ] {
            let r = Response::parse_fetch_head(b)
                .unwrap_or_else(|e| panic!("{e} in {}", b.escape_ascii()));
            assert_eq!(r.fetch_items().len(), n, "{}", b.escape_ascii());
            assert_eq!(r.fetch_uid(), uid);
        }
    }
}
