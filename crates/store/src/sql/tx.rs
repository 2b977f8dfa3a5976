//! [`crate::Tx`] over any [`Driver`]: the transaction type and what its domain modules share.
//! Each domain's operations live in a module of their own beside this one (`gate.rs`,
//! `audit.rs`, ...), in SQL both databases read.

pub(super) use std::str::FromStr;

pub(super) use deploy_safety_core::{
    Action, AuditDraft, AuditEntry, Canary, Environment, Event, EventType, GENESIS_HASH,
    GateResult, GateState, GithubRequest, Incident, LoadShedding, OpenIncident, Override,
    OverrideRequest, Probe, ProbeDefinition, ProbeResult, ProbeState, ReleaseRecord, RequestStatus,
    Role, Rollback, StatusRange, Timestamp, UnknownValue, Validation, ValidationRun,
    ValidationStatus, Vote,
};

pub(super) use super::value::vals;
pub(super) use super::{Dialect, Driver, Row, Value};
pub(super) use crate::tx::*;
pub(super) use crate::{
    AuditQuery, IncidentQuery, LoginRequestRecord, OutboxEntry, OutboxKind, SessionRecord,
    StoreError, TokenRecord,
};

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
    pub(super) driver: &'c mut dyn Driver,
    pub(super) tail: &'c mut Tail,
}

impl<'c> SqlTx<'c> {
    pub(crate) fn new(driver: &'c mut dyn Driver, tail: &'c mut Tail) -> Self {
        SqlTx { driver, tail }
    }
}

pub(super) fn corrupt(index: usize, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("column {index}: {error}"))
}

pub(super) fn text_enum<T: FromStr<Err = UnknownValue>>(
    row: &Row,
    idx: usize,
) -> Result<T, StoreError> {
    let text: String = row.get(idx)?;
    text.parse().map_err(|e| corrupt(idx, e))
}

/// An environment name stored in a column.
pub(super) fn environment(row: &Row, idx: usize) -> Result<Environment, StoreError> {
    let text: String = row.get(idx)?;
    Environment::parse(&text).map_err(|e| corrupt(idx, e))
}

/// An environment name stored in a nullable column.
pub(super) fn optional_environment(
    row: &Row,
    idx: usize,
) -> Result<Option<Environment>, StoreError> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| Environment::parse(&t).map_err(|e| corrupt(idx, e)))
        .transpose()
}

pub(super) fn timestamp(row: &Row, idx: usize) -> Result<Timestamp, StoreError> {
    row.get(idx).map(Timestamp::from_unix_millis)
}

pub(super) fn optional_timestamp(row: &Row, idx: usize) -> Result<Option<Timestamp>, StoreError> {
    row.get::<Option<i64>>(idx)
        .map(|v| v.map(Timestamp::from_unix_millis))
}

pub(super) fn unsigned(row: &Row, idx: usize) -> Result<u64, StoreError> {
    let value: i64 = row.get(idx)?;
    u64::try_from(value).map_err(|e| corrupt(idx, e))
}

pub(super) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn json_column<T: serde::de::DeserializeOwned>(
    row: &Row,
    idx: usize,
) -> Result<T, StoreError> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| corrupt(idx, e))
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn small(row: &Row, idx: usize) -> Result<u32, StoreError> {
    let value: i64 = row.get(idx)?;
    u32::try_from(value).map_err(|e| corrupt(idx, e))
}

impl SqlTx<'_> {
    /// The audit chain's head (seq and hash of the last entry), read once per transaction. On
    /// PostgreSQL the read locks the head row until the transaction ends: appends from every
    /// replica wait their turn and form one chain.
    pub(super) fn chain_head(&mut self) -> Result<(u64, String), StoreError> {
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

    pub(super) fn collect<T>(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = impl Into<Value>>,
        map: impl FnMut(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let params: Vec<Value> = params.into_iter().map(Into::into).collect();
        self.driver.query(sql, &params)?.iter().map(map).collect()
    }

    pub(super) fn one<T>(
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

    pub(super) fn execute(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = impl Into<Value>>,
    ) -> Result<u64, StoreError> {
        let params: Vec<Value> = params.into_iter().map(Into::into).collect();
        self.driver.execute(sql, &params)
    }

    pub(super) fn count(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = impl Into<Value>>,
    ) -> Result<u64, StoreError> {
        let n: i64 = self.one(sql, params, |r| r.get(0))?.unwrap_or_default();
        Ok(u64::try_from(n).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::tokens::{TOKEN_COLUMNS, TOKENS};
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
            tx.release_passed_validation(&format!("v{i}"), Environment::STAGING, None)
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
