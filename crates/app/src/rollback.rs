//! Rollbacks and release history (SPEC §10), load shedding (SPEC §11).

use deploy_safety_api_types::{
    CreateRollbackRequest, EnvironmentListQuery, ReleaseHistory, RollbackList, ServiceQuery,
    SetLoadSheddingRequest,
};
use deploy_safety_core::{
    Action, AuditDecision, Environment, EventType, GateRequest, LoadShedding, Reason, ReasonCode,
    ReleaseChange, ReleaseId, ReleaseRecord, Rollback, RollbackStatus, Timestamp,
};
use deploy_safety_store::{OutboxKind, StoreError, Tx};
use serde_json::json;

use crate::audit::entry;
use crate::canary::where_;
use crate::events::{EXECUTOR, Emitter, rollback_event};
use crate::gate::{gate_action, new_id, record_gated, refuse_precondition};
use crate::{App, AppError, AppSettings, Caller, TxResult, parse_service};

const DEFAULT_LIST: u32 = 50;
const MAX_LIST: u32 = 200;

pub(crate) fn list_limit(limit: Option<u32>) -> Result<u32, AppError> {
    let limit = limit.unwrap_or(DEFAULT_LIST);
    if (1..=MAX_LIST).contains(&limit) {
        Ok(limit)
    } else {
        Err(AppError::invalid(
            "limit",
            format!("must be from 1 to {MAX_LIST}"),
        ))
    }
}

/// The rollback's target now runs in its environment (unless it is an automatic rollback to
/// an unnamed baseline, which names no release).
pub(crate) fn record_release(
    tx: &mut dyn Tx,
    rollback: &Rollback,
    now: Timestamp,
) -> Result<(), StoreError> {
    if rollback.automatic && !rollback.known_target {
        return Ok(());
    }
    tx.insert_release(&ReleaseRecord {
        environment: rollback.environment,
        service: rollback.service.clone(),
        release_id: rollback.to_version.clone(),
        at: now,
        change: ReleaseChange::Rollback,
        reference: rollback.id.clone(),
        by: rollback
            .executed_by
            .clone()
            .unwrap_or_else(|| "system".to_owned()),
    })
}

/// Carries out an allowed rollback: to the executor when one is configured (its outcome comes
/// later), otherwise announced as an event for the deploy system, and done.
pub(crate) fn execute(
    tx: &mut dyn Tx,
    emitter: &mut Emitter<'_>,
    settings: &AppSettings,
    rollback: &mut Rollback,
    by: &str,
    override_id: Option<String>,
    now: Timestamp,
) -> Result<(), StoreError> {
    rollback.executed_at = Some(now);
    rollback.executed_by = Some(by.to_owned());
    rollback.override_id = override_id;
    if settings.executor.is_some() {
        rollback.status = RollbackStatus::Executing;
        tx.update_rollback(rollback)?;
        tx.enqueue(
            OutboxKind::Executor,
            EXECUTOR,
            None,
            Some(&rollback.id),
            now,
        )?;
    } else {
        rollback.status = RollbackStatus::Executed;
        rollback.outcome_at = Some(now);
        rollback.outcome_message =
            Some("announced to the deploy system (no executor configured)".to_owned());
        tx.update_rollback(rollback)?;
        record_release(tx, rollback, now)?;
    }
    emitter.emit(
        tx,
        EventType::RollbackExecuted,
        now,
        Some(rollback.environment),
        rollback_event(rollback),
    )
}

impl App {
    /// `POST /rollback/create` → `pending`.
    pub async fn create_rollback(
        &self,
        caller: &Caller,
        request: CreateRollbackRequest,
    ) -> Result<Rollback, AppError> {
        let from = ReleaseId::parse(&request.from_version)
            .map_err(AppError::invalid_text("fromVersion"))?;
        let to =
            ReleaseId::parse(&request.to_version).map_err(AppError::invalid_text("toVersion"))?;
        if from == to {
            return Err(AppError::invalid(
                "toVersion",
                "must differ from fromVersion",
            ));
        }
        let reason = Reason::parse(&request.reason).map_err(AppError::invalid_text("reason"))?;
        let service = parse_service("service", request.service.as_deref())?;
        let environment = self.environment("environment", request.environment)?.name;
        let require_known = self.settings.require_known_target;
        let caller = caller.clone();
        let clock = self.clock.clone();
        self.store
            .write(move |tx| -> TxResult<Rollback> {
                let now = clock.now();
                let svc = service.as_deref();
                let known_target = tx.release_ran(environment, svc, to.as_str())?;
                let warning = (!known_target).then(|| {
                    format!(
                        "{to} never ran in {} (per its release history)",
                        where_(environment, svc)
                    )
                });
                if !known_target && require_known {
                    return Ok(Err(AppError::Conflict {
                        reason: Some(ReasonCode::UnknownRollbackTarget),
                        message: format!(
                            "{to} never ran in {}; rollback.require_known_target is set",
                            where_(environment, svc)
                        ),
                        hints: Vec::new(),
                    }));
                }
                let rollback = Rollback {
                    id: new_id("rbk", now),
                    environment,
                    service: service.clone(),
                    from_version: from.into_string(),
                    to_version: to.into_string(),
                    reason: reason.into_string(),
                    created_at: now,
                    created_by: caller.name.clone(),
                    known_target,
                    warning,
                    status: RollbackStatus::Pending,
                    automatic: false,
                    canary_id: None,
                    executed_at: None,
                    executed_by: None,
                    override_id: None,
                    outcome_at: None,
                    outcome_message: None,
                };
                tx.insert_rollback(&rollback)?;
                tx.append_audit(
                    entry(
                        &caller,
                        "rollback.create",
                        Some(environment),
                        AuditDecision::Allowed,
                        ReasonCode::Allowed,
                        serde_json::to_value(&rollback).unwrap_or_else(|_| json!({})),
                    ),
                    now,
                )?;
                Ok(Ok(rollback))
            })
            .await?
    }

    /// `POST /rollback/{id}/execute`, gated `deploy.rollback` in the rollback's environment.
    pub async fn execute_rollback(&self, caller: &Caller, id: &str) -> Result<Rollback, AppError> {
        let caller = caller.clone();
        let id = id.to_owned();
        let clock = self.clock.clone();
        let settings = std::sync::Arc::clone(&self.settings);
        self.write_emitting(move |tx, emitter| -> TxResult<Rollback> {
            let now = clock.now();
            let Some(mut rollback) = tx.get_rollback(&id)? else {
                return Ok(Err(AppError::NotFound(format!(
                    "no rollback with id `{id}`"
                ))));
            };
            let known = match settings.environments.require(rollback.environment) {
                Ok(known) => known,
                Err(unknown) => {
                    return Ok(Err(AppError::invalid("environment", unknown.to_string())));
                }
            };
            let request = GateRequest {
                action: Action::Rollback,
                environment: known,
                release_id: Some(&rollback.to_version),
                service: rollback.service.as_deref(),
                start_override_id: None,
            };
            let decision = match gate_action(tx, &caller, &request, &settings.approvals, now)? {
                Ok(decision) => decision,
                Err(blocked) => return Ok(Err(blocked)),
            };
            if rollback.status != RollbackStatus::Pending {
                let refusal = crate::audit::Refusal {
                    reason: ReasonCode::RollbackNotPending,
                    message: format!("rollback {id} is already {}", rollback.status),
                    hints: Vec::new(),
                };
                return refuse_precondition(tx, &caller, &decision, refusal, now);
            }
            execute(
                tx,
                emitter,
                &settings,
                &mut rollback,
                &caller.name,
                decision.override_id.clone(),
                now,
            )?;
            record_gated(
                tx,
                &caller,
                &decision,
                json!({ "rollbackId": rollback.id }),
                now,
            )?;
            Ok(Ok(rollback))
        })
        .await
    }

    /// `GET /rollback/{id}`.
    pub async fn get_rollback(&self, id: &str) -> Result<Rollback, AppError> {
        let key = id.to_owned();
        self.store
            .read(move |tx| tx.get_rollback(&key))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no rollback with id `{id}`")))
    }

    /// `GET /rollbacks`, newest first.
    pub async fn list_rollbacks(
        &self,
        query: EnvironmentListQuery,
    ) -> Result<RollbackList, AppError> {
        let limit = list_limit(query.limit)?;
        let environment = self.environment_filter("environment", query.environment)?;
        let service = parse_service("service", query.service.as_deref())?;
        let rollbacks = self
            .store
            .read(move |tx| tx.list_rollbacks(environment, service.as_deref(), limit))
            .await?;
        Ok(RollbackList { rollbacks })
    }

    /// `GET /releases/{environment}?service=`: the history of (environment, service).
    pub async fn releases(
        &self,
        environment: Environment,
        query: ServiceQuery,
    ) -> Result<ReleaseHistory, AppError> {
        let environment = self.environment("environment", environment)?.name;
        let service = parse_service("service", query.service.as_deref())?;
        let svc = service.clone();
        let releases = self
            .store
            .read(move |tx| tx.releases(environment, svc.as_deref(), 500))
            .await?;
        Ok(ReleaseHistory {
            environment,
            service,
            current: releases.first().map(|r| r.release_id.clone()),
            releases,
        })
    }

    /// `POST /load-shedding`, gated `ops.loadshed` (blocked in lockdown).
    pub async fn set_load_shedding(
        &self,
        caller: &Caller,
        request: SetLoadSheddingRequest,
    ) -> Result<LoadShedding, AppError> {
        let reason = Reason::parse(&request.reason).map_err(AppError::invalid_text("reason"))?;
        let percentage = match (request.enabled, request.percentage) {
            (true, Some(p @ 1..=100)) => p,
            (true, _) => {
                return Err(AppError::invalid(
                    "percentage",
                    "enabled load shedding needs a percentage from 1 to 100",
                ));
            }
            (false, None | Some(0)) => 0,
            (false, Some(_)) => {
                return Err(AppError::invalid(
                    "percentage",
                    "must be 0 or absent when disabled",
                ));
            }
        };
        let service = parse_service("service", request.service.as_deref())?;
        let known = self.environment("environment", request.environment)?;
        let environment = known.name;
        let caller = caller.clone();
        let settings = std::sync::Arc::clone(&self.settings);
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| -> TxResult<LoadShedding> {
            let now = clock.now();
            let request = GateRequest {
                action: Action::LoadShed,
                environment: known,
                release_id: None,
                service: service.as_deref(),
                start_override_id: None,
            };
            let decision = match gate_action(tx, &caller, &request, &settings.approvals, now)? {
                Ok(decision) => decision,
                Err(blocked) => return Ok(Err(blocked)),
            };
            let before = tx.load_shedding(environment, service.as_deref())?;
            let setting = LoadShedding {
                environment,
                service: service.clone(),
                enabled: percentage > 0,
                percentage,
                reason: Some(reason.into_string()),
                updated_at: Some(now),
                updated_by: Some(caller.name.clone()),
            };
            tx.put_load_shedding(&setting)?;
            record_gated(
                tx,
                &caller,
                &decision,
                json!({ "from": { "enabled": before.enabled, "percentage": before.percentage },
                        "to": { "enabled": setting.enabled, "percentage": setting.percentage },
                        "reason": setting.reason }),
                now,
            )?;
            emitter.emit(
                tx,
                EventType::LoadSheddingChanged,
                now,
                Some(environment),
                serde_json::to_value(&setting).unwrap_or_else(|_| json!({})),
            )?;
            Ok(Ok(setting))
        })
        .await
    }

    /// `GET /load-shedding/{environment}?service=`.
    pub async fn load_shedding(
        &self,
        environment: Environment,
        query: ServiceQuery,
    ) -> Result<LoadShedding, AppError> {
        let environment = self.environment("environment", environment)?.name;
        let service = parse_service("service", query.service.as_deref())?;
        Ok(self
            .store
            .read(move |tx| tx.load_shedding(environment, service.as_deref()))
            .await?)
    }
}
