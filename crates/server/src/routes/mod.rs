//! Every route, registered together with its OpenAPI description so the document cannot miss
//! one.

mod audit;
mod auth;
mod canary;
mod events;
mod freezes;
mod gate;
mod incidents;
mod integrations;
mod override_requests;
mod probes;
mod rollbacks;
mod soaks;
mod system;
mod validations;

pub(crate) use auth::session_cookie as session_cookie_header;

use axum::Router;
use deploy_safety_api_types::API_PREFIX;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

#[derive(utoipa::OpenApi)]
#[openapi(
    // Referenced by a path parameter, which utoipa does not collect on its own.
    components(schemas(deploy_safety_core::FlaggerHook)),
    info(
        title = "deploy-safety",
        description = "Deployment safety control plane: the Security Gate, overrides, incidents, release validations, health probes, canaries, soaks, rollbacks, load shedding, events and the audit log."
    ),
    tags(
        (name = "security-gate", description = "Mode, threat level, overrides and decisions"),
        (name = "audit", description = "The hash-chained audit log and its signed checkpoints"),
        (name = "incidents", description = "Incidents: open, escalate, resolve"),
        (name = "validations", description = "Release validations and their gates"),
        (name = "probes", description = "Health probes"),
        (name = "canary", description = "Canary deployments"),
        (name = "rollback", description = "Rollbacks and release history"),
        (name = "soak", description = "Soaks: a release watched against its thresholds before promotion"),
        (name = "load-shedding", description = "Load shedding"),
        (name = "freezes", description = "Freezes: times when chosen deployments stop"),
        (name = "integrations", description = "Deploy engines ask the gate in their own protocols: pollers (Argo Rollouts, Kargo), Flagger's webhooks, GitHub deployment protection rules"),
        (name = "events", description = "The event stream"),
        (name = "health", description = "Service health"),
        (name = "auth", description = "Identity: who the caller is; single sign-on for people"),
        (name = "meta", description = "The API's own description and metrics"),
    )
)]
struct ApiDoc;

/// The router (without state) and the OpenAPI document describing exactly its routes.
pub fn api() -> (Router<AppState>, OpenApi) {
    use utoipa::OpenApi as _;
    let api = OpenApiRouter::<AppState>::new()
        .routes(routes!(gate::status))
        .routes(routes!(gate::set_mode))
        .routes(routes!(gate::set_threat_level))
        .routes(routes!(gate::create_override))
        .routes(routes!(gate::list_overrides))
        .routes(routes!(gate::get_override, gate::revoke_override))
        .routes(routes!(gate::check))
        .routes(routes!(
            override_requests::create_request,
            override_requests::list_requests
        ))
        .routes(routes!(override_requests::show_request))
        .routes(routes!(override_requests::approve_request))
        .routes(routes!(override_requests::deny_request))
        .routes(routes!(incidents::open, incidents::list))
        .routes(routes!(incidents::show))
        .routes(routes!(incidents::escalate))
        .routes(routes!(incidents::resolve))
        .routes(routes!(validations::start))
        .routes(routes!(validations::run))
        .routes(routes!(validations::show))
        .routes(routes!(validations::list))
        .routes(routes!(probes::create, probes::list))
        .routes(routes!(probes::show, probes::delete))
        .routes(routes!(canary::start))
        .routes(routes!(canary::status))
        .routes(routes!(canary::promote))
        .routes(routes!(canary::metrics))
        .routes(routes!(canary::list))
        .routes(routes!(rollbacks::create))
        .routes(routes!(rollbacks::execute))
        .routes(routes!(rollbacks::show))
        .routes(routes!(rollbacks::list))
        .routes(routes!(rollbacks::releases))
        .routes(routes!(rollbacks::set_load_shedding))
        .routes(routes!(rollbacks::load_shedding))
        .routes(routes!(soaks::start, soaks::list))
        .routes(routes!(soaks::show))
        .routes(routes!(soaks::metrics))
        .routes(routes!(soaks::abort))
        .routes(routes!(freezes::create, freezes::list))
        .routes(routes!(freezes::show, freezes::end))
        .routes(routes!(
            integrations::decision_get,
            integrations::decision_post
        ))
        .routes(routes!(integrations::flagger))
        .merge(
            // GitHub's payloads embed the repository and every open pull request: far more
            // than our own requests, so this route has a larger (still bounded) limit.
            OpenApiRouter::new()
                .routes(routes!(integrations::github_webhook))
                .layer(axum::extract::DefaultBodyLimit::max(
                    integrations::GITHUB_BODY_LIMIT_BYTES,
                )),
        )
        .routes(routes!(integrations::github_pending))
        .routes(routes!(events::stream))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::public_key))
        .routes(routes!(audit::latest_checkpoint))
        .routes(routes!(system::health))
        .routes(routes!(system::whoami))
        .routes(routes!(auth::login))
        .routes(routes!(auth::callback))
        .routes(routes!(auth::logout))
        .routes(routes!(system::environments))
        .routes(routes!(system::openapi_json));
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(API_PREFIX, api)
        .routes(routes!(system::metrics))
        .split_for_parts();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    (router, doc)
}
