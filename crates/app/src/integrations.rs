//! Deploy engines call the gate (SPEC §17): pollers (Argo Rollouts, Kargo, scripts) and
//! Flagger's webhooks. Each maps the tool's request to a gate request, decides through the one
//! decision of §3 in the transaction that records it, and answers in the tool's own terms.
//! GitHub's deployment protection rules, which answer later, are in `github.rs`.

use std::collections::BTreeMap;

use deploy_safety_api_types::{DecisionAnswer, DecisionRequest, FlaggerPayload};
use deploy_safety_core::{
    Action, AuditDecision, AuditDraft, CheckStatus, Decision, Environment, FlaggerHook,
    GateRequest, KnownEnvironment, OverrideIndex, PollAnswer, PollDecision, ReasonCode,
    ReleaseChange, ReleaseId, ReleaseRecord, ReleaseVerdict, Role, ServiceName, Severity,
    Timestamp, ValidationStatus, answer,
};
use deploy_safety_store::{StoreError, Tx};
use serde_json::json;

use crate::audit::with_auth_method;
use crate::canary::where_;
use crate::gate::decide_with_end_in;
use crate::{App, AppError, AuthMethod, Caller};

/// Flagger's settings (`[integrations.flagger]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlaggerSettings {
    /// Kubernetes namespace → environment, for canaries whose webhook names none.
    pub namespaces: BTreeMap<String, Environment>,
    /// Answer Flagger's `rollback` hook with "yes" while a critical incident is open for the
    /// environment.
    pub rollback_on_critical_incident: bool,
}

/// Who the decision is recorded for: a token's principal, or an integration that proved
/// itself another way (GitHub's signed webhook).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Principal<'a> {
    pub name: &'a str,
    pub role: Option<Role>,
    /// How it authenticated; `None`: by a webhook's signature.
    pub auth: Option<&'a AuthMethod>,
}

impl<'a> From<&'a Caller> for Principal<'a> {
    fn from(caller: &'a Caller) -> Self {
        Principal {
            name: &caller.name,
            role: Some(caller.role),
            auth: Some(&caller.auth),
        }
    }
}

impl Principal<'_> {
    /// `authenticatedBy` of its audit entries.
    fn authenticated_by(&self) -> String {
        self.auth
            .map_or_else(|| AuthMethod::SIGNATURE.to_owned(), AuthMethod::label)
    }
}

/// The verdict recorded against `release` in exactly (environment, service), if any (SPEC §17
/// `deny`): its latest validation there failed, its latest canary there was rolled back as
/// unhealthy, or a rollback away from it was executed there. Three keyed queries, whatever the
/// history's length.
pub(crate) fn release_verdict_in(
    tx: &mut dyn Tx,
    environment: Environment,
    service: Option<&str>,
    release: &str,
) -> Result<Option<ReleaseVerdict>, StoreError> {
    if let Some(validation) = tx.latest_validation_of(release, environment, service)? {
        let runs = tx.validation_runs(&validation.id)?;
        if let Some(last) = runs.iter().rev().find(|r| {
            matches!(
                r.status,
                ValidationStatus::Passed | ValidationStatus::Failed
            )
        }) && last.status == ValidationStatus::Failed
        {
            return Ok(Some(ReleaseVerdict::ValidationFailed {
                validation_id: validation.id,
                failed_gates: last
                    .gates
                    .iter()
                    .filter(|g| g.status == CheckStatus::Failed)
                    .map(|g| g.name.clone())
                    .collect(),
            }));
        }
    }
    if let Some(canary) = tx.latest_canary_of_release(environment, service, release)?
        && canary.phase == deploy_safety_core::CanaryPhase::RolledBack
    {
        return Ok(Some(ReleaseVerdict::CanaryRolledBack {
            canary_id: canary.id,
        }));
    }
    let rolled_back = tx.latest_rollback_from(environment, service, release, true)?;
    Ok(rolled_back.map(|r| ReleaseVerdict::RolledBackAway {
        rollback_id: r.id,
        to_version: r.to_version,
    }))
}

/// A deploy engine's question decided: the gate's decision, any verdict against the release,
/// and the two told as allow / wait / deny.
#[derive(Clone, Debug)]
pub(crate) struct EngineDecision {
    pub decision: Decision,
    pub verdict: Option<ReleaseVerdict>,
    pub told: PollAnswer,
}

/// Decides `request` for a deploy engine inside `tx`.
pub(crate) fn engine_answer_in(
    tx: &mut dyn Tx,
    request: &GateRequest<'_>,
    approvals: &deploy_safety_core::ApprovalPolicy,
    now: Timestamp,
) -> Result<EngineDecision, StoreError> {
    let (decision, block_ends) = decide_with_end_in(tx, request, approvals, now)?;
    let verdict = match request.release_id {
        Some(release) => {
            release_verdict_in(tx, request.environment.name, request.service, release)?
        }
        None => None,
    };
    let told = answer(
        &decision,
        verdict.as_ref(),
        block_ends,
        &where_(request.environment.name, request.service),
    );
    Ok(EngineDecision {
        decision,
        verdict,
        told,
    })
}

/// Records an engine's decision: the gate's decision in the details, the engine's answer as
/// the entry's decision and reason; with `uses_override`, an allowed decision counts as a use
/// of the override that allowed it (the engine acts on it). Returns the entry's seq.
pub(crate) fn record_engine_decision(
    tx: &mut dyn Tx,
    principal: Principal<'_>,
    audit_action: &str,
    decided: &EngineDecision,
    extra: serde_json::Value,
    uses_override: bool,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let (decision, told) = (&decided.decision, &decided.told);
    let mut entry = AuditDraft {
        principal: principal.name.to_owned(),
        role: principal.role,
        action: audit_action.to_owned(),
        environment: Some(decision.environment),
        decision: if told.decision == PollDecision::Allow {
            AuditDecision::Allowed
        } else {
            AuditDecision::Denied
        },
        reason: told.reason.as_str().to_owned(),
        details: serde_json::to_value(decision).unwrap_or_else(|_| json!({})),
    };
    if let Some(fields) = entry.details.as_object_mut() {
        fields.insert(
            "authenticatedBy".to_owned(),
            json!(principal.authenticated_by()),
        );
        fields.insert("answer".to_owned(), json!(told.decision));
        fields.insert("answerMessage".to_owned(), json!(told.message));
        if let Some(extra) = extra.as_object() {
            fields.extend(extra.clone());
        }
    }
    let seq = tx.append_audit(entry, now)?.seq;
    if uses_override
        && told.decision == PollDecision::Allow
        && let Some(override_id) = &decision.override_id
    {
        tx.record_override_use(override_id, now)?;
        tx.append_audit(
            AuditDraft {
                principal: principal.name.to_owned(),
                role: principal.role,
                action: "override.use".to_owned(),
                environment: Some(decision.environment),
                decision: AuditDecision::Recorded,
                reason: ReasonCode::Override.as_str().to_owned(),
                details: json!({ "overrideId": override_id, "usedFor": decision.action,
                                 "releaseId": decision.release_id, "by": audit_action,
                                 "authenticatedBy": principal.authenticated_by() }),
            },
            now,
        )?;
    }
    Ok(seq)
}

/// The active start override covering (environment, service, release), which also covers
/// the steps of that canary (SPEC §4), for canaries run by a deploy engine.
fn start_override_in(
    tx: &mut dyn Tx,
    environment: Environment,
    release: Option<&str>,
    service: Option<&str>,
    now: Timestamp,
) -> Result<Option<String>, StoreError> {
    let candidates = tx.unexpired_overrides(Action::CanaryStart, environment, now)?;
    let index = OverrideIndex::new(candidates);
    Ok(index
        .covering(Action::CanaryStart, environment, release, service, now)
        .map(|o| o.id.clone()))
}

/// What Flagger gets back: a status (200 proceeds; anything else halts) and one line,
/// `CODE: message`, which Flagger puts in the canary's Kubernetes events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlaggerAnswer {
    pub status: u16,
    pub reason: ReasonCode,
    pub message: String,
    pub audit_seq: u64,
}

impl FlaggerAnswer {
    fn proceed(reason: ReasonCode, message: String, audit_seq: u64) -> Self {
        FlaggerAnswer {
            status: 200,
            reason,
            message,
            audit_seq,
        }
    }
}

/// A Flagger request mapped to ours.
#[derive(Clone, Debug)]
struct FlaggerTarget {
    environment: KnownEnvironment,
    service: String,
    release: String,
}

/// A Kubernetes object's name or namespace, as Flagger sends them: 1–63 characters of
/// `A-Z a-z 0-9 . _ -` (what the OpenAPI document states), so that `{namespace}/{name}` is a
/// valid service.
fn kubernetes_name(field: &str, text: &str) -> Result<(), AppError> {
    let valid = (1..=63).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(AppError::invalid(
            field,
            "must be a Kubernetes name: 1 to 63 characters of a-z A-Z 0-9 . _ -",
        ))
    }
}

/// What Flagger's metadata may carry besides the user's own keys (and `token`, which the
/// server reads).
const META_ENVIRONMENT: &str = "environment";
const META_SERVICE: &str = "service";
const META_RELEASE: &str = "releaseId";

/// An unknown environment's refusal, naming the setting that would make it known (SPEC §17).
fn name_the_setting(error: AppError) -> AppError {
    match error {
        AppError::Invalid { field, message } => AppError::Invalid {
            field,
            message: format!(
                "{message} (add it as an [[environments]] entry in the settings file)"
            ),
        },
        other => other,
    }
}

fn flagger_action(hook: FlaggerHook) -> String {
    format!("integration.flagger.{hook}")
}

impl App {
    /// `GET|POST /integrations/decision`: the gate's decision for a poller, told as allow /
    /// wait / deny, audited like a check (and, like a check, not a use of any override).
    pub async fn engine_decision(
        &self,
        caller: &Caller,
        request: DecisionRequest,
    ) -> Result<DecisionAnswer, AppError> {
        const ACTION: &str = "integration.decision";
        let checked = (|| {
            let release = crate::gate::optional_release(request.release_id.as_deref())?;
            let service = crate::parse_service("service", request.service.as_deref())?;
            let known = self
                .environment("environment", request.environment)
                .map_err(name_the_setting)?;
            Ok((release, service, known))
        })();
        let (release, service, known) = match checked {
            Ok(checked) => checked,
            Err(error) => return Err(self.refuse_integration_request(caller, ACTION, error).await),
        };
        let caller = caller.clone();
        let settings = std::sync::Arc::clone(&self.settings);
        let clock = self.clock.clone();
        Ok(self
            .store
            .write(move |tx| {
                let now = clock.now();
                let gate_request = GateRequest {
                    action: request.action,
                    environment: known,
                    release_id: release.as_ref().map(ReleaseId::as_str),
                    service: service.as_deref(),
                    start_override_id: None,
                };
                let decided = engine_answer_in(tx, &gate_request, &settings.approvals, now)?;
                let audit_seq = record_engine_decision(
                    tx,
                    (&caller).into(),
                    ACTION,
                    &decided,
                    json!({ "verdict": decided.verdict }),
                    false,
                    now,
                )?;
                let EngineDecision { decision, told, .. } = decided;
                Ok(DecisionAnswer {
                    decision: told.decision,
                    reason: told.reason,
                    message: told.message,
                    hints: told.hints,
                    retry_after_seconds: told.retry_after_seconds,
                    would_block: decision.would_block,
                    override_id: decision.override_id,
                    audit_seq,
                })
            })
            .await?)
    }

    /// Records a refusal of an integration's request by an authenticated caller (SPEC §17:
    /// malformed payloads are audited as refused where they were authenticated), and returns
    /// the error to answer with. Nothing else changes.
    pub async fn refuse_integration_request(
        &self,
        caller: &Caller,
        audit_action: &str,
        error: AppError,
    ) -> AppError {
        let reason = match &error {
            AppError::Invalid { field, .. } if field == "environment" => {
                ReasonCode::UnmappedEnvironment
            }
            _ => ReasonCode::InvalidRequest,
        };
        match self
            .record_integration_refusal(caller, audit_action, reason, &error.to_string())
            .await
        {
            Ok(()) => error,
            // Fail closed: a refusal that cannot be recorded is answered as unavailable.
            Err(unrecorded) => unrecorded,
        }
    }

    /// Writes the `denied` entry of a refused integration request.
    pub async fn record_integration_refusal(
        &self,
        caller: &Caller,
        audit_action: &str,
        reason: ReasonCode,
        message: &str,
    ) -> Result<(), AppError> {
        self.append_audit_entry(AuditDraft {
            principal: caller.name.clone(),
            role: Some(caller.role),
            action: audit_action.to_owned(),
            environment: None,
            decision: AuditDecision::Denied,
            reason: reason.as_str().to_owned(),
            details: with_auth_method(caller, json!({ "message": message })),
        })
        .await
        .map(|_| ())
    }

    /// Appends one entry that stands alone (a refusal, an integration's record); its seq.
    pub(crate) async fn append_audit_entry(&self, draft: AuditDraft) -> Result<u64, AppError> {
        let clock = self.clock.clone();
        Ok(self
            .store
            .write(move |tx| tx.append_audit(draft, clock.now()).map(|e| e.seq))
            .await?)
    }

    /// Maps Flagger's payload to (environment, service, release), or 400 naming the field or
    /// the setting to add.
    fn flagger_target(&self, payload: &FlaggerPayload) -> Result<FlaggerTarget, AppError> {
        kubernetes_name("name", &payload.name)?;
        kubernetes_name("namespace", &payload.namespace)?;
        let meta = &payload.metadata;
        let mapped = self
            .settings
            .flagger
            .namespaces
            .get(&payload.namespace)
            .copied();
        let environment = match (meta.get(META_ENVIRONMENT), mapped) {
            (Some(name), mapped) => {
                let named = Environment::parse(name)
                    .map_err(|e| AppError::invalid("metadata.environment", e.to_string()))
                    .and_then(|name| self.environment("metadata.environment", name))
                    .map_err(name_the_setting)?;
                // The operators' map is the authority: a Canary's author may not move a mapped
                // namespace's canary into an environment with laxer rules.
                if let Some(mapped) = mapped
                    && mapped != named.name
                {
                    return Err(AppError::invalid(
                        "metadata.environment",
                        format!(
                            "`{}` disagrees with [integrations.flagger.namespaces], which maps namespace `{}` to `{mapped}`: remove it from the metadata, or change the map",
                            named.name, payload.namespace
                        ),
                    ));
                }
                named
            }
            (None, Some(name)) => self.environment("environment", name)?,
            (None, None) => {
                return Err(AppError::invalid(
                    "environment",
                    format!(
                        "namespace `{}` maps to no environment: add `\"{}\" = \"<environment>\"` under [integrations.flagger.namespaces] in the settings file, or set `environment` in the webhook's metadata",
                        payload.namespace, payload.namespace
                    ),
                ));
            }
        };
        let service = match meta.get(META_SERVICE) {
            Some(service) => ServiceName::parse(service)
                .map_err(AppError::invalid_text("metadata.service"))?
                .into_string(),
            None => ServiceName::parse(&format!("{}/{}", payload.namespace, payload.name))
                .map_err(AppError::invalid_text("name"))?
                .into_string(),
        };
        let checksum = ReleaseId::parse(&payload.checksum)
            .map_err(AppError::invalid_text("checksum"))?
            .into_string();
        let release = match meta.get(META_RELEASE) {
            Some(release) => ReleaseId::parse(release)
                .map_err(AppError::invalid_text("metadata.releaseId"))?
                .into_string(),
            None => checksum,
        };
        Ok(FlaggerTarget {
            environment,
            service,
            release,
        })
    }

    /// `POST /integrations/flagger/{hook}` (SPEC §17).
    pub async fn flagger_hook(
        &self,
        caller: &Caller,
        hook: FlaggerHook,
        payload: FlaggerPayload,
    ) -> Result<FlaggerAnswer, AppError> {
        let audit_action = flagger_action(hook);
        let target = match self.flagger_target(&payload) {
            Ok(target) => target,
            Err(error) => {
                return Err(self
                    .refuse_integration_request(caller, &audit_action, error)
                    .await);
            }
        };
        match hook {
            FlaggerHook::ConfirmRollout => {
                self.flagger_gate(caller, hook, Action::CanaryStart, &payload, target)
                    .await
            }
            FlaggerHook::Rollout
            | FlaggerHook::ConfirmTrafficIncrease
            | FlaggerHook::ConfirmPromotion => {
                self.flagger_gate(caller, hook, Action::CanaryPromote, &payload, target)
                    .await
            }
            FlaggerHook::PreRollout => self.flagger_validation(caller, &payload, target).await,
            FlaggerHook::Rollback => self.flagger_rollback(caller, &payload, target).await,
            FlaggerHook::Event | FlaggerHook::PostRollout => {
                self.flagger_record(caller, hook, &payload, target).await
            }
        }
    }

    /// A gated Flagger hook: 200 when the gate allows, 403 naming why not. A step or
    /// promotion counts the start override of the same (environment, service, release), as
    /// our own canaries' steps do.
    async fn flagger_gate(
        &self,
        caller: &Caller,
        hook: FlaggerHook,
        action: Action,
        payload: &FlaggerPayload,
        target: FlaggerTarget,
    ) -> Result<FlaggerAnswer, AppError> {
        let caller = caller.clone();
        let settings = std::sync::Arc::clone(&self.settings);
        let clock = self.clock.clone();
        let details = json!({ "hook": hook, "canary": format!("{}/{}", payload.namespace, payload.name),
                              "phase": payload.phase });
        Ok(self
            .store
            .write(move |tx| {
                let now = clock.now();
                let env = target.environment.name;
                let release = Some(target.release.as_str());
                let service = Some(target.service.as_str());
                let start_override = if action == Action::CanaryPromote {
                    start_override_in(tx, env, release, service, now)?
                } else {
                    None
                };
                let gate_request = GateRequest {
                    action,
                    environment: target.environment,
                    release_id: release,
                    service,
                    start_override_id: start_override.as_deref(),
                };
                let decided = engine_answer_in(tx, &gate_request, &settings.approvals, now)?;
                let mut details = details;
                if let Some(fields) = details.as_object_mut() {
                    fields.insert("verdict".to_owned(), json!(decided.verdict));
                }
                let audit_seq = record_engine_decision(
                    tx,
                    (&caller).into(),
                    &flagger_action(hook),
                    &decided,
                    details,
                    true,
                    now,
                )?;
                let told = decided.told;
                Ok(FlaggerAnswer {
                    status: if told.decision == PollDecision::Allow {
                        200
                    } else {
                        403
                    },
                    reason: told.reason,
                    message: told.message,
                    audit_seq,
                })
            })
            .await?)
    }

    /// `pre-rollout`: a release validation of the release in the environment (§7) — the
    /// latest one of it there run again, or a new one — 200 when it passes, 403 naming the
    /// failed gates.
    async fn flagger_validation(
        &self,
        caller: &Caller,
        payload: &FlaggerPayload,
        target: FlaggerTarget,
    ) -> Result<FlaggerAnswer, AppError> {
        let audit_action = flagger_action(FlaggerHook::PreRollout);
        let release = target.release.clone();
        let environment = target.environment.name;
        let service = target.service.clone();
        let (key_release, key_service) = (release.clone(), service.clone());
        let existing = self
            .store
            .read(move |tx| tx.latest_validation_of(&key_release, environment, Some(&key_service)))
            .await?;
        let validation_id = match existing {
            Some(validation) => validation.id,
            None => {
                self.start_validation(
                    caller,
                    deploy_safety_api_types::StartValidationRequest {
                        release_id: release.clone(),
                        environment,
                        service: Some(service.clone()),
                    },
                )
                .await?
                .validation
                .id
            }
        };
        let view = self.run_validation(caller, &validation_id).await?;
        let passed = view.status == ValidationStatus::Passed;
        let failed: Vec<String> = view
            .gates
            .iter()
            .filter(|g| g.status == CheckStatus::Failed)
            .map(|g| format!("{} ({})", g.name, g.message))
            .collect();
        let (reason, message) = if passed {
            (
                ReasonCode::ValidationPassed,
                format!(
                    "validation {validation_id} of {release} passed in {}",
                    where_(environment, Some(&service))
                ),
            )
        } else {
            (
                ReasonCode::ValidationFailed,
                format!(
                    "validation {validation_id} of {release} failed in {}: {}",
                    where_(environment, Some(&service)),
                    failed.join("; ")
                ),
            )
        };
        let draft = AuditDraft {
            principal: caller.name.clone(),
            role: Some(caller.role),
            action: audit_action,
            environment: Some(environment),
            decision: if passed {
                AuditDecision::Allowed
            } else {
                AuditDecision::Denied
            },
            reason: reason.as_str().to_owned(),
            details: with_auth_method(
                caller,
                json!({ "validationId": validation_id, "releaseId": release, "service": service,
                             "canary": format!("{}/{}", payload.namespace, payload.name),
                             "message": message }),
            ),
        };
        let audit_seq = self.append_audit_entry(draft).await?;
        Ok(FlaggerAnswer {
            status: if passed { 200 } else { 403 },
            reason,
            message,
            audit_seq,
        })
    }

    /// `rollback`: "should I roll back now?" — yes (200) when a rollback from this release
    /// was created or executed for (environment, service), or, with
    /// `rollback_on_critical_incident`, while a critical incident is open for the
    /// environment; otherwise 409 `NO_ROLLBACK_REQUESTED`.
    async fn flagger_rollback(
        &self,
        caller: &Caller,
        payload: &FlaggerPayload,
        target: FlaggerTarget,
    ) -> Result<FlaggerAnswer, AppError> {
        let caller = caller.clone();
        let clock = self.clock.clone();
        let on_incident = self.settings.flagger.rollback_on_critical_incident;
        let canary = format!("{}/{}", payload.namespace, payload.name);
        Ok(self
            .store
            .write(move |tx| {
                let now = clock.now();
                let env = target.environment.name;
                let service = target.service.as_str();
                let place = where_(env, Some(service));
                let requested =
                    tx.latest_rollback_from(env, Some(service), &target.release, false)?;
                let incident = if on_incident {
                    tx.open_incidents()?
                        .into_iter()
                        .find(|i| i.severity == Severity::Critical && i.concerns(env))
                } else {
                    None
                };
                let (status, reason, message) = match (&requested, &incident) {
                    (Some(rollback), _) => (
                        200,
                        ReasonCode::RollbackRequested,
                        format!(
                            "rollback {} of {place} from {} to {} is {}",
                            rollback.id,
                            rollback.from_version,
                            rollback.to_version,
                            rollback.status
                        ),
                    ),
                    (None, Some(incident)) => (
                        200,
                        ReasonCode::RollbackRequested,
                        format!(
                            "critical incident {} is open for {env}: {}",
                            incident.id, incident.title
                        ),
                    ),
                    (None, None) => (
                        409,
                        ReasonCode::NoRollbackRequested,
                        format!("no rollback of {place} from this release was requested"),
                    ),
                };
                let recorded = tx.append_audit(
                    AuditDraft {
                        principal: caller.name.clone(),
                        role: Some(caller.role),
                        action: flagger_action(FlaggerHook::Rollback),
                        environment: Some(env),
                        decision: AuditDecision::Recorded,
                        reason: reason.as_str().to_owned(),
                        details: with_auth_method(
                            &caller,
                            json!({ "canary": canary, "service": service,
                                         "releaseId": target.release, "message": message,
                                         "rollbackId": requested.as_ref().map(|r| &r.id),
                                         "incidentId": incident.as_ref().map(|i| &i.id) }),
                        ),
                    },
                    now,
                )?;
                Ok(FlaggerAnswer {
                    status,
                    reason,
                    message,
                    audit_seq: recorded.seq,
                })
            })
            .await?)
    }

    /// `event` and `post-rollout`: recorded (`integration.flagger.event`); a `post-rollout`
    /// in phase `Succeeded` also enters the release in the environment's history, so later
    /// rollbacks know it ran there.
    async fn flagger_record(
        &self,
        caller: &Caller,
        hook: FlaggerHook,
        payload: &FlaggerPayload,
        target: FlaggerTarget,
    ) -> Result<FlaggerAnswer, AppError> {
        let caller = caller.clone();
        let clock = self.clock.clone();
        let canary = format!("{}/{}", payload.namespace, payload.name);
        let phase = payload.phase.clone();
        let event_message = payload.metadata.get("eventMessage").cloned();
        let event_type = payload.metadata.get("eventType").cloned();
        let succeeded = hook == FlaggerHook::PostRollout && phase == "Succeeded";
        Ok(self
            .store
            .write(move |tx| {
                let now = clock.now();
                let env = target.environment.name;
                if succeeded {
                    tx.insert_release(&ReleaseRecord {
                        environment: env,
                        service: Some(target.service.clone()),
                        release_id: target.release.clone(),
                        at: now,
                        change: ReleaseChange::FlaggerRollout,
                        reference: format!("flagger:{canary}"),
                        by: caller.name.clone(),
                    })?;
                }
                let recorded_release = succeeded;
                let message = match (&event_message, recorded_release) {
                    (Some(text), _) => text.clone(),
                    (None, true) => format!(
                        "{} succeeded in {}",
                        target.release,
                        where_(env, Some(&target.service))
                    ),
                    (None, false) => format!("{hook} in phase {phase}"),
                };
                let recorded = tx.append_audit(
                    AuditDraft {
                        principal: caller.name.clone(),
                        role: Some(caller.role),
                        action: "integration.flagger.event".to_owned(),
                        environment: Some(env),
                        decision: AuditDecision::Recorded,
                        reason: ReasonCode::Recorded.as_str().to_owned(),
                        details: with_auth_method(
                            &caller,
                            json!({ "hook": hook, "canary": canary, "phase": phase,
                                         "message": message, "eventType": event_type,
                                         "service": target.service, "releaseId": target.release,
                                         "releaseRecorded": recorded_release }),
                        ),
                    },
                    now,
                )?;
                Ok(FlaggerAnswer::proceed(
                    ReasonCode::Recorded,
                    message,
                    recorded.seq,
                ))
            })
            .await?)
    }
}
