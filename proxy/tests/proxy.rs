//! The proxy in front of a real Dovecot, and of a real Cyrus: what a client
//! sees through it, and what a bad client cannot do to it. Each bad-input
//! test also checks that a well-behaved client is still served afterwards.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{both_backends, start_proxy_for, start_proxy_with_command_timeout};
use tandem_tests::{Backend, BackendKind, ImapClient, Status};

fn message(marker: &str, size: usize) -> Vec<u8> {
    let mut m =
        format!("From: a@example.org\r\nTo: alice@example.org\r\nSubject: {marker}\r\n\r\n")
            .into_bytes();
    while m.len() < size {
        m.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n");
    }
    m
}

both_backends!(a_whole_session_through_the_proxy_looks_like_the_backend);
fn a_whole_session_through_the_proxy_looks_like_the_backend(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "");
    let mut c = ImapClient::login(proxy.addr, "alice", "demo");
    let r = c.append("INBOX", &message("one", 2000)).unwrap().ok();
    assert!(r.code("APPENDUID").is_some(), "{r:?}");
    c.append("INBOX", &message("two", 300)).unwrap().ok();
    let r = c.command("SELECT INBOX").unwrap().ok();
    assert_eq!(r.exists(), Some(2));
    let r = c.command("FETCH 1:2 (UID FLAGS BODY.PEEK[])").unwrap().ok();
    let body = r.lines().join("\n");
    assert!(
        body.contains("Subject: one") && body.contains("Subject: two"),
        "{body}"
    );
    let r = c.command("UID SEARCH SUBJECT two").unwrap().ok();
    assert!(r.lines().iter().any(|l| l == "* SEARCH 2"), "{r:?}");
    c.command("STORE 1 +FLAGS (\\Flagged)").unwrap().ok();
    c.command("CREATE Archive").unwrap().ok();
    let r = c.command("UID COPY 1 Archive").unwrap().ok();
    assert!(r.code("COPYUID").is_some(), "{r:?}");
    c.command("UID MOVE 2 Archive").unwrap().ok();
    let r = c.command("STATUS Archive (MESSAGES)").unwrap().ok();
    assert!(r.lines().iter().any(|l| l.contains("MESSAGES 2")), "{r:?}");
    let r = c.command("LOGOUT").unwrap().ok();
    assert!(r.lines().iter().any(|l| l.starts_with("* BYE")));

    // The same mail, straight from the backend.
    let mut d = backend.login("alice");
    assert_eq!(d.command("SELECT Archive").unwrap().ok().exists(), Some(2));
}

both_backends!(capabilities_are_filtered_and_enable_of_a_filtered_extension_does_nothing);
fn capabilities_are_filtered_and_enable_of_a_filtered_extension_does_nothing(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "[limits]\nmax_literal_bytes = 1048576\n");
    let mut c = ImapClient::connect(proxy.addr).unwrap();
    assert!(c.greeting.contains("IMAP4rev1"), "{}", c.greeting);
    assert!(c.greeting.contains("APPENDLIMIT=1048576"), "{}", c.greeting);
    assert!(!c.greeting.contains("STARTTLS"), "{}", c.greeting);
    c.command("LOGIN alice demo").unwrap().ok();
    let r = c.command("CAPABILITY").unwrap().ok();
    let caps = r.lines().join(" ");
    for hidden in [
        "CONDSTORE",
        "QRESYNC",
        "SORT",
        "THREAD=",
        "COMPRESS",
        "AUTH=LOGIN",
    ] {
        assert!(!caps.contains(hidden), "{hidden} leaked: {caps}");
    }
    for kept in ["UIDPLUS", "MOVE", "IDLE", "APPENDLIMIT=1048576"] {
        assert!(caps.contains(kept), "{kept} missing: {caps}");
    }
    let r = c.command("ENABLE CONDSTORE").unwrap().ok();
    assert_eq!(r.lines(), vec!["* ENABLED".to_string()]);
    // CONDSTORE was not enabled on the backend: no MODSEQ appears.
    c.append("INBOX", &message("m", 100)).unwrap().ok();
    c.command("SELECT INBOX").unwrap().ok();
    let r = c.command("FETCH 1 (FLAGS)").unwrap().ok();
    assert!(!r.lines().join(" ").contains("MODSEQ"), "{r:?}");
    let r = c.command("COMPRESS DEFLATE").unwrap();
    assert_eq!(r.status, Status::No);
    let r = c.command("AUTHENTICATE CRAM-MD5").unwrap();
    assert_eq!(r.status, Status::No);
}

both_backends!(idle_and_authenticate_plain_pass_through);
fn idle_and_authenticate_plain_pass_through(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "");
    let mut c = ImapClient::connect(proxy.addr).unwrap();
    c.authenticate_plain("", "bob", "demo").unwrap().ok();
    c.command("SELECT INBOX").unwrap().ok();
    c.write(b"i1 IDLE\r\n").unwrap();
    let cont = c.read_response().unwrap();
    assert!(cont.starts_with(b"+"), "{}", String::from_utf8_lossy(&cont));
    // Another session delivers; the idler hears EXISTS.
    let mut other = ImapClient::login(proxy.addr, "bob", "demo");
    other.append("INBOX", &message("wake", 100)).unwrap().ok();
    let line = c.read_response().unwrap();
    assert!(
        String::from_utf8_lossy(&line).contains("EXISTS"),
        "{}",
        String::from_utf8_lossy(&line)
    );
    c.write(b"DONE\r\n").unwrap();
    c.finish("i1").unwrap().ok();
    c.command("NOOP").unwrap().ok();
}

both_backends!(an_oversized_literal_gets_toobig_before_it_is_sent);
fn an_oversized_literal_gets_toobig_before_it_is_sent(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "[limits]\nmax_literal_bytes = 100000\n");
    let mut c = ImapClient::login(proxy.addr, "alice", "demo");
    c.write(b"t1 APPEND INBOX {200000}\r\n").unwrap();
    let line = String::from_utf8_lossy(&c.read_response().unwrap()).to_string();
    assert!(line.starts_with("t1 NO [TOOBIG]"), "{line}");
    // The connection goes on.
    c.command("NOOP").unwrap().ok();
    c.append("INBOX", &message("fits", 50_000)).unwrap().ok();

    // A non-synchronizing literal over the limit: BAD and close (RFC 7888).
    let mut c2 = ImapClient::login(proxy.addr, "alice", "demo");
    c2.write(b"t2 APPEND INBOX {200000+}\r\n").unwrap();
    let line = String::from_utf8_lossy(&c2.read_response().unwrap()).to_string();
    assert!(line.starts_with("t2 BAD [TOOBIG]"), "{line}");

    let mut good = ImapClient::login(proxy.addr, "bob", "demo");
    good.command("NOOP").unwrap().ok();
}

both_backends!(a_literal_whose_length_lies_cannot_smuggle_a_command);
fn a_literal_whose_length_lies_cannot_smuggle_a_command(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "");
    let mut c = ImapClient::login(proxy.addr, "alice", "demo");
    // Announces 10 bytes, sends 5 and a command: the command is literal data.
    c.write(b"t1 APPEND INBOX {10+}\r\nshort\r\nt2 DELETE INBOX\r\n")
        .unwrap();
    let r = c.finish("t1").unwrap();
    assert_ne!(r.status, Status::Ok, "{r:?}");
    c.command("NOOP").unwrap().ok();
    let r = c.command("SELECT INBOX").unwrap().ok();
    assert_eq!(r.exists(), Some(0));
    let mut good = ImapClient::login(proxy.addr, "bob", "demo");
    good.command("NOOP").unwrap().ok();
}

both_backends!(a_one_megabyte_line_gets_bad_and_the_connection_closes);
fn a_one_megabyte_line_gets_bad_and_the_connection_closes(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "");
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 512];
    let _ = s.read(&mut greeting).unwrap();
    let mut line = b"x1 NOOP ".to_vec();
    line.resize(1024 * 1024, b'a');
    let _ = s.write_all(&line);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("x1 BAD"), "{reply}");
    assert!(reply.contains("* BYE"), "{reply}");
    let mut good = ImapClient::login(proxy.addr, "bob", "demo");
    good.command("NOOP").unwrap().ok();
}

both_backends!(a_thousand_connections_from_one_ip_are_capped);
fn a_thousand_connections_from_one_ip_are_capped(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(
        &backend,
        "[limits]\nmax_connections = 1000\nmax_connections_per_ip = 50\n",
    );
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..1000 {
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        if text.starts_with("* BYE [UNAVAILABLE]") {
            refused += 1;
        } else {
            assert!(text.starts_with("* OK"), "{text}");
            held.push(s);
        }
    }
    assert_eq!(held.len(), 50);
    assert_eq!(refused, 950);
    drop(held);
    // Slots come back once those sessions end.
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(mut c) = ImapClient::connect(proxy.addr) {
            if c.greeting.starts_with("* OK") {
                c.command("LOGIN bob demo").unwrap().ok();
                ok = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ok, "no slot came back");
}

both_backends!(a_client_that_stops_reading_a_large_fetch_does_not_stall_others);
fn a_client_that_stops_reading_a_large_fetch_does_not_stall_others(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "");
    let mut c = ImapClient::login(proxy.addr, "alice", "demo");
    c.append("INBOX", &message("big", 8 * 1024 * 1024))
        .unwrap()
        .ok();
    c.command("SELECT INBOX").unwrap().ok();
    c.write(b"f1 FETCH 1 BODY[]\r\nf2 FETCH 1 BODY[]\r\nf3 FETCH 1 BODY[]\r\n")
        .unwrap();
    // c never reads. Others are served meanwhile.
    for _ in 0..3 {
        let mut good = ImapClient::login(proxy.addr, "bob", "demo");
        good.command("SELECT INBOX").unwrap().ok();
        good.command("LOGOUT").unwrap().ok();
    }
    drop(c);
}

both_backends!(a_dead_backend_gives_bye_unavailable_and_others_recover);
fn a_dead_backend_gives_bye_unavailable_and_others_recover(kind: BackendKind) {
    let mut backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "");
    let mut c = ImapClient::login(proxy.addr, "alice", "demo");
    c.command("SELECT INBOX").unwrap().ok();
    backend.kill_all();
    // The session's backend is gone: the client hears BYE or EOF.
    if let Ok(r) = c.command("NOOP") {
        assert!(
            r.status != Status::Ok || r.lines().iter().any(|l| l.contains("BYE")),
            "{r:?}"
        );
    }
    let fresh = ImapClient::connect(proxy.addr).unwrap();
    assert!(
        fresh.greeting.starts_with("* BYE [UNAVAILABLE]"),
        "{}",
        fresh.greeting
    );
    backend.restart();
    let mut c = ImapClient::login(proxy.addr, "alice", "demo");
    c.command("NOOP").unwrap().ok();
}

both_backends!(shutdown_says_bye_to_idle_sessions_and_stops_accepting);
fn shutdown_says_bye_to_idle_sessions_and_stops_accepting(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "");
    let addr = proxy.addr;
    let mut c = ImapClient::login(addr, "alice", "demo");
    c.command("SELECT INBOX").unwrap().ok();
    drop(proxy); // shutdown, waits for the sessions
    let line = String::from_utf8_lossy(&c.read_response().unwrap()).to_string();
    assert!(line.starts_with("* BYE"), "{line}");
    assert!(TcpStream::connect(addr).is_err(), "still accepting");
}

both_backends!(a_hung_backend_gives_no_unavailable_and_frees_the_session);
fn a_hung_backend_gives_no_unavailable_and_frees_the_session(kind: BackendKind) {
    let backend = Backend::start(kind);
    // A 2 s backend command timeout keeps the test short.
    let proxy = start_proxy_with_command_timeout(&backend, 2);
    let mut c = ImapClient::login(proxy.addr, "alice", "demo");
    c.command("SELECT INBOX").unwrap().ok();
    backend.freeze(true);
    let started = std::time::Instant::now();
    let r = c.command("NOOP").unwrap();
    backend.freeze(false);
    assert_eq!(r.status, Status::No, "{r:?}");
    assert!(r.text.contains("UNAVAILABLE"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
    let mut good = ImapClient::login(proxy.addr, "bob", "demo");
    good.command("NOOP").unwrap().ok();
}

both_backends!(login_timeout_closes_an_idle_unauthenticated_connection);
fn login_timeout_closes_an_idle_unauthenticated_connection(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "[limits]\nlogin_timeout_secs = 1\n");
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("* OK"), "{text}");
    assert!(text.contains("* BYE Login timeout"), "{text}");
}

both_backends!(authenticate_plain_without_initial_response_uses_the_continuation);
fn authenticate_plain_without_initial_response_uses_the_continuation(kind: BackendKind) {
    let backend = Backend::start(kind);
    let proxy = start_proxy_for(&backend, "");
    let mut c = ImapClient::connect(proxy.addr).unwrap();
    c.write(b"a1 AUTHENTICATE PLAIN\r\n").unwrap();
    let cont = c.read_response().unwrap();
    assert!(cont.starts_with(b"+"), "{}", String::from_utf8_lossy(&cont));
    // base64("\0alice\0demo")
    c.write(b"AGFsaWNlAGRlbW8=\r\n").unwrap();
    c.finish("a1").unwrap().ok();
    c.command("SELECT INBOX").unwrap().ok();
}
