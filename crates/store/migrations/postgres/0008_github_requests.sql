-- Deploy engines (SPEC §17): GitHub deployment protection rule requests, each waiting for the
-- gate's answer, which the outbox delivers as a callback; and the lookups of verdicts against a
-- release.

CREATE TABLE github_requests (
    id                 TEXT   PRIMARY KEY,
    -- GitHub's callback for one workflow run, and the deployment of one job to one
    -- environment: one request per deployment, so a redelivered webhook finds the request it
    -- already made, and a re-run (a new deployment) makes a new one.
    callback_url       TEXT   NOT NULL,
    github_environment TEXT   NOT NULL,
    deployment_id      BIGINT NOT NULL,
    state              TEXT   NOT NULL,
    received_at        BIGINT NOT NULL,
    -- When a pending request is decided again at the latest.
    next_decision_at   BIGINT,
    -- The whole request as JSON; the columns above are for queries.
    body               TEXT   NOT NULL,
    UNIQUE (callback_url, github_environment, deployment_id)
);

CREATE INDEX github_requests_pending ON github_requests (next_decision_at) WHERE state = 'pending';

ALTER TABLE outbox ADD COLUMN github_request_id TEXT REFERENCES github_requests (id);

-- A rollback's `fromVersion` as a column, so the verdict "a rollback away from this release was
-- executed here" is one keyed query whatever the history's length.
ALTER TABLE rollbacks ADD COLUMN from_version TEXT;
UPDATE rollbacks SET from_version = body::jsonb ->> 'fromVersion';
CREATE INDEX rollbacks_from_version ON rollbacks (environment, from_version);
