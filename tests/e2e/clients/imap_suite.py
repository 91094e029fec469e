"""IMAP client checks shared by the end-to-end test (tests/e2e/imap.rs) and
imap-frontend's in-process test: mailboxes, APPEND/FETCH round trips,
BODYSTRUCTURE of a nested multipart, SEARCH, STORE, COPY/MOVE with COPYUID,
EXPUNGE, STARTTLS and implicit TLS, with Python's imaplib.

Usage: imap_suite.py PORT PORTS CERT USER PASS SMTP_PORT (0: no SMTP)
"""
import imaplib, ssl, socket, smtplib, time, re, sys

import imap_common

PORT, PORTS, CERT, USER, PASS, SMTP = (
    int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))

MSG = (
    b'From: Alice <alice@example.test>\r\n'
    b'To: Bob <bob@example.org>\r\n'
    b'Subject: nested test\r\n'
    b'Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n'
    b'Message-ID: <nested@example.test>\r\n'
    b'MIME-Version: 1.0\r\n'
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b'\r\n'
    b'preamble\r\n'
    b'--outer\r\n'
    b'Content-Type: text/plain; charset=utf-8\r\n'
    b'\r\n'
    b'Hello body\r\n'
    b'--outer\r\n'
    b'Content-Type: multipart/alternative; boundary="inner"\r\n'
    b'\r\n'
    b'--inner\r\n'
    b'Content-Type: text/plain\r\n'
    b'\r\n'
    b'plain alt\r\n'
    b'--inner\r\n'
    b'Content-Type: text/html\r\n'
    b'\r\n'
    b'<p>html alt</p>\r\n'
    b'--inner--\r\n'
    b'--outer\r\n'
    b'Content-Type: message/rfc822\r\n'
    b'\r\n'
    b'From: Carol <carol@example.org>\r\n'
    b'Subject: inner message\r\n'
    b'\r\n'
    b'inner body\r\n'
    b'--outer--\r\n'
)


def login():
    return imap_common.login(PORT, USER, PASS)


def body(M, n, spec, uid=False):
    typ, data = (M.uid('FETCH', n, '(' + spec + ')') if uid else M.fetch(n, '(' + spec + ')'))
    assert typ == 'OK', (typ, data)
    return data[0][1]

M = imaplib.IMAP4('127.0.0.1', PORT)
caps = M.capabilities
for c in ('IMAP4REV1', 'IDLE', 'UIDPLUS', 'MOVE', 'SPECIAL-USE', 'NAMESPACE', 'AUTH=PLAIN', 'STARTTLS'):
    assert c in caps, (c, caps)
try:
    M.login(USER, 'wrong')
    raise SystemExit('bad password accepted')
except imaplib.IMAP4.error:
    pass
M.login(USER, PASS)

# Mailboxes
typ, data = M.list()
assert typ == 'OK'
lines = [d.decode() for d in data]
assert any(l.endswith('"INBOX"') for l in lines), lines
assert any('\\Sent' in l and l.endswith('"Sent"') for l in lines), lines
assert M.create('Work/Sub')[0] == 'OK'
assert M.create('Work/Sub')[0] == 'NO'
typ, data = M.list('""', 'Work*')
assert [d.decode() for d in data] == ['(\\HasChildren) "/" "Work"', '(\\HasNoChildren) "/" "Work/Sub"'], data
typ, data = M.list('""', 'Work/%')
assert [d.decode() for d in data] == ['(\\HasNoChildren) "/" "Work/Sub"'], data
assert M.rename('Work', 'Projects')[0] == 'OK'
typ, data = M.list('""', 'Projects/*')
assert b'"Projects/Sub"' in data[0], data
assert M.unsubscribe('Projects/Sub')[0] == 'OK'
typ, data = M.lsub('""', 'Projects/*')
assert data == [None], data
assert M.delete('Projects/Sub')[0] == 'OK'
assert M.delete('INBOX')[0] == 'NO'
typ, data = M.namespace()
assert typ == 'OK' and b'(("" "/"))' in data[0], data

# APPEND, then a byte-for-byte round trip and the structure
typ, data = M.append('INBOX', '(\\Flagged)', None, MSG)
assert typ == 'OK', (typ, data)
m = re.match(rb'\[APPENDUID (\d+) (\d+)\]', data[0])
assert m, data
uid1 = m.group(2).decode()
typ, data = M.append('Nope', None, None, MSG)
assert typ == 'NO' and b'TRYCREATE' in data[0], data
typ, data = M.select('inbox')
assert typ == 'OK' and data == [b'1'], data
assert body(M, '1', 'BODY.PEEK[]') == MSG
typ, data = M.fetch('1', '(FLAGS RFC822.SIZE)')
assert b'RFC822.SIZE %d' % len(MSG) in data[0] and b'\\Flagged' in data[0] and b'\\Seen' not in data[0], data
typ, data = M.fetch('1', '(BODYSTRUCTURE)')
bs = data[0].decode()
assert bs.startswith('1 (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 9 1 NIL NIL NIL NIL)("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 15 1 NIL NIL NIL NIL) "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" '), bs
assert '"inner message"' in bs and bs.endswith(' "MIXED" ("BOUNDARY" "outer") NIL NIL NIL))'), bs
typ, data = M.fetch('1', '(ENVELOPE)')
env = data[0].decode()
assert env.startswith('1 (ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "nested test" (("Alice" NIL "alice" "example.test"))'), env
assert '"<nested@example.test>"))' in env, env
assert body(M, '1', 'BODY.PEEK[1]') == b'Hello body'
assert body(M, '1', 'BODY.PEEK[2.1]') == b'plain alt'
assert body(M, '1', 'BODY.PEEK[2.2]') == b'<p>html alt</p>'
assert body(M, '1', 'BODY.PEEK[3.HEADER]') == b'From: Carol <carol@example.org>\r\nSubject: inner message\r\n\r\n'
assert body(M, '1', 'BODY.PEEK[3.TEXT]') == b'inner body'
assert body(M, '1', 'BODY.PEEK[3.1]') == b'inner body'
assert body(M, '1', 'BODY.PEEK[1.MIME]') == b'Content-Type: text/plain; charset=utf-8\r\n\r\n'
assert body(M, '1', 'BODY.PEEK[HEADER.FIELDS (SUBJECT TO)]') == b'To: Bob <bob@example.org>\r\nSubject: nested test\r\n\r\n'
assert body(M, '1', 'BODY.PEEK[]<7.5>') == MSG[7:12]
assert body(M, '1', 'BODY.PEEK[TEXT]') == MSG[MSG.index(b'\r\n\r\n') + 4:]
try:
    M.fetch('5', '(FLAGS)')
    raise SystemExit('FETCH beyond EXISTS accepted')
except imaplib.IMAP4.error:
    pass

# Delivered over SMTP: Return-Path first, counted in the size (without
# SMTP, an APPEND of the same bytes stands in for the delivery)
SMTP_MSG = b'Subject: over smtp\r\nFrom: sender@example.org\r\n\r\nhi there\r\n'
if SMTP:
    s = smtplib.SMTP('127.0.0.1', SMTP)
    s.sendmail('sender@example.org', [USER], SMTP_MSG)
    s.quit()
else:
    M2 = login()
    M2.append('INBOX', None, None, b'Return-Path: <sender@example.org>\r\n' + SMTP_MSG)
    M2.logout()
deadline = time.time() + 30
while M.select('INBOX')[1] != [b'2']:
    assert time.time() < deadline, 'not delivered'
    time.sleep(0.2)
typ, data = M.select('INBOX')
assert data == [b'2'], data
raw = body(M, '2', 'BODY.PEEK[]')
assert raw.startswith(b'Return-Path: <sender@example.org>\r\n'), raw
assert raw.endswith(b'hi there\r\n'), raw
typ, data = M.fetch('2', '(RFC822.SIZE)')
assert b'RFC822.SIZE %d' % len(raw) in data[0], data
assert body(M, '2', 'BODY.PEEK[HEADER.FIELDS (RETURN-PATH)]') == b'Return-Path: <sender@example.org>\r\n\r\n'

# SEARCH
typ, data = M.search('UTF-8', 'UNSEEN')
assert data == [b'1 2'], data
typ, data = M.search('KOI8-R', 'ALL')
assert typ == 'NO', (typ, data)
typ, data = M.search(None, 'UNSEEN')
assert data == [b'1 2'], data
typ, data = M.search(None, 'SUBJECT', '"over smtp"')
assert data == [b'2'], data
typ, data = M.search(None, 'FLAGGED')
assert data == [b'1'], data
typ, data = M.search(None, 'BODY', '"html alt"')
assert data == [b'1'], data
typ, data = M.uid('SEARCH', 'LARGER', str(len(MSG) - 1))
assert data == [uid1.encode()], data
typ, data = M.search(None, 'OR', 'FROM', 'carol', 'FROM', 'sender')
assert data == [b'2'], data
typ, data = M.search(None, 'HEADER', 'Message-ID', 'nested@')
assert data == [b'1'], data

# A BODY[] fetch sets \Seen and says so
typ, data = M.fetch('2', '(BODY[TEXT])')
assert b'\\Seen' in b' '.join(d[0] if isinstance(d, tuple) else d for d in data), data
typ, data = M.search(None, 'SEEN')
assert data == [b'2'], data

# STORE
typ, data = M.store('1', '+FLAGS', '(\\Deleted $Custom)')
assert typ == 'OK' and b'\\Deleted' in data[0] and b'$Custom' in data[0], data
typ, data = M.store('1', '-FLAGS.SILENT', '($Custom)')
assert typ == 'OK' and data == [None], data

# COPY with COPYUID, then EXPUNGE of message 1
typ, data = M.copy('1:2', 'Archive')
assert typ == 'OK' and re.match(rb'\[COPYUID \d+ \d+:\d+ 1:2\]', data[0]), data
typ, data = M.expunge()
assert data == [b'1'], data
typ, data = M.fetch('1', '(UID)')
assert b'UID' in data[0], data

# UID MOVE with COPYUID, announced as EXPUNGE
typ, data = M.select('Archive')
assert data == [b'2'], data
typ, data = M.uid('MOVE', '2', 'Trash')
assert typ == 'OK', (typ, data)
assert M.untagged_responses.get('EXPUNGE') == [b'2'], M.untagged_responses
copyuid = [r for r in M.untagged_responses.get('OK', []) if b'COPYUID' in r]
assert copyuid and re.match(rb'\[COPYUID \d+ 2 1\]', copyuid[0]), M.untagged_responses
typ, data = M.status('Trash', '(MESSAGES UIDNEXT UNSEEN)')
assert b'MESSAGES 1' in data[0] and b'UIDNEXT 2' in data[0], data
typ, data = M.uid('EXPUNGE', '1:*')
assert typ == 'OK'
typ, data = M.select('Trash', readonly=True)
assert data == [b'1'], data
typ, data = M.store('1', '+FLAGS', '(\\Seen)')
assert typ == 'NO', (typ, data)
assert M.unselect()[0] == 'OK'
M.logout()

# STARTTLS and implicit TLS
ctx = ssl.create_default_context(cafile=CERT)
M = imaplib.IMAP4('127.0.0.1', PORT)
M.starttls(ssl_context=ctx)
M.login(USER, PASS)
assert M.select('INBOX')[1] == [b'1']
M.logout()
M = imaplib.IMAP4_SSL('127.0.0.1', PORTS, ssl_context=ctx)
M.authenticate('PLAIN', lambda _: ('\0' + USER + '\0' + PASS).encode())
assert M.select('INBOX')[1] == [b'1']
M.logout()
print('ok')
