//! The store's behaviour, specified once and run against every backend.
//!
//! Each backend provides a [`TestDatabase`]: a fresh, empty database per test, that can be opened
//! again (to show what survives a restart) and made to refuse audit writes (to show that the
//! store fails closed).

#![allow(clippy::unwrap_used)]

mod sqlite_only;
mod suite;

use deploy_safety_store::Store;

/// One fresh database for one test.
pub trait TestDatabase {
    /// Opens (creating and migrating if needed) the test's database.
    fn open(&self) -> Store;
    /// From now on, every insert into the audit log fails, as on a full disk.
    fn refuse_audit_writes(&self);
}

#[derive(Debug)]
pub struct SqliteDatabase {
    dir: tempfile::TempDir,
}

impl SqliteDatabase {
    pub fn new() -> Option<Self> {
        Some(SqliteDatabase {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("deploy-safety.db")
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }
}

impl TestDatabase for SqliteDatabase {
    fn open(&self) -> Store {
        Store::open(&self.url()).unwrap()
    }

    fn refuse_audit_writes(&self) {
        let conn = rusqlite::Connection::open(self.path()).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
    }
}

/// Runs every test of the suite against one backend. A backend whose factory returns `None`
/// (e.g. PostgreSQL without `DEPLOY_SAFETY_TEST_POSTGRES_URL`) says its tests were skipped.
macro_rules! conformance {
    ($backend:ident, $factory:expr, [$($test:ident),+ $(,)?]) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = $factory else {
                        eprintln!(concat!("SKIPPED ", stringify!($backend), "::", stringify!($test),
                            ": no database configured for this backend"));
                        return;
                    };
                    suite::$test(&db).await;
                }
            )+
        }
    };
}

conformance!(
    sqlite,
    SqliteDatabase::new(),
    [
        new_database_has_default_gate_state,
        gate_state_round_trips,
        overrides_are_found_by_scope_and_time,
        override_revocation_and_use,
        principals_keep_their_role_and_hold_tokens,
        audit_chain_is_sealed_in_order,
        audit_pages_filter_and_page,
        everything_survives_reopening,
        a_failing_write_changes_nothing,
        a_panicking_write_is_rolled_back_and_the_writer_survives,
        concurrent_writes_share_one_commit,
        failures_inside_a_batch_leave_no_gap,
        writes_fail_closed_when_audit_cannot_be_written,
        incidents_round_trip_and_filter,
        validation_runs_are_records,
        probes_keep_state_and_a_bounded_history,
    ]
);
