//! A SQLite connection as a [`Session`].

use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, Value as SqliteValue, ValueRef};

use super::database;
use crate::StoreError;
use crate::session::Session;
use crate::sql::{Dialect, Driver, Row, Value};

pub(crate) struct SqliteSession {
    pub(crate) conn: Connection,
}

impl Session for SqliteSession {
    /// IMMEDIATE: take the write lock at once, so another process (the CLI) waits its turn
    /// instead of failing mid-transaction.
    fn begin_write(&mut self) -> Result<(), StoreError> {
        self.control("BEGIN IMMEDIATE")
    }

    fn begin_read(&mut self) -> Result<(), StoreError> {
        self.control("BEGIN")
    }

    fn usable(&mut self) -> bool {
        true
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(SqliteValue::Null),
            Value::Int(v) => ToSqlOutput::Owned(SqliteValue::Integer(*v)),
            Value::Bool(b) => ToSqlOutput::Owned(SqliteValue::Integer(i64::from(*b))),
            Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

fn value(cell: ValueRef<'_>) -> Result<Value, StoreError> {
    Ok(match cell {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
        ValueRef::Real(r) => {
            return Err(StoreError::Corrupt(format!("unexpected real number {r}")));
        }
    })
}

/// Binds `params` by the `$N` in each placeholder's name. SQLite numbers named parameters in
/// the order they first appear, so positional binding would break as soon as a statement
/// mentions `$2` before `$1`.
fn bind(statement: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<(), StoreError> {
    statement.clear_bindings();
    for index in 1..=statement.parameter_count() {
        let position = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| StoreError::Database(format!("parameter {index} is not written $N")))?;
        let value = params
            .get(position - 1)
            .ok_or_else(|| StoreError::Database(format!("no value for parameter ${position}")))?;
        statement
            .raw_bind_parameter(index, value)
            .map_err(database)?;
    }
    Ok(())
}

impl Driver for SqliteSession {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(database)?;
        let columns = statement.column_count();
        bind(&mut statement, params)?;
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(database)? {
            let cells = (0..columns)
                .map(|i| value(row.get_ref(i).map_err(database)?))
                .collect::<Result<Vec<Value>, StoreError>>()?;
            out.push(Row(cells));
        }
        Ok(out)
    }

    /// A single statement (`BEGIN IMMEDIATE`, `SAVEPOINT job`, ...) runs from the statement
    /// cache: the writer issues several per job, and parsing them each time was measurable.
    fn control(&mut self, sql: &str) -> Result<(), StoreError> {
        if sql.contains(';') {
            return self.conn.execute_batch(sql).map_err(database);
        }
        let mut statement = self.conn.prepare_cached(sql).map_err(database)?;
        statement.raw_execute().map(drop).map_err(database)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(database)?;
        bind(&mut statement, params)?;
        let changed = statement.raw_execute().map_err(database)?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }
}
