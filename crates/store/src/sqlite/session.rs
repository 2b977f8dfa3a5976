//! A SQLite connection as a [`Session`].

use std::collections::HashMap;

use rusqlite::Connection;
use rusqlite::types::{ToSqlOutput, Value as SqliteValue, ValueRef};

use super::database;
use crate::StoreError;
use crate::session::Session;
use crate::sql::{Dialect, Driver, Row, Value};

pub(crate) struct SqliteSession {
    pub(crate) conn: Connection,
    /// For each statement's SQL, which value each of its parameters takes (see [`bind`]).
    positions: HashMap<String, Box<[usize]>>,
}

/// More distinct statements than this and the positions are forgotten and learnt again: the
/// code has far fewer, but a statement built with a variable list must not grow it forever.
const POSITIONS_KEPT: usize = 512;

impl SqliteSession {
    pub(crate) fn new(conn: Connection) -> Self {
        SqliteSession {
            conn,
            positions: HashMap::new(),
        }
    }
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

/// The value index (0-based) of each parameter (1-based) of `statement`, learnt once per SQL
/// text and kept in `known`: asking SQLite for a parameter's name scans the statement's list of
/// names, so doing it for every parameter of every execution costs the square of their number,
/// and a batch's 64-row audit insert has 704 of them.
fn positions<'k>(
    known: &'k mut HashMap<String, Box<[usize]>>,
    sql: &str,
    statement: &rusqlite::Statement<'_>,
) -> Result<&'k [usize], StoreError> {
    if !known.contains_key(sql) {
        let learnt = (1..=statement.parameter_count())
            .map(|index| {
                statement
                    .parameter_name(index)
                    .and_then(|name| name.strip_prefix('$'))
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| n.checked_sub(1))
                    .ok_or_else(|| {
                        StoreError::Database(format!("parameter {index} is not written $N"))
                    })
            })
            .collect::<Result<Box<[usize]>, _>>()?;
        if known.len() >= POSITIONS_KEPT {
            known.clear();
        }
        known.insert(sql.to_owned(), learnt);
    }
    Ok(known.get(sql).map_or(&[][..], |p| &p[..]))
}

/// Binds `params` by the `$N` in each placeholder's name, as [`positions`] read them. SQLite
/// numbers named parameters in the order they first appear, so positional binding would break
/// as soon as a statement mentions `$2` before `$1`.
fn bind(
    statement: &mut rusqlite::Statement<'_>,
    positions: &[usize],
    params: &[Value],
) -> Result<(), StoreError> {
    statement.clear_bindings();
    for (index, &position) in (1..).zip(positions) {
        let value = params.get(position).ok_or_else(|| {
            StoreError::Database(format!("no value for parameter ${}", position + 1))
        })?;
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
        let positions = positions(&mut self.positions, sql, &statement)?;
        bind(&mut statement, positions, params)?;
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
        let positions = positions(&mut self.positions, sql, &statement)?;
        bind(&mut statement, positions, params)?;
        let changed = statement.raw_execute().map_err(database)?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SqliteSession {
        SqliteSession::new(Connection::open_in_memory().expect("in-memory database"))
    }

    fn texts(rows: Vec<Row>) -> Vec<Vec<String>> {
        rows.into_iter()
            .map(|row| {
                row.0
                    .into_iter()
                    .map(|cell| match cell {
                        Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                    .collect()
            })
            .collect()
    }

    /// Each placeholder gets the value its number names, however the statement orders or
    /// repeats them, on the first execution and on the next ones (positions learnt once).
    #[test]
    fn parameters_bind_by_their_number() {
        let mut session = session();
        for (sql, params, expected) in [
            ("SELECT $1, $2", vec!["a", "b"], vec!["a", "b"]),
            ("SELECT $2, $1", vec!["a", "b"], vec!["b", "a"]),
            (
                "SELECT $3, $1, $3, $2",
                vec!["a", "b", "c"],
                vec!["c", "a", "c", "b"],
            ),
        ] {
            let values: Vec<Value> = params
                .iter()
                .map(|p| Value::Text((*p).to_owned()))
                .collect();
            for run in 0..2 {
                let rows = session.query(sql, &values).expect("query");
                assert_eq!(texts(rows), vec![expected.clone()], "{sql}, run {run}");
            }
        }
        let missing = session.query("SELECT $1, $2", &[Value::Text("a".to_owned())]);
        assert!(
            matches!(&missing, Err(StoreError::Database(m)) if m.contains("$2")),
            "{missing:?}"
        );
        let unnumbered = session.query("SELECT :name", &[Value::Text("a".to_owned())]);
        assert!(
            matches!(&unnumbered, Err(StoreError::Database(m)) if m.contains("$N")),
            "{unnumbered:?}"
        );
    }

    /// More distinct statements than are kept: the positions are learnt again, still right.
    #[test]
    fn positions_beyond_the_limit_are_learnt_again() {
        let mut session = session();
        for n in 0..(POSITIONS_KEPT + 10) {
            let sql = format!("SELECT $2 || '{n}', $1");
            let rows = session
                .query(
                    &sql,
                    &[Value::Text("x".to_owned()), Value::Text("y".to_owned())],
                )
                .expect("query");
            assert_eq!(texts(rows), vec![vec![format!("y{n}"), "x".to_owned()]]);
            assert!(session.positions.len() <= POSITIONS_KEPT);
        }
    }
}
