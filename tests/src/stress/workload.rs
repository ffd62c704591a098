//! One stress session: a thread with a blocking socket that picks random
//! commands from a seeded generator, using what its model knows (how many
//! messages, which UIDs) to aim them, and feeds every command, response and
//! disconnection to the model in the order they happened.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::model::{Cmd, Criteria, Event, FlagOp, Registry, Session, Set, Violation};
use super::parse::{hash_bytes, parse, Resp};
use super::{Rng, MAILBOXES};
use crate::USER_PASSWORD;

/// A mailbox this session keeps below this many messages (more EXPUNGE
/// and MOVE, fewer APPENDs, above it).
const FULL: u32 = 40;

/// What one session did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Commands completed (a tagged answer read).
    pub ops: u64,
    /// LOGINs answered OK.
    pub logins: u64,
    /// Tagged answers by status.
    pub answers: std::collections::BTreeMap<String, u64>,
    /// What the model found.
    pub violations: Vec<Violation>,
    /// Every event, when recording.
    pub events: Option<Vec<Event>>,
    /// Connections that could not be made.
    pub connect_failures: u64,
    /// Time from sending each command to its tagged answer, by
    /// [`Cmd::verb`]: count and total.
    pub time: std::collections::BTreeMap<&'static str, (u64, Duration)>,
}

/// A connection: writes commands, reads one response (line and literals)
/// at a time.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = self.reader.get_mut();
        s.write_all(bytes)?;
        s.flush()
    }

    fn read(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            if self.reader.read_until(b'\n', &mut out)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let Some(len) = announced_literal(&out[start..]) else {
                return Ok(out);
            };
            let at = out.len();
            out.resize(at + len, 0);
            self.reader.read_exact(&mut out[at..])?;
        }
    }

    /// Bytes the server sent that no command asked for yet.
    fn pending(&mut self) -> io::Result<bool> {
        if !self.reader.buffer().is_empty() {
            return Ok(true);
        }
        let s = self.reader.get_ref();
        s.set_nonblocking(true)?;
        let mut b = [0u8; 1];
        let r = s.peek(&mut b);
        s.set_nonblocking(false)?;
        match r {
            Ok(0) => Ok(false), // EOF: the next read says so
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn announced_literal(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}\r\n")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// One session of `user`, its `index`-th, against `addr`.
#[derive(Debug)]
pub struct Worker {
    user: &'static str,
    name: String,
    addr: SocketAddr,
    rng: Rng,
    model: Session,
    reg: Arc<Mutex<Registry>>,
    out: Outcome,
    tag: u64,
    appended: u64,
    /// The message of the APPEND [`Worker::choose`] picked.
    pending_message: Option<Vec<u8>>,
}

impl Worker {
    /// A session; `record` keeps every event (for replays).
    pub fn new(
        user: &'static str,
        index: usize,
        addr: SocketAddr,
        seed: u64,
        reg: Arc<Mutex<Registry>>,
        record: bool,
    ) -> Worker {
        let name = format!("{user}/{index}");
        let salt = (index as u64 + 1) * 7919 + if user == "bob" { 104_729 } else { 0 };
        Worker {
            user,
            model: Session::new(&name, user, &format!("$s{index}")),
            name,
            addr,
            rng: Rng::new(seed ^ salt),
            reg,
            out: Outcome {
                events: record.then(Vec::new),
                ..Outcome::default()
            },
            tag: 0,
            appended: 0,
            pending_message: None,
        }
    }

    /// Runs until `stop`, then returns what happened.
    pub fn run(mut self, stop: &AtomicBool) -> Outcome {
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut conn) = Conn::connect(self.addr) else {
                self.out.connect_failures += 1;
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            if let Err(e) = self.session(&mut conn, stop) {
                self.feed(Event::Closed(e.to_string()));
            }
        }
        self.out.violations = self.model.take_violations();
        self.out.answers = std::mem::take(&mut self.model.answers);
        self.out
    }

    fn feed(&mut self, event: Event) {
        {
            let mut reg = self.reg.lock().unwrap_or_else(|e| e.into_inner());
            self.model.feed(&event, &mut reg);
        }
        if let Some(events) = &mut self.out.events {
            events.push(event);
        }
    }

    /// One connection: LOGIN, random commands, LOGOUT now and then.
    fn session(&mut self, conn: &mut Conn, stop: &AtomicBool) -> io::Result<()> {
        let greeting = conn.read()?;
        self.feed(Event::Received(greeting));
        if self.exec(
            conn,
            Cmd::Login {
                user: self.user.into(),
            },
        )? != "OK"
        {
            std::thread::sleep(Duration::from_millis(100));
            return Ok(());
        }
        self.out.logins += 1;
        while !stop.load(Ordering::Relaxed) {
            for cmd in self.choose() {
                let logout = cmd == Cmd::Logout;
                self.exec(conn, cmd)?;
                if logout {
                    return Ok(());
                }
            }
        }
        self.exec(conn, Cmd::Logout).map(|_| ())
    }

    /// Sends one command, reads its answer; the tagged status.
    fn exec(&mut self, conn: &mut Conn, cmd: Cmd) -> io::Result<String> {
        // Anything the server sent since the last answer is outside any
        // command: the model says so. Now and then give it time to come.
        if self.rng.below(20) == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        while conn.pending()? {
            let r = conn.read()?;
            self.feed(Event::Received(r));
        }
        self.tag += 1;
        let tag = format!("S{}", self.tag);
        let kind = cmd.verb();
        let sent = std::time::Instant::now();
        let line = format!("{tag} {}\r\n", cmd.text(USER_PASSWORD));
        let literal = match &cmd {
            Cmd::Append { .. } => Some(self.pending_message.take().unwrap_or_default()),
            _ => None,
        };
        let idle = match cmd {
            Cmd::Idle { ms } => Some(ms),
            _ => None,
        };
        self.feed(Event::Sent {
            tag: tag.clone(),
            cmd,
        });
        conn.write(line.as_bytes())?;
        if literal.is_some() || idle.is_some() {
            // Up to the continuation (or an early tagged answer).
            loop {
                let r = conn.read()?;
                let resp = parse(&r);
                self.feed(Event::Received(r));
                match resp {
                    Resp::Continue => break,
                    Resp::Tagged { tag: t, status, .. } if t == tag => {
                        self.answered(kind, sent);
                        return Ok(status);
                    }
                    _ => {}
                }
            }
            if let Some(body) = literal {
                conn.write(&body)?;
                conn.write(b"\r\n")?;
            }
            if let Some(ms) = idle {
                std::thread::sleep(Duration::from_millis(ms));
                conn.write(b"DONE\r\n")?;
            }
        }
        loop {
            let r = conn.read()?;
            let resp = parse(&r);
            self.feed(Event::Received(r));
            if let Resp::Tagged { tag: t, status, .. } = resp {
                if t == tag {
                    self.answered(kind, sent);
                    return Ok(status);
                }
            }
        }
    }
}

impl Worker {
    /// Counts a command answered, and the time it took.
    fn answered(&mut self, kind: &'static str, sent: std::time::Instant) {
        self.out.ops += 1;
        let t = self.out.time.entry(kind).or_default();
        t.0 += 1;
        t.1 += sent.elapsed();
    }

    /// The next command or two (EXPUNGE comes after a STORE of \Deleted),
    /// aimed with what the model knows.
    fn choose(&mut self) -> Vec<Cmd> {
        let Some(mailbox) = self.model.selected().map(str::to_string) else {
            return vec![self.select()];
        };
        let n = self.model.count();
        let uids = self.model.known_uids();
        let keyword = self.model.keyword().to_string();
        let mut roll = self.rng.below(100);
        if n > FULL && roll < 20 {
            roll = 52 + self.rng.below(26); // expunge, move, search, copy
        }
        if n == 0 && (18..78).contains(&roll) {
            roll = 0;
        }
        match roll {
            0..=19 => {
                let to = if self.rng.below(10) < 7 {
                    mailbox
                } else {
                    self.other_mailbox(&mailbox)
                };
                vec![self.append(to)]
            }
            20..=31 => {
                let set = self.seq_set(n);
                let body = self.rng.below(3) == 0;
                vec![Cmd::Fetch {
                    uid: false,
                    set,
                    body,
                }]
            }
            32..=36 => match self.uid_set(&uids) {
                Some(set) => vec![Cmd::Fetch {
                    uid: true,
                    set,
                    body: self.rng.below(2) == 0,
                }],
                None => vec![Cmd::Noop],
            },
            37..=51 => {
                let by_uid = self.rng.below(3) == 0;
                let set = if by_uid {
                    self.uid_set(&uids)
                } else {
                    Some(self.seq_set(n))
                };
                let Some(set) = set else {
                    return vec![Cmd::Noop];
                };
                let mut flags = vec![keyword];
                if self.rng.below(3) == 0 {
                    flags.push("\\Flagged".into());
                }
                vec![Cmd::Store {
                    uid: by_uid,
                    set,
                    op: if self.rng.below(2) == 0 {
                        FlagOp::Add
                    } else {
                        FlagOp::Remove
                    },
                    flags,
                    silent: self.rng.below(8) == 0,
                }]
            }
            52..=57 => {
                let a = 1 + self.rng.below(u64::from(n)) as u32;
                let set = vec![(a, (a + self.rng.below(2) as u32).min(n))];
                vec![deleted(false, set), Cmd::Expunge]
            }
            58..=63 => match self.uid_set(&uids) {
                Some(set) => vec![deleted(true, set.clone()), Cmd::UidExpunge { set }],
                None => vec![Cmd::Noop],
            },
            64..=69 => {
                let criteria = match self.rng.below(3) {
                    0 => Criteria::All,
                    1 => Criteria::Flagged,
                    _ => Criteria::Keyword(keyword),
                };
                vec![Cmd::Search {
                    uid: self.rng.below(2) == 0,
                    criteria,
                }]
            }
            70..=77 => {
                let moving = self.rng.below(2) == 0;
                let to = self.other_mailbox(&mailbox);
                let by_uid = self.rng.below(3) == 0;
                let set = if by_uid {
                    self.uid_set(&uids)
                } else {
                    let a = 1 + self.rng.below(u64::from(n)) as u32;
                    Some(vec![(a, (a + self.rng.below(3) as u32).min(n))])
                };
                match set {
                    Some(set) => vec![Cmd::Copy {
                        uid: by_uid,
                        set,
                        to,
                        moving,
                    }],
                    None => vec![Cmd::Noop],
                }
            }
            78..=83 => vec![self.select()],
            84..=88 => vec![Cmd::Idle {
                ms: 20 + self.rng.below(280),
            }],
            89..=97 => vec![Cmd::Noop],
            _ => vec![Cmd::Logout],
        }
    }

    fn select(&mut self) -> Cmd {
        let i = match self.rng.below(10) {
            0..=5 => 0,
            6..=7 => 1,
            _ => 2,
        };
        Cmd::Select {
            mailbox: MAILBOXES[i].into(),
        }
    }

    fn other_mailbox(&mut self, not: &str) -> String {
        loop {
            let m = MAILBOXES[self.rng.below(MAILBOXES.len() as u64) as usize];
            if m != not {
                return m.into();
            }
        }
    }

    /// A range of sequence numbers within 1..=n (n > 0); now and then all.
    fn seq_set(&mut self, n: u32) -> Set {
        if self.rng.below(5) == 0 {
            return vec![(1, n)];
        }
        let a = 1 + self.rng.below(u64::from(n)) as u32;
        let b = (a + self.rng.below(5) as u32).min(n);
        vec![(a, b)]
    }

    /// A small range of UIDs starting at one the session knows.
    fn uid_set(&mut self, uids: &[u32]) -> Option<Set> {
        let &u = uids.get(self.rng.below(uids.len() as u64) as usize)?;
        Some(vec![(u, u + self.rng.below(4) as u32)])
    }

    /// An APPEND of a message no other APPEND sends: a random token in its
    /// subject and body, 0-2 KiB of filler.
    fn append(&mut self, mailbox: String) -> Cmd {
        self.appended += 1;
        let token = self.rng.next_u64();
        let mut m = format!(
            "From: stress@example.org\r\nTo: {user}@example.org\r\n\
             Subject: stress {name} #{n} {token:016x}\r\n\
             Message-ID: <{token:016x}.{n}@stress.example.org>\r\n\r\n\
             body {token:016x}\r\n",
            user = self.user,
            name = self.name,
            n = self.appended,
        );
        for _ in 0..self.rng.below(30) {
            m.push_str(&format!("{:0>62x}\r\n", self.rng.next_u64()));
        }
        let m = m.into_bytes();
        let cmd = Cmd::Append {
            mailbox,
            seen: self.rng.below(4) == 0,
            hash: hash_bytes(&m),
            size: m.len() as u64,
        };
        self.pending_message = Some(m);
        cmd
    }
}

/// `[UID] STORE set +FLAGS.SILENT (\Deleted)`
fn deleted(uid: bool, set: Set) -> Cmd {
    Cmd::Store {
        uid,
        set,
        op: FlagOp::Add,
        flags: vec!["\\Deleted".into()],
        silent: true,
    }
}
