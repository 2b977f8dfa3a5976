//! Checks that reach out: an HTTP request whose status must fall in a range, a TCP connection
//! that must open. Used by health probes and by the operators' HTTP release gates.

use std::time::{Duration, Instant};

use deploy_safety_core::{CheckOutcome, StatusRange};

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    pub outcome: CheckOutcome,
    pub latency_ms: u64,
    /// What was seen (`HTTP 200`, `connected`) or what went wrong.
    pub message: String,
}

impl CheckReport {
    fn new(outcome: CheckOutcome, started: Instant, message: String) -> Self {
        CheckReport {
            outcome,
            latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            message,
        }
    }

    pub fn error(&self) -> Option<&str> {
        (self.outcome == CheckOutcome::Failure).then_some(self.message.as_str())
    }
}

/// The HTTP client checks use: no redirects (a 302 is a result, not a detour), no proxy, no
/// cookies.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("deploy-safety-probe/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// `method url` must answer a status in `expected` within `timeout`.
pub async fn http(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    expected: StatusRange,
    timeout: Duration,
) -> CheckReport {
    let started = Instant::now();
    let method = match reqwest::Method::from_bytes(method.as_bytes()) {
        Ok(method) => method,
        Err(_) => {
            return CheckReport::new(
                CheckOutcome::Failure,
                started,
                format!("invalid HTTP method `{method}`"),
            );
        }
    };
    let answer = client.request(method, url).timeout(timeout).send().await;
    match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            if expected.contains(status) {
                CheckReport::new(CheckOutcome::Success, started, format!("HTTP {status}"))
            } else {
                CheckReport::new(
                    CheckOutcome::Failure,
                    started,
                    format!("HTTP {status} (expected {expected})"),
                )
            }
        }
        Err(error) if error.is_timeout() => CheckReport::new(
            CheckOutcome::Failure,
            started,
            format!("no answer within {} ms", timeout.as_millis()),
        ),
        Err(error) => CheckReport::new(CheckOutcome::Failure, started, root_cause(&error)),
    }
}

/// A TCP connection to `address` (`host:port`) must open within `timeout`.
pub async fn tcp(address: &str, timeout: Duration) -> CheckReport {
    let started = Instant::now();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_stream)) => CheckReport::new(CheckOutcome::Success, started, "connected".into()),
        Ok(Err(error)) => CheckReport::new(
            CheckOutcome::Failure,
            started,
            format!("cannot connect: {error}"),
        ),
        Err(_) => CheckReport::new(
            CheckOutcome::Failure,
            started,
            format!("no connection within {} ms", timeout.as_millis()),
        ),
    }
}

/// The innermost error: reqwest's outer messages say only "error sending request".
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}
