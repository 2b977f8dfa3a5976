//! The audit log.

use deploy_safety_core::{AuditDraft, AuditEntry, Timestamp};

use crate::{AuditQuery, StoreError};

/// The audit log.
pub trait AuditTx {
    /// Seals `draft` after the current head of the chain and appends it.
    fn append_audit(&mut self, draft: AuditDraft, at: Timestamp) -> Result<AuditEntry, StoreError>;
    fn audit_page(&mut self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Entries with seq greater than `after_seq`, in seq order, at most `limit`.
    fn audit_after(&mut self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;
    /// The number of entries and the hash of the last one.
    fn audit_head(&mut self) -> Result<Option<(u64, String)>, StoreError>;
}
