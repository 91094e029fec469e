//! QUIT, and from TRANSACTION the UPDATE state (RFC 1939 6): expunge the
//! deleted messages, flag the retrieved ones \Seen, release the lease.

use super::{Action, Session, State};
use crate::maildrop;

impl Session {
    pub(super) async fn quit(&mut self) -> Action {
        let state = std::mem::replace(&mut self.state, State::Authorization { user: None });
        let State::Transaction(drop) = state else {
            return Action::Close("+OK mailfleet POP3 server signing off\r\n".into());
        };
        if drop.lock.lost {
            // Deleting by UID stays correct even so: a message another
            // session removed first is simply gone already.
            tracing::warn!("QUIT after the maildrop lease was lost.");
        }
        let left = drop.messages.iter().filter(|m| !m.deleted).count();
        let result = maildrop::update(&self.shared.client, *drop).await;
        match result {
            Ok(n) => {
                self.shared.metrics.deleted.inc_by(n as u64);
                Action::Close(format!(
                    "+OK mailfleet POP3 server signing off ({left} messages left)\r\n"
                ))
            }
            Err(status) => {
                tracing::warn!(%status, "POP3 UPDATE failed.");
                Action::Close("-ERR [SYS/TEMP] some deleted messages not removed\r\n".into())
            }
        }
    }
}
