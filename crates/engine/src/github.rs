//! Decides pending GitHub deployment protection rule requests again (SPEC §17): all of them
//! whenever the gate's state changed since the last look (an override created, a freeze ended,
//! lockdown left, the threat level lowered, an incident resolved — by this replica or another),
//! and each at least every minute. Leader only.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use deploy_safety_app::{App, AppError};
use deploy_safety_core::Timestamp;
use tokio::sync::watch;

use crate::leading;

const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct GithubWatcher {
    app: App,
    /// The gate's fingerprint at the last tick (`App::gate_fingerprint`).
    seen: Arc<Mutex<String>>,
}

impl GithubWatcher {
    pub fn new(app: App) -> Self {
        GithubWatcher {
            app,
            seen: Arc::new(Mutex::new(String::new())),
        }
    }

    /// One step: decides again every pending request if the gate's state changed since the
    /// last tick, otherwise those due by `now`; returns how many left `pending`.
    pub async fn tick(&self, now: Timestamp) -> Result<usize, AppError> {
        if self.app.settings().github.is_none() {
            return Ok(0);
        }
        let now_seen = self.app.gate_fingerprint().await?;
        let changed = match self.seen.lock() {
            Ok(mut seen) => std::mem::replace(&mut *seen, now_seen.clone()) != now_seen,
            // A poisoned lock only loses the comparison: decide everything.
            Err(_) => true,
        };
        self.app.redecide_github_requests(now, changed).await
    }

    /// Ticks while this replica leads, until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            if leading(&self.app)
                && let Err(error) = self.tick(self.app.clock().now()).await
            {
                tracing::warn!(%error, "cannot decide pending GitHub requests");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
