//! The dashboard's pages (SPEC §21). Each reads through the same use cases as the API; each
//! action form posts to the API itself (see `assets/dashboard.js`).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use deploy_safety_api_types::{
    AuditListEntry, AuditListQuery, AuditVerification, CanaryView, EnvironmentListQuery,
    FreezeListQuery, FreezeView, GateStatus, IncidentListQuery, OverrideRequestView, OverrideView,
};
use deploy_safety_app::AppError;
use deploy_safety_core::{
    Action, AuditDecision, Canary, CanaryPhase, IncidentCategory, IncidentStatus, OverallHealth,
    RequestStatus, SecurityMode, Severity, ThreatLevel, Timestamp,
};
use maud::{DOCTYPE, Markup, html};

use super::render::{
    InputAttrs, api, badge, form_result, input, layout, maybe_when, note, select, time_left, tone,
    when,
};
use super::{Viewer, page_response, url_with_query};
use crate::state::AppState;

/// A use case's failure as a page: what went wrong in words, never internals.
pub(crate) fn failure(error: AppError) -> Response {
    let (status, message) = match &error {
        AppError::NotFound(message) => (StatusCode::NOT_FOUND, message.clone()),
        AppError::Invalid { field, message } if message.starts_with(field.as_str()) => {
            (StatusCode::BAD_REQUEST, message.clone())
        }
        AppError::Invalid { field, message } => {
            (StatusCode::BAD_REQUEST, format!("{field}: {message}"))
        }
        AppError::Unavailable(cause) => {
            tracing::error!(%cause, "dashboard: storage unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "The database did not answer in time. This page fails closed; reload in a moment."
                    .to_owned(),
            )
        }
        AppError::Unauthorized(message) => (StatusCode::UNAUTHORIZED, message.clone()),
        AppError::Forbidden { message, .. } => (StatusCode::FORBIDDEN, message.clone()),
        other => {
            tracing::error!(error = %other, "dashboard: page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side; the server log has the details.".to_owned(),
            )
        }
    };
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            (super::render::head("Error", None))
            body {
                main id="main" {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
                    div class="refusal" role="alert" { p class="message" { (message) } }
                    p { a href="/ui/" { "Back to the overview" } }
                }
            }
        }
    };
    page_response(status, html.into_string())
}

/// Anything else under the dashboard.
pub(crate) async fn not_found() -> Response {
    failure(AppError::NotFound("There is no such page.".to_owned()))
}

pub(crate) fn done(
    viewer: &Viewer,
    gate: &GateStatus,
    title: &str,
    current: &str,
    body: Markup,
) -> Response {
    page_response(StatusCode::OK, layout(viewer, gate, title, current, body))
}

pub(crate) fn environment_names(state: &AppState) -> Vec<String> {
    state
        .app
        .settings()
        .environments
        .names()
        .map(|e| e.as_str().to_owned())
        .collect()
}

pub(crate) fn names(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

pub(crate) fn now(state: &AppState) -> Timestamp {
    state.app.clock().now()
}

pub(crate) fn service_of(service: Option<&str>) -> &str {
    service.unwrap_or("(whole environment)")
}

fn is_active(canary: &Canary) -> bool {
    canary.finished_at.is_none()
}

// ---------------------------------------------------------------------------------------
// Overview

/// `GET /ui/`: the gate, freezes, incidents, health and every active canary at one look.
pub(crate) async fn overview(State(state): State<AppState>, viewer: Viewer) -> Response {
    let app = &state.app;
    let loaded = tokio::try_join!(
        app.gate_status(),
        app.list_freezes(FreezeListQuery::default()),
        app.list_incidents(IncidentListQuery {
            status: Some(IncidentStatus::Open),
            ..IncidentListQuery::default()
        }),
        app.list_canaries(EnvironmentListQuery {
            limit: Some(200),
            ..EnvironmentListQuery::default()
        }),
    );
    let (gate, freezes, incidents, canaries) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(e),
    };
    let health = app.health().await;
    let now = now(&state);
    let active: Vec<&Canary> = canaries.canaries.iter().filter(|c| is_active(c)).collect();
    let overall = match health.overall_health {
        OverallHealth::Healthy => "healthy",
        OverallHealth::Degraded => "degraded",
        OverallHealth::Unhealthy => "unhealthy",
    };
    let modes: Vec<&str> = SecurityMode::NAMES.to_vec();
    let levels: Vec<&str> = ThreatLevel::NAMES.to_vec();
    let body = html! {
        div class="cards" id="summary" data-live {
            section class="card" aria-labelledby="gate-h" {
                h2 id="gate-h" { "Security gate" }
                dl {
                    dt { "Mode" }
                    dd id="mode" { (badge(gate.mode.as_str(), tone(gate.mode.as_str()))) }
                    @if let Some(reason) = &gate.mode_reason {
                        dt { "Why" } dd { (reason) }
                    }
                    @if let Some(by) = &gate.mode_changed_by {
                        dt { "Set by" } dd { (by) ", " (maybe_when(gate.mode_changed_at)) }
                    }
                    dt { "Threat level" }
                    dd id="threat" { (badge(gate.threat_level.as_str(), tone(gate.threat_level.as_str()))) }
                    @if let Some(reason) = &gate.threat_reason {
                        dt { "Why" } dd { (reason) }
                    }
                    dt { "Active overrides" }
                    dd { a href="/ui/overrides" { (gate.active_overrides) } }
                }
            }
            section class="card" aria-labelledby="health-h" {
                h2 id="health-h" { "Health" }
                p id="health" { "Overall: " (badge(overall, tone(overall))) }
                @if let Some(probes) = &health.probes {
                    ul class="plain" {
                        @for probe in probes {
                            li {
                                (probe.name) ": " (badge(probe.status.as_str(), tone(probe.status.as_str())))
                                @if probe.critical { " (critical)" }
                                @if probe.stale { " — stale" }
                            }
                        }
                    }
                }
            }
            section class="card" aria-labelledby="freezes-h" {
                h2 id="freezes-h" { "Freezes" }
                div id="freezes" {
                    @let current: Vec<&FreezeView> = freezes.freezes.iter().filter(|f| f.active).collect();
                    @if current.is_empty() {
                        p { "No freeze is in force." }
                    } @else {
                        ul class="plain" {
                            @for freeze in current {
                                li {
                                    (badge("in force", "bad")) " " strong { (freeze.freeze.name) } " — " (freeze.freeze.reason)
                                    @if let Some(until) = freeze.active_until { " (" (time_left(until, now)) ")" }
                                }
                            }
                        }
                    }
                    p { a href="/ui/freezes" { "All freezes" } }
                }
            }
            section class="card" aria-labelledby="incidents-h" {
                h2 id="incidents-h" { "Open incidents" }
                div id="incidents" {
                    @if incidents.incidents.is_empty() {
                        p { "No open incident." }
                    } @else {
                        ul class="plain" {
                            @for incident in &incidents.incidents {
                                li {
                                    (badge(incident.severity.as_str(), tone(incident.severity.as_str()))) " "
                                    (incident.title)
                                    " (" (incident.environment.as_ref().map_or("every environment", |e| e.as_str())) ")"
                                }
                            }
                        }
                    }
                    p { a href="/ui/incidents" { "All incidents" } }
                }
            }
        }
        section aria-labelledby="canaries-h" id="active-canaries" data-live {
            h2 id="canaries-h" { "Active canaries" }
            @if active.is_empty() {
                p { "No canary is running. " a href="/ui/canaries" { "Start one" } }
            } @else {
                (canary_table("canaries", &active))
            }
        }
        section aria-labelledby="mode-h" class="actions" {
            h2 id="mode-h" { "Change the mode or threat level" }
            (note("Security team only; the API refuses anyone else, and this page shows its answer."))
            div class="forms" {
                form id="mode-form" data-api=(api("/security-gate/mode")) data-method="POST" {
                    (select("mode", "Mode", &modes, Some(gate.mode.as_str())))
                    (input("reason", "Reason (required for lockdown)", None, InputAttrs::default().placeholder("INC-123: why")))
                    button type="submit" { "Set mode" }
                    (form_result())
                }
                form id="threat-form" data-api=(api("/security-gate/threat-level")) data-method="POST" {
                    (select("level", "Threat level", &levels, Some(gate.threat_level.as_str())))
                    (input("reason", "Reason", None, InputAttrs::required()))
                    button type="submit" { "Set threat level" }
                    (form_result())
                }
            }
        }
    };
    done(&viewer, &gate, "Overview", "/ui/", body)
}

fn canary_table(id: &str, canaries: &[&Canary]) -> Markup {
    html! {
        div class="scroll" {
            table id=(id) {
                thead { tr {
                    th scope="col" { "Environment" } th scope="col" { "Service" } th scope="col" { "Release" }
                    th scope="col" { "Traffic" } th scope="col" { "Phase" } th scope="col" { "Status" }
                    th scope="col" { "Next step" }
                } }
                tbody {
                    @for canary in canaries {
                        tr data-canary-id=(canary.id) {
                            td { (canary.environment.as_str()) }
                            td { (service_of(canary.service.as_deref())) }
                            td { a href={ "/ui/canaries/" (canary.id) } { (canary.release_id) } }
                            td class="percentage" { (canary.current_percentage) " %" }
                            td { (badge(canary.phase.as_str(), tone(canary.phase.as_str()))) }
                            td { (badge(canary.status.as_str(), tone(canary.status.as_str()))) }
                            td { (maybe_when(canary.next_step_at)) }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Canaries

/// `GET /ui/canaries`: recent canaries and the form that starts one.
pub(crate) async fn canaries(State(state): State<AppState>, viewer: Viewer) -> Response {
    let app = &state.app;
    let loaded = tokio::try_join!(
        app.gate_status(),
        app.list_canaries(EnvironmentListQuery {
            limit: Some(50),
            ..EnvironmentListQuery::default()
        })
    );
    let (gate, list) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(e),
    };
    let environments = environment_names(&state);
    let all: Vec<&Canary> = list.canaries.iter().collect();
    let body = html! {
        section aria-labelledby="recent-h" id="canary-list" data-live {
            h2 id="recent-h" { "Recent canaries" }
            @if all.is_empty() { p { "No canary yet." } } @else { (canary_table("canary-table", &all)) }
        }
        section aria-labelledby="start-h" class="actions" {
            h2 id="start-h" { "Start a canary" }
            (note("The gate decides (deploy.canary.start); a refusal shows its reason and what you can do."))
            form id="canary-start" data-api=(api("/canary/start")) data-method="POST" data-then="canary" {
                (select("environment", "Environment", &names(&environments), None))
                (input("service", "Service (optional)", None, InputAttrs::default().placeholder("payments")))
                (input("releaseId", "Release", None, InputAttrs::required().placeholder("v1.2.3")))
                (input("deploymentId", "Deployment id", None, InputAttrs::required().placeholder("deploy-42")))
                details {
                    summary { "Canary settings (optional)" }
                    (input("config.initialPercentage", "Initial %", Some("int"), InputAttrs { min: Some(1), max: Some(100), ..InputAttrs::default() }))
                    (input("config.incrementPercentage", "Increment %", Some("int"), InputAttrs { min: Some(1), max: Some(100), ..InputAttrs::default() }))
                    (input("config.incrementInterval", "Interval (ms)", Some("int"), InputAttrs { min: Some(1000), ..InputAttrs::default() }))
                    (input("config.maxPercentage", "Maximum %", Some("int"), InputAttrs { min: Some(1), max: Some(100), ..InputAttrs::default() }))
                    (input("config.failureThreshold", "Unhealthy evaluations before rollback", Some("int"), InputAttrs { min: Some(1), max: Some(100), ..InputAttrs::default() }))
                }
                button type="submit" { "Start canary" }
                (form_result())
            }
        }
    };
    done(&viewer, &gate, "Canaries", "/ui/canaries", body)
}

/// `GET /ui/canaries/{id}`: the percentage over time, each metric against its bounds, every
/// evaluation.
pub(crate) async fn canary(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let app = &state.app;
    let loaded = tokio::try_join!(app.gate_status(), app.canary_by_id(&id));
    let (gate, view) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(e),
    };
    let body = canary_body(&view, now(&state));
    let title = format!(
        "Canary {} in {}",
        view.canary.release_id,
        view.canary.environment.as_str()
    );
    done(&viewer, &gate, &title, "/ui/canaries", body)
}

fn canary_body(view: &CanaryView, now: Timestamp) -> Markup {
    let canary = &view.canary;
    // The metrics as the next evaluation would judge them now; when none are fresh, the last
    // evaluation that judged fresh ones (its numbers say more at 3 a.m. than a row of dashes),
    // with the current state said beside it.
    let last_fresh = canary
        .steps
        .iter()
        .rev()
        .filter_map(|step| step.evaluation.as_ref())
        .find(|e| !e.stale);
    let current = view.current_evaluation.as_ref();
    let (evaluation, stale_now) = match current {
        Some(now) if !now.stale => (Some(now), false),
        Some(_) => (last_fresh.or(current), true),
        None => (
            last_fresh.or_else(|| {
                canary
                    .steps
                    .iter()
                    .rev()
                    .find_map(|s| s.evaluation.as_ref())
            }),
            false,
        ),
    };
    let evaluations: Vec<_> = canary
        .steps
        .iter()
        .filter_map(|s| s.evaluation.as_ref().map(|e| (s, e)))
        .collect();
    let finished = canary.phase != CanaryPhase::Progressing && canary.phase != CanaryPhase::Paused;
    html! {
        section id="canary-state" data-live aria-labelledby="state-h" {
            h2 id="state-h" class="visually-hidden" { "State" }
            div class="cards" {
                div class="card" {
                    p class="big" { "Traffic " span id="canary-percentage" { (canary.current_percentage) " %" } }
                    p id="canary-status" {
                        "Phase " (badge(canary.phase.as_str(), tone(canary.phase.as_str())))
                        " · status " (badge(canary.status.as_str(), tone(canary.status.as_str())))
                    }
                    @if let Some(reason) = &canary.paused_reason { p { "Paused: " (reason) } }
                }
                div class="card" {
                    dl {
                        dt { "Service" } dd { (service_of(canary.service.as_deref())) }
                        dt { "Deployment" } dd { (canary.deployment_id) }
                        dt { "Started" } dd { (when(canary.started_at)) " by " (canary.started_by) }
                        dt { "Next evaluation" } dd {
                            @match canary.next_step_at {
                                Some(at) => { (when(at)) " (" (time_left(at, now)) ")" }
                                None => { "—" }
                            }
                        }
                        dt { "Steps" } dd { "+" (canary.config.increment_percentage) " % every " (canary.config.increment_interval / 1000) " s up to " (canary.config.max_percentage) " %" }
                        @if let Some(previous) = &canary.previous_release { dt { "Rolls back to" } dd { (previous) } }
                    }
                }
            }
            figure {
                (super::chart::percentage_chart(canary, now))
                figcaption { "Traffic percentage over time; each point is a step." }
            }
            h2 { "Metrics against their bounds" }
            @match evaluation {
                None => { p id="metrics" { "No metrics yet." } }
                Some(evaluation) => {
                    @if stale_now {
                        p { (badge("no fresh metrics", "warn")) " Nothing was received in the current interval: the next evaluation is "
                            (badge("unknown", "warn")) " unless metrics arrive. "
                            @if !evaluation.stale { "Below: the last evaluation with fresh metrics." } }
                    }
                    p { "As evaluated " (when(evaluation.evaluated_at)) ": " (badge(evaluation.status.as_str(), tone(evaluation.status.as_str())))
                        @if evaluation.stale { " — no fresh metrics in the interval" } }
                    div class="scroll" {
                        table id="metrics" {
                            thead { tr {
                                th scope="col" { "Metric" } th scope="col" { "Value" } th scope="col" { "Judged" }
                                th scope="col" { "Healthy below" } th scope="col" { "Unhealthy above" } th scope="col" { "Verdict" }
                            } }
                            tbody {
                                @for metric in &evaluation.metrics {
                                    tr {
                                        th scope="row" { (metric.metric) }
                                        td { (number(metric.value)) @if let Some(b) = metric.baseline { " (baseline " (rounded(b)) ")" } }
                                        td { (judged(&metric.metric, metric.judged)) }
                                        td { (judged(&metric.metric, Some(metric.healthy_below))) }
                                        td { (judged(&metric.metric, Some(metric.unhealthy_above))) }
                                        td { (badge(metric.verdict.as_str(), tone(metric.verdict.as_str())))
                                            @if let Some(n) = &metric.note { " " span class="note" { (n) } } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Evaluations" }
            div class="scroll" {
                table id="evaluations" {
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "At" } th scope="col" { "Step" }
                        th scope="col" { "Traffic" } th scope="col" { "Verdict" } th scope="col" { "Note" }
                    } }
                    tbody {
                        @for (step, evaluation) in &evaluations {
                            tr {
                                td { (step.number) }
                                td { (when(evaluation.evaluated_at)) }
                                td { (step.action.as_str()) }
                                td { (step.from_percentage) " % → " (step.to_percentage) " %" }
                                td { (badge(evaluation.status.as_str(), tone(evaluation.status.as_str())))
                                    @if evaluation.stale { " (stale)" } }
                                td { (step.note.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if evaluations.is_empty() { p { "Not evaluated yet." } }
            @if !finished {
                section class="actions" aria-labelledby="promote-h" {
                    h2 id="promote-h" { "Promote to 100 %" }
                    (note("Gated as deploy.canary.promote."))
                    form id="canary-promote" data-api=(api("/canary/promote")) data-method="POST" {
                        input type="hidden" name="environment" value=(canary.environment.as_str());
                        input type="hidden" name="canaryId" value=(canary.id);
                        @if let Some(service) = &canary.service { input type="hidden" name="service" value=(service); }
                        button type="submit" { "Promote" }
                        (form_result())
                    }
                }
            }
        }
    }
}

/// What the bounds compare, with its unit: every judged number is a percentage, latency's
/// the increase over the baseline.
fn judged(metric: &str, value: Option<f64>) -> String {
    match value {
        None => "—".to_owned(),
        Some(v) if metric == "latencyP99Ms" => format!("+{} % over baseline", rounded(v)),
        Some(v) => format!("{} %", rounded(v)),
    }
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), rounded)
}

/// At most three decimals, without trailing zeros: `5.263`, `0.02`, `110`.
fn rounded(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

// ---------------------------------------------------------------------------------------
// Overrides

/// `GET /ui/overrides`: active overrides with their time left, requests awaiting the viewer's
/// vote, and the forms that create, request and revoke.
pub(crate) async fn overrides(State(state): State<AppState>, viewer: Viewer) -> Response {
    let app = &state.app;
    let loaded = tokio::try_join!(
        app.gate_status(),
        app.list_overrides(false),
        app.list_override_requests(Some(RequestStatus::Pending)),
    );
    let (gate, overrides, requests) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(e),
    };
    let now = now(&state);
    let me = viewer.caller.name.as_str();
    let (awaiting, others): (Vec<&OverrideRequestView>, Vec<&OverrideRequestView>) =
        requests.requests.iter().partition(|r| {
            r.requested_by != me
                && !r.approvals.iter().any(|v| v.principal == me)
                && r.approver_roles.contains(&viewer.caller.role)
        });
    let environments = environment_names(&state);
    let actions: Vec<&str> = Action::NAMES.to_vec();
    let body = html! {
        section aria-labelledby="active-h" id="override-list" data-live {
            h2 id="active-h" { "Active overrides" }
            @if overrides.overrides.is_empty() {
                p { "No override is active." }
            } @else {
                (override_table(&overrides.overrides, now))
            }
        }
        section aria-labelledby="requests-h" id="requests" data-live {
            h2 id="requests-h" { "Requests awaiting your vote" }
            @if awaiting.is_empty() {
                p { "Nothing awaits your vote." }
            } @else {
                @for request in &awaiting { (request_card(request, now, true)) }
            }
            @if !others.is_empty() {
                h3 { "Other pending requests" }
                @for request in &others { (request_card(request, now, false)) }
            }
        }
        section class="actions" aria-labelledby="create-h" {
            h2 id="create-h" { "Create an override" }
            (note("Where a two-person rule applies, the API refuses this with APPROVALS_REQUIRED: request one below instead."))
            form id="override-create" data-api=(api("/security-gate/override")) data-method="POST" {
                (select("action", "Action", &actions, None))
                (select("environment", "Environment", &names(&environments), None))
                (input("service", "Service (optional)", None, InputAttrs::default()))
                (input("releaseId", "Release (optional)", None, InputAttrs::default()))
                (input("ttlMinutes", "Minutes", Some("int"), InputAttrs { min: Some(1), placeholder: Some("60"), ..InputAttrs::default() }))
                (input("reason", "Reason with ticket", None, InputAttrs::required().placeholder("CHG-1234: why")))
                button type="submit" { "Create override" }
                (form_result())
            }
        }
        section class="actions" aria-labelledby="request-h" {
            h2 id="request-h" { "Request an override (two-person rule)" }
            form id="override-request" data-api=(api("/security-gate/override-requests")) data-method="POST" {
                (select("action", "Action", &actions, None))
                (select("environment", "Environment", &names(&environments), None))
                (input("service", "Service (optional)", None, InputAttrs::default()))
                (input("releaseId", "Release (optional)", None, InputAttrs::default()))
                (input("ttlMinutes", "Minutes", Some("int"), InputAttrs { min: Some(1), placeholder: Some("60"), ..InputAttrs::default() }))
                (input("reason", "Reason with ticket", None, InputAttrs::required()))
                button type="submit" { "Request override" }
                (form_result())
            }
        }
    };
    done(&viewer, &gate, "Overrides", "/ui/overrides", body)
}

fn override_table(overrides: &[OverrideView], now: Timestamp) -> Markup {
    html! {
        div class="scroll" {
            table id="overrides" {
                thead { tr {
                    th scope="col" { "Action" } th scope="col" { "Where" } th scope="col" { "Approved by" }
                    th scope="col" { "Reason" } th scope="col" { "Time left" } th scope="col" { "Used" }
                    th scope="col" { span class="visually-hidden" { "Revoke" } }
                } }
                tbody {
                    @for view in overrides {
                        @let o = &view.record;
                        tr data-override-id=(o.id) {
                            td { (o.action.as_str()) }
                            td { (o.environment.as_str()) " / " (service_of(o.service.as_deref()))
                                @if let Some(release) = &o.release_id { " / " (release) } }
                            td { (o.approver) " (" (o.approver_role.as_str()) ")" }
                            td { (o.reason) }
                            td { (time_left(o.expires_at, now)) br; small { "until " (when(o.expires_at)) } }
                            td { (o.use_count) "×" }
                            td {
                                form class="inline" data-api=(api(&format!("/security-gate/override/{}", o.id))) data-method="DELETE" {
                                    button class="revoke" type="submit" aria-label={ "Revoke override " (o.id) } { "Revoke" }
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

fn request_card(request: &OverrideRequestView, now: Timestamp, may_vote: bool) -> Markup {
    let base = format!("/security-gate/override-requests/{}", request.id);
    html! {
        article class="card request" data-request-id=(request.id) {
            h4 { (request.action.as_str()) " in " (request.environment.as_str()) " / " (service_of(request.service.as_deref())) }
            p { "Requested by " (request.requested_by) " (" (request.requested_by_role.as_str()) "), " (when(request.created_at))
                " — " (request.reason) }
            p { "Approvals: " (request.approvals.len()) " of " (request.required)
                @if !request.approvals.is_empty() {
                    " ("
                    @for (i, vote) in request.approvals.iter().enumerate() {
                        @if i > 0 { ", " } (vote.principal)
                    }
                    ")"
                }
                " · approvers: " (request.approver_roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))
                " · " (time_left(request.expires_at, now)) }
            @if may_vote {
                div class="forms" {
                    form class="approve" data-api=(api(&format!("{base}/approve"))) data-method="POST" {
                        (input("comment", "Comment (optional)", None, InputAttrs::default()))
                        button type="submit" { "Approve" }
                        (form_result())
                    }
                    form class="deny" data-api=(api(&format!("{base}/deny"))) data-method="POST" {
                        (input("comment", "Why deny", None, InputAttrs::required()))
                        button type="submit" { "Deny" }
                        (form_result())
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Incidents

/// `GET /ui/incidents`: open and recent incidents, and their actions.
pub(crate) async fn incidents(State(state): State<AppState>, viewer: Viewer) -> Response {
    let app = &state.app;
    let loaded = tokio::try_join!(
        app.gate_status(),
        app.list_incidents(IncidentListQuery {
            limit: Some(100),
            ..IncidentListQuery::default()
        })
    );
    let (gate, list) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(e),
    };
    let environments = environment_names(&state);
    let severities: Vec<&str> = Severity::NAMES.to_vec();
    let categories: Vec<&str> = IncidentCategory::NAMES.to_vec();
    let body = html! {
        section id="incident-list" data-live aria-labelledby="list-h" {
            h2 id="list-h" { "Incidents" }
            @if list.incidents.is_empty() { p { "No incident recorded." } }
            @for incident in &list.incidents {
                article class="card incident" data-incident-id=(incident.id) {
                    h3 { (badge(incident.status.as_str(), tone(incident.status.as_str()))) " "
                        (badge(incident.severity.as_str(), tone(incident.severity.as_str()))) " " (incident.title) }
                    p { (incident.category.as_str()) " · " (incident.environment.as_ref().map_or("every environment", |e| e.as_str()))
                        " · opened " (when(incident.opened_at)) " by " (incident.opened_by)
                        @if let Some(at) = incident.resolved_at { " · resolved " (when(at)) } }
                    @if incident.status == IncidentStatus::Open {
                        div class="forms" {
                            form class="escalate" data-api=(api(&format!("/incidents/{}/escalate", incident.id))) data-method="POST" {
                                (select("severity", "New severity", &severities, Some(incident.severity.as_str())))
                                (input("reason", "Reason", None, InputAttrs::required()))
                                button type="submit" { "Escalate" }
                                (form_result())
                            }
                            form class="resolve" data-api=(api(&format!("/incidents/{}/resolve", incident.id))) data-method="POST" {
                                (input("reason", "Resolution", None, InputAttrs::required()))
                                button type="submit" { "Resolve" }
                                (form_result())
                            }
                        }
                    }
                }
            }
        }
        section class="actions" aria-labelledby="open-h" {
            h2 id="open-h" { "Open an incident" }
            form id="incident-open" data-api=(api("/incidents")) data-method="POST" {
                (input("title", "Title", None, InputAttrs::required()))
                (select("severity", "Severity", &severities, None))
                (select("category", "Category", &categories, None))
                (environment_or_every(&environments))
                button type="submit" { "Open incident" }
                (form_result())
            }
        }
    };
    done(&viewer, &gate, "Incidents", "/ui/incidents", body)
}

/// An incident's scope: one environment, or (sent as absent) every one.
fn environment_or_every(environments: &[String]) -> Markup {
    html! {
        label class="field" {
            span { "Environment" }
            select name="environment" {
                option value="" selected { "every environment" }
                @for env in environments { option value=(env) { (env) } }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Freezes

/// `GET /ui/freezes`: freezes in force and to come, and the forms that create and end them.
pub(crate) async fn freezes(State(state): State<AppState>, viewer: Viewer) -> Response {
    let app = &state.app;
    let loaded = tokio::try_join!(
        app.gate_status(),
        app.list_freezes(FreezeListQuery::default())
    );
    let (gate, list) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(e),
    };
    let now = now(&state);
    let environments = environment_names(&state);
    let actions: Vec<&str> = Action::NAMES.to_vec();
    let body = html! {
        section id="freeze-list" data-live aria-labelledby="list-h" {
            h2 id="list-h" { "Freezes in force or to come" }
            @if list.freezes.is_empty() { p { "No freeze." } }
            @for view in &list.freezes {
                @let f = &view.freeze;
                article class="card freeze" data-freeze-id=(f.id) {
                    h3 {
                        @if view.active { (badge("in force", "bad")) } @else { (badge("scheduled", "warn")) }
                        " " (f.name) @if f.hard { " " (badge("hard", "bad")) }
                    }
                    p { (f.reason) }
                    p {
                        "Environments: " (if f.environments.is_empty() { "all".to_owned() } else { f.environments.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ") })
                        " · services: " (if f.services.is_empty() { "all".to_owned() } else { f.services.join(", ") })
                        " · actions: " (f.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "))
                    }
                    p {
                        @if let Some(schedule) = &f.schedule { "Schedule: " code { (schedule.cron()) } " for " (schedule.duration_minutes()) " min (" (schedule.time_zone()) ") · " }
                        @if let Some(until) = view.active_until { "in force until " (when(until)) " (" (time_left(until, now)) ")" }
                        @else if let Some(start) = view.next_start { "next from " (when(start)) }
                    }
                    form class="inline end-freeze" data-api=(api(&format!("/freezes/{}", f.id))) data-method="DELETE" {
                        button type="submit" aria-label={ "End freeze " (f.name) } { "End freeze" }
                        (form_result())
                    }
                }
            }
        }
        section class="actions" aria-labelledby="create-h" {
            h2 id="create-h" { "Create a freeze" }
            form id="freeze-create" data-api=(api("/freezes")) data-method="POST" {
                (input("name", "Name", None, InputAttrs::required().placeholder("holiday-2026")))
                (input("reason", "Reason", None, InputAttrs::required()))
                fieldset {
                    legend { "Environments (none ticked: all)" }
                    @for env in &environments {
                        label class="check" { input type="checkbox" name="environments" value=(env) data-kind="each"; " " (env) }
                    }
                }
                fieldset {
                    legend { "Actions (none ticked: canary start and promotion)" }
                    @for action in &actions {
                        label class="check" { input type="checkbox" name="actions" value=(action) data-kind="each"; " " (action) }
                    }
                }
                (input("services", "Services, comma-separated (blank: all)", Some("list"), InputAttrs::default()))
                (input("start", "Start, your browser's time zone (blank: now)", Some("datetime"), InputAttrs::default()))
                (input("end", "End, your browser's time zone (blank: until ended)", Some("datetime"), InputAttrs::default()))
                details {
                    summary { "Repeat on a schedule" }
                    (input("schedule.cron", "Cron (5 fields)", None, InputAttrs::default().placeholder("0 16 * * FRI")))
                    (input("schedule.durationMinutes", "Minutes each time", Some("int"), InputAttrs::default()))
                    (input("schedule.timeZone", "Time zone", None, InputAttrs::default().placeholder("Europe/Berlin")))
                }
                button type="submit" { "Create freeze" }
                (form_result())
            }
        }
    };
    done(&viewer, &gate, "Freezes", "/ui/freezes", body)
}

// ---------------------------------------------------------------------------------------
// Audit

/// `GET /ui/audit`: entries by filter, page by page, and the chain's verification (`verify=1`).
pub(crate) async fn audit(
    State(state): State<AppState>,
    viewer: Viewer,
    RawQuery(raw): RawQuery,
) -> Response {
    // A form sends its empty fields; the API's query treats absent as "any".
    let mut verify = false;
    let mut filters: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.as_deref().unwrap_or_default().as_bytes()) {
        if key == "verify" {
            verify = value == "1";
        } else if !value.is_empty() {
            filters.push((key.into_owned(), value.into_owned()));
        }
    }
    let kept = {
        let pairs: Vec<(&str, &str)> = filters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        url_with_query("", &pairs)
    };
    let kept = kept.trim_start_matches('?');
    let query: AuditListQuery = match crate::extract::parse_query(kept) {
        Ok(query) => query,
        Err(crate::ApiError::Invalid { field, message }) => {
            return failure(AppError::invalid(
                field.as_deref().unwrap_or("filter"),
                message,
            ));
        }
        Err(_) => {
            return failure(AppError::invalid("filter", "the filter cannot be read"));
        }
    };
    let app = &state.app;
    let gate = match app.gate_status().await {
        Ok(gate) => gate,
        Err(e) => return failure(e),
    };
    let page = match app.audit_page(query.clone()).await {
        Ok(page) => page,
        Err(e) => return failure(e),
    };
    let verification = if verify {
        Some(app.verify_audit().await)
    } else {
        None
    };
    let value = |name: &str| {
        filters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let next = page.next_cursor.map(|cursor| {
        let mut pairs: Vec<(&str, String)> = filters
            .iter()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        pairs.push(("cursor", cursor.to_string()));
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        url_with_query("/ui/audit", &borrowed)
    });
    let decisions: Vec<&str> = std::iter::once("")
        .chain(AuditDecision::NAMES.iter().copied())
        .collect();
    let selected_decision = value("decision");
    let body = html! {
        section class="actions" aria-labelledby="verify-h" {
            h2 id="verify-h" { "Verify the chain" }
            form id="audit-verify" method="get" action="/ui/audit" {
                @for (k, v) in &filters { input type="hidden" name=(k) value=(v); }
                input type="hidden" name="verify" value="1";
                button id="verify" type="submit" { "Verify the audit log" }
            }
            @if let Some(result) = &verification {
                (verification_result(result))
            }
        }
        section aria-labelledby="filter-h" {
            h2 id="filter-h" { "Entries" }
            form id="audit-filter" method="get" action="/ui/audit" class="filters" {
                (filter_input("principal", "Principal", &value("principal")))
                (filter_input("action", "Action", &value("action")))
                div class="field" {
                    label for="f-decision" { "Decision" }
                    select id="f-decision" name="decision" {
                        @for d in &decisions {
                            @if *d == selected_decision { option value=(d) selected { (if d.is_empty() { "any" } else { d }) } }
                            @else { option value=(d) { (if d.is_empty() { "any" } else { d }) } }
                        }
                    }
                }
                (filter_input("environment", "Environment", &value("environment")))
                div class="field" {
                    button type="submit" { "Filter" }
                    a href="/ui/audit" { "Clear" }
                }
            }
            div id="audit-list" data-live {
            div class="scroll" {
                table id="audit-entries" {
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "At" } th scope="col" { "Principal" }
                        th scope="col" { "Action" } th scope="col" { "Environment" } th scope="col" { "Decision" }
                        th scope="col" { "Reason" } th scope="col" { "Details" }
                    } }
                    tbody {
                        @for entry in &page.entries {
                            @match entry {
                                AuditListEntry::Entry(e) => {
                                    tr data-seq=(e.seq) {
                                        td { (e.seq) }
                                        td { (when(e.at)) }
                                        td { (e.principal) @if let Some(role) = e.role { br; small { (role.as_str()) } } }
                                        td class="action" { (e.action) }
                                        td { (e.environment.as_ref().map_or("—", |env| env.as_str())) }
                                        td { (badge(e.decision.as_str(), tone(e.decision.as_str()))) }
                                        td { (e.reason) }
                                        td { details { summary { "details" } pre { (e.details.get()) } } }
                                    }
                                }
                                AuditListEntry::Corrupt(c) => {
                                    tr class="corrupt" {
                                        td { (c.seq) }
                                        td colspan="7" { (badge("corrupt", "bad")) " this entry no longer reads as stored; verify the chain" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if page.entries.is_empty() { p { "No entry matches." } }
            @if let Some(next) = next { p { a id="next-page" href=(next) { "Older entries →" } } }
            }
        }
    };
    done(&viewer, &gate, "Audit log", "/ui/audit", body)
}

fn filter_input(name: &str, label: &str, value: &str) -> Markup {
    let id = format!("f-{name}");
    html! {
        div class="field" {
            label for=(id) { (label) }
            input id=(id) name=(name) type="text" value=(value) autocomplete="off";
        }
    }
}

fn verification_result(result: &Result<AuditVerification, AppError>) -> Markup {
    html! {
        @match result {
            Ok(v) if v.valid => {
                div id="verify-result" class="verified" role="status" {
                    p { (badge("intact", "good")) " Chain verified: " (v.entries_verified) " entries, head hash " code { (v.head_hash) } "." }
                    @if let Some(checkpoint) = &v.latest_checkpoint {
                        p { "Matches the signed checkpoint at entry " (checkpoint.seq) " (" (when(checkpoint.at)) ")." }
                    }
                }
            }
            Ok(v) => {
                div id="verify-result" class="broken" role="alert" {
                    p { (badge("BROKEN", "bad")) " The chain does not verify: " (v.entries_verified) " entries verified." }
                    @if let Some(broken) = &v.first_broken {
                        p { "First break at entry " (broken.seq) ": " (broken.problem) }
                    }
                }
            }
            Err(e) => {
                div id="verify-result" class="broken" role="alert" { p { "Verification could not run: " (e.to_string()) } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_show_at_most_three_decimals() {
        for (value, text) in [
            (5.263_157_894_736_842, "5.263"),
            (0.02, "0.02"),
            (110.0, "110"),
            (0.0, "0"),
            (-0.000_1, "0"),
            (2.5, "2.5"),
        ] {
            assert_eq!(rounded(value), text, "{value}");
        }
        assert_eq!(judged("latencyP99Ms", Some(10.0)), "+10 % over baseline");
        assert_eq!(judged("errorRatePercent", Some(0.5)), "0.5 %");
        assert_eq!(judged("cpuPercent", None), "—");
    }
}
