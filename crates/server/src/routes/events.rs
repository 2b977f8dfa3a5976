//! `GET /events`: events as they are committed, as server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use deploy_safety_api_types::{ErrorBody, EventsQuery};
use deploy_safety_app::{App, AppError};
use deploy_safety_core::{Environment, Event};
use futures_util::Stream;

use crate::error::ApiError;
use crate::extract::{ApiQuery, Authenticated};
use crate::state::AppState;

/// How long a quiet stream waits before looking again (events committed by another process
/// are found by looking; this process's own wake the stream at once).
const POLL: Duration = Duration::from_secs(1);

struct Cursor {
    app: App,
    after: u64,
    environment: Option<Environment>,
    pending: VecDeque<Event>,
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
    _caller: Authenticated,
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
    let cursor = Cursor {
        app: state.app.clone(),
        after,
        environment,
        pending: VecDeque::new(),
    };
    let events = futures_util::stream::unfold(cursor, |mut cursor| async move {
        loop {
            // A stopping server ends its streams; clients reconnect, with `Last-Event-ID`.
            if cursor.app.is_shutting_down() {
                return None;
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
