//! Incidents in SQL.

use super::tx::*;

const INCIDENT_COLUMNS: &str = "id, title, severity, category, environment, status, opened_at, \
     opened_by, updated_at, resolved_at, resolved_by, history";

fn incident_from_row(row: &Row) -> Result<Incident, StoreError> {
    Ok(Incident {
        id: row.get(0)?,
        title: row.get(1)?,
        severity: text_enum(row, 2)?,
        category: text_enum(row, 3)?,
        environment: optional_environment(row, 4)?,
        status: text_enum(row, 5)?,
        opened_at: timestamp(row, 6)?,
        opened_by: row.get(7)?,
        updated_at: timestamp(row, 8)?,
        resolved_at: optional_timestamp(row, 9)?,
        resolved_by: row.get(10)?,
        history: json_column(row, 11)?,
    })
}

impl IncidentTx for SqlTx<'_> {
    fn insert_incident(&mut self, i: &Incident) -> Result<(), StoreError> {
        self.execute(
            &format!(
                "INSERT INTO incidents ({INCIDENT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            vals![
                i.id,
                i.title,
                i.severity.as_str(),
                i.category.as_str(),
                i.environment.as_ref().map(Environment::as_str),
                i.status.as_str(),
                i.opened_at.unix_millis(),
                i.opened_by,
                i.updated_at.unix_millis(),
                i.resolved_at.map(Timestamp::unix_millis),
                i.resolved_by,
                to_json(&i.history)?,
            ],
        )?;
        Ok(())
    }

    fn update_incident(&mut self, i: &Incident) -> Result<(), StoreError> {
        self.execute(
            "UPDATE incidents SET severity = $2, status = $3, updated_at = $4, resolved_at = $5,
                    resolved_by = $6, history = $7
             WHERE id = $1",
            vals![
                i.id,
                i.severity.as_str(),
                i.status.as_str(),
                i.updated_at.unix_millis(),
                i.resolved_at.map(Timestamp::unix_millis),
                i.resolved_by,
                to_json(&i.history)?,
            ],
        )?;
        Ok(())
    }

    fn get_incident(&mut self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.one(
            &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"),
            [id],
            incident_from_row,
        )
    }

    fn list_incidents(&mut self, q: &IncidentQuery) -> Result<Vec<Incident>, StoreError> {
        self.collect(
            &format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents
                 WHERE (CAST($1 AS TEXT) IS NULL OR status = $1)
                   AND (CAST($2 AS TEXT) IS NULL OR severity = $2)
                   AND (CAST($3 AS TEXT) IS NULL OR environment = $3 OR environment IS NULL)
                 ORDER BY opened_at DESC, id DESC LIMIT $4"
            ),
            vals![
                q.status.map(|s| s.as_str()),
                q.severity.map(|s| s.as_str()),
                q.environment.as_ref().map(Environment::as_str),
                q.limit,
            ],
            incident_from_row,
        )
    }

    fn incidents_opened_since(&mut self, since: Timestamp) -> Result<Vec<Incident>, StoreError> {
        self.collect(
            &format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE opened_at >= $1
                 ORDER BY opened_at, id"
            ),
            [since.unix_millis()],
            incident_from_row,
        )
    }

    fn open_incidents(&mut self) -> Result<Vec<OpenIncident>, StoreError> {
        if let Some(cached) = self.state.cache.open_incidents() {
            return Ok(cached.to_vec());
        }
        let open = self.collect(
            "SELECT id, title, severity, environment FROM incidents
             WHERE status = 'open' ORDER BY opened_at, id",
            vals![],
            |row| {
                Ok(OpenIncident {
                    id: row.get(0)?,
                    title: row.get(1)?,
                    severity: text_enum(row, 2)?,
                    environment: optional_environment(row, 3)?,
                })
            },
        )?;
        self.state.cache.put_open_incidents(&open);
        Ok(open)
    }
}
