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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// A static bearer token (its public id).
    Token { id: String },
    /// A workload's OIDC token from the `[[auth.oidc]]` issuer `issuer`; `claims` are those its
    /// binding matched.
    Oidc {
        issuer: String,
        claims: Map<String, Value>,
    },
    /// A person's single sign-on session.
    Sso {
        session_id: String,
        csrf_token: String,
    },
}

impl AuthMethod {
    /// `token`, `oidc:NAME` or `sso`.
    pub fn label(&self) -> String {
        match self {
            AuthMethod::Token { .. } => "token".to_owned(),
            AuthMethod::Oidc { issuer, .. } => format!("oidc:{issuer}"),
            AuthMethod::Sso { .. } => "sso".to_owned(),
        }
    }

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
    pub(crate) http: reqwest::Client,
    /// Principals confirmed to exist with this role. Principals never change role and are
    /// never deleted, so an entry never goes stale.
    known_principals: Mutex<HashMap<String, Role>>,
}

impl Identity {
    pub(crate) fn new(settings: &AuthSettings) -> Identity {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.provider_timeout)
            .connect_timeout(settings.provider_timeout)
            .user_agent(concat!("deploy-safety/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Identity {
            issuers: Issuers::new(&settings.oidc),
            sso: settings.sso.clone().map(Sso::new),
            http,
            known_principals: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn known_principal(&self, name: &str) -> Option<Role> {
        self.known_principals
            .lock()
            .ok()
            .and_then(|known| known.get(name).copied())
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
