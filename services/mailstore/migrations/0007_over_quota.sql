-- APPEND writes the mailbox row, the account's usage and the message in one
-- statement, without an explicit transaction. When the account turns out to
-- be over quota under its row lock, that statement must fail so that the
-- mailbox row's update is undone with it; plain SQL cannot raise an error,
-- so this function does (SQLSTATE MF001, which mailstore reads as over quota).
CREATE FUNCTION mailfleet_over_quota() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'over quota' USING ERRCODE = 'MF001';
END
$$;
