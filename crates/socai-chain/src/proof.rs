//! The proof objects of the auditors' contract (DESIGN.md), identical in CLI `--json` and HTTP:
//! inclusion `{"leaf_index","tree_size","leaf_hash","entry"(base64),"path":[hex...],"checkpoint"}`;
//! consistency `{"old_size","new_size","old_root","new_root","path":[hex...]}`.
//! Each verifies everything it carries.

use crate::checkpoint::{CheckpointError, CheckpointVerifier, SignedCheckpoint};
use crate::entry::{Entry, EntryError};
use crate::hash::{Hash, leaf_hash};
use crate::merkle::{MerkleError, verify_consistency, verify_inclusion};
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
    SizeMismatch {
        checkpoint_size: u64,
        tree_size: u64,
    },
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
    ///
    /// The entry must also be in canonical form (the only form the ledger writes), so every JSON
    /// reader sees the same entry.
    pub fn verify(
        &self,
        verifier: &CheckpointVerifier,
    ) -> Result<(Entry, SignedCheckpoint), ProofError> {
        let entry = Entry::decode_canonical(&self.entry)?;
        let computed = leaf_hash(&self.entry);
        if computed != self.leaf_hash {
            return Err(ProofError::LeafHash {
                claimed: self.leaf_hash,
                computed,
            });
        }
        if entry.seq != self.leaf_index {
            return Err(ProofError::SeqMismatch {
                seq: entry.seq,
                leaf_index: self.leaf_index,
            });
        }
        let signed = verifier.verify(&self.checkpoint)?;
        if signed.checkpoint.size != self.tree_size {
            return Err(ProofError::SizeMismatch {
                checkpoint_size: signed.checkpoint.size,
                tree_size: self.tree_size,
            });
        }
        verify_inclusion(
            &computed,
            self.leaf_index,
            self.tree_size,
            &self.path,
            &signed.checkpoint.root,
        )?;
        Ok((entry, signed))
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
    /// Checks that `path` proves the tree `old_root` of `old_size` leaves a prefix of `new_root`.
    /// The caller decides whether it trusts the roots (e.g. from two signed checkpoints).
    pub fn verify(&self) -> Result<(), ProofError> {
        verify_consistency(
            self.old_size,
            self.new_size,
            &self.old_root,
            &self.new_root,
            &self.path,
        )?;
        Ok(())
    }
}

/// serde helper: `Vec<u8>` as standard padded base64.
pub mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::Deserialize;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    /// Standard padded base64 (the encoding of entries in proofs and bundles).
    pub fn encode(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        decode(&text).map_err(serde::de::Error::custom)
    }

    /// Standard padded base64, with the offending text in the error.
    pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
        STANDARD.decode(text).map_err(|e| {
            let shown: String = text.chars().take(40).collect();
            format!("invalid base64 {shown:?}: {e}")
        })
    }
}
