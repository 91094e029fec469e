#!/usr/bin/env python3
"""Holds real client sessions open while the test stops the frontends.

Opens, with Python's smtplib, imaplib and poplib:
  smtp_idle     an SMTP transaction waiting after RCPT TO
  smtp_data     an SMTP transaction inside DATA, half of the body sent
  smtp_stalled  an SMTP transaction inside DATA that never sends the rest
  imap_selected an IMAP session (implicit TLS) with INBOX selected
  imap_idle     an IMAP session in IDLE
  pop3          a POP3 session (implicit TLS) in TRANSACTION, message 1 marked
                deleted (DELE) but no QUIT
then prints READY and waits for a line on stdin (the test has sent SIGTERM to
smtp-gateway, imap-frontend and pop3-frontend by then). It then reads what
each session is told, finishes the body of smtp_data after the idle session
got its goodbye, and prints one JSON object with what every session saw.

Usage: shutdown_sessions.py SMTP_PORT IMAPS_PORT POP3S_PORT IMAP_USER
       POP3_USER PASSWORD RCPT
"""
import imaplib
import json
import poplib
import smtplib
import ssl
import sys

TIMEOUT = 60


def body(tag):
    # Subjects in the load client's form, so the test counts copies the same way.
    return (f"From: <sender@remote.test>\r\nTo: <rcpt@example.test>\r\n"
            f"Subject: {tag} message 0\r\nMessage-ID: <{tag}.0@remote.test>\r\n\r\n"
            f"first half of {tag}\r\n").encode()


def reply(conn):
    """The next SMTP reply as "code text", or "closed" when the server hung up
    without one."""
    try:
        code, text = conn.getreply()
        return f"{code} {text.decode(errors='replace')}"
    except (smtplib.SMTPServerDisconnected, OSError) as e:
        return f"closed ({e})"


def open_smtp(port, rcpt):
    s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    s.ehlo("client.remote.test")
    assert s.mail("sender@remote.test")[0] == 250
    assert s.rcpt(rcpt)[0] == 250
    return s


def in_data(port, rcpt, tag):
    s = open_smtp(port, rcpt)
    s.putcmd("data")
    code, _ = s.getreply()
    assert code == 354, code
    s.send(body(tag))
    return s


def line(read):
    try:
        return read().decode(errors="replace").rstrip("\r\n")
    except OSError as e:
        return f"error ({e})"


def main():
    smtp_port, imaps_port, pop3s_port = (int(a) for a in sys.argv[1:4])
    imap_user, pop3_user, password, rcpt = sys.argv[4:8]
    ctx = ssl._create_unverified_context()

    smtp_idle = open_smtp(smtp_port, rcpt)
    smtp_data = in_data(smtp_port, rcpt, "shutdowndata")
    smtp_stalled = in_data(smtp_port, rcpt, "shutdownstall")

    imap_selected = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=ctx, timeout=TIMEOUT)
    imap_selected.login(imap_user, password)
    assert imap_selected.select("INBOX")[0] == "OK"
    imap_idle = imaplib.IMAP4_SSL("127.0.0.1", imaps_port, ssl_context=ctx, timeout=TIMEOUT)
    imap_idle.login(imap_user, password)
    assert imap_idle.select("INBOX")[0] == "OK"
    imap_idle.send(b"I1 IDLE\r\n")
    idling = line(imap_idle.readline)
    assert idling.startswith("+"), idling

    pop3 = poplib.POP3_SSL("127.0.0.1", pop3s_port, context=ctx, timeout=TIMEOUT)
    pop3.user(pop3_user)
    pop3.pass_(password)
    count, _ = pop3.stat()
    assert count >= 1, count
    pop3.dele(1)

    print("READY", flush=True)
    sys.stdin.readline()

    seen = {"pop3_messages_before": count}
    seen["smtp_idle"] = reply(smtp_idle)
    # The gateway is shutting down now (the idle session was told so): the
    # transaction in DATA may still finish.
    try:
        smtp_data.send(b"second half\r\n.\r\n")
        seen["smtp_data"] = reply(smtp_data)
    except OSError as e:
        seen["smtp_data"] = f"closed ({e})"
    seen["smtp_data_after"] = reply(smtp_data)
    seen["smtp_stalled"] = reply(smtp_stalled)
    seen["imap_selected"] = line(imap_selected.readline)
    seen["imap_selected_after"] = line(imap_selected.readline)
    seen["imap_idle"] = line(imap_idle.readline)
    seen["imap_idle_after"] = line(imap_idle.readline)
    seen["pop3"] = line(pop3.file.readline)
    seen["pop3_after"] = line(pop3.file.readline)
    print(json.dumps(seen), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
