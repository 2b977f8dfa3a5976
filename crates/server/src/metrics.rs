//! The service's own metrics, in Prometheus format at `GET /metrics`.

use std::sync::OnceLock;

use deploy_safety_core::Decision;
use deploy_safety_store::{Store, StoreStats};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "deploy_safety_http_requests_total";
pub const HTTP_DURATION: &str = "deploy_safety_http_request_duration_seconds";
pub const GATE_DECISIONS: &str = "deploy_safety_gate_decisions_total";
pub const ENGINE_ANSWERS: &str = "deploy_safety_engine_answers_total";
pub const STORE_WRITES: &str = "deploy_safety_store_writes_total";
pub const STORE_COMMITS: &str = "deploy_safety_store_commits_total";
pub const POOL_OPEN: &str = "deploy_safety_store_read_connections_open";
pub const POOL_IDLE: &str = "deploy_safety_store_read_connections_idle";
pub const POOL_MAX: &str = "deploy_safety_store_read_connections_max";
pub const LEADER: &str = "deploy_safety_leader";

/// Buckets for request latency, in seconds: fine below 5 ms, where the gate should answer.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder (the `metrics` facade has one global recorder), installed once.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Counts an answer to a deploy engine (`decision`, `flagger`) by what it said.
pub fn record_engine_answer(integration: &'static str, answer: &str) {
    metrics::counter!(ENGINE_ANSWERS, "integration" => integration, "answer" => answer.to_owned())
        .increment(1);
}

/// Counts a gate decision by outcome and reason.
pub fn record_decision(decision: &Decision) {
    let outcome = match (decision.allowed, decision.would_block) {
        (true, true) => "would_block",
        (true, false) => "allowed",
        (false, _) => "denied",
    };
    metrics::counter!(
        GATE_DECISIONS,
        "action" => decision.action.as_str(),
        "environment" => decision.environment.to_string(),
        "outcome" => outcome,
        "reason" => decision.reason.as_str(),
    )
    .increment(1);
}

/// Renders every metric, with the store's counters, its read pool and the lease read now.
pub fn render(handle: &PrometheusHandle, store: &Store) -> String {
    let stats: StoreStats = store.stats();
    metrics::counter!(STORE_WRITES).absolute(stats.writes);
    metrics::counter!(STORE_COMMITS).absolute(stats.commits);
    let pool = store.pool_stats();
    metrics::gauge!(POOL_OPEN).set(pool.open as f64);
    metrics::gauge!(POOL_IDLE).set(pool.idle as f64);
    metrics::gauge!(POOL_MAX).set(pool.max as f64);
    metrics::gauge!(LEADER).set(if store.is_leader() { 1.0 } else { 0.0 });
    handle.run_upkeep();
    handle.render()
}
