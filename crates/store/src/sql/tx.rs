//! [`Tx`] over any [`Driver`]: every operation of the store, in SQL both databases read.

use std::str::FromStr;

use deploy_safety_core::{
    Action, AuditDraft, AuditEntry, Canary, Environment, Event, EventType, GENESIS_HASH,
    GateResult, GateState, Incident, LoadShedding, OpenIncident, Override, Probe, ProbeDefinition,
    ProbeResult, ProbeState, ReleaseRecord, Role, Rollback, StatusRange, Timestamp, UnknownValue,
    Validation, ValidationRun, ValidationStatus,
};
use serde_json::value::RawValue;

use super::value::vals;
use super::{Dialect, Driver, Row, Value};
use crate::{AuditQuery, IncidentQuery, OutboxEntry, OutboxKind, StoreError, TokenRecord, Tx};

/// The head of the audit chain as this transaction last saw it. Read once per transaction
/// (another process or replica may have appended since), then carried from entry to entry.
/// On PostgreSQL, reading it locks the head row until the transaction ends, so appends from
/// every replica form one chain.
#[derive(Clone, Debug)]
pub(crate) enum Tail {
    Unknown,
    Known { seq: u64, hash: String },
}

pub(crate) struct SqlTx<'c> {
    driver: &'c mut dyn Driver,
    tail: &'c mut Tail,
}

impl<'c> SqlTx<'c> {
    pub(crate) fn new(driver: &'c mut dyn Driver, tail: &'c mut Tail) -> Self {
        SqlTx { driver, tail }
    }
}

fn corrupt(index: usize, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {index}: {error}"))
}

const OVERRIDE_COLUMNS: &str = "id, action, environment, release_id, reason, approver, approver_role, \
     created_at, expires_at, revoked_at, revoked_by, use_count, last_used_at";

// The role comes from a scalar subquery, not a join: SQLite (built with STAT4) re-prepares a
// cached join statement every time `t.id` is bound to a new value, which made every
// authentication parse its SQL again.
const TOKEN_COLUMNS: &str = "t.id, t.name, (SELECT role FROM principals WHERE name = t.name), \
     t.secret_hash, t.created_at, t.created_by, t.revoked_at";
const TOKENS: &str = "tokens t";

const AUDIT_COLUMNS: &str =
    "seq, at, principal, role, action, environment, decision, reason, details, prev_hash, hash";

fn text_enum<T: FromStr<Err = UnknownValue>>(row: &Row, idx: usize) -> Result<T, StoreError> {
    let text: String = row.get(idx)?;
    text.parse().map_err(|e| corrupt(idx, e))
}

fn optional_enum<T: FromStr<Err = UnknownValue>>(
    row: &Row,
    idx: usize,
) -> Result<Option<T>, StoreError> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| t.parse().map_err(|e| corrupt(idx, e)))
        .transpose()
}

fn timestamp(row: &Row, idx: usize) -> Result<Timestamp, StoreError> {
    row.get(idx).map(Timestamp::from_unix_millis)
}

fn optional_timestamp(row: &Row, idx: usize) -> Result<Option<Timestamp>, StoreError> {
    row.get::<Option<i64>>(idx)
        .map(|v| v.map(Timestamp::from_unix_millis))
}

fn unsigned(row: &Row, idx: usize) -> Result<u64, StoreError> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|e| corrupt(idx, e))
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn json_column<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> Result<T, StoreError> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| corrupt(idx, e))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn small(row: &Row, idx: usize) -> Result<u32, StoreError> {
    let value: i64 = row.get(idx)?;
    u32::try_from(value).map_err(|e| corrupt(idx, e))
}

const INCIDENT_COLUMNS: &str = "id, title, severity, category, environment, status, opened_at, \
     opened_by, updated_at, resolved_at, resolved_by, history";

fn incident_from_row(row: &Row) -> Result<Incident, StoreError> {
    Ok(Incident {
        id: row.get(0)?,
        title: row.get(1)?,
        severity: text_enum(row, 2)?,
        category: text_enum(row, 3)?,
        environment: optional_enum(row, 4)?,
        status: text_enum(row, 5)?,
        opened_at: timestamp(row, 6)?,
        opened_by: row.get(7)?,
        updated_at: timestamp(row, 8)?,
        resolved_at: optional_timestamp(row, 9)?,
        resolved_by: row.get(10)?,
        history: json_column(row, 11)?,
    })
}

const VALIDATION_COLUMNS: &str = "id, release_id, environment, created_at, created_by";

fn validation_from_row(row: &Row) -> Result<Validation, StoreError> {
    Ok(Validation {
        id: row.get(0)?,
        release_id: row.get(1)?,
        environment: text_enum(row, 2)?,
        created_at: timestamp(row, 3)?,
        created_by: row.get(4)?,
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

fn event_from_row(row: &Row) -> Result<Event, StoreError> {
    Ok(Event {
        seq: unsigned(row, 0)?,
        event_type: text_enum(row, 1)?,
        at: timestamp(row, 2)?,
        environment: optional_enum(row, 3)?,
        data: json_column(row, 4)?,
    })
}

const OUTBOX_COLUMNS: &str = "id, kind, target, event_seq, rollback_id, attempts, \
     next_attempt_at, done_at, failed_at, last_error";

fn outbox_from_row(row: &Row) -> Result<OutboxEntry, StoreError> {
    let kind: String = row.get(1)?;
    let kind = OutboxKind::parse(&kind)
        .ok_or_else(|| corrupt(1, format!("unknown outbox kind `{kind}`")))?;
    Ok(OutboxEntry {
        id: unsigned(row, 0)?,
        kind,
        target: row.get(2)?,
        event_seq: row
            .get::<Option<i64>>(3)?
            .map(|v| u64::try_from(v).unwrap_or_default()),
        rollback_id: row.get(4)?,
        attempts: small(row, 5)?,
        next_attempt_at: optional_timestamp(row, 6)?,
        done_at: optional_timestamp(row, 7)?,
        failed_at: optional_timestamp(row, 8)?,
        last_error: row.get(9)?,
    })
}

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

fn override_from_row(row: &Row) -> Result<Override, StoreError> {
    Ok(Override {
        id: row.get(0)?,
        action: text_enum(row, 1)?,
        environment: text_enum(row, 2)?,
        release_id: row.get(3)?,
        reason: row.get(4)?,
        approver: row.get(5)?,
        approver_role: text_enum(row, 6)?,
        created_at: timestamp(row, 7)?,
        expires_at: timestamp(row, 8)?,
        revoked_at: optional_timestamp(row, 9)?,
        revoked_by: row.get(10)?,
        use_count: unsigned(row, 11)?,
        last_used_at: optional_timestamp(row, 12)?,
    })
}

fn token_from_row(row: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role: text_enum(row, 2)?,
        secret_hash: row.get(3)?,
        created_at: timestamp(row, 4)?,
        created_by: row.get(5)?,
        revoked_at: optional_timestamp(row, 6)?,
    })
}

fn audit_from_row(row: &Row) -> Result<AuditEntry, StoreError> {
    let details: String = row.get(8)?;
    let details = RawValue::from_string(details).map_err(|e| corrupt(8, e))?;
    Ok(AuditEntry {
        seq: unsigned(row, 0)?,
        at: timestamp(row, 1)?,
        principal: row.get(2)?,
        role: optional_enum(row, 3)?,
        action: row.get(4)?,
        environment: optional_enum(row, 5)?,
        decision: text_enum(row, 6)?,
        reason: row.get(7)?,
        details,
        prev_hash: row.get(9)?,
        hash: row.get(10)?,
    })
}

impl SqlTx<'_> {
    /// The audit chain's head (seq and hash of the last entry), read once per transaction. On
    /// PostgreSQL the read locks the head row until the transaction ends: appends from every
    /// replica wait their turn and form one chain.
    fn chain_head(&mut self) -> Result<(u64, String), StoreError> {
        if let Tail::Known { seq, hash } = &*self.tail {
            return Ok((*seq, hash.clone()));
        }
        let sql = match self.driver.dialect() {
            Dialect::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
            Dialect::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        };
        let (seq, hash) = self
            .one(sql, vals![], |row| {
                Ok((unsigned(row, 0)?, row.get::<String>(1)?))
            })?
            .unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
        *self.tail = Tail::Known {
            seq,
            hash: hash.clone(),
        };
        Ok((seq, hash))
    }

    fn collect<T>(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = impl Into<Value>>,
        map: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let params: Vec<Value> = params.into_iter().map(Into::into).collect();
        self.driver.query(sql, &params)?.iter().map(map).collect()
    }

    fn one<T>(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = impl Into<Value>>,
        map: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let params: Vec<Value> = params.into_iter().map(Into::into).collect();
        self.driver
            .query(sql, &params)?
            .first()
            .map(map)
            .transpose()
    }

    fn execute(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = impl Into<Value>>,
    ) -> Result<u64, StoreError> {
        let params: Vec<Value> = params.into_iter().map(Into::into).collect();
        self.driver.execute(sql, &params)
    }

    fn count(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = impl Into<Value>>,
    ) -> Result<u64, StoreError> {
        let n: i64 = self.one(sql, params, |r| r.get(0))?.unwrap_or_default();
        Ok(u64::try_from(n).unwrap_or_default())
    }
}

impl Tx for SqlTx<'_> {
    fn gate_state(&mut self) -> Result<GateState, StoreError> {
        self.one(
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
        .ok_or_else(|| StoreError::Corrupt("the gate_state row is missing".into()))
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
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
        self.collect(
            &format!(
                "SELECT {OVERRIDE_COLUMNS} FROM overrides
                 WHERE action = $1 AND environment = $2 AND expires_at > $3
                   AND revoked_at IS NULL"
            ),
            vals![action.as_str(), environment.as_str(), now.unix_millis()],
            override_from_row,
        )
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
        self.execute(
            "UPDATE overrides SET use_count = use_count + 1, last_used_at = $2 WHERE id = $1",
            vals![id, at.unix_millis()],
        )?;
        Ok(())
    }

    fn principal_role(&mut self, name: &str) -> Result<Option<Role>, StoreError> {
        self.one(
            "SELECT role FROM principals WHERE name = $1",
            [name],
            |row| text_enum(row, 0),
        )
    }

    fn insert_principal(
        &mut self,
        name: &str,
        role: Role,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO principals (name, role, created_at) VALUES ($1, $2, $3)",
            vals![name, role.as_str(), at.unix_millis()],
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
        Ok(self.execute(
            "UPDATE overrides SET expiry_announced = $2 WHERE id = $1 AND NOT expiry_announced",
            vals![id, true],
        )? == 1)
    }

    fn insert_token(&mut self, t: &TokenRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO tokens (id, name, secret_hash, created_at, created_by, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            vals![
                t.id,
                t.name,
                t.secret_hash,
                t.created_at.unix_millis(),
                t.created_by,
                t.revoked_at.map(Timestamp::unix_millis),
            ],
        )?;
        Ok(())
    }

    fn get_token(&mut self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.one(
            &format!("SELECT {TOKEN_COLUMNS} FROM {TOKENS} WHERE t.id = $1"),
            [id],
            token_from_row,
        )
    }

    fn list_tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError> {
        self.collect(
            &format!("SELECT {TOKEN_COLUMNS} FROM {TOKENS} ORDER BY t.created_at, t.id"),
            vals![],
            token_from_row,
        )
    }

    fn count_tokens(&mut self) -> Result<u64, StoreError> {
        self.count("SELECT count(*) FROM tokens", vals![])
    }

    fn revoke_token(&mut self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
        let changed = self.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            vals![id, at.unix_millis()],
        )?;
        Ok(changed == 1)
    }

    fn revoke_tokens_of(
        &mut self,
        name: &str,
        at: Timestamp,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let active = self.collect(
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM {TOKENS}
                 WHERE t.name = $1 AND t.revoked_at IS NULL ORDER BY t.created_at, t.id"
            ),
            [name],
            token_from_row,
        )?;
        self.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            vals![name, at.unix_millis()],
        )?;
        Ok(active
            .into_iter()
            .map(|t| TokenRecord {
                revoked_at: Some(at),
                ..t
            })
            .collect())
    }

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
                i.environment.map(Environment::as_str),
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
                q.environment.map(Environment::as_str),
                q.limit,
            ],
            incident_from_row,
        )
    }

    fn open_incidents(&mut self) -> Result<Vec<OpenIncident>, StoreError> {
        self.collect(
            "SELECT id, title, severity, environment FROM incidents
             WHERE status = 'open' ORDER BY opened_at, id",
            vals![],
            |row| {
                Ok(OpenIncident {
                    id: row.get(0)?,
                    title: row.get(1)?,
                    severity: text_enum(row, 2)?,
                    environment: optional_enum(row, 3)?,
                })
            },
        )
    }

    fn insert_validation(&mut self, v: &Validation) -> Result<(), StoreError> {
        self.execute(
            &format!("INSERT INTO validations ({VALIDATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
            vals![
                v.id,
                v.release_id,
                v.environment.as_str(),
                v.created_at.unix_millis(),
                v.created_by,
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
        limit: u32,
    ) -> Result<Vec<Validation>, StoreError> {
        self.collect(
            &format!(
                "SELECT {VALIDATION_COLUMNS} FROM validations
                 WHERE (CAST($1 AS TEXT) IS NULL OR release_id = $1) AND (CAST($2 AS TEXT) IS NULL OR environment = $2)
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            ),
            vals![release_id, environment.map(Environment::as_str), limit],
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
    ) -> Result<bool, StoreError> {
        let found = self.count(
            "SELECT count(*) FROM validation_runs
             WHERE status = 'passed' AND validation_id IN
                 (SELECT id FROM validations WHERE release_id = $1 AND environment = $2)",
            vals![release_id, environment.as_str()],
        )?;
        Ok(found > 0)
    }

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

    fn insert_canary(&mut self, c: &Canary) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO canaries (id, environment, release_id, phase, started_at, next_step_at, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vals![
                c.id,
                c.environment.as_str(),
                c.release_id,
                c.phase.as_str(),
                c.started_at.unix_millis(),
                c.next_step_at.map(Timestamp::unix_millis),
                to_json(c)?,
            ],
        )
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "{} already has an active canary",
                c.environment
            )),
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

    fn active_canary(&mut self, environment: Environment) -> Result<Option<Canary>, StoreError> {
        self.one(
            "SELECT body FROM canaries
             WHERE environment = $1 AND phase IN ('progressing', 'paused')",
            [environment.as_str()],
            |row| json_column(row, 0),
        )
    }

    fn list_canaries(
        &mut self,
        environment: Option<Environment>,
        limit: u32,
    ) -> Result<Vec<Canary>, StoreError> {
        self.collect(
            "SELECT body FROM canaries WHERE (CAST($1 AS TEXT) IS NULL OR environment = $1)
             ORDER BY started_at DESC, id DESC LIMIT $2",
            vals![environment.map(Environment::as_str), limit],
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

    fn append_event(
        &mut self,
        event_type: EventType,
        at: Timestamp,
        environment: Option<Environment>,
        data: &serde_json::Value,
    ) -> Result<Event, StoreError> {
        // Events take the chain's lock too, so their seqs are in commit order across
        // replicas: a reader that has seen seq N never later finds a smaller one appear.
        self.chain_head()?;
        let seq: i64 = self
            .one(
                "SELECT coalesce(max(seq), 0) + 1 FROM events",
                vals![],
                |r| r.get(0),
            )?
            .unwrap_or(1);
        self.execute(
            "INSERT INTO events (seq, type, at, environment, data) VALUES ($1, $2, $3, $4, $5)",
            vals![
                seq,
                event_type.as_str(),
                at.unix_millis(),
                environment.map(Environment::as_str),
                data.to_string(),
            ],
        )?;
        Ok(Event {
            seq: u64::try_from(seq).unwrap_or_default(),
            event_type,
            at,
            environment,
            data: data.clone(),
        })
    }

    fn events_after(&mut self, after: u64, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.collect(
            "SELECT seq, type, at, environment, data FROM events WHERE seq > $1
             ORDER BY seq LIMIT $2",
            vals![signed(after), limit],
            event_from_row,
        )
    }

    fn get_event(&mut self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.one(
            "SELECT seq, type, at, environment, data FROM events WHERE seq = $1",
            [signed(seq)],
            event_from_row,
        )
    }

    fn last_event_seq(&mut self) -> Result<u64, StoreError> {
        self.count("SELECT coalesce(max(seq), 0) FROM events", vals![])
    }

    fn enqueue(
        &mut self,
        kind: OutboxKind,
        target: &str,
        event_seq: Option<u64>,
        rollback_id: Option<&str>,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let id: i64 = self
            .one(
                "INSERT INTO outbox (kind, target, event_seq, rollback_id, next_attempt_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                vals![
                    kind.as_str(),
                    target,
                    event_seq.map(signed),
                    rollback_id,
                    at.unix_millis(),
                ],
                |row| row.get(0),
            )?
            .unwrap_or_default();
        Ok(u64::try_from(id).unwrap_or_default())
    }

    fn claim_outbox(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let skip_claimed = match self.driver.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
        };
        let due = self.collect(
            &format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox
                 WHERE done_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1
                 ORDER BY next_attempt_at, id LIMIT $2 {skip_claimed}"
            ),
            vals![now.unix_millis(), limit],
            outbox_from_row,
        )?;
        for entry in &due {
            self.execute(
                "UPDATE outbox SET next_attempt_at = $2 WHERE id = $1",
                vals![signed(entry.id), lease_until.unix_millis()],
            )?;
        }
        Ok(due)
    }

    fn get_outbox(&mut self, id: u64) -> Result<Option<OutboxEntry>, StoreError> {
        self.one(
            &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"),
            [signed(id)],
            outbox_from_row,
        )
    }

    fn put_outbox(&mut self, e: &OutboxEntry) -> Result<(), StoreError> {
        self.execute(
            "UPDATE outbox SET attempts = $2, next_attempt_at = $3, done_at = $4, failed_at = $5,
                    last_error = $6
             WHERE id = $1",
            vals![
                signed(e.id),
                e.attempts,
                e.next_attempt_at.map(Timestamp::unix_millis),
                e.done_at.map(Timestamp::unix_millis),
                e.failed_at.map(Timestamp::unix_millis),
                e.last_error,
            ],
        )?;
        Ok(())
    }

    fn outbox_for(
        &mut self,
        kind: OutboxKind,
        target: &str,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.collect(
            &format!(
                "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE kind = $1 AND target = $2 ORDER BY id"
            ),
            vals![kind.as_str(), target],
            outbox_from_row,
        )
    }

    fn append_audit(&mut self, draft: AuditDraft, at: Timestamp) -> Result<AuditEntry, StoreError> {
        let (seq, prev_hash) = self.chain_head()?;
        let entry = AuditEntry::seal(draft, seq + 1, at, &prev_hash);
        self.execute(
            &format!(
                "INSERT INTO audit_log ({AUDIT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            vals![
                signed(entry.seq),
                entry.at.unix_millis(),
                entry.principal,
                entry.role.map(|r| r.as_str()),
                entry.action,
                entry.environment.map(|e| e.as_str()),
                entry.decision.as_str(),
                entry.reason,
                entry.details.get(),
                entry.prev_hash,
                entry.hash,
            ],
        )?;
        self.execute(
            "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
            vals![signed(entry.seq), entry.hash],
        )?;
        *self.tail = Tail::Known {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
        Ok(entry)
    }

    fn audit_page(&mut self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut conditions = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut condition = |sql: &str, value: Value| {
            values.push(value);
            conditions.push(format!("{sql} ${}", values.len()));
        };
        if let Some(action) = &q.action {
            condition("action =", Value::Text(action.clone()));
        }
        if let Some(environment) = q.environment {
            condition("environment =", Value::Text(environment.as_str().into()));
        }
        if let Some(principal) = &q.principal {
            condition("principal =", Value::Text(principal.clone()));
        }
        if let Some(decision) = q.decision {
            condition("decision =", Value::Text(decision.as_str().into()));
        }
        if let Some(since) = q.since {
            condition("at >=", Value::Int(since.unix_millis()));
        }
        if let Some(until) = q.until {
            condition("at <", Value::Int(until.unix_millis()));
        }
        if let Some(before) = q.before_seq {
            condition("seq <", Value::Int(signed(before)));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        values.push(Value::Int(i64::from(q.limit)));
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log {filter} ORDER BY seq DESC LIMIT ${}",
            values.len()
        );
        self.collect(&sql, values, audit_from_row)
    }

    fn audit_after(&mut self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.collect(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"),
            vals![signed(after_seq), limit],
            audit_from_row,
        )
    }

    fn audit_head(&mut self) -> Result<Option<(u64, String)>, StoreError> {
        self.one(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            vals![],
            |row| Ok((unsigned(row, 0)?, row.get(1)?)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// Statements on the hot path stay prepared when bound to new values (see `TOKENS`): a
    /// re-prepare parses the SQL again on every request.
    #[test]
    fn hot_lookups_are_not_reprepared_when_rebound() {
        let dir = tempfile::tempdir().unwrap();
        let mut session = crate::sqlite::open_write_session(&dir.path().join("db.sqlite")).unwrap();
        session
            .conn
            .execute_batch(
                "INSERT INTO principals VALUES ('ci', 'developer', 1);
                 INSERT INTO tokens VALUES ('t1', 'ci', x'00', 1, 'test', NULL);",
            )
            .unwrap();
        let mut tail = Tail::Unknown;
        for i in 0..20 {
            let mut tx = SqlTx::new(&mut session, &mut tail);
            let found = tx.get_token(&format!("t{i}")).unwrap();
            assert_eq!(found.is_some(), i == 1);
            tx.release_passed_validation(&format!("v{i}"), Environment::Staging)
                .unwrap();
        }
        for sql in [
            format!("SELECT {TOKEN_COLUMNS} FROM {TOKENS} WHERE t.id = $1"),
            "SELECT count(*) FROM validation_runs
             WHERE status = 'passed' AND validation_id IN
                 (SELECT id FROM validations WHERE release_id = $1 AND environment = $2)"
                .to_owned(),
        ] {
            let statement = session.conn.prepare_cached(&sql).unwrap();
            assert_eq!(statement.get_status(StatementStatus::RePrepare), 0, "{sql}");
        }
    }
}
