//! The proof objects of the auditors' contract (DESIGN.md), identical in CLI `--json` and HTTP:
//! inclusion `{"leaf_index","tree_size","leaf_hash","entry"(base64),"path":[hex...],"checkpoint"}`;
//! consistency `{"old_size","new_size","old_root","new_root","path":[hex...]}`.
//! Each verifies everything it carries.

use crate::checkpoint::{CheckpointError, CheckpointVerifier, SignedCheckpoint};
use crate::entry::{Entry, EntryError};
use crate::hash::Hash;
use crate::merkle::MerkleError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("entry: {0}")]
    Entry(#[from] EntryError),
    #[error("entry base64: {0}")]
    Base64(String),
    #[error("leaf_hash {claimed} does not match the entry's hash {computed}")]
    LeafHash { claimed: Hash, computed: Hash },
    #[error("entry seq {seq} does not match leaf_index {leaf_index}")]
    SeqMismatch { seq: u64, leaf_index: u64 },
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("checkpoint is for tree size {checkpoint_size}, proof for {tree_size}")]
    SizeMismatch { checkpoint_size: u64, tree_size: u64 },
    #[error("merkle path: {0}")]
    Merkle(#[from] MerkleError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    /// Canonical entry bytes, base64 (standard alphabet, padded) in JSON.
    #[serde(with = "b64")]
    pub entry: Vec<u8>,
    pub path: Vec<Hash>,
    /// The signed checkpoint note for `tree_size`.
    pub checkpoint: String,
}

impl InclusionProof {
    /// Checks: entry decodes, SHA-256(0x00‖entry) == leaf_hash, entry.seq == leaf_index, the
    /// checkpoint is signed by `verifier`, its size == tree_size, path leads to its root.
    pub fn verify(&self, verifier: &CheckpointVerifier) -> Result<(Entry, SignedCheckpoint), ProofError> {
        todo!()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub old_root: Hash,
    pub new_root: Hash,
    pub path: Vec<Hash>,
}

impl ConsistencyProof {
    pub fn verify(&self) -> Result<(), ProofError> {
        todo!()
    }
}

/// serde helper: `Vec<u8>` as standard padded base64.
pub mod b64 {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        todo!()
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        todo!()
    }
}
