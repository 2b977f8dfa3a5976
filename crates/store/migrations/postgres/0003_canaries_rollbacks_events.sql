-- Canaries, rollbacks, release history, load shedding, events, the outbox, and the lease that
-- chooses which replica runs the background work.

CREATE TABLE canaries (
    id           TEXT   PRIMARY KEY,
    environment  TEXT   NOT NULL,
    release_id   TEXT   NOT NULL,
    phase        TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    next_step_at BIGINT,
    body         TEXT   NOT NULL
);

CREATE UNIQUE INDEX canaries_one_active ON canaries (environment)
    WHERE phase IN ('progressing', 'paused');
CREATE INDEX canaries_due ON canaries (next_step_at) WHERE phase IN ('progressing', 'paused');
CREATE INDEX canaries_by_environment ON canaries (environment, started_at);

CREATE TABLE rollbacks (
    id          TEXT   PRIMARY KEY,
    environment TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    body        TEXT   NOT NULL
);

CREATE INDEX rollbacks_by_environment ON rollbacks (environment, created_at);
CREATE INDEX rollbacks_created ON rollbacks (created_at);

CREATE TABLE releases (
    id          BIGSERIAL PRIMARY KEY,
    environment TEXT   NOT NULL,
    release_id  TEXT   NOT NULL,
    at          BIGINT NOT NULL,
    change      TEXT   NOT NULL,
    reference   TEXT   NOT NULL,
    changed_by  TEXT   NOT NULL
);

CREATE INDEX releases_by_environment ON releases (environment, id);
CREATE INDEX releases_by_release ON releases (environment, release_id);

CREATE TABLE load_shedding (
    environment TEXT    PRIMARY KEY,
    enabled     BOOLEAN NOT NULL,
    percentage  INTEGER NOT NULL,
    reason      TEXT,
    updated_at  BIGINT,
    updated_by  TEXT
);

CREATE TABLE events (
    seq         BIGINT PRIMARY KEY,
    type        TEXT   NOT NULL,
    at          BIGINT NOT NULL,
    environment TEXT,
    data        TEXT   NOT NULL
);

CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT   NOT NULL,
    target          TEXT   NOT NULL,
    event_seq       BIGINT REFERENCES events (seq),
    rollback_id     TEXT   REFERENCES rollbacks (id),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    done_at         BIGINT,
    failed_at       BIGINT,
    last_error      TEXT
);

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL AND failed_at IS NULL;
