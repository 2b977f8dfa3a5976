//! `/validations`: start a release validation, run its gates, read the outcome.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use deploy_safety_api_types::{
    ErrorBody, StartValidationRequest, ValidationList, ValidationListQuery, ValidationView,
};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Authenticated};
use crate::state::AppState;

const TAG: &str = "validations";

/// Starts a validation of a release in an environment; its gates are `pending`.
#[utoipa::path(post, path = "/validations/start", tag = TAG, security(("bearer" = [])),
    request_body = StartValidationRequest,
    responses(
        (status = 201, body = ValidationView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<StartValidationRequest>,
) -> Result<(StatusCode, Json<ValidationView>), ApiError> {
    let started = state.app.start_validation(&caller, request).await?;
    Ok((StatusCode::CREATED, Json(started)))
}

/// Runs every gate now and returns the outcome. Each call is a new run; concurrent calls share
/// the run in progress.
#[utoipa::path(post, path = "/validations/{id}/run", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "validation id")),
    responses(
        (status = 200, body = ValidationView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn run(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ValidationView>, ApiError> {
    Ok(Json(state.app.run_validation(&caller, &id).await?))
}

/// One validation: its latest status and gates, and every run.
#[utoipa::path(get, path = "/validations/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "validation id")),
    responses(
        (status = 200, body = ValidationView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ValidationView>, ApiError> {
    Ok(Json(state.app.get_validation(&id).await?))
}

/// Validations, newest first, filtered by release and environment.
#[utoipa::path(get, path = "/validations", tag = TAG, security(("bearer" = [])),
    params(ValidationListQuery),
    responses(
        (status = 200, body = ValidationList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<ValidationListQuery>,
) -> Result<Json<ValidationList>, ApiError> {
    Ok(Json(state.app.list_validations(query).await?))
}
