-- mailfleet schema, owned by mailstore. Applied at start-up by sqlx's
-- migrator, which holds a Postgres advisory lock while it runs, so replicas
-- that start together apply it once.

CREATE TABLE domains (
    name        TEXT PRIMARY KEY CHECK (name = lower(name) AND name <> ''),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id             BIGSERIAL PRIMARY KEY,
    address        TEXT NOT NULL UNIQUE CHECK (address = lower(address)),
    domain         TEXT NOT NULL REFERENCES domains (name) ON DELETE RESTRICT,
    -- argon2id PHC string
    password_hash  TEXT NOT NULL,
    -- 0 means no quota
    quota_bytes    BIGINT NOT NULL DEFAULT 0 CHECK (quota_bytes >= 0),
    used_bytes     BIGINT NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX accounts_domain ON accounts (domain);

-- "local@domain", or "@domain" for a catch-all.
CREATE TABLE aliases (
    address     TEXT PRIMARY KEY CHECK (address = lower(address)),
    domain      TEXT NOT NULL REFERENCES domains (name) ON DELETE RESTRICT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX aliases_domain ON aliases (domain);

CREATE TABLE alias_targets (
    alias       TEXT NOT NULL REFERENCES aliases (address) ON DELETE CASCADE,
    account_id  BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    PRIMARY KEY (alias, account_id)
);
CREATE INDEX alias_targets_account ON alias_targets (account_id);

CREATE TABLE mailboxes (
    id             BIGSERIAL PRIMARY KEY,
    account_id     BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    -- "\Sent", "\Drafts", ... (RFC 6154) or NULL
    special_use    TEXT,
    subscribed     BOOLEAN NOT NULL DEFAULT true,
    uidvalidity    BIGINT NOT NULL CHECK (uidvalidity > 0 AND uidvalidity < 4294967296),
    uidnext        BIGINT NOT NULL DEFAULT 1,
    highestmodseq  BIGINT NOT NULL DEFAULT 1,
    -- Counters kept by every statement that adds, flags or expunges messages,
    -- so STATUS never scans the messages.
    message_count  BIGINT NOT NULL DEFAULT 0,
    unseen_count   BIGINT NOT NULL DEFAULT 0,
    total_size     BIGINT NOT NULL DEFAULT 0,
    UNIQUE (account_id, name)
);

-- One row per stored body: parsed once, shared by every recipient.
CREATE TABLE blobs (
    id          TEXT PRIMARY KEY,   -- sha256, lower-case hex
    size        BIGINT NOT NULL,
    -- mailfleet_mime::MessageMeta
    meta        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    mailbox_id       BIGINT NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid              BIGINT NOT NULL,
    modseq           BIGINT NOT NULL,
    -- system flags ("\Seen", ...) and keywords
    flags            TEXT[] NOT NULL DEFAULT '{}',
    internal_date    TIMESTAMPTZ NOT NULL,
    -- envelope sender served as the first line; '' is the null sender, NULL
    -- means no Return-Path line (APPEND).
    return_path      TEXT,
    -- octets served: blob size + Return-Path line
    size             BIGINT NOT NULL,
    blob_id          TEXT NOT NULL REFERENCES blobs (id),
    -- NULL until expunged; kept for QRESYNC VANISHED
    expunged_modseq  BIGINT,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX messages_blob ON messages (blob_id);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);

-- Idempotency keys of Deliver (job id + recipient).
CREATE TABLE deliveries (
    idempotency_key  TEXT PRIMARY KEY,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_created ON deliveries (created_at);

-- Operators' index of deferred delivery jobs (the queue itself is RabbitMQ).
CREATE TABLE deferred_jobs (
    job_id        TEXT PRIMARY KEY,
    recipients    TEXT[] NOT NULL DEFAULT '{}',
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  TIMESTAMPTZ,
    last_error    TEXT NOT NULL DEFAULT '',
    cancelled     BOOLEAN NOT NULL DEFAULT false,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
