//! The health-probe runner (SPEC §8) against real targets on 127.0.0.1: an HTTP server that can
//! be switched to fail, answer slowly or hang up, and a TCP listener that can be closed. Time is
//! a `ManualClock` moved by hand and the runner is driven through its single step `tick(now)`,
//! whose started checks are awaited: no test sleeps to wait for a state. (A probe's timeout is
//! real time by nature, so the timeout tests take a few hundred milliseconds.)

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use deploy_safety_api_types::SetModeRequest;
use deploy_safety_app::{App, AppSettings, DATABASE_PROBE, PROBE_HISTORY};
use deploy_safety_core::{
    CheckOutcome, OverallHealth, ProbeKind, ProbeSource, ProbeStatus, Role, SecurityMode,
};
use deploy_safety_store::Store;
use support::{Behaviour, Harness, START, TcpTarget, TestServer, http_probe, join_all, tcp_probe};

/// The interval of the test probes (see `http_probe`): the clock moves by this between checks.
const INTERVAL: i64 = 1_000;

fn outcomes(view: &deploy_safety_api_types::ProbeView) -> Vec<CheckOutcome> {
    view.history
        .as_ref()
        .unwrap()
        .iter()
        .map(|r| r.outcome)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// HTTP probes: thresholds, recovery, messages, expected status
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn http_probe_is_healthy_at_first_success_failing_after_threshold_and_recovers_after_success_threshold()
 {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let mut request = http_probe("api", &server.url());
    request.failure_threshold = Some(3);
    request.success_threshold = Some(2);
    let created = h.create(request).await;
    let id = created.probe.id.clone();
    assert_eq!(created.probe.state.status, ProbeStatus::Unknown);

    // The new probe and the built-in database probe are both due at once.
    assert_eq!(h.tick().await, 2);
    let view = h.probe(&id).await;
    assert_eq!(
        view.probe.state.status,
        ProbeStatus::Healthy,
        "first success"
    );
    assert_eq!(view.probe.state.consecutive_successes, 1);
    assert_eq!(view.probe.state.last_error, None);
    assert_eq!(view.probe.state.last_checked_at, Some(START));

    // Failures below the threshold leave it healthy, but the error is shown.
    server.set(Behaviour::Fail);
    for failures in 1..=2 {
        assert_eq!(h.advance_and_tick(INTERVAL).await, 1);
        let state = h.probe(&id).await.probe.state;
        assert_eq!(
            state.status,
            ProbeStatus::Healthy,
            "after {failures} failure(s)"
        );
        assert_eq!(state.consecutive_failures, failures);
        assert_eq!(state.consecutive_successes, 0);
        let error = state.last_error.unwrap();
        assert!(error.contains("500"), "the error names the status: {error}");
    }
    // The third failure in a row crosses the threshold.
    assert_eq!(h.advance_and_tick(INTERVAL).await, 1);
    let state = h.probe(&id).await.probe.state;
    assert_eq!(state.status, ProbeStatus::Failing);
    assert_eq!(state.consecutive_failures, 3);
    assert_eq!(
        state.last_error.as_deref(),
        Some("HTTP 500 (expected 200-299)")
    );

    // One success is not enough to recover (successThreshold 2); the error is kept meanwhile.
    server.set(Behaviour::Ok);
    assert_eq!(h.advance_and_tick(INTERVAL).await, 1);
    let state = h.probe(&id).await.probe.state;
    assert_eq!(state.status, ProbeStatus::Failing);
    assert_eq!(state.consecutive_successes, 1);
    assert_eq!(state.consecutive_failures, 0);
    assert!(state.last_error.is_some());

    // The second success in a row recovers it and clears the error.
    assert_eq!(h.advance_and_tick(INTERVAL).await, 1);
    let view = h.probe(&id).await;
    assert_eq!(view.probe.state.status, ProbeStatus::Healthy);
    assert_eq!(view.probe.state.last_error, None);

    use CheckOutcome::{Failure as F, Success as S};
    assert_eq!(outcomes(&view), [S, S, F, F, F, S], "newest first");
    let newest = &view.history.as_ref().unwrap()[0];
    assert_eq!(newest.at, START.plus_millis(5 * INTERVAL));
    assert_eq!(newest.error, None);
    let failure = &view.history.as_ref().unwrap()[2];
    assert_eq!(
        failure.error.as_deref(),
        Some("HTTP 500 (expected 200-299)")
    );
    assert_eq!(server.requests(), 6);
}

#[tokio::test]
async fn only_consecutive_failures_count_towards_the_threshold() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let mut request = http_probe("api", &server.url());
    request.failure_threshold = Some(3);
    let id = h.create(request).await.probe.id;
    h.tick().await;

    // F F S F F: never three in a row, so never failing.
    for behaviour in [
        Behaviour::Fail,
        Behaviour::Fail,
        Behaviour::Ok,
        Behaviour::Fail,
        Behaviour::Fail,
    ] {
        server.set(behaviour);
        h.advance_and_tick(INTERVAL).await;
        assert_eq!(h.probe(&id).await.probe.state.status, ProbeStatus::Healthy);
    }
    h.advance_and_tick(INTERVAL).await;
    assert_eq!(h.probe(&id).await.probe.state.status, ProbeStatus::Failing);
}

#[tokio::test]
async fn a_probe_never_healthy_is_unknown_until_the_failure_threshold() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Fail).await;
    let mut request = http_probe("api", &server.url());
    request.failure_threshold = Some(2);
    let id = h.create(request).await.probe.id;

    h.tick().await;
    let state = h.probe(&id).await.probe.state;
    assert_eq!(state.status, ProbeStatus::Unknown);
    assert_eq!(
        state.last_error.as_deref(),
        Some("HTTP 500 (expected 200-299)")
    );
    h.advance_and_tick(INTERVAL).await;
    assert_eq!(h.probe(&id).await.probe.state.status, ProbeStatus::Failing);
}

#[tokio::test]
async fn expected_status_range_is_respected() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let mut request = http_probe("no-content", &server.url());
    request.expected_status = Some("204".to_owned());
    request.failure_threshold = Some(1);
    let id = h.create(request).await.probe.id;

    // 200 is a success in general, but not when 204 is expected.
    h.tick().await;
    let view = h.probe(&id).await;
    assert_eq!(view.probe.state.status, ProbeStatus::Failing);
    assert_eq!(
        view.probe.state.last_error.as_deref(),
        Some("HTTP 200 (expected 204)")
    );

    server.set(Behaviour::NoContent);
    h.advance_and_tick(INTERVAL).await;
    let view = h.probe(&id).await;
    assert_eq!(view.probe.state.status, ProbeStatus::Healthy);
    assert_eq!(
        outcomes(&view),
        [CheckOutcome::Success, CheckOutcome::Failure]
    );

    // A range that admits a server error: 500 counts as success.
    let mut request = http_probe("errors-expected", &server.url());
    request.expected_status = Some("500-599".to_owned());
    let id = h.create(request).await.probe.id;
    server.set(Behaviour::Fail);
    h.tick().await;
    assert_eq!(h.probe(&id).await.probe.state.status, ProbeStatus::Healthy);
}

// ---------------------------------------------------------------------------------------------
// Timeouts and hang-ups
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_server_is_a_failure_after_the_timeout() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Slow).await;
    let mut request = http_probe("slow", &server.url());
    request.timeout_ms = Some(150);
    request.failure_threshold = Some(1);
    let id = h.create(request).await.probe.id;

    let started = Instant::now();
    h.tick().await;
    let elapsed = started.elapsed();

    let view = h.probe(&id).await;
    assert_eq!(view.probe.state.status, ProbeStatus::Failing);
    assert_eq!(
        view.probe.state.last_error.as_deref(),
        Some("no answer within 150 ms")
    );
    let result = &view.history.as_ref().unwrap()[0];
    assert_eq!(result.outcome, CheckOutcome::Failure);
    assert!(
        result.latency_ms >= 150,
        "the check waited for the timeout: {} ms",
        result.latency_ms
    );
    assert!(
        result.latency_ms < 2_000,
        "the check gave up at about the timeout, not the server's 5 s delay: {} ms",
        result.latency_ms
    );
    assert!(elapsed < Duration::from_secs(2), "tick took {elapsed:?}");
    assert_eq!(server.requests(), 1, "the request did reach the server");
}

#[tokio::test]
async fn a_connection_closed_without_an_answer_is_a_failure() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Close).await;
    let mut request = http_probe("hangs-up", &server.url());
    request.failure_threshold = Some(1);
    let id = h.create(request).await.probe.id;

    h.tick().await;
    let view = h.probe(&id).await;
    assert_eq!(view.probe.state.status, ProbeStatus::Failing);
    let error = view.probe.state.last_error.clone().unwrap();
    assert!(!error.is_empty());
    assert!(
        !error.contains("no answer within"),
        "a hang-up is not a timeout: {error}"
    );
    assert_eq!(outcomes(&view), [CheckOutcome::Failure]);
    assert_eq!(server.requests(), 0, "no request was answered");

    // The same server answering again: the probe recovers.
    server.set(Behaviour::Ok);
    h.advance_and_tick(INTERVAL).await;
    assert_eq!(h.probe(&id).await.probe.state.status, ProbeStatus::Healthy);
}

#[tokio::test]
async fn an_http_probe_to_a_closed_port_is_a_failure() {
    let h = Harness::new().await;
    let mut target = TcpTarget::start().await;
    let url = format!("http://{}/", target.address);
    target.close();
    let mut request = http_probe("nobody-home", &url);
    request.failure_threshold = Some(1);
    let id = h.create(request).await.probe.id;

    h.tick().await;
    let state = h.probe(&id).await.probe.state;
    assert_eq!(state.status, ProbeStatus::Failing);
    assert!(state.last_error.is_some());
}

// ---------------------------------------------------------------------------------------------
// TCP probes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tcp_probe_is_healthy_while_listening_and_failing_after_threshold_once_closed() {
    let h = Harness::new().await;
    let mut target = TcpTarget::start().await;
    let mut request = tcp_probe("cache", &target.address);
    request.failure_threshold = Some(2);
    let id = h.create(request).await.probe.id;

    assert_eq!(h.tick().await, 2);
    let view = h.probe(&id).await;
    assert_eq!(view.probe.definition.kind, ProbeKind::Tcp);
    assert_eq!(view.probe.state.status, ProbeStatus::Healthy);
    assert_eq!(view.probe.state.last_error, None);

    target.close();
    assert_eq!(h.advance_and_tick(INTERVAL).await, 1);
    let state = h.probe(&id).await.probe.state;
    assert_eq!(
        state.status,
        ProbeStatus::Healthy,
        "one failure, threshold 2"
    );
    let error = state.last_error.unwrap();
    assert!(error.starts_with("cannot connect"), "{error}");

    assert_eq!(h.advance_and_tick(INTERVAL).await, 1);
    let view = h.probe(&id).await;
    assert_eq!(view.probe.state.status, ProbeStatus::Failing);
    assert_eq!(view.probe.state.consecutive_failures, 2);
    assert_eq!(
        outcomes(&view),
        [
            CheckOutcome::Failure,
            CheckOutcome::Failure,
            CheckOutcome::Success
        ]
    );
}

#[tokio::test]
async fn tcp_probe_recovers_when_the_port_listens_again() {
    let h = Harness::new().await;
    let mut target = TcpTarget::start().await;
    let address = target.address.clone();
    target.close();
    let mut request = tcp_probe("cache", &address);
    request.failure_threshold = Some(1);
    request.success_threshold = Some(1);
    let id = h.create(request).await.probe.id;
    h.tick().await;
    assert_eq!(h.probe(&id).await.probe.state.status, ProbeStatus::Failing);

    // Listen on the same port again (it was ours a moment ago; if another process took it in
    // between, the test cannot go on, so it says so).
    let _listener = tokio::net::TcpListener::bind(&address)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {address} again: {e}"));
    h.advance_and_tick(INTERVAL).await;
    let state = h.probe(&id).await.probe.state;
    assert_eq!(state.status, ProbeStatus::Healthy);
    assert_eq!(state.last_error, None);
}

// ---------------------------------------------------------------------------------------------
// The runner: isolation, single flight, bounded concurrency, schedule
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_target_never_stalls_the_others() {
    const SLOW: usize = 10;
    const TIMEOUT_MS: u32 = 250;
    let h = Harness::new().await;
    let slow = TestServer::start(Behaviour::Slow).await;
    let fast = TestServer::start(Behaviour::Ok).await;
    let mut slow_ids = Vec::new();
    for i in 0..SLOW {
        let mut request = http_probe(&format!("slow-{i}"), &slow.url());
        request.timeout_ms = Some(TIMEOUT_MS);
        request.failure_threshold = Some(1);
        slow_ids.push(h.create(request).await.probe.id);
    }
    let fast_id = h.create(http_probe("fast", &fast.url())).await.probe.id;

    let started = Instant::now();
    let handles = h.runner.tick(h.now()).await.unwrap();
    assert_eq!(
        handles.len(),
        SLOW + 2,
        "every slow probe, the fast one, the database"
    );
    join_all(handles).await;
    let elapsed = started.elapsed();

    let sum = Duration::from_millis(u64::from(TIMEOUT_MS) * SLOW as u64);
    assert!(
        elapsed < Duration::from_millis(1_500),
        "{SLOW} slow checks of {TIMEOUT_MS} ms each took {elapsed:?} together: they ran one \
         after another (their sum is {sum:?}) instead of side by side"
    );
    let view = h.probe(&fast_id).await;
    assert_eq!(view.probe.state.status, ProbeStatus::Healthy);
    let fast_result = &view.history.as_ref().unwrap()[0];
    assert!(
        fast_result.latency_ms < u64::from(TIMEOUT_MS),
        "the fast check did not wait for the slow ones: {} ms",
        fast_result.latency_ms
    );
    for id in &slow_ids {
        let state = h.probe(id).await.probe.state;
        assert_eq!(state.status, ProbeStatus::Failing, "{id}");
        assert_eq!(
            state.last_error.as_deref(),
            Some("no answer within 250 ms"),
            "{id}"
        );
    }
    assert_eq!(
        h.probe(DATABASE_PROBE).await.probe.state.status,
        ProbeStatus::Healthy
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_probe_being_checked_is_not_started_again() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let mut request = http_probe("slow", &server.url());
    request.timeout_ms = Some(200);
    let id = h.create(request).await.probe.id;
    // First check of everything (the database probe is then not due for 10 s).
    assert_eq!(h.tick().await, 2);

    server.set(Behaviour::Slow);
    h.clock.advance_millis(INTERVAL);
    let now = h.now();
    let first = h.runner.tick(now).await.unwrap();
    assert_eq!(first.len(), 1);
    // Still due (nothing recorded yet), but already being checked.
    assert_eq!(h.app.due_probes(now).await.unwrap().len(), 1);
    let second = h.runner.tick(now).await.unwrap();
    assert!(
        second.is_empty(),
        "a second tick started {} more check(s) of a probe in flight",
        second.len()
    );
    join_all(first).await;

    // Recorded: the next check is one interval later, so the same `now` starts nothing.
    let view = h.probe(&id).await;
    assert_eq!(view.history.as_ref().unwrap().len(), 2);
    assert_eq!(view.probe.next_check_at, now.plus_millis(INTERVAL));
    assert!(h.runner.tick(now).await.unwrap().is_empty());
    assert_eq!(
        server.requests(),
        2,
        "one fast and one slow request, no more"
    );

    // And it is checked again on schedule, no longer held as in flight.
    server.set(Behaviour::Ok);
    assert_eq!(h.advance_and_tick(INTERVAL).await, 1);
    assert_eq!(server.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_max_concurrent_checks_run_at_once() {
    const SLOW: usize = 4;
    const TIMEOUT_MS: u32 = 250;
    // Sequential checks take at least SLOW × TIMEOUT_MS = 1000 ms; side by side, about one
    // timeout. The line between is drawn well clear of both.
    const LINE: Duration = Duration::from_millis(900);
    async fn slow_probes(max_concurrent: usize) -> (Duration, Harness, TestServer) {
        let h = Harness::with_concurrency(max_concurrent).await;
        let slow = TestServer::start(Behaviour::Slow).await;
        for i in 0..SLOW {
            let mut request = http_probe(&format!("slow-{i}"), &slow.url());
            request.timeout_ms = Some(TIMEOUT_MS);
            request.failure_threshold = Some(1);
            h.create(request).await;
        }
        let started = Instant::now();
        // The slow probes and the database probe.
        assert_eq!(h.tick().await, SLOW + 1);
        (started.elapsed(), h, slow)
    }

    // One at a time: the timeouts follow one another.
    let (one_at_a_time, h, _server) = slow_probes(1).await;
    assert!(
        one_at_a_time >= LINE,
        "with max_concurrent 1, {SLOW} checks of {TIMEOUT_MS} ms each took only \
         {one_at_a_time:?}: they ran together"
    );
    let probes = h.app.health().await.probes.unwrap();
    assert_eq!(
        probes
            .iter()
            .filter(|p| p.status == ProbeStatus::Failing)
            .count(),
        SLOW,
        "every check still ran and was recorded: {probes:?}"
    );

    // Enough permits: the same checks run side by side.
    let (side_by_side, _h, _server) = slow_probes(8).await;
    assert!(
        side_by_side < LINE,
        "with max_concurrent 8, {SLOW} checks of {TIMEOUT_MS} ms each took {side_by_side:?}"
    );
}

#[tokio::test]
async fn probes_are_checked_on_their_schedule() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let mut request = http_probe("api", &server.url());
    request.interval_ms = Some(2_000);
    let created = h.create(request).await;
    let id = created.probe.id.clone();
    assert_eq!(
        created.probe.next_check_at, START,
        "a new probe is due at once"
    );

    assert_eq!(h.tick().await, 2);
    let view = h.probe(&id).await;
    assert_eq!(view.probe.next_check_at, START.plus_millis(2_000));
    let database = h.probe(DATABASE_PROBE).await;
    assert_eq!(database.probe.next_check_at, START.plus_millis(10_000));

    // Not due yet: a tick starts nothing.
    assert_eq!(h.tick().await, 0);
    assert_eq!(h.advance_and_tick(1_999).await, 0);
    assert_eq!(server.requests(), 1);

    // Due exactly one interval after the last check started.
    assert_eq!(h.advance_and_tick(1).await, 1);
    assert_eq!(server.requests(), 2);
    let view = h.probe(&id).await;
    assert_eq!(view.probe.next_check_at, START.plus_millis(4_000));
    assert_eq!(view.history.as_ref().unwrap().len(), 2);

    // A tick long after the due time checks once, and schedules from then.
    assert_eq!(h.advance_and_tick(7_000).await, 1);
    assert_eq!(
        h.probe(&id).await.probe.next_check_at,
        START.plus_millis(11_000)
    );
    // The database probe came due on its own interval.
    assert_eq!(h.advance_and_tick(1_000).await, 1);
    let database = h.probe(DATABASE_PROBE).await;
    assert_eq!(database.history.as_ref().unwrap().len(), 2);
    assert_eq!(database.probe.next_check_at, START.plus_millis(20_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_next_check_is_one_interval_after_the_last_started_or_now_if_it_took_longer() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let mut request = http_probe("api", &server.url());
    request.timeout_ms = Some(200);
    let id = h.create(request).await.probe.id;
    h.tick().await;

    // A check that takes part of an interval (on the clock): the next one is still one
    // interval after this one started.
    server.set(Behaviour::Slow);
    h.clock.advance_millis(INTERVAL);
    let started = h.now();
    let handles = h.runner.tick(started).await.unwrap();
    assert_eq!(handles.len(), 1);
    server.wait_for_requests(2).await; // the check is under way
    h.clock.advance_millis(300);
    join_all(handles).await;
    let view = h.probe(&id).await;
    assert_eq!(
        view.probe.state.last_checked_at,
        Some(started.plus_millis(300))
    );
    assert_eq!(view.probe.next_check_at, started.plus_millis(INTERVAL));

    // A check that takes longer than the interval (on the clock): the next one is due at once.
    h.clock.set(started.plus_millis(INTERVAL));
    let started = h.now();
    let handles = h.runner.tick(started).await.unwrap();
    assert_eq!(handles.len(), 1);
    server.wait_for_requests(3).await;
    h.clock.advance_millis(5 * INTERVAL);
    join_all(handles).await;
    let finished = h.now();
    let view = h.probe(&id).await;
    assert_eq!(view.probe.state.last_checked_at, Some(finished));
    assert_eq!(view.probe.next_check_at, finished);
    assert_eq!(
        h.runner.tick(finished).await.unwrap().len(),
        1,
        "due at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_probe_deleted_while_being_checked_stays_deleted() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let id = h.create(http_probe("api", &server.url())).await.probe.id;
    h.tick().await;

    server.set(Behaviour::Slow);
    h.clock.advance_millis(INTERVAL);
    let handles = h.runner.tick(h.now()).await.unwrap();
    assert_eq!(handles.len(), 1);
    server.wait_for_requests(2).await;
    h.app.delete_probe(&h.ops, &id).await.unwrap();
    // The check ends without a panic and records nothing.
    join_all(handles).await;
    assert!(h.app.get_probe(&id, 10).await.is_err());
    let names: Vec<String> = h
        .app
        .list_probes()
        .await
        .unwrap()
        .probes
        .into_iter()
        .map(|p| p.probe.definition.name)
        .collect();
    assert_eq!(names, [DATABASE_PROBE]);
    assert!(h.runner.tick(h.now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_background_loop_checks_probes_on_schedule_until_stopped() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let id = h.create(http_probe("api", &server.url())).await.probe.id;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(h.runner.clone().run(stopped));

    // Due at once: the loop checks it without being told.
    server.wait_for_requests(1).await;
    // Once the interval has passed on the clock, the loop checks it again.
    h.clock.advance_millis(INTERVAL);
    server.wait_for_requests(2).await;

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the loop stops when told")
        .unwrap();
    // The second check was recorded or is about to be; the first one certainly was.
    assert!(!h.probe(&id).await.history.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn history_is_bounded_and_newest_first() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let id = h.create(http_probe("api", &server.url())).await.probe.id;

    let checks = PROBE_HISTORY + 20;
    h.tick().await;
    for _ in 1..checks {
        h.advance_and_tick(INTERVAL).await;
    }
    assert_eq!(server.requests(), u64::from(checks));

    let view = h.probe(&id).await;
    let history = view.history.unwrap();
    assert_eq!(
        history.len(),
        PROBE_HISTORY as usize,
        "kept: the latest {PROBE_HISTORY}"
    );
    let last = START.plus_millis(i64::from(checks - 1) * INTERVAL);
    for (i, result) in history.iter().enumerate() {
        assert_eq!(
            result.at,
            last.plus_millis(-(i as i64) * INTERVAL),
            "entry {i}: newest first, oldest dropped"
        );
        assert_eq!(result.outcome, CheckOutcome::Success);
    }
    assert_eq!(
        history.last().unwrap().at,
        START.plus_millis(20 * INTERVAL),
        "the first 20 checks were dropped"
    );

    // A smaller page is the newest entries.
    let page = h.app.get_probe(&id, 5).await.unwrap().history.unwrap();
    assert_eq!(page, history[..5]);
}

// ---------------------------------------------------------------------------------------------
// Overall health
// ---------------------------------------------------------------------------------------------

/// A harness with a critical and a non-critical probe, each on its own server, all checked
/// once.
async fn two_probes(
    critical: Behaviour,
    other: Behaviour,
) -> (Harness, TestServer, TestServer, String, String) {
    let h = Harness::new().await;
    let critical_server = TestServer::start(critical).await;
    let other_server = TestServer::start(other).await;
    let mut request = http_probe("payments", &critical_server.url());
    request.critical = Some(true);
    request.failure_threshold = Some(1);
    let critical_id = h.create(request).await.probe.id;
    let mut request = http_probe("search", &other_server.url());
    request.failure_threshold = Some(1);
    let other_id = h.create(request).await.probe.id;
    assert_eq!(h.tick().await, 3);
    (h, critical_server, other_server, critical_id, other_id)
}

#[tokio::test]
async fn all_probes_healthy_is_healthy() {
    let (h, _a, _b, _, _) = two_probes(Behaviour::Ok, Behaviour::Ok).await;
    let health = h.app.health().await;
    assert_eq!(health.overall_health, OverallHealth::Healthy);
    let probes = health.probes.unwrap();
    assert_eq!(probes.len(), 3);
    for probe in &probes {
        assert_eq!(probe.status, ProbeStatus::Healthy, "{probe:?}");
        assert!(!probe.stale, "{probe:?}");
        assert_eq!(probe.last_checked_at, Some(START));
    }
}

#[tokio::test]
async fn a_failing_critical_probe_is_unhealthy() {
    let (h, _a, _b, critical_id, _) = two_probes(Behaviour::Fail, Behaviour::Ok).await;
    let health = h.app.health().await;
    assert_eq!(health.overall_health, OverallHealth::Unhealthy);
    let probes = health.probes.unwrap();
    let critical = probes.iter().find(|p| p.id == critical_id).unwrap();
    assert!(critical.critical);
    assert_eq!(critical.status, ProbeStatus::Failing);
    assert_eq!(
        critical.last_error.as_deref(),
        Some("HTTP 500 (expected 200-299)")
    );
}

#[tokio::test]
async fn a_failing_non_critical_probe_is_degraded_and_recovery_is_healthy() {
    let (h, _a, other, _, other_id) = two_probes(Behaviour::Ok, Behaviour::Fail).await;
    let health = h.app.health().await;
    assert_eq!(health.overall_health, OverallHealth::Degraded);
    let probes = health.probes.unwrap();
    let search = probes.iter().find(|p| p.id == other_id).unwrap();
    assert!(!search.critical);
    assert_eq!(search.status, ProbeStatus::Failing);

    other.set(Behaviour::Ok);
    h.advance_and_tick(INTERVAL).await;
    assert_eq!(h.app.health().await.overall_health, OverallHealth::Healthy);
}

#[tokio::test]
async fn a_stale_critical_probe_counts_as_failing() {
    let (h, _a, _b, critical_id, other_id) = two_probes(Behaviour::Ok, Behaviour::Ok).await;
    assert_eq!(h.app.health().await.overall_health, OverallHealth::Healthy);

    // Stale after three intervals and a timeout without a check (1000 ms, 200 ms).
    h.clock.advance_millis(3 * INTERVAL + 200);
    assert!(!h.probe(&critical_id).await.stale, "at the limit");
    assert_eq!(h.app.health().await.overall_health, OverallHealth::Healthy);

    h.clock.advance_millis(1);
    let view = h.probe(&critical_id).await;
    assert!(view.stale);
    assert_eq!(
        view.probe.state.status,
        ProbeStatus::Healthy,
        "its last result was healthy"
    );
    let health = h.app.health().await;
    assert_eq!(health.overall_health, OverallHealth::Unhealthy);
    let probes = health.probes.unwrap();
    let critical = probes.iter().find(|p| p.id == critical_id).unwrap();
    assert!(critical.stale);
    let other = probes.iter().find(|p| p.id == other_id).unwrap();
    assert!(other.stale);
    let database = probes.iter().find(|p| p.name == DATABASE_PROBE).unwrap();
    assert!(!database.stale, "the database probe's window is longer");

    // Checked again: fresh, and healthy again.
    h.tick().await;
    assert!(!h.probe(&critical_id).await.stale);
    assert_eq!(h.app.health().await.overall_health, OverallHealth::Healthy);
}

#[tokio::test]
async fn a_stale_non_critical_probe_is_degraded() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let fast_id = h.create(http_probe("search", &server.url())).await.probe.id;
    // A probe on a longer interval stays fresh while the first goes stale.
    let mut request = http_probe("payments", &server.url());
    request.critical = Some(true);
    request.interval_ms = Some(60_000);
    h.create(request).await;
    h.tick().await;
    assert_eq!(h.app.health().await.overall_health, OverallHealth::Healthy);

    h.clock.advance_millis(3 * INTERVAL + 200 + 1);
    assert!(h.probe(&fast_id).await.stale);
    let health = h.app.health().await;
    assert_eq!(health.overall_health, OverallHealth::Degraded);
    let probes = health.probes.unwrap();
    assert_eq!(probes.iter().filter(|p| p.stale).count(), 1, "{probes:?}");
}

// ---------------------------------------------------------------------------------------------
// The built-in database probe, and lockdown
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_database_probe_checks_a_real_write() {
    let h = Harness::new().await;
    let before = h.probe(DATABASE_PROBE).await;
    assert_eq!(before.probe.source, ProbeSource::Builtin);
    assert_eq!(before.probe.definition.kind, ProbeKind::Database);
    assert!(before.probe.definition.critical);
    assert_eq!(before.probe.state.status, ProbeStatus::Unknown);

    assert_eq!(h.tick().await, 1);
    let view = h.probe(DATABASE_PROBE).await;
    assert_eq!(view.probe.state.status, ProbeStatus::Healthy);
    assert_eq!(view.probe.state.last_checked_at, Some(START));
    let result = &view.history.as_ref().unwrap()[0];
    assert_eq!(result.outcome, CheckOutcome::Success);
    assert_eq!(result.error, None);
    assert_eq!(h.app.health().await.overall_health, OverallHealth::Healthy);

    // The check is a write: against the same database opened read-only, it fails.
    let path = h.dir.path().join("deploy-safety.db");
    let read_only = Store::open_read_only(&format!("sqlite://{}", path.display())).unwrap();
    let reader = App::new(read_only, h.clock.clone(), AppSettings::default());
    let report = reader.check_probe(&view.probe).await;
    assert_eq!(report.outcome, CheckOutcome::Failure, "{report:?}");
    assert_eq!(report.message, "a write failed");
    let report = h.app.check_probe(&view.probe).await;
    assert_eq!(report.outcome, CheckOutcome::Success, "{report:?}");
    assert_eq!(report.message, "a write committed");
}

#[tokio::test]
async fn probes_keep_running_in_lockdown() {
    let h = Harness::new().await;
    let server = TestServer::start(Behaviour::Ok).await;
    let mut request = http_probe("api", &server.url());
    request.failure_threshold = Some(1);
    let id = h.create(request).await.probe.id;
    assert_eq!(h.tick().await, 2);

    let security = h.caller("sec", Role::SecurityTeam).await;
    let status = h
        .app
        .set_mode(
            &security,
            SetModeRequest {
                mode: SecurityMode::Lockdown,
                reason: Some("INC-1: suspected breach".to_owned()),
            },
        )
        .await
        .unwrap();
    assert_eq!(status.mode, SecurityMode::Lockdown);
    assert_eq!(
        h.app.gate_status().await.unwrap().mode,
        SecurityMode::Lockdown
    );

    // The probe is still checked, and its failure recorded.
    server.set(Behaviour::Fail);
    assert_eq!(h.advance_and_tick(INTERVAL).await, 1);
    let view = h.probe(&id).await;
    assert_eq!(view.probe.state.status, ProbeStatus::Failing);
    assert_eq!(view.history.as_ref().unwrap().len(), 2);
    assert_eq!(h.app.health().await.overall_health, OverallHealth::Degraded);

    // And so is the database probe when it comes due.
    server.set(Behaviour::Ok);
    h.clock.advance_millis(9_000);
    assert_eq!(h.tick().await, 2);
    let database = h.probe(DATABASE_PROBE).await;
    assert_eq!(database.history.as_ref().unwrap().len(), 2);
    assert_eq!(
        database.probe.state.last_checked_at,
        Some(START.plus_millis(10_000))
    );
    assert_eq!(h.probe(&id).await.probe.state.status, ProbeStatus::Healthy);
    assert_eq!(h.app.health().await.overall_health, OverallHealth::Healthy);
    assert_eq!(
        h.app.gate_status().await.unwrap().mode,
        SecurityMode::Lockdown,
        "still in lockdown"
    );
}
