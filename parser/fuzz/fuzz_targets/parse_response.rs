//! Response parsing never panics; rewriting with identity maps changes no
//! byte; head and skeleton parsing never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
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

fuzz_target!(|data: &[u8]| {
    let _ = Response::parse_fetch_head(data);
    let _ = Response::parse_skeleton(data);
    if let Ok(r) = Response::parse(data) {
        assert_eq!(rewrite_response(&r, &Same).unwrap().as_ref(), data);
    }
});
