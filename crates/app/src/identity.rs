//! Who is calling (SPEC §2, §18): a static token, a workload's OIDC token, or a person's single
//! sign-on session; and how that is recorded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use deploy_safety_core::{AuditDecision, AuditDraft, ReasonCode, Role};
use serde_json::{Map, Value};

use crate::oidc::{DEFAULT_IDENTITY_TIMEOUT, Issuers, OidcIssuerSettings};
use crate::sso::{Sso, SsoSettings};

/// How a caller authenticated: recorded in every audit entry made on its behalf, so an
/// investigation can tell a pipeline from a person.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// A static bearer token (its public id).
    Token { id: String },
    /// A workload's OIDC token from the `[[auth.oidc]]` issuer `issuer`; `claims` are those its
    /// binding matched.
    Oidc {
        issuer: String,
        claims: Map<String, Value>,
    },
    /// A person's session: started by single sign-on, or by the dashboard's sign-in with a
    /// static token (`token_id`, SPEC §21).
    Sso {
        session_id: String,
        csrf_token: String,
        token_id: Option<String>,
    },
}

/// Never shows a session's CSRF token.
impl std::fmt::Debug for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthMethod::Token { id } => f.debug_struct("Token").field("id", id).finish(),
            AuthMethod::Oidc { issuer, claims } => f
                .debug_struct("Oidc")
                .field("issuer", issuer)
                .field("claims", claims)
                .finish(),
            AuthMethod::Sso {
                session_id,
                token_id,
                ..
            } => f
                .debug_struct("Sso")
                .field("session_id", session_id)
                .field("csrf_token", &"<redacted>")
                .field("token_id", token_id)
                .finish(),
        }
    }
}

impl AuthMethod {
    /// `token`, `oidc:NAME`, `sso`, or `token-session` (a dashboard session signed in with a
    /// static token).
    pub fn label(&self) -> String {
        match self {
            AuthMethod::Token { .. } => "token".to_owned(),
            AuthMethod::Oidc { issuer, .. } => format!("oidc:{issuer}"),
            AuthMethod::Sso { token_id: None, .. } => "sso".to_owned(),
            AuthMethod::Sso {
                token_id: Some(_), ..
            } => Self::TOKEN_SESSION.to_owned(),
        }
    }

    /// How a dashboard session signed in with a static token is recorded.
    pub const TOKEN_SESSION: &'static str = "token-session";

    /// How a caller that proved itself by a webhook's signature is recorded (GitHub).
    pub const SIGNATURE: &'static str = "signature";

    /// A workload identity: never approves (SPEC §19), never opens a session.
    pub fn is_workload(&self) -> bool {
        matches!(self, AuthMethod::Oidc { .. })
    }
}

/// Whether `url` names a loopback host (`127.0.0.0/8`, `::1`, `localhost`).
pub fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// An identity provider's address must be `https://`, except on a loopback address (tests,
/// development): SPEC §18. Whoever can change keys in transit can sign in as anyone.
pub fn check_provider_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        _ => Err(format!(
            "`{url}` must be https:// (plain http only on a loopback address)"
        )),
    }
}

/// An identity provider's answer is read up to this size: discovery documents and key sets
/// are kilobytes.
pub const MAX_PROVIDER_RESPONSE_BYTES: usize = 1024 * 1024;

/// The body of a provider's response, refused beyond [`MAX_PROVIDER_RESPONSE_BYTES`].
pub(crate) async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_PROVIDER_RESPONSE_BYTES {
            return Err(format!(
                "the answer is larger than {MAX_PROVIDER_RESPONSE_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A session's absolute lifetime unless `[auth.sso] session_lifetime_minutes` says otherwise.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// A session ends after this long unused unless `[auth.sso] session_idle_minutes` says
/// otherwise.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// `[auth]`: identity providers beside static tokens.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub oidc: Vec<OidcIssuerSettings>,
    pub sso: Option<SsoSettings>,
    /// Every request to an identity provider ends within this.
    pub provider_timeout: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            oidc: Vec::new(),
            sso: None,
            provider_timeout: DEFAULT_IDENTITY_TIMEOUT,
        }
    }
}

/// The identity providers' state: issuers' cached keys, the single sign-on provider's
/// metadata, principals already confirmed.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) issuers: Issuers,
    pub(crate) sso: Option<Sso>,
    /// For identity providers only: bounded timeout, no redirects followed.
    http: Result<reqwest::Client, String>,
    /// Principals confirmed to exist with this role. Principals never change role and are
    /// never deleted, so an entry never goes stale.
    known_principals: Mutex<HashMap<String, Role>>,
    /// When each identity refusal was last recorded (see `refuse_identity`).
    recorded_refusals: Mutex<HashMap<String, deploy_safety_core::Timestamp>>,
}

impl Identity {
    pub(crate) fn new(settings: &AuthSettings) -> Identity {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.provider_timeout)
            .connect_timeout(settings.provider_timeout)
            .user_agent(concat!("deploy-safety/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                // Never a default client instead: it would follow redirects, without a time
                // limit. Every provider request fails closed.
                tracing::error!(error = %e, "cannot build the identity providers' HTTP client; OIDC tokens and single sign-on are refused");
                format!("no HTTP client for identity providers: {e}")
            });
        Identity {
            issuers: Issuers::new(&settings.oidc),
            sso: settings.sso.clone().map(Sso::new),
            http,
            known_principals: Mutex::new(HashMap::new()),
            recorded_refusals: Mutex::new(HashMap::new()),
        }
    }

    /// How long sessions last: single sign-on's settings when configured, else the defaults
    /// (the same as single sign-on's) for dashboard sessions signed in with a token.
    pub(crate) fn session_lifetimes(&self) -> (Duration, Duration) {
        match &self.sso {
            Some(sso) => (
                sso.settings.session_lifetime,
                sso.settings.session_idle_timeout,
            ),
            None => (DEFAULT_SESSION_LIFETIME, DEFAULT_SESSION_IDLE_TIMEOUT),
        }
    }

    /// The identity providers' HTTP client, or why there is none.
    pub(crate) fn http(&self) -> Result<&reqwest::Client, String> {
        self.http.as_ref().map_err(Clone::clone)
    }

    pub(crate) fn known_principal(&self, name: &str) -> Option<Role> {
        self.known_principals
            .lock()
            .ok()
            .and_then(|known| known.get(name).copied())
    }

    /// Whether the refusal `key` is to be recorded now: the first time, and again once
    /// [`crate::oidc::REFUSAL_AUDIT_WINDOW_MS`] has passed. Bounded like the principal cache.
    pub(crate) fn first_refusal_in_window(
        &self,
        key: &str,
        now: deploy_safety_core::Timestamp,
    ) -> bool {
        let Ok(mut recorded) = self.recorded_refusals.lock() else {
            return true;
        };
        if let Some(at) = recorded.get(key)
            && now.millis_since(*at) < crate::oidc::REFUSAL_AUDIT_WINDOW_MS
        {
            return false;
        }
        if recorded.len() >= 100_000 {
            recorded.retain(|_, at| now.millis_since(*at) < crate::oidc::REFUSAL_AUDIT_WINDOW_MS);
            if recorded.len() >= 100_000 {
                recorded.clear();
            }
        }
        recorded.insert(key.to_owned(), now);
        true
    }

    pub(crate) fn remember_principal(&self, name: &str, role: Role) {
        if let Ok(mut known) = self.known_principals.lock() {
            // Bounded: a flood of distinct workload names cannot grow it without end.
            if known.len() >= 100_000 {
                known.clear();
            }
            known.insert(name.to_owned(), role);
        }
    }
}

/// The audit entry of a refused identity (a token no binding matches, a failed sign-in, a role
/// conflict): denied, with how the caller tried to authenticate and why, in words.
pub(crate) fn identity_refusal(
    principal: &str,
    role: Option<Role>,
    action: &str,
    reason: ReasonCode,
    method: &str,
    message: &str,
    details: Value,
) -> AuditDraft {
    let mut details = details;
    if let Some(object) = details.as_object_mut() {
        object.insert("authenticatedBy".to_owned(), method.into());
        object.insert("message".to_owned(), message.into());
    }
    AuditDraft {
        principal: principal.to_owned(),
        role,
        action: action.to_owned(),
        environment: None,
        decision: AuditDecision::Denied,
        reason: reason.as_str().to_owned(),
        details,
    }
}
