-- Expiring exclusive locks on an account's resource (the POP3 maildrop lock,
-- RFC 1939 section 8). A lease, not a session lock: a crashed holder's row
-- simply runs out, and expiry is judged by Postgres's clock alone so replicas
-- with skewed clocks agree.
CREATE TABLE leases (
    account_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    resource    TEXT NOT NULL,
    lease_id    TEXT NOT NULL,
    holder      TEXT NOT NULL DEFAULT '',
    expires_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, resource)
);
