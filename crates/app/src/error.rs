//! The one error type of the use cases. The server maps each variant to one status code; the
//! message of a variant is safe to show the caller, except `Unavailable` and `Internal`, whose
//! details are logged and replaced by a generic message.

use deploy_safety_core::{Decision, InvalidText, ReasonCode};
use deploy_safety_store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppError {
    /// No valid token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The request is malformed or a field is invalid (400).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The caller's role or identity does not permit this (403).
    #[error("{message}")]
    Forbidden {
        reason: ReasonCode,
        message: String,
        hints: Vec<String>,
    },
    /// Nothing has this id (404).
    #[error("{0}")]
    NotFound(String),
    /// The gate denied the action (403 `blocked_by_security_gate`).
    #[error("Action blocked by security gate: {}", .0.message)]
    Blocked(Box<Decision>),
    /// The action conflicts with the current state (409).
    #[error("{message}")]
    Conflict {
        reason: Option<ReasonCode>,
        message: String,
        /// How to proceed.
        hints: Vec<String>,
    },
    /// The store could not record or read what it must: fail closed (503).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// Names `field` as the culprit of a text validation failure.
    pub fn invalid_text(field: &str) -> impl FnOnce(InvalidText) -> AppError + '_ {
        move |e| AppError::invalid(field, e.0)
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        // A store conflict that a use case did not expect and handle is a broken invariant,
        // not the caller's doing: fail closed, and keep the database's wording out of answers.
        AppError::Unavailable(error.to_string())
    }
}
