//! `/integrations/*`: deploy engines ask the gate in their own protocols (SPEC §17).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use deploy_safety_api_types::{
    DecisionAnswer, DecisionRequest, ErrorBody, FlaggerPayload, GithubPendingList,
    GithubProtectionRuleEvent, GithubReceipt,
};
use deploy_safety_app::{AppError, Caller};
use deploy_safety_core::{FlaggerHook, ReasonCode};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, Authenticated, parse_json};
use crate::metrics::record_engine_answer;
use crate::middleware::OwnProtocol;
use crate::state::AppState;

const TAG: &str = "integrations";

/// The largest GitHub webhook body taken: GitHub's own limit on payloads is 25 MB, but a
/// `deployment_protection_rule` delivery — the repository and the open pull requests — stays
/// far below this.
pub(crate) const GITHUB_BODY_LIMIT_BYTES: usize = 5 * 1024 * 1024;

/// May this action run now? For pollers (Argo Rollouts' web metric, Kargo's `http` step,
/// Spinnaker, scripts): 200 after authentication, always, with `allow`, `wait` or `deny`.
/// Audited like a check.
#[utoipa::path(get, path = "/integrations/decision", tag = TAG, security(("bearer" = [])),
    params(DecisionRequest),
    responses(
        (status = 200, body = DecisionAnswer),
        (status = 400, description = "invalid input, or an environment that is not configured; the field named", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn decision_get(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    request: Result<ApiQuery<DecisionRequest>, ApiError>,
) -> Result<Json<DecisionAnswer>, ApiError> {
    let ApiQuery(request) = refused_if_unreadable(&state, &caller, request).await?;
    answered(state.app.engine_decision(&caller, request).await?)
}

fn answered(answer: DecisionAnswer) -> Result<Json<DecisionAnswer>, ApiError> {
    record_engine_answer("decision", answer.decision.as_str());
    Ok(Json(answer))
}

/// An authenticated caller's request that cannot be read is refused and audited (SPEC §17).
async fn refused_if_unreadable<T>(
    state: &AppState,
    caller: &Caller,
    request: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let error = match request {
        Ok(request) => return Ok(request),
        Err(error) => error,
    };
    let message = match &error {
        ApiError::Invalid { message, .. } | ApiError::PayloadTooLarge(message) => message.clone(),
        ApiError::App(app) => app.to_string(),
    };
    state
        .app
        .record_integration_refusal(
            caller,
            "integration.decision",
            ReasonCode::InvalidRequest,
            &message,
        )
        .await?;
    Err(error)
}

/// The same question with a JSON body.
#[utoipa::path(post, path = "/integrations/decision", tag = TAG, security(("bearer" = [])),
    request_body = DecisionRequest,
    responses(
        (status = 200, body = DecisionAnswer),
        (status = 400, description = "invalid input, or an environment that is not configured; the field named", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn decision_post(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    request: Result<ApiJson<DecisionRequest>, ApiError>,
) -> Result<Json<DecisionAnswer>, ApiError> {
    let ApiJson(request) = refused_if_unreadable(&state, &caller, request).await?;
    answered(state.app.engine_decision(&caller, request).await?)
}

/// A payload that could not be read, as the use cases' error: the JSON parser's message names
/// the field already, which the error adds again.
fn unreadable(field: Option<String>, message: String) -> AppError {
    let field = field.unwrap_or_else(|| "body".to_owned());
    let message = message
        .strip_prefix(&format!("{field}: "))
        .map(str::to_owned)
        .unwrap_or(message);
    AppError::invalid(&field, message)
}

/// One line of `text/plain`, `CODE: message`: Flagger reads only the status and puts the
/// body in the canary's Kubernetes events.
fn flagger_line(status: StatusCode, code: &str, message: &str) -> Response {
    let line = format!("{code}: {}\n", message.replace(['\n', '\r'], " "));
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        line,
    )
        .into_response();
    response.extensions_mut().insert(OwnProtocol);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"deploy-safety\""),
        );
    }
    response
}

/// An error, in Flagger's terms: its status, and one line naming the reason.
fn flagger_error(error: ApiError) -> Response {
    let (status, code, message): (StatusCode, &str, String) = match error {
        ApiError::Invalid { message, .. } => (
            StatusCode::BAD_REQUEST,
            ReasonCode::InvalidRequest.as_str(),
            message,
        ),
        ApiError::PayloadTooLarge(message) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message)
        }
        ApiError::App(error) => match error {
            AppError::Unauthorized(message) => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message),
            AppError::Invalid { field, message } => (
                StatusCode::BAD_REQUEST,
                if field == "environment" {
                    ReasonCode::UnmappedEnvironment.as_str()
                } else {
                    ReasonCode::InvalidRequest.as_str()
                },
                format!("{field}: {message}"),
            ),
            AppError::Forbidden {
                reason, message, ..
            } => (StatusCode::FORBIDDEN, reason.as_str(), message),
            AppError::Blocked(decision) => (
                StatusCode::FORBIDDEN,
                decision.reason.as_str(),
                decision.message,
            ),
            AppError::NotFound(message) => (StatusCode::NOT_FOUND, "NOT_FOUND", message),
            AppError::Conflict {
                reason, message, ..
            } => (
                StatusCode::CONFLICT,
                reason.map_or("CONFLICT", ReasonCode::as_str),
                message,
            ),
            AppError::Unavailable(cause) => {
                tracing::error!(%cause, "storage unavailable: Flagger request refused (fail closed)");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "storage is unavailable: nothing was done, because it could not be recorded"
                        .to_owned(),
                )
            }
            AppError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal error".to_owned(),
                )
            }
        },
    };
    flagger_line(status, code, &message)
}

/// Authenticates a Flagger request: the `Authorization` header, or else `metadata.token`.
/// `body` is the raw payload: its `metadata.token` authenticates even a payload that is
/// otherwise wrong, so that the refusal names what is wrong and is audited.
async fn flagger_caller(
    state: &AppState,
    headers: &HeaderMap,
    body: Option<&[u8]>,
) -> Result<Caller, ApiError> {
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let token = header_token.or_else(|| {
        let loose: serde_json::Value = serde_json::from_slice(body?).ok()?;
        loose["metadata"]["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    });
    let Some(token) = token else {
        return Err(AppError::Unauthorized(
            "no token: send `Authorization: Bearer <token>` or set `token` in the webhook's metadata"
                .to_owned(),
        )
        .into());
    };
    Ok(state.app.authenticate(&token).await?)
}

/// Flagger's webhooks, every hook type, with Flagger's body (`CanaryWebhookPayload`).
/// 200 proceeds; 403 halts (the gate, or a failed validation, says no); 409 answers the
/// `rollback` hook's "should I roll back?" with no. The body is one `text/plain` line,
/// `CODE: message`. Authentication: the `Authorization` header, or `metadata.token`.
#[utoipa::path(post, path = "/integrations/flagger/{hook}", tag = TAG, security(("bearer" = [])),
    params(("hook" = FlaggerHook, Path, description = "Flagger's webhook type")),
    request_body = FlaggerPayload,
    responses(
        (status = 200, description = "proceed (`ALLOWED: ...`, `OVERRIDE: ...`, `VALIDATION_PASSED: ...`, `RECORDED: ...`, `ROLLBACK_REQUESTED: ...`)", body = String, content_type = "text/plain"),
        (status = 400, description = "a payload that cannot be read, or a namespace mapped to no environment (`INVALID_REQUEST: ...`); audited when authenticated", body = String, content_type = "text/plain"),
        (status = 401, description = "no valid token in the header or the metadata", body = String, content_type = "text/plain"),
        (status = 403, description = "halt: the gate's reason (`LOCKDOWN: ...`, `FREEZE: ...`, `OVERRIDE_REQUIRED: ...`, ...), or `VALIDATION_FAILED: ...`", body = String, content_type = "text/plain"),
        (status = 404, description = "not one of Flagger's hook types", body = String, content_type = "text/plain"),
        (status = 409, description = "`rollback` hook: `NO_ROLLBACK_REQUESTED: ...`", body = String, content_type = "text/plain"),
        (status = 413, body = String, content_type = "text/plain"),
        (status = 503, description = "storage unavailable (one line), or the request's time limit passed (the JSON error body)", content(
            (String = "text/plain"),
            (ErrorBody = "application/json"),
        )),
    ))]
pub async fn flagger(
    State(state): State<AppState>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(hook) = hook.parse::<FlaggerHook>() else {
        return flagger_line(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!(
                "`{hook}` is not a Flagger hook type; expected one of: {}",
                FlaggerHook::NAMES.join(", ")
            ),
        );
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            const TOO_LARGE: &str = "request body is larger than the limit";
            // Only a header can authenticate a body that was not read.
            if let Ok(caller) = flagger_caller(&state, &headers, None).await
                && let Err(unrecorded) = state
                    .app
                    .record_integration_refusal(
                        &caller,
                        &format!("integration.flagger.{hook}"),
                        ReasonCode::InvalidRequest,
                        TOO_LARGE,
                    )
                    .await
            {
                return flagger_error(unrecorded.into());
            }
            return flagger_line(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                TOO_LARGE,
            );
        }
        Err(rejection) => {
            return flagger_line(
                StatusCode::BAD_REQUEST,
                ReasonCode::InvalidRequest.as_str(),
                &format!("could not read the request body: {rejection}"),
            );
        }
    };
    let parsed = parse_json::<FlaggerPayload>(&body);
    let caller = match flagger_caller(&state, &headers, Some(&body)).await {
        Ok(caller) => caller,
        Err(error) => return flagger_error(error),
    };
    let payload = match parsed {
        Ok(payload) => payload,
        Err(ApiError::Invalid { field, message }) => {
            let error = unreadable(field, message);
            let refused = state
                .app
                .refuse_integration_request(&caller, &format!("integration.flagger.{hook}"), error)
                .await;
            return flagger_error(refused.into());
        }
        Err(other) => return flagger_error(other),
    };
    match state.app.flagger_hook(&caller, hook, payload).await {
        Ok(answer) => {
            record_engine_answer("flagger", answer.reason.as_str());
            flagger_line(
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::FORBIDDEN),
                answer.reason.as_str(),
                &answer.message,
            )
        }
        Err(error) => flagger_error(error.into()),
    }
}

/// GitHub's `deployment_protection_rule` webhook (a GitHub App's custom deployment
/// protection rule). Checked by `X-Hub-Signature-256`; answered 202 at once: the decision
/// goes back to GitHub as a callback, now or when the gate's state changes.
#[utoipa::path(post, path = "/integrations/github/deployment-protection-rule", tag = TAG,
    params(
        ("X-Hub-Signature-256" = String, Header, description = "`sha256=` and the hex HMAC-SHA256 of the body under the webhook secret"),
        ("X-GitHub-Event" = String, Header, description = "`deployment_protection_rule` is acted on; `ping` and other events are answered 200 and change nothing"),
        ("X-GitHub-Delivery" = Option<String>, Header, description = "GitHub's delivery id"),
    ),
    request_body = GithubProtectionRuleEvent,
    responses(
        (status = 202, description = "taken (decided, or waiting)", body = GithubReceipt),
        (status = 200, description = "a delivery not acted on (`ping`, another event or action)", body = GithubReceipt),
        (status = 400, description = "a signed payload that cannot be read, the field named; audited", body = ErrorBody),
        (status = 401, description = "missing or wrong signature; audited", body = ErrorBody),
        (status = 404, description = "the GitHub integration is not configured", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn github_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<GithubReceipt>), ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("request body is larger than the limit".to_owned())
        } else {
            ApiError::Invalid {
                field: None,
                message: format!("could not read the request body: {rejection}"),
            }
        }
    })?;
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    state
        .app
        .check_github_signature(
            text("x-hub-signature-256"),
            &body,
            text("x-github-delivery"),
        )
        .await?;
    let Some(event_name) = text("x-github-event") else {
        let error = AppError::invalid(
            "X-GitHub-Event",
            "missing header: GitHub names the event of every delivery",
        );
        return Err(state.app.refuse_github_delivery(error).await.into());
    };
    if event_name != "deployment_protection_rule" {
        return Ok((
            StatusCode::OK,
            Json(state.app.github_other_event(event_name)?),
        ));
    }
    let event = match parse_json::<GithubProtectionRuleEvent>(&body) {
        Ok(event) => event,
        Err(ApiError::Invalid { field, message }) => {
            let error = unreadable(field, message);
            return Err(state.app.refuse_github_delivery(error).await.into());
        }
        Err(other) => return Err(other),
    };
    let receipt = state.app.receive_github_event(event_name, event).await?;
    let status = if receipt.accepted {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(receipt)))
}

/// GitHub deployment protection rule requests still waiting for the gate, oldest first.
#[utoipa::path(get, path = "/integrations/github/pending", tag = TAG, security(("bearer" = [])),
    responses(
        (status = 200, body = GithubPendingList),
        (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn github_pending(
    State(state): State<AppState>,
    _caller: Authenticated,
) -> Result<Json<GithubPendingList>, ApiError> {
    Ok(Json(state.app.github_pending().await?))
}
