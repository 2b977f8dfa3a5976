//! `/ui/rollbacks`: the Emergency Rollback flow and load shedding — what runs where, what ran
//! before, rollbacks waiting to execute, and the shedding of each environment.

use axum::extract::State;
use axum::response::Response;
use deploy_safety_api_types::{EnvironmentListQuery, ServiceQuery};
use deploy_safety_core::RollbackStatus;
use maud::html;

use super::Viewer;
use super::pages::{done, environment_names, failure, names, service_of};
use super::render::{
    InputAttrs, api, badge, form_result, input, maybe_when, note, select, tone, when,
};
use crate::state::AppState;

/// Releases shown per environment.
const HISTORY_SHOWN: usize = 8;

/// `GET /ui/rollbacks`.
pub(crate) async fn rollbacks(State(state): State<AppState>, viewer: Viewer) -> Response {
    let app = &state.app;
    let loaded = tokio::try_join!(
        app.gate_status(),
        app.list_rollbacks(EnvironmentListQuery {
            limit: Some(50),
            ..EnvironmentListQuery::default()
        })
    );
    let (gate, list) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(e),
    };
    let mut per_environment = Vec::new();
    for environment in app.settings().environments.names() {
        let history = app.releases(environment, ServiceQuery::default());
        let shedding = app.load_shedding(environment, ServiceQuery::default());
        match tokio::try_join!(history, shedding) {
            Ok(pair) => per_environment.push(pair),
            Err(e) => return failure(e),
        }
    }
    let environments = environment_names(&state);
    let body = html! {
        section id="releases" data-live aria-labelledby="releases-h" {
            h2 id="releases-h" { "What runs where" }
            div class="cards" {
                @for (history, shedding) in &per_environment {
                    article class="card" data-environment=(history.environment.as_str()) {
                        h3 { (history.environment.as_str()) }
                        p { "Current release: " strong { (history.current.as_deref().unwrap_or("none recorded")) } }
                        p { "Load shedding: "
                            @if shedding.enabled { (badge("on", "bad")) " " (shedding.percentage) " %" }
                            @else { (badge("off", "good")) }
                            @if let Some(reason) = &shedding.reason { " — " (reason) }
                        }
                        @if !history.releases.is_empty() {
                            ol class="plain" {
                                @for release in history.releases.iter().take(HISTORY_SHOWN) {
                                    li { (release.release_id) " " small { (release.change.as_str()) " " (when(release.at)) " by " (release.by)
                                        @if let Some(service) = &release.service { " (" (service) ")" } } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section id="rollback-list" data-live aria-labelledby="rollbacks-h" {
            h2 id="rollbacks-h" { "Rollbacks" }
            @if list.rollbacks.is_empty() { p { "No rollback yet." } }
            @else {
                div class="scroll" {
                    table id="rollbacks" {
                        thead { tr {
                            th scope="col" { "Where" } th scope="col" { "From → to" } th scope="col" { "Reason" }
                            th scope="col" { "Requested" } th scope="col" { "Status" } th scope="col" { "Execute" }
                        } }
                        tbody {
                            @for rollback in &list.rollbacks {
                                tr data-rollback-id=(rollback.id) {
                                    td { (rollback.environment.as_str()) " / " (service_of(rollback.service.as_deref())) }
                                    td { (rollback.from_version) " → " (rollback.to_version)
                                        @if let Some(warning) = &rollback.warning { br; small { "⚠ " (warning) } } }
                                    td { (rollback.reason) @if rollback.automatic { " " (badge("automatic", "warn")) } }
                                    td { (when(rollback.created_at)) " by " (rollback.created_by) }
                                    td { (badge(rollback.status.as_str(), tone(rollback.status.as_str())))
                                        @if let Some(at) = rollback.executed_at { br; small { "executed " (maybe_when(Some(at))) } } }
                                    td {
                                        @if rollback.status == RollbackStatus::Pending {
                                            form class="inline execute" data-api=(api(&format!("/rollback/{}/execute", rollback.id))) data-method="POST" {
                                                button type="submit" aria-label={ "Execute rollback " (rollback.id) } { "Execute" }
                                                (form_result())
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section class="actions" aria-labelledby="create-h" {
            h2 id="create-h" { "Request a rollback" }
            (note("Creating is recorded; executing is gated (deploy.rollback), so production needs an override, and lockdown refuses it."))
            form id="rollback-create" data-api=(api("/rollback/create")) data-method="POST" {
                (select("environment", "Environment", &names(&environments), None))
                (input("service", "Service (optional)", None, InputAttrs::default()))
                (input("fromVersion", "From version (running now)", None, InputAttrs::required().placeholder("v1.2.3")))
                (input("toVersion", "To version", None, InputAttrs::required().placeholder("v1.2.2")))
                (input("reason", "Reason", None, InputAttrs::required().placeholder("INC-9: errors after deploy")))
                button type="submit" { "Request rollback" }
                (form_result())
            }
        }
        section class="actions" aria-labelledby="shed-h" {
            h2 id="shed-h" { "Load shedding" }
            (note("Gated as ops.loadshed: refused in lockdown."))
            form id="load-shedding" data-api=(api("/load-shedding")) data-method="POST" {
                (select("environment", "Environment", &names(&environments), None))
                (input("service", "Service (optional)", None, InputAttrs::default()))
                label class="field" {
                    span { "Shedding" }
                    select name="enabled" data-kind="bool" {
                        option value="true" { "on" }
                        option value="false" { "off" }
                    }
                }
                (input("percentage", "Percentage of traffic shed", Some("int"), InputAttrs { min: Some(1), max: Some(100), ..InputAttrs::default() }))
                (input("reason", "Reason", None, InputAttrs::required()))
                button type="submit" { "Set load shedding" }
                (form_result())
            }
        }
    };
    done(
        &viewer,
        &gate,
        "Rollbacks and load shedding",
        "/ui/rollbacks",
        body,
    )
}
