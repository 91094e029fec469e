//! The typed commands. Strings are kept as the client's bytes (quoted
//! strings unescaped, literals as sent): what they mean (a mailbox name in
//! modified UTF-7 or UTF-8, a password) is the command's business.

use std::num::NonZeroU32;

use chrono::{DateTime, FixedOffset, NaiveDate};
pub use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// A sequence set as the client wrote it: `$` (RFC 5182) names the saved
/// search result, resolved by the session.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqSet {
    Saved,
    Set(SequenceSet),
}

/// A mailbox name, the client's bytes (modified UTF-7, or UTF-8 after
/// ENABLE UTF8=ACCEPT, RFC 6855).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox(pub Vec<u8>);

/// ID field/value pairs (RFC 2971); a value may be NIL.
pub type IdParams = Vec<(Vec<u8>, Option<Vec<u8>>)>;

#[derive(Debug, Clone, PartialEq)]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    /// `initial`: the SASL-IR initial response as sent (base64), empty for
    /// `=` (RFC 4959).
    Authenticate {
        mechanism: String,
        initial: Option<Vec<u8>>,
    },
    Enable(Vec<String>),
    Select {
        mailbox: Mailbox,
        read_only: bool,
        params: SelectParams,
    },
    Create(Mailbox),
    Delete(Mailbox),
    Rename {
        from: Mailbox,
        to: Mailbox,
    },
    Subscribe(Mailbox),
    Unsubscribe(Mailbox),
    List(ListCommand),
    Status {
        mailbox: Mailbox,
        items: Vec<StatusItem>,
    },
    Append(Append),
    Idle,
    Namespace,
    /// `None`: `ID NIL`.
    Id(Option<IdParams>),
    GetQuota(Vec<u8>),
    GetQuotaRoot(Mailbox),
    SetQuota {
        root: Vec<u8>,
        limits: Vec<(String, u64)>,
    },
    Check,
    Close,
    Unselect,
    Expunge,
    UidExpunge(SeqSet),
    Search(Search),
    Fetch(Fetch),
    Store(Store),
    Copy {
        uid: bool,
        set: SeqSet,
        mailbox: Mailbox,
    },
    Move {
        uid: bool,
        set: SeqSet,
        mailbox: Mailbox,
    },
    Sort(Sort),
    Thread(Thread),
}

impl CommandBody {
    /// The command's name, lower case, for logs and metrics.
    pub fn name(&self) -> &'static str {
        let uid =
            |u: bool, with: &'static str, without: &'static str| if u { with } else { without };
        match self {
            CommandBody::Capability => "capability",
            CommandBody::Noop => "noop",
            CommandBody::Logout => "logout",
            CommandBody::StartTls => "starttls",
            CommandBody::Login { .. } => "login",
            CommandBody::Authenticate { .. } => "authenticate",
            CommandBody::Enable(_) => "enable",
            CommandBody::Select { read_only, .. } => uid(*read_only, "examine", "select"),
            CommandBody::Create(_) => "create",
            CommandBody::Delete(_) => "delete",
            CommandBody::Rename { .. } => "rename",
            CommandBody::Subscribe(_) => "subscribe",
            CommandBody::Unsubscribe(_) => "unsubscribe",
            CommandBody::List(l) => uid(l.lsub, "lsub", "list"),
            CommandBody::Status { .. } => "status",
            CommandBody::Append(_) => "append",
            CommandBody::Idle => "idle",
            CommandBody::Namespace => "namespace",
            CommandBody::Id(_) => "id",
            CommandBody::GetQuota(_) => "getquota",
            CommandBody::GetQuotaRoot(_) => "getquotaroot",
            CommandBody::SetQuota { .. } => "setquota",
            CommandBody::Check => "check",
            CommandBody::Close => "close",
            CommandBody::Unselect => "unselect",
            CommandBody::Expunge => "expunge",
            CommandBody::UidExpunge(_) => "uid expunge",
            CommandBody::Search(s) => uid(s.uid, "uid search", "search"),
            CommandBody::Fetch(f) => uid(f.uid, "uid fetch", "fetch"),
            CommandBody::Store(s) => uid(s.uid, "uid store", "store"),
            CommandBody::Copy { uid: u, .. } => uid(*u, "uid copy", "copy"),
            CommandBody::Move { uid: u, .. } => uid(*u, "uid move", "move"),
            CommandBody::Sort(s) => uid(s.uid, "uid sort", "sort"),
            CommandBody::Thread(t) => uid(t.uid, "uid thread", "thread"),
        }
    }
}

/// SELECT/EXAMINE parameters (RFC 7162 3.1.8, 3.2.5).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectParams {
    pub condstore: bool,
    pub qresync: Option<Qresync>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Qresync {
    pub uidvalidity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    /// (known sequence numbers, their UIDs).
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// LIST or LSUB, with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819) and
/// SPECIAL-USE (RFC 6154) options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListCommand {
    pub lsub: bool,
    /// Any RFC 5258 syntax was used (answers say \NonExistent, not \Noselect).
    pub extended: bool,
    pub select_subscribed: bool,
    pub select_special: bool,
    pub select_remote: bool,
    pub recursive: bool,
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special: bool,
    pub status: Option<Vec<StatusItem>>,
    pub reference: Vec<u8>,
    pub patterns: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    HighestModSeq,
    Size,
    Deleted,
    DeletedStorage,
}

impl StatusItem {
    pub const ALL: [StatusItem; 9] = [
        StatusItem::Messages,
        StatusItem::Recent,
        StatusItem::UidNext,
        StatusItem::UidValidity,
        StatusItem::Unseen,
        StatusItem::HighestModSeq,
        StatusItem::Size,
        StatusItem::Deleted,
        StatusItem::DeletedStorage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::Size => "SIZE",
            StatusItem::Deleted => "DELETED",
            StatusItem::DeletedStorage => "DELETED-STORAGE",
        }
    }
}

/// How an APPEND's message literal was announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendData {
    /// `{n}` or `{n+}`.
    Literal,
    /// `~{n}` (RFC 3516 literal8).
    Literal8,
    /// `UTF8 (~{n})` (RFC 6855).
    Utf8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Append {
    pub mailbox: Mailbox,
    pub flags: Vec<String>,
    pub date: Option<DateTime<FixedOffset>>,
    pub data: AppendData,
    pub message: Vec<u8>,
}

/// An APPEND up to its message literal, which the connection streams
/// instead of reading it into memory (see [`parse_append_head`](super::parse_append_head)).
#[derive(Debug, Clone, PartialEq)]
pub struct AppendHead {
    pub tag: String,
    pub mailbox: Mailbox,
    pub flags: Vec<String>,
    pub date: Option<DateTime<FixedOffset>>,
    pub data: AppendData,
}

/// SEARCH RETURN options (RFC 4731, RFC 5182 SAVE). `RETURN ()` means ALL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReturnOpts {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub save: bool,
}

impl ReturnOpts {
    /// Whether an ESEARCH response is due: not for SAVE alone (RFC 5182 2.1).
    pub fn answers(&self) -> bool {
        self.min || self.max || self.all || self.count
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub uid: bool,
    /// `None`: no RETURN (a plain `* SEARCH` answer).
    pub ret: Option<ReturnOpts>,
    pub charset: Option<String>,
    /// The keys, ANDed (one key when one was given).
    pub key: SearchKey,
}

/// RFC 7162 MODSEQ search key's metadata entry type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    Priv,
    Shared,
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SearchKey {
    All,
    Answered,
    Deleted,
    Draft,
    Flagged,
    New,
    Old,
    Recent,
    Seen,
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unseen,
    Keyword(String),
    Unkeyword(String),
    Bcc(Vec<u8>),
    Body(Vec<u8>),
    Cc(Vec<u8>),
    From(Vec<u8>),
    Subject(Vec<u8>),
    Text(Vec<u8>),
    To(Vec<u8>),
    Header(Vec<u8>, Vec<u8>),
    Before(NaiveDate),
    On(NaiveDate),
    Since(NaiveDate),
    SentBefore(NaiveDate),
    SentOn(NaiveDate),
    SentSince(NaiveDate),
    Larger(u32),
    Smaller(u32),
    Uid(SeqSet),
    Seq(SeqSet),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    /// A parenthesised list (or the top-level keys): all must match.
    And(Vec<SearchKey>),
    /// RFC 7162 3.1.5: `entry` is the optional (flag entry name, type).
    ModSeq {
        entry: Option<(Vec<u8>, EntryType)>,
        modseq: u64,
    },
}

impl SearchKey {
    /// Whether a MODSEQ key is anywhere in the tree (a CONDSTORE enabling
    /// command, RFC 7162 3.1).
    pub fn has_modseq(&self) -> bool {
        match self {
            SearchKey::ModSeq { .. } => true,
            SearchKey::Not(k) => k.has_modseq(),
            SearchKey::Or(a, b) => a.has_modseq() || b.has_modseq(),
            SearchKey::And(keys) => keys.iter().any(SearchKey::has_modseq),
            _ => false,
        }
    }
}

/// A section's part path: empty for the whole message.
pub type PartPath = Vec<NonZeroU32>;

/// A body section (RFC 3501 6.4.5 `section-spec`).
#[derive(Debug, Clone, PartialEq)]
pub enum Section {
    /// `BODY[1.2]`: never empty (`BODY[]` has no section).
    Part(PartPath),
    Header(PartPath),
    HeaderFields {
        path: PartPath,
        not: bool,
        fields: Vec<Vec<u8>>,
    },
    Text(PartPath),
    /// Never empty.
    Mime(PartPath),
}

#[derive(Debug, Clone, PartialEq)]
pub enum FetchItem {
    Uid,
    Flags,
    InternalDate,
    Rfc822Size,
    Envelope,
    /// BODY (the non-extensible structure).
    Body,
    BodyStructure,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    /// RFC 7162.
    ModSeq,
    BodySection {
        peek: bool,
        section: Option<Section>,
        /// `<offset.length>`.
        partial: Option<(u32, NonZeroU32)>,
    },
    /// RFC 3516 BINARY / BINARY.PEEK.
    Binary {
        peek: bool,
        path: PartPath,
        partial: Option<(u32, NonZeroU32)>,
    },
    BinarySize {
        path: PartPath,
    },
}

/// ALL, FAST and FULL as the items they stand for (RFC 3501 6.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchMacro {
    All,
    Fast,
    Full,
}

impl FetchMacro {
    pub fn expand(self) -> Vec<FetchItem> {
        let mut v = vec![
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
        ];
        if self != FetchMacro::Fast {
            v.push(FetchItem::Envelope);
        }
        if self == FetchMacro::Full {
            v.push(FetchItem::Body);
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FetchItems {
    Macro(FetchMacro),
    /// One item without parentheses, or a parenthesised list.
    List(Vec<FetchItem>),
}

impl FetchItems {
    pub fn items(&self) -> Vec<FetchItem> {
        match self {
            FetchItems::Macro(m) => m.expand(),
            FetchItems::List(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    pub uid: bool,
    pub set: SeqSet,
    pub items: FetchItems,
    /// RFC 7162 CHANGEDSINCE.
    pub changed_since: Option<u64>,
    /// RFC 7162 VANISHED (UID FETCH with QRESYNC).
    pub vanished: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Store {
    pub uid: bool,
    pub set: SeqSet,
    /// RFC 7162 UNCHANGEDSINCE.
    pub unchanged_since: Option<u64>,
    pub mode: StoreMode,
    pub silent: bool,
    /// `\Seen`, `$Label` as sent.
    pub flags: Vec<String>,
    /// The flags came as a parenthesised list.
    pub list: bool,
}

/// RFC 5256 / RFC 5957 sort keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
    DisplayFrom,
    DisplayTo,
}

impl SortKey {
    pub const ALL: [SortKey; 9] = [
        SortKey::Arrival,
        SortKey::Cc,
        SortKey::Date,
        SortKey::From,
        SortKey::Size,
        SortKey::Subject,
        SortKey::To,
        SortKey::DisplayFrom,
        SortKey::DisplayTo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SortKey::Arrival => "ARRIVAL",
            SortKey::Cc => "CC",
            SortKey::Date => "DATE",
            SortKey::From => "FROM",
            SortKey::Size => "SIZE",
            SortKey::Subject => "SUBJECT",
            SortKey::To => "TO",
            SortKey::DisplayFrom => "DISPLAYFROM",
            SortKey::DisplayTo => "DISPLAYTO",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    pub uid: bool,
    pub criteria: Vec<SortCriterion>,
    pub charset: String,
    pub key: SearchKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    References,
    OrderedSubject,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Thread {
    pub uid: bool,
    pub algorithm: ThreadAlgorithm,
    pub charset: String,
    pub key: SearchKey,
}
