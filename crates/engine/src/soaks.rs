//! Evaluates running soaks when their next evaluation is due (SPEC §23).
//!
//! The schedule is each soak's persisted `next_evaluation_at`, so a restart resumes it; an
//! evaluation records the next due time in the same transaction, so it is never made twice;
//! after downtime the missed intervals are recorded once each, as `unknown`.

use std::time::Duration;

use deploy_safety_app::{App, AppError};
use deploy_safety_core::{SoakEvaluation, Timestamp};
use tokio::sync::watch;

use crate::leading;

const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct SoakRunner {
    app: App,
}

impl SoakRunner {
    pub fn new(app: App) -> Self {
        SoakRunner { app }
    }

    /// One step: evaluates every soak due at `now`, one after another; returns the soak ids
    /// with the evaluations recorded (none if the soak changed meanwhile).
    pub async fn tick(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(String, Vec<SoakEvaluation>)>, AppError> {
        let mut done = Vec::new();
        for soak in self.app.due_soaks(now).await? {
            let Some(scheduled) = soak.next_evaluation_at else {
                continue;
            };
            match self.app.evaluate_soak(&soak, scheduled).await {
                Ok(recorded) => done.push((soak.id.clone(), recorded)),
                Err(error) => tracing::warn!(soak = %soak.id, %error, "cannot evaluate a soak"),
            }
        }
        Ok(done)
    }

    /// Ticks while this replica leads, until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            if leading(&self.app)
                && let Err(error) = self.tick(self.app.clock().now()).await
            {
                tracing::warn!(%error, "cannot look for due soaks");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
