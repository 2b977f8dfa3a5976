//! The two-person rule over HTTP (SPEC §19): override requests, their votes, the override the
//! last approval makes, direct overrides refused where a rule applies, expiry by the engine's
//! tick, lockdown, workload identities, and two last approvals arriving at once (one app on
//! SQLite; two replicas on one PostgreSQL database).
//!
//! Principals: the harness's one per role (`security-team`, `eng-lead`, `eng-lead-2`,
//! `oncall-lead`, `developer`) and a second security-team member, `security-team-2`.
//! Time is the harness's `ManualClock`; the engine's expiry is driven with
//! `ExpiryWatcher::tick(now)`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use common::{API, Harness, START, TestDb, assert_error, at_minutes, override_body, send};
use deploy_safety_app::{App, AppSettings, AuthSettings, Clock, OidcIssuerSettings};
use deploy_safety_core::identity::{Binding, ClaimPattern, PrincipalTemplate};
use deploy_safety_core::{
    Action, ApprovalPolicy, ApprovalRule, EnvironmentSelector, Environments, Event, EventType, Role,
};
use deploy_safety_engine::ExpiryWatcher;
use deploy_safety_fake_oidc::FakeProvider;
use deploy_safety_server::HttpSettings;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

const CANARY: &str = "deploy.canary.start";
const ROLLBACK: &str = "deploy.rollback";
const REQUESTS: &str = "/security-gate/override-requests";
/// The default time a request waits for its votes (SPEC §19).
const PENDING_MINUTES: i64 = 1_440;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// `required` approvals for `actions` in every production-tier environment, from `roles`.
fn rule(actions: &[Action], required: u32, roles: &[Role]) -> ApprovalRule {
    ApprovalRule {
        actions: actions.to_vec(),
        environments: vec![EnvironmentSelector::parse("tier:production").unwrap()],
        required,
        approver_roles: roles.to_vec(),
    }
}

/// The rule of most tests: a production canary start needs an eng-lead's or a security-team
/// member's approval, twice.
fn canary_rule() -> ApprovalRule {
    rule(
        &[Action::CanaryStart],
        2,
        &[Role::EngLead, Role::SecurityTeam],
    )
}

fn settings(rules: Vec<ApprovalRule>) -> AppSettings {
    let environments = Environments::built_in();
    AppSettings {
        approvals: ApprovalPolicy::new(rules, &environments).unwrap(),
        environments,
        ..AppSettings::default()
    }
}

/// The harness under `rules`, with `security-team-2` beside the harness's principals.
struct World {
    h: Harness,
    sec2: String,
}

impl World {
    async fn new(rules: Vec<ApprovalRule>) -> World {
        World::with_settings(settings(rules)).await
    }

    async fn with_settings(settings: AppSettings) -> World {
        let h = Harness::with_app_settings(HttpSettings::default(), settings).await;
        let sec2 = h.token("security-team-2", Role::SecurityTeam).await;
        World { h, sec2 }
    }
}

/// A request body for `action` in `environment`: release `v1.2.3`, 30 minutes once approved.
fn request_body(action: &str, environment: &str) -> Value {
    json!({
        "action": action,
        "environment": environment,
        "releaseId": "v1.2.3",
        "reason": "CHG-2001: hotfix for the checkout outage",
        "ttlMinutes": 30,
    })
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

/// `POST /security-gate/override-requests` as `token`, asserting 201.
async fn create_request(h: &Harness, token: &str, body: Value) -> Value {
    let (status, created) = h.post(REQUESTS, token, body).await;
    assert_eq!(status, StatusCode::CREATED, "create request: {created}");
    created
}

/// A developer's request for a production canary start: its id.
async fn new_request(h: &Harness) -> String {
    id_of(&create_request(h, &h.tokens.developer, request_body(CANARY, "production")).await)
}

/// `POST .../{id}/{vote}` (`approve` or `deny`) as `token` with `body`.
async fn vote(h: &Harness, token: &str, id: &str, kind: &str, body: Value) -> (StatusCode, Value) {
    h.post(&format!("{REQUESTS}/{id}/{kind}"), token, body)
        .await
}

/// An approval as `token`, asserting 200.
async fn approve(h: &Harness, token: &str, id: &str) -> Value {
    let (status, view) = vote(h, token, id, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK, "approve: {view}");
    view
}

/// `GET .../{id}` as the developer, asserting 200.
async fn show(h: &Harness, id: &str) -> Value {
    let (status, view) = h
        .get(&format!("{REQUESTS}/{id}"), &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK, "show request: {view}");
    view
}

/// `GET /security-gate/override-requests{query}` as the developer, asserting 200: the ids.
async fn listed(h: &Harness, query: &str) -> Vec<String> {
    let (status, body) = h
        .get(&format!("{REQUESTS}{query}"), &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK, "list requests: {body}");
    assert_eq!(body["truncated"], false);
    body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
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

/// Every override (active or not) that `request` made.
async fn overrides_of(h: &Harness, request: &str) -> Vec<Value> {
    h.all_overrides()
        .await
        .into_iter()
        .filter(|o| o["requestId"] == request)
        .collect()
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

/// `POST /security-gate/check` as the developer for `action` in `environment`.
async fn check(
    h: &Harness,
    action: &str,
    environment: &str,
    release: Option<&str>,
    service: Option<&str>,
) -> Value {
    let mut body = json!({"action": action, "environment": environment});
    if let Some(release) = release {
        body["releaseId"] = Value::from(release);
    }
    if let Some(service) = service {
        body["service"] = Value::from(service);
    }
    let (status, decision) = h
        .post("/security-gate/check", &h.tokens.developer, body)
        .await;
    assert_eq!(status, StatusCode::OK, "check: {decision}");
    decision
}

fn hints(body: &Value) -> String {
    body["error"]["hints"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

/// `(principal, reason)` of the audit entries of `action` with `decision`, newest first.
async fn audited(h: &Harness, action: &str, decision: &str) -> Vec<(String, String)> {
    h.audit(&format!("action={action}&decision={decision}&limit=1000"))
        .await
        .iter()
        .map(|e| {
            (
                e["principal"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pair(principal: &str, reason: &str) -> (String, String) {
    (principal.to_owned(), reason.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Making a request
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_developer_requests_an_override_and_gets_the_rules_requirement() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    let mut body = request_body(CANARY, "production");
    body["service"] = json!("payments/api");
    let created = create_request(h, &h.tokens.developer, body).await;
    let id = id_of(&created);
    assert!(id.starts_with("oreq"), "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["action"], CANARY);
    assert_eq!(created["environment"], "production");
    assert_eq!(created["service"], "payments/api");
    assert_eq!(created["releaseId"], "v1.2.3");
    assert_eq!(
        created["reason"],
        "CHG-2001: hotfix for the checkout outage"
    );
    assert_eq!(created["ttlMinutes"], 30);
    assert_eq!(created["requestedBy"], "developer");
    assert_eq!(created["requestedByRole"], "developer");
    assert_eq!(created["approvals"], json!([]));
    assert_eq!(created["denial"], Value::Null);
    assert_eq!(created["required"], 2);
    assert_eq!(
        created["approverRoles"],
        json!(["security-team", "eng-lead"])
    );
    assert_eq!(created["createdAt"], START.to_rfc3339());
    assert_eq!(created["expiresAt"], at_minutes(PENDING_MINUTES));
    assert_eq!(created["decidedAt"], Value::Null);
    assert_eq!(created["overrideId"], Value::Null);

    // Shown by id and listed exactly so; no override exists yet.
    assert_eq!(show(h, &id).await, created);
    assert_eq!(listed(h, "").await, [id.as_str()]);
    assert_eq!(listed(h, "?status=pending").await, [id.as_str()]);
    assert!(h.all_overrides().await.is_empty());

    let entries = h.audit("action=override-request.create").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["principal"], "developer");
    assert_eq!(entries[0]["decision"], "allowed");
    assert_eq!(entries[0]["environment"], "production");
    assert_eq!(entries[0]["details"]["requestId"], id.as_str());
    assert_eq!(entries[0]["details"]["ruled"], true);
    assert_eq!(entries[0]["details"]["ttlMinutes"], 30);
    let created_events = events(h, EventType::OverrideRequestCreated).await;
    assert_eq!(created_events.len(), 1);
    assert_eq!(created_events[0].data["requestId"], id.as_str());
    assert_eq!(created_events[0].data["requestedBy"], "developer");
    assert_eq!(created_events[0].data["required"], 2);

    // Every person may ask, whatever their role; a request without ttlMinutes asks for 60.
    for token in [&h.tokens.security, &h.tokens.eng_lead, &h.tokens.oncall] {
        let mut body = request_body(CANARY, "production");
        body.as_object_mut().unwrap().remove("ttlMinutes");
        let created = create_request(h, token, body).await;
        assert_eq!(created["status"], "pending");
        assert_eq!(created["ttlMinutes"], 60);
        assert_eq!(created["required"], 2);
    }
    assert_eq!(listed(h, "?status=pending").await.len(), 4);
}

#[tokio::test]
async fn a_request_waits_the_configured_pending_time() {
    let mut settings = settings(vec![canary_rule()]);
    settings.pending_request_ttl_minutes = 90;
    let w = World::with_settings(settings).await;
    let h = &w.h;
    h.clock.advance_minutes(7);
    let created = create_request(h, &h.tokens.developer, request_body(CANARY, "production")).await;
    assert_eq!(created["createdAt"], at_minutes(7));
    assert_eq!(created["expiresAt"], at_minutes(97));
}

#[tokio::test]
async fn invalid_requests_are_400_naming_the_field_and_store_nothing() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    let with = |field: &str, value: Value| {
        let mut body = request_body(CANARY, "production");
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = request_body(CANARY, "production");
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases = [
        (with("action", json!("deploy.everything")), "action"),
        (with("action", json!("health.probe")), "action"),
        (with("environment", json!("Prod!")), "environment"),
        // A well-formed name the settings do not define.
        (with("environment", json!("qa")), "environment"),
        (without("action"), "action"),
        (without("environment"), "environment"),
        (without("reason"), "reason"),
        (with("reason", json!("")), "reason"),
        (with("reason", json!("   ")), "reason"),
        (with("reason", json!("x".repeat(2_001))), "reason"),
        (with("ttlMinutes", json!(0)), "ttlMinutes"),
        (with("ttlMinutes", json!(241)), "ttlMinutes"),
        (with("ttlMinutes", json!(-5)), "ttlMinutes"),
        (with("ttlMinutes", json!(1.5)), "ttlMinutes"),
        (with("ttlMinutes", json!("30")), "ttlMinutes"),
        (with("releaseId", json!("v 1.2.3")), "releaseId"),
        (with("releaseId", json!("")), "releaseId"),
        (with("service", json!("payments api")), "service"),
        (with("service", json!("")), "service"),
        (with("approver", json!("developer")), "approver"),
        (with("bogus", json!(1)), "bogus"),
    ];
    for (body, field) in cases {
        let got = h.post(REQUESTS, &h.tokens.developer, body.clone()).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{body}: {}", got.1);
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    // The unknown environment's answer lists the known ones.
    let got = h
        .post(
            REQUESTS,
            &h.tokens.developer,
            with("environment", json!("qa")),
        )
        .await;
    let message = got.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("staging") && message.contains("production"),
        "{message}"
    );
    // Not JSON at all.
    let got = h.post_text(REQUESTS, &h.tokens.developer, "{").await;
    assert_eq!(got.0, StatusCode::BAD_REQUEST, "{}", got.1);

    assert!(listed(h, "").await.is_empty(), "nothing was stored");
    assert!(h.audit("action=override-request.create").await.is_empty());
    assert!(
        events(h, EventType::OverrideRequestCreated)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_requests_endpoints_need_a_token() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    let created = create_request(h, &h.tokens.developer, request_body(CANARY, "production")).await;
    let id = id_of(&created);
    let body = request_body(CANARY, "production").to_string();
    for (method, path, body) in [
        (Method::POST, REQUESTS.to_owned(), Some(body.as_str())),
        (Method::GET, REQUESTS.to_owned(), None),
        (Method::GET, format!("{REQUESTS}/{id}"), None),
        (Method::POST, format!("{REQUESTS}/{id}/approve"), Some("{}")),
        (
            Method::POST,
            format!("{REQUESTS}/{id}/deny"),
            Some(r#"{"comment": "no"}"#),
        ),
    ] {
        for token in [None, Some("not-a-token")] {
            let got = h.call(method.clone(), &path, token, body).await;
            assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
        }
    }
    assert_eq!(listed(h, "").await, [id.as_str()]);
    assert_eq!(show(h, &id).await, created, "nothing voted");
}

#[tokio::test]
async fn where_no_rule_matches_a_request_needs_one_approval_from_section_4s_roles() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;

    // Staging: §4's canary-start roles, one approval.
    let staging = create_request(h, &h.tokens.developer, request_body(CANARY, "staging")).await;
    assert_eq!(staging["required"], 1);
    assert_eq!(
        staging["approverRoles"],
        json!(["security-team", "eng-lead"])
    );
    let got = vote(h, &h.tokens.oncall, &id_of(&staging), "approve", json!({})).await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("OVERRIDE_NOT_PERMITTED"),
        None,
    );
    // An approval's body is optional altogether.
    let (status, approved) = h
        .call(
            Method::POST,
            &format!("{REQUESTS}/{}/approve", id_of(&staging)),
            Some(&h.tokens.eng_lead),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "approved");
    let made = get_override(h, approved["overrideId"].as_str().unwrap()).await;
    assert_eq!(made["approvers"], json!(["eng-lead"]));
    assert_eq!(made["approver"], "eng-lead");
    assert_eq!(made["environment"], "staging");

    // Production rollback, where only the canary start is ruled: §4's rollback roles.
    let rollback =
        create_request(h, &h.tokens.developer, request_body(ROLLBACK, "production")).await;
    assert_eq!(rollback["required"], 1);
    assert_eq!(
        rollback["approverRoles"],
        json!(["security-team", "eng-lead", "oncall-lead"])
    );
    let approved = approve(h, &h.tokens.oncall, &id_of(&rollback)).await;
    assert_eq!(approved["status"], "approved");
    let made = get_override(h, approved["overrideId"].as_str().unwrap()).await;
    assert_eq!(made["approver"], "oncall-lead");
    assert_eq!(made["approverRole"], "oncall-lead");
    assert_eq!(made["action"], ROLLBACK);

    let entries = h.audit("action=override-request.create").await;
    assert!(entries.iter().all(|e| e["details"]["ruled"] == false));
}

// ---------------------------------------------------------------------------------------------
// Direct overrides where a rule applies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_direct_override_is_refused_where_a_rule_matches_and_works_elsewhere() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    for token in [&h.tokens.eng_lead, &h.tokens.security] {
        let got = h
            .post(
                "/security-gate/override",
                token,
                override_body(CANARY, "production", 60),
            )
            .await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("APPROVALS_REQUIRED"),
            None,
        );
        let hints = hints(&got.1);
        assert!(
            hints.contains("/api/deploy-safety/security-gate/override-requests"),
            "{hints}"
        );
        assert!(hints.contains('2'), "the number of approvals: {hints}");
    }
    assert!(h.all_overrides().await.is_empty(), "nothing was made");
    assert_eq!(
        audited(h, "override.create", "denied").await,
        [
            pair("security-team", "APPROVALS_REQUIRED"),
            pair("eng-lead", "APPROVALS_REQUIRED")
        ]
    );
    assert_eq!(
        check(h, CANARY, "production", None, None).await["reason"],
        "OVERRIDE_REQUIRED"
    );

    // Part one stands where no rule matches: staging, and production rollback.
    let staging = h
        .create_override(&h.tokens.eng_lead, override_body(CANARY, "staging", 60))
        .await;
    assert_eq!(staging["approver"], "eng-lead");
    assert_eq!(staging["approvers"], json!(["eng-lead"]));
    assert!(
        staging.get("requestId").is_none_or(Value::is_null),
        "{staging}"
    );
    let rollback = h
        .create_override(&h.tokens.oncall, override_body(ROLLBACK, "production", 30))
        .await;
    assert_eq!(rollback["action"], ROLLBACK);
    assert_eq!(
        check(h, ROLLBACK, "production", None, None).await["reason"],
        "OVERRIDE"
    );
    assert_eq!(h.all_overrides().await.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Approving
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_second_approval_makes_the_override_with_exactly_the_requests_scope() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    let mut body = request_body(CANARY, "production");
    body["service"] = json!("payments/api");
    let created = create_request(h, &h.tokens.developer, body).await;
    let id = id_of(&created);

    // The first approval, 10 minutes later: counted, still pending.
    h.clock.advance_minutes(10);
    let (status, first) = vote(
        h,
        &h.tokens.eng_lead,
        &id,
        "approve",
        json!({"comment": "Checked the diff"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "pending");
    assert_eq!(
        first["approvals"],
        json!([{"principal": "eng-lead", "role": "eng-lead", "vote": "approve",
                "comment": "Checked the diff", "at": at_minutes(10),
                "authenticatedBy": "token"}])
    );
    assert_eq!(first["overrideId"], Value::Null);
    assert_eq!(first["decidedAt"], Value::Null);
    assert_eq!(show(h, &id).await, first);
    assert!(
        h.all_overrides().await.is_empty(),
        "one approval makes none"
    );
    assert_eq!(
        check(
            h,
            CANARY,
            "production",
            Some("v1.2.3"),
            Some("payments/api")
        )
        .await["reason"],
        "OVERRIDE_REQUIRED"
    );

    // The second, by another person, 5 minutes after that: approved, the override made now.
    h.clock.advance_minutes(5);
    let second = approve(h, &h.tokens.security, &id).await;
    assert_eq!(second["status"], "approved");
    assert_eq!(second["decidedAt"], at_minutes(15));
    let approvers: Vec<&str> = second["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["principal"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["eng-lead", "security-team"]);
    assert_eq!(second["approvals"][1]["comment"], Value::Null);
    assert_eq!(second["denial"], Value::Null);
    let override_id = second["overrideId"].as_str().unwrap().to_owned();
    assert_eq!(show(h, &id).await, second);

    let made = get_override(h, &override_id).await;
    assert_eq!(made["id"], override_id.as_str());
    assert_eq!(made["action"], CANARY);
    assert_eq!(made["environment"], "production");
    assert_eq!(made["service"], "payments/api");
    assert_eq!(made["releaseId"], "v1.2.3");
    assert_eq!(made["reason"], "CHG-2001: hotfix for the checkout outage");
    assert_eq!(made["approvers"], json!(["eng-lead", "security-team"]));
    assert_eq!(made["approver"], "eng-lead, security-team");
    assert_eq!(made["approverRole"], "security-team");
    assert_eq!(made["requestId"], id.as_str());
    assert_eq!(
        made["createdAt"],
        at_minutes(15),
        "the TTL starts at the approval"
    );
    assert_eq!(made["expiresAt"], at_minutes(45));
    assert_eq!(made["status"], "active");
    assert_eq!(made["useCount"], 0);
    assert_eq!(overrides_of(h, &id).await.len(), 1);
    assert_eq!(h.all_overrides().await.len(), 1);

    // Audited: two approvals, the last one deciding, and the override's creation.
    let approvals = h.audit("action=override-request.approve").await;
    assert_eq!(approvals.len(), 2, "{approvals:?}");
    assert_eq!(approvals[0]["principal"], "security-team");
    assert_eq!(approvals[0]["reason"], "REQUEST_APPROVED");
    assert_eq!(approvals[0]["details"]["overrideId"], override_id.as_str());
    assert_eq!(approvals[0]["details"]["approvalCount"], 2);
    assert_eq!(approvals[1]["principal"], "eng-lead");
    assert_eq!(approvals[1]["reason"], "ALLOWED");
    assert_eq!(approvals[1]["details"]["comment"], "Checked the diff");
    let made_entries = h.audit("action=override.create").await;
    assert_eq!(made_entries.len(), 1, "{made_entries:?}");
    assert_eq!(made_entries[0]["decision"], "allowed");
    assert_eq!(made_entries[0]["details"]["id"], override_id.as_str());
    assert_eq!(made_entries[0]["details"]["requestId"], id.as_str());
    assert_eq!(made_entries[0]["details"]["requestedBy"], "developer");

    // It lives exactly its 30 minutes from the approval.
    h.clock.advance_minutes(29);
    assert_eq!(
        check(
            h,
            CANARY,
            "production",
            Some("v1.2.3"),
            Some("payments/api")
        )
        .await["reason"],
        "OVERRIDE"
    );
    h.clock.advance_minutes(1);
    assert_eq!(
        check(
            h,
            CANARY,
            "production",
            Some("v1.2.3"),
            Some("payments/api")
        )
        .await["reason"],
        "OVERRIDE_REQUIRED"
    );
    assert_eq!(get_override(h, &override_id).await["status"], "expired");
    // An approved request stays approved.
    assert_eq!(show(h, &id).await["status"], "approved");
}

#[tokio::test]
async fn the_approved_override_covers_only_the_requests_release_and_service() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    // Bound to release v1.2.3 and no service: every service, that release only.
    let created = create_request(h, &h.tokens.developer, request_body(CANARY, "production")).await;
    let id = id_of(&created);
    approve(h, &h.tokens.eng_lead, &id).await;
    let approved = approve(h, &w.sec2, &id).await;
    let override_id = approved["overrideId"].as_str().unwrap().to_owned();

    let decision = check(h, CANARY, "production", Some("v1.2.3"), None).await;
    assert_eq!(decision["allowed"], true, "{decision}");
    assert_eq!(decision["reason"], "OVERRIDE");
    assert_eq!(decision["overrideId"], override_id.as_str());
    assert_eq!(
        check(
            h,
            CANARY,
            "production",
            Some("v1.2.3"),
            Some("payments/api")
        )
        .await["reason"],
        "OVERRIDE"
    );
    for release in [Some("v9.9.9"), None] {
        let decision = check(h, CANARY, "production", release, None).await;
        assert_eq!(decision["allowed"], false, "{decision}");
        assert_eq!(decision["reason"], "OVERRIDE_REQUIRED", "{release:?}");
    }
    // Not another action.
    assert_eq!(
        check(
            h,
            "deploy.canary.promote",
            "production",
            Some("v1.2.3"),
            None
        )
        .await["reason"],
        "OVERRIDE_REQUIRED"
    );

    // A real production canary start: another release is still blocked; this one starts under
    // the override.
    for release in ["v1.2.3", "v9.9.9"] {
        assert_eq!(h.validate(release, "staging").await["status"], "passed");
    }
    let start = |release: &str| json!({"releaseId": release, "environment": "production", "deploymentId": "prod-001"});
    let got = h
        .post("/canary/start", &h.tokens.developer, start("v9.9.9"))
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("OVERRIDE_REQUIRED"),
        None,
    );
    let (status, started) = h
        .post("/canary/start", &h.tokens.developer, start("v1.2.3"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["startOverrideId"], override_id.as_str());
    let used = get_override(h, &override_id).await;
    assert_eq!(used["useCount"], 1, "{used}");

    // Bound to a service: only requests naming it.
    let mut body = request_body(CANARY, "production");
    body["service"] = json!("payments/api");
    body["releaseId"] = json!("v2.0.0");
    let created = create_request(h, &h.tokens.developer, body).await;
    approve(h, &h.tokens.eng_lead, &id_of(&created)).await;
    approve(h, &h.tokens.security, &id_of(&created)).await;
    assert_eq!(
        check(
            h,
            CANARY,
            "production",
            Some("v2.0.0"),
            Some("payments/api")
        )
        .await["reason"],
        "OVERRIDE"
    );
    for service in [None, Some("search")] {
        assert_eq!(
            check(h, CANARY, "production", Some("v2.0.0"), service).await["reason"],
            "OVERRIDE_REQUIRED",
            "{service:?}"
        );
    }
}

#[tokio::test]
async fn votes_are_refused_by_who_votes_and_a_refusal_changes_nothing() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    let created = create_request(h, &h.tokens.eng_lead_2, request_body(CANARY, "production")).await;
    let id = id_of(&created);

    // The requester votes on their own request: neither approve nor deny.
    for (kind, body) in [
        ("approve", json!({})),
        ("deny", json!({"comment": "changed my mind"})),
    ] {
        let got = vote(h, &h.tokens.eng_lead_2, &id, kind, body).await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("SELF_APPROVAL"),
            None,
        );
    }
    // A developer, and an oncall-lead (§4 allows them no canary-start override), may not vote.
    for token in [&h.tokens.developer, &h.tokens.oncall] {
        for (kind, body) in [("approve", json!({})), ("deny", json!({"comment": "no"}))] {
            let got = vote(h, token, &id, kind, body).await;
            assert_error(
                &got,
                StatusCode::FORBIDDEN,
                "forbidden",
                Some("OVERRIDE_NOT_PERMITTED"),
                None,
            );
            let hints = hints(&got.1);
            assert!(hints.contains("security-team, eng-lead"), "{hints}");
        }
    }
    assert_eq!(
        show(h, &id).await,
        created,
        "no refusal changed the request"
    );
    assert!(h.all_overrides().await.is_empty());
    assert_eq!(
        audited(h, "override-request.approve", "denied").await,
        [
            pair("oncall-lead", "OVERRIDE_NOT_PERMITTED"),
            pair("developer", "OVERRIDE_NOT_PERMITTED"),
            pair("eng-lead-2", "SELF_APPROVAL"),
        ]
    );
    assert_eq!(
        audited(h, "override-request.deny", "denied").await,
        [
            pair("oncall-lead", "OVERRIDE_NOT_PERMITTED"),
            pair("developer", "OVERRIDE_NOT_PERMITTED"),
            pair("eng-lead-2", "SELF_APPROVAL"),
        ]
    );

    // Each person votes once.
    let first = approve(h, &h.tokens.eng_lead, &id).await;
    for (kind, body) in [("approve", json!({})), ("deny", json!({"comment": "no"}))] {
        let got = vote(h, &h.tokens.eng_lead, &id, kind, body).await;
        assert_error(
            &got,
            StatusCode::CONFLICT,
            "conflict",
            Some("ALREADY_VOTED"),
            None,
        );
    }
    assert_eq!(show(h, &id).await, first);
    assert_eq!(
        audited(h, "override-request.approve", "denied").await[0],
        pair("eng-lead", "ALREADY_VOTED")
    );
    assert_eq!(
        audited(h, "override-request.deny", "denied").await[0],
        pair("eng-lead", "ALREADY_VOTED")
    );

    // Bad vote bodies: 400 naming the field, before anything else.
    let long = "x".repeat(2_001);
    for (kind, body, field) in [
        ("deny", json!({}), "comment"),
        ("deny", json!({"comment": null}), "comment"),
        ("deny", json!({"comment": ""}), "comment"),
        ("deny", json!({"comment": "  "}), "comment"),
        ("deny", json!({"comment": long}), "comment"),
        ("approve", json!({"comment": long}), "comment"),
        ("approve", json!({"comment": 5}), "comment"),
        ("approve", json!({"verdict": "yes"}), "verdict"),
    ] {
        let got = vote(h, &h.tokens.security, &id, kind, body.clone()).await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{kind} {body}: {}", got.1);
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    assert_eq!(show(h, &id).await, first, "no bad body changed the request");

    // An unknown id.
    for (kind, body) in [("approve", json!({})), ("deny", json!({"comment": "no"}))] {
        let got = vote(h, &h.tokens.security, "oreq_missing", kind, body).await;
        assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    }
    let got = h
        .get(&format!("{REQUESTS}/oreq_missing"), &h.tokens.developer)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);

    // Approved: nobody votes any more.
    let approved = approve(h, &h.tokens.security, &id).await;
    assert_eq!(approved["status"], "approved");
    for (kind, body) in [("approve", json!({})), ("deny", json!({"comment": "late"}))] {
        let got = vote(h, &w.sec2, &id, kind, body).await;
        assert_error(
            &got,
            StatusCode::CONFLICT,
            "conflict",
            Some("REQUEST_NOT_PENDING"),
            None,
        );
        let hints = hints(&got.1);
        assert!(
            hints.contains(approved["overrideId"].as_str().unwrap()),
            "{hints}"
        );
    }
    assert_eq!(show(h, &id).await, approved);
    assert_eq!(overrides_of(h, &id).await.len(), 1);
    assert_eq!(
        audited(h, "override-request.deny", "denied").await[0],
        pair("security-team-2", "REQUEST_NOT_PENDING")
    );
}

#[tokio::test]
async fn a_role_outside_approver_roles_may_not_vote_even_where_section_4_allows_it() {
    // A production rollback needs two votes from eng-leads or the security team: an
    // oncall-lead, whom §4 allows a production rollback override, is not one of them.
    let w = World::new(vec![rule(
        &[Action::Rollback],
        2,
        &[Role::EngLead, Role::SecurityTeam],
    )])
    .await;
    let h = &w.h;
    let created =
        create_request(h, &h.tokens.developer, request_body(ROLLBACK, "production")).await;
    let id = id_of(&created);
    assert_eq!(
        created["approverRoles"],
        json!(["security-team", "eng-lead"])
    );
    let got = vote(h, &h.tokens.oncall, &id, "approve", json!({})).await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("OVERRIDE_NOT_PERMITTED"),
        None,
    );
    assert_eq!(show(h, &id).await, created);
    // ... nor create one directly.
    let got = h
        .post(
            "/security-gate/override",
            &h.tokens.oncall,
            override_body(ROLLBACK, "production", 30),
        )
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("APPROVALS_REQUIRED"),
        None,
    );
    approve(h, &h.tokens.eng_lead, &id).await;
    let approved = approve(h, &h.tokens.eng_lead_2, &id).await;
    assert_eq!(approved["status"], "approved");
    let made = get_override(h, approved["overrideId"].as_str().unwrap()).await;
    assert_eq!(made["approver"], "eng-lead, eng-lead-2");
    assert_eq!(made["action"], ROLLBACK);
    // A production canary start is not ruled here: part one as written.
    h.create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 30))
        .await;
}

// ---------------------------------------------------------------------------------------------
// Denying
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn one_deny_ends_the_request_and_no_override_is_made() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    let created = create_request(h, &h.tokens.developer, request_body(CANARY, "production")).await;
    let id = id_of(&created);
    approve(h, &h.tokens.eng_lead, &id).await;
    h.clock.advance_minutes(3);
    let (status, denied) = vote(
        h,
        &h.tokens.security,
        &id,
        "deny",
        json!({"comment": "Not during the incident"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{denied}");
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["decidedAt"], at_minutes(3));
    assert_eq!(denied["overrideId"], Value::Null);
    assert_eq!(
        denied["denial"],
        json!({"principal": "security-team", "role": "security-team", "vote": "deny",
               "comment": "Not during the incident", "at": at_minutes(3),
               "authenticatedBy": "token"})
    );
    assert_eq!(denied["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(denied["approvals"][0]["principal"], "eng-lead");
    assert_eq!(show(h, &id).await, denied);
    assert!(h.all_overrides().await.is_empty());
    assert_eq!(
        check(h, CANARY, "production", Some("v1.2.3"), None).await["reason"],
        "OVERRIDE_REQUIRED"
    );

    // Over: neither approvals nor denials count any more.
    for (kind, body) in [
        ("approve", json!({})),
        ("deny", json!({"comment": "me too"})),
    ] {
        let got = vote(h, &w.sec2, &id, kind, body).await;
        assert_error(
            &got,
            StatusCode::CONFLICT,
            "conflict",
            Some("REQUEST_NOT_PENDING"),
            None,
        );
    }
    assert_eq!(show(h, &id).await, denied);
    assert!(h.all_overrides().await.is_empty());

    let entries = h
        .audit("action=override-request.deny&decision=allowed")
        .await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["principal"], "security-team");
    assert_eq!(entries[0]["reason"], "REQUEST_DENIED");
    assert_eq!(entries[0]["details"]["comment"], "Not during the incident");
    let denied_events = events(h, EventType::OverrideRequestDenied).await;
    assert_eq!(denied_events.len(), 1);
    assert_eq!(denied_events[0].data["requestId"], id.as_str());
    assert_eq!(denied_events[0].data["deniedBy"], "security-team");
    assert_eq!(denied_events[0].data["comment"], "Not during the incident");
    assert!(
        events(h, EventType::OverrideRequestApproved)
            .await
            .is_empty()
    );
    assert!(events(h, EventType::OverrideCreated).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Listing, expiry, events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_are_listed_by_where_they_stand_now() {
    let mut settings = settings(vec![canary_rule()]);
    settings.pending_request_ttl_minutes = 60;
    let w = World::with_settings(settings).await;
    let h = &w.h;
    // `expired` is made at 0 (waits until 60); the others at 30, 31 and 32.
    let expired = new_request(h).await;
    h.clock.advance_minutes(30);
    let pending = new_request(h).await;
    h.clock.advance_minutes(1);
    let approved = new_request(h).await;
    approve(h, &h.tokens.eng_lead, &approved).await;
    approve(h, &h.tokens.security, &approved).await;
    h.clock.advance_minutes(1);
    let denied = new_request(h).await;
    vote(
        h,
        &h.tokens.security,
        &denied,
        "deny",
        json!({"comment": "no"}),
    )
    .await;

    // At 59 the first still waits.
    h.clock.advance_minutes(27);
    assert_eq!(
        listed(h, "?status=pending").await,
        [pending.clone(), expired.clone()]
    );
    assert!(listed(h, "?status=expired").await.is_empty());

    // At 60 it is expired, though the engine has not marked it yet.
    h.clock.advance_minutes(1);
    assert_eq!(listed(h, "?status=pending").await, [pending.as_str()]);
    assert_eq!(listed(h, "?status=approved").await, [approved.as_str()]);
    assert_eq!(listed(h, "?status=denied").await, [denied.as_str()]);
    assert_eq!(listed(h, "?status=expired").await, [expired.as_str()]);
    assert_eq!(
        listed(h, "").await,
        [
            denied.clone(),
            approved.clone(),
            pending.clone(),
            expired.clone()
        ],
        "newest first"
    );
    let shown = show(h, &expired).await;
    assert_eq!(shown["status"], "expired");
    assert_eq!(
        shown["decidedAt"], shown["expiresAt"],
        "expired at expiresAt"
    );
    let (status, body) = h.get(REQUESTS, &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    let statuses: Vec<&str> = body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["denied", "approved", "pending", "expired"]);

    // The tick changes nothing of what is listed.
    ExpiryWatcher::new(h.app.clone())
        .tick(h.clock.now())
        .await
        .unwrap();
    assert_eq!(listed(h, "?status=expired").await, [expired.as_str()]);
    assert_eq!(listed(h, "?status=pending").await, [pending.as_str()]);

    for query in [
        "?status=bogus",
        "?status=",
        "?status=PENDING",
        "?state=pending",
    ] {
        let got = h
            .get(&format!("{REQUESTS}{query}"), &h.tokens.developer)
            .await;
        let field = if query.contains("state") {
            "state"
        } else {
            "status"
        };
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
async fn votes_at_or_after_the_waiting_time_are_409_and_the_engine_marks_it_once() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    let watcher = ExpiryWatcher::new(h.app.clone());
    let created = create_request(h, &h.tokens.developer, request_body(CANARY, "production")).await;
    let id = id_of(&created);
    // Decided ones, which never expire.
    let approved = new_request(h).await;
    approve(h, &h.tokens.eng_lead, &approved).await;
    let approved_view = approve(h, &h.tokens.security, &approved).await;
    let denied = new_request(h).await;
    let (_, denied_view) = vote(
        h,
        &h.tokens.security,
        &denied,
        "deny",
        json!({"comment": "no"}),
    )
    .await;

    // One minute before: it still takes votes, and the tick leaves it alone.
    h.clock.advance_minutes(PENDING_MINUTES - 1);
    assert_eq!(
        watcher.tick(h.clock.now()).await.unwrap(),
        1,
        "only the approved request's override, long expired, is announced"
    );
    assert!(
        events(h, EventType::OverrideRequestExpired)
            .await
            .is_empty()
    );
    let first = approve(h, &h.tokens.eng_lead, &id).await;
    assert_eq!(first["status"], "pending");

    // At `expiresAt` exactly: expired, before the engine marks it.
    h.clock.advance_minutes(1);
    let got = vote(h, &h.tokens.security, &id, "approve", json!({})).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("REQUEST_NOT_PENDING"),
        None,
    );
    let unmarked = show(h, &id).await;
    assert_eq!(unmarked["status"], "expired");
    assert_eq!(
        unmarked["decidedAt"], unmarked["expiresAt"],
        "expired at expiresAt"
    );
    assert_eq!(unmarked["approvals"].as_array().unwrap().len(), 1);
    assert!(overrides_of(h, &id).await.is_empty());

    // The engine's tick, a little later, marks it once.
    h.clock.advance_minutes(2);
    assert_eq!(watcher.tick(h.clock.now()).await.unwrap(), 1);
    let marked = show(h, &id).await;
    assert_eq!(marked["status"], "expired");
    assert_eq!(
        marked["decidedAt"], marked["expiresAt"],
        "expired at expiresAt, not when the engine marked it"
    );
    assert_eq!(marked["overrideId"], Value::Null);
    let expired_events = events(h, EventType::OverrideRequestExpired).await;
    assert_eq!(expired_events.len(), 1);
    assert_eq!(expired_events[0].data["requestId"], id.as_str());
    let entries = h.audit("action=override-request.expire").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["principal"], "system");
    assert_eq!(entries[0]["decision"], "recorded");
    assert_eq!(entries[0]["details"]["requestId"], id.as_str());

    // After the tick: still 409, for approvals and denials.
    for (kind, body) in [("approve", json!({})), ("deny", json!({"comment": "late"}))] {
        let got = vote(h, &w.sec2, &id, kind, body).await;
        assert_error(
            &got,
            StatusCode::CONFLICT,
            "conflict",
            Some("REQUEST_NOT_PENDING"),
            None,
        );
    }
    assert_eq!(show(h, &id).await, marked);
    assert_eq!(
        audited(h, "override-request.approve", "denied").await,
        [
            pair("security-team-2", "REQUEST_NOT_PENDING"),
            pair("security-team", "REQUEST_NOT_PENDING"),
        ]
    );

    // Once only; decided requests never expire.
    h.clock.advance_minutes(10 * PENDING_MINUTES);
    assert_eq!(
        watcher.tick(h.clock.now()).await.unwrap(),
        0,
        "nothing left to expire"
    );
    assert_eq!(events(h, EventType::OverrideRequestExpired).await.len(), 1);
    assert_eq!(h.audit("action=override-request.expire").await.len(), 1);
    assert_eq!(show(h, &approved).await, approved_view);
    assert_eq!(show(h, &denied).await, denied_view);
    assert_eq!(show(h, &id).await, marked);
}

#[tokio::test]
async fn every_step_of_a_request_is_an_event_naming_it() {
    let mut settings = settings(vec![canary_rule()]);
    settings.pending_request_ttl_minutes = 60;
    let w = World::with_settings(settings).await;
    let h = &w.h;
    let approved = new_request(h).await;
    let denied = new_request(h).await;
    let expired = new_request(h).await;
    approve(h, &h.tokens.eng_lead, &approved).await;
    let view = approve(h, &h.tokens.security, &approved).await;
    vote(
        h,
        &h.tokens.security,
        &denied,
        "deny",
        json!({"comment": "no"}),
    )
    .await;
    h.clock.advance_minutes(60);
    ExpiryWatcher::new(h.app.clone())
        .tick(h.clock.now())
        .await
        .unwrap();

    let all = h.app.events_after(0, 1_000).await.unwrap();
    let of_requests: Vec<(EventType, String)> = all
        .iter()
        .filter(|e| {
            matches!(
                e.event_type,
                EventType::OverrideRequestCreated
                    | EventType::OverrideRequestApproved
                    | EventType::OverrideRequestDenied
                    | EventType::OverrideRequestExpired
                    | EventType::OverrideCreated
            )
        })
        .map(|e| {
            let key = if e.event_type == EventType::OverrideCreated {
                "overrideId"
            } else {
                "requestId"
            };
            (e.event_type, e.data[key].as_str().unwrap().to_owned())
        })
        .collect();
    let override_id = view["overrideId"].as_str().unwrap().to_owned();
    assert_eq!(
        of_requests,
        [
            (EventType::OverrideRequestCreated, approved.clone()),
            (EventType::OverrideRequestCreated, denied.clone()),
            (EventType::OverrideRequestCreated, expired.clone()),
            (EventType::OverrideRequestApproved, approved.clone()),
            (EventType::OverrideCreated, override_id.clone()),
            (EventType::OverrideRequestDenied, denied.clone()),
            (EventType::OverrideRequestExpired, expired.clone()),
        ]
    );
    for event in &all {
        if event.event_type == EventType::OverrideRequestApproved {
            assert_eq!(event.data["overrideId"], override_id.as_str());
            assert_eq!(
                event.data["approvals"],
                json!(["eng-lead", "security-team"])
            );
        }
        if matches!(
            event.event_type,
            EventType::OverrideRequestCreated
                | EventType::OverrideRequestApproved
                | EventType::OverrideRequestDenied
                | EventType::OverrideRequestExpired
        ) {
            assert_eq!(
                event.environment,
                Some(deploy_safety_core::Environment::PRODUCTION)
            );
            assert_eq!(event.data["action"], CANARY);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lockdown, revocation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn in_lockdown_a_request_is_made_and_approved_but_honored_only_after() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    h.set_mode("lockdown", Some("SEC-42: credential leak"))
        .await;
    let created = create_request(h, &h.tokens.developer, request_body(CANARY, "production")).await;
    let id = id_of(&created);
    approve(h, &h.tokens.eng_lead, &id).await;
    let approved = approve(h, &h.tokens.security, &id).await;
    assert_eq!(approved["status"], "approved");
    let override_id = approved["overrideId"].as_str().unwrap().to_owned();
    assert_eq!(get_override(h, &override_id).await["status"], "active");

    // Lockdown: the override is not honored.
    let decision = check(h, CANARY, "production", Some("v1.2.3"), None).await;
    assert_eq!(decision["allowed"], false, "{decision}");
    assert_eq!(decision["reason"], "LOCKDOWN");
    assert_eq!(decision["overrideId"], Value::Null);
    assert_eq!(
        h.validate("v1.2.3", "staging").await["status"],
        "failed",
        "lockdown gate"
    );
    let body = json!({"releaseId": "v1.2.3", "environment": "production", "deploymentId": "d-1"});
    let got = h
        .post("/canary/start", &h.tokens.developer, body.clone())
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("LOCKDOWN"),
        None,
    );
    assert_eq!(get_override(h, &override_id).await["useCount"], 0);

    // Lockdown over: the override made during it is honored (SPEC §4, §19).
    h.set_mode("enforce", None).await;
    let decision = check(h, CANARY, "production", Some("v1.2.3"), None).await;
    assert_eq!(decision["allowed"], true, "{decision}");
    assert_eq!(decision["reason"], "OVERRIDE");
    assert_eq!(decision["overrideId"], override_id.as_str());
    assert_eq!(h.validate("v1.2.3", "staging").await["status"], "passed");
    let (status, started) = h.post("/canary/start", &h.tokens.developer, body).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    assert_eq!(started["startOverrideId"], override_id.as_str());
}

#[tokio::test]
async fn an_approver_may_revoke_the_requests_override_and_the_requester_may_not() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    let created = create_request(h, &h.tokens.developer, request_body(CANARY, "production")).await;
    let id = id_of(&created);
    approve(h, &h.tokens.eng_lead, &id).await;
    let approved = approve(h, &w.sec2, &id).await;
    let override_id = approved["overrideId"].as_str().unwrap().to_owned();
    let path = format!("/security-gate/override/{override_id}");

    // The developer who asked for it, and an eng-lead who did not approve it, may not.
    for token in [&h.tokens.developer, &h.tokens.eng_lead_2] {
        let got = h.delete(&path, token).await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("NOT_OVERRIDE_CREATOR"),
            None,
        );
    }
    assert_eq!(get_override(h, &override_id).await["status"], "active");
    assert_eq!(
        audited(h, "override.revoke", "denied").await,
        [
            pair("eng-lead-2", "NOT_OVERRIDE_CREATOR"),
            pair("developer", "NOT_OVERRIDE_CREATOR")
        ]
    );

    // The first approver (not the one whose approval made it) may.
    let (status, revoked) = h.delete(&path, &h.tokens.eng_lead).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revokedBy"], "eng-lead");
    assert_eq!(
        check(h, CANARY, "production", Some("v1.2.3"), None).await["reason"],
        "OVERRIDE_REQUIRED"
    );
    // The request stays approved, naming the revoked override.
    let shown = show(h, &id).await;
    assert_eq!(shown["status"], "approved");
    assert_eq!(shown["overrideId"], override_id.as_str());
    // The other approver finds it revoked.
    let got = h.delete(&path, &w.sec2).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("OVERRIDE_NOT_ACTIVE"),
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// Workload identities
// ---------------------------------------------------------------------------------------------

const AUDIENCE: &str = "deploy-safety";

/// A pipeline of `acme/*` authenticates as `github:{repository}` with `role`.
fn workload_issuer(provider: &FakeProvider, role: Role) -> OidcIssuerSettings {
    OidcIssuerSettings {
        name: "github".to_owned(),
        issuer: provider.issuer(),
        audience: AUDIENCE.to_owned(),
        jwks_url: None,
        algorithms: vec![Algorithm::RS256],
        leeway_seconds: 60,
        max_token_age_minutes: 60,
        bindings: vec![Binding {
            claims: vec![("repository".to_owned(), ClaimPattern::new("acme/*"))]
                .into_iter()
                .collect(),
            principal: PrincipalTemplate::parse("github:{repository}").unwrap(),
            role,
        }],
    }
}

fn workload_token(h: &Harness, provider: &FakeProvider, repository: &str) -> String {
    let now = h.clock.now().unix_millis() / 1000;
    provider.sign(&json!({
        "iss": provider.issuer(),
        "aud": AUDIENCE,
        "sub": format!("repo:{repository}:environment:production"),
        "repository": repository,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }))
}

#[tokio::test]
async fn a_workload_identity_neither_requests_nor_votes() {
    let provider = FakeProvider::start().await;
    let mut settings = settings(vec![canary_rule()]);
    settings.auth = AuthSettings {
        oidc: vec![workload_issuer(&provider, Role::SecurityTeam)],
        sso: None,
        provider_timeout: Duration::from_secs(3),
    };
    let w = World::with_settings(settings).await;
    let h = &w.h;
    let jwt = workload_token(h, &provider, "acme/payments");
    let (status, me) = h.get("/auth/whoami", &jwt).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["principal"], "github:acme/payments");
    assert_eq!(me["role"], "security-team");

    // Not a request, though every person may make one.
    let got = h
        .post(REQUESTS, &jwt, request_body(CANARY, "production"))
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("WORKLOAD_CANNOT_APPROVE"),
        None,
    );
    assert!(listed(h, "").await.is_empty());
    let refused = h
        .audit("action=override-request.create&decision=denied")
        .await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["principal"], "github:acme/payments");
    assert_eq!(refused[0]["reason"], "WORKLOAD_CANNOT_APPROVE");
    assert_eq!(refused[0]["details"]["authenticatedBy"], "oidc:github");
    // Invalid input is still a 400 first.
    let mut bad = request_body(CANARY, "production");
    bad["ttlMinutes"] = json!(0);
    let got = h.post(REQUESTS, &jwt, bad).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("ttlMinutes"),
    );

    // Not a vote, of either kind, on a real request or an unknown one (403 before 404).
    let created = create_request(h, &h.tokens.developer, request_body(CANARY, "production")).await;
    let id = id_of(&created);
    for request in [id.as_str(), "oreq_missing"] {
        for (kind, body) in [("approve", json!({})), ("deny", json!({"comment": "no"}))] {
            let got = vote(h, &jwt, request, kind, body).await;
            assert_error(
                &got,
                StatusCode::FORBIDDEN,
                "forbidden",
                Some("WORKLOAD_CANNOT_APPROVE"),
                None,
            );
        }
    }
    assert_eq!(show(h, &id).await, created, "no workload vote counted");
    assert_eq!(
        audited(h, "override-request.approve", "denied").await,
        [
            pair("github:acme/payments", "WORKLOAD_CANNOT_APPROVE"),
            pair("github:acme/payments", "WORKLOAD_CANNOT_APPROVE"),
        ]
    );

    // People approve; the pipeline's check then uses the override.
    approve(h, &h.tokens.eng_lead, &id).await;
    approve(h, &h.tokens.security, &id).await;
    let (status, decision) = h
        .post(
            "/security-gate/check",
            &jwt,
            json!({"action": CANARY, "environment": "production", "releaseId": "v1.2.3"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["reason"], "OVERRIDE");
}

// ---------------------------------------------------------------------------------------------
// Two last approvals at once
// ---------------------------------------------------------------------------------------------

/// A request with one approval in, needing one more.
async fn one_approval_in(h: &Harness) -> String {
    let created = create_request(h, &h.tokens.developer, request_body(CANARY, "production")).await;
    let id = id_of(&created);
    approve(h, &h.tokens.eng_lead, &id).await;
    id
}

async fn approve_on(router: &Router, token: &str, id: &str) -> (StatusCode, Value) {
    let reply = send(
        router,
        Method::POST,
        &format!("{API}{REQUESTS}/{id}/approve"),
        Some(&format!("Bearer {token}")),
        Some("{}"),
    )
    .await;
    (reply.status, reply.json())
}

/// The two answers to two last approvals at once: one approves, the other finds it decided;
/// one override exists and the request holds two approvals.
async fn assert_one_winner(h: &Harness, id: &str, a: (StatusCode, Value), b: (StatusCode, Value)) {
    let mut answers = [a, b];
    answers.sort_by_key(|(status, _)| *status);
    let [(won, view), lost] = answers;
    assert_eq!(won, StatusCode::OK, "{view} / {}", lost.1);
    assert_eq!(view["status"], "approved", "{view}");
    assert_error(
        &lost,
        StatusCode::CONFLICT,
        "conflict",
        Some("REQUEST_NOT_PENDING"),
        None,
    );
    let made = overrides_of(h, id).await;
    assert_eq!(made.len(), 1, "exactly one override: {made:?}");
    assert_eq!(made[0]["id"], view["overrideId"]);
    let shown = show(h, id).await;
    assert_eq!(shown["status"], "approved");
    assert_eq!(shown["approvals"].as_array().unwrap().len(), 2, "{shown}");
    assert_eq!(shown["overrideId"], view["overrideId"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_last_approvals_at_once_make_one_override() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    for _ in 0..20 {
        let id = one_approval_in(h).await;
        let (router_a, router_b) = (h.router.clone(), h.router.clone());
        let (token_a, token_b) = (h.tokens.security.clone(), w.sec2.clone());
        let (id_a, id_b) = (id.clone(), id.clone());
        let a = tokio::spawn(async move { approve_on(&router_a, &token_a, &id_a).await });
        let b = tokio::spawn(async move { approve_on(&router_b, &token_b, &id_b).await });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_one_winner(h, &id, a, b).await;
    }
    assert_eq!(h.all_overrides().await.len(), 20);
    assert_eq!(
        events(h, EventType::OverrideRequestApproved).await.len(),
        20
    );
    assert_eq!(events(h, EventType::OverrideCreated).await.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_last_approvals_at_once_on_two_replicas_make_one_override() {
    let Some(db) = TestDb::postgres() else {
        return;
    };
    let settings = settings(vec![canary_rule()]);
    let h = Harness::on_database(db, HttpSettings::default(), settings.clone()).await;
    let sec2 = h.token("security-team-2", Role::SecurityTeam).await;
    // Replica B: its own App, store and router on the same schema, on the same clock.
    let url = h.db.url();
    let store = std::thread::spawn(move || deploy_safety_store::Store::open(&url))
        .join()
        .unwrap()
        .unwrap();
    let mut settings_b = settings;
    settings_b.checkpoints = Some(common::test_checkpoints());
    settings_b.replica = "replica-b".to_owned();
    let app_b = App::new(store, h.clock.clone(), settings_b);
    let replica_b = deploy_safety_server::router(app_b, &HttpSettings::default());

    for round in 0..20 {
        let id = one_approval_in(&h).await;
        let (router_a, router_b) = (h.router.clone(), replica_b.clone());
        // Alternate who arrives where.
        let (token_a, token_b) = if round % 2 == 0 {
            (h.tokens.security.clone(), sec2.clone())
        } else {
            (sec2.clone(), h.tokens.security.clone())
        };
        let (id_a, id_b) = (id.clone(), id.clone());
        let a = tokio::spawn(async move { approve_on(&router_a, &token_a, &id_a).await });
        let b = tokio::spawn(async move { approve_on(&router_b, &token_b, &id_b).await });
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert_one_winner(&h, &id, a, b).await;
    }
    assert_eq!(h.all_overrides().await.len(), 20);
    assert_eq!(events(&h, EventType::OverrideCreated).await.len(), 20);
    let verify = h.get("/audit/verify", &h.tokens.security).await;
    assert_eq!(verify.0, StatusCode::OK);
    assert_eq!(verify.1["valid"], true, "{}", verify.1);
}

// ---------------------------------------------------------------------------------------------
// Order of votes, and 403 before 404
// ---------------------------------------------------------------------------------------------

/// Votes are in the order cast (`approver` lists every approver in that order), even when the
/// clock does not move between them: not in name order.
#[tokio::test]
async fn votes_cast_in_the_same_millisecond_keep_the_order_cast() {
    let w = World::new(vec![rule(
        &[Action::CanaryStart],
        3,
        &[Role::EngLead, Role::SecurityTeam],
    )])
    .await;
    let h = &w.h;
    let id = new_request(h).await;
    approve(h, &w.sec2, &id).await;
    approve(h, &h.tokens.eng_lead, &id).await;
    let approved = approve(h, &h.tokens.security, &id).await;
    let order: Vec<&str> = approved["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["principal"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["security-team-2", "eng-lead", "security-team"]);
    let made = get_override(h, approved["overrideId"].as_str().unwrap()).await;
    assert_eq!(made["approver"], "security-team-2, eng-lead, security-team");
}

/// SPEC §3: 403 (role not permitted) comes before 404. A developer may vote on no request
/// (§4 allows developers no override), so their vote is refused before the id is looked up,
/// as `DELETE /security-gate/override/{id}` and workload votes are.
#[tokio::test]
async fn a_developers_vote_on_an_unknown_request_is_403_before_404() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    for (kind, body) in [("approve", json!({})), ("deny", json!({"comment": "no"}))] {
        let got = vote(h, &h.tokens.developer, "oreq_missing", kind, body).await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("OVERRIDE_NOT_PERMITTED"),
            None,
        );
    }
}

/// An approval's body is optional (no body, or only whitespace, is `{}`); a denial's is not.
#[tokio::test]
async fn an_approval_needs_no_body_and_a_denial_needs_its_comment() {
    let w = World::new(vec![canary_rule()]).await;
    let h = &w.h;
    let id = new_request(h).await;
    let path = format!("{REQUESTS}/{id}/approve");
    let (status, view) = h
        .call(Method::POST, &path, Some(&h.tokens.eng_lead), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["approvals"][0]["principal"], "eng-lead");
    assert_eq!(view["approvals"][0]["comment"], Value::Null);
    for body in [None, Some("{}"), Some("null")] {
        let got = h
            .call(
                Method::POST,
                &format!("{REQUESTS}/{id}/deny"),
                Some(&h.tokens.security),
                body,
            )
            .await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{body:?}: {}", got.1);
    }
    let (status, view) = h
        .call(Method::POST, &path, Some(&h.tokens.security), Some("  \n"))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "approved");
}

/// Settings made stricter after a request was made (a restart with a new settings file) apply
/// to it while it is pending: the larger `required`, the narrower roles, the lower TTL maximum.
#[tokio::test]
async fn stricter_settings_reach_a_pending_request() {
    let w = World::new(vec![rule(
        &[Action::CanaryStart],
        1,
        &[Role::EngLead, Role::SecurityTeam],
    )])
    .await;
    let h = &w.h;
    let mut body = request_body(CANARY, "production");
    body["ttlMinutes"] = json!(120);
    let id = id_of(&create_request(h, &h.tokens.developer, body).await);

    // The same database, under stricter settings.
    let mut stricter = settings(vec![rule(&[Action::CanaryStart], 2, &[Role::SecurityTeam])]);
    stricter.max_override_ttl_minutes = 30;
    stricter.checkpoints = Some(common::test_checkpoints());
    let url = h.db.url();
    let store = std::thread::spawn(move || deploy_safety_store::Store::open(&url))
        .join()
        .unwrap()
        .unwrap();
    let restarted = deploy_safety_server::router(
        App::new(store, h.clock.clone(), stricter),
        &HttpSettings::default(),
    );
    let call = |token: String, path: String, body: Option<&'static str>| {
        let router = restarted.clone();
        async move {
            let reply = send(
                &router,
                Method::POST,
                &format!("{API}{path}"),
                Some(&format!("Bearer {token}")),
                body,
            )
            .await;
            (reply.status, reply.json())
        }
    };
    let path = format!("{REQUESTS}/{id}/approve");
    let (status, refused) = call(h.tokens.eng_lead.clone(), path.clone(), Some("{}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["error"]["reason"], "OVERRIDE_NOT_PERMITTED");
    let (status, counted) = call(h.tokens.security.clone(), path.clone(), Some("{}")).await;
    assert_eq!(status, StatusCode::OK, "{counted}");
    assert_eq!(
        counted["status"], "pending",
        "one approval no longer suffices"
    );
    assert_eq!(counted["required"], 2);
    assert_eq!(counted["approverRoles"], json!(["security-team"]));
    assert_eq!(counted["ttlMinutes"], 30);
    let (status, approved) = call(w.sec2.clone(), path, Some("{}")).await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["status"], "approved");
    let made = get_override(h, approved["overrideId"].as_str().unwrap()).await;
    assert_eq!(
        made["expiresAt"],
        at_minutes(30),
        "the TTL is today's maximum, from the approval"
    );
}
