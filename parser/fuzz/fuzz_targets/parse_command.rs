//! Command parsing never panics; every span lies in the buffer; rewriting
//! with the identity map changes no byte of a set without `*`, and a shift there and back gives
//! the original bytes when the sets hold no `*`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_parser::command::{Command, SetArg};
use tandem_parser::rewrite::rewrite_command;
use tandem_parser::uidmap::{FnMap, Identity};

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = Command::parse(data) else {
        return;
    };
    for set in cmd.uid_sets() {
        assert!(set.span().end <= data.len());
    }
    for m in cmd.mailboxes() {
        assert!(m.raw.end <= data.len());
        let _ = m.value(data);
    }
    let star = 1000;
    let starless = cmd.uid_sets().iter().all(|s| match s {
        SetArg::Set { set, .. } => !set.has_star(),
        SetArg::Saved { .. } => true,
    });
    let small = cmd.uid_sets().iter().all(|s| match s {
        SetArg::Set { set, .. } => set.resolve(star).max().unwrap_or(0) < 5000,
        SetArg::Saved { .. } => true,
    });
    // `*` is resolved, so only sets without it keep their bytes.
    if starless {
        assert_eq!(rewrite_command(&cmd, star, &Identity).unwrap().as_ref(), data);
    }
    if starless && small {
        let fwd = FnMap(|u: u32| u.checked_add(7));
        let back = FnMap(|u: u32| u.checked_sub(7).filter(|&v| v > 0));
        let there = rewrite_command(&cmd, star, &fwd).unwrap();
        let parsed = Command::parse(&there).unwrap();
        let again = rewrite_command(&parsed, star + 7, &back).unwrap();
        assert_eq!(again.as_ref(), data);
    }
});
