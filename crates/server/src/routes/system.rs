//! Health, identity, the OpenAPI document and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use deploy_safety_api_types::{EnvironmentList, ErrorBody, HealthReport, OverallHealth, WhoAmI};

use deploy_safety_app::AuthMethod;

use crate::extract::{Authenticated, MaybeAuthenticated};
use crate::state::AppState;

/// Overall health; without a token `overallHealth` alone (for load balancers). 503 when
/// unhealthy.
#[utoipa::path(get, path = "/health", tag = "health",
    responses(
        (status = 200, body = HealthReport),
        (status = 401, description = "a token was sent and is not valid", body = ErrorBody),
        (status = 503, description = "unhealthy", body = HealthReport),
    ))]
pub async fn health(
    State(state): State<AppState>,
    MaybeAuthenticated(caller): MaybeAuthenticated,
) -> Response {
    let mut report = state.app.health().await;
    if caller.is_none() {
        report.probes = None;
        report.replica = None;
    }
    let status = if report.overall_health == OverallHealth::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(report)).into_response()
}

/// Who the caller is and how it authenticated: a static token, an OIDC token
/// (`oidc:NAME`, with the claims its binding matched) or a single sign-on session (with the
/// CSRF token its state-changing requests must send).
#[utoipa::path(get, path = "/auth/whoami", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = WhoAmI),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "an OIDC token that no binding matches (`NO_BINDING`), or a principal that exists with another role"),
    ))]
pub async fn whoami(Authenticated(caller): Authenticated) -> Json<WhoAmI> {
    let authenticated_by = caller.auth.label();
    let (token_id, claims, csrf_token) = match caller.auth {
        AuthMethod::Token { id } => (Some(id), None, None),
        AuthMethod::Oidc { claims, .. } => (None, Some(claims), None),
        AuthMethod::Sso {
            csrf_token,
            token_id,
            ..
        } => (token_id, None, Some(csrf_token)),
    };
    Json(WhoAmI {
        principal: caller.name.clone(),
        name: caller.name,
        role: caller.role,
        authenticated_by,
        token_id,
        claims,
        csrf_token,
    })
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    let mut response = state.openapi_json.as_str().to_owned().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The environments the settings define, each with its tier and where releases promote from
/// (SPEC §15). Any valid token.
#[utoipa::path(get, path = "/environments", tag = "meta", security(("bearer" = [])),
    responses(
        (status = 200, body = EnvironmentList),
        (status = 401, body = ErrorBody),
    ))]
pub async fn environments(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> Json<EnvironmentList> {
    Json(EnvironmentList {
        environments: state.app.settings().environments.specs().to_vec(),
    })
}

/// The service's metrics in Prometheus text format. Any valid token.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain"),
        (status = 401, body = ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>, _caller: Authenticated) -> Response {
    let text = crate::metrics::render(&state.metrics, state.app.store());
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
