//! Civil dates of generated days: which weekday a day is and which month file it goes to.
//!
//! Invariants: all arithmetic is on whole days since 1970-01-01 (UTC, proleptic
//! Gregorian), integer-only; a day's month never depends on anything but its number.

/// Milliseconds in a day.
pub(crate) const DAY_MS: u64 = 86_400_000;

/// A calendar month, as in a log file's name `YYYY-MM.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Month {
    year: u32,
    month: u32,
}

impl Month {
    /// The month containing `unix_day` (days since 1970-01-01).
    pub(crate) fn of_day(unix_day: u64) -> Self {
        let (year, month, _) = civil_from_days(unix_day);
        Self { year, month }
    }

    /// The month containing the Unix millisecond timestamp `ts_ms`.
    pub(crate) fn of_timestamp_ms(ts_ms: u64) -> Self {
        Self::of_day(ts_ms / DAY_MS)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// `ts_ms` as RFC 3339 in UTC with milliseconds: `2026-01-05T02:38:36.417Z`.
pub(crate) fn rfc3339(ts_ms: u64) -> String {
    let (y, m, d) = civil_from_days(ts_ms / DAY_MS);
    let ms_of_day = ts_ms % DAY_MS;
    let (h, min, sec, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{sec:02}.{ms:03}Z")
}

/// Monday is 0. 1970-01-01 was a Thursday.
pub(crate) fn weekday(unix_day: u64) -> u64 {
    (unix_day + crate::chat_log::EPOCH_WEEKDAY) % 7
}

/// `(year, month, day)` of `unix_day`: Howard Hinnant's `civil_from_days`, restricted to
/// days after 1970 so it stays in unsigned arithmetic.
fn civil_from_days(unix_day: u64) -> (u32, u32, u32) {
    let z = unix_day + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year as u32, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_767_580_716_417), "2026-01-05T02:38:36.417Z");
        assert_eq!(rfc3339(951_782_400_000 - 1), "2000-02-28T23:59:59.999Z");
    }

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_458), (2026, 1, 5));
        assert_eq!(civil_from_days(20_485), (2026, 2, 1));
        // 2028 is a leap year: 29 February exists, then 1 March.
        assert_eq!(civil_from_days(21_243), (2028, 2, 29));
        assert_eq!(civil_from_days(21_244), (2028, 3, 1));
        assert_eq!(civil_from_days(20_818), (2026, 12, 31));
    }

    #[test]
    fn weekdays_and_month_names() {
        assert_eq!(weekday(20_458), 0, "2026-01-05 is a Monday");
        assert_eq!(weekday(20_463), 5, "2026-01-10 is a Saturday");
        assert_eq!(Month::of_day(20_485).to_string(), "2026-02");
        assert_eq!(
            Month::of_timestamp_ms(20_458 * DAY_MS + 5).to_string(),
            "2026-01"
        );
    }
}
