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
    fn replay(&self, required: u32, roles: &[Role], now: i64) -> ModelState {
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
                    let (name, role, workload) = PEOPLE[*person];
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
                    let (name, role, workload) = PEOPLE[*person];
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
            let expected = model.replay(required, &roles, now);
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
