//! Single sign-on: logins in progress and sessions (SPEC §18).

use deploy_safety_core::Timestamp;

use crate::{LoginRequestRecord, SessionRecord, StoreError};

/// Logins in progress and the sessions they start.
pub trait SessionTx {
    fn insert_login_request(&mut self, request: &LoginRequestRecord) -> Result<(), StoreError>;
    /// The login with this state hash, if it is in progress (read only).
    fn get_login_request(
        &mut self,
        state_hash: &[u8],
    ) -> Result<Option<LoginRequestRecord>, StoreError>;
    /// Removes and returns the login with this state hash: a state is used once, whatever the
    /// outcome. The caller checks its expiry.
    fn take_login_request(
        &mut self,
        state_hash: &[u8],
    ) -> Result<Option<LoginRequestRecord>, StoreError>;
    /// How many logins are in progress (expired ones not yet purged included).
    fn count_login_requests(&mut self) -> Result<u64, StoreError>;
    /// Deletes logins that expired before `now`; returns how many.
    fn purge_login_requests(&mut self, now: Timestamp) -> Result<u64, StoreError>;
    /// Inserts a session of an existing principal.
    fn insert_session(&mut self, session: &SessionRecord) -> Result<(), StoreError>;
    fn get_session(&mut self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Records activity; false if the session does not exist or is revoked.
    fn touch_session(&mut self, id: &str, at: Timestamp) -> Result<bool, StoreError>;
    /// Every session, newest first.
    fn list_sessions(&mut self) -> Result<Vec<SessionRecord>, StoreError>;
    /// Marks the session revoked; false if it does not exist or was already revoked.
    fn revoke_session(&mut self, id: &str, by: &str, at: Timestamp) -> Result<bool, StoreError>;
    /// Revokes every unrevoked session exchanged for this token (SPEC §21); returns how many.
    fn revoke_sessions_of_token(
        &mut self,
        token_id: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Revokes every unrevoked session of the principal; returns them as revoked.
    fn revoke_sessions_of(
        &mut self,
        principal: &str,
        by: &str,
        at: Timestamp,
    ) -> Result<Vec<SessionRecord>, StoreError>;
}
