//! Soaks over HTTP (SPEC §23, RUNBOOK Normal Deploy Flow step 6): every endpoint and its
//! errors, bad input refused naming the field with nothing stored, and what the gate makes of
//! soaks when `[soak] required_before_production` is set (409 `SOAK_REQUIRED`, the validation
//! gate `soak`) and when it is not (part one unchanged).
//!
//! The in-process harness runs no engine: evaluations are made with
//! [`Harness::evaluate_due_soaks`] after advancing the manual clock.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::{Harness, assert_error, at_minutes};
use deploy_safety_app::{AppSettings, SoakSettings};
use deploy_safety_server::HttpSettings;
use serde_json::{Value, json};

fn short(release: &str) -> Value {
    json!({"releaseId": release, "environment": "staging",
           "config": {"durationMs": 180_000, "intervalMs": 60_000}})
}

fn good() -> Value {
    json!({"errorRatePercent": 0.05, "latencyP99Ms": 105.0, "baselineLatencyP99Ms": 100.0})
}

async fn start(h: &Harness, body: Value) -> Value {
    let (status, soak) = h.post("/soaks", &h.tokens.developer, body).await;
    assert_eq!(status, StatusCode::CREATED, "{soak}");
    soak
}

fn id(soak: &Value) -> String {
    soak["id"].as_str().unwrap().to_owned()
}

async fn get(h: &Harness, id: &str) -> Value {
    let (status, soak) = h.get(&format!("/soaks/{id}"), &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "{soak}");
    soak
}

/// The gate `soak` of a validation.
fn soak_gate(validation: &Value) -> Value {
    validation["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "soak")
        .unwrap_or_else(|| panic!("no soak gate in {validation}"))
        .clone()
}

/// Half a minute on, `metrics` pushed, half a minute on, the due soaks evaluated.
async fn one_interval(h: &Harness, id: &str, metrics: Value) {
    h.clock.advance_millis(30_000);
    let (status, body) = h
        .post(
            &format!("/soaks/{id}/metrics"),
            &h.tokens.developer,
            metrics,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.clock.advance_millis(30_000);
    h.evaluate_due_soaks().await;
}

/// Pushes good metrics and evaluates once a minute until the soak ends.
async fn soak_to_the_end(h: &Harness, id: &str) -> Value {
    for _ in 0..100 {
        h.clock.advance_millis(30_000);
        let (status, _) = h
            .post(&format!("/soaks/{id}/metrics"), &h.tokens.developer, good())
            .await;
        if status == StatusCode::CONFLICT {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        h.clock.advance_millis(30_000);
        h.evaluate_due_soaks().await;
    }
    get(h, id).await
}

fn required() -> AppSettings {
    AppSettings {
        soak: SoakSettings {
            required_before_production: true,
            ..SoakSettings::default()
        },
        ..AppSettings::default()
    }
}

#[tokio::test]
async fn a_soak_starts_with_the_runbooks_numbers() {
    let h = Harness::new().await;
    let soak = start(&h, json!({"releaseId": "v1.2.3", "environment": "staging"})).await;
    assert!(soak["id"].as_str().unwrap().starts_with("sok_"));
    assert_eq!(soak["releaseId"], "v1.2.3");
    assert_eq!(soak["environment"], "staging");
    assert_eq!(soak["service"], Value::Null);
    assert_eq!(soak["status"], "running");
    assert_eq!(soak["startedAt"], at_minutes(0));
    assert_eq!(soak["endsAt"], at_minutes(15));
    assert_eq!(soak["nextEvaluationAt"], at_minutes(1));
    assert_eq!(soak["startedBy"], "developer");
    assert_eq!(
        soak["config"],
        json!({"durationMs": 900_000, "intervalMs": 60_000,
               "maxErrorRatePercent": 0.1, "maxLatencyIncreasePercent": 10.0})
    );
    assert_eq!(soak["evaluations"], json!([]));
    let audited = h.audit("action=soak.start").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["details"]["soakId"], soak["id"]);

    // A service, and thresholds of one's own; the defaults come from `[soak]` otherwise.
    let other = start(
        &h,
        json!({"releaseId": "v1.2.3", "environment": "staging", "service": "payments/api",
               "config": {"maxErrorRatePercent": 0.5}}),
    )
    .await;
    assert_eq!(other["service"], "payments/api");
    assert_eq!(other["config"]["maxErrorRatePercent"], 0.5);
    let h = Harness::with_app_settings(
        HttpSettings::default(),
        AppSettings {
            soak: SoakSettings {
                max_error_rate_percent: 0.2,
                max_latency_increase_percent: 5.0,
                ..SoakSettings::default()
            },
            ..AppSettings::default()
        },
    )
    .await;
    let soak = start(&h, json!({"releaseId": "v1", "environment": "production"})).await;
    assert_eq!(soak["config"]["maxErrorRatePercent"], 0.2);
    assert_eq!(soak["config"]["maxLatencyIncreasePercent"], 5.0);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_stored() {
    let h = Harness::new().await;
    let cases = [
        (json!({"environment": "staging"}), "releaseId"),
        (
            json!({"releaseId": "", "environment": "staging"}),
            "releaseId",
        ),
        (
            json!({"releaseId": "v 1", "environment": "staging"}),
            "releaseId",
        ),
        (
            json!({"releaseId": "v1", "environment": "qa"}),
            "environment",
        ),
        (json!({"releaseId": "v1"}), "environment"),
        (
            json!({"releaseId": "v1", "environment": "staging", "service": "pay ments"}),
            "service",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "service": ""}),
            "service",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "deploymentId": ""}),
            "deploymentId",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "config": {"durationMs": 999}}),
            "config.durationMs",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "config": {"durationMs": 604_800_001}}),
            "config.durationMs",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "config": {"durationMs": -5}}),
            "config.durationMs",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "config": {"intervalMs": 999}}),
            "config.intervalMs",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "config": {"durationMs": 60_000, "intervalMs": 60_001}}),
            "config.intervalMs",
        ),
        // More than 1440 evaluations: a second for a day.
        (
            json!({"releaseId": "v1", "environment": "staging", "config": {"durationMs": 86_400_000, "intervalMs": 1_000}}),
            "config.intervalMs",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "config": {"maxErrorRatePercent": -0.1}}),
            "config.maxErrorRatePercent",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "config": {"maxLatencyIncreasePercent": -1}}),
            "config.maxLatencyIncreasePercent",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "config": {"maxLatencyIncreasePercent": "10"}}),
            "config.maxLatencyIncreasePercent",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "config": {"rollback": true}}),
            "config.rollback",
        ),
        (
            json!({"releaseId": "v1", "environment": "staging", "extra": 1}),
            "extra",
        ),
    ];
    for (body, field) in cases {
        let got = h.post("/soaks", &h.tokens.developer, body.clone()).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    let (_, list) = h.get("/soaks", &h.tokens.developer).await;
    assert_eq!(list["soaks"], json!([]), "nothing stored");
    assert!(h.audit("action=soak.start").await.is_empty());

    // Metrics: negative, above 100 %, not a number, NaN (not JSON at all).
    let soak = start(&h, short("v1")).await;
    let path = format!("/soaks/{}/metrics", id(&soak));
    for (body, field) in [
        (json!({"errorRatePercent": -0.1}), Some("errorRatePercent")),
        (json!({"errorRatePercent": 100.5}), Some("errorRatePercent")),
        (json!({"latencyP99Ms": -1}), Some("latencyP99Ms")),
        (
            json!({"baselineLatencyP99Ms": -1}),
            Some("baselineLatencyP99Ms"),
        ),
        (json!({"errorRatePercent": "NaN"}), Some("errorRatePercent")),
        (json!({"cpuPercent": 5}), Some("cpuPercent")),
    ] {
        let got = h.post(&path, &h.tokens.developer, body).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            field,
        );
    }
    for text in [
        r#"{"errorRatePercent": NaN}"#,
        r#"{"latencyP99Ms": 1e999}"#,
        "{",
    ] {
        let (status, body) = h.post_text(&path, &h.tokens.developer, text).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}: {body}");
    }
    assert_eq!(
        get(&h, &id(&soak)).await["latestMetrics"],
        Value::Null,
        "nothing stored"
    );

    // Abort needs a reason.
    let abort = format!("/soaks/{}/abort", id(&soak));
    for body in [json!({}), json!({"reason": "  "})] {
        let got = h.post(&abort, &h.tokens.developer, body).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some("reason"),
        );
    }
    assert_eq!(get(&h, &id(&soak)).await["status"], "running");

    // Lists: filters must be valid.
    for (query, field) in [
        ("status=done", "status"),
        ("environment=qa", "environment"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("service=a%20b", "service"),
    ] {
        let got = h.get(&format!("/soaks?{query}"), &h.tokens.developer).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
}

#[tokio::test]
async fn unknown_soaks_are_404_and_an_ended_one_is_409() {
    let h = Harness::new().await;
    for (path, body) in [
        ("/soaks/sok_nope/metrics", Some(good())),
        ("/soaks/sok_nope/abort", Some(json!({"reason": "x"}))),
        ("/soaks/sok_nope", None),
    ] {
        let got = match body {
            Some(body) => h.post(path, &h.tokens.developer, body).await,
            None => h.get(path, &h.tokens.developer).await,
        };
        assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    }
    // 401 before anything else.
    let (status, _) = h
        .post("/soaks", "ds_0000000000000000.nope", short("v1"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = h.get("/soaks", "ds_0000000000000000.nope").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let soak = start(&h, short("v1")).await;
    // A second running soak of the same release there is 409; another service is not.
    let got = h.post("/soaks", &h.tokens.eng_lead, short("v1")).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("SOAK_ALREADY_RUNNING"),
        None,
    );
    assert!(!got.1["error"]["hints"].as_array().unwrap().is_empty());
    assert_eq!(
        h.audit("action=soak.start&decision=denied").await[0]["reason"],
        "SOAK_ALREADY_RUNNING"
    );
    let mut other = short("v1");
    other["service"] = json!("billing");
    start(&h, other).await;

    let (status, aborted) = h
        .post(
            &format!("/soaks/{}/abort", id(&soak)),
            &h.tokens.oncall,
            json!({"reason": "withdrawn"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(aborted["status"], "aborted");
    assert_eq!(aborted["result"], "aborted by oncall-lead: withdrawn");
    assert_eq!(h.audit("action=soak.abort").await.len(), 1);
    for (path, body) in [
        (format!("/soaks/{}/metrics", id(&soak)), good()),
        (
            format!("/soaks/{}/abort", id(&soak)),
            json!({"reason": "again"}),
        ),
    ] {
        let got = h.post(&path, &h.tokens.developer, body).await;
        assert_error(
            &got,
            StatusCode::CONFLICT,
            "conflict",
            Some("SOAK_NOT_RUNNING"),
            None,
        );
    }
    // Ended: a new one may start.
    start(&h, short("v1")).await;
}

#[tokio::test]
async fn evaluations_show_values_thresholds_and_verdicts_and_lists_filter() {
    let h = Harness::new().await;
    let soak = start(&h, short("v1.2.3")).await;
    let done = soak_to_the_end(&h, &id(&soak)).await;
    assert_eq!(done["status"], "passed", "{done}");
    assert_eq!(done["result"], "all 3 evaluations passed");
    let evaluations = done["evaluations"].as_array().unwrap();
    assert_eq!(evaluations.len(), 3);
    let e = &evaluations[0];
    assert_eq!(e["number"], 1);
    assert_eq!(e["verdict"], "pass");
    assert_eq!(e["intervalStart"], at_minutes(0));
    assert_eq!(e["intervalEnd"], at_minutes(1));
    assert_eq!(e["errorRatePercent"], 0.05);
    assert_eq!(e["latencyP99Ms"], 105.0);
    assert_eq!(e["baselineLatencyP99Ms"], 100.0);
    assert_eq!(e["latencyIncreasePercent"], 5.0);
    assert_eq!(e["maxErrorRatePercent"], 0.1);
    assert_eq!(e["maxLatencyIncreasePercent"], 10.0);
    assert_eq!(e["incidents"], json!([]));
    assert_eq!(e["source"], "push");
    assert_eq!(h.audit("action=soak.evaluate").await.len(), 3);
    assert_eq!(
        h.audit("action=soak.finish").await[0]["reason"],
        "SOAK_PASSED"
    );

    // A failing one and a running one, for the filters.
    let failing = start(&h, short("v2")).await;
    one_interval(
        &h,
        &id(&failing),
        json!({"errorRatePercent": 0.1, "latencyP99Ms": 100, "baselineLatencyP99Ms": 100}),
    )
    .await;
    let failed = get(&h, &id(&failing)).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["result"]
            .as_str()
            .unwrap()
            .contains("error rate 0.1% is at or above 0.1%")
    );
    start(
        &h,
        json!({"releaseId": "v3", "environment": "production", "service": "api"}),
    )
    .await;

    let list = |query: &'static str| {
        let h = &h;
        async move {
            let (status, body) = h.get(&format!("/soaks?{query}"), &h.tokens.developer).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["soaks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["releaseId"].as_str().unwrap().to_owned())
                .collect::<Vec<String>>()
        }
    };
    assert_eq!(list("").await, ["v3", "v2", "v1.2.3"]);
    assert_eq!(list("status=passed").await, ["v1.2.3"]);
    assert_eq!(list("status=failed").await, ["v2"]);
    assert_eq!(list("environment=production").await, ["v3"]);
    assert_eq!(list("service=api").await, ["v3"]);
    assert_eq!(list("releaseId=v2&environment=staging").await, ["v2"]);
    assert_eq!(list("limit=1").await, ["v3"]);
    assert!(list("releaseId=v9").await.is_empty());
}

#[tokio::test]
async fn without_the_setting_production_needs_no_soak_and_validations_are_unchanged() {
    let h = Harness::new().await;
    let validation = h.validate("v1.2.3", "staging").await;
    assert_eq!(validation["status"], "passed");
    let names: Vec<&str> = validation["gates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"soak"), "{names:?}");
    h.create_override(
        &h.tokens.eng_lead,
        json!({"action": "deploy.canary.start", "environment": "production", "reason": "CHG-1", "ttlMinutes": 60}),
    )
    .await;
    let (status, started) = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            json!({"releaseId": "v1.2.3", "environment": "production", "deploymentId": "prod-001"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
}

#[tokio::test]
async fn with_the_setting_production_needs_a_passed_soak_in_staging() {
    let h = Harness::with_app_settings(HttpSettings::default(), required()).await;
    let validation = h.validate("v1.2.3", "staging").await;
    assert_eq!(
        validation["status"], "passed",
        "the soak gate passes in staging"
    );
    let gate = soak_gate(&validation);
    assert_eq!(gate["status"], "passed");
    assert_eq!(gate["message"], "not applicable in staging");
    let production = h.validate("v1.2.3", "production").await;
    let gate = soak_gate(&production);
    assert_eq!(gate["status"], "failed", "{production}");

    h.create_override(
        &h.tokens.eng_lead,
        json!({"action": "deploy.canary.start", "environment": "production", "reason": "CHG-1",
               "ttlMinutes": 240, "releaseId": "v1.2.3"}),
    )
    .await;
    let start_production =
        json!({"releaseId": "v1.2.3", "environment": "production", "deploymentId": "prod-001"});
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_production.clone(),
        )
        .await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("SOAK_REQUIRED"),
        None,
    );
    let hints = got.1["error"]["hints"].as_array().unwrap();
    assert!(
        hints[0]
            .as_str()
            .unwrap()
            .contains("deploy-safety soak start --release v1.2.3 --environment staging"),
        "{hints:?}"
    );
    assert_eq!(
        h.audit("action=deploy.canary.start&decision=denied").await[0]["reason"],
        "SOAK_REQUIRED"
    );

    // The gate comes first: a release the override does not cover is 403, soak or not (SPEC §3).
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            json!({"releaseId": "v9", "environment": "production", "deploymentId": "d"}),
        )
        .await;
    assert_eq!(got.0, StatusCode::FORBIDDEN);

    // A failed soak is no soak; a soak of another service does not count for the environment.
    let failing = start(&h, short("v1.2.3")).await;
    one_interval(
        &h,
        &id(&failing),
        json!({"errorRatePercent": 5, "latencyP99Ms": 100, "baselineLatencyP99Ms": 100}),
    )
    .await;
    assert_eq!(get(&h, &id(&failing)).await["status"], "failed");
    let mut payments = short("v1.2.3");
    payments["service"] = json!("payments");
    let payments = start(&h, payments).await;
    assert_eq!(
        soak_to_the_end(&h, &id(&payments)).await["status"],
        "passed"
    );
    let got = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            start_production.clone(),
        )
        .await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("SOAK_REQUIRED"),
        None,
    );

    // A passed soak of the release in staging: the canary starts, the gate passes.
    let soak = start(&h, short("v1.2.3")).await;
    assert_eq!(soak_to_the_end(&h, &id(&soak)).await["status"], "passed");
    let production = h.validate("v1.2.3", "production").await;
    let gate = soak_gate(&production);
    assert_eq!(gate["status"], "passed", "{production}");
    let (status, started) = h
        .post("/canary/start", &h.tokens.developer, start_production)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
}
