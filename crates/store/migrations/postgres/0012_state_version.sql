-- The version of the gate's inputs (SPEC §22). Every change to a table the gate decides from
-- (mode and threat level, overrides, incidents, freezes, principals and tokens) increments
-- `audit_head.state_version` in the same transaction, by trigger, whoever makes it: a replica, the
-- CLI on the database file, a person at a SQL prompt. A writer reads the version with the chain's
-- head at the start of every batch and keeps what it read of those tables only while the version
-- is unchanged. An override's use count, last use and expiry announcement are not inputs of a
-- decision, so their updates leave the version alone.
ALTER TABLE audit_head ADD COLUMN state_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION bump_state_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_head SET state_version = state_version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;

-- Statement triggers: one bump per statement, however many rows it changes.
DO $$
DECLARE
    input_table text;
BEGIN
    FOREACH input_table IN ARRAY ARRAY['gate_state', 'principals', 'tokens', 'incidents', 'freezes', 'freeze_scopes'] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I AFTER INSERT OR DELETE OR UPDATE ON %I
             FOR EACH STATEMENT EXECUTE FUNCTION bump_state_version()',
            input_table || '_state_version', input_table);
        EXECUTE format(
            'CREATE TRIGGER %I AFTER TRUNCATE ON %I
             FOR EACH STATEMENT EXECUTE FUNCTION bump_state_version()',
            input_table || '_truncate_state_version', input_table);
    END LOOP;
END
$$;

-- Overrides: not for the columns a use or an expiry announcement changes.
CREATE TRIGGER overrides_state_version
    AFTER INSERT OR DELETE OR UPDATE OF id, action, environment, release_id, reason, approver, approver_role, created_at, expires_at, revoked_at, revoked_by, service, approvers, request_id ON overrides
    FOR EACH STATEMENT EXECUTE FUNCTION bump_state_version();
CREATE TRIGGER overrides_truncate_state_version
    AFTER TRUNCATE ON overrides
    FOR EACH STATEMENT EXECUTE FUNCTION bump_state_version();
