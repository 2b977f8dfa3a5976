//! The two-person rule's use cases (SPEC §19): override requests, votes, and the expiry of
//! requests nobody decided.
//!
//! A vote is counted inside one write transaction that reads the request, asks the core, and
//! writes the vote, the decision and (at the last approval) the override together. Writes are
//! serialized across replicas (the audit head is locked first), so two last approvals arriving
//! at once on two replicas make one override: the second finds the request decided (409). The
//! override table's unique `request_id` holds to that even if the serialization did not.

use deploy_safety_api_types::{
    NewOverrideRequest, OverrideRequestList, OverrideRequestView, VoteBody,
};
use deploy_safety_core::{
    Action, AuditDecision, AuditDraft, EventType, KnownEnvironment, OverrideRequest, Reason,
    ReasonCode, ReleaseId, RequestStatus, Requirement, Role, Timestamp, TtlMinutes, VoteKind,
    VoteOutcome, VoteRefusal, Voter,
};
use deploy_safety_store::Tx;
use serde_json::json;

use crate::audit::{Refusal, entry, refuse};
use crate::gate::{new_id, optional_release, override_event};
use crate::{App, AppError, AppSettings, Caller, TxResult};

/// How many requests a list returns at most.
const REQUEST_LIST_LIMIT: u32 = 1_000;

/// Expired requests marked per transaction.
const EXPIRY_BATCH: u32 = 100;

/// The endpoint a refusal of a direct override points to.
pub(crate) const REQUESTS_PATH: &str = "/api/deploy-safety/security-gate/override-requests";

/// What events say about a request.
fn request_event(r: &OverrideRequest) -> serde_json::Value {
    json!({
        "requestId": r.id,
        "action": r.action,
        "environment": r.environment,
        "service": r.service,
        "releaseId": r.release_id,
        "reason": r.reason,
        "requestedBy": r.requested_by,
        "required": r.required,
        "approvals": r.approvals().map(|v| v.principal.as_str()).collect::<Vec<_>>(),
        "approverRoles": r.approver_roles,
        "expiresAt": r.expires_at,
        "overrideId": r.override_id,
    })
}

/// The refusal of `POST /security-gate/override` where an `[[approvals]]` rule applies.
pub(crate) fn approvals_required(
    action: Action,
    environment: KnownEnvironment,
    requirement: &Requirement,
) -> Refusal {
    let roles: Vec<&str> = requirement.roles.iter().map(|r| r.as_str()).collect();
    Refusal {
        reason: ReasonCode::ApprovalsRequired,
        message: format!(
            "overrides for {action} in {environment} need {} approval(s) from other people: request one instead of creating it",
            requirement.required
        ),
        hints: vec![
            format!(
                "POST {REQUESTS_PATH} with the same action, environment, service, releaseId, reason and ttlMinutes (CLI: deploy-safety override request)."
            ),
            format!(
                "It needs {} approval(s) from: {} (not the requester).",
                requirement.required,
                roles.join(", ")
            ),
        ],
    }
}

fn workload_vote(caller: &Caller) -> Refusal {
    Refusal {
        reason: ReasonCode::WorkloadCannotApprove,
        message: format!(
            "`{}` is a workload identity ({}): votes are people's",
            caller.name,
            caller.auth.label()
        ),
        hints: vec!["Vote as a person: with your own token or single sign-on.".to_owned()],
    }
}

fn vote_refusal(refusal: &VoteRefusal, request: &OverrideRequest, caller: &Caller) -> Refusal {
    let id = &request.id;
    let (message, hints) = match refusal {
        VoteRefusal::Workload => return workload_vote(caller),
        VoteRefusal::SelfApproval => (
            format!("{id} was requested by you: nobody votes on their own request"),
            vec![format!(
                "Ask someone with one of these roles to vote: {}.",
                role_list(&request.approver_roles)
            )],
        ),
        VoteRefusal::RoleNotPermitted { roles } => (
            format!(
                "role {} may not vote on {id} ({} in {})",
                caller.role, request.action, request.environment
            ),
            vec![format!("Roles that may: {}.", role_list(roles))],
        ),
        VoteRefusal::NotPending(status) => (
            format!("{id} is {status}: it takes no more votes"),
            match status {
                RequestStatus::Approved => vec![format!(
                    "Its override is {}.",
                    request
                        .override_id
                        .as_deref()
                        .unwrap_or("listed under /security-gate/overrides")
                )],
                _ => vec!["Make a new request.".to_owned()],
            },
        ),
        VoteRefusal::AlreadyVoted => (
            format!("you have already voted on {id}"),
            vec!["Each person votes once.".to_owned()],
        ),
    };
    Refusal {
        reason: refusal.reason(),
        message,
        hints,
    }
}

fn role_list(roles: &[Role]) -> String {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Records a refused vote (403 or 409) as a `denied` entry naming the request.
fn refuse_vote<T>(
    tx: &mut dyn Tx,
    caller: &Caller,
    action: &str,
    request: &OverrideRequest,
    refusal: &VoteRefusal,
    now: Timestamp,
) -> TxResult<T> {
    let refused = vote_refusal(refusal, request, caller);
    tx.append_audit(
        entry(
            caller,
            action,
            Some(request.environment),
            AuditDecision::Denied,
            refused.reason,
            json!({ "requestId": request.id, "message": refused.message, "hints": refused.hints }),
        ),
        now,
    )?;
    Ok(Err(if refusal.is_conflict() {
        AppError::Conflict {
            reason: Some(refused.reason),
            message: refused.message,
            hints: refused.hints,
        }
    } else {
        AppError::Forbidden {
            reason: refused.reason,
            message: refused.message,
            hints: refused.hints,
        }
    }))
}

impl App {
    /// What an override for `action` in `environment` needs under the `[[approvals]]` rules.
    pub(crate) fn approval_requirement(
        &self,
        action: Action,
        environment: KnownEnvironment,
    ) -> Requirement {
        self.settings.approvals.requirement(action, environment)
    }

    /// `request` under today's settings: stricter rules and a lower TTL maximum apply to a
    /// pending request (see [`OverrideRequest::tighten`]).
    fn under_current_settings(
        settings: &AppSettings,
        mut request: OverrideRequest,
    ) -> OverrideRequest {
        if let Some(known) = settings.environments.resolve(request.environment) {
            let now = settings.approvals.requirement(request.action, known);
            request.tighten(&now, settings.max_override_ttl_minutes);
        }
        request
    }

    /// `POST /security-gate/override-requests`: any person asks; others approve.
    pub async fn request_override(
        &self,
        caller: &Caller,
        body: NewOverrideRequest,
    ) -> Result<OverrideRequestView, AppError> {
        const ACTION: &str = "override-request.create";
        let reason = Reason::parse(&body.reason).map_err(AppError::invalid_text("reason"))?;
        let ttl = TtlMinutes::parse(
            body.ttl_minutes
                .unwrap_or(i64::from(TtlMinutes::DEFAULT.get())),
            self.settings.max_override_ttl_minutes,
        )
        .map_err(AppError::invalid_text("ttlMinutes"))?;
        let release = optional_release(body.release_id.as_deref())?;
        let service = crate::parse_service("service", body.service.as_deref())?;
        let known = self.environment("environment", body.environment)?;
        let requirement = self.approval_requirement(body.action, known);
        let waits = i64::from(self.settings.pending_request_ttl_minutes);
        let caller = caller.clone();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| {
            let now = clock.now();
            let env = Some(known.name);
            if caller.auth.is_workload() {
                let refusal = Refusal {
                    reason: ReasonCode::WorkloadCannotApprove,
                    message: format!(
                        "`{}` is a workload identity ({}): override requests are made and approved by people",
                        caller.name,
                        caller.auth.label()
                    ),
                    hints: vec![
                        "Ask a person to request the override; the pipeline's gated actions then use it once approved.".to_owned(),
                    ],
                };
                return refuse(tx, &caller, ACTION, env, refusal, now);
            }
            let request = OverrideRequest {
                id: new_id("oreq", now),
                action: body.action,
                environment: known.name,
                service,
                release_id: release.map(ReleaseId::into_string),
                reason: reason.into_string(),
                ttl_minutes: ttl.get(),
                requested_by: caller.name.clone(),
                requested_by_role: caller.role,
                required: requirement.required,
                approver_roles: requirement.roles.clone(),
                status: RequestStatus::Pending,
                votes: Vec::new(),
                created_at: now,
                expires_at: now.plus_minutes(waits),
                decided_at: None,
                override_id: None,
            };
            tx.insert_override_request(&request)?;
            let event = request_event(&request);
            let mut details = event.clone();
            details["ttlMinutes"] = json!(request.ttl_minutes);
            details["ruled"] = json!(requirement.ruled);
            tx.append_audit(
                entry(
                    &caller,
                    ACTION,
                    env,
                    AuditDecision::Allowed,
                    ReasonCode::Allowed,
                    details,
                ),
                now,
            )?;
            emitter.emit(
                tx,
                EventType::OverrideRequestCreated,
                now,
                env,
                event,
            )?;
            Ok(Ok(OverrideRequestView::new(request, now)))
        })
        .await
    }

    /// `GET /security-gate/override-requests[?status=]`, newest first.
    pub async fn list_override_requests(
        &self,
        status: Option<RequestStatus>,
    ) -> Result<OverrideRequestList, AppError> {
        let clock = self.clock.clone();
        let settings = std::sync::Arc::clone(&self.settings);
        let list = self
            .store
            .read(move |tx| {
                let now = clock.now();
                let mut found = tx.list_override_requests(status, now, REQUEST_LIST_LIMIT + 1)?;
                let truncated = found.len() > REQUEST_LIST_LIMIT as usize;
                found.truncate(REQUEST_LIST_LIMIT as usize);
                Ok(OverrideRequestList {
                    requests: found
                        .into_iter()
                        .map(|r| {
                            OverrideRequestView::new(App::under_current_settings(&settings, r), now)
                        })
                        .collect(),
                    truncated,
                })
            })
            .await?;
        Ok(list)
    }

    /// `GET /security-gate/override-requests/{id}`.
    pub async fn get_override_request(&self, id: &str) -> Result<OverrideRequestView, AppError> {
        let clock = self.clock.clone();
        let settings = std::sync::Arc::clone(&self.settings);
        let key = id.to_owned();
        let found = self
            .store
            .read(move |tx| {
                Ok(tx.get_override_request(&key)?.map(|r| {
                    OverrideRequestView::new(App::under_current_settings(&settings, r), clock.now())
                }))
            })
            .await?;
        found.ok_or_else(|| AppError::NotFound(format!("no override request with id `{id}`")))
    }

    /// `POST /security-gate/override-requests/{id}/approve` or `/deny`.
    pub async fn vote_on_override_request(
        &self,
        caller: &Caller,
        id: &str,
        kind: VoteKind,
        body: VoteBody,
    ) -> Result<OverrideRequestView, AppError> {
        let action = match kind {
            VoteKind::Approve => "override-request.approve",
            VoteKind::Deny => "override-request.deny",
        };
        let comment = match (kind, body.comment.as_deref()) {
            (VoteKind::Deny, None) => {
                return Err(AppError::invalid(
                    "comment",
                    "a denial needs a comment saying why",
                ));
            }
            (_, text) => text
                .map(|t| Reason::parse(t).map_err(AppError::invalid_text("comment")))
                .transpose()?
                .map(Reason::into_string),
        };
        let caller = caller.clone();
        let key = id.to_owned();
        let clock = self.clock.clone();
        let settings = std::sync::Arc::clone(&self.settings);
        self.write_emitting(move |tx, emitter| {
            let now = clock.now();
            // 403 before 404 (SPEC §3): a workload never votes, whatever the id.
            if caller.auth.is_workload() {
                return refuse(tx, &caller, action, None, workload_vote(&caller), now);
            }
            let Some(stored) = tx.get_override_request(&key)? else {
                // A role that may approve no override votes on no request: 403 before 404
                // (SPEC §3), as revocation is.
                if !deploy_safety_core::may_create_any_override(caller.role) {
                    let refusal = Refusal {
                        reason: ReasonCode::OverrideNotPermitted,
                        message: format!(
                            "role {} may not vote on override requests: it may approve no override",
                            caller.role
                        ),
                        hints: vec![
                            "Ask someone in the request's `approverRoles` to vote.".to_owned(),
                        ],
                    };
                    return refuse(tx, &caller, action, None, refusal, now);
                }
                return Ok(Err(AppError::NotFound(format!(
                    "no override request with id `{key}`"
                ))));
            };
            let mut request = App::under_current_settings(&settings, stored);
            // An environment removed from the settings takes no new action (SPEC §15).
            let known = match settings.environments.require(request.environment) {
                Ok(known) => known,
                Err(unknown) => {
                    return Ok(Err(AppError::invalid(
                        "environment",
                        format!("{key} is for {unknown}"),
                    )));
                }
            };
            let authenticated_by = caller.auth.label();
            let voter = Voter {
                name: &caller.name,
                role: caller.role,
                workload: caller.auth.is_workload(),
                authenticated_by: &authenticated_by,
            };
            let outcome = match request.vote(voter, kind, comment.clone(), known.tier, now) {
                Ok(outcome) => outcome,
                Err(refusal) => return refuse_vote(tx, &caller, action, &request, &refusal, now),
            };
            let vote = request.votes.last().cloned().ok_or_else(|| {
                deploy_safety_store::StoreError::Corrupt("vote not recorded".into())
            })?;
            tx.insert_vote(&request.id, &vote)?;
            let env = Some(request.environment);
            let mut details = request_event(&request);
            details["comment"] = json!(comment);
            details["approvalCount"] = json!(request.approval_count());
            match outcome {
                VoteOutcome::Counted { .. } => {
                    tx.append_audit(
                        entry(
                            &caller,
                            action,
                            env,
                            AuditDecision::Allowed,
                            ReasonCode::Allowed,
                            details,
                        ),
                        now,
                    )?;
                    // Not deciding yet, but the others waiting on it see the count move.
                    let mut event = request_event(&request);
                    event["approvedBy"] = json!(caller.name);
                    event["approvalCount"] = json!(request.approval_count());
                    emitter.emit(tx, EventType::OverrideRequestVoted, now, env, event)?;
                }
                VoteOutcome::Denied => {
                    tx.decide_override_request(&request.id, RequestStatus::Denied, now, None)?;
                    tx.append_audit(
                        entry(
                            &caller,
                            action,
                            env,
                            AuditDecision::Allowed,
                            ReasonCode::RequestDenied,
                            details,
                        ),
                        now,
                    )?;
                    let mut event = request_event(&request);
                    event["deniedBy"] = json!(caller.name);
                    event["comment"] = json!(comment);
                    emitter.emit(tx, EventType::OverrideRequestDenied, now, env, event)?;
                }
                VoteOutcome::Approved => {
                    let created = request.approved_override(new_id("ovr", now), now);
                    request.override_id = Some(created.id.clone());
                    tx.insert_override(&created)?;
                    if !tx.decide_override_request(
                        &request.id,
                        RequestStatus::Approved,
                        now,
                        Some(&created.id),
                    )? {
                        // Serialized writes make this unreachable; refuse rather than make a
                        // second override if it ever is not.
                        return Err(deploy_safety_store::StoreError::Conflict(format!(
                            "{} was decided concurrently",
                            request.id
                        )));
                    }
                    details["overrideId"] = json!(created.id);
                    tx.append_audit(
                        entry(
                            &caller,
                            action,
                            env,
                            AuditDecision::Allowed,
                            ReasonCode::RequestApproved,
                            details,
                        ),
                        now,
                    )?;
                    // The override itself, as `POST /security-gate/override` records one.
                    let mut made = serde_json::to_value(&created).unwrap_or_else(|_| json!({}));
                    made["requestedBy"] = json!(request.requested_by);
                    tx.append_audit(
                        entry(
                            &caller,
                            "override.create",
                            env,
                            AuditDecision::Allowed,
                            ReasonCode::RequestApproved,
                            made,
                        ),
                        now,
                    )?;
                    emitter.emit(
                        tx,
                        EventType::OverrideRequestApproved,
                        now,
                        env,
                        request_event(&request),
                    )?;
                    emitter.emit(
                        tx,
                        EventType::OverrideCreated,
                        now,
                        env,
                        override_event(&created),
                    )?;
                }
            }
            Ok(Ok(OverrideRequestView::new(request, now)))
        })
        .await
    }

    /// Marks every pending request whose time ran out by `now` expired: an
    /// `override_request.expired` event and an audit entry each, [`EXPIRY_BATCH`] per
    /// transaction. Returns how many. The engine's leader calls this every tick.
    pub async fn expire_override_requests(&self, now: Timestamp) -> Result<usize, AppError> {
        let mut total = 0;
        loop {
            let (fetched, expired) = self
                .write_emitting(move |tx, emitter| -> TxResult<(u32, usize)> {
                    let due = tx.override_requests_due(now, EXPIRY_BATCH)?;
                    let fetched = u32::try_from(due.len()).unwrap_or(EXPIRY_BATCH);
                    let mut expired = 0;
                    for mut request in due {
                        if !request.expire(now)
                            || !tx.decide_override_request(
                                &request.id,
                                RequestStatus::Expired,
                                request.expires_at,
                                None,
                            )?
                        {
                            continue;
                        }
                        let details = request_event(&request);
                        tx.append_audit(
                            AuditDraft {
                                principal: "system".to_owned(),
                                role: None,
                                action: "override-request.expire".to_owned(),
                                environment: Some(request.environment),
                                decision: AuditDecision::Recorded,
                                reason: ReasonCode::Recorded.as_str().to_owned(),
                                details: details.clone(),
                            },
                            now,
                        )?;
                        emitter.emit(
                            tx,
                            EventType::OverrideRequestExpired,
                            now,
                            Some(request.environment),
                            details,
                        )?;
                        expired += 1;
                    }
                    Ok(Ok((fetched, expired)))
                })
                .await?;
            total += expired;
            if fetched < EXPIRY_BATCH {
                return Ok(total);
            }
        }
    }
}
