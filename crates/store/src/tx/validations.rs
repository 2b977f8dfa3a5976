//! Release validations and their runs.

use deploy_safety_core::{
    Environment, GateResult, Timestamp, Validation, ValidationRun, ValidationStatus,
};

use crate::StoreError;

/// Release validations and their runs.
pub trait ValidationTx {
    fn insert_validation(&mut self, validation: &Validation) -> Result<(), StoreError>;
    fn get_validation(&mut self, id: &str) -> Result<Option<Validation>, StoreError>;
    /// Newest first, at most `limit`.
    fn list_validations(
        &mut self,
        release_id: Option<&str>,
        environment: Option<Environment>,
        service: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Validation>, StoreError>;
    /// The newest validation of `release_id` in exactly (environment, service).
    fn latest_validation_of(
        &mut self,
        release_id: &str,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<Option<Validation>, StoreError>;
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
    /// Whether any run of any validation of `release_id` in `environment` passed, for
    /// `service` or for the environment as a whole (which covers every service).
    fn release_passed_validation(
        &mut self,
        release_id: &str,
        environment: Environment,
        service: Option<&str>,
    ) -> Result<bool, StoreError>;
}
