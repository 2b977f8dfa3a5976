//! The decisions of deploy-safety, as plain functions of their inputs and `now`.
//!
//! Invariants: nothing in this crate does I/O, reads a clock, spawns, or awaits. Everything the
//! rest of the product decides — may this action run, is this override active, is the audit
//! chain intact — is decided here, once, and tested here.

pub mod approvals;
pub mod audit;
pub mod canary;
pub mod checkpoint;
pub mod environment;
pub mod freeze;
pub mod gate;
pub mod health;
pub mod identity;
pub mod incident;
pub mod integration;
pub mod model;
pub mod overrides;
pub mod reason;
pub mod release;
pub mod schedule;
pub mod signature;
pub mod soak;
pub mod text;
pub mod time;
pub mod validation;
pub mod wire;

pub use approvals::{
    ApprovalPolicy, ApprovalRule, EnvironmentSelector, OverrideRequest, RequestStatus, Requirement,
    Vote, VoteKind, VoteOutcome, VoteRefusal, Voter,
};
pub use audit::{
    AuditDecision, AuditDraft, AuditEntry, ChainBreak, ChainVerifier, GENESIS_HASH, STORED_COLUMNS,
    StoredEntry, StoredValue,
};
pub use canary::{
    Band, Canary, CanaryConfig, CanaryMetrics, CanaryPhase, CanaryStep, Evaluation,
    EvaluationThresholds, MetricEvaluation, MetricsSource, StepAction, Verdict, evaluate,
};
pub use checkpoint::{Checkpoint, CheckpointKey, SignedCheckpoint, checkpoint_due, key_id};
pub use environment::{
    EnvironmentSpec, Environments, EnvironmentsError, InvalidEnvironmentName, KnownEnvironment,
    Tier, UnknownEnvironment,
};
pub use freeze::{
    ActiveFreeze, ActiveWindow, DEFAULT_ACTIONS, Freeze, FreezeIndex, validate_window,
};
pub use gate::{
    Decision, GateInputs, GateRequest, LockdownTrigger, ModeChangeError, change_mode,
    change_threat_level, decide, freeze_stop_message, stopping_freeze, trigger_lockdown,
};
pub use health::{
    CheckOutcome, OverallHealth, Probe, ProbeDefinition, ProbeHealth, ProbeKind, ProbeResult,
    ProbeSource, ProbeState, ProbeStatus, StatusRange, Thresholds, overall_health,
};
pub use incident::{
    Incident, IncidentCategory, IncidentChange, IncidentChangeError, IncidentEvent, IncidentStatus,
};
pub use integration::{
    FlaggerHook, GithubRequest, GithubRequestState, PollAnswer, PollDecision, ReleaseVerdict,
    answer,
};
pub use model::{
    Action, Environment, GateState, OpenIncident, Principal, Role, SecurityMode, Severity,
    ThreatLevel, UnknownValue,
};
pub use overrides::{
    Override, OverrideIndex, OverrideStatus, may_create_any_override, may_create_override,
    roles_that_may_override,
};
pub use reason::ReasonCode;
pub use release::{
    Event, EventType, LoadShedding, ReleaseChange, ReleaseRecord, Rollback, RollbackStatus,
};
pub use schedule::{MAX_DURATION_MINUTES, Schedule, ScheduleError, ScheduleSpec, Window};
pub use soak::{Soak, SoakConfig, SoakEvaluation, SoakIncident, SoakStatus, SoakStep, SoakVerdict};
pub use text::{InvalidText, Name, PrincipalName, Reason, ReleaseId, ServiceName, TtlMinutes};
pub use time::Timestamp;
pub use validation::{
    BUILT_IN_GATES, CheckStatus, FREEZE_GATE, GateKind, GateResult, GateVerdict, SOAK_GATE,
    Validation, ValidationInputs, ValidationRun, ValidationStatus, built_in_gate, overall_status,
};
