//! The deploy-safety HTTP server.
//!
//! [`router`] builds the whole API for an [`App`]; tests drive it in-process with `oneshot`.
//! [`Server::bind`] binds a listener (port 0 works, and [`Server::local_addr`] says which port
//! was taken), and [`Server::run`] serves until the shutdown future completes, letting
//! requests in flight finish.

mod error;
mod extract;
mod metrics;
mod middleware;
mod openapi;
mod routes;
mod state;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode, header};
use deploy_safety_app::App;
use tokio::net::TcpListener;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use error::ApiError;
pub use routes::api as api_routes;
pub use state::AppState;

/// HTTP limits.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Requests with a larger body are refused with 413.
    pub body_limit_bytes: usize,
    /// Requests that take longer are answered 503 `timeout`.
    pub request_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            body_limit_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The served document names the environments this server's settings define (SPEC §15), so
/// a generated client knows them; the schema built into the binary only knows their pattern.
fn describe_environments(doc: &mut utoipa::openapi::OpenApi, app: &App) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    let names: Vec<String> = app
        .settings()
        .environments
        .names()
        .map(|e| e.as_str().to_owned())
        .collect();
    if let Some(components) = doc.components.as_mut() {
        components.schemas.insert(
            "Environment".to_owned(),
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(names))
                    .description(Some(
                        "An environment the settings define (GET /environments lists them).",
                    ))
                    .build(),
            )),
        );
    }
}

/// The whole API with its layers, ready to serve or to test with `oneshot`.
pub fn router(app: App, settings: &HttpSettings) -> Router {
    let (routes, mut doc) = routes::api();
    describe_environments(&mut doc, &app);
    let openapi_json = openapi::render(&doc, &app);
    let state = AppState {
        app,
        metrics: metrics::handle(),
        openapi_json: Arc::new(openapi_json),
    };
    let request_id = HeaderName::from_static("x-request-id");
    // One stack, outermost first, added with a single `layer` call: axum wraps each `layer`
    // call's result in its own boxed route, which is cloned (with everything below it, the
    // handler's state included) on every request; ten separate calls made that a large part
    // of a gate check's CPU (BENCHMARKS.md).
    let layers = tower::ServiceBuilder::new()
        // Credentials never reach a log line.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static(extract::CSRF_HEADER),
        ]))
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(request_id))
        .layer(
            TraceLayer::new_for_http()
                .on_response(
                    DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(LatencyUnit::Micros),
                )
                .make_span_with(|request: &axum::http::Request<axum::body::Body>| {
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %request_id,
                    )
                }),
        )
        .layer(tower::layer::layer_fn(|inner| middleware::JsonErrors {
            inner,
        }))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(tower::layer::layer_fn(|inner| middleware::Metered {
            inner,
        }));
    routes.merge(ui::routes()).layer(layers).with_state(state)
}

/// A bound, not yet serving, HTTP server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: Router,
}

impl Server {
    pub async fn bind(listen: &str, app: App, settings: &HttpSettings) -> std::io::Result<Server> {
        let listener = TcpListener::bind(listen).await?;
        Ok(Server {
            listener,
            router: router(app, settings),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then waits for requests in flight.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
