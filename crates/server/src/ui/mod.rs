//! The dashboard (SPEC §21): server-rendered pages for the people on call, at `/ui/`.
//!
//! Pages are HTML rendered here (maud) from the same use cases the API answers with. Actions
//! are forms that the one small script (`assets/dashboard.js`) sends to the JSON API with the
//! session's CSRF token, so a refusal is the API's own, with its message and hints. The same
//! script keeps the regions marked `data-live` current from the event stream. No inline
//! script or style: the Content-Security-Policy allows only this server's own files.
//!
//! Every page needs a session (single sign-on, or a pasted token exchanged for one at
//! `/ui/sign-in`); without one it redirects there.

mod assets;
mod chart;
mod checks;
mod operations;
mod pages;
mod render;
mod sign_in;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use deploy_safety_app::{AppError, AuthMethod, Caller, DASHBOARD_HOME};

use crate::extract::{SESSION_COOKIE, cookie_value};
use crate::middleware::OwnProtocol;
use crate::state::AppState;

/// The dashboard's routes: `/` and everything under `/ui/`. Not part of the API document.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/ui", get(home))
        .route("/ui/", get(pages::overview))
        .route("/ui/sign-in", get(sign_in::page).post(sign_in::submit))
        .route("/ui/canaries", get(pages::canaries))
        .route("/ui/canaries/{id}", get(pages::canary))
        .route("/ui/overrides", get(pages::overrides))
        .route("/ui/incidents", get(pages::incidents))
        .route("/ui/freezes", get(pages::freezes))
        .route("/ui/rollbacks", get(operations::rollbacks))
        .route("/ui/checks", get(checks::checks))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/assets/{file}", get(assets::serve))
        .route("/ui/{*rest}", get(pages::not_found))
}

/// `/` and `/ui`: to the overview.
async fn home() -> Response {
    redirect(DASHBOARD_HOME)
}

/// A 303 to `target` with the dashboard's headers, never cached (where it leads depends on
/// who is signed in).
pub(crate) fn redirect(target: &str) -> Response {
    let mut response = Redirect::to(target).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    protect(headers);
    response
}

/// The Content-Security-Policy of every page: this server's own script, style and images only,
/// no inline script or style, no framing, forms only to this server.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// A page's response: HTML with the dashboard's security headers, never cached (pages show
/// who is signed in and the gate's state now).
pub(crate) fn page_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    protect(headers);
    response.extensions_mut().insert(OwnProtocol);
    response
}

/// The headers every dashboard response carries.
pub(crate) fn protect(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// Sent by the page's script when it reads the page again on its own (`1`).
pub(crate) const REFRESH_HEADER: &str = "x-dashboard-refresh";

/// The person looking at a page: a session's caller and its CSRF token, which the page gives
/// its script for the API's state-changing requests.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    pub caller: Caller,
    pub csrf_token: String,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let here = parts
            .uri
            .path_and_query()
            .map_or(DASHBOARD_HOME, |p| p.as_str())
            .to_owned();
        let Some(cookie) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(to_sign_in(&here, None));
        };
        let secure = state
            .app
            .session_cookie_secure(plain_http_loopback(&parts.headers));
        // The page's own refreshes (live regions, the safety poll) are not the person using
        // it: they must not hold the session open past its idle timeout.
        let unattended = parts
            .headers
            .get(REFRESH_HEADER)
            .is_some_and(|v| v.as_bytes() == b"1");
        let session = if unattended {
            state.app.authenticate_session_unattended(cookie).await
        } else {
            state.app.authenticate_session(cookie).await
        };
        match session {
            Ok(caller) => {
                let AuthMethod::Sso { csrf_token, .. } = &caller.auth else {
                    return Err(to_sign_in(&here, None));
                };
                let csrf_token = csrf_token.clone();
                Ok(Viewer { caller, csrf_token })
            }
            Err(AppError::Unauthorized(_)) => Err(to_sign_in(&here, Some(secure))),
            Err(error) => Err(pages::failure(error)),
        }
    }
}

/// To the sign-in page, coming back to `here` afterwards. With `ended` (the flags the cookie
/// was set with), the session cookie no longer signs in (expired, revoked): it is cleared,
/// and the page says why.
fn to_sign_in(here: &str, ended: Option<bool>) -> Response {
    let mut target = url_with_query("/ui/sign-in", &[("returnTo", here)]);
    let Some(secure) = ended else {
        return redirect(&target);
    };
    target.push_str("&why=expired");
    let mut response = redirect(&target);
    let clear = crate::routes::session_cookie_header("", 0, secure);
    if let Ok(clear) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, clear);
    }
    response
}

/// `path?k=v&…` with each value percent-encoded.
pub(crate) fn url_with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// Whether the browser reached this server over plain http on a loopback address, where a
/// `Secure` cookie would never come back (development, tests). The browser's `Origin` says
/// where it is when it sends one (every `POST`); a request that came through a proxy
/// (`X-Forwarded-*`, `Forwarded`) never counts, so cookies stay `Secure` behind TLS even when
/// the proxy rewrites `Host` to a loopback address.
pub(crate) fn plain_http_loopback(headers: &HeaderMap) -> bool {
    let proxied = [
        "x-forwarded-proto",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
    ]
    .iter()
    .any(|name| headers.contains_key(*name));
    if proxied {
        return false;
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(host_is_loopback);
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(host_is_loopback)
}

/// `localhost`, `127.0.0.0/8` or `[::1]`, with or without a port.
fn host_is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_plain_http_loopback() {
        for (host, loopback) in [
            ("127.0.0.1:8080", true),
            ("127.1.2.3", true),
            ("localhost:3000", true),
            ("LOCALHOST", true),
            ("[::1]:8080", true),
            ("deploy-safety.example.com", false),
            ("10.0.0.1:8080", false),
            ("[2001:db8::1]:443", false),
            ("", false),
        ] {
            assert_eq!(host_is_loopback(host), loopback, "{host}");
        }
    }

    #[test]
    fn cookies_stay_secure_unless_the_browser_is_on_plain_http_to_loopback() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("host", "127.0.0.1:8080")], true),
            (
                &[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:8080"),
                ],
                true,
            ),
            (
                &[
                    ("host", "localhost:8080"),
                    ("origin", "http://localhost:8080"),
                ],
                true,
            ),
            (&[("host", "deploy.example.com")], false),
            // A proxy that rewrites Host to loopback: the browser's Origin tells.
            (
                &[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "https://deploy.example.com"),
                ],
                false,
            ),
            (
                &[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "https://127.0.0.1:8443"),
                ],
                false,
            ),
            (
                &[("host", "127.0.0.1:8080"), ("x-forwarded-proto", "https")],
                false,
            ),
            (
                &[
                    ("host", "127.0.0.1:8080"),
                    ("x-forwarded-for", "203.0.113.9"),
                ],
                false,
            ),
            (
                &[("host", "127.0.0.1:8080"), ("forwarded", "for=203.0.113.9")],
                false,
            ),
            (&[], false),
        ];
        for (pairs, expected) in cases {
            let mut headers = HeaderMap::new();
            for (name, value) in *pairs {
                headers.insert(
                    axum::http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                );
            }
            assert_eq!(plain_http_loopback(&headers), *expected, "{pairs:?}");
        }
    }
}
