-- Services (SPEC §15) and freezes (SPEC §16).
--
-- A `service` column is NULL for the environment as a whole, which is what every record
-- written before this migration concerns.

ALTER TABLE overrides ADD COLUMN service TEXT;

ALTER TABLE canaries ADD COLUMN service TEXT;
-- One active canary per (environment, service), whoever tries to start a second one.
DROP INDEX canaries_one_active;
CREATE UNIQUE INDEX canaries_one_active ON canaries (environment, COALESCE(service, ''))
    WHERE phase IN ('progressing', 'paused');

ALTER TABLE rollbacks ADD COLUMN service TEXT;
ALTER TABLE validations ADD COLUMN service TEXT;

ALTER TABLE releases ADD COLUMN service TEXT;
CREATE INDEX releases_by_service ON releases (environment, COALESCE(service, ''), id);

-- Load shedding per (environment, service); '' is the environment as a whole, so the pair can
-- be the key.
-- (`service` last, as PostgreSQL's ALTER TABLE puts it, so both have one column order.)
CREATE TABLE load_shedding_by_service (
    environment TEXT    NOT NULL,
    enabled     INTEGER NOT NULL,
    percentage  INTEGER NOT NULL,
    reason      TEXT,
    updated_at  INTEGER,
    updated_by  TEXT,
    service     TEXT    NOT NULL,
    PRIMARY KEY (environment, service)
) STRICT;
INSERT INTO load_shedding_by_service
    SELECT environment, enabled, percentage, reason, updated_at, updated_by, '' FROM load_shedding;
DROP TABLE load_shedding;
ALTER TABLE load_shedding_by_service RENAME TO load_shedding;

-- A freeze; the body is the whole freeze as JSON, the columns are what queries select on.
CREATE TABLE freezes (
    id         TEXT    PRIMARY KEY,
    created_at INTEGER NOT NULL,
    -- Set when the freeze was ended by hand.
    ended_at   INTEGER,
    -- The last instant any of its windows can be in force; NULL: no end.
    over_at    INTEGER,
    -- The start of the window last announced with `freeze.started` and not yet with
    -- `freeze.ended`; NULL when none is.
    announced_window_start INTEGER,
    -- When the engine next looks whether a window opened or closed; NULL: never again.
    next_check_at INTEGER,
    body       TEXT    NOT NULL
) STRICT;
CREATE INDEX freezes_created ON freezes (created_at);
CREATE INDEX freezes_next_check ON freezes (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX freezes_over ON freezes (over_at);

-- What a freeze stops, one row per (action, environment, service) it names; '' means every
-- environment / every request. The gate finds the freezes of a request here by key.
CREATE TABLE freeze_scopes (
    action      TEXT NOT NULL,
    environment TEXT NOT NULL,
    service     TEXT NOT NULL,
    freeze_id   TEXT NOT NULL REFERENCES freezes (id),
    PRIMARY KEY (action, environment, service, freeze_id)
) STRICT;
