//! The PostgreSQL backend: for several replicas sharing one database.
//!
//! Each replica has the same shape as the SQLite backend — one writer thread with group commit
//! and a bounded pool of read connections — and the SQL is the same. What several replicas add:
//! - every batch of writes first locks the audit chain's head row, until it commits: writes
//!   from all replicas are serialized as SQLite serializes them, so a job reads every committed
//!   write, read-then-write rules (one active canary, a rollback executed once) hold across
//!   replicas, and audit entries and events form one chain in commit order. Group commit keeps
//!   the price per batch, and nearly every write appends to the chain and would wait anyway;
//! - one active canary per environment is also a unique index, whoever starts it;
//! - outbox entries are claimed `FOR UPDATE SKIP LOCKED`;
//! - one replica at a time leads (runs the background work), chosen by a session advisory lock
//!   held on a connection of its own ([`lease`]).
//!
//! Every connection has a statement timeout and a lock timeout, so a stuck query fails (and the
//! request fails closed) instead of hanging.

mod lease;
mod migrate;
mod session;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use lease::Lease;
use session::{PgSession, database};

use crate::records::LeaderInfo;
use crate::session::{Connect, PoolStats, QUEUE_DEPTH, ReaderPool, writer_loop};
use crate::{Backend, Counters, ReadJob, StoreError, WriteJob, redact_url};

/// A statement running longer fails.
const STATEMENT_TIMEOUT: &str = "10s";
/// Waiting longer for a row or table lock fails.
const LOCK_TIMEOUT: &str = "10s";
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn config(url: &str, replica: &str) -> Result<postgres::Config, StoreError> {
    let mut config = postgres::Config::from_str(url).map_err(|e| {
        StoreError::Config(format!("invalid database URL `{}`: {e}", redact_url(url)))
    })?;
    config
        .application_name(&format!("deploy-safety/{replica}"))
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10));
    Ok(config)
}

/// How long a replica's writer may sit inside a transaction without sending a statement
/// before PostgreSQL ends its session. Its batches never pause (jobs do no I/O), and a batch
/// holds the audit head's lock that every replica's writes wait for: a frozen or partitioned
/// replica must not stop the others' writes for longer than this.
const WRITER_IDLE_IN_TRANSACTION: &str = "5s";
/// The same for every other connection (readers, the lease, tools).
const IDLE_IN_TRANSACTION: &str = "60s";

/// Opens sessions with the timeouts every connection gets.
fn connector(config: postgres::Config, url: String) -> Connect<PgSession> {
    connector_with(config, url, IDLE_IN_TRANSACTION)
}

fn connector_with(
    config: postgres::Config,
    url: String,
    idle_in_transaction: &'static str,
) -> Connect<PgSession> {
    Box::new(move || {
        let mut client = config.connect(postgres::NoTls).map_err(|e| {
            StoreError::Database(format!("cannot connect to {}: {e}", redact_url(&url)))
        })?;
        client
            .batch_execute(&format!(
                "SET statement_timeout = '{STATEMENT_TIMEOUT}'; SET lock_timeout = '{LOCK_TIMEOUT}'; \
                 SET idle_in_transaction_session_timeout = '{idle_in_transaction}'"
            ))
            .map_err(database)?;
        Ok(PgSession::new(client))
    })
}

/// A writing connection to the database at `url`, migrated if needed.
pub(crate) fn open_write_session(url: &str) -> Result<PgSession, StoreError> {
    let mut session = connector(config(url, "tool")?, url.to_owned())()?;
    crate::migrations::apply(&mut session, migrate::MIGRATIONS)?;
    Ok(session)
}

/// A connection to a database at the current schema version, for reading.
pub(crate) fn open_read_session(url: &str) -> Result<PgSession, StoreError> {
    let mut session = connector(config(url, "tool")?, url.to_owned())()?;
    crate::migrations::check_current(&mut session, migrate::MIGRATIONS)?;
    Ok(session)
}

pub(crate) struct PgBackend {
    url: String,
    writer: Option<mpsc::Sender<WriteJob>>,
    readers: ReaderPool<PgSession>,
    counters: Arc<Counters>,
    lease: Option<Lease>,
}

impl PgBackend {
    /// Connects, applies the migrations, starts the writer, and, given a replica name, takes
    /// part in choosing the leader.
    pub(crate) fn open(
        url: &str,
        replica: Option<&str>,
        read_only: bool,
    ) -> Result<PgBackend, StoreError> {
        let config = config(url, replica.unwrap_or("tool"))?;
        let connect = if read_only {
            connector(config.clone(), url.to_owned())
        } else {
            connector_with(config.clone(), url.to_owned(), WRITER_IDLE_IN_TRANSACTION)
        };
        let mut session = connect()?;
        if read_only {
            crate::migrations::check_current(&mut session, migrate::MIGRATIONS)?;
            return Ok(PgBackend {
                url: url.to_owned(),
                writer: None,
                readers: ReaderPool::new(connector(config, url.to_owned())),
                counters: Arc::new(Counters::default()),
                lease: None,
            });
        }
        crate::migrations::apply(&mut session, migrate::MIGRATIONS)?;

        let (writer, queue) = mpsc::channel(QUEUE_DEPTH);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("postgres-writer".into())
            .spawn(move || writer_loop(session, connect, queue, &thread_counters))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        let lease = replica
            .map(|name| Lease::start(connector(config.clone(), url.to_owned()), name.to_owned()))
            .transpose()?;
        Ok(PgBackend {
            url: url.to_owned(),
            writer: Some(writer),
            readers: ReaderPool::new(connector(config, url.to_owned())),
            counters,
            lease,
        })
    }
}

impl Drop for PgBackend {
    /// A PostgreSQL client owns a small runtime of its own, which may not be dropped on an
    /// async thread: close idle connections on a thread of their own.
    fn drop(&mut self) {
        let idle = self.readers.drain_idle();
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("postgres-close".into())
                .spawn(move || drop(idle));
        }
    }
}

impl Backend for PgBackend {
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
        redact_url(&self.url)
    }

    fn pool(&self) -> PoolStats {
        self.readers.stats()
    }

    fn is_leader(&self) -> bool {
        self.lease.as_ref().is_some_and(Lease::is_leader)
    }

    fn leader(&self) -> Result<Option<LeaderInfo>, StoreError> {
        let mut session = self.readers.take()?;
        let found = lease::current_leader(&mut session);
        self.readers.give_back(session, found.is_ok());
        found
    }
}
