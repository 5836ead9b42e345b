//! The Merkle tree over leaf hashes (RFC 6962 / RFC 9162 §2.1), stored in the sumdb/tlog
//! "stored hash" layout: appending leaf `n` appends `stored_hash_count(n+1) - stored_hash_count(n)`
//! hashes to one append-only array, and any root or proof needs only O(log n) reads from it.
//! Wraps the `tlog_tiles` crate behind this small API so it can be replaced.

use crate::hash::{Hash, node_hash, sha256};
use std::cell::RefCell;
use tlog_tiles as tlog;

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
    /// [`CompactRange::from_frontier`] got the wrong number of hashes.
    #[error("the frontier of {size} leaves has {expected} hashes, got {found}")]
    BadFrontier {
        size: u64,
        expected: u32,
        found: usize,
    },
    /// [`CompactRange::push_subtree`] at a size that is not a multiple of the subtree's width.
    #[error("cannot append a subtree of 2^{level} leaves to a range of {size} leaves")]
    Misaligned { size: u64, level: u8 },
}

/// Source of previously stored hashes, addressed by stored-hash index.
pub trait HashReader {
    /// Returns exactly one hash per index, in the same order, or an error.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError>;
}

/// Stored-hash index of the hash at `level` (0 = leaves) and position `n` within that level.
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    tlog::stored_hash_index(level, n)
}

/// Number of stored hashes for a tree of `n` leaves (the array length after appending n leaves).
pub fn stored_hash_count(n: u64) -> u64 {
    tlog::stored_hash_count(n)
}

/// The hashes to append to the stored array when leaf `n` (0-based) with hash `leaf` is appended;
/// the first is `leaf` itself. `r` must serve the hashes stored for leaves `< n`.
pub fn stored_hashes_for_leaf(
    n: u64,
    leaf: Hash,
    r: &impl HashReader,
) -> Result<Vec<Hash>, MerkleError> {
    let hashes = with_reader(r, |r| {
        tlog::stored_hashes_for_record_hash(n, tlog::Hash(leaf.0), r)
    })?;
    Ok(hashes.into_iter().map(|h| Hash(h.0)).collect())
}

/// Root of the tree with `tree_size` leaves (SHA-256 of "" for size 0).
pub fn tree_root(tree_size: u64, r: &impl HashReader) -> Result<Hash, MerkleError> {
    with_reader(r, |r| tlog::tree_hash(tree_size, r)).map(|h| Hash(h.0))
}

/// RFC 6962 audit path (bottom-up siblings) for leaf `index` in the tree of `tree_size` leaves.
pub fn prove_inclusion(
    tree_size: u64,
    index: u64,
    r: &impl HashReader,
) -> Result<Vec<Hash>, MerkleError> {
    if index >= tree_size {
        return Err(MerkleError::OutOfRange { index, tree_size });
    }
    let path = with_reader(r, |r| tlog::prove_record(tree_size, index, r))?;
    Ok(path.into_iter().map(|h| Hash(h.0)).collect())
}

/// RFC 6962 consistency proof from `old_size` to `new_size` (1 ≤ old ≤ new). Empty when equal.
pub fn prove_consistency(
    old_size: u64,
    new_size: u64,
    r: &impl HashReader,
) -> Result<Vec<Hash>, MerkleError> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::BadSizes { old_size, new_size });
    }
    let path = with_reader(r, |r| tlog::prove_tree(new_size, old_size, r))?;
    Ok(path.into_iter().map(|h| Hash(h.0)).collect())
}

/// Checks an audit path with the algorithm of RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    if index >= tree_size {
        return Err(MerkleError::OutOfRange { index, tree_size });
    }
    let invalid = |what: String| {
        MerkleError::InvalidProof(format!(
            "inclusion of leaf {index} in tree size {tree_size}: {what}"
        ))
    };
    let (mut f, mut s, mut r) = (index, tree_size - 1, *leaf);
    for p in path {
        if s == 0 {
            return Err(invalid(format!(
                "path of {} hashes is too long",
                path.len()
            )));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(invalid(format!(
            "path of {} hashes is too short",
            path.len()
        )));
    }
    if r != *root {
        return Err(invalid(format!("path leads to root {r}, expected {root}")));
    }
    Ok(())
}

/// Checks a consistency proof with the algorithm of RFC 9162 §2.1.4.2 (1 ≤ old ≤ new; equal
/// sizes need an empty path and equal roots).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    path: &[Hash],
) -> Result<(), MerkleError> {
    if old_size == 0 || old_size > new_size {
        return Err(MerkleError::BadSizes { old_size, new_size });
    }
    let invalid = |what: String| {
        MerkleError::InvalidProof(format!(
            "consistency from tree size {old_size} to {new_size}: {what}"
        ))
    };
    if old_size == new_size {
        if !path.is_empty() {
            return Err(invalid(format!(
                "equal sizes need an empty path, got {} hashes",
                path.len()
            )));
        }
        if old_root != new_root {
            return Err(invalid(format!(
                "equal sizes but roots {old_root} and {new_root} differ"
            )));
        }
        return Ok(());
    }
    // An old tree that is a perfect subtree is the proof's implicit first node.
    let (seed, rest) = match path.split_first() {
        _ if old_size.is_power_of_two() => (*old_root, path),
        Some((first, rest)) => (*first, rest),
        None => return Err(invalid("path is empty".to_owned())),
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in rest {
        if s == 0 {
            return Err(invalid(format!(
                "path of {} hashes is too long",
                path.len()
            )));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(invalid(format!(
            "path of {} hashes is too short",
            path.len()
        )));
    }
    if fr != *old_root {
        return Err(invalid(format!(
            "path leads to old root {fr}, expected {old_root}"
        )));
    }
    if sr != *new_root {
        return Err(invalid(format!(
            "path leads to new root {sr}, expected {new_root}"
        )));
    }
    Ok(())
}

/// Stored-hash indexes of the perfect subtrees that make up leaves `[0, n)`, largest (leftmost) first.
/// Reading them gives the frontier a [`CompactRange`] can resume from.
pub fn frontier_indexes(n: u64) -> Vec<u64> {
    let mut out = Vec::with_capacity(n.count_ones() as usize);
    let mut start = 0u64;
    for level in (0..u64::BITS as u8).rev() {
        if n >> level & 1 == 1 {
            out.push(stored_hash_index(level, start >> level));
            start += 1 << level;
        }
    }
    out
}

/// Runs a `tlog_tiles` function over our [`HashReader`], keeping the reader's own error.
fn with_reader<R: HashReader, T>(
    r: &R,
    f: impl FnOnce(&Adapter<'_, R>) -> Result<T, tlog::Error>,
) -> Result<T, MerkleError> {
    let adapter = Adapter {
        inner: r,
        error: RefCell::new(None),
    };
    f(&adapter).map_err(|e| {
        adapter
            .error
            .take()
            .unwrap_or_else(|| MerkleError::Read(e.to_string()))
    })
}

struct Adapter<'a, R> {
    inner: &'a R,
    error: RefCell<Option<MerkleError>>,
}

impl<R: HashReader> tlog::HashReader for Adapter<'_, R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::Error> {
        let result = self.inner.read_hashes(indexes).and_then(|hashes| {
            if hashes.len() == indexes.len() {
                Ok(hashes)
            } else {
                Err(MerkleError::Read(format!(
                    "asked for {} hashes, got {}",
                    indexes.len(),
                    hashes.len()
                )))
            }
        });
        match result {
            Ok(hashes) => Ok(hashes.into_iter().map(|h| tlog::Hash(h.0)).collect()),
            Err(e) => {
                // `tlog_tiles` must never see a short answer (it asserts); hand it an error instead.
                self.error.replace(Some(e));
                Err(tlog::Error::IndexesNotInTree)
            }
        }
    }
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
    ///
    /// Panics if `hashes` and `leaves` were set by hand to disagree.
    pub fn push_leaf(&mut self, leaf: Hash) {
        let new = stored_hashes_for_leaf(self.leaves, leaf, self).unwrap_or_else(|e| {
            panic!(
                "MemoryHashes of {} leaves is inconsistent: {e}",
                self.leaves
            )
        });
        self.hashes.extend(new);
        self.leaves += 1;
    }
    /// Panics if `hashes` and `leaves` were set by hand to disagree.
    pub fn root(&self) -> Hash {
        tree_root(self.leaves, self).unwrap_or_else(|e| {
            panic!(
                "MemoryHashes of {} leaves is inconsistent: {e}",
                self.leaves
            )
        })
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.hashes.get(i))
                    .copied()
                    .ok_or_else(|| {
                        MerkleError::Read(format!(
                            "stored hash {i} is beyond the {} held in memory",
                            self.hashes.len()
                        ))
                    })
            })
            .collect()
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
        if frontier.len() != size.count_ones() as usize {
            return Err(MerkleError::BadFrontier {
                size,
                expected: size.count_ones(),
                found: frontier.len(),
            });
        }
        Ok(Self { size, frontier })
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn frontier(&self) -> &[Hash] {
        &self.frontier
    }
    pub fn push(&mut self, leaf: Hash) {
        // Level 0 is aligned at every size; only a range of u64::MAX leaves cannot grow.
        if let Err(e) = self.push_subtree(0, leaf) {
            panic!("{e}");
        }
    }
    /// Appends a whole perfect subtree of `2^level` leaves whose root is `root`. Requires the
    /// current size to be a multiple of `2^level` (used to merge ranges hashed on other threads).
    pub fn push_subtree(&mut self, level: u8, root: Hash) -> Result<(), MerkleError> {
        let misaligned = MerkleError::Misaligned {
            size: self.size,
            level,
        };
        let Some(width) = 1u64.checked_shl(level.into()) else {
            return Err(misaligned);
        };
        if !self.size.is_multiple_of(width) {
            return Err(misaligned);
        }
        let Some(new_size) = self.size.checked_add(width) else {
            return Err(misaligned);
        };
        self.frontier.push(root);
        // Each set bit of the old size at or above `level` is a subtree the new one may complete.
        let mut carry = self.size >> level;
        while carry & 1 == 1 {
            let n = self.frontier.len();
            let merged = node_hash(&self.frontier[n - 2], &self.frontier[n - 1]);
            self.frontier.truncate(n - 2);
            self.frontier.push(merged);
            carry >>= 1;
        }
        self.size = new_size;
        Ok(())
    }
    /// Appends a leaf and adds to `stored` exactly the hashes the stored-hash array gains for it:
    /// the leaf, then the root of every subtree it completes, bottom-up (as
    /// [`stored_hashes_for_leaf`] computes them, without reading anything).
    pub fn push_stored(&mut self, leaf: Hash, stored: &mut Vec<Hash>) {
        assert!(
            self.size < u64::MAX,
            "a compact range of u64::MAX leaves cannot grow"
        );
        stored.push(leaf);
        self.frontier.push(leaf);
        let mut carry = self.size;
        while carry & 1 == 1 {
            let n = self.frontier.len();
            let merged = node_hash(&self.frontier[n - 2], &self.frontier[n - 1]);
            self.frontier.truncate(n - 2);
            self.frontier.push(merged);
            stored.push(merged);
            carry >>= 1;
        }
        self.size += 1;
    }
    /// The root of `[0, size)`.
    pub fn root(&self) -> Hash {
        let mut hashes = self.frontier.iter().rev();
        match hashes.next() {
            None => sha256(b""),
            Some(last) => hashes.fold(*last, |right, left| node_hash(left, &right)),
        }
    }
}

/// A small RFC 6962 tree held whole, level by level: its n − 1 node hashes computed once, then
/// every audit path read without hashing (the receipts of one commit, each of which carries its
/// own path). Pairing each level's nodes left to right and carrying an unpaired last node up
/// unchanged builds exactly RFC 6962's tree (split at the largest power of two below n).
#[derive(Debug, Clone)]
pub struct LeafTree {
    /// `levels[0]` the leaves, the last level the root alone (none for an empty tree).
    levels: Vec<Vec<Hash>>,
}

impl LeafTree {
    pub fn new(leaves: Vec<Hash>) -> LeafTree {
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|l| l.len() > 1) {
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [left, right] => node_hash(left, right),
                    [lone] => *lone,
                    _ => unreachable!("chunks(2) yields one or two"),
                })
                .collect();
            levels.push(above);
        }
        LeafTree { levels }
    }

    pub fn size(&self) -> u64 {
        self.levels[0].len() as u64
    }

    /// The root (SHA-256 of "" for no leaves, as [`CompactRange::root`]).
    pub fn root(&self) -> Hash {
        match self.levels.last().and_then(|top| top.first()) {
            Some(root) => *root,
            None => sha256(b""),
        }
    }

    /// The audit path of leaf `index`, bottom-up (what [`prove_inclusion`] gives).
    pub fn path(&self, index: u64) -> Result<Vec<Hash>, MerkleError> {
        if index >= self.size() {
            return Err(MerkleError::OutOfRange {
                index,
                tree_size: self.size(),
            });
        }
        let mut i = index as usize;
        let mut path = Vec::with_capacity(self.levels.len() - 1);
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(i ^ 1) {
                path.push(*sibling);
            }
            i >>= 1;
        }
        Ok(path)
    }
}
