//! Release validation (SPEC §7): start a validation, run its gates, read the outcome.
//!
//! A run is a record of one moment: once finished it never changes, and running again adds the
//! next run. Concurrent requests to run the same validation share one run: the first claims
//! it, the others wait for its outcome.

use std::time::{Duration, Instant};

use deploy_safety_api_types::{
    StartValidationRequest, ValidationList, ValidationListQuery, ValidationView,
};
use deploy_safety_core::{
    AuditDecision, BUILT_IN_GATES, CheckOutcome, CheckStatus, GateKind, GateResult, ReasonCode,
    ReleaseId, SOAK_GATE, StatusRange, Timestamp, Validation, ValidationInputs, ValidationRun,
    ValidationStatus, built_in_gate, overall_status,
};
use deploy_safety_store::{StoreError, Tx};
use serde_json::json;

use crate::audit::entry;
use crate::checks;
use crate::gate::new_id;
use crate::probes::overall_health_in;
use crate::{App, AppError, Caller, TxResult};

const DEFAULT_LIST: u32 = 50;
const MAX_LIST: u32 = 200;
/// A run still marked running this long after its slowest gate's timeout was abandoned (its
/// server stopped): the next request fails it and starts a new one.
const ABANDON_GRACE_MS: i64 = 60_000;
/// How often a request waiting for another request's run looks again.
const JOIN_POLL: Duration = Duration::from_millis(25);

/// An operator's HTTP release gate (from the settings file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGate {
    pub name: String,
    /// May contain `{releaseId}` and `{environment}`, replaced (URL-encoded) at each run.
    pub url: String,
    pub method: String,
    pub expected_status: StatusRange,
    pub timeout: Duration,
}

impl HttpGate {
    fn url_for(&self, release_id: &str, environment: &str) -> String {
        self.url
            .replace("{releaseId}", &encode(release_id))
            .replace("{environment}", &encode(environment))
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Checks an HTTP gate from the settings file.
pub fn check_http_gate(gate: &HttpGate) -> Result<(), AppError> {
    deploy_safety_core::Name::parse(&gate.name).map_err(AppError::invalid_text("name"))?;
    if BUILT_IN_GATES.contains(&gate.name.as_str()) || gate.name == SOAK_GATE {
        return Err(AppError::invalid(
            "name",
            format!("`{}` is a built-in gate", gate.name),
        ));
    }
    crate::probes::check_url("url", &gate.url_for("v0", "staging"))
}

enum Claim {
    /// This request runs the gates, as run `number`.
    Run {
        validation: Validation,
        number: u32,
        started_at: Timestamp,
    },
    /// Another request is running them; wait for run `number`.
    Join { number: u32 },
}

impl App {
    /// The built-in gates this server runs: [`BUILT_IN_GATES`], and `soak` where production
    /// needs a soak.
    fn built_in_gates(&self) -> Vec<&'static str> {
        let mut gates = BUILT_IN_GATES.to_vec();
        if self.settings.soak.required_before_production {
            gates.push(SOAK_GATE);
        }
        gates
    }

    fn gate_names(&self) -> Vec<(String, GateKind)> {
        self.built_in_gates()
            .into_iter()
            .map(|name| (name.to_owned(), GateKind::Builtin))
            .chain(
                self.settings
                    .http_gates
                    .iter()
                    .map(|g| (g.name.clone(), GateKind::Http)),
            )
            .collect()
    }

    fn pending_gates(&self) -> Vec<GateResult> {
        self.gate_names()
            .into_iter()
            .map(|(name, kind)| GateResult {
                name,
                kind,
                status: CheckStatus::Pending,
                message: "not run yet".to_owned(),
                duration_ms: 0,
            })
            .collect()
    }

    fn view(&self, validation: Validation, runs: Vec<ValidationRun>) -> ValidationView {
        let (status, gates) = match runs.last() {
            Some(run) => (run.status, run.gates.clone()),
            None => (ValidationStatus::Pending, self.pending_gates()),
        };
        ValidationView {
            validation,
            status,
            gates,
            runs,
        }
    }

    /// `POST /validations/start`.
    pub async fn start_validation(
        &self,
        caller: &Caller,
        request: StartValidationRequest,
    ) -> Result<ValidationView, AppError> {
        let release =
            ReleaseId::parse(&request.release_id).map_err(AppError::invalid_text("releaseId"))?;
        let service = crate::parse_service("service", request.service.as_deref())?;
        let environment = self.environment("environment", request.environment)?.name;
        let caller = caller.clone();
        let clock = self.clock.clone();
        let validation = self
            .store
            .write(move |tx| {
                let now = clock.now();
                let validation = Validation {
                    id: new_id("val", now),
                    release_id: release.into_string(),
                    environment,
                    service,
                    created_at: now,
                    created_by: caller.name.clone(),
                };
                tx.insert_validation(&validation)?;
                tx.append_audit(
                    entry(
                        &caller,
                        "validation.start",
                        Some(validation.environment),
                        AuditDecision::Allowed,
                        ReasonCode::Allowed,
                        json!({ "validationId": validation.id, "releaseId": validation.release_id }),
                    ),
                    now,
                )?;
                Ok(validation)
            })
            .await?;
        Ok(self.view(validation, Vec::new()))
    }

    /// `POST /validations/{id}/run`: runs every gate and returns the outcome. If a run of this
    /// validation is in progress, waits for it instead of starting another.
    pub async fn run_validation(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<ValidationView, AppError> {
        match self.claim_run(caller, id).await? {
            Claim::Join { number } => self.wait_for_run(id, number).await,
            Claim::Run {
                validation,
                number,
                started_at,
            } => {
                // The run is finished by a task of its own: a request that times out or
                // disconnects does not leave its run half done for others to wait on.
                let app = self.clone();
                let caller = caller.clone();
                let id = validation.id.clone();
                let run = tokio::spawn(async move {
                    let outcome = app
                        .execute_run(&caller, validation, number, started_at)
                        .await;
                    if outcome.is_err() {
                        app.discard_run(&id, number).await;
                    }
                    outcome
                });
                run.await
                    .map_err(|e| AppError::Internal(format!("a validation run panicked: {e}")))?
            }
        }
    }

    /// Undoes the claim of a run that could not finish (e.g. its outcome could not be
    /// recorded): the validation is as it was, and the next request runs it again.
    async fn discard_run(&self, id: &str, number: u32) {
        let key = id.to_owned();
        if let Err(error) = self
            .store
            .write(move |tx| tx.discard_validation_run(&key, number))
            .await
        {
            tracing::warn!(validation = id, run = number, %error, "cannot undo an unfinished run; it will be abandoned");
        }
    }

    /// How long a run may take before it counts as abandoned.
    fn abandon_after_ms(&self) -> i64 {
        let slowest = self
            .settings
            .http_gates
            .iter()
            .map(|g| i64::try_from(g.timeout.as_millis()).unwrap_or(i64::MAX))
            .max()
            .unwrap_or(0);
        slowest.saturating_add(ABANDON_GRACE_MS)
    }

    async fn claim_run(&self, caller: &Caller, id: &str) -> Result<Claim, AppError> {
        let caller = caller.clone();
        let id = id.to_owned();
        let clock = self.clock.clone();
        let pending = self.pending_gates();
        let abandon_after = self.abandon_after_ms();
        self.store
            .write(move |tx| -> TxResult<Claim> {
                let now = clock.now();
                let Some(validation) = tx.get_validation(&id)? else {
                    return Ok(Err(AppError::NotFound(format!(
                        "no validation with id `{id}`"
                    ))));
                };
                let runs = tx.validation_runs(&id)?;
                if let Some(running) = runs.iter().find(|r| r.status == ValidationStatus::Running) {
                    if now.millis_since(running.started_at) < abandon_after {
                        return Ok(Ok(Claim::Join {
                            number: running.number,
                        }));
                    }
                    abandon(tx, &validation, &caller, running.number, now)?;
                }
                let number = runs.last().map_or(1, |r| r.number + 1);
                tx.insert_validation_run(
                    &id,
                    &ValidationRun {
                        number,
                        status: ValidationStatus::Running,
                        started_at: now,
                        started_by: caller.name.clone(),
                        finished_at: None,
                        gates: pending,
                    },
                )?;
                Ok(Ok(Claim::Run {
                    validation,
                    number,
                    started_at: now,
                }))
            })
            .await?
    }

    async fn wait_for_run(&self, id: &str, number: u32) -> Result<ValidationView, AppError> {
        let deadline =
            Instant::now() + Duration::from_millis(self.abandon_after_ms().unsigned_abs());
        loop {
            let key = id.to_owned();
            let (validation, runs) = self
                .store
                .read(move |tx| Ok((tx.get_validation(&key)?, tx.validation_runs(&key)?)))
                .await?;
            let validation =
                validation.ok_or_else(|| AppError::NotFound(format!("no validation `{id}`")))?;
            match runs.iter().find(|r| r.number == number) {
                Some(run) if run.status != ValidationStatus::Running => {
                    return Ok(self.view(validation, runs));
                }
                Some(_) => {}
                None => {
                    return Err(AppError::Unavailable(format!(
                        "run {number} of validation {id} could not finish; run it again"
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(AppError::Unavailable(format!(
                    "run {number} of validation {id} did not finish"
                )));
            }
            tokio::time::sleep(JOIN_POLL).await;
        }
    }

    async fn execute_run(
        &self,
        caller: &Caller,
        validation: Validation,
        number: u32,
        started_at: Timestamp,
    ) -> Result<ValidationView, AppError> {
        // Every built-in gate judges the same moment: one snapshot of the gate's inputs.
        let release = validation.release_id.clone();
        let environment = self.environment("environment", validation.environment)?;
        let promotes_from = self
            .settings
            .environments
            .promotes_from(environment.name)
            .to_vec();
        let from = promotes_from.clone();
        let service = validation.service.clone();
        let now = self.clock.now();
        let (state, health, incidents, staging_passed, staging_soak_passed, frozen) = self
            .store
            .read(move |tx| {
                let svc = service.as_deref();
                let start = deploy_safety_core::GateRequest {
                    action: deploy_safety_core::Action::CanaryStart,
                    environment,
                    release_id: Some(&release),
                    service: svc,
                    start_override_id: None,
                };
                let frozen = crate::gate::freeze_stop_in(tx, &start, now)?;
                let (mut validated, mut soaked) = (false, false);
                for env in &from {
                    validated = validated || tx.release_passed_validation(&release, *env, svc)?;
                    soaked = soaked || tx.release_passed_soak(&release, *env, svc)?;
                }
                Ok((
                    tx.gate_state()?,
                    overall_health_in(tx, now)?,
                    tx.open_incidents()?,
                    validated,
                    soaked,
                    frozen,
                ))
            })
            .await?;
        let inputs = ValidationInputs {
            environment,
            promotes_from: &promotes_from,
            release_id: &validation.release_id,
            state: &state,
            health,
            open_incidents: &incidents,
            staging_passed,
            staging_soak_passed,
            frozen: frozen.as_deref(),
        };
        let mut gates: Vec<GateResult> = self
            .built_in_gates()
            .into_iter()
            .filter_map(|name| {
                let started = Instant::now();
                let verdict = built_in_gate(name, &inputs)?;
                Some(GateResult {
                    name: name.to_owned(),
                    kind: GateKind::Builtin,
                    status: verdict.status,
                    message: verdict.message,
                    duration_ms: elapsed_ms(started),
                })
            })
            .collect();
        let http_checks = self.settings.http_gates.iter().map(|gate| {
            let url = gate.url_for(&validation.release_id, environment.name.as_str());
            async move {
                let report = checks::http(
                    &self.http,
                    &gate.method,
                    &url,
                    gate.expected_status,
                    gate.timeout,
                )
                .await;
                GateResult {
                    name: gate.name.clone(),
                    kind: GateKind::Http,
                    status: match report.outcome {
                        CheckOutcome::Success => CheckStatus::Passed,
                        CheckOutcome::Failure => CheckStatus::Failed,
                    },
                    message: format!("{} {url}: {}", gate.method, report.message),
                    duration_ms: report.latency_ms,
                }
            }
        });
        // Together, not one after another: each gate has its own timeout.
        gates.extend(futures_util::future::join_all(http_checks).await);
        let status = match overall_status(gates.iter().map(|g| g.status)) {
            CheckStatus::Passed => ValidationStatus::Passed,
            _ => ValidationStatus::Failed,
        };

        let caller = caller.clone();
        let clock = self.clock.clone();
        let id = validation.id.clone();
        let finished = self
            .store
            .write(move |tx| -> TxResult<Vec<ValidationRun>> {
                let now = clock.now();
                if !tx.finish_validation_run(&id, number, status, now, &gates)? {
                    return Ok(Err(AppError::Conflict {
                        reason: None,
                        message: format!(
                            "run {number} of validation {id} was ended by another request (it took too long)"
                        ),
                        hints: Vec::new(),
                    }));
                }
                tx.append_audit(
                    entry(
                        &caller,
                        "validation.run",
                        Some(environment.name),
                        AuditDecision::Recorded,
                        if status == ValidationStatus::Passed {
                            ReasonCode::ValidationPassed
                        } else {
                            ReasonCode::ValidationFailed
                        },
                        json!({
                            "validationId": id,
                            "run": number,
                            "status": status,
                            "startedAt": started_at,
                            "gates": gates,
                        }),
                    ),
                    now,
                )?;
                Ok(Ok(tx.validation_runs(&id)?))
            })
            .await??;
        Ok(self.view(validation, finished))
    }

    /// `GET /validations/{id}`.
    pub async fn get_validation(&self, id: &str) -> Result<ValidationView, AppError> {
        let key = id.to_owned();
        let (validation, runs) = self
            .store
            .read(move |tx| Ok((tx.get_validation(&key)?, tx.validation_runs(&key)?)))
            .await?;
        let validation = validation
            .ok_or_else(|| AppError::NotFound(format!("no validation with id `{id}`")))?;
        Ok(self.view(validation, runs))
    }

    /// `GET /validations`, newest first.
    pub async fn list_validations(
        &self,
        query: ValidationListQuery,
    ) -> Result<ValidationList, AppError> {
        let limit = query.limit.unwrap_or(DEFAULT_LIST);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(AppError::invalid(
                "limit",
                format!("must be from 1 to {MAX_LIST}"),
            ));
        }
        let release = query.release_id;
        let environment = self.environment_filter("environment", query.environment)?;
        let service = crate::parse_service("service", query.service.as_deref())?;
        let found = self
            .store
            .read(move |tx| {
                let validations = tx.list_validations(
                    release.as_deref(),
                    environment,
                    service.as_deref(),
                    limit,
                )?;
                validations
                    .into_iter()
                    .map(|v| {
                        let runs = tx.validation_runs(&v.id)?;
                        Ok((v, runs))
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await?;
        Ok(ValidationList {
            validations: found
                .into_iter()
                .map(|(v, runs)| self.view(v, runs))
                .collect(),
        })
    }
}

/// Fails a run that never finished, so it is not waited for forever.
fn abandon(
    tx: &mut dyn Tx,
    validation: &Validation,
    caller: &Caller,
    number: u32,
    now: Timestamp,
) -> Result<(), StoreError> {
    let gates = [GateResult {
        name: "run".to_owned(),
        kind: GateKind::Builtin,
        status: CheckStatus::Failed,
        message: "abandoned: the run did not finish (its server stopped?)".to_owned(),
        duration_ms: 0,
    }];
    if tx.finish_validation_run(
        &validation.id,
        number,
        ValidationStatus::Failed,
        now,
        &gates,
    )? {
        tx.append_audit(
            entry(
                caller,
                "validation.run",
                Some(validation.environment),
                AuditDecision::Recorded,
                ReasonCode::ValidationFailed,
                json!({ "validationId": validation.id, "run": number, "status": "failed",
                        "abandoned": true }),
            ),
            now,
        )?;
    }
    Ok(())
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
