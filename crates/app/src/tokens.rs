//! Bearer tokens (SPEC §2).
//!
//! A token reads `ds_<id>.<secret>`: a random 64-bit public id, used to find the record, and a
//! random 256-bit secret, of which only the SHA-256 is stored. A high-entropy secret needs no
//! slow password hash; the stored hash is compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use deploy_safety_core::{AuditDecision, AuditDraft, Name, ReasonCode, Role, Timestamp};
use deploy_safety_store::{StoreError, TokenRecord, Tx};

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{App, AppError, AuthMethod, Caller, TxResult};

const TOKEN_PREFIX: &str = "ds_";
/// The principal name of the token created when a server starts with none.
pub const BOOTSTRAP_PRINCIPAL: &str = "admin";

/// A token as lists show it: never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub created_by: String,
    pub revoked_at: Option<Timestamp>,
}

impl From<TokenRecord> for TokenView {
    fn from(r: TokenRecord) -> Self {
        TokenView {
            id: r.id,
            name: r.name,
            role: r.role,
            created_at: r.created_at,
            created_by: r.created_by,
            revoked_at: r.revoked_at,
        }
    }
}

/// A newly created token: the only time its full text exists outside the caller's hands.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub view: TokenView,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("view", &self.view)
            .finish()
    }
}

/// SHA-256 of a token's secret part.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AppError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|e| AppError::Internal(format!("no system randomness: {e}")))?;
    Ok(bytes)
}

/// 256 random bits, base64url: a secret (a token's, a session's, a CSRF token).
pub(crate) fn random_secret() -> Result<String, AppError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// A new credential's id, secret and full text `{prefix}{id}.{secret}`: a random 64-bit public
/// id, used to find the record, and a random 256-bit secret, stored only hashed.
pub(crate) fn random_token_parts(prefix: &str) -> Result<(String, String, String), AppError> {
    let id = hex::encode(random_bytes::<8>()?);
    let secret = random_secret()?;
    let token = format!("{prefix}{id}.{secret}");
    Ok((id, secret, token))
}

/// Splits presented text `{prefix}{id}.{secret}` into id and secret, if it has that shape.
pub(crate) fn split_token<'a>(prefix: &str, presented: &'a str) -> Option<(&'a str, &'a str)> {
    let (id, secret) = presented.strip_prefix(prefix)?.split_once('.')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

fn generate() -> Result<(String, String, String), AppError> {
    random_token_parts(TOKEN_PREFIX)
}

fn split(presented: &str) -> Option<(&str, &str)> {
    split_token(TOKEN_PREFIX, presented)
}

fn new_record(
    name: &Name,
    role: Role,
    created_by: &str,
    now: Timestamp,
) -> Result<(TokenRecord, String), AppError> {
    let (id, secret, token) = generate()?;
    let record = TokenRecord {
        id,
        name: name.as_str().to_owned(),
        role,
        secret_hash: hash_secret(&secret),
        created_at: now,
        created_by: created_by.to_owned(),
        revoked_at: None,
    };
    Ok((record, token))
}

fn token_audit(
    action: &str,
    by: &str,
    record: &TokenRecord,
    extra: serde_json::Value,
) -> AuditDraft {
    // Tokens are made on the database directly (the CLI) or by the server's first start.
    let authenticated_by = if by == "system" { "system" } else { "cli" };
    let mut details = json!({
        "tokenId": record.id,
        "name": record.name,
        "role": record.role,
        "authenticatedBy": authenticated_by,
    });
    if let (Some(details), Some(extra)) = (details.as_object_mut(), extra.as_object()) {
        details.extend(extra.clone());
    }
    AuditDraft {
        principal: by.to_owned(),
        role: None,
        action: action.to_owned(),
        environment: None,
        decision: AuditDecision::Recorded,
        reason: ReasonCode::Recorded.as_str().to_owned(),
        details,
    }
}

impl App {
    /// The principal behind a bearer credential, or 401: a static token, or an OIDC token from
    /// a configured issuer (SPEC §18), which may also be 403 when no binding matches it.
    pub async fn authenticate(&self, presented: &str) -> Result<Caller, AppError> {
        if !self.identity.issuers.is_empty() && crate::oidc::looks_like_jwt(presented) {
            // The caller hears why; the log says so too, for the operator of a failing
            // pipeline (never the token).
            return self.authenticate_jwt(presented).await.inspect_err(|e| {
                if let AppError::Unauthorized(reason) = e {
                    tracing::info!(%reason, "refused an OIDC token");
                }
            });
        }
        // Unknown, malformed and revoked static tokens are refused alike, so the answer tells
        // an attacker nothing.
        let token = self.presented_token(presented).ok_or_else(refused_token)?;
        self.authenticate_presented(&token).await
    }

    /// A static token to check inside the write it is for, when `presented` looks like one;
    /// `None` for anything else (an OIDC token, a malformed one), which [`App::authenticate`]
    /// handles.
    pub fn presented_token(&self, presented: &str) -> Option<PresentedToken> {
        if presented.len() > crate::oidc::MAX_TOKEN_BYTES
            || (!self.identity.issuers.is_empty() && crate::oidc::looks_like_jwt(presented))
        {
            return None;
        }
        let (id, secret) = split(presented)?;
        Some(PresentedToken {
            id: id.to_owned(),
            secret_hash: hash_secret(secret),
        })
    }

    /// The principal behind a presented token, read on its own (when its request fails before
    /// the write that would check it, 401 still comes first).
    pub async fn authenticate_presented(&self, token: &PresentedToken) -> Result<Caller, AppError> {
        let id = token.id.clone();
        let record = self.store.read(move |tx| tx.get_token(&id)).await?;
        caller_from_token(record, &token.secret_hash)
    }
}

/// A static token as presented, not yet checked: a gated write checks it in its own
/// transaction (SPEC §22: one hand-off between threads fewer per decision), against what the
/// database holds at that moment, exactly as [`App::authenticate`] would have.
#[derive(Clone)]
pub struct PresentedToken {
    id: String,
    /// SHA-256 of the secret, computed before the write so the writer only compares.
    secret_hash: Vec<u8>,
}

impl std::fmt::Debug for PresentedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PresentedToken {
    /// The principal behind the token, read in `tx`, or 401.
    pub(crate) fn caller_in(&self, tx: &mut dyn Tx) -> TxResult<Caller> {
        let record = tx.get_token(&self.id)?;
        Ok(caller_from_token(record, &self.secret_hash))
    }
}

fn refused_token() -> AppError {
    AppError::Unauthorized("invalid or revoked token".to_owned())
}

/// Who a token's record names, if the presented secret's hash matches it and it is not revoked.
fn caller_from_token(record: Option<TokenRecord>, secret_hash: &[u8]) -> Result<Caller, AppError> {
    let record = record.ok_or_else(refused_token)?;
    let matches: bool = secret_hash.ct_eq(&record.secret_hash).into();
    if !matches || record.revoked_at.is_some() {
        return Err(refused_token());
    }
    Ok(Caller {
        name: record.name,
        role: record.role,
        auth: AuthMethod::Token { id: record.id },
    })
}

impl App {
    /// Creates a token for a principal, creating the principal if new. A principal's role never
    /// changes, so one name is one identity in the audit log for good; a second token for the
    /// same name and role is a rotation. `created_by` names who did it.
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        created_by: &str,
    ) -> Result<IssuedToken, AppError> {
        let name = Name::parse(name).map_err(AppError::invalid_text("name"))?;
        let created_by = created_by.to_owned();
        let clock = self.clock.clone();
        let issued = self
            .store
            .write(move |tx| {
                let now = clock.now();
                match tx.principal_role(name.as_str())? {
                    None => tx.insert_principal(name.as_str(), role, now)?,
                    Some(existing) if existing == role => {}
                    Some(existing) => {
                        return Ok(Err(AppError::Conflict {
                            reason: None,
                            message: format!(
                                "principal `{name}` exists with role {existing}; a principal's role never changes, so choose another name"
                            ),
                            hints: Vec::new(),
                        }));
                    }
                }
                let (record, token) = match new_record(&name, role, &created_by, now) {
                    Ok(created) => created,
                    Err(e) => return Ok(Err(e)),
                };
                tx.insert_token(&record)?;
                tx.append_audit(
                    token_audit("token.create", &created_by, &record, json!({})),
                    now,
                )?;
                Ok(Ok(IssuedToken {
                    token,
                    view: record.into(),
                }))
            })
            .await??;
        Ok(issued)
    }

    /// When no token exists at all, creates one security-team token so a new user can begin.
    pub async fn bootstrap_token(&self) -> Result<Option<IssuedToken>, AppError> {
        let clock = self.clock.clone();
        let issued = self
            .store
            .write(move |tx| {
                if tx.count_tokens()? > 0 {
                    return Ok(Ok(None));
                }
                let now = clock.now();
                let name =
                    Name::parse(BOOTSTRAP_PRINCIPAL).map_err(|e| StoreError::Corrupt(e.0))?;
                let (record, token) = match new_record(&name, Role::SecurityTeam, "system", now) {
                    Ok(created) => created,
                    Err(e) => return Ok(Err(e)),
                };
                if tx.principal_role(name.as_str())?.is_none() {
                    tx.insert_principal(name.as_str(), Role::SecurityTeam, now)?;
                }
                tx.insert_token(&record)?;
                tx.append_audit(
                    token_audit(
                        "token.create",
                        "system",
                        &record,
                        json!({"bootstrap": true}),
                    ),
                    now,
                )?;
                Ok(Ok(Some(IssuedToken {
                    token,
                    view: record.into(),
                })))
            })
            .await??;
        Ok(issued)
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenView>, AppError> {
        let records = self.store.read(|tx| tx.list_tokens()).await?;
        Ok(records.into_iter().map(TokenView::from).collect())
    }

    /// Revokes every active token of the principal `name`.
    pub async fn revoke_principal_tokens(
        &self,
        name: &str,
        by: &str,
    ) -> Result<Vec<TokenView>, AppError> {
        let name = name.to_owned();
        let by = by.to_owned();
        let clock = self.clock.clone();
        self.store
            .write(move |tx| {
                let now = clock.now();
                if tx.principal_role(&name)?.is_none() {
                    return Ok(Err(AppError::NotFound(format!(
                        "no principal named `{name}`"
                    ))));
                }
                let revoked = tx.revoke_tokens_of(&name, now)?;
                if revoked.is_empty() {
                    return Ok(Err(AppError::Conflict {
                        reason: None,
                        message: format!("principal `{name}` has no active token"),
                        hints: Vec::new(),
                    }));
                }
                for record in &revoked {
                    let sessions = tx.revoke_sessions_of_token(&record.id, &by, now)?;
                    tx.append_audit(
                        token_audit(
                            "token.revoke",
                            &by,
                            record,
                            json!({"sessionsRevoked": sessions}),
                        ),
                        now,
                    )?;
                }
                Ok(Ok(revoked.into_iter().map(TokenView::from).collect()))
            })
            .await?
    }

    /// Revokes one token by its id (the part between `ds_` and `.`).
    pub async fn revoke_token(&self, id: &str, by: &str) -> Result<TokenView, AppError> {
        let id = id.strip_prefix(TOKEN_PREFIX).unwrap_or(id).to_owned();
        let by = by.to_owned();
        let clock = self.clock.clone();
        self.store
            .write(move |tx| {
                let Some(mut record) = tx.get_token(&id)? else {
                    return Ok(Err(AppError::NotFound(format!("no token with id `{id}`"))));
                };
                let now = clock.now();
                if !tx.revoke_token(&record.id, now)? {
                    return Ok(Err(AppError::Conflict {
                        reason: None,
                        message: format!("token {} is already revoked", record.id),
                        hints: Vec::new(),
                    }));
                }
                record.revoked_at = Some(now);
                // A dashboard session exchanged for the token ends with it.
                let sessions = tx.revoke_sessions_of_token(&record.id, &by, now)?;
                tx.append_audit(
                    token_audit(
                        "token.revoke",
                        &by,
                        &record,
                        json!({"sessionsRevoked": sessions}),
                    ),
                    now,
                )?;
                Ok(Ok(TokenView::from(record)))
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_shape() {
        let (id, secret, token) = generate().unwrap();
        assert_eq!(id.len(), 16);
        assert_eq!(secret.len(), 43, "256 bits, base64url without padding");
        assert_eq!(split(&token), Some((id.as_str(), secret.as_str())));
        assert_ne!(generate().unwrap().2, token);
    }

    #[test]
    fn malformed_tokens_do_not_split() {
        for bad in [
            "",
            "ds_",
            "ds_.",
            "ds_abc",
            "ds_.secret",
            "ds_abc.",
            "xx_abc.def",
            "abc.def",
        ] {
            assert_eq!(split(bad), None, "{bad}");
        }
    }
}
