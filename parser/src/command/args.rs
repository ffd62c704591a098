//! Argument pieces shared by several command families: a raw parenthesized
//! list, a set argument (a sequence or UID set, or `$`), and the arguments
//! of a command tandem does not act on.

use super::{CommandBody, SetArg};
use crate::lexer::{Lexer, ParseError, Span};

/// A parenthesized list, raw.
pub(super) fn list(l: &mut Lexer<'_>) -> Result<Span, ParseError> {
    if !l.at(b'(') {
        return Err(l.err("("));
    }
    l.value()
}

pub(super) fn set_arg(l: &mut Lexer<'_>) -> Result<SetArg, ParseError> {
    if l.at(b'$') {
        let start = l.pos;
        l.pos += 1;
        return Ok(SetArg::Saved {
            span: Span { start, end: l.pos },
        });
    }
    let (set, span) = l.seqset()?;
    Ok(SetArg::Set { set, span })
}

/// Arguments of a command tandem does not act on: well-formed tokens only.
pub(super) fn other(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    while l.eat(b' ') {
        l.value()?;
    }
    Ok(CommandBody::Other)
}
