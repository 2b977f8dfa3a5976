-- Incidents, release validations and their runs, health probes and their history.

CREATE TABLE incidents (
    id          TEXT    PRIMARY KEY,
    title       TEXT    NOT NULL,
    severity    TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    environment TEXT,
    status      TEXT    NOT NULL,
    opened_at   INTEGER NOT NULL,
    opened_by   TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    resolved_at INTEGER,
    resolved_by TEXT,
    -- Every change, oldest first, as a JSON array.
    history     TEXT    NOT NULL
) STRICT;

CREATE INDEX incidents_status ON incidents (status, opened_at);
CREATE INDEX incidents_opened ON incidents (opened_at);

CREATE TABLE validations (
    id          TEXT    PRIMARY KEY,
    release_id  TEXT    NOT NULL,
    environment TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL
) STRICT;

CREATE INDEX validations_release ON validations (release_id, environment, created_at);
CREATE INDEX validations_created ON validations (created_at);

-- A finished run is never updated: running again inserts the next number.
CREATE TABLE validation_runs (
    validation_id TEXT    NOT NULL REFERENCES validations (id),
    number        INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    started_by    TEXT    NOT NULL,
    finished_at   INTEGER,
    -- The gates' results, as a JSON array.
    gates         TEXT    NOT NULL,
    PRIMARY KEY (validation_id, number)
) STRICT;

CREATE INDEX validation_runs_status ON validation_runs (status, validation_id);

CREATE TABLE probes (
    id                    TEXT    PRIMARY KEY,
    name                  TEXT    NOT NULL UNIQUE,
    kind                  TEXT    NOT NULL,
    target                TEXT    NOT NULL,
    method                TEXT,
    expect_status_min     INTEGER,
    expect_status_max     INTEGER,
    timeout_ms            INTEGER NOT NULL,
    interval_ms           INTEGER NOT NULL,
    failure_threshold     INTEGER NOT NULL,
    success_threshold     INTEGER NOT NULL,
    critical              INTEGER NOT NULL,
    source                TEXT    NOT NULL,
    created_at            INTEGER NOT NULL,
    created_by            TEXT    NOT NULL,
    status                TEXT    NOT NULL,
    consecutive_failures  INTEGER NOT NULL,
    consecutive_successes INTEGER NOT NULL,
    last_checked_at       INTEGER,
    last_error            TEXT,
    next_check_at         INTEGER NOT NULL
) STRICT;

CREATE INDEX probes_due ON probes (next_check_at);

CREATE TABLE probe_results (
    id         INTEGER PRIMARY KEY,
    probe_id   TEXT    NOT NULL REFERENCES probes (id) ON DELETE CASCADE,
    at         INTEGER NOT NULL,
    outcome    TEXT    NOT NULL,
    latency_ms INTEGER NOT NULL,
    error      TEXT
) STRICT;

CREATE INDEX probe_results_probe ON probe_results (probe_id, id);

-- The database probe's write: proves a transaction reaches the disk.
CREATE TABLE heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
) STRICT;

INSERT INTO heartbeat (id, at) VALUES (1, 0);
