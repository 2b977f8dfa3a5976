//! Rollbacks, release history and load shedding in SQL.

use super::tx::*;

fn release_from_row(row: &Row) -> Result<ReleaseRecord, StoreError> {
    Ok(ReleaseRecord {
        environment: text_enum(row, 0)?,
        release_id: row.get(1)?,
        at: timestamp(row, 2)?,
        change: text_enum(row, 3)?,
        reference: row.get(4)?,
        by: row.get(5)?,
    })
}

impl ReleaseTx for SqlTx<'_> {
    fn insert_rollback(&mut self, r: &Rollback) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO rollbacks (id, environment, status, created_at, body)
             VALUES ($1, $2, $3, $4, $5)",
            vals![
                r.id,
                r.environment.as_str(),
                r.status.as_str(),
                r.created_at.unix_millis(),
                to_json(r)?,
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

    fn get_rollback(&mut self, id: &str) -> Result<Option<Rollback>, StoreError> {
        self.one("SELECT body FROM rollbacks WHERE id = $1", [id], |row| {
            json_column(row, 0)
        })
    }

    fn list_rollbacks(
        &mut self,
        environment: Option<Environment>,
        limit: u32,
    ) -> Result<Vec<Rollback>, StoreError> {
        self.collect(
            "SELECT body FROM rollbacks WHERE (CAST($1 AS TEXT) IS NULL OR environment = $1)
             ORDER BY created_at DESC, id DESC LIMIT $2",
            vals![environment.map(Environment::as_str), limit],
            |row| json_column(row, 0),
        )
    }

    fn insert_release(&mut self, r: &ReleaseRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO releases (environment, release_id, at, change, reference, changed_by)
             VALUES ($1, $2, $3, $4, $5, $6)",
            vals![
                r.environment.as_str(),
                r.release_id,
                r.at.unix_millis(),
                r.change.as_str(),
                r.reference,
                r.by,
            ],
        )?;
        Ok(())
    }

    fn releases(
        &mut self,
        environment: Environment,
        limit: u32,
    ) -> Result<Vec<ReleaseRecord>, StoreError> {
        self.collect(
            "SELECT environment, release_id, at, change, reference, changed_by FROM releases
             WHERE environment = $1 ORDER BY id DESC LIMIT $2",
            vals![environment.as_str(), limit],
            release_from_row,
        )
    }

    fn release_ran(
        &mut self,
        environment: Environment,
        release_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.count(
            "SELECT count(*) FROM releases WHERE environment = $1 AND release_id = $2",
            vals![environment.as_str(), release_id],
        )? > 0)
    }

    fn load_shedding(&mut self, environment: Environment) -> Result<LoadShedding, StoreError> {
        Ok(self
            .one(
                "SELECT environment, enabled, percentage, reason, updated_at, updated_by
                 FROM load_shedding WHERE environment = $1",
                [environment.as_str()],
                |row| {
                    let percentage: i64 = row.get(2)?;
                    Ok(LoadShedding {
                        environment: text_enum(row, 0)?,
                        enabled: row.get(1)?,
                        percentage: u8::try_from(percentage).unwrap_or(100),
                        reason: row.get(3)?,
                        updated_at: optional_timestamp(row, 4)?,
                        updated_by: row.get(5)?,
                    })
                },
            )?
            .unwrap_or_else(|| LoadShedding::off(environment)))
    }

    fn put_load_shedding(&mut self, l: &LoadShedding) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO load_shedding (environment, enabled, percentage, reason, updated_at, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (environment) DO UPDATE SET enabled = $2, percentage = $3, reason = $4,
                 updated_at = $5, updated_by = $6",
            vals![
                l.environment.as_str(),
                l.enabled,
                l.percentage,
                l.reason,
                l.updated_at.map(Timestamp::unix_millis),
                l.updated_by,
            ],
        )?;
        Ok(())
    }
}
