//! `socai verify` certifies a log only against a key the auditor brings (`--vkey`): a data dir
//! whose checkpoint.vkey and checkpoints were replaced by a new key must never verify "ok".

use socai_chain::CheckpointVerifier;
use socai_chain::checkpoint::{Checkpoint, CheckpointSigner};
use socai_e2e::{Ledger, stderr, stdout};

/// Exit status of `verify` without `--vkey`: internally consistent, not certified.
const NOT_CERTIFIED: i32 = 5;

#[test]
fn verify_without_vkey_never_certifies_a_rewritten_data_dir() {
    let l = Ledger::new();
    let file = l.simulate("events.jsonl", 300, 5);
    l.ok(&["import", file.to_str().unwrap()]);
    let own_vkey = l.dir().join("checkpoint.vkey");
    // The auditor's copy of the published key, taken before anything happened.
    let published = l.path("published.vkey");
    std::fs::copy(&own_vkey, &published).unwrap();
    let published = published.to_str().unwrap();

    // The genuine log: certified with the published key, only "consistent" without it.
    let out = l.run(&["verify", "--vkey", published]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("ok: 300 entries"),
        "{}",
        stdout(&out)
    );
    let out = l.run(&["verify"]);
    assert_eq!(out.status.code(), Some(NOT_CERTIFIED), "{}", stderr(&out));
    assert!(!stdout(&out).contains("ok"), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("internally consistent: 300 entries"),
        "{}",
        stdout(&out)
    );

    // Rewrite the data dir: a new key, and every checkpoint re-signed with it.
    let text = std::fs::read_to_string(&own_vkey).unwrap();
    let old = CheckpointVerifier::from_vkey(text.trim()).unwrap();
    let (signer, skey, vkey) = CheckpointSigner::generate(old.name()).unwrap();
    {
        let (db, tree) = l.sled();
        let mut resigned = 0;
        for item in tree.scan_prefix(b"c") {
            let (k, v) = item.unwrap();
            let signed = old.verify(std::str::from_utf8(&v).unwrap()).unwrap();
            let note = signer
                .sign(&Checkpoint {
                    origin: old.name().to_owned(),
                    size: signed.checkpoint.size,
                    root: signed.checkpoint.root,
                })
                .unwrap()
                .note;
            tree.insert(k, note.as_bytes()).unwrap();
            resigned += 1;
        }
        assert!(resigned > 0);
        db.flush().unwrap();
    }
    std::fs::write(&own_vkey, format!("{vkey}\n")).unwrap();
    std::fs::write(l.dir().join("checkpoint.key"), format!("{skey}\n")).unwrap();

    // Without --vkey: never "ok", a distinct status, and the key file to pass is named.
    let out = l.run(&["verify"]);
    let (out_text, err_text) = (stdout(&out), stderr(&out));
    assert_eq!(
        out.status.code(),
        Some(NOT_CERTIFIED),
        "{out_text}{err_text}"
    );
    assert!(!out_text.contains("ok"), "{out_text}");
    assert!(
        err_text.contains("NOT verified against a trusted key"),
        "{err_text}"
    );
    assert!(
        err_text.contains("pass --vkey <path of the published checkpoint.vkey>"),
        "{err_text}"
    );
    assert!(
        err_text.contains(own_vkey.to_str().unwrap()),
        "names the data dir's own key file: {err_text}"
    );
    // The same in JSON.
    let out = l.run(&["--json", "verify"]);
    assert_eq!(out.status.code(), Some(NOT_CERTIFIED));
    let first: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(first["ok"], false, "{first}");
    assert_eq!(first["certified"], false, "{first}");
    assert_eq!(first["consistent"], true, "{first}");

    // With the published key: the rewrite is found, at the first re-signed checkpoint.
    let out = l.run(&["verify", "--vkey", published]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let err_text = stderr(&out);
    assert!(
        err_text.contains("verification failed: seq ")
            && err_text.contains("checkpoint for tree size"),
        "{err_text}"
    );

    // Passing the data dir's own (replaced) key file "works", with a warning that it proves
    // nothing about where the key came from.
    let out = l.run(&["verify", "--vkey", own_vkey.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is the data dir's own key file"),
        "{}",
        stderr(&out)
    );
}
