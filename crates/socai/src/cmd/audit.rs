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
use std::io::Write;
use std::path::Path;
use std::time::Instant;

pub(crate) fn read_vkey(path: &Path) -> anyhow::Result<CheckpointVerifier> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading verifier key {}", path.display()))?;
    CheckpointVerifier::from_vkey(text.trim())
        .with_context(|| format!("verifier key {}", path.display()))
}

fn verification_failed(message: String) -> anyhow::Error {
    Exit::error(EXIT_VERIFY, "verification_failed", message)
}

/// Exit status of `socai verify` without `--vkey`: the ledger is internally consistent, but
/// nothing was checked against a key the auditor trusts, so nothing is certified.
pub const EXIT_NOT_CERTIFIED: u8 = 5;

/// `socai verify` with the default checks (indexes included).
pub fn verify(
    g: &Global,
    vkey: Option<&Path>,
    threads: Option<usize>,
    pinned: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    verify_checked(g, vkey, threads, pinned, true, false)
}

/// `socai verify`. With `vkey` (the log's published checkpoint.vkey, obtained independently of
/// the data dir) a success certifies the log. Without it the data dir's own checkpoint.vkey is
/// used only to check internal consistency: whoever rewrote a data dir could have replaced that
/// key and re-signed every checkpoint, so the result is "consistent, NOT verified" and the exit
/// status [`EXIT_NOT_CERTIFIED`], never "ok".
pub fn verify_with(
    g: &Global,
    vkey: Option<&Path>,
    threads: Option<usize>,
    pinned: &[std::path::PathBuf],
    indexes: bool,
) -> anyhow::Result<()> {
    verify_checked(g, vkey, threads, pinned, indexes, true)
}

/// `warn_own_key`: warn when `vkey` is the data dir's own key file (not for the demo, which
/// made that key a moment ago).
fn verify_checked(
    g: &Global,
    vkey: Option<&Path>,
    threads: Option<usize>,
    pinned: &[std::path::PathBuf],
    indexes: bool,
    warn_own_key: bool,
) -> anyhow::Result<()> {
    if let Some(remote) = super::remote::Remote::from(g)? {
        let Some(vkey) = vkey else {
            return Err(Exit::error(
                2,
                "usage",
                "verify --api needs --vkey FILE: the log's published verifier key (its checkpoint.vkey), the one thing an auditor must not take from the server",
            ));
        };
        return remote.verify(vkey, pinned);
    }
    let dir = data_dir(g);
    let own_vkey = dir.vkey_path();
    let trusted = match vkey {
        Some(p) => {
            let same = std::fs::canonicalize(p)
                .ok()
                .zip(std::fs::canonicalize(&own_vkey).ok())
                .is_some_and(|(a, b)| a == b);
            if same && warn_own_key {
                tracing::warn!(
                    vkey = %p.display(),
                    "--vkey is the data dir's own key file; an auditor should pass a copy of the published checkpoint.vkey obtained independently of this data dir"
                );
            }
            read_vkey(p)?
        }
        // Internal consistency only (see below): the data dir's own key, never certified.
        None => dir.verifier()?,
    };
    let storage = dir.open_storage()?;
    let head = storage.head()?;
    let mut options = VerifyOptions {
        indexes,
        ..VerifyOptions::default()
    };
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
            let summary = format!(
                "{} entries ({} stored Merkle hashes re-derived, {} checkpoints, {} personal records, {} redacted{}) in {secs:.2}s ({rate:.0}/s)\nroot {}",
                report.entries,
                report.stored_hashes_checked,
                report.checkpoints_checked,
                report.personal_checked,
                report.personal_redacted,
                if report.indexes_checked {
                    ", id and dossier indexes"
                } else {
                    "; indexes NOT checked (--no-indexes)"
                },
                report.root
            );
            let key = format!("{} ({:08x})", trusted.name(), trusted.key_id());
            let Some(vkey) = vkey else {
                emit(
                    &json!({"ok": false, "consistent": true, "certified": false,
                        "reason": "no trusted key: pass --vkey <path of the published checkpoint.vkey>",
                        "data_dir_vkey": own_vkey, "key": key, "report": report,
                        "seconds": secs, "entries_per_second": rate}),
                    || format!("internally consistent: {summary}"),
                );
                return Err(Exit::error(
                    EXIT_NOT_CERTIFIED,
                    "not_certified",
                    format!(
                        "NOT verified against a trusted key: the checkpoints are signed by the data dir's own {} ({key}), which whoever wrote this data dir could have replaced; pass --vkey <path of the published checkpoint.vkey> (a copy obtained from the log's operator, not from this data dir)",
                        own_vkey.display()
                    ),
                ));
            };
            emit(
                &json!({"ok": true, "consistent": true, "certified": true, "vkey": vkey,
                    "key": key, "report": report, "seconds": secs, "entries_per_second": rate}),
                || {
                    let mut s = format!(
                        "ok: {summary}\nsigned by {key}, the key in {}",
                        vkey.display()
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
    if !matches!(kind, ProofKind::Verify { .. })
        && let Some(remote) = super::remote::Remote::from(g)?
    {
        return remote.proof(&kind);
    }
    match kind {
        ProofKind::Inclusion {
            id, seq, tree_size, ..
        } => {
            let (ledger, _) = open_ledger(g)?;
            let seq = match (id, seq) {
                (Some(id), _) => ledger.seq_of(&id).map_err(not_found)?,
                (None, Some(seq)) => seq,
                (None, None) => {
                    return Err(Exit::error(2, "usage", "give --id ID or --seq N"));
                }
            };
            let proof = ledger.inclusion_proof(seq, tree_size).map_err(not_found)?;
            super::print_proof_bytes(&serde_json::to_vec(&proof)?)
        }
        ProofKind::Consistency { from, to } => {
            let (ledger, _) = open_ledger(g)?;
            let proof = ledger.consistency_proof(from, to)?;
            super::print_proof_bytes(&serde_json::to_vec(&proof)?)
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
    if let Some(remote) = super::remote::Remote::from(g)? {
        return remote.export(from, to, out, with_personal);
    }
    let (ledger, _) = open_ledger(g)?;
    let (signed, end) = ledger.export_bounds(from, to)?;
    let bar = output::progress(end.saturating_sub(from), "export");
    // Streamed: memory stays bounded whatever the range.
    let (bytes, target) = match out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let n = ledger.export_to(&mut w, from, Some(end), with_personal, &|n| {
                bar.set_position(n)
            })?;
            w.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            (n, Some(path))
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            let n = ledger.export_to(&mut w, from, Some(end), with_personal, &|n| {
                bar.set_position(n)
            })?;
            w.write_all(b"\n")?;
            w.flush()?;
            (n, None)
        }
    };
    bar.finish_and_clear();
    if let Some(path) = target {
        let tree_size = signed.checkpoint.size;
        if output::json_mode() {
            println!(
                "{}",
                json!({"file": path, "from": from, "to": end, "tree_size": tree_size, "bytes": bytes})
            );
        } else {
            eprintln!(
                "exported entries {from}..{end} ({bytes} bytes) bound to the signed checkpoint of size {tree_size} into {}",
                path.display()
            );
        }
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
