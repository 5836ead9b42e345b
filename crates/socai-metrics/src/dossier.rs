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
