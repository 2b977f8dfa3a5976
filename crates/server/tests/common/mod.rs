//! Shared fixtures of the in-process HTTP tests: a fresh database (SQLite in a temporary
//! directory, or a PostgreSQL schema with `DEPLOY_SAFETY_TEST_BACKEND=postgres`), an `App` on a
//! `ManualClock`, one token per role, and helpers that drive the router
//! with `oneshot` and return the status with the JSON body.

#![allow(dead_code)]

#[path = "../../../../tests-support/test_db.rs"]
mod test_db;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use deploy_safety_app::{App, AppSettings, CheckpointSettings, Clock, ManualClock};
use deploy_safety_core::{CheckpointKey, Role, Timestamp};
use deploy_safety_server::{HttpSettings, router};
use deploy_safety_store::Store;
use http_body_util::BodyExt;
use serde_json::Value;
pub use test_db::TestDb;
use tower::ServiceExt;

/// Every API path lives under this prefix (except `/metrics`).
pub const API: &str = "/api/deploy-safety";

/// The instant every test starts at: 2026-01-01T00:00:00Z.
pub const START: Timestamp = Timestamp::from_unix_millis(1_767_225_600_000);

/// One token per role; principal names are the role names (as in the runbook's examples), plus a
/// second eng-lead to show that one eng-lead cannot revoke another's override.
#[derive(Debug)]
pub struct Tokens {
    pub security: String,
    pub eng_lead: String,
    pub eng_lead_2: String,
    pub oncall: String,
    pub developer: String,
}

/// The checkpoint settings every harness has unless a test gives its own: a fixed key (so
/// signatures are reproducible), every minute, no file.
pub fn test_checkpoints() -> CheckpointSettings {
    CheckpointSettings {
        key: CheckpointKey::from_secret(&[42; 32]),
        interval: std::time::Duration::from_secs(60),
        file: None,
    }
}

/// One test's world.
#[derive(Debug)]
pub struct Harness {
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub router: Router,
    pub tokens: Tokens,
    /// Last, so the store is closed before the database is dropped.
    pub db: TestDb,
}

/// The answer to one request.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::with_settings(HttpSettings::default()).await
    }

    pub async fn with_settings(http: HttpSettings) -> Harness {
        Harness::with_app_settings(http, AppSettings::default()).await
    }

    /// As [`Harness::with_settings`], with the use cases' settings too (e.g. HTTP release
    /// gates).
    pub async fn with_app_settings(http: HttpSettings, settings: AppSettings) -> Harness {
        Harness::on_database(TestDb::new(), http, settings).await
    }

    /// As [`Harness::with_app_settings`], on a database the test chose (e.g.
    /// [`TestDb::postgres`] for a test that needs PostgreSQL whatever the run's backend).
    pub async fn on_database(db: TestDb, http: HttpSettings, mut settings: AppSettings) -> Harness {
        if settings.checkpoints.is_none() {
            settings.checkpoints = Some(test_checkpoints());
        }
        let url = db.url();
        // Off the async threads: the PostgreSQL client blocks.
        let store = std::thread::spawn(move || Store::open(&url))
            .join()
            .expect("the store-opening thread panicked")
            .expect("open the store");
        let clock = Arc::new(ManualClock::new(START));
        let app = App::new(store, clock.clone(), settings);
        let token = |name: &'static str, role: Role| {
            let app = app.clone();
            async move {
                app.create_token(name, role, "test")
                    .await
                    .expect("create a token")
                    .token
            }
        };
        let tokens = Tokens {
            security: token("security-team", Role::SecurityTeam).await,
            eng_lead: token("eng-lead", Role::EngLead).await,
            eng_lead_2: token("eng-lead-2", Role::EngLead).await,
            oncall: token("oncall-lead", Role::OncallLead).await,
            developer: token("developer", Role::Developer).await,
        };
        let router = router(app.clone(), &http);
        // As `serve` does: the built-in database probe exists and has been checked once.
        app.sync_probes(Vec::new())
            .await
            .expect("set up the probes");
        let harness = Harness {
            app,
            clock,
            router,
            tokens,
            db,
        };
        harness.check_due_probes().await;
        harness
    }

    /// A new static token for principal `name` with `role` (a principal beyond the harness's
    /// one per role).
    pub async fn token(&self, name: &str, role: Role) -> String {
        self.app
            .create_token(name, role, "test")
            .await
            .expect("create a token")
            .token
    }

    /// Checks every probe due now, as one tick of the engine's probe runner would.
    pub async fn check_due_probes(&self) {
        let now = self.clock.now();
        for probe in self.app.due_probes(now).await.expect("due probes") {
            let report = self.app.check_probe(&probe).await;
            self.app
                .record_probe_check(&probe, now, report)
                .await
                .expect("record a probe check");
        }
    }

    /// Sends one request. `path` is used as given; `authorization` is the header's whole value.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        send(&self.router, method, path, authorization, body).await
    }

    /// Sends one request under the API prefix with a bearer token, and returns status and JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let reply = self
            .raw(
                method,
                &format!("{API}{path}"),
                authorization.as_deref(),
                body,
            )
            .await;
        (reply.status, reply.json())
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(&body.to_string()))
            .await
    }

    pub async fn post_text(&self, path: &str, token: &str, body: &str) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// `GET /security-gate/status` as the security team, asserting 200.
    pub async fn status(&self) -> Value {
        let (status, body) = self
            .get("/security-gate/status", &self.tokens.security)
            .await;
        assert_eq!(status, StatusCode::OK, "status: {body}");
        body
    }

    /// `POST /security-gate/check` as `token`, asserting 200; returns the decision.
    pub async fn check(
        &self,
        token: &str,
        action: &str,
        environment: &str,
        release: Option<&str>,
    ) -> Value {
        let mut body = serde_json::json!({"action": action, "environment": environment});
        if let Some(release) = release {
            body["releaseId"] = Value::from(release);
        }
        let (status, decision) = self.post("/security-gate/check", token, body).await;
        assert_eq!(status, StatusCode::OK, "check: {decision}");
        decision
    }

    /// Creates an override as `token`, asserting 201; returns it.
    pub async fn create_override(&self, token: &str, body: Value) -> Value {
        let (status, created) = self.post("/security-gate/override", token, body).await;
        assert_eq!(status, StatusCode::CREATED, "create override: {created}");
        created
    }

    /// Sets the mode as the security team, asserting 200.
    pub async fn set_mode(&self, mode: &str, reason: Option<&str>) -> Value {
        let mut body = serde_json::json!({"mode": mode});
        if let Some(reason) = reason {
            body["reason"] = Value::from(reason);
        }
        let (status, answer) = self
            .post("/security-gate/mode", &self.tokens.security, body)
            .await;
        assert_eq!(status, StatusCode::OK, "set mode: {answer}");
        answer
    }

    /// Sets the threat level as the security team, asserting 200.
    pub async fn set_threat(&self, level: &str, reason: &str) -> Value {
        let (status, answer) = self
            .post(
                "/security-gate/threat-level",
                &self.tokens.security,
                serde_json::json!({"level": level, "reason": reason}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "set threat level: {answer}");
        answer
    }

    /// Every override, whatever its status (`?all=true`).
    pub async fn all_overrides(&self) -> Vec<Value> {
        let (status, body) = self
            .get("/security-gate/overrides?all=true", &self.tokens.security)
            .await;
        assert_eq!(status, StatusCode::OK, "overrides: {body}");
        body["overrides"].as_array().cloned().unwrap_or_default()
    }

    /// Audit entries matching `query` (a query string without `?`), newest first.
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/audit?{query}"), &self.tokens.developer)
            .await;
        assert_eq!(status, StatusCode::OK, "audit: {body}");
        body["entries"].as_array().cloned().unwrap_or_default()
    }
}

/// Sends one request through a clone of `router`.
pub async fn send(
    router: &Router,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> Reply {
    send_bytes(
        router,
        method,
        path,
        authorization,
        body.map(|b| b.as_bytes().to_vec()),
    )
    .await
}

/// Sends one request whose body is any bytes, UTF-8 or not.
pub async fn send_bytes(
    router: &Router,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Vec<u8>>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(authorization) = authorization {
        request = request.header(header::AUTHORIZATION, authorization);
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Body::from(body.unwrap_or_default()))
        .expect("build the request");
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router never fails");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("read the response body")
        .to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Asserts an error body: status, `error.code`, and (when given) `error.reason` and
/// `error.field`.
#[track_caller]
pub fn assert_error(
    got: &(StatusCode, Value),
    status: StatusCode,
    code: &str,
    reason: Option<&str>,
    field: Option<&str>,
) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "status of {body}");
    assert_eq!(body["error"]["code"], code, "error.code of {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error.message of {body}"
    );
    match reason {
        Some(reason) => assert_eq!(body["error"]["reason"], reason, "error.reason of {body}"),
        None => assert!(
            body["error"].get("reason").is_none(),
            "no error.reason expected in {body}"
        ),
    }
    if let Some(field) = field {
        assert_eq!(body["error"]["field"], field, "error.field of {body}");
    }
}

/// The body of an override for `action` in `environment`.
pub fn override_body(action: &str, environment: &str, ttl: i64) -> Value {
    serde_json::json!({
        "action": action,
        "environment": environment,
        "reason": "Approved in CHG-1234",
        "ttlMinutes": ttl,
    })
}

/// RFC 3339 text of the instant `minutes` after [`START`].
pub fn at_minutes(minutes: i64) -> String {
    START.plus_minutes(minutes).to_rfc3339()
}

// ---------------------------------------------------------------------------------------------
// Incidents, validations, probes
// ---------------------------------------------------------------------------------------------

impl Harness {
    /// `POST /incidents` as `token`, asserting 201; returns the incident.
    pub async fn open_incident(&self, token: &str, body: Value) -> Value {
        let (status, created) = self.post("/incidents", token, body).await;
        assert_eq!(status, StatusCode::CREATED, "open incident: {created}");
        created
    }

    /// `POST /validations/start` as the developer, asserting 201; returns the validation.
    pub async fn start_validation(&self, release: &str, environment: &str) -> Value {
        let (status, started) = self
            .post(
                "/validations/start",
                &self.tokens.developer,
                serde_json::json!({"releaseId": release, "environment": environment}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "start validation: {started}");
        started
    }

    /// `POST /validations/{id}/run` as the developer, asserting 200; returns the validation.
    pub async fn run_validation(&self, id: &str) -> Value {
        let (status, ran) = self
            .call(
                Method::POST,
                &format!("/validations/{id}/run"),
                Some(&self.tokens.developer),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "run validation: {ran}");
        ran
    }

    /// Starts and runs a validation; returns the run's outcome.
    pub async fn validate(&self, release: &str, environment: &str) -> Value {
        let started = self.start_validation(release, environment).await;
        let id = started["id"].as_str().expect("validation id").to_owned();
        self.run_validation(&id).await
    }

    /// `POST /probes` as `token`, asserting 201; returns the probe.
    pub async fn create_probe(&self, token: &str, body: Value) -> Value {
        let (status, created) = self.post("/probes", token, body).await;
        assert_eq!(status, StatusCode::CREATED, "create probe: {created}");
        created
    }
}

/// `host:port` on the loopback interface where nothing listens (a port just released).
pub async fn closed_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let address = listener.local_addr().expect("local address");
    drop(listener);
    address.to_string()
}

/// `host:port` of a TCP listener that accepts connections for as long as the test runs.
pub async fn open_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    address.to_string()
}

/// A local HTTP server to point probes and HTTP release gates at: answers every request with a
/// status that the test switches, records the paths it was asked for, and can hold its answers
/// until released.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: std::net::SocketAddr,
    shared: Arc<TargetShared>,
}

#[derive(Debug)]
struct TargetShared {
    status: std::sync::atomic::AtomicU16,
    paths: std::sync::Mutex<Vec<String>>,
    /// Requests received so far.
    hits: tokio::sync::watch::Sender<usize>,
    /// While true, answers wait.
    held: tokio::sync::watch::Sender<bool>,
}

impl Target {
    /// Starts the server; it answers `status` until told otherwise.
    pub async fn start(status: u16) -> Target {
        let shared = Arc::new(TargetShared {
            status: std::sync::atomic::AtomicU16::new(status),
            paths: std::sync::Mutex::new(Vec::new()),
            hits: tokio::sync::watch::Sender::new(0),
            held: tokio::sync::watch::Sender::new(false),
        });
        let state = Arc::clone(&shared);
        let app = Router::new().fallback(move |uri: axum::http::Uri| {
            let state = Arc::clone(&state);
            async move {
                state
                    .paths
                    .lock()
                    .expect("paths lock")
                    .push(uri.path().to_owned());
                state.hits.send_modify(|n| *n += 1);
                let mut held = state.held.subscribe();
                // An error means the sender is gone, i.e. the test is over.
                let _ = held.wait_for(|held| !*held).await;
                let code = state.status.load(std::sync::atomic::Ordering::SeqCst);
                StatusCode::from_u16(code).expect("a valid status")
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the target");
        let addr = listener.local_addr().expect("target address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Target { addr, shared }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.shared
            .status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// The paths requested so far, oldest first.
    pub fn paths(&self) -> Vec<String> {
        self.shared.paths.lock().expect("paths lock").clone()
    }

    /// From now on, answers wait until [`Target::release`].
    pub fn hold(&self) {
        self.shared.held.send_replace(true);
    }

    pub fn release(&self) {
        self.shared.held.send_replace(false);
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for_hits(&self, n: usize) {
        let mut hits = self.shared.hits.subscribe();
        hits.wait_for(|hits| *hits >= n)
            .await
            .expect("the target is running");
    }
}

/// The gates of a validation (or of one run) as `(name, status)`, in order.
pub fn gate_statuses(view: &Value) -> Vec<(String, String)> {
    view["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .map(|g| {
            (
                g["name"].as_str().expect("gate name").to_owned(),
                g["status"].as_str().expect("gate status").to_owned(),
            )
        })
        .collect()
}

/// The gate called `name` of a validation (or of one run).
#[track_caller]
pub fn gate<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no gate `{name}` in {view}"))
}

/// The built-in release gates, in the order they run and are shown.
pub const BUILT_IN_GATES: [&str; 6] = [
    "security-mode",
    "threat-level",
    "health",
    "incidents",
    "environment-parity",
    "freeze",
];

// ---------------------------------------------------------------------------------------------
// Canaries
// ---------------------------------------------------------------------------------------------

impl Harness {
    /// Evaluates every canary due now, as one tick of the engine's canary runner would (the
    /// in-process harness runs no engine); returns each canary's id and what its step did.
    pub async fn step_due_canaries(&self) -> Vec<(String, Option<deploy_safety_core::StepAction>)> {
        let now = self.clock.now();
        let mut done = Vec::new();
        for canary in self.app.due_canaries(now).await.expect("due canaries") {
            let Some(scheduled) = canary.next_step_at else {
                continue;
            };
            let action = self
                .app
                .step_canary(&canary, scheduled)
                .await
                .expect("step a canary");
            done.push((canary.id.clone(), action));
        }
        done
    }

    /// Evaluates every soak due now, as one tick of the engine's soak runner would.
    pub async fn evaluate_due_soaks(&self) -> usize {
        let now = self.clock.now();
        let mut recorded = 0;
        for soak in self.app.due_soaks(now).await.expect("due soaks") {
            let Some(scheduled) = soak.next_evaluation_at else {
                continue;
            };
            recorded += self
                .app
                .evaluate_soak(&soak, scheduled)
                .await
                .expect("evaluate a soak")
                .len();
        }
        recorded
    }
}
