//! End to end through the real binary and CLI (SPEC §19): the two-person rule. With an
//! `[[approvals]]` rule for production canary starts, an eng-lead cannot create the override
//! alone; a developer requests it, an eng-lead and a security-team member approve it, and the
//! second approval makes the override the canary start then uses. A deny ends a request.

#![allow(clippy::unwrap_used)]

mod common;

use common::flows::{millis_until, validate_in_staging, wait_healthy};
use common::{Installation, RunningServer, code, stderr, stdout};
use serde_json::Value;

/// The answer is no (the gate blocked it).
const BLOCKED: i32 = 3;
/// Not permitted (403).
const REFUSED: i32 = 4;
/// An error, a conflict (409) included, as every command answers one.
const CONFLICT: i32 = 1;
/// A usage error (clap).
const USAGE: i32 = 2;

const SETTINGS: &str = r#"
[[approvals]]
environments = ["tier:production"]
actions = ["deploy.canary.start"]
required = 2
approver_roles = ["eng-lead", "security-team"]
"#;

const START_PRODUCTION: [&str; 8] = [
    "canary",
    "start",
    "--release",
    "v1.2.3",
    "--environment",
    "production",
    "--deployment",
    "prod-deploy-001",
];

/// `override request` for the production canary start of `release`, as `token`, asserting it
/// is pending; returns the request.
fn request(server: &RunningServer, token: &str, release: &str) -> Value {
    let (status, made) = server.cli_json(
        token,
        &[
            "override",
            "request",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production",
            "--release",
            release,
            "--reason",
            "CHG-1234 release to production, approved at the change board",
            "--ttl",
            "30",
        ],
    );
    assert_eq!(status, 0, "{made}");
    assert_eq!(made["status"], "pending", "{made}");
    made
}

fn principals(votes: &Value) -> Vec<&str> {
    votes
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["principal"].as_str().unwrap())
        .collect()
}

fn ids(list: &Value) -> Vec<&str> {
    list["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

#[test]
fn two_people_approve_a_production_canary_override_that_the_canary_then_uses() {
    let install = Installation::new();
    let server = install.start_with_config(SETTINGS);
    let dev = install.create_token("dev", "developer");
    let lead = install.create_token("lead", "eng-lead");
    let sec = install.create_token("sec", "security-team");
    wait_healthy(&server, &dev);
    // The runbook's staging first: a production canary needs the release validated there.
    validate_in_staging(&server, &dev, "v1.2.3");

    // The eng-lead alone may not create the override: the rule says two approvals, and the
    // refusal says how to ask for them.
    let out = server.cli(
        &lead,
        &[
            "override",
            "create",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production",
            "--release",
            "v1.2.3",
            "--reason",
            "CHG-1234 release v1.2.3",
            "--ttl-minutes",
            "30",
        ],
    );
    assert_eq!(code(&out), REFUSED, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("APPROVALS_REQUIRED"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("deploy-safety override request"),
        "{}",
        stderr(&out)
    );
    let (_, overrides) = server.cli_json(&dev, &["override", "list", "--all"]);
    assert_eq!(
        overrides["overrides"],
        Value::Array(Vec::new()),
        "{overrides}"
    );

    // The developer asks; it waits a day (the default) for two approvals.
    let made = request(&server, &dev, "v1.2.3");
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("oreq_"), "{made}");
    assert_eq!(made["required"], 2, "{made}");
    assert_eq!(made["requestedBy"], "dev", "{made}");
    assert_eq!(made["releaseId"], "v1.2.3", "{made}");
    assert_eq!(made["ttlMinutes"], 30, "{made}");
    assert_eq!(made["approvals"], Value::Array(Vec::new()), "{made}");
    assert!(made["overrideId"].is_null(), "{made}");
    let mut roles: Vec<&str> = made["approverRoles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    roles.sort_unstable();
    assert_eq!(roles, ["eng-lead", "security-team"], "{made}");
    let waits = millis_until(made["expiresAt"].as_str().unwrap());
    assert!(
        (23 * 3_600_000..=24 * 3_600_000).contains(&waits),
        "pending_ttl_minutes defaults to a day: {made}"
    );
    let out = server.cli(&dev, &["override", "requests", "--status", "pending"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&id), "{}", stdout(&out));
    assert!(stdout(&out).contains("0/2"), "{}", stdout(&out));

    // Nobody approves their own request.
    let out = server.cli(&dev, &["override", "approve", &id]);
    assert_eq!(code(&out), REFUSED, "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("SELF_APPROVAL"), "{}", stderr(&out));

    // The eng-lead's approval counts: one of two.
    let out = server.cli(
        &lead,
        &["override", "approve", &id, "--comment", "reviewed CHG-1234"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("counted: 1 of 2 approvals, waiting for 1 more approval from "),
        "{text}"
    );
    assert!(text.contains("(not dev, lead)"), "{text}");
    assert!(
        text.contains("approved by lead (eng-lead) at ") && text.contains(": reviewed CHG-1234"),
        "{text}"
    );
    assert!(text.contains("left to vote"), "{text}");

    // Each person votes once: a second vote is a conflict, as every 409 is.
    let out = server.cli(&lead, &["override", "approve", &id]);
    assert_eq!(code(&out), CONFLICT, "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("ALREADY_VOTED"), "{}", stderr(&out));
    let (status, body) = server.cli_json(&lead, &["override", "approve", &id]);
    assert_eq!(status, CONFLICT, "{body}");
    assert_eq!(body["error"]["reason"], "ALREADY_VOTED", "{body}");

    // One approval is not the override: the production canary is still blocked.
    let out = server.cli(&dev, &START_PRODUCTION);
    assert_eq!(code(&out), BLOCKED, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("OVERRIDE_REQUIRED"),
        "{}",
        stderr(&out)
    );

    // The security-team member's approval is the second: the override exists now.
    let out = server.cli(&sec, &["override", "approve", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("approved: override ovr_"), "{text}");
    let (status, approved) = server.cli_json(&dev, &["override", "requests", &id]);
    assert_eq!(status, 0, "{approved}");
    assert_eq!(approved["status"], "approved", "{approved}");
    assert_eq!(principals(&approved["approvals"]), ["lead", "sec"]);
    assert_eq!(approved["approvals"][0]["comment"], "reviewed CHG-1234");
    let override_id = approved["overrideId"].as_str().unwrap().to_owned();
    assert!(override_id.starts_with("ovr_"), "{approved}");
    assert!(
        text.contains(&format!(
            "approved: override {override_id} created, expires "
        )),
        "{text}"
    );

    // The override names both approvers and the request; it lasts the requested 30 minutes
    // from the last approval, for this release only.
    let (status, made) = server.cli_json(&dev, &["override", "show", &override_id]);
    assert_eq!(status, 0, "{made}");
    assert_eq!(
        made["approvers"],
        serde_json::json!(["lead", "sec"]),
        "{made}"
    );
    assert_eq!(made["requestId"], id.as_str(), "{made}");
    assert_eq!(made["action"], "deploy.canary.start", "{made}");
    assert_eq!(made["environment"], "production", "{made}");
    assert_eq!(made["releaseId"], "v1.2.3", "{made}");
    assert_eq!(made["status"], "active", "{made}");
    let lasts = millis_until(made["expiresAt"].as_str().unwrap());
    assert!((29 * 60_000..=30 * 60_000).contains(&lasts), "{made}");
    let out = server.cli(&dev, &["override", "show", &override_id]);
    assert!(
        stdout(&out).contains(&format!("Request:      {id}")),
        "{}",
        stdout(&out)
    );

    // The developer starts the production canary, allowed under that override.
    let (status, canary) = server.cli_json(&dev, &START_PRODUCTION);
    assert_eq!(status, 0, "{canary}");
    assert_eq!(canary["environment"], "production", "{canary}");
    assert_eq!(canary["startOverrideId"], override_id.as_str(), "{canary}");
    let (_, audit) = server.cli_json(
        &dev,
        &[
            "audit",
            "list",
            "--action",
            "deploy.canary.start",
            "--decision",
            "allowed",
        ],
    );
    let entry = &audit["entries"][0];
    assert_eq!(entry["reason"], "OVERRIDE", "{audit}");
    assert_eq!(
        entry["details"]["overrideId"],
        override_id.as_str(),
        "{audit}"
    );

    // Listed as approved, waiting no more.
    let (status, listed) = server.cli_json(&dev, &["override", "requests", "--status", "approved"]);
    assert_eq!(status, 0, "{listed}");
    assert_eq!(ids(&listed), [id.as_str()], "{listed}");
    assert_eq!(listed["requests"][0]["overrideId"], override_id.as_str());
    let (_, pending) = server.cli_json(&dev, &["override", "requests", "--status", "pending"]);
    assert_eq!(ids(&pending), Vec::<&str>::new(), "{pending}");
    // For people: who voted, with their comments, and the override.
    let out = server.cli(&dev, &["override", "requests", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(": APPROVED"), "{text}");
    assert!(text.contains("Approvals:     2/2"), "{text}");
    assert!(text.contains("approved by sec (security-team)"), "{text}");
    assert!(text.contains(&override_id), "{text}");

    // Every step is audited, and the chain holds.
    for action in [
        "override-request.create",
        "override-request.approve",
        "override.create",
    ] {
        let (_, entries) = server.cli_json(&dev, &["audit", "list", "--action", action]);
        assert!(
            !entries["entries"].as_array().unwrap().is_empty(),
            "{action}"
        );
    }
    assert_eq!(code(&server.cli(&sec, &["audit", "verify"])), 0);
    server.stop();
}

#[test]
fn one_deny_ends_a_request_and_no_override_is_made() {
    let install = Installation::new();
    let server = install.start_with_config(SETTINGS);
    let dev = install.create_token("dev", "developer");
    let lead = install.create_token("lead", "eng-lead");
    let other_lead = install.create_token("lead-2", "eng-lead");
    let sec = install.create_token("sec", "security-team");

    let made = request(&server, &dev, "v1.2.3");
    let id = made["id"].as_str().unwrap().to_owned();
    let out = server.cli(&lead, &["override", "approve", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("counted: 1 of 2"),
        "{}",
        stdout(&out)
    );

    // A denial says why: without --comment it is a usage error, with an empty one the server
    // refuses it (400, naming the field).
    let out = server.cli(&sec, &["override", "deny", &id]);
    assert_eq!(code(&out), USAGE, "{}", stderr(&out));
    assert!(stderr(&out).contains("--comment"), "{}", stderr(&out));
    let (status, body) = server.cli_json(&sec, &["override", "deny", &id, "--comment", ""]);
    assert_eq!(status, 1, "{body}");
    assert_eq!(body["error"]["field"], "comment", "{body}");

    // The security-team member denies: the request is over.
    let out = server.cli(
        &sec,
        &[
            "override",
            "deny",
            &id,
            "--comment",
            "CHG-1234 was not approved by the change board",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("denied: {id} by sec: no override will be made")),
        "{text}"
    );
    assert!(
        text.contains("Denied by:     sec (security-team) at ")
            && text.contains(": CHG-1234 was not approved by the change board"),
        "{text}"
    );

    // It takes no more votes, from anyone.
    let out = server.cli(&other_lead, &["override", "approve", &id]);
    assert_eq!(code(&out), CONFLICT, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("REQUEST_NOT_PENDING"),
        "{}",
        stderr(&out)
    );

    // Denied, with the denial; no override exists and production stays blocked.
    let (status, shown) = server.cli_json(&dev, &["override", "requests", &id]);
    assert_eq!(status, 0, "{shown}");
    assert_eq!(shown["status"], "denied", "{shown}");
    assert!(shown["overrideId"].is_null(), "{shown}");
    assert_eq!(shown["denial"]["principal"], "sec", "{shown}");
    assert_eq!(
        shown["denial"]["comment"],
        "CHG-1234 was not approved by the change board"
    );
    assert_eq!(principals(&shown["approvals"]), ["lead"]);
    let (_, denied) = server.cli_json(&dev, &["override", "requests", "--status", "denied"]);
    assert_eq!(ids(&denied), [id.as_str()], "{denied}");
    let (_, approved) = server.cli_json(&dev, &["override", "requests", "--status", "approved"]);
    assert_eq!(ids(&approved), Vec::<&str>::new(), "{approved}");
    let (_, overrides) = server.cli_json(&dev, &["override", "list", "--all"]);
    assert_eq!(
        overrides["overrides"],
        Value::Array(Vec::new()),
        "{overrides}"
    );
    let out = server.cli(
        &dev,
        &[
            "gate",
            "check",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production",
            "--release",
            "v1.2.3",
        ],
    );
    assert_eq!(code(&out), BLOCKED, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("OVERRIDE_REQUIRED"),
        "{}",
        stdout(&out)
    );
    let out = server.cli(&dev, &["override", "requests"]);
    assert!(stdout(&out).contains("denied by sec"), "{}", stdout(&out));
    server.stop();
}
