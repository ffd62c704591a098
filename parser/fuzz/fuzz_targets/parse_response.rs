//! Response parsing never panics; rewriting with identity maps changes no
//! byte; head and skeleton parsing never panic; nor do the readers of
//! `reply` (accessors and `Reply::parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_parser::reply::{self, Reply};
use tandem_parser::response::Response;
use tandem_parser::rewrite::{rewrite_response, ResponseMaps, Scope};
use tandem_parser::uidmap::{Identity, UidMap};

struct Same;

impl ResponseMaps for Same {
    fn uids(&self, _: Scope<'_>) -> Option<&dyn UidMap> {
        Some(&Identity)
    }
    fn uid_validity(&self, _: Scope<'_>, local: u32) -> Option<u32> {
        Some(local)
    }
    fn uid_next(&self, _: Scope<'_>, local: u32) -> Option<u32> {
        Some(local)
    }
    fn search_returns_uids(&self) -> bool {
        true
    }
}

fn read_all(r: &Response<'_>) {
    let _ = (r.exists(), r.fetch_seq(), r.fetch_uid(), r.fetch_flags());
    let _ = (r.rfc822_size(), r.internal_date(), r.first_literal());
    let _ = (r.uidvalidity(), r.list_delimiter(), r.personal_namespace());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Response::parse_fetch_head(data) {
        read_all(&r);
    }
    if let Ok(r) = Response::parse_skeleton(data) {
        read_all(&r);
    }
    if let Ok(r) = Response::parse(data) {
        read_all(&r);
        assert_eq!(rewrite_response(&r, &Same).unwrap().as_ref(), data);
    }
    let _ = reply::tag(data);
    if let Ok(r) = Reply::parse(data) {
        let _ = (r.appenduid(), r.copyuid(), r.has_code(b"UIDNEXT"));
        assert!(r.text().len() <= r.resp_text().len());
    }
});
