//! Per-agency event ids, sealed personal data and real erasure, over real sled stores.

use proptest::prelude::*;
use serde_json::Value;
use socai_chain::checkpoint::CheckpointSigner;
use socai_chain::entry::{Entry, personal_commitment};
use socai_model::Event;
use socai_store::keystore::SLOT;
use socai_store::storage::PersonalRecord;
use socai_store::{
    AppendOutcome, EventKey, Ledger, LedgerConfig, LedgerError, SledStorage, Storage,
};
use std::path::{Path, PathBuf};

const AT: &str = "2026-11-22T03:00:00.000Z";

struct Fixture {
    tmp: tempfile::TempDir,
    path: PathBuf,
    skey: String,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ledger");
        let (_, skey, _) = CheckpointSigner::generate("test.socai/ledger").unwrap();
        Fixture { tmp, path, skey }
    }
    fn open(&self) -> Ledger<SledStorage> {
        Ledger::open(
            SledStorage::open(&self.path).unwrap(),
            CheckpointSigner::from_skey(&self.skey).unwrap(),
            vec![9; 32],
            LedgerConfig::default(),
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

/// Every byte of every file under `dir`.
fn files_contain(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                hits.push(p);
            }
        }
    }
    hits
}

/// An event with a recognisable personal value.
fn marked(mut e: Event, mark: &str) -> Event {
    e.personal = Some(serde_json::json!({"full_name": mark, "citizen_id": "079912345678"}));
    e
}

#[test]
fn ids_are_unique_per_agency_and_a_conflict_names_only_the_agencys_own_event() {
    let f = Fixture::new();
    let mut l = f.open();
    let evs = events(40, 1);
    let a = evs[0].clone();
    let other = evs.iter().find(|e| e.agency != a.agency).unwrap();
    // Agency B publishes an event under A's id first ("squatting"): it is B's own id.
    let mut squat = other.clone();
    squat.id = a.id.clone();
    let out = l.append_batch(&[squat.clone(), a.clone()], AT).unwrap();
    assert_eq!(
        out,
        vec![
            AppendOutcome::Committed { seq: 0 },
            AppendOutcome::Committed { seq: 1 }
        ],
        "A's event is not a conflict with B's"
    );
    // Same agency, same id, other content: a conflict naming A's own seq only.
    let mut changed = a.clone();
    changed.occurred_at = "2026-11-22T04:00:00Z".into();
    let out = l.append_batch(std::slice::from_ref(&changed), AT).unwrap();
    assert_eq!(out, vec![AppendOutcome::Conflict { existing_seq: 1 }]);
    let reason = out[0].refusal(&changed.id).unwrap().reason;
    assert!(
        reason.contains("seq 1") && !reason.contains("seq 0"),
        "{reason}"
    );
    // The same event again from A is a duplicate of A's, not of B's.
    assert_eq!(
        l.append_batch(std::slice::from_ref(&a), AT).unwrap(),
        vec![AppendOutcome::Duplicate { seq: 1 }]
    );
    // Lookups: an id alone is ambiguous now; AGENCY/ID names one.
    match l.seq_of(&a.id) {
        Err(LedgerError::AmbiguousId { agencies, .. }) => {
            let mut want = vec![a.agency.clone(), other.agency.clone()];
            want.sort();
            assert_eq!(agencies, want);
        }
        other => panic!("expected AmbiguousId, got {other:?}"),
    }
    assert_eq!(l.seq_of(&format!("{}/{}", a.agency, a.id)).unwrap(), 1);
    assert_eq!(l.seq_of(&format!("{}/{}", other.agency, a.id)).unwrap(), 0);
    assert_eq!(l.seq_of(&evs[1].id).ok(), None, "not committed");
}

#[test]
fn personal_data_is_sealed_and_redaction_destroys_its_key_in_place() {
    let f = Fixture::new();
    let mut l = f.open();
    let mut evs = events(200, 2);
    let with: Vec<usize> = (0..evs.len())
        .filter(|&i| evs[i].personal.is_some())
        .collect();
    assert!(with.len() >= 4, "the workload has personal data");
    let (target, kept) = (with[1], with[2]);
    evs[target] = marked(evs[target].clone(), "Nguyễn Thị Erasable");
    evs[kept] = marked(evs[kept].clone(), "Trần Văn Keepme");
    let sources: Vec<u64> = (1000..1000 + evs.len() as u64).collect();
    let times = vec![AT.to_string(); evs.len()];
    l.append_batch_sourced(&evs, &times, &sources, |_| {
        Some(socai_store::SourceCursor {
            seq: 1199,
            time_ns: 0,
        })
    })
    .unwrap();
    l.checkpoint().unwrap();
    // Sealed: the plaintext is in no file of the store, yet readable through the ledger.
    let erasable = "Nguyễn Thị Erasable".as_bytes();
    assert!(files_contain(f.tmp.path(), erasable).is_empty());
    let tseq = l.seq_of(&evs[target].id).unwrap();
    assert_eq!(
        l.personal(tseq).unwrap().unwrap().personal["full_name"],
        "Nguyễn Thị Erasable"
    );
    // Where the event's copy is on NATS was recorded with the commit.
    let key = EventKey::new(&evs[target].agency, &evs[target].id);
    assert_eq!(
        l.storage().copies(&key).unwrap(),
        vec![1000 + target as u64]
    );
    assert!(l.storage().erasures_pending().unwrap().is_empty());
    let keys_before = std::fs::read(SledStorage::keys_path(&f.path)).unwrap();

    let (t, r) = l
        .redact(&evs[target].id, "erasure request", "dpo@test", AT)
        .unwrap();
    assert_eq!(t, tseq);
    assert_eq!(l.personal(tseq).unwrap(), None);
    assert_eq!(l.storage().erasures_pending().unwrap(), vec![key.clone()]);
    // The key's slot is zeros now (the file did not grow or move: overwritten in place).
    let keys_after = std::fs::read(SledStorage::keys_path(&f.path)).unwrap();
    assert_eq!(keys_before.len(), keys_after.len());
    let changed: Vec<usize> = (0..keys_after.len() / SLOT as usize)
        .filter(|i| {
            let s = i * SLOT as usize..(i + 1) * SLOT as usize;
            keys_before[s.clone()] != keys_after[s]
        })
        .collect();
    assert_eq!(changed.len(), 1, "exactly one key destroyed");
    let slot = changed[0] * SLOT as usize;
    assert!(
        keys_after[slot..slot + SLOT as usize]
            .iter()
            .all(|&b| b == 0)
    );
    // The others are intact; the redaction entry is public and valid.
    let kseq = l.seq_of(&evs[kept].id).unwrap();
    assert_eq!(
        l.personal(kseq).unwrap().unwrap().personal["full_name"],
        "Trần Văn Keepme"
    );
    let entry = l.entry(r).unwrap();
    assert_eq!(entry.event["type"], "ledger.redacted");
    assert!(matches!(
        l.redact(&evs[target].id, "again", "dpo@test", AT),
        Err(LedgerError::NothingToRedact { already: true, .. })
    ));
    // A copy of the redacted event arriving later is marked for erasure at once.
    l.mark_erased(vec![key.clone()]).unwrap();
    assert!(l.storage().erasures_pending().unwrap().is_empty());
    l.append_batch_sourced(
        std::slice::from_ref(&evs[target]),
        &[AT.to_string()],
        &[5000],
        |_| {
            Some(socai_store::SourceCursor {
                seq: 5000,
                time_ns: 0,
            })
        },
    )
    .unwrap();
    assert_eq!(l.storage().erasures_pending().unwrap(), vec![key.clone()]);
    assert_eq!(
        l.storage().copies(&key).unwrap(),
        vec![1000 + target as u64, 5000]
    );
    drop(l);
    // Reopened: still erased, still consistent.
    let l = f.open();
    assert_eq!(l.personal(tseq).unwrap(), None);
    assert!(l.personal(kseq).unwrap().is_some());
}

#[test]
fn an_invalid_redaction_writes_nothing() {
    let f = Fixture::new();
    let mut l = f.open();
    let evs = events(100, 3);
    l.append_batch(&evs, AT).unwrap();
    let id = &evs.iter().find(|e| e.personal.is_some()).unwrap().id;
    let size = l.head().size;
    for (reason, by) in [
        ("", "dpo"),
        ("ok", ""),
        (&*"x".repeat(2001), "dpo"),
        ("a\u{1}b", "dpo"),
        ("ok", "line\nbreak"),
    ] {
        let err = l.redact(id, reason, by, AT).unwrap_err();
        assert!(matches!(err, LedgerError::InvalidRedaction(_)), "{err}");
        assert!(err.to_string().contains("/data/"), "names the field: {err}");
    }
    assert_eq!(l.head().size, size);
    assert!(l.personal(l.seq_of(id).unwrap()).unwrap().is_some());
}

#[test]
fn keys_of_a_commit_that_never_landed_are_destroyed_at_open() {
    let f = Fixture::new();
    let mut l = f.open();
    l.append_batch(&events(50, 4), AT).unwrap();
    drop(l);
    let path = SledStorage::keys_path(&f.path);
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 0 && len.is_multiple_of(SLOT));
    // A crash after the keys' fsync but before the sled commit leaves keys nobody refers to.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0xAB; 64]);
    std::fs::write(&path, &bytes).unwrap();
    let l = f.open();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    assert!(l.storage().personal_range(0, 50).all(|r| r.is_ok()));
}

#[test]
fn a_layout_1_store_is_migrated_at_open() {
    let f = Fixture::new();
    let evs = events(120, 5);
    let mut l = f.open();
    l.append_batch(&evs, AT).unwrap();
    l.checkpoint().unwrap();
    let personal: Vec<(u64, socai_store::storage::PersonalRecord)> = l
        .storage()
        .personal_range(0, 120)
        .map(|r| r.unwrap())
        .collect();
    assert!(!personal.is_empty());
    // Rewrite it as layout 1 wrote it: id keys without agency, plaintext personal records.
    {
        let tree = l.storage().raw_tree();
        let ids: Vec<_> = evs
            .iter()
            .map(|e| {
                let rec = l.storage().id(&e.agency, &e.id).unwrap().unwrap();
                (EventKey::new(&e.agency, &e.id), rec)
            })
            .collect();
        as_layout_2_indexes(&l);
        for (key, rec) in &ids {
            tree.remove(SledStorage::id_key(&key.agency, &key.id))
                .unwrap();
            let mut k = vec![b'i'];
            k.extend_from_slice(key.id.as_bytes());
            let mut v = rec.seq.to_be_bytes().to_vec();
            v.extend_from_slice(&rec.digest.0);
            tree.insert(k, v).unwrap();
        }
        for (seq, rec) in &personal {
            let mut k = vec![b'p'];
            k.extend_from_slice(&seq.to_be_bytes());
            tree.insert(k, serde_json::to_vec(rec).unwrap()).unwrap();
        }
        tree.remove(b"mlayout").unwrap();
        tree.remove(b"mslots").unwrap();
        l.storage().raw_db().flush().unwrap();
    }
    drop(l);
    std::fs::remove_file(SledStorage::keys_path(&f.path)).unwrap();
    let l = f.open();
    for e in &evs {
        assert!(
            l.seq_of(&format!("{}/{}", e.agency, e.id)).is_ok(),
            "{}",
            e.id
        );
    }
    let after: Vec<_> = l
        .storage()
        .personal_range(0, 120)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(after, personal);
    let mut pairs = 0;
    l.storage().id_index(&mut |_, _| pairs += 1).unwrap();
    assert_eq!(pairs, evs.len(), "one id pair per entry");
    let tree = l.storage().raw_tree();
    assert_eq!(tree.scan_prefix(b"i").count(), 0, "no layout-1 id key left");
}

/// Rewrites the indexes as layout 2 kept them, an `i` and a `d` key per entry, and leaves one
/// run of each index behind (as a migration interrupted half-way would).
fn as_layout_2_indexes(l: &Ledger<SledStorage>) -> Vec<(String, u64)> {
    let tree = l.storage().raw_tree();
    let size = l.head().size;
    let mut keys = Vec::new();
    for r in l.storage().entries(0, size) {
        let (seq, bytes) = r.unwrap();
        let entry = socai_chain::Entry::decode(&bytes).unwrap();
        let (agency, id) = (entry.event["agency"].as_str().unwrap(), entry.event_id());
        let rec = l.storage().id(agency, id).unwrap().unwrap();
        let mut v = seq.to_be_bytes().to_vec();
        v.extend_from_slice(&rec.digest.0);
        tree.insert(SledStorage::id_key(agency, id), v).unwrap();
        let dossier = entry.dossier().to_owned();
        tree.insert(SledStorage::dossier_key(&dossier, seq), &[][..])
            .unwrap();
        keys.push((dossier, seq));
    }
    for runs in [l.storage().event_runs(), l.storage().dossier_runs()] {
        runs.clear().unwrap();
        let _paused = runs.pause_merges();
        let mut b = sled::Batch::default();
        let _ = runs.add(&mut b, 0, 1, vec![(7, 0)]);
        tree.apply_batch(b).unwrap();
    }
    keys
}

#[test]
fn layout_2_indexes_become_runs_at_open() {
    let f = Fixture::new();
    let mut l = f.open();
    for chunk in events(900, 8).chunks(40) {
        l.append_batch(chunk, AT).unwrap();
    }
    l.checkpoint().unwrap();
    let before: Vec<(String, Vec<u64>)> = {
        let mut by_dossier = std::collections::BTreeMap::<String, Vec<u64>>::new();
        for (d, seq) in as_layout_2_indexes(&l) {
            by_dossier.entry(d).or_default().push(seq);
        }
        by_dossier.into_iter().collect()
    };
    let tree = l.storage().raw_tree();
    tree.insert(b"mlayout", &2u64.to_be_bytes()[..]).unwrap();
    l.storage().raw_db().flush().unwrap();
    drop((tree, l));
    let l = f.open();
    let tree = l.storage().raw_tree();
    assert_eq!(
        tree.scan_prefix(b"d").count(),
        0,
        "no layout-2 dossier key left"
    );
    assert_eq!(
        tree.get(b"mlayout").unwrap().unwrap().as_ref(),
        &socai_store::storage::LAYOUT.to_be_bytes()[..]
    );
    for (dossier, seqs) in &before {
        assert_eq!(&l.storage().dossier(dossier).unwrap(), seqs, "{dossier}");
    }
    assert_eq!(tree.scan_prefix(b"i").count(), 0, "no layout-2 id key left");
    for e in &events(900, 8) {
        let rec = l
            .storage()
            .id(&e.agency, &e.id)
            .unwrap()
            .expect("every id found");
        assert_eq!(
            l.seq_of(&format!("{}/{}", e.agency, e.id)).unwrap(),
            rec.seq
        );
    }
    let report = socai_store::verify_ledger(
        l.storage(),
        l.verifier(),
        &socai_store::VerifyOptions::default(),
        &|_| {},
    )
    .unwrap();
    assert!(report.indexes_checked);
    assert_eq!(report.entries, 900);
}

#[test]
fn a_layout_2_store_with_an_unreadable_bundle_opens_with_its_indexes_marked_broken() {
    let f = Fixture::new();
    let mut l = f.open();
    let evs = events(200, 10);
    l.append_batch(&evs, AT).unwrap();
    l.checkpoint().unwrap();
    as_layout_2_indexes(&l);
    let tree = l.storage().raw_tree();
    tree.insert(b"mlayout", &2u64.to_be_bytes()[..]).unwrap();
    tree.insert(SledStorage::bundle_key(100).0, &b"not a bundle"[..])
        .unwrap();
    l.storage().raw_db().flush().unwrap();
    drop((tree, l));
    // It opens (so that verify can run), but refuses lookups: an id the index lacks could
    // otherwise be committed twice.
    let mut l = f.open();
    let err = l.storage().id(&evs[0].agency, &evs[0].id).unwrap_err();
    assert!(
        err.to_string().contains("16 entries could not be read"),
        "{err}"
    );
    assert!(l.append_batch(&events(1, 11), AT).is_err());
    let tree = l.storage().raw_tree();
    assert_eq!(
        tree.get(b"mlayout").unwrap().unwrap().as_ref(),
        &2u64.to_be_bytes()[..],
        "not migrated"
    );
    assert_eq!(
        tree.scan_prefix(b"i").count(),
        200,
        "the layout-2 keys stay"
    );
    let err = socai_store::verify_ledger(
        l.storage(),
        l.verifier(),
        &socai_store::VerifyOptions::default(),
        &|_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("entry bundle 6"), "{err}");
}

#[test]
fn a_lost_or_older_key_file_is_refused_at_open_never_taken_for_redactions() {
    let f = Fixture::new();
    let mut l = f.open();
    l.append_batch(&events(60, 6), AT).unwrap();
    drop(l);
    let path = SledStorage::keys_path(&f.path);
    let full = std::fs::read(&path).unwrap();
    for kept in [0, full.len() - SLOT as usize] {
        std::fs::write(&path, &full[..kept]).unwrap();
        let err = SledStorage::open(&f.path).err().expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("personal-data key file") && text.contains("restore it from the backup"),
            "{text}"
        );
    }
    std::fs::write(&path, &full).unwrap();
    let l = f.open();
    assert!(l.storage().personal_range(0, 60).all(|r| r.is_ok()));
}

/// Verify reads a range's personal records with one scan (`personal_plain_each`); each seq must
/// get exactly what `personal` gives it: a record (as its JSON), nothing (none stored, or
/// redacted), or the error of a record that does not open.
#[test]
fn personal_plain_each_answers_every_seq_as_personal_does() {
    let f = Fixture::new();
    let mut l = f.open();
    let evs = events(120, 7);
    l.append_batch(&evs, AT).unwrap();
    let with: Vec<u64> = (0..evs.len() as u64)
        .filter(|&s| l.personal(s).unwrap().is_some())
        .collect();
    assert!(with.len() >= 6, "the workload has personal data");
    let target = evs
        .iter()
        .find(|e| l.seq_of(&e.id).unwrap() == with[2])
        .unwrap();
    l.redact(&target.id, "erasure request", "dpo@test", AT)
        .unwrap();
    // A record that no longer decrypts (tampered bytes).
    let tampered = with[4];
    {
        let tree = l.storage().raw_tree();
        let mut k = vec![b'p'];
        k.extend_from_slice(&tampered.to_be_bytes());
        let mut v = tree.get(&k).unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 1;
        tree.insert(k, v).unwrap();
    }
    let s = l.storage();
    let all: Vec<u64> = (0..s.head().unwrap().size).collect();
    let sparse: Vec<u64> = all.iter().copied().filter(|n| n % 3 == 1).collect();
    for seqs in [
        all,
        with.clone(),
        sparse,
        vec![with[2]],
        vec![tampered, with[5]],
        vec![],
    ] {
        let each = s.personal_plain_each(&seqs);
        assert_eq!(each.len(), seqs.len());
        for (seq, got) in seqs.iter().zip(each) {
            match (got, s.personal(*seq)) {
                (Ok(a), Ok(b)) => {
                    let a =
                        a.map(|plain| serde_json::from_slice::<PersonalRecord>(&plain).unwrap());
                    assert_eq!(a, b, "seq {seq}")
                }
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "seq {seq}"),
                (a, b) => panic!("seq {seq}: personal_plain_each gave {a:?}, personal {b:?}"),
            }
        }
    }
    assert!(s.personal_plain_each(&[tampered]).remove(0).is_err());
    assert!(
        s.personal_plain_each(&[with[2]])
            .remove(0)
            .unwrap()
            .is_none()
    );
    // The stored JSON gives the entry's commitment.
    let plain = s
        .personal_plain_each(&[with[0]])
        .remove(0)
        .unwrap()
        .unwrap();
    let entry = Entry::decode(&s.entry(with[0]).unwrap().unwrap()).unwrap();
    assert_eq!(
        PersonalRecord::commitment_of_plain(&plain).unwrap(),
        entry.personal_commitment
    );
}

/// JSON values whose serde_json spelling is often not RFC 8785's: doubles (`1.0`, `1e21`),
/// escapes, keys that sort differently in UTF-16, nesting.
fn any_personal() -> impl Strategy<Value = Value> {
    let string = prop_oneof![
        "[a-zA-Z0-9 ]{0,8}",
        Just("\u{e000}".to_owned()),
        Just("\u{1f600}".to_owned()),
        Just("Nguyễn Thị \u{7f}\u{2028}\"\\\n".to_owned()),
        prop::collection::vec(any::<char>(), 0..6).prop_map(String::from_iter),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop_oneof![Just(1.0f64), Just(1e21), Just(-0.0), Just(0.1)].prop_map(Value::from),
        string.clone().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(string.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Verify hashes a stored record's `personal` as it is when it is canonical and parses it
    /// otherwise: either way it gets the commitment the entry was given.
    #[test]
    fn commitment_of_plain_is_the_commitment(salt in any::<[u8; 16]>(), personal in any_personal()) {
        let rec = PersonalRecord { salt: hex::encode(salt), personal: personal.clone() };
        let plain = serde_json::to_vec(&rec).unwrap();
        prop_assert_eq!(
            PersonalRecord::commitment_of_plain(&plain).unwrap(),
            Some(personal_commitment(&salt, &personal))
        );
    }
}

#[test]
fn commitment_of_plain_reads_any_record_json() {
    let salt = [7u8; 16];
    let personal = serde_json::json!({"name": "Lê Văn A", "cccd": "001099000123"});
    let want = Some(personal_commitment(&salt, &personal));
    let hex = hex::encode(salt);
    // Members in another order and spaces (the slow path), an upper-case salt (the fast path):
    // the same commitment.
    for text in [
        format!(r#"{{"personal":{personal},"salt":"{hex}"}}"#),
        format!(
            r#"{{ "salt": "{hex}", "personal": {{"name":"Lê Văn A", "cccd":"001099000123"}} }}"#
        ),
        format!(
            r#"{{"salt":"{}","personal":{personal}}}"#,
            hex.to_uppercase()
        ),
    ] {
        assert_eq!(
            PersonalRecord::commitment_of_plain(text.as_bytes()),
            Ok(want),
            "{text}"
        );
    }
    // A salt that is not 16 bytes gives no commitment; a record that is not JSON is an error.
    let short = format!(r#"{{"salt":"{}","personal":{personal}}}"#, &hex[..30]);
    assert_eq!(
        PersonalRecord::commitment_of_plain(short.as_bytes()),
        Ok(None)
    );
    let bad = format!(r#"{{"salt":"{hex}","personal":{personal}"#);
    assert!(PersonalRecord::commitment_of_plain(bad.as_bytes()).is_err());
    // Another value under the same salt gives another commitment.
    let other =
        format!(r#"{{"salt":"{hex}","personal":{{"cccd":"001099000124","name":"Lê Văn A"}}}}"#);
    assert_ne!(
        PersonalRecord::commitment_of_plain(other.as_bytes()),
        Ok(want)
    );
}
