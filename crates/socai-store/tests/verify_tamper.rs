//! `verify_ledger` against a corpus of tampered stores: each must fail, naming the first bad seq
//! and what is wrong. Every case starts from a fresh, valid ledger (300 events with personal data,
//! checkpoints every 100 entries, one redaction) and changes it through the raw sled tree.

use socai_chain::checkpoint::{Checkpoint, CheckpointSigner};
use socai_chain::entry::Entry;
use socai_chain::merkle::{stored_hash_count, tree_root};
use socai_chain::{CheckpointVerifier, Hash};
use socai_model::Event;
use socai_store::runs::Runs;
use socai_store::storage::{
    DOSSIER_RUNS, StoredHashes, dossier_fingerprint, event_fingerprint, join_bundle, open_bundle,
    split_bundle,
};
use socai_store::{
    Ledger, LedgerConfig, SledStorage, Storage, VerifyError, VerifyOptions, VerifyReport,
    verify_ledger,
};

const AT: &str = "2026-11-22T03:00:00.000Z";
const ORIGIN: &str = "test.socai/ledger";

struct Store {
    _tmp: tempfile::TempDir,
    ledger: Ledger<SledStorage>,
    skey: String,
    evs: Vec<Event>,
    /// Entries in the log (the events and the redaction entry).
    size: u64,
    /// The seq whose personal data was redacted.
    redacted: u64,
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

impl Store {
    fn new() -> Store {
        let tmp = tempfile::tempdir().unwrap();
        let (_, skey, _) = CheckpointSigner::generate(ORIGIN).unwrap();
        let storage = SledStorage::open(&tmp.path().join("ledger")).unwrap();
        let mut ledger = Ledger::open(
            storage,
            CheckpointSigner::from_skey(&skey).unwrap(),
            vec![9; 32],
            LedgerConfig {
                checkpoint_every_events: 100,
            },
        )
        .unwrap();
        let evs = events(300, 13);
        for batch in evs.chunks(50) {
            ledger.append_batch(batch, AT).unwrap();
        }
        let target = evs.iter().find(|e| e.personal.is_some()).unwrap();
        let (redacted, _) = ledger
            .redact(&target.id, "citizen request", "inspector-7", AT)
            .unwrap();
        ledger.checkpoint().unwrap();
        let size = ledger.storage().head().unwrap().size;
        assert_eq!(size, 301);
        Store {
            _tmp: tmp,
            ledger,
            skey,
            evs,
            size,
            redacted,
        }
    }

    fn storage(&self) -> &SledStorage {
        self.ledger.storage()
    }

    fn tree(&self) -> socai_store::storage::Held<sled::Tree> {
        self.storage().raw_tree()
    }

    fn verify_with(&self, trusted: &CheckpointVerifier) -> Result<VerifyReport, VerifyError> {
        let options = VerifyOptions {
            threads: 2,
            chunk_entries: 64,
            ..VerifyOptions::default()
        };
        verify_ledger(self.storage(), trusted, &options, &|_| {})
    }

    fn verify(&self) -> Result<VerifyReport, VerifyError> {
        self.verify_with(self.ledger.verifier())
    }

    fn entry_text(&self, seq: u64) -> String {
        String::from_utf8(self.storage().entry(seq).unwrap().unwrap()).unwrap()
    }

    fn put_entry(&self, seq: u64, bytes: &[u8]) {
        let (k, offset) = SledStorage::bundle_key(seq);
        let stored = self.tree().get(k).unwrap().unwrap();
        let bundle = open_bundle(&stored).unwrap();
        let mut entries: Vec<&[u8]> = split_bundle(&bundle).unwrap();
        entries[offset] = bytes;
        self.tree().insert(k, join_bundle(&entries)).unwrap();
    }

    /// Replaces the first `from` in entry `seq` by `to`.
    fn edit_entry(&self, seq: u64, from: &str, to: &str) {
        let text = self.entry_text(seq);
        assert!(text.contains(from), "entry {seq} has no {from:?}: {text}");
        self.put_entry(seq, text.replacen(from, to, 1).as_bytes());
    }

    fn parts(&self, seq: u64) -> (String, String, String) {
        let e = Entry::decode(&self.storage().entry(seq).unwrap().unwrap()).unwrap();
        (
            e.event["agency"].as_str().unwrap().to_owned(),
            e.event_id().to_owned(),
            e.dossier().to_owned(),
        )
    }

    /// Rewrites an index's pairs ((fingerprint, seq)) through `edit`, as one well-formed run:
    /// a tamper only the comparison with the entries can see.
    fn edit_pairs(&self, runs: &Runs, edit: impl FnOnce(&mut Vec<(u64, u64)>)) {
        // `check` and `clear` hold merges off themselves; the pairs survive any merge between.
        let mut pairs = Vec::new();
        runs.check(|fp, seq| pairs.push((fp, seq))).unwrap();
        edit(&mut pairs);
        let end = runs.end();
        runs.clear().unwrap();
        let _paused = runs.pause_merges();
        let mut b = sled::Batch::default();
        let _ = runs.add(&mut b, 0, end, pairs);
        self.tree().apply_batch(b).unwrap();
        runs.reload().unwrap();
    }

    fn edit_dossier_pairs(&self, edit: impl FnOnce(&mut Vec<(u64, u64)>)) {
        self.edit_pairs(&self.storage().dossier_runs(), edit)
    }

    fn edit_event_pairs(&self, edit: impl FnOnce(&mut Vec<(u64, u64)>)) {
        self.edit_pairs(&self.storage().event_runs(), edit)
    }

    fn hash_chunk_key(chunk: u64) -> Vec<u8> {
        let mut k = vec![b'h'];
        k.extend_from_slice(&chunk.to_be_bytes());
        k
    }

    fn personal_key(seq: u64) -> Vec<u8> {
        let mut k = vec![b'p'];
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// A seq (after `after`) of an event that carried personal data and was not redacted.
    fn personal_seq(&self, after: u64) -> u64 {
        self.evs
            .iter()
            .filter(|e| e.personal.is_some())
            .map(|e| self.ledger.seq_of(&e.id).unwrap())
            .find(|&s| s > after && s != self.redacted)
            .unwrap()
    }

    fn signer(&self) -> CheckpointSigner {
        CheckpointSigner::from_skey(&self.skey).unwrap()
    }
}

/// Checks that `result` fails at `seq` with a message containing each of `needles`.
fn expect(case: &str, result: Result<VerifyReport, VerifyError>, seq: u64, needles: &[&str]) {
    let err = match result {
        Ok(report) => panic!("{case}: verify passed a tampered store: {report:?}"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert_eq!(err.seq(), Some(seq), "{case}: {text}");
    assert!(
        text.starts_with(&format!("seq {seq}: ")),
        "{case}: the message must name seq {seq} first: {text}"
    );
    for needle in needles {
        assert!(text.contains(needle), "{case}: {text:?} lacks {needle:?}");
    }
}

#[test]
fn the_untampered_store_verifies() {
    let s = Store::new();
    let report = s.verify().unwrap();
    assert_eq!(report.entries, s.size);
    assert_eq!(report.stored_hashes_checked, stored_hash_count(s.size));
    assert!(report.indexes_checked);
    assert_eq!(report.personal_redacted, 1);
    assert!(report.personal_checked > 0);
    assert_eq!(report.checkpoints_checked, 4);
}

// ---- entries: canonical form, repeated keys, links ----

#[test]
fn non_canonical_whitespace() {
    let s = Store::new();
    s.edit_entry(42, "{\"event\":{", "{\"event\": {");
    expect(
        "whitespace",
        s.verify(),
        42,
        &["not RFC 8785 canonical JSON", "at byte 9"],
    );
}

#[test]
fn non_canonical_key_order() {
    let s = Store::new();
    let text = s.entry_text(57);
    let moved = text
        .replacen("{\"event\":", "{\"v\":1,\"event\":", 1)
        .replacen(",\"v\":1}", "}", 1);
    s.put_entry(57, moved.as_bytes());
    expect(
        "unsorted keys",
        s.verify(),
        57,
        &["not RFC 8785 canonical JSON", "at byte 2"],
    );
}

/// The first entry (from `from` on) whose `data` holds a non-negative integer member, with
/// the member's text.
fn data_integer(s: &Store, from: u64) -> (u64, String) {
    for seq in from..s.size {
        let e = Entry::decode(&s.storage().entry(seq).unwrap().unwrap()).unwrap();
        for (k, v) in e.event["data"].as_object().unwrap() {
            if let Some(n) = v.as_u64() {
                return (seq, format!("{}:{n}", serde_json::to_string(k).unwrap()));
            }
        }
    }
    panic!("no entry holds an integer in its data");
}

#[test]
fn non_canonical_numbers() {
    for (name, suffix) in [("n.0", ".0"), ("ne0", "e0"), ("nE+0", "E+0")] {
        let s = Store::new();
        let (seq, member) = data_integer(&s, 20);
        s.edit_entry(seq, &member, &format!("{member}{suffix}"));
        expect(
            &format!("number spelled {name}"),
            s.verify(),
            seq,
            &["not RFC 8785 canonical JSON", &format!("found \"{suffix}")],
        );
    }
}

#[test]
fn non_canonical_escapes() {
    // An escaped letter, and an escaped slash: valid JSON that JCS writes raw.
    let s = Store::new();
    let (agency, _, _) = s.parts(70);
    let first = agency.chars().next().unwrap();
    s.edit_entry(
        70,
        &format!("\"agency\":\"{first}"),
        &format!("\"agency\":\"\\u{:04x}", first as u32),
    );
    expect(
        "escaped letter",
        s.verify(),
        70,
        &["not RFC 8785 canonical JSON", "\\\\u00"],
    );

    let s = Store::new();
    let text = s.entry_text(71);
    let at = text.find("\"recorded_at\":\"").unwrap() + 15;
    let mut changed = text.clone();
    changed.insert_str(at, "\\/");
    s.put_entry(71, changed.as_bytes());
    expect(
        "escaped slash",
        s.verify(),
        71,
        &["not RFC 8785 canonical JSON"],
    );
}

#[test]
fn duplicate_key_in_data() {
    let s = Store::new();
    let (seq, member) = data_integer(&s, 30);
    let key = member.split(':').next().unwrap().to_owned();
    // The same member twice (same value): a reader keeping the first or the last sees the same,
    // but the bytes are still not one canonical object.
    s.edit_entry(seq, &member, &format!("{member},{key}:7"));
    let pointer = format!("/event/data/{}", key.trim_matches('"'));
    expect(
        "duplicate key in data",
        s.verify(),
        seq,
        &[&format!("entry field {pointer}: duplicate key")],
    );
}

#[test]
fn duplicate_key_at_top_level() {
    let s = Store::new();
    s.edit_entry(88, "\"seq\":88", "\"seq\":88,\"seq\":88");
    expect(
        "duplicate top-level key",
        s.verify(),
        88,
        &["entry field /seq: duplicate key"],
    );
}

#[test]
fn wrong_prev() {
    let s = Store::new();
    let text = s.entry_text(120);
    let at = text.find("\"prev\":\"").unwrap() + 8;
    let mut changed = text.into_bytes();
    changed[at] = if changed[at] == b'0' { b'1' } else { b'0' };
    s.put_entry(120, &changed);
    expect(
        "wrong prev",
        s.verify(),
        120,
        &["prev is", "expected the leaf hash of the previous entry"],
    );
}

#[test]
fn wrong_seq() {
    let s = Store::new();
    s.edit_entry(130, "\"seq\":130", "\"seq\":131");
    expect(
        "wrong seq",
        s.verify(),
        130,
        &["entry says seq 131, expected 130"],
    );
}

#[test]
fn entry_missing_in_the_middle() {
    let s = Store::new();
    // Drop the last entry of a full bundle: the next bundle starts at the right seq again.
    let (k, _) = SledStorage::bundle_key(47);
    let stored = s.tree().get(k).unwrap().unwrap();
    let bundle = open_bundle(&stored).unwrap();
    let entries = split_bundle(&bundle).unwrap();
    s.tree().insert(k, join_bundle(&entries[..15])).unwrap();
    expect("missing entry", s.verify(), 47, &["entry is missing"]);
}

// ---- stored Merkle hashes ----

#[test]
fn wrong_hash_in_a_chunk() {
    let s = Store::new();
    // Leaf 7 completes subtrees of 2, 4 and 8 leaves: flip the stored root of the 4.
    let index = stored_hash_count(7) + 2;
    let key = Store::hash_chunk_key(0);
    let mut chunk = s.tree().get(&key).unwrap().unwrap().to_vec();
    chunk[index as usize * 32] ^= 0x80;
    s.tree().insert(&key, chunk).unwrap();
    expect(
        "wrong stored hash",
        s.verify(),
        7,
        &[
            &format!("stored Merkle hash {index} (hash chunk 0) is "),
            "the entries give",
        ],
    );
    // A stored leaf hash far from the start, in another chunk.
    let s = Store::new();
    let index = stored_hash_count(200);
    let key = Store::hash_chunk_key(index / 256);
    let mut chunk = s.tree().get(&key).unwrap().unwrap().to_vec();
    chunk[(index % 256) as usize * 32 + 31] ^= 1;
    s.tree().insert(&key, chunk).unwrap();
    expect(
        "wrong stored leaf hash",
        s.verify(),
        200,
        &[&format!(
            "stored Merkle hash {index} (hash chunk {})",
            index / 256
        )],
    );
}

#[test]
fn truncated_hash_chunk() {
    let s = Store::new();
    let count = stored_hash_count(s.size);
    let last_chunk = (count - 1) / 256;
    let key = Store::hash_chunk_key(last_chunk);
    let chunk = s.tree().get(&key).unwrap().unwrap().to_vec();
    // Cut the last 3 hashes: leaf 300 appended 1 + trailing_ones(300) = 1 hash, leaf 299 3.
    s.tree()
        .insert(&key, &chunk[..chunk.len() - 3 * 32])
        .unwrap();
    let index = count - 3;
    expect(
        "truncated hash chunk",
        s.verify(),
        299,
        &[
            &format!("stored Merkle hash {index} (hash chunk {last_chunk}) cannot be read"),
            "missing",
        ],
    );
}

#[test]
fn stored_hashes_past_the_head() {
    let s = Store::new();
    let count = stored_hash_count(s.size);
    let key = Store::hash_chunk_key(count / 256);
    let mut chunk = s
        .tree()
        .get(&key)
        .unwrap()
        .map(|v| v.to_vec())
        .unwrap_or_default();
    chunk.extend_from_slice(&[7; 32]);
    s.tree().insert(&key, chunk).unwrap();
    expect(
        "hash past the head",
        s.verify(),
        s.size,
        &[
            &format!("stored Merkle hash {count}"),
            "exists, but 301 entries",
        ],
    );
}

// ---- the id index ----

#[test]
fn missing_id_key() {
    let s = Store::new();
    let (agency, id, _) = s.parts(150);
    s.edit_event_pairs(|pairs| pairs.retain(|&(_, seq)| seq != 150));
    expect(
        "missing id key",
        s.verify(),
        150,
        &[&format!("the id index has no key for event {agency}/{id}")],
    );
}

#[test]
fn id_key_pointing_at_the_wrong_seq() {
    // Lookups confirm every match against its entry: a key moved to another seq finds nothing.
    let s = Store::new();
    let (agency, id, _) = s.parts(160);
    s.edit_event_pairs(|pairs| {
        for p in pairs.iter_mut().filter(|p| p.1 == 160) {
            p.1 = 12;
        }
    });
    expect(
        "id key to the wrong seq",
        s.verify(),
        160,
        &[&format!("the id index has no key for event {agency}/{id}")],
    );
}

#[test]
fn extra_id_key() {
    let s = Store::new();
    let (agency, id, _) = s.parts(5);
    let ghost = event_fingerprint(&agency, "ghost-event");
    s.edit_event_pairs(|pairs| pairs.push((ghost, 5)));
    expect(
        "extra id key",
        s.verify(),
        5,
        &[&format!(
            "the id index lists this entry under event fingerprint {ghost:016x}, but it is event {agency}/{id}"
        )],
    );
    // And one that points past the end: the run's own range says so.
    let s = Store::new();
    s.edit_event_pairs(|pairs| pairs.push((ghost, 1000)));
    let text = s.verify().expect_err("an id key past the end").to_string();
    assert!(text.contains("names entry 1000 outside the run"), "{text}");
}

#[test]
fn redaction_entries_are_indexed_too() {
    let s = Store::new();
    let redaction_seq = s.size - 1;
    let (_, id, _) = s.parts(redaction_seq);
    assert!(id.starts_with("redaction:"), "{id}");
    s.edit_event_pairs(|pairs| pairs.retain(|&(_, seq)| seq != redaction_seq));
    // Without its id key the redaction no longer explains the erased record, which comes first.
    expect(
        "redaction id key",
        s.verify(),
        s.redacted,
        &["the personal record is missing, and no redaction entry"],
    );
}

// ---- the dossier index ----

#[test]
fn missing_dossier_key() {
    let s = Store::new();
    let (_, _, dossier) = s.parts(180);
    s.edit_dossier_pairs(|pairs| pairs.retain(|&(_, seq)| seq != 180));
    expect(
        "missing dossier key",
        s.verify(),
        180,
        &[&format!(
            "the dossier index has no key for this entry of dossier {dossier:?}"
        )],
    );
}

#[test]
fn dossier_key_pointing_at_the_wrong_seq() {
    // The key of 190 moved to 191 (another dossier): 190 is the first bad seq.
    let s = Store::new();
    let (_, _, dossier) = s.parts(190);
    let (_, _, other) = s.parts(191);
    assert_ne!(dossier, other);
    let fp = dossier_fingerprint(&dossier);
    s.edit_dossier_pairs(|pairs| {
        for p in pairs.iter_mut().filter(|p| p.1 == 190) {
            p.1 = 191;
        }
    });
    expect(
        "dossier key moved",
        s.verify(),
        190,
        &["the dossier index has no key for this entry"],
    );
    // An extra key only: named by the seq it lists.
    let s = Store::new();
    s.edit_dossier_pairs(|pairs| pairs.push((fp, 191)));
    expect(
        "extra dossier key",
        s.verify(),
        191,
        &[&format!(
            "the dossier index lists this entry under dossier fingerprint {fp:016x}, but it belongs to {other:?}"
        )],
    );
}

#[test]
fn a_malformed_dossier_run_is_named() {
    // A page out of order (a run whose lookups would miss pairs): verify says which run.
    let s = Store::new();
    // Whatever the merger had to do is done (nothing is committed after): no merge rewrites
    // the page below.
    s.storage().dossier_runs().merge_all().unwrap();
    let (k, page) = s
        .tree()
        .scan_prefix([DOSSIER_RUNS.page])
        .next()
        .unwrap()
        .unwrap();
    assert!(page.len() >= 32, "a page of two pairs at least");
    let mut bytes = page.to_vec();
    let (a, b) = bytes.split_at_mut(16);
    a.swap_with_slice(&mut b[..16]);
    s.tree().insert(k, bytes).unwrap();
    let err = s.verify().expect_err("verify passed a run out of order");
    let text = err.to_string();
    assert!(
        text.contains("index run [") && text.contains("out of order"),
        "{text}"
    );
}

// ---- checkpoints and keys ----

fn checkpoint_key(size: u64) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(&size.to_be_bytes());
    k
}

#[test]
fn checkpoint_signed_by_a_foreign_key() {
    let s = Store::new();
    let (foreign, _, foreign_vkey) = CheckpointSigner::generate(ORIGIN).unwrap();
    let foreign_verifier = CheckpointVerifier::from_vkey(&foreign_vkey).unwrap();
    // The foreign key file passed instead of the log's: the first stored checkpoint fails.
    expect(
        "foreign --vkey",
        s.verify_with(&foreign_verifier),
        100,
        &["checkpoint for tree size 100"],
    );
    // A stored checkpoint replaced by one with the right root signed by a foreign key.
    let root = tree_root(200, &StoredHashes(s.storage())).unwrap();
    let note = foreign
        .sign(&Checkpoint {
            origin: ORIGIN.into(),
            size: 200,
            root,
        })
        .unwrap()
        .note;
    s.tree()
        .insert(checkpoint_key(200), note.as_bytes())
        .unwrap();
    expect(
        "foreign checkpoint, right key",
        s.verify(),
        200,
        &["checkpoint for tree size 200"],
    );
    // Only the foreign key accepts it, and then the log's own checkpoints fail.
    expect(
        "foreign checkpoint, foreign key",
        s.verify_with(&foreign_verifier),
        100,
        &["checkpoint for tree size 100"],
    );
}

#[test]
fn checkpoint_root_not_matching() {
    let s = Store::new();
    let note = s
        .signer()
        .sign(&Checkpoint {
            origin: ORIGIN.into(),
            size: 200,
            root: Hash([0x42; 32]),
        })
        .unwrap()
        .note;
    s.tree()
        .insert(checkpoint_key(200), note.as_bytes())
        .unwrap();
    expect(
        "checkpoint root",
        s.verify(),
        200,
        &["root of the first 200 entries is", "checkpoint says 4242"],
    );
}

// ---- personal data ----

#[test]
fn personal_record_tampered() {
    let s = Store::new();
    let seq = s.personal_seq(100);
    let key = Store::personal_key(seq);
    let mut v = s.tree().get(&key).unwrap().unwrap().to_vec();
    v[12] ^= 0x10;
    s.tree().insert(&key, v).unwrap();
    expect(
        "tampered personal record",
        s.verify(),
        seq,
        &["the personal record cannot be opened", "does not decrypt"],
    );
}

#[test]
fn personal_record_deleted_without_redaction() {
    let s = Store::new();
    let seq = s.personal_seq(100);
    let (agency, id, _) = s.parts(seq);
    s.tree().remove(Store::personal_key(seq)).unwrap();
    expect(
        "deleted personal record",
        s.verify(),
        seq,
        &[&format!(
            "the personal record is missing, and no redaction entry {agency}/redaction:{id} after this seq says it was erased"
        )],
    );
}

#[test]
fn personal_record_erased_behind_a_forged_redaction_index_key() {
    // Someone who rewrote the data dir deletes a record and points the id index's
    // `redaction:<id>` key at a later entry that is not that redaction: with or without the index
    // check, the entry it points to must be the redaction of this very event.
    let s = Store::new();
    let seq = s.personal_seq(100);
    let (agency, id, _) = s.parts(seq);
    s.tree().remove(Store::personal_key(seq)).unwrap();
    let forged = event_fingerprint(
        &agency,
        &format!("{}{id}", socai_model::REDACTION_ID_PREFIX),
    );
    s.edit_event_pairs(|pairs| pairs.push((forged, seq + 5)));
    let options = VerifyOptions {
        threads: 2,
        chunk_entries: 64,
        indexes: false,
        ..VerifyOptions::default()
    };
    expect(
        "forged redaction key",
        verify_ledger(s.storage(), s.ledger.verifier(), &options, &|_| {}),
        seq,
        &["the personal record is missing, and no redaction entry"],
    );
}

#[test]
fn personal_key_destroyed_without_redaction() {
    let s = Store::new();
    let seq = s.personal_seq(100);
    let sealed = s.tree().get(Store::personal_key(seq)).unwrap().unwrap();
    let slot = u64::from_be_bytes(sealed[1..9].try_into().unwrap());
    // Destroy the key in place, as a redaction would, without the redaction entry.
    let keys = SledStorage::keys_path(&s._tmp.path().join("ledger"));
    let file = std::fs::OpenOptions::new().write(true).open(&keys).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[0u8; 32], slot * 32).unwrap();
    file.sync_all().unwrap();
    expect(
        "destroyed key",
        s.verify(),
        seq,
        &[
            "the personal record cannot be opened: personal-data key",
            "was destroyed",
            "and no redaction entry",
        ],
    );
}

// ---- the head ----

#[test]
fn head_pointing_past_the_end() {
    let s = Store::new();
    let head = s.tree().get(b"mhead").unwrap().unwrap().to_vec();
    let mut changed = head.clone();
    changed[..8].copy_from_slice(&(s.size + 5).to_be_bytes());
    s.tree().insert(b"mhead", changed).unwrap();
    expect(
        "head past the end",
        s.verify(),
        s.size,
        &["entry is missing"],
    );
    // The right size with another leaf hash.
    s.tree().insert(b"mhead", head.clone()).unwrap();
    let mut changed = head;
    changed[8] ^= 1;
    s.tree().insert(b"mhead", changed).unwrap();
    expect(
        "head leaf",
        s.verify(),
        s.size - 1,
        &[
            "head record says the leaf hash of entry 300 is",
            "the entries give",
        ],
    );
}
