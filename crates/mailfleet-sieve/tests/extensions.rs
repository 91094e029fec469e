//! The examples of the extension RFCs (5229 variables, 5230 vacation, 5231 relational, 5232
//! imap4flags, 5233 subaddress, 5260 date/index, 5173 body, 3894 copy, 5429 reject, 5490
//! mailbox, 5228 2.4.2.4 encoded-character), compiled and run against messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use mailfleet_sieve::{Action, Vacation};

fn flagged(m: &str, flags: &[&str]) -> Action {
    Action::FileInto {
        mailbox: m.into(),
        flags: flags.iter().map(|s| s.to_string()).collect(),
        create: false,
    }
}

// ---- RFC 5229 variables ----

#[test]
fn rfc5229_set_and_interpolation() {
    let script = r#"require ["variables", "reject"];
set "honorific" "Mr";
set "first_name" "Wile";
set "last_name" "Coyote";
set "vacation" text:
Dear ${HONORIFIC} ${last_name},
I'm out, please leave a message after the meep.
.
;
reject "${vacation}";
"#;
    assert_eq!(
        actions(script, &msg(&[], "")),
        vec![Action::Reject {
            reason: "Dear Mr Coyote,\r\nI'm out, please leave a message after the meep.\r\n".into()
        }]
    );
    // Section 3: strings that are not references stay as written.
    let script = r#"require ["variables", "fileinto"];
set "company" "ACME";
fileinto "&%${}!|${doh!}|${company}|${fo${company}}|${1}|${unknown}";"#;
    assert_eq!(
        actions(script, &msg(&[], "")),
        vec![fileinto("&%${}!|${doh!}|ACME|${foACME}||")]
    );
}

#[test]
fn rfc5229_match_variables() {
    let script = r#"require ["variables", "fileinto"];
if header :matches "List-ID" "*<*@*" {
    fileinto "INBOX.lists.${2}"; stop;
}
# Imagine the header
# Subject: [acme-users] [fwd] version 1.0 is out
if header :matches "Subject" "[*] *" {
    # ${1} will hold "acme-users",
    # ${2} will hold "[fwd] version 1.0 is out"
    fileinto "INBOX.lists.${1}"; stop;
}
# Imagine the header
# To: coyote@ACME.Example.COM
if address :matches ["To", "Cc"] ["coyote@**.com",
        "wile@**.com"] {
    # ${0} is the matching address
    # ${1} is always the empty string
    # ${2} is part of the domain name ("ACME.Example")
    fileinto "INBOX.business.${2}"; stop;
} else {
    # Control wouldn't reach this block if any match was
    # successful, so no match variables are set at this
    # point.
}
if anyof (true, address :domain :matches "To" "*.example.com") {
    # The second test is never evaluated, so there are
    # still no match variables set.
    stop;
}
"#;
    let list = msg(&["List-ID: Sieve <sieve@ietf.org>", "Subject: x"], "");
    assert_eq!(actions(script, &list), vec![fileinto("INBOX.lists.sieve")]);
    let subj = msg(&["Subject: [acme-users] [fwd] version 1.0 is out"], "");
    assert_eq!(
        actions(script, &subj),
        vec![fileinto("INBOX.lists.acme-users")]
    );
    let to = msg(&["To: coyote@ACME.Example.COM", "Subject: hi"], "");
    assert_eq!(
        actions(script, &to),
        vec![fileinto("INBOX.business.ACME.Example")]
    );
    assert_eq!(
        actions(script, &msg(&["To: x@y.example.com"], "")),
        vec![keep()]
    );
}

#[test]
fn rfc5229_modifiers_and_string_test() {
    let script = r#"require ["variables", "fileinto"];
set "a" "juMBlEd lETteRS";
set :length "b" "${a}";
set :lower "c" "${a}";
set :upperfirst "d" "${a}";
set :upperfirst :lower "e" "${a}";
set :quotewildcard "f" "Rock*";
fileinto "${b}|${c}|${d}|${e}|${f}";
set "state" "${state} pending";
if string :matches " ${state} " "* pending *" {
    fileinto "pending";
}
if string :count "eq" :comparator "i;ascii-numeric" ["${a}", "", "x"] "2" {
    fileinto "two";
}
"#;
    let script = script.replace("\"relational\"", "");
    let script = script.replace(
        "require [\"variables\", \"fileinto\"]",
        "require [\"variables\", \"fileinto\", \"relational\", \"comparator-i;ascii-numeric\"]",
    );
    assert_eq!(
        actions(&script, &msg(&[], "")),
        vec![
            fileinto("15|jumbled letters|JuMBlEd lETteRS|Jumbled letters|Rock\\*"),
            fileinto("pending"),
            fileinto("two"),
        ]
    );
}

#[test]
fn variable_sizes_are_bounded() {
    let r = common::Run {
        limits: mailfleet_sieve::Limits {
            max_variable_bytes: 8,
            ..Default::default()
        },
        ..Default::default()
    };
    let o = r.on(
        r#"require ["variables", "fileinto"]; set "a" "0123456789abcdef"; fileinto "${a}";"#,
        &msg(&[], ""),
    );
    assert_eq!(o.actions, vec![fileinto("01234567")]);
}

// ---- RFC 5230 vacation ----

fn vacation(o: &[Action]) -> Option<&Vacation> {
    o.iter().find_map(|a| match a {
        Action::Vacation(v) => Some(v),
        _ => None,
    })
}

#[test]
fn rfc5230_examples() {
    let m = msg(
        &[
            "From: Friend <friend@remote.test>",
            "To: me@example.com",
            "Subject: about cyrus",
        ],
        "hi\r\n",
    );
    let script = r#"require "vacation";
if header :contains "subject" "cyrus" {
    vacation "I'm out -- send mail to cyrus-bugs";
} else {
    vacation "I'm out -- call me at +1 304 555 0123";
}"#;
    let a = actions(script, &m);
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a.last(), Some(&keep()));
    let v = vacation(&a).unwrap();
    assert_eq!(v.to, "sender@remote.test");
    assert_eq!(v.reason, "I'm out -- send mail to cyrus-bugs");
    assert_eq!(v.subject, "Auto: about cyrus");
    assert_eq!(v.period, std::time::Duration::from_secs(7 * 86400));
    assert!(!v.mime);
    assert_eq!(v.from, None);

    let script = r#"require ["vacation", "variables"];
if header :matches "subject" "*" {
    vacation :subject "Automatic response to: ${1}" "I'm away";
}"#;
    let a = actions(script, &m);
    assert_eq!(
        vacation(&a).unwrap().subject,
        "Automatic response to: about cyrus"
    );

    // :addresses: mail to another of my addresses still gets a reply.
    let script = r#"require "vacation";
vacation :days 23 :addresses ["tjs@example.edu",
                              "ts4z@landru.example.edu"]
   "I'm away until October 19.
   If it's an emergency, call 911, I guess." ;"#;
    let other = msg(
        &[
            "From: a@remote.test",
            "To: ts4z@landru.example.edu",
            "Subject: s",
        ],
        "",
    );
    let a = actions(script, &other);
    let v = vacation(&a).unwrap();
    assert_eq!(v.period, std::time::Duration::from_secs(23 * 86400));
    assert!(v.reason.starts_with("I'm away until October 19."));

    let script = r#"require "vacation";
if header :contains "from" "boss@example.edu" {
    redirect "pleeb@isp.example.org";
} else {
    vacation "Sorry, I'm away, I'll read your
   message when I get around to it.";
}"#;
    let boss = msg(&["From: boss@example.edu", "To: me@example.com"], "");
    assert_eq!(
        actions(script, &boss),
        vec![Action::Redirect {
            address: "pleeb@isp.example.org".into()
        }]
    );

    let script = "require \"vacation\";\nvacation :mime :handle \"ho\" :from \"me@example.com\" text:\nContent-Type: text/plain; charset=utf-8\n\nAway.\n.\n;";
    let a = actions(script, &m);
    let v = vacation(&a).unwrap();
    assert!(v.mime);
    assert_eq!(v.handle, "ho");
    assert_eq!(v.from.as_deref(), Some("me@example.com"));
    assert_eq!(
        v.reason,
        "Content-Type: text/plain; charset=utf-8\r\n\r\nAway.\r\n"
    );
}

#[test]
fn rfc5230_no_reply_to_lists_bulk_null_or_ourselves() {
    let script = r#"require ["vacation", "vacation-seconds"]; vacation :seconds 0 "away";"#;
    let base = ["From: a@remote.test", "To: me@example.com"];
    let ok = actions(script, &msg(&base, ""));
    assert_eq!(vacation(&ok).unwrap().period, std::time::Duration::ZERO);
    for extra in [
        "List-Id: <x.lists.test>",
        "List-Unsubscribe: <mailto:u@lists.test>",
        "Precedence: bulk",
        "Precedence: junk",
        "Auto-Submitted: auto-replied",
    ] {
        let mut h = base.to_vec();
        h.push(extra);
        let a = actions(script, &msg(&h, ""));
        assert_eq!(a, vec![keep()], "replied despite {extra}");
    }
    let mut h = base.to_vec();
    h.push("Auto-Submitted: no");
    assert!(vacation(&actions(script, &msg(&h, ""))).is_some());
    // Not addressed to us (e.g. Bcc to a list we are on).
    assert_eq!(
        actions(
            script,
            &msg(&["From: a@remote.test", "To: other@example.org"], "")
        ),
        vec![keep()]
    );
    for from in [
        "",
        "me@example.com",
        "MAILER-DAEMON@remote.test",
        "owner-list@remote.test",
        "list-request@remote.test",
    ] {
        let r = common::Run {
            from,
            ..Default::default()
        };
        let o = r.on(script, &msg(&base, ""));
        assert_eq!(o.actions, vec![keep()], "replied to {from:?}");
    }
    // Two vacations are an error.
    let o = common::Run::default().on(
        r#"require "vacation"; vacation "a"; vacation "b";"#,
        &msg(&base, ""),
    );
    assert!(o.error.is_some());
}

// ---- RFC 5231 relational ----

#[test]
fn rfc5231_examples() {
    let m = msg(
        &[
            "Received: from a by b; Tue, 1 Apr 1997 09:06:31 -0800",
            "Received: from c by d; Tue, 1 Apr 1997 09:06:30 -0800",
            "Subject: example",
            "To: foo@example.com, baz@example.com",
            "CC: qux@example.com",
            "X-Priority: 4",
        ],
        "",
    );
    let t = |test: &str| {
        let s = format!(
            "require [\"relational\", \"comparator-i;ascii-numeric\"]; if {test} {{ discard; }}"
        );
        actions(&s, &m) == vec![Action::Discard]
    };
    assert!(t(
        r#"address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] ["3"]"#
    ));
    assert!(!t(
        r#"anyof ( address :count "ge" :comparator "i;ascii-numeric" ["to"] ["3"], address :count "ge" :comparator "i;ascii-numeric" ["cc"] ["3"] )"#
    ));
    assert!(!t(
        r#"header :count "ge" :comparator "i;ascii-numeric" ["received"] ["3"]"#
    ));
    assert!(t(
        r#"header :count "ge" :comparator "i;ascii-numeric" ["received", "subject"] ["3"]"#
    ));
    assert!(!t(
        r#"header :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] ["3"]"#
    ));
    assert!(t(
        r#"header :value "gt" :comparator "i;ascii-numeric" "x-priority" "3""#
    ));
    assert!(!t(
        r#"header :value "lt" :comparator "i;ascii-numeric" "x-priority" "3""#
    ));
    assert!(t(r#"header :value "lt" "subject" "f""#));
}

// ---- RFC 5232 imap4flags ----

#[test]
fn rfc5232_examples() {
    let script = r#"require ["imap4flags", "fileinto", "variables"];
if size :over 5 {
    setflag "\\Deleted";
}
if header :contains "from" "boss@frobnitzm.example.edu" {
    setflag "flagvar" "\\Flagged";
    fileinto :flags "${flagvar}" "INBOX.From Boss";
}
if header :contains "Disposition-Notification-To" "mel@example.com" {
    addflag "flagvar" "$MDNRequired";
}
if header :contains "from" "imap@cac.washington.example.edu" {
    removeflag "flagvar" "$MDNRequired";
    fileinto :flags "${flagvar}" "INBOX.imap-list";
}
"#;
    let boss = msg(&["From: boss@frobnitzm.example.edu"], "a long body\r\n");
    assert_eq!(
        actions(script, &boss),
        vec![flagged("INBOX.From Boss", &["\\Flagged"])]
    );
    let imap = msg(
        &[
            "From: imap@cac.washington.example.edu",
            "Disposition-Notification-To: mel@example.com",
        ],
        "",
    );
    assert_eq!(
        actions(script, &imap),
        vec![flagged("INBOX.imap-list", &[])]
    );
    // The internal variable flags keep and implicit keep.
    let script = r#"require "imap4flags";
addflag ["\\Seen", "$Work \\Seen"];
removeflag "$Nope";
if hasflag :contains "work" { addflag "\\Answered"; }
if not hasflag "\\Seen" { discard; }"#;
    assert_eq!(
        actions(script, &msg(&[], "")),
        vec![Action::Keep {
            flags: vec!["\\Seen".into(), "$Work".into(), "\\Answered".into()]
        }]
    );
    let script = r#"require "imap4flags"; keep :flags "\\Seen"; setflag "x";"#;
    assert_eq!(
        actions(script, &msg(&[], "")),
        vec![Action::Keep {
            flags: vec!["\\Seen".into()]
        }]
    );
}

// ---- RFC 5233 subaddress ----

#[test]
fn rfc5233_examples() {
    let script = r#"require ["envelope", "subaddress", "fileinto"];
# In this example the same user account receives mail for both
# "ken@example.com" and "postmaster@example.com"
# File all messages to postmaster into a single mailbox,
# ignoring the :detail part.
if envelope :user "to" "postmaster" {
    fileinto "inbox.postmaster";
    stop;
}
# File mailing list messages (subscribed as "ken+mta-filters").
if envelope :detail "to" "mta-filters" {
    fileinto "inbox.ietf-mta-filters";
}
# Redirect all mail sent to "ken+foo".
if envelope :detail "to" "foo" {
    redirect "ken@example.net";
}
"#;
    let m = msg(&["Subject: x"], "");
    let run = |to: &str| {
        common::Run {
            to,
            ..Default::default()
        }
        .on(script, &m)
        .actions
    };
    assert_eq!(
        run("postmaster+x@example.com"),
        vec![fileinto("inbox.postmaster")]
    );
    assert_eq!(
        run("ken+mta-filters@example.com"),
        vec![fileinto("inbox.ietf-mta-filters")]
    );
    assert_eq!(
        run("ken+foo@example.com"),
        vec![Action::Redirect {
            address: "ken@example.net".into()
        }]
    );
    // No separator: :detail does not match at all, not even "".
    let s = r#"require ["subaddress", "fileinto"];
if address :detail "to" "" { fileinto "empty-detail"; }
if address :user "to" "ken" { fileinto "ken"; }"#;
    assert_eq!(
        actions(s, &msg(&["To: ken@example.com"], "")),
        vec![fileinto("ken")]
    );
    assert_eq!(
        actions(s, &msg(&["To: ken+@example.com"], "")),
        vec![fileinto("empty-detail"), fileinto("ken")]
    );
}

// ---- RFC 5260 date and index ----

#[test]
fn rfc5260_examples() {
    let script = r#"require ["date", "relational", "fileinto"];
if allof(header :is "from" "boss@example.com",
         date :value "ge" :originalzone "date" "hour" "09",
         date :value "lt" :originalzone "date" "hour" "17")
{ fileinto "urgent"; }"#;
    let boss = |date: &str| msg(&["From: boss@example.com", &format!("Date: {date}")], "");
    assert_eq!(
        actions(script, &boss("Mon, 7 Dec 2026 10:00:00 -0800")),
        vec![fileinto("urgent")]
    );
    assert_eq!(
        actions(script, &boss("Mon, 7 Dec 2026 18:00:00 -0800")),
        vec![keep()]
    );

    let script = r#"require ["date", "relational", "fileinto"];
if anyof(date :is "received" "weekday" "0",
         date :is "received" "weekday" "6")
{ fileinto "weekend"; }"#;
    let sat = msg(
        &["Received: from a by b; Sat, 5 Dec 2026 12:00:00 +0100"],
        "",
    );
    assert_eq!(actions(script, &sat), vec![fileinto("weekend")]);

    // currentdate in the local zone (Context::now's offset) and in a given one.
    let script = r#"require ["date", "variables", "fileinto"];
if currentdate :matches "month" "*" { set "month" "${1}"; }
if currentdate :matches "year"  "*" { set "year" "${1}"; }
fileinto "${month}-${year}";
if currentdate :zone "-0100" :is "hour" "17" { fileinto "zoned"; }
if currentdate :is "iso8601" "2026-12-07T19:30:00+01:00" { fileinto "iso"; }
if currentdate :is "std11" "Mon, 07 Dec 2026 19:30:00 +0100" { fileinto "std11"; }
if currentdate :is "julian" "61381" { fileinto "julian"; }"#;
    assert_eq!(
        actions(script, &msg(&[], "")),
        vec![
            fileinto("12-2026"),
            fileinto("zoned"),
            fileinto("iso"),
            fileinto("std11"),
            fileinto("julian")
        ]
    );

    // :index / :last pick one occurrence (RFC 5260 section 6).
    let script = r#"require ["date", "relational", "index"];
if date :value "gt" :index 2 :zone "-0500" "received"
        "iso8601" "2007-02-26T09:00:00-05:00"
{ redirect "aftercutoff@example.org"; }"#;
    let m = msg(
        &[
            "Received: from x by y; Mon, 26 Feb 2007 10:00:00 -0500",
            "Received: from p by q; Mon, 26 Feb 2007 09:30:00 -0500",
            "Received: from r by s; Mon, 26 Feb 2007 08:00:00 -0500",
        ],
        "",
    );
    assert_eq!(
        actions(script, &m),
        vec![Action::Redirect {
            address: "aftercutoff@example.org".into()
        }]
    );
    let last = script.replace(":index 2", ":index 1 :last");
    assert_eq!(actions(&last, &m), vec![keep()]);
    let s = r#"require ["index"]; if header :index 2 :matches "received" "*from p*" { discard; }"#;
    assert_eq!(actions(s, &m), vec![Action::Discard]);
    let s =
        r#"require ["index"]; if header :index 1 :last :contains "received" "from p" { discard; }"#;
    assert_eq!(actions(s, &m), vec![keep()]);
}

// ---- RFC 5173 body ----

#[test]
fn rfc5173_examples() {
    let plain = msg(
        &["Subject: s"],
        "please MAKE MONEY FAST on the project schedule\r\n",
    );
    let s = r#"require ["body", "fileinto"]; if body :text :contains "project schedule" { fileinto "project/schedule"; }"#;
    assert_eq!(actions(s, &plain), vec![fileinto("project/schedule")]);
    let s =
        r#"require ["body", "fileinto"]; if body :raw :contains "MAKE MONEY FAST" { discard; }"#;
    assert_eq!(actions(s, &plain), vec![Action::Discard]);

    let mime = msg(
        &[
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=\"b\"",
        ],
        "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nbWlzc2lsZSBsYXVuY2g=\r\n--b\r\nContent-Type: audio/mp3\r\n\r\nID3\r\n--b--\r\n",
    );
    let script = r#"require ["body", "fileinto"];
# Save any message with any text MIME part that contains the
# words "missile" or "coordinates" in the "secrets" folder.
if body :content "text" :contains ["missile", "coordinates"] {
        fileinto "secrets";
}
# Save any message with an audio/mp3 MIME part in
# the "jukebox" folder.
if body :content "audio/mp3" :contains "" {
        fileinto "jukebox";
}"#;
    assert_eq!(
        actions(script, &mime),
        vec![fileinto("secrets"), fileinto("jukebox")]
    );
    // :raw sees the base64, not the decoded words.
    let s = r#"require "body"; if body :raw :contains "missile" { discard; }"#;
    assert_eq!(actions(s, &mime), vec![keep()]);
    // The scan is bounded.
    let r = common::Run {
        limits: mailfleet_sieve::Limits {
            max_body_scan_bytes: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let s = r#"require "body"; if body :text :contains "schedule" { discard; }"#;
    assert_eq!(r.on(s, &plain).actions, vec![keep()]);
}

#[test]
fn body_text_reads_html_as_text() {
    // An HTML-only message: `:text` sees what a reader sees (tags gone, entities decoded,
    // script and style skipped), `:content "text/html"` the markup.
    let html = msg(
        &[
            "MIME-Version: 1.0",
            "Content-Type: text/html; charset=utf-8",
        ],
        "<html><head><style>.offer { color: red }</style></head><body>\r\n\
         <p class=\"offer\">Special&nbsp;<b>offer</b> &amp; discount</p>\r\n\
         <script>var hidden = 'secret word';</script></body></html>\r\n",
    );
    let text = |key: &str| {
        format!(
            r#"require ["body", "fileinto"]; if body :text :contains "{key}" {{ fileinto "hit"; }}"#
        )
    };
    assert_eq!(
        actions(&text("Special offer & discount"), &html),
        vec![fileinto("hit")]
    );
    for hidden in ["<b>", "&amp;", "color: red", "secret word"] {
        assert_eq!(actions(&text(hidden), &html), vec![keep()], "{hidden}");
    }
    let markup = r#"require ["body", "fileinto"]; if body :content "text/html" :contains "<b>offer</b>" { fileinto "hit"; }"#;
    assert_eq!(actions(markup, &html), vec![fileinto("hit")]);

    // multipart/alternative: the plain part and the converted HTML part are both text.
    let alt = msg(
        &[
            "MIME-Version: 1.0",
            "Content-Type: multipart/alternative; boundary=\"b\"",
        ],
        "--b\r\nContent-Type: text/plain\r\n\r\nplain words\r\n\
         --b\r\nContent-Type: text/html\r\n\r\n<p>html&#32;only</p>\r\n--b--\r\n",
    );
    assert_eq!(actions(&text("html only"), &alt), vec![fileinto("hit")]);
    assert_eq!(actions(&text("plain words"), &alt), vec![fileinto("hit")]);
    assert_eq!(actions(&text("<p>"), &alt), vec![keep()]);
}

// ---- RFC 3894 copy, RFC 5490 mailbox ----

#[test]
fn rfc3894_copy_keeps_the_implicit_keep() {
    let s =
        r#"require ["copy", "fileinto"]; fileinto :copy "incoming"; redirect :copy "a@b.test";"#;
    assert_eq!(
        actions(s, &msg(&[], "")),
        vec![
            fileinto("incoming"),
            Action::Redirect {
                address: "a@b.test".into()
            },
            keep()
        ]
    );
}

#[test]
fn rfc5490_fileinto_create() {
    let s = r#"require ["fileinto", "mailbox"]; fileinto :create "INBOX.new";"#;
    assert_eq!(
        actions(s, &msg(&[], "")),
        vec![Action::FileInto {
            mailbox: "INBOX.new".into(),
            flags: vec![],
            create: true
        }]
    );
}

// ---- RFC 5429 reject / ereject ----

#[test]
fn rfc5429_examples_and_conflicts() {
    let big = msg(&["From: coyote@desert.example.org"], &"x".repeat(200));
    let s = "require [\"reject\"];\nif size :over 100 {\n   reject text:\nYour message is too big.  If you want to send me a big attachment,\nput it on a public web site and send me a URL.\n.\n;\n}";
    assert_eq!(
        actions(s, &big),
        vec![Action::Reject {
            reason: "Your message is too big.  If you want to send me a big attachment,\r\nput it on a public web site and send me a URL.\r\n".into()
        }]
    );
    let s = r#"require ["ereject"];
if header :contains "from" "coyote@desert.example.org" {
   ereject "I am not taking mail from you, and I don't want your birdseed, either!";
}"#;
    assert_eq!(
        actions(s, &big),
        vec![Action::Ereject {
            reason: "I am not taking mail from you, and I don't want your birdseed, either!".into()
        }]
    );
    // reject + fileinto is a runtime error: implicit keep and an error.
    for s in [
        r#"require ["reject", "fileinto"]; reject "no"; fileinto "x";"#,
        r#"require ["reject"]; keep; reject "no";"#,
        r#"require ["reject", "vacation"]; vacation "away"; reject "no";"#,
        r#"require ["reject", "ereject"]; reject "a"; ereject "b";"#,
    ] {
        let o =
            common::Run::default().on(s, &msg(&["From: a@remote.test", "To: me@example.com"], ""));
        assert_eq!(o.actions, vec![keep()], "{s}");
        assert!(o.error.is_some(), "{s}");
    }
}

// ---- RFC 5228 2.4.2.4 encoded-character ----

#[test]
fn encoded_character() {
    let s = r#"require ["encoded-character", "fileinto"];
if header :contains "Subject" "$${hex:24 24}" { fileinto "${unicode:48 49}"; }"#;
    assert_eq!(
        actions(s, &msg(&["Subject: pay $$$ now"], "")),
        vec![fileinto("HI")]
    );
    // Without the extension the text is literal.
    let s = r#"require "fileinto"; fileinto "${hex:41}";"#;
    assert_eq!(actions(s, &msg(&[], "")), vec![fileinto("${hex:41}")]);
}
