//! SEARCH and its criteria: every key is parsed by its arity, so each
//! `UID set` criterion, at any depth, is found and can be rewritten.

use super::args::{list, set_arg};
use super::{CommandBody, SetArg};
use crate::lexer::{Lexer, ParseError, Span, Upper};

pub(super) fn search(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let ret = if l.keyword(b"RETURN") {
        l.sp()?;
        let r = list(l)?;
        l.sp()?;
        Some(r)
    } else {
        None
    };
    let charset = if l.keyword(b"CHARSET") {
        l.sp()?;
        let c = l.astring()?;
        l.sp()?;
        Some(c)
    } else {
        None
    };
    let start = l.pos;
    let mut uid_criteria = Vec::new();
    search_key(l, &mut uid_criteria)?;
    while l.eat(b' ') {
        search_key(l, &mut uid_criteria)?;
    }
    Ok(CommandBody::Search {
        ret,
        charset,
        criteria: Span { start, end: l.pos },
        uid_criteria,
    })
}

/// One search key (RFC 9051 `search-key`, with RFC 7162 MODSEQ, RFC 5032
/// OLDER/YOUNGER, RFC 8474 EMAILID/THREADID, RFC 8514 SAVEDATE, RFC 6203
/// FUZZY). Unknown keys are an error: their arity is unknown, so a UID set
/// after one could not be told from its argument.
fn search_key(l: &mut Lexer<'_>, uids: &mut Vec<SetArg>) -> Result<(), ParseError> {
    if l.at(b'(') {
        l.enter()?;
        l.pos += 1;
        search_key(l, uids)?;
        while l.eat(b' ') {
            search_key(l, uids)?;
        }
        l.expect(b')', ")")?;
        l.leave();
        return Ok(());
    }
    if matches!(l.peek(), Some(b'0'..=b'9' | b'*' | b'$')) {
        set_arg(l)?;
        return Ok(());
    }
    let word = l.atom()?;
    let key = Upper::of(word.of(l.buf));
    match &key[..] {
        b"ALL" | b"ANSWERED" | b"DELETED" | b"DRAFT" | b"FLAGGED" | b"NEW" | b"OLD" | b"RECENT"
        | b"SEEN" | b"UNANSWERED" | b"UNDELETED" | b"UNDRAFT" | b"UNFLAGGED" | b"UNSEEN"
        | b"SAVEDATESUPPORTED" => {}
        b"BCC" | b"BODY" | b"CC" | b"FROM" | b"SUBJECT" | b"TEXT" | b"TO" | b"KEYWORD"
        | b"UNKEYWORD" | b"BEFORE" | b"ON" | b"SINCE" | b"SENTBEFORE" | b"SENTON"
        | b"SENTSINCE" | b"SAVEDBEFORE" | b"SAVEDON" | b"SAVEDSINCE" | b"EMAILID" | b"THREADID" => {
            l.sp()?;
            l.astring()?;
        }
        b"LARGER" | b"SMALLER" | b"OLDER" | b"YOUNGER" => {
            l.sp()?;
            l.number64()?;
        }
        b"HEADER" => {
            l.sp()?;
            l.astring()?;
            l.sp()?;
            l.astring()?;
        }
        b"UID" => {
            l.sp()?;
            uids.push(set_arg(l)?);
        }
        b"NOT" | b"FUZZY" => {
            l.sp()?;
            l.enter()?;
            search_key(l, uids)?;
            l.leave();
        }
        b"OR" => {
            l.sp()?;
            l.enter()?;
            search_key(l, uids)?;
            l.sp()?;
            search_key(l, uids)?;
            l.leave();
        }
        b"MODSEQ" => {
            l.sp()?;
            if l.at(b'"') {
                l.quoted()?;
                l.sp()?;
                l.atom()?;
                l.sp()?;
            }
            l.number64()?;
        }
        _ => {
            return Err(ParseError::Expected {
                expected: "known search key",
                offset: word.start,
            })
        }
    }
    Ok(())
}
