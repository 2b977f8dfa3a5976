//! `/security-gate/*`: status, mode, threat level, overrides, check.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use deploy_safety_api_types::{
    CheckRequest, CheckResponse, CreateOverrideRequest, ErrorBody, GateStatus, OverrideList,
    OverrideListQuery, OverrideView, SetModeRequest, SetThreatLevelRequest,
};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Authenticated, GateCredential};
use crate::metrics::record_decision;
use crate::state::AppState;

const TAG: &str = "security-gate";

/// The gate's mode, threat level and active override count.
#[utoipa::path(get, path = "/security-gate/status", tag = TAG, security(("bearer" = [])),
    responses(
        (status = 200, body = GateStatus),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn status(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> Result<Json<GateStatus>, ApiError> {
    Ok(Json(state.app.gate_status().await?))
}

/// Sets the security mode. Security team only; entering lockdown needs a reason.
#[utoipa::path(post, path = "/security-gate/mode", tag = TAG, security(("bearer" = [])),
    request_body = SetModeRequest,
    responses(
        (status = 200, body = GateStatus),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "not security-team (ROLE_NOT_PERMITTED)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn set_mode(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<SetModeRequest>,
) -> Result<Json<GateStatus>, ApiError> {
    Ok(Json(state.app.set_mode(&caller, request).await?))
}

/// Sets the threat level. Security team only; `critical` enters lockdown.
#[utoipa::path(post, path = "/security-gate/threat-level", tag = TAG, security(("bearer" = [])),
    request_body = SetThreatLevelRequest,
    responses(
        (status = 200, body = GateStatus),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "not security-team (ROLE_NOT_PERMITTED)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn set_threat_level(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<SetThreatLevelRequest>,
) -> Result<Json<GateStatus>, ApiError> {
    Ok(Json(state.app.set_threat_level(&caller, request).await?))
}

/// Creates a time-limited override for one action in one environment.
#[utoipa::path(post, path = "/security-gate/override", tag = TAG, security(("bearer" = [])),
    request_body = CreateOverrideRequest,
    responses(
        (status = 201, body = OverrideView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "OVERRIDE_NOT_PERMITTED or APPROVER_MISMATCH", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create_override(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<CreateOverrideRequest>,
) -> Result<(StatusCode, Json<OverrideView>), ApiError> {
    let created = state.app.create_override(&caller, request).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Lists active overrides (`?all=true`: expired and revoked too), newest first.
#[utoipa::path(get, path = "/security-gate/overrides", tag = TAG, security(("bearer" = [])),
    params(OverrideListQuery),
    responses(
        (status = 200, body = OverrideList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list_overrides(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<OverrideListQuery>,
) -> Result<Json<OverrideList>, ApiError> {
    let all = query.all.unwrap_or(false);
    Ok(Json(state.app.list_overrides(all).await?))
}

/// One override, whatever its status.
#[utoipa::path(get, path = "/security-gate/override/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "override id")),
    responses(
        (status = 200, body = OverrideView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn get_override(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<OverrideView>, ApiError> {
    Ok(Json(state.app.get_override(&id).await?))
}

/// Revokes an override: the security team, or its creator.
#[utoipa::path(delete, path = "/security-gate/override/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "override id")),
    responses(
        (status = 200, body = OverrideView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "NOT_OVERRIDE_CREATOR", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "already revoked or expired (OVERRIDE_NOT_ACTIVE)", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn revoke_override(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<OverrideView>, ApiError> {
    Ok(Json(state.app.revoke_override(&caller, &id).await?))
}

/// Asks what the gate would decide now, without acting. Audited; not a use of any override.
/// Always 200: read `allowed`.
#[utoipa::path(post, path = "/security-gate/check", tag = TAG, security(("bearer" = [])),
    request_body = CheckRequest,
    responses(
        (status = 200, body = CheckResponse),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn check(
    State(state): State<AppState>,
    credential: GateCredential,
    body: Result<ApiJson<CheckRequest>, ApiError>,
) -> Result<Json<CheckResponse>, ApiError> {
    let request = match body {
        Ok(ApiJson(request)) => request,
        Err(invalid) => {
            credential.authenticate(&state).await?;
            return Err(invalid);
        }
    };
    let response = match credential {
        GateCredential::Verified(caller) => state.app.check(&caller, request).await?,
        GateCredential::Token(token) => state.app.check_with_token(token, request).await?,
    };
    record_decision(&response.decision);
    Ok(Json(response))
}
