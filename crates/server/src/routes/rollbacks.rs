//! `/rollback`, `/rollbacks`, `/releases`, `/load-shedding` (SPEC §10–11).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use deploy_safety_api_types::{
    CreateRollbackRequest, EnvironmentListQuery, ErrorBody, LoadSheddingView, ReleaseHistory,
    RollbackList, ServiceQuery, SetLoadSheddingRequest,
};
use deploy_safety_core::{Environment, Rollback};

use super::canary::{count_blocked, environment};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Authenticated};
use crate::state::AppState;

const TAG: &str = "rollback";

/// Creates a pending rollback (`toVersion` must differ from `fromVersion`).
#[utoipa::path(post, path = "/rollback/create", tag = TAG, security(("bearer" = [])),
    request_body = CreateRollbackRequest,
    responses(
        (status = 201, body = Rollback),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 409, description = "UNKNOWN_ROLLBACK_TARGET (when required)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<CreateRollbackRequest>,
) -> Result<(StatusCode, Json<Rollback>), ApiError> {
    let created = state.app.create_rollback(&caller, request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Executes a pending rollback: gated `deploy.rollback` in its environment.
#[utoipa::path(post, path = "/rollback/{id}/execute", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "rollback id")),
    responses(
        (status = 200, body = Rollback),
        (status = 401, body = ErrorBody),
        (status = 403, description = "blocked_by_security_gate", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "ROLLBACK_NOT_PENDING", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn execute(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Rollback>, ApiError> {
    let executed = state
        .app
        .execute_rollback(&caller, &id)
        .await
        .map_err(|e| count_blocked(e.into()))?;
    Ok(Json(executed))
}

/// One rollback.
#[utoipa::path(get, path = "/rollback/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "rollback id")),
    responses(
        (status = 200, body = Rollback),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Rollback>, ApiError> {
    Ok(Json(state.app.get_rollback(&id).await?))
}

/// Rollbacks, newest first.
#[utoipa::path(get, path = "/rollbacks", tag = TAG, security(("bearer" = [])),
    params(EnvironmentListQuery),
    responses(
        (status = 200, body = RollbackList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<EnvironmentListQuery>,
) -> Result<Json<RollbackList>, ApiError> {
    Ok(Json(state.app.list_rollbacks(query).await?))
}

/// What ran in an environment (completed or promoted canaries, rollbacks), newest first.
#[utoipa::path(get, path = "/releases/{environment}", tag = TAG, security(("bearer" = [])),
    params(("environment" = Environment, Path, description = "a configured environment (GET /environments)"), ServiceQuery),
    responses(
        (status = 200, body = ReleaseHistory),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn releases(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(env): Path<String>,
    ApiQuery(query): ApiQuery<ServiceQuery>,
) -> Result<Json<ReleaseHistory>, ApiError> {
    let environment = environment(&state, &env)?;
    Ok(Json(state.app.releases(environment, query).await?))
}

/// Sets an environment's load shedding: gated `ops.loadshed` (blocked in lockdown).
#[utoipa::path(post, path = "/load-shedding", tag = "load-shedding", security(("bearer" = [])),
    request_body = SetLoadSheddingRequest,
    responses(
        (status = 200, body = LoadSheddingView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "blocked_by_security_gate", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn set_load_shedding(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<SetLoadSheddingRequest>,
) -> Result<Json<LoadSheddingView>, ApiError> {
    let setting = state
        .app
        .set_load_shedding(&caller, request)
        .await
        .map_err(|e| count_blocked(e.into()))?;
    Ok(Json(setting))
}

/// An environment's load shedding setting.
#[utoipa::path(get, path = "/load-shedding/{environment}", tag = "load-shedding", security(("bearer" = [])),
    params(("environment" = Environment, Path, description = "a configured environment (GET /environments)"), ServiceQuery),
    responses(
        (status = 200, body = LoadSheddingView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn load_shedding(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(env): Path<String>,
    ApiQuery(query): ApiQuery<ServiceQuery>,
) -> Result<Json<LoadSheddingView>, ApiError> {
    let environment = environment(&state, &env)?;
    Ok(Json(state.app.load_shedding(environment, query).await?))
}
