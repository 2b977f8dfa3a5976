//! Rollbacks, release history and load shedding (SPEC §10–11), and the events the product
//! announces.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Environment, string_enum};
use crate::time::Timestamp;

string_enum! {
    pub enum RollbackStatus ("rollback status") {
        /// Created, not executed.
        Pending = "pending",
        /// Handed to the executor webhook; its outcome is awaited.
        Executing = "executing",
        /// Executed with no executor configured: announced as an event for the deploy system.
        Executed = "executed",
        /// The executor reported success.
        Succeeded = "succeeded",
        /// The executor reported failure, or could not be reached after every retry.
        Failed = "failed",
    }
}

/// A rollback of an environment from one version to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    pub id: String,
    pub environment: Environment,
    /// The service it concerns; absent for the environment as a whole (SPEC §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub from_version: String,
    pub to_version: String,
    pub reason: String,
    pub created_at: Timestamp,
    pub created_by: String,
    /// Whether `toVersion` ever ran in this environment (per its release history).
    pub known_target: bool,
    pub warning: Option<String>,
    pub status: RollbackStatus,
    /// Made by the canary engine for an unhealthy canary.
    pub automatic: bool,
    pub canary_id: Option<String>,
    pub executed_at: Option<Timestamp>,
    pub executed_by: Option<String>,
    /// The override that allowed the execution, if one did.
    pub override_id: Option<String>,
    pub outcome_at: Option<Timestamp>,
    pub outcome_message: Option<String>,
}

string_enum! {
    /// How a release came to run in an environment.
    pub enum ReleaseChange ("release change") {
        CanaryCompleted = "canary_completed",
        CanaryPromoted = "canary_promoted",
        Rollback = "rollback",
        /// Flagger reported a successful rollout (`post-rollout`, phase `Succeeded`).
        FlaggerRollout = "flagger_rollout",
    }
}

/// One entry of an environment's release history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    pub environment: Environment,
    /// The service it concerns; absent for the environment as a whole (SPEC §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub release_id: String,
    pub at: Timestamp,
    pub change: ReleaseChange,
    /// The canary or rollback that made the change.
    pub reference: String,
    pub by: String,
}

/// An environment's load shedding setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadShedding {
    pub environment: Environment,
    /// The service it concerns; absent for the environment as a whole (SPEC §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub enabled: bool,
    /// Share of traffic to shed, 0–100.
    pub percentage: u8,
    pub reason: Option<String>,
    pub updated_at: Option<Timestamp>,
    pub updated_by: Option<String>,
}

impl LoadShedding {
    /// An environment whose setting was never changed: off.
    pub fn off(environment: Environment, service: Option<String>) -> Self {
        LoadShedding {
            environment,
            service,
            enabled: false,
            percentage: 0,
            reason: None,
            updated_at: None,
            updated_by: None,
        }
    }
}

string_enum! {
    /// What an event announces.
    pub enum EventType ("event type") {
        CanaryStarted = "canary.started",
        /// A canary's traffic percentage changed (the deploy system applies it).
        CanaryWeightChanged = "canary.weight_changed",
        CanaryPaused = "canary.paused",
        CanaryCompleted = "canary.completed",
        CanaryPromoted = "canary.promoted",
        /// An unhealthy canary was rolled back automatically.
        CanaryRolledBack = "canary.rolled_back",
        /// A rollback was executed (handed to the executor, or to the deploy system).
        RollbackExecuted = "rollback.executed",
        /// The executor reported a rollback's outcome.
        RollbackCompleted = "rollback.completed",
        LockdownEntered = "lockdown.entered",
        LockdownExited = "lockdown.exited",
        OverrideCreated = "override.created",
        OverrideRevoked = "override.revoked",
        /// An override reached its expiry.
        OverrideExpired = "override.expired",
        /// A person asked for an override that other people approve (SPEC §19): votes wanted.
        OverrideRequestCreated = "override_request.created",
        /// The last approval a request needed: its override exists now.
        /// An approval that does not yet decide the request ("1 of 2").
        OverrideRequestVoted = "override_request.voted",
        OverrideRequestApproved = "override_request.approved",
        /// Someone denied an override request: it is over.
        OverrideRequestDenied = "override_request.denied",
        /// An override request waited longer than `pending_ttl_minutes`.
        OverrideRequestExpired = "override_request.expired",
        LoadSheddingChanged = "load_shedding.changed",
        /// The mode changed between `monitor` and `enforce` (lockdown has its own events).
        ModeChanged = "mode.changed",
        ThreatLevelChanged = "threat_level.changed",
        IncidentOpened = "incident.opened",
        IncidentEscalated = "incident.escalated",
        IncidentResolved = "incident.resolved",
        /// A freeze's window opened: by its start, its schedule, or its creation (SPEC §16).
        FreezeStarted = "freeze.started",
        /// A freeze's window closed: by its end, its schedule, or by hand.
        FreezeEnded = "freeze.ended",
        SoakStarted = "soak.started",
        /// One soak evaluation: its verdict, values and thresholds.
        SoakEvaluated = "soak.evaluated",
        /// Every evaluation of the soak passed: the release may go on.
        SoakPassed = "soak.passed",
        /// An evaluation failed (named in the event).
        SoakFailed = "soak.failed",
        /// The soak ended with evaluations that had no data.
        SoakInconclusive = "soak.inconclusive",
        SoakAborted = "soak.aborted",
        /// A signed checkpoint of the audit chain's head (SPEC §20): keep copies of these
        /// out of the database's reach.
        AuditCheckpoint = "audit.checkpoint",
        /// The log no longer holds what an earlier checkpoint signed (cut off or rewritten
        /// behind deploy-safety's back), found when the next checkpoint was made.
        AuditChainBroken = "audit.chain_broken",
    }
}

/// An announced event, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// 1, 2, 3, ... in the order the changes were committed.
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub at: Timestamp,
    pub environment: Option<Environment>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}
