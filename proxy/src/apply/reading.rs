//! What the applier reads out of its backend's answers: SEARCH numbers,
//! APPENDUID and COPYUID (RFC 4315), a FETCH's size, date and body.

use tandem_parser::response::{Code, Response};
use tandem_parser::seqset::SequenceSet;

use crate::backend::Reply;

/// (UID, RFC822.SIZE, INTERNALDATE) of a FETCH response that has them.
pub(super) fn size_and_date(line: &[u8]) -> Option<(u32, u32, String)> {
    let s = std::str::from_utf8(line).ok()?;
    let number =
        |key: &str| -> Option<u32> { s.split(key).nth(1)?.split([' ', ')']).next()?.parse().ok() };
    let date = s.split("INTERNALDATE \"").nth(1)?.split('"').next()?;
    Some((number("UID ")?, number("RFC822.SIZE ")?, date.to_string()))
}

/// The data of the first literal in a response.
pub(crate) fn first_literal(resp: &[u8]) -> Option<Vec<u8>> {
    let open = resp.iter().position(|&b| b == b'{')?;
    let close = open + resp[open..].iter().position(|&b| b == b'}')?;
    let n: usize = std::str::from_utf8(&resp[open + 1..close])
        .ok()?
        .parse()
        .ok()?;
    let start = close + 3;
    resp.get(start..start.checked_add(n)?).map(<[u8]>::to_vec)
}

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

fn tagged_code(r: &Reply) -> Vec<u8> {
    format!("t OK {}\r\n", r.text).into_bytes()
}

/// The local UIDVALIDITY and UIDs of an APPENDUID code, in order.
pub(super) fn appenduid(r: &Reply) -> Option<(u32, Vec<u32>)> {
    let line = tagged_code(r);
    let resp = Response::parse(&line).ok()?;
    match resp.code()? {
        Code::AppendUid {
            uidvalidity, uids, ..
        } => Some((*uidvalidity, set_in_order(uids))),
        _ => None,
    }
}

/// The source and destination UIDs of a COPYUID code (tagged or untagged,
/// as MOVE sends it), paired by position.
pub(super) fn copyuid(r: &Reply) -> Option<(Vec<u32>, Vec<u32>)> {
    let tagged = tagged_code(r);
    let lines = r.untagged.iter().map(Vec::as_slice);
    for line in lines.chain(std::iter::once(tagged.as_slice())) {
        let Ok(resp) = Response::parse(line) else {
            continue;
        };
        if let Some(Code::CopyUid { source, dest, .. }) = resp.code() {
            let (s, d) = (set_in_order(source), set_in_order(dest));
            if s.len() == d.len() {
                return Some((s, d));
            }
        }
    }
    None
}

/// The members of a UID set in the order written (RFC 4315 pairs by
/// position), without `*`.
fn set_in_order(set: &SequenceSet) -> Vec<u32> {
    let mut out = Vec::new();
    for item in set.items() {
        let (lo, hi) = item.bounds(u32::MAX);
        if hi - lo > 10_000_000 {
            break;
        }
        out.extend(lo..=hi);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::size_and_date;

    #[test]
    fn size_and_date_are_read_from_fetch_responses_of_either_backend() {
        assert_eq!(
            size_and_date(
                b"* 3 FETCH (UID 7 RFC822.SIZE 1234 INTERNALDATE \"29-Nov-2026 11:00:00 +0000\")"
            ),
            Some((7, 1234, "29-Nov-2026 11:00:00 +0000".to_string()))
        );
        // Another order (Cyrus may answer UID last).
        assert_eq!(
            size_and_date(
                b"* 1 FETCH (RFC822.SIZE 9 INTERNALDATE \" 1-Dec-2026 01:02:03 -0500\" UID 12)"
            ),
            Some((12, 9, " 1-Dec-2026 01:02:03 -0500".to_string()))
        );
        assert_eq!(size_and_date(b"* 1 FETCH (UID 12 FLAGS (\\Seen))"), None);
    }
}
