//! Canary deployments in SQL.

use super::tx::*;

impl CanaryTx for SqlTx<'_> {
    fn insert_canary(&mut self, c: &Canary) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO canaries (id, environment, service, release_id, phase, started_at, next_step_at, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vals![
                c.id,
                c.environment.as_str(),
                c.service.as_deref(),
                c.release_id,
                c.phase.as_str(),
                c.started_at.unix_millis(),
                c.next_step_at.map(Timestamp::unix_millis),
                to_json(c)?,
            ],
        )
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(match &c.service {
                None => format!("{} already has an active canary", c.environment),
                Some(service) => format!(
                    "{service} already has an active canary in {}",
                    c.environment
                ),
            }),
            other => other,
        })?;
        Ok(())
    }

    fn update_canary(&mut self, c: &Canary) -> Result<(), StoreError> {
        self.execute(
            "UPDATE canaries SET phase = $2, next_step_at = $3, body = $4 WHERE id = $1",
            vals![
                c.id,
                c.phase.as_str(),
                c.next_step_at.map(Timestamp::unix_millis),
                to_json(c)?,
            ],
        )?;
        Ok(())
    }

    fn get_canary(&mut self, id: &str) -> Result<Option<Canary>, StoreError> {
        self.one("SELECT body FROM canaries WHERE id = $1", [id], |row| {
            json_column(row, 0)
        })
    }

    fn active_canary(
        &mut self,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<Option<Canary>, StoreError> {
        self.one(
            "SELECT body FROM canaries
             WHERE environment = $1 AND COALESCE(service, '') = COALESCE(CAST($2 AS TEXT), '')
               AND phase IN ('progressing', 'paused')",
            vals![environment.as_str(), service],
            |row| json_column(row, 0),
        )
    }

    fn latest_canary(
        &mut self,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<Option<Canary>, StoreError> {
        self.one(
            "SELECT body FROM canaries
             WHERE environment = $1 AND COALESCE(service, '') = COALESCE(CAST($2 AS TEXT), '')
             ORDER BY started_at DESC, id DESC LIMIT 1",
            vals![environment.as_str(), service],
            |row| json_column(row, 0),
        )
    }

    fn latest_canary_of_release(
        &mut self,
        environment: Environment,
        service: Option<&str>,
        release_id: &str,
    ) -> Result<Option<Canary>, StoreError> {
        self.one(
            "SELECT body FROM canaries
             WHERE environment = $1 AND release_id = $3
               AND COALESCE(service, '') = COALESCE(CAST($2 AS TEXT), '')
             ORDER BY started_at DESC, id DESC LIMIT 1",
            vals![environment.as_str(), service, release_id],
            |row| json_column(row, 0),
        )
    }

    fn list_canaries(
        &mut self,
        environment: Option<Environment>,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Canary>, StoreError> {
        self.collect(
            "SELECT body FROM canaries WHERE (CAST($1 AS TEXT) IS NULL OR environment = $1)
               AND (CAST($2 AS TEXT) IS NULL OR service = $2)
             ORDER BY started_at DESC, id DESC LIMIT $3",
            vals![
                environment.as_ref().map(Environment::as_str),
                service,
                limit
            ],
            |row| json_column(row, 0),
        )
    }

    fn due_canaries(&mut self, now: Timestamp) -> Result<Vec<Canary>, StoreError> {
        self.collect(
            "SELECT body FROM canaries
             WHERE phase IN ('progressing', 'paused') AND next_step_at <= $1
             ORDER BY next_step_at, id",
            [now.unix_millis()],
            |row| json_column(row, 0),
        )
    }
}
