//! Canary deployments over HTTP (SPEC §9, RUNBOOK "Canary Deployment Flow"): start with its
//! config defaults and validation, the gate and the endpoint's own preconditions in the order of
//! SPEC §3, status with the current evaluation per the runbook's table, metrics pushes,
//! promotion, the list; the event stream (`GET /events`); the routes in the OpenAPI document.
//!
//! The in-process harness runs no engine: canary steps are made with
//! [`Harness::step_due_canaries`] after advancing the manual clock.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use common::{API, Harness, START, assert_error, override_body};
use deploy_safety_core::{Role, StepAction};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The runbook's healthy metrics (error rate 0.1 %, p99 5 % above baseline, CPU 30 %, memory
/// 40 %).
fn healthy_metrics() -> Value {
    json!({"errorRatePercent": 0.1, "latencyP99Ms": 100.0, "baselineLatencyP99Ms": 95.0,
           "cpuPercent": 30.0, "memoryPercent": 40.0})
}

fn start_body(release: &str, environment: &str) -> Value {
    json!({"releaseId": release, "environment": environment, "deploymentId": "deploy-001"})
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

/// `POST /canary/start` as `token`, asserting 201.
async fn start(h: &Harness, token: &str, body: Value) -> Value {
    let (status, started) = h.post("/canary/start", token, body).await;
    assert_eq!(status, StatusCode::CREATED, "start canary: {started}");
    started
}

/// `POST /canary/{environment}/metrics` as the developer, asserting 200.
async fn push(h: &Harness, environment: &str, metrics: Value) -> Value {
    let (status, view) = h
        .post(
            &format!("/canary/{environment}/metrics"),
            &h.tokens.developer,
            metrics,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "push metrics: {view}");
    view
}

/// `GET /canary/{environment}` as the developer, asserting 200.
async fn canary(h: &Harness, environment: &str) -> Value {
    let (status, view) = h
        .get(&format!("/canary/{environment}"), &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK, "canary status: {view}");
    view
}

async fn promote(h: &Harness, token: &str, environment: &str) -> (StatusCode, Value) {
    h.post(
        "/canary/promote",
        token,
        json!({"environment": environment}),
    )
    .await
}

/// Each metric's verdict in a view's `currentEvaluation`, as `(metric, verdict)`.
fn verdicts(view: &Value) -> Vec<(String, String)> {
    view["currentEvaluation"]["metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("no currentEvaluation.metrics in {view}"))
        .iter()
        .map(|m| {
            (
                m["metric"].as_str().unwrap().to_owned(),
                m["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn verdict_of(view: &Value, metric: &str) -> String {
    verdicts(view)
        .into_iter()
        .find(|(m, _)| m == metric)
        .unwrap_or_else(|| panic!("no metric {metric} in {view}"))
        .1
}

/// The runbook's production preconditions for `release`: a passed staging validation and the
/// eng-lead's `deploy.canary.start` override for production (60 minutes). Returns the override.
async fn production_ready(h: &Harness, release: &str) -> Value {
    let validation = h.validate(release, "staging").await;
    assert_eq!(validation["status"], "passed", "{validation}");
    h.create_override(
        &h.tokens.eng_lead,
        json!({"action": "deploy.canary.start", "environment": "production",
               "reason": format!("Approved by CTO for release {release}"),
               "approver": "eng-lead", "ttlMinutes": 60}),
    )
    .await
}

async fn get_override(h: &Harness, id: &str) -> Value {
    let (status, found) = h
        .get(
            &format!("/security-gate/override/{id}"),
            &h.tokens.developer,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found
}

/// The audit entries of `action` with `decision`, as `(reason, environment)`, newest first.
async fn audited(h: &Harness, action: &str, decision: &str) -> Vec<(String, String)> {
    h.audit(&format!("action={action}&decision={decision}"))
        .await
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap().to_owned(),
                e["environment"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

async fn audit_len(h: &Harness) -> usize {
    h.audit("limit=1000").await.len()
}

// ---------------------------------------------------------------------------------------------
// POST /canary/start
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn runbook_staging_canary_starts_without_override() {
    let h = Harness::new().await;
    // The runbook's body, verbatim, as a developer: staging needs no override.
    let started = start(
        &h,
        &h.tokens.developer,
        json!({
            "releaseId": "v1.2.3",
            "environment": "staging",
            "deploymentId": "deploy-001",
            "config": {
                "initialPercentage": 10,
                "incrementPercentage": 10,
                "incrementInterval": 300000,
                "maxPercentage": 100
            }
        }),
    )
    .await;
    assert!(id_of(&started).starts_with("cny_"), "{started}");
    assert_eq!(started["releaseId"], "v1.2.3");
    assert_eq!(started["environment"], "staging");
    assert_eq!(started["deploymentId"], "deploy-001");
    assert_eq!(started["phase"], "progressing");
    assert_eq!(started["status"], "unknown");
    assert_eq!(started["currentPercentage"], 10);
    assert_eq!(started["startedBy"], "developer");
    assert_eq!(started["startedAt"], START.to_rfc3339());
    assert_eq!(
        started["nextStepAt"],
        START.plus_millis(300_000).to_rfc3339()
    );
    assert_eq!(
        started["config"],
        json!({"initialPercentage": 10, "incrementPercentage": 10,
               "incrementInterval": 300000, "maxPercentage": 100, "failureThreshold": 1})
    );
    let steps = started["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{started}");
    assert_eq!(steps[0]["number"], 0);
    assert_eq!(steps[0]["action"], "started");
    assert_eq!(steps[0]["fromPercentage"], 0);
    assert_eq!(steps[0]["toPercentage"], 10);
    assert_eq!(steps[0]["at"], START.to_rfc3339());
    assert!(started["startOverrideId"].is_null(), "{started}");

    // Audited as allowed, by the gate, without an override.
    assert_eq!(
        audited(&h, "deploy.canary.start", "allowed").await,
        vec![("ALLOWED".to_owned(), "staging".to_owned())]
    );
}

#[tokio::test]
async fn canary_config_defaults_apply_field_by_field() {
    let h = Harness::new().await;
    let started = start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    assert_eq!(
        started["config"],
        json!({"initialPercentage": 10, "incrementPercentage": 10,
               "incrementInterval": 300000, "maxPercentage": 100, "failureThreshold": 1})
    );
    assert_eq!(started["currentPercentage"], 10);
    assert_eq!(
        started["nextStepAt"],
        START.plus_millis(300_000).to_rfc3339()
    );

    // Only some fields given: the rest take their defaults.
    let (status, _) = promote(&h, &h.tokens.developer, "staging").await;
    assert_eq!(status, StatusCode::OK);
    let mut body = start_body("v1.2.4", "staging");
    body["config"] = json!({"initialPercentage": 25, "incrementInterval": 1000,
                            "failureThreshold": 3});
    let started = start(&h, &h.tokens.developer, body).await;
    assert_eq!(
        started["config"],
        json!({"initialPercentage": 25, "incrementPercentage": 10,
               "incrementInterval": 1000, "maxPercentage": 100, "failureThreshold": 3})
    );
    assert_eq!(started["currentPercentage"], 25);
    assert_eq!(started["nextStepAt"], START.plus_millis(1_000).to_rfc3339());
}

#[tokio::test]
async fn canary_start_input_is_validated_naming_the_field() {
    let h = Harness::new().await;
    let with_config = |config: Value| {
        let mut body = start_body("v1.2.3", "staging");
        body["config"] = config;
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            with_config(json!({"initialPercentage": 0})),
            "config.initialPercentage",
        ),
        (
            with_config(json!({"initialPercentage": 101})),
            "config.initialPercentage",
        ),
        (
            with_config(json!({"initialPercentage": 300})),
            "config.initialPercentage",
        ),
        (
            with_config(json!({"initialPercentage": 60, "maxPercentage": 50})),
            "config.initialPercentage",
        ),
        (
            with_config(json!({"incrementPercentage": 0})),
            "config.incrementPercentage",
        ),
        (
            with_config(json!({"maxPercentage": 0})),
            "config.maxPercentage",
        ),
        (
            with_config(json!({"maxPercentage": 101})),
            "config.maxPercentage",
        ),
        (
            with_config(json!({"incrementInterval": 999})),
            "config.incrementInterval",
        ),
        (
            with_config(json!({"incrementInterval": -1})),
            "config.incrementInterval",
        ),
        (
            with_config(json!({"failureThreshold": 0})),
            "config.failureThreshold",
        ),
        (
            with_config(json!({"bogusSetting": 1})),
            "config.bogusSetting",
        ),
        (
            json!({"releaseId": "", "environment": "staging", "deploymentId": "d-1"}),
            "releaseId",
        ),
        (
            json!({"releaseId": "   ", "environment": "staging", "deploymentId": "d-1"}),
            "releaseId",
        ),
        (
            json!({"releaseId": "v1.2.3", "environment": "staging"}),
            "deploymentId",
        ),
        (
            json!({"releaseId": "v1.2.3", "environment": "staging", "deploymentId": ""}),
            "deploymentId",
        ),
        (
            json!({"environment": "staging", "deploymentId": "d-1"}),
            "releaseId",
        ),
        (
            json!({"releaseId": "v1.2.3", "environment": "qa", "deploymentId": "d-1"}),
            "environment",
        ),
        (
            json!({"releaseId": "v1.2.3", "deploymentId": "d-1"}),
            "environment",
        ),
        (
            json!({"releaseId": "v1.2.3", "environment": "staging", "deploymentId": "d-1",
                   "extra": true}),
            "extra",
        ),
    ];
    let before = audit_len(&h).await;
    for (body, field) in cases {
        let got = h
            .post("/canary/start", &h.tokens.developer, body.clone())
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
        assert!(
            got.1["error"]["message"].as_str().unwrap().contains(field),
            "the message names {field}: {}",
            got.1
        );
    }
    // A rejected request changes nothing: no canary, no audit entry.
    let got = h.get("/canary/staging", &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    assert_eq!(audit_len(&h).await, before);
}

#[tokio::test]
async fn runbook_production_canary_needs_override_then_staging_validation() {
    let h = Harness::new().await;
    let body = json!({"releaseId": "v1.2.3", "environment": "production",
                      "deploymentId": "prod-deploy-001"});

    // No override: blocked by the gate, with the decision and how to proceed.
    let got = h
        .post("/canary/start", &h.tokens.developer, body.clone())
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("OVERRIDE_REQUIRED"),
        None,
    );
    let blocked = &got.1;
    assert_eq!(
        blocked["error"]["message"],
        "Action blocked by security gate: Production actions require explicit override"
    );
    assert!(
        !blocked["error"]["hints"].as_array().unwrap().is_empty(),
        "{blocked}"
    );
    let decision = &blocked["decision"];
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["reason"], "OVERRIDE_REQUIRED");
    assert_eq!(decision["action"], "deploy.canary.start");
    assert_eq!(decision["environment"], "production");
    assert_eq!(decision["releaseId"], "v1.2.3");

    // 1. The eng-lead creates the override (the runbook's body).
    let created = h
        .create_override(
            &h.tokens.eng_lead,
            json!({"action": "deploy.canary.start", "environment": "production",
                   "reason": "Approved by CTO for release v1.2.3",
                   "approver": "eng-lead", "ttlMinutes": 60}),
        )
        .await;
    let override_id = id_of(&created);

    // Staging first: the gate allows it now, but the release has not passed staging.
    let got = h
        .post("/canary/start", &h.tokens.developer, body.clone())
        .await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("STAGING_VALIDATION_REQUIRED"),
        None,
    );
    assert_eq!(get_override(&h, &override_id).await["useCount"], 0);

    // A passed validation of another release does not count.
    assert_eq!(h.validate("v9.9.9", "staging").await["status"], "passed");
    let got = h
        .post("/canary/start", &h.tokens.developer, body.clone())
        .await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("STAGING_VALIDATION_REQUIRED"),
        None,
    );

    // 2. Validated in staging: the canary starts within the TTL window, under the override.
    let validation = h.validate("v1.2.3", "staging").await;
    assert_eq!(validation["status"], "passed", "{validation}");
    let started = start(&h, &h.tokens.developer, body.clone()).await;
    assert_eq!(started["environment"], "production");
    assert_eq!(started["deploymentId"], "prod-deploy-001");
    assert_eq!(started["phase"], "progressing");
    assert_eq!(started["currentPercentage"], 10);
    assert_eq!(started["startOverrideId"], override_id.as_str());

    // The use is recorded on the override and in the audit log.
    let used = get_override(&h, &override_id).await;
    assert_eq!(used["useCount"], 1, "{used}");
    assert_eq!(used["lastUsedAt"], START.to_rfc3339());
    let uses = h.audit("action=override.use").await;
    assert_eq!(uses.len(), 1, "{uses:?}");
    assert_eq!(uses[0]["details"]["overrideId"], override_id.as_str());
    assert_eq!(uses[0]["details"]["usedFor"], "deploy.canary.start");
    assert_eq!(uses[0]["environment"], "production");
    assert_eq!(
        audited(&h, "deploy.canary.start", "allowed").await,
        vec![("OVERRIDE".to_owned(), "production".to_owned())]
    );

    // Every refusal is in the audit log as denied, with its reason (newest first).
    assert_eq!(
        audited(&h, "deploy.canary.start", "denied").await,
        vec![
            (
                "STAGING_VALIDATION_REQUIRED".to_owned(),
                "production".to_owned()
            ),
            (
                "STAGING_VALIDATION_REQUIRED".to_owned(),
                "production".to_owned()
            ),
            ("OVERRIDE_REQUIRED".to_owned(), "production".to_owned()),
        ]
    );

    // 3. Monitor: GET /canary/production.
    let view = canary(&h, "production").await;
    assert_eq!(view["id"], started["id"]);
}

#[tokio::test]
async fn a_second_canary_in_the_same_environment_is_409() {
    let h = Harness::new().await;
    let first = start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    let got = h
        .post(
            "/canary/start",
            &h.tokens.eng_lead,
            start_body("v1.2.4", "staging"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("CANARY_ALREADY_ACTIVE"),
        None,
    );
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&id_of(&first)),
        "names the active canary: {}",
        got.1
    );
    assert_eq!(
        audited(&h, "deploy.canary.start", "denied").await,
        vec![("CANARY_ALREADY_ACTIVE".to_owned(), "staging".to_owned())]
    );
    // The first one is untouched.
    let view = canary(&h, "staging").await;
    assert_eq!(view["id"], first["id"]);
    assert_eq!(view["releaseId"], "v1.2.3");

    // Once it is finished, another may start.
    let (status, _) = promote(&h, &h.tokens.developer, "staging").await;
    assert_eq!(status, StatusCode::OK);
    start(&h, &h.tokens.developer, start_body("v1.2.4", "staging")).await;
}

#[tokio::test]
async fn lockdown_blocks_canary_start_even_with_an_override() {
    let h = Harness::new().await;
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.start", "staging", 60),
    )
    .await;
    h.set_mode("lockdown", Some("Security incident investigation"))
        .await;
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_body("v1.2.3", "staging"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("LOCKDOWN"),
        None,
    );
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Security incident investigation"),
        "{}",
        got.1
    );
    assert_eq!(got.1["decision"]["reason"], "LOCKDOWN");
    assert!(got.1["decision"]["overrideId"].is_null());
    assert_eq!(
        audited(&h, "deploy.canary.start", "denied").await,
        vec![("LOCKDOWN".to_owned(), "staging".to_owned())]
    );
    let got = h.get("/canary/staging", &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
}

#[tokio::test]
async fn high_threat_level_blocks_canary_start_even_with_an_override() {
    let h = Harness::new().await;
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.start", "staging", 60),
    )
    .await;
    h.set_threat("high", "Active exploitation reported").await;
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_body("v1.2.3", "staging"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("THREAT_LEVEL"),
        None,
    );
    assert_eq!(got.1["decision"]["reason"], "THREAT_LEVEL");
    assert_eq!(
        audited(&h, "deploy.canary.start", "denied").await,
        vec![("THREAT_LEVEL".to_owned(), "staging".to_owned())]
    );
    // Medium is below high: allowed again.
    h.set_threat("medium", "Contained").await;
    start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
}

#[tokio::test]
async fn open_critical_incident_blocks_staging_canary_start_without_override() {
    let h = Harness::new().await;
    // A critical incident in production does not concern staging.
    let production = h
        .open_incident(
            &h.tokens.developer,
            json!({"title": "Checkout errors", "severity": "critical",
                   "category": "operational", "environment": "production"}),
        )
        .await;
    let staging = h
        .open_incident(
            &h.tokens.developer,
            json!({"title": "Staging DB down", "severity": "critical",
                   "category": "operational", "environment": "staging"}),
        )
        .await;
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_body("v1.2.3", "staging"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("CRITICAL_INCIDENT"),
        None,
    );
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains(staging["id"].as_str().unwrap()),
        "names the incident: {}",
        got.1
    );
    assert_eq!(
        audited(&h, "deploy.canary.start", "denied").await,
        vec![("CRITICAL_INCIDENT".to_owned(), "staging".to_owned())]
    );
    // Resolved: the production incident alone does not block staging.
    let (status, _) = h
        .post(
            &format!("/incidents/{}/resolve", staging["id"].as_str().unwrap()),
            &h.tokens.developer,
            json!({"reason": "Restored"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(production["id"].is_string());
    start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
}

#[tokio::test]
async fn critical_incident_for_all_environments_is_lifted_by_an_override() {
    let h = Harness::new().await;
    h.open_incident(
        &h.tokens.developer,
        json!({"title": "Region outage", "severity": "critical", "category": "operational"}),
    )
    .await;
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_body("v1.2.3", "staging"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("CRITICAL_INCIDENT"),
        None,
    );
    let created = h
        .create_override(
            &h.tokens.eng_lead,
            override_body("deploy.canary.start", "staging", 60),
        )
        .await;
    let started = start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    assert_eq!(started["startOverrideId"], created["id"]);
}

#[tokio::test]
async fn canary_start_answers_401_then_400_then_403_then_409() {
    let h = Harness::new().await;
    start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    h.set_mode("lockdown", Some("Maintenance window")).await;

    // 401 before 400: no token and an invalid body.
    let got = h
        .call(
            Method::POST,
            "/canary/start",
            None,
            Some(r#"{"releaseId": "", "config": {"initialPercentage": 0}}"#),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    let got = h
        .call(
            Method::POST,
            "/canary/start",
            Some("ds_unknown.token"),
            Some("not json"),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);

    // 400 before the gate: an invalid config in lockdown.
    let mut body = start_body("v1.2.4", "staging");
    body["config"] = json!({"incrementInterval": 999});
    let got = h.post("/canary/start", &h.tokens.developer, body).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("config.incrementInterval"),
    );

    // The gate before the endpoint's own preconditions: staging has an active canary, but the
    // answer is lockdown, not 409.
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_body("v1.2.4", "staging"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("LOCKDOWN"),
        None,
    );
    // Production without override and without staging validation: the gate's 403, not 409.
    h.set_mode("enforce", None).await;
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_body("v1.2.4", "production"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("OVERRIDE_REQUIRED"),
        None,
    );
    // Then the precondition.
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_body("v1.2.4", "staging"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("CANARY_ALREADY_ACTIVE"),
        None,
    );
    assert_eq!(
        audited(&h, "deploy.canary.start", "denied").await,
        vec![
            ("CANARY_ALREADY_ACTIVE".to_owned(), "staging".to_owned()),
            ("OVERRIDE_REQUIRED".to_owned(), "production".to_owned()),
            ("LOCKDOWN".to_owned(), "staging".to_owned()),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// GET /canary/{environment}, POST /canary/{environment}/metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn canary_status_errors() {
    let h = Harness::new().await;
    let got = h.get("/canary/staging", &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = h.get("/canary/production", &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = h.get("/canary/qa", &h.tokens.developer).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("environment"),
    );
    let got = h.call(Method::GET, "/canary/staging", None, None).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    // A canary in staging is not one in production.
    start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    let got = h.get("/canary/production", &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
}

#[tokio::test]
async fn canary_status_shows_the_current_evaluation_after_a_push() {
    let h = Harness::new().await;
    let started = start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;

    // No metrics yet: every metric unknown.
    let view = canary(&h, "staging").await;
    assert_eq!(view["id"], started["id"]);
    assert_eq!(view["currentEvaluation"]["status"], "unknown");
    assert_eq!(view["currentEvaluation"]["stale"], true);
    assert!(view["latestMetrics"].is_null());
    assert!(
        verdicts(&view).iter().all(|(_, v)| v == "unknown"),
        "{view}"
    );

    h.clock.advance_millis(5_000);
    let pushed = push(&h, "staging", healthy_metrics()).await;
    let metrics = &pushed["latestMetrics"];
    assert_eq!(metrics["receivedAt"], START.plus_millis(5_000).to_rfc3339());
    assert_eq!(metrics["source"], "push");
    assert_eq!(metrics["errorRatePercent"], 0.1);
    assert_eq!(metrics["latencyP99Ms"], 100.0);
    assert_eq!(metrics["baselineLatencyP99Ms"], 95.0);
    assert_eq!(metrics["cpuPercent"], 30.0);
    assert_eq!(metrics["memoryPercent"], 40.0);
    assert_eq!(pushed["currentEvaluation"]["status"], "healthy");

    let view = canary(&h, "staging").await;
    assert_eq!(view["latestMetrics"], pushed["latestMetrics"]);
    assert_eq!(view["currentEvaluation"]["status"], "healthy");
    assert_eq!(view["currentEvaluation"]["stale"], false);
    assert_eq!(
        verdicts(&view),
        vec![
            ("errorRatePercent".to_owned(), "healthy".to_owned()),
            ("latencyP99Ms".to_owned(), "healthy".to_owned()),
            ("cpuPercent".to_owned(), "healthy".to_owned()),
            ("memoryPercent".to_owned(), "healthy".to_owned()),
        ]
    );
    // The latency is judged as its increase over the baseline, with the bounds shown.
    let latency = view["currentEvaluation"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "latencyP99Ms")
        .unwrap()
        .clone();
    assert_eq!(latency["value"], 100.0);
    assert_eq!(latency["baseline"], 95.0);
    assert_eq!(latency["healthyBelow"], 20.0);
    assert_eq!(latency["unhealthyAbove"], 50.0);
    // The canary's own status is the latest evaluation's: none yet.
    assert_eq!(view["status"], "unknown");
}

#[tokio::test]
async fn metrics_are_judged_by_the_runbook_table() {
    let h = Harness::new().await;
    start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    // (metric changed from the healthy set, its value, the metric's verdict, overall status)
    let cases: &[(&str, f64, &str, &str)] = &[
        ("errorRatePercent", 0.49, "healthy", "healthy"),
        ("errorRatePercent", 0.5, "degraded", "degraded"),
        ("errorRatePercent", 1.0, "degraded", "degraded"),
        ("errorRatePercent", 2.0, "degraded", "degraded"),
        ("errorRatePercent", 2.01, "unhealthy", "unhealthy"),
        ("errorRatePercent", 5.0, "unhealthy", "unhealthy"),
        // p99 against a baseline of 100 ms.
        ("latencyP99Ms", 119.0, "healthy", "healthy"),
        ("latencyP99Ms", 120.0, "degraded", "degraded"),
        ("latencyP99Ms", 150.0, "degraded", "degraded"),
        ("latencyP99Ms", 151.0, "unhealthy", "unhealthy"),
        ("cpuPercent", 69.9, "healthy", "healthy"),
        ("cpuPercent", 70.0, "degraded", "degraded"),
        ("cpuPercent", 85.0, "degraded", "degraded"),
        ("cpuPercent", 85.1, "unhealthy", "unhealthy"),
        ("memoryPercent", 79.9, "healthy", "healthy"),
        ("memoryPercent", 80.0, "degraded", "degraded"),
        ("memoryPercent", 90.0, "degraded", "degraded"),
        ("memoryPercent", 90.5, "unhealthy", "unhealthy"),
    ];
    for (metric, value, verdict, status) in cases {
        let mut metrics = json!({"errorRatePercent": 0.1, "latencyP99Ms": 100.0,
                                 "baselineLatencyP99Ms": 100.0, "cpuPercent": 30.0,
                                 "memoryPercent": 40.0});
        metrics[*metric] = json!(value);
        let view = push(&h, "staging", metrics).await;
        assert_eq!(
            verdict_of(&view, metric),
            *verdict,
            "{metric} = {value}: {view}"
        );
        assert_eq!(
            view["currentEvaluation"]["status"], *status,
            "{metric} = {value}: {view}"
        );
        let others_healthy = verdicts(&view)
            .iter()
            .filter(|(m, _)| m != metric)
            .all(|(_, v)| v == "healthy");
        assert!(others_healthy, "{metric} = {value}: {view}");
    }

    // A missing metric, or a baseline that is missing or 0, is unknown for that metric; the
    // status is the worst verdict (unhealthy > degraded > unknown > healthy).
    let view = push(
        &h,
        "staging",
        json!({"errorRatePercent": 0.1, "latencyP99Ms": 100.0, "cpuPercent": 30.0,
               "memoryPercent": 40.0}),
    )
    .await;
    assert_eq!(verdict_of(&view, "latencyP99Ms"), "unknown");
    assert_eq!(view["currentEvaluation"]["status"], "unknown");
    let view = push(
        &h,
        "staging",
        json!({"errorRatePercent": 0.1, "latencyP99Ms": 100.0, "baselineLatencyP99Ms": 0.0,
               "cpuPercent": 30.0, "memoryPercent": 40.0}),
    )
    .await;
    assert_eq!(verdict_of(&view, "latencyP99Ms"), "unknown");
    let view = push(
        &h,
        "staging",
        json!({"errorRatePercent": 1.0, "latencyP99Ms": 100.0, "cpuPercent": 30.0}),
    )
    .await;
    assert_eq!(verdict_of(&view, "memoryPercent"), "unknown");
    assert_eq!(verdict_of(&view, "errorRatePercent"), "degraded");
    assert_eq!(view["currentEvaluation"]["status"], "degraded");
    let view = push(
        &h,
        "staging",
        json!({"errorRatePercent": 1.0, "cpuPercent": 99.0}),
    )
    .await;
    assert_eq!(view["currentEvaluation"]["status"], "unhealthy");
    let view = push(&h, "staging", json!({})).await;
    assert!(
        verdicts(&view).iter().all(|(_, v)| v == "unknown"),
        "{view}"
    );
    assert_eq!(view["currentEvaluation"]["status"], "unknown");
}

#[tokio::test]
async fn metrics_push_rejects_invalid_values_and_needs_an_active_canary() {
    let h = Harness::new().await;
    // No active canary: 404.
    let got = h
        .post(
            "/canary/staging/metrics",
            &h.tokens.developer,
            healthy_metrics(),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = h
        .post("/canary/qa/metrics", &h.tokens.developer, healthy_metrics())
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("environment"),
    );
    let got = h
        .call(
            Method::POST,
            "/canary/staging/metrics",
            None,
            Some(&healthy_metrics().to_string()),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);

    start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    let accepted = push(&h, "staging", healthy_metrics()).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"errorRatePercent": -0.1}), "errorRatePercent"),
        (json!({"errorRatePercent": 100.5}), "errorRatePercent"),
        (json!({"errorRatePercent": "0.1"}), "errorRatePercent"),
        (json!({"latencyP99Ms": -1}), "latencyP99Ms"),
        (json!({"latencyP99Ms": "fast"}), "latencyP99Ms"),
        (json!({"baselineLatencyP99Ms": -5}), "baselineLatencyP99Ms"),
        (json!({"cpuPercent": -1}), "cpuPercent"),
        (json!({"cpuPercent": "30"}), "cpuPercent"),
        (json!({"memoryPercent": -1}), "memoryPercent"),
        (json!({"memoryPercent": 100.1}), "memoryPercent"),
        (json!({"memoryPercent": true}), "memoryPercent"),
        (json!({"errorRate": 0.1}), "errorRate"),
    ];
    for (body, field) in cases {
        let got = h
            .post("/canary/staging/metrics", &h.tokens.developer, body.clone())
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    // Rejected pushes change nothing.
    let view = canary(&h, "staging").await;
    assert_eq!(view["latestMetrics"], accepted["latestMetrics"]);
    // Not the other environment's canary.
    let got = h
        .post(
            "/canary/production/metrics",
            &h.tokens.developer,
            healthy_metrics(),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
}

#[tokio::test]
async fn canary_steps_with_its_evaluations_and_shows_the_finished_one_when_none_is_active() {
    let h = Harness::new().await;
    let mut body = start_body("v1.2.3", "staging");
    body["config"] = json!({"incrementPercentage": 45});
    let started = start(&h, &h.tokens.developer, body).await;
    let id = id_of(&started);

    // Not due yet: nothing happens.
    h.clock.advance_millis(299_999);
    assert!(h.step_due_canaries().await.is_empty());

    // Healthy: up by the increment.
    push(&h, "staging", healthy_metrics()).await;
    h.clock.advance_millis(1);
    assert_eq!(
        h.step_due_canaries().await,
        vec![(id.clone(), Some(StepAction::SteppedUp))]
    );
    let view = canary(&h, "staging").await;
    assert_eq!(view["currentPercentage"], 55);
    assert_eq!(view["status"], "healthy");
    assert_eq!(view["phase"], "progressing");
    assert_eq!(view["nextStepAt"], START.plus_millis(600_000).to_rfc3339());
    let step = &view["steps"][1];
    assert_eq!(step["action"], "stepped_up");
    assert_eq!(step["fromPercentage"], 10);
    assert_eq!(step["toPercentage"], 55);
    assert_eq!(step["evaluation"]["status"], "healthy");
    assert_eq!(step["evaluation"]["metrics"][0]["value"], 0.1);
    // Nothing new since the step: the next evaluation would see stale metrics.
    assert_eq!(view["currentEvaluation"]["stale"], true);
    assert_eq!(view["currentEvaluation"]["status"], "unknown");

    // No metrics in the interval: unknown, held (never a pass).
    h.clock.advance_millis(300_000);
    assert_eq!(
        h.step_due_canaries().await,
        vec![(id.clone(), Some(StepAction::Held))]
    );
    let view = canary(&h, "staging").await;
    assert_eq!(view["currentPercentage"], 55);
    assert_eq!(view["status"], "unknown");
    assert_eq!(view["steps"][2]["evaluation"]["stale"], true);

    // Degraded: held for review.
    push(
        &h,
        "staging",
        json!({"errorRatePercent": 1.0, "latencyP99Ms": 100.0, "baselineLatencyP99Ms": 95.0,
               "cpuPercent": 30.0, "memoryPercent": 40.0}),
    )
    .await;
    h.clock.advance_millis(300_000);
    assert_eq!(
        h.step_due_canaries().await,
        vec![(id.clone(), Some(StepAction::Held))]
    );
    assert_eq!(canary(&h, "staging").await["status"], "degraded");

    // Healthy twice more: 100, completed.
    push(&h, "staging", healthy_metrics()).await;
    h.clock.advance_millis(300_000);
    assert_eq!(
        h.step_due_canaries().await,
        vec![(id.clone(), Some(StepAction::Completed))]
    );

    // None active: the most recent one, finished, without a current evaluation.
    let view = canary(&h, "staging").await;
    assert_eq!(view["id"], id.as_str());
    assert_eq!(view["phase"], "completed");
    assert_eq!(view["currentPercentage"], 100);
    assert!(view["nextStepAt"].is_null());
    assert_eq!(
        view["finishedAt"],
        START.plus_millis(1_200_000).to_rfc3339()
    );
    assert!(view["currentEvaluation"].is_null(), "{view}");
    // Metrics go nowhere now.
    let got = h
        .post(
            "/canary/staging/metrics",
            &h.tokens.developer,
            healthy_metrics(),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);

    let (_, releases) = h.get("/releases/staging", &h.tokens.developer).await;
    assert_eq!(releases["current"], "v1.2.3");
    assert_eq!(releases["releases"][0]["change"], "canary_completed");
}

#[tokio::test]
async fn metrics_of_the_interval_ending_at_the_scheduled_step_are_fresh_when_it_runs_late() {
    let h = Harness::new().await;
    let mut body = start_body("v1.2.3", "staging");
    body["config"] = json!({"incrementInterval": 1000, "incrementPercentage": 50});
    let started = start(&h, &h.tokens.developer, body).await;
    // Pushed early in the interval that ends at the scheduled step (START + 1000 ms) ...
    h.clock.advance_millis(50);
    push(&h, "staging", healthy_metrics()).await;
    // ... and evaluated 200 ms late, as a runner ticking every 250 ms does. What the next
    // evaluation would see, per GET /canary: fresh, healthy.
    h.clock.advance_millis(1_150);
    let view = canary(&h, "staging").await;
    assert_eq!(view["currentEvaluation"]["stale"], false, "{view}");
    assert_eq!(view["currentEvaluation"]["status"], "healthy", "{view}");
    assert_eq!(
        h.step_due_canaries().await,
        vec![(id_of(&started), Some(StepAction::SteppedUp))],
        "SPEC §9: stale means none received in the interval that ends at the scheduled step \
         time; these were received within it: {}",
        canary(&h, "staging").await
    );
    let view = canary(&h, "staging").await;
    assert_eq!(view["currentPercentage"], 60);
    assert_eq!(view["steps"][1]["evaluation"]["stale"], false);

    // Unhealthy metrics pushed early in the next interval roll it back, however late the step.
    let scheduled =
        deploy_safety_core::Timestamp::parse_rfc3339(view["nextStepAt"].as_str().unwrap()).unwrap();
    h.clock.advance_millis(10);
    push(
        &h,
        "staging",
        json!({"errorRatePercent": 5.0, "latencyP99Ms": 100.0, "baselineLatencyP99Ms": 95.0,
               "cpuPercent": 30.0, "memoryPercent": 40.0}),
    )
    .await;
    h.clock.set(scheduled.plus_millis(240));
    assert_eq!(
        h.step_due_canaries().await,
        vec![(id_of(&started), Some(StepAction::RolledBack))],
        "{}",
        canary(&h, "staging").await
    );
}

// ---------------------------------------------------------------------------------------------
// POST /canary/promote
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn runbook_manual_promotion_in_staging() {
    let h = Harness::new().await;
    let started = start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    h.clock.advance_minutes(2);
    let (status, promoted) = promote(&h, &h.tokens.developer, "staging").await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["id"], started["id"]);
    assert_eq!(promoted["currentPercentage"], 100);
    assert_eq!(promoted["phase"], "promoted");
    assert!(promoted["nextStepAt"].is_null());
    assert_eq!(promoted["finishedAt"], START.plus_minutes(2).to_rfc3339());
    let last = promoted["steps"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["action"], "promoted");
    assert_eq!(last["fromPercentage"], 10);
    assert_eq!(last["toPercentage"], 100);

    // The release history shows it.
    let (status, releases) = h.get("/releases/staging", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "{releases}");
    assert_eq!(releases["environment"], "staging");
    assert_eq!(releases["current"], "v1.2.3");
    let record = &releases["releases"][0];
    assert_eq!(record["releaseId"], "v1.2.3");
    assert_eq!(record["change"], "canary_promoted");
    assert_eq!(record["reference"], started["id"]);
    assert_eq!(record["by"], "developer");
    assert_eq!(record["at"], START.plus_minutes(2).to_rfc3339());
    let (_, production) = h.get("/releases/production", &h.tokens.developer).await;
    assert!(production["current"].is_null(), "{production}");
    assert_eq!(production["releases"], json!([]));

    assert_eq!(
        audited(&h, "deploy.canary.promote", "allowed").await,
        vec![("ALLOWED".to_owned(), "staging".to_owned())]
    );
    // Finished: nothing left to promote.
    let got = promote(&h, &h.tokens.developer, "staging").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
}

#[tokio::test]
async fn a_promotion_meant_for_another_canary_is_refused() {
    // The dashboard sends the id of the canary its page shows: one that finished since, and a
    // canary started in its place, must not be promoted in its name.
    let h = Harness::new().await;
    let first = start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    let (status, _) = promote(&h, &h.tokens.developer, "staging").await;
    assert_eq!(status, StatusCode::OK);
    let second = start(&h, &h.tokens.developer, start_body("v1.2.4", "staging")).await;
    let stale = json!({"environment": "staging", "canaryId": first["id"]});
    let got = h.post("/canary/promote", &h.tokens.developer, stale).await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", None, None);
    let message = got.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(second["id"].as_str().unwrap()) && message.contains("v1.2.4"),
        "{message}"
    );
    let (_, now) = h.get("/canary/staging", &h.tokens.developer).await;
    assert_eq!(now["id"], second["id"]);
    assert_eq!(now["currentPercentage"], 10, "nothing was promoted: {now}");
    // Naming the active one promotes it.
    let meant = json!({"environment": "staging", "canaryId": second["id"]});
    let (status, promoted) = h.post("/canary/promote", &h.tokens.developer, meant).await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["currentPercentage"], 100);
}

#[tokio::test]
async fn promote_errors() {
    let h = Harness::new().await;
    let got = promote(&h, &h.tokens.developer, "staging").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = promote(&h, &h.tokens.developer, "qa").await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("environment"),
    );
    let got = h
        .post("/canary/promote", &h.tokens.developer, json!({}))
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("environment"),
    );
    let got = h
        .call(
            Method::POST,
            "/canary/promote",
            None,
            Some(r#"{"environment": "staging"}"#),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);

    // The gate: lockdown and threat level stop promotion. 404 (nothing to promote) comes
    // before the gate.
    start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    h.set_threat("high", "Active exploitation reported").await;
    let got = promote(&h, &h.tokens.developer, "staging").await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("THREAT_LEVEL"),
        None,
    );
    h.set_threat("none", "Cleared").await;
    h.set_mode("lockdown", Some("Security incident investigation"))
        .await;
    let got = promote(&h, &h.tokens.developer, "staging").await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("LOCKDOWN"),
        None,
    );
    let got = promote(&h, &h.tokens.developer, "production").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    assert_eq!(
        audited(&h, "deploy.canary.promote", "denied").await,
        vec![
            ("LOCKDOWN".to_owned(), "staging".to_owned()),
            ("THREAT_LEVEL".to_owned(), "staging".to_owned()),
        ]
    );
    // Still where it was.
    let view = canary(&h, "staging").await;
    assert_eq!(view["phase"], "progressing");
    assert_eq!(view["currentPercentage"], 10);
}

#[tokio::test]
async fn production_promotion_is_covered_by_the_start_override_while_it_is_active() {
    let h = Harness::new().await;
    let created = production_ready(&h, "v1.2.3").await;
    let override_id = id_of(&created);
    start(&h, &h.tokens.developer, start_body("v1.2.3", "production")).await;
    h.clock.advance_minutes(30);
    // No deploy.canary.promote override exists: the start override covers it.
    let (status, promoted) = promote(&h, &h.tokens.developer, "production").await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["phase"], "promoted");
    assert_eq!(promoted["currentPercentage"], 100);
    assert_eq!(
        audited(&h, "deploy.canary.promote", "allowed").await,
        vec![("OVERRIDE".to_owned(), "production".to_owned())]
    );
    let entry = &h.audit("action=deploy.canary.promote").await[0];
    assert_eq!(entry["details"]["overrideId"], override_id.as_str());
    assert_eq!(get_override(&h, &override_id).await["useCount"], 2);
    let (_, releases) = h.get("/releases/production", &h.tokens.developer).await;
    assert_eq!(releases["current"], "v1.2.3");
    assert_eq!(releases["releases"][0]["change"], "canary_promoted");
}

#[tokio::test]
async fn production_promotion_after_the_start_override_expired_needs_an_override() {
    let h = Harness::new().await;
    let created = production_ready(&h, "v1.2.3").await;
    start(&h, &h.tokens.developer, start_body("v1.2.3", "production")).await;
    // Past expiresAt.
    let expires =
        deploy_safety_core::Timestamp::parse_rfc3339(created["expiresAt"].as_str().unwrap())
            .unwrap();
    h.clock.set(expires.plus_millis(1));
    let got = promote(&h, &h.tokens.developer, "production").await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("OVERRIDE_REQUIRED"),
        None,
    );
    assert_eq!(
        audited(&h, "deploy.canary.promote", "denied").await,
        vec![("OVERRIDE_REQUIRED".to_owned(), "production".to_owned())]
    );
    let view = canary(&h, "production").await;
    assert_eq!(view["phase"], "progressing");

    // Runbook "Override Expired Mid-Operation": create a new override, re-attempt.
    let fresh = h
        .create_override(
            &h.tokens.eng_lead,
            override_body("deploy.canary.promote", "production", 30),
        )
        .await;
    let (status, promoted) = promote(&h, &h.tokens.developer, "production").await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["phase"], "promoted");
    assert_eq!(get_override(&h, &id_of(&fresh)).await["useCount"], 1);
}

#[tokio::test]
async fn open_critical_incident_blocks_staging_promotion_without_override() {
    let h = Harness::new().await;
    start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    h.open_incident(
        &h.tokens.developer,
        json!({"title": "Staging DB down", "severity": "critical",
               "category": "operational", "environment": "staging"}),
    )
    .await;
    let got = promote(&h, &h.tokens.developer, "staging").await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("CRITICAL_INCIDENT"),
        None,
    );
    // An eng-lead's promote override lifts it.
    let created = h
        .create_override(
            &h.tokens.eng_lead,
            override_body("deploy.canary.promote", "staging", 30),
        )
        .await;
    let (status, promoted) = promote(&h, &h.tokens.developer, "staging").await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["phase"], "promoted");
    assert_eq!(get_override(&h, &id_of(&created)).await["useCount"], 1);
}

#[tokio::test]
async fn a_release_bound_start_override_covers_only_its_release_and_that_canary_promotion() {
    let h = Harness::new().await;
    for release in ["v1.2.3", "v1.2.4"] {
        assert_eq!(h.validate(release, "staging").await["status"], "passed");
    }
    let mut body = override_body("deploy.canary.start", "production", 60);
    body["releaseId"] = json!("v1.2.4");
    let bound = h.create_override(&h.tokens.eng_lead, body).await;

    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_body("v1.2.3", "production"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("OVERRIDE_REQUIRED"),
        None,
    );
    let started = start(&h, &h.tokens.developer, start_body("v1.2.4", "production")).await;
    assert_eq!(started["startOverrideId"], bound["id"]);
    let (status, promoted) = promote(&h, &h.tokens.developer, "production").await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["phase"], "promoted");
}

#[tokio::test]
async fn monitor_mode_allows_a_production_canary_start_and_records_the_verdict_it_replaced() {
    let h = Harness::new().await;
    h.set_mode("monitor", Some("Evaluating the gate")).await;
    // Staging first is the endpoint's own precondition, not the gate's verdict: it stands.
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_body("v1.2.3", "production"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("STAGING_VALIDATION_REQUIRED"),
        None,
    );
    assert_eq!(h.validate("v1.2.3", "staging").await["status"], "passed");
    let started = start(&h, &h.tokens.developer, start_body("v1.2.3", "production")).await;
    assert!(started["startOverrideId"].is_null());
    let entries = h.audit("action=deploy.canary.start&decision=allowed").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["reason"], "OVERRIDE_REQUIRED");
    assert_eq!(entries[0]["details"]["wouldBlock"], true);
    assert_eq!(entries[0]["details"]["allowed"], true);
}

// ---------------------------------------------------------------------------------------------
// GET /canaries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn canaries_are_listed_newest_first_and_filtered() {
    let h = Harness::new().await;
    let mut ids = Vec::new();
    for release in ["v1.0.0", "v1.1.0", "v1.2.0"] {
        let started = start(&h, &h.tokens.developer, start_body(release, "staging")).await;
        ids.push(id_of(&started));
        h.clock.advance_minutes(1);
        let (status, _) = promote(&h, &h.tokens.developer, "staging").await;
        assert_eq!(status, StatusCode::OK);
        h.clock.advance_minutes(1);
    }
    let active = start(&h, &h.tokens.developer, start_body("v1.3.0", "staging")).await;
    ids.push(id_of(&active));
    ids.reverse();

    let listed = |body: &Value| -> Vec<String> {
        body["canaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect()
    };
    let (status, all) = h.get("/canaries", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(listed(&all), ids);
    assert_eq!(all["canaries"][0]["phase"], "progressing");
    assert_eq!(all["canaries"][1]["phase"], "promoted");
    let (_, staging) = h
        .get("/canaries?environment=staging&limit=2", &h.tokens.developer)
        .await;
    assert_eq!(listed(&staging), ids[..2].to_vec());
    let (status, production) = h
        .get("/canaries?environment=production", &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(production["canaries"], json!([]));

    for query in [
        "limit=0",
        "limit=201",
        "limit=ten",
        "environment=qa",
        "bogus=1",
    ] {
        let got = h
            .get(&format!("/canaries?{query}"), &h.tokens.developer)
            .await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{query}: {}", got.1);
        assert_eq!(got.1["error"]["code"], "invalid_request", "{query}");
    }
    let got = h.call(Method::GET, "/canaries", None, None).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
}

// ---------------------------------------------------------------------------------------------
// GET /events
// ---------------------------------------------------------------------------------------------

/// One server-sent event.
#[derive(Debug)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: Value,
}

/// An open event stream, read frame by frame (it never ends by itself).
struct EventStream {
    body: Body,
    buffer: String,
}

impl EventStream {
    /// `GET /events{query}` with `token` and an optional `Last-Event-ID`.
    async fn open(
        h: &Harness,
        query: &str,
        token: Option<&str>,
        last_event_id: Option<&str>,
    ) -> (StatusCode, HeaderMap, EventStream) {
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(format!("{API}/events{query}"));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = h
            .router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let stream = EventStream {
            body: response.into_body(),
            buffer: String::new(),
        };
        (status, headers, stream)
    }

    /// The next event, or `None` if none arrives within `wait` (comments are skipped).
    async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return Some(event);
                }
                continue;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await;
            match frame {
                Err(_) => return None,
                Ok(None) => panic!("the event stream ended"),
                Ok(Some(frame)) => {
                    let frame = frame.expect("read a frame of the event stream");
                    if let Ok(data) = frame.into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
        }
    }

    /// The next event, which must arrive within 5 s.
    async fn next(&mut self) -> SseEvent {
        self.next_within(Duration::from_secs(5))
            .await
            .expect("an event within 5 s")
    }
}

fn parse_block(block: &str) -> Option<SseEvent> {
    let mut id = None;
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match key {
            "id" => id = Some(value.to_owned()),
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() && id.is_none() && event.is_none() {
        return None;
    }
    let data = serde_json::from_str(&data.join("\n")).unwrap_or(Value::Null);
    Some(SseEvent { id, event, data })
}

#[tokio::test]
async fn events_need_a_token() {
    let h = Harness::new().await;
    let (status, _, _) = EventStream::open(&h, "?since=0", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = EventStream::open(&h, "", Some("ds_unknown.token"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) =
        EventStream::open(&h, "?environment=qa", Some(&h.tokens.developer), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = EventStream::open(&h, "?since=-1", Some(&h.tokens.developer), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn events_replay_since_and_are_a_text_event_stream() {
    let h = Harness::new().await;
    let created = h
        .create_override(
            &h.tokens.eng_lead,
            override_body("deploy.canary.start", "production", 60),
        )
        .await;
    let (status, headers, mut stream) =
        EventStream::open(&h, "?since=0", Some(&h.tokens.developer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "{headers:?}"
    );
    let first = stream.next().await;
    assert_eq!(first.event.as_deref(), Some("override.created"));
    assert_eq!(first.id.as_deref(), Some("1"));
    assert_eq!(first.data["seq"], 1);
    assert_eq!(first.data["type"], "override.created");
    assert_eq!(first.data["environment"], "production");
    assert_eq!(first.data["at"], START.to_rfc3339());
    assert_eq!(first.data["data"]["overrideId"], created["id"]);
    assert_eq!(first.data["data"]["action"], "deploy.canary.start");
    assert_eq!(first.data["data"]["approver"], "eng-lead");

    // Then it waits, and delivers what happens next.
    assert!(
        stream
            .next_within(Duration::from_millis(200))
            .await
            .is_none()
    );
    let revoked = h
        .delete(
            &format!("/security-gate/override/{}", id_of(&created)),
            &h.tokens.eng_lead,
        )
        .await;
    assert_eq!(revoked.0, StatusCode::OK, "{}", revoked.1);
    let second = stream.next().await;
    assert_eq!(second.event.as_deref(), Some("override.revoked"));
    assert_eq!(second.id.as_deref(), Some("2"));
    assert_eq!(second.data["data"]["revokedBy"], "eng-lead");
}

#[tokio::test]
async fn a_stream_ends_once_its_token_is_revoked() {
    // The credential is checked again while the stream runs (every 5 s by the app's clock):
    // a revoked token hears nothing that happens after.
    let h = Harness::new().await;
    let watcher = h
        .app
        .create_token("watcher", Role::Developer, "test")
        .await
        .unwrap();
    let (status, _, mut stream) = EventStream::open(&h, "", Some(&watcher.token), None).await;
    assert_eq!(status, StatusCode::OK);
    h.set_mode("lockdown", Some("INC-1: before the revocation"))
        .await;
    assert_eq!(
        stream.next().await.event.as_deref(),
        Some("lockdown.entered")
    );
    h.app
        .revoke_token(&watcher.view.id, "security")
        .await
        .unwrap();
    h.clock.advance_millis(5_000);
    h.set_mode("enforce", None).await;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.body.frame()).await {
            Err(_) => panic!("the stream neither ended nor sent within 5 s"),
            Ok(None) => break true,
            Ok(Some(Ok(frame))) => {
                let text = frame
                    .into_data()
                    .map(|d| String::from_utf8_lossy(&d).into_owned())
                    .unwrap_or_default();
                assert!(
                    !text.contains("lockdown.exited"),
                    "a revoked token was sent a new event: {text}"
                );
            }
            Ok(Some(Err(e))) => panic!("{e}"),
        }
    };
    assert!(ended);
    // A valid token's stream is unaffected by the 5 s check.
    let (status, _, mut other) = EventStream::open(&h, "", Some(&h.tokens.developer), None).await;
    assert_eq!(status, StatusCode::OK);
    h.clock.advance_millis(5_000);
    h.set_mode("lockdown", Some("INC-2: after")).await;
    assert_eq!(
        other.next().await.event.as_deref(),
        Some("lockdown.entered")
    );
}

#[tokio::test]
async fn events_without_since_start_with_the_next_event() {
    let h = Harness::new().await;
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.start", "staging", 60),
    )
    .await;
    let (status, _, mut stream) = EventStream::open(&h, "", Some(&h.tokens.developer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        stream
            .next_within(Duration::from_millis(200))
            .await
            .is_none()
    );
    h.set_mode("lockdown", Some("Security incident investigation"))
        .await;
    let event = stream.next().await;
    assert_eq!(event.event.as_deref(), Some("lockdown.entered"));
    assert_eq!(event.id.as_deref(), Some("2"));
    assert!(event.data["environment"].is_null());
    assert_eq!(
        event.data["data"]["lockdownReason"],
        "Security incident investigation"
    );
}

#[tokio::test]
async fn events_resume_after_last_event_id_and_filter_by_environment() {
    let h = Harness::new().await;
    // 1: staging, 2: production, 3: no environment (lockdown), 4: staging.
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.start", "staging", 60),
    )
    .await;
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.start", "production", 60),
    )
    .await;
    h.set_mode("lockdown", Some("Security incident investigation"))
        .await;
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.rollback", "staging", 60),
    )
    .await;

    // Last-Event-ID: resumes after that seq.
    let (status, _, mut stream) =
        EventStream::open(&h, "", Some(&h.tokens.developer), Some("2")).await;
    assert_eq!(status, StatusCode::OK);
    let event = stream.next().await;
    assert_eq!(event.id.as_deref(), Some("3"));
    assert_eq!(event.event.as_deref(), Some("lockdown.entered"));
    assert_eq!(stream.next().await.id.as_deref(), Some("4"));
    assert!(
        stream
            .next_within(Duration::from_millis(200))
            .await
            .is_none()
    );

    // environment=production: staging events are left out; events of no environment stay.
    let (_, _, mut stream) = EventStream::open(
        &h,
        "?since=0&environment=production",
        Some(&h.tokens.developer),
        None,
    )
    .await;
    let first = stream.next().await;
    assert_eq!(first.id.as_deref(), Some("2"));
    assert_eq!(first.data["environment"], "production");
    let second = stream.next().await;
    assert_eq!(second.id.as_deref(), Some("3"));
    assert!(
        stream
            .next_within(Duration::from_millis(200))
            .await
            .is_none()
    );

    // environment=staging.
    let (_, _, mut stream) = EventStream::open(
        &h,
        "?since=0&environment=staging",
        Some(&h.tokens.developer),
        None,
    )
    .await;
    let seqs = [
        stream.next().await.id,
        stream.next().await.id,
        stream.next().await.id,
    ];
    assert_eq!(
        seqs,
        [
            Some("1".to_owned()),
            Some("3".to_owned()),
            Some("4".to_owned())
        ]
    );
}

#[tokio::test]
async fn canary_weight_changes_are_announced_on_the_event_stream() {
    let h = Harness::new().await;
    let (_, _, mut stream) =
        EventStream::open(&h, "?environment=staging", Some(&h.tokens.developer), None).await;
    let started = start(&h, &h.tokens.developer, start_body("v1.2.3", "staging")).await;
    let id = id_of(&started);

    let event = stream.next().await;
    assert_eq!(event.event.as_deref(), Some("canary.started"));
    assert_eq!(event.data["data"]["canaryId"], id.as_str());
    let event = stream.next().await;
    assert_eq!(event.event.as_deref(), Some("canary.weight_changed"));
    assert_eq!(event.data["data"]["fromPercentage"], 0);
    assert_eq!(event.data["data"]["percentage"], 10);
    assert_eq!(event.data["data"]["releaseId"], "v1.2.3");
    assert_eq!(event.data["data"]["deploymentId"], "deploy-001");

    // A step up.
    push(&h, "staging", healthy_metrics()).await;
    h.clock.advance_millis(300_000);
    h.step_due_canaries().await;
    let event = stream.next().await;
    assert_eq!(event.event.as_deref(), Some("canary.weight_changed"));
    assert_eq!(event.data["data"]["fromPercentage"], 10);
    assert_eq!(event.data["data"]["percentage"], 20);
    assert_eq!(event.data["data"]["status"], "healthy");

    // A promotion.
    let (status, _) = promote(&h, &h.tokens.developer, "staging").await;
    assert_eq!(status, StatusCode::OK);
    let event = stream.next().await;
    assert_eq!(event.event.as_deref(), Some("canary.weight_changed"));
    assert_eq!(event.data["data"]["fromPercentage"], 20);
    assert_eq!(event.data["data"]["percentage"], 100);
    let event = stream.next().await;
    assert_eq!(event.event.as_deref(), Some("canary.promoted"));
    assert_eq!(event.data["data"]["phase"], "promoted");
}

// ---------------------------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn openapi_documents_the_canary_rollback_load_shedding_and_event_routes() {
    let h = Harness::new().await;
    let reply = h
        .raw(Method::GET, &format!("{API}/openapi.json"), None, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    let routes: &[(&str, &str, &[&str])] = &[
        (
            "post",
            "/canary/start",
            &["201", "400", "401", "403", "409"],
        ),
        (
            "get",
            "/canary/{environment}",
            &["200", "400", "401", "404"],
        ),
        (
            "post",
            "/canary/promote",
            &["200", "400", "401", "403", "404"],
        ),
        (
            "post",
            "/canary/{environment}/metrics",
            &["200", "400", "401", "404"],
        ),
        ("get", "/canaries", &["200", "400", "401"]),
        ("post", "/rollback/create", &["201", "400", "401", "409"]),
        (
            "post",
            "/rollback/{id}/execute",
            &["200", "401", "403", "404", "409"],
        ),
        ("get", "/rollback/{id}", &["200", "401", "404"]),
        ("get", "/rollbacks", &["200", "400", "401"]),
        ("get", "/releases/{environment}", &["200", "400", "401"]),
        ("post", "/load-shedding", &["200", "400", "401", "403"]),
        (
            "get",
            "/load-shedding/{environment}",
            &["200", "400", "401"],
        ),
        ("get", "/events", &["200", "401"]),
    ];
    for (method, path, statuses) in routes {
        let full = format!("{API}{path}");
        let operation = &doc["paths"][&full][*method];
        assert!(operation.is_object(), "{method} {full} is not documented");
        assert!(
            operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "{method} {full}: security"
        );
        for status in *statuses {
            assert!(
                operation["responses"][*status].is_object(),
                "{method} {full}: no {status} response"
            );
        }
        if *method == "post" && !path.contains("execute") {
            assert!(
                operation["requestBody"].is_object(),
                "{method} {full}: request body"
            );
        }
    }
    assert!(
        doc["paths"][format!("{API}/events")]["get"]["responses"]["200"]["content"]
            ["text/event-stream"]
            .is_object(),
        "events are documented as text/event-stream"
    );
}
