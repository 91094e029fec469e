//! RFC 5228's own examples (sections 2 to 5 and the extended example of section 9), compiled and
//! run against messages, plus the base rules of implicit keep and duplicate actions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use mailfleet_sieve::{Action, Limits, compile, supported_extensions};

const SECTION_9: &str = r#"
# Example Sieve Filter
# Declare any optional features or extension used by the script
require ["fileinto"];

# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
"#;

#[test]
fn section_9_extended_example_sorts_each_kind_of_mail() {
    let list = msg(
        &[
            "Sender: owner-ietf-mta-filters@imc.org",
            "To: me@example.com",
        ],
        "hi\r\n",
    );
    assert_eq!(actions(SECTION_9, &list), vec![fileinto("filter")]);
    let company = msg(&["From: boss@example.com", "To: me@other.test"], "hi\r\n");
    assert_eq!(actions(SECTION_9, &company), vec![keep()]);
    let not_to_me = msg(&["From: x@spam.test", "To: someone@else.test"], "hi\r\n");
    assert_eq!(actions(SECTION_9, &not_to_me), vec![fileinto("spam")]);
    // To me (example.com) would be "company" mail: the address test comes first.
    let spam = msg(
        &[
            "From: x@spam.test",
            "To: list@lists.test",
            "Cc: Me <me@example.com>",
            "Subject: MAKE your money FAST now",
        ],
        "",
    );
    assert_eq!(actions(SECTION_9, &spam), vec![fileinto("spam")]);
    let personal = msg(
        &[
            "From: friend@home.test",
            "Cc: me@example.com",
            "Subject: dinner",
        ],
        "",
    );
    assert_eq!(actions(SECTION_9, &personal), vec![fileinto("personal")]);
}

#[test]
fn section_4_and_5_examples() {
    let m = msg(
        &[
            "From: Tim <tim@example.com>",
            "To: idiot@example.com",
            "Subject: cream money",
            "Date: Tue, 1 Apr 1997 09:06:31 -0800",
        ],
        "body\r\n",
    );
    // 4.2 redirect
    assert_eq!(
        actions(r#"redirect "bart@example.com";"#, &m),
        vec![Action::Redirect {
            address: "bart@example.com".into()
        }]
    );
    // 4.3 keep / 5.9 size
    assert_eq!(
        actions("if size :under 1M { keep; } else { discard; }", &m),
        vec![keep()]
    );
    assert_eq!(actions("if size :over 500K { discard; }", &m), vec![keep()]);
    // 4.4 discard (and the implicit keep it cancels)
    assert_eq!(
        actions(r#"if header :contains ["from"] ["tim"] { discard; }"#, &m),
        vec![Action::Discard]
    );
    // 5.1 address
    assert_eq!(
        actions(
            r#"if address :is :all "from" "tim@example.com" { discard; }"#,
            &m
        ),
        vec![Action::Discard]
    );
    // 5.2 / 5.3 allof, anyof
    assert_eq!(
        actions(
            r#"if allof (header :contains "From" "Tim", header :contains "Subject" "money") { discard; }"#,
            &m
        ),
        vec![Action::Discard]
    );
    assert_eq!(
        actions(
            r#"if anyof (header :contains "From" "Joe", header :contains "Subject" "nothing") { discard; }"#,
            &m
        ),
        vec![keep()]
    );
    // 5.4 envelope
    let e = common::Run {
        from: "tim@example.com",
        ..Default::default()
    };
    let o = e.on(
        r#"require "envelope"; if envelope :all :is "from" "tim@example.com" { discard; }"#,
        &m,
    );
    assert_eq!(o.actions, vec![Action::Discard]);
    // 5.5 exists
    assert_eq!(
        actions(r#"if not exists ["From","Date"] { discard; }"#, &m),
        vec![keep()]
    );
    assert_eq!(
        actions(r#"if exists ["X-Nope"] { discard; }"#, &m),
        vec![keep()]
    );
    // 5.7 header
    assert_eq!(
        actions(
            r#"if header :contains ["From", "To"] "idiot@example.com" { discard; }"#,
            &m
        ),
        vec![Action::Discard]
    );
    // 2.7.2 comparators: i;octet is case-sensitive, the default is not
    let spam = msg(&["Subject: make money fast"], "");
    assert_eq!(
        actions(
            r#"if header :contains :comparator "i;octet" "Subject" "MAKE MONEY FAST" { discard; }"#,
            &spam
        ),
        vec![keep()]
    );
    assert_eq!(
        actions(
            r#"if header :contains "Subject" "MAKE MONEY FAST" { discard; }"#,
            &spam
        ),
        vec![Action::Discard]
    );
}

#[test]
fn multi_line_strings_and_comments() {
    let script = "require \"reject\";\r\n/* a bracketed\r\n comment */\r\nif true {\r\n  reject text: # trailing comment\r\nIn..box\r\n..dot\r\n.\r\n;\r\n}\r\n";
    assert_eq!(
        actions(script, &msg(&[], "")),
        vec![Action::Reject {
            reason: "In..box\r\n.dot\r\n".into()
        }]
    );
}

#[test]
fn implicit_keep_stop_and_duplicates() {
    let m = msg(&["Subject: x"], "");
    assert_eq!(actions("", &m), vec![keep()]);
    assert_eq!(actions("stop; discard;", &m), vec![keep()]);
    assert_eq!(actions("keep; keep;", &m), vec![keep()]);
    assert_eq!(
        actions(
            r#"require "fileinto"; fileinto "a"; fileinto "a"; redirect "x@y.test"; redirect "X@y.test";"#,
            &m
        ),
        vec![
            fileinto("a"),
            Action::Redirect {
                address: "x@y.test".into()
            }
        ]
    );
    // discard then keep: the keep wins and no Discard is reported.
    assert_eq!(actions("discard; keep;", &m), vec![keep()]);
}

#[test]
fn headers_are_decoded_before_matching() {
    let m = msg(
        &[
            "Subject: =?ISO-8859-1?Q?caf=E9?= au lait",
            "To: =?utf-8?q?J=C3=B6rg?= <jorg@example.com>",
        ],
        "",
    );
    assert_eq!(
        actions(r#"if header :is "subject" "café au lait" { discard; }"#, &m),
        vec![Action::Discard]
    );
    assert_eq!(
        actions(r#"if address :localpart :is "to" "jorg" { discard; }"#, &m),
        vec![Action::Discard]
    );
}

#[test]
fn limits_end_in_implicit_keep_with_an_error() {
    let limits = Limits {
        max_redirects: 2,
        ..Limits::default()
    };
    let r = common::Run {
        limits,
        ..Default::default()
    };
    let o = r.on(
        r#"redirect "a@x.test"; redirect "b@x.test"; redirect "c@x.test";"#,
        &msg(&[], ""),
    );
    assert_eq!(o.actions, vec![keep()]);
    let e = o.error.expect("an error");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("redirects"), "{e}");

    let limits = Limits {
        max_steps: 50,
        ..Limits::default()
    };
    let r = common::Run {
        limits,
        ..Default::default()
    };
    let script = "if true { keep; }\n".repeat(30);
    let o = r.on(&script, &msg(&[], ""));
    assert_eq!(o.actions, vec![keep()]);
    assert!(o.error.expect("an error").message.contains("steps"));

    let limits = Limits {
        max_actions: 3,
        ..Limits::default()
    };
    let r = common::Run {
        limits,
        ..Default::default()
    };
    let o = r.on(
        r#"require "fileinto"; fileinto "a"; fileinto "b"; fileinto "c"; fileinto "d";"#,
        &msg(&[], ""),
    );
    assert_eq!(o.actions, vec![keep()]);
    assert!(o.error.expect("an error").message.contains("actions"));
}

#[test]
fn script_and_nesting_limits_are_compile_errors() {
    let limits = Limits {
        max_script_bytes: 10,
        ..Limits::default()
    };
    let e = compile(b"keep; keep; keep;", &limits).unwrap_err();
    assert!(e.message.contains("limit"), "{e}");
    let deep = format!("{}keep;{}", "if true {".repeat(40), "}".repeat(40));
    let e = compile(deep.as_bytes(), &Limits::default()).unwrap_err();
    assert!(e.message.contains("nested"), "{e}");
    let deep_test = format!("if {}true{} {{ keep; }}", "not ".repeat(100), "");
    let e = compile(deep_test.as_bytes(), &Limits::default()).unwrap_err();
    assert!(e.message.contains("nested"), "{e}");
}

#[test]
fn script_reports_required_extensions_and_capabilities_list_them() {
    let s = compile(
        br#"require ["fileinto", "Variables"]; require "copy";"#,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(s.extensions(), vec!["fileinto", "variables", "copy"]);
    for ext in [
        "fileinto",
        "vacation",
        "imap4flags",
        "date",
        "index",
        "comparator-i;ascii-numeric",
    ] {
        assert!(supported_extensions().contains(&ext), "{ext}");
    }
    assert!(!supported_extensions().contains(&"regex"));
}

#[test]
fn script_is_shareable_between_deliveries() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<mailfleet_sieve::Script>();
}

#[test]
fn quoted_string_escapes_and_size_quantifiers() {
    // RFC 5228 2.4.2: \\ and \" are escapes; a backslash before anything else is dropped.
    let s = r#"require "fileinto"; fileinto "a\\b\"c\d";"#;
    assert_eq!(actions(s, &msg(&[], "")), vec![fileinto("a\\b\"cd")]);
    let big = msg(&[], &"x".repeat(1100));
    assert_eq!(
        actions("if size :over 1K { discard; }", &big),
        vec![Action::Discard]
    );
    assert_eq!(actions("if size :over 2k { discard; }", &big), vec![keep()]);
}

/// The caller files an implicit keep by its own rules (spam into Junk); a
/// `keep` the script wrote, or any action that cancels implicit keep, is the
/// script's decision and says so.
#[test]
fn the_outcome_says_whether_its_keep_is_the_implicit_one() {
    let m = msg(&["Subject: x"], "body");
    let run = Run::default();
    assert!(run.on("", &m).implicit_keep);
    assert!(run.on("if false { keep; }", &m).implicit_keep);
    assert!(!run.on("keep;", &m).implicit_keep);
    assert!(!run.on("discard;", &m).implicit_keep);
    let filed = run.on(r#"require "fileinto"; fileinto "x";"#, &m);
    assert!(!filed.implicit_keep);
    assert_eq!(filed.actions, vec![fileinto("x")]);
    // A runtime error falls back to the implicit keep.
    let tight = Run {
        limits: Limits {
            max_steps: 1,
            ..Limits::default()
        },
        ..Run::default()
    };
    let failed = tight.on("if true { if true { keep; } }", &m);
    assert!(failed.error.is_some() && failed.implicit_keep, "{failed:?}");
}
