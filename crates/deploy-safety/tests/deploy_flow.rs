//! End to end: the runbook's Normal Deploy Flow, steps 1–4, with incidents and probes, through
//! the real binary and CLI.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Installation, StaticHttp, code, stderr, stdout};

const NO: i32 = 3;

fn gate<'a>(validation: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    validation["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no gate {name} in {validation}"))
}

#[test]
fn normal_deploy_flow_steps_1_to_4() {
    let ci_gate = StaticHttp::start(200);
    let install = Installation::new();
    let server = install.start_with_config(&format!(
        r#"
[[validation_gates]]
name = "integration-tests"
url = "http://{}/releases/{{releaseId}}/status"
timeout_ms = 2000
"#,
        ci_gate.address
    ));
    let admin = server.bootstrap_token.clone().unwrap();
    let ci = install.create_token("ci", "developer");

    // Step 4 first: health is healthy once the built-in database probe has been checked.
    let health = server.wait_for_json(&ci, &["health"], "healthy", |h| {
        h["overallHealth"] == "healthy"
    });
    assert!(
        health["probes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "database" && p["status"] == "healthy")
    );
    assert_eq!(code(&server.cli(&ci, &["health"])), 0);

    // Production before staging: environment-parity fails, and says why.
    let (status, production) = server.cli_json(
        &ci,
        &[
            "validate",
            "start",
            "--release",
            "v1.2.3",
            "--environment",
            "production",
        ],
    );
    assert_eq!(status, 0, "{production}");
    assert_eq!(production["status"], "pending");
    let production_id = production["id"].as_str().unwrap().to_owned();
    let out = server.cli(&ci, &["validate", "run", &production_id]);
    assert_eq!(code(&out), NO, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("FAILED"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("no passed validation in staging"),
        "{}",
        stdout(&out)
    );

    // Steps 1–3 in staging: start, run, check that every gate passed.
    let (_, staging) = server.cli_json(
        &ci,
        &[
            "validate",
            "start",
            "--release",
            "v1.2.3",
            "--environment",
            "staging",
        ],
    );
    let staging_id = staging["id"].as_str().unwrap().to_owned();
    let (status, ran) = server.cli_json(&ci, &["validate", "run", &staging_id]);
    assert_eq!(status, 0, "{ran}");
    assert_eq!(ran["status"], "passed");
    for name in [
        "security-mode",
        "threat-level",
        "health",
        "incidents",
        "environment-parity",
        "integration-tests",
    ] {
        assert_eq!(gate(&ran, name)["status"], "passed", "{name}: {ran}");
    }
    assert!(
        ci_gate
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.starts_with("GET /releases/v1.2.3/status")),
        "the HTTP gate was asked about this release"
    );
    let (_, shown) = server.cli_json(&ci, &["validate", "show", &staging_id]);
    assert_eq!(shown["status"], "passed");
    assert_eq!(shown["runs"].as_array().unwrap().len(), 1);

    // Now production passes parity; the failed run stays on record as run 1.
    let (status, again) = server.cli_json(&ci, &["validate", "run", &production_id]);
    assert_eq!(status, 0, "{again}");
    assert_eq!(again["status"], "passed");
    let runs = again["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[1]["status"], "passed");
    let out = server.cli(&ci, &["validate", "list", "--release", "v1.2.3"]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains(&production_id) && stdout(&out).contains(&staging_id));

    // An open critical incident fails the incidents gate and stops canaries in staging.
    let (status, incident) = server.cli_json(
        &ci,
        &[
            "incident",
            "open",
            "--title",
            "Checkout error rate at 40%",
            "--severity",
            "critical",
            "--category",
            "operational",
            "--environment",
            "staging",
        ],
    );
    assert_eq!(status, 0, "{incident}");
    let incident_id = incident["id"].as_str().unwrap().to_owned();
    let check = [
        "gate",
        "check",
        "--action",
        "deploy.canary.start",
        "--environment",
        "staging",
    ];
    let out = server.cli(&ci, &check);
    assert_eq!(code(&out), NO);
    assert!(
        stdout(&out).contains("CRITICAL_INCIDENT"),
        "{}",
        stdout(&out)
    );
    let out = server.cli(&ci, &["validate", "run", &staging_id]);
    assert_eq!(code(&out), NO);
    let out = server.cli(
        &ci,
        &[
            "incident",
            "resolve",
            &incident_id,
            "--reason",
            "rolled back the config",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&server.cli(&ci, &check)), 0);

    // A failing probe: health degrades, and the probe's history shows why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let out = server.cli(
        &admin,
        &[
            "probe",
            "add",
            "payments",
            "--kind",
            "tcp",
            "--address",
            &closed_address,
            "--failure-threshold",
            "1",
            "--interval-ms",
            "1000",
            "--timeout-ms",
            "200",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // New probes are `unknown` until checked (degraded already); wait for the first check.
    let probe = server.wait_for_json(&ci, &["probe", "show", "payments"], "a failed check", |p| {
        p["status"] == "failing"
    });
    let (_, health) = server.cli_json(&ci, &["health"]);
    assert_eq!(
        health["overallHealth"], "degraded",
        "a non-critical probe fails: {health}"
    );
    assert_eq!(code(&server.cli(&ci, &["health"])), NO);
    assert!(
        probe["history"][0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );
    let out = server.cli(&ci, &["probe", "rm", "payments"]);
    assert_eq!(code(&out), REFUSED_EXIT, "developers may not remove probes");
    let out = server.cli(&admin, &["probe", "rm", "payments"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    server.wait_for_json(&ci, &["health"], "healthy again", |h| {
        h["overallHealth"] == "healthy"
    });

    // Everything above is in the audit log, and the chain holds.
    let (_, runs) = server.cli_json(&ci, &["audit", "list", "--action", "validation.run"]);
    assert_eq!(runs["entries"].as_array().unwrap().len(), 4);
    assert_eq!(code(&server.cli(&ci, &["audit", "verify"])), 0);
    server.stop();
}

const REFUSED_EXIT: i32 = 4;
