//! End to end: the runbook's "Canary Deployment Flow" and "Emergency Rollback" through the real
//! binary and CLI, with the engine's real timing (1000 ms intervals), `canary watch` as a child
//! process, and load shedding.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::flows::{
    HEALTHY, UNHEALTHY, canary_status, millis_until, push_metrics, start_staging_canary,
    validate_in_staging, wait_healthy,
};
use common::{Installation, RunningServer, code, stderr, stdout};
use serde_json::Value;

const BLOCKED: i32 = 3;
const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// A child's stdout, line by line, read on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the child to exit (pushing `metrics` to staging every `every`, as a monitoring
/// system would) and
/// returns its exit code with everything it printed. Kills it at the deadline.
fn wait_for_exit(
    server: &RunningServer,
    token: &str,
    child: &mut Child,
    lines: &mpsc::Receiver<String>,
    (every, metrics): (Duration, &[&str]),
) -> (i32, String) {
    let deadline = Instant::now() + DEADLINE;
    let mut printed = Vec::new();
    let mut last_push: Option<Instant> = None;
    let status = loop {
        while let Ok(line) = lines.try_recv() {
            printed.push(line);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let canary = server.cli(token, &["canary", "status", "staging", "--json"]);
            panic!(
                "`canary watch` did not exit within {DEADLINE:?}; it printed:\n{}\nthe canary is now:\n{}",
                printed.join("\n"),
                stdout(&canary)
            );
        }
        if last_push.is_none_or(|at| at.elapsed() >= every) {
            // The canary may finish between a look and a push: a 404 then is fine.
            let mut args = vec!["canary", "metrics", "staging"];
            args.extend_from_slice(metrics);
            let _ = server.cli(token, &args);
            last_push = Some(Instant::now());
        }
        std::thread::sleep(POLL);
    };
    // The reader thread ends with the child's stdout.
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        printed.push(line);
    }
    let mut err = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut err);
    }
    printed.push(err);
    (status.code().unwrap_or(-1), printed.join("\n"))
}

/// Waits until the watch has printed the canary (it has subscribed to events by then).
fn wait_for_first_line(lines: &mpsc::Receiver<String>) -> String {
    lines
        .recv_timeout(DEADLINE)
        .expect("`canary watch` printed the canary")
}

#[test]
fn runbook_production_canary_through_the_cli() {
    let install = Installation::new();
    let server = install.start();
    let ci = install.create_token("ci", "developer");
    let eng_lead = install.create_token("eng-lead", "eng-lead");
    wait_healthy(&server, &ci);

    let start = [
        "canary",
        "start",
        "--release",
        "v1.2.3",
        "--environment",
        "production",
        "--deployment",
        "prod-deploy-001",
        "--increment-interval",
        "1000",
        "--increment-percentage",
        "50",
    ];
    // Without an override: blocked by the gate (exit 3), saying why.
    let out = server.cli(&ci, &start);
    assert_eq!(code(&out), BLOCKED, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("OVERRIDE_REQUIRED"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("Production actions require explicit override"),
        "{}",
        stderr(&out)
    );

    // Staging first: the release passes validation in staging.
    validate_in_staging(&server, &ci, "v1.2.3");

    // 1. The eng-lead creates the override.
    let (status, created) = server.cli_json(
        &eng_lead,
        &[
            "override",
            "create",
            "--action",
            "deploy.canary.start",
            "--environment",
            "production",
            "--reason",
            "Approved by CTO for release v1.2.3",
            "--approver",
            "eng-lead",
            "--ttl-minutes",
            "60",
        ],
    );
    assert_eq!(status, 0, "{created}");
    let override_id = created["id"].as_str().unwrap().to_owned();

    // 2. Start the canary within the TTL window.
    let (status, started) = server.cli_json(&ci, &start);
    assert_eq!(status, 0, "{started}");
    assert_eq!(started["environment"], "production");
    assert_eq!(started["releaseId"], "v1.2.3");
    assert_eq!(started["deploymentId"], "prod-deploy-001");
    assert_eq!(started["phase"], "progressing");
    assert_eq!(started["currentPercentage"], 10);
    assert_eq!(started["config"]["incrementInterval"], 1000);
    assert_eq!(started["config"]["incrementPercentage"], 50);
    assert_eq!(started["startOverrideId"], override_id.as_str());

    // 3. Monitor: push healthy metrics once per interval, shortly before the step is due, until
    // a step raised the weight. Pushes then stop, so the canary holds at 60 % (stale metrics
    // are unknown) instead of completing on its own before the manual promotion.
    let deadline = Instant::now() + DEADLINE;
    let mut pushed_for: Option<String> = None;
    let stepped = loop {
        let view = canary_status(&server, &ci, "production");
        if view["currentPercentage"].as_u64().unwrap() >= 60 {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "the production canary did not step up within {DEADLINE:?}: {view}"
        );
        let next = view["nextStepAt"].as_str().unwrap().to_owned();
        let due_in = millis_until(&next);
        if due_in <= 400 && pushed_for.as_deref() != Some(next.as_str()) {
            push_metrics(&server, &ci, "production", &HEALTHY);
            pushed_for = Some(next);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(stepped["currentPercentage"], 60, "{stepped}");
    assert_eq!(stepped["phase"], "progressing", "{stepped}");
    assert_eq!(stepped["status"], "healthy", "{stepped}");
    let step = stepped["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["action"] == "stepped_up")
        .unwrap_or_else(|| panic!("no stepped_up step in {stepped}"))
        .clone();
    assert_eq!(step["fromPercentage"], 10);
    assert_eq!(step["toPercentage"], 60);
    assert_eq!(step["evaluation"]["status"], "healthy");
    // The same for people.
    let out = server.cli(&ci, &["canary", "status", "production"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("release v1.2.3"), "{text}");
    assert!(text.contains("stepped_up"), "{text}");
    assert!(text.contains("10% -> 60%"), "{text}");
    assert!(text.contains("healthy"), "{text}");

    // 4. Manual promotion: covered by the start override.
    let (status, promoted) = server.cli_json(&ci, &["canary", "promote", "production"]);
    assert_eq!(status, 0, "{promoted}");
    assert_eq!(promoted["currentPercentage"], 100);
    assert_eq!(promoted["phase"], "promoted");
    let view = canary_status(&server, &ci, "production");
    assert_eq!(view["phase"], "promoted");

    // The release history shows it.
    let out = server.cli(&ci, &["releases", "production"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Running in production: v1.2.3"), "{text}");
    assert!(text.contains("canary_promoted"), "{text}");
    let (_, history) = server.cli_json(&ci, &["releases", "production"]);
    assert_eq!(history["current"], "v1.2.3");

    // The override was used for the start and the promotion (and the step).
    let (_, shown) = server.cli_json(&ci, &["override", "show", &override_id]);
    assert!(shown["useCount"].as_u64().unwrap() >= 2, "{shown}");
    let (_, listed) = server.cli_json(&ci, &["canary", "list", "--environment", "production"]);
    assert_eq!(listed["canaries"].as_array().unwrap().len(), 1, "{listed}");
    server.stop();
}

#[test]
fn runbook_production_rollback_through_the_cli() {
    let install = Installation::new();
    let server = install.start();
    let admin = server.bootstrap_token.clone().unwrap();
    let ci = install.create_token("ci", "developer");
    let oncall = install.create_token("oncall-lead", "oncall-lead");

    let create = |reason: &str| -> Value {
        let (status, created) = server.cli_json(
            &ci,
            &[
                "rollback",
                "create",
                "--environment",
                "production",
                "--from",
                "v1.2.3",
                "--to",
                "v1.2.2",
                "--reason",
                reason,
            ],
        );
        assert_eq!(status, 0, "{created}");
        assert_eq!(created["status"], "pending");
        created
    };

    // Without the override: blocked (exit 3).
    let first = create("Rollback for INC-123");
    assert_eq!(first["knownTarget"], false);
    let id = first["id"].as_str().unwrap().to_owned();
    let out = server.cli(&ci, &["rollback", "execute", &id]);
    assert_eq!(code(&out), BLOCKED, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("OVERRIDE_REQUIRED"),
        "{}",
        stderr(&out)
    );
    let (_, shown) = server.cli_json(&ci, &["rollback", "show", &id]);
    assert_eq!(shown["status"], "pending");

    // 1. The on-call lead creates the rollback override.
    let (status, created) = server.cli_json(
        &oncall,
        &[
            "override",
            "create",
            "--action",
            "deploy.rollback",
            "--environment",
            "production",
            "--reason",
            "Emergency: P1 incident INC-123",
            "--approver",
            "oncall-lead",
            "--ttl-minutes",
            "30",
        ],
    );
    assert_eq!(status, 0, "{created}");
    let override_id = created["id"].as_str().unwrap().to_owned();

    // 2. Create and execute.
    let second = create("Rollback for INC-123");
    let id = second["id"].as_str().unwrap().to_owned();
    let out = server.cli(&ci, &["rollback", "execute", &id]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("executed"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("v1.2.3 -> v1.2.2"),
        "{}",
        stdout(&out)
    );
    let (_, shown) = server.cli_json(&ci, &["rollback", "show", &id]);
    assert_eq!(shown["status"], "executed");
    assert_eq!(shown["overrideId"], override_id.as_str());
    let (_, history) = server.cli_json(&ci, &["releases", "production"]);
    assert_eq!(history["current"], "v1.2.2", "{history}");
    assert_eq!(history["releases"][0]["change"], "rollback");

    // During lockdown: blocked, even with the override.
    let third = create("Rollback for INC-124");
    let id = third["id"].as_str().unwrap().to_owned();
    let out = server.cli(
        &admin,
        &[
            "mode",
            "set",
            "lockdown",
            "--reason",
            "Security incident investigation",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = server.cli(&oncall, &["rollback", "execute", &id]);
    assert_eq!(code(&out), BLOCKED, "{}{}", stdout(&out), stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("LOCKDOWN"), "{said}");
    let (status, body) = server.cli_json(&oncall, &["rollback", "execute", &id]);
    assert_eq!(status, BLOCKED);
    assert_eq!(body["error"]["reason"], "LOCKDOWN", "{body}");
    let (_, shown) = server.cli_json(&ci, &["rollback", "show", &id]);
    assert_eq!(shown["status"], "pending");

    let out = server.cli(&ci, &["rollback", "list", "--environment", "production"]);
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out).matches("rbk_").count(), 3, "{}", stdout(&out));
    server.stop();
}

#[test]
fn canary_watch_follows_a_staging_canary_until_it_completes() {
    let install = Installation::new();
    let server = install.start();
    let ci = install.create_token("ci", "developer");

    let started = start_staging_canary(&server, &ci, "v2.0.0");
    let mut child = server.spawn_cli(&ci, &["canary", "watch", "staging"]);
    let lines = lines_of(&mut child);
    let first = wait_for_first_line(&lines);
    assert!(
        first.contains(started["id"].as_str().unwrap()),
        "the watch starts with the canary: {first}"
    );

    // Healthy metrics, pushed more often than the interval: 10 → 60 → 100, completed.
    let (status, printed) = wait_for_exit(
        &server,
        &ci,
        &mut child,
        &lines,
        (Duration::from_millis(300), &HEALTHY),
    );
    assert_eq!(status, 0, "{printed}");
    assert!(printed.contains("canary.weight_changed"), "{printed}");
    let weights: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains("canary.weight_changed"))
        .collect();
    assert!(
        weights.iter().any(|l| l.contains(" 60%")),
        "a weight change to 60 %: {printed}"
    );
    assert!(
        weights.iter().any(|l| l.contains("100%")),
        "a weight change to 100 %: {printed}"
    );
    assert!(
        weights.iter().any(|l| l.contains("completed healthy")),
        "the last change completes it: {printed}"
    );

    let view = canary_status(&server, &ci, "staging");
    assert_eq!(view["phase"], "completed");
    assert_eq!(view["currentPercentage"], 100);
    let (_, history) = server.cli_json(&ci, &["releases", "staging"]);
    assert_eq!(history["current"], "v2.0.0");
    assert_eq!(history["releases"][0]["change"], "canary_completed");
    server.stop();
}

#[test]
fn canary_watch_exits_3_when_the_canary_is_rolled_back() {
    let install = Installation::new();
    let server = install.start();
    let ci = install.create_token("ci", "developer");

    let started = start_staging_canary(&server, &ci, "v2.0.1");
    let mut child = server.spawn_cli(&ci, &["canary", "watch", "staging"]);
    let lines = lines_of(&mut child);
    wait_for_first_line(&lines);

    // An error rate of 5 % is unhealthy: the next evaluation rolls the canary back. (Pushed
    // every 300 ms: a single push early in the interval is covered in-process, see
    // http_canary.rs `metrics_of_the_interval_ending_at_the_scheduled_step_are_fresh_...`.)
    let (status, printed) = wait_for_exit(
        &server,
        &ci,
        &mut child,
        &lines,
        (Duration::from_millis(300), &UNHEALTHY),
    );
    assert_eq!(status, BLOCKED, "{printed}");
    // The change of weight to 0 is printed.
    assert!(
        printed
            .lines()
            .any(|l| l.contains("  0%") && l.contains("rolled_back unhealthy")),
        "{printed}"
    );

    let view = canary_status(&server, &ci, "staging");
    assert_eq!(view["id"], started["id"]);
    assert_eq!(view["phase"], "rolled_back");
    assert_eq!(view["currentPercentage"], 0);
    assert_eq!(view["status"], "unhealthy");
    let (_, list) = server.cli_json(&ci, &["rollback", "list", "--environment", "staging"]);
    let automatic = &list["rollbacks"][0];
    assert_eq!(automatic["automatic"], true, "{list}");
    assert_eq!(automatic["canaryId"], started["id"]);
    assert_eq!(automatic["fromVersion"], "v2.0.1");
    server.stop();
}

#[test]
fn load_shedding_through_the_cli() {
    let install = Installation::new();
    let server = install.start();
    let ci = install.create_token("ci", "developer");

    let out = server.cli(&ci, &["loadshed", "show", "staging"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("off"), "{}", stdout(&out));
    assert_eq!(stdout(&out).trim(), "Load shedding in staging: off");

    // Production needs an override: blocked, exit 3.
    let out = server.cli(
        &ci,
        &[
            "loadshed",
            "set",
            "production",
            "--percentage",
            "20",
            "--reason",
            "x",
        ],
    );
    assert_eq!(code(&out), BLOCKED, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("OVERRIDE_REQUIRED"),
        "{}",
        stderr(&out)
    );
    let (_, shown) = server.cli_json(&ci, &["loadshed", "show", "production"]);
    assert_eq!(shown["enabled"], false);

    // Staging: allowed to anyone.
    let out = server.cli(
        &ci,
        &[
            "loadshed",
            "set",
            "staging",
            "--percentage",
            "20",
            "--reason",
            "Shedding during INC-123",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = server.cli(&ci, &["loadshed", "show", "staging"]);
    assert!(
        stdout(&out).contains("Load shedding in staging: 20%"),
        "{}",
        stdout(&out)
    );
    let out = server.cli(
        &ci,
        &[
            "loadshed",
            "set",
            "staging",
            "--off",
            "--reason",
            "Recovered",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (_, shown) = server.cli_json(&ci, &["loadshed", "show", "staging"]);
    assert_eq!(shown["enabled"], false);
    assert_eq!(shown["percentage"], 0);
    server.stop();
}
