//! Event delivery to webhooks and rollbacks to the executor (SPEC §9–10): the outbox drained by
//! `DeliveryWorker::tick(now)` into real local receivers on 127.0.0.1 that record every request
//! and can fail, refuse or hang. Time is a `ManualClock`, moved by the backoff between rounds;
//! each round's attempts are awaited.
//!
//! Every body is checked to be the event's JSON, and every signature against both the core's
//! HMAC and an independent RFC 2104 HMAC-SHA256 computed here.

#![allow(clippy::unwrap_used)]

mod canary_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use canary_support::{
    Received, Receiver, World, config, healthy, join_all, reserve_address, unhealthy,
};
use deploy_safety_api_types::{AuditListQuery, CreateOverrideRequest, CreateRollbackRequest};
use deploy_safety_app::{AppSettings, Executor, Webhook, retry_delay_ms};
use deploy_safety_core::signature::{hmac_sha256, signature_header};
use deploy_safety_core::{
    Action, Environment, Event, EventType, ReleaseChange, Rollback, RollbackStatus, SecurityMode,
    StepAction,
};
use deploy_safety_store::{OutboxEntry, OutboxKind};
use sha2::{Digest, Sha256};

const SECRET: &str = "whsec-test-0123456789abcdef";
const EXECUTOR_SECRET: &str = "exsec-test-fedcba9876543210";
const STAGING: Environment = Environment::STAGING;

// ---------------------------------------------------------------------------------------------
// An independent HMAC-SHA256 (RFC 2104), to check signatures without the product's code
// ---------------------------------------------------------------------------------------------

fn independent_hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut k: Vec<u8> = if key.len() > BLOCK {
        Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(BLOCK, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = Sha256::new();
    inner.update(&ipad);
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(&opad);
    outer.update(inner);
    outer.finalize().to_vec()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_independent_hmac_matches_rfc_4231() {
    // Test case 2 and test case 6 (a key longer than the block).
    assert_eq!(
        to_hex(&independent_hmac_sha256(
            b"Jefe",
            b"what do ya want for nothing?"
        )),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(
        to_hex(&independent_hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

/// The request carries `X-Deploy-Safety-Signature: sha256=<hex HMAC-SHA256(secret, body)>`,
/// by the core's HMAC and by the independent one.
fn assert_signed(request: &Received, secret: &str) {
    let header = request.header("x-deploy-safety-signature");
    let core = format!(
        "sha256={}",
        to_hex(&hmac_sha256(secret.as_bytes(), &request.body))
    );
    let independent = format!(
        "sha256={}",
        to_hex(&independent_hmac_sha256(secret.as_bytes(), &request.body))
    );
    assert_eq!(header, core, "signature by the core's HMAC");
    assert_eq!(header, independent, "signature by an independent HMAC");
    assert_eq!(header, signature_header(secret, &request.body));
    // A body changed by one byte would not match.
    let mut tampered = request.body.to_vec();
    tampered.push(b' ');
    assert_ne!(
        header,
        format!(
            "sha256={}",
            to_hex(&independent_hmac_sha256(secret.as_bytes(), &tampered))
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

fn hook(name: &str, url: String, events: Option<Vec<EventType>>, timeout: Duration) -> Webhook {
    Webhook {
        name: name.to_owned(),
        url,
        secret: SECRET.to_owned(),
        events,
        timeout,
    }
}

fn settings(webhooks: Vec<Webhook>, attempts: u32) -> AppSettings {
    AppSettings {
        webhooks,
        delivery_attempts: attempts,
        ..AppSettings::default()
    }
}

/// Produces events the way operators do: an override (eng-lead), a staging canary (developer)
/// and one healthy step of it, then lockdown (security team). Returns the events, in order.
async fn produce_events(w: &World) -> Vec<Event> {
    w.app
        .create_override(
            &w.lead,
            CreateOverrideRequest {
                service: None,
                action: Action::CanaryStart,
                environment: STAGING,
                reason: "CHG-7: release train".to_owned(),
                approver: None,
                ttl_minutes: Some(60),
                release_id: None,
            },
        )
        .await
        .unwrap();
    let id = w.start_staging("v1.2.3").await.canary.id;
    assert_eq!(
        w.interval_with(STAGING, Some(healthy())).await,
        [(id, Some(StepAction::SteppedUp))]
    );
    w.set_mode(SecurityMode::Lockdown).await;
    let events = w.events().await;
    let types: Vec<EventType> = events.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            EventType::OverrideCreated,
            EventType::CanaryStarted,
            EventType::CanaryWeightChanged,
            EventType::CanaryWeightChanged,
            EventType::LockdownEntered,
        ]
    );
    events
}

async fn deliveries(w: &World, kind: OutboxKind, target: &str) -> Vec<OutboxEntry> {
    w.app.deliveries(kind, target).await.unwrap()
}

/// Checks that `received` holds each of `events` at least once, as its exact JSON, signed, with
/// its type in `X-Deploy-Safety-Event`; returns how many times each seq arrived.
fn assert_events_received(received: &[Received], events: &[Event]) -> BTreeMap<u64, usize> {
    let mut arrivals = BTreeMap::new();
    for request in received {
        assert_signed(request, SECRET);
        assert_eq!(request.header("content-type"), "application/json");
        let body = request.json();
        let seq = body["seq"].as_u64().unwrap();
        let event = events
            .iter()
            .find(|e| e.seq == seq)
            .unwrap_or_else(|| panic!("an event that was not expected: {body}"));
        assert_eq!(
            body,
            serde_json::to_value(event).unwrap(),
            "the body is the event"
        );
        let parsed: Event = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(&parsed, event);
        assert_eq!(
            request.header("x-deploy-safety-event"),
            event.event_type.as_str()
        );
        *arrivals.entry(seq).or_insert(0) += 1;
    }
    for event in events {
        assert!(
            arrivals.contains_key(&event.seq),
            "event {} ({}) never arrived",
            event.seq,
            event.event_type
        );
    }
    arrivals
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_event_arrives_once_as_its_signed_json() {
    let receiver = Receiver::start().await;
    let w = World::with_settings(settings(
        vec![hook(
            "deploys",
            receiver.url("hooks/deploys"),
            None,
            Duration::from_secs(5),
        )],
        5,
    ))
    .await;
    let events = produce_events(&w).await;

    // Each event is queued for the webhook in the transaction that made it.
    let queued = deliveries(&w, OutboxKind::Webhook, "deploys").await;
    let seqs: Vec<Option<u64>> = queued.iter().map(|e| e.event_seq).collect();
    assert_eq!(seqs, events.iter().map(|e| Some(e.seq)).collect::<Vec<_>>());
    for (entry, event) in queued.iter().zip(&events) {
        assert_eq!(entry.attempts, 0);
        assert_eq!(entry.next_attempt_at, Some(event.at), "due at once");
        assert_eq!(entry.done_at, None);
    }

    let now = w.now();
    assert_eq!(w.deliver().await, events.len());
    let received = receiver.received();
    assert_eq!(received.len(), events.len());
    let arrivals = assert_events_received(&received, &events);
    assert!(arrivals.values().all(|n| *n == 1), "{arrivals:?}");
    // The weight changes say which percentage to apply.
    let weights: Vec<u64> = received
        .iter()
        .map(Received::json)
        .filter(|e| e["type"] == "canary.weight_changed")
        .map(|e| e["data"]["percentage"].as_u64().unwrap())
        .collect::<std::collections::BTreeSet<u64>>()
        .into_iter()
        .collect();
    assert_eq!(weights, [10, 20]);
    for request in &received {
        assert_eq!(request.header("x-deploy-safety-attempt"), "1");
    }

    // Recorded as done; nothing is due any more.
    for entry in deliveries(&w, OutboxKind::Webhook, "deploys").await {
        assert_eq!(entry.done_at, Some(now), "{entry:?}");
        assert_eq!(entry.attempts, 1);
        assert_eq!(entry.next_attempt_at, None);
        assert_eq!(entry.last_error, None);
        assert_eq!(entry.failed_at, None);
        let request = received
            .iter()
            .find(|r| r.json()["seq"].as_u64() == entry.event_seq)
            .unwrap();
        assert_eq!(
            request.header("x-deploy-safety-delivery"),
            entry.id.to_string()
        );
    }
    w.advance(3_600_000);
    assert_eq!(w.deliver().await, 0);
    assert_eq!(receiver.received().len(), events.len());
}

#[tokio::test]
async fn a_failing_receiver_gets_every_event_after_retries_with_backoff() {
    let receiver = Receiver::start().await;
    let w = World::with_settings(settings(
        vec![hook(
            "deploys",
            receiver.url("hooks/deploys"),
            None,
            Duration::from_secs(5),
        )],
        10,
    ))
    .await;
    let events = produce_events(&w).await;
    let n = events.len();
    // Two failed rounds: every delivery fails twice, then the receiver recovers.
    receiver.fail_next(u32::try_from(2 * n).unwrap());

    let mut round_at = Vec::new();
    for attempt in 1..=2u32 {
        let at = w.now();
        round_at.push(at);
        assert_eq!(w.deliver().await, n, "round {attempt}");
        for entry in deliveries(&w, OutboxKind::Webhook, "deploys").await {
            assert_eq!(entry.attempts, attempt, "{entry:?}");
            assert_eq!(entry.done_at, None);
            assert_eq!(entry.failed_at, None);
            assert_eq!(
                entry.next_attempt_at,
                Some(at.plus_millis(retry_delay_ms(attempt))),
                "backoff after attempt {attempt}"
            );
            let error = entry.last_error.unwrap();
            assert!(error.contains("500"), "the error says why: {error}");
        }
        // Not due again before the backoff has passed.
        assert_eq!(w.deliver().await, 0);
        w.advance(retry_delay_ms(attempt) - 1);
        assert_eq!(w.deliver().await, 0, "round {attempt}: backoff not over");
        w.advance(1);
    }
    assert_eq!(retry_delay_ms(1), 1_000);
    assert_eq!(retry_delay_ms(2), 2_000);

    // The third attempt succeeds.
    let at = w.now();
    assert_eq!(w.deliver().await, n);
    for entry in deliveries(&w, OutboxKind::Webhook, "deploys").await {
        assert_eq!(entry.attempts, 3);
        assert_eq!(entry.done_at, Some(at));
        assert_eq!(entry.next_attempt_at, None);
        assert_eq!(entry.last_error, None);
    }
    let received = receiver.received();
    assert_eq!(received.len(), 3 * n);
    let arrivals = assert_events_received(&received, &events);
    assert!(arrivals.values().all(|k| *k == 3), "{arrivals:?}");
    // Each event's attempts were numbered 1, 2, 3 under one delivery id, with the same body.
    for event in &events {
        let attempts: Vec<&Received> = received
            .iter()
            .filter(|r| r.json()["seq"].as_u64() == Some(event.seq))
            .collect();
        let numbers: Vec<String> = attempts
            .iter()
            .map(|r| r.header("x-deploy-safety-attempt"))
            .collect();
        assert_eq!(numbers, ["1", "2", "3"], "event {}", event.seq);
        let ids: std::collections::BTreeSet<String> = attempts
            .iter()
            .map(|r| r.header("x-deploy-safety-delivery"))
            .collect();
        assert_eq!(ids.len(), 1);
        assert!(attempts.iter().all(|r| r.body == attempts[0].body));
        let answered: Vec<Option<u16>> = attempts.iter().map(|r| r.answered).collect();
        assert_eq!(answered, [Some(500), Some(500), Some(200)]);
    }
    assert_eq!(w.deliver().await, 0);
}

#[tokio::test]
async fn a_webhook_gets_only_the_event_types_it_asked_for() {
    let all = Receiver::start().await;
    let canary = Receiver::start().await;
    let security = Receiver::start().await;
    let timeout = Duration::from_secs(5);
    let w = World::with_settings(settings(
        vec![
            hook("all", all.url("all"), None, timeout),
            hook(
                "canary",
                canary.url("canary"),
                Some(vec![
                    EventType::CanaryStarted,
                    EventType::CanaryWeightChanged,
                ]),
                timeout,
            ),
            hook(
                "security",
                security.url("security"),
                Some(vec![EventType::LockdownEntered, EventType::LockdownExited]),
                timeout,
            ),
        ],
        5,
    ))
    .await;
    let events = produce_events(&w).await;
    let of = |types: &[EventType]| -> Vec<Event> {
        events
            .iter()
            .filter(|e| types.contains(&e.event_type))
            .cloned()
            .collect()
    };
    let canary_events = of(&[EventType::CanaryStarted, EventType::CanaryWeightChanged]);
    let security_events = of(&[EventType::LockdownEntered]);
    assert_eq!(canary_events.len(), 3);
    assert_eq!(security_events.len(), 1);

    // Only wanted events are queued for each.
    let queued = |entries: Vec<OutboxEntry>| -> Vec<u64> {
        entries.iter().map(|e| e.event_seq.unwrap()).collect()
    };
    let seqs = |events: &[Event]| -> Vec<u64> { events.iter().map(|e| e.seq).collect() };
    assert_eq!(
        queued(deliveries(&w, OutboxKind::Webhook, "all").await),
        seqs(&events)
    );
    assert_eq!(
        queued(deliveries(&w, OutboxKind::Webhook, "canary").await),
        seqs(&canary_events)
    );
    assert_eq!(
        queued(deliveries(&w, OutboxKind::Webhook, "security").await),
        seqs(&security_events)
    );

    assert_eq!(w.deliver().await, events.len() + 4);
    assert_events_received(&all.received(), &events);
    assert_eq!(all.received().len(), events.len());
    assert_events_received(&canary.received(), &canary_events);
    assert_eq!(canary.received().len(), 3);
    assert_events_received(&security.received(), &security_events);
    assert_eq!(security.received().len(), 1);

    // Lockdown lifted: the security webhook hears of it, the canary one does not.
    w.set_mode(SecurityMode::Enforce).await;
    assert_eq!(w.deliver().await, 2);
    assert_eq!(security.received().len(), 2);
    assert_eq!(security.received()[1].json()["type"], "lockdown.exited");
    assert_eq!(canary.received().len(), 3);
    assert_eq!(all.received().len(), events.len() + 1);
}

#[tokio::test]
async fn deliveries_queued_while_the_receiver_is_down_survive_a_restart() {
    let address = reserve_address().await;
    let url = format!("http://{address}/hooks/deploys");
    let w = World::with_settings(settings(
        vec![hook("deploys", url, None, Duration::from_secs(2))],
        10,
    ))
    .await;
    // Two events, attempted while nothing listens.
    w.app
        .create_override(
            &w.lead,
            CreateOverrideRequest {
                service: None,
                action: Action::CanaryStart,
                environment: STAGING,
                reason: "CHG-8".to_owned(),
                approver: None,
                ttl_minutes: Some(60),
                release_id: None,
            },
        )
        .await
        .unwrap();
    w.set_mode(SecurityMode::Lockdown).await;
    assert_eq!(w.deliver().await, 2);
    for entry in deliveries(&w, OutboxKind::Webhook, "deploys").await {
        assert_eq!(entry.attempts, 1);
        assert_eq!(entry.done_at, None);
        assert!(entry.last_error.is_some(), "{entry:?}");
        assert_eq!(entry.next_attempt_at, Some(w.now().plus_millis(1_000)));
    }
    // Two more, never attempted before the process goes away.
    w.set_mode(SecurityMode::Enforce).await;
    w.set_mode(SecurityMode::Lockdown).await;
    let events = w.events().await;
    assert_eq!(events.len(), 4);
    assert_eq!(
        deliveries(&w, OutboxKind::Webhook, "deploys").await.len(),
        4
    );

    // Restarted later; the receiver is up now.
    let at = w.now().plus_millis(1_000);
    let w = w.restart_at(at).await;
    let receiver = Receiver::start_on(address).await;
    assert_eq!(w.deliver().await, 4);
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    let arrivals = assert_events_received(&received, &events);
    assert!(arrivals.values().all(|k| *k == 1));
    for entry in deliveries(&w, OutboxKind::Webhook, "deploys").await {
        assert_eq!(entry.done_at, Some(at), "{entry:?}");
    }
    let mut attempt_numbers: Vec<String> = received
        .iter()
        .map(|r| r.header("x-deploy-safety-attempt"))
        .collect();
    attempt_numbers.sort();
    assert_eq!(attempt_numbers, ["1", "1", "2", "2"]);
    assert_eq!(w.deliver().await, 0);
}

#[tokio::test]
async fn after_the_last_attempt_a_delivery_is_failed_and_not_retried() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let attempts = 3;
    let w = World::with_settings(settings(
        vec![hook(
            "deploys",
            receiver.url("hooks/deploys"),
            None,
            Duration::from_secs(5),
        )],
        attempts,
    ))
    .await;
    w.set_mode(SecurityMode::Lockdown).await;

    for attempt in 1..=attempts {
        assert_eq!(w.deliver().await, 1, "attempt {attempt}");
        let entry = deliveries(&w, OutboxKind::Webhook, "deploys")
            .await
            .remove(0);
        assert_eq!(entry.attempts, attempt);
        if attempt < attempts {
            assert_eq!(entry.failed_at, None);
            assert_eq!(
                entry.next_attempt_at,
                Some(w.now().plus_millis(retry_delay_ms(attempt)))
            );
            w.advance(retry_delay_ms(attempt));
        } else {
            assert_eq!(entry.failed_at, Some(w.now()), "given up");
            assert_eq!(entry.next_attempt_at, None);
            assert_eq!(entry.done_at, None);
            let error = entry.last_error.unwrap();
            assert!(error.contains("503"), "says why: {error}");
            assert!(
                error.contains(&attempts.to_string()),
                "says how often: {error}"
            );
        }
    }
    assert_eq!(receiver.received().len(), 3);

    // Never tried again, even once the receiver recovers.
    receiver.answer(200);
    for _ in 0..3 {
        w.advance(3_600_000);
        assert_eq!(w.deliver().await, 0);
    }
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_receiver_never_stalls_other_deliveries() {
    let hanging = Receiver::start().await;
    hanging.hang(true);
    let healthy_receiver = Receiver::start().await;
    let slow_timeout = Duration::from_millis(2_500);
    let w = World::with_settings(settings(
        vec![
            hook("slow", hanging.url("slow"), None, slow_timeout),
            hook(
                "fast",
                healthy_receiver.url("fast"),
                None,
                Duration::from_secs(5),
            ),
        ],
        5,
    ))
    .await;
    let events = produce_events(&w).await;
    let n = events.len();

    let began = Instant::now();
    let handles = w.worker.tick(w.now()).await.unwrap();
    assert_eq!(handles.len(), 2 * n);
    // Every delivery to the healthy receiver is done while the other receiver still hangs.
    healthy_receiver.wait_for(n).await;
    hanging.wait_for(n).await;
    loop {
        let fast = deliveries(&w, OutboxKind::Webhook, "fast").await;
        if fast.iter().all(|e| e.done_at.is_some()) {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "fast deliveries not recorded: {fast:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = began.elapsed();
    assert!(
        elapsed < slow_timeout,
        "the healthy receiver's deliveries waited for the hanging one ({elapsed:?})"
    );
    for entry in deliveries(&w, OutboxKind::Webhook, "slow").await {
        assert_eq!(entry.attempts, 0, "still hanging: {entry:?}");
        assert_eq!(entry.done_at, None);
    }
    assert_events_received(&healthy_receiver.received(), &events);

    // The hanging ones time out and are retried later.
    let now = w.now();
    join_all(handles).await;
    assert!(began.elapsed() >= slow_timeout);
    for entry in deliveries(&w, OutboxKind::Webhook, "slow").await {
        assert_eq!(entry.attempts, 1);
        assert_eq!(entry.done_at, None);
        assert_eq!(entry.next_attempt_at, Some(now.plus_millis(1_000)));
        let error = entry.last_error.unwrap();
        assert!(error.contains("2500 ms"), "says it timed out: {error}");
    }
    // Once it answers again, they arrive.
    hanging.hang(false);
    w.advance(1_000);
    assert_eq!(w.deliver().await, n);
    let answered: Vec<Received> = hanging
        .received()
        .into_iter()
        .filter(|r| r.answered.is_some())
        .collect();
    assert_events_received(&answered, &events);
}

// ---------------------------------------------------------------------------------------------
// The executor
// ---------------------------------------------------------------------------------------------

fn with_executor(receiver: &Receiver, attempts: u32) -> AppSettings {
    AppSettings {
        executor: Some(Executor {
            url: receiver.url("executor/rollbacks"),
            secret: EXECUTOR_SECRET.to_owned(),
            timeout: Duration::from_secs(5),
        }),
        delivery_attempts: attempts,
        ..AppSettings::default()
    }
}

/// A staging rollback from v1.2.3 to v1.2.2, created by the developer and executed by the
/// eng-lead (staging needs no override).
async fn execute_staging_rollback(w: &World) -> Rollback {
    let created = w
        .app
        .create_rollback(
            &w.dev,
            CreateRollbackRequest {
                service: None,
                environment: STAGING,
                from_version: "v1.2.3".to_owned(),
                to_version: "v1.2.2".to_owned(),
                reason: "High error rate after deployment".to_owned(),
            },
        )
        .await
        .unwrap();
    assert_eq!(created.status, RollbackStatus::Pending);
    let executed = w.app.execute_rollback(&w.lead, &created.id).await.unwrap();
    assert_eq!(executed.status, RollbackStatus::Executing);
    assert_eq!(executed.executed_by.as_deref(), Some("lead"));
    assert_eq!(executed.executed_at, Some(w.now()));
    assert_eq!(executed.outcome_at, None);
    let queued = deliveries(w, OutboxKind::Executor, "executor").await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].rollback_id.as_deref(), Some(created.id.as_str()));
    assert!(
        w.releases(STAGING).await.is_empty(),
        "not rolled back until the executor says so"
    );
    executed
}

fn assert_rollback_request(request: &Received, rollback: &Rollback) {
    assert_signed(request, EXECUTOR_SECRET);
    assert_eq!(request.header("x-deploy-safety-event"), "rollback.execute");
    let body = request.json();
    assert_eq!(body, serde_json::to_value(rollback).unwrap());
    assert_eq!(body["id"], rollback.id.as_str());
    assert_eq!(body["environment"], "staging");
    assert_eq!(body["fromVersion"], "v1.2.3");
    assert_eq!(body["toVersion"], "v1.2.2");
    assert_eq!(body["status"], "executing");
}

#[tokio::test]
async fn the_executor_receives_the_rollback_and_its_success_is_recorded() {
    let receiver = Receiver::start().await;
    let w = World::with_settings(with_executor(&receiver, 5)).await;
    let executed = execute_staging_rollback(&w).await;

    w.advance(500);
    let at = w.now();
    assert_eq!(w.deliver().await, 1);
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_rollback_request(&received[0], &executed);

    let rollback = w.app.get_rollback(&executed.id).await.unwrap();
    assert_eq!(rollback.status, RollbackStatus::Succeeded);
    assert_eq!(rollback.outcome_at, Some(at));
    assert!(
        rollback.outcome_message.as_deref().unwrap().contains("200"),
        "{rollback:?}"
    );
    assert_eq!(
        w.releases(STAGING).await,
        [("v1.2.2".to_owned(), ReleaseChange::Rollback)]
    );
    let types = w.event_types().await;
    assert_eq!(
        types,
        [EventType::RollbackExecuted, EventType::RollbackCompleted]
    );
    let outcome = w
        .app
        .audit_page(AuditListQuery {
            action: Some("rollback.outcome".to_owned()),
            ..AuditListQuery::default()
        })
        .await
        .unwrap()
        .entries;
    assert_eq!(outcome.len(), 1);
    assert_eq!(outcome[0].entry().unwrap().principal, "system");

    let entry = deliveries(&w, OutboxKind::Executor, "executor")
        .await
        .remove(0);
    assert_eq!(entry.done_at, Some(at));
    w.advance(3_600_000);
    assert_eq!(w.deliver().await, 0);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn an_executor_refusal_fails_the_rollback_without_retrying() {
    let receiver = Receiver::start().await;
    receiver.answer(422);
    let w = World::with_settings(with_executor(&receiver, 5)).await;
    let executed = execute_staging_rollback(&w).await;

    let at = w.now();
    assert_eq!(w.deliver().await, 1);
    assert_rollback_request(&receiver.received()[0], &executed);
    let rollback = w.app.get_rollback(&executed.id).await.unwrap();
    assert_eq!(rollback.status, RollbackStatus::Failed);
    assert_eq!(rollback.outcome_at, Some(at));
    let message = rollback.outcome_message.unwrap();
    assert!(message.contains("422"), "names the status: {message}");
    assert!(
        w.releases(STAGING).await.is_empty(),
        "nothing was rolled back"
    );

    let entry = deliveries(&w, OutboxKind::Executor, "executor")
        .await
        .remove(0);
    assert_eq!(entry.failed_at, Some(at));
    assert_eq!(entry.next_attempt_at, None);
    receiver.answer(200);
    w.advance(3_600_000);
    assert_eq!(w.deliver().await, 0, "a refusal is final");
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(
        w.app.get_rollback(&executed.id).await.unwrap().status,
        RollbackStatus::Failed
    );
}

#[tokio::test]
async fn an_executor_error_is_retried_and_then_succeeds() {
    let receiver = Receiver::start().await;
    receiver.script(&[500]);
    let w = World::with_settings(with_executor(&receiver, 5)).await;
    let executed = execute_staging_rollback(&w).await;

    let first = w.now();
    assert_eq!(w.deliver().await, 1);
    let rollback = w.app.get_rollback(&executed.id).await.unwrap();
    assert_eq!(rollback.status, RollbackStatus::Executing, "still awaited");
    let entry = deliveries(&w, OutboxKind::Executor, "executor")
        .await
        .remove(0);
    assert_eq!(entry.attempts, 1);
    assert_eq!(
        entry.next_attempt_at,
        Some(first.plus_millis(retry_delay_ms(1)))
    );
    assert!(entry.last_error.unwrap().contains("500"));

    assert_eq!(w.deliver().await, 0, "backoff");
    w.advance(retry_delay_ms(1));
    let second = w.now();
    assert_eq!(w.deliver().await, 1);
    let rollback = w.app.get_rollback(&executed.id).await.unwrap();
    assert_eq!(rollback.status, RollbackStatus::Succeeded);
    assert_eq!(rollback.outcome_at, Some(second));
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let answered: Vec<Option<u16>> = received.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [Some(500), Some(200)]);
    let numbers: Vec<String> = received
        .iter()
        .map(|r| r.header("x-deploy-safety-attempt"))
        .collect();
    assert_eq!(numbers, ["1", "2"]);
    for request in &received {
        assert_rollback_request(request, &executed);
    }
    assert_eq!(
        w.releases(STAGING).await,
        [("v1.2.2".to_owned(), ReleaseChange::Rollback)]
    );
}

#[tokio::test]
async fn an_automatic_canary_rollback_goes_to_the_executor() {
    let receiver = Receiver::start().await;
    let w = World::with_settings(with_executor(&receiver, 5)).await;
    w.start_staging("v1").await;
    w.run_to_completion(STAGING).await;
    let id = w
        .start_as(&w.dev, STAGING, "v2", config(1))
        .await
        .unwrap()
        .canary
        .id;
    assert_eq!(
        w.interval_with(STAGING, Some(unhealthy())).await,
        [(id.clone(), Some(StepAction::RolledBack))]
    );
    let rollback = w.rollbacks(STAGING).await.remove(0);
    assert!(rollback.automatic);
    assert_eq!(rollback.status, RollbackStatus::Executing);
    assert_eq!(rollback.to_version, "v1");

    assert_eq!(w.deliver().await, 1);
    let body = receiver.received()[0].json();
    assert_eq!(body["automatic"], true);
    assert_eq!(body["canaryId"], id.as_str());
    assert_eq!(body["toVersion"], "v1");
    assert_signed(&receiver.received()[0], EXECUTOR_SECRET);
    assert_eq!(
        w.app.get_rollback(&rollback.id).await.unwrap().status,
        RollbackStatus::Succeeded
    );
    assert_eq!(
        w.releases(STAGING).await,
        [
            ("v1".to_owned(), ReleaseChange::CanaryCompleted),
            ("v1".to_owned(), ReleaseChange::Rollback),
        ]
    );
}
