//! Incidents.

use deploy_safety_core::{Incident, OpenIncident, Timestamp};

use crate::{IncidentQuery, StoreError};

/// Incidents.
pub trait IncidentTx {
    fn insert_incident(&mut self, incident: &Incident) -> Result<(), StoreError>;
    /// Replaces the incident's state and history.
    fn update_incident(&mut self, incident: &Incident) -> Result<(), StoreError>;
    fn get_incident(&mut self, id: &str) -> Result<Option<Incident>, StoreError>;
    /// Newest first.
    fn list_incidents(&mut self, query: &IncidentQuery) -> Result<Vec<Incident>, StoreError>;
    /// Every open incident, as the gate sees it.
    fn open_incidents(&mut self) -> Result<Vec<OpenIncident>, StoreError>;
    /// Incidents opened at or after `since`, whatever their status now, oldest first.
    fn incidents_opened_since(&mut self, since: Timestamp) -> Result<Vec<Incident>, StoreError>;
}
