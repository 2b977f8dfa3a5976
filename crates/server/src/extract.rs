//! Extractors that answer in the API's own error format: JSON bodies and queries that name the
//! offending field, and bearer-token authentication.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use deploy_safety_api_types::API_PREFIX;
use deploy_safety_app::{AppError, AuthMethod, Caller, PresentedToken};
use deploy_safety_core::ReasonCode;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body, deserialized with the failing field's path in the error.
///
/// The Content-Type is not checked: the body must be JSON whatever the header says, so a
/// `curl -d` at 3 a.m. works. (A browser cannot send our bearer token cross-origin without a
/// CORS preflight, which this API does not grant, so this opens no CSRF door.)
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection: BytesRejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::PayloadTooLarge(
                            "request body is larger than the limit".to_owned(),
                        )
                    } else {
                        ApiError::Invalid {
                            field: None,
                            message: format!("could not read the request body: {rejection}"),
                        }
                    }
                })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::Invalid {
            field: None,
            message: "the request body must be a JSON object".to_owned(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let kind = if inner.is_eof() {
            ErrorKind::Truncated
        } else if inner.is_syntax() {
            ErrorKind::Malformed
        } else {
            ErrorKind::Data
        };
        invalid(&path, inner.to_string(), kind)
    })?;
    deserializer.end().map_err(|e| ApiError::Invalid {
        field: None,
        message: format!("unexpected data after the JSON value: {e}"),
    })?;
    Ok(value)
}

/// Names the field from serde's path; for a missing field serde puts the name only in the
/// message, in backticks.
fn invalid(path: &str, message: String, kind: ErrorKind) -> ApiError {
    // serde_path_to_error writes `?` for a position it could not name (e.g. a broken key).
    let path = path.trim_end_matches(".?");
    let in_field = path != "." && path != "?";
    if kind == ErrorKind::Truncated || (kind == ErrorKind::Malformed && !in_field) {
        return ApiError::Invalid {
            field: None,
            message: format!("malformed JSON: {message}"),
        };
    }
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (in_field, missing) {
        (false, Some(name)) => Some(name.to_owned()),
        (true, Some(name)) => Some(format!("{path}.{name}")),
        (true, None) => Some(path.to_owned()),
        (false, None) => None,
    };
    let message = match (&field, kind) {
        // serde_json reports a value of the wrong JSON type for an enum as a syntax error.
        (Some(field), ErrorKind::Malformed) => {
            format!("{field}: not a valid value for this field ({message})")
        }
        (Some(field), _) => format!("{field}: {message}"),
        (None, _) => message,
    };
    ApiError::Invalid { field, message }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    /// The body ends before the JSON value does.
    Truncated,
    /// Not JSON at all, or a value of the wrong JSON kind where serde_json cannot say more.
    Malformed,
    /// Valid JSON that does not fit the request's shape.
    Data,
}

/// A query string, with the same error format as bodies.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// A query string read as `T`, the failing parameter named in the error.
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        invalid(&path, error.into_inner().to_string(), ErrorKind::Data)
    })
}

/// The session cookie's name (SPEC §18).
pub const SESSION_COOKIE: &str = "ds_session";
/// The cookie that ties a single sign-on login to the browser that began it.
pub const LOGIN_COOKIE: &str = "ds_login";
/// The header a state-changing request authenticated by a session cookie must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The authenticated caller: by `Authorization: Bearer` (a static token or an OIDC token), or
/// by a single sign-on session cookie. Missing, malformed, unknown, expired and revoked
/// credentials are 401. A state-changing request authenticated by the cookie must send the
/// session's `X-CSRF-Token`, else 403 `CSRF`: a cookie is sent by the browser on its own, the
/// header only by our pages.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer_token(&parts.headers) {
            return Ok(Authenticated(state.app.authenticate(token).await?));
        }
        if parts.headers.get(header::AUTHORIZATION).is_none()
            && let Some(session) = cookie(parts, SESSION_COOKIE)
        {
            // Deploy engines answer with a bearer token. A browser's cookie there would let a
            // cross-site link record a decision in the signed-in person's name (a GET that
            // writes an audit entry).
            // Nested routes see their path without the prefix; the original URI has it.
            let path = parts
                .extensions
                .get::<axum::extract::OriginalUri>()
                .map_or_else(|| parts.uri.path(), |original| original.0.path());
            if path.starts_with(&format!("{API_PREFIX}/integrations/")) {
                return Err(AppError::Unauthorized(
                    "deploy engines' endpoints take a bearer token, not a session cookie"
                        .to_owned(),
                )
                .into());
            }
            let caller = state.app.authenticate_session(session).await?;
            if changes_state(&parts.method) {
                check_csrf(parts, &caller)?;
            }
            return Ok(Authenticated(caller));
        }
        Err(AppError::Unauthorized(
            "missing bearer token: send `Authorization: Bearer <token>`".to_owned(),
        )
        .into())
    }
}

/// The caller of a gated decision: a static bearer token is handed to the use case unchecked,
/// which checks it in the decision's own transaction (SPEC §22: the decision then costs one
/// hand-off between threads, not two); any other credential is authenticated as
/// [`Authenticated`] does.
pub enum GateCredential {
    Verified(Caller),
    Token(PresentedToken),
}

impl FromRequestParts<AppState> for GateCredential {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer_token(&parts.headers).and_then(|t| state.app.presented_token(t))
        {
            return Ok(GateCredential::Token(token));
        }
        let Authenticated(caller) = Authenticated::from_request_parts(parts, state).await?;
        Ok(GateCredential::Verified(caller))
    }
}

impl GateCredential {
    /// The caller, authenticated now: for a request that fails before its decision, so that a
    /// bad credential is still answered 401 first.
    pub async fn authenticate(&self, state: &AppState) -> Result<Caller, ApiError> {
        match self {
            GateCredential::Verified(caller) => Ok(caller.clone()),
            GateCredential::Token(token) => Ok(state.app.authenticate_presented(token).await?),
        }
    }
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn check_csrf(parts: &Parts, caller: &Caller) -> Result<(), ApiError> {
    let AuthMethod::Sso { csrf_token, .. } = &caller.auth else {
        return Ok(());
    };
    let sent = parts
        .headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if bool::from(sent.ct_eq(csrf_token.as_bytes())) {
        return Ok(());
    }
    tracing::warn!(principal = %caller.name, "refused a cookie-authenticated request without its CSRF token");
    Err(AppError::Forbidden {
        reason: ReasonCode::Csrf,
        message: "a request that changes state with a session cookie must send the session's `X-CSRF-Token` header".to_owned(),
        hints: vec!["read `csrfToken` from GET /auth/whoami and send it as `X-CSRF-Token`".to_owned()],
    }
    .into())
}

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    cookie_value(&parts.headers, name)
}

/// The value of cookie `name` among `headers`.
pub(crate) fn cookie_value<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// The caller if a credential was sent; `None` without one. A credential that is sent but not
/// valid is still 401: a wrong token is a mistake worth reporting.
#[derive(Debug, Clone)]
pub struct MaybeAuthenticated(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeAuthenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.get(header::AUTHORIZATION).is_none()
            && cookie(parts, SESSION_COOKIE).is_none()
        {
            return Ok(MaybeAuthenticated(None));
        }
        Authenticated::from_request_parts(parts, state)
            .await
            .map(|Authenticated(caller)| MaybeAuthenticated(Some(caller)))
    }
}

/// The token of `Authorization: Bearer <token>`, if the request carries one.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        ttl_minutes: Option<i64>,
        reason: String,
        nested: Option<Nested>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        level: u8,
    }

    fn field_of(json: &str) -> (Option<String>, String) {
        match parse_json::<Body>(json.as_bytes()) {
            Err(ApiError::Invalid { field, message }) => (field, message),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn names_the_offending_field() {
        assert_eq!(
            field_of(r#"{"ttlMinutes": 5}"#).0.as_deref(),
            Some("reason")
        );
        assert_eq!(
            field_of(r#"{"reason": "x", "ttlMinutes": "60"}"#)
                .0
                .as_deref(),
            Some("ttlMinutes")
        );
        assert_eq!(
            field_of(r#"{"reason": "x", "bogus": 1}"#).0.as_deref(),
            Some("bogus")
        );
        assert_eq!(
            field_of(r#"{"reason": "x", "nested": {"level": 300}}"#)
                .0
                .as_deref(),
            Some("nested.level")
        );
        assert_eq!(
            field_of(r#"{"reason": "x", "nested": {}}"#).0.as_deref(),
            Some("nested.level")
        );
    }

    #[test]
    fn malformed_and_empty_bodies_are_invalid_without_a_field() {
        let (field, message) = field_of(r#"{"reason": "#);
        assert_eq!(field, None);
        assert!(message.starts_with("malformed JSON"), "{message}");
        assert_eq!(field_of("").0, None);
        assert_eq!(field_of(r#"{"reason": "x", "ttlMinutes": "#).0, None);
        let (field, message) = field_of(r#"{"reason": "x", "ttlMinutes": 1,,}"#);
        assert_eq!(field, None, "{message}");
        assert_eq!(field_of(r#"{"reason": "x"} trailing"#).0, None);
        assert_eq!(field_of("[1]").0, None);
    }
}
