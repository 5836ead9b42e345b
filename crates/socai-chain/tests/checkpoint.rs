//! C2SP checkpoints: note format, key ids and key text, signature checks, tampering.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{ORIGIN, signer};
use proptest::prelude::*;
use socai_chain::checkpoint::{Checkpoint, CheckpointError, CheckpointSigner, CheckpointVerifier};
use socai_chain::leaf_hash;

fn checkpoint(size: u64) -> Checkpoint {
    Checkpoint {
        origin: ORIGIN.to_owned(),
        size,
        root: leaf_hash(&size.to_be_bytes()),
    }
}

fn verifier() -> CheckpointVerifier {
    CheckpointVerifier::from_vkey(&signer().vkey()).unwrap()
}

#[test]
fn known_signed_note_key() {
    // The example key of the signed-note spec (Go's golang.org/x/mod/sumdb/note).
    let s = CheckpointSigner::from_skey(
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
    )
    .unwrap();
    assert_eq!(s.name(), "PeterNeumann");
    assert_eq!(s.key_id(), 0xc74f20a3);
    assert_eq!(
        s.vkey(),
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    );
    let v = CheckpointVerifier::from_vkey(&s.vkey()).unwrap();
    assert_eq!((v.name(), v.key_id()), ("PeterNeumann", 0xc74f20a3));
}

#[test]
fn generated_keys_follow_signed_note() {
    let (s, skey, vkey) = CheckpointSigner::generate(ORIGIN).unwrap();
    assert_eq!(s.vkey(), vkey);
    assert_eq!(CheckpointSigner::from_skey(&skey).unwrap().vkey(), vkey);
    // vkey = <name>+<hex id>+<base64(0x01 ‖ 32-byte public key)>, id = signed-note key id.
    let parts: Vec<&str> = vkey.splitn(3, '+').collect();
    assert_eq!(parts.len(), 3, "{vkey}");
    assert_eq!(parts[0], ORIGIN);
    assert_eq!(parts[1], format!("{:08x}", s.key_id()));
    let key = STANDARD.decode(parts[2]).unwrap();
    assert_eq!((key.len(), key[0]), (33, 0x01));
    assert_eq!(s.key_id(), signed_note::key_id(ORIGIN, &key));
    assert!(skey.starts_with(&format!("PRIVATE+KEY+{ORIGIN}+{:08x}+", s.key_id())));
    let v = CheckpointVerifier::from_vkey(&vkey).unwrap();
    assert_eq!((v.name(), v.key_id()), (s.name(), s.key_id()));
}

#[test]
fn note_format_and_round_trip() {
    let s = signer();
    let c = checkpoint(42);
    assert_eq!(
        c.body(),
        format!("{ORIGIN}\n42\n{}\n", STANDARD.encode(c.root.0))
    );
    let tlog_body = tlog_tiles::Checkpoint::new(ORIGIN, 42, tlog_tiles::Hash(c.root.0), "")
        .unwrap()
        .to_bytes();
    assert_eq!(c.body().into_bytes(), tlog_body);

    let signed = s.sign(&c).unwrap();
    assert_eq!(signed.checkpoint, c);
    let (body, sig_line) = signed.note.split_once("\n\n").unwrap();
    assert_eq!(format!("{body}\n"), c.body());
    let sig = sig_line
        .strip_prefix(&format!("— {ORIGIN} "))
        .unwrap()
        .strip_suffix('\n')
        .unwrap();
    let sig = STANDARD.decode(sig).unwrap();
    assert_eq!(sig.len(), 4 + 64);
    assert_eq!(u32::from_be_bytes(sig[..4].try_into().unwrap()), s.key_id());

    assert_eq!(verifier().verify(&signed.note).unwrap(), signed);
    // signed_note's own verifier agrees.
    let sv = signed_note::StandardVerifier::new(&s.vkey()).unwrap();
    let note = signed_note::Note::from_bytes(signed.note.as_bytes()).unwrap();
    note.verify(&signed_note::VerifierList::new(vec![Box::new(sv)]))
        .unwrap();
}

#[test]
fn rejections() {
    let s = signer();
    let v = verifier();
    let note = s.sign(&checkpoint(7)).unwrap().note;
    let (name, key_id) = (ORIGIN.to_owned(), s.key_id());

    // Another key with the same name: its signature is not ours.
    let (other, _, _) = CheckpointSigner::generate(ORIGIN).unwrap();
    let foreign = other.sign(&checkpoint(7)).unwrap().note;
    assert_eq!(
        v.verify(&foreign),
        Err(CheckpointError::NotSignedByKey {
            name: name.clone(),
            key_id
        })
    );
    // A cosignature by another key next to ours is ignored.
    let cosigned = format!("{note}{}", foreign.split_once("\n\n").unwrap().1);
    assert!(v.verify(&cosigned).is_ok());

    // Our signature line on another body.
    let tampered = note.replacen("\n7\n", "\n8\n", 1);
    assert_eq!(
        v.verify(&tampered),
        Err(CheckpointError::BadSignature {
            name: name.clone(),
            key_id
        })
    );

    // Origin must equal the key name, when signing and when verifying.
    let (elsewhere, _, elsewhere_vkey) =
        CheckpointSigner::generate("elsewhere.example/log").unwrap();
    let wrong = Checkpoint {
        origin: "elsewhere.example/log".into(),
        ..checkpoint(7)
    };
    assert_eq!(
        s.sign(&wrong),
        Err(CheckpointError::WrongOrigin {
            expected: ORIGIN.into(),
            found: "elsewhere.example/log".into()
        })
    );
    let elsewhere_note = elsewhere.sign(&wrong).unwrap().note;
    assert_eq!(
        v.verify(&elsewhere_note),
        Err(CheckpointError::WrongOrigin {
            expected: ORIGIN.into(),
            found: "elsewhere.example/log".into()
        })
    );
    let elsewhere_v = CheckpointVerifier::from_vkey(&elsewhere_vkey).unwrap();
    assert!(matches!(
        elsewhere_v.verify(&note),
        Err(CheckpointError::WrongOrigin { .. })
    ));

    // Malformed notes.
    let body_only = s.sign(&checkpoint(7)).unwrap().checkpoint.body();
    let sig_line = note.split_once("\n\n").unwrap().1;
    for bad in [
        String::new(),
        "garbage".to_owned(),
        body_only.clone(),
        format!("{body_only}\n"),
        format!(
            "{ORIGIN}\n7\n{}\nextension line\n\n{sig_line}",
            STANDARD.encode(checkpoint(7).root.0)
        ),
        format!(
            "{ORIGIN}\n007\n{}\n\n{sig_line}",
            STANDARD.encode(checkpoint(7).root.0)
        ),
        format!("{ORIGIN}\n7\nnot base64\n\n{sig_line}"),
        note.replacen('\n', "\r\n", 1),
    ] {
        assert!(
            matches!(v.verify(&bad), Err(CheckpointError::Malformed(_))),
            "{bad:?}: {:?}",
            v.verify(&bad)
        );
    }

    // Malformed keys.
    for bad in [
        "",
        "name+zz+AAAA",
        "socai+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ] {
        assert!(
            matches!(
                CheckpointVerifier::from_vkey(bad),
                Err(CheckpointError::BadKey(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        CheckpointSigner::from_skey("PRIVATE+KEY+x"),
        Err(CheckpointError::BadKey(_))
    ));
    assert!(matches!(
        CheckpointSigner::from_skey(
            "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
        ),
        Err(CheckpointError::BadKey(_))
    ));
    for bad_name in ["", "has space", "has+plus"] {
        assert!(matches!(
            CheckpointSigner::generate(bad_name),
            Err(CheckpointError::BadKey(_))
        ));
    }
}

proptest! {
    #[test]
    fn any_flipped_bit_in_the_note_fails(size in 0u64..1_000_000, bit in any::<prop::sample::Index>()) {
        let note = signer().sign(&checkpoint(size)).unwrap().note;
        let mut bytes = note.into_bytes();
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        // A flip that breaks UTF-8 is rejected before parsing; any other must fail verification.
        if let Ok(text) = String::from_utf8(bytes) {
            prop_assert!(verifier().verify(&text).is_err(), "{text:?} verified");
        }
    }
}
