//! What a message must look like before tandem replicates it.
//!
//! Every node stores every replicated message in its own backend, and a
//! cluster may mix Dovecot and Cyrus nodes. A message one backend takes and
//! another refuses would leave the nodes disagreeing, so once a Cyrus node
//! is in the cluster, every node refuses what Cyrus refuses (the proxy's
//! state machine decides; see its `Op::RegisterBackend`). Dovecot 2.3
//! stores anything; Cyrus IMAP 3.6 refuses (measured
//! on Debian's 3.6.1 with a raw-socket APPEND of each case; the cases are
//! replayed against a real Cyrus by `proxy/tests/cyrus.rs`):
//! - an empty message (`Zero-length message literal`);
//! - a NUL anywhere, even in a `~{n}` literal;
//! - a bare LF (not after CR) anywhere; a bare CR is fine;
//! - in the header section (up to the first line that starts with CR, or
//!   the end), a line that does not start with SP or HT (a continuation,
//!   even as the first line) nor with `From ` (an mbox separator) and has
//!   no field name: one or more bytes above SP (8-bit and DEL included)
//!   followed by `:`;
//! - a message that ends inside its header section without a line end.
//!
//! The texts are Cyrus's, so a client sees the same refusal whichever node
//! it talks to. The proxy's state machine applies these rules when it
//! replays the log: never change them in place (add a new version).

use std::fmt;

/// Why a message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// No bytes at all.
    Empty,
    /// A NUL byte.
    Nul,
    /// An LF not preceded by CR.
    BareNewline,
    /// A header line without a field name, or a header section cut short.
    InvalidHeader,
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Defect::Empty => "Zero-length message literal",
            Defect::Nul => "Message contains NUL characters",
            Defect::BareNewline => "Message contains bare newlines",
            Defect::InvalidHeader => "Message contains invalid header",
        })
    }
}

/// Checks `message` against the rules above; the first defect found, in
/// the order of the list (Cyrus reports NUL before a bare LF).
pub fn check(message: &[u8]) -> Result<(), Defect> {
    if message.is_empty() {
        return Err(Defect::Empty);
    }
    if memchr::memchr(0, message).is_some() {
        return Err(Defect::Nul);
    }
    for at in memchr::memchr_iter(b'\n', message) {
        if at == 0 || message[at - 1] != b'\r' {
            return Err(Defect::BareNewline);
        }
    }
    check_header(message)
}

fn check_header(message: &[u8]) -> Result<(), Defect> {
    let mut rest = message;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            // The message ends inside its header section.
            None => return Err(Defect::InvalidHeader),
        };
        match line.first() {
            // The blank line (or any line starting with CR) ends the header.
            Some(b'\r') | None => return Ok(()),
            Some(b' ' | b'\t') => {}
            _ if line.starts_with(b"From ") => {}
            _ => {
                let name_len = line.iter().position(|&b| b <= b' ' || b == b':');
                match name_len {
                    Some(n) if n > 0 && line[n] == b':' => {}
                    _ => return Err(Defect::InvalidHeader),
                }
            }
        }
        rest = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_messages_pass() {
        for m in [
            &b"Subject: a\r\n\r\nbody\r\n"[..],
            b"\r\nbody\r\n",
            b"\r\n",
            b"Subject: a\r\n",
            b" folded first\r\nSubject: a\r\n\r\nbody\r\n",
            b"Subject: a\r\n b\r\n\r\nbody\r\n",
            "Subject: caf\u{e9}\r\n\r\ncaf\u{e9}\r\n".as_bytes(),
            "Subj\u{e9}ct: a\r\n\r\n".as_bytes(),
            b"Sub\x7fject: a\r\n\r\n",
            b"From someone Mon Jan 1\r\nSubject: a\r\n\r\nbody\r\n",
            b"Subject: a\x01b\r\n\r\na\x01b\r\n",
            b"Subject: a\r\r\n\r\nbody\r\n",
            b"Subject: a\r\n\r\nbo\rdy\r\n",
            b"Subject: a\r\n\r\nno header rules here\r\n: x\r\n",
            b"Subject: a\r\n\r\nbody without line end",
        ] {
            assert_eq!(check(m), Ok(()), "{:?}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn each_defect_is_named() {
        for (m, defect) in [
            (&b""[..], Defect::Empty),
            (b"Subject: a\r\n\r\nbo\0dy\r\n", Defect::Nul),
            (b"Subject: a\0\r\n\r\n", Defect::Nul),
            (b"Subject: a\r\n\r\nbody\nmore\r\n", Defect::BareNewline),
            (b"Subject: a\n\nbody\n", Defect::BareNewline),
            (b"\nSubject: a\r\n", Defect::BareNewline),
            (b"Subject: a\r\n\nbody\r\n", Defect::BareNewline),
            (b"abc", Defect::InvalidHeader),
            (b"abc\r\n", Defect::InvalidHeader),
            (b"Subject: a", Defect::InvalidHeader),
            (b"Sub ject: a\r\n\r\n", Defect::InvalidHeader),
            (b"Subject : a\r\n\r\n", Defect::InvalidHeader),
            (b": a\r\n\r\n", Defect::InvalidHeader),
            (b"Sub\tject: a\r\n\r\n", Defect::InvalidHeader),
            (b"Subj\rect: a\r\n\r\n", Defect::InvalidHeader),
            (
                b"Subject: a\r\nbogus\r\n\r\nbody\r\n",
                Defect::InvalidHeader,
            ),
            (b"Subject: a\r\nTo: b", Defect::InvalidHeader),
        ] {
            assert_eq!(check(m), Err(defect), "{:?}", String::from_utf8_lossy(m));
        }
    }

    #[test]
    fn nul_is_reported_before_a_bare_newline() {
        assert_eq!(check(b"a\nb\0"), Err(Defect::Nul));
    }
}
