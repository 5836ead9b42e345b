//! A dossier's state, folded from its events in ledger order, and what it contributes to the
//! per-day counts.
//!
//! The contributions are a pure function of the state, and the state keeps, for each kind of
//! fact, the earliest (or, for ratings, the latest) by event time. So an event that arrives late
//! or out of order lands where its time says, and the counts of the windows it touches are
//! corrected by retracting the dossier's old contributions and adding its new ones.

use serde::{Deserialize, Serialize};

use crate::metric::Field;
use crate::time::Day;

/// Result returned electronically or by the public postal service counts as fully online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Return {
    Electronic,
    Counter,
    Postal,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Dossier {
    pub agency: u32,
    pub procedure: u32,
    /// (time, online channel)
    pub submitted: Option<(i64, bool)>,
    /// (time, due_at, digitized inputs)
    pub accepted: Option<(i64, i64, bool)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplement_requested: Vec<i64>,
    /// (time, new due date when the agency set one)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplement_received: Vec<(i64, Option<i64>)>,
    /// (time, new due date)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extended: Vec<(i64, i64)>,
    #[serde(default)]
    pub fee_requested: bool,
    /// (time, online)
    pub paid: Option<(i64, bool)>,
    #[serde(default)]
    pub signed: bool,
    /// (time, electronic result)
    pub resolved: Option<(i64, bool)>,
    pub returned: Option<(i64, Return)>,
    /// Refused, withdrawn or stopped: the dossier left processing without a result.
    pub ended: Option<i64>,
    /// The latest rating: (time, satisfied)
    pub rated: Option<(i64, bool)>,
    /// Latest event time seen, to count events that arrive out of order.
    pub latest: i64,
}

/// Keep the earlier of two timed facts (the first one wins a tie: ledger order).
pub(crate) fn earliest<T: Copy>(slot: &mut Option<T>, new: T, time: impl Fn(&T) -> i64) -> bool {
    match slot {
        Some(old) if time(old) <= time(&new) => false,
        _ => {
            *slot = Some(new);
            true
        }
    }
}

/// A supplement pause: requested, received, the new due date the reply set.
type Pause = (i64, i64, Option<i64>);

/// One contribution: `delta` to `field` on `day`, or a resolution time (minutes) on `day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Contribution {
    Count(Day, Field, i64),
    Minutes(Day, u32),
}

/// The catalogue facts a dossier's contributions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcedureFacts {
    /// The procedure's result is a document (unknown procedures are assumed to yield one).
    pub yields_document: bool,
}

impl Dossier {
    /// Pauses (supplement requested → received), paired in time order; an unanswered request
    /// is an open pause.
    fn pauses(&self) -> (Vec<Pause>, Option<i64>) {
        let mut requested = self.supplement_requested.clone();
        requested.sort_unstable();
        let mut received = self.supplement_received.clone();
        received.sort_unstable();
        let mut pairs = Vec::new();
        let mut replies = received.into_iter().peekable();
        let mut open = None;
        for start in requested {
            while replies.peek().is_some_and(|(t, _)| *t < start) {
                replies.next();
            }
            match replies.next() {
                Some((end, new_due)) => pairs.push((start, end, new_due)),
                None => open = open.or(Some(start)),
            }
        }
        (pairs, open)
    }

    /// The due date after supplements and extensions, and the time paused.
    ///
    /// Walking the changes in time order: a supplement whose reply sets a new due date replaces
    /// the due date (the legal clock restarts), one without moves it by the pause; an extension
    /// sets it. Pauses are measured within [accepted, resolved].
    pub(crate) fn schedule(&self) -> Option<Schedule> {
        let (accepted_at, due, _) = self.accepted?;
        let (pauses, open_pause) = self.pauses();
        // Waiting for the applicant: the pauses and an unanswered request, merged (overlapping
        // requests wait once).
        let mut waiting: Vec<(i64, i64)> = pauses.iter().map(|p| (p.0, p.1)).collect();
        if let Some(open) = open_pause {
            waiting.push((open, i64::MAX));
        }
        waiting.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(waiting.len());
        for (a, b) in waiting {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let waiting = merged;
        let until = self.resolved.map_or(i64::MAX, |r| r.0);
        // Time paused: the merged waiting intervals within [accepted, resolved].
        let paused = waiting
            .iter()
            .map(|&(a, b)| (b.min(until) - a.max(accepted_at)).max(0))
            .sum();
        let mut changes: Vec<(i64, u8, i64, i64)> = Vec::new();
        for &(start, end, new_due) in &pauses {
            let length = (end.min(until) - start.max(accepted_at)).max(0);
            match new_due {
                Some(new_due) => changes.push((end, 0, 1, new_due)),
                None => changes.push((end, 0, 0, length)),
            }
        }
        for &(at, new_due) in &self.extended {
            changes.push((at, 1, 1, new_due));
        }
        changes.sort_unstable();
        let mut due = due;
        for (_, _, sets, value) in changes {
            due = if sets == 1 { value } else { due + value };
        }
        Some(Schedule {
            accepted_at,
            due,
            paused,
            waiting,
        })
    }

    /// Everything this dossier adds to the per-day counts of its scopes.
    pub(crate) fn contributions(&self, facts: ProcedureFacts, out: &mut Vec<Contribution>) {
        use Contribution::{Count, Minutes};
        use Field::*;
        out.clear();
        let schedule = self.schedule();
        if let Some((at, online)) = self.submitted {
            let day = Day::of(at);
            out.push(Count(day, Submitted, 1));
            if online {
                out.push(Count(day, SubmittedOnline, 1));
            }
        }
        // In process from submission (or acceptance) until resolved, refused, withdrawn or
        // stopped; overdue from the effective due date until then, except while a supplement
        // request waits for the applicant.
        let start = self.submitted.map(|s| s.0).or(self.accepted.map(|a| a.0));
        let end = match (self.resolved.map(|r| r.0), self.ended) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(start) = start
            && end.is_none_or(|end| end >= start)
        {
            out.push(Count(Day::of(start), BacklogEntered, 1));
            out.push(Count(Day::of(start), BacklogDelta, 1));
            if let Some(end) = end {
                out.push(Count(Day::of(end), BacklogDelta, -1));
            }
            if let Some(schedule) = &schedule {
                let from = schedule.due.max(start);
                let until = end.unwrap_or(i64::MAX);
                if from < until {
                    out.push(Count(Day::of(from), OverdueDelta, 1));
                    if let Some(end) = end {
                        out.push(Count(Day::of(end), OverdueDelta, -1));
                    }
                    // Waiting for the applicant is not overdue.
                    for &(a, b) in &schedule.waiting {
                        let (a, b) = (a.max(from), b.min(until));
                        if a < b {
                            out.push(Count(Day::of(a), OverdueDelta, -1));
                            if b < until {
                                out.push(Count(Day::of(b), OverdueDelta, 1));
                            }
                        }
                    }
                }
            }
        }
        if let Some((at, _, _)) = self.accepted {
            let day = Day::of(at);
            out.push(Count(day, Accepted, 1));
            if self.resolved.is_some() {
                out.push(Count(day, AcceptedResolved, 1));
            }
        }
        if let Some((at, online)) = self.paid {
            let day = Day::of(at);
            out.push(Count(day, Paid, 1));
            if online {
                out.push(Count(day, PaidOnline, 1));
            }
        }
        if let Some((at, satisfied)) = self.rated {
            let day = Day::of(at);
            out.push(Count(day, Rated, 1));
            if satisfied {
                out.push(Count(day, Satisfied, 1));
            }
        }
        if let Some((at, electronic)) = self.resolved {
            let day = Day::of(at);
            let mut count = |field: Field, yes: bool| {
                if yes {
                    out.push(Count(day, field, 1));
                }
            };
            count(Resolved, true);
            let online = self.submitted.is_some_and(|s| s.1);
            let fee_online = match self.paid {
                Some((_, online)) => online,
                None => !self.fee_requested,
            };
            let returned_remotely = self
                .returned
                .is_some_and(|(_, r)| matches!(r, Return::Electronic | Return::Postal));
            count(FullyOnline, online && fee_online && returned_remotely);
            count(ResolvedDocument, facts.yields_document);
            count(ElectronicResult, facts.yields_document && electronic);
            let digitized = self.accepted.is_some_and(|a| a.2);
            count(Digitized, digitized && electronic);
            count(Signed, self.signed);
            if let Some(schedule) = &schedule {
                count(ResolvedWithDue, true);
                count(OnTime, at <= schedule.due);
                let worked = (at - schedule.accepted_at - schedule.paused).max(0);
                let minutes = u32::try_from(worked / 60).unwrap_or(u32::MAX);
                count(Timed, true);
                out.push(Count(day, TimedMinutes, i64::from(minutes)));
                out.push(Minutes(day, crate::metric::minute_bucket(minutes)));
            }
        }
        out.sort_unstable();
    }
}

pub(crate) struct Schedule {
    pub accepted_at: i64,
    pub due: i64,
    pub paused: i64,
    /// Supplement requests waiting for the applicant: [requested, received), or up to
    /// `i64::MAX` while unanswered.
    pub waiting: Vec<(i64, i64)>,
}

/// An (agency, procedure) offering in the catalogue: its published versions in time order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Offering {
    /// (time, seq, full online, yields a document)
    pub versions: Vec<(i64, u64, bool, bool)>,
}

impl Offering {
    pub fn add(&mut self, at: i64, seq: u64, full_online: bool, document: bool) {
        let at_index = self.versions.partition_point(|v| (v.0, v.1) <= (at, seq));
        self.versions
            .insert(at_index, (at, seq, full_online, document));
    }

    /// The latest version's facts.
    pub fn facts(&self) -> Option<ProcedureFacts> {
        self.versions.last().map(|v| ProcedureFacts {
            yields_document: v.3,
        })
    }

    /// Offered from its first publication; full online while its latest version says so.
    pub fn contributions(&self, out: &mut Vec<Contribution>) {
        out.clear();
        let mut full = false;
        for (i, &(at, _, full_online, _)) in self.versions.iter().enumerate() {
            let day = Day::of(at);
            if i == 0 {
                out.push(Contribution::Count(day, Field::OfferedDelta, 1));
            }
            if full_online != full {
                let delta = if full_online { 1 } else { -1 };
                out.push(Contribution::Count(
                    day,
                    Field::OfferedFullOnlineDelta,
                    delta,
                ));
                full = full_online;
            }
        }
        out.sort_unstable();
    }
}

/// Flags of the compact encoding ([`Dossier::encode`]): which facts are present, and their
/// booleans. The common ones sit in the low 14 bits (a 2-byte varint).
mod flag {
    pub const SUBMITTED: u32 = 1 << 0;
    pub const SUBMITTED_ONLINE: u32 = 1 << 1;
    pub const ACCEPTED: u32 = 1 << 2;
    pub const DIGITIZED: u32 = 1 << 3;
    pub const PAID: u32 = 1 << 4;
    pub const PAID_ONLINE: u32 = 1 << 5;
    pub const RESOLVED: u32 = 1 << 6;
    pub const ELECTRONIC: u32 = 1 << 7;
    pub const RETURNED: u32 = 1 << 8;
    /// Two bits: 0 electronic, 1 counter, 2 postal.
    pub const METHOD_SHIFT: u32 = 9;
    pub const RATED: u32 = 1 << 11;
    pub const SATISFIED: u32 = 1 << 12;
    pub const SIGNED: u32 = 1 << 13;
    pub const FEE_REQUESTED: u32 = 1 << 14;
    pub const ENDED: u32 = 1 << 15;
    /// Supplements or extensions follow.
    pub const PAUSES: u32 = 1 << 16;
}

/// Appends `v` as a varint (zigzag for signed values).
fn put<V: integer_encoding::VarInt>(out: &mut Vec<u8>, v: V) {
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

/// Reads a varint from the front of `bytes`, advancing it.
fn take<V: integer_encoding::VarInt>(bytes: &mut &[u8]) -> Option<V> {
    let (v, n) = V::decode_var(bytes)?;
    *bytes = &bytes[n..];
    Some(v)
}

impl Dossier {
    /// Whether its lifecycle has ended (resolved, refused, withdrawn or stopped): only late
    /// events can change it now.
    pub(crate) fn finished(&self) -> bool {
        self.resolved.is_some() || self.ended.is_some()
    }

    /// The whole state in a few dozen bytes (lossless: [`Dossier::decode`] gives it back
    /// exactly). Times are varint deltas, each from the one written before it, starting from
    /// `latest`, so a dossier's lifecycle of hours or days costs 2–4 bytes per fact.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        use flag::*;
        let mut flags = 0u32;
        let mut set = |bit: u32, yes: bool| {
            if yes {
                flags |= bit;
            }
        };
        set(SUBMITTED, self.submitted.is_some());
        set(SUBMITTED_ONLINE, self.submitted.is_some_and(|s| s.1));
        set(ACCEPTED, self.accepted.is_some());
        set(DIGITIZED, self.accepted.is_some_and(|a| a.2));
        set(PAID, self.paid.is_some());
        set(PAID_ONLINE, self.paid.is_some_and(|p| p.1));
        set(RESOLVED, self.resolved.is_some());
        set(ELECTRONIC, self.resolved.is_some_and(|r| r.1));
        set(RETURNED, self.returned.is_some());
        set(RATED, self.rated.is_some());
        set(SATISFIED, self.rated.is_some_and(|r| r.1));
        set(SIGNED, self.signed);
        set(FEE_REQUESTED, self.fee_requested);
        set(ENDED, self.ended.is_some());
        set(
            PAUSES,
            !(self.supplement_requested.is_empty()
                && self.supplement_received.is_empty()
                && self.extended.is_empty()),
        );
        if let Some((_, method)) = self.returned {
            let m = match method {
                Return::Electronic => 0,
                Return::Counter => 1,
                Return::Postal => 2,
            };
            flags |= m << METHOD_SHIFT;
        }
        put(out, flags);
        put(out, self.agency);
        put(out, self.procedure);
        put(out, self.latest);
        // Latest first, then backwards through the lifecycle: each delta is small and usually
        // positive (zigzag keeps it small when not).
        let mut prev = self.latest;
        let mut time = |out: &mut Vec<u8>, t: i64| {
            put(out, prev.wrapping_sub(t));
            prev = t;
        };
        for t in [
            self.rated.map(|r| r.0),
            self.returned.map(|r| r.0),
            self.resolved.map(|r| r.0),
            self.ended,
            self.paid.map(|p| p.0),
            self.accepted.map(|a| a.0),
            self.submitted.map(|s| s.0),
        ]
        .into_iter()
        .flatten()
        {
            time(out, t);
        }
        if let Some((at, due, _)) = self.accepted {
            put(out, due.wrapping_sub(at));
        }
        if flags & PAUSES != 0 {
            put(out, self.supplement_requested.len() as u64);
            for &t in &self.supplement_requested {
                put(out, self.latest.wrapping_sub(t));
            }
            put(out, self.supplement_received.len() as u64);
            for &(t, new_due) in &self.supplement_received {
                put(out, self.latest.wrapping_sub(t));
                match new_due {
                    None => out.push(0),
                    Some(due) => {
                        out.push(1);
                        put(out, due.wrapping_sub(t));
                    }
                }
            }
            put(out, self.extended.len() as u64);
            for &(t, new_due) in &self.extended {
                put(out, self.latest.wrapping_sub(t));
                put(out, new_due.wrapping_sub(t));
            }
        }
    }

    /// The state [`Dossier::encode`] wrote; `None` if the bytes are not one.
    pub(crate) fn decode(mut bytes: &[u8]) -> Option<Dossier> {
        use flag::*;
        let b = &mut bytes;
        let flags: u32 = take(b)?;
        let has = |bit: u32| flags & bit != 0;
        let mut d = Dossier {
            agency: take(b)?,
            procedure: take(b)?,
            latest: take(b)?,
            fee_requested: has(FEE_REQUESTED),
            signed: has(SIGNED),
            ..Dossier::default()
        };
        let mut prev = d.latest;
        let mut time = |b: &mut &[u8], present: bool| -> Option<Option<i64>> {
            if !present {
                return Some(None);
            }
            prev = prev.wrapping_sub(take::<i64>(b)?);
            Some(Some(prev))
        };
        let rated = time(b, has(RATED))?;
        let returned = time(b, has(RETURNED))?;
        let resolved = time(b, has(RESOLVED))?;
        d.ended = time(b, has(ENDED))?;
        let paid = time(b, has(PAID))?;
        let accepted = time(b, has(ACCEPTED))?;
        let submitted = time(b, has(SUBMITTED))?;
        d.rated = rated.map(|t| (t, has(SATISFIED)));
        d.returned = match returned {
            None => None,
            Some(t) => Some((
                t,
                match (flags >> METHOD_SHIFT) & 3 {
                    0 => Return::Electronic,
                    1 => Return::Counter,
                    2 => Return::Postal,
                    _ => return None,
                },
            )),
        };
        d.resolved = resolved.map(|t| (t, has(ELECTRONIC)));
        d.paid = paid.map(|t| (t, has(PAID_ONLINE)));
        d.submitted = submitted.map(|t| (t, has(SUBMITTED_ONLINE)));
        if let Some(at) = accepted {
            let due = at.wrapping_add(take::<i64>(b)?);
            d.accepted = Some((at, due, has(DIGITIZED)));
        }
        if has(PAUSES) {
            let latest = d.latest;
            let n: u64 = take(b)?;
            for _ in 0..n {
                d.supplement_requested
                    .push(latest.wrapping_sub(take::<i64>(b)?));
            }
            let n: u64 = take(b)?;
            for _ in 0..n {
                let t = latest.wrapping_sub(take::<i64>(b)?);
                let (&tag, rest) = b.split_first()?;
                *b = rest;
                let new_due = match tag {
                    0 => None,
                    1 => Some(t.wrapping_add(take::<i64>(b)?)),
                    _ => return None,
                };
                d.supplement_received.push((t, new_due));
            }
            let n: u64 = take(b)?;
            for _ in 0..n {
                let t = latest.wrapping_sub(take::<i64>(b)?);
                d.extended.push((t, t.wrapping_add(take::<i64>(b)?)));
            }
        }
        bytes.is_empty().then_some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn time() -> impl Strategy<Value = i64> {
        prop_oneof![
            1_600_000_000i64..1_900_000_000,
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX)
        ]
    }

    prop_compose! {
        fn dossier()(
            agency in any::<u32>(), procedure in any::<u32>(),
            submitted in proptest::option::of((time(), any::<bool>())),
            accepted in proptest::option::of((time(), time(), any::<bool>())),
            supplement_requested in proptest::collection::vec(time(), 0..3),
            supplement_received in proptest::collection::vec((time(), proptest::option::of(time())), 0..3),
            extended in proptest::collection::vec((time(), time()), 0..3),
            fee_requested in any::<bool>(),
            paid in proptest::option::of((time(), any::<bool>())),
            signed in any::<bool>(),
            resolved in proptest::option::of((time(), any::<bool>())),
            returned in proptest::option::of((time(), prop_oneof![Just(Return::Electronic), Just(Return::Counter), Just(Return::Postal)])),
            ended in proptest::option::of(time()),
            rated in proptest::option::of((time(), any::<bool>())),
            latest in time(),
        ) -> Dossier {
            Dossier { agency, procedure, submitted, accepted, supplement_requested,
                supplement_received, extended, fee_requested, paid, signed, resolved,
                returned, ended, rated, latest }
        }
    }

    proptest! {
        #[test]
        fn the_compact_encoding_is_lossless(d in dossier()) {
            let mut bytes = Vec::new();
            d.encode(&mut bytes);
            prop_assert_eq!(Dossier::decode(&bytes), Some(d.clone()));
            // Truncated or extended bytes are refused, never misread.
            prop_assert_eq!(Dossier::decode(&bytes[..bytes.len() - 1]), None);
            bytes.push(0);
            prop_assert_eq!(Dossier::decode(&bytes), None);
        }
    }
}
