//! Delivers the outbox: events to webhooks, rollbacks to the executor.
//!
//! Each due entry is attempted in its own task (a slow receiver holds up nobody), never twice
//! at once; its result is recorded with the next attempt's time, so retries with backoff
//! survive restarts and nothing is lost: delivery is at least once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_safety_app::{App, AppError};
use deploy_safety_core::Timestamp;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

const TICK: Duration = Duration::from_millis(250);
/// Entries read per tick.
const BATCH: u32 = 200;

#[derive(Debug, Clone)]
pub struct DeliveryWorker {
    app: App,
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<u64>>>,
}

struct InFlight {
    set: Arc<Mutex<HashSet<u64>>>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.id);
        }
    }
}

impl DeliveryWorker {
    pub fn new(app: App, max_concurrent: usize) -> Self {
        DeliveryWorker {
            app,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// One step: starts an attempt at every entry due at `now` that is not being attempted;
    /// returns the attempts started.
    pub async fn tick(&self, now: Timestamp) -> Result<Vec<JoinHandle<()>>, AppError> {
        let mut started = Vec::new();
        for entry in self.app.due_deliveries(now, BATCH).await? {
            let claimed = self
                .in_flight
                .lock()
                .map(|mut set| set.insert(entry.id))
                .unwrap_or(false);
            if !claimed {
                continue;
            }
            let guard = InFlight {
                set: Arc::clone(&self.in_flight),
                id: entry.id,
            };
            let app = self.app.clone();
            let permits = Arc::clone(&self.permits);
            started.push(tokio::spawn(async move {
                let _guard = guard;
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                let id = entry.id;
                if let Err(error) = app.deliver(entry).await {
                    tracing::warn!(delivery = id, %error, "cannot record a delivery attempt");
                }
            }));
        }
        Ok(started)
    }

    /// Ticks until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                break;
            }
            if let Err(error) = self.tick(self.app.clock().now()).await {
                tracing::warn!(%error, "cannot look for due deliveries");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::debug!("delivery worker stopped");
    }
}
