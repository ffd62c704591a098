//! What a new mailbox name (CREATE, the target of RENAME) must look like
//! before tandem replicates it.
//!
//! As with messages ([`crate::message`]), every node refuses what the
//! strictest supported backend refuses, so that no node's backend refuses a
//! mailbox another created. Measured with `CREATE` as a user on Dovecot 2.3
//! (Maildir, separator `.`) and Cyrus IMAP 3.6 (`altnamespace: yes`,
//! separator `.`); a name is refused if either refused it:
//! - empty, or longer than [`MAX_NAME_BYTES`] (Dovecot's Maildir keeps a
//!   whole name in one directory name: 254 bytes passed, 255 failed);
//! - a byte outside printable ASCII (names are modified UTF-7 on the wire);
//! - one of `! " % / ; < > \ ` { | }` (Cyrus), `/` being allowed when it
//!   is the separator;
//! - `~` first (Dovecot);
//! - an empty level: the separator first, last or twice in a row
//!   (Dovecot);
//! - `Other Users` or `Shared Folders` as the first level (Cyrus's
//!   namespaces for other users' and shared mailboxes).
//!
//! `&` is left to the backends: both refuse the same malformed modified
//! UTF-7 (`&AOk`, `&AOk-&AOk-`) and take the same well-formed one.

use std::fmt;

/// Longest mailbox name, in bytes as the client sends it.
pub const MAX_NAME_BYTES: usize = 254;

/// Characters Cyrus 3.6 refuses in a name (measured one by one; `&` is
/// modified UTF-7's shift and is checked by the backends).
const REFUSED: &[u8] = b"!\"%/;<>\\`{|}";

/// Cyrus's names for the other users' and the shared namespaces.
const RESERVED_FIRST_LEVELS: [&[u8]; 2] = [b"Other Users", b"Shared Folders"];

/// Why a name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameDefect {
    /// No bytes.
    Empty,
    /// Over [`MAX_NAME_BYTES`].
    TooLong,
    /// A byte outside printable ASCII.
    NotAscii,
    /// A character some backend refuses.
    Character(u8),
    /// `~` first.
    Tilde,
    /// An empty level.
    EmptyLevel,
    /// A name some backend keeps for its own namespaces.
    Reserved,
}

impl fmt::Display for NameDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameDefect::Empty => f.write_str("Invalid mailbox name: empty"),
            NameDefect::TooLong => write!(f, "Mailbox name too long (over {MAX_NAME_BYTES} bytes)"),
            NameDefect::NotAscii => {
                f.write_str("Invalid mailbox name: not modified UTF-7 (RFC 3501 5.1.3)")
            }
            NameDefect::Character(c) => {
                write!(f, "Invalid mailbox name: '{}' is not allowed", *c as char)
            }
            NameDefect::Tilde => f.write_str("Invalid mailbox name: begins with '~'"),
            NameDefect::EmptyLevel => f.write_str(
                "Invalid mailbox name: begins or ends with the hierarchy separator, or has \
                 two in a row",
            ),
            NameDefect::Reserved => f.write_str(
                "Invalid mailbox name: \"Other Users\" and \"Shared Folders\" are reserved",
            ),
        }
    }
}

/// Checks a new mailbox `name` (bytes as the client sent them, a trailing
/// separator already removed) under hierarchy `separator`.
pub fn check_new_name(name: &[u8], separator: Option<u8>) -> Result<(), NameDefect> {
    if name.is_empty() {
        return Err(NameDefect::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameDefect::TooLong);
    }
    if name.iter().any(|b| !(0x20..0x7f).contains(b)) {
        return Err(NameDefect::NotAscii);
    }
    if let Some(&c) = name
        .iter()
        .find(|&&b| REFUSED.contains(&b) && Some(b) != separator)
    {
        return Err(NameDefect::Character(c));
    }
    if name[0] == b'~' {
        return Err(NameDefect::Tilde);
    }
    let first_level = match separator {
        Some(sep) => {
            if name.split(|&b| b == sep).any(<[u8]>::is_empty) {
                return Err(NameDefect::EmptyLevel);
            }
            name.split(|&b| b == sep).next().unwrap_or(name)
        }
        None => name,
    };
    if RESERVED_FIRST_LEVELS.contains(&first_level) {
        return Err(NameDefect::Reserved);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_both_backends_take_pass() {
        for name in [
            &b"Archive"[..],
            b"a b",
            b"x.y.z",
            b"INBOX.x",
            b"&AOk-",
            b"&-",
            b"a*b",
            b"a:b",
            b"#news",
            b"-dash",
            b"x~",
            b"x.~a",
            b"other users",
            b"Other Users2",
            b"q.Other Users",
            b"user.bob",
        ] {
            assert_eq!(
                check_new_name(name, Some(b'.')),
                Ok(()),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        assert_eq!(check_new_name(&[b'L'; MAX_NAME_BYTES], Some(b'.')), Ok(()));
        assert_eq!(check_new_name(b"a/b", Some(b'/')), Ok(()));
        assert_eq!(check_new_name(b"a.b", Some(b'/')), Ok(()));
    }

    #[test]
    fn names_either_backend_refuses_are_refused() {
        for (name, defect) in [
            (&b""[..], NameDefect::Empty),
            (b"a/b", NameDefect::Character(b'/')),
            (b"a;b", NameDefect::Character(b';')),
            (b"a%b", NameDefect::Character(b'%')),
            (b"a\\b", NameDefect::Character(b'\\')),
            (b"a\"b", NameDefect::Character(b'"')),
            (b"a\tb", NameDefect::NotAscii),
            (b"a\x7fb", NameDefect::NotAscii),
            ("\u{c4}".as_bytes(), NameDefect::NotAscii),
            (b"~a", NameDefect::Tilde),
            (b"~", NameDefect::Tilde),
            (b".a", NameDefect::EmptyLevel),
            (b"a..b", NameDefect::EmptyLevel),
            (b"y.", NameDefect::EmptyLevel),
            (b"Other Users", NameDefect::Reserved),
            (b"Other Users.x", NameDefect::Reserved),
            (b"Shared Folders.x", NameDefect::Reserved),
        ] {
            assert_eq!(
                check_new_name(name, Some(b'.')),
                Err(defect),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        assert_eq!(
            check_new_name(&[b'L'; MAX_NAME_BYTES + 1], Some(b'.')),
            Err(NameDefect::TooLong)
        );
        assert_eq!(
            check_new_name(b"a//b", Some(b'/')),
            Err(NameDefect::EmptyLevel)
        );
    }
}
