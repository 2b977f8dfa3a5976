//! Which replica leads: the one holding a session advisory lock on a connection of its own.
//!
//! PostgreSQL frees the lock the moment the holder's connection ends — its process exiting or
//! being killed closes the connection — so another replica, trying every [`POLL`], takes over
//! within about one poll. A leader that hangs with its connection open stops refreshing its
//! row in `leader`; after [`EXPIRY`] a standby ends that session, which frees the lock. The
//! background work itself never depends on being the only leader: canary steps and outbox
//! claims are conditional writes, so a brief overlap cannot do anything twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::StoreError;
use crate::records::LeaderInfo;
use crate::session::{Connect, Session};
use crate::sql::Driver;
use crate::sql::value::vals;

use super::session::PgSession;

/// The advisory lock's first key (any constant the product owns). The second is the hash of the
/// schema: advisory locks are per database, and installations in different schemas of one
/// database (or tests running side by side) must each have a leader of their own.
const KEY: i64 = 73_650_002;
/// How often a standby tries to take the lock, and the leader refreshes its row.
const POLL: Duration = Duration::from_millis(1_000);
/// A leader whose row is older than this is considered hung.
const EXPIRY_MS: i64 = 10_000;

/// The database's clock, in milliseconds, so replicas' clocks never disagree about age.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

pub(crate) struct Lease {
    leading: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Lease {
    pub(crate) fn start(connect: Connect<PgSession>, replica: String) -> Result<Lease, StoreError> {
        let leading = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_leading, thread_stop) = (Arc::clone(&leading), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("postgres-lease".into())
            .spawn(move || run(&connect, &replica, &thread_leading, &thread_stop))
            .map_err(|e| StoreError::Database(format!("cannot start the lease thread: {e}")))?;
        Ok(Lease { leading, stop })
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn run(connect: &Connect<PgSession>, replica: &str, leading: &AtomicBool, stop: &AtomicBool) {
    let mut session: Option<PgSession> = None;
    while !stop.load(Ordering::SeqCst) {
        if session.as_mut().is_none_or(|s| !s.usable()) {
            leading.store(false, Ordering::SeqCst);
            session = match connect() {
                Ok(fresh) => Some(fresh),
                Err(error) => {
                    tracing::warn!(%error, "lease: cannot connect");
                    None
                }
            };
        }
        if let Some(active) = session.as_mut() {
            let was_leading = leading.load(Ordering::SeqCst);
            let outcome = if was_leading {
                refresh(active, replica)
            } else {
                try_take(active, replica)
            };
            match outcome {
                Ok(now_leading) => {
                    if now_leading != was_leading {
                        tracing::info!(replica, leading = now_leading, "leadership changed");
                    }
                    leading.store(now_leading, Ordering::SeqCst);
                }
                Err(error) => {
                    tracing::warn!(%error, "lease: lost the connection; not leading");
                    leading.store(false, Ordering::SeqCst);
                    // Dropping the connection frees the lock, if this replica held it.
                    session = None;
                }
            }
        }
        // Sleep in short steps, so a stopping store releases the lock promptly.
        for _ in 0..10 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(POLL / 10);
        }
    }
    leading.store(false, Ordering::SeqCst);
}

fn try_take(session: &mut PgSession, replica: &str) -> Result<bool, StoreError> {
    let rows = session.query(
        "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))",
        &vals![KEY],
    )?;
    let taken = rows
        .first()
        .map(|r| r.get::<bool>(0))
        .transpose()?
        .unwrap_or(false);
    if taken {
        session.execute(
            &format!(
                "INSERT INTO leader (id, replica, backend_pid, since, heartbeat_at)
                 VALUES (1, $1, pg_backend_pid(), {DB_NOW}, {DB_NOW})
                 ON CONFLICT (id) DO UPDATE SET replica = $1, backend_pid = pg_backend_pid(),
                     since = {DB_NOW}, heartbeat_at = {DB_NOW}"
            ),
            &vals![replica],
        )?;
        return Ok(true);
    }
    // Someone holds the lock. If its row has gone stale, that leader is hung: end its session.
    let stale = session.query(
        &format!("SELECT backend_pid FROM leader WHERE id = 1 AND {DB_NOW} - heartbeat_at > $1"),
        &vals![EXPIRY_MS],
    )?;
    if let Some(pid) = stale.first().map(|r| r.get::<i64>(0)).transpose()? {
        tracing::warn!(
            pid,
            "lease: the leader stopped refreshing; ending its session"
        );
        session.query("SELECT pg_terminate_backend($1::integer)", &vals![pid])?;
    }
    Ok(false)
}

fn refresh(session: &mut PgSession, replica: &str) -> Result<bool, StoreError> {
    let changed = session.execute(
        &format!(
            "UPDATE leader SET heartbeat_at = {DB_NOW}
             WHERE id = 1 AND replica = $1 AND backend_pid = pg_backend_pid()"
        ),
        &vals![replica],
    )?;
    Ok(changed == 1)
}

/// The leader as its row says, if any replica ever led.
pub(crate) fn current_leader(session: &mut PgSession) -> Result<Option<LeaderInfo>, StoreError> {
    let rows = session.query(
        &format!("SELECT replica, since, heartbeat_at, {DB_NOW} FROM leader WHERE id = 1"),
        &[],
    )?;
    rows.first()
        .map(|row| {
            let heartbeat_at: i64 = row.get(2)?;
            let now: i64 = row.get(3)?;
            Ok(LeaderInfo {
                replica: row.get(0)?,
                since_ms: row.get(1)?,
                heartbeat_age_ms: now - heartbeat_at,
                fresh: now - heartbeat_at <= EXPIRY_MS,
            })
        })
        .transpose()
}
