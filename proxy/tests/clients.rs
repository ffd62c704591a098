//! Real mail clients through the proxy: mbsync (isync), offlineimap3 and
//! Python's imaplib see through tandem exactly what they see straight from
//! the backend, Dovecot or Cyrus.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{both_backends, start_proxy_for};
use tandem_tests::{Backend, BackendKind};

/// Puts a few messages in INBOX and in two folders, some flagged, straight
/// into the backend.
fn seed(backend: &Backend) {
    let mut c = backend.login("alice");
    for folder in ["Work", "Work.2026"] {
        c.command(&format!("CREATE \"{folder}\"")).unwrap().ok();
    }
    for (i, folder) in ["INBOX", "INBOX", "Work", "Work.2026", "INBOX"]
        .iter()
        .enumerate()
    {
        let msg = format!(
            "From: sender{i}@example.org\r\nTo: alice@example.org\r\nSubject: message {i}\r\n\
             Message-ID: <m{i}@tandem.test>\r\n\r\nBody of message {i}, caf\u{e9} \u{2603}\r\n"
        );
        c.append(folder, msg.as_bytes()).unwrap().ok();
    }
    c.command("SELECT INBOX").unwrap().ok();
    c.command("STORE 2 +FLAGS (\\Flagged \\Seen)").unwrap().ok();
}

/// Every message file under `root`, by folder: its Maildir flags and its
/// contents, sorted, without
/// the `X-TUID` header mbsync adds with a random value of its own.
fn maildir_contents(root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let parent = path.parent().unwrap();
            let leaf = parent.file_name().unwrap().to_string_lossy().to_string();
            if leaf != "cur" && leaf != "new" {
                continue;
            }
            let folder = parent
                .parent()
                .unwrap()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap())
                .lines()
                .filter(|l| !l.starts_with("X-TUID: "))
                .collect::<Vec<_>>()
                .join("\n");
            // Maildir flags are the letters after ":2," in the file name.
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let flags = name
                .rsplit_once(":2,")
                .map(|(_, f)| f.to_string())
                .unwrap_or_default();
            out.entry(folder)
                .or_default()
                .push(format!("flags {flags}\n{text}"));
        }
    }
    for msgs in out.values_mut() {
        msgs.sort();
    }
    out
}

fn mbsync(server: SocketAddr, dir: &Path) -> BTreeMap<String, Vec<String>> {
    let (mail, _) = tandem_tests::mbsync(server, dir, "*");
    maildir_contents(&mail)
}

fn offlineimap(server: SocketAddr, dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mail = dir.join("mail");
    let config = dir.join("offlineimaprc");
    std::fs::write(
        &config,
        format!(
            "[general]\naccounts = t\nmetadata = {meta}\n\n\
             [Account t]\nlocalrepository = L\nremoterepository = R\n\n\
             [Repository L]\ntype = Maildir\nlocalfolders = {mail}\n\n\
             [Repository R]\ntype = IMAP\nremotehost = {host}\nremoteport = {port}\n\
             remoteuser = alice\nremotepass = demo\nssl = no\nstarttls = no\n",
            meta = dir.join("meta").display(),
            mail = mail.display(),
            host = server.ip(),
            port = server.port(),
        ),
    )
    .unwrap();
    let out = Command::new("offlineimap")
        .arg("-c")
        .arg(&config)
        .args(["-o", "-u", "basic"])
        .output()
        .expect("run offlineimap (offlineimap3 installed? make deps)");
    assert!(
        out.status.success(),
        "offlineimap failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    maildir_contents(&mail)
}

fn tmp(name: &str, base: &tempfile::TempDir) -> PathBuf {
    let p = base.path().join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

both_backends!(mbsync_through_the_proxy_yields_the_same_maildir_as_direct);
fn mbsync_through_the_proxy_yields_the_same_maildir_as_direct(kind: BackendKind) {
    let backend = Backend::start(kind);
    seed(&backend);
    let proxy = start_proxy_for(&backend, "");
    let base = tempfile::tempdir().unwrap();
    let direct = mbsync(backend.imap_addr(), &tmp("direct", &base));
    let through = mbsync(proxy.addr, &tmp("proxy", &base));
    assert_eq!(
        direct.values().map(Vec::len).sum::<usize>(),
        5,
        "{:?}",
        direct.keys()
    );
    assert!(
        direct
            .values()
            .flatten()
            .any(|m| m.lines().next().is_some_and(|f| f.contains('F'))),
        "the flagged message lost its flag"
    );
    assert_eq!(direct, through);
}

both_backends!(offlineimap_through_the_proxy_yields_the_same_maildir_as_direct);
fn offlineimap_through_the_proxy_yields_the_same_maildir_as_direct(kind: BackendKind) {
    let backend = Backend::start(kind);
    seed(&backend);
    let proxy = start_proxy_for(&backend, "");
    let base = tempfile::tempdir().unwrap();
    let direct = offlineimap(backend.imap_addr(), &tmp("direct", &base));
    let through = offlineimap(proxy.addr, &tmp("proxy", &base));
    assert_eq!(
        direct.values().map(Vec::len).sum::<usize>(),
        5,
        "{:?}",
        direct.keys()
    );
    assert!(
        direct
            .values()
            .flatten()
            .any(|m| m.lines().next().is_some_and(|f| f.contains('F'))),
        "the flagged message lost its flag"
    );
    assert_eq!(direct, through);
}

both_backends!(python_imaplib_session_through_the_proxy);
fn python_imaplib_session_through_the_proxy(kind: BackendKind) {
    let backend = Backend::start(kind);
    seed(&backend);
    let proxy = start_proxy_for(&backend, "");
    let script = r#"
import imaplib, sys
host, port = sys.argv[1], int(sys.argv[2])
M = imaplib.IMAP4(host, port)
assert 'CONDSTORE' not in M.capabilities, M.capabilities
M.login('alice', 'demo')
typ, data = M.select('INBOX')
assert typ == 'OK' and data[0] == b'3', data
typ, data = M.search(None, 'FLAGGED')
assert data[0] == b'2', data
typ, data = M.fetch('1:3', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
subjects = [part[1] for part in data if isinstance(part, tuple)]
assert len(subjects) == 3 and b'message 0' in subjects[0], subjects
typ, data = M.store('1', '+FLAGS', '\\Answered')
assert typ == 'OK', data
typ, data = M._simple_command('UID', 'COPY', '1', 'Work')
assert typ == 'OK', data
typ, data = M._simple_command('UID', 'MOVE', '2', 'Work')
assert typ == 'OK', data
typ, data = M.status('Work', '(MESSAGES)')
assert b'MESSAGES 3' in data[0], data
typ, data = M.append('INBOX', None, None, b'Subject: from python\r\n\r\nhi\r\n')
assert typ == 'OK', data
M.logout()
print('imaplib ok')
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(proxy.addr.ip().to_string())
        .arg(proxy.addr.port().to_string())
        .output()
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("imaplib ok"), "{text}");
}
