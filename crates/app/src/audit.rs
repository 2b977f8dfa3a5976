//! Reading and verifying the audit log, and the helpers every use case writes entries with.

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

/// Records a refusal by policy as a `denied` entry and answers with `error`. The transaction
/// commits the entry: refusals are part of what happened.
pub(crate) fn refuse<T>(
    tx: &mut dyn Tx,
    caller: &Caller,
    action: &str,
    environment: Option<Environment>,
    error: AppError,
    now: Timestamp,
) -> TxResult<T> {
    let reason = match &error {
        AppError::Forbidden { reason, .. } => *reason,
        AppError::Blocked(decision) => decision.reason,
        AppError::Conflict {
            reason: Some(reason),
            ..
        } => *reason,
        _ => ReasonCode::Recorded,
    };
    tx.append_audit(
        entry(
            caller,
            action,
            environment,
            AuditDecision::Denied,
            reason,
            json!({ "message": error.to_string() }),
        ),
        now,
    )?;
    Ok(Err(error))
}

/// Walks the whole chain in one snapshot and reports the first broken entry.
pub fn verify_chain(tx: &mut dyn Tx) -> Result<AuditVerification, StoreError> {
    let mut verifier = ChainVerifier::new();
    let mut after = 0;
    loop {
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

    pub async fn verify_audit(&self) -> Result<AuditVerification, AppError> {
        Ok(self.store.read(verify_chain).await?)
    }
}
