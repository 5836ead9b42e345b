//! Streaming chain verification: entry bytes → leaf hash, seq without gaps, `prev` links, root.
//!
//! Work splits in two so callers can use every core: [`verify_chunk`] (pure, parallel) decodes and
//! hashes a run of consecutive entries; [`ChainVerifier::push_chunk`] (sequential, cheap) joins
//! chunks, checks the links between them and grows the Merkle root.

use crate::entry::{Entry, EntryError, EntryHeader, EntryParts, non_canonical_detail};
use crate::hash::{Hash, leaf_hashes};
use crate::merkle::CompactRange;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seq {seq}: {kind}")]
pub struct ChainError {
    /// The first position where a check fails. A modified entry `n` shows at `n` when it no
    /// longer decodes, at `n + 1` (`PrevMismatch`) when it still does, and at the tree size
    /// (`RootMismatch`) when it is the last entry. A missing, moved or reordered entry shows at
    /// its position (`SeqMismatch`).
    pub seq: u64,
    pub kind: ChainErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainErrorKind {
    #[error("{0}")]
    Entry(#[from] EntryError),
    /// The entry is well-formed but not spelled as RFC 8785 writes it.
    #[error("entry bytes are not RFC 8785 canonical JSON ({detail})")]
    NotCanonical { detail: String },
    #[error("entry says seq {found}, expected {expected} (entry missing, moved or reordered)")]
    SeqMismatch { expected: u64, found: u64 },
    #[error("prev is {found}, expected the leaf hash of the previous entry {expected}")]
    PrevMismatch { expected: Hash, found: Hash },
    #[error("root of the first {size} entries is {computed}, checkpoint says {expected}")]
    RootMismatch {
        size: u64,
        expected: Hash,
        computed: Hash,
    },
    #[error("personal data does not match personal_commitment")]
    PersonalMismatch,
    /// The store has no entry at this position although later ones (or the head) say it should.
    #[error("entry is missing")]
    Missing,
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
    /// The first failure after the first entry, if any; `leaves` and `commitments` stop before it.
    /// [`ChainVerifier::push_chunk`] raises it once the link into the chunk has been checked, so
    /// the first bad position wins however the log was cut into chunks.
    pub error: Option<ChainError>,
}

impl Chunk {
    /// Whether every entry of the chunk passed (the link into it is checked by `push_chunk`).
    pub fn is_complete(&self) -> bool {
        self.error.is_none()
    }
}

/// Decodes each entry (structure and canonical form checked, see `Entry::decode`), checks
/// `seq == first_seq + i` and that each entry's `prev` equals the leaf hash of the entry before it
/// within the chunk.
///
/// A bad first entry is an `Err`. A later failure cannot be reported yet (the first entry's `prev`
/// may be the real first fault, which only the previous chunk can tell), so it is kept in
/// [`Chunk::error`] and raised by [`ChainVerifier::push_chunk`]: a chunk is verified only once pushed.
pub fn verify_chunk(first_seq: u64, entries: &[&[u8]]) -> Result<Chunk, ChainError> {
    verify_chunk_parts(first_seq, entries, |_, _| {})
}

/// [`verify_chunk`], also handing each good entry's [`EntryParts`] (agency, id, dossier, event
/// bytes) to `each`, in order, for index checks.
pub fn verify_chunk_parts<'a>(
    first_seq: u64,
    entries: &[&'a [u8]],
    mut each: impl FnMut(u64, EntryParts<'a>),
) -> Result<Chunk, ChainError> {
    let mut chunk = Chunk {
        first_seq,
        first_prev: Hash::ZERO,
        leaves: Vec::with_capacity(entries.len()),
        commitments: Vec::new(),
        error: None,
    };
    // Every entry's leaf hash at once (many messages hash faster together than one by one); an
    // entry's is kept only once the entry checks.
    let mut leaves = Vec::with_capacity(entries.len());
    leaf_hashes(entries, &mut leaves);
    for (i, (bytes, leaf)) in entries.iter().zip(leaves).enumerate() {
        // Seqs end at 2^64 - 1: an entry past it is out of any log (never an overflow panic).
        let Some(seq) = first_seq.checked_add(i as u64) else {
            let e = ChainError {
                seq: u64::MAX,
                kind: ChainErrorKind::Missing,
            };
            if i == 0 {
                return Err(e);
            }
            chunk.error = Some(e);
            break;
        };
        match check_entry(seq, bytes, chunk.leaves.last()) {
            Ok(parts) => {
                let header = parts.header;
                if seq == first_seq {
                    chunk.first_prev = header.prev;
                }
                chunk.leaves.push(leaf);
                if let Some(commitment) = header.personal_commitment {
                    chunk.commitments.push((seq, commitment));
                }
                each(seq, parts);
            }
            Err(e) if seq == first_seq => return Err(e),
            Err(e) => {
                chunk.error = Some(e);
                break;
            }
        }
    }
    Ok(chunk)
}

/// One entry at position `seq`: decodes, checks its seq and (within a chunk) its link.
fn check_entry<'a>(
    seq: u64,
    bytes: &'a [u8],
    prev_leaf: Option<&Hash>,
) -> Result<EntryParts<'a>, ChainError> {
    let fail = |kind| ChainError { seq, kind };
    let parts = Entry::decode_parts(bytes).map_err(|e| match e {
        EntryError::NotCanonical => fail(ChainErrorKind::NotCanonical {
            detail: non_canonical_detail(bytes).unwrap_or_else(|| "no detail".to_owned()),
        }),
        e => fail(ChainErrorKind::Entry(e)),
    })?;
    let header: EntryHeader = parts.header;
    if header.seq != seq {
        return Err(fail(ChainErrorKind::SeqMismatch {
            expected: seq,
            found: header.seq,
        }));
    }
    if let Some(&expected) = prev_leaf
        && header.prev != expected
    {
        return Err(fail(ChainErrorKind::PrevMismatch {
            expected,
            found: header.prev,
        }));
    }
    Ok(parts)
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
    /// An empty chunk is accepted and changes nothing. A chunk carrying an [`Chunk::error`] appends
    /// its good entries, then returns that error (so `size()` is then the bad seq).
    pub fn push_chunk(&mut self, chunk: &Chunk) -> Result<(), ChainError> {
        self.link(chunk, |range, leaf| range.push(leaf))?;
        chunk.error.clone().map_or(Ok(()), Err)
    }
    /// [`ChainVerifier::push_chunk`], also appending to `stored` the hashes the Merkle stored-hash
    /// array gains for the chunk's good entries (see [`CompactRange::push_stored`]), so a caller
    /// can compare a store's hashes with the ones its entries imply. Unlike `push_chunk`, the
    /// chunk's own [`Chunk::error`] is not raised: the caller decides which failure comes first.
    pub fn push_chunk_stored(
        &mut self,
        chunk: &Chunk,
        stored: &mut Vec<Hash>,
    ) -> Result<(), ChainError> {
        self.link(chunk, |range, leaf| range.push_stored(leaf, stored))
    }
    /// Checks the chunk continues the chain (seq and prev), then pushes its good leaves with `push`.
    fn link(
        &mut self,
        chunk: &Chunk,
        mut push: impl FnMut(&mut CompactRange, Hash),
    ) -> Result<(), ChainError> {
        let Some(&last) = chunk.leaves.last() else {
            return Ok(());
        };
        let size = self.size();
        if chunk.first_seq != size {
            let kind = ChainErrorKind::SeqMismatch {
                expected: size,
                found: chunk.first_seq,
            };
            return Err(ChainError { seq: size, kind });
        }
        if chunk.first_prev != self.head {
            let kind = ChainErrorKind::PrevMismatch {
                expected: self.head,
                found: chunk.first_prev,
            };
            return Err(ChainError { seq: size, kind });
        }
        for leaf in &chunk.leaves {
            push(&mut self.range, *leaf);
        }
        self.head = last;
        Ok(())
    }
    /// Convenience: verify_chunk + push_chunk for one entry. Returns its leaf hash.
    pub fn push(&mut self, entry: &[u8]) -> Result<Hash, ChainError> {
        let chunk = verify_chunk(self.size(), &[entry])?;
        self.push_chunk(&chunk)?;
        Ok(self.head)
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
        let computed = self.root();
        if computed != *expected {
            let size = self.size();
            return Err(ChainError {
                seq: size,
                kind: ChainErrorKind::RootMismatch {
                    size,
                    expected: *expected,
                    computed,
                },
            });
        }
        Ok(())
    }
}
