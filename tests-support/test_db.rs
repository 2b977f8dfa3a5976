//! A fresh database for one test, on the backend the run asks for.
//!
//! By default an SQLite file in a temporary directory. With `DEPLOY_SAFETY_TEST_BACKEND=postgres`
//! a fresh schema in the database named by `DEPLOY_SAFETY_TEST_POSTGRES_URL` (`.ci/run` runs the
//! HTTP and end-to-end suites both ways), dropped when the test ends.
//!
//! Shared by the test crates with `#[path]`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SCHEMAS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
enum Backend {
    Sqlite,
    Postgres { base: String, schema: String },
}

#[derive(Debug)]
pub struct TestDb {
    dir: tempfile::TempDir,
    backend: Backend,
}

/// Runs `work` with a PostgreSQL client on a thread of its own (the sync client may not run on
/// an async thread).
fn with_postgres<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut postgres::Client) -> T + Send + 'static,
) -> T {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .expect("connect to the test PostgreSQL");
        work(&mut client)
    })
    .join()
    .expect("the PostgreSQL helper thread panicked")
}

impl TestDb {
    /// A database on the backend the run asks for.
    pub fn new() -> TestDb {
        let wants_postgres =
            std::env::var("DEPLOY_SAFETY_TEST_BACKEND").is_ok_and(|b| b == "postgres");
        if wants_postgres {
            TestDb::postgres()
                .expect("DEPLOY_SAFETY_TEST_BACKEND=postgres needs DEPLOY_SAFETY_TEST_POSTGRES_URL")
        } else {
            TestDb::sqlite()
        }
    }

    /// An SQLite file in a temporary directory.
    pub fn sqlite() -> TestDb {
        TestDb {
            dir: tempfile::tempdir().unwrap(),
            backend: Backend::Sqlite,
        }
    }

    /// A fresh PostgreSQL schema, or `None` (after saying the test is skipped) when
    /// `DEPLOY_SAFETY_TEST_POSTGRES_URL` is not set.
    pub fn postgres() -> Option<TestDb> {
        let Ok(base) = std::env::var("DEPLOY_SAFETY_TEST_POSTGRES_URL") else {
            eprintln!(
                "SKIPPED: DEPLOY_SAFETY_TEST_POSTGRES_URL is not set, so this test needs a PostgreSQL it does not have"
            );
            return None;
        };
        let schema = format!(
            "ds_it_{}_{}",
            std::process::id(),
            SCHEMAS.fetch_add(1, Ordering::SeqCst)
        );
        let create = format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}");
        with_postgres(&base, move |c| c.batch_execute(&create).unwrap());
        Some(TestDb {
            dir: tempfile::tempdir().unwrap(),
            backend: Backend::Postgres { base, schema },
        })
    }

    /// Every row of `table` ordered by `key`, each cell as text (`None` for NULL), booleans as
    /// `0`/`1` and bytes as hex, so both backends' contents compare equal when they hold the
    /// same records.
    pub fn dump(&self, table: &str, key: &str) -> Vec<Vec<Option<String>>> {
        match &self.backend {
            Backend::Sqlite => {
                use rusqlite::types::ValueRef;
                let conn = rusqlite::Connection::open(self.sqlite_path().unwrap()).unwrap();
                let mut statement = conn
                    .prepare(&format!("SELECT * FROM {table} ORDER BY {key}"))
                    .unwrap();
                let columns = statement.column_count();
                let mut rows = statement.query([]).unwrap();
                let mut out = Vec::new();
                while let Some(row) = rows.next().unwrap() {
                    out.push(
                        (0..columns)
                            .map(|i| match row.get_ref(i).unwrap() {
                                ValueRef::Null => None,
                                ValueRef::Integer(v) => Some(v.to_string()),
                                ValueRef::Real(v) => Some(v.to_string()),
                                ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                                ValueRef::Blob(b) => Some(hex(b)),
                            })
                            .collect(),
                    );
                }
                out
            }
            Backend::Postgres { .. } => {
                let sql = format!(
                    "SELECT ARRAY[{columns}]::text[] FROM {table} ORDER BY {key}",
                    columns = self.postgres_columns_as_text(table).join(", ")
                );
                with_postgres(&self.url(), move |c| {
                    c.query(&sql, &[])
                        .unwrap()
                        .iter()
                        .map(|row| row.get::<_, Vec<Option<String>>>(0))
                        .collect()
                })
            }
        }
    }

    /// Each column of `table` as an expression giving the text [`TestDb::dump`] compares.
    fn postgres_columns_as_text(&self, table: &str) -> Vec<String> {
        let table = table.to_owned();
        let columns: Vec<(String, String)> = with_postgres(&self.url(), move |c| {
            c.query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&table],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
        });
        columns
            .into_iter()
            .map(|(name, kind)| match kind.as_str() {
                "boolean" => format!("({name})::int::text"),
                "bytea" => format!("encode({name}, 'hex')"),
                _ => format!("({name})::text"),
            })
            .collect()
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres { .. })
    }

    /// A directory for the test's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite file, if this test runs on SQLite.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self.backend {
            Backend::Sqlite => Some(self.dir.path().join("deploy-safety.db")),
            Backend::Postgres { .. } => None,
        }
    }

    pub fn url(&self) -> String {
        match &self.backend {
            Backend::Sqlite => format!(
                "sqlite://{}",
                self.dir.path().join("deploy-safety.db").display()
            ),
            Backend::Postgres { base, schema } => {
                let separator = if base.contains('?') { '&' } else { '?' };
                format!("{base}{separator}options=-c%20search_path%3D{schema}")
            }
        }
    }

    /// Runs SQL both databases read (UPDATE, DELETE, ALTER TABLE ... RENAME) on the test's
    /// database, through a connection of its own, as another process would.
    pub fn exec(&self, sql: &str) {
        match &self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path().unwrap()).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Backend::Postgres { .. } => {
                let sql = sql.to_owned();
                with_postgres(&self.url(), move |c| c.batch_execute(&sql).unwrap());
            }
        }
    }

    /// Puts `text` where audit entry `seq`'s time (an integer column) belongs, as someone with
    /// the database's files or its owner's rights could: on SQLite by rewriting the table's
    /// definition without STRICT, on PostgreSQL by changing the column's type to text.
    pub fn store_text_in_audit_time(&self, seq: u64, text: &str) {
        match &self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path().unwrap()).unwrap();
                conn.busy_timeout(std::time::Duration::from_secs(5))
                    .unwrap();
                let version: i64 = conn
                    .query_row("PRAGMA schema_version", [], |row| row.get(0))
                    .unwrap();
                conn.execute_batch(&format!(
                    "PRAGMA writable_schema = ON; \
                     UPDATE sqlite_schema SET sql = replace(sql, ') STRICT', ')') WHERE name = 'audit_log'; \
                     PRAGMA writable_schema = OFF; \
                     PRAGMA schema_version = {};",
                    version + 1
                ))
                .unwrap();
                drop(conn);
                self.exec(&format!(
                    "UPDATE audit_log SET at = '{text}' WHERE seq = {seq};"
                ));
            }
            Backend::Postgres { .. } => self.exec(&format!(
                "ALTER TABLE audit_log ALTER COLUMN at TYPE text USING at::text; \
                 UPDATE audit_log SET at = '{text}' WHERE seq = {seq};"
            )),
        }
    }

    /// From now on every insert into the audit log fails, as on a full disk.
    pub fn refuse_audit_writes(&self) {
        match &self.backend {
            Backend::Sqlite => self.exec(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log \
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            ),
            Backend::Postgres { schema, .. } => self.exec(&format!(
                "CREATE FUNCTION {schema}.refuse_audit() RETURNS trigger AS $$ \
                 BEGIN RAISE EXCEPTION 'disk full'; END; $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER refuse_audit BEFORE INSERT ON {schema}.audit_log \
                 FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_audit();"
            )),
        }
    }

    /// Undoes [`TestDb::refuse_audit_writes`].
    pub fn allow_audit_writes(&self) {
        match &self.backend {
            Backend::Sqlite => self.exec("DROP TRIGGER refuse_audit;"),
            Backend::Postgres { schema, .. } => self.exec(&format!(
                "DROP TRIGGER refuse_audit ON {schema}.audit_log; DROP FUNCTION {schema}.refuse_audit();"
            )),
        }
    }

    /// Holds the database's write lock (as another writer would) until the guard is dropped.
    pub fn hold_write_lock(&self) -> WriteLock {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (locked, is_locked) = std::sync::mpsc::channel::<()>();
        let handle = match &self.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path().unwrap();
                std::thread::spawn(move || {
                    let conn = rusqlite::Connection::open(path).unwrap();
                    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                    locked.send(()).unwrap();
                    let _ = released.recv();
                    conn.execute_batch("COMMIT").unwrap();
                })
            }
            Backend::Postgres { .. } => {
                let url = self.url();
                std::thread::spawn(move || {
                    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                    client
                        .batch_execute("BEGIN; LOCK TABLE audit_head IN EXCLUSIVE MODE")
                        .unwrap();
                    locked.send(()).unwrap();
                    let _ = released.recv();
                    client.batch_execute("COMMIT").unwrap();
                })
            }
        };
        is_locked.recv().unwrap();
        WriteLock {
            release: Some(release),
            handle: Some(handle),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// See [`TestDb::hold_write_lock`].
#[derive(Debug)]
pub struct WriteLock {
    release: Option<std::sync::mpsc::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Backend::Postgres { base, schema } = &self.backend {
            let drop_schema =
                format!("SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {schema} CASCADE");
            let schema = schema.clone();
            with_postgres(base, move |c| {
                if let Err(error) = c.batch_execute(&drop_schema) {
                    eprintln!("warning: cannot drop the test schema {schema}: {error}");
                }
            });
        }
    }
}
