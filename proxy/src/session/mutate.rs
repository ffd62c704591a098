//! A mutation of a logged-in user of a replicating node: planned
//! ([`super::plan`]), proposed to the log, answered. Its neighbours:
//! [`super::translate`] (the commands that are not mutations),
//! [`super::maps`] (rewriting local -> canonical), [`super::internal`] (the
//! session's own backend commands) and [`super::store`] (a STORE's answer).
//!
//! Ordering invariants:
//! - A mutation is handled only once every earlier command of the session
//!   has its tagged response ([`Session::drain`]), so the backend session's
//!   view (sequence numbers, flags) is the one the client knows.
//! - The tagged OK of a mutation, and any UID in it, is written only after
//!   [`Replication::mutate`] returned: committed on a majority, applied to
//!   the canonical state and to this node's backend.
//! - The untagged responses a client expects after a mutation (EXISTS,
//!   EXPUNGE, FETCH FLAGS) come from the session's own backend connection
//!   (NOOP or UID FETCH after the apply), rewritten like any response.
//! - A backend UID without a canonical mapping never reaches the client
//!   ([`super::maps`]).

use std::sync::Arc;

use tandem_parser::command::Command;
use tokio::io::AsyncWrite;

use super::internal::Keep;
use super::plan::{self, Answer, Facts, Failed, Plan, Then};
use super::{End, Session};
use crate::replication::{MutateError, Replication};
use crate::tls::Stream;
use tandem_state::{Op, Outcome};

impl Session {
    /// Makes sure the user's INBOX exists in the canonical state (the first
    /// login of a user through tandem creates it there).
    pub(super) async fn ensure_inbox(&mut self) {
        if self.inbox_ready {
            return;
        }
        let (Some(rep), Some(user)) = (self.rep.clone(), self.user.clone()) else {
            return;
        };
        if rep.mailbox(&user, "INBOX").is_some() {
            self.inbox_ready = true;
            return;
        }
        match rep
            .mutate(
                &user,
                Op::Create {
                    name: "INBOX".to_string(),
                },
            )
            .await
        {
            Ok(_) => self.inbox_ready = true,
            Err(e) => tracing::warn!(error = %e, "cannot register INBOX"),
        }
    }

    /// Handles a mutation of a logged-in user: learns what [`plan::needs`]
    /// asks of the backend, plans it ([`plan::plan`]), proposes it, and
    /// answers as [`plan::answer`] says. The client's tagged OK, with any
    /// UID, is written only after [`Replication::mutate`] returned.
    pub(super) async fn mutation<S>(
        &mut self,
        cmd: &Command<'_>,
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        let (Some(rep), Some(user)) = (self.rep.clone(), self.user.clone()) else {
            return Ok(());
        };
        let tag = String::from_utf8_lossy(cmd.tag()).to_string();
        let selected = self.selected.clone();
        self.store = super::store::StoreAnswer::default();
        let needs = plan::needs(cmd, selected.as_ref());
        let facts = self.gather(cmd, &needs, &rep, backend).await?;
        let (op, after) = match plan::plan(cmd, selected.as_ref(), &facts) {
            Plan::NotMine => return Ok(()),
            Plan::Refuse(line) => {
                if facts.gone && self.policy().expunges {
                    // COPY and MOVE report what is gone, as Dovecot does.
                    self.internal(backend, b"NOOP", Keep::Nothing).await?;
                }
                return self.reply(client, line).await;
            }
            Plan::CloseReadOnly => {
                self.internal(backend, b"CLOSE", Keep::Nothing).await?;
                self.selected = None;
                self.view.reset();
                return self
                    .reply(client, format!("{tag} OK CLOSE completed\r\n"))
                    .await;
            }
            Plan::Propose { op, after } => (op, after),
        };
        if let Op::Store { mode, flags, .. } = &op {
            self.store.change = Some((*mode, flags.clone()));
        }
        let outcome = if plan::proposes_nothing(&op) {
            Ok(Outcome::Ok {
                seq: 0,
                uidvalidity: 0,
                uids: Vec::new(),
                source: Vec::new(),
            })
        } else {
            rep.mutate(&user, op.clone()).await
        };
        let outcome = match outcome {
            Ok(o) => Ok(o),
            Err(MutateError::Unavailable(e)) => {
                tracing::warn!(error = %e, "mutation not replicated");
                Err(Failed::Unavailable(e.to_string()))
            }
            Err(MutateError::Backend { outcome, text }) => {
                self.compensate(&rep, &user, &op, &outcome).await;
                Err(Failed::Backend(text))
            }
        };
        let answer = plan::answer(&tag, &op, after, outcome.as_ref());
        self.carry_out(answer, &rep, &user, client, backend).await
    }

    /// Learns from the backend what [`plan::needs`] asked for.
    async fn gather(
        &mut self,
        cmd: &Command<'_>,
        needs: &plan::Needs<'_>,
        rep: &Replication,
        backend: &mut Stream,
    ) -> Result<Facts, End> {
        let mut facts = Facts::default();
        if needs.separator {
            facts.separator = self.separator(backend).await?;
        }
        if needs.strict {
            facts.strict = rep.strict_messages();
        }
        if needs.deleted {
            facts.deleted = Some(self.deleted(backend).await?);
        }
        if let Some(set) = needs.set {
            facts.set = Some(self.canonical_set(cmd, set, backend).await?);
            facts.gone = self.store.numbered.iter().any(|(_, c)| c.is_none());
        }
        Ok(facts)
    }

    /// Sends a mutation's answer: its untagged line, what its client
    /// expects from the backend (EXISTS, EXPUNGE, FETCH FLAGS), then the
    /// tagged line.
    async fn carry_out<S>(
        &mut self,
        answer: Answer,
        rep: &Replication,
        user: &str,
        client: &mut S,
        backend: &mut Stream,
    ) -> Result<(), End>
    where
        S: AsyncWrite + Unpin,
    {
        if let Some(line) = answer.untagged {
            self.reply(client, line).await?;
        }
        match answer.then {
            Then::Nothing => {}
            Then::Noop => {
                self.internal(backend, b"NOOP", Keep::Nothing).await?;
            }
            Then::FetchFlags { uids, silent } => {
                self.store_flags(&uids, silent, client, backend).await?;
            }
            Then::RecheckSelected => {
                if let Some(s) = &self.selected {
                    if rep.mailbox(user, &s.name).map(|m| m.uidvalidity) != Some(s.uidvalidity) {
                        self.selected = None;
                    }
                }
            }
            Then::Unselect => {
                // CLOSE reports nothing of the mailbox it leaves.
                self.held.clear();
                // Expunged through the log; leave without expunging again.
                self.internal(backend, b"UNSELECT", Keep::Nothing).await?;
                self.selected = None;
                self.view.reset();
            }
        }
        self.reply(client, answer.tagged).await
    }

    /// Undoes, through the log, what the other nodes applied of a mutation
    /// this node's backend refused ([`plan::undo`]).
    async fn compensate(&self, rep: &Arc<Replication>, user: &str, op: &Op, outcome: &Outcome) {
        let Some(undo) = plan::undo(op, outcome, self.separator.flatten()) else {
            if matches!(outcome, Outcome::Ok { .. }) {
                tracing::error!("the local backend refused a change the others applied; this node differs until it is resynced");
            }
            return;
        };
        match rep.mutate(user, undo).await {
            Ok(Outcome::Ok { .. }) => {}
            Ok(Outcome::No { text, .. }) => {
                tracing::error!(reason = %text, "compensating change refused; nodes may differ")
            }
            Err(e) => {
                tracing::error!(error = %e, "compensating change failed; nodes may differ")
            }
        }
    }
}
