//! The UPPER_CASE codes that say why: in gate decisions, policy refusals and the audit log.

use crate::model::string_enum;

string_enum! {
    /// Why a decision or refusal came out the way it did. Machines match on these; people read
    /// the message beside them.
    pub enum ReasonCode ("reason code") {
        /// The gate allowed the action without needing an override.
        Allowed = "ALLOWED",
        /// The gate allowed the action because an active override covers it.
        Override = "OVERRIDE",
        /// The gate is in lockdown: every gated action is denied.
        Lockdown = "LOCKDOWN",
        /// Canary start and promotion stop while the threat level is high or critical.
        ThreatLevel = "THREAT_LEVEL",
        /// A freeze stops the action: a hard one until it ends, a soft one unless an override
        /// covers the action (SPEC §16).
        Freeze = "FREEZE",
        /// The freeze has ended already.
        FreezeOver = "FREEZE_OVER",
        /// Production actions need an active override.
        OverrideRequired = "OVERRIDE_REQUIRED",
        /// A critical incident is open: canary start and promotion need an override.
        CriticalIncident = "CRITICAL_INCIDENT",
        /// The caller's role may not perform this operation.
        RoleNotPermitted = "ROLE_NOT_PERMITTED",
        /// The caller's role may not create this override (SPEC §4 table).
        OverrideNotPermitted = "OVERRIDE_NOT_PERMITTED",
        /// A body named someone other than the caller as approver.
        ApproverMismatch = "APPROVER_MISMATCH",
        /// Only the security team or the override's creator may revoke it.
        NotOverrideCreator = "NOT_OVERRIDE_CREATOR",
        /// The override was already revoked or has expired.
        OverrideNotActive = "OVERRIDE_NOT_ACTIVE",
        /// A state change recorded for the record, not a permission decision.
        Recorded = "RECORDED",
        /// Lockdown was entered automatically.
        LockdownTriggered = "LOCKDOWN_TRIGGERED",
        /// A release validation run passed every gate.
        ValidationPassed = "VALIDATION_PASSED",
        /// A release validation run had a failing gate.
        ValidationFailed = "VALIDATION_FAILED",
        /// The thing is defined elsewhere (built in, or in the settings file) and cannot be
        /// changed through the API.
        NotManagedByApi = "NOT_MANAGED_BY_API",
        /// Production canaries need the release to have passed validation in staging first.
        StagingValidationRequired = "STAGING_VALIDATION_REQUIRED",
        /// An environment has one active canary at a time.
        CanaryAlreadyActive = "CANARY_ALREADY_ACTIVE",
        /// The rollback's target version never ran in the environment.
        UnknownRollbackTarget = "UNKNOWN_ROLLBACK_TARGET",
        /// The rollback was already executed.
        RollbackNotPending = "ROLLBACK_NOT_PENDING",
        /// An unhealthy canary was rolled back automatically (a fail-safe, in every mode).
        AutomaticRollback = "AUTOMATIC_ROLLBACK",
        /// A canary step recorded by the engine.
        CanaryStep = "CANARY_STEP",
        /// Production canaries need a passed soak of the release in staging first (with
        /// `[soak] required_before_production`).
        SoakRequired = "SOAK_REQUIRED",
        /// The release already has a running soak in the environment (for that service).
        SoakAlreadyRunning = "SOAK_ALREADY_RUNNING",
        /// The soak has ended: it takes no metrics and cannot be aborted.
        SoakNotRunning = "SOAK_NOT_RUNNING",
        /// A soak evaluation recorded by the engine.
        SoakEvaluation = "SOAK_EVALUATION",
        /// Every evaluation of a soak passed.
        SoakPassed = "SOAK_PASSED",
        /// A soak evaluation failed.
        SoakFailed = "SOAK_FAILED",
        /// A soak ended with evaluations that had no data.
        SoakInconclusive = "SOAK_INCONCLUSIVE",
        /// The release's canary in this environment was rolled back as unhealthy (SPEC §17).
        CanaryRolledBack = "CANARY_ROLLED_BACK",
        /// A rollback away from this release was executed in this environment (SPEC §17).
        ReleaseRolledBack = "RELEASE_ROLLED_BACK",
        /// Flagger asked whether to roll back, and nothing asks for it (SPEC §17).
        NoRollbackRequested = "NO_ROLLBACK_REQUESTED",
        /// Flagger may roll back: a rollback was requested, or a critical incident is open.
        RollbackRequested = "ROLLBACK_REQUESTED",
        /// An integration's request maps to no configured environment.
        UnmappedEnvironment = "UNMAPPED_ENVIRONMENT",
        /// A webhook's signature is missing or wrong.
        BadSignature = "BAD_SIGNATURE",
        /// A request that could not be read (an integration's malformed payload).
        InvalidRequest = "INVALID_REQUEST",
        /// A stored checkpoint of the audit log cannot be read: the checkpoints were altered.
        CheckpointCorrupt = "CHECKPOINT_CORRUPT",
        /// A verified workload token matches no `[[auth.oidc.bindings]]` (SPEC §18).
        NoBinding = "NO_BINDING",
        /// A principal exists with another role: an identity provider cannot change it.
        PrincipalRoleConflict = "PRINCIPAL_ROLE_CONFLICT",
        /// None of a person's groups maps to a role: no session (SPEC §18).
        NoRoleMapping = "NO_ROLE_MAPPING",
        /// A single sign-on callback that starts no session: unknown, used or expired `state`,
        /// or an ID token that fails a check.
        LoginFailed = "LOGIN_FAILED",
        /// A workload identity (an OIDC token of a pipeline) asked to approve: an override, an
        /// override request, a vote. Approval is a person's (SPEC §18, §19).
        WorkloadCannotApprove = "WORKLOAD_CANNOT_APPROVE",
        /// An `[[approvals]]` rule covers this override: it comes from a request that other
        /// people approve, not from one person (SPEC §19).
        ApprovalsRequired = "APPROVALS_REQUIRED",
        /// The requester voted on their own override request.
        SelfApproval = "SELF_APPROVAL",
        /// This person has already voted on the override request.
        AlreadyVoted = "ALREADY_VOTED",
        /// The override request is approved, denied or expired: it takes no more votes.
        RequestNotPending = "REQUEST_NOT_PENDING",
        /// An override request was approved: its override was created.
        RequestApproved = "REQUEST_APPROVED",
        /// An override request was denied.
        RequestDenied = "REQUEST_DENIED",
        /// A state-changing request authenticated by a session cookie without the session's
        /// `X-CSRF-Token`.
        Csrf = "CSRF",
    }
}

impl ReasonCode {
    /// The codes a gate decision can carry (SPEC §3).
    pub const GATE: &'static [ReasonCode] = &[
        ReasonCode::Allowed,
        ReasonCode::Override,
        ReasonCode::Lockdown,
        ReasonCode::ThreatLevel,
        ReasonCode::OverrideRequired,
        ReasonCode::CriticalIncident,
    ];
}
