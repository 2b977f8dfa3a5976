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

/// A single sign-on session as stored (SPEC §18): only the SHA-256 of the cookie's secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The public part of the cookie, used to find, list and revoke the session.
    pub id: String,
    pub secret_hash: Vec<u8>,
    pub principal: String,
    /// The principal's role (principals never change role).
    pub role: Role,
    /// What a state-changing request authenticated by this session must send as
    /// `X-CSRF-Token`.
    pub csrf_token: String,
    pub created_at: Timestamp,
    /// The last request seen, to the precision the server touches it with.
    pub last_seen_at: Timestamp,
    /// The absolute end, whatever the activity.
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub revoked_by: Option<String>,
    /// The static token a dashboard sign-in exchanged for this session (SPEC §21); `None` for
    /// single sign-on. Revoking the token revokes the session.
    pub token_id: Option<String>,
}

/// Never shows the CSRF token.
impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("role", &self.role)
            .field("csrf_token", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("revoked_by", &self.revoked_by)
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

/// A single sign-on login in progress: what the callback must find again, once.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginRequestRecord {
    /// SHA-256 of the `state` sent to the identity provider.
    pub state_hash: Vec<u8>,
    /// SHA-256 of the cookie that ties the login to the browser that began it.
    pub browser_hash: Vec<u8>,
    pub nonce: String,
    pub pkce_verifier: String,
    /// A path on this server to go to once signed in.
    pub return_to: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for LoginRequestRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequestRecord")
            .field("nonce", &"<redacted>")
            .field("pkce_verifier", &"<redacted>")
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
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
