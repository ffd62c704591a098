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
//! # Why hand-written, on bytes
//! The base is a hand-written parser over `&[u8]` (with `memchr` for line
//! ends), not `imap-codec` 2.0.0-alpha.10 nor `imap-proto`. What decided it:
//! - **Exact pass-through.** A proxy that rewrites UIDs must forward every
//!   other byte untouched. `imap-codec` builds an owned syntax tree and
//!   re-encodes it normalized (`uid store` becomes `UID STORE`), with no
//!   offsets back into the input; span-based rewriting would have to be built
//!   beside it anyway. Here every rewritable part carries its [`lexer::Span`]
//!   and [`rewrite`] splices only those spans.
//! - **Coverage of what Dovecot speaks.** `imap-codec` does not model
//!   MULTIAPPEND or ESEARCH, both of which tandem must understand to rewrite
//!   UIDs; `imap-proto` parses no commands at all.
//! - **Speed.** Framing skips literal data by its announced length without
//!   touching it and never re-scans a byte when input arrives in pieces; the
//!   parsers build no tree for what tandem does not rewrite (a FETCH body is
//!   a span, an ENVELOPE is skipped). See `benches/parse.rs`.
//! - **A small trusted base.** `memchr` and `base64` (SASL PLAIN) besides
//!   `thiserror`; the grammar subset is written down in each module and
//!   tested against RFC examples, real Dovecot lines, property tests and
//!   fuzz targets.
//!
//! The price: the grammar is written here, and a command outside it is
//! [`command::CommandBody::Other`] (forwarded as is) only if it is made of
//! well-formed tokens; a mutation tandem does not understand fully is a
//! parse error, which the proxy answers with BAD rather than forwarding.
//!
//! # How the proxy uses it
//! 1. Client bytes: [`frame::CommandFramer::next`] until `Complete { len }`,
//!    deciding on each synchronizing literal; limit errors say whether the
//!    stream can resume ([`frame::FrameError::discard`]).
//! 2. [`command::Command::parse`] the complete command; for a UID command,
//!    [`rewrite::rewrite_command`] with the canonical -> local map of the
//!    selected mailbox (e.g. a [`uidmap::RunMap`]) and its largest canonical
//!    UID for `*`.
//! 3. Backend bytes: [`frame::ResponseFramer::next`] (or `next_segment` to
//!    stream large literals, with [`response::Response::parse_fetch_head`]),
//!    [`response::Response::parse`], [`rewrite::rewrite_response`] with a
//!    [`rewrite::ResponseMaps`] for the command being answered.
//! 4. tandem's own conversations with its backend (the applier, adoption,
//!    `tandem check`, the session's internal commands): [`reply::Reply`]
//!    for the tagged line, and the accessors of [`reply`] on
//!    [`response::Response`] for the untagged ones.
//!
//! A UID without a mapping is never replaced by another: sets lose it,
//! single UIDs and the position-paired sets of APPENDUID / COPYUID make the
//! rewrite fail ([`rewrite::RewriteError`]); see [`uidmap`] and [`rewrite`].
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
//! - [`encode`]: writing the commands a node sends its own backend to apply
//!   a log entry (APPEND, UID STORE / COPY / MOVE / EXPUNGE, mailbox
//!   commands), with strings in the lightest form that holds them.
//! - [`response`]: server responses, with the spans of every UID, UID set,
//!   UIDVALIDITY and UIDNEXT they carry.
//! - [`reply`]: what tandem reads from a backend's answers to decide
//!   (an EXISTS count, a FETCH's UID, size, date and body, a LIST
//!   delimiter, a UIDVALIDITY) and [`reply::Reply`], a tagged completion
//!   kept owned with its status, code and text (APPENDUID, COPYUID).
//! - [`rewrite`]: edits that translate those spans (commands canonical ->
//!   local, responses local -> canonical) and leave every other byte as is.
//! - [`names`]: what a new mailbox name must look like to be replicated.
//! - [`message`]: what an APPENDed message must look like to be replicated
//!   (the strictest supported backend's rules, so no node refuses what
//!   another stored).
#![forbid(unsafe_code)]

pub mod command;
pub mod encode;
pub mod frame;
pub mod lexer;
pub mod message;
pub mod names;
pub mod reply;
pub mod response;
pub mod rewrite;
pub mod seqset;
pub mod uidmap;
