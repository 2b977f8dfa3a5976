//! Flagger's webhooks and the pollers' decision endpoint (SPEC §17), in-process.
//!
//! Flagger's bodies are shaped as `CallWebhook` and `CallEventWebhook` build them in
//! fluxcd/flagger `pkg/controller/webhook.go` (`CanaryWebhookPayload`: name, namespace, phase,
//! checksum, metadata), with the values its own `webhook_test.go` uses.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode, header};
use common::*;
use deploy_safety_app::{AppSettings, FlaggerSettings};
use deploy_safety_core::Environment;
use deploy_safety_server::HttpSettings;
use serde_json::{Value, json};

/// The checksum Flagger sends: a hash of the canary's spec (`canaryChecksum`).
const CHECKSUM: &str = "5f5697644f";

async fn harness(rollback_on_critical_incident: bool) -> Harness {
    let namespaces = BTreeMap::from([
        ("default".to_owned(), Environment::STAGING),
        ("payments-prod".to_owned(), Environment::PRODUCTION),
    ]);
    Harness::with_app_settings(
        HttpSettings::default(),
        AppSettings {
            flagger: FlaggerSettings {
                namespaces,
                rollback_on_critical_incident,
            },
            ..AppSettings::default()
        },
    )
    .await
}

/// Flagger's body for a hook (`CallWebhook`): the webhook's metadata as the user wrote it.
fn flagger_body(namespace: &str, phase: &str, metadata: Value) -> Value {
    json!({
        "name": "podinfo",
        "namespace": namespace,
        "phase": phase,
        "checksum": CHECKSUM,
        "metadata": metadata,
    })
}

/// Flagger's body for the `event` hook (`CallEventWebhook`): its own keys first, then the
/// webhook's metadata where it does not collide.
fn flagger_event_body(namespace: &str, token: &str) -> Value {
    json!({
        "name": "podinfo",
        "namespace": namespace,
        "phase": "Progressing",
        "checksum": CHECKSUM,
        "metadata": {
            "eventMessage": format!("Starting canary analysis for podinfo.{namespace}"),
            "eventType": "Normal",
            "timestamp": "1767225600000",
            "token": token,
        },
    })
}

/// Posts to a Flagger hook with no `Authorization` header (as Flagger does); returns the
/// status and the one-line text body.
async fn flagger(h: &Harness, hook: &str, body: &Value) -> (StatusCode, String) {
    flagger_with(h, hook, None, &body.to_string()).await
}

async fn flagger_with(
    h: &Harness,
    hook: &str,
    authorization: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let reply = h
        .raw(
            Method::POST,
            &format!("{API}/integrations/flagger/{hook}"),
            authorization,
            Some(body),
        )
        .await;
    assert_eq!(
        reply
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap()),
        Some("text/plain; charset=utf-8"),
        "{hook}: {}",
        reply.text
    );
    assert!(
        reply.text.ends_with('\n') && reply.text.trim_end().lines().count() == 1,
        "one line: {:?}",
        reply.text
    );
    (reply.status, reply.text.trim_end().to_owned())
}

/// The code before `: ` in Flagger's line.
fn code(line: &str) -> &str {
    line.split(':').next().unwrap_or_default()
}

fn with_token(h: &Harness) -> Value {
    json!({ "token": h.tokens.developer })
}

async fn last_audit(h: &Harness, action: &str) -> Value {
    h.audit(&format!("action={action}"))
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no audit entry for {action}"))
}

#[tokio::test]
async fn flagger_gated_hooks_proceed_when_the_gate_allows_and_are_audited() {
    let h = harness(false).await;
    for hook in [
        "confirm-rollout",
        "rollout",
        "confirm-traffic-increase",
        "confirm-promotion",
    ] {
        let (status, line) = flagger(
            &h,
            hook,
            &flagger_body("default", "Progressing", with_token(&h)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{hook}: {line}");
        assert_eq!(code(&line), "ALLOWED", "{hook}: {line}");
        let entry = last_audit(&h, &format!("integration.flagger.{hook}")).await;
        assert_eq!(entry["principal"], "developer");
        assert_eq!(entry["decision"], "allowed");
        assert_eq!(entry["environment"], "staging");
        let details = &entry["details"];
        assert_eq!(details["answer"], "allow");
        assert_eq!(details["service"], "default/podinfo");
        assert_eq!(details["releaseId"], CHECKSUM);
        let want = if hook == "confirm-rollout" {
            "deploy.canary.start"
        } else {
            "deploy.canary.promote"
        };
        assert_eq!(details["action"], want, "{hook}");
    }
}

#[tokio::test]
async fn flagger_gated_hooks_halt_with_each_reason_of_the_gate() {
    let h = harness(false).await;
    let prod = || {
        flagger_body(
            "payments-prod",
            "Progressing",
            json!({ "token": h.tokens.developer }),
        )
    };
    // Production without an override.
    let (status, line) = flagger(&h, "confirm-rollout", &prod()).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::FORBIDDEN, "OVERRIDE_REQUIRED"),
        "{line}"
    );
    let entry = last_audit(&h, "integration.flagger.confirm-rollout").await;
    assert_eq!(entry["decision"], "denied");
    assert_eq!(entry["reason"], "OVERRIDE_REQUIRED");
    assert_eq!(entry["environment"], "production");

    // A critical incident stops staging canaries.
    let staging = flagger_body("default", "Progressing", with_token(&h));
    let incident = h
        .open_incident(
            &h.tokens.developer,
            json!({"title": "Checkout errors", "severity": "critical",
                   "category": "operational", "environment": "staging"}),
        )
        .await;
    let (status, line) = flagger(&h, "confirm-traffic-increase", &staging).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::FORBIDDEN, "CRITICAL_INCIDENT"),
        "{line}"
    );
    let id = incident["id"].as_str().unwrap();
    let (status, _) = h
        .post(
            &format!("/incidents/{id}/resolve"),
            &h.tokens.oncall,
            json!({"reason": "fixed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // A freeze of staging.
    let (status, freeze) = h
        .post(
            "/freezes",
            &h.tokens.security,
            json!({"name": "holiday", "reason": "CHG-7: year-end freeze",
                   "environments": ["staging"], "end": at_minutes(90)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{freeze}");
    let (status, line) = flagger(&h, "confirm-rollout", &staging).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::FORBIDDEN, "FREEZE"),
        "{line}"
    );
    assert!(line.contains("holiday"), "{line}");
    let (status, _) = h
        .delete(
            &format!("/freezes/{}", freeze["id"].as_str().unwrap()),
            &h.tokens.security,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // A high threat level stops canary progress.
    h.set_threat("high", "CVE in the base image").await;
    let (status, line) = flagger(&h, "rollout", &staging).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::FORBIDDEN, "THREAT_LEVEL"),
        "{line}"
    );
    h.set_threat("low", "patched").await;

    // Lockdown stops everything.
    h.set_mode("lockdown", Some("INC-9: credential leak")).await;
    let (status, line) = flagger(&h, "confirm-promotion", &staging).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::FORBIDDEN, "LOCKDOWN"),
        "{line}"
    );
    assert!(line.contains("INC-9: credential leak"), "{line}");
}

#[tokio::test]
async fn flagger_steps_count_the_start_override_of_the_same_release() {
    let h = harness(false).await;
    let prod = flagger_body(
        "payments-prod",
        "Progressing",
        json!({ "token": h.tokens.developer, "service": "payments/api", "releaseId": "v2.0.0" }),
    );
    let created = h
        .create_override(
            &h.tokens.eng_lead,
            json!({"action": "deploy.canary.start", "environment": "production",
                   "releaseId": "v2.0.0", "service": "payments/api",
                   "reason": "CHG-42 approved", "ttlMinutes": 60}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    for hook in [
        "confirm-rollout",
        "rollout",
        "confirm-traffic-increase",
        "confirm-promotion",
    ] {
        let (status, line) = flagger(&h, hook, &prod).await;
        assert_eq!(
            (status, code(&line)),
            (StatusCode::OK, "OVERRIDE"),
            "{hook}: {line}"
        );
    }
    // Each allowed hook is a use of the override, recorded.
    let uses = h.audit("action=override.use").await;
    assert_eq!(uses.len(), 4, "{uses:?}");
    assert!(uses.iter().all(|u| u["details"]["overrideId"] == id));
    // Another release is not covered.
    let other = flagger_body(
        "payments-prod",
        "Progressing",
        json!({ "token": h.tokens.developer, "service": "payments/api", "releaseId": "v2.0.1" }),
    );
    let (status, line) = flagger(&h, "confirm-traffic-increase", &other).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::FORBIDDEN, "OVERRIDE_REQUIRED"),
        "{line}"
    );
}

#[tokio::test]
async fn flagger_authenticates_by_header_or_metadata_token_and_refuses_without() {
    let h = harness(false).await;
    let bare = flagger_body("default", "Progressing", json!({"key1": "val1"}));
    let (status, line) = flagger(&h, "confirm-rollout", &bare).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
        "{line}"
    );
    assert!(line.contains("metadata"), "{line}");
    let wrong = flagger_body("default", "Progressing", json!({"token": "ds_nope_nope"}));
    let (status, _) = flagger(&h, "confirm-rollout", &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Header.
    let bearer = format!("Bearer {}", h.tokens.oncall);
    let (status, line) =
        flagger_with(&h, "confirm-rollout", Some(&bearer), &bare.to_string()).await;
    assert_eq!((status, code(&line)), (StatusCode::OK, "ALLOWED"), "{line}");
    assert_eq!(
        last_audit(&h, "integration.flagger.confirm-rollout").await["principal"],
        "oncall-lead"
    );
    // A body that is not JSON and no header: nothing to authenticate with.
    let (status, _) = flagger_with(&h, "confirm-rollout", None, "{\"name\": ").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Nothing was recorded for the unauthenticated ones.
    assert_eq!(
        h.audit("action=integration.flagger.confirm-rollout")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn flagger_bad_input_is_a_clear_4xx_audited_when_authenticated() {
    let h = harness(false).await;
    let bearer = format!("Bearer {}", h.tokens.developer);
    // A namespace mapped to no environment names the setting to add.
    let unmapped = flagger_body("checkout", "Progressing", with_token(&h));
    let (status, line) = flagger(&h, "confirm-rollout", &unmapped).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::BAD_REQUEST, "UNMAPPED_ENVIRONMENT"),
        "{line}"
    );
    assert!(line.contains("[integrations.flagger.namespaces]"), "{line}");
    let entry = last_audit(&h, "integration.flagger.confirm-rollout").await;
    assert_eq!(
        (entry["decision"].as_str(), entry["reason"].as_str()),
        (Some("denied"), Some("UNMAPPED_ENVIRONMENT"))
    );
    // metadata.environment names an environment that is not configured.
    let unknown = flagger_body(
        "default",
        "Progressing",
        json!({"token": h.tokens.developer, "environment": "qa"}),
    );
    let (status, line) = flagger(&h, "confirm-rollout", &unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{line}");
    assert!(
        line.contains("metadata.environment") && line.contains("qa"),
        "{line}"
    );
    // A mapped namespace's canary cannot be moved to another environment by its metadata.
    let moved = flagger_body(
        "payments-prod",
        "Progressing",
        json!({"token": h.tokens.developer, "environment": "staging"}),
    );
    let (status, line) = flagger(&h, "confirm-rollout", &moved).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{line}");
    assert!(
        line.contains("metadata.environment") && line.contains("[integrations.flagger.namespaces]"),
        "{line}"
    );
    // Agreeing with the map is fine.
    let agreed = flagger_body(
        "payments-prod",
        "Progressing",
        json!({"token": h.tokens.developer, "environment": "production"}),
    );
    let (status, line) = flagger(&h, "confirm-rollout", &agreed).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::FORBIDDEN, "OVERRIDE_REQUIRED"),
        "{line}"
    );
    // Malformed JSON with a valid header: 400, audited as refused.
    let before = h
        .audit("action=integration.flagger.pre-rollout")
        .await
        .len();
    let (status, line) = flagger_with(&h, "pre-rollout", Some(&bearer), "{\"name\": 7}").await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        "{line}"
    );
    assert!(line.contains("name"), "{line}");
    let refused = h.audit("action=integration.flagger.pre-rollout").await;
    assert_eq!(refused.len(), before + 1);
    assert_eq!(refused[0]["reason"], "INVALID_REQUEST");
    // Metadata values are strings in Flagger; anything else is refused naming the key.
    let (status, line) = flagger_with(
        &h,
        "event",
        Some(&bearer),
        &json!({"name": "podinfo", "namespace": "default", "metadata": {"eventType": 3}})
            .to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{line}");
    assert!(line.contains("metadata.eventType"), "{line}");
    // An invalid service or release in the metadata.
    let bad_service = flagger_body(
        "default",
        "Progressing",
        json!({"token": h.tokens.developer, "service": "a b"}),
    );
    let (status, line) = flagger(&h, "confirm-rollout", &bad_service).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{line}");
    assert!(line.contains("metadata.service"), "{line}");
    // Names that are not Kubernetes names, and a payload without Flagger's checksum.
    for (body, field) in [
        (
            json!({"name": "pod info", "namespace": "default", "checksum": CHECKSUM, "metadata": with_token(&h)}),
            "name",
        ),
        (
            json!({"name": "podinfo", "namespace": "x".repeat(64), "checksum": CHECKSUM, "metadata": with_token(&h)}),
            "namespace",
        ),
        (
            json!({"name": "podinfo", "namespace": "default", "metadata": with_token(&h)}),
            "checksum",
        ),
        (
            json!({"name": "podinfo", "namespace": "default", "checksum": "", "metadata": with_token(&h)}),
            "checksum",
        ),
    ] {
        let (status, line) = flagger(&h, "confirm-rollout", &body).await;
        assert_eq!(
            (status, code(&line)),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            "{line}"
        );
        assert!(line.contains(field), "{field}: {line}");
        assert!(
            !line.contains(&format!("{field}: {field}")),
            "said twice: {line}"
        );
    }
    // Not a hook type.
    let (status, line) = flagger(
        &h,
        "pre-promotion",
        &flagger_body("default", "", with_token(&h)),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{line}");
    assert!(line.contains("confirm-rollout"), "{line}");
    // Too large.
    let big = flagger_body(
        "default",
        "Progressing",
        json!({"token": h.tokens.developer, "pad": "x".repeat(100_000)}),
    );
    let (status, _) = flagger(&h, "event", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing changed: no canary, no release recorded.
    let (_, releases) = h
        .get(
            "/releases/staging?service=default/podinfo",
            &h.tokens.developer,
        )
        .await;
    assert_eq!(releases["releases"], json!([]), "{releases}");
}

#[tokio::test]
async fn flagger_pre_rollout_runs_a_release_validation() {
    let h = harness(false).await;
    // Staging: the built-in gates pass.
    let (status, line) = flagger(
        &h,
        "pre-rollout",
        &flagger_body("default", "Progressing", with_token(&h)),
    )
    .await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::OK, "VALIDATION_PASSED"),
        "{line}"
    );
    let (_, list) = h
        .get(
            &format!("/validations?releaseId={CHECKSUM}&environment=staging"),
            &h.tokens.developer,
        )
        .await;
    let validations = list["validations"].as_array().expect("validations");
    assert_eq!(validations.len(), 1, "{list}");
    assert_eq!(validations[0]["service"], "default/podinfo");
    assert_eq!(validations[0]["status"], "passed");
    // Called again, it runs the same validation again rather than making another.
    let (status, _) = flagger(
        &h,
        "pre-rollout",
        &flagger_body("default", "Progressing", with_token(&h)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = h
        .get(
            &format!("/validations?releaseId={CHECKSUM}&environment=staging"),
            &h.tokens.developer,
        )
        .await;
    assert_eq!(list["validations"].as_array().unwrap().len(), 1);
    assert_eq!(list["validations"][0]["runs"].as_array().unwrap().len(), 2);

    // Production: this release never passed in staging for that service (the metadata names
    // another service), so environment-parity fails and Flagger halts.
    let prod = flagger_body(
        "payments-prod",
        "Progressing",
        json!({"token": h.tokens.developer, "service": "payments/api"}),
    );
    let (status, line) = flagger(&h, "pre-rollout", &prod).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::FORBIDDEN, "VALIDATION_FAILED"),
        "{line}"
    );
    assert!(line.contains("environment-parity"), "{line}");
    let entry = last_audit(&h, "integration.flagger.pre-rollout").await;
    assert_eq!(entry["decision"], "denied");
    // A poller now gets `deny` for this release in production.
    let (status, answer) = h
        .get(
            &format!("/integrations/decision?action=deploy.canary.start&environment=production&service=payments/api&releaseId={CHECKSUM}"),
            &h.tokens.developer,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(answer["reason"], "VALIDATION_FAILED");
}

#[tokio::test]
async fn flagger_rollback_hook_says_yes_only_when_asked_for() {
    let h = harness(true).await;
    let body = flagger_body("default", "Progressing", with_token(&h));
    let (status, line) = flagger(&h, "rollback", &body).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::CONFLICT, "NO_ROLLBACK_REQUESTED"),
        "{line}"
    );
    // A rollback from this release of this service was created.
    let (status, created) = h
        .post(
            "/rollback/create",
            &h.tokens.developer,
            json!({"environment": "staging", "service": "default/podinfo",
                   "fromVersion": CHECKSUM, "toVersion": "4cb74184589", "reason": "errors up"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, line) = flagger(&h, "rollback", &body).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::OK, "ROLLBACK_REQUESTED"),
        "{line}"
    );
    assert!(line.contains(created["id"].as_str().unwrap()), "{line}");
    // Another service's canary is not concerned.
    let other = flagger_body(
        "default",
        "Progressing",
        json!({"token": h.tokens.developer, "service": "other"}),
    );
    let (status, _) = flagger(&h, "rollback", &other).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // With rollback_on_critical_incident, a critical incident in the environment says yes.
    h.open_incident(
        &h.tokens.developer,
        json!({"title": "Staging DB down", "severity": "critical",
               "category": "operational", "environment": "staging"}),
    )
    .await;
    let (status, line) = flagger(&h, "rollback", &other).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::OK, "ROLLBACK_REQUESTED"),
        "{line}"
    );
    assert!(line.contains("Staging DB down"), "{line}");

    // Without the setting, an incident alone is not a request to roll back.
    let h = harness(false).await;
    h.open_incident(
        &h.tokens.developer,
        json!({"title": "Staging DB down", "severity": "critical",
               "category": "operational", "environment": "staging"}),
    )
    .await;
    let (status, _) = flagger(
        &h,
        "rollback",
        &flagger_body("default", "Progressing", with_token(&h)),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let entry = last_audit(&h, "integration.flagger.rollback").await;
    assert_eq!(entry["reason"], "NO_ROLLBACK_REQUESTED");
}

#[tokio::test]
async fn flagger_events_and_post_rollout_are_recorded_and_a_success_enters_the_history() {
    let h = harness(false).await;
    let (status, line) = flagger(
        &h,
        "event",
        &flagger_event_body("default", &h.tokens.developer),
    )
    .await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::OK, "RECORDED"),
        "{line}"
    );
    let entry = last_audit(&h, "integration.flagger.event").await;
    assert_eq!(entry["details"]["hook"], "event");
    assert_eq!(entry["details"]["phase"], "Progressing");
    assert_eq!(
        entry["details"]["message"],
        "Starting canary analysis for podinfo.default"
    );
    assert_eq!(entry["details"]["eventType"], "Normal");

    // A failed rollout is recorded, and not entered in the history.
    let failed = flagger_body("default", "Failed", with_token(&h));
    let (status, _) = flagger(&h, "post-rollout", &failed).await;
    assert_eq!(status, StatusCode::OK);
    let (_, releases) = h
        .get(
            "/releases/staging?service=default/podinfo",
            &h.tokens.developer,
        )
        .await;
    assert_eq!(releases["releases"], json!([]), "{releases}");

    let succeeded = flagger_body("default", "Succeeded", with_token(&h));
    let (status, line) = flagger(&h, "post-rollout", &succeeded).await;
    assert_eq!(
        (status, code(&line)),
        (StatusCode::OK, "RECORDED"),
        "{line}"
    );
    let entry = last_audit(&h, "integration.flagger.event").await;
    assert_eq!(entry["details"]["hook"], "post-rollout");
    assert_eq!(entry["details"]["releaseRecorded"], true);
    let (_, releases) = h
        .get(
            "/releases/staging?service=default/podinfo",
            &h.tokens.developer,
        )
        .await;
    let list = releases["releases"].as_array().expect("releases");
    assert_eq!(list.len(), 1, "{releases}");
    assert_eq!(list[0]["releaseId"], CHECKSUM);
    assert_eq!(list[0]["change"], "flagger_rollout");
    // So a rollback to it is to a known target.
    let (status, rollback) = h
        .post(
            "/rollback/create",
            &h.tokens.developer,
            json!({"environment": "staging", "service": "default/podinfo",
                   "fromVersion": "v9", "toVersion": CHECKSUM, "reason": "back to the good one"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollback}");
    assert_eq!(rollback["knownTarget"], true, "{rollback}");
}

// --- Pollers -------------------------------------------------------------------------------

async fn poll_get(h: &Harness, query: &str) -> (StatusCode, Value) {
    h.get(
        &format!("/integrations/decision?{query}"),
        &h.tokens.developer,
    )
    .await
}

#[tokio::test]
async fn pollers_get_allow_wait_and_deny_by_get_and_post() {
    let h = harness(false).await;
    // allow
    let (status, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=staging&releaseId=v1",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (answer["decision"].as_str(), answer["reason"].as_str()),
        (Some("allow"), Some("ALLOWED")),
        "{answer}"
    );
    let seq = answer["auditSeq"].as_u64().expect("auditSeq");
    let entry = last_audit(&h, "integration.decision").await;
    assert_eq!(entry["seq"].as_u64(), Some(seq));
    assert_eq!(entry["decision"], "allowed");
    assert!(answer.get("retryAfterSeconds").is_none());
    // The same by POST.
    let (status, posted) = h
        .post(
            "/integrations/decision",
            &h.tokens.developer,
            json!({"action": "deploy.canary.start", "environment": "staging", "releaseId": "v1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(posted["decision"], "allow");
    assert!(posted["auditSeq"].as_u64() > Some(seq));

    // wait: production without an override
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=production&releaseId=v1",
    )
    .await;
    assert_eq!(
        (answer["decision"].as_str(), answer["reason"].as_str()),
        (Some("wait"), Some("OVERRIDE_REQUIRED")),
        "{answer}"
    );
    assert_eq!(
        last_audit(&h, "integration.decision").await["decision"],
        "denied"
    );
    // wait with retryAfterSeconds: a freeze that ends in 90 minutes
    let (status, _) = h
        .post(
            "/freezes",
            &h.tokens.security,
            json!({"name": "release-train", "reason": "CHG-8: train departs",
                   "environments": ["staging"], "end": at_minutes(90)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=staging&releaseId=v1",
    )
    .await;
    assert_eq!(
        (answer["decision"].as_str(), answer["reason"].as_str()),
        (Some("wait"), Some("FREEZE")),
        "{answer}"
    );
    assert_eq!(answer["retryAfterSeconds"], 90 * 60);
    // wait: lockdown (no known end)
    h.set_mode("lockdown", Some("INC-9: credential leak")).await;
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=staging&releaseId=v1",
    )
    .await;
    assert_eq!(
        (answer["decision"].as_str(), answer["reason"].as_str()),
        (Some("wait"), Some("LOCKDOWN")),
        "{answer}"
    );
    assert!(answer.get("retryAfterSeconds").is_none());
    h.set_mode("enforce", None).await;
}

#[tokio::test]
async fn pollers_get_deny_for_a_verdict_against_the_release() {
    let h = harness(false).await;
    // A failed validation: production's environment-parity gate, never validated in staging.
    let failed = h.validate("v3", "production").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=production&releaseId=v3",
    )
    .await;
    assert_eq!(
        (answer["decision"].as_str(), answer["reason"].as_str()),
        (Some("deny"), Some("VALIDATION_FAILED")),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("environment-parity"),
        "{answer}"
    );
    // Deny comes before wait: lockdown does not hide the verdict.
    h.set_mode("lockdown", Some("INC-9")).await;
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=production&releaseId=v3",
    )
    .await;
    assert_eq!(answer["decision"], "deny");
    h.set_mode("enforce", None).await;
    // A failed validation of one service is a verdict for that service only.
    let (status, started) = h
        .post(
            "/validations/start",
            &h.tokens.developer,
            json!({"releaseId": "v6", "environment": "production", "service": "shop/other"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let ran = h.run_validation(started["id"].as_str().unwrap()).await;
    assert_eq!(ran["status"], "failed", "{ran}");
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=production&service=shop/other&releaseId=v6",
    )
    .await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    for other in ["", "&service=shop/payments"] {
        let (_, answer) = poll_get(
            &h,
            &format!("action=deploy.canary.start&environment=production&releaseId=v6{other}"),
        )
        .await;
        assert_eq!(
            (answer["decision"].as_str(), answer["reason"].as_str()),
            (Some("wait"), Some("OVERRIDE_REQUIRED")),
            "{other}: {answer}"
        );
    }
    // Another release is not concerned.
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=staging&releaseId=v4",
    )
    .await;
    assert_eq!(answer["decision"], "allow");

    // A rollback away from a release, executed.
    let (status, rollback) = h
        .post(
            "/rollback/create",
            &h.tokens.developer,
            json!({"environment": "staging", "fromVersion": "v5", "toVersion": "v4", "reason": "errors up"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollback}");
    // Created only: not yet a verdict.
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=staging&releaseId=v5",
    )
    .await;
    assert_eq!(answer["decision"], "allow");
    let id = rollback["id"].as_str().unwrap();
    let (status, executed) = h
        .call(
            Method::POST,
            &format!("/rollback/{id}/execute"),
            Some(&h.tokens.oncall),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{executed}");
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=staging&releaseId=v5",
    )
    .await;
    assert_eq!(
        (answer["decision"].as_str(), answer["reason"].as_str()),
        (Some("deny"), Some("RELEASE_ROLLED_BACK")),
        "{answer}"
    );
    assert!(answer["message"].as_str().unwrap().contains(id), "{answer}");
}

#[tokio::test]
async fn pollers_get_deny_after_the_canary_of_the_release_was_rolled_back() {
    let h = harness(false).await;
    let (status, started) = h
        .post(
            "/canary/start",
            &h.tokens.developer,
            json!({"releaseId": "v7", "environment": "staging", "service": "checkout",
                   "deploymentId": "deploy-007"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    // At the first step, unhealthy metrics: the engine's step rolls it back.
    h.clock.advance_minutes(5);
    let (status, pushed) = h
        .post(
            "/canary/staging/metrics?service=checkout",
            &h.tokens.developer,
            json!({"errorRatePercent": 9.0, "latencyP99Ms": 900.0, "baselineLatencyP99Ms": 100.0,
                   "cpuPercent": 95.0, "memoryPercent": 95.0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{pushed}");
    h.step_due_canaries().await;
    let (_, canary) = h
        .get("/canary/staging?service=checkout", &h.tokens.developer)
        .await;
    assert_eq!(canary["phase"], "rolled_back", "{canary}");
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=staging&service=checkout&releaseId=v7",
    )
    .await;
    assert_eq!(
        (answer["decision"].as_str(), answer["reason"].as_str()),
        (Some("deny"), Some("CANARY_ROLLED_BACK")),
        "{answer}"
    );
    // The environment as a whole, or another service, is not concerned.
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=staging&releaseId=v7",
    )
    .await;
    assert_eq!(answer["decision"], "allow", "{answer}");
}

#[tokio::test]
async fn pollers_bad_input_is_a_4xx_naming_the_field() {
    let h = harness(false).await;
    let cases = [
        ("action=deploy.canary.start", "environment"),
        ("environment=staging", "action"),
        ("action=deploy.nope&environment=staging", "action"),
        ("action=deploy.canary.start&environment=qa", "environment"),
        (
            "action=deploy.canary.start&environment=Staging",
            "environment",
        ),
        (
            "action=deploy.canary.start&environment=staging&service=a%20b",
            "service",
        ),
        (
            "action=deploy.canary.start&environment=staging&releaseId=",
            "releaseId",
        ),
        (
            "action=deploy.canary.start&environment=staging&bogus=1",
            "bogus",
        ),
    ];
    for (query, field) in cases {
        let got = poll_get(&h, query).await;
        assert_error(
            &got,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            None,
            Some(field),
        );
    }
    // An environment that is not configured names the setting to add.
    let (_, body) = poll_get(&h, "action=deploy.canary.start&environment=qa").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[[environments]]"),
        "{body}"
    );
    // No token.
    let (status, _) = h
        .call(
            Method::GET,
            "/integrations/decision?action=deploy.canary.start&environment=staging",
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Each refusal of an authenticated caller was audited, and nothing else.
    let refused = h.audit("action=integration.decision").await;
    assert_eq!(refused.len(), cases.len() + 1, "{refused:?}");
    assert!(refused.iter().all(|e| e["decision"] == "denied"
        && ["INVALID_REQUEST", "UNMAPPED_ENVIRONMENT"].contains(&e["reason"].as_str().unwrap())));
    // POST with a bad body.
    let (status, body) = h
        .post_text(
            "/integrations/decision",
            &h.tokens.developer,
            "{\"action\": 1}",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // One too large.
    let big = json!({"action": "deploy.canary.start", "environment": "staging",
                     "service": "x".repeat(100_000)});
    let (status, _) = h
        .post("/integrations/decision", &h.tokens.developer, big)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        h.audit("action=integration.decision").await.len(),
        cases.len() + 3
    );
}

#[tokio::test]
async fn pollers_in_monitor_mode_are_allowed_with_would_block() {
    let h = harness(false).await;
    h.set_mode("monitor", None).await;
    let (_, answer) = poll_get(
        &h,
        "action=deploy.canary.start&environment=production&releaseId=v1",
    )
    .await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(answer["wouldBlock"], true);
    assert_eq!(answer["reason"], "OVERRIDE_REQUIRED");
}

#[tokio::test]
async fn the_openapi_document_describes_the_integration_routes() {
    let h = harness(false).await;
    let reply = h
        .raw(Method::GET, &format!("{API}/openapi.json"), None, None)
        .await;
    let doc = reply.json();
    let paths = &doc["paths"];
    for path in [
        "/api/deploy-safety/integrations/decision",
        "/api/deploy-safety/integrations/flagger/{hook}",
        "/api/deploy-safety/integrations/github/deployment-protection-rule",
        "/api/deploy-safety/integrations/github/pending",
    ] {
        assert!(paths.get(path).is_some(), "{path} missing");
    }
    let flagger = &paths["/api/deploy-safety/integrations/flagger/{hook}"]["post"];
    assert_eq!(
        flagger["parameters"][0]["schema"]["$ref"],
        "#/components/schemas/FlaggerHook"
    );
    let hooks = &doc["components"]["schemas"]["FlaggerHook"]["enum"];
    assert_eq!(hooks.as_array().map(Vec::len), Some(8), "{hooks}");
    let flagger = &flagger["responses"];
    assert!(
        flagger["403"]["content"]["text/plain"].is_object(),
        "{flagger}"
    );
}
