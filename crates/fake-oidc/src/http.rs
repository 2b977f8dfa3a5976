//! The provider's HTTP endpoints: OpenID Connect Discovery 1.0, JWKS (RFC 7517), and the
//! authorization code flow (RFC 6749 §4.1, OIDC Core §3.1) with PKCE S256 (RFC 7636).
//!
//! The endpoints are strict where a relying party could get the protocol wrong, so that a test
//! against them fails rather than passes by luck.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, PRAGMA,
    WWW_AUTHENTICATE,
};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{AuthorizeRequest, Grant, IdTokenTamper, Shared, Sso, TokenRequest, rs256_header};

pub(crate) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub(crate) const JWKS_PATH: &str = "/jwks";
const AUTHORIZE_PATH: &str = "/authorize";
const TOKEN_PATH: &str = "/token";

/// Lifetime of access and ID tokens, in seconds.
const TOKEN_LIFETIME: i64 = 300;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(DISCOVERY_PATH, get(discovery))
        .route(JWKS_PATH, get(jwks))
        .route(AUTHORIZE_PATH, get(authorize))
        .route(TOKEN_PATH, post(token))
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), gate))
        .with_state(shared)
}

/// In front of every endpoint: counts key-material fetches, answers 503 while unavailable, and
/// holds discovery and JWKS requests while hanging.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let key_material = match path {
        DISCOVERY_PATH => {
            shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            true
        }
        JWKS_PATH => {
            shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            true
        }
        _ => false,
    };
    if !shared.available.load(Ordering::SeqCst) {
        return unavailable();
    }
    if key_material {
        let mut hanging = shared.hanging.subscribe();
        let mut shutdown = shared.shutdown.subscribe();
        // Both senders live in `shared`, which this task holds: the waits end only by value.
        tokio::select! {
            _ = hanging.wait_for(|hanging| !*hanging) => {}
            _ = shutdown.wait_for(|stop| *stop) => return unavailable(),
        }
        // Availability may have changed while the request hung.
        if !shared.available.load(Ordering::SeqCst) {
            return unavailable();
        }
    }
    next.run(request).await
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "fake OIDC provider unavailable\n",
    )
        .into_response()
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let issuer = &shared.issuer;
    let claimed_issuer = shared
        .discovery_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| issuer.clone());
    Json(json!({
        "issuer": claimed_issuer,
        "authorization_endpoint": format!("{issuer}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "email", "name", "groups"
        ],
    }))
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let keys: Vec<Value> = shared
        .published_keys()
        .iter()
        .map(|key| key.jwk())
        .collect();
    Json(json!({ "keys": keys }))
}

/// The authorization endpoint, with the user already signed in and consenting.
async fn authorize(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let params = first_values(query.as_deref().unwrap_or_default().as_bytes());
    let param = |name: &str| params.get(name).cloned();
    let request = AuthorizeRequest {
        client_id: param("client_id").unwrap_or_default(),
        redirect_uri: param("redirect_uri").unwrap_or_default(),
        response_type: param("response_type").unwrap_or_default(),
        scope: param("scope").unwrap_or_default(),
        state: param("state").unwrap_or_default(),
        nonce: param("nonce"),
        code_challenge: param("code_challenge"),
        code_challenge_method: param("code_challenge_method"),
    };
    let mut sso = shared.sso.lock().unwrap();
    sso.authorize_requests.push(request.clone());

    // Without a known client and its exact registered redirect URI there is nowhere safe to send
    // the answer: an error page, never a redirect (RFC 6749 §4.1.2.1 — no open redirector).
    let Some(client) = sso.clients.get(&request.client_id) else {
        return error_page("unknown client_id");
    };
    if !client.redirect_uris.contains(&request.redirect_uri) {
        return error_page("redirect_uri is not registered for this client");
    }

    let state = param("state");
    let refuse = |error: &str, description: &str| {
        let mut answer = vec![("error", error), ("error_description", description)];
        answer.extend(state.as_deref().map(|state| ("state", state)));
        redirect(&request.redirect_uri, &answer)
    };
    if request.response_type != "code" {
        return refuse("invalid_request", "response_type must be code");
    }
    if !request.scope.split(' ').any(|scope| scope == "openid") {
        return refuse("invalid_request", "scope must include openid");
    }
    let Some(code_challenge) = &request.code_challenge else {
        return refuse("invalid_request", "code_challenge is required (PKCE)");
    };
    if request.code_challenge_method.as_deref() != Some("S256") {
        return refuse("invalid_request", "code_challenge_method must be S256");
    }
    if !is_pkce_value(code_challenge) {
        return refuse("invalid_request", "malformed code_challenge");
    }
    let Some(user) = sso.user.clone() else {
        return refuse("access_denied", "no user signs in");
    };

    let code = crate::random_token(32);
    let grant = Grant {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: code_challenge.clone(),
        nonce: request.nonce.clone(),
        scope: request.scope.clone(),
        user,
        auth_time: sso.now(),
    };
    sso.codes.insert(code.clone(), grant);
    let mut answer = vec![("code", code.as_str())];
    answer.extend(state.as_deref().map(|state| ("state", state)));
    redirect(&request.redirect_uri, &answer)
}

fn error_page(reason: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        format!("fake OIDC provider: bad authorization request: {reason}\n"),
    )
        .into_response()
}

/// 302 to `redirect_uri` with `params` added to its query (it may already have one).
fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let separator = match redirect_uri.find('?') {
        None => "?",
        Some(_) if redirect_uri.ends_with(['?', '&']) => "",
        Some(_) => "&",
    };
    let Ok(location) = HeaderValue::try_from(format!("{redirect_uri}{separator}{query}")) else {
        return error_page("redirect_uri cannot be a Location header");
    };
    (
        StatusCode::FOUND,
        [
            (LOCATION, location),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response()
}

/// An OAuth error answer of the token endpoint (RFC 6749 §5.2).
struct OAuthError {
    code: &'static str,
    description: &'static str,
}

fn oauth_error(code: &'static str, description: &'static str) -> OAuthError {
    OAuthError { code, description }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.code, "error_description": self.description}));
        let no_store = [
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (PRAGMA, HeaderValue::from_static("no-cache")),
        ];
        if self.code == "invalid_client" {
            let challenge = [(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"fake-oidc\""),
            )];
            (StatusCode::UNAUTHORIZED, challenge, no_store, body).into_response()
        } else {
            (StatusCode::BAD_REQUEST, no_store, body).into_response()
        }
    }
}

/// The token endpoint: records the request, then redeems the code or says why not.
async fn token(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let params = first_values(&body);
    let param = |name: &str| params.get(name).cloned();
    let mut record = TokenRequest {
        grant_type: param("grant_type").unwrap_or_default(),
        code: param("code").unwrap_or_default(),
        redirect_uri: param("redirect_uri").unwrap_or_default(),
        code_verifier: param("code_verifier"),
        client_id: String::new(),
        client_authenticated: false,
        outcome: String::new(),
    };
    let mut sso = shared.sso.lock().unwrap();
    let result = redeem(&shared, &mut sso, &headers, &params, &mut record);
    result
        .as_ref()
        .map_or_else(|e| e.code, |_| "ok")
        .clone_into(&mut record.outcome);
    sso.token_requests.push(record);
    drop(sso);
    match result {
        Ok(body) => (
            StatusCode::OK,
            [
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (PRAGMA, HeaderValue::from_static("no-cache")),
            ],
            Json(body),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

fn redeem(
    shared: &Shared,
    sso: &mut Sso,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    record: &mut TokenRequest,
) -> Result<Value, OAuthError> {
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(oauth_error(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }

    // Client authentication (RFC 6749 §2.3.1): HTTP Basic or form fields, not both.
    let form_id = params.get("client_id");
    let form_secret = params.get("client_secret");
    let basic = match headers.get(AUTHORIZATION) {
        None => None,
        Some(value) => Some(
            basic_credentials(value)
                .ok_or(oauth_error("invalid_client", "malformed Basic credentials"))?,
        ),
    };
    let (client_id, secret) = match (basic, form_secret) {
        (Some(_), Some(_)) => {
            return Err(oauth_error(
                "invalid_request",
                "more than one client authentication method",
            ));
        }
        (Some((id, secret)), None) => {
            record.client_id.clone_from(&id);
            // A client_id field may accompany Basic, but must name the same client.
            if form_id.is_some_and(|form_id| *form_id != id) {
                return Err(oauth_error(
                    "invalid_request",
                    "client_id differs from the Basic credentials",
                ));
            }
            (id, secret)
        }
        (None, Some(secret)) => {
            let Some(id) = form_id else {
                return Err(oauth_error(
                    "invalid_client",
                    "client_secret without client_id",
                ));
            };
            (id.clone(), secret.clone())
        }
        (None, None) => {
            record.client_id = form_id.cloned().unwrap_or_default();
            return Err(oauth_error("invalid_client", "no client authentication"));
        }
    };
    record.client_id.clone_from(&client_id);
    let Some(client) = sso.clients.get(&client_id) else {
        return Err(oauth_error("invalid_client", "unknown client"));
    };
    if client.secret != secret {
        return Err(oauth_error("invalid_client", "wrong client secret"));
    }
    record.client_authenticated = true;

    if record.grant_type != "authorization_code" {
        return Err(oauth_error(
            "unsupported_grant_type",
            "only authorization_code is supported",
        ));
    }
    let Some(code) = params.get("code") else {
        return Err(oauth_error("invalid_request", "code is required"));
    };
    // Presenting a code uses it up, whatever the outcome: a code is single use (RFC 6749
    // §4.1.2), and a wrong PKCE verifier gets no second guess.
    let Some(grant) = sso.codes.remove(code) else {
        return Err(oauth_error("invalid_grant", "unknown or already used code"));
    };
    if grant.client_id != client_id {
        return Err(oauth_error(
            "invalid_grant",
            "the code was issued to another client",
        ));
    }
    if params.get("redirect_uri") != Some(&grant.redirect_uri) {
        return Err(oauth_error(
            "invalid_grant",
            "redirect_uri differs from the authorization request",
        ));
    }
    let Some(verifier) = params.get("code_verifier") else {
        return Err(oauth_error(
            "invalid_grant",
            "code_verifier is required (PKCE)",
        ));
    };
    // RFC 7636 §4.6: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) == code_challenge.
    if !is_pkce_value(verifier)
        || URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.code_challenge
    {
        return Err(oauth_error(
            "invalid_grant",
            "code_verifier does not match the code_challenge",
        ));
    }

    let now = sso.now();
    let tamper = sso.tamper.take();
    let id_token = id_token(shared, &grant, &client_id, now, tamper);
    Ok(json!({
        "access_token": crate::random_token(32),
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME,
        "scope": grant.scope,
        "id_token": id_token,
    }))
}

/// The ID token of `grant` for `client_id`, spoiled by `tamper` if given.
fn id_token(
    shared: &Shared,
    grant: &Grant,
    client_id: &str,
    now: i64,
    tamper: Option<IdTokenTamper>,
) -> String {
    // The user's claims, overridden by the ones the protocol defines.
    let mut claims = grant.user.clone();
    let sub = claims.get("sub").cloned().unwrap_or_else(|| json!("user"));
    claims.insert("sub".into(), sub);
    claims.insert("iss".into(), json!(shared.issuer));
    claims.insert("aud".into(), json!(client_id));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + TOKEN_LIFETIME));
    claims.insert("auth_time".into(), json!(grant.auth_time));
    if let Some(nonce) = &grant.nonce {
        claims.insert("nonce".into(), json!(nonce));
    }

    match tamper {
        None | Some(IdTokenTamper::ForeignSignature) => {}
        Some(IdTokenTamper::WrongNonce) => {
            let wrong = format!("not-{}", grant.nonce.as_deref().unwrap_or("a-nonce"));
            claims.insert("nonce".into(), json!(wrong));
        }
        Some(IdTokenTamper::WrongAudience) => {
            claims.insert("aud".into(), json!(format!("not-{client_id}")));
        }
        Some(IdTokenTamper::WrongIssuer) => {
            claims.insert("iss".into(), json!("https://wrong-issuer.example"));
        }
        Some(IdTokenTamper::Expired) => {
            // An hour late: beyond any clock-skew leeway a verifier may allow.
            let iat = now - 3600 - TOKEN_LIFETIME;
            claims.insert("iat".into(), json!(iat));
            claims.insert("exp".into(), json!(now - 3600));
            claims.insert("auth_time".into(), json!(grant.auth_time.min(iat)));
        }
        Some(IdTokenTamper::MissingNonce) => {
            claims.remove("nonce");
        }
    }

    let claims = Value::Object(claims);
    if tamper == Some(IdTokenTamper::ForeignSignature) {
        shared.sign_foreign(&claims)
    } else {
        let key = shared.current_key();
        key.sign(&rs256_header(key.kid.clone()), &claims)
    }
}

/// The parameters of a query or form body; of a repeated name, the first value counts.
fn first_values(encoded: &[u8]) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (name, value) in form_urlencoded::parse(encoded) {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}

/// A PKCE verifier or challenge: 43 to 128 unreserved characters (RFC 7636 §4.1, §4.2).
fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`, decoded (RFC 6749
/// §2.3.1: both parts are form-urlencoded before base64).
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, encoded) = value.to_str().ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// Decodes one application/x-www-form-urlencoded component: `+` is a space, `%XX` a byte.
/// (`form_urlencoded::parse` would also split at `&` and `=`, which may appear raw here.)
fn form_decode(component: &str) -> Option<String> {
    let bytes = component.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                decoded.push(b' ');
                i += 1;
            }
            b'%' => {
                let byte = hex::decode(bytes.get(i + 1..i + 3)?).ok()?;
                decoded.extend(byte);
                i += 3;
            }
            other => {
                decoded.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decode_reverses_form_encoding() {
        assert_eq!(form_decode("a%3Ab+c%25").as_deref(), Some("a:b c%"));
        assert_eq!(form_decode("raw=&ok").as_deref(), Some("raw=&ok"));
        assert_eq!(form_decode("bad%2"), None);
        assert_eq!(form_decode("bad%zz"), None);
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = HeaderValue::try_from(format!(
            "Basic {}",
            STANDARD.encode("my%20client:s%3Ac+r%26t")
        ))
        .unwrap();
        assert_eq!(
            basic_credentials(&header),
            Some(("my client".to_owned(), "s:c r&t".to_owned()))
        );
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Bearer x")),
            None
        );
    }

    #[test]
    fn redirect_keeps_an_existing_query() {
        let location = |uri: &str| {
            redirect(uri, &[("code", "a b"), ("state", "s&t")])
                .headers()
                .get(LOCATION)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            location("http://rp/cb"),
            "http://rp/cb?code=a+b&state=s%26t"
        );
        assert_eq!(
            location("http://rp/cb?x=1"),
            "http://rp/cb?x=1&code=a+b&state=s%26t"
        );
        assert_eq!(
            location("http://rp/cb?"),
            "http://rp/cb?code=a+b&state=s%26t"
        );
    }
}
