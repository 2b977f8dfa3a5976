//! `decide` against an independent reference written straight from SPEC §3, §4, §15 and §16.
//!
//! The reference works on plain data and scans `Vec`s of overrides and freezes linearly; it
//! shares nothing with the implementation but the input and output types, and
//! [`Freeze::window_at`] for whether a freeze is in force now (that is the schedule's job, tested
//! in `freeze_schedule.rs`). Matching a freeze's scope, hard and soft, lifting by an override,
//! environments' tiers, services and the order of the steps are the reference's own.

use std::sync::{Arc, OnceLock};

use deploy_safety_core::{
    Action, ApprovalPolicy, DEFAULT_ACTIONS, Environment, EnvironmentSpec, Environments, Freeze,
    FreezeIndex, GateInputs, GateRequest, GateState, OpenIncident, Override, OverrideIndex,
    ReasonCode, Role, Schedule, SecurityMode, Severity, ThreatLevel, Tier, Timestamp, decide,
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
    service: Option<&'static str>,
    created_ms: i64,
    expires_ms: i64,
    revoked: bool,
}

#[derive(Clone, Debug)]
struct Inc {
    severity: Severity,
    env: Option<Environment>,
}

/// A freeze as plain data (SPEC §16). Empty `envs`/`services`: all.
#[derive(Clone, Debug)]
struct Fz {
    id: String,
    hard: bool,
    envs: Vec<Environment>,
    services: Vec<&'static str>,
    actions: Vec<Action>,
    start_ms: i64,
    end_ms: Option<i64>,
    ended_ms: Option<i64>,
    /// Recurring: an index into [`SCHEDULES`].
    schedule: Option<usize>,
}

/// The environments a settings file defines, with their tiers (SPEC §15).
type Config = &'static [(&'static str, Tier)];

/// No `[[environments]]` (the built-in two), a file adding configured ones, and one whose names
/// say the opposite of their tiers (the rules follow the tier, never the name).
const CONFIGS: [Config; 3] = [
    &[("staging", Tier::Staging), ("production", Tier::Production)],
    &[
        ("staging", Tier::Staging),
        ("qa", Tier::Staging),
        ("production", Tier::Production),
        ("production-eu", Tier::Production),
    ],
    &[
        ("production", Tier::Staging),
        ("staging", Tier::Production),
        ("edge", Tier::Production),
    ],
];

/// Recurring windows around `NOW_MS`, which is Friday 2027-01-15T08:00:00Z (09:00 in Berlin).
const SCHEDULES: [(&str, i64, &str); 9] = [
    // [08:00, 08:30)Z: opens exactly now.
    ("0 * * * *", 30, "UTC"),
    // [07:30, 08:15)Z: in force.
    ("30 * * * *", 45, "UTC"),
    // [07:30, 07:50)Z: over.
    ("30 * * * *", 20, "UTC"),
    // 09:00 Berlin = [08:00, 09:00)Z on Fridays.
    ("0 9 * * FRI", 60, "Europe/Berlin"),
    // 08:00 Berlin = [07:00, 08:00)Z: ends exactly now.
    ("0 8 * * *", 60, "Europe/Berlin"),
    // ... one minute longer: in force until 08:01Z.
    ("0 8 * * *", 61, "Europe/Berlin"),
    // Fridays 16:00 Berlin for eight hours: later today.
    ("0 16 * * FRI", 480, "Europe/Berlin"),
    // Overlapping windows 07:55-08:02 and 08:00-08:07: in force until 08:07Z.
    ("*/5 * * * *", 7, "UTC"),
    // Back-to-back week-long windows from Monday 00:00 New York: always in force.
    ("0 0 * * MON", 10_080, "America/New_York"),
];

fn schedules() -> &'static [Schedule] {
    static PARSED: OnceLock<Vec<Schedule>> = OnceLock::new();
    PARSED.get_or_init(|| {
        SCHEDULES
            .iter()
            .map(|(cron, minutes, zone)| {
                Schedule::parse(cron, *minutes, zone).expect("valid schedule")
            })
            .collect()
    })
}

#[derive(Clone, Debug)]
struct Scenario {
    mode: SecurityMode,
    threat: ThreatLevel,
    /// An index into [`CONFIGS`].
    config: usize,
    env: Environment,
    action: Action,
    release: Option<&'static str>,
    service: Option<&'static str>,
    overrides: Vec<Ov>,
    incidents: Vec<Inc>,
    freezes: Vec<Fz>,
    start_override: Option<String>,
}

/// What the reference says: allowed, reason, wouldBlock, overrideId, and for `FREEZE` the freeze
/// the message names.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    allowed: bool,
    reason: ReasonCode,
    would_block: bool,
    override_id: Option<String>,
    freeze: Option<Named>,
}

/// The freeze a `FREEZE` message names: its id, reason and end (`None`: until ended by hand).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Named {
    id: String,
    reason: String,
    until: Option<i64>,
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

/// SPEC §15: an override naming a service covers only requests naming that service; one
/// without covers every request in its environment, with or without a service.
fn ref_service_ok(o: &Ov, service: Option<&str>) -> bool {
    match o.service {
        None => true,
        Some(bound) => service == Some(bound),
    }
}

/// SPEC §15: the tier of the scenario's environment, from the settings file's table.
fn ref_tier(s: &Scenario) -> Tier {
    CONFIGS[s.config]
        .iter()
        .find(|(name, _)| *name == s.env.as_str())
        .map(|(_, tier)| *tier)
        .expect("the scenario's environment is configured")
}

/// The active override for this (action, environment, release, service), if any. When several
/// match: one bound to the request's release beats an unbound one, then one bound to the
/// request's service beats an unbound one, then the oldest by (createdAt, id).
fn ref_direct_override(s: &Scenario, now: i64) -> Option<&Ov> {
    let mut best: Option<&Ov> = None;
    for o in &s.overrides {
        if o.action != s.action || o.env != s.env {
            continue;
        }
        if !ref_active(o, now) || !ref_release_ok(o, s.release) || !ref_service_ok(o, s.service) {
            continue;
        }
        let key = |x: &Ov| {
            (
                x.release.is_none(),
                x.service.is_none(),
                x.created_ms,
                x.id.clone(),
            )
        };
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
            && ref_service_ok(o, s.service)
        {
            found = Some(o);
        }
    }
    found
}

/// SPEC §16: a freeze matches (action, environment, service) when it lists the action, lists
/// the environment or none, and lists none of the services or the request's one (a request
/// naming no service is not stopped by a freeze that lists services).
fn ref_freeze_matches(f: &Fz, s: &Scenario) -> bool {
    f.actions.contains(&s.action)
        && (f.envs.is_empty() || f.envs.contains(&s.env))
        && (f.services.is_empty() || s.service.is_some_and(|svc| f.services.contains(&svc)))
}

/// The freezes in force now that match the request, each with when its window ends.
fn ref_matching_freezes(s: &Scenario, now: i64) -> Vec<(&Fz, Option<i64>)> {
    s.freezes
        .iter()
        .filter(|f| ref_freeze_matches(f, s))
        .filter_map(|f| {
            let window = to_freeze(f).window_at(Timestamp::from_unix_millis(now))?;
            Some((f, window.until.map(Timestamp::unix_millis)))
        })
        .collect()
}

/// "When several match, the decision names the one that ends last": no end (until ended by
/// hand) is last of all; among equal ends, the smallest id, so the name does not depend on order.
fn ref_ending_last<'s>(freezes: &[(&'s Fz, Option<i64>)]) -> Option<(&'s Fz, Option<i64>)> {
    let mut best: Option<(&Fz, Option<i64>)> = None;
    for &(f, until) in freezes {
        let later = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => a > b,
            _ => false,
        };
        best = match best {
            None => Some((f, until)),
            Some((b, b_until)) => {
                if later(until, b_until) || (until == b_until && f.id < b.id) {
                    Some((f, until))
                } else {
                    Some((b, b_until))
                }
            }
        };
    }
    best
}

fn reference(s: &Scenario, now: i64) -> Outcome {
    let deny = |reason| Outcome {
        allowed: false,
        reason,
        would_block: false,
        override_id: None,
        freeze: None,
    };
    let allow_by = |o: &Ov| Outcome {
        allowed: true,
        reason: ReasonCode::Override,
        would_block: false,
        override_id: Some(o.id.clone()),
        freeze: None,
    };

    // Step 1: lockdown denies, overrides not honored.
    if s.mode == SecurityMode::Lockdown {
        return deny(ReasonCode::Lockdown);
    }

    // Step 2: the enforce verdict.
    let canary = s.action == Action::CanaryStart || s.action == Action::CanaryPromote;
    let verdict = 'verdict: {
        // 2.1: threat level.
        if canary && (s.threat == ThreatLevel::High || s.threat == ThreatLevel::Critical) {
            break 'verdict deny(ReasonCode::ThreatLevel);
        }
        let covering = ref_direct_override(s, now).or_else(|| ref_start_override(s, now));

        // §16, right after the threat level: a matching hard freeze denies whatever the
        // overrides; a matching soft one denies unless an override covers the request.
        let matching = ref_matching_freezes(s, now);
        let stopping: Vec<(&Fz, Option<i64>)> = matching
            .iter()
            .copied()
            .filter(|(f, _)| f.hard || covering.is_none())
            .collect();
        if let Some((named, until)) = ref_ending_last(&stopping) {
            break 'verdict Outcome {
                freeze: Some(Named {
                    id: named.id.clone(),
                    reason: freeze_reason(&named.id),
                    until,
                }),
                ..deny(ReasonCode::Freeze)
            };
        }
        let lifted_soft = !matching.is_empty();

        // 2.2: every production-tier environment needs a covering override.
        if ref_tier(s) == Tier::Production {
            break 'verdict match covering {
                Some(o) => allow_by(o),
                None => deny(ReasonCode::OverrideRequired),
            };
        }
        // 2.3: a critical incident for this environment (or all) needs one for canary actions.
        let critical_incident = s
            .incidents
            .iter()
            .any(|i| i.severity == Severity::Critical && (i.env.is_none() || i.env == Some(s.env)));
        if canary && critical_incident {
            break 'verdict match covering {
                Some(o) => allow_by(o),
                None => deny(ReasonCode::CriticalIncident),
            };
        }
        // 2.4: allowed; "OVERRIDE when an override made it so": a lifted soft freeze.
        match covering {
            Some(o) if lifted_soft => allow_by(o),
            _ => Outcome {
                allowed: true,
                reason: ReasonCode::Allowed,
                would_block: false,
                override_id: None,
                freeze: None,
            },
        }
    };

    // Step 3: enforce keeps the verdict; monitor allows and records what it replaced.
    if s.mode == SecurityMode::Monitor && !verdict.allowed {
        return Outcome {
            allowed: true,
            would_block: true,
            ..verdict
        };
    }
    verdict
}

// ---------------------------------------------------------------------------------------------
// Running the implementation on the same scenario
// ---------------------------------------------------------------------------------------------

fn to_override(o: &Ov) -> Override {
    Override {
        service: o.service.map(str::to_owned),
        id: o.id.clone(),
        action: o.action,
        environment: o.env,
        release_id: o.release.map(str::to_owned),
        reason: "because".to_owned(),
        approver: "approver".to_owned(),
        approvers: vec!["approver".to_owned()],
        approver_role: Role::SecurityTeam,
        request_id: None,
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

fn freeze_reason(id: &str) -> String {
    format!("reason of {id}")
}

fn to_freeze(f: &Fz) -> Freeze {
    let at = Timestamp::from_unix_millis;
    Freeze {
        id: f.id.clone(),
        name: format!("name of {}", f.id),
        reason: freeze_reason(&f.id),
        environments: f.envs.clone(),
        services: f.services.iter().map(|s| (*s).to_owned()).collect(),
        actions: f.actions.clone(),
        start: at(f.start_ms),
        end: f.end_ms.map(at),
        schedule: f.schedule.map(|i| schedules()[i].clone()),
        hard: f.hard,
        created_by: "creator".to_owned(),
        created_at: at(f.start_ms.min(NOW_MS)),
        ended_at: f.ended_ms.map(at),
        ended_by: f.ended_ms.map(|_| "creator".to_owned()),
        end_reason: None,
    }
}

/// The settings file's environments, as the product reads them.
fn environments(config: usize) -> Environments {
    if config == 0 {
        return Environments::built_in();
    }
    Environments::new(
        CONFIGS[config]
            .iter()
            .map(|(name, tier)| EnvironmentSpec {
                name: Environment::parse(name).expect("valid name"),
                tier: *tier,
                promotes_from: Vec::new(),
            })
            .collect(),
    )
    .expect("valid environments")
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
    let freezes = FreezeIndex::active_at(
        s.freezes.iter().map(|f| Arc::new(to_freeze(f))),
        Timestamp::from_unix_millis(now),
    );
    decide(
        &GateRequest {
            service: s.service,
            action: s.action,
            environment: environments(s.config)
                .resolve(s.env)
                .expect("a configured environment"),
            release_id: s.release,
            start_override_id: s.start_override.as_deref(),
        },
        &GateInputs {
            freezes: &freezes,
            approvals: &ApprovalPolicy::NONE,
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

/// The environment at `i` of the scenario's settings file.
fn env_at(config: usize, i: Index) -> Environment {
    let listed = CONFIGS[config];
    Environment::parse(listed[i.index(listed.len())].0).expect("valid name")
}

fn service() -> impl Strategy<Value = Option<&'static str>> {
    weighted(&[
        (3, None),
        (2, Some("api")),
        (1, Some("web")),
        (1, Some("payments/api")),
    ])
}

/// Picks one of `choices`, each as often as its weight.
///
/// `prop::sample::select` over the repeated values rather than `prop_oneof!`: in a debug build
/// (dependencies unoptimized) a weighted union costs about 25 µs a draw, which for the many
/// choices of one scenario made generating it the bulk of the property's run time.
fn weighted<T: Clone + std::fmt::Debug + 'static>(
    choices: &[(usize, T)],
) -> impl Strategy<Value = T> + use<T> {
    let expanded: Vec<T> = choices
        .iter()
        .flat_map(|(weight, value)| std::iter::repeat_n(value.clone(), *weight))
        .collect();
    prop::sample::select(expanded)
}

fn action() -> impl Strategy<Value = Action> {
    // Weighted toward canary actions, where the most rules apply.
    weighted(&[
        (3, Action::CanaryStart),
        (4, Action::CanaryPromote),
        (2, Action::Rollback),
        (1, Action::LoadShed),
    ])
}

fn release() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(&[None, Some("v1"), Some("v2")][..])
}

fn severity() -> impl Strategy<Value = Severity> {
    prop::sample::select(Severity::ALL)
}

/// A time offset from now, with the edges (−1, 0, +1 ms) well represented.
fn offset() -> impl Strategy<Value = i64> {
    // `None`: any offset within two hours.
    (
        weighted(&[
            (2, Some(0i64)),
            (2, Some(-1)),
            (2, Some(1)),
            (1, Some(-60 * MINUTE)),
            (1, Some(60 * MINUTE)),
            (2, None),
        ]),
        -120 * MINUTE..120 * MINUTE,
    )
        .prop_map(|(fixed, any)| fixed.unwrap_or(any))
}

/// `Some(value)` with the weight of `fixed`, otherwise (weight `other`) a value of `rest`.
fn or_else<T: Clone + std::fmt::Debug + 'static, S: Strategy<Value = T>>(
    fixed: &[(usize, T)],
    other: usize,
    rest: S,
) -> impl Strategy<Value = T> + use<T, S> {
    let mut choices: Vec<(usize, Option<T>)> =
        fixed.iter().map(|(w, v)| (*w, Some(v.clone()))).collect();
    choices.push((other, None));
    (weighted(&choices), rest).prop_map(|(fixed, rest)| fixed.unwrap_or(rest))
}

/// Creation is usually in the past; expiry usually after creation, but not always.
fn created_offset() -> impl Strategy<Value = i64> {
    or_else(&[(3, -10 * MINUTE), (3, -30 * MINUTE)], 3, offset())
}

fn expires_offset() -> impl Strategy<Value = i64> {
    or_else(&[(4, 30 * MINUTE)], 4, offset())
}

/// An override before its environment is chosen from the scenario's settings.
#[derive(Clone, Debug)]
struct OvSeed {
    action: Action,
    env: Index,
    release: Option<&'static str>,
    service: Option<&'static str>,
    created: i64,
    expires: i64,
    revoked: bool,
    prefix: u8,
}

fn one_override() -> impl Strategy<Value = OvSeed> {
    (
        (action(), any::<Index>(), release(), service()),
        (
            created_offset(),
            expires_offset(),
            prop::bool::weighted(0.2),
            0u8..4,
        ),
    )
        .prop_map(
            |((action, env, release, service), (created, expires, revoked, prefix))| OvSeed {
                action,
                env,
                release,
                service,
                created,
                expires,
                revoked,
                prefix,
            },
        )
}

/// A freeze before its environments are chosen from the scenario's settings.
#[derive(Clone, Debug)]
struct FzSeed {
    hard: bool,
    envs: Vec<Index>,
    services: Vec<&'static str>,
    actions: Option<Vec<Action>>,
    start: i64,
    end: Option<i64>,
    ended: Option<i64>,
    schedule: Option<usize>,
    prefix: u8,
}

/// Ends of one-off windows: the edges around now, and a few shared values so that several
/// freezes often end at the same instant (the tie-break by id).
fn end_offset() -> impl Strategy<Value = Option<i64>> {
    or_else(
        &[
            (2, None),
            (3, Some(30 * MINUTE)),
            (2, Some(90 * MINUTE)),
            (1, Some(0)),
            (1, Some(1)),
            (1, Some(-1)),
        ],
        2,
        (-120 * MINUTE..240 * MINUTE).prop_map(Some),
    )
}

fn one_freeze() -> impl Strategy<Value = FzSeed> {
    (
        (
            prop::bool::weighted(0.4),
            // Environments: none listed (all) three times in five, else one or two.
            (0..5u8, prop::collection::vec(any::<Index>(), 1..3))
                .prop_map(|(k, listed)| if k < 3 { Vec::new() } else { listed }),
            (
                0..5u8,
                prop::collection::vec(
                    prop::sample::select(&["api", "web", "payments/api", "db"][..]),
                    1..3,
                ),
            )
                .prop_map(|(k, listed)| if k < 3 { Vec::new() } else { listed }),
            // Actions: the default three times in five.
            (0..5u8, prop::collection::vec(action(), 1..4))
                .prop_map(|(k, listed)| (k >= 3).then_some(listed)),
        ),
        (
            or_else(
                &[(3, -10 * MINUTE), (1, -30 * 24 * 60 * MINUTE)],
                3,
                offset(),
            ),
            end_offset(),
            or_else(&[(6, None)], 1, offset().prop_map(Some)),
            or_else(&[(3, None)], 2, (0..SCHEDULES.len()).prop_map(Some)),
            0u8..4,
        ),
    )
        .prop_map(
            |((hard, envs, services, actions), (start, end, ended, schedule, prefix))| FzSeed {
                hard,
                envs,
                services,
                actions,
                // A recurring freeze usually began long ago and has no end.
                start: if schedule.is_some() && start == -10 * MINUTE {
                    -30 * 24 * 60 * MINUTE
                } else {
                    start
                },
                end: if schedule.is_some() && end == Some(30 * MINUTE) {
                    None
                } else {
                    end
                },
                ended,
                schedule,
                prefix,
            },
        )
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        (
            mode(),
            threat(),
            0..CONFIGS.len(),
            any::<Index>(),
            action(),
            release(),
            service(),
        ),
        prop::collection::vec(one_override(), 0..6),
        prop::collection::vec((severity(), prop::option::of(any::<Index>())), 0..3),
        prop::collection::vec(one_freeze(), 0..5),
        or_else(
            &[(1, None::<Option<Index>>), (1, Some(None))],
            4,
            any::<Index>().prop_map(|i| Some(Some(i))),
        ),
    )
        .prop_map(
            |((mode, threat, config, env, action, release, service), ovs, incs, fzs, start)| {
                let overrides: Vec<Ov> = ovs
                    .into_iter()
                    .enumerate()
                    .map(|(n, o)| Ov {
                        // Unique (the index suffix), but their order differs from generation
                        // order (the random prefix), so the (createdAt, id) tie-break is
                        // exercised.
                        id: format!("{}{n}", ["d", "c", "b", "a"][usize::from(o.prefix)]),
                        action: o.action,
                        env: env_at(config, o.env),
                        release: o.release,
                        service: o.service,
                        created_ms: NOW_MS + o.created,
                        expires_ms: NOW_MS + o.expires,
                        revoked: o.revoked,
                    })
                    .collect();
                let freezes: Vec<Fz> = fzs
                    .into_iter()
                    .enumerate()
                    .map(|(n, f)| Fz {
                        id: format!("frz-{}{n}", ["d", "c", "b", "a"][usize::from(f.prefix)]),
                        hard: f.hard,
                        envs: f.envs.into_iter().map(|i| env_at(config, i)).collect(),
                        services: f.services,
                        actions: f.actions.unwrap_or_else(|| DEFAULT_ACTIONS.to_vec()),
                        start_ms: NOW_MS + f.start,
                        end_ms: f.end.map(|e| NOW_MS + e),
                        ended_ms: f.ended.map(|e| NOW_MS + e),
                        schedule: f.schedule,
                    })
                    .collect();
                let start_override = match start {
                    None => None,
                    Some(None) => Some("missing".to_owned()),
                    Some(Some(i)) => (!overrides.is_empty())
                        .then(|| overrides[i.index(overrides.len())].id.clone()),
                };
                Scenario {
                    mode,
                    threat,
                    config,
                    env: env_at(config, env),
                    action,
                    release,
                    service,
                    overrides,
                    incidents: incs
                        .into_iter()
                        .map(|(severity, env)| Inc {
                            severity,
                            env: env.map(|i| env_at(config, i)),
                        })
                        .collect(),
                    freezes,
                    start_override,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig {
        // Do not write regression files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(25_000)
    })]

    #[test]
    fn decide_matches_reference(s in scenario()) {
        for ids in [
            s.overrides.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            s.freezes.iter().map(|f| f.id.as_str()).collect(),
        ] {
            let mut unique = ids.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), ids.len(), "generated ids must be unique");
        }

        let expected = reference(&s, NOW_MS);
        let d = run(&s, NOW_MS);
        let actual = Outcome {
            allowed: d.allowed,
            reason: d.reason,
            would_block: d.would_block,
            override_id: d.override_id.clone(),
            freeze: expected.freeze.clone(),
        };
        prop_assert_eq!(&actual, &expected, "scenario {:#?}\ndecision {:#?}", s, d);
        // SPEC §16: "The message names the freeze, its reason and when it ends"; when several
        // stop the request, the one that ends last.
        if let Some(named) = &expected.freeze {
            {
                prop_assert!(
                    d.message.contains(&format!("({})", named.id)),
                    "message names {}: {}\nscenario {:#?}", named.id, d.message, s
                );
                for other in s.freezes.iter().filter(|f| f.id != named.id) {
                    prop_assert!(
                        !d.message.contains(&format!("({})", other.id)),
                        "message names only {}: {}\nscenario {:#?}", named.id, d.message, s
                    );
                }
                prop_assert!(d.message.contains(&named.reason), "{}", d.message);
                match named.until {
                    Some(until) => prop_assert!(
                        d.message
                            .contains(&Timestamp::from_unix_millis(until).to_rfc3339()),
                        "message says it ends at {}: {}\nscenario {:#?}",
                        Timestamp::from_unix_millis(until), d.message, s
                    ),
                    None => prop_assert!(d.message.contains("by hand"), "{}", d.message),
                }
            }
            prop_assert!(!d.hints.is_empty(), "a freeze says how to proceed");
        }
        prop_assert_eq!(d.mode, s.mode);
        prop_assert_eq!(d.action, s.action);
        prop_assert_eq!(d.environment, s.env);
        prop_assert_eq!(d.release_id.as_deref(), s.release);
        prop_assert_eq!(d.service.as_deref(), s.service);
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
    let mut service_override_used = false;
    let mut unbound_override_for_service = false;
    let mut tie_on_created = false;
    let mut soft_lifted_in_staging_tier = false;
    let mut hard_despite_override = false;
    let mut recurring_stops = false;
    let mut several_stop = false;
    let mut tie_on_end = false;
    let mut open_ended_named = false;
    let mut service_freeze_stops = false;
    let mut configured_production_tier = false;
    let mut production_named_staging_tier_allowed = false;
    for _ in 0..20_000 {
        let s = strategy
            .new_tree(&mut runner)
            .expect("generate a scenario")
            .current();
        let out = reference(&s, NOW_MS);
        seen.insert((out.allowed, out.reason.as_str(), out.would_block));
        let covering = ref_direct_override(&s, NOW_MS).or_else(|| ref_start_override(&s, NOW_MS));
        let matching = if out.override_id.is_some() || out.freeze.is_some() {
            ref_matching_freezes(&s, NOW_MS)
        } else {
            Vec::new()
        };
        if let Some(id) = &out.override_id {
            let used = s
                .overrides
                .iter()
                .find(|o| &o.id == id)
                .expect("used override exists");
            start_fallback_used |= used.action != s.action;
            bound_override_used |= used.release.is_some();
            service_override_used |= used.service.is_some();
            unbound_override_for_service |= used.service.is_none() && s.service.is_some();
            tie_on_created |= s.overrides.iter().any(|o| {
                o.id != used.id
                    && o.action == used.action
                    && o.env == used.env
                    && o.created_ms == used.created_ms
                    && ref_active(o, NOW_MS)
                    && ref_release_ok(o, s.release)
                    && ref_service_ok(o, s.service)
            });
            soft_lifted_in_staging_tier |= ref_tier(&s) == Tier::Staging
                && !matching.is_empty()
                && !s.incidents.iter().any(|i| i.severity == Severity::Critical);
        }
        if let Some(named) = &out.freeze {
            let stopping: Vec<_> = matching
                .iter()
                .filter(|(f, _)| f.hard || covering.is_none())
                .collect();
            hard_despite_override |= covering.is_some();
            several_stop |= stopping.len() > 1;
            tie_on_end |= stopping
                .iter()
                .filter(|(_, until)| *until == named.until)
                .count()
                > 1;
            open_ended_named |= named.until.is_none() && stopping.len() > 1;
            let f = s.freezes.iter().find(|f| f.id == named.id).expect("named");
            recurring_stops |= f.schedule.is_some();
            service_freeze_stops |= !f.services.is_empty();
        }
        let tier = ref_tier(&s);
        configured_production_tier |= tier == Tier::Production
            && s.env != Environment::PRODUCTION
            && out.reason == ReasonCode::OverrideRequired;
        production_named_staging_tier_allowed |= tier == Tier::Staging
            && s.env == Environment::PRODUCTION
            && out.reason == ReasonCode::Allowed;
    }
    for expected in [
        (false, "LOCKDOWN", false),
        (false, "THREAT_LEVEL", false),
        (false, "FREEZE", false),
        (false, "OVERRIDE_REQUIRED", false),
        (false, "CRITICAL_INCIDENT", false),
        (true, "ALLOWED", false),
        (true, "OVERRIDE", false),
        (true, "THREAT_LEVEL", true),
        (true, "FREEZE", true),
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
    assert!(service_override_used, "service-bound override never used");
    assert!(
        unbound_override_for_service,
        "unbound override never covered a service request"
    );
    assert!(tie_on_created, "createdAt tie-break never exercised");
    assert!(
        soft_lifted_in_staging_tier,
        "a soft freeze was never lifted in a staging-tier environment"
    );
    assert!(
        hard_despite_override,
        "a hard freeze never denied despite a covering override"
    );
    assert!(
        recurring_stops,
        "a recurring freeze never stopped a request"
    );
    assert!(several_stop, "several freezes never stopped one request");
    assert!(
        tie_on_end,
        "the tie-break on a freeze's end never exercised"
    );
    assert!(open_ended_named, "an open-ended freeze never beat others");
    assert!(
        service_freeze_stops,
        "a freeze listing services never stopped a request"
    );
    assert!(
        configured_production_tier,
        "a configured production-tier environment never needed an override"
    );
    assert!(
        production_named_staging_tier_allowed,
        "an environment named production of tier staging was never allowed plainly"
    );
}

/// The built-in environment called `name`, with its tier.
#[allow(dead_code)]
fn known(name: deploy_safety_core::Environment) -> deploy_safety_core::KnownEnvironment {
    deploy_safety_core::Environments::built_in()
        .resolve(name)
        .expect("a built-in environment")
}
