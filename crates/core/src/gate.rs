//! The gate decision (SPEC §3) and the gate's state changes (SPEC §5), as pure functions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::approvals::ApprovalPolicy;
use crate::environment::KnownEnvironment;
use crate::freeze::{ActiveFreeze, FreezeIndex};
use crate::model::{
    Action, Environment, GateState, OpenIncident, SecurityMode, Severity, ThreatLevel,
};
use crate::overrides::{Override, OverrideIndex};
use crate::reason::ReasonCode;
use crate::text::Reason;
use crate::time::Timestamp;

/// What is being asked of the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GateRequest<'a> {
    pub action: Action,
    /// Where: a configured environment, whose tier decides which rules apply.
    pub environment: KnownEnvironment,
    /// The release the action concerns: a canary's `releaseId`, a rollback's `toVersion`.
    pub release_id: Option<&'a str>,
    /// The service the action concerns; `None` is the environment as a whole (SPEC §15).
    pub service: Option<&'a str>,
    /// For a promotion: the override the canary was started under, which also covers its
    /// promotion while it is active (SPEC §4).
    pub start_override_id: Option<&'a str>,
}

/// Everything the gate knows when it decides.
#[derive(Clone, Copy, Debug)]
pub struct GateInputs<'a> {
    pub state: &'a GateState,
    /// Overrides that may be active; the decision checks activity itself against `now`.
    pub overrides: &'a OverrideIndex,
    /// Incidents that are open now.
    pub open_incidents: &'a [OpenIncident],
    /// Freezes in force now (SPEC §16).
    pub freezes: &'a FreezeIndex,
    /// The two-person rule (SPEC §19): where a rule applies, hints say to request an override
    /// rather than create one.
    pub approvals: &'a ApprovalPolicy,
    pub now: Timestamp,
}

/// The gate's answer: allowed or not, why, and how to proceed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub allowed: bool,
    pub reason: ReasonCode,
    pub message: String,
    /// The override that allowed the action, if one did.
    pub override_id: Option<String>,
    pub hints: Vec<String>,
    /// Monitor mode only: enforce mode would have denied this action; `reason` says why.
    pub would_block: bool,
    /// The mode the decision was made in.
    pub mode: SecurityMode,
    pub action: Action,
    pub environment: Environment,
    pub release_id: Option<String>,
    /// The service the action concerns; absent for the environment as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub decided_at: Timestamp,
}

/// SPEC §3, in order: lockdown; then the enforce verdict (threat level, freeze (§16),
/// production override, critical incident); then the mode decides whether the verdict stands (enforce) or is only
/// recorded (monitor).
pub fn decide(request: &GateRequest<'_>, inputs: &GateInputs<'_>) -> Decision {
    if inputs.state.mode == SecurityMode::Lockdown {
        let why = inputs
            .state
            .lockdown_reason
            .as_deref()
            .unwrap_or("no reason recorded");
        return Verdict::allowed()
            .deny(ReasonCode::Lockdown, format!("Security gate is in lockdown: {why}"))
            .hint("Only the security team can exit lockdown (POST /api/deploy-safety/security-gate/mode {\"mode\": \"enforce\"}).")
            .hint("Overrides are not honored during lockdown.")
            .build(request, inputs);
    }
    let enforced = enforce_verdict(request, inputs);
    match inputs.state.mode {
        SecurityMode::Monitor if !enforced.allowed => Decision {
            allowed: true,
            would_block: true,
            message: format!(
                "Monitor mode: allowed, but enforce mode would block it: {}",
                enforced.message
            ),
            ..enforced
        },
        _ => enforced,
    }
}

fn enforce_verdict(request: &GateRequest<'_>, inputs: &GateInputs<'_>) -> Decision {
    let verdict = Verdict::allowed();
    let threat = inputs.state.threat_level;
    if request.action.is_canary_progress() && threat >= ThreatLevel::High {
        return verdict
            .deny(
                ReasonCode::ThreatLevel,
                format!("Threat level is {threat}: canary start and promotion are stopped until it drops below high"),
            )
            .hint("Wait for the security team to lower the threat level; no override lifts this.")
            .build(request, inputs);
    }
    let covering = covering_override(request, inputs);
    // SPEC §16, right after the threat level: a hard freeze denies whatever the overrides; a
    // soft one needs a covering override, which then also answers the steps below.
    let (hard, any) =
        inputs
            .freezes
            .last_ending_both(request.action, request.environment.name, request.service);
    // Without a covering override every freeze in force stops the request; with one, only the
    // hard ones do. Either way the decision names the one that ends last.
    match (hard, any, covering) {
        (Some(hard), Some(last), None) | (Some(hard @ last), _, Some(_)) => {
            let id = &hard.freeze.id;
            return verdict
                .deny(ReasonCode::Freeze, freeze_message(last))
                .hint(format!(
                    "A hard freeze lifts only when it ends; no override lifts it. The security team or an eng-lead can end it now: deploy-safety freeze end {id} --reason \"...\" (DELETE /api/deploy-safety/freezes/{id})."
                ))
                .build(request, inputs);
        }
        (None, Some(soft), None) => {
            return verdict
                .deny(ReasonCode::Freeze, freeze_message(soft))
                .override_hints(request, inputs.approvals)
                .hint(format!(
                    "Or end the freeze (security team or eng-lead): deploy-safety freeze end {} --reason \"...\".",
                    soft.freeze.id
                ))
                .build(request, inputs);
        }
        _ => {}
    }
    let lifted = covering.filter(|_| any.is_some());
    if request.environment.is_production() {
        return match covering {
            Some(o) => verdict.allow_by(o).build(request, inputs),
            None => verdict
                .deny(
                    ReasonCode::OverrideRequired,
                    "Production actions require explicit override".to_owned(),
                )
                .override_hints(request, inputs.approvals)
                .build(request, inputs),
        };
    }
    if request.action.is_canary_progress()
        && let Some(incident) = critical_incident(request.environment.name, inputs.open_incidents)
    {
        return match covering {
            Some(o) => verdict.allow_by(o).build(request, inputs),
            None => verdict
                .deny(
                    ReasonCode::CriticalIncident,
                    format!(
                        "Critical incident {} ({}) is open for {}: canary start and promotion require an override",
                        incident.id,
                        incident.title,
                        incident
                            .environment
                            .as_ref()
                            .map_or("all environments", Environment::as_str)
                    ),
                )
                .override_hints(request, inputs.approvals)
                .hint("Resolve the incident to lift this requirement.")
                .build(request, inputs),
        };
    }
    match lifted {
        Some(o) => verdict.allow_by(o).build(request, inputs),
        None => verdict.build(request, inputs),
    }
}

/// The freeze that stops the request (SPEC §16), if one does: without a covering override
/// every freeze in force does, with one only the hard ones; of those, the one that ends last.
pub fn stopping_freeze<'i>(
    request: &GateRequest<'_>,
    inputs: &GateInputs<'i>,
    covering: Option<&Override>,
) -> Option<&'i ActiveFreeze> {
    let (hard, any) =
        inputs
            .freezes
            .last_ending_both(request.action, request.environment.name, request.service);
    if covering.is_some() { hard } else { any }
}

/// What would stop `request` because of a freeze: the message, or `None`.
pub fn freeze_stop_message(request: &GateRequest<'_>, inputs: &GateInputs<'_>) -> Option<String> {
    let covering = covering_override(request, inputs);
    stopping_freeze(request, inputs, covering).map(freeze_message)
}

/// "Freeze holiday (frz_1) stops deploy.canary.start: year-end change freeze; it ends at ...".
fn freeze_message(active: &ActiveFreeze) -> String {
    let freeze = &active.freeze;
    let kind = if freeze.hard { "Hard" } else { "Soft" };
    let (name, id, reason) = (&freeze.name, &freeze.id, &freeze.reason);
    match active.until {
        Some(until) => {
            format!("{kind} freeze {name} ({id}) is in force: {reason}; it ends at {until}")
        }
        None => format!(
            "{kind} freeze {name} ({id}) is in force: {reason}; it lasts until it is ended by hand"
        ),
    }
}

/// The active override that covers the request, if any: one for this action, environment and
/// release, or for a promotion the override its canary was started under.
fn covering_override<'i>(
    request: &GateRequest<'_>,
    inputs: &GateInputs<'i>,
) -> Option<&'i Override> {
    let now = inputs.now;
    let direct = inputs.overrides.covering(
        request.action,
        request.environment.name,
        request.release_id,
        request.service,
        now,
    );
    direct.or_else(|| {
        let id = request.start_override_id?;
        if request.action != Action::CanaryPromote {
            return None;
        }
        inputs
            .overrides
            .by_id(Action::CanaryStart, request.environment.name, id)
            .filter(|o| {
                o.is_active_at(now)
                    && o.covers_release(request.release_id)
                    && o.covers_service(request.service)
            })
    })
}

fn critical_incident(environment: Environment, open: &[OpenIncident]) -> Option<&OpenIncident> {
    open.iter()
        .find(|i| i.severity == Severity::Critical && i.concerns(environment))
}

/// Builds a decision; starts as "allowed".
struct Verdict {
    allowed: bool,
    reason: ReasonCode,
    message: String,
    override_id: Option<String>,
    hints: Vec<String>,
}

impl Verdict {
    fn allowed() -> Self {
        Verdict {
            allowed: true,
            reason: ReasonCode::Allowed,
            message: "Allowed".to_owned(),
            override_id: None,
            hints: Vec::new(),
        }
    }

    fn deny(self, reason: ReasonCode, message: String) -> Self {
        Verdict {
            allowed: false,
            reason,
            message,
            ..self
        }
    }

    fn allow_by(self, o: &Override) -> Self {
        Verdict {
            allowed: true,
            reason: ReasonCode::Override,
            message: format!(
                "Allowed by override {} (approved by {}, expires {})",
                o.id, o.approver, o.expires_at
            ),
            override_id: Some(o.id.clone()),
            ..self
        }
    }

    /// Takes a `&'static str` or a `String` already built, so no hint is copied twice.
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// The hint that says how to get an override for the request: to request one where a
    /// two-person rule applies (SPEC §19), else to create one. Written into one string: a
    /// denial is answered often, and its texts are most of its cost (BENCHMARKS.md).
    fn override_hints(mut self, request: &GateRequest<'_>, approvals: &ApprovalPolicy) -> Self {
        use std::fmt::Write as _;
        let requirement = approvals.requirement(request.action, request.environment);
        let (action, environment) = (request.action, request.environment.name);
        let mut hint = String::with_capacity(320);
        // Writing into a String cannot fail.
        let _ = if requirement.ruled {
            write!(
                hint,
                "Request an override for {action} in {environment}: it needs {} approval(s) from other people (roles that may approve: ",
                requirement.required
            )
        } else {
            write!(
                hint,
                "Create an override for {action} in {environment} (roles that may: "
            )
        };
        for (at, role) in requirement.roles.iter().enumerate() {
            if at > 0 {
                hint.push_str(", ");
            }
            hint.push_str(role.as_str());
        }
        let verb = if requirement.ruled {
            "request"
        } else {
            "create"
        };
        let _ = write!(
            hint,
            "): deploy-safety override {verb} --action {action} --environment {environment}"
        );
        if let Some(service) = request.service {
            let _ = write!(hint, " --service {service}");
        }
        if let Some(release) = request.release_id {
            let _ = write!(hint, " --release {release}");
        }
        hint.push_str(if requirement.ruled {
            " --reason \"...\", or POST /api/deploy-safety/security-gate/override-requests."
        } else {
            " --reason \"...\", or POST /api/deploy-safety/security-gate/override."
        });
        self.hints.push(hint);
        if request.release_id.is_none() {
            self = self
                .hint("Overrides bound to a release cover only requests that name that release.");
        }
        self
    }

    fn build(self, request: &GateRequest<'_>, inputs: &GateInputs<'_>) -> Decision {
        Decision {
            allowed: self.allowed,
            reason: self.reason,
            message: self.message,
            override_id: self.override_id,
            hints: self.hints,
            would_block: false,
            mode: inputs.state.mode,
            action: request.action,
            environment: request.environment.name,
            release_id: request.release_id.map(str::to_owned),
            service: request.service.map(str::to_owned),
            decided_at: inputs.now,
        }
    }
}

/// A mode change that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeChangeError {
    #[error("entering lockdown needs a reason")]
    LockdownReasonRequired,
}

/// SPEC §5: set the mode. Entering lockdown needs a reason; leaving it clears the lockdown
/// reason. Re-entering lockdown while in it replaces the reason but keeps `lockdownSince`.
pub fn change_mode(
    state: &GateState,
    mode: SecurityMode,
    reason: Option<&Reason>,
    by: &str,
    now: Timestamp,
) -> Result<GateState, ModeChangeError> {
    let mut next = state.clone();
    if mode == SecurityMode::Lockdown {
        let reason = reason.ok_or(ModeChangeError::LockdownReasonRequired)?;
        next.lockdown_reason = Some(reason.as_str().to_owned());
        if state.mode != SecurityMode::Lockdown {
            next.lockdown_since = Some(now);
        }
    } else {
        next.lockdown_reason = None;
        next.lockdown_since = None;
    }
    next.mode = mode;
    next.mode_reason = reason.map(|r| r.as_str().to_owned());
    next.mode_changed_at = Some(now);
    next.mode_changed_by = Some(by.to_owned());
    Ok(next)
}

/// What an automatic lockdown trigger did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockdownTrigger {
    /// The gate entered lockdown with this reason.
    Entered { reason: String },
    /// The gate was already in lockdown; its first reason stands and this cause is recorded.
    AlreadyInLockdown { kept_reason: String, cause: String },
}

/// SPEC §5: enter lockdown automatically because of `cause`. Nothing leaves lockdown
/// automatically, and a trigger while already in lockdown keeps the first reason.
pub fn trigger_lockdown(
    state: &GateState,
    cause: &str,
    now: Timestamp,
) -> (GateState, LockdownTrigger) {
    if state.mode == SecurityMode::Lockdown {
        let kept_reason = state
            .lockdown_reason
            .clone()
            .unwrap_or_else(|| "no reason recorded".to_owned());
        return (
            state.clone(),
            LockdownTrigger::AlreadyInLockdown {
                kept_reason,
                cause: cause.to_owned(),
            },
        );
    }
    let mut next = state.clone();
    next.mode = SecurityMode::Lockdown;
    next.lockdown_reason = Some(cause.to_owned());
    next.lockdown_since = Some(now);
    next.mode_reason = Some(cause.to_owned());
    next.mode_changed_at = Some(now);
    next.mode_changed_by = Some("system".to_owned());
    (
        next,
        LockdownTrigger::Entered {
            reason: cause.to_owned(),
        },
    )
}

/// SPEC §5: set the threat level. Becoming `critical` triggers lockdown; lowering it never
/// leaves lockdown.
pub fn change_threat_level(
    state: &GateState,
    level: ThreatLevel,
    reason: &Reason,
    by: &str,
    now: Timestamp,
) -> (GateState, Option<LockdownTrigger>) {
    let mut next = state.clone();
    next.threat_level = level;
    next.threat_reason = Some(reason.as_str().to_owned());
    next.threat_changed_at = Some(now);
    next.threat_changed_by = Some(by.to_owned());
    if level == ThreatLevel::Critical && state.threat_level != ThreatLevel::Critical {
        let cause = format!("Threat level raised to critical by {by}: {reason}");
        let (locked, trigger) = trigger_lockdown(&next, &cause, now);
        return (locked, Some(trigger));
    }
    (next, None)
}
