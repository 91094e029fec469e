"""IMAP APPEND streamed to mailstore (APPENDLIMIT, RFC 7889): a 30 MiB
message round-trips byte for byte, a 20 MiB multipart gets its exact
BODYSTRUCTURE and parts (from metadata read as it streamed in) and SEARCH
BODY finds the text at its end, a literal
over the limit gets NO [TOOBIG] and the session goes on, LITERAL+ streams
too, and a client that disconnects mid-literal leaves no message behind.

Usage: imap_append.py PORT USER PASS
"""
import base64, hashlib, imaplib, re, socket, sys

import imap_common
from imap_common import ok, appenduid

PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
MIB = 1024 * 1024


def login():
    return imap_common.login(PORT, USER, PASS)


def big_message(size, seed):
    """A message of exactly `size` octets whose lines differ (no run of
    equal chunks could hide a reordering)."""
    head = b'From: a@example.org\r\nSubject: big %s\r\n\r\n' % seed.encode()
    lines, n, total = [head], 0, len(head)
    while total < size:
        line = hashlib.sha256(b'%s %d' % (seed.encode(), n)).hexdigest().encode() * 2 + b'\r\n'
        lines.append(line)
        total += len(line)
        n += 1
    body = b''.join(lines)[:size - 2] + b'\r\n'
    assert len(body) == size
    return body


def multipart_message(attachment_size):
    """A mail with a text part, a base64 attachment of about
    `attachment_size` octets and a forwarded message; returns the message
    and the attachment's encoded body as BODY[2] must give it back."""
    data = b''.join(hashlib.sha256(b'%d' % i).digest()
                    for i in range(attachment_size * 3 // 4 // 32 + 1))
    encoded = base64.encodebytes(data).replace(b'\n', b'\r\n')[:-2]
    msg = (b'From: a@example.org\r\nSubject: multipart big\r\nMIME-Version: 1.0\r\n'
           b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
           b'--b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee attached\r\n'
           b'--b1\r\nContent-Type: application/octet-stream; name="data.bin"\r\n'
           b'Content-Transfer-Encoding: base64\r\n\r\n' + encoded + b'\r\n'
           b'--b1\r\nContent-Type: message/rfc822\r\n\r\n'
           b'From: b@example.org\r\nSubject: inner\r\n\r\ninner body\r\n'
           b'--b1--\r\n')
    return msg, encoded


def messages(M, box='INBOX'):
    data = ok(M.status(box, '(MESSAGES)'))
    return int(re.search(rb'MESSAGES (\d+)', data[0]).group(1))


def fetch_body(M, uid):
    data = ok(M.uid('FETCH', str(uid), '(RFC822.SIZE BODY.PEEK[])'))
    # [(b'1 (UID n RFC822.SIZE s BODY[] {n}', body), b')']
    return data[0][0], data[0][1]


M = login()
caps = ok(M.capability())[0].split()
assert b'APPENDLIMIT=52428800' in caps, caps

# ---- 30 MiB round trip (synchronising literal) ----------------------------
msg = big_message(30 * MIB, 'thirty')
uid = appenduid(ok(M.append('INBOX', r'(\Seen $Work)', '"01-Feb-2021 10:00:00 +0000"', msg)))
ok(M.select('INBOX'))
head, body = fetch_body(M, uid)
assert b'RFC822.SIZE %d' % len(msg) in head, head
assert len(body) == len(msg), (len(body), len(msg))
assert hashlib.sha256(body).digest() == hashlib.sha256(msg).digest()
data = ok(M.uid('FETCH', str(uid), '(FLAGS INTERNALDATE)'))[0]
assert b'\\Seen' in data and b'$Work' in data, data
assert b'01-Feb-2021 10:00:00 +0000' in data, data
del body

# ---- 20 MiB multipart: structure and parts served from its metadata -------
msg, attachment = multipart_message(20 * MIB)
uid = appenduid(ok(M.append('INBOX', None, None, msg)))
ok(M.select('INBOX'))
data = ok(M.uid('FETCH', str(uid), '(BODYSTRUCTURE)'))[0]
structure = data.decode()
assert re.search(r'\("text" "plain" \("charset" "us-ascii"\) NIL NIL "7BIT" 12 1', structure,
                 re.I), structure
assert re.search(r'\("application" "octet-stream" \("name" "data.bin"\) NIL NIL "BASE64" %d'
                 % len(attachment), structure, re.I), structure
assert re.search(r'"message" "rfc822" NIL NIL NIL "7BIT" %d' % len(
    b'From: b@example.org\r\nSubject: inner\r\n\r\ninner body'), structure, re.I), structure
assert '"inner"' in structure and '"mixed"' in structure.lower(), structure
data = ok(M.uid('FETCH', str(uid), '(BODY.PEEK[2] BODY.PEEK[3.TEXT] BODY.PEEK[3.HEADER])'))
parts = {re.search(rb'BODY\[([0-9.A-Z]+)\]', item[0]).group(1): item[1]
         for item in data if isinstance(item, tuple)}
assert parts[b'2'] == attachment, (len(parts[b'2']), len(attachment))
assert parts[b'3.TEXT'] == b'inner body', parts[b'3.TEXT']
assert parts[b'3.HEADER'] == b'From: b@example.org\r\nSubject: inner\r\n\r\n', parts[b'3.HEADER']
# SEARCH BODY streams the 20 MiB body: the text at its very end is found.
found = ok(M.uid('SEARCH', 'BODY', '"INNER body"'))[0].split()
assert str(uid).encode() in found, found
found = ok(M.uid('SEARCH', 'BODY', '"inner body, not"'))[0].split()
assert str(uid).encode() not in found, found
del msg, attachment, parts

# ---- over APPENDLIMIT: NO [TOOBIG] before any data, the session goes on ----
before = messages(M)
typ, data = M.append('INBOX', None, None, b'x' * (60 * MIB))
assert typ == 'NO' and b'[TOOBIG]' in data[0], (typ, data)
ok(M.noop())
assert messages(M) == before
small = b'Subject: small\r\n\r\nafter the refusal\r\n'
uid2 = appenduid(ok(M.append('INBOX', None, None, small)))
# The session learns of its own APPEND through mailstore's change event,
# like any other session; SELECT loads the mailbox at once.
ok(M.select('INBOX'))
assert fetch_body(M, uid2)[1] == small

# ---- no such mailbox: TRYCREATE, nothing stored ---------------------------
typ, data = M.append('Nowhere', None, None, big_message(2 * MIB, 'nowhere'))
assert typ == 'NO' and b'[TRYCREATE]' in data[0], (typ, data)
ok(M.noop())
M.logout()


# ---- raw socket: LITERAL+ and a client gone mid-literal --------------------
class Raw:
    def __init__(self):
        self.s = socket.create_connection(('127.0.0.1', PORT), timeout=30)
        self.f = self.s.makefile('rb')
        assert self.f.readline().startswith(b'* OK')

    def until(self, tag):
        lines = []
        while True:
            line = self.f.readline()
            assert line, ('closed', lines)
            lines.append(line)
            if line.startswith(tag + b' '):
                return lines

    def cmd(self, tag, text):
        self.s.sendall(tag + b' ' + text + b'\r\n')
        lines = self.until(tag)
        assert lines[-1].startswith(tag + b' OK'), lines
        return lines

    def close(self):
        self.f.close()
        self.s.close()


r = Raw()
r.cmd(b'l1', b'LOGIN %s %s' % (USER.encode(), PASS.encode()))
plus = big_message(3 * MIB + 17, 'plus')
r.s.sendall(b'l2 APPEND INBOX {%d+}\r\n' % len(plus) + plus + b'\r\n')
lines = r.until(b'l2')
assert lines[-1].startswith(b'l2 OK [APPENDUID '), lines
uid3 = int(re.search(rb'APPENDUID \d+ (\d+)', lines[-1]).group(1))
# Junk after the literal is refused and nothing is stored.
r.s.sendall(b'l3 APPEND INBOX {5+}\r\nhello junk\r\n')
lines = r.until(b'l3')
assert lines[-1].startswith(b'l3 BAD'), lines
r.cmd(b'l4', b'NOOP')
r.close()

M = login()
ok(M.select('INBOX'))
assert fetch_body(M, uid3)[1] == plus
count = messages(M)

cut = Raw()
cut.cmd(b'c1', b'LOGIN %s %s' % (USER.encode(), PASS.encode()))
# Past the first 8 MiB upload part, so a temporary object exists when
# the client goes away.
cut.s.sendall(b'c2 APPEND INBOX {%d}\r\n' % (20 * MIB))
assert cut.f.readline().startswith(b'+'), 'no continuation'
cut.s.sendall(big_message(12 * MIB, 'cut'))
cut.close()

# The session that saw the cut stored nothing: a later APPEND gets the next
# UID after uid3's (the junk one used none) and the count is unchanged.
ok(M.noop())
assert messages(M) == count, (messages(M), count)
uid4 = appenduid(ok(M.append('INBOX', None, None, small)))
assert messages(M) == count + 1
M.logout()
print('ok')
