//! Soak verdicts and end states (SPEC §23, RUNBOOK Normal Deploy Flow step 6), table-driven:
//! each bound exactly at, below and above; missing metrics and baselines; stale data; an
//! incident opened during the soak; how a soak ends; and what downtime does.

#![allow(clippy::unwrap_used)]

use deploy_safety_core::{
    CanaryMetrics, Environment, Incident, IncidentCategory, IncidentStatus, MetricsSource,
    Severity, Soak, SoakConfig, SoakStatus, SoakVerdict, Timestamp,
};

const START: Timestamp = Timestamp::from_unix_millis(1_764_547_200_000);
const MINUTE: i64 = 60_000;

fn at(minutes: f64) -> Timestamp {
    START.plus_millis((minutes * MINUTE as f64) as i64)
}

/// The runbook's soak: 15 minutes, evaluated every minute, error rate < 0.1 %, latency p99 <
/// baseline + 10 %.
fn soak() -> Soak {
    Soak::start(
        "sok_1".into(),
        "v1.2.3".into(),
        Environment::STAGING,
        None,
        "v1.2.3".into(),
        SoakConfig::default(),
        "ci",
        START,
    )
}

fn metrics(
    error: Option<f64>,
    latency: Option<f64>,
    baseline: Option<f64>,
    received: Timestamp,
) -> CanaryMetrics {
    CanaryMetrics {
        error_rate_percent: error,
        latency_p99_ms: latency,
        baseline_latency_p99_ms: baseline,
        cpu_percent: None,
        memory_percent: None,
        received_at: received,
        source: MetricsSource::Push,
    }
}

fn incident(id: &str, environment: Option<Environment>, opened: Timestamp) -> Incident {
    Incident {
        id: id.into(),
        title: format!("{id} title"),
        severity: Severity::Low,
        category: IncidentCategory::Operational,
        environment,
        status: IncidentStatus::Resolved,
        opened_at: opened,
        opened_by: "oncall".into(),
        updated_at: opened,
        resolved_at: Some(opened),
        resolved_by: Some("oncall".into()),
        history: Vec::new(),
    }
}

use SoakVerdict::{Fail as F, Pass as P, Unknown as U};

/// The first evaluation (due at minute 1, made on time) of metrics received at minute 0.5.
fn first_verdict(error: Option<f64>, latency: Option<f64>, baseline: Option<f64>) -> SoakVerdict {
    let m = metrics(error, latency, baseline, at(0.5));
    let step = soak().evaluate_due(Some(&m), &[], at(1.0));
    assert_eq!(step.recorded.len(), 1);
    step.recorded[0].verdict
}

#[test]
fn error_rate_must_stay_below_its_bound() {
    for (error, verdict) in [
        (0.0, P),
        (0.05, P),
        (0.099, P),
        (0.1, F), // exactly at the bound fails
        (0.1000001, F),
        (5.0, F),
    ] {
        assert_eq!(
            first_verdict(Some(error), Some(100.0), Some(100.0)),
            verdict,
            "{error}"
        );
    }
}

#[test]
fn latency_must_stay_below_the_baseline_plus_its_bound() {
    for (latency, baseline, verdict) in [
        (100.0, 100.0, P),
        (109.0, 100.0, P),
        (109.999, 100.0, P),
        (110.0, 100.0, F), // exactly: 110 ms against 100 ms and 10 % fails
        (110.001, 100.0, F),
        (90.0, 100.0, P), // faster than the baseline
        (219.0, 200.0, P),
        (220.0, 200.0, F),
        (55.0, 50.0, F),
        (54.9, 50.0, P),
    ] {
        assert_eq!(
            first_verdict(Some(0.0), Some(latency), Some(baseline)),
            verdict,
            "{latency} vs {baseline}"
        );
    }
}

#[test]
fn missing_metrics_and_baselines_are_unknown_never_a_pass() {
    for (error, latency, baseline, verdict, why) in [
        (None, Some(100.0), Some(100.0), U, "error rate not reported"),
        (Some(0.0), None, Some(100.0), U, "latency p99 not reported"),
        (Some(0.0), Some(100.0), None, U, "no baseline latency"),
        (
            Some(0.0),
            Some(100.0),
            Some(0.0),
            U,
            "baseline latency is 0",
        ),
        (None, None, None, U, "error rate not reported"),
        // A known failure is a failure, whatever else is missing.
        (
            Some(1.0),
            None,
            None,
            F,
            "error rate 1% is at or above 0.1%",
        ),
        (None, Some(500.0), Some(100.0), F, "latency p99 500 ms"),
    ] {
        let m = metrics(error, latency, baseline, at(0.5));
        let evaluation = &soak().evaluate_due(Some(&m), &[], at(1.0)).recorded[0];
        assert_eq!(
            evaluation.verdict, verdict,
            "{error:?} {latency:?} {baseline:?}"
        );
        assert!(
            evaluation.reasons.iter().any(|r| r.contains(why)),
            "{why}: {:?}",
            evaluation.reasons
        );
    }
}

#[test]
fn metrics_from_before_the_interval_are_stale() {
    // Received at minute 0.9, judged in the second interval (minutes 1 to 2): stale.
    let m = metrics(Some(0.0), Some(100.0), Some(100.0), at(0.9));
    let s = soak();
    let first = s.evaluate_due(Some(&m), &[], at(1.0));
    assert_eq!(first.recorded[0].verdict, P);
    let second = first.soak.evaluate_due(Some(&m), &[], at(2.0));
    let evaluation = &second.recorded[0];
    assert_eq!(evaluation.verdict, U);
    assert!(evaluation.reasons[0].contains("no metrics received in this interval"));
    assert_eq!(
        evaluation.error_rate_percent, None,
        "stale values are not judged"
    );
    // No metrics at all.
    let none = s.evaluate_due(None, &[], at(1.0));
    assert_eq!(none.recorded[0].reasons, ["no metrics received"]);
    // Received at the very start of the interval: fresh.
    let m = metrics(Some(0.0), Some(100.0), Some(100.0), at(1.0));
    assert_eq!(
        first.soak.evaluate_due(Some(&m), &[], at(2.0)).recorded[0].verdict,
        P
    );
}

#[test]
fn an_incident_opened_during_the_soak_fails_it_and_is_named() {
    let good = metrics(Some(0.0), Some(100.0), Some(100.0), at(0.5));
    for (incident, fails) in [
        (
            incident("inc_staging", Some(Environment::STAGING), at(0.2)),
            true,
        ),
        (incident("inc_all", None, at(0.7)), true),
        (
            incident("inc_prod", Some(Environment::PRODUCTION), at(0.5)),
            false,
        ),
        (
            incident(
                "inc_before",
                Some(Environment::STAGING),
                START.plus_millis(-1),
            ),
            false,
        ),
        (
            incident("inc_at_start", Some(Environment::STAGING), START),
            true,
        ),
        // Opened after the interval ended but before the (on-time) evaluation: counts now.
        (
            incident("inc_late", Some(Environment::STAGING), at(1.0)),
            true,
        ),
    ] {
        let step = soak().evaluate_due(Some(&good), std::slice::from_ref(&incident), at(1.0));
        let evaluation = &step.recorded[0];
        assert_eq!(evaluation.verdict == F, fails, "{}", incident.id);
        if fails {
            assert_eq!(evaluation.incidents[0].id, incident.id);
            assert!(evaluation.reasons[0].contains(&incident.id));
            assert_eq!(step.soak.status, SoakStatus::Failed);
        } else {
            assert!(evaluation.incidents.is_empty());
        }
    }
}

#[test]
fn each_evaluation_keeps_its_values_and_thresholds() {
    let m = metrics(Some(0.05), Some(105.0), Some(100.0), at(0.5));
    let e = &soak().evaluate_due(Some(&m), &[], at(1.0)).recorded[0];
    assert_eq!(
        (e.number, e.interval_start, e.interval_end, e.evaluated_at),
        (1, START, at(1.0), at(1.0))
    );
    assert_eq!(e.error_rate_percent, Some(0.05));
    assert_eq!(e.latency_p99_ms, Some(105.0));
    assert_eq!(e.baseline_latency_p99_ms, Some(100.0));
    assert_eq!(e.latency_increase_percent, Some(5.0));
    assert_eq!(e.max_error_rate_percent, 0.1);
    assert_eq!(e.max_latency_increase_percent, 10.0);
    assert_eq!(e.max_latency_p99_ms, Some(110.00000000000001));
    assert_eq!(e.metrics_received_at, Some(at(0.5)));
    assert!(e.reasons.is_empty());
}

/// Runs a whole soak minute by minute, with `verdict_at(minute)` deciding each interval's
/// metrics: `Some(true)` healthy, `Some(false)` failing, `None` none pushed.
fn run(verdict_at: impl Fn(u32) -> Option<bool>) -> Soak {
    let mut s = soak();
    for minute in 1..=15 {
        let m = verdict_at(minute).map(|good| {
            metrics(
                Some(if good { 0.0 } else { 0.5 }),
                Some(100.0),
                Some(100.0),
                at(f64::from(minute) - 0.5),
            )
        });
        let step = s.evaluate_due(m.as_ref(), &[], at(f64::from(minute)));
        s = step.soak;
        if s.status != SoakStatus::Running {
            break;
        }
    }
    s
}

#[test]
fn how_a_soak_ends() {
    let passed = run(|_| Some(true));
    assert_eq!(passed.status, SoakStatus::Passed);
    assert_eq!(passed.evaluations.len(), 15);
    assert_eq!(passed.finished_at, Some(at(15.0)));
    assert_eq!(passed.next_evaluation_at, None);
    assert_eq!(passed.result.as_deref(), Some("all 15 evaluations passed"));

    // Failed at once, at the first failing evaluation, not at the end.
    let failed = run(|minute| Some(minute != 4));
    assert_eq!(failed.status, SoakStatus::Failed);
    assert_eq!(failed.evaluations.len(), 4);
    assert_eq!(failed.finished_at, Some(at(4.0)));
    assert!(
        failed
            .result
            .unwrap()
            .starts_with("evaluation 4 failed: error rate 0.5%")
    );

    // A gap in the metrics: inconclusive, naming the evaluations without data.
    let gap = run(|minute| (minute != 6 && minute != 7).then_some(true));
    assert_eq!(gap.status, SoakStatus::Inconclusive);
    assert_eq!(gap.evaluations.len(), 15);
    assert_eq!(
        gap.result.as_deref(),
        Some("evaluation(s) 6, 7 of 15 had no data")
    );

    // Aborted.
    let aborted = soak().abort("eng-lead", "release withdrawn", at(3.0));
    assert_eq!(aborted.status, SoakStatus::Aborted);
    assert_eq!(
        aborted.result.as_deref(),
        Some("aborted by eng-lead: release withdrawn")
    );
    assert_eq!(aborted.next_evaluation_at, None);
}

#[test]
fn nothing_is_evaluated_before_it_is_due() {
    let step = soak().evaluate_due(None, &[], at(0.99));
    assert!(step.recorded.is_empty());
    assert!(!step.ended);
    assert_eq!(step.soak, soak());
}

#[test]
fn after_downtime_the_missed_intervals_are_unknown_and_none_is_skipped() {
    let s = run(|minute| (minute <= 3).then_some(true));
    assert_eq!(s.status, SoakStatus::Inconclusive, "sanity: a gap");
    // Down from minute 3 to minute 8.5: one pass records intervals 4 to 8, each once; the
    // ones whose end is more than an interval back are unknown; the current one (ending at 8)
    // is judged on the metrics pulled now.
    let mut s = soak();
    for minute in 1..=3 {
        let m = metrics(
            Some(0.0),
            Some(100.0),
            Some(100.0),
            at(f64::from(minute) - 0.5),
        );
        s = s.evaluate_due(Some(&m), &[], at(f64::from(minute))).soak;
    }
    let pulled_now = metrics(Some(0.0), Some(100.0), Some(100.0), at(8.5));
    let step = s.evaluate_due(Some(&pulled_now), &[], at(8.5));
    let numbers: Vec<u32> = step.recorded.iter().map(|e| e.number).collect();
    assert_eq!(numbers, [4, 5, 6, 7, 8]);
    let verdicts: Vec<SoakVerdict> = step.recorded.iter().map(|e| e.verdict).collect();
    assert_eq!(verdicts, [U, U, U, U, P]);
    assert!(step.recorded[0].reasons[0].contains("not running"));
    assert_eq!(step.soak.next_evaluation_at, Some(at(9.0)));
    // Evaluating again at the same moment does nothing: nothing is repeated.
    let again = step.soak.evaluate_due(Some(&pulled_now), &[], at(8.5));
    assert!(again.recorded.is_empty());

    // An incident opened while the server was down still fails the interval it was opened in.
    let opened = incident("inc_down", Some(Environment::STAGING), at(5.5));
    let step = s.evaluate_due(Some(&pulled_now), &[opened], at(8.5));
    let verdicts: Vec<SoakVerdict> = step.recorded.iter().map(|e| e.verdict).collect();
    assert_eq!(verdicts, [U, U, F]);
    assert_eq!(step.soak.status, SoakStatus::Failed);

    // Down past the end: every missed interval recorded, then inconclusive.
    let step = s.evaluate_due(None, &[], at(40.0));
    assert_eq!(step.recorded.len(), 12);
    assert!(step.ended);
    assert_eq!(step.soak.status, SoakStatus::Inconclusive);
}

#[test]
fn intervals_that_do_not_divide_the_duration_end_at_the_end() {
    let config = SoakConfig {
        duration_ms: 150_000,
        interval_ms: 60_000,
        ..SoakConfig::default()
    };
    assert_eq!(config.evaluations(), 3);
    let mut s = Soak::start(
        "s".into(),
        "v".into(),
        Environment::STAGING,
        None,
        "v".into(),
        config,
        "ci",
        START,
    );
    let mut ends = Vec::new();
    while s.status == SoakStatus::Running {
        let due = s.next_evaluation_at.unwrap();
        let m = metrics(Some(0.0), Some(1.0), Some(1.0), due);
        let step = s.evaluate_due(Some(&m), &[], due);
        ends.push(step.recorded[0].interval_end);
        s = step.soak;
    }
    assert_eq!(ends, [at(1.0), at(2.0), at(2.5)]);
    assert_eq!(s.status, SoakStatus::Passed);
}

#[test]
fn configs_are_checked_naming_the_field() {
    let d = SoakConfig::default();
    assert_eq!(d.check(), Ok(()));
    assert_eq!(
        (
            d.duration_ms,
            d.interval_ms,
            d.max_error_rate_percent,
            d.max_latency_increase_percent
        ),
        (900_000, 60_000, 0.1, 10.0)
    );
    for (config, field) in [
        (
            SoakConfig {
                duration_ms: 999,
                ..d
            },
            "config.durationMs",
        ),
        (
            SoakConfig {
                duration_ms: SoakConfig::MAX_DURATION_MS + 1,
                ..d
            },
            "config.durationMs",
        ),
        (
            SoakConfig {
                interval_ms: 999,
                ..d
            },
            "config.intervalMs",
        ),
        (
            SoakConfig {
                interval_ms: 900_001,
                ..d
            },
            "config.intervalMs",
        ),
        // More than 1440 evaluations.
        (
            SoakConfig {
                duration_ms: 1_441_000,
                interval_ms: 1_000,
                ..d
            },
            "config.intervalMs",
        ),
        (
            SoakConfig {
                duration_ms: SoakConfig::MAX_DURATION_MS,
                interval_ms: 419_999,
                ..d
            },
            "config.intervalMs",
        ),
        (
            SoakConfig {
                max_error_rate_percent: -0.1,
                ..d
            },
            "config.maxErrorRatePercent",
        ),
        (
            SoakConfig {
                max_error_rate_percent: f64::NAN,
                ..d
            },
            "config.maxErrorRatePercent",
        ),
        (
            SoakConfig {
                max_latency_increase_percent: -1.0,
                ..d
            },
            "config.maxLatencyIncreasePercent",
        ),
        (
            SoakConfig {
                max_latency_increase_percent: f64::INFINITY,
                ..d
            },
            "config.maxLatencyIncreasePercent",
        ),
    ] {
        assert_eq!(config.check().unwrap_err().0, field, "{config:?}");
    }
    for config in [
        SoakConfig {
            duration_ms: 1_440_000,
            interval_ms: 1_000,
            ..d
        },
        SoakConfig {
            duration_ms: SoakConfig::MAX_DURATION_MS,
            interval_ms: 420_000,
            ..d
        },
        SoakConfig {
            duration_ms: 1_000,
            interval_ms: 1_000,
            ..d
        },
        SoakConfig {
            interval_ms: 900_000,
            ..d
        },
        SoakConfig {
            max_error_rate_percent: 0.0,
            max_latency_increase_percent: 0.0,
            ..d
        },
    ] {
        assert_eq!(config.check(), Ok(()), "{config:?}");
    }
}

mod reference {
    //! An independent reference for the verdict of one interval, in whole numbers: error rates
    //! in hundredths of a percent, latencies in milliseconds, the bound in percent.

    use super::*;
    use proptest::prelude::*;

    fn expected(
        error: Option<u32>,
        latency: Option<u32>,
        baseline: Option<u32>,
        max_error: u32,
        bound: u32,
    ) -> SoakVerdict {
        let error_fails = error.is_some_and(|e| e >= max_error);
        let latency_fails = match (latency, baseline) {
            (Some(l), Some(b)) if b > 0 => {
                u64::from(l) * 100 >= u64::from(b) * u64::from(100 + bound)
            }
            _ => false,
        };
        if error_fails || latency_fails {
            SoakVerdict::Fail
        } else if error.is_none() || latency.is_none() || baseline.is_none_or(|b| b == 0) {
            SoakVerdict::Unknown
        } else {
            SoakVerdict::Pass
        }
    }

    proptest! {
        #[test]
        fn verdicts_match_the_reference(
            error in proptest::option::weighted(0.9, 0u32..40),
            latency in proptest::option::weighted(0.9, 0u32..400),
            baseline in proptest::option::weighted(0.9, 0u32..300),
            max_error in 0u32..30,
            bound in 0u32..60,
        ) {
            let config = SoakConfig {
                max_error_rate_percent: f64::from(max_error) / 100.0,
                max_latency_increase_percent: f64::from(bound),
                ..SoakConfig::default()
            };
            let s = Soak::start("s".into(), "v".into(), Environment::STAGING, None, "v".into(), config, "ci", START);
            let m = metrics(
                error.map(|e| f64::from(e) / 100.0),
                latency.map(f64::from),
                baseline.map(f64::from),
                at(0.5),
            );
            let step = s.evaluate_due(Some(&m), &[], at(1.0));
            prop_assert_eq!(step.recorded[0].verdict, expected(error, latency, baseline, max_error, bound));
        }
    }
}
