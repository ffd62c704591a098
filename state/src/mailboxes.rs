//! `apply` for the mailbox family: CREATE, DELETE, RENAME, SUBSCRIBE and
//! UNSUBSCRIBE, and a node's registration of its backend kind.

use tandem_parser::seqset::Ranges;

use crate::tables::{
    backend_key, children, get_mailbox, key, normalize, put_mailbox, Mailbox, COUNTERS,
    SUBSCRIPTIONS,
};
use crate::work::{no, InboxMove, Outcome, Work};
use crate::{accepted, Apply, SmResult};

/// CREATE: a new mailbox with a new UIDVALIDITY and UIDNEXT 1.
pub(crate) fn create(cx: Apply<'_>, name: String) -> SmResult<Outcome> {
    let name = normalize(&name);
    let mut boxes = cx.mailboxes()?;
    if get_mailbox(&boxes, &cx.user, &name)?.is_some() {
        return Ok(no("ALREADYEXISTS", "Mailbox already exists"));
    }
    let uidvalidity = cx.next_uidvalidity()?;
    let m = Mailbox {
        uidvalidity,
        uidnext: 1,
        uids: Vec::new(),
    };
    put_mailbox(&mut boxes, &cx.user, &name, &m)?;
    drop(boxes);
    let seq = cx.queue(&Work::Create {
        user: cx.user.clone(),
        name,
        uidvalidity,
    })?;
    Ok(accepted(seq, uidvalidity, Vec::new(), Vec::new()))
}

/// DELETE. `leaf` is `Some(separator)` for [`crate::Op::DeleteLeaf`]: a
/// mailbox with children is then refused with `[HASCHILDREN]`.
pub(crate) fn delete(cx: Apply<'_>, name: String, leaf: Option<Option<char>>) -> SmResult<Outcome> {
    let name = normalize(&name);
    if name == "INBOX" {
        return Ok(no("CANNOT", "INBOX cannot be deleted"));
    }
    let mut boxes = cx.mailboxes()?;
    let Some(m) = get_mailbox(&boxes, &cx.user, &name)? else {
        return Ok(no("NONEXISTENT", "No such mailbox"));
    };
    if let Some(separator) = leaf {
        if !children(&boxes, &cx.user, &name, separator)?.is_empty() {
            return Ok(no("HASCHILDREN", "Mailbox has inferior hierarchical names"));
        }
    }
    boxes.remove(key(&cx.user, &name).as_str())?;
    drop(boxes);
    let seq = cx.queue(&Work::Delete {
        user: cx.user.clone(),
        name,
        uidvalidity: m.uidvalidity,
    })?;
    Ok(accepted(seq, m.uidvalidity, Vec::new(), Vec::new()))
}

/// RENAME. Children (by `separator`) move along and every mailbox keeps its
/// UIDVALIDITY; RENAME INBOX instead moves INBOX's messages into a new
/// mailbox (RFC 9051 section 6.3.6), and INBOX stays, empty, with its
/// UIDVALIDITY and UIDNEXT.
pub(crate) fn rename(
    cx: Apply<'_>,
    from: String,
    to: String,
    separator: Option<char>,
) -> SmResult<Outcome> {
    let (from, to) = (normalize(&from), normalize(&to));
    if to == "INBOX" {
        return Ok(no("ALREADYEXISTS", "INBOX already exists"));
    }
    let user = cx.user.as_str();
    let mut boxes = cx.mailboxes()?;
    let Some(mut src) = get_mailbox(&boxes, user, &from)? else {
        return Ok(no("NONEXISTENT", "No such mailbox"));
    };
    if get_mailbox(&boxes, user, &to)?.is_some() {
        return Ok(no("ALREADYEXISTS", "Mailbox already exists"));
    }
    if let Some(sep) = separator {
        if to.starts_with(&format!("{from}{sep}")) {
            return Ok(no("CANNOT", "Cannot rename a mailbox into itself"));
        }
    }
    let mut inbox = None;
    if from == "INBOX" {
        let uidvalidity = cx.next_uidvalidity()?;
        let old: Vec<u32> = src.uid_set().iter().collect();
        let new: Vec<u32> = (1..=old.len() as u32).collect();
        let m = Mailbox {
            uidvalidity,
            uidnext: new.len() as u32 + 1,
            uids: Ranges::from_ranges(new.iter().map(|&u| (u, u)))
                .ranges()
                .to_vec(),
        };
        put_mailbox(&mut boxes, user, &to, &m)?;
        src.uids.clear();
        put_mailbox(&mut boxes, user, &from, &src)?;
        inbox = Some(InboxMove {
            inbox_uidvalidity: src.uidvalidity,
            uidvalidity,
            pairs: old.into_iter().zip(new).collect(),
        });
    } else {
        let kids = children(&boxes, user, &from, separator)?;
        boxes.remove(key(user, &from).as_str())?;
        put_mailbox(&mut boxes, user, &to, &src)?;
        for kid in kids {
            let Some(m) = get_mailbox(&boxes, user, &kid)? else {
                continue;
            };
            boxes.remove(key(user, &kid).as_str())?;
            let moved = format!("{to}{}", &kid[from.len()..]);
            put_mailbox(&mut boxes, user, &moved, &m)?;
        }
    }
    drop(boxes);
    let uidvalidity = inbox.as_ref().map_or(src.uidvalidity, |i| i.uidvalidity);
    let seq = cx.queue(&Work::Rename {
        user: cx.user.clone(),
        from,
        to,
        inbox,
    })?;
    Ok(accepted(seq, uidvalidity, Vec::new(), Vec::new()))
}

/// SUBSCRIBE (`on`) or UNSUBSCRIBE. Only an existing mailbox can be
/// subscribed; any name can be unsubscribed.
pub(crate) fn subscribe(cx: Apply<'_>, name: String, on: bool) -> SmResult<Outcome> {
    let name = normalize(&name);
    if on && get_mailbox(&cx.mailboxes()?, &cx.user, &name)?.is_none() {
        return Ok(no("NONEXISTENT", "No such mailbox"));
    }
    let mut subs = cx.txn.open_table(SUBSCRIPTIONS)?;
    if on {
        subs.insert(key(&cx.user, &name).as_str(), ())?;
    } else {
        subs.remove(key(&cx.user, &name).as_str())?;
    }
    drop(subs);
    let seq = cx.queue(&Work::Subscribe {
        user: cx.user.clone(),
        name,
        on,
    })?;
    Ok(accepted(seq, 0, Vec::new(), Vec::new()))
}

/// A mail node registers its backend's kind; no backend work.
pub(crate) fn register_backend(cx: Apply<'_>, node: u64, kind: &str) -> SmResult<Outcome> {
    let mut counters = cx.txn.open_table(COUNTERS)?;
    counters.insert(backend_key(kind, node).as_str(), 1)?;
    Ok(accepted(0, 0, Vec::new(), Vec::new()))
}
