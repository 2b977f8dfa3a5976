//! The bodies the deploy-safety API reads and writes, shared by the server, the client and the
//! CLI so the three cannot drift apart.
//!
//! Requests reject unknown fields: a misspelt field in a security control is a mistake to
//! report, not to ignore. Responses are camelCase JSON, times RFC 3339 UTC.

pub use deploy_safety_core::OverallHealth;
use deploy_safety_core::{
    Action, AuditDecision, AuditEntry, ChainBreak, Checkpoint, Decision, Environment, GateResult,
    GateState, Incident, IncidentCategory, IncidentStatus, Override, OverrideRequest,
    OverrideStatus, Probe, ProbeKind, ProbeResult, ProbeStatus, ReasonCode, RequestStatus, Role,
    SecurityMode, Severity, ThreatLevel, Timestamp, Validation, ValidationRun, ValidationStatus,
    Vote, VoteKind,
};
use deploy_safety_core::{
    Canary, Evaluation, LoadShedding, Name, PrincipalName, Reason, ReleaseId, ReleaseRecord,
    Rollback, ServiceName, Soak, SoakStatus,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

mod integrations;
pub use integrations::{
    DecisionAnswer, DecisionRequest, FlaggerPayload, GithubDeployment, GithubInstallation,
    GithubPendingList, GithubProtectionRuleEvent, GithubReceipt, GithubRepository, GithubUser,
};

/// Every path of the API lives under this prefix.
pub const API_PREFIX: &str = "/api/deploy-safety";

/// The body of every error response.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// The gate's full decision, when the gate blocked the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// A lower_snake_case error class: `invalid_request`, `unauthorized`, `forbidden`,
    /// `blocked_by_security_gate`, `not_found`, `conflict`, `payload_too_large`,
    /// `unavailable`, ...
    pub code: String,
    pub message: String,
    /// The request field at fault, for `invalid_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The UPPER_CASE policy code, for every refusal made by policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ReasonCode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `GET /security-gate/status`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateStatus {
    pub mode: SecurityMode,
    pub threat_level: ThreatLevel,
    pub lockdown_reason: Option<String>,
    /// Overrides active now.
    pub active_overrides: u64,
    pub lockdown_since: Option<Timestamp>,
    pub mode_reason: Option<String>,
    pub mode_changed_at: Option<Timestamp>,
    pub mode_changed_by: Option<String>,
    pub threat_reason: Option<String>,
    pub threat_changed_at: Option<Timestamp>,
    pub threat_changed_by: Option<String>,
}

impl GateStatus {
    pub fn new(state: GateState, active_overrides: u64) -> Self {
        GateStatus {
            mode: state.mode,
            threat_level: state.threat_level,
            lockdown_reason: state.lockdown_reason,
            active_overrides,
            lockdown_since: state.lockdown_since,
            mode_reason: state.mode_reason,
            mode_changed_at: state.mode_changed_at,
            mode_changed_by: state.mode_changed_by,
            threat_reason: state.threat_reason,
            threat_changed_at: state.threat_changed_at,
            threat_changed_by: state.threat_changed_by,
        }
    }
}

/// `POST /security-gate/mode`. Security team only; entering lockdown needs a reason.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetModeRequest {
    pub mode: SecurityMode,
    #[serde(default)]
    #[schema(value_type = Option<Reason>)]
    pub reason: Option<String>,
}

/// `POST /security-gate/threat-level`. Security team only.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetThreatLevelRequest {
    pub level: ThreatLevel,
    #[schema(value_type = Reason)]
    pub reason: String,
}

/// `POST /security-gate/override`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOverrideRequest {
    pub action: Action,
    pub environment: Environment,
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[serde(default)]
    #[schema(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    /// Business justification, with a ticket reference. Required.
    #[schema(value_type = Reason)]
    pub reason: String,
    /// Must be the caller's own principal name (403 `APPROVER_MISMATCH` otherwise); filled
    /// from the token when absent.
    #[serde(default)]
    #[schema(value_type = Option<PrincipalName>)]
    pub approver: Option<String>,
    /// 1 to the configured maximum (`[overrides] max_ttl_minutes`, 240 unless set: the served
    /// document states this server's); default 60.
    #[serde(default, deserialize_with = "deploy_safety_core::wire::whole_option")]
    #[schema(minimum = 1, maximum = 240)]
    pub ttl_minutes: Option<i64>,
    /// Binds the override to one release.
    #[serde(default)]
    #[schema(value_type = Option<ReleaseId>)]
    pub release_id: Option<String>,
}

/// An override with where it stands now.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverrideView {
    #[serde(flatten)]
    pub record: Override,
    pub status: OverrideStatus,
}

/// `GET /security-gate/overrides`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverrideList {
    /// Newest first, at most 1000.
    pub overrides: Vec<OverrideView>,
    /// More overrides exist than were listed.
    pub truncated: bool,
}

/// Query of `GET /security-gate/overrides`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OverrideListQuery {
    /// Include expired and revoked overrides.
    #[serde(default)]
    pub all: Option<bool>,
}

/// `POST /security-gate/override-requests`: ask for an override that other people approve
/// (SPEC §19). The override it makes has exactly this action, environment, service and
/// release.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOverrideRequest {
    pub action: Action,
    pub environment: Environment,
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[serde(default)]
    #[schema(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    /// Binds the override to one release.
    #[serde(default)]
    #[schema(value_type = Option<ReleaseId>)]
    pub release_id: Option<String>,
    /// Business justification, with a ticket reference. Required.
    #[schema(value_type = Reason)]
    pub reason: String,
    /// The override's lifetime once approved: 1 to the configured maximum; default 60.
    #[serde(default, deserialize_with = "deploy_safety_core::wire::whole_option")]
    #[schema(minimum = 1, maximum = 240)]
    pub ttl_minutes: Option<i64>,
}

/// `POST /security-gate/override-requests/{id}/approve`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VoteBody {
    /// Why, if you like: optional for an approval (required for a denial).
    #[serde(default)]
    #[schema(value_type = Option<Reason>)]
    pub comment: Option<String>,
}

/// `POST /security-gate/override-requests/{id}/deny`: a denial says why.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DenyBody {
    #[schema(value_type = Reason)]
    pub comment: String,
}

impl From<DenyBody> for VoteBody {
    fn from(body: DenyBody) -> Self {
        VoteBody {
            comment: Some(body.comment),
        }
    }
}

/// An override request and where it stands now.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverrideRequestView {
    pub id: String,
    /// `pending`, `approved`, `denied` or `expired` (a pending request past `expiresAt` is
    /// `expired` at once).
    pub status: RequestStatus,
    pub action: Action,
    pub environment: Environment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub release_id: Option<String>,
    pub reason: String,
    pub ttl_minutes: u32,
    #[schema(value_type = PrincipalName)]
    pub requested_by: String,
    pub requested_by_role: Role,
    /// Approvals needed, not counting the requester.
    pub required: u32,
    /// The roles whose votes count.
    pub approver_roles: Vec<Role>,
    /// Every approval, in the order cast.
    pub approvals: Vec<Vote>,
    /// The deny that ended the request.
    pub denial: Option<Vote>,
    pub created_at: Timestamp,
    /// A pending request is `expired` from this instant on.
    pub expires_at: Timestamp,
    /// When it was approved or denied; for an expired request, `expiresAt`.
    pub decided_at: Option<Timestamp>,
    /// The override the last approval made.
    pub override_id: Option<String>,
}

impl OverrideRequestView {
    pub fn new(request: OverrideRequest, now: Timestamp) -> Self {
        let status = request.status_at(now);
        let denial = request
            .votes
            .iter()
            .find(|v| v.vote == VoteKind::Deny)
            .cloned();
        let approvals = request.approvals().cloned().collect();
        // Expired at `expiresAt`, marked by the engine or not yet.
        let decided_at = match status {
            RequestStatus::Expired => Some(request.expires_at),
            _ => request.decided_at,
        };
        OverrideRequestView {
            id: request.id,
            status,
            action: request.action,
            environment: request.environment,
            service: request.service,
            release_id: request.release_id,
            reason: request.reason,
            ttl_minutes: request.ttl_minutes,
            requested_by: request.requested_by,
            requested_by_role: request.requested_by_role,
            required: request.required,
            approver_roles: request.approver_roles,
            approvals,
            denial,
            created_at: request.created_at,
            expires_at: request.expires_at,
            decided_at,
            override_id: request.override_id,
        }
    }
}

/// `GET /security-gate/override-requests`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverrideRequestList {
    /// Newest first, at most 1000.
    pub requests: Vec<OverrideRequestView>,
    /// More requests exist than were listed.
    pub truncated: bool,
}

/// Query of `GET /security-gate/override-requests`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OverrideRequestListQuery {
    /// Only requests that stand so now; absent: every one.
    pub status: Option<RequestStatus>,
}

/// `POST /security-gate/check`: what would the gate decide now?
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckRequest {
    pub action: Action,
    pub environment: Environment,
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[serde(default)]
    #[schema(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<ReleaseId>)]
    pub release_id: Option<String>,
}

/// The decision, and where it was recorded.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckResponse {
    #[serde(flatten)]
    pub decision: Decision,
    /// The seq of the audit entry that records this decision.
    pub audit_seq: u64,
}

/// Query of `GET /audit`: filters and paging, newest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditListQuery {
    pub action: Option<String>,
    pub environment: Option<Environment>,
    pub principal: Option<String>,
    pub decision: Option<AuditDecision>,
    /// Entries at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Entries before this time (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// 1 to 1000; default 50.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<u64>,
}

/// `GET /audit`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    pub entries: Vec<AuditListEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    pub next_cursor: Option<u64>,
}

/// One item of `GET /audit`: an entry, or a stored row that no longer parses.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AuditListEntry {
    Entry(AuditEntry),
    Corrupt(CorruptAuditEntry),
}

/// Told apart by `corrupt`. (Not `#[serde(untagged)]` on the way in: an entry's raw JSON
/// `details` cannot pass through serde's buffering of untagged variants.)
impl<'de> Deserialize<'de> for AuditListEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Marker {
            #[serde(default)]
            corrupt: bool,
        }
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let marker: Marker = serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
        if marker.corrupt {
            serde_json::from_str(raw.get()).map(AuditListEntry::Corrupt)
        } else {
            serde_json::from_str(raw.get()).map(AuditListEntry::Entry)
        }
        .map_err(serde::de::Error::custom)
    }
}

impl AuditListEntry {
    /// The entry, unless its row no longer parses.
    pub fn entry(&self) -> Option<&AuditEntry> {
        match self {
            AuditListEntry::Entry(entry) => Some(entry),
            AuditListEntry::Corrupt(_) => None,
        }
    }

    /// The row's seq as stored.
    pub fn seq(&self) -> i64 {
        match self {
            AuditListEntry::Entry(entry) => i64::try_from(entry.seq).unwrap_or(i64::MAX),
            AuditListEntry::Corrupt(corrupt) => corrupt.seq,
        }
    }
}

/// A row of the audit log that no longer parses (it was altered): what does not parse, and
/// every column as stored. `GET /audit/verify` names the first entry that was altered.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CorruptAuditEntry {
    /// As stored: not necessarily a position in the chain (1, 2, ...).
    pub seq: i64,
    /// Always `true`.
    pub corrupt: bool,
    /// Which column does not parse, and why.
    pub problem: String,
    /// Each column's stored value as text (`null` for NULL; bytes that are not UTF-8 are shown
    /// as U+FFFD).
    pub raw: std::collections::BTreeMap<String, Option<String>>,
}

/// `GET /audit/verify`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerification {
    pub valid: bool,
    /// Entries verified (up to the first broken one).
    pub entries_verified: u64,
    /// The hash of the last verified entry.
    pub head_hash: String,
    pub first_broken: Option<ChainBreak>,
    /// The latest signed checkpoint the database holds, which the chain was checked against
    /// (copies kept outside the database are checked by `deploy-safety audit verify
    /// --checkpoints`).
    #[serde(default)]
    pub latest_checkpoint: Option<Checkpoint>,
}

/// `GET /audit/public-key`: the key checkpoints are signed with.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPublicKey {
    /// The first 16 hex digits of SHA-256 of the 32 raw public key bytes.
    pub key_id: String,
    /// Always `Ed25519`.
    pub algorithm: String,
    /// PEM, SubjectPublicKeyInfo.
    pub public_key: String,
}

/// `GET /health`: `overallHealth` alone without a token; the probes behind it with one.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub overall_health: OverallHealth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Vec<ProbeSummary>>,
    /// This replica, its database, and which replica leads (with a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaHealth>,
}

/// The answering replica and the one running the background work.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaHealth {
    /// This replica's name.
    pub name: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// Whether this replica's database answers now.
    pub database_reachable: bool,
    /// Whether this replica runs the background work (probes, canary steps, deliveries).
    pub leading: bool,
    /// The leading replica as the database records it (PostgreSQL only).
    pub leader: Option<LeaderView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaderView {
    pub replica: String,
    pub since: Timestamp,
    /// How long ago the leader last renewed its lease.
    pub heartbeat_age_ms: i64,
    /// Whether that renewal is recent enough to count as alive.
    pub fresh: bool,
}

/// One probe's latest state, as `GET /health` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSummary {
    pub id: String,
    pub name: String,
    pub kind: ProbeKind,
    pub critical: bool,
    pub status: ProbeStatus,
    /// The last result is too old to trust (counts as failing).
    pub stale: bool,
    pub last_checked_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// `POST /incidents`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenIncidentRequest {
    #[schema(value_type = Reason)]
    pub title: String,
    pub severity: Severity,
    pub category: IncidentCategory,
    /// Absent: the incident concerns every environment.
    #[serde(default)]
    pub environment: Option<Environment>,
}

/// `POST /incidents/{id}/escalate`: the new severity must be higher.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscalateIncidentRequest {
    pub severity: Severity,
    #[schema(value_type = Reason)]
    pub reason: String,
}

/// `POST /incidents/{id}/resolve`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolveIncidentRequest {
    #[schema(value_type = Reason)]
    pub reason: String,
}

/// Query of `GET /incidents`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IncidentListQuery {
    pub status: Option<IncidentStatus>,
    pub severity: Option<Severity>,
    /// Incidents concerning this environment (naming it, or naming none).
    pub environment: Option<Environment>,
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentList {
    pub incidents: Vec<Incident>,
}

/// `POST /validations/start`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartValidationRequest {
    #[schema(value_type = ReleaseId)]
    pub release_id: String,
    pub environment: Environment,
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[serde(default)]
    #[schema(value_type = Option<ServiceName>)]
    pub service: Option<String>,
}

/// A validation with its latest outcome and every run.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationView {
    #[serde(flatten)]
    pub validation: Validation,
    /// The latest run's status (`pending` before the first run).
    pub status: ValidationStatus,
    /// The latest run's gates (all `pending` before the first run).
    pub gates: Vec<GateResult>,
    /// Every run, oldest first. A finished run never changes.
    pub runs: Vec<ValidationRun>,
}

/// Query of `GET /validations`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ValidationListQuery {
    pub release_id: Option<String>,
    pub environment: Option<Environment>,
    /// Only records of this service.
    #[param(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationList {
    pub validations: Vec<ValidationView>,
}

/// `POST /probes`, and each `[[probes]]` of the settings file (where snake_case keys work too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProbeRequest {
    #[schema(value_type = Name)]
    pub name: String,
    /// `http` or `tcp`.
    pub kind: ProbeKind,
    /// http: the URL to request.
    #[serde(default)]
    pub url: Option<String>,
    /// http: the method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// http: statuses that count as success, `200-299` (default) or e.g. `204`.
    #[serde(default, alias = "expected_status")]
    pub expected_status: Option<String>,
    /// tcp: `host:port` to connect to.
    #[serde(default)]
    pub address: Option<String>,
    /// Default 2000 (or the interval, if shorter); 10 to the interval.
    #[serde(
        default,
        alias = "timeout_ms",
        deserialize_with = "deploy_safety_core::wire::whole_option"
    )]
    #[schema(minimum = 10, maximum = 3_600_000)]
    pub timeout_ms: Option<u32>,
    /// Default 10000; 1000 to 3600000.
    #[serde(
        default,
        alias = "interval_ms",
        deserialize_with = "deploy_safety_core::wire::whole_option"
    )]
    #[schema(minimum = 1000, maximum = 3_600_000)]
    pub interval_ms: Option<u32>,
    /// Consecutive failures before failing: 1 to 100 (default 3).
    #[serde(
        default,
        alias = "failure_threshold",
        deserialize_with = "deploy_safety_core::wire::whole_option"
    )]
    #[schema(minimum = 1, maximum = 100)]
    pub failure_threshold: Option<u32>,
    /// Consecutive successes before a failing probe recovers: 1 to 100 (default 1).
    #[serde(
        default,
        alias = "success_threshold",
        deserialize_with = "deploy_safety_core::wire::whole_option"
    )]
    #[schema(minimum = 1, maximum = 100)]
    pub success_threshold: Option<u32>,
    /// A failing critical probe makes the service unhealthy (default false).
    #[serde(default)]
    pub critical: Option<bool>,
}

/// A probe, whether its result is stale, and (for one probe) its recent history.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeView {
    #[serde(flatten)]
    pub probe: Probe,
    pub stale: bool,
    /// Newest first; only in `GET /probes/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<ProbeResult>>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeList {
    pub probes: Vec<ProbeView>,
}

/// Canary settings; each absent field takes its default (SPEC §9).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryConfigRequest {
    /// 1 to 100, at most `maxPercentage`; default 10.
    #[serde(default, deserialize_with = "deploy_safety_core::wire::whole_option")]
    #[schema(minimum = 1, maximum = 100)]
    pub initial_percentage: Option<u8>,
    /// 1 to 100; default 10.
    #[serde(default, deserialize_with = "deploy_safety_core::wire::whole_option")]
    #[schema(minimum = 1, maximum = 100)]
    pub increment_percentage: Option<u8>,
    /// Milliseconds between evaluations, at least 1000; default 300000.
    #[serde(default, deserialize_with = "deploy_safety_core::wire::whole_option")]
    #[schema(minimum = 1000)]
    pub increment_interval: Option<u64>,
    /// 1 to 100, at least `initialPercentage`; default 100.
    #[serde(default, deserialize_with = "deploy_safety_core::wire::whole_option")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_percentage: Option<u8>,
    /// Consecutive unhealthy evaluations before an automatic rollback: 1 to 100; default 1.
    #[serde(default, deserialize_with = "deploy_safety_core::wire::whole_option")]
    #[schema(minimum = 1, maximum = 100)]
    pub failure_threshold: Option<u32>,
}

/// `POST /canary/start`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartCanaryRequest {
    #[schema(value_type = ReleaseId)]
    pub release_id: String,
    pub environment: Environment,
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[serde(default)]
    #[schema(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    #[schema(value_type = ReleaseId)]
    pub deployment_id: String,
    #[serde(default, deserialize_with = "deploy_safety_core::wire::object_option")]
    pub config: Option<CanaryConfigRequest>,
}

/// `POST /canary/promote`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteCanaryRequest {
    pub environment: Environment,
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[serde(default)]
    #[schema(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    /// The canary meant: when given, it must be the active one (409 otherwise), so a promotion
    /// decided on what someone saw never reaches a canary started since.
    #[serde(default)]
    #[schema(max_length = 200)]
    pub canary_id: Option<String>,
}

/// `POST /canary/{environment}/metrics`: the canary's current metrics; any may be absent
/// (absent means unknown for that metric).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryMetricsRequest {
    /// 0 to 100.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub error_rate_percent: Option<f64>,
    /// At least 0.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub latency_p99_ms: Option<f64>,
    /// At least 0.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub baseline_latency_p99_ms: Option<f64>,
    /// At least 0 (above 100 on a machine of several cores).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub cpu_percent: Option<f64>,
    /// 0 to 100.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub memory_percent: Option<f64>,
}

/// A canary, and its latest metrics judged now.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryView {
    #[serde(flatten)]
    pub canary: Canary,
    /// The latest metrics with each metric's verdict, as the next evaluation would see them
    /// now (absent for a finished canary).
    pub current_evaluation: Option<Evaluation>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryList {
    pub canaries: Vec<Canary>,
}

/// Query of `GET /canaries` and `GET /rollbacks`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EnvironmentListQuery {
    pub environment: Option<Environment>,
    /// Only records of this service.
    #[param(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Query naming one service: `GET /canary/{environment}`, `POST /canary/{environment}/metrics`,
/// `GET /releases/{environment}`, `GET /load-shedding/{environment}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServiceQuery {
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[param(value_type = Option<ServiceName>)]
    pub service: Option<String>,
}

/// `GET /environments`: the environments the settings define.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentList {
    pub environments: Vec<deploy_safety_core::EnvironmentSpec>,
}

/// `POST /rollback/create`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRollbackRequest {
    pub environment: Environment,
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[serde(default)]
    #[schema(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    #[schema(value_type = ReleaseId)]
    pub from_version: String,
    #[schema(value_type = ReleaseId)]
    pub to_version: String,
    #[schema(value_type = Reason)]
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackList {
    pub rollbacks: Vec<Rollback>,
}

/// `GET /releases/{environment}`: what ran there, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseHistory {
    pub environment: Environment,
    /// The service whose history this is; absent for the environment as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The release running now, per this history.
    pub current: Option<String>,
    pub releases: Vec<ReleaseRecord>,
}

/// `POST /load-shedding`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetLoadSheddingRequest {
    pub environment: Environment,
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[serde(default)]
    #[schema(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    pub enabled: bool,
    /// Share of traffic to shed: 1 to 100 when enabled (required then); 0 or absent when
    /// disabled.
    #[serde(default, deserialize_with = "deploy_safety_core::wire::whole_option")]
    #[schema(minimum = 0, maximum = 100)]
    pub percentage: Option<u8>,
    #[schema(value_type = Reason)]
    pub reason: String,
}

/// `GET /load-shedding/{environment}`.
pub type LoadSheddingView = LoadShedding;

/// Query of `GET /events`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay events after this seq first (also read from the `Last-Event-ID` header).
    pub since: Option<u64>,
    /// Only events of this environment (and those of none).
    pub environment: Option<Environment>,
}

/// `GET /auth/whoami`: who the caller is and how it authenticated (SPEC §18).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    #[schema(value_type = PrincipalName)]
    pub principal: String,
    /// The same as `principal` (the first version's name for it).
    #[schema(value_type = PrincipalName)]
    pub name: String,
    pub role: Role,
    /// `token`, `oidc:NAME` (the `[[auth.oidc]]` issuer), `sso`, or `token-session` (a
    /// dashboard session signed in with a static token).
    pub authenticated_by: String,
    /// A static token's public id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// OIDC: the claims the matching binding looked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub claims: Option<serde_json::Map<String, serde_json::Value>>,
    /// A session: what a state-changing request must send as `X-CSRF-Token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// Soak settings; each absent field takes its default (SPEC §23: the runbook's numbers, the
/// thresholds' defaults settable in `[soak]`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SoakConfigRequest {
    /// How long the soak lasts, in milliseconds: at least 1000, at most a week; default
    /// 900000 (15 minutes).
    #[serde(default, deserialize_with = "deploy_safety_core::wire::whole_option")]
    #[schema(minimum = 1000, maximum = 604_800_000)]
    pub duration_ms: Option<u64>,
    /// How often it is evaluated, in milliseconds: 1000 to `durationMs`, and at least
    /// `durationMs / 1440` (a soak has at most 1440 evaluations); default 60000.
    #[serde(default, deserialize_with = "deploy_safety_core::wire::whole_option")]
    #[schema(minimum = 1000, maximum = 604_800_000)]
    pub interval_ms: Option<u64>,
    /// The error rate must stay below this, in percent (at least 0; default 0.1).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub max_error_rate_percent: Option<f64>,
    /// p99 latency must stay below the baseline plus this, in percent (at least 0; default 10).
    #[serde(default)]
    #[schema(minimum = 0)]
    pub max_latency_increase_percent: Option<f64>,
}

/// `POST /soaks`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartSoakRequest {
    #[schema(value_type = ReleaseId)]
    pub release_id: String,
    pub environment: Environment,
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[serde(default)]
    #[schema(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    /// Replaces `{deploymentId}` in the environment's Prometheus queries; default the release.
    #[serde(default)]
    #[schema(value_type = Option<ReleaseId>)]
    pub deployment_id: Option<String>,
    #[serde(default, deserialize_with = "deploy_safety_core::wire::object_option")]
    pub config: Option<SoakConfigRequest>,
}

/// `POST /soaks/{id}/metrics`: the release's current metrics; any may be absent (absent:
/// that evaluation is `unknown`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SoakMetricsRequest {
    /// 0 to 100.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub error_rate_percent: Option<f64>,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub latency_p99_ms: Option<f64>,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub baseline_latency_p99_ms: Option<f64>,
}

/// `POST /soaks/{id}/abort`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortSoakRequest {
    #[schema(value_type = Reason)]
    pub reason: String,
}

/// Query of `GET /soaks`, newest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SoakListQuery {
    pub release_id: Option<String>,
    pub environment: Option<Environment>,
    #[param(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    pub status: Option<SoakStatus>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// `GET /soaks`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoakList {
    pub soaks: Vec<Soak>,
}

/// `POST /freezes` (SPEC §16): a one-off window (`start`, `end`) or a recurring one
/// (`schedule`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateFreezeRequest {
    /// 1 to 64 characters of `A-Z a-z 0-9 . _ @ -`, e.g. `holiday-2026`.
    #[schema(value_type = Name)]
    pub name: String,
    /// Why nobody may deploy, shown in every decision it makes. Required.
    #[schema(value_type = Reason)]
    pub reason: String,
    /// Absent or empty: every environment.
    #[serde(default)]
    pub environments: Option<Vec<Environment>>,
    /// Absent or empty: every request. Listed: only requests that name one of them.
    #[serde(default)]
    #[schema(value_type = Option<Vec<ServiceName>>)]
    pub services: Option<Vec<String>>,
    /// The gated actions it stops; default `deploy.canary.start` and `deploy.canary.promote`.
    #[serde(default)]
    pub actions: Option<Vec<Action>>,
    /// RFC 3339; absent: now. With a schedule: no window before it.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub start: Option<String>,
    /// RFC 3339, after `start` (and, without a schedule, in the future); absent: until ended by
    /// hand. With a schedule: no window after it.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub end: Option<String>,
    /// A recurring window instead of one.
    #[serde(default, deserialize_with = "deploy_safety_core::wire::object_option")]
    pub schedule: Option<deploy_safety_core::ScheduleSpec>,
    /// Nothing lifts a hard freeze but its end; a soft one (default) yields to a covering
    /// override.
    #[serde(default)]
    pub hard: Option<bool>,
}

/// A freeze and where it stands now.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeView {
    #[serde(flatten)]
    pub freeze: deploy_safety_core::Freeze,
    /// A window is in force now.
    pub active: bool,
    /// While active: when the window ends (absent: until ended by hand).
    pub active_until: Option<Timestamp>,
    /// While not active: when the next window starts and ends (absent: none is coming).
    pub next_start: Option<Timestamp>,
    pub next_end: Option<Timestamp>,
    /// Ended, or past its end: it stops nothing any more.
    pub over: bool,
}

/// Query of `GET /freezes`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FreezeListQuery {
    /// Include freezes that are over.
    pub all: Option<bool>,
    /// 1 to 5000; default 1000.
    #[param(minimum = 1, maximum = 5000)]
    pub limit: Option<u32>,
}

/// `GET /freezes`, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeList {
    pub freezes: Vec<FreezeView>,
    /// More freezes exist than were listed.
    pub truncated: bool,
}

/// `DELETE /freezes/{id}`: end it now.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndFreezeRequest {
    /// Why it ends early (recorded in the audit log).
    #[serde(default)]
    #[schema(value_type = Option<Reason>)]
    pub reason: Option<String>,
}
