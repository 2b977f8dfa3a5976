//! Versioned schema migrations, applied in order at open, each once.
//!
//! A migration is never edited after release: its checksum is recorded when applied, and a
//! database whose recorded checksum differs, or that has migrations this build does not know
//! (it was written by a newer version), is refused rather than guessed at.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::database;
use crate::StoreError;

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "gate_tokens_overrides_audit",
        sql: include_str!("../../migrations/sqlite/0001_gate_tokens_overrides_audit.sql"),
    },
    Migration {
        version: 2,
        name: "incidents_validations_probes",
        sql: include_str!("../../migrations/sqlite/0002_incidents_validations_probes.sql"),
    },
    Migration {
        version: 3,
        name: "canaries_rollbacks_events",
        sql: include_str!("../../migrations/sqlite/0003_canaries_rollbacks_events.sql"),
    },
];

/// For read-only use: the database must be a deploy-safety database at exactly this build's
/// schema version.
pub(super) fn check_current(conn: &Connection) -> Result<(), StoreError> {
    let newest_known = MIGRATIONS.last().map_or(0, |m| m.version);
    let applied: Option<i64> = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .map_err(|e| StoreError::Config(format!("not a deploy-safety database: {e}")))?;
    match applied {
        Some(v) if v == newest_known => Ok(()),
        Some(v) => Err(StoreError::Config(format!(
            "the database is at schema version {v}, this build expects {newest_known}"
        ))),
        None => Err(StoreError::Config(
            "not a deploy-safety database: no migrations applied".into(),
        )),
    }
}

pub(super) fn apply(conn: &mut Connection) -> Result<(), StoreError> {
    // IMMEDIATE: two processes opening a new database at once (the server and the CLI) take
    // turns instead of both creating tables.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(database)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT    NOT NULL,
            checksum   TEXT    NOT NULL,
            applied_at INTEGER NOT NULL
        ) STRICT",
    )
    .map_err(database)?;

    let newest_known = MIGRATIONS.last().map_or(0, |m| m.version);
    let newest_applied: Option<i64> = tx
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .map_err(database)?;
    if let Some(applied) = newest_applied
        && applied > newest_known
    {
        return Err(StoreError::Config(format!(
            "the database is at schema version {applied}, newer than this build knows ({newest_known}); use a newer deploy-safety"
        )));
    }

    for migration in MIGRATIONS {
        let checksum = hex::encode(Sha256::digest(migration.sql.as_bytes()));
        let recorded: Option<String> = tx
            .query_row(
                "SELECT checksum FROM schema_migrations WHERE version = ?1",
                [migration.version],
                |r| r.get(0),
            )
            .optional()
            .map_err(database)?;
        match recorded {
            Some(recorded) if recorded == checksum => {}
            Some(_) => {
                return Err(StoreError::Config(format!(
                    "migration {} ({}) differs from the one applied to this database",
                    migration.version, migration.name
                )));
            }
            None => {
                tx.execute_batch(migration.sql).map_err(|e| {
                    StoreError::Database(format!(
                        "migration {} ({}) failed: {e}",
                        migration.version, migration.name
                    ))
                })?;
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at)
                     VALUES (?1, ?2, ?3, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
                    params![migration.version, migration.name, checksum],
                )
                .map_err(database)?;
                tracing::info!(
                    version = migration.version,
                    name = migration.name,
                    "applied migration"
                );
            }
        }
    }
    tx.commit().map_err(database)
}
