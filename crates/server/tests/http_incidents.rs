//! Incidents over HTTP (SPEC §3 step 2.3, §5, §6, §12): open, list, show, escalate, resolve;
//! every role, every mode; a critical security incident locks the gate down; a critical
//! incident requires an override for canary progress, even in staging.

#![allow(clippy::unwrap_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{API, Harness, START, assert_error, override_body};
use serde_json::{Value, json};

const CANARY: &str = "deploy.canary.start";
const PROMOTE: &str = "deploy.canary.promote";
const ROLLBACK: &str = "deploy.rollback";

fn incident(title: &str, severity: &str, category: &str, environment: Option<&str>) -> Value {
    let mut body = json!({"title": title, "severity": severity, "category": category});
    if let Some(environment) = environment {
        body["environment"] = json!(environment);
    }
    body
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

fn ids(list: &Value) -> Vec<String> {
    list["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

async fn escalate(
    h: &Harness,
    token: &str,
    id: &str,
    severity: &str,
    reason: &str,
) -> (StatusCode, Value) {
    h.post(
        &format!("/incidents/{id}/escalate"),
        token,
        json!({"severity": severity, "reason": reason}),
    )
    .await
}

async fn resolve(h: &Harness, token: &str, id: &str, reason: &str) -> (StatusCode, Value) {
    h.post(
        &format!("/incidents/{id}/resolve"),
        token,
        json!({"reason": reason}),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// The incident API
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn open_returns_201_with_the_incident_and_its_first_history_entry() {
    let h = Harness::new().await;
    let (status, created) = h
        .post(
            "/incidents",
            &h.tokens.developer,
            incident(
                "  Checkout error rate at 12%  ",
                "high",
                "operational",
                Some("production"),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = id_of(&created);
    assert!(id.starts_with("inc_"), "{id}");
    assert_eq!(created["title"], "Checkout error rate at 12%");
    assert_eq!(created["severity"], "high");
    assert_eq!(created["category"], "operational");
    assert_eq!(created["environment"], "production");
    assert_eq!(created["status"], "open");
    assert_eq!(created["openedAt"], START.to_rfc3339());
    assert_eq!(created["openedBy"], "developer");
    assert_eq!(created["updatedAt"], START.to_rfc3339());
    assert_eq!(created["resolvedAt"], Value::Null);
    assert_eq!(created["resolvedBy"], Value::Null);
    let history = created["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["change"], "opened");
    assert_eq!(history[0]["by"], "developer");
    assert_eq!(history[0]["severity"], "high");
    assert_eq!(history[0]["at"], START.to_rfc3339());

    let (status, found) = h.get(&format!("/incidents/{id}"), &h.tokens.oncall).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found, created);

    // Without an environment the incident concerns every environment: `environment` is null.
    let all = h
        .open_incident(
            &h.tokens.oncall,
            incident("DNS provider outage", "medium", "operational", None),
        )
        .await;
    assert_eq!(all["environment"], Value::Null);
    assert!(all.as_object().unwrap().contains_key("environment"));
    assert_ne!(all["id"], created["id"]);
}

#[tokio::test]
async fn open_refuses_invalid_input_naming_the_field_and_creates_nothing() {
    let h = Harness::new().await;
    let cases = [
        (
            json!({"severity": "high", "category": "operational"}),
            "title",
        ),
        (
            json!({"title": "   ", "severity": "high", "category": "operational"}),
            "title",
        ),
        (
            json!({"title": "x", "severity": "urgent", "category": "operational"}),
            "severity",
        ),
        (json!({"title": "x", "category": "operational"}), "severity"),
        (
            json!({"title": "x", "severity": "high", "category": "physical"}),
            "category",
        ),
        (
            json!({"title": "x", "severity": "high", "category": "security", "environment": "qa"}),
            "environment",
        ),
        (
            json!({"title": "x", "severity": "high", "category": "security", "owner": "bob"}),
            "owner",
        ),
    ];
    for (body, field) in cases {
        let got = h
            .post("/incidents", &h.tokens.developer, body.clone())
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    let (status, list) = h.get("/incidents", &h.tokens.developer).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list["incidents"],
        json!([]),
        "a rejected request creates nothing"
    );
    assert!(h.audit("action=incident.open").await.is_empty());
}

#[tokio::test]
async fn incident_endpoints_need_a_token() {
    let h = Harness::new().await;
    for (method, path, body) in [
        (
            Method::POST,
            "/incidents",
            Some(r#"{"title":"x","severity":"low","category":"operational"}"#),
        ),
        (Method::GET, "/incidents", None),
        (Method::GET, "/incidents/inc_x", None),
        (
            Method::POST,
            "/incidents/inc_x/escalate",
            Some(r#"{"severity":"high","reason":"r"}"#),
        ),
        (
            Method::POST,
            "/incidents/inc_x/resolve",
            Some(r#"{"reason":"r"}"#),
        ),
    ] {
        let got = h.call(method.clone(), path, None, body).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized", None, None);
    }
    let (_, list) = h.get("/incidents", &h.tokens.developer).await;
    assert_eq!(list["incidents"], json!([]));
}

#[tokio::test]
async fn list_filters_by_status_severity_and_environment_newest_first() {
    let h = Harness::new().await;
    let staging = h
        .open_incident(
            &h.tokens.developer,
            incident("staging db slow", "high", "operational", Some("staging")),
        )
        .await;
    h.clock.advance_millis(1);
    let production = h
        .open_incident(
            &h.tokens.developer,
            incident("prod 5xx", "critical", "operational", Some("production")),
        )
        .await;
    h.clock.advance_millis(1);
    let everywhere = h
        .open_incident(
            &h.tokens.developer,
            incident("CDN down", "critical", "operational", None),
        )
        .await;
    h.clock.advance_millis(1);
    let resolved = h
        .open_incident(
            &h.tokens.developer,
            incident("flaky test env", "low", "operational", Some("staging")),
        )
        .await;
    let (status, _) = resolve(&h, &h.tokens.developer, &id_of(&resolved), "fixed").await;
    assert_eq!(status, StatusCode::OK);
    let [s, p, e, r] = [&staging, &production, &everywhere, &resolved].map(id_of);

    let list = |query: &'static str| {
        let h = &h;
        async move {
            let (status, body) = h
                .get(&format!("/incidents{query}"), &h.tokens.developer)
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {body}");
            ids(&body)
        }
    };
    assert_eq!(
        list("").await,
        [r.as_str(), e.as_str(), p.as_str(), s.as_str()],
        "newest first"
    );
    assert_eq!(
        list("?status=open").await,
        [e.as_str(), p.as_str(), s.as_str()]
    );
    assert_eq!(list("?status=resolved").await, [r.as_str()]);
    assert_eq!(list("?severity=critical").await, [e.as_str(), p.as_str()]);
    assert_eq!(list("?severity=medium").await, Vec::<String>::new());
    assert_eq!(
        list("?environment=staging").await,
        [r.as_str(), e.as_str(), s.as_str()],
        "incidents with no environment concern staging too"
    );
    assert_eq!(
        list("?environment=production").await,
        [e.as_str(), p.as_str()]
    );
    assert_eq!(
        list("?status=open&severity=critical&environment=staging").await,
        [e.as_str()]
    );
    assert_eq!(list("?limit=2").await, [r.as_str(), e.as_str()]);
    assert_eq!(list("?limit=1&status=open").await, [e.as_str()]);
    assert_eq!(list("?limit=500").await.len(), 4);
}

#[tokio::test]
async fn list_refuses_bad_queries_naming_the_parameter() {
    let h = Harness::new().await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("status=closed", "status"),
        ("severity=sev1", "severity"),
        ("environment=qa", "environment"),
        ("owner=bob", "owner"),
    ] {
        let got = h
            .get(&format!("/incidents?{query}"), &h.tokens.developer)
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
async fn unknown_incidents_are_404() {
    let h = Harness::new().await;
    let got = h.get("/incidents/inc_nope", &h.tokens.developer).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = escalate(&h, &h.tokens.developer, "inc_nope", "high", "worse").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    let got = resolve(&h, &h.tokens.developer, "inc_nope", "fixed").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found", None, None);
    assert!(h.audit("action=incident.escalate").await.is_empty());
    assert!(h.audit("action=incident.resolve").await.is_empty());

    // 400 (the body) comes before 404 (the id).
    let got = h
        .post(
            "/incidents/inc_nope/escalate",
            &h.tokens.developer,
            json!({"severity": "high"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        None,
        Some("reason"),
    );
}

#[tokio::test]
async fn escalation_raises_severity_and_records_who_and_why() {
    let h = Harness::new().await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident("queue backlog", "low", "operational", Some("staging")),
        )
        .await;
    let id = id_of(&opened);
    h.clock.advance_minutes(5);
    let (status, escalated) =
        escalate(&h, &h.tokens.oncall, &id, "high", "backlog growing 10k/min").await;
    assert_eq!(status, StatusCode::OK, "{escalated}");
    assert_eq!(escalated["id"], id.as_str());
    assert_eq!(escalated["severity"], "high");
    assert_eq!(escalated["status"], "open");
    assert_eq!(escalated["openedBy"], "developer");
    assert_eq!(escalated["openedAt"], START.to_rfc3339());
    assert_eq!(escalated["updatedAt"], START.plus_minutes(5).to_rfc3339());
    let history = escalated["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0], opened["history"][0], "history is kept");
    assert_eq!(history[1]["change"], "escalated");
    assert_eq!(history[1]["by"], "oncall-lead");
    assert_eq!(history[1]["severity"], "high");
    assert_eq!(history[1]["reason"], "backlog growing 10k/min");
    assert_eq!(history[1]["at"], START.plus_minutes(5).to_rfc3339());

    let (_, found) = h
        .get(&format!("/incidents/{id}"), &h.tokens.developer)
        .await;
    assert_eq!(found, escalated);

    let entries = h.audit("action=incident.escalate").await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["principal"], "oncall-lead");
    assert_eq!(entry["role"], "oncall-lead");
    assert_eq!(entry["environment"], "staging");
    assert_eq!(entry["decision"], "allowed");
    assert_eq!(entry["details"]["incidentId"], id.as_str());
    assert_eq!(entry["details"]["reason"], "backlog growing 10k/min");
    assert_eq!(entry["details"]["from"]["severity"], "low");
    assert_eq!(entry["details"]["to"]["severity"], "high");
}

#[tokio::test]
async fn escalation_to_the_same_or_a_lower_severity_is_400_naming_severity() {
    let h = Harness::new().await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident("latency", "high", "operational", Some("production")),
        )
        .await;
    let id = id_of(&opened);
    for severity in ["high", "medium", "low"] {
        let got = escalate(&h, &h.tokens.security, &id, severity, "re-triage").await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some("severity"),
        );
    }
    for (body, field) in [
        (json!({"severity": "critical"}), "reason"),
        (json!({"severity": "critical", "reason": " "}), "reason"),
        (json!({"severity": "sev0", "reason": "x"}), "severity"),
        (json!({"reason": "x"}), "severity"),
        (
            json!({"severity": "critical", "reason": "x", "by": "me"}),
            "by",
        ),
    ] {
        let got = h
            .post(
                &format!("/incidents/{id}/escalate"),
                &h.tokens.security,
                body,
            )
            .await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    let (_, found) = h
        .get(&format!("/incidents/{id}"), &h.tokens.developer)
        .await;
    assert_eq!(found, opened, "refused escalations change nothing");
    assert!(h.audit("action=incident.escalate").await.is_empty());
}

#[tokio::test]
async fn resolve_closes_the_incident_and_a_resolved_incident_cannot_change() {
    let h = Harness::new().await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident("cache stampede", "medium", "operational", None),
        )
        .await;
    let id = id_of(&opened);
    h.clock.advance_minutes(30);
    let (status, resolved) = resolve(&h, &h.tokens.eng_lead, &id, "rolled back v1.2.3").await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["severity"], "medium");
    assert_eq!(resolved["resolvedAt"], START.plus_minutes(30).to_rfc3339());
    assert_eq!(resolved["resolvedBy"], "eng-lead");
    let last = resolved["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["change"], "resolved");
    assert_eq!(last["by"], "eng-lead");
    assert_eq!(last["reason"], "rolled back v1.2.3");

    let got = resolve(&h, &h.tokens.eng_lead, &id, "again").await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", None, None);
    let got = escalate(&h, &h.tokens.security, &id, "critical", "it is back").await;
    assert_error(&got, StatusCode::CONFLICT, "conflict", None, None);

    let (_, found) = h
        .get(&format!("/incidents/{id}"), &h.tokens.developer)
        .await;
    assert_eq!(found, resolved, "refused changes change nothing");
    assert_eq!(found["history"].as_array().unwrap().len(), 2);

    let entries = h.audit("action=incident.resolve").await;
    assert_eq!(entries.len(), 1, "only the successful resolve is recorded");
    assert_eq!(entries[0]["principal"], "eng-lead");
    assert_eq!(entries[0]["environment"], Value::Null);
    assert_eq!(entries[0]["details"]["reason"], "rolled back v1.2.3");
    assert_eq!(entries[0]["details"]["to"]["status"], "resolved");
}

#[tokio::test]
async fn every_role_may_open_escalate_and_resolve_and_each_change_is_audited() {
    let h = Harness::new().await;
    let roles = [
        (&h.tokens.developer, "developer"),
        (&h.tokens.oncall, "oncall-lead"),
        (&h.tokens.eng_lead, "eng-lead"),
        (&h.tokens.security, "security-team"),
    ];
    for (token, name) in roles {
        let opened = h
            .open_incident(
                token,
                incident(
                    &format!("opened by {name}"),
                    "low",
                    "operational",
                    Some("staging"),
                ),
            )
            .await;
        assert_eq!(opened["openedBy"], name);
        let id = id_of(&opened);
        let (status, escalated) =
            escalate(&h, token, &id, "medium", &format!("{name} escalates")).await;
        assert_eq!(status, StatusCode::OK, "{name}: {escalated}");
        assert_eq!(escalated["history"][1]["by"], name);
        let (status, resolved) = resolve(&h, token, &id, &format!("{name} resolves")).await;
        assert_eq!(status, StatusCode::OK, "{name}: {resolved}");
        assert_eq!(resolved["resolvedBy"], name);

        for (action, why) in [
            ("incident.open", None),
            ("incident.escalate", Some(format!("{name} escalates"))),
            ("incident.resolve", Some(format!("{name} resolves"))),
        ] {
            let entries = h.audit(&format!("action={action}&principal={name}")).await;
            assert_eq!(entries.len(), 1, "{action} by {name}");
            let entry = &entries[0];
            assert_eq!(entry["decision"], "allowed", "{action} by {name}");
            assert_eq!(entry["reason"], "ALLOWED");
            assert_eq!(entry["environment"], "staging");
            let incident_id = if action == "incident.open" {
                &entry["details"]["id"]
            } else {
                &entry["details"]["incidentId"]
            };
            assert_eq!(*incident_id, id.as_str(), "{action} by {name}: {entry}");
            if let Some(why) = why {
                assert_eq!(entry["details"]["reason"], why.as_str());
            }
        }
    }
}

#[tokio::test]
async fn incidents_work_in_lockdown_and_in_monitor_mode() {
    let h = Harness::new().await;
    for (mode, reason) in [
        ("lockdown", Some("breach investigation")),
        ("monitor", None),
    ] {
        h.set_mode(mode, reason).await;
        let opened = h
            .open_incident(
                &h.tokens.developer,
                incident(&format!("during {mode}"), "low", "operational", None),
            )
            .await;
        let id = id_of(&opened);
        let (status, body) = escalate(&h, &h.tokens.developer, &id, "high", "spreading").await;
        assert_eq!(status, StatusCode::OK, "{mode}: {body}");
        assert_eq!(body["severity"], "high");
        let (status, body) = resolve(&h, &h.tokens.developer, &id, "contained").await;
        assert_eq!(status, StatusCode::OK, "{mode}: {body}");
        assert_eq!(body["status"], "resolved");
        assert_eq!(
            h.status().await["mode"],
            mode,
            "incidents do not change the mode"
        );
    }
    assert_eq!(h.audit("action=incident.open").await.len(), 2);
    assert_eq!(h.audit("action=incident.escalate").await.len(), 2);
    assert_eq!(h.audit("action=incident.resolve").await.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Incidents and the gate
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_critical_security_incident_enters_lockdown_naming_the_incident() {
    let h = Harness::new().await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident(
                "Leaked deploy key",
                "critical",
                "security",
                Some("production"),
            ),
        )
        .await;
    let id = id_of(&opened);
    let status = h.status().await;
    assert_eq!(status["mode"], "lockdown");
    let reason = status["lockdownReason"].as_str().unwrap().to_owned();
    assert!(reason.contains(&id), "{reason}");
    assert_eq!(status["lockdownSince"], START.to_rfc3339());

    let entered = h.audit("action=security-gate.lockdown.enter").await;
    assert_eq!(entered.len(), 1);
    assert_eq!(entered[0]["principal"], "system");
    assert_eq!(entered[0]["decision"], "recorded");
    assert_eq!(entered[0]["reason"], "LOCKDOWN_TRIGGERED");
    assert_eq!(entered[0]["details"]["lockdownReason"], reason.as_str());
    assert_eq!(entered[0]["details"]["triggeredBy"], "developer");

    // Lockdown covers every environment and every gated action.
    for (action, env) in [(ROLLBACK, "staging"), (CANARY, "staging")] {
        let decision = h.check(&h.tokens.developer, action, env, None).await;
        assert_eq!(decision["reason"], "LOCKDOWN", "{action} {env}");
        assert!(decision["message"].as_str().unwrap().contains(&id));
    }

    // Nothing leaves lockdown automatically, not even resolving the incident.
    let (status, _) = resolve(&h, &h.tokens.security, &id, "key rotated").await;
    assert_eq!(status, StatusCode::OK);
    let status = h.status().await;
    assert_eq!(status["mode"], "lockdown");
    assert_eq!(status["lockdownReason"], reason.as_str());
}

#[tokio::test]
async fn a_critical_security_incident_enters_lockdown_from_monitor_mode_too() {
    let h = Harness::new().await;
    h.set_mode("monitor", Some("trial")).await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident(
                "Malware on a runner",
                "critical",
                "security",
                Some("staging"),
            ),
        )
        .await;
    let status = h.status().await;
    assert_eq!(status["mode"], "lockdown");
    assert!(
        status["lockdownReason"]
            .as_str()
            .unwrap()
            .contains(&id_of(&opened))
    );
    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(decision["allowed"], false, "monitor mode no longer softens");
    assert_eq!(decision["reason"], "LOCKDOWN");
}

#[tokio::test]
async fn lower_severity_and_operational_incidents_do_not_enter_lockdown() {
    let h = Harness::new().await;
    h.open_incident(
        &h.tokens.developer,
        incident("port scan", "high", "security", None),
    )
    .await;
    h.open_incident(
        &h.tokens.developer,
        incident("db down", "critical", "operational", None),
    )
    .await;
    let status = h.status().await;
    assert_eq!(status["mode"], "enforce");
    assert_eq!(status["lockdownReason"], Value::Null);
    assert!(
        h.audit("action=security-gate.lockdown.enter")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn escalating_a_security_incident_to_critical_enters_lockdown() {
    let h = Harness::new().await;
    let opened = h
        .open_incident(
            &h.tokens.oncall,
            incident("Suspicious logins", "medium", "security", None),
        )
        .await;
    let id = id_of(&opened);
    let (status, _) = escalate(&h, &h.tokens.oncall, &id, "high", "more of them").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.status().await["mode"], "enforce", "high is not enough");

    let (status, escalated) = escalate(
        &h,
        &h.tokens.oncall,
        &id,
        "critical",
        "admin account taken over",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{escalated}");
    let status = h.status().await;
    assert_eq!(status["mode"], "lockdown");
    let reason = status["lockdownReason"].as_str().unwrap();
    assert!(reason.contains(&id), "{reason}");
    let entered = h.audit("action=security-gate.lockdown.enter").await;
    assert_eq!(entered.len(), 1);
    assert_eq!(entered[0]["principal"], "system");
    assert_eq!(entered[0]["details"]["triggeredBy"], "oncall-lead");
}

#[tokio::test]
async fn a_second_automatic_trigger_keeps_the_first_reason_and_audits_the_new_cause() {
    let h = Harness::new().await;
    let first = h
        .open_incident(
            &h.tokens.developer,
            incident("Leaked deploy key", "critical", "security", None),
        )
        .await;
    let first_reason = h.status().await["lockdownReason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(first_reason.contains(&id_of(&first)));

    let second = h
        .open_incident(
            &h.tokens.oncall,
            incident("Ransomware on build host", "high", "security", None),
        )
        .await;
    let second_id = id_of(&second);
    let (status, _) = escalate(&h, &h.tokens.oncall, &second_id, "critical", "confirmed").await;
    assert_eq!(status, StatusCode::OK);

    let status = h.status().await;
    assert_eq!(status["mode"], "lockdown");
    assert_eq!(
        status["lockdownReason"],
        first_reason.as_str(),
        "the first reason stands"
    );

    let triggers = h.audit("action=security-gate.lockdown.trigger").await;
    assert_eq!(triggers.len(), 1);
    let trigger = &triggers[0];
    assert_eq!(trigger["principal"], "system");
    assert_eq!(trigger["decision"], "recorded");
    assert_eq!(trigger["reason"], "LOCKDOWN_TRIGGERED");
    assert_eq!(trigger["details"]["lockdownReason"], first_reason.as_str());
    assert_eq!(trigger["details"]["triggeredBy"], "oncall-lead");
    assert_eq!(trigger["details"]["triggeredByAuthenticatedBy"], "token");
    let cause = trigger["details"]["cause"].as_str().unwrap();
    assert!(cause.contains(&second_id), "{cause}");
    assert_eq!(
        h.audit("action=security-gate.lockdown.enter").await.len(),
        1,
        "lockdown was entered once"
    );
}

#[tokio::test]
async fn a_security_incident_during_manual_lockdown_keeps_the_manual_reason() {
    let h = Harness::new().await;
    h.set_mode("lockdown", Some("first: pentest findings"))
        .await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident("Exfiltration", "critical", "security", None),
        )
        .await;
    let status = h.status().await;
    assert_eq!(status["lockdownReason"], "first: pentest findings");
    let triggers = h.audit("action=security-gate.lockdown.trigger").await;
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0]["principal"], "system");
    assert!(
        triggers[0]["details"]["cause"]
            .as_str()
            .unwrap()
            .contains(&id_of(&opened))
    );
}

#[tokio::test]
async fn an_operational_critical_incident_requires_an_override_for_canary_progress_in_its_environment()
 {
    let h = Harness::new().await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident("Payments down", "critical", "operational", Some("staging")),
        )
        .await;
    let id = id_of(&opened);
    let status = h.status().await;
    assert_eq!(
        status["mode"], "enforce",
        "operational incidents never lock down"
    );
    assert_eq!(status["lockdownReason"], Value::Null);

    for action in [CANARY, PROMOTE] {
        let decision = h.check(&h.tokens.developer, action, "staging", None).await;
        assert_eq!(decision["allowed"], false, "{action}");
        assert_eq!(decision["reason"], "CRITICAL_INCIDENT", "{action}");
        assert_eq!(decision["wouldBlock"], false);
        assert_eq!(decision["overrideId"], Value::Null);
        let message = decision["message"].as_str().unwrap();
        assert!(message.contains(&id), "{message}");
        assert!(!decision["hints"].as_array().unwrap().is_empty());
    }
    let decision = h
        .check(&h.tokens.developer, ROLLBACK, "staging", None)
        .await;
    assert_eq!(decision["allowed"], true, "rollback is not canary progress");
    assert_eq!(decision["reason"], "ALLOWED");

    let denied = h.audit("action=security-gate.check&decision=denied").await;
    assert_eq!(denied.len(), 2);
    assert!(denied.iter().all(|e| e["reason"] == "CRITICAL_INCIDENT"));
}

#[tokio::test]
async fn a_critical_incident_in_one_environment_does_not_concern_the_other() {
    let h = Harness::new().await;
    h.open_incident(
        &h.tokens.developer,
        incident("Prod only", "critical", "operational", Some("production")),
    )
    .await;
    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["reason"], "ALLOWED");

    // In production an override is needed anyway; one lifts both requirements.
    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(decision["reason"], "OVERRIDE_REQUIRED");
    let created = h
        .create_override(&h.tokens.eng_lead, override_body(CANARY, "production", 60))
        .await;
    let decision = h
        .check(&h.tokens.developer, CANARY, "production", None)
        .await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["reason"], "OVERRIDE");
    assert_eq!(decision["overrideId"], created["id"]);
}

#[tokio::test]
async fn a_critical_incident_without_environment_applies_to_every_environment() {
    let h = Harness::new().await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident("Region outage", "critical", "operational", None),
        )
        .await;
    for action in [CANARY, PROMOTE] {
        let decision = h.check(&h.tokens.developer, action, "staging", None).await;
        assert_eq!(decision["allowed"], false);
        assert_eq!(decision["reason"], "CRITICAL_INCIDENT");
        let message = decision["message"].as_str().unwrap();
        assert!(message.contains(&id_of(&opened)), "{message}");
        assert!(message.contains("all environments"), "{message}");
    }
}

#[tokio::test]
async fn an_eng_lead_override_lifts_critical_incident_in_staging_for_its_action_only() {
    let h = Harness::new().await;
    h.open_incident(
        &h.tokens.developer,
        incident("Payments down", "critical", "operational", Some("staging")),
    )
    .await;
    let created = h
        .create_override(&h.tokens.eng_lead, override_body(CANARY, "staging", 60))
        .await;
    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["reason"], "OVERRIDE");
    assert_eq!(decision["overrideId"], created["id"]);

    let decision = h.check(&h.tokens.developer, PROMOTE, "staging", None).await;
    assert_eq!(
        decision["allowed"], false,
        "the override is for canary start"
    );
    assert_eq!(decision["reason"], "CRITICAL_INCIDENT");

    // Once it expires, the incident blocks again.
    h.clock.advance_minutes(60);
    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(decision["reason"], "CRITICAL_INCIDENT");
}

#[tokio::test]
async fn resolving_the_critical_incident_lifts_the_requirement() {
    let h = Harness::new().await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident("Payments down", "critical", "operational", Some("staging")),
        )
        .await;
    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(decision["reason"], "CRITICAL_INCIDENT");
    let (status, _) = resolve(&h, &h.tokens.developer, &id_of(&opened), "fixed").await;
    assert_eq!(status, StatusCode::OK);
    for action in [CANARY, PROMOTE] {
        let decision = h.check(&h.tokens.developer, action, "staging", None).await;
        assert_eq!(decision["allowed"], true, "{action}");
        assert_eq!(decision["reason"], "ALLOWED", "{action}");
    }
}

#[tokio::test]
async fn escalating_an_operational_incident_to_critical_blocks_canary_progress() {
    let h = Harness::new().await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident("Error budget burn", "high", "operational", Some("staging")),
        )
        .await;
    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(decision["reason"], "ALLOWED", "high is not critical");
    let (status, _) = escalate(
        &h,
        &h.tokens.developer,
        &id_of(&opened),
        "critical",
        "customers affected",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(decision["reason"], "CRITICAL_INCIDENT");
    assert_eq!(h.status().await["mode"], "enforce");
}

#[tokio::test]
async fn monitor_mode_records_critical_incident_as_would_block() {
    let h = Harness::new().await;
    h.set_mode("monitor", Some("trial")).await;
    h.open_incident(
        &h.tokens.developer,
        incident("Payments down", "critical", "operational", Some("staging")),
    )
    .await;
    let decision = h.check(&h.tokens.developer, CANARY, "staging", None).await;
    assert_eq!(decision["allowed"], true);
    assert_eq!(decision["wouldBlock"], true);
    assert_eq!(decision["reason"], "CRITICAL_INCIDENT");
}

#[tokio::test]
async fn when_the_audit_entry_cannot_be_written_no_incident_changes() {
    let h = Harness::new().await;
    let opened = h
        .open_incident(
            &h.tokens.developer,
            incident("Suspicious logins", "high", "security", None),
        )
        .await;
    let id = id_of(&opened);
    h.db.refuse_audit_writes();
    let got = h
        .post(
            "/incidents",
            &h.tokens.developer,
            incident("Leaked key", "critical", "security", None),
        )
        .await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );
    let got = escalate(&h, &h.tokens.developer, &id, "critical", "confirmed").await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );
    let got = resolve(&h, &h.tokens.developer, &id, "false alarm").await;
    assert_error(
        &got,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        None,
        None,
    );
    h.db.allow_audit_writes();

    let (_, list) = h.get("/incidents", &h.tokens.developer).await;
    assert_eq!(ids(&list), [id.as_str()], "no incident was opened");
    let (_, found) = h
        .get(&format!("/incidents/{id}"), &h.tokens.developer)
        .await;
    assert_eq!(
        found, opened,
        "the incident was neither escalated nor resolved"
    );
    let status = h.status().await;
    assert_eq!(status["mode"], "enforce", "no lockdown without its record");
    assert_eq!(status["lockdownReason"], Value::Null);
}

#[tokio::test]
async fn openapi_documents_the_incident_operations() {
    let h = Harness::new().await;
    let reply = h
        .raw(Method::GET, &format!("{API}/openapi.json"), None, None)
        .await;
    let doc = reply.json();
    let paths = &doc["paths"];
    let codes = |path: &str, method: &str| -> Vec<String> {
        let operation = &paths[format!("{API}{path}")][method];
        assert_eq!(operation["tags"], json!(["incidents"]), "{method} {path}");
        operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is documented"))
            .keys()
            .cloned()
            .collect()
    };
    assert!(codes("/incidents", "post").contains(&"201".to_owned()));
    assert!(codes("/incidents", "get").contains(&"200".to_owned()));
    assert!(codes("/incidents/{id}", "get").contains(&"404".to_owned()));
    let escalate = codes("/incidents/{id}/escalate", "post");
    for code in ["200", "400", "404", "409"] {
        assert!(escalate.contains(&code.to_owned()), "escalate {code}");
    }
    let resolve = codes("/incidents/{id}/resolve", "post");
    for code in ["200", "404", "409"] {
        assert!(resolve.contains(&code.to_owned()), "resolve {code}");
    }
    let params: Vec<&str> = paths[format!("{API}/incidents")]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["status", "severity", "environment", "limit"] {
        assert!(params.contains(&name), "GET /incidents documents `{name}`");
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["IncidentCategory"]["enum"],
        json!(["security", "operational"])
    );
    assert_eq!(
        schemas["IncidentStatus"]["enum"],
        json!(["open", "resolved"])
    );
    assert_eq!(
        schemas["IncidentChange"]["enum"],
        json!(["opened", "escalated", "resolved"])
    );
    assert_eq!(
        schemas["Severity"]["enum"],
        json!(["low", "medium", "high", "critical"])
    );
    for name in [
        "Incident",
        "OpenIncidentRequest",
        "EscalateIncidentRequest",
        "ResolveIncidentRequest",
    ] {
        assert!(schemas[name].is_object(), "schema {name}");
    }
}
