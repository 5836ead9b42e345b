//! Receipts: what the ledger tells an agency after a commit's fsync — which of its event ids got
//! which seq — under the commit's signed tree head. Like Certificate Transparency's SCTs, a
//! receipt is the agency's evidence that the ledger accepted its event: signed by the log's key,
//! and later turned into an inclusion proof at the receipt's tree size.
//!
//! A receipt is JSON (`v` = 1):
//!
//! ```json
//! { "v": 1, "agency": "000.00.12.H01",
//!   "checkpoint": "<C2SP signed note: origin, tree size, root; signed by the log's key>",
//!   "events": [ { "id": "…", "seq": 41, "leaf_hash": "<hex>" },
//!               { "id": "…", "seq": 7, "leaf_hash": "<hex>", "duplicate": true } ],
//!   "rejected": [ { "id": "…", "code": "schema_violation", "path": "/data/x", "reason": "…" } ],
//!   "batch": { "index": 3, "count": 120, "root": "<hex>", "path": ["<hex>", …] },
//!   "signature": "<base64 Ed25519 signature>" }
//! ```
//!
//! One commit answers many agencies, so the ledger signs once per commit, not once per receipt:
//! each receipt's leaf hash is SHA-256(0x00 ‖ `socai-receipt/v1\n` ‖ the RFC 8785 canonical JSON
//! of the receipt without `batch` and `signature`); the commit's receipts, in order, form an RFC
//! 6962 Merkle tree; `batch` gives this receipt's index, the tree's size and root, and its audit
//! path; `signature` is the log key's Ed25519 signature of `socai-receipts/v1\n` ‖ the
//! checkpoint note ‖ `<count> <root hex>\n`, the same for every receipt of the commit (so a
//! client checks it once per commit). The same key signs the checkpoints; the prefix keeps the
//! two kinds of signed bytes apart (a checkpoint note's text starts with the origin line, never
//! with `socai-receipts/`). Every seq a receipt names is below its checkpoint's tree size.
//! `duplicate` marks an event the ledger already held (a re-publish): its seq is the original
//! one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, CheckpointSigner, CheckpointVerifier, SignedCheckpoint};
use crate::hash::{Hash, leaf_hash};
use crate::merkle::{LeafTree, verify_inclusion};

/// The receipt format's version.
pub const RECEIPT_VERSION: u32 = 1;

/// What precedes a receipt's canonical JSON in its leaf.
pub const RECEIPT_LEAF_PREFIX: &[u8] = b"socai-receipt/v1\n";

/// What precedes the checkpoint note and the receipts' root in the signed bytes.
pub const RECEIPTS_SIGNING_PREFIX: &[u8] = b"socai-receipts/v1\n";

/// One agency's receipt for one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub v: u32,
    /// The publishing agency (its code, e.g. `000.00.12.H01`).
    pub agency: String,
    /// The commit's signed tree head (C2SP checkpoint note) covering every seq listed.
    pub checkpoint: String,
    /// Events the ledger holds: committed by this commit, or before (`duplicate`).
    pub events: Vec<ReceiptEvent>,
    /// Events refused (their copies are on REJECTED with the same reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<ReceiptRejection>,
    /// Portal sync bodies (`dvc.sync.<agency>`) this commit dealt with: the events each yielded
    /// (answered above, in `events` or `rejected`) and the parts that could not be mapped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syncs: Vec<ReceiptSync>,
    /// This receipt's place among the commit's receipts (see the module docs).
    #[serde(default)]
    pub batch: ReceiptBatch,
    /// Base64 Ed25519 signature by the log's key over the checkpoint and the batch's root.
    #[serde(default)]
    pub signature: String,
}

/// Where a receipt sits in the Merkle tree of its commit's receipts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBatch {
    pub index: u64,
    pub count: u64,
    /// Hex root of the tree of the commit's receipts.
    pub root: String,
    /// Hex RFC 6962 audit path of this receipt's leaf.
    pub path: Vec<String>,
}

/// An event the ledger holds, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptEvent {
    pub id: String,
    pub seq: u64,
    /// Hex SHA-256 leaf hash of the entry at `seq` (what an inclusion proof proves).
    pub leaf_hash: String,
    /// The ledger already held this event (same id, same content): `seq` is the original.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// A portal sync body, answered: its id (`sync-` + 32 hex digits of the SHA-256 of its bytes),
/// the ids of the events it yielded (none when the ledger already held everything it says), and
/// what could not be mapped (`id` = the dossier, or empty for the whole body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptSync {
    pub id: String,
    /// Events it yielded that the ledger holds.
    pub events: Vec<String>,
    /// Its parts that could not be mapped (`id`: the dossier, empty for the whole body) and the
    /// events it yielded that the ledger refused (`id`: the event's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<ReceiptRejection>,
    /// Events yielded left out to keep the receipt small (COMMITTED holds them all).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: u64,
    /// Refusals left out to keep the receipt small (REJECTED holds them all): not zero means
    /// parts of the body were refused.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more_rejected: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An event refused, with the reason REJECTED carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptRejection {
    pub id: String,
    pub code: String,
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("not a receipt: {0}")]
    Malformed(String),
    #[error("receipt version {0} is not supported (this socai reads version 1)")]
    Version(u32),
    #[error("the receipt's checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the receipt's signature does not verify with key {0}")]
    BadSignature(String),
    #[error("the receipt is not in its commit's batch: {0}")]
    NotInBatch(String),
    #[error("event {id:?}: seq {seq} is not below the receipt's tree size {size}")]
    SeqBeyondTree { id: String, seq: u64, size: u64 },
    #[error("event {id:?}: leaf_hash {leaf_hash:?} is not 64 hex digits")]
    BadLeafHash { id: String, leaf_hash: String },
}

fn unhex(what: &str, s: &str) -> Result<Hash, ReceiptError> {
    Hash::from_hex(s)
        .map_err(|_| ReceiptError::NotInBatch(format!("{what} {s:?} is not 64 hex digits")))
}

impl Receipt {
    /// This receipt's leaf in its commit's tree (see the module docs).
    pub fn leaf_hash(&self) -> Hash {
        let mut bytes = Vec::with_capacity(512 + 160 * self.events.len());
        bytes.extend_from_slice(RECEIPT_LEAF_PREFIX);
        self.write_signed_content(&mut bytes);
        leaf_hash(&bytes)
    }

    /// The RFC 8785 canonical JSON of this receipt without `batch` and `signature`, written
    /// directly: members in JCS order (all keys are ASCII, so byte order is UTF-16 order), those
    /// serde skips skipped alike. The same bytes as `canonical_json` of its `serde_json::Value`
    /// (a test checks), without building that tree for every receipt a ledger signs or a
    /// publisher checks.
    fn write_signed_content(&self, out: &mut Vec<u8>) {
        use crate::entry::{write_number, write_string};
        fn key(out: &mut Vec<u8>, first: &mut bool, k: &str) {
            if !std::mem::take(first) {
                out.push(b',');
            }
            write_string(out, k);
            out.push(b':');
        }
        fn list<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                each(out, item);
            }
            out.push(b']');
        }
        fn rejection(out: &mut Vec<u8>, r: &ReceiptRejection) {
            let first = &mut true;
            out.push(b'{');
            for (k, v) in [
                ("code", &r.code),
                ("id", &r.id),
                ("path", &r.path),
                ("reason", &r.reason),
            ] {
                key(out, first, k);
                write_string(out, v);
            }
            out.push(b'}');
        }
        let first = &mut true;
        out.push(b'{');
        key(out, first, "agency");
        write_string(out, &self.agency);
        key(out, first, "checkpoint");
        write_string(out, &self.checkpoint);
        key(out, first, "events");
        list(out, &self.events, |out, e| {
            let first = &mut true;
            out.push(b'{');
            if e.duplicate {
                key(out, first, "duplicate");
                out.extend_from_slice(b"true");
            }
            key(out, first, "id");
            write_string(out, &e.id);
            key(out, first, "leaf_hash");
            write_string(out, &e.leaf_hash);
            key(out, first, "seq");
            write_number(out, e.seq as f64);
            out.push(b'}');
        });
        if !self.rejected.is_empty() {
            key(out, first, "rejected");
            list(out, &self.rejected, rejection);
        }
        if !self.syncs.is_empty() {
            key(out, first, "syncs");
            list(out, &self.syncs, |out, s| {
                let first = &mut true;
                out.push(b'{');
                key(out, first, "events");
                list(out, &s.events, |out, id| write_string(out, id));
                key(out, first, "id");
                write_string(out, &s.id);
                for (k, n) in [("more", s.more), ("more_rejected", s.more_rejected)] {
                    if n != 0 {
                        key(out, first, k);
                        write_number(out, n as f64);
                    }
                }
                if !s.rejected.is_empty() {
                    key(out, first, "rejected");
                    list(out, &s.rejected, rejection);
                }
                out.push(b'}');
            });
        }
        key(out, first, "v");
        write_number(out, f64::from(self.v));
        out.push(b'}');
    }

    /// The bytes the signature covers: the same for every receipt of a commit.
    pub fn signed_bytes(checkpoint: &str, count: u64, root: &Hash) -> Vec<u8> {
        let mut bytes = RECEIPTS_SIGNING_PREFIX.to_vec();
        bytes.extend_from_slice(checkpoint.as_bytes());
        bytes.extend_from_slice(format!("{count} {root}\n").as_bytes());
        bytes
    }

    /// Signs a commit's receipts (all under the same checkpoint) with one signature: sets each
    /// one's `batch` and `signature`.
    pub fn sign_all(
        receipts: &mut [Receipt],
        signer: &CheckpointSigner,
    ) -> Result<(), CheckpointError> {
        let Some(first) = receipts.first() else {
            return Ok(());
        };
        let checkpoint = first.checkpoint.clone();
        if let Some(other) = receipts.iter().find(|r| r.checkpoint != checkpoint) {
            return Err(CheckpointError::Malformed(format!(
                "receipts of one batch name different checkpoints ({})",
                other.agency
            )));
        }
        let tree = LeafTree::new(receipts.iter().map(Receipt::leaf_hash).collect());
        let (count, root) = (tree.size(), tree.root());
        let signature = STANDARD.encode(signer.sign_bytes(&Receipt::signed_bytes(
            &checkpoint,
            count,
            &root,
        ))?);
        let root = root.to_string();
        for (i, r) in receipts.iter_mut().enumerate() {
            let path = tree
                .path(i as u64)
                .map_err(|e| CheckpointError::Malformed(format!("receipts tree: {e}")))?;
            r.batch = ReceiptBatch {
                index: i as u64,
                count,
                root: root.clone(),
                path: path.iter().map(Hash::to_string).collect(),
            };
            r.signature = signature.clone();
        }
        Ok(())
    }

    /// Signs one receipt alone (a batch of one).
    pub fn sign(&mut self, signer: &CheckpointSigner) -> Result<(), CheckpointError> {
        Receipt::sign_all(std::slice::from_mut(self), signer)
    }

    /// Checks everything a receipt claims with the log's published key: the checkpoint's
    /// signature, this receipt's place in its commit's batch, the batch's signature, and that
    /// every seq is inside the signed tree. Returns the signed tree head.
    pub fn verify(&self, verifier: &CheckpointVerifier) -> Result<SignedCheckpoint, ReceiptError> {
        self.verify_in(verifier, None)
    }

    /// [`Receipt::verify`] that skips the two signature checks (and parsing the checkpoint) when
    /// `seen` holds this receipt's checkpoint, batch size, root and signature, verified before
    /// (byte for byte equal), and remembers them when it verifies them now.
    fn verify_in(
        &self,
        verifier: &CheckpointVerifier,
        seen: Option<&SeenBatches>,
    ) -> Result<SignedCheckpoint, ReceiptError> {
        if self.v != RECEIPT_VERSION {
            return Err(ReceiptError::Version(self.v));
        }
        let root = unhex("batch root", &self.batch.root)?;
        let path = self
            .batch
            .path
            .iter()
            .map(|h| unhex("batch path hash", h))
            .collect::<Result<Vec<_>, _>>()?;
        verify_inclusion(
            &self.leaf_hash(),
            self.batch.index,
            self.batch.count,
            &path,
            &root,
        )
        .map_err(|e| ReceiptError::NotInBatch(e.to_string()))?;
        let known = seen.and_then(|seen| seen.find(self, &root));
        let signed = match known {
            Some(signed) => signed,
            None => {
                let signed = verifier.verify(&self.checkpoint)?;
                let signature = STANDARD
                    .decode(&self.signature)
                    .map_err(|_| ReceiptError::BadSignature(verifier.vkey().to_owned()))?;
                let signed_bytes = Receipt::signed_bytes(&self.checkpoint, self.batch.count, &root);
                if !verifier.verify_bytes(&signed_bytes, &signature) {
                    return Err(ReceiptError::BadSignature(verifier.vkey().to_owned()));
                }
                if let Some(seen) = seen {
                    seen.remember(self, root, &signed);
                }
                signed
            }
        };
        let size = signed.checkpoint.size;
        for event in &self.events {
            if event.seq >= size {
                return Err(ReceiptError::SeqBeyondTree {
                    id: event.id.clone(),
                    seq: event.seq,
                    size,
                });
            }
            if event.leaf_hash().is_none() {
                return Err(ReceiptError::BadLeafHash {
                    id: event.id.clone(),
                    leaf_hash: event.leaf_hash.clone(),
                });
            }
        }
        Ok(signed)
    }

    /// Parses a receipt (the JSON of a `dvc.receipts.<agency>` message).
    pub fn from_json(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
        serde_json::from_slice(bytes).map_err(|e| ReceiptError::Malformed(e.to_string()))
    }

    /// The receipt's JSON (one line).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a receipt always serializes")
    }
}

/// Verifies receipts with the log's key, checking each commit's two signatures once: receipts of
/// one commit share them, so a client answered by hundreds of receipts per commit (a gateway)
/// pays for one check. Remembers the last [`ReceiptVerifier::REMEMBERED`] commits.
#[derive(Debug)]
pub struct ReceiptVerifier {
    verifier: CheckpointVerifier,
    seen: SeenBatches,
}

/// The signed bytes of a commit's receipts, verified: what its signature covers (the checkpoint
/// note, kept in `signed.note`, the batch's size and root) and the signature itself, with the
/// signed tree head.
#[derive(Debug)]
struct SeenBatch {
    count: u64,
    root: Hash,
    signature: String,
    signed: SignedCheckpoint,
}

impl SeenBatch {
    /// Whether `receipt` (whose batch root is `root`) carries exactly these signed bytes and
    /// this signature.
    fn covers(&self, receipt: &Receipt, root: &Hash) -> bool {
        self.root == *root
            && self.count == receipt.batch.count
            && self.signature == receipt.signature
            && self.signed.note == receipt.checkpoint
    }
}

/// The last [`ReceiptVerifier::REMEMBERED`] commits whose signatures verified, newest last.
#[derive(Debug, Default)]
struct SeenBatches(std::sync::Mutex<std::collections::VecDeque<SeenBatch>>);

impl SeenBatches {
    /// The signed tree head of `receipt`'s batch, if its signed bytes and signature are those
    /// of a batch verified before (compared whole, not by a digest).
    fn find(&self, receipt: &Receipt, root: &Hash) -> Option<SignedCheckpoint> {
        let seen = self.0.lock().ok()?;
        // Newest first: a commit's receipts arrive together.
        seen.iter()
            .rev()
            .find(|b| b.covers(receipt, root))
            .map(|b| b.signed.clone())
    }

    fn remember(&self, receipt: &Receipt, root: Hash, signed: &SignedCheckpoint) {
        if let Ok(mut seen) = self.0.lock() {
            if seen.iter().any(|b| b.covers(receipt, &root)) {
                return; // another thread verified it meanwhile
            }
            while seen.len() >= ReceiptVerifier::REMEMBERED {
                seen.pop_front();
            }
            seen.push_back(SeenBatch {
                count: receipt.batch.count,
                root,
                signature: receipt.signature.clone(),
                signed: signed.clone(),
            });
        }
    }
}

impl ReceiptVerifier {
    pub const REMEMBERED: usize = 64;

    pub fn new(verifier: CheckpointVerifier) -> ReceiptVerifier {
        ReceiptVerifier {
            verifier,
            seen: SeenBatches::default(),
        }
    }

    pub fn verifier(&self) -> &CheckpointVerifier {
        &self.verifier
    }

    /// [`Receipt::verify`], with the signatures of a commit already seen not checked again.
    pub fn verify(&self, receipt: &Receipt) -> Result<SignedCheckpoint, ReceiptError> {
        receipt.verify_in(&self.verifier, Some(&self.seen))
    }
}

impl ReceiptEvent {
    /// The leaf hash, if it is 64 hex digits.
    pub fn leaf_hash(&self) -> Option<Hash> {
        Hash::from_hex(&self.leaf_hash).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use proptest::prelude::*;

    fn receipt(signer: &CheckpointSigner) -> Receipt {
        let head = signer
            .sign(&Checkpoint {
                origin: signer.name().to_owned(),
                size: 10,
                root: Hash([7; 32]),
            })
            .unwrap();
        let mut r = Receipt {
            v: RECEIPT_VERSION,
            agency: "000.00.12.H01".into(),
            checkpoint: head.note,
            events: vec![
                ReceiptEvent {
                    id: "a".into(),
                    seq: 9,
                    leaf_hash: hex::encode([1u8; 32]),
                    duplicate: false,
                },
                ReceiptEvent {
                    id: "b".into(),
                    seq: 2,
                    leaf_hash: hex::encode([2u8; 32]),
                    duplicate: true,
                },
            ],
            rejected: vec![ReceiptRejection {
                id: "c".into(),
                code: "schema_violation".into(),
                path: "/data/x".into(),
                reason: "must be a string".into(),
            }],
            syncs: Vec::new(),
            batch: ReceiptBatch::default(),
            signature: String::new(),
        };
        r.sign(signer).unwrap();
        r
    }

    /// The leaf content as the format defines it: the receipt's JSON value without `batch` and
    /// `signature`, canonicalized by the general RFC 8785 writer.
    fn signed_content_via_value(r: &Receipt) -> Vec<u8> {
        let mut content = serde_json::to_value(r).unwrap();
        let map = content.as_object_mut().unwrap();
        map.remove("batch");
        map.remove("signature");
        crate::entry::canonical_json(&content)
    }

    fn arb_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9._-]{0,12}",
            any::<String>(),
            Just("Hồ sơ \"nộp\" trực tuyến\n\u{1}\u{7f}\u{e000}\u{10000}".to_owned()),
        ]
    }

    fn arb_rejection() -> impl Strategy<Value = ReceiptRejection> {
        (arb_text(), arb_text(), arb_text(), arb_text()).prop_map(|(id, code, path, reason)| {
            ReceiptRejection {
                id,
                code,
                path,
                reason,
            }
        })
    }

    fn arb_receipt() -> impl Strategy<Value = Receipt> {
        let event = (arb_text(), any::<u64>(), arb_text(), any::<bool>()).prop_map(
            |(id, seq, leaf_hash, duplicate)| ReceiptEvent {
                id,
                seq,
                leaf_hash,
                duplicate,
            },
        );
        let sync = (
            arb_text(),
            prop::collection::vec(arb_text(), 0..3),
            prop::collection::vec(arb_rejection(), 0..2),
            prop_oneof![Just(0u64), any::<u64>()],
            prop_oneof![Just(0u64), any::<u64>()],
        )
            .prop_map(|(id, events, rejected, more, more_rejected)| ReceiptSync {
                id,
                events,
                rejected,
                more,
                more_rejected,
            });
        (
            any::<u32>(),
            arb_text(),
            arb_text(),
            prop::collection::vec(event, 0..4),
            prop::collection::vec(arb_rejection(), 0..3),
            prop::collection::vec(sync, 0..3),
        )
            .prop_map(|(v, agency, checkpoint, events, rejected, syncs)| Receipt {
                v,
                agency,
                checkpoint,
                events,
                rejected,
                syncs,
                batch: ReceiptBatch {
                    index: 1,
                    count: 2,
                    root: "r".into(),
                    path: vec!["p".into()],
                },
                signature: "s".into(),
            })
    }

    proptest! {
        #[test]
        fn the_leaf_content_is_the_canonical_json_of_the_receipt_without_batch_and_signature(
            r in arb_receipt()
        ) {
            let mut direct = Vec::new();
            r.write_signed_content(&mut direct);
            prop_assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(signed_content_via_value(&r)).unwrap()
            );
        }
    }

    fn tampered(e: Result<SignedCheckpoint, ReceiptError>) -> bool {
        matches!(
            e,
            Err(ReceiptError::NotInBatch(_)) | Err(ReceiptError::BadSignature(_))
        )
    }

    #[test]
    fn a_signed_receipt_verifies_and_any_change_breaks_it() {
        let (signer, _, vkey) = CheckpointSigner::generate("test.example/log").unwrap();
        let verifier = CheckpointVerifier::from_vkey(&vkey).unwrap();
        let r = receipt(&signer);
        let back = Receipt::from_json(&r.to_json()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.verify(&verifier).unwrap().checkpoint.size, 10);

        let mut moved = r.clone();
        moved.events[0].seq = 8;
        assert!(tampered(moved.verify(&verifier)));
        let mut renamed = r.clone();
        renamed.agency = "000.00.12.H02".into();
        assert!(tampered(renamed.verify(&verifier)));
        let mut hidden = r.clone();
        hidden.rejected.clear();
        assert!(tampered(hidden.verify(&verifier)));

        // Signed by another log's key: refused.
        let (other, _, _) = CheckpointSigner::generate("test.example/log").unwrap();
        let forged = receipt(&other);
        assert!(forged.verify(&verifier).is_err());

        // A seq outside the signed tree is refused even when signed.
        let mut beyond = r.clone();
        beyond.events[0].seq = 10;
        beyond.sign(&signer).unwrap();
        assert!(matches!(
            beyond.verify(&verifier),
            Err(ReceiptError::SeqBeyondTree {
                seq: 10,
                size: 10,
                ..
            })
        ));
        // Unknown members are refused, not ignored.
        let mut v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(Receipt::from_json(&serde_json::to_vec(&v).unwrap()).is_err());
    }

    #[test]
    fn one_signature_covers_a_commits_receipts_and_each_proves_its_place() {
        let (signer, _, vkey) = CheckpointSigner::generate("test.example/log").unwrap();
        let verifier = CheckpointVerifier::from_vkey(&vkey).unwrap();
        for n in [1usize, 2, 3, 7, 64, 100] {
            let mut batch: Vec<Receipt> = (0..n)
                .map(|i| {
                    let mut r = receipt(&signer);
                    r.agency = format!("000.00.12.H{i:02}");
                    r
                })
                .collect();
            Receipt::sign_all(&mut batch, &signer).unwrap();
            let cached = ReceiptVerifier::new(verifier.clone());
            for (i, r) in batch.iter().enumerate() {
                assert_eq!(r.batch.index, i as u64);
                assert_eq!(r.batch.count, n as u64);
                assert_eq!(r.signature, batch[0].signature, "one signature per commit");
                r.verify(&verifier).unwrap();
                cached.verify(r).unwrap();
                // Another receipt's place, or a changed receipt, does not verify, cached or not.
                let mut moved = r.clone();
                moved.batch.index = (i as u64 + 1) % n as u64;
                if n > 1 {
                    assert!(tampered(moved.verify(&verifier)));
                    assert!(tampered(cached.verify(&moved)));
                }
                let mut changed = r.clone();
                changed.events[0].seq = 3;
                assert!(tampered(cached.verify(&changed)));
                let mut resigned = r.clone();
                resigned.signature = batch[0].signature.replace('A', "B");
                if resigned.signature != r.signature {
                    assert!(tampered(cached.verify(&resigned)));
                }
            }
        }
    }

    #[test]
    fn the_signature_cache_answers_only_for_the_bytes_it_verified() {
        let (signer, _, vkey) = CheckpointSigner::generate("test.example/log").unwrap();
        let cached = ReceiptVerifier::new(CheckpointVerifier::from_vkey(&vkey).unwrap());
        let mut a = vec![receipt(&signer), receipt(&signer)];
        a[1].agency = "000.00.12.H02".into();
        Receipt::sign_all(&mut a, &signer).unwrap();
        cached.verify(&a[0]).unwrap();
        // Another commit (tree size 11), validly signed, then its receipt with the first
        // commit's (cached) signature: the cache does not answer for it.
        let head = signer
            .sign(&Checkpoint {
                origin: signer.name().to_owned(),
                size: 11,
                root: Hash([8; 32]),
            })
            .unwrap();
        let mut b = a.clone();
        for r in &mut b {
            r.checkpoint = head.note.clone();
        }
        Receipt::sign_all(&mut b, &signer).unwrap();
        assert_eq!(cached.verify(&b[0]).unwrap().checkpoint.size, 11);
        let mut forged = b[1].clone();
        forged.signature = a[1].signature.clone();
        assert!(matches!(
            cached.verify(&forged),
            Err(ReceiptError::BadSignature(_))
        ));
        // Each commit is remembered once, however many of its receipts are checked.
        cached.verify(&a[1]).unwrap();
        cached.verify(&b[1]).unwrap();
        assert_eq!(cached.seen.0.lock().unwrap().len(), 2);
    }
}
