//! `GET /events`: events as they are committed, as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use deploy_safety_api_types::{ErrorBody, EventsQuery};
use deploy_safety_app::{App, AppError, AuthMethod, Caller};
use deploy_safety_core::{Environment, Event, Timestamp};
use futures_util::Stream;

use crate::error::ApiError;
use crate::extract::{ApiQuery, Authenticated, SESSION_COOKIE, bearer_token, cookie_value};
use crate::state::AppState;

/// How long a quiet stream waits before looking again (events committed by another process
/// are found by looking; this process's own wake the stream at once).
const POLL: Duration = Duration::from_secs(1);

/// A stream checks its caller's credential again this often (by the app's clock): a token
/// revoked, a session ended or a workload token expired stops the stream within this bound.
pub const RECHECK_CREDENTIAL_MS: i64 = 5_000;

struct Cursor {
    app: App,
    after: u64,
    environment: Option<Environment>,
    pending: VecDeque<Event>,
    credential: Credential,
    checked_at: Timestamp,
}

/// Streams events (`id` = seq, `event` = type, `data` = the event as JSON). With `since` (or a
/// `Last-Event-ID` header, as browsers send on reconnect) it first replays the events after
/// that seq; without, it starts with the next event.
#[utoipa::path(get, path = "/events", tag = "events", security(("bearer" = [])),
    params(EventsQuery),
    responses(
        (status = 200, description = "text/event-stream of events", content_type = "text/event-stream"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let environment = state
        .app
        .environment_filter("environment", query.environment)?;
    if query
        .since
        .is_some_and(|since| i64::try_from(since).is_err())
    {
        return Err(AppError::invalid("since", format!("must be at most {}", i64::MAX)).into());
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = match query.since.or(resume) {
        Some(seq) => seq,
        None => state.app.last_event_seq().await?,
    };
    let credential = Credential::of(&headers, &caller)
        .ok_or_else(|| AppError::Unauthorized("no credential".to_owned()))?;
    let cursor = Cursor {
        app: state.app.clone(),
        after,
        environment,
        pending: VecDeque::new(),
        credential,
        checked_at: state.app.clock().now(),
    };
    let events = futures_util::stream::unfold(cursor, |mut cursor| async move {
        loop {
            // A stopping server ends its streams; clients reconnect, with `Last-Event-ID`.
            if cursor.app.is_shutting_down() {
                return None;
            }
            // Checked before anything more is sent: a revoked caller hears nothing new.
            let now = cursor.app.clock().now();
            if now.millis_since(cursor.checked_at) >= RECHECK_CREDENTIAL_MS {
                if cursor.credential.revoked(&cursor.app).await {
                    tracing::info!("event stream ended: its credential is no longer valid");
                    return None;
                }
                cursor.checked_at = now;
            }
            if let Some(event) = cursor.pending.pop_front() {
                let sse = SseEvent::default()
                    .id(event.seq.to_string())
                    .event(event.event_type.as_str())
                    .json_data(&event)
                    .unwrap_or_else(|_| SseEvent::default().comment("unserializable event"));
                return Some((Ok(sse), cursor));
            }
            match cursor.app.events_after(cursor.after, 100).await {
                Ok(batch) if !batch.is_empty() => {
                    cursor.after = batch.last().map_or(cursor.after, |e| e.seq);
                    let wanted = cursor.environment;
                    cursor.pending.extend(batch.into_iter().filter(|e| {
                        wanted.is_none() || e.environment.is_none() || e.environment == wanted
                    }));
                }
                Ok(_) => cursor.app.wait_for_events(POLL).await,
                Err(error) => {
                    tracing::warn!(%error, "event stream: cannot read events");
                    cursor.app.wait_for_events(POLL).await;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// What the stream was opened with, to be checked again while it runs.
enum Credential {
    Bearer(String),
    Session(String),
}

impl Credential {
    /// The credential `caller` was authenticated by (the extractor's precedence: a bearer
    /// token, else the session cookie).
    fn of(headers: &HeaderMap, caller: &Caller) -> Option<Credential> {
        if let AuthMethod::Sso { .. } = caller.auth {
            return cookie_value(headers, SESSION_COOKIE)
                .map(|c| Credential::Session(c.to_owned()));
        }
        bearer_token(headers).map(|t| Credential::Bearer(t.to_owned()))
    }

    /// Whether it no longer authenticates. A store that cannot answer is not a revocation:
    /// the stream goes on and asks again next time.
    async fn revoked(&self, app: &App) -> bool {
        let checked = match self {
            Credential::Bearer(token) => app.authenticate(token).await,
            Credential::Session(cookie) => app.authenticate_session_unattended(cookie).await,
        };
        matches!(checked, Err(AppError::Unauthorized(_)))
    }
}
