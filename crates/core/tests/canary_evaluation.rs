//! Canary evaluation and progression (SPEC §9, RUNBOOK "Canary Evaluation Criteria").
//!
//! Table-driven: every cell of the runbook's table for each metric, with the bounds themselves
//! (a value below the healthy bound is healthy, above the unhealthy bound unhealthy, anything
//! between — bounds included — degraded), unknown values, stale data, the worst-of rule, and one
//! step of a canary for every verdict and gate decision. A property test closes the gaps.

#![allow(clippy::unwrap_used)]

use deploy_safety_core::{
    Action, Band, Canary, CanaryConfig, CanaryMetrics, CanaryPhase, Decision, Environment,
    Evaluation, EvaluationThresholds, MetricsSource, ReasonCode, SecurityMode, StepAction,
    Timestamp, Verdict, evaluate,
};
use proptest::prelude::*;

const NOW: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);
/// The interval of the test canaries, in milliseconds.
const INTERVAL: u64 = 60_000;
const INTERVAL_MS: i64 = 60_000;

const ERROR: &str = "errorRatePercent";
const LATENCY: &str = "latencyP99Ms";
const CPU: &str = "cpuPercent";
const MEMORY: &str = "memoryPercent";

use Verdict::{Degraded as D, Healthy as H, Unhealthy as U, Unknown as X};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Metrics as pushed, every one healthy by a wide margin, received at `NOW`.
fn healthy_metrics() -> CanaryMetrics {
    CanaryMetrics {
        error_rate_percent: Some(0.1),
        latency_p99_ms: Some(100.0),
        baseline_latency_p99_ms: Some(100.0),
        cpu_percent: Some(10.0),
        memory_percent: Some(10.0),
        received_at: NOW,
        source: MetricsSource::Push,
    }
}

/// Evaluates fresh `metrics` (received at `NOW`, the interval started at `NOW`) by the
/// runbook's table.
fn judge(metrics: &CanaryMetrics) -> Evaluation {
    evaluate(Some(metrics), &EvaluationThresholds::default(), NOW, NOW)
}

fn verdict_of(evaluation: &Evaluation, metric: &str) -> Verdict {
    metric_of(evaluation, metric).verdict
}

fn metric_of<'e>(
    evaluation: &'e Evaluation,
    metric: &str,
) -> &'e deploy_safety_core::MetricEvaluation {
    evaluation
        .metrics
        .iter()
        .find(|m| m.metric == metric)
        .unwrap_or_else(|| panic!("no evaluation of {metric} in {evaluation:?}"))
}

/// SPEC §9: unhealthy > degraded > unknown > healthy. Written out here, independent of the
/// implementation's ranking.
fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::Healthy => 0,
        Verdict::Unknown => 1,
        Verdict::Degraded => 2,
        Verdict::Unhealthy => 3,
    }
}

fn worst(verdicts: &[Verdict]) -> Verdict {
    verdicts
        .iter()
        .copied()
        .max_by_key(|v| severity(*v))
        .unwrap_or(Verdict::Healthy)
}

fn decision(allowed: bool, reason: ReasonCode, message: &str) -> Decision {
    Decision {
        service: None,
        allowed,
        reason,
        message: message.to_owned(),
        override_id: None,
        hints: Vec::new(),
        would_block: false,
        mode: if reason == ReasonCode::Lockdown {
            SecurityMode::Lockdown
        } else {
            SecurityMode::Enforce
        },
        action: Action::CanaryPromote,
        environment: Environment::STAGING,
        release_id: Some("v2".to_owned()),
        decided_at: NOW,
    }
}

fn allow() -> Decision {
    decision(true, ReasonCode::Allowed, "Allowed")
}

fn lockdown() -> Decision {
    decision(
        false,
        ReasonCode::Lockdown,
        "Security gate is in lockdown: INC-7 suspected breach",
    )
}

fn threat() -> Decision {
    decision(
        false,
        ReasonCode::ThreatLevel,
        "Threat level is high: canary start and promotion are stopped until it drops below high",
    )
}

fn config(initial: u8, increment: u8, max: u8, failure_threshold: u32) -> CanaryConfig {
    CanaryConfig {
        initial_percentage: initial,
        increment_percentage: increment,
        increment_interval: INTERVAL,
        max_percentage: max,
        failure_threshold,
    }
}

fn start(config: CanaryConfig) -> Canary {
    Canary::start(
        "cny_test".to_owned(),
        Environment::STAGING,
        None,
        "deploy-001".to_owned(),
        "v2".to_owned(),
        config,
        "alice",
        Some("v1".to_owned()),
        None,
        NOW,
    )
}

/// An evaluation at `at` whose status is `verdict`, made by `evaluate` from real metrics
/// received in the interval.
fn evaluation(verdict: Verdict, at: Timestamp) -> Evaluation {
    let mut m = healthy_metrics();
    m.received_at = at;
    match verdict {
        Verdict::Healthy => {}
        Verdict::Degraded => m.error_rate_percent = Some(1.0),
        Verdict::Unhealthy => m.error_rate_percent = Some(5.0),
        Verdict::Unknown => m.cpu_percent = None,
    }
    let e = evaluate(
        Some(&m),
        &EvaluationThresholds::default(),
        at.plus_millis(-INTERVAL_MS),
        at,
    );
    assert_eq!(e.status, verdict, "fixture: {e:?}");
    e
}

/// Steps `canary` at its scheduled time with an evaluation of `verdict` and `gate`.
fn step(canary: &Canary, verdict: Verdict, gate: &Decision) -> (Canary, StepAction) {
    let at = canary
        .next_step_at
        .expect("an active canary has a next step");
    canary.step(evaluation(verdict, at), gate, at)
}

// ---------------------------------------------------------------------------------------------
// The runbook's table, cell by cell
// ---------------------------------------------------------------------------------------------

/// One row: a metric's value, and the verdict the runbook's table gives it.
#[derive(Clone, Copy, Debug)]
struct Cell {
    metric: &'static str,
    value: f64,
    expected: Verdict,
    why: &'static str,
}

fn cell(metric: &'static str, value: f64, expected: Verdict, why: &'static str) -> Cell {
    Cell {
        metric,
        value,
        expected,
        why,
    }
}

fn set(metrics: &mut CanaryMetrics, metric: &str, value: Option<f64>) {
    match metric {
        ERROR => metrics.error_rate_percent = value,
        LATENCY => metrics.latency_p99_ms = value,
        CPU => metrics.cpu_percent = value,
        MEMORY => metrics.memory_percent = value,
        other => panic!("no metric {other}"),
    }
}

#[test]
fn error_rate_cpu_and_memory_follow_the_runbook_table_bounds_included_in_degraded() {
    let cells = [
        // Error rate: < 0.5% healthy, 0.5-2% degraded, > 2% unhealthy.
        cell(ERROR, 0.0, H, "no errors"),
        cell(ERROR, 0.25, H, "well below 0.5"),
        cell(ERROR, 0.49, H, "just below 0.5"),
        cell(ERROR, 0.499_999_9, H, "a hair below 0.5"),
        cell(ERROR, 0.5, D, "exactly 0.5 is degraded (SPEC §9)"),
        cell(ERROR, 0.500_000_1, D, "a hair above 0.5"),
        cell(ERROR, 1.0, D, "mid band"),
        cell(ERROR, 1.99, D, "just below 2"),
        cell(ERROR, 2.0, D, "exactly 2 is degraded (SPEC §9)"),
        cell(ERROR, 2.000_000_1, U, "a hair above 2"),
        cell(ERROR, 2.01, U, "just above 2"),
        cell(ERROR, 10.0, U, "well above 2"),
        cell(ERROR, 100.0, U, "everything fails"),
        // CPU: < 70% healthy, 70-85% degraded, > 85% unhealthy.
        cell(CPU, 0.0, H, "idle"),
        cell(CPU, 50.0, H, "well below 70"),
        cell(CPU, 69.99, H, "just below 70"),
        cell(CPU, 70.0, D, "exactly 70 is degraded"),
        cell(CPU, 70.01, D, "just above 70"),
        cell(CPU, 77.5, D, "mid band"),
        cell(CPU, 84.99, D, "just below 85"),
        cell(CPU, 85.0, D, "exactly 85 is degraded"),
        cell(CPU, 85.01, U, "just above 85"),
        cell(CPU, 100.0, U, "saturated"),
        cell(CPU, 400.0, U, "several cores"),
        // Memory: < 80% healthy, 80-90% degraded, > 90% unhealthy.
        cell(MEMORY, 0.0, H, "empty"),
        cell(MEMORY, 60.0, H, "well below 80"),
        cell(MEMORY, 79.99, H, "just below 80"),
        cell(MEMORY, 80.0, D, "exactly 80 is degraded"),
        cell(MEMORY, 80.01, D, "just above 80"),
        cell(MEMORY, 85.0, D, "mid band"),
        cell(MEMORY, 89.99, D, "just below 90"),
        cell(MEMORY, 90.0, D, "exactly 90 is degraded"),
        cell(MEMORY, 90.01, U, "just above 90"),
        cell(MEMORY, 100.0, U, "full"),
    ];
    for c in cells {
        let mut m = healthy_metrics();
        set(&mut m, c.metric, Some(c.value));
        let e = judge(&m);
        let judged = metric_of(&e, c.metric);
        assert_eq!(
            judged.verdict, c.expected,
            "{} = {} ({}): {judged:?}",
            c.metric, c.value, c.why
        );
        assert_eq!(judged.value, Some(c.value), "{c:?}: the raw value is kept");
        assert_eq!(judged.judged, Some(c.value), "{c:?}: judged as is");
        assert_eq!(judged.note, None, "{c:?}");
        // The other metrics are healthy, so the status is this metric's verdict.
        assert_eq!(e.status, c.expected, "{c:?}: status");
        assert!(!e.stale, "{c:?}");
    }
}

/// One latency row: p99 and its baseline, and the verdict of the increase.
#[derive(Clone, Copy, Debug)]
struct LatencyCell {
    p99: f64,
    baseline: f64,
    increase: f64,
    expected: Verdict,
    why: &'static str,
}

#[test]
fn latency_is_judged_as_its_increase_over_the_baseline() {
    let rows = [
        (100.0, 100.0, 0.0, H, "as fast as the baseline"),
        (50.0, 100.0, -50.0, H, "faster than the baseline"),
        (119.0, 100.0, 19.0, H, "+19%"),
        (119.99, 100.0, 19.99, H, "just below +20%"),
        (120.0, 100.0, 20.0, D, "exactly +20% is degraded"),
        (120.01, 100.0, 20.01, D, "just above +20%"),
        (135.0, 100.0, 35.0, D, "+35%"),
        (149.99, 100.0, 49.99, D, "just below +50%"),
        (150.0, 100.0, 50.0, D, "exactly +50% is degraded"),
        (150.01, 100.0, 50.01, U, "just above +50%"),
        (300.0, 100.0, 200.0, U, "three times the baseline"),
        // Other baselines: the bounds are relative, so the same +20% / +50% hold.
        (240.0, 200.0, 20.0, D, "exactly +20% of 200"),
        (239.0, 200.0, 19.5, H, "+19.5% of 200"),
        (300.0, 200.0, 50.0, D, "exactly +50% of 200"),
        (301.0, 200.0, 50.5, U, "+50.5% of 200"),
        (300.0, 250.0, 20.0, D, "exactly +20% of 250"),
        (375.0, 250.0, 50.0, D, "exactly +50% of 250"),
        (1_200.0, 1_000.0, 20.0, D, "exactly +20% of 1000"),
        (1_500.0, 1_000.0, 50.0, D, "exactly +50% of 1000"),
        // Absolute values do not matter, only the increase.
        (
            1_000.0,
            900.0,
            11.111,
            H,
            "a slow service, barely slower than its baseline",
        ),
        (
            61.0,
            40.0,
            52.5,
            U,
            "a fast service, much slower than its baseline",
        ),
        (60.0, 40.0, 50.0, D, "exactly +50% of 40"),
    ]
    .map(|(p99, baseline, increase, expected, why)| LatencyCell {
        p99,
        baseline,
        increase,
        expected,
        why,
    });
    for c in rows {
        let mut m = healthy_metrics();
        m.latency_p99_ms = Some(c.p99);
        m.baseline_latency_p99_ms = Some(c.baseline);
        let e = judge(&m);
        let latency = metric_of(&e, LATENCY);
        assert_eq!(latency.verdict, c.expected, "{}: {c:?}: {latency:?}", c.why);
        assert_eq!(e.status, c.expected, "{c:?}: status");
        assert_eq!(latency.value, Some(c.p99), "{c:?}: the raw value is kept");
        assert_eq!(
            latency.baseline,
            Some(c.baseline),
            "{c:?}: the baseline is kept"
        );
        let judged = latency.judged.unwrap();
        assert!(
            (judged - c.increase).abs() < 0.001,
            "{c:?}: judged {judged}, expected an increase of {}%",
            c.increase
        );
        assert_eq!(latency.healthy_below, 20.0, "{c:?}");
        assert_eq!(latency.unhealthy_above, 50.0, "{c:?}");
    }
}

#[test]
fn each_evaluation_keeps_the_thresholds_that_judged_it() {
    let e = judge(&healthy_metrics());
    let bounds: Vec<(&str, f64, f64)> = e
        .metrics
        .iter()
        .map(|m| (m.metric.as_str(), m.healthy_below, m.unhealthy_above))
        .collect();
    assert_eq!(
        bounds,
        [
            (ERROR, 0.5, 2.0),
            (LATENCY, 20.0, 50.0),
            (CPU, 70.0, 85.0),
            (MEMORY, 80.0, 90.0),
        ]
    );
    assert_eq!(e.status, H);
    assert_eq!(e.evaluated_at, NOW);
    assert_eq!(e.metrics_received_at, Some(NOW));
    assert_eq!(e.source, Some(MetricsSource::Push));
}

// ---------------------------------------------------------------------------------------------
// Unknown: missing, no baseline, not a number
// ---------------------------------------------------------------------------------------------

#[test]
fn a_missing_metric_is_unknown() {
    for metric in [ERROR, LATENCY, CPU, MEMORY] {
        let mut m = healthy_metrics();
        set(&mut m, metric, None);
        let e = judge(&m);
        let judged = metric_of(&e, metric);
        assert_eq!(judged.verdict, X, "{metric} missing: {judged:?}");
        assert_eq!(judged.value, None, "{metric}");
        assert_eq!(judged.judged, None, "{metric}");
        assert!(judged.note.is_some(), "{metric}: an unknown says why");
        assert_eq!(e.status, X, "{metric} missing: status");
        for other in [ERROR, LATENCY, CPU, MEMORY]
            .into_iter()
            .filter(|o| *o != metric)
        {
            assert_eq!(verdict_of(&e, other), H, "{metric} missing: {other}");
        }
    }
    // Nothing reported at all, but in time: every metric unknown.
    let nothing = CanaryMetrics {
        error_rate_percent: None,
        latency_p99_ms: None,
        baseline_latency_p99_ms: None,
        cpu_percent: None,
        memory_percent: None,
        received_at: NOW,
        source: MetricsSource::Push,
    };
    let e = judge(&nothing);
    assert_eq!(e.status, X);
    assert!(e.metrics.iter().all(|m| m.verdict == X), "{e:?}");
    assert!(!e.stale, "received in the interval, only empty");
}

#[test]
fn latency_without_a_usable_baseline_is_unknown() {
    let rows: [(Option<f64>, Option<f64>, &str); 9] = [
        (Some(150.0), None, "no baseline"),
        (Some(150.0), Some(0.0), "a baseline of 0"),
        (Some(0.0), Some(0.0), "0 over a baseline of 0"),
        (Some(150.0), Some(-0.0), "a baseline of -0"),
        (
            Some(150.0),
            Some(f64::NAN),
            "a baseline that is not a number",
        ),
        (Some(150.0), Some(f64::INFINITY), "an infinite baseline"),
        (None, Some(100.0), "a baseline but no latency"),
        (None, None, "neither"),
        (None, Some(0.0), "no latency and a baseline of 0"),
    ];
    for (p99, baseline, why) in rows {
        let mut m = healthy_metrics();
        m.latency_p99_ms = p99;
        m.baseline_latency_p99_ms = baseline;
        let e = judge(&m);
        let latency = metric_of(&e, LATENCY);
        assert_eq!(latency.verdict, X, "{why}: {latency:?}");
        assert_eq!(latency.judged, None, "{why}");
        assert!(latency.note.is_some(), "{why}: an unknown says why");
        assert_eq!(e.status, X, "{why}: status");
    }
}

#[test]
fn values_that_are_not_numbers_are_unknown() {
    for metric in [ERROR, LATENCY, CPU, MEMORY] {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut m = healthy_metrics();
            set(&mut m, metric, Some(value));
            let e = judge(&m);
            let judged = metric_of(&e, metric);
            assert_eq!(
                judged.verdict, X,
                "{metric} = {value}: not a number is unknown, never unhealthy or healthy: {judged:?}"
            );
            assert_eq!(judged.judged, None, "{metric} = {value}");
            assert_eq!(e.status, X, "{metric} = {value}: status");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The worst-of rule
// ---------------------------------------------------------------------------------------------

/// A value of `metric` that the runbook's table judges `verdict` (`None` for unknown).
fn value_for(metric: &str, verdict: Verdict) -> Option<f64> {
    let (healthy, degraded, unhealthy) = match metric {
        ERROR => (0.1, 1.0, 3.0),
        // Latency over a baseline of 100 ms.
        LATENCY => (105.0, 130.0, 180.0),
        CPU => (40.0, 75.0, 95.0),
        MEMORY => (50.0, 85.0, 95.0),
        other => panic!("no metric {other}"),
    };
    match verdict {
        Verdict::Healthy => Some(healthy),
        Verdict::Degraded => Some(degraded),
        Verdict::Unhealthy => Some(unhealthy),
        Verdict::Unknown => None,
    }
}

#[test]
fn the_status_is_the_worst_verdict_over_every_combination() {
    let verdicts = [H, D, U, X];
    let metrics = [ERROR, LATENCY, CPU, MEMORY];
    let mut combinations = 0;
    for a in verdicts {
        for b in verdicts {
            for c in verdicts {
                for d in verdicts {
                    let wanted = [a, b, c, d];
                    let mut m = healthy_metrics();
                    for (metric, verdict) in metrics.iter().zip(wanted) {
                        set(&mut m, metric, value_for(metric, verdict));
                    }
                    let e = judge(&m);
                    let got: Vec<Verdict> = metrics
                        .iter()
                        .map(|metric| verdict_of(&e, metric))
                        .collect();
                    assert_eq!(got, wanted, "per-metric verdicts");
                    assert_eq!(e.status, worst(&wanted), "status of {wanted:?}");
                    combinations += 1;
                }
            }
        }
    }
    assert_eq!(combinations, 256);
}

#[test]
fn the_order_is_unhealthy_then_degraded_then_unknown_then_healthy() {
    let rows: [(&[Verdict], Verdict); 12] = [
        (&[], H),
        (&[H, H, H, H], H),
        (&[H, X], X),
        (&[X, H], X),
        (&[X, D], D),
        (&[D, X], D),
        (&[H, D, X], D),
        (&[X, U], U),
        (&[D, U], U),
        (&[U, D, X, H], U),
        (&[X, X, X, X], X),
        (&[D, D, H, H], D),
    ];
    for (verdicts, expected) in rows {
        assert_eq!(
            Verdict::worst(verdicts.iter().copied()),
            expected,
            "{verdicts:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Stale data
// ---------------------------------------------------------------------------------------------

#[test]
fn metrics_received_before_the_interval_are_stale_and_every_metric_is_unknown() {
    let fresh_since = NOW.plus_millis(-INTERVAL_MS);
    for (label, mut m) in [
        ("healthy", healthy_metrics()),
        ("unhealthy", {
            let mut m = healthy_metrics();
            m.error_rate_percent = Some(50.0);
            m.cpu_percent = Some(99.0);
            m
        }),
    ] {
        // One millisecond before the interval started: stale.
        m.received_at = fresh_since.plus_millis(-1);
        let e = evaluate(Some(&m), &EvaluationThresholds::default(), fresh_since, NOW);
        assert!(e.stale, "{label}");
        assert_eq!(e.status, X, "{label}: stale is unknown, never a pass");
        assert_eq!(e.metrics.len(), 4, "{label}");
        for judged in &e.metrics {
            assert_eq!(judged.verdict, X, "{label}: {judged:?}");
            assert!(
                judged.note.as_deref().unwrap_or_default().contains("stale"),
                "{label}: says it is stale: {judged:?}"
            );
        }
        assert_eq!(
            e.metrics_received_at,
            Some(fresh_since.plus_millis(-1)),
            "{label}: when the stale metrics were received is kept"
        );

        // Received exactly when the interval started: fresh.
        m.received_at = fresh_since;
        let e = evaluate(Some(&m), &EvaluationThresholds::default(), fresh_since, NOW);
        assert!(!e.stale, "{label}: at exactly fresh_since");
        assert_ne!(e.status, X, "{label}: judged");

        // Received at the evaluation itself: fresh.
        m.received_at = NOW;
        let e = evaluate(Some(&m), &EvaluationThresholds::default(), fresh_since, NOW);
        assert!(!e.stale, "{label}: at now");
    }
}

#[test]
fn no_metrics_at_all_is_stale_and_unknown() {
    let e = evaluate(
        None,
        &EvaluationThresholds::default(),
        NOW.plus_millis(-INTERVAL_MS),
        NOW,
    );
    assert!(e.stale);
    assert_eq!(e.status, X);
    assert_eq!(e.metrics.len(), 4);
    assert!(e.metrics.iter().all(|m| m.verdict == X), "{e:?}");
    assert_eq!(e.metrics_received_at, None);
    assert_eq!(e.source, None);
}

#[test]
fn fresh_since_is_one_interval_before_the_scheduled_step() {
    let canary = start(CanaryConfig::default());
    let scheduled = canary.next_step_at.unwrap();
    assert_eq!(scheduled, NOW.plus_millis(300_000));
    assert_eq!(canary.fresh_since(scheduled), NOW);
    let late = NOW.plus_minutes(60);
    assert_eq!(canary.fresh_since(late), late.plus_millis(-300_000));
}

// ---------------------------------------------------------------------------------------------
// Configurable thresholds
// ---------------------------------------------------------------------------------------------

#[test]
fn configured_thresholds_change_the_verdicts() {
    let strict = EvaluationThresholds {
        error_rate_percent: Band {
            healthy_below: 0.1,
            unhealthy_above: 0.5,
        },
        latency_increase_percent: Band {
            healthy_below: 5.0,
            unhealthy_above: 10.0,
        },
        cpu_percent: Band {
            healthy_below: 50.0,
            unhealthy_above: 60.0,
        },
        memory_percent: Band {
            healthy_below: 40.0,
            unhealthy_above: 45.0,
        },
    };
    let lenient = EvaluationThresholds {
        error_rate_percent: Band {
            healthy_below: 5.0,
            unhealthy_above: 10.0,
        },
        ..EvaluationThresholds::default()
    };
    // (metric, value, default verdict, strict verdict, lenient verdict)
    let rows = [
        (ERROR, 0.3, H, D, H),
        (ERROR, 0.5, D, D, H),
        (ERROR, 0.6, D, U, H),
        (ERROR, 3.0, U, U, H),
        (ERROR, 5.0, U, U, D),
        (ERROR, 10.5, U, U, U),
        (CPU, 55.0, H, D, H),
        (CPU, 65.0, H, U, H),
        (MEMORY, 42.0, H, D, H),
        (MEMORY, 50.0, H, U, H),
        (LATENCY, 108.0, H, D, H),
        (LATENCY, 115.0, H, U, H),
    ];
    for (metric, value, default, strict_v, lenient_v) in rows {
        let mut m = healthy_metrics();
        m.error_rate_percent = Some(0.0);
        m.cpu_percent = Some(0.0);
        m.memory_percent = Some(0.0);
        set(&mut m, metric, Some(value));
        for (name, thresholds, expected) in [
            ("default", EvaluationThresholds::default(), default),
            ("strict", strict, strict_v),
            ("lenient", lenient, lenient_v),
        ] {
            let e = evaluate(Some(&m), &thresholds, NOW, NOW);
            let judged = metric_of(&e, metric);
            assert_eq!(
                judged.verdict, expected,
                "{metric} = {value} under {name} thresholds: {judged:?}"
            );
            assert_eq!(e.status, expected, "{metric} = {value} ({name}): status");
            let band = match metric {
                ERROR => thresholds.error_rate_percent,
                LATENCY => thresholds.latency_increase_percent,
                CPU => thresholds.cpu_percent,
                _ => thresholds.memory_percent,
            };
            assert_eq!(
                (judged.healthy_below, judged.unhealthy_above),
                (band.healthy_below, band.unhealthy_above),
                "{metric} ({name}): the evaluation keeps the thresholds that judged it"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Canary::start and Canary::step
// ---------------------------------------------------------------------------------------------

#[test]
fn a_new_canary_starts_at_its_initial_percentage_and_is_due_one_interval_later() {
    let canary = start(config(10, 10, 100, 1));
    assert_eq!(canary.phase, CanaryPhase::Progressing);
    assert_eq!(canary.status, X, "no evaluation yet");
    assert_eq!(canary.current_percentage, 10);
    assert_eq!(canary.consecutive_unhealthy, 0);
    assert_eq!(canary.started_at, NOW);
    assert_eq!(canary.next_step_at, Some(NOW.plus_millis(INTERVAL_MS)));
    assert_eq!(canary.finished_at, None);
    assert_eq!(canary.steps.len(), 1);
    let first = &canary.steps[0];
    assert_eq!(first.number, 0);
    assert_eq!(first.action, StepAction::Started);
    assert_eq!((first.from_percentage, first.to_percentage), (0, 10));
    assert_eq!(first.evaluation, None);
}

#[test]
fn healthy_steps_up_by_the_increment_until_max_and_completes() {
    let mut canary = start(config(10, 10, 100, 1));
    let mut seen = vec![canary.current_percentage];
    for number in 1..=9u32 {
        let at = canary.next_step_at.unwrap();
        let (next, action) = step(&canary, H, &allow());
        let expected_pct = 10 + 10 * u8::try_from(number).unwrap();
        assert_eq!(next.current_percentage, expected_pct, "step {number}");
        assert_eq!(next.status, H);
        let last = next.steps.last().unwrap();
        assert_eq!(last.number, number);
        assert_eq!(last.at, at);
        assert_eq!(last.from_percentage, expected_pct - 10);
        assert_eq!(last.to_percentage, expected_pct);
        assert_eq!(last.evaluation.as_ref().unwrap().status, H);
        if number < 9 {
            assert_eq!(action, StepAction::SteppedUp, "step {number}");
            assert_eq!(next.phase, CanaryPhase::Progressing);
            assert_eq!(next.next_step_at, Some(at.plus_millis(INTERVAL_MS)));
            assert_eq!(next.finished_at, None);
        } else {
            assert_eq!(action, StepAction::Completed, "reaching max completes it");
            assert_eq!(last.action, StepAction::Completed);
            assert_eq!(next.phase, CanaryPhase::Completed);
            assert_eq!(next.next_step_at, None);
            assert_eq!(next.finished_at, Some(at));
        }
        seen.push(next.current_percentage);
        canary = next;
    }
    assert_eq!(seen, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    assert_eq!(canary.steps.len(), 10);
}

#[test]
fn the_increment_is_capped_at_max() {
    // (initial, increment, max) and the percentages expected until completion.
    let rows: [(u8, u8, u8, &[u8]); 5] = [
        (10, 30, 50, &[10, 40, 50]),
        (10, 10, 30, &[10, 20, 30]),
        (25, 50, 100, &[25, 75, 100]),
        (90, 100, 100, &[90, 100]),
        (40, 1, 42, &[40, 41, 42]),
    ];
    for (initial, increment, max, expected) in rows {
        let mut canary = start(config(initial, increment, max, 1));
        let mut seen = vec![canary.current_percentage];
        while canary.phase.is_active() {
            let (next, _) = step(&canary, H, &allow());
            seen.push(next.current_percentage);
            canary = next;
            assert!(seen.len() <= 200, "never completes: {seen:?}");
        }
        assert_eq!(seen, expected, "({initial}, {increment}, {max})");
        assert_eq!(canary.phase, CanaryPhase::Completed);
        assert_eq!(canary.steps.last().unwrap().action, StepAction::Completed);
    }
}

#[test]
fn degraded_and_unknown_hold() {
    for verdict in [D, X] {
        let canary = start(config(10, 10, 100, 1));
        let at = canary.next_step_at.unwrap();
        let (next, action) = step(&canary, verdict, &allow());
        assert_eq!(action, StepAction::Held, "{verdict}");
        assert_eq!(next.phase, CanaryPhase::Progressing, "{verdict}");
        assert_eq!(next.current_percentage, 10, "{verdict}: unchanged");
        assert_eq!(next.status, verdict);
        assert_eq!(next.consecutive_unhealthy, 0);
        assert_eq!(next.next_step_at, Some(at.plus_millis(INTERVAL_MS)));
        assert_eq!(next.finished_at, None);
        let last = next.steps.last().unwrap();
        assert_eq!(last.action, StepAction::Held);
        assert_eq!((last.from_percentage, last.to_percentage), (10, 10));
        // And holds again, as long as it stays so.
        let (again, action) = step(&next, verdict, &allow());
        assert_eq!(action, StepAction::Held);
        assert_eq!(again.current_percentage, 10);
    }
}

#[test]
fn stale_metrics_hold_a_canary() {
    let canary = start(config(10, 10, 100, 1));
    let at = canary.next_step_at.unwrap();
    let mut m = healthy_metrics();
    m.received_at = canary.fresh_since(at).plus_millis(-1);
    let e = evaluate(
        Some(&m),
        &EvaluationThresholds::default(),
        canary.fresh_since(at),
        at,
    );
    let (next, action) = canary.step(e, &allow(), at);
    assert_eq!(action, StepAction::Held);
    assert_eq!(next.status, X);
    assert_eq!(next.current_percentage, 10);
}

#[test]
fn unhealthy_with_failure_threshold_1_rolls_back_to_0() {
    let canary = start(config(10, 10, 100, 1));
    let (canary, _) = step(&canary, H, &allow());
    assert_eq!(canary.current_percentage, 20);
    let at = canary.next_step_at.unwrap();
    let (next, action) = step(&canary, U, &allow());
    assert_eq!(action, StepAction::RolledBack);
    assert_eq!(next.phase, CanaryPhase::RolledBack);
    assert_eq!(next.current_percentage, 0);
    assert_eq!(next.status, U);
    assert_eq!(next.consecutive_unhealthy, 1);
    assert_eq!(next.next_step_at, None);
    assert_eq!(next.finished_at, Some(at));
    let last = next.steps.last().unwrap();
    assert_eq!(last.number, 2);
    assert_eq!(last.action, StepAction::RolledBack);
    assert_eq!((last.from_percentage, last.to_percentage), (20, 0));
    assert!(!next.phase.is_active());
}

#[test]
fn failure_threshold_counts_consecutive_unhealthy_evaluations() {
    // (verdict, expected action, expected percentage after, expected count after)
    let script = [
        (U, StepAction::Held, 10, 1),
        (U, StepAction::Held, 10, 2),
        (H, StepAction::SteppedUp, 20, 0),
        (U, StepAction::Held, 20, 1),
        (D, StepAction::Held, 20, 0),
        (U, StepAction::Held, 20, 1),
        (X, StepAction::Held, 20, 0),
        (U, StepAction::Held, 20, 1),
        (U, StepAction::Held, 20, 2),
        (U, StepAction::RolledBack, 0, 3),
    ];
    let mut canary = start(config(10, 10, 100, 3));
    for (i, (verdict, action, percentage, count)) in script.into_iter().enumerate() {
        let (next, got) = step(&canary, verdict, &allow());
        assert_eq!(got, action, "evaluation {} ({verdict})", i + 1);
        assert_eq!(next.current_percentage, percentage, "evaluation {}", i + 1);
        assert_eq!(next.consecutive_unhealthy, count, "evaluation {}", i + 1);
        canary = next;
    }
    assert_eq!(canary.phase, CanaryPhase::RolledBack);
}

#[test]
fn a_denying_gate_pauses_with_its_reason_and_the_canary_resumes_when_it_clears() {
    for (gate, code) in [(lockdown(), "LOCKDOWN"), (threat(), "THREAT_LEVEL")] {
        let canary = start(config(10, 10, 100, 1));
        let at = canary.next_step_at.unwrap();
        let (paused, action) = step(&canary, H, &gate);
        assert_eq!(action, StepAction::Paused, "{code}");
        assert_eq!(paused.phase, CanaryPhase::Paused, "{code}");
        assert_eq!(paused.current_percentage, 10, "{code}: no step up");
        let reason = paused.paused_reason.clone().unwrap();
        assert!(reason.contains(code), "{code}: {reason}");
        assert!(reason.contains(&gate.message), "{code}: {reason}");
        assert_eq!(
            paused.next_step_at,
            Some(at.plus_millis(INTERVAL_MS)),
            "{code}: still evaluated every interval"
        );
        assert_eq!(paused.finished_at, None);
        assert!(paused.phase.is_active(), "a paused canary is active");
        let last = paused.steps.last().unwrap();
        assert_eq!(last.action, StepAction::Paused);
        assert_eq!(last.note.as_deref(), Some(reason.as_str()));

        // Degraded while the gate denies: still paused.
        let (still, action) = step(&paused, D, &gate);
        assert_eq!(action, StepAction::Paused, "{code}");
        assert_eq!(still.current_percentage, 10);

        // The gate clears: it resumes.
        let (resumed, action) = step(&still, H, &allow());
        assert_eq!(action, StepAction::SteppedUp, "{code}");
        assert_eq!(resumed.phase, CanaryPhase::Progressing);
        assert_eq!(resumed.paused_reason, None);
        assert_eq!(resumed.current_percentage, 20);
    }
}

#[test]
fn unhealthy_at_the_threshold_rolls_back_even_when_the_gate_denies() {
    for gate in [lockdown(), threat()] {
        // Threshold 1: at once.
        let canary = start(config(10, 10, 100, 1));
        let (next, action) = step(&canary, U, &gate);
        assert_eq!(action, StepAction::RolledBack, "{}", gate.reason);
        assert_eq!(next.phase, CanaryPhase::RolledBack);
        assert_eq!(next.current_percentage, 0);
        assert_eq!(next.paused_reason, None);

        // Threshold 2: paused the first time, the count kept, rolled back the second time.
        let canary = start(config(10, 10, 100, 2));
        let (paused, action) = step(&canary, U, &gate);
        assert_eq!(action, StepAction::Paused, "{}", gate.reason);
        assert_eq!(paused.consecutive_unhealthy, 1);
        let (rolled, action) = step(&paused, U, &gate);
        assert_eq!(action, StepAction::RolledBack, "{}", gate.reason);
        assert_eq!(rolled.current_percentage, 0);
        assert_eq!(rolled.phase, CanaryPhase::RolledBack);
    }
}

#[test]
fn after_downtime_the_next_step_is_one_interval_after_the_evaluation() {
    let canary = start(config(10, 10, 100, 1));
    let scheduled = canary.next_step_at.unwrap();
    // Evaluated ten intervals late.
    let late = scheduled.plus_millis(10 * INTERVAL_MS);
    let mut m = healthy_metrics();
    m.received_at = late;
    let e = evaluate(
        Some(&m),
        &EvaluationThresholds::default(),
        canary.fresh_since(scheduled),
        late,
    );
    let (next, action) = canary.step(e, &allow(), late);
    assert_eq!(action, StepAction::SteppedUp);
    assert_eq!(
        next.current_percentage, 20,
        "one step, not one per missed interval"
    );
    assert_eq!(next.steps.len(), 2);
    assert_eq!(next.steps[1].at, late);
    assert_eq!(
        next.next_step_at,
        Some(late.plus_millis(INTERVAL_MS)),
        "one interval after the late evaluation, not in the past"
    );
    // The same holds for holds and pauses.
    for (verdict, gate, expected) in [
        (D, allow(), StepAction::Held),
        (X, allow(), StepAction::Held),
        (H, lockdown(), StepAction::Paused),
    ] {
        let (next, action) = canary.step(evaluation(verdict, late), &gate, late);
        assert_eq!(action, expected, "{verdict}, {}", gate.reason);
        assert_eq!(next.steps.len(), 2, "one evaluation");
        assert_eq!(next.next_step_at, Some(late.plus_millis(INTERVAL_MS)));
    }
}

#[test]
fn promotion_takes_an_active_canary_to_max_at_once() {
    let canary = start(config(10, 10, 80, 1));
    let (canary, _) = step(&canary, H, &allow());
    let (paused, _) = step(&canary, H, &lockdown());
    for before in [canary, paused] {
        let at = NOW.plus_minutes(10);
        let promoted = before.promote("bob", at);
        assert_eq!(promoted.phase, CanaryPhase::Promoted);
        assert_eq!(promoted.current_percentage, 80, "max, not 100");
        assert_eq!(promoted.next_step_at, None);
        assert_eq!(promoted.finished_at, Some(at));
        assert_eq!(promoted.paused_reason, None);
        assert!(!promoted.phase.is_active());
        let last = promoted.steps.last().unwrap();
        assert_eq!(last.action, StepAction::Promoted);
        assert_eq!(last.number, before.steps.last().unwrap().number + 1);
        assert_eq!((last.from_percentage, last.to_percentage), (20, 80));
        assert_eq!(last.evaluation, None);
        assert!(last.note.as_deref().unwrap_or_default().contains("bob"));
    }
}

// ---------------------------------------------------------------------------------------------
// CanaryConfig::check
// ---------------------------------------------------------------------------------------------

#[test]
fn config_check_enforces_the_bounds_and_names_the_field() {
    let ok = CanaryConfig::default();
    assert_eq!(ok, config_with(10, 10, 300_000, 100, 1), "SPEC §9 defaults");
    let rows: [(CanaryConfig, Option<&str>); 22] = [
        (ok, None),
        (config_with(1, 1, 1_000, 1, 1), None),
        (config_with(100, 100, 1_000, 100, 100), None),
        (config_with(50, 10, 1_000, 50, 1), None),
        (
            config_with(0, 10, 300_000, 100, 1),
            Some("config.initialPercentage"),
        ),
        (
            config_with(101, 10, 300_000, 100, 1),
            Some("config.initialPercentage"),
        ),
        (
            config_with(255, 10, 300_000, 100, 1),
            Some("config.initialPercentage"),
        ),
        (
            config_with(10, 0, 300_000, 100, 1),
            Some("config.incrementPercentage"),
        ),
        (
            config_with(10, 101, 300_000, 100, 1),
            Some("config.incrementPercentage"),
        ),
        (
            config_with(10, 10, 300_000, 0, 1),
            Some("config.maxPercentage"),
        ),
        (
            config_with(10, 10, 300_000, 101, 1),
            Some("config.maxPercentage"),
        ),
        (
            config_with(60, 10, 300_000, 50, 1),
            Some("config.initialPercentage"),
        ),
        (
            config_with(51, 10, 300_000, 50, 1),
            Some("config.initialPercentage"),
        ),
        (
            config_with(10, 10, 999, 100, 1),
            Some("config.incrementInterval"),
        ),
        (
            config_with(10, 10, 0, 100, 1),
            Some("config.incrementInterval"),
        ),
        (config_with(10, 10, 1_000, 100, 1), None),
        (config_with(10, 10, u64::MAX, 100, 1), None),
        (
            config_with(10, 10, 300_000, 100, 0),
            Some("config.failureThreshold"),
        ),
        (
            config_with(10, 10, 300_000, 100, 101),
            Some("config.failureThreshold"),
        ),
        (
            config_with(10, 10, 300_000, 100, u32::MAX),
            Some("config.failureThreshold"),
        ),
        (config_with(10, 10, 300_000, 100, 100), None),
        (config_with(10, 10, 300_000, 100, 3), None),
    ];
    for (c, expected) in rows {
        let got = c.check();
        match expected {
            None => assert!(got.is_ok(), "{c:?}: {got:?}"),
            Some(field) => {
                let (named, message) = got.expect_err(&format!("{c:?} must be refused"));
                assert_eq!(named, field, "{c:?}: {message}");
                assert!(!message.is_empty());
            }
        }
    }
}

fn config_with(
    initial: u8,
    increment: u8,
    interval: u64,
    max: u8,
    failure_threshold: u32,
) -> CanaryConfig {
    CanaryConfig {
        initial_percentage: initial,
        increment_percentage: increment,
        increment_interval: interval,
        max_percentage: max,
        failure_threshold,
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Any value a metric might carry: in every band, on the bounds, out of range, not a number.
fn any_value() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(f64::NAN)),
        1 => Just(Some(f64::INFINITY)),
        1 => Just(Some(f64::NEG_INFINITY)),
        2 => prop::sample::select(vec![
            0.0, 0.5, 2.0, 20.0, 50.0, 70.0, 80.0, 85.0, 90.0, 100.0, 120.0, 150.0,
        ])
        .prop_map(Some),
        6 => (0.0f64..200.0).prop_map(Some),
        1 => (-1.0e6f64..1.0e6).prop_map(Some),
    ]
}

fn any_band() -> impl Strategy<Value = Band> {
    (0.0f64..100.0, 0.0f64..100.0).prop_map(|(a, b)| Band {
        healthy_below: a.min(b),
        unhealthy_above: a.max(b),
    })
}

fn any_thresholds() -> impl Strategy<Value = EvaluationThresholds> {
    prop_oneof![
        1 => Just(EvaluationThresholds::default()),
        1 => (any_band(), any_band(), any_band(), any_band()).prop_map(|(e, l, c, m)| {
            EvaluationThresholds {
                error_rate_percent: e,
                latency_increase_percent: l,
                cpu_percent: c,
                memory_percent: m,
            }
        }),
    ]
}

/// The table's rule, written independently: below the healthy bound healthy, above the
/// unhealthy bound unhealthy, otherwise degraded; not a number unknown.
fn oracle(value: Option<f64>, band: Band) -> Verdict {
    match value {
        Some(v) if v.is_finite() => {
            if v < band.healthy_below {
                H
            } else if v > band.unhealthy_above {
                U
            } else {
                D
            }
        }
        _ => X,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn status_is_the_worst_metric_verdict_and_stale_is_never_healthy(
        error in any_value(),
        latency in any_value(),
        baseline in any_value(),
        cpu in any_value(),
        memory in any_value(),
        received_offset in -2 * INTERVAL_MS..INTERVAL_MS,
        present in prop::bool::weighted(0.9),
        thresholds in any_thresholds(),
    ) {
        let fresh_since = NOW.plus_millis(-INTERVAL_MS);
        let metrics = CanaryMetrics {
            error_rate_percent: error,
            latency_p99_ms: latency,
            baseline_latency_p99_ms: baseline,
            cpu_percent: cpu,
            memory_percent: memory,
            received_at: NOW.plus_millis(received_offset),
            source: MetricsSource::Push,
        };
        let given = present.then_some(&metrics);
        let e = evaluate(given, &thresholds, fresh_since, NOW);
        let verdicts: Vec<Verdict> = e.metrics.iter().map(|m| m.verdict).collect();
        prop_assert_eq!(verdicts.len(), 4);
        prop_assert_eq!(e.status, worst(&verdicts), "status {:?} of {:?}", e.status, verdicts);

        let stale = !present || metrics.received_at < fresh_since;
        prop_assert_eq!(e.stale, stale);
        if stale {
            prop_assert_ne!(e.status, H, "stale metrics passed: {:?}", e);
            prop_assert!(verdicts.iter().all(|v| *v == X), "stale: {:?}", verdicts);
        } else {
            // Each simple metric as the table says.
            prop_assert_eq!(verdict_of(&e, ERROR), oracle(error, thresholds.error_rate_percent));
            prop_assert_eq!(verdict_of(&e, CPU), oracle(cpu, thresholds.cpu_percent));
            prop_assert_eq!(verdict_of(&e, MEMORY), oracle(memory, thresholds.memory_percent));
            // Latency: unknown without a usable baseline, else its increase over it.
            let expected_latency = match (latency, baseline) {
                (Some(v), Some(b)) if v.is_finite() && b.is_finite() && b != 0.0 => {
                    oracle(Some((v - b) / b * 100.0), thresholds.latency_increase_percent)
                }
                _ => X,
            };
            prop_assert_eq!(verdict_of(&e, LATENCY), expected_latency);
        }
        if e.status == H {
            prop_assert!(!stale);
            prop_assert!(verdicts.iter().all(|v| *v == H));
        }
    }

    #[test]
    fn a_step_follows_the_verdict_and_never_leaves_the_bounds(
        initial in 1u8..=100,
        increment in 1u8..=100,
        max_offset in 0u8..=100,
        threshold in 1u32..=4,
        script in prop::collection::vec((0u8..4, prop::bool::weighted(0.8)), 1..30),
    ) {
        let max = initial.saturating_add(max_offset).min(100);
        let mut canary = start(config(initial, increment, max, threshold));
        for (pick, gate_allows) in script {
            if !canary.phase.is_active() {
                break;
            }
            let verdict = [H, D, U, X][usize::from(pick)];
            let gate = if gate_allows { allow() } else { lockdown() };
            let at = canary.next_step_at.unwrap();
            let before = canary.clone();
            let (next, action) = canary.step(evaluation(verdict, at), &gate, at);
            let count = if verdict == U { before.consecutive_unhealthy + 1 } else { 0 };
            prop_assert_eq!(next.consecutive_unhealthy, count);
            if count >= threshold {
                prop_assert_eq!(action, StepAction::RolledBack);
                prop_assert_eq!(next.current_percentage, 0);
            } else if !gate_allows {
                prop_assert_eq!(action, StepAction::Paused);
                prop_assert_eq!(next.current_percentage, before.current_percentage);
            } else if verdict == H {
                let expected = before.current_percentage.saturating_add(increment).min(max);
                prop_assert_eq!(next.current_percentage, expected);
                prop_assert_eq!(
                    action,
                    if expected == max { StepAction::Completed } else { StepAction::SteppedUp }
                );
            } else {
                prop_assert_eq!(action, StepAction::Held);
                prop_assert_eq!(next.current_percentage, before.current_percentage);
            }
            prop_assert!(next.current_percentage <= max);
            prop_assert_eq!(next.steps.len(), before.steps.len() + 1);
            prop_assert_eq!(
                next.next_step_at,
                next.phase.is_active().then(|| at.plus_millis(INTERVAL_MS))
            );
            canary = next;
        }
    }
}

/// SPEC §9 freshness for a step evaluated late: within one interval of its scheduled time the
/// window is the interval ending at the scheduled time; after longer downtime it is the
/// interval ending at the evaluation, so pre-downtime metrics are stale.
#[test]
fn a_late_evaluation_keeps_the_scheduled_window_unless_the_delay_is_downtime() {
    let canary = start(config(10, 10, 100, 1));
    let scheduled = NOW.plus_millis(INTERVAL as i64);
    let window_at_schedule = scheduled.plus_millis(-(INTERVAL as i64));
    assert_eq!(
        canary.fresh_since_at(scheduled, scheduled),
        window_at_schedule
    );
    let a_tick_late = scheduled.plus_millis(250);
    assert_eq!(
        canary.fresh_since_at(scheduled, a_tick_late),
        window_at_schedule
    );
    let one_interval_late = scheduled.plus_millis(INTERVAL as i64);
    assert_eq!(
        canary.fresh_since_at(scheduled, one_interval_late),
        window_at_schedule
    );
    let after_downtime = scheduled.plus_millis(5 * INTERVAL as i64);
    assert_eq!(
        canary.fresh_since_at(scheduled, after_downtime),
        after_downtime.plus_millis(-(INTERVAL as i64))
    );
}
