//! Canary metrics from a real Prometheus (Debian package `prometheus`) scraping a local target
//! whose values the test controls.
//!
//! Without a `prometheus` binary the test says it was skipped, unless
//! `DEPLOY_SAFETY_REQUIRE_PROMETHEUS=1` (set by `.ci/run`, which installs it), where a missing
//! binary fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploy_safety_api_types::{CanaryConfigRequest, StartCanaryRequest};
use deploy_safety_app::{
    App, AppSettings, Caller, Clock, ManualClock, PrometheusQueries, PrometheusSettings,
};
use deploy_safety_core::{Environment, Role, StepAction, Timestamp, Verdict};
use deploy_safety_store::Store;

/// The local target's `/metrics` body, changed by the test.
#[derive(Debug, Clone)]
struct Target {
    address: String,
    body: Arc<Mutex<String>>,
}

fn exposition(error_rate: f64, latency: f64, baseline: f64, cpu: f64, memory: f64) -> String {
    format!(
        "# TYPE canary_error_rate_percent gauge\n\
         canary_error_rate_percent{{deployment=\"d-1\"}} {error_rate}\n\
         # TYPE canary_latency_p99_ms gauge\n\
         canary_latency_p99_ms{{deployment=\"d-1\"}} {latency}\n\
         # TYPE baseline_latency_p99_ms gauge\n\
         baseline_latency_p99_ms {baseline}\n\
         # TYPE canary_cpu_percent gauge\n\
         canary_cpu_percent{{deployment=\"d-1\"}} {cpu}\n\
         # TYPE canary_memory_percent gauge\n\
         canary_memory_percent{{deployment=\"d-1\"}} {memory}\n"
    )
}

impl Target {
    fn start(body: String) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let body = Arc::new(Mutex::new(body));
        let shared = Arc::clone(&body);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let text = shared.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        Target { address, body }
    }

    fn set(&self, body: String) {
        *self.body.lock().unwrap() = body;
    }
}

/// A Prometheus server scraping `target` every second, on a free port.
#[derive(Debug)]
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> Option<PathBuf> {
    let required = std::env::var("DEPLOY_SAFETY_REQUIRE_PROMETHEUS").is_ok_and(|v| v == "1");
    let found = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    match found {
        Some(path) => Some(path),
        None if required => panic!(
            "DEPLOY_SAFETY_REQUIRE_PROMETHEUS=1 but no prometheus binary: install the Debian package `prometheus`"
        ),
        None => {
            eprintln!(
                "SKIPPED: no prometheus binary (install the Debian package `prometheus`; .ci/run does)"
            );
            None
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    fn start(binary: &Path, target: &Target) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: canary\n    static_configs:\n      - targets: ['{}']\n",
                target.address
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

/// Asks Prometheus `query` until `accept` likes the number it answers, or fails at the deadline.
async fn wait_for_value(url: &str, query: &str, accept: impl Fn(f64) -> bool) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = client
            .get(format!("{url}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await;
        if let Ok(answer) = answer
            && let Ok(json) = answer.json::<serde_json::Value>().await
            && let Some(value) = json["data"]["result"][0]["value"][1].as_str()
            && value.parse::<f64>().is_ok_and(&accept)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered {query} as expected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn queries() -> PrometheusQueries {
    PrometheusQueries {
        error_rate_percent: Some("canary_error_rate_percent{deployment=\"{deploymentId}\"}".into()),
        latency_p99_ms: Some("canary_latency_p99_ms{deployment=\"{deploymentId}\"}".into()),
        baseline_latency_p99_ms: Some("baseline_latency_p99_ms".into()),
        cpu_percent: Some("canary_cpu_percent{deployment=\"{deploymentId}\"}".into()),
        // Nothing exports this series: an empty answer is unknown, never healthy.
        memory_percent: Some("no_such_series{deployment=\"{deploymentId}\"}".into()),
    }
}

async fn app_with(prometheus_url: &str, dir: &Path) -> (App, Arc<ManualClock>, Caller) {
    let store = Store::open(&format!("sqlite://{}", dir.join("ds.db").display())).unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(
        1_800_000_000_000,
    )));
    let settings = AppSettings {
        prometheus: Some(PrometheusSettings {
            url: prometheus_url.to_owned(),
            timeout: Duration::from_secs(2),
            queries: vec![(Environment::STAGING, queries())],
        }),
        ..AppSettings::default()
    };
    let app = App::new(store, clock.clone(), settings);
    let token = app
        .create_token("ci", Role::Developer, "test")
        .await
        .unwrap();
    let caller = app.authenticate(&token.token).await.unwrap();
    (app, clock, caller)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_metrics_come_from_a_real_prometheus() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let target = Target::start(exposition(0.1, 100.0, 95.0, 30.0, 40.0));
    let prometheus = Prometheus::start(&binary, &target);
    wait_for_value(&prometheus.url, "canary_error_rate_percent", |v| v == 0.1).await;

    let dir = tempfile::tempdir().unwrap();
    let (app, clock, caller) = app_with(&prometheus.url, dir.path()).await;
    let started = app
        .start_canary(
            &caller,
            StartCanaryRequest {
                service: None,
                release_id: "v2.0.0".into(),
                environment: Environment::STAGING,
                deployment_id: "d-1".into(),
                config: Some(CanaryConfigRequest {
                    increment_interval: Some(60_000),
                    failure_threshold: Some(1),
                    ..CanaryConfigRequest::default()
                }),
            },
        )
        .await
        .unwrap();

    // The queries, with the canary's deployment filled in, answer what the target exports.
    let pulled = app
        .pull_metrics(Environment::STAGING, "v2.0.0", "d-1", clock.now())
        .await
        .unwrap();
    assert_eq!(pulled.error_rate_percent, Some(0.1));
    assert_eq!(pulled.latency_p99_ms, Some(100.0));
    assert_eq!(pulled.baseline_latency_p99_ms, Some(95.0));
    assert_eq!(pulled.cpu_percent, Some(30.0));
    assert_eq!(pulled.memory_percent, None, "an empty answer is no value");

    // One step: memory is unknown, so the canary holds (unknown is never a pass).
    let scheduled = started.canary.next_step_at.unwrap();
    clock.set(scheduled);
    let canary = app
        .canary_status(
            Environment::STAGING,
            deploy_safety_api_types::ServiceQuery::default(),
        )
        .await
        .unwrap()
        .canary;
    let action = app.step_canary(&canary, scheduled).await.unwrap();
    assert_eq!(action, Some(StepAction::Held));
    let canary = app
        .canary_status(
            Environment::STAGING,
            deploy_safety_api_types::ServiceQuery::default(),
        )
        .await
        .unwrap()
        .canary;
    assert_eq!(canary.status, Verdict::Unknown);
    let evaluation = canary.steps.last().unwrap().evaluation.clone().unwrap();
    let verdict_of = |name: &str| {
        evaluation
            .metrics
            .iter()
            .find(|m| m.metric == name)
            .unwrap()
            .verdict
    };
    assert_eq!(verdict_of("errorRatePercent"), Verdict::Healthy);
    assert_eq!(verdict_of("latencyP99Ms"), Verdict::Healthy);
    assert_eq!(verdict_of("memoryPercent"), Verdict::Unknown);
    assert_eq!(
        canary.latest_metrics.unwrap().source,
        deploy_safety_core::MetricsSource::Prometheus
    );

    // The target's error rate jumps; once Prometheus has scraped it, the next evaluation rolls
    // the canary back.
    target.set(exposition(5.0, 100.0, 95.0, 30.0, 40.0));
    wait_for_value(&prometheus.url, "canary_error_rate_percent", |v| v == 5.0).await;
    let scheduled = canary.next_step_at.unwrap();
    clock.set(scheduled);
    let canary = app
        .canary_status(
            Environment::STAGING,
            deploy_safety_api_types::ServiceQuery::default(),
        )
        .await
        .unwrap()
        .canary;
    let action = app.step_canary(&canary, scheduled).await.unwrap();
    assert_eq!(action, Some(StepAction::RolledBack));
    let canary = app
        .canary_status(
            Environment::STAGING,
            deploy_safety_api_types::ServiceQuery::default(),
        )
        .await
        .unwrap()
        .canary;
    assert_eq!(canary.current_percentage, 0);
    assert_eq!(canary.status, Verdict::Unhealthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_that_does_not_answer_gives_unknown_never_healthy() {
    // Nothing listens on this port: every query fails quickly.
    let url = format!("http://127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let (app, clock, _) = app_with(&url, dir.path()).await;
    let pulled = app
        .pull_metrics(Environment::STAGING, "v1", "d-1", clock.now())
        .await
        .unwrap();
    assert_eq!(pulled.error_rate_percent, None);
    assert_eq!(pulled.cpu_percent, None);
    let evaluation = deploy_safety_core::evaluate(
        Some(&pulled),
        &deploy_safety_core::EvaluationThresholds::default(),
        clock.now(),
        clock.now(),
    );
    assert_eq!(evaluation.status, Verdict::Unknown);
    assert!(
        app.pull_metrics(Environment::PRODUCTION, "v1", "d-1", clock.now())
            .await
            .is_none(),
        "no queries are configured for production"
    );
}

/// SPEC §23: a soak pulls its metrics with the environment's canary queries, `{deploymentId}`
/// being the soak's deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_metrics_come_from_a_real_prometheus() {
    use deploy_safety_api_types::{SoakConfigRequest, StartSoakRequest};
    use deploy_safety_core::{MetricsSource, SoakStatus, SoakVerdict};

    let Some(binary) = prometheus_binary() else {
        return;
    };
    // The runbook's numbers: 0.05 % errors and p99 104 ms against 100 ms pass.
    let target = Target::start(exposition(0.05, 104.0, 100.0, 30.0, 40.0));
    let prometheus = Prometheus::start(&binary, &target);
    wait_for_value(&prometheus.url, "canary_error_rate_percent", |v| v == 0.05).await;

    let dir = tempfile::tempdir().unwrap();
    let (app, clock, caller) = app_with(&prometheus.url, dir.path()).await;
    let soak = app
        .start_soak(
            &caller,
            StartSoakRequest {
                release_id: "v2.0.0".into(),
                environment: Environment::STAGING,
                service: None,
                deployment_id: Some("d-1".into()),
                config: Some(SoakConfigRequest {
                    duration_ms: Some(180_000),
                    interval_ms: Some(60_000),
                    ..SoakConfigRequest::default()
                }),
            },
        )
        .await
        .unwrap();

    let evaluate = |soak_id: String| {
        let (app, clock) = (app.clone(), clock.clone());
        async move {
            let soak = app.get_soak(&soak_id).await.unwrap();
            let scheduled = soak.next_evaluation_at.unwrap();
            clock.set(scheduled);
            app.evaluate_soak(&soak, scheduled).await.unwrap()
        }
    };
    let first = evaluate(soak.id.clone()).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].verdict, SoakVerdict::Pass, "{:?}", first[0]);
    assert_eq!(first[0].error_rate_percent, Some(0.05));
    assert_eq!(first[0].latency_p99_ms, Some(104.0));
    assert_eq!(first[0].baseline_latency_p99_ms, Some(100.0));
    assert_eq!(first[0].source, Some(MetricsSource::Prometheus));

    // p99 reaches the baseline + 10 % exactly: the next evaluation fails the soak at once.
    target.set(exposition(0.05, 110.0, 100.0, 30.0, 40.0));
    wait_for_value(&prometheus.url, "canary_latency_p99_ms", |v| v == 110.0).await;
    let second = evaluate(soak.id.clone()).await;
    assert_eq!(second[0].verdict, SoakVerdict::Fail, "{:?}", second[0]);
    let failed = app.get_soak(&soak.id).await.unwrap();
    assert_eq!(failed.status, SoakStatus::Failed);
    assert_eq!(failed.evaluations.len(), 2);
}
