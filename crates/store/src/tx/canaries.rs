//! Canary deployments.

use deploy_safety_core::{Canary, Environment, Timestamp};

use crate::StoreError;

/// Canary deployments.
pub trait CanaryTx {
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
}
