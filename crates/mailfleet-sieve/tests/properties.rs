//! Properties: any bytes compile or fail without a panic; generated valid scripts compile and run
//! to a non-empty action list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use mailfleet_sieve::{Context, Envelope, Limits, compile, execute};
use proptest::prelude::*;

const HEADER: &str = "require [\"fileinto\", \"reject\", \"ereject\", \"envelope\", \"imap4flags\", \"vacation\", \"body\", \
\"variables\", \"relational\", \"copy\", \"subaddress\", \"date\", \"index\", \"encoded-character\", \"mailbox\", \
\"comparator-i;ascii-numeric\"];\n";

fn word() -> impl Strategy<Value = String> {
    "[a-z]{1,8}"
}

fn leaf_test() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("true".to_string()),
        Just("false".to_string()),
        word().prop_map(|w| format!("header :contains \"subject\" \"{w}\"")),
        word().prop_map(|w| format!("address :domain :is [\"from\", \"to\"] \"{w}.test\"")),
        word().prop_map(|w| format!("exists \"x-{w}\"")),
        (0u32..5000).prop_map(|n| format!("size :over {n}")),
        word().prop_map(|w| format!("envelope :detail :matches \"to\" \"*{w}?\"")),
        word().prop_map(|w| format!("body :text :contains \"{w}\"")),
        word().prop_map(|w| format!("string :matches \"${{1}}{w}\" \"*\"")),
        word().prop_map(|w| format!("hasflag :contains \"{w}\"")),
        (1990u32..2040)
            .prop_map(|y| format!("date :value \"ge\" :index 1 \"date\" \"year\" \"{y}\"")),
        (0u32..7).prop_map(|d| format!("currentdate :zone \"+0200\" :is \"weekday\" \"{d}\"")),
        (0u32..4).prop_map(|n| format!(
            "header :count \"ge\" :comparator \"i;ascii-numeric\" \"received\" \"{n}\""
        )),
    ]
}

fn test_expr() -> impl Strategy<Value = String> {
    leaf_test().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| format!("not {t}")),
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|v| format!("anyof ({})", v.join(", "))),
            prop::collection::vec(inner, 1..4).prop_map(|v| format!("allof ({})", v.join(", "))),
        ]
    })
}

fn simple_command() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("keep;".to_string()),
        Just("discard;".to_string()),
        Just("stop;".to_string()),
        word().prop_map(|w| format!("fileinto \"{w}\";")),
        word().prop_map(|w| format!(
            "fileinto :copy :create :flags \"\\\\Seen ${{1}}\" \"INBOX.{w}\";"
        )),
        word().prop_map(|w| format!("redirect :copy \"{w}@example.net\";")),
        word().prop_map(|w| format!("addflag \"${w}\";")),
        word().prop_map(|w| format!("removeflag \"v\" \"{w}\";")),
        word().prop_map(|w| format!("set :upperfirst :length \"v\" \"${{v}}{w}\";")),
        word().prop_map(|w| format!("vacation :days 3 :subject \"re ${{1}}\" \"{w}\";")),
        word().prop_map(|w| format!("ereject \"{w}\";")),
    ]
}

fn block() -> impl Strategy<Value = String> {
    let cmds = prop::collection::vec(simple_command(), 0..4).prop_map(|v| v.join("\n"));
    cmds.prop_recursive(3, 16, 3, |inner| {
        (
            test_expr(),
            inner.clone(),
            prop::option::of((test_expr(), inner.clone())),
            prop::option::of(inner),
        )
            .prop_map(|(t, b, elsif, els)| {
                let mut s = format!("if {t} {{\n{b}\n}}");
                if let Some((t2, b2)) = elsif {
                    s.push_str(&format!(" elsif {t2} {{\n{b2}\n}}"));
                }
                if let Some(e) = els {
                    s.push_str(&format!(" else {{\n{e}\n}}"));
                }
                s
            })
    })
}

fn message() -> Vec<u8> {
    common::msg(
        &[
            "Received: from a by b; Mon, 7 Dec 2026 10:00:00 +0000",
            "From: Someone <someone@remote.test>",
            "To: me+tag@example.com",
            "Subject: hello there",
            "Date: Mon, 7 Dec 2026 10:00:00 +0000",
        ],
        "hello body\r\n",
    )
    .into_bytes()
}

fn ctx(message: &[u8]) -> Context<'_> {
    Context {
        envelope: Envelope {
            from: "someone@remote.test",
            to: "me+tag@example.com",
            auth: None,
        },
        message,
        size: message.len() as u64,
        now: chrono::DateTime::parse_from_rfc3339(common::NOW).unwrap(),
        own_addresses: &["me@example.com"],
    }
}

/// Valid scripts that mutation starts from: near-valid input reaches the checker and the
/// interpreter, where random bytes stop at the lexer.
const SEEDS: &[&str] = &[
    "require [\"fileinto\", \"variables\", \"imap4flags\"];\nif header :matches \"Subject\" \"[*] *\" { setflag \"\\\\Seen\"; fileinto :flags \"${1}\" \"INBOX.${1}\"; stop; }\nkeep;",
    "require [\"vacation\", \"envelope\", \"subaddress\", \"relational\", \"comparator-i;ascii-numeric\"];\nif anyof (envelope :detail \"to\" \"tag\", address :count \"ge\" :comparator \"i;ascii-numeric\" [\"to\", \"cc\"] \"2\") { vacation :days 3 :subject \"Away\" \"I'm out\"; }",
    "require [\"body\", \"date\", \"index\", \"copy\", \"reject\", \"encoded-character\", \"relational\"];\nif allof (body :text :contains \"hello\", date :value \"ge\" :index 1 :zone \"-0500\" \"received\" \"hour\" \"03\") { redirect :copy \"a@example.net\"; } elsif currentdate :is \"weekday\" \"1\" { reject text:\nNo${hex:21}\n.\n; } else { discard; }",
    "require \"variables\";\nset :upperfirst :quotewildcard \"a\" \"${a}*?\";\nif string :matches \"${a}\" \"*\\\\**\" { redirect \"x@y.test\"; }",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(src in prop::collection::vec(any::<u8>(), 0..512)) {
        let limits = Limits::default();
        if let Ok(s) = compile(&src, &limits) {
            let m = message();
            let _ = execute(&s, &ctx(&m), &limits);
        }
    }

    #[test]
    fn arbitrary_sieve_like_text_never_panics(src in "[a-z:\"\\[\\]{}(),; \n*?$\\\\0-9]{0,300}") {
        let _ = compile(src.as_bytes(), &Limits::default());
    }

    #[test]
    fn mutated_scripts_never_panic(
        seed in 0..SEEDS.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut src = SEEDS[seed].as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at.index(src.len() + 1);
            match op {
                0 => src.insert(i, byte),
                1 if i < src.len() => { src.remove(i); }
                _ if i < src.len() => src[i] = byte,
                _ => {}
            }
        }
        let limits = Limits::default();
        if let Ok(s) = compile(&src, &limits) {
            let m = message();
            let o = execute(&s, &ctx(&m), &limits);
            prop_assert!(!o.actions.is_empty());
        }
    }

    #[test]
    fn generated_valid_scripts_compile_and_run(body in prop::collection::vec(block(), 1..4)) {
        let src = format!("{HEADER}{}", body.join("\n"));
        let limits = Limits::default();
        let s = compile(src.as_bytes(), &limits);
        prop_assert!(s.is_ok(), "{:?}\n{}", s.err(), src);
        if let Ok(s) = s {
            let m = message();
            let o = execute(&s, &ctx(&m), &limits);
            prop_assert!(!o.actions.is_empty());
        }
    }
}

#[test]
fn mutation_and_fuzz_seeds_are_valid() {
    for s in SEEDS {
        let r = compile(s.as_bytes(), &Limits::default());
        assert!(r.is_ok(), "{:?}\n{s}", r.err());
    }
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/sieve_script");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the fuzz seeds") {
        let path = entry.unwrap().path();
        let r = compile(&std::fs::read(&path).unwrap(), &Limits::default());
        assert!(r.is_ok(), "{}: {:?}", path.display(), r.err());
        n += 1;
    }
    assert!(n >= 4, "fuzz seeds missing");
}
