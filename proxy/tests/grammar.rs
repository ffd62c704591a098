//! The IMAP grammar through a whole tandem cluster, compared with what the
//! same commands get from a Dovecot used directly: responses the parser
//! must not withhold (ENVELOPE with RFC 5322 groups), commands it must not
//! refuse (LIST patterns holding `[`), and an APPEND with a literal8
//! (RFC 3516) that every node's backend must store as a direct APPEND
//! stores it.

use std::time::{Duration, Instant};

use tandem_tests::{BackendKind, Dovecot, ImapClient, Reply, Status, TandemCluster};

fn cluster() -> TandemCluster {
    TandemCluster::builder()
        .binary(env!("CARGO_BIN_EXE_tandem"))
        .backend(BackendKind::Dovecot)
        .nodes(3)
        .start()
}

/// Six messages: simple ones, and one whose To and Cc use RFC 5322 group
/// syntax (an ENVELOPE gives `(NIL NIL "group" NIL)`), a multipart with a
/// message/rfc822 part whose To is an empty group, and a literal subject.
fn messages() -> Vec<Vec<u8>> {
    let simple = |n: u32| {
        format!(
            "From: a@example.org\r\nTo: b@example.org\r\nSubject: simple {n}\r\n\
             Message-ID: <s{n}@example.org>\r\n\r\nbody {n}\r\n"
        )
        .into_bytes()
    };
    vec![
        simple(1),
        b"From: Alice <alice@example.org>\r\nTo: undisclosed-recipients:;\r\n\
          Cc: friends: Joe <joe@example.org>, bob@example.org;, carol@example.org\r\n\
          Subject: groups\r\nMessage-ID: <g1@example.org>\r\n\r\nbody\r\n"
            .to_vec(),
        simple(2),
        b"From: a@example.org\r\nTo: b@example.org\r\nSubject: mixed \xc3\xa9t\xc3\xa9\r\n\
          MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\
          Content-Language: en, de\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
          --XX\r\nContent-Type: message/rfc822\r\n\r\nFrom: inner@example.org\r\n\
          To: group: ;\r\nSubject: inner\r\n\r\ninner\r\n--XX--\r\n"
            .to_vec(),
        simple(3),
        simple(4),
    ]
}

/// APPENDs `message` to INBOX as a synchronizing literal8 `~{n}`.
fn append_literal8(c: &mut ImapClient, tag: &str, message: &[u8]) -> Reply {
    c.write(format!("{tag} APPEND INBOX ~{{{}}}\r\n", message.len()).as_bytes())
        .unwrap();
    let cont = c.read_response().unwrap();
    assert!(cont.starts_with(b"+"), "{}", cont.escape_ascii());
    let mut data = message.to_vec();
    data.extend_from_slice(b"\r\n");
    c.write(&data).unwrap();
    c.finish(tag).unwrap()
}

/// The untagged responses of `cmd` in INBOX, as raw bytes.
fn fetch_raw(c: &mut ImapClient, cmd: &str) -> Vec<Vec<u8>> {
    c.command(cmd).unwrap().ok().untagged
}

/// Waits until `user`'s INBOX in `backend` holds `n` messages.
fn wait_for_messages(backend: &Dovecot, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = ImapClient::login(backend.imap_addr(), "alice", "demo");
        let r = c.command("STATUS INBOX (MESSAGES)").unwrap().ok();
        if r.lines()
            .iter()
            .any(|l| l.ends_with(&format!("(MESSAGES {n})")))
        {
            return;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// RFC 3516 section 4.3: a literal8 APPEND; Dovecot stores a NUL as 0x80
/// and turns a `Content-Transfer-Encoding: binary` part into base64 only
/// when the message came as a literal8. Every node's backend must hold
/// the bytes a direct APPEND leaves.
#[test]
fn literal8_append_with_nul_is_stored_as_a_direct_append_stores_it() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let c = cluster();
    let direct = Dovecot::start();
    let bodies: [&[u8]; 2] = [
        b"From: a@example.org\r\nSubject: nul\r\n\r\nab\0cd\r\n",
        b"From: a@example.org\r\nSubject: bin\r\nMIME-Version: 1.0\r\n\
          Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\
          \r\nab\0cd\r\n",
    ];
    let mut through = c.login(1, "alice");
    let mut plain = ImapClient::login(direct.imap_addr(), "alice", "demo");
    for (k, body) in bodies.iter().enumerate() {
        let tag = format!("L{k}");
        let r = append_literal8(&mut through, &tag, body);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let r = append_literal8(&mut plain, &tag, body);
        assert_eq!(r.status, Status::Ok, "{r:?}");
    }
    let fetch = "FETCH 1:* (BINARY.SIZE[1] BINARY.PEEK[1] RFC822.SIZE BODY.PEEK[])";
    plain.command("SELECT INBOX").unwrap().ok();
    let want = fetch_raw(&mut plain, fetch);
    assert_eq!(want.len(), 2);
    for id in c.mail_ids() {
        let backend = c.dovecot(id);
        wait_for_messages(backend, 2);
        let mut b = ImapClient::login(backend.imap_addr(), "alice", "demo");
        b.command("SELECT INBOX").unwrap().ok();
        let got = fetch_raw(&mut b, fetch);
        assert_eq!(
            got.iter()
                .map(|l| l.escape_ascii().to_string())
                .collect::<Vec<_>>(),
            want.iter()
                .map(|l| l.escape_ascii().to_string())
                .collect::<Vec<_>>(),
            "node {id}'s backend"
        );
    }
    // And through tandem, as a client sees it.
    through.command("SELECT INBOX").unwrap().ok();
    assert_eq!(fetch_raw(&mut through, fetch), want);
}

/// RFC 9051 section 7.5.2: an address group is `(NIL NIL "name" NIL)` ...
/// `(NIL NIL NIL NIL)`, and a field's addresses follow each other without
/// SP. No FETCH response may be withheld for it.
#[test]
fn envelopes_with_group_addresses_reach_the_client() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let c = cluster();
    let direct = Dovecot::start();
    let mut through = c.login(1, "alice");
    let mut plain = ImapClient::login(direct.imap_addr(), "alice", "demo");
    for m in messages() {
        through.append("INBOX", &m).unwrap().ok();
        plain.append("INBOX", &m).unwrap().ok();
    }
    through.command("SELECT INBOX").unwrap().ok();
    plain.command("SELECT INBOX").unwrap().ok();
    for cmd in [
        "FETCH 1:* ENVELOPE",
        "FETCH 1:* (BODYSTRUCTURE ENVELOPE)",
        "FETCH 1:* (UID ENVELOPE BODY.PEEK[HEADER])",
    ] {
        let got = fetch_raw(&mut through, cmd);
        assert_eq!(got.len(), 6, "{cmd}: {got:?}");
        assert_eq!(got, fetch_raw(&mut plain, cmd), "{cmd}");
    }
    // Every node answers the same.
    for id in c.mail_ids() {
        wait_for_messages(c.dovecot(id), 6);
        let mut other = c.login(id, "alice");
        other.command("SELECT INBOX").unwrap().ok();
        assert_eq!(fetch_raw(&mut other, "FETCH 1:* ENVELOPE").len(), 6);
    }
}

/// RFC 9051 `list-mailbox = 1*list-char / string`, where a list-char may
/// be `[` (an ATOM-CHAR) or `]` (resp-specials).
#[test]
fn list_patterns_holding_brackets_are_answered_like_dovecot() {
    let _serial = tandem_tests::one_cluster_at_a_time();
    let c = cluster();
    let direct = Dovecot::start();
    let mut through = c.login(1, "alice");
    let mut plain = ImapClient::login(direct.imap_addr(), "alice", "demo");
    for cmd in [
        "LIST \"\" foo[bar",
        "LIST \"\" \"foo[bar\"",
        "LIST \"\" foo]bar",
        "LIST \"\" [%",
        "LSUB \"\" foo[bar",
        "LIST (SUBSCRIBED) \"\" (foo[ INBOX) RETURN (CHILDREN)",
        "LIST \"\" INBOX",
    ] {
        let got = through.command(cmd).unwrap();
        let want = plain.command(cmd).unwrap();
        assert_eq!(got.status, want.status, "{cmd}: {got:?} {want:?}");
        assert_eq!(got.untagged, want.untagged, "{cmd}");
    }
}
