//! End to end: the real `socai` binary on real data dirs. Tamper, crash (SIGKILL), idempotency,
//! bad input, proofs, bundles and redaction.

use rand::{Rng, SeedableRng};
use socai_e2e::{Ledger, edit_bundle, ids, stderr, stdout};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

/// A ledger holding `n` simulated events, imported and checkpointed.
fn ledger_with(n: u64) -> Ledger {
    let l = Ledger::new();
    let file = l.simulate("events.jsonl", n, 3);
    l.ok(&["import", file.to_str().unwrap()]);
    l
}

/// Runs verify on a (tampered) ledger and returns (exit code, stderr).
fn verify_fails(l: &Ledger) -> (i32, String) {
    let vkey = l.dir().join("checkpoint.vkey");
    let out = l.run(&["verify", "--vkey", vkey.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "verify must fail on a tampered ledger: {}",
        stdout(&out)
    );
    (out.status.code().unwrap_or(-1), stderr(&out))
}

#[test]
fn tampering_is_found_and_named_by_seq() {
    let base = ledger_with(2000);
    assert_eq!(base.verified_size(), 2000);

    // One byte of a stored entry.
    let l = base.copy();
    {
        let (db, tree) = l.sled();
        edit_bundle(&tree, 700, |entries, i| {
            let mid = entries[i].len() / 2;
            entries[i][mid] ^= 0x01;
        });
        db.flush().unwrap();
    }
    let (code, err) = verify_fails(&l);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("seq 700") || err.contains("seq 701"), "{err}");

    // A deleted entry.
    let l = base.copy();
    {
        let (db, tree) = l.sled();
        edit_bundle(&tree, 1234, |entries, i| {
            entries.remove(i);
        });
        db.flush().unwrap();
    }
    let (code, err) = verify_fails(&l);
    assert_eq!(code, 3);
    assert!(err.contains("seq 1234"), "{err}");

    // Two entries swapped.
    let l = base.copy();
    {
        let (db, tree) = l.sled();
        edit_bundle(&tree, 40, |entries, i| entries.swap(i, i + 1));
        db.flush().unwrap();
    }
    let (code, err) = verify_fails(&l);
    assert_eq!(code, 3);
    assert!(err.contains("seq 40"), "{err}");

    // A swapped checkpoint key: the signatures no longer verify under the auditor's key.
    let l = base.copy();
    let other = Ledger::new();
    std::fs::copy(
        other.dir().join("checkpoint.vkey"),
        l.dir().join("checkpoint.vkey"),
    )
    .unwrap();
    let (code, err) = verify_fails(&l);
    assert_eq!(code, 3);
    assert!(
        err.contains("seq 2000") && err.contains("checkpoint"),
        "{err}"
    );

    // The last entry rewritten (valid JSON, no later entry links to it): the stored Merkle hashes,
    // re-derived from the entries, name the entry itself (the signed root would catch it too).
    let l = base.copy();
    {
        let (db, tree) = l.sled();
        edit_bundle(&tree, 1999, |entries, i| {
            let v = &mut entries[i];
            let pos = v.windows(2).rposition(|w| w == b"Z\"").unwrap();
            v[pos - 1] = if v[pos - 1] == b'0' { b'1' } else { b'0' };
        });
        db.flush().unwrap();
    }
    let (code, err) = verify_fails(&l);
    assert_eq!(code, 3);
    assert!(
        err.contains("seq 1999") && err.contains("stored Merkle hash"),
        "{err}"
    );

    // No checkpoint at all: nothing attests the entries, so verify does not pass.
    let l = base.copy();
    {
        let (db, tree) = l.sled();
        let mut k = vec![b'c'];
        k.extend_from_slice(&2000u64.to_be_bytes());
        assert!(tree.remove(k).unwrap().is_some());
        db.flush().unwrap();
    }
    let (code, err) = verify_fails(&l);
    assert_eq!(code, 3);
    assert!(err.contains("no signed checkpoint"), "{err}");

    // The untouched original still verifies.
    assert_eq!(base.verified_size(), 2000);
}

#[test]
fn import_is_idempotent_and_conflicts_are_rejected() {
    let l = ledger_with(500);
    let file = l.path("events.jsonl");
    let again = l.json(&["import", file.to_str().unwrap()]);
    assert_eq!(again["imported"], 0);
    assert_eq!(again["duplicates"], 500);
    assert_eq!(l.verified_size(), 500);

    // Same id, different content.
    let text = std::fs::read_to_string(&file).unwrap();
    let first = text
        .lines()
        .find(|l| l.contains("dossier.submitted"))
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(first).unwrap();
    v["occurred_at"] = serde_json::json!("2026-01-05T09:00:00+07:00");
    let conflict = l.path("conflict.jsonl");
    std::fs::write(&conflict, format!("{v}\n")).unwrap();
    let out = l.run(&["import", conflict.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(socai_model_exit("conflict")),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("conflict.jsonl:1: conflict at /id"),
        "{}",
        stderr(&out)
    );
    assert_eq!(l.verified_size(), 500);
}

/// Exit codes are part of the CLI contract: 10 + the code's position (socai-model ErrorCode::ALL).
fn socai_model_exit(code: &str) -> i32 {
    let all = [
        "malformed_json",
        "schema_violation",
        "unknown_type",
        "reserved_type",
        "oversized",
        "conflict",
        "subject_mismatch",
        "future_timestamp",
        "unmappable_sync",
    ];
    10 + all.iter().position(|c| *c == code).expect("known code") as i32
}

#[test]
fn bad_import_lines_are_named_and_nothing_is_written() {
    let l = ledger_with(50);
    std::fs::write(l.dir().join("socai.toml"), "max_event_bytes = 2048\n").unwrap();
    let good: Vec<String> = std::fs::read_to_string(l.simulate("more.jsonl", 300, 9))
        .unwrap()
        .lines()
        .skip(150)
        .map(str::to_string)
        .collect();
    let base: serde_json::Value = serde_json::from_str(
        good.iter()
            .find(|l| l.contains("dossier.submitted"))
            .unwrap(),
    )
    .unwrap();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = base.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, &str, &str)> = vec![
        ("{\"id\": \"x\",".to_string(), "malformed_json", ""),
        ("[1,2,3]".to_string(), "malformed_json", ""),
        (
            with(&|v| v["data"]["channel"] = "fax".into()),
            "schema_violation",
            "/data/channel",
        ),
        (
            with(&|v| v["schema"] = 2.into()),
            "schema_violation",
            "/schema",
        ),
        (
            with(&|v| v["occurred_at"] = "2026-06-09 08:15".into()),
            "schema_violation",
            "/occurred_at",
        ),
        (
            with(&|v| v["agency"] = 42.into()),
            "schema_violation",
            "/agency",
        ),
        (
            with(&|v| v["type"] = "dossier.teleported".into()),
            "unknown_type",
            "/type",
        ),
        (
            with(&|v| v["type"] = "ledger.redacted".into()),
            "reserved_type",
            "/type",
        ),
        (
            with(&|v| v["data"]["note"] = "x".repeat(3000).into()),
            "oversized",
            "",
        ),
    ];
    for (line, code, path) in cases {
        let file = l.path("bad.jsonl");
        // The bad line sits at line 3, between valid events.
        std::fs::write(
            &file,
            format!("{}\n{}\n{line}\n{}\n", good[0], good[1], good[2]),
        )
        .unwrap();
        let out = l.run(&["import", file.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(socai_model_exit(code)),
            "{code}: {err}"
        );
        let at = if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        };
        assert!(
            err.contains(&format!("bad.jsonl:3: {code} at {at}")),
            "{code}: {err}"
        );
        assert!(err.contains("nothing was imported"), "{err}");
        assert_eq!(
            l.verified_size(),
            50,
            "{code}: the ledger must be unchanged"
        );
    }
}

/// SIGKILL kills the process, not the machine: the kernel keeps its page cache, so this proves
/// the writer's own ordering (nothing acknowledged before `commit` returned, atomic batches, clean
/// recovery) but not the fsync itself, which only a power-loss test (e.g. dm-flakey) could.
#[test]
fn sigkill_during_import_loses_nothing_that_was_acknowledged() {
    let l = Ledger::new();
    let file = l.simulate("events.jsonl", 20_000, 5);
    let all_ids = ids(&file);
    // 50 slices of 400 events; each run imports one slice and is killed at a random moment.
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let slices: Vec<(std::path::PathBuf, usize)> = lines
        .chunks(400)
        .enumerate()
        .map(|(i, chunk)| {
            let path = l.path(&format!("slice-{i}.jsonl"));
            std::fs::write(&path, chunk.join("\n")).unwrap();
            (path, i * 400)
        })
        .collect();
    // SOCAI_CRASH_SEED reproduces a failing run's kill moments.
    let seed = std::env::var("SOCAI_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut kills, mut runs) = (0, 0usize);
    let mut max_delay_ms = 400u64;
    while kills < 50 {
        assert!(
            runs < 400,
            "only {kills} of {runs} runs were killed before they finished"
        );
        let (slice, offset) = &slices[runs % slices.len()];
        runs += 1;
        let mut child = l
            .cmd(&[
                "--json",
                "import",
                slice.to_str().unwrap(),
                "--batch-size",
                "20",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pipe = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = 0u64;
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if let Some(n) = v["progress"]["last_line"].as_u64() {
                    last = n;
                }
            }
            last
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(1..=max_delay_ms)));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let acknowledged = reader.join().unwrap() as usize;
        if finished {
            max_delay_ms = (max_delay_ms * 3 / 4).max(5);
        } else {
            kills += 1;
        }
        // After every kill: verify passes (no gaps, links and roots hold) and every batch the
        // importer reported as committed is there. An import killed before the log's first
        // checkpoint leaves nothing signed, which verify rightly refuses: the operator signs one.
        let signed = l.json(&["checkpoint", "--list"]);
        let signed = signed.as_array().expect("a list of checkpoints");
        if signed.is_empty() && l.run(&["show", "0"]).status.success() {
            l.ok(&["checkpoint"]);
        }
        let vkey = l.dir().join("checkpoint.vkey");
        let out = l.run(&["--json", "verify", "--vkey", vkey.to_str().unwrap()]);
        if !out.status.success() {
            let keep = std::env::temp_dir().join(format!("socai-crash-{seed}-run{runs}"));
            socai_e2e::copy_dir(&l.dir(), &keep);
            panic!(
                "seed {seed}, run {runs} (killed: {}): verify failed after SIGKILL; data dir kept in {}\n{}{}",
                !finished,
                keep.display(),
                stdout(&out),
                stderr(&out)
            );
        }
        // The last acknowledged event is there; verify passing means every entry before it is too
        // (the chain links them), so nothing acknowledged was lost.
        if acknowledged > 0 {
            let id = &all_ids[offset + acknowledged - 1];
            let shown = l.json(&["show", id]);
            assert_eq!(
                shown["event"]["id"],
                id.as_str(),
                "run {runs}: acknowledged event {id} lost"
            );
        }
    }
    // Finish the import: every event exactly once.
    l.ok(&["import", file.to_str().unwrap()]);
    assert_eq!(l.verified_size(), all_ids.len() as u64);
    let storage = socai_store::DataDir::new(l.dir())
        .open_storage()
        .expect("open the store");
    for (i, id) in all_ids.iter().enumerate() {
        assert_eq!(
            socai_store::Storage::ids_named(&storage, id).unwrap().len(),
            1,
            "event {i} ({id}) missing or twice"
        );
    }
    eprintln!("{kills} SIGKILLs in {runs} runs survived");
}

#[test]
fn proofs_verify_offline_and_bundles_need_no_data_dir() {
    let l = Ledger::new();
    let file = l.simulate("events.jsonl", 3000, 11);
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(l.path("a.jsonl"), lines[..1000].join("\n")).unwrap();
    std::fs::write(l.path("b.jsonl"), lines[1000..].join("\n")).unwrap();
    l.ok(&["import", l.path("a.jsonl").to_str().unwrap()]);
    l.ok(&["import", l.path("b.jsonl").to_str().unwrap()]);
    let all_ids = ids(&file);
    let vkey = l.dir().join("checkpoint.vkey");
    let verifier =
        socai_chain::CheckpointVerifier::from_vkey(std::fs::read_to_string(&vkey).unwrap().trim())
            .unwrap();

    // Inclusion: by id and by seq, checked here with the auditors' crate alone.
    for (seq, id) in [
        (0usize, &all_ids[0]),
        (1500, &all_ids[1500]),
        (2999, &all_ids[2999]),
    ] {
        let out = l.ok(&["proof", "inclusion", "--id", id]);
        let proof: socai_chain::InclusionProof = serde_json::from_str(&out).unwrap();
        assert_eq!(proof.leaf_index, seq as u64);
        assert_eq!(proof.tree_size, 3000);
        let (entry, _) = proof.verify(&verifier).unwrap();
        assert_eq!(entry.event_id(), id);
        let by_seq = l.ok(&["proof", "inclusion", "--seq", &seq.to_string()]);
        assert_eq!(out, by_seq);
        // Proof size: 32 × ⌈log2 n⌉ bytes at most.
        assert!(proof.path.len() <= 12);
        // A tampered proof fails, through the CLI too.
        let mut bad = proof.clone();
        bad.path[0].0[0] ^= 1;
        let bad_file = l.path("bad-proof.json");
        std::fs::write(&bad_file, serde_json::to_string(&bad).unwrap()).unwrap();
        let out = l.run(&[
            "proof",
            "verify",
            bad_file.to_str().unwrap(),
            "--vkey",
            vkey.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(3));
    }
    // Consistency between the two imports' checkpoints.
    let out = l.ok(&["proof", "consistency", "--from", "1000"]);
    let proof: socai_chain::ConsistencyProof = serde_json::from_str(&out).unwrap();
    assert_eq!((proof.old_size, proof.new_size), (1000, 3000));
    proof.verify().unwrap();
    let cp = l.json(&["checkpoint", "--list"]);
    let sizes: Vec<u64> = cp
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![1000, 3000]);
    let old_note = cp[0]["note"].as_str().unwrap();
    assert_eq!(
        verifier.verify(old_note).unwrap().checkpoint.root,
        proof.old_root
    );
    // An auditor who kept the old checkpoint pins it: verify and the consistency proof use it.
    let kept = l.path("kept-1000.note");
    std::fs::write(&kept, old_note).unwrap();
    let new_note = l.path("kept-3000.note");
    std::fs::write(&new_note, cp[1]["note"].as_str().unwrap()).unwrap();
    let vkey = l.dir().join("checkpoint.vkey");
    let v = l.json(&[
        "verify",
        "--vkey",
        vkey.to_str().unwrap(),
        "--checkpoint",
        kept.to_str().unwrap(),
    ]);
    assert_eq!(v["report"]["pinned_checked"], 1);
    let proof_file = l.path("consistency.json");
    std::fs::write(&proof_file, &out).unwrap();
    let (kept, new_note, proof_file) = (
        kept.to_str().unwrap(),
        new_note.to_str().unwrap(),
        proof_file.to_str().unwrap(),
    );
    l.ok(&[
        "proof",
        "verify",
        proof_file,
        "--checkpoint",
        kept,
        "--checkpoint",
        new_note,
    ]);
    // A checkpoint from another log (another key) is refused, by verify and by proof verify.
    let other = ledger_with(10);
    let foreign = l.path("foreign.note");
    std::fs::write(
        &foreign,
        other.json(&["checkpoint"])["note"].as_str().unwrap(),
    )
    .unwrap();
    let foreign = foreign.to_str().unwrap();
    let out = l.run(&["verify", "--checkpoint", foreign]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = l.run(&["proof", "verify", proof_file, "--checkpoint", foreign]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // Export a middle slice; verify it with no data dir at all.
    let bundle = l.path("bundle.json");
    l.ok(&[
        "export",
        "--from",
        "777",
        "--to",
        "1777",
        "--out",
        bundle.to_str().unwrap(),
    ]);
    let nowhere = l.path("no-such-dir");
    let out = std::process::Command::new(socai_e2e::socai_bin())
        .args([
            "--data-dir",
            nowhere.to_str().unwrap(),
            "verify-bundle",
            bundle.to_str().unwrap(),
            "--vkey",
            vkey.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!nowhere.exists());
    // Any tampered entry in the bundle fails.
    let mut b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let e = b["entries"][500].as_str().unwrap().to_string();
    let mut bytes = base64_decode(&e);
    bytes[10] ^= 0x20;
    b["entries"][500] = base64_encode(&bytes).into();
    std::fs::write(&bundle, b.to_string()).unwrap();
    let out = l.run(&[
        "verify-bundle",
        bundle.to_str().unwrap(),
        "--vkey",
        vkey.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

fn base64_decode(s: &str) -> Vec<u8> {
    let b: socai_chain::InclusionProof = serde_json::from_value(serde_json::json!({
        "leaf_index": 0, "tree_size": 1, "leaf_hash": "00".repeat(32), "entry": s, "path": [], "checkpoint": ""
    }))
    .unwrap();
    b.entry
}

fn base64_encode(bytes: &[u8]) -> String {
    let p = socai_chain::InclusionProof {
        leaf_index: 0,
        tree_size: 1,
        leaf_hash: socai_chain::Hash::ZERO,
        entry: bytes.to_vec(),
        path: vec![],
        checkpoint: String::new(),
    };
    serde_json::to_value(p).unwrap()["entry"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn redaction_erases_personal_data_and_keeps_every_proof_valid() {
    let l = ledger_with(400);
    let file = l.path("events.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let target: serde_json::Value = text
        .lines()
        .map(|x| serde_json::from_str::<serde_json::Value>(x).unwrap())
        .find(|v| v.get("personal").is_some())
        .unwrap();
    let id = target["id"].as_str().unwrap();
    let dossier = target["dossier"].as_str().unwrap();
    let shown = l.json(&["show", id, "--personal"]);
    assert_eq!(shown["personal"]["personal"], target["personal"]);
    let commitment = shown["personal_commitment"].as_str().unwrap().to_string();
    let before = l.ok(&["proof", "inclusion", "--id", id]);

    let r = l.json(&[
        "redact",
        id,
        "--reason",
        "citizen request",
        "--by",
        "inspector-7",
    ]);
    assert_eq!(r["redaction_seq"], 400);
    let shown = l.json(&["show", id, "--personal"]);
    assert!(shown["personal"].is_null(), "{shown}");
    assert_eq!(shown["personal_commitment"], commitment.as_str());
    assert!(
        !l.ok(&["show", id, "--personal"])
            .contains(target["personal"]["full_name"].as_str().unwrap())
    );
    assert_eq!(l.verified_size(), 401);
    // The old proof still verifies; the redaction is in the dossier's history.
    let vkey = l.dir().join("checkpoint.vkey");
    std::fs::write(l.path("before.json"), before).unwrap();
    l.ok(&[
        "proof",
        "verify",
        l.path("before.json").to_str().unwrap(),
        "--vkey",
        vkey.to_str().unwrap(),
    ]);
    let h = l.json(&["history", dossier]);
    let last = h["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"]["type"], "ledger.redacted");
    assert_eq!(last["event"]["data"]["target_id"], id);
    // Redacting twice says so.
    let out = l.run(&["redact", id, "--reason", "again"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already redacted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn lookups_and_missing_things() {
    let l = ledger_with(100);
    let ids = ids(&l.path("events.jsonl"));
    let e = l.json(&["show", &ids[42]]);
    assert_eq!(e["seq"], 42);
    assert_eq!(e["event"]["id"], ids[42].as_str());
    assert_eq!(l.json(&["show", "42"])["seq"], 42);
    let out = l.run(&["show", "no-such-event"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = l.run(&["history", "no-such-dossier"]);
    assert_eq!(out.status.code(), Some(4));
    // A data dir that was never initialised gets told what to do.
    let out = std::process::Command::new(socai_e2e::socai_bin())
        .args(["--data-dir", "/nonexistent/x", "verify"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("socai init"), "{}", stderr(&out));
}
