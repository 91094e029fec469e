//! A session's state, below the commands: the RFC state with its data
//! ([`State`], in `state`, with the one gate of commands per state), the
//! selected mailbox's view (`view`), what the client enabled (`rfc7162`,
//! `ext`, `rev2` fields), the saved search result (`searchres`), search
//! keys for mailstore (`search_key`), the reading of
//! lines, the response buffer, and bringing the view up to date with what
//! other sessions did (`Session::sync`). The commands (`crate::cmd`) act
//! on it; the connection loop (`crate::connection`) reads and dispatches.
//! Nothing here imports a command.
//!
//! Message sequence numbers live in [`Selected::uids`] and change only
//! where RFC 3501 7.4.1 allows: untagged EXPUNGE is never sent during
//! FETCH, STORE or SEARCH.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_proto::v1 as pb;
use mailfleet_proto::v1::MailboxEvent;
use mailfleet_runtime::grpc::MailStore;
use mailfleet_runtime::tls::Tls;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::broadcast;

pub(crate) mod condstore;
pub(crate) mod search_key;
pub(crate) mod searchres;
pub(crate) mod state;
pub(crate) mod view;

use crate::conn::Conn;
use crate::encode;
use crate::metrics::Metrics;
pub(crate) use crate::proto::Reply;
use crate::proto::{self, SeqSet, SequenceSet};
pub(crate) use state::{NoTarget, State};
use view::MessageState;
pub(crate) use view::{Selected, uid_set, uid_text};

/// UIDs per FetchMessages/StoreFlags call.
pub(crate) const UID_CHUNK: usize = 1000;
/// Before login, a client may stay silent this long at most.
const PRE_AUTH_TIMEOUT: Duration = Duration::from_secs(60);

/// The capabilities of extensions beyond RFC 3501 that need no state of
/// their own here (for CAPABILITY).
const EXTENSIONS: &str = " LIST-EXTENDED LIST-STATUS ESEARCH STATUS=SIZE QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE UTF8=ACCEPT";

/// Per-session state of the extensions.
#[derive(Debug, Default)]
pub(crate) struct ExtState {
    /// ENABLE UTF8=ACCEPT was given (RFC 6855).
    pub utf8: bool,
}

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
    /// What FETCH serves of each message that never changes (see
    /// `message_cache.rs`).
    pub messages: crate::message_cache::MessageCache,
}

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

pub(crate) struct Session {
    pub shared: Arc<Shared>,
    pub io: BufReader<Conn>,
    pub peer: SocketAddr,
    pub client: MailStore,
    /// The RFC state, with the login and the selected mailbox's view.
    pub state: State,
    pub events: broadcast::Receiver<MailboxEvent>,
    pub out: Vec<u8>,
    pub ext: ExtState,
    pub rfc7162: condstore::State,
    /// The client sent ENABLE IMAP4rev2.
    pub rev2: bool,
    /// Tag of the command being run (ESEARCH answers carry it).
    pub tag: String,
    /// The saved SEARCH result, `$` (RFC 5182).
    pub searchres: searchres::Saved,
    /// The command being run has read the selected mailbox's changes from
    /// mailstore (a resync or SELECT); if not, it does at its end.
    pub resynced: bool,
    /// The command being run may announce expunges (RFC 3501 7.4.1).
    pub expunge_allowed: bool,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, conn: Conn, peer: SocketAddr) -> Self {
        Self {
            client: shared.client.clone(),
            events: shared.events.subscribe(),
            shared,
            io: BufReader::new(conn),
            peer,
            state: State::NotAuthenticated,
            out: Vec::with_capacity(4096),
            ext: ExtState::default(),
            rfc7162: condstore::State::default(),
            rev2: false,
            tag: String::new(),
            searchres: searchres::Saved::default(),
            resynced: false,
            expunge_allowed: true,
        }
    }

    /// Whether passwords may be sent on this connection now.
    pub(crate) fn login_allowed(&self) -> bool {
        self.io.get_ref().get_ref().is_tls()
            || self.shared.allow_plaintext
            || self.peer.ip().is_loopback()
    }

    pub(crate) fn capabilities(&self) -> String {
        let mut caps = String::from(
            "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE",
        );
        caps.push_str(&format!(" APPENDLIMIT={}", self.shared.append_limit));
        caps.push_str(EXTENSIONS);
        caps.push_str(" CONDSTORE QRESYNC");
        caps.push_str(" IMAP4rev2 BINARY SEARCHRES");
        caps.push_str(" SORT SORT=DISPLAY THREAD=REFERENCES THREAD=ORDEREDSUBJECT");
        if matches!(self.state, State::NotAuthenticated) {
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
        let Some(sel) = self.state.selected_mut() else {
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
            for line in view::flags_responses(&sel.keywords) {
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
        let Some(sel) = self.state.selected_mut() else {
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

    /// A mailbox's row alone (counts, modseq, UIDNEXT), no messages: what
    /// STATUS and GETQUOTAROOT ask mailstore for (a missing mailbox is an
    /// answer without one).
    pub(crate) async fn mailbox_status(
        &mut self,
        account: String,
        mailbox: String,
    ) -> Result<tonic::Response<pb::SelectMailboxResponse>, tonic::Status> {
        self.client
            .select_mailbox(pb::SelectMailboxRequest {
                account,
                mailbox,
                changed_since: u64::MAX >> 1,
                uid_from: u32::MAX,
                limit: 1,
                claim_recent: false,
            })
            .await
    }

    /// The same, from a mailbox status that may be the selected mailbox's.
    pub(crate) fn note_mailbox(&mut self, mb: &pb::Mailbox) {
        self.note_highest(mb.id, mb.highestmodseq, false);
    }

    /// BAD for a sequence set (not a UID set) that names a message beyond
    /// EXISTS (RFC 9051 6.4.5: an invalid sequence number).
    pub(crate) fn bad_sequence(&self, set: &SequenceSet, uid: bool) -> Option<Reply> {
        let missing = !uid
            && self
                .state
                .selected()
                .is_some_and(|s| s.names_missing_message(set));
        missing.then(|| Reply::Bad("Invalid message sequence number".into()))
    }

    pub(crate) fn untagged(&mut self, line: &str) {
        self.out.extend_from_slice(b"* ");
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// How long the client may take to send a command (or a line the
    /// running command waits for): shorter before login.
    pub(crate) fn read_timeout(&self) -> Duration {
        if self.state.user().is_some() {
            self.shared.idle_timeout
        } else {
            self.pre_auth_timeout()
        }
    }

    pub(crate) fn pre_auth_timeout(&self) -> Duration {
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

    /// A mailbox argument as stored (UTF-8, INBOX spelled so); the error is
    /// the command's NO.
    pub(crate) fn mailbox_arg(&self, m: &proto::Mailbox) -> Result<String, Reply> {
        crate::names::from_client(&m.0, self.ext.utf8)
            .map(crate::names::canonical)
            .map_err(|why| Reply::No(why.into()))
    }

    /// A FETCH/STORE/COPY/MOVE of an empty `$`: done, nothing to do.
    pub(crate) async fn nothing_to_do(&mut self, verb: &str, uid: bool) -> std::io::Result<Reply> {
        self.sync(uid).await?;
        Ok(Reply::Ok(format!("{verb} completed (nothing to do)")))
    }

    /// The logged-in account. Only commands the state gate let through
    /// ask, so the error is a broken invariant: it ends the connection,
    /// and no command ever runs for an empty account name.
    pub(crate) fn account(&self) -> Result<String, NoTarget> {
        self.state.user().map(str::to_owned).ok_or(NoTarget)
    }

    /// The selected mailbox's view; see [`Self::account`] (the gate lets
    /// only commands of the Selected state ask).
    pub(crate) fn view(&self) -> Result<&Selected, NoTarget> {
        self.state.selected().ok_or(NoTarget)
    }

    /// (account, selected mailbox name); see [`Self::account`].
    pub(crate) fn target(&self) -> Result<(String, String), NoTarget> {
        let mailbox = self.state.selected().ok_or(NoTarget)?.name.clone();
        Ok((self.account()?, mailbox))
    }

    /// Removes UIDs from the map, announcing each (highest sequence first,
    /// so every number is valid when the client reads it).
    pub(crate) fn announce_expunged(&mut self, uids: &[u32]) {
        let Some(sel) = self.state.selected_mut() else {
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
            lines = condstore::vanished_lines(&gone, false);
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

    pub(crate) async fn sync_inner(
        &mut self,
        allow_expunge: bool,
        force: bool,
    ) -> std::io::Result<()> {
        let Some(sel) = self.state.selected_mut() else {
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
        let Some(sel) = self.state.selected_mut() else {
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
        let Some(sel) = self.state.selected_mut() else {
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
                    lines.push(condstore::flags_fetch_line(seq, uid, &flags, modseq));
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
            && let Some(floor) = self.state.selected().and_then(|s| s.expunge_floor)
        {
            // The client must not take those MODSEQs as its new high-water
            // mark while an expunge below them is still unannounced.
            self.untagged(&format!("OK [HIGHESTMODSEQ {floor}] Expunges pending"));
        }
        if exists != had {
            self.untagged(&format!("{exists} EXISTS"));
            if let Some(l) = self.recent_line() {
                self.untagged(&l);
            }
        }
        if !pending.is_empty() {
            self.announce_expunged(&pending);
        }
        Ok(())
    }

    /// Turns CONDSTORE on; the first time, with a mailbox selected, the client
    /// learns its HIGHESTMODSEQ (RFC 7162 3.1).
    pub(crate) fn enable_condstore(&mut self) {
        if self.rfc7162.condstore {
            return;
        }
        self.rfc7162.condstore = true;
        if let Some(sel) = self.state.selected() {
            let line = format!(
                "OK [HIGHESTMODSEQ {}] Highest",
                condstore::reported_modseq(sel)
            );
            self.untagged(&line);
        }
    }

    /// The flags of a message as the session shows them: \Recent added for a
    /// rev1 session that holds the message as recent.
    pub(crate) fn flags_shown<'a>(&self, uid: u32, flags: &'a [String]) -> Cow<'a, [String]> {
        let recent = !self.rev2 && self.state.selected().is_some_and(|sel| sel.is_recent(uid));
        if recent {
            let mut f = flags.to_vec();
            f.push("\\Recent".into());
            Cow::Owned(f)
        } else {
            Cow::Borrowed(flags)
        }
    }

    /// The `* RECENT` response after SELECT or new mail, none for rev2.
    pub(crate) fn recent_line(&self) -> Option<String> {
        if self.rev2 {
            return None;
        }
        let n = self.state.selected().map_or(0, Selected::recent_count);
        Some(format!("{n} RECENT"))
    }

    /// The sequence set a command names, `$` resolved (see `searchres`).
    pub(crate) fn resolve_saved(&self, set: SeqSet, uid: bool) -> Option<SequenceSet> {
        self.searchres.resolve(self.state.selected(), set, uid)
    }

    /// The saved search result still in the selected mailbox, as UIDs.
    pub(crate) fn saved_uids(&self) -> Vec<u32> {
        self.searchres.live(self.state.selected())
    }
}
