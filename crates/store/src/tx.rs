//! The operations a transaction offers. Every backend implements all of them with the same
//! meaning; the conformance suite in `tests/` holds them to it.

use deploy_safety_core::{
    Action, AuditDraft, AuditEntry, Environment, GateState, Override, Role, Timestamp,
};

use crate::{AuditQuery, StoreError, TokenRecord};

/// One transaction. Reads see the transaction's own writes; nothing is visible to others until
/// the store commits.
pub trait Tx {
    // The gate.
    fn gate_state(&mut self) -> Result<GateState, StoreError>;
    fn put_gate_state(&mut self, state: &GateState) -> Result<(), StoreError>;

    // Overrides.
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

    // Principals and tokens.
    /// The role of the principal with this name, if it exists.
    fn principal_role(&mut self, name: &str) -> Result<Option<Role>, StoreError>;
    fn insert_principal(&mut self, name: &str, role: Role, at: Timestamp)
    -> Result<(), StoreError>;
    /// Inserts a token of an existing principal (`token.role` is the principal's).
    fn insert_token(&mut self, token: &TokenRecord) -> Result<(), StoreError>;
    fn get_token(&mut self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Every token, oldest first.
    fn list_tokens(&mut self) -> Result<Vec<TokenRecord>, StoreError>;
    fn count_tokens(&mut self) -> Result<u64, StoreError>;
    /// Marks the token revoked; false if it does not exist or was already revoked.
    fn revoke_token(&mut self, id: &str, at: Timestamp) -> Result<bool, StoreError>;
    /// Revokes every active token of the principal; returns the tokens revoked.
    fn revoke_tokens_of(
        &mut self,
        name: &str,
        at: Timestamp,
    ) -> Result<Vec<TokenRecord>, StoreError>;

    // The audit log.
    /// Seals `draft` after the current head of the chain and appends it.
    fn append_audit(&mut self, draft: AuditDraft, at: Timestamp) -> Result<AuditEntry, StoreError>;
    fn audit_page(&mut self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Entries with seq greater than `after_seq`, in seq order, at most `limit`.
    fn audit_after(&mut self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
    /// The number of entries and the hash of the last one.
    fn audit_head(&mut self) -> Result<Option<(u64, String)>, StoreError>;
}
