//! One client session: a client connection and the backend connection made
//! for it, joined in one `select!` loop. Commands are framed and parsed
//! before they are forwarded, so the session can act on them; responses are
//! framed as they stream back, so capabilities can be filtered and large
//! literals pass through without being buffered.
//!
//! Ordering invariants:
//! - No byte of a command reaches the backend before the whole command
//!   (literals included) has been framed, checked against the limits and
//!   parsed.
//! - The proxy, not the backend, answers a client's synchronizing literal
//!   (`+`), after checking its size; the command is forwarded with
//!   non-synchronizing literals (the backend must offer LITERAL+).
//! - Capabilities tandem cannot keep consistent across nodes never reach
//!   the client, in the greeting, in CAPABILITY or in `[CAPABILITY]` codes.
//! - Credentials are never logged.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_parser::command::{is_idle_done, Command};
use tandem_parser::frame::{
    CommandFramer, CommandProgress, FrameError, Limits, LineProgress, ResponseFramer,
    ResponseProgress,
};
use tandem_parser::rewrite::apply;
use tandem_parser::seqset::Ranges;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{in_network, parse_cidr, Config};
use crate::replication::Replication;

mod capability;
mod deliver;
mod front;
mod internal;
mod maps;
mod mutate;
mod plan;
mod relay;
mod seen;
mod store;
mod translate;
mod view;

use crate::tls::{connect_backend, BackendTls, Stream};
pub use capability::is_filtered_capability;
use deliver::Policy;
use front::{tag_or_star, Door, Entering, Front};

/// What the session must do after a command was handled.
#[derive(Debug)]
enum Action {
    /// Nothing more.
    Done,
    /// Upgrade the client connection (STARTTLS accepted).
    StartTls { tag: String },
}

/// The mailbox a replicated session has selected, in canonical terms.
#[derive(Debug, Clone)]
struct Selected {
    /// The name as the client wrote it (decoded).
    name: String,
    /// The canonical UIDVALIDITY.
    uidvalidity: u32,
    /// EXAMINE.
    read_only: bool,
}

/// What kind of command is waiting for its tagged response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Login,
    Authenticate,
    Logout,
    /// SELECT or EXAMINE: a failure deselects.
    Select,
    /// UID SEARCH: its `* SEARCH` numbers are UIDs. `added_all`: tandem
    /// added ALL to its RETURN options (see `tandem_parser::rewrite::
    /// return_with_all`).
    UidSearch {
        added_all: bool,
    },
    Other,
}

/// Where the backend's response stream stands, between the segments the
/// framer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseStream {
    /// The next line starts a response.
    Between,
    /// Inside a response, after a literal: the rest goes to the client.
    Passing,
    /// Inside a response the client must not see (a message tandem has no
    /// canonical UID for): dropped up to its end.
    Withholding,
}

/// How the next client bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Commands.
    Commands,
    /// AUTHENTICATE continuation lines until the tagged response.
    Authenticating,
    /// IDLE: one `DONE` line.
    Idling { since: Instant },
}

struct Session {
    config: Arc<Config>,
    peer: SocketAddr,
    /// Whether the client connection is encrypted.
    secure: bool,
    /// Offered for STARTTLS when set.
    tls: Option<TlsAcceptor>,
    /// Whether LOGIN / AUTHENTICATE are allowed without TLS from this client.
    plaintext_ok: bool,
    framer: CommandFramer,
    rframer: ResponseFramer,
    mode: Mode,
    /// Offsets of the `}` of synchronizing literal announcements in the
    /// command being framed, where a `+` is inserted before forwarding.
    sync_literals: Vec<usize>,
    /// Commands forwarded and not yet answered: tag, kind, metric label,
    /// what their answer may hold.
    pending: VecDeque<(Vec<u8>, Pending, &'static str, Policy)>,
    /// A command the session answers itself: its tag and metric label.
    answering: Option<(Vec<u8>, &'static str)>,
    /// What the answer of the command the session answers itself may hold.
    answering_policy: Option<Policy>,
    /// The client's numbering of the selected mailbox (replicating only).
    view: view::View,
    /// What the answer of the STORE being answered needs.
    store: store::StoreAnswer,
    /// Untagged responses the backend sent during tandem's own commands,
    /// for the client before the tagged line of the command it is
    /// answering (with a STORE's answer, merged with it).
    held: Vec<Vec<u8>>,
    /// A FETCH that sets `\Seen` (a body without PEEK): its tag and the
    /// canonical UIDs it names that had no `\Seen` before it, replicated
    /// when its tagged OK comes and before the client gets it.
    seen: Option<(Vec<u8>, Ranges)>,
    /// The user named by the LOGIN or AUTHENTICATE in flight.
    candidate_user: Option<String>,
    user: Option<String>,
    /// Where the backend's response stream stands.
    stream: ResponseStream,
    logging_out: bool,
    /// Backend bytes not yet passed on.
    bbuf: Vec<u8>,
    /// Set when this node replicates: mutations go through the log and
    /// UIDs are rewritten both ways.
    rep: Option<Arc<Replication>>,
    selected: Option<Selected>,
    /// Whether the user's INBOX is known to exist canonically.
    inbox_ready: bool,
    /// The backend's hierarchy separator, once asked.
    separator: Option<Option<char>>,
    /// Counter for the session's own commands to the backend.
    internal: u64,
    selected_cache: std::sync::Mutex<maps::SelectedCache>,
    commands: u64,
    bytes_in: u64,
    bytes_out: u64,
}

/// Why a session ended early.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("client closed the connection")]
    ClientClosed,
    #[error("backend closed the connection")]
    BackendClosed,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
}

/// Serves one client until it logs out, breaks a limit, times out, or the
/// server shuts down.
pub async fn serve(
    mut client: Stream,
    peer: SocketAddr,
    config: Arc<Config>,
    tls: Option<TlsAcceptor>,
    backend_tls: Option<BackendTls>,
    replication: Option<Arc<Replication>>,
    mut stop: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let Some(backend_cfg) = config.backend() else {
        return;
    };
    let mut backend = match connect_backend(backend_cfg, backend_tls.as_ref()).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(client = %peer, error = %e, "backend unreachable");
            let _ = client
                .write_all(b"* BYE [UNAVAILABLE] Mail backend unavailable, try again later\r\n")
                .await;
            return;
        }
    };

    let limits = Limits {
        max_line: config.limits.max_line_bytes as usize,
        max_literal: config.limits.max_literal_bytes,
        max_nonsync_literal: config.limits.max_literal_bytes,
        max_message: config.limits.max_literal_bytes.saturating_mul(4),
    };
    let plaintext_ok = match &config.tls {
        Some(t) if t.require_tls_for_login => t
            .plaintext_networks
            .iter()
            .filter_map(|n| parse_cidr(n))
            .any(|net| in_network(peer.ip(), net)),
        _ => true,
    };
    let mut s = Session {
        config: config.clone(),
        peer,
        secure: client.is_tls(),
        tls,
        plaintext_ok,
        framer: CommandFramer::new(limits),
        rframer: ResponseFramer::new(Limits::responses()),
        mode: Mode::Commands,
        sync_literals: Vec::new(),
        pending: VecDeque::new(),
        answering: None,
        answering_policy: None,
        view: view::View::default(),
        store: store::StoreAnswer::default(),
        held: Vec::new(),
        seen: None,
        candidate_user: None,
        user: None,
        stream: ResponseStream::Between,
        logging_out: false,
        bbuf: Vec::new(),
        rep: replication,
        selected: None,
        inbox_ready: false,
        separator: None,
        internal: 0,
        selected_cache: std::sync::Mutex::default(),
        commands: 0,
        bytes_in: 0,
        bytes_out: 0,
    };
    let result = s.run(&mut client, &mut backend, &mut stop).await;
    let _ = client.flush().await;
    tracing::info!(
        node = s.config.node.id,
        client = %peer,
        user = s.user.as_deref().unwrap_or("-"),
        seconds = started.elapsed().as_secs_f64(),
        commands = s.commands,
        bytes_in = s.bytes_in,
        bytes_out = s.bytes_out,
        end = match &result { Ok(()) => "logout".to_string(), Err(e) => e.to_string() },
        "session ended"
    );
}

impl Session {
    async fn run(
        &mut self,
        client: &mut Stream,
        backend: &mut Stream,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), End> {
        let command_timeout = self.config.backend().map(|b| b.command_timeout());
        let command_timeout = command_timeout.unwrap_or(Duration::from_secs(30));

        self.handshake(client, backend, command_timeout).await?;

        // Small fixed read buffers; the frame buffers grow only while a
        // command or response is in flight (memory per idle client counts).
        let mut cbuf: Vec<u8> = Vec::new();
        let mut cread = vec![0u8; 4 * 1024];
        let mut bread = vec![0u8; 16 * 1024];
        let login_deadline =
            Instant::now() + Duration::from_secs(self.config.limits.login_timeout_secs);
        let autologout = Duration::from_secs(self.config.limits.idle_timeout_secs);
        let idle_limit = Duration::from_secs(self.config.limits.idle_command_timeout_secs);
        let mut last_activity = Instant::now();
        let mut last_backend = Instant::now();

        loop {
            // Backend bytes already buffered (e.g. after the ID reply).
            self.pump_backend(client).await?;
            // Give back what a large command or response left behind.
            for buf in [&mut cbuf, &mut self.bbuf] {
                if buf.capacity() > 64 * 1024 && buf.len() < 1024 {
                    buf.shrink_to(4 * 1024);
                }
            }
            if self.logging_out && self.pending.is_empty() {
                return Ok(());
            }
            let deadline = match self.mode {
                _ if self.user.is_none() => login_deadline,
                Mode::Idling { since } => since + idle_limit,
                _ => last_activity + autologout,
            };
            // A command in flight and a silent backend: it is hung or gone.
            let awaiting_backend = !self.pending.is_empty() && self.mode == Mode::Commands;
            let backend_deadline = last_backend.max(last_activity) + command_timeout;
            tokio::select! {
                n = client.read(&mut cread) => {
                    let n = n?;
                    if n == 0 {
                        return Err(End::ClientClosed);
                    }
                    self.bytes_in += n as u64;
                    last_activity = Instant::now();
                    cbuf.extend_from_slice(&cread[..n]);
                    self.pump_client(&mut cbuf, client, backend).await?;
                }
                n = backend.read(&mut bread) => {
                    let n = n?;
                    if n == 0 {
                        self.pump_backend(client).await?;
                        if !self.logging_out {
                            let _ = client.write_all(b"* BYE [UNAVAILABLE] Mail backend closed the connection\r\n").await;
                        }
                        return if self.logging_out { Ok(()) } else { Err(End::BackendClosed) };
                    }
                    self.bbuf.extend_from_slice(&bread[..n]);
                    last_backend = Instant::now();
                }
                () = tokio::time::sleep_until(backend_deadline.into()), if awaiting_backend => {
                    let mut out = Vec::new();
                    for (tag, ..) in self.pending.drain(..) {
                        out.extend_from_slice(&tag);
                        out.extend_from_slice(b" NO [UNAVAILABLE] Mail backend did not answer in time\r\n");
                    }
                    out.extend_from_slice(b"* BYE [UNAVAILABLE] Mail backend not responding\r\n");
                    let _ = self.write_client(client, &out).await;
                    return Err(End::Protocol("backend did not answer in time".to_string()));
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    let why: &[u8] = match self.mode {
                        _ if self.user.is_none() => b"* BYE Login timeout\r\n",
                        Mode::Idling { .. } => b"* BYE IDLE lasted too long\r\n",
                        _ => b"* BYE Autologout; idle for too long\r\n",
                    };
                    client.write_all(why).await?;
                    return Err(End::Protocol("timeout".to_string()));
                }
                changed = stop.changed(), if self.pending.is_empty() && self.mode == Mode::Commands => {
                    if changed.is_err() || *stop.borrow() {
                        client.write_all(b"* BYE Server shutting down, reconnect later\r\n").await?;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Passes the backend's greeting on once the backend was told, with
    /// ID, the client's address (so it logs and rate-limits the real
    /// client; needs login_trusted_networks).
    async fn handshake(
        &mut self,
        client: &mut Stream,
        backend: &mut Stream,
        command_timeout: Duration,
    ) -> Result<(), End> {
        let mut bbuf = std::mem::take(&mut self.bbuf);
        let mut handshake = ResponseFramer::new(Limits {
            max_message: 1024 * 1024,
            ..Limits::responses()
        });
        let greeting = read_response(backend, &mut bbuf, &mut handshake, command_timeout).await?;
        let welcome = tandem_parser::reply::Reply::parse(&greeting)
            .is_ok_and(|r| r.tag().is_none() && r.status() == tandem_parser::response::Status::Ok);
        if !welcome {
            client
                .write_all(b"* BYE [UNAVAILABLE] Mail backend refused the connection\r\n")
                .await?;
            return Err(End::Protocol("backend greeting is not OK".to_string()));
        }
        let id = format!(
            "tandem-id ID (\"x-originating-ip\" \"{}\" \"x-originating-port\" \"{}\")\r\n",
            self.peer.ip(),
            self.peer.port()
        );
        backend.write_all(id.as_bytes()).await?;
        loop {
            let line = read_response(backend, &mut bbuf, &mut handshake, command_timeout).await?;
            if tandem_parser::reply::tag(&line) == Some(b"tandem-id") {
                break;
            }
        }
        self.bbuf = bbuf;
        let greeting = self.filter_single(&greeting);
        client.write_all(&greeting).await?;
        self.bytes_out += greeting.len() as u64;

        Ok(())
    }

    /// Frames and handles every complete client command in `cbuf`.
    async fn pump_client(
        &mut self,
        cbuf: &mut Vec<u8>,
        client: &mut Stream,
        backend: &mut Stream,
    ) -> Result<(), End> {
        loop {
            match self.mode {
                Mode::Authenticating | Mode::Idling { .. } => {
                    let len = match self.framer.next_line(cbuf) {
                        Ok(LineProgress::Incomplete) => return Ok(()),
                        Ok(LineProgress::Line { len }) => len,
                        Err(e) => return self.frame_error(e, client).await,
                    };
                    let line: Vec<u8> = cbuf.drain(..len).collect();
                    if self.mode == Mode::Authenticating {
                        if let Some(user) =
                            front::plain_user(line.strip_suffix(b"\r\n").unwrap_or(&line))
                        {
                            self.candidate_user = Some(user);
                        }
                    } else if is_idle_done(&line) {
                        self.mode = Mode::Commands;
                    }
                    backend.write_all(&line).await?;
                }
                Mode::Commands => {
                    let progress = match self.framer.next(cbuf) {
                        Ok(p) => p,
                        Err(e) => {
                            self.sync_literals.clear();
                            if let Some(discard) = e.discard() {
                                crate::metrics::count_limit("literal");
                                cbuf.drain(..discard.min(cbuf.len()));
                                let msg = format!("{} NO [TOOBIG] {}\r\n", tag_or_star(e.tag()), e);
                                client.write_all(msg.as_bytes()).await?;
                                continue;
                            }
                            return self.frame_error(e, client).await;
                        }
                    };
                    match progress {
                        CommandProgress::Incomplete => return Ok(()),
                        CommandProgress::LiteralAnnounced(ann) => {
                            if ann.literal.synchronizing {
                                self.framer.accept_literal();
                                // "}" sits before the CRLF that ends the announcement.
                                self.sync_literals.push(ann.data_start - 3);
                                client.write_all(b"+ Ready for literal data\r\n").await?;
                            }
                        }
                        CommandProgress::Complete { len } => {
                            let marks = std::mem::take(&mut self.sync_literals);
                            self.commands += 1;
                            // Parsed and forwarded from the buffer itself: a
                            // message body is not copied on its way through.
                            let action = self
                                .handle_command(&cbuf[..len], &marks, client, backend)
                                .await?;
                            cbuf.drain(..len);
                            if let Action::StartTls { tag } = action {
                                self.start_tls(&tag, cbuf, client).await?;
                            }
                        }
                    }
                }
            }
        }
    }

    async fn frame_error<S>(&mut self, e: FrameError, client: &mut S) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        let code = match e {
            FrameError::LiteralTooBig { .. } | FrameError::MessageTooBig { .. } => {
                crate::metrics::count_limit("literal");
                "[TOOBIG] "
            }
            FrameError::LineTooLong { .. } => {
                crate::metrics::count_limit("line");
                ""
            }
            _ => "",
        };
        let msg = format!("{} BAD {code}{e}; closing\r\n", tag_or_star(e.tag()));
        client.write_all(msg.as_bytes()).await?;
        client
            .write_all(b"* BYE Protocol error, closing the connection\r\n")
            .await?;
        Err(End::Protocol(e.to_string()))
    }

    async fn handle_command<S>(
        &mut self,
        raw: &[u8],
        marks: &[usize],
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<Action, End>
    where
        S: AsyncWrite + Unpin,
    {
        let cmd = match Command::parse(raw) {
            Ok(c) => c,
            Err(e) => {
                let tag = front::leading_tag(raw);
                let tag = front::tag_or_star(&tag);
                let msg = format!("{tag} BAD Command not understood: {e}\r\n");
                client.write_all(msg.as_bytes()).await?;
                return Ok(Action::Done);
            }
        };
        let tag = cmd.tag().to_vec();
        let kind = match front::door(&cmd, raw, self.front()) {
            Door::Answer(text) => {
                client.write_all(text.as_bytes()).await?;
                return Ok(Action::Done);
            }
            Door::StartTls => {
                let tag = String::from_utf8_lossy(&tag).to_string();
                return Ok(Action::StartTls { tag });
            }
            Door::Enable(line) => {
                self.pending
                    .push_back((tag, Pending::Other, "ENABLE", Policy::default()));
                backend.write_all(&line).await?;
                return Ok(Action::Done);
            }
            Door::Pass {
                kind,
                candidate,
                entering,
            } => {
                if let Some(user) = candidate {
                    self.candidate_user = user;
                }
                match entering {
                    Some(Entering::Authenticating) => self.mode = Mode::Authenticating,
                    Some(Entering::Idle) => {
                        self.mode = Mode::Idling {
                            since: Instant::now(),
                        }
                    }
                    None => {}
                }
                kind
            }
        };
        self.forward(&cmd, marks, kind, client, backend).await?;
        Ok(Action::Done)
    }

    /// Sends a command that passed the front door on: a replicating
    /// session's mutation through the log, anything else to the backend
    /// (its UID sets made local).
    async fn forward<S>(
        &mut self,
        cmd: &Command<'_>,
        marks: &[usize],
        mut kind: Pending,
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        let raw = cmd.buf;
        let tag = cmd.tag().to_vec();
        let label = crate::metrics::command_label(cmd.name());
        let policy = Policy::of(cmd);
        if self.rep.is_some() && self.user.is_some() {
            self.answering = Some((tag.clone(), label));
            self.answering_policy = Some(policy);
            if cmd.is_mutation() {
                self.ensure_inbox().await;
                self.drain(client, backend).await?;
                let done = self.mutation(cmd, client, backend).await;
                self.answering = None;
                self.answering_policy = None;
                return done;
            }
            let translated = self.translate(cmd, client, backend).await;
            // What tandem's own commands brought, before the client's
            // command goes on (its answer must follow it).
            let flushed = self.flush_held(client).await;
            self.answering = None;
            self.answering_policy = None;
            let translated = translated?;
            flushed?;
            let Some((edits, k)) = translated else {
                return Ok(());
            };
            if kind == Pending::Other {
                kind = k;
            }
            if !edits.is_empty() {
                let rewritten = apply(raw, &edits);
                let marks = front::shifted_marks(marks, &edits);
                self.pending.push_back((tag, kind, label, policy));
                for piece in front::nonsync_pieces(&rewritten, &marks) {
                    backend.write_all(piece).await?;
                }
                return Ok(());
            }
        }
        self.pending.push_back((tag, kind, label, policy));
        for piece in front::nonsync_pieces(raw, marks) {
            backend.write_all(piece).await?;
        }
        Ok(())
    }

    /// What the front door knows of the client connection.
    fn front(&self) -> Front {
        Front {
            tls_offered: self.tls.is_some(),
            secure: self.secure,
            plaintext_ok: self.plaintext_ok,
        }
    }

    /// Answers STARTTLS and upgrades the client connection. Bytes the
    /// client sent after STARTTLS, before the handshake, would be taken as
    /// if they came over TLS: that is an injection attempt (CVE-2011-0411
    /// and kin), so the connection is closed instead.
    async fn start_tls(&mut self, tag: &str, cbuf: &[u8], client: &mut Stream) -> Result<(), End> {
        if !cbuf.is_empty() {
            client
                .write_all(b"* BYE Data after STARTTLS before the TLS handshake\r\n")
                .await?;
            return Err(End::Protocol("bytes pipelined after STARTTLS".to_string()));
        }
        let Some(acceptor) = self.tls.clone() else {
            return Err(End::Protocol("STARTTLS without TLS".to_string()));
        };
        client
            .write_all(format!("{tag} OK Begin TLS negotiation now\r\n").as_bytes())
            .await?;
        client.flush().await?;
        let Stream::Plain(tcp) = std::mem::replace(client, Stream::Upgrading) else {
            return Err(End::Protocol("STARTTLS on a TLS connection".to_string()));
        };
        let handshake = Duration::from_secs(self.config.limits.login_timeout_secs);
        match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                *client = Stream::Tls(Box::new(tokio_rustls::TlsStream::Server(tls)));
                self.secure = true;
                Ok(())
            }
            Ok(Err(e)) => Err(End::Protocol(format!("TLS handshake failed: {e}"))),
            Err(_) => Err(End::Protocol("TLS handshake timed out".to_string())),
        }
    }
}

/// Reads one whole response from the backend (greeting, ID reply) with a
/// whole-response framer, keeping any bytes after it in `buf`.
async fn read_response(
    backend: &mut Stream,
    buf: &mut Vec<u8>,
    framer: &mut ResponseFramer,
    timeout: Duration,
) -> Result<Vec<u8>, End> {
    let fut = async {
        let mut chunk = [0u8; 4096];
        loop {
            match framer.next(buf) {
                Ok(ResponseProgress::Complete { len }) => return Ok(buf.drain(..len).collect()),
                Ok(ResponseProgress::Incomplete) => {}
                Err(e) => return Err(End::Protocol(format!("backend: {e}"))),
            }
            let n = backend.read(&mut chunk).await?;
            if n == 0 {
                return Err(End::BackendClosed);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| End::Protocol("backend did not answer in time".to_string()))?
}
