//! The audit log and its signed checkpoints.

use deploy_safety_core::{AuditDraft, AuditEntry, Checkpoint, StoredEntry, StoredValue, Timestamp};

use crate::{AuditQuery, StoreError};

/// The audit log and its signed checkpoints. Entries are read as stored ([`StoredEntry`]):
/// reading never fails because an entry was altered, so listing and verifying work on a log
/// that someone tampered with.
pub trait AuditTx {
    /// Seals `draft` after the current head of the chain and appends it.
    fn append_audit(&mut self, draft: AuditDraft, at: Timestamp) -> Result<AuditEntry, StoreError>;
    /// Newest first, filtered.
    fn audit_page(&mut self, query: &AuditQuery) -> Result<Vec<StoredEntry>, StoreError>;
    /// Entries with seq greater than `after_seq`, in seq order, at most `limit`.
    fn audit_after(&mut self, after_seq: u64, limit: u32) -> Result<Vec<StoredEntry>, StoreError>;
    /// The seq and hash of the last entry in the log.
    fn audit_head(&mut self) -> Result<Option<(u64, String)>, StoreError>;
    /// The chain's head as appends see it (seq and hash of the last entry appended, the
    /// genesis hash for an empty log). On PostgreSQL this locks the head's row until the
    /// transaction ends, like an append.
    fn audit_chain_head(&mut self) -> Result<(u64, String), StoreError>;
    /// The head as recorded beside the log, for verification: `None` when that record is
    /// missing or unreadable.
    fn audit_recorded_head(&mut self) -> Result<Option<(u64, String)>, StoreError>;
    /// The stored `hash` column of entry `seq`, if the log holds it.
    fn audit_stored_hash(&mut self, seq: u64) -> Result<Option<StoredValue>, StoreError>;

    fn insert_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// The checkpoint made last, or why its row cannot be read (it was altered): that is an
    /// answer, not an error, so verification can report it.
    fn latest_checkpoint(&mut self) -> Result<Option<Result<Checkpoint, String>>, StoreError>;
}
