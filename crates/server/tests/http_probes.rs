//! Health probes over HTTP (SPEC §8, §13, RUNBOOK "Troubleshooting / Health Probes Failing"):
//! add, list, show with history, delete; the built-in database probe; `GET /health`.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{API, Harness, START, Target, assert_error, closed_address, open_address};
use serde_json::{Value, json};

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

async fn probes(h: &Harness) -> Vec<Value> {
    let (status, body) = h.get("/probes", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["probes"].as_array().unwrap().clone()
}

async fn health(h: &Harness) -> (StatusCode, Value) {
    h.get("/health", &h.tokens.developer).await
}

async fn anonymous_health(h: &Harness) -> (StatusCode, Value) {
    let reply = h
        .raw(Method::GET, &format!("{API}/health"), None, None)
        .await;
    (reply.status, reply.json())
}

/// The `/health` summary of the probe called `name`.
fn summary<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no probe `{name}` in {health}"))
}

// ---------------------------------------------------------------------------------------------
// Creating probes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_http_probe_is_created_with_the_defaults() {
    let h = Harness::new().await;
    let (status, created) = h
        .post(
            "/probes",
            &h.tokens.oncall,
            json!({"name": "checkout-api", "kind": "http",
                   "url": "http://127.0.0.1:9/healthz"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(id_of(&created).starts_with("prb_"), "{created}");
    assert_eq!(created["name"], "checkout-api");
    assert_eq!(created["kind"], "http");
    assert_eq!(created["target"], "http://127.0.0.1:9/healthz");
    assert_eq!(created["method"], "GET");
    assert_eq!(created["expectedStatus"], json!({"min": 200, "max": 299}));
    assert_eq!(created["timeoutMs"], 2000);
    assert_eq!(created["intervalMs"], 10000);
    assert_eq!(created["failureThreshold"], 3);
    assert_eq!(created["successThreshold"], 1);
    assert_eq!(created["critical"], false);
    assert_eq!(created["source"], "api");
    assert_eq!(created["status"], "unknown");
    assert_eq!(created["stale"], false);
    assert_eq!(created["consecutiveFailures"], 0);
    assert_eq!(created["lastCheckedAt"], Value::Null);
    assert_eq!(created["lastError"], Value::Null);
    assert_eq!(created["createdBy"], "oncall-lead");
    assert_eq!(created["createdAt"], START.to_rfc3339());
    assert_eq!(
        created["nextCheckAt"],
        START.to_rfc3339(),
        "checked at once"
    );

    let entries = h.audit("action=probe.create&principal=oncall-lead").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["decision"], "allowed");
    assert_eq!(entries[0]["details"]["probe"]["id"], created["id"]);
}

#[tokio::test]
async fn an_http_probe_takes_its_settings_from_the_request() {
    let h = Harness::new().await;
    let created = h
        .create_probe(
            &h.tokens.eng_lead,
            json!({"name": "edge", "kind": "http", "url": "https://edge.example.com/ping",
                   "method": "head", "expectedStatus": "204", "timeoutMs": 500,
                   "intervalMs": 5000, "failureThreshold": 2, "successThreshold": 3,
                   "critical": true}),
        )
        .await;
    assert_eq!(created["method"], "HEAD");
    assert_eq!(created["expectedStatus"], json!({"min": 204, "max": 204}));
    assert_eq!(created["timeoutMs"], 500);
    assert_eq!(created["intervalMs"], 5000);
    assert_eq!(created["failureThreshold"], 2);
    assert_eq!(created["successThreshold"], 3);
    assert_eq!(created["critical"], true);
}

#[tokio::test]
async fn a_tcp_probe_is_created_with_its_address() {
    let h = Harness::new().await;
    let created = h
        .create_probe(
            &h.tokens.security,
            json!({"name": "redis", "kind": "tcp", "address": "127.0.0.1:6379"}),
        )
        .await;
    assert_eq!(created["kind"], "tcp");
    assert_eq!(created["target"], "127.0.0.1:6379");
    assert_eq!(created["method"], Value::Null);
    assert_eq!(created["expectedStatus"], Value::Null);
    assert_eq!(created["timeoutMs"], 2000);
    assert_eq!(created["intervalMs"], 10000);
    assert_eq!(created["failureThreshold"], 3);
    assert_eq!(created["source"], "api");
    assert_eq!(created["status"], "unknown");
    assert_eq!(created["createdBy"], "security-team");
}

#[tokio::test]
async fn invalid_probes_are_400_naming_the_field_and_create_nothing() {
    let h = Harness::new().await;
    let before = probes(&h).await;
    let http = |extra: Value| {
        let mut body = json!({"name": "p", "kind": "http", "url": "http://127.0.0.1:8080/"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (json!({"name": "p", "kind": "http"}), "url"),
        (http(json!({"url": "ftp://files.example.com/x"})), "url"),
        (http(json!({"url": "file:///etc/passwd"})), "url"),
        (http(json!({"url": "not a url"})), "url"),
        (json!({"name": "p", "kind": "tcp"}), "address"),
        (
            json!({"name": "p", "kind": "tcp", "address": "127.0.0.1"}),
            "address",
        ),
        (
            json!({"name": "p", "kind": "tcp", "address": "db:0"}),
            "address",
        ),
        (
            json!({"name": "p", "kind": "tcp", "address": ":5432"}),
            "address",
        ),
        (
            json!({"name": "p", "kind": "tcp", "address": "db:5432", "url": "http://x/"}),
            "url",
        ),
        (http(json!({"address": "db:5432"})), "address"),
        (http(json!({"expectedStatus": "abc"})), "expectedStatus"),
        (http(json!({"expectedStatus": "299-200"})), "expectedStatus"),
        (http(json!({"method": "TRACE"})), "method"),
        (
            http(json!({"timeoutMs": 5000, "intervalMs": 2000})),
            "timeoutMs",
        ),
        (http(json!({"timeoutMs": 0})), "timeoutMs"),
        (http(json!({"intervalMs": 500})), "intervalMs"),
        (http(json!({"intervalMs": 3_600_001})), "intervalMs"),
        (http(json!({"failureThreshold": 0})), "failureThreshold"),
        (http(json!({"successThreshold": 0})), "successThreshold"),
        (http(json!({"failureThreshold": -1})), "failureThreshold"),
        (http(json!({"critical": "yes"})), "critical"),
        (json!({"name": "p", "kind": "database"}), "kind"),
        (
            json!({"name": "p", "kind": "icmp", "address": "db:1"}),
            "kind",
        ),
        (json!({"kind": "tcp", "address": "db:5432"}), "name"),
        (
            json!({"name": "", "kind": "tcp", "address": "db:5432"}),
            "name",
        ),
        (http(json!({"headers": {"x": "y"}})), "headers"),
    ];
    for (body, field) in cases {
        let got = h.post("/probes", &h.tokens.security, body.clone()).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    assert_eq!(probes(&h).await, before, "rejected requests create nothing");
    assert!(
        h.audit("action=probe.create&principal=security-team")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_second_probe_with_the_same_name_is_409() {
    let h = Harness::new().await;
    let first = h
        .create_probe(
            &h.tokens.oncall,
            json!({"name": "redis", "kind": "tcp", "address": "127.0.0.1:6379"}),
        )
        .await;
    let got = h
        .post(
            "/probes",
            &h.tokens.eng_lead,
            json!({"name": "redis", "kind": "http", "url": "http://127.0.0.1/"}),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", None, None);
    let got = h
        .post(
            "/probes",
            &h.tokens.eng_lead,
            json!({"name": "database", "kind": "tcp", "address": "127.0.0.1:5432"}),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", None, None);

    let (_, shown) = h.get("/probes/redis", &h.tokens.developer).await;
    assert_eq!(shown["id"], first["id"]);
    assert_eq!(shown["kind"], "tcp", "the first probe is untouched");
    assert_eq!(probes(&h).await.len(), 2);
}

#[tokio::test]
async fn developers_may_not_add_or_remove_probes_and_refusals_are_audited() {
    let h = Harness::new().await;
    let got = h
        .post(
            "/probes",
            &h.tokens.developer,
            json!({"name": "mine", "kind": "tcp", "address": "127.0.0.1:6379"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("ROLE_NOT_PERMITTED"),
        None,
    );
    assert!(
        probes(&h).await.iter().all(|p| p["name"] != "mine"),
        "nothing was created"
    );
    let denied = h.audit("action=probe.create&decision=denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["principal"], "developer");
    assert_eq!(denied[0]["reason"], "ROLE_NOT_PERMITTED");

    // 400 comes before 403: an invalid body is reported as such, whoever sends it.
    let got = h
        .post(
            "/probes",
            &h.tokens.developer,
            json!({"name": "mine", "kind": "tcp"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("address"),
    );

    let created = h
        .create_probe(
            &h.tokens.oncall,
            json!({"name": "redis", "kind": "tcp", "address": "127.0.0.1:6379"}),
        )
        .await;
    let got = h
        .delete(&format!("/probes/{}", id_of(&created)), &h.tokens.developer)
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("ROLE_NOT_PERMITTED"),
        None,
    );
    let (status, _) = h
        .get(&format!("/probes/{}", id_of(&created)), &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK, "the probe is still there");
    // 403 comes before 404.
    let got = h.delete("/probes/prb_nope", &h.tokens.developer).await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("ROLE_NOT_PERMITTED"),
        None,
    );
    let denied = h.audit("action=probe.delete&decision=denied").await;
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0]["principal"], "developer");
    assert_eq!(denied[0]["reason"], "ROLE_NOT_PERMITTED");
}

#[tokio::test]
async fn probe_endpoints_need_a_token() {
    let h = Harness::new().await;
    for (method, path, body) in [
        (
            Method::POST,
            "/probes",
            Some(r#"{"name":"x","kind":"tcp","address":"127.0.0.1:1"}"#),
        ),
        (Method::GET, "/probes", None),
        (Method::GET, "/probes/database", None),
        (Method::DELETE, "/probes/database", None),
    ] {
        let got = h.call(method.clone(), path, None, body).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    }
    assert_eq!(probes(&h).await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Listing, showing, deleting
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_list_shows_the_built_in_database_probe_and_api_probes() {
    let h = Harness::new().await;
    let listed = probes(&h).await;
    assert_eq!(listed.len(), 1);
    let database = &listed[0];
    assert_eq!(database["name"], "database");
    assert_eq!(database["kind"], "database");
    assert_eq!(database["source"], "builtin");
    assert_eq!(database["critical"], true);
    assert_eq!(database["status"], "healthy");
    assert_eq!(database["stale"], false);
    assert_eq!(database["lastCheckedAt"], START.to_rfc3339());
    assert!(database.get("history").is_none(), "the list has no history");

    let redis = h
        .create_probe(
            &h.tokens.oncall,
            json!({"name": "redis", "kind": "tcp", "address": "127.0.0.1:6379"}),
        )
        .await;
    let api = h
        .create_probe(
            &h.tokens.eng_lead,
            json!({"name": "api", "kind": "http", "url": "http://127.0.0.1:1/"}),
        )
        .await;
    let listed = probes(&h).await;
    assert_eq!(listed.len(), 3);
    for created in [&redis, &api] {
        let found = listed.iter().find(|p| p["id"] == created["id"]).unwrap();
        assert_eq!(found, created, "listed as created");
        assert_eq!(found["source"], "api");
    }
}

#[tokio::test]
async fn probe_detail_by_id_or_name_has_the_history_newest_first() {
    let h = Harness::new().await;
    let target = Target::start(200).await;
    let created = h
        .create_probe(
            &h.tokens.oncall,
            json!({"name": "checkout", "kind": "http", "url": target.url("/healthz"),
                   "failureThreshold": 2}),
        )
        .await;
    let id = id_of(&created);

    h.check_due_probes().await;
    let (_, shown) = h.get(&format!("/probes/{id}"), &h.tokens.developer).await;
    assert_eq!(shown["status"], "healthy");
    assert_eq!(shown["lastCheckedAt"], START.to_rfc3339());
    assert_eq!(shown["nextCheckAt"], START.plus_millis(10_000).to_rfc3339());

    target.set_status(503);
    h.clock.advance_millis(10_000);
    h.check_due_probes().await;
    let (_, shown) = h.get(&format!("/probes/{id}"), &h.tokens.developer).await;
    assert_eq!(
        shown["status"], "healthy",
        "one failure is below the threshold"
    );
    assert_eq!(shown["consecutiveFailures"], 1);
    let error = shown["lastError"].as_str().unwrap();
    assert!(error.contains("503"), "{error}");

    h.clock.advance_millis(10_000);
    h.check_due_probes().await;
    let (status, shown) = h.get(&format!("/probes/{id}"), &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["status"], "failing");
    assert_eq!(shown["consecutiveFailures"], 2);
    assert_eq!(
        shown["lastCheckedAt"],
        START.plus_millis(20_000).to_rfc3339()
    );
    let history = shown["history"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = history
        .iter()
        .map(|r| (r["at"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    let at = |ms| START.plus_millis(ms).to_rfc3339();
    let (t0, t1, t2) = (at(0), at(10_000), at(20_000));
    assert_eq!(
        seen,
        [
            (t2.as_str(), "failure"),
            (t1.as_str(), "failure"),
            (t0.as_str(), "success")
        ],
        "newest first"
    );
    assert!(history[0]["error"].as_str().unwrap().contains("503"));
    assert_eq!(history[2]["error"], Value::Null);
    assert!(history.iter().all(|r| r["latencyMs"].is_u64()));

    // By name, the same probe.
    let (status, by_name) = h.get("/probes/checkout", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_name, shown);

    // It recovers after successThreshold (1) success.
    target.set_status(200);
    h.clock.advance_millis(10_000);
    h.check_due_probes().await;
    let (_, shown) = h.get("/probes/checkout", &h.tokens.developer).await;
    assert_eq!(shown["status"], "healthy");
    assert_eq!(shown["lastError"], Value::Null);
    assert_eq!(shown["history"].as_array().unwrap().len(), 4);
    assert_eq!(target.paths().len(), 4);
}

#[tokio::test]
async fn the_runbook_database_probe_detail_is_found_by_name() {
    let h = Harness::new().await;
    h.clock.advance_millis(10_000);
    h.check_due_probes().await;
    let (status, database) = h.get("/probes/database", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "{database}");
    assert_eq!(database["name"], "database");
    assert_eq!(database["source"], "builtin");
    assert_eq!(database["critical"], true);
    assert_eq!(database["status"], "healthy");
    let history = database["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["at"], START.plus_millis(10_000).to_rfc3339());
    assert_eq!(history[1]["at"], START.to_rfc3339());
    assert!(history.iter().all(|r| r["outcome"] == "success"));

    let (status, by_id) = h
        .get(
            &format!("/probes/{}", id_of(&database)),
            &h.tokens.developer,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id, database);
}

#[tokio::test]
async fn unknown_probes_are_404() {
    let h = Harness::new().await;
    let got = h.get("/probes/prb_nope", &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = h.delete("/probes/prb_nope", &h.tokens.oncall).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
}

#[tokio::test]
async fn delete_removes_an_api_probe() {
    let h = Harness::new().await;
    let created = h
        .create_probe(
            &h.tokens.oncall,
            json!({"name": "redis", "kind": "tcp", "address": "127.0.0.1:6379"}),
        )
        .await;
    let id = id_of(&created);
    let (status, deleted) = h.delete(&format!("/probes/{id}"), &h.tokens.eng_lead).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["id"], id.as_str());
    assert_eq!(deleted["name"], "redis");

    let got = h.get(&format!("/probes/{id}"), &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = h.delete(&format!("/probes/{id}"), &h.tokens.eng_lead).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    assert!(probes(&h).await.iter().all(|p| p["name"] != "redis"));

    let entries = h.audit("action=probe.delete&decision=allowed").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["principal"], "eng-lead");
    assert_eq!(entries[0]["details"]["probeId"], id.as_str());

    // The name is free again; a probe can also be deleted by name.
    h.create_probe(
        &h.tokens.oncall,
        json!({"name": "redis", "kind": "tcp", "address": "127.0.0.1:6380"}),
    )
    .await;
    let (status, _) = h.delete("/probes/redis", &h.tokens.security).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(probes(&h).await.len(), 1);
}

#[tokio::test]
async fn the_built_in_database_probe_cannot_be_deleted() {
    let h = Harness::new().await;
    let database = probes(&h).await[0].clone();
    for key in [id_of(&database), "database".to_owned()] {
        let got = h
            .delete(&format!("/probes/{key}"), &h.tokens.security)
            .await;
        assert_error(
            &got,
            StatusCode::CONFLICT,
            "conflict",
            Some("NOT_MANAGED_BY_API"),
            None,
        );
    }
    let listed = probes(&h).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "database");
    assert!(h.audit("action=probe.delete").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// GET /health
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_lists_every_probe_with_its_status_and_staleness() {
    let h = Harness::new().await;
    let address = open_address().await;
    h.create_probe(
        &h.tokens.oncall,
        json!({"name": "redis", "kind": "tcp", "address": address, "critical": true}),
    )
    .await;

    // Not checked yet: unknown, and the service is degraded.
    let (status, body) = health(&h).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["overallHealth"], "degraded");
    let redis = summary(&body, "redis");
    assert_eq!(redis["status"], "unknown");
    assert_eq!(redis["stale"], false);
    assert_eq!(redis["kind"], "tcp");
    assert_eq!(redis["critical"], true);
    assert_eq!(redis["lastCheckedAt"], Value::Null);

    h.check_due_probes().await;
    let (status, body) = health(&h).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["overallHealth"], "healthy");
    assert_eq!(body["probes"].as_array().unwrap().len(), 2);
    let redis = summary(&body, "redis");
    assert_eq!(redis["status"], "healthy");
    assert_eq!(redis["lastCheckedAt"], START.to_rfc3339());
    assert_eq!(redis["lastError"], Value::Null);
    assert_eq!(summary(&body, "database")["status"], "healthy");

    // Nobody checks for about three intervals: the results are stale, which counts as failing.
    h.clock.advance_millis(3 * 10_000 + 2_000 + 1);
    let (status, body) = health(&h).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["overallHealth"], "unhealthy");
    assert_eq!(summary(&body, "redis")["stale"], true);
    assert_eq!(summary(&body, "database")["stale"], true);
    assert_eq!(summary(&body, "redis")["status"], "healthy");

    h.check_due_probes().await;
    let (status, body) = health(&h).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["overallHealth"], "healthy");
    assert_eq!(summary(&body, "redis")["stale"], false);
}

#[tokio::test]
async fn a_failing_critical_probe_makes_the_service_unhealthy_with_503() {
    let h = Harness::new().await;
    let address = closed_address().await;
    h.create_probe(
        &h.tokens.oncall,
        json!({"name": "payments-db", "kind": "tcp", "address": address,
               "failureThreshold": 1, "critical": true}),
    )
    .await;
    h.check_due_probes().await;

    let (status, body) = health(&h).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["overallHealth"], "unhealthy");
    let failing = summary(&body, "payments-db");
    assert_eq!(failing["status"], "failing");
    assert_eq!(failing["critical"], true);
    assert_eq!(failing["stale"], false);
    assert!(failing["lastError"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(summary(&body, "database")["status"], "healthy");

    let (status, body) = anonymous_health(&h).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({"overallHealth": "unhealthy"}));
}

#[tokio::test]
async fn a_failing_non_critical_probe_makes_the_service_degraded_with_200() {
    let h = Harness::new().await;
    let target = Target::start(500).await;
    h.create_probe(
        &h.tokens.oncall,
        json!({"name": "search", "kind": "http", "url": target.url("/health"),
               "failureThreshold": 1}),
    )
    .await;
    h.check_due_probes().await;

    let (status, body) = health(&h).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["overallHealth"], "degraded");
    let search = summary(&body, "search");
    assert_eq!(search["status"], "failing");
    assert_eq!(search["critical"], false);
    assert!(search["lastError"].as_str().unwrap().contains("500"));

    let (status, body) = anonymous_health(&h).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"overallHealth": "degraded"}));

    // Deleting the probe restores health.
    let (status, _) = h.delete("/probes/search", &h.tokens.oncall).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = anonymous_health(&h).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"overallHealth": "healthy"}));
}

#[tokio::test]
async fn a_probe_that_does_not_answer_within_its_timeout_fails() {
    let h = Harness::new().await;
    let target = Target::start(200).await;
    target.hold();
    h.create_probe(
        &h.tokens.oncall,
        json!({"name": "slow", "kind": "http", "url": target.url("/slow"),
               "timeoutMs": 200, "failureThreshold": 1}),
    )
    .await;
    h.check_due_probes().await;
    target.release();
    let (_, shown) = h.get("/probes/slow", &h.tokens.developer).await;
    assert_eq!(shown["status"], "failing");
    let error = shown["lastError"].as_str().unwrap();
    assert!(error.contains("200 ms"), "{error}");
    assert!(shown["history"][0]["latencyMs"].as_u64().unwrap() >= 200);
}

#[tokio::test]
async fn probes_keep_running_in_lockdown() {
    let h = Harness::new().await;
    h.set_mode("lockdown", Some("investigation")).await;
    let address = closed_address().await;
    h.create_probe(
        &h.tokens.security,
        json!({"name": "queue", "kind": "tcp", "address": address, "failureThreshold": 1}),
    )
    .await;
    h.check_due_probes().await;
    let (_, shown) = h.get("/probes/queue", &h.tokens.developer).await;
    assert_eq!(shown["status"], "failing");
    assert_eq!(shown["history"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn when_the_audit_entry_cannot_be_written_no_probe_changes() {
    let h = Harness::new().await;
    let kept = h
        .create_probe(
            &h.tokens.oncall,
            json!({"name": "redis", "kind": "tcp", "address": "127.0.0.1:6379"}),
        )
        .await;
    h.db.refuse_audit_writes();
    let got = h
        .post(
            "/probes",
            &h.tokens.oncall,
            json!({"name": "queue", "kind": "tcp", "address": "127.0.0.1:5672"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );
    let got = h.delete("/probes/redis", &h.tokens.oncall).await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );
    h.db.allow_audit_writes();

    let names: Vec<Value> = probes(&h).await.iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&json!("redis")) && names.contains(&json!("database")));
    let (status, still) = h.get("/probes/redis", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still["id"], kept["id"]);
}

#[tokio::test]
async fn openapi_documents_the_probe_operations() {
    let h = Harness::new().await;
    let doc = h
        .raw(Method::GET, &format!("{API}/openapi.json"), None, None)
        .await
        .json();
    let paths = &doc["paths"];
    let codes = |path: &str, method: &str| -> Vec<String> {
        let operation = &paths[format!("{API}{path}")][method];
        assert_eq!(operation["tags"], json!(["probes"]), "{method} {path}");
        operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is documented"))
            .keys()
            .cloned()
            .collect()
    };
    let create = codes("/probes", "post");
    for code in ["201", "400", "403", "409"] {
        assert!(create.contains(&code.to_owned()), "POST /probes {code}");
    }
    assert!(codes("/probes", "get").contains(&"200".to_owned()));
    assert!(codes("/probes/{id}", "get").contains(&"404".to_owned()));
    let delete = codes("/probes/{id}", "delete");
    for code in ["200", "403", "404", "409"] {
        assert!(
            delete.contains(&code.to_owned()),
            "DELETE /probes/{{id}} {code}"
        );
    }
    let health = &paths[format!("{API}/health")]["get"]["responses"];
    assert!(health["200"].is_object() && health["503"].is_object());
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["ProbeKind"]["enum"],
        json!(["http", "tcp", "database"])
    );
    assert_eq!(
        schemas["ProbeSource"]["enum"],
        json!(["builtin", "config", "api"])
    );
    assert_eq!(
        schemas["ProbeStatus"]["enum"],
        json!(["unknown", "healthy", "failing"])
    );
    assert_eq!(
        schemas["OverallHealth"]["enum"],
        json!(["healthy", "degraded", "unhealthy"])
    );
    for name in [
        "ProbeView",
        "ProbeList",
        "CreateProbeRequest",
        "HealthReport",
        "ProbeSummary",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
}
