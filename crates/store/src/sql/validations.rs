//! Release validations and their runs in SQL.

use super::tx::*;

const VALIDATION_COLUMNS: &str = "id, release_id, environment, created_at, created_by, service";

fn validation_from_row(row: &Row) -> Result<Validation, StoreError> {
    Ok(Validation {
        id: row.get(0)?,
        release_id: row.get(1)?,
        environment: environment(row, 2)?,
        created_at: timestamp(row, 3)?,
        created_by: row.get(4)?,
        service: row.get(5)?,
    })
}

fn run_from_row(row: &Row) -> Result<ValidationRun, StoreError> {
    Ok(ValidationRun {
        number: small(row, 0)?,
        status: text_enum(row, 1)?,
        started_at: timestamp(row, 2)?,
        started_by: row.get(3)?,
        finished_at: optional_timestamp(row, 4)?,
        gates: json_column(row, 5)?,
    })
}

impl ValidationTx for SqlTx<'_> {
    fn insert_validation(&mut self, v: &Validation) -> Result<(), StoreError> {
        self.execute(
            &format!(
                "INSERT INTO validations ({VALIDATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            vals![
                v.id,
                v.release_id,
                v.environment.as_str(),
                v.created_at.unix_millis(),
                v.created_by,
                v.service.as_deref(),
            ],
        )?;
        Ok(())
    }

    fn get_validation(&mut self, id: &str) -> Result<Option<Validation>, StoreError> {
        self.one(
            &format!("SELECT {VALIDATION_COLUMNS} FROM validations WHERE id = $1"),
            [id],
            validation_from_row,
        )
    }

    fn list_validations(
        &mut self,
        release_id: Option<&str>,
        environment: Option<Environment>,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Validation>, StoreError> {
        self.collect(
            &format!(
                "SELECT {VALIDATION_COLUMNS} FROM validations
                 WHERE (CAST($1 AS TEXT) IS NULL OR release_id = $1) AND (CAST($2 AS TEXT) IS NULL OR environment = $2)
                   AND (CAST($3 AS TEXT) IS NULL OR service = $3)
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            vals![release_id, environment.as_ref().map(Environment::as_str), service, limit],
            validation_from_row,
        )
    }

    fn latest_validation_of(
        &mut self,
        release_id: &str,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<Option<Validation>, StoreError> {
        self.one(
            &format!(
                "SELECT {VALIDATION_COLUMNS} FROM validations
                 WHERE release_id = $1 AND environment = $2
                   AND COALESCE(service, '') = COALESCE(CAST($3 AS TEXT), '')
                 ORDER BY created_at DESC, id DESC LIMIT 1"
            ),
            vals![release_id, environment.as_str(), service],
            validation_from_row,
        )
    }

    fn validation_runs(&mut self, validation_id: &str) -> Result<Vec<ValidationRun>, StoreError> {
        self.collect(
            "SELECT number, status, started_at, started_by, finished_at, gates
             FROM validation_runs WHERE validation_id = $1 ORDER BY number",
            [validation_id],
            run_from_row,
        )
    }

    fn insert_validation_run(
        &mut self,
        validation_id: &str,
        run: &ValidationRun,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO validation_runs
                 (validation_id, number, status, started_at, started_by, finished_at, gates)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vals![
                validation_id,
                run.number,
                run.status.as_str(),
                run.started_at.unix_millis(),
                run.started_by,
                run.finished_at.map(Timestamp::unix_millis),
                to_json(&run.gates)?,
            ],
        )?;
        Ok(())
    }

    fn finish_validation_run(
        &mut self,
        validation_id: &str,
        number: u32,
        status: ValidationStatus,
        finished_at: Timestamp,
        gates: &[GateResult],
    ) -> Result<bool, StoreError> {
        let changed = self.execute(
            "UPDATE validation_runs SET status = $3, finished_at = $4, gates = $5
             WHERE validation_id = $1 AND number = $2 AND status = 'running'",
            vals![
                validation_id,
                number,
                status.as_str(),
                finished_at.unix_millis(),
                to_json(&gates)?,
            ],
        )?;
        Ok(changed == 1)
    }

    fn discard_validation_run(
        &mut self,
        validation_id: &str,
        number: u32,
    ) -> Result<bool, StoreError> {
        Ok(self.execute(
            "DELETE FROM validation_runs
             WHERE validation_id = $1 AND number = $2 AND status = 'running'",
            vals![validation_id, number],
        )? == 1)
    }

    fn release_passed_validation(
        &mut self,
        release_id: &str,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<bool, StoreError> {
        let found = self.count(
            "SELECT count(*) FROM validation_runs
             WHERE status = 'passed' AND validation_id IN
                 (SELECT id FROM validations WHERE release_id = $1 AND environment = $2
                    AND (service IS NULL OR service = CAST($3 AS TEXT)))",
            vals![release_id, environment.as_str(), service],
        )?;
        Ok(found > 0)
    }
}
