//! Soaks (SPEC §23): the runbook's Normal Deploy Flow step 6 — watch a release for a while
//! against its thresholds, with no new incident — as a record the gate can rely on.
//!
//! A soak is judged once per interval. Each evaluation looks at the metrics received in its
//! interval and at the incidents opened since the soak started: `fail` ends the soak at once,
//! and at its end it `passed` only if every evaluation passed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::canary::{CanaryMetrics, MetricsSource};
use crate::incident::Incident;
use crate::model::{Environment, string_enum};
use crate::time::Timestamp;

string_enum! {
    /// Where a soak stands.
    pub enum SoakStatus ("soak status") {
        /// Being watched: evaluated every interval until its end.
        Running = "running",
        /// Every evaluation passed.
        Passed = "passed",
        /// An evaluation failed (it ended at once).
        Failed = "failed",
        /// It reached its end with evaluations that had no data.
        Inconclusive = "inconclusive",
        /// Ended by hand.
        Aborted = "aborted",
    }
}

string_enum! {
    /// One evaluation's verdict.
    pub enum SoakVerdict ("soak verdict") {
        Pass = "pass",
        Fail = "fail",
        /// No data to judge: a metric missing, none received in the interval, no baseline.
        Unknown = "unknown",
    }
}

/// What a soak watches and for how long (SPEC §23 defaults: the runbook's numbers).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoakConfig {
    /// How long the soak lasts, in milliseconds (default 15 minutes).
    pub duration_ms: u64,
    /// How often it is evaluated, in milliseconds (default 1 minute).
    pub interval_ms: u64,
    /// The error rate must stay below this, in percent (default 0.1).
    pub max_error_rate_percent: f64,
    /// p99 latency must stay below the baseline plus this, in percent (default 10).
    pub max_latency_increase_percent: f64,
}

impl Default for SoakConfig {
    fn default() -> Self {
        SoakConfig {
            duration_ms: 900_000,
            interval_ms: 60_000,
            max_error_rate_percent: 0.1,
            max_latency_increase_percent: 10.0,
        }
    }
}

impl SoakConfig {
    /// The longest soak: a week.
    pub const MAX_DURATION_MS: u64 = 7 * 24 * 3_600_000;
    /// The most evaluations a soak has (a day of minutes): each is kept, audited and announced.
    pub const MAX_EVALUATIONS: u64 = 1_440;

    /// SPEC §23: `durationMs` at least 1000, `intervalMs` from 1000 to `durationMs`,
    /// thresholds at least 0. The error names the field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1_000..=Self::MAX_DURATION_MS).contains(&self.duration_ms) {
            return Err((
                "config.durationMs",
                format!(
                    "must be from 1000 to {} (milliseconds)",
                    Self::MAX_DURATION_MS
                ),
            ));
        }
        if !(1_000..=self.duration_ms).contains(&self.interval_ms) {
            return Err((
                "config.intervalMs",
                format!(
                    "must be from 1000 to durationMs ({}) (milliseconds)",
                    self.duration_ms
                ),
            ));
        }
        if self.duration_ms.div_ceil(self.interval_ms) > Self::MAX_EVALUATIONS {
            return Err((
                "config.intervalMs",
                format!(
                    "must be at least {} for a durationMs of {}: a soak has at most {} evaluations",
                    self.duration_ms.div_ceil(Self::MAX_EVALUATIONS),
                    self.duration_ms,
                    Self::MAX_EVALUATIONS
                ),
            ));
        }
        for (field, value) in [
            ("config.maxErrorRatePercent", self.max_error_rate_percent),
            (
                "config.maxLatencyIncreasePercent",
                self.max_latency_increase_percent,
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err((field, "must be a number of at least 0".to_owned()));
            }
        }
        Ok(())
    }

    /// How many evaluations a soak has: one per interval, the last at its end.
    pub fn evaluations(&self) -> u32 {
        u32::try_from(self.duration_ms.div_ceil(self.interval_ms.max(1))).unwrap_or(u32::MAX)
    }
}

/// An incident that failed an evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoakIncident {
    pub id: String,
    pub title: String,
    pub opened_at: Timestamp,
}

/// One evaluation: the interval it judged, the values, the thresholds, the verdict and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoakEvaluation {
    /// 1, 2, ... in order.
    pub number: u32,
    /// The interval judged: metrics received from `intervalStart` count.
    pub interval_start: Timestamp,
    pub interval_end: Timestamp,
    pub evaluated_at: Timestamp,
    pub verdict: SoakVerdict,
    pub error_rate_percent: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub baseline_latency_p99_ms: Option<f64>,
    /// p99 latency above the baseline, in percent of the baseline.
    pub latency_increase_percent: Option<f64>,
    pub max_error_rate_percent: f64,
    pub max_latency_increase_percent: f64,
    /// The latency bound in milliseconds: baseline × (1 + bound / 100).
    pub max_latency_p99_ms: Option<f64>,
    /// Incidents opened during the soak for its environment (or for all).
    pub incidents: Vec<SoakIncident>,
    /// Why the verdict is `fail` or `unknown`, in words (empty for `pass`).
    pub reasons: Vec<String>,
    /// When the metrics judged were received, and from where.
    pub metrics_received_at: Option<Timestamp>,
    pub source: Option<MetricsSource>,
}

/// A soak of a release in an environment (and, optionally, one service of it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Soak {
    pub id: String,
    pub release_id: String,
    pub environment: Environment,
    pub service: Option<String>,
    /// Replaces `{deploymentId}` in the environment's Prometheus queries.
    pub deployment_id: String,
    pub status: SoakStatus,
    pub config: SoakConfig,
    pub started_at: Timestamp,
    pub started_by: String,
    pub ends_at: Timestamp,
    /// When the next evaluation is due (none once the soak has ended).
    pub next_evaluation_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Why it ended as it did (failed: the failing evaluation; inconclusive: the evaluations
    /// without data; aborted: who and why).
    pub result: Option<String>,
    pub latest_metrics: Option<CanaryMetrics>,
    pub evaluations: Vec<SoakEvaluation>,
}

/// What one evaluation pass did to a soak.
#[derive(Clone, Debug, PartialEq)]
pub struct SoakStep {
    pub soak: Soak,
    /// The evaluations this pass recorded (several after downtime: the missed ones).
    pub recorded: Vec<SoakEvaluation>,
    /// The soak ended with this pass.
    pub ended: bool,
}

fn millis(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Soak {
    /// A new running soak, first evaluated one interval from `now`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: String,
        release_id: String,
        environment: Environment,
        service: Option<String>,
        deployment_id: String,
        config: SoakConfig,
        by: &str,
        now: Timestamp,
    ) -> Soak {
        let ends_at = now.plus_millis(millis(config.duration_ms));
        Soak {
            id,
            release_id,
            environment,
            service,
            deployment_id,
            status: SoakStatus::Running,
            config,
            started_at: now,
            started_by: by.to_owned(),
            ends_at,
            next_evaluation_at: Some(now.plus_millis(millis(config.interval_ms)).min(ends_at)),
            finished_at: None,
            result: None,
            latest_metrics: None,
            evaluations: Vec::new(),
        }
    }

    /// The end of interval `number` (1-based): every interval after the start, the last one at
    /// the soak's end.
    fn interval_end(&self, number: u32) -> Timestamp {
        self.started_at
            .plus_millis(millis(self.config.interval_ms).saturating_mul(i64::from(number)))
            .min(self.ends_at)
    }

    /// Evaluates every interval due at `now` (SPEC §23), in order, and ends the soak at its
    /// first `fail` or at its end. An interval evaluated within one interval of its end is
    /// judged on the metrics received in it (`metrics`: the latest pushed or pulled); one whose
    /// end lies further back was missed (downtime) and is `unknown`, unless an incident opened
    /// in it fails it. `incidents` are those opened since the soak started, any status.
    pub fn evaluate_due(
        &self,
        metrics: Option<&CanaryMetrics>,
        incidents: &[Incident],
        now: Timestamp,
    ) -> SoakStep {
        let mut soak = self.clone();
        let mut recorded = Vec::new();
        while soak.status == SoakStatus::Running {
            let Some(due) = soak.next_evaluation_at.filter(|due| *due <= now) else {
                break;
            };
            let number = u32::try_from(soak.evaluations.len()).unwrap_or(u32::MAX) + 1;
            let interval_start = if number == 1 {
                soak.started_at
            } else {
                soak.interval_end(number - 1)
            };
            let missed = now.millis_since(due) > millis(soak.config.interval_ms);
            let evaluation = judge(
                &soak,
                JudgedInterval {
                    number,
                    start: interval_start,
                    end: due,
                    incidents_until: if missed { due } else { now },
                    metrics: if missed { None } else { metrics },
                    missed,
                },
                incidents,
                now,
            );
            soak.evaluations.push(evaluation.clone());
            recorded.push(evaluation.clone());
            if evaluation.verdict == SoakVerdict::Fail {
                soak.finish(
                    SoakStatus::Failed,
                    format!(
                        "evaluation {number} failed: {}",
                        evaluation.reasons.join("; ")
                    ),
                    now,
                );
            } else if due >= soak.ends_at {
                let without_data: Vec<String> = soak
                    .evaluations
                    .iter()
                    .filter(|e| e.verdict == SoakVerdict::Unknown)
                    .map(|e| e.number.to_string())
                    .collect();
                if without_data.is_empty() {
                    soak.finish(
                        SoakStatus::Passed,
                        format!("all {number} evaluations passed"),
                        now,
                    );
                } else {
                    soak.finish(
                        SoakStatus::Inconclusive,
                        format!(
                            "evaluation(s) {} of {number} had no data",
                            without_data.join(", ")
                        ),
                        now,
                    );
                }
            } else {
                soak.next_evaluation_at = Some(soak.interval_end(number + 1));
            }
        }
        let ended = self.status == SoakStatus::Running && soak.status != SoakStatus::Running;
        SoakStep {
            soak,
            recorded,
            ended,
        }
    }

    /// Ends a running soak by hand.
    pub fn abort(&self, by: &str, reason: &str, now: Timestamp) -> Soak {
        let mut soak = self.clone();
        soak.finish(
            SoakStatus::Aborted,
            format!("aborted by {by}: {reason}"),
            now,
        );
        soak
    }

    fn finish(&mut self, status: SoakStatus, result: String, now: Timestamp) {
        self.status = status;
        self.result = Some(result);
        self.finished_at = Some(now);
        self.next_evaluation_at = None;
    }
}

/// One interval to judge.
struct JudgedInterval<'a> {
    number: u32,
    start: Timestamp,
    end: Timestamp,
    /// Incidents opened up to this time count.
    incidents_until: Timestamp,
    metrics: Option<&'a CanaryMetrics>,
    missed: bool,
}

/// The verdict rules of SPEC §23 for one interval.
fn judge(
    soak: &Soak,
    interval: JudgedInterval<'_>,
    incidents: &[Incident],
    now: Timestamp,
) -> SoakEvaluation {
    let config = soak.config;
    let fresh = interval.metrics.filter(|m| m.received_at >= interval.start);
    let error_rate = fresh.and_then(|m| m.error_rate_percent);
    let latency = fresh.and_then(|m| m.latency_p99_ms);
    let baseline = fresh.and_then(|m| m.baseline_latency_p99_ms);
    let usable_baseline = baseline.filter(|b| b.is_finite() && *b > 0.0);
    let max_latency =
        usable_baseline.map(|b| b * (1.0 + config.max_latency_increase_percent / 100.0));
    let latency_increase = match (latency, usable_baseline) {
        (Some(l), Some(b)) => Some((l - b) / b * 100.0).filter(|i| i.is_finite()),
        _ => None,
    };
    let opened: Vec<SoakIncident> = incidents
        .iter()
        .filter(|i| i.opened_at >= soak.started_at && i.opened_at <= interval.incidents_until)
        .filter(|i| i.environment.is_none_or(|e| e == soak.environment))
        .map(|i| SoakIncident {
            id: i.id.clone(),
            title: i.title.clone(),
            opened_at: i.opened_at,
        })
        .collect();

    let mut failures = Vec::new();
    if let Some(rate) = error_rate
        && rate >= config.max_error_rate_percent
    {
        failures.push(format!(
            "error rate {rate}% is at or above {}%",
            config.max_error_rate_percent
        ));
    }
    // Compared as latency × 100 ≥ baseline × (100 + bound), which is exact for whole numbers:
    // 110 ms against a 100 ms baseline and a 10 % bound fails.
    if let (Some(l), Some(b)) = (latency, usable_baseline)
        && l * 100.0 >= b * (100.0 + config.max_latency_increase_percent)
    {
        failures.push(format!(
            "latency p99 {l} ms is at or above the baseline {b} ms + {}%",
            config.max_latency_increase_percent
        ));
    }
    for incident in &opened {
        failures.push(format!(
            "incident {} ({}) was opened during the soak",
            incident.id, incident.title
        ));
    }
    let mut unknowns = Vec::new();
    if interval.missed {
        unknowns.push(
            "not evaluated in time (deploy-safety was not running): no data for this interval"
                .to_owned(),
        );
    } else if fresh.is_none() {
        unknowns.push(match interval.metrics {
            None => "no metrics received".to_owned(),
            Some(m) => format!(
                "no metrics received in this interval (the last at {})",
                m.received_at
            ),
        });
    } else {
        if error_rate.is_none() {
            unknowns.push("error rate not reported".to_owned());
        }
        match (latency, baseline) {
            (None, _) => unknowns.push("latency p99 not reported".to_owned()),
            (_, None) => unknowns.push("no baseline latency".to_owned()),
            (_, Some(_)) if usable_baseline.is_none() => {
                unknowns.push("baseline latency is 0".to_owned());
            }
            _ => {}
        }
    }
    let (verdict, reasons) = if !failures.is_empty() {
        (SoakVerdict::Fail, failures)
    } else if !unknowns.is_empty() {
        (SoakVerdict::Unknown, unknowns)
    } else {
        (SoakVerdict::Pass, Vec::new())
    };
    SoakEvaluation {
        number: interval.number,
        interval_start: interval.start,
        interval_end: interval.end,
        evaluated_at: now,
        verdict,
        error_rate_percent: error_rate,
        latency_p99_ms: latency,
        baseline_latency_p99_ms: baseline,
        latency_increase_percent: latency_increase,
        max_error_rate_percent: config.max_error_rate_percent,
        max_latency_increase_percent: config.max_latency_increase_percent,
        max_latency_p99_ms: max_latency,
        incidents: opened,
        reasons,
        metrics_received_at: fresh.map(|m| m.received_at),
        source: fresh.map(|m| m.source),
    }
}
