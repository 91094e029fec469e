-- The POP3 maildrop lock and the INBOX snapshot in one round trip
-- (crate::maildrop). A function because its statements each take a fresh
-- snapshot (it is VOLATILE): the snapshot SELECT runs after the lease INSERT,
-- so when the INSERT had to wait for the previous holder's release, the
-- SELECT sees that holder's expunges, committed before it released. One
-- statement with both in CTEs would read the messages as they were when it
-- started, before those expunges.
--
-- p_account NULL (the password or the login guard said no) takes nothing.
-- `won` is false while another session holds an unexpired lease;
-- `uidvalidity` is NULL when the account has no INBOX, and then the lease is
-- given back at once. The snapshot comes as arrays in UID order: one row
-- whatever the message count.
--
-- The transaction commits without waiting for its WAL flush
-- (synchronous_commit off for this transaction only): it writes nothing but
-- the lease, and a lease lost in a Postgres crash is one the crash would have
-- made moot anyway (deletions at QUIT are by UID, and a message gone stays
-- gone), and the backend no longer flushes WAL for every login: the walwriter
-- flushes many leases at once, within wal_writer_delay.
CREATE FUNCTION pop3_lock(
    p_account  BIGINT,
    p_resource TEXT,
    p_lease    TEXT,
    p_holder   TEXT,
    p_ttl      DOUBLE PRECISION,
    p_seen     TEXT,
    OUT won          BOOLEAN,
    OUT uidvalidity  BIGINT,
    OUT uids         BIGINT[],
    OUT sizes        BIGINT[],
    OUT blob_ids     TEXT[],
    OUT return_paths TEXT[],
    OUT seen         BOOLEAN[]
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    won := false;
    IF p_account IS NULL THEN
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO leases AS l (account_id, resource, lease_id, holder, expires_at)
    VALUES (p_account, p_resource, p_lease, p_holder, now() + make_interval(secs => p_ttl))
    ON CONFLICT (account_id, resource) DO UPDATE
        SET lease_id = EXCLUDED.lease_id, holder = EXCLUDED.holder,
            expires_at = EXCLUDED.expires_at
        WHERE l.expires_at <= now();
    won := FOUND;
    IF NOT won THEN
        RETURN;
    END IF;
    -- One sort (the primary key's order, by an index scan), not one per
    -- array_agg(... ORDER BY): the arrays follow the ordered subquery.
    SELECT mb.uidvalidity, m.uids, m.sizes, m.blob_ids, m.return_paths, m.seen
      INTO uidvalidity, uids, sizes, blob_ids, return_paths, seen
      FROM mailboxes mb
      CROSS JOIN LATERAL (
          SELECT array_agg(o.uid) AS uids, array_agg(o.size) AS sizes,
                 array_agg(o.blob_id) AS blob_ids, array_agg(o.return_path) AS return_paths,
                 array_agg(p_seen = ANY (o.flags)) AS seen
            FROM (SELECT x.uid, x.size, x.blob_id, x.return_path, x.flags
                    FROM messages x
                   WHERE x.mailbox_id = mb.id AND x.expunged_modseq IS NULL
                   ORDER BY x.uid) o
      ) m
     WHERE mb.account_id = p_account AND mb.name = 'INBOX';
    IF uidvalidity IS NULL THEN
        DELETE FROM leases
         WHERE account_id = p_account AND resource = p_resource AND lease_id = p_lease;
    END IF;
END
$$;
