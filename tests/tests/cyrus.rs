//! The Cyrus harness against a real Cyrus IMAP 3.6 (`make deps` installs
//! it): users, the admin acting as a user, mailbox operations, restart, and
//! two instances side by side.

use std::time::Instant;

use tandem_tests::imap::quote;
use tandem_tests::{Cyrus, ImapClient, Reply, Status};

const MESSAGE: &[u8] = b"From: bob@example.org\r\nTo: alice@example.org\r\nSubject: cyrus harness\r\n\r\nHello from the Cyrus test.\r\n";

/// `[APPENDUID uidvalidity uid]` of an APPEND's reply, as numbers.
#[track_caller]
fn appenduid(reply: &Reply) -> (u32, u32) {
    let code = reply
        .code("APPENDUID")
        .unwrap_or_else(|| panic!("no APPENDUID in {reply:?}"));
    assert_eq!(code.len(), 2, "APPENDUID {code:?}");
    (
        code[0].parse().expect("uidvalidity"),
        code[1].parse().expect("uid"),
    )
}

/// The body of the first FETCH response of `reply` (its literal).
#[track_caller]
fn fetched_body(reply: &Reply) -> Vec<u8> {
    let fetch = reply
        .untagged
        .iter()
        .find(|l| l.windows(5).any(|w| w.eq_ignore_ascii_case(b"FETCH")))
        .unwrap_or_else(|| panic!("no FETCH in {reply:?}"));
    let open = fetch.iter().position(|&b| b == b'{').expect("a literal");
    let close = open + fetch[open..].iter().position(|&b| b == b'}').unwrap();
    let len: usize = std::str::from_utf8(&fetch[open + 1..close])
        .unwrap()
        .parse()
        .unwrap();
    let start = close + 3; // "}\r\n"
    fetch[start..start + len].to_vec()
}

/// The mailbox names of a LIST reply.
fn listed(reply: &Reply) -> Vec<String> {
    reply
        .lines()
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("* LIST (")?.split_once(") ")?.1;
            // separator (quoted or NIL), then the name (maybe quoted)
            let name = rest.split_once(' ')?.1;
            Some(name.trim_matches('"').to_string())
        })
        .collect()
}

fn login(cyrus: &Cyrus, user: &str) -> ImapClient {
    let creds = cyrus.user(user);
    ImapClient::login(cyrus.imap_addr(), &creds.user, &creds.password)
}

#[test]
fn user_logs_in_appends_and_reads_back() {
    let started = Instant::now();
    let cyrus = Cyrus::start();
    eprintln!("cyrus started in {:?}", started.elapsed());
    assert!(cyrus.pid().is_some());
    assert_eq!(cyrus.separator(), '.');

    let mut alice = ImapClient::connect(cyrus.imap_addr()).expect("connect");
    assert!(
        alice.greeting.starts_with("* OK") && alice.greeting.contains("Cyrus IMAP"),
        "greeting {:?}",
        alice.greeting
    );
    // A wrong password is refused, without a pause (failedloginpause: 0).
    let t = Instant::now();
    let wrong = alice.command("LOGIN alice wrong").unwrap();
    assert_eq!(wrong.status, Status::No, "{wrong:?}");
    assert!(
        t.elapsed().as_secs() < 5,
        "failed login took {:?}",
        t.elapsed()
    );
    alice.command("LOGIN alice demo").unwrap().ok();
    let caps = alice.command("CAPABILITY").unwrap().ok();
    let caps = caps.lines().join(" ");
    for cap in ["UIDPLUS", "MOVE", "LITERAL+", "ID", "NAMESPACE", "IDLE"] {
        assert!(
            caps.split_ascii_whitespace().any(|c| c == cap),
            "no {cap} in {caps}"
        );
    }

    let appended = alice.append("INBOX", MESSAGE).unwrap().ok();
    let (uidvalidity, uid) = appenduid(&appended);
    assert!(uidvalidity > 0);
    assert_eq!(uid, 1, "the first message of a new INBOX");
    let second = appenduid(&alice.append("INBOX", MESSAGE).unwrap().ok());
    assert_eq!(second, (uidvalidity, 2));

    let selected = alice.command("SELECT INBOX").unwrap().ok();
    assert_eq!(selected.exists(), Some(2), "{selected:?}");
    let uv = selected
        .lines()
        .iter()
        .find_map(|l| {
            l.strip_prefix("* OK [UIDVALIDITY ")?
                .split_once(']')?
                .0
                .parse::<u32>()
                .ok()
        })
        .expect("UIDVALIDITY on SELECT");
    assert_eq!(uv, uidvalidity);
    let fetched = alice
        .command(&format!("UID FETCH {uid} BODY.PEEK[]"))
        .unwrap()
        .ok();
    assert_eq!(fetched_body(&fetched), MESSAGE);

    // bob sees none of it.
    let mut bob = login(&cyrus, "bob");
    assert_eq!(bob.command("SELECT INBOX").unwrap().ok().exists(), Some(0));

    // Cyrus's syslog is captured where the machine allows a private /dev
    // (root with CAP_SYS_ADMIN, as in CI).
    if cyrus.captures_syslog() {
        let log = cyrus.log();
        assert!(
            log.contains("alice plaintext User logged in"),
            "no login in the log:\n{log}"
        );
    } else {
        eprintln!("no private /dev here: Cyrus's syslog is not captured");
    }
}

#[test]
fn idle_sees_another_sessions_append() {
    let cyrus = Cyrus::start();
    let mut watcher = login(&cyrus, "alice");
    assert_eq!(
        watcher.command("SELECT INBOX").unwrap().ok().exists(),
        Some(0)
    );
    watcher.write(b"W1 IDLE\r\n").unwrap();
    let cont = watcher.read_response().unwrap();
    assert!(
        cont.starts_with(b"+"),
        "{:?}",
        String::from_utf8_lossy(&cont)
    );

    let mut writer = login(&cyrus, "alice");
    let t = Instant::now();
    writer.append("INBOX", MESSAGE).unwrap().ok();
    // idled pushes it; without idled imapd would poll only every 60 s.
    let pushed = loop {
        let line = watcher
            .read_response()
            .expect("an untagged EXISTS while idling");
        let line = String::from_utf8_lossy(&line).trim_end().to_string();
        if line == "* 1 EXISTS" {
            break t.elapsed();
        }
    };
    assert!(pushed.as_secs() < 10, "EXISTS came after {pushed:?}");
    watcher.write(b"DONE\r\n").unwrap();
    watcher.finish("W1").unwrap().ok();
}

#[test]
fn unix_hierarchy_separator_is_detected() {
    let cyrus = Cyrus::builder()
        .extra_config("unixhierarchysep: yes")
        .start();
    assert_eq!(cyrus.separator(), '/');
    assert_eq!(cyrus.user_mailbox("bob"), "user/bob");
    let mut bob = login(&cyrus, "bob");
    bob.command("CREATE a.b/c").unwrap().ok();
    let names = listed(&bob.command("LIST \"\" \"*\"").unwrap().ok());
    assert!(names.contains(&"a.b/c".to_string()), "{names:?}");
    let admin = cyrus.admin();
    let mut root = ImapClient::login(cyrus.imap_addr(), &admin.user, &admin.password);
    root.command("STATUS \"user/bob/a.b/c\" (MESSAGES)")
        .unwrap()
        .ok();
}

#[test]
fn admin_acts_as_alice_with_an_authzid() {
    let cyrus = Cyrus::start();
    let mut alice = login(&cyrus, "alice");
    let (uidvalidity, uid) = appenduid(&alice.append("INBOX", MESSAGE).unwrap().ok());
    alice.command("CREATE Sub").unwrap().ok();
    alice.command("LOGOUT").unwrap();

    let admin = cyrus.admin();
    let mut as_alice = ImapClient::connect(cyrus.imap_addr()).unwrap();
    as_alice
        .authenticate_plain("alice", &admin.user, &admin.password)
        .unwrap()
        .ok();
    let selected = as_alice.command("SELECT INBOX").unwrap().ok();
    assert_eq!(selected.exists(), Some(1), "{selected:?}");
    let fetched = as_alice
        .command(&format!("UID FETCH {uid} BODY.PEEK[]"))
        .unwrap()
        .ok();
    assert_eq!(fetched_body(&fetched), MESSAGE);
    // alice's namespace: her own mailboxes without the user. prefix.
    let names = listed(&as_alice.command("LIST \"\" \"*\"").unwrap().ok());
    assert!(names.contains(&"INBOX".to_string()), "{names:?}");
    assert!(names.contains(&"Sub".to_string()), "{names:?}");
    // And it writes as alice: the UID goes on from hers.
    let next = appenduid(&as_alice.append("INBOX", MESSAGE).unwrap().ok());
    assert_eq!(next, (uidvalidity, uid + 1));

    // The `alice*admin` LOGIN of Dovecot does not exist in Cyrus.
    let mut star = ImapClient::connect(cyrus.imap_addr()).unwrap();
    let reply = star
        .command(&format!(
            "LOGIN {} {}",
            quote(&format!("alice*{}", admin.user)),
            quote(&admin.password)
        ))
        .unwrap();
    assert_eq!(reply.status, Status::No, "{reply:?}");
    // Nor may alice act as bob.
    let mut sneaky = ImapClient::connect(cyrus.imap_addr()).unwrap();
    let reply = sneaky.authenticate_plain("bob", "alice", "demo").unwrap();
    assert_ne!(reply.status, Status::Ok, "{reply:?}");

    // As itself, the admin sees the users' mailboxes under user.NAME, and
    // its ACL (set at start, inherited by Sub) lets it STATUS them.
    let mut root = ImapClient::login(cyrus.imap_addr(), &admin.user, &admin.password);
    let inbox = cyrus.user_mailbox("alice");
    assert_eq!(inbox, "user.alice");
    let status = root
        .command(&format!("STATUS {} (MESSAGES UIDVALIDITY)", quote(&inbox)))
        .unwrap()
        .ok();
    let line = status.lines().join(" ");
    assert!(line.contains("MESSAGES 2"), "{line}");
    assert!(
        line.contains(&format!("UIDVALIDITY {uidvalidity}")),
        "{line}"
    );
    root.command("STATUS user.alice.Sub (MESSAGES)")
        .unwrap()
        .ok();
    let acl = root.command("GETACL user.alice.Sub").unwrap().ok();
    assert!(
        acl.lines().join(" ").contains("admin lrswipkxtecdan"),
        "{acl:?}"
    );
}

#[test]
fn create_rename_delete() {
    let cyrus = Cyrus::start();
    let mut alice = login(&cyrus, "alice");
    alice.command("CREATE Projects").unwrap().ok();
    alice.command("CREATE Projects.2024").unwrap().ok();
    // INBOX may have children under altnamespace.
    alice.command("CREATE INBOX.Later").unwrap().ok();
    // `/` is no separator here.
    let slash = alice.command("CREATE A/B").unwrap();
    assert_eq!(slash.status, Status::No, "{slash:?}");
    let (_, uid) = appenduid(&alice.append("Projects.2024", MESSAGE).unwrap().ok());

    let names = listed(&alice.command("LIST \"\" \"*\"").unwrap().ok());
    for name in ["INBOX", "INBOX.Later", "Projects", "Projects.2024"] {
        assert!(names.contains(&name.to_string()), "{name} not in {names:?}");
    }

    alice.command("RENAME Projects Archive").unwrap().ok();
    let names = listed(&alice.command("LIST \"\" \"*\"").unwrap().ok());
    assert!(names.contains(&"Archive.2024".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("Projects")),
        "{names:?}"
    );
    // The message moved with its mailbox, same UID.
    alice.command("SELECT Archive.2024").unwrap().ok();
    let fetched = alice
        .command(&format!("UID FETCH {uid} BODY.PEEK[]"))
        .unwrap()
        .ok();
    assert_eq!(fetched_body(&fetched), MESSAGE);
    alice.command("UNSELECT").unwrap().ok();

    alice.command("DELETE Archive.2024").unwrap().ok();
    alice.command("DELETE Archive").unwrap().ok();
    alice.command("DELETE INBOX.Later").unwrap().ok();
    let names = listed(&alice.command("LIST \"\" \"*\"").unwrap().ok());
    assert_eq!(names, vec!["INBOX".to_string()]);
    // delete_mode: immediate: no DELETED.* hierarchy is left for the admin.
    let mut root = ImapClient::login(
        cyrus.imap_addr(),
        &cyrus.admin().user,
        &cyrus.admin().password,
    );
    let all = listed(&root.command("LIST \"\" \"*\"").unwrap().ok());
    assert!(!all.iter().any(|n| n.contains("DELETED")), "{all:?}");
    assert!(all.contains(&"user.alice".to_string()), "{all:?}");
}

#[test]
fn restart_keeps_the_mail() {
    let mut cyrus = Cyrus::start();
    let addr = cyrus.imap_addr();
    let mut alice = login(&cyrus, "alice");
    alice.command("CREATE Kept").unwrap().ok();
    let (uidvalidity, uid) = appenduid(&alice.append("Kept", MESSAGE).unwrap().ok());
    drop(alice);

    let old_pid = cyrus.pid().unwrap();
    let t = Instant::now();
    cyrus.restart();
    eprintln!("cyrus restarted in {:?}", t.elapsed());
    assert_eq!(cyrus.imap_addr(), addr);
    assert_ne!(cyrus.pid(), Some(old_pid));
    assert!(
        !std::path::Path::new(&format!("/proc/{old_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{old_pid}/cmdline"))
                .map(|c| !c.contains("cyrus"))
                .unwrap_or(true),
        "the old master {old_pid} is still there"
    );

    let mut alice = login(&cyrus, "alice");
    let selected = alice.command("SELECT Kept").unwrap().ok();
    assert_eq!(selected.exists(), Some(1), "{selected:?}");
    let fetched = alice
        .command(&format!("UID FETCH {uid} BODY.PEEK[]"))
        .unwrap()
        .ok();
    assert_eq!(fetched_body(&fetched), MESSAGE);
    // UIDVALIDITY and the next UID survive too.
    alice.command("UNSELECT").unwrap().ok();
    let next = appenduid(&alice.append("Kept", MESSAGE).unwrap().ok());
    assert_eq!(next, (uidvalidity, uid + 1));

    // After a crash of the whole tree, recovery keeps it as well.
    drop(alice);
    cyrus.kill_all();
    assert_eq!(cyrus.pid(), None);
    cyrus.restart();
    let mut alice = login(&cyrus, "alice");
    assert_eq!(alice.command("SELECT Kept").unwrap().ok().exists(), Some(2));
}

#[test]
fn two_instances_do_not_collide() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(Cyrus::start);
        let b = s.spawn(Cyrus::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.imap_addr(), b.imap_addr());
    assert_ne!(a.dir(), b.dir());
    let mut on_a = login(&a, "alice");
    let mut on_b = login(&b, "alice");
    on_a.append("INBOX", MESSAGE).unwrap().ok();
    on_a.append("INBOX", MESSAGE).unwrap().ok();
    on_b.append("INBOX", MESSAGE).unwrap().ok();
    on_a.command("CREATE OnlyA").unwrap().ok();
    assert_eq!(on_a.command("SELECT INBOX").unwrap().ok().exists(), Some(2));
    assert_eq!(on_b.command("SELECT INBOX").unwrap().ok().exists(), Some(1));
    let names_b = listed(&on_b.command("LIST \"\" \"*\"").unwrap().ok());
    assert!(!names_b.contains(&"OnlyA".to_string()), "{names_b:?}");

    // Stopping one leaves the other serving.
    let a_dir = a.dir().to_path_buf();
    drop(on_a);
    drop(a);
    assert!(
        !a_dir.exists(),
        "the stopped instance's directory is removed"
    );
    on_b.command("NOOP").unwrap().ok();
    let mut again = login(&b, "bob");
    again.command("SELECT INBOX").unwrap().ok();
}
