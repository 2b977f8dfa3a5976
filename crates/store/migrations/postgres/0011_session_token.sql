-- Dashboard sign-in with a pasted token (SPEC §21): the session records which token it was
-- exchanged for, so revoking the token ends its sessions too. NULL for single sign-on.
ALTER TABLE sessions ADD COLUMN token_id TEXT;

CREATE INDEX sessions_token ON sessions (token_id);
