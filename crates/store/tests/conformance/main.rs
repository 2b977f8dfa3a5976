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
        soaks_round_trip_filter_and_schedule,
        stored_entries_heads_and_checkpoints,
        github_requests_round_trip_dedupe_and_come_due,
        verdict_lookups_are_per_release_and_exact_service,
        logins_are_single_use_and_sessions_revocable,
        override_requests_votes_and_decisions,
        votes_at_the_same_instant_keep_the_order_cast,
        gate_inputs_changed_elsewhere_are_seen_by_the_next_write,
        kept_inputs_follow_the_clock,
        jobs_of_one_batch_see_each_others_changes,
    ]
);

/// A fresh schema per test in the database named by `DEPLOY_SAFETY_TEST_POSTGRES_URL`, dropped
/// afterwards.
pub struct PostgresDatabase {
    base: String,
    schema: String,
}

impl std::fmt::Debug for PostgresDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDatabase")
            .field("schema", &self.schema)
            .finish()
    }
}

/// Runs blocking PostgreSQL client work from an async test (the sync client may not run on an
/// async thread).
pub fn blocking<T>(work: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(work)
}

impl PostgresDatabase {
    pub fn new() -> Option<Self> {
        let base = std::env::var("DEPLOY_SAFETY_TEST_POSTGRES_URL").ok()?;
        let schema = format!(
            "ds_test_{}_{}",
            std::process::id(),
            SCHEMAS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let db = PostgresDatabase { base, schema };
        db.admin(&format!(
            "DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}",
            db.schema
        ));
        Some(db)
    }

    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base, self.schema
        )
    }

    fn admin(&self, sql: &str) {
        let base = self.base.clone();
        let sql = sql.to_owned();
        // A thread of its own: the sync client may not run on an async thread.
        std::thread::spawn(move || {
            let mut client = ::postgres::Client::connect(&base, ::postgres::NoTls).unwrap();
            client.batch_execute(&sql).unwrap();
        })
        .join()
        .unwrap();
    }
}

static SCHEMAS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        self.admin(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
    }
}

impl TestDatabase for PostgresDatabase {
    fn open(&self) -> Store {
        blocking(|| Store::open(&self.url()).unwrap())
    }

    fn refuse_audit_writes(&self) {
        self.admin(&format!(
            "CREATE FUNCTION {0}.refuse_audit() RETURNS trigger AS $$
             BEGIN RAISE EXCEPTION 'disk full'; END; $$ LANGUAGE plpgsql;
             CREATE TRIGGER refuse_audit BEFORE INSERT ON {0}.audit_log
             FOR EACH ROW EXECUTE FUNCTION {0}.refuse_audit();",
            self.schema
        ));
    }
}

conformance!(
    postgres,
    PostgresDatabase::new(),
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
        soaks_round_trip_filter_and_schedule,
        stored_entries_heads_and_checkpoints,
        github_requests_round_trip_dedupe_and_come_due,
        verdict_lookups_are_per_release_and_exact_service,
        logins_are_single_use_and_sessions_revocable,
        override_requests_votes_and_decisions,
        votes_at_the_same_instant_keep_the_order_cast,
        gate_inputs_changed_elsewhere_are_seen_by_the_next_write,
        kept_inputs_follow_the_clock,
        jobs_of_one_batch_see_each_others_changes,
    ]
);
