-- Single sign-on (SPEC §18): logins in progress, whose `state` a callback must present once,
-- and the sessions they start. Both live in the database, so a login begun on one replica
-- completes on another, and a session revoked anywhere is revoked everywhere.

CREATE TABLE login_requests (
    -- SHA-256 of the `state` sent to the identity provider: the state itself is not kept.
    state_hash    BYTEA   PRIMARY KEY,
    -- SHA-256 of the cookie that ties the login to the browser that began it (no login CSRF).
    browser_hash  BYTEA   NOT NULL,
    nonce         TEXT    NOT NULL,
    pkce_verifier TEXT    NOT NULL,
    -- Where the browser goes once signed in (a path on this server).
    return_to     TEXT,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);

CREATE INDEX login_requests_expiry ON login_requests (expires_at);

CREATE TABLE sessions (
    -- The public part of the cookie, used to find the record, list and revoke it.
    id           TEXT    PRIMARY KEY,
    -- SHA-256 of the cookie's secret part.
    secret_hash  BYTEA   NOT NULL,
    principal    TEXT    NOT NULL REFERENCES principals (name),
    csrf_token   TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    last_seen_at BIGINT  NOT NULL,
    -- The absolute end of the session, whatever its activity.
    expires_at   BIGINT  NOT NULL,
    revoked_at   BIGINT,
    revoked_by   TEXT
);

CREATE INDEX sessions_principal ON sessions (principal);
