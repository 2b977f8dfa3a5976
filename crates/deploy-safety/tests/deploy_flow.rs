//! End to end: the runbook's Normal Deploy Flow, steps 1–4, with incidents and probes, through
//! the real binary and CLI.

#![allow(clippy::unwrap_used)]

mod common;

use common::flows::Monitoring;
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

/// The soak's monitoring: pushes `metrics` to soak `id` every 200 ms until dropped.
fn monitoring(
    server: &common::RunningServer,
    token: &str,
    id: &str,
    metrics: [&str; 6],
) -> Monitoring {
    let mut args = vec!["soak", "metrics", id];
    args.extend(metrics);
    Monitoring::start(server, token, &args, "SOAK_NOT_RUNNING")
}

const GOOD: [&str; 6] = [
    "--error-rate",
    "0.02",
    "--latency-p99",
    "104",
    "--baseline-latency-p99",
    "100",
];
const SLOW: [&str; 6] = [
    "--error-rate",
    "0.02",
    "--latency-p99",
    "130",
    "--baseline-latency-p99",
    "100",
];

/// `soak start` of `release` in staging: three seconds, evaluated every second.
fn start_soak(server: &common::RunningServer, token: &str, release: &str) -> String {
    let (status, soak) = server.cli_json(
        token,
        &[
            "soak",
            "start",
            "--release",
            release,
            "--environment",
            "staging",
            "--duration",
            "3s",
            "--interval",
            "1s",
        ],
    );
    assert_eq!(status, 0, "{soak}");
    assert_eq!(soak["status"], "running");
    soak["id"].as_str().unwrap().to_owned()
}

/// The runbook's Normal Deploy Flow, all seven steps, as a CI job runs them with
/// `[soak] required_before_production = true`: validate in staging (1–4), deploy (5), soak (6:
/// `soak watch` exits 0 when it passed), and only then the production canary (7).
#[test]
fn normal_deploy_flow_steps_1_to_7_with_a_soak_before_production() {
    let install = Installation::new();
    let server = install.start_with_config("[soak]\nrequired_before_production = true\n");
    let admin = server.bootstrap_token.clone().unwrap();
    let ci = install.create_token("ci", "developer");
    let lead = install.create_token("eng-lead", "eng-lead");
    common::flows::wait_healthy(&server, &ci);

    // Steps 1–4: the validation, with the soak gate not applicable in staging.
    let (_, validation) = server.cli_json(
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
    let (status, ran) = server.cli_json(
        &ci,
        &["validate", "run", validation["id"].as_str().unwrap()],
    );
    assert_eq!(status, 0, "{ran}");
    assert_eq!(gate(&ran, "soak")["message"], "not applicable in staging");
    assert_eq!(code(&server.cli(&ci, &["health"])), 0);

    // Step 7 too early: the production canary needs the soak, and says how to get one.
    let out = server.cli(
        &lead,
        &[
            "override",
            "create",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production",
            "--reason",
            "CHG-7 release v1.2.3",
            "--ttl-minutes",
            "60",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let production = [
        "canary",
        "start",
        "--release",
        "v1.2.3",
        "--environment",
        "production",
        "--deployment",
        "prod-deploy-001",
    ];
    let out = server.cli(&ci, &production);
    assert_eq!(code(&out), NO, "the answer is no: {}", stdout(&out));
    assert!(stderr(&out).contains("SOAK_REQUIRED"), "{}", stderr(&out));
    assert!(stderr(&out).contains("hint: Soak it in staging: deploy-safety soak start --release v1.2.3 --environment staging"), "{}", stderr(&out));

    // Step 6, failing: latency above the baseline + 10 %: `soak watch` exits 3, at once.
    let failing = start_soak(&server, &ci, "v1.2.3");
    let pushing = monitoring(&server, &ci, &failing, SLOW);
    let out = server.cli(&ci, &["soak", "watch", &failing]);
    drop(pushing);
    assert_eq!(code(&out), NO, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("FAILED"), "{}", stdout(&out));
    assert_eq!(
        code(&server.cli(&ci, &production)),
        NO,
        "a failed soak is no soak"
    );

    // Step 6: the soak passes; `soak watch` showed each evaluation and exits 0.
    let soak = start_soak(&server, &ci, "v1.2.3");
    let pushing = monitoring(&server, &ci, &soak, GOOD);
    let out = server.cli(&ci, &["soak", "watch", &soak]);
    drop(pushing);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let shown = stdout(&out);
    assert!(
        shown.contains("PASSED: all 3 evaluations passed"),
        "{shown}"
    );
    assert!(
        shown.lines().filter(|l| l.contains(" pass ")).count() >= 1,
        "{shown}"
    );
    let (_, listed) = server.cli_json(
        &ci,
        &["soak", "list", "--release", "v1.2.3", "--status", "passed"],
    );
    assert_eq!(listed["soaks"].as_array().unwrap().len(), 1, "{listed}");
    let (_, shown) = server.cli_json(&ci, &["soak", "status", &soak]);
    assert_eq!(shown["evaluations"].as_array().unwrap().len(), 3);

    // Step 7: the production canary starts.
    let (status, canary) = server.cli_json(&ci, &production);
    assert_eq!(status, 0, "{canary}");
    assert_eq!(canary["environment"], "production");

    // Every step is in the audit log, and the chain holds.
    for action in ["soak.start", "soak.evaluate", "soak.finish"] {
        let (_, entries) = server.cli_json(&ci, &["audit", "list", "--action", action]);
        assert!(
            !entries["entries"].as_array().unwrap().is_empty(),
            "{action}"
        );
    }
    assert_eq!(code(&server.cli(&admin, &["audit", "verify"])), 0);
    server.stop();
}

/// `soak watch` follows a soak through a restart of the server: it reconnects and reads the
/// evaluations from the soak itself, showing each one, and exits as the soak ended (0 passed,
/// 3 otherwise; a restart longer than an interval leaves that interval without data).
#[test]
fn soak_watch_follows_a_soak_through_a_restart() {
    let install = Installation::new();
    let server = install.start();
    let ci = install.create_token("ci", "developer");
    let address = server.url.trim_start_matches("http://").to_owned();
    let (status, soak) = server.cli_json(
        &ci,
        &[
            "soak",
            "start",
            "--release",
            "v1.2.3",
            "--environment",
            "staging",
            "--duration",
            "8s",
            "--interval",
            "1s",
        ],
    );
    assert_eq!(status, 0, "{soak}");
    let id = soak["id"].as_str().unwrap().to_owned();
    let pushing = monitoring(&server, &ci, &id, GOOD);
    let watch = server.spawn_cli(&ci, &["soak", "watch", &id]);
    server.wait_for_json(&ci, &["soak", "status", &id], "two evaluations", |s| {
        s["evaluations"].as_array().is_some_and(|e| e.len() >= 2)
    });
    server.stop();
    let server = install.start_on(&address, "");
    let out = watch.wait_with_output().unwrap();
    drop(pushing);
    let shown = stdout(&out);
    let (_, done) = server.cli_json(&ci, &["soak", "status", &id]);
    let expected = if done["status"] == "passed" { 0 } else { NO };
    assert_eq!(code(&out), expected, "{done}: {shown}{}", stderr(&out));
    assert!(
        shown.contains(&done["status"].as_str().unwrap().to_uppercase()),
        "{shown}"
    );
    let evaluations = done["evaluations"].as_array().unwrap();
    assert_eq!(evaluations.len(), 8, "{done}");
    for evaluation in evaluations {
        assert!(
            shown.contains(&format!("#{:<3}", evaluation["number"])),
            "evaluation {} not shown: {shown}",
            evaluation["number"]
        );
    }
    server.stop();
}
