//! The fold is a function of the committed log: one pass, any batch split, and restarts from
//! snapshots at any points give the same values; and the values published as changes at each
//! flush always add up to exactly the values recomputed at that tree size.

use std::collections::BTreeMap;

use proptest::prelude::*;
use socai_chain::{Entry, Hash, leaf_hash};
use socai_metrics::{MetricValue, Projection};
use socai_sim::{Generator, SimConfig};
use socai_store::ledger::public_canonical;

/// A committed log of `n` simulated events, with some events moved later (so the log holds
/// events out of order and before their predecessors, as late publishers cause).
fn log(n: usize, seed: u64, delays: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let config = SimConfig {
        seed,
        provinces: 2,
        communes_per_province: 2,
        procedures_per_agency: 3,
        ..SimConfig::default()
    };
    let mut events: Vec<_> = Generator::new(config).take(n).collect();
    for &(at, by) in delays {
        let at = at % events.len();
        let event = events.remove(at);
        events.insert((at + by).min(events.len()), event);
    }
    let mut prev = Hash::ZERO;
    events
        .iter()
        .enumerate()
        .map(|(seq, event)| {
            let entry = Entry::encode(
                seq as u64,
                &prev,
                "2026-11-22T00:00:00Z",
                &public_canonical(event),
                None,
            );
            prev = leaf_hash(&entry);
            entry
        })
        .collect()
}

fn fold_all(entries: &[Vec<u8>]) -> Projection {
    let mut p = Projection::untracked();
    for (seq, entry) in entries.iter().enumerate() {
        p.apply(seq as u64, entry).unwrap();
    }
    p
}

fn keyed(values: Vec<MetricValue>) -> BTreeMap<String, MetricValue> {
    values.into_iter().map(|v| (v.key(), v)).collect()
}

/// What a subscriber to the changes holds: the latest value of every key, "no data" removed.
fn apply_changes(image: &mut BTreeMap<String, MetricValue>, changes: Vec<MetricValue>) {
    for v in changes {
        if v.is_no_data() {
            image.remove(&v.key());
        } else {
            image.insert(v.key(), v);
        }
    }
}

fn assert_same(a: &BTreeMap<String, MetricValue>, b: &BTreeMap<String, MetricValue>, what: &str) {
    let only_a: Vec<_> = a.keys().filter(|k| !b.contains_key(*k)).take(5).collect();
    let only_b: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).take(5).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "{what}: keys differ: only left {only_a:?}, only right {only_b:?}"
    );
    for (key, va) in a {
        let vb = &b[key];
        assert!(
            va.same_figures(vb),
            "{what}: {key} differs:\n{va:?}\n{vb:?}"
        );
    }
}

/// Entries decoded on another thread (owned, as a rebuild sends them) fold to the same values
/// and anomalies as entries applied straight from their bytes; the checks stay the same.
#[test]
fn decoded_entries_fold_like_their_bytes() {
    let entries = log(3000, 7, &[(100, 300), (500, 50), (900, 1000), (1500, 20)]);
    let direct = fold_all(&entries);
    let decoded: Vec<socai_metrics::Decoded<'static>> = std::thread::scope(|s| {
        s.spawn(|| {
            entries
                .iter()
                .enumerate()
                .map(|(seq, e)| {
                    socai_metrics::Decoded::decode(seq as u64, e)
                        .unwrap()
                        .into_owned()
                })
                .collect()
        })
        .join()
        .unwrap()
    });
    let mut folded = Projection::untracked();
    for d in decoded {
        folded.apply_decoded(d).unwrap();
    }
    assert_eq!(folded.tree_size(), 3000);
    assert_eq!(folded.anomalies(), direct.anomalies());
    assert!(
        direct.anomalies().missing_predecessor > 0,
        "the log has late events"
    );
    assert_eq!(keyed(folded.values("r")), keyed(direct.values("r")));
    // Out of order, or an entry that names another seq: refused, nothing changed.
    let mut p = Projection::untracked();
    let second = socai_metrics::Decoded::decode(1, &entries[1]).unwrap();
    assert!(p.apply_decoded(second).is_err());
    assert!(socai_metrics::Decoded::decode(5, &entries[4]).is_err());
    assert_eq!(p.tree_size(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn batches_restarts_and_published_changes_all_agree(
        seed in 0u64..1000,
        n in 300usize..2500,
        delays in prop::collection::vec((0usize..5000, 1usize..400), 0..40),
        cuts in prop::collection::vec(1usize..2500, 1..12),
        restarts in prop::collection::vec(any::<bool>(), 12),
    ) {
        let entries = log(n, seed, &delays);
        let one_pass = fold_all(&entries);
        let expected = keyed(one_pass.values("r"));
        prop_assert!(!expected.is_empty());

        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % n).collect();
        cuts.push(n);
        cuts.sort_unstable();
        cuts.dedup();
        let mut p = Projection::new();
        let mut image = BTreeMap::new();
        let mut at = 0;
        for (i, &cut) in cuts.iter().enumerate() {
            for (seq, entry) in entries.iter().enumerate().take(cut).skip(at) {
                p.apply(seq as u64, entry).unwrap();
            }
            at = cut;
            apply_changes(&mut image, p.take_changes("r"));
            // At every flush, the published image is exactly the recomputation at that size.
            let recomputed = keyed(fold_all(&entries[..cut]).values("r"));
            assert_same(&image, &recomputed, &format!("published image at size {cut}"));
            if restarts[i % restarts.len()] {
                p = Projection::restore(&p.snapshot()).unwrap();
                prop_assert_eq!(p.tree_size(), cut as u64);
            }
        }
        assert_same(&keyed(p.values("r")), &expected, "after batches and restarts");
        prop_assert_eq!(p.anomalies(), one_pass.anomalies());
        // Applying an entry twice or skipping one is refused.
        prop_assert!(p.apply(n as u64 - 1, &entries[n - 1]).is_err());
    }
}

#[test]
fn out_of_order_log_counts_anomalies_and_keeps_going() {
    let entries = log(3000, 7, &[(100, 300), (500, 50), (900, 1000), (1500, 20)]);
    let p = fold_all(&entries);
    let a = p.anomalies();
    assert!(a.missing_predecessor > 0 || a.out_of_order > 0, "{a:?}");
    assert!(p.values("r").len() > 100);
}

#[test]
fn dates_beyond_any_calendar_are_counted_not_fatal() {
    let mut entries = log(400, 3, &[]);
    let mut prev = leaf_hash(entries.last().expect("entries"));
    let event = |id: &str, kind: &str, occurred: &str, data: serde_json::Value| {
        serde_json::json!({
            "id": id, "type": kind, "agency": "000.00.12.H01", "procedure": "1.000001",
            "dossier": "X-1", "occurred_at": occurred, "schema": 1, "data": data,
        })
    };
    for (id, kind, occurred, data) in [
        (
            "x1",
            "dossier.submitted",
            "2026-01-06T08:00:00+07:00",
            serde_json::json!({"channel": "online"}),
        ),
        // "No deadline" written as the end of the calendar.
        (
            "x2",
            "dossier.accepted",
            "2026-01-06T09:00:00+07:00",
            serde_json::json!({"due_at": "9999-12-31T23:59:59+07:00"}),
        ),
        // Dated far beyond its recording: not projected, counted.
        (
            "x3",
            "dossier.resolved",
            "9999-12-30T08:00:00+07:00",
            serde_json::json!({"electronic_result": true}),
        ),
    ] {
        let seq = entries.len() as u64;
        let jcs = socai_chain::canonical_json(&event(id, kind, occurred, data));
        let entry = Entry::encode(seq, &prev, "2026-11-22T00:00:00Z", &jcs, None);
        prev = leaf_hash(&entry);
        entries.push(entry);
    }
    let p = fold_all(&entries);
    assert_eq!(p.anomalies().time_out_of_range, 1);
    assert!(
        p.now()
            .expect("a current day")
            .to_string()
            .starts_with("2026-")
    );
    assert!(!p.values("r").is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, .. ProptestConfig::default() })]

    /// Compaction never changes a value: late events (some long after their dossier was
    /// compacted) fold to the same values and anomalies as a fold that never compacts, across
    /// snapshots and restores, whatever the grace period (that late events do reach compacted
    /// dossiers on such logs: `late_events_reach_compacted_dossiers`).
    #[test]
    fn compaction_never_changes_a_value(
        seed in 0u64..1000,
        n in 1500usize..4000,
        delays in prop::collection::vec((0usize..5000, 1usize..3000), 5..60),
        grace in prop_oneof![Just(0i64), 0i64..86_400, Just(socai_metrics::COMPACT_AFTER_SECS)],
        cuts in prop::collection::vec(1usize..4000, 0..4),
    ) {
        let entries = log(n, seed, &delays);
        let mut never = Projection::untracked();
        never.set_compaction(None);
        for (seq, entry) in entries.iter().enumerate() {
            never.apply(seq as u64, entry).unwrap();
        }
        prop_assert_eq!(never.dossier_memory().compacted, 0);

        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % n).collect();
        cuts.sort_unstable();
        let mut p = Projection::untracked();
        p.set_compaction(Some(grace));
        for (seq, entry) in entries.iter().enumerate() {
            if cuts.binary_search(&seq).is_ok() {
                p = Projection::restore(&p.snapshot()).unwrap();
                p.set_compaction(Some(grace));
            }
            p.apply(seq as u64, entry).unwrap();
        }
        prop_assert_eq!(p.dossiers(), never.dossiers());
        prop_assert_eq!(p.anomalies(), never.anomalies());
        assert_same(&keyed(p.values("r")), &keyed(never.values("r")), "compacted vs never");
    }
}

/// The proptest above is not vacuous: on such a log, with compaction as soon as a dossier is
/// finished, many dossiers are compacted and late events take some of them back out.
#[test]
fn late_events_reach_compacted_dossiers() {
    let delays: Vec<(usize, usize)> = (0..60).map(|i| (i * 97 + 1500, 500 + i * 41)).collect();
    let entries = log(6000, 11, &delays);
    let mut p = Projection::untracked();
    p.set_compaction(Some(0));
    let mut most_compacted = 0;
    for (seq, entry) in entries.iter().enumerate() {
        p.apply(seq as u64, entry).unwrap();
        most_compacted = most_compacted.max(p.dossier_memory().compacted);
    }
    let memory = p.dossier_memory();
    assert!(most_compacted >= 100, "{memory:?}");
    assert!(memory.taken_back > 0, "{memory:?}");
    let mut never = Projection::untracked();
    never.set_compaction(None);
    for (seq, entry) in entries.iter().enumerate() {
        never.apply(seq as u64, entry).unwrap();
    }
    assert_same(
        &keyed(p.values("r")),
        &keyed(never.values("r")),
        "compacted vs never",
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// A snapshot and the deltas taken after it restore the state a fold has at the last one:
    /// the same values, anomalies and dossiers; new snapshots start new chains.
    #[test]
    fn a_snapshot_and_its_deltas_restore_the_fold(
        seed in 0u64..1000,
        n in 300usize..3000,
        delays in prop::collection::vec((0usize..5000, 1usize..2000), 0..30),
        cuts in prop::collection::vec((1usize..3000, any::<bool>()), 1..12),
        grace in prop_oneof![Just(0i64), Just(socai_metrics::COMPACT_AFTER_SECS)],
    ) {
        let entries = log(n, seed, &delays);
        let mut cuts: Vec<(usize, bool)> = cuts.into_iter().map(|(c, full)| (c % n, full)).collect();
        cuts.sort_unstable();
        let mut p = Projection::new();
        p.set_compaction(Some(grace));
        let mut base = p.take_snapshot();
        let mut deltas: Vec<Vec<u8>> = Vec::new();
        let mut at = 0;
        for &(cut, full) in &cuts {
            for (seq, entry) in entries.iter().enumerate().take(cut).skip(at) {
                p.apply(seq as u64, entry).unwrap();
            }
            at = at.max(cut);
            if full {
                base = p.take_snapshot();
                deltas.clear();
            } else {
                deltas.push(p.take_delta().expect("a small delta is recorded"));
            }
            let chain: Vec<&[u8]> = deltas.iter().map(Vec::as_slice).collect();
            let restored = Projection::restore_chain(&base, &chain).unwrap();
            let folded = fold_all(&entries[..at]);
            prop_assert_eq!(restored.tree_size(), at as u64);
            prop_assert_eq!(restored.dossiers(), folded.dossiers());
            prop_assert_eq!(restored.anomalies(), folded.anomalies());
            assert_same(&keyed(restored.values("r")), &keyed(folded.values("r")), "restored chain");
            // A delta is not a base, and a chain missing a delta in the middle is refused.
            if deltas.len() >= 2 {
                prop_assert!(Projection::restore_chain(&deltas[0], &[]).is_err());
                let gap: Vec<&[u8]> = deltas[1..].iter().map(Vec::as_slice).collect();
                let spanned = Projection::restore_chain(&base, &chain[..1]).unwrap().tree_size()
                    > Projection::restore(&base).unwrap().tree_size();
                prop_assert_eq!(Projection::restore_chain(&base, &gap).is_err(), spanned);
            }
        }
    }
}
