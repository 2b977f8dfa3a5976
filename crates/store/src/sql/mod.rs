//! The store's SQL, written once for every backend.
//!
//! [`SqlTx`] implements [`crate::Tx`] over a [`Driver`]: a connection that runs a statement with
//! [`Value`] parameters and returns [`Row`]s of values. The SQL text uses `$N` placeholders,
//! which both SQLite and PostgreSQL read. What differs between databases — locking the audit
//! chain's head across replicas, skipping rows another replica has claimed — is a [`Dialect`]
//! switch in one place each.

mod approvals;
mod audit;
pub(crate) mod cache;
mod canaries;
mod events;
mod freezes;
mod gate;
mod github;
mod incidents;
mod probes;
mod releases;
mod sessions;
mod soaks;
mod tokens;
mod tx;
mod validations;
pub(crate) mod value;

pub(crate) use tx::{BatchHead, JobEnd, SqlTx, TxState};
pub(crate) use value::{Row, Value};

use crate::StoreError;

/// Which database a driver speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// One connection, inside a transaction the backend opened.
pub(crate) trait Driver {
    fn dialect(&self) -> Dialect;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    /// The number of rows changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StoreError>;
    /// Runs statements that return nothing (`BEGIN`, `SAVEPOINT job`, ...).
    fn control(&mut self, sql: &str) -> Result<(), StoreError>;
}
