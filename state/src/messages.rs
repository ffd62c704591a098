//! `apply` for the message family: APPEND (and adoption), COPY and MOVE,
//! STORE, EXPUNGE. Each names its mailbox with the UIDVALIDITY the client
//! saw (APPEND names it by name only): a mailbox replaced since is refused.

use tandem_parser::seqset::Ranges;

use crate::entry::{FlagMode, NewMessage, Replaces};
use crate::tables::{
    get_mailbox, normalize, put_mailbox, strict_messages_in, Mailbox, ADOPTED, COUNTERS,
};
use crate::work::{no, Outcome, Work};
use crate::{accepted, Apply, SmResult};

/// A mailbox as a client named it: its name and the UIDVALIDITY it saw.
pub(crate) type Seen = (String, u32);

/// The canonical UIDs `first..first + n`, if the mailbox has them left
/// (UID 4294967295 is never given: tandem uses it for "no such message").
fn allocate(first: u32, n: usize) -> Option<u32> {
    u32::try_from(n)
        .ok()
        .and_then(|n| first.checked_add(n))
        .filter(|&x| x < u32::MAX)
}

/// Whether `m` is still the mailbox the client saw.
fn still(m: Option<Mailbox>, uidvalidity: u32) -> Result<Mailbox, Outcome> {
    match m {
        None => Err(no("NONEXISTENT", "The selected mailbox no longer exists")),
        Some(m) if m.uidvalidity != uidvalidity => {
            Err(no("NONEXISTENT", "The selected mailbox was replaced"))
        }
        Some(m) => Ok(m),
    }
}

/// APPEND: the messages get the next UIDs in order. Messages a Cyrus
/// backend would refuse are refused once a Cyrus node registered, before
/// anything is recorded; an adoption (`replaces`) is taken once per
/// original. `literal8` says which messages came as a literal8 (empty:
/// none).
pub(crate) fn append(
    cx: Apply<'_>,
    mailbox: String,
    messages: Vec<NewMessage>,
    replaces: Option<Replaces>,
    literal8: Vec<bool>,
) -> SmResult<Outcome> {
    if !literal8.is_empty() && literal8.len() != messages.len() {
        return Ok(no("CANNOT", "Literal kinds do not match the messages"));
    }
    let mailbox = normalize(&mailbox);
    let user = cx.user.as_str();
    let mut boxes = cx.mailboxes()?;
    let Some(mut m) = get_mailbox(&boxes, user, &mailbox)? else {
        return Ok(no("TRYCREATE", "No such mailbox"));
    };
    if strict_messages_in(&cx.txn.open_table(COUNTERS)?)? {
        for msg in &messages {
            if let Err(defect) = tandem_parser::message::check(&msg.body) {
                return Ok(no("CANNOT", defect.to_string()));
            }
        }
    }
    if let Some(r) = &replaces {
        if r.uids.len() != messages.len() {
            return Ok(no("CANNOT", "Adoption does not match its messages"));
        }
        let mut adopted = cx.txn.open_table(ADOPTED)?;
        let keys: Vec<String> = r
            .uids
            .iter()
            .map(|uid| format!("{}\0{user}\0{}\0{uid}", r.node, r.local_uidvalidity))
            .collect();
        for k in &keys {
            if redb::ReadableTable::get(&adopted, k.as_str())?.is_some() {
                return Ok(no("ALREADYEXISTS", "Already adopted"));
            }
        }
        for k in &keys {
            adopted.insert(k.as_str(), ())?;
        }
    }
    let first = m.uidnext;
    let Some(next) = allocate(first, messages.len()) else {
        return Ok(no("LIMIT", "The mailbox has used up its UIDs"));
    };
    let uids: Vec<u32> = (first..next).collect();
    let mut set = m.uid_set();
    if next > first {
        set.insert(first, next - 1);
    }
    m.uids = set.ranges().to_vec();
    m.uidnext = next;
    put_mailbox(&mut boxes, user, &mailbox, &m)?;
    drop(boxes);
    let work = if literal8.contains(&true) {
        Work::AppendLiteral8 {
            user: cx.user.clone(),
            mailbox,
            uidvalidity: m.uidvalidity,
            uids: uids.clone(),
            messages,
            literal8,
        }
    } else {
        Work::Append {
            user: cx.user.clone(),
            mailbox,
            uidvalidity: m.uidvalidity,
            uids: uids.clone(),
            messages,
            replaces,
        }
    };
    let seq = cx.queue(&work)?;
    Ok(accepted(seq, m.uidvalidity, uids, Vec::new()))
}

/// COPY, or MOVE (`remove`): the source messages that still exist get the
/// destination's next UIDs, in source order; MOVE removes them from the
/// source (into the source itself: the copies stay, the originals go).
pub(crate) fn copy(
    cx: Apply<'_>,
    (from, from_uidvalidity): Seen,
    uids: Vec<(u32, u32)>,
    to: String,
    remove: bool,
) -> SmResult<Outcome> {
    let (from, to) = (normalize(&from), normalize(&to));
    let user = cx.user.as_str();
    let mut boxes = cx.mailboxes()?;
    let mut src = match still(get_mailbox(&boxes, user, &from)?, from_uidvalidity) {
        Ok(m) => m,
        Err(refused) => return Ok(refused),
    };
    let Some(mut dst) = get_mailbox(&boxes, user, &to)? else {
        return Ok(no("TRYCREATE", "No such mailbox"));
    };
    let present = src.uid_set().intersection(&Ranges::from_ranges(uids));
    let n = present.len();
    let first = dst.uidnext;
    let Some(next) = usize::try_from(n).ok().and_then(|n| allocate(first, n)) else {
        return Ok(no("LIMIT", "The mailbox has used up its UIDs"));
    };
    let source: Vec<u32> = present.iter().collect();
    let given: Vec<u32> = (first..next).collect();
    if n > 0 {
        let mut set = dst.uid_set();
        set.insert(first, next - 1);
        dst.uids = set.ranges().to_vec();
        dst.uidnext = next;
    }
    if remove && from != to {
        src.uids = src.uid_set().difference(&present).ranges().to_vec();
        put_mailbox(&mut boxes, user, &from, &src)?;
    } else if remove {
        let mut set = dst.uid_set().difference(&present);
        if n > 0 {
            set.insert(first, next - 1);
        }
        dst.uids = set.ranges().to_vec();
    }
    put_mailbox(&mut boxes, user, &to, &dst)?;
    drop(boxes);
    let seq = cx.queue(&Work::Copy {
        user: cx.user.clone(),
        from,
        from_uidvalidity,
        to,
        to_uidvalidity: dst.uidvalidity,
        pairs: source.iter().copied().zip(given.iter().copied()).collect(),
        remove,
    })?;
    Ok(accepted(seq, dst.uidvalidity, given, source))
}

/// STORE: flags change only on messages that still exist; the canonical
/// state keeps no flags (the backends do), so only the work is queued.
pub(crate) fn store(
    cx: Apply<'_>,
    (mailbox, uidvalidity): Seen,
    uids: Vec<(u32, u32)>,
    mode: FlagMode,
    flags: Vec<String>,
) -> SmResult<Outcome> {
    let mailbox = normalize(&mailbox);
    let m = match still(
        get_mailbox(&cx.mailboxes()?, &cx.user, &mailbox)?,
        uidvalidity,
    ) {
        Ok(m) => m,
        Err(refused) => return Ok(refused),
    };
    let present = m.uid_set().intersection(&Ranges::from_ranges(uids));
    let touched: Vec<u32> = present.iter().collect();
    let seq = cx.queue(&Work::Store {
        user: cx.user.clone(),
        mailbox,
        uidvalidity,
        uids: present.ranges().to_vec(),
        mode,
        flags,
    })?;
    Ok(accepted(seq, uidvalidity, touched, Vec::new()))
}

/// EXPUNGE of explicit canonical UIDs (never "whatever is \Deleted").
pub(crate) fn expunge(
    cx: Apply<'_>,
    (mailbox, uidvalidity): Seen,
    uids: Vec<(u32, u32)>,
) -> SmResult<Outcome> {
    let mailbox = normalize(&mailbox);
    let user = cx.user.as_str();
    let mut boxes = cx.mailboxes()?;
    let mut m = match still(get_mailbox(&boxes, user, &mailbox)?, uidvalidity) {
        Ok(m) => m,
        Err(refused) => return Ok(refused),
    };
    let present = m.uid_set().intersection(&Ranges::from_ranges(uids));
    m.uids = m.uid_set().difference(&present).ranges().to_vec();
    put_mailbox(&mut boxes, user, &mailbox, &m)?;
    drop(boxes);
    let touched: Vec<u32> = present.iter().collect();
    let seq = cx.queue(&Work::Expunge {
        user: cx.user.clone(),
        mailbox,
        uidvalidity,
        uids: present.ranges().to_vec(),
    })?;
    Ok(accepted(seq, uidvalidity, touched, Vec::new()))
}
