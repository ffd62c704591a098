//! The commands on messages, but SEARCH (see `search.rs`): APPEND, COPY,
//! MOVE, STORE and FETCH, and the flag lists of APPEND and STORE.

use super::args::{list, set_arg};
use super::{AppendMessage, CommandBody, StoreMode};
use crate::lexer::{Lexer, ParseError, Span};

pub(super) fn copy_or_move(l: &mut Lexer<'_>, is_move: bool) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let set = set_arg(l)?;
    l.sp()?;
    let mailbox = l.mailbox()?;
    Ok(if is_move {
        CommandBody::Move { set, mailbox }
    } else {
        CommandBody::Copy { set, mailbox }
    })
}

/// A flag or keyword: `\Seen`, `$Label`, `NonJunk`.
fn flag(l: &mut Lexer<'_>) -> Result<Span, ParseError> {
    let start = l.pos;
    l.eat(b'\\');
    l.atom()?;
    Ok(Span { start, end: l.pos })
}

fn flag_list(l: &mut Lexer<'_>) -> Result<Vec<Span>, ParseError> {
    l.expect(b'(', "(")?;
    let mut v = Vec::new();
    if l.eat(b')') {
        return Ok(v);
    }
    loop {
        v.push(flag(l)?);
        if l.eat(b')') {
            return Ok(v);
        }
        l.sp()?;
    }
}

pub(super) fn store(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let set = set_arg(l)?;
    l.sp()?;
    let modifiers = if l.at(b'(') {
        let m = list(l)?;
        l.sp()?;
        Some(m)
    } else {
        None
    };
    let mode = if l.eat(b'+') {
        StoreMode::Add
    } else if l.eat(b'-') {
        StoreMode::Remove
    } else {
        StoreMode::Replace
    };
    let silent = if l.keyword(b"FLAGS.SILENT") {
        true
    } else if l.keyword(b"FLAGS") {
        false
    } else {
        return Err(l.err("FLAGS or FLAGS.SILENT"));
    };
    l.sp()?;
    let flags = if l.at(b'(') {
        flag_list(l)?
    } else {
        let mut v = vec![flag(l)?];
        while l.eat(b' ') {
            v.push(flag(l)?);
        }
        v
    };
    Ok(CommandBody::Store {
        set,
        modifiers,
        mode,
        silent,
        flags,
    })
}

pub(super) fn fetch(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let set = set_arg(l)?;
    l.sp()?;
    let items = l.value()?;
    let modifiers = if l.eat(b' ') { Some(list(l)?) } else { None };
    Ok(CommandBody::Fetch {
        set,
        items,
        modifiers,
    })
}

pub(super) fn append(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let mailbox = l.mailbox()?;
    let mut messages = Vec::new();
    while l.eat(b' ') {
        let flags = if l.at(b'(') {
            let f = flag_list(l)?;
            l.sp()?;
            f
        } else {
            Vec::new()
        };
        let date = if l.at(b'"') {
            let d = l.quoted()?;
            l.sp()?;
            Some(d)
        } else {
            None
        };
        if !(l.at(b'{') || l.at(b'~')) {
            return Err(l.err("message literal"));
        }
        let message = l.literal()?;
        messages.push(AppendMessage {
            flags,
            date,
            message,
        });
    }
    if messages.is_empty() {
        return Err(l.err("message literal"));
    }
    Ok(CommandBody::Append { mailbox, messages })
}
