//! Shared fixtures: realistic entries, an in-memory log, a signing key.
#![allow(dead_code)]

use serde_json::{Value, json};
use socai_chain::entry::{Entry, personal_commitment, personal_salt};
use socai_chain::merkle::MemoryHashes;
use socai_chain::{CheckpointSigner, Hash, leaf_hash};

pub const ORIGIN: &str = "socai.test/ledger";
pub const SALT_KEY: &[u8] = b"test salt key";

/// The personal data of entry `seq` (every third entry carries some).
pub fn personal(seq: u64) -> Option<Value> {
    seq.is_multiple_of(3).then(|| json!({"citizen_id": format!("0010{seq:08}"), "name": "Nguyễn Văn A", "phone": "0912345678"}))
}

/// A typical `dossier.submitted` entry (~450 canonical bytes with a commitment).
pub fn entry(seq: u64, prev: Hash) -> Entry {
    let id = format!("01JD9Q4W8G3N6V2P5X{seq:08}");
    let commitment = personal(seq).map(|p| personal_commitment(&personal_salt(SALT_KEY, &id), &p));
    Entry {
        seq,
        prev,
        recorded_at: format!("2026-06-09T01:{:02}:{:02}.123Z", seq / 60 % 60, seq % 60),
        event: json!({
            "id": id,
            "type": "dossier.submitted",
            "agency": "G09.20",
            "procedure": "1.004227",
            "dossier": format!("G09.20-20260609-{seq:07}"),
            "occurred_at": "2026-06-09T08:15:00+07:00",
            "schema": 1,
            "data": {"channel": "online", "vneid_authenticated": true, "applicant_kind": "citizen", "fee_vnd": 50000},
        }),
        personal_commitment: commitment,
    }
}

/// A log of `n` chained entries and its stored hashes.
pub struct Log {
    pub entries: Vec<Vec<u8>>,
    pub hashes: MemoryHashes,
}

impl Log {
    pub fn new(n: u64) -> Log {
        let mut log = Log {
            entries: Vec::new(),
            hashes: MemoryHashes::new(),
        };
        let mut prev = Hash::ZERO;
        for seq in 0..n {
            let bytes = entry(seq, prev).to_canonical();
            prev = leaf_hash(&bytes);
            log.hashes.push_leaf(prev);
            log.entries.push(bytes);
        }
        log
    }

    pub fn refs(&self) -> Vec<&[u8]> {
        self.entries.iter().map(Vec::as_slice).collect()
    }
}

/// A fixed signing key for [`ORIGIN`] (generated once per test process).
pub fn signer() -> CheckpointSigner {
    static SKEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let skey = SKEY.get_or_init(|| CheckpointSigner::generate(ORIGIN).expect("valid name").1);
    CheckpointSigner::from_skey(skey).expect("generated key parses")
}
