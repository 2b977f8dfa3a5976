//! End to end through the real binary and CLI (SPEC §15, §16): environments from the settings
//! file, two services' canaries side by side in one environment, and a recurring freeze that
//! pauses one service's canary while the other keeps progressing; ended by hand, both finish.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::flows::{HEALTHY, wait_healthy};
use common::{Installation, RunningServer, code, stderr, stdout};
use serde_json::Value;

const BLOCKED: i32 = 3;
const DEADLINE: Duration = Duration::from_secs(30);

const SETTINGS: &str = r#"
[[environments]]
name = "qa"
tier = "staging"

[[environments]]
name = "production-eu"
tier = "production"
promotes_from = ["qa"]
"#;

fn status(server: &RunningServer, token: &str, service: &str) -> Value {
    let (code, view) = server.cli_json(token, &["canary", "status", "qa", "--service", service]);
    assert_eq!(code, 0, "{view}");
    view
}

/// Pushes healthy metrics for both services, as a monitoring system would, until `done`
/// accepts the two canaries (or fails at the deadline).
fn push_until(
    server: &RunningServer,
    token: &str,
    what: &str,
    done: impl Fn(&Value, &Value) -> bool,
) -> (Value, Value) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        for service in ["payments/api", "checkout"] {
            let mut args = vec!["canary", "metrics", "qa", "--service", service];
            args.extend_from_slice(&HEALTHY);
            // A canary may finish between a look and a push: a 404 then is fine.
            let _ = server.cli(token, &args);
        }
        let (payments, checkout) = (
            status(server, token, "payments/api"),
            status(server, token, "checkout"),
        );
        if done(&payments, &checkout) {
            return (payments, checkout);
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\npayments/api: {payments}\ncheckout: {checkout}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_recurring_freeze_pauses_one_services_canary_while_the_other_progresses() {
    let install = Installation::new();
    let server = install.start_with_config(SETTINGS);
    let ci = install.create_token("ci", "developer");
    let lead = install.create_token("lead", "eng-lead");
    wait_healthy(&server, &ci);

    // The environments are the settings file's, with their tiers.
    let (status_code, listed) = server.cli_json(&ci, &["environments"]);
    assert_eq!(status_code, 0, "{listed}");
    let names: Vec<&str> = listed["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["qa", "production-eu"]);
    assert_eq!(listed["environments"][1]["tier"], "production");
    assert_eq!(listed["environments"][1]["promotesFrom"][0], "qa");

    // The built-in `staging` is gone: refused, the known ones listed.
    let unknown = server.cli(
        &ci,
        &[
            "gate",
            "check",
            "--action",
            "deploy.canary.start",
            "--environment",
            "staging",
        ],
    );
    assert_ne!(code(&unknown), 0);
    assert!(
        stderr(&unknown).contains("expected one of: qa, production-eu"),
        "{}",
        stderr(&unknown)
    );
    // Production rules apply by tier: production-eu needs an override.
    let (blocked, decision) = server.cli_json(
        &ci,
        &[
            "gate",
            "check",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production-eu",
            "--service",
            "payments/api",
        ],
    );
    assert_eq!(blocked, BLOCKED, "{decision}");
    assert_eq!(decision["reason"], "OVERRIDE_REQUIRED");
    assert_eq!(decision["service"], "payments/api");

    // Every minute, a one-minute window: a freeze in force until ended, for payments/api's
    // promotion only (so its canary may start, and rollbacks stay possible).
    let (created, freeze) = server.cli_json(
        &lead,
        &[
            "freeze",
            "create",
            "--name",
            "payments-stop-the-line",
            "--reason",
            "INC-42: payments outage review",
            "--environment",
            "qa",
            "--service",
            "payments/api",
            "--action",
            "deploy.canary.promote",
            "--schedule",
            "* * * * *",
            "--duration",
            "1m",
            "--time-zone",
            "Europe/Berlin",
        ],
    );
    assert_eq!(created, 0, "{freeze}");
    assert_eq!(freeze["active"], true, "{freeze}");
    let freeze_id = freeze["id"].as_str().unwrap().to_owned();
    // Only security-team and eng-lead manage freezes.
    let refused = server.cli(&ci, &["freeze", "end", &freeze_id]);
    assert_eq!(
        code(&refused),
        4,
        "{}{}",
        stdout(&refused),
        stderr(&refused)
    );

    for service in ["payments/api", "checkout"] {
        let (started, canary) = server.cli_json(
            &ci,
            &[
                "canary",
                "start",
                "--release",
                "v2.0.0",
                "--environment",
                "qa",
                "--service",
                service,
                "--deployment",
                "qa-001",
                "--initial-percentage",
                "10",
                "--increment-percentage",
                "45",
                "--increment-interval",
                "1000",
            ],
        );
        assert_eq!(started, 0, "{canary}");
        assert_eq!(canary["service"], service);
    }
    // One active canary per (environment, service).
    let second = server.cli(
        &ci,
        &[
            "canary",
            "start",
            "--release",
            "v2.0.1",
            "--environment",
            "qa",
            "--service",
            "checkout",
            "--deployment",
            "qa-002",
        ],
    );
    assert_eq!(code(&second), 1, "{}", stderr(&second));
    assert!(
        stderr(&second).contains("CANARY_ALREADY_ACTIVE"),
        "{}",
        stderr(&second)
    );

    let (payments, checkout) =
        push_until(&server, &ci, "checkout done, payments paused", |p, c| {
            c["phase"] == "completed" && p["phase"] == "paused"
        });
    assert_eq!(payments["currentPercentage"], 10, "{payments}");
    let why = payments["pausedReason"].as_str().unwrap();
    assert!(why.starts_with("FREEZE"), "{why}");
    assert!(why.contains("payments-stop-the-line"), "{why}");
    assert_eq!(checkout["currentPercentage"], 100);

    let (listed_code, listed) = server.cli_json(&ci, &["freeze", "list"]);
    assert_eq!(listed_code, 0);
    assert_eq!(listed["freezes"][0]["id"], freeze_id.as_str());

    // Ended by hand: payments resumes and finishes too.
    let (ended, view) = server.cli_json(
        &lead,
        &["freeze", "end", &freeze_id, "--reason", "review done"],
    );
    assert_eq!(ended, 0, "{view}");
    assert_eq!(view["over"], true);
    let (payments, _) = push_until(&server, &ci, "payments done", |p, _| {
        p["phase"] == "completed"
    });
    assert_eq!(payments["currentPercentage"], 100);

    // The release history is per service.
    let (history_code, history) =
        server.cli_json(&ci, &["releases", "qa", "--service", "checkout"]);
    assert_eq!(history_code, 0, "{history}");
    assert_eq!(history["current"], "v2.0.0");
    assert_eq!(history["service"], "checkout");
    let (_, whole) = server.cli_json(&ci, &["releases", "qa"]);
    assert_eq!(whole["current"], Value::Null, "{whole}");

    // Both windows' edges are in the audit log: created active, then ended by hand.
    let (_, audit) = server.cli_json(&ci, &["audit", "list", "--action", "freeze.ended"]);
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["details"]["freezeId"], freeze_id.as_str());
    let (verified, report) = server.cli_json(&ci, &["audit", "verify"]);
    assert_eq!(verified, 0, "{report}");
}
