//! Fixtures of the canary and webhook tests: a real SQLite store in a temporary directory, an
//! `App` on a `ManualClock`, callers of three roles, the canary runner and the delivery worker
//! driven through their `tick(now)`, and a restart that reopens the same database file. Also a
//! local HTTP receiver that records every request and can be told to fail, answer a given
//! status, or hang.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use deploy_safety_api_types::{
    CanaryConfigRequest, CanaryMetricsRequest, CanaryView, CreateOverrideRequest,
    EnvironmentListQuery, SetModeRequest, SetThreatLevelRequest, StartCanaryRequest,
    StartValidationRequest,
};
use deploy_safety_app::{App, AppError, AppSettings, Caller, Clock, ManualClock};
use deploy_safety_core::{
    Action, Environment, Event, EventType, ReleaseChange, Role, Rollback, SecurityMode, StepAction,
    ThreatLevel, Timestamp, ValidationStatus,
};
use deploy_safety_engine::{CanaryRunner, DeliveryWorker};
use deploy_safety_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// 2025-01-01T00:00:00Z.
pub const START: Timestamp = Timestamp::from_unix_millis(1_735_689_600_000);
/// The test canaries' interval: one minute.
pub const INTERVAL: i64 = 60_000;

/// Everything one test needs. The temporary directory lives as long as the world, across
/// restarts.
#[derive(Debug)]
pub struct World {
    pub dir: tempfile::TempDir,
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub settings: AppSettings,
    /// security-team: mode and threat level.
    pub security: Caller,
    /// eng-lead: overrides for canaries and rollbacks.
    pub lead: Caller,
    /// developer: starts canaries in staging, creates and executes staging rollbacks.
    pub dev: Caller,
    pub runner: CanaryRunner,
    pub worker: DeliveryWorker,
    tokens: [String; 3],
}

impl World {
    pub async fn new() -> World {
        World::with_settings(AppSettings::default()).await
    }

    pub async fn with_settings(settings: AppSettings) -> World {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START));
        let app = App::new(open_store(&dir), clock.clone(), settings.clone());
        app.sync_probes(vec![]).await.unwrap();
        let mut tokens = Vec::new();
        for (name, role) in [
            ("sec", Role::SecurityTeam),
            ("lead", Role::EngLead),
            ("dev", Role::Developer),
        ] {
            tokens.push(app.create_token(name, role, "test").await.unwrap().token);
        }
        let tokens: [String; 3] = tokens.try_into().unwrap();
        World::assemble(dir, app, clock, settings, tokens).await
    }

    async fn assemble(
        dir: tempfile::TempDir,
        app: App,
        clock: Arc<ManualClock>,
        settings: AppSettings,
        tokens: [String; 3],
    ) -> World {
        let security = app.authenticate(&tokens[0]).await.unwrap();
        let lead = app.authenticate(&tokens[1]).await.unwrap();
        let dev = app.authenticate(&tokens[2]).await.unwrap();
        let runner = CanaryRunner::new(app.clone());
        let worker = DeliveryWorker::new(app.clone(), 16);
        World {
            dir,
            app,
            clock,
            settings,
            security,
            lead,
            dev,
            runner,
            worker,
            tokens,
        }
    }

    /// A restart: the app, its store, the runner and the worker are dropped; a new store and
    /// app are opened on the same database file, with a new clock set to `at`.
    pub async fn restart_at(self, at: Timestamp) -> World {
        self.restart_with(at, None).await
    }

    /// A restart with other settings (e.g. a receiver that is up now).
    pub async fn restart_with(self, at: Timestamp, settings: Option<AppSettings>) -> World {
        let World {
            dir,
            app,
            runner,
            worker,
            settings: old_settings,
            tokens,
            ..
        } = self;
        drop(runner);
        drop(worker);
        drop(app);
        let settings = settings.unwrap_or(old_settings);
        let clock = Arc::new(ManualClock::new(at));
        let app = App::new(open_store(&dir), clock.clone(), settings.clone());
        World::assemble(dir, app, clock, settings, tokens).await
    }

    /// A second app on the same database file (another replica), sharing this clock.
    pub fn replica(&self) -> App {
        App::new(
            open_store(&self.dir),
            self.clock.clone(),
            self.settings.clone(),
        )
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn advance(&self, millis: i64) {
        self.clock.advance_millis(millis);
    }

    // -- canaries ------------------------------------------------------------------------------

    /// Starts a canary of `release` in `environment` as `caller`, with a one-minute interval.
    pub async fn start_as(
        &self,
        caller: &Caller,
        environment: Environment,
        release: &str,
        config: CanaryConfigRequest,
    ) -> Result<CanaryView, AppError> {
        self.app
            .start_canary(
                caller,
                StartCanaryRequest {
                    service: None,
                    release_id: release.to_owned(),
                    environment,
                    deployment_id: format!("deploy-{release}"),
                    config: Some(config),
                },
            )
            .await
    }

    /// Starts a staging canary of `release` (10% + 10% every minute, up to 100%) as the
    /// developer.
    pub async fn start_staging(&self, release: &str) -> CanaryView {
        self.start_as(&self.dev, Environment::STAGING, release, config(1))
            .await
            .unwrap()
    }

    pub async fn push(&self, environment: Environment, metrics: CanaryMetricsRequest) {
        self.app
            .push_canary_metrics(
                environment,
                deploy_safety_api_types::ServiceQuery::default(),
                metrics,
            )
            .await
            .unwrap();
    }

    /// One canary runner step at the clock's `now`.
    pub async fn tick(&self) -> Vec<(String, Option<StepAction>)> {
        self.runner.tick(self.now()).await.unwrap()
    }

    /// Half an interval on, `metrics` pushed, half an interval on, one tick: the step of a
    /// canary whose evaluation is due one interval after the previous one.
    pub async fn interval_with(
        &self,
        environment: Environment,
        metrics: Option<CanaryMetricsRequest>,
    ) -> Vec<(String, Option<StepAction>)> {
        self.advance(INTERVAL / 2);
        if let Some(metrics) = metrics {
            self.push(environment, metrics).await;
        }
        self.advance(INTERVAL - INTERVAL / 2);
        self.tick().await
    }

    /// Runs the active canary of `environment` to completion on healthy metrics.
    pub async fn run_to_completion(&self, environment: Environment) -> CanaryView {
        for _ in 0..100 {
            let view = self
                .app
                .canary_status(
                    environment,
                    deploy_safety_api_types::ServiceQuery::default(),
                )
                .await
                .unwrap();
            if !view.canary.phase.is_active() {
                return view;
            }
            let done = self.interval_with(environment, Some(healthy())).await;
            assert_eq!(done.len(), 1, "{done:?}");
        }
        panic!("the canary in {environment} does not complete");
    }

    pub async fn status(&self, environment: Environment) -> CanaryView {
        self.app
            .canary_status(
                environment,
                deploy_safety_api_types::ServiceQuery::default(),
            )
            .await
            .unwrap()
    }

    // -- the gate -----------------------------------------------------------------------------

    pub async fn set_mode(&self, mode: SecurityMode) {
        self.app
            .set_mode(
                &self.security,
                SetModeRequest {
                    mode,
                    reason: Some(format!("INC-42: test sets {mode}")),
                },
            )
            .await
            .unwrap();
    }

    pub async fn set_threat(&self, level: ThreatLevel) {
        self.app
            .set_threat_level(
                &self.security,
                SetThreatLevelRequest {
                    level,
                    reason: format!("INC-43: test sets {level}"),
                },
            )
            .await
            .unwrap();
    }

    /// An override by the eng-lead for `action` in `environment`, for `ttl` minutes.
    pub async fn override_for(&self, action: Action, environment: Environment, ttl: i64) -> String {
        self.app
            .create_override(
                &self.lead,
                CreateOverrideRequest {
                    service: None,
                    action,
                    environment,
                    reason: "CHG-1001: approved by the CTO".to_owned(),
                    approver: None,
                    ttl_minutes: Some(ttl),
                    release_id: None,
                },
            )
            .await
            .unwrap()
            .record
            .id
    }

    // -- health and validation ----------------------------------------------------------------

    /// Checks every probe due now, as one tick of the engine's probe runner would.
    pub async fn check_due_probes(&self) {
        let now = self.now();
        for probe in self.app.due_probes(now).await.unwrap() {
            let report = self.app.check_probe(&probe).await;
            self.app
                .record_probe_check(&probe, now, report)
                .await
                .unwrap();
        }
    }

    /// A passed validation of `release` in staging (the database probe checked first, so the
    /// health gate passes).
    pub async fn validate_in_staging(&self, release: &str) {
        self.check_due_probes().await;
        let started = self
            .app
            .start_validation(
                &self.lead,
                StartValidationRequest {
                    service: None,
                    release_id: release.to_owned(),
                    environment: Environment::STAGING,
                },
            )
            .await
            .unwrap();
        let run = self
            .app
            .run_validation(&self.lead, &started.validation.id)
            .await
            .unwrap();
        assert_eq!(run.status, ValidationStatus::Passed, "{run:?}");
    }

    // -- records ------------------------------------------------------------------------------

    pub async fn events(&self) -> Vec<Event> {
        self.app.events_after(0, 1_000).await.unwrap()
    }

    pub async fn event_types(&self) -> Vec<EventType> {
        self.events().await.iter().map(|e| e.event_type).collect()
    }

    pub async fn rollbacks(&self, environment: Environment) -> Vec<Rollback> {
        self.app
            .list_rollbacks(EnvironmentListQuery {
                service: None,
                environment: Some(environment),
                limit: None,
            })
            .await
            .unwrap()
            .rollbacks
    }

    /// The environment's release history, oldest first: (release, change).
    pub async fn releases(&self, environment: Environment) -> Vec<(String, ReleaseChange)> {
        let mut history: Vec<(String, ReleaseChange)> = self
            .app
            .releases(
                environment,
                deploy_safety_api_types::ServiceQuery::default(),
            )
            .await
            .unwrap()
            .releases
            .into_iter()
            .map(|r| (r.release_id, r.change))
            .collect();
        history.reverse();
        history
    }

    // -- deliveries ---------------------------------------------------------------------------

    /// One delivery worker step at the clock's `now`; returns how many attempts it started,
    /// after they have all finished and been recorded.
    pub async fn deliver(&self) -> usize {
        let handles = self.worker.tick(self.now()).await.unwrap();
        let started = handles.len();
        join_all(handles).await;
        started
    }
}

fn open_store(dir: &tempfile::TempDir) -> Store {
    let path: PathBuf = dir.path().join("deploy-safety.db");
    Store::open(&format!("sqlite://{}", path.display())).unwrap()
}

/// Awaits every started task; a task that panicked fails the test.
pub async fn join_all(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        handle.await.unwrap();
    }
}

/// 10% + 10% every minute up to 100%, with `failure_threshold`.
pub fn config(failure_threshold: u32) -> CanaryConfigRequest {
    CanaryConfigRequest {
        initial_percentage: Some(10),
        increment_percentage: Some(10),
        increment_interval: Some(INTERVAL as u64),
        max_percentage: Some(100),
        failure_threshold: Some(failure_threshold),
    }
}

pub fn metrics(
    error_rate: f64,
    latency: f64,
    baseline: f64,
    cpu: f64,
    memory: f64,
) -> CanaryMetricsRequest {
    CanaryMetricsRequest {
        error_rate_percent: Some(error_rate),
        latency_p99_ms: Some(latency),
        baseline_latency_p99_ms: Some(baseline),
        cpu_percent: Some(cpu),
        memory_percent: Some(memory),
    }
}

/// Every metric well inside the runbook's healthy column.
pub fn healthy() -> CanaryMetricsRequest {
    metrics(0.1, 105.0, 100.0, 40.0, 50.0)
}

/// An error rate of 1% (0.5-2%): degraded; the rest healthy.
pub fn degraded() -> CanaryMetricsRequest {
    metrics(1.0, 105.0, 100.0, 40.0, 50.0)
}

/// An error rate of 5% (> 2%): unhealthy; the rest healthy.
pub fn unhealthy() -> CanaryMetricsRequest {
    metrics(5.0, 105.0, 100.0, 40.0, 50.0)
}

// ---------------------------------------------------------------------------------------------
// A receiver of webhooks and rollbacks
// ---------------------------------------------------------------------------------------------

/// One request the receiver saw, and what it answered (`None`: it hung).
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub answered: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
            .to_str()
            .unwrap()
            .to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Debug)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    /// Answers 500 to this many more requests.
    fail_next: AtomicU32,
    /// Statuses to answer next, in order (before `status`).
    script: Mutex<VecDeque<u16>>,
    /// The answer otherwise.
    status: AtomicU16,
    /// Never answers.
    hang: AtomicBool,
    count: watch::Sender<usize>,
}

/// An axum server on 127.0.0.1 that records every POST's headers and body.
#[derive(Debug)]
pub struct Receiver {
    pub addr: std::net::SocketAddr,
    state: Arc<ReceiverState>,
    task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::serve(listener)
    }

    /// Starts on a given address (e.g. one a previous receiver had).
    pub async fn start_on(addr: std::net::SocketAddr) -> Receiver {
        let listener = TcpListener::bind(addr).await.unwrap();
        Receiver::serve(listener)
    }

    fn serve(listener: TcpListener) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState {
            received: Mutex::new(Vec::new()),
            fail_next: AtomicU32::new(0),
            script: Mutex::new(VecDeque::new()),
            status: AtomicU16::new(200),
            hang: AtomicBool::new(false),
            count: watch::Sender::new(0),
        });
        let router = Router::new()
            .route("/{*rest}", post(receive))
            .with_state(Arc::clone(&state));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Answers 500 to the next `n` requests.
    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Answers these statuses to the next requests, in order.
    pub fn script(&self, statuses: &[u16]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(statuses.iter().copied());
    }

    pub fn answer(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    pub fn hang(&self, hang: bool) {
        self.state.hang.store(hang, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived; fails the test after 10 s rather than hang.
    pub async fn wait_for(&self, n: usize) {
        let mut seen = self.state.count.subscribe();
        tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("the receiver did not see {n} requests within 10 s"))
            .unwrap();
    }
}

/// An address on 127.0.0.1 where nothing listens (connections are refused) until a receiver
/// is started on it.
pub async fn reserve_address() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let hang = state.hang.load(Ordering::SeqCst);
    let answer = if hang {
        None
    } else if state
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        Some(500)
    } else if let Some(next) = state.script.lock().unwrap().pop_front() {
        Some(next)
    } else {
        Some(state.status.load(Ordering::SeqCst))
    };
    state.received.lock().unwrap().push(Received {
        headers,
        body,
        answered: answer,
    });
    state.count.send_modify(|c| *c += 1);
    match answer {
        Some(status) => StatusCode::from_u16(status).unwrap(),
        None => {
            // Hang until the client gives up (or the test ends).
            std::future::pending::<()>().await;
            StatusCode::OK
        }
    }
}
