//! Soaks.

use deploy_safety_core::{Environment, Soak, Timestamp};

use crate::{SoakQuery, StoreError};

/// Soaks: a release watched in an environment against its thresholds (SPEC §23).
pub trait SoakTx {
    /// Fails with [`StoreError::Conflict`] when a soak of the same release, environment and
    /// service is already running.
    fn insert_soak(&mut self, soak: &Soak) -> Result<(), StoreError>;
    fn update_soak(&mut self, soak: &Soak) -> Result<(), StoreError>;
    fn get_soak(&mut self, id: &str) -> Result<Option<Soak>, StoreError>;
    /// Newest first.
    fn list_soaks(&mut self, query: &SoakQuery) -> Result<Vec<Soak>, StoreError>;
    /// The running soak of `release_id` in `environment` for `service` (or for none).
    fn running_soak(
        &mut self,
        release_id: &str,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<Option<Soak>, StoreError>;
    /// Running soaks whose next evaluation is due at `now`.
    fn due_soaks(&mut self, now: Timestamp) -> Result<Vec<Soak>, StoreError>;
    /// Whether a soak of `release_id` in `environment` passed, for `service` or for the
    /// environment as a whole (which covers every service).
    fn release_passed_soak(
        &mut self,
        release_id: &str,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<bool, StoreError>;
}
