//! Time in the simulation: unix seconds (UTC) in, RFC 3339 with +07:00 (Asia/Ho_Chi_Minh, no
//! daylight saving) out, and the office calendar of a Vietnamese agency: Monday to Friday,
//! 07:30-11:30 and 13:30-17:00. Public holidays are not modelled.
//!
//! Hand-rolled rather than jiff because it runs several times per generated event.

/// Offset of Asia/Ho_Chi_Minh from UTC, in seconds.
pub const OFFSET_SECS: i64 = 7 * 3600;
pub const DAY_SECS: i64 = 86_400;
/// Office sessions as [start, end) seconds of the local day.
const SESSIONS: [(i64, i64); 2] = [
    (7 * 3600 + 1800, 11 * 3600 + 1800),
    (13 * 3600 + 1800, 17 * 3600),
];
/// Working seconds in one working day (7.5 hours).
pub const WORKING_DAY_SECS: i64 = 4 * 3600 + 3 * 3600 + 1800;
/// End of the working day, seconds of the local day (17:00).
pub const CLOSE_SECS: i64 = 17 * 3600;

/// Local day number (days since 1970-01-01 in +07:00) and second of that day.
fn local(t: i64) -> (i64, i64) {
    let local = t + OFFSET_SECS;
    (local.div_euclid(DAY_SECS), local.rem_euclid(DAY_SECS))
}

fn utc(day: i64, second: i64) -> i64 {
    day * DAY_SECS + second - OFFSET_SECS
}

fn is_working_day(day: i64) -> bool {
    // 1970-01-01 was a Thursday: (day + 3) mod 7 is 0 for Monday.
    (day + 3).rem_euclid(7) < 5
}

/// Whether `t` falls inside office hours.
pub fn is_working_time(t: i64) -> bool {
    let (day, second) = local(t);
    is_working_day(day)
        && SESSIONS
            .iter()
            .any(|(start, end)| (*start..*end).contains(&second))
}

/// `t` if it is inside office hours, else the start of the next session.
pub fn next_working_instant(t: i64) -> i64 {
    let (mut day, second) = local(t);
    if is_working_day(day) {
        for (start, end) in SESSIONS {
            if second < start {
                return utc(day, start);
            }
            if second < end {
                return t;
            }
        }
    }
    // At most 3 days to skip (a weekend), bounded loop.
    for _ in 0..7 {
        day += 1;
        if is_working_day(day) {
            return utc(day, SESSIONS[0].0);
        }
    }
    unreachable!("a week always has a working day")
}

/// The instant `secs` seconds of office time after `t` (which is first moved into office hours).
pub fn add_working_secs(t: i64, secs: i64) -> i64 {
    let mut t = next_working_instant(t);
    let mut left = secs.max(0);
    // Whole working days first, so long durations cost O(1) loop iterations per week.
    while left >= WORKING_DAY_SECS {
        t = next_working_instant(t + DAY_SECS);
        // Moving a day forward keeps the time of day unless it lands on a weekend, where
        // next_working_instant restarts the day at opening; good enough for a simulation.
        left -= WORKING_DAY_SECS;
    }
    loop {
        let (day, second) = local(t);
        let session_end = SESSIONS
            .iter()
            .find(|(start, end)| *start <= second && second < *end)
            .map(|(_, end)| *end);
        let Some(end) = session_end else {
            t = next_working_instant(t);
            continue;
        };
        let room = end - second;
        if left < room {
            return t + left;
        }
        left -= room;
        t = next_working_instant(utc(day, end));
    }
}

/// 17:00 local time on the `days`-th working day after the day of `t` (the appointment date,
/// NgayHenTra, of a procedure whose legal time is `days` working days).
pub fn close_after_working_days(t: i64, days: u32) -> i64 {
    let (mut day, _) = local(t);
    let mut left = days.max(1);
    while left > 0 {
        day += 1;
        if is_working_day(day) {
            left -= 1;
        }
    }
    utc(day, CLOSE_SECS)
}

/// Local calendar date (year, month, day) of `t`.
pub fn local_date(t: i64) -> (i64, u32, u32) {
    civil_from_days(local(t).0)
}

/// RFC 3339 in +07:00, e.g. `2026-06-09T08:15:00+07:00`.
pub fn format_local(t: i64) -> String {
    let (day, second) = local(t);
    let (year, month, dom) = civil_from_days(day);
    let mut out = String::with_capacity(25);
    push_digits(&mut out, year.clamp(0, 9999) as u32, 4);
    out.push('-');
    push_digits(&mut out, month, 2);
    out.push('-');
    push_digits(&mut out, dom, 2);
    out.push('T');
    push_digits(&mut out, (second / 3600) as u32, 2);
    out.push(':');
    push_digits(&mut out, (second / 60 % 60) as u32, 2);
    out.push(':');
    push_digits(&mut out, (second % 60) as u32, 2);
    out.push_str("+07:00");
    out
}

/// `yyyymmdd` of the local date of `t`, as used inside dossier codes.
pub fn compact_date(t: i64) -> String {
    let (year, month, dom) = local_date(t);
    let mut out = String::with_capacity(8);
    push_digits(&mut out, year.clamp(0, 9999) as u32, 4);
    push_digits(&mut out, month, 2);
    push_digits(&mut out, dom, 2);
    out
}

pub fn push_digits(out: &mut String, value: u32, width: u32) {
    for i in (0..width).rev() {
        let digit = value / 10u32.pow(i) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Howard Hinnant's `civil_from_days`: proleptic Gregorian date of a day number.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let dom = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, dom)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    #[test]
    fn formats_like_jiff() {
        for t in [
            0,
            1_781_000_000,
            951_782_400,
            1_709_164_799,
            4_102_444_799,
            1_767_225_600 - 1,
        ] {
            let ours = format_local(t);
            let theirs = jiff::Timestamp::from_second(t)
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string();
            assert_eq!(ours, theirs, "{t}");
            assert_eq!(at(&ours), t);
        }
        assert_eq!(compact_date(at("2026-06-08T17:30:00Z")), "20260609");
    }

    #[test]
    fn office_hours() {
        let cases = [
            ("2026-06-09T08:15:00+07:00", true),  // Tuesday morning
            ("2026-06-09T07:29:59+07:00", false), // before opening
            ("2026-06-09T12:00:00+07:00", false), // lunch
            ("2026-06-09T16:59:59+07:00", true),
            ("2026-06-09T17:00:00+07:00", false),
            ("2026-06-13T09:00:00+07:00", false), // Saturday
            ("2026-06-14T09:00:00+07:00", false), // Sunday
        ];
        for (text, expected) in cases {
            assert_eq!(is_working_time(at(text)), expected, "{text}");
        }
    }

    #[test]
    fn next_working_instants() {
        let cases = [
            ("2026-06-09T08:15:00+07:00", "2026-06-09T08:15:00+07:00"),
            ("2026-06-09T05:00:00+07:00", "2026-06-09T07:30:00+07:00"),
            ("2026-06-09T12:00:00+07:00", "2026-06-09T13:30:00+07:00"),
            ("2026-06-09T18:00:00+07:00", "2026-06-10T07:30:00+07:00"),
            ("2026-06-12T17:00:00+07:00", "2026-06-15T07:30:00+07:00"), // Friday evening → Monday
            ("2026-06-13T10:00:00+07:00", "2026-06-15T07:30:00+07:00"),
        ];
        for (from, to) in cases {
            assert_eq!(format_local(next_working_instant(at(from))), to, "{from}");
        }
    }

    #[test]
    fn working_time_arithmetic() {
        let cases = [
            (
                "2026-06-09T08:00:00+07:00",
                3600,
                "2026-06-09T09:00:00+07:00",
            ),
            (
                "2026-06-09T11:00:00+07:00",
                3600,
                "2026-06-09T14:00:00+07:00",
            ), // over lunch
            (
                "2026-06-12T16:30:00+07:00",
                3600,
                "2026-06-15T08:00:00+07:00",
            ), // over a weekend
            (
                "2026-06-09T08:00:00+07:00",
                WORKING_DAY_SECS,
                "2026-06-10T08:00:00+07:00",
            ),
            ("2026-06-09T20:00:00+07:00", 0, "2026-06-10T07:30:00+07:00"),
        ];
        for (from, secs, to) in cases {
            assert_eq!(
                format_local(add_working_secs(at(from), secs)),
                to,
                "{from} + {secs}s"
            );
        }
        // due dates: the n-th working day after, at 17:00
        assert_eq!(
            format_local(close_after_working_days(at("2026-06-09T08:00:00+07:00"), 1)),
            "2026-06-10T17:00:00+07:00"
        );
        assert_eq!(
            format_local(close_after_working_days(at("2026-06-11T08:00:00+07:00"), 3)),
            "2026-06-16T17:00:00+07:00"
        );
    }
}
