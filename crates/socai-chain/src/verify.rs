//! Streaming chain verification: entry bytes → leaf hash, seq without gaps, `prev` links, root.
//!
//! Work splits in two so callers can use every core: [`verify_chunk`] (pure, parallel) decodes and
//! hashes a run of consecutive entries; [`ChainVerifier::push_chunk`] (sequential, cheap) joins
//! chunks, checks the links between them and grows the Merkle root.

use crate::entry::EntryError;
use crate::hash::Hash;
use crate::merkle::CompactRange;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seq {seq}: {kind}")]
pub struct ChainError {
    /// The first bad position.
    pub seq: u64,
    pub kind: ChainErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainErrorKind {
    #[error("{0}")]
    Entry(#[from] EntryError),
    #[error("entry says seq {found}, expected {expected} (entry missing, moved or reordered)")]
    SeqMismatch { expected: u64, found: u64 },
    #[error("prev is {found}, expected the leaf hash of the previous entry {expected}")]
    PrevMismatch { expected: Hash, found: Hash },
    #[error("root of the first {size} entries is {computed}, checkpoint says {expected}")]
    RootMismatch { size: u64, expected: Hash, computed: Hash },
    #[error("personal data does not match personal_commitment")]
    PersonalMismatch,
}

/// What [`verify_chunk`] learned about entries `[first_seq, first_seq + leaves.len())`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub first_seq: u64,
    /// `prev` of the first entry (to be linked to the previous chunk).
    pub first_prev: Hash,
    pub leaves: Vec<Hash>,
    /// Seqs (and commitments) of entries carrying a personal_commitment, for optional checking.
    pub commitments: Vec<(u64, Hash)>,
}

/// Decodes each entry (structure checked, see `Entry::decode`), checks `seq == first_seq + i`
/// and that each entry's `prev` equals the leaf hash of the entry before it within the chunk.
pub fn verify_chunk(first_seq: u64, entries: &[&[u8]]) -> Result<Chunk, ChainError> {
    todo!()
}

/// The sequential half: links chunks and accumulates the root.
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    range: CompactRange,
    /// Leaf hash of the last entry, or zeros before the first.
    head: Hash,
}

impl ChainVerifier {
    /// Verifies from seq 0.
    pub fn new() -> Self {
        Self::default()
    }
    /// Continues after `range.size()` entries whose last leaf hash is `head`.
    pub fn resume(range: CompactRange, head: Hash) -> Self {
        Self { range, head }
    }
    /// Checks the chunk starts at `size()` and its first prev equals `head()`, then appends.
    pub fn push_chunk(&mut self, chunk: &Chunk) -> Result<(), ChainError> {
        todo!()
    }
    /// Convenience: verify_chunk + push_chunk for one entry. Returns its leaf hash.
    pub fn push(&mut self, entry: &[u8]) -> Result<Hash, ChainError> {
        todo!()
    }
    pub fn size(&self) -> u64 {
        self.range.size()
    }
    pub fn head(&self) -> Hash {
        self.head
    }
    pub fn root(&self) -> Hash {
        self.range.root()
    }
    /// Errors with RootMismatch (seq = size) unless `root()` equals `expected`.
    pub fn check_root(&self, expected: &Hash) -> Result<(), ChainError> {
        todo!()
    }
}
