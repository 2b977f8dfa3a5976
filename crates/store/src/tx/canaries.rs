//! Canary deployments.

use deploy_safety_core::{Canary, Environment, Timestamp};

use crate::StoreError;

/// Canary deployments.
pub trait CanaryTx {
    /// Fails with [`StoreError::Conflict`] when (environment, service) already has an active
    /// canary.
    fn insert_canary(&mut self, canary: &Canary) -> Result<(), StoreError>;
    fn update_canary(&mut self, canary: &Canary) -> Result<(), StoreError>;
    fn get_canary(&mut self, id: &str) -> Result<Option<Canary>, StoreError>;
    /// The progressing or paused canary of (environment, service); `None` is the canary that
    /// names no service.
    fn active_canary(
        &mut self,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<Option<Canary>, StoreError>;
    /// The most recently started canary of (environment, service), active or not; `None` is
    /// the environment as a whole.
    fn latest_canary(
        &mut self,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<Option<Canary>, StoreError>;
    /// The most recently started canary of `release_id` in exactly (environment, service).
    fn latest_canary_of_release(
        &mut self,
        environment: Environment,
        service: Option<&str>,
        release_id: &str,
    ) -> Result<Option<Canary>, StoreError>;
    /// Newest first; `service` filters when given.
    fn list_canaries(
        &mut self,
        environment: Option<Environment>,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Canary>, StoreError>;
    /// Active canaries whose next evaluation is due at `now`.
    fn due_canaries(&mut self, now: Timestamp) -> Result<Vec<Canary>, StoreError>;
}
