-- Deliver's idempotency keys, one row per group instead of one per copy. A
-- key's group is the key up to and including its first '/' (delivery-worker's
-- keys are `<job id>/<recipient>`, so a group is a job), or the whole key
-- when it has none; its member is the rest, so key = group_key || member. A
-- row lists the members stored: a job fanned out to 50 recipients writes one
-- row, not 50 (each with two index entries). Exactly-once is unchanged: a key
-- is stored when its member is in its group's row, and the row is locked
-- (inserted, or selected FOR UPDATE) before the copies are planned.
CREATE TABLE delivery_groups (
    group_key   TEXT PRIMARY KEY,
    members     TEXT[] NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The keys stored so far.
INSERT INTO delivery_groups (group_key, members)
SELECT g, array_agg(m)
  FROM (SELECT CASE WHEN strpos(idempotency_key, '/') > 0
                    THEN left(idempotency_key, strpos(idempotency_key, '/'))
                    ELSE idempotency_key END AS g,
               CASE WHEN strpos(idempotency_key, '/') > 0
                    THEN substr(idempotency_key, strpos(idempotency_key, '/') + 1)
                    ELSE '' END AS m
          FROM deliveries) k
 GROUP BY g;

-- `deliveries` now keeps only what a copy's Sieve scripts sent (written with
-- its sieve_outbound set). A mailstore of before this migration still writes
-- bare keys there during a rolling update; these triggers keep its keys and
-- the groups one set: its key is refused (a duplicate to it) when the group
-- has the member, else the member is added, and its release (DELETE) removes
-- it. Both lock the group row, as Deliver does.
CREATE FUNCTION deliveries_key_into_group() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    g TEXT;
    m TEXT;
    added BOOLEAN;
BEGIN
    IF NEW.sieve_outbound IS NOT NULL THEN
        RETURN NEW;
    END IF;
    IF strpos(NEW.idempotency_key, '/') > 0 THEN
        g := left(NEW.idempotency_key, strpos(NEW.idempotency_key, '/'));
        m := substr(NEW.idempotency_key, strpos(NEW.idempotency_key, '/') + 1);
    ELSE
        g := NEW.idempotency_key;
        m := '';
    END IF;
    INSERT INTO delivery_groups AS d (group_key, members) VALUES (g, ARRAY[m])
    ON CONFLICT (group_key) DO UPDATE SET members = d.members || m
        WHERE NOT (m = ANY (d.members))
    RETURNING true INTO added;
    IF added IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION deliveries_release_from_group() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF strpos(OLD.idempotency_key, '/') > 0 THEN
        UPDATE delivery_groups
           SET members = array_remove(members, substr(OLD.idempotency_key, strpos(OLD.idempotency_key, '/') + 1))
         WHERE group_key = left(OLD.idempotency_key, strpos(OLD.idempotency_key, '/'));
    ELSE
        DELETE FROM delivery_groups WHERE group_key = OLD.idempotency_key;
    END IF;
    RETURN OLD;
END
$$;

CREATE TRIGGER deliveries_key_into_group BEFORE INSERT ON deliveries
    FOR EACH ROW EXECUTE FUNCTION deliveries_key_into_group();
CREATE TRIGGER deliveries_release_from_group AFTER DELETE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION deliveries_release_from_group();

-- A message row is the per-copy cost of a fan-out, and its two foreign keys
-- were nearly half of it: each inserted row ran two referential checks, each
-- a query locking the referenced row (the same mailbox and blob, 50 times
-- for a 50-recipient message). Every writer already guarantees both:
-- Deliver, APPEND and COPY update (so lock) the target mailbox row in the
-- statement or transaction that inserts the message, so the mailbox exists
-- and cannot be deleted before they commit; and a message's blob row is
-- inserted before it or in the same statement, and blob rows are never
-- deleted. What the mailbox key also did, deleting a mailbox's messages with
-- it, is this trigger's job now.
ALTER TABLE messages DROP CONSTRAINT messages_mailbox_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_blob_id_fkey;

CREATE FUNCTION mailbox_messages_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM messages WHERE mailbox_id = OLD.id;
    RETURN OLD;
END
$$;
CREATE TRIGGER mailbox_messages_delete AFTER DELETE ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION mailbox_messages_delete();

-- Read by no query (one was planned for a blob sweeper that does not
-- exist); one more index entry per copy. A sweeper would build it again.
DROP INDEX messages_blob;
