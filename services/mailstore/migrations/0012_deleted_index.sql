-- The messages EXPUNGE removes: live ones flagged \Deleted. Expunged rows
-- stay (QRESYNC), so without this EXPUNGE reads every row a mailbox ever
-- had; with it, only those it removes. Expunge's statements repeat this
-- predicate word for word so that the planner can use the index.
CREATE INDEX messages_deleted ON messages (mailbox_id, uid)
    WHERE expunged_modseq IS NULL AND '\Deleted' = ANY (flags);
