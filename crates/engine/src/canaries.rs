//! Steps active canaries when their evaluation is due.
//!
//! The schedule is the canary's persisted `next_step_at`, so a restart resumes each canary at
//! the right time; a step records the new `next_step_at` in the same transaction, so it is
//! never done twice; after downtime a canary is evaluated once, not once per missed interval.

use std::time::Duration;

use deploy_safety_app::{App, AppError};
use deploy_safety_core::{StepAction, Timestamp};
use tokio::sync::watch;

use crate::leading;

const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct CanaryRunner {
    app: App,
}

impl CanaryRunner {
    pub fn new(app: App) -> Self {
        CanaryRunner { app }
    }

    /// One step: evaluates every canary due at `now`, one after another, and returns what each
    /// evaluation did (canary id and action; none if the canary changed meanwhile).
    pub async fn tick(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(String, Option<StepAction>)>, AppError> {
        let mut done = Vec::new();
        for canary in self.app.due_canaries(now).await? {
            let Some(scheduled) = canary.next_step_at else {
                continue;
            };
            // `step_canary` steps only if the canary is still due at `scheduled`: a step is
            // never done twice, whoever else evaluates it.
            match self.app.step_canary(&canary, scheduled).await {
                Ok(action) => done.push((canary.id.clone(), action)),
                Err(error) => {
                    tracing::warn!(canary = %canary.id, %error, "cannot evaluate a canary");
                }
            }
        }
        Ok(done)
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
                tracing::warn!(%error, "cannot look for due canaries");
            }
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
            }
        }
        tracing::debug!("canary runner stopped");
    }
}
