//! Free ports on 127.0.0.1 that never collide with the demo's fixed ones.

use std::collections::HashSet;
use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;

/// Ports handed out by this process: never twice.
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port from 10000-32767, below Linux's ephemeral range (32768-60999),
/// so that no outgoing connection of any process takes it between the
/// moment it is picked and the moment the server binds it (`bind(":0")`
/// picks from the ephemeral range, and lost that race in CI). `free` says
/// whether it can be bound now.
fn pick(free: impl Fn(u16) -> bool) -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    // A per-process start spreads concurrent test binaries apart.
    let mut port = 10_000 + (std::process::id() % 22_000) as u16;
    for _ in 0..22_768 {
        port = if port >= 32_767 { 10_000 } else { port + 1 };
        if !is_demo_port(port) && !given.contains(&port) && free(port) {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port in 10000-32767");
}

/// True for the demo's fixed ports: node n (1..=9) uses n143, n144, n993,
/// n024, n090 and n700.
pub fn is_demo_port(port: u16) -> bool {
    (1000..10000).contains(&port) && {
        let rest = port % 1000;
        matches!(rest, 143 | 144 | 993 | 24 | 90 | 700)
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago. The caller binds it
/// soon; a server that then fails to bind should be retried with a new port.
pub fn free_tcp_port() -> u16 {
    pick(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    pick(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_ports_are_recognized() {
        for n in 1..=3u16 {
            for base in [143, 144, 993, 24, 90, 700] {
                assert!(is_demo_port(n * 1000 + base));
            }
        }
        assert!(!is_demo_port(143));
        assert!(!is_demo_port(40143 + 1));
    }

    #[test]
    fn free_ports_are_not_demo_ports() {
        for _ in 0..50 {
            assert!(!is_demo_port(free_tcp_port()));
            assert!(!is_demo_port(free_udp_port()));
        }
    }
}
