//! The auditor's commands: verify, proofs, export and verify-bundle.

use super::{data_dir, not_found, open_ledger};
use crate::cli::{Global, ProofKind};
use crate::output::{self, EXIT_VERIFY, Exit, emit};
use anyhow::Context;
use serde_json::json;
use socai_chain::bundle::Bundle;
use socai_chain::checkpoint::CheckpointVerifier;
use socai_chain::{ConsistencyProof, InclusionProof};
use socai_store::{Storage, VerifyOptions, verify_ledger};
use std::path::Path;
use std::time::Instant;

fn read_vkey(path: &Path) -> anyhow::Result<CheckpointVerifier> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading verifier key {}", path.display()))?;
    CheckpointVerifier::from_vkey(text.trim())
        .with_context(|| format!("verifier key {}", path.display()))
}

fn verification_failed(message: String) -> anyhow::Error {
    Exit::error(EXIT_VERIFY, "verification_failed", message)
}

pub fn verify(
    g: &Global,
    vkey: Option<&Path>,
    threads: Option<usize>,
    pinned: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    let dir = data_dir(g);
    let trusted = match vkey {
        Some(p) => read_vkey(p)?,
        None => dir.verifier()?,
    };
    let storage = dir.open_storage()?;
    let head = storage.head()?;
    let mut options = VerifyOptions::default();
    if let Some(t) = threads {
        options.threads = t.max(1);
    }
    for path in pinned {
        options.pinned.push(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading checkpoint note {}", path.display()))?,
        );
    }
    let bar = output::progress(head.size, "verify");
    let started = Instant::now();
    let result = verify_ledger(&storage, &trusted, &options, &|n| bar.set_position(n));
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    match result {
        Ok(report) => {
            let rate = report.entries as f64 / secs.max(1e-9);
            let unattested = report.entries - report.latest_checkpoint_size;
            emit(
                &json!({"ok": true, "report": report, "seconds": secs, "entries_per_second": rate}),
                || {
                    let mut s = format!(
                        "ok: {} entries verified ({} checkpoints, {} personal records) in {secs:.2}s ({rate:.0}/s)\nroot {}",
                        report.entries,
                        report.checkpoints_checked,
                        report.personal_checked,
                        report.root
                    );
                    if unattested > 0 {
                        s.push_str(&format!(
                        "\nnote: the last {unattested} entries are not covered by a signed checkpoint yet; run `socai checkpoint`"
                    ));
                    }
                    s
                },
            );
            Ok(())
        }
        Err(e) => {
            // The error names the first bad seq itself ("seq N: ...").
            let message = format!("verification failed: {e}");
            if output::json_mode() {
                println!(
                    "{}",
                    json!({"ok": false, "seq": e.seq(), "reason": e.to_string()})
                );
            }
            Err(verification_failed(message))
        }
    }
}

pub fn proof(g: &Global, kind: ProofKind) -> anyhow::Result<()> {
    match kind {
        ProofKind::Inclusion { id, seq, tree_size } => {
            let (ledger, _) = open_ledger(g)?;
            let seq = match (id, seq) {
                (Some(id), _) => ledger.seq_of(&id).map_err(not_found)?,
                (None, Some(seq)) => seq,
                (None, None) => {
                    return Err(Exit::error(2, "usage", "give --id ID or --seq N"));
                }
            };
            let proof = ledger.inclusion_proof(seq, tree_size).map_err(not_found)?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(())
        }
        ProofKind::Consistency { from, to } => {
            let (ledger, _) = open_ledger(g)?;
            let proof = ledger.consistency_proof(from, to)?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(())
        }
        ProofKind::Verify {
            file,
            vkey,
            checkpoints,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            if value.get("leaf_index").is_some() {
                let proof: InclusionProof =
                    serde_json::from_value(value).context("not an inclusion proof")?;
                let trusted = match vkey {
                    Some(p) => read_vkey(&p)?,
                    None => data_dir(g).verifier().context("no --vkey given")?,
                };
                let (entry, _) = proof.verify(&trusted).map_err(|e| {
                    verification_failed(format!("inclusion proof does not verify: {e}"))
                })?;
                emit(
                    &json!({"ok": true, "leaf_index": proof.leaf_index, "tree_size": proof.tree_size, "id": entry.event_id()}),
                    || {
                        format!(
                            "ok: event {} is entry {} of the signed tree of size {}",
                            entry.event_id(),
                            proof.leaf_index,
                            proof.tree_size
                        )
                    },
                );
            } else {
                let proof: ConsistencyProof = serde_json::from_value(value)
                    .context("not an inclusion or consistency proof")?;
                proof.verify().map_err(|e| {
                    verification_failed(format!("consistency proof does not verify: {e}"))
                })?;
                // The proof binds two roots; signed checkpoints say whose roots they are.
                if !checkpoints.is_empty() {
                    let trusted = match vkey {
                        Some(p) => read_vkey(&p)?,
                        None => data_dir(g).verifier().context("no --vkey given")?,
                    };
                    for path in &checkpoints {
                        let note = std::fs::read_to_string(path)
                            .with_context(|| format!("reading {}", path.display()))?;
                        let signed = trusted.verify(&note).map_err(|e| {
                            verification_failed(format!("checkpoint {}: {e}", path.display()))
                        })?;
                        let c = &signed.checkpoint;
                        let expected = if c.size == proof.old_size {
                            proof.old_root
                        } else if c.size == proof.new_size {
                            proof.new_root
                        } else {
                            return Err(verification_failed(format!(
                                "checkpoint {} is for size {}, the proof for {} and {}",
                                path.display(),
                                c.size,
                                proof.old_size,
                                proof.new_size
                            )));
                        };
                        if c.root != expected {
                            return Err(verification_failed(format!(
                                "checkpoint {} signs root {} at size {}, the proof says {expected}",
                                path.display(),
                                c.root,
                                c.size
                            )));
                        }
                    }
                } else if !output::json_mode() {
                    eprintln!(
                        "note: the roots were not compared with signed checkpoints; pass --checkpoint NOTE_FILE for each"
                    );
                }
                emit(
                    &json!({"ok": true, "old_size": proof.old_size, "new_size": proof.new_size}),
                    || {
                        format!(
                            "ok: the tree of size {} (root {}) extends the tree of size {} (root {})",
                            proof.new_size, proof.new_root, proof.old_size, proof.old_root
                        )
                    },
                );
            }
            Ok(())
        }
    }
}

pub fn export(
    g: &Global,
    from: u64,
    to: Option<u64>,
    out: Option<&Path>,
    with_personal: bool,
) -> anyhow::Result<()> {
    let (ledger, _) = open_ledger(g)?;
    let end = match to {
        Some(to) => to,
        None => ledger
            .latest_checkpoint()?
            .map(|c| c.checkpoint.size)
            .unwrap_or(0),
    };
    let bar = output::progress(end.saturating_sub(from), "export");
    let bundle = ledger.export(from, to, with_personal, &|n| bar.set_position(n))?;
    bar.finish_and_clear();
    let text = serde_json::to_string(&bundle)?;
    match out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            let msg = format!(
                "exported entries {}..{} ({} bytes) bound to the signed checkpoint of size {} into {}",
                bundle.from,
                bundle.to,
                text.len(),
                bundle.tree_size,
                path.display()
            );
            if output::json_mode() {
                println!(
                    "{}",
                    json!({"file": path, "from": bundle.from, "to": bundle.to, "tree_size": bundle.tree_size, "bytes": text.len()})
                );
            } else {
                eprintln!("{msg}");
            }
        }
        None => println!("{text}"),
    }
    Ok(())
}

pub fn verify_bundle(file: &Path, vkey: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let bundle: Bundle = serde_json::from_slice(&text).map_err(|e| {
        verification_failed(format!("{} is not a socai bundle: {e}", file.display()))
    })?;
    let trusted = read_vkey(vkey)?;
    let bar = output::progress(bundle.entries.len() as u64, "verify");
    let report = bundle.verify(Some(&trusted));
    bar.finish_and_clear();
    let report = report.map_err(|e| {
        verification_failed(format!("bundle {} does not verify: {e}", file.display()))
    })?;
    emit(&json!({"ok": true, "report": report}), || {
        let mut s = format!(
            "ok: entries {}..{} are entries of the log signed by {} ({}) at tree size {}, root {}",
            report.from, report.to, report.key_name, report.key_id, report.tree_size, report.root
        );
        if report.personal_checked > 0 {
            s.push_str(&format!(
                "\n{} personal disclosures match their commitments",
                report.personal_checked
            ));
        }
        s
    });
    Ok(())
}
