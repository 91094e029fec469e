"""What the IMAP client scripts beside this file share: logging in with
Python's imaplib, and reading the answers they check."""
import imaplib
import re


def login(port, user, password):
    M = imaplib.IMAP4('127.0.0.1', port)
    M.login(user, password)
    return M


def ok(result):
    """The data of a command that must have answered OK."""
    typ, data = result
    assert typ == 'OK', (typ, data)
    return data


def appenduid(data):
    """The UID of an APPEND's [APPENDUID v uid] response code."""
    m = re.search(rb'APPENDUID (\d+) (\d+)', data[0])
    assert m, data
    return int(m.group(2))
