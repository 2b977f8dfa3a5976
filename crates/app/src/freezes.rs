//! Freezes (SPEC §16): created and ended by the security team and eng-leads, read by anyone,
//! found by the gate for every decision, and announced by the engine as their windows open and
//! close.

use std::sync::Arc;

use deploy_safety_api_types::{
    CreateFreezeRequest, EndFreezeRequest, FreezeList, FreezeListQuery, FreezeView,
};
use deploy_safety_core::{
    AuditDecision, AuditDraft, DEFAULT_ACTIONS, EventType, Freeze, FreezeIndex, Name, Reason,
    ReasonCode, Role, ServiceName, Timestamp, validate_window,
};
use deploy_safety_store::{FreezeRecord, StoreError, Tx};
use serde_json::json;

use crate::audit::{Refusal, entry, parse_time, refuse};
use crate::events::Emitter;
use crate::gate::new_id;
use crate::{App, AppError, Caller, TxResult};

const DEFAULT_LIST: u32 = 1_000;
const MAX_LIST: u32 = 5_000;
/// Freezes whose windows are looked at in one engine step.
const DUE_BATCH: u32 = 500;

/// The freezes in force at `now` that could stop `action` in (environment, service): the
/// gate's input, found by key.
pub(crate) fn freezes_in_force(
    tx: &mut dyn Tx,
    action: deploy_safety_core::Action,
    environment: deploy_safety_core::Environment,
    service: Option<&str>,
    now: Timestamp,
) -> Result<FreezeIndex, StoreError> {
    let found = tx.freezes_for(action, environment, service, now)?;
    Ok(FreezeIndex::active_at(found.into_iter().map(Arc::new), now))
}

/// A freeze and where it stands at `now`.
pub(crate) fn view(freeze: Freeze, now: Timestamp) -> FreezeView {
    let window = freeze.window_at(now);
    let next = window
        .is_none()
        .then(|| freeze.next_window_after(now))
        .flatten();
    FreezeView {
        active: window.is_some(),
        active_until: window.and_then(|w| w.until),
        next_start: next.map(|w| w.start),
        next_end: next.and_then(|w| w.until),
        over: freeze.is_over_at(now),
        freeze,
    }
}

/// When the engine must next look at `freeze`: the end of its window in force, or the start
/// of its next one.
fn next_check(freeze: &Freeze, now: Timestamp) -> Option<Timestamp> {
    match freeze.window_at(now) {
        Some(window) => window.until,
        None => freeze.next_window_after(now).map(|w| w.start),
    }
}

fn freeze_event(
    freeze: &Freeze,
    window_start: Timestamp,
    until: Option<Timestamp>,
) -> serde_json::Value {
    json!({
        "freezeId": freeze.id,
        "name": freeze.name,
        "reason": freeze.reason,
        "hard": freeze.hard,
        "environments": freeze.environments,
        "services": freeze.services,
        "actions": freeze.actions,
        "windowStart": window_start,
        "until": until,
    })
}

/// The environment an event or audit entry of a freeze is filed under: its only one, or none.
fn single_environment(
    environments: &[deploy_safety_core::Environment],
) -> Option<deploy_safety_core::Environment> {
    match environments {
        [only] => Some(*only),
        _ => None,
    }
}

/// Brings the record's announcements up to date at `now`: `freeze.ended` for a window that
/// closed, `freeze.started` for one that opened, each once, with a system audit entry.
fn announce(
    tx: &mut dyn Tx,
    emitter: &mut Emitter<'_>,
    record: &mut FreezeRecord,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let freeze = record.freeze.clone();
    let window = freeze.window_at(now);
    let environment = single_environment(&freeze.environments);
    let mut announced = 0;
    let system = |tx: &mut dyn Tx, action: &str, details: serde_json::Value| {
        tx.append_audit(
            AuditDraft {
                principal: "system".to_owned(),
                role: None,
                action: action.to_owned(),
                environment,
                decision: AuditDecision::Recorded,
                reason: ReasonCode::Freeze.as_str().to_owned(),
                details,
            },
            now,
        )
        .map(|_| ())
    };
    // Back-to-back windows (one ends as the next starts) are one stretch in force: announced
    // once, not ended and started again at every boundary. The engine looks at every
    // boundary, so comparing with the window just before this one is enough.
    let continues = match (record.announced_window_start, window) {
        (Some(announced), Some(w)) => {
            announced == w.start
                || (announced < w.start && freeze.window_at(w.start.plus_millis(-1)).is_some())
        }
        _ => false,
    };
    if continues {
        record.next_check_at = next_check(&freeze, now);
        return Ok(0);
    }
    if let Some(start) = record.announced_window_start {
        let details = freeze_event(&freeze, start, Some(now));
        system(tx, "freeze.ended", details.clone())?;
        emitter.emit(tx, EventType::FreezeEnded, now, environment, details)?;
        record.announced_window_start = None;
        announced += 1;
    }
    if let Some(w) = window {
        let details = freeze_event(&freeze, w.start, w.until);
        system(tx, "freeze.started", details.clone())?;
        emitter.emit(tx, EventType::FreezeStarted, now, environment, details)?;
        record.announced_window_start = Some(w.start);
        announced += 1;
    }
    record.next_check_at = next_check(&freeze, now);
    Ok(announced)
}

fn may_manage_freezes(caller: &Caller, what: &str) -> Option<Refusal> {
    (!matches!(caller.role, Role::SecurityTeam | Role::EngLead)).then(|| Refusal {
        reason: ReasonCode::RoleNotPermitted,
        message: format!(
            "only the security team and eng-leads may {what} (your role: {})",
            caller.role
        ),
        hints: vec!["Ask the security team or an eng-lead.".to_owned()],
    })
}

impl App {
    /// `POST /freezes`: 400 for bad input (nothing stored), 403 for other roles.
    pub async fn create_freeze(
        &self,
        caller: &Caller,
        request: CreateFreezeRequest,
    ) -> Result<FreezeView, AppError> {
        const ACTION: &str = "freeze.create";
        let name = Name::parse(&request.name).map_err(AppError::invalid_text("name"))?;
        let reason = Reason::parse(&request.reason).map_err(AppError::invalid_text("reason"))?;
        let mut environments = Vec::new();
        for (i, environment) in request
            .environments
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let known = self.environment(&format!("environments[{i}]"), environment)?;
            if !environments.contains(&known.name) {
                environments.push(known.name);
            }
        }
        let mut services = Vec::new();
        for (i, service) in request.services.unwrap_or_default().iter().enumerate() {
            let service = ServiceName::parse(service)
                .map_err(AppError::invalid_text(&format!("services[{i}]")))?
                .into_string();
            if !services.contains(&service) {
                services.push(service);
            }
        }
        let mut actions = Vec::new();
        for action in request.actions.unwrap_or_default() {
            if !actions.contains(&action) {
                actions.push(action);
            }
        }
        if actions.is_empty() {
            actions = DEFAULT_ACTIONS.to_vec();
        }
        let schedule = request
            .schedule
            .as_ref()
            .map(|spec| {
                spec.parse()
                    .map_err(|e| AppError::invalid(e.field(), e.to_string()))
            })
            .transpose()?;
        let start = parse_time("start", request.start.as_deref())?;
        let end = parse_time("end", request.end.as_deref())?;
        let hard = request.hard.unwrap_or(false);
        let now = self.clock.now();
        validate_window(start.unwrap_or(now), end)
            .map_err(|(field, message)| AppError::invalid(field, message))?;
        if schedule.is_none() && end.is_some_and(|e| e <= now) {
            return Err(AppError::invalid("end", "must be in the future"));
        }
        let caller = caller.clone();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| -> TxResult<FreezeView> {
            let now = clock.now();
            let env = single_environment(&environments);
            if let Some(refusal) = may_manage_freezes(&caller, "create freezes") {
                return refuse(tx, &caller, ACTION, env, refusal, now);
            }
            let freeze = Freeze {
                id: new_id("frz", now),
                name: name.into_string(),
                reason: reason.into_string(),
                environments,
                services,
                actions,
                start: start.unwrap_or(now),
                end,
                schedule,
                hard,
                created_by: caller.name.clone(),
                created_at: now,
                ended_at: None,
                ended_by: None,
                end_reason: None,
            };
            let mut record = FreezeRecord {
                freeze: freeze.clone(),
                announced_window_start: None,
                next_check_at: None,
            };
            tx.append_audit(
                entry(
                    &caller,
                    ACTION,
                    env,
                    AuditDecision::Allowed,
                    ReasonCode::Allowed,
                    serde_json::to_value(&freeze).unwrap_or_else(|_| json!({})),
                ),
                now,
            )?;
            // A window already in force is announced now, not at the engine's next step.
            announce(tx, emitter, &mut record, now)?;
            tx.insert_freeze(&record)?;
            Ok(Ok(view(freeze, now)))
        })
        .await
    }

    /// `GET /freezes`: not yet over (or every one with `all`), newest first.
    pub async fn list_freezes(&self, query: FreezeListQuery) -> Result<FreezeList, AppError> {
        let limit = query.limit.unwrap_or(DEFAULT_LIST);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(AppError::invalid(
                "limit",
                format!("must be from 1 to {MAX_LIST}"),
            ));
        }
        let all = query.all.unwrap_or(false);
        let now = self.clock.now();
        let mut found = self
            .store
            .read(move |tx| tx.list_freezes(now, all, limit + 1))
            .await?;
        let truncated = found.len() > limit as usize;
        found.truncate(limit as usize);
        Ok(FreezeList {
            freezes: found.into_iter().map(|f| view(f, now)).collect(),
            truncated,
        })
    }

    /// `GET /freezes/{id}`.
    pub async fn get_freeze(&self, id: &str) -> Result<FreezeView, AppError> {
        let key = id.to_owned();
        let found = self.store.read(move |tx| tx.get_freeze(&key)).await?;
        let record =
            found.ok_or_else(|| AppError::NotFound(format!("no freeze with id `{id}`")))?;
        Ok(view(record.freeze, self.clock.now()))
    }

    /// `DELETE /freezes/{id}`: ends it now, with who and why; 409 if it is already over.
    pub async fn end_freeze(
        &self,
        caller: &Caller,
        id: &str,
        request: EndFreezeRequest,
    ) -> Result<FreezeView, AppError> {
        const ACTION: &str = "freeze.end";
        let reason = request
            .reason
            .as_deref()
            .map(|r| Reason::parse(r).map_err(AppError::invalid_text("reason")))
            .transpose()?;
        let caller = caller.clone();
        let key = id.to_owned();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| -> TxResult<FreezeView> {
            let now = clock.now();
            if let Some(refusal) = may_manage_freezes(&caller, "end freezes") {
                return refuse(tx, &caller, ACTION, None, refusal, now);
            }
            let Some(mut record) = tx.get_freeze(&key)? else {
                return Ok(Err(AppError::NotFound(format!("no freeze with id `{key}`"))));
            };
            if record.freeze.is_over_at(now) {
                return Ok(Err(AppError::Conflict {
                    reason: Some(ReasonCode::FreezeOver),
                    message: format!("freeze {key} is already over"),
                    hints: Vec::new(),
                }));
            }
            record.freeze.ended_at = Some(now);
            record.freeze.ended_by = Some(caller.name.clone());
            record.freeze.end_reason = reason.map(Reason::into_string);
            let env = single_environment(&record.freeze.environments);
            tx.append_audit(
                entry(
                    &caller,
                    ACTION,
                    env,
                    AuditDecision::Allowed,
                    ReasonCode::Allowed,
                    json!({ "freezeId": key, "name": record.freeze.name, "reason": record.freeze.end_reason }),
                ),
                now,
            )?;
            announce(tx, emitter, &mut record, now)?;
            tx.update_freeze(&record)?;
            Ok(Ok(view(record.freeze, now)))
        })
        .await
    }

    /// The engine's step: announces every window that opened or closed by `now`; returns how
    /// many announcements were made.
    pub async fn announce_freezes(&self, now: Timestamp) -> Result<usize, AppError> {
        let mut total = 0;
        loop {
            let (announced, looked_at) = self
                .write_emitting(move |tx, emitter| -> TxResult<(usize, usize)> {
                    let due = tx.freezes_due(now, DUE_BATCH)?;
                    let mut announced = 0;
                    for mut record in due.iter().cloned() {
                        announced += announce(tx, emitter, &mut record, now)?;
                        tx.update_freeze(&record)?;
                    }
                    Ok(Ok((announced, due.len())))
                })
                .await?;
            total += announced;
            if looked_at < DUE_BATCH as usize {
                return Ok(total);
            }
        }
    }
}
