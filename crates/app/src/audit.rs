//! Reading and verifying the audit log, its signed checkpoints, and the helpers every use case
//! writes entries with.
//!
//! Verification never parses an entry: it works on the stored bytes (`core::StoredEntry`), so
//! any edit shows as a broken chain naming the entry, never as an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deploy_safety_api_types::{
    AuditListEntry, AuditListQuery, AuditPage, AuditPublicKey, AuditVerification, CorruptAuditEntry,
};
use deploy_safety_core::checkpoint::{ALGORITHM, VerifyingKey};
use deploy_safety_core::{
    AuditDecision, AuditDraft, ChainBreak, ChainVerifier, Checkpoint, CheckpointKey, Environment,
    EventType, ReasonCode, STORED_COLUMNS, SignedCheckpoint, StoredEntry, Timestamp,
    checkpoint_due,
};
use deploy_safety_store::{AuditQuery, StoreError, Tx};
use serde_json::{Value, json};

use crate::{App, AppError, Caller, TxResult};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1_000;
/// Entries read per query while verifying: bounds memory, whatever the log's length.
const VERIFY_CHUNK: u32 = 5_000;

/// An entry written on behalf of `caller`; its details say how the caller authenticated
/// (`authenticatedBy`: `token`, `oidc:NAME`, `sso`).
pub(crate) fn entry(
    caller: &Caller,
    action: &str,
    environment: Option<Environment>,
    decision: AuditDecision,
    reason: ReasonCode,
    details: Value,
) -> AuditDraft {
    let details = with_auth_method(caller, details);
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

/// `details` with `authenticatedBy` added (details are always a JSON object).
pub(crate) fn with_auth_method(caller: &Caller, details: Value) -> Value {
    let mut details = details;
    if let Some(object) = details.as_object_mut() {
        object.insert("authenticatedBy".to_owned(), caller.auth.label().into());
    }
    details
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

/// Walks the whole chain in one snapshot and reports the first broken entry: every entry in
/// seq order, then the chain's recorded head (entries cut off the end), then the latest signed
/// checkpoint the database holds (a log truncated or re-hashed behind its back).
pub fn verify_chain(tx: &mut dyn Tx) -> Result<AuditVerification, StoreError> {
    verify_chain_unless(tx, &AtomicBool::new(false))
}

/// [`verify_chain`], giving up between chunks once `cancelled` is set.
fn verify_chain_unless(
    tx: &mut dyn Tx,
    cancelled: &AtomicBool,
) -> Result<AuditVerification, StoreError> {
    let mut verifier = ChainVerifier::new();
    let stored_checkpoint = tx.latest_checkpoint()?;
    let outcome = (|| -> Result<Result<(), ChainBreak>, StoreError> {
        let mut after = 0;
        loop {
            if cancelled.load(Ordering::Relaxed) {
                return Err(StoreError::Closed);
            }
            let chunk = tx.audit_after(after, VERIFY_CHUNK)?;
            let Some(last) = chunk.last() else { break };
            // Chunks are read in seq order from 1: every seq here is positive.
            after = u64::try_from(last.seq).unwrap_or(after);
            for e in &chunk {
                if let Err(broken) = verifier.check(e) {
                    return Ok(Err(broken));
                }
            }
        }
        let recorded = tx.audit_recorded_head()?;
        if let Err(broken) = verifier.finish(recorded.as_ref().map(|(s, h)| (*s, h.as_str()))) {
            return Ok(Err(broken));
        }
        match &stored_checkpoint {
            Some(Ok(checkpoint)) => Ok(check_against_log(
                tx,
                &SignedCheckpoint::from(checkpoint),
                verifier.verified(),
            )?
            .map_err(|(seq, problem)| ChainBreak {
                seq,
                problem: format!(
                    "the latest checkpoint (entry {}, signed {}): {problem}",
                    checkpoint.seq, checkpoint.at
                ),
            })),
            Some(Err(problem)) => Ok(Err(ChainBreak {
                seq: verifier.verified().max(1),
                problem: format!(
                    "the latest stored checkpoint cannot be read ({problem}): the checkpoints were altered"
                ),
            })),
            None => Ok(Ok(())),
        }
    })()?;
    Ok(AuditVerification {
        valid: outcome.is_ok(),
        entries_verified: verifier.verified(),
        head_hash: verifier.head_hash().to_owned(),
        first_broken: outcome.err(),
        latest_checkpoint: stored_checkpoint.and_then(Result::ok),
    })
}

/// Whether the log still holds the entry a checkpoint signed, with the signed hash; on failure
/// the seq to name (the first entry missing, or the one rewritten) and why.
pub fn check_against_log(
    tx: &mut dyn Tx,
    checkpoint: &SignedCheckpoint,
    log_end: u64,
) -> Result<Result<(), (u64, String)>, StoreError> {
    let stored = if checkpoint.seq == 0 {
        None
    } else {
        tx.audit_stored_hash(checkpoint.seq)?
    };
    let bytes = stored.as_ref().map(|v| v.text().unwrap_or_default());
    Ok(checkpoint.matches_log(bytes, log_end).map_err(|problem| {
        let seq = if stored.is_none() && checkpoint.seq > log_end {
            log_end + 1
        } else {
            checkpoint.seq
        };
        (seq, problem)
    }))
}

/// A kept checkpoint that failed a check, by its line in the file it came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointFailure {
    pub line: usize,
    /// The entry it checkpointed (none when the line is not a checkpoint at all).
    pub seq: Option<u64>,
    pub problem: String,
}

/// What checking kept checkpoints against the log found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointProof {
    /// Lines checked.
    pub checked: usize,
    /// The newest checkpoint (by `at`) among those that verified.
    pub newest: Option<SignedCheckpoint>,
    pub failures: Vec<CheckpointFailure>,
}

/// Checks checkpoints kept outside the database (each a line of a file, already read as a
/// checkpoint or not) against the log, in one snapshot: each signature with `keys`, and that
/// the log still holds each checkpointed entry with the signed hash. With `max_age` (`now`
/// and a length in milliseconds), the newest checkpoint must be that recent: checkpoints that
/// stopped arriving are a failure too.
pub fn prove_checkpoints(
    tx: &mut dyn Tx,
    lines: &[(usize, Result<SignedCheckpoint, String>)],
    keys: &[VerifyingKey],
    max_age: Option<(Timestamp, i64)>,
) -> Result<CheckpointProof, StoreError> {
    let log_end = tx.audit_head()?.map_or(0, |(seq, _)| seq);
    let mut failures = Vec::new();
    let mut newest: Option<(Timestamp, usize, SignedCheckpoint)> = None;
    let mut in_log = std::collections::HashMap::new();
    for (line, checkpoint) in lines {
        let fail = |seq, problem| CheckpointFailure {
            line: *line,
            seq,
            problem,
        };
        let checkpoint = match checkpoint {
            Ok(checkpoint) => checkpoint,
            Err(problem) => {
                failures.push(fail(None, format!("not a checkpoint: {problem}")));
                continue;
            }
        };
        let seq = Some(checkpoint.seq);
        if let Err(problem) = checkpoint.verify(keys) {
            failures.push(fail(seq, problem));
            continue;
        }
        let key = (checkpoint.seq, checkpoint.head_hash.clone());
        let found = match in_log.get(&key) {
            Some(found) => Clone::clone(found),
            None => {
                let found = check_against_log(tx, checkpoint, log_end)?;
                in_log.insert(key, found.clone());
                found
            }
        };
        if let Err((_, problem)) = found {
            failures.push(fail(
                seq,
                format!("checkpoint of {}: {problem}", checkpoint.at),
            ));
            continue;
        }
        match Timestamp::parse_rfc3339(&checkpoint.at) {
            Ok(at) => {
                if newest
                    .as_ref()
                    .is_none_or(|(newest_at, _, _)| at > *newest_at)
                {
                    newest = Some((at, *line, checkpoint.clone()));
                }
            }
            Err(e) => failures.push(fail(seq, e.to_string())),
        }
    }
    if let Some((now, max_ms)) = max_age {
        match &newest {
            Some((at, line, checkpoint)) if now.millis_since(*at) > max_ms => {
                failures.push(CheckpointFailure {
                    line: *line,
                    seq: Some(checkpoint.seq),
                    problem: format!(
                        "the newest checkpoint is from {}, older than the maximum age of {} s: checkpoints have stopped arriving",
                        checkpoint.at,
                        max_ms / 1_000
                    ),
                });
            }
            Some(_) => {}
            None => failures.push(CheckpointFailure {
                line: 0,
                seq: None,
                problem: "no valid checkpoint, so none is recent enough".to_owned(),
            }),
        }
    }
    if lines.is_empty() {
        failures.push(CheckpointFailure {
            line: 0,
            seq: None,
            problem: "the file holds no checkpoints".to_owned(),
        });
    }
    Ok(CheckpointProof {
        checked: lines.len(),
        newest: newest.map(|(_, _, c)| c),
        failures,
    })
}

/// An entry as `GET /audit` lists it: parsed, or, when its row no longer parses, marked
/// corrupt with its stored columns.
fn list_entry(stored: StoredEntry) -> AuditListEntry {
    match stored.parse() {
        Ok(entry) => AuditListEntry::Entry(entry),
        Err(problem) => {
            let mut raw = std::collections::BTreeMap::new();
            raw.insert("seq".to_owned(), Some(stored.seq.to_string()));
            for (name, value) in STORED_COLUMNS.iter().zip(stored.columns()) {
                raw.insert((*name).to_owned(), value.display());
            }
            AuditListEntry::Corrupt(CorruptAuditEntry {
                seq: stored.seq,
                corrupt: true,
                problem,
                raw,
            })
        }
    }
}

/// How the server signs checkpoints of the audit chain (SPEC §20).
#[derive(Clone, Debug)]
pub struct CheckpointSettings {
    /// The signing key, from `[audit] signing_key_file`.
    pub key: CheckpointKey,
    /// A checkpoint is made this often, whether or not entries were appended.
    pub interval: Duration,
    /// Each checkpoint is also appended here as one JSON line.
    pub file: Option<PathBuf>,
}

/// Appends `checkpoint` to `path` as one JSON line, on disk before it returns.
fn append_checkpoint_line(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_string(&SignedCheckpoint::from(checkpoint))
        .map_err(std::io::Error::other)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Sets the flag when dropped: the request that started a verification went away.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

pub(crate) fn parse_time(field: &str, text: Option<&str>) -> Result<Option<Timestamp>, AppError> {
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
        if query
            .cursor
            .is_some_and(|cursor| i64::try_from(cursor).is_err())
        {
            return Err(AppError::invalid(
                "cursor",
                format!("must be at most {}", i64::MAX),
            ));
        }
        let query = AuditQuery {
            since: parse_time("since", query.since.as_deref())?,
            until: parse_time("until", query.until.as_deref())?,
            action: query.action,
            environment: self.environment_filter("environment", query.environment)?,
            principal: query.principal,
            decision: query.decision,
            before_seq: query.cursor,
            limit,
        };
        let stored = self.store.read(move |tx| tx.audit_page(&query)).await?;
        // A seq someone set below 1 sorts last and ends the paging.
        let next_cursor = if stored.len() == limit as usize {
            stored.last().and_then(|e| u64::try_from(e.seq).ok())
        } else {
            None
        };
        Ok(AuditPage {
            entries: stored.into_iter().map(list_entry).collect(),
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

    /// `GET /audit/public-key`.
    pub fn audit_public_key(&self) -> Result<AuditPublicKey, AppError> {
        let key = &self.checkpoint_settings()?.key;
        Ok(AuditPublicKey {
            key_id: key.key_id().to_owned(),
            algorithm: ALGORITHM.to_owned(),
            public_key: key.public_key_pem(),
        })
    }

    /// `GET /audit/checkpoints/latest`.
    pub async fn latest_checkpoint(&self) -> Result<Checkpoint, AppError> {
        match self.store.read(|tx| tx.latest_checkpoint()).await? {
            Some(Ok(checkpoint)) => Ok(checkpoint),
            Some(Err(problem)) => Err(AppError::Conflict {
                reason: Some(ReasonCode::CheckpointCorrupt),
                message: format!(
                    "the latest stored checkpoint cannot be read ({problem}): the checkpoints were altered"
                ),
                hints: vec![
                    "Prove the log against the checkpoints kept elsewhere: deploy-safety audit verify --database-url URL --checkpoints FILE --public-key PEMFILE".to_owned(),
                ],
            }),
            None => Err(AppError::NotFound(
                "no checkpoint has been made yet".to_owned(),
            )),
        }
    }

    fn checkpoint_settings(&self) -> Result<&CheckpointSettings, AppError> {
        self.settings.checkpoints.as_ref().ok_or_else(|| {
            AppError::NotFound("this server signs no checkpoints (no signing key)".to_owned())
        })
    }

    /// Makes a checkpoint if one is due at `now`: signs the chain's head as appends see it
    /// (locked against appends on every replica until the checkpoint commits), stores it,
    /// announces it (event `audit.checkpoint`), then appends it to the checkpoint file. The
    /// due check is repeated inside the write, so two replicas overlapping during a change of
    /// leader make one checkpoint, not two.
    pub async fn make_checkpoint(&self, now: Timestamp) -> Result<Option<Checkpoint>, AppError> {
        let Some(settings) = self.settings.checkpoints.clone() else {
            return Ok(None);
        };
        let interval_ms = i64::try_from(settings.interval.as_millis()).unwrap_or(i64::MAX);
        // Most ticks find nothing due: a read says so without a write (which, on PostgreSQL,
        // would take the audit head's lock).
        let due = self
            .store
            .read(move |tx| {
                Ok(match tx.latest_checkpoint()? {
                    Some(Ok(latest)) => checkpoint_due(Some(latest.at), interval_ms, now),
                    _ => true,
                })
            })
            .await?;
        if !due {
            return Ok(None);
        }
        let key = settings.key.clone();
        let made_here = self
            .last_checkpoint
            .lock()
            .map_or(None, |last| last.clone());
        let (made, broken) = self
            .write_emitting(move |tx, emitter| -> TxResult<(Option<Checkpoint>, Option<String>)> {
                let (latest, unreadable) = match tx.latest_checkpoint()? {
                    Some(Ok(latest)) => (Some(latest), None),
                    Some(Err(problem)) => (None, Some(problem)),
                    None => (None, None),
                };
                // An unreadable latest checkpoint is evidence, not a reason to stop signing.
                if unreadable.is_none()
                    && !checkpoint_due(latest.as_ref().map(|c| c.at), interval_ms, now)
                {
                    return Ok(Ok((None, None)));
                }
                let (seq, head_hash) = tx.audit_chain_head()?;
                // The newest earlier checkpoint (this process's own counts even when the
                // stored ones were deleted) must still find its entry with its hash.
                let previous = match (made_here, latest) {
                    (Some(mine), Some(stored)) => Some(if mine.at >= stored.at { mine } else { stored }),
                    (mine, stored) => mine.or(stored),
                };
                let mut broken = unreadable.map(|problem| {
                    format!("the latest stored checkpoint cannot be read ({problem}): the checkpoints were altered")
                });
                if let Some(message) = &broken {
                    emitter.emit(
                        tx,
                        EventType::AuditChainBroken,
                        now,
                        None,
                        json!({ "problem": message, "headSeq": seq, "headHash": head_hash }),
                    )?;
                }
                if let Some(previous) = &previous
                    && let Err((_, problem)) =
                        check_against_log(tx, &SignedCheckpoint::from(previous), seq)?
                {
                    let message = format!(
                        "the checkpoint of entry {} made {} no longer matches the log: {problem}",
                        previous.seq, previous.at
                    );
                    emitter.emit(
                        tx,
                        EventType::AuditChainBroken,
                        now,
                        None,
                        json!({ "problem": message, "previous": SignedCheckpoint::from(previous), "headSeq": seq, "headHash": head_hash }),
                    )?;
                    broken = Some(message);
                }
                let checkpoint = key.sign(seq, &head_hash, now);
                tx.insert_checkpoint(&checkpoint)?;
                emitter.emit(
                    tx,
                    EventType::AuditCheckpoint,
                    now,
                    None,
                    json!(SignedCheckpoint::from(&checkpoint)),
                )?;
                Ok(Ok((Some(checkpoint), broken)))
            })
            .await?;
        if let Some(problem) = broken {
            tracing::error!(%problem, "the audit log was changed behind deploy-safety's back: prove it against the checkpoints kept elsewhere (deploy-safety audit verify --checkpoints)");
        }
        if let (Some(checkpoint), Ok(mut last)) = (&made, self.last_checkpoint.lock()) {
            *last = Some(checkpoint.clone());
        }
        if let (Some(checkpoint), Some(path)) = (&made, settings.file) {
            let line = checkpoint.clone();
            let appended = tokio::task::spawn_blocking(move || {
                append_checkpoint_line(&path, &line).map_err(|e| (path, e))
            })
            .await
            .map_err(|e| AppError::Internal(format!("the checkpoint file task failed: {e}")))?;
            if let Err((path, error)) = appended {
                // The checkpoint is stored and announced; only this copy is missing. The next
                // one covers everything this one did.
                tracing::error!(path = %path.display(), %error, seq = checkpoint.seq, "cannot append the checkpoint to the checkpoint file");
            }
        }
        Ok(made)
    }
}
