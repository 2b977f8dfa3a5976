//! The audit log and its checkpoints in SQL.

use deploy_safety_core::{Checkpoint, STORED_COLUMNS, StoredEntry, StoredValue};

use super::tx::*;

const AUDIT_COLUMNS: &str =
    "seq, at, principal, role, action, environment, decision, reason, details, prev_hash, hash";
const AUDIT_COLUMN_COUNT: usize = 11;

/// Rows per insert: a batch's entries are written in inserts of these sizes, largest first, so
/// there are four statements to prepare, not one per batch size, and no insert nears either
/// database's limit on parameters.
const INSERT_SIZES: [usize; 4] = [64, 16, 4, 1];

/// `INSERT INTO audit_log ... VALUES (...), (...)` for `rows` rows.
fn insert_statement(rows: usize) -> &'static str {
    static STATEMENTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let statements = STATEMENTS.get_or_init(|| {
        INSERT_SIZES
            .iter()
            .map(|&size| {
                let values: Vec<String> = (0..size)
                    .map(|row| {
                        let placeholders: Vec<String> = (1..=AUDIT_COLUMN_COUNT)
                            .map(|column| format!("${}", row * AUDIT_COLUMN_COUNT + column))
                            .collect();
                        format!("({})", placeholders.join(", "))
                    })
                    .collect();
                format!(
                    "INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES {}",
                    values.join(", ")
                )
            })
            .collect()
    });
    let index = INSERT_SIZES
        .iter()
        .position(|&size| size == rows)
        .expect("a size from INSERT_SIZES");
    &statements[index]
}

/// Writes `entries` (consecutive, in chain order) and moves the head row to the last of them.
pub(super) fn insert_entries(
    driver: &mut dyn Driver,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    let Some(last) = entries.last() else {
        return Ok(());
    };
    let mut rest = entries;
    while !rest.is_empty() {
        let size = INSERT_SIZES
            .into_iter()
            .find(|&size| size <= rest.len())
            .unwrap_or(1);
        let (chunk, after) = rest.split_at(size);
        let mut params = Vec::with_capacity(size * AUDIT_COLUMN_COUNT);
        for entry in chunk {
            params.extend(vals![
                signed(entry.seq),
                entry.at.unix_millis(),
                entry.principal,
                entry.role.map(|r| r.as_str()),
                entry.action,
                entry.environment.as_ref().map(Environment::as_str),
                entry.decision.as_str(),
                entry.reason,
                entry.details.get(),
                entry.prev_hash,
                entry.hash,
            ]);
        }
        driver.execute(insert_statement(size), &params)?;
        rest = after;
    }
    driver.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &vals![signed(last.seq), last.hash],
    )?;
    Ok(())
}

/// Entries are read as stored, whatever a column holds: each column as (its storage type, its
/// bytes), so a value that no longer parses, or is not even of its column's type, still reads.
fn stored_columns(dialect: Dialect) -> String {
    let mut columns = vec!["seq".to_owned()];
    for column in STORED_COLUMNS {
        columns.push(match dialect {
            Dialect::Sqlite => format!("typeof({column}), CAST({column} AS BLOB)"),
            Dialect::Postgres => {
                format!("pg_typeof({column})::text, convert_to({column}::text, 'UTF8')")
            }
        });
    }
    columns.join(", ")
}

/// One column as stored, from its storage type's name and its bytes.
fn stored_value(storage: &str, bytes: Option<Vec<u8>>) -> StoredValue {
    let Some(bytes) = bytes else {
        return StoredValue::Null;
    };
    match storage {
        // SQLite's `typeof` and PostgreSQL's `pg_typeof`.
        "integer" | "bigint" | "smallint" => {
            match std::str::from_utf8(&bytes)
                .ok()
                .and_then(|t| t.parse().ok())
            {
                Some(number) => StoredValue::Integer(number),
                None => StoredValue::Other {
                    storage: storage.to_owned(),
                    bytes,
                },
            }
        }
        "text" | "character varying" | "character" => StoredValue::Text(bytes),
        other => StoredValue::Other {
            storage: other.to_owned(),
            bytes,
        },
    }
}

fn stored_entry_from_row(row: &Row) -> Result<StoredEntry, StoreError> {
    let value = |index: usize| -> Result<StoredValue, StoreError> {
        let storage: String = row.get(1 + 2 * index)?;
        let bytes: Option<Vec<u8>> = row.get(2 + 2 * index)?;
        Ok(stored_value(&storage, bytes))
    };
    Ok(StoredEntry {
        seq: row.get(0)?,
        at: value(0)?,
        principal: value(1)?,
        role: value(2)?,
        action: value(3)?,
        environment: value(4)?,
        decision: value(5)?,
        reason: value(6)?,
        details: value(7)?,
        prev_hash: value(8)?,
        hash: value(9)?,
    })
}

const CHECKPOINT_COLUMNS: &str = "seq, head_hash, at, key_id, signature";

fn checkpoint_from_row(row: &Row) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint {
        seq: unsigned(row, 0)?,
        head_hash: row.get(1)?,
        at: timestamp(row, 2)?,
        key_id: row.get(3)?,
        signature: row.get(4)?,
    })
}

impl AuditTx for SqlTx<'_> {
    fn append_audit(&mut self, draft: AuditDraft, at: Timestamp) -> Result<AuditEntry, StoreError> {
        let (seq, prev_hash) = self.chain_head()?;
        let entry = AuditEntry::seal(draft, seq + 1, at, &prev_hash);
        self.push_audit_entry(entry.clone())?;
        Ok(entry)
    }

    fn audit_page(&mut self, q: &AuditQuery) -> Result<Vec<StoredEntry>, StoreError> {
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
            "SELECT {} FROM audit_log {filter} ORDER BY seq DESC LIMIT ${}",
            stored_columns(self.driver.dialect()),
            values.len()
        );
        self.collect(&sql, values, stored_entry_from_row)
    }

    fn audit_after(&mut self, after_seq: u64, limit: u32) -> Result<Vec<StoredEntry>, StoreError> {
        let sql = format!(
            "SELECT {} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            stored_columns(self.driver.dialect())
        );
        self.collect(&sql, vals![signed(after_seq), limit], stored_entry_from_row)
    }

    fn audit_head(&mut self) -> Result<Option<(u64, String)>, StoreError> {
        self.one(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            vals![],
            |row| Ok((unsigned(row, 0)?, row.get(1)?)),
        )
    }

    fn audit_chain_head(&mut self) -> Result<(u64, String), StoreError> {
        self.chain_head()
    }

    fn audit_recorded_head(&mut self) -> Result<Option<(u64, String)>, StoreError> {
        let rows = self.collect(
            "SELECT seq, hash FROM audit_head WHERE id = 1",
            vals![],
            |row| Ok(row.clone()),
        )?;
        // Unreadable is an answer here, not an error: verification reports it as a break.
        Ok(rows.first().and_then(|row| {
            let seq = u64::try_from(row.get::<i64>(0).ok()?).ok()?;
            Some((seq, row.get::<String>(1).ok()?))
        }))
    }

    fn audit_stored_hash(&mut self, seq: u64) -> Result<Option<StoredValue>, StoreError> {
        let sql = match self.driver.dialect() {
            Dialect::Sqlite => {
                "SELECT typeof(hash), CAST(hash AS BLOB) FROM audit_log WHERE seq = $1"
            }
            Dialect::Postgres => {
                "SELECT pg_typeof(hash)::text, convert_to(hash::text, 'UTF8') FROM audit_log WHERE seq = $1"
            }
        };
        self.one(sql, vals![signed(seq)], |row| {
            Ok(stored_value(&row.get::<String>(0)?, row.get(1)?))
        })
    }

    fn insert_checkpoint(&mut self, c: &Checkpoint) -> Result<(), StoreError> {
        self.execute(
            &format!(
                "INSERT INTO audit_checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
            ),
            vals![
                signed(c.seq),
                c.head_hash,
                c.at.unix_millis(),
                c.key_id,
                c.signature
            ],
        )
        .map(|_| ())
    }

    fn latest_checkpoint(&mut self) -> Result<Option<Result<Checkpoint, String>>, StoreError> {
        self.one(
            &format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY id DESC LIMIT 1"),
            vals![],
            |row| Ok(checkpoint_from_row(row).map_err(|e| e.to_string())),
        )
    }
}
