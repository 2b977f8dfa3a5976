//! `/freezes`: times when chosen deployments stop (SPEC §16).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use deploy_safety_api_types::{
    CreateFreezeRequest, EndFreezeRequest, ErrorBody, FreezeList, FreezeListQuery, FreezeView,
};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Authenticated, parse_json};
use crate::state::AppState;

const TAG: &str = "freezes";

/// Creates a freeze (security-team, eng-lead): a one-off window or a recurring schedule.
#[utoipa::path(post, path = "/freezes", tag = TAG, security(("bearer" = [])),
    request_body = CreateFreezeRequest,
    responses(
        (status = 201, body = FreezeView),
        (status = 400, description = "invalid input, the field named; nothing stored", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "ROLE_NOT_PERMITTED", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<CreateFreezeRequest>,
) -> Result<(StatusCode, Json<FreezeView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.app.create_freeze(&caller, request).await?),
    ))
}

/// Freezes not yet over (`?all=true`: ended ones too), newest first, each with whether it is
/// in force and until when, or when its next window comes.
#[utoipa::path(get, path = "/freezes", tag = TAG, security(("bearer" = [])),
    params(FreezeListQuery),
    responses(
        (status = 200, body = FreezeList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<FreezeListQuery>,
) -> Result<Json<FreezeList>, ApiError> {
    Ok(Json(state.app.list_freezes(query).await?))
}

/// One freeze.
#[utoipa::path(get, path = "/freezes/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "freeze id")),
    responses(
        (status = 200, body = FreezeView),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn show(
    State(state): State<AppState>,
    _caller: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<FreezeView>, ApiError> {
    Ok(Json(state.app.get_freeze(&id).await?))
}

/// Ends a freeze now (security-team, eng-lead), audited with who and why. The body
/// `{"reason": "..."}` is optional.
#[utoipa::path(delete, path = "/freezes/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "freeze id")),
    request_body(content = Option<EndFreezeRequest>, description = "optional: no body (or only whitespace) is `{}`; a body is a JSON object"),
    responses(
        (status = 200, body = FreezeView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "ROLE_NOT_PERMITTED", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "FREEZE_OVER", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn end(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<FreezeView>, ApiError> {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        EndFreezeRequest::default()
    } else {
        parse_json(&body)?
    };
    Ok(Json(state.app.end_freeze(&caller, &id, request).await?))
}
