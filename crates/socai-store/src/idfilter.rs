//! The new-id filter: an in-memory approximate set of every committed (agency, id), so that the
//! writer learns that a new event id is new without reading the id index (almost every event is
//! new). A quotient filter (`qfilter`, rank-select quotient filter) grows with the log, up to
//! [`MAX_IDS`] ids at a [`FP_RATE`] false-positive rate. Its slots shrink as it grows (the
//! fingerprint bits are fixed by the largest size): 2–5 bytes per id at a million ids, under 2 at
//! a national year of 0.5 billion events (~0.9 GB).
//!
//! Invariants:
//! - No false negatives: `may_hold` is `false` only for an id that was never inserted, and every
//!   committed id is inserted before its commit is applied (so also before any later check).
//!   A false positive only costs the index read the filter usually saves.
//! - Until the filter is complete (it is filled from the stored id index by a background thread
//!   after open, while the writer already inserts its new ids), and if it ever overflows, it
//!   answers "maybe" for every id: the writer then reads the index, as without a filter. Opening
//!   a store therefore never waits for the filter.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The false-positive rate of the fully grown filter.
pub const FP_RATE: f64 = 0.01;
/// The most ids the filter grows to (8 × a national year's events); beyond it, it answers "maybe".
pub const MAX_IDS: u64 = 1 << 32;
/// The capacity a new filter starts with; it doubles as needed.
const INITIAL_IDS: u64 = 1 << 20;

/// Hash of an event's (agency, id) as the filter keys it.
fn item<'a>(agency: &'a str, id: &'a str) -> (&'a str, &'a str) {
    (agency, id)
}

pub struct IdFilter {
    filter: RwLock<qfilter::Filter>,
    /// Every stored id has been inserted (the fill from the index finished).
    complete: AtomicBool,
    /// An insert failed (capacity): the filter can no longer rule anything out.
    overflowed: AtomicBool,
}

impl IdFilter {
    /// An empty filter, not yet complete, sized for `expected` ids to start with.
    pub fn new(expected: u64) -> IdFilter {
        IdFilter::with_fp_rate(expected, FP_RATE)
    }

    /// [`IdFilter::new`] at another false-positive rate (clamped to (0, 0.5]); tests use a high
    /// one so that false positives are common.
    pub fn with_fp_rate(expected: u64, fp_rate: f64) -> IdFilter {
        let initial = expected.saturating_mul(2).clamp(INITIAL_IDS, MAX_IDS);
        IdFilter {
            filter: RwLock::new(
                qfilter::Filter::new_resizeable(initial, MAX_IDS, fp_rate)
                    .expect("valid qfilter parameters"),
            ),
            complete: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
        }
    }

    /// Whether the id may have been committed: `false` means it certainly was not.
    pub fn may_hold(&self, agency: &str, id: &str) -> bool {
        if !self.complete.load(Ordering::Acquire) || self.overflowed.load(Ordering::Acquire) {
            return true;
        }
        self.read().contains(item(agency, id))
    }

    /// Adds committed ids (call before the commit that holds them is applied).
    pub fn insert<'a>(&self, ids: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut filter = self.filter.write().unwrap_or_else(|p| p.into_inner());
        for (agency, id) in ids {
            if filter.insert_duplicated(item(agency, id)).is_err() {
                if !self.overflowed.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        ids = filter.len(),
                        "the new-id filter is full: every append now reads the id index (slower, still exact); restart to size it anew"
                    );
                }
                return;
            }
        }
    }

    /// Marks the filter complete: every stored id has been inserted.
    pub fn set_complete(&self) {
        self.complete.store(true, Ordering::Release);
    }

    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// Ids held and bytes used, for the benchmarks and /metrics.
    pub fn usage(&self) -> (u64, usize) {
        let filter = self.read();
        (filter.len(), filter.memory_usage())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, qfilter::Filter> {
        self.filter.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// At the highest false-positive rate (half of all new ids answer "maybe"), an inserted
        /// id is never ruled out, across agencies sharing ids and ids sharing agencies.
        #[test]
        fn never_rules_out_an_inserted_id(
            inserted in proptest::collection::vec((0u8..4, 0u16..300), 0..400),
            probes in proptest::collection::vec((0u8..4, 0u16..300), 0..400),
        ) {
            let f = IdFilter::with_fp_rate(0, 0.5);
            let key = |(a, i): (u8, u16)| (format!("G0{a}"), format!("01KE{i:04}"));
            let inserted: std::collections::HashSet<_> = inserted.into_iter().map(key).collect();
            for chunk in inserted.iter().collect::<Vec<_>>().chunks(7) {
                f.insert(chunk.iter().map(|(a, i)| (a.as_str(), i.as_str())));
            }
            f.set_complete();
            let mut ruled_out = 0;
            for probe in probes.into_iter().map(key) {
                let maybe = f.may_hold(&probe.0, &probe.1);
                if inserted.contains(&probe) {
                    prop_assert!(maybe, "{probe:?} was inserted but is ruled out");
                } else if !maybe {
                    ruled_out += 1;
                }
            }
            let _ = ruled_out;
        }
    }

    #[test]
    fn incomplete_filter_answers_maybe_and_complete_one_rules_out() {
        let f = IdFilter::new(0);
        f.insert([("A", "1"), ("A", "2")]);
        assert!(f.may_hold("A", "3"), "incomplete: must answer maybe");
        f.set_complete();
        assert!(f.may_hold("A", "1") && f.may_hold("A", "2"));
        let absent = (0..1000)
            .filter(|i| !f.may_hold("A", &format!("x{i}")))
            .count();
        assert!(absent > 950, "only {absent} of 1000 new ids ruled out");
        assert!(f.may_hold("A", "1"));
        // Same id, other agency: another item.
        assert!((0..100).any(|i| !f.may_hold(&format!("B{i}"), "1")));
    }

    #[test]
    fn grows_past_its_initial_capacity_without_false_negatives() {
        let f = IdFilter::new(0);
        f.set_complete();
        let n = INITIAL_IDS as usize + 10_000;
        let ids: Vec<String> = (0..n).map(|i| format!("id-{i}")).collect();
        for chunk in ids.chunks(4096) {
            f.insert(chunk.iter().map(|id| ("G01", id.as_str())));
        }
        assert!(ids.iter().all(|id| f.may_hold("G01", id)));
        assert!(!f.overflowed.load(Ordering::Relaxed));
        let (held, bytes) = f.usage();
        assert_eq!(held, n as u64);
        assert!(bytes < n * 6, "{bytes} bytes for {n} ids");
    }
}
