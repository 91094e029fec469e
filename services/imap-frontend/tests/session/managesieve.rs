//! ManageSieve (RFC 5804) on imap-frontend's sieve listener: Debian's
//! `sieve-connect` as the real client (STARTTLS, AUTHENTICATE PLAIN,
//! upload, list, activate, download), and raw sockets for the errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use base64::Engine;

use crate::support::*;

/// A blocking ManageSieve client on a raw socket.
struct Sieve {
    reader: BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Sieve {
    fn connect(port: u16) -> (Sieve, Vec<String>) {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut s = Sieve {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let greeting = s.response();
        (s, greeting)
    }

    /// Lines up to and including the status line (OK, NO or BYE); a
    /// literal's data is one entry.
    fn response(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            self.reader.read_line(&mut l).unwrap();
            assert!(!l.is_empty(), "connection closed; got {lines:?}");
            if let Some(n) = l
                .trim_end()
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .and_then(|n| n.parse::<usize>().ok())
            {
                let mut data = vec![0; n];
                self.reader.read_exact(&mut data).unwrap();
                lines.push(String::from_utf8(data).unwrap());
                continue;
            }
            let done = ["OK", "NO", "BYE"]
                .iter()
                .any(|s| l == format!("{s}\r\n") || l.starts_with(&format!("{s} ")));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    fn cmd(&mut self, line: &[u8]) -> Vec<String> {
        self.writer.write_all(line).unwrap();
        self.response()
    }

    fn status(&mut self, line: &[u8]) -> String {
        self.cmd(line).pop().unwrap()
    }

    fn login(&mut self) {
        let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASS}"));
        let reply = self.status(format!("AUTHENTICATE \"PLAIN\" \"{plain}\"\r\n").as_bytes());
        assert!(reply.starts_with("OK"), "{reply}");
    }

    /// Whether the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok()
    }
}

fn sieve_connect_installed() -> bool {
    let found = std::process::Command::new("sieve-connect")
        .arg("--help")
        .output()
        .is_ok();
    if !found {
        // ./test and CI install it; there a missing client is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "sieve-connect is not installed (apt-get install sieve-connect)"
        );
        eprintln!("sieve-connect not installed (apt-get install sieve-connect); skipping");
    }
    found
}

/// Runs sieve-connect against `port` with the test user (password on
/// stdin); returns its stdout, failing the test when it fails.
fn sieve_connect(port: u16, args: &[&str]) -> String {
    let mut child = std::process::Command::new("sieve-connect")
        .args([
            "--server",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--user",
            USER,
            "--passwordfd",
            "0",
            "--notlsverify",
            "--noclearauth",
        ])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASS}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sieve-connect {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const SCRIPT: &str = "require [\"fileinto\", \"imap4flags\"];\r\n\
if header :contains \"subject\" \"report\" {\r\n  addflag \"\\\\Flagged\";\r\n  fileinto \"Reports\";\r\n}\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sieve_connect_uploads_lists_activates_and_downloads() {
    if !sieve_connect_installed() {
        return;
    }
    let env = start().await;
    let port = env.sieve;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("rules.sieve");
        std::fs::write(&local, SCRIPT).unwrap();
        let local = local.display().to_string();
        // sieve-connect insists on STARTTLS before it sends the password.
        sieve_connect(
            port,
            &["--upload", "--localsieve", &local, "--remotesieve", "rules"],
        );
        let listed = sieve_connect(port, &["--list"]);
        assert!(listed.contains("rules"), "{listed}");
        sieve_connect(port, &["--activate", "--remotesieve", "rules"]);
        let back = dir.path().join("back.sieve");
        sieve_connect(
            port,
            &[
                "--download",
                "--remotesieve",
                "rules",
                "--localsieve",
                &back.display().to_string(),
            ],
        );
        assert_eq!(std::fs::read_to_string(&back).unwrap(), SCRIPT);

        // The server agrees: one script, active.
        let (mut s, _) = Sieve::connect(port);
        s.login();
        let list = s.cmd(b"LISTSCRIPTS\r\n");
        assert_eq!(list, vec!["\"rules\" ACTIVE\r\n", "OK\r\n"]);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managesieve_refuses_bad_input_clearly() {
    let env = start().await;
    let port = env.sieve;
    tokio::task::spawn_blocking(move || {
        let (mut s, greeting) = Sieve::connect(port);
        let caps = greeting.join("");
        for cap in [
            "\"IMPLEMENTATION\" \"mailfleet\"",
            "\"SASL\" \"PLAIN\"",
            "\"STARTTLS\"",
            "\"VERSION\" \"1.0\"",
            "\"MAXREDIRECTS\"",
        ] {
            assert!(caps.contains(cap), "{cap} missing from {caps}");
        }
        let sieve = greeting
            .iter()
            .find(|l| l.starts_with("\"SIEVE\""))
            .unwrap();
        assert!(sieve.contains("fileinto"), "{sieve}");

        // Commands before authentication are refused.
        for cmd in [
            &b"LISTSCRIPTS\r\n"[..],
            b"GETSCRIPT \"x\"\r\n",
            b"PUTSCRIPT \"x\" {5+}\r\nkeep;\r\n",
        ] {
            let reply = s.status(cmd);
            assert!(reply.starts_with("NO"), "{reply}");
        }
        // A wrong password is NO, and the session goes on.
        let bad = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0wrong"));
        let reply = s.status(format!("AUTHENTICATE \"PLAIN\" \"{bad}\"\r\n").as_bytes());
        assert!(reply.starts_with("NO"), "{reply}");
        // Unknown commands and malformed lines are NO too.
        assert!(s.status(b"FROBNICATE\r\n").starts_with("NO"));
        assert!(s.status(b"NOOP \"a\x01\r\n").starts_with("NO"));
        assert_eq!(s.status(b"NOOP \"t1\"\r\n"), "OK (TAG \"t1\") \"Done\"\r\n");

        // The SASL exchange without an initial response.
        s.writer.write_all(b"AUTHENTICATE \"PLAIN\"\r\n").unwrap();
        let mut challenge = String::new();
        s.reader.read_line(&mut challenge).unwrap();
        assert_eq!(challenge, "\"\"\r\n");
        let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{USER}\0{PASS}"));
        let reply = s.status(format!("{{{}+}}\r\n{plain}\r\n", plain.len()).as_bytes());
        assert!(reply.starts_with("OK"), "{reply}");

        // A script that does not compile: NO with its line; nothing stored.
        let bad = "keep;\r\nif true {\r\n  frobnicate;\r\n}\r\n";
        let reply =
            s.status(format!("PUTSCRIPT \"bad\" {{{}+}}\r\n{bad}\r\n", bad.len()).as_bytes());
        assert!(reply.starts_with("NO \"line 3:"), "{reply}");
        let reply = s.status(format!("CHECKSCRIPT {{{}+}}\r\n{bad}\r\n", bad.len()).as_bytes());
        assert!(reply.starts_with("NO \"line 3:"), "{reply}");
        assert_eq!(s.cmd(b"LISTSCRIPTS\r\n"), vec!["OK\r\n"]);

        // The response codes of RFC 5804.
        assert!(
            s.status(b"GETSCRIPT \"nothing\"\r\n")
                .starts_with("NO (NONEXISTENT)")
        );
        assert_eq!(s.status(b"PUTSCRIPT \"a\" {5+}\r\nkeep;\r\n"), "OK\r\n");
        assert_eq!(s.status(b"PUTSCRIPT \"b\" \"stop;\"\r\n"), "OK\r\n");
        assert_eq!(s.status(b"SETACTIVE \"a\"\r\n"), "OK\r\n");
        assert!(
            s.status(b"DELETESCRIPT \"a\"\r\n")
                .starts_with("NO (ACTIVE)")
        );
        assert!(
            s.status(b"RENAMESCRIPT \"b\" \"a\"\r\n")
                .starts_with("NO (ALREADYEXISTS)")
        );
        assert_eq!(s.status(b"HAVESPACE \"c\" 100\r\n"), "OK\r\n");
        assert!(
            s.status(b"HAVESPACE \"c\" 999999999\r\n")
                .starts_with("NO (QUOTA)")
        );
        assert_eq!(
            s.cmd(b"GETSCRIPT \"a\"\r\n"),
            vec!["keep;", "\r\n", "OK\r\n"]
        );

        // A literal over the script size limit ends the connection with BYE.
        let reply = s.status(b"PUTSCRIPT \"huge\" {99999999+}\r\n");
        assert!(reply.starts_with("BYE"), "{reply}");
        assert!(s.closed());

        // LOGOUT says OK and closes.
        let (mut s, _) = Sieve::connect(port);
        assert!(s.status(b"LOGOUT\r\n").starts_with("OK"));
        assert!(s.closed());
    })
    .await
    .unwrap();
}
