//! Freezes and their schedules (SPEC §16): windows across daylight-saving changes, validation,
//! scope matching, clipping, and the index the gate uses. Every instant is explicit.

use std::collections::BTreeSet;
use std::sync::Arc;

use deploy_safety_core::{
    Action, ActiveFreeze, ActiveWindow, DEFAULT_ACTIONS, Environment, Freeze, FreezeIndex,
    MAX_DURATION_MINUTES, Schedule, ScheduleError, Timestamp, Window, validate_window,
};
use proptest::prelude::*;

fn ts(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).expect("test instant")
}

fn schedule(cron: &str, minutes: i64, zone: &str) -> Schedule {
    Schedule::parse(cron, minutes, zone).expect("valid schedule")
}

fn window(start: &str, end: &str) -> Window {
    Window {
        start: ts(start),
        end: ts(end),
    }
}

/// The two environments; the only place the tests name them.
fn environments() -> [Environment; 2] {
    [Environment::STAGING, Environment::PRODUCTION]
}

// ---------------------------------------------------------------------------------------------
// Schedule

#[test]
fn friday_evening_in_berlin_follows_the_wall_clock_across_both_dst_changes() {
    let friday = schedule("0 16 * * FRI", 480, "Europe/Berlin");
    // (window start, why): 16:00 local is 15:00Z under CET and 14:00Z under CEST.
    let starts = [
        (
            "2026-03-27T15:00:00Z",
            "last Friday before spring forward (CET)",
        ),
        (
            "2026-04-03T14:00:00Z",
            "first Friday after spring forward (CEST)",
        ),
        (
            "2026-10-23T14:00:00Z",
            "last Friday before fall back (CEST)",
        ),
        ("2026-10-30T15:00:00Z", "first Friday after fall back (CET)"),
    ];
    for (start, why) in starts {
        let start = ts(start);
        let end = start.plus_minutes(480);
        let expected = Some(Window { start, end });
        assert_eq!(friday.window_at(start), expected, "at start: {why}");
        assert_eq!(
            friday.window_at(end.plus_millis(-1)),
            expected,
            "last ms: {why}"
        );
        assert_eq!(
            friday.window_at(start.plus_millis(-1)),
            None,
            "1 ms before: {why}"
        );
        assert_eq!(friday.window_at(end), None, "end is exclusive: {why}");
        assert_eq!(
            friday.next_window_after(start.plus_millis(-1)),
            expected,
            "next: {why}"
        );
        assert_eq!(
            friday.next_window_after(start.plus_minutes(-6 * 24 * 60)),
            expected,
            "next from the Saturday before: {why}"
        );
    }
}

#[test]
fn a_window_may_span_midnight() {
    // 22:00 CET = 21:00Z; four hours, so until 02:00 local (01:00Z) the next day.
    let late = schedule("0 22 * * *", 240, "Europe/Berlin");
    let cases = [
        ("2026-01-15T20:59:59.999Z", None),
        (
            "2026-01-15T21:00:00Z",
            Some(window("2026-01-15T21:00:00Z", "2026-01-16T01:00:00Z")),
        ),
        (
            "2026-01-16T00:00:00Z", // 01:00 local, the next day
            Some(window("2026-01-15T21:00:00Z", "2026-01-16T01:00:00Z")),
        ),
        ("2026-01-16T01:00:00Z", None), // 02:00 local
    ];
    for (now, expected) in cases {
        assert_eq!(late.window_at(ts(now)), expected, "at {now}");
    }
}

#[test]
fn a_start_in_a_dst_gap_moves_to_the_shifted_later_instant() {
    // (pattern, zone, search from, expected start, why)
    let cases = [
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            "2026-03-29T01:30:00Z",
            "02:30 does not exist on 2026-03-29: 03:30 CEST",
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-27T12:00:00Z",
            "2026-03-28T01:30:00Z",
            "the day before: 02:30 CET",
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-29T12:00:00Z",
            "2026-03-30T00:30:00Z",
            "the day after: 02:30 CEST",
        ),
        (
            "30 2 * * *",
            "America/New_York",
            "2026-03-07T12:00:00Z",
            "2026-03-08T07:30:00Z",
            "02:30 does not exist on 2026-03-08: 03:30 EDT",
        ),
        (
            "30 2 * * *",
            "America/New_York",
            "2026-03-08T12:00:00Z",
            "2026-03-09T06:30:00Z",
            "the day after: 02:30 EDT",
        ),
    ];
    for (cron, zone, from, start, why) in cases {
        let daily = schedule(cron, 60, zone);
        let start = ts(start);
        let expected = Some(Window {
            start,
            end: start.plus_minutes(60),
        });
        assert_eq!(daily.next_window_after(ts(from)), expected, "{why}");
        assert_eq!(daily.window_at(start), expected, "{why}");
        assert_eq!(daily.window_at(start.plus_millis(-1)), None, "{why}");
    }
}

#[test]
fn a_start_in_a_dst_fold_happens_once_at_the_first_occurrence() {
    // 01:30 occurs at 05:30Z (EDT) and again at 06:30Z (EST) on 2026-11-01.
    let daily = schedule("30 1 * * *", 30, "America/New_York");
    let first = ts("2026-11-01T05:30:00Z");
    assert_eq!(
        daily.next_window_after(ts("2026-10-31T12:00:00Z")),
        Some(Window {
            start: first,
            end: first.plus_minutes(30)
        })
    );
    // The next window is the next day's, not the repeated 01:30.
    assert_eq!(
        daily.next_window_after(first).map(|w| w.start),
        Some(ts("2026-11-02T06:30:00Z"))
    );
    assert_eq!(daily.window_at(ts("2026-11-01T06:30:00Z")), None);
    assert_eq!(daily.window_at(ts("2026-11-01T06:45:00Z")), None);
    assert!(daily.window_at(ts("2026-11-01T05:45:00Z")).is_some());
}

#[test]
fn every_minute_through_a_fold_never_goes_back_in_time() {
    let minutely = schedule("* * * * *", 1, "America/New_York");
    let mut at = ts("2026-11-01T04:30:00Z");
    let mut starts = Vec::new();
    while at < ts("2026-11-01T07:30:00Z") {
        let next = minutely.next_window_after(at).expect("a next start").start;
        assert!(next > at, "{} after {}", next, at);
        starts.push(next);
        at = next;
    }
    // The repeated hour (06:00Z..07:00Z, 01:xx EST) has no starts: each civil minute starts once.
    assert!(
        starts
            .iter()
            .all(|s| !(ts("2026-11-01T06:00:00Z")..ts("2026-11-01T07:00:00Z")).contains(s))
    );
    assert_eq!(starts.len(), 120);
}

#[test]
fn weekday_mornings_in_new_york_across_spring_forward() {
    let mornings = schedule("0 9 * * MON-FRI", 60, "America/New_York");
    let friday = ts("2026-03-06T14:00:00Z"); // 09:00 EST
    let monday = ts("2026-03-09T13:00:00Z"); // 09:00 EDT
    assert_eq!(
        mornings.window_at(friday.plus_minutes(30)),
        Some(Window {
            start: friday,
            end: friday.plus_minutes(60)
        })
    );
    assert_eq!(
        mornings.next_window_after(friday).map(|w| w.start),
        Some(monday),
        "skips the weekend"
    );
    assert_eq!(mornings.window_at(monday.plus_millis(-1)), None);
    assert_eq!(
        mornings.window_at(monday).map(|w| w.end),
        Some(monday.plus_minutes(60))
    );
}

#[test]
fn overlapping_windows_report_the_end_of_the_last_one_started() {
    let hourly = schedule("0 * * * *", 90, "UTC");
    let cases = [
        // now, window start (earliest containing), end (last started + 90 min)
        (
            "2026-05-05T10:00:00Z",
            "2026-05-05T09:00:00Z",
            "2026-05-05T11:30:00Z",
        ),
        (
            "2026-05-05T10:15:00Z",
            "2026-05-05T09:00:00Z",
            "2026-05-05T11:30:00Z",
        ),
        (
            "2026-05-05T10:30:00Z",
            "2026-05-05T10:00:00Z",
            "2026-05-05T11:30:00Z",
        ),
        (
            "2026-05-05T10:59:59.999Z",
            "2026-05-05T10:00:00Z",
            "2026-05-05T11:30:00Z",
        ),
    ];
    for (now, start, end) in cases {
        assert_eq!(
            hourly.window_at(ts(now)),
            Some(window(start, end)),
            "at {now}"
        );
    }
}

#[test]
fn dense_long_windows_find_the_last_start_without_walking_them_all() {
    // Every minute, windows of a day: 1,440 overlapping windows contain any instant.
    let dense = schedule("* * * * *", 1_440, "Europe/Berlin");
    let now = ts("2026-06-01T12:34:56.789Z");
    assert_eq!(
        dense.window_at(now),
        Some(window("2026-05-31T12:35:00Z", "2026-06-02T12:34:00Z"))
    );
    // Working hours, every five minutes, windows of a week.
    let blocks = schedule("*/5 9-17 * * MON-FRI", 7 * 1_440, "Europe/Berlin");
    let saturday = ts("2026-06-06T12:00:00Z");
    assert_eq!(
        blocks.window_at(saturday),
        Some(window("2026-06-01T07:00:00Z", "2026-06-12T15:55:00Z")),
        "first after a week ago: Mon 09:00 CEST; last started: Fri 17:55 CEST, + 7 days"
    );
}

#[test]
fn next_window_after_is_strictly_after() {
    let daily = schedule("0 6 * * *", 60, "UTC");
    let six = ts("2026-02-10T06:00:00Z");
    let table = [
        ("2026-02-10T05:59:59.999Z", "2026-02-10T06:00:00Z"),
        ("2026-02-10T06:00:00Z", "2026-02-11T06:00:00Z"),
        ("2026-02-10T06:30:00Z", "2026-02-11T06:00:00Z"),
    ];
    for (now, start) in table {
        assert_eq!(
            daily.next_window_after(ts(now)).map(|w| w.start),
            Some(ts(start)),
            "after {now}"
        );
    }
    assert_eq!(
        daily.next_window_after(six.plus_millis(-1)).map(|w| w.end),
        Some(six.plus_minutes(60))
    );
}

#[test]
fn schedules_keep_their_source_text() {
    let s = schedule("0 16 * * FRI", 480, "Europe/Berlin");
    assert_eq!(
        (s.cron(), s.time_zone(), s.duration_minutes()),
        ("0 16 * * FRI", "Europe/Berlin", 480)
    );
}

#[test]
fn invalid_schedules_name_the_field() {
    type Variant = fn(&ScheduleError) -> bool;
    let cron: Variant = |e| matches!(e, ScheduleError::Cron(_));
    let zone: Variant = |e| matches!(e, ScheduleError::TimeZone(_));
    let duration: Variant = |e| matches!(e, ScheduleError::Duration(_));
    let cases: [(&str, i64, &str, Variant, &str); 11] = [
        ("61 * * * *", 60, "UTC", cron, "schedule.cron"),
        ("* * * *", 60, "UTC", cron, "schedule.cron"),
        ("0 0 * * * *", 60, "UTC", cron, "schedule.cron"),
        ("nonsense", 60, "UTC", cron, "schedule.cron"),
        ("", 60, "UTC", cron, "schedule.cron"),
        ("0 0 30 2 *", 60, "UTC", cron, "schedule.cron"),
        (
            "0 16 * * FRI",
            60,
            "Mars/Olympus",
            zone,
            "schedule.timeZone",
        ),
        (
            "0 16 * * FRI",
            0,
            "UTC",
            duration,
            "schedule.durationMinutes",
        ),
        (
            "0 16 * * FRI",
            -5,
            "UTC",
            duration,
            "schedule.durationMinutes",
        ),
        (
            "0 16 * * FRI",
            MAX_DURATION_MINUTES + 1,
            "UTC",
            duration,
            "schedule.durationMinutes",
        ),
        ("@reboot", 60, "UTC", cron, "schedule.cron"),
    ];
    for (pattern, minutes, tz, variant, field) in cases {
        let error = Schedule::parse(pattern, minutes, tz).expect_err(pattern);
        assert!(variant(&error), "{pattern} {minutes} {tz}: {error:?}");
        assert_eq!(error.field(), field, "{pattern} {minutes} {tz}");
        assert!(!error.to_string().is_empty());
    }
    let unknown = Schedule::parse("0 0 * * *", 60, "Mars/Olympus").expect_err("zone");
    assert!(unknown.to_string().contains("Mars/Olympus"), "{unknown}");
    let bad = Schedule::parse("61 * * * *", 60, "UTC").expect_err("cron");
    assert!(bad.to_string().contains("61 * * * *"), "{bad}");
}

#[test]
fn valid_edge_schedules_are_accepted() {
    for (pattern, minutes) in [
        ("0 16 * * FRI", 1),
        ("0 16 * * fri", MAX_DURATION_MINUTES),
        ("@daily", 60),
        ("0 0 29 2 *", 60),
        ("*/15 9-17 * JAN-MAR MON-FRI", 15),
    ] {
        assert!(
            Schedule::parse(pattern, minutes, "Europe/Berlin").is_ok(),
            "{pattern}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Freeze

fn one_off(id: &str, start: Timestamp, end: Option<Timestamp>) -> Freeze {
    Freeze {
        id: id.to_owned(),
        name: format!("freeze {id}"),
        reason: "test".to_owned(),
        environments: Vec::new(),
        services: Vec::new(),
        actions: DEFAULT_ACTIONS.to_vec(),
        start,
        end,
        schedule: None,
        hard: false,
        created_by: "tester".to_owned(),
        created_at: start,
        ended_at: None,
        ended_by: None,
        end_reason: None,
    }
}

#[test]
fn default_actions_are_canary_start_and_promote() {
    assert_eq!(
        DEFAULT_ACTIONS,
        &[Action::CanaryStart, Action::CanaryPromote]
    );
}

#[test]
fn matches_follows_the_scope_table() {
    let [staging, production] = environments();
    let base = one_off("m", Timestamp::UNIX_EPOCH, None);
    let scoped = |envs: Vec<Environment>, services: &[&str]| Freeze {
        environments: envs,
        services: services.iter().map(|s| (*s).to_owned()).collect(),
        ..base.clone()
    };
    let any = scoped(vec![], &[]);
    let prod = scoped(vec![production], &[]);
    let api = scoped(vec![], &["api", "web"]);
    let prod_api = scoped(vec![production], &["api"]);
    let both_envs = scoped(vec![staging, production], &[]);
    // (freeze, action, environment, service, matches)
    let table: [(&Freeze, Action, Environment, Option<&str>, bool); 20] = [
        (&any, Action::CanaryStart, staging, None, true),
        (&any, Action::CanaryPromote, production, Some("api"), true),
        (&any, Action::Rollback, production, None, false),
        (&any, Action::LoadShed, production, Some("api"), false),
        (&prod, Action::CanaryStart, production, None, true),
        (&prod, Action::CanaryStart, production, Some("x"), true),
        (&prod, Action::CanaryStart, staging, None, false),
        (&prod, Action::Rollback, production, None, false),
        (&api, Action::CanaryStart, staging, Some("api"), true),
        (&api, Action::CanaryStart, production, Some("web"), true),
        (&api, Action::CanaryStart, production, Some("db"), false),
        (&api, Action::CanaryStart, production, None, false),
        (&api, Action::Rollback, production, Some("api"), false),
        (
            &prod_api,
            Action::CanaryPromote,
            production,
            Some("api"),
            true,
        ),
        (
            &prod_api,
            Action::CanaryPromote,
            staging,
            Some("api"),
            false,
        ),
        (
            &prod_api,
            Action::CanaryPromote,
            production,
            Some("web"),
            false,
        ),
        (&prod_api, Action::CanaryPromote, production, None, false),
        (&both_envs, Action::CanaryStart, staging, None, true),
        (
            &both_envs,
            Action::CanaryStart,
            production,
            Some("api"),
            true,
        ),
        (&both_envs, Action::LoadShed, staging, None, false),
    ];
    for (i, (freeze, action, environment, service, expected)) in table.into_iter().enumerate() {
        assert_eq!(
            freeze.matches(action, environment, service),
            expected,
            "row {i}: {action:?} {environment:?} {service:?}"
        );
    }
    let rollbacks = Freeze {
        actions: vec![Action::Rollback],
        ..base.clone()
    };
    assert!(rollbacks.matches(Action::Rollback, staging, None));
    assert!(!rollbacks.matches(Action::CanaryStart, staging, None));
}

#[test]
fn one_off_windows_are_clipped_to_start_end_and_ended_at() {
    let start = ts("2026-07-01T00:00:00Z");
    let end = ts("2026-07-02T00:00:00Z");
    let bounded = one_off("a", start, Some(end));
    let open = one_off("b", start, None);
    let ended = Freeze {
        ended_at: Some(ts("2026-07-01T06:00:00Z")),
        ended_by: Some("lead".to_owned()),
        end_reason: Some("done early".to_owned()),
        ..bounded.clone()
    };
    let active = |until| Some(ActiveWindow { start, until });
    // (freeze, now, window_at, is_over_at)
    let table = [
        (&bounded, start.plus_millis(-1), None, false),
        (&bounded, start, active(Some(end)), false),
        (&bounded, end.plus_millis(-1), active(Some(end)), false),
        (&bounded, end, None, true),
        (&open, start.plus_millis(-1), None, false),
        (&open, start, active(None), false),
        (&open, ts("2036-01-01T00:00:00Z"), active(None), false),
        (
            &ended,
            ts("2026-07-01T05:59:59.999Z"),
            active(Some(ts("2026-07-01T06:00:00Z"))),
            false,
        ),
        (&ended, ts("2026-07-01T06:00:00Z"), None, true),
        (&ended, ts("2026-07-01T12:00:00Z"), None, true),
    ];
    for (i, (freeze, now, window, over)) in table.into_iter().enumerate() {
        assert_eq!(freeze.window_at(now), window, "row {i} window_at");
        assert_eq!(freeze.is_over_at(now), over, "row {i} is_over_at");
    }
    assert_eq!(
        bounded.next_window_after(start.plus_millis(-1)),
        active(Some(end))
    );
    assert_eq!(bounded.next_window_after(start), None, "already started");
    assert_eq!(ended.next_window_after(ts("2026-07-01T07:00:00Z")), None);
}

#[test]
fn recurring_windows_are_clipped_to_start_end_and_ended_at() {
    // Daily 08:00-16:00 UTC, from Tuesday 12:00 to Thursday 10:00.
    let start = ts("2026-09-01T12:00:00Z");
    let end = ts("2026-09-03T10:00:00Z");
    let daily = Freeze {
        schedule: Some(schedule("0 8 * * *", 480, "UTC")),
        ..one_off("r", start, Some(end))
    };
    let endless = Freeze {
        end: None,
        ..daily.clone()
    };
    let ended = Freeze {
        ended_at: Some(ts("2026-09-02T09:00:00Z")),
        ..endless.clone()
    };
    let aw = |s: &str, u: &str| {
        Some(ActiveWindow {
            start: ts(s),
            until: Some(ts(u)),
        })
    };
    // (freeze, now, window_at, is_over_at)
    let table = [
        (&daily, "2026-09-01T11:59:59.999Z", None, false),
        (
            &daily,
            "2026-09-01T12:00:00Z",
            aw("2026-09-01T12:00:00Z", "2026-09-01T16:00:00Z"),
            false,
        ),
        (&daily, "2026-09-01T16:00:00Z", None, false),
        (
            &daily,
            "2026-09-02T08:00:00Z",
            aw("2026-09-02T08:00:00Z", "2026-09-02T16:00:00Z"),
            false,
        ),
        (
            &daily,
            "2026-09-03T09:00:00Z",
            aw("2026-09-03T08:00:00Z", "2026-09-03T10:00:00Z"),
            false,
        ),
        (&daily, "2026-09-03T10:00:00Z", None, true),
        (&daily, "2026-09-04T09:00:00Z", None, true),
        (
            &endless,
            "2030-09-03T09:00:00Z",
            aw("2030-09-03T08:00:00Z", "2030-09-03T16:00:00Z"),
            false,
        ),
        (&endless, "2030-09-03T17:00:00Z", None, false),
        (
            &ended,
            "2026-09-02T08:30:00Z",
            aw("2026-09-02T08:00:00Z", "2026-09-02T09:00:00Z"),
            false,
        ),
        (&ended, "2026-09-02T09:00:00Z", None, true),
        (&ended, "2026-09-03T09:00:00Z", None, true),
    ];
    for (i, (freeze, now, window, over)) in table.into_iter().enumerate() {
        assert_eq!(freeze.window_at(ts(now)), window, "row {i} window_at {now}");
        assert_eq!(freeze.is_over_at(ts(now)), over, "row {i} is_over_at {now}");
    }
    // next_window_after: (freeze, now, expected)
    let next = [
        (
            &daily,
            "2026-09-01T06:00:00Z",
            aw("2026-09-01T12:00:00Z", "2026-09-01T16:00:00Z"),
        ),
        (
            &daily,
            "2026-09-01T12:00:00Z",
            aw("2026-09-02T08:00:00Z", "2026-09-02T16:00:00Z"),
        ),
        (
            &daily,
            "2026-09-02T09:00:00Z",
            aw("2026-09-03T08:00:00Z", "2026-09-03T10:00:00Z"),
        ),
        (&daily, "2026-09-03T08:00:00Z", None),
        (
            &endless,
            "2026-08-01T00:00:00Z",
            aw("2026-09-01T12:00:00Z", "2026-09-01T16:00:00Z"),
        ),
        (
            &endless,
            "2026-08-31T17:00:00Z",
            aw("2026-09-01T12:00:00Z", "2026-09-01T16:00:00Z"),
        ),
        (&ended, "2026-09-02T08:30:00Z", None),
    ];
    for (i, (freeze, now, expected)) in next.into_iter().enumerate() {
        assert_eq!(freeze.next_window_after(ts(now)), expected, "next row {i}");
    }
    // A freeze that starts before the day's window: the window is not clipped.
    let early = Freeze {
        start: ts("2026-09-01T07:00:00Z"),
        ..endless.clone()
    };
    assert_eq!(
        early.next_window_after(ts("2026-09-01T06:00:00Z")),
        aw("2026-09-01T08:00:00Z", "2026-09-01T16:00:00Z")
    );
}

#[test]
fn validate_window_names_end() {
    let start = ts("2026-01-01T00:00:00Z");
    assert_eq!(validate_window(start, None), Ok(()));
    assert_eq!(validate_window(start, Some(start.plus_millis(1))), Ok(()));
    for end in [start, start.plus_millis(-1)] {
        let (field, message) = validate_window(start, Some(end)).expect_err("end <= start");
        assert_eq!(field, "end");
        assert!(message.contains("2026-01-01T00:00:00.000Z"), "{message}");
    }
}

// ---------------------------------------------------------------------------------------------
// FreezeIndex

fn active(id: &str, until: Option<Timestamp>, hard: bool) -> ActiveFreeze {
    let start = ts("2026-01-01T00:00:00Z");
    ActiveFreeze {
        freeze: Arc::new(Freeze {
            hard,
            ..one_off(id, start, until)
        }),
        until,
    }
}

#[test]
fn last_ending_picks_the_latest_until_with_none_highest() {
    let [staging, _] = environments();
    let at = |m| Some(ts("2026-01-02T00:00:00Z").plus_minutes(m));
    let index = FreezeIndex::new([
        active("b", at(10), true),
        active("a", at(30), false),
        active("c", at(30), false),
        active("d", at(20), true),
    ]);
    assert_eq!(index.len(), 4);
    let id = |found: Option<&ActiveFreeze>| found.map(|f| f.freeze.id.clone());
    let pick =
        |index: &FreezeIndex, hard| id(index.last_ending(Action::CanaryStart, staging, None, hard));
    assert_eq!(
        pick(&index, false),
        Some("a".to_owned()),
        "tie on until: smallest id"
    );
    assert_eq!(pick(&index, true), Some("d".to_owned()));
    let with_forever = FreezeIndex::new([
        active("b", at(10), true),
        active("z", None, false),
        active("a", at(30), false),
    ]);
    assert_eq!(pick(&with_forever, false), Some("z".to_owned()));
    assert_eq!(pick(&with_forever, true), Some("b".to_owned()));
    assert_eq!(
        with_forever
            .last_ending(Action::Rollback, staging, None, false)
            .map(|f| &f.freeze.id),
        None
    );
    assert!(FreezeIndex::default().is_empty());
}

#[test]
fn active_at_keeps_only_freezes_in_force() {
    let now = ts("2026-03-01T12:00:00Z");
    let freezes = [
        one_off("past", now.plus_minutes(-120), Some(now.plus_minutes(-60))),
        one_off("now", now.plus_minutes(-60), Some(now.plus_minutes(60))),
        one_off("future", now.plus_minutes(60), None),
        Freeze {
            schedule: Some(schedule("0 12 * * *", 30, "UTC")),
            ..one_off("daily", now.plus_minutes(-10_000), None)
        },
    ];
    let index = FreezeIndex::active_at(freezes.into_iter().map(Arc::new), now);
    let ids: Vec<_> = index.iter().map(|f| f.freeze.id.as_str()).collect();
    assert_eq!(ids, ["now", "daily"]);
    let until: Vec<_> = index.iter().map(|f| f.until).collect();
    assert_eq!(
        until,
        [Some(now.plus_minutes(60)), Some(now.plus_minutes(30))]
    );
}

/// `window_at` by brute force: every start after `now - duration` up to `now`, one by one.
fn walked_window(s: &Schedule, now: Timestamp) -> Option<Window> {
    let minutes = s.duration_minutes();
    let mut starts = Vec::new();
    let mut at = now.plus_minutes(-minutes);
    while let Some(w) = s.next_window_after(at) {
        if w.start > now {
            break;
        }
        starts.push(w.start);
        at = w.start;
    }
    match (starts.first(), starts.last()) {
        (Some(&first), Some(&last)) => Some(Window {
            start: first,
            end: last.plus_minutes(minutes),
        }),
        _ => None,
    }
}

#[test]
fn window_at_agrees_with_walking_through_dst_days() {
    let cases = [
        ("0,30 1-3 * * *", "America/New_York", "2026-03-08T00:00:00Z"),
        ("0,30 1-3 * * *", "America/New_York", "2026-11-01T00:00:00Z"),
        ("*/20 * * * *", "Europe/Berlin", "2026-03-28T20:00:00Z"),
        ("*/20 * * * *", "Europe/Berlin", "2026-10-24T20:00:00Z"),
        ("30 2 * * *", "Europe/Berlin", "2026-03-28T20:00:00Z"),
    ];
    for (cron, zone, from) in cases {
        for minutes in [1, 29, 30, 45, 200] {
            let s = schedule(cron, minutes, zone);
            for step in 0..(12 * 12) {
                let now = ts(from).plus_minutes(step * 5).plus_millis(step % 3 - 1);
                assert_eq!(
                    s.window_at(now),
                    walked_window(&s, now),
                    "{cron} {zone} {minutes} min at {now}"
                );
            }
        }
    }
}

const SERVICES: [&str; 5] = ["api", "web", "db", "queue", "auth"];
const PATTERNS: [(&str, i64); 4] = [
    ("0 * * * *", 30),
    ("*/10 * * * *", 5),
    ("0 9 * * MON-FRI", 480),
    ("30 2 * * *", 90),
];

/// One random freeze: a scope (environment, service and action subsets as bit masks), times
/// relative to `now`, and maybe a schedule.
#[derive(Clone, Debug)]
struct FreezeSeed {
    envs: u8,
    services: u8,
    actions: u8,
    start_offset: i64,
    end_offset: Option<i64>,
    ended_offset: Option<i64>,
    pattern: Option<usize>,
    hard: bool,
}

fn freeze_seed() -> impl Strategy<Value = FreezeSeed> {
    (
        0u8..4,
        0u8..32,
        1u8..16,
        -600i64..60,
        proptest::option::of(-60i64..600),
        proptest::option::weighted(0.1, -60i64..60),
        proptest::option::weighted(0.1, 0..PATTERNS.len()),
        any::<bool>(),
    )
        .prop_map(
            |(envs, services, actions, start_offset, end_offset, ended_offset, pattern, hard)| {
                FreezeSeed {
                    envs,
                    services,
                    actions,
                    start_offset,
                    end_offset,
                    ended_offset,
                    pattern,
                    hard,
                }
            },
        )
}

fn build(i: usize, seed: &FreezeSeed, now: Timestamp, schedules: &[Schedule]) -> Freeze {
    let pick = |mask: u8, n: usize| (0..n).filter(move |b| mask & (1 << b) != 0);
    let start = now.plus_minutes(seed.start_offset);
    Freeze {
        environments: pick(seed.envs, 2).map(|b| environments()[b]).collect(),
        services: pick(seed.services, SERVICES.len())
            .map(|b| SERVICES[b].to_owned())
            .collect(),
        actions: pick(seed.actions, 4).map(|b| Action::ALL[b]).collect(),
        end: seed.end_offset.map(|m| start.plus_minutes(m.max(1))),
        ended_at: seed.ended_offset.map(|m| now.plus_minutes(m)),
        schedule: seed.pattern.map(|p| schedules[p].clone()),
        hard: seed.hard,
        ..one_off(&format!("f{i:04}"), start, None)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// 1,000 freezes of varied scope: the index returns exactly what a naive filter over all of
    /// them returns, for random requests, and `last_ending` agrees with a naive maximum.
    #[test]
    fn index_agrees_with_a_naive_filter(
        seeds in proptest::collection::vec(freeze_seed(), 1_000),
        requests in proptest::collection::vec((0usize..4, 0usize..2, proptest::option::of(0usize..6)), 40),
        now_minutes in 0i64..(365 * 1_440),
    ) {
        let now = ts("2026-01-01T00:00:00Z").plus_minutes(now_minutes);
        let schedules: Vec<Schedule> =
            PATTERNS.iter().map(|(p, m)| schedule(p, *m, "Europe/Berlin")).collect();
        let freezes: Vec<Arc<Freeze>> = seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| Arc::new(build(i, seed, now, &schedules)))
            .collect();
        let index = FreezeIndex::active_at(freezes.iter().cloned(), now);
        let in_force = freezes.iter().filter(|f| f.window_at(now).is_some()).count();
        prop_assert_eq!(index.len(), in_force);
        for (action, environment, service) in requests {
            let action = Action::ALL[action];
            let environment = environments()[environment];
            // Index 5 names a service no freeze lists.
            let service = service.map(|s| SERVICES.get(s).copied().unwrap_or("other"));
            let naive: BTreeSet<&str> = freezes
                .iter()
                .filter(|f| f.matches(action, environment, service) && f.window_at(now).is_some())
                .map(|f| f.id.as_str())
                .collect();
            let stopping = index.stopping(action, environment, service);
            let found: BTreeSet<&str> = stopping.iter().map(|f| f.freeze.id.as_str()).collect();
            prop_assert_eq!(found.len(), stopping.len(), "no freeze reported twice");
            prop_assert_eq!(&found, &naive);
            for hard_only in [false, true] {
                let expected = freezes
                    .iter()
                    .filter(|f| f.matches(action, environment, service) && (!hard_only || f.hard))
                    .filter_map(|f| f.window_at(now).map(|w| (f, w.until)))
                    .max_by(|(fa, ua), (fb, ub)| {
                        (ua.is_none(), ua)
                            .cmp(&(ub.is_none(), ub))
                            .then_with(|| fb.id.cmp(&fa.id))
                    })
                    .map(|(f, _)| f.id.clone());
                let got = index
                    .last_ending(action, environment, service, hard_only)
                    .map(|f| f.freeze.id.clone());
                prop_assert_eq!(got, expected);
            }
        }
    }

    /// `window_at` (short walk, then binary search for dense patterns) agrees with walking
    /// every start one by one with `next_window_after`.
    #[test]
    fn window_at_agrees_with_walking_every_start(
        pattern in 0usize..4,
        minutes in 1i64..3_000,
        now_minutes in 0i64..(365 * 1_440),
        now_millis in 0i64..60_000,
    ) {
        let (cron, zone) = [
            ("* * * * *", "Europe/Berlin"),
            ("*/7 * * * *", "America/New_York"),
            ("0,30 1-3 * * *", "America/New_York"),
            ("15 2 * * SUN", "Europe/Berlin"),
        ][pattern];
        let s = schedule(cron, minutes, zone);
        let now = ts("2026-01-01T00:00:00Z").plus_minutes(now_minutes).plus_millis(now_millis);
        prop_assert_eq!(s.window_at(now), walked_window(&s, now));
    }
}
