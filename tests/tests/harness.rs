//! The harness itself: real Dovecot instances start, are independent, take
//! APPENDs with APPENDUID (RFC 4315), let the admin act as a user both ways,
//! restart on the same ports, and stop by PID.

use std::io::{Read, Write};
use std::net::TcpStream;

use tandem_tests::{Dovecot, ImapClient, Status};

fn message(marker: &str) -> Vec<u8> {
    format!(
        "From: test@example.org\r\nTo: alice@example.org\r\nSubject: {marker}\r\n\
         Message-ID: <{marker}@tandem.test>\r\n\r\nbody {marker}\r\n"
    )
    .into_bytes()
}

#[test]
fn append_returns_appenduid() {
    let dovecot = Dovecot::start();
    let alice = dovecot.user("alice");
    let mut c = ImapClient::login(dovecot.imap_addr(), &alice.user, &alice.password);
    let reply = c.append("INBOX", &message("first")).unwrap().ok();
    let code = reply.code("APPENDUID").expect("APPENDUID code (RFC 4315)");
    assert_eq!(code.len(), 2, "{reply:?}");
    let uidvalidity: u32 = code[0].parse().unwrap();
    assert!(uidvalidity > 0);
    assert_eq!(code[1], "1");
    let reply = c.append("INBOX", &message("second")).unwrap().ok();
    assert_eq!(
        reply.code("APPENDUID").unwrap(),
        vec![code[0].clone(), "2".into()]
    );
}

#[test]
fn two_instances_are_independent() {
    let a = Dovecot::start();
    let b = Dovecot::start();
    assert_ne!(a.imap_addr(), b.imap_addr());
    assert_ne!(a.dir(), b.dir());

    let mut ca = ImapClient::login(a.imap_addr(), "alice", "demo");
    ca.append("INBOX", &message("only-on-a")).unwrap().ok();
    ca.append("INBOX", &message("only-on-a-2")).unwrap().ok();
    assert_eq!(ca.command("SELECT INBOX").unwrap().ok().exists(), Some(2));

    let mut cb = ImapClient::login(b.imap_addr(), "alice", "demo");
    assert_eq!(cb.command("SELECT INBOX").unwrap().ok().exists(), Some(0));

    // Stopping one leaves the other serving.
    drop(ca);
    drop(a);
    assert_eq!(cb.command("NOOP").unwrap().status, Status::Ok);
    let mut cb2 = ImapClient::login(b.imap_addr(), "bob", "demo");
    cb2.command("SELECT INBOX").unwrap().ok();
}

#[test]
fn admin_acts_as_alice_by_master_login_and_by_authzid() {
    let dovecot = Dovecot::start();
    let admin = dovecot.admin();
    let mut alice = ImapClient::login(dovecot.imap_addr(), "alice", "demo");
    alice.append("INBOX", &message("alice-own")).unwrap().ok();

    // 1. LOGIN alice*admin <admin password>
    let mut master = ImapClient::login(
        dovecot.imap_addr(),
        &format!("alice*{}", admin.user),
        &admin.password,
    );
    let reply = master.command("SELECT INBOX").unwrap().ok();
    assert_eq!(reply.exists(), Some(1), "master login sees alice's INBOX");
    master
        .append("INBOX", &message("by-master-login"))
        .unwrap()
        .ok();

    // 2. AUTHENTICATE PLAIN with authzid alice, authcid admin.
    let mut sasl = ImapClient::connect(dovecot.imap_addr()).unwrap();
    sasl.authenticate_plain("alice", &admin.user, &admin.password)
        .unwrap()
        .ok();
    let reply = sasl.command("SELECT INBOX").unwrap().ok();
    assert_eq!(
        reply.exists(),
        Some(2),
        "authzid session sees both messages"
    );
    sasl.append("INBOX", &message("by-authzid")).unwrap().ok();

    // Alice herself sees what the admin wrote for her; bob does not.
    let reply = alice.command("SELECT INBOX").unwrap().ok();
    assert_eq!(reply.exists(), Some(3));
    let mut bob = ImapClient::login(dovecot.imap_addr(), "bob", "demo");
    assert_eq!(bob.command("SELECT INBOX").unwrap().ok().exists(), Some(0));
}

#[test]
fn wrong_admin_password_is_refused() {
    let dovecot = Dovecot::start();
    let mut c = ImapClient::connect(dovecot.imap_addr()).unwrap();
    let reply = c.authenticate_plain("alice", "admin", "wrong").unwrap();
    assert_eq!(reply.status, Status::No, "{reply:?}");
    let reply = c.command("LOGIN \"alice*admin\" \"wrong\"").unwrap();
    assert_eq!(reply.status, Status::No, "{reply:?}");
}

#[test]
fn restart_keeps_ports_and_mail_and_stop_ends_the_process() {
    let mut dovecot = Dovecot::start();
    let addr = dovecot.imap_addr();
    let lmtp = dovecot.lmtp_addr();
    let mut c = ImapClient::login(addr, "alice", "demo");
    c.append("INBOX", &message("survives")).unwrap().ok();
    drop(c);

    let old_pid = dovecot.pid().unwrap();
    dovecot.restart();
    assert_ne!(dovecot.pid().unwrap(), old_pid);
    assert!(!process_exists(old_pid), "old master is gone");
    assert_eq!(dovecot.imap_addr(), addr);

    let mut c = ImapClient::login(addr, "alice", "demo");
    assert_eq!(c.command("SELECT INBOX").unwrap().ok().exists(), Some(1));
    drop(c);

    // LMTP answers too.
    let mut s = TcpStream::connect(lmtp).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"220 "),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(b"QUIT\r\n").unwrap();

    let pid = dovecot.pid().unwrap();
    dovecot.stop();
    assert!(!process_exists(pid));
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens after stop"
    );
}

#[test]
fn lmtp_delivery_reaches_the_mailbox() {
    let dovecot = Dovecot::start();
    let mut s = TcpStream::connect(dovecot.lmtp_addr()).unwrap();
    let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
    let mut expect = |code: &str| {
        let mut line = String::new();
        loop {
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            assert!(line.starts_with(code), "expected {code}, got {line:?}");
            if line.as_bytes().get(3) == Some(&b' ') {
                break;
            }
        }
    };
    expect("220");
    for (cmd, code) in [
        ("LHLO test\r\n", "250"),
        ("MAIL FROM:<sender@example.org>\r\n", "250"),
        ("RCPT TO:<bob>\r\n", "250"),
        ("DATA\r\n", "354"),
    ] {
        s.write_all(cmd.as_bytes()).unwrap();
        expect(code);
    }
    s.write_all(&message("by-lmtp")).unwrap();
    s.write_all(b".\r\n").unwrap();
    expect("250");
    s.write_all(b"QUIT\r\n").unwrap();

    let mut c = ImapClient::login(dovecot.imap_addr(), "bob", "demo");
    assert_eq!(c.command("SELECT INBOX").unwrap().ok().exists(), Some(1));
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
