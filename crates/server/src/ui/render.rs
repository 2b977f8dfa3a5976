//! The pieces every page is made of: the layout (navigation, who is signed in, the lockdown
//! banner, the live-status line), times, status labels and action forms.

use deploy_safety_api_types::{API_PREFIX, GateStatus};
use deploy_safety_core::{EventType, SecurityMode, Timestamp};
use maud::{DOCTYPE, Markup, html};

use super::Viewer;
use super::assets::href;

/// The navigation, in order: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/ui/", "Overview"),
    ("/ui/canaries", "Canaries"),
    ("/ui/overrides", "Overrides"),
    ("/ui/incidents", "Incidents"),
    ("/ui/freezes", "Freezes"),
    ("/ui/rollbacks", "Rollbacks"),
    ("/ui/checks", "Checks"),
    ("/ui/audit", "Audit"),
];

/// The API path for `rest` (which starts with `/`).
pub(crate) fn api(rest: &str) -> String {
    format!("{API_PREFIX}{rest}")
}

/// A whole signed-in page. `current` is the navigation entry it belongs to.
pub(crate) fn layout(
    viewer: &Viewer,
    gate: &GateStatus,
    title: &str,
    current: &str,
    body: Markup,
) -> String {
    let event_types = EventType::NAMES.join(" ");
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, Some(&viewer.csrf_token)))
            body data-events=(api("/events")) data-event-types=(event_types) {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    p class="brand" { a href="/ui/" { "deploy-safety" } }
                    nav aria-label="Pages" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    @if *path == current {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div class="who" {
                        span id="whoami" { (viewer.caller.name) " (" (viewer.caller.role.as_str()) ")" }
                        " "
                        span id="live-status" class="live" data-state="connecting" aria-live="polite" { "Connecting…" }
                        form id="sign-out-form" class="inline" data-api=(api("/auth/logout")) data-method="POST" data-then="/ui/sign-in" {
                            button id="sign-out" type="submit" { "Sign out" }
                            div class="form-result" {}
                        }
                    }
                }
                div id="banner" data-live {
                    (lockdown_banner(gate))
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// A page's `<head>`: the style sheet and icon, and for signed-in pages the CSRF token and
/// the script (the only script, from this server).
pub(crate) fn head(title: &str, csrf_token: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if let Some(token) = csrf_token {
                meta name="csrf-token" content=(token);
            }
            title { (title) " — deploy-safety" }
            link rel="icon" type="image/svg+xml" href=(href("favicon.svg"));
            link rel="stylesheet" href=(href("dashboard.css"));
            @if csrf_token.is_some() {
                script src=(href("dashboard.js")) defer {}
            }
        }
    }
}

/// The lockdown banner, on every page while the gate is in lockdown.
fn lockdown_banner(gate: &GateStatus) -> Markup {
    html! {
        @if gate.mode == SecurityMode::Lockdown {
            div id="lockdown-banner" class="banner lockdown" role="alert" {
                strong { "LOCKDOWN" }
                " — every gated action is denied and overrides are not honored. Reason: "
                span class="reason" { (gate.lockdown_reason.as_deref().or(gate.mode_reason.as_deref()).unwrap_or("none given")) }
                @if let Some(since) = gate.lockdown_since {
                    " (since " (when(since)) ")"
                }
            }
        }
    }
}

/// A time as `2026-12-02 16:40:12 UTC`, machine-readable in `datetime`.
pub(crate) fn when(at: Timestamp) -> Markup {
    let full = at.to_rfc3339();
    let shown = format!("{} UTC", full.get(..19).unwrap_or(&full).replace('T', " "));
    html! { time datetime=(full) { (shown) } }
}

/// An optional time, or a dash.
pub(crate) fn maybe_when(at: Option<Timestamp>) -> Markup {
    match at {
        Some(at) => when(at),
        None => html! { "—" },
    }
}

/// Time left until `until`, kept current by the page's script (`data-expires-at`).
pub(crate) fn time_left(until: Timestamp, now: Timestamp) -> Markup {
    html! {
        span class="left" data-expires-at=(until.unix_millis()) { (left_text(until.millis_since(now))) }
    }
}

/// `1 h 5 min left`, `4 min 12 s left`, `9 s left`, or `expired` (the script's format too).
pub(crate) fn left_text(millis: i64) -> String {
    if millis <= 0 {
        return "expired".to_owned();
    }
    let seconds = millis / 1000;
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if h > 0 {
        format!("{h} h {m} min left")
    } else if m > 0 {
        format!("{m} min {s} s left")
    } else {
        format!("{s} s left")
    }
}

/// A status as a labelled badge: the word always, the colour only as an aid. `tone` is one of
/// `good`, `bad`, `warn`, `neutral`.
pub(crate) fn badge(text: &str, tone: &str) -> Markup {
    html! { span class={ "badge " (tone) } { (text) } }
}

/// The badge tone of a verdict or status word.
pub(crate) fn tone(word: &str) -> &'static str {
    match word {
        "healthy" | "completed" | "passed" | "active" | "approved" | "allowed" | "normal"
        | "none" | "resolved" | "enforce" | "ok" | "succeeded" | "low" => "good",
        "unhealthy" | "rolled_back" | "failed" | "denied" | "blocked" | "lockdown" | "critical"
        | "high" | "revoked" | "open" => "bad",
        "unknown" | "paused" | "pending" | "progressing" | "degraded" | "monitor" | "elevated"
        | "medium" | "escalated" | "expired" | "inconclusive" => "warn",
        _ => "neutral",
    }
}

/// Where an action form shows what the API answered (filled by the script).
pub(crate) fn form_result() -> Markup {
    html! { div class="form-result" aria-live="polite" {} }
}

/// A `<select>` of `options`, the first selected unless `selected` names another. The label
/// wraps the control, so a page may hold several forms with the same field names (no ids).
pub(crate) fn select(name: &str, label: &str, options: &[&str], selected: Option<&str>) -> Markup {
    html! {
        label class="field" {
            span { (label) }
            select name=(name) {
                @for option in options {
                    @if Some(*option) == selected {
                        option value=(option) selected { (option) }
                    } @else {
                        option value=(option) { (option) }
                    }
                }
            }
        }
    }
}

/// A labelled text input (the label wraps it, as in [`select`]). `kind` (`int`, `number`,
/// `list`, `datetime`) tells the script how to send it.
pub(crate) fn input(name: &str, label: &str, kind: Option<&str>, attrs: InputAttrs) -> Markup {
    let input_type = match kind {
        Some("int") => "number",
        Some("datetime") => "datetime-local",
        _ => "text",
    };
    html! {
        label class="field" {
            span { (label) @if attrs.required { " " abbr title="required" { "*" } } }
            input name=(name) type=(input_type)
                data-kind=[kind]
                placeholder=[attrs.placeholder]
                min=[attrs.min]
                max=[attrs.max]
                required[attrs.required]
                autocomplete="off";
        }
    }
}

/// Optional attributes of [`input`].
#[derive(Default, Clone, Copy)]
pub(crate) struct InputAttrs {
    pub required: bool,
    pub placeholder: Option<&'static str>,
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl InputAttrs {
    pub(crate) fn required() -> Self {
        InputAttrs {
            required: true,
            ..Self::default()
        }
    }

    pub(crate) fn placeholder(self, text: &'static str) -> Self {
        InputAttrs {
            placeholder: Some(text),
            ..self
        }
    }
}

/// A short note for the people who may not do something.
pub(crate) fn note(text: &str) -> Markup {
    html! { p class="note" { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_reads_like_the_script_writes_it() {
        for (millis, text) in [
            (0, "expired"),
            (-5, "expired"),
            (999, "0 s left"),
            (9_000, "9 s left"),
            (4 * 60_000 + 12_000, "4 min 12 s left"),
            (3_600_000 + 5 * 60_000, "1 h 5 min left"),
        ] {
            assert_eq!(left_text(millis), text, "{millis}");
        }
    }

    #[test]
    fn times_show_in_utc_to_the_second() {
        let at = Timestamp::parse_rfc3339("2026-12-02T16:40:12.345Z").unwrap();
        let html = when(at).into_string();
        assert_eq!(
            html,
            r#"<time datetime="2026-12-02T16:40:12.345Z">2026-12-02 16:40:12 UTC</time>"#
        );
    }
}
