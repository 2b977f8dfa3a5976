//! The canary's traffic percentage over time as an SVG drawn on the server: no chart library,
//! no script. Each step is a point; the line holds its level until the next step (a step
//! chart), and the last level runs on to `now` while the canary is active.

use deploy_safety_core::{Canary, Timestamp};
use maud::{Markup, html};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// (time, percentage) points of the chart: the start, each step's new percentage, and the
/// level now (or when the canary finished).
pub(crate) fn points(canary: &Canary, now: Timestamp) -> Vec<(i64, u8)> {
    let mut points: Vec<(i64, u8)> = Vec::with_capacity(canary.steps.len() + 2);
    points.push((
        canary.started_at.unix_millis(),
        canary.config.initial_percentage,
    ));
    for step in &canary.steps {
        points.push((step.at.unix_millis(), step.to_percentage));
    }
    let end = canary.finished_at.unwrap_or(now).unix_millis();
    let last = points.last().map_or(0, |p| p.0);
    points.push((end.max(last), canary.current_percentage));
    points
}

/// The step chart of [`points`], with a 0–100 % axis and an accessible title.
pub(crate) fn percentage_chart(canary: &Canary, now: Timestamp) -> Markup {
    let points = points(canary, now);
    let first = points.first().map_or(0, |p| p.0);
    let last = points.last().map_or(0, |p| p.0);
    let span = (last - first).max(1) as f64;
    let x = |t: i64| LEFT + (t - first) as f64 / span * (WIDTH - LEFT - RIGHT);
    let y = |p: u8| TOP + (100.0 - f64::from(p)) / 100.0 * (HEIGHT - TOP - BOTTOM);
    let mut path = String::new();
    let mut previous: Option<u8> = None;
    for (t, p) in &points {
        match previous {
            None => path.push_str(&format!("M{:.1},{:.1}", x(*t), y(*p))),
            Some(before) => {
                path.push_str(&format!(" H{:.1}", x(*t)));
                if before != *p {
                    path.push_str(&format!(" V{:.1}", y(*p)));
                }
            }
        }
        previous = Some(*p);
    }
    let description = points
        .iter()
        .skip(1)
        .map(|(_, p)| format!("{p} %"))
        .collect::<Vec<_>>()
        .join(", ");
    let minutes = (span / 60_000.0).max(0.0);
    html! {
        svg id="percentage-chart" class="chart" viewBox={ "0 0 " (WIDTH) " " (HEIGHT) }
            role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg" {
            title id="chart-title" { "Traffic over time: started at " (canary.config.initial_percentage) " %, then " (description) }
            @for level in [0u8, 25, 50, 75, 100] {
                line class="grid" x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(level)) y2=(y(level)) {}
                text class="axis" x=(LEFT - 6.0) y=(y(level) + 4.0) text-anchor="end" { (level) "%" }
            }
            text class="axis" x=(LEFT) y=(HEIGHT - 8.0) { "start" }
            text class="axis" x=(WIDTH - RIGHT) y=(HEIGHT - 8.0) text-anchor="end" {
                @if canary.finished_at.is_some() { "end" } @else { "now" }
                " (" (format!("{minutes:.1}")) " min)"
            }
            path class="line" d=(path) {}
            @for (t, p) in points.iter().take(points.len().saturating_sub(1)) {
                circle class="point" cx=(format!("{:.1}", x(*t))) cy=(format!("{:.1}", y(*p))) r="4" {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_safety_core::{CanaryConfig, CanaryStep, Environment, StepAction};

    fn canary(steps: &[(i64, u8, u8)], current: u8) -> Canary {
        let at = |ms| Timestamp::from_unix_millis(1_800_000_000_000 + ms);
        let mut canary = Canary::start(
            "c1".to_owned(),
            Environment::STAGING,
            None,
            "v1".to_owned(),
            "d1".to_owned(),
            CanaryConfig::default(),
            "dev",
            None,
            None,
            at(0),
        );
        canary.steps = steps
            .iter()
            .enumerate()
            .map(|(i, (t, from, to))| CanaryStep {
                number: u32::try_from(i).unwrap() + 1,
                at: at(*t),
                action: StepAction::SteppedUp,
                from_percentage: *from,
                to_percentage: *to,
                evaluation: None,
                note: None,
            })
            .collect();
        canary.current_percentage = current;
        canary
    }

    #[test]
    fn points_follow_the_steps_and_end_now() {
        let c = canary(&[(1000, 10, 20), (2000, 20, 30)], 30);
        let now = Timestamp::from_unix_millis(1_800_000_000_000 + 2500);
        let points = points(&c, now);
        assert_eq!(
            points,
            vec![
                (1_800_000_000_000, c.config.initial_percentage),
                (1_800_000_001_000, 20),
                (1_800_000_002_000, 30),
                (1_800_000_002_500, 30),
            ]
        );
    }

    #[test]
    fn the_chart_is_an_svg_with_a_title_and_a_line() {
        let c = canary(&[(60_000, 10, 50)], 50);
        let html =
            percentage_chart(&c, Timestamp::from_unix_millis(1_800_000_120_000)).into_string();
        assert!(html.starts_with("<svg id=\"percentage-chart\""), "{html}");
        assert!(html.contains("<title id=\"chart-title\">"), "{html}");
        assert!(html.contains("50 %"), "{html}");
        assert!(html.contains("<path class=\"line\" d=\"M"), "{html}");
    }
}
