//! Canary deployments (SPEC §9): judging metrics against the runbook's table, and one step of
//! a canary's progression.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gate::Decision;
use crate::model::{Environment, string_enum};
use crate::time::Timestamp;

string_enum! {
    /// Where a canary is in its life.
    pub enum CanaryPhase ("canary phase") {
        /// Traffic steps up every interval while healthy.
        Progressing = "progressing",
        /// The gate would not allow a step up now (lockdown, threat level, ...); it resumes
        /// when that clears.
        Paused = "paused",
        /// It reached its maximum percentage on its own.
        Completed = "completed",
        /// Someone promoted it to its maximum at once.
        Promoted = "promoted",
        /// It turned unhealthy and was rolled back automatically.
        RolledBack = "rolled_back",
    }
}

impl CanaryPhase {
    /// Progressing and paused canaries are active: one per environment.
    pub const fn is_active(self) -> bool {
        matches!(self, CanaryPhase::Progressing | CanaryPhase::Paused)
    }
}

string_enum! {
    /// The verdict on one metric, or on a whole evaluation (the worst of its metrics).
    pub enum Verdict ("canary status") {
        Healthy = "healthy",
        Degraded = "degraded",
        Unhealthy = "unhealthy",
        /// No usable value: missing, stale, not a number, or no baseline.
        Unknown = "unknown",
    }
}

impl Verdict {
    /// SPEC §9: unhealthy > degraded > unknown > healthy.
    const fn rank(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Unknown => 1,
            Verdict::Degraded => 2,
            Verdict::Unhealthy => 3,
        }
    }

    /// The worst of `verdicts`; healthy when there are none.
    pub fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts
            .into_iter()
            .max_by_key(|v| v.rank())
            .unwrap_or(Verdict::Healthy)
    }
}

string_enum! {
    /// Where a canary's metrics came from.
    pub enum MetricsSource ("metrics source") {
        Push = "push",
        Prometheus = "prometheus",
    }
}

/// How a canary progresses (SPEC §9 defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryConfig {
    pub initial_percentage: u8,
    pub increment_percentage: u8,
    /// Milliseconds between evaluations.
    pub increment_interval: u64,
    pub max_percentage: u8,
    /// Consecutive unhealthy evaluations before an automatic rollback.
    pub failure_threshold: u32,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            initial_percentage: 10,
            increment_percentage: 10,
            increment_interval: 300_000,
            max_percentage: 100,
            failure_threshold: 1,
        }
    }
}

impl CanaryConfig {
    /// SPEC §9: percentages 1–100, initial ≤ max, interval ≥ 1000 ms; the failure threshold
    /// 1–100. The error names the field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, value) in [
            ("config.initialPercentage", self.initial_percentage),
            ("config.incrementPercentage", self.increment_percentage),
            ("config.maxPercentage", self.max_percentage),
        ] {
            if !(1..=100).contains(&value) {
                return Err((field, "must be from 1 to 100".to_owned()));
            }
        }
        if self.initial_percentage > self.max_percentage {
            return Err((
                "config.initialPercentage",
                format!("must not exceed maxPercentage ({})", self.max_percentage),
            ));
        }
        if self.increment_interval < 1_000 {
            return Err((
                "config.incrementInterval",
                "must be at least 1000 (milliseconds)".to_owned(),
            ));
        }
        if !(1..=100).contains(&self.failure_threshold) {
            return Err((
                "config.failureThreshold",
                "must be from 1 to 100".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A metric's bounds: below `healthy_below` is healthy, above `unhealthy_above` unhealthy,
/// anything between (bounds included) degraded.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Band {
    pub healthy_below: f64,
    pub unhealthy_above: f64,
}

impl Band {
    fn judge(self, value: f64) -> Verdict {
        if !value.is_finite() {
            Verdict::Unknown
        } else if value < self.healthy_below {
            Verdict::Healthy
        } else if value > self.unhealthy_above {
            Verdict::Unhealthy
        } else {
            Verdict::Degraded
        }
    }
}

/// The runbook's "Canary Evaluation Criteria" table; configurable.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationThresholds {
    /// Error rate, in percent.
    pub error_rate_percent: Band,
    /// p99 latency above the baseline, in percent of the baseline.
    pub latency_increase_percent: Band,
    pub cpu_percent: Band,
    pub memory_percent: Band,
}

impl Default for EvaluationThresholds {
    fn default() -> Self {
        EvaluationThresholds {
            error_rate_percent: Band {
                healthy_below: 0.5,
                unhealthy_above: 2.0,
            },
            latency_increase_percent: Band {
                healthy_below: 20.0,
                unhealthy_above: 50.0,
            },
            cpu_percent: Band {
                healthy_below: 70.0,
                unhealthy_above: 85.0,
            },
            memory_percent: Band {
                healthy_below: 80.0,
                unhealthy_above: 90.0,
            },
        }
    }
}

/// A canary's metrics as pushed or pulled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetrics {
    pub error_rate_percent: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub baseline_latency_p99_ms: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub received_at: Timestamp,
    pub source: MetricsSource,
}

/// One metric's evaluation: the raw value, what was judged, the bounds, the verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricEvaluation {
    /// `errorRatePercent`, `latencyP99Ms`, `cpuPercent` or `memoryPercent`.
    pub metric: String,
    pub value: Option<f64>,
    /// The baseline p99 latency (latency only).
    pub baseline: Option<f64>,
    /// The number judged against the bounds: the value itself, or for latency its increase
    /// over the baseline in percent.
    pub judged: Option<f64>,
    pub healthy_below: f64,
    pub unhealthy_above: f64,
    pub verdict: Verdict,
    /// Why a verdict is unknown.
    pub note: Option<String>,
}

/// Every metric's evaluation and their worst verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub status: Verdict,
    pub metrics: Vec<MetricEvaluation>,
    /// No metrics received in the interval that ends at the evaluation.
    pub stale: bool,
    pub evaluated_at: Timestamp,
    /// When the metrics judged were received (and from where), if any.
    pub metrics_received_at: Option<Timestamp>,
    pub source: Option<MetricsSource>,
}

/// Judges `metrics` against `thresholds`. Metrics received before `fresh_since` (the start of
/// the interval that ends now) are stale: every verdict is unknown, never a pass.
pub fn evaluate(
    metrics: Option<&CanaryMetrics>,
    thresholds: &EvaluationThresholds,
    fresh_since: Timestamp,
    now: Timestamp,
) -> Evaluation {
    let fresh = metrics.filter(|m| m.received_at >= fresh_since);
    let stale = fresh.is_none();
    let get = |f: fn(&CanaryMetrics) -> Option<f64>| fresh.and_then(f);
    let simple = |name: &str, value: Option<f64>, band: Band| {
        let (verdict, note) = match value {
            _ if stale => (Verdict::Unknown, Some(stale_note(metrics))),
            None => (Verdict::Unknown, Some("not reported".to_owned())),
            Some(v) if !v.is_finite() => (Verdict::Unknown, Some("not a number".to_owned())),
            Some(v) => (band.judge(v), None),
        };
        MetricEvaluation {
            metric: name.to_owned(),
            value,
            baseline: None,
            judged: value.filter(|v| v.is_finite()),
            healthy_below: band.healthy_below,
            unhealthy_above: band.unhealthy_above,
            verdict,
            note,
        }
    };
    let latency = {
        let band = thresholds.latency_increase_percent;
        let value = get(|m| m.latency_p99_ms);
        let baseline = get(|m| m.baseline_latency_p99_ms);
        let (judged, verdict, note) = match (value, baseline) {
            _ if stale => (None, Verdict::Unknown, Some(stale_note(metrics))),
            (None, _) => (None, Verdict::Unknown, Some("not reported".to_owned())),
            (_, None) => (None, Verdict::Unknown, Some("no baseline".to_owned())),
            (Some(_), Some(b)) if b == 0.0 || !b.is_finite() => (
                None,
                Verdict::Unknown,
                Some("baseline is 0 or not a number".to_owned()),
            ),
            (Some(v), Some(b)) => {
                let increase = (v - b) / b * 100.0;
                (
                    Some(increase).filter(|i| i.is_finite()),
                    band.judge(increase),
                    None,
                )
            }
        };
        MetricEvaluation {
            metric: "latencyP99Ms".to_owned(),
            value,
            baseline,
            judged,
            healthy_below: band.healthy_below,
            unhealthy_above: band.unhealthy_above,
            verdict,
            note,
        }
    };
    let evaluations = vec![
        simple(
            "errorRatePercent",
            get(|m| m.error_rate_percent),
            thresholds.error_rate_percent,
        ),
        latency,
        simple("cpuPercent", get(|m| m.cpu_percent), thresholds.cpu_percent),
        simple(
            "memoryPercent",
            get(|m| m.memory_percent),
            thresholds.memory_percent,
        ),
    ];
    Evaluation {
        status: Verdict::worst(evaluations.iter().map(|e| e.verdict)),
        metrics: evaluations,
        stale,
        evaluated_at: now,
        metrics_received_at: metrics.map(|m| m.received_at),
        source: metrics.map(|m| m.source),
    }
}

fn stale_note(metrics: Option<&CanaryMetrics>) -> String {
    match metrics {
        None => "no metrics received".to_owned(),
        Some(m) => format!("stale: last metrics received {}", m.received_at),
    }
}

string_enum! {
    /// What one evaluation did to a canary.
    pub enum StepAction ("step action") {
        /// Started at the initial percentage.
        Started = "started",
        /// Healthy: the percentage went up.
        SteppedUp = "stepped_up",
        /// Degraded, unknown, or unhealthy below the failure threshold: the percentage held.
        Held = "held",
        /// The gate would not allow a step up: waiting.
        Paused = "paused",
        /// Healthy at the last step: the maximum was reached.
        Completed = "completed",
        /// Taken to the maximum at once by request.
        Promoted = "promoted",
        /// Unhealthy `failureThreshold` times in a row: rolled back to 0.
        RolledBack = "rolled_back",
    }
}

/// One entry of a canary's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// 0 for the start, then 1, 2, ...
    pub number: u32,
    pub at: Timestamp,
    pub action: StepAction,
    pub from_percentage: u8,
    pub to_percentage: u8,
    /// The evaluation behind the step (none for start and promotion).
    pub evaluation: Option<Evaluation>,
    pub note: Option<String>,
}

/// A canary deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    pub id: String,
    pub environment: Environment,
    /// The service it concerns; absent for the environment as a whole (SPEC §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub release_id: String,
    pub deployment_id: String,
    pub config: CanaryConfig,
    pub phase: CanaryPhase,
    /// The latest evaluation's verdict (`unknown` before the first).
    pub status: Verdict,
    pub current_percentage: u8,
    pub consecutive_unhealthy: u32,
    pub started_at: Timestamp,
    pub started_by: String,
    /// The override the start was allowed by; it also covers the steps and promotion.
    pub start_override_id: Option<String>,
    /// The release that ran before, where an automatic rollback returns.
    pub previous_release: Option<String>,
    /// When the next evaluation is due (none once finished).
    pub next_step_at: Option<Timestamp>,
    pub paused_reason: Option<String>,
    pub finished_at: Option<Timestamp>,
    pub latest_metrics: Option<CanaryMetrics>,
    pub steps: Vec<CanaryStep>,
}

impl Canary {
    /// A new canary at its initial percentage, first evaluated one interval from now.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: String,
        environment: Environment,
        service: Option<String>,
        release_id: String,
        deployment_id: String,
        config: CanaryConfig,
        by: &str,
        start_override_id: Option<String>,
        previous_release: Option<String>,
        now: Timestamp,
    ) -> Canary {
        Canary {
            id,
            environment,
            service,
            release_id,
            deployment_id,
            config,
            phase: CanaryPhase::Progressing,
            status: Verdict::Unknown,
            current_percentage: config.initial_percentage,
            consecutive_unhealthy: 0,
            started_at: now,
            started_by: by.to_owned(),
            start_override_id,
            previous_release,
            next_step_at: Some(now.plus_millis(interval(&config))),
            paused_reason: None,
            finished_at: None,
            latest_metrics: None,
            steps: vec![CanaryStep {
                number: 0,
                at: now,
                action: StepAction::Started,
                from_percentage: 0,
                to_percentage: config.initial_percentage,
                evaluation: None,
                note: None,
            }],
        }
    }

    /// The start of the interval that ends at the step due at `scheduled`: metrics received
    /// before it are stale.
    pub fn fresh_since(&self, scheduled: Timestamp) -> Timestamp {
        scheduled.plus_millis(-interval(&self.config))
    }

    /// [`Canary::fresh_since`] for an evaluation of the step due at `scheduled` made at `now`.
    /// A little late (up to one interval: the engine's own tick) it is the interval that ends
    /// at the scheduled time, as SPEC §9 says. After downtime of more than an interval it is
    /// the interval that ends now: metrics from before the downtime say nothing about now, so
    /// the late evaluation holds instead of stepping on them.
    pub fn fresh_since_at(&self, scheduled: Timestamp, now: Timestamp) -> Timestamp {
        if now.millis_since(scheduled) <= interval(&self.config) {
            self.fresh_since(scheduled)
        } else {
            self.fresh_since(now)
        }
    }

    /// One evaluation (SPEC §9), with the gate's decision on `deploy.canary.promote` for a
    /// step up. In order:
    /// 1. unhealthy `failureThreshold` times in a row: rolled back, in every mode (fail-safe);
    /// 2. the gate denies the step up: paused, with the reason, until it clears;
    /// 3. healthy: up by the increment (reaching the maximum completes it);
    /// 4. otherwise (degraded, unknown, unhealthy below the threshold): held.
    ///
    /// The next evaluation is one interval from `now`: after downtime a canary is evaluated
    /// once, not once per missed interval.
    pub fn step(
        &self,
        evaluation: Evaluation,
        gate: &Decision,
        now: Timestamp,
    ) -> (Canary, StepAction) {
        let mut next = self.clone();
        let from = self.current_percentage;
        next.status = evaluation.status;
        next.consecutive_unhealthy = if evaluation.status == Verdict::Unhealthy {
            self.consecutive_unhealthy.saturating_add(1)
        } else {
            0
        };
        let (action, note) = if next.consecutive_unhealthy >= self.config.failure_threshold {
            next.phase = CanaryPhase::RolledBack;
            next.current_percentage = 0;
            next.paused_reason = None;
            (
                StepAction::RolledBack,
                Some(format!(
                    "unhealthy {} time(s) in a row (failure threshold {})",
                    next.consecutive_unhealthy, self.config.failure_threshold
                )),
            )
        } else if !gate.allowed {
            next.phase = CanaryPhase::Paused;
            let reason = format!("{}: {}", gate.reason, gate.message);
            next.paused_reason = Some(reason.clone());
            (StepAction::Paused, Some(reason))
        } else {
            next.phase = CanaryPhase::Progressing;
            next.paused_reason = None;
            if evaluation.status == Verdict::Healthy {
                next.current_percentage = from
                    .saturating_add(self.config.increment_percentage)
                    .min(self.config.max_percentage);
                if next.current_percentage >= self.config.max_percentage {
                    next.phase = CanaryPhase::Completed;
                    (StepAction::Completed, None)
                } else {
                    (StepAction::SteppedUp, None)
                }
            } else {
                (
                    StepAction::Held,
                    Some(format!("{}: holding for review", evaluation.status)),
                )
            }
        };
        if next.phase.is_active() {
            next.next_step_at = Some(now.plus_millis(interval(&self.config)));
        } else {
            next.next_step_at = None;
            next.finished_at = Some(now);
        }
        next.steps.push(CanaryStep {
            number: self.steps.last().map_or(0, |s| s.number + 1),
            at: now,
            action,
            from_percentage: from,
            to_percentage: next.current_percentage,
            evaluation: Some(evaluation),
            note,
        });
        (next, action)
    }

    /// SPEC §9: promotion takes an active canary to its maximum at once.
    pub fn promote(&self, by: &str, now: Timestamp) -> Canary {
        let mut next = self.clone();
        next.phase = CanaryPhase::Promoted;
        next.current_percentage = self.config.max_percentage;
        next.next_step_at = None;
        next.paused_reason = None;
        next.finished_at = Some(now);
        next.steps.push(CanaryStep {
            number: self.steps.last().map_or(0, |s| s.number + 1),
            at: now,
            action: StepAction::Promoted,
            from_percentage: self.current_percentage,
            to_percentage: self.config.max_percentage,
            evaluation: None,
            note: Some(format!("promoted by {by}")),
        });
        next
    }
}

fn interval(config: &CanaryConfig) -> i64 {
    i64::try_from(config.increment_interval).unwrap_or(i64::MAX)
}
