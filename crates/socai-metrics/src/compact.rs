//! Where the projection keeps its dossiers: open ones as plain [`Dossier`]s in a hash map, and
//! those whose lifecycle ended long enough ago in a packed arena, each in the few dozen bytes of
//! [`Dossier::encode`].
//!
//! A dossier is known by the first 128 bits of SHA-256 over its id ([`fingerprint`]): the
//! projection never needs the id again, and two ids share a fingerprint only after about 2^64
//! dossiers (or 2^64 SHA-256 evaluations spent on finding a pair on purpose).
//!
//! An arena (one of 16, by the keyed hash of the fingerprint) is a list of 4 MiB chunks of records
//! `fingerprint ‖ varint length ‖ encoding`, each starting at an even offset; a [`HashTable`] of
//! `u32` positions (in units of 2 bytes), under a hash keyed for this process, finds a record by
//! its fingerprint. So a compacted dossier costs its record plus 4–10 bytes of table, and never a
//! heap allocation of its own. A late event takes its dossier back out (the record becomes dead
//! space); once dead space is a fifth of an arena, the arena is rewritten.
//!
//! Compaction is lossless, so it cannot change a value: the same state comes back.

use hashbrown::HashTable;
use sha2::{Digest, Sha256};

use crate::dossier::Dossier;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A dossier's identity in the projection.
pub(crate) type Fingerprint = [u8; 16];

/// The first 128 bits of SHA-256 over the dossier id.
pub(crate) fn fingerprint(dossier: &str) -> Fingerprint {
    let digest = Sha256::digest(dossier.as_bytes());
    digest[..16].try_into().expect("16 of 32 bytes")
}

const CHUNK_BITS: u32 = 22;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Positions count 2-byte units: 8 GiB of records per arena.
const UNIT: usize = 2;
/// Arenas, chosen by a keyed hash of the fingerprint: 128 GiB of records in all (about two billion
/// dossiers), and each table doubles on its own (a sixteenth of the memory at a time).
const ARENAS: usize = 16;
/// Dead bytes an arena may hold before it is rewritten, however small.
const REWRITE_MIN: usize = 1 << 18;

/// Memory the dossiers take, by kind (see [`Dossiers::memory`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DossierMemory {
    /// Dossiers held as plain states (open, or finished recently).
    pub open: u64,
    /// Bytes of the open dossiers: map slots (with spare capacity) and their vectors.
    pub open_bytes: u64,
    /// Dossiers held compacted.
    pub compacted: u64,
    /// Bytes of the compacted dossiers: arena chunks (dead space included) and the tables.
    pub compacted_bytes: u64,
    /// Compacted dossiers taken back out by a late event, in all.
    pub taken_back: u64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Dossiers {
    open: HashMap<Fingerprint, Dossier>,
    arenas: [Arena; ARENAS],
    /// Keys the tables' hash: dossier ids are chosen by publishers, so the slots they land in
    /// must not be (fingerprints are public: ids could be ground to collide in a fixed hash).
    hasher: foldhash::fast::RandomState,
    taken_back: u64,
    scratch: Vec<u8>,
}

/// Compacted dossiers: records in chunks, a table of their positions.
#[derive(Debug, Clone, Default)]
struct Arena {
    chunks: Vec<Vec<u8>>,
    table: HashTable<u32>,
    live_bytes: usize,
    dead_bytes: usize,
}

/// The arena of a fingerprint with keyed hash `hash`: bits the tables do not use (hashbrown
/// takes the low bits for the slot and the top 7 for its tags), and keyed, so ids cannot be
/// chosen to fill one arena.
fn arena_of(hash: u64) -> usize {
    (hash >> 40) as usize % ARENAS
}

fn locate(pos: u32) -> (usize, usize) {
    let at = pos as usize * UNIT;
    (at >> CHUNK_BITS, at & (CHUNK - 1))
}

/// Appends a dossier record, as the arenas and snapshots hold it: fingerprint, varint length,
/// encoding.
pub(crate) fn put_record(out: &mut Vec<u8>, fp: &Fingerprint, encoding: &[u8]) {
    out.extend_from_slice(fp);
    let mut varint = [0u8; 10];
    let n = integer_encoding::VarInt::encode_var(encoding.len() as u64, &mut varint);
    out.extend_from_slice(&varint[..n]);
    out.extend_from_slice(encoding);
}

/// The record at the front of `bytes` ([`put_record`]): its fingerprint, its encoding, and the
/// bytes it takes; `None` if it is cut short.
pub(crate) fn split_record(bytes: &[u8]) -> Option<(&Fingerprint, &[u8], usize)> {
    let fp: &Fingerprint = bytes.get(..16)?.try_into().ok()?;
    let (len, n) = <u64 as integer_encoding::VarInt>::decode_var(bytes.get(16..)?)?;
    let end = 16usize
        .checked_add(n)?
        .checked_add(usize::try_from(len).ok()?)?;
    Some((fp, bytes.get(16 + n..end)?, end))
}

/// The record at `pos`: its fingerprint and encoding.
fn record(chunks: &[Vec<u8>], pos: u32) -> (&Fingerprint, &[u8]) {
    let (chunk, offset) = locate(pos);
    let (fp, encoding, _) =
        split_record(&chunks[chunk][offset..]).expect("the arena holds whole records");
    (fp, encoding)
}

fn record_len(encoding: usize) -> usize {
    let len = 16 + integer_encoding::VarInt::required_space(encoding as u64) + encoding;
    len.next_multiple_of(UNIT)
}

/// Appends a record to an arena's chunks and answers its position.
fn append(chunks: &mut Vec<Vec<u8>>, fp: &Fingerprint, encoding: &[u8]) -> u32 {
    let len = record_len(encoding.len());
    assert!(
        len <= CHUNK,
        "a dossier of {len} bytes does not fit an arena chunk"
    );
    if chunks.last().is_none_or(|c| c.len() + len > CHUNK) {
        assert!(
            chunks.len() < (u32::MAX as usize * UNIT) >> CHUNK_BITS,
            "more than 128 GiB of compacted dossiers in one projection: this build holds about two billion"
        );
        chunks.push(Vec::new());
    }
    let index = chunks.len() - 1;
    let chunk = &mut chunks[index];
    // Grown by a quarter at a time up to the chunk size, so a small projection holds a small
    // arena with at most a fifth of it spare (doubling left up to half of it spare: ~22 bytes
    // per dossier at 16k compacted). The copies this costs are a few bytes per byte held.
    let need = chunk.len() + len;
    if chunk.capacity() < need {
        let target = (chunk.capacity() + chunk.capacity() / 4)
            .max(need)
            .clamp(4096, CHUNK);
        chunk.reserve_exact(target - chunk.len());
    }
    let pos = (index << CHUNK_BITS | chunk.len()) / UNIT;
    put_record(chunk, fp, encoding);
    chunk.resize(chunk.len().next_multiple_of(UNIT), 0);
    pos as u32
}

impl Arena {
    fn find(&self, hash: u64, fp: &Fingerprint) -> Option<u32> {
        let chunks = &self.chunks;
        self.table
            .find(hash, |&pos| record(chunks, pos).0 == fp)
            .copied()
    }

    /// Removes the record of `fp`: its dossier.
    fn take(&mut self, hash: u64, fp: &Fingerprint) -> Option<Dossier> {
        let chunks = &self.chunks;
        let entry = self
            .table
            .find_entry(hash, |&pos| record(chunks, pos).0 == fp)
            .ok()?;
        let (_, encoding) = record(chunks, *entry.get());
        let dossier = Dossier::decode(encoding).expect("the arena holds what encode wrote");
        let len = record_len(encoding.len());
        entry.remove();
        self.live_bytes -= len;
        self.dead_bytes += len;
        Some(dossier)
    }

    fn put(
        &mut self,
        hash: u64,
        fp: &Fingerprint,
        encoding: &[u8],
        rehash: impl Fn(&Fingerprint) -> u64,
    ) {
        let pos = append(&mut self.chunks, fp, encoding);
        let chunks = &self.chunks;
        self.table
            .insert_unique(hash, pos, |&p| rehash(record(chunks, p).0));
        self.live_bytes += record_len(encoding.len());
        self.maybe_rewrite();
    }

    /// Rewrites the chunks without their dead records once those are a fifth of them.
    fn maybe_rewrite(&mut self) {
        if self.dead_bytes < REWRITE_MIN || self.dead_bytes * 4 < self.live_bytes {
            return;
        }
        let old = std::mem::take(&mut self.chunks);
        for pos in self.table.iter_mut() {
            let (fp, encoding) = record(&old, *pos);
            *pos = append(&mut self.chunks, fp, encoding);
        }
        self.dead_bytes = 0;
    }

    fn records(&self) -> impl Iterator<Item = (&Fingerprint, &[u8])> {
        self.table.iter().map(|&pos| record(&self.chunks, pos))
    }
}

impl Dossiers {
    fn hash(&self, fp: &Fingerprint) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(fp)
    }

    /// Dossiers known, open and compacted.
    pub fn len(&self) -> usize {
        self.open.len() + self.compacted()
    }

    pub fn compacted(&self) -> usize {
        self.arenas.iter().map(|a| a.table.len()).sum()
    }

    /// The dossier if it is open (not compacted).
    pub fn open_get(&self, fp: &Fingerprint) -> Option<&Dossier> {
        self.open.get(fp)
    }

    /// The open dossier, taken out of the arena if it was compacted, or made by `create` if it
    /// is new (then `true`): one lookup of the open map.
    pub fn get_or_create(
        &mut self,
        fp: &Fingerprint,
        create: impl FnOnce() -> Dossier,
    ) -> (&mut Dossier, bool) {
        use std::collections::hash_map::Entry;
        let hash = self.hash(fp);
        match self.open.entry(*fp) {
            Entry::Occupied(e) => (e.into_mut(), false),
            Entry::Vacant(v) => match self.arenas[arena_of(hash)].take(hash, fp) {
                Some(dossier) => {
                    self.taken_back += 1;
                    (v.insert(dossier), false)
                }
                None => (v.insert(create()), true),
            },
        }
    }

    /// Moves an open dossier into the arena (nothing if it is not open).
    pub fn compact(&mut self, fp: &Fingerprint) {
        let Some(dossier) = self.open.remove(fp) else {
            return;
        };
        self.put_compacted(fp, &dossier);
    }

    fn put_compacted(&mut self, fp: &Fingerprint, dossier: &Dossier) {
        let mut encoding = std::mem::take(&mut self.scratch);
        encoding.clear();
        dossier.encode(&mut encoding);
        let hash = self.hash(fp);
        let hasher = &self.hasher;
        self.arenas[arena_of(hash)].put(hash, fp, &encoding, |fp| {
            use std::hash::BuildHasher;
            hasher.hash_one(fp)
        });
        self.scratch = encoding;
    }

    /// The dossier's current state, wherever it is held (decoded from the arena if compacted).
    pub fn get(&self, fp: &Fingerprint) -> Option<std::borrow::Cow<'_, Dossier>> {
        if let Some(d) = self.open.get(fp) {
            return Some(std::borrow::Cow::Borrowed(d));
        }
        let hash = self.hash(fp);
        let arena = &self.arenas[arena_of(hash)];
        let pos = arena.find(hash, fp)?;
        let (_, encoding) = record(&arena.chunks, pos);
        Some(std::borrow::Cow::Owned(
            Dossier::decode(encoding).expect("the arena holds what encode wrote"),
        ))
    }

    /// Every dossier, open and compacted, with its fingerprint (in no particular order).
    pub fn for_each(&self, mut f: impl FnMut(&Fingerprint, &Dossier)) {
        for (fp, d) in &self.open {
            f(fp, d);
        }
        for (fp, encoding) in self.arenas.iter().flat_map(Arena::records) {
            f(
                fp,
                &Dossier::decode(encoding).expect("the arena holds what encode wrote"),
            );
        }
    }

    /// Every dossier as (fingerprint, encoding), open ones encoded on the way.
    pub fn for_each_encoded(&self, mut f: impl FnMut(&Fingerprint, &[u8])) {
        let mut scratch = Vec::new();
        for (fp, d) in &self.open {
            scratch.clear();
            d.encode(&mut scratch);
            f(fp, &scratch);
        }
        for (fp, encoding) in self.arenas.iter().flat_map(Arena::records) {
            f(fp, encoding);
        }
    }

    /// Puts a dossier read from a snapshot where it belongs: compacted if `compacted`, open
    /// otherwise. `false` if the dossier was known already (a snapshot listing it twice).
    pub fn restore(&mut self, fp: Fingerprint, dossier: Dossier, compacted: bool) -> bool {
        if self.get(&fp).is_some() {
            return false;
        }
        if compacted {
            self.put_compacted(&fp, &dossier);
        } else {
            self.open.insert(fp, dossier);
        }
        true
    }

    pub fn memory(&self) -> DossierMemory {
        let slot = std::mem::size_of::<(Fingerprint, Dossier)>() + 1;
        let vectors: usize = self
            .open
            .values()
            .map(|d| {
                d.supplement_requested.capacity() * 8
                    + d.supplement_received.capacity() * 16
                    + d.extended.capacity() * 16
            })
            .sum();
        let arenas: usize = self
            .arenas
            .iter()
            .map(|a| a.chunks.iter().map(Vec::capacity).sum::<usize>() + a.table.allocation_size())
            .sum();
        DossierMemory {
            open: self.open.len() as u64,
            open_bytes: (self.open.capacity() * slot + vectors) as u64,
            compacted: self.compacted() as u64,
            compacted_bytes: arenas as u64,
            taken_back: self.taken_back,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dossier(i: u32) -> Dossier {
        Dossier {
            agency: i % 7,
            procedure: i,
            submitted: Some((1_750_000_000 + i as i64, i.is_multiple_of(2))),
            resolved: Some((1_750_100_000 + i as i64, true)),
            latest: 1_750_100_000 + i as i64,
            supplement_requested: if i.is_multiple_of(5) {
                vec![1_750_050_000]
            } else {
                vec![]
            },
            ..Dossier::default()
        }
    }

    #[test]
    fn compacted_dossiers_come_back_unchanged_across_arena_rewrites() {
        let mut d = Dossiers::default();
        let n = 200_000u32;
        for i in 0..n {
            let fp = fingerprint(&format!("D-{i}"));
            let (_, created) = d.get_or_create(&fp, || dossier(i));
            assert!(created);
            d.compact(&fp);
        }
        assert_eq!((d.len(), d.compacted()), (n as usize, n as usize));
        // Take most back out and compact them again: dead space forces rewrites.
        for round in 0..3 {
            for i in (round..n).step_by(2) {
                let fp = fingerprint(&format!("D-{i}"));
                let (got, created) = d.get_or_create(&fp, Dossier::default);
                assert!(!created);
                assert_eq!(*got, dossier(i));
                got.latest += 1;
                got.latest -= 1;
                d.compact(&fp);
            }
        }
        assert!(
            d.arenas.iter().all(|a| a.dead_bytes < a.live_bytes),
            "the arenas were rewritten"
        );
        for i in 0..n {
            let fp = fingerprint(&format!("D-{i}"));
            assert_eq!(d.get(&fp).as_deref(), Some(&dossier(i)));
        }
        assert!(d.get(&fingerprint("D-unknown")).is_none());
        let m = d.memory();
        assert_eq!((m.open, m.compacted), (0, n as u64));
        let mut seen = 0;
        d.for_each(|fp, dossier| {
            seen += 1;
            assert_eq!(d.get(fp).as_deref(), Some(dossier));
        });
        assert_eq!(seen, n);
    }
}
