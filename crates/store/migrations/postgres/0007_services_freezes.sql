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
ALTER TABLE load_shedding ADD COLUMN service TEXT NOT NULL DEFAULT '';
ALTER TABLE load_shedding DROP CONSTRAINT load_shedding_pkey;
ALTER TABLE load_shedding ADD PRIMARY KEY (environment, service);

-- A freeze; the body is the whole freeze as JSON, the columns are what queries select on.
CREATE TABLE freezes (
    id         TEXT    PRIMARY KEY,
    created_at BIGINT  NOT NULL,
    -- Set when the freeze was ended by hand.
    ended_at   BIGINT,
    -- The last instant any of its windows can be in force; NULL: no end.
    over_at    BIGINT,
    -- The start of the window last announced with `freeze.started` and not yet with
    -- `freeze.ended`; NULL when none is.
    announced_window_start BIGINT,
    -- When the engine next looks whether a window opened or closed; NULL: never again.
    next_check_at BIGINT,
    body       TEXT    NOT NULL
);
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
);
