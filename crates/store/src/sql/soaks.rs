//! Soaks in SQL.

use deploy_safety_core::Soak;

use super::tx::*;
use crate::SoakQuery;

impl SoakTx for SqlTx<'_> {
    fn insert_soak(&mut self, s: &Soak) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO soaks (id, release_id, environment, service, status, started_at,
                                next_evaluation_at, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vals![
                s.id,
                s.release_id,
                s.environment.as_str(),
                s.service.as_deref(),
                s.status.as_str(),
                s.started_at.unix_millis(),
                s.next_evaluation_at.map(Timestamp::unix_millis),
                to_json(s)?,
            ],
        )
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "release {} already has a running soak in {}",
                s.release_id, s.environment
            )),
            other => other,
        })?;
        Ok(())
    }

    fn update_soak(&mut self, s: &Soak) -> Result<(), StoreError> {
        self.execute(
            "UPDATE soaks SET status = $2, next_evaluation_at = $3, body = $4 WHERE id = $1",
            vals![
                s.id,
                s.status.as_str(),
                s.next_evaluation_at.map(Timestamp::unix_millis),
                to_json(s)?,
            ],
        )?;
        Ok(())
    }

    fn get_soak(&mut self, id: &str) -> Result<Option<Soak>, StoreError> {
        self.one("SELECT body FROM soaks WHERE id = $1", [id], |row| {
            json_column(row, 0)
        })
    }

    fn list_soaks(&mut self, q: &SoakQuery) -> Result<Vec<Soak>, StoreError> {
        self.collect(
            "SELECT body FROM soaks
             WHERE (CAST($1 AS TEXT) IS NULL OR release_id = $1)
               AND (CAST($2 AS TEXT) IS NULL OR environment = $2)
               AND (CAST($3 AS TEXT) IS NULL OR service = $3)
               AND (CAST($4 AS TEXT) IS NULL OR status = $4)
             ORDER BY started_at DESC, id DESC LIMIT $5",
            vals![
                q.release_id.as_deref(),
                q.environment.as_ref().map(Environment::as_str),
                q.service.as_deref(),
                q.status.map(|s| s.as_str()),
                q.limit,
            ],
            |row| json_column(row, 0),
        )
    }

    fn running_soak(
        &mut self,
        release_id: &str,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<Option<Soak>, StoreError> {
        self.one(
            "SELECT body FROM soaks
             WHERE release_id = $1 AND environment = $2 AND status = 'running'
               AND COALESCE(service, '') = COALESCE(CAST($3 AS TEXT), '')",
            vals![release_id, environment.as_str(), service],
            |row| json_column(row, 0),
        )
    }

    fn due_soaks(&mut self, now: Timestamp) -> Result<Vec<Soak>, StoreError> {
        self.collect(
            "SELECT body FROM soaks
             WHERE status = 'running' AND next_evaluation_at <= $1
             ORDER BY next_evaluation_at, id",
            [now.unix_millis()],
            |row| json_column(row, 0),
        )
    }

    fn release_passed_soak(
        &mut self,
        release_id: &str,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.count(
            "SELECT count(*) FROM soaks
             WHERE release_id = $1 AND environment = $2 AND status = 'passed'
               AND (service IS NULL OR service = CAST($3 AS TEXT))",
            vals![release_id, environment.as_str(), service],
        )
        .map(|n| n > 0)
    }
}
