//! The ledger over real sled stores in temp dirs.

use proptest::prelude::*;
use socai_chain::checkpoint::CheckpointSigner;
use socai_chain::merkle::{MemoryHashes, tree_root};
use socai_chain::{CheckpointVerifier, leaf_hash};
use socai_model::Event;
use socai_store::storage::{IdFilterTesting, StoredHashes};
use socai_store::{
    AppendOutcome, Ledger, LedgerConfig, LedgerError, SledStorage, Storage, VerifyOptions,
    verify_ledger,
};

const AT: &str = "2026-11-22T03:00:00.000Z";

struct Fixture {
    _tmp: tempfile::TempDir,
    path: std::path::PathBuf,
    skey: String,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ledger");
        let (_, skey, _) = CheckpointSigner::generate("test.socai/ledger").unwrap();
        Fixture {
            _tmp: tmp,
            path,
            skey,
        }
    }
    fn open(&self, config: LedgerConfig) -> Ledger<SledStorage> {
        self.open_with(IdFilterTesting::default(), config)
    }
    fn open_with(&self, testing: IdFilterTesting, config: LedgerConfig) -> Ledger<SledStorage> {
        let storage = SledStorage::open_with_id_filter(&self.path, testing).unwrap();
        Ledger::open(
            storage,
            CheckpointSigner::from_skey(&self.skey).unwrap(),
            vec![9; 32],
            config,
        )
        .unwrap()
    }
}

fn events(n: usize, seed: u64) -> Vec<Event> {
    socai_sim::Generator::new(socai_sim::SimConfig {
        seed,
        provinces: 2,
        communes_per_province: 2,
        procedures_per_agency: 3,
        ..Default::default()
    })
    .take(n)
    .collect()
}

/// Waits (up to 10 s) until the new-id filter holds every stored id.
fn wait_for_filter(l: &Ledger<SledStorage>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !l.storage().id_filter().is_complete() {
        assert!(
            std::time::Instant::now() < deadline,
            "the filter never completed"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn verify(l: &Ledger<SledStorage>) -> socai_store::VerifyReport {
    verify_ledger(
        l.storage(),
        l.verifier(),
        &VerifyOptions::default(),
        &|_| {},
    )
    .unwrap()
}

#[test]
fn the_fast_public_encoding_is_the_canonical_one() {
    for e in events(3000, 11) {
        assert_eq!(
            socai_store::ledger::public_canonical(&e),
            socai_chain::canonical_json(&e.public_json()),
            "{}",
            e.id
        );
    }
}

#[test]
fn appends_without_gaps_and_survives_reopen() {
    let f = Fixture::new();
    let evs = events(1000, 1);
    {
        let mut l = f.open(LedgerConfig::default());
        let out = l.append_batch(&evs[..600], AT).unwrap();
        assert_eq!(
            out,
            (0..600)
                .map(|seq| AppendOutcome::Committed { seq })
                .collect::<Vec<_>>()
        );
    }
    let mut l = f.open(LedgerConfig::default());
    assert_eq!(l.head().size, 600);
    let out = l.append_batch(&evs[600..], AT).unwrap();
    assert_eq!(out.first(), Some(&AppendOutcome::Committed { seq: 600 }));
    l.checkpoint().unwrap();
    let report = verify(&l);
    assert_eq!(report.entries, 1000);
    // Replay from any seq, including inside a bundle and at the head.
    for from in [0u64, 1, 15, 16, 17, 599, 600, 999, 1000] {
        let seqs: Vec<u64> = l.replay(from).map(|r| r.unwrap().0).collect();
        assert_eq!(seqs, (from..1000).collect::<Vec<_>>(), "replay from {from}");
    }
    assert_eq!(report.root, l.root());
    // Each entry links to the previous one and sits at its own seq.
    let mut prev = socai_chain::Hash::ZERO;
    for seq in 0..1000 {
        let e = l.entry(seq).unwrap();
        assert_eq!((e.seq, e.prev), (seq, prev));
        prev = leaf_hash(&l.entry_bytes(seq).unwrap());
    }
}

#[test]
fn duplicates_return_the_existing_seq_and_conflicts_write_nothing() {
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig::default());
    let evs = events(50, 2);
    l.append_batch(&evs, AT).unwrap();
    let root = l.root();
    // Same id, same content: duplicate, even with a different recorded_at.
    let again = l
        .append_batch(&evs[10..12], "2027-01-01T00:00:00.000Z")
        .unwrap();
    assert_eq!(
        again,
        vec![
            AppendOutcome::Duplicate { seq: 10 },
            AppendOutcome::Duplicate { seq: 11 }
        ]
    );
    // Same id, other content: conflict.
    let mut changed = evs[20].clone();
    changed.occurred_at = "2026-02-01T10:00:00+07:00".into();
    assert_eq!(
        l.append_batch(&[changed.clone()], AT).unwrap(),
        vec![AppendOutcome::Conflict { existing_seq: 20 }]
    );
    assert_eq!(
        l.classify(&changed).unwrap(),
        Some(AppendOutcome::Conflict { existing_seq: 20 })
    );
    assert_eq!(
        l.classify(&evs[20]).unwrap(),
        Some(AppendOutcome::Duplicate { seq: 20 })
    );
    // Personal data is content too.
    if let Some(p) = evs.iter().find(|e| e.personal.is_some()) {
        let mut other = p.clone();
        other.personal = Some(serde_json::json!({"full_name": "Nguyễn Văn B"}));
        assert!(matches!(
            l.classify(&other).unwrap(),
            Some(AppendOutcome::Conflict { .. })
        ));
    }
    assert_eq!((l.head().size, l.root()), (50, root));
    // Within one batch: a new event, its duplicate and a conflicting copy.
    let new = events(51, 2).pop().unwrap();
    let mut clash = new.clone();
    clash.dossier = "other-dossier".into();
    let out = l.append_batch(&[new.clone(), new, clash], AT).unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Committed { seq: 50 },
            AppendOutcome::Duplicate { seq: 50 },
            AppendOutcome::Conflict { existing_seq: 50 }
        ]
    );
    assert_eq!(l.head().size, 51);
    l.checkpoint().unwrap();
    assert_eq!(verify(&l).entries, 51);
}

#[test]
fn after_reopen_the_filled_filter_still_finds_every_committed_id() {
    let f = Fixture::new();
    let evs = events(3000, 4);
    let mut l = f.open(LedgerConfig::default());
    for chunk in evs.chunks(500) {
        l.append_batch(chunk, AT).unwrap();
    }
    drop(l);
    let mut l = f.open(LedgerConfig::default());
    let new = events(3001, 4).pop().unwrap();
    // The first lookup starts the fill; until it is complete every lookup reads the index.
    assert_eq!(l.classify(&new).unwrap(), None);
    wait_for_filter(&l);
    assert_eq!(l.storage().id_filter().usage().0, 3000);
    let again = l.append_batch(&evs, "2027-01-01T00:00:00.000Z").unwrap();
    for (seq, outcome) in again.iter().enumerate() {
        assert_eq!(*outcome, AppendOutcome::Duplicate { seq: seq as u64 });
    }
    assert_eq!(
        l.append_batch(&[new], AT).unwrap(),
        vec![AppendOutcome::Committed { seq: 3000 }]
    );
}

/// The writer commits while the filter is still being filled from the index (the fill paused
/// after its first chunk): the ids it commits meanwhile and the ids the fill inserts after it
/// are all found once the filter is complete.
#[test]
fn commits_during_the_fill_are_in_the_filter_too() {
    let f = Fixture::new();
    let evs = events(3500, 6);
    let (old, new) = evs.split_at(3000);
    let mut l = f.open(LedgerConfig::default());
    l.append_batch(old, AT).unwrap();
    drop(l);
    let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
    let testing = IdFilterTesting {
        fill_chunk: Some(500),
        fill_gate: Some(gate.clone()),
        ..IdFilterTesting::default()
    };
    let mut l = f.open_with(testing, LedgerConfig::default());
    assert_eq!(l.classify(&new[0]).unwrap(), None); // starts the fill
    gate.wait(); // the fill holds its first 500 ids and waits
    assert!(!l.storage().id_filter().is_complete());
    // While it waits: new ids commit, and known ids (not yet in the filter) are still found.
    let out = l.append_batch(new, AT).unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o, AppendOutcome::Committed { .. }))
    );
    assert_eq!(
        l.append_batch(&old[2990..], AT).unwrap(),
        (2990..3000)
            .map(|seq| AppendOutcome::Duplicate { seq })
            .collect::<Vec<_>>()
    );
    gate.wait(); // let it finish
    wait_for_filter(&l);
    let filter = l.storage().id_filter();
    for e in &evs {
        assert!(
            filter.may_hold(&e.agency, &e.id),
            "{} {} missing",
            e.agency,
            e.id
        );
    }
    let again = l.append_batch(&evs, AT).unwrap();
    assert!(
        again
            .iter()
            .enumerate()
            .all(|(seq, o)| *o == AppendOutcome::Duplicate { seq: seq as u64 })
    );
}

#[test]
fn stored_merkle_state_matches_an_independent_tree() {
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig::default());
    let evs = events(700, 3);
    let mut mem = MemoryHashes::new();
    let mut start = 0;
    for size in [
        1usize, 2, 3, 7, 8, 9, 255, 256, 257, 300, 511, 512, 513, 700,
    ] {
        l.append_batch(&evs[start..size], AT).unwrap();
        for seq in start..size {
            mem.push_leaf(leaf_hash(&l.entry_bytes(seq as u64).unwrap()));
        }
        start = size;
        assert_eq!(l.root(), mem.root(), "size {size}");
        assert_eq!(
            tree_root(size as u64, &StoredHashes(l.storage())).unwrap(),
            mem.root(),
            "size {size}"
        );
        assert_eq!(
            &mem.hashes[..],
            &l.storage()
                .read_hashes(&(0..mem.hashes.len() as u64).collect::<Vec<_>>())
                .unwrap()[..]
        );
    }
}

#[test]
fn every_proof_verifies_against_signed_checkpoints() {
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig::default());
    let evs = events(300, 4);
    l.append_batch(&evs[..100], AT).unwrap();
    let c100 = l.checkpoint().unwrap();
    l.append_batch(&evs[100..], AT).unwrap();
    assert!(matches!(
        l.inclusion_proof(150, None),
        Err(LedgerError::NotCovered {
            seq: 150,
            checkpoint_size: 100
        })
    ));
    l.checkpoint().unwrap();
    let verifier = CheckpointVerifier::from_vkey(&l.verifier_vkey()).unwrap();
    for seq in 0..300 {
        let p = l.inclusion_proof(seq, None).unwrap();
        let (entry, cp) = p.verify(&verifier).unwrap();
        assert_eq!((entry.seq, cp.checkpoint.size), (seq, 300));
        if seq < 100 {
            l.inclusion_proof(seq, Some(100))
                .unwrap()
                .verify(&verifier)
                .unwrap();
        }
    }
    for old in 1..=300 {
        let p = l.consistency_proof(old, None).unwrap();
        p.verify().unwrap();
    }
    assert_eq!(
        l.consistency_proof(100, Some(300)).unwrap().old_root,
        c100.checkpoint.root
    );
    assert!(l.consistency_proof(0, None).is_err());
    assert!(l.consistency_proof(301, Some(400)).is_err());
}

#[test]
fn checkpoints_are_signed_every_n_events_inside_the_commit() {
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig {
        checkpoint_every_events: 100,
    });
    let evs = events(350, 5);
    for chunk in evs.chunks(30) {
        l.append_batch(chunk, AT).unwrap();
    }
    let sizes: Vec<u64> = l
        .storage()
        .checkpoints()
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(sizes, vec![120, 240, 350]);
    assert!(!l.checkpoint_due());
    assert_eq!(verify(&l).checkpoints_checked, 3);
}

#[test]
fn redaction_erases_personal_data_and_keeps_hashes() {
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig::default());
    let evs = events(200, 6);
    l.append_batch(&evs, AT).unwrap();
    l.checkpoint().unwrap();
    let target = evs
        .iter()
        .find(|e| e.personal.is_some())
        .expect("the generator puts personal data on submissions");
    let seq = l.seq_of(&target.id).unwrap();
    let before = l.entry_bytes(seq).unwrap();
    assert_eq!(
        l.personal(seq).unwrap().unwrap().personal,
        target.personal.clone().unwrap()
    );
    assert!(verify(&l).personal_checked > 0);

    let (t, r) = l
        .redact(
            &target.id,
            "citizen request",
            "inspector",
            "2026-11-22T04:00:00.000Z",
        )
        .unwrap();
    assert_eq!((t, r), (seq, 200));
    assert_eq!(l.personal(seq).unwrap(), None);
    assert_eq!(l.entry_bytes(seq).unwrap(), before);
    let redaction = l.entry(200).unwrap();
    assert_eq!(redaction.event["type"], "ledger.redacted");
    assert_eq!(redaction.event["data"]["target_seq"], seq);
    assert_eq!(l.history(&target.dossier).unwrap().last(), Some(&200));
    l.checkpoint().unwrap();
    assert_eq!(verify(&l).entries, 201);
    assert!(matches!(
        l.redact(&target.id, "again", "inspector", AT),
        Err(LedgerError::NothingToRedact { already: true, .. })
    ));
    // Re-sending the original event after redaction is still a duplicate, not a conflict.
    assert_eq!(
        l.append_batch(std::slice::from_ref(target), AT).unwrap(),
        vec![AppendOutcome::Duplicate { seq }]
    );
}

#[test]
fn export_bundles_verify_with_and_without_personal_data() {
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig::default());
    l.append_batch(&events(500, 7), AT).unwrap();
    l.checkpoint().unwrap();
    let vkey = CheckpointVerifier::from_vkey(&l.verifier_vkey()).unwrap();
    for (from, to) in [
        (0, Some(500)),
        (0, Some(1)),
        (123, Some(377)),
        (499, None),
        (256, Some(256)),
    ] {
        let b = l.export(from, to, true, &|_| {}).unwrap();
        let report = b.verify(Some(&vkey)).unwrap();
        assert_eq!(
            (report.from, report.to, report.tree_size),
            (from, to.unwrap_or(500), 500)
        );
        assert!(report.key_trusted);
    }
    let b = l.export(0, Some(500), true, &|_| {}).unwrap();
    assert!(b.verify(Some(&vkey)).unwrap().personal_checked > 0);
    assert!(
        l.export(0, Some(500), false, &|_| {})
            .unwrap()
            .personal
            .is_empty()
    );
    assert!(l.export(10, Some(501), false, &|_| {}).is_err());
}

#[test]
fn full_bundles_are_compressed_and_plain_ones_still_read() {
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig::default());
    l.append_batch(&events(40, 9), AT).unwrap();
    l.checkpoint().unwrap();
    let before: Vec<Vec<u8>> = l.storage().entries(0, 40).map(|r| r.unwrap().1).collect();
    let tree = l.storage().raw_tree();
    let stored = |seq| tree.get(SledStorage::bundle_key(seq).0).unwrap().unwrap();
    // Two full bundles compressed (format byte 2: LZ4), the partial third plain (its first
    // entry's length, whose first byte is 0).
    for (seq, format) in [(0, 2u8), (16, 2), (32, 0)] {
        assert_eq!(stored(seq)[0], format, "bundle of seq {seq}");
    }
    let plain_bytes: usize = before[..16].iter().map(|e| e.len() + 4).sum();
    assert!(
        stored(0).len() * 2 < plain_bytes,
        "{} of {plain_bytes}",
        stored(0).len()
    );
    // A full bundle as an older socai stored it (plain) reads the same, and verifies.
    let refs: Vec<&[u8]> = before[..16].iter().map(Vec::as_slice).collect();
    tree.insert(
        SledStorage::bundle_key(0).0,
        socai_store::storage::join_bundle(&refs),
    )
    .unwrap();
    let after: Vec<Vec<u8>> = l.storage().entries(0, 40).map(|r| r.unwrap().1).collect();
    assert_eq!(after, before);
    assert_eq!(l.storage().entry(3).unwrap().unwrap(), before[3]);
    assert_eq!(verify(&l).entries, 40);
    // Reading into one reused buffer gives the same entries as reading them one by one, for
    // ranges across plain, compressed and partial bundles, after what the buffer held before.
    let (mut buf, mut spans) = (b"left over".to_vec(), Vec::new());
    let mut read = |from: u64, to: u64| -> Result<Vec<Vec<u8>>, String> {
        buf.truncate(9);
        spans.clear();
        l.storage()
            .read_entries(from, to, &mut buf, &mut spans)
            .map_err(|e| e.to_string())?;
        assert_eq!(&buf[..9], b"left over");
        Ok(spans.iter().map(|s| buf[s.clone()].to_vec()).collect())
    };
    for (from, to) in [
        (0, 40),
        (0, 16),
        (3, 37),
        (15, 17),
        (16, 32),
        (39, 40),
        (20, 60),
    ] {
        let want = &before[from as usize..(to as usize).min(40)];
        assert_eq!(read(from, to).unwrap(), want, "{from}..{to}");
    }
    assert!(read(40, 50).unwrap().is_empty());
    let compressed = stored(16).to_vec();
    // A compressed bundle that claims an impossible plain length is an error, not an allocation.
    let mut huge = compressed.clone();
    huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
    tree.insert(SledStorage::bundle_key(16).0, huge).unwrap();
    assert!(read(0, 40).unwrap_err().contains("bundle 1 is truncated"));
    assert!(l.storage().entry(20).is_err());
    // A compressed bundle that was altered is named, never read as entries.
    let mut bad = compressed;
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    tree.insert(SledStorage::bundle_key(16).0, bad).unwrap();
    assert!(l.storage().entry(20).is_err());
    assert!(read(10, 20).unwrap_err().contains("bundle 1 is truncated"));
    // A missing bundle ends the read at the gap, and what follows it is not read: damage there
    // is found by whoever reads past the gap, as with `entries`.
    tree.remove(SledStorage::bundle_key(16).0).unwrap();
    assert_eq!(read(3, 40).unwrap(), &before[3..16]);
    assert!(read(16, 40).unwrap().is_empty());
    let tail = stored(32).to_vec();
    tree.insert(SledStorage::bundle_key(32).0, &tail[..tail.len() - 3])
        .unwrap();
    assert_eq!(read(3, 40).unwrap(), &before[3..16]);
    assert!(read(32, 40).unwrap_err().contains("bundle 2 is truncated"));
    // Spans the caller already holds are kept, and count for neither the range nor its gaps.
    let (mut buf, mut spans) = (Vec::new(), vec![0..0, 0..0]);
    l.storage()
        .read_entries(5, 20, &mut buf, &mut spans)
        .unwrap();
    assert_eq!(spans.len(), 2 + 11);
    assert_eq!(&buf[spans[2].clone()], &before[5][..]);
}

/// A full bundle as socai compressed it up to layout 3: format byte 1, the plain length, a zstd
/// frame with its checksum.
fn zstd_bundle(plain: &[u8]) -> Vec<u8> {
    let mut c = zstd::bulk::Compressor::new(1).unwrap();
    c.include_checksum(true).unwrap();
    let mut v = vec![1u8];
    v.extend_from_slice(&(plain.len() as u32).to_be_bytes());
    v.extend_from_slice(&c.compress(plain).unwrap());
    v
}

#[test]
fn a_layout_3_store_with_zstd_bundles_opens_as_layout_4_and_reads_them() {
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig::default());
    // Two commits: two runs in each index, where building them from the entries makes one.
    let first = events(40, 9);
    l.append_batch(&first[..20], AT).unwrap();
    l.append_batch(&first[20..], AT).unwrap();
    l.checkpoint().unwrap();
    let before: Vec<Vec<u8>> = l.storage().entries(0, 40).map(|r| r.unwrap().1).collect();
    // Bundles 0 and 1 as layout 3 wrote them (zstd), the store marked layout 3.
    let tree = l.storage().raw_tree();
    for b in 0..2 {
        let refs: Vec<&[u8]> = before[b * 16..b * 16 + 16]
            .iter()
            .map(Vec::as_slice)
            .collect();
        let plain = socai_store::storage::join_bundle(&refs);
        tree.insert(
            SledStorage::bundle_key(b as u64 * 16).0,
            zstd_bundle(&plain),
        )
        .unwrap();
    }
    tree.insert(b"mlayout", &3u64.to_be_bytes()[..]).unwrap();
    l.storage().raw_db().flush().unwrap();
    // The indexes' runs (keys and values under j/J/v and r/R/w): layout 3 -> 4 leaves them be,
    // where an older layout's migration would build them again from the entries.
    let runs = |tree: &sled::Tree| -> Vec<(sled::IVec, sled::IVec)> {
        b"jJvrRw"
            .iter()
            .flat_map(|p| tree.scan_prefix([*p]).map(Result::unwrap))
            .collect()
    };
    let runs_before = runs(&tree);
    assert!(!runs_before.is_empty());
    drop((tree, l));

    let mut l = f.open(LedgerConfig::default());
    let tree = l.storage().raw_tree();
    assert!(runs(&tree) == runs_before, "the indexes were built again");
    assert_eq!(
        tree.get(b"mlayout").unwrap().unwrap().as_ref(),
        &socai_store::storage::LAYOUT.to_be_bytes()[..]
    );
    assert_eq!(socai_store::storage::LAYOUT, 4);
    let stored = |seq| tree.get(SledStorage::bundle_key(seq).0).unwrap().unwrap();
    assert_eq!(stored(0)[0], 1, "nothing is rewritten");
    let after: Vec<Vec<u8>> = l.storage().entries(0, 40).map(|r| r.unwrap().1).collect();
    assert_eq!(after, before);
    assert_eq!(l.storage().entry(20).unwrap().unwrap(), before[20]);
    let (mut buf, mut spans) = (Vec::new(), Vec::new());
    l.storage()
        .read_entries(3, 40, &mut buf, &mut spans)
        .unwrap();
    let read: Vec<&[u8]> = spans.iter().map(|s| &buf[s.clone()]).collect();
    assert_eq!(
        read,
        before[3..].iter().map(Vec::as_slice).collect::<Vec<_>>()
    );
    assert_eq!(verify(&l).entries, 40);
    // The bundle the next commit fills is written as LZ4; the zstd ones stay and still verify.
    l.append_batch(&events(40, 10), AT).unwrap();
    l.checkpoint().unwrap();
    assert_eq!(stored(32)[0], 2);
    assert_eq!(stored(16)[0], 1);
    assert_eq!(verify(&l).entries, 80);
    // An altered zstd bundle is named, never read as entries.
    let mut bad = stored(16).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    tree.insert(SledStorage::bundle_key(16).0, bad).unwrap();
    assert!(l.storage().entry(20).is_err());
    // A store of a layout newer than this socai's is refused with a message.
    tree.insert(b"mlayout", &5u64.to_be_bytes()[..]).unwrap();
    l.storage().raw_db().flush().unwrap();
    drop((tree, l));
    let refused = SledStorage::open_with_id_filter(&f.path, IdFilterTesting::default())
        .err()
        .expect("a newer layout is refused")
        .to_string();
    assert!(
        refused.contains("store layout 5 is newer than this socai understands (4)"),
        "{refused}"
    );
}

/// Retries `refresh_after(due)` (postponed while a merge, the filter's fill or a reader holds the
/// store) until it reopens the store.
fn refresh(storage: &SledStorage, due: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !storage.refresh_after(due).unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store was never idle enough to reopen"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[test]
fn reopening_sled_to_bound_its_recovery_loses_nothing_and_waits_for_readers() {
    let f = Fixture::new();
    let evs = events(3000, 5);
    let mut l = f.open(LedgerConfig::default());
    l.append_batch(&evs[..1000], AT).unwrap();
    wait_for_filter(&l);
    let storage = l.storage().clone();
    // sled writes its page-table snapshot (`snap.<lsn>`) when it opens the store.
    let snapshots = || -> Vec<String> {
        std::fs::read_dir(&f.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snap."))
            .collect()
    };
    let first_snapshot = snapshots();
    // Not due before the threshold.
    assert!(!storage.refresh_after(1001).unwrap());
    // A live iterator holds the store open: the reopen waits for it.
    let mut held = storage.entries(0, 1000);
    assert!(held.next().is_some());
    for _ in 0..50 {
        assert!(!storage.refresh_after(1000).unwrap());
    }
    assert_eq!(held.count(), 999);
    refresh(&storage, 1000);
    assert_eq!(storage.refreshes(), 1);
    assert_ne!(snapshots(), first_snapshot, "sled wrote a fresh snapshot");
    assert!(
        !storage.refresh_after(1).unwrap(),
        "nothing committed since"
    );

    // Readers on another thread while the writer commits and reopens after every commit.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (reading, has_read) = std::sync::mpsc::channel();
    let reader = {
        let (s, stop, first) = (storage.clone(), stop.clone(), evs[0].clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let head = s.head().unwrap().size;
                let got: Vec<u64> = s.entries(0, head).map(|r| r.unwrap().0).collect();
                assert_eq!(got, (0..head).collect::<Vec<_>>());
                assert_eq!(s.id(&first.agency, &first.id).unwrap().unwrap().seq, 0);
                assert!(s.dossier(&first.dossier).unwrap().contains(&0));
                reads += 1;
                let _ = reading.send(());
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            reads
        })
    };
    // The writer starts once the reader has read (else a slow start could see no commit).
    has_read.recv().unwrap();
    for (i, chunk) in evs[1000..].chunks(250).enumerate() {
        let out = l.append_batch(chunk, AT).unwrap();
        assert!(matches!(out[0], AppendOutcome::Committed { seq } if seq == 1000 + 250 * i as u64));
        refresh(&storage, 1);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(storage.refreshes(), 9);
    // Duplicates are still found through the reopened index (and the filter it kept).
    assert!(storage.id_filter().is_complete());
    let out = l.append_batch(&evs[990..1010], AT).unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o, AppendOutcome::Duplicate { .. }))
    );
    l.checkpoint().unwrap();
    assert_eq!(verify(&l).entries, 3000);
    let root = l.root();
    drop((l, storage));
    let l = f.open(LedgerConfig::default());
    assert_eq!((l.head().size, l.root()), (3000, root));
    assert_eq!(verify(&l).entries, 3000);
}

#[test]
fn the_writer_reopens_the_store_every_so_many_entries() {
    let f = Fixture::new();
    let testing = IdFilterTesting {
        refresh_every: Some(300),
        ..Default::default()
    };
    let mut l = f.open_with(testing, LedgerConfig::default());
    let evs = events(3000, 6);
    for chunk in evs.chunks(100) {
        l.append_batch(chunk, AT).unwrap();
    }
    // Each reopen waits for merges and the filter's fill to be done: some commits postpone it.
    let refreshes = l.storage().refreshes();
    assert!((3..=10).contains(&refreshes), "{refreshes} reopens");
    l.checkpoint().unwrap();
    assert_eq!(verify(&l).entries, 3000);
    let out = l.append_batch(&evs[..5], AT).unwrap();
    assert!(
        out.iter()
            .all(|o| matches!(o, AppendOutcome::Duplicate { .. }))
    );
}

#[test]
fn open_refuses_a_store_whose_head_disagrees_with_its_entries() {
    let f = Fixture::new();
    {
        let mut l = f.open(LedgerConfig::default());
        l.append_batch(&events(10, 8), AT).unwrap();
        // An 11th entry in the bundle, past the head (as if a commit half-happened).
        let tree = l.storage().raw_tree();
        let (key, _) = SledStorage::bundle_key(10);
        let mut bundle = tree.get(key).unwrap().unwrap().to_vec();
        bundle.extend_from_slice(&socai_store::storage::join_bundle(&[b"{}"]));
        tree.insert(key, bundle).unwrap();
        l.storage().raw_db().flush().unwrap();
    }
    let storage = SledStorage::open(&f.path).unwrap();
    let err = Ledger::open(
        storage,
        CheckpointSigner::from_skey(&f.skey).unwrap(),
        vec![9; 32],
        LedgerConfig::default(),
    )
    .err()
    .expect("an entry past the head is an invariant violation");
    assert!(err.to_string().contains("past the head"), "{err}");
}

#[test]
fn a_second_writer_is_locked_out() {
    let f = Fixture::new();
    let _l = f.open(LedgerConfig::default());
    let err = SledStorage::open(&f.path).err().expect("sled holds a lock");
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
}

/// One event of the dedup proptest: pool event `i` as is (0), under the agency of pool event
/// `j` (1: the same id from another agency), or with other content (2).
fn dedup_event(pool: &[Event], (kind, i, j): (u8, usize, usize)) -> Event {
    let mut e = pool[i % pool.len()].clone();
    match kind {
        1 => e.agency = pool[j % pool.len()].agency.clone(),
        2 => e.occurred_at = format!("2026-03-{:02}T10:00:00+07:00", 1 + j % 28),
        _ => {}
    }
    e
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// The new-id filter never lets a duplicate or a conflict through: a pool of ids reused within
    /// batches, across batches, across agencies and across reopens (with the filter still being
    /// filled from the index, or complete), with hashes cut to 8 bits (so that many new ids are
    /// false positives and read the index), gives exactly the outcomes of a plain map.
    #[test]
    fn dedup_with_the_filter_matches_a_map(
        batches in proptest::collection::vec(
            (0u8..3, proptest::collection::vec((0u8..3, 0usize..40, 0usize..40), 1..30)),
            1..8,
        ),
    ) {
        let pool = events(40, 21);
        let f = Fixture::new();
        let open = || {
            let testing = IdFilterTesting {
                hash_bits: Some(8),
                ..IdFilterTesting::default()
            };
            let storage = SledStorage::open_with_id_filter(&f.path, testing).unwrap();
            Ledger::open(
                storage,
                CheckpointSigner::from_skey(&f.skey).unwrap(),
                vec![9; 32],
                LedgerConfig::default(),
            )
            .unwrap()
        };
        let mut l = open();
        let mut model: std::collections::HashMap<(String, String), (u64, Event)> = Default::default();
        for (reopen, picks) in batches {
            // 0: keep going; 1: reopen, filter being filled; 2: reopen and wait until it is full.
            if reopen > 0 {
                drop(l);
                l = open();
                if reopen == 2 {
                    l.classify(&pool[0]).unwrap(); // starts the fill
                    wait_for_filter(&l);
                }
            }
            let batch: Vec<Event> = picks.iter().map(|&p| dedup_event(&pool, p)).collect();
            let mut expected = Vec::new();
            let mut size = l.head().size;
            for e in &batch {
                let key = (e.agency.clone(), e.id.clone());
                expected.push(match model.get(&key) {
                    Some((seq, old)) if old == e => AppendOutcome::Duplicate { seq: *seq },
                    Some((seq, _)) => AppendOutcome::Conflict { existing_seq: *seq },
                    None => {
                        model.insert(key, (size, e.clone()));
                        size += 1;
                        AppendOutcome::Committed { seq: size - 1 }
                    }
                });
            }
            prop_assert_eq!(l.append_batch(&batch, AT).unwrap(), expected);
            prop_assert_eq!(l.head().size, model.len() as u64);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Determinism: the same events in any batch split give byte-identical entries and roots.
    #[test]
    fn batch_splits_do_not_change_the_ledger(cuts in proptest::collection::vec(1usize..120, 1..8)) {
        let evs = events(240, 10);
        let a = Fixture::new();
        let mut la = a.open(LedgerConfig::default());
        la.append_batch(&evs, AT).unwrap();
        let b = Fixture::new();
        let mut lb = b.open(LedgerConfig::default());
        let mut start = 0;
        for c in cuts {
            let end = (start + c).min(evs.len());
            lb.append_batch(&evs[start..end], AT).unwrap();
            start = end;
        }
        lb.append_batch(&evs[start..], AT).unwrap();
        prop_assert_eq!(la.root(), lb.root());
        for seq in (0..240).step_by(17) {
            prop_assert_eq!(la.entry_bytes(seq).unwrap(), lb.entry_bytes(seq).unwrap());
        }
    }

    /// With a recorded_at per event (the JetStream timestamp), entries do not depend on batching
    /// either, and each entry records its own event's time.
    #[test]
    fn per_event_recorded_at_is_independent_of_batching(cuts in proptest::collection::vec(1usize..60, 1..6)) {
        let evs = events(120, 11);
        let times: Vec<String> = (0..evs.len())
            .map(|i| format!("2026-11-22T01:{:02}:{:02}.{:03}Z", i / 60, i % 60, i))
            .collect();
        let a = Fixture::new();
        let mut la = a.open(LedgerConfig::default());
        la.append_batch_recorded(&evs, &times, Some(7)).unwrap();
        let b = Fixture::new();
        let mut lb = b.open(LedgerConfig::default());
        let mut start = 0;
        for c in cuts {
            let end = (start + c).min(evs.len());
            lb.append_batch_recorded(&evs[start..end], &times[start..end], Some(end as u64)).unwrap();
            start = end;
        }
        lb.append_batch_recorded(&evs[start..], &times[start..], None).unwrap();
        prop_assert_eq!(la.root(), lb.root());
        for seq in 0..120u64 {
            let entry = la.entry(seq).unwrap();
            prop_assert_eq!(&entry.recorded_at, &times[seq as usize]);
            prop_assert_eq!(la.entry_bytes(seq).unwrap(), lb.entry_bytes(seq).unwrap());
        }
        prop_assert!(la.append_batch_recorded(&evs[..2], &times[..1], None).is_err());
        // The cursor is stored with the commit, kept when a batch says nothing, and never moved
        // by a batch that commits nothing (all duplicates).
        prop_assert_eq!(la.source_cursor().unwrap(), Some(7));
        prop_assert_eq!(lb.source_cursor().unwrap(), Some(start as u64).filter(|_| start > 0));
        la.append_batch_recorded(&evs[..3], &times[..3], Some(99)).unwrap();
        prop_assert_eq!(la.source_cursor().unwrap(), Some(7));
    }
}

/// How far the source was read is stored with the next commit, apart from the cursor (which may
/// lag it): noted before a batch of duplicates only (no commit), it waits for the next one; not
/// noted, the stored value stays; and it outlives a reopen.
#[test]
fn the_source_read_through_is_stored_with_the_next_commit() {
    let evs = events(6, 3);
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig::default());
    assert_eq!(l.source_read_through().unwrap(), None);
    l.note_read_through(4);
    l.append_batch_recorded(&evs[..2], &[String::new(), String::new()], Some(1))
        .unwrap();
    assert_eq!(l.source_read_through().unwrap(), Some(4));
    assert_eq!(l.source_cursor().unwrap(), Some(1));
    // Duplicates only: nothing is committed, so neither is the note, until the next commit.
    l.note_read_through(9);
    l.append_batch_recorded(&evs[..2], &[String::new(), String::new()], None)
        .unwrap();
    assert_eq!(l.source_read_through().unwrap(), Some(4));
    l.append_batch_recorded(&evs[2..4], &[String::new(), String::new()], None)
        .unwrap();
    assert_eq!(l.source_read_through().unwrap(), Some(9));
    // Not noted: the stored value stays.
    l.append_batch_recorded(&evs[4..], &[String::new(), String::new()], Some(2))
        .unwrap();
    drop(l);
    let mut l = f.open(LedgerConfig::default());
    assert_eq!(l.source_read_through().unwrap(), Some(9));
    assert_eq!(l.source_cursor().unwrap(), Some(2));
    // The last note wins, lower or not (a source that rewound reuses its seqs).
    l.note_read_through(12);
    l.note_read_through(5);
    l.append_batch_recorded(&events(2, 4), &[String::new(), String::new()], None)
        .unwrap();
    assert_eq!(l.source_read_through().unwrap(), Some(5));
}

/// Delegates to sled, but can be told to fail the next commit after applying it (as a failed
/// fsync after a successful write would).
struct FlakyCommit {
    inner: SledStorage,
    fail: std::sync::atomic::AtomicBool,
    /// Answers that no id is known (a writer whose dedup fails).
    forget_ids: std::sync::atomic::AtomicBool,
}

/// A ledger on a [`FlakyCommit`] store in `f` (`forget_ids`: its dedup fails).
fn flaky(f: &Fixture, forget_ids: bool) -> Ledger<FlakyCommit> {
    let storage = FlakyCommit {
        inner: SledStorage::open(&f.path).unwrap(),
        fail: std::sync::atomic::AtomicBool::new(false),
        forget_ids: std::sync::atomic::AtomicBool::new(forget_ids),
    };
    let signer = CheckpointSigner::from_skey(&f.skey).unwrap();
    Ledger::open(storage, signer, vec![9; 32], LedgerConfig::default()).unwrap()
}

impl Storage for FlakyCommit {
    fn head(&self) -> socai_store::storage::Result<socai_store::Head> {
        self.inner.head()
    }
    fn commit(&self, batch: socai_store::storage::CommitBatch) -> socai_store::storage::Result<()> {
        self.inner.commit(batch)?;
        if self.fail.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(socai_store::StorageError::Corrupt(
                "injected fsync failure".into(),
            ));
        }
        Ok(())
    }
    fn source_cursor(&self) -> socai_store::storage::Result<Option<u64>> {
        self.inner.source_cursor()
    }
    fn entry(&self, seq: u64) -> socai_store::storage::Result<Option<Vec<u8>>> {
        self.inner.entry(seq)
    }
    fn entries(
        &self,
        from: u64,
        to: u64,
    ) -> Box<dyn Iterator<Item = socai_store::storage::Result<(u64, Vec<u8>)>> + '_> {
        self.inner.entries(from, to)
    }
    fn id(
        &self,
        agency: &str,
        id: &str,
    ) -> socai_store::storage::Result<Option<socai_store::storage::IdRecord>> {
        if self.forget_ids.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        self.inner.id(agency, id)
    }
    fn ids_named(
        &self,
        id: &str,
    ) -> socai_store::storage::Result<Vec<(String, socai_store::storage::IdRecord)>> {
        self.inner.ids_named(id)
    }
    fn id_index(&self, each: &mut dyn FnMut(u64, u64)) -> socai_store::storage::Result<()> {
        self.inner.id_index(each)
    }
    fn id_index_in_order(
        &self,
        each: &mut dyn FnMut(u64, u64) -> socai_store::storage::Result<bool>,
    ) -> socai_store::storage::Result<()> {
        self.inner.id_index_in_order(each)
    }
    fn dossier_index(&self, each: &mut dyn FnMut(u64, u64)) -> socai_store::storage::Result<()> {
        self.inner.dossier_index(each)
    }
    fn copies(&self, event: &socai_store::EventKey) -> socai_store::storage::Result<Vec<u64>> {
        self.inner.copies(event)
    }
    fn sync_mark(
        &self,
        stream_seq: u64,
        time_ns: i64,
    ) -> socai_store::storage::Result<Option<Vec<u8>>> {
        self.inner.sync_mark(stream_seq, time_ns)
    }
    fn erasures_pending(&self) -> socai_store::storage::Result<Vec<socai_store::EventKey>> {
        self.inner.erasures_pending()
    }
    fn dossier(&self, dossier: &str) -> socai_store::storage::Result<Vec<u64>> {
        self.inner.dossier(dossier)
    }
    fn read_hashes(&self, indexes: &[u64]) -> socai_store::storage::Result<Vec<socai_chain::Hash>> {
        self.inner.read_hashes(indexes)
    }
    fn personal(
        &self,
        seq: u64,
    ) -> socai_store::storage::Result<Option<socai_store::storage::PersonalRecord>> {
        self.inner.personal(seq)
    }
    fn checkpoints_from(
        &self,
        from: u64,
        limit: usize,
    ) -> socai_store::storage::Result<Vec<(u64, String)>> {
        self.inner.checkpoints_from(from, limit)
    }
    fn personal_range(
        &self,
        from: u64,
        to: u64,
    ) -> Box<
        dyn Iterator<
                Item = socai_store::storage::Result<(u64, socai_store::storage::PersonalRecord)>,
            > + '_,
    > {
        self.inner.personal_range(from, to)
    }
    fn latest_checkpoint(&self) -> socai_store::storage::Result<Option<(u64, String)>> {
        self.inner.latest_checkpoint()
    }
    fn checkpoint(&self, size: u64) -> socai_store::storage::Result<Option<String>> {
        self.inner.checkpoint(size)
    }
    fn size_on_disk(&self) -> socai_store::storage::Result<u64> {
        self.inner.size_on_disk()
    }
}

#[test]
fn a_failed_commit_stops_the_writer_until_reopened() {
    let f = Fixture::new();
    let evs = events(100, 12);
    {
        let mut l = flaky(&f, false);
        l.append_batch(&evs[..40], AT).unwrap();
        l.storage()
            .fail
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(l.append_batch(&evs[40..50], AT).is_err());
        // The batch may be on disk; the writer must not guess, so it refuses to go on.
        assert!(matches!(
            l.append_batch(&evs[50..], AT),
            Err(LedgerError::Poisoned)
        ));
        assert!(matches!(l.checkpoint(), Err(LedgerError::Poisoned)));
    }
    // Reopening re-derives the head from disk (here the "failed" batch did land) and continues.
    let mut l = f.open(LedgerConfig::default());
    assert_eq!(l.head().size, 50);
    l.append_batch(&evs[50..], AT).unwrap();
    l.checkpoint().unwrap();
    assert_eq!(verify(&l).entries, 100);
}

#[test]
fn an_event_committed_twice_is_named_by_verify() {
    // Only a writer whose dedup failed can commit an event twice (its entries are signed like
    // any other): the index sums agree, so verify looks for two entries under one fingerprint.
    let f = Fixture::new();
    let evs = events(60, 13);
    {
        let mut l = flaky(&f, true);
        l.append_batch(&evs[..50], AT).unwrap();
        l.append_batch(&evs[7..9], AT).unwrap();
        l.checkpoint().unwrap();
        assert_eq!(l.head().size, 52);
    }
    let l = f.open(LedgerConfig::default());
    let err = socai_store::verify_ledger(
        l.storage(),
        l.verifier(),
        &socai_store::VerifyOptions::default(),
        &|_| {},
    )
    .expect_err("an event committed twice");
    assert_eq!(err.seq(), Some(50), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "event {}/{} is committed twice: at seq 7",
            evs[7].agency, evs[7].id
        )),
        "{text}"
    );
}

#[test]
fn tampered_personal_data_is_named_by_seq() {
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig::default());
    let evs = events(300, 13);
    l.append_batch(&evs, AT).unwrap();
    l.checkpoint().unwrap();
    let personal: Vec<u64> = evs
        .iter()
        .filter(|e| e.personal.is_some())
        .map(|e| l.seq_of(&e.id).unwrap())
        .collect();
    let (a, b) = (personal[personal.len() - 2], personal[personal.len() - 1]);
    let key = |seq: u64| {
        let mut k = vec![b'p'];
        k.extend_from_slice(&seq.to_be_bytes());
        k
    };
    let tree = l.storage().raw_tree();
    let (sealed_a, sealed_b) = (
        tree.get(key(a)).unwrap().unwrap().to_vec(),
        tree.get(key(b)).unwrap().unwrap().to_vec(),
    );
    let check = |what: &str, expected_seq: u64| {
        let err = verify_ledger(
            l.storage(),
            l.verifier(),
            &VerifyOptions::default(),
            &|_| {},
        )
        .expect_err(what);
        assert_eq!(err.seq(), Some(expected_seq), "{what}: {err}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("seq {expected_seq}: ")) && text.contains("personal record"),
            "{what}: {text}"
        );
    };

    // One ciphertext byte flipped: the record no longer opens under its key.
    let mut flipped = sealed_b.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    tree.insert(key(b), flipped).unwrap();
    check("a flipped ciphertext byte must fail", b);
    tree.insert(key(b), sealed_b.clone()).unwrap();
    verify(&l);

    // Two sealed records swapped: each is bound to its seq, so neither opens.
    tree.insert(key(a), sealed_b.clone()).unwrap();
    tree.insert(key(b), sealed_a.clone()).unwrap();
    check("swapped records must fail", a);
    tree.insert(key(a), sealed_a).unwrap();
    tree.insert(key(b), sealed_b).unwrap();
    verify(&l);
}

#[test]
fn readers_see_each_commit_while_the_writer_appends() {
    let f = Fixture::new();
    let evs = events(300, 21);
    let mut l = f.open(LedgerConfig {
        checkpoint_every_events: 1_000_000,
    });
    let reader = l.reader();
    assert_eq!(reader.head().size, 0);
    assert!(matches!(
        reader.entry_bytes(0),
        Err(LedgerError::UnknownSeq { .. })
    ));
    l.append_batch(&evs[..100], AT).unwrap();
    // Another thread reads while the writer appends.
    let seen = std::thread::scope(|s| {
        let r = reader.clone();
        let t = s.spawn(move || {
            let mut sizes = Vec::new();
            for _ in 0..200 {
                let view = r.view();
                // Everything below the head is readable and proven.
                if view.head.size > 0 {
                    r.entry_bytes(view.head.size - 1).unwrap();
                    r.tree_root(view.head.size).unwrap();
                }
                sizes.push(view.head.size);
            }
            sizes
        });
        for chunk in evs[100..].chunks(20) {
            l.append_batch(chunk, AT).unwrap();
        }
        t.join().unwrap()
    });
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "the head never goes back"
    );
    assert_eq!(reader.head(), l.head());
    // No checkpoint yet: proofs say so; then one is visible to readers at once.
    assert!(matches!(
        reader.inclusion_proof(0, None),
        Err(LedgerError::NoCheckpoint)
    ));
    let signed = l.checkpoint().unwrap();
    let proof = reader.inclusion_proof(5, None).unwrap();
    assert_eq!(proof.tree_size, signed.checkpoint.size);
    proof.verify(reader.verifier()).unwrap();
    assert_eq!(reader.checkpoints(0, 10).unwrap().len(), 1);
    assert_eq!(reader.checkpoints(301, 10).unwrap().len(), 0);
    // A dossier's history and an id lookup go through the same reader.
    let id = &evs[50].id;
    assert_eq!(reader.seq_of(id).unwrap(), 50);
    let dossier = &evs[50].dossier;
    assert!(reader.history(dossier).unwrap().contains(&50));
    let entry = reader.entry_json(50, true).unwrap();
    assert_eq!(entry["event"]["id"], id.as_str());
    assert_eq!(
        entry["leaf_hash"],
        leaf_hash(&reader.entry_bytes(50).unwrap()).to_hex()
    );
    assert!(entry.get("personal").is_some());
    assert!(
        reader
            .entry_json(50, false)
            .unwrap()
            .get("personal")
            .is_none()
    );
}

#[test]
fn a_streamed_export_is_exactly_the_bundle_serde_writes() {
    let f = Fixture::new();
    let evs = events(500, 22);
    let mut l = f.open(LedgerConfig::default());
    l.append_batch(&evs, AT).unwrap();
    l.checkpoint().unwrap();
    for (from, to, personal) in [
        (0, None, false),
        (0, None, true),
        (17, Some(333), true),
        (499, Some(500), false),
        (250, Some(250), false),
    ] {
        let mut streamed = Vec::new();
        let written = l
            .export_to(&mut streamed, from, to, personal, &|_| {})
            .unwrap();
        assert_eq!(written, streamed.len() as u64);
        let bundle: socai_chain::bundle::Bundle = serde_json::from_slice(&streamed).unwrap();
        assert_eq!(
            serde_json::to_vec(&bundle).unwrap(),
            streamed,
            "export {from}..{to:?} personal {personal}"
        );
        bundle.verify(Some(l.verifier())).unwrap();
        assert_eq!(
            bundle.personal.is_empty(),
            !personal || bundle.from == bundle.to
        );
    }
}

#[test]
fn an_entry_too_large_for_an_entry_bundle_is_refused_and_nothing_written() {
    let f = Fixture::new();
    let mut l = f.open(LedgerConfig::default());
    let mut evs = events(3, 23);
    evs[1].data["padding"] = serde_json::Value::String("x".repeat(70_000));
    assert!(matches!(
        l.classify(&evs[1]).unwrap(),
        Some(AppendOutcome::Oversized { entry_bytes }) if entry_bytes > 70_000
    ));
    let out = l.append_batch(&evs, AT).unwrap();
    assert_eq!(out[0], AppendOutcome::Committed { seq: 0 });
    assert!(matches!(out[1], AppendOutcome::Oversized { .. }));
    assert_eq!(out[2], AppendOutcome::Committed { seq: 1 });
    let refusal = out[1].refusal(&evs[1].id).unwrap();
    assert_eq!(refusal.code, socai_model::ErrorCode::Oversized);
    assert!(refusal.reason.contains("65535"), "{}", refusal.reason);
    assert_eq!(l.head().size, 2);
    // Just below the limit still fits.
    let mut fits = events(4, 24).pop().unwrap();
    let len = socai_store::ledger::public_canonical(&fits).len();
    fits.data["padding"] = serde_json::Value::String("x".repeat(65_535 - len - 400));
    assert_eq!(l.classify(&fits).unwrap(), None);
    assert!(matches!(
        l.append_batch(&[fits], AT).unwrap()[0],
        AppendOutcome::Committed { .. }
    ));
}

#[test]
fn the_default_personal_plain_each_answers_as_sled_does() {
    // FlakyCommit keeps the trait's default `personal_plain_each` (records serialized from
    // `personal`): the same records as sled's own, seq for seq.
    let f = Fixture::new();
    let evs = events(200, 14);
    let mut l = flaky(&f, false);
    l.append_batch(&evs, AT).unwrap();
    let seqs: Vec<u64> = (0..200).collect();
    let read =
        |answers: Vec<socai_store::storage::Result<Option<socai_store::storage::PlainRecord>>>| {
            answers
                .into_iter()
                .map(|r| {
                    r.unwrap()
                        .map(|p| serde_json::from_slice::<serde_json::Value>(&p).unwrap())
                })
                .collect::<Vec<_>>()
        };
    let default = read(l.storage().personal_plain_each(&seqs));
    assert_eq!(default, read(l.storage().inner.personal_plain_each(&seqs)));
    assert!(default.iter().any(Option::is_some), "no personal data");
    for (seq, record) in seqs.iter().zip(&default) {
        let stored = l.storage().personal(*seq).unwrap();
        assert_eq!(
            record.clone(),
            stored.map(|r| serde_json::to_value(r).unwrap())
        );
    }
}
