//! One function per kind of outbox item: what it sends the backend, and
//! the map changes it records. Each looks for itself first when in doubt
//! (see `doubt`), and an item whose canonical UIDs the map already holds
//! was applied before: it is skipped.

use std::collections::HashMap;

use tandem_parser::encode::{self, AppendItem, MailboxVerb};
use tandem_parser::seqset::Ranges;
use tandem_parser::uidmap::{map_ranges, RunMap, UidMap};
use tandem_state::{FlagMode, InboxMove, NewMessage, Replaces, Work};

use super::maps::MailboxMap;
use super::reading::{appenduid, copyuid};
use super::worker::Worker;
use super::{ApplyError, Change};
use crate::backend::Status;

/// A canonical mailbox as an item names it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target<'a> {
    /// The user.
    pub(super) user: &'a str,
    /// The mailbox's name.
    pub(super) name: &'a str,
    /// Its canonical UIDVALIDITY.
    pub(super) uidvalidity: u32,
}

impl Worker {
    /// Applies one item; sets `found` when it was already applied (looked
    /// for only when `doubt`).
    pub(super) async fn apply(
        &mut self,
        work: &Work,
        doubt: bool,
    ) -> Result<Vec<Change>, ApplyError> {
        match work {
            Work::Create {
                user,
                name,
                uidvalidity,
            } => self.create(user, name, *uidvalidity).await,
            Work::Delete {
                user,
                name,
                uidvalidity,
            } => self.delete(user, name, *uidvalidity).await,
            Work::Rename {
                user,
                from,
                to,
                inbox,
            } => self.rename(user, from, to, inbox.as_ref(), doubt).await,
            Work::Subscribe { user, name, on } => self.subscribe(user, name, *on).await,
            Work::Append {
                user,
                mailbox,
                uidvalidity,
                uids,
                messages,
                replaces,
            } => {
                let t = Target {
                    user,
                    name: mailbox,
                    uidvalidity: *uidvalidity,
                };
                self.append(t, uids, (messages, &[]), replaces.as_ref(), doubt)
                    .await
            }
            Work::AppendLiteral8 {
                user,
                mailbox,
                uidvalidity,
                uids,
                messages,
                literal8,
            } => {
                let t = Target {
                    user,
                    name: mailbox,
                    uidvalidity: *uidvalidity,
                };
                self.append(t, uids, (messages, literal8), None, doubt)
                    .await
            }
            Work::Copy {
                user,
                from,
                from_uidvalidity,
                to,
                to_uidvalidity,
                pairs,
                remove,
            } => {
                let from = Target {
                    user,
                    name: from,
                    uidvalidity: *from_uidvalidity,
                };
                let to = Target {
                    user,
                    name: to,
                    uidvalidity: *to_uidvalidity,
                };
                self.copy(from, to, pairs, *remove, doubt).await
            }
            Work::Store {
                user,
                mailbox,
                uidvalidity,
                uids,
                mode,
                flags,
            } => {
                let t = Target {
                    user,
                    name: mailbox,
                    uidvalidity: *uidvalidity,
                };
                self.store(t, uids, *mode, flags).await
            }
            Work::Expunge {
                user,
                mailbox,
                uidvalidity,
                uids,
            } => {
                let t = Target {
                    user,
                    name: mailbox,
                    uidvalidity: *uidvalidity,
                };
                self.expunge(t, uids).await
            }
        }
    }

    /// CREATE: records the backend's UIDVALIDITY for the new mailbox.
    async fn create(
        &mut self,
        user: &str,
        name: &str,
        uidvalidity: u32,
    ) -> Result<Vec<Change>, ApplyError> {
        let local = self.create_local(user, name).await?;
        Ok(vec![Change::Put(
            user.to_string(),
            uidvalidity,
            MailboxMap {
                local_uidvalidity: local,
                ..MailboxMap::default()
            },
        )])
    }

    /// DELETE (one already gone is deleted).
    async fn delete(
        &mut self,
        user: &str,
        name: &str,
        uidvalidity: u32,
    ) -> Result<Vec<Change>, ApplyError> {
        if let Some(c) = self.conns.get_mut(user) {
            c.selected = None;
        }
        let r = self
            .send(user, |t| {
                encode::mailbox_command(t, MailboxVerb::Delete, name.as_bytes())
            })
            .await?;
        if r.status != Status::Ok && !r.tagged.has_code(b"NONEXISTENT") {
            return Err(ApplyError::Refused(format!("DELETE {name}: {}", r.text)));
        }
        Ok(vec![Change::Remove(user.to_string(), uidvalidity)])
    }

    /// RENAME (RENAME INBOX: [`Worker::move_inbox`]).
    async fn rename(
        &mut self,
        user: &str,
        from: &str,
        to: &str,
        inbox: Option<&InboxMove>,
        doubt: bool,
    ) -> Result<Vec<Change>, ApplyError> {
        if let Some(c) = self.conns.get_mut(user) {
            c.selected = None;
        }
        if let Some(mv) = inbox {
            return self.move_inbox(user, to, mv, doubt).await;
        }
        let r = self
            .send(user, |t| encode::rename(t, from.as_bytes(), to.as_bytes()))
            .await?;
        if r.status != Status::Ok {
            // Re-applied after a restart: already renamed.
            let done = self.local_uidvalidity(user, to).await.is_ok()
                && self.local_uidvalidity(user, from).await.is_err();
            if !done {
                return Err(ApplyError::Refused(format!("RENAME: {}", r.text)));
            }
            self.found = true;
        }
        Ok(Vec::new())
    }

    /// SUBSCRIBE or UNSUBSCRIBE; a refusal (already subscribed, ...)
    /// changes nothing.
    async fn subscribe(
        &mut self,
        user: &str,
        name: &str,
        on: bool,
    ) -> Result<Vec<Change>, ApplyError> {
        let verb = if on {
            MailboxVerb::Subscribe
        } else {
            MailboxVerb::Unsubscribe
        };
        let _ = self
            .send(user, |t| encode::mailbox_command(t, verb, name.as_bytes()))
            .await?;
        Ok(Vec::new())
    }

    /// APPEND under the canonical `uids`; an adoption's originals on this
    /// node are expunged once their copies are there. `literal8[k]`:
    /// message `k` goes as a literal8, as the client sent it (empty: none).
    async fn append(
        &mut self,
        t: Target<'_>,
        uids: &[u32],
        (messages, literal8): (&[NewMessage], &[bool]),
        replaces: Option<&Replaces>,
        doubt: bool,
    ) -> Result<Vec<Change>, ApplyError> {
        let Target { user, name, .. } = t;
        let mut map = self.map_of(user, t.uidvalidity)?;
        if uids
            .first()
            .is_some_and(|&u| map.to_local.map_one(u).is_some())
        {
            // Recorded already (applied before a restart).
            self.found = true;
            return Ok(Vec::new());
        }
        let originals = replaces
            .filter(|r| r.node == self.node && r.local_uidvalidity == map.local_uidvalidity)
            .map(|r| Ranges::from_ranges(r.uids.iter().map(|&u| (u, u))));
        if doubt {
            let mut found = self.unmapped(user, name, &map).await?;
            // The originals are unmapped too, and byte for byte the
            // copies: only what follows them can be the copies.
            if let Some(o) = &originals {
                found.retain(|&u| !o.contains(u));
            }
            let wanted: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
            let at = self.find_run(user, &found, &wanted).await?;
            if let Some(at) = at.filter(|_| !uids.is_empty()) {
                tracing::info!(
                    mailbox = name,
                    "append found already applied before a restart"
                );
                for (&c, l) in uids.iter().zip(found[at..].iter()) {
                    push(&mut map, c, l);
                }
                map.to_canon = map.to_local.inverse();
                if let Some(set) = &originals {
                    self.remove_local(user, name, set).await?;
                }
                self.found = true;
                return Ok(vec![Change::Put(user.to_string(), t.uidvalidity, map)]);
            }
        }
        let flags: Vec<Vec<&[u8]>> = messages
            .iter()
            .map(|m| m.flags.iter().map(|f| f.as_bytes()).collect())
            .collect();
        let items: Vec<AppendItem<'_>> = messages
            .iter()
            .zip(flags.iter())
            .enumerate()
            .map(|(k, (m, f))| AppendItem {
                flags: f,
                date: m.date.as_deref().map(str::as_bytes),
                message: &m.body,
                literal8: literal8.get(k).copied().unwrap_or(false),
            })
            .collect();
        let before = self.additions.get(user, name);
        self.additions.bump(user, name);
        let r = self
            .send(user, |tag| encode::append(tag, name.as_bytes(), &items))
            .await?;
        if r.status != Status::Ok {
            return Err(ApplyError::refused(r.status, r.text));
        }
        self.synced_by_append(user, name, before, &r);
        let Some((_, local)) = appenduid(&r) else {
            return Err(ApplyError::Refused(
                "the backend gave no APPENDUID (UIDPLUS is required)".to_string(),
            ));
        };
        for (&c, l) in uids.iter().zip(local.iter()) {
            push(&mut map, c, l);
        }
        map.to_canon = map.to_local.inverse();
        if let Some(set) = &originals {
            // The originals were adopted: their copies now carry
            // canonical UIDs everywhere.
            self.remove_local(user, name, set).await?;
        }
        Ok(vec![Change::Put(user.to_string(), t.uidvalidity, map)])
    }

    /// COPY, or MOVE (`remove`): `pairs` maps canonical source UIDs to
    /// canonical destination UIDs; only the sources this backend holds are
    /// copied.
    async fn copy(
        &mut self,
        from: Target<'_>,
        to: Target<'_>,
        pairs: &[(u32, u32)],
        remove: bool,
        doubt: bool,
    ) -> Result<Vec<Change>, ApplyError> {
        let user = from.user;
        let same = from.uidvalidity == to.uidvalidity;
        let mut src = self.map_of(user, from.uidvalidity)?;
        let mut dst = if same {
            src.clone()
        } else {
            self.map_of(user, to.uidvalidity)?
        };
        if pairs
            .first()
            .is_some_and(|&(_, d)| dst.to_local.map_one(d).is_some())
        {
            self.found = true;
            return Ok(Vec::new());
        }
        if doubt && !pairs.is_empty() {
            let held: Vec<(u32, u32, u32)> = pairs
                .iter()
                .filter_map(|&(cs, cd)| Some((cs, cd, src.to_local.map_one(cs)?)))
                .collect();
            let found = self.unmapped(user, to.name, &dst).await?;
            let at = if !held.is_empty() && found.len() >= held.len() {
                self.copied_already(user, from.name, to.name, &held, &found, remove)
                    .await?
            } else {
                None
            };
            if let Some(at) = at {
                tracing::info!(mailbox = %to.name, "copy found already applied");
                for (&(cs, cd, _), l) in held.iter().zip(found[at..].iter()) {
                    push(&mut dst, cd, l);
                    if remove {
                        src.to_local.remove(cs);
                    }
                }
                self.found = true;
                return Ok(copy_changes(from, to, src, dst, remove));
            }
        }
        let canon_src = Ranges::from_ranges(pairs.iter().map(|&(s, _)| (s, s)));
        let local_src = map_ranges(&canon_src, &src.to_local);
        let Some(set) = local_src.to_sequence_set() else {
            return Ok(Vec::new());
        };
        self.select(user, from.name).await?;
        self.additions.bump(user, to.name);
        let r = self
            .send(user, |t| {
                if remove {
                    encode::uid_move(t, &set, to.name.as_bytes())
                } else {
                    encode::uid_copy(t, &set, to.name.as_bytes())
                }
            })
            .await?;
        if r.status != Status::Ok {
            return Err(ApplyError::refused(r.status, r.text));
        }
        // No COPYUID: the backend copied nothing (the messages were gone
        // here); `tandem check` makes sure it has UIDPLUS.
        let (lsrc, ldst) = copyuid(&r).unwrap_or_default();
        if lsrc.is_empty() {
            tracing::warn!(from = %from.name, to = %to.name, "nothing copied here: the messages are gone on this node");
        }
        record_copies(&mut dst, &src, pairs, &lsrc, &ldst);
        if remove {
            for ls in &lsrc {
                if let Some(cs) = src.to_canon.map_one(*ls) {
                    if same {
                        dst.to_local.remove(cs);
                    } else {
                        src.to_local.remove(cs);
                    }
                }
            }
        }
        Ok(copy_changes(from, to, src, dst, remove))
    }

    /// STORE of flags on the messages this backend holds.
    async fn store(
        &mut self,
        t: Target<'_>,
        uids: &[(u32, u32)],
        mode: FlagMode,
        flags: &[String],
    ) -> Result<Vec<Change>, ApplyError> {
        let map = self.map_of(t.user, t.uidvalidity)?;
        let local = map_ranges(&Ranges::from_ranges(uids.iter().copied()), &map.to_local);
        let Some(set) = local.to_sequence_set() else {
            return Ok(Vec::new());
        };
        self.select(t.user, t.name).await?;
        let flags: Vec<&[u8]> = flags.iter().map(|f| f.as_bytes()).collect();
        let mode = match mode {
            FlagMode::Replace => tandem_parser::command::StoreMode::Replace,
            FlagMode::Add => tandem_parser::command::StoreMode::Add,
            FlagMode::Remove => tandem_parser::command::StoreMode::Remove,
        };
        let r = self
            .send(t.user, |tag| {
                encode::uid_store(tag, &set, mode, true, &flags)
            })
            .await?;
        if r.status != Status::Ok {
            return Err(ApplyError::refused(r.status, r.text));
        }
        Ok(Vec::new())
    }

    /// EXPUNGE of the canonical `uids` this backend holds.
    async fn expunge(
        &mut self,
        t: Target<'_>,
        uids: &[(u32, u32)],
    ) -> Result<Vec<Change>, ApplyError> {
        let mut map = self.map_of(t.user, t.uidvalidity)?;
        let canon = Ranges::from_ranges(uids.iter().copied());
        let local = map_ranges(&canon, &map.to_local);
        if local.is_empty() {
            return Ok(Vec::new());
        }
        self.remove_local(t.user, t.name, &local).await?;
        for c in canon.iter() {
            map.to_local.remove(c);
        }
        map.to_canon = map.to_local.inverse();
        Ok(vec![Change::Put(t.user.to_string(), t.uidvalidity, map)])
    }
}

/// The map changes of a COPY or MOVE: the destination's, and the source's
/// too when a MOVE left another mailbox.
fn copy_changes(
    from: Target<'_>,
    to: Target<'_>,
    mut src: MailboxMap,
    mut dst: MailboxMap,
    remove: bool,
) -> Vec<Change> {
    dst.to_canon = dst.to_local.inverse();
    src.to_canon = src.to_local.inverse();
    let mut changes = vec![Change::Put(to.user.to_string(), to.uidvalidity, dst)];
    if from.uidvalidity != to.uidvalidity && remove {
        changes.push(Change::Put(from.user.to_string(), from.uidvalidity, src));
    }
    changes
}

impl Worker {
    /// Creates `name` on the backend (one that exists already is taken as
    /// it is) and returns its local UIDVALIDITY.
    pub(super) async fn create_local(&mut self, user: &str, name: &str) -> Result<u32, ApplyError> {
        let r = self
            .send(user, |t| {
                encode::mailbox_command(t, MailboxVerb::Create, name.as_bytes())
            })
            .await?;
        if r.status == Status::Ok || r.tagged.has_code(b"ALREADYEXISTS") {
            return self.local_uidvalidity(user, name).await;
        }
        // Not every server says [ALREADYEXISTS] (Cyrus: "NO Mailbox already
        // exists"; INBOX always exists there): a mailbox that is there is
        // taken as it is.
        match self.local_uidvalidity(user, name).await {
            Ok(uv) => Ok(uv),
            Err(_) => Err(ApplyError::Refused(format!("CREATE {name}: {}", r.text))),
        }
    }

    /// RENAME INBOX: creates `to` and moves INBOX's messages into it, then
    /// maps each new local UID to the canonical one decided for it.
    pub(super) async fn move_inbox(
        &mut self,
        user: &str,
        to: &str,
        mv: &InboxMove,
        doubt: bool,
    ) -> Result<Vec<Change>, ApplyError> {
        let local_uv = self.create_local(user, to).await?;
        let mut dst = match self.maps.get(user, mv.uidvalidity) {
            Some(m) if m.local_uidvalidity == local_uv => (*m).clone(),
            _ => MailboxMap {
                local_uidvalidity: local_uv,
                ..MailboxMap::default()
            },
        };
        let mut inbox = self.map_of(user, mv.inbox_uidvalidity)?;
        let held: Vec<(u32, u32, u32)> = mv
            .pairs
            .iter()
            .filter_map(|&(cs, cd)| Some((cs, cd, inbox.to_local.map_one(cs)?)))
            .collect();
        let mut moved = false;
        if doubt && !held.is_empty() {
            let found = self.unmapped(user, to, &dst).await?;
            let at = if found.len() >= held.len() {
                self.copied_already(user, "INBOX", to, &held, &found, true)
                    .await?
            } else {
                None
            };
            if let Some(at) = at {
                tracing::info!(mailbox = %to, "INBOX's messages found moved already");
                for (&(_, cd, _), l) in held.iter().zip(found[at..].iter()) {
                    push(&mut dst, cd, l);
                }
                self.found = true;
                moved = true;
            }
        }
        let canon_src = Ranges::from_ranges(mv.pairs.iter().map(|&(s, _)| (s, s)));
        let local_src = map_ranges(&canon_src, &inbox.to_local);
        if let Some(set) = local_src.to_sequence_set().filter(|_| !moved) {
            self.select(user, "INBOX").await?;
            self.additions.bump(user, to);
            let r = self
                .send(user, |t| encode::uid_move(t, &set, to.as_bytes()))
                .await?;
            if r.status != Status::Ok {
                return Err(ApplyError::Refused(format!("MOVE to {to}: {}", r.text)));
            }
            let Some((lsrc, ldst)) = copyuid(&r) else {
                return Err(ApplyError::Refused(
                    "the backend gave no COPYUID (UIDPLUS is required)".to_string(),
                ));
            };
            record_copies(&mut dst, &inbox, &mv.pairs, &lsrc, &ldst);
        }
        dst.to_canon = dst.to_local.inverse();
        inbox.to_local = RunMap::new();
        inbox.to_canon = RunMap::new();
        Ok(vec![
            Change::Put(user.to_string(), mv.uidvalidity, dst),
            Change::Put(user.to_string(), mv.inbox_uidvalidity, inbox),
        ])
    }

    /// Expunges exactly the local UIDs `set` of `mailbox`: marks them
    /// \Deleted first, since UID EXPUNGE removes only marked messages.
    pub(super) async fn remove_local(
        &mut self,
        user: &str,
        mailbox: &str,
        set: &Ranges,
    ) -> Result<(), ApplyError> {
        let Some(set) = set.to_sequence_set() else {
            return Ok(());
        };
        self.select(user, mailbox).await?;
        let deleted: [&[u8]; 1] = [b"\\Deleted"];
        let r = self
            .send(user, |t| {
                encode::uid_store(
                    t,
                    &set,
                    tandem_parser::command::StoreMode::Add,
                    true,
                    &deleted,
                )
            })
            .await?;
        if r.status != Status::Ok {
            return Err(ApplyError::refused(r.status, r.text));
        }
        let r = self.send(user, |t| encode::uid_expunge(t, &set)).await?;
        if r.status != Status::Ok {
            return Err(ApplyError::refused(r.status, r.text));
        }
        Ok(())
    }
}

/// Records in `dst` the copies a COPYUID reported (`lsrc[i]` copied to
/// `ldst[i]`, local UIDs), each under the canonical UID `pairs` decided for
/// its source (canonical via `src`).
fn record_copies(
    dst: &mut MailboxMap,
    src: &MailboxMap,
    pairs: &[(u32, u32)],
    lsrc: &[u32],
    ldst: &[u32],
) {
    let by_src: HashMap<u32, u32> = pairs.iter().copied().collect();
    let mut new: Vec<(u32, u32)> = lsrc
        .iter()
        .zip(ldst.iter())
        .filter_map(|(ls, ld)| Some((*by_src.get(&src.to_canon.map_one(*ls)?)?, *ld)))
        .collect();
    new.sort_unstable();
    for (c, l) in new {
        push(dst, c, &l);
    }
}

fn push(map: &mut MailboxMap, canon: u32, local: &u32) {
    if let Err(e) = map.to_local.push(canon, *local) {
        // Only a backend that reuses or reorders UIDs gets here.
        tracing::error!(error = %e, "backend UIDs out of order; message left unmapped");
    }
}
