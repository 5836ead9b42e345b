//! Export bundles: a self-contained, offline-verifiable slice `[from, to)` of the ledger.
//!
//! Binding to the signed tree: the leaves of `[from, to)` are appended to the `frontier` of
//! `[0, from)` (a [`CompactRange`](crate::merkle::CompactRange)) to compute the root of the first
//! `to` entries; that root is then proven consistent with the signed checkpoint (or equal to it when
//! `to` is the checkpoint size). By collision resistance, only the true entries at those positions
//! can produce it.

use crate::checkpoint::{CheckpointError, CheckpointVerifier, SignedCheckpoint};
use crate::hash::Hash;
use crate::proof::ProofError;
use crate::verify::ChainError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const BUNDLE_FORMAT: &str = "socai-bundle/1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The exporting log's verifier key text (C2SP signed-note).
    pub vkey: String,
    /// Signed checkpoint note of size `tree_size`.
    pub checkpoint: String,
    pub tree_size: u64,
    pub from: u64,
    pub to: u64,
    /// Roots of the perfect subtrees covering `[0, from)`, leftmost first.
    pub frontier: Vec<Hash>,
    /// Canonical entry bytes for seqs `from..to`, base64.
    #[serde(with = "b64_vec")]
    pub entries: Vec<Vec<u8>>,
    /// Consistency path from `to` to `tree_size` (empty when equal).
    pub consistency: Vec<Hash>,
    /// Personal data disclosed with the bundle (authorised exports only), checked against commitments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub personal: Vec<PersonalDisclosure>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonalDisclosure {
    pub seq: u64,
    /// 16-byte salt, hex.
    pub salt: String,
    pub personal: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("not a socai bundle: {0}")]
    Format(String),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("bundle says tree_size {claimed}, its checkpoint says {signed}")]
    SizeMismatch { claimed: u64, signed: u64 },
    #[error("{0}")]
    Chain(#[from] ChainError),
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    pub from: u64,
    pub to: u64,
    pub tree_size: u64,
    pub root: Hash,
    pub key_name: String,
    pub key_id: String,
    /// False when no trusted key was given and the bundle's own `vkey` was used.
    pub key_trusted: bool,
    pub personal_checked: usize,
}

impl Bundle {
    /// Verifies everything in the bundle. With `trusted` = None the bundle's own vkey is used
    /// (and the report says so).
    pub fn verify(&self, trusted: Option<&CheckpointVerifier>) -> Result<BundleReport, BundleError> {
        todo!()
    }
}

#[allow(dead_code)]
fn _types(_: SignedCheckpoint) {}

mod b64_vec {
    pub fn serialize<S: serde::Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        todo!()
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        todo!()
    }
}
