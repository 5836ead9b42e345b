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
