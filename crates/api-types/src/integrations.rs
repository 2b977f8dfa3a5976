//! What deploy engines send and get back (SPEC §17).

use std::collections::BTreeMap;

use deploy_safety_core::{
    Action, Environment, GithubRequest, PollDecision, ReasonCode, ReleaseId, ServiceName,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `GET /integrations/decision` (query) and `POST /integrations/decision` (body): may this
/// action run now?
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DecisionRequest {
    pub action: Action,
    pub environment: Environment,
    /// 1–128 characters of `a-z A-Z 0-9 - _ . /`; absent: the environment as a whole.
    #[serde(default)]
    #[schema(value_type = Option<ServiceName>)]
    #[param(value_type = Option<ServiceName>)]
    pub service: Option<String>,
    /// The release the action concerns.
    #[serde(default)]
    #[schema(value_type = Option<ReleaseId>)]
    #[param(value_type = Option<ReleaseId>)]
    pub release_id: Option<String>,
}

/// The gate's decision told as allow / wait / deny, and where it was recorded.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionAnswer {
    /// `allow`: go ahead. `wait`: ask again later (lockdown, threat level, freeze, missing
    /// override, critical incident). `deny`: a verdict against this release here.
    pub decision: PollDecision,
    pub reason: ReasonCode,
    pub message: String,
    pub hints: Vec<String>,
    /// For `wait`, when the block is known to end (a freeze's end): ask again after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// Monitor mode: allowed, but enforce mode would have blocked it.
    pub would_block: bool,
    /// The override that allowed it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_id: Option<String>,
    /// The seq of the audit entry that records this decision.
    pub audit_seq: u64,
}

/// Flagger's webhook body (`CanaryWebhookPayload` in fluxcd/flagger): the canary's name and
/// namespace, its phase, a checksum of its spec, and the webhook's metadata.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlaggerPayload {
    /// The canary's name (a Kubernetes name).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,63}$", min_length = 1, max_length = 63)]
    pub name: String,
    /// The canary's namespace (a Kubernetes name).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,63}$", min_length = 1, max_length = 63)]
    pub namespace: String,
    /// Flagger's canary phase (`Progressing`, `Succeeded`, ...).
    #[serde(default)]
    pub phase: String,
    /// A hash of the canary's spec, which changes with every new revision: the release,
    /// unless `metadata.releaseId` names one. Flagger has sent it since 1.x.
    #[schema(value_type = ReleaseId)]
    pub checksum: String,
    /// The webhook's `metadata` from the Canary resource; deploy-safety reads `token`,
    /// `environment`, `service` and `releaseId`, and ignores other keys. Event hooks add
    /// `eventMessage`, `eventType` and `timestamp`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// What `GET /integrations/github/pending` lists.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GithubPendingList {
    /// Oldest first.
    pub requests: Vec<GithubRequest>,
    /// More are pending than were listed.
    pub truncated: bool,
}

/// The answer to GitHub's webhook delivery: taken, and what became of it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GithubReceipt {
    /// `false` for deliveries deploy-safety does not act on (a `ping`, another event or
    /// action).
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<GithubRequest>,
    pub message: String,
}

/// GitHub's `deployment_protection_rule` webhook body, the parts deploy-safety reads (GitHub
/// sends more; the rest is ignored). Fields are GitHub's, in its snake_case.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GithubProtectionRuleEvent {
    /// `requested` is the one acted on. (A `ping` has none.)
    #[serde(default)]
    pub action: String,
    /// GitHub's name of the environment being deployed to.
    #[serde(default)]
    pub environment: Option<String>,
    /// Where the answer goes (`{api}/repos/OWNER/REPO/actions/runs/RUN/deployment_protection_rule`).
    #[serde(default)]
    pub deployment_callback_url: Option<String>,
    #[serde(default)]
    pub deployment: Option<GithubDeployment>,
    #[serde(default)]
    pub repository: Option<GithubRepository>,
    #[serde(default)]
    pub installation: Option<GithubInstallation>,
    #[serde(default)]
    pub sender: Option<GithubUser>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GithubDeployment {
    /// The deployment: one job's deployment to the environment (a re-run makes another).
    pub id: u64,
    /// The commit being deployed: the release.
    pub sha: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GithubRepository {
    /// `owner/name`: the service.
    pub full_name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GithubInstallation {
    /// The GitHub App's installation, whose token answers the request.
    pub id: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GithubUser {
    pub login: String,
}
