//! Each class of compile error, with the line it names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::compile_err;

fn check(script: &str, line: u32, needle: &str) {
    let e = compile_err(script);
    assert_eq!(e.line, line, "wrong line for {script:?}: {e}");
    assert!(
        e.message.contains(needle),
        "{script:?}: {e} (wanted {needle:?})"
    );
    assert_eq!(e.to_string(), format!("line {}: {}", e.line, e.message));
}

#[test]
fn lexical_and_syntax_errors() {
    check("keep;\n\"unterminated", 2, "unterminated quoted string");
    check("keep;\n/* open", 2, "unterminated /* comment");
    check(
        "require \"reject\";\nreject text:\nno end\n",
        2,
        "final '.'",
    );
    check("keep;\nkeep @;", 2, "unexpected character");
    check("keep", 1, "missing ';'");
    check("if true {\nkeep;\n", 1, "closing '}'");
    check("keep;\n}", 2, "unexpected '}'");
    check("if anyof (true, false {\n keep; }", 1, "',' or ')'");
    check(
        "if header [\"a\", ] \"b\" { keep; }",
        1,
        "expected a string",
    );
    check(
        "if size :over 99999999999999999999 { keep; }",
        1,
        "number too large",
    );
    check(
        "if size :over 99999999999G { keep; }",
        1,
        "number too large",
    );
    let e = mailfleet_sieve::compile(b"keep;\n\xff;", &Default::default()).unwrap_err();
    assert_eq!((e.line, e.message.as_str()), (2, "script is not UTF-8"));
}

#[test]
fn unknown_commands_tests_and_extensions() {
    check("keep;\nfrobnicate;", 2, "unknown command \"frobnicate\"");
    check("if frob { keep; }", 1, "unknown test \"frob\"");
    check(
        "require \"fileinto\";\nif mailboxexists \"x\" { keep; }",
        2,
        "unknown test",
    );
    check(
        "require [\"fileinto\", \"x-nope\"];",
        1,
        "unsupported extension \"x-nope\"",
    );
    check("require \"regex\";", 1, "regex extension is not supported");
    check(
        "require \"fileinto\";\nif header :regex \"a\" \"b\" { keep; }",
        2,
        "regex",
    );
}

#[test]
fn missing_require() {
    check("keep;\nfileinto \"x\";", 2, "require \"fileinto\"");
    check("reject \"x\";", 1, "require \"reject\"");
    check("ereject \"x\";", 1, "require \"ereject\"");
    check("vacation \"x\";", 1, "require \"vacation\"");
    check("set \"a\" \"b\";", 1, "require \"variables\"");
    check("setflag \"\\\\Seen\";", 1, "require \"imap4flags\"");
    check("keep :flags \"\\\\Seen\";", 1, "require \"imap4flags\"");
    check(
        "if envelope \"to\" \"x\" { keep; }",
        1,
        "require \"envelope\"",
    );
    check("if body \"x\" { keep; }", 1, "require \"body\"");
    check(
        "if date \"date\" \"year\" \"2000\" { keep; }",
        1,
        "require \"date\"",
    );
    check(
        "if header :count \"gt\" \"to\" \"1\" { keep; }",
        1,
        "require \"relational\"",
    );
    check(
        "if address :detail \"to\" \"x\" { keep; }",
        1,
        "require \"subaddress\"",
    );
    check(
        "if header :index 1 \"to\" \"x\" { keep; }",
        1,
        "require \"index\"",
    );
    check("redirect :copy \"a@b.test\";", 1, "require \"copy\"");
    check(
        "require \"fileinto\";\nfileinto :create \"x\";",
        2,
        "require \"mailbox\"",
    );
    check(
        "if header :comparator \"i;ascii-numeric\" \"x\" \"1\" { keep; }",
        1,
        "comparator-i;ascii-numeric",
    );
    check(
        "require \"vacation\";\nvacation :seconds 5 \"x\";",
        2,
        "vacation-seconds",
    );
    check(
        "keep;\nrequire \"fileinto\";",
        2,
        "require must come before",
    );
}

#[test]
fn wrong_arguments() {
    check("redirect;", 1, "takes 1 positional");
    check(
        "redirect [\"a@b.test\", \"c@d.test\"];",
        1,
        "must be a string",
    );
    check("redirect \"not an address\";", 1, "not a valid address");
    check("if size 5 { keep; }", 1, ":over and :under");
    check("if size :over \"5\" { keep; }", 1, "must be a number");
    check(
        "if header :is :contains \"a\" \"b\" { keep; }",
        1,
        "more than one match type",
    );
    check("if header :is :is \"a\" \"b\" { keep; }", 1, "given twice");
    check(
        "if header :comparator \"i;nope\" \"a\" \"b\" { keep; }",
        1,
        "unknown comparator",
    );
    check(
        "require \"comparator-i;ascii-numeric\";\nif header :contains :comparator \"i;ascii-numeric\" \"a\" \"1\" { keep; }",
        2,
        "supports only",
    );
    check(
        "require \"relational\";\nif header :value \"bigger\" \"a\" \"b\" { keep; }",
        2,
        "unknown relational operator",
    );
    check(
        "if header :over \"a\" \"b\" { keep; }",
        1,
        "does not take the tag :over",
    );
    check("if header :comparator { keep; }", 1, "needs an argument");
    check(
        "if header :comparator 5 \"a\" \"b\" { keep; }",
        1,
        "needs a string",
    );
    check(
        "if header \"a:b\" \"x\" { keep; }",
        1,
        "not a valid header name",
    );
    check(
        "require \"envelope\";\nif envelope \"sender\" \"x\" { keep; }",
        2,
        "unknown envelope part",
    );
    check(
        "require \"date\";\nif date \"date\" \"fortnight\" \"1\" { keep; }",
        2,
        "unknown date part",
    );
    check(
        "require \"date\";\nif date :zone \"CET\" \"date\" \"year\" \"1\" { keep; }",
        2,
        "not a time zone",
    );
    check(
        "require \"index\";\nif header :last \"a\" \"b\" { keep; }",
        2,
        ":last needs :index",
    );
    check(
        "require \"index\";\nif header :index 0 \"a\" \"b\" { keep; }",
        2,
        "counts from 1",
    );
    check(
        "require \"variables\";\nset \"1a\" \"b\";",
        2,
        "not a valid variable name",
    );
    check(
        "require \"variables\";\nset :lower :upper \"a\" \"b\";",
        2,
        "same precedence",
    );
    check(
        "require \"variables\";\nset \"a\" \"${x.y}\";",
        2,
        "namespace",
    );
    check(
        "require \"vacation\";\nvacation :days 1 :days 2 \"x\";",
        2,
        "given twice",
    );
    check(
        "require [\"vacation\", \"vacation-seconds\"];\nvacation :days 1 :seconds 2 \"x\";",
        2,
        "exclude each other",
    );
    check(
        "require \"encoded-character\";\nkeep;\nredirect \"${unicode:D800}@x.test\";",
        3,
        "not a Unicode character",
    );
    check(
        "require \"body\";\nif body :raw :text \"x\" { keep; }",
        2,
        "one transform",
    );
}

#[test]
fn control_structure() {
    check(
        "keep;\nelsif true { keep; }",
        2,
        "elsif without a preceding if",
    );
    check("else { keep; }", 1, "else without a preceding if");
    check(
        "if true { keep; }\nkeep;\nelse { keep; }",
        3,
        "else without a preceding if",
    );
    check(
        "if true { keep; } else { keep; }\nelse { keep; }",
        2,
        "without a preceding if",
    );
    check("if true;", 1, "needs a block");
    check("if { keep; }", 1, "exactly one test");
    check("if (true, false) { keep; }", 1, "exactly one test");
    check("if not (true) { keep; }", 1, "not needs exactly one test");
    check("if anyof true { keep; }", 1, "parenthesised list");
    check("stop { keep; }", 1, "does not take a block");
    check("keep true;", 1, "does not take a test");
    check(
        "if true { require \"fileinto\"; }",
        1,
        "require must come before",
    );
    check("if exists \"a\" true { keep; }", 1, "does not take a test");
}
