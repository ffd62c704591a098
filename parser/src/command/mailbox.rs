//! The commands on mailboxes: SELECT, EXAMINE, CREATE, DELETE, SUBSCRIBE,
//! UNSUBSCRIBE, RENAME, STATUS, and LIST / LSUB (checked, passed whole).

use super::args::list;
use super::CommandBody;
use crate::lexer::{Lexer, ParseError};

/// SELECT, EXAMINE or CREATE (`upper`, the name in upper case) mailbox
/// \[params\].
pub(super) fn select_examine_create(
    l: &mut Lexer<'_>,
    upper: &[u8],
) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let mailbox = l.mailbox()?;
    let params = if l.eat(b' ') { Some(list(l)?) } else { None };
    Ok(match upper {
        b"SELECT" => CommandBody::Select { mailbox, params },
        b"EXAMINE" => CommandBody::Examine { mailbox, params },
        _ => CommandBody::Create { mailbox, params },
    })
}

/// DELETE, SUBSCRIBE or UNSUBSCRIBE (`upper`, the name in upper case)
/// mailbox.
pub(super) fn delete_or_subscribe(
    l: &mut Lexer<'_>,
    upper: &[u8],
) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let mailbox = l.mailbox()?;
    Ok(match upper {
        b"DELETE" => CommandBody::Delete { mailbox },
        b"SUBSCRIBE" => CommandBody::Subscribe { mailbox },
        _ => CommandBody::Unsubscribe { mailbox },
    })
}

/// RENAME from to.
pub(super) fn rename(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let from = l.mailbox()?;
    l.sp()?;
    let to = l.mailbox()?;
    Ok(CommandBody::Rename { from, to })
}

/// STATUS mailbox (items).
pub(super) fn status(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let mailbox = l.mailbox()?;
    l.sp()?;
    let (items, _) = l.atom_list()?;
    Ok(CommandBody::Status { mailbox, items })
}

/// The arguments of LIST (RFC 9051, with RFC 5258's selection options,
/// several patterns and RETURN options) and LSUB, checked by their grammar
/// and passed on whole (`Other`): a pattern is a `list-mailbox`, so `[`,
/// `]`, `%` and `*` may stand unquoted (`LIST "" foo[bar`).
pub(super) fn list_args(l: &mut Lexer<'_>, lsub: bool) -> Result<CommandBody, ParseError> {
    l.sp()?;
    if !lsub && l.at(b'(') {
        list(l)?;
        l.sp()?;
    }
    l.mailbox()?;
    l.sp()?;
    if !lsub && l.eat(b'(') {
        loop {
            l.list_mailbox()?;
            if l.eat(b')') {
                break;
            }
            l.sp()?;
        }
    } else {
        l.list_mailbox()?;
    }
    if !lsub && l.eat(b' ') {
        if !l.keyword(b"RETURN") {
            return Err(l.err("RETURN"));
        }
        l.sp()?;
        list(l)?;
    }
    Ok(CommandBody::Other)
}
