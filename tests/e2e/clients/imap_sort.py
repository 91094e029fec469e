"""IMAP SORT and THREAD (RFC 5256, DISPLAYFROM/DISPLAYTO of RFC 5957),
\\Recent in exactly one session (RFC 3501) and ENABLE IMAP4rev2 (RFC 9051),
with Python's imaplib and, for literals and bad input, a raw socket.

Usage: imap_sort.py PORT USER PASS
"""
import imaplib, socket, sys, time

import imap_common
from imap_common import ok

PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def login():
    return imap_common.login(PORT, USER, PASS)


def nums(data):
    return [int(x) for x in (data[0] or b'').split()]


def append(M, box, msg, date):
    # imaplib wants a struct_time-ish tuple or a quoted date string.
    ok(M.append(box, None, '"%s"' % date, msg))


def mail(headers, body=b'body\r\n'):
    return b''.join(h.encode() + b'\r\n' for h in headers) + b'\r\n' + body


# ---- SORT ----------------------------------------------------------------
M = login()
ok(M.create('sortbox'))
# A message appended and expunged first, so UIDs (2, 3, 4) differ from
# sequence numbers (1, 2, 3).
append(M, 'sortbox', mail(['Subject: gone']), '01-Jan-2020 00:00:00 +0000')
M1 = mail([
    'From: Zed <carol@example.org>',
    'To: dave@example.org',
    'Cc: bob@example.org',
    'Subject: Re: banana',
    'Date: Fri, 3 Jan 2020 10:00:00 +0000',
], b'medium sized body ' * 5 + b'\r\n')
M2 = mail([
    'From: alice@example.org',
    'To: Bob B <carol@example.org>',
    'Cc: alice@example.org',
    'Subject: apple',
    'Date: Wed, 1 Jan 2020 10:00:00 +0000',
], b'x\r\n')
M3 = mail([
    'From: Amy <bob@example.org>',
    'To: alice@example.org',
    'Subject: [list] Cherry',
], b'a large body ' * 40 + b'\r\n')
append(M, 'sortbox', M1, '05-Jan-2020 00:00:00 +0000')
append(M, 'sortbox', M2, '07-Jan-2020 00:00:00 +0000')
append(M, 'sortbox', M3, '02-Jan-2020 00:00:00 +0000')
ok(M.select('sortbox'))
ok(M.store('1', '+FLAGS', '\\Deleted'))
ok(M.expunge())

caps = ok(M.capability())[0].split()
for c in (b'SORT', b'SORT=DISPLAY', b'THREAD=REFERENCES', b'THREAD=ORDEREDSUBJECT'):
    assert c in caps, (c, caps)

expected = {
    'ARRIVAL': [3, 1, 2],
    'DATE': [2, 3, 1],  # message 3 has no Date: its internal date stands in
    'FROM': [2, 3, 1],
    'TO': [3, 2, 1],
    'CC': [3, 2, 1],  # no Cc sorts first
    'SUBJECT': [2, 1, 3],  # "Re:" and "[list]" are not part of the base subject
    'SIZE': [2, 1, 3],
    'DISPLAYFROM': [2, 3, 1],
    'DISPLAYTO': [3, 2, 1],
}
for key, order in expected.items():
    got = nums(ok(M.sort('(%s)' % key, 'UTF-8', 'ALL')))
    assert got == order, (key, got, order)
    rev = nums(ok(M.sort('(REVERSE %s)' % key, 'UTF-8', 'ALL')))
    assert rev == order[::-1], ('REVERSE', key, rev)
    uids = nums(ok(M.uid('SORT', '(%s)' % key, 'UTF-8', 'ALL')))
    assert uids == [n + 1 for n in order], ('UID', key, uids)
# Several criteria, and any SEARCH key.
assert nums(ok(M.sort('(REVERSE ARRIVAL)', 'US-ASCII', 'NOT', 'FROM', 'alice'))) == [1, 3]
assert nums(ok(M.sort('(SUBJECT SIZE)', 'UTF-8', 'SMALLER', '300'))) == [2, 1]
assert nums(ok(M.sort('(DATE)', 'UTF-8', 'SUBJECT', 'nothing-matches'))) == []
typ, data = M.sort('(DATE)', 'KOI8-R', 'ALL')
assert typ == 'NO' and b'BADCHARSET' in data[0], (typ, data)
M.logout()

# ---- THREAD --------------------------------------------------------------
M = login()
ok(M.create('threads'))
T = [
    ['Message-ID: <a@t>', 'Subject: Plan', 'Date: Wed, 1 Jan 2020 10:00:00 +0000'],
    ['Message-ID: <b@t>', 'In-Reply-To: <a@t>', 'Subject: Re: Plan',
     'Date: Thu, 2 Jan 2020 10:00:00 +0000'],
    ['Message-ID: <c@t>', 'References: <a@t>\r\n <b@t>', 'Subject: Re: Plan',
     'Date: Fri, 3 Jan 2020 10:00:00 +0000'],
    # Replies to a message this mailbox never got (<lost@t>).
    ['Message-ID: <d@t>', 'In-Reply-To: <lost@t>', 'References: <a@t> <lost@t>',
     'Subject: Re: Plan', 'Date: Sat, 4 Jan 2020 10:00:00 +0000'],
    ['Message-ID: <e@t>', 'References: <a@t> <lost@t>', 'Subject: Re: Plan',
     'Date: Sun, 5 Jan 2020 10:00:00 +0000'],
    ['Message-ID: <f@t>', 'Subject: Other', 'Date: Tue, 31 Dec 2019 10:00:00 +0000'],
    # Two replies whose common parent is missing entirely.
    ['Message-ID: <g@t>', 'References: <gone@t>', 'Subject: Re: Lost',
     'Date: Mon, 6 Jan 2020 10:00:00 +0000'],
    ['Message-ID: <h@t>', 'References: <gone@t>', 'Subject: Re: Lost',
     'Date: Tue, 7 Jan 2020 10:00:00 +0000'],
]
for h in T:
    append(M, 'threads', mail(h), '10-Jan-2020 00:00:00 +0000')
ok(M.select('threads'))
refs = ok(M.thread('REFERENCES', 'UTF-8', 'ALL'))
assert refs == [b'(6)(1 (2 3)(4)(5))((7)(8))'], refs
uid_refs = ok(M.uid('THREAD', 'REFERENCES', 'UTF-8', 'ALL'))
assert uid_refs == refs, uid_refs
subj = ok(M.thread('ORDEREDSUBJECT', 'UTF-8', 'ALL'))
assert subj == [b'(6)(1 (2)(3)(4)(5))(7 8)'], subj
# A search key narrows the set: without 2 the chain 1 -> 3 stays linked
# through the References of 3.
part = ok(M.thread('REFERENCES', 'UTF-8', 'NOT', 'HEADER', 'Message-ID', 'b@t'))
assert part == [b'(6)(1 (3)(4)(5))((7)(8))'], part
M.logout()


# ---- raw socket: literals in SORT keys, bad input ------------------------
class Raw:
    def __init__(self):
        self.s = socket.create_connection(('127.0.0.1', PORT))
        self.f = self.s.makefile('rb')
        assert self.f.readline().startswith(b'* OK')

    def send(self, data):
        self.s.sendall(data)

    def until(self, tag):
        lines = []
        while True:
            l = self.f.readline()
            assert l, lines
            lines.append(l)
            if l.startswith(tag.encode() + b' '):
                return lines

    def cmd(self, tag, line):
        self.send(('%s %s\r\n' % (tag, line)).encode())
        return self.until(tag)


r = Raw()
bad = r.cmd('b0', 'SORT (DATE) UTF-8 ALL')
assert bad[-1].startswith(b'b0 BAD'), bad
r.cmd('b1', 'LOGIN %s %s' % (USER, PASS))
bad = r.cmd('b2', 'SORT (DATE) UTF-8 ALL')
assert bad[-1].startswith(b'b2 BAD'), bad  # nothing selected
r.cmd('b3', 'SELECT sortbox')
for i, line in enumerate(['SORT (BOGUS) UTF-8 ALL', 'SORT () UTF-8 ALL',
                          'SORT (REVERSE) UTF-8 ALL', 'SORT DATE UTF-8 ALL',
                          'SORT (DATE) UTF-8', 'THREAD MAGIC UTF-8 ALL',
                          'SORT (DATE) UTF-8 (ALL', 'UID THREAD']):
    got = r.cmd('c%d' % i, line)
    assert got[-1].startswith(b'c%d BAD' % i), (line, got)
# A synchronising literal inside the search keys.
r.send(b'l1 SORT (SUBJECT) UTF-8 SUBJECT {6}\r\n')
assert r.f.readline().startswith(b'+ ')
r.send(b'banana\r\n')
got = r.until('l1')
assert got[0] == b'* SORT 1\r\n' and got[-1].startswith(b'l1 OK'), got
# A non-synchronising one (LITERAL+) with UTF-8 text.
word = 'Cherry'.encode()
r.send(b'l2 UID SORT (DATE) UTF-8 OR SUBJECT {%d+}\r\n%s SUBJECT apple\r\n' % (len(word), word))
got = r.until('l2')
assert got[0] == b'* SORT 3 4\r\n', got
r.cmd('l3', 'LOGOUT')


# ---- \Recent: exactly one session sees a new message as recent ------------
C = login()
ok(C.create('recentbox'))
append(C, 'recentbox', mail(['Subject: new one']), '01-Feb-2020 00:00:00 +0000')
st = ok(C.status('recentbox', '(MESSAGES RECENT)'))
assert b'RECENT 1' in st[0], st

A = login()
ok(A.select('recentbox'))
assert A.response('RECENT')[1] == [b'1'], A.response('RECENT')
flags = ok(A.fetch('1', '(FLAGS)'))
assert b'\\Recent' in flags[0], flags
assert nums(ok(A.search(None, 'RECENT'))) == [1]
assert nums(ok(A.search(None, 'NEW'))) == [1]
assert nums(ok(A.search(None, 'OLD'))) == []

B = login()
ok(B.select('recentbox'))
assert B.response('RECENT')[1] == [b'0'], B.response('RECENT')
flags = ok(B.fetch('1', '(FLAGS)'))
assert b'\\Recent' not in flags[0], flags
assert nums(ok(B.search(None, 'RECENT'))) == []
assert nums(ok(B.search(None, 'OLD'))) == [1]
st = ok(C.status('recentbox', '(RECENT)'))
assert b'RECENT 0' in st[0], st

# A second message: EXAMINE shows it as recent but does not take it; the
# selected session A takes it when it next synchronises.
append(C, 'recentbox', mail(['Subject: newer']), '02-Feb-2020 00:00:00 +0000')
ok(B.select('recentbox', readonly=True))
assert B.response('RECENT')[1] == [b'1'], B.response('RECENT')
st = ok(C.status('recentbox', '(RECENT)'))
assert b'RECENT 1' in st[0], st
deadline = time.time() + 20
while True:
    ok(A.noop())
    exists = A.response('EXISTS')[1]
    if exists and exists[-1] == b'2':
        break
    assert time.time() < deadline, 'A never saw the second message'
    time.sleep(0.1)
assert nums(ok(A.search(None, 'RECENT'))) == [1, 2]
st = ok(C.status('recentbox', '(RECENT)'))
assert b'RECENT 0' in st[0], st
for M in (A, B, C):
    M.logout()

# ---- ENABLE IMAP4rev2 ------------------------------------------------------
M = login()
caps = ok(M.capability())[0].split()
assert b'IMAP4rev1' in caps and b'IMAP4rev2' in caps, caps
append(M, 'recentbox', mail(['Subject: for rev2']), '03-Feb-2020 00:00:00 +0000')
ok(M.enable('IMAP4rev2'))
assert M.response('ENABLED')[1] == [b'IMAP4rev2'], M.response('ENABLED')
ok(M.select('sortbox'))
assert M.response('RECENT')[1] == [None], 'no RECENT after ENABLE IMAP4rev2'
lists = M.response('LIST')[1]
assert lists and b'sortbox' in lists[0], lists
ok(M.select('recentbox'))
assert 'CLOSED' in M.untagged_responses, M.untagged_responses
assert M.response('RECENT')[1] == [None]
flags = ok(M.fetch('3', '(FLAGS)'))
assert b'\\Recent' not in flags[0], flags
# SEARCH answers are ESEARCH, tagged with the command's tag.
ok(M.search(None, 'ALL'))
es = M.response('ESEARCH')[1]
assert len(es) == 1 and es[0].endswith(b') ALL 1:3') and es[0].startswith(b'(TAG "'), es
ok(M.uid('SEARCH', 'SUBJECT', 'newer'))
es = M.response('ESEARCH')[1]
assert es[0].endswith(b') UID ALL 2'), es
ok(M.search(None, 'SUBJECT', 'nothing-matches'))
es = M.response('ESEARCH')[1]
assert es[0].startswith(b'(TAG "') and es[0].endswith(b'")'), es
ok(M.store('1', '+FLAGS', '\\Deleted'))
st = ok(M.status('recentbox', '(MESSAGES DELETED)'))
assert b'MESSAGES 3 DELETED 1' in st[0], st
# SORT keeps its own answer form.
assert nums(ok(M.sort('(ARRIVAL)', 'UTF-8', 'ALL'))) == [1, 2, 3]
M.logout()

print('ok')
