//! One IMAP connection: reading commands (lines and literals, bounded),
//! the session state, and the commands that are not FETCH or SEARCH.
//!
//! Each command is parsed whole, from the bytes the client sent, into a
//! typed [`proto::Command`] and dispatched on it. Message sequence
//! numbers live in [`Selected::uids`] and change only where RFC 3501 7.4.1
//! allows: untagged EXPUNGE is never sent during FETCH, STORE or SEARCH.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use imap_codec::AuthenticateDataCodec;
use imap_codec::decode::Decoder;
use mailfleet_proto::v1 as pb;
use mailfleet_proto::v1::MailboxEvent;
use mailfleet_runtime::CancellationToken;
use mailfleet_runtime::grpc::MailStore;
use mailfleet_runtime::tls::Tls;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::conn::{Conn, MaybeTls};
use crate::encode;
use crate::metrics::Metrics;
use crate::proto::{self, CommandBody, LiteralMode, SeqOrUid, Sequence, SequenceSet, StoreMode};
use crate::state::MessageState;

/// How often an IDLE session resynchronises even without events (a lost
/// event, or RabbitMQ down, costs at most this delay).
const IDLE_POLL: Duration = Duration::from_secs(60);
/// The same while the event feed is down.
const IDLE_POLL_WITHOUT_EVENTS: Duration = Duration::from_secs(10);
/// UIDs per FetchMessages/StoreFlags call.
pub(crate) const UID_CHUNK: usize = 1000;
/// Largest command (lines and literals together) accepted before login.
const PRE_AUTH_COMMAND: usize = 64 * 1024;
/// Before login, a client may stay silent this long at most.
const PRE_AUTH_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings and handles shared by every session of the process.
pub(crate) struct Shared {
    pub client: MailStore,
    pub tls: Option<Tls>,
    pub allow_plaintext: bool,
    pub max_line: usize,
    pub append_limit: usize,
    pub idle_timeout: Duration,
    pub metrics: Metrics,
    pub events: broadcast::Sender<MailboxEvent>,
    pub feed: crate::events::Feed,
    /// Parsed message metadata by blob id (see `meta_cache.rs`).
    pub meta_cache: crate::meta_cache::MetaCache,
}

pub(crate) use crate::proto::Reply;

/// The mailbox a session has selected, with its sequence-number map.
pub(crate) struct Selected {
    pub name: String,
    pub id: i64,
    pub read_only: bool,
    /// UIDs in sequence-number order: message n has UID `uids[n - 1]`.
    pub uids: Vec<u32>,
    /// Flags and modseq of each message, parallel to `uids`.
    pub states: Vec<MessageState>,
    pub modseq: u64,
    /// An event says the mailbox changed past `modseq`.
    pub dirty: bool,
    /// Expunged elsewhere, not yet announced (announcing is not allowed now).
    pub pending_expunge: Vec<u32>,
    /// Below the modseq of the earliest of `pending_expunge` (RFC 7162).
    pub expunge_floor: Option<u64>,
    /// UIDs that are \Recent in this session, ascending (see `rev2`).
    pub recent: Vec<u32>,
    /// The event feed's connection this state is current for (None: it
    /// was down); any other value means events may have been missed.
    pub feed_epoch: Option<u64>,
    /// The keywords the client was told of in FLAGS, in that order. FLAGS
    /// lists the flags of the mailbox (RFC 3501 7.2.6, RFC 9051 7.3.5), so
    /// no response may show a keyword before it is listed here.
    pub keywords: Vec<String>,
}

impl Selected {
    /// Whether every keyword of `flags` was announced in FLAGS.
    pub(crate) fn knows_keywords<'a>(&self, flags: impl IntoIterator<Item = &'a str>) -> bool {
        flags
            .into_iter()
            .all(|f| f.starts_with('\\') || self.keywords.iter().any(|k| k.eq_ignore_ascii_case(f)))
    }

    pub(crate) fn seq_of(&self, uid: u32) -> Option<usize> {
        self.uids.binary_search(&uid).ok().map(|i| i + 1)
    }

    /// What the session knows of a message it holds.
    pub(crate) fn state_of(&self, uid: u32) -> Option<&MessageState> {
        let i = self.uids.binary_search(&uid).ok()?;
        self.states.get(i)
    }

    /// Records a message's flags and modseq as mailstore reported them;
    /// an older report than what the session holds is ignored.
    pub(crate) fn learn(&mut self, uid: u32, flags: &[String], modseq: u64) {
        if let Ok(i) = self.uids.binary_search(&uid)
            && let Some(state) = self.states.get_mut(i)
            && modseq >= state.modseq
        {
            *state = MessageState::new(flags, modseq);
        }
    }

    /// Takes message `seq` out of the map; returns its UID.
    fn remove_seq(&mut self, seq: usize) -> u32 {
        if seq <= self.states.len() {
            self.states.remove(seq - 1);
        }
        self.uids.remove(seq - 1)
    }

    /// A sequence number beyond EXISTS is a client error (RFC 3501 6.4.5:
    /// the command is BAD, not partly run). A range is accepted when one of
    /// its ends names a message, and anything when the mailbox is empty
    /// (`1:*` there is common and harmless).
    pub(crate) fn names_missing_message(&self, set: &SequenceSet) -> bool {
        let n = self.uids.len() as u32;
        let beyond = |x: &SeqOrUid| matches!(x, SeqOrUid::Value(v) if v.get() > n);
        n > 0
            && set.0.as_ref().iter().any(|seq| match seq {
                Sequence::Single(a) => beyond(a),
                Sequence::Range(a, b) => beyond(a) && beyond(b),
            })
    }

    /// UIDs of a sequence set, ascending, only those that exist.
    pub(crate) fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<u32> {
        let mut out = Vec::new();
        let n = self.uids.len() as u32;
        let max_uid = self.uids.last().copied().unwrap_or(0);
        for seq in set.0.as_ref() {
            let (a, b) = match seq {
                Sequence::Single(x) => (*x, *x),
                Sequence::Range(a, b) => (*a, *b),
            };
            let v = |x: SeqOrUid| match x {
                SeqOrUid::Value(v) => v.get(),
                SeqOrUid::Asterisk => {
                    if uid {
                        max_uid
                    } else {
                        n
                    }
                }
            };
            let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
            if uid {
                let start = self.uids.partition_point(|&u| u < lo);
                let end = self.uids.partition_point(|&u| u <= hi);
                out.extend_from_slice(self.uids.get(start..end).unwrap_or_default());
            } else if lo >= 1 {
                let hi = hi.min(n);
                for s in lo..=hi {
                    if let Some(&u) = self.uids.get(s as usize - 1) {
                        out.push(u);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The system flags every mailbox has, as FLAGS and PERMANENTFLAGS list them.
const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// The FLAGS and PERMANENTFLAGS responses of a mailbox with `keywords`
/// (any keyword may be created: `\*`).
fn flags_responses(keywords: &[String]) -> [String; 2] {
    let mut list = String::from(SYSTEM_FLAGS);
    for k in keywords {
        list.push(' ');
        list.push_str(k);
    }
    [
        format!("FLAGS ({list})"),
        format!("OK [PERMANENTFLAGS ({list} \\*)] Flags permitted"),
    ]
}

/// Compresses ascending UIDs into ranges.
pub(crate) fn uid_set(uids: &[u32]) -> pb::UidSet {
    let mut ranges: Vec<pb::UidRange> = Vec::new();
    for &u in uids {
        match ranges.last_mut() {
            Some(r) if r.last.checked_add(1) == Some(u) => r.last = u,
            _ => ranges.push(pb::UidRange { first: u, last: u }),
        }
    }
    pb::UidSet { ranges }
}

/// "1:3,5" form of ascending UIDs (COPYUID, APPENDUID).
pub(crate) fn uid_text(uids: &[u32]) -> String {
    uid_set(uids)
        .ranges
        .iter()
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}:{}", r.first, r.last)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The one mapping of mailstore errors to IMAP replies.
/// One SelectMailbox listing, all its pages.
pub(crate) struct Listing {
    /// The mailbox status (None: no such mailbox).
    pub mailbox: Option<pb::Mailbox>,
    /// The \Recent range [from, to) the call took or reported.
    pub recent: (u32, u32),
    pub messages: Vec<pb::MessageState>,
}

/// A mailbox's status and its live messages (`since` 0) or every message
/// changed after modseq `since`, expunged ones included, from UID `from`
/// on; with `claim`, the caller takes the unclaimed \Recent range.
pub(crate) async fn list_mailbox(
    mut client: MailStore,
    account: &str,
    mailbox: &str,
    since: u64,
    from: u32,
    claim: bool,
) -> Result<Listing, tonic::Status> {
    let mut listing = Listing {
        mailbox: None,
        recent: (0, 0),
        messages: Vec::new(),
    };
    let mut uid_from = from;
    loop {
        let first = uid_from == from;
        let page = client
            .select_mailbox(pb::SelectMailboxRequest {
                account: account.to_owned(),
                mailbox: mailbox.to_owned(),
                changed_since: since,
                uid_from,
                limit: 0,
                claim_recent: claim && first,
            })
            .await?
            .into_inner();
        if first {
            listing.mailbox = page.mailbox;
            listing.recent = (page.recent_from, page.recent_to);
        }
        let last = page.messages.last().map(|m| m.uid);
        listing.messages.extend(page.messages);
        match last {
            Some(last) if page.more => uid_from = last.saturating_add(1),
            _ => return Ok(listing),
        }
    }
}

/// A command ran without the login or the selected mailbox it needs,
/// which the state gate ([`refusal`]) rules out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoTarget;

impl From<NoTarget> for std::io::Error {
    fn from(_: NoTarget) -> Self {
        std::io::Error::other("IMAP command ran without its login or mailbox")
    }
}

impl From<NoTarget> for tonic::Status {
    fn from(_: NoTarget) -> Self {
        tonic::Status::failed_precondition("IMAP command ran without its login or mailbox")
    }
}

/// The connection states of RFC 9051 3 (RFC 3501 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    NotAuthenticated,
    Authenticated,
    Selected,
    Logout,
}

/// The one place that says which commands a state allows (RFC 9051 6.1
/// to 6.4): the BAD for a command the state does not allow.
fn refusal(state: State, body: &CommandBody) -> Option<Reply> {
    use CommandBody as C;
    // Any state (ID: RFC 2971 3.1).
    if matches!(body, C::Capability | C::Noop | C::Logout | C::Id(_)) {
        return None;
    }
    let login = matches!(body, C::StartTls | C::Login { .. } | C::Authenticate { .. });
    let needs_mailbox = matches!(
        body,
        C::Check
            | C::Close
            | C::Unselect
            | C::Expunge
            | C::UidExpunge(_)
            | C::Search(_)
            | C::Fetch(_)
            | C::Store(_)
            | C::Copy { .. }
            | C::Move { .. }
            | C::Sort(_)
            | C::Thread(_)
    );
    let why = match state {
        State::Logout => "Logging out",
        State::NotAuthenticated if login => return None,
        State::NotAuthenticated => "Log in first",
        State::Authenticated | State::Selected if login => "Already authenticated",
        State::Authenticated if needs_mailbox => "Select a mailbox first",
        State::Authenticated | State::Selected => return None,
    };
    Some(Reply::Bad(why.into()))
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

/// Whether two mailbox names are the same mailbox (INBOX in any case).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
}

/// A selected mailbox's state brought up to date by a listing of what
/// changed since it: expunged messages (and those already known to be
/// expunged) leave, new ones join, others take their new flags.
fn merge_changes(base: Selected, changes: Vec<pb::MessageState>) -> (Vec<u32>, Vec<MessageState>) {
    let Selected {
        mut uids,
        mut states,
        pending_expunge,
        ..
    } = base;
    let mut gone: Vec<u32> = pending_expunge;
    let last_known = uids.last().copied().unwrap_or(0);
    let mut new = Vec::new();
    for m in changes {
        match uids.binary_search(&m.uid) {
            Ok(_) if m.expunged => gone.push(m.uid),
            Ok(i) => {
                if let Some(s) = states.get_mut(i)
                    && m.modseq >= s.modseq
                {
                    *s = MessageState::new(&m.flags, m.modseq);
                }
            }
            Err(_) if !m.expunged && m.uid > last_known => {
                new.push((m.uid, MessageState::new(&m.flags, m.modseq)));
            }
            Err(_) => {}
        }
    }
    if !gone.is_empty() {
        gone.sort_unstable();
        let mut keep = uids.iter().map(|u| gone.binary_search(u).is_err());
        states.retain(|_| keep.next().unwrap_or(true));
        uids.retain(|u| gone.binary_search(u).is_err());
    }
    new.sort_unstable_by_key(|(uid, _)| *uid);
    for (uid, state) in new {
        uids.push(uid);
        states.push(state);
    }
    (uids, states)
}

/// The NO for a failed mailstore call about a mailbox or its messages
/// (see `errors`).
pub(crate) fn status_reply(status: tonic::Status) -> Reply {
    crate::errors::reply(&status, crate::errors::Target::Mailbox)
}

/// Calls mailstore; a failure becomes the command's NO.
macro_rules! rpc {
    ($call:expr) => {
        match $call.await {
            Ok(r) => r.into_inner(),
            Err(status) => return Ok(crate::session::status_reply(status)),
        }
    };
}
pub(crate) use rpc;

pub(crate) struct Session {
    pub shared: Arc<Shared>,
    pub io: BufReader<Conn>,
    pub peer: SocketAddr,
    pub client: MailStore,
    pub user: Option<String>,
    pub selected: Option<Selected>,
    pub events: broadcast::Receiver<MailboxEvent>,
    pub out: Vec<u8>,
    pub ext: crate::ext::ExtState,
    pub rfc7162: crate::condstore::State,
    /// The client sent ENABLE IMAP4rev2.
    pub rev2: bool,
    /// Tag of the command being run (ESEARCH answers carry it).
    pub tag: String,
    /// The saved SEARCH result, `$` (RFC 5182).
    pub searchres: crate::searchres::Saved,
    /// The command being run has read the selected mailbox's changes from
    /// mailstore (a resync or SELECT); if not, it does at its end.
    pub resynced: bool,
    /// The command being run may announce expunges (RFC 3501 7.4.1).
    pub expunge_allowed: bool,
    /// LOGOUT was accepted: the session only finishes its answer.
    pub logging_out: bool,
}

/// What reading the next command produced.
enum Input {
    Command(Vec<u8>),
    /// An APPEND whose message literal is still to be read (crate::append).
    Append(Box<crate::append::Pending>),
    /// Already answered (literal refused, line too long); read the next.
    Handled,
    Eof,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, conn: Conn, peer: SocketAddr) -> Self {
        Self {
            client: shared.client.clone(),
            events: shared.events.subscribe(),
            shared,
            io: BufReader::new(conn),
            peer,
            user: None,
            selected: None,
            out: Vec::with_capacity(4096),
            ext: crate::ext::ExtState::default(),
            rfc7162: crate::condstore::State::default(),
            rev2: false,
            tag: String::new(),
            searchres: crate::searchres::Saved::default(),
            resynced: false,
            expunge_allowed: true,
            logging_out: false,
        }
    }

    /// The RFC state the session is in.
    pub(crate) fn state(&self) -> State {
        if self.logging_out {
            return State::Logout;
        }
        match (&self.user, &self.selected) {
            (None, _) => State::NotAuthenticated,
            (Some(_), None) => State::Authenticated,
            (Some(_), Some(_)) => State::Selected,
        }
    }

    /// Whether passwords may be sent on this connection now.
    fn login_allowed(&self) -> bool {
        self.io.get_ref().get_ref().is_tls()
            || self.shared.allow_plaintext
            || self.peer.ip().is_loopback()
    }

    pub(crate) fn capabilities(&self) -> String {
        let mut caps = String::from(
            "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE",
        );
        caps.push_str(&format!(" APPENDLIMIT={}", self.shared.append_limit));
        caps.push_str(crate::ext::CAPABILITIES);
        caps.push_str(" CONDSTORE QRESYNC");
        caps.push_str(" IMAP4rev2 BINARY SEARCHRES");
        caps.push_str(" SORT SORT=DISPLAY THREAD=REFERENCES THREAD=ORDEREDSUBJECT");
        if self.user.is_none() {
            if !self.io.get_ref().get_ref().is_tls() && self.shared.tls.is_some() {
                caps.push_str(" STARTTLS");
            }
            if self.login_allowed() {
                caps.push_str(" AUTH=PLAIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        }
        caps
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.io.get_mut().write_all(&out).await?;
            self.out = out;
            self.out.clear();
        }
        self.io.get_mut().flush().await
    }

    /// Announces the keywords among `flags` the client has not been told
    /// of, with new FLAGS and PERMANENTFLAGS responses: called before any
    /// response that shows a message's flags.
    pub(crate) fn announce_keywords<S: AsRef<str>>(&mut self, flags: &[S]) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let mut new = false;
        for f in flags {
            let f = f.as_ref();
            if !sel.knows_keywords([f]) {
                sel.keywords.push(f.to_owned());
                new = true;
            }
        }
        if new {
            for line in flags_responses(&sel.keywords) {
                self.untagged(&line);
            }
        }
    }

    /// Takes note of the selected mailbox's highestmodseq as a mailstore
    /// call of this command read it. At the view's own modseq (or one above
    /// it, after a change of this session's call, `own_change`: every call
    /// that changes a mailbox raises its modseq by exactly one) the view
    /// has missed nothing, so the command needs no closing resync; any
    /// other value asks for one. Reads happen after the command began, so
    /// what another session finished before it is never skipped.
    pub(crate) fn note_highest(&mut self, mailbox_id: i64, highest: u64, own_change: bool) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if sel.id != mailbox_id {
            return;
        }
        let current = !sel.dirty
            && sel.feed_epoch == self.shared.feed.epoch()
            && (highest == sel.modseq || (own_change && highest == sel.modseq + 1));
        if current {
            sel.modseq = highest;
        }
        self.resynced = current;
    }

    /// The same, from a mailbox status that may be the selected mailbox's.
    pub(crate) fn note_mailbox(&mut self, mb: &pb::Mailbox) {
        self.note_highest(mb.id, mb.highestmodseq, false);
    }

    /// BAD for a sequence set (not a UID set) that names a message beyond
    /// EXISTS (RFC 9051 6.4.5: an invalid sequence number).
    fn bad_sequence(&self, set: &SequenceSet, uid: bool) -> Option<Reply> {
        let missing = !uid
            && self
                .selected
                .as_ref()
                .is_some_and(|s| s.names_missing_message(set));
        missing.then(|| Reply::Bad("Invalid message sequence number".into()))
    }

    pub(crate) fn untagged(&mut self, line: &str) {
        self.out.extend_from_slice(b"* ");
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

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
                Err(p) => {
                    crate::append::run(self, *p)
                        .instrument(span.clone())
                        .await?
                }
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

    /// How long the client may take to send a command (or a line the
    /// running command waits for): shorter before login.
    pub(crate) fn read_timeout(&self) -> Duration {
        if self.user.is_some() {
            self.shared.idle_timeout
        } else {
            self.pre_auth_timeout()
        }
    }

    fn pre_auth_timeout(&self) -> Duration {
        PRE_AUTH_TIMEOUT.min(self.shared.idle_timeout)
    }

    /// [`Self::read_line`] within [`Self::read_timeout`]: a line a command
    /// waits for (a SASL response, the end of an APPEND) cannot hold the
    /// session forever, one byte at a time or not at all.
    pub(crate) async fn read_line_timed(
        &mut self,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<Option<bool>> {
        match tokio::time::timeout(self.read_timeout(), self.read_line(buf)).await {
            Ok(r) => r,
            Err(_) => {
                self.untagged("BYE Autologout; idle for too long");
                self.flush().await?;
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "client line timed out",
                ))
            }
        }
    }

    /// Reads one line (bounded) and appends it to `buf`; false at EOF, Err
    /// on I/O; a too-long line is drained and reported with `Ok(None)`.
    pub(crate) async fn read_line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
        let max = self.shared.max_line;
        let mut taken = 0usize;
        let mut too_long = false;
        loop {
            let available = self.io.fill_buf().await?;
            if available.is_empty() {
                return Ok(Some(false));
            }
            let (n, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if !too_long {
                if taken + n > max {
                    too_long = true;
                } else {
                    buf.extend_from_slice(&available[..n]);
                }
            }
            taken += n;
            self.io.consume(n);
            if done {
                return Ok(if too_long { None } else { Some(true) });
            }
        }
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
        let authed = self.user.is_some();
        let bound = if authed {
            crate::MEMORY_LITERAL_LIMIT
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
                && let Some(p) = crate::append::message_literal(&buf, length, mode, self.ext.utf8)
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
            crate::searchres::reset(self);
        }
        let reply = self.dispatch(&tag, body, shutdown).await?;
        Ok((tag, name, reply))
    }

    /// A mailbox argument as stored (UTF-8, INBOX spelled so); the error is
    /// the command's NO.
    fn mailbox_arg(&self, m: &proto::Mailbox) -> Result<String, Reply> {
        crate::ext::names::from_client(&m.0, self.ext.utf8)
            .map(crate::ext::names::canonical)
            .map_err(|why| Reply::No(why.into()))
    }

    async fn dispatch(
        &mut self,
        tag: &str,
        body: CommandBody,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Reply> {
        if let Some(refused) = refusal(self.state(), &body) {
            return Ok(refused);
        }
        macro_rules! mailbox {
            ($m:expr) => {
                match self.mailbox_arg(&$m) {
                    Ok(name) => name,
                    Err(reply) => return Ok(reply),
                }
            };
        }
        let reply = match body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                self.untagged(&format!("CAPABILITY {caps}"));
                Reply::Ok("CAPABILITY completed".into())
            }
            CommandBody::Noop | CommandBody::Check => {
                self.sync_inner(true, true).await?;
                Reply::Ok("NOOP completed".into())
            }
            CommandBody::Logout => {
                self.logging_out = true;
                self.untagged("BYE mailfleet IMAP logging out");
                Reply::Logout
            }
            CommandBody::StartTls => return self.starttls(tag).await,
            CommandBody::Id(_) => {
                self.untagged("ID (\"name\" \"mailfleet\" \"vendor\" \"mailfleet\")");
                Reply::Ok("ID completed".into())
            }
            CommandBody::Login { user, password } => {
                let user = String::from_utf8_lossy(&user).into_owned();
                let pass = String::from_utf8_lossy(&password).into_owned();
                self.login(&user, &pass).await?
            }
            CommandBody::Authenticate { mechanism, initial } => {
                self.authenticate(&mechanism, initial).await?
            }
            CommandBody::Namespace => {
                self.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL");
                Reply::Ok("NAMESPACE completed".into())
            }
            CommandBody::Enable(capabilities) => {
                let mut line = String::from("ENABLED");
                for c in &capabilities {
                    if let Some(name) = crate::condstore::enable(self, c) {
                        line.push(' ');
                        line.push_str(name);
                    }
                }
                line.push_str(&crate::ext::enable(self, &capabilities).concat());
                line.push_str(&crate::rev2::enable(self, &capabilities));
                self.untagged(&line);
                Reply::Ok("ENABLE completed".into())
            }
            CommandBody::Select {
                mailbox,
                read_only,
                params,
            } => {
                let name = mailbox!(mailbox);
                crate::condstore::select(self, &name, read_only, &params).await?
            }
            CommandBody::Create(mailbox) => {
                let name = mailbox!(mailbox);
                let name = name.trim_end_matches('/').to_owned();
                let account = self.account()?;
                rpc!(self.client.create_mailbox(pb::CreateMailboxRequest {
                    account,
                    name,
                    special_use: String::new(),
                }));
                Reply::Ok("CREATE completed".into())
            }
            CommandBody::Delete(mailbox) => {
                let name = mailbox!(mailbox);
                if self.selected.as_ref().is_some_and(|s| s.name == name) {
                    self.selected = None;
                }
                let account = self.account()?;
                rpc!(
                    self.client
                        .delete_mailbox(pb::DeleteMailboxRequest { account, name })
                );
                Reply::Ok("DELETE completed".into())
            }
            CommandBody::Rename { from, to } => {
                let from = mailbox!(from);
                let to = mailbox!(to);
                let account = self.account()?;
                rpc!(
                    self.client
                        .rename_mailbox(pb::RenameMailboxRequest { account, from, to })
                );
                Reply::Ok("RENAME completed".into())
            }
            CommandBody::Subscribe(mailbox) => {
                let name = mailbox!(mailbox);
                self.subscribe(name, true).await?
            }
            CommandBody::Unsubscribe(mailbox) => {
                let name = mailbox!(mailbox);
                self.subscribe(name, false).await?
            }
            CommandBody::List(list) => crate::ext::list::run(self, list).await?,
            CommandBody::Status { mailbox, items } => {
                crate::ext::status::run(self, &mailbox.0, &items).await?
            }
            CommandBody::Append(append) => {
                let name = mailbox!(append.mailbox);
                let account = self.account()?;
                let r = match self
                    .client
                    .append_message(pb::AppendMessageRequest {
                        account,
                        mailbox: name,
                        flags: append.flags,
                        internal_date_ms: append.date.map(|d| d.timestamp_millis()).unwrap_or(0),
                        data: append.message,
                    })
                    .await
                {
                    Ok(r) => r.into_inner(),
                    Err(s) => {
                        return Ok(crate::errors::reply(&s, crate::errors::Target::Destination));
                    }
                };
                self.sync(true).await?;
                Reply::Ok(format!(
                    "[APPENDUID {} {}] APPEND completed",
                    r.uidvalidity, r.uid
                ))
            }
            CommandBody::Idle => self.idle(tag, shutdown).await?,
            CommandBody::GetQuota(root) => crate::ext::quota::get_quota(self, &root).await?,
            CommandBody::GetQuotaRoot(mailbox) => {
                let name = mailbox!(mailbox);
                crate::ext::quota::get_quota_root(self, &name).await?
            }
            CommandBody::SetQuota { .. } => crate::ext::quota::set_quota(),
            CommandBody::Unselect => {
                self.selected = None;
                Reply::Ok("UNSELECT completed".into())
            }
            CommandBody::Close => {
                let writable = self.selected.as_ref().is_some_and(|s| !s.read_only);
                if writable {
                    let (account, mailbox) = self.target()?;
                    // Silent: CLOSE sends no EXPUNGE responses. If the
                    // expunge fails, CLOSE did not happen: the messages
                    // marked \Deleted remain and the mailbox stays selected.
                    if let Err(status) = self
                        .client
                        .expunge(pb::ExpungeRequest {
                            account,
                            mailbox,
                            uids: Some(pb::UidSet {
                                ranges: vec![pb::UidRange { first: 1, last: 0 }],
                            }),
                            only_deleted: true,
                        })
                        .await
                    {
                        return Ok(status_reply(status));
                    }
                }
                self.selected = None;
                Reply::Ok("CLOSE completed".into())
            }
            CommandBody::Expunge => self.expunge(None).await?,
            CommandBody::UidExpunge(set) => {
                let uids = match crate::searchres::resolve(self, set, true) {
                    Some(set) => self
                        .selected
                        .as_ref()
                        .map(|s| s.resolve(&set, true))
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                if uids.is_empty() && !self.rfc7162.condstore {
                    Reply::Ok("UID EXPUNGE completed".into())
                } else {
                    // With CONDSTORE on, even an empty one reports
                    // HIGHESTMODSEQ.
                    self.expunge(Some(uids)).await?
                }
            }
            CommandBody::Search(search) if search.ret.is_some() => {
                crate::ext::search(self, search).await?
            }
            CommandBody::Search(search) => crate::search::search(self, &search).await?,
            CommandBody::Fetch(fetch) => {
                match crate::searchres::resolve(self, fetch.set.clone(), fetch.uid) {
                    Some(set) => crate::fetch::fetch(self, &set, &fetch).await?,
                    None => self.nothing_to_do("FETCH", fetch.uid).await?,
                }
            }
            CommandBody::Store(store) => {
                match crate::searchres::resolve(self, store.set.clone(), store.uid) {
                    Some(set) => self.store(&set, &store).await?,
                    None => self.nothing_to_do("STORE", store.uid).await?,
                }
            }
            CommandBody::Copy { uid, set, mailbox } => {
                let target = mailbox!(mailbox);
                match crate::searchres::resolve(self, set, uid) {
                    Some(set) => self.copy(&set, &target, uid, false).await?,
                    None => self.nothing_to_do("COPY", uid).await?,
                }
            }
            CommandBody::Move { uid, set, mailbox } => {
                let target = mailbox!(mailbox);
                match crate::searchres::resolve(self, set, uid) {
                    Some(set) => self.copy(&set, &target, uid, true).await?,
                    None => self.nothing_to_do("MOVE", uid).await?,
                }
            }
            CommandBody::Sort(sort) => crate::sort::run(self, sort.into()).await?,
            CommandBody::Thread(thread) => crate::sort::run(self, thread.into()).await?,
        };
        Ok(reply)
    }

    /// A FETCH/STORE/COPY/MOVE of an empty `$`: done, nothing to do.
    async fn nothing_to_do(&mut self, verb: &str, uid: bool) -> std::io::Result<Reply> {
        self.sync(uid).await?;
        Ok(Reply::Ok(format!("{verb} completed (nothing to do)")))
    }

    /// AUTHENTICATE (RFC 3501 6.2.2) with SASL-IR (RFC 4959): PLAIN only.
    async fn authenticate(
        &mut self,
        mechanism: &str,
        initial: Option<Vec<u8>>,
    ) -> std::io::Result<Reply> {
        if mechanism != "PLAIN" {
            return Ok(Reply::No(
                "[CANNOT] Only AUTHENTICATE PLAIN is supported".into(),
            ));
        }
        // An empty initial response (`=`, RFC 4959) carries no PLAIN
        // message, which cannot be empty: ask for it.
        let data = match initial {
            Some(b64) if !b64.is_empty() => {
                match base64::engine::general_purpose::STANDARD.decode(&b64) {
                    Ok(d) => Some(d),
                    Err(_) => return Ok(Reply::Bad("Initial response is not base64".into())),
                }
            }
            _ => self.auth_continuation().await?,
        };
        let Some(d) = data else {
            return Ok(Reply::Bad("AUTHENTICATE cancelled".into()));
        };
        let mut parts = d.split(|&b| b == 0);
        let _authz = parts.next();
        match (parts.next(), parts.next()) {
            (Some(u), Some(p)) => {
                let u = String::from_utf8_lossy(u).into_owned();
                let p = String::from_utf8_lossy(p).into_owned();
                self.login(&u, &p).await
            }
            _ => Ok(Reply::Bad("Malformed PLAIN response".into())),
        }
    }

    /// The logged-in account. Only commands the state gate let through
    /// ask, so the error is a broken invariant: it ends the connection,
    /// and no command ever runs for an empty account name.
    pub(crate) fn account(&self) -> Result<String, NoTarget> {
        self.user.clone().ok_or(NoTarget)
    }

    /// (account, selected mailbox name); see [`Self::account`].
    pub(crate) fn target(&self) -> Result<(String, String), NoTarget> {
        let mailbox = self.selected.as_ref().ok_or(NoTarget)?.name.clone();
        Ok((self.account()?, mailbox))
    }

    async fn starttls(&mut self, tag: &str) -> std::io::Result<Reply> {
        let Some(tls) = self.shared.tls.clone() else {
            return Ok(Reply::Bad("STARTTLS not available".into()));
        };
        if self.io.get_ref().get_ref().is_tls() {
            return Ok(Reply::Bad("TLS already active".into()));
        }
        if self.user.is_some() {
            return Ok(Reply::Bad("Already authenticated".into()));
        }
        self.out
            .extend_from_slice(format!("{tag} OK Begin TLS negotiation now\r\n").as_bytes());
        self.flush().await?;
        // Anything the client pipelined after STARTTLS is discarded (RFC 3501 6.2.1).
        let Some(tcp) = self.io.get_mut().get_mut().take_plain() else {
            return Err(std::io::Error::other("STARTTLS on a non-plain stream"));
        };
        // A client that never starts (or never finishes) the handshake is
        // dropped like a silent one before login.
        let tls_stream = tokio::time::timeout(self.pre_auth_timeout(), tls.acceptor().accept(tcp))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        let timeout = self.shared.idle_timeout;
        self.io = BufReader::new(Conn::new(MaybeTls::Tls(Box::new(tls_stream)), timeout));
        self.shared.metrics.tls_upgrades.inc();
        Ok(Reply::Sent)
    }

    async fn login(&mut self, user: &str, pass: &str) -> std::io::Result<Reply> {
        if !self.login_allowed() {
            return Ok(Reply::No(
                "[PRIVACYREQUIRED] Use STARTTLS or port 993 before logging in".into(),
            ));
        }
        let r = rpc!(self.client.authenticate(pb::AuthenticateRequest {
            username: user.to_owned(),
            password: pass.to_owned(),
            remote_ip: self.peer.ip().to_string(),
            protocol: "imap".into(),
        }));
        // mailstore's login guard has already delayed a failed answer.
        if r.locked {
            return Ok(Reply::No(
                "[UNAVAILABLE] Too many failed logins; try again later".into(),
            ));
        }
        if !r.ok {
            return Ok(Reply::No(
                "[AUTHENTICATIONFAILED] Invalid credentials".into(),
            ));
        }
        tracing::info!(user = %r.address, "IMAP login.");
        self.user = Some(r.address);
        Ok(Reply::Ok(format!(
            "[CAPABILITY {}] Logged in",
            self.capabilities()
        )))
    }

    /// Asks for the SASL response; `None` when the client cancels.
    async fn auth_continuation(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        self.out.extend_from_slice(b"+ \r\n");
        self.flush().await?;
        let mut line = Vec::new();
        match self.read_line_timed(&mut line).await? {
            Some(true) => {}
            _ => return Ok(None),
        }
        if line.starts_with(b"*") {
            return Ok(None);
        }
        Ok(match AuthenticateDataCodec::default().decode(&line) {
            Ok((_, data)) => Some(data.0.declassify().clone()),
            Err(_) => None,
        })
    }

    pub(crate) async fn select(&mut self, name: &str, read_only: bool) -> std::io::Result<Reply> {
        let previous = self.selected.take();
        if previous.is_some() {
            // RFC 7162 3.2.11, sent whether or not QRESYNC is enabled.
            self.untagged("OK [CLOSED] Previous mailbox closed");
        }
        // Selecting the mailbox the session has open again (clients do, to
        // refresh) asks only for what changed since the state it holds.
        let base = previous.filter(|p| same_name(&p.name, name) && p.states.len() == p.uids.len());
        let since = base.as_ref().map_or(0, |b| b.modseq.max(1));
        // Read before the listing: a reconnect during it forces a resync.
        let feed_epoch_before = self.shared.feed.epoch();
        let account = self.account()?;
        // SELECT takes the new messages' \Recent; EXAMINE may not.
        let listed = list_mailbox(self.client.clone(), &account, name, since, 1, !read_only).await;
        let Listing {
            mailbox: mut status,
            recent: recent_range,
            messages: mut listing,
        } = match listed {
            Ok(l) => l,
            Err(status) => return Ok(status_reply(status)),
        };
        let mut base = base;
        if let (Some(b), Some(mb)) = (&base, &status)
            && b.id != mb.id
        {
            // Deleted and created again under the same name: list it all.
            base = None;
            match list_mailbox(self.client.clone(), &account, name, 0, 1, false).await {
                Ok(l) => (status, listing) = (l.mailbox, l.messages),
                Err(status) => return Ok(status_reply(status)),
            }
        }
        let (uids, states) = match base {
            Some(b) => merge_changes(b, listing),
            None => listing
                .into_iter()
                .map(|m| (m.uid, MessageState::new(&m.flags, m.modseq)))
                .unzip(),
        };
        let first_unseen = states
            .iter()
            .position(|s: &MessageState| !s.flags.has("\\Seen"))
            .map(|i| i + 1);
        let Some(mb) = status else {
            return Ok(Reply::No("[NONEXISTENT] No such mailbox".into()));
        };
        // The keywords in use, each once (compared without case).
        let mut keywords: Vec<String> = Vec::new();
        for state in &states {
            for k in state.flags.keywords() {
                if !keywords.iter().any(|known| known.eq_ignore_ascii_case(k)) {
                    keywords.push(k.to_owned());
                }
            }
        }
        for line in flags_responses(&keywords) {
            self.untagged(&line);
        }
        self.untagged(&format!("{} EXISTS", uids.len()));
        let mut recent = Vec::new();
        if !self.rev2 {
            recent.extend(
                uids.iter()
                    .filter(|&&u| u >= recent_range.0 && u < recent_range.1),
            );
            self.untagged(&format!("{} RECENT", recent.len()));
        }
        if let Some(n) = first_unseen.filter(|_| !self.rev2) {
            self.untagged(&format!("OK [UNSEEN {n}] First unseen"));
        }
        if self.rev2 {
            let mut line = b"* LIST () \"/\" ".to_vec();
            encode::mailbox(&mut line, &mb.name);
            line.extend_from_slice(b"\r\n");
            self.out.extend_from_slice(&line);
        }
        self.untagged(&format!("OK [UIDVALIDITY {}] UIDs valid", mb.uidvalidity));
        self.untagged(&format!("OK [UIDNEXT {}] Predicted next UID", mb.uidnext));
        self.selected = Some(Selected {
            name: mb.name,
            id: mb.id,
            read_only,
            uids,
            states,
            modseq: mb.highestmodseq,
            dirty: false,
            pending_expunge: Vec::new(),
            expunge_floor: None,
            recent,
            feed_epoch: feed_epoch_before,
            keywords,
        });
        // Drop events from before the snapshot.
        while self.events.try_recv().is_ok() {}
        self.resynced = true;
        Ok(if read_only {
            Reply::Ok("[READ-ONLY] EXAMINE completed".into())
        } else {
            Reply::Ok("[READ-WRITE] SELECT completed".into())
        })
    }

    async fn subscribe(&mut self, name: String, on: bool) -> std::io::Result<Reply> {
        let account = self.account()?;
        rpc!(self.client.subscribe_mailbox(pb::SubscribeMailboxRequest {
            account,
            name,
            subscribed: on,
        }));
        Ok(Reply::Ok(
            if on {
                "SUBSCRIBE completed"
            } else {
                "UNSUBSCRIBE completed"
            }
            .into(),
        ))
    }

    async fn store(&mut self, set: &SequenceSet, cmd: &proto::Store) -> std::io::Result<Reply> {
        let uid = cmd.uid;
        if self.selected.as_ref().is_some_and(|s| s.read_only) {
            return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        // UNCHANGEDSINCE makes it a CONDSTORE enabling command (RFC 7162 3.1).
        if cmd.unchanged_since.is_some() {
            crate::condstore::enable_condstore(self);
        }
        // New messages become addressable first (EXPUNGE only for UID STORE).
        self.sync(uid).await?;
        if let Some(bad) = self.bad_sequence(set, uid) {
            return Ok(bad);
        }
        let mut uids = match &self.selected {
            Some(s) => s.resolve(set, uid),
            None => Vec::new(),
        };
        // Messages left alone by UNCHANGEDSINCE (as UIDs).
        let mut modified = Vec::new();
        if cmd.unchanged_since == Some(0) {
            // Every message has a modseq, so 0 always fails (RFC 7162 3.1.3).
            modified = std::mem::take(&mut uids);
        }
        let condstore = self.rfc7162.condstore;
        let mode = match cmd.mode {
            StoreMode::Add => pb::FlagsMode::FlagsAdd,
            StoreMode::Remove => pb::FlagsMode::FlagsRemove,
            StoreMode::Replace => pb::FlagsMode::FlagsReplace,
        };
        let flags = cmd.flags.clone();
        let answer = !cmd.silent;
        let (account, mailbox) = self.target()?;
        for chunk in uids.chunks(UID_CHUNK) {
            let r = rpc!(self.client.store_flags(pb::StoreFlagsRequest {
                account: account.clone(),
                mailbox: mailbox.clone(),
                uids: Some(uid_set(chunk)),
                mode: mode as i32,
                flags: flags.clone(),
                unchanged_since: cmd.unchanged_since.unwrap_or(0),
            }));
            modified.extend_from_slice(&r.modified);
            let mut mailbox_id = 0;
            if let Some(sel) = self.selected.as_mut() {
                mailbox_id = sel.id;
                for u in &r.updated {
                    sel.learn(u.uid, &u.flags, u.modseq);
                }
            }
            // Only our own change happened: nothing to resync.
            self.note_highest(mailbox_id, r.highestmodseq, !r.updated.is_empty());
            for u in &r.updated {
                self.announce_keywords(&u.flags);
            }
            // With CONDSTORE on, even .SILENT reports the new MODSEQ (RFC
            // 7162 3.1.3), with the UID.
            if answer || condstore {
                for u in &r.updated {
                    let Some(seq) = self.selected.as_ref().and_then(|s| s.seq_of(u.uid)) else {
                        continue;
                    };
                    let mut parts = Vec::new();
                    if uid || condstore {
                        parts.push(format!("UID {}", u.uid).into_bytes());
                    }
                    if answer {
                        let mut f = b"FLAGS ".to_vec();
                        encode::flags(&mut f, &crate::rev2::flags_of(self, u.uid, &u.flags));
                        parts.push(f);
                    }
                    if condstore {
                        parts.push(format!("MODSEQ ({})", u.modseq).into_bytes());
                    }
                    let mut line = format!("* {seq} FETCH (").into_bytes();
                    line.extend_from_slice(&parts.join(b" ".as_slice()));
                    line.extend_from_slice(b")\r\n");
                    self.out.extend_from_slice(&line);
                }
            }
        }
        self.sync(uid).await?;
        if !modified.is_empty() {
            modified.sort_unstable();
            if !uid {
                // STORE names messages by sequence number.
                let sel = self.selected.as_ref();
                modified = modified
                    .iter()
                    .filter_map(|&u| sel.and_then(|s| s.seq_of(u)))
                    .map(|n| n as u32)
                    .collect();
            }
            return Ok(crate::condstore::modified_reply(&modified));
        }
        Ok(Reply::Ok("STORE completed".into()))
    }

    async fn copy(
        &mut self,
        set: &SequenceSet,
        target: &str,
        uid: bool,
        is_move: bool,
    ) -> std::io::Result<Reply> {
        if is_move && self.selected.as_ref().is_some_and(|s| s.read_only) {
            return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        self.sync(uid).await?;
        if let Some(bad) = self.bad_sequence(set, uid) {
            return Ok(bad);
        }
        let uids = match &self.selected {
            Some(s) => s.resolve(set, uid),
            None => Vec::new(),
        };
        let verb = if is_move { "MOVE" } else { "COPY" };
        if uids.is_empty() {
            return Ok(Reply::Ok(format!("{verb} completed (nothing to do)")));
        }
        let (account, mailbox) = self.target()?;
        let r = match self
            .client
            .copy_messages(pb::CopyMessagesRequest {
                account,
                mailbox,
                uids: Some(uid_set(&uids)),
                target: target.to_owned(),
                r#move: is_move,
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return Ok(crate::errors::reply(&s, crate::errors::Target::Destination)),
        };
        let code = format!(
            "COPYUID {} {} {}",
            r.uidvalidity,
            uid_text(&r.source_uids),
            uid_text(&r.target_uids)
        );
        if !is_move {
            self.sync(uid).await?;
            return Ok(Reply::Ok(format!("[{code}] COPY completed")));
        }
        self.untagged(&format!("OK [{code}] Moved"));
        let mut moved = r.source_uids.clone();
        moved.sort_unstable();
        self.announce_expunged(&moved);
        self.sync(true).await?;
        Ok(Reply::Ok("MOVE completed".into()))
    }

    /// EXPUNGE (`uids` None) or UID EXPUNGE.
    pub(crate) async fn expunge(&mut self, uids: Option<Vec<u32>>) -> std::io::Result<Reply> {
        if self.selected.as_ref().is_some_and(|s| s.read_only) {
            return Ok(Reply::No("[READ-ONLY] Mailbox is read-only".into()));
        }
        let (account, mailbox) = self.target()?;
        let set = match &uids {
            Some(u) => uid_set(u),
            None => pb::UidSet {
                ranges: vec![pb::UidRange { first: 1, last: 0 }],
            },
        };
        if set.ranges.is_empty() && !self.rfc7162.condstore {
            return Ok(Reply::Ok("EXPUNGE completed".into()));
        }
        if !set.ranges.is_empty() {
            let r = rpc!(self.client.expunge(pb::ExpungeRequest {
                account,
                mailbox,
                uids: Some(set),
                only_deleted: true,
            }));
            let mailbox_id = self.selected.as_ref().map_or(0, |s| s.id);
            self.note_highest(mailbox_id, r.highestmodseq, !r.expunged.is_empty());
            self.announce_expunged(&r.expunged);
        }
        self.sync(true).await?;
        if self.rfc7162.condstore
            && let Some(sel) = &self.selected
        {
            let highest = crate::condstore::reported_modseq(sel);
            return Ok(Reply::Ok(format!(
                "[HIGHESTMODSEQ {highest}] EXPUNGE completed"
            )));
        }
        Ok(Reply::Ok("EXPUNGE completed".into()))
    }

    /// Removes UIDs from the map, announcing each (highest sequence first,
    /// so every number is valid when the client reads it).
    fn announce_expunged(&mut self, uids: &[u32]) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let mut seqs: Vec<usize> = uids.iter().filter_map(|&u| sel.seq_of(u)).collect();
        seqs.sort_unstable();
        let mut lines = Vec::new();
        let mut gone = Vec::new();
        for &seq in seqs.iter().rev() {
            gone.push(sel.remove_seq(seq));
            lines.push(format!("{seq} EXPUNGE"));
        }
        if self.rfc7162.qresync {
            // RFC 7162 3.2.10: VANISHED (by UID) replaces EXPUNGE.
            gone.sort_unstable();
            lines = crate::condstore::vanished_lines(&gone, false);
        }
        sel.pending_expunge.retain(|u| !uids.contains(u));
        if sel.pending_expunge.is_empty() {
            sel.expunge_floor = None;
        }
        for l in lines {
            self.untagged(&l);
        }
    }

    /// Brings the selected mailbox up to date when events say it changed,
    /// sending EXISTS, FETCH FLAGS and, when `allow_expunge`, EXPUNGE
    /// responses. Commands call it first, so that new messages are
    /// addressable; the end of every command looks for changes whatever
    /// the events said (`sync_inner` with `force`).
    pub(crate) async fn sync(&mut self, allow_expunge: bool) -> std::io::Result<()> {
        self.sync_inner(allow_expunge, false).await
    }

    async fn sync_inner(&mut self, allow_expunge: bool, force: bool) -> std::io::Result<()> {
        let Some(sel) = self.selected.as_mut() else {
            while self.events.try_recv().is_ok() {}
            return Ok(());
        };
        // Without a trustworthy event feed, every command looks for changes.
        let epoch = self.shared.feed.epoch();
        let force = force || epoch.is_none() || epoch != sel.feed_epoch;
        loop {
            match self.events.try_recv() {
                Ok(e) if e.mailbox_id == sel.id && e.highestmodseq > sel.modseq => sel.dirty = true,
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(_)) => sel.dirty = true,
                Err(_) => break,
            }
        }
        if !(sel.dirty || force) {
            if allow_expunge && !sel.pending_expunge.is_empty() {
                let pending = std::mem::take(&mut sel.pending_expunge);
                self.announce_expunged(&pending);
            }
            return Ok(());
        }
        let account = self.account()?;
        let Some(sel) = self.selected.as_mut() else {
            return Ok(());
        };
        let since = sel.modseq;
        let (name, claim) = (sel.name.clone(), !sel.read_only);
        let listing = match list_mailbox(
            self.client.clone(),
            &account,
            &name,
            since.max(1),
            1,
            claim,
        )
        .await
        {
            Ok(l) => l,
            Err(status) => {
                // Try again at the next command.
                tracing::debug!(%status, "Resync failed.");
                return Ok(());
            }
        };
        self.resynced = true;
        let Some(sel) = self.selected.as_mut() else {
            return Ok(());
        };
        let mut new = Vec::new();
        let mut flag_changes = Vec::new();
        let mut gone = Vec::new();
        let mut gone_modseq = u64::MAX;
        let mut highest = since;
        if let Some(mb) = &listing.mailbox {
            highest = highest.max(mb.highestmodseq);
        }
        let recent_range = listing.recent;
        let last_known = sel.uids.last().copied().unwrap_or(0);
        for m in &listing.messages {
            highest = highest.max(m.modseq);
            let known = sel.uids.binary_search(&m.uid).is_ok();
            if m.expunged {
                if known {
                    gone.push(m.uid);
                    gone_modseq = gone_modseq.min(m.modseq);
                }
            } else if !known && m.uid > last_known {
                new.push((m.uid, MessageState::new(&m.flags, m.modseq)));
            } else if known {
                sel.learn(m.uid, &m.flags, m.modseq);
                flag_changes.push((m.uid, m.flags.clone(), m.modseq));
            }
        }
        sel.dirty = false;
        sel.modseq = highest;
        sel.feed_epoch = epoch;
        let mut lines = Vec::new();
        let condstore = self.rfc7162.condstore;
        for (uid, mut flags, modseq) in flag_changes {
            if let Some(seq) = sel.seq_of(uid) {
                if !self.rev2 && sel.is_recent(uid) {
                    flags.push("\\Recent".into());
                }
                if condstore {
                    lines.push(crate::condstore::flags_fetch_line(seq, uid, &flags, modseq));
                    continue;
                }
                let mut line = format!("* {seq} FETCH (UID {uid} FLAGS ").into_bytes();
                encode::flags(&mut line, &flags);
                line.extend_from_slice(b")\r\n");
                lines.push(line);
            }
        }
        if !gone.is_empty() {
            let floor = gone_modseq.saturating_sub(1);
            sel.expunge_floor = Some(sel.expunge_floor.map_or(floor, |f| f.min(floor)));
        }
        new.sort_unstable_by_key(|(uid, _)| *uid);
        let had = sel.uids.len();
        for (uid, state) in new {
            sel.uids.push(uid);
            sel.states.push(state);
        }
        sel.add_recent(recent_range.0, recent_range.1);
        let exists = sel.uids.len();
        sel.pending_expunge.extend(gone);
        let pending = if allow_expunge {
            std::mem::take(&mut sel.pending_expunge)
        } else {
            Vec::new()
        };
        let sent_modseqs = condstore && !lines.is_empty();
        // Keywords new to the client, on changed or new messages, first.
        for m in listing.messages.iter().filter(|m| !m.expunged) {
            self.announce_keywords(&m.flags);
        }
        for l in lines {
            self.out.extend_from_slice(&l);
        }
        if sent_modseqs
            && !allow_expunge
            && let Some(floor) = self.selected.as_ref().and_then(|s| s.expunge_floor)
        {
            // The client must not take those MODSEQs as its new high-water
            // mark while an expunge below them is still unannounced.
            self.untagged(&format!("OK [HIGHESTMODSEQ {floor}] Expunges pending"));
        }
        if exists != had {
            self.untagged(&format!("{exists} EXISTS"));
            if let Some(l) = crate::rev2::recent_line(self) {
                self.untagged(&l);
            }
        }
        if !pending.is_empty() {
            self.announce_expunged(&pending);
        }
        Ok(())
    }

    /// IDLE: pushes changes until DONE.
    async fn idle(&mut self, tag: &str, shutdown: &CancellationToken) -> std::io::Result<Reply> {
        let _ = tag;
        self.out.extend_from_slice(b"+ idling\r\n");
        self.sync_inner(true, true).await?;
        self.flush().await?;
        self.shared.metrics.idle.inc();
        let result = self.idle_loop(shutdown).await;
        self.shared.metrics.idle.dec();
        // What changed after the last push is reported before the tagged OK.
        self.resynced = false;
        result
    }

    async fn idle_loop(&mut self, shutdown: &CancellationToken) -> std::io::Result<Reply> {
        let deadline = tokio::time::Instant::now() + self.shared.idle_timeout;
        loop {
            let idle_poll = if self.shared.feed.epoch().is_some() {
                IDLE_POLL
            } else {
                IDLE_POLL_WITHOUT_EVENTS
            };
            let mut line = Vec::new();
            let event = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.untagged("BYE mailfleet IMAP shutting down");
                    self.flush().await?;
                    return Err(std::io::Error::other("shutdown"));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.untagged("BYE Autologout; idle for too long");
                    self.flush().await?;
                    return Err(std::io::Error::other("idle timeout"));
                }
                _ = tokio::time::sleep(idle_poll) => None,
                e = self.events.recv() => Some(e),
                r = self.io.fill_buf() => {
                    let _ = r?;
                    // The rest of the line (DONE) is due by the same deadline.
                    let Ok(read) = tokio::time::timeout_at(deadline, self.read_line(&mut line)).await else {
                        self.untagged("BYE Autologout; idle for too long");
                        self.flush().await?;
                        return Err(std::io::Error::other("idle timeout"));
                    };
                    match read? {
                        Some(true) => {
                            let trimmed = line.trim_ascii();
                            if trimmed.eq_ignore_ascii_case(b"DONE") {
                                return Ok(Reply::Ok("IDLE terminated".into()));
                            }
                            return Ok(Reply::Bad("Expected DONE".into()));
                        }
                        Some(false) => return Err(std::io::Error::other("eof in IDLE")),
                        None => return Ok(Reply::Bad("Expected DONE".into())),
                    }
                }
            };
            let mut force = event.is_none();
            if let Some(sel) = self.selected.as_mut() {
                match event {
                    Some(Ok(e)) if e.mailbox_id == sel.id && e.highestmodseq > sel.modseq => {
                        sel.dirty = true
                    }
                    Some(Err(broadcast::error::RecvError::Lagged(_))) => force = true,
                    _ => {}
                }
            }
            self.sync_inner(true, force).await?;
            self.flush().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_gate_per_state() {
        let body = |line: &str| proto::parse_command(line.as_bytes()).unwrap().body;
        let bad = |state, line: &str| match refusal(state, &body(line)) {
            Some(Reply::Bad(why)) => why,
            None => "allowed".into(),
            Some(other) => format!("{other:?}"),
        };
        use State::*;
        for line in [
            "a CAPABILITY\r\n",
            "a NOOP\r\n",
            "a LOGOUT\r\n",
            "a ID NIL\r\n",
        ] {
            for state in [NotAuthenticated, Authenticated, Selected] {
                assert_eq!(bad(state, line), "allowed", "{line} in {state:?}");
            }
        }
        assert_eq!(bad(NotAuthenticated, "a LOGIN u p\r\n"), "allowed");
        assert_eq!(bad(NotAuthenticated, "a STARTTLS\r\n"), "allowed");
        assert_eq!(bad(NotAuthenticated, "a SELECT INBOX\r\n"), "Log in first");
        assert_eq!(bad(NotAuthenticated, "a FETCH 1 FLAGS\r\n"), "Log in first");
        assert_eq!(
            bad(Authenticated, "a LOGIN u p\r\n"),
            "Already authenticated"
        );
        assert_eq!(
            bad(Selected, "a AUTHENTICATE PLAIN\r\n"),
            "Already authenticated"
        );
        assert_eq!(bad(Authenticated, "a LIST \"\" *\r\n"), "allowed");
        assert_eq!(
            bad(Authenticated, "a FETCH 1 FLAGS\r\n"),
            "Select a mailbox first"
        );
        assert_eq!(bad(Authenticated, "a CHECK\r\n"), "Select a mailbox first");
        assert_eq!(
            bad(Authenticated, "a UID SORT (DATE) UTF-8 ALL\r\n"),
            "Select a mailbox first"
        );
        assert_eq!(bad(Selected, "a FETCH 1 FLAGS\r\n"), "allowed");
        assert_eq!(bad(Selected, "a SELECT INBOX\r\n"), "allowed");
        assert_eq!(bad(Logout, "a SELECT INBOX\r\n"), "Logging out");
    }

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
