//! The embedded SQLite backend: one writer thread with group commit, a pool of readers.
//!
//! SQLite allows one writer at a time, so instead of many connections contending for the write
//! lock, every write goes to one thread. The thread takes every job waiting in its queue (up to
//! [`MAX_BATCH`]), runs each inside its own savepoint of one `BEGIN IMMEDIATE` transaction, and
//! commits once. With `synchronous=FULL` in WAL mode a commit is one fsync, so under concurrency
//! many decisions share one fsync, and none is answered before it.

mod migrate;
mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc;

use crate::session::{Connect, PoolStats, QUEUE_DEPTH, ReaderPool, writer_loop};
use crate::{Backend, Counters, ReadJob, StoreError, WriteJob};

use session::SqliteSession;

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
    readers: ReaderPool<SqliteSession>,
    counters: Arc<Counters>,
}

/// Opens the writer's connections.
fn writer_connect(path: PathBuf) -> Connect<SqliteSession> {
    Box::new(move || {
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            StoreError::Config(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        })?;
        configure_writer(&conn).map_err(database)?;
        Ok(SqliteSession::new(conn))
    })
}

/// A writing connection to the database at `path`, created and migrated if needed.
pub(crate) fn open_write_session(path: &Path) -> Result<SqliteSession, StoreError> {
    checked_path(path)?;
    create_private(path)?;
    let mut session = writer_connect(path.to_owned())()?;
    crate::migrations::apply(&mut session, migrate::MIGRATIONS)?;
    Ok(session)
}

/// A read-only connection to an existing database at the current schema version.
pub(crate) fn open_read_session(path: &Path) -> Result<SqliteSession, StoreError> {
    SqliteBackend::open_read_only(path)?.readers.take()
}

/// Opens read connections: read-write files (the server's) or read-only URIs (offline use).
fn reader_connect(target: String, read_only: bool) -> Connect<SqliteSession> {
    Box::new(move || {
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn = Connection::open_with_flags(&target, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(database)?;
        configure_reader(&conn).map_err(database)?;
        Ok(SqliteSession::new(conn))
    })
}

impl SqliteBackend {
    /// Opens the database read-write, creating and migrating it if needed, and starts the
    /// writer thread.
    pub(crate) fn open(path: &Path) -> Result<SqliteBackend, StoreError> {
        let connect_writer = writer_connect(path.to_owned());
        let session = open_write_session(path)?;

        let (writer, queue) = mpsc::channel(QUEUE_DEPTH);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(session, connect_writer, queue, &thread_counters))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;

        Ok(SqliteBackend {
            path: path.to_owned(),
            writer: Some(writer),
            readers: ReaderPool::new(reader_connect(path.to_string_lossy().into_owned(), false)),
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
        let uri = if Path::new(&wal).exists() {
            file_uri(path, "mode=ro")
        } else {
            file_uri(path, "immutable=1")
        };
        let backend = SqliteBackend {
            path: path.to_owned(),
            writer: None,
            readers: ReaderPool::new(reader_connect(uri, true)),
            counters: Arc::new(Counters::default()),
        };
        let session = backend.readers.take().map_err(|e| {
            StoreError::Config(format!(
                "cannot open {} for reading: {e} (while a server has it open, reading needs write access to its -shm file)",
                path.display()
            ))
        })?;
        let mut session = session;
        let current = crate::migrations::check_current(&mut session, migrate::MIGRATIONS);
        backend.readers.give_back(session, true);
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

impl Backend for SqliteBackend {
    fn writer(&self) -> Option<&mpsc::Sender<WriteJob>> {
        self.writer.as_ref()
    }

    fn read(&self, job: ReadJob<'_>) -> Result<(), StoreError> {
        self.readers.read(job)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    fn pool(&self) -> PoolStats {
        self.readers.stats()
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
