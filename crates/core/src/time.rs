//! Instants as the product sees them: UTC, millisecond precision, never read from a clock here.
//!
//! The core receives `now` as an argument; only the edges (the app's clock, tests) make timestamps.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A UTC instant in whole milliseconds since the Unix epoch.
///
/// Millisecond precision is what the API shows (RFC 3339 with three fraction digits), what the
/// store keeps, and what the audit hash covers, so a value survives every round trip unchanged.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// The text could not be read as an RFC 3339 instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 time (expected e.g. 2026-01-01T00:00:00Z): {0}")]
pub struct TimestampParseError(String);

impl Timestamp {
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    pub const fn from_unix_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    pub const fn plus_millis(self, millis: i64) -> Self {
        Timestamp(self.0.saturating_add(millis))
    }

    pub const fn plus_seconds(self, seconds: i64) -> Self {
        self.plus_millis(seconds.saturating_mul(1_000))
    }

    pub const fn plus_minutes(self, minutes: i64) -> Self {
        self.plus_millis(minutes.saturating_mul(60_000))
    }

    /// Milliseconds from `earlier` to `self` (negative when `earlier` is later).
    pub const fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn from_offset_datetime(at: OffsetDateTime) -> Self {
        let millis = at.unix_timestamp_nanos() / 1_000_000;
        Timestamp(i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX }))
    }

    fn to_offset_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// `2026-11-26T05:34:32.123Z`: always UTC, always three fraction digits, so the text sorts
    /// in time order.
    pub fn to_rfc3339(self) -> String {
        match self.rfc3339_fast() {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => self.rfc3339_slow(),
        }
    }

    /// Years 0000 to 9999 by integer arithmetic (every response and audit entry prints times,
    /// so this is on the hot path); `None` outside them.
    fn rfc3339_fast(self) -> Option<[u8; 24]> {
        /// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
        const FIRST: i64 = -62_167_219_200_000;
        const LAST: i64 = 253_402_300_799_999;
        if !(FIRST..=LAST).contains(&self.0) {
            return None;
        }
        let days = self.0.div_euclid(86_400_000);
        let in_day = self.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, value: i64, width: usize| {
            let mut v = value;
            for i in (0..width).rev() {
                out[at + i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
                v /= 10;
            }
        };
        put(0, year, 4);
        put(5, month, 2);
        put(8, day, 2);
        put(11, in_day / 3_600_000, 2);
        put(14, in_day / 60_000 % 60, 2);
        put(17, in_day / 1_000 % 60, 2);
        put(20, in_day % 1_000, 3);
        Some(out)
    }

    fn rfc3339_slow(self) -> String {
        let at = self.to_offset_datetime();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.millisecond()
        )
    }

    /// Reads any RFC 3339 instant (any offset, any precision); sub-millisecond digits are dropped.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampParseError> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(Self::from_offset_datetime)
            .map_err(|_| TimestampParseError(text.to_owned()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rfc3339_fast() {
            Some(bytes) => f.write_str(std::str::from_utf8(&bytes).map_err(|_| fmt::Error)?),
            None => f.write_str(&self.rfc3339_slow()),
        }
    }
}

/// The proleptic Gregorian (year, month, day) of a day number counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339_fast() {
            Some(bytes) => serializer
                .serialize_str(std::str::from_utf8(&bytes).map_err(serde::ser::Error::custom)?),
            None => serializer.serialize_str(&self.rfc3339_slow()),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339 UTC time with millisecond precision"))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z() {
        let t = Timestamp::from_unix_millis(1_764_135_272_123);
        assert_eq!(t.to_rfc3339(), "2025-11-26T05:34:32.123Z");
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn parses_any_offset_and_round_trips() {
        let t = Timestamp::parse_rfc3339("2025-11-26T06:34:32.123456+01:00").unwrap();
        assert_eq!(t, Timestamp::from_unix_millis(1_764_135_272_123));
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()).unwrap(), t);
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }

    proptest::proptest! {
        /// The fast formatter against the `time` crate's calendar, over years 0000 to 9999.
        #[test]
        fn fast_formatting_matches_the_calendar(millis in -62_167_219_200_000i64..=253_402_300_799_999) {
            let t = Timestamp::from_unix_millis(millis);
            proptest::prop_assert_eq!(t.to_rfc3339(), t.rfc3339_slow());
        }
    }

    #[test]
    fn formats_the_edges_of_the_fast_range() {
        for millis in [
            -62_167_219_200_000,
            253_402_300_799_999,
            -1,
            0,
            951_782_400_000,
            4_107_542_400_000,
        ] {
            let t = Timestamp::from_unix_millis(millis);
            assert_eq!(t.to_rfc3339(), t.rfc3339_slow(), "{millis}");
        }
        // Outside it, the calendar's answer as before.
        let far = Timestamp::from_unix_millis(253_402_300_800_000);
        assert_eq!(far.to_rfc3339(), far.rfc3339_slow());
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(
            Timestamp::from_unix_millis(i64::MAX).plus_minutes(1),
            Timestamp::from_unix_millis(i64::MAX)
        );
        let t = Timestamp::from_unix_millis(1_000);
        assert_eq!(t.plus_minutes(1).millis_since(t), 60_000);
    }
}
