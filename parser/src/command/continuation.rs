//! Lines a client sends in answer to a continuation request rather than as
//! a command: AUTHENTICATE's response lines ([`parse_auth_line`]) and the
//! SASL PLAIN credentials they carry ([`sasl_plain`]), and the `DONE` that
//! ends IDLE ([`is_idle_done`]).

use std::fmt;

use crate::lexer::{Lexer, ParseError, Span};

/// A line a client sends during AUTHENTICATE, read with
/// [`crate::frame::CommandFramer::next_line`] (RFC 9051 section 6.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthLine {
    /// `*`: the client cancels; answer with a tagged BAD.
    Cancel,
    /// A base64 response (possibly empty); the span excludes the CRLF.
    Response(Span),
}

/// Parses an AUTHENTICATE continuation line (CRLF included).
pub fn parse_auth_line(line: &[u8]) -> Result<AuthLine, ParseError> {
    let mut l = Lexer::new(line, 1);
    if l.eat(b'*') {
        l.end()?;
        return Ok(AuthLine::Cancel);
    }
    let start = l.pos;
    while l
        .peek()
        .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        l.pos += 1;
    }
    let span = Span { start, end: l.pos };
    l.end()?;
    Ok(AuthLine::Response(span))
}

/// The credentials of a SASL PLAIN response (RFC 4616). `Debug` never
/// shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslPlain {
    /// The identity to act as; empty when the same as `authcid`.
    pub authzid: Vec<u8>,
    /// The identity whose password is given.
    pub authcid: Vec<u8>,
    /// The password. Never log it.
    pub password: Vec<u8>,
}

impl fmt::Debug for SaslPlain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslPlain")
            .field("authzid", &String::from_utf8_lossy(&self.authzid))
            .field("authcid", &String::from_utf8_lossy(&self.authcid))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a SASL PLAIN response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Not valid base64.
    #[error("SASL response is not valid base64")]
    Base64,
    /// Not `authzid NUL authcid NUL password` with non-empty authcid and
    /// password.
    #[error("malformed SASL PLAIN message")]
    Malformed,
}

/// Decodes a base64 SASL PLAIN response, as given in AUTHENTICATE's
/// initial response or continuation line (`=` is an empty response).
pub fn sasl_plain(b64: &[u8]) -> Result<SaslPlain, SaslError> {
    use base64::Engine as _;
    let raw = if b64 == b"=" {
        Vec::new()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| SaslError::Base64)?
    };
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslError::Malformed);
    }
    Ok(SaslPlain {
        authzid: authzid.to_vec(),
        authcid: authcid.to_vec(),
        password: password.to_vec(),
    })
}

/// Whether `line` (CRLF included) is the `DONE` that ends IDLE (RFC 2177),
/// in any case.
pub fn is_idle_done(line: &[u8]) -> bool {
    line.len() == 6 && line[..4].eq_ignore_ascii_case(b"DONE") && &line[4..] == b"\r\n"
}
