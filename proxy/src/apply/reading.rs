//! What the applier reads out of its backend's answers: SEARCH numbers,
//! APPENDUID and COPYUID (RFC 4315), a FETCH's size, date and body.

use tandem_parser::response::Response;

use crate::backend::Reply;

/// (UID, RFC822.SIZE, INTERNALDATE) of a FETCH response that has them.
pub(super) fn size_and_date(line: &[u8]) -> Option<(u32, u32, String)> {
    let r = Response::parse(line).ok()?;
    let date = String::from_utf8_lossy(&r.internal_date()?).into_owned();
    Some((r.fetch_uid()?, r.rfc822_size()?, date))
}

/// The data of the first literal in a response.
pub(super) fn first_literal(resp: &[u8]) -> Option<Vec<u8>> {
    Response::parse(resp)
        .ok()?
        .first_literal()
        .map(<[u8]>::to_vec)
}

/// The numbers of the SEARCH responses of a reply, sorted.
pub(crate) fn search_numbers(r: &Reply) -> Vec<u32> {
    let mut out = Vec::new();
    for line in &r.untagged {
        if let Ok(resp) = Response::parse(line) {
            if let tandem_parser::response::ResponseBody::Search { numbers, .. } = &resp.body {
                out.extend(numbers.iter().map(|(n, _)| *n));
            }
        }
    }
    out.sort_unstable();
    out
}

/// The local UIDVALIDITY and UIDs of an APPENDUID code, in order.
pub(super) fn appenduid(r: &Reply) -> Option<(u32, Vec<u32>)> {
    r.tagged.appenduid()
}

/// The source and destination UIDs of a COPYUID code (tagged or untagged,
/// as MOVE sends it), paired by position.
pub(super) fn copyuid(r: &Reply) -> Option<(Vec<u32>, Vec<u32>)> {
    let untagged = r.untagged.iter().filter_map(|line| {
        let resp = Response::parse(line).ok()?;
        resp.code()?.copyuid()
    });
    let mut all = untagged.chain(r.tagged.copyuid());
    all.next().map(|(_, s, d)| (s, d))
}

#[cfg(test)]
mod tests {
    use super::size_and_date;

    #[test]
    fn size_and_date_are_read_from_fetch_responses_of_either_backend() {
        assert_eq!(
            size_and_date(
                b"* 3 FETCH (UID 7 RFC822.SIZE 1234 INTERNALDATE \"29-Nov-2026 11:00:00 +0000\")\r\n"
            ),
            Some((7, 1234, "29-Nov-2026 11:00:00 +0000".to_string()))
        );
        // Another order (Cyrus may answer UID last).
        assert_eq!(
            size_and_date(
                b"* 1 FETCH (RFC822.SIZE 9 INTERNALDATE \" 1-Dec-2026 01:02:03 -0500\" UID 12)\r\n"
            ),
            Some((12, 9, " 1-Dec-2026 01:02:03 -0500".to_string()))
        );
        assert_eq!(
            size_and_date(b"* 1 FETCH (UID 12 FLAGS (\\Seen))\r\n"),
            None
        );
    }
}
