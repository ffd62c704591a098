//! A TCP relay that loses one answer on purpose.
//!
//! Put between a tandem node and its backend, it forwards both ways until it
//! is armed with a command word (`APPEND`, `UID MOVE`, ...). The next command
//! carrying that word reaches the backend and is carried out, but its tagged
//! answer is swallowed and the connection closed: what tandem sees when a
//! backend stops or a link breaks in the middle of a command. Only that one
//! command is cut; the relay then forwards normally again.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The relay; stops accepting when dropped.
#[derive(Debug)]
pub struct Cutter {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The command word the next cut waits for.
    armed: Mutex<Option<Vec<u8>>>,
    /// Answers swallowed so far.
    cuts: AtomicU64,
    stop: AtomicBool,
}

impl Cutter {
    /// Listens on a free 127.0.0.1 port and relays to `target`.
    pub fn start(target: SocketAddr) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cutter listens");
        let addr = listener.local_addr().expect("cutter address");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                relay(client, server, s.clone());
            }
        });
        Cutter { addr, shared }
    }

    /// Where to connect instead of the backend.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the answer of the next command that contains `word`.
    pub fn arm(&self, word: &str) {
        *self.shared.armed.lock().unwrap() = Some(word.as_bytes().to_vec());
    }

    /// How many answers were swallowed.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wakes the accepting thread up.
        let _ = TcpStream::connect(self.addr);
    }
}

/// The tag of the command line in `chunk` that contains `word`.
fn tag_of(chunk: &[u8], word: &[u8]) -> Option<Vec<u8>> {
    let at = chunk.windows(word.len()).position(|w| w == word)?;
    let start = chunk[..at]
        .windows(2)
        .rposition(|w| w == b"\r\n")
        .map_or(0, |p| p + 2);
    let line = &chunk[start..at];
    let end = line.iter().position(|&b| b == b' ')?;
    Some(line[..end].to_vec())
}

fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    // The tag whose answer is to be swallowed on this connection.
    let waiting: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let (w, sh) = (waiting.clone(), shared.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let mut armed = sh.armed.lock().unwrap();
            if let Some(word) = armed.as_ref() {
                if let Some(tag) = tag_of(chunk, word) {
                    *w.lock().unwrap() = Some(tag);
                    *armed = None;
                }
            }
            drop(armed);
            if s_write.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let (mut s_read, mut c_write) = (server, client);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match s_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            let cut = waiting.lock().unwrap().as_ref().is_some_and(|tag| {
                let mut line = b"\r\n".to_vec();
                line.extend_from_slice(tag);
                line.push(b' ');
                chunk.starts_with(&line[2..]) || chunk.windows(line.len()).any(|w| w == line)
            });
            if cut {
                shared.cuts.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if c_write.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = c_write.shutdown(Shutdown::Both);
        let _ = s_read.shutdown(Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    use super::tag_of;

    #[test]
    fn the_tag_is_that_of_the_line_with_the_word() {
        assert_eq!(
            tag_of(b"a1 NOOP\r\nt7 UID MOVE 1 Work\r\n", b"UID MOVE"),
            Some(b"t7".to_vec())
        );
        assert_eq!(
            tag_of(b"x APPEND INBOX {3+}\r\n", b"APPEND"),
            Some(b"x".to_vec())
        );
        assert_eq!(tag_of(b"x NOOP\r\n", b"APPEND"), None);
    }
}
