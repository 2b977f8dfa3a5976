//! Health (SPEC §8): when a probe counts as failing, and what the probes add up to.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::string_enum;
use crate::time::Timestamp;

string_enum! {
    /// Where a probe stands after its recent checks.
    pub enum ProbeStatus ("probe status") {
        /// Not checked yet, or not enough checks to say.
        Unknown = "unknown",
        Healthy = "healthy",
        /// `failureThreshold` consecutive checks failed; it recovers after `successThreshold`
        /// consecutive successes.
        Failing = "failing",
    }
}

/// The service's health, worst first in severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OverallHealth {
    Healthy,
    Degraded,
    Unhealthy,
}

/// One check's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    Success,
    Failure,
}

/// How many checks in a row change a probe's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    /// Consecutive failures before the probe is failing (at least 1).
    pub failure_threshold: u32,
    /// Consecutive successes before a failing probe is healthy again (at least 1).
    pub success_threshold: u32,
}

/// A probe's running state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeState {
    pub status: ProbeStatus,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    pub last_checked_at: Option<Timestamp>,
    /// The last failure's message, kept until the probe is healthy again.
    pub last_error: Option<String>,
}

impl Default for ProbeState {
    fn default() -> Self {
        ProbeState {
            status: ProbeStatus::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            last_checked_at: None,
            last_error: None,
        }
    }
}

impl ProbeState {
    /// The state after one more check. A probe not yet known healthy becomes healthy at its
    /// first success; a failing one needs `success_threshold` successes in a row. Any probe
    /// becomes failing after `failure_threshold` failures in a row.
    pub fn observe(
        &self,
        outcome: CheckOutcome,
        error: Option<&str>,
        thresholds: Thresholds,
        now: Timestamp,
    ) -> ProbeState {
        let mut next = self.clone();
        next.last_checked_at = Some(now);
        match outcome {
            CheckOutcome::Success => {
                next.consecutive_successes = self.consecutive_successes.saturating_add(1);
                next.consecutive_failures = 0;
                let recovered = match self.status {
                    ProbeStatus::Failing => {
                        next.consecutive_successes >= thresholds.success_threshold.max(1)
                    }
                    ProbeStatus::Unknown | ProbeStatus::Healthy => true,
                };
                if recovered {
                    next.status = ProbeStatus::Healthy;
                    next.last_error = None;
                }
            }
            CheckOutcome::Failure => {
                next.consecutive_failures = self.consecutive_failures.saturating_add(1);
                next.consecutive_successes = 0;
                next.last_error = error.map(str::to_owned);
                if next.consecutive_failures >= thresholds.failure_threshold.max(1) {
                    next.status = ProbeStatus::Failing;
                }
            }
        }
        next
    }
}

/// SPEC §8: unhealthy when a critical probe fails, degraded when another probe fails or a
/// probe's state is not known yet, healthy otherwise.
pub fn overall_health(probes: impl IntoIterator<Item = (bool, ProbeStatus)>) -> OverallHealth {
    let mut overall = OverallHealth::Healthy;
    for (critical, status) in probes {
        match (critical, status) {
            (true, ProbeStatus::Failing) => return OverallHealth::Unhealthy,
            (false, ProbeStatus::Failing) | (_, ProbeStatus::Unknown) => {
                overall = OverallHealth::Degraded;
            }
            (_, ProbeStatus::Healthy) => {}
        }
    }
    overall
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        failure_threshold: 3,
        success_threshold: 2,
    };

    fn run(outcomes: &[CheckOutcome]) -> Vec<ProbeStatus> {
        let mut state = ProbeState::default();
        outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| {
                state = state.observe(*o, Some("boom"), T, Timestamp::from_unix_millis(i as i64));
                state.status
            })
            .collect()
    }

    #[test]
    fn thresholds_decide_failing_and_recovery() {
        use CheckOutcome::{Failure as F, Success as S};
        use ProbeStatus::{Failing, Healthy, Unknown};
        assert_eq!(run(&[S]), [Healthy]);
        assert_eq!(run(&[F, F, F]), [Unknown, Unknown, Failing]);
        assert_eq!(
            run(&[S, F, F, S, F, F, F]),
            [
                Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Failing
            ]
        );
        assert_eq!(
            run(&[F, F, F, S, F, S, S]),
            [
                Unknown, Unknown, Failing, Failing, Failing, Failing, Healthy
            ]
        );
    }

    #[test]
    fn errors_are_kept_until_healthy() {
        let t = Timestamp::from_unix_millis(0);
        let failed = ProbeState::default().observe(CheckOutcome::Failure, Some("refused"), T, t);
        assert_eq!(failed.last_error.as_deref(), Some("refused"));
        assert_eq!(failed.consecutive_failures, 1);
        let ok = failed.observe(CheckOutcome::Success, None, T, t);
        assert_eq!(ok.last_error, None);
        assert_eq!(ok.last_checked_at, Some(t));
    }

    #[test]
    fn overall_is_the_worst_case() {
        use ProbeStatus::*;
        assert_eq!(overall_health([]), OverallHealth::Healthy);
        assert_eq!(
            overall_health([(true, Healthy), (false, Healthy)]),
            OverallHealth::Healthy
        );
        assert_eq!(
            overall_health([(true, Healthy), (false, Failing)]),
            OverallHealth::Degraded
        );
        assert_eq!(overall_health([(false, Unknown)]), OverallHealth::Degraded);
        assert_eq!(
            overall_health([(false, Failing), (true, Failing)]),
            OverallHealth::Unhealthy
        );
        assert_eq!(
            overall_health([(true, Failing), (false, Healthy)]),
            OverallHealth::Unhealthy
        );
        assert_eq!(overall_health([(true, Unknown)]), OverallHealth::Degraded);
    }
}
