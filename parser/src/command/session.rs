//! The commands of the connection rather than of a mailbox: LOGIN,
//! AUTHENTICATE, ENABLE, ID and COMPRESS. (The commands without arguments,
//! CAPABILITY, NOOP, LOGOUT, STARTTLS, ..., need no parser of their own.)

use super::CommandBody;
use crate::lexer::{Lexer, ParseError};

/// LOGIN user password.
pub(super) fn login(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let user = l.astring()?;
    l.sp()?;
    let password = l.astring()?;
    Ok(CommandBody::Login { user, password })
}

/// AUTHENTICATE mechanism \[initial-response\].
pub(super) fn authenticate(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let mechanism = l.atom()?;
    let initial = if l.eat(b' ') {
        Some(l.take_while1(
            |b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='),
            "base64",
        )?)
    } else {
        None
    };
    Ok(CommandBody::Authenticate { mechanism, initial })
}

/// ENABLE capability...: at least one.
pub(super) fn enable(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    let mut capabilities = Vec::new();
    while l.eat(b' ') {
        capabilities.push(l.atom()?);
    }
    if capabilities.is_empty() {
        return Err(l.err("capability"));
    }
    Ok(CommandBody::Enable { capabilities })
}

/// ID params.
pub(super) fn id(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    let params = l.value()?;
    Ok(CommandBody::Id { params })
}

/// COMPRESS mechanism.
pub(super) fn compress(l: &mut Lexer<'_>) -> Result<CommandBody, ParseError> {
    l.sp()?;
    Ok(CommandBody::Compress {
        mechanism: l.atom()?,
    })
}
