-- Canaries, rollbacks, release history, load shedding, events and their outbox.

CREATE TABLE canaries (
    id           TEXT    PRIMARY KEY,
    environment  TEXT    NOT NULL,
    release_id   TEXT    NOT NULL,
    phase        TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    next_step_at INTEGER,
    -- The whole canary (config, metrics, steps) as JSON; the columns above are for queries.
    body         TEXT    NOT NULL
) STRICT;

-- One active canary per environment, whoever tries to start a second one.
CREATE UNIQUE INDEX canaries_one_active ON canaries (environment)
    WHERE phase IN ('progressing', 'paused');
CREATE INDEX canaries_due ON canaries (next_step_at) WHERE phase IN ('progressing', 'paused');
CREATE INDEX canaries_by_environment ON canaries (environment, started_at);

CREATE TABLE rollbacks (
    id          TEXT    PRIMARY KEY,
    environment TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    body        TEXT    NOT NULL
) STRICT;

CREATE INDEX rollbacks_by_environment ON rollbacks (environment, created_at);
CREATE INDEX rollbacks_created ON rollbacks (created_at);

CREATE TABLE releases (
    id          INTEGER PRIMARY KEY,
    environment TEXT    NOT NULL,
    release_id  TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    change      TEXT    NOT NULL,
    reference   TEXT    NOT NULL,
    changed_by  TEXT    NOT NULL
) STRICT;

CREATE INDEX releases_by_environment ON releases (environment, id);
CREATE INDEX releases_by_release ON releases (environment, release_id);

CREATE TABLE load_shedding (
    environment TEXT    PRIMARY KEY,
    enabled     INTEGER NOT NULL,
    percentage  INTEGER NOT NULL,
    reason      TEXT,
    updated_at  INTEGER,
    updated_by  TEXT
) STRICT;

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    type        TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    environment TEXT,
    data        TEXT    NOT NULL
) STRICT;

-- Work to do outside the database, written in the same transaction as the change that causes
-- it, so it survives restarts: webhook deliveries of events, and rollbacks for the executor.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    event_seq       INTEGER REFERENCES events (seq),
    rollback_id     TEXT    REFERENCES rollbacks (id),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    done_at         INTEGER,
    failed_at       INTEGER,
    last_error      TEXT
) STRICT;

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL AND failed_at IS NULL;
