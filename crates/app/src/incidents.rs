//! Incidents (SPEC §6): open, list, show, escalate, resolve. Allowed in every mode, to every
//! role; every change audited; a critical security incident puts the gate into lockdown.

use deploy_safety_api_types::{
    EscalateIncidentRequest, IncidentList, IncidentListQuery, OpenIncidentRequest,
    ResolveIncidentRequest,
};
use deploy_safety_core::{
    AuditDecision, EventType, Incident, IncidentChangeError, Reason, ReasonCode, Timestamp,
    trigger_lockdown,
};
use deploy_safety_store::{IncidentQuery, StoreError, Tx};
use serde_json::json;

use crate::audit::entry;
use crate::events::Emitter;
use crate::gate::{new_id, record_lockdown_trigger};
use crate::{App, AppError, Caller, TxResult};

const DEFAULT_LIST: u32 = 100;
const MAX_LIST: u32 = 500;

/// Records a change to an incident; if the incident is now an open critical security
/// incident, the gate enters lockdown (or, already in lockdown, records the new cause).
fn record(
    tx: &mut dyn Tx,
    emitter: &mut Emitter<'_>,
    caller: &Caller,
    (action, event): (&str, EventType),
    incident: &Incident,
    details: serde_json::Value,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.append_audit(
        entry(
            caller,
            action,
            incident.environment,
            AuditDecision::Allowed,
            ReasonCode::Allowed,
            details,
        ),
        now,
    )?;
    emitter.emit(
        tx,
        event,
        now,
        incident.environment,
        json!({
            "incidentId": incident.id,
            "title": incident.title,
            "severity": incident.severity,
            "category": incident.category,
            "status": incident.status,
            "by": caller.name,
        }),
    )?;
    if let Some(cause) = incident.lockdown_cause() {
        let state = tx.gate_state()?;
        let (next, trigger) = trigger_lockdown(&state, &cause, now);
        tx.put_gate_state(&next)?;
        record_lockdown_trigger(tx, emitter, caller, &trigger, now)?;
    }
    Ok(())
}

fn change_error(id: &str, error: IncidentChangeError) -> AppError {
    match error {
        IncidentChangeError::NotHigher { .. } => AppError::invalid("severity", error.to_string()),
        IncidentChangeError::Resolved => AppError::Conflict {
            reason: None,
            message: format!("incident {id} is resolved"),
            hints: Vec::new(),
        },
    }
}

impl App {
    /// `POST /incidents`.
    pub async fn open_incident(
        &self,
        caller: &Caller,
        request: OpenIncidentRequest,
    ) -> Result<Incident, AppError> {
        let title = Reason::parse(&request.title).map_err(AppError::invalid_text("title"))?;
        let environment = self.environment_filter("environment", request.environment)?;
        let caller = caller.clone();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| {
            let now = clock.now();
            let incident = Incident::open(
                new_id("inc", now),
                &title,
                request.severity,
                request.category,
                environment,
                &caller.name,
                now,
            );
            tx.insert_incident(&incident)?;
            let details = serde_json::to_value(&incident).unwrap_or_else(|_| json!({}));
            record(
                tx,
                emitter,
                &caller,
                ("incident.open", EventType::IncidentOpened),
                &incident,
                details,
                now,
            )?;
            Ok(Ok(incident))
        })
        .await
    }

    /// `POST /incidents/{id}/escalate`: the severity must go up (400 otherwise).
    pub async fn escalate_incident(
        &self,
        caller: &Caller,
        id: &str,
        request: EscalateIncidentRequest,
    ) -> Result<Incident, AppError> {
        let reason = Reason::parse(&request.reason).map_err(AppError::invalid_text("reason"))?;
        self.change_incident(
            caller,
            id,
            ("incident.escalate", EventType::IncidentEscalated),
            move |incident, by, now| incident.escalate(request.severity, &reason, by, now),
        )
        .await
    }

    /// `POST /incidents/{id}/resolve`.
    pub async fn resolve_incident(
        &self,
        caller: &Caller,
        id: &str,
        request: ResolveIncidentRequest,
    ) -> Result<Incident, AppError> {
        let reason = Reason::parse(&request.reason).map_err(AppError::invalid_text("reason"))?;
        self.change_incident(
            caller,
            id,
            ("incident.resolve", EventType::IncidentResolved),
            move |incident, by, now| incident.resolve(&reason, by, now),
        )
        .await
    }

    async fn change_incident(
        &self,
        caller: &Caller,
        id: &str,
        action: (&'static str, EventType),
        change: impl FnOnce(&Incident, &str, Timestamp) -> Result<Incident, IncidentChangeError>
        + Send
        + 'static,
    ) -> Result<Incident, AppError> {
        let caller = caller.clone();
        let id = id.to_owned();
        let clock = self.clock.clone();
        self.write_emitting(move |tx, emitter| -> TxResult<Incident> {
            let now = clock.now();
            let Some(before) = tx.get_incident(&id)? else {
                return Ok(Err(AppError::NotFound(format!(
                    "no incident with id `{id}`"
                ))));
            };
            let after = match change(&before, &caller.name, now) {
                Ok(after) => after,
                Err(e) => return Ok(Err(change_error(&id, e))),
            };
            tx.update_incident(&after)?;
            let details = json!({
                "incidentId": after.id,
                "title": after.title,
                "category": after.category,
                "from": { "severity": before.severity, "status": before.status },
                "to": { "severity": after.severity, "status": after.status },
                "reason": after.history.last().and_then(|e| e.reason.clone()),
            });
            record(tx, emitter, &caller, action, &after, details, now)?;
            Ok(Ok(after))
        })
        .await
    }

    /// `GET /incidents/{id}`.
    pub async fn get_incident(&self, id: &str) -> Result<Incident, AppError> {
        let key = id.to_owned();
        self.store
            .read(move |tx| tx.get_incident(&key))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no incident with id `{id}`")))
    }

    /// `GET /incidents`, newest first.
    pub async fn list_incidents(&self, query: IncidentListQuery) -> Result<IncidentList, AppError> {
        let limit = query.limit.unwrap_or(DEFAULT_LIST);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(AppError::invalid(
                "limit",
                format!("must be from 1 to {MAX_LIST}"),
            ));
        }
        let query = IncidentQuery {
            status: query.status,
            severity: query.severity,
            environment: self.environment_filter("environment", query.environment)?,
            limit,
        };
        let incidents = self.store.read(move |tx| tx.list_incidents(&query)).await?;
        Ok(IncidentList { incidents })
    }
}
