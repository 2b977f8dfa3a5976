//! Overrides (SPEC §4): who may create them, when they are active, and which one covers a request.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::environment::Tier;
use crate::model::{Action, Environment, Role};
use crate::time::Timestamp;

/// A time-limited approval of one action in one environment, optionally for one release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    pub id: String,
    pub action: Action,
    pub environment: Environment,
    /// When set, the override covers only actions on this release.
    pub release_id: Option<String>,
    /// When set, the override covers only requests that name this service (SPEC §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub reason: String,
    /// Who approved it: the principal that created it, or every approver of the request that
    /// made it, joined by `, ` (SPEC §19).
    pub approver: String,
    /// Every approver, one name each.
    #[schema(value_type = Vec<crate::text::PrincipalName>)]
    pub approvers: Vec<String>,
    /// The highest role among the approvers.
    pub approver_role: Role,
    /// The override request whose approvals made it (SPEC §19); absent for one created
    /// directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
    /// How many gated actions this override has allowed.
    pub use_count: u64,
    pub last_used_at: Option<Timestamp>,
}

/// Where an override stands at a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OverrideStatus {
    Active,
    /// Not revoked and not active: past `expiresAt` (or, if the clock was set back, before
    /// `createdAt`).
    Expired,
    Revoked,
}

impl Override {
    /// Active from creation until `expiresAt` (exclusive) unless revoked. This is the only
    /// place expiry is decided; an override expiring exactly `now` is not active.
    pub fn is_active_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.created_at <= now && now < self.expires_at
    }

    /// Revoked, active (exactly when [`Override::is_active_at`]), or otherwise expired.
    pub fn status_at(&self, now: Timestamp) -> OverrideStatus {
        if self.revoked_at.is_some() {
            OverrideStatus::Revoked
        } else if self.is_active_at(now) {
            OverrideStatus::Active
        } else {
            OverrideStatus::Expired
        }
    }

    /// Whether this override's release binding admits a request on `release`: an unbound
    /// override covers any release (or none); a bound one only that exact release.
    pub fn covers_release(&self, release: Option<&str>) -> bool {
        match self.release_id.as_deref() {
            None => true,
            Some(bound) => release == Some(bound),
        }
    }

    /// Whether this override's service binding admits a request naming `service`: one without
    /// a service covers every request in its environment; one with a service only that service.
    pub fn covers_service(&self, service: Option<&str>) -> bool {
        match self.service.as_deref() {
            None => true,
            Some(bound) => service == Some(bound),
        }
    }
}

/// SPEC §4's table, read by tier (§15): may `role` create an override for `action` in an
/// environment of `tier`?
pub fn may_create_override(role: Role, action: Action, tier: Tier) -> bool {
    match role {
        Role::SecurityTeam => true,
        Role::EngLead => matches!(
            action,
            Action::CanaryStart | Action::CanaryPromote | Action::Rollback
        ),
        Role::OncallLead => action == Action::Rollback && tier == Tier::Production,
        Role::Developer => false,
    }
}

/// Whether `role` may create any override at all (under the table, only a developer may not):
/// a role that may not is refused before a lookup, so 403 comes before 404 (SPEC §3).
pub fn may_create_any_override(role: Role) -> bool {
    Action::ALL
        .iter()
        .any(|a| Tier::ALL.iter().any(|t| may_create_override(role, *a, *t)))
}

/// The roles that may create an override for `action` in a `tier` environment, for hints and
/// errors.
pub fn roles_that_may_override(action: Action, tier: Tier) -> Vec<Role> {
    Role::ALL
        .iter()
        .copied()
        .filter(|role| may_create_override(*role, action, tier))
        .collect()
}

/// Overrides grouped by what they approve, so finding the one that covers a request does not
/// depend on how many other overrides exist.
#[derive(Debug, Default, Clone)]
pub struct OverrideIndex {
    by_scope: HashMap<(Action, Environment), Scope>,
}

#[derive(Debug, Default, Clone)]
struct Scope {
    any_release: ByService,
    by_release: HashMap<String, ByService>,
}

#[derive(Debug, Default, Clone)]
struct ByService {
    any_service: Vec<Override>,
    by_service: HashMap<String, Vec<Override>>,
}

impl ByService {
    fn push(&mut self, o: Override) {
        match o.service.clone() {
            None => self.any_service.push(o),
            Some(service) => self.by_service.entry(service).or_default().push(o),
        }
    }

    fn lists_mut(&mut self) -> impl Iterator<Item = &mut Vec<Override>> {
        std::iter::once(&mut self.any_service).chain(self.by_service.values_mut())
    }

    fn all(&self) -> impl Iterator<Item = &Override> {
        self.any_service
            .iter()
            .chain(self.by_service.values().flatten())
    }

    /// The oldest active override for `service`: bound to it first, then unbound.
    fn covering(&self, service: Option<&str>, now: Timestamp) -> Option<&Override> {
        let bound = service
            .and_then(|s| self.by_service.get(s))
            .and_then(|list| list.iter().find(|o| o.is_active_at(now)));
        bound.or_else(|| self.any_service.iter().find(|o| o.is_active_at(now)))
    }
}

impl Scope {
    fn all(&self) -> impl Iterator<Item = &Override> {
        self.any_release
            .all()
            .chain(self.by_release.values().flat_map(ByService::all))
    }
}

impl OverrideIndex {
    pub fn new(overrides: impl IntoIterator<Item = Override>) -> Self {
        let mut index = OverrideIndex::default();
        for o in overrides {
            let scope = index.by_scope.entry((o.action, o.environment)).or_default();
            match o.release_id.clone() {
                None => scope.any_release.push(o),
                Some(release) => scope.by_release.entry(release).or_default().push(o),
            }
        }
        for scope in index.by_scope.values_mut() {
            scope
                .any_release
                .lists_mut()
                .for_each(|l| sort_oldest_first(l));
            for by_service in scope.by_release.values_mut() {
                by_service.lists_mut().for_each(|l| sort_oldest_first(l));
            }
        }
        index
    }

    pub fn len(&self) -> usize {
        self.by_scope.values().map(|s| s.all().count()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_scope.is_empty()
    }

    /// The override that approves `action` in `environment` on `release` for `service` at
    /// `now`, if any.
    ///
    /// When several do, the most specific wins (bound to this release over unbound, then bound
    /// to this service over unbound), then the oldest (`createdAt`, then `id`), so the choice is
    /// stable and explainable in the audit log.
    pub fn covering(
        &self,
        action: Action,
        environment: Environment,
        release: Option<&str>,
        service: Option<&str>,
        now: Timestamp,
    ) -> Option<&Override> {
        let scope = self.by_scope.get(&(action, environment))?;
        let bound = release
            .and_then(|r| scope.by_release.get(r))
            .and_then(|by_service| by_service.covering(service, now));
        bound.or_else(|| scope.any_release.covering(service, now))
    }

    /// The override with this id, if it is in the index.
    pub fn by_id(&self, action: Action, environment: Environment, id: &str) -> Option<&Override> {
        self.by_scope
            .get(&(action, environment))?
            .all()
            .find(|o| o.id == id)
    }
}

fn sort_oldest_first(list: &mut [Override]) {
    list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §4, every cell: role × action × environment.
    #[test]
    fn override_scope_table() {
        use Action::*;
        use Role::*;
        use Tier::*;
        #[rustfmt::skip]
        let table: &[(Role, Action, Tier, bool)] = &[
            (SecurityTeam, CanaryStart,   Staging,    true),
            (SecurityTeam, CanaryStart,   Production, true),
            (SecurityTeam, CanaryPromote, Staging,    true),
            (SecurityTeam, CanaryPromote, Production, true),
            (SecurityTeam, Rollback,      Staging,    true),
            (SecurityTeam, Rollback,      Production, true),
            (SecurityTeam, LoadShed,      Staging,    true),
            (SecurityTeam, LoadShed,      Production, true),
            (EngLead,      CanaryStart,   Staging,    true),
            (EngLead,      CanaryStart,   Production, true),
            (EngLead,      CanaryPromote, Staging,    true),
            (EngLead,      CanaryPromote, Production, true),
            (EngLead,      Rollback,      Staging,    true),
            (EngLead,      Rollback,      Production, true),
            (EngLead,      LoadShed,      Staging,    false),
            (EngLead,      LoadShed,      Production, false),
            (OncallLead,   CanaryStart,   Staging,    false),
            (OncallLead,   CanaryStart,   Production, false),
            (OncallLead,   CanaryPromote, Staging,    false),
            (OncallLead,   CanaryPromote, Production, false),
            (OncallLead,   Rollback,      Staging,    false),
            (OncallLead,   Rollback,      Production, true),
            (OncallLead,   LoadShed,      Staging,    false),
            (OncallLead,   LoadShed,      Production, false),
            (Developer,    CanaryStart,   Staging,    false),
            (Developer,    CanaryStart,   Production, false),
            (Developer,    CanaryPromote, Staging,    false),
            (Developer,    CanaryPromote, Production, false),
            (Developer,    Rollback,      Staging,    false),
            (Developer,    Rollback,      Production, false),
            (Developer,    LoadShed,      Staging,    false),
            (Developer,    LoadShed,      Production, false),
        ];
        assert_eq!(
            table.len(),
            Role::ALL.len() * Action::ALL.len() * Tier::ALL.len()
        );
        for &(role, action, environment, expected) in table {
            assert_eq!(
                may_create_override(role, action, environment),
                expected,
                "{role} / {action} / {environment}"
            );
        }
        assert_eq!(
            roles_that_may_override(Rollback, Production),
            vec![SecurityTeam, EngLead, OncallLead]
        );
        assert_eq!(
            roles_that_may_override(LoadShed, Staging),
            vec![SecurityTeam]
        );
    }

    fn sample(id: &str, created: i64, expires: i64) -> Override {
        Override {
            id: id.into(),
            action: Action::CanaryStart,
            environment: Environment::PRODUCTION,
            release_id: None,
            service: None,
            reason: "r".into(),
            approver: "a".into(),
            approvers: vec!["a".into()],
            approver_role: Role::EngLead,
            request_id: None,
            created_at: Timestamp::from_unix_millis(created),
            expires_at: Timestamp::from_unix_millis(expires),
            revoked_at: None,
            revoked_by: None,
            use_count: 0,
            last_used_at: None,
        }
    }

    #[test]
    fn ttl_edges() {
        let o = sample("o", 1_000, 2_000);
        let at = Timestamp::from_unix_millis;
        assert!(!o.is_active_at(at(999)), "not before creation");
        assert!(o.is_active_at(at(1_000)), "active at creation");
        assert!(
            o.is_active_at(at(1_999)),
            "active one millisecond before expiry"
        );
        assert!(
            !o.is_active_at(at(2_000)),
            "expiring exactly now is not active"
        );
        assert_eq!(o.status_at(at(2_000)), OverrideStatus::Expired);
        assert_eq!(o.status_at(at(1_500)), OverrideStatus::Active);
        let revoked = Override {
            revoked_at: Some(at(1_200)),
            ..o
        };
        assert!(!revoked.is_active_at(at(1_500)));
        assert_eq!(revoked.status_at(at(3_000)), OverrideStatus::Revoked);
    }

    #[test]
    fn release_binding() {
        let unbound = sample("u", 0, 10);
        assert!(unbound.covers_release(None));
        assert!(unbound.covers_release(Some("v1")));
        let bound = Override {
            release_id: Some("v1".into()),
            ..sample("b", 0, 10)
        };
        assert!(bound.covers_release(Some("v1")));
        assert!(!bound.covers_release(Some("v2")));
        assert!(
            !bound.covers_release(None),
            "a check naming no release is not covered"
        );
    }

    #[test]
    fn index_prefers_bound_then_oldest_and_skips_inactive() {
        let now = Timestamp::from_unix_millis(500);
        let index = OverrideIndex::new([
            sample("newer", 200, 1_000),
            sample("older", 100, 1_000),
            sample("expired", 0, 500),
            Override {
                release_id: Some("v1".into()),
                ..sample("bound", 300, 1_000)
            },
        ]);
        assert_eq!(index.len(), 4);
        let hit = |release| {
            index
                .covering(
                    Action::CanaryStart,
                    Environment::PRODUCTION,
                    release,
                    None,
                    now,
                )
                .map(|o| o.id.clone())
        };
        assert_eq!(hit(Some("v1")).as_deref(), Some("bound"));
        assert_eq!(hit(Some("v2")).as_deref(), Some("older"));
        assert_eq!(hit(None).as_deref(), Some("older"));
        assert!(
            index
                .covering(Action::Rollback, Environment::PRODUCTION, None, None, now)
                .is_none()
        );
        assert!(
            index
                .by_id(Action::CanaryStart, Environment::PRODUCTION, "bound")
                .is_some()
        );
    }
}
