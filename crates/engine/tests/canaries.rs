//! The canary runner (SPEC §9–10, RUNBOOK "Canary Deployment Flow") against a real SQLite store:
//! canaries stepped by `CanaryRunner::tick(now)` on a `ManualClock` moved by whole intervals
//! (no test sleeps), metrics pushed as `POST /canary/{environment}/metrics` does, and the
//! records each step leaves: status, step history, release history, rollbacks, audit, events.

#![allow(clippy::unwrap_used)]

mod canary_support;

use canary_support::{INTERVAL, START, World, config, degraded, healthy, unhealthy};
use deploy_safety_api_types::{AuditListQuery, CreateRollbackRequest};
use deploy_safety_app::AppError;
use deploy_safety_core::{
    Action, AuditDecision, CanaryPhase, Environment, EventType, ReasonCode, ReleaseChange,
    RollbackStatus, SecurityMode, StepAction, ThreatLevel, Verdict,
};
use deploy_safety_engine::CanaryRunner;

const STAGING: Environment = Environment::STAGING;
const PRODUCTION: Environment = Environment::PRODUCTION;

/// Audit entries of `action`, oldest first.
async fn audit(w: &World, action: &str) -> Vec<deploy_safety_core::AuditEntry> {
    let mut entries = w
        .app
        .audit_page(AuditListQuery {
            action: Some(action.to_owned()),
            limit: Some(1_000),
            ..AuditListQuery::default()
        })
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| e.entry().cloned().expect("no corrupt entries"))
        .collect::<Vec<_>>();
    entries.reverse();
    entries
}

/// The percentages announced by `canary.weight_changed` events, in order.
async fn announced_weights(w: &World) -> Vec<u64> {
    w.events()
        .await
        .iter()
        .filter(|e| e.event_type == EventType::CanaryWeightChanged)
        .map(|e| e.data["percentage"].as_u64().unwrap())
        .collect()
}

fn percentages(view: &deploy_safety_api_types::CanaryView) -> Vec<u8> {
    view.canary.steps.iter().map(|s| s.to_percentage).collect()
}

fn actions(view: &deploy_safety_api_types::CanaryView) -> Vec<StepAction> {
    view.canary.steps.iter().map(|s| s.action).collect()
}

fn blocked_reason(result: Result<impl std::fmt::Debug, AppError>) -> ReasonCode {
    match result {
        Err(AppError::Blocked(decision)) => {
            assert!(!decision.allowed);
            decision.reason
        }
        other => panic!("expected blocked by the gate, got {other:?}"),
    }
}

fn conflict_reason(result: Result<impl std::fmt::Debug, AppError>) -> Option<ReasonCode> {
    match result {
        Err(AppError::Conflict { reason, .. }) => reason,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// A staging canary from start to completion
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_healthy_staging_canary_steps_from_10_to_100_and_completes() {
    let w = World::new().await;
    let started = w.start_staging("v1.2.3").await;
    let id = started.canary.id.clone();
    assert_eq!(started.canary.phase, CanaryPhase::Progressing);
    assert_eq!(started.canary.current_percentage, 10);
    assert_eq!(started.canary.status, Verdict::Unknown);
    assert_eq!(started.canary.environment, STAGING);
    assert_eq!(started.canary.release_id, "v1.2.3");
    assert_eq!(started.canary.started_at, START);
    assert_eq!(started.canary.started_by, "dev");
    assert_eq!(started.canary.start_override_id, None, "staging needs none");
    assert_eq!(started.canary.previous_release, None);
    assert_eq!(
        started.canary.next_step_at,
        Some(START.plus_millis(INTERVAL))
    );

    // Not due before the interval has passed.
    w.advance(INTERVAL / 2);
    w.push(STAGING, healthy()).await;
    w.advance(INTERVAL / 2 - 1);
    assert!(w.tick().await.is_empty(), "not due yet");
    w.advance(1);
    assert_eq!(w.tick().await, [(id.clone(), Some(StepAction::SteppedUp))]);
    assert_eq!(w.status(STAGING).await.canary.current_percentage, 20);

    for k in 2..=9i64 {
        let done = w.interval_with(STAGING, Some(healthy())).await;
        let expected = if k == 9 {
            StepAction::Completed
        } else {
            StepAction::SteppedUp
        };
        assert_eq!(done, [(id.clone(), Some(expected))], "step {k}");
        let view = w.status(STAGING).await;
        assert_eq!(
            i64::from(view.canary.current_percentage),
            10 + 10 * k,
            "step {k}"
        );
        let last = view.canary.steps.last().unwrap();
        assert_eq!(i64::from(last.number), k);
        assert_eq!(last.at, START.plus_millis(k * INTERVAL));
        assert_eq!(last.evaluation.as_ref().unwrap().status, Verdict::Healthy);
    }

    let view = w.status(STAGING).await;
    assert_eq!(view.canary.id, id);
    assert_eq!(view.canary.phase, CanaryPhase::Completed);
    assert_eq!(view.canary.status, Verdict::Healthy);
    assert_eq!(view.canary.current_percentage, 100);
    assert_eq!(view.canary.next_step_at, None);
    assert_eq!(
        view.canary.finished_at,
        Some(START.plus_millis(9 * INTERVAL))
    );
    assert!(view.current_evaluation.is_none(), "a finished canary");
    assert_eq!(
        percentages(&view),
        [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    );
    let numbers: Vec<u32> = view.canary.steps.iter().map(|s| s.number).collect();
    assert_eq!(numbers, (0..=9).collect::<Vec<u32>>());
    // Every evaluation is kept with the raw values, the baseline and the thresholds.
    let latency = view.canary.steps[1]
        .evaluation
        .as_ref()
        .unwrap()
        .metrics
        .iter()
        .find(|m| m.metric == "latencyP99Ms")
        .unwrap()
        .clone();
    assert_eq!(latency.value, Some(105.0));
    assert_eq!(latency.baseline, Some(100.0));
    assert_eq!(
        (latency.healthy_below, latency.unhealthy_above),
        (20.0, 50.0)
    );

    // The release history records the completion.
    assert_eq!(
        w.releases(STAGING).await,
        [("v1.2.3".to_owned(), ReleaseChange::CanaryCompleted)]
    );
    let history = w
        .app
        .releases(STAGING, deploy_safety_api_types::ServiceQuery::default())
        .await
        .unwrap();
    assert_eq!(history.current.as_deref(), Some("v1.2.3"));
    assert_eq!(history.releases[0].reference, id);
    assert_eq!(history.releases[0].at, START.plus_millis(9 * INTERVAL));

    // Every weight change was announced, and the completion.
    assert_eq!(
        announced_weights(&w).await,
        [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    );
    let types = w.event_types().await;
    assert_eq!(types.first(), Some(&EventType::CanaryStarted));
    assert_eq!(types.last(), Some(&EventType::CanaryCompleted));
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == EventType::CanaryCompleted)
            .count(),
        1
    );

    // Every step is audited, by the system.
    let steps = audit(&w, "deploy.canary.step").await;
    assert_eq!(steps.len(), 9);
    for entry in &steps {
        assert_eq!(entry.principal, "system");
        assert_eq!(entry.environment, Some(STAGING));
        assert_eq!(entry.decision, AuditDecision::Recorded);
        assert_eq!(entry.reason, "CANARY_STEP");
    }

    // Nothing more happens.
    w.advance(10 * INTERVAL);
    assert!(w.tick().await.is_empty());
    assert_eq!(w.status(STAGING).await.canary.steps.len(), 10);
}

// ---------------------------------------------------------------------------------------------
// Holds
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn degraded_metrics_hold_and_so_do_stale_ones() {
    let w = World::new().await;
    let id = w.start_staging("v2").await.canary.id;

    // Degraded (error rate 1%): held for review.
    w.advance(INTERVAL / 2);
    w.push(STAGING, degraded()).await;
    let view = w.status(STAGING).await;
    let now_eval = view.current_evaluation.unwrap();
    assert_eq!(
        now_eval.status,
        Verdict::Degraded,
        "GET shows the verdict so far"
    );
    w.advance(INTERVAL - INTERVAL / 2);
    assert_eq!(w.tick().await, [(id.clone(), Some(StepAction::Held))]);
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.phase, CanaryPhase::Progressing);
    assert_eq!(view.canary.status, Verdict::Degraded);
    assert_eq!(view.canary.current_percentage, 10, "unchanged");
    assert_eq!(
        view.canary.next_step_at,
        Some(START.plus_millis(2 * INTERVAL))
    );
    let step = view.canary.steps.last().unwrap();
    assert_eq!(step.action, StepAction::Held);
    assert_eq!((step.from_percentage, step.to_percentage), (10, 10));
    let evaluation = step.evaluation.as_ref().unwrap();
    assert!(!evaluation.stale);
    let error = evaluation
        .metrics
        .iter()
        .find(|m| m.metric == "errorRatePercent")
        .unwrap();
    assert_eq!(error.verdict, Verdict::Degraded);
    assert_eq!(error.value, Some(1.0));

    // No metrics in the next interval: the degraded ones are stale now, so unknown, held.
    assert_eq!(
        w.interval_with(STAGING, None).await,
        [(id.clone(), Some(StepAction::Held))]
    );
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.status, Verdict::Unknown);
    assert_eq!(view.canary.current_percentage, 10);
    let evaluation = view
        .canary
        .steps
        .last()
        .unwrap()
        .evaluation
        .clone()
        .unwrap();
    assert!(evaluation.stale);
    assert_eq!(evaluation.status, Verdict::Unknown);
    assert!(
        evaluation
            .metrics
            .iter()
            .all(|m| m.verdict == Verdict::Unknown),
        "{evaluation:?}"
    );
    assert_eq!(
        evaluation.metrics_received_at,
        Some(START.plus_millis(INTERVAL / 2)),
        "the stale metrics' time is kept"
    );

    // Healthy again: it moves on.
    assert_eq!(
        w.interval_with(STAGING, Some(healthy())).await,
        [(id.clone(), Some(StepAction::SteppedUp))]
    );
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.current_percentage, 20);
    assert_eq!(
        actions(&view),
        [
            StepAction::Started,
            StepAction::Held,
            StepAction::Held,
            StepAction::SteppedUp
        ]
    );
    // Holds change no weight: only the start and the step up were announced.
    assert_eq!(announced_weights(&w).await, [10, 20]);
}

#[tokio::test]
async fn a_canary_that_never_gets_metrics_never_steps_up() {
    let w = World::new().await;
    let id = w.start_staging("v2").await.canary.id;
    for _ in 0..5 {
        assert_eq!(
            w.interval_with(STAGING, None).await,
            [(id.clone(), Some(StepAction::Held))]
        );
    }
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.current_percentage, 10);
    assert_eq!(view.canary.status, Verdict::Unknown);
    assert_eq!(view.canary.phase, CanaryPhase::Progressing);
}

// ---------------------------------------------------------------------------------------------
// Automatic rollback
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unhealthy_canary_is_rolled_back_to_the_release_that_last_ran() {
    let w = World::new().await;
    w.start_staging("v1").await;
    w.run_to_completion(STAGING).await;
    let events_before = w.app.last_event_seq().await.unwrap();

    let started = w.start_staging("v2").await;
    let id = started.canary.id.clone();
    assert_eq!(started.canary.previous_release.as_deref(), Some("v1"));
    let at = w.now().plus_millis(INTERVAL);
    assert_eq!(
        w.interval_with(STAGING, Some(unhealthy())).await,
        [(id.clone(), Some(StepAction::RolledBack))]
    );

    let view = w.status(STAGING).await;
    assert_eq!(view.canary.id, id, "the most recent canary");
    assert_eq!(view.canary.phase, CanaryPhase::RolledBack);
    assert_eq!(view.canary.current_percentage, 0);
    assert_eq!(view.canary.status, Verdict::Unhealthy);
    assert_eq!(view.canary.next_step_at, None);
    assert_eq!(view.canary.finished_at, Some(at));
    let step = view.canary.steps.last().unwrap();
    assert_eq!(step.action, StepAction::RolledBack);
    assert_eq!((step.from_percentage, step.to_percentage), (10, 0));

    // A rollback record, automatic, to the release that ran before, executed at once.
    let rollbacks = w.rollbacks(STAGING).await;
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    let rollback = &rollbacks[0];
    assert!(rollback.automatic);
    assert_eq!(rollback.canary_id.as_deref(), Some(id.as_str()));
    assert_eq!(rollback.from_version, "v2");
    assert_eq!(rollback.to_version, "v1");
    assert!(rollback.known_target);
    assert_eq!(rollback.created_by, "system");
    assert_eq!(rollback.created_at, at);
    assert_eq!(
        rollback.status,
        RollbackStatus::Executed,
        "no executor: announced"
    );
    assert_eq!(rollback.executed_at, Some(at));
    assert_eq!(w.app.get_rollback(&rollback.id).await.unwrap(), *rollback);

    // v1 runs again.
    assert_eq!(
        w.releases(STAGING).await,
        [
            ("v1".to_owned(), ReleaseChange::CanaryCompleted),
            ("v1".to_owned(), ReleaseChange::Rollback),
        ]
    );
    assert_eq!(
        w.app
            .releases(STAGING, deploy_safety_api_types::ServiceQuery::default())
            .await
            .unwrap()
            .current
            .as_deref(),
        Some("v1")
    );

    // Audited, by the system.
    let entries = audit(&w, "deploy.canary.rollback").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].principal, "system");
    assert_eq!(entries[0].environment, Some(STAGING));
    assert_eq!(entries[0].reason, "AUTOMATIC_ROLLBACK");
    assert_eq!(entries[0].at, at);

    // Announced: the weight back to 0, the canary rolled back, the rollback executed.
    let events: Vec<_> = w
        .events()
        .await
        .into_iter()
        .filter(|e| e.seq > events_before)
        .collect();
    let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            EventType::CanaryStarted,
            EventType::CanaryWeightChanged,
            EventType::CanaryWeightChanged,
            EventType::CanaryRolledBack,
            EventType::RollbackExecuted,
        ]
    );
    assert_eq!(events[2].data["percentage"], 0);
    assert_eq!(events[3].data["canaryId"], id.as_str());
    assert_eq!(events[4].data["automatic"], true);
    assert_eq!(events[4].data["toVersion"], "v1");
    assert_eq!(events[4].data["rollbackId"], rollback.id.as_str());

    // It is no longer active: a new canary may start.
    w.advance(INTERVAL);
    assert!(w.tick().await.is_empty());
    w.start_staging("v3").await;
}

#[tokio::test]
async fn with_no_release_before_it_an_automatic_rollback_returns_to_the_baseline() {
    let w = World::new().await;
    let id = w.start_staging("v1").await.canary.id;
    assert_eq!(
        w.interval_with(STAGING, Some(unhealthy())).await,
        [(id, Some(StepAction::RolledBack))]
    );
    let rollbacks = w.rollbacks(STAGING).await;
    assert_eq!(rollbacks.len(), 1);
    assert!(rollbacks[0].automatic);
    assert!(!rollbacks[0].known_target);
    assert!(rollbacks[0].warning.is_some());
    assert!(w.releases(STAGING).await.is_empty(), "no release named");
}

#[tokio::test]
async fn failure_threshold_counts_consecutive_unhealthy_evaluations() {
    let w = World::new().await;
    w.start_staging("v1").await;
    w.run_to_completion(STAGING).await;
    let id = w
        .start_as(&w.dev, STAGING, "v2", config(3))
        .await
        .unwrap()
        .canary
        .id;
    let script = [
        (unhealthy(), StepAction::Held, 10),
        (unhealthy(), StepAction::Held, 10),
        (healthy(), StepAction::SteppedUp, 20),
        (unhealthy(), StepAction::Held, 20),
        (degraded(), StepAction::Held, 20),
        (unhealthy(), StepAction::Held, 20),
        (unhealthy(), StepAction::Held, 20),
        (unhealthy(), StepAction::RolledBack, 0),
    ];
    for (i, (metrics, action, percentage)) in script.into_iter().enumerate() {
        assert_eq!(
            w.interval_with(STAGING, Some(metrics)).await,
            [(id.clone(), Some(action))],
            "evaluation {}",
            i + 1
        );
        assert_eq!(
            w.status(STAGING).await.canary.current_percentage,
            percentage,
            "evaluation {}",
            i + 1
        );
    }
    assert_eq!(w.rollbacks(STAGING).await.len(), 1);
    assert_eq!(w.status(STAGING).await.canary.consecutive_unhealthy, 3);
}

// ---------------------------------------------------------------------------------------------
// Lockdown and threat level
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn in_lockdown_step_ups_pause_but_the_automatic_rollback_runs() {
    let w = World::new().await;
    w.start_staging("v1").await;
    w.run_to_completion(STAGING).await;
    let id = w.start_staging("v2").await.canary.id;

    w.set_mode(SecurityMode::Lockdown).await;
    assert_eq!(
        w.interval_with(STAGING, Some(healthy())).await,
        [(id.clone(), Some(StepAction::Paused))]
    );
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.phase, CanaryPhase::Paused);
    assert_eq!(view.canary.current_percentage, 10, "no step up in lockdown");
    assert_eq!(view.canary.status, Verdict::Healthy);
    let reason = view.canary.paused_reason.clone().unwrap();
    assert!(reason.contains("LOCKDOWN"), "{reason}");
    assert!(
        reason.contains("INC-42"),
        "names the lockdown reason: {reason}"
    );
    assert_eq!(
        view.canary.next_step_at,
        Some(w.now().plus_millis(INTERVAL)),
        "still evaluated every interval"
    );

    // Still paused on the next evaluation; announced once.
    assert_eq!(
        w.interval_with(STAGING, Some(healthy())).await,
        [(id.clone(), Some(StepAction::Paused))]
    );
    let paused_events: Vec<_> = w
        .events()
        .await
        .into_iter()
        .filter(|e| e.event_type == EventType::CanaryPaused)
        .collect();
    assert_eq!(paused_events.len(), 1, "{paused_events:?}");
    assert_eq!(paused_events[0].data["canaryId"], id.as_str());

    // Lockdown lifted: it resumes.
    w.set_mode(SecurityMode::Enforce).await;
    assert_eq!(
        w.interval_with(STAGING, Some(healthy())).await,
        [(id.clone(), Some(StepAction::SteppedUp))]
    );
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.phase, CanaryPhase::Progressing);
    assert_eq!(view.canary.paused_reason, None);
    assert_eq!(view.canary.current_percentage, 20);

    // In lockdown again, it turns unhealthy: the fail-safe runs regardless.
    w.set_mode(SecurityMode::Lockdown).await;
    assert_eq!(
        w.interval_with(STAGING, Some(unhealthy())).await,
        [(id.clone(), Some(StepAction::RolledBack))]
    );
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.phase, CanaryPhase::RolledBack);
    assert_eq!(view.canary.current_percentage, 0);
    let rollbacks = w.rollbacks(STAGING).await;
    assert_eq!(rollbacks.len(), 1);
    assert!(rollbacks[0].automatic);
    assert_eq!(rollbacks[0].to_version, "v1");
    assert_eq!(rollbacks[0].status, RollbackStatus::Executed);
    let entries = audit(&w, "deploy.canary.rollback").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].principal, "system");
    assert_eq!(
        w.app.gate_status().await.unwrap().mode,
        SecurityMode::Lockdown,
        "still in lockdown"
    );

    // A manual rollback, by contrast, is blocked in lockdown (RUNBOOK "Rollback During
    // Lockdown").
    let manual = w
        .app
        .create_rollback(
            &w.dev,
            CreateRollbackRequest {
                service: None,
                environment: STAGING,
                from_version: "v1".to_owned(),
                to_version: "v0".to_owned(),
                reason: "testing lockdown".to_owned(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        blocked_reason(w.app.execute_rollback(&w.dev, &manual.id).await),
        ReasonCode::Lockdown
    );
}

#[tokio::test]
async fn a_high_threat_level_pauses_step_ups_until_it_drops() {
    let w = World::new().await;
    let id = w.start_staging("v1").await.canary.id;

    // Medium does not stop canaries.
    w.set_threat(ThreatLevel::Medium).await;
    assert_eq!(
        w.interval_with(STAGING, Some(healthy())).await,
        [(id.clone(), Some(StepAction::SteppedUp))]
    );

    w.set_threat(ThreatLevel::High).await;
    assert_eq!(
        w.interval_with(STAGING, Some(healthy())).await,
        [(id.clone(), Some(StepAction::Paused))]
    );
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.phase, CanaryPhase::Paused);
    assert_eq!(view.canary.current_percentage, 20);
    let reason = view.canary.paused_reason.unwrap();
    assert!(reason.contains("THREAT_LEVEL"), "{reason}");

    w.set_threat(ThreatLevel::Low).await;
    assert_eq!(
        w.interval_with(STAGING, Some(healthy())).await,
        [(id.clone(), Some(StepAction::SteppedUp))]
    );
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.phase, CanaryPhase::Progressing);
    assert_eq!(view.canary.paused_reason, None);
    assert_eq!(view.canary.current_percentage, 30);
}

// ---------------------------------------------------------------------------------------------
// Restarts and concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_restart_neither_repeats_nor_skips_a_step_and_downtime_is_evaluated_once() {
    let mut w = World::new().await;
    let id = w.start_staging("v1").await.canary.id;
    assert_eq!(
        w.interval_with(STAGING, Some(healthy())).await,
        [(id.clone(), Some(StepAction::SteppedUp))]
    );
    // Metrics for the next step arrive, then the process goes away.
    w.advance(INTERVAL / 2);
    w.push(STAGING, healthy()).await;
    let at = w.now();
    assert_eq!(at, START.plus_millis(INTERVAL + INTERVAL / 2));
    w = w.restart_at(at).await;

    // The new process sees the persisted schedule and metrics.
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.current_percentage, 20);
    assert_eq!(view.canary.steps.len(), 2);
    assert_eq!(
        view.canary.next_step_at,
        Some(START.plus_millis(2 * INTERVAL))
    );
    assert_eq!(view.canary.latest_metrics.as_ref().unwrap().received_at, at);
    assert!(w.tick().await.is_empty(), "the last step is not repeated");
    w.advance(INTERVAL / 2 - 1);
    assert!(w.tick().await.is_empty(), "not due yet");
    w.advance(1);
    assert_eq!(w.tick().await, [(id.clone(), Some(StepAction::SteppedUp))]);
    assert!(w.tick().await.is_empty(), "once");
    let view = w.status(STAGING).await;
    let last = view.canary.steps.last().unwrap();
    assert_eq!(
        (last.number, last.from_percentage, last.to_percentage),
        (2, 20, 30)
    );
    assert_eq!(last.at, START.plus_millis(2 * INTERVAL));

    // Restarted again right after the step: nothing is redone.
    let at = w.now();
    w = w.restart_at(at).await;
    assert!(w.tick().await.is_empty());

    // Metrics arrive, then five intervals of downtime. The step due at START + 3 intervals is
    // evaluated once, late, by the first tick after the restart; the metrics from before the
    // downtime are stale by then (not received in the interval that ends at the evaluation),
    // so it holds rather than steps on old news.
    w.advance(INTERVAL / 2);
    w.push(STAGING, healthy()).await;
    let down_until = w.now().plus_millis(5 * INTERVAL);
    w = w.restart_at(down_until).await;
    assert_eq!(
        w.tick().await,
        [(id.clone(), Some(StepAction::Held))],
        "one evaluation, not one per missed interval"
    );
    assert!(w.tick().await.is_empty());
    let view = w.status(STAGING).await;
    assert_eq!(
        view.canary.current_percentage, 30,
        "held, not stepped on stale metrics"
    );
    let last = view.canary.steps.last().unwrap();
    assert_eq!(
        (last.number, last.from_percentage, last.to_percentage),
        (3, 30, 30)
    );
    assert!(last.evaluation.as_ref().unwrap().stale);
    assert_eq!(last.at, down_until);
    assert_eq!(
        view.canary.next_step_at,
        Some(down_until.plus_millis(INTERVAL)),
        "the schedule restarts from the late evaluation"
    );

    // Fresh metrics in the next interval: it steps up again.
    assert_eq!(
        w.interval_with(STAGING, Some(healthy())).await,
        [(id.clone(), Some(StepAction::SteppedUp))]
    );
    let view = w.status(STAGING).await;
    let numbers: Vec<u32> = view.canary.steps.iter().map(|s| s.number).collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4], "none repeated or skipped");
    assert_eq!(percentages(&view), [10, 20, 30, 30, 40]);
    assert_eq!(announced_weights(&w).await, [10, 20, 30, 40]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runners_ticking_the_same_due_canary_at_once_step_it_once() {
    let w = World::new().await;
    let id = w.start_staging("v1").await.canary.id;
    let replica = w.replica();
    let runners = [
        w.runner.clone(),
        CanaryRunner::new(w.app.clone()),
        CanaryRunner::new(replica.clone()),
        CanaryRunner::new(replica),
    ];
    for round in 1..=6u8 {
        w.advance(INTERVAL / 2);
        w.push(STAGING, healthy()).await;
        w.advance(INTERVAL - INTERVAL / 2);
        let now = w.now();
        let ticks: Vec<_> = runners
            .iter()
            .map(|r| {
                let r = r.clone();
                tokio::spawn(async move { r.tick(now).await.unwrap() })
            })
            .collect();
        let mut stepped = Vec::new();
        for tick in ticks {
            for (canary, action) in tick.await.unwrap() {
                assert_eq!(canary, id);
                if let Some(action) = action {
                    stepped.push(action);
                }
            }
        }
        assert_eq!(stepped, [StepAction::SteppedUp], "round {round}");
        let view = w.status(STAGING).await;
        assert_eq!(view.canary.current_percentage, 10 + 10 * round);
        assert_eq!(view.canary.steps.len(), usize::from(round) + 1);
    }
    let view = w.status(STAGING).await;
    let numbers: Vec<u32> = view.canary.steps.iter().map(|s| s.number).collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(announced_weights(&w).await, [10, 20, 30, 40, 50, 60, 70]);
    assert_eq!(audit(&w, "deploy.canary.step").await.len(), 6);
}

// ---------------------------------------------------------------------------------------------
// Promotion, production, one canary per environment
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn promotion_takes_a_staging_canary_to_max_at_once() {
    let w = World::new().await;
    let id = w.start_staging("v1").await.canary.id;
    w.interval_with(STAGING, Some(healthy())).await;
    w.advance(1_000);
    let at = w.now();
    let promoted = w
        .app
        .promote_canary(
            &w.dev,
            deploy_safety_api_types::PromoteCanaryRequest {
                environment: STAGING,
                service: None,
                canary_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(promoted.canary.id, id);
    assert_eq!(promoted.canary.phase, CanaryPhase::Promoted);
    assert_eq!(promoted.canary.current_percentage, 100);
    assert_eq!(promoted.canary.next_step_at, None);
    assert_eq!(promoted.canary.finished_at, Some(at));
    let last = promoted.canary.steps.last().unwrap();
    assert_eq!(last.action, StepAction::Promoted);
    assert_eq!((last.from_percentage, last.to_percentage), (20, 100));
    assert_eq!(w.status(STAGING).await.canary.phase, CanaryPhase::Promoted);

    assert_eq!(
        w.releases(STAGING).await,
        [("v1".to_owned(), ReleaseChange::CanaryPromoted)]
    );
    let events = w.events().await;
    let n = events.len();
    assert_eq!(events[n - 2].event_type, EventType::CanaryWeightChanged);
    assert_eq!(events[n - 2].data["fromPercentage"], 20);
    assert_eq!(events[n - 2].data["percentage"], 100);
    assert_eq!(events[n - 1].event_type, EventType::CanaryPromoted);
    let entries = audit(&w, "deploy.canary.promote").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].principal, "dev");
    assert_eq!(entries[0].decision, AuditDecision::Allowed);

    // Finished: no more steps, nothing to promote.
    w.advance(INTERVAL);
    assert!(w.tick().await.is_empty());
    assert!(matches!(
        w.app
            .promote_canary(
                &w.dev,
                deploy_safety_api_types::PromoteCanaryRequest {
                    environment: STAGING,
                    service: None,
                    canary_id: None,
                }
            )
            .await,
        Err(AppError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_production_canary_needs_an_override_and_a_passed_staging_validation() {
    let w = World::new().await;

    // No override: blocked by the gate, before anything else is looked at.
    let refused = w.start_as(&w.dev, PRODUCTION, "v9", config(1)).await;
    assert_eq!(blocked_reason(refused), ReasonCode::OverrideRequired);
    assert!(matches!(
        w.app
            .canary_status(PRODUCTION, deploy_safety_api_types::ServiceQuery::default())
            .await,
        Err(AppError::NotFound(_))
    ));

    // An override, but no passed validation in staging: 409.
    let start_override = w.override_for(Action::CanaryStart, PRODUCTION, 60).await;
    let refused = w.start_as(&w.dev, PRODUCTION, "v9", config(1)).await;
    assert_eq!(
        conflict_reason(refused),
        Some(ReasonCode::StagingValidationRequired)
    );
    assert!(matches!(
        w.app
            .canary_status(PRODUCTION, deploy_safety_api_types::ServiceQuery::default())
            .await,
        Err(AppError::NotFound(_))
    ));
    // A validation of another release does not count.
    w.validate_in_staging("v8").await;
    let refused = w.start_as(&w.dev, PRODUCTION, "v9", config(1)).await;
    assert_eq!(
        conflict_reason(refused),
        Some(ReasonCode::StagingValidationRequired)
    );

    // Validated in staging: it starts, under the override.
    w.validate_in_staging("v9").await;
    let started = w
        .start_as(&w.dev, PRODUCTION, "v9", config(1))
        .await
        .unwrap();
    let id = started.canary.id.clone();
    assert_eq!(
        started.canary.start_override_id.as_deref(),
        Some(start_override.as_str())
    );
    assert_eq!(started.canary.phase, CanaryPhase::Progressing);

    // Its steps are covered by the start override.
    assert_eq!(
        w.interval_with(PRODUCTION, Some(healthy())).await,
        [(id.clone(), Some(StepAction::SteppedUp))]
    );
    // So is its promotion, while the override is active.
    let promoted = w
        .app
        .promote_canary(
            &w.dev,
            deploy_safety_api_types::PromoteCanaryRequest {
                environment: PRODUCTION,
                service: None,
                canary_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(promoted.canary.phase, CanaryPhase::Promoted);
    assert_eq!(promoted.canary.current_percentage, 100);
    assert_eq!(
        w.releases(PRODUCTION).await,
        [("v9".to_owned(), ReleaseChange::CanaryPromoted)]
    );
    let decision = audit(&w, "deploy.canary.promote").await;
    assert_eq!(decision.len(), 1);
    assert_eq!(decision[0].reason, "OVERRIDE");
}

#[tokio::test]
async fn promoting_a_production_canary_after_its_start_override_expired_needs_an_override() {
    let w = World::new().await;
    w.validate_in_staging("v10").await;
    w.override_for(Action::CanaryStart, PRODUCTION, 2).await;
    let id = w
        .start_as(&w.dev, PRODUCTION, "v10", config(1))
        .await
        .unwrap()
        .canary
        .id;

    // The start override expires (no tick meanwhile).
    w.advance(3 * 60_000);
    let refused = w
        .app
        .promote_canary(
            &w.dev,
            deploy_safety_api_types::PromoteCanaryRequest {
                environment: PRODUCTION,
                service: None,
                canary_id: None,
            },
        )
        .await;
    assert_eq!(blocked_reason(refused), ReasonCode::OverrideRequired);
    let view = w.status(PRODUCTION).await;
    assert_eq!(view.canary.id, id);
    assert!(view.canary.phase.is_active(), "unchanged");
    assert_eq!(view.canary.current_percentage, 10);

    // An override for promotion lifts it.
    let promote_override = w.override_for(Action::CanaryPromote, PRODUCTION, 30).await;
    let promoted = w
        .app
        .promote_canary(
            &w.dev,
            deploy_safety_api_types::PromoteCanaryRequest {
                environment: PRODUCTION,
                service: None,
                canary_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(promoted.canary.phase, CanaryPhase::Promoted);
    assert_eq!(promoted.canary.current_percentage, 100);
    let used = w.app.get_override(&promote_override).await.unwrap();
    assert_eq!(used.record.use_count, 1);
}

#[tokio::test]
async fn a_second_canary_in_the_same_environment_is_refused() {
    let w = World::new().await;
    let first = w.start_staging("v1").await.canary.id;
    let refused = w.start_as(&w.lead, STAGING, "v2", config(1)).await;
    assert_eq!(
        conflict_reason(refused),
        Some(ReasonCode::CanaryAlreadyActive)
    );
    let view = w.status(STAGING).await;
    assert_eq!(view.canary.id, first, "the first is untouched");
    assert_eq!(view.canary.release_id, "v1");

    // Still refused while it holds.
    w.interval_with(STAGING, Some(degraded())).await;
    let refused = w.start_as(&w.dev, STAGING, "v2", config(1)).await;
    assert_eq!(
        conflict_reason(refused),
        Some(ReasonCode::CanaryAlreadyActive)
    );

    // Another environment is independent.
    w.validate_in_staging("v7").await;
    w.override_for(Action::CanaryStart, PRODUCTION, 60).await;
    w.start_as(&w.dev, PRODUCTION, "v7", config(1))
        .await
        .unwrap();
    let refused = w.start_as(&w.dev, PRODUCTION, "v8", config(1)).await;
    // v8 has no staging validation, but the canary already active is a conflict too.
    assert!(matches!(refused, Err(AppError::Conflict { .. })));

    // Once the first finishes, a new one may start.
    w.app
        .promote_canary(
            &w.dev,
            deploy_safety_api_types::PromoteCanaryRequest {
                environment: STAGING,
                service: None,
                canary_id: None,
            },
        )
        .await
        .unwrap();
    let second = w.start_staging("v2").await;
    assert_eq!(second.canary.previous_release.as_deref(), Some("v1"));
}
