//! GitHub deployment protection rules (SPEC §17).
//!
//! GitHub sends a signed webhook when a workflow job wants to deploy to an environment that
//! has our rule, and waits for a callback. The request is decided at once, in the transaction
//! that stores it; a pending one is decided again whenever the gate's state may have changed
//! and at least every minute (the engine's `GithubWatcher`). Every answer — the one status
//! comment of a wait, the final approval or rejection — leaves through the outbox, so it is
//! retried with backoff and survives restarts and changes of leader; a request leaves
//! `pending` once, so it gets at most one final answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deploy_safety_api_types::{GithubPendingList, GithubProtectionRuleEvent, GithubReceipt};
use deploy_safety_core::{
    Action, AuditDecision, AuditDraft, Environment, GateRequest, GithubRequest, GithubRequestState,
    PollDecision, ReasonCode, ReleaseId, ServiceName, Timestamp,
    signature::verify_signature_header,
};
use deploy_safety_store::{OutboxEntry, StoreError, Tx};
use serde_json::json;

use crate::events::Attempt;
use crate::gate::new_id;
use crate::integrations::{Principal, engine_answer_in, record_engine_decision};
use crate::{App, AppError, AppSettings};

/// Who GitHub's requests are recorded for: GitHub proved itself with the webhook secret.
const PRINCIPAL: Principal<'static> = Principal {
    name: "github",
    role: None,
    auth: None,
};
const AUDIT_ACTION: &str = "integration.github.deployment-protection-rule";
/// The outbox targets: a wait's status comment, and the final answer.
pub(crate) const COMMENT: &str = "comment";
pub(crate) const ANSWER: &str = "answer";
/// A pending request is decided again at least this often.
const REDECIDE_MS: i64 = 60_000;
/// GitHub waits 30 days for an answer.
const GITHUB_WAITS_MS: i64 = 30 * 24 * 60 * 60 * 1_000;
/// Pending requests decided again per pass.
const REDECIDE_BATCH: u32 = 200;
/// Pending requests listed at most.
const PENDING_LIST: u32 = 1_000;
/// GitHub's REST API version we speak.
const API_VERSION: &str = "2022-11-28";

/// The GitHub App's private key, which signs the app's JWTs (RS256).
#[derive(Clone)]
pub struct GithubAppKey(Arc<jsonwebtoken::EncodingKey>);

impl std::fmt::Debug for GithubAppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GithubAppKey(<redacted>)")
    }
}

#[derive(serde::Serialize)]
struct AppClaims<'a> {
    iat: i64,
    exp: i64,
    iss: &'a str,
}

impl GithubAppKey {
    /// Reads an RSA private key in PEM (GitHub's download is PKCS#1; PKCS#8 works too).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem)
            .map(|key| GithubAppKey(Arc::new(key)))
            .map_err(|e| format!("not an RSA private key in PEM: {e}"))?;
        // `from_rsa_pem` only unwraps the PEM (a public key passes); signing once tells.
        key.app_jwt("0", Timestamp::from_unix_millis(0))
            .map_err(|e| format!("not an RSA private key in PEM: {e}"))?;
        Ok(key)
    }

    /// The app's JWT at `now`, as GitHub asks: issued a minute in the past (clock drift),
    /// expiring in nine minutes (GitHub allows at most ten), issued by the app id.
    pub fn app_jwt(&self, app_id: &str, now: Timestamp) -> Result<String, String> {
        let seconds = now.unix_millis() / 1_000;
        let claims = AppClaims {
            iat: seconds - 60,
            exp: seconds + 9 * 60,
            iss: app_id,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.0,
        )
        .map_err(|e| format!("cannot sign the GitHub App JWT: {e}"))
    }
}

/// `[integrations.github]`.
#[derive(Clone)]
pub struct GithubSettings {
    pub app_id: String,
    pub private_key: GithubAppKey,
    /// `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise; no trailing
    /// slash.
    pub api_url: String,
    pub webhook_secret: String,
    /// The gated action a deployment asks for.
    pub action: Action,
    /// GitHub environment name → deploy-safety environment; a name not listed maps to the
    /// environment of the same name.
    pub environments: BTreeMap<String, Environment>,
    /// For each call to GitHub.
    pub timeout: Duration,
}

impl std::fmt::Debug for GithubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubSettings")
            .field("app_id", &self.app_id)
            .field("api_url", &self.api_url)
            .field("webhook_secret", &"<redacted>")
            .field("action", &self.action)
            .field("environments", &self.environments)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl GithubSettings {
    fn environment_for(&self, github_name: &str) -> Option<Environment> {
        self.environments
            .get(github_name)
            .copied()
            .or_else(|| Environment::parse(github_name).ok())
    }
}

fn refusal_draft(reason: ReasonCode, message: &str, details: serde_json::Value) -> AuditDraft {
    let mut details = details;
    if let Some(fields) = details.as_object_mut() {
        fields.insert("message".to_owned(), json!(message));
    }
    AuditDraft {
        principal: PRINCIPAL.name.to_owned(),
        role: None,
        action: AUDIT_ACTION.to_owned(),
        environment: None,
        decision: AuditDecision::Denied,
        reason: reason.as_str().to_owned(),
        details,
    }
}

/// Cuts `text` to at most `max` characters, on a character boundary.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A request taken from GitHub's payload, before it is decided.
struct Received {
    github_environment: String,
    environment: Option<Environment>,
    service: String,
    release_id: String,
    installation_id: u64,
    deployment_id: u64,
    callback_url: String,
    sender: Option<String>,
}

fn required<'a, T>(value: Option<&'a T>, field: &str) -> Result<&'a T, AppError> {
    value.ok_or_else(|| AppError::invalid(field, "missing: a `requested` event carries it"))
}

/// Decides `request` (pending) inside `tx` and records what changed: a final answer is
/// audited and queued; a wait is audited when its reason changed (or it is the first
/// decision), and queues the one status comment of the request if it has none yet.
fn decide_request_in(
    tx: &mut dyn Tx,
    settings: &AppSettings,
    request: &mut GithubRequest,
    first: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    let known = request
        .environment
        .and_then(|e| settings.environments.resolve(e));
    let Some(known) = known else {
        let message = format!(
            "GitHub environment `{}` maps to no deploy-safety environment: add `\"{}\" = \"<environment>\"` under [integrations.github.environments], or an [[environments]] entry named `{}`, in the settings file",
            request.github_environment, request.github_environment, request.github_environment
        );
        request.environment = None;
        request.state = GithubRequestState::Rejected;
        request.reason = ReasonCode::UnmappedEnvironment;
        request.message = message.clone();
        request.decided_at = Some(now);
        request.next_decision_at = None;
        request.audit_seq = tx
            .append_audit(
                refusal_draft(
                    ReasonCode::UnmappedEnvironment,
                    &message,
                    json!({ "requestId": request.id, "githubEnvironment": request.github_environment,
                            "repository": request.service }),
                ),
                now,
            )?
            .seq;
        tx.enqueue_github_callback(ANSWER, &request.id, now)?;
        return Ok(());
    };
    let gate_request = GateRequest {
        action: request.action,
        environment: known,
        release_id: Some(&request.release_id),
        service: Some(&request.service),
        start_override_id: None,
    };
    let decided = engine_answer_in(tx, &gate_request, &settings.approvals, now)?;
    let told = &decided.told;
    let details = json!({ "requestId": request.id, "githubEnvironment": request.github_environment,
                          "sender": request.sender, "verdict": decided.verdict });
    let changed = first || told.reason != request.reason;
    request.reason = told.reason;
    request.message = told.message.clone();
    match told.decision {
        PollDecision::Allow | PollDecision::Deny => {
            request.state = if told.decision == PollDecision::Allow {
                GithubRequestState::Approved
            } else {
                GithubRequestState::Rejected
            };
            request.decided_at = Some(now);
            request.next_decision_at = None;
            request.audit_seq =
                record_engine_decision(tx, PRINCIPAL, AUDIT_ACTION, &decided, details, true, now)?;
            tx.enqueue_github_callback(ANSWER, &request.id, now)?;
        }
        PollDecision::Wait if now >= request.expires_at => {
            request.state = GithubRequestState::Expired;
            request.decided_at = Some(now);
            request.next_decision_at = None;
            request.audit_seq = tx
                .append_audit(
                    AuditDraft {
                        principal: PRINCIPAL.name.to_owned(),
                        role: None,
                        action: AUDIT_ACTION.to_owned(),
                        environment: Some(known.name),
                        decision: AuditDecision::Recorded,
                        reason: told.reason.as_str().to_owned(),
                        details: json!({ "requestId": request.id, "state": "expired",
                                         "message": "GitHub stopped waiting (30 days) while the gate still said wait" }),
                    },
                    now,
                )?
                .seq;
        }
        PollDecision::Wait => {
            request.next_decision_at = Some(now.plus_millis(REDECIDE_MS));
            if changed {
                request.audit_seq = record_engine_decision(
                    tx,
                    PRINCIPAL,
                    AUDIT_ACTION,
                    &decided,
                    details,
                    false,
                    now,
                )?;
            }
            if !request.commented {
                request.commented = true;
                tx.enqueue_github_callback(COMMENT, &request.id, now)?;
            }
        }
    }
    Ok(())
}

impl App {
    fn github(&self) -> Result<&GithubSettings, AppError> {
        self.settings.github.as_ref().ok_or_else(|| {
            AppError::NotFound(
                "the GitHub integration is not configured: add [integrations.github] to the settings file"
                    .to_owned(),
            )
        })
    }

    /// Checks `X-Hub-Signature-256` over the raw body (constant-time). A missing or wrong
    /// signature is 401, and audited: someone without the secret is knocking.
    pub async fn check_github_signature(
        &self,
        signature: Option<&str>,
        body: &[u8],
        delivery: Option<&str>,
    ) -> Result<(), AppError> {
        let github = self.github()?;
        let problem = match signature {
            None => "missing X-Hub-Signature-256 header",
            Some(header) if verify_signature_header(&github.webhook_secret, body, header) => {
                return Ok(());
            }
            Some(_) => "X-Hub-Signature-256 does not match the body and the webhook secret",
        };
        let draft = refusal_draft(
            ReasonCode::BadSignature,
            problem,
            json!({ "delivery": delivery }),
        );
        self.append_audit_entry(draft).await?;
        Err(AppError::Unauthorized(format!(
            "{problem} (sign with the webhook secret set as [integrations.github] webhook_secret)"
        )))
    }

    /// Records the refusal of a signed delivery that cannot be read, and returns the error.
    pub async fn refuse_github_delivery(&self, error: AppError) -> AppError {
        let draft = refusal_draft(ReasonCode::InvalidRequest, &error.to_string(), json!({}));
        match self.append_audit_entry(draft).await {
            Ok(_) => error,
            Err(unrecorded) => unrecorded,
        }
    }

    fn github_received(
        &self,
        github: &GithubSettings,
        event: &GithubProtectionRuleEvent,
    ) -> Result<Received, AppError> {
        let github_environment = required(event.environment.as_ref(), "environment")?;
        if github_environment.is_empty() || github_environment.len() > 255 {
            return Err(AppError::invalid(
                "environment",
                "must be 1 to 255 characters",
            ));
        }
        let callback_url = required(
            event.deployment_callback_url.as_ref(),
            "deployment_callback_url",
        )?;
        // The callback carries our installation token: it may only go to the GitHub API we
        // are configured for, whatever a payload says.
        if !callback_url.starts_with(&format!("{}/", github.api_url)) || callback_url.len() > 2_048
        {
            return Err(AppError::invalid(
                "deployment_callback_url",
                format!(
                    "must be a URL under the configured GitHub API ({}); set [integrations.github] api_url for GitHub Enterprise",
                    github.api_url
                ),
            ));
        }
        let deployment = required(event.deployment.as_ref(), "deployment")?;
        let release_id = ReleaseId::parse(&deployment.sha)
            .map_err(AppError::invalid_text("deployment.sha"))?
            .into_string();
        let full_name = &required(event.repository.as_ref(), "repository")?.full_name;
        let service = ServiceName::parse(full_name)
            .map_err(AppError::invalid_text("repository.full_name"))?
            .into_string();
        let installation_id = required(event.installation.as_ref(), "installation")?.id;
        Ok(Received {
            github_environment: github_environment.clone(),
            environment: github.environment_for(github_environment),
            service,
            release_id,
            installation_id,
            deployment_id: deployment.id,
            callback_url: callback_url.clone(),
            sender: event.sender.as_ref().map(|s| s.login.clone()),
        })
    }

    /// A signed delivery of another event than `deployment_protection_rule` (a `ping` when the
    /// webhook is set up): answered, and nothing changes.
    pub fn github_other_event(&self, event_name: &str) -> Result<GithubReceipt, AppError> {
        self.github()?;
        let message = if event_name == "ping" {
            "pong: the webhook secret matches".to_owned()
        } else {
            format!(
                "ignored: only `deployment_protection_rule` events are acted on (got `{event_name}`)"
            )
        };
        Ok(GithubReceipt {
            accepted: false,
            request: None,
            message,
        })
    }

    /// `POST /integrations/github/deployment-protection-rule`, after the signature was
    /// checked: takes a `requested` event, decides it at once and queues the answer. A
    /// delivery for a (callback, environment) already taken returns the request made then.
    pub async fn receive_github_event(
        &self,
        event_name: &str,
        event: GithubProtectionRuleEvent,
    ) -> Result<GithubReceipt, AppError> {
        let github = self.github()?.clone();
        if event_name != "deployment_protection_rule" {
            return self.github_other_event(event_name);
        }
        if event.action != "requested" {
            return Ok(GithubReceipt {
                accepted: false,
                request: None,
                message: format!(
                    "ignored: only the action `requested` is acted on (got `{}`)",
                    event.action
                ),
            });
        }
        let received = match self.github_received(&github, &event) {
            Ok(received) => received,
            Err(error) => return Err(self.refuse_github_delivery(error).await),
        };
        let settings = Arc::clone(&self.settings);
        let clock = self.clock.clone();
        let request = self
            .write_emitting(move |tx, _emitter| {
                let now = clock.now();
                if let Some(existing) = tx.find_github_request(
                    &received.callback_url,
                    &received.github_environment,
                    received.deployment_id,
                )? {
                    return Ok(Ok(existing));
                }
                let mut request = GithubRequest {
                    id: new_id("ghr", now),
                    received_at: now,
                    github_environment: received.github_environment,
                    environment: received.environment,
                    service: received.service,
                    release_id: received.release_id,
                    action: github.action,
                    installation_id: received.installation_id,
                    deployment_id: received.deployment_id,
                    callback_url: received.callback_url,
                    sender: received.sender,
                    state: GithubRequestState::Pending,
                    reason: ReasonCode::Recorded,
                    message: String::new(),
                    commented: false,
                    next_decision_at: Some(now),
                    decided_at: None,
                    expires_at: now.plus_millis(GITHUB_WAITS_MS),
                    audit_seq: 0,
                };
                // Stored first: the answers queued while deciding refer to it. (Writes are
                // serialized, so the lookup above already saw any twin; if one appeared
                // anyway, it is the answer.)
                if !tx.insert_github_request(&request)? {
                    let twin = tx.find_github_request(
                        &request.callback_url,
                        &request.github_environment,
                        request.deployment_id,
                    )?;
                    return Ok(twin.ok_or_else(|| {
                        AppError::Unavailable(
                            "a GitHub request vanished while being stored".to_owned(),
                        )
                    }));
                }
                decide_request_in(tx, &settings, &mut request, true, now)?;
                tx.update_github_request(&request)?;
                Ok(Ok(request))
            })
            .await?;
        let message = match request.state {
            GithubRequestState::Pending => format!(
                "waiting: {}: {} (decided again when the gate changes, and at least every minute)",
                request.reason, request.message
            ),
            state => format!("{state}: {}: {}", request.reason, request.message),
        };
        Ok(GithubReceipt {
            accepted: true,
            request: Some(request),
            message,
        })
    }

    /// Decides pending requests again: every one with `everything` (the gate's state may have
    /// changed), otherwise those due by `now` (at least every minute). Returns how many were
    /// decided; each in its own transaction, which takes the request only while it is still
    /// pending.
    pub async fn redecide_github_requests(
        &self,
        now: Timestamp,
        everything: bool,
    ) -> Result<usize, AppError> {
        if self.settings.github.is_none() {
            return Ok(0);
        }
        // With `everything`, the oldest pending ones, and also those due: a steady stream of
        // events must not starve a request beyond the first batch of its minute.
        let pending = self
            .store
            .read(move |tx| {
                let mut pending = tx.pending_github_requests(Some(now), REDECIDE_BATCH)?;
                if everything {
                    for request in tx.pending_github_requests(None, REDECIDE_BATCH)? {
                        if !pending.iter().any(|p| p.id == request.id) {
                            pending.push(request);
                        }
                    }
                }
                Ok(pending)
            })
            .await?;
        let mut decided = 0;
        for found in pending {
            let settings = Arc::clone(&self.settings);
            let clock = self.clock.clone();
            let moved = self
                .write_emitting(move |tx, _emitter| {
                    let Some(mut request) = tx.get_github_request(&found.id)? else {
                        return Ok(Ok(false));
                    };
                    if request.state != GithubRequestState::Pending {
                        return Ok(Ok(false));
                    }
                    decide_request_in(tx, &settings, &mut request, false, clock.now())?;
                    tx.update_github_request(&request)?;
                    Ok(Ok(request.state != GithubRequestState::Pending))
                })
                .await?;
            decided += usize::from(moved);
        }
        Ok(decided)
    }

    /// What a pending request's answer depends on besides the clock, in one value: the newest
    /// event (overrides, freezes, lockdown, rollbacks, canaries announce themselves), the mode,
    /// the threat level and the open incidents (which change without an event). When it
    /// differs from the last look, every pending request is decided again.
    pub async fn gate_fingerprint(&self) -> Result<String, AppError> {
        Ok(self
            .store
            .read(|tx| {
                let events = tx.last_event_seq()?;
                let state = tx.gate_state()?;
                let incidents: Vec<String> = tx
                    .open_incidents()?
                    .into_iter()
                    .map(|i| format!("{}:{}", i.id, i.severity))
                    .collect();
                Ok(format!(
                    "{events}|{}|{}|{}",
                    state.mode,
                    state.threat_level,
                    incidents.join(",")
                ))
            })
            .await?)
    }

    /// `GET /integrations/github/pending`: requests still waiting, oldest first.
    pub async fn github_pending(&self) -> Result<GithubPendingList, AppError> {
        let mut requests = self
            .store
            .read(|tx| tx.pending_github_requests(None, PENDING_LIST + 1))
            .await?;
        let truncated = requests.len() > PENDING_LIST as usize;
        requests.truncate(PENDING_LIST as usize);
        Ok(GithubPendingList {
            requests,
            truncated,
        })
    }

    /// One attempt at a GitHub callback: an installation token for the app, then the comment
    /// or the answer posted to the request's `deployment_callback_url`.
    pub(crate) async fn deliver_github_callback(
        &self,
        entry: &OutboxEntry,
    ) -> Result<Attempt, AppError> {
        let Some(github) = self.settings.github.clone() else {
            return Ok(Attempt::Refused(
                "the GitHub integration is no longer configured".to_owned(),
            ));
        };
        let id = entry.github_request_id.clone().unwrap_or_default();
        let request = self
            .store
            .read(move |tx| tx.get_github_request(&id))
            .await?;
        let Some(request) = request else {
            return Ok(Attempt::Refused(
                "the GitHub request does not exist".to_owned(),
            ));
        };
        if self.clock.now() >= request.expires_at {
            return Ok(Attempt::Refused(
                "GitHub stopped waiting for this request (30 days)".to_owned(),
            ));
        }
        let body = match (entry.target.as_str(), request.state) {
            // A wait's comment that did not get through before the final answer: the answer
            // says more, and a "waiting" note after it would mislead.
            (COMMENT, state) if state != GithubRequestState::Pending => {
                return Ok(Attempt::Delivered(format!(
                    "not sent: the request is {state} now"
                )));
            }
            (COMMENT, _) => json!({
                "environment_name": request.github_environment,
                "comment": shorten(&format!(
                    "deploy-safety is waiting: {}: {} — it decides again when the gate changes, and at least every minute.",
                    request.reason, request.message
                ), 900),
            }),
            (ANSWER, state @ (GithubRequestState::Approved | GithubRequestState::Rejected)) => {
                json!({
                    "environment_name": request.github_environment,
                    "state": state.as_str(),
                    "comment": shorten(&format!(
                        "deploy-safety {state}: {}: {} (audit seq {})",
                        request.reason, request.message, request.audit_seq
                    ), 900),
                })
            }
            (target, state) => {
                return Ok(Attempt::Refused(format!(
                    "nothing to send for `{target}` while the request is {state}"
                )));
            }
        };
        let token = match self
            .installation_token(&github, request.installation_id)
            .await
        {
            Ok(token) => token,
            Err(error) => return Ok(Attempt::Retry(error)),
        };
        let response = self
            .http
            .post(&request.callback_url)
            .timeout(github.timeout)
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header("user-agent", "deploy-safety")
            .json(&body)
            .send()
            .await;
        Ok(match response {
            Ok(response) => {
                let status = response.status().as_u16();
                match status {
                    200..=299 => Attempt::Delivered(format!("GitHub answered HTTP {status}")),
                    408 | 429 | 500.. => Attempt::Retry(format!("GitHub answered HTTP {status}")),
                    _ => Attempt::Refused(format!("GitHub answered HTTP {status}")),
                }
            }
            Err(error) if error.is_timeout() => Attempt::Retry(format!(
                "GitHub did not answer within {} ms",
                github.timeout.as_millis()
            )),
            Err(error) => Attempt::Retry(crate::checks::root_cause(&error)),
        })
    }

    /// An installation access token (`POST {api}/app/installations/{id}/access_tokens`,
    /// authenticated by the app's JWT). Asked for per callback: callbacks are rare, and a
    /// token is never kept beyond its use.
    async fn installation_token(
        &self,
        github: &GithubSettings,
        installation: u64,
    ) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Token {
            token: String,
        }
        let jwt = github
            .private_key
            .app_jwt(&github.app_id, self.clock.now())?;
        let url = format!(
            "{}/app/installations/{installation}/access_tokens",
            github.api_url
        );
        let response = self
            .http
            .post(&url)
            .timeout(github.timeout)
            .bearer_auth(jwt)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header("user-agent", "deploy-safety")
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot get an installation token: {}",
                    crate::checks::root_cause(&e)
                )
            })?;
        let status = response.status().as_u16();
        if status != 201 && status != 200 {
            return Err(format!(
                "GitHub refused an installation token for installation {installation}: HTTP {status}"
            ));
        }
        response
            .json::<Token>()
            .await
            .map(|t| t.token)
            .map_err(|e| format!("GitHub's installation token answer is not readable: {e}"))
    }
}
