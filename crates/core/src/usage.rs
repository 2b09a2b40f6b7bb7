//! What is metered (docs/security.md#quotas), and over which period: calendar months in UTC.

use time::{Date, Month, OffsetDateTime, Time};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Verifications,
    /// Messages accepted for sending.
    Emails,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Verifications => "verifications",
            Metric::Emails => "emails",
        }
    }
}

/// The calendar month (UTC) that `now` falls in: its first instant, and the next month's.
pub fn month_of(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let now = now.to_offset(time::UtcOffset::UTC);
    let first = |year: i32, month: Month| {
        Date::from_calendar_date(year, month, 1)
            .map(|date| date.with_time(Time::MIDNIGHT).assume_utc())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let start = first(now.year(), now.month());
    let end = match now.month() {
        Month::December => first(now.year() + 1, Month::January),
        month => first(now.year(), month.next()),
    };
    (start, end)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn months_begin_on_the_first_at_midnight_utc() {
        let (start, end) = month_of(datetime!(2026-11-25 18:00 UTC));
        assert_eq!(
            (start, end),
            (
                datetime!(2026-11-01 0:00 UTC),
                datetime!(2026-12-01 0:00 UTC)
            )
        );
        let (start, end) = month_of(datetime!(2026-12-31 23:59:59 UTC));
        assert_eq!(
            (start, end),
            (
                datetime!(2026-12-01 0:00 UTC),
                datetime!(2027-01-01 0:00 UTC)
            )
        );
        let (start, _) = month_of(datetime!(2026-12-01 0:30 +01:00));
        assert_eq!(start, datetime!(2026-11-01 0:00 UTC), "UTC decides");
    }
}
