-- RFC 9208 MESSAGE resource: the most messages an account may hold in all
-- its mailboxes (0: no limit). The count itself is the sum of the
-- mailboxes' message_count, which every writer already keeps.
ALTER TABLE accounts ADD COLUMN quota_messages BIGINT NOT NULL DEFAULT 0 CHECK (quota_messages >= 0);
