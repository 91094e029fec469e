-- Outbound mail: DKIM signing keys per local domain, and what the operators'
-- queue tools need in the deferred-jobs index.

CREATE TABLE dkim_keys (
    domain       TEXT PRIMARY KEY REFERENCES domains (name) ON DELETE CASCADE,
    selector     TEXT NOT NULL,
    algorithm    TEXT NOT NULL,
    -- PKCS#8 DER of the private key, or "MFS1" || nonce || AES-256-GCM ciphertext
    -- (the domain as associated data) when sealed; SubjectPublicKeyInfo DER of the public key.
    private_key  BYTEA NOT NULL,
    public_key   BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER TABLE deferred_jobs
    -- The encoded DeliveryJob of the scheduled retry copy ("retry now" republishes it).
    ADD COLUMN job               BYTEA,
    ADD COLUMN return_path       TEXT NOT NULL DEFAULT '',
    ADD COLUMN blob_id           TEXT NOT NULL DEFAULT '',
    ADD COLUMN size              BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN first_attempt     TIMESTAMPTZ,
    -- Copies older than this generation are stale (an operator retried the job).
    ADD COLUMN retry_generation  INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN retry_requested   BOOLEAN NOT NULL DEFAULT false;

CREATE INDEX deferred_jobs_retry_requested ON deferred_jobs (updated_at)
    WHERE retry_requested AND NOT cancelled;
CREATE INDEX deferred_jobs_next_attempt ON deferred_jobs (next_attempt);
