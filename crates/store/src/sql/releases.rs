//! Rollbacks, release history and load shedding in SQL.

use super::tx::environment as environment_column;
use super::tx::*;

fn release_from_row(row: &Row) -> Result<ReleaseRecord, StoreError> {
    Ok(ReleaseRecord {
        environment: environment_column(row, 0)?,
        release_id: row.get(1)?,
        at: timestamp(row, 2)?,
        change: text_enum(row, 3)?,
        reference: row.get(4)?,
        by: row.get(5)?,
        service: row.get(6)?,
    })
}

impl ReleaseTx for SqlTx<'_> {
    fn insert_rollback(&mut self, r: &Rollback) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO rollbacks (id, environment, service, status, created_at, body, from_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vals![
                r.id,
                r.environment.as_str(),
                r.service.as_deref(),
                r.status.as_str(),
                r.created_at.unix_millis(),
                to_json(r)?,
                r.from_version,
            ],
        )?;
        Ok(())
    }

    fn update_rollback(&mut self, r: &Rollback) -> Result<(), StoreError> {
        self.execute(
            "UPDATE rollbacks SET status = $2, body = $3 WHERE id = $1",
            vals![r.id, r.status.as_str(), to_json(r)?],
        )?;
        Ok(())
    }

    fn latest_rollback_from(
        &mut self,
        environment: Environment,
        service: Option<&str>,
        from_version: &str,
        executed_only: bool,
    ) -> Result<Option<Rollback>, StoreError> {
        let executed = if executed_only {
            "AND status IN ('executing', 'executed', 'succeeded')"
        } else {
            ""
        };
        self.one(
            &format!(
                "SELECT body FROM rollbacks
                 WHERE environment = $1 AND from_version = $3
                   AND COALESCE(service, '') = COALESCE(CAST($2 AS TEXT), '') {executed}
                 ORDER BY created_at DESC, id DESC LIMIT 1"
            ),
            vals![environment.as_str(), service, from_version],
            |row| json_column(row, 0),
        )
    }

    fn get_rollback(&mut self, id: &str) -> Result<Option<Rollback>, StoreError> {
        self.one("SELECT body FROM rollbacks WHERE id = $1", [id], |row| {
            json_column(row, 0)
        })
    }

    fn list_rollbacks(
        &mut self,
        environment: Option<Environment>,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Rollback>, StoreError> {
        self.collect(
            "SELECT body FROM rollbacks WHERE (CAST($1 AS TEXT) IS NULL OR environment = $1)
               AND (CAST($2 AS TEXT) IS NULL OR service = $2)
             ORDER BY created_at DESC, id DESC LIMIT $3",
            vals![
                environment.as_ref().map(Environment::as_str),
                service,
                limit
            ],
            |row| json_column(row, 0),
        )
    }

    fn insert_release(&mut self, r: &ReleaseRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO releases (environment, release_id, at, change, reference, changed_by, service)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vals![
                r.environment.as_str(),
                r.release_id,
                r.at.unix_millis(),
                r.change.as_str(),
                r.reference,
                r.by,
                r.service.as_deref(),
            ],
        )?;
        Ok(())
    }

    fn releases(
        &mut self,
        environment: Environment,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ReleaseRecord>, StoreError> {
        self.collect(
            "SELECT environment, release_id, at, change, reference, changed_by, service
             FROM releases
             WHERE environment = $1 AND COALESCE(service, '') = COALESCE(CAST($2 AS TEXT), '')
             ORDER BY id DESC LIMIT $3",
            vals![environment.as_str(), service, limit],
            release_from_row,
        )
    }

    fn release_ran(
        &mut self,
        environment: Environment,
        service: Option<&str>,
        release_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.count(
            "SELECT count(*) FROM releases WHERE environment = $1 AND release_id = $2
               AND COALESCE(service, '') = COALESCE(CAST($3 AS TEXT), '')",
            vals![environment.as_str(), release_id, service],
        )? > 0)
    }

    fn load_shedding(
        &mut self,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<LoadShedding, StoreError> {
        Ok(self
            .one(
                "SELECT environment, enabled, percentage, reason, updated_at, updated_by
                 FROM load_shedding WHERE environment = $1 AND service = $2",
                vals![environment.as_str(), service.unwrap_or_default()],
                |row| {
                    let percentage: i64 = row.get(2)?;
                    Ok(LoadShedding {
                        environment: environment_column(row, 0)?,
                        service: service.map(str::to_owned),
                        enabled: row.get(1)?,
                        percentage: u8::try_from(percentage).unwrap_or(100),
                        reason: row.get(3)?,
                        updated_at: optional_timestamp(row, 4)?,
                        updated_by: row.get(5)?,
                    })
                },
            )?
            .unwrap_or_else(|| LoadShedding::off(environment, service.map(str::to_owned))))
    }

    fn put_load_shedding(&mut self, l: &LoadShedding) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO load_shedding (environment, enabled, percentage, reason, updated_at, updated_by, service)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (environment, service) DO UPDATE SET enabled = $2, percentage = $3,
                 reason = $4, updated_at = $5, updated_by = $6",
            vals![
                l.environment.as_str(),
                l.enabled,
                l.percentage,
                l.reason,
                l.updated_at.map(Timestamp::unix_millis),
                l.updated_by,
                l.service.as_deref().unwrap_or_default(),
            ],
        )?;
        Ok(())
    }
}
