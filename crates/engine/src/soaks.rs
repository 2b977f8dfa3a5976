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
/// Soaks evaluated at once: each may wait for Prometheus, and a slow pull must not make the
/// others late (a late evaluation counts its interval as missed).
const CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct SoakRunner {
    app: App,
}

impl SoakRunner {
    pub fn new(app: App) -> Self {
        SoakRunner { app }
    }

    /// One step: evaluates every soak due at `now`, up to [`CONCURRENCY`] at once; returns
    /// the soak ids with the evaluations recorded (none if the soak changed meanwhile), in
    /// the order the soaks were due.
    pub async fn tick(
        &self,
        now: Timestamp,
    ) -> Result<Vec<(String, Vec<SoakEvaluation>)>, AppError> {
        let due = self.app.due_soaks(now).await?;
        let mut done = Vec::new();
        for batch in due.chunks(CONCURRENCY) {
            let mut running = tokio::task::JoinSet::new();
            for (index, soak) in batch.iter().cloned().enumerate() {
                let Some(scheduled) = soak.next_evaluation_at else {
                    continue;
                };
                let app = self.app.clone();
                running.spawn(async move {
                    let outcome = app.evaluate_soak(&soak, scheduled).await;
                    (index, soak.id, outcome)
                });
            }
            let mut finished = Vec::new();
            while let Some(joined) = running.join_next().await {
                match joined {
                    Ok((index, id, Ok(recorded))) => finished.push((index, id, recorded)),
                    Ok((_, id, Err(error))) => {
                        tracing::warn!(soak = %id, %error, "cannot evaluate a soak");
                    }
                    Err(error) => tracing::warn!(%error, "a soak evaluation panicked"),
                }
            }
            finished.sort_by_key(|(index, _, _)| *index);
            done.extend(finished.into_iter().map(|(_, id, recorded)| (id, recorded)));
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
