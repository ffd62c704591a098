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
}
