//! Records the store keeps that are not core domain types.

use deploy_safety_core::{
    AuditDecision, Environment, IncidentStatus, Role, Severity, SoakStatus, Timestamp,
};

/// A bearer token as stored: only the SHA-256 of its secret, never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// The public part of the token, used to find the record.
    pub id: String,
    /// The principal's name.
    pub name: String,
    pub role: Role,
    /// SHA-256 of the secret part.
    pub secret_hash: Vec<u8>,
    pub created_at: Timestamp,
    pub created_by: String,
    pub revoked_at: Option<Timestamp>,
}

/// One page of the audit log, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub environment: Option<Environment>,
    pub principal: Option<String>,
    pub decision: Option<AuditDecision>,
    /// Entries at or after this time.
    pub since: Option<Timestamp>,
    /// Entries strictly before this time.
    pub until: Option<Timestamp>,
    /// Entries with a seq below this one (the cursor of the previous page).
    pub before_seq: Option<u64>,
    pub limit: u32,
}

/// Which incidents to list, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncidentQuery {
    pub status: Option<IncidentStatus>,
    pub severity: Option<Severity>,
    /// Incidents that concern this environment: those naming it and those naming none.
    pub environment: Option<Environment>,
    pub limit: u32,
}

/// Which soaks to list, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SoakQuery {
    pub release_id: Option<String>,
    pub environment: Option<Environment>,
    pub service: Option<String>,
    pub status: Option<SoakStatus>,
    pub limit: u32,
}

/// What an outbox entry delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxKind {
    /// An event to a configured webhook (`target` is the webhook's name).
    Webhook,
    /// A rollback to the executor webhook.
    Executor,
    /// A GitHub deployment protection rule's callback (`target` says which: a status
    /// comment, or the final answer).
    GithubCallback,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Webhook => "webhook",
            OutboxKind::Executor => "executor",
            OutboxKind::GithubCallback => "github-callback",
        }
    }

    pub fn parse(text: &str) -> Option<OutboxKind> {
        match text {
            "webhook" => Some(OutboxKind::Webhook),
            "executor" => Some(OutboxKind::Executor),
            "github-callback" => Some(OutboxKind::GithubCallback),
            _ => None,
        }
    }
}

/// Work for the outside world, kept until done: delivered at least once, retried with backoff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: u64,
    pub kind: OutboxKind,
    pub target: String,
    pub event_seq: Option<u64>,
    pub rollback_id: Option<String>,
    /// The GitHub request a callback answers.
    pub github_request_id: Option<String>,
    pub attempts: u32,
    /// When to try (again); none once done or failed.
    pub next_attempt_at: Option<Timestamp>,
    pub done_at: Option<Timestamp>,
    /// Given up on after the last retry.
    pub failed_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// The replica running the background work, as the database records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    pub replica: String,
    /// When it took the lead (ms since the Unix epoch, the database's clock).
    pub since_ms: i64,
    /// How long ago it last refreshed its claim.
    pub heartbeat_age_ms: i64,
    /// Whether that refresh is recent enough to count as alive.
    pub fresh: bool,
}
