//! Nothing a client sends can crash the server, and a request that timed out changes nothing.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{API, Harness};
use deploy_safety_server::HttpSettings;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop::sample::select(vec![
            "production",
            "staging",
            "lockdown",
            "enforce",
            "monitor",
            "critical",
            "deploy.canary.start",
            "ops.loadshed",
            "",
            " ",
            "v1.2.3",
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::hash_map(
                prop::sample::select(vec![
                    "mode",
                    "reason",
                    "level",
                    "action",
                    "environment",
                    "approver",
                    "ttlMinutes",
                    "releaseId",
                    "extra",
                    "",
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid body with one field replaced by any JSON value (or removed).
fn near_valid(valid: Value) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = valid.as_object().unwrap().keys().cloned().collect();
    (prop::sample::select(keys), prop::option::of(any_json())).prop_map(move |(key, value)| {
        let mut body = valid.clone();
        let object = body.as_object_mut().unwrap();
        match value {
            Some(v) => {
                object.insert(key, v);
            }
            None => {
                object.remove(&key);
            }
        }
        body
    })
}

const ENDPOINTS: &[(&str, &str)] = &[
    (
        "/security-gate/mode",
        r#"{"mode":"monitor","reason":"fuzz"}"#,
    ),
    (
        "/security-gate/threat-level",
        r#"{"level":"low","reason":"fuzz"}"#,
    ),
    (
        "/security-gate/override",
        r#"{"action":"deploy.rollback","environment":"staging","reason":"fuzz","ttlMinutes":5,"releaseId":"v1"}"#,
    ),
    (
        "/security-gate/check",
        r#"{"action":"deploy.rollback","environment":"production","releaseId":"v1"}"#,
    ),
];

fn assert_well_formed(status: StatusCode, body: &Value, what: &str) {
    assert!(
        !status.is_server_error(),
        "{what}: server error {status}: {body}"
    );
    if status.is_client_error() {
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{what}: error body not in the API's format: {body}"
        );
    } else {
        assert!(body.is_object(), "{what}: not a JSON object: {body}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_never_crash_the_server(
        bodies in prop::collection::vec(any_json(), 4),
        raw in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 4),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let h = Harness::new().await;
            for (i, (path, _)) in ENDPOINTS.iter().enumerate() {
                let text = bodies[i].to_string();
                let (status, body) = h.post_text(path, &h.tokens.security, &text).await;
                assert_well_formed(status, &body, &format!("POST {path} {text}"));
                let bytes = String::from_utf8_lossy(&raw[i]).into_owned();
                let (status, body) = h.post_text(path, &h.tokens.security, &bytes).await;
                assert_well_formed(status, &body, &format!("POST {path} {bytes:?}"));
            }
        });
    }

    #[test]
    fn nearly_valid_bodies_never_crash_the_server(
        mode in near_valid(serde_json::from_str(ENDPOINTS[0].1).unwrap()),
        threat in near_valid(serde_json::from_str(ENDPOINTS[1].1).unwrap()),
        create in near_valid(serde_json::from_str(ENDPOINTS[2].1).unwrap()),
        check in near_valid(serde_json::from_str(ENDPOINTS[3].1).unwrap()),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let h = Harness::new().await;
            for ((path, _), body) in ENDPOINTS.iter().zip([mode, threat, create, check]) {
                let text = body.to_string();
                let (status, answer) = h.post_text(path, &h.tokens.security, &text).await;
                assert_well_formed(status, &answer, &format!("POST {path} {text}"));
            }
        });
    }

    #[test]
    fn arbitrary_queries_and_ids_never_crash_the_server(
        query in "[a-zA-Z=&%0-9:.+-]{0,60}",
        id in "[^/?#]{1,40}",
    ) {
        let rt = runtime();
        rt.block_on(async {
            let h = Harness::new().await;
            for path in [format!("/audit?{query}"), format!("/security-gate/overrides?{query}")] {
                let (status, body) = h.get(&path, &h.tokens.developer).await;
                assert_well_formed(status, &body, &format!("GET {path}"));
            }
            let encoded: String = id
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect();
            let (status, body) = h.get(&format!("/security-gate/override/{encoded}"), &h.tokens.developer).await;
            assert_well_formed(status, &body, &format!("GET override {id:?}"));
            assert_eq!(status, StatusCode::NOT_FOUND);
            let (status, body) = h.delete(&format!("/security-gate/override/{encoded}"), &h.tokens.security).await;
            assert_well_formed(status, &body, &format!("DELETE override {id:?}"));
        });
    }
}

/// A request that times out is answered 503 `timeout`-style JSON, and its change is not made
/// when the writer gets to it later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_timed_out_changes_nothing() {
    let h = Harness::with_settings(HttpSettings {
        request_timeout: Duration::from_millis(300),
        ..HttpSettings::default()
    })
    .await;
    // Another process holds the database's write lock, so the writer cannot start.
    let blocker = h.db.hold_write_lock();

    let (status, body) = h
        .post(
            "/security-gate/mode",
            &h.tokens.security,
            json!({"mode": "lockdown", "reason": "will time out"}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("time limit"),
        "{body}"
    );

    drop(blocker);
    // Writes run in order: once this one is done, the timed-out one has had its turn.
    let (status, after) = h
        .post(
            "/security-gate/check",
            &h.tokens.security,
            json!({"action": "deploy.rollback", "environment": "staging"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(h.status().await["mode"], "enforce");
    assert!(h.audit("action=security-gate.mode.set").await.is_empty());
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let h = Harness::new().await;
    let reply = h
        .raw(
            Method::GET,
            &format!("{API}/security-gate/status"),
            None,
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let header = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(reply.json()["error"]["requestId"], header.as_str());
}
