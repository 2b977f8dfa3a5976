//! Rollbacks, release history and load shedding over HTTP (SPEC §10–11, RUNBOOK "Emergency
//! Rollback" and "What Works During Lockdown"): create and execute, the gate on execution in
//! staging, production and lockdown, release-bound overrides, known targets, the automatic
//! rollback of an unhealthy canary; load shedding's gate and input.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{Harness, START, assert_error, override_body};
use deploy_safety_app::AppSettings;
use deploy_safety_core::{EventType, StepAction};
use deploy_safety_server::HttpSettings;
use serde_json::{Value, json};

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

fn rollback_body(environment: &str, from: &str, to: &str) -> Value {
    json!({"environment": environment, "fromVersion": from, "toVersion": to,
           "reason": "High error rate after deployment"})
}

/// `POST /rollback/create` as `token`, asserting 201.
async fn create(h: &Harness, token: &str, body: Value) -> Value {
    let (status, created) = h.post("/rollback/create", token, body).await;
    assert_eq!(status, StatusCode::CREATED, "create rollback: {created}");
    created
}

async fn execute(h: &Harness, token: &str, id: &str) -> (StatusCode, Value) {
    h.call(
        Method::POST,
        &format!("/rollback/{id}/execute"),
        Some(token),
        None,
    )
    .await
}

async fn get_rollback(h: &Harness, id: &str) -> Value {
    let (status, found) = h.get(&format!("/rollback/{id}"), &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found
}

async fn releases(h: &Harness, environment: &str) -> Value {
    let (status, history) = h
        .get(&format!("/releases/{environment}"), &h.tokens.developer)
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    history
}

/// Runs `release` in staging: a staging canary started and promoted at once.
async fn ran_in_staging(h: &Harness, release: &str) {
    let (status, started) = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            json!({"releaseId": release, "environment": "staging", "deploymentId": "d-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let (status, promoted) = h
        .post(
            "/canary/promote",
            &h.tokens.developer,
            json!({"environment": "staging"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
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

// ---------------------------------------------------------------------------------------------
// Create and execute
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn runbook_staging_rollback_create_then_execute() {
    let h = Harness::new().await;
    // The runbook's body, verbatim, as a developer.
    let created = create(
        &h,
        &h.tokens.developer,
        json!({
            "environment": "staging",
            "fromVersion": "v1.2.3",
            "toVersion": "v1.2.2",
            "reason": "High error rate after deployment"
        }),
    )
    .await;
    let id = id_of(&created);
    assert!(id.starts_with("rbk_"), "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["environment"], "staging");
    assert_eq!(created["fromVersion"], "v1.2.3");
    assert_eq!(created["toVersion"], "v1.2.2");
    assert_eq!(created["reason"], "High error rate after deployment");
    assert_eq!(created["createdBy"], "developer");
    assert_eq!(created["createdAt"], START.to_rfc3339());
    assert_eq!(created["automatic"], false);
    // v1.2.2 never ran in staging.
    assert_eq!(created["knownTarget"], false);
    let warning = created["warning"].as_str().unwrap();
    assert!(warning.contains("v1.2.2"), "{warning}");
    assert!(warning.contains("never ran"), "{warning}");
    assert_eq!(get_rollback(&h, &id).await, created);

    // Execute: staging needs no override; with no executor configured it is executed and
    // announced.
    h.clock.advance_minutes(1);
    let (status, executed) = execute(&h, &h.tokens.developer, &id).await;
    assert_eq!(status, StatusCode::OK, "{executed}");
    assert_eq!(executed["id"], id.as_str());
    assert_eq!(executed["status"], "executed");
    assert_eq!(executed["executedBy"], "developer");
    assert_eq!(executed["executedAt"], START.plus_minutes(1).to_rfc3339());
    assert!(executed["overrideId"].is_null());
    assert!(executed["outcomeMessage"].is_string(), "{executed}");
    assert_eq!(get_rollback(&h, &id).await, executed);

    // The release history shows it.
    let history = releases(&h, "staging").await;
    assert_eq!(history["current"], "v1.2.2");
    let record = &history["releases"][0];
    assert_eq!(record["releaseId"], "v1.2.2");
    assert_eq!(record["change"], "rollback");
    assert_eq!(record["reference"], id.as_str());
    assert_eq!(record["by"], "developer");

    // Audited: the creation, and the gate's decision on the execution.
    let created_entries = h.audit("action=rollback.create").await;
    assert_eq!(created_entries.len(), 1);
    assert_eq!(created_entries[0]["principal"], "developer");
    assert_eq!(
        audited(&h, "deploy.rollback", "allowed").await,
        vec![("ALLOWED".to_owned(), "staging".to_owned())]
    );
    let executed_entry = &h.audit("action=deploy.rollback").await[0];
    assert_eq!(executed_entry["details"]["rollbackId"], id.as_str());

    // Announced as an event, for the deploy system.
    let events = h.app.events_after(0, 100).await.unwrap();
    let announced: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == EventType::RollbackExecuted)
        .collect();
    assert_eq!(announced.len(), 1, "{events:?}");
    assert_eq!(announced[0].data["rollbackId"], id.as_str());
    assert_eq!(announced[0].data["toVersion"], "v1.2.2");
    assert_eq!(announced[0].data["status"], "executed");
}

#[tokio::test]
async fn rollback_target_is_known_once_it_ran_there() {
    let h = Harness::new().await;
    ran_in_staging(&h, "v1.2.2").await;
    let created = create(
        &h,
        &h.tokens.developer,
        rollback_body("staging", "v1.2.3", "v1.2.2"),
    )
    .await;
    assert_eq!(created["knownTarget"], true, "{created}");
    assert!(created["warning"].is_null(), "{created}");
    // It ran in staging, not in production.
    let created = create(
        &h,
        &h.tokens.developer,
        rollback_body("production", "v1.2.3", "v1.2.2"),
    )
    .await;
    assert_eq!(created["knownTarget"], false, "{created}");
    assert!(created["warning"].is_string(), "{created}");
}

#[tokio::test]
async fn rollback_create_input_is_validated_naming_the_field() {
    let h = Harness::new().await;
    let cases: Vec<(Value, &str)> = vec![
        (rollback_body("staging", "v1.2.3", "v1.2.3"), "toVersion"),
        (
            json!({"environment": "staging", "fromVersion": "v1.2.3", "toVersion": "v1.2.2"}),
            "reason",
        ),
        (
            json!({"environment": "staging", "fromVersion": "v1.2.3", "toVersion": "v1.2.2",
                   "reason": ""}),
            "reason",
        ),
        (
            json!({"environment": "staging", "fromVersion": "v1.2.3", "toVersion": "v1.2.2",
                   "reason": "   "}),
            "reason",
        ),
        (
            json!({"environment": "staging", "fromVersion": "v1.2.3", "reason": "x"}),
            "toVersion",
        ),
        (
            json!({"environment": "staging", "toVersion": "v1.2.2", "reason": "x"}),
            "fromVersion",
        ),
        (rollback_body("staging", "", "v1.2.2"), "fromVersion"),
        (rollback_body("staging", "v1.2.3", ""), "toVersion"),
        (rollback_body("qa", "v1.2.3", "v1.2.2"), "environment"),
        (
            json!({"fromVersion": "v1.2.3", "toVersion": "v1.2.2", "reason": "x"}),
            "environment",
        ),
        (
            json!({"environment": "staging", "fromVersion": "v1.2.3", "toVersion": "v1.2.2",
                   "reason": "x", "force": true}),
            "force",
        ),
    ];
    for (body, field) in cases {
        let got = h
            .post("/rollback/create", &h.tokens.developer, body.clone())
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    // 401 before 400.
    let got = h
        .call(
            Method::POST,
            "/rollback/create",
            None,
            Some(&rollback_body("staging", "v1", "v1").to_string()),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    // Nothing was created.
    let (status, list) = h.get("/rollbacks", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["rollbacks"], json!([]));
}

#[tokio::test]
async fn runbook_production_rollback_needs_an_oncall_lead_override() {
    let h = Harness::new().await;
    // Creating is not gated; executing is.
    let created = create(
        &h,
        &h.tokens.developer,
        json!({"environment": "production", "fromVersion": "v1.2.3", "toVersion": "v1.2.2",
               "reason": "Rollback for INC-123"}),
    )
    .await;
    let id = id_of(&created);
    let got = execute(&h, &h.tokens.developer, &id).await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("OVERRIDE_REQUIRED"),
        None,
    );
    let decision = &got.1["decision"];
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["action"], "deploy.rollback");
    assert_eq!(decision["environment"], "production");
    assert_eq!(decision["releaseId"], "v1.2.2");
    assert_eq!(get_rollback(&h, &id).await["status"], "pending");

    // 1. The on-call lead creates the rollback override (the runbook's body).
    let approved = h
        .create_override(
            &h.tokens.oncall,
            json!({"action": "deploy.rollback", "environment": "production",
                   "reason": "Emergency: P1 incident INC-123",
                   "approver": "oncall-lead", "ttlMinutes": 30}),
        )
        .await;
    let override_id = id_of(&approved);
    assert_eq!(
        approved["expiresAt"],
        START.plus_minutes(30).to_rfc3339(),
        "{approved}"
    );

    // 2. Execute, by anyone: the override approves the action, not a person.
    let (status, executed) = execute(&h, &h.tokens.developer, &id).await;
    assert_eq!(status, StatusCode::OK, "{executed}");
    assert_eq!(executed["status"], "executed");
    assert_eq!(executed["overrideId"], override_id.as_str());
    let used = get_override(&h, &override_id).await;
    assert_eq!(used["useCount"], 1, "{used}");
    let uses = h.audit("action=override.use").await;
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0]["details"]["overrideId"], override_id.as_str());
    assert_eq!(uses[0]["details"]["usedFor"], "deploy.rollback");
    assert_eq!(
        audited(&h, "deploy.rollback", "allowed").await,
        vec![("OVERRIDE".to_owned(), "production".to_owned())]
    );
    assert_eq!(
        audited(&h, "deploy.rollback", "denied").await,
        vec![("OVERRIDE_REQUIRED".to_owned(), "production".to_owned())]
    );
    assert_eq!(releases(&h, "production").await["current"], "v1.2.2");

    // Expired (30 minutes): the next production rollback needs a new override.
    let second = create(
        &h,
        &h.tokens.developer,
        rollback_body("production", "v1.2.2", "v1.2.1"),
    )
    .await;
    h.clock.advance_minutes(30);
    let got = execute(&h, &h.tokens.developer, &id_of(&second)).await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("OVERRIDE_REQUIRED"),
        None,
    );
}

#[tokio::test]
async fn a_release_bound_override_covers_only_rollbacks_to_that_release() {
    let h = Harness::new().await;
    let mut body = override_body("deploy.rollback", "production", 30);
    body["releaseId"] = json!("v1.2.2");
    let bound = h.create_override(&h.tokens.oncall, body).await;
    assert_eq!(bound["releaseId"], "v1.2.2");

    // To another version: not covered.
    let other = create(
        &h,
        &h.tokens.developer,
        rollback_body("production", "v1.2.3", "v1.2.1"),
    )
    .await;
    let got = execute(&h, &h.tokens.developer, &id_of(&other)).await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("OVERRIDE_REQUIRED"),
        None,
    );
    // From that version (not to it): not covered either.
    let from_it = create(
        &h,
        &h.tokens.developer,
        rollback_body("production", "v1.2.2", "v1.2.0"),
    )
    .await;
    let got = execute(&h, &h.tokens.developer, &id_of(&from_it)).await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("OVERRIDE_REQUIRED"),
        None,
    );
    // To v1.2.2: covered.
    let matching = create(
        &h,
        &h.tokens.developer,
        rollback_body("production", "v1.2.3", "v1.2.2"),
    )
    .await;
    let (status, executed) = execute(&h, &h.tokens.developer, &id_of(&matching)).await;
    assert_eq!(status, StatusCode::OK, "{executed}");
    assert_eq!(executed["overrideId"], bound["id"]);
    assert_eq!(get_override(&h, &id_of(&bound)).await["useCount"], 1);
}

#[tokio::test]
async fn rollbacks_are_blocked_in_lockdown_even_with_an_override() {
    let h = Harness::new().await;
    h.create_override(
        &h.tokens.oncall,
        override_body("deploy.rollback", "production", 30),
    )
    .await;
    let production = create(
        &h,
        &h.tokens.developer,
        rollback_body("production", "v1.2.3", "v1.2.2"),
    )
    .await;
    let staging = create(
        &h,
        &h.tokens.developer,
        rollback_body("staging", "v1.2.3", "v1.2.2"),
    )
    .await;
    h.set_mode("lockdown", Some("Security incident investigation"))
        .await;
    // Creating a rollback is still possible (it changes nothing running).
    let third = create(
        &h,
        &h.tokens.developer,
        rollback_body("staging", "v1.2.3", "v1.2.1"),
    )
    .await;
    assert_eq!(third["status"], "pending");

    for id in [id_of(&production), id_of(&staging)] {
        let got = execute(&h, &h.tokens.oncall, &id).await;
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
        assert_eq!(get_rollback(&h, &id).await["status"], "pending");
    }
    // 404 comes before the gate.
    let got = execute(&h, &h.tokens.oncall, "rbk_missing").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    assert_eq!(
        audited(&h, "deploy.rollback", "denied").await,
        vec![
            ("LOCKDOWN".to_owned(), "staging".to_owned()),
            ("LOCKDOWN".to_owned(), "production".to_owned()),
        ]
    );

    // The runbook: lift lockdown, execute, restore lockdown.
    h.set_mode("enforce", Some("Critical rollback INC-123"))
        .await;
    let (status, executed) = execute(&h, &h.tokens.oncall, &id_of(&production)).await;
    assert_eq!(status, StatusCode::OK, "{executed}");
    assert_eq!(executed["status"], "executed");
}

#[tokio::test]
async fn executing_twice_is_409_and_unknown_ids_are_404() {
    let h = Harness::new().await;
    let created = create(
        &h,
        &h.tokens.developer,
        rollback_body("staging", "v1.2.3", "v1.2.2"),
    )
    .await;
    let id = id_of(&created);
    let (status, executed) = execute(&h, &h.tokens.developer, &id).await;
    assert_eq!(status, StatusCode::OK, "{executed}");
    let got = execute(&h, &h.tokens.eng_lead, &id).await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("ROLLBACK_NOT_PENDING"),
        None,
    );
    // Unchanged.
    assert_eq!(get_rollback(&h, &id).await, executed);
    assert_eq!(
        audited(&h, "deploy.rollback", "denied").await,
        vec![("ROLLBACK_NOT_PENDING".to_owned(), "staging".to_owned())]
    );

    let got = h.get("/rollback/rbk_missing", &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = execute(&h, &h.tokens.developer, "rbk_missing").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = h
        .call(Method::GET, &format!("/rollback/{id}"), None, None)
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    let got = h
        .call(Method::POST, &format!("/rollback/{id}/execute"), None, None)
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
}

#[tokio::test]
async fn rollbacks_are_listed_newest_first_and_filtered_by_environment() {
    let h = Harness::new().await;
    let mut staging = Vec::new();
    let mut all = Vec::new();
    for (environment, to) in [
        ("staging", "v1.0.1"),
        ("production", "v1.0.2"),
        ("staging", "v1.0.3"),
    ] {
        let created = create(
            &h,
            &h.tokens.developer,
            rollback_body(environment, "v2.0.0", to),
        )
        .await;
        all.push(id_of(&created));
        if environment == "staging" {
            staging.push(id_of(&created));
        }
        h.clock.advance_minutes(1);
    }
    all.reverse();
    staging.reverse();
    let ids = |body: &Value| -> Vec<String> {
        body["rollbacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect()
    };
    let (status, list) = h.get("/rollbacks", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(ids(&list), all);
    let (_, list) = h
        .get("/rollbacks?environment=staging", &h.tokens.developer)
        .await;
    assert_eq!(ids(&list), staging);
    let (_, list) = h
        .get(
            "/rollbacks?environment=production&limit=1",
            &h.tokens.developer,
        )
        .await;
    assert_eq!(ids(&list), vec![all[1].clone()]);
    let (_, list) = h.get("/rollbacks?limit=2", &h.tokens.developer).await;
    assert_eq!(ids(&list), all[..2].to_vec());
    for query in ["environment=qa", "limit=0", "limit=201", "bogus=1"] {
        let got = h
            .get(&format!("/rollbacks?{query}"), &h.tokens.developer)
            .await;
        assert_eq!(got.0, StatusCode::BAD_REQUEST, "{query}: {}", got.1);
    }
    let got = h.call(Method::GET, "/rollbacks", None, None).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    let got = h.get("/releases/qa", &h.tokens.developer).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("environment"),
    );
}

#[tokio::test]
async fn require_known_target_refuses_a_target_that_never_ran() {
    let settings = AppSettings {
        require_known_target: true,
        ..AppSettings::default()
    };
    let h = Harness::with_app_settings(HttpSettings::default(), settings).await;
    let got = h
        .post(
            "/rollback/create",
            &h.tokens.developer,
            rollback_body("staging", "v1.2.3", "v1.2.2"),
        )
        .await;
    assert_error(
        &got,
        StatusCode::CONFLICT,
        "conflict",
        Some("UNKNOWN_ROLLBACK_TARGET"),
        None,
    );
    let (_, list) = h.get("/rollbacks", &h.tokens.developer).await;
    assert_eq!(list["rollbacks"], json!([]));

    ran_in_staging(&h, "v1.2.2").await;
    let created = create(
        &h,
        &h.tokens.developer,
        rollback_body("staging", "v1.2.3", "v1.2.2"),
    )
    .await;
    assert_eq!(created["knownTarget"], true);
}

#[tokio::test]
async fn an_unhealthy_canary_is_rolled_back_to_the_release_that_ran_before() {
    let h = Harness::new().await;
    ran_in_staging(&h, "v1.2.2").await;
    h.clock.advance_minutes(1);
    let (status, started) = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            json!({"releaseId": "v1.2.3", "environment": "staging", "deploymentId": "d-2"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let (status, _) = h
        .post(
            "/canary/staging/metrics",
            &h.tokens.developer,
            json!({"errorRatePercent": 5.0, "latencyP99Ms": 100.0,
                   "baselineLatencyP99Ms": 95.0, "cpuPercent": 30.0, "memoryPercent": 40.0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    h.clock.advance_millis(300_000);
    assert_eq!(
        h.step_due_canaries().await,
        vec![(id_of(&started), Some(StepAction::RolledBack))]
    );
    let (_, view) = h.get("/canary/staging", &h.tokens.developer).await;
    assert_eq!(view["phase"], "rolled_back");
    assert_eq!(view["currentPercentage"], 0);
    assert_eq!(view["status"], "unhealthy");

    let (_, list) = h
        .get("/rollbacks?environment=staging", &h.tokens.developer)
        .await;
    let automatic = &list["rollbacks"][0];
    assert_eq!(automatic["automatic"], true, "{list}");
    assert_eq!(automatic["canaryId"], started["id"]);
    assert_eq!(automatic["fromVersion"], "v1.2.3");
    assert_eq!(automatic["toVersion"], "v1.2.2");
    assert_eq!(automatic["knownTarget"], true);
    assert_eq!(automatic["status"], "executed");
    assert_eq!(automatic["createdBy"], "system");
    let history = releases(&h, "staging").await;
    assert_eq!(history["current"], "v1.2.2");
    assert_eq!(history["releases"][0]["change"], "rollback");
    // Audited as the system's fail-safe.
    let entries = h.audit("action=deploy.canary.rollback").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["principal"], "system");
    assert_eq!(entries[0]["reason"], "AUTOMATIC_ROLLBACK");
}

// ---------------------------------------------------------------------------------------------
// Load shedding
// ---------------------------------------------------------------------------------------------

fn shed(environment: &str, percentage: u8) -> Value {
    json!({"environment": environment, "enabled": true, "percentage": percentage,
           "reason": "Shedding load during INC-123"})
}

#[tokio::test]
async fn load_shedding_is_off_by_default_and_open_to_anyone_in_staging() {
    let h = Harness::new().await;
    for environment in ["staging", "production"] {
        let (status, setting) = h
            .get(
                &format!("/load-shedding/{environment}"),
                &h.tokens.developer,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{setting}");
        assert_eq!(setting["environment"], environment);
        assert_eq!(setting["enabled"], false);
        assert_eq!(setting["percentage"], 0);
        assert!(setting["updatedAt"].is_null());
    }

    h.clock.advance_minutes(1);
    let (status, set) = h
        .post("/load-shedding", &h.tokens.developer, shed("staging", 20))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["enabled"], true);
    assert_eq!(set["percentage"], 20);
    assert_eq!(set["reason"], "Shedding load during INC-123");
    assert_eq!(set["updatedBy"], "developer");
    assert_eq!(set["updatedAt"], START.plus_minutes(1).to_rfc3339());
    let (_, shown) = h.get("/load-shedding/staging", &h.tokens.oncall).await;
    assert_eq!(shown, set);
    // Production is untouched.
    let (_, production) = h
        .get("/load-shedding/production", &h.tokens.developer)
        .await;
    assert_eq!(production["enabled"], false);

    // Off again (percentage absent or 0).
    let (status, off) = h
        .post(
            "/load-shedding",
            &h.tokens.eng_lead,
            json!({"environment": "staging", "enabled": false, "reason": "Recovered"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{off}");
    assert_eq!(off["enabled"], false);
    assert_eq!(off["percentage"], 0);
    assert_eq!(off["updatedBy"], "eng-lead");
    assert_eq!(
        audited(&h, "ops.loadshed", "allowed").await,
        vec![
            ("ALLOWED".to_owned(), "staging".to_owned()),
            ("ALLOWED".to_owned(), "staging".to_owned()),
        ]
    );
}

#[tokio::test]
async fn production_load_shedding_needs_a_security_team_override() {
    let h = Harness::new().await;
    let got = h
        .post("/load-shedding", &h.tokens.eng_lead, shed("production", 20))
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "blocked_by_security_gate",
        Some("OVERRIDE_REQUIRED"),
        None,
    );
    assert_eq!(got.1["decision"]["action"], "ops.loadshed");
    // Only the security team may create an ops.loadshed override.
    for token in [&h.tokens.eng_lead, &h.tokens.oncall, &h.tokens.developer] {
        let got = h
            .post(
                "/security-gate/override",
                token,
                override_body("ops.loadshed", "production", 30),
            )
            .await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("OVERRIDE_NOT_PERMITTED"),
            None,
        );
    }
    let approved = h
        .create_override(
            &h.tokens.security,
            override_body("ops.loadshed", "production", 30),
        )
        .await;
    let (status, set) = h
        .post("/load-shedding", &h.tokens.eng_lead, shed("production", 20))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["enabled"], true);
    assert_eq!(set["percentage"], 20);
    assert_eq!(get_override(&h, &id_of(&approved)).await["useCount"], 1);
    let (_, shown) = h
        .get("/load-shedding/production", &h.tokens.developer)
        .await;
    assert_eq!(shown["percentage"], 20);
    assert_eq!(
        audited(&h, "ops.loadshed", "denied").await,
        vec![("OVERRIDE_REQUIRED".to_owned(), "production".to_owned())]
    );
    assert_eq!(
        audited(&h, "ops.loadshed", "allowed").await,
        vec![("OVERRIDE".to_owned(), "production".to_owned())]
    );
}

#[tokio::test]
async fn load_shedding_is_blocked_in_lockdown() {
    let h = Harness::new().await;
    h.create_override(
        &h.tokens.security,
        override_body("ops.loadshed", "production", 30),
    )
    .await;
    h.set_mode("lockdown", Some("Security incident investigation"))
        .await;
    for environment in ["staging", "production"] {
        let got = h
            .post("/load-shedding", &h.tokens.security, shed(environment, 20))
            .await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "blocked_by_security_gate",
            Some("LOCKDOWN"),
            None,
        );
        let (_, shown) = h
            .get(
                &format!("/load-shedding/{environment}"),
                &h.tokens.developer,
            )
            .await;
        assert_eq!(shown["enabled"], false);
    }
    // 400 comes before the gate.
    let got = h
        .post(
            "/load-shedding",
            &h.tokens.security,
            json!({"environment": "staging", "enabled": true, "reason": "x"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("percentage"),
    );
}

#[tokio::test]
async fn load_shedding_input_is_validated_naming_the_field() {
    let h = Harness::new().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"environment": "staging", "enabled": true, "reason": "x"}),
            "percentage",
        ),
        (
            json!({"environment": "staging", "enabled": true, "percentage": 0, "reason": "x"}),
            "percentage",
        ),
        (
            json!({"environment": "staging", "enabled": true, "percentage": 101,
                   "reason": "x"}),
            "percentage",
        ),
        (
            json!({"environment": "staging", "enabled": true, "percentage": 1000,
                   "reason": "x"}),
            "percentage",
        ),
        (
            json!({"environment": "staging", "enabled": true, "percentage": -5,
                   "reason": "x"}),
            "percentage",
        ),
        (
            json!({"environment": "staging", "enabled": false, "percentage": 5,
                   "reason": "x"}),
            "percentage",
        ),
        (
            json!({"environment": "staging", "enabled": true, "percentage": 20}),
            "reason",
        ),
        (
            json!({"environment": "staging", "enabled": true, "percentage": 20,
                   "reason": ""}),
            "reason",
        ),
        (
            json!({"environment": "staging", "percentage": 20, "reason": "x"}),
            "enabled",
        ),
        (
            json!({"environment": "staging", "enabled": "yes", "percentage": 20,
                   "reason": "x"}),
            "enabled",
        ),
        (
            json!({"environment": "qa", "enabled": true, "percentage": 20, "reason": "x"}),
            "environment",
        ),
        (
            json!({"enabled": true, "percentage": 20, "reason": "x"}),
            "environment",
        ),
        (
            json!({"environment": "staging", "enabled": true, "percentage": 20,
                   "reason": "x", "ttl": 5}),
            "ttl",
        ),
    ];
    for (body, field) in cases {
        let got = h
            .post("/load-shedding", &h.tokens.developer, body.clone())
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    // Nothing changed, nothing audited.
    let (_, shown) = h.get("/load-shedding/staging", &h.tokens.developer).await;
    assert_eq!(shown["enabled"], false);
    assert!(h.audit("action=ops.loadshed").await.is_empty());

    let got = h
        .call(
            Method::POST,
            "/load-shedding",
            None,
            Some(&shed("staging", 20).to_string()),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    let got = h.get("/load-shedding/qa", &h.tokens.developer).await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("environment"),
    );
    let got = h
        .call(Method::GET, "/load-shedding/staging", None, None)
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
}
