//! Event time on the Asia/Ho_Chi_Minh calendar and the windows metrics are reported for.
//!
//! Vietnam has kept UTC+07:00 without daylight saving since 1975, so a calendar day is a fixed
//! offset from UTC: no time-zone database is consulted and the result cannot depend on the host.

use std::fmt;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

/// Offset of Asia/Ho_Chi_Minh from UTC.
pub const VN_OFFSET_SECS: i64 = 7 * 3600;
const DAY_SECS: i64 = 86_400;

/// Unix seconds of an RFC 3339 timestamp with an offset (the envelope's `occurred_at`).
pub fn parse_timestamp(text: &str) -> Result<i64, String> {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("{text:?} is not an RFC 3339 timestamp: {e}"))
}

/// A calendar day in Vietnam, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Day(pub i32);

fn epoch() -> Date {
    jiff::civil::date(1970, 1, 1)
}

impl Day {
    /// The Vietnamese calendar day an instant (unix seconds) falls on.
    pub fn of(secs: i64) -> Day {
        Day((secs + VN_OFFSET_SECS).div_euclid(DAY_SECS) as i32)
    }
    pub fn from_date(date: Date) -> Day {
        let secs = date.duration_since(epoch()).as_secs();
        Day((secs / DAY_SECS) as i32)
    }
    pub fn date(self) -> Date {
        epoch()
            .checked_add(jiff::Span::new().days(i64::from(self.0)))
            .expect("day within jiff's range")
    }
    pub fn parse(text: &str) -> Option<Day> {
        text.parse::<Date>().ok().map(Day::from_date)
    }
    pub fn plus(self, days: i32) -> Day {
        Day(self.0 + days)
    }
    fn year(self) -> i16 {
        self.date().year()
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date())
    }
}

/// A reporting window. Calendar windows are named by their period; the rolling windows always
/// end on the projection's current day (the event-time watermark), so they have one key each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    Day(Day),
    Rolling7,
    Rolling30,
    Month { year: i16, month: i8 },
    Quarter { year: i16, quarter: i8 },
    YearToDate(i16),
}

/// The window kinds, in the order tables list them.
pub const WINDOW_KINDS: [&str; 6] = ["day", "rolling7", "rolling30", "month", "quarter", "ytd"];

impl Window {
    pub fn kind(&self) -> &'static str {
        match self {
            Window::Day(_) => "day",
            Window::Rolling7 => "rolling7",
            Window::Rolling30 => "rolling30",
            Window::Month { .. } => "month",
            Window::Quarter { .. } => "quarter",
            Window::YearToDate(_) => "ytd",
        }
    }

    /// The window's name in keys and tables: `day.2026-06-09`, `rolling7`, `month.2026-06`,
    /// `quarter.2026-Q2`, `ytd.2026`.
    pub fn id(&self) -> String {
        match self {
            Window::Day(day) => format!("day.{day}"),
            Window::Rolling7 => "rolling7".into(),
            Window::Rolling30 => "rolling30".into(),
            Window::Month { year, month } => format!("month.{year:04}-{month:02}"),
            Window::Quarter { year, quarter } => format!("quarter.{year:04}-Q{quarter}"),
            Window::YearToDate(year) => format!("ytd.{year:04}"),
        }
    }

    pub fn parse(id: &str) -> Option<Window> {
        let (kind, rest) = id.split_once('.').unwrap_or((id, ""));
        let number = |s: &str| s.parse::<i16>().ok();
        match (kind, rest) {
            ("rolling7", "") => Some(Window::Rolling7),
            ("rolling30", "") => Some(Window::Rolling30),
            ("day", date) => Day::parse(date).map(Window::Day),
            ("month", ym) => {
                let (y, m) = ym.split_once('-')?;
                let month = number(m)?;
                ((1..=12).contains(&month)).then_some(Window::Month {
                    year: number(y)?,
                    month: month as i8,
                })
            }
            ("quarter", yq) => {
                let (y, q) = yq.split_once("-Q")?;
                let quarter = number(q)?;
                ((1..=4).contains(&quarter)).then_some(Window::Quarter {
                    year: number(y)?,
                    quarter: quarter as i8,
                })
            }
            ("ytd", y) => number(y).map(Window::YearToDate),
            _ => None,
        }
    }

    /// The calendar windows that contain `day` (not the rolling ones).
    pub fn calendar_containing(day: Day) -> [Window; 4] {
        let date = day.date();
        let (year, month) = (date.year(), date.month());
        [
            Window::Day(day),
            Window::Month { year, month },
            Window::Quarter {
                year,
                quarter: (month - 1) / 3 + 1,
            },
            Window::YearToDate(year),
        ]
    }

    /// First and last day the window covers when the current day is `now`: calendar windows
    /// end at `now` while they are under way. `None` when the window starts after `now`.
    pub fn bounds(&self, now: Day) -> Option<(Day, Day)> {
        let (from, to) = match *self {
            Window::Day(day) => (day, day),
            Window::Rolling7 => (now.plus(-6), now),
            Window::Rolling30 => (now.plus(-29), now),
            Window::Month { year, month } => {
                let first = jiff::civil::date(year, month, 1);
                (Day::from_date(first), Day::from_date(first.last_of_month()))
            }
            Window::Quarter { year, quarter } => {
                let first = jiff::civil::date(year, (quarter - 1) * 3 + 1, 1);
                let last = jiff::civil::date(year, quarter * 3, 1).last_of_month();
                (Day::from_date(first), Day::from_date(last))
            }
            Window::YearToDate(year) => (
                Day::from_date(jiff::civil::date(year, 1, 1)),
                Day::from_date(jiff::civil::date(year, 12, 31)),
            ),
        };
        (from <= now).then_some((from, to.min(now)))
    }

    /// Every calendar window (month, quarter, year to date) from the one containing `from` to
    /// the one containing `to`, in order.
    pub fn periods_between(from: Day, to: Day) -> Vec<Window> {
        let mut out = Vec::new();
        if from > to {
            return out;
        }
        let (a, b) = (from.date(), to.date());
        let mut month = jiff::civil::date(a.year(), a.month(), 1);
        let mut last_quarter = None;
        while month <= b {
            out.push(Window::Month {
                year: month.year(),
                month: month.month(),
            });
            let quarter = Window::Quarter {
                year: month.year(),
                quarter: (month.month() - 1) / 3 + 1,
            };
            if last_quarter != Some(quarter) {
                out.push(quarter);
                last_quarter = Some(quarter);
            }
            month = month
                .checked_add(jiff::Span::new().months(1))
                .expect("month within range");
        }
        for year in from.year()..=to.year() {
            out.push(Window::YearToDate(year));
        }
        out
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_vietnamese_calendar() {
        let late = parse_timestamp("2026-06-09T23:59:59+07:00").unwrap();
        let utc_same_instant = parse_timestamp("2026-06-09T16:59:59Z").unwrap();
        assert_eq!(late, utc_same_instant);
        assert_eq!(Day::of(late).to_string(), "2026-06-09");
        assert_eq!(Day::of(late + 1).to_string(), "2026-06-10");
        assert_eq!(Day::parse("2026-06-09").unwrap(), Day::of(late));
        assert_eq!(Day::of(-1).to_string(), "1970-01-01");
    }

    #[test]
    fn window_ids_round_trip_and_bounds_stop_at_now() {
        let now = Day::parse("2026-05-20").unwrap();
        for id in [
            "day.2026-05-20",
            "rolling7",
            "rolling30",
            "month.2026-05",
            "quarter.2026-Q2",
            "ytd.2026",
        ] {
            let window = Window::parse(id).unwrap();
            assert_eq!(window.id(), id);
        }
        let bounds = |id: &str| {
            Window::parse(id)
                .unwrap()
                .bounds(now)
                .map(|(a, b)| format!("{a}..{b}"))
        };
        assert_eq!(bounds("rolling7").unwrap(), "2026-05-14..2026-05-20");
        assert_eq!(bounds("rolling30").unwrap(), "2026-04-21..2026-05-20");
        assert_eq!(bounds("month.2026-02").unwrap(), "2026-02-01..2026-02-28");
        assert_eq!(bounds("month.2026-05").unwrap(), "2026-05-01..2026-05-20");
        assert_eq!(bounds("quarter.2026-Q1").unwrap(), "2026-01-01..2026-03-31");
        assert_eq!(bounds("ytd.2026").unwrap(), "2026-01-01..2026-05-20");
        assert_eq!(bounds("ytd.2025").unwrap(), "2025-01-01..2025-12-31");
        assert_eq!(bounds("month.2026-06"), None);
        for bad in [
            "month.2026-13",
            "quarter.2026-Q5",
            "day.2026-02-30",
            "week",
            "",
        ] {
            assert_eq!(Window::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn periods_between_lists_each_month_quarter_and_year_once() {
        let ids: Vec<String> = Window::periods_between(
            Day::parse("2025-11-15").unwrap(),
            Day::parse("2026-02-01").unwrap(),
        )
        .iter()
        .map(Window::id)
        .collect();
        assert_eq!(
            ids,
            [
                "month.2025-11",
                "quarter.2025-Q4",
                "month.2025-12",
                "month.2026-01",
                "quarter.2026-Q1",
                "month.2026-02",
                "ytd.2025",
                "ytd.2026"
            ]
        );
    }
}
