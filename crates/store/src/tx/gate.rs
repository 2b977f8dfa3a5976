//! The gate's state and overrides.

use deploy_safety_core::{Action, Environment, GateState, Override, Timestamp};

use crate::StoreError;

/// The gate's state and overrides.
pub trait GateTx {
    fn gate_state(&mut self) -> Result<GateState, StoreError>;
    fn put_gate_state(&mut self, state: &GateState) -> Result<(), StoreError>;

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
}
