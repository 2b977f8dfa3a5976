//! Health, identity, the OpenAPI document and metrics over HTTP (SPEC §2, §8).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode, header};
use common::{API, Harness};
use serde_json::{Value, json};

#[tokio::test]
async fn health_without_a_token_answers_overall_health_alone() {
    let h = Harness::new().await;
    let reply = h
        .raw(Method::GET, &format!("{API}/health"), None, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({"overallHealth": "healthy"}));
}

#[tokio::test]
async fn health_with_a_token_shows_the_probes() {
    let h = Harness::new().await;
    let (status, body) = h.get("/health", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["overallHealth"], "healthy");
    let probes = body["probes"].as_array().unwrap();
    let database = probes.iter().find(|p| p["name"] == "database").unwrap();
    assert_eq!(database["kind"], "database");
    assert_eq!(database["critical"], true);
    assert_eq!(database["status"], "healthy");
    assert_eq!(database["stale"], false);
    assert!(database["lastCheckedAt"].is_string());

    let got = h
        .call(Method::GET, "/health", Some("not-a-token"), None)
        .await;
    common::assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
}

#[tokio::test]
async fn whoami_names_the_principal_role_and_token_id() {
    let h = Harness::new().await;
    for (token, name, role) in [
        (&h.tokens.security, "security-team", "security-team"),
        (&h.tokens.eng_lead, "eng-lead", "eng-lead"),
        (&h.tokens.eng_lead_2, "eng-lead-2", "eng-lead"),
        (&h.tokens.oncall, "oncall-lead", "oncall-lead"),
        (&h.tokens.developer, "developer", "developer"),
    ] {
        let (status, body) = h.get("/auth/whoami", token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["name"], name);
        assert_eq!(body["role"], role);
        let token_id = body["tokenId"].as_str().unwrap();
        assert!(!token_id.is_empty());
        assert!(token.contains(token_id), "the token id is its public part");
        assert!(
            !body.to_string().contains(token.as_str()),
            "the secret is never echoed"
        );
    }
}

/// Every (method, path) the router serves.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/deploy-safety/security-gate/status"),
    ("post", "/api/deploy-safety/security-gate/mode"),
    ("post", "/api/deploy-safety/security-gate/threat-level"),
    ("post", "/api/deploy-safety/security-gate/override"),
    ("get", "/api/deploy-safety/security-gate/overrides"),
    ("get", "/api/deploy-safety/security-gate/override/{id}"),
    ("delete", "/api/deploy-safety/security-gate/override/{id}"),
    ("post", "/api/deploy-safety/security-gate/check"),
    ("post", "/api/deploy-safety/security-gate/override-requests"),
    ("get", "/api/deploy-safety/security-gate/override-requests"),
    (
        "get",
        "/api/deploy-safety/security-gate/override-requests/{id}",
    ),
    (
        "post",
        "/api/deploy-safety/security-gate/override-requests/{id}/approve",
    ),
    (
        "post",
        "/api/deploy-safety/security-gate/override-requests/{id}/deny",
    ),
    ("get", "/api/deploy-safety/audit"),
    ("get", "/api/deploy-safety/audit/verify"),
    ("get", "/api/deploy-safety/audit/public-key"),
    ("get", "/api/deploy-safety/audit/checkpoints/latest"),
    ("get", "/api/deploy-safety/health"),
    ("get", "/api/deploy-safety/auth/whoami"),
    ("get", "/api/deploy-safety/auth/login"),
    ("get", "/api/deploy-safety/auth/callback"),
    ("post", "/api/deploy-safety/auth/logout"),
    ("get", "/api/deploy-safety/openapi.json"),
    ("post", "/api/deploy-safety/incidents"),
    ("get", "/api/deploy-safety/incidents"),
    ("get", "/api/deploy-safety/incidents/{id}"),
    ("post", "/api/deploy-safety/incidents/{id}/escalate"),
    ("post", "/api/deploy-safety/incidents/{id}/resolve"),
    ("post", "/api/deploy-safety/validations/start"),
    ("post", "/api/deploy-safety/validations/{id}/run"),
    ("get", "/api/deploy-safety/validations/{id}"),
    ("get", "/api/deploy-safety/validations"),
    ("post", "/api/deploy-safety/probes"),
    ("get", "/api/deploy-safety/probes"),
    ("get", "/api/deploy-safety/probes/{id}"),
    ("delete", "/api/deploy-safety/probes/{id}"),
    ("post", "/api/deploy-safety/canary/start"),
    ("get", "/api/deploy-safety/canary/{environment}"),
    ("post", "/api/deploy-safety/canary/promote"),
    ("post", "/api/deploy-safety/canary/{environment}/metrics"),
    ("get", "/api/deploy-safety/canaries"),
    ("post", "/api/deploy-safety/rollback/create"),
    ("post", "/api/deploy-safety/rollback/{id}/execute"),
    ("get", "/api/deploy-safety/rollback/{id}"),
    ("get", "/api/deploy-safety/rollbacks"),
    ("get", "/api/deploy-safety/releases/{environment}"),
    ("post", "/api/deploy-safety/load-shedding"),
    ("get", "/api/deploy-safety/load-shedding/{environment}"),
    ("post", "/api/deploy-safety/freezes"),
    ("get", "/api/deploy-safety/freezes"),
    ("get", "/api/deploy-safety/freezes/{id}"),
    ("delete", "/api/deploy-safety/freezes/{id}"),
    ("get", "/api/deploy-safety/environments"),
    ("post", "/api/deploy-safety/soaks"),
    ("get", "/api/deploy-safety/soaks"),
    ("get", "/api/deploy-safety/soaks/{id}"),
    ("post", "/api/deploy-safety/soaks/{id}/metrics"),
    ("post", "/api/deploy-safety/soaks/{id}/abort"),
    ("get", "/api/deploy-safety/events"),
    ("get", "/api/deploy-safety/integrations/decision"),
    ("post", "/api/deploy-safety/integrations/decision"),
    ("post", "/api/deploy-safety/integrations/flagger/{hook}"),
    (
        "post",
        "/api/deploy-safety/integrations/github/deployment-protection-rule",
    ),
    ("get", "/api/deploy-safety/integrations/github/pending"),
    ("get", "/metrics"),
];

#[tokio::test]
async fn openapi_document_needs_no_token_and_lists_every_route() {
    let h = Harness::new().await;
    let reply = h
        .raw(Method::GET, &format!("{API}/openapi.json"), None, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["title"], "deploy-safety");
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| {
                    ["get", "post", "put", "delete", "patch", "head", "options"]
                        .contains(&k.as_str())
                })
                .map(|method| (method.clone(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);

    // Protected operations declare the bearer scheme; health and the document do not need it.
    for (method, path) in ROUTES {
        let operation = &doc["paths"][*path][*method];
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        // GitHub proves itself with the signed body, not a token.
        let open = path.ends_with("/health")
            || path.ends_with("/openapi.json")
            // A person signing in has no credential yet.
            || path.ends_with("/auth/login")
            || path.ends_with("/auth/callback")
            || path.ends_with("/deployment-protection-rule");
        assert_eq!(secured, !open, "{method} {path}: security");
    }
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let h = Harness::new().await;
    h.app.make_checkpoint(common::START).await.unwrap();
    let authorization = format!("Bearer {}", h.tokens.security);
    for (method, path) in ROUTES {
        if path.ends_with("/events") {
            // A stream that never ends; served, as `events_stream_is_served` shows.
            continue;
        }
        let method: Method = method.to_uppercase().parse().unwrap();
        let path = path
            .replace("{id}", "ovr_missing")
            .replace("{environment}", "staging")
            .replace("{hook}", "confirm-rollout");
        let body = (method == Method::POST).then_some("{}");
        let reply = h
            .raw(method.clone(), &path, Some(&authorization), body)
            .await;
        let json = reply.json();
        assert_ne!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(
            !json["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("no such endpoint"),
            "{method} {path}: {json}"
        );
        // An approval's body is all optional: `{}` is valid, and the request is missing.
        let takes_no_body =
            path.ends_with("/run") || path.ends_with("/execute") || path.ends_with("/approve");
        // Metrics bodies are all optional: `{}` is valid, and the soak or canary is missing.
        let no_canary = path.contains("/canary/staging")
            || (method == Method::POST && path.ends_with("/metrics"));
        // The decision's query is required; the GitHub integration and single sign-on are not
        // configured here (their pages say so: 404); a token cannot sign out (400).
        let needs_query = path.ends_with("/integrations/decision");
        let unconfigured = path.ends_with("/deployment-protection-rule")
            || path.ends_with("/auth/login")
            || path.ends_with("/auth/callback");
        let expected = match (method.as_str(), path.contains("ovr_missing") || no_canary) {
            _ if unconfigured => StatusCode::NOT_FOUND,
            ("GET", _) if needs_query => StatusCode::BAD_REQUEST,
            ("POST", true) if takes_no_body || no_canary => StatusCode::NOT_FOUND,
            ("POST", _) => StatusCode::BAD_REQUEST,
            (_, true) => StatusCode::NOT_FOUND,
            _ => StatusCode::OK,
        };
        assert_eq!(reply.status, expected, "{method} {path}: {}", reply.text);
    }
}

#[tokio::test]
async fn metrics_need_a_token_and_show_decisions_and_latency() {
    let h = Harness::new().await;
    let reply = h.raw(Method::GET, "/metrics", None, None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"]["code"], "unauthorized");

    h.check(
        &h.tokens.developer,
        "deploy.canary.start",
        "production",
        None,
    )
    .await;
    let (status, _) = h
        .get(
            "/security-gate/override/ovr_secret_id_123",
            &h.tokens.developer,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let reply = h
        .raw(
            Method::GET,
            "/metrics",
            Some(&format!("Bearer {}", h.tokens.developer)),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = reply.text;
    let decisions: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("deploy_safety_gate_decisions_total{"))
        .collect();
    assert!(
        decisions
            .iter()
            .any(|l| l.contains("action=\"deploy.canary.start\"")
                && l.contains("environment=\"production\"")
                && l.contains("outcome=\"denied\"")
                && l.contains("reason=\"OVERRIDE_REQUIRED\"")),
        "{decisions:?}"
    );
    assert!(
        text.contains("deploy_safety_http_request_duration_seconds"),
        "{text}"
    );
    assert!(text.contains("deploy_safety_http_requests_total"), "{text}");
    assert!(text.contains("deploy_safety_store_writes_total"), "{text}");
    assert!(text.contains("deploy_safety_store_commits_total"), "{text}");
    assert!(
        text.contains("route=\"/api/deploy-safety/security-gate/override/{id}\""),
        "requests are labelled by route template: {text}"
    );
    assert!(
        !text.contains("ovr_secret_id_123"),
        "raw paths never become label values"
    );
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let h = Harness::new().await;
    let reply = h
        .raw(
            Method::GET,
            &format!("{API}/security-gate/status"),
            Some(&format!("Bearer {}", h.tokens.developer)),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply
            .headers
            .get("x-request-id")
            .is_some_and(|v| !v.is_empty())
    );
    let body: Value = reply.json();
    assert_eq!(body["mode"], "enforce");
}

#[tokio::test]
async fn a_database_that_cannot_be_read_fails_the_gate_closed() {
    let h = Harness::new().await;
    h.db.exec(
        "ALTER TABLE gate_state RENAME TO gate_state_away; ALTER TABLE probes RENAME TO probes_away;",
    );

    let reply = h
        .raw(Method::GET, &format!("{API}/health"), None, None)
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);

    let got = h.get("/security-gate/status", &h.tokens.developer).await;
    common::assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );
    assert!(
        !got.1.to_string().contains("gate_state"),
        "no internals in the answer: {}",
        got.1
    );
    let got = h
        .post(
            "/security-gate/check",
            &h.tokens.developer,
            json!({"action": "deploy.canary.start", "environment": "staging"}),
        )
        .await;
    common::assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );

    h.db.exec(
        "ALTER TABLE gate_state_away RENAME TO gate_state; ALTER TABLE probes_away RENAME TO probes;",
    );
    let (status, body) = h.get("/health", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["overallHealth"], "healthy");
    assert!(
        h.audit("action=security-gate.check").await.is_empty(),
        "the refused check left no decision behind"
    );
}

#[tokio::test]
async fn an_unhealthy_health_answer_is_still_the_health_report() {
    let h = Harness::new().await;
    h.db.exec("ALTER TABLE probes RENAME TO probes_away;");

    let reply = h
        .raw(Method::GET, &format!("{API}/health"), None, None)
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json(), json!({"overallHealth": "unhealthy"}));

    let (status, body) = h.get("/health", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["overallHealth"], "unhealthy");
    let probes = body["probes"].as_array().unwrap();
    assert!(
        probes
            .iter()
            .any(|p| p["name"] == "database" && p["status"] == "failing")
    );
    assert!(
        !body.to_string().contains("probes_away"),
        "no internals in the answer: {body}"
    );
}

/// The document describes values as they are on the wire, so a client generated from it works.
#[tokio::test]
async fn openapi_enums_are_the_wire_spellings() {
    let h = Harness::new().await;
    let reply = h
        .raw(Method::GET, &format!("{API}/openapi.json"), None, None)
        .await;
    let doc = reply.json();
    let schemas = &doc["components"]["schemas"];
    let expected = [
        (
            "Action",
            vec![
                "deploy.canary.start",
                "deploy.canary.promote",
                "deploy.rollback",
                "ops.loadshed",
            ],
        ),
        ("Environment", vec!["staging", "production"]),
        (
            "Role",
            vec!["security-team", "eng-lead", "oncall-lead", "developer"],
        ),
        ("SecurityMode", vec!["monitor", "enforce", "lockdown"]),
        (
            "ThreatLevel",
            vec!["none", "low", "medium", "high", "critical"],
        ),
        ("AuditDecision", vec!["allowed", "denied", "recorded"]),
        ("OverrideStatus", vec!["active", "expired", "revoked"]),
    ];
    for (name, values) in expected {
        assert_eq!(schemas[name]["enum"], serde_json::json!(values), "{name}");
    }
    let reasons = schemas["ReasonCode"]["enum"].as_array().unwrap();
    assert!(reasons.contains(&serde_json::json!("OVERRIDE_REQUIRED")));
}
