//! What every backend shares: a connection ([`Session`]), the writer thread with group commit,
//! and the pool of read connections.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::sql::{BatchHead, Driver, JobEnd, SqlTx, TxState};
use crate::{Counters, JobOutcome, ReadJob, StoreError, WriteJob};

/// The most jobs one transaction takes: bounds the latency a job can add to the others.
pub(crate) const MAX_BATCH: usize = 512;
/// Jobs that may wait for the writer before callers wait to enqueue (backpressure).
pub(crate) const QUEUE_DEPTH: usize = 8_192;
/// Read connections open at most; further reads wait for one to be free.
const MAX_READERS: usize = 16;
/// How long a read waits for a free connection before failing.
const READER_WAIT: Duration = Duration::from_secs(10);

/// One database connection.
pub(crate) trait Session: Driver + Send {
    /// Opens a write transaction.
    fn begin_write(&mut self) -> Result<(), StoreError>;
    /// Opens the transaction of one batch of write jobs: no other batch, from this process or
    /// another, runs beside it, so a job's reads see every committed write and its
    /// read-then-write rules (one active canary per environment, a rollback executed once) hold
    /// across replicas exactly as on one. Returns the audit chain's head row as the batch
    /// found it.
    fn begin_batch(&mut self) -> Result<BatchHead, StoreError> {
        self.begin_write()?;
        read_head(self)
    }
    /// Opens a read-only transaction on one consistent snapshot.
    fn begin_read(&mut self) -> Result<(), StoreError>;
    /// Whether the connection can still be used (a broken network connection cannot).
    fn usable(&mut self) -> bool;
}

/// Opens a new session.
pub(crate) type Connect<S> = Box<dyn Fn() -> Result<S, StoreError> + Send + Sync>;

/// Takes every job waiting (up to [`MAX_BATCH`]) into one transaction, until every store
/// handle is gone. A broken connection is replaced before the next batch.
pub(crate) fn writer_loop<S: Session>(
    mut session: S,
    connect: Connect<S>,
    mut queue: mpsc::Receiver<WriteJob>,
    counters: &Counters,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut state = TxState::writer();
    while let Some(first) = queue.blocking_recv() {
        if !session.usable() {
            match connect() {
                Ok(fresh) => session = fresh,
                Err(error) => tracing::error!(%error, "the writer cannot reconnect"),
            }
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut session, &mut state, &mut batch, counters);
    }
    tracing::debug!("store writer stopped: every store handle was dropped");
}

/// The audit chain's head row: seq, hash and the version of the gate's inputs.
fn read_head(driver: &mut (impl Driver + ?Sized)) -> Result<BatchHead, StoreError> {
    let rows = driver.query(
        "SELECT seq, hash, state_version FROM audit_head WHERE id = 1",
        &[],
    )?;
    let row = rows
        .first()
        .ok_or_else(|| StoreError::Corrupt("the audit_head row is missing".into()))?;
    let seq: i64 = row.get(0)?;
    Ok(BatchHead {
        seq: u64::try_from(seq).map_err(|e| StoreError::Corrupt(format!("audit_head seq: {e}")))?,
        hash: row.get(1)?,
        state_version: row.get(2)?,
    })
}

/// One transaction for every job in `batch`; every job's caller is answered after the commit
/// (or its failure). A job runs in a savepoint of its own once it runs a statement, and the
/// batch's audit entries are written together (see [`TxState`]).
fn run_batch<S: Session>(
    session: &mut S,
    state: &mut TxState,
    batch: &mut Vec<WriteJob>,
    counters: &Counters,
) {
    let mut answers = Vec::with_capacity(batch.len());
    let outcome = (|| -> Result<u64, StoreError> {
        let head = session.begin_batch()?;
        state.begin_batch(head);
        let mut succeeded = 0;
        for job in batch.drain(..) {
            state.begin_job();
            let ran = catch_unwind(AssertUnwindSafe(|| {
                job(&mut SqlTx::new(&mut *session, state))
            }));
            let end = match ran {
                Ok(JobOutcome {
                    succeeded: true,
                    answer,
                }) => {
                    succeeded += 1;
                    answers.push(answer);
                    JobEnd::Succeeded
                }
                Ok(JobOutcome { answer, .. }) => {
                    answers.push(answer);
                    JobEnd::Failed
                }
                Err(_) => {
                    // The job panicked: its reply channel is gone, so its caller hears "closed".
                    tracing::error!("a store write panicked; its changes were rolled back");
                    JobEnd::Failed
                }
            };
            SqlTx::new(&mut *session, state).end_job(end)?;
        }
        SqlTx::new(&mut *session, state).write_pending()?;
        session.control("COMMIT")?;
        Ok(succeeded)
    })();
    state.end_batch(outcome.is_ok());
    match outcome {
        Ok(succeeded) => {
            counters.committed(succeeded);
            answers.into_iter().for_each(|answer| answer(Ok(())));
        }
        Err(error) => {
            tracing::error!(%error, "a write transaction failed; its callers are told so");
            let _ = session.control("ROLLBACK");
            // Jobs that never ran were dropped with the drained batch; their callers hear
            // `Closed`, which they treat as unavailable like this error.
            answers
                .into_iter()
                .for_each(|answer| answer(Err(error.clone())));
        }
    }
}

/// At most [`MAX_READERS`] connections; a read waits for a free one rather than opening more.
pub(crate) struct ReaderPool<S> {
    connect: Connect<S>,
    state: Mutex<PoolState<S>>,
    freed: Condvar,
}

struct PoolState<S> {
    idle: Vec<S>,
    open: usize,
}

/// How many read connections are open and idle, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub open: usize,
    pub idle: usize,
    pub max: usize,
}

impl<S: Session> ReaderPool<S> {
    pub(crate) fn new(connect: Connect<S>) -> Self {
        ReaderPool {
            connect,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// Takes every idle session out of the pool (to close them somewhere else).
    pub(crate) fn drain_idle(&self) -> Vec<S> {
        self.state
            .lock()
            .map(|mut s| std::mem::take(&mut s.idle))
            .unwrap_or_default()
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.state
            .lock()
            .map(|s| PoolStats {
                open: s.open,
                idle: s.idle.len(),
                max: MAX_READERS,
            })
            .unwrap_or_default()
    }

    pub(crate) fn take(&self) -> Result<S, StoreError> {
        let poisoned = || StoreError::Database("the reader pool is poisoned".into());
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(session);
            }
            if state.open < MAX_READERS {
                state.open += 1;
                drop(state);
                let opened = (self.connect)();
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

    /// Returns a session; one in an unknown state is closed instead.
    pub(crate) fn give_back(&self, session: S, reusable: bool) {
        if !reusable {
            drop(session);
            self.give_back_slot();
            return;
        }
        if let Ok(mut state) = self.state.lock() {
            state.idle.push(session);
        }
        self.freed.notify_one();
    }

    fn give_back_slot(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.open = state.open.saturating_sub(1);
        }
        self.freed.notify_one();
    }

    /// Runs `job` in a read-only transaction on a pooled session.
    pub(crate) fn read(&self, job: ReadJob<'_>) -> Result<(), StoreError> {
        let mut session = self.take()?;
        if let Err(e) = session.begin_read() {
            self.give_back(session, false);
            return Err(e);
        }
        let mut state = TxState::direct();
        let result = job(&mut SqlTx::new(&mut session, &mut state));
        let ended = session.control("COMMIT");
        let reusable = ended.is_ok() && session.usable();
        self.give_back(session, reusable);
        result.and(ended)
    }
}
