//! Freezes (SPEC §16).

use deploy_safety_core::{Action, Environment, Freeze, Timestamp};

use crate::StoreError;

/// A freeze with what the engine last announced of it.
#[derive(Clone, Debug)]
pub struct FreezeRecord {
    pub freeze: Freeze,
    /// The start of the window announced with `freeze.started` and not yet with
    /// `freeze.ended`.
    pub announced_window_start: Option<Timestamp>,
    /// When the engine next looks whether a window opened or closed; `None`: never again.
    pub next_check_at: Option<Timestamp>,
}

/// Freezes.
pub trait FreezeTx {
    /// Stores a new freeze and the scopes the gate looks it up by.
    fn insert_freeze(&mut self, record: &FreezeRecord) -> Result<(), StoreError>;
    fn get_freeze(&mut self, id: &str) -> Result<Option<FreezeRecord>, StoreError>;
    /// Replaces a stored freeze's body and announcement state (its scope never changes).
    fn update_freeze(&mut self, record: &FreezeRecord) -> Result<(), StoreError>;
    /// Newest first, at most `limit`: those not over at `now`, or every one with `all`.
    fn list_freezes(
        &mut self,
        now: Timestamp,
        all: bool,
        limit: u32,
    ) -> Result<Vec<Freeze>, StoreError>;
    /// Freezes not over at `now` whose scope covers (action, environment, service), found by
    /// key: how many other freezes exist does not matter.
    fn freezes_for(
        &mut self,
        action: Action,
        environment: Environment,
        service: Option<&str>,
        now: Timestamp,
    ) -> Result<Vec<Freeze>, StoreError>;
    /// Freezes whose `next_check_at` has come, oldest check first, at most `limit`.
    fn freezes_due(&mut self, now: Timestamp, limit: u32) -> Result<Vec<FreezeRecord>, StoreError>;
}
