//! Rollbacks, release history and load shedding.

use deploy_safety_core::{Environment, LoadShedding, ReleaseRecord, Rollback};

use crate::StoreError;

/// Rollbacks, release history and load shedding.
pub trait ReleaseTx {
    fn insert_rollback(&mut self, rollback: &Rollback) -> Result<(), StoreError>;
    fn update_rollback(&mut self, rollback: &Rollback) -> Result<(), StoreError>;
    fn get_rollback(&mut self, id: &str) -> Result<Option<Rollback>, StoreError>;
    /// The newest rollback of exactly (environment, service) away from `from_version`; with
    /// `executed_only`, only one that was executed (executing, executed or succeeded).
    fn latest_rollback_from(
        &mut self,
        environment: Environment,
        service: Option<&str>,
        from_version: &str,
        executed_only: bool,
    ) -> Result<Option<Rollback>, StoreError>;
    /// Newest first.
    fn list_rollbacks(
        &mut self,
        environment: Option<Environment>,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Rollback>, StoreError>;
    fn insert_release(&mut self, record: &ReleaseRecord) -> Result<(), StoreError>;
    /// Newest first: the history of (environment, service); `None` is the environment as a
    /// whole.
    fn releases(
        &mut self,
        environment: Environment,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ReleaseRecord>, StoreError>;
    /// Whether `release_id` ever ran in (environment, service).
    fn release_ran(
        &mut self,
        environment: Environment,
        service: Option<&str>,
        release_id: &str,
    ) -> Result<bool, StoreError>;

    /// The setting of (environment, service) (off if never set).
    fn load_shedding(
        &mut self,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<LoadShedding, StoreError>;
    fn put_load_shedding(&mut self, setting: &LoadShedding) -> Result<(), StoreError>;
}
