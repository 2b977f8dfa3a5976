//! The soak runner (SPEC §23, RUNBOOK Normal Deploy Flow step 6) against a real SQLite store:
//! soaks evaluated by `SoakRunner::tick(now)` on a `ManualClock` (no test sleeps), metrics
//! pushed as `POST /soaks/{id}/metrics` does, and what each evaluation leaves: the soak's
//! evaluations and result, audit entries, events. Restarts reopen the same database.

#![allow(clippy::unwrap_used)]

mod canary_support;

use canary_support::{START, World};
use deploy_safety_api_types::{
    AbortSoakRequest, AuditListQuery, OpenIncidentRequest, SoakConfigRequest, SoakMetricsRequest,
    StartSoakRequest,
};
use deploy_safety_app::AppError;
use deploy_safety_core::{
    Environment, EventType, IncidentCategory, ReasonCode, Severity, Soak, SoakStatus, SoakVerdict,
};
use deploy_safety_engine::SoakRunner;

const MINUTE: i64 = 60_000;

/// A five-minute soak, evaluated every minute, with the runbook's thresholds.
async fn start(w: &World, release: &str) -> Soak {
    w.app
        .start_soak(
            &w.dev,
            StartSoakRequest {
                release_id: release.to_owned(),
                environment: Environment::STAGING,
                service: None,
                deployment_id: None,
                config: Some(SoakConfigRequest {
                    duration_ms: Some(5 * 60_000),
                    interval_ms: Some(60_000),
                    ..SoakConfigRequest::default()
                }),
            },
        )
        .await
        .unwrap()
}

fn good() -> SoakMetricsRequest {
    SoakMetricsRequest {
        error_rate_percent: Some(0.02),
        latency_p99_ms: Some(104.0),
        baseline_latency_p99_ms: Some(100.0),
    }
}

async fn push(w: &World, id: &str, metrics: SoakMetricsRequest) {
    w.app.push_soak_metrics(id, metrics).await.unwrap();
}

/// Half a minute on, metrics pushed (if any), half a minute on, one tick: one interval.
async fn minute(w: &World, runner: &SoakRunner, id: &str, metrics: Option<SoakMetricsRequest>) {
    w.advance(MINUTE / 2);
    if let Some(m) = metrics {
        push(w, id, m).await;
    }
    w.advance(MINUTE / 2);
    runner.tick(w.now()).await.unwrap();
}

async fn audit_actions(w: &World, prefix: &str) -> Vec<(String, String)> {
    let page = w
        .app
        .audit_page(AuditListQuery {
            limit: Some(1_000),
            ..AuditListQuery::default()
        })
        .await
        .unwrap();
    let mut entries: Vec<(String, String)> = page
        .entries
        .iter()
        .filter_map(|e| e.entry())
        .filter(|e| e.action.starts_with(prefix))
        .map(|e| (e.action.clone(), e.reason.clone()))
        .collect();
    entries.reverse();
    entries
}

async fn soak_events(w: &World) -> Vec<EventType> {
    w.event_types()
        .await
        .into_iter()
        .filter(|t| t.as_str().starts_with("soak."))
        .collect()
}

#[tokio::test]
async fn a_soak_with_good_metrics_passes_at_its_end() {
    let w = World::new().await;
    let runner = SoakRunner::new(w.app.clone());
    let soak = start(&w, "v1.2.3").await;
    assert_eq!(soak.status, SoakStatus::Running);
    assert_eq!(soak.ends_at, START.plus_millis(5 * MINUTE));
    assert_eq!(soak.next_evaluation_at, Some(START.plus_millis(MINUTE)));
    for n in 1..=4 {
        minute(&w, &runner, &soak.id, Some(good())).await;
        let now = w.app.get_soak(&soak.id).await.unwrap();
        assert_eq!(now.evaluations.len(), n);
        assert_eq!(now.status, SoakStatus::Running);
    }
    minute(&w, &runner, &soak.id, Some(good())).await;
    let done = w.app.get_soak(&soak.id).await.unwrap();
    assert_eq!(done.status, SoakStatus::Passed);
    assert_eq!(done.finished_at, Some(START.plus_millis(5 * MINUTE)));
    assert!(
        done.evaluations
            .iter()
            .all(|e| e.verdict == SoakVerdict::Pass)
    );
    let e = &done.evaluations[2];
    assert_eq!(
        (
            e.error_rate_percent,
            e.latency_p99_ms,
            e.baseline_latency_p99_ms
        ),
        (Some(0.02), Some(104.0), Some(100.0))
    );
    assert_eq!(
        (e.max_error_rate_percent, e.max_latency_increase_percent),
        (0.1, 10.0)
    );

    // Nothing more to do.
    w.advance(10 * MINUTE);
    assert!(runner.tick(w.now()).await.unwrap().is_empty());

    let mut expected = vec![("soak.start".to_owned(), "ALLOWED".to_owned())];
    expected.extend((0..5).map(|_| ("soak.evaluate".to_owned(), "SOAK_EVALUATION".to_owned())));
    expected.push(("soak.finish".to_owned(), "SOAK_PASSED".to_owned()));
    assert_eq!(audit_actions(&w, "soak.").await, expected);
    let mut events = vec![EventType::SoakStarted];
    events.extend([EventType::SoakEvaluated; 5]);
    events.push(EventType::SoakPassed);
    assert_eq!(soak_events(&w).await, events);
    let passed = w
        .events()
        .await
        .into_iter()
        .find(|e| e.event_type == EventType::SoakPassed)
        .unwrap();
    assert_eq!(passed.data["soakId"], soak.id);
    assert_eq!(passed.data["releaseId"], "v1.2.3");
    assert_eq!(passed.environment, Some(Environment::STAGING));
}

#[tokio::test]
async fn a_soak_fails_at_once_at_the_first_failing_evaluation() {
    let w = World::new().await;
    let runner = SoakRunner::new(w.app.clone());
    let soak = start(&w, "v1.2.3").await;
    minute(&w, &runner, &soak.id, Some(good())).await;
    let slow = SoakMetricsRequest {
        latency_p99_ms: Some(110.0),
        ..good()
    };
    minute(&w, &runner, &soak.id, Some(slow)).await;
    let failed = w.app.get_soak(&soak.id).await.unwrap();
    assert_eq!(failed.status, SoakStatus::Failed);
    assert_eq!(failed.evaluations.len(), 2, "not at its end: at once");
    assert_eq!(failed.finished_at, Some(START.plus_millis(2 * MINUTE)));
    assert!(
        failed
            .result
            .as_deref()
            .unwrap()
            .contains("latency p99 110 ms"),
        "{failed:?}"
    );
    // An ended soak takes no metrics.
    let refused = w.app.push_soak_metrics(&soak.id, good()).await.unwrap_err();
    assert!(
        matches!(
            refused,
            AppError::Conflict {
                reason: Some(ReasonCode::SoakNotRunning),
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(soak_events(&w).await.last(), Some(&EventType::SoakFailed));
    assert_eq!(
        audit_actions(&w, "soak.finish").await,
        [("soak.finish".to_owned(), "SOAK_FAILED".to_owned())]
    );
}

#[tokio::test]
async fn an_incident_opened_during_the_soak_fails_it_naming_the_incident() {
    let w = World::new().await;
    let runner = SoakRunner::new(w.app.clone());
    let soak = start(&w, "v1.2.3").await;
    minute(&w, &runner, &soak.id, Some(good())).await;
    let incident = w
        .app
        .open_incident(
            &w.dev,
            OpenIncidentRequest {
                title: "checkout 500s".to_owned(),
                severity: Severity::Low,
                category: IncidentCategory::Operational,
                environment: Some(Environment::STAGING),
            },
        )
        .await
        .unwrap();
    minute(&w, &runner, &soak.id, Some(good())).await;
    let failed = w.app.get_soak(&soak.id).await.unwrap();
    assert_eq!(failed.status, SoakStatus::Failed);
    let last = failed.evaluations.last().unwrap();
    assert_eq!(last.incidents[0].id, incident.id);
    assert!(failed.result.unwrap().contains(&incident.id));
}

#[tokio::test]
async fn a_gap_in_the_metrics_leaves_it_inconclusive() {
    let w = World::new().await;
    let runner = SoakRunner::new(w.app.clone());
    let soak = start(&w, "v1.2.3").await;
    for n in 1..=5 {
        minute(&w, &runner, &soak.id, (n != 3).then(good)).await;
    }
    let done = w.app.get_soak(&soak.id).await.unwrap();
    assert_eq!(done.status, SoakStatus::Inconclusive);
    assert_eq!(done.evaluations[2].verdict, SoakVerdict::Unknown);
    assert_eq!(
        done.result.as_deref(),
        Some("evaluation(s) 3 of 5 had no data")
    );
    assert_eq!(
        soak_events(&w).await.last(),
        Some(&EventType::SoakInconclusive)
    );
}

#[tokio::test]
async fn a_restart_in_the_middle_neither_repeats_nor_skips_an_evaluation() {
    let w = World::new().await;
    let runner = SoakRunner::new(w.app.clone());
    let soak = start(&w, "v1.2.3").await;
    minute(&w, &runner, &soak.id, Some(good())).await;
    minute(&w, &runner, &soak.id, Some(good())).await;
    // Stopped just after the second evaluation; back 30 s later: the schedule is in the
    // database, so the third evaluation is made at minute 3, once.
    let at = w.now().plus_millis(MINUTE / 2);
    drop(runner);
    let w = w.restart_at(at).await;
    let runner = SoakRunner::new(w.app.clone());
    assert!(
        runner.tick(w.now()).await.unwrap().is_empty(),
        "nothing due yet"
    );
    push(&w, &soak.id, good()).await;
    w.advance(MINUTE / 2);
    let done = runner.tick(w.now()).await.unwrap();
    assert_eq!(done[0].1.len(), 1);
    assert_eq!(done[0].1[0].number, 3);
    assert!(
        runner.tick(w.now()).await.unwrap().is_empty(),
        "never twice"
    );

    // Down again for three minutes, past the end: the missed intervals are unknown, each
    // recorded once, and the soak ends inconclusive.
    let at = w.now().plus_millis(3 * MINUTE);
    drop(runner);
    let w = w.restart_at(at).await;
    let runner = SoakRunner::new(w.app.clone());
    let done = runner.tick(w.now()).await.unwrap();
    let numbers: Vec<u32> = done[0].1.iter().map(|e| e.number).collect();
    assert_eq!(numbers, [4, 5]);
    let soak = w.app.get_soak(&soak.id).await.unwrap();
    assert_eq!(soak.status, SoakStatus::Inconclusive);
    let verdicts: Vec<SoakVerdict> = soak.evaluations.iter().map(|e| e.verdict).collect();
    assert_eq!(
        verdicts,
        [
            SoakVerdict::Pass,
            SoakVerdict::Pass,
            SoakVerdict::Pass,
            SoakVerdict::Unknown,
            SoakVerdict::Unknown
        ]
    );
    assert_eq!(
        audit_actions(&w, "soak.evaluate").await.len(),
        5,
        "one entry per evaluation"
    );
}

#[tokio::test]
async fn two_runners_on_one_database_evaluate_each_interval_once() {
    let w = World::new().await;
    let a = SoakRunner::new(w.app.clone());
    let b = SoakRunner::new(w.replica());
    let soak = start(&w, "v1.2.3").await;
    for _ in 0..5 {
        w.advance(MINUTE / 2);
        push(&w, &soak.id, good()).await;
        w.advance(MINUTE / 2);
        let now = w.now();
        let (x, y) = tokio::join!(a.tick(now), b.tick(now));
        let recorded: usize = x
            .unwrap()
            .iter()
            .chain(y.unwrap().iter())
            .map(|(_, e)| e.len())
            .sum();
        assert_eq!(recorded, 1);
    }
    assert_eq!(
        w.app.get_soak(&soak.id).await.unwrap().status,
        SoakStatus::Passed
    );
}

#[tokio::test]
async fn an_aborted_soak_is_no_longer_evaluated() {
    let w = World::new().await;
    let runner = SoakRunner::new(w.app.clone());
    let soak = start(&w, "v1.2.3").await;
    minute(&w, &runner, &soak.id, Some(good())).await;
    let aborted = w
        .app
        .abort_soak(
            &w.lead,
            &soak.id,
            AbortSoakRequest {
                reason: "release withdrawn".to_owned(),
            },
        )
        .await
        .unwrap();
    assert_eq!(aborted.status, SoakStatus::Aborted);
    assert_eq!(
        aborted.result.as_deref(),
        Some("aborted by lead: release withdrawn")
    );
    w.advance(10 * MINUTE);
    assert!(runner.tick(w.now()).await.unwrap().is_empty());
    assert_eq!(w.app.get_soak(&soak.id).await.unwrap().evaluations.len(), 1);
    // A new soak of the same release may start now.
    let again = start(&w, "v1.2.3").await;
    assert_eq!(again.status, SoakStatus::Running);
    assert_eq!(
        soak_events(&w).await,
        [
            EventType::SoakStarted,
            EventType::SoakEvaluated,
            EventType::SoakAborted,
            EventType::SoakStarted
        ]
    );
}
