//! `/soaks`: watching a release before promotion (SPEC §23, RUNBOOK Normal Deploy Flow step 6).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use deploy_safety_api_types::{
    AbortSoakRequest, ErrorBody, SoakList, SoakListQuery, SoakMetricsRequest, StartSoakRequest,
};
use deploy_safety_core::Soak;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Authenticated};
use crate::state::AppState;

const TAG: &str = "soak";

/// Starts a soak of a release in an environment (any role): evaluated every `intervalMs`
/// until `durationMs` has passed; `failed` at the first failing evaluation.
#[utoipa::path(post, path = "/soaks", tag = TAG, security(("bearer" = [])),
    request_body = StartSoakRequest,
    responses(
        (status = 201, body = Soak),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "SOAK_ALREADY_RUNNING", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<StartSoakRequest>,
) -> Result<(StatusCode, Json<Soak>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.app.start_soak(&caller, request).await?),
    ))
}

/// Soaks, newest first, filtered.
#[utoipa::path(get, path = "/soaks", tag = TAG, security(("bearer" = [])),
    params(SoakListQuery),
    responses(
        (status = 200, body = SoakList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<SoakListQuery>,
) -> Result<Json<SoakList>, ApiError> {
    Ok(Json(state.app.list_soaks(query).await?))
}

/// One soak, with every evaluation.
#[utoipa::path(get, path = "/soaks/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "soak id")),
    responses(
        (status = 200, body = Soak),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Soak>, ApiError> {
    Ok(Json(state.app.get_soak(&id).await?))
}

/// The running soak's current metrics (when they are not pulled from Prometheus).
#[utoipa::path(post, path = "/soaks/{id}/metrics", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "soak id")),
    request_body = SoakMetricsRequest,
    responses(
        (status = 200, body = Soak),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "SOAK_NOT_RUNNING", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<SoakMetricsRequest>,
) -> Result<Json<Soak>, ApiError> {
    Ok(Json(state.app.push_soak_metrics(&id, request).await?))
}

/// Ends a running soak, `aborted` (any role; audited with who and why).
#[utoipa::path(post, path = "/soaks/{id}/abort", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "soak id")),
    request_body = AbortSoakRequest,
    responses(
        (status = 200, body = Soak),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "SOAK_NOT_RUNNING", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn abort(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<AbortSoakRequest>,
) -> Result<Json<Soak>, ApiError> {
    Ok(Json(state.app.abort_soak(&caller, &id, request).await?))
}
