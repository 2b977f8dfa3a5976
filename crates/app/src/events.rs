//! Events and the outbox.
//!
//! An event is appended in the same transaction as the change it announces, and so is one
//! outbox entry per webhook that wants it: if the change commits, its announcements are on
//! disk too, and a worker delivers them — at least once, retried with backoff, across
//! restarts — without any request waiting for a webhook.

use std::time::Duration;

use deploy_safety_core::signature::signature_header;
use deploy_safety_core::{
    AuditDecision, AuditDraft, Environment, Event, EventType, ReasonCode, Rollback, RollbackStatus,
    Timestamp,
};
use deploy_safety_store::{OutboxEntry, OutboxKind, StoreError, Tx};
use serde_json::json;

use crate::{App, AppError, AppSettings, TxResult};

/// A receiver of events.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub name: String,
    pub url: String,
    /// Signs each body (`X-Deploy-Safety-Signature: sha256=<hex HMAC-SHA256>`).
    pub secret: String,
    /// The event types it wants; `None`: every type.
    pub events: Option<Vec<EventType>>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("events", &self.events)
            .finish()
    }
}

impl Webhook {
    fn wants(&self, event_type: EventType) -> bool {
        self.events
            .as_ref()
            .is_none_or(|types| types.contains(&event_type))
    }
}

/// Where executed rollbacks go: it answers 2xx when the rollback succeeded, another status
/// when it failed; no answer (or 5xx, 408, 429) is retried.
#[derive(Clone, PartialEq, Eq)]
pub struct Executor {
    pub url: String,
    pub secret: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// How long past its timeout a claimed delivery stays claimed.
const CLAIM_MARGIN_MS: i64 = 30_000;

/// The name outbox entries for the executor carry.
pub(crate) const EXECUTOR: &str = "executor";

/// Backoff after the `attempt`-th failed attempt: 1 s, 2 s, 4 s, ... capped at 5 minutes.
pub fn retry_delay_ms(attempt: u32) -> i64 {
    let exponent = attempt.saturating_sub(1).min(20);
    (1_000i64 << exponent).min(300_000)
}

/// Collects the events a use case announces inside its transaction.
pub(crate) struct Emitter<'s> {
    settings: &'s AppSettings,
    pub(crate) emitted: Vec<Event>,
}

impl<'s> Emitter<'s> {
    pub(crate) fn new(settings: &'s AppSettings) -> Self {
        Emitter {
            settings,
            emitted: Vec::new(),
        }
    }

    /// Appends the event and queues it for every webhook that wants it.
    pub(crate) fn emit(
        &mut self,
        tx: &mut dyn Tx,
        event_type: EventType,
        at: Timestamp,
        environment: Option<Environment>,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        let event = tx.append_event(event_type, at, environment, &data)?;
        for hook in self
            .settings
            .webhooks
            .iter()
            .filter(|h| h.wants(event_type))
        {
            tx.enqueue(OutboxKind::Webhook, &hook.name, Some(event.seq), None, at)?;
        }
        self.emitted.push(event);
        Ok(())
    }
}

/// The outcome of one delivery attempt.
#[derive(Debug)]
pub(crate) enum Attempt {
    Delivered(String),
    /// The receiver answered, and will not change its mind (the executor's verdict).
    Refused(String),
    /// Try again later.
    Retry(String),
}

impl App {
    /// Runs `work` in a write transaction with an [`Emitter`]; once committed, wakes the event
    /// streams.
    pub(crate) async fn write_emitting<T, F>(&self, work: F) -> Result<T, AppError>
    where
        F: for<'s> FnOnce(&mut dyn Tx, &mut Emitter<'s>) -> TxResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let settings = std::sync::Arc::clone(&self.settings);
        let (result, emitted) = self
            .store
            .write(move |tx| {
                let mut emitter = Emitter::new(&settings);
                let result = work(tx, &mut emitter)?;
                Ok((result, emitter.emitted.len()))
            })
            .await?;
        if emitted > 0 {
            self.events_committed.notify_waiters();
        }
        result
    }

    /// Events after `after`, oldest first.
    pub async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<Event>, AppError> {
        Ok(self
            .store
            .read(move |tx| tx.events_after(after, limit))
            .await?)
    }

    /// The seq of the newest event (0 when there is none).
    pub async fn last_event_seq(&self) -> Result<u64, AppError> {
        Ok(self.store.read(|tx| tx.last_event_seq()).await?)
    }

    /// Completes when events may have been committed by this process, or after `timeout`
    /// (events committed elsewhere, e.g. by the CLI or another replica, are found by looking).
    pub async fn wait_for_events(&self, timeout: Duration) {
        let mut stopping = self.shutting_down.subscribe();
        tokio::select! {
            _ = tokio::time::timeout(timeout, self.events_committed.notified()) => {}
            _ = stopping.wait_for(|stopping| *stopping) => {}
        }
    }

    /// Claims the outbox entries due at `now` for this worker: nobody else gets them until
    /// their attempt's timeout has long passed (then, if this worker died, they are due again).
    pub async fn claim_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, AppError> {
        let slowest = self
            .settings
            .webhooks
            .iter()
            .map(|w| w.timeout)
            .chain(self.settings.executor.iter().map(|e| e.timeout))
            // A GitHub callback makes two calls: the installation token, then the callback.
            .chain(self.settings.github.iter().map(|g| g.timeout * 2))
            .max()
            .unwrap_or_default();
        let lease_until = now
            .plus_millis(i64::try_from(slowest.as_millis()).unwrap_or(i64::MAX) + CLAIM_MARGIN_MS);
        Ok(self
            .store
            .write(move |tx| tx.claim_outbox(now, lease_until, limit))
            .await?)
    }

    /// Every outbox entry for one webhook (by name) or for the executor.
    pub async fn deliveries(
        &self,
        kind: OutboxKind,
        target: &str,
    ) -> Result<Vec<OutboxEntry>, AppError> {
        let target = target.to_owned();
        Ok(self
            .store
            .read(move |tx| tx.outbox_for(kind, &target))
            .await?)
    }

    /// One attempt at an outbox entry, and its result recorded: done, failed for good, or
    /// due again after a backoff.
    pub async fn deliver(&self, entry: OutboxEntry) -> Result<(), AppError> {
        let attempt = match entry.kind {
            OutboxKind::Webhook => self.deliver_event(&entry).await?,
            OutboxKind::Executor => self.deliver_rollback(&entry).await?,
            OutboxKind::GithubCallback => self.deliver_github_callback(&entry).await?,
        };
        let max_attempts = self.settings.delivery_attempts.max(1);
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| {
            let now = clock.now();
            let Some(mut current) = tx.get_outbox(entry.id)? else {
                return Ok(Ok(()));
            };
            if current.done_at.is_some() || current.failed_at.is_some() {
                return Ok(Ok(()));
            }
            current.attempts = current.attempts.saturating_add(1);
            let verdict = match attempt {
                Attempt::Delivered(message) => {
                    current.done_at = Some(now);
                    current.next_attempt_at = None;
                    current.last_error = None;
                    Some((true, message))
                }
                Attempt::Refused(message) => {
                    current.failed_at = Some(now);
                    current.next_attempt_at = None;
                    current.last_error = Some(message.clone());
                    Some((false, message))
                }
                // A GitHub answer is retried until GitHub stops waiting (the request's 30 days,
                // checked at each attempt): giving up earlier would leave the job hanging.
                Attempt::Retry(message)
                    if current.attempts >= max_attempts
                        && current.kind != OutboxKind::GithubCallback =>
                {
                    current.failed_at = Some(now);
                    current.next_attempt_at = None;
                    let message = format!("gave up after {} attempts: {message}", current.attempts);
                    current.last_error = Some(message.clone());
                    Some((false, message))
                }
                Attempt::Retry(message) => {
                    if current.kind == OutboxKind::GithubCallback {
                        // GitHub waits on this: an operator should see why it does not arrive.
                        tracing::warn!(delivery = current.id, request = ?current.github_request_id,
                            attempt = current.attempts, %message, "a GitHub callback failed; retrying");
                    }
                    current.next_attempt_at =
                        Some(now.plus_millis(retry_delay_ms(current.attempts)));
                    current.last_error = Some(message);
                    None
                }
            };
            tx.put_outbox(&current)?;
            if let (OutboxKind::GithubCallback, Some((false, message))) = (current.kind, &verdict) {
                // GitHub will wait for an answer that is not coming: say so loudly.
                tracing::error!(delivery = current.id, request = ?current.github_request_id,
                    %message, "a GitHub callback was given up on");
            }
            if let (OutboxKind::Executor, Some((succeeded, message)), Some(id)) =
                (current.kind, verdict, current.rollback_id.as_deref())
            {
                record_rollback_outcome(tx, emitter, id, succeeded, &message, now)?;
            }
            Ok(Ok(()))
        })
        .await
    }

    async fn deliver_event(&self, entry: &OutboxEntry) -> Result<Attempt, AppError> {
        let Some(hook) = self
            .settings
            .webhooks
            .iter()
            .find(|h| h.name == entry.target)
        else {
            return Ok(Attempt::Refused(format!(
                "webhook `{}` is no longer configured",
                entry.target
            )));
        };
        let seq = entry.event_seq.unwrap_or_default();
        let event = self.store.read(move |tx| tx.get_event(seq)).await?;
        let Some(event) = event else {
            return Ok(Attempt::Refused(format!("event {seq} does not exist")));
        };
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let attempt = self
            .post_signed(
                &hook.url,
                &hook.secret,
                hook.timeout,
                entry,
                event.event_type.as_str(),
                body,
            )
            .await;
        Ok(match attempt {
            Ok(status) if (200..300).contains(&status) => {
                Attempt::Delivered(format!("HTTP {status}"))
            }
            Ok(status) => Attempt::Retry(format!("HTTP {status}")),
            Err(error) => Attempt::Retry(error),
        })
    }

    async fn deliver_rollback(&self, entry: &OutboxEntry) -> Result<Attempt, AppError> {
        let Some(executor) = self.settings.executor.clone() else {
            return Ok(Attempt::Refused("no executor is configured".to_owned()));
        };
        let id = entry.rollback_id.clone().unwrap_or_default();
        let rollback = self.store.read(move |tx| tx.get_rollback(&id)).await?;
        let Some(rollback) = rollback else {
            return Ok(Attempt::Refused("the rollback does not exist".to_owned()));
        };
        let body = serde_json::to_vec(&rollback).unwrap_or_default();
        let attempt = self
            .post_signed(
                &executor.url,
                &executor.secret,
                executor.timeout,
                entry,
                "rollback.execute",
                body,
            )
            .await;
        Ok(match attempt {
            Ok(status) if (200..300).contains(&status) => {
                Attempt::Delivered(format!("the executor answered HTTP {status}"))
            }
            Ok(status) if status >= 500 || status == 408 || status == 429 => {
                Attempt::Retry(format!("the executor answered HTTP {status}"))
            }
            Ok(status) => Attempt::Refused(format!("the executor answered HTTP {status}")),
            Err(error) => Attempt::Retry(error),
        })
    }

    /// POSTs `body` signed with `secret`; the status, or why there was none.
    async fn post_signed(
        &self,
        url: &str,
        secret: &str,
        timeout: Duration,
        entry: &OutboxEntry,
        kind: &str,
        body: Vec<u8>,
    ) -> Result<u16, String> {
        let response = self
            .http
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("x-deploy-safety-event", kind)
            .header("x-deploy-safety-delivery", entry.id.to_string())
            .header("x-deploy-safety-attempt", (entry.attempts + 1).to_string())
            .header("x-deploy-safety-signature", signature_header(secret, &body))
            .body(body)
            .send()
            .await;
        match response {
            Ok(response) => Ok(response.status().as_u16()),
            Err(error) if error.is_timeout() => {
                Err(format!("no answer within {} ms", timeout.as_millis()))
            }
            Err(error) => Err(crate::checks::root_cause(&error)),
        }
    }
}

/// Records the executor's verdict on a rollback, and what follows from it.
fn record_rollback_outcome(
    tx: &mut dyn Tx,
    emitter: &mut Emitter<'_>,
    id: &str,
    succeeded: bool,
    message: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(mut rollback) = tx.get_rollback(id)? else {
        return Ok(());
    };
    if rollback.status != RollbackStatus::Executing {
        return Ok(());
    }
    rollback.status = if succeeded {
        RollbackStatus::Succeeded
    } else {
        RollbackStatus::Failed
    };
    rollback.outcome_at = Some(now);
    rollback.outcome_message = Some(message.to_owned());
    tx.update_rollback(&rollback)?;
    if succeeded {
        crate::rollback::record_release(tx, &rollback, now)?;
    }
    tx.append_audit(
        AuditDraft {
            principal: "system".to_owned(),
            role: None,
            action: "rollback.outcome".to_owned(),
            environment: Some(rollback.environment),
            decision: AuditDecision::Recorded,
            reason: ReasonCode::Recorded.as_str().to_owned(),
            details: json!({ "rollbackId": rollback.id, "status": rollback.status, "message": message }),
        },
        now,
    )?;
    emitter.emit(
        tx,
        EventType::RollbackCompleted,
        now,
        Some(rollback.environment),
        rollback_event(&rollback),
    )
}

/// What events say about a rollback.
pub(crate) fn rollback_event(rollback: &Rollback) -> serde_json::Value {
    json!({
        "rollbackId": rollback.id,
        "environment": rollback.environment,
        "service": rollback.service,
        "fromVersion": rollback.from_version,
        "toVersion": rollback.to_version,
        "status": rollback.status,
        "automatic": rollback.automatic,
        "canaryId": rollback.canary_id,
    })
}

#[cfg(test)]
mod tests {
    use super::retry_delay_ms;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(retry_delay_ms(1), 1_000);
        assert_eq!(retry_delay_ms(2), 2_000);
        assert_eq!(retry_delay_ms(5), 16_000);
        assert_eq!(retry_delay_ms(9), 256_000);
        assert_eq!(retry_delay_ms(10), 300_000);
        assert_eq!(retry_delay_ms(1_000), 300_000);
    }
}
