//! `[auth]`: OIDC workload identity (`[[auth.oidc]]`) and single sign-on (`[auth.sso]`), SPEC
//! §18. Every value is checked at start: a gate that trusts the wrong issuer must not start.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail};
use deploy_safety_api_types::API_PREFIX;
use deploy_safety_app::{AuthSettings, OidcIssuerSettings, SsoSettings, check_provider_url};
use deploy_safety_core::Role;
use deploy_safety_core::identity::{Binding, ClaimPattern, PrincipalTemplate};
use serde::{Deserialize, Serialize};

/// `[auth]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Trusted OIDC issuers for workloads (`[[auth.oidc]]`).
    pub oidc: Vec<OidcSection>,
    /// Single sign-on for people.
    pub sso: Option<SsoSection>,
    /// Every request to an identity provider ends within this (default 3000).
    pub provider_timeout_ms: Option<u64>,
}

/// One `[[auth.oidc]]` issuer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub leeway_seconds: Option<u64>,
    #[serde(default)]
    pub max_token_age_minutes: Option<u64>,
    #[serde(default)]
    pub bindings: Vec<BindingSection>,
}

/// One `[[auth.oidc.bindings]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingSection {
    /// Claim → exact value or a glob (`*` matches any characters, `/` included).
    pub claims: BTreeMap<String, String>,
    /// A template over claims, e.g. `github:{repository}@{environment}`.
    pub principal: String,
    pub role: Role,
}

/// `[auth.sso]`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoSection {
    pub issuer: String,
    pub client_id: String,
    /// Or `DEPLOY_SAFETY_AUTH_SSO_CLIENT_SECRET`, to keep it out of the file.
    #[serde(default)]
    pub client_secret: String,
    /// This server's `/auth/callback`, as the provider has it registered.
    pub redirect_url: String,
    #[serde(default)]
    pub scopes: Option<String>,
    #[serde(default)]
    pub principal_claim: Option<String>,
    #[serde(default)]
    pub role_claim: Option<String>,
    /// Role claim value → role; the highest wins.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    #[serde(default)]
    pub session_lifetime_minutes: Option<u64>,
    #[serde(default)]
    pub session_idle_minutes: Option<u64>,
}

impl fmt::Debug for SsoSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SsoSection")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_url", &self.redirect_url)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// An issuer must be `https://`, except on a loopback address (tests, development).
fn check_issuer(at: &str, url: &str) -> anyhow::Result<()> {
    check_provider_url(url).map_err(|e| anyhow!("{at}: {e}"))
}

fn algorithm(at: &str, name: &str) -> anyhow::Result<jsonwebtoken::Algorithm> {
    use jsonwebtoken::Algorithm::*;
    let alg = match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        "none" | "HS256" | "HS384" | "HS512" => bail!(
            "{at}: `{name}` is never accepted: an issuer's tokens must be signed with its private key"
        ),
        other => bail!(
            "{at}: unknown algorithm `{other}` (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
        ),
    };
    Ok(alg)
}

fn minutes(at: &str, value: Option<u64>, default: u64, max: u64) -> anyhow::Result<Duration> {
    let minutes = value.unwrap_or(default);
    if !(1..=max).contains(&minutes) {
        bail!("{at}: must be from 1 to {max}");
    }
    Ok(Duration::from_secs(minutes * 60))
}

impl AuthSection {
    /// The application's settings, every value checked.
    pub fn resolve(&self) -> anyhow::Result<AuthSettings> {
        let provider_timeout_ms = self.provider_timeout_ms.unwrap_or(3_000);
        if !(100..=60_000).contains(&provider_timeout_ms) {
            bail!("auth.provider_timeout_ms: must be from 100 to 60000");
        }
        let mut oidc = Vec::new();
        for (i, section) in self.oidc.iter().enumerate() {
            let at = format!("auth.oidc[{i}]");
            oidc.push(section.resolve(&at)?);
            if self.oidc[..i].iter().any(|o| o.name == section.name) {
                bail!("{at}.name: two [[auth.oidc]] are named `{}`", section.name);
            }
            if self.oidc[..i].iter().any(|o| o.issuer == section.issuer) {
                bail!("{at}.issuer: two [[auth.oidc]] trust `{}`", section.issuer);
            }
        }
        let sso = self.sso.as_ref().map(SsoSection::resolve).transpose()?;
        Ok(AuthSettings {
            oidc,
            sso,
            provider_timeout: Duration::from_millis(provider_timeout_ms),
        })
    }
}

impl OidcSection {
    fn resolve(&self, at: &str) -> anyhow::Result<OidcIssuerSettings> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            bail!("{at}.name: 1 to 64 characters of `A-Z a-z 0-9 - _ .`");
        }
        check_issuer(&format!("{at}.issuer"), &self.issuer)?;
        if self.audience.trim().is_empty() {
            bail!("{at}.audience: required (the `aud` this server's tokens carry)");
        }
        if let Some(url) = &self.jwks_url {
            check_issuer(&format!("{at}.jwks_url"), url)?;
        }
        let algorithms = match &self.algorithms {
            None => vec![jsonwebtoken::Algorithm::RS256],
            Some(names) if names.is_empty() => bail!("{at}.algorithms: name at least one"),
            Some(names) => names
                .iter()
                .map(|n| algorithm(&format!("{at}.algorithms"), n))
                .collect::<anyhow::Result<_>>()?,
        };
        let leeway_seconds = self.leeway_seconds.unwrap_or(60);
        if leeway_seconds > 600 {
            bail!("{at}.leeway_seconds: at most 600");
        }
        let max_token_age_minutes = self.max_token_age_minutes.unwrap_or(60);
        if !(1..=1_440).contains(&max_token_age_minutes) {
            bail!("{at}.max_token_age_minutes: must be from 1 to 1440");
        }
        if self.bindings.is_empty() {
            bail!(
                "{at}.bindings: add at least one [[auth.oidc.bindings]]: without one, every token is refused"
            );
        }
        let bindings = self
            .bindings
            .iter()
            .enumerate()
            .map(|(j, b)| {
                let at = format!("{at}.bindings[{j}]");
                if b.claims.is_empty() {
                    bail!("{at}.claims: name at least one claim (a binding matching every token of the issuer is a mistake waiting to happen)");
                }
                let principal = PrincipalTemplate::parse(&b.principal)
                    .map_err(|e| anyhow!("{at}.principal: {e}"))?;
                Ok(Binding {
                    claims: b
                        .claims
                        .iter()
                        .map(|(claim, pattern)| (claim.clone(), ClaimPattern::new(pattern)))
                        .collect(),
                    principal,
                    role: b.role,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(OidcIssuerSettings {
            name: self.name.clone(),
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            jwks_url: self.jwks_url.clone(),
            algorithms,
            leeway_seconds,
            max_token_age_minutes,
            bindings,
        })
    }
}

impl SsoSection {
    fn resolve(&self) -> anyhow::Result<SsoSettings> {
        let at = "auth.sso";
        check_issuer(&format!("{at}.issuer"), &self.issuer)?;
        if self.client_id.trim().is_empty() {
            bail!("{at}.client_id: required");
        }
        if self.client_secret.is_empty() {
            bail!("{at}.client_secret: required (or set DEPLOY_SAFETY_AUTH_SSO_CLIENT_SECRET)");
        }
        check_issuer(&format!("{at}.redirect_url"), &self.redirect_url)?;
        let callback = format!("{API_PREFIX}/auth/callback");
        let path = url::Url::parse(&self.redirect_url).map(|u| u.path().to_owned());
        if path.as_deref().ok() != Some(callback.as_str()) {
            bail!(
                "{at}.redirect_url: must be this server's `{callback}`, e.g. https://deploy-safety.example.com{callback}"
            );
        }
        let scopes: Vec<String> = self
            .scopes
            .as_deref()
            .unwrap_or("openid email profile")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !scopes.iter().any(|s| s == "openid") {
            bail!("{at}.scopes: must include `openid`");
        }
        let role_claim = self
            .role_claim
            .clone()
            .unwrap_or_else(|| "groups".to_owned());
        if self.roles.is_empty() {
            bail!(
                "{at}.roles: map at least one `{role_claim}` value to a role, e.g. \"platform-leads\" = \"eng-lead\""
            );
        }
        let lifetime = minutes(
            &format!("{at}.session_lifetime_minutes"),
            self.session_lifetime_minutes,
            720,
            10_080,
        )?;
        let idle = minutes(
            &format!("{at}.session_idle_minutes"),
            self.session_idle_minutes,
            60,
            10_080,
        )?;
        Ok(SsoSettings {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            redirect_url: self.redirect_url.clone(),
            scopes,
            principal_claim: self
                .principal_claim
                .clone()
                .unwrap_or_else(|| "email".to_owned()),
            role_claim,
            roles: self.roles.clone(),
            session_lifetime: lifetime,
            session_idle_timeout: idle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(toml_text: &str) -> anyhow::Result<AuthSettings> {
        let section: AuthSection = toml::from_str(toml_text)?;
        section.resolve()
    }

    const GITHUB: &str = r#"
        [[oidc]]
        name = "github"
        issuer = "https://token.actions.githubusercontent.com"
        audience = "deploy-safety"
        [[oidc.bindings]]
        claims = { repository = "acme/payments", environment = "production" }
        principal = "github:{repository}@{environment}"
        role = "eng-lead"
    "#;

    #[test]
    fn a_github_issuer_resolves_with_the_spec_defaults() {
        let settings = oidc(GITHUB).unwrap();
        let issuer = &settings.oidc[0];
        assert_eq!(issuer.algorithms, [jsonwebtoken::Algorithm::RS256]);
        assert_eq!(issuer.leeway_seconds, 60);
        assert_eq!(issuer.max_token_age_minutes, 60);
        assert_eq!(issuer.jwks_url, None);
        assert_eq!(issuer.bindings[0].role, Role::EngLead);
        assert!(settings.sso.is_none());
    }

    #[test]
    fn unsafe_or_incomplete_issuers_are_refused_naming_the_setting() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "issuer = \"https://token.actions.githubusercontent.com\"",
                "issuer = \"http://idp.example\"",
                "auth.oidc[0].issuer",
            ),
            (
                "audience = \"deploy-safety\"",
                "audience = \" \"",
                "auth.oidc[0].audience",
            ),
            (
                "name = \"github\"",
                "name = \"git hub\"",
                "auth.oidc[0].name",
            ),
            (
                "role = \"eng-lead\"",
                "role = \"eng-lead\"\n[[oidc.bindings]]\nclaims = {}\nprincipal = \"x\"\nrole = \"developer\"",
                "auth.oidc[0].bindings[1].claims",
            ),
            (
                "principal = \"github:{repository}@{environment}\"",
                "principal = \"github:{repository\"",
                "auth.oidc[0].bindings[0].principal",
            ),
        ];
        for (from, to, named) in cases {
            let text = GITHUB.replace(from, to);
            let error = format!("{:#}", oidc(&text).unwrap_err());
            assert!(error.contains(named), "{to}: {error}");
        }
        for alg in ["none", "HS256", "HS512"] {
            let text = GITHUB.replace(
                "audience = \"deploy-safety\"",
                &format!("audience = \"deploy-safety\"\nalgorithms = [\"{alg}\"]"),
            );
            let error = format!("{:#}", oidc(&text).unwrap_err());
            assert!(error.contains("never accepted"), "{alg}: {error}");
        }
        assert!(
            oidc(&GITHUB.replace(
                "https://token.actions.githubusercontent.com",
                "http://127.0.0.1:9000"
            ))
            .is_ok(),
            "loopback http is for tests"
        );
        let no_bindings = GITHUB
            .split("[[oidc.bindings]]")
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(format!("{:#}", oidc(&no_bindings).unwrap_err()).contains("bindings"));
        let twice = format!(
            "{GITHUB}{}",
            GITHUB.replace("name = \"github\"", "name = \"github2\"")
        );
        assert!(format!("{:#}", oidc(&twice).unwrap_err()).contains("two [[auth.oidc]] trust"));
    }

    const SSO: &str = r#"
        [sso]
        issuer = "https://idp.example"
        client_id = "deploy-safety"
        client_secret = "s3cret"
        redirect_url = "https://gate.example/api/deploy-safety/auth/callback"
        role_claim = "groups"
        roles = { "platform-leads" = "eng-lead", "security" = "security-team" }
    "#;

    #[test]
    fn single_sign_on_resolves_with_the_spec_defaults() {
        let sso = oidc(SSO).unwrap().sso.unwrap();
        assert_eq!(sso.scopes, ["openid", "email", "profile"]);
        assert_eq!(sso.principal_claim, "email");
        assert_eq!(sso.session_lifetime, Duration::from_secs(12 * 3600));
        assert_eq!(sso.session_idle_timeout, Duration::from_secs(3600));
        assert!(!format!("{sso:?}").contains("s3cret"));
        for (from, to, named) in [
            ("client_secret = \"s3cret\"", "", "client_secret"),
            (
                "https://gate.example/api/deploy-safety/auth/callback",
                "https://gate.example/auth/callback",
                "redirect_url",
            ),
            (
                "roles = { \"platform-leads\" = \"eng-lead\", \"security\" = \"security-team\" }",
                "",
                "roles",
            ),
            ("role_claim = \"groups\"", "scopes = \"email\"", "scopes"),
        ] {
            let error = format!("{:#}", oidc(&SSO.replace(from, to)).unwrap_err());
            assert!(error.contains(named), "{named}: {error}");
        }
    }
}
