//! The embedded SQLite backend: one writer thread with group commit, a pool of readers.
//!
//! SQLite allows one writer at a time, so instead of many connections contending for the write
//! lock, every write goes to one thread. The thread takes every job waiting in its queue (up to
//! [`MAX_BATCH`]), runs each inside its own savepoint of one `BEGIN IMMEDIATE` transaction, and
//! commits once. With `synchronous=FULL` in WAL mode a commit is one fsync, so under concurrency
//! many decisions share one fsync, and none is answered before it.

mod migrate;
mod tx;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use crate::{Backend, Counters, JobOutcome, ReadJob, StoreError, WriteJob};

pub(crate) use tx::{SqliteTx, Tail};

/// The most jobs one transaction takes: bounds the latency a job can add to the others.
const MAX_BATCH: usize = 512;
/// Jobs that may wait for the writer before callers wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 8_192;
/// Readers kept open between reads.
const MAX_IDLE_READERS: usize = 8;
/// How long a connection waits for a lock held by another process (e.g. the CLI) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `sqlite://relative/path.db`, `sqlite:///absolute/path.db` or `sqlite:path.db`.
pub fn path_from_url(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(PathBuf::from(rest))
}

pub(crate) struct SqliteBackend {
    path: PathBuf,
    writer: Option<mpsc::Sender<WriteJob>>,
    read_only: bool,
    readers: Mutex<Vec<Connection>>,
    counters: Arc<Counters>,
}

impl SqliteBackend {
    pub(crate) fn open(path: &Path) -> Result<SqliteBackend, StoreError> {
        if path.as_os_str().is_empty() {
            return Err(StoreError::Config(
                "the SQLite database URL names no file (expected sqlite://PATH)".into(),
            ));
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            StoreError::Config(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        })?;
        configure_writer(&conn).map_err(database)?;
        migrate::apply(&mut conn)?;

        let (writer, queue) = mpsc::channel(QUEUE_DEPTH);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, queue, &thread_counters))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;

        Ok(SqliteBackend {
            path: path.to_owned(),
            writer: Some(writer),
            read_only: false,
            readers: Mutex::new(Vec::new()),
            counters,
        })
    }

    pub(crate) fn open_read_only(path: &Path) -> Result<SqliteBackend, StoreError> {
        let backend = SqliteBackend {
            path: path.to_owned(),
            writer: None,
            read_only: true,
            readers: Mutex::new(Vec::new()),
            counters: Arc::new(Counters::default()),
        };
        let conn = backend.take_reader().map_err(|e| {
            StoreError::Config(format!("cannot open {} for reading: {e}", path.display()))
        })?;
        migrate::check_current(&conn)?;
        backend.return_reader(conn);
        Ok(backend)
    }

    fn take_reader(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.readers.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        let access = if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn =
            Connection::open_with_flags(&self.path, access | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(database)?;
        configure_reader(&conn).map_err(database)?;
        Ok(conn)
    }

    fn return_reader(&self, conn: Connection) {
        if let Ok(mut idle) = self.readers.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
    }
}

impl Backend for SqliteBackend {
    fn writer(&self) -> Option<&mpsc::Sender<WriteJob>> {
        self.writer.as_ref()
    }

    fn read(&self, job: ReadJob<'_>) -> Result<(), StoreError> {
        let conn = self.take_reader()?;
        // One deferred transaction: every query of the job sees the same snapshot.
        conn.execute_batch("BEGIN").map_err(database)?;
        let mut tail = Tail::Unknown;
        let result = job(&mut SqliteTx::new(&conn, &mut tail));
        let ended = conn.execute_batch("COMMIT").map_err(database);
        if ended.is_ok() {
            self.return_reader(conn);
        }
        result.and(ended)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }
}

/// Durability first: WAL with `synchronous=FULL` makes every commit reach the disk before it
/// returns.
fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")
}

/// Readers are `query_only`, so a bug cannot write outside the writer's transactions.
fn configure_reader(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "query_only", "ON")
}

fn writer_loop(conn: Connection, mut queue: mpsc::Receiver<WriteJob>, counters: &Counters) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, &mut batch, counters);
    }
    tracing::debug!("sqlite writer stopped: every store handle was dropped");
}

/// One transaction for every job in `batch`; every job's caller is answered after the commit
/// (or its failure).
fn run_batch(conn: &Connection, batch: &mut Vec<WriteJob>, counters: &Counters) {
    let mut answers = Vec::with_capacity(batch.len());
    let outcome = (|| -> Result<u64, StoreError> {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(database)?;
        let mut tail = Tail::Unknown;
        let mut succeeded = 0;
        for job in batch.drain(..) {
            conn.execute_batch("SAVEPOINT job").map_err(database)?;
            let tail_before = tail.clone();
            let ran = catch_unwind(AssertUnwindSafe(|| {
                job(&mut SqliteTx::new(conn, &mut tail))
            }));
            match ran {
                Ok(JobOutcome {
                    succeeded: true,
                    answer,
                }) => {
                    conn.execute_batch("RELEASE job").map_err(database)?;
                    succeeded += 1;
                    answers.push(answer);
                }
                Ok(JobOutcome { answer, .. }) => {
                    conn.execute_batch("ROLLBACK TO job; RELEASE job")
                        .map_err(database)?;
                    tail = tail_before;
                    answers.push(answer);
                }
                Err(_) => {
                    // The job panicked: its reply channel is gone, so its caller hears "closed".
                    tracing::error!("a store write panicked; its changes were rolled back");
                    conn.execute_batch("ROLLBACK TO job; RELEASE job")
                        .map_err(database)?;
                    tail = tail_before;
                }
            }
        }
        conn.execute_batch("COMMIT").map_err(database)?;
        Ok(succeeded)
    })();
    match outcome {
        Ok(succeeded) => {
            counters.committed(succeeded);
            answers.into_iter().for_each(|answer| answer(Ok(())));
        }
        Err(error) => {
            tracing::error!(%error, "a write transaction failed; its callers are told so");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            // Jobs that never ran are dropped with `batch`; their callers hear "closed".
            batch.clear();
            answers
                .into_iter()
                .for_each(|answer| answer(Err(error.clone())));
        }
    }
}

pub(crate) fn database(error: rusqlite::Error) -> StoreError {
    match &error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
        {
            StoreError::Conflict(error.to_string())
        }
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(error.to_string())
        }
        _ => StoreError::Database(error.to_string()),
    }
}
