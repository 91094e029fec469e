//! TRANSACTION (RFC 1939 5, 7): STAT, LIST, RETR, TOP, DELE, RSET, UIDL over
//! the snapshot taken at login. RETR and TOP only say what to send; the
//! connection streams the body.

use std::fmt::Write as _;

use super::{Action, NO_SUCH, WRONG_STATE};
use crate::maildrop::{self, Maildrop};
use crate::proto::{self, Command};

/// Message count and octets, deleted messages excluded.
pub(super) fn stat(drop: &Maildrop) -> (usize, u64) {
    drop.messages
        .iter()
        .filter(|m| !m.deleted)
        .fold((0, 0), |(n, o), m| (n + 1, o + m.size))
}

/// The message numbered `n` (1-based) unless it is out of range or deleted.
fn message(drop: &mut Maildrop, n: u32) -> Result<&mut maildrop::Message, String> {
    let index = (n as usize)
        .checked_sub(1)
        .ok_or_else(|| NO_SUCH.to_owned())?;
    match drop.messages.get_mut(index) {
        None => Err(NO_SUCH.into()),
        Some(m) if m.deleted => Err(format!("-ERR message {n} already deleted\r\n")),
        Some(m) => Ok(m),
    }
}

/// The TRANSACTION commands, which touch only the snapshot.
pub(super) fn handle(drop: &mut Maildrop, command: Command) -> Action {
    let reply = |r: Result<String, String>| Action::Reply(r.unwrap_or_else(|e| e));
    match command {
        Command::Stat => {
            let (n, octets) = stat(drop);
            Action::Reply(format!("+OK {n} {octets}\r\n"))
        }
        Command::List(Some(n)) => {
            reply(message(drop, n).map(|m| format!("+OK {n} {}\r\n", m.size)))
        }
        Command::List(None) => {
            let (count, octets) = stat(drop);
            let mut out = format!("+OK {count} messages ({octets} octets)\r\n");
            for (i, m) in drop.messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
                let _ = write!(out, "{} {}\r\n", i + 1, m.size);
            }
            out.push_str(".\r\n");
            Action::Reply(out)
        }
        Command::Uidl(Some(n)) => {
            let v = drop.uidvalidity;
            reply(message(drop, n).map(|m| format!("+OK {n} {}\r\n", proto::unique_id(v, m.uid))))
        }
        Command::Uidl(None) => {
            let mut out = String::from("+OK unique-id listing follows\r\n");
            for (i, m) in drop.messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
                let _ = write!(
                    out,
                    "{} {}\r\n",
                    i + 1,
                    proto::unique_id(drop.uidvalidity, m.uid)
                );
            }
            out.push_str(".\r\n");
            Action::Reply(out)
        }
        Command::Retr(n) => match message(drop, n) {
            Ok(m) => {
                m.retrieved = true;
                Action::Send {
                    uid: m.uid,
                    size: m.size,
                    top: None,
                }
            }
            Err(e) => Action::Reply(e),
        },
        Command::Top(n, lines) => match message(drop, n) {
            Ok(m) => Action::Send {
                uid: m.uid,
                size: m.size,
                top: Some(lines),
            },
            Err(e) => Action::Reply(e),
        },
        Command::Dele(n) => reply(message(drop, n).map(|m| {
            m.deleted = true;
            format!("+OK message {n} deleted\r\n")
        })),
        Command::Rset => {
            for m in &mut drop.messages {
                m.deleted = false;
            }
            let (n, octets) = stat(drop);
            Action::Reply(format!(
                "+OK maildrop has {n} messages ({octets} octets)\r\n"
            ))
        }
        _ => Action::Reply(WRONG_STATE.into()),
    }
}
