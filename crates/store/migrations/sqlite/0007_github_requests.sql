-- GitHub deployment protection rule requests (SPEC §17): each waits for the gate's answer,
-- which the outbox delivers as a callback.

CREATE TABLE github_requests (
    id                 TEXT    PRIMARY KEY,
    -- GitHub's callback for one workflow run and its environment: one request per pair, so a
    -- redelivered webhook finds the request it already made.
    callback_url       TEXT    NOT NULL,
    github_environment TEXT    NOT NULL,
    state              TEXT    NOT NULL,
    received_at        INTEGER NOT NULL,
    -- When a pending request is decided again at the latest.
    next_decision_at   INTEGER,
    -- The whole request as JSON; the columns above are for queries.
    body               TEXT    NOT NULL,
    UNIQUE (callback_url, github_environment)
) STRICT;

CREATE INDEX github_requests_pending ON github_requests (next_decision_at) WHERE state = 'pending';

ALTER TABLE outbox ADD COLUMN github_request_id TEXT REFERENCES github_requests (id);
