//! Single sign-on for people (SPEC §18): the authorization code flow with PKCE, and the sessions
//! it starts.
//!
//! The protocol is `openidconnect`'s: discovery (which checks the document names the issuer),
//! the authorization URL with PKCE S256, `state` and `nonce`, the code exchange, and the ID
//! token's verification (signature, issuer, audience, nonce, expiry), over our own HTTP client
//! (reqwest 0.13, one crypto provider). `state`, `nonce` and the PKCE verifier are kept in the
//! database, so a login begun on one replica completes on another; each is used once.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use deploy_safety_core::identity::role_from_claim;
use deploy_safety_core::{AuditDecision, AuditDraft, PrincipalName, ReasonCode, Role, Timestamp};
use deploy_safety_store::{LoginRequestRecord, SessionRecord};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AsyncHttpClient, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, HttpClientError, HttpRequest, HttpResponse, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::Serialize;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::identity::identity_refusal;
use crate::tokens::{hash_secret, random_secret, random_token_parts, split_token};
use crate::{App, AppError, AuthMethod, Caller};

/// How long a login may take between `/auth/login` and the callback (SPEC §18).
pub const LOGIN_LIFETIME_MINUTES: i64 = 10;
/// A session's activity is written at most this often: the idle timeout is exact to within it.
pub const TOUCH_INTERVAL_MS: i64 = 60_000;
/// Provider metadata (and so its keys) is fetched again after this long.
const METADATA_MAX_AGE_MS: i64 = 10 * 60_000;
/// Logins in progress at most: `/auth/login` needs no credential, so without a bound anyone
/// could fill the table. Beyond it, new logins wait (503) until old ones expire.
pub const MAX_PENDING_LOGINS: u64 = 100_000;
/// The prefix of a session cookie's value, beside tokens' `ds_`.
const SESSION_PREFIX: &str = "dss_";

/// `[auth.sso]`.
#[derive(Clone)]
pub struct SsoSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_url: String,
    pub scopes: Vec<String>,
    /// The claim whose value names the principal (default `email`).
    pub principal_claim: String,
    /// The claim whose values map to roles (e.g. `groups`).
    pub role_claim: String,
    /// Role claim value → role; the highest wins.
    pub roles: BTreeMap<String, Role>,
    pub session_lifetime: Duration,
    pub session_idle_timeout: Duration,
}

impl std::fmt::Debug for SsoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("principal_claim", &self.principal_claim)
            .field("role_claim", &self.role_claim)
            .field("roles", &self.roles)
            .field("session_lifetime", &self.session_lifetime)
            .field("session_idle_timeout", &self.session_idle_timeout)
            .finish()
    }
}

/// The client `from_provider_metadata` makes: authorization and token endpoints from the
/// provider's metadata.
type SsoClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

impl SsoSettings {
    /// This server as the provider's client, redirected back to `redirect_url`.
    fn client(&self, metadata: CoreProviderMetadata) -> Result<SsoClient, String> {
        let redirect = RedirectUrl::new(self.redirect_url.clone()).map_err(|e| e.to_string())?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.client_id.clone()),
            Some(ClientSecret::new(self.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// The cookie is `Secure` unless the server is reached over plain http on a loopback
    /// address (development, tests), where a browser would not send a secure cookie back.
    pub fn secure_cookie(&self) -> bool {
        let Ok(url) = reqwest::Url::parse(&self.redirect_url) else {
            return true;
        };
        let loopback = crate::identity::is_loopback(&url);
        !(url.scheme() == "http" && loopback)
    }
}

/// The provider and its metadata, fetched when first needed and again when old.
#[derive(Debug)]
pub(crate) struct Sso {
    pub(crate) settings: SsoSettings,
    metadata: tokio::sync::Mutex<Option<(CoreProviderMetadata, Timestamp)>>,
}

impl Sso {
    pub(crate) fn new(settings: SsoSettings) -> Sso {
        Sso {
            settings,
            metadata: tokio::sync::Mutex::new(None),
        }
    }
}

/// `openidconnect`'s HTTP client over our reqwest (its own `reqwest` feature would bring a
/// second reqwest and a second crypto provider).
struct ProviderHttp<'a>(&'a reqwest::Client);

impl<'c> AsyncHttpClient<'c> for ProviderHttp<'_> {
    type Error = HttpClientError<reqwest::Error>;
    type Future =
        Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request: reqwest::Request = request.try_into().map_err(Box::new)?;
            let response = self.0.execute(request).await.map_err(Box::new)?;
            let mut builder = openidconnect::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = crate::identity::read_limited(response)
                .await
                .map_err(HttpClientError::Other)?;
            builder.body(body).map_err(HttpClientError::Http)
        })
    }
}

/// A started login: where to send the browser, and the value of the cookie that ties the
/// login to that browser (the callback must bring it back).
pub struct LoginStart {
    pub authorize_url: String,
    pub browser_binding: String,
}

impl std::fmt::Debug for LoginStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the login's `state`.
        f.debug_struct("LoginStart").finish_non_exhaustive()
    }
}

/// A finished login: the cookie to set and where to go.
pub struct LoginDone {
    /// The session cookie's value: shown once, stored only hashed.
    pub cookie_value: String,
    pub session: SessionView,
    pub return_to: String,
    pub max_age_seconds: u64,
}

impl std::fmt::Debug for LoginDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginDone")
            .field("cookie_value", &"<redacted>")
            .field("session", &self.session)
            .field("return_to", &self.return_to)
            .finish()
    }
}

/// A session as lists show it: never its secret or CSRF token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub principal: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    /// When the idle timeout ends it, unless it is used before.
    pub idle_expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
    /// The token a dashboard sign-in exchanged for this session; absent for single sign-on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

fn not_configured() -> AppError {
    AppError::NotFound("single sign-on is not configured (`[auth.sso]`)".to_owned())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A path on this server to return to after signing in; anything else (another site, a
/// scheme-relative `//host`) is ignored, so the login cannot be used as an open redirect.
pub fn safe_return_to(path: Option<&str>) -> Option<String> {
    let path = path?;
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= 1_000
        && path.chars().all(|c| c.is_ascii_graphic());
    ok.then(|| path.to_owned())
}

impl App {
    /// Whether the session cookie is `Secure` (see [`SsoSettings::secure_cookie`]).
    pub fn sso_secure_cookie(&self) -> bool {
        self.identity
            .sso
            .as_ref()
            .is_none_or(|s| s.settings.secure_cookie())
    }

    /// Whether a session cookie set now is `Secure`: as single sign-on's redirect URL says when
    /// configured; else always, except for a browser on plain http to a loopback address
    /// (development, tests), which would not send a secure cookie back.
    pub fn session_cookie_secure(&self, plain_http_loopback: bool) -> bool {
        match &self.identity.sso {
            Some(sso) => sso.settings.secure_cookie(),
            None => !plain_http_loopback,
        }
    }

    /// Whether people sign in through single sign-on (`[auth.sso]`).
    pub fn sso_configured(&self) -> bool {
        self.identity.sso.is_some()
    }

    fn sso(&self) -> Result<&Sso, AppError> {
        self.identity.sso.as_ref().ok_or_else(not_configured)
    }

    /// The provider's metadata, discovered again when older than ten minutes or when `fresh`.
    async fn provider_metadata(&self, fresh: bool) -> Result<CoreProviderMetadata, AppError> {
        let sso = self.sso()?;
        let mut cached = sso.metadata.lock().await;
        let now = self.clock.now();
        if !fresh
            && let Some((metadata, at)) = cached.as_ref()
            && now.millis_since(*at) < METADATA_MAX_AGE_MS
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(sso.settings.issuer.clone())
            .map_err(|e| AppError::Internal(format!("auth.sso.issuer: {e}")))?;
        let http = ProviderHttp(self.identity.http().map_err(AppError::Unavailable)?);
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| {
                tracing::error!(issuer = %sso.settings.issuer, error = %e, "single sign-on: cannot read the provider's metadata");
                AppError::Unavailable(format!(
                    "the identity provider's metadata cannot be read: {e}"
                ))
            })?;
        // The addresses the document names must be as safe as the issuer's own.
        let endpoints = [
            Some(metadata.jwks_uri().url().as_str()),
            metadata.token_endpoint().map(|u| u.url().as_str()),
        ];
        for url in endpoints.into_iter().flatten() {
            crate::identity::check_provider_url(url).map_err(|e| {
                tracing::error!(issuer = %sso.settings.issuer, "single sign-on: the provider's metadata names {e}");
                AppError::Unavailable(format!("the identity provider's metadata names {e}"))
            })?;
        }
        *cached = Some((metadata.clone(), now));
        Ok(metadata)
    }

    /// `GET /auth/login`: a new login, kept server-side, and the provider's address for it.
    pub async fn begin_login(&self, return_to: Option<&str>) -> Result<LoginStart, AppError> {
        let settings = &self.sso()?.settings;
        let metadata = self.provider_metadata(false).await?;
        let client = settings
            .client(metadata)
            .map_err(|e| AppError::Internal(format!("auth.sso.redirect_url: {e}")))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &settings.scopes {
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let browser_binding = random_secret()?;
        let now = self.clock.now();
        let record = LoginRequestRecord {
            state_hash: hash_secret(state.secret()),
            browser_hash: hash_secret(&browser_binding),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            return_to: safe_return_to(return_to),
            created_at: now,
            expires_at: now.plus_minutes(LOGIN_LIFETIME_MINUTES),
        };
        let admitted = self
            .store
            .write(move |tx| {
                tx.purge_login_requests(now)?;
                if tx.count_login_requests()? >= MAX_PENDING_LOGINS {
                    return Ok(false);
                }
                tx.insert_login_request(&record)?;
                Ok(true)
            })
            .await?;
        if !admitted {
            tracing::warn!(
                "single sign-on: {MAX_PENDING_LOGINS} logins are in progress; refusing new ones until some expire"
            );
            return Err(AppError::Unavailable(
                "too many sign-ins are in progress; try again in a few minutes".to_owned(),
            ));
        }
        Ok(LoginStart {
            authorize_url: url.to_string(),
            browser_binding,
        })
    }

    /// `GET /auth/callback`: exchanges the code, verifies the ID token and starts a session.
    /// Every failure starts nothing. A failure before the provider has vouched for a person (no,
    /// unknown, used or expired `state`, a login begun in another browser, the provider's
    /// refusal, no code, a code it will not exchange) is 400 and only logged: anyone can cause
    /// those without an account, so recording them would let anyone grow the audit log. Once an
    /// ID token arrived, every failure is recorded as `auth.login.failed` (an identical one once
    /// per ten minutes per replica).
    pub async fn finish_login(
        &self,
        code: Option<&str>,
        state: Option<&str>,
        provider_error: Option<&str>,
        browser_binding: Option<&str>,
    ) -> Result<LoginDone, AppError> {
        let settings = self.sso()?.settings.clone();
        let Some(state) = state.filter(|s| !s.is_empty()) else {
            return Err(no_login("the callback has no `state`"));
        };
        let state_hash = hash_secret(state);
        // Looked up before writing: a callback with a made-up state costs a read, not a place
        // in the writer's queue.
        let lookup = state_hash.clone();
        let known = self
            .store
            .read(move |tx| tx.get_login_request(&lookup))
            .await?
            .is_some();
        let request = if known {
            self.store
                .write(move |tx| tx.take_login_request(&state_hash))
                .await?
        } else {
            None
        };
        let now = self.clock.now();
        let Some(request) = request else {
            return Err(no_login(
                "this login's `state` is unknown or was used already: start again at /auth/login",
            ));
        };
        let same_browser = browser_binding
            .is_some_and(|b| bool::from(hash_secret(b).ct_eq(&request.browser_hash)));
        if !same_browser {
            return Err(no_login(
                "this sign-in was started in another browser, or its cookie was lost: start again at /auth/login",
            ));
        }
        if request.expires_at < now {
            return Err(no_login(
                "this login took longer than 10 minutes: start again at /auth/login",
            ));
        }
        if let Some(error) = provider_error {
            let shown: String = error.chars().take(300).collect();
            return Err(no_login(&format!(
                "the identity provider refused the login: {shown}"
            )));
        }
        let Some(code) = code.filter(|c| !c.is_empty()) else {
            return Err(no_login("the callback has no `code`"));
        };
        let claims = match self.exchange_and_verify(&settings, code, &request).await {
            Ok(claims) => claims,
            Err(LoginError::Unavailable(e)) => return Err(e),
            Err(LoginError::Exchange(message)) => return Err(no_login(&message)),
            Err(LoginError::Verify(message)) => {
                return Err(self
                    .login_failed(None, ReasonCode::LoginFailed, &message, json!({}))
                    .await);
            }
        };
        let principal = claims
            .get(&settings.principal_claim)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(principal) = principal else {
            return Err(self
                .login_failed(
                    None,
                    ReasonCode::LoginFailed,
                    &format!(
                        "the ID token has no `{}` claim to name the principal (auth.sso.principal_claim)",
                        settings.principal_claim
                    ),
                    json!({}),
                )
                .await);
        };
        // An address the provider has not verified names nobody for sure.
        if settings.principal_claim == "email"
            && claims.get("email_verified") == Some(&Value::Bool(false))
        {
            return Err(self
                .login_failed(
                    Some(&principal),
                    ReasonCode::LoginFailed,
                    "the identity provider says this email address is not verified",
                    json!({}),
                )
                .await);
        }
        let name = match PrincipalName::parse(&principal) {
            Ok(name) => name,
            Err(e) => {
                return Err(self
                    .login_failed(
                        Some(&principal),
                        ReasonCode::LoginFailed,
                        &format!(
                            "claim `{}` is `{principal}`, which {e}",
                            settings.principal_claim
                        ),
                        json!({}),
                    )
                    .await);
            }
        };
        let role_values = claims.get(&settings.role_claim).cloned();
        let Some(role) = role_from_claim(role_values.as_ref(), &settings.roles) else {
            return Err(self
                .login_failed(
                    Some(name.as_str()),
                    ReasonCode::NoRoleMapping,
                    &format!(
                        "none of your `{}` maps to a role in deploy-safety; ask the security team to add one to `[auth.sso.roles]`",
                        settings.role_claim
                    ),
                    json!({ settings.role_claim.clone(): role_values }),
                )
                .await);
        };
        self.ensure_principal(
            name.as_str(),
            role,
            "sso",
            "auth.login.failed",
            &json!({ settings.role_claim.clone(): role_values }),
        )
        .await?;

        let return_to = request
            .return_to
            .unwrap_or_else(|| crate::DASHBOARD_HOME.to_owned());
        self.start_session(
            name.as_str(),
            role,
            None,
            json!({ "authenticatedBy": "sso", settings.role_claim.clone(): role_values }),
            return_to,
        )
        .await
    }

    /// A new session for a principal, recorded as `auth.login` with `details` (which say how
    /// the person proved who they are).
    pub(crate) async fn start_session(
        &self,
        principal: &str,
        role: Role,
        token_id: Option<String>,
        mut details: Value,
        return_to: String,
    ) -> Result<LoginDone, AppError> {
        let (lifetime, _) = self.identity.session_lifetimes();
        let (id, secret, cookie_value) = random_token_parts(SESSION_PREFIX)?;
        let csrf_token = random_secret()?;
        let now = self.clock.now();
        let record = SessionRecord {
            id,
            secret_hash: hash_secret(&secret),
            principal: principal.to_owned(),
            role,
            csrf_token,
            created_at: now,
            last_seen_at: now,
            expires_at: now.plus_millis(millis(lifetime)),
            revoked_at: None,
            revoked_by: None,
            token_id,
        };
        let view = self.session_view(&record);
        if let Some(object) = details.as_object_mut() {
            object.insert("sessionId".to_owned(), record.id.clone().into());
            object.insert(
                "expiresAt".to_owned(),
                serde_json::to_value(record.expires_at).unwrap_or_default(),
            );
        }
        let entry = AuditDraft {
            principal: record.principal.clone(),
            role: Some(role),
            action: "auth.login".to_owned(),
            environment: None,
            decision: AuditDecision::Allowed,
            reason: ReasonCode::Allowed.as_str().to_owned(),
            details,
        };
        self.store
            .write(move |tx| {
                // The token is read again where the session is written: a revocation that
                // lands between the sign-in's check and this write would otherwise miss the
                // new session (writes are serialized, so one of the two sees the other).
                if let Some(token_id) = &record.token_id {
                    let live = tx
                        .get_token(token_id)?
                        .is_some_and(|t| t.revoked_at.is_none());
                    if !live {
                        return Ok(Err(AppError::Unauthorized(
                            "invalid or revoked token".to_owned(),
                        )));
                    }
                }
                tx.insert_session(&record)?;
                tx.append_audit(entry, now)?;
                Ok(Ok(()))
            })
            .await??;
        Ok(LoginDone {
            cookie_value,
            session: view,
            return_to,
            max_age_seconds: lifetime.as_secs(),
        })
    }

    /// The dashboard's sign-in without single sign-on (SPEC §21): a pasted static token is
    /// exchanged for a session of its principal, so the page never keeps the token. Refused
    /// when single sign-on is configured (people sign in through the identity provider then),
    /// for OIDC tokens (workloads never open a session), and like any bad token (401).
    pub async fn sign_in_with_token(
        &self,
        presented: &str,
        return_to: Option<&str>,
    ) -> Result<LoginDone, AppError> {
        if self.identity.sso.is_some() {
            return Err(AppError::NotFound(format!(
                "single sign-on is configured: sign in through the identity provider at {}/auth/login",
                deploy_safety_api_types::API_PREFIX
            )));
        }
        let caller = self.authenticate(presented.trim()).await?;
        let AuthMethod::Token { id } = caller.auth else {
            return Err(AppError::Unauthorized(
                "only a static token (`ds_…`) can sign in to the dashboard; a pipeline's OIDC token never opens a session".to_owned(),
            ));
        };
        let return_to = safe_return_to(return_to)
            .filter(|path| path.starts_with(crate::DASHBOARD_HOME))
            .unwrap_or_else(|| crate::DASHBOARD_HOME.to_owned());
        self.start_session(
            &caller.name,
            caller.role,
            Some(id.clone()),
            json!({ "authenticatedBy": AuthMethod::TOKEN_SESSION, "tokenId": id }),
            return_to,
        )
        .await
    }

    /// The code exchanged for tokens (with the PKCE verifier) and the ID token verified; its
    /// claims. A signature that fails with metadata fetched before is tried once more with
    /// fresh metadata: the provider may have rotated its keys.
    async fn exchange_and_verify(
        &self,
        settings: &SsoSettings,
        code: &str,
        request: &LoginRequestRecord,
    ) -> Result<Map<String, Value>, LoginError> {
        let metadata = self
            .provider_metadata(false)
            .await
            .map_err(LoginError::Unavailable)?;
        let client = |metadata| settings.client(metadata);
        let http = ProviderHttp(
            self.identity
                .http()
                .map_err(|e| LoginError::Unavailable(AppError::Unavailable(e)))?,
        );
        let tokens = client(metadata.clone())
            .map_err(LoginError::Exchange)?
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| LoginError::Exchange(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(request.pkce_verifier.clone()))
            .request_async(&http)
            .await
            .map_err(|e| {
                LoginError::Exchange(format!(
                    "the identity provider did not exchange the code: {}",
                    describe_token_error(&e)
                ))
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| {
                LoginError::Exchange(
                    "the identity provider answered without an ID token".to_owned(),
                )
            })?
            .clone();
        let nonce = Nonce::new(request.nonce.clone());
        let clock = self.clock.clone();
        let verify = |metadata: CoreProviderMetadata| -> Result<(), String> {
            let client = client(metadata)?;
            let clock = clock.clone();
            let verifier = client
                .id_token_verifier()
                // RS256 only, whatever the provider advertises: never HS* with the client
                // secret, never `none`.
                .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256])
                .set_time_fn(move || {
                    chrono::DateTime::from_timestamp_millis(clock.now().unix_millis())
                        .unwrap_or_default()
                });
            id_token
                .claims(&verifier, &nonce)
                .map(|_| ())
                .map_err(|e| format!("the ID token does not verify: {e}"))
        };
        if let Err(first) = verify(metadata) {
            let fresh = self
                .provider_metadata(true)
                .await
                .map_err(|_| LoginError::Verify(first.clone()))?;
            verify(fresh).map_err(LoginError::Verify)?;
        }
        // Verified above; read every claim (the role claim is not a standard one).
        jsonwebtoken::dangerous::insecure_decode_claims::<Map<String, Value>>(id_token.to_string())
            .map_err(|e| LoginError::Verify(format!("the ID token's claims cannot be read: {e}")))
    }

    /// Records a failed login and answers with it: 403 for a person without a role, 400 for
    /// everything else (SPEC §18).
    async fn login_failed(
        &self,
        principal: Option<&str>,
        reason: ReasonCode,
        message: &str,
        details: Value,
    ) -> AppError {
        tracing::warn!(
            principal = principal.unwrap_or("unknown"),
            reason = reason.as_str(),
            "single sign-on failed: {message}"
        );
        let key = format!(
            "auth.login.failed\n{}\n{}\n{message}",
            reason.as_str(),
            principal.unwrap_or("unknown")
        );
        if !self
            .identity
            .first_refusal_in_window(&key, self.clock.now())
        {
            return login_refusal(reason, message);
        }
        let draft = identity_refusal(
            principal.unwrap_or("unknown"),
            None,
            "auth.login.failed",
            reason,
            "sso",
            message,
            details,
        );
        if let Err(e) = self.append_audit_entry(draft).await {
            return e;
        }
        login_refusal(reason, message)
    }

    /// A session as lists show it.
    fn session_view(&self, record: &SessionRecord) -> SessionView {
        let (_, idle) = self.identity.session_lifetimes();
        let idle_expires_at = record.last_seen_at.plus_millis(millis(idle));
        SessionView {
            id: record.id.clone(),
            principal: record.principal.clone(),
            role: record.role,
            created_at: record.created_at,
            last_seen_at: record.last_seen_at,
            expires_at: record.expires_at,
            idle_expires_at: idle_expires_at.min(record.expires_at),
            revoked_at: record.revoked_at,
            revoked_by: record.revoked_by.clone(),
            token_id: record.token_id.clone(),
        }
    }

    /// The caller behind a session cookie, or 401: unknown, revoked, past its absolute
    /// lifetime or idle too long. Activity is recorded at most once a minute.
    pub async fn authenticate_session(&self, cookie_value: &str) -> Result<Caller, AppError> {
        self.session_caller(cookie_value, true).await
    }

    /// As [`App::authenticate_session`], without counting as activity: a page refreshing
    /// itself in an open tab must not keep an unattended session from its idle timeout.
    pub async fn authenticate_session_unattended(
        &self,
        cookie_value: &str,
    ) -> Result<Caller, AppError> {
        self.session_caller(cookie_value, false).await
    }

    async fn session_caller(&self, cookie_value: &str, touch: bool) -> Result<Caller, AppError> {
        let sso = self.identity.sso.is_some();
        let refused = || {
            AppError::Unauthorized(if sso {
                format!(
                    "invalid, expired or revoked session: sign in again at {}/auth/login",
                    deploy_safety_api_types::API_PREFIX
                )
            } else {
                "invalid, expired or revoked session: sign in again at /ui/sign-in".to_owned()
            })
        };
        let (id, secret) = split_token(SESSION_PREFIX, cookie_value).ok_or_else(refused)?;
        let owned_id = id.to_owned();
        let record = self
            .store
            .read(move |tx| tx.get_session(&owned_id))
            .await?
            .ok_or_else(refused)?;
        let matches: bool = hash_secret(secret).ct_eq(&record.secret_hash).into();
        let now = self.clock.now();
        let idle = millis(self.identity.session_lifetimes().1);
        // Without `[auth.sso]` (removed, say, after an incident at the provider) its sessions
        // end; dashboard sessions signed in with a token go on.
        let sso_session_without_sso = record.token_id.is_none() && self.identity.sso.is_none();
        if !matches
            || sso_session_without_sso
            || record.revoked_at.is_some()
            || now >= record.expires_at
            || now.millis_since(record.last_seen_at) >= idle
        {
            return Err(refused());
        }
        if touch && now.millis_since(record.last_seen_at) >= TOUCH_INTERVAL_MS {
            let id = record.id.clone();
            self.store
                .write(move |tx| tx.touch_session(&id, now))
                .await?;
        }
        Ok(Caller {
            name: record.principal,
            role: record.role,
            auth: AuthMethod::Sso {
                session_id: record.id,
                csrf_token: record.csrf_token,
                token_id: record.token_id,
            },
        })
    }

    /// `POST /auth/logout`: ends the caller's session.
    pub async fn logout(&self, caller: &Caller) -> Result<(), AppError> {
        let AuthMethod::Sso { session_id, .. } = &caller.auth else {
            return Err(AppError::invalid(
                "session",
                "only a single sign-on session can sign out; revoke a token with `deploy-safety token revoke`",
            ));
        };
        let id = session_id.clone();
        let entry = crate::audit::entry(
            caller,
            "auth.logout",
            None,
            AuditDecision::Recorded,
            ReasonCode::Recorded,
            json!({"sessionId": id}),
        );
        let by = caller.name.clone();
        let clock = self.clock.clone();
        self.store
            .write(move |tx| {
                let now = clock.now();
                if tx.revoke_session(&id, &by, now)? {
                    tx.append_audit(entry, now)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Every session, newest first (`deploy-safety session list`).
    pub async fn list_sessions(&self) -> Result<Vec<SessionView>, AppError> {
        let records = self.store.read(|tx| tx.list_sessions()).await?;
        Ok(records.iter().map(|r| self.session_view(r)).collect())
    }

    /// Revokes one session by id, or every session of a principal (`deploy-safety session
    /// revoke`); each revocation is audited.
    pub async fn revoke_sessions(
        &self,
        id: Option<&str>,
        principal: Option<&str>,
        by: &str,
    ) -> Result<Vec<String>, AppError> {
        let id = id.map(|i| i.strip_prefix(SESSION_PREFIX).unwrap_or(i).to_owned());
        let principal = principal.map(str::to_owned);
        let by = by.to_owned();
        let clock = self.clock.clone();
        self.store
            .write(move |tx| {
                let now = clock.now();
                let revoked: Vec<SessionRecord> = match (&id, &principal) {
                    (Some(id), _) => {
                        let Some(mut record) = tx.get_session(id)? else {
                            return Ok(Err(AppError::NotFound(format!(
                                "no session with id `{id}`"
                            ))));
                        };
                        if !tx.revoke_session(id, &by, now)? {
                            return Ok(Err(AppError::Conflict {
                                reason: None,
                                message: format!("session {id} is already revoked"),
                                hints: Vec::new(),
                            }));
                        }
                        record.revoked_at = Some(now);
                        vec![record]
                    }
                    (None, Some(principal)) => tx.revoke_sessions_of(principal, &by, now)?,
                    (None, None) => {
                        return Ok(Err(AppError::invalid(
                            "id",
                            "name a session id or a principal",
                        )));
                    }
                };
                for record in &revoked {
                    tx.append_audit(
                        AuditDraft {
                            principal: by.clone(),
                            role: None,
                            action: "session.revoke".to_owned(),
                            environment: None,
                            decision: AuditDecision::Recorded,
                            reason: ReasonCode::Recorded.as_str().to_owned(),
                            details: json!({
                                "sessionId": record.id,
                                "principal": record.principal,
                                "authenticatedBy": "cli",
                            }),
                        },
                        now,
                    )?;
                }
                Ok(Ok(revoked.into_iter().map(|r| r.id).collect()))
            })
            .await?
    }
}

/// Why a callback's code did not become verified claims.
enum LoginError {
    /// The provider's metadata cannot be read (503).
    Unavailable(AppError),
    /// The provider did not give tokens for the code: nobody is vouched for yet.
    Exchange(String),
    /// The provider's ID token fails a check.
    Verify(String),
}

/// The answer to a failed login: 403 for a person without a role (or with another one), 400
/// for everything else (SPEC §18).
fn login_refusal(reason: ReasonCode, message: &str) -> AppError {
    match reason {
        ReasonCode::NoRoleMapping | ReasonCode::PrincipalRoleConflict => AppError::Forbidden {
            reason,
            message: message.to_owned(),
            hints: Vec::new(),
        },
        _ => AppError::Invalid {
            field: "state".to_owned(),
            message: message.to_owned(),
        },
    }
}

/// A callback that names no login in progress: 400, logged, not audited.
fn no_login(message: &str) -> AppError {
    tracing::warn!("single sign-on callback refused: {message}");
    AppError::Invalid {
        field: "state".to_owned(),
        message: message.to_owned(),
    }
}

/// The provider's own words for a refused code exchange (`invalid_grant`, ...), not a debug
/// dump.
fn describe_token_error<E: std::error::Error>(
    error: &openidconnect::RequestTokenError<
        E,
        openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    >,
) -> String {
    match error {
        openidconnect::RequestTokenError::ServerResponse(response) => {
            let mut text = response.error().to_string();
            if let Some(description) = response.error_description() {
                text.push_str(": ");
                text.push_str(description);
            }
            text
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_return_to(Some("/")), Some("/".to_owned()));
        assert_eq!(
            safe_return_to(Some("/canaries/x?y=1")),
            Some("/canaries/x?y=1".to_owned())
        );
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil",
            "evil",
            "/a b",
            "",
        ] {
            assert_eq!(safe_return_to(Some(bad)), None, "{bad}");
        }
        assert_eq!(safe_return_to(None), None);
    }

    fn settings(redirect: &str) -> SsoSettings {
        SsoSettings {
            issuer: "https://idp.example".into(),
            client_id: "c".into(),
            client_secret: "s".into(),
            redirect_url: redirect.into(),
            scopes: vec!["openid".into()],
            principal_claim: "email".into(),
            role_claim: "groups".into(),
            roles: BTreeMap::new(),
            session_lifetime: Duration::from_secs(3600),
            session_idle_timeout: Duration::from_secs(600),
        }
    }

    #[test]
    fn cookies_are_secure_except_on_plain_http_to_loopback() {
        let cases = [
            ("https://gate.example/auth/callback", true),
            ("http://gate.example/auth/callback", true),
            ("https://127.0.0.1:8080/auth/callback", true),
            ("http://127.0.0.1:8080/auth/callback", false),
            ("http://[::1]:8080/auth/callback", false),
            ("http://localhost:8080/auth/callback", false),
        ];
        for (url, secure) in cases {
            assert_eq!(settings(url).secure_cookie(), secure, "{url}");
        }
        assert!(
            !format!("{:?}", settings("https://x")).contains("\"s\""),
            "the secret is redacted"
        );
    }
}
