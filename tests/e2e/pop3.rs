//! POP3 end to end: messages sent over SMTP, read back through pop3-frontend
//! with Python's poplib (plain, STLS and implicit TLS), a raw socket for bad
//! input and the lock, and fetchmail from Debian when it is installed.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Blobs, Stack, Svc, TlsSetup, env_refs, run};

const ALICE: &str = "alice@example.test";
const PASSWORD: &str = "secret-pw";

struct Pop3Stack {
    stack: Stack,
    pop3: u16,
    pop3s: u16,
    cert: std::path::PathBuf,
    _tls: TlsSetup,
}

fn start() -> Pop3Stack {
    let tls = TlsSetup::new();
    let (pop3, pop3s) = (tls.port("POP3"), tls.port("POP3S"));
    let cert = tls.cert.clone();
    // A short lease so the crash test does not wait a minute.
    let env = tls.env(&[("MAILFLEET_POP3_LEASE_TTL", "5s".to_owned())]);
    let env_ref = env_refs(&env);
    let mut stack = Stack::start(Blobs::Local, &[ALICE], &env_ref);
    stack.spawn(Svc::Pop3Frontend);
    stack.wait_ready(Svc::Pop3Frontend);
    Pop3Stack {
        stack,
        pop3,
        pop3s,
        cert,
        _tls: tls,
    }
}

/// Runs a Python snippet with `poplib`, `json`, `ssl`, `base64` imported
/// and PORT, PORTS, CERT, USER, PASS defined; returns its stdout.
fn py(s: &Pop3Stack, code: &str) -> String {
    let prelude = format!(
        "import poplib, json, ssl, base64, socket, sys\n\
         PORT = {}\nPORTS = {}\nCERT = {:?}\nUSER = {:?}\nPASS = {:?}\n",
        s.pop3,
        s.pop3s,
        s.cert.display().to_string(),
        ALICE,
        PASSWORD
    );
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(format!("{prelude}{code}")));
    assert!(
        out.status.success(),
        "python failed: {}\n{}\npop3-frontend log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        code,
        s.stack.log(Svc::Pop3Frontend)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn send(stack: &Stack, messages: &[Vec<u8>]) {
    let before = stack.messages(ALICE).len();
    // Through files: a large message does not fit on a command line.
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let path = dir.path().join(format!("{i}.eml"));
        std::fs::write(&path, m).unwrap();
        paths.push(path.display().to_string());
    }
    let code = format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {})\n\
         for f in {:?}:\n    s.sendmail('sender@example.org', ['{ALICE}'], open(f, 'rb').read())\n\
         s.quit()\n",
        stack.smtp_port, paths
    );
    let out = run(Command::new("python3").arg("-c").arg(code));
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Generous: a 50 MB message goes through debug builds.
    let deadline = Instant::now() + Duration::from_secs(180);
    while stack.messages(ALICE).len() < before + messages.len() {
        assert!(Instant::now() < deadline, "messages were not delivered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A raw POP3 connection for bad input and the lock tests.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(raw.line().starts_with("+OK"));
        raw
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l
    }

    fn cmd(&mut self, c: &str) -> String {
        self.writer
            .write_all(format!("{c}\r\n").as_bytes())
            .unwrap();
        self.line()
    }

    /// The lines of a multi-line response, until the terminating ".".
    fn multi(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            if l == ".\r\n" || l.is_empty() {
                return lines;
            }
            lines.push(l);
        }
    }

    fn login(port: u16) -> (Raw, String) {
        let mut raw = Raw::connect(port);
        assert!(raw.cmd(&format!("USER {ALICE}")).starts_with("+OK"));
        let reply = raw.cmd(&format!("PASS {PASSWORD}"));
        (raw, reply)
    }
}

fn psql(stack: &Stack, sql: &str) -> String {
    let out = run(Command::new("psql").args([
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-At",
        "-d",
        &stack.db,
        "-c",
        sql,
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn test_messages() -> Vec<Vec<u8>> {
    let mut dotted = b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: dots\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        .to_vec();
    dotted.extend_from_slice(b".leading dot\r\n..two dots\r\n.\r\nmiddle . dot\r\n");
    dotted.extend_from_slice("8-bit: caf\u{e9} \u{2603} na\u{ef}ve\r\n".as_bytes());
    dotted.extend_from_slice(b"raw \xff\xfe bytes\r\nlast line\r\n");
    let mut lines =
        b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: lines\r\n\r\n".to_vec();
    for i in 1..=10 {
        lines.extend_from_slice(format!("line {i}\r\n").as_bytes());
    }
    let mut big = b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: big\r\n\r\n".to_vec();
    for i in 0..20_000 {
        big.extend_from_slice(
            format!(".{i:06} the quick brown fox jumps over the lazy dog\r\n").as_bytes(),
        );
    }
    vec![dotted, lines, big]
}

/// Everything over one stack: the lock with a killed frontend last.
#[test]
fn pop3() {
    let s = start();
    let stack = &s.stack;
    send(stack, &test_messages());
    let stored: Vec<Vec<u8>> = stack
        .messages(ALICE)
        .iter()
        .map(|(uid, _, _)| stack.cli_ok(&["message", "get", ALICE, &uid.to_string()]))
        .collect();
    assert_eq!(stored.len(), 3);

    // CAPA before login on loopback offers USER, SASL PLAIN and STLS.
    let capa = py(
        &s,
        "p = poplib.POP3('127.0.0.1', PORT)\nprint(json.dumps({k: v for k, v in p.capa().items()}))\np.quit()\n",
    );
    let capa: serde_json::Value = serde_json::from_str(&capa).unwrap();
    for key in [
        "TOP",
        "UIDL",
        "USER",
        "SASL",
        "STLS",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "EXPIRE",
        "IMPLEMENTATION",
    ] {
        assert!(capa.get(key).is_some(), "CAPA lacks {key}: {capa}");
    }
    assert_eq!(capa["SASL"], serde_json::json!(["PLAIN"]));

    // Byte-exact RETR, LIST sizes equal to what RETR sends, TOP line counts.
    let out = py(
        &s,
        "p = poplib.POP3('127.0.0.1', PORT)\np.user(USER)\np.pass_(PASS)\n\
         n, size = p.stat()\n\
         sizes = [int(l.split()[1]) for l in p.list()[1]]\n\
         uidl = [l.decode() for l in p.uidl()[1]]\n\
         bodies = []\n\
         for i in range(1, n + 1):\n    resp, lines, octets = p.retr(i)\n    bodies.append(base64.b64encode(b''.join(l + b'\\r\\n' for l in lines)).decode())\n\
         tops = {k: len(p.top(2, k)[1]) for k in (0, 1, 3, 100)}\n\
         print(json.dumps({'n': n, 'size': size, 'sizes': sizes, 'uidl': uidl, 'bodies': bodies, 'tops': tops}))\np.quit()\n",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["n"], 3);
    let sizes: Vec<u64> = serde_json::from_value(v["sizes"].clone()).unwrap();
    assert_eq!(
        sizes,
        stored.iter().map(|m| m.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(v["size"], sizes.iter().sum::<u64>());
    for (i, b) in v["bodies"].as_array().unwrap().iter().enumerate() {
        let got = base64_decode(b.as_str().unwrap());
        assert!(
            got == stored[i],
            "RETR {} differs from the stored message",
            i + 1
        );
    }
    // TOP 2 k: message 2's header (trace fields included) and the blank
    // line, then at most k body lines. (UIDs follow delivery order, which a
    // batch may shuffle, so the expectation comes from the stored bytes.)
    let text = String::from_utf8_lossy(&stored[1]);
    let all: Vec<&str> = text.split_terminator("\r\n").collect();
    let header_lines = all.iter().position(|l| l.is_empty()).unwrap() + 1;
    let body_lines = all.len() - header_lines;
    for k in [0, 1, 3, 100] {
        assert_eq!(
            v["tops"][k.to_string()],
            header_lines + k.min(body_lines),
            "TOP 2 {k}"
        );
    }
    let uidl_before: Vec<String> = serde_json::from_value(v["uidl"].clone()).unwrap();
    // Retrieved messages are \Seen now (UPDATE after QUIT), none deleted.
    assert_eq!(
        psql(
            stack,
            "SELECT count(*) FROM messages WHERE '\\Seen' = ANY(flags) AND expunged_modseq IS NULL"
        )
        .trim(),
        "3"
    );

    // SASL PLAIN with an initial response and with a challenge.
    py(
        &s,
        "p = poplib.POP3('127.0.0.1', PORT)\n\
         tok = base64.b64encode(b'\\0' + USER.encode() + b'\\0' + PASS.encode()).decode()\n\
         assert p._shortcmd('AUTH PLAIN ' + tok).startswith(b'+OK')\nassert p.stat()[0] == 3\np.quit()\n\
         p = poplib.POP3('127.0.0.1', PORT)\n\
         assert p._shortcmd('AUTH PLAIN').startswith(b'+')\n\
         assert p._shortcmd(tok).startswith(b'+OK')\np.quit()\n\
         p = poplib.POP3('127.0.0.1', PORT)\n\
         try:\n    p._shortcmd('AUTH PLAIN ' + base64.b64encode(b'\\0' + USER.encode() + b'\\0wrong').decode())\n    sys.exit('wrong password accepted')\n\
         except poplib.error_proto as e:\n    assert b'[AUTH]' in e.args[0], e\n\
         p.quit()\n",
    );

    // [IN-USE]: a second session cannot log in while the first holds the
    // lock (after waiting a few seconds for it).
    let (mut first, reply) = Raw::login(s.pop3);
    assert!(reply.starts_with("+OK"), "{reply}");
    let (mut second, reply) = Raw::login(s.pop3);
    assert!(reply.starts_with("-ERR [IN-USE]"), "{reply}");
    // The refused session goes on in AUTHORIZATION state.
    assert!(second.cmd("STAT").starts_with("-ERR"));
    assert!(first.cmd("QUIT").starts_with("+OK"));
    assert!(second.cmd(&format!("USER {ALICE}")).starts_with("+OK"));
    assert!(second.cmd(&format!("PASS {PASSWORD}")).starts_with("+OK"));

    // Bad input: -ERR each time, and the session goes on.
    for bad in [
        "FROB",
        "RETR",
        "RETR 99",
        "RETR 0",
        "RETR -1",
        "TOP 1",
        "TOP 1 x",
        "LIST 4",
        "DELE 1 2",
        "STLS",
        "USER again",
        "APOP alice 0123456789abcdef",
        &"X".repeat(5000),
    ] {
        let r = second.cmd(bad);
        assert!(r.starts_with("-ERR"), "{bad:.20} -> {r}");
    }
    assert!(second.cmd("DELE 1").starts_with("+OK"));
    assert!(second.cmd("DELE 1").starts_with("-ERR"), "deleting twice");
    assert!(
        second.cmd("RETR 1").starts_with("-ERR"),
        "a deleted message"
    );
    assert!(second.cmd("STAT").starts_with("+OK 2 "));
    // Pipelined commands are answered in order.
    second
        .writer
        .write_all(b"NOOP\r\nLIST 2\r\nUIDL 3\r\n")
        .unwrap();
    assert_eq!(second.line(), "+OK\r\n");
    assert!(second.line().starts_with(&format!("+OK 2 {}", sizes[1])));
    assert_eq!(
        second.line(),
        format!("+OK 3 {}\r\n", uidl_before[2].split(' ').nth(1).unwrap())
    );
    // A dropped connection deletes nothing.
    drop(second);
    let (mut third, reply) = login_when_free(s.pop3);
    assert!(reply.starts_with("+OK maildrop has 3 messages"), "{reply}");
    // Commands in the wrong state and bad input before login.
    let mut fresh = Raw::connect(s.pop3);
    for bad in ["STAT", "RETR 1", "PASS x", "NOOP", "UIDL"] {
        assert!(fresh.cmd(bad).starts_with("-ERR"), "{bad}");
    }
    assert!(fresh.cmd("QUIT").starts_with("+OK"));

    // DELE, RSET, DELE, QUIT: message 1 is expunged for real.
    assert!(third.cmd("DELE 1").starts_with("+OK"));
    assert!(third.cmd("RSET").starts_with("+OK maildrop has 3"));
    assert!(third.cmd("DELE 2").starts_with("+OK"));
    assert!(third.cmd("UIDL").starts_with("+OK"));
    let listing = third.multi();
    assert_eq!(listing.len(), 2);
    assert!(third.cmd("QUIT").starts_with("+OK"));
    assert_eq!(stack.messages(ALICE).len(), 2, "IMAP-visible expunge");
    // UIDL is stable across sessions and deletions.
    let (mut fourth, reply) = login_when_free(s.pop3);
    assert!(reply.starts_with("+OK maildrop has 2 messages"), "{reply}");
    assert!(fourth.cmd("UIDL").starts_with("+OK"));
    let after: Vec<String> = fourth
        .multi()
        .iter()
        .map(|l| l.trim_end().split(' ').nth(1).unwrap().to_owned())
        .collect();
    let expected: Vec<String> = [0, 2]
        .iter()
        .map(|&i| uidl_before[i].split(' ').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(after, expected);
    assert!(fourth.cmd("QUIT").starts_with("+OK"));

    // STLS on the plain port and implicit TLS on POP3S, verified against
    // the self-signed certificate.
    let out = py(
        &s,
        "ctx = ssl.create_default_context(cafile=CERT)\n\
         p = poplib.POP3('localhost', PORT)\np.stls(ctx)\n\
         caps = p.capa()\nassert 'STLS' not in caps and 'USER' in caps, caps\n\
         p.user(USER)\np.pass_(PASS)\na = p.stat()[0]\np.quit()\n\
         q = poplib.POP3_SSL('localhost', PORTS, context=ctx)\nq.user(USER)\nq.pass_(PASS)\nb = q.stat()[0]\n\
         body = b''.join(l + b'\\r\\n' for l in q.retr(1)[1])\nq.quit()\n\
         print(json.dumps([a, b, base64.b64encode(body).decode()]))\n",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0], 2);
    assert_eq!(v[1], 2);
    assert!(base64_decode(v[2].as_str().unwrap()) == stored[0]);

    fetchmail(&s);

    // A killed frontend strands no lock: the lease runs out (5 s here, no
    // later than 5 s after the kill), and a login meanwhile waits for it
    // (up to 5 s from its start, which is after the kill).
    let (_held, reply) = login_when_free(s.pop3);
    assert!(reply.starts_with("+OK"), "{reply}");
    let mut stack = s.stack;
    stack.kill(Svc::Pop3Frontend);
    stack.spawn(Svc::Pop3Frontend);
    stack.wait_ready(Svc::Pop3Frontend);
    let (mut again, reply) = Raw::login(s.pop3);
    assert!(reply.starts_with("+OK"), "{reply}");
    assert!(again.cmd("QUIT").starts_with("+OK"));
}

/// (VmRSS, VmHWM) of a process in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line[key.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A message of about `size` octets: headers, then numbered text lines,
/// every seventh starting with "." so RETR has to byte-stuff.
fn sized_message(subject: &str, size: usize) -> Vec<u8> {
    let mut m =
        format!("From: a@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\n").into_bytes();
    let mut i = 0u64;
    while m.len() < size {
        let dot = if i.is_multiple_of(7) { "." } else { "" };
        m.extend_from_slice(
            format!("{dot}{i:08} the quick brown fox jumps over the lazy dog, again and again\r\n")
                .as_bytes(),
        );
        i += 1;
    }
    m
}

/// RETR `n` on a logged-in connection: the octets received (dot-stuffing
/// undone) and the first line.
fn retr(c: &mut Raw, n: usize) -> (String, u64, String) {
    let reply = c.cmd(&format!("RETR {n}"));
    let mut octets = 0;
    let mut first = None;
    let mut l = Vec::new();
    loop {
        l.clear();
        let read = c.reader.read_until(b'\n', &mut l).unwrap();
        assert!(read > 0, "connection closed inside RETR");
        if l == b".\r\n" {
            return (reply, octets, first.unwrap_or_default());
        }
        let line = l.strip_prefix(b".").unwrap_or(&l);
        octets += line.len() as u64;
        first.get_or_insert_with(|| String::from_utf8_lossy(line).into_owned());
    }
}

/// The `mailfleet` binary's pop3-frontend, with the allocator it ships
/// (mimalloc), RETRs a 50 MB message after sessions in parallel have
/// retrieved others (so the blocking pool that reads bodies has several
/// threads, as under load): the body streams from object storage to the
/// client in bounded chunks, so the process's peak RSS grows by less than
/// 2 MiB over what it had before, and every octet arrives, Return-Path line
/// first. (Chunks allocated on the pool's threads and freed on the
/// session's kept freed memory in every pool thread's heap.)
#[test]
fn a_50_mb_retr_keeps_pop3_frontend_memory_flat() {
    const PARALLEL: usize = 8;
    let s = start();
    let others: Vec<String> = (1..=PARALLEL)
        .map(|i| format!("bob{i}@example.test"))
        .collect();
    for o in &others {
        s.stack
            .cli_ok(&["account", "add", o, "--password", PASSWORD]);
    }
    let warm = sized_message("warm", 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warm.eml");
    std::fs::write(&path, &warm).unwrap();
    let out = run(Command::new("python3").arg("-c").arg(format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {})\n\
         s.sendmail('sender@example.org', {others:?}, open({:?}, 'rb').read())\ns.quit()\n",
        s.stack.smtp_port,
        path.display().to_string()
    )));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let big = sized_message("big", 50 * 1000 * 1000);
    send(&s.stack, &[warm, big.clone()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while others.iter().any(|o| s.stack.messages(o).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the warm-up messages were not delivered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // One login each first, one at a time: a first login verifies the full
    // argon2 hash, slow in a debug build, and eight at once on a loaded
    // machine outlast the client's read timeout.
    for o in &others {
        let mut c = Raw::connect(s.pop3);
        assert!(c.cmd(&format!("USER {o}")).starts_with("+OK"));
        let reply = c.cmd(&format!("PASS {PASSWORD}"));
        assert!(reply.starts_with("+OK"), "{reply}");
        assert!(c.cmd("QUIT").starts_with("+OK"));
    }
    // Sessions in parallel, each retrieving a 1 MB message a few times.
    let port = s.pop3;
    let sessions: Vec<_> = others
        .iter()
        .map(|o| {
            let o = o.clone();
            std::thread::spawn(move || {
                let mut c = Raw::connect(port);
                assert!(c.cmd(&format!("USER {o}")).starts_with("+OK"));
                let reply = c.cmd(&format!("PASS {PASSWORD}"));
                assert!(reply.starts_with("+OK"), "{reply}");
                for _ in 0..3 {
                    let (reply, octets, _) = retr(&mut c, 1);
                    assert!(reply.starts_with("+OK") && octets > 1024 * 1024, "{reply}");
                }
                assert!(c.cmd("QUIT").starts_with("+OK"));
            })
        })
        .collect();
    for t in sessions {
        t.join().unwrap();
    }
    let pid = s.stack.pid(Svc::Pop3Frontend).unwrap();
    let (mut c, reply) = Raw::login(s.pop3);
    assert!(reply.starts_with("+OK"), "{reply}");
    c.writer.write_all(b"LIST\r\n").unwrap();
    assert!(c.line().starts_with("+OK"));
    let sizes: Vec<u64> = c
        .multi()
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    // The big one (stored with trace headers added) is the larger.
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    let n = if sizes[0] > sizes[1] { 1 } else { 2 };
    let big_size = sizes[n - 1];
    assert!(big_size > big.len() as u64, "{sizes:?}");
    // A first RETR warms the code paths and buffers every RETR uses.
    let (reply, octets, _) = retr(&mut c, 3 - n);
    assert!(reply.starts_with("+OK"), "{reply}");
    assert_eq!(octets, sizes[2 - n]);

    assert!(
        std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok(),
        "cannot reset the peak RSS of pop3-frontend"
    );
    let (before, _) = memory_kib(pid);
    let (reply, octets, first) = retr(&mut c, n);
    let (_, peak) = memory_kib(pid);
    eprintln!("pop3-frontend RSS {before} KiB before the 50 MB RETR, peak {peak} KiB during it");
    assert_eq!(reply, format!("+OK {big_size} octets\r\n"));
    assert_eq!(octets, big_size);
    assert_eq!(first, "Return-Path: <sender@example.org>\r\n");
    assert!(
        peak.saturating_sub(before) < 2048,
        "pop3-frontend's RSS grew from {before} KiB to a peak of {peak} KiB during a 50 MB RETR"
    );
    assert!(c.cmd("QUIT").starts_with("+OK"));
}

/// Logs in, retrying while a lock released a moment ago is still held.
fn login_when_free(port: u16) -> (Raw, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (raw, reply) = Raw::login(port);
        if !reply.starts_with("-ERR [IN-USE]") || Instant::now() > deadline {
            return (raw, reply);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// fetchmail (Debian) retrieving with keep, then with delete, into an MDA
/// that writes each message to a file.
fn fetchmail(s: &Pop3Stack) {
    if run(Command::new("sh").args(["-c", "command -v fetchmail"]))
        .status
        .code()
        != Some(0)
    {
        if std::env::var_os("MAILFLEET_REQUIRE_FETCHMAIL").is_some() {
            panic!("fetchmail is not installed (apt-get install fetchmail)");
        }
        eprintln!("fetchmail is not installed; skipping the fetchmail check");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let rc = dir.path().join("fetchmailrc");
    let write_rc = |keep: &str| {
        std::fs::write(
            &rc,
            format!(
                "poll 127.0.0.1 service {} protocol pop3 uidl\n  user \"{ALICE}\" password \"{PASSWORD}\"\n  \
                 ssl sslcertck sslcertfile \"{}\" sslcommonname localhost\n  {keep}\n  \
                 mda \"/bin/sh -c 'cat > $(mktemp {}/m.XXXXXX)'\"\n",
                s.pop3s,
                s.cert.display(),
                out_dir.display()
            ),
        )
        .unwrap();
        let mut perms = std::fs::metadata(&rc).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        std::fs::set_permissions(&rc, perms).unwrap();
    };
    let fetch = |home: &Path| {
        run(Command::new("fetchmail")
            .args(["-f"])
            .arg(&rc)
            .args(["--nodetach", "--nosyslog", "-v", "-a", "--idfile"])
            .arg(home.join("fetchids"))
            .env("HOME", home))
    };
    write_rc("keep");
    let out = fetch(dir.path());
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fetchmail keep failed:\n{log}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 2, "{log}");
    assert_eq!(
        s.stack.messages(ALICE).len(),
        2,
        "keep leaves mail on the server"
    );
    write_rc("nokeep");
    let out = fetch(dir.path());
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fetchmail nokeep failed:\n{log}");
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 4, "{log}");
    assert!(s.stack.messages(ALICE).is_empty(), "nokeep deletes: {log}");
    // Put two messages back for the tests that follow.
    send(&s.stack, &test_messages()[..2]);
}

fn base64_decode(s: &str) -> Vec<u8> {
    pop3_frontend::proto::base64_decode(s).expect("valid base64")
}
