//! An independent check of an inclusion proof, written from RFC 9162 (section 2.1.3.2, "Verifying
//! an Inclusion Proof") and C2SP tlog-checkpoint alone: nothing of socai's Merkle, proof or
//! checkpoint code is used, only its SHA-256 leaf/node hashing (RFC 6962's domain-separated
//! hashes, `0x00 ‖ leaf` and `0x01 ‖ left ‖ right`).

use socai_chain::{Hash, leaf_hash, node_hash};

/// The root an inclusion path leads to (RFC 9162 2.1.3.2), or `None` when the path does not
/// fit the tree (index out of range, too short or too long).
pub fn root_from_inclusion_path(
    leaf_index: u64,
    tree_size: u64,
    leaf: Hash,
    path: &[Hash],
) -> Option<Hash> {
    if leaf_index >= tree_size {
        return None;
    }
    let (mut fn_, mut sn) = (leaf_index, tree_size - 1);
    let mut r = leaf;
    for p in path {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            // Right-shift both until LSB(fn) is set or fn is 0.
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(r)
}

/// Standard base64 (RFC 4648 section 4, padded) decoding.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            let v = ALPHABET.iter().position(|&a| a == c)? as u32;
            n = (n << 6) | v;
        }
        n <<= 6 * pad as u32;
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

/// The origin, tree size and root of a C2SP checkpoint note (its first three lines); the
/// signature is not checked here.
pub fn checkpoint_body(note: &str) -> Option<(String, u64, Hash)> {
    let mut lines = note.split('\n');
    let origin = lines.next()?.to_owned();
    let size = lines.next()?.parse().ok()?;
    let root: [u8; 32] = base64_decode(lines.next()?)?.try_into().ok()?;
    Some((origin, size, Hash(root)))
}

/// Checks the JSON of an inclusion proof (the auditors' contract: `leaf_index`, `tree_size`,
/// `leaf_hash`, `entry` (base64), `path` (hex), `checkpoint`) independently: the entry hashes to
/// the leaf hash, the path leads from it to the root the checkpoint note states, at the note's
/// size. Returns the checkpoint's (size, root); panics with what does not hold.
pub fn check_inclusion_proof(proof: &serde_json::Value) -> (u64, Hash) {
    let hash = |v: &serde_json::Value| -> Hash {
        let text = v.as_str().expect("a hex hash");
        assert_eq!(text.len(), 64, "{text}");
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        Hash(bytes.try_into().expect("32 bytes"))
    };
    let index = proof["leaf_index"].as_u64().expect("leaf_index");
    let size = proof["tree_size"].as_u64().expect("tree_size");
    let leaf = hash(&proof["leaf_hash"]);
    let entry = base64_decode(proof["entry"].as_str().expect("entry")).expect("base64 entry");
    assert_eq!(
        leaf_hash(&entry),
        leaf,
        "SHA-256(0x00 ‖ entry) is not leaf_hash"
    );
    let path: Vec<Hash> = proof["path"]
        .as_array()
        .expect("path")
        .iter()
        .map(hash)
        .collect();
    let (_, note_size, note_root) =
        checkpoint_body(proof["checkpoint"].as_str().expect("checkpoint")).expect("a note");
    assert_eq!(note_size, size, "the checkpoint's size is not tree_size");
    assert_eq!(
        root_from_inclusion_path(index, size, leaf, &path),
        Some(note_root),
        "the path does not lead to the checkpoint's root"
    );
    (note_size, note_root)
}

/// The Merkle tree hash of `leaves` (RFC 9162 2.1.1: split at the largest power of two smaller
/// than the number of leaves), computed from the definition.
pub fn tree_hash(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash(sha256_empty()),
        1 => leaves[0],
        n => {
            let k = if n.is_power_of_two() {
                n / 2
            } else {
                1 << (usize::BITS - 1 - n.leading_zeros())
            };
            node_hash(&tree_hash(&leaves[..k]), &tree_hash(&leaves[k..]))
        }
    }
}

/// SHA-256 of nothing (the hash of the empty tree).
fn sha256_empty() -> [u8; 32] {
    [
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9,
        0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52,
        0xb8, 0x55,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mth(leaves: &[Hash]) -> Hash {
        if leaves.len() == 1 {
            return leaves[0];
        }
        let mut k = 1;
        while k * 2 < leaves.len() {
            k *= 2;
        }
        node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
    }

    fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        if leaves.len() == 1 {
            return Vec::new();
        }
        let mut k = 1;
        while k * 2 < leaves.len() {
            k *= 2;
        }
        let mut p;
        if m < k {
            p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
        } else {
            p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
        }
        p
    }

    #[test]
    fn paths_of_every_leaf_of_small_trees_lead_to_the_root() {
        for n in 1..40usize {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&[i as u8])).collect();
            let root = mth(&leaves);
            for m in 0..n {
                let p = path(m, &leaves);
                assert_eq!(
                    root_from_inclusion_path(m as u64, n as u64, leaves[m], &p),
                    Some(root),
                    "{m} of {n}"
                );
                // Another leaf, index or size does not.
                assert_ne!(
                    root_from_inclusion_path(m as u64, n as u64, leaf_hash(b"x"), &p),
                    Some(root)
                );
                if n > 1 {
                    assert_ne!(
                        root_from_inclusion_path(((m + 1) % n) as u64, n as u64, leaves[m], &p),
                        Some(root),
                        "{m} of {n}"
                    );
                }
            }
        }
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert!(base64_decode("Zm9=v").is_none());
        assert!(base64_decode("Z=9v").is_none());
    }

    #[test]
    fn tree_hash_splits_at_the_largest_power_of_two_below() {
        let l: Vec<Hash> = (0u8..5).map(|i| leaf_hash(&[i])).collect();
        assert_eq!(tree_hash(&l[..1]), l[0]);
        assert_eq!(tree_hash(&l[..2]), node_hash(&l[0], &l[1]));
        assert_eq!(
            tree_hash(&l[..3]),
            node_hash(&node_hash(&l[0], &l[1]), &l[2])
        );
        assert_eq!(
            tree_hash(&l[..5]),
            node_hash(
                &node_hash(&node_hash(&l[0], &l[1]), &node_hash(&l[2], &l[3])),
                &l[4]
            )
        );
    }
}
