//! `/ui/checks`: what a release must pass before production — release validations and their
//! gates, soaks in staging (the runbook's step 6), and the health probes behind `/health`.

use axum::extract::State;
use axum::response::Response;
use deploy_safety_api_types::{SoakListQuery, ValidationListQuery};
use deploy_safety_core::{ProbeSource, SoakStatus, ValidationStatus};
use maud::html;

use super::Viewer;
use super::pages::{done, environment_names, failure, names, now, service_of};
use super::render::{
    InputAttrs, api, badge, form_result, input, maybe_when, note, select, time_left, tone, when,
};
use crate::state::AppState;

/// `GET /ui/checks`.
pub(crate) async fn checks(State(state): State<AppState>, viewer: Viewer) -> Response {
    let app = &state.app;
    let loaded = tokio::try_join!(
        app.gate_status(),
        app.list_validations(ValidationListQuery {
            limit: Some(20),
            ..ValidationListQuery::default()
        }),
        app.list_soaks(SoakListQuery {
            limit: Some(20),
            ..SoakListQuery::default()
        }),
        app.list_probes(),
    );
    let (gate, validations, soaks, probes) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(e),
    };
    let now = now(&state);
    let environments = environment_names(&state);
    let body = html! {
        section id="validation-list" data-live aria-labelledby="validations-h" {
            h2 id="validations-h" { "Release validations" }
            @if validations.validations.is_empty() { p { "No validation yet." } }
            @for view in &validations.validations {
                @let v = &view.validation;
                article class="card" data-validation-id=(v.id) {
                    h3 { (badge(view.status.as_str(), tone(view.status.as_str()))) " " (v.release_id) " in " (v.environment.as_str()) " / " (service_of(v.service.as_deref())) }
                    p { "Started " (when(v.created_at)) " by " (v.created_by) " · " (view.runs.len()) " run(s)" }
                    @if !view.gates.is_empty() {
                        ul class="plain" {
                            @for gate in &view.gates {
                                li { (badge(gate.status.as_str(), tone(gate.status.as_str()))) " " strong { (gate.name) } " — " (gate.message) }
                            }
                        }
                    }
                    @if view.status != ValidationStatus::Running {
                        form class="inline run" data-api=(api(&format!("/validations/{}/run", v.id))) data-method="POST" {
                            button type="submit" { @if view.runs.is_empty() { "Run the gates" } @else { "Run again" } }
                            (form_result())
                        }
                    }
                }
            }
        }
        section class="actions" aria-labelledby="validate-h" {
            h2 id="validate-h" { "Validate a release" }
            form id="validation-start" data-api=(api("/validations/start")) data-method="POST" {
                (select("environment", "Environment", &names(&environments), None))
                (input("service", "Service (optional)", None, InputAttrs::default()))
                (input("releaseId", "Release", None, InputAttrs::required().placeholder("v1.2.3")))
                button type="submit" { "Start validation" }
                (form_result())
            }
        }
        section id="soak-list" data-live aria-labelledby="soaks-h" {
            h2 id="soaks-h" { "Soaks" }
            @if soaks.soaks.is_empty() { p { "No soak yet." } }
            @for soak in &soaks.soaks {
                article class="card" data-soak-id=(soak.id) {
                    h3 { (badge(soak.status.as_str(), tone(soak.status.as_str()))) " " (soak.release_id) " in " (soak.environment.as_str()) " / " (service_of(soak.service.as_deref())) }
                    p { "Started " (when(soak.started_at)) " by " (soak.started_by) " · "
                        @if soak.status == SoakStatus::Running { "ends " (when(soak.ends_at)) " (" (time_left(soak.ends_at, now)) ")" }
                        @else { "finished " (maybe_when(soak.finished_at)) }
                        " · " (soak.evaluations.len()) " evaluation(s)" }
                    @if let Some(result) = &soak.result { p { (result) } }
                    @if soak.status == SoakStatus::Running {
                        form class="inline abort" data-api=(api(&format!("/soaks/{}/abort", soak.id))) data-method="POST" {
                            (input("reason", "Why abort", None, InputAttrs::required()))
                            button type="submit" { "Abort soak" }
                            (form_result())
                        }
                    }
                }
            }
        }
        section class="actions" aria-labelledby="soak-h" {
            h2 id="soak-h" { "Start a soak" }
            (note("Watches the release against its thresholds (the runbook's step 6); metrics come from Prometheus or are pushed."))
            form id="soak-start" data-api=(api("/soaks")) data-method="POST" {
                (select("environment", "Environment", &names(&environments), None))
                (input("service", "Service (optional)", None, InputAttrs::default()))
                (input("releaseId", "Release", None, InputAttrs::required().placeholder("v1.2.3")))
                (input("deploymentId", "Deployment id (optional)", None, InputAttrs::default()))
                details {
                    summary { "Thresholds (optional)" }
                    (input("config.durationMs", "Duration (ms)", Some("int"), InputAttrs::default().placeholder("900000")))
                    (input("config.intervalMs", "Interval (ms)", Some("int"), InputAttrs::default().placeholder("60000")))
                    (input("config.maxErrorRatePercent", "Maximum error rate %", Some("number"), InputAttrs::default().placeholder("0.1")))
                    (input("config.maxLatencyIncreasePercent", "Maximum p99 increase %", Some("number"), InputAttrs::default().placeholder("10")))
                }
                button type="submit" { "Start soak" }
                (form_result())
            }
        }
        section id="probe-list" data-live aria-labelledby="probes-h" {
            h2 id="probes-h" { "Health probes" }
            div class="scroll" {
                table id="probes" {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Target" }
                        th scope="col" { "Status" } th scope="col" { "Last checked" } th scope="col" { "Delete" }
                    } }
                    tbody {
                        @for view in &probes.probes {
                            @let probe = &view.probe;
                            tr data-probe-id=(probe.id) {
                                td { (probe.definition.name) @if probe.definition.critical { " (critical)" } }
                                td { (probe.definition.kind.as_str()) }
                                td { (probe.definition.target) }
                                td { (badge(probe.state.status.as_str(), tone(probe.state.status.as_str())))
                                    @if view.stale { " (stale)" }
                                    @if let Some(error) = &probe.state.last_error { br; small { (error) } } }
                                td { (maybe_when(probe.state.last_checked_at)) }
                                td {
                                    @if probe.source == ProbeSource::Api {
                                        form class="inline" data-api=(api(&format!("/probes/{}", probe.id))) data-method="DELETE" {
                                            button class="revoke" type="submit" aria-label={ "Delete probe " (probe.definition.name) } { "Delete" }
                                            (form_result())
                                        }
                                    } @else { small { (probe.source.as_str()) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section class="actions" aria-labelledby="probe-h" {
            h2 id="probe-h" { "Add a probe" }
            form id="probe-create" data-api=(api("/probes")) data-method="POST" {
                (input("name", "Name", None, InputAttrs::required().placeholder("payments-api")))
                (select("kind", "Kind", &["http", "tcp"], None))
                (input("url", "URL (http)", None, InputAttrs::default().placeholder("https://payments.internal/healthz")))
                (input("address", "Address (tcp)", None, InputAttrs::default().placeholder("db.internal:5432")))
                (input("intervalMs", "Interval (ms)", Some("int"), InputAttrs::default().placeholder("10000")))
                label class="check" { input type="checkbox" name="critical" value="true" data-kind="bool"; " critical: a failure makes the service unhealthy" }
                button type="submit" { "Add probe" }
                (form_result())
            }
        }
    };
    done(
        &viewer,
        &gate,
        "Validations, soaks and probes",
        "/ui/checks",
        body,
    )
}
