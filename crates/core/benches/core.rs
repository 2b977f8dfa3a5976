//! The pure core's hot paths: the gate decision as the number of active overrides grows, a
//! canary evaluation, and the audit hash.
//!
//! `cargo bench -p deploy-safety-core --bench core` measures; `cargo test --benches` (CI) runs
//! each once as a test. Method and latest figures: BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use deploy_safety_core::{
    Action, AuditDecision, AuditDraft, AuditEntry, CanaryMetrics, Environment,
    EvaluationThresholds, GENESIS_HASH, GateInputs, GateRequest, GateState, MetricsSource,
    Override, OverrideIndex, Role, Timestamp, decide, evaluate,
};

const NOW: Timestamp = Timestamp::from_unix_millis(1_767_225_600_000);
const MINUTE: i64 = 60_000;
const ACTIONS: [Action; 4] = [
    Action::CanaryStart,
    Action::CanaryPromote,
    Action::Rollback,
    Action::LoadShed,
];
const ENVIRONMENTS: [Environment; 2] = [Environment::STAGING, Environment::PRODUCTION];

fn active_override(
    id: usize,
    action: Action,
    environment: Environment,
    release: Option<String>,
) -> Override {
    Override {
        service: None,
        id: format!("ovr_{id:08}"),
        action,
        environment,
        release_id: release,
        reason: "CHG-1234 approved hotfix window".to_owned(),
        approver: "eng-lead".to_owned(),
        approver_role: Role::EngLead,
        created_at: Timestamp::from_unix_millis(NOW.unix_millis() - 10 * MINUTE),
        expires_at: Timestamp::from_unix_millis(NOW.unix_millis() + 50 * MINUTE),
        revoked_at: None,
        revoked_by: None,
        use_count: 0,
        last_used_at: None,
    }
}

/// `count` active overrides of which exactly one covers a production canary start of v1.2.3:
/// the others approve other actions and environments, or other releases in the same scope.
fn overrides(count: usize) -> OverrideIndex {
    let mut all = Vec::with_capacity(count);
    if count > 0 {
        all.push(active_override(
            0,
            Action::CanaryStart,
            Environment::PRODUCTION,
            Some("v1.2.3".to_owned()),
        ));
    }
    for id in 1..count {
        let action = ACTIONS[id % ACTIONS.len()];
        let environment = ENVIRONMENTS[(id / ACTIONS.len()) % ENVIRONMENTS.len()];
        all.push(active_override(
            id,
            action,
            environment,
            Some(format!("v9.{id}.0")),
        ));
    }
    OverrideIndex::new(all)
}

fn gate_decision(c: &mut Criterion) {
    let state = GateState::default();
    let request = GateRequest {
        service: None,
        action: Action::CanaryStart,
        environment: known(Environment::PRODUCTION),
        release_id: Some("v1.2.3"),
        start_override_id: None,
    };
    let mut group = c.benchmark_group("gate_decision");
    for count in [0, 1, 100, 10_000] {
        let index = overrides(count);
        let inputs = GateInputs {
            freezes: &deploy_safety_core::FreezeIndex::default(),
            state: &state,
            overrides: &index,
            open_incidents: &[],
            now: NOW,
        };
        let expected_allowed = count > 0;
        assert_eq!(decide(&request, &inputs).allowed, expected_allowed);
        group.bench_with_input(
            BenchmarkId::new("active_overrides", count),
            &inputs,
            |b, inputs| {
                b.iter(|| decide(black_box(&request), black_box(inputs)));
            },
        );
    }
    group.finish();
}

fn canary_evaluation(c: &mut Criterion) {
    let thresholds = EvaluationThresholds::default();
    let metrics = CanaryMetrics {
        error_rate_percent: Some(0.1),
        latency_p99_ms: Some(100.0),
        baseline_latency_p99_ms: Some(95.0),
        cpu_percent: Some(30.0),
        memory_percent: Some(40.0),
        received_at: Timestamp::from_unix_millis(NOW.unix_millis() - 1_000),
        source: MetricsSource::Push,
    };
    let fresh_since = Timestamp::from_unix_millis(NOW.unix_millis() - 5 * MINUTE);
    c.bench_function("canary_evaluation", |b| {
        b.iter(|| {
            evaluate(
                black_box(Some(&metrics)),
                black_box(&thresholds),
                fresh_since,
                NOW,
            )
        });
    });
}

fn audit_hash(c: &mut Criterion) {
    // A gate check's entry, as the app writes it.
    let draft = AuditDraft {
        principal: "ci-pipeline".to_owned(),
        role: Some(Role::Developer),
        action: "security-gate.check".to_owned(),
        environment: Some(Environment::PRODUCTION),
        decision: AuditDecision::Allowed,
        reason: "OVERRIDE".to_owned(),
        details: serde_json::json!({
            "action": "deploy.canary.start",
            "environment": "production",
            "releaseId": "v1.2.3",
            "allowed": true,
            "reason": "OVERRIDE",
            "message": "Allowed by override ovr_0000 (approved by eng-lead, expires 2026-01-01T00:50:00.000Z)",
            "overrideId": "ovr_00000000",
            "mode": "enforce",
            "wouldBlock": false,
            "hints": [],
        }),
    };
    let entry = AuditEntry::seal(draft.clone(), 1, NOW, GENESIS_HASH);
    let mut group = c.benchmark_group("audit");
    group.bench_function("hash", |b| b.iter(|| black_box(&entry).compute_hash()));
    group.bench_function("seal", |b| {
        b.iter(|| AuditEntry::seal(black_box(draft.clone()), 2, NOW, &entry.hash));
    });
    group.finish();
}

criterion_group!(benches, gate_decision, canary_evaluation, audit_hash);
criterion_main!(benches);

/// The built-in environment called `name`, with its tier.
#[allow(dead_code)]
fn known(name: deploy_safety_core::Environment) -> deploy_safety_core::KnownEnvironment {
    deploy_safety_core::Environments::built_in()
        .resolve(name)
        .expect("a built-in environment")
}
