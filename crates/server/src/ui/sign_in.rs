//! `/ui/sign-in`: single sign-on when it is configured; otherwise a static token, pasted once
//! and exchanged for a session cookie (SPEC §21), so the page never keeps the token.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use deploy_safety_app::{AppError, DASHBOARD_HOME, safe_return_to};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::render::api;
use super::{page_response, plain_http_loopback, redirect, url_with_query};
use crate::extract::{ApiQuery, SESSION_COOKIE, cookie_value};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SignInQuery {
    return_to: Option<String>,
    /// `expired`: the session ended (idle, absolute lifetime, revoked).
    why: Option<String>,
}

/// Only dashboard paths are places to come back to.
fn return_path(requested: Option<&str>) -> String {
    safe_return_to(requested)
        .filter(|p| p.starts_with(DASHBOARD_HOME) && !p.starts_with("/ui/sign-in"))
        .unwrap_or_else(|| DASHBOARD_HOME.to_owned())
}

fn sign_in_page(sso: bool, return_to: &str, notice: Option<&str>, refusal: Option<&str>) -> String {
    let sso_href = url_with_query(&api("/auth/login"), &[("returnTo", return_to)]);
    let body: Markup = html! {
        @if let Some(notice) = notice {
            p class="notice" role="status" { (notice) }
        }
        @if let Some(refusal) = refusal {
            div class="refusal" role="alert" { p class="message" { (refusal) } }
        }
        @if sso {
            p { "Sign in with your company account." }
            p { a class="button" id="sso-sign-in" href=(sso_href) { "Sign in with single sign-on" } }
        } @else {
            form id="sign-in" method="post" action="/ui/sign-in" {
                input type="hidden" name="returnTo" value=(return_to);
                label for="token" { "Your deploy-safety token" }
                input id="token" name="token" type="password" required autocomplete="off"
                    spellcheck="false" autofocus aria-describedby="token-help";
                p id="token-help" class="note" {
                    "The token (" code { "ds_…" } ") is exchanged for a session cookie and not kept by this page. "
                    "Make one with " code { "deploy-safety token create --name you --role eng-lead" } "."
                }
                button type="submit" { "Sign in" }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (super::render::head("Sign in", None))
            body class="sign-in" {
                main id="main" {
                    h1 { "deploy-safety" }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// `GET /ui/sign-in`. Someone already signed in goes on.
pub(crate) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<ApiQuery<SignInQuery>, crate::ApiError>,
) -> Response {
    let query = query.map(|ApiQuery(q)| q).unwrap_or(SignInQuery {
        return_to: None,
        why: None,
    });
    let return_to = return_path(query.return_to.as_deref());
    if let Some(cookie) = cookie_value(&headers, SESSION_COOKIE)
        && state.app.authenticate_session(cookie).await.is_ok()
    {
        return redirect(&return_to);
    }
    let notice = (query.why.as_deref() == Some("expired")).then_some(
        "Your session ended (signed out, revoked, idle too long or too old). Sign in again.",
    );
    page_response(
        StatusCode::OK,
        sign_in_page(state.app.sso_configured(), &return_to, notice, None),
    )
}

/// A sign-in posted from another site would sign this browser in as someone else (login
/// CSRF): the browser says where a form came from. `Sec-Fetch-Site` is the browser's own
/// word and survives a proxy that rewrites `Host`; only where it is missing (older
/// browsers) is the `Origin` compared with the host.
fn from_another_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !(site == "same-origin" || site == "none");
    }
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok());
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            Some(origin_host) != host
        })
}

/// `POST /ui/sign-in` (a form: `token`, `returnTo`): the token exchanged for a session, then
/// on to where the person was going. A bad token is the page again with why (401).
pub(crate) async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut token = None;
    let mut return_to = None;
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "token" => token = Some(value.into_owned()),
            "returnTo" => return_to = Some(value.into_owned()),
            _ => {}
        }
    }
    let return_to = return_path(return_to.as_deref());
    let sso = state.app.sso_configured();
    let refuse = |status: StatusCode, why: &str| {
        page_response(status, sign_in_page(sso, &return_to, None, Some(why)))
    };
    if from_another_site(&headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This sign-in came from another site and was refused. Open this page directly.",
        );
    }
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "token: paste your deploy-safety token.",
        );
    };
    match state.app.sign_in_with_token(&token, Some(&return_to)).await {
        Ok(done) => {
            let secure = state
                .app
                .session_cookie_secure(plain_http_loopback(&headers));
            let cookie = crate::routes::session_cookie_header(
                &done.cookie_value,
                done.max_age_seconds,
                secure,
            );
            let mut response = redirect(&done.return_to);
            if let Ok(cookie) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(AppError::Unauthorized(message)) => refuse(
            StatusCode::UNAUTHORIZED,
            &format!("Not signed in: {message}."),
        ),
        Err(AppError::NotFound(message)) => refuse(StatusCode::NOT_FOUND, &message),
        Err(error) => super::pages::failure(error),
    }
}
