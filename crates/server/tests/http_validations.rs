//! Release validation over HTTP (SPEC §7, RUNBOOK "Normal Deploy Flow" steps 1–4): start a
//! validation, run its gates, read the outcome; each built-in gate's reason to fail; the
//! operators' HTTP release gates; concurrent runs share one run.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::{
    API, BUILT_IN_GATES, Harness, START, Target, assert_error, closed_address, gate, gate_statuses,
    send,
};
use deploy_safety_app::{AppSettings, HttpGate};
use deploy_safety_core::StatusRange;
use deploy_safety_server::HttpSettings;
use serde_json::{Value, json};

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

/// Every built-in gate with `status`, except those named in `except` with theirs.
fn expected(status: &str, except: &[(&str, &str)]) -> Vec<(String, String)> {
    BUILT_IN_GATES
        .iter()
        .map(|name| {
            let status = except
                .iter()
                .find(|(n, _)| n == name)
                .map_or(status, |(_, s)| s);
            ((*name).to_owned(), status.to_owned())
        })
        .collect()
}

fn message<'a>(view: &'a Value, name: &str) -> &'a str {
    gate(view, name)["message"].as_str().unwrap()
}

/// A critical probe that fails at its first check (nothing listens at its address).
async fn failing_critical_probe(h: &Harness) {
    let address = closed_address().await;
    h.create_probe(
        &h.tokens.oncall,
        json!({"name": "payments-db", "kind": "tcp", "address": address,
               "failureThreshold": 1, "critical": true}),
    )
    .await;
    h.check_due_probes().await;
    let (status, health) = h.get("/health", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["overallHealth"], "unhealthy");
}

// ---------------------------------------------------------------------------------------------
// The runbook's flow
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn runbook_normal_deploy_flow_start_run_check_verify_health() {
    let h = Harness::new().await;

    // 1. Start release validation: the runbook's body, verbatim.
    let (status, started) = h
        .post(
            "/validations/start",
            &h.tokens.developer,
            json!({"releaseId": "v1.2.3", "environment": "staging"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = id_of(&started);
    assert!(id.starts_with("val_"), "{id}");
    assert_eq!(started["releaseId"], "v1.2.3");
    assert_eq!(started["environment"], "staging");
    assert_eq!(started["createdAt"], START.to_rfc3339());
    assert_eq!(started["createdBy"], "developer");
    assert_eq!(started["status"], "pending");
    assert_eq!(started["runs"], json!([]));
    assert_eq!(gate_statuses(&started), expected("pending", &[]));
    for g in started["gates"].as_array().unwrap() {
        assert_eq!(g["kind"], "builtin");
        assert_eq!(g["durationMs"], 0);
    }
    let (status, shown) = h.get(&format!("/validations/{id}"), &h.tokens.oncall).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, started, "nothing runs until asked");

    // 2. Run release gates.
    h.clock.advance_millis(1_000);
    let reply = h
        .raw(
            Method::POST,
            &format!("{API}/validations/{id}/run"),
            Some(&format!("Bearer {}", h.tokens.developer)),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let ran = reply.json();
    assert_eq!(ran["id"], id.as_str());
    assert_eq!(ran["status"], "passed");
    assert_eq!(gate_statuses(&ran), expected("passed", &[]));
    for g in ran["gates"].as_array().unwrap() {
        assert!(g["message"].as_str().is_some_and(|m| !m.is_empty()), "{g}");
        assert!(g["durationMs"].is_u64(), "{g}");
        assert_eq!(g["kind"], "builtin");
    }
    assert_eq!(
        message(&ran, "environment-parity"),
        "not applicable in staging"
    );
    let runs = ran["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["number"], 1);
    assert_eq!(runs[0]["status"], "passed");
    assert_eq!(runs[0]["startedBy"], "developer");
    assert_eq!(runs[0]["startedAt"], START.plus_millis(1_000).to_rfc3339());
    assert_eq!(runs[0]["finishedAt"], START.plus_millis(1_000).to_rfc3339());
    assert_eq!(runs[0]["gates"], ran["gates"]);

    // 3. Check gate status: the same as the run answered.
    let (status, shown) = h
        .get(&format!("/validations/{id}"), &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, ran);

    // 4. Verify health.
    let (status, health) = h.get("/health", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["overallHealth"], "healthy");

    let entries = h.audit("action=validation.run").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["principal"], "developer");
    assert_eq!(entries[0]["environment"], "staging");
    assert_eq!(entries[0]["decision"], "recorded");
    assert_eq!(entries[0]["reason"], "VALIDATION_PASSED");
    assert_eq!(entries[0]["details"]["validationId"], id.as_str());
    assert_eq!(entries[0]["details"]["run"], 1);
    assert_eq!(entries[0]["details"]["status"], "passed");
    let started = h.audit("action=validation.start").await;
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["details"]["releaseId"], "v1.2.3");
}

#[tokio::test]
async fn running_again_adds_a_run_and_leaves_the_first_unchanged() {
    let h = Harness::new().await;
    let started = h.start_validation("v2.0.0", "staging").await;
    let id = id_of(&started);
    let first = h.run_validation(&id).await;
    assert_eq!(first["status"], "passed");
    let run1 = first["runs"][0].clone();

    h.clock.advance_minutes(2);
    h.check_due_probes().await;
    h.set_threat("high", "active exploitation").await;
    let second = h.run_validation(&id).await;
    let runs = second["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[0], run1,
        "a finished run is a record: it never changes"
    );
    assert_eq!(runs[1]["number"], 2);
    assert_eq!(runs[1]["status"], "failed");
    assert_eq!(runs[1]["startedAt"], START.plus_minutes(2).to_rfc3339());
    assert_eq!(
        second["status"], "failed",
        "the validation shows its latest run"
    );
    assert_eq!(second["gates"], runs[1]["gates"]);

    let (_, shown) = h
        .get(&format!("/validations/{id}"), &h.tokens.developer)
        .await;
    assert_eq!(shown, second);

    let entries = h.audit("action=validation.run").await;
    let reasons: Vec<&str> = entries
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["VALIDATION_FAILED", "VALIDATION_PASSED"]);
    assert_eq!(entries[0]["details"]["run"], 2);
    assert_eq!(entries[0]["details"]["status"], "failed");
}

// ---------------------------------------------------------------------------------------------
// Each gate's reason to fail
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn lockdown_fails_the_security_mode_gate() {
    let h = Harness::new().await;
    h.set_mode("lockdown", Some("Security incident investigation"))
        .await;
    let ran = h.validate("v1.2.3", "staging").await;
    assert_eq!(ran["status"], "failed");
    assert_eq!(
        gate_statuses(&ran),
        expected("passed", &[("security-mode", "failed")])
    );
    let why = message(&ran, "security-mode");
    assert!(why.contains("Security incident investigation"), "{why}");
    let entries = h.audit("action=validation.run").await;
    assert_eq!(entries[0]["reason"], "VALIDATION_FAILED");
    assert_eq!(entries[0]["details"]["status"], "failed");
}

#[tokio::test]
async fn monitor_mode_passes_the_security_mode_gate() {
    let h = Harness::new().await;
    h.set_mode("monitor", None).await;
    let ran = h.validate("v1.2.3", "staging").await;
    assert_eq!(ran["status"], "passed");
    assert!(message(&ran, "security-mode").contains("monitor"));
}

#[tokio::test]
async fn high_threat_fails_the_threat_level_gate_and_medium_does_not() {
    let h = Harness::new().await;
    h.set_threat("medium", "phishing").await;
    let ran = h.validate("v1.2.3", "staging").await;
    assert_eq!(ran["status"], "passed");

    h.set_threat("high", "active exploitation").await;
    let ran = h.validate("v1.2.3", "staging").await;
    assert_eq!(ran["status"], "failed");
    assert_eq!(
        gate_statuses(&ran),
        expected("passed", &[("threat-level", "failed")])
    );
    let why = message(&ran, "threat-level");
    assert!(why.contains("high"), "{why}");
}

#[tokio::test]
async fn a_failing_critical_probe_fails_the_health_gate() {
    let h = Harness::new().await;
    failing_critical_probe(&h).await;
    let ran = h.validate("v1.2.3", "staging").await;
    assert_eq!(ran["status"], "failed");
    assert_eq!(
        gate_statuses(&ran),
        expected("passed", &[("health", "failed")])
    );
    let why = message(&ran, "health");
    assert!(why.contains("unhealthy"), "{why}");
}

#[tokio::test]
async fn a_probe_not_yet_checked_makes_health_degraded_and_fails_the_health_gate() {
    let h = Harness::new().await;
    let target = Target::start(200).await;
    h.create_probe(
        &h.tokens.oncall,
        json!({"name": "api", "kind": "http", "url": target.url("/healthz")}),
    )
    .await;
    let ran = h.validate("v1.2.3", "staging").await;
    assert_eq!(gate(&ran, "health")["status"], "failed");
    assert!(message(&ran, "health").contains("degraded"));

    h.check_due_probes().await;
    let ran = h.validate("v1.2.3", "staging").await;
    assert_eq!(ran["status"], "passed", "{ran}");
}

#[tokio::test]
async fn an_open_critical_incident_for_the_environment_fails_the_incidents_gate() {
    let h = Harness::new().await;
    let (status, opened) = h
        .post(
            "/incidents",
            &h.tokens.developer,
            json!({"title": "Payments down", "severity": "critical",
                   "category": "operational", "environment": "staging"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let incident = id_of(&opened);

    let ran = h.validate("v1.2.3", "staging").await;
    assert_eq!(ran["status"], "failed");
    assert_eq!(
        gate_statuses(&ran),
        expected("passed", &[("incidents", "failed")])
    );
    let why = message(&ran, "incidents");
    assert!(why.contains(&incident), "{why}");

    // A staging incident does not concern production.
    let prod = h.validate("v1.2.3", "production").await;
    assert_eq!(gate(&prod, "incidents")["status"], "passed");

    let (status, _) = h
        .post(
            &format!("/incidents/{incident}/resolve"),
            &h.tokens.developer,
            json!({"reason": "fixed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ran = h.validate("v1.2.3", "staging").await;
    assert_eq!(ran["status"], "passed");
}

#[tokio::test]
async fn a_critical_incident_without_environment_fails_every_environment() {
    let h = Harness::new().await;
    let (status, opened) = h
        .post(
            "/incidents",
            &h.tokens.developer,
            json!({"title": "Region outage", "severity": "critical", "category": "operational"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for environment in ["staging", "production"] {
        let ran = h.validate("v1.2.3", environment).await;
        assert_eq!(gate(&ran, "incidents")["status"], "failed", "{environment}");
        assert!(message(&ran, "incidents").contains(&id_of(&opened)));
    }
    // A non-critical incident does not fail the gate.
    let (status, _) = h
        .post(
            "/incidents",
            &h.tokens.developer,
            json!({"title": "slow", "severity": "high", "category": "operational",
                   "environment": "production"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = h
        .post(
            &format!("/incidents/{}/resolve", id_of(&opened)),
            &h.tokens.developer,
            json!({"reason": "recovered"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ran = h.validate("v1.2.3", "production").await;
    assert_eq!(gate(&ran, "incidents")["status"], "passed");
}

#[tokio::test]
async fn production_needs_a_passed_staging_validation_of_the_same_release() {
    let h = Harness::new().await;
    let prod = h.start_validation("v1.2.3", "production").await;
    let prod_id = id_of(&prod);
    let ran = h.run_validation(&prod_id).await;
    assert_eq!(ran["status"], "failed");
    assert_eq!(
        gate_statuses(&ran),
        expected("passed", &[("environment-parity", "failed")])
    );
    let why = message(&ran, "environment-parity");
    assert!(why.contains("v1.2.3"), "{why}");
    assert!(why.contains("no passed validation in staging"), "{why}");

    // Another release passing staging does not count.
    assert_eq!(h.validate("v1.2.4", "staging").await["status"], "passed");
    let ran = h.run_validation(&prod_id).await;
    assert_eq!(gate(&ran, "environment-parity")["status"], "failed");

    // A failed staging validation of the release does not count either.
    h.set_threat("high", "exploitation").await;
    let staging = h.start_validation("v1.2.3", "staging").await;
    let staging_id = id_of(&staging);
    assert_eq!(h.run_validation(&staging_id).await["status"], "failed");
    h.set_threat("none", "all clear").await;
    let ran = h.run_validation(&prod_id).await;
    assert_eq!(gate(&ran, "environment-parity")["status"], "failed");

    // Once staging passed, production's parity gate passes.
    assert_eq!(h.run_validation(&staging_id).await["status"], "passed");
    let ran = h.run_validation(&prod_id).await;
    assert_eq!(ran["status"], "passed", "{ran}");
    assert_eq!(gate(&ran, "environment-parity")["status"], "passed");
    assert!(message(&ran, "environment-parity").contains("v1.2.3"));
    let runs = ran["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    assert!(runs[..3].iter().all(|r| r["status"] == "failed"));
}

// ---------------------------------------------------------------------------------------------
// Listing and errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_filters_by_release_and_environment_newest_first() {
    let h = Harness::new().await;
    let a = h.start_validation("v1", "staging").await;
    h.clock.advance_millis(1);
    let b = h.start_validation("v1", "production").await;
    h.clock.advance_millis(1);
    let c = h.start_validation("v2", "staging").await;
    let ran = h.run_validation(&id_of(&c)).await;

    let list = |query: &'static str| {
        let h = &h;
        async move {
            let (status, body) = h
                .get(&format!("/validations{query}"), &h.tokens.developer)
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            body["validations"].as_array().unwrap().clone()
        }
    };
    let ids = |list: &[Value]| list.iter().map(id_of).collect::<Vec<_>>();
    let [a, b, c] = [&a, &b, &c].map(id_of);

    let all = list("").await;
    assert_eq!(ids(&all), [c.as_str(), b.as_str(), a.as_str()]);
    assert_eq!(all[0], ran, "each entry is the full view with its runs");
    assert_eq!(all[1]["status"], "pending");
    assert_eq!(ids(&list("?releaseId=v1").await), [b.as_str(), a.as_str()]);
    assert_eq!(
        ids(&list("?environment=staging").await),
        [c.as_str(), a.as_str()]
    );
    assert_eq!(
        ids(&list("?releaseId=v1&environment=production").await),
        [b.as_str()]
    );
    assert!(list("?releaseId=v9").await.is_empty());
    assert_eq!(ids(&list("?limit=1").await), [c.as_str()]);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("environment=qa", "environment"),
        ("release=v1", "release"),
    ] {
        let got = h
            .get(&format!("/validations?{query}"), &h.tokens.developer)
            .await;
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
async fn unknown_validations_are_404() {
    let h = Harness::new().await;
    let got = h.get("/validations/val_nope", &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = h
        .call(
            Method::POST,
            "/validations/val_nope/run",
            Some(&h.tokens.developer),
            None,
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    assert!(h.audit("action=validation.run").await.is_empty());
}

#[tokio::test]
async fn start_refuses_invalid_input_naming_the_field_and_creates_nothing() {
    let h = Harness::new().await;
    for (body, field) in [
        (
            json!({"releaseId": "", "environment": "staging"}),
            "releaseId",
        ),
        (
            json!({"releaseId": "v1 2", "environment": "staging"}),
            "releaseId",
        ),
        (json!({"environment": "staging"}), "releaseId"),
        (
            json!({"releaseId": 123, "environment": "staging"}),
            "releaseId",
        ),
        (
            json!({"releaseId": "v1", "environment": "qa"}),
            "environment",
        ),
        (json!({"releaseId": "v1"}), "environment"),
        (
            json!({"releaseId": "v1", "environment": "staging", "gates": ["health"]}),
            "gates",
        ),
    ] {
        let got = h
            .post("/validations/start", &h.tokens.developer, body.clone())
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    let (_, list) = h.get("/validations", &h.tokens.developer).await;
    assert_eq!(list["validations"], json!([]));
    assert!(h.audit("action=validation.start").await.is_empty());

    let got = h
        .call(
            Method::POST,
            "/validations/start",
            None,
            Some(r#"{"releaseId":"v1","environment":"staging"}"#),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
}

#[tokio::test]
async fn when_the_audit_entry_cannot_be_written_no_validation_starts() {
    let h = Harness::new().await;
    h.db.refuse_audit_writes();
    let got = h
        .post(
            "/validations/start",
            &h.tokens.developer,
            json!({"releaseId": "v1", "environment": "staging"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );
    h.db.allow_audit_writes();
    let (_, list) = h.get("/validations", &h.tokens.developer).await;
    assert_eq!(list["validations"], json!([]));
}

/// SPEC §12 (fail closed) and §13 (a rejected request changes nothing): a run whose audit entry
/// cannot be written answers 503 "nothing was done", so it must leave no run behind, and the
/// next run must proceed as soon as the audit log works again.
#[tokio::test]
async fn a_run_whose_audit_entry_cannot_be_written_leaves_nothing_behind() {
    let h = Harness::with_settings(HttpSettings {
        request_timeout: Duration::from_secs(2),
        ..HttpSettings::default()
    })
    .await;
    let started = h.start_validation("v1.2.3", "staging").await;
    let id = id_of(&started);
    h.db.refuse_audit_writes();
    let got = h
        .call(
            Method::POST,
            &format!("/validations/{id}/run"),
            Some(&h.tokens.developer),
            None,
        )
        .await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );
    h.db.allow_audit_writes();

    let (status, shown) = h
        .get(&format!("/validations/{id}"), &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, started, "the refused run left nothing behind");

    let (status, ran) = h
        .call(
            Method::POST,
            &format!("/validations/{id}/run"),
            Some(&h.tokens.developer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ran}");
    assert_eq!(ran["status"], "passed");
    assert_eq!(ran["runs"].as_array().unwrap().len(), 1);
}

/// SPEC §13: a run cut off by the request time limit (here an HTTP gate slower than the limit)
/// answers 503; the run goes on in the background and finishes, so it does not block the next
/// request, which gets its outcome.
#[tokio::test]
async fn a_run_cut_off_by_the_request_timeout_does_not_block_the_next_run() {
    let target = Target::start(200).await;
    target.hold();
    let h = Harness::with_app_settings(
        HttpSettings {
            request_timeout: Duration::from_millis(500),
            ..HttpSettings::default()
        },
        AppSettings {
            http_gates: vec![HttpGate {
                name: "smoke-tests".to_owned(),
                url: target.url("/smoke"),
                method: "GET".to_owned(),
                expected_status: StatusRange::SUCCESS,
                timeout: Duration::from_secs(3),
            }],
            ..Default::default()
        },
    )
    .await;
    let started = h.start_validation("v1.2.3", "staging").await;
    let id = id_of(&started);
    let run = format!("/validations/{id}/run");
    let got = h
        .call(Method::POST, &run, Some(&h.tokens.developer), None)
        .await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );
    target.release();

    let (status, ran) = h
        .call(Method::POST, &run, Some(&h.tokens.developer), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{ran}");
    assert_eq!(ran["status"], "passed");
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// Five simultaneous `POST /run` share one run: the first claims it, the others wait for its
/// outcome. An HTTP gate whose target holds its answer keeps the run in progress until every
/// request has made its claim (each claim is one store write).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_of_one_validation_share_one_run() {
    let target = Target::start(200).await;
    let h = Harness::with_app_settings(
        HttpSettings::default(),
        AppSettings {
            http_gates: vec![HttpGate {
                name: "smoke-tests".to_owned(),
                url: target.url("/smoke/{releaseId}"),
                method: "GET".to_owned(),
                expected_status: StatusRange::SUCCESS,
                timeout: Duration::from_secs(8),
            }],
            ..Default::default()
        },
    )
    .await;
    let started = h.start_validation("v1.2.3", "staging").await;
    let id = id_of(&started);

    target.hold();
    let writes_before = h.app.store().stats().writes;
    let authorization = format!("Bearer {}", h.tokens.developer);
    let path = format!("{API}/validations/{id}/run");
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let router = h.router.clone();
            let authorization = authorization.clone();
            let path = path.clone();
            tokio::spawn(async move {
                send(&router, Method::POST, &path, Some(&authorization), None).await
            })
        })
        .collect();

    // Wait until all five requests have claimed (one runs, four join), then let the run end.
    target.wait_for_hits(1).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.app.store().stats().writes < writes_before + 5 {
        assert!(
            Instant::now() < deadline,
            "five claims were not made: {} writes",
            h.app.store().stats().writes - writes_before
        );
        tokio::task::yield_now().await;
    }
    target.release();

    let mut numbers = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let body = reply.json();
        assert_eq!(body["status"], "passed", "{body}");
        let runs = body["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{body}");
        numbers.push(runs[0]["number"].clone());
    }
    assert_eq!(numbers, vec![json!(1); 5], "every response shows run 1");
    assert_eq!(target.paths().len(), 1, "the gates ran once");

    let (_, shown) = h
        .get(&format!("/validations/{id}"), &h.tokens.developer)
        .await;
    assert_eq!(shown["runs"].as_array().unwrap().len(), 1);
    assert_eq!(h.audit("action=validation.run").await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// HTTP release gates from the settings
// ---------------------------------------------------------------------------------------------

async fn harness_with_gate(target: &Target, url_path: &str) -> Harness {
    Harness::with_app_settings(
        HttpSettings::default(),
        AppSettings {
            http_gates: vec![HttpGate {
                name: "smoke-tests".to_owned(),
                url: target.url(url_path),
                method: "GET".to_owned(),
                expected_status: StatusRange::SUCCESS,
                timeout: Duration::from_secs(5),
            }],
            ..Default::default()
        },
    )
    .await
}

#[tokio::test]
async fn an_http_gate_answering_2xx_passes_with_the_release_in_its_url() {
    let target = Target::start(200).await;
    let h = harness_with_gate(&target, "/checks/{releaseId}/{environment}").await;

    let started = h.start_validation("v1.2.3", "staging").await;
    let mut names: Vec<(String, String)> = expected("pending", &[]);
    names.push(("smoke-tests".to_owned(), "pending".to_owned()));
    assert_eq!(gate_statuses(&started), names);
    assert_eq!(gate(&started, "smoke-tests")["kind"], "http");
    assert!(target.paths().is_empty(), "starting runs nothing");

    let ran = h.run_validation(&id_of(&started)).await;
    assert_eq!(ran["status"], "passed", "{ran}");
    let smoke = gate(&ran, "smoke-tests");
    assert_eq!(smoke["status"], "passed");
    assert_eq!(smoke["kind"], "http");
    assert!(smoke["durationMs"].is_u64());
    let why = smoke["message"].as_str().unwrap();
    assert!(why.contains("200"), "{why}");
    assert_eq!(target.paths(), ["/checks/v1.2.3/staging"]);

    // The placeholder is URL-encoded.
    let ran = h.validate("v1.2.3+build.7", "staging").await;
    assert_eq!(gate(&ran, "smoke-tests")["status"], "passed");
    assert_eq!(
        target.paths().last().unwrap(),
        "/checks/v1.2.3%2Bbuild.7/staging"
    );
}

#[tokio::test]
async fn an_http_gate_answering_500_fails_naming_the_status() {
    let target = Target::start(500).await;
    let h = harness_with_gate(&target, "/checks/{releaseId}").await;
    let ran = h.validate("v9.9.9", "staging").await;
    assert_eq!(ran["status"], "failed");
    let mut want = expected("passed", &[]);
    want.push(("smoke-tests".to_owned(), "failed".to_owned()));
    assert_eq!(gate_statuses(&ran), want);
    let why = message(&ran, "smoke-tests");
    assert!(why.contains("500"), "{why}");
    assert_eq!(target.paths(), ["/checks/v9.9.9"]);

    let entries = h.audit("action=validation.run").await;
    assert_eq!(entries[0]["reason"], "VALIDATION_FAILED");
    assert_eq!(
        entries[0]["details"]["gates"][6]["name"], "smoke-tests",
        "the audit entry keeps each gate's result"
    );
    assert_eq!(entries[0]["details"]["gates"][6]["status"], "failed");

    // A redirect is an answer outside 2xx, not a detour.
    target.set_status(302);
    let ran = h.validate("v9.9.9", "staging").await;
    assert_eq!(gate(&ran, "smoke-tests")["status"], "failed");
    assert!(message(&ran, "smoke-tests").contains("302"));

    target.set_status(204);
    let ran = h.validate("v9.9.9", "staging").await;
    assert_eq!(ran["status"], "passed");
}

#[tokio::test]
async fn an_http_gate_that_cannot_be_reached_fails() {
    let address = closed_address().await;
    let h = Harness::with_app_settings(
        HttpSettings::default(),
        AppSettings {
            http_gates: vec![HttpGate {
                name: "change-freeze".to_owned(),
                url: format!("http://{address}/freeze"),
                method: "GET".to_owned(),
                expected_status: StatusRange::SUCCESS,
                timeout: Duration::from_secs(2),
            }],
            ..Default::default()
        },
    )
    .await;
    let ran = h.validate("v1", "staging").await;
    assert_eq!(ran["status"], "failed");
    assert_eq!(gate(&ran, "change-freeze")["status"], "failed");
    assert!(
        message(&ran, "change-freeze").contains(&address),
        "the message names where it asked: {ran}"
    );
}

#[tokio::test]
async fn an_http_gate_that_does_not_answer_within_its_timeout_fails() {
    let target = Target::start(200).await;
    target.hold();
    let h = Harness::with_app_settings(
        HttpSettings::default(),
        AppSettings {
            http_gates: vec![HttpGate {
                name: "slow-check".to_owned(),
                url: target.url("/slow"),
                method: "GET".to_owned(),
                expected_status: StatusRange::SUCCESS,
                timeout: Duration::from_millis(300),
            }],
            ..Default::default()
        },
    )
    .await;
    let ran = h.validate("v1", "staging").await;
    target.release();
    assert_eq!(ran["status"], "failed");
    let slow = gate(&ran, "slow-check");
    assert_eq!(slow["status"], "failed");
    let why = slow["message"].as_str().unwrap();
    assert!(why.contains("300 ms"), "{why}");
    assert!(slow["durationMs"].as_u64().unwrap() >= 300, "{slow}");
    assert_eq!(target.paths(), ["/slow"]);
}

#[tokio::test]
async fn openapi_documents_the_validation_operations() {
    let h = Harness::new().await;
    let doc = h
        .raw(Method::GET, &format!("{API}/openapi.json"), None, None)
        .await
        .json();
    let paths = &doc["paths"];
    let codes = |path: &str, method: &str| -> Vec<String> {
        let operation = &paths[format!("{API}{path}")][method];
        assert_eq!(operation["tags"], json!(["validations"]), "{method} {path}");
        operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is documented"))
            .keys()
            .cloned()
            .collect()
    };
    assert!(codes("/validations/start", "post").contains(&"201".to_owned()));
    let run = codes("/validations/{id}/run", "post");
    assert!(run.contains(&"200".to_owned()) && run.contains(&"404".to_owned()));
    assert!(codes("/validations/{id}", "get").contains(&"404".to_owned()));
    assert!(codes("/validations", "get").contains(&"200".to_owned()));
    let params: Vec<&str> = paths[format!("{API}/validations")]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["releaseId", "environment", "limit"] {
        assert!(
            params.contains(&name),
            "GET /validations documents `{name}`"
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["CheckStatus"]["enum"],
        json!(["pending", "passed", "failed"])
    );
    assert_eq!(
        schemas["ValidationStatus"]["enum"],
        json!(["pending", "running", "passed", "failed"])
    );
    assert_eq!(schemas["GateKind"]["enum"], json!(["builtin", "http"]));
    for name in [
        "ValidationView",
        "StartValidationRequest",
        "GateResult",
        "ValidationRun",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
}
