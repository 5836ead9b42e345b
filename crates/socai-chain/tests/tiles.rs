//! C2SP tlog-tiles: tiles read from the stored-hash array match the tree they describe, and a
//! log verified from its tiles alone passes honest tiles and names every tampered one.

mod common;

use common::Log;
use socai_chain::merkle::tree_root;
use socai_chain::tiles::{
    Tile, TileKind, TiledError, TiledVerifier, hash_tile, push_bundle_entry, subtree_hash,
};
use socai_chain::{Hash, node_hash};
use std::collections::BTreeMap;

/// RFC 6962 MTH over leaf hashes, the slow way (the reference).
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => socai_chain::hash::sha256(b""),
        1 => leaves[0],
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

fn leaves(log: &Log) -> Vec<Hash> {
    log.entries
        .iter()
        .map(|e| socai_chain::leaf_hash(e))
        .collect()
}

#[test]
fn subtree_hash_is_rfc6962_mth() {
    let log = Log::new(300);
    let l = leaves(&log);
    for n in [0, 1, 2, 3, 5, 8, 255, 256, 257, 300] {
        assert_eq!(subtree_hash(&l[..n]), mth(&l[..n]), "n = {n}");
    }
}

/// Serves the tiles of `log` at `size` as a tlog-tiles server would.
fn serve(log: &Log, tile: &Tile) -> Vec<u8> {
    match tile.kind {
        TileKind::Hashes { .. } => hash_tile(tile, &log.hashes).expect("hash tile"),
        TileKind::Entries => {
            let first = tile.first_leaf();
            let mut b = Vec::new();
            for seq in first..first + tile.width {
                push_bundle_entry(&mut b, seq, &log.entries[seq as usize]).unwrap();
            }
            b
        }
    }
}

fn verify(
    log: &Log,
    size: u64,
    pinned: BTreeMap<u64, Hash>,
    tamper: impl Fn(&Tile, &mut Vec<u8>),
) -> Result<u64, TiledError> {
    let root = tree_root(size, &log.hashes).unwrap();
    let mut v = TiledVerifier::new(size, root, pinned);
    for bundle in v.bundles() {
        let mut entries = serve(log, &bundle);
        tamper(&bundle, &mut entries);
        let level0 = Tile {
            kind: TileKind::Hashes { level: 0 },
            ..bundle
        };
        let mut hashes = serve(log, &level0);
        tamper(&level0, &mut hashes);
        v.push_bundle(&bundle, &entries, &hashes)?;
    }
    for tile in v.hash_tiles() {
        let mut bytes = serve(log, &tile);
        tamper(&tile, &mut bytes);
        v.check_hash_tile(&tile, &bytes)?;
    }
    Ok(v.finish()?.tiles_checked)
}

#[test]
fn hash_tiles_hold_the_tree_hashes_the_spec_defines() {
    // Level-1 hashes: MTH of each 256 leaves.
    let log = Log::new(70_000);
    let l = leaves(&log);
    let tile = Tile {
        kind: TileKind::Hashes { level: 1 },
        index: 0,
        width: 5,
    };
    let bytes = hash_tile(&tile, &log.hashes).unwrap();
    for i in 0..5 {
        assert_eq!(
            &bytes[i * 32..i * 32 + 32],
            &mth(&l[i * 256..(i + 1) * 256]).0,
            "level-1 hash {i}"
        );
    }
    let level2 = Tile {
        kind: TileKind::Hashes { level: 2 },
        index: 0,
        width: 1,
    };
    assert_eq!(
        hash_tile(&level2, &log.hashes).unwrap(),
        mth(&l[..65_536]).0.to_vec()
    );
}

#[test]
fn honest_tiles_verify_at_every_kind_of_size() {
    let log = Log::new(70_000);
    for size in [1, 255, 256, 257, 512, 65_535, 65_536, 70_000] {
        let checked = verify(&log, size, BTreeMap::new(), |_, _| {}).unwrap();
        assert!(checked > 0, "size {size}");
    }
    // Pinned checkpoints inside and at the edge of bundles.
    let pinned: BTreeMap<u64, Hash> = [100, 256, 70_000]
        .into_iter()
        .map(|s| (s, tree_root(s, &log.hashes).unwrap()))
        .collect();
    verify(&log, 70_000, pinned, |_, _| {}).unwrap();
}

#[test]
fn every_tampered_tile_is_named() {
    let log = Log::new(66_000);
    let size = 66_000;
    // One byte of entry 768 (first of bundle 3): it still decodes, so the next entry's link to it
    // fails (ChainError's rule: a modified entry that decodes shows at n + 1).
    let err = verify(&log, size, BTreeMap::new(), |t, b| {
        if t.kind == TileKind::Entries && t.index == 3 {
            b[40] ^= 1;
        }
    })
    .unwrap_err();
    assert_eq!(err.seq(), Some(769), "{err}");
    // A level-0 hash that is not the entry's.
    let err = verify(&log, size, BTreeMap::new(), |t, b| {
        if t.kind == (TileKind::Hashes { level: 0 }) && t.index == 7 {
            b[32 * 9] ^= 1;
        }
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("tile/0/007: hash 9 (entry 1801)"),
        "{err}"
    );
    // A level-1 hash.
    let err = verify(&log, size, BTreeMap::new(), |t, b| {
        if t.kind == (TileKind::Hashes { level: 1 }) && t.index == 0 {
            b[0] ^= 1;
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("tile/1/000: hash 0"), "{err}");
    // A level-2 tile.
    let err = verify(&log, size, BTreeMap::new(), |t, b| {
        if t.kind == (TileKind::Hashes { level: 2 }) {
            b[31] ^= 1;
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("tile/2/000.p/1"), "{err}");
    // A bundle short of one entry.
    let err = verify(&log, size, BTreeMap::new(), |t, b| {
        if t.kind == TileKind::Entries && t.index == 0 {
            let first = u16::from_be_bytes([b[0], b[1]]) as usize;
            b.drain(..2 + first);
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("holds 255 entries"), "{err}");
    // A pinned checkpoint the log does not match (a fork).
    let mut pinned = BTreeMap::new();
    pinned.insert(1000, Hash([7; 32]));
    let err = verify(&log, size, pinned, |_, _| {}).unwrap_err();
    assert_eq!(err.seq(), Some(1000), "{err}");
    // Another root than the signed one.
    let root = tree_root(size - 1, &log.hashes).unwrap();
    let mut v = TiledVerifier::new(size, root, BTreeMap::new());
    for bundle in v.bundles() {
        let level0 = Tile {
            kind: TileKind::Hashes { level: 0 },
            ..bundle
        };
        v.push_bundle(&bundle, &serve(&log, &bundle), &serve(&log, &level0))
            .unwrap();
    }
    assert!(matches!(v.finish(), Err(TiledError::Chain(_))));
}
