//! Announces overrides as they expire (event `override.expired`, an audit entry), and marks
//! override requests that waited too long expired (event `override_request.expired`, SPEC §19).

use std::time::Duration;

use deploy_safety_app::{App, AppError};
use deploy_safety_core::Timestamp;
use tokio::sync::watch;

use crate::leading;

const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct ExpiryWatcher {
    app: App,
}

impl ExpiryWatcher {
    pub fn new(app: App) -> Self {
        ExpiryWatcher { app }
    }

    /// One step: announces every override expired by `now` and expires every override
    /// request whose time ran out; returns how many of both.
    pub async fn tick(&self, now: Timestamp) -> Result<usize, AppError> {
        let overrides = self.app.announce_expired_overrides(now).await?;
        let requests = self.app.expire_override_requests(now).await?;
        Ok(overrides + requests)
    }

    /// Ticks while this replica leads, until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            if leading(&self.app)
                && let Err(error) = self.tick(self.app.clock().now()).await
            {
                tracing::warn!(%error, "cannot announce expired overrides and requests");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
