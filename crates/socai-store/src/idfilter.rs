//! The new-id filter: an in-memory approximate set of every committed (agency, id), so that the
//! writer learns that a new event id is new without reading the id index (almost every event is
//! new). A quotient filter (`qfilter`, rank-select quotient filter) over a randomly seeded 64-bit
//! hash (foldhash) of the event's fingerprint in the id index
//! ([`crate::storage::event_fingerprint`]), so that the filter fills from the index's runs
//! without reading an entry, grows with the log up to [`MAX_IDS`] ids, at most a [`FP_RATE`]
//! false-positive rate. Two events whose index fingerprints collide are one item here: the second
//! only costs an index read. Within one agency the fingerprint varies in 48 bits of the id's
//! SHA-256, so an agency can make two of its own ids collide with about 2^24 hashes, and slow
//! only its own appends that way.
//!
//! Memory: the fingerprint bits are fixed by [`MAX_IDS`] and the slots double as the log grows,
//! so the bytes per id fall with size: about 5 at a million ids, about 1.5 at a national year's
//! 0.5 billion (~0.75 GB). Each doubling re-inserts every fingerprint, on the writer thread inside
//! a commit (a stall of seconds at hundreds of millions of ids); the filter is sized at open for
//! 1.25 × the log, so that a doubling is rare.
//!
//! Invariants:
//! - No false negatives: `may_hold` is `false` only for an id that was never inserted, and every
//!   committed id is inserted before its commit is applied (so also before any later check).
//!   A false positive only costs the index read the filter usually saves.
//! - Until the filter is complete (it is filled from the stored id index by a background thread
//!   after open, while the writer already inserts its new ids), and if it ever overflows, it
//!   answers "maybe" for every id: the writer then reads the index, as without a filter. Opening
//!   a store therefore never waits for the filter.

use std::hash::{BuildHasher, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The false-positive rate of the fully grown filter (lower before).
pub const FP_RATE: f64 = 0.01;
/// The most ids the filter grows to (about four national years); beyond, it answers "maybe".
pub const MAX_IDS: u64 = 1 << 31;
/// The capacity a new filter starts with at least; it doubles as needed.
const INITIAL_IDS: u64 = 1 << 20;

pub struct IdFilter {
    filter: RwLock<qfilter::Filter>,
    hasher: foldhash::fast::RandomState,
    /// Applied to every hash: all ones, except in tests that want false positives.
    mask: u64,
    /// Every stored id has been inserted (the fill from the index finished).
    complete: AtomicBool,
    /// An insert failed (capacity): the filter can no longer rule anything out.
    overflowed: AtomicBool,
}

impl IdFilter {
    /// An empty filter, not yet complete, sized for `expected` ids to start with.
    pub fn new(expected: u64) -> IdFilter {
        IdFilter::with_hash_bits(expected, 64)
    }

    /// [`IdFilter::new`] keeping only the low `bits` bits of each hash: tests use few, so that
    /// false positives are common.
    pub fn with_hash_bits(expected: u64, bits: u32) -> IdFilter {
        let initial = expected
            .saturating_add(expected / 4)
            .clamp(INITIAL_IDS, MAX_IDS);
        IdFilter {
            filter: RwLock::new(
                qfilter::Filter::new_resizeable(initial, MAX_IDS, FP_RATE)
                    .expect("valid qfilter parameters"),
            ),
            hasher: foldhash::fast::RandomState::default(),
            mask: u64::MAX
                .checked_shr(64 - bits.clamp(1, 64))
                .unwrap_or(u64::MAX),
            complete: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
        }
    }

    fn fingerprint(&self, event: u64) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u64(event);
        h.finish() & self.mask
    }

    /// Whether the id may have been committed: `false` means it certainly was not.
    pub fn may_hold(&self, agency: &str, id: &str) -> bool {
        if !self.complete.load(Ordering::Acquire) || self.overflowed.load(Ordering::Acquire) {
            return true;
        }
        let fingerprint = self.fingerprint(crate::storage::event_fingerprint(agency, id));
        self.read().contains_fingerprint(fingerprint)
    }

    /// Adds committed ids (call before the commit that holds them is applied).
    pub fn insert<'a>(&self, ids: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.insert_events(
            ids.into_iter()
                .map(|(agency, id)| crate::storage::event_fingerprint(agency, id)),
        );
    }

    /// Adds committed ids by their index fingerprints ([`crate::storage::event_fingerprint`]).
    pub fn insert_events(&self, events: impl IntoIterator<Item = u64>) {
        let fingerprints: Vec<u64> = events
            .into_iter()
            .map(|event| self.fingerprint(event))
            .collect();
        let mut filter = self.filter.write().unwrap_or_else(|p| p.into_inner());
        for fingerprint in fingerprints {
            // Not a duplicate slot for a fingerprint already held: ids are never removed.
            if filter.insert_fingerprint(false, fingerprint).is_err() {
                if !self.overflowed.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        ids = filter.len(),
                        "the new-id filter is full: every append now reads the id index (slower, still exact)"
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

    /// Fingerprints held, bytes used and ids it holds before it must grow (benchmarks, tests).
    pub fn usage(&self) -> (u64, usize, u64) {
        let filter = self.read();
        (filter.len(), filter.memory_usage(), filter.capacity())
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
        /// With hashes cut to 8 bits (false positives everywhere), an inserted id is never ruled
        /// out, across agencies sharing ids and ids sharing agencies.
        #[test]
        fn never_rules_out_an_inserted_id(
            inserted in proptest::collection::vec((0u8..4, 0u16..300), 0..400),
            probes in proptest::collection::vec((0u8..4, 0u16..300), 0..400),
        ) {
            let f = IdFilter::with_hash_bits(0, 8);
            let key = |(a, i): (u8, u16)| (format!("G0{a}"), format!("01KE{i:04}"));
            let inserted: std::collections::HashSet<_> = inserted.into_iter().map(key).collect();
            for chunk in inserted.iter().collect::<Vec<_>>().chunks(7) {
                f.insert(chunk.iter().map(|(a, i)| (a.as_str(), i.as_str())));
            }
            f.set_complete();
            for probe in probes.into_iter().map(key) {
                if inserted.contains(&probe) {
                    prop_assert!(f.may_hold(&probe.0, &probe.1), "{probe:?} was inserted but is ruled out");
                }
            }
        }
    }

    #[test]
    fn cut_hashes_give_false_positives_and_full_ones_almost_none() {
        let ids: Vec<String> = (0..4000).map(|i| format!("01KE{i:06}")).collect();
        let (inserted, probes) = ids.split_at(2000);
        for (bits, lo, hi) in [(12, 0.2, 0.6), (64, 0.0, 0.02)] {
            let f = IdFilter::with_hash_bits(0, bits);
            f.insert(inserted.iter().map(|id| ("G01", id.as_str())));
            assert!(
                f.may_hold("G01", &probes[0]),
                "incomplete: must answer maybe"
            );
            f.set_complete();
            assert!(inserted.iter().all(|id| f.may_hold("G01", id)));
            let maybe = probes.iter().filter(|id| f.may_hold("G01", id)).count();
            let rate = maybe as f64 / probes.len() as f64;
            assert!(
                (lo..=hi).contains(&rate),
                "{bits} bits: false-positive rate {rate}"
            );
            // Same id, other agency: another item.
            let others = (0..200).filter(|i| !f.may_hold(&format!("B{i}"), &inserted[0]));
            assert!(others.count() > 60, "{bits} bits");
        }
    }

    #[test]
    fn grows_past_its_initial_capacity_without_false_negatives() {
        let f = IdFilter::new(0);
        f.set_complete();
        let initial = f.usage().2;
        let n = initial as usize + 10_000;
        let ids: Vec<String> = (0..n).map(|i| format!("id-{i}")).collect();
        for chunk in ids.chunks(4096) {
            f.insert(chunk.iter().map(|id| ("G01", id.as_str())));
        }
        assert!(ids.iter().all(|id| f.may_hold("G01", id)));
        assert!(!f.overflowed.load(Ordering::Relaxed));
        let (held, bytes, capacity) = f.usage();
        assert!(capacity > initial, "it grew: {initial} → {capacity}");
        assert!(
            held > n as u64 * 99 / 100,
            "{held} fingerprints for {n} ids"
        );
        assert!(bytes < n * 8, "{bytes} bytes for {n} ids");
    }
}
