//! Freezes in SQL: the whole freeze as JSON, its scope as rows the gate finds by key.

use deploy_safety_core::Freeze;

use super::cache::FreezeRow;
use super::tx::*;

/// The instant from which nothing of the freeze is in force, for queries.
fn over_at(freeze: &Freeze) -> Option<i64> {
    match (freeze.end, freeze.ended_at) {
        (Some(a), Some(b)) => Some(a.min(b).unix_millis()),
        (Some(a), None) | (None, Some(a)) => Some(a.unix_millis()),
        (None, None) => None,
    }
}

fn record_from_row(row: &Row) -> Result<FreezeRecord, StoreError> {
    Ok(FreezeRecord {
        freeze: json_column(row, 0)?,
        announced_window_start: optional_timestamp(row, 1)?,
        next_check_at: optional_timestamp(row, 2)?,
    })
}

impl FreezeTx for SqlTx<'_> {
    fn insert_freeze(&mut self, record: &FreezeRecord) -> Result<(), StoreError> {
        let f = &record.freeze;
        self.execute(
            "INSERT INTO freezes (id, created_at, ended_at, over_at, announced_window_start,
                                  next_check_at, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vals![
                f.id,
                f.created_at.unix_millis(),
                f.ended_at.map(Timestamp::unix_millis),
                over_at(f),
                record.announced_window_start.map(Timestamp::unix_millis),
                record.next_check_at.map(Timestamp::unix_millis),
                to_json(f)?,
            ],
        )?;
        let environments: Vec<&str> = if f.environments.is_empty() {
            vec![""]
        } else {
            f.environments.iter().map(Environment::as_str).collect()
        };
        let services: Vec<&str> = if f.services.is_empty() {
            vec![""]
        } else {
            f.services.iter().map(String::as_str).collect()
        };
        for action in &f.actions {
            for environment in &environments {
                for service in &services {
                    self.execute(
                        "INSERT INTO freeze_scopes (action, environment, service, freeze_id)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        vals![action.as_str(), *environment, *service, f.id],
                    )?;
                }
            }
        }
        Ok(())
    }

    fn get_freeze(&mut self, id: &str) -> Result<Option<FreezeRecord>, StoreError> {
        self.one(
            "SELECT body, announced_window_start, next_check_at FROM freezes WHERE id = $1",
            [id],
            record_from_row,
        )
    }

    fn update_freeze(&mut self, record: &FreezeRecord) -> Result<(), StoreError> {
        let f = &record.freeze;
        self.execute(
            "UPDATE freezes SET ended_at = $2, over_at = $3, announced_window_start = $4,
                                next_check_at = $5, body = $6
             WHERE id = $1",
            vals![
                f.id,
                f.ended_at.map(Timestamp::unix_millis),
                over_at(f),
                record.announced_window_start.map(Timestamp::unix_millis),
                record.next_check_at.map(Timestamp::unix_millis),
                to_json(f)?,
            ],
        )?;
        Ok(())
    }

    fn list_freezes(
        &mut self,
        now: Timestamp,
        all: bool,
        limit: u32,
    ) -> Result<Vec<Freeze>, StoreError> {
        self.collect(
            "SELECT body FROM freezes
             WHERE $1 OR over_at IS NULL OR over_at > $2
             ORDER BY created_at DESC, id DESC LIMIT $3",
            vals![all, now.unix_millis(), limit],
            |row| json_column(row, 0),
        )
    }

    fn freezes_for(
        &mut self,
        action: Action,
        environment: Environment,
        service: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<Freeze>, StoreError> {
        let service = service.unwrap_or_default();
        if let Some(cached) = self
            .state
            .cache
            .freezes(action.as_str(), environment, service, now)
        {
            return Ok(cached);
        }
        let found: Vec<FreezeRow> = self.collect(
            "SELECT f.over_at, f.body FROM freeze_scopes s JOIN freezes f ON f.id = s.freeze_id
             WHERE s.action = $1 AND s.environment IN ($2, '') AND s.service IN ($3, '')
               AND (f.over_at IS NULL OR f.over_at > $4)
             ORDER BY f.id",
            vals![
                action.as_str(),
                environment.as_str(),
                service,
                now.unix_millis()
            ],
            |row| Ok((row.get::<Option<i64>>(0)?, json_column(row, 1)?)),
        )?;
        self.state
            .cache
            .put_freezes(action.as_str(), environment, service, now, &found);
        Ok(found.into_iter().map(|(_, freeze)| freeze).collect())
    }

    fn freezes_due(&mut self, now: Timestamp, limit: u32) -> Result<Vec<FreezeRecord>, StoreError> {
        self.collect(
            "SELECT body, announced_window_start, next_check_at FROM freezes
             WHERE next_check_at IS NOT NULL AND next_check_at <= $1
             ORDER BY next_check_at, id LIMIT $2",
            vals![now.unix_millis(), limit],
            record_from_row,
        )
    }
}
