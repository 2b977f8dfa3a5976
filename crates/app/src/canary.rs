//! Canary deployments (SPEC §9): start, status, metrics, promotion, and the engine's step.

use deploy_safety_api_types::{
    CanaryConfigRequest, CanaryList, CanaryMetricsRequest, CanaryView, EnvironmentListQuery,
    PromoteCanaryRequest, ServiceQuery, StartCanaryRequest,
};
use deploy_safety_core::{
    Action, AuditDecision, AuditDraft, Canary, CanaryConfig, CanaryMetrics, CanaryPhase,
    Environment, EventType, GateRequest, MetricsSource, ReasonCode, ReleaseChange, ReleaseId,
    ReleaseRecord, Rollback, RollbackStatus, StepAction, Timestamp, evaluate,
};
use deploy_safety_store::{StoreError, Tx};
use serde_json::json;

use crate::audit::Refusal;
use crate::events::Emitter;
use crate::gate::{decide_in, gate_action, new_id, record_gated, refuse_precondition};
use crate::rollback::{execute, list_limit};
use crate::{App, AppError, AppSettings, Caller, TxResult, parse_service};

/// Whether a release passed (a validation, a soak) in an environment, for a service.
type PassedIn = fn(&mut dyn Tx, &str, Environment, Option<&str>) -> Result<bool, StoreError>;

/// "production" or "payments/api in production", for messages.
pub(crate) fn where_(environment: Environment, service: Option<&str>) -> String {
    match service {
        None => environment.to_string(),
        Some(service) => format!("{service} in {environment}"),
    }
}

/// ` --service NAME` for a CLI hint, or nothing.
pub(crate) fn service_flag(service: Option<&str>) -> String {
    service
        .map(|s| format!(" --service {s}"))
        .unwrap_or_default()
}

fn config_from(request: Option<CanaryConfigRequest>) -> Result<CanaryConfig, AppError> {
    let defaults = CanaryConfig::default();
    let request = request.unwrap_or_default();
    let config = CanaryConfig {
        initial_percentage: request
            .initial_percentage
            .unwrap_or(defaults.initial_percentage),
        increment_percentage: request
            .increment_percentage
            .unwrap_or(defaults.increment_percentage),
        increment_interval: request
            .increment_interval
            .unwrap_or(defaults.increment_interval),
        max_percentage: request.max_percentage.unwrap_or(defaults.max_percentage),
        failure_threshold: request
            .failure_threshold
            .unwrap_or(defaults.failure_threshold),
    };
    config
        .check()
        .map_err(|(field, message)| AppError::invalid(field, message))?;
    Ok(config)
}

/// A pushed metric: a number of at least 0 (at most `max`), or absent.
pub(crate) fn metric(
    field: &str,
    value: Option<f64>,
    max: Option<f64>,
) -> Result<Option<f64>, AppError> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => {
            Err(AppError::invalid(field, "must be a number of at least 0"))
        }
        Some(v) if max.is_some_and(|m| v > m) => Err(AppError::invalid(
            field,
            format!("must be at most {}", max.unwrap_or_default()),
        )),
        other => Ok(other),
    }
}

fn weight_event(canary: &Canary, from: u8) -> serde_json::Value {
    json!({
        "canaryId": canary.id,
        "environment": canary.environment,
        "service": canary.service,
        "releaseId": canary.release_id,
        "deploymentId": canary.deployment_id,
        "fromPercentage": from,
        "percentage": canary.current_percentage,
        "phase": canary.phase,
        "status": canary.status,
    })
}

fn system_entry(
    canary: &Canary,
    action: &str,
    reason: ReasonCode,
    details: serde_json::Value,
) -> AuditDraft {
    AuditDraft {
        principal: "system".to_owned(),
        role: None,
        action: action.to_owned(),
        environment: Some(canary.environment),
        decision: AuditDecision::Recorded,
        reason: reason.as_str().to_owned(),
        details,
    }
}

impl App {
    fn canary_view(&self, canary: Canary) -> CanaryView {
        let now = self.clock.now();
        let current_evaluation = canary.phase.is_active().then(|| {
            let scheduled = canary.next_step_at.unwrap_or(now);
            evaluate(
                canary.latest_metrics.as_ref(),
                &self.settings.canary_thresholds,
                canary.fresh_since(scheduled),
                now,
            )
        });
        CanaryView {
            canary,
            current_evaluation,
        }
    }

    /// `POST /canary/start`: the gate first (403), then staging first and one active canary
    /// per environment (409).
    pub async fn start_canary(
        &self,
        caller: &Caller,
        request: StartCanaryRequest,
    ) -> Result<CanaryView, AppError> {
        let release =
            ReleaseId::parse(&request.release_id).map_err(AppError::invalid_text("releaseId"))?;
        let deployment = ReleaseId::parse(&request.deployment_id)
            .map_err(AppError::invalid_text("deploymentId"))?;
        let service = parse_service("service", request.service.as_deref())?;
        let config = config_from(request.config)?;
        let known = self.environment("environment", request.environment)?;
        let environment = known.name;
        let promotes_from = self
            .settings
            .environments
            .promotes_from(environment)
            .to_vec();
        let caller = caller.clone();
        let clock = self.clock.clone();
        let settings = std::sync::Arc::clone(&self.settings);
        let canary = self
            .write_emitting(move |tx, emitter| -> TxResult<Canary> {
                let now = clock.now();
                let gate = GateRequest {
                    action: Action::CanaryStart,
                    environment: known,
                    release_id: Some(release.as_str()),
                    service: service.as_deref(),
                    start_override_id: None,
                };
                let decision = match gate_action(tx, &caller, &gate, &settings.approvals, now)? {
                    Ok(decision) => decision,
                    Err(blocked) => return Ok(Err(blocked)),
                };
                let svc = service.as_deref();
                let passed_first = |tx: &mut dyn Tx, passed: PassedIn| -> Result<bool, StoreError> {
                    for from in &promotes_from {
                        if passed(tx, release.as_str(), *from, svc)? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                };
                let first = deploy_safety_core::validation::one_of(&promotes_from);
                let first_flag = promotes_from.first().map_or("staging", Environment::as_str);
                if known.is_production()
                    && !passed_first(tx, |tx, r, e, s| tx.release_passed_validation(r, e, s))?
                {
                    let refusal = Refusal {
                        reason: ReasonCode::StagingValidationRequired,
                        message: format!(
                            "release {release} has no passed validation in {first}: validate it there first"
                        ),
                        hints: vec![format!(
                            "Validate it in {first}: deploy-safety validate start --release {release} --environment {first_flag}{} (POST /api/deploy-safety/validations/start), then run it.",
                            service_flag(svc)
                        )],
                    };
                    return refuse_precondition(tx, &caller, &decision, refusal, now);
                }
                if known.is_production()
                    && settings.soak.required_before_production
                    && !passed_first(tx, |tx, r, e, s| tx.release_passed_soak(r, e, s))?
                {
                    let refusal = Refusal {
                        reason: ReasonCode::SoakRequired,
                        message: format!(
                            "release {release} has not passed a soak in {first}: production needs one first ([soak] required_before_production)"
                        ),
                        hints: vec![format!(
                            "Soak it in {first}: deploy-safety soak start --release {release} --environment {first_flag}{} (POST /api/deploy-safety/soaks), then deploy-safety soak watch ID.",
                            service_flag(svc)
                        )],
                    };
                    return refuse_precondition(tx, &caller, &decision, refusal, now);
                }
                if let Some(active) = tx.active_canary(environment, svc)? {
                    let refusal = Refusal {
                        reason: ReasonCode::CanaryAlreadyActive,
                        message: format!(
                            "{} already has an active canary ({}, release {}); promote it or wait for it to finish",
                            where_(environment, svc), active.id, active.release_id
                        ),
                        hints: Vec::new(),
                    };
                    return refuse_precondition(tx, &caller, &decision, refusal, now);
                }
                let previous = tx.releases(environment, svc, 1)?.into_iter().next().map(|r| r.release_id);
                let canary = Canary::start(
                    new_id("cny", now),
                    environment,
                    service.clone(),
                    release.into_string(),
                    deployment.into_string(),
                    config,
                    &caller.name,
                    decision.override_id.clone(),
                    previous,
                    now,
                );
                tx.insert_canary(&canary)?;
                record_gated(tx, &caller, &decision, json!({ "canaryId": canary.id, "config": canary.config }), now)?;
                emitter.emit(tx, EventType::CanaryStarted, now, Some(environment), weight_event(&canary, 0))?;
                emitter.emit(tx, EventType::CanaryWeightChanged, now, Some(environment), weight_event(&canary, 0))?;
                Ok(Ok(canary))
            })
            .await?;
        Ok(self.canary_view(canary))
    }

    /// `GET /canary/{environment}?service=`: the active canary of (environment, service), else
    /// the most recent (404 if none). Without a service, the canary that names none.
    pub async fn canary_status(
        &self,
        environment: Environment,
        query: ServiceQuery,
    ) -> Result<CanaryView, AppError> {
        let environment = self.environment("environment", environment)?.name;
        let service = parse_service("service", query.service.as_deref())?;
        let svc = service.clone();
        let found = self
            .store
            .read(
                move |tx| match tx.active_canary(environment, svc.as_deref())? {
                    Some(active) => Ok(Some(active)),
                    None => tx.latest_canary(environment, svc.as_deref()),
                },
            )
            .await?;
        let canary = found.ok_or_else(|| {
            AppError::NotFound(format!(
                "no canary in {}",
                where_(environment, service.as_deref())
            ))
        })?;
        Ok(self.canary_view(canary))
    }

    /// One canary by its id, with its current evaluation (the dashboard's canary page).
    pub async fn canary_by_id(&self, id: &str) -> Result<CanaryView, AppError> {
        let owned = id.to_owned();
        let canary = self
            .store
            .read(move |tx| tx.get_canary(&owned))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no canary with id `{id}`")))?;
        Ok(self.canary_view(canary))
    }

    /// `GET /canaries`, newest first.
    pub async fn list_canaries(&self, query: EnvironmentListQuery) -> Result<CanaryList, AppError> {
        let limit = list_limit(query.limit)?;
        let environment = self.environment_filter("environment", query.environment)?;
        let service = parse_service("service", query.service.as_deref())?;
        let canaries = self
            .store
            .read(move |tx| tx.list_canaries(environment, service.as_deref(), limit))
            .await?;
        Ok(CanaryList { canaries })
    }

    /// `POST /canary/{environment}/metrics`: the active canary's latest metrics.
    pub async fn push_canary_metrics(
        &self,
        environment: Environment,
        query: ServiceQuery,
        request: CanaryMetricsRequest,
    ) -> Result<CanaryView, AppError> {
        let environment = self.environment("environment", environment)?.name;
        let service = parse_service("service", query.service.as_deref())?;
        let pushed = move |now| -> Result<CanaryMetrics, AppError> {
            Ok(CanaryMetrics {
                error_rate_percent: metric(
                    "errorRatePercent",
                    request.error_rate_percent,
                    Some(100.0),
                )?,
                latency_p99_ms: metric("latencyP99Ms", request.latency_p99_ms, None)?,
                baseline_latency_p99_ms: metric(
                    "baselineLatencyP99Ms",
                    request.baseline_latency_p99_ms,
                    None,
                )?,
                cpu_percent: metric("cpuPercent", request.cpu_percent, None)?,
                memory_percent: metric("memoryPercent", request.memory_percent, Some(100.0))?,
                received_at: now,
                source: MetricsSource::Push,
            })
        };
        // Validate before touching the store; the time is set when it is recorded.
        pushed(Timestamp::UNIX_EPOCH)?;
        let clock = self.clock.clone();
        let canary = self
            .store
            .write(move |tx| -> TxResult<Canary> {
                let now = clock.now();
                let Some(mut canary) = tx.active_canary(environment, service.as_deref())? else {
                    return Ok(Err(AppError::NotFound(format!(
                        "no active canary in {}",
                        where_(environment, service.as_deref())
                    ))));
                };
                canary.latest_metrics = match pushed(now) {
                    Ok(metrics) => Some(metrics),
                    Err(e) => return Ok(Err(e)),
                };
                tx.update_canary(&canary)?;
                Ok(Ok(canary))
            })
            .await??;
        Ok(self.canary_view(canary))
    }

    /// `POST /canary/promote`, gated `deploy.canary.promote`: to the maximum at once.
    pub async fn promote_canary(
        &self,
        caller: &Caller,
        request: PromoteCanaryRequest,
    ) -> Result<CanaryView, AppError> {
        let service = parse_service("service", request.service.as_deref())?;
        let known = self.environment("environment", request.environment)?;
        let environment = known.name;
        let caller = caller.clone();
        let settings = std::sync::Arc::clone(&self.settings);
        let clock = self.clock.clone();
        let canary = self
            .write_emitting(move |tx, emitter| -> TxResult<Canary> {
                let now = clock.now();
                let Some(canary) = tx.active_canary(environment, service.as_deref())? else {
                    return Ok(Err(AppError::NotFound(format!(
                        "no active canary in {}",
                        where_(environment, service.as_deref())
                    ))));
                };
                if let Some(meant) = &request.canary_id
                    && *meant != canary.id
                {
                    return Ok(Err(AppError::Conflict {
                        reason: None,
                        message: format!(
                            "canary {meant} is not the active canary in {}: {} (release {}) is",
                            where_(environment, service.as_deref()),
                            canary.id,
                            canary.release_id
                        ),
                        hints: vec!["look at the active canary before promoting it".to_owned()],
                    }));
                }
                let gate = GateRequest {
                    action: Action::CanaryPromote,
                    environment: known,
                    release_id: Some(&canary.release_id),
                    service: canary.service.as_deref(),
                    start_override_id: canary.start_override_id.as_deref(),
                };
                let decision = match gate_action(tx, &caller, &gate, &settings.approvals, now)? {
                    Ok(decision) => decision,
                    Err(blocked) => return Ok(Err(blocked)),
                };
                let from = canary.current_percentage;
                let promoted = canary.promote(&caller.name, now);
                tx.update_canary(&promoted)?;
                tx.insert_release(&ReleaseRecord {
                    environment,
                    service: promoted.service.clone(),
                    release_id: promoted.release_id.clone(),
                    at: now,
                    change: ReleaseChange::CanaryPromoted,
                    reference: promoted.id.clone(),
                    by: caller.name.clone(),
                })?;
                record_gated(
                    tx,
                    &caller,
                    &decision,
                    json!({ "canaryId": promoted.id, "fromPercentage": from }),
                    now,
                )?;
                emitter.emit(
                    tx,
                    EventType::CanaryWeightChanged,
                    now,
                    Some(environment),
                    weight_event(&promoted, from),
                )?;
                emitter.emit(
                    tx,
                    EventType::CanaryPromoted,
                    now,
                    Some(environment),
                    weight_event(&promoted, from),
                )?;
                Ok(Ok(promoted))
            })
            .await?;
        Ok(self.canary_view(canary))
    }

    /// Active canaries due for evaluation at `now`.
    pub async fn due_canaries(&self, now: Timestamp) -> Result<Vec<Canary>, AppError> {
        Ok(self.store.read(move |tx| tx.due_canaries(now)).await?)
    }

    /// One evaluation of `canary`, due at `scheduled`: pulls its metrics from Prometheus if
    /// configured, then in one transaction judges them, asks the gate about a step up, steps,
    /// and records and announces the outcome. If the canary has changed since it was read
    /// (another step, a promotion), nothing happens: a step is never done twice.
    pub async fn step_canary(
        &self,
        canary: &Canary,
        scheduled: Timestamp,
    ) -> Result<Option<StepAction>, AppError> {
        let pulled = self
            .pull_metrics(
                canary.environment,
                &canary.release_id,
                &canary.deployment_id,
                self.clock.now(),
            )
            .await;
        let id = canary.id.clone();
        let clock = self.clock.clone();
        let settings = std::sync::Arc::clone(&self.settings);
        self.write_emitting(move |tx, emitter| -> TxResult<Option<StepAction>> {
            let now = clock.now();
            let Some(mut current) = tx.get_canary(&id)? else {
                return Ok(Ok(None));
            };
            if !current.phase.is_active() || current.next_step_at != Some(scheduled) {
                return Ok(Ok(None));
            }
            if let Some(metrics) = pulled {
                current.latest_metrics = Some(metrics);
            }
            let evaluation = evaluate(
                current.latest_metrics.as_ref(),
                &settings.canary_thresholds,
                current.fresh_since_at(scheduled, now),
                now,
            );
            // A canary whose environment left the settings file takes no step: new actions
            // there are refused (SPEC §15), and its record stays as it was.
            let Some(known) = settings.environments.resolve(current.environment) else {
                return Ok(Ok(None));
            };
            let gate = GateRequest {
                action: Action::CanaryPromote,
                environment: known,
                release_id: Some(&current.release_id),
                service: current.service.as_deref(),
                start_override_id: current.start_override_id.as_deref(),
            };
            let decision = decide_in(tx, &gate, &settings.approvals, now)?;
            let (next, action) = current.step(evaluation, &decision, now);
            tx.update_canary(&next)?;
            record_step(
                tx, emitter, &settings, &current, &next, action, &decision, now,
            )?;
            Ok(Ok(Some(action)))
        })
        .await
    }
}

/// Records, announces and carries out what one step did.
#[allow(clippy::too_many_arguments)]
fn record_step(
    tx: &mut dyn Tx,
    emitter: &mut Emitter<'_>,
    settings: &AppSettings,
    before: &Canary,
    after: &Canary,
    action: StepAction,
    decision: &deploy_safety_core::Decision,
    now: Timestamp,
) -> Result<(), StoreError> {
    let environment = after.environment;
    let step = after.steps.last();
    let (reason, audit_action) = match action {
        StepAction::RolledBack => (ReasonCode::AutomaticRollback, "deploy.canary.rollback"),
        _ => (ReasonCode::CanaryStep, "deploy.canary.step"),
    };
    tx.append_audit(
        system_entry(after, audit_action, reason, json!({
            "canaryId": after.id,
            "service": after.service,
            "releaseId": after.release_id,
            "action": action,
            "fromPercentage": before.current_percentage,
            "toPercentage": after.current_percentage,
            "status": after.status,
            "evaluation": step.and_then(|s| s.evaluation.clone()),
            "gate": { "allowed": decision.allowed, "reason": decision.reason, "overrideId": decision.override_id },
        })),
        now,
    )?;
    match action {
        StepAction::SteppedUp | StepAction::Completed => {
            if let Some(override_id) = &decision.override_id {
                tx.record_override_use(override_id, now)?;
            }
            emitter.emit(
                tx,
                EventType::CanaryWeightChanged,
                now,
                Some(environment),
                weight_event(after, before.current_percentage),
            )?;
            if action == StepAction::Completed {
                tx.insert_release(&ReleaseRecord {
                    environment,
                    service: after.service.clone(),
                    release_id: after.release_id.clone(),
                    at: now,
                    change: ReleaseChange::CanaryCompleted,
                    reference: after.id.clone(),
                    by: "system".to_owned(),
                })?;
                emitter.emit(
                    tx,
                    EventType::CanaryCompleted,
                    now,
                    Some(environment),
                    weight_event(after, before.current_percentage),
                )?;
            }
        }
        StepAction::Paused if before.phase != CanaryPhase::Paused => {
            emitter.emit(
                tx,
                EventType::CanaryPaused,
                now,
                Some(environment),
                json!({
                    "canaryId": after.id,
                    "environment": environment,
                    "service": after.service,
                    "percentage": after.current_percentage,
                    "reason": after.paused_reason,
                }),
            )?;
        }
        StepAction::RolledBack => {
            emitter.emit(
                tx,
                EventType::CanaryWeightChanged,
                now,
                Some(environment),
                weight_event(after, before.current_percentage),
            )?;
            emitter.emit(
                tx,
                EventType::CanaryRolledBack,
                now,
                Some(environment),
                weight_event(after, before.current_percentage),
            )?;
            // The fail-safe: a rollback record, executed at once without the gate, to the
            // release that ran before (or, with none on record, to the deploy system's
            // baseline).
            let (to_version, warning) = match &after.previous_release {
                Some(previous) => (previous.clone(), None),
                None => (
                    "baseline".to_owned(),
                    Some(format!(
                        "no release is on record in {} before this canary: the deploy system returns its traffic to the baseline",
                        where_(environment, after.service.as_deref())
                    )),
                ),
            };
            let mut rollback = Rollback {
                id: new_id("rbk", now),
                environment,
                service: after.service.clone(),
                from_version: after.release_id.clone(),
                known_target: after.previous_release.is_some(),
                to_version,
                reason: format!(
                    "automatic: canary {} unhealthy {} time(s) in a row",
                    after.id, after.consecutive_unhealthy
                ),
                created_at: now,
                created_by: "system".to_owned(),
                warning,
                status: RollbackStatus::Pending,
                automatic: true,
                canary_id: Some(after.id.clone()),
                executed_at: None,
                executed_by: None,
                override_id: None,
                outcome_at: None,
                outcome_message: None,
            };
            tx.insert_rollback(&rollback)?;
            execute(tx, emitter, settings, &mut rollback, "system", None, now)?;
        }
        _ => {}
    }
    Ok(())
}
