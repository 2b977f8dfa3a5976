//! Workload identity (SPEC §18): a pipeline's OIDC token as its bearer credential.
//!
//! A token is verified with `jsonwebtoken` against keys fetched from the issuer's JWKS and
//! cached by `kid`; the verified claims are matched against the issuer's bindings by the core.
//! Verification never waits on the network for a key it already has: an unknown `kid` refetches
//! the key set at most once per [`REFETCH_INTERVAL_MS`] per issuer, within a bounded timeout,
//! and a fetch in progress for one issuer holds up nobody else.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use deploy_safety_core::identity::{Binding, Bound, bind};
use deploy_safety_core::{AuditDecision, AuditDraft, ReasonCode, Role, Timestamp};
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::identity::identity_refusal;
use crate::{App, AppError, AuthMethod, Caller};

/// An unknown `kid` refetches the issuer's keys at most this often (SPEC §18).
pub const REFETCH_INTERVAL_MS: i64 = 10_000;
/// An identical identity refusal is recorded at most once in this long, per replica.
pub const REFUSAL_AUDIT_WINDOW_MS: i64 = 10 * 60_000;
/// How often the server fetches every issuer's keys again, whatever the tokens ask for.
pub const KEY_REFRESH_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Longer presented credentials are refused before any parsing: real OIDC tokens are a few
/// kilobytes at most.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// One `[[auth.oidc]]` issuer.
#[derive(Clone, Debug)]
pub struct OidcIssuerSettings {
    /// Names the issuer in `authenticatedBy` (`oidc:NAME`) and the audit log.
    pub name: String,
    /// Matched exactly against the token's `iss`.
    pub issuer: String,
    /// The token's `aud` must contain it.
    pub audience: String,
    /// Where the keys are; `None`: discovered at `{issuer}/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// The accepted signature algorithms (never `none` or HS*: the settings refuse them).
    pub algorithms: Vec<Algorithm>,
    pub leeway_seconds: u64,
    pub max_token_age_minutes: u64,
    pub bindings: Vec<Binding>,
}

/// The claims deploy-safety reads itself; every other claim stays in `rest` for the bindings.
/// A claim of the wrong type (a string `exp`) fails here: the token is refused.
#[derive(Debug, Deserialize)]
struct Claims {
    exp: i64,
    iat: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// An issuer's cached keys and when they were last fetched.
#[derive(Debug, Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// The JWKS address, once discovered.
    jwks_url: Option<String>,
}

#[derive(Debug)]
struct IssuerState {
    settings: OidcIssuerSettings,
    /// Read on every request; written only after a fetch.
    cache: RwLock<KeyCache>,
    /// Held while fetching, so concurrent requests for an unknown `kid` share one fetch; holds
    /// the time of the last attempt.
    fetching: tokio::sync::Mutex<Option<Timestamp>>,
}

/// Every configured issuer, with its key cache.
#[derive(Debug, Default)]
pub(crate) struct Issuers {
    issuers: Vec<IssuerState>,
}

impl Issuers {
    pub(crate) fn new(settings: &[OidcIssuerSettings]) -> Issuers {
        Issuers {
            issuers: settings
                .iter()
                .map(|s| IssuerState {
                    settings: s.clone(),
                    cache: RwLock::new(KeyCache {
                        jwks_url: s.jwks_url.clone(),
                        ..KeyCache::default()
                    }),
                    fetching: tokio::sync::Mutex::new(None),
                })
                .collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    fn find(&self, iss: &str) -> Option<&IssuerState> {
        self.issuers.iter().find(|i| i.settings.issuer == iss)
    }
}

/// Whether presented text has a JWT's shape (three base64url parts), so it is not a static
/// token.
pub(crate) fn looks_like_jwt(presented: &str) -> bool {
    presented.split('.').count() == 3
        && presented
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

fn unauthorized(message: impl Into<String>) -> AppError {
    AppError::Unauthorized(message.into())
}

fn lock_poisoned() -> AppError {
    AppError::Internal("the OIDC key cache lock is poisoned".to_owned())
}

impl IssuerState {
    fn cached_key(&self, kid: &str) -> Result<Option<Arc<DecodingKey>>, AppError> {
        let cache = self.cache.read().map_err(|_| lock_poisoned())?;
        Ok(cache.keys.get(kid).cloned())
    }

    /// The key for `kid`: from the cache, or after one refetch if the last attempt is older
    /// than [`REFETCH_INTERVAL_MS`]. Unknown and unfetchable keys are refused (fail closed).
    async fn key(&self, app: &App, kid: &str) -> Result<Arc<DecodingKey>, AppError> {
        if let Some(key) = self.cached_key(kid)? {
            return Ok(key);
        }
        let mut last_attempt = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.cached_key(kid)? {
            return Ok(key);
        }
        let now = app.clock.now();
        if let Some(at) = *last_attempt
            && now.millis_since(at) < REFETCH_INTERVAL_MS
        {
            return Err(unauthorized(format!(
                "the token's key `{kid}` is not among issuer `{}`'s keys",
                self.settings.name
            )));
        }
        *last_attempt = Some(now);
        match self.refresh(app).await {
            Ok(()) => self.cached_key(kid)?.ok_or_else(|| {
                unauthorized(format!(
                    "the token's key `{kid}` is not among issuer `{}`'s keys",
                    self.settings.name
                ))
            }),
            Err(e) => {
                tracing::warn!(issuer = %self.settings.name, error = %e, "could not fetch the issuer's signing keys; unknown keys are refused");
                Err(unauthorized(format!(
                    "the token's key `{kid}` is unknown and issuer `{}`'s keys cannot be fetched now",
                    self.settings.name
                )))
            }
        }
    }

    /// Fetches the key set and replaces the cached one with it; on failure the cached keys
    /// stay.
    async fn refresh(&self, app: &App) -> Result<(), String> {
        let keys = self.fetch(app).await?;
        tracing::info!(issuer = %self.settings.name, keys = keys.len(), "fetched the issuer's signing keys");
        self.cache
            .write()
            .map_err(|_| "the key cache lock is poisoned".to_owned())?
            .keys = keys;
        Ok(())
    }

    /// Fetches the key set (discovering its address first if needed).
    async fn fetch(&self, app: &App) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
        let known_url = self
            .cache
            .read()
            .map_err(|_| "lock poisoned".to_owned())?
            .jwks_url
            .clone();
        let url = match known_url {
            Some(url) => url,
            None => {
                let url = discover_jwks_url(app, &self.settings.issuer).await?;
                if let Ok(mut cache) = self.cache.write() {
                    cache.jwks_url = Some(url.clone());
                }
                url
            }
        };
        let body = get_json(app, &url).await?;
        let set: JwkSet =
            serde_json::from_value(body).map_err(|e| format!("{url}: not a JWK set: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            // A key stating its algorithm is used for that one only.
            if let Some(alg) = jwk.common.key_algorithm
                && !self
                    .settings
                    .algorithms
                    .iter()
                    .any(|a| key_algorithm_is(alg, *a))
            {
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, Arc::new(key));
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.settings.name, %kid, error = %e, "skipping a key that cannot be read")
                }
            }
        }
        Ok(keys)
    }
}

fn key_algorithm_is(key: KeyAlgorithm, alg: Algorithm) -> bool {
    matches!(
        (key, alg),
        (KeyAlgorithm::RS256, Algorithm::RS256)
            | (KeyAlgorithm::RS384, Algorithm::RS384)
            | (KeyAlgorithm::RS512, Algorithm::RS512)
            | (KeyAlgorithm::PS256, Algorithm::PS256)
            | (KeyAlgorithm::PS384, Algorithm::PS384)
            | (KeyAlgorithm::PS512, Algorithm::PS512)
            | (KeyAlgorithm::ES256, Algorithm::ES256)
            | (KeyAlgorithm::ES384, Algorithm::ES384)
            | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
    )
}

/// GETs JSON within the identity timeout.
pub(crate) async fn get_json(app: &App, url: &str) -> Result<Value, String> {
    let response = app
        .identity
        .http()?
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let body = crate::identity::read_limited(response)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
}

/// The JWKS address from the issuer's discovery document, which must name the issuer exactly
/// (a document naming another issuer is refused: it is not this issuer's).
async fn discover_jwks_url(app: &App, issuer: &str) -> Result<String, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let document = get_json(app, &url).await?;
    let named = document.get("issuer").and_then(Value::as_str);
    if named != Some(issuer) {
        return Err(format!(
            "{url} names issuer {}, not {issuer}: refusing its keys",
            named.map_or_else(|| "nothing".to_owned(), |n| format!("`{n}`"))
        ));
    }
    let jwks_url = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{url} has no `jwks_uri`"))?;
    crate::identity::check_provider_url(jwks_url).map_err(|e| format!("{url}: jwks_uri {e}"))?;
    Ok(jwks_url.to_owned())
}

/// What a verified token says, before its principal is checked against the store.
struct Verified<'a> {
    issuer: &'a IssuerState,
    claims: Map<String, Value>,
}

impl App {
    /// Fetches every issuer's keys, replacing the cached ones: at start, so the first pipeline
    /// does not wait, and then every [`KEY_REFRESH_INTERVAL`], so a key the issuer withdrew
    /// stops verifying. A failed fetch keeps the cached keys and is logged.
    pub async fn warm_oidc_keys(&self) {
        for issuer in &self.identity.issuers.issuers {
            let mut last_attempt = issuer.fetching.lock().await;
            // Discover again: the issuer may have moved its keys.
            if issuer.settings.jwks_url.is_none()
                && let Ok(mut cache) = issuer.cache.write()
            {
                cache.jwks_url = None;
            }
            *last_attempt = Some(self.clock.now());
            if let Err(e) = issuer.refresh(self).await {
                tracing::error!(issuer = %issuer.settings.name, error = %e, "could not fetch the issuer's signing keys; unknown keys are refused until they can be");
            }
        }
    }

    /// Verifies an OIDC token's signature, issuer, audience and times (SPEC §18): 401 if any
    /// fails.
    async fn verify_jwt(&self, presented: &str) -> Result<Verified<'_>, AppError> {
        if presented.len() > MAX_TOKEN_BYTES {
            return Err(unauthorized(format!(
                "the token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let malformed =
            |e: jsonwebtoken::errors::Error| unauthorized(format!("not a valid JWT: {e}"));
        let header = jsonwebtoken::decode_header(presented).map_err(malformed)?;
        if let Some(typ) = &header.typ
            && !typ.eq_ignore_ascii_case("JWT")
        {
            return Err(unauthorized(format!(
                "the token's type is `{typ}`, not `JWT`"
            )));
        }
        // Which issuer's keys to use: the claim is read unverified only to choose them; the
        // verification below pins it.
        let unverified: Map<String, Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(presented).map_err(malformed)?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| unauthorized("the token has no `iss` claim"))?;
        let issuer = self
            .identity
            .issuers
            .find(iss)
            .ok_or_else(|| unauthorized(format!("tokens from `{iss}` are not trusted here")))?;
        let settings = &issuer.settings;
        if !settings.algorithms.contains(&header.alg) {
            return Err(unauthorized(format!(
                "the token is signed with {:?}, which issuer `{}` is not trusted to use",
                header.alg, settings.name
            )));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| unauthorized("the token's header has no `kid`"))?;
        let key = issuer.key(self, kid).await?;

        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // Times are checked below against the server's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Claims>(presented, &key, &validation)
            .map_err(|e| unauthorized(format!("the token does not verify: {e}")))?
            .claims;

        let now = self.clock.now().unix_millis() / 1000;
        let leeway = i64::try_from(settings.leeway_seconds).unwrap_or(i64::MAX);
        let max_age =
            i64::try_from(settings.max_token_age_minutes.saturating_mul(60)).unwrap_or(i64::MAX);
        if claims.exp.saturating_add(leeway) < now {
            return Err(unauthorized("the token has expired"));
        }
        if let Some(nbf) = claims.nbf
            && nbf.saturating_sub(leeway) > now
        {
            return Err(unauthorized("the token is not valid yet (`nbf`)"));
        }
        if claims.iat.saturating_sub(leeway) > now {
            return Err(unauthorized("the token was issued in the future (`iat`)"));
        }
        if now.saturating_sub(claims.iat) > max_age.saturating_add(leeway) {
            return Err(unauthorized(format!(
                "the token is older than issuer `{}`'s maximum age of {} minutes",
                settings.name, settings.max_token_age_minutes
            )));
        }
        let mut all = claims.rest;
        all.insert("exp".to_owned(), claims.exp.into());
        all.insert("iat".to_owned(), claims.iat.into());
        if let Some(nbf) = claims.nbf {
            all.insert("nbf".to_owned(), nbf.into());
        }
        Ok(Verified {
            issuer,
            claims: all,
        })
    }

    /// The caller behind a workload token: verified, bound to a principal, and that principal
    /// made permanent on first use (SPEC §18).
    pub(crate) async fn authenticate_jwt(&self, presented: &str) -> Result<Caller, AppError> {
        let Verified {
            issuer: state,
            claims,
        } = self.verify_jwt(presented).await?;
        let issuer = state.settings.name.clone();
        let method = format!("oidc:{issuer}");
        match bind(&state.settings.bindings, &claims) {
            Bound::Principal {
                binding,
                name,
                role,
                matched,
            } => {
                self.ensure_principal(
                    name.as_str(),
                    role,
                    &method,
                    "auth.authenticate",
                    &json!({"binding": binding, "claims": matched}),
                )
                .await?;
                Ok(Caller {
                    name: name.into_string(),
                    role,
                    auth: AuthMethod::Oidc {
                        issuer,
                        claims: matched,
                    },
                })
            }
            Bound::NoBinding { checked } => {
                let message = format!(
                    "the token from issuer `{issuer}` is valid, but no binding of `[[auth.oidc]]` `{issuer}` matches its claims"
                );
                Err(self
                    .refuse_identity(&claims, &method, ReasonCode::NoBinding, message, json!({"claims": checked}), vec![
                        "compare the claims in this server's audit entry with the bindings' `claims`".to_owned(),
                    ])
                    .await)
            }
            Bound::BadPrincipal {
                binding,
                message,
                checked,
            } => Err(self
                .refuse_identity(
                    &claims,
                    &method,
                    ReasonCode::NoBinding,
                    format!(
                        "binding {binding} of `[[auth.oidc]]` `{issuer}` matches, but {message}"
                    ),
                    json!({"binding": binding, "claims": checked}),
                    Vec::new(),
                )
                .await),
        }
    }

    /// Records a refused identity (403) and answers with it. The entry's principal is the issuer
    /// (`oidc:NAME`): on a public issuer anyone can mint a valid token, so the `sub` it claims
    /// goes in the details, never in the principal. The same refusal (issuer, reason, `sub`,
    /// claims) is recorded once per [`REFUSAL_AUDIT_WINDOW_MS`] per replica and logged every
    /// time: a replayed token must not grow the audit log without end.
    async fn refuse_identity(
        &self,
        claims: &Map<String, Value>,
        method: &str,
        reason: ReasonCode,
        message: String,
        details: Value,
        hints: Vec<String>,
    ) -> AppError {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        tracing::warn!(%method, %subject, reason = reason.as_str(), "{message}");
        let refused = AppError::Forbidden {
            reason,
            message: message.clone(),
            hints,
        };
        let key = format!("{method}\n{}\n{subject}\n{details}", reason.as_str());
        if !self
            .identity
            .first_refusal_in_window(&key, self.clock.now())
        {
            return refused;
        }
        let mut details = details;
        if let Some(object) = details.as_object_mut() {
            object.insert("sub".to_owned(), subject.into());
        }
        let draft = identity_refusal(
            method,
            None,
            "auth.authenticate",
            reason,
            method,
            &message,
            details,
        );
        if let Err(e) = self.append_audit_entry(draft).await {
            return e;
        }
        refused
    }

    /// Makes `name` a principal with `role` on first sight; a principal that exists with
    /// another role is refused (403) and recorded as `refused_action`: roles never change (SPEC
    /// §18). Confirmed principals are remembered, so a pipeline's every request does not write.
    pub(crate) async fn ensure_principal(
        &self,
        name: &str,
        role: Role,
        method: &str,
        refused_action: &str,
        details: &Value,
    ) -> Result<(), AppError> {
        if self.identity.known_principal(name) == Some(role) {
            return Ok(());
        }
        let owned = name.to_owned();
        let clock = self.clock.clone();
        let mut created_details = details.clone();
        if let Some(object) = created_details.as_object_mut() {
            object.insert("authenticatedBy".to_owned(), method.into());
            object.insert("role".to_owned(), role.as_str().into());
        }
        let existing = self
            .store
            .write(move |tx| {
                let now = clock.now();
                let existing = tx.principal_role(&owned)?;
                if existing.is_none() {
                    tx.insert_principal(&owned, role, now)?;
                    tx.append_audit(
                        AuditDraft {
                            principal: owned.clone(),
                            role: Some(role),
                            action: "principal.create".to_owned(),
                            environment: None,
                            decision: AuditDecision::Recorded,
                            reason: ReasonCode::Recorded.as_str().to_owned(),
                            details: created_details,
                        },
                        now,
                    )?;
                }
                Ok(existing)
            })
            .await?;
        match existing {
            Some(existing) if existing != role => {
                let message = format!(
                    "principal `{name}` exists with role {existing}; this identity would give it role {role}, and a principal's role never changes"
                );
                let mut refused = details.clone();
                if let Some(object) = refused.as_object_mut() {
                    object.insert("existingRole".to_owned(), existing.as_str().into());
                    object.insert("boundRole".to_owned(), role.as_str().into());
                }
                tracing::warn!(principal = %name, %method, "{message}");
                let key = format!("{refused_action}\n{name}\n{role}");
                if !self
                    .identity
                    .first_refusal_in_window(&key, self.clock.now())
                {
                    return Err(AppError::Forbidden {
                        reason: ReasonCode::PrincipalRoleConflict,
                        message,
                        hints: Vec::new(),
                    });
                }
                self.append_audit_entry(identity_refusal(
                    name,
                    Some(existing),
                    refused_action,
                    ReasonCode::PrincipalRoleConflict,
                    method,
                    &message,
                    refused,
                ))
                .await?;
                Err(AppError::Forbidden {
                    reason: ReasonCode::PrincipalRoleConflict,
                    message,
                    hints: vec![
                        "give the binding or group mapping a principal template that makes a new name".to_owned(),
                    ],
                })
            }
            _ => {
                self.identity.remember_principal(name, role);
                Ok(())
            }
        }
    }
}

/// The timeout of every request to an identity provider: a provider that hangs delays only
/// the request that needed it, and by no more than this.
pub const DEFAULT_IDENTITY_TIMEOUT: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jwt_shaped_text_is_taken_for_a_jwt() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(
            looks_like_jwt("a.b."),
            "an empty signature is still the shape (alg none)"
        );
        assert!(!looks_like_jwt("ds_abc.def"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a b.c.d"));
    }
}
