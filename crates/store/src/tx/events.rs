//! Events and the outbox of deliveries.

use deploy_safety_core::{Environment, Event, EventType, Timestamp};

use crate::{OutboxEntry, OutboxKind, StoreError};

/// Events and the outbox of deliveries.
pub trait EventTx {
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
    /// Queues a callback answering the GitHub request `request_id`, first tried at `at`.
    fn enqueue_github_callback(
        &mut self,
        target: &str,
        request_id: &str,
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
}
