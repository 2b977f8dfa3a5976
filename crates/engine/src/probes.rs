//! Runs health probes on their schedule.
//!
//! Each due probe is checked in its own task, so a slow or silent target never holds up the
//! others; a probe is never checked twice at once; and at most a fixed number of checks run
//! together, so a thousand probes cannot exhaust sockets.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_safety_app::{App, AppError};
use deploy_safety_core::Timestamp;
use tokio::sync::{Semaphore, watch};

use crate::leading;
use tokio::task::JoinHandle;

/// How often the loop looks for due probes.
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct ProbeRunner {
    app: App,
    permits: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

/// Takes a probe off the in-flight set when its check ends, however it ends.
struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.id);
        }
    }
}

impl ProbeRunner {
    /// `max_concurrent` checks run at most at once.
    pub fn new(app: App, max_concurrent: usize) -> Self {
        ProbeRunner {
            app,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            in_flight: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// One step: starts a check of every probe due at `now` that is not being checked
    /// already, and returns the started checks (await them to wait for their results).
    pub async fn tick(&self, now: Timestamp) -> Result<Vec<JoinHandle<()>>, AppError> {
        let due = self.app.due_probes(now).await?;
        let mut started = Vec::new();
        for probe in due {
            let claimed = self
                .in_flight
                .lock()
                .map(|mut set| set.insert(probe.id.clone()))
                .unwrap_or(false);
            if !claimed {
                continue;
            }
            let guard = InFlight {
                set: Arc::clone(&self.in_flight),
                id: probe.id.clone(),
            };
            let app = self.app.clone();
            let permits = Arc::clone(&self.permits);
            started.push(tokio::spawn(async move {
                let _guard = guard;
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                // The schedule follows the tick's `now`: the next check is one interval after
                // the moment this one was due to start.
                let report = app.check_probe(&probe).await;
                if let Err(error) = app.record_probe_check(&probe, now, report).await {
                    tracing::warn!(probe = %probe.definition.name, %error, "cannot record a probe check");
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
                tracing::warn!(%error, "cannot look for due probes");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::debug!("probe runner stopped");
    }
}
