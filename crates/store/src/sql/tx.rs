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

pub(super) use super::cache::GateCache;
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

/// The audit chain's head row as a batch reads it first, under the write lock: the chain's
/// head and the version of the gate's inputs (see [`GateCache`]).
#[derive(Clone, Debug)]
pub(crate) struct BatchHead {
    pub(crate) seq: u64,
    pub(crate) hash: String,
    pub(crate) state_version: i64,
}

/// What a transaction carries from statement to statement: the chain's tail, the gate cache,
/// and in a writer's batch the audit entries appended but not written yet.
///
/// A batch writes its entries late and together: an appended entry waits in `pending` until
/// the next statement of any job or the commit, whichever comes first, and then every waiting
/// entry is written in multi-row inserts with one update of the head row. So a statement, and
/// the commit, always see every entry appended before them, and a batch of decisions that need
/// no other statement (the gate's inputs cached) costs a few statements, not a few per
/// decision. A job's savepoint is opened at its first statement, after the entries of earlier
/// jobs are written: a job that runs no statement needs none, and a job that fails takes back
/// exactly its own entries, written or waiting.
pub(crate) struct TxState {
    pub(crate) tail: Tail,
    pub(crate) cache: GateCache,
    pending: Vec<AuditEntry>,
    /// Whether appended entries wait for the next statement (a writer's batch) or are written
    /// at once.
    defer_audit: bool,
    job: Option<JobState>,
}

struct JobState {
    savepoint_open: bool,
    /// Entries in `pending` that earlier jobs appended.
    earlier_pending: usize,
    tail_before: Tail,
}

/// How a job ended, as the writer tells [`TxState::end_job`].
pub(crate) enum JobEnd {
    Succeeded,
    Failed,
}

impl TxState {
    /// A transaction that writes each entry as it is appended and uses no cache: reads, and
    /// tools that write on a connection of their own.
    pub(crate) fn direct() -> Self {
        TxState {
            tail: Tail::Unknown,
            cache: GateCache::off(),
            pending: Vec::new(),
            defer_audit: false,
            job: None,
        }
    }

    /// The writer's state, kept from batch to batch for its cache.
    pub(crate) fn writer() -> Self {
        TxState {
            defer_audit: true,
            ..TxState::direct()
        }
    }

    /// A batch began with `head` read under the write lock.
    pub(crate) fn begin_batch(&mut self, head: BatchHead) {
        self.tail = Tail::Known {
            seq: head.seq,
            hash: head.hash,
        };
        self.pending.clear();
        self.job = None;
        self.cache.begin_batch(head.state_version);
    }

    /// The batch ended: committed when `committed`, rolled back otherwise.
    pub(crate) fn end_batch(&mut self, committed: bool) {
        self.tail = Tail::Unknown;
        self.pending.clear();
        self.job = None;
        if committed {
            self.cache.end_batch();
        } else {
            self.cache.turn_off();
        }
    }

    pub(crate) fn begin_job(&mut self) {
        self.job = Some(JobState {
            savepoint_open: false,
            earlier_pending: self.pending.len(),
            tail_before: self.tail.clone(),
        });
    }
}

pub(crate) struct SqlTx<'c> {
    pub(super) driver: &'c mut dyn Driver,
    pub(super) state: &'c mut TxState,
}

impl<'c> SqlTx<'c> {
    pub(crate) fn new(driver: &'c mut dyn Driver, state: &'c mut TxState) -> Self {
        SqlTx { driver, state }
    }

    /// Ends the job begun by [`TxState::begin_job`]: releases its savepoint, or rolls back to
    /// it and forgets the entries it appended.
    pub(crate) fn end_job(&mut self, end: JobEnd) -> Result<(), StoreError> {
        let Some(job) = self.state.job.take() else {
            return Ok(());
        };
        match end {
            JobEnd::Succeeded => {
                if job.savepoint_open {
                    self.driver.control("RELEASE SAVEPOINT job")?;
                }
            }
            JobEnd::Failed => {
                if job.savepoint_open {
                    self.driver.control("ROLLBACK TO SAVEPOINT job")?;
                    self.driver.control("RELEASE SAVEPOINT job")?;
                }
                self.state.pending.truncate(job.earlier_pending);
                self.state.tail = job.tail_before;
                // What it read or wrote is gone with its savepoint.
                self.state.cache.turn_off();
            }
        }
        Ok(())
    }

    /// Writes every waiting entry: the batch is about to commit.
    pub(crate) fn write_pending(&mut self) -> Result<(), StoreError> {
        let all = self.state.pending.len();
        self.write_audit_entries(all)
    }

    /// Before any statement: the job's savepoint (opened after the entries of earlier jobs are
    /// written, so a rollback to it takes back only this job's), then every waiting entry.
    fn before_statement(&mut self) -> Result<(), StoreError> {
        if let Some(job) = &self.state.job
            && !job.savepoint_open
        {
            let earlier = job.earlier_pending;
            self.write_audit_entries(earlier)?;
            self.driver.control("SAVEPOINT job")?;
            if let Some(job) = &mut self.state.job {
                job.savepoint_open = true;
                job.earlier_pending = 0;
            }
        }
        let all = self.state.pending.len();
        self.write_audit_entries(all)
    }

    /// Appends `entry` to the chain: now, or with the batch's next statement.
    pub(super) fn push_audit_entry(&mut self, entry: AuditEntry) -> Result<(), StoreError> {
        self.state.tail = Tail::Known {
            seq: entry.seq,
            hash: entry.hash.clone(),
        };
        self.state.pending.push(entry);
        if self.state.defer_audit {
            Ok(())
        } else {
            let all = self.state.pending.len();
            self.write_audit_entries(all)
        }
    }

    /// Writes the first `count` waiting entries, in order, and moves the head row to the last.
    fn write_audit_entries(&mut self, count: usize) -> Result<(), StoreError> {
        if count == 0 {
            return Ok(());
        }
        let entries: Vec<AuditEntry> = self.state.pending.drain(..count).collect();
        super::audit::insert_entries(&mut *self.driver, &entries)?;
        if let Some(job) = &mut self.state.job {
            job.earlier_pending = job.earlier_pending.saturating_sub(count);
        }
        Ok(())
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
        if let Tail::Known { seq, hash } = &self.state.tail {
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
        self.state.tail = Tail::Known {
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
        self.before_statement()?;
        self.driver.query(sql, &params)?.iter().map(map).collect()
    }

    pub(super) fn one<T>(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = impl Into<Value>>,
        map: impl FnOnce(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let params: Vec<Value> = params.into_iter().map(Into::into).collect();
        self.before_statement()?;
        self.driver
            .query(sql, &params)?
            .first()
            .map(map)
            .transpose()
    }

    /// Runs a statement that changes rows. Anything it changes may be an input of the gate,
    /// so the cache is off for the rest of the batch; see [`Self::execute_keeping_inputs`].
    pub(super) fn execute(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = impl Into<Value>>,
    ) -> Result<u64, StoreError> {
        self.state.cache.turn_off();
        self.execute_keeping_inputs(sql, params)
    }

    /// Runs a statement that changes no input of the gate (see [`GateCache`]): an override's
    /// use count, say. The triggers of `state_version` agree: they leave such updates alone.
    pub(super) fn execute_keeping_inputs(
        &mut self,
        sql: &str,
        params: impl IntoIterator<Item = impl Into<Value>>,
    ) -> Result<u64, StoreError> {
        let params: Vec<Value> = params.into_iter().map(Into::into).collect();
        self.before_statement()?;
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
        let mut state = TxState::direct();
        for i in 0..20 {
            let mut tx = SqlTx::new(&mut session, &mut state);
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
