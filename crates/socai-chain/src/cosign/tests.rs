use super::*;
use crate::checkpoint::{Checkpoint, CheckpointSigner};
use crate::hash::leaf_hash;
use crate::merkle::{MemoryHashes, prove_consistency, tree_root};
use sha2::{Digest, Sha256};

/// A log of `n` leaves whose contents start with `tag` (two tags: two forks).
fn tree(tag: &str, n: u64) -> MemoryHashes {
    let mut hashes = MemoryHashes::new();
    for i in 0..n {
        hashes.push_leaf(leaf_hash(format!("{tag}{i}").as_bytes()));
    }
    hashes
}

fn signed(log: &CheckpointSigner, hashes: &MemoryHashes, size: u64) -> String {
    let checkpoint = Checkpoint {
        origin: log.name().to_owned(),
        size,
        root: tree_root(size, hashes).unwrap(),
    };
    log.sign(&checkpoint).unwrap().note
}

fn request(log: &CheckpointSigner, hashes: &MemoryHashes, old: u64, size: u64) -> AddCheckpoint {
    let proof = if old == 0 || old == size {
        Vec::new()
    } else {
        prove_consistency(old, size, hashes).unwrap()
    };
    AddCheckpoint {
        old_size: old,
        proof,
        note: signed(log, hashes, size),
    }
}

fn cosigned(decision: Decision) -> WitnessState {
    match decision {
        Decision::Cosign(state) => state,
        other => panic!("expected a cosignature, got {other:?}"),
    }
}

#[test]
fn key_text_round_trips_and_the_key_id_is_the_specs() {
    let (cosigner, skey, vkey) = Cosigner::generate("witness.example/w1").unwrap();
    let again = Cosigner::from_skey(&skey).unwrap();
    assert_eq!(again.vkey(), vkey);
    let verifier = CosignatureVerifier::from_vkey(&vkey).unwrap();
    assert_eq!(verifier.name(), "witness.example/w1");
    // C2SP tlog-cosignature: SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4], computed here
    // from the key text alone.
    let public = STANDARD
        .decode(vkey.splitn(3, '+').nth(2).unwrap())
        .unwrap();
    assert_eq!(public[0], 0x04);
    let mut h = Sha256::new();
    h.update(b"witness.example/w1\n");
    h.update(&public);
    let id = u32::from_be_bytes(h.finalize()[..4].try_into().unwrap());
    assert_eq!(verifier.key_id(), id);
    assert_eq!(cosigner.key_id(), id);
    assert!(vkey.starts_with(&format!("witness.example/w1+{id:08x}+")));
}

#[test]
fn bad_keys_are_named() {
    let (_, skey, vkey) = Cosigner::generate("w").unwrap();
    let wrong_id = format!("w+00000000+{}", vkey.splitn(3, '+').nth(2).unwrap());
    assert!(
        CosignatureVerifier::from_vkey(&wrong_id)
            .unwrap_err()
            .to_string()
            .contains("key id")
    );
    let err = Cosigner::from_skey(&skey.replace("PRIVATE+KEY+w+", "PRIVATE+KEY+x+")).unwrap_err();
    assert!(err.to_string().contains("key id"), "{err}");
    assert!(
        !err.to_string()
            .contains(skey.splitn(5, '+').nth(4).unwrap())
    );
    assert!(Cosigner::generate("two words").is_err());
}

#[test]
fn a_cosignature_verifies_and_a_changed_one_does_not() {
    let (log, _, log_vkey) = CheckpointSigner::generate("log.example/a").unwrap();
    let hashes = tree("a", 7);
    let note = signed(&log, &hashes, 7);
    let body = note_body(&note).unwrap();
    assert!(
        body.ends_with('\n') && body.lines().count() == 3,
        "{body:?}"
    );
    let (w1, _, w1_vkey) = Cosigner::generate("w1.example").unwrap();
    let line = w1.cosign(body, 1_700_000_000);
    assert!(line.starts_with("— w1.example ") && line.ends_with('\n'));
    let v1 = CosignatureVerifier::from_vkey(&w1_vkey).unwrap();
    assert_eq!(v1.verify_line(body, &line).unwrap(), Some(1_700_000_000));
    // Another body (size 6), the time changed, or the line of another key.
    let other = signed(&log, &hashes, 6);
    assert!(v1.verify_line(note_body(&other).unwrap(), &line).is_err());
    let mut raw = STANDARD
        .decode(line.trim_end().rsplit(' ').next().unwrap())
        .unwrap();
    raw[11] ^= 1;
    let retimed = format!("— w1.example {}\n", STANDARD.encode(&raw));
    assert!(matches!(
        v1.verify_line(body, &retimed),
        Err(CosignError::BadCosignature { .. })
    ));
    let (w2, _, _) = Cosigner::generate("w2.example").unwrap();
    assert_eq!(v1.verify_line(body, &w2.cosign(body, 5)).unwrap(), None);
    // The log's own signature line is not a cosignature.
    let log_line = signature_lines(&note)[0];
    assert_eq!(v1.verify_line(body, log_line).unwrap(), None);
    let _ = log_vkey;
}

#[test]
fn k_of_n_counts_distinct_trusted_witnesses_only() {
    let (log, _, log_vkey) = CheckpointSigner::generate("log.example/a").unwrap();
    let log_v = CheckpointVerifier::from_vkey(&log_vkey).unwrap();
    let hashes = tree("a", 9);
    let note = signed(&log, &hashes, 9);
    let body = note_body(&note).unwrap().to_owned();
    let keys: Vec<_> = (1..=3)
        .map(|i| Cosigner::generate(&format!("w{i}.example")).unwrap())
        .collect();
    let trusted: Vec<_> = keys
        .iter()
        .map(|(_, _, v)| CosignatureVerifier::from_vkey(v).unwrap())
        .collect();
    let (stranger, _, _) = Cosigner::generate("stranger.example").unwrap();
    // w1 twice, w2 once, a stranger: 2 distinct trusted.
    let mut cosigned = note.clone();
    cosigned.push_str(&keys[0].0.cosign(&body, 10));
    cosigned.push_str(&keys[0].0.cosign(&body, 11));
    cosigned.push_str(&keys[1].0.cosign(&body, 12));
    cosigned.push_str(&stranger.cosign(&body, 13));
    let ok = verify_witnessed(&cosigned, &log_v, &trusted, 2).unwrap();
    assert_eq!(
        ok.cosigned_by,
        vec![("w1.example".to_owned(), 11), ("w2.example".to_owned(), 12)]
    );
    assert_eq!(ok.signed.checkpoint.size, 9);
    let err = verify_witnessed(&cosigned, &log_v, &trusted, 3).unwrap_err();
    assert!(
        matches!(
            err,
            CosignError::TooFewCosignatures {
                found: 2,
                required: 3,
                ..
            }
        ),
        "{err}"
    );
    // A forged line by a trusted key fails even when enough others verify.
    let line = keys[1].0.cosign(&body, 12);
    let mut raw = STANDARD
        .decode(line.trim_end().rsplit(' ').next().unwrap())
        .unwrap();
    raw[40] ^= 1;
    let forged = cosigned.replace(&line, &format!("— w2.example {}\n", STANDARD.encode(&raw)));
    assert_ne!(forged, cosigned);
    assert!(matches!(
        verify_witnessed(&forged, &log_v, &trusted, 1),
        Err(CosignError::BadCosignature { .. })
    ));
    // Cosignatures of another checkpoint do not count for this one.
    let other_body = note_body(&signed(&log, &hashes, 8)).unwrap().to_owned();
    let mut moved = note.clone();
    moved.push_str(&keys[2].0.cosign(&other_body, 14));
    assert!(matches!(
        verify_witnessed(&moved, &log_v, &trusted, 1),
        Err(CosignError::BadCosignature { .. })
    ));
}

#[test]
fn the_request_body_round_trips_and_bad_ones_are_named() {
    let (log, _, _) = CheckpointSigner::generate("log.example/a").unwrap();
    let hashes = tree("a", 20);
    let req = request(&log, &hashes, 13, 20);
    assert!(!req.proof.is_empty());
    let body = req.body();
    assert!(body.starts_with("old 13\n"));
    assert_eq!(AddCheckpoint::parse(&body).unwrap(), req);
    let fresh = request(&log, &hashes, 0, 20);
    assert!(fresh.body().starts_with("old 0\n\nlog.example/a\n20\n"));
    assert_eq!(AddCheckpoint::parse(&fresh.body()).unwrap(), fresh);
    for (bad, why) in [
        ("", "old <size>"),
        ("new 3\n\n", "is not \"old <size>\""),
        ("old 03\n\n", "leading zeroes"),
        ("old x\n\n", "not a decimal"),
        ("old +5\n\n", "not a decimal"),
        ("old 3\nnot-base64!\n\n", "proof line 1"),
        ("old 3\n", "no blank line"),
    ] {
        let err = AddCheckpoint::parse(bad).unwrap_err().to_string();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
    let too_long = format!(
        "old 1\n{}\n",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64)
    );
    assert!(
        AddCheckpoint::parse(&too_long)
            .unwrap_err()
            .to_string()
            .contains("more than 63")
    );
}

#[test]
fn a_witness_cosigns_growth_and_refuses_rollbacks_and_forks() {
    let (log, skey, log_vkey) = CheckpointSigner::generate("log.example/a").unwrap();
    let log_v = CheckpointVerifier::from_vkey(&log_vkey).unwrap();
    let hashes = tree("a", 40);
    // Never cosigned: 0 → 10 is taken.
    let s10 = cosigned(decide(&request(&log, &hashes, 0, 10), &log_v, None));
    assert_eq!((s10.size, s10.root), (10, tree_root(10, &hashes).unwrap()));
    // 10 → 25 with a proof; the same checkpoint again is fine.
    let s25 = cosigned(decide(&request(&log, &hashes, 10, 25), &log_v, Some(&s10)));
    assert_eq!(s25.size, 25);
    cosigned(decide(&request(&log, &hashes, 25, 25), &log_v, Some(&s25)));
    // A client that does not know the witness's size learns it (409 with the size).
    assert_eq!(
        decide(&request(&log, &hashes, 0, 30), &log_v, Some(&s25)),
        Decision::Conflict {
            size: 25,
            reason:
                "old size 0 is not the size of the latest checkpoint this witness cosigned (25)"
                    .into()
        }
    );
    // Rollback: a smaller checkpoint is never cosigned (409 as the old size is not 25; 400 as
    // 25 is more than its size).
    assert_eq!(
        decide(&request(&log, &hashes, 10, 20), &log_v, Some(&s25)).status(),
        409
    );
    let mut back = request(&log, &hashes, 0, 20);
    back.old_size = 25;
    assert_eq!(decide(&back, &log_v, Some(&s25)).status(), 400);
    // A fork signed by the same key: another root at the same size (409), or a larger tree
    // whose proof from 25 cannot hold (422) whatever proof is sent.
    let (fork_log, ..) = (CheckpointSigner::from_skey(&skey).unwrap(), ());
    let forked = tree("b", 40);
    let same_size = request(&fork_log, &forked, 25, 25);
    let d = decide(&same_size, &log_v, Some(&s25));
    assert_eq!(d.status(), 409, "{d:?}");
    assert!(matches!(d, Decision::Conflict { reason, .. } if reason.contains("a fork")));
    let bigger = request(&fork_log, &forked, 25, 33);
    assert_eq!(decide(&bigger, &log_v, Some(&s25)).status(), 422);
    let mut honest_proof = bigger.clone();
    honest_proof.proof = prove_consistency(25, 33, &hashes).unwrap();
    assert_eq!(decide(&honest_proof, &log_v, Some(&s25)).status(), 422);
    // Unknown origin (404), a signature by another key of the same name (403), a malformed
    // note (400), a proof where none belongs (400).
    let (other, ..) = CheckpointSigner::generate("log.example/b").unwrap();
    assert_eq!(
        decide(&request(&other, &hashes, 0, 5), &log_v, None).status(),
        404
    );
    let (impostor, ..) = CheckpointSigner::generate("log.example/a").unwrap();
    assert_eq!(
        decide(&request(&impostor, &hashes, 0, 5), &log_v, None).status(),
        403
    );
    let mut malformed = request(&log, &hashes, 0, 5);
    malformed.note = "log.example/a\nfive\n".into();
    assert_eq!(decide(&malformed, &log_v, None).status(), 400);
    let mut stray = request(&log, &hashes, 0, 5);
    stray.proof = vec![Hash([0; 32])];
    assert_eq!(decide(&stray, &log_v, None).status(), 400);
}

/// Known answers from the wild: a checkpoint of a public CT log cosigned by public witnesses
/// (as published with its keys, e.g. in the test suite of the Python `tlog-checkpoint`
/// tools), checked with our verifier alone.
#[test]
fn cosignatures_of_public_witnesses_verify() {
    let body = "arche2025h1.staging.ct.transparency.dev\n1432088532\nU7WM79jrzyhGZ5/GUBTpM7NzwdyfFx61t3RovgcC4Ro=\n";
    let cases = [
        (
            "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
            "— remora.n621.de 2net5wAAAABqEiEgPlfF3V06o0Y+fHM+J5J9s27wgxxcOVSpZ/2g/KSiXCg9DEZI+aVCIobWX9sXTynk5XeU/zZ0WBxtqB0DrAWfBw==",
        ),
        (
            "witness1.smartit.nu/witness1+a48c820f+BPSFWg9G6KPiO7QPryYO5Xq4oYJJ+kAvLKLSimDhoxMO",
            "— witness1.smartit.nu/witness1 pIyCDwAAAABqEiEghIp82KWebrw7/oHQwlTAm3g2RKS4+eebl8eO0WH+/iEcxZ75W3u5hNI7TOQtmJbqmNWVuE0tgh0XwzdZsDsUAQ==",
        ),
    ];
    for (vkey, line) in cases {
        let v = CosignatureVerifier::from_vkey(vkey).unwrap();
        assert_eq!(v.vkey(), vkey);
        let time = v.verify_line(body, line).unwrap().expect("its own line");
        assert_eq!(time, 0x6a12_2120, "{vkey}");
        // One digit of the size changed: not this checkpoint.
        let other = body.replace("1432088532", "1432088533");
        assert!(v.verify_line(&other, line).is_err());
    }
}

/// A witness key published as a plain Ed25519 note key (type 0x01) is the same key: its
/// cosignature/v1 key id is computed with 0x04, as Go's note package does (its test key
/// `TEST+7997405c+AQcC…` has cosignature key id fdd2dbc7).
#[test]
fn a_plain_ed25519_key_text_names_the_same_cosigner() {
    let v = CosignatureVerifier::from_vkey(
        "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6",
    )
    .unwrap();
    assert_eq!(v.key_id(), 0xfdd2_dbc7);
    assert!(v.vkey().starts_with("TEST+fdd2dbc7+B"), "{}", v.vkey());
    let (cosigner, _, vkey) = Cosigner::generate("w.example").unwrap();
    let public = STANDARD
        .decode(vkey.splitn(3, '+').nth(2).unwrap())
        .unwrap();
    let plain = signed_note::new_ed25519_verifier_key(
        "w.example",
        &ed25519_dalek::VerifyingKey::from_bytes(&public[1..].try_into().unwrap()).unwrap(),
    );
    let from_plain = CosignatureVerifier::from_vkey(&plain).unwrap();
    assert_eq!(from_plain.key_id(), cosigner.key_id());
    assert_eq!(from_plain.vkey(), vkey);
    let body = "log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    assert_eq!(
        from_plain
            .verify_line(body, &cosigner.cosign(body, 7))
            .unwrap(),
        Some(7)
    );
}

#[test]
fn a_logs_own_key_is_recognised_as_no_witness() {
    let (_, _, log_vkey) = CheckpointSigner::generate("log.example").unwrap();
    let as_witness = CosignatureVerifier::from_vkey(&log_vkey).unwrap();
    assert!(as_witness.is_key_of(&log_vkey));
    let (_, _, w_vkey) = Cosigner::generate("w.example").unwrap();
    assert!(
        !CosignatureVerifier::from_vkey(&w_vkey)
            .unwrap()
            .is_key_of(&log_vkey)
    );
}
