//! Merkle tree: RFC 6962 test vectors, exhaustive proofs for every tree size up to 300, cross-checks
//! against `ct-merkle` and `tlog_tiles`, compact ranges, and single-bit tampering.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use proptest::prelude::*;
use socai_chain::merkle::{
    self, CompactRange, HashReader, MemoryHashes, MerkleError, frontier_indexes, prove_consistency,
    prove_inclusion, stored_hash_index, tree_root, verify_consistency, verify_inclusion,
};
use socai_chain::{Hash, leaf_hash, node_hash};

type CtTree = MemoryBackedTree<sha2_ct::Sha256, Vec<u8>>;

const MAX_SIZE: u64 = 300;

fn h(hex: &str) -> Hash {
    Hash::from_hex(hex).unwrap()
}

/// The leaf inputs of RFC 6962 / Trillian / transparency-dev `testonly`.
fn rfc_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|x| hex::decode(x).unwrap())
    .collect()
}

fn memory_log(leaves: &[Vec<u8>]) -> MemoryHashes {
    let mut m = MemoryHashes::new();
    for leaf in leaves {
        m.push_leaf(leaf_hash(leaf));
    }
    m
}

/// Leaves of the generated trees: distinct small inputs.
fn data(i: u64) -> Vec<u8> {
    format!("leaf {i}").into_bytes()
}

fn big_log() -> (MemoryHashes, Vec<Hash>) {
    let mut m = MemoryHashes::new();
    let mut roots = vec![m.root()];
    for i in 0..MAX_SIZE {
        m.push_leaf(leaf_hash(&data(i)));
        roots.push(m.root());
    }
    (m, roots)
}

// ---- RFC 6962 test vectors ----

#[test]
fn rfc6962_roots() {
    let leaves = rfc_leaves();
    let check = |size: usize, expected: &str| {
        let m = memory_log(&leaves[..size]);
        assert_eq!(m.root(), h(expected), "root of size {size}");
        assert_eq!(
            tree_root(size as u64, &memory_log(&leaves)).unwrap(),
            h(expected),
            "prefix root of size {size}"
        );
    };
    check(
        0,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    check(
        1,
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    );
    check(
        2,
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    );
    check(
        3,
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    );
    check(
        4,
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    );
    check(
        5,
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    );
    check(
        6,
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    );
    check(
        7,
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    );
    check(
        8,
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    );
}

#[test]
fn rfc6962_node_hashes() {
    let m = memory_log(&rfc_leaves());
    let check = |level: u8, n: u64, expected: &str| {
        let got = m.read_hashes(&[stored_hash_index(level, n)]).unwrap();
        assert_eq!(got, vec![h(expected)], "node ({level}, {n})");
    };
    check(
        0,
        1,
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    );
    check(
        0,
        7,
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    );
    check(
        1,
        1,
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    );
    check(
        1,
        3,
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    );
    check(
        2,
        1,
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    );
    check(
        3,
        0,
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    );
}

/// Known proofs from transparency-dev/merkle `proof/verify_test.go` (0-based leaf index here).
#[test]
fn rfc6962_inclusion_proofs() {
    let leaves = rfc_leaves();
    let m = memory_log(&leaves);
    let check = |index: u64, size: u64, path: &[&str]| {
        let path: Vec<Hash> = path.iter().map(|x| h(x)).collect();
        let sub = memory_log(&leaves[..size as usize]);
        assert_eq!(
            prove_inclusion(size, index, &m).unwrap(),
            path,
            "prove leaf {index} size {size}"
        );
        let (leaf, root) = (leaf_hash(&leaves[index as usize]), sub.root());
        verify_inclusion(&leaf, index, size, &path, &root).unwrap();
        for (desc, bad) in corrupt_inclusion(index, size, &path, &leaf, &root) {
            let (i, n, p, l, r) = bad;
            assert!(
                verify_inclusion(&l, i, n, &p, &r).is_err(),
                "leaf {index} size {size}: {desc} verified"
            );
        }
    };
    check(0, 1, &[]);
    check(
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    );
    check(
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    );
    check(
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    );
    check(
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    );
}

type InclusionProbe = (u64, u64, Vec<Hash>, Hash, Hash);

/// The corruptions of transparency-dev's `corruptInclusionProof`.
fn corrupt_inclusion(
    index: u64,
    size: u64,
    path: &[Hash],
    leaf: &Hash,
    root: &Hash,
) -> Vec<(String, InclusionProbe)> {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    let p = path.to_vec();
    let with = |extra: Vec<Hash>, front: bool| -> Vec<Hash> {
        if front {
            extra.into_iter().chain(p.clone()).collect()
        } else {
            p.iter().copied().chain(extra).collect()
        }
    };
    let mut out: Vec<(String, InclusionProbe)> = vec![
        (
            "index - 1".into(),
            (index.wrapping_sub(1), size, p.clone(), *leaf, *root),
        ),
        (
            "index + 1".into(),
            (index + 1, size, p.clone(), *leaf, *root),
        ),
        (
            "index ^ 2".into(),
            (index ^ 2, size, p.clone(), *leaf, *root),
        ),
        (
            "size * 2".into(),
            (index, size * 2, p.clone(), *leaf, *root),
        ),
        (
            "size / 2".into(),
            (index, size / 2, p.clone(), *leaf, *root),
        ),
        (
            "wrong leaf".into(),
            (index, size, p.clone(), leaf_hash(b"WrongLeaf"), *root),
        ),
        ("random root".into(), (index, size, p.clone(), *leaf, some)),
        (
            "trailing root".into(),
            (index, size, with(vec![*root], false), *leaf, *root),
        ),
        (
            "preceding root".into(),
            (index, size, with(vec![*root], true), *leaf, *root),
        ),
    ];
    for i in 0..p.len() {
        let mut bad = p.clone();
        bad[i].0[0] ^= 8;
        out.push((
            format!("modified path[{i}]"),
            (index, size, bad, *leaf, *root),
        ));
    }
    if !p.is_empty() {
        out.push((
            "removed component".into(),
            (index, size, p[..p.len() - 1].to_vec(), *leaf, *root),
        ));
    }
    out
}

/// (description, old size, new size, old root, new root, path)
type ConsistencyProbe = (&'static str, u64, u64, Hash, Hash, Vec<Hash>);

#[test]
fn rfc6962_consistency_proofs() {
    let leaves = rfc_leaves();
    let m = memory_log(&leaves);
    let root = |n: usize| memory_log(&leaves[..n]).root();
    let check = |old: u64, new: u64, path: &[&str]| {
        let path: Vec<Hash> = path.iter().map(|x| h(x)).collect();
        assert_eq!(
            prove_consistency(old, new, &m).unwrap(),
            path,
            "prove {old} -> {new}"
        );
        let (r1, r2) = (root(old as usize), root(new as usize));
        verify_consistency(old, new, &r1, &r2, &path).unwrap();
        if path.is_empty() {
            return;
        }
        let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
        let mut probes: Vec<ConsistencyProbe> = vec![
            ("old - 1", old - 1, new, r1, r2, path.clone()),
            ("old + 1", old + 1, new, r1, r2, path.clone()),
            ("old ^ 2", old ^ 2, new, r1, r2, path.clone()),
            ("new * 2", old, new * 2, r1, r2, path.clone()),
            ("new / 2", old, new / 2, r1, r2, path.clone()),
            ("wrong old root", old, new, some, r2, path.clone()),
            ("wrong new root", old, new, r1, some, path.clone()),
            ("swapped roots", old, new, r2, r1, path.clone()),
            ("empty path", old, new, r1, r2, vec![]),
            (
                "truncated",
                old,
                new,
                r1,
                r2,
                path[..path.len() - 1].to_vec(),
            ),
            (
                "trailing old root",
                old,
                new,
                r1,
                r2,
                [path.clone(), vec![r1]].concat(),
            ),
            (
                "trailing new root",
                old,
                new,
                r1,
                r2,
                [path.clone(), vec![r2]].concat(),
            ),
            (
                "preceding old root",
                old,
                new,
                r1,
                r2,
                [vec![r1], path.clone()].concat(),
            ),
            (
                "preceding new root",
                old,
                new,
                r1,
                r2,
                [vec![r2], path.clone()].concat(),
            ),
            (
                "preceding path[0]",
                old,
                new,
                r1,
                r2,
                [vec![path[0]], path.clone()].concat(),
            ),
        ];
        for i in 0..path.len() {
            let mut bad = path.clone();
            bad[i].0[0] ^= 16;
            probes.push(("modified component", old, new, r1, r2, bad));
        }
        for (desc, o, n, a, b, p) in probes {
            assert!(
                verify_consistency(o, n, &a, &b, &p).is_err(),
                "{old} -> {new}: {desc} verified"
            );
        }
    };
    check(1, 1, &[]);
    check(
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    );
    check(
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    );
    check(
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    );
    check(
        6,
        7,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    );
}

#[test]
fn edge_sizes_are_rejected() {
    let m = memory_log(&rfc_leaves());
    let (a, b) = (m.root(), m.root());
    assert_eq!(
        prove_inclusion(8, 8, &m),
        Err(MerkleError::OutOfRange {
            index: 8,
            tree_size: 8
        })
    );
    assert_eq!(
        prove_inclusion(0, 0, &m),
        Err(MerkleError::OutOfRange {
            index: 0,
            tree_size: 0
        })
    );
    assert_eq!(
        prove_consistency(0, 8, &m),
        Err(MerkleError::BadSizes {
            old_size: 0,
            new_size: 8
        })
    );
    assert_eq!(
        prove_consistency(5, 4, &m),
        Err(MerkleError::BadSizes {
            old_size: 5,
            new_size: 4
        })
    );
    assert!(verify_inclusion(&a, 0, 0, &[], &b).is_err());
    assert!(verify_consistency(0, 0, &a, &b, &[]).is_err());
    assert!(verify_consistency(2, 1, &a, &b, &[]).is_err());
    // Equal sizes: empty path and equal roots only.
    verify_consistency(3, 3, &a, &b, &[]).unwrap();
    assert!(verify_consistency(3, 3, &a, &leaf_hash(b""), &[]).is_err());
    assert!(verify_consistency(3, 3, &a, &b, &[a]).is_err());
    // Reading beyond the stored hashes is a read error, not a panic.
    assert!(matches!(tree_root(9, &m), Err(MerkleError::Read(_))));
    assert!(matches!(
        prove_inclusion(20, 3, &m),
        Err(MerkleError::Read(_))
    ));
}

/// A reader that answers with too few hashes must produce an error, never a panic in tlog_tiles.
#[test]
fn short_reader_is_an_error() {
    struct Short;
    impl HashReader for Short {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
            Ok(vec![Hash::ZERO; indexes.len().saturating_sub(1)])
        }
    }
    assert!(matches!(tree_root(5, &Short), Err(MerkleError::Read(_))));
    assert!(matches!(
        prove_inclusion(5, 1, &Short),
        Err(MerkleError::Read(_))
    ));
    assert!(matches!(
        merkle::stored_hashes_for_leaf(3, Hash::ZERO, &Short),
        Err(MerkleError::Read(_))
    ));
}

// ---- every size up to 300: our proofs, ct-merkle's and tlog_tiles' agree ----

#[test]
fn all_sizes_roots_and_proofs_match_ct_merkle() {
    let (m, roots) = big_log();
    let mut ct = CtTree::new();
    let mut range = CompactRange::new();
    let mut grown = MemoryHashes::new();
    for n in 1..=MAX_SIZE {
        ct.push(data(n - 1));
        range.push(leaf_hash(&data(n - 1)));
        grown.push_leaf(leaf_hash(&data(n - 1)));
        let root = roots[n as usize];
        assert_eq!(
            ct.root().as_bytes().as_slice(),
            root.0,
            "ct-merkle root of size {n}"
        );
        assert_eq!(tree_root(n, &m).unwrap(), root, "prefix root of size {n}");
        assert_eq!(range.root(), root, "compact range root of size {n}");
        assert_eq!(
            merkle::stored_hash_count(n),
            grown.hashes.len() as u64,
            "stored hash count {n}"
        );

        for i in 0..n {
            let path = prove_inclusion(n, i, &m).unwrap();
            let leaf = leaf_hash(&data(i));
            verify_inclusion(&leaf, i, n, &path, &root).unwrap();
            // RFC 6962 audit path order: bottom-up, byte-identical to ct-merkle's.
            assert_eq!(
                ct.prove_inclusion(i as usize).as_bytes(),
                concat(&path),
                "ct-merkle path {i} in {n}"
            );
            let tlog_path: Vec<tlog_tiles::Hash> =
                path.iter().map(|h| tlog_tiles::Hash(h.0)).collect();
            tlog_tiles::check_record(
                &tlog_path,
                n,
                tlog_tiles::Hash(root.0),
                i,
                tlog_tiles::Hash(leaf.0),
            )
            .unwrap();
        }
        for old in 1..=n {
            let path = prove_consistency(old, n, &m).unwrap();
            verify_consistency(old, n, &roots[old as usize], &root, &path).unwrap();
            if old < n {
                let ct_path = ct.prove_consistency((n - old) as usize);
                assert_eq!(
                    ct_path.as_bytes(),
                    concat(&path),
                    "ct-merkle consistency {old} -> {n}"
                );
            }
            let tlog_path: Vec<tlog_tiles::Hash> =
                path.iter().map(|h| tlog_tiles::Hash(h.0)).collect();
            let (r_old, r_new) = (
                tlog_tiles::Hash(roots[old as usize].0),
                tlog_tiles::Hash(root.0),
            );
            tlog_tiles::check_tree(&tlog_path, n, r_new, old, r_old).unwrap();
        }
    }
}

fn concat(path: &[Hash]) -> Vec<u8> {
    path.iter().flat_map(|h| h.0).collect()
}

// ---- compact ranges ----

#[test]
fn compact_range_from_frontier_and_subtrees() {
    let (m, roots) = big_log();
    for from in 0..=MAX_SIZE {
        let indexes = frontier_indexes(from);
        assert_eq!(
            indexes,
            tlog_tiles::sub_tree_index(0, from, vec![]),
            "frontier indexes of {from}"
        );
        let frontier = m.read_hashes(&indexes).unwrap();
        let mut range = CompactRange::from_frontier(from, frontier.clone()).unwrap();
        assert_eq!(
            range.root(),
            roots[from as usize],
            "frontier root of {from}"
        );
        // Resume and extend to a few later sizes.
        for i in from..(from + 5).min(MAX_SIZE) {
            range.push(leaf_hash(&data(i)));
            assert_eq!(range.root(), roots[i as usize + 1]);
        }
        if from > 0 {
            assert!(matches!(
                CompactRange::from_frontier(from, frontier[1..].to_vec()),
                Err(MerkleError::BadFrontier { .. })
            ));
        }
    }
}

#[test]
fn push_subtree_merges_ranges() {
    let (m, roots) = big_log();
    // 0..128 as leaves, then 128..192 as one subtree of level 6, then 192..200 as level 3.
    let mut range = CompactRange::new();
    for i in 0..128 {
        range.push(leaf_hash(&data(i)));
    }
    let subtree = |level: u8, n: u64| m.read_hashes(&[stored_hash_index(level, n)]).unwrap()[0];
    range.push_subtree(6, subtree(6, 2)).unwrap();
    assert_eq!((range.size(), range.root()), (192, roots[192]));
    range.push_subtree(3, subtree(3, 24)).unwrap();
    assert_eq!((range.size(), range.root()), (200, roots[200]));
    assert_eq!(
        range.push_subtree(4, Hash::ZERO),
        Err(MerkleError::Misaligned {
            size: 200,
            level: 4
        })
    );
    assert_eq!(
        range.push_subtree(64, Hash::ZERO),
        Err(MerkleError::Misaligned {
            size: 200,
            level: 64
        })
    );
    assert_eq!(range.frontier().len(), 200u64.count_ones() as usize);
    // Two halves hashed apart then joined give the whole.
    let mut left = CompactRange::new();
    let mut right = CompactRange::new();
    for i in 0..64 {
        left.push(leaf_hash(&data(i)));
        right.push(leaf_hash(&data(64 + i)));
    }
    left.push_subtree(6, right.root()).unwrap();
    assert_eq!(left.root(), roots[128]);
    assert_eq!(CompactRange::new().root(), roots[0]);
    assert_eq!(node_hash(&subtree(6, 0), &subtree(6, 1)), subtree(7, 0));
}

// ---- single-bit tampering ----

fn flip(path: &mut [Hash], bit: usize) {
    path[bit / 256].0[bit % 256 / 8] ^= 1 << (bit % 8);
}

proptest! {
    #[test]
    fn flipped_inclusion_bit_fails(n in 2..=MAX_SIZE, i in any::<prop::sample::Index>(), bit in any::<prop::sample::Index>()) {
        let m = memory_log(&(0..n).map(data).collect::<Vec<_>>());
        let index = i.index(n as usize) as u64;
        let mut path = prove_inclusion(n, index, &m).unwrap();
        let bit = bit.index(path.len() * 256);
        flip(&mut path, bit);
        prop_assert!(verify_inclusion(&leaf_hash(&data(index)), index, n, &path, &m.root()).is_err());
    }

    #[test]
    fn flipped_consistency_bit_fails(n in 3..=MAX_SIZE, old in any::<prop::sample::Index>(), bit in any::<prop::sample::Index>()) {
        let m = memory_log(&(0..n).map(data).collect::<Vec<_>>());
        let old = 1 + old.index(n as usize - 2) as u64;
        let mut path = prove_consistency(old, n, &m).unwrap();
        let bit = bit.index(path.len() * 256);
        flip(&mut path, bit);
        let old_root = tree_root(old, &m).unwrap();
        prop_assert!(verify_consistency(old, n, &old_root, &m.root(), &path).is_err());
    }
}

#[test]
fn push_stored_yields_exactly_the_stored_hashes() {
    let mut range = CompactRange::new();
    let mut stored = Vec::new();
    let mut mem = MemoryHashes::new();
    for i in 0..=MAX_SIZE {
        let leaf = leaf_hash(&data(i));
        let expected = merkle::stored_hashes_for_leaf(i, leaf, &mem).unwrap();
        let before = stored.len();
        range.push_stored(leaf, &mut stored);
        assert_eq!(&stored[before..], &expected[..], "leaf {i}");
        mem.push_leaf(leaf);
        assert_eq!(stored, mem.hashes, "after leaf {i}");
        assert_eq!(range.root(), mem.root());
    }
}

#[test]
fn leaf_tree_gives_the_stored_trees_root_and_every_path() {
    let (log, roots) = big_log();
    assert_eq!(merkle::LeafTree::new(Vec::new()).root(), roots[0]);
    for n in 1..=MAX_SIZE {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&data(i))).collect();
        let tree = merkle::LeafTree::new(leaves.clone());
        assert_eq!(tree.size(), n);
        assert_eq!(tree.root(), roots[n as usize], "root of {n}");
        for i in 0..n {
            let path = tree.path(i).unwrap();
            assert_eq!(
                path,
                prove_inclusion(n, i, &log).unwrap(),
                "path of leaf {i} in {n}"
            );
            verify_inclusion(&leaves[i as usize], i, n, &path, &tree.root()).unwrap();
        }
        assert!(matches!(
            tree.path(n),
            Err(MerkleError::OutOfRange { index, tree_size }) if index == n && tree_size == n
        ));
    }
}
