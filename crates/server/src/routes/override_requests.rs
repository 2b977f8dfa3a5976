//! `/security-gate/override-requests*`: the two-person rule (SPEC §19).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use deploy_safety_api_types::{
    DenyBody, ErrorBody, NewOverrideRequest, OverrideRequestList, OverrideRequestListQuery,
    OverrideRequestView, VoteBody,
};
use deploy_safety_core::VoteKind;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Authenticated, parse_json};
use crate::state::AppState;

const TAG: &str = "security-gate";

/// Asks for an override that other people approve. Any person may ask (developers
/// included); workload identities may not (403 `WORKLOAD_CANNOT_APPROVE`).
#[utoipa::path(post, path = "/security-gate/override-requests", tag = TAG, security(("bearer" = [])),
    request_body = NewOverrideRequest,
    responses(
        (status = 201, body = OverrideRequestView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "a workload identity (WORKLOAD_CANNOT_APPROVE)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create_request(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<NewOverrideRequest>,
) -> Result<(StatusCode, Json<OverrideRequestView>), ApiError> {
    let created = state.app.request_override(&caller, body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Lists override requests, newest first (`?status=pending` for those awaiting votes).
#[utoipa::path(get, path = "/security-gate/override-requests", tag = TAG, security(("bearer" = [])),
    params(OverrideRequestListQuery),
    responses(
        (status = 200, body = OverrideRequestList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list_requests(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<OverrideRequestListQuery>,
) -> Result<Json<OverrideRequestList>, ApiError> {
    Ok(Json(state.app.list_override_requests(query.status).await?))
}

/// One override request, with its votes.
#[utoipa::path(get, path = "/security-gate/override-requests/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "override request id")),
    responses(
        (status = 200, body = OverrideRequestView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn show_request(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<OverrideRequestView>, ApiError> {
    Ok(Json(state.app.get_override_request(&id).await?))
}

/// Approves a request. The approval that reaches `required` creates the override, at once.
/// The body `{"comment": "..."}` is optional.
#[utoipa::path(post, path = "/security-gate/override-requests/{id}/approve", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "override request id")),
    request_body(content = Option<VoteBody>, description = "optional: no body (or only whitespace) is `{}`; a body is a JSON object"),
    responses(
        (status = 200, body = OverrideRequestView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "SELF_APPROVAL, WORKLOAD_CANNOT_APPROVE or OVERRIDE_NOT_PERMITTED", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "already voted (ALREADY_VOTED), or the request is decided or expired (REQUEST_NOT_PENDING)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn approve_request(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<OverrideRequestView>, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        VoteBody::default()
    } else {
        parse_json(&body)?
    };
    let view = state
        .app
        .vote_on_override_request(&caller, &id, VoteKind::Approve, body)
        .await?;
    Ok(Json(view))
}

/// Denies a request, with a comment: one deny ends it.
#[utoipa::path(post, path = "/security-gate/override-requests/{id}/deny", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "override request id")),
    request_body = DenyBody,
    responses(
        (status = 200, body = OverrideRequestView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "SELF_APPROVAL, WORKLOAD_CANNOT_APPROVE or OVERRIDE_NOT_PERMITTED", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "already voted (ALREADY_VOTED), or the request is decided or expired (REQUEST_NOT_PENDING)", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn deny_request(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DenyBody>,
) -> Result<Json<OverrideRequestView>, ApiError> {
    let view = state
        .app
        .vote_on_override_request(&caller, &id, VoteKind::Deny, body.into())
        .await?;
    Ok(Json(view))
}
