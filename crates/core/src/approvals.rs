//! The two-person rule (SPEC §19): which overrides need other people's approval, and how the
//! votes on an override request decide it.
//!
//! A request is a small state machine: `pending` until a deny (`denied`), enough approvals
//! (`approved`, and the override is made at that instant), or its waiting time running out
//! (`expired`). Every vote goes through [`OverrideRequest::vote`], so who may vote, in which
//! order refusals come, and when the request is decided are decided here, once.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::environment::{Environments, KnownEnvironment, Tier};
use crate::identity::role_rank;
use crate::model::{Action, Environment, Role, string_enum};
use crate::overrides::{Override, may_create_override};
use crate::reason::ReasonCode;
use crate::time::Timestamp;

/// Where a rule applies: one environment by name, or every environment of a tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvironmentSelector {
    Named(Environment),
    Tier(Tier),
}

impl EnvironmentSelector {
    /// `production`, or `tier:production`.
    pub fn parse(text: &str) -> Result<EnvironmentSelector, String> {
        let parsed = match text.strip_prefix("tier:") {
            Some(tier) => tier
                .parse::<Tier>()
                .map(EnvironmentSelector::Tier)
                .map_err(|e| e.to_string()),
            None => Environment::parse(text)
                .map(EnvironmentSelector::Named)
                .map_err(|e| e.to_string()),
        };
        parsed.map_err(|e| format!("`{text}`: {e}"))
    }

    pub fn matches(self, environment: KnownEnvironment) -> bool {
        match self {
            EnvironmentSelector::Named(name) => name == environment.name,
            EnvironmentSelector::Tier(tier) => tier == environment.tier,
        }
    }
}

impl fmt::Display for EnvironmentSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvironmentSelector::Named(name) => write!(f, "{name}"),
            EnvironmentSelector::Tier(tier) => write!(f, "tier:{tier}"),
        }
    }
}

/// One `[[approvals]]` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRule {
    /// The gated actions whose overrides need approvals.
    pub actions: Vec<Action>,
    pub environments: Vec<EnvironmentSelector>,
    /// Distinct approvers, not counting the requester (≥ 1).
    pub required: u32,
    /// Who may vote; empty: the roles that may create that override under §4.
    pub approver_roles: Vec<Role>,
}

impl ApprovalRule {
    pub fn matches(&self, action: Action, environment: KnownEnvironment) -> bool {
        self.actions.contains(&action) && self.environments.iter().any(|s| s.matches(environment))
    }

    /// The roles whose votes count on a request for `action` in an environment of `tier`: the
    /// configured ones that §4 allows that override, or every role §4 allows.
    pub fn voting_roles(&self, action: Action, tier: Tier) -> Vec<Role> {
        Role::ALL
            .iter()
            .copied()
            .filter(|role| {
                may_create_override(*role, action, tier)
                    && (self.approver_roles.is_empty() || self.approver_roles.contains(role))
            })
            .collect()
    }
}

/// The most approvals a rule may ask for.
pub const MAX_REQUIRED: u32 = 100;

fn role_names(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `[[approvals]]` rules, checked against the configured environments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApprovalPolicy {
    rules: Vec<ApprovalRule>,
}

impl ApprovalPolicy {
    /// No rules: §4 as written everywhere.
    pub const NONE: ApprovalPolicy = ApprovalPolicy { rules: Vec::new() };

    /// Refuses a rule that could never be met or names what does not exist: no environments,
    /// no actions, `required` of 0, an unknown environment, or an action and environment for
    /// which none of its approver roles may approve under §4.
    pub fn new(
        rules: Vec<ApprovalRule>,
        environments: &Environments,
    ) -> Result<ApprovalPolicy, String> {
        for (index, rule) in rules.iter().enumerate() {
            let at = format!("[[approvals]] #{}", index + 1);
            if rule.actions.is_empty() {
                return Err(format!("{at}: `actions` must name at least one action"));
            }
            if rule.environments.is_empty() {
                return Err(format!(
                    "{at}: `environments` must name at least one environment or tier"
                ));
            }
            if rule.required == 0 {
                return Err(format!("{at}: `required` must be at least 1"));
            }
            for selector in &rule.environments {
                if let EnvironmentSelector::Named(name) = selector {
                    environments
                        .require(*name)
                        .map_err(|e| format!("{at}: `environments`: {e}"))?;
                }
            }
            if rule.required > MAX_REQUIRED {
                return Err(format!("{at}: `required` must be at most {MAX_REQUIRED}"));
            }
            let matched: Vec<KnownEnvironment> = environments
                .names()
                .filter_map(|n| environments.resolve(n))
                .filter(|e| rule.environments.iter().any(|s| s.matches(*e)))
                .collect();
            for &environment in &matched {
                for &action in &rule.actions {
                    if rule.voting_roles(action, environment.tier).is_empty() {
                        return Err(format!(
                            "{at}: none of `approver_roles` may approve {action} in {environment} (SPEC §4), so no request could ever be approved"
                        ));
                    }
                }
            }
            // A role the table allows none of the rule's overrides would be dropped in silence.
            for role in &rule.approver_roles {
                let counts = matched.iter().any(|e| {
                    rule.actions
                        .iter()
                        .any(|a| may_create_override(*role, *a, e.tier))
                });
                if !counts {
                    return Err(format!(
                        "{at}: `approver_roles`: {role} may approve none of this rule's overrides (SPEC §4)"
                    ));
                }
            }
        }
        let policy = ApprovalPolicy { rules };
        // A start override also covers the promotion of the canary started under it (SPEC §4):
        // promotion is only as guarded as the start.
        for environment in environments.names().filter_map(|n| environments.resolve(n)) {
            let promote = policy.requirement(Action::CanaryPromote, environment);
            let start = policy.requirement(Action::CanaryStart, environment);
            let weaker = !start.ruled
                || start.required < promote.required
                || start.roles.iter().any(|r| !promote.roles.contains(r));
            if promote.ruled && weaker {
                return Err(format!(
                    "[[approvals]]: {} in {environment} needs {} approval(s) from {}, but {} there does not need as many from those roles; a start override also covers the promotion of its canary (SPEC §4), so rule {} at least as strictly",
                    Action::CanaryPromote,
                    promote.required,
                    role_names(&promote.roles),
                    Action::CanaryStart,
                    Action::CanaryStart,
                ));
            }
        }
        Ok(policy)
    }

    pub fn rules(&self) -> &[ApprovalRule] {
        &self.rules
    }

    /// The rule for overrides of `action` in `environment`: the first that matches, in the
    /// order of the settings file (as firewall rules are read). `None`: §4 as written.
    pub fn rule_for(&self, action: Action, environment: KnownEnvironment) -> Option<&ApprovalRule> {
        self.rules.iter().find(|r| r.matches(action, environment))
    }

    /// What a request for `action` in `environment` needs: `required` approvers among
    /// `roles`. Where no rule matches, one approval from a role §4 allows.
    pub fn requirement(&self, action: Action, environment: KnownEnvironment) -> Requirement {
        match self.rule_for(action, environment) {
            Some(rule) => Requirement {
                required: rule.required,
                roles: rule.voting_roles(action, environment.tier),
                ruled: true,
            },
            None => Requirement {
                required: 1,
                roles: crate::overrides::roles_that_may_override(action, environment.tier),
                ruled: false,
            },
        }
    }
}

/// How many approvals, from which roles, a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub required: u32,
    pub roles: Vec<Role>,
    /// Whether an `[[approvals]]` rule says so (direct overrides are then refused).
    pub ruled: bool,
}

string_enum! {
    /// Where an override request stands.
    pub enum RequestStatus ("request status") {
        Pending = "pending",
        Approved = "approved",
        Denied = "denied",
        Expired = "expired",
    }
}

string_enum! {
    /// A vote on an override request.
    pub enum VoteKind ("vote") {
        Approve = "approve",
        Deny = "deny",
    }
}

/// One person's vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vote {
    #[schema(value_type = crate::text::PrincipalName)]
    pub principal: String,
    pub role: Role,
    pub vote: VoteKind,
    pub comment: Option<String>,
    pub at: Timestamp,
    /// How the voter authenticated: `token` or `sso` (workload identities never vote).
    pub authenticated_by: String,
}

/// A request for an override that other people approve (SPEC §19).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverrideRequest {
    pub id: String,
    pub action: Action,
    pub environment: Environment,
    pub service: Option<String>,
    pub release_id: Option<String>,
    pub reason: String,
    /// The override's lifetime, counted from the approval that makes it.
    pub ttl_minutes: u32,
    pub requested_by: String,
    pub requested_by_role: Role,
    /// Approvals needed, fixed when the request was made.
    pub required: u32,
    /// Roles whose votes count, fixed when the request was made.
    pub approver_roles: Vec<Role>,
    /// As stored; read [`OverrideRequest::status_at`] for where it stands.
    pub status: RequestStatus,
    /// In the order cast.
    pub votes: Vec<Vote>,
    pub created_at: Timestamp,
    /// A pending request is expired from this instant on.
    pub expires_at: Timestamp,
    /// When it was approved, denied or marked expired.
    pub decided_at: Option<Timestamp>,
    /// The override an approval made.
    pub override_id: Option<String>,
}

/// Who is voting.
#[derive(Clone, Copy, Debug)]
pub struct Voter<'a> {
    pub name: &'a str,
    pub role: Role,
    /// An OIDC-authenticated pipeline, not a person.
    pub workload: bool,
    /// `token` or `sso`, for the record.
    pub authenticated_by: &'a str,
}

/// Why a vote was not counted, in the order they are checked (403s before 409s, SPEC §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoteRefusal {
    /// A workload identity: approval is a person's.
    Workload,
    /// The requester voting on their own request.
    SelfApproval,
    /// The voter's role may not approve this override (the request's roles and §4).
    RoleNotPermitted { roles: Vec<Role> },
    /// The request is decided or expired.
    NotPending(RequestStatus),
    /// This person has voted already.
    AlreadyVoted,
}

impl VoteRefusal {
    pub fn reason(&self) -> ReasonCode {
        match self {
            VoteRefusal::Workload => ReasonCode::WorkloadCannotApprove,
            VoteRefusal::SelfApproval => ReasonCode::SelfApproval,
            VoteRefusal::RoleNotPermitted { .. } => ReasonCode::OverrideNotPermitted,
            VoteRefusal::NotPending(_) => ReasonCode::RequestNotPending,
            VoteRefusal::AlreadyVoted => ReasonCode::AlreadyVoted,
        }
    }

    /// A refusal of the request's state (409) rather than of the voter (403).
    pub fn is_conflict(&self) -> bool {
        matches!(self, VoteRefusal::NotPending(_) | VoteRefusal::AlreadyVoted)
    }
}

/// What a counted vote did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteOutcome {
    /// An approval that did not yet reach `required`.
    Counted { approvals: u32, required: u32 },
    /// The last approval needed: the override is made now.
    Approved,
    /// A deny: the request is over.
    Denied,
}

impl OverrideRequest {
    /// The stored status, except that a pending request is expired from `expires_at` on,
    /// whether or not the engine has marked it yet.
    pub fn status_at(&self, now: Timestamp) -> RequestStatus {
        if self.status == RequestStatus::Pending && now >= self.expires_at {
            RequestStatus::Expired
        } else {
            self.status
        }
    }

    /// Settings made stricter since a pending request was made apply to it: the larger
    /// `required`, only the roles both allow, and the shorter of its TTL and today's maximum.
    /// Settings made looser do not: what was asked for under stricter rules stays so.
    pub fn tighten(&mut self, now: &Requirement, max_ttl_minutes: u32) {
        if self.status != RequestStatus::Pending {
            return;
        }
        self.ttl_minutes = self.ttl_minutes.min(max_ttl_minutes);
        if now.ruled {
            self.required = self.required.max(now.required);
            self.approver_roles.retain(|r| now.roles.contains(r));
        }
    }

    pub fn approvals(&self) -> impl Iterator<Item = &Vote> {
        self.votes.iter().filter(|v| v.vote == VoteKind::Approve)
    }

    pub fn approval_count(&self) -> u32 {
        u32::try_from(self.approvals().count()).unwrap_or(u32::MAX)
    }

    /// Counts a vote cast at `now`, with `tier` the tier of the request's environment now.
    /// On success the vote is recorded and, if it decides the request, the status too.
    pub fn vote(
        &mut self,
        voter: Voter<'_>,
        kind: VoteKind,
        comment: Option<String>,
        tier: Tier,
        now: Timestamp,
    ) -> Result<VoteOutcome, VoteRefusal> {
        if voter.workload {
            return Err(VoteRefusal::Workload);
        }
        if voter.name == self.requested_by {
            return Err(VoteRefusal::SelfApproval);
        }
        let roles: Vec<Role> = Role::ALL
            .iter()
            .copied()
            .filter(|role| {
                self.approver_roles.contains(role) && may_create_override(*role, self.action, tier)
            })
            .collect();
        if !roles.contains(&voter.role) {
            return Err(VoteRefusal::RoleNotPermitted { roles });
        }
        match self.status_at(now) {
            RequestStatus::Pending => {}
            other => return Err(VoteRefusal::NotPending(other)),
        }
        if self.votes.iter().any(|v| v.principal == voter.name) {
            return Err(VoteRefusal::AlreadyVoted);
        }
        self.votes.push(Vote {
            principal: voter.name.to_owned(),
            role: voter.role,
            vote: kind,
            comment,
            at: now,
            authenticated_by: voter.authenticated_by.to_owned(),
        });
        let outcome = match kind {
            VoteKind::Deny => VoteOutcome::Denied,
            VoteKind::Approve if self.approval_count() >= self.required => VoteOutcome::Approved,
            VoteKind::Approve => VoteOutcome::Counted {
                approvals: self.approval_count(),
                required: self.required,
            },
        };
        match outcome {
            VoteOutcome::Denied => self.decide(RequestStatus::Denied, now),
            VoteOutcome::Approved => self.decide(RequestStatus::Approved, now),
            VoteOutcome::Counted { .. } => {}
        }
        Ok(outcome)
    }

    /// Marks a pending request expired once its time has come; false if it is not due.
    pub fn expire(&mut self, now: Timestamp) -> bool {
        if self.status == RequestStatus::Pending && self.status_at(now) == RequestStatus::Expired {
            self.decide(RequestStatus::Expired, now);
            true
        } else {
            false
        }
    }

    fn decide(&mut self, status: RequestStatus, now: Timestamp) {
        self.status = status;
        self.decided_at = Some(now);
    }

    /// The override an approved request makes at `now`: exactly the request's action,
    /// environment, service and release, its TTL counted from `now`, listing every approver.
    /// Its role is the highest among the approvers'.
    pub fn approved_override(&self, id: String, now: Timestamp) -> Override {
        let approvers: Vec<String> = self.approvals().map(|v| v.principal.clone()).collect();
        let approver_role = self
            .approvals()
            .map(|v| v.role)
            .max_by_key(|role| role_rank(*role))
            .unwrap_or(self.requested_by_role);
        Override {
            id,
            action: self.action,
            environment: self.environment,
            release_id: self.release_id.clone(),
            service: self.service.clone(),
            reason: self.reason.clone(),
            approver: approvers.join(", "),
            approvers,
            approver_role,
            request_id: Some(self.id.clone()),
            created_at: now,
            expires_at: now.plus_minutes(i64::from(self.ttl_minutes)),
            revoked_at: None,
            revoked_by: None,
            use_count: 0,
            last_used_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::EnvironmentSpec;

    fn request(required: u32, roles: &[Role]) -> OverrideRequest {
        OverrideRequest {
            id: "req_1".into(),
            action: Action::CanaryStart,
            environment: Environment::PRODUCTION,
            service: Some("payments".into()),
            release_id: Some("v1.2.3".into()),
            reason: "CHG-1".into(),
            ttl_minutes: 30,
            requested_by: "dev".into(),
            requested_by_role: Role::Developer,
            required,
            approver_roles: roles.to_vec(),
            status: RequestStatus::Pending,
            votes: Vec::new(),
            created_at: Timestamp::from_unix_millis(0),
            expires_at: Timestamp::from_unix_millis(60_000),
            decided_at: None,
            override_id: None,
        }
    }

    fn person(name: &str, role: Role) -> Voter<'_> {
        Voter {
            name,
            role,
            workload: false,
            authenticated_by: "token",
        }
    }

    /// Who may vote, and what a vote does, cell by cell.
    #[test]
    fn voting_rules_table() {
        use Role::*;
        use VoteKind::*;
        let at = Timestamp::from_unix_millis;
        let both = [EngLead, SecurityTeam];
        // (case, required, approver roles, earlier votes, voter, role, workload, vote, now,
        //  expected)
        type Row<'a> = (
            &'a str,
            u32,
            &'a [Role],
            &'a [(&'a str, Role, VoteKind)],
            &'a str,
            Role,
            bool,
            VoteKind,
            i64,
            Result<VoteOutcome, VoteRefusal>,
        );
        let counted = |approvals| {
            Ok(VoteOutcome::Counted {
                approvals,
                required: 2,
            })
        };
        let table: &[Row] = &[
            (
                "first of two",
                2,
                &both,
                &[],
                "lead",
                EngLead,
                false,
                Approve,
                1,
                counted(1),
            ),
            (
                "second approves",
                2,
                &both,
                &[("lead", EngLead, Approve)],
                "sec",
                SecurityTeam,
                false,
                Approve,
                2,
                Ok(VoteOutcome::Approved),
            ),
            (
                "one is enough",
                1,
                &both,
                &[],
                "lead",
                EngLead,
                false,
                Approve,
                1,
                Ok(VoteOutcome::Approved),
            ),
            (
                "deny ends it",
                2,
                &both,
                &[("lead", EngLead, Approve)],
                "sec",
                SecurityTeam,
                false,
                Deny,
                2,
                Ok(VoteOutcome::Denied),
            ),
            (
                "deny first",
                2,
                &both,
                &[],
                "sec",
                SecurityTeam,
                false,
                Deny,
                1,
                Ok(VoteOutcome::Denied),
            ),
            (
                "self approval",
                2,
                &both,
                &[],
                "dev",
                EngLead,
                false,
                Approve,
                1,
                Err(VoteRefusal::SelfApproval),
            ),
            (
                "self deny",
                2,
                &both,
                &[],
                "dev",
                EngLead,
                false,
                Deny,
                1,
                Err(VoteRefusal::SelfApproval),
            ),
            (
                "workload",
                2,
                &both,
                &[],
                "ci",
                SecurityTeam,
                true,
                Approve,
                1,
                Err(VoteRefusal::Workload),
            ),
            (
                "developer",
                2,
                &both,
                &[],
                "dev2",
                Developer,
                false,
                Approve,
                1,
                Err(VoteRefusal::RoleNotPermitted {
                    roles: vec![SecurityTeam, EngLead],
                }),
            ),
            (
                "oncall-lead not allowed by §4 for canary start",
                2,
                &[OncallLead, EngLead],
                &[],
                "oncall",
                OncallLead,
                false,
                Approve,
                1,
                Err(VoteRefusal::RoleNotPermitted {
                    roles: vec![EngLead],
                }),
            ),
            (
                "role outside the rule",
                2,
                &[SecurityTeam],
                &[],
                "lead",
                EngLead,
                false,
                Approve,
                1,
                Err(VoteRefusal::RoleNotPermitted {
                    roles: vec![SecurityTeam],
                }),
            ),
            (
                "twice",
                2,
                &both,
                &[("lead", EngLead, Approve)],
                "lead",
                EngLead,
                false,
                Approve,
                2,
                Err(VoteRefusal::AlreadyVoted),
            ),
            (
                "approve after deny",
                2,
                &both,
                &[("sec", SecurityTeam, Deny)],
                "lead",
                EngLead,
                false,
                Approve,
                2,
                Err(VoteRefusal::NotPending(RequestStatus::Denied)),
            ),
            (
                "after approval",
                1,
                &both,
                &[("sec", SecurityTeam, Approve)],
                "lead",
                EngLead,
                false,
                Approve,
                2,
                Err(VoteRefusal::NotPending(RequestStatus::Approved)),
            ),
            (
                "one millisecond before expiry",
                2,
                &both,
                &[],
                "lead",
                EngLead,
                false,
                Approve,
                59_999,
                counted(1),
            ),
            (
                "at expiry",
                2,
                &both,
                &[],
                "lead",
                EngLead,
                false,
                Approve,
                60_000,
                Err(VoteRefusal::NotPending(RequestStatus::Expired)),
            ),
            (
                "403 before 409: developer on an expired request",
                2,
                &both,
                &[],
                "dev2",
                Developer,
                false,
                Approve,
                90_000,
                Err(VoteRefusal::RoleNotPermitted {
                    roles: vec![SecurityTeam, EngLead],
                }),
            ),
        ];
        for (case, required, roles, earlier, voter, role, workload, kind, now, expected) in table {
            let mut r = request(*required, roles);
            for (i, (name, role, vote)) in earlier.iter().enumerate() {
                r.vote(
                    person(name, *role),
                    *vote,
                    None,
                    Tier::Production,
                    at(i as i64 + 1),
                )
                .unwrap_or_else(|e| panic!("{case}: earlier vote refused: {e:?}"));
            }
            let voter = Voter {
                workload: *workload,
                ..person(voter, *role)
            };
            let got = r.vote(voter, *kind, Some("c".into()), Tier::Production, at(*now));
            assert_eq!(&got, expected, "{case}");
        }
    }

    #[test]
    fn a_refused_vote_changes_nothing_and_a_decided_request_keeps_its_time() {
        let mut r = request(2, &[Role::EngLead, Role::SecurityTeam]);
        let before = r.clone();
        let at = Timestamp::from_unix_millis;
        assert!(
            r.vote(
                person("dev", Role::EngLead),
                VoteKind::Approve,
                None,
                Tier::Production,
                at(1)
            )
            .is_err()
        );
        assert_eq!(r, before);
        r.vote(
            person("a", Role::EngLead),
            VoteKind::Approve,
            None,
            Tier::Production,
            at(5),
        )
        .unwrap();
        r.vote(
            person("b", Role::SecurityTeam),
            VoteKind::Approve,
            None,
            Tier::Production,
            at(9),
        )
        .unwrap();
        assert_eq!(r.status, RequestStatus::Approved);
        assert_eq!(r.decided_at, Some(at(9)));
        assert!(!r.expire(at(100_000)), "a decided request never expires");
        assert_eq!(r.status_at(at(100_000)), RequestStatus::Approved);
    }

    #[test]
    fn the_override_is_exactly_what_was_asked_from_the_last_approval() {
        let mut r = request(2, &[Role::EngLead, Role::SecurityTeam]);
        let at = Timestamp::from_unix_millis;
        r.vote(
            person("lead", Role::EngLead),
            VoteKind::Approve,
            None,
            Tier::Production,
            at(1_000),
        )
        .unwrap();
        r.vote(
            person("sec", Role::SecurityTeam),
            VoteKind::Approve,
            Some("ok".into()),
            Tier::Production,
            at(2_000),
        )
        .unwrap();
        let o = r.approved_override("ovr_1".into(), at(2_000));
        assert_eq!(o.action, Action::CanaryStart);
        assert_eq!(o.environment, Environment::PRODUCTION);
        assert_eq!(o.service.as_deref(), Some("payments"));
        assert_eq!(o.release_id.as_deref(), Some("v1.2.3"));
        assert_eq!(o.approver, "lead, sec");
        assert_eq!(o.approvers, vec!["lead", "sec"]);
        assert_eq!(o.approver_role, Role::SecurityTeam);
        assert_eq!(o.request_id.as_deref(), Some("req_1"));
        assert_eq!(o.created_at, at(2_000));
        assert_eq!(
            o.expires_at,
            at(2_000 + 30 * 60_000),
            "TTL from the approval"
        );
    }

    #[test]
    fn expiry_is_decided_by_the_clock() {
        let at = Timestamp::from_unix_millis;
        let mut r = request(2, &[Role::EngLead]);
        assert_eq!(r.status_at(at(59_999)), RequestStatus::Pending);
        assert_eq!(r.status_at(at(60_000)), RequestStatus::Expired);
        assert!(!r.expire(at(59_999)));
        assert!(r.expire(at(60_000)));
        assert_eq!(r.status, RequestStatus::Expired);
        assert!(!r.expire(at(70_000)), "once");
    }

    fn rule(
        actions: &[Action],
        environments: &[&str],
        required: u32,
        roles: &[Role],
    ) -> ApprovalRule {
        ApprovalRule {
            actions: actions.to_vec(),
            environments: environments
                .iter()
                .map(|e| EnvironmentSelector::parse(e).unwrap())
                .collect(),
            required,
            approver_roles: roles.to_vec(),
        }
    }

    fn three_environments() -> Environments {
        let spec = |name: &str, tier| EnvironmentSpec {
            name: Environment::parse(name).unwrap(),
            tier,
            promotes_from: Vec::new(),
        };
        Environments::new(vec![
            spec("staging", Tier::Staging),
            spec("production", Tier::Production),
            spec("production-eu", Tier::Production),
        ])
        .unwrap()
    }

    #[test]
    fn rules_match_by_action_and_environment_or_tier_first_rule_first() {
        let environments = three_environments();
        let policy = ApprovalPolicy::new(
            vec![
                rule(
                    &[Action::Rollback],
                    &["production-eu"],
                    1,
                    &[Role::OncallLead],
                ),
                rule(
                    &[Action::CanaryStart, Action::Rollback],
                    &["tier:production"],
                    2,
                    &[],
                ),
            ],
            &environments,
        )
        .unwrap();
        let env = |name| environments.parse(name).unwrap();
        let needed = |action, name| {
            let r = policy.requirement(action, env(name));
            (r.required, r.roles, r.ruled)
        };
        use Role::*;
        assert_eq!(
            needed(Action::CanaryStart, "production-eu"),
            (2, vec![SecurityTeam, EngLead], true)
        );
        assert_eq!(
            needed(Action::Rollback, "production-eu"),
            (1, vec![OncallLead], true)
        );
        assert_eq!(
            needed(Action::Rollback, "production"),
            (2, vec![SecurityTeam, EngLead, OncallLead], true)
        );
        assert_eq!(
            needed(Action::CanaryStart, "staging"),
            (1, vec![SecurityTeam, EngLead], false),
            "no rule: §4"
        );
        assert_eq!(
            needed(Action::CanaryPromote, "production"),
            (1, vec![SecurityTeam, EngLead], false)
        );
        assert!(
            policy
                .rule_for(Action::LoadShed, env("production"))
                .is_none()
        );
        assert_eq!(
            EnvironmentSelector::parse("tier:production")
                .unwrap()
                .to_string(),
            "tier:production"
        );
    }

    #[test]
    fn stricter_settings_reach_pending_requests_and_looser_ones_do_not() {
        let mut r = request(1, &[Role::EngLead, Role::SecurityTeam]);
        let stricter = Requirement {
            required: 2,
            roles: vec![Role::SecurityTeam],
            ruled: true,
        };
        r.tighten(&stricter, 20);
        assert_eq!(
            (r.required, r.approver_roles.clone(), r.ttl_minutes),
            (2, vec![Role::SecurityTeam], 20)
        );
        let looser = Requirement {
            required: 1,
            roles: vec![Role::SecurityTeam, Role::EngLead],
            ruled: true,
        };
        r.tighten(&looser, 240);
        assert_eq!(
            (r.required, r.approver_roles.clone(), r.ttl_minutes),
            (2, vec![Role::SecurityTeam], 20)
        );
        let mut decided = request(1, &[Role::EngLead]);
        decided.status = RequestStatus::Approved;
        decided.tighten(&stricter, 5);
        assert_eq!(
            (decided.required, decided.ttl_minutes),
            (1, 30),
            "history stays as it was"
        );
    }

    #[test]
    fn promotion_is_ruled_no_less_strictly_than_the_start_whose_override_covers_it() {
        let environments = three_environments();
        let policy = |rules| ApprovalPolicy::new(rules, &environments);
        use Action::*;
        use Role::*;
        let err = policy(vec![rule(&[CanaryPromote], &["tier:production"], 2, &[])]).unwrap_err();
        assert!(err.contains("a start override also covers"), "{err}");
        assert!(
            policy(vec![
                rule(&[CanaryPromote], &["tier:production"], 2, &[]),
                rule(&[CanaryStart], &["tier:production"], 1, &[]),
            ])
            .is_err(),
            "fewer approvals for the start"
        );
        assert!(
            policy(vec![
                rule(&[CanaryPromote], &["production"], 1, &[SecurityTeam]),
                rule(&[CanaryStart], &["production"], 1, &[]),
            ])
            .is_err(),
            "other roles for the start"
        );
        assert!(
            policy(vec![rule(
                &[CanaryStart, CanaryPromote],
                &["tier:production"],
                2,
                &[]
            )])
            .is_ok()
        );
        assert!(
            policy(vec![rule(&[CanaryStart], &["tier:production"], 2, &[])]).is_ok(),
            "start alone"
        );
    }

    #[test]
    fn rules_that_could_never_be_met_are_refused() {
        let environments = three_environments();
        let refused = |r: ApprovalRule| ApprovalPolicy::new(vec![r], &environments).unwrap_err();
        assert!(
            refused(rule(&[Action::CanaryStart], &["production"], 0, &[])).contains("required")
        );
        assert!(refused(rule(&[], &["production"], 1, &[])).contains("actions"));
        assert!(refused(rule(&[Action::CanaryStart], &[], 1, &[])).contains("environments"));
        assert!(refused(rule(&[Action::CanaryStart], &["qa"], 1, &[])).contains("qa"));
        assert!(
            refused(rule(
                &[Action::CanaryStart],
                &["tier:production"],
                1,
                &[Role::Developer]
            ))
            .contains("none of `approver_roles`")
        );
        assert!(
            refused(rule(
                &[Action::CanaryStart],
                &["production"],
                1,
                &[Role::OncallLead]
            ))
            .contains("none of `approver_roles`")
        );
        assert!(
            refused(rule(
                &[Action::CanaryStart],
                &["production"],
                1,
                &[Role::EngLead, Role::Developer]
            ))
            .contains("developer may approve none")
        );
        assert!(
            refused(rule(&[Action::CanaryStart], &["production"], 101, &[]))
                .contains("at most 100")
        );
        assert!(EnvironmentSelector::parse("tier:qa").is_err());
        assert!(EnvironmentSelector::parse("Prod!").is_err());
    }
}
