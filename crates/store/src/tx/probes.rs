//! Health probes, their results and the database probe's heartbeat.

use deploy_safety_core::{Probe, ProbeDefinition, ProbeResult, ProbeState, Timestamp};

use crate::StoreError;

/// Health probes, their results and the database probe's heartbeat.
pub trait ProbeTx {
    fn insert_probe(&mut self, probe: &Probe) -> Result<(), StoreError>;
    /// Replaces a probe's definition, keeping its id, state and history.
    fn update_probe_definition(
        &mut self,
        id: &str,
        definition: &ProbeDefinition,
    ) -> Result<(), StoreError>;
    fn get_probe(&mut self, id: &str) -> Result<Option<Probe>, StoreError>;
    fn probe_by_name(&mut self, name: &str) -> Result<Option<Probe>, StoreError>;
    /// Every probe, by name.
    fn list_probes(&mut self) -> Result<Vec<Probe>, StoreError>;
    /// Deletes the probe and its history; false if there was none.
    fn delete_probe(&mut self, id: &str) -> Result<bool, StoreError>;
    /// Probes whose next check is due at `now`.
    fn due_probes(&mut self, now: Timestamp) -> Result<Vec<Probe>, StoreError>;
    /// Records one check: the new state, when to check next, and the result in the history,
    /// keeping only the newest `keep` results. False if the probe no longer exists.
    fn record_probe_check(
        &mut self,
        id: &str,
        state: &ProbeState,
        next_check_at: Timestamp,
        result: &ProbeResult,
        keep: u32,
    ) -> Result<bool, StoreError>;
    /// The newest results first, at most `limit`.
    fn probe_results(&mut self, id: &str, limit: u32) -> Result<Vec<ProbeResult>, StoreError>;
    /// The database probe's write.
    fn touch_heartbeat(&mut self, at: Timestamp) -> Result<(), StoreError>;
}
