//! Export bundles: a self-contained, offline-verifiable slice `[from, to)` of the ledger.
//!
//! Binding to the signed tree: the leaves of `[from, to)` are appended to the `frontier` of
//! `[0, from)` (a [`CompactRange`]) to compute the root of the first
//! `to` entries; that root is then proven consistent with the signed checkpoint (or equal to it when
//! `to` is the checkpoint size). By collision resistance, only the true entries at those positions
//! can produce it.

use crate::checkpoint::{CheckpointError, CheckpointVerifier, SignedCheckpoint};
use crate::entry::check_personal;
use crate::hash::Hash;
use crate::merkle::{CompactRange, MerkleError, verify_consistency};
use crate::proof::ProofError;
use crate::verify::{ChainError, ChainErrorKind, ChainVerifier, verify_chunk};
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
    #[error("bundle range [{from}, {to}) is not within tree size {tree_size}")]
    Range { from: u64, to: u64, tree_size: u64 },
    #[error("bundle range [{from}, {to}) needs {} entries, it has {found}", to.saturating_sub(*from))]
    EntryCount { from: u64, to: u64, found: usize },
    /// A disclosure that cannot be checked (the mismatch itself is a `Chain` error).
    #[error("personal disclosure for seq {seq}: {reason}")]
    Personal { seq: u64, reason: String },
}

impl From<MerkleError> for BundleError {
    fn from(e: MerkleError) -> Self {
        BundleError::Proof(ProofError::Merkle(e))
    }
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
    pub fn verify(
        &self,
        trusted: Option<&CheckpointVerifier>,
    ) -> Result<BundleReport, BundleError> {
        let (from, to, tree_size) = (self.from, self.to, self.tree_size);
        if self.format != BUNDLE_FORMAT {
            return Err(BundleError::Format(format!(
                "format is {:?}, expected {BUNDLE_FORMAT:?}",
                self.format
            )));
        }
        let own;
        let verifier = match trusted {
            Some(verifier) => verifier,
            None => {
                own = CheckpointVerifier::from_vkey(&self.vkey)?;
                &own
            }
        };
        let SignedCheckpoint { checkpoint, .. } = verifier.verify(&self.checkpoint)?;
        if checkpoint.size != tree_size {
            return Err(BundleError::SizeMismatch {
                claimed: tree_size,
                signed: checkpoint.size,
            });
        }
        if from > to || to > tree_size {
            return Err(BundleError::Range {
                from,
                to,
                tree_size,
            });
        }
        if self.entries.len() as u64 != to - from {
            return Err(BundleError::EntryCount {
                from,
                to,
                found: self.entries.len(),
            });
        }

        // Chain-verify the entries on top of the frontier of [0, from).
        let range = CompactRange::from_frontier(from, self.frontier.clone())?;
        let entries: Vec<&[u8]> = self.entries.iter().map(Vec::as_slice).collect();
        let chunk = verify_chunk(from, &entries)?;
        // The `prev` of entry `from` is bound to entry `from - 1` only when that leaf is itself a
        // frontier hash (odd `from`); otherwise it is bound through the root alone.
        let head = match (from, self.frontier.last()) {
            (0, _) => Hash::ZERO,
            (_, Some(&last_leaf)) if from % 2 == 1 => last_leaf,
            _ => chunk.first_prev,
        };
        let mut chain = ChainVerifier::resume(range, head);
        chain.push_chunk(&chunk)?;

        // Bind the root of [0, to) to the signed root of [0, tree_size).
        if to == tree_size || to == 0 {
            // Equal trees, or the empty tree (a prefix of every tree), need no consistency path.
            if !self.consistency.is_empty() {
                let e = MerkleError::InvalidProof(format!(
                    "a range ending at {to} of tree size {tree_size} needs no consistency path, got {} hashes",
                    self.consistency.len()
                ));
                return Err(e.into());
            }
            if to == tree_size {
                chain.check_root(&checkpoint.root)?;
            }
        } else {
            verify_consistency(
                to,
                tree_size,
                &chain.root(),
                &checkpoint.root,
                &self.consistency,
            )?;
        }

        for disclosure in &self.personal {
            disclosure.check(&chunk.commitments, from, to)?;
        }
        Ok(BundleReport {
            from,
            to,
            tree_size,
            root: checkpoint.root,
            key_name: verifier.name().to_owned(),
            key_id: format!("{:08x}", verifier.key_id()),
            key_trusted: trusted.is_some(),
            personal_checked: self.personal.len(),
        })
    }
}

impl PersonalDisclosure {
    /// Checks the disclosure against the commitments (sorted by seq) of the entries `[from, to)`.
    fn check(&self, commitments: &[(u64, Hash)], from: u64, to: u64) -> Result<(), BundleError> {
        let seq = self.seq;
        let fail = |reason: String| BundleError::Personal { seq, reason };
        if !(from..to).contains(&seq) {
            return Err(fail(format!(
                "seq is outside the bundle range [{from}, {to})"
            )));
        }
        let Ok(i) = commitments.binary_search_by_key(&seq, |&(s, _)| s) else {
            return Err(fail("the entry carries no personal_commitment".to_owned()));
        };
        let mut salt = [0u8; 16];
        hex::decode_to_slice(&self.salt, &mut salt).map_err(|_| {
            fail(format!(
                "salt {:?} is not 32 hex digits",
                self.salt.chars().take(40).collect::<String>()
            ))
        })?;
        if !check_personal(&commitments[i].1, &salt, &self.personal) {
            return Err(ChainError {
                seq,
                kind: ChainErrorKind::PersonalMismatch,
            }
            .into());
        }
        Ok(())
    }
}

mod b64_vec {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::Deserialize;
    use serde::ser::SerializeSeq;

    pub fn serialize<S: serde::Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for bytes in v {
            seq.serialize_element(&STANDARD.encode(bytes))?;
        }
        seq.end()
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let texts = Vec::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        texts
            .iter()
            .map(|t| crate::proof::b64::decode(t).map_err(serde::de::Error::custom))
            .collect()
    }
}
