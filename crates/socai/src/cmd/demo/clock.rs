//! The simulated clock of the live trickle: the simulator's office hours (Asia/Ho_Chi_Minh), the
//! clock's pace (faster outside office hours), and the stream's look-ahead that sets the pace so
//! that about the asked-for number of events per second arrive while the offices are open.

use anyhow::Context;
use std::collections::VecDeque;

/// Asia/Ho_Chi_Minh, the simulator's clock.
const LOCAL_OFFSET: i64 = 7 * 3600;
/// The simulator's office hours, seconds of the local day: 07:30-11:30 and 13:30-17:00.
const OFFICE: [(i64, i64); 2] = [(27_000, 41_400), (48_600, 61_200)];
/// Outside office hours the simulated clock runs this much faster than inside them: the rate
/// drops (few online submissions at night) without the demo idling for hours.
pub const OFF_HOURS_FACTOR: f64 = 12.0;

/// Events looked ahead to set the pace.
const LOOKAHEAD: usize = 5_000;
/// The simulated office time the pace is estimated over (seconds).
const PACE_WINDOW: f64 = 1_800.0;
/// The pace's bounds (simulated seconds per wall second in office hours).
const SPEED_RANGE: (f64, f64) = (0.5, 2_000.0);
/// The pace before the stream ahead says anything (e.g. inside the procedure catalogue, which
/// the simulator publishes at one instant).
const FIRST_SPEED: f64 = 5.0;

/// The simulator's stream, with the events ahead buffered (their times parsed).
pub struct Ahead {
    sim: socai_sim::Generator,
    buf: VecDeque<(f64, socai_model::Event)>,
}

impl Ahead {
    pub fn new(sim: socai_sim::Generator) -> Ahead {
        Ahead {
            sim,
            buf: VecDeque::new(),
        }
    }

    fn fill(&mut self, n: usize) -> anyhow::Result<()> {
        while self.buf.len() < n {
            let Some(e) = self.sim.next() else { break };
            self.buf.push_back((event_time(&e)?, e));
        }
        Ok(())
    }

    /// The next event and its time.
    pub fn peek(&mut self) -> anyhow::Result<Option<&(f64, socai_model::Event)>> {
        self.fill(1)?;
        Ok(self.buf.front())
    }

    pub fn pop(&mut self) -> anyhow::Result<Option<socai_model::Event>> {
        self.fill(1)?;
        Ok(self.buf.pop_front().map(|(_, e)| e))
    }

    /// Events per second of simulated office time just ahead: among the next
    /// [`LOOKAHEAD`] events, those of the next [`PACE_WINDOW`] seconds of office time (all of
    /// them if they cover less); `None` when they say too little (less than a minute of
    /// office time and fewer than 100 events in it).
    fn office_rate(&mut self) -> anyhow::Result<Option<f64>> {
        self.fill(LOOKAHEAD)?;
        let Some(&(t0, _)) = self.buf.front() else {
            return Ok(None);
        };
        let (mut n, mut secs) = (0usize, 0.0);
        for &(t, _) in &self.buf {
            secs = office_secs(t0, t);
            if secs >= PACE_WINDOW {
                break;
            }
            n += usize::from(is_office(t));
        }
        Ok((secs > 0.0 && n > 0 && (secs >= 60.0 || n >= 100)).then(|| n as f64 / secs))
    }
}

/// The simulated clock: `speed` times wall time while the simulated offices are open,
/// [`OFF_HOURS_FACTOR`] times that outside them; `speed` is set so that about `rate` events
/// per second arrive in office hours.
pub struct Clock {
    /// Unix seconds.
    pub now: f64,
    pub speed: f64,
    pub rate: f64,
}

impl Clock {
    /// At the next event's time, paced for `rate` events per second in office hours.
    pub fn new(ahead: &mut Ahead, rate: f64) -> anyhow::Result<Option<Clock>> {
        let Some(&(now, _)) = ahead.peek()? else {
            return Ok(None);
        };
        let mut clock = Clock {
            now,
            speed: FIRST_SPEED,
            rate,
        };
        clock.retune(ahead)?;
        Ok(Some(clock))
    }

    /// Sets the pace from the stream ahead (kept when it says too little).
    pub fn retune(&mut self, ahead: &mut Ahead) -> anyhow::Result<()> {
        if let Some(density) = ahead.office_rate()? {
            self.speed = (self.rate / density).clamp(SPEED_RANGE.0, SPEED_RANGE.1);
        }
        Ok(())
    }

    /// `wall` seconds later; never past the real clock (the ledger refuses events from the
    /// future).
    pub fn tick(&mut self, wall: f64) {
        self.now = advance(self.now, wall, self.speed);
        self.now = self.now.min(jiff::Timestamp::now().as_second() as f64);
    }

    /// `Wed 2026-01-14 10:41, offices open`.
    pub fn describe(&self) -> String {
        format!("{}, {}", local_time(self.now), office_label(self.now))
    }
}

/// An event's time, Unix seconds.
pub fn event_time(e: &socai_model::Event) -> anyhow::Result<f64> {
    let t: jiff::Timestamp = e.occurred_at.parse().with_context(|| {
        format!(
            "the simulator's event {} has occurred_at {:?}",
            e.id, e.occurred_at
        )
    })?;
    Ok(t.as_second() as f64)
}

/// Seconds since local (+07:00) midnight, and the local weekday (0 = Monday).
fn local_day(t: f64) -> (f64, f64, i64) {
    let local = t + LOCAL_OFFSET as f64;
    let day = (local / 86_400.0).floor();
    // 1970-01-01 was a Thursday.
    let weekday = (day as i64 + 3).rem_euclid(7);
    (day, local - day * 86_400.0, weekday)
}

fn is_office(t: f64) -> bool {
    let (_, sod, weekday) = local_day(t);
    weekday < 5
        && OFFICE
            .iter()
            .any(|&(a, b)| sod >= a as f64 && sod < b as f64)
}

fn office_label(t: f64) -> &'static str {
    let (_, sod, weekday) = local_day(t);
    if weekday >= 5 {
        "weekend: offices closed"
    } else if is_office(t) {
        "offices open"
    } else if sod >= OFFICE[0].1 as f64 && sod < OFFICE[1].0 as f64 {
        "lunch break"
    } else {
        "offices closed"
    }
}

/// The next instant after `t` where office hours may begin or end (or a local midnight).
fn next_boundary(t: f64) -> f64 {
    let (day, sod, _) = local_day(t);
    let b = [OFFICE[0].0, OFFICE[0].1, OFFICE[1].0, OFFICE[1].1, 86_400]
        .into_iter()
        .map(|b| b as f64)
        .find(|&b| b > sod)
        .unwrap_or(86_400.0);
    day * 86_400.0 + b - LOCAL_OFFSET as f64
}

/// The simulated clock after `wall` seconds: `speed` times wall time in office hours,
/// `speed * OFF_HOURS_FACTOR` outside them.
fn advance(mut t: f64, mut wall: f64, speed: f64) -> f64 {
    while wall > 0.0 {
        let s = if is_office(t) {
            speed
        } else {
            speed * OFF_HOURS_FACTOR
        };
        let boundary = next_boundary(t);
        let need = (boundary - t) / s;
        if need >= wall {
            return t + wall * s;
        }
        t = boundary;
        wall -= need;
    }
    t
}

/// Seconds of office time in [a, b).
fn office_secs(mut a: f64, b: f64) -> f64 {
    let mut secs = 0.0;
    while a < b {
        let next = next_boundary(a).min(b);
        if is_office(a) {
            secs += next - a;
        }
        a = next;
    }
    secs
}

/// `Wed 2026-01-14 10:41` in +07:00.
pub fn local_time(t: f64) -> String {
    jiff::Timestamp::from_second(t as i64)
        .map(|ts| {
            ts.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
                .strftime("%a %Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> f64 {
        text.parse::<jiff::Timestamp>().unwrap().as_second() as f64
    }

    #[test]
    fn office_hours_follow_the_simulator() {
        assert!(is_office(at("2026-01-14T10:41:00+07:00")));
        assert!(!is_office(at("2026-01-14T12:00:00+07:00")));
        assert!(!is_office(at("2026-01-17T10:00:00+07:00")), "Saturday");
        assert!(is_office(at("2026-01-14T07:30:00+07:00")));
        assert!(!is_office(at("2026-01-14T17:00:00+07:00")));
        assert_eq!(office_label(at("2026-01-14T12:00:00+07:00")), "lunch break");
    }

    #[test]
    fn the_clock_runs_faster_outside_office_hours() {
        let t = at("2026-01-14T10:00:00+07:00");
        assert_eq!(advance(t, 60.0, 5.0), t + 300.0);
        // 11:29 → 11:30 takes 12 s at 5×, then 48 s at 60× = 48 min.
        let t = at("2026-01-14T11:29:00+07:00");
        assert_eq!(advance(t, 60.0, 5.0), at("2026-01-14T12:18:00+07:00"));
        // A weekday night, 17:00 → 07:30 (14.5 h), passes in 14.5 min at 60×.
        let t = at("2026-01-14T17:00:00+07:00");
        assert_eq!(advance(t, 870.0, 5.0), at("2026-01-15T07:30:00+07:00"));
    }

    #[test]
    fn office_time_is_counted_between_instants() {
        let day = office_secs(
            at("2026-01-14T00:00:00+07:00"),
            at("2026-01-15T00:00:00+07:00"),
        );
        assert_eq!(day, 7.5 * 3600.0);
        let week = office_secs(
            at("2026-01-12T00:00:00+07:00"),
            at("2026-01-19T00:00:00+07:00"),
        );
        assert_eq!(week, 5.0 * 7.5 * 3600.0);
        assert_eq!(
            office_secs(
                at("2026-01-14T11:00:00+07:00"),
                at("2026-01-14T14:00:00+07:00")
            ),
            3600.0
        );
    }

    #[test]
    fn the_pace_gives_about_the_asked_rate_in_office_hours() {
        let mut ahead = Ahead::new(socai_sim::Generator::new(socai_sim::SimConfig::default()));
        // Past the procedure catalogue and the first days' ramp-up.
        for _ in 0..150_000 {
            ahead.pop().unwrap();
        }
        // The next event in office hours, early enough in its half-day for a wall minute.
        loop {
            let (t, _) = *ahead.peek().unwrap().unwrap();
            let (_, sod, _) = local_day(t);
            if is_office(t) && (sod < 39_000.0 || (48_600.0..58_000.0).contains(&sod)) {
                break;
            }
            ahead.pop().unwrap();
        }
        let mut clock = Clock::new(&mut ahead, 5.0).unwrap().unwrap();
        clock.retune(&mut ahead).unwrap();
        let end = advance(clock.now, 60.0, clock.speed);
        let mut n = 0;
        while ahead.peek().unwrap().is_some_and(|&(t, _)| t < end) {
            ahead.pop().unwrap();
            n += 1;
        }
        assert!(
            (150..=450).contains(&n),
            "{n} events in a wall minute of office hours at 5/s (speed {})",
            clock.speed
        );
    }
}
