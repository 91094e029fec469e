//! Security regressions against the real services over sockets (issue 16):
//! each test is an attack a mail server on the internet must withstand.

use std::process::Command;

use crate::harness::{Blobs, Stack, Svc, TlsSetup, env_refs, run};

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "secret-pw";

/// One login guard for every protocol: failed logins over IMAP, POP3 and
/// SMTP AUTH count together in mailstore, and once the (account, address)
/// pair reached the limit the right password is refused on all three, from
/// that address, while another address still gets in. A name with blanks
/// around it and another case counts as the same account.
#[test]
fn failed_logins_over_imap_pop3_and_smtp_lock_the_pair_on_all_three() {
    let tls = TlsSetup::new();
    let env = tls.env(&[
        ("MAILFLEET_AUTH_MAX_FAILURES", "5".to_owned()),
        ("MAILFLEET_AUTH_FAILURE_DELAY", "10ms".to_owned()),
        ("MAILFLEET_AUTH_LOCKOUT", "10m".to_owned()),
    ]);
    let env_ref = env_refs(&env);
    let mut stack = Stack::start(Blobs::Local, &[ALICE], &env_ref);
    stack.spawn(Svc::ImapFrontend);
    stack.spawn(Svc::Pop3Frontend);
    stack.wait_ready(Svc::ImapFrontend);
    stack.wait_ready(Svc::Pop3Frontend);
    let metrics = stack.http_get(Svc::Mailstore, "/metrics");
    assert!(
        metrics.contains("mailfleet_store_auth_lockouts_total{status=\"pair\"} 0"),
        "the lockout counter is there from start-up:\n{metrics}"
    );

    // Each step prints one line: what the server answered, reduced to a word.
    let script = format!(
        r#"
import imaplib, poplib, smtplib, ssl, socket, sys
IMAP, POP3, SMTPS = {imap}, {pop3}, {smtps}
USER, PASS = {user:?}, {pass:?}
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE

def imap(user, pw):
    c = imaplib.IMAP4("127.0.0.1", IMAP)
    try:
        c.login(user, pw); c.logout(); return "ok"
    except imaplib.IMAP4.error as e:
        for code, word in (("[UNAVAILABLE]", "unavailable"), ("[AUTHENTICATIONFAILED]", "failed")):
            if code in str(e):
                return word
        return repr(e)

def pop3(user, pw):
    c = poplib.POP3("127.0.0.1", POP3)
    try:
        c.user(user); c.pass_(pw); c.quit(); return "ok"
    except poplib.error_proto as e:
        for code, word in ((b"[SYS/TEMP]", "temp"), (b"[AUTH]", "failed")):
            if code in e.args[0]:
                return word
        return repr(e)

def smtp(user, pw, source="127.0.0.1"):
    c = smtplib.SMTP_SSL("127.0.0.1", SMTPS, context=ctx, source_address=(source, 0))
    # One AUTH PLAIN (smtplib's login() would try LOGIN after it too).
    c.ehlo(); c.user, c.password = user, pw
    try:
        c.auth("PLAIN", c.auth_plain); c.quit(); return "ok"
    except smtplib.SMTPAuthenticationError as e:
        return {{454: "locked", 535: "failed"}}.get(e.smtp_code, repr(e))

steps = [
    ("imap right", lambda: imap(USER, PASS)),
    ("imap wrong", lambda: imap(USER, "guess1")),
    # Quoted: a name with blanks around it, in another case.
    ("imap wrong", lambda: imap('" ' + USER.upper() + ' "', "guess2")),
    ("pop3 wrong", lambda: pop3(USER, "guess3")),
    ("pop3 wrong", lambda: pop3(USER, "guess4")),
    ("smtp wrong", lambda: smtp(USER, "guess5")),
    ("imap right", lambda: imap(USER, PASS)),
    ("pop3 right", lambda: pop3(USER, PASS)),
    ("smtp right", lambda: smtp(USER, PASS)),
    ("smtp right elsewhere", lambda: smtp(USER, PASS, "127.0.0.2")),
]
for name, step in steps:
    print(name, step())
"#,
        imap = tls.port("IMAP"),
        pop3 = tls.port("POP3"),
        smtps = tls.port("SUBMISSIONS"),
        user = ALICE,
        pass = PASSWORD,
    );
    let out = run(Command::new("python3").arg("-c").arg(&script));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {}\n{stdout}\nmailstore log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        stack.log(Svc::Mailstore)
    );
    let answers: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        answers,
        [
            "imap right ok",
            "imap wrong failed",
            "imap wrong failed",
            "pop3 wrong failed",
            "pop3 wrong failed",
            "smtp wrong failed",
            // Five failures from 127.0.0.1: locked there on all three...
            "imap right unavailable",
            "pop3 right temp",
            "smtp right locked",
            // ...but not the account itself.
            "smtp right elsewhere ok",
        ]
    );
    let metrics = stack.http_get(Svc::Mailstore, "/metrics");
    assert!(
        metrics.contains("mailfleet_store_auth_lockouts_total{status=\"pair\"} 1"),
        "{metrics}"
    );
    assert!(
        stack
            .log(Svc::Mailstore)
            .contains("Login locked out after too many failures"),
        "a log line says so"
    );
}

/// Waits until `addr`'s INBOX holds `n` messages.
fn wait_for_messages(stack: &Stack, addr: &str, n: usize) -> Vec<(u32, u64, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let list = stack.messages(addr);
        if list.len() >= n {
            return list;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} never got {n} messages: {list:?}\nworker log:\n{}",
            stack.log(Svc::DeliveryWorker)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Backscatter (issue 16). A full mailbox is refused at RCPT on port 25
/// (`452 4.2.2`), by its message quota and by its byte quota for the SIZE
/// announced, instead of being accepted and bounced to a sender that may
/// be forged. And `NOTIFY=SUCCESS RET=FULL` from anyone on port 25 gets a
/// success report with the headers only, never a copy of the whole message.
#[test]
fn mx_refuses_full_mailboxes_at_rcpt_and_success_reports_carry_headers_only() {
    let stack = Stack::start(Blobs::Local, &[ALICE, "bob@example.test"], &[]);
    stack.cli_ok(&[
        "account",
        "add",
        "full@example.test",
        "--password",
        PASSWORD,
        "--quota-messages",
        "1",
    ]);
    stack.cli_ok(&[
        "account",
        "add",
        "tiny@example.test",
        "--password",
        PASSWORD,
        "--quota",
        "2000",
    ]);
    let script = |body: &str| {
        format!(
            "import smtplib\ns = smtplib.SMTP('127.0.0.1', {port})\ns.ehlo('client.example')\n{body}\ns.quit()\n",
            port = stack.smtp_port
        )
    };
    let python = |code: &str| {
        let out = run(Command::new("python3").arg("-c").arg(code));
        assert!(
            out.status.success(),
            "client failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The one message full@ may hold.
    python(&script(
        "s.sendmail('x@remote.example', ['full@example.test'], 'Subject: one\\r\\n\\r\\nfirst\\r\\n')",
    ));
    wait_for_messages(&stack, "full@example.test", 1);

    let answers = python(&script(
        r#"
s.mail('x@remote.example')
print('full', *s.rcpt('full@example.test'))
print('bob', s.rcpt('bob@example.test')[0])
s.rset()
s.mail('x@remote.example', ['SIZE=5000'])
print('tiny-5000', *s.rcpt('tiny@example.test'))
s.rset()
s.mail('x@remote.example', ['SIZE=500'])
print('tiny-500', s.rcpt('tiny@example.test')[0])
s.rset()
s.mail('x@remote.example')
print('tiny-unknown', s.rcpt('tiny@example.test')[0])
s.rset()
"#,
    ));
    let lines: Vec<&str> = answers.lines().collect();
    assert!(lines[0].starts_with("full 452 b'4.2.2"), "{answers}");
    assert_eq!(lines[1], "bob 250", "{answers}");
    assert!(lines[2].starts_with("tiny-5000 452 b'4.2.2"), "{answers}");
    assert_eq!(lines[3], "tiny-500 250", "{answers}");
    assert_eq!(lines[4], "tiny-unknown 250", "{answers}");

    // A success report asked for from port 25, without authentication.
    python(&script(
        r#"s.sendmail('alice@example.test', ['bob@example.test'],
    'From: someone@remote.example\r\nSubject: the plans\r\n\r\nTOP-SECRET-BODY\r\n',
    mail_options=['RET=FULL', 'ENVID=e1'], rcpt_options=['NOTIFY=SUCCESS'])"#,
    ));
    wait_for_messages(&stack, "bob@example.test", 1);
    let reports = wait_for_messages(&stack, ALICE, 1);
    let dsn = stack.cli_ok(&["message", "get", ALICE, &reports[0].0.to_string()]);
    let dsn = String::from_utf8_lossy(&dsn);
    assert!(dsn.contains("Action: delivered"), "{dsn}");
    assert!(
        dsn.contains("Subject: the plans"),
        "the headers come back: {dsn}"
    );
    assert!(
        !dsn.contains("TOP-SECRET-BODY"),
        "a success report never returns the body: {dsn}"
    );
}
