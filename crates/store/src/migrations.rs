//! Versioned schema migrations, applied in order, each once, for any backend.
//!
//! A migration is never edited after release: its checksum is recorded when applied, and a
//! database whose recorded checksum differs, or that has migrations this build does not know
//! (it was written by a newer version), is refused rather than guessed at.

use sha2::{Digest, Sha256};

use crate::StoreError;
use crate::session::Session;
use crate::sql::value::vals;
use crate::sql::{Dialect, Driver};

pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

fn newest(migrations: &[Migration]) -> i64 {
    migrations.last().map_or(0, |m| m.version)
}

fn applied_max(session: &mut dyn Driver) -> Result<Option<i64>, StoreError> {
    let rows = session.query("SELECT max(version) FROM schema_migrations", &[])?;
    match rows.first() {
        Some(row) => row.get::<Option<i64>>(0),
        None => Ok(None),
    }
}

/// Applies what is missing, in one transaction. On PostgreSQL an advisory lock makes
/// replicas starting together take turns.
pub(crate) fn apply<S: Session>(
    session: &mut S,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    session.begin_write()?;
    let applied = (|| {
        let table = match session.dialect() {
            Dialect::Sqlite => {
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,
                    applied_at INTEGER NOT NULL) STRICT"
            }
            Dialect::Postgres => {
                session.control("SELECT pg_advisory_xact_lock(73650001)")?;
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,
                    applied_at BIGINT NOT NULL)"
            }
        };
        session.control(table)?;
        if let Some(found) = applied_max(session)?
            && found > newest(migrations)
        {
            return Err(StoreError::Config(format!(
                "the database is at schema version {found}, newer than this build knows ({}); use a newer deploy-safety",
                newest(migrations)
            )));
        }
        for migration in migrations {
            let sum = checksum(migration.sql);
            let recorded = session.query(
                "SELECT checksum FROM schema_migrations WHERE version = $1",
                &vals![migration.version],
            )?;
            match recorded.first() {
                Some(row) if row.get::<String>(0)? == sum => {}
                Some(_) => {
                    return Err(StoreError::Config(format!(
                        "migration {} ({}) differs from the one applied to this database",
                        migration.version, migration.name
                    )));
                }
                None => {
                    session.control(migration.sql).map_err(|e| {
                        StoreError::Database(format!(
                            "migration {} ({}) failed: {e}",
                            migration.version, migration.name
                        ))
                    })?;
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                        .unwrap_or_default();
                    session.execute(
                        "INSERT INTO schema_migrations (version, name, checksum, applied_at)
                         VALUES ($1, $2, $3, $4)",
                        &vals![migration.version, migration.name, sum, now],
                    )?;
                    tracing::info!(
                        version = migration.version,
                        name = migration.name,
                        "applied migration"
                    );
                }
            }
        }
        Ok(())
    })();
    match applied {
        Ok(()) => session.control("COMMIT"),
        Err(error) => {
            let _ = session.control("ROLLBACK");
            Err(error)
        }
    }
}

/// For read-only use: the database must be a deploy-safety database at exactly this build's
/// schema version.
pub(crate) fn check_current(
    session: &mut dyn Driver,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let known = newest(migrations);
    let applied = applied_max(session)
        .map_err(|e| StoreError::Config(format!("not a deploy-safety database: {e}")))?;
    match applied {
        Some(v) if v == known => Ok(()),
        Some(v) => Err(StoreError::Config(format!(
            "the database is at schema version {v}, this build expects {known}"
        ))),
        None => Err(StoreError::Config(
            "not a deploy-safety database: no migrations applied".into(),
        )),
    }
}
