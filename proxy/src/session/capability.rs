//! What clients see of the backend's capabilities: those tandem cannot
//! keep consistent or follow are filtered out, and tandem's own are added
//! (STARTTLS when it offers it, LOGINDISABLED, APPENDLIMIT from its literal
//! limit). Pure: a response line in, a response line out.

use tandem_parser::response::{Code, Response, ResponseBody};
use tandem_parser::rewrite::{apply, capability_edits};

/// Capabilities a client never sees through tandem, because their values
/// differ per node (MODSEQ, OBJECTID), because the proxy cannot follow them
/// (COMPRESS, NOTIFY, UIDONLY, SORT/THREAD results not rewritten yet),
/// because their commands change state tandem does not replicate and are
/// refused (Cyrus's ANNOTATE, METADATA, URLAUTH, SCAN, XMOVE; special-use
/// on CREATE; REPLACE, MULTISEARCH, UNAUTHENTICATE), or because tandem
/// cannot learn the user (SASL mechanisms other than PLAIN).
pub fn is_filtered_capability(name: &[u8]) -> bool {
    let upper = name.to_ascii_uppercase();
    let exact: &[&[u8]] = &[
        b"CONDSTORE",
        b"QRESYNC",
        b"OBJECTID",
        b"NOTIFY",
        b"UIDONLY",
        b"STARTTLS",
        b"SORT",
        b"ESORT",
        b"SEARCHRES",
        b"CATENATE",
        b"LOGINDISABLED",
        b"ANNOTATE-EXPERIMENT-1",
        b"METADATA",
        b"METADATA-SERVER",
        b"LIST-METADATA",
        b"CREATE-SPECIAL-USE",
        b"URLAUTH",
        b"SCAN",
        b"XMOVE",
        b"REPLACE",
        b"MULTISEARCH",
        b"UNAUTHENTICATE",
    ];
    let prefixes: &[&[u8]] = &[
        b"COMPRESS=",
        b"SORT=",
        b"THREAD=",
        b"CONTEXT=",
        b"UTF8=",
        b"APPENDLIMIT",
        b"X-",
        b"XLIST",
        b"URLAUTH=",
    ];
    if exact.contains(&upper.as_slice()) || prefixes.iter().any(|p| upper.starts_with(p)) {
        return true;
    }
    if let Some(mech) = upper.strip_prefix(b"AUTH=") {
        return mech != b"PLAIN";
    }
    false
}

/// The capabilities tandem adds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Added {
    /// STARTTLS (offered on a plain connection when configured).
    pub(super) starttls: bool,
    /// LOGINDISABLED (plaintext login refused here).
    pub(super) login_disabled: bool,
    /// APPENDLIMIT: the largest literal accepted.
    pub(super) append_limit: u64,
}

/// A single-line response with filtered capabilities and tandem's own
/// added; any other line unchanged.
pub(super) fn filter(line: &[u8], added: Added) -> Vec<u8> {
    let Ok(resp) = Response::parse(line) else {
        return line.to_vec();
    };
    let is_caps = matches!(
        resp.body,
        ResponseBody::Capability(_)
            | ResponseBody::Status {
                code: Some(Code::Capability(_)),
                ..
            }
            | ResponseBody::Continue {
                code: Some(Code::Capability(_)),
                ..
            }
    );
    if !is_caps {
        return line.to_vec();
    }
    let edits = capability_edits(&resp, &is_filtered_capability);
    let mut out = apply(line, &edits).into_owned();
    let mut extra = String::new();
    if added.starttls {
        extra.push_str(" STARTTLS");
    }
    if added.login_disabled {
        extra.push_str(" LOGINDISABLED");
    }
    extra.push_str(&format!(" APPENDLIMIT={}", added.append_limit));
    let at = if matches!(resp.body, ResponseBody::Capability(_)) {
        out.len().saturating_sub(2)
    } else {
        // Inside the [CAPABILITY ...] code: before its "]".
        out.iter().position(|&b| b == b']').unwrap_or(out.len())
    };
    out.splice(at..at, extra.bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filtered_capabilities() {
        for c in [
            "CONDSTORE",
            "qresync",
            "AUTH=SCRAM-SHA-256-PLUS",
            "AUTH=LOGIN",
            "COMPRESS=DEFLATE",
            "X-FOO",
            "THREAD=REFS",
            "APPENDLIMIT=1000",
            // Cyrus 3.6's, whose commands tandem refuses.
            "ANNOTATE-EXPERIMENT-1",
            "METADATA",
            "LIST-METADATA",
            "CREATE-SPECIAL-USE",
            "URLAUTH=BINARY",
            "SCAN",
            "XMOVE",
        ] {
            assert!(is_filtered_capability(c.as_bytes()), "{c}");
        }
        for c in [
            "IMAP4rev1",
            "UIDPLUS",
            "MOVE",
            "AUTH=PLAIN",
            "IDLE",
            "LITERAL+",
            "MULTIAPPEND",
            "SPECIAL-USE",
            "LIST-STATUS",
            "ESEARCH",
        ] {
            assert!(!is_filtered_capability(c.as_bytes()), "{c}");
        }
    }

    #[test]
    fn tandem_adds_its_own_capabilities_where_the_backend_lists_them() {
        let added = Added {
            starttls: true,
            login_disabled: false,
            append_limit: 1000,
        };
        assert_eq!(
            filter(b"* CAPABILITY IMAP4rev1 CONDSTORE IDLE\r\n", added),
            b"* CAPABILITY IMAP4rev1 IDLE STARTTLS APPENDLIMIT=1000\r\n".to_vec()
        );
        assert_eq!(
            filter(b"* OK [CAPABILITY IMAP4rev1 SORT] ready\r\n", added),
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS APPENDLIMIT=1000] ready\r\n".to_vec()
        );
        let plain = b"* 3 EXISTS\r\n";
        assert_eq!(filter(plain, added), plain.to_vec());
    }
}
