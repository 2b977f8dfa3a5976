//! The Security Gate's use cases (SPEC §3–5): status, mode, threat level, overrides, check.

use deploy_safety_api_types::{
    CheckRequest, CheckResponse, CreateOverrideRequest, GateStatus, OverrideList, OverrideView,
    SetModeRequest, SetThreatLevelRequest,
};
use deploy_safety_core::{
    ApprovalPolicy, AuditDecision, AuditDraft, Decision, EventType, GateInputs, GateRequest,
    GateState, LockdownTrigger, Override, OverrideIndex, OverrideStatus, Reason, ReasonCode,
    ReleaseId, Role, SecurityMode, Timestamp, TtlMinutes, change_mode, change_threat_level, decide,
    may_create_override, roles_that_may_override,
};
use deploy_safety_store::{StoreError, Tx};
use serde_json::json;

use crate::audit::{Refusal, entry, refuse};
use crate::events::Emitter;
use crate::{App, AppError, Caller, PresentedToken, TxResult};

/// How many overrides a list returns at most.
const OVERRIDE_LIST_LIMIT: u32 = 1_000;

fn view(record: Override, now: Timestamp) -> OverrideView {
    let status = record.status_at(now);
    OverrideView { record, status }
}

/// What events say about an override.
pub(crate) fn override_event(o: &Override) -> serde_json::Value {
    json!({
        "overrideId": o.id,
        "action": o.action,
        "environment": o.environment,
        "releaseId": o.release_id,
        "service": o.service,
        "approver": o.approver,
        "approvers": o.approvers,
        "requestId": o.request_id,
        "expiresAt": o.expires_at,
        "revokedBy": o.revoked_by,
    })
}

fn security_team_only(caller: &Caller, what: &str) -> Option<Refusal> {
    (caller.role != Role::SecurityTeam).then(|| Refusal {
        reason: ReasonCode::RoleNotPermitted,
        message: format!(
            "only the security team may {what} (your role: {})",
            caller.role
        ),
        hints: vec!["Ask the security team (#security-team).".to_owned()],
    })
}

fn optional_reason(text: Option<&str>) -> Result<Option<Reason>, AppError> {
    text.map(|t| Reason::parse(t).map_err(AppError::invalid_text("reason")))
        .transpose()
}

pub(crate) fn optional_release(text: Option<&str>) -> Result<Option<ReleaseId>, AppError> {
    text.map(|t| ReleaseId::parse(t).map_err(AppError::invalid_text("releaseId")))
        .transpose()
}

/// Who asks the gate: verified before the request reached the use case, or a static token the
/// decision's transaction checks.
enum GateCaller {
    Verified(Caller),
    Presented(PresentedToken),
}

/// A new id that sorts by creation time on the product's clock.
pub(crate) fn new_id(prefix: &str, now: Timestamp) -> String {
    let millis = u64::try_from(now.unix_millis()).unwrap_or_default();
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        millis / 1_000,
        u32::try_from(millis % 1_000).unwrap_or_default() * 1_000_000,
    );
    format!("{prefix}_{}", uuid::Uuid::new_v7(ts).simple())
}

/// Gathers the gate's inputs inside `tx` and decides (SPEC §3). Every gated path and the check
/// come through here, so there is one decision, made one way.
pub(crate) fn decide_in(
    tx: &mut dyn Tx,
    request: &GateRequest<'_>,
    approvals: &ApprovalPolicy,
    now: Timestamp,
) -> Result<Decision, StoreError> {
    with_gate_inputs(tx, request, approvals, now, |inputs| {
        decide(request, inputs)
    })
}

/// Like [`decide_in`], and when what blocks the request ends, where that is known: the end of
/// the freeze that stops it.
pub(crate) fn decide_with_end_in(
    tx: &mut dyn Tx,
    request: &GateRequest<'_>,
    approvals: &ApprovalPolicy,
    now: Timestamp,
) -> Result<(Decision, Option<Timestamp>), StoreError> {
    with_gate_inputs(tx, request, approvals, now, |inputs| {
        let decision = decide(request, inputs);
        let ends = (!decision.allowed && decision.reason == ReasonCode::Freeze)
            .then(|| {
                let covering = decision.override_id.as_deref().and_then(|id| {
                    inputs
                        .overrides
                        .by_id(request.action, request.environment.name, id)
                });
                deploy_safety_core::stopping_freeze(request, inputs, covering)
                    .and_then(|active| active.until)
            })
            .flatten();
        (decision, ends)
    })
}

/// Why a freeze would stop `request` now, if one would (the `freeze` validation gate).
pub(crate) fn freeze_stop_in(
    tx: &mut dyn Tx,
    request: &GateRequest<'_>,
    now: Timestamp,
) -> Result<Option<String>, StoreError> {
    with_gate_inputs(tx, request, &ApprovalPolicy::NONE, now, |inputs| {
        deploy_safety_core::freeze_stop_message(request, inputs)
    })
}

/// Gathers the gate's inputs for `request` inside `tx`, for `use_them`.
fn with_gate_inputs<R>(
    tx: &mut dyn Tx,
    request: &GateRequest<'_>,
    approvals: &ApprovalPolicy,
    now: Timestamp,
    use_them: impl FnOnce(&GateInputs<'_>) -> R,
) -> Result<R, StoreError> {
    let state = tx.gate_state()?;
    let mut candidates = tx.unexpired_overrides(request.action, request.environment.name, now)?;
    if let Some(start_id) = request.start_override_id
        && let Some(start) = tx.get_override(start_id)?
    {
        candidates.push(start);
    }
    let overrides = OverrideIndex::new(candidates);
    let open_incidents = tx.open_incidents()?;
    let freezes = crate::freezes::freezes_in_force(
        tx,
        request.action,
        request.environment.name,
        request.service,
        now,
    )?;
    Ok(use_them(&GateInputs {
        state: &state,
        overrides: &overrides,
        open_incidents: &open_incidents,
        freezes: &freezes,
        approvals,
        now,
    }))
}

/// Asks the gate about a gated action inside `tx`. A denial is recorded (a `denied` entry)
/// and answered with 403 `blocked_by_security_gate`; an allowed decision is returned for the
/// use case to act on and then record with [`record_gated`].
pub(crate) fn gate_action(
    tx: &mut dyn Tx,
    caller: &Caller,
    request: &GateRequest<'_>,
    approvals: &ApprovalPolicy,
    now: Timestamp,
) -> TxResult<Decision> {
    let decision = decide_in(tx, request, approvals, now)?;
    if !decision.allowed {
        tx.append_audit(
            decision_entry(caller, request.action.as_str(), &decision),
            now,
        )?;
        return Ok(Err(AppError::Blocked(Box::new(decision))));
    }
    Ok(Ok(decision))
}

/// Records a gated action that was allowed and done: its decision, with `details` of what was
/// done, and the use of the override that allowed it (SPEC §4: each use is recorded).
pub(crate) fn record_gated(
    tx: &mut dyn Tx,
    caller: &Caller,
    decision: &Decision,
    details: serde_json::Value,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut entry = decision_entry(caller, decision.action.as_str(), decision);
    if let (Some(fields), Some(extra)) = (entry.details.as_object_mut(), details.as_object()) {
        fields.extend(extra.clone());
    }
    tx.append_audit(entry, now)?;
    if let Some(override_id) = &decision.override_id {
        tx.record_override_use(override_id, now)?;
        tx.append_audit(
            AuditDraft {
                principal: caller.name.clone(),
                role: Some(caller.role),
                action: "override.use".to_owned(),
                environment: Some(decision.environment),
                decision: AuditDecision::Recorded,
                reason: ReasonCode::Override.as_str().to_owned(),
                details: crate::audit::with_auth_method(
                    caller,
                    json!({ "overrideId": override_id, "usedFor": decision.action,
                                 "releaseId": decision.release_id }),
                ),
            },
            now,
        )?;
    }
    Ok(())
}

/// Records a refusal made after the gate allowed an action: the endpoint's own precondition
/// (409), with its code.
pub(crate) fn refuse_precondition<T>(
    tx: &mut dyn Tx,
    caller: &Caller,
    decision: &Decision,
    refusal: crate::audit::Refusal,
    now: Timestamp,
) -> TxResult<T> {
    tx.append_audit(
        entry(
            caller,
            decision.action.as_str(),
            Some(decision.environment),
            AuditDecision::Denied,
            refusal.reason,
            json!({ "message": refusal.message, "hints": refusal.hints, "releaseId": decision.release_id }),
        ),
        now,
    )?;
    Ok(Err(AppError::Conflict {
        reason: Some(refusal.reason),
        message: refusal.message,
        hints: refusal.hints,
    }))
}

/// The audit entry that records a gate decision.
pub(crate) fn decision_entry(
    caller: &Caller,
    action: &str,
    decision: &Decision,
) -> deploy_safety_core::AuditDraft {
    entry(
        caller,
        action,
        Some(decision.environment),
        if decision.allowed {
            AuditDecision::Allowed
        } else {
            AuditDecision::Denied
        },
        decision.reason,
        serde_json::to_value(decision).unwrap_or_else(|_| json!({})),
    )
}

/// Records the audit entry of an automatic lockdown trigger. The gate did it, so the entry's
/// principal is `system`; the person whose change set it off is in the details.
pub(crate) fn record_lockdown_trigger(
    tx: &mut dyn Tx,
    emitter: &mut Emitter<'_>,
    caller: &Caller,
    trigger: &LockdownTrigger,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (action, details) = match trigger {
        LockdownTrigger::Entered { reason } => (
            "security-gate.lockdown.enter",
            json!({ "lockdownReason": reason, "automatic": true, "triggeredBy": caller.name }),
        ),
        LockdownTrigger::AlreadyInLockdown { kept_reason, cause } => (
            "security-gate.lockdown.trigger",
            json!({ "lockdownReason": kept_reason, "cause": cause, "automatic": true,
                    "triggeredBy": caller.name,
                    "note": "already in lockdown: the first reason stands" }),
        ),
    };
    // The gate acted, so `system` is the principal; how the person whose change set it off
    // authenticated is recorded beside their name.
    let mut details = details;
    if let Some(object) = details.as_object_mut() {
        object.insert(
            "triggeredByAuthenticatedBy".to_owned(),
            caller.auth.label().into(),
        );
    }
    tx.append_audit(
        AuditDraft {
            principal: "system".to_owned(),
            role: None,
            action: action.to_owned(),
            environment: None,
            decision: AuditDecision::Recorded,
            reason: ReasonCode::LockdownTriggered.as_str().to_owned(),
            details,
        },
        now,
    )?;
    if let LockdownTrigger::Entered { reason } = trigger {
        emitter.emit(
            tx,
            EventType::LockdownEntered,
            now,
            None,
            json!({ "lockdownReason": reason, "automatic": true, "triggeredBy": caller.name }),
        )?;
    }
    Ok(())
}

/// Announces a manual entry into, or exit from, lockdown.
fn announce_mode_change(
    tx: &mut dyn Tx,
    emitter: &mut Emitter<'_>,
    before: &GateState,
    after: &GateState,
    by: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let was = before.mode == SecurityMode::Lockdown;
    let is = after.mode == SecurityMode::Lockdown;
    match (was, is) {
        (false, true) => emitter.emit(
            tx,
            EventType::LockdownEntered,
            now,
            None,
            json!({ "lockdownReason": after.lockdown_reason, "automatic": false, "by": by }),
        ),
        (true, false) => emitter.emit(
            tx,
            EventType::LockdownExited,
            now,
            None,
            json!({ "mode": after.mode, "by": by, "previousReason": before.lockdown_reason }),
        ),
        _ if before.mode != after.mode => emitter.emit(
            tx,
            EventType::ModeChanged,
            now,
            None,
            json!({ "from": before.mode, "to": after.mode, "by": by, "reason": after.mode_reason }),
        ),
        _ => Ok(()),
    }
}

fn status_in(tx: &mut dyn Tx, state: GateState, now: Timestamp) -> Result<GateStatus, StoreError> {
    Ok(GateStatus::new(state, tx.count_active_overrides(now)?))
}

/// Expired overrides announced per transaction.
const EXPIRY_BATCH: u32 = 100;

impl App {
    /// `GET /security-gate/status`.
    pub async fn gate_status(&self) -> Result<GateStatus, AppError> {
        let clock = self.clock.clone();
        let status = self
            .store
            .read(move |tx| {
                let state = tx.gate_state()?;
                status_in(tx, state, clock.now())
            })
            .await?;
        Ok(status)
    }

    /// `POST /security-gate/mode`: security team only; lockdown needs a reason.
    pub async fn set_mode(
        &self,
        caller: &Caller,
        request: SetModeRequest,
    ) -> Result<GateStatus, AppError> {
        const ACTION: &str = "security-gate.mode.set";
        let reason = optional_reason(request.reason.as_deref())?;
        let mode = request.mode;
        if mode == SecurityMode::Lockdown && reason.is_none() {
            return Err(AppError::invalid(
                "reason",
                "entering lockdown needs a reason",
            ));
        }
        let caller = caller.clone();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| {
            let now = clock.now();
            if let Some(refusal) = security_team_only(&caller, "change the security mode") {
                return refuse(tx, &caller, ACTION, None, refusal, now);
            }
            let before = tx.gate_state()?;
            let after = match change_mode(&before, mode, reason.as_ref(), &caller.name, now) {
                Ok(after) => after,
                Err(e) => return Ok(Err(AppError::invalid("reason", e.to_string()))),
            };
            tx.put_gate_state(&after)?;
            tx.append_audit(
                entry(
                    &caller,
                    ACTION,
                    None,
                    AuditDecision::Allowed,
                    ReasonCode::Allowed,
                    json!({ "from": before.mode, "to": mode, "reason": reason }),
                ),
                now,
            )?;
            announce_mode_change(tx, emitter, &before, &after, &caller.name, now)?;
            Ok(Ok(status_in(tx, after, now)?))
        })
        .await
    }

    /// `POST /security-gate/threat-level`: security team only; critical enters lockdown.
    pub async fn set_threat_level(
        &self,
        caller: &Caller,
        request: SetThreatLevelRequest,
    ) -> Result<GateStatus, AppError> {
        const ACTION: &str = "security-gate.threat-level.set";
        let reason = Reason::parse(&request.reason).map_err(AppError::invalid_text("reason"))?;
        let level = request.level;
        let caller = caller.clone();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| {
            let now = clock.now();
            if let Some(refusal) = security_team_only(&caller, "change the threat level") {
                return refuse(tx, &caller, ACTION, None, refusal, now);
            }
            let before = tx.gate_state()?;
            let (after, trigger) = change_threat_level(&before, level, &reason, &caller.name, now);
            tx.put_gate_state(&after)?;
            tx.append_audit(
                entry(
                    &caller,
                    ACTION,
                    None,
                    AuditDecision::Allowed,
                    ReasonCode::Allowed,
                    json!({ "from": before.threat_level, "to": level, "reason": reason }),
                ),
                now,
            )?;
            if before.threat_level != after.threat_level {
                emitter.emit(
                    tx,
                    EventType::ThreatLevelChanged,
                    now,
                    None,
                    json!({ "from": before.threat_level, "to": after.threat_level,
                            "by": caller.name, "reason": reason }),
                )?;
            }
            if let Some(trigger) = &trigger {
                record_lockdown_trigger(tx, emitter, &caller, trigger, now)?;
            }
            Ok(Ok(status_in(tx, after, now)?))
        })
        .await
    }

    /// `POST /security-gate/check`: the decision the gate would make now, audited, and not a
    /// use of any override.
    pub async fn check(
        &self,
        caller: &Caller,
        request: CheckRequest,
    ) -> Result<CheckResponse, AppError> {
        self.check_as(GateCaller::Verified(caller.clone()), request)
            .await
    }

    /// `POST /security-gate/check` with a static token checked in the decision's own
    /// transaction (SPEC §22). A request that fails before the write is answered 401 first
    /// when the token is bad, as [`App::check`] would be.
    pub async fn check_with_token(
        &self,
        token: PresentedToken,
        request: CheckRequest,
    ) -> Result<CheckResponse, AppError> {
        self.check_as(GateCaller::Presented(token), request).await
    }

    async fn check_as(
        &self,
        caller: GateCaller,
        request: CheckRequest,
    ) -> Result<CheckResponse, AppError> {
        const ACTION: &str = "security-gate.check";
        let parsed = (|| {
            Ok::<_, AppError>((
                optional_release(request.release_id.as_deref())?,
                crate::parse_service("service", request.service.as_deref())?,
                self.environment("environment", request.environment)?,
            ))
        })();
        let (release, service, known) = match (parsed, &caller) {
            (Ok(parsed), _) => parsed,
            (Err(invalid), GateCaller::Presented(token)) => {
                self.authenticate_presented(token).await?;
                return Err(invalid);
            }
            (Err(invalid), GateCaller::Verified(_)) => return Err(invalid),
        };
        let settings = std::sync::Arc::clone(&self.settings);
        let clock = self.clock.clone();
        let response = self
            .store
            .write(move |tx| {
                let caller = match caller {
                    GateCaller::Verified(caller) => caller,
                    GateCaller::Presented(token) => match token.caller_in(tx)? {
                        Ok(caller) => caller,
                        Err(refused) => return Ok(Err(refused)),
                    },
                };
                let now = clock.now();
                let gate_request = GateRequest {
                    action: request.action,
                    environment: known,
                    release_id: release.as_ref().map(ReleaseId::as_str),
                    service: service.as_deref(),
                    start_override_id: None,
                };
                let decision = decide_in(tx, &gate_request, &settings.approvals, now)?;
                let recorded = tx.append_audit(decision_entry(&caller, ACTION, &decision), now)?;
                Ok(Ok(CheckResponse {
                    decision,
                    audit_seq: recorded.seq,
                }))
            })
            .await??;
        Ok(response)
    }

    /// `POST /security-gate/override` (SPEC §4).
    pub async fn create_override(
        &self,
        caller: &Caller,
        request: CreateOverrideRequest,
    ) -> Result<OverrideView, AppError> {
        const ACTION: &str = "override.create";
        let reason = Reason::parse(&request.reason).map_err(AppError::invalid_text("reason"))?;
        let ttl = TtlMinutes::parse(
            request
                .ttl_minutes
                .unwrap_or(i64::from(TtlMinutes::DEFAULT.get())),
            self.settings.max_override_ttl_minutes,
        )
        .map_err(AppError::invalid_text("ttlMinutes"))?;
        let release = optional_release(request.release_id.as_deref())?;
        if let Some(approver) = &request.approver
            && approver.trim().is_empty()
        {
            return Err(AppError::invalid(
                "approver",
                "must not be empty (omit it to approve as yourself)",
            ));
        }
        let service = crate::parse_service("service", request.service.as_deref())?;
        let known = self.environment("environment", request.environment)?;
        let (action, environment) = (request.action, known.name);
        let requirement = self.approval_requirement(action, known);
        let caller = caller.clone();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| {
                let now = clock.now();
                let env = Some(environment);
                if let Some(approver) = request.approver.as_deref()
                    && approver != caller.name
                {
                    let refusal = Refusal {
                        reason: ReasonCode::ApproverMismatch,
                        message: format!(
                            "approver `{approver}` is not you (`{}`): nobody approves in another's name",
                            caller.name
                        ),
                        hints: vec!["Omit `approver` to approve as yourself.".to_owned()],
                    };
                    return refuse(tx, &caller, ACTION, env, refusal, now);
                }
                if caller.auth.is_workload() {
                    let refusal = Refusal {
                        reason: ReasonCode::WorkloadCannotApprove,
                        message: format!(
                            "`{}` is a workload identity ({}): an override is a person's approval, and workload identities never approve",
                            caller.name,
                            caller.auth.label()
                        ),
                        hints: vec![
                            "Ask a person with the role to create the override (CLI, API or single sign-on); the pipeline's gated actions then use it.".to_owned(),
                        ],
                    };
                    return refuse(tx, &caller, ACTION, env, refusal, now);
                }
                let requirement = requirement.clone();
                if requirement.ruled {
                    let refusal = crate::approvals::approvals_required(action, known, &requirement);
                    return refuse(tx, &caller, ACTION, env, refusal, now);
                }
                if !may_create_override(caller.role, action, known.tier) {
                    let roles: Vec<&str> = roles_that_may_override(action, known.tier)
                        .into_iter()
                        .map(Role::as_str)
                        .collect();
                    let refusal = Refusal {
                        reason: ReasonCode::OverrideNotPermitted,
                        message: format!(
                            "role {} may not create overrides for {action} in {environment}",
                            caller.role
                        ),
                        hints: vec![format!("Roles that may: {}.", roles.join(", "))],
                    };
                    return refuse(tx, &caller, ACTION, env, refusal, now);
                }
                let created = Override {
                    id: new_id("ovr", now),
                    action,
                    environment,
                    release_id: release.map(ReleaseId::into_string),
                    service: service.clone(),
                    reason: reason.into_string(),
                    approver: caller.name.clone(),
                    approvers: vec![caller.name.clone()],
                    approver_role: caller.role,
                    request_id: None,
                    created_at: now,
                    expires_at: now.plus_minutes(i64::from(ttl.get())),
                    revoked_at: None,
                    revoked_by: None,
                    use_count: 0,
                    last_used_at: None,
                };
                tx.insert_override(&created)?;
                tx.append_audit(
                    entry(
                        &caller,
                        ACTION,
                        env,
                        AuditDecision::Allowed,
                        ReasonCode::Allowed,
                        serde_json::to_value(&created).unwrap_or_else(|_| json!({})),
                    ),
                    now,
                )?;
                emitter.emit(
                    tx,
                    EventType::OverrideCreated,
                    now,
                    Some(environment),
                    override_event(&created),
                )?;
                Ok(Ok(view(created, now)))
            })
            .await
    }

    /// Announces every override that has expired by `now` and was not announced yet: an
    /// `override.expired` event and an audit entry each, [`EXPIRY_BATCH`] per transaction (a
    /// backlog, e.g. after a long stop, never makes one huge transaction). Returns how many.
    pub async fn announce_expired_overrides(&self, now: Timestamp) -> Result<usize, AppError> {
        let mut total = 0;
        loop {
            let (fetched, announced) = self.announce_expired_batch(now).await?;
            total += announced;
            if fetched < EXPIRY_BATCH {
                return Ok(total);
            }
        }
    }

    /// One batch of [`App::announce_expired_overrides`]: how many were found, and announced.
    async fn announce_expired_batch(&self, now: Timestamp) -> Result<(u32, usize), AppError> {
        self.write_emitting(move |tx, emitter| -> crate::TxResult<(u32, usize)> {
            let expired = tx.expired_unannounced(now, EXPIRY_BATCH)?;
            let fetched = u32::try_from(expired.len()).unwrap_or(EXPIRY_BATCH);
            let mut announced = 0;
            for o in expired {
                if !tx.mark_expiry_announced(&o.id)? {
                    continue;
                }
                tx.append_audit(
                    AuditDraft {
                        principal: "system".to_owned(),
                        role: None,
                        action: "override.expire".to_owned(),
                        environment: Some(o.environment),
                        decision: AuditDecision::Recorded,
                        reason: ReasonCode::Recorded.as_str().to_owned(),
                        details: override_event(&o),
                    },
                    now,
                )?;
                emitter.emit(
                    tx,
                    EventType::OverrideExpired,
                    now,
                    Some(o.environment),
                    override_event(&o),
                )?;
                announced += 1;
            }
            Ok(Ok((fetched, announced)))
        })
        .await
    }

    /// `GET /security-gate/overrides`: active ones, or with `all` every one.
    pub async fn list_overrides(&self, all: bool) -> Result<OverrideList, AppError> {
        let clock = self.clock.clone();
        let list = self
            .store
            .read(move |tx| {
                let now = clock.now();
                let mut records = tx.list_overrides(now, all, OVERRIDE_LIST_LIMIT + 1)?;
                let truncated = records.len() > OVERRIDE_LIST_LIMIT as usize;
                records.truncate(OVERRIDE_LIST_LIMIT as usize);
                Ok(OverrideList {
                    overrides: records.into_iter().map(|o| view(o, now)).collect(),
                    truncated,
                })
            })
            .await?;
        Ok(list)
    }

    /// `GET /security-gate/override/{id}`.
    pub async fn get_override(&self, id: &str) -> Result<OverrideView, AppError> {
        let clock = self.clock.clone();
        let key = id.to_owned();
        let found = self
            .store
            .read(move |tx| Ok(tx.get_override(&key)?.map(|o| view(o, clock.now()))))
            .await?;
        found.ok_or_else(|| AppError::NotFound(format!("no override with id `{id}`")))
    }

    /// `DELETE /security-gate/override/{id}`: the security team, or the override's creator.
    pub async fn revoke_override(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<OverrideView, AppError> {
        const ACTION: &str = "override.revoke";
        let caller = caller.clone();
        let key = id.to_owned();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| {
                let now = clock.now();
                let not_creator = |approver: &str| Refusal {
                    reason: ReasonCode::NotOverrideCreator,
                    message: format!(
                        "only the security team or the override's creator ({approver}) may revoke override {key}"
                    ),
                    hints: Vec::new(),
                };
                // A role that can create no override can be no override's creator: refuse
                // before looking (403 comes before 404).
                if !deploy_safety_core::may_create_any_override(caller.role) {
                    return refuse(tx, &caller, ACTION, None, not_creator("someone else"), now);
                }
                let Some(mut found) = tx.get_override(&key)? else {
                    return Ok(Err(AppError::NotFound(format!("no override with id `{key}`"))));
                };
                let env = Some(found.environment);
                // Every approver of a request's override made it together: each may revoke it.
                if caller.role != Role::SecurityTeam && !found.approvers.contains(&caller.name) {
                    return refuse(tx, &caller, ACTION, env, not_creator(&found.approver), now);
                }
                let status = found.status_at(now);
                if status != OverrideStatus::Active
                    || !tx.revoke_override(&key, &caller.name, now)?
                {
                    return Ok(Err(AppError::Conflict {
                        reason: Some(ReasonCode::OverrideNotActive),
                        message: format!(
                            "override {key} is already {}",
                            match status {
                                OverrideStatus::Expired => "expired",
                                _ => "revoked",
                            }
                        ),
                        hints: Vec::new(),
                    }));
                }
                found.revoked_at = Some(now);
                found.revoked_by = Some(caller.name.clone());
                tx.append_audit(
                    entry(
                        &caller,
                        ACTION,
                        env,
                        AuditDecision::Allowed,
                        ReasonCode::Allowed,
                        json!({ "overrideId": found.id, "action": found.action,
                                "approver": found.approver }),
                    ),
                    now,
                )?;
                emitter.emit(
                    tx,
                    EventType::OverrideRevoked,
                    now,
                    Some(found.environment),
                    override_event(&found),
                )?;
                Ok(Ok(view(found, now)))
            })
            .await
    }
}
