//! Freezes in the engine (SPEC §16) against a real SQLite store on a `ManualClock`: a recurring
//! freeze pauses the step-ups of the canary of a service it names while another service's
//! canary keeps going, both resume and complete after the window; `FreezeWatcher::tick`
//! announces each window's opening and closing exactly once, across a restart; and the
//! automatic rollback of an unhealthy canary never waits for a freeze to end.

#![allow(clippy::unwrap_used)]

mod canary_support;

use std::collections::HashMap;

use canary_support::{INTERVAL, START, World, config, healthy, unhealthy};
use deploy_safety_api_types::{
    AuditListQuery, CanaryMetricsRequest, CanaryView, CreateFreezeRequest, EndFreezeRequest,
    ServiceQuery, StartCanaryRequest,
};
use deploy_safety_core::{
    CanaryPhase, Environment, Event, EventType, RollbackStatus, ScheduleSpec, StepAction,
};
use deploy_safety_engine::FreezeWatcher;

const STAGING: Environment = Environment::STAGING;
const MINUTE: i64 = 60_000;
const PAYMENTS: &str = "payments/api";
const SEARCH: &str = "search";

/// A freeze of staging canaries of `services`, every day from 00:03 to 00:08 UTC (`START` is
/// midnight UTC).
fn daily_freeze(services: &[&str], hard: bool) -> CreateFreezeRequest {
    CreateFreezeRequest {
        name: "payments-window".to_owned(),
        reason: "CHG-77: payments database maintenance".to_owned(),
        environments: Some(vec![STAGING]),
        services: Some(services.iter().map(|s| (*s).to_owned()).collect()),
        schedule: Some(ScheduleSpec {
            cron: "3 0 * * *".to_owned(),
            duration_minutes: 5,
            time_zone: "UTC".to_owned(),
        }),
        hard: Some(hard),
        ..CreateFreezeRequest::default()
    }
}

async fn start(w: &World, service: &str, release: &str, failure_threshold: u32) -> CanaryView {
    w.app
        .start_canary(
            &w.dev,
            StartCanaryRequest {
                service: Some(service.to_owned()),
                release_id: release.to_owned(),
                environment: STAGING,
                deployment_id: format!("deploy-{service}-{release}"),
                config: Some(config(failure_threshold)),
            },
        )
        .await
        .unwrap()
}

async fn push(w: &World, service: &str, metrics: CanaryMetricsRequest) {
    w.app
        .push_canary_metrics(
            STAGING,
            ServiceQuery {
                service: Some(service.to_owned()),
            },
            metrics,
        )
        .await
        .unwrap();
}

async fn status(w: &World, service: &str) -> CanaryView {
    w.app
        .canary_status(
            STAGING,
            ServiceQuery {
                service: Some(service.to_owned()),
            },
        )
        .await
        .unwrap()
}

/// Half an interval on, healthy metrics for both services' canaries still active, half an
/// interval on, one runner tick; what each canary's step did, by id.
async fn interval(w: &World) -> HashMap<String, Option<StepAction>> {
    w.advance(INTERVAL / 2);
    for service in [PAYMENTS, SEARCH] {
        if status(w, service).await.canary.phase.is_active() {
            push(w, service, healthy()).await;
        }
    }
    w.advance(INTERVAL - INTERVAL / 2);
    w.tick().await.into_iter().collect()
}

async fn events_of(w: &World, event_type: EventType) -> Vec<Event> {
    w.events()
        .await
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

/// Audit actions starting with `prefix`, oldest first, with their principal.
async fn audited(w: &World, prefix: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = w
        .app
        .audit_page(AuditListQuery {
            limit: Some(1_000),
            ..AuditListQuery::default()
        })
        .await
        .unwrap()
        .entries
        .iter()
        .filter_map(|e| e.entry())
        .filter(|e| e.action.starts_with(prefix))
        .map(|e| (e.action.clone(), e.principal.clone()))
        .collect();
    entries.reverse();
    entries
}

#[tokio::test]
async fn a_recurring_freeze_pauses_one_services_canary_while_another_keeps_going() {
    let w = World::new().await;
    let freeze = w
        .app
        .create_freeze(&w.security, daily_freeze(&[PAYMENTS], false))
        .await
        .unwrap();
    assert!(!freeze.active);
    assert_eq!(freeze.next_start, Some(START.plus_millis(3 * MINUTE)));
    assert_eq!(freeze.next_end, Some(START.plus_millis(8 * MINUTE)));

    let a = start(&w, PAYMENTS, "v2", 3).await.canary.id;
    let b = start(&w, SEARCH, "v7", 3).await.canary.id;
    let watcher = FreezeWatcher::new(w.app.clone());

    // Minutes 1 and 2: both step up.
    for minute in 1..=2 {
        let done = interval(&w).await;
        assert_eq!(done.len(), 2, "minute {minute}: {done:?}");
        assert_eq!(done[&a], Some(StepAction::SteppedUp), "minute {minute}");
        assert_eq!(done[&b], Some(StepAction::SteppedUp), "minute {minute}");
    }
    assert_eq!(status(&w, PAYMENTS).await.canary.current_percentage, 30);

    // Minutes 3 to 7: the window is open; A pauses at 30 %, B goes on.
    for minute in 3..=7 {
        let done = interval(&w).await;
        if minute == 3 {
            assert_eq!(watcher.tick(w.now()).await.unwrap(), 1, "the window opens");
        }
        assert_eq!(done[&a], Some(StepAction::Paused), "minute {minute}");
        assert_eq!(done[&b], Some(StepAction::SteppedUp), "minute {minute}");
        let view = status(&w, PAYMENTS).await;
        assert_eq!(view.canary.phase, CanaryPhase::Paused, "minute {minute}");
        assert_eq!(view.canary.current_percentage, 30, "minute {minute}");
        let reason = view.canary.paused_reason.clone().unwrap();
        assert!(reason.starts_with("FREEZE"), "minute {minute}: {reason}");
        assert!(reason.contains("payments-window"), "{reason}");
        assert!(reason.contains(&freeze.freeze.id), "{reason}");
        assert_eq!(
            view.canary.next_step_at,
            Some(w.now().plus_millis(INTERVAL)),
            "still evaluated every interval"
        );
        let other = status(&w, SEARCH).await;
        assert_eq!(other.canary.phase, CanaryPhase::Progressing);
        assert_eq!(other.canary.paused_reason, None);
        assert_eq!(
            i64::from(other.canary.current_percentage),
            10 + 10 * minute,
            "minute {minute}"
        );
    }
    let paused = events_of(&w, EventType::CanaryPaused).await;
    assert_eq!(paused.len(), 1, "announced once: {paused:?}");
    assert_eq!(paused[0].data["canaryId"], a.as_str());
    assert_eq!(paused[0].data["service"], PAYMENTS);

    // Minute 8: the window has closed (its end is exclusive); A resumes.
    let done = interval(&w).await;
    assert_eq!(watcher.tick(w.now()).await.unwrap(), 1, "the window closes");
    assert_eq!(done[&a], Some(StepAction::SteppedUp));
    assert_eq!(done[&b], Some(StepAction::SteppedUp));
    let view = status(&w, PAYMENTS).await;
    assert_eq!(view.canary.phase, CanaryPhase::Progressing);
    assert_eq!(view.canary.paused_reason, None);
    assert_eq!(view.canary.current_percentage, 40);

    // Both run to completion: B at minute 9, A five minutes (the paused ones) later.
    let mut completed_at = HashMap::new();
    for minute in 9..=20 {
        let done = interval(&w).await;
        for (id, action) in done {
            assert_ne!(action, Some(StepAction::Paused), "minute {minute}");
            if action == Some(StepAction::Completed) {
                completed_at.insert(id, minute);
            }
        }
        if completed_at.len() == 2 {
            break;
        }
    }
    assert_eq!(completed_at.get(&b), Some(&9), "{completed_at:?}");
    assert_eq!(completed_at.get(&a), Some(&14), "{completed_at:?}");
    for (service, release) in [(PAYMENTS, "v2"), (SEARCH, "v7")] {
        let view = status(&w, service).await;
        assert_eq!(view.canary.phase, CanaryPhase::Completed, "{service}");
        assert_eq!(view.canary.current_percentage, 100, "{service}");
        let history = w
            .app
            .releases(
                STAGING,
                ServiceQuery {
                    service: Some(service.to_owned()),
                },
            )
            .await
            .unwrap();
        assert_eq!(history.current.as_deref(), Some(release), "{service}");
    }
    // The freeze is still there for tomorrow.
    let shown = w.app.get_freeze(&freeze.freeze.id).await.unwrap();
    assert!(!shown.active && !shown.over);
    assert_eq!(
        shown.next_start,
        Some(START.plus_millis(24 * 60 * MINUTE + 3 * MINUTE))
    );
}

#[tokio::test]
async fn the_watcher_announces_each_window_once_across_a_restart() {
    let w = World::new().await;
    let freeze = w
        .app
        .create_freeze(&w.security, daily_freeze(&[PAYMENTS], true))
        .await
        .unwrap();
    let id = freeze.freeze.id.clone();
    let watcher = FreezeWatcher::new(w.app.clone());
    let at = |minute: i64| START.plus_millis(minute * MINUTE);

    assert_eq!(watcher.tick(at(0)).await.unwrap(), 0);
    assert_eq!(watcher.tick(at(2)).await.unwrap(), 0, "not yet");
    w.clock.set(at(3));
    assert_eq!(watcher.tick(at(3)).await.unwrap(), 1, "opens");
    assert_eq!(watcher.tick(at(3)).await.unwrap(), 0, "once");
    assert_eq!(watcher.tick(at(5)).await.unwrap(), 0, "still open");

    // A restart in the middle of the window: a new app over the same database announces
    // nothing again.
    drop(watcher);
    let w = w.restart_at(at(5)).await;
    let watcher = FreezeWatcher::new(w.app.clone());
    assert_eq!(watcher.tick(at(5)).await.unwrap(), 0, "after the restart");
    assert_eq!(watcher.tick(at(7)).await.unwrap(), 0);
    w.clock.set(at(8));
    assert_eq!(watcher.tick(at(8)).await.unwrap(), 1, "closes");
    assert_eq!(watcher.tick(at(8)).await.unwrap(), 0, "once");
    // A second replica's watcher over the same database agrees.
    let replica = FreezeWatcher::new(w.replica());
    assert_eq!(replica.tick(at(8)).await.unwrap(), 0);

    let started = events_of(&w, EventType::FreezeStarted).await;
    let ended = events_of(&w, EventType::FreezeEnded).await;
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(started[0].at, at(3));
    assert_eq!(started[0].environment, Some(STAGING));
    assert_eq!(started[0].data["freezeId"], id.as_str());
    assert_eq!(started[0].data["hard"], true);
    assert_eq!(started[0].data["services"], serde_json::json!([PAYMENTS]));
    assert_eq!(started[0].data["windowStart"], at(3).to_rfc3339());
    assert_eq!(started[0].data["until"], at(8).to_rfc3339());
    assert_eq!(ended[0].at, at(8));
    assert_eq!(ended[0].data["freezeId"], id.as_str());
    assert_eq!(ended[0].data["windowStart"], at(3).to_rfc3339());

    // The next day's window: announced once more each way.
    let day = 24 * 60;
    assert_eq!(watcher.tick(at(day + 2)).await.unwrap(), 0);
    assert_eq!(watcher.tick(at(day + 3)).await.unwrap(), 1);
    assert_eq!(watcher.tick(at(day + 4)).await.unwrap(), 0);
    assert_eq!(watcher.tick(at(day + 9)).await.unwrap(), 1);
    assert_eq!(events_of(&w, EventType::FreezeStarted).await.len(), 2);
    assert_eq!(events_of(&w, EventType::FreezeEnded).await.len(), 2);

    // Each announcement has a system audit entry.
    assert_eq!(
        audited(&w, "freeze.").await,
        [
            ("freeze.create".to_owned(), "sec".to_owned()),
            ("freeze.started".to_owned(), "system".to_owned()),
            ("freeze.ended".to_owned(), "system".to_owned()),
            ("freeze.started".to_owned(), "system".to_owned()),
            ("freeze.ended".to_owned(), "system".to_owned()),
        ]
    );

    // Ended by hand during a window: `freeze.ended` at once, and the watcher adds nothing.
    w.clock.set(at(2 * day + 4));
    assert_eq!(watcher.tick(at(2 * day + 4)).await.unwrap(), 1);
    w.app
        .end_freeze(
            &w.lead,
            &id,
            EndFreezeRequest {
                reason: Some("CHG-78: maintenance done".to_owned()),
            },
        )
        .await
        .unwrap();
    assert_eq!(events_of(&w, EventType::FreezeEnded).await.len(), 3);
    assert_eq!(watcher.tick(at(2 * day + 4)).await.unwrap(), 0);
    assert_eq!(watcher.tick(at(2 * day + 8)).await.unwrap(), 0);
    assert_eq!(watcher.tick(at(3 * day + 3)).await.unwrap(), 0, "over");
    assert_eq!(events_of(&w, EventType::FreezeStarted).await.len(), 3);
    assert_eq!(events_of(&w, EventType::FreezeEnded).await.len(), 3);
}

#[tokio::test]
async fn an_unhealthy_canary_is_rolled_back_during_a_hard_freeze() {
    let w = World::new().await;
    // A hard freeze of everything in staging, rollbacks included, in force from now on.
    w.app
        .create_freeze(
            &w.security,
            CreateFreezeRequest {
                name: "everything".to_owned(),
                reason: "CHG-79: stop the line".to_owned(),
                environments: Some(vec![STAGING]),
                actions: Some(vec![
                    deploy_safety_core::Action::CanaryPromote,
                    deploy_safety_core::Action::Rollback,
                ]),
                hard: Some(true),
                ..CreateFreezeRequest::default()
            },
        )
        .await
        .unwrap();
    // The canary was started before it (its start is not frozen by this one).
    let id = start(&w, PAYMENTS, "v2", 2).await.canary.id;

    // Healthy: paused by the freeze.
    w.advance(INTERVAL / 2);
    push(&w, PAYMENTS, healthy()).await;
    w.advance(INTERVAL / 2);
    assert_eq!(w.tick().await, [(id.clone(), Some(StepAction::Paused))]);
    // Unhealthy once (below the threshold of 2): still paused, not rolled back yet.
    w.advance(INTERVAL / 2);
    push(&w, PAYMENTS, unhealthy()).await;
    w.advance(INTERVAL / 2);
    assert_eq!(w.tick().await, [(id.clone(), Some(StepAction::Paused))]);
    // Unhealthy twice: rolled back at once, freeze or not.
    w.advance(INTERVAL / 2);
    push(&w, PAYMENTS, unhealthy()).await;
    w.advance(INTERVAL / 2);
    assert_eq!(w.tick().await, [(id.clone(), Some(StepAction::RolledBack))]);

    let view = status(&w, PAYMENTS).await;
    assert_eq!(view.canary.phase, CanaryPhase::RolledBack);
    assert_eq!(view.canary.current_percentage, 0);
    assert_eq!(view.canary.paused_reason, None);
    let rollbacks = w.rollbacks(STAGING).await;
    assert_eq!(rollbacks.len(), 1, "{rollbacks:?}");
    assert!(rollbacks[0].automatic);
    assert_eq!(rollbacks[0].canary_id.as_deref(), Some(id.as_str()));
    assert_eq!(rollbacks[0].service.as_deref(), Some(PAYMENTS));
    assert_eq!(rollbacks[0].status, RollbackStatus::Executed);
    assert_eq!(events_of(&w, EventType::CanaryRolledBack).await.len(), 1);
}
