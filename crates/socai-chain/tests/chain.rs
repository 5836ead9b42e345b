//! Chain verification: chunks, links, roots, and where each kind of tampering shows up.

mod common;

use common::{Log, entry};
use proptest::prelude::*;
use socai_chain::entry::EntryError;
use socai_chain::verify::{ChainErrorKind, verify_chunk};
use socai_chain::{ChainError, ChainVerifier, CompactRange, Hash, leaf_hash};

const N: u64 = 40;

/// Verifies `entries` from seq 0 in chunks of `chunk_len`, then checks the root.
fn verify_all(entries: &[Vec<u8>], chunk_len: usize, root: &Hash) -> Result<(), ChainError> {
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let mut chain = ChainVerifier::new();
    for (i, chunk) in refs.chunks(chunk_len).enumerate() {
        chain.push_chunk(&verify_chunk((i * chunk_len) as u64, chunk)?)?;
    }
    chain.check_root(root)
}

#[test]
fn untouched_log_verifies_in_any_chunking() {
    let log = Log::new(N);
    let root = log.hashes.root();
    for chunk_len in [1, 2, 3, 7, 16, 40, 100] {
        verify_all(&log.entries, chunk_len, &root).unwrap();
    }
    let mut chain = ChainVerifier::new();
    for (seq, bytes) in log.entries.iter().enumerate() {
        assert_eq!(chain.push(bytes).unwrap(), leaf_hash(bytes), "leaf {seq}");
    }
    assert_eq!(
        (chain.size(), chain.head(), chain.root()),
        (N, leaf_hash(&log.entries[N as usize - 1]), root)
    );

    let chunk = verify_chunk(0, &log.refs()).unwrap();
    let with_personal: Vec<u64> = (0..N).filter(|s| common::personal(*s).is_some()).collect();
    assert_eq!(
        chunk.commitments.iter().map(|c| c.0).collect::<Vec<_>>(),
        with_personal
    );
    assert_eq!(chunk.first_prev, Hash::ZERO);
    assert_eq!(chunk.leaves.len() as u64, N);
    // Empty chunks change nothing.
    chain.push_chunk(&verify_chunk(N, &[]).unwrap()).unwrap();
    assert_eq!(chain.size(), N);
}

/// The leaves are hashed a chunk at a time: a chunk broken at entry k keeps exactly the leaves of
/// the entries before it, and says where it broke.
#[test]
fn a_chunk_broken_part_way_keeps_only_the_leaves_before_the_break() {
    let log = Log::new(N);
    for k in [1usize, 2, 16, 17, 39] {
        let mut entries = log.entries.clone();
        entries[k] = String::from_utf8(entries[k].clone())
            .unwrap()
            .replacen('{', "[", 1)
            .into_bytes();
        let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let chunk = verify_chunk(0, &refs).unwrap();
        let before: Vec<Hash> = refs[..k].iter().map(|e| leaf_hash(e)).collect();
        assert_eq!(chunk.leaves, before, "broken at {k}");
        assert_eq!(chunk.error.map(|e| e.seq), Some(k as u64), "broken at {k}");
    }
    // Broken at its first entry, the chunk itself fails.
    let mut entries = log.entries.clone();
    entries[0] = b"[".to_vec();
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    assert_eq!(verify_chunk(0, &refs).unwrap_err().seq, 0);
}

#[test]
fn tampering_is_reported_at_the_right_seq() {
    let log = Log::new(N);
    let root = log.hashes.root();
    let check = |entries: Vec<Vec<u8>>, seq: u64, kind: fn(&ChainErrorKind) -> bool| {
        for chunk_len in [1, 5, 40] {
            let err = verify_all(&entries, chunk_len, &root).unwrap_err();
            assert_eq!(err.seq, seq, "chunks of {chunk_len}: {err}");
            assert!(kind(&err.kind), "chunks of {chunk_len}: {err}");
        }
    };
    let edit = |seq: usize, f: &dyn Fn(&str) -> String| {
        let mut entries = log.entries.clone();
        entries[seq] = f(std::str::from_utf8(&entries[seq]).unwrap()).into_bytes();
        entries
    };

    // A changed fact in entry 10 still decodes: the link from entry 11 breaks.
    check(edit(10, &|t| t.replacen("online", "offline", 1)), 11, |k| {
        matches!(k, ChainErrorKind::PrevMismatch { .. })
    });
    // A changed byte that breaks JSON is caught at the entry itself.
    check(edit(10, &|t| t.replacen('{', "[", 1)), 10, |k| {
        matches!(k, ChainErrorKind::Entry(EntryError::Json(_)))
    });
    check(
        edit(10, &|t| t.replacen("\"v\":1", "\"v\":2", 1)),
        10,
        |k| matches!(k, ChainErrorKind::Entry(EntryError::Version(2))),
    );
    // A changed last entry is caught by the root.
    let last = N as usize - 1;
    check(
        edit(last, &|t| t.replacen("online", "offline", 1)),
        N,
        |k| matches!(k, ChainErrorKind::RootMismatch { .. }),
    );
    // A re-chained forgery from entry 10 on: every link holds, the root does not.
    let mut forged = log.entries[..10].to_vec();
    let mut prev = leaf_hash(&forged[9]);
    for seq in 10..N {
        let mut e = entry(seq, prev);
        e.event["data"]["channel"] = "counter".into();
        let bytes = e.to_canonical();
        prev = leaf_hash(&bytes);
        forged.push(bytes);
    }
    check(forged, N, |k| {
        matches!(k, ChainErrorKind::RootMismatch { .. })
    });
    // A deleted entry: its successor sits at its position with the wrong seq.
    let mut deleted = log.entries.clone();
    deleted.remove(10);
    check(deleted, 10, |k| {
        *k == ChainErrorKind::SeqMismatch {
            expected: 10,
            found: 11,
        }
    });
    // Swapped entries: the first of the pair has the wrong seq.
    let mut swapped = log.entries.clone();
    swapped.swap(10, 11);
    check(swapped, 10, |k| {
        *k == ChainErrorKind::SeqMismatch {
            expected: 10,
            found: 11,
        }
    });
    // A duplicated entry.
    let mut duplicated = log.entries.clone();
    duplicated.insert(11, log.entries[10].clone());
    check(duplicated, 11, |k| {
        *k == ChainErrorKind::SeqMismatch {
            expected: 11,
            found: 10,
        }
    });
    // A rewritten `prev` (at the start of the log, and at a chunk boundary for chunks of 5): the
    // entry's own link is reported, not the one after it that its new leaf hash also breaks.
    for seq in [0, 10, 12] {
        let mut e = log.entries.clone();
        e[seq as usize] = entry(seq, Hash([1; 32])).to_canonical();
        check(
            e,
            seq,
            |k| matches!(k, ChainErrorKind::PrevMismatch { found, .. } if *found == Hash([1; 32])),
        );
    }
}

#[test]
fn chunks_must_join() {
    let log = Log::new(N);
    let refs = log.refs();
    let mut chain = ChainVerifier::new();
    chain
        .push_chunk(&verify_chunk(0, &refs[..10]).unwrap())
        .unwrap();
    // A chunk that skips ahead, and one whose first prev is not our head.
    let ahead = verify_chunk(11, &refs[11..20]).unwrap();
    assert_eq!(
        chain.push_chunk(&ahead),
        Err(ChainError {
            seq: 10,
            kind: ChainErrorKind::SeqMismatch {
                expected: 10,
                found: 11
            }
        })
    );
    let mut resumed = ChainVerifier::resume(chain_range(&log, 11), Hash([7; 32]));
    let err = resumed.push_chunk(&ahead).unwrap_err();
    assert_eq!(err.seq, 11);
    assert!(
        matches!(err.kind, ChainErrorKind::PrevMismatch { found, .. } if found == leaf_hash(refs[10]))
    );
    // verify_chunk checks the seqs it is told to expect.
    assert_eq!(
        verify_chunk(5, &refs[..3]).unwrap_err().kind,
        ChainErrorKind::SeqMismatch {
            expected: 5,
            found: 0
        }
    );
    // Resuming from a frontier with the right head carries on to the same root.
    let mut resumed = ChainVerifier::resume(chain_range(&log, 11), leaf_hash(refs[10]));
    resumed
        .push_chunk(&verify_chunk(11, &refs[11..]).unwrap())
        .unwrap();
    resumed.check_root(&log.hashes.root()).unwrap();
    let err = resumed.check_root(&Hash::ZERO).unwrap_err();
    assert_eq!(err.seq, N);
    assert_eq!(
        err.to_string(),
        format!(
            "seq {N}: root of the first {N} entries is {}, checkpoint says {}",
            log.hashes.root(),
            Hash::ZERO
        )
    );
}

fn chain_range(log: &Log, size: u64) -> CompactRange {
    use socai_chain::merkle::{HashReader, frontier_indexes};
    CompactRange::from_frontier(
        size,
        log.hashes.read_hashes(&frontier_indexes(size)).unwrap(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Any single flipped bit in any entry makes verification fail, at or after that entry.
    #[test]
    fn any_flipped_bit_in_an_entry_fails(seq in 0..N as usize, bit in any::<prop::sample::Index>()) {
        let log = Log::new(N);
        let mut entries = log.entries.clone();
        let bit = bit.index(entries[seq].len() * 8);
        entries[seq][bit / 8] ^= 1 << (bit % 8);
        let err = verify_all(&entries, 8, &log.hashes.root()).unwrap_err();
        prop_assert!(err.seq >= seq as u64 && err.seq <= seq as u64 + 1 || err.seq == N, "{err}");
    }
}
