//! Steps of the runbook's flows that several end-to-end tests take.

use std::time::SystemTime;

use serde_json::Value;

use super::{RunningServer, code, stderr, stdout};

pub const HEALTHY: [&str; 10] = [
    "--error-rate",
    "0.1",
    "--latency-p99",
    "100",
    "--baseline-latency-p99",
    "95",
    "--cpu",
    "30",
    "--memory",
    "40",
];

/// The healthy metrics with an error rate of 5 %: unhealthy.
pub const UNHEALTHY: [&str; 10] = [
    "--error-rate",
    "5",
    "--latency-p99",
    "100",
    "--baseline-latency-p99",
    "95",
    "--cpu",
    "30",
    "--memory",
    "40",
];

/// Waits until the service is healthy (the built-in database probe has been checked), which
/// release validation needs.
pub fn wait_healthy(server: &RunningServer, token: &str) {
    server.wait_for_json(token, &["health"], "healthy", |h| {
        h["overallHealth"] == "healthy"
    });
}

/// `validate start` and `validate run` of `release` in staging, asserting it passed.
pub fn validate_in_staging(server: &RunningServer, token: &str, release: &str) {
    let (status, started) = server.cli_json(
        token,
        &[
            "validate",
            "start",
            "--release",
            release,
            "--environment",
            "staging",
        ],
    );
    assert_eq!(status, 0, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let (status, ran) = server.cli_json(token, &["validate", "run", &id]);
    assert_eq!(status, 0, "{ran}");
    assert_eq!(ran["status"], "passed", "{ran}");
}

/// Milliseconds from now until `at` (RFC 3339; negative when past).
pub fn millis_until(at: &str) -> i64 {
    let at = deploy_safety_core::Timestamp::parse_rfc3339(at).unwrap();
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    at.unix_millis() - i64::try_from(now).unwrap()
}

/// `canary metrics ENV` with the runbook's healthy metrics (or `args` instead).
pub fn push_metrics(server: &RunningServer, token: &str, environment: &str, args: &[&str]) {
    let mut all = vec!["canary", "metrics", environment];
    all.extend_from_slice(args);
    let out = server.cli(token, &all);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
}

pub fn canary_status(server: &RunningServer, token: &str, environment: &str) -> Value {
    let (status, view) = server.cli_json(token, &["canary", "status", environment]);
    assert_eq!(status, 0, "{view}");
    view
}

/// Starts a staging canary of `release` with 1000 ms steps of 50 %.
pub fn start_staging_canary(server: &RunningServer, token: &str, release: &str) -> Value {
    let (status, started) = server.cli_json(
        token,
        &[
            "canary",
            "start",
            "--release",
            release,
            "--environment",
            "staging",
            "--deployment",
            "stg-deploy-001",
            "--increment-interval",
            "1000",
            "--increment-percentage",
            "50",
        ],
    );
    assert_eq!(status, 0, "{started}");
    assert_eq!(started["currentPercentage"], 10);
    started
}

/// A monitoring system: runs the CLI with `args` against `server` every 200 ms, until dropped
/// or until a run fails saying `done_when` (e.g. the canary or soak it pushes to has ended).
pub struct Monitoring {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitoring {
    pub fn start(
        server: &RunningServer,
        token: &str,
        args: &[&str],
        done_when: &'static str,
    ) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let (url, token, flag) = (server.url.clone(), token.to_owned(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let out = std::process::Command::new(super::BINARY)
                    .args(&args)
                    .env("DEPLOY_SAFETY_URL", &url)
                    .env("DEPLOY_SAFETY_TOKEN", &token)
                    .output()
                    .unwrap();
                if code(&out) != 0 && stderr(&out).contains(done_when) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        });
        Monitoring {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Monitoring {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
