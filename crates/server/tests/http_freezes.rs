//! Freezes, environments and services over HTTP (SPEC §15, §16): every `/freezes` endpoint and
//! its errors (each 400 names the field and stores nothing), who may create and end freezes,
//! hard and soft freezes in `/security-gate/check` and `/canary/start`, their scope by
//! environment, service and action, a recurring Berlin-time window on the manual clock, the
//! `freeze` validation gate, `GET /environments` built in and configured, and canaries,
//! overrides and release history per service, with the runbook's service-less requests
//! answering as before.
//!
//! The in-process harness runs no engine: window announcements are made with
//! `App::announce_freezes(now)` after moving the manual clock.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{Harness, START, assert_error, at_minutes, gate, override_body};
use deploy_safety_app::{AppSettings, Clock};
use deploy_safety_core::{EnvironmentSpec, Environments, Event, EventType, Tier};
use deploy_safety_server::HttpSettings;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A Friday in winter: 2026-01-02, 15:00Z is 16:00 in Berlin (UTC+1).
const WINTER_FRIDAY_1500Z: i64 = 24 * 60 + 15 * 60;
/// The same Friday's window ends 8 hours later.
const WINTER_FRIDAY_2300Z: i64 = WINTER_FRIDAY_1500Z + 8 * 60;
/// 26 weeks later, 2026-07-03, 14:00Z is 16:00 in Berlin (UTC+2).
const SUMMER_FRIDAY_1400Z: i64 = WINTER_FRIDAY_1500Z + 182 * 24 * 60 - 60;

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

/// `POST /freezes` as `token`, asserting 201.
async fn create(h: &Harness, token: &str, body: Value) -> Value {
    let (status, created) = h.post("/freezes", token, body).await;
    assert_eq!(status, StatusCode::CREATED, "create freeze: {created}");
    created
}

/// A soft freeze of everything in `environments`, created now by the security team.
async fn freeze_in(h: &Harness, name: &str, environments: Value) -> Value {
    create(
        h,
        &h.tokens.security,
        json!({"name": name, "reason": "CHG-7: year-end change freeze", "environments": environments}),
    )
    .await
}

/// `GET /freezes{query}` as the developer, asserting 200.
async fn list(h: &Harness, query: &str) -> Value {
    let (status, body) = h
        .get(&format!("/freezes{query}"), &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK, "list freezes: {body}");
    body
}

fn ids(listed: &Value) -> Vec<String> {
    listed["freezes"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

async fn show(h: &Harness, id: &str) -> Value {
    let (status, body) = h.get(&format!("/freezes/{id}"), &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "show freeze: {body}");
    body
}

/// `DELETE /freezes/{id}` as `token` with an optional raw body.
async fn end(h: &Harness, token: &str, id: &str, body: Option<&str>) -> (StatusCode, Value) {
    h.call(Method::DELETE, &format!("/freezes/{id}"), Some(token), body)
        .await
}

/// `POST /security-gate/check` as the developer with an optional service, asserting 200.
async fn check(h: &Harness, action: &str, environment: &str, service: Option<&str>) -> Value {
    let mut body = json!({"action": action, "environment": environment});
    if let Some(service) = service {
        body["service"] = Value::from(service);
    }
    let (status, decision) = h
        .post("/security-gate/check", &h.tokens.developer, body)
        .await;
    assert_eq!(status, StatusCode::OK, "check: {decision}");
    decision
}

/// The reason code of a check.
async fn reason(h: &Harness, action: &str, environment: &str, service: Option<&str>) -> String {
    check(h, action, environment, service).await["reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn events(h: &Harness, event_type: EventType) -> Vec<Event> {
    h.app
        .events_after(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

fn canary_body(release: &str, environment: &str, service: Option<&str>) -> Value {
    let mut body =
        json!({"releaseId": release, "environment": environment, "deploymentId": "deploy-001"});
    if let Some(service) = service {
        body["service"] = Value::from(service);
    }
    body
}

/// The settings of a setup without the built-in environments: `qa` (staging tier) and
/// `production-eu` (production tier, promoting from every staging-tier one, i.e. `qa`).
fn configured() -> AppSettings {
    let env = |name: &str| deploy_safety_core::Environment::parse(name).unwrap();
    AppSettings {
        environments: Environments::new(vec![
            EnvironmentSpec {
                name: env("qa"),
                tier: Tier::Staging,
                promotes_from: Vec::new(),
            },
            EnvironmentSpec {
                name: env("production-eu"),
                tier: Tier::Production,
                promotes_from: Vec::new(),
            },
        ])
        .unwrap(),
        ..AppSettings::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_freeze_is_created_listed_shown_and_ended_with_events_and_audit() {
    let h = Harness::new().await;
    let created = create(
        &h,
        &h.tokens.security,
        json!({"name": "holiday-2026", "reason": "CHG-7: year-end change freeze",
               "environments": ["production"], "end": at_minutes(120)}),
    )
    .await;
    let id = id_of(&created);
    assert!(id.starts_with("frz_"), "{created}");
    assert_eq!(created["name"], "holiday-2026");
    assert_eq!(created["reason"], "CHG-7: year-end change freeze");
    assert_eq!(created["environments"], json!(["production"]));
    assert_eq!(created["services"], json!([]));
    assert_eq!(
        created["actions"],
        json!(["deploy.canary.start", "deploy.canary.promote"]),
        "the default actions"
    );
    assert_eq!(created["start"], at_minutes(0), "absent start: now");
    assert_eq!(created["end"], at_minutes(120));
    assert_eq!(created["schedule"], Value::Null);
    assert_eq!(created["hard"], false, "soft unless asked");
    assert_eq!(created["createdBy"], "security-team");
    assert_eq!(created["createdAt"], at_minutes(0));
    assert_eq!(created["endedAt"], Value::Null);
    assert_eq!(created["active"], true);
    assert_eq!(created["activeUntil"], at_minutes(120));
    assert_eq!(created["nextStart"], Value::Null);
    assert_eq!(created["nextEnd"], Value::Null);
    assert_eq!(created["over"], false);

    assert_eq!(show(&h, &id).await, created);
    let listed = list(&h, "").await;
    assert_eq!(listed["freezes"], json!([created.clone()]));
    assert_eq!(listed["truncated"], false);

    // Created already in force: announced at once, and audited.
    let started = events(&h, EventType::FreezeStarted).await;
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].data["freezeId"], id.as_str());
    assert_eq!(started[0].data["until"], at_minutes(120));
    assert_eq!(started[0].environment.unwrap().as_str(), "production");
    let audited = h.audit("action=freeze.create").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["principal"], "security-team");
    assert_eq!(audited[0]["decision"], "allowed");
    assert_eq!(audited[0]["details"]["id"], id.as_str());
    // A second announcement at the same instant changes nothing.
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 0);

    // Ended by an eng-lead, with why.
    h.clock.advance_minutes(10);
    let (status, ended) = end(
        &h,
        &h.tokens.eng_lead,
        &id,
        Some(r#"{"reason": "CHG-8: freeze lifted early"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["endedAt"], at_minutes(10));
    assert_eq!(ended["endedBy"], "eng-lead");
    assert_eq!(ended["endReason"], "CHG-8: freeze lifted early");
    assert_eq!(ended["active"], false);
    assert_eq!(ended["over"], true);
    assert_eq!(ended["nextStart"], Value::Null);
    assert_eq!(show(&h, &id).await, ended);
    let audited = h.audit("action=freeze.end").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["principal"], "eng-lead");
    assert_eq!(audited[0]["decision"], "allowed");
    assert_eq!(audited[0]["details"]["freezeId"], id.as_str());
    assert_eq!(
        audited[0]["details"]["reason"],
        "CHG-8: freeze lifted early"
    );
    let closed = events(&h, EventType::FreezeEnded).await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].data["freezeId"], id.as_str());
    assert_eq!(closed[0].at.to_rfc3339(), at_minutes(10));
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 0);
    assert_eq!(events(&h, EventType::FreezeEnded).await.len(), 1);

    // Over: not listed unless `all`, and it cannot be ended twice.
    assert_eq!(list(&h, "").await["freezes"], json!([]));
    assert_eq!(ids(&list(&h, "?all=true").await), vec![id.clone()]);
    let got = end(&h, &h.tokens.security, &id, None).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("FREEZE_OVER"),
        None,
    );
    assert_eq!(h.audit("action=freeze.end").await.len(), 1);

    // Unknown ids.
    let got = h.get("/freezes/frz_missing", &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = end(&h, &h.tokens.security, "frz_missing", None).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);

    // Without a body, and with an empty one, DELETE ends it too; a bad body is 400.
    let other = id_of(&freeze_in(&h, "second", json!([])).await);
    let got = end(&h, &h.tokens.security, &other, Some(r#"{"reason": ""}"#)).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("reason"),
    );
    let got = end(&h, &h.tokens.security, &other, Some(r#"{"why": "x"}"#)).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("why"),
    );
    assert_eq!(
        show(&h, &other).await["over"],
        false,
        "a refused end ends nothing"
    );
    let (status, ended) = end(&h, &h.tokens.security, &other, None).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["endReason"], Value::Null);
    let third = id_of(&freeze_in(&h, "third", json!([])).await);
    let (status, ended) = end(&h, &h.tokens.security, &third, Some("")).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["over"], true);
}

#[tokio::test]
async fn freezes_are_listed_newest_first_and_limited() {
    let h = Harness::new().await;
    let mut created = Vec::new();
    for name in ["one", "two", "three"] {
        created.push(id_of(&freeze_in(&h, name, json!([])).await));
        h.clock.advance_minutes(1);
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(ids(&list(&h, "").await), newest_first);
    let limited = list(&h, "?limit=2").await;
    assert_eq!(ids(&limited), newest_first[..2]);
    assert_eq!(limited["truncated"], true);
    let exact = list(&h, "?limit=3").await;
    assert_eq!(exact["truncated"], false);
    assert_eq!(ids(&list(&h, "?limit=5000").await).len(), 3);

    // A freeze past its end is over: listed only with `all`.
    let short = create(
        &h,
        &h.tokens.security,
        json!({"name": "short", "reason": "CHG-9", "end": at_minutes(4)}),
    )
    .await;
    h.clock.set(START.plus_minutes(4));
    let listed = list(&h, "").await;
    assert!(!ids(&listed).contains(&id_of(&short)), "{listed}");
    let all = list(&h, "?all=true").await;
    assert_eq!(ids(&all)[0], id_of(&short));
    assert_eq!(all["freezes"][0]["over"], true);
    assert_eq!(all["freezes"][0]["active"], false);
    assert_eq!(ids(&list(&h, "?all=false").await).len(), 3);

    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=5001", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=many", "limit"),
        ("?all=maybe", "all"),
        ("?bogus=1", "bogus"),
    ] {
        let got = h
            .get(&format!("/freezes{query}"), &h.tokens.developer)
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
async fn bad_input_is_refused_naming_the_field_and_nothing_is_stored() {
    let h = Harness::new().await;
    let base = || json!({"name": "holiday", "reason": "CHG-7: year-end freeze"});
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        body
    };
    let schedule = |cron: &str, minutes: Value, zone: &str| {
        with(
            "schedule",
            json!({"cron": cron, "durationMinutes": minutes, "timeZone": zone}),
        )
    };
    let cases = [
        (json!({"reason": "x"}), "name"),
        (with("name", json!("")), "name"),
        (with("name", json!("has space")), "name"),
        (with("name", json!("x".repeat(65))), "name"),
        (json!({"name": "holiday"}), "reason"),
        (with("reason", json!("")), "reason"),
        (with("reason", json!("   ")), "reason"),
        (schedule("not a cron", json!(60), "UTC"), "schedule.cron"),
        (schedule("0 16 * *", json!(60), "UTC"), "schedule.cron"),
        (schedule("0 25 * * FRI", json!(60), "UTC"), "schedule.cron"),
        (
            schedule("0 16 * * FRI", json!(60), "Mars/Olympus"),
            "schedule.timeZone",
        ),
        (schedule("0 16 * * FRI", json!(60), ""), "schedule.timeZone"),
        (
            schedule("0 16 * * FRI", json!(0), "UTC"),
            "schedule.durationMinutes",
        ),
        (
            schedule("0 16 * * FRI", json!(-5), "UTC"),
            "schedule.durationMinutes",
        ),
        (
            schedule("0 16 * * FRI", json!(525_601), "UTC"),
            "schedule.durationMinutes",
        ),
        (
            schedule("0 16 * * FRI", json!("60"), "UTC"),
            "schedule.durationMinutes",
        ),
        (
            with(
                "schedule",
                json!({"cron": "0 16 * * FRI", "durationMinutes": 60}),
            ),
            "schedule.timeZone",
        ),
        (
            with(
                "schedule",
                json!({"cron": "0 16 * * FRI", "durationMinutes": 60, "timeZone": "UTC", "every": 1}),
            ),
            "schedule.every",
        ),
        (
            {
                let mut body = with("start", json!(at_minutes(60)));
                body["end"] = json!(at_minutes(30));
                body
            },
            "end",
        ),
        (
            {
                let mut body = with("start", json!(at_minutes(60)));
                body["end"] = json!(at_minutes(60));
                body
            },
            "end",
        ),
        // No start: now; an end in the past is before it.
        (
            with("end", json!(START.plus_minutes(-5).to_rfc3339())),
            "end",
        ),
        (with("start", json!("tomorrow")), "start"),
        (with("end", json!("2026-13-01T00:00:00Z")), "end"),
        (with("actions", json!(["deploy.everything"])), "actions[0]"),
        (
            with("actions", json!(["deploy.rollback", "deploy"])),
            "actions[1]",
        ),
        (with("services", json!(["pay ments"])), "services[0]"),
        (with("services", json!(["payments/api", ""])), "services[1]"),
        (with("services", json!(["x".repeat(129)])), "services[0]"),
        (with("environments", json!(["qa"])), "environments[0]"),
        (
            with("environments", json!(["staging", "Not An Env"])),
            "environments[1]",
        ),
        (with("environments", json!("staging")), "environments"),
        (with("hard", json!("yes")), "hard"),
        (with("extra", json!(1)), "extra"),
    ];
    for (body, field) in cases {
        for token in [&h.tokens.security, &h.tokens.developer] {
            // 400 comes before 403: the developer hears about the field first.
            let got = h.post("/freezes", token, body.clone()).await;
            assert_error(
                &got,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                None,
                Some(field),
            );
        }
    }
    // The unknown environment's message lists the known ones.
    let got = h
        .post(
            "/freezes",
            &h.tokens.security,
            with("environments", json!(["qa"])),
        )
        .await;
    let message = got.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("staging") && message.contains("production"),
        "{message}"
    );
    // Malformed JSON: 400 without a field.
    let got = h
        .post_text("/freezes", &h.tokens.security, "{\"name\": ")
        .await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);

    assert_eq!(
        list(&h, "?all=true").await["freezes"],
        json!([]),
        "nothing stored"
    );
    assert!(h.audit("action=freeze.create").await.is_empty());
    assert!(events(&h, EventType::FreezeStarted).await.is_empty());
    assert_eq!(
        reason(&h, "deploy.canary.start", "staging", None).await,
        "ALLOWED"
    );

    // The limits themselves are accepted.
    for minutes in [1, 525_600] {
        let created = create(
            &h,
            &h.tokens.security,
            schedule("0 16 * * FRI", json!(minutes), "Europe/Berlin"),
        )
        .await;
        assert_eq!(created["schedule"]["durationMinutes"], minutes);
        assert_eq!(created["schedule"]["timeZone"], "Europe/Berlin");
        assert_eq!(created["schedule"]["cron"], "0 16 * * FRI");
    }
}

#[tokio::test]
async fn only_the_security_team_and_eng_leads_create_and_end_freezes_and_refusals_are_audited() {
    let h = Harness::new().await;
    let body = json!({"name": "stop-the-line", "reason": "INC-3: payments outage"});
    for token in [&h.tokens.developer, &h.tokens.oncall] {
        let got = h.post("/freezes", token, body.clone()).await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("ROLE_NOT_PERMITTED"),
            None,
        );
    }
    let got = h
        .call(Method::POST, "/freezes", None, Some(&body.to_string()))
        .await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{}", got.1);
    assert_eq!(list(&h, "?all=true").await["freezes"], json!([]));
    let denied = h.audit("action=freeze.create&decision=denied").await;
    let principals: Vec<&str> = denied
        .iter()
        .map(|e| e["principal"].as_str().unwrap())
        .collect();
    assert_eq!(principals, ["oncall-lead", "developer"], "newest first");
    for entry in &denied {
        assert_eq!(entry["reason"], "ROLE_NOT_PERMITTED");
    }

    let by_lead = create(&h, &h.tokens.eng_lead, body.clone()).await;
    assert_eq!(by_lead["createdBy"], "eng-lead");
    let by_security = create(&h, &h.tokens.security, body.clone()).await;
    for token in [&h.tokens.developer, &h.tokens.oncall] {
        let got = end(&h, token, &id_of(&by_lead), None).await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("ROLE_NOT_PERMITTED"),
            None,
        );
        // Everyone reads.
        let (status, _) = h.get("/freezes", token).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = h.get(&format!("/freezes/{}", id_of(&by_lead)), token).await;
        assert_eq!(status, StatusCode::OK);
    }
    let got = h.call(Method::GET, "/freezes", None, None).await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED);
    assert_eq!(show(&h, &id_of(&by_lead)).await["active"], true);
    let denied = h.audit("action=freeze.end&decision=denied").await;
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert!(denied.iter().all(|e| e["reason"] == "ROLE_NOT_PERMITTED"));

    // Any of the two roles ends any freeze, not only its own.
    let (status, _) = end(&h, &h.tokens.security, &id_of(&by_lead), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = end(&h, &h.tokens.eng_lead_2, &id_of(&by_security), None).await;
    assert_eq!(status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// The gate
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn hard_and_soft_freezes_in_the_check_with_and_without_an_override() {
    // (hard, environment, override, expected reason)
    let cases = [
        (false, "staging", false, "FREEZE"),
        (false, "staging", true, "OVERRIDE"),
        (true, "staging", false, "FREEZE"),
        (true, "staging", true, "FREEZE"),
        (false, "production", false, "FREEZE"),
        (false, "production", true, "OVERRIDE"),
        (true, "production", false, "FREEZE"),
        (true, "production", true, "FREEZE"),
    ];
    for (hard, environment, with_override, expected) in cases {
        let what = format!("hard={hard} {environment} override={with_override}");
        let h = Harness::new().await;
        let freeze = create(
            &h,
            &h.tokens.security,
            json!({"name": "holiday", "reason": "CHG-7: year-end freeze", "hard": hard,
                   "environments": [environment], "end": at_minutes(90)}),
        )
        .await;
        let id = id_of(&freeze);
        let mut override_id = Value::Null;
        if with_override {
            for action in ["deploy.canary.start", "deploy.canary.promote"] {
                let created = h
                    .create_override(&h.tokens.eng_lead, override_body(action, environment, 60))
                    .await;
                if action == "deploy.canary.start" {
                    override_id = created["id"].clone();
                }
            }
        }
        for action in ["deploy.canary.start", "deploy.canary.promote"] {
            let decision = check(&h, action, environment, None).await;
            assert_eq!(decision["reason"], expected, "{what} {action}: {decision}");
            assert_eq!(
                decision["allowed"],
                expected != "FREEZE",
                "{what} {action}: {decision}"
            );
            if expected == "FREEZE" {
                let message = decision["message"].as_str().unwrap();
                assert!(message.contains("holiday"), "{what}: {message}");
                assert!(message.contains(&id), "{what}: {message}");
                assert!(
                    message.contains("CHG-7: year-end freeze"),
                    "{what}: {message}"
                );
                assert!(
                    message.contains(&at_minutes(90)),
                    "{what}: when it ends: {message}"
                );
                let hints = decision["hints"].to_string();
                assert!(hints.contains(&id), "{what}: how to end it: {hints}");
                assert_eq!(decision["overrideId"], Value::Null, "{what}");
            }
        }
        if expected == "OVERRIDE" {
            let decision = check(&h, "deploy.canary.start", environment, None).await;
            assert_eq!(decision["overrideId"], override_id, "{what}");
        }

        // Through `/canary/start`: the same answer.
        if environment == "production" {
            let validation = h.validate("v1.2.3", "staging").await;
            assert_eq!(validation["status"], "passed", "{validation}");
        }
        let got = h
            .post(
                "/canary/start",
                &h.tokens.developer,
                canary_body("v1.2.3", environment, None),
            )
            .await;
        if expected == "FREEZE" {
            assert_error(
                &got,
                StatusCode::FORBIDDEN,
                "blocked_by_security_gate",
                Some("FREEZE"),
                None,
            );
            assert_eq!(got.1["decision"]["reason"], "FREEZE", "{what}");
            assert!(
                got.1["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Action blocked by security gate: "),
                "{what}: {}",
                got.1
            );
        } else {
            assert_eq!(got.0, StatusCode::CREATED, "{what}: {}", got.1);
        }

        // The freeze's end lifts it; the rules of part one apply again (staging needs no
        // override, so none is used there).
        let (status, _) = end(&h, &h.tokens.security, &id, None).await;
        assert_eq!(status, StatusCode::OK);
        let after = reason(&h, "deploy.canary.promote", environment, None).await;
        let expected_after = match (environment, with_override) {
            ("staging", _) => "ALLOWED",
            (_, false) => "OVERRIDE_REQUIRED",
            (_, true) => "OVERRIDE",
        };
        assert_eq!(after, expected_after, "{what}: after the end");
    }
}

#[tokio::test]
async fn the_decision_names_the_freeze_that_ends_last_and_monitor_mode_records_it() {
    let h = Harness::new().await;
    let sooner = create(
        &h,
        &h.tokens.security,
        json!({"name": "sooner", "reason": "CHG-1", "end": at_minutes(30)}),
    )
    .await;
    let later = create(
        &h,
        &h.tokens.security,
        json!({"name": "later", "reason": "CHG-2", "end": at_minutes(120)}),
    )
    .await;
    let decision = check(&h, "deploy.canary.start", "staging", None).await;
    assert_eq!(decision["reason"], "FREEZE");
    let message = decision["message"].as_str().unwrap();
    assert!(message.contains(&id_of(&later)), "{message}");
    assert!(!message.contains(&id_of(&sooner)), "{message}");

    // A hard freeze wins over a soft one that ends later, and one without an end over both.
    let hard = create(
        &h,
        &h.tokens.security,
        json!({"name": "hard-one", "reason": "CHG-3", "end": at_minutes(60), "hard": true}),
    )
    .await;
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.start", "staging", 60),
    )
    .await;
    let decision = check(&h, "deploy.canary.start", "staging", None).await;
    assert_eq!(decision["reason"], "FREEZE", "{decision}");
    assert!(
        decision["message"]
            .as_str()
            .unwrap()
            .contains(&id_of(&hard)),
        "the override lifts the soft ones, not the hard one: {decision}"
    );
    let forever = create(
        &h,
        &h.tokens.security,
        json!({"name": "forever", "reason": "CHG-4", "hard": true}),
    )
    .await;
    let decision = check(&h, "deploy.canary.start", "staging", None).await;
    let message = decision["message"].as_str().unwrap();
    assert!(message.contains(&id_of(&forever)), "{message}");
    assert!(!message.contains(" ends at "), "no end: {message}");

    // Monitor mode: allowed, and recorded as what enforce would have done.
    h.set_mode("monitor", Some("INC-9: trial")).await;
    let decision = check(&h, "deploy.canary.start", "staging", None).await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["wouldBlock"], true);
    assert_eq!(decision["reason"], "FREEZE");
    let seq = decision["auditSeq"].as_u64().unwrap();
    let entries = h.audit(&format!("cursor={}&limit=1", seq + 1)).await;
    let entry = &entries[0];
    assert_eq!(entry["seq"], seq);
    assert_eq!(entry["action"], "security-gate.check");
    assert_eq!(entry["reason"], "FREEZE", "{entry}");
    assert_eq!(entry["details"]["wouldBlock"], true, "{entry}");
}

#[tokio::test]
async fn a_freeze_stops_only_its_environments_services_and_actions() {
    let h = Harness::new().await;
    create(
        &h,
        &h.tokens.security,
        json!({"name": "payments-stop", "reason": "INC-3: payments outage",
               "environments": ["production"], "services": ["payments/api"]}),
    )
    .await;
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.start", "staging", 60),
    )
    .await;
    let cases = [
        (
            "deploy.canary.start",
            "production",
            Some("payments/api"),
            "FREEZE",
        ),
        (
            "deploy.canary.promote",
            "production",
            Some("payments/api"),
            "FREEZE",
        ),
        // Another service, or none: only part one's rules.
        (
            "deploy.canary.start",
            "production",
            Some("search"),
            "OVERRIDE_REQUIRED",
        ),
        (
            "deploy.canary.start",
            "production",
            None,
            "OVERRIDE_REQUIRED",
        ),
        // Another environment.
        (
            "deploy.canary.promote",
            "staging",
            Some("payments/api"),
            "ALLOWED",
        ),
        // Rollbacks and load shedding are not stopped by default.
        (
            "deploy.rollback",
            "production",
            Some("payments/api"),
            "OVERRIDE_REQUIRED",
        ),
        (
            "ops.loadshed",
            "production",
            Some("payments/api"),
            "OVERRIDE_REQUIRED",
        ),
    ];
    for (action, environment, service, expected) in cases {
        assert_eq!(
            reason(&h, action, environment, service).await,
            expected,
            "{action} {environment} {service:?}"
        );
    }

    // Everywhere, every service: rollbacks and load shedding still pass in staging.
    let everything = freeze_in(&h, "everything", json!([])).await;
    for (action, service, expected) in [
        ("deploy.canary.start", None, "OVERRIDE"),
        ("deploy.canary.promote", Some("search"), "FREEZE"),
        ("deploy.rollback", None, "ALLOWED"),
        ("deploy.rollback", Some("search"), "ALLOWED"),
        ("ops.loadshed", None, "ALLOWED"),
    ] {
        assert_eq!(
            reason(&h, action, "staging", service).await,
            expected,
            "{action} staging {service:?}"
        );
    }
    // A staging rollback executes during the freeze.
    let (status, rollback) = h
        .post(
            "/rollback/create",
            &h.tokens.developer,
            json!({"environment": "staging", "fromVersion": "v2", "toVersion": "v1",
                   "reason": "High error rate after deployment"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollback}");
    let (status, executed) = h
        .call(
            Method::POST,
            &format!("/rollback/{}/execute", id_of(&rollback)),
            Some(&h.tokens.developer),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{executed}");
    assert_eq!(executed["status"], "executed");
    end(&h, &h.tokens.security, &id_of(&everything), None).await;

    // Listing the rollback stops it, and leaves canary starts alone.
    create(
        &h,
        &h.tokens.security,
        json!({"name": "no-rollbacks", "reason": "CHG-5: database migration",
               "environments": ["staging"], "actions": ["deploy.rollback"]}),
    )
    .await;
    assert_eq!(
        reason(&h, "deploy.rollback", "staging", None).await,
        "FREEZE"
    );
    assert_eq!(
        reason(&h, "deploy.canary.promote", "staging", None).await,
        "ALLOWED"
    );
    let (status, rollback) = h
        .post(
            "/rollback/create",
            &h.tokens.developer,
            json!({"environment": "staging", "fromVersion": "v1", "toVersion": "v0",
                   "reason": "High error rate after deployment"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollback}");
    let got = h
        .call(
            Method::POST,
            &format!("/rollback/{}/execute", id_of(&rollback)),
            Some(&h.tokens.developer),
            None,
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("FREEZE"),
        None,
    );
}

#[tokio::test]
async fn a_recurring_berlin_friday_freeze_follows_the_clock_across_daylight_saving() {
    let h = Harness::new().await;
    let created = create(
        &h,
        &h.tokens.security,
        json!({"name": "no-friday-deploys", "reason": "Policy: no Friday afternoon deploys",
               "environments": ["production"], "hard": true,
               "schedule": {"cron": "0 16 * * FRI", "durationMinutes": 480,
                            "timeZone": "Europe/Berlin"}}),
    )
    .await;
    let id = id_of(&created);
    assert_eq!(created["active"], false);
    assert_eq!(created["activeUntil"], Value::Null);
    assert_eq!(created["nextStart"], at_minutes(WINTER_FRIDAY_1500Z));
    assert_eq!(created["nextEnd"], at_minutes(WINTER_FRIDAY_2300Z));
    assert_eq!(created["over"], false);
    assert!(events(&h, EventType::FreezeStarted).await.is_empty());
    // Overrides for the whole day; a hard freeze ignores them.
    h.create_override(
        &h.tokens.security,
        override_body("deploy.canary.start", "production", 240),
    )
    .await;

    let at = |minutes: i64| {
        h.clock.set(START.plus_minutes(minutes));
    };
    at(WINTER_FRIDAY_1500Z - 1);
    assert_eq!(
        reason(&h, "deploy.canary.start", "production", None).await,
        "OVERRIDE_REQUIRED"
    );
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 0);

    at(WINTER_FRIDAY_1500Z);
    assert_eq!(
        reason(&h, "deploy.canary.start", "production", None).await,
        "FREEZE"
    );
    assert_eq!(
        reason(&h, "deploy.canary.start", "staging", None).await,
        "ALLOWED"
    );
    let view = show(&h, &id).await;
    assert_eq!(view["active"], true);
    assert_eq!(view["activeUntil"], at_minutes(WINTER_FRIDAY_2300Z));
    assert_eq!(view["nextStart"], Value::Null);
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 1);
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 0);
    let started = events(&h, EventType::FreezeStarted).await;
    assert_eq!(started.len(), 1);
    assert_eq!(
        started[0].data["windowStart"],
        at_minutes(WINTER_FRIDAY_1500Z)
    );
    assert_eq!(started[0].data["until"], at_minutes(WINTER_FRIDAY_2300Z));

    at(WINTER_FRIDAY_2300Z - 1);
    assert_eq!(
        reason(&h, "deploy.canary.promote", "production", None).await,
        "FREEZE"
    );
    at(WINTER_FRIDAY_2300Z);
    assert_eq!(
        reason(&h, "deploy.canary.promote", "production", None).await,
        "OVERRIDE_REQUIRED"
    );
    let view = show(&h, &id).await;
    assert_eq!(view["active"], false);
    assert_eq!(
        view["nextStart"],
        at_minutes(WINTER_FRIDAY_1500Z + 7 * 24 * 60)
    );
    assert_eq!(view["over"], false, "a schedule without end is never over");
    assert_eq!(ids(&list(&h, "").await), vec![id.clone()]);
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 1);
    assert_eq!(events(&h, EventType::FreezeEnded).await.len(), 1);

    // In summer 16:00 Berlin is 14:00Z.
    at(SUMMER_FRIDAY_1400Z - 1);
    assert_eq!(
        reason(&h, "deploy.canary.start", "production", None).await,
        "OVERRIDE_REQUIRED"
    );
    at(SUMMER_FRIDAY_1400Z);
    let decision = check(&h, "deploy.canary.start", "production", None).await;
    assert_eq!(decision["reason"], "FREEZE", "{decision}");
    assert_eq!(
        show(&h, &id).await["activeUntil"],
        at_minutes(SUMMER_FRIDAY_1400Z + 480)
    );
}

#[tokio::test]
async fn the_freeze_validation_gate_fails_while_a_freeze_would_stop_the_canary_start() {
    let h = Harness::new().await;
    let ran = h.validate("v1", "staging").await;
    assert_eq!(gate(&ran, "freeze")["status"], "passed", "{ran}");

    let freeze = freeze_in(&h, "holiday", json!(["staging"])).await;
    let ran = h.validate("v1", "staging").await;
    assert_eq!(ran["status"], "failed", "{ran}");
    let failed = gate(&ran, "freeze");
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["message"].as_str().unwrap().contains("holiday"),
        "{failed}"
    );
    // Another environment is not frozen.
    let ran = h.validate("v1", "production").await;
    assert_eq!(gate(&ran, "freeze")["status"], "passed", "{ran}");

    // A soft freeze yields to a covering override, in the gate as in the check.
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.start", "staging", 60),
    )
    .await;
    let ran = h.validate("v1", "staging").await;
    assert_eq!(gate(&ran, "freeze")["status"], "passed", "{ran}");
    end(&h, &h.tokens.security, &id_of(&freeze), None).await;

    // A hard freeze for one service fails that service's validations only.
    create(
        &h,
        &h.tokens.security,
        json!({"name": "payments-stop", "reason": "INC-3", "hard": true,
               "services": ["payments/api"]}),
    )
    .await;
    let ran = h.validate("v2", "staging").await;
    assert_eq!(
        gate(&ran, "freeze")["status"],
        "passed",
        "no service: {ran}"
    );
    let (status, started) = h
        .post(
            "/validations/start",
            &h.tokens.developer,
            json!({"releaseId": "v2", "environment": "staging", "service": "payments/api"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["service"], "payments/api");
    let ran = h.run_validation(&id_of(&started)).await;
    assert_eq!(gate(&ran, "freeze")["status"], "failed", "{ran}");
    assert_eq!(ran["status"], "failed");

    // A freeze that stops only rollbacks does not fail the gate.
    let h = Harness::new().await;
    create(
        &h,
        &h.tokens.security,
        json!({"name": "no-rollbacks", "reason": "CHG-5", "actions": ["deploy.rollback"]}),
    )
    .await;
    let ran = h.validate("v1", "staging").await;
    assert_eq!(gate(&ran, "freeze")["status"], "passed", "{ran}");
}

// ---------------------------------------------------------------------------------------------
// Environments
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_built_in_environments_are_listed_with_their_tiers() {
    let h = Harness::new().await;
    let (status, body) = h.get("/environments", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"environments": [
            {"name": "staging", "tier": "staging", "promotesFrom": []},
            {"name": "production", "tier": "production", "promotesFrom": ["staging"]},
        ]})
    );
    let got = h.call(Method::GET, "/environments", None, None).await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn configured_environments_follow_their_tiers() {
    let h = Harness::with_app_settings(HttpSettings::default(), configured()).await;
    let (status, body) = h.get("/environments", &h.tokens.oncall).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"environments": [
            {"name": "qa", "tier": "staging", "promotesFrom": []},
            {"name": "production-eu", "tier": "production", "promotesFrom": ["qa"]},
        ]})
    );

    // Production rules by tier.
    assert_eq!(
        reason(&h, "deploy.canary.start", "qa", None).await,
        "ALLOWED"
    );
    assert_eq!(
        reason(&h, "deploy.canary.start", "production-eu", None).await,
        "OVERRIDE_REQUIRED"
    );
    assert_eq!(
        reason(&h, "deploy.rollback", "production-eu", None).await,
        "OVERRIDE_REQUIRED"
    );

    // The built-in names are gone: 400 naming the field and listing the known ones.
    for name in ["staging", "production"] {
        let got = h
            .post(
                "/security-gate/check",
                &h.tokens.developer,
                json!({"action": "deploy.canary.start", "environment": name}),
            )
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some("environment"),
        );
        let message = got.1["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("qa") && message.contains("production-eu"),
            "{message}"
        );
        let got = h
            .post(
                "/freezes",
                &h.tokens.security,
                json!({"name": "x", "reason": "y", "environments": ["qa", name]}),
            )
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some("environments[1]"),
        );
        let message = got.1["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("qa") && message.contains("production-eu"),
            "{message}"
        );
        let got = h.get(&format!("/canary/{name}"), &h.tokens.developer).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);
    }
    assert_eq!(list(&h, "?all=true").await["freezes"], json!([]));

    // The override table reads by tier: eng-lead may, oncall-lead may not, start a canary in
    // production-eu.
    let got = h
        .post(
            "/security-gate/override",
            &h.tokens.oncall,
            override_body("deploy.canary.start", "production-eu", 60),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("OVERRIDE_NOT_PERMITTED"),
        None,
    );
    h.create_override(
        &h.tokens.eng_lead,
        override_body("deploy.canary.start", "production-eu", 60),
    )
    .await;
    assert_eq!(
        reason(&h, "deploy.canary.start", "production-eu", None).await,
        "OVERRIDE"
    );

    // Staging first through promotesFrom: a passed validation in qa.
    let body = canary_body("v1.2.3", "production-eu", None);
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
    let validation = h.validate("v1.2.3", "qa").await;
    assert_eq!(validation["status"], "passed", "{validation}");
    let ran = h.validate("v1.2.3", "production-eu").await;
    assert_eq!(
        gate(&ran, "environment-parity")["status"],
        "passed",
        "{ran}"
    );
    let (status, started) = h.post("/canary/start", &h.tokens.developer, body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["environment"], "production-eu");

    // A freeze in a configured environment.
    let freeze = freeze_in(&h, "eu-freeze", json!(["production-eu"])).await;
    assert_eq!(freeze["environments"], json!(["production-eu"]));
    assert_eq!(
        reason(&h, "deploy.canary.start", "qa", None).await,
        "ALLOWED"
    );
    assert_eq!(
        reason(&h, "deploy.canary.promote", "production-eu", None).await,
        "FREEZE"
    );
}

// ---------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn canaries_of_two_services_run_side_by_side_in_one_environment() {
    let h = Harness::new().await;
    let mut started = Vec::new();
    for service in [Some("payments/api"), Some("search"), None] {
        let (status, canary) = h
            .post(
                "/canary/start",
                &h.tokens.developer,
                canary_body("v2", "staging", service),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{service:?}: {canary}");
        match service {
            Some(service) => assert_eq!(canary["service"], service),
            None => assert!(canary.get("service").is_none(), "{canary}"),
        }
        started.push(canary);
    }
    // A second one for a service that has one: 409.
    for service in [Some("payments/api"), None] {
        let got = h
            .post(
                "/canary/start",
                &h.tokens.developer,
                canary_body("v3", "staging", service),
            )
            .await;
        assert_error(
            &got,
            StatusCode::CONFLICT,
            "conflict",
            Some("CANARY_ALREADY_ACTIVE"),
            None,
        );
    }

    // Status per service.
    for (query, expected) in [
        ("?service=payments/api", &started[0]),
        ("?service=search", &started[1]),
        ("", &started[2]),
    ] {
        let (status, view) = h
            .get(&format!("/canary/staging{query}"), &h.tokens.developer)
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {view}");
        assert_eq!(view["id"], expected["id"], "{query}: {view}");
    }
    let got = h
        .get("/canary/staging?service=billing", &h.tokens.developer)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = h
        .get("/canary/staging?service=bad%20name", &h.tokens.developer)
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("service"),
    );

    // The list filters by service.
    let (status, listed) = h
        .get(
            "/canaries?environment=staging&service=search",
            &h.tokens.developer,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let canaries = listed["canaries"].as_array().unwrap();
    assert_eq!(canaries.len(), 1, "{listed}");
    assert_eq!(canaries[0]["id"], started[1]["id"]);
    let (_, listed) = h
        .get("/canaries?environment=staging", &h.tokens.developer)
        .await;
    assert_eq!(listed["canaries"].as_array().unwrap().len(), 3, "{listed}");

    // Metrics go to one service's canary.
    let (status, view) = h
        .post(
            "/canary/staging/metrics?service=search",
            &h.tokens.developer,
            json!({"errorRatePercent": 0.1, "latencyP99Ms": 100.0, "baselineLatencyP99Ms": 95.0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["id"], started[1]["id"]);

    // A freeze of one service stops its promotion, not the other's.
    create(
        &h,
        &h.tokens.security,
        json!({"name": "payments-stop", "reason": "INC-3", "services": ["payments/api"]}),
    )
    .await;
    let got = h
        .post(
            "/canary/promote",
            &h.tokens.developer,
            json!({"environment": "staging", "service": "payments/api"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("FREEZE"),
        None,
    );
    let (status, promoted) = h
        .post(
            "/canary/promote",
            &h.tokens.developer,
            json!({"environment": "staging", "service": "search"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["id"], started[1]["id"]);
    assert_eq!(promoted["phase"], "promoted");

    // Release history per service.
    let (status, history) = h
        .get("/releases/staging?service=search", &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["service"], "search");
    assert_eq!(history["current"], "v2");
    assert_eq!(
        history["releases"].as_array().unwrap().len(),
        1,
        "{history}"
    );
    for query in ["", "?service=payments/api"] {
        let (status, history) = h
            .get(&format!("/releases/staging{query}"), &h.tokens.developer)
            .await;
        assert_eq!(status, StatusCode::OK, "{history}");
        assert_eq!(history["current"], Value::Null, "{query}: {history}");
        assert_eq!(history["releases"], json!([]), "{query}: {history}");
    }
    // The service's canary is done; a new one may start for it.
    let (status, _) = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            canary_body("v3", "staging", Some("search")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_service_bound_override_covers_only_its_service() {
    let h = Harness::new().await;
    freeze_in(&h, "holiday", json!(["production"])).await;
    let mut body = override_body("deploy.canary.start", "production", 60);
    body["service"] = json!("payments/api");
    let bound = h.create_override(&h.tokens.eng_lead, body).await;
    assert_eq!(bound["service"], "payments/api");
    for (service, expected) in [
        (Some("payments/api"), "OVERRIDE"),
        (Some("search"), "FREEZE"),
        (None, "FREEZE"),
    ] {
        let decision = check(&h, "deploy.canary.start", "production", service).await;
        assert_eq!(decision["reason"], expected, "{service:?}: {decision}");
        if expected == "OVERRIDE" {
            assert_eq!(decision["overrideId"], bound["id"]);
            assert_eq!(decision["service"], "payments/api");
        }
    }
    // Without the freeze, the same: production needs an override the service's one does not
    // give to others.
    let h = Harness::new().await;
    let mut body = override_body("deploy.canary.start", "production", 60);
    body["service"] = json!("payments/api");
    h.create_override(&h.tokens.eng_lead, body).await;
    assert_eq!(
        reason(&h, "deploy.canary.start", "production", Some("search")).await,
        "OVERRIDE_REQUIRED"
    );
    assert_eq!(
        reason(&h, "deploy.canary.start", "production", None).await,
        "OVERRIDE_REQUIRED"
    );
    // An override without a service covers every request, with or without one.
    let unbound = h
        .create_override(
            &h.tokens.eng_lead,
            override_body("deploy.canary.start", "production", 60),
        )
        .await;
    assert!(unbound.get("service").is_none(), "{unbound}");
    for service in [Some("search"), None] {
        let decision = check(&h, "deploy.canary.start", "production", service).await;
        assert_eq!(decision["reason"], "OVERRIDE", "{service:?}");
        assert_eq!(decision["overrideId"], unbound["id"], "{service:?}");
    }
}

#[tokio::test]
async fn runbook_requests_without_a_service_answer_as_before() {
    let h = Harness::new().await;
    let decision = h
        .check(
            &h.tokens.developer,
            "deploy.canary.start",
            "staging",
            Some("v1.2.3"),
        )
        .await;
    assert_eq!(decision["reason"], "ALLOWED");
    assert!(decision.get("service").is_none(), "{decision}");

    let created = h
        .create_override(
            &h.tokens.eng_lead,
            json!({"action": "deploy.canary.start", "environment": "production",
                   "reason": "Approved by CTO for release v1.2.3",
                   "approver": "eng-lead", "ttlMinutes": 60}),
        )
        .await;
    assert!(created.get("service").is_none(), "{created}");

    let (status, canary) = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            json!({"releaseId": "v1.2.3", "environment": "staging", "deploymentId": "deploy-001"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{canary}");
    assert!(canary.get("service").is_none(), "{canary}");
    let (status, view) = h.get("/canary/staging", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert!(view.get("service").is_none(), "{view}");
    let (status, promoted) = h
        .post(
            "/canary/promote",
            &h.tokens.developer,
            json!({"environment": "staging"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{promoted}");

    let (status, history) = h.get("/releases/staging", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert!(history.get("service").is_none(), "{history}");
    assert_eq!(history["current"], "v1.2.3");
    assert!(history["releases"][0].get("service").is_none(), "{history}");

    let (status, rollback) = h
        .post(
            "/rollback/create",
            &h.tokens.developer,
            json!({"environment": "staging", "fromVersion": "v1.2.3", "toVersion": "v1.2.2",
                   "reason": "High error rate after deployment"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollback}");
    assert!(rollback.get("service").is_none(), "{rollback}");

    let (status, shed) = h
        .post(
            "/load-shedding",
            &h.tokens.developer,
            json!({"environment": "staging", "enabled": true, "percentage": 20,
                   "reason": "Traffic spike"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shed}");
    assert!(shed.get("service").is_none(), "{shed}");
    let (status, shown) = h.get("/load-shedding/staging", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert!(shown.get("service").is_none(), "{shown}");
}

#[tokio::test]
async fn a_future_window_is_announced_when_it_opens_and_closes() {
    let h = Harness::new().await;
    let created = create(
        &h,
        &h.tokens.eng_lead,
        json!({"name": "release-week", "reason": "CHG-10",
               "actions": ["deploy.rollback", "deploy.canary.start", "deploy.rollback"],
               "services": ["search", "search"], "environments": ["staging", "staging"],
               "start": at_minutes(60), "end": at_minutes(120)}),
    )
    .await;
    let id = id_of(&created);
    assert_eq!(
        created["actions"],
        json!(["deploy.rollback", "deploy.canary.start"]),
        "each action once: {created}"
    );
    assert_eq!(created["services"], json!(["search"]));
    assert_eq!(created["environments"], json!(["staging"]));
    assert_eq!(created["active"], false);
    assert_eq!(created["nextStart"], at_minutes(60));
    assert_eq!(created["nextEnd"], at_minutes(120));
    assert!(events(&h, EventType::FreezeStarted).await.is_empty());
    assert_eq!(
        reason(&h, "deploy.rollback", "staging", Some("search")).await,
        "ALLOWED"
    );

    h.clock.set(START.plus_minutes(60));
    assert_eq!(
        reason(&h, "deploy.rollback", "staging", Some("search")).await,
        "FREEZE"
    );
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 1);
    h.clock.set(START.plus_minutes(120));
    assert_eq!(
        reason(&h, "deploy.rollback", "staging", Some("search")).await,
        "ALLOWED"
    );
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 1);
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 0);
    assert_eq!(show(&h, &id).await["over"], true);
    assert_eq!(list(&h, "").await["freezes"], json!([]));
    let got = end(&h, &h.tokens.security, &id, None).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("FREEZE_OVER"),
        None,
    );

    // A recurring freeze ended between its windows: over, and no window to announce closed.
    let recurring = create(
        &h,
        &h.tokens.security,
        json!({"name": "nightly", "reason": "CHG-11",
               "schedule": {"cron": "0 4 * * *", "durationMinutes": 60, "timeZone": "UTC"}}),
    )
    .await;
    assert_eq!(recurring["active"], false);
    assert_eq!(recurring["nextStart"], at_minutes(240));
    assert_eq!(recurring["nextEnd"], at_minutes(300));
    let (status, ended) = end(&h, &h.tokens.security, &id_of(&recurring), None).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(ended["over"], true);
    assert_eq!(ended["nextStart"], Value::Null);
    h.clock.set(START.plus_minutes(24 * 60 + 250));
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 0);
    assert_eq!(
        reason(&h, "deploy.canary.start", "staging", None).await,
        "ALLOWED"
    );
    assert_eq!(events(&h, EventType::FreezeStarted).await.len(), 1);
    assert_eq!(events(&h, EventType::FreezeEnded).await.len(), 1);

    // Created inside a scheduled window: in force and announced at once.
    h.clock.set(START.plus_minutes(24 * 60 + 150));
    let inside = create(
        &h,
        &h.tokens.security,
        json!({"name": "nightly-2", "reason": "CHG-12",
               "schedule": {"cron": "0 2 * * *", "durationMinutes": 60, "timeZone": "UTC"}}),
    )
    .await;
    assert_eq!(inside["active"], true, "{inside}");
    assert_eq!(inside["activeUntil"], at_minutes(24 * 60 + 180));
    assert_eq!(events(&h, EventType::FreezeStarted).await.len(), 2);
    assert_eq!(h.app.announce_freezes(h.clock.now()).await.unwrap(), 0);
}
