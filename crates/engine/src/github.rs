//! Decides pending GitHub deployment protection rule requests again (SPEC §17): all of them
//! whenever an event was committed since the last look (an override created, a freeze ended,
//! lockdown left — by this replica or another), and each at least every minute. Leader only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deploy_safety_app::{App, AppError};
use deploy_safety_core::Timestamp;
use tokio::sync::watch;

use crate::leading;

const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct GithubWatcher {
    app: App,
    /// The newest event seq seen at the last tick.
    seen_event: Arc<AtomicU64>,
}

impl GithubWatcher {
    pub fn new(app: App) -> Self {
        GithubWatcher {
            app,
            seen_event: Arc::new(AtomicU64::new(0)),
        }
    }

    /// One step: decides again every pending request if events were committed since the
    /// last tick, otherwise those due by `now`; returns how many left `pending`.
    pub async fn tick(&self, now: Timestamp) -> Result<usize, AppError> {
        if self.app.settings().github.is_none() {
            return Ok(0);
        }
        let newest = self.app.last_event_seq().await?;
        let changed = self.seen_event.swap(newest, Ordering::Relaxed) != newest;
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
