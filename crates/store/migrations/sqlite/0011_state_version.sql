-- The version of the gate's inputs (SPEC §22). Every change to a table the gate decides from
-- (mode and threat level, overrides, incidents, freezes, principals and tokens) increments
-- `audit_head.state_version` in the same transaction, by trigger, whoever makes it: a replica, the
-- CLI on the database file, a person at a SQL prompt. A writer reads the version with the chain's
-- head at the start of every batch and keeps what it read of those tables only while the version
-- is unchanged. An override's use count, last use and expiry announcement are not inputs of a
-- decision, so their updates leave the version alone.
ALTER TABLE audit_head ADD COLUMN state_version INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER gate_state_insert_state_version AFTER INSERT ON gate_state
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER gate_state_delete_state_version AFTER DELETE ON gate_state
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER gate_state_update_state_version AFTER UPDATE ON gate_state
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER principals_insert_state_version AFTER INSERT ON principals
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER principals_delete_state_version AFTER DELETE ON principals
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER principals_update_state_version AFTER UPDATE ON principals
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER tokens_insert_state_version AFTER INSERT ON tokens
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER tokens_delete_state_version AFTER DELETE ON tokens
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER tokens_update_state_version AFTER UPDATE ON tokens
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER incidents_insert_state_version AFTER INSERT ON incidents
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER incidents_delete_state_version AFTER DELETE ON incidents
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER incidents_update_state_version AFTER UPDATE ON incidents
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER freezes_insert_state_version AFTER INSERT ON freezes
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER freezes_delete_state_version AFTER DELETE ON freezes
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER freezes_update_state_version AFTER UPDATE ON freezes
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER freeze_scopes_insert_state_version AFTER INSERT ON freeze_scopes
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER freeze_scopes_delete_state_version AFTER DELETE ON freeze_scopes
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER freeze_scopes_update_state_version AFTER UPDATE ON freeze_scopes
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER overrides_insert_state_version AFTER INSERT ON overrides
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER overrides_delete_state_version AFTER DELETE ON overrides
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;

CREATE TRIGGER overrides_update_state_version AFTER UPDATE OF id, action, environment, release_id, reason, approver, approver_role, created_at, expires_at, revoked_at, revoked_by, service, approvers, request_id ON overrides
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
END;
