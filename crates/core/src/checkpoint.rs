//! Signed checkpoints of the audit chain (SPEC §20): the chain's head, signed with an Ed25519
//! key kept outside the database, so copies kept elsewhere prove how long the log was and
//! what its entries' hashes were.
//!
//! The signed bytes are the UTF-8 text
//! `deploy-safety checkpoint v1\n{seq}\n{headHash}\n{at}\n{keyId}\n`, with `at` exactly as the
//! checkpoint shows it, so any stock Ed25519 tool can check a checkpoint.

pub use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::audit::GENESIS_HASH;
use crate::time::Timestamp;

/// The algorithm every checkpoint is signed with.
pub const ALGORITHM: &str = "Ed25519";

/// `keyId`: the first 16 hex digits of SHA-256 of the 32 raw public key bytes.
pub fn key_id(public_key: &VerifyingKey) -> String {
    let digest = Sha256::digest(public_key.as_bytes());
    hex::encode(&digest[..8])
}

/// The exact bytes a checkpoint's signature covers.
pub fn signed_text(seq: u64, head_hash: &str, at: &str, key_id: &str) -> String {
    format!("deploy-safety checkpoint v1\n{seq}\n{head_hash}\n{at}\n{key_id}\n")
}

/// A checkpoint of the audit chain: entry `seq` (0 for an empty log) had hash `headHash` at
/// `at`, signed by the key `keyId`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The last entry of the chain when it was signed (0: the log was empty).
    pub seq: u64,
    /// That entry's hash (the genesis hash for an empty log).
    pub head_hash: String,
    pub at: Timestamp,
    pub key_id: String,
    /// The Ed25519 signature of the signed text, in hex.
    pub signature: String,
}

/// The signing key of checkpoints, with what is derived from it.
#[derive(Clone)]
pub struct CheckpointKey {
    signing: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("key_id", &self.key_id)
            .field("signing", &"<redacted>")
            .finish()
    }
}

/// A private key file that is not an Ed25519 key in PKCS#8 PEM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
pub struct KeyFormatError(String);

impl CheckpointKey {
    /// The key whose secret is these 32 bytes (the caller draws them from the OS).
    pub fn from_secret(secret: &[u8; 32]) -> Self {
        Self::from_signing(SigningKey::from_bytes(secret))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let key_id = key_id(&signing.verifying_key());
        CheckpointKey { signing, key_id }
    }

    /// Reads a PKCS#8 PEM private key (as written by [`CheckpointKey::to_pem`] or by
    /// `openssl genpkey -algorithm ed25519`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyFormatError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self::from_signing)
            .map_err(|e| KeyFormatError(e.to_string()))
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, KeyFormatError> {
        self.signing
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| KeyFormatError(e.to_string()))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as PEM (SubjectPublicKeyInfo), for `GET /audit/public-key`.
    pub fn public_key_pem(&self) -> String {
        self.verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_else(|_| unreachable!("an Ed25519 public key always encodes"))
    }

    /// Signs the chain's head: entry `seq` with hash `head_hash`, at `at`.
    pub fn sign(&self, seq: u64, head_hash: &str, at: Timestamp) -> Checkpoint {
        let text = signed_text(seq, head_hash, &at.to_rfc3339(), &self.key_id);
        let signature = self.signing.sign(text.as_bytes());
        Checkpoint {
            seq,
            head_hash: head_hash.to_owned(),
            at,
            key_id: self.key_id.clone(),
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

/// Reads a public key in PEM (SubjectPublicKeyInfo).
pub fn public_key_from_pem(pem: &str) -> Result<VerifyingKey, KeyFormatError> {
    VerifyingKey::from_public_key_pem(pem).map_err(|e| KeyFormatError(e.to_string()))
}

/// A checkpoint as it was kept elsewhere (a JSON line of the checkpoint file, a webhook's
/// copy): its fields exactly as written, so the signature is checked over the text that was
/// signed, not over a re-formatted one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedCheckpoint {
    pub seq: u64,
    pub head_hash: String,
    pub at: String,
    pub key_id: String,
    pub signature: String,
}

impl From<&Checkpoint> for SignedCheckpoint {
    fn from(c: &Checkpoint) -> Self {
        SignedCheckpoint {
            seq: c.seq,
            head_hash: c.head_hash.clone(),
            at: c.at.to_rfc3339(),
            key_id: c.key_id.clone(),
            signature: c.signature.clone(),
        }
    }
}

impl SignedCheckpoint {
    /// Checks the signature with one of `keys` (the one whose id the checkpoint names), with
    /// Ed25519's strict verification. The error says what is wrong, in words.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<(), String> {
        let Some(key) = keys.iter().find(|k| key_id(k) == self.key_id) else {
            let known: Vec<String> = keys.iter().map(key_id).collect();
            return Err(format!(
                "signed by key {}, which is not among the public keys given ({})",
                self.key_id,
                known.join(", ")
            ));
        };
        let bytes = hex::decode(&self.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or("the signature is not 64 bytes in hex")?;
        let text = signed_text(self.seq, &self.head_hash, &self.at, &self.key_id);
        key.verify_strict(text.as_bytes(), &Signature::from_bytes(&bytes))
            .map_err(|_| {
                "the signature does not verify: the checkpoint was altered, or not signed by this key"
                    .to_owned()
            })
    }

    /// Checks the checkpoint against the log: `stored_hash` is the hash the database holds for
    /// entry `seq` (`None`: it holds no such entry), `log_end` the log's last seq.
    pub fn matches_log(&self, stored_hash: Option<&[u8]>, log_end: u64) -> Result<(), String> {
        if self.seq == 0 {
            return if self.head_hash == GENESIS_HASH {
                Ok(())
            } else {
                Err("a checkpoint of the empty log must name the genesis hash".to_owned())
            };
        }
        match stored_hash {
            None if self.seq > log_end => Err(format!(
                "the database no longer holds entry {} (the log ends at entry {log_end}): the log was truncated",
                self.seq
            )),
            None => Err(format!(
                "the database no longer holds entry {}: it was removed",
                self.seq
            )),
            Some(hash) if hash == self.head_hash.as_bytes() => Ok(()),
            Some(_) => Err(format!(
                "entry {}'s hash differs from the signed one: the log was rewritten",
                self.seq
            )),
        }
    }
}

/// Whether a new checkpoint is due at `now`: none made yet, the latest one is `interval_ms`
/// old, or it claims a time after `now` (a clock stepped back, another replica's clock ahead,
/// or an edited row): waiting for that time could stop checkpoints for good. Heartbeats are
/// made whether or not entries were appended.
pub fn checkpoint_due(latest: Option<Timestamp>, interval_ms: i64, now: Timestamp) -> bool {
    latest.is_none_or(|at| at > now || now.millis_since(at) >= interval_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032, section 7.1, TEST 1.
    const RFC_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC_SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn rfc_key() -> CheckpointKey {
        let secret: [u8; 32] = hex::decode(RFC_SECRET).unwrap().try_into().unwrap();
        CheckpointKey::from_secret(&secret)
    }

    #[test]
    fn the_library_signs_as_rfc_8032_says() {
        let key = rfc_key();
        assert_eq!(hex::encode(key.verifying_key().as_bytes()), RFC_PUBLIC);
        let signature = key.signing.sign(b"");
        assert_eq!(hex::encode(signature.to_bytes()), RFC_SIGNATURE);
    }

    /// A checkpoint signed with the RFC 8032 test key. The signature was computed
    /// independently, with OpenSSL 3.0 (`openssl pkeyutl -sign -rawin`) over the signed text;
    /// Ed25519 signatures are deterministic, so ours must be the same bytes.
    #[test]
    fn a_checkpoint_signs_exactly_the_documented_text() {
        let key = rfc_key();
        assert_eq!(key.key_id(), "21fe31dfa154a261");
        let at = Timestamp::parse_rfc3339("2026-12-01T12:00:00.000Z").unwrap();
        let checkpoint = key.sign(42, &"ab".repeat(32), at);
        assert_eq!(
            signed_text(
                42,
                &"ab".repeat(32),
                "2026-12-01T12:00:00.000Z",
                key.key_id()
            ),
            format!(
                "deploy-safety checkpoint v1\n42\n{}\n2026-12-01T12:00:00.000Z\n21fe31dfa154a261\n",
                "ab".repeat(32)
            )
        );
        assert_eq!(checkpoint.signature, OPENSSL_SIGNATURE);
        let signed = SignedCheckpoint::from(&checkpoint);
        assert_eq!(signed.verify(&[key.verifying_key()]), Ok(()));
    }

    const OPENSSL_SIGNATURE: &str = "17025c316e560980048c23440d3ef9e2cba4760006d0c70271227efaba437f280c3761054c130836c3c8cb8b8e330423f7945bc7a506c84c9b5798b17376ed07";

    #[test]
    fn any_change_to_a_signed_checkpoint_fails() {
        let key = rfc_key();
        let at = Timestamp::from_unix_millis(1_764_590_400_000);
        let good = SignedCheckpoint::from(&key.sign(7, &"cd".repeat(32), at));
        let keys = [key.verifying_key()];
        let changes: [fn(&mut SignedCheckpoint); 5] = [
            |c| c.seq += 1,
            |c| c.head_hash = "ce".repeat(32),
            |c| c.at = "2026-12-01T12:00:00.001Z".into(),
            |c| c.signature.replace_range(0..2, "00"),
            |c| c.signature.truncate(10),
        ];
        for change in changes {
            let mut altered = good.clone();
            change(&mut altered);
            assert!(altered.verify(&keys).is_err(), "{altered:?}");
        }
        let other = CheckpointKey::from_secret(&[7; 32]);
        assert!(
            good.verify(&[other.verifying_key()])
                .unwrap_err()
                .contains(key.key_id())
        );
    }

    #[test]
    fn keys_survive_pem() {
        let key = rfc_key();
        let again = CheckpointKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(again.key_id(), key.key_id());
        let public = public_key_from_pem(&key.public_key_pem()).unwrap();
        assert_eq!(public, key.verifying_key());
        assert!(
            key.public_key_pem()
                .starts_with("-----BEGIN PUBLIC KEY-----\n")
        );
        assert!(CheckpointKey::from_pem("not a key").is_err());
    }

    #[test]
    fn checkpoints_are_matched_against_the_log() {
        let key = rfc_key();
        let at = Timestamp::from_unix_millis(0);
        let signed = SignedCheckpoint::from(&key.sign(5, "h5", at));
        assert_eq!(signed.matches_log(Some(b"h5"), 9), Ok(()));
        assert!(
            signed
                .matches_log(None, 3)
                .unwrap_err()
                .contains("truncated")
        );
        assert!(signed.matches_log(None, 9).unwrap_err().contains("removed"));
        assert!(
            signed
                .matches_log(Some(b"h6"), 9)
                .unwrap_err()
                .contains("rewritten")
        );
        let empty = SignedCheckpoint::from(&key.sign(0, GENESIS_HASH, at));
        assert_eq!(empty.matches_log(None, 0), Ok(()));
    }

    #[test]
    fn heartbeats_are_due_each_interval() {
        let t = Timestamp::from_unix_millis(1_000_000);
        for (latest, now, due) in [
            (None, 0, true),
            (Some(0), 59_999, false),
            (Some(0), 60_000, true),
            (Some(0), 120_000, true),
            // A checkpoint from the future does not stop checkpoints until then.
            (Some(1), 0, true),
            (Some(365 * 24 * 3_600_000), 0, true),
        ] {
            assert_eq!(
                checkpoint_due(latest.map(|l| t.plus_millis(l)), 60_000, t.plus_millis(now)),
                due,
                "{latest:?} {now}"
            );
        }
    }
}
