//! Release validation (SPEC §7): the built-in gates' verdicts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::environment::KnownEnvironment;
use crate::health::OverallHealth;
use crate::model::{
    Environment, GateState, OpenIncident, SecurityMode, Severity, ThreatLevel, string_enum,
};
use crate::time::Timestamp;

string_enum! {
    /// A release gate's (or a whole validation's) state.
    pub enum CheckStatus ("gate status") {
        Pending = "pending",
        Passed = "passed",
        Failed = "failed",
    }
}

string_enum! {
    /// Where a validation stands: its latest run's outcome.
    pub enum ValidationStatus ("validation status") {
        /// Never run.
        Pending = "pending",
        /// A run is in progress.
        Running = "running",
        Passed = "passed",
        Failed = "failed",
    }
}

string_enum! {
    pub enum GateKind ("gate kind") {
        /// One of [`BUILT_IN_GATES`].
        Builtin = "builtin",
        /// An operator's HTTP gate from the settings file.
        Http = "http",
    }
}

/// A release validation: which release, where, started by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub id: String,
    pub release_id: String,
    pub environment: Environment,
    /// The service it concerns; absent for the environment as a whole (SPEC §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub created_at: Timestamp,
    pub created_by: String,
}

/// One gate's result in one run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    pub name: String,
    pub kind: GateKind,
    pub status: CheckStatus,
    /// Why, in words.
    pub message: String,
    pub duration_ms: u64,
}

/// One run of a validation's gates. A finished run never changes: running again adds a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationRun {
    /// 1 for the first run of the validation, then 2, 3, ...
    pub number: u32,
    pub status: ValidationStatus,
    pub started_at: Timestamp,
    pub started_by: String,
    pub finished_at: Option<Timestamp>,
    pub gates: Vec<GateResult>,
}

/// The built-in gates, in the order they run and are shown.
pub const BUILT_IN_GATES: &[&str] = &[
    "security-mode",
    "threat-level",
    "health",
    "incidents",
    "environment-parity",
    FREEZE_GATE,
];

/// The built-in gate that fails while a freeze would stop `deploy.canary.start` of the
/// release in its environment (SPEC §16).
pub const FREEZE_GATE: &str = "freeze";

/// The built-in gate that needs a passed soak of the release in staging before production
/// (SPEC §23). It runs only where `[soak] required_before_production` is set, after
/// [`BUILT_IN_GATES`].
pub const SOAK_GATE: &str = "soak";

/// What the built-in gates look at.
#[derive(Clone, Copy, Debug)]
pub struct ValidationInputs<'a> {
    pub environment: KnownEnvironment,
    /// Where the release must have passed first (the environment's `promotes_from`).
    pub promotes_from: &'a [Environment],
    pub release_id: &'a str,
    pub state: &'a GateState,
    pub health: OverallHealth,
    pub open_incidents: &'a [OpenIncident],
    /// Whether this release has a passed validation in one of `promotes_from`.
    pub staging_passed: bool,
    /// Whether this release has a passed soak in one of `promotes_from`.
    pub staging_soak_passed: bool,
    /// Why a freeze would stop the release's canary start there now, if one would.
    pub frozen: Option<&'a str>,
}

/// A gate's verdict and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateVerdict {
    pub status: CheckStatus,
    pub message: String,
}

fn verdict(passed: bool, message: String) -> GateVerdict {
    GateVerdict {
        status: if passed {
            CheckStatus::Passed
        } else {
            CheckStatus::Failed
        },
        message,
    }
}

/// The verdict of the built-in gate `name`; `None` if there is no such built-in gate.
pub fn built_in_gate(name: &str, inputs: &ValidationInputs<'_>) -> Option<GateVerdict> {
    let state = inputs.state;
    Some(match name {
        "security-mode" => match state.mode {
            SecurityMode::Lockdown => verdict(
                false,
                format!(
                    "the gate is in lockdown: {}",
                    state
                        .lockdown_reason
                        .as_deref()
                        .unwrap_or("no reason recorded")
                ),
            ),
            mode => verdict(true, format!("security mode is {mode}")),
        },
        "threat-level" => verdict(
            state.threat_level < ThreatLevel::High,
            format!(
                "threat level is {} (must be below high)",
                state.threat_level
            ),
        ),
        "health" => verdict(
            inputs.health == OverallHealth::Healthy,
            format!(
                "overall health is {}",
                match inputs.health {
                    OverallHealth::Healthy => "healthy",
                    OverallHealth::Degraded => "degraded",
                    OverallHealth::Unhealthy => "unhealthy",
                }
            ),
        ),
        "incidents" => {
            let critical: Vec<&str> = inputs
                .open_incidents
                .iter()
                .filter(|i| i.severity == Severity::Critical && i.concerns(inputs.environment.name))
                .map(|i| i.id.as_str())
                .collect();
            if critical.is_empty() {
                verdict(
                    true,
                    format!("no open critical incident for {}", inputs.environment),
                )
            } else {
                verdict(
                    false,
                    format!(
                        "open critical incident(s) for {}: {}",
                        inputs.environment,
                        critical.join(", ")
                    ),
                )
            }
        }
        "environment-parity" if !inputs.environment.is_production() => {
            verdict(true, not_applicable(inputs.environment))
        }
        "environment-parity" if inputs.staging_passed => verdict(
            true,
            format!(
                "release {} passed validation in {}",
                inputs.release_id,
                one_of(inputs.promotes_from)
            ),
        ),
        "environment-parity" => verdict(
            false,
            format!(
                "release {} has no passed validation in {}: validate it there first",
                inputs.release_id,
                one_of(inputs.promotes_from)
            ),
        ),
        FREEZE_GATE => match inputs.frozen {
            Some(why) => verdict(false, why.to_owned()),
            None => verdict(
                true,
                format!(
                    "no freeze stops deploy.canary.start in {}",
                    inputs.environment
                ),
            ),
        },
        SOAK_GATE if !inputs.environment.is_production() => {
            verdict(true, not_applicable(inputs.environment))
        }
        SOAK_GATE if inputs.staging_soak_passed => verdict(
            true,
            format!(
                "release {} passed a soak in {}",
                inputs.release_id,
                one_of(inputs.promotes_from)
            ),
        ),
        SOAK_GATE => verdict(
            false,
            format!(
                "release {} has no passed soak in {}: soak it there first (deploy-safety soak start --release {} --environment {})",
                inputs.release_id,
                one_of(inputs.promotes_from),
                inputs.release_id,
                inputs
                    .promotes_from
                    .first()
                    .map_or("staging", Environment::as_str)
            ),
        ),
        _ => return None,
    })
}

/// "not applicable in staging", or "... in qa (tier staging)" for a configured one.
fn not_applicable(environment: KnownEnvironment) -> String {
    if environment.name.as_str() == environment.tier.as_str() {
        format!("not applicable in {}", environment.name)
    } else {
        format!(
            "not applicable in {} (tier {})",
            environment.name, environment.tier
        )
    }
}

/// "staging", or "one of qa, staging-eu": where a release must have passed first.
pub fn one_of(environments: &[Environment]) -> String {
    match environments {
        [] => "no environment (none is configured to promote from)".to_owned(),
        [only] => only.to_string(),
        many => format!(
            "one of {}",
            many.iter()
                .map(Environment::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A validation passes when every gate passed; it fails when any gate failed.
pub fn overall_status(gates: impl IntoIterator<Item = CheckStatus>) -> CheckStatus {
    let mut overall = CheckStatus::Passed;
    for status in gates {
        match status {
            CheckStatus::Failed => return CheckStatus::Failed,
            CheckStatus::Pending => overall = CheckStatus::Pending,
            CheckStatus::Passed => {}
        }
    }
    overall
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        state: &'a GateState,
        incidents: &'a [OpenIncident],
        environment: Environment,
    ) -> ValidationInputs<'a> {
        ValidationInputs {
            environment: crate::Environments::built_in()
                .resolve(environment)
                .expect("a built-in environment"),
            promotes_from: &[Environment::STAGING],
            frozen: None,
            release_id: "v1.2.3",
            state,
            health: OverallHealth::Healthy,
            open_incidents: incidents,
            staging_passed: false,
            staging_soak_passed: false,
        }
    }

    fn status(name: &str, i: &ValidationInputs<'_>) -> CheckStatus {
        built_in_gate(name, i).unwrap().status
    }

    #[test]
    fn every_gate_passes_on_a_quiet_day_in_staging() {
        let state = GateState::default();
        let i = inputs(&state, &[], Environment::STAGING);
        for gate in BUILT_IN_GATES {
            assert_eq!(status(gate, &i), CheckStatus::Passed, "{gate}");
        }
        assert_eq!(
            built_in_gate("environment-parity", &i).unwrap().message,
            "not applicable in staging"
        );
        assert_eq!(built_in_gate("nope", &i), None);
    }

    #[test]
    fn each_gate_fails_for_its_own_reason() {
        let lockdown = GateState {
            mode: SecurityMode::Lockdown,
            lockdown_reason: Some("breach".into()),
            ..GateState::default()
        };
        let i = inputs(&lockdown, &[], Environment::STAGING);
        let v = built_in_gate("security-mode", &i).unwrap();
        assert_eq!(v.status, CheckStatus::Failed);
        assert!(v.message.contains("breach"));

        for (level, expected) in [
            (ThreatLevel::Medium, CheckStatus::Passed),
            (ThreatLevel::High, CheckStatus::Failed),
            (ThreatLevel::Critical, CheckStatus::Failed),
        ] {
            let state = GateState {
                threat_level: level,
                ..GateState::default()
            };
            assert_eq!(
                status("threat-level", &inputs(&state, &[], Environment::STAGING)),
                expected
            );
        }

        let state = GateState::default();
        for (health, expected) in [
            (OverallHealth::Healthy, CheckStatus::Passed),
            (OverallHealth::Degraded, CheckStatus::Failed),
            (OverallHealth::Unhealthy, CheckStatus::Failed),
        ] {
            let i = ValidationInputs {
                health,
                ..inputs(&state, &[], Environment::STAGING)
            };
            assert_eq!(status("health", &i), expected);
        }

        let incident = |severity, environment| OpenIncident {
            id: "inc_9".into(),
            title: "t".into(),
            severity,
            environment,
        };
        let cases = [
            (incident(Severity::Critical, None), CheckStatus::Failed),
            (
                incident(Severity::Critical, Some(Environment::STAGING)),
                CheckStatus::Failed,
            ),
            (
                incident(Severity::Critical, Some(Environment::PRODUCTION)),
                CheckStatus::Passed,
            ),
            (incident(Severity::High, None), CheckStatus::Passed),
        ];
        for (open, expected) in cases {
            let list = [open];
            assert_eq!(
                status("incidents", &inputs(&state, &list, Environment::STAGING)),
                expected
            );
        }

        let prod = inputs(&state, &[], Environment::PRODUCTION);
        assert_eq!(status("environment-parity", &prod), CheckStatus::Failed);
        let prod = ValidationInputs {
            staging_passed: true,
            ..prod
        };
        assert_eq!(status("environment-parity", &prod), CheckStatus::Passed);

        assert_eq!(
            status(SOAK_GATE, &inputs(&state, &[], Environment::STAGING)),
            CheckStatus::Passed
        );
        let prod = inputs(&state, &[], Environment::PRODUCTION);
        let refused = built_in_gate(SOAK_GATE, &prod).unwrap();
        assert_eq!(refused.status, CheckStatus::Failed);
        assert!(
            refused
                .message
                .contains("deploy-safety soak start --release v1.2.3"),
            "{}",
            refused.message
        );
        let prod = ValidationInputs {
            staging_soak_passed: true,
            ..prod
        };
        assert_eq!(status(SOAK_GATE, &prod), CheckStatus::Passed);
    }

    #[test]
    fn overall_status_is_passed_only_when_all_passed() {
        use CheckStatus::*;
        assert_eq!(overall_status([Passed, Passed]), Passed);
        assert_eq!(overall_status([Passed, Failed, Pending]), Failed);
        assert_eq!(overall_status([Passed, Pending]), Pending);
    }
}
