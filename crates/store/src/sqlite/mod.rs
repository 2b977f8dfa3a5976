//! The embedded SQLite backend: one writer thread with group commit, a pool of readers.
//!
//! SQLite allows one writer at a time, so instead of many connections contending for the write
//! lock, every write goes to one thread. The thread takes every job waiting in its queue (up to
//! [`MAX_BATCH`]), runs each inside its own savepoint of one `BEGIN IMMEDIATE` transaction, and
//! commits once. With `synchronous=FULL` in WAL mode a commit is one fsync, so under concurrency
//! many decisions share one fsync, and none is answered before it.

mod driver;
mod migrate;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use crate::{Backend, Counters, JobOutcome, ReadJob, StoreError, WriteJob};

use driver::SqliteDriver;

use crate::sql::{SqlTx, Tail};

/// The most jobs one transaction takes: bounds the latency a job can add to the others.
const MAX_BATCH: usize = 512;
/// Jobs that may wait for the writer before callers wait to enqueue (backpressure).
const QUEUE_DEPTH: usize = 8_192;
/// Read connections open at most; further reads wait for one to be free.
const MAX_READERS: usize = 16;
/// How long a read waits for a free connection before failing.
const READER_WAIT: Duration = Duration::from_secs(10);
/// How long a connection waits for a lock held by another process (e.g. the CLI) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `sqlite://relative/path.db`, `sqlite:///absolute/path.db` or `sqlite:path.db`.
pub fn path_from_url(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(PathBuf::from(rest))
}

fn checked_path(path: &Path) -> Result<(), StoreError> {
    let text = path.to_string_lossy();
    if text.is_empty() {
        return Err(StoreError::Config(
            "the SQLite database URL names no file (expected sqlite://PATH)".into(),
        ));
    }
    if text.contains(":memory:") || text.starts_with("file:") {
        return Err(StoreError::Config(
            "in-memory and URI SQLite databases are not supported: the store must be durable (expected sqlite://PATH)".into(),
        ));
    }
    Ok(())
}

/// Creates the database file readable by its owner only (SQLite gives its -wal and -shm files
/// the same permissions).
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Config(format!(
            "cannot create SQLite database {}: {e}",
            path.display()
        ))),
    }
}

pub(crate) struct SqliteBackend {
    path: PathBuf,
    writer: Option<mpsc::Sender<WriteJob>>,
    readers: ReaderPool,
    counters: Arc<Counters>,
}

impl SqliteBackend {
    /// Opens the database read-write, creating and migrating it if needed, and starts the
    /// writer thread.
    pub(crate) fn open(path: &Path) -> Result<SqliteBackend, StoreError> {
        checked_path(path)?;
        create_private(path)?;
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
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
            readers: ReaderPool::new(ReaderAccess::ReadWrite(path.to_owned())),
            counters,
        })
    }

    /// Opens an existing database for reading only. Without a write-ahead log (no server has
    /// it open) the file is opened immutable: nothing is created beside it, so an auditor with
    /// read access alone can verify it.
    pub(crate) fn open_read_only(path: &Path) -> Result<SqliteBackend, StoreError> {
        checked_path(path)?;
        if !path.exists() {
            return Err(StoreError::Config(format!(
                "no database at {}",
                path.display()
            )));
        }
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let access = if Path::new(&wal).exists() {
            ReaderAccess::ReadOnly {
                uri: file_uri(path, "mode=ro"),
            }
        } else {
            ReaderAccess::ReadOnly {
                uri: file_uri(path, "immutable=1"),
            }
        };
        let backend = SqliteBackend {
            path: path.to_owned(),
            writer: None,
            readers: ReaderPool::new(access),
            counters: Arc::new(Counters::default()),
        };
        let conn = backend.readers.take().map_err(|e| {
            StoreError::Config(format!(
                "cannot open {} for reading: {e} (while a server has it open, reading needs write access to its -shm file)",
                path.display()
            ))
        })?;
        let current = migrate::check_current(&conn);
        backend.readers.give_back(conn, true);
        current?;
        Ok(backend)
    }
}

/// `file:` URI for `path` with `query`, escaping what a URI would misread.
fn file_uri(path: &Path, query: &str) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    format!("{uri}?{query}")
}

enum ReaderAccess {
    ReadWrite(PathBuf),
    ReadOnly { uri: String },
}

/// At most [`MAX_READERS`] connections; a read waits for a free one rather than opening more.
struct ReaderPool {
    access: ReaderAccess,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

impl ReaderPool {
    fn new(access: ReaderAccess) -> Self {
        ReaderPool {
            access,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = match &self.access {
            ReaderAccess::ReadWrite(path) => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            ReaderAccess::ReadOnly { uri } => Connection::open_with_flags(
                uri,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
        }
        .map_err(database)?;
        configure_reader(&conn).map_err(database)?;
        Ok(conn)
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let poisoned = || StoreError::Database("the reader pool is poisoned".into());
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < MAX_READERS {
                state.open += 1;
                drop(state);
                let opened = self.connect();
                if opened.is_err() {
                    self.give_back_slot();
                }
                return opened;
            }
            let (next, waited) = self
                .freed
                .wait_timeout(state, READER_WAIT)
                .map_err(|_| poisoned())?;
            state = next;
            if waited.timed_out() && state.idle.is_empty() && state.open >= MAX_READERS {
                return Err(StoreError::Database(format!(
                    "no read connection became free within {} s",
                    READER_WAIT.as_secs()
                )));
            }
        }
    }

    /// Returns a connection; a connection in an unknown state is closed instead.
    fn give_back(&self, conn: Connection, reusable: bool) {
        if !reusable {
            drop(conn);
            self.give_back_slot();
            return;
        }
        if let Ok(mut state) = self.state.lock() {
            state.idle.push(conn);
        }
        self.freed.notify_one();
    }

    fn give_back_slot(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.open = state.open.saturating_sub(1);
        }
        self.freed.notify_one();
    }
}

impl Backend for SqliteBackend {
    fn writer(&self) -> Option<&mpsc::Sender<WriteJob>> {
        self.writer.as_ref()
    }

    fn read(&self, job: ReadJob<'_>) -> Result<(), StoreError> {
        let conn = self.readers.take()?;
        // One deferred transaction: every query of the job sees the same snapshot.
        if let Err(e) = conn.execute_batch("BEGIN") {
            self.readers.give_back(conn, false);
            return Err(database(e));
        }
        let mut tail = Tail::Unknown;
        let mut driver = SqliteDriver { conn: &conn };
        let result = job(&mut SqlTx::new(&mut driver, &mut tail));
        let ended = conn.execute_batch("COMMIT").map_err(database);
        self.readers.give_back(conn, ended.is_ok());
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
                let mut driver = SqliteDriver { conn };
                job(&mut SqlTx::new(&mut driver, &mut tail))
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
            // Jobs that never ran were dropped with the drained batch; their callers hear
            // `Closed`, which they treat as unavailable like this error.
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
