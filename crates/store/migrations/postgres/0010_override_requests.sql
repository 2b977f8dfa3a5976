-- The two-person rule (SPEC §19): requests for overrides that other people approve, and
-- their votes.

-- Every approver of an override, as a JSON array of names (absent before this version: the
-- creator alone), and the request whose approvals made it. One request makes at most one
-- override, whatever replica counts the last approval.
ALTER TABLE overrides ADD COLUMN approvers TEXT;
ALTER TABLE overrides ADD COLUMN request_id TEXT;
CREATE UNIQUE INDEX overrides_request ON overrides (request_id);

CREATE TABLE override_requests (
    id                TEXT    PRIMARY KEY,
    action            TEXT    NOT NULL,
    environment       TEXT    NOT NULL,
    service           TEXT,
    release_id        TEXT,
    reason            TEXT    NOT NULL,
    ttl_minutes       BIGINT NOT NULL,
    requested_by      TEXT    NOT NULL,
    requested_by_role TEXT    NOT NULL,
    required          BIGINT NOT NULL,
    -- The roles whose votes count, comma-separated, fixed when the request was made.
    approver_roles    TEXT    NOT NULL,
    -- pending, approved, denied or expired.
    status            TEXT    NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    decided_at        BIGINT,
    override_id       TEXT
);

CREATE INDEX override_requests_created ON override_requests (created_at);
-- The engine's look for pending requests whose time is up.
CREATE INDEX override_requests_pending ON override_requests (expires_at) WHERE status = 'pending';

-- One vote per person per request, by the primary key; `position` keeps the order they were
-- cast in (1, 2, ...), even within one millisecond.
CREATE TABLE override_request_votes (
    request_id        TEXT    NOT NULL REFERENCES override_requests (id),
    position          BIGINT NOT NULL,
    principal         TEXT    NOT NULL,
    role              TEXT    NOT NULL,
    vote              TEXT    NOT NULL,
    comment           TEXT,
    at                BIGINT NOT NULL,
    authenticated_by  TEXT    NOT NULL,
    PRIMARY KEY (request_id, principal)
);
