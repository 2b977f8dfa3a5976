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

mod copy;
mod migrations;
pub mod postgres;
mod records;
mod session;
mod sql;
pub mod sqlite;
pub mod tx;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

pub use copy::{CopyReport, copy_data};
pub use records::{
    AuditQuery, IncidentQuery, LeaderInfo, LoginRequestRecord, OutboxEntry, OutboxKind,
    SessionRecord, SoakQuery, TokenRecord,
};
pub use session::PoolStats;
pub use tx::{FreezeRecord, Tx};

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
    /// The write was not done and no other error says why: the store shut down, the job
    /// panicked, or its batch failed before it ran. Nothing of it was committed.
    #[error("the store is closed or the write was abandoned")]
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
    /// The read connections' pool.
    fn pool(&self) -> PoolStats;
    /// Whether this replica runs the background work (a single replica always does).
    fn is_leader(&self) -> bool {
        true
    }
    /// The leading replica, as shared storage records it (`None` for a single replica).
    fn leader(&self) -> Result<Option<LeaderInfo>, StoreError> {
        Ok(None)
    }
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
    /// `sqlite://PATH` (relative) or `sqlite:///ABSOLUTE/PATH` select the embedded backend;
    /// `postgres://...` PostgreSQL. A store opened this way never leads the background work on
    /// PostgreSQL (tools, tests); a server opens with [`Store::open_replica`].
    /// This blocks (migrations, file locks, connecting): call it from a blocking context.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        Self::open_with(url, None)
    }

    /// [`Store::open`] for a server replica named `replica`: on PostgreSQL it takes part in
    /// choosing the one replica that runs the background work.
    pub fn open_replica(url: &str, replica: &str) -> Result<Store, StoreError> {
        Self::open_with(url, Some(replica))
    }

    fn open_with(url: &str, replica: Option<&str>) -> Result<Store, StoreError> {
        let backend: Arc<dyn Backend> = if postgres::is_postgres_url(url) {
            Arc::new(postgres::PgBackend::open(url, replica, false)?)
        } else {
            Arc::new(sqlite::SqliteBackend::open(&sqlite_path(url)?)?)
        };
        Ok(Store { backend })
    }

    /// Opens an existing database for reading only: no migration, no writer, nothing created.
    /// For offline inspection (`deploy-safety audit verify --database-url ...`).
    pub fn open_read_only(url: &str) -> Result<Store, StoreError> {
        let backend: Arc<dyn Backend> = if postgres::is_postgres_url(url) {
            Arc::new(postgres::PgBackend::open(url, None, true)?)
        } else {
            Arc::new(sqlite::SqliteBackend::open_read_only(&sqlite_path(url)?)?)
        };
        Ok(Store { backend })
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
            if reply.is_closed() {
                // The caller gave up while its work ran: roll it back rather than commit a
                // change nobody will hear about. (A caller that gives up during the commit
                // itself cannot be helped: its change is in the audit log.)
                return JobOutcome {
                    succeeded: false,
                    answer: Box::new(|_| {}),
                };
            }
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
        // A dropped reply means the job never answered: it panicked, or its batch failed
        // before it ran. Either way nothing of it was committed.
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

    pub fn pool_stats(&self) -> PoolStats {
        self.backend.pool()
    }

    /// Whether this replica should run the background work now.
    pub fn is_leader(&self) -> bool {
        self.backend.is_leader()
    }

    /// The leading replica, as the database records it (`None` with a single replica).
    pub async fn leader(&self) -> Result<Option<LeaderInfo>, StoreError> {
        let backend = Arc::clone(&self.backend);
        tokio::task::spawn_blocking(move || backend.leader())
            .await
            .map_err(|_| StoreError::Closed)?
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

/// `hostname-pid`: unique enough to tell replicas apart in `/health`.
pub fn default_replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "replica".to_owned());
    format!("{host}-{}", std::process::id())
}

fn sqlite_path(url: &str) -> Result<std::path::PathBuf, StoreError> {
    sqlite::path_from_url(url).ok_or_else(|| {
        StoreError::Config(format!(
            "unsupported database URL `{}`: expected sqlite://PATH or postgres://...",
            redact_url(url)
        ))
    })
}

/// The URL without a password, for messages and logs: the password of the authority part
/// (`user:password@host`, split at the last `@`) and any `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (credentials, host) = authority.split_at(at);
            match credentials.split_once(':') {
                Some((user, _)) => format!("{user}:***{host}"),
                None => authority.to_owned(),
            }
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{head}{authority}{tail}")
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
        assert_eq!(
            redact_url("postgres://u:p@ss@host/db"),
            "postgres://u:***@host/db"
        );
        assert_eq!(
            redact_url("postgres://host/db?user=u&password=secret&sslmode=require"),
            "postgres://host/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
