//! How deploy engines' questions are answered (SPEC §17): the gate's one decision (§3), told
//! in three words — allow, wait, deny — so that a poller knows whether to proceed, ask again
//! later, or give up on this release here.

use serde::Serialize;

use crate::gate::Decision;
use crate::model::string_enum;
use crate::reason::ReasonCode;
use crate::time::Timestamp;

string_enum! {
    /// What a deploy engine should do with its request.
    pub enum PollDecision ("decision") {
        /// The gate allows it now.
        Allow = "allow",
        /// Blocked by something that clears without a new release (lockdown, threat level,
        /// freeze, a missing override, a critical incident): ask again later.
        Wait = "wait",
        /// A verdict against this release here: waiting will not change the answer.
        Deny = "deny",
    }
}

string_enum! {
    /// The hooks Flagger calls (its `CanaryWebhook.type`).
    pub enum FlaggerHook ("Flagger hook") {
        /// Before the canary starts: `deploy.canary.start`.
        ConfirmRollout = "confirm-rollout",
        /// Before traffic reaches the canary: a release validation.
        PreRollout = "pre-rollout",
        /// Every analysis iteration: a step, as `deploy.canary.promote`.
        Rollout = "rollout",
        /// Before each traffic increase: a step, as `deploy.canary.promote`.
        ConfirmTrafficIncrease = "confirm-traffic-increase",
        /// Before promotion: `deploy.canary.promote`.
        ConfirmPromotion = "confirm-promotion",
        /// After the rollout succeeded or failed: recorded.
        PostRollout = "post-rollout",
        /// "Should I roll back now?"
        Rollback = "rollback",
        /// Every Kubernetes event of the canary: recorded.
        Event = "event",
    }
}

/// A fact recorded against a release in one environment (and service), which no change of
/// the gate's state undoes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ReleaseVerdict {
    /// The release's latest validation here failed.
    #[serde(rename_all = "camelCase")]
    ValidationFailed {
        validation_id: String,
        failed_gates: Vec<String>,
    },
    /// Its canary here turned unhealthy and was rolled back.
    #[serde(rename_all = "camelCase")]
    CanaryRolledBack { canary_id: String },
    /// A rollback away from it was executed here.
    #[serde(rename_all = "camelCase")]
    RolledBackAway {
        rollback_id: String,
        to_version: String,
    },
}

impl ReleaseVerdict {
    pub fn reason(&self) -> ReasonCode {
        match self {
            ReleaseVerdict::ValidationFailed { .. } => ReasonCode::ValidationFailed,
            ReleaseVerdict::CanaryRolledBack { .. } => ReasonCode::CanaryRolledBack,
            ReleaseVerdict::RolledBackAway { .. } => ReasonCode::ReleaseRolledBack,
        }
    }

    pub fn message(&self, release: &str, place: &str) -> String {
        match self {
            ReleaseVerdict::ValidationFailed {
                validation_id,
                failed_gates,
            } => format!(
                "the latest validation of {release} in {place} ({validation_id}) failed: {}",
                if failed_gates.is_empty() {
                    "no gate passed".to_owned()
                } else {
                    failed_gates.join(", ")
                }
            ),
            ReleaseVerdict::CanaryRolledBack { canary_id } => format!(
                "the canary of {release} in {place} ({canary_id}) was rolled back as unhealthy"
            ),
            ReleaseVerdict::RolledBackAway {
                rollback_id,
                to_version,
            } => format!("{place} was rolled back from {release} to {to_version} ({rollback_id})"),
        }
    }
}

/// The answer a deploy engine gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollAnswer {
    pub decision: PollDecision,
    pub reason: ReasonCode,
    pub message: String,
    pub hints: Vec<String>,
    /// When asking again makes sense, where the gate knows it (a freeze's end).
    pub retry_after_seconds: Option<u64>,
}

/// Tells the gate's `decision` (and any verdict against the release) as allow / wait / deny.
///
/// A verdict against the release comes first: however the gate's state changes, the release
/// stays failed here, so "wait" would have the engine wait for nothing. Otherwise an allowed
/// decision (monitor mode's "would block" included) is `allow`, and every denial of §3 is
/// `wait`: each clears without a new release. `block_ends` is when what blocks ends, where
/// known.
pub fn answer(
    decision: &Decision,
    verdict: Option<&ReleaseVerdict>,
    block_ends: Option<Timestamp>,
    place: &str,
) -> PollAnswer {
    if let Some(verdict) = verdict {
        let release = decision.release_id.as_deref().unwrap_or("the release");
        return PollAnswer {
            decision: PollDecision::Deny,
            reason: verdict.reason(),
            message: verdict.message(release, place),
            hints: vec![
                "Fix the release and deploy a new one; this one stays refused here.".to_owned(),
            ],
            retry_after_seconds: None,
        };
    }
    if decision.allowed {
        return PollAnswer {
            decision: PollDecision::Allow,
            reason: decision.reason,
            message: decision.message.clone(),
            hints: decision.hints.clone(),
            retry_after_seconds: None,
        };
    }
    let retry_after_seconds = block_ends.map(|end| {
        let millis = end.millis_since(decision.decided_at).max(0);
        // Round up: asking a moment before the end would only get another `wait`.
        u64::try_from(millis)
            .unwrap_or_default()
            .div_ceil(1_000)
            .max(1)
    });
    PollAnswer {
        decision: PollDecision::Wait,
        reason: decision.reason,
        message: decision.message.clone(),
        hints: decision.hints.clone(),
        retry_after_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Action, Environment, SecurityMode};

    fn decision(allowed: bool, reason: ReasonCode, would_block: bool) -> Decision {
        Decision {
            allowed,
            reason,
            message: format!("{reason}"),
            override_id: None,
            hints: vec!["a hint".to_owned()],
            would_block,
            mode: SecurityMode::Enforce,
            action: Action::CanaryStart,
            environment: Environment::PRODUCTION,
            release_id: Some("v1.2.3".to_owned()),
            service: None,
            decided_at: Timestamp::from_unix_millis(1_000_000),
        }
    }

    fn failed_validation() -> ReleaseVerdict {
        ReleaseVerdict::ValidationFailed {
            validation_id: "val_1".to_owned(),
            failed_gates: vec!["unit-tests".to_owned()],
        }
    }

    #[test]
    fn each_decision_class() {
        let rolled_back = ReleaseVerdict::RolledBackAway {
            rollback_id: "rb_1".to_owned(),
            to_version: "v1.2.2".to_owned(),
        };
        let canary = ReleaseVerdict::CanaryRolledBack {
            canary_id: "can_1".to_owned(),
        };
        let failed = failed_validation();
        let end = Some(Timestamp::from_unix_millis(1_000_000 + 90_500));
        use PollDecision::{Allow, Deny, Wait};
        use ReasonCode as R;
        let d = decision;
        // (gate decision, verdict, block end) → (answer, reason, retry after)
        type Row<'v> = (
            Decision,
            Option<&'v ReleaseVerdict>,
            Option<Timestamp>,
            PollDecision,
            ReasonCode,
            Option<u64>,
        );
        #[rustfmt::skip]
        let table: Vec<Row<'_>> = vec![
            (d(true, R::Allowed, false), None, None, Allow, R::Allowed, None),
            (d(true, R::Override, false), None, None, Allow, R::Override, None),
            (d(true, R::OverrideRequired, true), None, None, Allow, R::OverrideRequired, None),
            (d(false, R::Lockdown, false), None, None, Wait, R::Lockdown, None),
            (d(false, R::ThreatLevel, false), None, None, Wait, R::ThreatLevel, None),
            (d(false, R::OverrideRequired, false), None, None, Wait, R::OverrideRequired, None),
            (d(false, R::CriticalIncident, false), None, None, Wait, R::CriticalIncident, None),
            (d(false, R::Freeze, false), None, end, Wait, R::Freeze, Some(91)),
            (d(true, R::Allowed, false), Some(&failed), None, Deny, R::ValidationFailed, None),
            (d(false, R::Lockdown, false), Some(&canary), None, Deny, R::CanaryRolledBack, None),
            (d(false, R::Freeze, false), Some(&rolled_back), end, Deny, R::ReleaseRolledBack, None),
        ];
        for (decision, verdict, block_ends, want, reason, retry) in table {
            let got = answer(&decision, verdict, block_ends, "production");
            assert_eq!(
                (got.decision, got.reason, got.retry_after_seconds),
                (want, reason, retry),
                "{decision:?} {verdict:?}"
            );
            assert!(!got.message.is_empty());
        }
    }

    #[test]
    fn a_deny_names_the_release_and_what_failed() {
        let got = answer(
            &decision(true, ReasonCode::Allowed, false),
            Some(&failed_validation()),
            None,
            "staging/payments",
        );
        assert_eq!(
            got.message,
            "the latest validation of v1.2.3 in staging/payments (val_1) failed: unit-tests"
        );
    }

    #[test]
    fn retry_after_is_at_least_a_second() {
        let d = decision(false, ReasonCode::Freeze, false);
        let got = answer(&d, None, Some(d.decided_at), "production");
        assert_eq!(got.retry_after_seconds, Some(1));
    }
}

string_enum! {
    /// Where a GitHub deployment protection rule request stands.
    pub enum GithubRequestState ("GitHub request state") {
        /// Waiting for the gate to allow or deny it; decided again when the gate changes.
        Pending = "pending",
        /// Approved: the callback says `approved`.
        Approved = "approved",
        /// Rejected: the callback says `rejected`, with the reason.
        Rejected = "rejected",
        /// Still waiting when GitHub stops waiting (30 days): no answer is sent.
        Expired = "expired",
    }
}

/// A GitHub deployment protection rule request: one workflow run asking to deploy to one
/// GitHub environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GithubRequest {
    pub id: String,
    pub received_at: Timestamp,
    /// GitHub's name for the environment, as received (the callback repeats it).
    pub github_environment: String,
    /// The deploy-safety environment it maps to; absent when it maps to none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<crate::model::Environment>,
    /// The repository (`owner/name`), which is the service.
    pub service: String,
    /// The commit being deployed, which is the release.
    pub release_id: String,
    pub action: crate::model::Action,
    pub installation_id: u64,
    /// GitHub's deployment: one job's deployment to the environment (a re-run makes another).
    pub deployment_id: u64,
    /// Where GitHub takes the answer.
    pub callback_url: String,
    /// Who started the workflow run, as GitHub says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    pub state: GithubRequestState,
    /// Why, as of the latest decision.
    pub reason: ReasonCode,
    pub message: String,
    /// The status comment of a wait has been queued (at most one per request).
    pub commented: bool,
    /// When a pending request is decided again at the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_decision_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    /// When GitHub stops waiting for an answer.
    pub expires_at: Timestamp,
    /// The audit entry of the latest decision recorded.
    pub audit_seq: u64,
}
