//! Single sign-on for people (SPEC §18): the login redirect, the provider's callback that
//! starts a session, and sign-out. These answer browsers, so their errors are short HTML pages
//! that say what happened and what to do.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use deploy_safety_api_types::{API_PREFIX, ErrorBody};
use deploy_safety_app::{AppError, LOGIN_LIFETIME_MINUTES};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::extract::{ApiQuery, Authenticated, LOGIN_COOKIE, SESSION_COOKIE, cookie_value};
use crate::middleware::OwnProtocol;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// A path on this server to go to once signed in (anything else is ignored).
    #[param(max_length = 1000, pattern = "^[!-~]{1,1000}$")]
    pub return_to: Option<String>,
}

/// What the identity provider sends back (OAuth 2.0 names, snake_case).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    #[param(max_length = 4096, pattern = "^[ -~]{1,4096}$")]
    pub code: Option<String>,
    /// The login's `state`, as `/auth/login` sent it.
    #[param(max_length = 4096, pattern = "^[ -~]{1,4096}$")]
    pub state: Option<String>,
    /// The provider's refusal, instead of a code.
    #[param(max_length = 4096, pattern = "^[ -~]{1,4096}$")]
    pub error: Option<String>,
    #[param(max_length = 4096, pattern = "^[ -~]{1,4096}$")]
    pub error_description: Option<String>,
}

/// Never shows the code or the state: either would let someone finish the login.
impl std::fmt::Debug for CallbackQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackQuery")
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .finish_non_exhaustive()
    }
}

fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — deploy-safety" }
            }
            body {
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// Browser pages carry the same protections as the dashboard's: no framing, no scripts.
fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response.extensions_mut().insert(OwnProtocol);
    response
}

/// An error as a page: its status, its message, and a way on.
fn error_page(error: AppError) -> Response {
    let (status, title) = match &error {
        AppError::NotFound(_) => (StatusCode::NOT_FOUND, "Single sign-on is not set up"),
        AppError::Forbidden { .. } => (StatusCode::FORBIDDEN, "Signed in, but no access"),
        AppError::Invalid { .. } => (StatusCode::BAD_REQUEST, "Sign-in failed"),
        AppError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in is unavailable right now",
        ),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Sign-in failed"),
    };
    let message = match &error {
        AppError::Invalid { message, .. } => message.clone(),
        AppError::Forbidden { message, .. } => message.clone(),
        AppError::NotFound(message) => message.clone(),
        AppError::Unavailable(_) => {
            "The identity provider or the database did not answer in time, or too many sign-ins are in progress. Try again in a minute; static tokens keep working.".to_owned()
        }
        _ => "Something went wrong on our side; the server log has the details.".to_owned(),
    };
    // An unavailable provider or database was logged with its cause where it happened.
    if let AppError::Internal(cause) = &error {
        tracing::error!(%cause, "single sign-on");
    }
    let retry = !matches!(error, AppError::NotFound(_));
    html_response(
        status,
        page(
            title,
            html! {
                p { (message) }
                @if retry {
                    p { a href="login" { "Sign in again" } }
                }
            },
        ),
    )
}

/// The session cookie (SPEC §18): `HttpOnly`, `SameSite=Lax`, `Secure` unless served over
/// plain http on a loopback address.
pub(crate) fn session_cookie(value: &str, max_age_seconds: u64, secure: bool) -> String {
    cookie(SESSION_COOKIE, value, "/", max_age_seconds, secure)
}

/// The cookie that ties a login to the browser that began it, so a callback URL made by
/// someone else's login cannot sign this browser in as them (login CSRF). Sent only to the
/// sign-in routes, for as long as a login may take.
fn login_cookie(value: &str, max_age_seconds: u64, secure: bool) -> String {
    let path = format!("{API_PREFIX}/auth");
    cookie(LOGIN_COOKIE, value, &path, max_age_seconds, secure)
}

fn cookie(name: &str, value: &str, path: &str, max_age_seconds: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}"
    )
}

/// Starts a single sign-on login: redirects to the identity provider (authorization code with
/// PKCE S256; `state` and `nonce` kept server-side for 10 minutes, single use), and sets the
/// cookie that ties the login to this browser.
#[utoipa::path(get, path = "/auth/login", tag = "auth", security(()), params(LoginQuery),
    responses(
        (status = 303, description = "to the identity provider's authorization endpoint",
            headers(("Location" = String, description = "the provider's authorization URL"),
                ("Set-Cookie" = String, description = "`ds_login`: ties the login to this browser; the callback needs it"))),
        (status = 404, description = "single sign-on is not configured", content_type = "text/html"),
        (status = 400, body = ErrorBody, description = "an unreadable query"),
        (status = 503, description = "the identity provider's metadata cannot be read, or 100,000 sign-ins are in progress already", content_type = "text/html"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<LoginQuery>,
) -> Response {
    match state.app.begin_login(query.return_to.as_deref()).await {
        Ok(start) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            let lifetime = u64::try_from(LOGIN_LIFETIME_MINUTES * 60).unwrap_or(600);
            let binding = login_cookie(
                &start.browser_binding,
                lifetime,
                state.app.sso_secure_cookie(),
            );
            match (
                HeaderValue::from_str(&start.authorize_url),
                HeaderValue::from_str(&binding),
            ) {
                (Ok(location), Ok(binding)) => {
                    response.headers_mut().insert(header::SET_COOKIE, binding);
                    response.headers_mut().insert(header::LOCATION, location);
                    response
                        .headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    response
                }
                _ => error_page(AppError::Internal(
                    "the authorization URL is not a valid header".to_owned(),
                )),
            }
        }
        Err(e) => error_page(e),
    }
}

/// The identity provider's redirect back: exchanges the code, verifies the ID token, and
/// starts a session (a cookie), then goes to where the login began. An unknown, used or
/// expired `state`, a login begun in another browser, or an ID token that fails a check, is
/// 400 and starts nothing; a person whose groups map to no role is 403.
#[utoipa::path(get, path = "/auth/callback", tag = "auth", security(()), params(CallbackQuery),
    responses(
        (status = 303, description = "signed in: the session cookie is set",
            headers(("Set-Cookie" = String, description = "`ds_session`: HttpOnly, SameSite=Lax, Secure except on plain http to a loopback address"))),
        (status = 400, description = "the login cannot complete (state missing, unknown, used or expired; begun in another browser; the code refused; the ID token invalid): a page; an unreadable query: the error body",
            content(("text/html"), (ErrorBody = "application/json"))),
        (status = 403, description = "no role mapping for the person's groups (`NO_ROLE_MAPPING`) or a principal with another role", content_type = "text/html"),
        (status = 404, description = "single sign-on is not configured", content_type = "text/html"),
        (status = 503, description = "the database did not answer in time, or the identity provider's metadata cannot be read", content_type = "text/html"),
    ))]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Response {
    let binding = cookie_value(&headers, LOGIN_COOKIE).map(str::to_owned);
    let provider_error = query
        .error
        .as_deref()
        .map(|e| match &query.error_description {
            Some(d) => format!("{e}: {d}"),
            None => e.to_owned(),
        });
    let done = state
        .app
        .finish_login(
            query.code.as_deref(),
            query.state.as_deref(),
            provider_error.as_deref(),
            binding.as_deref(),
        )
        .await;
    let secure = state.app.sso_secure_cookie();
    // The login is over, whatever its outcome: its binding cookie goes.
    let spent = HeaderValue::from_str(&login_cookie("", 0, secure)).ok();
    let mut response = match done {
        Ok(done) => {
            let cookie = session_cookie(&done.cookie_value, done.max_age_seconds, secure);
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            match (
                HeaderValue::from_str(&cookie),
                HeaderValue::from_str(&done.return_to),
            ) {
                (Ok(cookie), Ok(location)) => {
                    headers.insert(header::SET_COOKIE, cookie);
                    headers.insert(header::LOCATION, location);
                    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    response
                }
                _ => error_page(AppError::Internal(
                    "the session cookie is not a valid header".to_owned(),
                )),
            }
        }
        Err(e) => error_page(e),
    };
    if let Some(spent) = spent {
        response.headers_mut().append(header::SET_COOKIE, spent);
    }
    response
}

/// Ends the caller's single sign-on session and clears its cookie. Needs the session's
/// `X-CSRF-Token`.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "signed out; the cookie is cleared"),
        (status = 400, body = ErrorBody, description = "the caller is not a session (a token is revoked with `deploy-safety token revoke`)"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "no `X-CSRF-Token`, or not the session's (`CSRF`)"),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Authenticated(caller): Authenticated,
) -> Result<Response, crate::ApiError> {
    state.app.logout(&caller).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    // Cleared with the flags it was set with, or a browser would keep the dead cookie.
    let secure = state
        .app
        .session_cookie_secure(crate::ui::plain_http_loopback(&headers));
    if let Ok(cookie) = HeaderValue::from_str(&session_cookie("", 0, secure)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_has_the_flags_spec_18_asks_for() {
        assert_eq!(
            session_cookie("dss_a.b", 43200, true),
            "ds_session=dss_a.b; Path=/; HttpOnly; SameSite=Lax; Max-Age=43200; Secure"
        );
        assert!(!session_cookie("v", 1, false).contains("Secure"));
    }

    #[test]
    fn pages_escape_what_they_show() {
        let html = page("t", html! { p { ("<script>alert(1)</script>") } });
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
    }
}
