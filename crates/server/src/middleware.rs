//! Cross-cutting behaviour of every request and response: JSON errors, request metrics, and
//! the refusal of NUL characters in URLs.
//!
//! They are tower services that wrap the inner service's future, not
//! `axum::middleware::from_fn` functions: `from_fn` clones the whole stack below it (the
//! handler's state included) on every request, and the three we had cost about 12 µs of CPU
//! per gate check (BENCHMARKS.md).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use deploy_safety_api_types::{ErrorBody, ErrorDetail};
use futures_util::future::BoxFuture;
use tower::Service;

use deploy_safety_app::AppError;

use crate::error::{ApiError, code_for_status};
use crate::metrics::{HTTP_DURATION, HTTP_REQUESTS};

/// Error bodies larger than this are not re-read: ours are small.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Marks a response whose error body is the endpoint's own protocol (Flagger's one line of
/// text), which [`JsonErrors`] leaves as it is.
#[derive(Clone, Copy, Debug)]
pub struct OwnProtocol;

/// Makes every error response JSON in the API's format, with the request id, whoever produced
/// it: our handlers, axum (unknown route, wrong method), or a layer (timeout, panic, body limit).
#[derive(Clone, Debug)]
pub struct JsonErrors<S> {
    pub(crate) inner: S,
}

/// Generic over the inner response's body: the layers below (panic catcher, timeout) each
/// answer with their own body type.
impl<S, B> Service<Request> for JsonErrors<S>
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Kept as shared handles (no copy): only an error response reads them.
        let request_id = request.headers().get("x-request-id").cloned();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?.map(Body::new);
            Ok(into_json_error(response, request_id, &method, uri.path()).await)
        })
    }
}

/// `response` as it is unless it is an error; an error in the API's format, with the request id.
async fn into_json_error(
    response: Response,
    request_id: Option<HeaderValue>,
    method: &axum::http::Method,
    path: &str,
) -> Response {
    let request_id = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<OwnProtocol>().is_some()
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let bytes = to_bytes(body, ERROR_BODY_LIMIT).await.unwrap_or_default();
    let mut error_body = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(parsed) if is_json => parsed,
        // A JSON answer of another shape (e.g. an unhealthy health report) is the endpoint's
        // own: keep it.
        _ if is_json => return Response::from_parts(parts, Body::from(bytes)),
        _ => ErrorBody {
            error: ErrorDetail {
                code: code_for_status(status).to_owned(),
                message: default_message(status, method, path, &bytes),
                field: None,
                reason: None,
                hints: Vec::new(),
                request_id: None,
            },
            decision: None,
        },
    };
    error_body.error.request_id = request_id;
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut rebuilt = (status, Json(error_body)).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt
}

fn default_message(
    status: StatusCode,
    method: &axum::http::Method,
    path: &str,
    body: &[u8],
) -> String {
    match status {
        StatusCode::NOT_FOUND => format!("no such endpoint: {method} {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        StatusCode::SERVICE_UNAVAILABLE => {
            "the request did not complete within the time limit; a change that was not yet being recorded was not made, but one caught mid-commit may have been: check the audit log before retrying".to_owned()
        }
        StatusCode::PAYLOAD_TOO_LARGE => "request body is larger than the limit".to_owned(),
        _ if status.is_server_error() => "internal error".to_owned(),
        _ => {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                text
            }
        }
    }
}

/// Counts requests and their latency by route template (never the raw path: ids would make
/// unbounded label values), and answers requests whose path or query holds a NUL character
/// ([`nul_refusal`]) before any handler sees them; those are counted too.
#[derive(Clone, Debug)]
pub struct Metered<S> {
    pub(crate) inner: S,
}

impl<S> Service<Request> for Metered<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
        let method = request.method().as_str().to_owned();
        let answer = match nul_refusal(&request) {
            Some(refused) => Err(refused),
            None => Ok(self.inner.call(request)),
        };
        Box::pin(async move {
            let response = match answer {
                Ok(response) => response.await?,
                Err(refused) => refused,
            };
            let status = response.status().as_u16().to_string();
            metrics::histogram!(HTTP_DURATION, "method" => method.clone(), "route" => route.clone())
                .record(started.elapsed().as_secs_f64());
            metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status)
                .increment(1);
            Ok(response)
        })
    }
}

/// The body of a panic response, as JSON.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    tracing::error!("a request handler panicked");
    let mut response = (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(ErrorBody {
            error: ErrorDetail {
                code: "internal".to_owned(),
                message: "internal error".to_owned(),
                field: None,
                reason: None,
                hints: Vec::new(),
                request_id: None,
            },
            decision: None,
        }),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer to a request whose path or query holds a NUL character (`%00`), which no handler
/// sees: no name, id or filter value can contain one (PostgreSQL text cannot even hold it), so a
/// path with one names nothing (404) and a query with one is malformed (400). Both backends thus
/// answer alike.
fn nul_refusal(request: &Request) -> Option<Response> {
    let holds_nul = |part: &str| {
        part.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if holds_nul(request.uri().path()) {
        return Some(
            ApiError::App(AppError::NotFound(
                "nothing is named with a NUL character".to_owned(),
            ))
            .into_response(),
        );
    }
    if request.uri().query().is_some_and(holds_nul) {
        return Some(
            ApiError::Invalid {
                field: None,
                message: "query parameters cannot contain a NUL character".to_owned(),
            }
            .into_response(),
        );
    }
    None
}
