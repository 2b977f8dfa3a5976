//! The pure core's hot paths: the gate decision as the number of active overrides grows, with
//! 1,000 freezes beside 10,000 overrides, and with every part-two input at once (SPEC §22), a
//! canary evaluation, and the audit hash.
//!
//! `cargo bench -p deploy-safety-core --bench core` measures; `cargo test --benches` (CI) runs
//! each once as a test. Method and latest figures: BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use deploy_safety_core::{
    Action, ApprovalPolicy, ApprovalRule, AuditDecision, AuditDraft, AuditEntry, CanaryMetrics,
    DEFAULT_ACTIONS, Environment, EnvironmentSelector, EvaluationThresholds, Freeze, FreezeIndex,
    GENESIS_HASH, GateInputs, GateRequest, GateState, MetricsSource, OpenIncident, Override,
    OverrideIndex, ReasonCode, Role, Schedule, Severity, Timestamp, decide, evaluate,
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
        approvers: vec!["eng-lead".to_owned()],
        approver_role: Role::EngLead,
        request_id: None,
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

/// The service the freeze benchmarks' request names.
const SERVICE: &str = "payments/api";

/// A one-off freeze of the default actions in every environment and service, in force from ten
/// minutes ago for an hour.
fn freeze(id: usize, hard: bool) -> Freeze {
    Freeze {
        id: format!("frz_{id:08}"),
        name: format!("freeze {id}"),
        reason: "year-end change freeze".to_owned(),
        environments: Vec::new(),
        services: Vec::new(),
        actions: DEFAULT_ACTIONS.to_vec(),
        start: NOW.plus_minutes(-10),
        end: Some(NOW.plus_minutes(50)),
        schedule: None,
        hard,
        created_by: "eng-lead".to_owned(),
        created_at: NOW.plus_minutes(-10),
        ended_at: None,
        ended_by: None,
        end_reason: None,
    }
}

/// 1,000 freezes of varied scopes, almost all of which do not stop a production canary start of
/// `SERVICE`: other environments, other services, other actions, windows not in force now
/// (past, future, ended by hand, a recurring one between windows); many of them hard. Exactly
/// five soft ones stop it (every scope, production, the service, production and the service,
/// and a recurring one in its window), so a covering override lifts them all; with
/// `hard_matching`, one of those five is hard instead and the request is denied.
fn freezes(hard_matching: bool) -> Vec<Arc<Freeze>> {
    let nightly = Schedule::parse("0 22 * * *", 60, "Europe/Berlin").expect("schedule");
    // NOW is 2026-01-01T00:00:00Z, 01:00 in Berlin: 22:00 Berlin for four hours covers it.
    let night = Schedule::parse("0 22 * * *", 240, "Europe/Berlin").expect("schedule");
    let mut all = Vec::with_capacity(1_000);
    for id in 5..1_000 {
        let base = freeze(id, id % 3 == 0);
        let varied = match id % 8 {
            0 => Freeze {
                environments: vec![Environment::STAGING],
                ..base
            },
            1 => Freeze {
                services: vec![format!("svc-{id}"), format!("svc-{}", id + 1)],
                ..base
            },
            2 => Freeze {
                environments: vec![Environment::PRODUCTION],
                services: vec![format!("svc-{id}")],
                ..base
            },
            3 => Freeze {
                actions: vec![Action::Rollback, Action::LoadShed],
                ..base
            },
            4 => Freeze {
                start: NOW.plus_minutes(-120),
                end: Some(NOW.plus_minutes(-60)),
                ..base
            },
            5 => Freeze {
                start: NOW.plus_minutes(60),
                end: None,
                ..base
            },
            6 => Freeze {
                ended_at: Some(NOW.plus_minutes(-1)),
                ..base
            },
            _ => Freeze {
                start: NOW.plus_minutes(-30 * 24 * 60),
                end: None,
                schedule: Some(nightly.clone()),
                ..base
            },
        };
        all.push(varied);
    }
    all.push(freeze(0, hard_matching));
    all.push(Freeze {
        environments: vec![Environment::STAGING, Environment::PRODUCTION],
        ..freeze(1, false)
    });
    all.push(Freeze {
        services: vec!["web".to_owned(), SERVICE.to_owned()],
        ..freeze(2, false)
    });
    all.push(Freeze {
        environments: vec![Environment::PRODUCTION],
        services: vec![SERVICE.to_owned()],
        actions: vec![Action::CanaryStart],
        ..freeze(3, false)
    });
    all.push(Freeze {
        start: NOW.plus_minutes(-30 * 24 * 60),
        end: None,
        schedule: Some(night),
        ..freeze(4, false)
    });
    all.into_iter().map(Arc::new).collect()
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
            approvals: &ApprovalPolicy::NONE,
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

    // SPEC §22: the same decision with 1,000 freezes and 10,000 overrides, for a request naming
    // a service; compare with `active_overrides/10000`.
    let request = GateRequest {
        service: Some(SERVICE),
        ..request
    };
    let index = overrides(10_000);
    // The same request without freezes, to tell the service's cost from the freezes'.
    let none = FreezeIndex::default();
    let inputs = GateInputs {
        freezes: &none,
        approvals: &ApprovalPolicy::NONE,
        state: &state,
        overrides: &index,
        open_incidents: &[],
        now: NOW,
    };
    assert_eq!(decide(&request, &inputs).reason, ReasonCode::Override);
    group.bench_with_input(
        BenchmarkId::new("service_no_freezes", "10000_overrides"),
        &inputs,
        |b, inputs| {
            b.iter(|| decide(black_box(&request), black_box(inputs)));
        },
    );
    for (name, hard_matching, reason) in [
        ("freezes_1000_soft_lifted", false, ReasonCode::Override),
        ("freezes_1000_hard_denied", true, ReasonCode::Freeze),
    ] {
        let freezes = FreezeIndex::active_at(freezes(hard_matching), NOW);
        assert_eq!(
            freezes
                .stopping(request.action, request.environment.name, request.service)
                .len(),
            5,
            "five freezes stop the request"
        );
        let inputs = GateInputs {
            freezes: &freezes,
            approvals: &ApprovalPolicy::NONE,
            state: &state,
            overrides: &index,
            open_incidents: &[],
            now: NOW,
        };
        assert_eq!(decide(&request, &inputs).reason, reason);
        group.bench_with_input(
            BenchmarkId::new(name, "10000_overrides"),
            &inputs,
            |b, inputs| {
                b.iter(|| decide(black_box(&request), black_box(inputs)));
            },
        );
    }

    // Every part-two input at once (SPEC §22): 1,000 freezes, a two-person rule for the
    // request's scope, an open incident elsewhere, a named service, and 0 or 10,000 active
    // overrides. Flat means the two are alike: the overrides are found by key.
    let environments = deploy_safety_core::Environments::built_in();
    let approvals = ApprovalPolicy::new(
        vec![ApprovalRule {
            actions: vec![Action::CanaryStart, Action::CanaryPromote],
            environments: vec![EnvironmentSelector::Named(Environment::PRODUCTION)],
            required: 2,
            approver_roles: Vec::new(),
        }],
        &environments,
    )
    .expect("approval policy");
    let incidents = [OpenIncident {
        id: "inc_1".to_owned(),
        title: "staging database failover".to_owned(),
        severity: Severity::Medium,
        environment: Some(Environment::STAGING),
    }];
    let part_two_freezes = FreezeIndex::active_at(freezes(false), NOW);
    for (count, reason) in [(0, ReasonCode::Freeze), (10_000, ReasonCode::Override)] {
        let index = overrides(count);
        let inputs = GateInputs {
            freezes: &part_two_freezes,
            approvals: &approvals,
            state: &state,
            overrides: &index,
            open_incidents: &incidents,
            now: NOW,
        };
        assert_eq!(decide(&request, &inputs).reason, reason);
        group.bench_with_input(
            BenchmarkId::new("all_features", format!("{count}_overrides")),
            &inputs,
            |b, inputs| {
                b.iter(|| decide(black_box(&request), black_box(inputs)));
            },
        );
    }
    group.finish();

    // Building the index of freezes in force (windows of the recurring ones included), which
    // the decision above takes ready-made.
    let all = freezes(false);
    c.bench_function("freeze_index_active_at/1000", |b| {
        b.iter(|| FreezeIndex::active_at(black_box(&all).iter().cloned(), NOW));
    });
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
