//! The typed program `compile` produces and `execute` runs.

/// A string argument: literal text, or (with `variables`) text with `${name}` / `${n}` holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Lit(String),
    Template(Vec<Part>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Lit(String),
    /// A variable, name lower-cased.
    Var(String),
    /// A match variable `${n}`.
    Match(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparator {
    Octet,
    AsciiCasemap,
    AsciiNumeric,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Relation {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchType {
    Is,
    Contains,
    Matches,
    Value(Relation),
    Count(Relation),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Match {
    pub kind: MatchType,
    pub comparator: Comparator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressPart {
    All,
    Localpart,
    Domain,
    User,
    Detail,
}

/// `:index n [:last]` (RFC 5260 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Index {
    pub n: u64,
    pub last: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Zone {
    /// The zone of `Context::now` (the server's local zone).
    Local,
    /// `:zone "+hhmm"`, in seconds east of UTC.
    Fixed(i32),
    /// `:originalzone`: the zone written in the header.
    Original,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatePart {
    Year,
    Month,
    Day,
    Date,
    Julian,
    Hour,
    Minute,
    Second,
    Time,
    Iso8601,
    Std11,
    Zone,
    Weekday,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyTransform {
    Raw,
    Text,
    /// `:content` with its list of content types.
    Content(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Test {
    True,
    False,
    Not(Box<Test>),
    AnyOf(Vec<Test>),
    AllOf(Vec<Test>),
    Exists(Vec<Value>),
    Size {
        over: bool,
        limit: u64,
    },
    Header {
        m: Match,
        names: Vec<Value>,
        keys: Vec<Value>,
        index: Option<Index>,
    },
    Address {
        m: Match,
        part: AddressPart,
        names: Vec<Value>,
        keys: Vec<Value>,
        index: Option<Index>,
    },
    Envelope {
        m: Match,
        part: AddressPart,
        names: Vec<Value>,
        keys: Vec<Value>,
    },
    Body {
        m: Match,
        transform: BodyTransform,
        keys: Vec<Value>,
    },
    String {
        m: Match,
        sources: Vec<Value>,
        keys: Vec<Value>,
    },
    HasFlag {
        m: Match,
        vars: Option<Vec<Value>>,
        keys: Vec<Value>,
    },
    Date {
        m: Match,
        zone: Zone,
        header: Value,
        part: DatePart,
        keys: Vec<Value>,
        index: Option<Index>,
    },
    CurrentDate {
        m: Match,
        zone: Zone,
        part: DatePart,
        keys: Vec<Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagOp {
    Set,
    Add,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Modifier {
    Length,
    QuoteWildcard,
    LowerFirst,
    UpperFirst,
    Lower,
    Upper,
}

impl Modifier {
    /// RFC 5229 section 4: higher precedence is applied first; two of one precedence are an error.
    pub(crate) fn precedence(self) -> u8 {
        match self {
            Modifier::Lower | Modifier::Upper => 40,
            Modifier::LowerFirst | Modifier::UpperFirst => 30,
            Modifier::QuoteWildcard => 20,
            Modifier::Length => 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VacationCmd {
    /// The reply period in seconds (`:days` × 86400 or `:seconds`).
    pub period_secs: u64,
    pub subject: Option<Value>,
    pub from: Option<Value>,
    pub addresses: Vec<Value>,
    pub mime: bool,
    pub handle: Option<Value>,
    pub reason: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cmd {
    If {
        branches: Vec<(Test, Vec<Stmt>)>,
        otherwise: Option<Vec<Stmt>>,
    },
    Stop,
    Keep {
        flags: Option<Vec<Value>>,
    },
    Discard,
    FileInto {
        mailbox: Value,
        flags: Option<Vec<Value>>,
        copy: bool,
        create: bool,
    },
    Redirect {
        address: Value,
        copy: bool,
    },
    Reject {
        reason: Value,
        ereject: bool,
    },
    Flag {
        op: FlagOp,
        var: Option<Value>,
        flags: Vec<Value>,
    },
    Set {
        name: String,
        value: Value,
        modifiers: Vec<Modifier>,
    },
    Vacation(Box<VacationCmd>),
}

/// A command and the line it was written on (runtime errors name it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stmt {
    pub cmd: Cmd,
    pub line: u32,
}
