//! C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>): the log served as static resources, so
//! existing transparency-log clients, monitors and witnesses can read it.
//!
//! - `tile/<L>/<N>[.p/<W>]`: the Merkle tree hashes at level `8·L`, positions `N·256 .. N·256+W`
//!   (`W` = 256 for a full tile), 32 bytes each. They are exactly the ledger's stored hashes at
//!   [`stored_hash_index`]`(8·L, ·)`, so a tile is read, never computed.
//! - `tile/entries/<N>[.p/<W>]`: entries `N·256 .. N·256+W`, each as a big-endian `u16` length
//!   and the canonical entry bytes. An entry therefore holds at most [`MAX_ENTRY_BYTES`]; the
//!   ledger refuses larger ones (`oversized`).
//!
//! `<N>` is written in 3-digit groups, all but the last prefixed with `x` (`x001/x234/067`).

use crate::hash::{Hash, node_hash};
use crate::merkle::{HashReader, MerkleError, stored_hash_index};
use crate::verify::{ChainError, ChainVerifier, verify_chunk};
use std::collections::BTreeMap;

/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;

/// Tree levels a tile spans.
pub const TILE_HEIGHT: u8 = 8;

/// The largest entry an entry bundle can carry (its length is a `u16`).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    #[error("{path:?} is not a tile path: {reason}")]
    BadPath { path: String, reason: String },
    #[error(
        "entry {seq} is {len} bytes; an entry bundle holds entries of at most {MAX_ENTRY_BYTES}"
    )]
    EntryTooLarge { seq: u64, len: usize },
    #[error("entry bundle is truncated after {entries} entries")]
    Truncated { entries: usize },
}

/// What a tile holds: hashes of one tree level, or entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileKind {
    /// Hashes of tree level `8·L`.
    Hashes {
        level: u8,
    },
    Entries,
}

/// A tile coordinate: kind, index `N` within its level, width `W` (1..=256).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub kind: TileKind,
    pub index: u64,
    pub width: u64,
}

impl Tile {
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The tree level (0 = leaves) whose hashes this tile lists; 0 for entry bundles.
    pub fn tree_level(&self) -> u8 {
        match self.kind {
            TileKind::Hashes { level } => level * TILE_HEIGHT,
            TileKind::Entries => 0,
        }
    }

    /// The smallest tree size that has all of this tile's hashes or entries, or `None` when it
    /// is beyond any tree of `u64` size.
    pub fn tree_size_needed(&self) -> Option<u64> {
        let leaves_per_hash = 1u64.checked_shl(u32::from(self.tree_level()))?;
        self.index
            .checked_mul(TILE_WIDTH)?
            .checked_add(self.width)?
            .checked_mul(leaves_per_hash)
    }

    /// The first entry (leaf) this tile covers; `u64::MAX` for a tile that starts beyond any
    /// tree of `u64` size (see [`Tile::tree_size_needed`]), which no log has.
    pub fn first_leaf(&self) -> u64 {
        let level = u32::from(self.tree_level());
        match self.index.checked_mul(TILE_WIDTH) {
            Some(base) if level < 64 && base <= u64::MAX >> level => base << level,
            _ => u64::MAX,
        }
    }

    /// Parses the part of a tile URL after `tile/`: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`.
    pub fn parse(path: &str) -> Result<Tile, TileError> {
        let bad = |reason: &str| TileError::BadPath {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let (head, rest) = path
            .split_once('/')
            .ok_or_else(|| bad("expected <L>/<N> or entries/<N>"))?;
        let kind = if head == "entries" {
            TileKind::Entries
        } else {
            let level = decimal(head).ok_or_else(|| bad("level is not a decimal number"))?;
            // Levels above 7 start beyond 2^64 leaves (the spec allows up to 63).
            if level > 63 {
                return Err(bad("level is above 63"));
            }
            if level > 7 {
                return Err(bad("level is beyond any tree of 2^64 entries"));
            }
            TileKind::Hashes { level: level as u8 }
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let w = decimal(width).ok_or_else(|| bad("width is not a decimal number"))?;
                if !(1..TILE_WIDTH).contains(&w) {
                    return Err(bad("a partial tile's width is 1 to 255"));
                }
                (index, w)
            }
            None => (rest, TILE_WIDTH),
        };
        let groups: Vec<&str> = index_part.split('/').collect();
        let mut index: u64 = 0;
        for (i, group) in groups.iter().enumerate() {
            let last = i + 1 == groups.len();
            let digits = if last {
                *group
            } else {
                group
                    .strip_prefix('x')
                    .ok_or_else(|| bad("all but the last index element start with x"))?
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("index elements are 3 digits"));
            }
            let value: u64 = digits.parse().map_err(|_| bad("index is not a number"))?;
            index = index
                .checked_mul(1000)
                .and_then(|n| n.checked_add(value))
                .ok_or_else(|| bad("index is too large"))?;
        }
        let tile = Tile { kind, index, width };
        // One spelling per tile: no leading x000 groups.
        if tile.path() != format!("tile/{path}") {
            return Err(bad("not in canonical form"));
        }
        Ok(tile)
    }

    /// The tile's path, `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        let mut n = self.index;
        let mut index = format!("{:03}", n % 1000);
        while n >= 1000 {
            n /= 1000;
            index = format!("x{:03}/{index}", n % 1000);
        }
        let kind = match self.kind {
            TileKind::Hashes { level } => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        let partial = if self.is_full() {
            String::new()
        } else {
            format!(".p/{}", self.width)
        };
        format!("tile/{kind}/{index}{partial}")
    }
}

/// Strict decimal: digits only, no leading zero (but "0").
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// The bytes of a hash tile: its `width` hashes, read from the stored-hash array.
pub fn hash_tile(tile: &Tile, r: &impl HashReader) -> Result<Vec<u8>, MerkleError> {
    let level = tile.tree_level();
    let first = tile.index * TILE_WIDTH;
    let indexes: Vec<u64> = (0..tile.width)
        .map(|i| stored_hash_index(level, first + i))
        .collect();
    let hashes = r.read_hashes(&indexes)?;
    Ok(hashes.iter().flat_map(|h| h.0).collect())
}

/// Appends one entry to an entry bundle being built.
pub fn push_bundle_entry(bundle: &mut Vec<u8>, seq: u64, entry: &[u8]) -> Result<(), TileError> {
    let len = u16::try_from(entry.len()).map_err(|_| TileError::EntryTooLarge {
        seq,
        len: entry.len(),
    })?;
    bundle.extend_from_slice(&len.to_be_bytes());
    bundle.extend_from_slice(entry);
    Ok(())
}

/// Splits an entry bundle into its entries.
pub fn split_entry_bundle(mut bytes: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut out = Vec::with_capacity(TILE_WIDTH as usize);
    while !bytes.is_empty() {
        let truncated = TileError::Truncated { entries: out.len() };
        let len = bytes
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .ok_or(truncated.clone())?;
        out.push(bytes.get(2..2 + len).ok_or(truncated)?);
        bytes = &bytes[2 + len..];
    }
    Ok(out)
}

/// Splits a hash tile into its hashes (`None` if its length is not a multiple of 32).
pub fn split_hash_tile(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| Hash(c.try_into().expect("32 bytes")))
            .collect(),
    )
}

/// The RFC 6962 Merkle tree hash of consecutive hashes (MTH over them as leaves' hashes).
pub fn subtree_hash(hashes: &[Hash]) -> Hash {
    match hashes.len() {
        0 => crate::hash::sha256(b""),
        1 => hashes[0],
        n => {
            // The largest power of two below n.
            let split = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(
                &subtree_hash(&hashes[..split]),
                &subtree_hash(&hashes[split..]),
            )
        }
    }
}

/// A failure found while verifying a log from its tiles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TiledError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("{tile}: {reason}")]
    Tile { tile: String, reason: String },
    #[error("{0}")]
    Bundle(#[from] TileError),
}

impl TiledError {
    /// The first bad seq, when the failure is tied to one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            TiledError::Chain(e) => Some(e.seq),
            _ => None,
        }
    }
}

/// Verifies a log of `size` entries whose signed root is `root`, from its tiles alone: every
/// entry bundle (structure, seq, `prev` links, leaf hashes), every hash tile at every level
/// against the hashes the entries imply, the root, and the roots of pinned checkpoints.
/// Feed it [`TiledVerifier::bundles`] in order, then [`TiledVerifier::hash_tiles`] in any order.
#[derive(Debug)]
pub struct TiledVerifier {
    size: u64,
    root: Hash,
    chain: ChainVerifier,
    /// Expected hashes per level (1 = each the root of 256 leaves), filled from full tiles below.
    levels: Vec<Vec<Hash>>,
    pinned: BTreeMap<u64, Hash>,
    pinned_checked: usize,
    tiles_checked: u64,
}

/// What a successful [`TiledVerifier::finish`] established.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TiledReport {
    pub entries: u64,
    pub root: Hash,
    pub tiles_checked: u64,
    pub pinned_checked: usize,
}

impl TiledVerifier {
    /// `pinned`: roots of checkpoints the auditor kept, by size (at most `size`).
    pub fn new(size: u64, root: Hash, pinned: BTreeMap<u64, Hash>) -> TiledVerifier {
        TiledVerifier {
            size,
            root,
            chain: ChainVerifier::new(),
            levels: Vec::new(),
            pinned,
            pinned_checked: 0,
            tiles_checked: 0,
        }
    }

    /// The entry bundles to fetch, in order (the last one partial unless the size is a multiple
    /// of 256).
    pub fn bundles(&self) -> Vec<Tile> {
        tiles_of_width(TileKind::Entries, self.size)
    }

    /// Checks bundle `index` (its entries, and the level-0 tile of the same coordinates that the
    /// log serves), which must come in order.
    pub fn push_bundle(
        &mut self,
        tile: &Tile,
        entries: &[u8],
        level0: &[u8],
    ) -> Result<(), TiledError> {
        let name = tile.path();
        let bad = |reason: String| TiledError::Tile {
            tile: name.clone(),
            reason,
        };
        let first = tile.first_leaf();
        if first != self.chain.size() {
            return Err(bad(format!(
                "expected the bundle starting at entry {}",
                self.chain.size()
            )));
        }
        let split = split_entry_bundle(entries)?;
        if split.len() as u64 != tile.width {
            return Err(bad(format!(
                "holds {} entries, expected {}",
                split.len(),
                tile.width
            )));
        }
        // Cut at pinned sizes, so their roots are checked exactly there.
        let mut leaves = Vec::with_capacity(split.len());
        let mut start = 0usize;
        let end = first + split.len() as u64;
        let cuts: Vec<u64> = self
            .pinned
            .range(first + 1..=end)
            .map(|(s, _)| *s)
            .collect();
        for cut in cuts.into_iter().chain(std::iter::once(end)) {
            let stop = (cut - first) as usize;
            if stop > start {
                let chunk = verify_chunk(first + start as u64, &split[start..stop])?;
                self.chain.push_chunk(&chunk)?;
                leaves.extend_from_slice(&chunk.leaves);
                start = stop;
            }
            if let Some(expected) = self.pinned.get(&self.chain.size()) {
                self.chain.check_root(expected)?;
                self.pinned_checked += 1;
            }
        }
        let served = split_hash_tile(level0).ok_or_else(|| TiledError::Tile {
            tile: Tile {
                kind: TileKind::Hashes { level: 0 },
                ..*tile
            }
            .path(),
            reason: format!("{} bytes is not a whole number of hashes", level0.len()),
        })?;
        if served != leaves {
            let at = served
                .iter()
                .zip(&leaves)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(TiledError::Tile {
                tile: Tile {
                    kind: TileKind::Hashes { level: 0 },
                    ..*tile
                }
                .path(),
                reason: format!(
                    "hash {at} (entry {}) differs from the leaf hash of the served entry",
                    first + at as u64
                ),
            });
        }
        self.tiles_checked += 2;
        if tile.is_full() {
            self.push_level(1, subtree_hash(&leaves));
        }
        Ok(())
    }

    fn push_level(&mut self, level: usize, hash: Hash) {
        if self.levels.len() < level {
            self.levels.resize(level, Vec::new());
        }
        self.levels[level - 1].push(hash);
        if self.levels[level - 1]
            .len()
            .is_multiple_of(TILE_WIDTH as usize)
        {
            let full =
                &self.levels[level - 1][self.levels[level - 1].len() - TILE_WIDTH as usize..];
            let up = subtree_hash(full);
            self.push_level(level + 1, up);
        }
    }

    /// The hash tiles above level 0 that a tree of this size has (call after every bundle).
    pub fn hash_tiles(&self) -> Vec<Tile> {
        let mut out = Vec::new();
        for level in 1..=7u8 {
            let tiles = tiles_of_width(TileKind::Hashes { level }, self.size);
            if tiles.is_empty() {
                break;
            }
            out.extend(tiles);
        }
        out
    }

    /// Checks a hash tile above level 0 against the hashes the entries imply.
    pub fn check_hash_tile(&mut self, tile: &Tile, bytes: &[u8]) -> Result<(), TiledError> {
        let bad = |reason: String| TiledError::Tile {
            tile: tile.path(),
            reason,
        };
        let TileKind::Hashes { level } = tile.kind else {
            return Err(bad("not a hash tile".into()));
        };
        let served = split_hash_tile(bytes).ok_or_else(|| {
            bad(format!(
                "{} bytes is not a whole number of hashes",
                bytes.len()
            ))
        })?;
        if served.len() as u64 != tile.width {
            return Err(bad(format!(
                "holds {} hashes, expected {}",
                served.len(),
                tile.width
            )));
        }
        if level == 0 {
            return Err(bad(
                "level-0 tiles are checked with their entry bundle (push_bundle)".into(),
            ));
        }
        let expected = self
            .levels
            .get(level as usize - 1)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let beyond =
            || bad("the entries do not reach this tile (verify every bundle first)".into());
        let from = tile
            .index
            .checked_mul(TILE_WIDTH)
            .and_then(|f| usize::try_from(f).ok())
            .ok_or_else(beyond)?;
        let to = from.checked_add(tile.width as usize).ok_or_else(beyond)?;
        let want = expected.get(from..to).ok_or_else(beyond)?;
        if let Some(at) = served.iter().zip(want).position(|(a, b)| a != b) {
            return Err(bad(format!(
                "hash {at} differs from the root of the entries it covers"
            )));
        }
        self.tiles_checked += 1;
        Ok(())
    }

    /// Every entry was pushed: the root must be the signed one.
    pub fn finish(self) -> Result<TiledReport, TiledError> {
        if self.chain.size() != self.size {
            return Err(TiledError::Chain(ChainError {
                seq: self.chain.size(),
                kind: crate::verify::ChainErrorKind::Missing,
            }));
        }
        self.chain.check_root(&self.root)?;
        Ok(TiledReport {
            entries: self.size,
            root: self.root,
            tiles_checked: self.tiles_checked,
            pinned_checked: self.pinned_checked,
        })
    }
}

/// The tiles of `kind` a tree of `size` has: full ones, then the partial one if any.
fn tiles_of_width(kind: TileKind, size: u64) -> Vec<Tile> {
    let level = match kind {
        TileKind::Hashes { level } => level,
        TileKind::Entries => 0,
    };
    let hashes = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
    let mut out: Vec<Tile> = (0..hashes / TILE_WIDTH)
        .map(|index| Tile {
            kind,
            index,
            width: TILE_WIDTH,
        })
        .collect();
    if !hashes.is_multiple_of(TILE_WIDTH) {
        out.push(Tile {
            kind,
            index: hashes / TILE_WIDTH,
            width: hashes % TILE_WIDTH,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, expected: Result<(TileKind, u64, u64), &str>) {
        let got = Tile::parse(path);
        match (got, expected) {
            (Ok(t), Ok((kind, index, width))) => {
                assert_eq!((t.kind, t.index, t.width), (kind, index, width), "{path}");
                assert_eq!(t.path(), format!("tile/{path}"));
            }
            (Err(TileError::BadPath { reason, .. }), Err(want)) => {
                assert!(reason.contains(want), "{path}: {reason}")
            }
            (got, want) => panic!("{path}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn tile_paths() {
        let h = |level| TileKind::Hashes { level };
        check("0/000", Ok((h(0), 0, 256)));
        check("0/x001/x234/067", Ok((h(0), 1_234_067, 256)));
        check("1/x001/234.p/17", Ok((h(1), 1234, 17)));
        check("entries/005.p/1", Ok((TileKind::Entries, 5, 1)));
        check("entries/x001/000", Ok((TileKind::Entries, 1000, 256)));
        check("0/5", Err("3 digits"));
        check("0/x000/005", Err("canonical"));
        check("0/001.p/0", Err("1 to 255"));
        check("0/001.p/256", Err("1 to 255"));
        check("0/001.p/07", Err("decimal"));
        check("01/001", Err("decimal"));
        check("64/000", Err("above 63"));
        check("8/000", Err("beyond any tree"));
        check("0/001/002", Err("start with x"));
        check("x/000", Err("decimal"));
        check("0", Err("expected"));
        check("0/x999/x999/x999/x999/x999/x999/x999/999", Err("too large"));
    }

    #[test]
    fn sizes_needed() {
        let t = |level, index, width| Tile {
            kind: TileKind::Hashes { level },
            index,
            width,
        };
        // The spec's example: a tree of 70,000 entries has 273 full level-0 tiles, a partial
        // level-0 tile of width 112, one full level-1 tile, a level-1 tile of 17, a level-2 of 1.
        assert_eq!(t(0, 272, 256).tree_size_needed(), Some(273 * 256));
        assert_eq!(t(0, 273, 112).tree_size_needed(), Some(70_000));
        assert_eq!(t(1, 0, 256).tree_size_needed(), Some(65_536));
        assert_eq!(t(1, 1, 17).tree_size_needed(), Some(273 * 256));
        assert!(t(1, 1, 17).tree_size_needed() <= Some(70_000));
        assert_eq!(t(2, 0, 1).tree_size_needed(), Some(65_536));
        assert_eq!(t(7, u64::MAX / 256, 256).tree_size_needed(), None);
        assert_eq!(t(1, 3, 5).first_leaf(), 3 * 65_536);
    }

    #[test]
    fn entry_bundles() {
        let mut b = Vec::new();
        push_bundle_entry(&mut b, 0, b"{}").unwrap();
        push_bundle_entry(&mut b, 1, b"").unwrap();
        push_bundle_entry(&mut b, 2, &[7u8; 300]).unwrap();
        let entries = split_entry_bundle(&b).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], b"{}");
        assert_eq!(entries[2].len(), 300);
        assert_eq!(
            push_bundle_entry(&mut b, 9, &vec![0u8; MAX_ENTRY_BYTES + 1]),
            Err(TileError::EntryTooLarge {
                seq: 9,
                len: MAX_ENTRY_BYTES + 1
            })
        );
        assert!(push_bundle_entry(&mut Vec::new(), 9, &vec![0u8; MAX_ENTRY_BYTES]).is_ok());
        assert_eq!(
            split_entry_bundle(&b[..b.len() - 1]),
            Err(TileError::Truncated { entries: 2 })
        );
        assert_eq!(
            split_entry_bundle(&[0]),
            Err(TileError::Truncated { entries: 0 })
        );
    }
}
