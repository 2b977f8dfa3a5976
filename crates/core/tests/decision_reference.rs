//! `decide` against an independent reference written straight from SPEC §3 and §4.
//!
//! The reference works on plain data and scans a `Vec` of overrides linearly; it shares nothing
//! with the implementation but the input and output types.

use deploy_safety_core::{
    Action, Environment, GateInputs, GateRequest, GateState, OpenIncident, Override, OverrideIndex,
    ReasonCode, Role, SecurityMode, Severity, ThreatLevel, Timestamp, decide,
};
use proptest::prelude::*;
use proptest::sample::Index;

const NOW_MS: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;

// ---------------------------------------------------------------------------------------------
// The scenario, as plain data
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Ov {
    id: String,
    action: Action,
    env: Environment,
    release: Option<&'static str>,
    created_ms: i64,
    expires_ms: i64,
    revoked: bool,
}

#[derive(Clone, Debug)]
struct Inc {
    severity: Severity,
    env: Option<Environment>,
}

#[derive(Clone, Debug)]
struct Scenario {
    mode: SecurityMode,
    threat: ThreatLevel,
    env: Environment,
    action: Action,
    release: Option<&'static str>,
    overrides: Vec<Ov>,
    incidents: Vec<Inc>,
    start_override: Option<String>,
}

/// What the reference says: allowed, reason, wouldBlock, overrideId.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    allowed: bool,
    reason: ReasonCode,
    would_block: bool,
    override_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The reference, from the SPEC text
// ---------------------------------------------------------------------------------------------

/// SPEC §4: "active from creation until expiresAt or revocation". Expiring exactly now is over.
fn ref_active(o: &Ov, now: i64) -> bool {
    !o.revoked && o.created_ms <= now && now < o.expires_ms
}

/// SPEC §4: a release-bound override covers only that release; a request naming no release is
/// not covered by it. An unbound override covers any release.
fn ref_release_ok(o: &Ov, release: Option<&str>) -> bool {
    match o.release {
        None => true,
        Some(bound) => release == Some(bound),
    }
}

/// The active override for this (action, environment, release), if any. When several match:
/// one bound to the request's release beats an unbound one, then the oldest by
/// (createdAt, id).
fn ref_direct_override(s: &Scenario, now: i64) -> Option<&Ov> {
    let mut best: Option<&Ov> = None;
    for o in &s.overrides {
        if o.action != s.action || o.env != s.env {
            continue;
        }
        if !ref_active(o, now) || !ref_release_ok(o, s.release) {
            continue;
        }
        let key = |x: &Ov| (x.release.is_none(), x.created_ms, x.id.clone());
        best = match best {
            Some(b) if key(b) <= key(o) => Some(b),
            _ => Some(o),
        };
    }
    best
}

/// SPEC §4: a `deploy.canary.start` override also covers promotion of the canary started under
/// it, while the override is active. Used only when no promote override covers directly.
fn ref_start_override(s: &Scenario, now: i64) -> Option<&Ov> {
    if s.action != Action::CanaryPromote {
        return None;
    }
    let wanted = s.start_override.as_deref()?;
    let mut found = None;
    for o in &s.overrides {
        if o.id == wanted
            && o.action == Action::CanaryStart
            && o.env == s.env
            && ref_active(o, now)
            && ref_release_ok(o, s.release)
        {
            found = Some(o);
        }
    }
    found
}

fn reference(s: &Scenario, now: i64) -> Outcome {
    let deny = |reason| Outcome {
        allowed: false,
        reason,
        would_block: false,
        override_id: None,
    };

    // Step 1: lockdown denies, overrides not honored.
    if s.mode == SecurityMode::Lockdown {
        return deny(ReasonCode::Lockdown);
    }

    // Step 2: the enforce verdict.
    let canary = s.action == Action::CanaryStart || s.action == Action::CanaryPromote;
    let verdict =
        if canary && (s.threat == ThreatLevel::High || s.threat == ThreatLevel::Critical) {
            deny(ReasonCode::ThreatLevel)
        } else {
            let covering = ref_direct_override(s, now).or_else(|| ref_start_override(s, now));
            let critical_incident = s.incidents.iter().any(|i| {
                i.severity == Severity::Critical && (i.env.is_none() || i.env == Some(s.env))
            });
            let needs_override;
            let without_override;
            if s.env == Environment::PRODUCTION {
                needs_override = true;
                without_override = ReasonCode::OverrideRequired;
            } else if canary && critical_incident {
                needs_override = true;
                without_override = ReasonCode::CriticalIncident;
            } else {
                needs_override = false;
                without_override = ReasonCode::Allowed;
            }
            if !needs_override {
                Outcome {
                    allowed: true,
                    reason: ReasonCode::Allowed,
                    would_block: false,
                    override_id: None,
                }
            } else if let Some(o) = covering {
                Outcome {
                    allowed: true,
                    reason: ReasonCode::Override,
                    would_block: false,
                    override_id: Some(o.id.clone()),
                }
            } else {
                deny(without_override)
            }
        };

    // Step 3: enforce keeps the verdict; monitor allows and records what it replaced.
    if s.mode == SecurityMode::Monitor && !verdict.allowed {
        return Outcome {
            allowed: true,
            reason: verdict.reason,
            would_block: true,
            override_id: None,
        };
    }
    verdict
}

// ---------------------------------------------------------------------------------------------
// Running the implementation on the same scenario
// ---------------------------------------------------------------------------------------------

fn to_override(o: &Ov) -> Override {
    Override {
        service: None,
        id: o.id.clone(),
        action: o.action,
        environment: o.env,
        release_id: o.release.map(str::to_owned),
        reason: "because".to_owned(),
        approver: "approver".to_owned(),
        approver_role: Role::SecurityTeam,
        created_at: Timestamp::from_unix_millis(o.created_ms),
        expires_at: Timestamp::from_unix_millis(o.expires_ms),
        revoked_at: o
            .revoked
            .then(|| Timestamp::from_unix_millis(o.created_ms.min(NOW_MS))),
        revoked_by: o.revoked.then(|| "approver".to_owned()),
        use_count: 0,
        last_used_at: None,
    }
}

fn run(s: &Scenario, now: i64) -> deploy_safety_core::Decision {
    let state = GateState {
        mode: s.mode,
        threat_level: s.threat,
        lockdown_reason: (s.mode == SecurityMode::Lockdown).then(|| "generated".to_owned()),
        ..GateState::default()
    };
    let index = OverrideIndex::new(s.overrides.iter().map(to_override));
    let incidents: Vec<OpenIncident> = s
        .incidents
        .iter()
        .enumerate()
        .map(|(n, i)| OpenIncident {
            id: format!("inc-{n}"),
            title: "generated".to_owned(),
            severity: i.severity,
            environment: i.env,
        })
        .collect();
    decide(
        &GateRequest {
            service: None,
            action: s.action,
            environment: known(s.env),
            release_id: s.release,
            start_override_id: s.start_override.as_deref(),
        },
        &GateInputs {
            freezes: &deploy_safety_core::FreezeIndex::default(),
            state: &state,
            overrides: &index,
            open_incidents: &incidents,
            now: Timestamp::from_unix_millis(now),
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

fn mode() -> impl Strategy<Value = SecurityMode> {
    prop::sample::select(SecurityMode::ALL)
}

fn threat() -> impl Strategy<Value = ThreatLevel> {
    prop::sample::select(ThreatLevel::ALL)
}

fn env() -> impl Strategy<Value = Environment> {
    prop::sample::select(vec![Environment::STAGING, Environment::PRODUCTION])
}

fn action() -> impl Strategy<Value = Action> {
    // Weighted toward canary actions, where the most rules apply.
    prop_oneof![
        3 => Just(Action::CanaryStart),
        4 => Just(Action::CanaryPromote),
        2 => Just(Action::Rollback),
        1 => Just(Action::LoadShed),
    ]
}

fn release() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(&[None, Some("v1"), Some("v2")][..])
}

fn severity() -> impl Strategy<Value = Severity> {
    prop::sample::select(Severity::ALL)
}

/// A time offset from now, with the edges (−1, 0, +1 ms) well represented.
fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => Just(0i64),
        2 => Just(-1i64),
        2 => Just(1i64),
        1 => Just(-60 * MINUTE),
        1 => Just(60 * MINUTE),
        2 => -120 * MINUTE..120 * MINUTE,
    ]
}

/// Creation is usually in the past; expiry usually after creation, but not always.
fn created_offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => Just(-10 * MINUTE),
        3 => Just(-30 * MINUTE),
        3 => offset(),
    ]
}

fn expires_offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => Just(30 * MINUTE),
        4 => offset(),
    ]
}

fn one_override() -> impl Strategy<
    Value = (
        Action,
        Environment,
        Option<&'static str>,
        i64,
        i64,
        bool,
        u8,
    ),
> {
    (
        action(),
        env(),
        release(),
        created_offset(),
        expires_offset(),
        prop::bool::weighted(0.2),
        0u8..4,
    )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        (mode(), threat(), env(), action(), release()),
        prop::collection::vec(one_override(), 0..6),
        prop::collection::vec((severity(), prop::option::of(env())), 0..3),
        prop_oneof![
            1 => Just(None::<Option<Index>>),
            1 => Just(Some(None)),
            4 => any::<Index>().prop_map(|i| Some(Some(i))),
        ],
    )
        .prop_map(|((mode, threat, env, action, release), ovs, incs, start)| {
            let overrides: Vec<Ov> = ovs
                .into_iter()
                .enumerate()
                .map(
                    |(n, (action, env, release, created, expires, revoked, prefix))| Ov {
                        // Unique (the index suffix), but their order differs from generation order
                        // (the random prefix), so the (createdAt, id) tie-break is exercised.
                        id: format!("{}{n}", ["d", "c", "b", "a"][usize::from(prefix)]),
                        action,
                        env,
                        release,
                        created_ms: NOW_MS + created,
                        expires_ms: NOW_MS + expires,
                        revoked,
                    },
                )
                .collect();
            let start_override = match start {
                None => None,
                Some(None) => Some("missing".to_owned()),
                Some(Some(i)) => {
                    (!overrides.is_empty()).then(|| overrides[i.index(overrides.len())].id.clone())
                }
            };
            Scenario {
                mode,
                threat,
                env,
                action,
                release,
                overrides,
                incidents: incs
                    .into_iter()
                    .map(|(severity, env)| Inc { severity, env })
                    .collect(),
                start_override,
            }
        })
}

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig {
        // Do not write regression files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(10_000)
    })]

    #[test]
    fn decide_matches_reference(s in scenario()) {
        let ids: Vec<&str> = s.overrides.iter().map(|o| o.id.as_str()).collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        prop_assert_eq!(unique.len(), ids.len(), "generated ids must be unique");

        let expected = reference(&s, NOW_MS);
        let d = run(&s, NOW_MS);
        let actual = Outcome {
            allowed: d.allowed,
            reason: d.reason,
            would_block: d.would_block,
            override_id: d.override_id.clone(),
        };
        prop_assert_eq!(&actual, &expected, "scenario {:#?}\ndecision {:#?}", s, d);
        prop_assert_eq!(d.mode, s.mode);
        prop_assert_eq!(d.action, s.action);
        prop_assert_eq!(d.environment, s.env);
        prop_assert_eq!(d.release_id.as_deref(), s.release);
    }
}

/// The generator must reach every outcome the reference can give, or the property proves little.
#[test]
fn generator_reaches_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = scenario();
    let mut seen = std::collections::BTreeSet::new();
    let mut start_fallback_used = false;
    let mut bound_override_used = false;
    let mut tie_on_created = false;
    for _ in 0..20_000 {
        let s = strategy
            .new_tree(&mut runner)
            .expect("generate a scenario")
            .current();
        let out = reference(&s, NOW_MS);
        seen.insert((out.allowed, out.reason.as_str(), out.would_block));
        if let Some(id) = &out.override_id {
            let used = s
                .overrides
                .iter()
                .find(|o| &o.id == id)
                .expect("used override exists");
            start_fallback_used |= used.action != s.action;
            bound_override_used |= used.release.is_some();
            tie_on_created |= s.overrides.iter().any(|o| {
                o.id != used.id
                    && o.action == used.action
                    && o.env == used.env
                    && o.created_ms == used.created_ms
                    && ref_active(o, NOW_MS)
                    && ref_release_ok(o, s.release)
            });
        }
    }
    for expected in [
        (false, "LOCKDOWN", false),
        (false, "THREAT_LEVEL", false),
        (false, "OVERRIDE_REQUIRED", false),
        (false, "CRITICAL_INCIDENT", false),
        (true, "ALLOWED", false),
        (true, "OVERRIDE", false),
        (true, "THREAT_LEVEL", true),
        (true, "OVERRIDE_REQUIRED", true),
        (true, "CRITICAL_INCIDENT", true),
    ] {
        assert!(
            seen.contains(&expected),
            "generator never produced {expected:?}"
        );
    }
    assert!(
        start_fallback_used,
        "start-override fallback never exercised"
    );
    assert!(
        bound_override_used,
        "release-bound override never exercised"
    );
    assert!(tie_on_created, "createdAt tie-break never exercised");
}

/// The built-in environment called `name`, with its tier.
#[allow(dead_code)]
fn known(name: deploy_safety_core::Environment) -> deploy_safety_core::KnownEnvironment {
    deploy_safety_core::Environments::built_in()
        .resolve(name)
        .expect("a built-in environment")
}
