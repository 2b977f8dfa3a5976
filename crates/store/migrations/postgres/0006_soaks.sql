-- Soaks (SPEC §23): a release watched in an environment for a while against its thresholds.
-- The body is the whole soak (its evaluations included) as JSON; the columns are what queries
-- select on.
CREATE TABLE soaks (
    id                 TEXT    PRIMARY KEY,
    release_id         TEXT    NOT NULL,
    environment        TEXT    NOT NULL,
    service            TEXT,
    status             TEXT    NOT NULL,
    started_at         BIGINT  NOT NULL,
    next_evaluation_at BIGINT,
    body               TEXT    NOT NULL
);

-- One running soak per (release, environment, service).
CREATE UNIQUE INDEX soaks_one_running ON soaks (release_id, environment, COALESCE(service, ''))
    WHERE status = 'running';
CREATE INDEX soaks_due ON soaks (next_evaluation_at) WHERE status = 'running';
CREATE INDEX soaks_release ON soaks (release_id, environment, status);
CREATE INDEX soaks_started ON soaks (started_at);
