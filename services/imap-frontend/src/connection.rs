//! The connection loop: greets, reads each command whole (lines and
//! literals, bounded), parses it ([`proto::parse_command`]), refuses it in
//! one place when the session's state does not allow it
//! ([`crate::session::state::refusal`]), dispatches it to its family in
//! `cmd`, ends it with what other sessions did, and writes the tagged
//! reply. It sits above `cmd` and `session`; neither imports it.

use mailfleet_runtime::CancellationToken;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

use crate::cmd;
use crate::proto::{self, CommandBody, LiteralMode};
use crate::session::{Reply, Session, state};

/// Largest literal other than an APPEND message (those are streamed, up to
/// `smtp_max_message_size`): these are read into memory before parsing.
pub const MEMORY_LITERAL_LIMIT: usize = 15 * 1024 * 1024;
/// Largest command (lines and literals together) accepted before login.
const PRE_AUTH_COMMAND: usize = 64 * 1024;

/// What reading the next command produced.
enum Input {
    Command(Vec<u8>),
    /// An APPEND whose message literal is still to be read (`cmd::append`).
    Append(Box<cmd::append::Pending>),
    /// Already answered (literal refused, line too long); read the next.
    Handled,
    Eof,
}

/// Whether untagged EXPUNGE may be sent while `body` runs: not during
/// FETCH, STORE or SEARCH (RFC 3501 7.4.1), nor SORT and THREAD, which are
/// searches (RFC 5256); their UID forms allow it.
fn expunge_allowed(body: &CommandBody) -> bool {
    !matches!(
        body,
        CommandBody::Fetch(proto::Fetch { uid: false, .. })
            | CommandBody::Store(proto::Store { uid: false, .. })
            | CommandBody::Search(proto::Search { uid: false, .. })
            | CommandBody::Sort(proto::Sort { uid: false, .. })
            | CommandBody::Thread(proto::Thread { uid: false, .. })
    )
}

impl Session {
    /// Runs the session to its end.
    pub(crate) async fn run(&mut self, shutdown: CancellationToken) -> std::io::Result<()> {
        let greeting = format!(
            "OK [CAPABILITY {}] mailfleet IMAP ready",
            self.capabilities()
        );
        self.untagged(&greeting);
        self.flush().await?;
        loop {
            let timeout = self.read_timeout();
            let input = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.untagged("BYE mailfleet IMAP shutting down");
                    self.flush().await?;
                    break;
                }
                read = tokio::time::timeout(timeout, self.read_command()) => match read {
                    Err(_) => {
                        self.untagged("BYE Autologout; idle for too long");
                        self.flush().await?;
                        break;
                    }
                    Ok(r) => r?,
                },
            };
            let buf = match input {
                Input::Eof => break,
                Input::Handled => {
                    self.flush().await?;
                    continue;
                }
                Input::Command(buf) => Ok(buf),
                Input::Append(pending) => Err(pending),
            };
            let started = std::time::Instant::now();
            self.resynced = false;
            let parsed = buf.map(|b| proto::parse_command(&b));
            self.expunge_allowed = match &parsed {
                Ok(Ok(c)) => expunge_allowed(&c.body),
                _ => true,
            };
            let span = tracing::debug_span!("command", name = tracing::field::Empty);
            let (tag, name, reply) = match parsed {
                Ok(Ok(command)) => {
                    self.execute(command, &shutdown)
                        .instrument(span.clone())
                        .await?
                }
                Ok(Err(e)) => (
                    e.tag.unwrap_or_else(|| "*".into()),
                    "invalid".into(),
                    Reply::Bad(e.reason),
                ),
                Err(p) => cmd::append::run(self, *p).instrument(span.clone()).await?,
            };
            span.record("name", name.as_str());
            if !matches!(reply, Reply::Logout | Reply::Sent) && !self.resynced {
                // Every command ends with what other sessions did so far.
                self.sync_inner(self.expunge_allowed, true)
                    .instrument(span.clone())
                    .await?;
            }
            let result = reply.result();
            self.shared
                .metrics
                .command(&name, result, started.elapsed());
            tracing::debug!(command = %name, result, "IMAP command.");
            let logout = matches!(reply, Reply::Logout);
            let line = reply.line(&tag);
            self.out.extend_from_slice(line.as_bytes());
            self.flush().await?;
            if logout {
                break;
            }
        }
        let _ = self.io.get_mut().shutdown().await;
        Ok(())
    }

    /// Refuses a literal over the limit without reading it (RFC 7889).
    async fn too_big(&mut self, tag: &str, mode: LiteralMode) -> std::io::Result<Input> {
        if mode == LiteralMode::NonSync {
            // The data is already coming: without a sync point we
            // cannot find the next command reliably.
            self.out
                .extend_from_slice(b"* BYE [TOOBIG] Literal too large\r\n");
            self.flush().await?;
            return Ok(Input::Eof);
        }
        self.out
            .extend_from_slice(format!("{tag} NO [TOOBIG] Literal too large\r\n").as_bytes());
        Ok(Input::Handled)
    }

    /// A command grew past its bound: BAD, then BYE, because literal data
    /// may still be coming and the next command cannot be found.
    async fn command_too_long(&mut self, tag: Option<&str>) -> std::io::Result<Input> {
        let tag = tag.unwrap_or("*");
        self.out
            .extend_from_slice(format!("{tag} BAD Command too long\r\n").as_bytes());
        self.out
            .extend_from_slice(b"* BYE Command too long, closing the connection\r\n");
        self.flush().await?;
        Ok(Input::Eof)
    }

    /// Reads a whole command: lines and the literals between them. The
    /// command as a whole (lines and literals together) is bounded, so
    /// neither many lines nor empty literals can grow it without limit;
    /// only each newly read line is looked at for a literal announcement,
    /// so reading stays linear in the command's size.
    async fn read_command(&mut self) -> std::io::Result<Input> {
        let authed = self.state.user().is_some();
        let bound = if authed {
            MEMORY_LITERAL_LIMIT
        } else {
            PRE_AUTH_COMMAND
        };
        let mut buf = Vec::new();
        let mut tag: Option<String> = None;
        let mut literals = 0usize;
        loop {
            let line_start = buf.len();
            match self.read_line(&mut buf).await? {
                Some(true) => {}
                Some(false) => return Ok(Input::Eof),
                // The first line was drained whole: the next command
                // starts after it.
                None if line_start == 0 => {
                    self.out
                        .extend_from_slice(b"* BAD Command line too long\r\n");
                    return Ok(Input::Handled);
                }
                None => return self.command_too_long(tag.as_deref()).await,
            }
            if line_start == 0 {
                tag = proto::command_tag(&buf);
            }
            if buf.len() > bound {
                return self.command_too_long(tag.as_deref()).await;
            }
            let line = buf.get(line_start..).unwrap_or_default();
            let Some((length, mode)) = proto::trailing_literal(line) else {
                return Ok(Input::Command(buf));
            };
            let Some(tag) = tag.clone() else {
                if mode == LiteralMode::Sync {
                    // The client waits for "+": nothing more is coming.
                    self.out.extend_from_slice(b"* BAD Missing tag\r\n");
                    return Ok(Input::Handled);
                }
                // The literal is on its way and could pass for commands.
                return self.command_too_long(None).await;
            };
            literals += 1;
            // An APPEND's message (its first or, after a literal mailbox
            // name, second literal) is streamed to mailstore, not read
            // here; it has its own limit (APPENDLIMIT).
            if authed
                && literals <= 2
                && let Some(p) = cmd::append::message_literal(&buf, length, mode, self.ext.utf8)
            {
                if length > self.shared.append_limit {
                    return self.too_big(&tag, mode).await;
                }
                return Ok(Input::Append(Box::new(p)));
            }
            // Other literals are held in memory, within the command's bound.
            if buf.len().saturating_add(length) > bound {
                return self.too_big(&tag, mode).await;
            }
            if mode == LiteralMode::Sync {
                self.out.extend_from_slice(b"+ Ready for literal data\r\n");
                self.flush().await?;
                // The literal may come in two sends (data, then CRLF): ack the
                // first at once, or the client's Nagle waits out our delayed ACK.
                self.io.get_ref().get_ref().quick_ack();
            }
            let start = buf.len();
            buf.resize(start + length, 0);
            if let Some(dest) = buf.get_mut(start..) {
                self.io.read_exact(dest).await?;
            }
        }
    }

    /// Runs one parsed command; returns (tag, command name, reply).
    async fn execute(
        &mut self,
        command: proto::Command,
        shutdown: &CancellationToken,
    ) -> std::io::Result<(String, String, Reply)> {
        let proto::Command { tag, body } = command;
        self.tag = tag.clone();
        let name = body.name().to_owned();
        // RFC 5182 2.1: SELECT, EXAMINE, UNSELECT and CLOSE reset `$`,
        // whether or not they succeed: each leaves the previous mailbox.
        if matches!(
            body,
            CommandBody::Select { .. } | CommandBody::Unselect | CommandBody::Close
        ) {
            self.searchres = Default::default();
        }
        let reply = self.dispatch(&tag, body, shutdown).await?;
        Ok((tag, name, reply))
    }

    /// Runs a command the state allows in its family's file (`cmd`).
    async fn dispatch(
        &mut self,
        tag: &str,
        body: CommandBody,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Reply> {
        if let Some(refused) = state::refusal(&self.state, &body) {
            return Ok(refused);
        }
        let s = self;
        // A mailbox argument as stored; a name the client's encoding does
        // not allow is the command's NO.
        macro_rules! mailbox {
            ($m:expr) => {
                match s.mailbox_arg(&$m) {
                    Ok(name) => name,
                    Err(reply) => return Ok(reply),
                }
            };
        }
        Ok(match body {
            CommandBody::Capability => cmd::auth::capability(s),
            CommandBody::Noop | CommandBody::Check => cmd::idle::noop(s).await?,
            CommandBody::Logout => cmd::auth::logout(s),
            CommandBody::StartTls => cmd::auth::starttls(s, tag).await?,
            CommandBody::Login { user, password } => {
                cmd::auth::login_command(s, &user, &password).await?
            }
            CommandBody::Authenticate { mechanism, initial } => {
                cmd::auth::authenticate(s, &mechanism, initial).await?
            }
            CommandBody::Id(_) => cmd::enable::id(s),
            CommandBody::Enable(capabilities) => cmd::enable::enable(s, &capabilities),
            CommandBody::Namespace => cmd::mailbox::namespace(s),
            CommandBody::Select {
                mailbox,
                read_only,
                params,
            } => {
                let name = mailbox!(mailbox);
                cmd::select::run(s, &name, read_only, &params).await?
            }
            CommandBody::Unselect => cmd::select::unselect(s),
            CommandBody::Close => cmd::select::close(s).await?,
            CommandBody::Create(mailbox) => {
                let name = mailbox!(mailbox);
                cmd::mailbox::create(s, name).await?
            }
            CommandBody::Delete(mailbox) => {
                let name = mailbox!(mailbox);
                cmd::mailbox::delete(s, name).await?
            }
            CommandBody::Rename { from, to } => {
                let from = mailbox!(from);
                let to = mailbox!(to);
                cmd::mailbox::rename(s, from, to).await?
            }
            CommandBody::Subscribe(mailbox) => {
                let name = mailbox!(mailbox);
                cmd::mailbox::subscribe(s, name, true).await?
            }
            CommandBody::Unsubscribe(mailbox) => {
                let name = mailbox!(mailbox);
                cmd::mailbox::subscribe(s, name, false).await?
            }
            CommandBody::List(list) => cmd::list::run(s, list).await?,
            CommandBody::Status { mailbox, items } => {
                cmd::list::status::run(s, &mailbox.0, &items).await?
            }
            CommandBody::Append(append) => {
                let name = mailbox!(append.mailbox);
                cmd::append::append(s, name, append).await?
            }
            CommandBody::Idle => cmd::idle::idle(s, shutdown).await?,
            CommandBody::GetQuota(root) => cmd::quota::get_quota(s, &root).await?,
            CommandBody::GetQuotaRoot(mailbox) => {
                let name = mailbox!(mailbox);
                cmd::quota::get_quota_root(s, &name).await?
            }
            CommandBody::SetQuota { .. } => cmd::quota::set_quota(),
            CommandBody::Expunge => cmd::expunge::expunge(s, None).await?,
            CommandBody::UidExpunge(set) => cmd::expunge::uid_expunge(s, set).await?,
            CommandBody::Search(search) => cmd::search::run(s, search).await?,
            CommandBody::Fetch(fetch) => cmd::fetch::run(s, fetch).await?,
            CommandBody::Store(store) => cmd::store::run(s, store).await?,
            CommandBody::Copy { uid, set, mailbox } => {
                let target = mailbox!(mailbox);
                cmd::copy::run(s, set, &target, uid, false).await?
            }
            CommandBody::Move { uid, set, mailbox } => {
                let target = mailbox!(mailbox);
                cmd::copy::run(s, set, &target, uid, true).await?
            }
            CommandBody::Sort(sort) => cmd::sort::run(s, sort.into()).await?,
            CommandBody::Thread(thread) => cmd::sort::run(s, thread.into()).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn expunges_wait_during_fetch_store_and_searches() {
        let body = |line: &str| proto::parse_command(line.as_bytes()).unwrap().body;
        for line in [
            "a FETCH 1 FLAGS\r\n",
            "a store 1 +FLAGS (x)\r\n",
            "a SEARCH ALL\r\n",
            "a SORT (DATE) UTF-8 ALL\r\n",
            "a THREAD REFERENCES UTF-8 ALL\r\n",
        ] {
            assert!(!expunge_allowed(&body(line)), "{line}");
        }
        for line in ["a UID FETCH 1 FLAGS\r\n", "a NOOP\r\n", "a COPY 1 x\r\n"] {
            assert!(expunge_allowed(&body(line)), "{line}");
        }
    }
}
