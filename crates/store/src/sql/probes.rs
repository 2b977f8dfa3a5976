//! Health probes, their results and the database probe's heartbeat in SQL.

use super::tx::*;

const PROBE_COLUMNS: &str = "id, name, kind, target, method, expect_status_min, \
     expect_status_max, timeout_ms, interval_ms, failure_threshold, success_threshold, critical, \
     source, created_at, created_by, status, consecutive_failures, consecutive_successes, \
     last_checked_at, last_error, next_check_at";

fn probe_from_row(row: &Row) -> Result<Probe, StoreError> {
    let min: Option<i64> = row.get(5)?;
    let max: Option<i64> = row.get(6)?;
    let expected_status = match (min, max) {
        (Some(min), Some(max)) => Some(StatusRange {
            min: u16::try_from(min).unwrap_or(0),
            max: u16::try_from(max).unwrap_or(0),
        }),
        _ => None,
    };
    Ok(Probe {
        id: row.get(0)?,
        definition: ProbeDefinition {
            name: row.get(1)?,
            kind: text_enum(row, 2)?,
            target: row.get(3)?,
            method: row.get(4)?,
            expected_status,
            timeout_ms: small(row, 7)?,
            interval_ms: small(row, 8)?,
            failure_threshold: small(row, 9)?,
            success_threshold: small(row, 10)?,
            critical: row.get(11)?,
        },
        source: text_enum(row, 12)?,
        created_at: timestamp(row, 13)?,
        created_by: row.get(14)?,
        state: ProbeState {
            status: text_enum(row, 15)?,
            consecutive_failures: small(row, 16)?,
            consecutive_successes: small(row, 17)?,
            last_checked_at: optional_timestamp(row, 18)?,
            last_error: row.get(19)?,
        },
        next_check_at: timestamp(row, 20)?,
    })
}

impl ProbeTx for SqlTx<'_> {
    fn insert_probe(&mut self, p: &Probe) -> Result<(), StoreError> {
        let d = &p.definition;
        self.execute(
            &format!(
                "INSERT INTO probes ({PROBE_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                         $17, $18, $19, $20, $21)"
            ),
            vals![
                p.id,
                d.name,
                d.kind.as_str(),
                d.target,
                d.method,
                d.expected_status.map(|r| r.min),
                d.expected_status.map(|r| r.max),
                d.timeout_ms,
                d.interval_ms,
                d.failure_threshold,
                d.success_threshold,
                d.critical,
                p.source.as_str(),
                p.created_at.unix_millis(),
                p.created_by,
                p.state.status.as_str(),
                p.state.consecutive_failures,
                p.state.consecutive_successes,
                p.state.last_checked_at.map(Timestamp::unix_millis),
                p.state.last_error,
                p.next_check_at.unix_millis(),
            ],
        )?;
        Ok(())
    }

    fn update_probe_definition(&mut self, id: &str, d: &ProbeDefinition) -> Result<(), StoreError> {
        self.execute(
            "UPDATE probes SET kind = $2, target = $3, method = $4, expect_status_min = $5,
                    expect_status_max = $6, timeout_ms = $7, interval_ms = $8,
                    failure_threshold = $9, success_threshold = $10, critical = $11
             WHERE id = $1",
            vals![
                id,
                d.kind.as_str(),
                d.target,
                d.method,
                d.expected_status.map(|r| r.min),
                d.expected_status.map(|r| r.max),
                d.timeout_ms,
                d.interval_ms,
                d.failure_threshold,
                d.success_threshold,
                d.critical,
            ],
        )?;
        Ok(())
    }

    fn get_probe(&mut self, id: &str) -> Result<Option<Probe>, StoreError> {
        self.one(
            &format!("SELECT {PROBE_COLUMNS} FROM probes WHERE id = $1"),
            [id],
            probe_from_row,
        )
    }

    fn probe_by_name(&mut self, name: &str) -> Result<Option<Probe>, StoreError> {
        self.one(
            &format!("SELECT {PROBE_COLUMNS} FROM probes WHERE name = $1"),
            [name],
            probe_from_row,
        )
    }

    fn list_probes(&mut self) -> Result<Vec<Probe>, StoreError> {
        self.collect(
            &format!("SELECT {PROBE_COLUMNS} FROM probes ORDER BY name"),
            vals![],
            probe_from_row,
        )
    }

    fn delete_probe(&mut self, id: &str) -> Result<bool, StoreError> {
        self.execute("DELETE FROM probe_results WHERE probe_id = $1", [id])?;
        Ok(self.execute("DELETE FROM probes WHERE id = $1", [id])? == 1)
    }

    fn due_probes(&mut self, now: Timestamp) -> Result<Vec<Probe>, StoreError> {
        self.collect(
            &format!(
                "SELECT {PROBE_COLUMNS} FROM probes WHERE next_check_at <= $1
                 ORDER BY next_check_at, id"
            ),
            [now.unix_millis()],
            probe_from_row,
        )
    }

    fn record_probe_check(
        &mut self,
        id: &str,
        state: &ProbeState,
        next_check_at: Timestamp,
        result: &ProbeResult,
        keep: u32,
    ) -> Result<bool, StoreError> {
        let changed = self.execute(
            "UPDATE probes SET status = $2, consecutive_failures = $3,
                    consecutive_successes = $4, last_checked_at = $5, last_error = $6,
                    next_check_at = $7
             WHERE id = $1",
            vals![
                id,
                state.status.as_str(),
                state.consecutive_failures,
                state.consecutive_successes,
                state.last_checked_at.map(Timestamp::unix_millis),
                state.last_error,
                next_check_at.unix_millis(),
            ],
        )?;
        if changed == 0 {
            return Ok(false);
        }
        self.execute(
            "INSERT INTO probe_results (probe_id, at, outcome, latency_ms, error)
             VALUES ($1, $2, $3, $4, $5)",
            vals![
                id,
                result.at.unix_millis(),
                result.outcome.as_str(),
                signed(result.latency_ms),
                result.error,
            ],
        )?;
        // Keep the newest `keep` results: the history is bounded by count.
        self.execute(
            "DELETE FROM probe_results WHERE probe_id = $1 AND id <= (
                 SELECT id FROM probe_results WHERE probe_id = $1
                 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            vals![id, keep],
        )?;
        Ok(true)
    }

    fn probe_results(&mut self, id: &str, limit: u32) -> Result<Vec<ProbeResult>, StoreError> {
        self.collect(
            "SELECT at, outcome, latency_ms, error FROM probe_results
             WHERE probe_id = $1 ORDER BY id DESC LIMIT $2",
            vals![id, limit],
            |row| {
                Ok(ProbeResult {
                    at: timestamp(row, 0)?,
                    outcome: text_enum(row, 1)?,
                    latency_ms: unsigned(row, 2)?,
                    error: row.get(3)?,
                })
            },
        )
    }

    fn touch_heartbeat(&mut self, at: Timestamp) -> Result<(), StoreError> {
        self.execute(
            "UPDATE heartbeat SET at = $1 WHERE id = 1",
            [at.unix_millis()],
        )?;
        Ok(())
    }
}
