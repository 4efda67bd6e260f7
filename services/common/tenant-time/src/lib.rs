//! A tenant's time zone and the local calendar the services derive from it.
//!
//! Every tenant has an IANA time zone (`America/Sao_Paulo`), UTC unless its managers set one.
//! The day a protocol number carries, the date of a service day and the date filters of the
//! read APIs are dates in that zone: a tenant in São Paulo gets today's prefix until midnight
//! there, not from 21:00 (midnight UTC). Instants stay UTC everywhere else.
//!
//! Events written before tenants had zones carry none (an empty string): they read as UTC, so a
//! replay rebuilds what was built then.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name that is not in the IANA time zone database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0:?}: use an IANA name such as \"America/Sao_Paulo\" or \"UTC\"")]
pub struct UnknownTimeZone(pub String);

/// How far ahead of UTC any zone's clock is today (UTC+14, the Line Islands): a local date starts
/// at most this long before the same date's UTC midnight.
pub const MOST_AHEAD: Duration = Duration::hours(14);

/// How far behind UTC any zone's clock is today (UTC−12): a local date ends at most this long
/// after the same date's UTC end.
pub const MOST_BEHIND: Duration = Duration::hours(12);

/// A tenant's time zone, valid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantZone(Tz);

impl Default for TenantZone {
    fn default() -> Self {
        Self::UTC
    }
}

impl TenantZone {
    /// The zone of a tenant that never set one.
    pub const UTC: TenantZone = TenantZone(Tz::UTC);

    /// An IANA zone name as a caller typed it (exact spelling, e.g. `America/Sao_Paulo`).
    pub fn parse(name: &str) -> Result<Self, UnknownTimeZone> {
        Tz::from_str(name).map(Self).map_err(|_| UnknownTimeZone(name.to_owned()))
    }

    /// A zone as an event or a read model stored it: empty (written before zones existed) is UTC.
    pub fn from_stored(name: &str) -> Result<Self, UnknownTimeZone> {
        if name.is_empty() { Ok(Self::UTC) } else { Self::parse(name) }
    }

    /// The IANA name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    pub fn is_utc(&self) -> bool {
        *self == Self::UTC
    }

    /// The calendar date in this zone at `instant`.
    pub fn local_date(&self, instant: DateTime<Utc>) -> NaiveDate {
        instant.with_timezone(&self.0).date_naive()
    }

    /// The first instant of `date` in this zone: local midnight, or, where a daylight-saving
    /// change skips midnight, the first local time that exists that day.
    pub fn start_of(&self, date: NaiveDate) -> DateTime<Utc> {
        let midnight = date.and_time(NaiveTime::MIN);
        // Gaps are at most a few hours; look in 15-minute steps for the first existing time.
        for step in 0..=24 * 4 {
            let local = midnight + Duration::minutes(15 * step);
            match self.0.from_local_datetime(&local) {
                LocalResult::Single(at) => return at.with_timezone(&Utc),
                LocalResult::Ambiguous(earliest, _) => return earliest.with_timezone(&Utc),
                LocalResult::None => {}
            }
        }
        // No zone skips a whole day at midnight; if one did, its UTC midnight is the best answer.
        midnight.and_utc()
    }

    /// The instants `[from, to)` of the local days `range` names (both ends included).
    pub fn instants_of(&self, range: DateRange) -> InstantRange {
        InstantRange {
            from: range.from.map(|date| self.start_of(date)),
            to: range.to.and_then(|date| date.succ_opt()).map(|next| self.start_of(next)),
        }
    }
}

impl fmt::Display for TenantZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TenantZone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TenantZone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::from_stored(&name).map_err(serde::de::Error::custom)
    }
}

/// Local calendar days, both ends included; an end left open is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateRange {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Why a date filter was refused, for the field violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidDateRange {
    pub field: &'static str,
    pub message: String,
}

impl DateRange {
    /// Two optional `YYYY-MM-DD` dates (empty: open) as the request's fields `from_field` and
    /// `to_field` carried them.
    pub fn parse(
        from_field: &'static str,
        from: &str,
        to_field: &'static str,
        to: &str,
    ) -> Result<Self, InvalidDateRange> {
        let range = Self { from: parse_date(from_field, from)?, to: parse_date(to_field, to)? };
        if let (Some(first), Some(last)) = (range.from, range.to)
            && last < first
        {
            return Err(InvalidDateRange { field: to_field, message: format!("{last} is before {first}") });
        }
        Ok(range)
    }

    pub fn is_open(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
}

fn parse_date(field: &'static str, value: &str) -> Result<Option<NaiveDate>, InvalidDateRange> {
    if value.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| InvalidDateRange { field, message: format!("{value:?} is not a date (YYYY-MM-DD)") })
}

/// Instants `[from, to)`; an end left open is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstantRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl InstantRange {
    /// The instants in both ranges.
    pub fn intersect(self, other: InstantRange) -> InstantRange {
        InstantRange { from: later(self.from, other.from, std::cmp::max), to: later(self.to, other.to, std::cmp::min) }
    }
}

fn later(
    a: Option<DateTime<Utc>>,
    b: Option<DateTime<Utc>>,
    pick: fn(DateTime<Utc>, DateTime<Utc>) -> DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (one, None) | (None, one) => one,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn every_zone_is_within_the_offsets_the_bounds_name() {
        use chrono::Offset;
        let mut seen = (0i64, 0i64);
        for tz in chrono_tz::TZ_VARIANTS {
            // Monthly from 2000 to 2060 (the database's rules carry on into the future).
            for month in 0..12 * 60 {
                let instant = utc(2000 + month / 12, (month % 12) as u32 + 1, 15, 12, 0);
                let offset = i64::from(instant.with_timezone(&tz).offset().fix().local_minus_utc());
                assert!(
                    -MOST_BEHIND.num_seconds() <= offset && offset <= MOST_AHEAD.num_seconds(),
                    "{} is {offset} s from UTC at {instant}",
                    tz.name()
                );
                seen = (seen.0.min(offset), seen.1.max(offset));
            }
        }
        assert_eq!(seen, (-MOST_BEHIND.num_seconds(), MOST_AHEAD.num_seconds()), "the bounds are tight");
    }

    #[test]
    fn half_past_eleven_at_night_in_sao_paulo_is_still_that_day_there() {
        let sao_paulo = TenantZone::parse("America/Sao_Paulo").unwrap();
        // 02:30 UTC on the 25th is 23:30 on the 24th in São Paulo (UTC−3).
        let instant = utc(2026, 11, 25, 2, 30);
        assert_eq!(sao_paulo.local_date(instant), date(2026, 11, 24));
        assert_eq!(TenantZone::UTC.local_date(instant), date(2026, 11, 25));
    }

    #[test]
    fn unknown_names_are_refused_and_stored_empty_names_are_utc() {
        assert_eq!(TenantZone::parse("Mars/Olympus_Mons"), Err(UnknownTimeZone("Mars/Olympus_Mons".into())));
        assert!(TenantZone::parse("").is_err());
        assert_eq!(TenantZone::from_stored(""), Ok(TenantZone::UTC));
        assert_eq!(TenantZone::from_stored("Asia/Tokyo").map(|z| z.name()), Ok("Asia/Tokyo"));
        assert_eq!(TenantZone::default(), TenantZone::UTC);
    }

    #[test]
    fn a_local_day_is_the_instants_between_two_local_midnights() {
        let sao_paulo = TenantZone::parse("America/Sao_Paulo").unwrap();
        let range = DateRange::parse("from_date", "2026-11-24", "to_date", "2026-11-24").unwrap();
        let instants = sao_paulo.instants_of(range);
        assert_eq!(instants.from, Some(utc(2026, 11, 24, 3, 0)));
        assert_eq!(instants.to, Some(utc(2026, 11, 25, 3, 0)));
    }

    #[test]
    fn a_midnight_skipped_by_daylight_saving_starts_the_day_at_the_first_existing_time() {
        // São Paulo's clocks jumped from 00:00 to 01:00 on 2018-11-04 (UTC−3 → UTC−2).
        let sao_paulo = TenantZone::parse("America/Sao_Paulo").unwrap();
        assert_eq!(sao_paulo.start_of(date(2018, 11, 4)), utc(2018, 11, 4, 3, 0));
    }

    #[test]
    fn date_ranges_are_checked_at_the_edge() {
        assert!(DateRange::parse("from_date", "", "to_date", "").unwrap().is_open());
        let bad = DateRange::parse("from_date", "24/11/2026", "to_date", "").unwrap_err();
        assert_eq!(bad.field, "from_date");
        let reversed = DateRange::parse("from_date", "2026-11-25", "to_date", "2026-11-24").unwrap_err();
        assert_eq!(reversed.field, "to_date");
    }

    #[test]
    fn instant_ranges_intersect() {
        let a = InstantRange { from: Some(utc(2026, 1, 1, 0, 0)), to: None };
        let b = InstantRange { from: Some(utc(2026, 1, 2, 0, 0)), to: Some(utc(2026, 1, 3, 0, 0)) };
        assert_eq!(a.intersect(b), b);
        assert_eq!(InstantRange::default().intersect(a), a);
    }

    #[test]
    fn a_zone_round_trips_through_serde_and_reads_empty_as_utc() {
        let zone = TenantZone::parse("America/Sao_Paulo").unwrap();
        let json = serde_json::to_string(&zone).unwrap();
        assert_eq!(json, "\"America/Sao_Paulo\"");
        assert_eq!(serde_json::from_str::<TenantZone>(&json).unwrap(), zone);
        assert_eq!(serde_json::from_str::<TenantZone>("\"\"").unwrap(), TenantZone::UTC);
    }
}
