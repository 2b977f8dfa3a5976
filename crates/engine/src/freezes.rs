//! Announces freezes as their windows open and close (events `freeze.started` and
//! `freeze.ended`, with an audit entry each), on the leader only.

use std::time::Duration;

use deploy_safety_app::{App, AppError};
use deploy_safety_core::Timestamp;
use tokio::sync::watch;

use crate::leading;

const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct FreezeWatcher {
    app: App,
}

impl FreezeWatcher {
    pub fn new(app: App) -> Self {
        FreezeWatcher { app }
    }

    /// One step: announces every window that opened or closed by `now`; returns how many
    /// announcements it made.
    pub async fn tick(&self, now: Timestamp) -> Result<usize, AppError> {
        self.app.announce_freezes(now).await
    }

    /// Ticks while this replica leads, until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            if leading(&self.app)
                && let Err(error) = self.tick(self.app.clock().now()).await
            {
                tracing::warn!(%error, "cannot announce freezes");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
