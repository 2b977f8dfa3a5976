//! Delivers the outbox: events to webhooks, rollbacks to the executor.
//!
//! Due entries are claimed (so no other worker, or replica, takes them), then each is attempted
//! in its own task (a slow receiver holds up nobody); its result is recorded with the next
//! attempt's time, so retries with backoff survive restarts and nothing is lost: delivery is at
//! least once.

use std::sync::Arc;
use std::time::Duration;

use deploy_safety_app::{App, AppError};
use deploy_safety_core::Timestamp;
use tokio::sync::{Semaphore, watch};

use crate::leading;
use tokio::task::JoinHandle;

const TICK: Duration = Duration::from_millis(250);
/// Entries read per tick.
const BATCH: u32 = 200;

#[derive(Debug, Clone)]
pub struct DeliveryWorker {
    app: App,
    permits: Arc<Semaphore>,
}

impl DeliveryWorker {
    pub fn new(app: App, max_concurrent: usize) -> Self {
        DeliveryWorker {
            app,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }

    /// One step: claims every entry due at `now` (claimed entries are not due again while
    /// being attempted, whoever looks) and starts an attempt at each; returns the attempts.
    pub async fn tick(&self, now: Timestamp) -> Result<Vec<JoinHandle<()>>, AppError> {
        let mut started = Vec::new();
        for entry in self.app.claim_deliveries(now, BATCH).await? {
            let app = self.app.clone();
            let permits = Arc::clone(&self.permits);
            started.push(tokio::spawn(async move {
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
            if leading(&self.app)
                && let Err(error) = self.tick(self.app.clock().now()).await
            {
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
