//! A command of a logged-in user of a replicating node that is not a
//! mutation: what cannot be translated is refused, SELECT is tracked, and
//! UID sets are rewritten canonical -> local.

use tandem_parser::command::{Command, CommandBody, SetArg};
use tandem_parser::lexer::StrToken;
use tandem_parser::rewrite::{return_with_all, Edit};
use tokio::io::AsyncWrite;

use super::internal::Keep;
use super::{End, Pending, Selected, Session};
use crate::tls::Stream;

/// Commands tandem does not parse but may pass on when replicating: they
/// neither change replicated state nor carry or return UIDs. Anything else
/// unknown (SETACL, SETMETADATA, SETQUOTA, vendor extensions) would change
/// one node only, or leak local numbers, and is refused.
fn is_known_safe(cmd: &Command<'_>) -> bool {
    if !matches!(cmd.body, CommandBody::Other) {
        return true;
    }
    const SAFE: [&[u8]; 9] = [
        b"LIST",
        b"LSUB",
        b"NAMESPACE",
        b"GETQUOTA",
        b"GETQUOTAROOT",
        b"MYRIGHTS",
        b"GETACL",
        b"LISTRIGHTS",
        b"GETMETADATA",
    ];
    !cmd.uid && SAFE.iter().any(|s| cmd.name().eq_ignore_ascii_case(s))
}

fn name_of(raw: &[u8], t: &StrToken) -> Result<String, ()> {
    String::from_utf8(t.value(raw).into_owned()).map_err(|_| ())
}

impl Session {
    /// A SELECT or EXAMINE that fails leaves no mailbox selected (RFC 9051
    /// section 6.3.2): the backend connection leaves the one it has, and
    /// the client is told so as Dovecot tells it (`[CLOSED]`).
    pub(super) async fn close_selected<S>(
        &mut self,
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        if self.selected.take().is_none() {
            return Ok(());
        }
        self.internal(backend, b"UNSELECT", Keep::Nothing).await?;
        self.view.reset();
        self.reply(
            client,
            "* OK [CLOSED] Previous mailbox closed.\r\n".to_string(),
        )
        .await
    }

    /// Handles a command of a logged-in user of a replicating node that is
    /// not a mutation: refuses what cannot be translated, tracks SELECT,
    /// and rewrites UID sets canonical -> local. Returns the bytes to
    /// forward (`None`: answered here) and the pending kind.
    pub(super) async fn translate<S>(
        &mut self,
        cmd: &Command<'_>,
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<Option<(Vec<Edit>, Pending)>, End>
    where
        S: AsyncWrite + Unpin,
    {
        let tag = String::from_utf8_lossy(cmd.tag()).to_string();
        if self.rep.is_none() || self.user.is_none() {
            return Ok(Some((Vec::new(), Pending::Other)));
        }
        if let Some(why) = refusal(cmd) {
            self.reply(client, format!("{tag} BAD [CANNOT] {why}\r\n"))
                .await?;
            return Ok(None);
        }
        if let CommandBody::Fetch { set, items, .. } = &cmd.body {
            if super::seen::sets_seen(items.of(cmd.buf))
                && self.selected.as_ref().is_some_and(|s| !s.read_only)
            {
                self.drain(client, backend).await?;
                let unseen = self.unseen(cmd, set, backend).await?;
                self.seen = unseen.map(|u| (cmd.tag().to_vec(), u));
            }
        }
        let mut kind = Pending::Other;
        let mut ret_edit = None;
        match &cmd.body {
            CommandBody::Select { mailbox, .. } | CommandBody::Examine { mailbox, .. } => {
                if !self.select(cmd, mailbox, &tag, client, backend).await? {
                    return Ok(None);
                }
                kind = Pending::Select;
            }
            CommandBody::Unselect => {
                self.drain(client, backend).await?;
                self.selected = None;
                self.view.reset();
            }
            CommandBody::Fetch {
                set: SetArg::Set { set, span },
                ..
            } if !cmd.uid && !self.view.aligned() => {
                // The client numbers messages it has not heard gone.
                self.drain(client, backend).await?;
                match self.backend_numbers(set, span.of(cmd.buf)) {
                    Some(bytes) => ret_edit = Some(Edit { span: *span, bytes }),
                    None => {
                        self.reply(
                            client,
                            format!("{tag} NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n"),
                        )
                        .await?;
                        return Ok(None);
                    }
                }
            }
            CommandBody::Search { ret, .. } if cmd.uid => {
                // MIN, MAX and COUNT without ALL: ask ALL too, so that mail
                // hidden on this node is left out of them.
                match ret.and_then(|r| Some((r, return_with_all(r.of(cmd.buf))?))) {
                    Some((span, bytes)) => {
                        ret_edit = Some(Edit { span, bytes });
                        kind = Pending::UidSearch { added_all: true };
                    }
                    None => kind = Pending::UidSearch { added_all: false },
                }
            }
            _ => {}
        }
        let mut edits: Vec<Edit> = ret_edit.into_iter().collect();
        edits.extend(self.local_sets(cmd));
        edits.sort_by_key(|e| e.span.start);
        Ok(Some((edits, kind)))
    }

    /// SELECT or EXAMINE of a mailbox the canonical state knows, once the
    /// node has its map; `false` when it was answered here (refused).
    async fn select<S>(
        &mut self,
        cmd: &Command<'_>,
        mailbox: &StrToken,
        tag: &str,
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<bool, End>
    where
        S: AsyncWrite + Unpin,
    {
        let (Some(rep), Some(user)) = (self.rep.clone(), self.user.clone()) else {
            return Ok(true);
        };
        self.drain(client, backend).await?;
        let Ok(name) = name_of(cmd.buf, mailbox) else {
            self.close_selected(client, backend).await?;
            self.reply(client, format!("{tag} BAD Mailbox names must be UTF-8\r\n"))
                .await?;
            return Ok(false);
        };
        if tandem_state::normalize(&name) == "INBOX" {
            // A user's first visit through tandem registers INBOX.
            self.ensure_inbox().await;
        }
        let Some(m) = rep.mailbox(&user, &name) else {
            self.close_selected(client, backend).await?;
            let line = if tandem_state::normalize(&name) == "INBOX" {
                format!("{tag} NO [UNAVAILABLE] INBOX is not registered yet, try again\r\n")
            } else {
                format!("{tag} NO [NONEXISTENT] No such mailbox\r\n")
            };
            self.reply(client, line).await?;
            return Ok(false);
        };
        if rep.wait_map(&user, m.uidvalidity).await.is_none() {
            self.close_selected(client, backend).await?;
            self.reply(
                client,
                format!("{tag} NO [UNAVAILABLE] This node has not caught up yet\r\n"),
            )
            .await?;
            return Ok(false);
        }
        self.view.reset();
        self.selected = Some(Selected {
            name,
            uidvalidity: m.uidvalidity,
            read_only: matches!(cmd.body, CommandBody::Examine { .. }),
        });
        Ok(true)
    }

    /// The edits that turn the command's canonical UID sets into this
    /// node's local ones.
    fn local_sets(&self, cmd: &Command<'_>) -> Vec<Edit> {
        let sets = cmd.uid_sets();
        if sets.is_empty() {
            return Vec::new();
        }
        let Some(map) = self.maps().and_then(|m| m.remembered) else {
            // Nothing selected: the backend answers BAD itself.
            return Vec::new();
        };
        // Messages expunged since the SELECT that this session has not
        // been told of are still there for it (and for its backend
        // connection): UIDs name them too.
        let star = map.max_canonical();
        // A set with no message here names nothing: the largest UID, which
        // no backend gives out, keeps the command valid and empty.
        let mut edits = Vec::new();
        for arg in sets {
            if let SetArg::Set { set, span } = arg {
                let local = map.to_local(&set.resolve(star));
                let bytes = if local.is_empty() {
                    b"4294967295".to_vec()
                } else {
                    local.to_bytes()
                };
                if bytes != span.of(cmd.buf) {
                    edits.push(Edit { span: *span, bytes });
                }
            }
        }
        edits
    }
}

/// Why a command that is not a mutation cannot pass through tandem (the
/// text of its `BAD [CANNOT]`), if it cannot.
fn refusal(cmd: &Command<'_>) -> Option<&'static str> {
    if super::capability::saves_search(cmd) {
        Some("SEARCHRES is not available through tandem")
    } else if super::capability::uses_modseq(cmd) {
        Some("CONDSTORE and MODSEQ are not available through tandem")
    } else if cmd.has_unparsed_uids() || !is_known_safe(cmd) {
        Some("This command is not available through tandem")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> Option<&'static str> {
        let cmd = Command::parse(line.as_bytes()).expect("parses");
        refusal(&cmd)
    }

    #[test]
    fn commands_that_cannot_be_translated_are_refused() {
        assert_eq!(refused("a FETCH 1 (FLAGS)\r\n"), None);
        assert_eq!(refused("a UID SEARCH ALL\r\n"), None);
        assert_eq!(refused("a LIST \"\" *\r\n"), None);
        assert_eq!(refused("a GETQUOTAROOT INBOX\r\n"), None);
        assert_eq!(
            refused("a SEARCH RETURN (SAVE) ALL\r\n"),
            Some("SEARCHRES is not available through tandem")
        );
        assert_eq!(
            refused("a FETCH 1 (FLAGS) (CHANGEDSINCE 3)\r\n"),
            Some("CONDSTORE and MODSEQ are not available through tandem")
        );
        assert_eq!(
            refused("a SETACL INBOX bob lr\r\n"),
            Some("This command is not available through tandem")
        );
        assert_eq!(
            refused("a UID LIST \"\" *\r\n"),
            Some("This command is not available through tandem")
        );
    }
}
