-- The gate's single state row, principals, tokens, overrides and the audit log.
-- Times are BIGINT milliseconds since the Unix epoch (UTC).

CREATE TABLE gate_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    mode              TEXT    NOT NULL,
    threat_level      TEXT    NOT NULL,
    lockdown_reason   TEXT,
    lockdown_since    BIGINT,
    mode_reason       TEXT,
    mode_changed_at   BIGINT,
    mode_changed_by   TEXT,
    threat_reason     TEXT,
    threat_changed_at BIGINT,
    threat_changed_by TEXT
);

INSERT INTO gate_state (id, mode, threat_level) VALUES (1, 'enforce', 'none');

CREATE TABLE principals (
    name       TEXT   PRIMARY KEY,
    role       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    id          TEXT   PRIMARY KEY,
    name        TEXT   NOT NULL REFERENCES principals (name),
    secret_hash BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT   NOT NULL,
    revoked_at  BIGINT
);

CREATE INDEX tokens_name ON tokens (name);

CREATE TABLE overrides (
    id            TEXT    PRIMARY KEY,
    action        TEXT    NOT NULL,
    environment   TEXT    NOT NULL,
    release_id    TEXT,
    reason        TEXT    NOT NULL,
    approver      TEXT    NOT NULL,
    approver_role TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    revoked_at    BIGINT,
    revoked_by    TEXT,
    use_count     BIGINT  NOT NULL DEFAULT 0,
    last_used_at  BIGINT,
    expiry_announced BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX overrides_scope ON overrides (action, environment, expires_at) WHERE revoked_at IS NULL;
CREATE INDEX overrides_expiry ON overrides (expires_at) WHERE revoked_at IS NULL;
CREATE INDEX overrides_created ON overrides (created_at);
CREATE INDEX overrides_unannounced ON overrides (expires_at) WHERE NOT expiry_announced AND revoked_at IS NULL;

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    principal   TEXT   NOT NULL,
    role        TEXT,
    action      TEXT   NOT NULL,
    environment TEXT,
    decision    TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    details     TEXT   NOT NULL,
    prev_hash   TEXT   NOT NULL,
    hash        TEXT   NOT NULL
);

CREATE INDEX audit_action ON audit_log (action, seq);
CREATE INDEX audit_principal ON audit_log (principal, seq);
CREATE INDEX audit_environment ON audit_log (environment, seq);
CREATE INDEX audit_decision ON audit_log (decision, seq);
CREATE INDEX audit_at ON audit_log (at);

-- The head of the audit chain. Every append locks this row (FOR UPDATE) until its transaction
-- commits, so appends from any number of replicas form one chain, in commit order.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);

INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
