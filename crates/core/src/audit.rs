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

    /// The hash of this entry's fields and `prev_hash`, as lowercase hex: the hash of the
    /// entry as it is stored ([`StoredEntry::compute_hash`]), so writing and verifying agree by
    /// construction.
    pub fn compute_hash(&self) -> String {
        // Borrowed, not copied: every audited decision seals an entry.
        fn text(t: &str) -> Hashed<'_> {
            Hashed::Text(t.as_bytes())
        }
        fn optional(t: Option<&str>) -> Hashed<'_> {
            t.map_or(Hashed::Null, text)
        }
        hash_columns(
            i64::try_from(self.seq).unwrap_or(i64::MAX),
            [
                Hashed::Integer(self.at.unix_millis()),
                text(&self.principal),
                optional(self.role.map(Role::as_str)),
                text(&self.action),
                optional(self.environment.as_ref().map(Environment::as_str)),
                text(self.decision.as_str()),
                text(&self.reason),
                text(self.details.get()),
                text(&self.prev_hash),
            ],
        )
    }

    /// The entry as the store keeps it: one value per column.
    pub fn to_stored(&self) -> StoredEntry {
        let text = |t: &str| StoredValue::Text(t.as_bytes().to_vec());
        let optional = |t: Option<&str>| t.map_or(StoredValue::Null, text);
        StoredEntry {
            seq: i64::try_from(self.seq).unwrap_or(i64::MAX),
            at: StoredValue::Integer(self.at.unix_millis()),
            principal: text(&self.principal),
            role: optional(self.role.map(Role::as_str)),
            action: text(&self.action),
            environment: optional(self.environment.as_ref().map(Environment::as_str)),
            decision: text(self.decision.as_str()),
            reason: text(&self.reason),
            details: text(self.details.get()),
            prev_hash: text(&self.prev_hash),
            hash: text(&self.hash),
        }
    }
}

fn empty_details() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!("{{}} is valid JSON"))
}

/// One column's value exactly as the database holds it, before anything is parsed: what the
/// chain's hash covers, so that verifying never depends on an entry still making sense.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredValue {
    Null,
    Integer(i64),
    /// Text, as its bytes: after tampering it need not be UTF-8.
    Text(Vec<u8>),
    /// Anything else a column may have been made to hold (a real number, a blob), named by the
    /// database's storage type, with its bytes as the database renders them.
    Other {
        storage: String,
        bytes: Vec<u8>,
    },
}

impl StoredValue {
    /// What it is, for messages.
    fn kind(&self) -> &str {
        match self {
            StoredValue::Null => "NULL",
            StoredValue::Integer(_) => "an integer",
            StoredValue::Text(_) => "text",
            StoredValue::Other { storage, .. } => storage,
        }
    }

    /// The value as text, for people (invalid UTF-8 shown with replacement characters);
    /// `None` for NULL.
    pub fn display(&self) -> Option<String> {
        match self {
            StoredValue::Null => None,
            StoredValue::Integer(v) => Some(v.to_string()),
            StoredValue::Text(bytes) | StoredValue::Other { bytes, .. } => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
        }
    }

    /// An integer, or text that is exactly an integer's decimal digits (a database whose
    /// column was changed to hold text keeps the same digits: the same value).
    pub fn integer(&self) -> Option<i64> {
        match self {
            StoredValue::Integer(v) => Some(*v),
            StoredValue::Text(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| t.parse::<i64>().ok().filter(|v| v.to_string() == t)),
            StoredValue::Null | StoredValue::Other { .. } => None,
        }
    }

    /// The bytes of a text value (`None` for any other kind).
    pub fn text(&self) -> Option<&[u8]> {
        match self {
            StoredValue::Text(bytes) => Some(bytes),
            _ => None,
        }
    }
}

/// What a column of the audit log holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Integer,
    Text,
    /// Text or NULL: absent and empty hash differently.
    OptionalText,
}

/// The stored columns after `seq`, in hash order, with their shapes.
pub const STORED_COLUMNS: [&str; 10] = [
    "at",
    "principal",
    "role",
    "action",
    "environment",
    "decision",
    "reason",
    "details",
    "prev_hash",
    "hash",
];

const SHAPES: [Shape; 10] = [
    Shape::Integer,
    Shape::Text,
    Shape::OptionalText,
    Shape::Text,
    Shape::OptionalText,
    Shape::Text,
    Shape::Text,
    Shape::Text,
    Shape::Text,
    Shape::Text,
];

/// An audit entry as the store read it: `seq` (the row's key) and every other column as
/// stored. It may not parse; it can always be verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// The row's key: a position in the chain (1, 2, ...), unless someone changed it.
    pub seq: i64,
    pub at: StoredValue,
    pub principal: StoredValue,
    pub role: StoredValue,
    pub action: StoredValue,
    pub environment: StoredValue,
    pub decision: StoredValue,
    pub reason: StoredValue,
    pub details: StoredValue,
    pub prev_hash: StoredValue,
    pub hash: StoredValue,
}

impl StoredEntry {
    /// The columns after `seq`, in [`STORED_COLUMNS`] order.
    pub fn columns(&self) -> [&StoredValue; 10] {
        [
            &self.at,
            &self.principal,
            &self.role,
            &self.action,
            &self.environment,
            &self.decision,
            &self.reason,
            &self.details,
            &self.prev_hash,
            &self.hash,
        ]
    }

    /// Mutable access to the column named `name` (tests tamper with entries through it).
    pub fn column_mut(&mut self, name: &str) -> Option<&mut StoredValue> {
        Some(match name {
            "at" => &mut self.at,
            "principal" => &mut self.principal,
            "role" => &mut self.role,
            "action" => &mut self.action,
            "environment" => &mut self.environment,
            "decision" => &mut self.decision,
            "reason" => &mut self.reason,
            "details" => &mut self.details,
            "prev_hash" => &mut self.prev_hash,
            "hash" => &mut self.hash,
            _ => return None,
        })
    }

    /// The hash of the stored columns (all but `hash` itself) as lowercase hex, or why the
    /// row cannot be an entry deploy-safety wrote: a column holding another kind of value than
    /// its own (text where an integer belongs). Parses nothing.
    pub fn compute_hash(&self) -> Result<String, String> {
        let mut hashed = [Hashed::Null; 9];
        // Every column but `hash` itself.
        let columns = STORED_COLUMNS.iter().zip(SHAPES).zip(self.columns());
        for (slot, ((name, shape), value)) in hashed.iter_mut().zip(columns) {
            *slot = match (shape, value) {
                (Shape::Integer, value) => value.integer().map(Hashed::Integer),
                (Shape::OptionalText, StoredValue::Null) => Some(Hashed::Null),
                (Shape::Text | Shape::OptionalText, StoredValue::Text(bytes)) => {
                    Some(Hashed::Text(bytes))
                }
                (Shape::Text | Shape::OptionalText, _) => None,
            }
            .ok_or_else(|| {
                let wanted = match shape {
                    Shape::Integer => "an integer",
                    Shape::Text => "text",
                    Shape::OptionalText => "text or NULL",
                };
                format!(
                    "column `{name}` holds {}{}, where {wanted} belongs (the entry was altered)",
                    value.kind(),
                    value
                        .display()
                        .map(|v| format!(" `{}`", clip(&v)))
                        .unwrap_or_default(),
                )
            })?;
        }
        Ok(hash_columns(self.seq, hashed))
    }

    /// Reads the entry's values; the error says which column does not parse and why.
    pub fn parse(&self) -> Result<AuditEntry, String> {
        fn text<'a>(name: &str, value: &'a StoredValue) -> Result<&'a str, String> {
            match value {
                StoredValue::Text(bytes) => std::str::from_utf8(bytes)
                    .map_err(|_| format!("column `{name}` is not valid UTF-8")),
                other => Err(format!("column `{name}` holds {}, not text", other.kind())),
            }
        }
        fn optional<'a>(name: &str, value: &'a StoredValue) -> Result<Option<&'a str>, String> {
            match value {
                StoredValue::Null => Ok(None),
                other => text(name, other).map(Some),
            }
        }
        fn parsed<T: std::str::FromStr<Err = crate::model::UnknownValue>>(
            name: &str,
            value: &str,
        ) -> Result<T, String> {
            value.parse().map_err(|e| format!("column `{name}`: {e}"))
        }
        let at = match self.at.integer() {
            Some(millis) => Timestamp::from_unix_millis(millis),
            None => {
                return Err(format!(
                    "column `at` holds {}, not an integer",
                    self.at.kind()
                ));
            }
        };
        let details = text("details", &self.details)?;
        let details = RawValue::from_string(details.to_owned())
            .map_err(|e| format!("column `details` is not valid JSON: {e}"))?;
        let seq = u64::try_from(self.seq)
            .ok()
            .filter(|seq| *seq > 0)
            .ok_or_else(|| {
                format!(
                    "column `seq` holds {}, not a position in the chain",
                    self.seq
                )
            })?;
        Ok(AuditEntry {
            seq,
            at,
            principal: text("principal", &self.principal)?.to_owned(),
            role: optional("role", &self.role)?
                .map(|r| parsed("role", r))
                .transpose()?,
            action: text("action", &self.action)?.to_owned(),
            environment: optional("environment", &self.environment)?
                .map(|e| Environment::parse(e).map_err(|e| format!("column `environment`: {e}")))
                .transpose()?,
            decision: parsed("decision", text("decision", &self.decision)?)?,
            reason: text("reason", &self.reason)?.to_owned(),
            details,
            prev_hash: text("prev_hash", &self.prev_hash)?.to_owned(),
            hash: text("hash", &self.hash)?.to_owned(),
        })
    }
}

/// Long values cut for messages.
fn clip(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// A hashed column's value, borrowed.
#[derive(Clone, Copy)]
enum Hashed<'a> {
    Null,
    Integer(i64),
    Text(&'a [u8]),
}

/// The chain's hash of one entry: `seq` and the columns after it but `hash`, in
/// [`STORED_COLUMNS`] order, each length-prefixed. Integers hash as their decimal digits;
/// absent and empty optional text hash differently (absent is the empty field, present is
/// prefixed with `=`).
fn hash_columns(seq: i64, columns: [Hashed<'_>; 9]) -> String {
    let mut hasher = Sha256::new();
    let mut field = |parts: &[&[u8]]| {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        hasher.update((len as u64).to_be_bytes());
        for part in parts {
            hasher.update(part);
        }
    };
    field(&[HASH_DOMAIN]);
    field(&[seq.to_string().as_bytes()]);
    for (shape, column) in SHAPES.iter().zip(columns) {
        match (shape, column) {
            (_, Hashed::Null) => field(&[]),
            (_, Hashed::Integer(v)) => field(&[v.to_string().as_bytes()]),
            (Shape::OptionalText, Hashed::Text(bytes)) => field(&[b"=", bytes]),
            (_, Hashed::Text(bytes)) => field(&[bytes]),
        }
    }
    hex::encode(hasher.finalize())
}

/// The first entry at which a chain stops being valid, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainBreak {
    /// The seq of the first stored entry that fails (after removed entries: the one after
    /// them; for entries removed from the end: the first one missing).
    pub seq: u64,
    pub problem: String,
}

/// Walks a chain in seq order, one stored entry at a time, so any length can be verified in
/// bounded memory. It never parses an entry: every check is on stored bytes.
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

fn missing(from: u64, to: u64) -> String {
    if from == to {
        format!("entry {from} is missing")
    } else {
        format!("entries {from}–{to} are missing")
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next stored entry; on success it becomes the head.
    pub fn check(&mut self, entry: &StoredEntry) -> Result<(), ChainBreak> {
        // A seq below 1 is no position in the chain: it sorts before them all.
        let seq = u64::try_from(entry.seq).unwrap_or(0);
        let broken = |problem: String| ChainBreak { seq, problem };
        if seq != self.next_seq {
            return Err(broken(if seq > self.next_seq {
                format!("{} before this entry", missing(self.next_seq, seq - 1))
            } else {
                format!("entry {} appears out of order", entry.seq)
            }));
        }
        if entry.prev_hash.text() != Some(self.head_hash.as_bytes()) {
            return Err(broken(
                "prevHash does not match the hash of the entry before it".to_owned(),
            ));
        }
        let computed = entry.compute_hash().map_err(broken)?;
        if entry.hash.text() != Some(computed.as_bytes()) {
            return Err(broken(
                "hash does not match the entry's contents (the entry was altered)".to_owned(),
            ));
        }
        self.head_hash = computed;
        self.next_seq += 1;
        Ok(())
    }

    /// After the last entry: the chain must end where its recorded head (seq and hash of the
    /// last entry appended, kept beside the log) says, so entries cut off its end are caught.
    /// `recorded` is `None` when that record is missing or unreadable.
    pub fn finish(&self, recorded: Option<(u64, &str)>) -> Result<(), ChainBreak> {
        let verified = self.verified();
        let Some((recorded_seq, recorded_hash)) = recorded else {
            return Err(ChainBreak {
                seq: verified + 1,
                problem: "the record of the chain's head is missing or unreadable".to_owned(),
            });
        };
        if recorded_seq > verified {
            return Err(ChainBreak {
                seq: verified + 1,
                problem: format!(
                    "the log ends at entry {verified}, but its head records {recorded_seq} entries: {} (the log was truncated)",
                    missing(verified + 1, recorded_seq)
                ),
            });
        }
        if recorded_seq < verified {
            return Err(ChainBreak {
                seq: recorded_seq + 1,
                problem: format!(
                    "the head records {recorded_seq} entries, but the log holds {verified}: entries after {recorded_seq} were not appended by deploy-safety"
                ),
            });
        }
        if recorded_hash != self.head_hash {
            return Err(ChainBreak {
                seq: verified.max(1),
                problem: "the hash of the last entry differs from the one its head records"
                    .to_owned(),
            });
        }
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
    use proptest::prelude::*;
    use serde_json::json;

    fn draft(n: u64) -> AuditDraft {
        AuditDraft {
            principal: "alice".into(),
            role: if n.is_multiple_of(3) {
                None
            } else {
                Some(Role::SecurityTeam)
            },
            action: "security-gate.mode.set".into(),
            environment: if n.is_multiple_of(2) {
                Some(Environment::PRODUCTION)
            } else {
                None
            },
            decision: AuditDecision::Allowed,
            reason: "ALLOWED".into(),
            details: json!({"n": n, "to": "lockdown"}),
        }
    }

    fn chain(len: u64) -> Vec<StoredEntry> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=len)
            .map(|seq| {
                let e = AuditEntry::seal(
                    draft(seq),
                    seq,
                    Timestamp::from_unix_millis(1_764_547_200_000 + seq as i64),
                    &prev,
                );
                prev.clone_from(&e.hash);
                e.to_stored()
            })
            .collect()
    }

    /// Verifies like the store does: every entry, then the recorded head (here: the head the
    /// untouched chain had).
    fn verify(entries: &[StoredEntry], head: (u64, &str)) -> Result<u64, ChainBreak> {
        let mut v = ChainVerifier::new();
        for e in entries {
            v.check(e)?;
        }
        v.finish(Some(head))?;
        Ok(v.verified())
    }

    fn head_of(entries: &[StoredEntry]) -> (u64, String) {
        let last = entries.last().unwrap();
        (
            last.seq as u64,
            String::from_utf8(last.hash.text().unwrap().to_vec()).unwrap(),
        )
    }

    fn text(t: &str) -> StoredValue {
        StoredValue::Text(t.as_bytes().to_vec())
    }

    #[test]
    fn a_sealed_chain_verifies() {
        let entries = chain(5);
        let (seq, hash) = head_of(&entries);
        assert_eq!(verify(&entries, (seq, &hash)), Ok(5));
        assert_eq!(verify(&[], (0, GENESIS_HASH)), Ok(0));
    }

    /// The v1 format, written out independently: entries sealed before verification moved to
    /// stored bytes must keep verifying.
    fn v1_hash(e: &AuditEntry) -> String {
        let mut hasher = Sha256::new();
        let opt = |v: Option<&str>| v.map_or_else(String::new, |v| format!("={v}"));
        for bytes in [
            HASH_DOMAIN.to_vec(),
            e.seq.to_string().into_bytes(),
            e.at.unix_millis().to_string().into_bytes(),
            e.principal.clone().into_bytes(),
            opt(e.role.map(Role::as_str)).into_bytes(),
            e.action.clone().into_bytes(),
            opt(e.environment.as_ref().map(Environment::as_str)).into_bytes(),
            e.decision.as_str().as_bytes().to_vec(),
            e.reason.clone().into_bytes(),
            e.details.get().as_bytes().to_vec(),
            e.prev_hash.clone().into_bytes(),
        ] {
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(&bytes);
        }
        hex::encode(hasher.finalize())
    }

    #[test]
    fn the_hash_format_is_v1() {
        for e in chain(6) {
            let entry = e.parse().unwrap();
            assert_eq!(entry.hash, v1_hash(&entry));
        }
    }

    #[test]
    fn the_stored_hash_is_the_sealed_hash() {
        // Entries written before verification worked on stored bytes keep verifying: the
        // stored form hashes exactly as the typed entry always did.
        for e in chain(6) {
            assert_eq!(e.compute_hash().unwrap().as_bytes(), e.hash.text().unwrap());
            assert_eq!(e.parse().unwrap().to_stored(), e);
        }
    }

    /// One edit of one stored entry: what it does, and the seq verification must name.
    struct Edit {
        what: &'static str,
        edit: fn(&mut Vec<StoredEntry>),
        broken: u64,
    }

    #[test]
    fn every_kind_of_edit_is_named() {
        let edits = [
            Edit {
                what: "a changed principal",
                edit: |c| c[2].principal = text("mallory"),
                broken: 3,
            },
            Edit {
                what: "a role removed",
                edit: |c| c[1].role = StoredValue::Null,
                broken: 2,
            },
            Edit {
                what: "a role that does not parse",
                edit: |c| c[1].role = text("root"),
                broken: 2,
            },
            Edit {
                what: "a changed action",
                edit: |c| c[2].action = text("x"),
                broken: 3,
            },
            Edit {
                what: "an environment added",
                edit: |c| c[2].environment = text("staging"),
                broken: 3,
            },
            Edit {
                what: "a changed decision",
                edit: |c| c[2].decision = text("denied"),
                broken: 3,
            },
            Edit {
                what: "a changed reason",
                edit: |c| c[2].reason = text("OVERRIDE"),
                broken: 3,
            },
            Edit {
                what: "a character appended to details",
                edit: |c| {
                    let StoredValue::Text(d) = &mut c[1].details else {
                        unreachable!()
                    };
                    d.push(b'x');
                },
                broken: 2,
            },
            Edit {
                what: "details that are not UTF-8",
                edit: |c| c[3].details = StoredValue::Text(vec![0xff, 0xfe]),
                broken: 4,
            },
            Edit {
                what: "a changed time",
                edit: |c| c[2].at = StoredValue::Integer(7),
                broken: 3,
            },
            Edit {
                what: "a non-number in the time column",
                edit: |c| c[2].at = text("soon"),
                broken: 3,
            },
            Edit {
                what: "a number as text with other digits (a leading zero)",
                edit: |c| {
                    let StoredValue::Integer(at) = c[2].at else {
                        unreachable!()
                    };
                    c[2].at = text(&format!("0{at}"));
                },
                broken: 3,
            },
            Edit {
                what: "a real number in the time column",
                edit: |c| {
                    c[2].at = StoredValue::Other {
                        storage: "real".into(),
                        bytes: b"1.5".to_vec(),
                    }
                },
                broken: 3,
            },
            Edit {
                what: "a principal set to NULL",
                edit: |c| c[2].principal = StoredValue::Null,
                broken: 3,
            },
            Edit {
                what: "a changed hash",
                edit: |c| c[2].hash = text(GENESIS_HASH),
                broken: 3,
            },
            Edit {
                what: "a changed prevHash",
                edit: |c| c[2].prev_hash = text(GENESIS_HASH),
                broken: 3,
            },
            Edit {
                what: "a deleted entry",
                edit: |c| {
                    c.remove(1);
                },
                broken: 3,
            },
            Edit {
                what: "two deleted entries",
                edit: |c| {
                    c.drain(1..3);
                },
                broken: 4,
            },
            Edit {
                what: "the first entry deleted",
                edit: |c| {
                    c.remove(0);
                },
                broken: 2,
            },
            Edit {
                what: "the last entry deleted",
                edit: |c| {
                    c.pop();
                },
                broken: 5,
            },
            Edit {
                what: "two entries swapped (contents under their seqs)",
                edit: |c| {
                    let (a, b) = (c[2].clone(), c[3].clone());
                    c[2] = StoredEntry { seq: 3, ..b };
                    c[3] = StoredEntry { seq: 4, ..a };
                },
                broken: 3,
            },
            Edit {
                what: "an altered entry re-hashed",
                edit: |c| {
                    c[1].principal = text("mallory");
                    let hash = c[1].compute_hash().unwrap();
                    c[1].hash = text(&hash);
                },
                broken: 3,
            },
            Edit {
                what: "an entry appended outside deploy-safety",
                edit: |c| {
                    let forged = AuditEntry::seal(
                        draft(6),
                        6,
                        Timestamp::from_unix_millis(0),
                        std::str::from_utf8(c[4].hash.text().unwrap()).unwrap(),
                    );
                    c.push(forged.to_stored());
                },
                broken: 6,
            },
        ];
        for case in edits {
            let mut entries = chain(5);
            let (seq, hash) = head_of(&entries);
            (case.edit)(&mut entries);
            let broken = verify(&entries, (seq, &hash)).unwrap_err();
            assert_eq!(broken.seq, case.broken, "{}: {broken:?}", case.what);
        }
    }

    #[test]
    fn the_same_digits_stored_as_text_are_the_same_value() {
        // A column changed to hold text (PostgreSQL `ALTER COLUMN ... TYPE text`) keeps every
        // entry's digits: nothing was edited, and the chain verifies.
        let mut entries = chain(4);
        let (seq, hash) = head_of(&entries);
        for e in &mut entries {
            let StoredValue::Integer(at) = e.at else {
                unreachable!()
            };
            e.at = text(&at.to_string());
        }
        assert_eq!(verify(&entries, (seq, &hash)), Ok(4));
        assert!(entries[0].parse().is_ok());
    }

    #[test]
    fn a_missing_head_record_is_a_break() {
        let v = ChainVerifier::new();
        assert_eq!(v.finish(None).unwrap_err().seq, 1);
    }

    #[test]
    fn unparseable_entries_say_which_column() {
        let mut e = chain(1).remove(0);
        e.details = text("{\"n\":");
        assert!(
            e.parse().unwrap_err().contains("details"),
            "{:?}",
            e.parse()
        );
        e.details = text("{}");
        e.at = text("soon");
        assert!(e.parse().unwrap_err().contains("`at`"));
        assert!(e.compute_hash().unwrap_err().contains("`at`"));
    }

    /// A column's stored value as the bytes a single-byte edit works on, and back: integers
    /// by their decimal digits (an edit that leaves no number stores text, as a database
    /// without column types would).
    fn edit_byte(value: &StoredValue, position: usize, byte: u8) -> StoredValue {
        let (bytes, integer) = match value {
            StoredValue::Null => (Vec::new(), false),
            StoredValue::Integer(v) => (v.to_string().into_bytes(), true),
            StoredValue::Text(b) | StoredValue::Other { bytes: b, .. } => (b.clone(), false),
        };
        let mut bytes = bytes;
        if bytes.is_empty() {
            bytes.push(byte);
        } else {
            let i = position % bytes.len();
            bytes[i] = if bytes[i] == byte {
                byte.wrapping_add(1)
            } else {
                byte
            };
        }
        match std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
        {
            Some(number) if integer => StoredValue::Integer(number),
            _ => StoredValue::Text(bytes),
        }
    }

    proptest! {
        /// For random chains and a random single-byte change in any stored column of any
        /// entry, verification names exactly the edited entry.
        #[test]
        fn a_single_byte_change_names_its_entry(
            len in 1u64..12,
            pick in any::<prop::sample::Index>(),
            column in 0usize..10,
            position in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let mut entries = chain(len);
            let (seq, hash) = head_of(&entries);
            let target = pick.index(entries.len());
            let name = STORED_COLUMNS[column];
            let slot = entries[target].column_mut(name).unwrap();
            let edited = edit_byte(slot, position, byte);
            prop_assume!(&edited != slot);
            *slot = edited;
            let broken = verify(&entries, (seq, &hash)).unwrap_err();
            prop_assert_eq!(broken.seq, target as u64 + 1, "{} of entry {}: {:?}", name, target + 1, broken);
        }

        /// Deleting any entry names the one after it (the last: the first one missing).
        #[test]
        fn a_deletion_names_the_entry_after_it(len in 1u64..12, pick in any::<prop::sample::Index>()) {
            let mut entries = chain(len);
            let (seq, hash) = head_of(&entries);
            let target = pick.index(entries.len());
            entries.remove(target);
            let broken = verify(&entries, (seq, &hash)).unwrap_err();
            prop_assert_eq!(broken.seq, target as u64 + 2 - u64::from(target as u64 + 1 == len));
        }
    }
}
