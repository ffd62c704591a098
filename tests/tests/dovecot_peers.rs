//! The Dovecot setups tandem is compared with: Dovecot's own proxy passes
//! a session through to its backend, and two Dovecots replicating with
//! dsync carry an APPEND from the primary to the replica (asynchronously),
//! while the synchronous mode crashes the replicator.

use std::time::{Duration, Instant};

use tandem_tests::{Dovecot, DovecotProxy, DsyncPair, ImapClient, USER_PASSWORD};

/// Generous: the machine may be busy building (measured lag: ~0.55 s).
const REPLICATION_DEADLINE: Duration = Duration::from_secs(20);

fn message(marker: &str) -> Vec<u8> {
    format!(
        "From: test@example.org\r\nTo: alice@example.org\r\nSubject: {marker}\r\n\
         Message-ID: <{marker}@tandem.test>\r\n\r\nbody {marker}\r\n"
    )
    .into_bytes()
}

/// `(UIDVALIDITY, UID)` from an APPEND's `[APPENDUID v u]`.
fn appenduid(reply: &tandem_tests::Reply) -> (u32, u32) {
    let code = reply
        .code("APPENDUID")
        .unwrap_or_else(|| panic!("no APPENDUID in {reply:?}"));
    (code[0].parse().unwrap(), code[1].parse().unwrap())
}

/// The number of messages in `mailbox`, by STATUS (no SELECT).
fn messages(client: &mut ImapClient, mailbox: &str) -> u32 {
    let reply = client
        .command(&format!("STATUS {mailbox} (MESSAGES)"))
        .unwrap()
        .ok();
    reply
        .lines()
        .iter()
        .find_map(|l| {
            let inner = l.split_once("(MESSAGES ")?.1;
            inner.trim_end_matches(')').trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("no MESSAGES in {reply:?}"))
}

/// The subject of the message with `uid` in the selected mailbox.
fn subject_of(client: &mut ImapClient, uid: u32) -> String {
    let reply = client
        .command(&format!(
            "UID FETCH {uid} BODY.PEEK[HEADER.FIELDS (SUBJECT)]"
        ))
        .unwrap()
        .ok();
    reply.lines().join("\n")
}

fn uidvalidity_of_select(client: &mut ImapClient, mailbox: &str) -> u32 {
    let reply = client.command(&format!("SELECT {mailbox}")).unwrap().ok();
    reply
        .lines()
        .iter()
        .find_map(|l| {
            let rest = l.split_once("[UIDVALIDITY ")?.1;
            rest.split(']').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no UIDVALIDITY in {reply:?}"))
}

#[test]
fn dovecot_proxy_passes_alice_through_to_the_backend() {
    let backend = Dovecot::start();
    let proxy = DovecotProxy::start(&backend);
    assert_ne!(proxy.imap_addr(), backend.imap_addr());
    assert_eq!(proxy.backend_addr(), backend.imap_addr());
    assert!(proxy.pid().is_some());
    assert_ne!(proxy.pid(), backend.pid());

    // Mail the backend already holds is what the proxy shows.
    let mut direct = ImapClient::login(backend.imap_addr(), "alice", USER_PASSWORD);
    let (validity, first) = appenduid(&direct.append("INBOX", &message("direct")).unwrap().ok());

    let mut via = ImapClient::login(proxy.imap_addr(), "alice", USER_PASSWORD);
    assert_eq!(uidvalidity_of_select(&mut via, "INBOX"), validity);
    assert!(subject_of(&mut via, first).contains("Subject: direct"));

    // An APPEND through the proxy lands on the backend, with its UIDs.
    let reply = via.append("INBOX", &message("via-proxy")).unwrap().ok();
    assert_eq!(appenduid(&reply), (validity, first + 1));
    assert_eq!(uidvalidity_of_select(&mut direct, "INBOX"), validity);
    assert!(subject_of(&mut direct, first + 1).contains("Subject: via-proxy"));
    assert_eq!(messages(&mut direct, "INBOX"), 2);

    // The proxy relayed the session and stores no mail of its own.
    let log = proxy.dovecot().log();
    assert!(
        log.contains(&format!(
            "proxy(alice,{}): Started proxying",
            backend.imap_addr()
        )),
        "{log}"
    );
    assert!(
        !proxy.dovecot().dir().join("home").join("alice").exists(),
        "the proxy opened a mailbox of its own"
    );
}

#[test]
fn dsync_pair_carries_an_append_to_the_replica() {
    let pair = DsyncPair::start();
    assert_ne!(pair.primary().imap_addr(), pair.replica().imap_addr());
    assert!(pair.primary().pid().is_some() && pair.replica().pid().is_some());

    let mut replica = ImapClient::login(pair.replica().imap_addr(), "alice", USER_PASSWORD);
    assert_eq!(messages(&mut replica, "INBOX"), 0);

    let mut primary = ImapClient::login(pair.primary().imap_addr(), "alice", USER_PASSWORD);
    let appended = Instant::now();
    let reply = primary
        .append("INBOX", &message("replicated"))
        .unwrap()
        .ok();
    let (validity, uid) = appenduid(&reply);

    let deadline = appended + REPLICATION_DEADLINE;
    while messages(&mut replica, "INBOX") < 1 {
        assert!(
            Instant::now() < deadline,
            "the replica did not get the APPEND within {REPLICATION_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("dsync replica lag: {:?}", appended.elapsed());

    // Same INBOX, same UIDs, same message.
    assert_eq!(uidvalidity_of_select(&mut replica, "INBOX"), validity);
    assert!(subject_of(&mut replica, uid).contains("Subject: replicated"));
    assert_eq!(messages(&mut replica, "INBOX"), 1);
}

#[test]
fn dsync_sync_mode_crashes_the_replicator() {
    let line = DsyncPair::sync_mode_failure().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("replication_sync_timeout = 2: {line}");
    assert!(!line.trim().is_empty());
    assert!(line.contains("replicator"), "{line}");
}
