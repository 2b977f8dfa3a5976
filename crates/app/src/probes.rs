//! Health probes (SPEC §8): defined in the settings file or through the API, checked on their
//! schedule by the engine, and added up into the service's overall health.

use std::time::Duration;

use deploy_safety_api_types::{
    CreateProbeRequest, HealthReport, LeaderView, ProbeList, ProbeSummary, ProbeView, ReplicaHealth,
};
use deploy_safety_core::{
    AuditDecision, AuditDraft, CheckOutcome, Name, OverallHealth, Probe, ProbeDefinition,
    ProbeHealth, ProbeKind, ProbeResult, ProbeSource, ProbeState, ReasonCode, Role, StatusRange,
    Timestamp, overall_health,
};
use deploy_safety_store::{StoreError, Tx};
use serde_json::json;

use crate::audit::{Refusal, entry, refuse};
use crate::checks::{self, CheckReport};
use crate::gate::new_id;
use crate::{App, AppError, Caller, TxResult};

/// Results kept per probe: the history is bounded by count.
pub const PROBE_HISTORY: u32 = 100;
/// The built-in database probe.
pub const DATABASE_PROBE: &str = "database";

const DEFAULT_TIMEOUT_MS: u32 = 2_000;
const DEFAULT_INTERVAL_MS: u32 = 10_000;
const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "OPTIONS"];

/// Roles that may add and remove probes: the ones that run production. Everyone may read.
fn may_manage_probes(role: Role) -> bool {
    matches!(role, Role::SecurityTeam | Role::EngLead | Role::OncallLead)
}

/// Checks a probe request and fills in the defaults, naming the field at fault.
pub fn probe_definition(request: &CreateProbeRequest) -> Result<ProbeDefinition, AppError> {
    let name = Name::parse(&request.name).map_err(AppError::invalid_text("name"))?;
    let absent = |field: &str, value: bool| {
        if value {
            Err(AppError::invalid(
                field,
                format!("does not apply to a {} probe", request.kind),
            ))
        } else {
            Ok(())
        }
    };
    let (target, method, expected_status) = match request.kind {
        ProbeKind::Http => {
            absent("address", request.address.is_some())?;
            let url = request
                .url
                .as_deref()
                .ok_or_else(|| AppError::invalid("url", "an http probe needs a url"))?;
            check_url("url", url)?;
            let method = request
                .method
                .as_deref()
                .unwrap_or("GET")
                .to_ascii_uppercase();
            if !HTTP_METHODS.contains(&method.as_str()) {
                return Err(AppError::invalid(
                    "method",
                    format!("must be one of {}", HTTP_METHODS.join(", ")),
                ));
            }
            let expected = match request.expected_status.as_deref() {
                Some(text) => {
                    StatusRange::parse(text).map_err(AppError::invalid_text("expectedStatus"))?
                }
                None => StatusRange::SUCCESS,
            };
            (url.to_owned(), Some(method), Some(expected))
        }
        ProbeKind::Tcp => {
            absent("url", request.url.is_some())?;
            absent("method", request.method.is_some())?;
            absent("expectedStatus", request.expected_status.is_some())?;
            let address = request
                .address
                .as_deref()
                .ok_or_else(|| AppError::invalid("address", "a tcp probe needs host:port"))?;
            check_address(address)?;
            (address.to_owned(), None, None)
        }
        ProbeKind::Database => {
            return Err(AppError::invalid(
                "kind",
                "the database probe is built in; probes are http or tcp",
            ));
        }
    };
    let interval_ms = request.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
    if !(1_000..=3_600_000).contains(&interval_ms) {
        return Err(AppError::invalid(
            "intervalMs",
            "must be from 1000 to 3600000",
        ));
    }
    let timeout_ms = request
        .timeout_ms
        .unwrap_or(DEFAULT_TIMEOUT_MS.min(interval_ms));
    if !(10..=interval_ms).contains(&timeout_ms) {
        return Err(AppError::invalid(
            "timeoutMs",
            format!("must be from 10 to the interval ({interval_ms})"),
        ));
    }
    let threshold = |field: &str, value: Option<u32>, default: u32| match value.unwrap_or(default) {
        n @ 1..=100 => Ok(n),
        _ => Err(AppError::invalid(field, "must be from 1 to 100")),
    };
    Ok(ProbeDefinition {
        name: name.into_string(),
        kind: request.kind,
        target,
        method,
        expected_status,
        timeout_ms,
        interval_ms,
        failure_threshold: threshold(
            "failureThreshold",
            request.failure_threshold,
            DEFAULT_FAILURE_THRESHOLD,
        )?,
        success_threshold: threshold(
            "successThreshold",
            request.success_threshold,
            DEFAULT_SUCCESS_THRESHOLD,
        )?,
        critical: request.critical.unwrap_or(false),
    })
}

/// An absolute http(s) URL with a host.
pub fn check_url(field: &str, url: &str) -> Result<(), AppError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| AppError::invalid(field, format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(AppError::invalid(
            field,
            "must be an http:// or https:// URL with a host",
        ));
    }
    Ok(())
}

fn check_address(address: &str) -> Result<(), AppError> {
    let invalid = || AppError::invalid("address", "must be host:port, e.g. 127.0.0.1:6379");
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if host.is_empty() || port == 0 || host.chars().any(char::is_whitespace) {
        return Err(invalid());
    }
    Ok(())
}

fn new_probe(definition: ProbeDefinition, source: ProbeSource, by: &str, now: Timestamp) -> Probe {
    Probe {
        id: new_id("prb", now),
        definition,
        source,
        created_at: now,
        created_by: by.to_owned(),
        state: ProbeState::default(),
        // A new probe is checked at once.
        next_check_at: now,
    }
}

fn database_probe_definition() -> ProbeDefinition {
    ProbeDefinition {
        name: DATABASE_PROBE.to_owned(),
        kind: ProbeKind::Database,
        target: "database".to_owned(),
        method: None,
        expected_status: None,
        timeout_ms: 2_000,
        interval_ms: 10_000,
        failure_threshold: 2,
        success_threshold: 1,
        critical: true,
    }
}

fn system_entry(action: &str, details: serde_json::Value) -> AuditDraft {
    AuditDraft {
        principal: "system".to_owned(),
        role: None,
        action: action.to_owned(),
        environment: None,
        decision: AuditDecision::Recorded,
        reason: ReasonCode::Recorded.as_str().to_owned(),
        details,
    }
}

fn view(probe: Probe, now: Timestamp, history: Option<Vec<ProbeResult>>) -> ProbeView {
    ProbeView {
        stale: probe.is_stale(now),
        probe,
        history,
    }
}

/// Finds a probe by id, or by name (the runbook's `GET /probes/database`).
fn find(tx: &mut dyn Tx, key: &str) -> Result<Option<Probe>, StoreError> {
    match tx.get_probe(key)? {
        Some(probe) => Ok(Some(probe)),
        None => tx.probe_by_name(key),
    }
}

impl App {
    /// At start: makes the stored probes match the settings file (adds, updates and removes
    /// `config` probes) and makes sure the built-in database probe exists. Changes are audited.
    pub async fn sync_probes(&self, configured: Vec<ProbeDefinition>) -> Result<(), AppError> {
        let clock = self.clock.clone();
        self.store
            .write(move |tx| -> TxResult<()> {
                let now = clock.now();
                let mut wanted = configured;
                wanted.push(database_probe_definition());
                for definition in &wanted {
                    let source = if definition.kind == ProbeKind::Database {
                        ProbeSource::Builtin
                    } else {
                        ProbeSource::Config
                    };
                    match tx.probe_by_name(&definition.name)? {
                        None => {
                            let probe = new_probe(definition.clone(), source, "system", now);
                            tx.insert_probe(&probe)?;
                            // The built-in probe is part of the product, not anyone's change.
                            if source == ProbeSource::Config {
                                tx.append_audit(
                                    system_entry(
                                        "probe.create",
                                        json!({ "probe": probe, "source": source }),
                                    ),
                                    now,
                                )?;
                            }
                        }
                        Some(existing) if existing.source != source => {
                            return Ok(Err(AppError::Conflict {
                                reason: None,
                                message: format!(
                                    "probe `{}` in the settings file has the name of a probe created through the API; rename one",
                                    definition.name
                                ),
                                hints: Vec::new(),
                            }));
                        }
                        Some(existing) if existing.definition != *definition => {
                            tx.update_probe_definition(&existing.id, definition)?;
                            tx.append_audit(
                                system_entry(
                                    "probe.update",
                                    json!({ "probeId": existing.id, "from": existing.definition, "to": definition }),
                                ),
                                now,
                            )?;
                        }
                        Some(_) => {}
                    }
                }
                for stale in tx.list_probes()? {
                    let still_wanted = wanted.iter().any(|d| d.name == stale.definition.name);
                    if stale.source == ProbeSource::Config && !still_wanted {
                        tx.delete_probe(&stale.id)?;
                        tx.append_audit(
                            system_entry(
                                "probe.delete",
                                json!({ "probeId": stale.id, "name": stale.definition.name, "source": "config" }),
                            ),
                            now,
                        )?;
                    }
                }
                Ok(Ok(()))
            })
            .await?
    }

    /// `POST /probes`.
    pub async fn create_probe(
        &self,
        caller: &Caller,
        request: CreateProbeRequest,
    ) -> Result<ProbeView, AppError> {
        const ACTION: &str = "probe.create";
        let definition = probe_definition(&request)?;
        let caller = caller.clone();
        let clock = self.clock.clone();
        self.store
            .write(move |tx| {
                let now = clock.now();
                if !may_manage_probes(caller.role) {
                    let refusal = Refusal {
                        reason: ReasonCode::RoleNotPermitted,
                        message: format!("role {} may not add probes", caller.role),
                        hints: vec!["Roles that may: security-team, eng-lead, oncall-lead.".into()],
                    };
                    return refuse(tx, &caller, ACTION, None, refusal, now);
                }
                if tx.probe_by_name(&definition.name)?.is_some() {
                    return Ok(Err(AppError::Conflict {
                        reason: None,
                        message: format!("a probe named `{}` exists", definition.name),
                        hints: Vec::new(),
                    }));
                }
                let probe = new_probe(definition, ProbeSource::Api, &caller.name, now);
                tx.insert_probe(&probe)?;
                tx.append_audit(
                    entry(
                        &caller,
                        ACTION,
                        None,
                        AuditDecision::Allowed,
                        ReasonCode::Allowed,
                        json!({ "probe": probe }),
                    ),
                    now,
                )?;
                Ok(Ok(view(probe, now, None)))
            })
            .await?
    }

    /// `DELETE /probes/{id}`: API probes only; the settings file's and the built-in stay.
    pub async fn delete_probe(&self, caller: &Caller, key: &str) -> Result<ProbeView, AppError> {
        const ACTION: &str = "probe.delete";
        let caller = caller.clone();
        let key = key.to_owned();
        let clock = self.clock.clone();
        self.store
            .write(move |tx| {
                let now = clock.now();
                if !may_manage_probes(caller.role) {
                    let refusal = Refusal {
                        reason: ReasonCode::RoleNotPermitted,
                        message: format!("role {} may not remove probes", caller.role),
                        hints: vec!["Roles that may: security-team, eng-lead, oncall-lead.".into()],
                    };
                    return refuse(tx, &caller, ACTION, None, refusal, now);
                }
                let Some(probe) = find(tx, &key)? else {
                    return Ok(Err(AppError::NotFound(format!("no probe `{key}`"))));
                };
                if probe.source != ProbeSource::Api {
                    return Ok(Err(AppError::Conflict {
                        reason: Some(ReasonCode::NotManagedByApi),
                        message: format!(
                            "probe `{}` is {}; it cannot be removed through the API",
                            probe.definition.name,
                            match probe.source {
                                ProbeSource::Builtin => "built in",
                                _ => "defined in the settings file",
                            }
                        ),
                        hints: Vec::new(),
                    }));
                }
                tx.delete_probe(&probe.id)?;
                tx.append_audit(
                    entry(
                        &caller,
                        ACTION,
                        None,
                        AuditDecision::Allowed,
                        ReasonCode::Allowed,
                        json!({ "probeId": probe.id, "name": probe.definition.name }),
                    ),
                    now,
                )?;
                Ok(Ok(view(probe, now, None)))
            })
            .await?
    }

    /// `GET /probes`.
    pub async fn list_probes(&self) -> Result<ProbeList, AppError> {
        let now = self.clock.now();
        let probes = self.store.read(|tx| tx.list_probes()).await?;
        Ok(ProbeList {
            probes: probes.into_iter().map(|p| view(p, now, None)).collect(),
        })
    }

    /// `GET /probes/{id}` (or its name): detail and recent history, newest first.
    pub async fn get_probe(&self, key: &str, history: u32) -> Result<ProbeView, AppError> {
        let now = self.clock.now();
        let lookup = key.to_owned();
        let found = self
            .store
            .read(move |tx| {
                let Some(probe) = find(tx, &lookup)? else {
                    return Ok(None);
                };
                let results = tx.probe_results(&probe.id, history)?;
                Ok(Some((probe, results)))
            })
            .await?;
        let (probe, results) =
            found.ok_or_else(|| AppError::NotFound(format!("no probe `{key}`")))?;
        Ok(view(probe, now, Some(results)))
    }

    /// Probes due for a check at `now`.
    pub async fn due_probes(&self, now: Timestamp) -> Result<Vec<Probe>, AppError> {
        Ok(self.store.read(move |tx| tx.due_probes(now)).await?)
    }

    /// Performs one check of `probe` (network or database I/O, bounded by its timeout).
    pub async fn check_probe(&self, probe: &Probe) -> CheckReport {
        let timeout = Duration::from_millis(u64::from(probe.definition.timeout_ms));
        let d = &probe.definition;
        match d.kind {
            ProbeKind::Http => {
                checks::http(
                    &self.http,
                    d.method.as_deref().unwrap_or("GET"),
                    &d.target,
                    d.expected_status.unwrap_or(StatusRange::SUCCESS),
                    timeout,
                )
                .await
            }
            ProbeKind::Tcp => checks::tcp(&d.target, timeout).await,
            ProbeKind::Database => self.check_database(timeout).await,
        }
    }

    /// The database probe: a write must commit (durably) within the timeout.
    async fn check_database(&self, timeout: Duration) -> CheckReport {
        let started = std::time::Instant::now();
        let clock = self.clock.clone();
        let write = self.store.write(move |tx| tx.touch_heartbeat(clock.now()));
        let (outcome, message) = match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => (CheckOutcome::Success, "a write committed".to_owned()),
            Ok(Err(error)) => {
                tracing::warn!(%error, "database probe: the write failed");
                (CheckOutcome::Failure, "a write failed".to_owned())
            }
            Err(_) => (
                CheckOutcome::Failure,
                format!("a write did not commit within {} ms", timeout.as_millis()),
            ),
        };
        CheckReport {
            outcome,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            message,
        }
    }

    /// Records a check of `probe` that started at `started_at`: its new state, its next check
    /// (one interval after this one started, or now if the check took longer), its history.
    pub async fn record_probe_check(
        &self,
        probe: &Probe,
        started_at: Timestamp,
        report: CheckReport,
    ) -> Result<ProbeState, AppError> {
        let id = probe.id.clone();
        let thresholds = probe.definition.thresholds();
        let interval = i64::from(probe.definition.interval_ms);
        let clock = self.clock.clone();
        let recorded = self
            .store
            .write(move |tx| {
                let now = clock.now();
                // Read the state again: the probe may have been changed or deleted meanwhile.
                let Some(current) = tx.get_probe(&id)? else {
                    return Ok(None);
                };
                let state = current
                    .state
                    .observe(report.outcome, report.error(), thresholds, now);
                let next = started_at.plus_millis(interval).max(now);
                let result = ProbeResult {
                    at: now,
                    outcome: report.outcome,
                    latency_ms: report.latency_ms,
                    error: report.error().map(str::to_owned),
                };
                tx.record_probe_check(&id, &state, next, &result, PROBE_HISTORY)?;
                Ok(Some(state))
            })
            .await?;
        recorded.ok_or_else(|| AppError::NotFound(format!("probe {} was deleted", probe.id)))
    }

    /// `GET /health`: overall health from every probe's state. If the probes cannot even be
    /// read, the database is down and the service is unhealthy.
    pub async fn health(&self) -> HealthReport {
        let now = self.clock.now();
        match self.store.read(|tx| tx.list_probes()).await {
            Ok(probes) => {
                let summaries: Vec<ProbeSummary> = probes
                    .into_iter()
                    .map(|p| ProbeSummary {
                        stale: p.is_stale(now),
                        id: p.id,
                        name: p.definition.name,
                        kind: p.definition.kind,
                        critical: p.definition.critical,
                        status: p.state.status,
                        last_checked_at: p.state.last_checked_at,
                        last_error: p.state.last_error,
                    })
                    .collect();
                let overall = overall_health(summaries.iter().map(|s| ProbeHealth {
                    critical: s.critical,
                    status: s.status,
                    stale: s.stale,
                }));
                HealthReport {
                    overall_health: overall,
                    probes: Some(summaries),
                    replica: Some(self.replica_health(true).await),
                }
            }
            Err(error) => {
                tracing::error!(%error, "health: the probes cannot be read");
                HealthReport {
                    overall_health: OverallHealth::Unhealthy,
                    probes: Some(vec![ProbeSummary {
                        id: String::new(),
                        name: DATABASE_PROBE.to_owned(),
                        kind: ProbeKind::Database,
                        critical: true,
                        status: deploy_safety_core::ProbeStatus::Failing,
                        stale: false,
                        last_checked_at: Some(now),
                        last_error: Some("the database does not answer".to_owned()),
                    }]),
                    replica: Some(self.replica_health(false).await),
                }
            }
        }
    }
}

impl App {
    async fn replica_health(&self, database_reachable: bool) -> ReplicaHealth {
        let leader = match self.store.leader().await {
            Ok(leader) => leader.map(|l| LeaderView {
                replica: l.replica,
                since: Timestamp::from_unix_millis(l.since_ms),
                heartbeat_age_ms: l.heartbeat_age_ms,
                fresh: l.fresh,
            }),
            Err(error) => {
                tracing::warn!(%error, "health: cannot read the leader");
                None
            }
        };
        ReplicaHealth {
            name: self.settings.replica.clone(),
            database: if self.store.describe().starts_with("sqlite") {
                "sqlite"
            } else {
                "postgres"
            }
            .to_owned(),
            database_reachable,
            leading: self.store.is_leader(),
            leader,
        }
    }
}

/// The overall health as the gates see it: computed from the probes in `tx` at `now`.
pub(crate) fn overall_health_in(
    tx: &mut dyn Tx,
    now: Timestamp,
) -> Result<OverallHealth, StoreError> {
    let probes = tx.list_probes()?;
    Ok(overall_health(probes.iter().map(|p| ProbeHealth {
        critical: p.definition.critical,
        status: p.state.status,
        stale: p.is_stale(now),
    })))
}
