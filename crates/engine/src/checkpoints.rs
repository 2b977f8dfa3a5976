//! Signs a checkpoint of the audit chain's head every `checkpoint_interval_seconds`, whether or
//! not entries were appended (SPEC §20). The schedule is the latest stored checkpoint's time,
//! so a restart or a change of leader continues it.

use std::time::Duration;

use deploy_safety_app::{App, AppError};
use deploy_safety_core::{Checkpoint, Timestamp};
use tokio::sync::watch;

use crate::leading;

const TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct CheckpointWriter {
    app: App,
}

impl CheckpointWriter {
    pub fn new(app: App) -> Self {
        CheckpointWriter { app }
    }

    /// One step: the checkpoint made at `now`, if one was due.
    pub async fn tick(&self, now: Timestamp) -> Result<Option<Checkpoint>, AppError> {
        self.app.make_checkpoint(now).await
    }

    /// Ticks while this replica leads, until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            if leading(&self.app)
                && let Err(error) = self.tick(self.app.clock().now()).await
            {
                tracing::warn!(%error, "cannot make an audit checkpoint");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
