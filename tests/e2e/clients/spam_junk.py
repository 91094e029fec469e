"""Spam end to end (tests/e2e/spam.rs): over SMTP, a GTUBE message is
refused, rspamd's "add header" test pattern lands in Junk and a clean message
in INBOX; then over IMAP the clean one is moved into Junk (a spam lesson) and
the marked one out of it (a ham lesson).

argv: smtp_port imap_port account password add_header_pattern gtube
Prints "ok" at the end.
"""
import imaplib
import random
import smtplib
import sys
import time
import uuid

smtp_port, imap_port, account, password, add_header, gtube = sys.argv[1:7]
smtp_port, imap_port = int(smtp_port), int(imap_port)

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
         "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def message(subject, extra=""):
    # Enough words for Bayes to learn from; unique so rspamd never saw it.
    words = " ".join(random.choice(WORDS) for _ in range(300))
    return (f"From: Sender <sender@example.org>\r\nTo: <{account}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{uuid.uuid4()}@example.org>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\n"
            f"{words}\r\n{extra}\r\n")


s = smtplib.SMTP("127.0.0.1", smtp_port)
try:
    s.sendmail("sender@example.org", [account], message("gtube", gtube))
    raise SystemExit("GTUBE was accepted")
except smtplib.SMTPDataError as e:
    assert e.smtp_code == 550 and b"5.7.1" in e.smtp_error, e
s.sendmail("sender@example.org", [account], message("marked", add_header))
s.sendmail("sender@example.org", [account], message("clean"))
s.quit()


def subjects(M, mailbox):
    typ, _ = M.select(mailbox)
    assert typ == "OK", (mailbox, typ)
    typ, data = M.uid("SEARCH", "ALL")
    uids = data[0].split()
    out = {}
    for uid in uids:
        typ, d = M.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out[d[0][1].decode().strip().split(": ", 1)[1]] = uid
    return out


M = imaplib.IMAP4("127.0.0.1", imap_port)
M.login(account, password)
deadline = time.time() + 60
while True:
    junk, inbox = subjects(M, "Junk"), subjects(M, "INBOX")
    if "marked" in junk and "clean" in inbox:
        break
    assert time.time() < deadline, (junk, inbox)
    time.sleep(0.2)
assert "marked" not in inbox and "clean" not in junk and "gtube" not in inbox, (junk, inbox)

# Spam lesson: the clean one into Junk; ham lesson: the marked one out.
M.select("INBOX")
typ, data = M.uid("MOVE", inbox["clean"], "Junk")
assert typ == "OK", data
M.select("Junk")
typ, data = M.uid("MOVE", junk["marked"], "INBOX")
assert typ == "OK", data
M.logout()
print("ok")
