//! Soaks (SPEC §23): start, metrics, abort, read, and the engine's evaluation.
//!
//! The verdicts are `core::Soak::evaluate_due`; this module gathers what it needs (the latest
//! metrics, pushed or pulled from Prometheus, and the incidents opened since the soak started)
//! and records what it decided, with its audit entries and events, in one transaction.

use deploy_safety_api_types::{
    AbortSoakRequest, SoakConfigRequest, SoakList, SoakListQuery, SoakMetricsRequest,
    StartSoakRequest,
};
use deploy_safety_core::{
    AuditDecision, AuditDraft, CanaryMetrics, EventType, MetricsSource, Reason, ReasonCode,
    ReleaseId, Soak, SoakConfig, SoakEvaluation, SoakStatus, Timestamp,
};
use deploy_safety_store::{SoakQuery, StoreError, Tx};
use serde_json::json;

use crate::audit::entry;
use crate::canary::metric;
use crate::events::Emitter;
use crate::gate::new_id;
use crate::parse_service;
use crate::rollback::list_limit;
use crate::{App, AppError, Caller, TxResult};

/// The `[soak]` settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoakSettings {
    /// A production canary start needs a passed soak of the release in staging; the
    /// validation gate `soak` joins the built-in ones. Off by default: part one's flows are
    /// unchanged.
    pub required_before_production: bool,
    /// The defaults of a soak's thresholds.
    pub max_error_rate_percent: f64,
    pub max_latency_increase_percent: f64,
}

impl Default for SoakSettings {
    fn default() -> Self {
        let defaults = SoakConfig::default();
        SoakSettings {
            required_before_production: false,
            max_error_rate_percent: defaults.max_error_rate_percent,
            max_latency_increase_percent: defaults.max_latency_increase_percent,
        }
    }
}

fn config_from(
    request: Option<SoakConfigRequest>,
    settings: &SoakSettings,
) -> Result<SoakConfig, AppError> {
    let defaults = SoakConfig::default();
    let request = request.unwrap_or_default();
    let config = SoakConfig {
        duration_ms: request.duration_ms.unwrap_or(defaults.duration_ms),
        interval_ms: request.interval_ms.unwrap_or(defaults.interval_ms),
        max_error_rate_percent: request
            .max_error_rate_percent
            .unwrap_or(settings.max_error_rate_percent),
        max_latency_increase_percent: request
            .max_latency_increase_percent
            .unwrap_or(settings.max_latency_increase_percent),
    };
    config
        .check()
        .map_err(|(field, message)| AppError::invalid(field, message))?;
    Ok(config)
}

fn soak_entry(
    soak: &Soak,
    action: &str,
    reason: ReasonCode,
    details: serde_json::Value,
) -> AuditDraft {
    AuditDraft {
        principal: "system".to_owned(),
        role: None,
        action: action.to_owned(),
        environment: Some(soak.environment),
        decision: AuditDecision::Recorded,
        reason: reason.as_str().to_owned(),
        details,
    }
}

/// What events and audit entries say about a soak.
fn summary(soak: &Soak) -> serde_json::Value {
    json!({
        "soakId": soak.id,
        "releaseId": soak.release_id,
        "environment": soak.environment,
        "service": soak.service,
        "status": soak.status,
        "startedAt": soak.started_at,
        "endsAt": soak.ends_at,
        "result": soak.result,
    })
}

fn evaluation_details(soak: &Soak, evaluation: &SoakEvaluation) -> serde_json::Value {
    json!({
        "soakId": soak.id,
        "releaseId": soak.release_id,
        "environment": soak.environment,
        "service": soak.service,
        "evaluation": evaluation,
    })
}

fn not_running(soak: &Soak) -> AppError {
    AppError::Conflict {
        reason: Some(ReasonCode::SoakNotRunning),
        message: format!("soak {} has ended ({})", soak.id, soak.status),
        hints: vec![format!(
            "Start a new soak: deploy-safety soak start --release {} --environment {}",
            soak.release_id, soak.environment
        )],
    }
}

impl App {
    /// `POST /soaks` (any role): a running soak, evaluated every interval from now.
    pub async fn start_soak(
        &self,
        caller: &Caller,
        request: StartSoakRequest,
    ) -> Result<Soak, AppError> {
        let release =
            ReleaseId::parse(&request.release_id).map_err(AppError::invalid_text("releaseId"))?;
        let service = parse_service("service", request.service.as_deref())?;
        let deployment = match request.deployment_id.as_deref() {
            Some(d) => ReleaseId::parse(d).map_err(AppError::invalid_text("deploymentId"))?,
            None => release.clone(),
        };
        let config = config_from(request.config, &self.settings.soak)?;
        let environment = self.environment("environment", request.environment)?.name;
        let caller = caller.clone();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| -> TxResult<Soak> {
            let now = clock.now();
            let soak = Soak::start(
                new_id("sok", now),
                release.into_string(),
                environment,
                service,
                deployment.into_string(),
                config,
                &caller.name,
                now,
            );
            // Checked before inserting (writes are serialized, so nothing can come between):
            // a failed insert would abort the whole batch's transaction on PostgreSQL.
            if let Some(running) =
                tx.running_soak(&soak.release_id, environment, soak.service.as_deref())?
            {
                let message = format!(
                    "release {} already has a running soak in {}{} ({}, ends {})",
                    soak.release_id,
                    environment,
                    soak.service.as_deref().map(|s| format!(" for {s}")).unwrap_or_default(),
                    running.id,
                    running.ends_at
                );
                tx.append_audit(
                    entry(
                        &caller,
                        "soak.start",
                        Some(environment),
                        AuditDecision::Denied,
                        ReasonCode::SoakAlreadyRunning,
                        json!({ "message": message, "releaseId": soak.release_id, "service": soak.service, "running": running.id }),
                    ),
                    now,
                )?;
                return Ok(Err(AppError::Conflict {
                    reason: Some(ReasonCode::SoakAlreadyRunning),
                    message,
                    hints: vec![format!(
                        "Wait for it to end (deploy-safety soak watch {}), or abort it: deploy-safety soak abort {} --reason ...",
                        running.id, running.id
                    )],
                }));
            }
            tx.insert_soak(&soak)?;
            tx.append_audit(
                entry(
                    &caller,
                    "soak.start",
                    Some(environment),
                    AuditDecision::Allowed,
                    ReasonCode::Allowed,
                    json!({ "soakId": soak.id, "releaseId": soak.release_id, "service": soak.service, "config": soak.config, "endsAt": soak.ends_at }),
                ),
                now,
            )?;
            emitter.emit(tx, EventType::SoakStarted, now, Some(environment), summary(&soak))?;
            Ok(Ok(soak))
        })
        .await
    }

    /// `POST /soaks/{id}/metrics`: the running soak's latest metrics (not audited: the
    /// evaluations that use them are).
    pub async fn push_soak_metrics(
        &self,
        id: &str,
        request: SoakMetricsRequest,
    ) -> Result<Soak, AppError> {
        let error_rate = metric("errorRatePercent", request.error_rate_percent, Some(100.0))?;
        let latency = metric("latencyP99Ms", request.latency_p99_ms, None)?;
        let baseline = metric(
            "baselineLatencyP99Ms",
            request.baseline_latency_p99_ms,
            None,
        )?;
        let id = id.to_owned();
        let clock = self.clock.clone();
        self.store
            .write(move |tx| -> TxResult<Soak> {
                let Some(mut soak) = tx.get_soak(&id)? else {
                    return Ok(Err(AppError::NotFound(format!("no soak {id}"))));
                };
                if soak.status != SoakStatus::Running {
                    return Ok(Err(not_running(&soak)));
                }
                soak.latest_metrics = Some(CanaryMetrics {
                    error_rate_percent: error_rate,
                    latency_p99_ms: latency,
                    baseline_latency_p99_ms: baseline,
                    cpu_percent: None,
                    memory_percent: None,
                    received_at: clock.now(),
                    source: MetricsSource::Push,
                });
                tx.update_soak(&soak)?;
                Ok(Ok(soak))
            })
            .await?
    }

    /// `POST /soaks/{id}/abort` (any role): ends a running soak, `aborted`.
    pub async fn abort_soak(
        &self,
        caller: &Caller,
        id: &str,
        request: AbortSoakRequest,
    ) -> Result<Soak, AppError> {
        let reason = Reason::parse(&request.reason).map_err(AppError::invalid_text("reason"))?;
        let id = id.to_owned();
        let caller = caller.clone();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| -> TxResult<Soak> {
            let now = clock.now();
            let Some(soak) = tx.get_soak(&id)? else {
                return Ok(Err(AppError::NotFound(format!("no soak {id}"))));
            };
            if soak.status != SoakStatus::Running {
                return Ok(Err(not_running(&soak)));
            }
            let aborted = soak.abort(&caller.name, reason.as_str(), now);
            tx.update_soak(&aborted)?;
            tx.append_audit(
                entry(
                    &caller,
                    "soak.abort",
                    Some(aborted.environment),
                    AuditDecision::Allowed,
                    ReasonCode::Allowed,
                    json!({ "soakId": aborted.id, "releaseId": aborted.release_id, "service": aborted.service, "reason": reason.as_str() }),
                ),
                now,
            )?;
            emitter.emit(tx, EventType::SoakAborted, now, Some(aborted.environment), summary(&aborted))?;
            Ok(Ok(aborted))
        })
        .await
    }

    /// `GET /soaks/{id}`.
    pub async fn get_soak(&self, id: &str) -> Result<Soak, AppError> {
        let key = id.to_owned();
        self.store
            .read(move |tx| tx.get_soak(&key))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no soak {id}")))
    }

    /// `GET /soaks`, newest first.
    pub async fn list_soaks(&self, query: SoakListQuery) -> Result<SoakList, AppError> {
        let limit = list_limit(query.limit)?;
        let query = SoakQuery {
            release_id: query.release_id,
            environment: self.environment_filter("environment", query.environment)?,
            service: parse_service("service", query.service.as_deref())?,
            status: query.status,
            limit,
        };
        let soaks = self.store.read(move |tx| tx.list_soaks(&query)).await?;
        Ok(SoakList { soaks })
    }

    /// Running soaks due for evaluation at `now`.
    pub async fn due_soaks(&self, now: Timestamp) -> Result<Vec<Soak>, AppError> {
        Ok(self.store.read(move |tx| tx.due_soaks(now)).await?)
    }

    /// Evaluates `soak`, due at `scheduled`: pulls its metrics from Prometheus if configured
    /// (I/O, outside any transaction), then in one transaction re-reads the soak, evaluates
    /// every interval due (core), and records each evaluation and the result with their audit
    /// entries and events. If the soak changed since it was read (evaluated elsewhere,
    /// aborted), nothing happens: an evaluation is never made twice. Returns the evaluations
    /// recorded.
    pub async fn evaluate_soak(
        &self,
        soak: &Soak,
        scheduled: Timestamp,
    ) -> Result<Vec<SoakEvaluation>, AppError> {
        // The evaluation's moment is when it was taken up: a slow Prometheus must not make an
        // interval look missed (as if deploy-safety had not been running).
        let taken_up = self.clock.now();
        let pulled = self
            .pull_metrics(
                soak.environment,
                &soak.release_id,
                &soak.deployment_id,
                taken_up,
            )
            .await;
        let id = soak.id.clone();
        self.write_emitting(move |tx, emitter| -> TxResult<Vec<SoakEvaluation>> {
            let now = taken_up;
            let Some(mut current) = tx.get_soak(&id)? else {
                return Ok(Ok(Vec::new()));
            };
            if current.status != SoakStatus::Running
                || current.next_evaluation_at != Some(scheduled)
            {
                return Ok(Ok(Vec::new()));
            }
            if let Some(metrics) = pulled {
                current.latest_metrics = Some(metrics);
            }
            let incidents = tx.incidents_opened_since(current.started_at)?;
            let step = current.evaluate_due(current.latest_metrics.as_ref(), &incidents, now);
            tx.update_soak(&step.soak)?;
            record_step(tx, emitter, &step.soak, &step.recorded, step.ended, now)?;
            Ok(Ok(step.recorded))
        })
        .await
    }
}

/// Audits and announces each evaluation, and the result when the soak ended.
fn record_step(
    tx: &mut dyn Tx,
    emitter: &mut Emitter<'_>,
    soak: &Soak,
    recorded: &[SoakEvaluation],
    ended: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    for evaluation in recorded {
        let details = evaluation_details(soak, evaluation);
        tx.append_audit(
            soak_entry(
                soak,
                "soak.evaluate",
                ReasonCode::SoakEvaluation,
                details.clone(),
            ),
            now,
        )?;
        emitter.emit(
            tx,
            EventType::SoakEvaluated,
            now,
            Some(soak.environment),
            details,
        )?;
    }
    if ended {
        let (reason, event) = match soak.status {
            SoakStatus::Passed => (ReasonCode::SoakPassed, EventType::SoakPassed),
            SoakStatus::Failed => (ReasonCode::SoakFailed, EventType::SoakFailed),
            _ => (ReasonCode::SoakInconclusive, EventType::SoakInconclusive),
        };
        let mut details = summary(soak);
        details["evaluations"] = json!(soak.evaluations.len());
        if let Some(last) = soak.evaluations.last() {
            details["lastEvaluation"] = json!(last);
        }
        tx.append_audit(
            soak_entry(soak, "soak.finish", reason, details.clone()),
            now,
        )?;
        emitter.emit(tx, event, now, Some(soak.environment), details)?;
    }
    Ok(())
}
