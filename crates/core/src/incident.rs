//! Incidents (SPEC §6): what opening, escalating and resolving one means for the gate.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Environment, OpenIncident, Severity, string_enum};
use crate::text::Reason;
use crate::time::Timestamp;

string_enum! {
    /// What kind of incident: security incidents can put the gate into lockdown.
    pub enum IncidentCategory ("incident category") {
        Security = "security",
        Operational = "operational",
    }
}

string_enum! {
    /// What one change did to an incident.
    pub enum IncidentChange ("incident change") {
        Opened = "opened",
        Escalated = "escalated",
        Resolved = "resolved",
    }
}

string_enum! {
    pub enum IncidentStatus ("incident status") {
        Open = "open",
        Resolved = "resolved",
    }
}

/// An incident and its history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub category: IncidentCategory,
    /// `None`: every environment.
    pub environment: Option<Environment>,
    pub status: IncidentStatus,
    pub opened_at: Timestamp,
    pub opened_by: String,
    pub updated_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub resolved_by: Option<String>,
    /// Every change, oldest first.
    pub history: Vec<IncidentEvent>,
}

/// One change to an incident: who, when, what and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentEvent {
    pub at: Timestamp,
    pub by: String,
    pub change: IncidentChange,
    pub severity: Severity,
    pub reason: Option<String>,
}

/// Why an incident change is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IncidentChangeError {
    #[error("escalation must raise the severity (it is {current}; {requested} is not higher)")]
    NotHigher {
        current: Severity,
        requested: Severity,
    },
    #[error("the incident is resolved")]
    Resolved,
}

impl Incident {
    /// A new open incident.
    pub fn open(
        id: String,
        title: &Reason,
        severity: Severity,
        category: IncidentCategory,
        environment: Option<Environment>,
        by: &str,
        now: Timestamp,
    ) -> Incident {
        Incident {
            id,
            title: title.as_str().to_owned(),
            severity,
            category,
            environment,
            status: IncidentStatus::Open,
            opened_at: now,
            opened_by: by.to_owned(),
            updated_at: now,
            resolved_at: None,
            resolved_by: None,
            history: vec![IncidentEvent {
                at: now,
                by: by.to_owned(),
                change: IncidentChange::Opened,
                severity,
                reason: None,
            }],
        }
    }

    /// Raises the severity; lowering or keeping it is refused (SPEC §6).
    pub fn escalate(
        &self,
        severity: Severity,
        reason: &Reason,
        by: &str,
        now: Timestamp,
    ) -> Result<Incident, IncidentChangeError> {
        if self.status == IncidentStatus::Resolved {
            return Err(IncidentChangeError::Resolved);
        }
        if severity <= self.severity {
            return Err(IncidentChangeError::NotHigher {
                current: self.severity,
                requested: severity,
            });
        }
        let mut next = self.clone();
        next.severity = severity;
        next.updated_at = now;
        next.history.push(IncidentEvent {
            at: now,
            by: by.to_owned(),
            change: IncidentChange::Escalated,
            severity,
            reason: Some(reason.as_str().to_owned()),
        });
        Ok(next)
    }

    pub fn resolve(
        &self,
        reason: &Reason,
        by: &str,
        now: Timestamp,
    ) -> Result<Incident, IncidentChangeError> {
        if self.status == IncidentStatus::Resolved {
            return Err(IncidentChangeError::Resolved);
        }
        let mut next = self.clone();
        next.status = IncidentStatus::Resolved;
        next.updated_at = now;
        next.resolved_at = Some(now);
        next.resolved_by = Some(by.to_owned());
        next.history.push(IncidentEvent {
            at: now,
            by: by.to_owned(),
            change: IncidentChange::Resolved,
            severity: self.severity,
            reason: Some(reason.as_str().to_owned()),
        });
        Ok(next)
    }

    /// SPEC §5: a security incident at critical severity puts the gate into lockdown. Returns
    /// the lockdown cause when this incident, open, should trigger it.
    pub fn lockdown_cause(&self) -> Option<String> {
        (self.status == IncidentStatus::Open
            && self.category == IncidentCategory::Security
            && self.severity == Severity::Critical)
            .then(|| format!("Security incident {} is critical: {}", self.id, self.title))
    }

    /// What the gate needs to know about this incident while it is open.
    pub fn as_open(&self) -> Option<OpenIncident> {
        (self.status == IncidentStatus::Open).then(|| OpenIncident {
            id: self.id.clone(),
            title: self.title.clone(),
            severity: self.severity,
            environment: self.environment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> Reason {
        Reason::parse(text).unwrap()
    }

    fn incident(severity: Severity, category: IncidentCategory) -> Incident {
        Incident::open(
            "inc_1".into(),
            &reason("db down"),
            severity,
            category,
            None,
            "alice",
            Timestamp::from_unix_millis(0),
        )
    }

    #[test]
    fn escalation_must_raise_severity() {
        let i = incident(Severity::High, IncidentCategory::Operational);
        let now = Timestamp::from_unix_millis(5);
        assert_eq!(
            i.escalate(Severity::High, &reason("same"), "bob", now),
            Err(IncidentChangeError::NotHigher {
                current: Severity::High,
                requested: Severity::High
            })
        );
        assert!(
            i.escalate(Severity::Low, &reason("lower"), "bob", now)
                .is_err()
        );
        let up = i
            .escalate(Severity::Critical, &reason("spreading"), "bob", now)
            .unwrap();
        assert_eq!(up.severity, Severity::Critical);
        assert_eq!(up.history.len(), 2);
        assert_eq!(up.history[1].change, IncidentChange::Escalated);
        assert_eq!(up.history[1].by, "bob");
        assert_eq!(up.updated_at, now);
    }

    #[test]
    fn resolved_incidents_cannot_change() {
        let i = incident(Severity::Low, IncidentCategory::Operational);
        let now = Timestamp::from_unix_millis(5);
        let done = i.resolve(&reason("fixed"), "carol", now).unwrap();
        assert_eq!(done.status, IncidentStatus::Resolved);
        assert_eq!(done.resolved_by.as_deref(), Some("carol"));
        assert_eq!(done.as_open(), None);
        assert_eq!(
            done.resolve(&reason("again"), "carol", now),
            Err(IncidentChangeError::Resolved)
        );
        assert_eq!(
            done.escalate(Severity::High, &reason("x"), "carol", now),
            Err(IncidentChangeError::Resolved)
        );
    }

    #[test]
    fn only_open_critical_security_incidents_trigger_lockdown() {
        assert!(
            incident(Severity::Critical, IncidentCategory::Security)
                .lockdown_cause()
                .unwrap()
                .contains("inc_1")
        );
        assert_eq!(
            incident(Severity::Critical, IncidentCategory::Operational).lockdown_cause(),
            None
        );
        assert_eq!(
            incident(Severity::High, IncidentCategory::Security).lockdown_cause(),
            None
        );
        let escalated = incident(Severity::High, IncidentCategory::Security)
            .escalate(
                Severity::Critical,
                &reason("exfiltration"),
                "bob",
                Timestamp::from_unix_millis(1),
            )
            .unwrap();
        assert!(escalated.lockdown_cause().is_some());
    }
}
