//! Conformance scripts: parsing the text format described in
//! [`crate::conformance`], and expanding a command's placeholders into the
//! bytes and literals to send.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::USER_PASSWORD;

/// The most sessions a script may use (A to E).
pub const MAX_SESSIONS: usize = 5;

/// One parsed script.
#[derive(Debug, Clone)]
pub struct Script {
    /// The file name without `.txt`; also the user the script runs as.
    pub name: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// Its `#` comment lines, for the report.
    pub comments: Vec<String>,
    /// `setup:` commands, run by a session of its own before the others
    /// connect; answers not compared, each must be OK.
    pub setup: Vec<String>,
    /// Sessions that connect without logging in (`noauth:`).
    pub noauth: Vec<usize>,
    /// The sessions used, as indexes (A = 0), in order.
    pub sessions: Vec<usize>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// `cyrus: skip <reason>`: not run against Cyrus.
    pub skip_cyrus: Option<String>,
}

/// One step: a session sends one command and reads its whole answer.
#[derive(Debug, Clone)]
pub struct Step {
    /// The session (A = 0).
    pub session: usize,
    /// The command as written (placeholders unexpanded), without tag.
    pub command: String,
    /// A documented difference: through tandem this step answers
    /// otherwise than the backend.
    pub differs: Option<Difference>,
    /// The line in the script file.
    pub line: usize,
}

/// What a `differs:` line says.
#[derive(Debug, Clone)]
pub struct Difference {
    /// Why tandem answers otherwise (shown in the report).
    pub reason: String,
    /// What tandem's normalized tagged line must start with (`NO`,
    /// `BAD [CANNOT]`); `None`: any answer.
    pub tandem: Option<String>,
}

/// Session letter of an index.
pub fn letter(session: usize) -> char {
    (b'A' + session as u8) as char
}

impl Script {
    /// Reads and parses one script file.
    pub fn load(path: &Path) -> Result<Script, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("{}: bad file name", path.display()))?
            .to_string();
        Script::parse(&name, path, &text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a script's text.
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<Script, String> {
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(format!(
                "script name {name:?}: use a-z, 0-9 and _ (it is the user name)"
            ));
        }
        let mut script = Script {
            name: name.to_string(),
            path: path.to_path_buf(),
            comments: Vec::new(),
            setup: Vec::new(),
            noauth: Vec::new(),
            sessions: Vec::new(),
            steps: Vec::new(),
            skip_cyrus: None,
        };
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let at = i + 1;
            if line.is_empty() {
                continue;
            }
            if let Some(c) = line.strip_prefix('#') {
                script.comments.push(c.trim().to_string());
                continue;
            }
            let (head, rest) = line
                .split_once(':')
                .ok_or_else(|| format!("line {at}: expected `X: ...`: {line:?}"))?;
            let rest = rest.trim();
            match head.trim() {
                "setup" => script.setup.push(rest.to_string()),
                "cyrus" => script.skip_cyrus = Some(rest.to_string()),
                "noauth" => {
                    for w in rest.split_whitespace() {
                        script.noauth.push(session_index(w, at)?);
                    }
                }
                "differs" => {
                    let step = script
                        .steps
                        .last_mut()
                        .ok_or_else(|| format!("line {at}: `differs:` before any step"))?;
                    let (reason, tandem) = match rest.split_once("=>") {
                        Some((r, t)) => (r.trim(), Some(t.trim().to_string())),
                        None => (rest, None),
                    };
                    step.differs = Some(Difference {
                        reason: reason.to_string(),
                        tandem,
                    });
                }
                s => {
                    let session = session_index(s, at)?;
                    if rest.is_empty() {
                        return Err(format!("line {at}: empty command"));
                    }
                    if !script.sessions.contains(&session) {
                        script.sessions.push(session);
                    }
                    script.steps.push(Step {
                        session,
                        command: rest.to_string(),
                        differs: None,
                        line: at,
                    });
                }
            }
        }
        for &s in &script.noauth {
            if !script.sessions.contains(&s) {
                script.sessions.push(s);
            }
        }
        script.sessions.sort_unstable();
        if script.steps.is_empty() {
            return Err("no steps".to_string());
        }
        Ok(script)
    }

    /// The user the script runs as (a fresh one per script).
    pub fn user(&self) -> String {
        format!("cf_{}", self.name)
    }

    /// Whether `differs:` appears anywhere (a documented difference).
    pub fn documents_a_difference(&self) -> bool {
        self.steps.iter().any(|s| s.differs.is_some())
    }
}

fn session_index(word: &str, at: usize) -> Result<usize, String> {
    let b = word.as_bytes();
    if b.len() == 1 && (b'A'..b'A' + MAX_SESSIONS as u8).contains(&b[0]) {
        Ok((b[0] - b'A') as usize)
    } else {
        Err(format!(
            "line {at}: {word:?} is not a session (A to {})",
            letter(MAX_SESSIONS - 1)
        ))
    }
}

/// Loads every `*.txt` under `dir`, sorted by name.
pub fn load_dir(dir: &Path) -> Result<Vec<Script>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Script::load(p)).collect()
}

/// A command ready to send: text parts with a literal between each two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// Text before the first literal, between literals, after the last.
    pub parts: Vec<Vec<u8>>,
    /// The literals (one fewer than `parts`).
    pub literals: Vec<Vec<u8>>,
    /// Whether each literal is non-synchronizing (`{n+}`, LITERAL+).
    pub nonsync: Vec<bool>,
}

/// Expands a command's placeholders for `user`:
/// - `$USER`, `$PASS`: the user's name and password;
/// - `$PLAIN`: SASL PLAIN's initial response for the user (base64);
/// - `{msg:NAME}`: a literal holding a small text/plain message whose
///   subject is NAME;
/// - `{mime:NAME}`: a literal holding a multipart/mixed message (a text
///   part and a base64 attachment) whose subject is NAME;
/// - `{lit:TEXT}`: a literal holding TEXT;
/// - `{msg+:NAME}`, `{mime+:NAME}`, `{lit+:TEXT}`: the same as a
///   non-synchronizing literal (LITERAL+).
pub fn expand(command: &str, user: &str) -> Result<Expanded, String> {
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{USER_PASSWORD}"));
    let command = command
        .replace("$USER", user)
        .replace("$PASS", USER_PASSWORD)
        .replace("$PLAIN", &plain);
    let mut parts = Vec::new();
    let mut literals = Vec::new();
    let mut nonsync = Vec::new();
    let mut rest = command.as_str();
    let mut current = Vec::new();
    while let Some(open) = find_placeholder(rest) {
        current.extend_from_slice(&rest.as_bytes()[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed placeholder in {command:?}"))?;
        let (kind, arg) = after[..close].split_once(':').expect("found with a colon");
        let plus = kind.ends_with('+');
        let kind = kind.trim_end_matches('+');
        let literal = match kind {
            "msg" => message(arg),
            "mime" => mime_message(arg),
            "lit" => arg.as_bytes().to_vec(),
            _ => unreachable!("find_placeholder checks the kind"),
        };
        parts.push(std::mem::take(&mut current));
        literals.push(literal);
        nonsync.push(plus);
        rest = &after[close + 1..];
    }
    current.extend_from_slice(rest.as_bytes());
    parts.push(current);
    Ok(Expanded {
        parts,
        literals,
        nonsync,
    })
}

fn find_placeholder(s: &str) -> Option<usize> {
    ["{msg:", "{mime:", "{lit:", "{msg+:", "{mime+:", "{lit+:"]
        .iter()
        .filter_map(|p| s.find(p))
        .min()
}

/// The small text/plain message `{msg:NAME}` stands for.
pub fn message(name: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\n\
         Subject: {name}\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n\
         Message-ID: <{name}@example.org>\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n\
         Body of {name}.\r\nSecond line.\r\n"
    )
    .into_bytes()
}

/// The multipart message `{mime:NAME}` stands for.
pub fn mime_message(name: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>, carol@example.org\r\n\
         Cc: Dave <dave@example.org>\r\nSubject: {name}\r\n\
         Date: Tue, 02 Jan 2024 11:30:00 +0100\r\nMessage-ID: <{name}@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b-{name}\"\r\n\r\n\
         Preamble.\r\n--b-{name}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         Text part of {name}.\r\n--b-{name}\r\n\
         Content-Type: application/octet-stream; name=\"a.bin\"\r\n\
         Content-Disposition: attachment; filename=\"a.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8sIHdvcmxkIQ==\r\n--b-{name}--\r\n"
    )
    .into_bytes()
}

/// Expands a `setup:` line: `fill MAILBOX N` appends the messages m1..mN
/// with INTERNALDATEs a minute apart; anything else is one command.
pub fn setup_commands(line: &str) -> Result<Vec<String>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.first() == Some(&"fill") {
        let [_, mailbox, n] = words[..] else {
            return Err(format!("`fill MAILBOX N`, not {line:?}"));
        };
        let n: u32 = n.parse().map_err(|_| format!("bad count in {line:?}"))?;
        return Ok((1..=n)
            .map(|i| {
                format!(
                    "APPEND {mailbox} \"01-Jan-2024 10:{:02}:00 +0000\" {{msg:m{i}}}",
                    i % 60
                )
            })
            .collect());
    }
    Ok(vec![line.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_parses_into_sessions_steps_and_differences() {
        let text = "# two sessions\nsetup: fill INBOX 2\nnoauth: C\nA: SELECT INBOX\n\
                    B: NOOP\ndiffers: hidden => NO [CANNOT]\nC: LOGIN $USER $PASS\n";
        let s = Script::parse("two", Path::new("two.txt"), text).unwrap();
        assert_eq!(s.sessions, vec![0, 1, 2]);
        assert_eq!(s.noauth, vec![2]);
        assert_eq!(s.steps.len(), 3);
        let d = s.steps[1].differs.as_ref().unwrap();
        assert_eq!(d.tandem.as_deref(), Some("NO [CANNOT]"));
        assert_eq!(s.comments, vec!["two sessions".to_string()]);
        assert!(Script::parse("x", Path::new("x"), "Z: NOOP\n").is_err());
        assert!(Script::parse("x", Path::new("x"), "differs: a\n").is_err());
    }

    #[test]
    fn placeholders_expand_into_literals() {
        let e = expand("APPEND INBOX {msg:a} {lit:xy}", "u").unwrap();
        assert_eq!(e.parts.len(), 3);
        assert_eq!(e.literals[1], b"xy".to_vec());
        assert_eq!(e.parts[0], b"APPEND INBOX ".to_vec());
        assert_eq!(e.parts[2], b"".to_vec());
        let e = expand("LOGIN $USER $PASS", "u").unwrap();
        assert_eq!(
            e.parts,
            vec![format!("LOGIN u {USER_PASSWORD}").into_bytes()]
        );
        assert_eq!(setup_commands("fill INBOX 2").unwrap().len(), 2);
    }
}
