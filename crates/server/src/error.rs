//! The one error type of the HTTP API and its mapping to status codes (SPEC §13).
//!
//! Which error to use where: handlers return [`ApiError`], almost always converted from the
//! use case's `AppError` with `?`. Extractors produce [`ApiError::Invalid`] or
//! [`ApiError::PayloadTooLarge`] for bodies and queries they cannot read. Anything that is not
//! the caller's fault (`Unavailable`, `Internal`) is logged with its cause here and answered with
//! a generic message: 5xx bodies never carry internals.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use deploy_safety_api_types::{ErrorBody, ErrorDetail};
use deploy_safety_app::AppError;

#[derive(Debug)]
pub enum ApiError {
    App(AppError),
    /// The request could not be read: `field` names the culprit when one can be named.
    Invalid {
        field: Option<String>,
        message: String,
    },
    PayloadTooLarge(String),
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        ApiError::App(error)
    }
}

fn detail(code: &str, message: impl Into<String>) -> ErrorDetail {
    ErrorDetail {
        code: code.to_owned(),
        message: message.into(),
        field: None,
        reason: None,
        hints: Vec::new(),
        request_id: None,
    }
}

/// The lower_snake_case code for a status, for errors not produced by a use case.
pub(crate) fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "timeout",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ if status.is_server_error() => "internal",
        _ => "error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Invalid { field, message } => (
                StatusCode::BAD_REQUEST,
                ErrorBody {
                    error: ErrorDetail {
                        field,
                        ..detail("invalid_request", message)
                    },
                    decision: None,
                },
            ),
            ApiError::PayloadTooLarge(message) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorBody {
                    error: detail("payload_too_large", message),
                    decision: None,
                },
            ),
            ApiError::App(error) => app_error_body(error),
        };
        let unauthorized = status == StatusCode::UNAUTHORIZED;
        let mut response = (status, Json(body)).into_response();
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"deploy-safety\""),
            );
        }
        response
    }
}

fn app_error_body(error: AppError) -> (StatusCode, ErrorBody) {
    let plain = |status, code, message: String| {
        (
            status,
            ErrorBody {
                error: detail(code, message),
                decision: None,
            },
        )
    };
    match error {
        AppError::Unauthorized(message) => plain(StatusCode::UNAUTHORIZED, "unauthorized", message),
        AppError::Invalid { field, message } => (
            StatusCode::BAD_REQUEST,
            ErrorBody {
                error: ErrorDetail {
                    field: Some(field.clone()),
                    ..detail("invalid_request", format!("{field}: {message}"))
                },
                decision: None,
            },
        ),
        AppError::Forbidden {
            reason,
            message,
            hints,
        } => (
            StatusCode::FORBIDDEN,
            ErrorBody {
                error: ErrorDetail {
                    reason: Some(reason),
                    hints,
                    ..detail("forbidden", message)
                },
                decision: None,
            },
        ),
        AppError::NotFound(message) => plain(StatusCode::NOT_FOUND, "not_found", message),
        AppError::Blocked(decision) => (
            StatusCode::FORBIDDEN,
            ErrorBody {
                error: ErrorDetail {
                    reason: Some(decision.reason),
                    hints: decision.hints.clone(),
                    ..detail(
                        "blocked_by_security_gate",
                        format!("Action blocked by security gate: {}", decision.message),
                    )
                },
                decision: Some(*decision),
            },
        ),
        AppError::Conflict {
            reason,
            message,
            hints,
        } => (
            StatusCode::CONFLICT,
            ErrorBody {
                error: ErrorDetail {
                    reason,
                    hints,
                    ..detail("conflict", message)
                },
                decision: None,
            },
        ),
        AppError::Unavailable(cause) => {
            tracing::error!(%cause, "storage unavailable: request refused (fail closed)");
            plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Storage is unavailable: nothing was done, because it could not be recorded. Retry later.".to_owned(),
            )
        }
        AppError::Internal(cause) => {
            tracing::error!(%cause, "internal error");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error.".to_owned(),
            )
        }
    }
}
