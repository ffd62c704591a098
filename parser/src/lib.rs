//! # tandem-parser
//!
//! The IMAP protocol logic of tandem: framing of a client or server byte
//! stream into commands and responses, parsing of the commands and responses
//! tandem acts on, the algebra of sequence and UID sets, and the rewriting of
//! UIDs between canonical and backend-local numbers.
//!
//! What this crate never does: it never touches a socket, a clock, a thread
//! or a file, and it never assumes its input is UTF-8. Bytes go in, values
//! and bytes come out; the caller (the proxy) owns all I/O. This keeps every
//! decision about the wire testable with plain byte strings and fuzzable.
//!
//! # Layout
//! - [`frame`]: where a command or a response ends in a byte stream, literals
//!   (`{n}`, `{n+}`, `~{n}`), limits, AUTHENTICATE / IDLE line mode, and a
//!   streaming mode that reports literal data as it arrives.
//! - [`seqset`]: sequence and UID sets as written ([`seqset::SequenceSet`],
//!   re-encoded byte for byte) and resolved ([`seqset::Ranges`]: membership,
//!   iteration, union, intersection, difference, compact encoding).
//! - [`uidmap`]: the [`uidmap::UidMap`] trait the proxy implements over its
//!   canonical <-> local maps, and how a set is carried through one (unmapped
//!   UIDs are dropped, never replaced).
//! - [`lexer`]: spans, string tokens and parse errors shared by the command
//!   and response parsers (the cursor itself is private).
//! - [`command`]: client commands tandem acts on, with the spans of their UID
//!   sets and mailbox names; everything else is `Other`, forwarded as is.
//! - [`response`]: server responses, with the spans of every UID, UID set,
//!   UIDVALIDITY and UIDNEXT they carry.
//! - [`rewrite`]: edits that translate those spans (commands canonical ->
//!   local, responses local -> canonical) and leave every other byte as is.
#![forbid(unsafe_code)]

pub mod command;
pub mod frame;
pub mod lexer;
pub mod response;
pub mod rewrite;
pub mod seqset;
pub mod uidmap;
