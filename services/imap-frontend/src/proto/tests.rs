#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::num::NonZeroU32;

use chrono::{FixedOffset, NaiveDate, TimeZone};
use proptest::prelude::*;

use super::*;

fn parse(s: &str) -> CommandBody {
    match parse_command(s.as_bytes()) {
        Ok(c) => c.body,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

fn bad(s: &[u8]) -> ParseError {
    parse_command(s).expect_err("must not parse")
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn set(s: &str) -> SeqSet {
    let cmd = parse(&format!("a UID EXPUNGE {s}\r\n"));
    match cmd {
        CommandBody::UidExpunge(s) => s,
        _ => unreachable!(),
    }
}

#[test]
fn simple_commands_and_case() {
    assert_eq!(parse("a capability\r\n"), CommandBody::Capability);
    assert_eq!(parse("a NoOp\r\n"), CommandBody::Noop);
    assert_eq!(parse("A1 LOGOUT\r\n"), CommandBody::Logout);
    assert_eq!(parse("a UNSELECT\r\n"), CommandBody::Unselect);
    assert_eq!(parse("a IDLE\r\n"), CommandBody::Idle);
    assert_eq!(parse("a NAMESPACE\r\n"), CommandBody::Namespace);
    let c = parse_command(b"x.1 CHECK\r\n").unwrap();
    assert_eq!(c.tag, "x.1");
}

#[test]
fn login_with_quoted_and_literal_strings() {
    assert_eq!(
        parse(
            "a LOGIN \"us\\\"er\" {4}\r\np\0ss\r\n"
                .replace('\0', "a")
                .as_str()
        ),
        CommandBody::Login {
            user: b"us\"er".to_vec(),
            password: b"pass".to_vec()
        }
    );
    // LITERAL+ / LITERAL- non-synchronising literal.
    assert_eq!(
        parse("a LOGIN {3+}\r\nbob secret\r\n"),
        CommandBody::Login {
            user: b"bob".to_vec(),
            password: b"secret".to_vec()
        }
    );
    // A literal shorter than announced, or with NUL, is BAD.
    assert!(bad(b"a LOGIN {9}\r\nbob x\r\n").reason.contains("shorter"));
    assert!(bad(b"a LOGIN {3}\r\nb\0b x\r\n").reason.contains("NUL"));
}

#[test]
fn authenticate_with_initial_response() {
    assert_eq!(
        parse("a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==\r\n"),
        CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(b"AHVzZXIAcGFzcw==".to_vec())
        }
    );
    assert_eq!(
        parse("a AUTHENTICATE plain =\r\n"),
        CommandBody::Authenticate {
            mechanism: "PLAIN".into(),
            initial: Some(Vec::new())
        }
    );
    assert!(bad(b"a AUTHENTICATE PLAIN a*b\r\n").tag.as_deref() == Some("a"));
}

#[test]
fn saved_result_is_a_typed_sequence_set() {
    assert_eq!(set("$"), SeqSet::Saved);
    match parse("a FETCH $ (FLAGS)\r\n") {
        CommandBody::Fetch(f) => assert_eq!(f.set, SeqSet::Saved),
        c => panic!("{c:?}"),
    }
    match parse("a UID SEARCH UID $ KEYWORD $MailfleetSaved\r\n") {
        CommandBody::Search(s) => assert_eq!(
            s.key,
            SearchKey::And(vec![
                SearchKey::Uid(SeqSet::Saved),
                SearchKey::Keyword("$MailfleetSaved".into())
            ])
        ),
        c => panic!("{c:?}"),
    }
    match parse("a MOVE $ Trash\r\n") {
        CommandBody::Move { set, uid, .. } => assert!(set == SeqSet::Saved && !uid),
        c => panic!("{c:?}"),
    }
    assert!(parse_command(b"a FETCH 0 FLAGS\r\n").is_err());
    assert!(parse_command(b"a FETCH 1:* FLAGS\r\n").is_ok());
    assert!(parse_command(b"a FETCH 1,,2 FLAGS\r\n").is_err());
}

#[test]
fn utf8_mailbox_names_are_kept_as_sent() {
    assert_eq!(
        parse("a CREATE \"Entw\u{fc}rfe\"\r\n"),
        CommandBody::Create(Mailbox("Entwürfe".as_bytes().to_vec()))
    );
    assert_eq!(
        parse("a SELECT Entw\u{fc}rfe\r\n"),
        CommandBody::Select {
            mailbox: Mailbox("Entwürfe".as_bytes().to_vec()),
            read_only: false,
            params: SelectParams::default()
        }
    );
    assert_eq!(
        parse("a RENAME &AOk-t&AOk- {4}\r\nSent\r\n"),
        CommandBody::Rename {
            from: Mailbox(b"&AOk-t&AOk-".to_vec()),
            to: Mailbox(b"Sent".to_vec())
        }
    );
}

#[test]
fn condstore_and_qresync_parameters() {
    match parse("a SELECT INBOX (CONDSTORE)\r\n") {
        CommandBody::Select { params, .. } => assert!(params.condstore),
        c => panic!("{c:?}"),
    }
    match parse(
        "a EXAMINE INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:10 100:110)))\r\n",
    ) {
        CommandBody::Select {
            params, read_only, ..
        } => {
            let q = params.qresync.unwrap();
            assert!(read_only);
            assert_eq!((q.uidvalidity, q.modseq), (67890007, 20050715194045000));
            assert!(q.known_uids.is_some() && q.seq_match.is_some());
        }
        c => panic!("{c:?}"),
    }
    assert!(
        bad(b"a SELECT INBOX (CONDSTORE\r\n")
            .reason
            .contains("space")
    );
    assert!(
        bad(b"a SELECT INBOX (BOGUS)\r\n")
            .reason
            .contains("SELECT parameter")
    );
    match parse("a UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 12345 VANISHED)\r\n") {
        CommandBody::Fetch(f) => {
            assert!(f.uid && f.vanished);
            assert_eq!(f.changed_since, Some(12345));
            assert_eq!(
                f.items,
                FetchItems::List(vec![FetchItem::Flags, FetchItem::ModSeq])
            );
        }
        c => panic!("{c:?}"),
    }
    assert!(
        bad(b"a UID FETCH 1 FLAGS (VANISHED)\r\n")
            .reason
            .contains("CHANGEDSINCE")
    );
    assert!(
        bad(b"a UID FETCH 1 FLAGS (CHANGEDSINCE 0)\r\n")
            .reason
            .contains("positive")
    );
    match parse("a STORE 1:3 (UNCHANGEDSINCE 7) +FLAGS.SILENT (\\Seen $Label1)\r\n") {
        CommandBody::Store(s) => {
            assert_eq!(s.unchanged_since, Some(7));
            assert!(s.silent && s.mode == StoreMode::Add);
            assert_eq!(s.flags, vec!["\\Seen".to_owned(), "$Label1".to_owned()]);
        }
        c => panic!("{c:?}"),
    }
    assert!(
        bad(b"a FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)\r\n")
            .reason
            .contains("too large")
    );
}

#[test]
fn modseq_search_keys() {
    match parse("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338 UNSEEN\r\n") {
        CommandBody::Search(s) => {
            assert_eq!(
                s.key,
                SearchKey::And(vec![
                    SearchKey::ModSeq {
                        entry: Some((b"/flags/\\draft".to_vec(), EntryType::All)),
                        modseq: 620162338
                    },
                    SearchKey::Unseen
                ])
            );
            assert!(s.key.has_modseq());
        }
        c => panic!("{c:?}"),
    }
    match parse("a SEARCH OR NOT MODSEQ 5 (SEEN FROM \"x y\")\r\n") {
        CommandBody::Search(s) => assert!(s.key.has_modseq()),
        c => panic!("{c:?}"),
    }
}

#[test]
fn search_return_charset_and_keys() {
    match parse(
        "a UID SEARCH RETURN (MIN COUNT SAVE) CHARSET UTF-8 SENTSINCE 1-Feb-2024 HEADER X-Y {3}\r\nz\u{e9}\r\n",
    ) {
        CommandBody::Search(s) => {
            assert!(s.uid);
            let r = s.ret.unwrap();
            assert!(r.min && r.count && r.save && !r.max);
            assert_eq!(s.charset.as_deref(), Some("UTF-8"));
            assert_eq!(
                s.key,
                SearchKey::And(vec![
                    SearchKey::SentSince(NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()),
                    SearchKey::Header(b"X-Y".to_vec(), "zé".as_bytes().to_vec())
                ])
            );
        }
        c => panic!("{c:?}"),
    }
    match parse("a SEARCH RETURN () ALL\r\n") {
        CommandBody::Search(s) => assert!(s.ret.unwrap().all),
        c => panic!("{c:?}"),
    }
    assert!(bad(b"a SEARCH\r\n").reason.contains("search keys"));
    assert!(
        bad(b"a SEARCH BOGUS\r\n")
            .reason
            .contains("Unknown search key")
    );
    assert!(
        bad(b"a SEARCH SINCE 31-Feb-2024\r\n")
            .reason
            .contains("date")
    );
    // Nesting is bounded: no stack overflow, a clear BAD.
    let deep = format!("a SEARCH {}ALL\r\n", "NOT ".repeat(10_000));
    assert!(bad(deep.as_bytes()).reason.contains("nested"));
    let deep = format!(
        "a SEARCH {}ALL{}\r\n",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert!(bad(deep.as_bytes()).reason.contains("nested"));
}

#[test]
fn fetch_items_sections_and_binary() {
    match parse(
        "a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100> BODY[1.2.MIME] BODY[] BODY[2.TEXT] RFC822.SIZE)\r\n",
    ) {
        CommandBody::Fetch(f) => assert_eq!(
            f.items,
            FetchItems::List(vec![
                FetchItem::BodySection {
                    peek: true,
                    section: Some(Section::HeaderFields {
                        path: vec![],
                        not: false,
                        fields: vec![b"From".to_vec(), b"To".to_vec()]
                    }),
                    partial: Some((0, nz(100)))
                },
                FetchItem::BodySection {
                    peek: false,
                    section: Some(Section::Mime(vec![nz(1), nz(2)])),
                    partial: None
                },
                FetchItem::BodySection {
                    peek: false,
                    section: None,
                    partial: None
                },
                FetchItem::BodySection {
                    peek: false,
                    section: Some(Section::Text(vec![nz(2)])),
                    partial: None
                },
                FetchItem::Rfc822Size,
            ])
        ),
        c => panic!("{c:?}"),
    }
    match parse("a FETCH 2 (BINARY.PEEK[1]<0.5> BINARY.SIZE[] BINARY[1.2])\r\n") {
        CommandBody::Fetch(f) => assert_eq!(
            f.items,
            FetchItems::List(vec![
                FetchItem::Binary {
                    peek: true,
                    path: vec![nz(1)],
                    partial: Some((0, nz(5)))
                },
                FetchItem::BinarySize { path: vec![] },
                FetchItem::Binary {
                    peek: false,
                    path: vec![nz(1), nz(2)],
                    partial: None
                },
            ])
        ),
        c => panic!("{c:?}"),
    }
    match parse("a FETCH 1:* full\r\n") {
        CommandBody::Fetch(f) => assert_eq!(f.items, FetchItems::Macro(FetchMacro::Full)),
        c => panic!("{c:?}"),
    }
    assert!(bad(b"a FETCH 1 BINARY[TEXT]\r\n").reason.contains("BINARY"));
    assert!(bad(b"a FETCH 1 BINARY[1]<\r\n").tag.is_some());
    assert!(bad(b"a FETCH 1 BODY[0]\r\n").reason.contains("Zero"));
    assert!(bad(b"a FETCH 1 (FLAGS\r\n").tag.is_some());
    assert!(bad(b"a FETCH 1 FOO\r\n").reason.contains("FETCH item"));
}

#[test]
fn sort_and_thread() {
    match parse("a UID SORT (REVERSE DATE DISPLAYFROM) utf-8 UNSEEN\r\n") {
        CommandBody::Sort(s) => {
            assert!(s.uid);
            assert_eq!(s.charset, "UTF-8");
            assert_eq!(
                s.criteria,
                vec![
                    SortCriterion {
                        reverse: true,
                        key: SortKey::Date
                    },
                    SortCriterion {
                        reverse: false,
                        key: SortKey::DisplayFrom
                    }
                ]
            );
            assert_eq!(s.key, SearchKey::Unseen);
        }
        c => panic!("{c:?}"),
    }
    match parse("a SORT (SUBJECT) \"ISO-8859-1\" ALL\r\n") {
        CommandBody::Sort(s) => assert_eq!(s.charset, "ISO-8859-1"),
        c => panic!("{c:?}"),
    }
    match parse("a THREAD REFERENCES US-ASCII SINCE \"1-Jan-2020\"\r\n") {
        CommandBody::Thread(t) => assert_eq!(t.algorithm, ThreadAlgorithm::References),
        c => panic!("{c:?}"),
    }
    assert!(
        bad(b"a SORT (REVERSE) UTF-8 ALL\r\n")
            .reason
            .contains("criterion")
    );
    assert!(bad(b"a SORT (DATE) ALL\r\n").reason.contains("search keys"));
    assert!(
        bad(b"a THREAD FOO UTF-8 ALL\r\n")
            .reason
            .contains("threading")
    );
}

#[test]
fn list_extended_selection_and_return_options() {
    match parse(
        "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX \"Sent Items\" %) RETURN (CHILDREN STATUS (MESSAGES SIZE) SPECIAL-USE)\r\n",
    ) {
        CommandBody::List(l) => {
            assert!(l.extended && l.select_subscribed && l.recursive && !l.lsub);
            assert!(l.return_children && l.return_special);
            assert_eq!(l.status, Some(vec![StatusItem::Messages, StatusItem::Size]));
            assert_eq!(l.patterns.len(), 3);
        }
        c => panic!("{c:?}"),
    }
    match parse("a LIST \"\" !#$&'+,-.0123456789:;<=>?@^_`|}%*\r\n") {
        CommandBody::List(l) => {
            assert!(!l.extended);
            assert_eq!(
                l.patterns,
                vec![b"!#$&'+,-.0123456789:;<=>?@^_`|}%*".to_vec()]
            );
        }
        c => panic!("{c:?}"),
    }
    match parse("a LSUB \"\" *\r\n") {
        CommandBody::List(l) => assert!(l.lsub && !l.extended),
        c => panic!("{c:?}"),
    }
    assert!(
        bad(b"a LIST (RECURSIVEMATCH) \"\" *\r\n")
            .reason
            .contains("RECURSIVEMATCH")
    );
    assert!(
        bad(b"a LIST (BOGUS) \"\" *\r\n")
            .reason
            .contains("selection option")
    );
    assert!(
        bad(b"a LIST \"\" * RETURN (BOGUS)\r\n")
            .reason
            .contains("return option")
    );
    assert!(bad(b"a LSUB \"\" * RETURN ()\r\n").reason.contains("extra"));
    match parse("a STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ DELETED-STORAGE)\r\n") {
        CommandBody::Status { items, .. } => assert_eq!(items.len(), 4),
        c => panic!("{c:?}"),
    }
    assert!(
        bad(b"a STATUS INBOX (FOO)\r\n")
            .reason
            .contains("STATUS item")
    );
}

#[test]
fn id_limits_and_malformed_lists() {
    let mut line = String::from("a ID (");
    for i in 0..30 {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&format!("\"field{i}\" \"{}\"", "v".repeat(1024)));
    }
    line.push_str(")\r\n");
    match parse(&line) {
        CommandBody::Id(Some(pairs)) => assert_eq!(pairs.len(), 30),
        c => panic!("{c:?}"),
    }
    assert_eq!(parse("a ID NIL\r\n"), CommandBody::Id(None));
    assert!(bad(b"a ID (\"name\")\r\n").tag.is_some());
    assert!(bad(b"a ID (\"name\" \"x\"\r\n").tag.is_some());
    assert!(bad(b"a ID name\r\n").reason.contains("ID"));
}

#[test]
fn append_forms_and_streamed_heads() {
    match parse("a APPEND INBOX (\\Seen) \" 7-Feb-1994 21:52:25 -0800\" {5}\r\nhello\r\n") {
        CommandBody::Append(a) => {
            assert_eq!(a.flags, vec!["\\Seen".to_owned()]);
            let want = FixedOffset::west_opt(8 * 3600)
                .unwrap()
                .with_ymd_and_hms(1994, 2, 7, 21, 52, 25)
                .unwrap();
            assert_eq!(a.date, Some(want));
            assert_eq!(a.message, b"hello");
        }
        c => panic!("{c:?}"),
    }
    match parse("a APPEND Drafts UTF8 (~{3}\r\na\0b)\r\n") {
        CommandBody::Append(a) => assert!(a.data == AppendData::Utf8 && a.message == b"a\0b"),
        c => panic!("{c:?}"),
    }
    let head = parse_append_head(b"a APPEND INBOX (\\Seen $x) {100+}\r\n").unwrap();
    assert_eq!(head.mailbox, Mailbox(b"INBOX".to_vec()));
    assert_eq!(head.flags.len(), 2);
    assert_eq!(
        parse_append_head(b"a APPEND Sent ~{10}\r\n").unwrap().data,
        AppendData::Literal8
    );
    assert_eq!(
        parse_append_head(b"a APPEND Sent UTF8 (~{10}\r\n")
            .unwrap()
            .data,
        AppendData::Utf8
    );
    // The first literal of `APPEND {5}` is the mailbox name, the second the message.
    assert!(parse_append_head(b"a APPEND {5}\r\n").is_none());
    assert!(parse_append_head(b"a APPEND {5}\r\nDraft {9}\r\n").is_some());
    assert!(parse_append_head(b"a LOGIN {5}\r\n").is_none());
    assert_eq!(
        trailing_literal(b"a APPEND x {12+}\r\n"),
        Some((12, LiteralMode::NonSync))
    );
    assert_eq!(
        trailing_literal(b"a APPEND x {12}\r\n"),
        Some((12, LiteralMode::Sync))
    );
    assert_eq!(trailing_literal(b"a NOOP\r\n"), None);
}

#[test]
fn bad_syntax_says_why_with_the_tag() {
    let e = bad(b"t1 FOO\r\n");
    assert_eq!(e.tag.as_deref(), Some("t1"));
    assert_eq!(e.reason, "Unknown command");
    assert_eq!(
        bad(b"t1 NOOP extra\r\n").reason,
        "Unexpected extra arguments"
    );
    assert_eq!(bad(b"\r\n").tag, None);
    assert_eq!(bad(b"+ NOOP\r\n").tag, None);
    assert!(bad(b"a UID NOOP\r\n").reason.contains("UID"));
    assert!(bad(b"a SELECT\r\n").tag.is_some());
    assert!(bad(b"a STORE 1 FLAGS\r\n").tag.is_some());
    assert!(
        bad(b"a STORE 1 FLAGGED (\\Seen)\r\n")
            .reason
            .contains("FLAGS")
    );
    assert!(
        bad(b"a CREATE \"unterminated\r\n")
            .reason
            .contains("quoted")
    );
}

// ---- round trip: arbitrary Command -> client encoding -> parse -> equal ----

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[A-Za-z0-9_.-]{1,10}".prop_map(String::into_bytes),
        prop::collection::vec(1u8..=255, 0..16),
    ]
}

fn mailbox() -> impl Strategy<Value = Mailbox> {
    bytes().prop_map(Mailbox)
}

fn sequence_set_s() -> impl Strategy<Value = SequenceSet> {
    let n = prop_oneof![
        4 => (1u32..=u32::MAX).prop_map(|n| SeqOrUid::Value(nz(n))),
        1 => Just(SeqOrUid::Asterisk),
    ];
    let seq = prop_oneof![
        n.clone().prop_map(Sequence::Single),
        (n.clone(), n).prop_map(|(a, b)| Sequence::Range(a, b)),
    ];
    prop::collection::vec(seq, 1..5).prop_map(|v| SequenceSet::try_from(v).unwrap())
}

fn seq_set_s() -> impl Strategy<Value = SeqSet> {
    prop_oneof![
        1 => Just(SeqSet::Saved),
        4 => sequence_set_s().prop_map(SeqSet::Set),
    ]
}

fn keyword() -> impl Strategy<Value = String> {
    "[A-Za-z$][A-Za-z0-9_$.-]{0,8}"
}

fn flag() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\\Seen",
            "\\Answered",
            "\\Flagged",
            "\\Deleted",
            "\\Draft"
        ])
        .prop_map(str::to_owned),
        keyword(),
    ]
}

fn date() -> impl Strategy<Value = NaiveDate> {
    (1900i32..2100, 1u32..=12, 1u32..=28)
        .prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap())
}

fn modseq() -> impl Strategy<Value = u64> {
    1u64..=i64::MAX as u64
}

fn search_key_s() -> impl Strategy<Value = SearchKey> {
    let leaf = prop_oneof![
        prop::sample::select(vec![
            SearchKey::All,
            SearchKey::Answered,
            SearchKey::Deleted,
            SearchKey::Draft,
            SearchKey::Flagged,
            SearchKey::New,
            SearchKey::Old,
            SearchKey::Recent,
            SearchKey::Seen,
            SearchKey::Unanswered,
            SearchKey::Undeleted,
            SearchKey::Undraft,
            SearchKey::Unflagged,
            SearchKey::Unseen,
        ]),
        keyword().prop_map(SearchKey::Keyword),
        keyword().prop_map(SearchKey::Unkeyword),
        bytes().prop_map(SearchKey::Bcc),
        bytes().prop_map(SearchKey::Body),
        bytes().prop_map(SearchKey::Cc),
        bytes().prop_map(SearchKey::From),
        bytes().prop_map(SearchKey::Subject),
        bytes().prop_map(SearchKey::Text),
        bytes().prop_map(SearchKey::To),
        (bytes(), bytes()).prop_map(|(a, b)| SearchKey::Header(a, b)),
        date().prop_map(SearchKey::Before),
        date().prop_map(SearchKey::On),
        date().prop_map(SearchKey::Since),
        date().prop_map(SearchKey::SentBefore),
        date().prop_map(SearchKey::SentOn),
        date().prop_map(SearchKey::SentSince),
        any::<u32>().prop_map(SearchKey::Larger),
        any::<u32>().prop_map(SearchKey::Smaller),
        seq_set_s().prop_map(SearchKey::Uid),
        seq_set_s().prop_map(SearchKey::Seq),
        (
            prop::option::of((
                "/flags/[a-z$\\\\]{1,8}".prop_map(String::into_bytes),
                prop::sample::select(vec![EntryType::Priv, EntryType::Shared, EntryType::All])
            )),
            modseq()
        )
            .prop_map(|(entry, modseq)| SearchKey::ModSeq { entry, modseq }),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|k| SearchKey::Not(Box::new(k))),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| SearchKey::Or(Box::new(a), Box::new(b))),
            prop::collection::vec(inner, 1..4).prop_map(SearchKey::And),
        ]
    })
}

fn path() -> impl Strategy<Value = PartPath> {
    prop::collection::vec((1u32..50).prop_map(nz), 0..4)
}

fn nonempty_path() -> impl Strategy<Value = PartPath> {
    prop::collection::vec((1u32..50).prop_map(nz), 1..4)
}

fn partial_s() -> impl Strategy<Value = Option<(u32, NonZeroU32)>> {
    prop::option::of((any::<u32>(), (1u32..=u32::MAX).prop_map(nz)))
}

fn section_s() -> impl Strategy<Value = Option<Section>> {
    prop::option::of(prop_oneof![
        nonempty_path().prop_map(Section::Part),
        path().prop_map(Section::Header),
        path().prop_map(Section::Text),
        nonempty_path().prop_map(Section::Mime),
        (path(), any::<bool>(), prop::collection::vec(bytes(), 1..4))
            .prop_map(|(path, not, fields)| Section::HeaderFields { path, not, fields }),
    ])
}

fn fetch_item_s() -> impl Strategy<Value = FetchItem> {
    prop_oneof![
        prop::sample::select(vec![
            FetchItem::Uid,
            FetchItem::Flags,
            FetchItem::InternalDate,
            FetchItem::Rfc822Size,
            FetchItem::Envelope,
            FetchItem::Body,
            FetchItem::BodyStructure,
            FetchItem::Rfc822,
            FetchItem::Rfc822Header,
            FetchItem::Rfc822Text,
            FetchItem::ModSeq,
        ]),
        (any::<bool>(), section_s(), partial_s()).prop_map(|(peek, section, partial)| {
            FetchItem::BodySection {
                peek,
                section,
                partial,
            }
        }),
        (any::<bool>(), path(), partial_s()).prop_map(|(peek, path, partial)| FetchItem::Binary {
            peek,
            path,
            partial
        }),
        path().prop_map(|path| FetchItem::BinarySize { path }),
    ]
}

fn status_items_s() -> impl Strategy<Value = Vec<StatusItem>> {
    prop::collection::vec(prop::sample::select(StatusItem::ALL.to_vec()), 1..5)
}

fn charset_s() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["UTF-8", "US-ASCII", "ISO-8859-1"]).prop_map(str::to_owned)
}

fn list_s() -> impl Strategy<Value = ListCommand> {
    (
        any::<bool>(),
        any::<[bool; 8]>(),
        prop::option::of(status_items_s()),
        bytes(),
        prop::collection::vec(bytes(), 1..4),
    )
        .prop_map(|(lsub, f, status, reference, patterns)| {
            let mut l = ListCommand {
                lsub,
                reference,
                patterns,
                ..Default::default()
            };
            if lsub {
                l.patterns.truncate(1);
                return l;
            }
            l.select_subscribed = f[0];
            l.select_special = f[1];
            l.select_remote = f[2];
            l.recursive = f[3] && (f[0] || f[1]);
            l.return_subscribed = f[4];
            l.return_children = f[5];
            l.return_special = f[6];
            l.status = status;
            l.extended = f[7]
                || f[0..4].iter().any(|&b| b)
                || f[4..7].iter().any(|&b| b)
                || l.status.is_some()
                || l.patterns.len() > 1;
            l
        })
}

fn datetime_s() -> impl Strategy<Value = chrono::DateTime<FixedOffset>> {
    (date(), 0u32..24, 0u32..60, 0u32..60, -12i32 * 60..=14 * 60).prop_map(|(d, h, m, s, off)| {
        FixedOffset::east_opt(off * 60)
            .unwrap()
            .from_local_datetime(&d.and_hms_opt(h, m, s).unwrap())
            .unwrap()
    })
}

fn body_s() -> impl Strategy<Value = CommandBody> {
    let simple = prop::sample::select(vec![
        CommandBody::Capability,
        CommandBody::Noop,
        CommandBody::Logout,
        CommandBody::StartTls,
        CommandBody::Idle,
        CommandBody::Namespace,
        CommandBody::Check,
        CommandBody::Close,
        CommandBody::Unselect,
        CommandBody::Expunge,
    ]);
    prop_oneof![
        simple,
        seq_set_s().prop_map(CommandBody::UidExpunge),
        (bytes(), bytes()).prop_map(|(user, password)| CommandBody::Login { user, password }),
        // Base64 as sent; empty is `=` (RFC 4959).
        (
            "[A-Z0-9-]{1,12}",
            prop::option::of("(([A-Za-z0-9+/]{4}){1,4})?")
        )
            .prop_map(|(mechanism, initial)| CommandBody::Authenticate {
                mechanism,
                initial: initial.map(String::into_bytes)
            }),
        prop::collection::vec("[A-Z0-9=+-]{1,12}", 1..4).prop_map(CommandBody::Enable),
        (
            mailbox(),
            any::<bool>(),
            any::<bool>(),
            prop::option::of((
                (1u32..=u32::MAX),
                modseq(),
                prop::option::of(sequence_set_s()),
                prop::option::of((sequence_set_s(), sequence_set_s()))
            ))
        )
            .prop_map(|(mailbox, read_only, condstore, q)| CommandBody::Select {
                mailbox,
                read_only,
                params: SelectParams {
                    condstore,
                    qresync: q.map(|(uidvalidity, modseq, known_uids, seq_match)| Qresync {
                        uidvalidity,
                        modseq,
                        known_uids,
                        seq_match
                    })
                }
            }),
        mailbox().prop_map(CommandBody::Create),
        mailbox().prop_map(CommandBody::Delete),
        mailbox().prop_map(CommandBody::Subscribe),
        mailbox().prop_map(CommandBody::Unsubscribe),
        mailbox().prop_map(CommandBody::GetQuotaRoot),
        bytes().prop_map(CommandBody::GetQuota),
        (
            bytes(),
            prop::collection::vec(("[A-Z]{1,8}", any::<u64>()), 0..3)
        )
            .prop_map(|(root, limits)| CommandBody::SetQuota { root, limits }),
        (mailbox(), mailbox()).prop_map(|(from, to)| CommandBody::Rename { from, to }),
        list_s().prop_map(CommandBody::List),
        (mailbox(), status_items_s())
            .prop_map(|(mailbox, items)| CommandBody::Status { mailbox, items }),
        (
            mailbox(),
            prop::collection::vec(flag(), 0..4),
            prop::option::of(datetime_s()),
            prop::sample::select(vec![
                AppendData::Literal,
                AppendData::Literal8,
                AppendData::Utf8
            ]),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(mailbox, flags, date, data, mut message)| {
                if data == AppendData::Literal {
                    message.retain(|&b| b != 0);
                }
                CommandBody::Append(Append {
                    mailbox,
                    flags,
                    date,
                    data,
                    message,
                })
            }),
        prop::option::of(prop::collection::vec(
            (
                "[a-z-]{1,30}".prop_map(String::into_bytes),
                prop::option::of(prop::collection::vec(1u8..=255, 0..40))
            ),
            0..5
        ))
        .prop_map(CommandBody::Id),
        (
            any::<bool>(),
            prop::option::of(any::<[bool; 5]>()),
            prop::option::of(charset_s()),
            search_key_s()
        )
            .prop_map(|(uid, ret, charset, key)| CommandBody::Search(Search {
                uid,
                ret: ret.map(|r| {
                    let mut o = ReturnOpts {
                        min: r[0],
                        max: r[1],
                        all: r[2],
                        count: r[3],
                        save: r[4],
                    };
                    // `RETURN ()` is ALL.
                    if !(o.min || o.max || o.all || o.count || o.save) {
                        o.all = true;
                    }
                    o
                }),
                charset,
                key
            })),
        (
            any::<bool>(),
            seq_set_s(),
            prop_oneof![
                prop::sample::select(vec![FetchMacro::All, FetchMacro::Fast, FetchMacro::Full])
                    .prop_map(FetchItems::Macro),
                prop::collection::vec(fetch_item_s(), 1..5).prop_map(FetchItems::List),
            ],
            prop::option::of(modseq()),
            any::<bool>()
        )
            .prop_map(
                |(uid, set, items, changed_since, vanished)| CommandBody::Fetch(Fetch {
                    uid,
                    set,
                    items,
                    vanished: vanished && changed_since.is_some(),
                    changed_since,
                })
            ),
        (
            any::<bool>(),
            seq_set_s(),
            prop::option::of(0u64..=i64::MAX as u64),
            prop::sample::select(vec![StoreMode::Replace, StoreMode::Add, StoreMode::Remove]),
            any::<bool>(),
            prop::collection::vec(flag(), 0..4),
            any::<bool>()
        )
            .prop_map(|(uid, set, unchanged_since, mode, silent, flags, list)| {
                let list = list || flags.is_empty();
                CommandBody::Store(Store {
                    uid,
                    set,
                    unchanged_since,
                    mode,
                    silent,
                    flags,
                    list,
                })
            }),
        (any::<bool>(), seq_set_s(), mailbox(), any::<bool>()).prop_map(
            |(uid, set, mailbox, mv)| {
                if mv {
                    CommandBody::Move { uid, set, mailbox }
                } else {
                    CommandBody::Copy { uid, set, mailbox }
                }
            }
        ),
        (
            any::<bool>(),
            prop::collection::vec(
                (any::<bool>(), prop::sample::select(SortKey::ALL.to_vec()))
                    .prop_map(|(reverse, key)| SortCriterion { reverse, key }),
                1..4
            ),
            charset_s(),
            search_key_s()
        )
            .prop_map(|(uid, criteria, charset, key)| CommandBody::Sort(Sort {
                uid,
                criteria,
                charset,
                key
            })),
        (
            any::<bool>(),
            prop::sample::select(vec![
                ThreadAlgorithm::References,
                ThreadAlgorithm::OrderedSubject
            ]),
            charset_s(),
            search_key_s()
        )
            .prop_map(
                |(uid, algorithm, charset, key)| CommandBody::Thread(Thread {
                    uid,
                    algorithm,
                    charset,
                    key
                })
            ),
    ]
}

fn command_s() -> impl Strategy<Value = Command> {
    ("[A-Za-z0-9.]{1,8}", body_s()).prop_map(|(tag, body)| Command { tag, body })
}

/// `PROPTEST_CASES=100000 cargo test -p imap-frontend --lib proto` runs a
/// longer campaign than the bounded one of every `cargo test`.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn round_trip(cmd in command_s()) {
        let wire = encode_command(&cmd);
        let parsed = parse_command(&wire);
        prop_assert_eq!(parsed.as_ref(), Ok(&cmd), "wire: {:?}", String::from_utf8_lossy(&wire));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_command(&data);
        let _ = parse_append_head(&data);
    }

    #[test]
    fn mangled_commands_never_panic(cmd in command_s(), cut in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = encode_command(&cmd);
        let i = cut.index(wire.len());
        wire[i] = byte;
        let _ = parse_command(&wire);
        wire.truncate(i);
        let _ = parse_command(&wire);
        let _ = parse_append_head(&wire);
    }
}
