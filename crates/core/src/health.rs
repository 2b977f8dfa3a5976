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

string_enum! {
    /// One check's result.
    pub enum CheckOutcome ("check outcome") {
        Success = "success",
        Failure = "failure",
    }
}

string_enum! {
    /// What a probe checks.
    pub enum ProbeKind ("probe kind") {
        /// An HTTP request whose status must fall in a range.
        Http = "http",
        /// A TCP connection that must open.
        Tcp = "tcp",
        /// The service's own database: a write must commit.
        Database = "database",
    }
}

string_enum! {
    /// Where a probe was defined.
    pub enum ProbeSource ("probe source") {
        /// Always present (the database probe).
        Builtin = "builtin",
        /// The settings file; changed there, not through the API.
        Config = "config",
        /// `POST /probes`.
        Api = "api",
    }
}

/// An inclusive range of HTTP status codes, written `200-299` or `204`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusRange {
    pub min: u16,
    pub max: u16,
}

impl StatusRange {
    /// Any 2xx.
    pub const SUCCESS: StatusRange = StatusRange { min: 200, max: 299 };

    pub fn parse(text: &str) -> Result<StatusRange, crate::text::InvalidText> {
        let invalid = || {
            crate::text::InvalidText(format!(
                "`{text}` is not a status range like 200-299 or 204 (codes 100 to 599)"
            ))
        };
        let (min, max) = match text.trim().split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (text.trim(), text.trim()),
        };
        let min: u16 = min.parse().map_err(|_| invalid())?;
        let max: u16 = max.parse().map_err(|_| invalid())?;
        if !(100..=599).contains(&min) || !(100..=599).contains(&max) || min > max {
            return Err(invalid());
        }
        Ok(StatusRange { min, max })
    }

    pub fn contains(self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

impl std::fmt::Display for StatusRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// What a probe checks and how often; validated before it is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeDefinition {
    pub name: String,
    pub kind: ProbeKind,
    /// The URL (http), `host:port` (tcp), or `database`.
    pub target: String,
    /// HTTP method (http only).
    pub method: Option<String>,
    /// Statuses that count as success (http only).
    pub expected_status: Option<StatusRange>,
    pub timeout_ms: u32,
    pub interval_ms: u32,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    /// A failing critical probe makes the service unhealthy; any other, degraded.
    pub critical: bool,
}

impl ProbeDefinition {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            failure_threshold: self.failure_threshold,
            success_threshold: self.success_threshold,
        }
    }
}

/// A stored probe: its definition, where it came from, and its running state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub id: String,
    #[serde(flatten)]
    pub definition: ProbeDefinition,
    pub source: ProbeSource,
    pub created_at: Timestamp,
    pub created_by: String,
    #[serde(flatten)]
    pub state: ProbeState,
    pub next_check_at: Timestamp,
}

impl Probe {
    /// Whether the probe's last result is too old to trust: it should have been checked about
    /// three times since. A stale probe's state says nothing about now (e.g. the runner or the
    /// database that records results has stopped).
    pub fn is_stale(&self, now: Timestamp) -> bool {
        let last = self.state.last_checked_at.unwrap_or(self.created_at);
        let allowed =
            3 * i64::from(self.definition.interval_ms) + i64::from(self.definition.timeout_ms);
        now.millis_since(last) > allowed
    }
}

/// One check in a probe's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeResult {
    pub at: Timestamp,
    pub outcome: CheckOutcome,
    pub latency_ms: u64,
    pub error: Option<String>,
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

/// One probe as overall health sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeHealth {
    pub critical: bool,
    pub status: ProbeStatus,
    pub stale: bool,
}

/// SPEC §8: unhealthy when a critical probe fails, degraded when another probe fails. A probe
/// whose result is stale counts as failing (nobody can say it is not); one not checked yet
/// makes the service degraded.
pub fn overall_health(probes: impl IntoIterator<Item = ProbeHealth>) -> OverallHealth {
    let mut overall = OverallHealth::Healthy;
    for probe in probes {
        let failing = probe.stale || probe.status == ProbeStatus::Failing;
        if failing && probe.critical {
            return OverallHealth::Unhealthy;
        }
        if failing || probe.status == ProbeStatus::Unknown {
            overall = OverallHealth::Degraded;
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

    fn probe(critical: bool, status: ProbeStatus) -> ProbeHealth {
        ProbeHealth {
            critical,
            status,
            stale: false,
        }
    }

    #[test]
    fn overall_is_the_worst_case() {
        use ProbeStatus::*;
        let all = |list: &[ProbeHealth]| overall_health(list.iter().copied());
        assert_eq!(all(&[]), OverallHealth::Healthy);
        assert_eq!(
            all(&[probe(true, Healthy), probe(false, Healthy)]),
            OverallHealth::Healthy
        );
        assert_eq!(
            all(&[probe(true, Healthy), probe(false, Failing)]),
            OverallHealth::Degraded
        );
        assert_eq!(all(&[probe(false, Unknown)]), OverallHealth::Degraded);
        assert_eq!(
            all(&[probe(false, Failing), probe(true, Failing)]),
            OverallHealth::Unhealthy
        );
        assert_eq!(
            all(&[probe(true, Failing), probe(false, Healthy)]),
            OverallHealth::Unhealthy
        );
        assert_eq!(all(&[probe(true, Unknown)]), OverallHealth::Degraded);
        let stale = |critical| ProbeHealth {
            stale: true,
            ..probe(critical, Healthy)
        };
        assert_eq!(all(&[stale(true)]), OverallHealth::Unhealthy);
        assert_eq!(
            all(&[stale(false), probe(true, Healthy)]),
            OverallHealth::Degraded
        );
    }

    #[test]
    fn status_ranges() {
        assert_eq!(StatusRange::parse("200-299").unwrap(), StatusRange::SUCCESS);
        assert_eq!(
            StatusRange::parse("204").unwrap(),
            StatusRange { min: 204, max: 204 }
        );
        assert_eq!(StatusRange::parse(" 200 - 399 ").unwrap().max, 399);
        for bad in ["", "abc", "300-200", "99", "600", "200-700", "-"] {
            assert!(StatusRange::parse(bad).is_err(), "{bad}");
        }
        assert!(StatusRange::SUCCESS.contains(200) && StatusRange::SUCCESS.contains(299));
        assert!(!StatusRange::SUCCESS.contains(300));
        assert_eq!(StatusRange::SUCCESS.to_string(), "200-299");
    }

    #[test]
    fn results_go_stale_after_about_three_missed_checks() {
        let created = Timestamp::from_unix_millis(0);
        let mut p = Probe {
            id: "prb".into(),
            definition: ProbeDefinition {
                name: "api".into(),
                kind: ProbeKind::Http,
                target: "http://127.0.0.1/".into(),
                method: None,
                expected_status: None,
                timeout_ms: 1_000,
                interval_ms: 10_000,
                failure_threshold: 1,
                success_threshold: 1,
                critical: true,
            },
            source: ProbeSource::Api,
            created_at: created,
            created_by: "a".into(),
            state: ProbeState::default(),
            next_check_at: created,
        };
        assert!(!p.is_stale(created.plus_millis(31_000)));
        assert!(
            p.is_stale(created.plus_millis(31_001)),
            "never checked, long after creation"
        );
        p.state.last_checked_at = Some(created.plus_millis(30_000));
        assert!(!p.is_stale(created.plus_millis(61_000)));
        assert!(p.is_stale(created.plus_millis(61_001)));
    }
}
