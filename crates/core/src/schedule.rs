//! Recurring windows (SPEC §16 freezes): a 5-field cron pattern read as wall-clock time in an
//! IANA time zone, each occurrence opening a window of a fixed number of minutes.
//!
//! # Why wall-clock time, and what happens around daylight-saving changes
//!
//! People write "every Friday at 16:00 in Berlin" and mean 16:00 on the clocks in Berlin,
//! whatever the UTC offset is that week. So the pattern is matched against *civil* (wall-clock)
//! date-times, by `croner` on a zone-less `chrono::NaiveDateTime`, and each matching civil time
//! is then turned into an instant by `jiff` with its tz database (bundled into the binary, so no
//! system tzdata is needed). No offset arithmetic is written here by hand.
//!
//! The civil → instant step uses jiff's `compatible` disambiguation (the RFC 5545 / Temporal
//! default):
//!
//! * **gap** (spring forward: the civil time does not exist, e.g. 02:30 in Berlin on
//!   2026-03-29): the window starts at the instant shifted later by the gap's length, 03:30 local
//!   (01:30Z). A window is never silently dropped because of a gap.
//! * **fold** (fall back: the civil time occurs twice, e.g. 01:30 in New York on 2026-11-01): the
//!   window starts at the *first* (earlier) occurrence only, 01:30 EDT (05:30Z). It does not
//!   start twice.
//!
//! Because of the gap rule, the instants of successive civil matches are not always increasing
//! (02:30 → 01:30Z, then 03:00 → 01:00Z). An occurrence whose instant is not after one already
//! produced by the same walk is skipped; the earlier window already covers it.
//!
//! # Cron syntax
//!
//! Exactly five fields (minute hour day-of-month month day-of-week), in croner's syntax (names
//! like `FRI`/`JAN`, ranges, lists, steps, `L`, `W`, `#`); day-of-month and day-of-week combine
//! with OR, as in Vixie cron. A sixth (seconds) or seventh (year) field is rejected. The aliases
//! `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily` and `@hourly` are accepted (they are
//! shorthand for five-field patterns); `@reboot` and other aliases are rejected. A pattern that
//! never matches (e.g. `0 0 30 2 *`) is rejected at parse time.

use std::cmp::{max, min};

use chrono::{NaiveDate, NaiveDateTime};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::civil;
use jiff::tz::TimeZone;

use crate::time::Timestamp;

/// The longest window a schedule may open: one year, in minutes.
pub const MAX_DURATION_MINUTES: i64 = 525_600;

/// At most this many civil occurrences are examined by one search for the next start. A search
/// only walks past occurrences that lie before its target near an offset change (at most a day's
/// worth of per-minute matches), so this bound is never reached by a real zone; it exists so
/// that no input can make a request loop without end.
const MAX_SCAN_STEPS: usize = 4_096;

/// How many following starts `window_at` walks one by one before it switches to a binary search
/// for the latest start (dense patterns with long windows, e.g. every minute for a day).
const MAX_CHAIN_WALK: usize = 16;

/// A recurring window: starts at each cron occurrence in `time_zone`, lasts `duration_minutes`.
///
/// Times in the pattern are wall-clock times in the zone; see the module documentation for the
/// daylight-saving rules (gap → the shifted later instant, fold → the first occurrence).
#[derive(Clone, Debug)]
pub struct Schedule {
    cron_text: String,
    cron: Cron,
    time_zone_text: String,
    time_zone: TimeZone,
    duration_minutes: i64,
}

/// A half-open interval of instants, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    /// Whether `at` lies in `[start, end)`.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }
}

/// Why a schedule was refused; each message names the offending value and reads on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Cron(String),
    #[error("{0}")]
    TimeZone(String),
    #[error("{0}")]
    Duration(String),
}

impl ScheduleError {
    /// The request field the error is about, as the API spells it.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::Cron(_) => "schedule.cron",
            ScheduleError::TimeZone(_) => "schedule.timeZone",
            ScheduleError::Duration(_) => "schedule.durationMinutes",
        }
    }
}

impl Schedule {
    /// Validates and parses a schedule.
    ///
    /// * `cron`: exactly five fields (see the module documentation); croner's reason is included
    ///   in the error. A pattern that never matches is refused too.
    /// * `duration_minutes`: `1..=MAX_DURATION_MINUTES`.
    /// * `time_zone`: an IANA name known to the bundled tz database (`Europe/Berlin`, `UTC`).
    pub fn parse(
        cron: &str,
        duration_minutes: i64,
        time_zone: &str,
    ) -> Result<Schedule, ScheduleError> {
        let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
        let parsed = parser.parse(cron).map_err(|error| {
            ScheduleError::Cron(format!(
                "`{cron}` is not a valid 5-field cron pattern (minute hour day-of-month month \
                 day-of-week): {error}"
            ))
        })?;
        // Refuse patterns that can never fire (`0 0 30 2 *`): searching them would otherwise
        // cost a long fruitless walk on every request. 29 years from a leap year cover every
        // pattern that matches at all (29 February on a given weekday recurs within 28 years).
        let probe = NaiveDate::from_ymd_opt(2000, 1, 1)
            .and_then(|date| date.and_hms_opt(0, 0, 0))
            .ok_or_else(|| ScheduleError::Cron("internal: bad probe date".to_owned()))?;
        let matches_ever = parsed
            .find_next_occurrence(&probe, true)
            .is_ok_and(|at| at < probe + chrono::Duration::days(29 * 366));
        if !matches_ever {
            return Err(ScheduleError::Cron(format!(
                "`{cron}` never matches any date (check day-of-month against month)"
            )));
        }
        if !(1..=MAX_DURATION_MINUTES).contains(&duration_minutes) {
            return Err(ScheduleError::Duration(format!(
                "durationMinutes must be between 1 and {MAX_DURATION_MINUTES} (one year), got \
                 {duration_minutes}"
            )));
        }
        let zone = TimeZone::get(time_zone).map_err(|_| {
            ScheduleError::TimeZone(format!(
                "`{time_zone}` is not a known IANA time zone (e.g. Europe/Berlin, \
                 America/New_York, UTC)"
            ))
        })?;
        Ok(Schedule {
            cron_text: cron.to_owned(),
            cron: parsed,
            time_zone_text: time_zone.to_owned(),
            time_zone: zone,
            duration_minutes,
        })
    }

    /// The pattern as given.
    pub fn cron(&self) -> &str {
        &self.cron_text
    }

    /// The time zone name as given.
    pub fn time_zone(&self) -> &str {
        &self.time_zone_text
    }

    pub fn duration_minutes(&self) -> i64 {
        self.duration_minutes
    }

    /// The window in force at `now`, if any.
    ///
    /// `start` is the earliest start whose window contains `now`. When windows overlap (the
    /// duration is longer than the gap between starts), `end` is the end of the *last* window
    /// that has started by `now`, so the reported "active until" is not cut short by an
    /// earlier window that is about to close. Windows that start after `now` are not chained in
    /// (that chain could be endless).
    ///
    /// Cost: one search for the first start after `now - duration`; outside a window that is
    /// all. Inside one, a short walk over the following starts, or for dense patterns a
    /// bounded binary search (about 35 searches), never a walk over every start.
    pub fn window_at(&self, now: Timestamp) -> Option<Window> {
        let after = now.plus_minutes(-self.duration_minutes);
        let first = self.next_start_after(after)?;
        if first > now {
            return None;
        }
        let mut last = first;
        let mut walked = 0;
        loop {
            match self.next_start_after(last) {
                Some(next) if next <= now => {
                    last = next;
                    walked += 1;
                    if walked >= MAX_CHAIN_WALK {
                        last = self.latest_start_at_or_before(last, now);
                        break;
                    }
                }
                _ => break,
            }
        }
        Some(Window {
            start: first,
            end: last.plus_minutes(self.duration_minutes),
        })
    }

    /// The first window that starts strictly after `now` (not chained with later ones).
    pub fn next_window_after(&self, now: Timestamp) -> Option<Window> {
        let start = self.next_start_after(now)?;
        Some(Window {
            start,
            end: start.plus_minutes(self.duration_minutes),
        })
    }

    /// The latest start `<= now`, knowing that `known <= now` is a start. Binary search on the
    /// instant `x` for the largest `x` whose next start is still `<= now` (at most ~45 steps for
    /// any span an i64 of milliseconds can hold within jiff's range).
    fn latest_start_at_or_before(&self, known: Timestamp, now: Timestamp) -> Timestamp {
        // Invariant: next_start_after(lo) <= now; next_start_after(hi) > now (or none).
        let mut lo = known;
        let mut hi = now;
        let mut best = known;
        for _ in 0..64 {
            let gap = hi.millis_since(lo);
            if gap <= 1 {
                break;
            }
            let mid = lo.plus_millis(gap / 2);
            match self.next_start_after(mid) {
                Some(start) if start <= now => {
                    lo = mid;
                    best = start;
                }
                _ => hi = mid,
            }
        }
        match self.next_start_after(lo) {
            Some(start) if start <= now => max(start, best),
            _ => best,
        }
    }

    /// The first start strictly after `after`, as an instant.
    ///
    /// The walk over civil times begins at `after` read with the smallest UTC offset in force
    /// around it (now or two days earlier), which is never later than the civil time of any
    /// occurrence whose instant is after `after`, gaps included (a gapped civil time resolves
    /// with the offset from before the gap). Occurrences at or before `after`, and those not
    /// after one the walk already produced (the gap case), are skipped.
    fn next_start_after(&self, after: Timestamp) -> Option<Timestamp> {
        let instant = jiff::Timestamp::from_millisecond(after.unix_millis()).ok()?;
        let earlier =
            jiff::Timestamp::from_millisecond(after.unix_millis().saturating_sub(2 * 86_400_000))
                .unwrap_or(instant);
        let offset = min(
            self.time_zone.to_offset(instant),
            self.time_zone.to_offset(earlier),
        );
        let civil_start = offset.to_datetime(instant);
        let mut cursor = NaiveDate::from_ymd_opt(
            i32::from(civil_start.year()),
            u32::try_from(civil_start.month()).ok()?,
            u32::try_from(civil_start.day()).ok()?,
        )?
        .and_hms_opt(
            u32::try_from(civil_start.hour()).ok()?,
            u32::try_from(civil_start.minute()).ok()?,
            0,
        )?;
        let mut inclusive = true;
        let mut highest: Option<Timestamp> = None;
        for _ in 0..MAX_SCAN_STEPS {
            let civil_match = self.cron.find_next_occurrence(&cursor, inclusive).ok()?;
            inclusive = false;
            cursor = civil_match;
            let start = self.resolve(civil_match)?;
            if highest.is_none_or(|high| start > high) {
                highest = Some(start);
                if start > after {
                    return Some(start);
                }
            }
        }
        None
    }

    /// The instant of a wall-clock time in the zone: gap → shifted later, fold → earlier.
    fn resolve(&self, at: NaiveDateTime) -> Option<Timestamp> {
        use chrono::{Datelike, Timelike};
        let civil_at = civil::DateTime::new(
            i16::try_from(at.year()).ok()?,
            i8::try_from(at.month()).ok()?,
            i8::try_from(at.day()).ok()?,
            i8::try_from(at.hour()).ok()?,
            i8::try_from(at.minute()).ok()?,
            i8::try_from(at.second()).ok()?,
            0,
        )
        .ok()?;
        let instant = self
            .time_zone
            .to_ambiguous_timestamp(civil_at)
            .compatible()
            .ok()?;
        Some(Timestamp::from_unix_millis(instant.as_millisecond()))
    }
}

/// A schedule as written: on the wire, in the database and in the settings file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleSpec {
    /// A 5-field cron expression for the start of each window, e.g. `0 16 * * FRI`: minute
    /// hour day-of-month month day-of-week, with names (`JAN`, `FRI`), ranges, lists, steps, `L`,
    /// `W`, `#` and `?`, or one of `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
    /// `@hourly`. A pattern that never matches (`0 0 30 2 *`) is refused (400, naming
    /// `schedule.cron`); the grammar is in the description, not in the pattern.
    #[schema(
        min_length = 1,
        pattern = r"[^\t\n\x0B\x0C\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]",
        example = "0 16 * * FRI"
    )]
    pub cron: String,
    /// How long each window lasts: 1 to 525600 (a year).
    #[serde(deserialize_with = "crate::wire::whole")]
    #[schema(minimum = 1, maximum = 525_600)]
    pub duration_minutes: i64,
    /// The IANA time zone the expression is read in, e.g. `Europe/Berlin`: one of the bundled
    /// tz database's names (any letter case).
    #[schema(schema_with = time_zone_schema)]
    pub time_zone: String,
}

/// The time zones a schedule may name: every name of the tz database bundled into the binary.
fn time_zone_schema() -> utoipa::openapi::schema::Object {
    let mut names: Vec<String> = jiff::tz::db()
        .available()
        .map(|name| name.as_str().to_owned())
        .collect();
    names.sort();
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(names))
        .description(Some(
            "The IANA time zone the expression is read in, e.g. `Europe/Berlin`: a name of the \
             tz database bundled into the server (letter case does not matter).",
        ))
        .examples(["Europe/Berlin"])
        .build()
}

impl ScheduleSpec {
    pub fn parse(&self) -> Result<Schedule, ScheduleError> {
        Schedule::parse(&self.cron, self.duration_minutes, &self.time_zone)
    }
}

impl Schedule {
    pub fn spec(&self) -> ScheduleSpec {
        ScheduleSpec {
            cron: self.cron().to_owned(),
            duration_minutes: self.duration_minutes(),
            time_zone: self.time_zone().to_owned(),
        }
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.spec().serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ScheduleSpec::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
