//! `/incidents`: open, list, show, escalate, resolve. Every role, every mode.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use deploy_safety_api_types::{
    ErrorBody, EscalateIncidentRequest, IncidentList, IncidentListQuery, OpenIncidentRequest,
    ResolveIncidentRequest,
};
use deploy_safety_core::Incident;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Authenticated};
use crate::state::AppState;

const TAG: &str = "incidents";

/// Opens an incident. A `security` incident at `critical` puts the gate into lockdown.
#[utoipa::path(post, path = "/incidents", tag = TAG, security(("bearer" = [])),
    request_body = OpenIncidentRequest,
    responses(
        (status = 201, body = Incident),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn open(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<OpenIncidentRequest>,
) -> Result<(StatusCode, Json<Incident>), ApiError> {
    let opened = state.app.open_incident(&caller, request).await?;
    Ok((StatusCode::CREATED, Json(opened)))
}

/// Lists incidents, newest first, filtered by status, severity and environment.
#[utoipa::path(get, path = "/incidents", tag = TAG, security(("bearer" = [])),
    params(IncidentListQuery),
    responses(
        (status = 200, body = IncidentList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<IncidentListQuery>,
) -> Result<Json<IncidentList>, ApiError> {
    Ok(Json(state.app.list_incidents(query).await?))
}

/// One incident with its history.
#[utoipa::path(get, path = "/incidents/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "incident id")),
    responses(
        (status = 200, body = Incident),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Incident>, ApiError> {
    Ok(Json(state.app.get_incident(&id).await?))
}

/// Raises an incident's severity (400 if not higher; 409 if resolved).
#[utoipa::path(post, path = "/incidents/{id}/escalate", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "incident id")),
    request_body = EscalateIncidentRequest,
    responses(
        (status = 200, body = Incident),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn escalate(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<EscalateIncidentRequest>,
) -> Result<Json<Incident>, ApiError> {
    Ok(Json(
        state.app.escalate_incident(&caller, &id, request).await?,
    ))
}

/// Resolves an incident (409 if already resolved).
#[utoipa::path(post, path = "/incidents/{id}/resolve", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "incident id")),
    request_body = ResolveIncidentRequest,
    responses(
        (status = 200, body = Incident),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn resolve(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ResolveIncidentRequest>,
) -> Result<Json<Incident>, ApiError> {
    Ok(Json(
        state.app.resolve_incident(&caller, &id, request).await?,
    ))
}
