//! Free ports on 127.0.0.1 that never collide with the demo's fixed ones.

use std::net::{TcpListener, UdpSocket};

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
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if !is_demo_port(port) {
            return port;
        }
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    loop {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = socket.local_addr().expect("local_addr").port();
        if !is_demo_port(port) {
            return port;
        }
    }
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
