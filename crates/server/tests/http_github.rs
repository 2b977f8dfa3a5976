//! GitHub deployment protection rules over HTTP (SPEC §17): GitHub's signed
//! `deployment_protection_rule` webhook goes in through the router, exactly as GitHub sends it;
//! the answers go out to a fake GitHub API, a real HTTP server on 127.0.0.1 that checks the
//! app's RS256 JWT with the app's public key before it issues an installation token, checks
//! that token on each callback, records every callback's body, and can fail callbacks with 500.
//!
//! The RSA key pair is made fresh by the `openssl` command line. Nothing sleeps: deliveries and
//! re-decisions are driven by the engine's single steps (`DeliveryWorker::tick`,
//! `GithubWatcher::tick`), each attempt awaited, and the manual clock is moved past backoffs.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::{Harness, Target, assert_error, override_body, test_checkpoints};
use deploy_safety_app::{
    App, AppSettings, Clock, GithubAppKey, GithubSettings, HttpGate, ManualClock, retry_delay_ms,
};
use deploy_safety_core::signature::signature_header;
use deploy_safety_core::{Action, Environment, StatusRange};
use deploy_safety_engine::{DeliveryWorker, GithubWatcher};
use deploy_safety_server::{HttpSettings, router as make_router};
use deploy_safety_store::{OutboxEntry, OutboxKind, Store};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tower::ServiceExt;

const APP_ID: &str = "424242";
const WEBHOOK_SECRET: &str = "ghwh-test-4f1c2a9e7d03b8c5";
const INSTALLATION: u64 = 5_556_667;
/// The commit being deployed: the release.
const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";
const REPOSITORY: &str = "acme/payments";
const WEBHOOK: &str = "/api/deploy-safety/integrations/github/deployment-protection-rule";
const AUDIT_ACTION: &str = "integration.github.deployment-protection-rule";
const EVENT: &str = "deployment_protection_rule";

// ---------------------------------------------------------------------------------------------
// Keys: a fresh 2048-bit RSA pair from the openssl command line
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct KeyPair {
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`), the form GitHub's download has.
    private_pkcs1: Vec<u8>,
    /// PKCS#8 (`BEGIN PRIVATE KEY`), what `openssl genpkey` writes.
    private_pkcs8: Vec<u8>,
    public: Vec<u8>,
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let output = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run the openssl command line (is it installed?)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn generate_key_pair() -> KeyPair {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "key.pem",
        ],
        dir.path(),
    );
    openssl(
        &["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"],
        dir.path(),
    );
    openssl(
        &["pkey", "-in", "key.pem", "-traditional", "-out", "rsa.pem"],
        dir.path(),
    );
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let pair = KeyPair {
        private_pkcs1: read("rsa.pem"),
        private_pkcs8: read("key.pem"),
        public: read("pub.pem"),
    };
    assert!(
        String::from_utf8_lossy(&pair.private_pkcs1).contains("BEGIN RSA PRIVATE KEY"),
        "PKCS#1 expected"
    );
    assert!(
        String::from_utf8_lossy(&pair.private_pkcs8).contains("BEGIN PRIVATE KEY"),
        "PKCS#8 expected"
    );
    pair
}

/// The app's key pair (made once per test binary: key generation is slow).
fn app_keys() -> &'static KeyPair {
    static KEYS: OnceLock<KeyPair> = OnceLock::new();
    KEYS.get_or_init(generate_key_pair)
}

/// Another key pair: a private key GitHub does not know for the app.
fn other_keys() -> &'static KeyPair {
    static KEYS: OnceLock<KeyPair> = OnceLock::new();
    KEYS.get_or_init(generate_key_pair)
}

// ---------------------------------------------------------------------------------------------
// The fake GitHub API
// ---------------------------------------------------------------------------------------------

/// One callback GitHub received at a run's `deployment_protection_rule`.
#[derive(Clone, Debug)]
struct Callback {
    path: String,
    /// The `Authorization` header, whole.
    authorization: Option<String>,
    /// The installation the bearer token was issued for, if it was one we issued.
    token_installation: Option<u64>,
    api_version: Option<String>,
    accept: Option<String>,
    user_agent: Option<String>,
    /// What the fake answered.
    status: u16,
    body: Value,
}

#[derive(Debug)]
struct Issued {
    installation: u64,
    token: String,
}

#[derive(Debug)]
struct FakeShared {
    decoding: DecodingKey,
    /// GitHub's clock: the test's manual clock, once the harness exists.
    clock: Mutex<Option<Arc<ManualClock>>>,
    issued: Mutex<Vec<Issued>>,
    /// Why each refused token request was refused.
    refused_jwts: Mutex<Vec<String>>,
    callbacks: Mutex<Vec<Callback>>,
    /// Callbacks still to fail with 500.
    fail_next: AtomicUsize,
    /// Callback requests received so far.
    seen: tokio::sync::watch::Sender<usize>,
    tokens_made: AtomicU64,
}

#[derive(Clone, Debug)]
struct FakeGithub {
    base: String,
    shared: Arc<FakeShared>,
}

#[derive(Debug, serde::Deserialize)]
struct AppClaims {
    iat: i64,
    exp: i64,
    iss: String,
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    header_text(headers, "authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_owned))
}

impl FakeShared {
    /// GitHub's check of an app JWT: RS256 only, signed by the app's key, issued by the app,
    /// living at most ten minutes, and valid now on GitHub's (the manual) clock.
    fn verify_app_jwt(&self, jwt: &str) -> Result<AppClaims, String> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        validation.set_issuer(&[APP_ID]);
        let data = jsonwebtoken::decode::<AppClaims>(jwt, &self.decoding, &validation)
            .map_err(|e| format!("cannot verify the JWT: {e}"))?;
        if data.header.alg != Algorithm::RS256 {
            return Err(format!("alg {:?}", data.header.alg));
        }
        let claims = data.claims;
        if claims.iss != APP_ID {
            return Err(format!("iss {}", claims.iss));
        }
        if claims.exp <= claims.iat || claims.exp - claims.iat > 600 {
            return Err(format!(
                "exp {} - iat {} is not within (0, 600] seconds",
                claims.exp, claims.iat
            ));
        }
        if let Some(clock) = self.clock.lock().unwrap().as_ref() {
            let now = clock.now().unix_millis() / 1_000;
            if claims.iat > now || claims.exp <= now {
                return Err(format!(
                    "not valid at {now}: iat {} exp {}",
                    claims.iat, claims.exp
                ));
            }
        }
        Ok(claims)
    }
}

async fn access_tokens(
    State(shared): State<Arc<FakeShared>>,
    Path(installation): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let verified = bearer(&headers)
        .ok_or_else(|| "no bearer JWT".to_owned())
        .and_then(|jwt| shared.verify_app_jwt(&jwt));
    if let Err(problem) = verified {
        shared.refused_jwts.lock().unwrap().push(problem);
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "A JSON web token could not be decoded",
                              "documentation_url": "https://docs.github.com/rest"})),
        )
            .into_response();
    }
    let n = shared.tokens_made.fetch_add(1, Ordering::SeqCst);
    let token = format!("ghs_{installation}x{n:04}FakeInstallationToken");
    let expires_at = shared.clock.lock().unwrap().as_ref().map_or_else(
        || "2026-01-01T01:00:00Z".to_owned(),
        |c| c.now().plus_minutes(60).to_rfc3339(),
    );
    shared.issued.lock().unwrap().push(Issued {
        installation,
        token: token.clone(),
    });
    (
        StatusCode::CREATED,
        axum::Json(json!({"token": token, "expires_at": expires_at,
                          "permissions": {"actions": "read", "deployments": "write"},
                          "repository_selection": "selected"})),
    )
        .into_response()
}

async fn protection_rule_callback(
    State(shared): State<Arc<FakeShared>>,
    Path((owner, repo, run)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let token_installation = bearer(&headers).and_then(|token| {
        shared
            .issued
            .lock()
            .unwrap()
            .iter()
            .find(|i| i.token == token)
            .map(|i| i.installation)
    });
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = if token_installation.is_none() {
        StatusCode::UNAUTHORIZED
    } else if shared
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if body.is_object() {
        // GitHub's "Review custom deployment protection rules for a workflow run": 204.
        StatusCode::NO_CONTENT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    shared.callbacks.lock().unwrap().push(Callback {
        path: format!("/repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule"),
        authorization: header_text(&headers, "authorization"),
        token_installation,
        api_version: header_text(&headers, "x-github-api-version"),
        accept: header_text(&headers, "accept"),
        user_agent: header_text(&headers, "user-agent"),
        status: status.as_u16(),
        body,
    });
    shared.seen.send_modify(|n| *n += 1);
    status
}

impl FakeGithub {
    /// Starts a fake GitHub API that knows the app by its public key.
    async fn start(public_pem: &[u8]) -> FakeGithub {
        let shared = Arc::new(FakeShared {
            decoding: DecodingKey::from_rsa_pem(public_pem).unwrap(),
            clock: Mutex::new(None),
            issued: Mutex::new(Vec::new()),
            refused_jwts: Mutex::new(Vec::new()),
            callbacks: Mutex::new(Vec::new()),
            fail_next: AtomicUsize::new(0),
            seen: tokio::sync::watch::Sender::new(0),
            tokens_made: AtomicU64::new(0),
        });
        let app = Router::new()
            .route(
                "/app/installations/{id}/access_tokens",
                axum::routing::post(access_tokens),
            )
            .route(
                "/repos/{owner}/{repo}/actions/runs/{run}/deployment_protection_rule",
                axum::routing::post(protection_rule_callback),
            )
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGithub {
            base: format!("http://{addr}"),
            shared,
        }
    }

    fn use_clock(&self, clock: Arc<ManualClock>) {
        *self.shared.clock.lock().unwrap() = Some(clock);
    }

    fn callback_url(&self, run: u64) -> String {
        format!(
            "{}/repos/{REPOSITORY}/actions/runs/{run}/deployment_protection_rule",
            self.base
        )
    }

    /// Every callback request, answered or failed, oldest first.
    fn callbacks(&self) -> Vec<Callback> {
        self.shared.callbacks.lock().unwrap().clone()
    }

    /// The callbacks GitHub took (2xx).
    fn taken(&self) -> Vec<Callback> {
        self.callbacks()
            .into_iter()
            .filter(|c| (200..300).contains(&c.status))
            .collect()
    }

    fn fail_next(&self, n: usize) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    fn tokens_issued(&self) -> usize {
        self.shared.issued.lock().unwrap().len()
    }

    fn refused_jwts(&self) -> Vec<String> {
        self.shared.refused_jwts.lock().unwrap().clone()
    }

    /// Waits (with a deadline) until at least `n` callback requests have arrived.
    async fn wait_for_callbacks(&self, n: usize) {
        let mut seen = self.shared.seen.subscribe();
        tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|seen| *seen >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the fake GitHub got {} callbacks, {n} expected",
                    self.callbacks().len()
                )
            })
            .unwrap();
    }
}

/// A callback that was taken: checks the token it carried and GitHub's headers, returns the
/// body.
#[track_caller]
fn assert_authorized(callback: &Callback) {
    assert_eq!(
        callback.token_installation,
        Some(INSTALLATION),
        "the callback carries the installation token: {callback:?}"
    );
    assert!(
        callback
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer ghs_")),
        "{callback:?}"
    );
    assert_eq!(callback.api_version.as_deref(), Some("2022-11-28"));
    assert_eq!(
        callback.accept.as_deref(),
        Some("application/vnd.github+json")
    );
    assert!(
        callback
            .user_agent
            .as_deref()
            .is_some_and(|u| !u.is_empty()),
        "GitHub refuses requests without a User-Agent"
    );
}

/// The JSON keys of `body`, sorted.
fn keys(body: &Value) -> Vec<String> {
    body.as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>()
}

// ---------------------------------------------------------------------------------------------
// The world of one test
// ---------------------------------------------------------------------------------------------

fn github_settings(api_url: &str, private_pem: &[u8]) -> GithubSettings {
    GithubSettings {
        app_id: APP_ID.to_owned(),
        private_key: GithubAppKey::from_pem(private_pem).unwrap(),
        api_url: api_url.to_owned(),
        webhook_secret: WEBHOOK_SECRET.to_owned(),
        action: Action::CanaryStart,
        environments: BTreeMap::from([("prod".to_owned(), Environment::PRODUCTION)]),
        timeout: Duration::from_secs(5),
    }
}

struct World {
    h: Harness,
    fake: FakeGithub,
    /// The settings the app was made with (a restarted app gets the same).
    settings: AppSettings,
}

async fn world() -> World {
    world_with(|_| {}).await
}

/// A harness whose app is the GitHub App of a fake GitHub, with `tweak` applied to the settings.
async fn world_with(tweak: impl FnOnce(&mut AppSettings)) -> World {
    let fake = FakeGithub::start(&app_keys().public).await;
    let mut settings = AppSettings {
        github: Some(github_settings(&fake.base, &app_keys().private_pkcs1)),
        checkpoints: Some(test_checkpoints()),
        ..AppSettings::default()
    };
    tweak(&mut settings);
    let h = Harness::with_app_settings(HttpSettings::default(), settings.clone()).await;
    fake.use_clock(Arc::clone(&h.clock));
    World { h, fake, settings }
}

/// GitHub's `deployment_protection_rule` payload (action `requested`) for a deployment of
/// [`SHA`] of acme/payments to the GitHub environment `environment`, from workflow run `run`.
fn payload(fake: &FakeGithub, environment: &str, run: u64) -> Value {
    let api = &fake.base;
    json!({
        "action": "requested",
        "environment": environment,
        "event": "push",
        "deployment_callback_url": fake.callback_url(run),
        "deployment": {
            "url": format!("{api}/repos/{REPOSITORY}/deployments/{}", 1_000 + run),
            "id": 1_000 + run,
            "node_id": "DE_kwDOJ5c4xM5xY0aB",
            "task": "deploy",
            "original_environment": environment,
            "environment": environment,
            "description": null,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "statuses_url": format!("{api}/repos/{REPOSITORY}/deployments/{}/statuses", 1_000 + run),
            "repository_url": format!("{api}/repos/{REPOSITORY}"),
            "creator": {"login": "github-actions[bot]", "id": 41_898_282, "type": "Bot"},
            "sha": SHA,
            "ref": "main",
            "payload": {},
            "transient_environment": false,
            "production_environment": environment == "prod",
            "performed_via_github_app": null
        },
        "pull_requests": [],
        "repository": {
            "id": 681_234_567,
            "node_id": "R_kgDOKJ5c4w",
            "name": "payments",
            "full_name": REPOSITORY,
            "private": true,
            "owner": {"login": "acme", "id": 9_919, "type": "Organization"},
            "html_url": "https://github.com/acme/payments",
            "default_branch": "main"
        },
        "organization": {"login": "acme", "id": 9_919, "node_id": "O_kgDOAAAmvw"},
        "installation": {"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNTU1NjY2Nw=="},
        "sender": {"login": "octocat", "id": 583_231, "type": "User"}
    })
}

static DELIVERIES: AtomicU64 = AtomicU64::new(1);

/// A fresh `X-GitHub-Delivery` (a UUID, as GitHub's are).
fn delivery_id() -> String {
    let n = DELIVERIES.fetch_add(1, Ordering::SeqCst);
    format!("72d3162e-cc78-11e3-81ab-{n:012x}")
}

/// Sends one webhook delivery through the router as GitHub does: the raw body, the event
/// name, the delivery id and (when given) the signature header.
async fn send_webhook(
    router: &Router,
    event: &str,
    delivery: &str,
    signature: Option<&str>,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(WEBHOOK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "GitHub-Hookshot/3f4a9c1")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-github-hook-id", "470186322")
        .header("x-github-hook-installation-target-type", "integration")
        .header("x-github-hook-installation-target-id", APP_ID);
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_vec())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Sends `body` signed with the webhook secret, as event `event`.
async fn send_signed(router: &Router, event: &str, body: &Value) -> (StatusCode, Value) {
    let raw = body.to_string().into_bytes();
    let signature = signature_header(WEBHOOK_SECRET, &raw);
    send_webhook(router, event, &delivery_id(), Some(&signature), &raw).await
}

/// A `requested` event for `environment` from run `run`, asserting 202; returns the request.
async fn request_deployment(w: &World, environment: &str, run: u64) -> Value {
    let (status, receipt) =
        send_signed(&w.h.router, EVENT, &payload(&w.fake, environment, run)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(receipt["accepted"], true, "{receipt}");
    assert!(
        receipt["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{receipt}"
    );
    receipt["request"].clone()
}

/// One tick of the delivery worker at the app's `now`, every attempt awaited; returns how many
/// attempts were made.
async fn deliver_due(app: &App) -> usize {
    let handles = DeliveryWorker::new(app.clone(), 4)
        .tick(app.clock().now())
        .await
        .unwrap();
    let started = handles.len();
    for handle in handles {
        handle.await.unwrap();
    }
    started
}

/// The GitHub callbacks in the outbox for `target` (`comment` or `answer`).
async fn outbox(app: &App, target: &str) -> Vec<OutboxEntry> {
    app.deliveries(OutboxKind::GithubCallback, target)
        .await
        .unwrap()
}

async fn pending(h: &Harness) -> Vec<Value> {
    let (status, listed) = h
        .get("/integrations/github/pending", &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["truncated"], false, "{listed}");
    listed["requests"].as_array().unwrap().clone()
}

async fn github_audit(h: &Harness) -> Vec<Value> {
    h.audit(&format!("action={AUDIT_ACTION}&limit=100")).await
}

fn comment_of(callback: &Callback) -> &str {
    callback.body["comment"].as_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The app's JWT, checked as GitHub checks it
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_app_jwt_is_rs256_by_the_app_key_and_lives_nine_minutes_from_a_minute_ago() {
    let fake = FakeGithub::start(&app_keys().public).await;
    let clock = Arc::new(ManualClock::new(common::START));
    fake.use_clock(Arc::clone(&clock));
    let now = common::START.unix_millis() / 1_000;
    for pem in [&app_keys().private_pkcs1, &app_keys().private_pkcs8] {
        let key = GithubAppKey::from_pem(pem).unwrap();
        let jwt = key.app_jwt(APP_ID, clock.now()).unwrap();
        let claims = fake.shared.verify_app_jwt(&jwt).unwrap();
        assert_eq!(claims.iss, APP_ID);
        assert_eq!(claims.iat, now - 60);
        assert_eq!(claims.exp, now + 540);
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        // Signed for another app id, or by another key: GitHub refuses it.
        let other_app = key.app_jwt("1", clock.now()).unwrap();
        assert!(fake.shared.verify_app_jwt(&other_app).is_err());
    }
    let stranger = GithubAppKey::from_pem(&other_keys().private_pkcs1).unwrap();
    let forged = stranger.app_jwt(APP_ID, clock.now()).unwrap();
    assert!(fake.shared.verify_app_jwt(&forged).is_err());
    // A JWT made 20 minutes ago has expired by GitHub's clock.
    let key = GithubAppKey::from_pem(&app_keys().private_pkcs1).unwrap();
    let old = key.app_jwt(APP_ID, clock.now()).unwrap();
    clock.advance_minutes(20);
    assert!(fake.shared.verify_app_jwt(&old).is_err());
    assert!(GithubAppKey::from_pem(&app_keys().public).is_err());
    assert!(GithubAppKey::from_pem(b"not a key").is_err());
}

// ---------------------------------------------------------------------------------------------
// 1. Allowed: approved
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_allowed_deployment_is_approved_with_the_installation_token() {
    let w = world().await;
    let h = &w.h;

    let request = request_deployment(&w, "staging", 42).await;
    let id = request["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ghr_"), "{request}");
    assert_eq!(request["state"], "approved", "{request}");
    assert_eq!(request["githubEnvironment"], "staging");
    assert_eq!(request["environment"], "staging");
    assert_eq!(request["service"], REPOSITORY);
    assert_eq!(request["releaseId"], SHA);
    assert_eq!(request["action"], "deploy.canary.start");
    assert_eq!(request["installationId"], INSTALLATION);
    assert_eq!(request["callbackUrl"], w.fake.callback_url(42));
    assert_eq!(request["sender"], "octocat");
    assert_eq!(request["commented"], false);
    assert_eq!(request["decidedAt"], common::START.to_rfc3339());
    // Answered at once with 202; the callback leaves through the outbox.
    assert!(w.fake.callbacks().is_empty());
    assert!(pending(h).await.is_empty());

    assert_eq!(deliver_due(&h.app).await, 1);
    w.fake.wait_for_callbacks(1).await;
    let callbacks = w.fake.callbacks();
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    let callback = &callbacks[0];
    assert_eq!(callback.status, 204);
    assert_eq!(
        callback.path,
        "/repos/acme/payments/actions/runs/42/deployment_protection_rule"
    );
    assert_authorized(callback);
    assert_eq!(
        keys(&callback.body),
        ["comment", "environment_name", "state"]
    );
    assert_eq!(callback.body["environment_name"], "staging");
    assert_eq!(callback.body["state"], "approved");
    let comment = comment_of(callback);
    assert!(comment.contains("approved"), "{comment}");
    assert!(
        comment.contains(&format!("audit seq {}", request["auditSeq"])),
        "{comment}"
    );
    // One token, for one verified JWT.
    assert_eq!(w.fake.tokens_issued(), 1);
    assert!(
        w.fake.refused_jwts().is_empty(),
        "{:?}",
        w.fake.refused_jwts()
    );

    // Audited once, as GitHub's decision, allowed.
    let audit = github_audit(h).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    let entry = &audit[0];
    assert_eq!(entry["seq"], request["auditSeq"]);
    assert_eq!(entry["principal"], "github");
    assert_eq!(entry["decision"], "allowed", "{entry}");
    assert_eq!(entry["environment"], "staging");
    assert_eq!(entry["details"]["requestId"], id.as_str(), "{entry}");
    assert_eq!(entry["details"]["githubEnvironment"], "staging");
    assert_eq!(entry["details"]["sender"], "octocat");
    assert_eq!(entry["details"]["answer"], "allow", "{entry}");

    // Delivered once: done after one attempt, never again.
    let answers = outbox(&h.app, "answer").await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].attempts, 1);
    assert!(answers[0].done_at.is_some());
    assert_eq!(answers[0].github_request_id.as_deref(), Some(id.as_str()));
    assert!(outbox(&h.app, "comment").await.is_empty());
    h.clock.advance_minutes(10);
    assert_eq!(deliver_due(&h.app).await, 0);
    assert_eq!(
        GithubWatcher::new(h.app.clone())
            .tick(h.clock.now())
            .await
            .unwrap(),
        0
    );
    assert_eq!(deliver_due(&h.app).await, 0);
    assert_eq!(w.fake.callbacks().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 2. A verdict against the release: rejected
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_release_whose_validation_failed_is_rejected_naming_the_reason() {
    let smoke = Target::start(503).await;
    let url = smoke.url("/smoke/{releaseId}");
    let w = world_with(move |settings| {
        settings.http_gates = vec![HttpGate {
            name: "smoke-tests".to_owned(),
            url,
            method: "GET".to_owned(),
            expected_status: StatusRange::SUCCESS,
            timeout: Duration::from_secs(5),
        }];
    })
    .await;
    let h = &w.h;
    let (status, started) = h
        .post(
            "/validations/start",
            &h.tokens.developer,
            json!({"releaseId": SHA, "environment": "staging", "service": REPOSITORY}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let validation = started["id"].as_str().unwrap().to_owned();
    let ran = h.run_validation(&validation).await;
    assert_eq!(ran["status"], "failed", "{ran}");
    assert_eq!(smoke.paths(), [format!("/smoke/{SHA}")]);

    let request = request_deployment(&w, "staging", 42).await;
    assert_eq!(request["state"], "rejected", "{request}");
    assert_eq!(request["reason"], "VALIDATION_FAILED", "{request}");

    assert_eq!(deliver_due(&h.app).await, 1);
    let callbacks = w.fake.taken();
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    assert_authorized(&callbacks[0]);
    assert_eq!(callbacks[0].body["environment_name"], "staging");
    assert_eq!(callbacks[0].body["state"], "rejected");
    let comment = comment_of(&callbacks[0]);
    assert!(comment.contains("VALIDATION_FAILED"), "{comment}");
    assert!(
        comment.contains(&validation),
        "names the validation: {comment}"
    );

    let audit = github_audit(h).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["decision"], "denied");
    assert_eq!(audit[0]["reason"], "VALIDATION_FAILED");
    assert_eq!(audit[0]["details"]["answer"], "deny", "{}", audit[0]);
    assert!(pending(h).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 3. Wait, one status comment, then approved once an override exists
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_wait_comments_once_and_is_approved_when_an_override_is_created() {
    let w = world().await;
    let h = &w.h;
    let watcher = GithubWatcher::new(h.app.clone());

    // GitHub's `prod` is production ([integrations.github.environments]).
    let request = request_deployment(&w, "prod", 7).await;
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(request["state"], "pending", "{request}");
    assert_eq!(request["githubEnvironment"], "prod");
    assert_eq!(request["environment"], "production");
    assert_eq!(request["commented"], true, "{request}");
    assert_eq!(
        request["nextDecisionAt"],
        common::START.plus_minutes(1).to_rfc3339()
    );
    assert_eq!(request["reason"], "OVERRIDE_REQUIRED", "{request}");
    let reason = "OVERRIDE_REQUIRED";

    assert_eq!(deliver_due(&h.app).await, 1);
    let callbacks = w.fake.taken();
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    assert_authorized(&callbacks[0]);
    assert_eq!(
        keys(&callbacks[0].body),
        ["comment", "environment_name"],
        "a status comment has no state: {:?}",
        callbacks[0].body
    );
    assert_eq!(callbacks[0].body["environment_name"], "prod");
    let comment = comment_of(&callbacks[0]);
    assert!(comment.contains("waiting"), "{comment}");
    assert!(comment.contains(reason), "{comment}");

    let listed = pending(h).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["state"], "pending");

    // Decided again every minute (and on the first look, everything): still waiting, and
    // no second comment.
    for _ in 0..3 {
        h.clock.advance_millis(61_000);
        assert_eq!(watcher.tick(h.clock.now()).await.unwrap(), 0);
        assert_eq!(deliver_due(&h.app).await, 0);
    }
    assert_eq!(w.fake.callbacks().len(), 1);
    assert_eq!(outbox(&h.app, "comment").await.len(), 1);
    let audit = github_audit(h).await;
    assert_eq!(
        audit.len(),
        1,
        "a wait is audited when its reason changes: {audit:?}"
    );
    assert_eq!(audit[0]["decision"], "denied");
    assert_eq!(audit[0]["reason"], reason);
    assert_eq!(audit[0]["details"]["answer"], "wait", "{}", audit[0]);
    let listed = pending(h).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]["nextDecisionAt"],
        h.clock.now().plus_minutes(1).to_rfc3339()
    );

    // The override: the gate's state changed, so the next look decides it again.
    let created = h
        .create_override(
            &h.tokens.eng_lead,
            override_body("deploy.canary.start", "production", 60),
        )
        .await;
    let override_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(watcher.tick(h.clock.now()).await.unwrap(), 1);
    assert!(pending(h).await.is_empty());
    assert_eq!(deliver_due(&h.app).await, 1);
    let callbacks = w.fake.taken();
    assert_eq!(callbacks.len(), 2, "{callbacks:?}");
    let answer = &callbacks[1];
    assert_authorized(answer);
    assert_eq!(keys(&answer.body), ["comment", "environment_name", "state"]);
    assert_eq!(answer.body["environment_name"], "prod");
    assert_eq!(answer.body["state"], "approved");

    // The decision is audited as allowed by the override, and the override's use recorded.
    let audit = github_audit(h).await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(audit[0]["decision"], "allowed", "{}", audit[0]);
    assert_eq!(audit[0]["environment"], "production");
    assert_eq!(audit[0]["details"]["requestId"], id.as_str());
    let uses = h.audit("action=override.use").await;
    assert_eq!(uses.len(), 1, "{uses:?}");
    assert_eq!(uses[0]["principal"], "github");
    assert_eq!(uses[0]["details"]["overrideId"], override_id.as_str());
    assert_eq!(uses[0]["details"]["by"], AUDIT_ACTION);
    assert_eq!(uses[0]["details"]["releaseId"], SHA);

    // Nothing more, ever.
    for _ in 0..2 {
        h.clock.advance_millis(61_000);
        assert_eq!(watcher.tick(h.clock.now()).await.unwrap(), 0);
        assert_eq!(deliver_due(&h.app).await, 0);
    }
    assert_eq!(w.fake.callbacks().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 4. A callback that fails twice is retried with backoff and delivered once
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_callback_that_fails_twice_is_retried_with_backoff_and_delivered_once() {
    let w = world().await;
    let h = &w.h;
    w.fake.fail_next(2);
    let request = request_deployment(&w, "staging", 42).await;
    assert_eq!(request["state"], "approved", "{request}");

    // Attempt 1: GitHub answers 500.
    assert_eq!(deliver_due(&h.app).await, 1);
    let entry = &outbox(&h.app, "answer").await[0];
    assert_eq!(entry.attempts, 1);
    assert!(entry.done_at.is_none() && entry.failed_at.is_none());
    assert!(
        entry
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("500")),
        "{entry:?}"
    );
    assert_eq!(
        entry.next_attempt_at,
        Some(h.clock.now().plus_millis(retry_delay_ms(1)))
    );
    // Not due before the backoff has passed.
    h.clock.advance_millis(retry_delay_ms(1) - 1);
    assert_eq!(deliver_due(&h.app).await, 0);

    // Attempt 2: 500 again.
    h.clock.advance_millis(1);
    assert_eq!(deliver_due(&h.app).await, 1);
    let entry = &outbox(&h.app, "answer").await[0];
    assert_eq!(entry.attempts, 2);
    assert_eq!(
        entry.next_attempt_at,
        Some(h.clock.now().plus_millis(retry_delay_ms(2)))
    );
    assert_eq!(deliver_due(&h.app).await, 0);

    // Attempt 3: taken.
    h.clock.advance_millis(retry_delay_ms(2));
    assert_eq!(deliver_due(&h.app).await, 1);
    let entries = outbox(&h.app, "answer").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].attempts, 3);
    assert!(entries[0].done_at.is_some(), "{:?}", entries[0]);
    assert!(entries[0].failed_at.is_none());
    assert!(entries[0].next_attempt_at.is_none());

    let statuses: Vec<u16> = w.fake.callbacks().iter().map(|c| c.status).collect();
    assert_eq!(statuses, [500, 500, 204]);
    for callback in w.fake.callbacks() {
        assert_authorized(&callback);
        assert_eq!(callback.body["state"], "approved");
        assert_eq!(callback.body["environment_name"], "staging");
    }
    let taken = w.fake.taken();
    assert_eq!(taken.len(), 1);
    // A fresh installation token per attempt, each from a verified JWT.
    assert_eq!(w.fake.tokens_issued(), 3);
    assert!(w.fake.refused_jwts().is_empty());

    // Delivered once: never again.
    h.clock.advance_minutes(60);
    assert_eq!(deliver_due(&h.app).await, 0);
    assert_eq!(w.fake.callbacks().len(), 3);
}

#[tokio::test]
async fn a_jwt_github_does_not_accept_gets_no_token_and_the_callback_is_retried() {
    // The app signs with a key GitHub does not know for it.
    let w = world_with(|settings| {
        let github = settings.github.as_mut().unwrap();
        github.private_key = GithubAppKey::from_pem(&other_keys().private_pkcs1).unwrap();
    })
    .await;
    let h = &w.h;
    let request = request_deployment(&w, "staging", 42).await;
    assert_eq!(request["state"], "approved");
    assert_eq!(deliver_due(&h.app).await, 1);
    assert_eq!(
        w.fake.refused_jwts().len(),
        1,
        "{:?}",
        w.fake.refused_jwts()
    );
    assert_eq!(w.fake.tokens_issued(), 0);
    assert!(w.fake.callbacks().is_empty(), "no callback without a token");
    let entry = &outbox(&h.app, "answer").await[0];
    assert_eq!(entry.attempts, 1);
    assert!(entry.done_at.is_none() && entry.failed_at.is_none());
    let error = entry.last_error.as_deref().unwrap();
    assert!(
        error.contains("installation token") && error.contains("401"),
        "{error}"
    );
    assert!(entry.next_attempt_at.is_some());
}

// ---------------------------------------------------------------------------------------------
// 5. A restart while pending
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn pending_requests_survive_a_restart_and_are_answered_once() {
    let w = world().await;
    w.h.set_mode("lockdown", Some("Security incident investigation"))
        .await;

    // Run 42 waits and its comment reaches GitHub; run 43 waits with its comment still queued.
    let first = request_deployment(&w, "staging", 42).await;
    assert_eq!(first["state"], "pending", "{first}");
    assert_eq!(deliver_due(&w.h.app).await, 1);
    assert_eq!(w.fake.taken().len(), 1);
    w.h.clock.advance_millis(5_000);
    let second = request_deployment(&w, "staging", 43).await;
    assert_eq!(second["state"], "pending", "{second}");
    assert_eq!(first["reason"], "LOCKDOWN", "{first}");
    assert_eq!(second["reason"], "LOCKDOWN", "{second}");
    let reason = "LOCKDOWN";
    let delivery = delivery_id();
    let redelivered = payload(&w.fake, "staging", 42).to_string().into_bytes();

    // The restart: the app and its router are gone; a new store and app on the same database.
    let World { h, fake, settings } = w;
    let Harness {
        app,
        clock,
        router,
        tokens,
        db,
    } = h;
    drop(router);
    drop(app);
    let url = db.url();
    let store = std::thread::spawn(move || Store::open(&url))
        .join()
        .unwrap()
        .unwrap();
    let app = App::new(store, clock.clone(), settings);
    let router = make_router(app.clone(), &HttpSettings::default());
    let h = Harness {
        app,
        clock,
        router,
        tokens,
        db,
    };
    let watcher = GithubWatcher::new(h.app.clone());

    let listed = pending(&h).await;
    let ids: Vec<&Value> = listed.iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, [&first["id"], &second["id"]], "oldest first");

    // GitHub redelivers run 42's event to the new app: the same request, no second comment.
    let signature = signature_header(WEBHOOK_SECRET, &redelivered);
    let (status, receipt) =
        send_webhook(&h.router, EVENT, &delivery, Some(&signature), &redelivered).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(receipt["request"]["id"], first["id"]);
    assert_eq!(receipt["request"]["state"], "pending");

    // The new app looks again (everything, then what is due): still waiting; run 43's
    // queued comment goes out once, run 42's is not sent again.
    for _ in 0..3 {
        assert_eq!(watcher.tick(h.clock.now()).await.unwrap(), 0);
        deliver_due(&h.app).await;
        h.clock.advance_millis(61_000);
    }
    let taken = fake.taken();
    assert_eq!(taken.len(), 2, "{taken:?}");
    assert_eq!(
        taken[0].path,
        "/repos/acme/payments/actions/runs/42/deployment_protection_rule"
    );
    assert_eq!(
        taken[1].path,
        "/repos/acme/payments/actions/runs/43/deployment_protection_rule"
    );
    for comment in &taken {
        assert_authorized(comment);
        assert!(comment.body.get("state").is_none(), "{:?}", comment.body);
        assert!(comment_of(comment).contains(reason), "{:?}", comment.body);
    }
    assert_eq!(outbox(&h.app, "comment").await.len(), 2);

    // Lockdown lifted through the new app: both approved, once each.
    h.set_mode("enforce", None).await;
    assert_eq!(watcher.tick(h.clock.now()).await.unwrap(), 2);
    assert_eq!(deliver_due(&h.app).await, 2);
    let taken = fake.taken();
    assert_eq!(taken.len(), 4, "{taken:?}");
    let mut answered: Vec<(String, Value)> = taken[2..]
        .iter()
        .map(|c| {
            assert_authorized(c);
            (c.path.clone(), c.body["state"].clone())
        })
        .collect();
    answered.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        answered,
        [
            (
                "/repos/acme/payments/actions/runs/42/deployment_protection_rule".to_owned(),
                json!("approved")
            ),
            (
                "/repos/acme/payments/actions/runs/43/deployment_protection_rule".to_owned(),
                json!("approved")
            ),
        ]
    );
    assert!(pending(&h).await.is_empty());
    for _ in 0..2 {
        h.clock.advance_millis(61_000);
        assert_eq!(watcher.tick(h.clock.now()).await.unwrap(), 0);
        assert_eq!(deliver_due(&h.app).await, 0);
    }
    assert_eq!(fake.callbacks().len(), 4);
    let comments = fake
        .callbacks()
        .iter()
        .filter(|c| c.body.get("state").is_none())
        .count();
    assert_eq!(
        comments, 2,
        "one status comment per request, restart included"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Refusals and edge cases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_or_missing_signature_is_401_audited_and_stores_nothing() {
    let w = world().await;
    let h = &w.h;
    let raw = payload(&w.fake, "staging", 42).to_string().into_bytes();

    // Signed with another secret.
    let wrong = signature_header("not-the-secret", &raw);
    let delivery = delivery_id();
    let got = send_webhook(&h.router, EVENT, &delivery, Some(&wrong), &raw).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    // The right signature of another body (one byte changed).
    let mut tampered = raw.clone();
    tampered.push(b'\n');
    let of_original = signature_header(WEBHOOK_SECRET, &raw);
    let got = send_webhook(
        &h.router,
        EVENT,
        &delivery_id(),
        Some(&of_original),
        &tampered,
    )
    .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    // No signature at all.
    let missing = delivery_id();
    let got = send_webhook(&h.router, EVENT, &missing, None, &raw).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-Hub-Signature-256"),
        "{}",
        got.1
    );
    // Not even the prefix.
    let bare = signature_header(WEBHOOK_SECRET, &raw).replace("sha256=", "");
    let got = send_webhook(&h.router, EVENT, &delivery_id(), Some(&bare), &raw).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);

    let audit = github_audit(h).await;
    assert_eq!(audit.len(), 4, "{audit:?}");
    for entry in &audit {
        assert_eq!(entry["principal"], "github");
        assert_eq!(entry["decision"], "denied");
        assert_eq!(entry["reason"], "BAD_SIGNATURE", "{entry}");
    }
    // Newest first: the missing one is second newest, the wrong one oldest.
    assert_eq!(audit[1]["details"]["delivery"], missing.as_str());
    assert!(
        audit[1]["details"]["message"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{}",
        audit[1]
    );
    assert_eq!(audit[3]["details"]["delivery"], delivery.as_str());

    // Nothing stored, nothing sent.
    assert!(pending(h).await.is_empty());
    assert!(outbox(&h.app, "answer").await.is_empty());
    assert!(outbox(&h.app, "comment").await.is_empty());
    assert_eq!(deliver_due(&h.app).await, 0);
    assert!(w.fake.callbacks().is_empty());
    assert_eq!(w.fake.tokens_issued(), 0);
}

#[tokio::test]
async fn a_signed_payload_that_cannot_be_taken_is_400_naming_the_field_and_audited() {
    let w = world().await;
    let h = &w.h;

    // No `installation`.
    let mut body = payload(&w.fake, "staging", 42);
    body.as_object_mut().unwrap().remove("installation");
    let got = send_signed(&h.router, EVENT, &body).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("installation"),
    );
    let audit = github_audit(h).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["reason"], "INVALID_REQUEST");
    assert_eq!(audit[0]["decision"], "denied");
    assert_eq!(audit[0]["principal"], "github");
    assert!(
        audit[0]["details"]["message"]
            .as_str()
            .unwrap()
            .contains("installation"),
        "{}",
        audit[0]
    );

    // A callback URL elsewhere than the configured API: our installation token never goes
    // there (another host, and the same host on another port).
    for elsewhere in [
        "https://api.github.example.com/repos/acme/payments/actions/runs/42/deployment_protection_rule"
            .to_owned(),
        format!(
            "{}0/repos/acme/payments/actions/runs/42/deployment_protection_rule",
            w.fake.base
        ),
    ] {
        let mut body = payload(&w.fake, "staging", 42);
        body["deployment_callback_url"] = json!(elsewhere);
        let got = send_signed(&h.router, EVENT, &body).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some("deployment_callback_url"),
        );
    }

    // Other missing parts, each named.
    for field in [
        "environment",
        "deployment",
        "repository",
        "deployment_callback_url",
    ] {
        let mut body = payload(&w.fake, "staging", 42);
        body.as_object_mut().unwrap().remove(field);
        let got = send_signed(&h.router, EVENT, &body).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }

    // Signed, but not JSON.
    let raw = b"{\"action\": \"requested\",".to_vec();
    let signature = signature_header(WEBHOOK_SECRET, &raw);
    let (status, body) =
        send_webhook(&h.router, EVENT, &delivery_id(), Some(&signature), &raw).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");

    let audit = github_audit(h).await;
    assert_eq!(audit.len(), 8, "every refusal audited: {audit:?}");
    assert!(
        audit.iter().all(|e| e["reason"] == "INVALID_REQUEST"),
        "{audit:?}"
    );
    assert!(pending(h).await.is_empty());
    assert_eq!(deliver_due(&h.app).await, 0);
    assert!(w.fake.callbacks().is_empty());
}

#[tokio::test]
async fn an_unmapped_github_environment_is_rejected_naming_the_setting() {
    let w = world().await;
    let h = &w.h;
    let request = request_deployment(&w, "qa", 42).await;
    assert_eq!(request["state"], "rejected", "{request}");
    assert_eq!(request["githubEnvironment"], "qa");
    assert!(request.get("environment").is_none(), "{request}");

    assert_eq!(deliver_due(&h.app).await, 1);
    let callbacks = w.fake.taken();
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    assert_authorized(&callbacks[0]);
    assert_eq!(callbacks[0].body["environment_name"], "qa");
    assert_eq!(callbacks[0].body["state"], "rejected");
    let comment = comment_of(&callbacks[0]);
    assert!(
        comment.contains("[integrations.github.environments]"),
        "{comment}"
    );
    assert!(comment.contains("qa"), "{comment}");

    let audit = github_audit(h).await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["decision"], "denied");
    assert_eq!(audit[0]["details"]["githubEnvironment"], "qa");
    assert!(pending(h).await.is_empty());
}

#[tokio::test]
async fn a_ping_is_200_and_not_acted_on() {
    let w = world().await;
    let h = &w.h;
    // GitHub's ping when the webhook is set up: no `action`.
    let ping = json!({
        "zen": "Keep it logically awesome.",
        "hook_id": 470_186_322,
        "hook": {
            "type": "App",
            "id": 470_186_322,
            "name": "web",
            "active": true,
            "events": ["deployment_protection_rule"],
            "config": {"content_type": "json", "insecure_ssl": "0", "url": "https://gate.example.com/api/deploy-safety/integrations/github/deployment-protection-rule"},
            "app_id": 424_242,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z"
        },
        "sender": {"login": "octocat", "id": 583_231, "type": "User"}
    });
    let (status, receipt) = send_signed(&h.router, "ping", &ping).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["accepted"], false, "{receipt}");
    assert!(receipt.get("request").is_none(), "{receipt}");

    // Another action of the same event: ignored too.
    let mut other = payload(&w.fake, "staging", 42);
    other["action"] = json!("completed");
    let (status, receipt) = send_signed(&h.router, EVENT, &other).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["accepted"], false, "{receipt}");

    assert!(pending(h).await.is_empty());
    assert_eq!(deliver_due(&h.app).await, 0);
    assert!(w.fake.callbacks().is_empty());
    assert!(github_audit(h).await.is_empty());
}

#[tokio::test]
async fn the_same_delivery_twice_is_one_request_with_one_answer() {
    let w = world().await;
    let h = &w.h;
    let raw = payload(&w.fake, "staging", 42).to_string().into_bytes();
    let signature = signature_header(WEBHOOK_SECRET, &raw);
    let delivery = delivery_id();
    let (status, first) = send_webhook(&h.router, EVENT, &delivery, Some(&signature), &raw).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    h.clock.advance_millis(2_000);
    let (status, again) = send_webhook(&h.router, EVENT, &delivery, Some(&signature), &raw).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        first["request"], again["request"],
        "the request made the first time"
    );

    assert_eq!(deliver_due(&h.app).await, 1);
    h.clock.advance_minutes(5);
    assert_eq!(deliver_due(&h.app).await, 0);
    let callbacks = w.fake.callbacks();
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    assert_eq!(callbacks[0].body["state"], "approved");
    assert_eq!(outbox(&h.app, "answer").await.len(), 1);
    assert_eq!(github_audit(h).await.len(), 1);
}

#[tokio::test]
async fn without_the_github_settings_the_webhook_is_404() {
    let h = Harness::new().await;
    let fake = FakeGithub::start(&app_keys().public).await;
    for (event, body) in [
        (EVENT, payload(&fake, "staging", 42)),
        ("ping", json!({"zen": "Design for failure.", "hook_id": 1})),
    ] {
        let got = send_signed(&h.router, event, &body).await;
        assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
        assert!(
            got.1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("[integrations.github]"),
            "{}",
            got.1
        );
    }
    assert!(github_audit(&h).await.is_empty());
    assert_eq!(deliver_due(&h.app).await, 0);
    assert!(fake.callbacks().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Re-runs, large payloads, long outages, state changes without events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_rerun_of_the_same_workflow_run_is_a_new_request_answered_again() {
    let w = world().await;
    let h = &w.h;
    h.set_mode("lockdown", Some("INC-1: credential leak")).await;
    let first = request_deployment(&w, "staging", 42).await;
    assert_eq!(first["state"], "pending", "{first}");
    assert_eq!(first["deploymentId"], 1_042);
    // The same delivery again is the same request.
    let (status, again) = send_signed(&h.router, EVENT, &payload(&w.fake, "staging", 42)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["request"]["id"], first["id"], "{again}");
    // A re-run of run 42: GitHub makes a new deployment for the job, same callback URL.
    let mut rerun = payload(&w.fake, "staging", 42);
    rerun["deployment"]["id"] = json!(2_042);
    let (status, receipt) = send_signed(&h.router, EVENT, &rerun).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    let second = &receipt["request"];
    assert_ne!(second["id"], first["id"], "{receipt}");
    assert_eq!(second["deploymentId"], 2_042);
    assert_eq!(pending(h).await.len(), 2);
    // Both are answered when lockdown ends.
    h.set_mode("enforce", None).await;
    let watcher = GithubWatcher::new(h.app.clone());
    assert_eq!(watcher.tick(h.clock.now()).await.unwrap(), 2);
    deliver_due(&h.app).await;
    let answers: Vec<Value> = w
        .fake
        .taken()
        .into_iter()
        .filter(|c| c.body.get("state").is_some())
        .map(|c| c.body)
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers.iter().all(|a| a["state"] == "approved"));
}

#[tokio::test]
async fn a_payload_with_many_pull_requests_is_taken_beyond_the_api_body_limit() {
    let w = world().await;
    let mut body = payload(&w.fake, "staging", 42);
    // GitHub embeds each open pull request with its head and base repositories.
    let repository = body["repository"].clone();
    let pull = json!({"url": "https://api.github.com/repos/acme/payments/pulls/1", "number": 1,
                      "head": {"ref": "feature", "sha": SHA, "repo": repository.clone()},
                      "base": {"ref": "main", "sha": SHA, "repo": repository},
                      "body": "x".repeat(4_000)});
    body["pull_requests"] = json!(vec![pull; 40]);
    assert!(body.to_string().len() > HttpSettings::default().body_limit_bytes);
    let (status, receipt) = send_signed(&w.h.router, EVENT, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(receipt["request"]["state"], "approved");
    // Still bounded.
    body["pull_requests"] = json!(vec![json!({"body": "x".repeat(1_000_000)}); 6]);
    let (status, _) = send_signed(&w.h.router, EVENT, &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn an_answer_is_retried_beyond_the_delivery_attempts_until_github_takes_it() {
    let w = world_with(|settings| settings.delivery_attempts = 2).await;
    let h = &w.h;
    w.fake.fail_next(5);
    let request = request_deployment(&w, "staging", 42).await;
    assert_eq!(request["state"], "approved");
    for attempt in 1..=5u32 {
        assert_eq!(deliver_due(&h.app).await, 1, "attempt {attempt}");
        let entry = &outbox(&h.app, "answer").await[0];
        assert!(
            entry.failed_at.is_none(),
            "gave up at attempt {attempt}: {entry:?}"
        );
        h.clock.advance_millis(retry_delay_ms(attempt));
    }
    assert_eq!(deliver_due(&h.app).await, 1);
    let entry = &outbox(&h.app, "answer").await[0];
    assert_eq!(entry.attempts, 6);
    assert!(entry.done_at.is_some(), "{entry:?}");
    assert_eq!(w.fake.taken().len(), 1);
}

#[tokio::test]
async fn an_answer_github_no_longer_waits_for_is_given_up() {
    let w = world().await;
    let h = &w.h;
    w.fake.fail_next(1_000);
    request_deployment(&w, "staging", 42).await;
    assert_eq!(deliver_due(&h.app).await, 1);
    // Thirty days later GitHub has given up on the job: so does the outbox.
    h.clock.advance_minutes(30 * 24 * 60);
    assert_eq!(deliver_due(&h.app).await, 1);
    let entry = &outbox(&h.app, "answer").await[0];
    assert!(entry.failed_at.is_some(), "{entry:?}");
    assert!(
        entry
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("30 days")),
        "{entry:?}"
    );
    assert_eq!(w.fake.callbacks().len(), 1);
}

#[tokio::test]
async fn a_lowered_threat_level_is_decided_again_at_once_without_an_event() {
    let w = world().await;
    let h = &w.h;
    h.set_threat("high", "CVE in the base image").await;
    let request = request_deployment(&w, "staging", 42).await;
    assert_eq!(request["state"], "pending", "{request}");
    assert_eq!(request["reason"], "THREAT_LEVEL");
    let watcher = GithubWatcher::new(h.app.clone());
    // Its first look records the gate's state; nothing is due within the minute.
    watcher.tick(h.clock.now()).await.unwrap();
    h.clock.advance_millis(1_000);
    assert_eq!(watcher.tick(h.clock.now()).await.unwrap(), 0);
    // Lowering the threat level announces no event; the watcher sees the change itself.
    h.set_threat("low", "patched").await;
    h.clock.advance_millis(1_000);
    assert_eq!(watcher.tick(h.clock.now()).await.unwrap(), 1);
    assert!(pending(h).await.is_empty());
}

#[tokio::test]
async fn a_wait_comment_still_queued_at_the_final_answer_is_not_sent() {
    let w = world().await;
    let h = &w.h;
    h.set_mode("lockdown", Some("INC-1: credential leak")).await;
    request_deployment(&w, "staging", 42).await;
    // The comment is not delivered before lockdown ends and the answer is queued.
    h.set_mode("enforce", None).await;
    GithubWatcher::new(h.app.clone())
        .tick(h.clock.now())
        .await
        .unwrap();
    deliver_due(&h.app).await;
    let sent: Vec<Value> = w.fake.taken().into_iter().map(|c| c.body).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["state"], "approved");
    let comment = &outbox(&h.app, "comment").await[0];
    assert!(comment.done_at.is_some(), "{comment:?}");
}

#[tokio::test]
async fn other_signed_events_are_answered_without_reading_their_body() {
    let w = world().await;
    let (status, receipt) = send_signed(
        &w.h.router,
        "workflow_run",
        &json!({"action": 5, "workflow_run": []}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["accepted"], false);
    assert!(github_audit(&w.h).await.is_empty());
    // Without the event's name, a signed delivery is refused, naming the header.
    let raw = payload(&w.fake, "staging", 42).to_string().into_bytes();
    let signature = signature_header(WEBHOOK_SECRET, &raw);
    let request = Request::builder()
        .method(Method::POST)
        .uri(WEBHOOK)
        .header("x-hub-signature-256", signature)
        .body(Body::from(raw))
        .unwrap();
    let response = w.h.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["field"], "X-GitHub-Event", "{body}");
}
