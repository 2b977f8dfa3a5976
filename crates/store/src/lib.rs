//! The Store: everything deploy-safety keeps, behind one interface.
//!
//! Callers describe work as a closure over [`Tx`], a transaction of plain synchronous
//! operations, and hand it to [`Store::write`] or [`Store::read`]. A backend decides how that
//! closure runs. The SQLite backend runs every write on one writer thread that groups the
//! closures waiting at that moment into a single transaction and a single fsync (group commit),
//! each closure inside its own savepoint so one failing closure does not sink the others. No
//! caller is answered before its transaction is durable.
//!
//! Only this crate knows SQL. Domain types come from `deploy-safety-core` and never derive
//! database traits; backends map rows to them.

mod records;
pub mod sqlite;
mod tx;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

pub use records::{AuditQuery, TokenRecord};
pub use tx::Tx;

/// What went wrong in the store. Callers map every variant to "unavailable" except where noted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed the operation (I/O error, disk full, locked too long).
    #[error("database error: {0}")]
    Database(String),
    /// A uniqueness rule was broken, e.g. a second active token with the same name.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A stored value could not be read back as a domain value.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// The database URL or file is not usable.
    #[error("{0}")]
    Config(String),
    /// The store has shut down, or its writer stopped.
    #[error("the store is closed")]
    Closed,
}

/// How many write closures ran and how many transactions committed them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Write closures that committed.
    pub writes: u64,
    /// Transactions that committed (each one fsync in SQLite's `synchronous=FULL`).
    pub commits: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    writes: AtomicU64,
    commits: AtomicU64,
}

impl Counters {
    pub(crate) fn committed(&self, writes: u64) {
        self.writes.fetch_add(writes, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> StoreStats {
        StoreStats {
            writes: self.writes.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }
}

/// A unit of work for the writer: runs inside the batch's transaction, and says whether it
/// succeeded (so the writer keeps or rolls back its savepoint) and how to answer its caller once
/// the transaction's fate is known.
pub(crate) type WriteJob = Box<dyn FnOnce(&mut dyn Tx) -> JobOutcome + Send>;

pub(crate) struct JobOutcome {
    pub(crate) succeeded: bool,
    pub(crate) answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

pub(crate) type ReadJob<'a> = &'a mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>;

/// What a backend provides to the [`Store`] facade.
pub(crate) trait Backend: Send + Sync {
    /// The queue the writer takes jobs from; `None` when opened read-only.
    fn writer(&self) -> Option<&mpsc::Sender<WriteJob>>;
    /// Runs `job` on a read connection, on the calling (blocking) thread.
    fn read(&self, job: ReadJob<'_>) -> Result<(), StoreError>;
    fn counters(&self) -> &Counters;
    fn describe(&self) -> String;
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.describe())
            .finish()
    }
}

impl Store {
    /// Opens the database named by `url`, creating and migrating it if needed.
    ///
    /// `sqlite://PATH` (relative) or `sqlite:///ABSOLUTE/PATH` select the embedded backend.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        if let Some(path) = sqlite::path_from_url(url) {
            let backend = sqlite::SqliteBackend::open(&path)?;
            return Ok(Store {
                backend: Arc::new(backend),
            });
        }
        Err(StoreError::Config(format!(
            "unsupported database URL `{}`: expected sqlite://PATH",
            redact_url(url)
        )))
    }

    /// Opens an existing database for reading only: no migration, no writer, nothing created.
    /// For offline inspection (`deploy-safety audit verify --database-url ...`).
    pub fn open_read_only(url: &str) -> Result<Store, StoreError> {
        if let Some(path) = sqlite::path_from_url(url) {
            let backend = sqlite::SqliteBackend::open_read_only(&path)?;
            return Ok(Store {
                backend: Arc::new(backend),
            });
        }
        Err(StoreError::Config(format!(
            "unsupported database URL `{}`: expected sqlite://PATH",
            redact_url(url)
        )))
    }

    /// Runs `work` in a write transaction and answers once that transaction is durable.
    ///
    /// If `work` returns an error, everything it wrote is rolled back and nothing else in the
    /// batch is affected. If the commit fails, every closure of the batch gets the error: a
    /// caller never hears "done" for something that is not on disk.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: WriteJob = Box::new(move |tx| {
            if reply.is_closed() {
                // The caller gave up (timeout, disconnect) before its turn: do nothing, so a
                // request answered with an error has changed nothing.
                return JobOutcome {
                    succeeded: false,
                    answer: Box::new(|_| {}),
                };
            }
            let result = work(tx);
            JobOutcome {
                succeeded: result.is_ok(),
                answer: Box::new(move |committed: Result<(), StoreError>| {
                    // The caller may have gone away (request cancelled); the work is done anyway.
                    let _ = reply.send(committed.and(result));
                }),
            }
        });
        let writer = self
            .backend
            .writer()
            .ok_or_else(|| StoreError::Config("the database was opened read-only".to_owned()))?;
        writer.send(job).await.map_err(|_| StoreError::Closed)?;
        // A dropped reply means the closure panicked; the writer rolled it back.
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `work` in a read-only transaction (one consistent snapshot) off the async threads.
    pub async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || {
            let mut work = Some(work);
            let mut output = None;
            backend.read(&mut |tx| {
                if let Some(work) = work.take() {
                    output = Some(work(tx)?);
                }
                Ok(())
            })?;
            output.ok_or(StoreError::Closed)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    pub fn stats(&self) -> StoreStats {
        self.backend.counters().snapshot()
    }

    /// Writes waiting for the writer (not counting the batch it is running).
    pub fn queued_writes(&self) -> usize {
        self.backend
            .writer()
            .map_or(0, |w| w.max_capacity() - w.capacity())
    }

    /// A one-line description for logs, without credentials.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }
}

/// The URL without a password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
    }
}
