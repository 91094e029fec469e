"""IMAP4rev2 pieces with Python's imaplib (and a raw socket where imaplib
cannot say it): BINARY (RFC 3516) fetches decoded against the original
bytes, literal8 APPEND of data with NUL octets, the RFC 6855 UTF8 (~{n})
APPEND above the old 15 MiB in-memory bound, and SEARCHRES (RFC 5182).

Usage: imap_rev2.py PORT USER PASS
The account must have only its default mailboxes, all empty. Prints "ok".
"""
import base64, hashlib, imaplib, os, quopri, random, re, socket, sys

import imap_common
from imap_common import ok, appenduid

PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
MIB = 1024 * 1024
rng = random.Random(3516)


def login():
    return imap_common.login(PORT, USER, PASS)


def literal(data, item):
    """(response head, literal bytes) of the FETCH item whose head ends in
    the literal announcement; imaplib reads `~{n}` like `{n}`."""
    for d in data:
        if isinstance(d, tuple) and item in d[0]:
            return d[0], d[1]
    raise AssertionError((item, data))


class Raw:
    """A raw connection for what imaplib cannot send (literal8, UTF8)."""

    def __init__(self):
        self.s = socket.create_connection(('127.0.0.1', PORT))
        self.f = self.s.makefile('rb')
        assert self.f.readline().startswith(b'* OK')

    def cmd(self, tag, data):
        self.s.sendall(data)
        out = []
        while True:
            l = self.f.readline()
            assert l, out
            out.append(l)
            if l.startswith(tag + b' '):
                return out

    def close(self):
        self.s.close()


# ---- the test message: every kind of leaf, and a composite part ------------
BLOB = bytes(rng.getrandbits(8) for _ in range(300_000)) + b'\x00\x00tail'
TEXT = ('caf\u00e9 au lait, ' * 30 + '\r\nline two = fine\r\n').encode()
QP = quopri.encodestring(TEXT.replace(b'\r\n', b'\n')).replace(b'\n', b'\r\n')
TEXT_QP = TEXT  # decoded, hard line breaks are CRLF again
PLAIN64 = b'no nul here\r\njust text\r\n' * 100
B64 = base64.encodebytes(BLOB).replace(b'\n', b'\r\n')
MSG = (b'From: a@example.org\r\nSubject: rev2 binary\r\nMIME-Version: 1.0\r\n'
       b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
       b'--XX\r\nContent-Type: text/plain; charset=utf-8\r\n'
       b'Content-Transfer-Encoding: quoted-printable\r\n\r\n' + QP + b'\r\n'
       b'--XX\r\nContent-Type: application/octet-stream\r\n'
       b'Content-Transfer-Encoding: base64\r\n\r\n' + B64 + b'\r\n'
       b'--XX\r\nContent-Type: application/octet-stream\r\n'
       b'Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\nend\r\n'
       b'--XX\r\nContent-Type: message/rfc822\r\n\r\n'
       b'Subject: inner\r\n\r\ninner body\r\n'
       b'--XX\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n'
       + base64.encodebytes(PLAIN64).replace(b'\n', b'\r\n') + b'\r\n'
       b'--XX--\r\n')

M = login()
caps = ok(M.capability())[0].split()
assert b'BINARY' in caps and b'SEARCHRES' in caps, caps
uid = appenduid(ok(M.append('INBOX', None, None, MSG)))
ok(M.select('INBOX'))

# ---- BINARY: decoded bytes, sizes, partials ---------------------------------
data = ok(M.uid('FETCH', str(uid), '(BINARY.PEEK[2] BINARY.SIZE[2])'))
head, body = literal(data, b'BINARY[2]')
assert body == BLOB, (len(body), len(BLOB))
# NUL octets in the decoded data: literal8 (RFC 3516 4.3).
assert head.endswith(b'BINARY[2] ~{%d}' % len(BLOB)), head
rest = b''.join(d if isinstance(d, bytes) else d[0] for d in data[1:])
assert b'BINARY.SIZE[2] %d' % len(BLOB) in head + rest, (head, rest)

data = ok(M.uid('FETCH', str(uid), '(BINARY.PEEK[1] BINARY.SIZE[1])'))
head, body = literal(data, b'BINARY[1]')
assert body == TEXT_QP, (body[:80], TEXT_QP[:80])
# No NUL: a plain literal.
assert head.endswith(b'BINARY[1] {%d}' % len(TEXT_QP)), head
assert b'BINARY.SIZE[1] %d' % len(TEXT_QP) in head + b''.join(
    d if isinstance(d, bytes) else d[0] for d in data[1:]), data

# Partial fetches count decoded octets.
data = ok(M.uid('FETCH', str(uid), '(BINARY.PEEK[2]<1000.5000>)'))
head, body = literal(data, b'BINARY[2]<1000>')
assert body == BLOB[1000:6000], len(body)
data = ok(M.uid('FETCH', str(uid), '(BINARY.PEEK[2]<299990.100>)'))
head, body = literal(data, b'BINARY[2]<299990>')
assert body == BLOB[299990:], body
data = ok(M.uid('FETCH', str(uid), '(BINARY.PEEK[5] BINARY.SIZE[5])'))
head, body = literal(data, b'BINARY[5]')
assert body == PLAIN64, body[:60]

# An encoding the server cannot undo: NO [UNKNOWN-CTE]; a composite part
# has an identity encoding: as BODY[4] gives it.
typ, data = M.uid('FETCH', str(uid), '(BINARY.PEEK[3])')
assert typ == 'NO' and b'[UNKNOWN-CTE]' in data[0], (typ, data)
typ, data = M.uid('FETCH', str(uid), '(BINARY.SIZE[3])')
assert typ == 'NO' and b'[UNKNOWN-CTE]' in data[0], (typ, data)
INNER = b'Subject: inner\r\n\r\ninner body'
data = ok(M.uid('FETCH', str(uid), '(BINARY.PEEK[4] BINARY.SIZE[4])'))
head, body = literal(data, b'BINARY[4]')
assert body == INNER, body
rest = b''.join(d if isinstance(d, bytes) else d[0] for d in data[1:])
assert b'BINARY.SIZE[4] %d' % len(INNER) in head + rest, (head, rest)

# .PEEK leaves \Seen alone; BINARY sets it, as BODY[] does.
data = ok(M.uid('FETCH', str(uid), '(FLAGS)'))
assert b'\\Seen' not in data[0], data
data = ok(M.uid('FETCH', str(uid), '(BINARY[1]<0.4>)'))
head, body = literal(data, b'BINARY[1]<0>')
assert body == TEXT_QP[:4], body
data = ok(M.uid('FETCH', str(uid), '(FLAGS)'))
assert b'\\Seen' in data[0], data

# ---- SEARCH BODY/TEXT match decoded text ----------------------------------
def search(*criteria, literal=None):
    M.literal = literal
    return ok(M.uid('SEARCH', *criteria))[0].split()


U = str(uid).encode()
# Only in the decoded base64 text part, and in the quoted-printable one
# (its soft line breaks joined, its UTF-8 read).
assert U in search('BODY', '"JUST TEXT"'), 'base64'
assert U in search('CHARSET', 'UTF-8', 'BODY', literal='LAIT, CAF\u00c9 AU LAIT'.encode()), 'qp'
assert U not in search('BODY', '"caf=C3=A9"'), 'matched the encoded form'
# A latin-1 part, a Shift_JIS part and an encoded Subject.
intl = ('Subject: =?utf-8?q?Fr=C3=BChling?=\r\nMIME-Version: 1.0\r\n'
        'Content-Type: multipart/mixed; boundary=I\r\n\r\n'
        '--I\r\nContent-Type: text/plain; charset=iso-8859-1\r\n'
        'Content-Transfer-Encoding: quoted-printable\r\n\r\n'
        'Sch=F6ne Gr=FC=DFe aus K=F6ln\r\n'
        '--I\r\nContent-Type: text/plain; charset=shift_jis\r\n'
        'Content-Transfer-Encoding: base64\r\n\r\n').encode()
intl += base64.encodebytes('日本語のテキスト'.encode('shift_jis')).replace(b'\n', b'\r\n')
intl += b'--I--\r\n'
uid_intl = appenduid(ok(M.append('INBOX', None, None, intl)))
ok(M.noop())
V = str(uid_intl).encode()
assert V in search('CHARSET', 'UTF-8', 'BODY', literal='schöne GRÜßE'.encode()), 'latin-1'
assert V in search('CHARSET', 'UTF-8', 'BODY', literal='のテキスト'.encode()), 'shift_jis'
assert V in search('CHARSET', 'UTF-8', 'TEXT', literal='FRÜHLING'.encode()), 'encoded subject'
assert V not in search('CHARSET', 'UTF-8', 'BODY', literal='frühling'.encode()), 'BODY saw the header'
assert U not in search('CHARSET', 'UTF-8', 'BODY', literal='のテキスト'.encode())

# ---- APPEND with literal8: NUL octets round-trip byte for byte --------------
NULMSG = (b'From: b@example.org\r\nSubject: nul\r\nContent-Transfer-Encoding: binary\r\n\r\n'
          + bytes(range(256)) * 64 + b'\x00\r\n\x00end\r\n')
R = Raw()
assert R.cmd(b'r1', ('r1 LOGIN %s %s\r\n' % (USER, PASS)).encode())[-1].startswith(b'r1 OK')
R.s.sendall(b'r2 APPEND INBOX (\\Flagged) ~{%d}\r\n' % len(NULMSG))
assert R.f.readline().startswith(b'+ ')
out = R.cmd(b'r2', NULMSG + b'\r\n')
assert out[-1].startswith(b'r2 OK [APPENDUID '), out
nul_uid = appenduid([out[-1]])
# LITERAL+ form of literal8.
out = R.cmd(b'r3', b'r3 APPEND INBOX ~{%d+}\r\n' % len(NULMSG) + NULMSG + b'\r\n')
assert out[-1].startswith(b'r3 OK [APPENDUID '), out
nul_uid2 = appenduid([out[-1]])

# Another session's APPENDs reach a NOOP only once their event has come;
# a new SELECT sees them at once.
ok(M.select('INBOX'))
for u in (nul_uid, nul_uid2):
    data = ok(M.uid('FETCH', str(u), '(RFC822.SIZE BODY.PEEK[])'))
    head, body = literal(data, b'BODY[]')
    assert body == NULMSG, (len(body), len(NULMSG))
    assert b'RFC822.SIZE %d' % len(NULMSG) in head, head
    # The whole message through BINARY[]: identity, NULs, so literal8.
    data = ok(M.uid('FETCH', str(u), '(BINARY.PEEK[])'))
    head, body = literal(data, b'BINARY[]')
    assert body == NULMSG and head.endswith(b'~{%d}' % len(NULMSG)), head

# ---- UTF8 (~{n}) APPEND above 15 MiB goes through the streamed path ---------
ok(M.create('Big'))
assert R.cmd(b'r4', b'r4 ENABLE UTF8=ACCEPT\r\n')[0] == b'* ENABLED UTF8=ACCEPT\r\n'
line = hashlib.sha256(b'utf8').hexdigest().encode() + b' gr\xc3\xbc\xc3\x9fe\r\n'
BIG = b'From: c@example.org\r\nSubject: gro\xc3\x9f\r\n\r\n' + line * ((16 * MIB) // len(line) + 1)
assert len(BIG) > 16 * MIB
R.s.sendall(b'r5 APPEND Big UTF8 (~{%d}\r\n' % len(BIG))
assert R.f.readline().startswith(b'+ ')
out = R.cmd(b'r5', BIG + b')\r\n')
assert out[-1].startswith(b'r5 OK [APPENDUID '), out
big_uid = appenduid([out[-1]])
# Without the closing parenthesis the APPEND is refused and stores nothing.
out = R.cmd(b'r6', b'r6 APPEND Big UTF8 (~{5+}\r\nhello\r\n')
assert out[-1].startswith(b'r6 BAD'), out
out = R.cmd(b'r7', b'r7 NOOP\r\n')
assert out[-1].startswith(b'r7 OK'), out
R.close()
ok(M.select('Big'))
data = ok(M.uid('FETCH', str(big_uid), '(RFC822.SIZE BODY.PEEK[])'))
head, body = literal(data, b'BODY[]')
assert b'RFC822.SIZE %d' % len(BIG) in head, head
assert hashlib.sha256(body).digest() == hashlib.sha256(BIG).digest()
data = ok(M.status('Big', '(MESSAGES)'))
assert b'MESSAGES 1' in data[0], data
del body

# A 12 MiB base64 part: decoded across many GetBody chunks, both passes.
LARGE = os.urandom(12 * MIB)
LMSG = (b'From: e@example.org\r\nSubject: large\r\nMIME-Version: 1.0\r\n'
        b'Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + base64.encodebytes(LARGE).replace(b'\n', b'\r\n'))
large_uid = appenduid(ok(M.append('Big', None, None, LMSG)))
ok(M.select('Big'))
data = ok(M.uid('FETCH', str(large_uid), '(BINARY.SIZE[1] BINARY.PEEK[1])'))
head, body = literal(data, b'BINARY[1]')
assert b'BINARY.SIZE[1] %d' % len(LARGE) in head, head
assert hashlib.sha256(body).digest() == hashlib.sha256(LARGE).digest(), len(body)
data = ok(M.uid('FETCH', str(large_uid), '(BINARY.PEEK[1]<7340000.3000000>)'))
head, body = literal(data, b'BINARY[1]<7340000>')
assert body == LARGE[7340000:10340000], len(body)
del body, LARGE, LMSG

# ---- SEARCHRES ---------------------------------------------------------------
ok(M.create('Res'))
ok(M.create('Copies'))
uids = {}
for i in range(8):
    subj = 'pick' if i % 2 == 0 else 'skip'
    m = ('From: d@example.org\r\nSubject: %s %d\r\n\r\nbody %d\r\n' % (subj, i, i)).encode()
    uids[i] = appenduid(ok(M.append('Res', None, None, m)))
picked = sorted(uids[i] for i in range(0, 8, 2))
ok(M.select('Res'))


def fetched_uids(data):
    return sorted(int(m) for d in data if d
                  for m in re.findall(rb'UID (\d+)', d if isinstance(d, bytes) else d[0]))


# SAVE alone answers no ESEARCH, only the tagged OK.
M.untagged_responses.pop('ESEARCH', None)
typ, data = M.uid('SEARCH', 'RETURN', '(SAVE)', 'SUBJECT', 'pick')
assert typ == 'OK', (typ, data)
assert not M.untagged_responses.pop('ESEARCH', None)
# $ in FETCH by sequence number and by UID, and in SEARCH.
assert fetched_uids(ok(M.fetch('$', '(UID)'))) == picked
assert fetched_uids(ok(M.uid('FETCH', '$', '(FLAGS)'))) == picked
data = ok(M.uid('SEARCH', '$'))
assert sorted(int(x) for x in data[0].split()) == picked, data
data = ok(M.uid('SEARCH', 'NOT', '$'))
assert sorted(int(x) for x in data[0].split()) == sorted(set(uids.values()) - set(picked)), data
data = ok(M.uid('SEARCH', 'UID', '$', 'SUBJECT', '"pick 2"'))
assert [int(x) for x in data[0].split()] == [uids[2]], data
# $ in STORE, then in UID COPY.
ok(M.store('$', '+FLAGS', '(\\Flagged)'))
data = ok(M.uid('SEARCH', 'FLAGGED'))
assert sorted(int(x) for x in data[0].split()) == picked, data
# (imaplib's uid() hides the tagged text that carries COPYUID.)
data = ok(M._simple_command('UID', 'COPY', '$', 'Copies'))
m = re.search(rb'COPYUID \d+ (\S+) (\S+)', data[-1])
assert m, data


def expand(s):
    out = []
    for part in s.split(b','):
        a, _, b = part.partition(b':')
        out.extend(range(int(a), int(b or a) + 1))
    return sorted(out)


assert expand(m.group(1)) == picked, data
data = ok(M.status('Copies', '(MESSAGES)'))
assert b'MESSAGES 4' in data[0], data

# An expunged message drops out of $.
ok(M.uid('STORE', str(picked[0]), '+FLAGS', '(\\Deleted)'))
ok(M.expunge())
assert fetched_uids(ok(M.uid('FETCH', '$', '(UID)'))) == picked[1:]
# UID EXPUNGE $ removes only saved messages marked \Deleted.
ok(M.uid('STORE', '%d,%d' % (picked[1], uids[1]), '+FLAGS', '(\\Deleted)'))
typ, data = M._simple_command('UID', 'EXPUNGE', '$')
assert typ == 'OK', (typ, data)
data = ok(M.uid('SEARCH', 'ALL'))
left = sorted(int(x) for x in data[0].split())
assert picked[1] not in left and uids[1] in left, (left, picked)
ok(M.uid('STORE', str(uids[1]), '-FLAGS', '(\\Deleted)'))
picked = [picked[0]] + picked[2:]  # picked[1] is gone; indices below shift

# SAVE with MIN and MAX (no ALL/COUNT) saves just those; ESEARCH answers.
typ, data = M.uid('SEARCH', 'RETURN', '(SAVE MIN MAX)', 'SUBJECT', 'pick')
assert typ == 'OK', (typ, data)
es = M.untagged_responses.pop('ESEARCH', [])
assert es and b'MIN %d' % picked[1] in es[0] and b'MAX %d' % picked[-1] in es[0], es
assert fetched_uids(ok(M.uid('FETCH', '$', '(UID)'))) == [picked[1], picked[-1]]
# SAVE with ALL: everything, and $ of the previous result inside the keys.
typ, data = M.uid('SEARCH', 'RETURN', '(SAVE ALL)', 'OR', '$', 'SUBJECT', '"skip 1"')
assert typ == 'OK', (typ, data)
M.untagged_responses.pop('ESEARCH', None)
assert fetched_uids(ok(M.uid('FETCH', '$', '(UID)'))) == sorted([picked[1], picked[-1], uids[1]])

# A failed SEARCH with SAVE leaves $ empty; $ empty does nothing, OK.
typ, data = M.uid('SEARCH', 'RETURN', '(SAVE)', 'CHARSET', 'X-BOGUS', 'ALL')
assert typ == 'NO', (typ, data)
assert fetched_uids(ok(M.uid('FETCH', '$', '(UID)'))) == []
ok(M.uid('COPY', '$', 'Copies'))
data = ok(M.status('Copies', '(MESSAGES)'))
assert b'MESSAGES 4' in data[0], data

# SELECT resets it (even of the same mailbox), and so do UNSELECT/CLOSE.
typ, data = M.uid('SEARCH', 'RETURN', '(SAVE)', 'ALL')
assert typ == 'OK' and fetched_uids(ok(M.uid('FETCH', '$', '(UID)'))), data
ok(M.select('Res'))
assert fetched_uids(ok(M.uid('FETCH', '$', '(UID)'))) == []
typ, data = M.uid('SEARCH', 'RETURN', '(SAVE)', 'ALL')
ok(M.unselect())
ok(M.select('Res'))
data = ok(M.uid('SEARCH', '$'))
assert data in ([b''], [None]), data
M.logout()
print('ok')
