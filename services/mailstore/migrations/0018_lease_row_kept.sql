-- A lease's row stays once made: taking the lease UPDATEs it and releasing
-- it marks it expired, where they used to INSERT and DELETE it. Every POP3
-- session took and released the maildrop lease, so every session left a dead
-- row and a dead index entry behind for vacuum (the INSERT's new tuple needs
-- a new primary-key entry); an UPDATE that changes no indexed column is a HOT
-- update, which the page reclaims by itself. Release (crate::lease) sets
-- expires_at to -infinity.
--
-- Same signature and semantics as 0015's: the UPDATE takes the row only when
-- its lease has run out (judged by Postgres's clock); a row that does not
-- exist yet (the account's first login) is inserted, and an INSERT that meets
-- a live lease takes nothing. An UPDATE that waits for a concurrent release
-- re-reads the row afterwards and wins.
CREATE OR REPLACE FUNCTION pop3_lock(
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
    UPDATE leases
       SET lease_id = p_lease, holder = p_holder,
           expires_at = now() + make_interval(secs => p_ttl)
     WHERE account_id = p_account AND resource = p_resource AND expires_at <= now();
    won := FOUND;
    IF NOT won THEN
        INSERT INTO leases (account_id, resource, lease_id, holder, expires_at)
        VALUES (p_account, p_resource, p_lease, p_holder, now() + make_interval(secs => p_ttl))
        ON CONFLICT (account_id, resource) DO NOTHING;
        won := FOUND;
    END IF;
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
        UPDATE leases SET expires_at = '-infinity'
         WHERE account_id = p_account AND resource = p_resource AND lease_id = p_lease;
    END IF;
END
$$;
