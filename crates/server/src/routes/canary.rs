//! `/canary`, `/canaries`: canary deployments (SPEC §9).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use deploy_safety_api_types::{
    CanaryList, CanaryMetricsRequest, CanaryView, EnvironmentListQuery, ErrorBody,
    PromoteCanaryRequest, ServiceQuery, StartCanaryRequest,
};
use deploy_safety_app::AppError;
use deploy_safety_core::Environment;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Authenticated};
use crate::metrics::record_decision;
use crate::state::AppState;

const TAG: &str = "canary";

/// An environment named in a path: one the settings define (400 listing them otherwise).
pub(crate) fn environment(state: &AppState, text: &str) -> Result<Environment, ApiError> {
    state
        .app
        .settings()
        .environments
        .parse(text)
        .map(|known| known.name)
        .map_err(|e| AppError::invalid("environment", e.to_string()).into())
}

/// Counts the gate's decision behind a refusal, as the check endpoint does for its answers.
pub(crate) fn count_blocked(error: ApiError) -> ApiError {
    if let ApiError::App(AppError::Blocked(decision)) = &error {
        record_decision(decision);
    }
    error
}

/// Starts a canary: gated `deploy.canary.start` (403), then staging first and one active
/// canary per environment (409).
#[utoipa::path(post, path = "/canary/start", tag = TAG, security(("bearer" = [])),
    request_body = StartCanaryRequest,
    responses(
        (status = 201, body = CanaryView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "blocked_by_security_gate", body = ErrorBody),
        (status = 409, description = "STAGING_VALIDATION_REQUIRED, SOAK_REQUIRED or CANARY_ALREADY_ACTIVE", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<StartCanaryRequest>,
) -> Result<(StatusCode, Json<CanaryView>), ApiError> {
    let started = state
        .app
        .start_canary(&caller, request)
        .await
        .map_err(|e| count_blocked(e.into()))?;
    Ok((StatusCode::CREATED, Json(started)))
}

/// The environment's active canary, else its most recent one.
#[utoipa::path(get, path = "/canary/{environment}", tag = TAG, security(("bearer" = [])),
    params(("environment" = Environment, Path, description = "a configured environment (GET /environments)"), ServiceQuery),
    responses(
        (status = 200, body = CanaryView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn status(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(env): Path<String>,
    ApiQuery(query): ApiQuery<ServiceQuery>,
) -> Result<Json<CanaryView>, ApiError> {
    let environment = environment(&state, &env)?;
    Ok(Json(state.app.canary_status(environment, query).await?))
}

/// Takes the active canary to its maximum at once: gated `deploy.canary.promote`.
#[utoipa::path(post, path = "/canary/promote", tag = TAG, security(("bearer" = [])),
    request_body = PromoteCanaryRequest,
    responses(
        (status = 200, body = CanaryView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "blocked_by_security_gate", body = ErrorBody),
        (status = 404, description = "no active canary", body = ErrorBody),
        (status = 409, description = "`canaryId` names another canary than the active one", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn promote(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<PromoteCanaryRequest>,
) -> Result<Json<CanaryView>, ApiError> {
    let promoted = state
        .app
        .promote_canary(&caller, request)
        .await
        .map_err(|e| count_blocked(e.into()))?;
    Ok(Json(promoted))
}

/// Pushes the active canary's current metrics (any token).
#[utoipa::path(post, path = "/canary/{environment}/metrics", tag = TAG, security(("bearer" = [])),
    params(("environment" = Environment, Path, description = "a configured environment (GET /environments)"), ServiceQuery),
    request_body = CanaryMetricsRequest,
    responses(
        (status = 200, body = CanaryView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no active canary", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn metrics(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(env): Path<String>,
    ApiQuery(query): ApiQuery<ServiceQuery>,
    ApiJson(request): ApiJson<CanaryMetricsRequest>,
) -> Result<Json<CanaryView>, ApiError> {
    let environment = environment(&state, &env)?;
    Ok(Json(
        state
            .app
            .push_canary_metrics(environment, query, request)
            .await?,
    ))
}

/// Canaries, newest first.
#[utoipa::path(get, path = "/canaries", tag = TAG, security(("bearer" = [])),
    params(EnvironmentListQuery),
    responses(
        (status = 200, body = CanaryList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<EnvironmentListQuery>,
) -> Result<Json<CanaryList>, ApiError> {
    Ok(Json(state.app.list_canaries(query).await?))
}
