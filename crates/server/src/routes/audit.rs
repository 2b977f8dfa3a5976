//! The audit log: entries, verification, and the signed checkpoints of its head.

use axum::Json;
use axum::extract::State;
use deploy_safety_api_types::{
    AuditListQuery, AuditPage, AuditPublicKey, AuditVerification, ErrorBody,
};
use deploy_safety_core::Checkpoint;

use crate::error::ApiError;
use crate::extract::{ApiQuery, Authenticated};
use crate::state::AppState;

/// Audit entries, newest first, filtered and paged.
#[utoipa::path(get, path = "/audit", tag = "audit", security(("bearer" = [])),
    params(AuditListQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<AuditListQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(state.app.audit_page(query).await?))
}

/// Recomputes the whole hash chain and names the first broken entry.
#[utoipa::path(get, path = "/audit/verify", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, body = AuditVerification),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> Result<Json<AuditVerification>, ApiError> {
    Ok(Json(state.app.verify_audit().await?))
}

/// The public key checkpoints are signed with (Ed25519, PEM SubjectPublicKeyInfo). Keep a copy
/// out of this server's reach to check checkpoints with.
#[utoipa::path(get, path = "/audit/public-key", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, body = AuditPublicKey),
        (status = 401, body = ErrorBody),
        (status = 404, description = "this server has no signing key", body = ErrorBody),
    ))]
pub async fn public_key(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> Result<Json<AuditPublicKey>, ApiError> {
    Ok(Json(state.app.audit_public_key()?))
}

/// The newest signed checkpoint of the chain's head.
#[utoipa::path(get, path = "/audit/checkpoints/latest", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, body = Checkpoint),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no checkpoint has been made yet", body = ErrorBody),
        (status = 409, description = "CHECKPOINT_CORRUPT: the latest stored checkpoint no longer reads", body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn latest_checkpoint(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> Result<Json<Checkpoint>, ApiError> {
    Ok(Json(state.app.latest_checkpoint().await?))
}
