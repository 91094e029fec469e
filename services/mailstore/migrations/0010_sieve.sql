-- Sieve scripts (RFC 5228) of each account, managed over ManageSieve
-- (RFC 5804) and the CLI. At most one is active per account: the partial
-- unique index makes a second active row a constraint violation, whatever
-- the callers race. `version` changes with every write, so a replica's
-- cached compiled script is known stale from one indexed read.
CREATE SEQUENCE sieve_script_versions;

CREATE TABLE sieve_scripts (
    account_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 255),
    -- The per-account limits are settings; this bounds any one row.
    content     TEXT NOT NULL CHECK (octet_length(content) <= 1048576),
    active      BOOLEAN NOT NULL DEFAULT false,
    version     BIGINT NOT NULL DEFAULT nextval('sieve_script_versions'),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, name)
);
CREATE UNIQUE INDEX sieve_scripts_one_active ON sieve_scripts (account_id) WHERE active;

-- Vacation replies sent (RFC 5230 4.2: one per sender per period and
-- handle). A row older than its period no longer blocks a reply.
CREATE TABLE sieve_vacation_sent (
    account_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    sender      TEXT NOT NULL,
    handle      TEXT NOT NULL,
    sent_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, sender, handle)
);
