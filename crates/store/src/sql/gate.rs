//! The gate's state and overrides in SQL.

use super::tx::*;

const OVERRIDE_COLUMNS: &str = "id, action, environment, release_id, reason, approver, approver_role, \
     created_at, expires_at, revoked_at, revoked_by, use_count, last_used_at, service, approvers, \
     request_id";

fn override_from_row(row: &Row) -> Result<Override, StoreError> {
    let approver: String = row.get(5)?;
    // Before the two-person rule, the creator was the only approver.
    let approvers = match row.get::<Option<String>>(14)? {
        Some(text) => serde_json::from_str(&text).map_err(|e| corrupt(14, e))?,
        None => vec![approver.clone()],
    };
    Ok(Override {
        id: row.get(0)?,
        action: text_enum(row, 1)?,
        environment: environment(row, 2)?,
        release_id: row.get(3)?,
        service: row.get(13)?,
        reason: row.get(4)?,
        approver,
        approvers,
        approver_role: text_enum(row, 6)?,
        request_id: row.get(15)?,
        created_at: timestamp(row, 7)?,
        expires_at: timestamp(row, 8)?,
        revoked_at: optional_timestamp(row, 9)?,
        revoked_by: row.get(10)?,
        use_count: unsigned(row, 11)?,
        last_used_at: optional_timestamp(row, 12)?,
    })
}

impl GateTx for SqlTx<'_> {
    fn gate_state(&mut self) -> Result<GateState, StoreError> {
        if let Some(cached) = self.state.cache.gate_state() {
            return Ok(cached.clone());
        }
        let state = self
            .one(
                "SELECT mode, threat_level, lockdown_reason, lockdown_since, mode_reason,
                    mode_changed_at, mode_changed_by, threat_reason, threat_changed_at,
                    threat_changed_by
             FROM gate_state WHERE id = 1",
                vals![],
                |row| {
                    Ok(GateState {
                        mode: text_enum(row, 0)?,
                        threat_level: text_enum(row, 1)?,
                        lockdown_reason: row.get(2)?,
                        lockdown_since: optional_timestamp(row, 3)?,
                        mode_reason: row.get(4)?,
                        mode_changed_at: optional_timestamp(row, 5)?,
                        mode_changed_by: row.get(6)?,
                        threat_reason: row.get(7)?,
                        threat_changed_at: optional_timestamp(row, 8)?,
                        threat_changed_by: row.get(9)?,
                    })
                },
            )?
            .ok_or_else(|| StoreError::Corrupt("the gate_state row is missing".into()))?;
        self.state.cache.put_gate_state(&state);
        Ok(state)
    }

    fn put_gate_state(&mut self, s: &GateState) -> Result<(), StoreError> {
        self.execute(
            "UPDATE gate_state SET mode = $1, threat_level = $2, lockdown_reason = $3,
                    lockdown_since = $4, mode_reason = $5, mode_changed_at = $6,
                    mode_changed_by = $7, threat_reason = $8, threat_changed_at = $9,
                    threat_changed_by = $10
             WHERE id = 1",
            vals![
                s.mode.as_str(),
                s.threat_level.as_str(),
                s.lockdown_reason,
                s.lockdown_since.map(Timestamp::unix_millis),
                s.mode_reason,
                s.mode_changed_at.map(Timestamp::unix_millis),
                s.mode_changed_by,
                s.threat_reason,
                s.threat_changed_at.map(Timestamp::unix_millis),
                s.threat_changed_by,
            ],
        )?;
        Ok(())
    }

    fn insert_override(&mut self, o: &Override) -> Result<(), StoreError> {
        self.execute(
            &format!(
                "INSERT INTO overrides ({OVERRIDE_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ),
            vals![
                o.id,
                o.action.as_str(),
                o.environment.as_str(),
                o.release_id,
                o.reason,
                o.approver,
                o.approver_role.as_str(),
                o.created_at.unix_millis(),
                o.expires_at.unix_millis(),
                o.revoked_at.map(Timestamp::unix_millis),
                o.revoked_by,
                signed(o.use_count),
                o.last_used_at.map(Timestamp::unix_millis),
                o.service.as_deref(),
                to_json(&o.approvers)?,
                o.request_id.as_deref(),
            ],
        )?;
        Ok(())
    }

    fn get_override(&mut self, id: &str) -> Result<Option<Override>, StoreError> {
        self.one(
            &format!("SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE id = $1"),
            [id],
            override_from_row,
        )
    }

    fn unexpired_overrides(
        &mut self,
        action: Action,
        environment: Environment,
        now: Timestamp,
    ) -> Result<Vec<Override>, StoreError> {
        if let Some(cached) = self
            .state
            .cache
            .overrides(action.as_str(), environment, now)
        {
            return Ok(cached);
        }
        let found = self.collect(
            &format!(
                "SELECT {OVERRIDE_COLUMNS} FROM overrides
                 WHERE action = $1 AND environment = $2 AND expires_at > $3
                   AND revoked_at IS NULL"
            ),
            vals![action.as_str(), environment.as_str(), now.unix_millis()],
            override_from_row,
        )?;
        self.state
            .cache
            .put_overrides(action.as_str(), environment, now, &found);
        Ok(found)
    }

    fn list_overrides(
        &mut self,
        now: Timestamp,
        include_inactive: bool,
        limit: u32,
    ) -> Result<Vec<Override>, StoreError> {
        if include_inactive {
            self.collect(
                &format!(
                    "SELECT {OVERRIDE_COLUMNS} FROM overrides
                     ORDER BY created_at DESC, id DESC LIMIT $1"
                ),
                [limit],
                override_from_row,
            )
        } else {
            self.collect(
                &format!(
                    "SELECT {OVERRIDE_COLUMNS} FROM overrides
                     WHERE revoked_at IS NULL AND expires_at > $1 AND created_at <= $1
                     ORDER BY created_at DESC, id DESC LIMIT $2"
                ),
                vals![now.unix_millis(), limit],
                override_from_row,
            )
        }
    }

    fn count_active_overrides(&mut self, now: Timestamp) -> Result<u64, StoreError> {
        self.count(
            "SELECT count(*) FROM overrides
             WHERE revoked_at IS NULL AND expires_at > $1 AND created_at <= $1",
            [now.unix_millis()],
        )
    }

    fn revoke_override(&mut self, id: &str, by: &str, at: Timestamp) -> Result<bool, StoreError> {
        let changed = self.execute(
            "UPDATE overrides SET revoked_at = $2, revoked_by = $3
             WHERE id = $1 AND revoked_at IS NULL",
            vals![id, at.unix_millis(), by],
        )?;
        Ok(changed == 1)
    }

    fn record_override_use(&mut self, id: &str, at: Timestamp) -> Result<(), StoreError> {
        // A use is no input of a decision (the `state_version` triggers skip these columns).
        self.execute_keeping_inputs(
            "UPDATE overrides SET use_count = use_count + 1, last_used_at = $2 WHERE id = $1",
            vals![id, at.unix_millis()],
        )?;
        Ok(())
    }

    fn expired_unannounced(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Override>, StoreError> {
        self.collect(
            &format!(
                "SELECT {OVERRIDE_COLUMNS} FROM overrides
                 WHERE NOT expiry_announced AND revoked_at IS NULL AND expires_at <= $1
                 ORDER BY expires_at, id LIMIT $2"
            ),
            vals![now.unix_millis(), limit],
            override_from_row,
        )
    }

    fn mark_expiry_announced(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(self.execute_keeping_inputs(
            "UPDATE overrides SET expiry_announced = $2 WHERE id = $1 AND NOT expiry_announced",
            vals![id, true],
        )? == 1)
    }
}
