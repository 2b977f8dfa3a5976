//! Reading and verifying the audit log, and the helpers every use case writes entries with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deploy_safety_api_types::{AuditListQuery, AuditPage, AuditVerification};
use deploy_safety_core::{
    AuditDecision, AuditDraft, ChainVerifier, Environment, ReasonCode, Timestamp,
};
use deploy_safety_store::{AuditQuery, StoreError, Tx};
use serde_json::{Value, json};

use crate::{App, AppError, Caller, TxResult};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1_000;
/// Entries read per query while verifying: bounds memory, whatever the log's length.
const VERIFY_CHUNK: u32 = 5_000;

/// An entry written on behalf of `caller`.
pub(crate) fn entry(
    caller: &Caller,
    action: &str,
    environment: Option<Environment>,
    decision: AuditDecision,
    reason: ReasonCode,
    details: Value,
) -> AuditDraft {
    AuditDraft {
        principal: caller.name.clone(),
        role: Some(caller.role),
        action: action.to_owned(),
        environment,
        decision,
        reason: reason.as_str().to_owned(),
        details,
    }
}

/// A refusal by policy (403): why, in words, and how to proceed.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub reason: ReasonCode,
    pub message: String,
    pub hints: Vec<String>,
}

/// Records a refusal as a `denied` entry and answers with it. The transaction commits the
/// entry: refusals are part of what happened.
pub(crate) fn refuse<T>(
    tx: &mut dyn Tx,
    caller: &Caller,
    action: &str,
    environment: Option<Environment>,
    refusal: Refusal,
    now: Timestamp,
) -> TxResult<T> {
    tx.append_audit(
        entry(
            caller,
            action,
            environment,
            AuditDecision::Denied,
            refusal.reason,
            json!({ "message": refusal.message, "hints": refusal.hints }),
        ),
        now,
    )?;
    Ok(Err(AppError::Forbidden {
        reason: refusal.reason,
        message: refusal.message,
        hints: refusal.hints,
    }))
}

/// Walks the whole chain in one snapshot and reports the first broken entry.
pub fn verify_chain(tx: &mut dyn Tx) -> Result<AuditVerification, StoreError> {
    verify_chain_unless(tx, &AtomicBool::new(false))
}

/// [`verify_chain`], giving up between chunks once `cancelled` is set.
fn verify_chain_unless(
    tx: &mut dyn Tx,
    cancelled: &AtomicBool,
) -> Result<AuditVerification, StoreError> {
    let mut verifier = ChainVerifier::new();
    let mut after = 0;
    loop {
        if cancelled.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        let chunk = tx.audit_after(after, VERIFY_CHUNK)?;
        let Some(last) = chunk.last() else { break };
        after = last.seq;
        for e in &chunk {
            if let Err(broken) = verifier.check(e) {
                return Ok(AuditVerification {
                    valid: false,
                    entries_verified: verifier.verified(),
                    head_hash: verifier.head_hash().to_owned(),
                    first_broken: Some(broken),
                });
            }
        }
    }
    Ok(AuditVerification {
        valid: true,
        entries_verified: verifier.verified(),
        head_hash: verifier.head_hash().to_owned(),
        first_broken: None,
    })
}

/// Sets the flag when dropped: the request that started a verification went away.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn parse_time(field: &str, text: Option<&str>) -> Result<Option<Timestamp>, AppError> {
    text.map(|t| Timestamp::parse_rfc3339(t).map_err(|e| AppError::invalid(field, e.to_string())))
        .transpose()
}

impl App {
    /// One page of the audit log, newest first, filtered.
    pub async fn audit_page(&self, query: AuditListQuery) -> Result<AuditPage, AppError> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(AppError::invalid(
                "limit",
                format!("must be from 1 to {MAX_PAGE}"),
            ));
        }
        let query = AuditQuery {
            since: parse_time("since", query.since.as_deref())?,
            until: parse_time("until", query.until.as_deref())?,
            action: query.action,
            environment: query.environment,
            principal: query.principal,
            decision: query.decision,
            before_seq: query.cursor,
            limit,
        };
        let entries = self.store.read(move |tx| tx.audit_page(&query)).await?;
        let next_cursor = if entries.len() == limit as usize {
            entries.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_cursor,
        })
    }

    /// Verifies the whole chain. One verification runs at a time (others wait their turn), and
    /// one whose caller went away stops at the next chunk: a full walk of a long log is
    /// expensive, and any token holder may ask for it.
    pub async fn verify_audit(&self) -> Result<AuditVerification, AppError> {
        let _turn = self
            .verify_turn
            .acquire()
            .await
            .map_err(|_| AppError::Unavailable("verification is shutting down".to_owned()))?;
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel = CancelOnDrop(Arc::clone(&cancelled));
        Ok(self
            .store
            .read(move |tx| verify_chain_unless(tx, &cancelled))
            .await?)
    }
}
