//! The override request's state machine (SPEC §19) against an independent model: random
//! sequences of votes by random people, clock steps and expiry ticks. After every step the
//! request's status, and whether its override exists (and from when), are what the model says.

use std::collections::BTreeSet;

use deploy_safety_core::{
    Action, Environment, OverrideRequest, RequestStatus, Role, Tier, Timestamp, VoteKind, Voter,
};
use proptest::prelude::*;

/// The people who may try to vote: (name, role, workload).
const PEOPLE: &[(&str, Role, bool)] = &[
    ("requester", Role::Developer, false),
    ("lead-a", Role::EngLead, false),
    ("lead-b", Role::EngLead, false),
    ("security", Role::SecurityTeam, false),
    ("oncall", Role::OncallLead, false),
    ("developer", Role::Developer, false),
    ("pipeline", Role::SecurityTeam, true),
];

const WAIT_MS: i64 = 60_000;
const TTL_MINUTES: u32 = 15;

#[derive(Clone, Debug)]
enum Step {
    Vote { person: usize, approve: bool },
    Advance { ms: i64 },
    Tick,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        // Approvals outnumber denials three to one, so sequences reach quorum often.
        4 => (0..PEOPLE.len(), prop_oneof![3 => Just(true), 1 => Just(false)])
            .prop_map(|(person, approve)| Step::Vote { person, approve }),
        2 => (0i64..25_000).prop_map(|ms| Step::Advance { ms }),
        1 => Just(Step::Tick),
    ]
}

/// The model: written from SPEC §19's sentences, not from the implementation. It replays the
/// whole history each time and says where the request stands at `now`, and when its override
/// was made.
#[derive(Default)]
struct Model {
    history: Vec<(i64, Step)>,
}

struct ModelState {
    status: RequestStatus,
    override_made_at: Option<i64>,
    accepted: Vec<bool>,
}

impl Model {
    fn replay(&self, required: u32, roles: &[Role], requester_role: Role, now: i64) -> ModelState {
        // §4 for a production canary start: the security team and engineering leads.
        let allowed_by_table = [Role::SecurityTeam, Role::EngLead];
        let mut status = RequestStatus::Pending;
        let mut voted = BTreeSet::new();
        let mut approvers = 0;
        let mut override_made_at = None;
        let mut accepted = Vec::new();
        for (at, step) in &self.history {
            let expired_by_clock = *at >= WAIT_MS;
            match step {
                Step::Vote { person, approve } => {
                    let (name, role, workload) = person_at(*person, requester_role);
                    let may_vote = !workload
                        && name != "requester"
                        && roles.contains(&role)
                        && allowed_by_table.contains(&role);
                    let open = status == RequestStatus::Pending && !expired_by_clock;
                    let counted = may_vote && open && !voted.contains(name);
                    accepted.push(counted);
                    if !counted {
                        continue;
                    }
                    voted.insert(name);
                    if *approve {
                        approvers += 1;
                        if approvers == required {
                            status = RequestStatus::Approved;
                            override_made_at = Some(*at);
                        }
                    } else {
                        status = RequestStatus::Denied;
                    }
                }
                Step::Tick => {
                    if status == RequestStatus::Pending && expired_by_clock {
                        status = RequestStatus::Expired;
                    }
                }
                Step::Advance { .. } => {}
            }
        }
        if status == RequestStatus::Pending && now >= WAIT_MS {
            status = RequestStatus::Expired;
        }
        ModelState {
            status,
            override_made_at,
            accepted,
        }
    }
}

/// The person at `index`; the requester's role varies, so that a requester who could approve
/// another's request is refused on their own.
fn person_at(index: usize, requester_role: Role) -> (&'static str, Role, bool) {
    match PEOPLE[index] {
        ("requester", _, workload) => ("requester", requester_role, workload),
        other => other,
    }
}

fn new_request(required: u32, roles: Vec<Role>) -> OverrideRequest {
    OverrideRequest {
        id: "req_p".into(),
        action: Action::CanaryStart,
        environment: Environment::PRODUCTION,
        service: None,
        release_id: Some("v2".into()),
        reason: "CHG-7".into(),
        ttl_minutes: TTL_MINUTES,
        requested_by: "requester".into(),
        requested_by_role: Role::Developer,
        required,
        approver_roles: roles,
        status: RequestStatus::Pending,
        votes: Vec::new(),
        created_at: Timestamp::from_unix_millis(0),
        expires_at: Timestamp::from_unix_millis(WAIT_MS),
        decided_at: None,
        override_id: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_override_exists_exactly_when_the_model_says(
        required in 1u32..=3,
        roles in proptest::sample::subsequence(
            vec![Role::SecurityTeam, Role::EngLead, Role::OncallLead], 1..=3),
        steps in proptest::collection::vec(step(), 0..40),
        requester_role in proptest::sample::select(vec![Role::Developer, Role::EngLead, Role::SecurityTeam]),
    ) {
        let mut request = new_request(required, roles.clone());
        let mut made = None;
        let mut model = Model::default();
        let mut now = 0i64;
        let mut results = Vec::new();
        for step in steps {
            match &step {
                Step::Advance { ms } => now += ms,
                Step::Tick => {
                    request.expire(Timestamp::from_unix_millis(now));
                }
                Step::Vote { person, approve } => {
                    let (name, role, workload) = person_at(*person, requester_role);
                    let voter = Voter { name, role, workload, authenticated_by: "token" };
                    let kind = if *approve { VoteKind::Approve } else { VoteKind::Deny };
                    let at = Timestamp::from_unix_millis(now);
                    let outcome = request.vote(voter, kind, None, Tier::Production, at);
                    if outcome == Ok(deploy_safety_core::VoteOutcome::Approved) {
                        prop_assert!(made.is_none(), "a second override");
                        made = Some(request.approved_override("ovr_p".into(), at));
                    }
                    results.push(outcome.is_ok());
                }
            }
            model.history.push((now, step));
            let expected = model.replay(required, &roles, requester_role, now);
            prop_assert_eq!(request.status_at(Timestamp::from_unix_millis(now)), expected.status);
            prop_assert_eq!(&results, &expected.accepted);
            prop_assert_eq!(made.as_ref().map(|o| o.created_at.unix_millis()), expected.override_made_at);
            if let Some(o) = &made {
                prop_assert_eq!(
                    o.expires_at.unix_millis(),
                    o.created_at.unix_millis() + i64::from(TTL_MINUTES) * 60_000
                );
                prop_assert_eq!(o.approvers.len(), required as usize);
                prop_assert!(!o.approvers.iter().any(|a| a == "requester"));
            }
        }
    }
}

fn production() -> deploy_safety_core::KnownEnvironment {
    deploy_safety_core::KnownEnvironment {
        name: Environment::PRODUCTION,
        tier: Tier::Production,
    }
}

fn decide_start(
    state: &deploy_safety_core::GateState,
    overrides: &deploy_safety_core::OverrideIndex,
    approvals: &deploy_safety_core::ApprovalPolicy,
    release: &str,
    now: Timestamp,
) -> deploy_safety_core::Decision {
    deploy_safety_core::decide(
        &deploy_safety_core::GateRequest {
            action: Action::CanaryStart,
            environment: production(),
            release_id: Some(release),
            service: None,
            start_override_id: None,
        },
        &deploy_safety_core::GateInputs {
            state,
            overrides,
            open_incidents: &[],
            freezes: &deploy_safety_core::FreezeIndex::default(),
            approvals,
            now,
        },
    )
}

/// SPEC §19: in lockdown requests may be made and approved; the override is honored only after
/// lockdown ends (as §4), and then only for what was asked.
#[test]
fn votes_count_in_lockdown_and_the_override_is_honored_only_after_it() {
    use deploy_safety_core::{GateState, OverrideIndex, ReasonCode, SecurityMode};
    let lockdown = GateState {
        mode: SecurityMode::Lockdown,
        lockdown_reason: Some("breach".into()),
        lockdown_since: Some(Timestamp::from_unix_millis(0)),
        ..GateState::default()
    };
    let mut request = new_request(2, vec![Role::EngLead, Role::SecurityTeam]);
    let at = Timestamp::from_unix_millis;
    let voter = |name, role| Voter {
        name,
        role,
        workload: false,
        authenticated_by: "sso",
    };
    // The lockdown does not stop the votes: it is the gate that refuses, not the request.
    request
        .vote(
            voter("lead-a", Role::EngLead),
            VoteKind::Approve,
            None,
            Tier::Production,
            at(1_000),
        )
        .unwrap();
    let outcome = request
        .vote(
            voter("security", Role::SecurityTeam),
            VoteKind::Approve,
            None,
            Tier::Production,
            at(2_000),
        )
        .unwrap();
    assert_eq!(outcome, deploy_safety_core::VoteOutcome::Approved);
    let made = request.approved_override("ovr_l".into(), at(2_000));
    let index = OverrideIndex::new([made]);
    let none = deploy_safety_core::ApprovalPolicy::NONE;
    let during = decide_start(&lockdown, &index, &none, "v2", at(3_000));
    assert!(!during.allowed);
    assert_eq!(during.reason, ReasonCode::Lockdown);
    let after = GateState {
        mode: SecurityMode::Enforce,
        lockdown_reason: None,
        lockdown_since: None,
        ..lockdown
    };
    let allowed = decide_start(&after, &index, &none, "v2", at(4_000));
    assert!(allowed.allowed, "{allowed:?}");
    assert_eq!(allowed.reason, ReasonCode::Override);
    assert_eq!(allowed.override_id.as_deref(), Some("ovr_l"));
    let other_release = decide_start(&after, &index, &none, "v3", at(4_000));
    assert_eq!(other_release.reason, ReasonCode::OverrideRequired);
}

/// Where a rule applies, a denial's hint says to request an override (with the count and the
/// roles), not to create one; elsewhere it says to create one, as in part one.
#[test]
fn hints_point_to_a_request_where_a_rule_applies() {
    use deploy_safety_core::{
        ApprovalPolicy, ApprovalRule, EnvironmentSelector, Environments, GateState, OverrideIndex,
    };
    let policy = ApprovalPolicy::new(
        vec![ApprovalRule {
            actions: vec![Action::CanaryStart],
            environments: vec![EnvironmentSelector::Tier(Tier::Production)],
            required: 2,
            approver_roles: vec![],
        }],
        &Environments::built_in(),
    )
    .unwrap();
    let empty = OverrideIndex::default();
    let ruled = decide_start(
        &GateState::default(),
        &empty,
        &policy,
        "v2",
        Timestamp::from_unix_millis(0),
    );
    assert!(!ruled.allowed);
    assert!(
        ruled.hints[0].starts_with("Request an override")
            && ruled.hints[0].contains("2 approval(s)")
            && ruled.hints[0].contains("security-team, eng-lead")
            && ruled.hints[0].contains("override-requests"),
        "{:?}",
        ruled.hints
    );
    let unruled = decide_start(
        &GateState::default(),
        &empty,
        &ApprovalPolicy::NONE,
        "v2",
        Timestamp::from_unix_millis(0),
    );
    assert!(
        unruled.hints[0].starts_with("Create an override"),
        "{:?}",
        unruled.hints
    );
}
