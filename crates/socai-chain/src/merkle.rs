//! The Merkle tree over leaf hashes (RFC 6962 / RFC 9162 §2.1), stored in the sumdb/tlog
//! "stored hash" layout: appending leaf `n` appends `stored_hash_count(n+1) - stored_hash_count(n)`
//! hashes to one append-only array, and any root or proof needs only O(log n) reads from it.
//! Wraps the `tlog_tiles` crate behind this small API so it can be replaced.

use crate::hash::Hash;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("index {index} is not in a tree of size {tree_size}")]
    OutOfRange { index: u64, tree_size: u64 },
    #[error("invalid sizes: old {old_size} new {new_size}")]
    BadSizes { old_size: u64, new_size: u64 },
    /// The proof does not lead to the expected root.
    #[error("proof does not verify: {0}")]
    InvalidProof(String),
    /// The hash reader failed (storage error, missing hash).
    #[error("reading stored hashes: {0}")]
    Read(String),
}

/// Source of previously stored hashes, addressed by stored-hash index.
pub trait HashReader {
    /// Returns exactly one hash per index, in the same order, or an error.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError>;
}

/// Stored-hash index of the hash at `level` (0 = leaves) and position `n` within that level.
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    todo!()
}

/// Number of stored hashes for a tree of `n` leaves (the array length after appending n leaves).
pub fn stored_hash_count(n: u64) -> u64 {
    todo!()
}

/// The hashes to append to the stored array when leaf `n` (0-based) with hash `leaf` is appended;
/// the first is `leaf` itself. `r` must serve the hashes stored for leaves `< n`.
pub fn stored_hashes_for_leaf(n: u64, leaf: Hash, r: &impl HashReader) -> Result<Vec<Hash>, MerkleError> {
    todo!()
}

/// Root of the tree with `tree_size` leaves (SHA-256 of "" for size 0).
pub fn tree_root(tree_size: u64, r: &impl HashReader) -> Result<Hash, MerkleError> {
    todo!()
}

/// RFC 6962 audit path (bottom-up siblings) for leaf `index` in the tree of `tree_size` leaves.
pub fn prove_inclusion(tree_size: u64, index: u64, r: &impl HashReader) -> Result<Vec<Hash>, MerkleError> {
    todo!()
}

/// RFC 6962 consistency proof from `old_size` to `new_size` (1 ≤ old ≤ new). Empty when equal.
pub fn prove_consistency(old_size: u64, new_size: u64, r: &impl HashReader) -> Result<Vec<Hash>, MerkleError> {
    todo!()
}

pub fn verify_inclusion(leaf: &Hash, index: u64, tree_size: u64, path: &[Hash], root: &Hash) -> Result<(), MerkleError> {
    todo!()
}

pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> Result<(), MerkleError> {
    todo!()
}

/// Stored-hash indexes of the perfect subtrees that make up leaves `[0, n)`, largest (leftmost) first.
/// Reading them gives the frontier a [`CompactRange`] can resume from.
pub fn frontier_indexes(n: u64) -> Vec<u64> {
    todo!()
}

/// An in-memory stored-hash array: a [`HashReader`] for tests, verification and bundles.
#[derive(Debug, Clone, Default)]
pub struct MemoryHashes {
    pub hashes: Vec<Hash>,
    pub leaves: u64,
}

impl MemoryHashes {
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a leaf hash (and the interior hashes it completes).
    pub fn push_leaf(&mut self, leaf: Hash) {
        todo!()
    }
    pub fn root(&self) -> Hash {
        todo!()
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        todo!()
    }
}

/// A compact range (Merkle frontier) over leaves `[0, size)`: O(log n) memory, O(1) amortised
/// node hashes per appended leaf. Used for streaming verification and for bundles that start
/// mid-log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first.
    frontier: Vec<Hash>,
}

impl CompactRange {
    pub fn new() -> Self {
        Self::default()
    }
    /// Resumes from the frontier of `[0, size)` (as read at [`frontier_indexes`]).
    /// Errors if `frontier.len() != size.count_ones()`.
    pub fn from_frontier(size: u64, frontier: Vec<Hash>) -> Result<Self, MerkleError> {
        todo!()
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn frontier(&self) -> &[Hash] {
        &self.frontier
    }
    pub fn push(&mut self, leaf: Hash) {
        todo!()
    }
    /// Appends a whole perfect subtree of `2^level` leaves whose root is `root`. Requires the
    /// current size to be a multiple of `2^level` (used to merge ranges hashed on other threads).
    pub fn push_subtree(&mut self, level: u8, root: Hash) -> Result<(), MerkleError> {
        todo!()
    }
    /// The root of `[0, size)`.
    pub fn root(&self) -> Hash {
        todo!()
    }
}
