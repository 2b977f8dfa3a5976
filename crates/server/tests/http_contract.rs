//! The served OpenAPI document states the constraints the server enforces (docs/api-contract.md;
//! `scripts/api-contract` fuzzes every operation against it). These tests hold the parts a
//! fuzzer only samples: every documented `limit` bound is the server's, the configured values
//! (environments, the override TTL maximum) are in the document, and what every operation shares
//! is stated on each.

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::{API, Harness, override_body};
use deploy_safety_app::AppSettings;
use deploy_safety_server::HttpSettings;
use serde_json::{Value, json};

async fn document(h: &Harness) -> Value {
    let reply = h
        .raw(Method::GET, &format!("{API}/openapi.json"), None, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.json()
}

/// Every (method, path, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            found.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    found
}

#[tokio::test]
async fn every_documented_limit_bound_is_the_servers() {
    let h = Harness::new().await;
    let doc = document(&h).await;
    let mut checked = 0;
    for (method, path, operation) in operations(&doc) {
        let Some(limit) = operation["parameters"].as_array().and_then(|ps| {
            ps.iter()
                .find(|p| p["name"] == "limit" && p["in"] == "query")
        }) else {
            continue;
        };
        assert_eq!(method, "get", "{path}");
        let min = limit["schema"]["minimum"]
            .as_u64()
            .unwrap_or_else(|| panic!("{path}: limit has no minimum"));
        let max = limit["schema"]["maximum"]
            .as_u64()
            .unwrap_or_else(|| panic!("{path}: limit has no maximum"));
        assert_eq!(min, 1, "{path}");
        let authorization = format!("Bearer {}", h.tokens.security);
        for (value, expected) in [
            (min, StatusCode::OK),
            (max, StatusCode::OK),
            (min - 1, StatusCode::BAD_REQUEST),
            (max + 1, StatusCode::BAD_REQUEST),
        ] {
            let reply = h
                .raw(
                    Method::GET,
                    &format!("{path}?limit={value}"),
                    Some(&authorization),
                    None,
                )
                .await;
            assert_eq!(
                reply.status, expected,
                "{path}?limit={value}: {}",
                reply.text
            );
            if expected == StatusCode::BAD_REQUEST {
                assert_eq!(reply.json()["error"]["field"], "limit", "{path}");
            }
        }
        checked += 1;
    }
    // /audit, /incidents, /validations, /canaries, /rollbacks, /soaks, /freezes.
    assert_eq!(checked, 7, "every list with a limit");
}

#[tokio::test]
async fn path_environments_are_the_configured_ones() {
    let h = Harness::new().await;
    let doc = document(&h).await;
    assert_eq!(
        doc["components"]["schemas"]["Environment"]["enum"],
        json!(["staging", "production"])
    );
    let mut checked = 0;
    for (method, path, operation) in operations(&doc) {
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] == "path" && parameter["name"] == "environment" {
                assert_eq!(
                    parameter["schema"],
                    json!({ "$ref": "#/components/schemas/Environment" }),
                    "{method} {path}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(
        checked, 4,
        "canary status and metrics, releases, load shedding"
    );
    // And what is outside the enum is refused, naming the environment.
    let (status, body) = h.get("/releases/qa", &h.tokens.security).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "environment");
}

#[tokio::test]
async fn the_override_ttl_maximum_is_the_configured_one() {
    let settings = AppSettings {
        max_override_ttl_minutes: 90,
        ..AppSettings::default()
    };
    let h = Harness::with_app_settings(HttpSettings::default(), settings).await;
    let doc = document(&h).await;
    let ttl = &doc["components"]["schemas"]["CreateOverrideRequest"]["properties"]["ttlMinutes"];
    assert_eq!(ttl["minimum"], 1);
    assert_eq!(ttl["maximum"], 90);
    let token = h.tokens.security.clone();
    let (status, body) = h
        .post(
            "/security-gate/override",
            &token,
            override_body("deploy.canary.start", "staging", 91),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "ttlMinutes");
    let (status, body) = h
        .post(
            "/security-gate/override",
            &token,
            override_body("deploy.canary.start", "staging", 90),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn every_operation_states_what_all_share() {
    let h = Harness::new().await;
    let doc = document(&h).await;
    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let id = operation["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_owned()), "{method} {path}: {id} repeats");
        let responses = operation["responses"].as_object().expect("responses");
        assert!(
            responses["503"]["content"]["application/json"].is_object(),
            "{method} {path}: 503"
        );
        // Flagger reads a status and one line of text: its operation answers in text.
        let own_protocol = path.contains("/integrations/flagger/");
        if own_protocol {
            assert!(
                responses["413"]["content"]["text/plain"].is_object(),
                "{method} {path}: 413"
            );
        } else if operation.get("requestBody").is_some() {
            assert!(
                responses["413"]["content"]["application/json"]["schema"]
                    == json!({ "$ref": "#/components/schemas/ErrorBody" }),
                "{method} {path}: 413"
            );
        }
        for (status, response) in responses {
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{method} {path} {status}: description"
            );
            // A 414 comes from the HTTP layer before any of ours: it has no request id, and
            // the document says only what it is.
            if status == "414" {
                assert!(response.get("headers").is_none(), "{method} {path} 414");
                continue;
            }
            assert_eq!(
                response["headers"]["X-Request-Id"]["required"], true,
                "{method} {path} {status}"
            );
            if status == "401" {
                assert!(
                    response["headers"]["WWW-Authenticate"].is_object(),
                    "{method} {path}"
                );
            }
        }
    }
}

/// Integers take a whole number written as a float (JSON Schema's `integer` admits `2.0`), and
/// nested settings must be objects, not arrays of their values.
#[tokio::test]
async fn integers_may_be_written_as_whole_floats_and_nested_objects_must_be_objects() {
    let h = Harness::new().await;
    let token = h.tokens.security.clone();
    let (status, body) = h
        .post(
            "/soaks",
            &token,
            json!({ "releaseId": "v1", "environment": "staging",
                    "config": { "durationMs": 60000.0, "intervalMs": 6e4 } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["config"]["intervalMs"], 60000);
    let (status, body) = h
        .post(
            "/soaks",
            &token,
            json!({ "releaseId": "v2", "environment": "staging", "config": { "durationMs": 60000.5 } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "config.durationMs");
    let (status, body) = h
        .post(
            "/soaks",
            &token,
            json!({ "releaseId": "v3", "environment": "staging", "config": [60000, 60000] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "config");
    let (status, body) = h
        .post(
            "/canary/start",
            &token,
            json!({ "releaseId": "v1", "environment": "staging", "deploymentId": "d1",
                    "config": [null, null] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "config");
}
