//! The audit log's hash chain (SPEC §12): how an entry is sealed and how a chain is verified.
//!
//! Each entry's hash covers every field of the entry and the previous entry's hash, so changing,
//! removing or reordering any entry breaks every hash after it. The details are hashed as the
//! exact JSON text that is stored, so verification never depends on how JSON is re-serialized.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::model::{Environment, Role, string_enum};
use crate::time::Timestamp;

/// The `prevHash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation: a hash of this format cannot be confused with any other SHA-256 use.
const HASH_DOMAIN: &[u8] = b"deploy-safety/audit/v1";

string_enum! {
    /// What an audit entry records.
    pub enum AuditDecision ("audit decision") {
        /// An action or request that was permitted.
        Allowed = "allowed",
        /// An action or request that was refused by policy.
        Denied = "denied",
        /// A fact recorded without a permission decision (an automatic trigger, a CLI change).
        Recorded = "recorded",
    }
}

/// An entry as the application writes it, before the store gives it a place in the chain.
#[derive(Clone, Debug)]
pub struct AuditDraft {
    pub principal: String,
    pub role: Option<Role>,
    /// What was done or asked, e.g. `security-gate.mode.set` or `deploy.canary.start`.
    pub action: String,
    pub environment: Option<Environment>,
    pub decision: AuditDecision,
    /// An UPPER_CASE reason code.
    pub reason: String,
    /// A JSON object with the particulars.
    pub details: serde_json::Value,
}

/// A sealed entry of the audit log.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Position in the chain: 1 for the first entry, no gaps.
    pub seq: u64,
    pub at: Timestamp,
    pub principal: String,
    pub role: Option<Role>,
    pub action: String,
    pub environment: Option<Environment>,
    pub decision: AuditDecision,
    pub reason: String,
    #[schema(value_type = Object)]
    pub details: Box<RawValue>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// Gives a draft its place after an entry with `prev_hash`, at `seq` and time `at`.
    pub fn seal(draft: AuditDraft, seq: u64, at: Timestamp, prev_hash: &str) -> AuditEntry {
        let details =
            RawValue::from_string(draft.details.to_string()).unwrap_or_else(|_| empty_details());
        let mut entry = AuditEntry {
            seq,
            at,
            principal: draft.principal,
            role: draft.role,
            action: draft.action,
            environment: draft.environment,
            decision: draft.decision,
            reason: draft.reason,
            details,
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// The hash of this entry's fields and `prev_hash`, as lowercase hex.
    pub fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        };
        field(HASH_DOMAIN);
        field(self.seq.to_string().as_bytes());
        field(self.at.unix_millis().to_string().as_bytes());
        field(self.principal.as_bytes());
        field(optional(self.role.map(Role::as_str)).as_bytes());
        field(self.action.as_bytes());
        field(optional(self.environment.map(Environment::as_str)).as_bytes());
        field(self.decision.as_str().as_bytes());
        field(self.reason.as_bytes());
        field(self.details.get().as_bytes());
        field(self.prev_hash.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// Absent and empty must hash differently: absent is the empty field, present is prefixed.
fn optional(value: Option<&str>) -> String {
    value.map_or_else(String::new, |v| format!("={v}"))
}

fn empty_details() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!("{{}} is valid JSON"))
}

/// The first entry at which a chain stops being valid, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainBreak {
    /// The seq of the first broken entry (for a gap: the seq that was expected).
    pub seq: u64,
    pub problem: String,
}

/// Walks a chain in seq order, one entry at a time, so any length can be verified in bounded
/// memory.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    next_seq: u64,
    head_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            next_seq: 1,
            head_hash: GENESIS_HASH.to_owned(),
        }
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next entry; on success it becomes the head.
    pub fn check(&mut self, entry: &AuditEntry) -> Result<(), ChainBreak> {
        if entry.seq != self.next_seq {
            return Err(ChainBreak {
                seq: self.next_seq,
                problem: format!(
                    "entry {} is missing (the next entry found is {})",
                    self.next_seq, entry.seq
                ),
            });
        }
        if entry.prev_hash != self.head_hash {
            return Err(ChainBreak {
                seq: entry.seq,
                problem: "prevHash does not match the hash of the entry before it".to_owned(),
            });
        }
        if entry.compute_hash() != entry.hash {
            return Err(ChainBreak {
                seq: entry.seq,
                problem: "hash does not match the entry's contents (the entry was altered)"
                    .to_owned(),
            });
        }
        self.head_hash.clone_from(&entry.hash);
        self.next_seq += 1;
        Ok(())
    }

    /// How many entries have been verified.
    pub fn verified(&self) -> u64 {
        self.next_seq - 1
    }

    /// The hash of the last verified entry (the genesis hash before any).
    pub fn head_hash(&self) -> &str {
        &self.head_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(n: u64) -> AuditDraft {
        AuditDraft {
            principal: "alice".into(),
            role: Some(Role::SecurityTeam),
            action: "security-gate.mode.set".into(),
            environment: if n.is_multiple_of(2) {
                Some(Environment::Production)
            } else {
                None
            },
            decision: AuditDecision::Allowed,
            reason: "ALLOWED".into(),
            details: json!({"n": n, "to": "lockdown"}),
        }
    }

    fn chain(len: u64) -> Vec<AuditEntry> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=len)
            .map(|seq| {
                let e = AuditEntry::seal(
                    draft(seq),
                    seq,
                    Timestamp::from_unix_millis(seq as i64),
                    &prev,
                );
                prev.clone_from(&e.hash);
                e
            })
            .collect()
    }

    fn verify(entries: &[AuditEntry]) -> Result<u64, ChainBreak> {
        let mut v = ChainVerifier::new();
        for e in entries {
            v.check(e)?;
        }
        Ok(v.verified())
    }

    #[test]
    fn a_sealed_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn altering_any_field_breaks_that_entry() {
        let alterations: Vec<fn(&mut AuditEntry)> = vec![
            |e| e.principal.push('x'),
            |e| e.role = None,
            |e| e.action.push('x'),
            |e| e.environment = Some(Environment::Staging),
            |e| e.decision = AuditDecision::Denied,
            |e| e.reason.push('x'),
            |e| e.details = RawValue::from_string("{\"n\":99}".into()).unwrap(),
            |e| e.at = e.at.plus_millis(1),
        ];
        for alter in alterations {
            let mut entries = chain(4);
            alter(&mut entries[2]);
            let broken = verify(&entries).unwrap_err();
            assert_eq!(broken.seq, 3, "{broken:?}");
        }
    }

    #[test]
    fn removing_an_entry_is_named() {
        let mut entries = chain(4);
        entries.remove(1);
        assert_eq!(verify(&entries).unwrap_err().seq, 2);
    }

    #[test]
    fn rehashing_an_altered_entry_breaks_the_next() {
        let mut entries = chain(4);
        entries[1].principal = "mallory".into();
        entries[1].hash = entries[1].compute_hash();
        let broken = verify(&entries).unwrap_err();
        assert_eq!(broken.seq, 3);
        assert!(broken.problem.contains("prevHash"));
    }

    #[test]
    fn absent_and_empty_hash_differently() {
        let mut a = chain(1).remove(0);
        let before = a.compute_hash();
        a.role = None;
        let without_role = a.compute_hash();
        assert_ne!(before, without_role);
        assert_ne!(optional(None), optional(Some("")));
    }
}
