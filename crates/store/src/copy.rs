//! Copies every record from one database to another (`deploy-safety migrate-data`), e.g. from
//! the embedded SQLite file to the PostgreSQL database several replicas will share.
//!
//! The source is read in one snapshot; the target is written in one transaction, so a failed
//! copy leaves the target as it was (its schema aside). Rows are copied as stored, column by
//! column, so the audit chain's hashes, token hashes and ids are the same on both sides.

use std::collections::BTreeMap;

use crate::session::Session;
use crate::sql::{Dialect, Value, value::vals};
use crate::{StoreError, postgres, sqlite, sqlite_path};

/// Each table with the columns of its key, parents before children (foreign keys). The
/// PostgreSQL-only `leader` table is a replica's runtime state and is not copied.
const TABLES: &[(&str, &[&str])] = &[
    ("gate_state", &["id"]),
    ("principals", &["name"]),
    ("tokens", &["id"]),
    ("override_requests", &["id"]),
    ("override_request_votes", &["request_id", "principal"]),
    ("overrides", &["id"]),
    ("audit_log", &["seq"]),
    ("audit_checkpoints", &["id"]),
    ("incidents", &["id"]),
    ("validations", &["id"]),
    ("validation_runs", &["validation_id", "number"]),
    ("probes", &["id"]),
    ("probe_results", &["id"]),
    ("heartbeat", &["id"]),
    ("canaries", &["id"]),
    ("soaks", &["id"]),
    ("rollbacks", &["id"]),
    ("releases", &["id"]),
    ("load_shedding", &["environment", "service"]),
    ("freezes", &["id"]),
    (
        "freeze_scopes",
        &["action", "environment", "service", "freeze_id"],
    ),
    ("github_requests", &["id"]),
    ("login_requests", &["state_hash"]),
    ("sessions", &["id"]),
    ("events", &["seq"]),
    ("outbox", &["id"]),
    // Last: the triggers on the gate's inputs bump its `state_version` as their rows arrive
    // (migration 0011/0012); copied after them, the head row is the source's exactly.
    ("audit_head", &["id"]),
];

/// Tables holding exactly one row, which migrations create with its initial values: the
/// target's row is replaced by the source's.
const SINGLE_ROW_TABLES: &[&str] = &["gate_state", "audit_head", "heartbeat"];

/// Tables whose `id` PostgreSQL numbers from a sequence, which must continue after the copied
/// rows.
const NUMBERED_TABLES: &[&str] = &["probe_results", "releases", "outbox", "audit_checkpoints"];

/// Rows read and written at a time (times at most 21 columns stays under both databases' limit
/// on parameters per statement).
const PAGE: usize = 1_000;

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows copied, per table, in copy order.
    pub rows: Vec<(String, u64)>,
    /// The audit chain's head in the copied snapshot: its last sequence number and hash.
    pub audit_head_seq: u64,
    pub audit_head_hash: String,
}

impl CopyReport {
    pub fn total_rows(&self) -> u64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

fn open_source(url: &str) -> Result<Box<dyn Session>, StoreError> {
    Ok(if postgres::is_postgres_url(url) {
        Box::new(postgres::open_read_session(url)?)
    } else {
        Box::new(sqlite::open_read_session(&sqlite_path(url)?)?)
    })
}

fn open_target(url: &str) -> Result<Box<dyn Session>, StoreError> {
    Ok(if postgres::is_postgres_url(url) {
        Box::new(postgres::open_write_session(url)?)
    } else {
        Box::new(sqlite::open_write_session(&sqlite_path(url)?)?)
    })
}

/// Copies every record of the database at `from` into the one at `to`, which is created and
/// migrated if needed and must hold no records yet. Blocks: call it off the async threads.
///
/// Records written to the source after its snapshot was taken are not copied: stop the servers
/// first.
pub fn copy_data(from: &str, to: &str) -> Result<CopyReport, StoreError> {
    copy_data_in_pages(from, to, PAGE)
}

fn copy_data_in_pages(from: &str, to: &str, page: usize) -> Result<CopyReport, StoreError> {
    if from == to {
        return Err(StoreError::Config(
            "the source and the target are the same database".to_owned(),
        ));
    }
    let mut source = open_source(from)?;
    let mut target = open_target(to)?;
    source.begin_read()?;
    target.begin_batch()?;
    let copied = copy_tables(source.as_mut(), target.as_mut(), page);
    // Reading changed nothing; ending the snapshot cannot lose anything.
    let _ = source.control("ROLLBACK");
    match copied {
        Ok(report) => {
            target.control("COMMIT")?;
            Ok(report)
        }
        Err(error) => {
            let _ = target.control("ROLLBACK");
            Err(error)
        }
    }
}

fn copy_tables(
    source: &mut dyn Session,
    target: &mut dyn Session,
    page: usize,
) -> Result<CopyReport, StoreError> {
    refuse_unless_empty(target)?;
    let mut rows = Vec::with_capacity(TABLES.len());
    for (table, key) in TABLES {
        // The copy follows the target's schema.
        let columns = columns_of(target, table)?;
        let source_columns = columns_of(source, table)?;
        if let Some(missing) = columns.iter().find(|c| !source_columns.contains(*c)) {
            return Err(StoreError::Config(format!(
                "the source's table {table} has no column {missing}: the two databases are at different schema versions"
            )));
        }
        if SINGLE_ROW_TABLES.contains(table) {
            target.execute(&format!("DELETE FROM {table}"), &[])?;
        }
        rows.push((
            (*table).to_owned(),
            copy_table(source, target, table, key, &columns, page)?,
        ));
    }
    if target.dialect() == Dialect::Postgres {
        for table in NUMBERED_TABLES {
            target.query(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                ),
                &[],
            )?;
        }
    }
    if target.dialect() == Dialect::Postgres {
        // Fresh statistics, so the planner uses the indexes from the first query (autovacuum
        // would only get to the copied tables later).
        for (table, _) in TABLES {
            target.control(&format!("ANALYZE {table}"))?;
        }
    }
    // The source's own record of its chain's head, in the copied snapshot: the caller checks
    // the copy's chain, recomputed from the copied entries, against it.
    let head = source.query("SELECT seq, hash FROM audit_head WHERE id = 1", &[])?;
    let head = head
        .first()
        .ok_or_else(|| StoreError::Corrupt("the source has no audit chain head".to_owned()))?;
    let seq: i64 = head.get(0)?;
    Ok(CopyReport {
        rows,
        audit_head_seq: u64::try_from(seq).unwrap_or_default(),
        audit_head_hash: head.get::<String>(1)?,
    })
}

/// A target that already holds records (e.g. a server already ran on it and created its first
/// token) is refused: merging two histories would break the audit chain.
fn refuse_unless_empty(target: &mut dyn Session) -> Result<(), StoreError> {
    let mut held = BTreeMap::new();
    for (table, _) in TABLES {
        if SINGLE_ROW_TABLES.contains(table) {
            continue;
        }
        let count: i64 = target
            .query(&format!("SELECT COUNT(*) FROM {table}"), &[])?
            .first()
            .map(|r| r.get(0))
            .transpose()?
            .unwrap_or_default();
        if count > 0 {
            held.insert(*table, count);
        }
    }
    let audit_seq: i64 = target
        .query("SELECT seq FROM audit_head WHERE id = 1", &[])?
        .first()
        .map(|r| r.get(0))
        .transpose()?
        .unwrap_or_default();
    if held.is_empty() && audit_seq == 0 {
        return Ok(());
    }
    let listed = held
        .iter()
        .map(|(table, n)| format!("{table}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(StoreError::Conflict(format!(
        "the target database already holds records ({listed}); copy into a new, empty database, before any server has run on it"
    )))
}

/// The table's columns, in order.
fn columns_of(session: &mut dyn Session, table: &str) -> Result<Vec<String>, StoreError> {
    let sql = match session.dialect() {
        Dialect::Sqlite => "SELECT name FROM pragma_table_info($1) ORDER BY cid",
        Dialect::Postgres => {
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
        }
    };
    let names = session
        .query(sql, &vals![table])?
        .iter()
        .map(|r| r.get::<String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() {
        return Err(StoreError::Config(format!("no table {table}")));
    }
    Ok(names)
}

/// Copies one table a page at a time, in key order (keyset paging, so a large audit log is
/// never held in memory at once). Returns the rows copied.
fn copy_table(
    source: &mut dyn Session,
    target: &mut dyn Session,
    table: &str,
    key: &[&str],
    columns: &[String],
    page_rows: usize,
) -> Result<u64, StoreError> {
    let list = columns.join(", ");
    let key_list = key.join(", ");
    let key_positions: Vec<usize> =
        key.iter()
            .map(|k| {
                columns.iter().position(|c| c == k).ok_or_else(|| {
                    StoreError::Config(format!("table {table} has no key column {k}"))
                })
            })
            .collect::<Result<_, _>>()?;
    let first_page = format!("SELECT {list} FROM {table} ORDER BY {key_list} LIMIT {page_rows}");
    let key_placeholders = (1..=key.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let next_page = format!(
        "SELECT {list} FROM {table} WHERE ({key_list}) > ({key_placeholders}) \
         ORDER BY {key_list} LIMIT {page_rows}"
    );
    let mut copied = 0u64;
    let mut after: Option<Vec<Value>> = None;
    loop {
        let page = match &after {
            None => source.query(&first_page, &[])?,
            Some(last_key) => source.query(&next_page, last_key)?,
        };
        let Some(last) = page.last() else { break };
        after = Some(key_positions.iter().map(|&i| last.0[i].clone()).collect());
        let placeholders = (0..page.len())
            .map(|row| {
                let cells = (1..=columns.len())
                    .map(|c| format!("${}", row * columns.len() + c))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!("({cells})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let values: Vec<Value> = page.iter().flat_map(|r| r.0.iter().cloned()).collect();
        target.execute(
            &format!("INSERT INTO {table} ({list}) VALUES {placeholders}"),
            &values,
        )?;
        copied += page.len() as u64;
        if page.len() < page_rows {
            break;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{SqlTx, TxState};
    use crate::tx::AuditTx;
    use deploy_safety_core::{AuditDecision, AuditDraft, Timestamp};
    use rusqlite::Connection;
    use rusqlite::types::Value as Cell;

    fn url(path: &std::path::Path) -> String {
        format!("sqlite://{}", path.display())
    }

    /// A source with several pages' worth of rows in tables with single and composite keys,
    /// NULLs, and a real audit chain.
    fn source(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("source.db");
        let mut session = sqlite::open_write_session(&path).unwrap();
        session
            .conn
            .execute_batch(
                "INSERT INTO principals VALUES ('ci', 'developer', 1);
                 INSERT INTO tokens VALUES ('t1', 'ci', x'0102', 1, 'admin', NULL);
                 INSERT INTO tokens VALUES ('t2', 'ci', x'0304', 2, 'admin', 5);",
            )
            .unwrap();
        for v in 0..7 {
            session
                .conn
                .execute(
                    "INSERT INTO validations VALUES (?1, 'v1.2.3', 'staging', ?2, 'ci', NULL)",
                    rusqlite::params![format!("val_{v}"), v],
                )
                .unwrap();
            for number in 1..=3 {
                session
                    .conn
                    .execute(
                        "INSERT INTO validation_runs VALUES (?1, ?2, 'passed', 1, 'ci', NULL, '[]')",
                        rusqlite::params![format!("val_{v}"), number],
                    )
                    .unwrap();
            }
        }
        let mut state = TxState::direct();
        let mut tx = SqlTx::new(&mut session, &mut state);
        for i in 0..7 {
            tx.append_audit(
                AuditDraft {
                    principal: "ci".to_owned(),
                    role: None,
                    action: "security-gate.check".to_owned(),
                    environment: None,
                    decision: AuditDecision::Allowed,
                    reason: "ALLOWED".to_owned(),
                    details: serde_json::json!({ "n": i }),
                },
                Timestamp::from_unix_millis(1_000 + i),
            )
            .unwrap();
        }
        path
    }

    fn rows(path: &std::path::Path, table: &str, key: &str) -> Vec<Vec<Cell>> {
        let conn = Connection::open(path).unwrap();
        let mut statement = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY {key}"))
            .unwrap();
        let columns = statement.column_count();
        statement
            .query_map([], |row| {
                (0..columns).map(|i| row.get::<_, Cell>(i)).collect()
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn copies_every_row_page_by_page_including_composite_keys() {
        let dir = tempfile::tempdir().unwrap();
        let from = source(dir.path());
        let to = dir.path().join("target.db");
        let report = copy_data_in_pages(&url(&from), &url(&to), 2).unwrap();

        for (table, key) in TABLES {
            let key = key.join(", ");
            assert_eq!(rows(&from, table, &key), rows(&to, table, &key), "{table}");
        }
        let copied: BTreeMap<_, _> = report.rows.iter().cloned().collect();
        assert_eq!(copied["validation_runs"], 21);
        assert_eq!(copied["audit_log"], 7);
        assert_eq!(copied["tokens"], 2);
        assert_eq!(report.audit_head_seq, 7);
        let source_head = rows(&from, "audit_head", "id");
        assert_eq!(
            source_head[0][2],
            Cell::Text(report.audit_head_hash.clone())
        );
    }

    #[test]
    fn a_failed_copy_leaves_the_target_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let from = source(dir.path());
        let to = dir.path().join("target.db");
        let target = sqlite::open_write_session(&to).unwrap();
        // The copy fails at its fifth table, after writing four.
        target
            .conn
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            )
            .unwrap();
        drop(target);
        let before: Vec<_> = TABLES
            .iter()
            .map(|(table, key)| rows(&to, table, &key.join(", ")))
            .collect();

        let error = copy_data_in_pages(&url(&from), &url(&to), 2).unwrap_err();
        assert!(error.to_string().contains("disk full"), "{error}");
        let after: Vec<_> = TABLES
            .iter()
            .map(|(table, key)| rows(&to, table, &key.join(", ")))
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_target_holding_records_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let from = source(dir.path());
        let to = dir.path().join("target.db");
        copy_data(&url(&from), &url(&to)).unwrap();
        let again = copy_data(&url(&from), &url(&to)).unwrap_err();
        assert!(
            matches!(&again, StoreError::Conflict(m) if m.contains("already holds records")),
            "{again}"
        );
        assert_eq!(
            copy_data(&url(&from), &url(&from)).unwrap_err(),
            StoreError::Config("the source and the target are the same database".to_owned())
        );
    }
}
