-- Subscriptions are names, not mailboxes: RFC 3501 6.3.6 forbids removing a
-- subscription because its mailbox was deleted, and LIST-EXTENDED (RFC 5258)
-- reports such names as \NonExistent \Subscribed. CREATE no longer
-- subscribes (the account's default mailboxes still are).
CREATE TABLE subscriptions (
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);

INSERT INTO subscriptions (account_id, name)
    SELECT account_id, name FROM mailboxes WHERE subscribed;

ALTER TABLE mailboxes DROP COLUMN subscribed;
