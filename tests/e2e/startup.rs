//! How a service process ends when it cannot start, the same for every
//! service (one shared start-up path): a setting it cannot use is exit 64
//! naming the setting; an address it cannot bind is exit 1 naming the
//! protocol and the address, so the operator knows which setting clashes.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use crate::harness::{BIN, free_port};

/// `mailfleet serve <service>` with only `env` as its settings.
fn serve(service: &str, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", service]).stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("MAILFLEET_") {
            cmd.env_remove(key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().expect("mailfleet runs")
}

#[test]
fn a_taken_address_is_exit_1_naming_protocol_and_address() {
    let cases = [
        ("mailstore", "MAILFLEET_GRPC_LISTEN", "gRPC"),
        ("smtp-gateway", "MAILFLEET_SMTP_LISTEN", "SMTP"),
        ("delivery-worker", "MAILFLEET_HTTP_LISTEN", "HTTP"),
        ("imap-frontend", "MAILFLEET_IMAP_LISTEN", "IMAP"),
        ("pop3-frontend", "MAILFLEET_POP3_LISTEN", "POP3"),
    ];
    for (service, setting, protocol) in cases {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("address");
        let mut env = vec![(setting, addr.to_string())];
        if setting != "MAILFLEET_HTTP_LISTEN" {
            env.push((
                "MAILFLEET_HTTP_LISTEN",
                format!("127.0.0.1:{}", free_port()),
            ));
        }
        let out = serve(service, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{service}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "mailfleet serve {service}: cannot listen for {protocol} on {addr}"
            )),
            "{service}: {stderr}"
        );
    }
}

#[test]
fn an_unusable_setting_is_exit_64_naming_it() {
    let out = serve(
        "imap-frontend",
        &[("MAILFLEET_IMAP_LISTEN", "nowhere".to_owned())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.starts_with("mailfleet serve imap-frontend: ")
            && stderr.contains("MAILFLEET_IMAP_LISTEN"),
        "{stderr}"
    );
}
