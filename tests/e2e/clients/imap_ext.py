"""IMAP extension checks with Python's imaplib (and a raw socket where
imaplib cannot say it): LIST-EXTENDED, LIST-STATUS, SPECIAL-USE selection,
ESEARCH, STATUS=SIZE, QUOTA, modified UTF-7 mailbox names and UTF8=ACCEPT.

Usage: imap_ext.py PORT USER PASS QUOTA_BYTES
The account must have QUOTA_BYTES (> 0) as its quota and only its default
mailboxes, all empty. Prints "ok" at the end.
"""
import base64, imaplib, re, socket, sys

import imap_common

PORT, USER, PASS, QUOTA = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])


def login():
    return imap_common.login(PORT, USER, PASS)


def cmd(M, name, *args):
    """Runs a command imaplib has no method for: (typ, tagged data, the
    untagged NAME data; ESEARCH for SEARCH)."""
    typ, dat = M._simple_command(name, *args)
    return typ, dat, M.untagged_responses.pop('ESEARCH' if name == 'SEARCH' else name, [])


def pop(M, name):
    return M.untagged_responses.pop(name, [])


def mutf7(text):
    """Modified UTF-7 (RFC 3501 5.1.3), written independently of the server."""
    out, run = [], []

    def flush():
        if run:
            b = ''.join(run).encode('utf-16-be')
            out.append('&' + base64.b64encode(b).decode().rstrip('=').replace('/', ',') + '-')
            run.clear()
    for c in text:
        if 0x20 <= ord(c) <= 0x7e:
            flush()
            out.append('&-' if c == '&' else c)
        else:
            run.append(c)
    flush()
    return ''.join(out)


def names(data):
    """LIST data items -> {name: (attributes, extended data)}."""
    out = {}
    for d in data:
        if isinstance(d, tuple):  # a literal name
            d = d[0] + d[1]
        m = re.match(rb'\(([^)]*)\) "/" ("(?:[^"\\]|\\.)*"|[^ ]+)(.*)$', d)
        assert m, d
        name = m.group(2)
        if name.startswith(b'"'):
            name = name[1:-1].replace(b'\\"', b'"').replace(b'\\\\', b'\\')
        out[name.decode()] = (m.group(1).decode().split(), m.group(3).decode().strip())
    return out


def esearch(data):
    assert len(data) == 1, data
    return data[0].decode()


MSG = (b'From: Alice <alice@example.test>\r\n'
       b'Subject: ext test\r\n'
       b'\r\n'
       b'body line\r\n')

M = login()
typ, caps = M.capability()
caps = caps[0].decode().split()
for c in ['LIST-EXTENDED', 'LIST-STATUS', 'ESEARCH', 'STATUS=SIZE', 'QUOTA', 'QUOTA=RES-STORAGE', 'QUOTA=RES-MESSAGE',
          'UTF8=ACCEPT', 'SPECIAL-USE', 'CHILDREN']:
    assert c in caps, (c, caps)
assert 'QUOTASET' not in caps

# ---- LIST-EXTENDED (RFC 5258) and SPECIAL-USE (RFC 6154) ----
for name in ['Work', 'Work/Projects', 'Lists/Rust']:
    assert M.create(name)[0] == 'OK', name
for name in ['INBOX', 'Sent', 'Work/Projects', 'Lists/Rust']:
    assert M.subscribe(name)[0] == 'OK', name
for name in ['Work', 'Drafts', 'Trash', 'Junk', 'Archive', 'Lists']:
    M.unsubscribe(name)
M.delete('Lists')  # if CREATE made it: Lists/Rust stays, Lists does not exist

typ, data = M.list('""', '*')
assert typ == 'OK'
plain = names(data)
assert '\\Sent' in plain['Sent'][0] and '\\HasNoChildren' in plain['Sent'][0], plain
assert '\\HasChildren' in plain['Work'][0], plain
assert '\\Noselect' in plain['Lists'][0], plain
assert list(plain)[0] == 'INBOX', plain

typ, _, data = cmd(M, 'LIST', '(SUBSCRIBED)', '""', '*')
assert typ == 'OK'
sub = names(data)
assert set(sub) == {'INBOX', 'Sent', 'Work/Projects', 'Lists/Rust'}, sub
assert all('\\Subscribed' in a for a, _ in sub.values()), sub

typ, _, data = cmd(M, 'LIST', '(SUBSCRIBED RECURSIVEMATCH)', '""', '%')
rec = names(data)
assert set(rec) == {'INBOX', 'Sent', 'Work', 'Lists'}, rec
assert rec['Work'][1] == '("CHILDINFO" ("SUBSCRIBED"))', rec
assert '\\Subscribed' not in rec['Work'][0], rec
assert '\\NonExistent' in rec['Lists'][0], rec
assert rec['Sent'][1] == '', rec

typ, _, data = cmd(M, 'LIST', '(SPECIAL-USE)', '""', '*')
special = names(data)
assert set(special) == {'Sent', 'Drafts', 'Trash', 'Junk', 'Archive'}, special
assert '\\Drafts' in special['Drafts'][0], special

# Several patterns; RETURN options.
typ, _, data = cmd(M, 'LIST', '""', '("INBOX" "Sent*" "Work/%")', 'RETURN', '(SUBSCRIBED CHILDREN)')
multi = names(data)
assert set(multi) == {'INBOX', 'Sent', 'Work/Projects'}, multi
assert '\\Subscribed' in multi['INBOX'][0] and '\\HasNoChildren' in multi['INBOX'][0], multi

typ, _, data = cmd(M, 'LIST', '""', '%', 'RETURN', '(SPECIAL-USE)')
assert '\\Trash' in names(data)['Trash'][0]

for bad in [('(RECURSIVEMATCH)', '""', '*'), ('(BOGUS)', '""', '*'), ('""', '*', 'RETURN', '(BOGUS)')]:
    try:
        typ = cmd(M, 'LIST', *bad)[0]
    except imaplib.IMAP4.error:
        typ = 'BAD'
    assert typ == 'BAD', bad

# ---- APPEND, STATUS=SIZE, LIST-STATUS ----
sizes = []
for i in range(3):
    msg = MSG + b'x' * (100 * i) + b'\r\n'
    typ, data = M.append('INBOX', '(\\Seen)' if i == 0 else None, None, msg)
    assert typ == 'OK', data
    sizes.append(len(msg))
typ, data = M.status('INBOX', '(MESSAGES UNSEEN SIZE)')
assert typ == 'OK'
m = re.search(rb'MESSAGES (\d+) UNSEEN (\d+) SIZE (\d+)', data[0])
assert m and int(m.group(1)) == 3 and int(m.group(2)) == 2, data
assert int(m.group(3)) == sum(sizes), (data, sizes)
M.select('INBOX')
typ, data = M.fetch('1:*', '(RFC822.SIZE)')
assert sum(int(re.search(rb'RFC822.SIZE (\d+)', d).group(1)) for d in data) == int(m.group(3))

typ, _, data = cmd(M, 'LIST', '""', '("INBOX" "Work*")', 'RETURN', '(STATUS (MESSAGES SIZE UIDNEXT))')
assert typ == 'OK'
assert set(names(data)) == {'INBOX', 'Work', 'Work/Projects'}, data
status = [s.decode() for s in pop(M, 'STATUS')]
assert '"INBOX" (MESSAGES 3 SIZE %d UIDNEXT 4)' % sum(sizes) in status, status
assert '"Work" (MESSAGES 0 SIZE 0 UIDNEXT 1)' in status, status

# STATUS DELETED (RFC 9208).
M.store('2', '+FLAGS', '(\\Deleted)')
typ, data = M.status('INBOX', '(DELETED DELETED-STORAGE)')
assert data[0].endswith(b'(DELETED 1 DELETED-STORAGE %d)' % sizes[1]), data
M.store('2', '-FLAGS', '(\\Deleted)')

# ---- ESEARCH (RFC 4731) ----
typ, _, data = cmd(M, 'SEARCH', 'RETURN', '(MIN MAX COUNT ALL)', 'UNSEEN')
assert typ == 'OK'
line = esearch(data)
assert re.fullmatch(r'\(TAG "[^"]+"\) MIN 2 MAX 3 COUNT 2 ALL 2:3', line), line
typ, _, data = cmd(M, 'SEARCH', 'RETURN', '()', 'ALL')
assert re.fullmatch(r'\(TAG "[^"]+"\) ALL 1:3', esearch(data)), data
typ, data = M.uid('SEARCH', 'RETURN', '(COUNT MAX)', 'ALL')
assert typ == 'OK'
line = esearch(pop(M, 'ESEARCH'))
assert re.fullmatch(r'\(TAG "[^"]+"\) UID MAX 3 COUNT 3', line), line
typ, _, data = cmd(M, 'SEARCH', 'RETURN', '(MIN MAX ALL COUNT)', 'SUBJECT', 'nothing-matches')
assert re.fullmatch(r'\(TAG "[^"]+"\) COUNT 0', esearch(data)), data
# An unknown RETURN option is BAD (SAVE is SEARCHRES, see imap_rev2.py).
try:
    typ = cmd(M, 'SEARCH', 'RETURN', '(BOGUS)', 'ALL')[0]
except imaplib.IMAP4.error:
    typ = 'BAD'
assert typ == 'BAD'
# Plain SEARCH is unchanged.
typ, data = M.search(None, 'ALL')
assert data == [b'1 2 3'], data

# ---- QUOTA (RFC 9208) ----
typ, data = M.getquotaroot('INBOX')
assert typ == 'OK', data
roots, quotas = data
assert roots == [b'"INBOX" "User quota"'], roots
m = re.fullmatch(rb'"User quota" \(STORAGE (\d+) (\d+)\)', quotas[0])
assert m, quotas
assert int(m.group(1)) == sum(sizes) // 1024 and int(m.group(2)) == QUOTA // 1024, quotas
typ, data = M.getquota('"User quota"')
assert typ == 'OK' and data[0] == quotas[0], data
typ, data = M.getquota('"no such root"')
assert typ == 'NO', data
typ, data = M.setquota('"User quota"', '(STORAGE 100000)')
assert typ == 'NO' and b'[NOPERM]' in data[0], data
big = MSG + b'y' * QUOTA + b'\r\n'
typ, data = M.append('INBOX', None, None, big)
assert typ == 'NO' and b'[OVERQUOTA]' in data[0], data
# A message that fits once does not fit twice: COPY is refused too.
half = MSG + b'z' * (QUOTA // 2 + 1000) + b'\r\n'
typ, data = M.append('Work', None, None, half)
assert typ == 'OK', data
assert M.select('Work')[0] == 'OK'
typ, data = M.copy('1', 'INBOX')
assert typ == 'NO' and b'[OVERQUOTA]' in data[0], data
typ, data = M.status('INBOX', '(MESSAGES)')
assert data[0].endswith(b'(MESSAGES 3)'), data

# ---- Modified UTF-7 names (RFC 3501 5.1.3) ----
INTL = 'Entw\u00fcrfe/\u041f\u0440\u0438\u0432\u0435\u0442 & \u65e5\u672c'
wire = mutf7(INTL)
assert wire == 'Entw&APw-rfe/&BB8EQAQ4BDIENQRC- &- &ZeVnLA-', wire
assert M.create('"%s"' % wire)[0] == 'OK'
typ, data = M.list('""', '"Entw&APw-rfe*"')
listed = names(data)
assert set(listed) == {'Entw&APw-rfe', wire}, listed
typ, data = M.status('"%s"' % wire, '(MESSAGES)')
assert data[0] == ('"%s" (MESSAGES 0)' % wire).encode(), data
UMSG = ('From: =?utf-8?q?J=C3=BCrgen?= <j@example.test>\r\nSubject: intl\r\n\r\n'
        'caf\u00e9 \u65e5\u672c\r\n').encode()
typ, data = M.append('"%s"' % wire, None, None, UMSG)
assert typ == 'OK', data
for bad in [b'"&Jjo"', b'"&AGE-"', '"Entw\u00fcrfe"'.encode()]:
    typ, data = M._simple_command('CREATE', bad)
    assert typ == 'NO' and b'not valid mUTF-7' in data[0], (bad, typ, data)
typ, data = M.select('"&Jjo"')
assert typ == 'NO', data
M.logout()

# ---- UTF8=ACCEPT (RFC 6855) ----
U = login()
typ, data = U.enable('UTF8=ACCEPT')
assert typ == 'OK' and pop(U, 'ENABLED') == [b'UTF8=ACCEPT'], data
typ, data = U.list('""', '"Entw\u00fcrfe*"')
listed = names(data)
assert set(listed) == {'Entw\u00fcrfe', INTL}, listed
# Names go out as UTF-8 quoted strings.
assert any(d == ('(\\HasNoChildren) "/" "%s"' % INTL).encode() for d in data), data
typ, data = U.select('"%s"' % INTL)
assert typ == 'OK', data
typ, data = U.fetch('1', '(BODY.PEEK[])')
assert data[0][1] == UMSG, data
typ, data = U.status('"%s"' % INTL, '(MESSAGES)')
assert data[0] == ('"%s" (MESSAGES 1)' % INTL).encode(), data
U.logout()

# APPEND of UTF-8 headers with the RFC 6855 syntax (imaplib wraps the
# literal wrongly, so a raw socket says it).
RAW = ('From: J\u00fcrgen <j@example.test>\r\nSubject: gr\u00fc\u00dfe \u65e5\u672c\r\n\r\n'
       'hallo\r\n').encode()
s = socket.create_connection(('127.0.0.1', PORT))
f = s.makefile('rb')
assert f.readline().startswith(b'* OK')


def raw(line):
    s.sendall(line)
    out = []
    while True:
        l = f.readline()
        assert l, out
        out.append(l)
        if l.startswith(line.split(b' ')[0] + b' '):
            return out


assert raw(('r1 LOGIN %s %s\r\n' % (USER, PASS)).encode())[-1].startswith(b'r1 OK')
assert raw(b'r2 ENABLE UTF8=ACCEPT\r\n')[0] == b'* ENABLED UTF8=ACCEPT\r\n'
out = raw(('r3 APPEND "%s" UTF8 (~{%d+}\r\n' % (INTL, len(RAW))).encode() + RAW + b')\r\n')
assert out[-1].startswith(b'r3 OK [APPENDUID '), out
out = raw(('r4 SELECT "%s"\r\n' % INTL).encode())
assert b'* 2 EXISTS\r\n' in out, out
out = raw(b'r5 FETCH 2 (BODY.PEEK[])\r\n')
assert out[0] == b'* 2 FETCH (BODY[] {%d}\r\n' % len(RAW), out
assert b''.join(out[1:-2]) + out[-2][:-3] == RAW, out
s.close()

# The message appended in UTF-8 mode reads back in a mUTF-7 session too.
M = login()
typ, data = M.select('"%s"' % wire)
assert typ == 'OK' and data == [b'2'], data
typ, data = M.fetch('2', '(BODY.PEEK[])')
assert data[0][1] == RAW, data
M.logout()
print('ok')
