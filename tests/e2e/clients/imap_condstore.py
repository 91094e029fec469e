"""CONDSTORE and QRESYNC (RFC 7162) with Python's imaplib, as a client that
keeps an offline copy would use them: remember UIDVALIDITY and
HIGHESTMODSEQ, let another session change flags and expunge, then resync
through SELECT (QRESYNC ...) and through UID FETCH (CHANGEDSINCE ... VANISHED);
conditional STORE refused with [MODIFIED]; SEARCH MODSEQ; HIGHESTMODSEQ
growing; VANISHED instead of EXPUNGE once QRESYNC is enabled.

Usage: imap_condstore.py PORT USER PASS
Prints "ok" on success; any failed check raises.
"""
import imaplib
import re
import sys
import time

import imap_common
from imap_common import ok

PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def login():
    return imap_common.login(PORT, USER, PASS)


def cmd(M, name, *args):
    """A command imaplib has no method for (or whose arguments it would
    quote): returns (typ, tagged data) and leaves untagged data in M."""
    return M._simple_command(name, *args)


def select(M, verb, args):
    """SELECT/EXAMINE with parameters imaplib cannot send itself."""
    typ, data = cmd(M, verb, args)
    assert typ == 'OK', (typ, data)
    M.state = 'SELECTED'
    # imaplib's own select() does this; its next command would fail else.
    M.untagged_responses.pop('READ-ONLY', None)


def untagged(M, name):
    """Takes the untagged responses called `name` collected so far."""
    out = []
    for d in M.untagged_responses.pop(name, []):
        out.append(b'' if d is None else d if isinstance(d, bytes) else d[0])
    return out


def modseq_of(fetch_line):
    m = re.search(rb'MODSEQ \((\d+)\)', fetch_line)
    assert m, fetch_line
    return int(m.group(1))


def highest(M, mailbox='INBOX'):
    data = ok(M.status(mailbox, '(HIGHESTMODSEQ)'))
    m = re.search(rb'HIGHESTMODSEQ (\d+)', data[0])
    assert m, data
    return int(m.group(1))


def message(i):
    return ('Subject: message %d\r\nFrom: a@example.org\r\n\r\nbody %d\r\n' % (i, i)).encode()


M = login()
for c in ('CONDSTORE', 'QRESYNC', 'ENABLE'):
    assert c in M.capabilities, (c, M.capabilities)
for i in range(1, 7):
    ok(M.append('INBOX', None, None, message(i)))
h0 = highest(M)
assert h0 > 0, h0

# ENABLE lists what it turned on, once.
E = login()
for cap, enabled in (('CONDSTORE', b'CONDSTORE'), ('CONDSTORE', b''), ('QRESYNC', b'QRESYNC')):
    ok(E.enable(cap))
    assert untagged(E, 'ENABLED') == [enabled], (cap, enabled)
E.logout()

# SELECT (CONDSTORE) reports HIGHESTMODSEQ; the client remembers it.
select(M, 'SELECT', 'INBOX (CONDSTORE)')
assert [int(x) for x in untagged(M, 'HIGHESTMODSEQ')] == [h0], h0
uidvalidity = int(untagged(M, 'UIDVALIDITY')[0])
data = ok(M.fetch('1:*', '(UID FLAGS MODSEQ)'))
assert len(data) == 6 and all(b'MODSEQ (' in d for d in data), data
assert max(modseq_of(d) for d in data) == h0, (data, h0)
# FETCH MODSEQ alone (no UID asked for, none returned).
data = ok(M.fetch('2', 'MODSEQ'))
assert re.fullmatch(rb'2 \(MODSEQ \(\d+\)\)', data[0]), data

# Another device changes flags, expunges two messages, adds one.
B = login()
ok(B.select('INBOX'))
ok(B.uid('STORE', '2', '+FLAGS', '(\\Flagged)'))
ok(B.uid('STORE', '3,5', '+FLAGS', '(\\Deleted)'))
ok(B.expunge())
ok(B.append('INBOX', None, None, message(7)))
B.logout()
h1 = highest(M)
assert h1 > h0, (h0, h1)

# The open session hears of it (EXPUNGE: M has not enabled QRESYNC).
deadline = time.time() + 10
expunged, exists = [], []
while time.time() < deadline and (len(expunged) < 2 or not exists):
    ok(M.noop())
    expunged += untagged(M, 'EXPUNGE')
    exists += untagged(M, 'EXISTS')
    assert untagged(M, 'VANISHED') == []
    time.sleep(0.1)
assert expunged == [b'5', b'3'] and exists, (expunged, exists)

# CONDSTORE resync: FETCH (CHANGEDSINCE) returns only what changed.
M.untagged_responses.clear()
data = ok(M.uid('FETCH', '1:*', '(FLAGS) (CHANGEDSINCE %d)' % h0))
changed = {int(re.search(rb'UID (\d+)', d).group(1)): d for d in data}
assert set(changed) == {2, 7}, data
assert b'\\Flagged' in changed[2] and modseq_of(changed[2]) > h0, data

# A QRESYNC client on a new connection: one SELECT brings it up to date.
Q = login()
ok(Q.enable('QRESYNC'))
assert untagged(Q, 'ENABLED') == [b'QRESYNC']
select(Q, 'SELECT', 'INBOX (QRESYNC (%d %d 1:6))' % (uidvalidity, h0))
assert untagged(Q, 'VANISHED') == [b'(EARLIER) 3,5'], Q.untagged_responses
fetched = untagged(Q, 'FETCH')
assert len(fetched) == 1 and re.match(rb'2 \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)', fetched[0]), fetched
assert int(untagged(Q, 'EXISTS')[-1]) == 5
assert int(untagged(Q, 'HIGHESTMODSEQ')[0]) == h1
# A wrong UIDVALIDITY means a full resync: no VANISHED, no FETCH.
select(Q, 'EXAMINE', 'INBOX (QRESYNC (%d %d))' % (uidvalidity + 1, h0))
assert untagged(Q, 'CLOSED'), 'reselecting closes the previous mailbox with [CLOSED]'
assert untagged(Q, 'VANISHED') == [] and untagged(Q, 'FETCH') == []
# Without known UIDs every UID expunged since the modseq is listed.
select(Q, 'SELECT', 'INBOX (QRESYNC (%d %d))' % (uidvalidity, h0))
assert untagged(Q, 'VANISHED') == [b'(EARLIER) 3,5']

# UID FETCH (CHANGEDSINCE ... VANISHED): the expunges too.
Q.untagged_responses.clear()
data = ok(Q.uid('FETCH', '1:*', '(FLAGS) (CHANGEDSINCE %d VANISHED)' % h0))
assert untagged(Q, 'VANISHED') == [b'(EARLIER) 3,5']
assert sorted(int(re.search(rb'UID (\d+)', d).group(1)) for d in data) == [2, 7], data
data = ok(Q.uid('FETCH', '4:*', '(FLAGS) (CHANGEDSINCE %d VANISHED)' % h0))
assert untagged(Q, 'VANISHED') == [b'(EARLIER) 5'], data

# Conditional STORE: refused for a message changed since the client's
# modseq, done for one that was not.
msn = {}
for d in ok(Q.fetch('1:*', '(UID MODSEQ)')):
    m = re.match(rb'(\d+) \(UID (\d+) MODSEQ \((\d+)\)\)', d)
    assert m, d
    msn[int(m.group(2))] = (int(m.group(1)), int(m.group(3)))
typ, data = cmd(Q, 'UID', 'STORE', '2', '(UNCHANGEDSINCE %d)' % h0, '+FLAGS', '(\\Seen)')
assert typ == 'OK' and data[0].startswith(b'[MODIFIED 2]'), (typ, data)
assert untagged(Q, 'FETCH') == []
typ, data = cmd(Q, 'STORE', '1:2', '(UNCHANGEDSINCE %d)' % h0, '+FLAGS', '(\\Answered)')
assert typ == 'OK' and data[0].startswith(b'[MODIFIED %d]' % msn[2][0]), (typ, data)
f = untagged(Q, 'FETCH')
assert len(f) == 1 and re.match(rb'1 \(UID 1 FLAGS \(\\Answered\) MODSEQ \(\d+\)\)', f[0]), f
typ, data = cmd(Q, 'UID', 'STORE', '2', '(UNCHANGEDSINCE %d)' % msn[2][1], '+FLAGS.SILENT', '(\\Seen)')
assert typ == 'OK' and b'MODIFIED' not in data[0], (typ, data)
f = untagged(Q, 'FETCH')
assert len(f) == 1 and re.match(rb'\d+ \(UID 2 MODSEQ \(\d+\)\)', f[0]), f
h2 = modseq_of(f[0])
assert h2 > h1, (h1, h2)

# SEARCH MODSEQ, with the highest modseq of the result.
data = ok(Q.uid('SEARCH', 'MODSEQ', str(h1 + 1)))
assert data == [b'1 2 (MODSEQ %d)' % h2], data
data = ok(Q.uid('SEARCH', 'MODSEQ', '"/flags/\\\\seen"', 'all', str(h2)))
assert data == [b'2 (MODSEQ %d)' % h2], data
data = ok(Q.search(None, 'OR', 'MODSEQ', str(h2 + 1), 'SUBJECT', '"message 4"'))
assert re.fullmatch(rb'\d+ \(MODSEQ \d+\)', data[0]), data
data = ok(Q.search(None, 'MODSEQ', str(h2 + 1)))
assert data in ([None], [b'']), data
assert highest(Q) == h2

# With QRESYNC on, another session's expunge arrives as VANISHED (at NOOP
# and in IDLE), flag changes carry UID and MODSEQ.
B = login()
ok(B.select('INBOX'))
ok(B.uid('STORE', '4', '+FLAGS', '(\\Deleted $Work)'))
ok(B.expunge())
ok(B.uid('STORE', '6', '+FLAGS', '($Later)'))
deadline = time.time() + 10
vanished, fetched = [], []
while time.time() < deadline and (not vanished or not fetched):
    ok(Q.noop())
    vanished += untagged(Q, 'VANISHED')
    fetched += untagged(Q, 'FETCH')
    assert untagged(Q, 'EXPUNGE') == []
    time.sleep(0.1)
assert vanished == [b'4'], vanished
assert any(re.search(rb'UID 6 FLAGS \(\$Later\) MODSEQ \(\d+\)', f) for f in fetched), fetched
# UID EXPUNGE in the QRESYNC session itself: VANISHED and HIGHESTMODSEQ.
ok(Q.uid('STORE', '6', '+FLAGS', '(\\Deleted)'))
typ, data = cmd(Q, 'UID', 'EXPUNGE', '6')
assert typ == 'OK' and data[0].startswith(b'[HIGHESTMODSEQ '), (typ, data)
assert untagged(Q, 'VANISHED') == [b'6'] and untagged(Q, 'EXPUNGE') == []
assert int(re.search(rb'HIGHESTMODSEQ (\d+)', data[0]).group(1)) == highest(B)
B.logout()

# The CONDSTORE-only session still gets EXPUNGE, with MODSEQ in flag updates.
M.untagged_responses.clear()
deadline = time.time() + 10
expunged = []
while time.time() < deadline and len(expunged) < 2:
    ok(M.noop())
    expunged += untagged(M, 'EXPUNGE')
    assert untagged(M, 'VANISHED') == []
    time.sleep(0.1)
assert len(expunged) == 2, expunged

# QRESYNC parameters need ENABLE QRESYNC first; VANISHED needs UID FETCH.
try:
    cmd(M, 'SELECT', 'INBOX (QRESYNC (%d %d))' % (uidvalidity, h0))
    raise SystemExit('QRESYNC accepted without ENABLE QRESYNC')
except imaplib.IMAP4.error:
    pass
try:
    Q.fetch('1', '(FLAGS) (CHANGEDSINCE 1 VANISHED)')
    raise SystemExit('VANISHED accepted in a non-UID FETCH')
except imaplib.IMAP4.error:
    pass
Q.logout()
M.logout()
print('ok')
