//! A PostgreSQL connection as a [`Session`].

use std::collections::HashMap;
use std::error::Error;

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, SimpleQueryMessage, Statement};

use crate::StoreError;
use crate::session::Session;
use crate::sql::{BatchHead, Dialect, Driver, Row, Value};

pub(crate) struct PgSession {
    pub(crate) client: Client,
    statements: HashMap<String, Statement>,
}

impl PgSession {
    pub(crate) fn new(client: Client) -> Self {
        PgSession {
            client,
            statements: HashMap::new(),
        }
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).map_err(database)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// A PostgreSQL error as a store error: unique violations are conflicts.
pub(crate) fn database(error: postgres::Error) -> StoreError {
    match error.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(
            error
                .as_db_error()
                .map_or_else(|| error.to_string(), |db| db.message().to_owned()),
        ),
        _ => match error.as_db_error() {
            Some(db) => StoreError::Database(format!("{}: {}", db.code().code(), db.message())),
            None => StoreError::Database(error.to_string()),
        },
    }
}

/// Values take the type the statement's parameter has: an integer binds as `bigint`,
/// `integer`, `smallint` or `boolean` as needed.
impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(format!("an integer cannot be a {ty}").into()),
            },
            Value::Bool(b) => match *ty {
                Type::BOOL => b.to_sql(ty, out),
                Type::INT8 => i64::from(*b).to_sql(ty, out),
                Type::INT4 => i32::from(*b).to_sql(ty, out),
                _ => Err(format!("a boolean cannot be a {ty}").into()),
            },
            Value::Text(t) => t.as_str().to_sql(ty, out),
            Value::Bytes(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn cell(row: &postgres::Row, index: usize) -> Result<Value, StoreError> {
    let corrupt = |e: postgres::Error| StoreError::Corrupt(format!("column {index}: {e}"));
    let ty = row.columns()[index].type_().clone();
    let value = match ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(index)
            .map_err(corrupt)?
            .map(Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)
            .map_err(corrupt)?
            .map(|v| Value::Int(i64::from(v))),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)
            .map_err(corrupt)?
            .map(|v| Value::Int(i64::from(v))),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(index)
            .map_err(corrupt)?
            .map(Value::Bool),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(index)
            .map_err(corrupt)?
            .map(Value::Bytes),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<String>>(index)
            .map_err(corrupt)?
            .map(Value::Text),
        other => {
            return Err(StoreError::Corrupt(format!(
                "column {index} has unsupported type {other}"
            )));
        }
    };
    Ok(value.unwrap_or(Value::Null))
}

impl Driver for PgSession {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let rows = self.client.query(&statement, &refs).map_err(database)?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| cell(row, i))
                    .collect::<Result<Vec<Value>, StoreError>>()
                    .map(Row)
            })
            .collect()
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        self.client.execute(&statement, &refs).map_err(database)
    }

    fn control(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(database)
    }
}

impl Session for PgSession {
    fn begin_write(&mut self) -> Result<(), StoreError> {
        self.control("BEGIN")
    }

    /// Every replica's batches take the audit chain head's row lock first (nearly every write
    /// appends to the chain, so would wait for it anyway): writes are serialized as on SQLite,
    /// and group commit keeps the cost per batch, not per write. The same round trip reads the
    /// head and the version of the gate's inputs.
    fn begin_batch(&mut self) -> Result<BatchHead, StoreError> {
        let messages = self
            .client
            .simple_query(
                "BEGIN; SELECT seq, hash, state_version FROM audit_head WHERE id = 1 FOR UPDATE",
            )
            .map_err(database)?;
        let row = messages
            .iter()
            .find_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .ok_or_else(|| StoreError::Corrupt("the audit_head row is missing".into()))?;
        let column = |index: usize| {
            row.get(index)
                .ok_or_else(|| StoreError::Corrupt(format!("audit_head column {index} is null")))
        };
        let number = |index: usize| {
            column(index)?
                .parse::<i64>()
                .map_err(|e| StoreError::Corrupt(format!("audit_head column {index}: {e}")))
        };
        Ok(BatchHead {
            seq: u64::try_from(number(0)?)
                .map_err(|e| StoreError::Corrupt(format!("audit_head seq: {e}")))?,
            hash: column(1)?.to_owned(),
            state_version: number(2)?,
        })
    }

    fn begin_read(&mut self) -> Result<(), StoreError> {
        self.control("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    }

    fn usable(&mut self) -> bool {
        !self.client.is_closed()
    }
}
