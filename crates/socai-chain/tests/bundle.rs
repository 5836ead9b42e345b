//! Export bundles and proof objects, built from an in-memory log and checked end to end.

mod common;

use common::{Log, ORIGIN, SALT_KEY, personal, signer};
use proptest::prelude::*;
use socai_chain::bundle::{BUNDLE_FORMAT, Bundle, BundleError, PersonalDisclosure};
use socai_chain::checkpoint::{Checkpoint, CheckpointError, CheckpointVerifier};
use socai_chain::entry::{Entry, personal_salt};
use socai_chain::merkle::{
    HashReader, MerkleError, frontier_indexes, prove_consistency, prove_inclusion, tree_root,
};
use socai_chain::proof::ProofError;
use socai_chain::verify::ChainErrorKind;
use socai_chain::{ChainError, ConsistencyProof, Hash, InclusionProof, leaf_hash};

const N: u64 = 37;

fn log() -> Log {
    Log::new(N)
}

fn signed_note(log: &Log, size: u64) -> String {
    let root = tree_root(size, &log.hashes).unwrap();
    signer()
        .sign(&Checkpoint {
            origin: ORIGIN.into(),
            size,
            root,
        })
        .unwrap()
        .note
}

/// The bundle of `[from, to)` against the checkpoint of `tree_size`, as the exporter builds it.
fn bundle(log: &Log, from: u64, to: u64, tree_size: u64) -> Bundle {
    let consistency = if to == tree_size || to == 0 {
        vec![]
    } else {
        prove_consistency(to, tree_size, &log.hashes).unwrap()
    };
    let personal = (from..to)
        .filter_map(|seq| {
            let id = Entry::decode(&log.entries[seq as usize])
                .unwrap()
                .event_id()
                .to_owned();
            personal(seq).map(|p| PersonalDisclosure {
                seq,
                salt: hex::encode(personal_salt(SALT_KEY, &id)),
                personal: p,
            })
        })
        .collect();
    Bundle {
        format: BUNDLE_FORMAT.into(),
        vkey: signer().vkey(),
        checkpoint: signed_note(log, tree_size),
        tree_size,
        from,
        to,
        frontier: log.hashes.read_hashes(&frontier_indexes(from)).unwrap(),
        entries: log.entries[from as usize..to as usize].to_vec(),
        consistency,
        personal,
    }
}

fn trusted() -> CheckpointVerifier {
    CheckpointVerifier::from_vkey(&signer().vkey()).unwrap()
}

#[test]
fn every_range_verifies() {
    let log = log();
    let v = trusted();
    for tree_size in [1, 2, 8, 13, N] {
        for from in 0..=tree_size {
            for to in from..=tree_size {
                let b = bundle(&log, from, to, tree_size);
                let report = b
                    .verify(Some(&v))
                    .unwrap_or_else(|e| panic!("[{from}, {to}) of {tree_size}: {e}"));
                assert_eq!(
                    (report.from, report.to, report.tree_size),
                    (from, to, tree_size)
                );
                assert_eq!(report.root, tree_root(tree_size, &log.hashes).unwrap());
                assert_eq!(report.personal_checked, b.personal.len());
                assert!(report.key_trusted);
            }
        }
    }
    let report = bundle(&log, 3, 20, N).verify(None).unwrap();
    assert!(!report.key_trusted);
    assert_eq!(
        (report.key_name.as_str(), report.key_id),
        (ORIGIN, format!("{:08x}", signer().key_id()))
    );
}

#[test]
fn json_round_trip() {
    let b = bundle(&log(), 5, 12, N);
    let text = serde_json::to_string(&b).unwrap();
    assert!(
        text.contains(&format!(
            "\"entries\":[\"{}",
            &base64_of(&b.entries[0])[..20]
        )),
        "{text}"
    );
    let back: Bundle = serde_json::from_str(&text).unwrap();
    assert_eq!(back, b);
    back.verify(Some(&trusted())).unwrap();
    let broken = text.replacen("\"entries\":[\"", "\"entries\":[\"!", 1);
    assert!(
        serde_json::from_str::<Bundle>(&broken)
            .unwrap_err()
            .to_string()
            .contains("invalid base64")
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn tampering_is_caught() {
    let log = log();
    let v = trusted();
    let good = bundle(&log, 10, 25, N);
    good.verify(Some(&v)).unwrap();
    let check = |edit: &dyn Fn(&mut Bundle), expected: &dyn Fn(&BundleError) -> bool| {
        let mut b = good.clone();
        edit(&mut b);
        let err = b.verify(Some(&v)).unwrap_err();
        assert!(expected(&err), "unexpected error: {err}");
    };
    let merkle = |e: &BundleError| matches!(e, BundleError::Proof(ProofError::Merkle(_)));

    check(&|b| b.format = "other/1".into(), &|e| {
        matches!(e, BundleError::Format(_))
    });
    check(&|b| b.tree_size = N - 1, &|e| {
        matches!(
            e,
            BundleError::SizeMismatch {
                claimed: 36,
                signed: 37
            }
        )
    });
    check(&|b| b.to = N + 1, &|e| {
        matches!(
            e,
            BundleError::SizeMismatch { .. } | BundleError::Range { .. }
        )
    });
    check(&|b| b.from = 26, &|e| {
        matches!(
            e,
            BundleError::Range {
                from: 26,
                to: 25,
                ..
            }
        )
    });
    check(&|b| drop(b.entries.pop()), &|e| {
        matches!(e, BundleError::EntryCount { found: 14, .. })
    });
    check(&|b| b.frontier.truncate(b.frontier.len() - 1), &|e| {
        matches!(
            e,
            BundleError::Proof(ProofError::Merkle(MerkleError::BadFrontier { .. }))
        )
    });
    check(&|b| b.frontier[0].0[0] ^= 1, &merkle);
    check(&|b| b.consistency[1].0[31] ^= 0x80, &merkle);
    check(&|b| b.consistency.push(Hash::ZERO), &merkle);
    check(
        &|b| b.checkpoint = b.checkpoint.replacen("\n37\n", "\n38\n", 1),
        &|e| {
            matches!(
                e,
                BundleError::Checkpoint(CheckpointError::BadSignature { .. })
            )
        },
    );
    // A changed fact in the last entry of the range: no link breaks, the consistency proof does.
    check(
        &|b| {
            let last = b.entries.len() - 1;
            b.entries[last] = String::from_utf8(b.entries[last].clone())
                .unwrap()
                .replacen("online", "offline", 1)
                .into_bytes();
        },
        &merkle,
    );
    // A changed fact in the middle breaks the next link.
    check(
        &|b| {
            b.entries[3] = String::from_utf8(b.entries[3].clone())
                .unwrap()
                .replacen("online", "offline", 1)
                .into_bytes()
        },
        &|e| {
            matches!(
                e,
                BundleError::Chain(ChainError {
                    seq: 14,
                    kind: ChainErrorKind::PrevMismatch { .. }
                })
            )
        },
    );
    // Swapped entries.
    check(&|b| b.entries.swap(0, 1), &|e| {
        matches!(e, BundleError::Chain(ChainError { seq: 10, .. }))
    });
    // Personal data: changed, wrong salt, out of range, or for an entry without a commitment.
    check(
        &|b| b.personal[0].personal["name"] = "someone else".into(),
        &|e| {
            matches!(
                e,
                BundleError::Chain(ChainError {
                    kind: ChainErrorKind::PersonalMismatch,
                    ..
                })
            )
        },
    );
    check(&|b| b.personal[0].salt = "00".repeat(16), &|e| {
        matches!(
            e,
            BundleError::Chain(ChainError {
                kind: ChainErrorKind::PersonalMismatch,
                ..
            })
        )
    });
    check(&|b| b.personal[0].salt = "zz".into(), &|e| {
        matches!(e, BundleError::Personal { .. })
    });
    check(&|b| b.personal[0].seq = 9, &|e| {
        matches!(e, BundleError::Personal { seq: 9, .. })
    });
    check(&|b| b.personal[0].seq = 11, &|e| {
        matches!(e, BundleError::Personal { seq: 11, .. })
    });
    // A bundle signed by someone else, checked with the trusted key; and its own key is not ours.
    let mut foreign = good.clone();
    let (other, _, other_vkey) = socai_chain::CheckpointSigner::generate(ORIGIN).unwrap();
    let root = tree_root(N, &log.hashes).unwrap();
    foreign.checkpoint = other
        .sign(&Checkpoint {
            origin: ORIGIN.into(),
            size: N,
            root,
        })
        .unwrap()
        .note;
    foreign.vkey = other_vkey;
    assert!(matches!(
        foreign.verify(Some(&v)),
        Err(BundleError::Checkpoint(
            CheckpointError::NotSignedByKey { .. }
        ))
    ));
    assert!(!foreign.verify(None).unwrap().key_trusted);
}

#[test]
fn start_of_log_needs_zero_prev() {
    let log = log();
    let mut b = bundle(&log, 0, 5, N);
    // Rewrite entry 0 with a non-zero prev and re-chain: only the zero-prev rule catches it at 0.
    let mut prev = Hash([9; 32]);
    for seq in 0..5 {
        let bytes = common::entry(seq, prev).to_canonical();
        prev = leaf_hash(&bytes);
        b.entries[seq as usize] = bytes;
    }
    let err = b.verify(Some(&trusted())).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::Chain(ChainError {
                seq: 0,
                kind: ChainErrorKind::PrevMismatch { .. }
            })
        ),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any flipped bit in any entry, frontier hash, consistency hash or the checkpoint fails.
    #[test]
    fn any_flipped_bit_fails(part in 0..4usize, pick in any::<prop::sample::Index>(), bit in any::<prop::sample::Index>()) {
        let log = log();
        let mut b = bundle(&log, 13, 29, N);
        match part {
            0 => {
                let e = pick.get_mut(&mut b.entries);
                let bit = bit.index(e.len() * 8);
                e[bit / 8] ^= 1 << (bit % 8);
            }
            1 => pick.get_mut(&mut b.frontier).0[bit.index(32)] ^= 1 << (bit.index(256) % 8),
            2 => pick.get_mut(&mut b.consistency).0[bit.index(32)] ^= 1 << (bit.index(256) % 8),
            _ => {
                let mut bytes = b.checkpoint.clone().into_bytes();
                let bit = bit.index(bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
                match String::from_utf8(bytes) {
                    Ok(text) => b.checkpoint = text,
                    Err(_) => return Ok(()),
                }
            }
        }
        prop_assert!(b.verify(Some(&trusted())).is_err());
    }
}

// ---- proof objects ----

fn inclusion(log: &Log, seq: u64, tree_size: u64) -> InclusionProof {
    let entry = log.entries[seq as usize].clone();
    InclusionProof {
        leaf_index: seq,
        tree_size,
        leaf_hash: leaf_hash(&entry),
        entry,
        path: prove_inclusion(tree_size, seq, &log.hashes).unwrap(),
        checkpoint: signed_note(log, tree_size),
    }
}

#[test]
fn inclusion_proof_object() {
    let log = log();
    let v = trusted();
    for tree_size in [1, 5, N] {
        for seq in 0..tree_size {
            let p = inclusion(&log, seq, tree_size);
            let (entry, signed) = p.verify(&v).unwrap();
            assert_eq!((entry.seq, signed.checkpoint.size), (seq, tree_size));
        }
    }
    let good = inclusion(&log, 6, N);
    let json = serde_json::to_value(&good).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "checkpoint",
            "entry",
            "leaf_hash",
            "leaf_index",
            "path",
            "tree_size"
        ]
    );
    assert_eq!(json["entry"], base64_of(&good.entry));
    assert_eq!(json["path"][0], good.path[0].to_hex());
    assert_eq!(
        serde_json::from_value::<InclusionProof>(json).unwrap(),
        good
    );

    let check = |edit: &dyn Fn(&mut InclusionProof), expected: &dyn Fn(&ProofError) -> bool| {
        let mut p = good.clone();
        edit(&mut p);
        let err = p.verify(&v).unwrap_err();
        assert!(expected(&err), "unexpected error: {err}");
    };
    check(&|p| p.leaf_hash.0[0] ^= 1, &|e| {
        matches!(e, ProofError::LeafHash { .. })
    });
    check(&|p| p.entry[20] ^= 1, &|e| {
        matches!(e, ProofError::Entry(_) | ProofError::LeafHash { .. })
    });
    check(&|p| p.entry.push(b' '), &|e| {
        matches!(e, ProofError::Entry(_))
    });
    check(&|p| p.leaf_index = 7, &|e| {
        matches!(
            e,
            ProofError::SeqMismatch {
                seq: 6,
                leaf_index: 7
            }
        )
    });
    check(&|p| p.tree_size = N - 1, &|e| {
        matches!(
            e,
            ProofError::SizeMismatch {
                checkpoint_size: 37,
                tree_size: 36
            }
        )
    });
    check(&|p| p.path[2].0[5] ^= 4, &|e| {
        matches!(e, ProofError::Merkle(MerkleError::InvalidProof(_)))
    });
    check(&|p| p.path.truncate(p.path.len() - 1), &|e| {
        matches!(e, ProofError::Merkle(MerkleError::InvalidProof(_)))
    });
    check(
        &|p| p.checkpoint = p.checkpoint.replacen("socai", "sokai", 1),
        &|e| matches!(e, ProofError::Checkpoint(_)),
    );
}

#[test]
fn consistency_proof_object() {
    let log = log();
    let proof = |old: u64, new: u64| ConsistencyProof {
        old_size: old,
        new_size: new,
        old_root: tree_root(old, &log.hashes).unwrap(),
        new_root: tree_root(new, &log.hashes).unwrap(),
        path: prove_consistency(old, new, &log.hashes).unwrap(),
    };
    for new in 1..=N {
        for old in 1..=new {
            proof(old, new).verify().unwrap();
        }
    }
    let good = proof(11, N);
    let json = serde_json::to_value(&good).unwrap();
    assert_eq!(json["old_root"], good.old_root.to_hex());
    assert_eq!(
        serde_json::from_value::<ConsistencyProof>(json).unwrap(),
        good
    );
    let mut bad = good.clone();
    bad.new_root.0[0] ^= 1;
    assert!(matches!(
        bad.verify(),
        Err(ProofError::Merkle(MerkleError::InvalidProof(_)))
    ));
    let mut bad = good.clone();
    bad.old_size = 0;
    assert!(matches!(
        bad.verify(),
        Err(ProofError::Merkle(MerkleError::BadSizes { .. }))
    ));
}
