//! What a backend would refuse in a mutation's arguments, refused before
//! it is proposed: a change every backend refuses would otherwise be
//! retried by every applier and answered late, as a failure to apply.

/// The system flags a client may set (RFC 9051 section 2.3.2); `\Recent`
/// is the server's own (RFC 3501), and no other `\` flag exists.
const SYSTEM_FLAGS: [&str; 5] = ["\\ANSWERED", "\\FLAGGED", "\\DELETED", "\\SEEN", "\\DRAFT"];

/// The first flag of `flags` no backend stores, if any.
pub(crate) fn bad_flag<'f>(flags: impl IntoIterator<Item = &'f [u8]>) -> Option<String> {
    flags.into_iter().find_map(|f| {
        let upper = String::from_utf8_lossy(f).to_ascii_uppercase();
        (upper.starts_with('\\') && !SYSTEM_FLAGS.contains(&upper.as_str()))
            .then(|| String::from_utf8_lossy(f).to_string())
    })
}

/// Whether `s` is an RFC 3501 `date-time` (without its quotes):
/// `dd-Mon-yyyy hh:mm:ss +zzzz`, the day maybe one digit or space-padded.
pub(crate) fn is_date_time(s: &str) -> bool {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    let s = s.strip_prefix(' ').unwrap_or(s);
    let mut parts = s.split(' ');
    let (Some(date), Some(time), Some(zone), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let day_ok = d.len() == 3
        && (digits(d[0], 1) || digits(d[0], 2))
        && d[0].parse::<u32>().is_ok_and(|n| (1..=31).contains(&n));
    let ok_date = day_ok && MONTHS.contains(&d[1].to_ascii_uppercase().as_str()) && digits(d[2], 4);
    let ok_time = t.len() == 3
        && t.iter().all(|p| digits(p, 2))
        && t[0].parse::<u32>().is_ok_and(|h| h < 24)
        && t[1].parse::<u32>().is_ok_and(|m| m < 60)
        && t[2].parse::<u32>().is_ok_and(|s| s < 61);
    let ok_zone =
        zone.len() == 5 && matches!(zone.as_bytes()[0], b'+' | b'-') && digits(&zone[1..], 4);
    ok_date && ok_time && ok_zone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_five_system_flags_and_keywords_are_stored() {
        let table: [(&[&str], Option<&str>); 5] = [
            (&["\\Seen", "\\flagged", "$Label"], None),
            (&["\\Recent"], Some("\\Recent")),
            (&["\\Seen", "\\Bogus"], Some("\\Bogus")),
            (&["Junk", "NonJunk"], None),
            (&[], None),
        ];
        for (flags, want) in table {
            let got = bad_flag(flags.iter().map(|f| f.as_bytes()));
            assert_eq!(got.as_deref(), want, "{flags:?}");
        }
    }

    #[test]
    fn dates_follow_rfc_3501() {
        for good in [
            "07-Dec-2026 16:00:00 +0000",
            " 7-Dec-2026 16:00:00 -0130",
            "7-dec-2026 23:59:60 +0100",
        ] {
            assert!(is_date_time(good), "{good}");
        }
        for bad in [
            "",
            "yesterday",
            "32-Dec-2026 16:00:00 +0000",
            "07-Foo-2026 16:00:00 +0000",
            "07-Dec-26 16:00:00 +0000",
            "07-Dec-2026 24:00:00 +0000",
            "07-Dec-2026 16:00 +0000",
            "07-Dec-2026 16:00:00 UTC",
            "07-Dec-2026 16:00:00 +0000 extra",
        ] {
            assert!(!is_date_time(bad), "{bad}");
        }
    }
}
