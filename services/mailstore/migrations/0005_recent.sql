-- RFC 3501 \Recent: a message is recent in exactly one IMAP session, the
-- first to select its mailbox after it arrived. UIDs from first_recent_uid
-- on have not been claimed yet; SELECT advances it to uidnext atomically
-- (as Dovecot keeps a "first recent UID" in its index).
ALTER TABLE mailboxes ADD COLUMN first_recent_uid BIGINT NOT NULL DEFAULT 1;
