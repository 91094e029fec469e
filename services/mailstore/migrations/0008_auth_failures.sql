-- The login guard (mailstore/src/auth_guard.rs): failed logins counted per
-- account, per client address and per (account, address) pair, shared by
-- every protocol and every replica. A row is forgotten once its last
-- failure is older than the lockout window.
CREATE TABLE auth_failures (
    key           text PRIMARY KEY,
    failures      integer     NOT NULL,
    last_at       timestamptz NOT NULL,
    locked_until  timestamptz
);
CREATE INDEX auth_failures_last_at ON auth_failures (last_at);
