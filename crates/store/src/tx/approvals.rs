//! Override requests and their votes (SPEC §19).

use deploy_safety_core::{OverrideRequest, RequestStatus, Timestamp, Vote};

use crate::StoreError;

/// Override requests and their votes.
pub trait ApprovalTx {
    /// Stores a new request (its votes, if any, too).
    fn insert_override_request(&mut self, request: &OverrideRequest) -> Result<(), StoreError>;
    /// The request with its votes, in the order cast.
    fn get_override_request(&mut self, id: &str) -> Result<Option<OverrideRequest>, StoreError>;
    /// Newest first, at most `limit`; with `status`, only those that stand so at `now` (a
    /// pending request past its time is `expired`, marked or not).
    fn list_override_requests(
        &mut self,
        status: Option<RequestStatus>,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<OverrideRequest>, StoreError>;
    /// Records one person's vote; [`StoreError::Conflict`] if they voted already.
    fn insert_vote(&mut self, request_id: &str, vote: &Vote) -> Result<(), StoreError>;
    /// Moves a pending request to `status` (with the override it made); false if it was no
    /// longer pending.
    fn decide_override_request(
        &mut self,
        id: &str,
        status: RequestStatus,
        at: Timestamp,
        override_id: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Pending requests whose time ran out by `now`, oldest deadline first, at most `limit`.
    fn override_requests_due(
        &mut self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<OverrideRequest>, StoreError>;
}
