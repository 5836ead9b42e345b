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
//!   "signature": "<base64 Ed25519 signature>" }
//! ```
//!
//! The signature covers `socai-receipt/v1\n` followed by the RFC 8785 canonical JSON of the
//! receipt without its `signature` member, made with the same Ed25519 key as the checkpoints (so
//! one published key checks both; the prefix keeps the two kinds of signed bytes apart: a
//! checkpoint note's text starts with the origin line, never with `socai-receipt/`). Every seq a
//! receipt names is below its checkpoint's tree size. `duplicate` marks an event the ledger
//! already held (a re-publish): its seq is the original one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, CheckpointSigner, CheckpointVerifier, SignedCheckpoint};
use crate::hash::Hash;

/// The receipt format's version.
pub const RECEIPT_VERSION: u32 = 1;

/// What precedes the canonical JSON in the signed bytes.
pub const RECEIPT_SIGNING_PREFIX: &[u8] = b"socai-receipt/v1\n";

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
    /// Base64 Ed25519 signature by the log's key (see the module docs).
    #[serde(default)]
    pub signature: String,
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
    #[error("event {id:?}: seq {seq} is not below the receipt's tree size {size}")]
    SeqBeyondTree { id: String, seq: u64, size: u64 },
    #[error("event {id:?}: leaf_hash {leaf_hash:?} is not 64 hex digits")]
    BadLeafHash { id: String, leaf_hash: String },
}

impl Receipt {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = serde_json::to_value(self).expect("a receipt always serializes");
        if let Some(map) = unsigned.as_object_mut() {
            map.remove("signature");
        }
        let mut bytes = RECEIPT_SIGNING_PREFIX.to_vec();
        bytes.extend_from_slice(&crate::entry::canonical_json(&unsigned));
        bytes
    }

    /// Signs the receipt (sets `signature`) with the log's key.
    pub fn sign(&mut self, signer: &CheckpointSigner) -> Result<(), CheckpointError> {
        let signature = signer.sign_bytes(&self.signed_bytes())?;
        self.signature = STANDARD.encode(signature);
        Ok(())
    }

    /// Checks everything a receipt claims with the log's published key: the checkpoint's
    /// signature, the receipt's signature, and that every seq is inside the signed tree.
    /// Returns the signed tree head.
    pub fn verify(&self, verifier: &CheckpointVerifier) -> Result<SignedCheckpoint, ReceiptError> {
        if self.v != RECEIPT_VERSION {
            return Err(ReceiptError::Version(self.v));
        }
        let signed = verifier.verify(&self.checkpoint)?;
        let signature = STANDARD
            .decode(&self.signature)
            .map_err(|_| ReceiptError::BadSignature(verifier.vkey().to_owned()))?;
        if !verifier.verify_bytes(&self.signed_bytes(), &signature) {
            return Err(ReceiptError::BadSignature(verifier.vkey().to_owned()));
        }
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

impl ReceiptEvent {
    /// The leaf hash, if it is 64 hex digits.
    pub fn leaf_hash(&self) -> Option<Hash> {
        let bytes = hex::decode(&self.leaf_hash).ok()?;
        Some(Hash(bytes.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;

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
            signature: String::new(),
        };
        r.sign(signer).unwrap();
        r
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
        assert!(matches!(moved.verify(&verifier), Err(ReceiptError::BadSignature(_))));
        let mut renamed = r.clone();
        renamed.agency = "000.00.12.H02".into();
        assert!(matches!(renamed.verify(&verifier), Err(ReceiptError::BadSignature(_))));
        let mut hidden = r.clone();
        hidden.rejected.clear();
        assert!(matches!(hidden.verify(&verifier), Err(ReceiptError::BadSignature(_))));

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
            Err(ReceiptError::SeqBeyondTree { seq: 10, size: 10, .. })
        ));
        // Unknown members are refused, not ignored.
        let mut v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(Receipt::from_json(&serde_json::to_vec(&v).unwrap()).is_err());
    }
}
