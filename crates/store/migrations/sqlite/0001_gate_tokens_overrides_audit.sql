-- The gate's single state row, tokens, overrides and the audit log.
-- Times are INTEGER milliseconds since the Unix epoch (UTC).

CREATE TABLE gate_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    mode              TEXT    NOT NULL,
    threat_level      TEXT    NOT NULL,
    lockdown_reason   TEXT,
    lockdown_since    INTEGER,
    mode_reason       TEXT,
    mode_changed_at   INTEGER,
    mode_changed_by   TEXT,
    threat_reason     TEXT,
    threat_changed_at INTEGER,
    threat_changed_by TEXT
) STRICT;

INSERT INTO gate_state (id, mode, threat_level) VALUES (1, 'enforce', 'none');

-- A principal's role never changes, so a name means one identity for the audit log's lifetime.
CREATE TABLE principals (
    name       TEXT    PRIMARY KEY,
    role       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- A principal may hold several tokens (rotation); each is revoked on its own.
CREATE TABLE tokens (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL REFERENCES principals (name),
    secret_hash BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    revoked_at  INTEGER
) STRICT;

CREATE INDEX tokens_name ON tokens (name);

CREATE TABLE overrides (
    id            TEXT    PRIMARY KEY,
    action        TEXT    NOT NULL,
    environment   TEXT    NOT NULL,
    release_id    TEXT,
    reason        TEXT    NOT NULL,
    approver      TEXT    NOT NULL,
    approver_role TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoked_by    TEXT,
    use_count     INTEGER NOT NULL DEFAULT 0,
    last_used_at  INTEGER,
    -- Whether the override's expiry has been announced (event and audit entry).
    expiry_announced INTEGER NOT NULL DEFAULT 0
) STRICT;

-- The gate's lookup: unrevoked overrides for one action and environment that have not expired.
CREATE INDEX overrides_scope ON overrides (action, environment, expires_at) WHERE revoked_at IS NULL;
CREATE INDEX overrides_expiry ON overrides (expires_at) WHERE revoked_at IS NULL;
CREATE INDEX overrides_created ON overrides (created_at);
CREATE INDEX overrides_unannounced ON overrides (expires_at) WHERE NOT expiry_announced AND revoked_at IS NULL;

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    principal   TEXT    NOT NULL,
    role        TEXT,
    action      TEXT    NOT NULL,
    environment TEXT,
    decision    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    details     TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
) STRICT;

-- Newest-first pages filtered by one column walk these indexes in seq order.
CREATE INDEX audit_action ON audit_log (action, seq);
CREATE INDEX audit_principal ON audit_log (principal, seq);
CREATE INDEX audit_environment ON audit_log (environment, seq);
CREATE INDEX audit_decision ON audit_log (decision, seq);
CREATE INDEX audit_at ON audit_log (at);

-- The head of the audit chain: seq and hash of the last entry, updated with every append in the
-- same transaction.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT    NOT NULL
) STRICT;

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
