//! Comparing a script's direct transcript with its tandem transcript, and
//! the report a developer reads: every step, the differing ones with both
//! answers side by side.

use std::fmt::Write as _;

use super::normalize;
use super::runner::Transcript;
use super::script::{letter, Script};

/// Column width of the direct side in a side-by-side table.
const WIDTH: usize = 58;

/// How a script fared.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The script's name.
    pub script: String,
    /// One short line per difference (empty: conforms).
    pub differences: Vec<String>,
    /// The whole report (every step; the differing ones side by side).
    pub report: String,
    /// How long both runs took.
    pub elapsed: std::time::Duration,
}

impl Verdict {
    /// Whether tandem answered as the backend did (up to the script's
    /// documented differences).
    pub fn conforms(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Compares `tandem` against `direct` for `script`.
pub fn compare(script: &Script, direct: &Transcript, tandem: &Transcript) -> Verdict {
    let mut diffs = Vec::new();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "==== {} ({}): {} vs {} ====",
        script.name,
        script.path.display(),
        direct.target,
        tandem.target
    );
    for c in &script.comments {
        let _ = writeln!(out, "  # {c}");
    }
    if let Some((at, why)) = &direct.aborted {
        diffs.push(format!(
            "the script does not run {} (step {at}): {why}",
            direct.target
        ));
    }
    if let Some((at, why)) = &tandem.aborted {
        diffs.push(format!("stopped {} after step {at}: {why}", tandem.target));
    }
    for (s, g) in &direct.greetings {
        let t = tandem
            .greetings
            .iter()
            .find(|(ts, _)| ts == s)
            .map(|x| x.1.clone())
            .unwrap_or_default();
        if &t != g {
            diffs.push(format!("greeting of {}", letter(*s)));
            let _ = writeln!(out, " DIFF  greeting of session {}", letter(*s));
            side_by_side(
                &mut out,
                std::slice::from_ref(g),
                &[t],
                &direct.target,
                &tandem.target,
            );
        }
    }
    for (i, step) in script.steps.iter().enumerate() {
        let d = direct.steps.get(i).map(|o| comparable(&o.lines));
        let t = tandem.steps.get(i).map(|o| comparable(&o.lines));
        let mut head = format!("#{:<2} {}: {}", i + 1, letter(step.session), step.command);
        let slow = |o: Option<&super::runner::Outcome>| {
            o.map(|o| o.elapsed)
                .filter(|e| *e > std::time::Duration::from_secs(1))
        };
        if let Some(e) = slow(direct.steps.get(i)) {
            let _ = write!(head, "   [{} took {e:.1?}]", direct.target);
        }
        if let Some(e) = slow(tandem.steps.get(i)) {
            let _ = write!(head, "   [{} took {e:.1?}]", tandem.target);
        }
        let (Some(d), Some(t)) = (d.clone(), t.clone()) else {
            if d.is_some() || t.is_some() {
                let _ = writeln!(out, "  --   {head}   (not run on one side)");
            }
            continue;
        };
        if let Some(diff) = &step.differs {
            let tagged = t.last().cloned().unwrap_or_default();
            let ok = diff
                .tandem
                .as_ref()
                .is_none_or(|want| tagged.starts_with(want.as_str()));
            if ok {
                let _ = writeln!(
                    out,
                    "  ok   {head}   (documented difference: {})",
                    diff.reason
                );
            } else {
                diffs.push(format!(
                    "step {} {}: {}: tandem should answer {} ({}), answered {tagged}",
                    i + 1,
                    letter(step.session),
                    step.command,
                    diff.tandem.as_deref().unwrap_or(""),
                    diff.reason
                ));
                let _ = writeln!(
                    out,
                    " DIFF  {head}   (documented difference not kept: tandem should answer {}: {})",
                    diff.tandem.as_deref().unwrap_or(""),
                    diff.reason
                );
                side_by_side(&mut out, &d, &t, &direct.target, &tandem.target);
            }
            continue;
        }
        let shown = t.clone();
        let (t, added_uid) = tolerate_added_uid(&d, t);
        let (t, added_code) = tolerate_added_code(&d, t);
        if d == t {
            let note = match (added_uid, added_code) {
                (true, _) => "   (tandem adds UID to a FETCH)",
                (_, true) => "   (tandem adds a response code)",
                _ => "",
            };
            let _ = writeln!(out, "  ok   {head}{note}");
        } else {
            diffs.push(format!(
                "step {} {}: {}",
                i + 1,
                letter(step.session),
                step.command
            ));
            let _ = writeln!(out, " DIFF  {head}");
            side_by_side(&mut out, &d, &shown, &direct.target, &tandem.target);
        }
    }
    // Every path to the capability list must give the same list.
    let consistent = |t: &Transcript| t.capabilities.windows(2).all(|w| w[0].1 == w[1].1);
    if !consistent(tandem) && consistent(direct) {
        diffs.push("capabilities differ between paths (LOGIN code, CAPABILITY)".to_string());
        let _ = writeln!(
            out,
            " DIFF  {} showed different capability lists after login:",
            tandem.target
        );
        for (w, set) in &tandem.capabilities {
            let _ = writeln!(
                out,
                "        {w}: {}",
                set.iter().cloned().collect::<Vec<_>>().join(" ")
            );
        }
    }
    if let Some((at, why)) = &tandem.aborted {
        let _ = writeln!(out, " STOP  {} after step {at}: {why}", tandem.target);
    }
    if let Some((at, why)) = &direct.aborted {
        let _ = writeln!(out, " STOP  {} after step {at}: {why}", direct.target);
    }
    Verdict {
        script: script.name.clone(),
        differences: diffs,
        report: out,
        elapsed: direct.elapsed + tandem.elapsed,
    }
}

/// The lines compared: all but `* n RECENT` (see [`normalize::RECENT`])
/// and untagged OKs without a code (progress texts such as Cyrus's during
/// a RENAME, which tandem's applier hears instead of the client).
fn comparable(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.as_str() != normalize::RECENT && l.as_str() != "* OK")
        .cloned()
        .collect()
}

/// tandem's lines with a `UID n` item taken out of each FETCH response
/// that the direct answer has without it: tandem asks its backend for
/// UIDs (to rewrite them) and passes them on, which RFC 3501 (7.4.2)
/// allows. Says whether it took any out.
fn tolerate_added_uid(direct: &[String], tandem: Vec<String>) -> (Vec<String>, bool) {
    let mut changed = false;
    let lines = tandem
        .into_iter()
        .map(|l| {
            if direct.contains(&l) || !l.contains(" FETCH (") {
                return l;
            }
            match without_uid_item(&l) {
                Some(stripped) if direct.contains(&stripped) => {
                    changed = true;
                    stripped
                }
                _ => l,
            }
        })
        .collect();
    (lines, changed)
}

/// tandem's tagged line without its response code where the direct one
/// has the same status and no code: tandem answers some refusals itself,
/// with RFC 5530 codes (`NO [ALREADYEXISTS]`, `BAD [CANNOT]`) where a
/// backend gave none. Says whether it took one out.
fn tolerate_added_code(direct: &[String], mut tandem: Vec<String>) -> (Vec<String>, bool) {
    let (Some(d), Some(t)) = (direct.last(), tandem.last_mut()) else {
        return (tandem, false);
    };
    let is_status = |l: &str| ["OK", "NO", "BAD"].contains(&l);
    if is_status(d) && t.starts_with(&format!("{d} [")) {
        *t = d.clone();
        return (tandem, true);
    }
    (tandem, false)
}

/// A FETCH response without its `UID n` item, if it has one.
fn without_uid_item(line: &str) -> Option<String> {
    let open = line.find(" FETCH (")? + " FETCH (".len();
    let items = &line[open..];
    let at = if items.starts_with("UID ") {
        0
    } else {
        items.find(" UID ")? + 1
    };
    let digits = items[at + 4..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    if digits == 0 {
        return None;
    }
    let mut end = at + 4 + digits;
    let mut start = at;
    if items[end..].starts_with(' ') {
        end += 1;
    } else {
        start = start.saturating_sub(1);
    }
    Some(format!(
        "{}{}{}",
        &line[..open],
        &items[..start],
        &items[end..]
    ))
}

/// Both answers, aligned on their longest common subsequence, `!` where
/// a line is on one side only or differs.
fn side_by_side(out: &mut String, d: &[String], t: &[String], dl: &str, tl: &str) {
    let dl = format!("[{dl}]");
    let _ = writeln!(out, "        {dl:<WIDTH$} | [{tl}]");
    for (a, b) in align(d, t) {
        let mark = if a == b { ' ' } else { '!' };
        let a = a.unwrap_or("");
        let b = b.unwrap_or("");
        let _ = writeln!(out, "      {mark} {a:<WIDTH$} | {b}");
    }
}

/// Pairs the lines of `a` and `b`: common ones side by side, the others
/// against nothing (or against each other where both sides have one).
fn align<'a>(a: &'a [String], b: &'a [String]) -> Vec<(Option<&'a str>, Option<&'a str>)> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut rows = Vec::new();
    let (mut i, mut j) = (0, 0);
    let mut left: Vec<&str> = Vec::new();
    let mut right: Vec<&str> = Vec::new();
    let flush = |rows: &mut Vec<_>, left: &mut Vec<&'a str>, right: &mut Vec<&'a str>| {
        for k in 0..left.len().max(right.len()) {
            rows.push((left.get(k).copied(), right.get(k).copied()));
        }
        left.clear();
        right.clear();
    };
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            flush(&mut rows, &mut left, &mut right);
            rows.push((Some(a[i].as_str()), Some(b[j].as_str())));
            i += 1;
            j += 1;
        } else if j >= m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            left.push(&a[i]);
            i += 1;
        } else {
            right.push(&b[j]);
            j += 1;
        }
    }
    flush(&mut rows, &mut left, &mut right);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_added_uid_item_is_tolerated_only_where_direct_has_none() {
        assert_eq!(
            without_uid_item("* 2 FETCH (UID 3 FLAGS (\\Seen))").as_deref(),
            Some("* 2 FETCH (FLAGS (\\Seen))")
        );
        assert_eq!(
            without_uid_item("* 2 FETCH (FLAGS (\\Seen) UID 3)").as_deref(),
            Some("* 2 FETCH (FLAGS (\\Seen))")
        );
        let d = vec!["* 2 FETCH (FLAGS (\\Seen))".to_string()];
        let (t, changed) = tolerate_added_uid(&d, vec!["* 2 FETCH (UID 3 FLAGS (\\Seen))".into()]);
        assert!(changed);
        assert_eq!(t, d);
        let d = vec!["* 2 FETCH (UID 4 FLAGS (\\Seen))".to_string()];
        let (_, changed) = tolerate_added_uid(&d, vec!["* 2 FETCH (UID 3 FLAGS (\\Seen))".into()]);
        assert!(!changed);
    }

    #[test]
    fn a_missing_line_is_shown_against_nothing() {
        let d: Vec<String> = ["* 1 EXPUNGE", "OK"].map(String::from).to_vec();
        let t: Vec<String> = ["OK"].map(String::from).to_vec();
        assert_eq!(
            align(&d, &t),
            vec![(Some("* 1 EXPUNGE"), None), (Some("OK"), Some("OK"))]
        );
    }
}
