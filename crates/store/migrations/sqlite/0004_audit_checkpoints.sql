-- Signed checkpoints of the audit chain's head (SPEC §20). They are not audit entries: they
-- are kept beside the log, and copies of them outside the database prove its length.
CREATE TABLE audit_checkpoints (
    id        INTEGER PRIMARY KEY,
    seq       INTEGER NOT NULL,
    head_hash TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    key_id    TEXT    NOT NULL,
    signature TEXT    NOT NULL
) STRICT;
