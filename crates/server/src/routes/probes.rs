//! `/probes`: health probes defined through the API, and every probe's state and history.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use deploy_safety_api_types::{CreateProbeRequest, ErrorBody, ProbeList, ProbeView};
use deploy_safety_app::PROBE_HISTORY;

use crate::error::ApiError;
use crate::extract::{ApiJson, Authenticated};
use crate::state::AppState;

const TAG: &str = "probes";

/// Adds an HTTP or TCP probe (security-team, eng-lead, oncall-lead). It is checked at once,
/// then every interval.
#[utoipa::path(post, path = "/probes", tag = TAG, security(("bearer" = [])),
    request_body = CreateProbeRequest,
    responses(
        (status = 201, body = ProbeView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "ROLE_NOT_PERMITTED", body = ErrorBody),
        (status = 409, description = "a probe with this name exists", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<CreateProbeRequest>,
) -> Result<(StatusCode, Json<ProbeView>), ApiError> {
    let created = state.app.create_probe(&caller, request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Every probe: built in, from the settings file, and from the API.
#[utoipa::path(get, path = "/probes", tag = TAG, security(("bearer" = [])),
    responses(
        (status = 200, body = ProbeList),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> Result<Json<ProbeList>, ApiError> {
    Ok(Json(state.app.list_probes().await?))
}

/// One probe (by id or name) with its recent history, newest first.
#[utoipa::path(get, path = "/probes/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "probe id or name")),
    responses(
        (status = 200, body = ProbeView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ProbeView>, ApiError> {
    Ok(Json(state.app.get_probe(&id, PROBE_HISTORY).await?))
}

/// Removes a probe added through the API (by id or name). Built-in and settings-file probes
/// are 409 `NOT_MANAGED_BY_API`.
#[utoipa::path(delete, path = "/probes/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "probe id or name")),
    responses(
        (status = 200, body = ProbeView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "ROLE_NOT_PERMITTED", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "NOT_MANAGED_BY_API", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ProbeView>, ApiError> {
    Ok(Json(state.app.delete_probe(&caller, &id).await?))
}
