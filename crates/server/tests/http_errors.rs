//! Errors and input over HTTP (SPEC §2, §3 "Order of answers", §12 fail closed, §13): every
//! error is JSON with the right status and code, names the field at fault, and changes nothing.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode, header};
use common::{API, Harness, assert_error, override_body};
use deploy_safety_server::HttpSettings;
use serde_json::{Value, json};

const CANARY: &str = "deploy.canary.start";

/// Every endpoint that needs a token, with a valid body where it takes one.
fn protected_endpoints() -> Vec<(Method, String, Option<String>)> {
    let override_body = override_body(CANARY, "production", 60).to_string();
    vec![
        (Method::GET, format!("{API}/security-gate/status"), None),
        (
            Method::POST,
            format!("{API}/security-gate/mode"),
            Some(json!({"mode": "monitor"}).to_string()),
        ),
        (
            Method::POST,
            format!("{API}/security-gate/threat-level"),
            Some(json!({"level": "low", "reason": "x"}).to_string()),
        ),
        (
            Method::POST,
            format!("{API}/security-gate/override"),
            Some(override_body),
        ),
        (Method::GET, format!("{API}/security-gate/overrides"), None),
        (
            Method::GET,
            format!("{API}/security-gate/override/ovr_x"),
            None,
        ),
        (
            Method::DELETE,
            format!("{API}/security-gate/override/ovr_x"),
            None,
        ),
        (
            Method::POST,
            format!("{API}/security-gate/check"),
            Some(json!({"action": CANARY, "environment": "staging"}).to_string()),
        ),
        (Method::GET, format!("{API}/audit"), None),
        (Method::GET, format!("{API}/audit/verify"), None),
        (Method::GET, format!("{API}/auth/whoami"), None),
        (Method::GET, "/metrics".to_owned(), None),
    ]
}

// ---------------------------------------------------------------------------------------------
// 401
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_protected_endpoint_refuses_a_missing_token_with_401() {
    let h = Harness::new().await;
    for (method, path, body) in protected_endpoints() {
        let reply = h.raw(method.clone(), &path, None, body.as_deref()).await;
        let json = reply.json();
        assert_error(
            &(reply.status, json.clone()),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
            None,
        );
        let challenge = reply
            .headers
            .get(header::WWW_AUTHENTICATE)
            .unwrap_or_else(|| panic!("{method} {path}: no WWW-Authenticate"));
        assert!(
            challenge.to_str().unwrap().starts_with("Bearer"),
            "{method} {path}: {challenge:?}"
        );
    }
    assert_eq!(h.status().await["mode"], "enforce", "nothing changed");
    assert!(h.all_overrides().await.is_empty());
}

#[tokio::test]
async fn malformed_unknown_revoked_and_non_bearer_tokens_are_401() {
    let h = Harness::new().await;
    let path = format!("{API}/auth/whoami");
    let developer = format!("Bearer {}", h.tokens.developer);
    assert_eq!(
        h.raw(Method::GET, &path, Some(&developer), None)
            .await
            .status,
        StatusCode::OK
    );
    // The gate checks a static token inside the decision's own write, against tokens the
    // writer keeps while the database says nothing changed them: used before the revocation,
    // the token must still be refused at once after it.
    let check_path = format!("{API}/security-gate/check");
    let check_body = json!({"action": "deploy.rollback", "environment": "staging"}).to_string();
    for _ in 0..2 {
        let reply = h
            .raw(
                Method::POST,
                &check_path,
                Some(&developer),
                Some(&check_body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
    }
    h.app
        .revoke_principal_tokens("developer", "test")
        .await
        .unwrap();

    let unknown_secret = {
        // The developer's real token id with a wrong secret.
        let (id, _) = h.tokens.developer.split_once('.').unwrap();
        format!("Bearer {id}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    };
    let security_secret = h.tokens.security.clone();
    let cases = [
        ("malformed", "Bearer not-a-token".to_owned()),
        ("malformed, empty", "Bearer ".to_owned()),
        ("no scheme", security_secret.clone()),
        (
            "unknown",
            "Bearer ds_0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        ),
        ("wrong secret", unknown_secret),
        ("revoked", developer.clone()),
        ("basic", "Basic ZGV2ZWxvcGVyOnBhc3N3b3Jk".to_owned()),
        (
            "basic with a real token",
            format!("Basic {security_secret}"),
        ),
    ];
    for (what, authorization) in cases {
        let reply = h.raw(Method::GET, &path, Some(&authorization), None).await;
        let body = reply.json();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
        assert!(
            reply.headers.contains_key(header::WWW_AUTHENTICATE),
            "{what}: WWW-Authenticate"
        );
        // The gate's decision, with a good body and with a bad one: 401 either way.
        for body in [check_body.as_str(), "{not json", r#"{"action": "x"}"#] {
            let reply = h
                .raw(Method::POST, &check_path, Some(&authorization), Some(body))
                .await;
            let answer = reply.json();
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{what}, {body}: {answer}"
            );
            assert_eq!(answer["error"]["code"], "unauthorized", "{what}");
            assert!(
                reply.headers.contains_key(header::WWW_AUTHENTICATE),
                "{what}: WWW-Authenticate on check"
            );
        }
        // Also on a write: nothing happens.
        let reply = h
            .raw(
                Method::POST,
                &format!("{API}/security-gate/mode"),
                Some(&authorization),
                Some(r#"{"mode": "lockdown", "reason": "x"}"#),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
    }
    assert_eq!(h.status().await["mode"], "enforce");

    // A new token for the same name works; the revoked one stays refused.
    let fresh = h
        .app
        .create_token("developer", deploy_safety_core::Role::Developer, "test")
        .await
        .unwrap()
        .token;
    let (status, me) = h.get("/auth/whoami", &fresh).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["name"], "developer");
    let (status, decisions) = h.get("/audit?action=security-gate.check", &fresh).await;
    assert_eq!(status, StatusCode::OK, "{decisions}");
    assert_eq!(
        decisions["entries"].as_array().map(Vec::len),
        Some(2),
        "only the decisions made before the revocation: {decisions}"
    );
    let reply = h.raw(Method::GET, &path, Some(&developer), None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// Order of answers (SPEC §3)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_token_with_a_malformed_body_is_401_not_400() {
    let h = Harness::new().await;
    for path in [
        "/security-gate/mode",
        "/security-gate/override",
        "/security-gate/check",
    ] {
        let got = h.call(Method::POST, path, None, Some("{not json")).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
        let got = h
            .call(Method::POST, path, Some("garbage"), Some("{not json"))
            .await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    }
}

#[tokio::test]
async fn a_developer_with_a_malformed_body_gets_400_before_403() {
    let h = Harness::new().await;
    let dev = &h.tokens.developer;
    let got = h.post_text("/security-gate/mode", dev, "{not json").await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request", None, None);
    let got = h
        .post("/security-gate/mode", dev, json!({"mode": "off"}))
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("mode"),
    );
    let got = h
        .post("/security-gate/mode", dev, json!({"mode": "lockdown"}))
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("reason"),
    );
    let got = h
        .post(
            "/security-gate/threat-level",
            dev,
            json!({"level": "critical"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("reason"),
    );
    let got = h
        .post(
            "/security-gate/override",
            dev,
            json!({"action": CANARY, "environment": "prod", "reason": "x"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("environment"),
    );
    let got = h
        .post(
            "/security-gate/override",
            dev,
            json!({"action": CANARY, "environment": "production", "reason": "x", "ttlMinutes": 0}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("ttlMinutes"),
    );

    // With a valid body the same requests are refused by role.
    let got = h
        .post(
            "/security-gate/mode",
            dev,
            json!({"mode": "lockdown", "reason": "x"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("ROLE_NOT_PERMITTED"),
        None,
    );
    let got = h
        .post(
            "/security-gate/override",
            dev,
            override_body(CANARY, "production", 60),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("OVERRIDE_NOT_PERMITTED"),
        None,
    );
    assert!(h.all_overrides().await.is_empty());
}

#[tokio::test]
async fn unknown_override_ids_are_404() {
    let h = Harness::new().await;
    let got = h
        .get(
            "/security-gate/override/ovr_doesnotexist",
            &h.tokens.developer,
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ovr_doesnotexist")
    );
    let got = h
        .delete(
            "/security-gate/override/ovr_doesnotexist",
            &h.tokens.security,
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = h
        .delete(
            "/security-gate/override/ovr_doesnotexist",
            &h.tokens.eng_lead,
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
}

#[tokio::test]
async fn revoking_an_override_that_is_not_active_is_409() {
    let h = Harness::new().await;
    let revoked = h
        .create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 60))
        .await;
    let expired = h
        .create_override(&h.tokens.eng_lead, override_body(CANARY, "staging", 5))
        .await;
    let path = |o: &Value| format!("/security-gate/override/{}", o["id"].as_str().unwrap());

    let (status, first) = h.delete(&path(&revoked), &h.tokens.eng_lead).await;
    assert_eq!(status, StatusCode::OK);
    // 403 (not the creator) comes before 409 (not active).
    let got = h.delete(&path(&revoked), &h.tokens.eng_lead_2).await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("NOT_OVERRIDE_CREATOR"),
        None,
    );
    let got = h.delete(&path(&revoked), &h.tokens.eng_lead).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("OVERRIDE_NOT_ACTIVE"),
        None,
    );
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    let got = h.delete(&path(&revoked), &h.tokens.security).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("OVERRIDE_NOT_ACTIVE"),
        None,
    );
    let (_, after) = h.get(&path(&revoked), &h.tokens.developer).await;
    assert_eq!(
        after["revokedBy"], "eng-lead",
        "the first revocation stands"
    );
    assert_eq!(after["revokedAt"], first["revokedAt"]);

    h.clock.advance_minutes(5);
    let got = h.delete(&path(&expired), &h.tokens.security).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("OVERRIDE_NOT_ACTIVE"),
        None,
    );
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let (_, after) = h.get(&path(&expired), &h.tokens.developer).await;
    assert_eq!(after["status"], "expired");
    assert_eq!(after["revokedAt"], Value::Null);
}

// ---------------------------------------------------------------------------------------------
// 400: bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_override_bodies_are_400_naming_the_field_and_create_nothing() {
    let h = Harness::new().await;
    let token = &h.tokens.security;
    let valid = override_body(CANARY, "production", 60);
    let with = |key: &str, value: Value| {
        let mut body = valid.clone();
        body[key] = value;
        body.to_string()
    };
    let without = |key: &str| {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(key);
        body.to_string()
    };
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("malformed JSON", r#"{"action": "#.to_owned(), None),
        ("not an object", "[1, 2]".to_owned(), None),
        ("trailing data", format!("{valid} {{}}"), None),
        ("empty body", String::new(), None),
        ("whitespace body", "  \n ".to_owned(), None),
        (
            "ttl as a string",
            with("ttlMinutes", json!("60")),
            Some("ttlMinutes"),
        ),
        (
            "ttl as a fraction",
            with("ttlMinutes", json!(1.5)),
            Some("ttlMinutes"),
        ),
        (
            "unknown environment",
            with("environment", json!("prod")),
            Some("environment"),
        ),
        (
            "unknown action",
            with("action", json!("deploy.yolo")),
            Some("action"),
        ),
        ("missing reason", without("reason"), Some("reason")),
        ("missing action", without("action"), Some("action")),
        (
            "missing environment",
            without("environment"),
            Some("environment"),
        ),
        ("reason null", with("reason", Value::Null), Some("reason")),
        (
            "blank reason",
            with("reason", json!("   \t")),
            Some("reason"),
        ),
        ("empty reason", with("reason", json!("")), Some("reason")),
        (
            "too long reason",
            with("reason", json!("x".repeat(2_001))),
            Some("reason"),
        ),
        ("ttl 0", with("ttlMinutes", json!(0)), Some("ttlMinutes")),
        (
            "ttl negative",
            with("ttlMinutes", json!(-5)),
            Some("ttlMinutes"),
        ),
        (
            "ttl 241",
            with("ttlMinutes", json!(241)),
            Some("ttlMinutes"),
        ),
        (
            "ttl huge",
            with("ttlMinutes", json!(u64::MAX)),
            Some("ttlMinutes"),
        ),
        (
            "blank approver",
            with("approver", json!(" ")),
            Some("approver"),
        ),
        (
            "empty releaseId",
            with("releaseId", json!("")),
            Some("releaseId"),
        ),
        (
            "releaseId with space",
            with("releaseId", json!("v1 2")),
            Some("releaseId"),
        ),
    ];
    for (what, body, field) in cases {
        let (status, answer) = h.post_text("/security-gate/override", token, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{what}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}"
        );
        match field {
            Some(field) => assert_eq!(answer["error"]["field"], field, "{what}: {answer}"),
            None => assert!(
                answer["error"].get("field").is_none(),
                "{what}: no field expected: {answer}"
            ),
        }
    }
    assert!(h.all_overrides().await.is_empty(), "nothing was created");
    assert!(
        h.audit("action=override.create").await.is_empty(),
        "invalid input is not an action"
    );

    let created = h
        .create_override(
            token,
            serde_json::from_str(&with("ttlMinutes", json!(240))).unwrap(),
        )
        .await;
    assert_eq!(
        created["expiresAt"],
        common::START.plus_minutes(240).to_rfc3339()
    );
    let created = h
        .create_override(
            token,
            serde_json::from_str(&with("ttlMinutes", json!(1))).unwrap(),
        )
        .await;
    assert_eq!(
        created["expiresAt"],
        common::START.plus_minutes(1).to_rfc3339()
    );
}

#[tokio::test]
async fn malformed_json_and_empty_bodies_have_no_field_and_say_why() {
    let h = Harness::new().await;
    let (status, body) = h
        .post_text("/security-gate/check", &h.tokens.developer, "{\"action\": ")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{body}"
    );
    let (status, body) = h
        .post_text("/security-gate/check", &h.tokens.developer, "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn invalid_mode_threat_and_check_bodies_are_400_and_change_nothing() {
    let h = Harness::new().await;
    let token = &h.tokens.security;
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        (
            "/security-gate/mode",
            json!({"mode": "lockdown"}),
            Some("reason"),
        ),
        (
            "/security-gate/mode",
            json!({"mode": "lockdown", "reason": "  "}),
            Some("reason"),
        ),
        (
            "/security-gate/mode",
            json!({"mode": "lockdown", "reason": null}),
            Some("reason"),
        ),
        ("/security-gate/mode", json!({"mode": "off"}), Some("mode")),
        ("/security-gate/mode", json!({"reason": "x"}), Some("mode")),
        (
            "/security-gate/threat-level",
            json!({"level": "severe", "reason": "x"}),
            Some("level"),
        ),
        (
            "/security-gate/threat-level",
            json!({"level": "high"}),
            Some("reason"),
        ),
        (
            "/security-gate/threat-level",
            json!({"level": "high", "reason": ""}),
            Some("reason"),
        ),
        (
            "/security-gate/check",
            json!({"action": CANARY}),
            Some("environment"),
        ),
        (
            "/security-gate/check",
            json!({"environment": "staging"}),
            Some("action"),
        ),
        (
            "/security-gate/check",
            json!({"action": CANARY, "environment": "prod"}),
            Some("environment"),
        ),
        (
            "/security-gate/check",
            json!({"action": "deploy", "environment": "staging"}),
            Some("action"),
        ),
        (
            "/security-gate/check",
            json!({"action": CANARY, "environment": "staging", "releaseId": ""}),
            Some("releaseId"),
        ),
        (
            "/security-gate/check",
            json!({"action": CANARY, "environment": "staging", "releaseId": 7}),
            Some("releaseId"),
        ),
    ];
    for (path, body, field) in cases {
        let got = h.post(path, token, body).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            field,
        );
    }
    let status = h.status().await;
    assert_eq!(status["mode"], "enforce");
    assert_eq!(status["threatLevel"], "none");
    assert!(
        h.audit("action=security-gate.check").await.is_empty(),
        "an invalid check is not audited as a decision"
    );
}

#[tokio::test]
async fn wrong_types_for_enum_fields_are_400() {
    let h = Harness::new().await;
    for (path, body) in wrong_enum_type_cases() {
        let (status, answer) = h.post(path, &h.tokens.security, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{path}");
    }
    assert!(h.all_overrides().await.is_empty());
    assert_eq!(h.status().await["mode"], "enforce");
}

#[tokio::test]
async fn wrong_types_for_enum_fields_name_the_field() {
    let h = Harness::new().await;
    for (path, body) in wrong_enum_type_cases() {
        let field = body
            .as_object()
            .and_then(|o| o.iter().find(|(_, v)| v.is_number()))
            .map(|(k, _)| k.clone())
            .unwrap();
        let got = h.post(path, &h.tokens.security, body).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(&field),
        );
        let message = got.1["error"]["message"].as_str().unwrap();
        assert!(!message.contains("malformed JSON"), "{message}");
    }
}

/// Well-formed JSON whose enum field holds a number.
fn wrong_enum_type_cases() -> Vec<(&'static str, Value)> {
    vec![
        ("/security-gate/mode", json!({"mode": 1})),
        (
            "/security-gate/threat-level",
            json!({"level": 3, "reason": "x"}),
        ),
        (
            "/security-gate/check",
            json!({"action": 1, "environment": "staging"}),
        ),
        (
            "/security-gate/override",
            json!({"action": CANARY, "environment": 2, "reason": "x"}),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// 400: queries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_query_parameters_are_400_naming_the_parameter() {
    let h = Harness::new().await;
    let cases = [
        ("/audit?limit=0", "limit"),
        ("/audit?limit=1001", "limit"),
        ("/audit?limit=-1", "limit"),
        ("/audit?limit=ten", "limit"),
        ("/audit?since=garbage", "since"),
        ("/audit?until=yesterday", "until"),
        ("/audit?since=2026-13-01T00:00:00Z", "since"),
        ("/audit?cursor=abc", "cursor"),
        // Sequence numbers are signed 64-bit in both databases.
        ("/audit?cursor=9223372036854775808", "cursor"),
        ("/events?since=9223372036854775808", "since"),
        ("/audit?environment=prod", "environment"),
        ("/audit?decision=maybe", "decision"),
        ("/security-gate/overrides?all=maybe", "all"),
    ];
    for (path, field) in cases {
        let got = h.get(path, &h.tokens.developer).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    // The bounds themselves are fine.
    assert_eq!(
        h.get("/audit?limit=1", &h.tokens.developer).await.0,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/audit?cursor=9223372036854775807", &h.tokens.developer)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/audit?limit=1000", &h.tokens.developer).await.0,
        StatusCode::OK
    );
}

/// Unknown fields in bodies and queries: what they look like in each endpoint.
fn unknown_field_cases() -> Vec<(Method, &'static str, Option<Value>, &'static str)> {
    let mut with_bogus = override_body(CANARY, "production", 60);
    with_bogus["bogus"] = json!(1);
    let mut misspelt = override_body(CANARY, "production", 60);
    misspelt["ttl_minutes"] = json!(60);
    vec![
        (
            Method::POST,
            "/security-gate/override",
            Some(with_bogus),
            "bogus",
        ),
        (
            Method::POST,
            "/security-gate/override",
            Some(misspelt),
            "ttl_minutes",
        ),
        (
            Method::POST,
            "/security-gate/mode",
            Some(json!({"mode": "lockdown", "reason": "x", "force": true})),
            "force",
        ),
        (
            Method::POST,
            "/security-gate/threat-level",
            Some(json!({"level": "critical", "reason": "x", "by": "me"})),
            "by",
        ),
        (
            Method::POST,
            "/security-gate/check",
            Some(json!({"action": CANARY, "environment": "staging", "x": 1})),
            "x",
        ),
        (Method::GET, "/audit?bogus=1", None, "bogus"),
        (
            Method::GET,
            "/security-gate/overrides?active=true",
            None,
            "active",
        ),
    ]
}

#[tokio::test]
async fn unknown_fields_and_query_parameters_are_400_and_change_nothing() {
    let h = Harness::new().await;
    for (method, path, body, _) in unknown_field_cases() {
        let body = body.map(|b| b.to_string());
        let (status, answer) = h
            .call(method, path, Some(&h.tokens.security), body.as_deref())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{path}");
    }
    let status = h.status().await;
    assert_eq!(status["mode"], "enforce");
    assert_eq!(status["threatLevel"], "none");
    assert!(h.all_overrides().await.is_empty());
    assert!(h.audit("action=security-gate.check").await.is_empty());
}

#[tokio::test]
async fn unknown_fields_and_query_parameters_are_named_once_in_error_field() {
    let h = Harness::new().await;
    for (method, path, body, field) in unknown_field_cases() {
        let body = body.map(|b| b.to_string());
        let got = h
            .call(method, path, Some(&h.tokens.security), body.as_deref())
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

// ---------------------------------------------------------------------------------------------
// 413, 404, 405
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_creates_nothing() {
    let h = Harness::with_settings(HttpSettings {
        body_limit_bytes: 1024,
        ..Default::default()
    })
    .await;
    let mut body = override_body(CANARY, "production", 60);
    body["reason"] = json!("x".repeat(1_500));
    let got = h
        .post("/security-gate/override", &h.tokens.security, body)
        .await;
    assert_error(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
        None,
    );
    assert!(h.all_overrides().await.is_empty());

    let got = h
        .post(
            "/security-gate/mode",
            &h.tokens.security,
            json!({"mode": "lockdown", "reason": "y".repeat(2_000)}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        None,
        None,
    );
    assert_eq!(h.status().await["mode"], "enforce");

    // Just under the limit is accepted.
    let mut body = override_body(CANARY, "production", 60);
    body["reason"] = json!("x".repeat(900));
    assert!(body.to_string().len() < 1024);
    h.create_override(&h.tokens.security, body).await;
    assert_eq!(h.all_overrides().await.len(), 1);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_are_json_errors() {
    let h = Harness::new().await;
    let token = format!("Bearer {}", h.tokens.security);
    for path in [
        format!("{API}/nope"),
        format!("{API}/security-gate"),
        "/nope".to_owned(),
        // `/` is the dashboard's (a redirect to /ui/); what is not a page stays a JSON 404.
        "/uix".to_owned(),
    ] {
        let reply = h.raw(Method::GET, &path, Some(&token), None).await;
        let body = reply.json();
        assert_error(
            &(reply.status, body.clone()),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
            None,
        );
        assert!(
            reply.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(
            body["error"]["requestId"].as_str(),
            reply.headers["x-request-id"].to_str().ok(),
            "the error names the request id"
        );
    }
    for (method, path) in [
        (Method::DELETE, format!("{API}/security-gate/status")),
        (Method::GET, format!("{API}/security-gate/override")),
        (Method::PUT, format!("{API}/security-gate/mode")),
        (Method::GET, format!("{API}/security-gate/check")),
        (Method::POST, format!("{API}/audit")),
        (Method::POST, "/metrics".to_owned()),
    ] {
        let reply = h.raw(method.clone(), &path, Some(&token), Some("{}")).await;
        let body = reply.json();
        assert_error(
            &(reply.status, body),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
            None,
        );
        assert!(
            reply.headers.contains_key(header::ALLOW),
            "{method} {path}: Allow header"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Fail closed (SPEC §12)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn when_the_audit_entry_cannot_be_written_nothing_is_done() {
    let h = Harness::new().await;
    let before_verify = h.get("/audit/verify", &h.tokens.security).await.1;
    let entries_before = before_verify["entriesVerified"].as_u64().unwrap();

    h.db.refuse_audit_writes();

    let got = h
        .post(
            "/security-gate/mode",
            &h.tokens.security,
            json!({"mode": "lockdown", "reason": "Security incident investigation"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );
    assert!(
        !got.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk full"),
        "5xx bodies carry no internals: {}",
        got.1
    );

    let got = h
        .post(
            "/security-gate/check",
            &h.tokens.developer,
            json!({"action": CANARY, "environment": "staging"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );

    let got = h
        .post(
            "/security-gate/override",
            &h.tokens.eng_lead,
            override_body(CANARY, "production", 60),
        )
        .await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );

    let got = h
        .post(
            "/security-gate/threat-level",
            &h.tokens.security,
            json!({"level": "critical", "reason": "x"}),
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

    let status = h.status().await;
    assert_eq!(
        status["mode"], "enforce",
        "the mode change was not performed"
    );
    assert_eq!(status["lockdownReason"], Value::Null);
    assert_eq!(status["threatLevel"], "none");
    assert!(h.all_overrides().await.is_empty());
    assert!(h.audit("action=security-gate.mode.set").await.is_empty());
    assert!(h.audit("action=security-gate.check").await.is_empty());
    let verify = h.get("/audit/verify", &h.tokens.security).await.1;
    assert_eq!(verify["valid"], true);
    assert_eq!(verify["entriesVerified"].as_u64().unwrap(), entries_before);

    // And the service works again.
    let status = h.set_mode("lockdown", Some("now it can be recorded")).await;
    assert_eq!(status["mode"], "lockdown");
    assert_eq!(h.audit("action=security-gate.mode.set").await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// No input crashes the server (SPEC §13)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_input_is_answered_with_json_errors_never_500() {
    let h = Harness::new().await;
    let token = &h.tokens.security;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<String> = vec![
        "null".to_owned(),
        "\"a string\"".to_owned(),
        "42".to_owned(),
        "{}".to_owned(),
        deep,
        r#"{"action": "deploy.canary.start", "environment": "production", "reason": "x", "ttlMinutes": 1e400}"#.to_owned(),
        r#"{"action": "deploy.canary.start", "action": "deploy.rollback", "environment": "production", "reason": "x"}"#.to_owned(),
        "{\"reason\": \"\u{0}\"}".to_owned(),
    ];
    for body in &bodies {
        for path in [
            "/security-gate/override",
            "/security-gate/mode",
            "/security-gate/check",
        ] {
            let (status, answer) = h.post_text(path, token, body).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "{path} {}: {answer}",
                &body[..body.len().min(60)]
            );
            assert_eq!(answer["error"]["code"], "invalid_request");
        }
    }

    // Bytes that are not UTF-8.
    let reply = common::send_bytes(
        &h.router,
        Method::POST,
        &format!("{API}/security-gate/check"),
        Some(&format!("Bearer {token}")),
        Some(b"{\"action\": \"\xff\xfe\", \"environment\": \"staging\"}".to_vec()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.json()["error"]["code"], "invalid_request");

    // Strange ids.
    for id in [
        "x".repeat(10_000),
        "%00".to_owned(),
        "%E2%9C%93".to_owned(),
        "..%2F..%2Fetc".to_owned(),
        "'%20OR%201=1--".to_owned(),
    ] {
        let got = h.get(&format!("/security-gate/override/{id}"), token).await;
        assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    }
    // A NUL in a path names nothing; in a query it is malformed (on either backend).
    for path in [
        "/incidents/%00",
        "/probes/a%00b",
        "/validations/%00",
        "/rollbacks/%00",
    ] {
        let got = h.get(path, token).await;
        assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    }
    for query in [
        "/audit?actor=%00",
        "/incidents?service=x%00",
        "/events?type=%00",
    ] {
        let got = h.get(query, token).await;
        assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request", None, None);
    }
    assert!(h.all_overrides().await.is_empty());
    assert_eq!(h.status().await["mode"], "enforce");
    let (_, verify) = h.get("/audit/verify", token).await;
    assert_eq!(verify["valid"], true);
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let h = Harness::new().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let reply = h
            .raw(
                Method::GET,
                &format!("{API}/auth/whoami"),
                Some(&format!("{scheme} {}", h.tokens.oncall)),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{scheme}");
        assert_eq!(reply.json()["name"], "oncall-lead");
    }
}
