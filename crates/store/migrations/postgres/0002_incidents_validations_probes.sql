-- Incidents, release validations and their runs, health probes and their history.

CREATE TABLE incidents (
    id          TEXT   PRIMARY KEY,
    title       TEXT   NOT NULL,
    severity    TEXT   NOT NULL,
    category    TEXT   NOT NULL,
    environment TEXT,
    status      TEXT   NOT NULL,
    opened_at   BIGINT NOT NULL,
    opened_by   TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL,
    resolved_at BIGINT,
    resolved_by TEXT,
    history     TEXT   NOT NULL
);

CREATE INDEX incidents_status ON incidents (status, opened_at);
CREATE INDEX incidents_opened ON incidents (opened_at);

CREATE TABLE validations (
    id          TEXT   PRIMARY KEY,
    release_id  TEXT   NOT NULL,
    environment TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT   NOT NULL
);

CREATE INDEX validations_release ON validations (release_id, environment, created_at);
CREATE INDEX validations_created ON validations (created_at);

CREATE TABLE validation_runs (
    validation_id TEXT    NOT NULL REFERENCES validations (id),
    number        INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    started_at    BIGINT  NOT NULL,
    started_by    TEXT    NOT NULL,
    finished_at   BIGINT,
    gates         TEXT    NOT NULL,
    PRIMARY KEY (validation_id, number)
);

CREATE INDEX validation_runs_status ON validation_runs (status, validation_id);

CREATE TABLE probes (
    id                    TEXT    PRIMARY KEY,
    name                  TEXT    NOT NULL UNIQUE,
    kind                  TEXT    NOT NULL,
    target                TEXT    NOT NULL,
    method                TEXT,
    expect_status_min     INTEGER,
    expect_status_max     INTEGER,
    timeout_ms            BIGINT  NOT NULL,
    interval_ms           BIGINT  NOT NULL,
    failure_threshold     BIGINT  NOT NULL,
    success_threshold     BIGINT  NOT NULL,
    critical              BOOLEAN NOT NULL,
    source                TEXT    NOT NULL,
    created_at            BIGINT  NOT NULL,
    created_by            TEXT    NOT NULL,
    status                TEXT    NOT NULL,
    consecutive_failures  BIGINT  NOT NULL,
    consecutive_successes BIGINT  NOT NULL,
    last_checked_at       BIGINT,
    last_error            TEXT,
    next_check_at         BIGINT  NOT NULL
);

CREATE INDEX probes_due ON probes (next_check_at);

CREATE TABLE probe_results (
    id         BIGSERIAL PRIMARY KEY,
    probe_id   TEXT   NOT NULL REFERENCES probes (id) ON DELETE CASCADE,
    at         BIGINT NOT NULL,
    outcome    TEXT   NOT NULL,
    latency_ms BIGINT NOT NULL,
    error      TEXT
);

CREATE INDEX probe_results_probe ON probe_results (probe_id, id);

CREATE TABLE heartbeat (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at BIGINT  NOT NULL
);

INSERT INTO heartbeat (id, at) VALUES (1, 0);
