//! The Security Gate over HTTP (SPEC §3–5, RUNBOOK "Security Modes & Lockdown", "Override
//! System", "Troubleshooting"): status, mode, threat level, overrides and checks.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::StatusCode;
use common::{Harness, START, assert_error, override_body};
use serde_json::{Value, json};

const CANARY: &str = "deploy.canary.start";
const PROMOTE: &str = "deploy.canary.promote";
const ROLLBACK: &str = "deploy.rollback";
const LOADSHED: &str = "ops.loadshed";

fn hints(body: &Value) -> String {
    body["hints"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Status, mode, threat level
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn status_has_the_runbook_shape_and_counts_active_overrides() {
    let h = Harness::new().await;
    let (status, body) = h.get("/security-gate/status", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["mode"], "enforce");
    assert_eq!(body["threatLevel"], "none");
    assert_eq!(body["lockdownReason"], Value::Null);
    assert!(body.as_object().unwrap().contains_key("lockdownReason"));
    assert_eq!(body["activeOverrides"], 0);

    h.create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 60))
        .await;
    h.create_override(&h.tokens.oncall, override_body(ROLLBACK, "production", 30))
        .await;
    assert_eq!(h.status().await["activeOverrides"], 2);

    h.clock.advance_minutes(30);
    assert_eq!(
        h.status().await["activeOverrides"],
        1,
        "the 30-minute override expired exactly at 30 minutes"
    );
}

#[tokio::test]
async fn security_team_sets_mode_and_threat_level() {
    let h = Harness::new().await;
    let body = h.set_mode("monitor", Some("testing the gate")).await;
    assert_eq!(body["mode"], "monitor");
    assert_eq!(body["lockdownReason"], Value::Null);
    assert_eq!(body["modeReason"], "testing the gate");
    assert_eq!(body["modeChangedBy"], "security-team");
    assert_eq!(body["modeChangedAt"], START.to_rfc3339());

    let body = h.set_threat("medium", "phishing campaign").await;
    assert_eq!(body["threatLevel"], "medium");
    assert_eq!(body["mode"], "monitor");
    assert_eq!(body["threatReason"], "phishing campaign");
    assert_eq!(body["threatChangedBy"], "security-team");

    let status = h.status().await;
    assert_eq!(status["mode"], "monitor");
    assert_eq!(status["threatLevel"], "medium");

    let body = h.set_mode("enforce", None).await;
    assert_eq!(body["mode"], "enforce");

    let entries = h.audit("action=security-gate.mode.set").await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["details"]["from"], "enforce");
    assert_eq!(entries[1]["details"]["to"], "monitor");
    assert_eq!(entries[1]["decision"], "allowed");
    let entries = h.audit("action=security-gate.threat-level.set").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["details"]["to"], "medium");
}

#[tokio::test]
async fn only_security_team_changes_mode_or_threat_and_refusals_change_nothing() {
    let h = Harness::new().await;
    let before = h.status().await;
    for token in [&h.tokens.eng_lead, &h.tokens.oncall, &h.tokens.developer] {
        let got = h
            .post(
                "/security-gate/mode",
                token,
                json!({"mode": "lockdown", "reason": "I want to"}),
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
                "/security-gate/threat-level",
                token,
                json!({"level": "critical", "reason": "I want to"}),
            )
            .await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("ROLE_NOT_PERMITTED"),
            None,
        );
    }
    let after = h.status().await;
    assert_eq!(before, after, "a refused change changes nothing");
    assert_eq!(after["mode"], "enforce");
    assert_eq!(after["threatLevel"], "none");

    let denied = h
        .audit("action=security-gate.mode.set&decision=denied")
        .await;
    let principals: Vec<&str> = denied
        .iter()
        .map(|e| e["principal"].as_str().unwrap())
        .collect();
    assert_eq!(principals, ["developer", "oncall-lead", "eng-lead"]);
    for entry in &denied {
        assert_eq!(entry["reason"], "ROLE_NOT_PERMITTED");
        assert_eq!(entry["decision"], "denied");
    }
    let denied = h
        .audit("action=security-gate.threat-level.set&decision=denied")
        .await;
    assert_eq!(denied.len(), 3);
    assert!(
        h.audit("action=security-gate.mode.set&decision=allowed")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn high_threat_stops_canary_progress_but_not_rollback() {
    let h = Harness::new().await;
    h.create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 60))
        .await;
    h.set_threat("high", "active exploitation").await;
    for (action, env) in [
        (CANARY, "staging"),
        (PROMOTE, "staging"),
        (CANARY, "production"),
    ] {
        let decision = h.check(&h.tokens.developer, action, env, None).await;
        assert_eq!(decision["allowed"], false, "{action} {env}");
        assert_eq!(decision["reason"], "THREAT_LEVEL", "{action} {env}");
        assert_eq!(decision["overrideId"], Value::Null, "no override lifts it");
    }
    let decision = h
        .check(&h.tokens.developer, ROLLBACK, "staging", None)
        .await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["reason"], "ALLOWED");
}

// ---------------------------------------------------------------------------------------------
// Lockdown
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn lockdown_denies_with_its_reason_even_with_a_matching_override() {
    let h = Harness::new().await;
    let created = h
        .create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 60))
        .await;
    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(decision["reason"], "OVERRIDE");

    let status = h
        .set_mode("lockdown", Some("Security incident investigation"))
        .await;
    assert_eq!(status["mode"], "lockdown");
    assert_eq!(status["lockdownReason"], "Security incident investigation");
    assert_eq!(status["lockdownSince"], START.to_rfc3339());

    for (action, env) in [
        (CANARY, "production"),
        (CANARY, "staging"),
        (ROLLBACK, "production"),
        (LOADSHED, "staging"),
    ] {
        let decision = h.check(&h.tokens.eng_lead, action, env, None).await;
        assert_eq!(decision["allowed"], false, "{action} {env}");
        assert_eq!(decision["reason"], "LOCKDOWN", "{action} {env}");
        assert_eq!(decision["wouldBlock"], false);
        assert_eq!(decision["mode"], "lockdown");
        assert_eq!(decision["overrideId"], Value::Null);
        let message = decision["message"].as_str().unwrap();
        assert!(
            message.contains("Security incident investigation"),
            "{message}"
        );
        assert!(
            hints(&decision).to_lowercase().contains("security team"),
            "{decision}"
        );
    }

    let status = h.set_mode("enforce", None).await;
    assert_eq!(status["lockdownReason"], Value::Null);
    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(decision["reason"], "OVERRIDE");
    assert_eq!(decision["overrideId"], created["id"]);
}

#[tokio::test]
async fn critical_threat_enters_lockdown_naming_the_threat_and_lowering_it_keeps_lockdown() {
    let h = Harness::new().await;
    let body = h.set_threat("critical", "APT activity detected").await;
    assert_eq!(body["mode"], "lockdown");
    assert_eq!(body["threatLevel"], "critical");
    let reason = body["lockdownReason"].as_str().unwrap().to_owned();
    assert!(reason.contains("critical"), "{reason}");
    assert!(reason.contains("APT activity detected"), "{reason}");

    let status = h.status().await;
    assert_eq!(status["mode"], "lockdown");
    assert_eq!(status["lockdownReason"], reason.as_str());

    let entered = h.audit("action=security-gate.lockdown.enter").await;
    assert_eq!(entered.len(), 1);
    assert_eq!(entered[0]["decision"], "recorded");
    assert_eq!(entered[0]["reason"], "LOCKDOWN_TRIGGERED");
    assert_eq!(entered[0]["details"]["lockdownReason"], reason.as_str());

    let decision = h
        .check(&h.tokens.developer, ROLLBACK, "staging", None)
        .await;
    assert_eq!(decision["reason"], "LOCKDOWN");
    assert!(decision["message"].as_str().unwrap().contains(&reason));

    let body = h.set_threat("low", "contained").await;
    assert_eq!(body["threatLevel"], "low");
    assert_eq!(
        body["mode"], "lockdown",
        "nothing leaves lockdown automatically"
    );
    assert_eq!(body["lockdownReason"], reason.as_str());
    let body = h.set_threat("none", "all clear").await;
    assert_eq!(body["mode"], "lockdown");
}

#[tokio::test]
async fn a_second_trigger_keeps_the_first_reason_and_audits_the_new_cause() {
    let h = Harness::new().await;
    h.set_mode("lockdown", Some("first: leaked credentials"))
        .await;
    let body = h.set_threat("critical", "second: ransomware").await;
    assert_eq!(body["mode"], "lockdown");
    assert_eq!(body["lockdownReason"], "first: leaked credentials");
    assert_eq!(body["threatLevel"], "critical");

    let triggers = h.audit("action=security-gate.lockdown.trigger").await;
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0]["decision"], "recorded");
    assert_eq!(triggers[0]["reason"], "LOCKDOWN_TRIGGERED");
    assert_eq!(
        triggers[0]["details"]["lockdownReason"],
        "first: leaked credentials"
    );
    let cause = triggers[0]["details"]["cause"].as_str().unwrap();
    assert!(cause.contains("second: ransomware"), "{cause}");

    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert!(
        decision["message"]
            .as_str()
            .unwrap()
            .contains("first: leaked credentials")
    );
}

#[tokio::test]
async fn a_second_automatic_trigger_after_threat_first_keeps_the_threat_reason() {
    let h = Harness::new().await;
    let first = h.set_threat("critical", "first cause").await["lockdownReason"].clone();
    h.set_threat("high", "slightly better").await;
    let body = h.set_threat("critical", "second cause").await;
    assert_eq!(body["mode"], "lockdown");
    assert_eq!(body["lockdownReason"], first);
    assert!(first.as_str().unwrap().contains("first cause"));
    let triggers = h.audit("action=security-gate.lockdown.trigger").await;
    assert_eq!(triggers.len(), 1);
    assert!(
        triggers[0]["details"]["cause"]
            .as_str()
            .unwrap()
            .contains("second cause")
    );
}

#[tokio::test]
async fn only_security_team_exits_lockdown() {
    let h = Harness::new().await;
    h.set_mode("lockdown", Some("maintenance")).await;
    for token in [&h.tokens.eng_lead, &h.tokens.oncall, &h.tokens.developer] {
        for mode in ["enforce", "monitor"] {
            let got = h
                .post("/security-gate/mode", token, json!({"mode": mode}))
                .await;
            assert_error(
                &got,
                StatusCode::FORBIDDEN,
                "forbidden",
                Some("ROLE_NOT_PERMITTED"),
                None,
            );
        }
    }
    let status = h.status().await;
    assert_eq!(status["mode"], "lockdown");
    assert_eq!(status["lockdownReason"], "maintenance");

    let body = h.set_mode("enforce", None).await;
    assert_eq!(body["mode"], "enforce");
    assert_eq!(body["lockdownReason"], Value::Null);
    assert_eq!(body["lockdownSince"], Value::Null);
}

#[tokio::test]
async fn an_override_created_during_lockdown_is_honored_only_after_it() {
    let h = Harness::new().await;
    h.set_mode("lockdown", Some("investigation")).await;
    let created = h
        .create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 60))
        .await;
    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(decision["reason"], "LOCKDOWN");
    h.set_mode("enforce", None).await;
    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(decision["reason"], "OVERRIDE");
    assert_eq!(decision["overrideId"], created["id"]);
}

// ---------------------------------------------------------------------------------------------
// Monitor mode
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn monitor_mode_allows_and_records_what_enforce_would_have_blocked() {
    let h = Harness::new().await;
    h.set_mode("monitor", Some("dry run of the new policy"))
        .await;
    let decision = h
        .check(&h.tokens.developer, CANARY, "production", Some("v1.2.3"))
        .await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["wouldBlock"], true);
    assert_eq!(decision["reason"], "OVERRIDE_REQUIRED");
    assert_eq!(decision["mode"], "monitor");
    assert!(
        decision["message"]
            .as_str()
            .unwrap()
            .contains("Production actions require explicit override")
    );

    let seq = decision["auditSeq"].as_u64().unwrap();
    let entries = h.audit(&format!("cursor={}&limit=1", seq + 1)).await;
    let entry = &entries[0];
    assert_eq!(entry["seq"], seq);
    assert_eq!(entry["action"], "security-gate.check");
    assert_eq!(entry["principal"], "developer");
    assert_eq!(entry["environment"], "production");
    assert_eq!(entry["reason"], "OVERRIDE_REQUIRED");
    assert_eq!(entry["details"]["wouldBlock"], true);
    assert_eq!(entry["details"]["allowed"], true);
    assert_eq!(entry["details"]["releaseId"], "v1.2.3");

    let staging = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(staging["allowed"], true);
    assert_eq!(staging["wouldBlock"], false);
    assert_eq!(staging["reason"], "ALLOWED");
}

// ---------------------------------------------------------------------------------------------
// Overrides
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn runbook_production_override_flow_expires_exactly_at_ttl() {
    let h = Harness::new().await;
    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["reason"], "OVERRIDE_REQUIRED");
    assert_eq!(
        decision["message"],
        "Production actions require explicit override"
    );
    assert_eq!(decision["wouldBlock"], false);
    assert_eq!(decision["overrideId"], Value::Null);
    assert!(hints(&decision).contains("eng-lead"), "{decision}");
    assert!(decision["auditSeq"].as_u64().unwrap() > 0);

    // The runbook's body, verbatim: the eng-lead principal is named "eng-lead".
    let (status, created) = h
        .post(
            "/security-gate/override",
            &h.tokens.eng_lead,
            json!({
                "action": "deploy.canary.start",
                "environment": "production",
                "reason": "Approved by CTO for release v1.2.3",
                "approver": "eng-lead",
                "ttlMinutes": 60
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    let decision = h
        .check(&h.tokens.developer, CANARY, "production", Some("v1.2.3"))
        .await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["reason"], "OVERRIDE");
    assert_eq!(decision["overrideId"], id.as_str());
    assert_eq!(decision["wouldBlock"], false);

    h.clock.advance_millis(60 * 60_000 - 1);
    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(decision["reason"], "OVERRIDE", "active 1 ms before expiry");

    h.clock.advance_millis(1);
    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(decision["allowed"], false);
    assert_eq!(
        decision["reason"], "OVERRIDE_REQUIRED",
        "expired exactly at 60 minutes"
    );
    assert_eq!(decision["overrideId"], Value::Null);

    let (status, found) = h
        .get(
            &format!("/security-gate/override/{id}"),
            &h.tokens.developer,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["status"], "expired");
    assert_eq!(found["useCount"], 0, "a check is not a use of an override");
    assert_eq!(h.status().await["activeOverrides"], 0);
}

#[tokio::test]
async fn create_override_returns_201_with_the_runbook_fields_and_fills_the_approver() {
    let h = Harness::new().await;
    let (status, created) = h
        .post(
            "/security-gate/override",
            &h.tokens.eng_lead,
            json!({
                "action": "deploy.canary.start",
                "environment": "production",
                "reason": "  Business justification with ticket reference  ",
                "ttlMinutes": 90
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(created["action"], CANARY);
    assert_eq!(created["environment"], "production");
    assert_eq!(
        created["reason"],
        "Business justification with ticket reference"
    );
    assert_eq!(created["approver"], "eng-lead", "filled from the caller");
    assert_eq!(created["approverRole"], "eng-lead");
    assert_eq!(created["createdAt"], START.to_rfc3339());
    assert_eq!(created["expiresAt"], START.plus_minutes(90).to_rfc3339());
    assert_eq!(created["status"], "active");
    assert_eq!(created["releaseId"], Value::Null);
    assert_eq!(created["revokedAt"], Value::Null);

    let (status, found) = h
        .get(
            &format!(
                "/security-gate/override/{}",
                created["id"].as_str().unwrap()
            ),
            &h.tokens.developer,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found, created);

    // ttlMinutes absent: 60.
    let created = h
        .create_override(
            &h.tokens.security,
            json!({"action": LOADSHED, "environment": "staging", "reason": "load test"}),
        )
        .await;
    assert_eq!(created["approver"], "security-team");
    assert_eq!(created["expiresAt"], START.plus_minutes(60).to_rfc3339());

    let audited = h.audit("action=override.create&decision=allowed").await;
    assert_eq!(audited.len(), 2);
    assert_eq!(audited[1]["principal"], "eng-lead");
    assert_eq!(audited[1]["environment"], "production");
}

#[tokio::test]
async fn approver_must_be_the_caller() {
    let h = Harness::new().await;
    let mut body = override_body(CANARY, "production", 60);
    body["approver"] = json!("security-team");
    let got = h
        .post("/security-gate/override", &h.tokens.eng_lead, body.clone())
        .await;
    assert_error(
        &got,
        StatusCode::FORBIDDEN,
        "forbidden",
        Some("APPROVER_MISMATCH"),
        None,
    );
    assert!(h.all_overrides().await.is_empty(), "nothing was created");
    let denied = h.audit("action=override.create&decision=denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["reason"], "APPROVER_MISMATCH");
    assert_eq!(denied[0]["principal"], "eng-lead");

    body["approver"] = json!("eng-lead");
    let created = h.create_override(&h.tokens.eng_lead, body).await;
    assert_eq!(created["approver"], "eng-lead");
}

#[tokio::test]
async fn roles_outside_their_override_scope_are_refused_with_the_roles_that_may() {
    let h = Harness::new().await;
    let cases = [
        (
            &h.tokens.developer,
            CANARY,
            "production",
            "security-team, eng-lead",
        ),
        (
            &h.tokens.developer,
            CANARY,
            "staging",
            "security-team, eng-lead",
        ),
        (
            &h.tokens.developer,
            ROLLBACK,
            "production",
            "security-team, eng-lead, oncall-lead",
        ),
        (
            &h.tokens.oncall,
            CANARY,
            "production",
            "security-team, eng-lead",
        ),
        (
            &h.tokens.oncall,
            ROLLBACK,
            "staging",
            "security-team, eng-lead",
        ),
        (&h.tokens.oncall, LOADSHED, "production", "security-team"),
        (&h.tokens.eng_lead, LOADSHED, "production", "security-team"),
    ];
    for (token, action, env, roles) in cases {
        let (status, body) = h
            .post(
                "/security-gate/override",
                token,
                override_body(action, env, 30),
            )
            .await;
        assert_error(
            &(status, body.clone()),
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("OVERRIDE_NOT_PERMITTED"),
            None,
        );
        let hint = hints(&body["error"]);
        assert!(
            hint.contains(roles),
            "{action} {env}: hint should name {roles}: {hint}"
        );
    }
    assert!(h.all_overrides().await.is_empty(), "nothing was created");
    assert_eq!(
        h.audit("action=override.create&decision=denied")
            .await
            .len(),
        cases.len()
    );

    // Inside their scope they may.
    let created = h
        .create_override(&h.tokens.oncall, override_body(ROLLBACK, "production", 30))
        .await;
    assert_eq!(created["approver"], "oncall-lead");
    h.create_override(&h.tokens.eng_lead, override_body(ROLLBACK, "staging", 30))
        .await;
    h.create_override(&h.tokens.eng_lead, override_body(PROMOTE, "production", 30))
        .await;
    h.create_override(
        &h.tokens.security,
        override_body(LOADSHED, "production", 30),
    )
    .await;
    assert_eq!(h.all_overrides().await.len(), 4);
}

#[tokio::test]
async fn override_list_shows_active_only_unless_all() {
    let h = Harness::new().await;
    let revoked = h
        .create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 60))
        .await;
    let expiring = h
        .create_override(&h.tokens.eng_lead, override_body(PROMOTE, "production", 1))
        .await;
    let active = h
        .create_override(&h.tokens.oncall, override_body(ROLLBACK, "production", 60))
        .await;
    let (status, _) = h
        .delete(
            &format!(
                "/security-gate/override/{}",
                revoked["id"].as_str().unwrap()
            ),
            &h.tokens.eng_lead,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    h.clock.advance_minutes(1);

    for query in ["", "?all=false"] {
        let (status, body) = h
            .get(
                &format!("/security-gate/overrides{query}"),
                &h.tokens.developer,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let list = body["overrides"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{query}: {body}");
        assert_eq!(list[0]["id"], active["id"]);
        assert_eq!(list[0]["status"], "active");
    }

    let all = h.all_overrides().await;
    assert_eq!(all.len(), 3);
    let status_of = |id: &Value| {
        all.iter()
            .find(|o| o["id"] == *id)
            .map(|o| o["status"].clone())
            .unwrap()
    };
    assert_eq!(status_of(&revoked["id"]), "revoked");
    assert_eq!(status_of(&expiring["id"]), "expired");
    assert_eq!(status_of(&active["id"]), "active");
    let revoked_view = all.iter().find(|o| o["id"] == revoked["id"]).unwrap();
    assert_eq!(revoked_view["revokedBy"], "eng-lead");
    assert_eq!(revoked_view["revokedAt"], START.to_rfc3339());
    assert_eq!(h.status().await["activeOverrides"], 1);
}

#[tokio::test]
async fn overrides_are_listed_newest_first() {
    let h = Harness::new().await;
    let mut ids = Vec::new();
    for action in [CANARY, PROMOTE, ROLLBACK] {
        let created = h
            .create_override(&h.tokens.eng_lead, override_body(action, "production", 240))
            .await;
        ids.push(created["id"].clone());
        h.clock.advance_minutes(1);
    }
    ids.reverse();
    let (_, body) = h.get("/security-gate/overrides", &h.tokens.developer).await;
    let listed: Vec<Value> = body["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(listed, ids);
    let all: Vec<Value> = h
        .all_overrides()
        .await
        .iter()
        .map(|o| o["id"].clone())
        .collect();
    assert_eq!(all, ids);
}

#[tokio::test]
async fn revoking_is_for_the_security_team_or_the_creator() {
    let h = Harness::new().await;
    let first = h
        .create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 60))
        .await;
    let second = h
        .create_override(&h.tokens.eng_lead, override_body(PROMOTE, "production", 60))
        .await;
    let path = |o: &Value| format!("/security-gate/override/{}", o["id"].as_str().unwrap());

    for token in [&h.tokens.eng_lead_2, &h.tokens.oncall, &h.tokens.developer] {
        let got = h.delete(&path(&first), token).await;
        assert_error(
            &got,
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("NOT_OVERRIDE_CREATOR"),
            None,
        );
    }
    let (_, still) = h.get(&path(&first), &h.tokens.developer).await;
    assert_eq!(
        still["status"], "active",
        "a refused revocation changes nothing"
    );
    assert_eq!(still["revokedAt"], Value::Null);
    let denied = h.audit("action=override.revoke&decision=denied").await;
    assert_eq!(denied.len(), 3);
    assert!(denied.iter().all(|e| e["reason"] == "NOT_OVERRIDE_CREATOR"));

    let (status, body) = h.delete(&path(&first), &h.tokens.eng_lead).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "revoked");
    assert_eq!(body["revokedBy"], "eng-lead");

    let (status, body) = h.delete(&path(&second), &h.tokens.security).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "revoked");
    assert_eq!(body["revokedBy"], "security-team");

    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(
        decision["reason"], "OVERRIDE_REQUIRED",
        "a revoked override is not honored"
    );
    let allowed = h.audit("action=override.revoke&decision=allowed").await;
    assert_eq!(allowed.len(), 2);
}

#[tokio::test]
async fn a_release_bound_override_covers_only_that_release() {
    let h = Harness::new().await;
    let mut body = override_body(CANARY, "production", 60);
    body["releaseId"] = json!("v1.2.3");
    let created = h.create_override(&h.tokens.eng_lead, body).await;
    assert_eq!(created["releaseId"], "v1.2.3");

    let decision = h
        .check(&h.tokens.developer, CANARY, "production", Some("v1.2.3"))
        .await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["reason"], "OVERRIDE");
    assert_eq!(decision["overrideId"], created["id"]);
    assert_eq!(decision["releaseId"], "v1.2.3");

    let decision = h
        .check(&h.tokens.developer, CANARY, "production", Some("v1.2.4"))
        .await;
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["reason"], "OVERRIDE_REQUIRED");

    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["reason"], "OVERRIDE_REQUIRED");
    assert_eq!(decision["releaseId"], Value::Null);
}

#[tokio::test]
async fn an_override_covers_only_its_action_and_environment() {
    let h = Harness::new().await;
    h.create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 60))
        .await;
    let decision = h
        .check(&h.tokens.developer, PROMOTE, "production", None)
        .await;
    assert_eq!(decision["reason"], "OVERRIDE_REQUIRED");
    let decision = h
        .check(&h.tokens.developer, ROLLBACK, "production", None)
        .await;
    assert_eq!(decision["reason"], "OVERRIDE_REQUIRED");
    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(decision["reason"], "ALLOWED", "staging needs no override");
    assert_eq!(decision["overrideId"], Value::Null);
}

#[tokio::test]
async fn check_is_audited_with_its_seq() {
    let h = Harness::new().await;
    let decision = h
        .check(&h.tokens.oncall, ROLLBACK, "staging", Some("v9"))
        .await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["reason"], "ALLOWED");
    assert_eq!(decision["message"], "Allowed");
    assert_eq!(decision["action"], ROLLBACK);
    assert_eq!(decision["environment"], "staging");
    assert_eq!(decision["mode"], "enforce");
    assert_eq!(decision["decidedAt"], START.to_rfc3339());
    assert_eq!(decision["hints"], json!([]));
    let seq = decision["auditSeq"].as_u64().unwrap();

    let entries = h.audit("action=security-gate.check").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["seq"], seq);
    assert_eq!(entries[0]["principal"], "oncall-lead");
    assert_eq!(entries[0]["role"], "oncall-lead");
    assert_eq!(entries[0]["decision"], "allowed");
    assert_eq!(entries[0]["reason"], "ALLOWED");

    let denied = h
        .check(&h.tokens.oncall, ROLLBACK, "production", None)
        .await;
    assert_eq!(denied["auditSeq"].as_u64().unwrap(), seq + 1);
    let entries = h.audit("action=security-gate.check&decision=denied").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["reason"], "OVERRIDE_REQUIRED");
}

#[tokio::test]
async fn monitor_mode_records_a_threat_level_verdict_as_would_block() {
    let h = Harness::new().await;
    h.set_mode("monitor", None).await;
    h.set_threat("high", "active exploitation").await;
    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["wouldBlock"], true);
    assert_eq!(decision["reason"], "THREAT_LEVEL");
    let entries = h.audit("action=security-gate.check").await;
    assert_eq!(entries[0]["reason"], "THREAT_LEVEL");
    assert_eq!(entries[0]["details"]["wouldBlock"], true);

    // Critical threat enters lockdown, which monitor mode does not soften.
    h.set_threat("critical", "worse").await;
    let decision = h
        .check(&h.tokens.developer, ROLLBACK, "staging", None)
        .await;
    assert_eq!(decision["allowed"], false);
    assert_eq!(decision["reason"], "LOCKDOWN");
    assert_eq!(decision["wouldBlock"], false);
}
