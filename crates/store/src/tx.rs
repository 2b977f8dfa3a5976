//! The operations a transaction offers. Every backend implements all of them with the same
//! meaning; the conformance suite in `tests/` holds them to it.

use deploy_safety_core::{
    Action, AuditDraft, AuditEntry, Canary, Environment, Event, EventType, GateResult, GateState,
    Incident, LoadShedding, OpenIncident, Override, Probe, ProbeDefinition, ProbeResult,
    ProbeState, ReleaseRecord, Role, Rollback, Timestamp, Validation, ValidationRun,
    ValidationStatus,
};

use crate::{AuditQuery, IncidentQuery, OutboxEntry, OutboxKind, StoreError, TokenRecord};

/// One transaction. Reads see the transaction's own writes; nothing is visible to others until
/// the store commits.
pub trait Tx {
    // The gate.
    fn gate_state(&mut self) -> Result<GateState, StoreError>;
    fn put_gate_state(&mut self, state: &GateState) -> Result<(), StoreError>;

    // Overrides.
    fn insert_override(&mut self, o: &Override) -> Result<(), StoreError>;
    fn get_override(&mut self, id: &str) -> Result<Option<Override>, StoreError>;
    /// Unrevoked overrides for `action` in `environment` that have not expired at `now`: a
    /// superset of those that may cover a request; the core decides which one does.
    fn unexpired_overrides(
        &mut self,
        action: Action,
        environment: Environment,
        now: Timestamp,
    ) -> Result<Vec<Override>, StoreError>;
    /// Active overrides at `now` (or, with `include_inactive`, every override), newest first,
    /// at most `limit`.
    fn list_overrides(
        &mut self,
        now: Timestamp,
        include_inactive: bool,
        limit: u32,
    ) -> Result<Vec<Override>, StoreError>;
    fn count_active_overrides(&mut self, now: Timestamp) -> Result<u64, StoreError>;
    /// Marks the override revoked; false if it does not exist or was already revoked.
    fn revoke_override(&mut self, id: &str, by: &str, at: Timestamp) -> Result<bool, StoreError>;
    fn record_override_use(&mut self, id: &str, at: Timestamp) -> Result<(), StoreError>;
    /// Unrevoked overrides expired at `now` whose expiry is not yet announced, oldest first.
    fn expired_unannounced(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Override>, StoreError>;
    /// Marks the override's expiry as announced; false if it already was.
    fn mark_expiry_announced(&mut self, id: &str) -> Result<bool, StoreError>;

    // Principals and tokens.
    /// The role of the principal with this name, if it exists.
    fn principal_role(&mut self, name: &str) -> Result<Option<Role>, StoreError>;
    fn insert_principal(&mut self, name: &str, role: Role, at: Timestamp)
    -> Result<(), StoreError>;
    /// Inserts a token of an existing principal (`token.role` is the principal's).
    fn insert_token(&mut self, token: &TokenRecord) -> Result<(), StoreError>;
    fn get_token(&mut self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token, oldest first.
    fn list_tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError>;
    fn count_tokens(&mut self) -> Result<u64, StoreError>;
    /// Marks the token revoked; false if it does not exist or was already revoked.
    fn revoke_token(&mut self, id: &str, at: Timestamp) -> Result<bool, StoreError>;
    /// Revokes every active token of the principal; returns the tokens revoked.
    fn revoke_tokens_of(
        &mut self,
        name: &str,
        at: Timestamp,
    ) -> Result<Vec<TokenRecord>, StoreError>;

    // Incidents.
    fn insert_incident(&mut self, incident: &Incident) -> Result<(), StoreError>;
    /// Replaces the incident's state and history.
    fn update_incident(&mut self, incident: &Incident) -> Result<(), StoreError>;
    fn get_incident(&mut self, id: &str) -> Result<Option<Incident>, StoreError>;
    /// Newest first.
    fn list_incidents(&mut self, query: &IncidentQuery) -> Result<Vec<Incident>, StoreError>;
    /// Every open incident, as the gate sees it.
    fn open_incidents(&mut self) -> Result<Vec<OpenIncident>, StoreError>;

    // Release validations.
    fn insert_validation(&mut self, validation: &Validation) -> Result<(), StoreError>;
    fn get_validation(&mut self, id: &str) -> Result<Option<Validation>, StoreError>;
    /// Newest first, at most `limit`.
    fn list_validations(
        &mut self,
        release_id: Option<&str>,
        environment: Option<Environment>,
        limit: u32,
    ) -> Result<Vec<Validation>, StoreError>;
    /// The validation's runs, oldest first.
    fn validation_runs(&mut self, validation_id: &str) -> Result<Vec<ValidationRun>, StoreError>;
    fn insert_validation_run(
        &mut self,
        validation_id: &str,
        run: &ValidationRun,
    ) -> Result<(), StoreError>;
    /// Records the outcome of a run that is still running; false if it is not (finished or
    /// abandoned meanwhile), in which case nothing changes.
    fn finish_validation_run(
        &mut self,
        validation_id: &str,
        number: u32,
        status: ValidationStatus,
        finished_at: Timestamp,
        gates: &[GateResult],
    ) -> Result<bool, StoreError>;
    /// Removes a run that is still running (its request failed before it could finish; the
    /// claim is undone). False if it is not running.
    fn discard_validation_run(
        &mut self,
        validation_id: &str,
        number: u32,
    ) -> Result<bool, StoreError>;
    /// Whether any run of any validation of `release_id` in `environment` passed.
    fn release_passed_validation(
        &mut self,
        release_id: &str,
        environment: Environment,
    ) -> Result<bool, StoreError>;

    // Health probes.
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

    // Canaries.
    /// Fails with [`StoreError::Conflict`] when the environment already has an active canary.
    fn insert_canary(&mut self, canary: &Canary) -> Result<(), StoreError>;
    fn update_canary(&mut self, canary: &Canary) -> Result<(), StoreError>;
    fn get_canary(&mut self, id: &str) -> Result<Option<Canary>, StoreError>;
    /// The environment's progressing or paused canary.
    fn active_canary(&mut self, environment: Environment) -> Result<Option<Canary>, StoreError>;
    /// Newest first.
    fn list_canaries(
        &mut self,
        environment: Option<Environment>,
        limit: u32,
    ) -> Result<Vec<Canary>, StoreError>;
    /// Active canaries whose next evaluation is due at `now`.
    fn due_canaries(&mut self, now: Timestamp) -> Result<Vec<Canary>, StoreError>;

    // Rollbacks and release history.
    fn insert_rollback(&mut self, rollback: &Rollback) -> Result<(), StoreError>;
    fn update_rollback(&mut self, rollback: &Rollback) -> Result<(), StoreError>;
    fn get_rollback(&mut self, id: &str) -> Result<Option<Rollback>, StoreError>;
    /// Newest first.
    fn list_rollbacks(
        &mut self,
        environment: Option<Environment>,
        limit: u32,
    ) -> Result<Vec<Rollback>, StoreError>;
    fn insert_release(&mut self, record: &ReleaseRecord) -> Result<(), StoreError>;
    /// Newest first.
    fn releases(
        &mut self,
        environment: Environment,
        limit: u32,
    ) -> Result<Vec<ReleaseRecord>, StoreError>;
    /// Whether `release_id` ever ran in `environment`.
    fn release_ran(
        &mut self,
        environment: Environment,
        release_id: &str,
    ) -> Result<bool, StoreError>;

    // Load shedding.
    /// The environment's setting (off if never set).
    fn load_shedding(&mut self, environment: Environment) -> Result<LoadShedding, StoreError>;
    fn put_load_shedding(&mut self, setting: &LoadShedding) -> Result<(), StoreError>;

    // Events and the outbox.
    /// Appends an event; its seq follows the last one.
    fn append_event(
        &mut self,
        event_type: EventType,
        at: Timestamp,
        environment: Option<Environment>,
        data: &serde_json::Value,
    ) -> Result<Event, StoreError>;
    /// Events with seq greater than `after`, oldest first.
    fn events_after(&mut self, after: u64, limit: u32) -> Result<Vec<Event>, StoreError>;
    fn get_event(&mut self, seq: u64) -> Result<Option<Event>, StoreError>;
    /// The seq of the newest event (0 when there is none).
    fn last_event_seq(&mut self) -> Result<u64, StoreError>;
    /// Queues work for the outside world, first tried at `at`.
    fn enqueue(
        &mut self,
        kind: OutboxKind,
        target: &str,
        event_seq: Option<u64>,
        rollback_id: Option<&str>,
        at: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Claims entries not done or failed whose next attempt is due at `now`, oldest first: their
    /// next attempt moves to `lease_until`, so no one else takes them meanwhile (on PostgreSQL
    /// rows another replica is claiming are skipped, `FOR UPDATE SKIP LOCKED`). If the claimer
    /// dies, they are due again at `lease_until`. Returns them as they were.
    fn claim_outbox(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    fn get_outbox(&mut self, id: u64) -> Result<Option<OutboxEntry>, StoreError>;
    /// Records an attempt's result.
    fn put_outbox(&mut self, entry: &OutboxEntry) -> Result<(), StoreError>;
    /// Every entry for one target, oldest first (for inspection and tests).
    fn outbox_for(
        &mut self,
        kind: OutboxKind,
        target: &str,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    // The audit log.
    /// Seals `draft` after the current head of the chain and appends it.
    fn append_audit(&mut self, draft: AuditDraft, at: Timestamp) -> Result<AuditEntry, StoreError>;
    fn audit_page(&mut self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Entries with seq greater than `after_seq`, in seq order, at most `limit`.
    fn audit_after(&mut self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
    /// The number of entries and the hash of the last one.
    fn audit_head(&mut self) -> Result<Option<(u64, String)>, StoreError>;
}
