//! `socai import FILE.jsonl`: validate the whole file first (every bad line reported with its line
//! number, nothing written if any is bad), then append in atomic batches and sign a checkpoint.
//! An interrupted import is safe to re-run: committed events come back as duplicates.

use super::{now_rfc3339, open_ledger};
use crate::cli::Global;
use crate::output::{self, Exit, emit};
use crate::pipeline;
use anyhow::Context;
use serde_json::json;
use socai_model::{Rejection, Validator};
use socai_store::{AppendOutcome, Ledger, SledStorage};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

/// Bad lines listed in full before the rest are only counted.
const MAX_REPORTED_ERRORS: usize = 100;

struct LineError {
    line: u64,
    id: Option<String>,
    rejection: Rejection,
}

fn conflict(reason: String) -> Rejection {
    Rejection {
        code: socai_model::ErrorCode::Conflict,
        path: "/id".into(),
        reason,
    }
}

/// Pass 1 for one line: validation, then the id against the file so far (`seen`: id → truncated
/// content digest) and against the ledger. The outer error is a storage failure, which aborts.
fn check_line(
    validator: &Validator,
    ledger: &Ledger<SledStorage>,
    seen: &mut HashMap<String, [u8; 8]>,
    line: &[u8],
) -> anyhow::Result<Result<(), Rejection>> {
    let event = match validator.validate(line) {
        Ok(event) => event,
        Err(rejection) => return Ok(Err(rejection)),
    };
    let content = socai_chain::canonical_json(&serde_json::to_value(&event)?);
    let digest = socai_chain::hash::sha256(&content);
    let mut short = [0u8; 8];
    short.copy_from_slice(&digest.0[..8]);
    match seen.get(&event.id) {
        Some(earlier) if *earlier != short => {
            let id = &event.id;
            return Ok(Err(conflict(format!(
                "id {id:?} appears earlier in the file with different content"
            ))));
        }
        Some(_) => {}
        None => {
            seen.insert(event.id.clone(), short);
        }
    }
    Ok(match ledger.classify(&event)? {
        Some(AppendOutcome::Conflict { existing_seq }) => Err(conflict(format!(
            "id {:?} is already committed at seq {existing_seq} with different content",
            event.id
        ))),
        Some(outcome) => outcome.refusal(&event.id).map_or(Ok(()), Err),
        None => Ok(()),
    })
}

fn lines(
    path: &Path,
) -> anyhow::Result<(u64, impl Iterator<Item = std::io::Result<Vec<u8>>> + use<>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    Ok((len, reader.split(b'\n')))
}

pub fn run(g: &Global, path: &Path, batch_size: Option<usize>) -> anyhow::Result<()> {
    let (mut ledger, config) = open_ledger(g)?;
    let validator = Validator::new(config.limits());
    let batch_size = batch_size.unwrap_or(config.import_batch_events).max(1);

    // Pass 1: validate every line; check ids against the ledger and within the file.
    let (len, iter) = lines(path)?;
    let bar = output::progress_bytes(len, "validate");
    let mut errors: Vec<LineError> = Vec::new();
    let mut error_count = 0u64;
    // id → content digest (truncated); a few dozen bytes per event, bounded by the file.
    let mut seen: HashMap<String, [u8; 8]> = HashMap::new();
    let mut events_total = 0u64;
    for (index, line) in iter.enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let line_no = index as u64 + 1;
        bar.inc(line.len() as u64 + 1);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        events_total += 1;
        let result = check_line(&validator, &ledger, &mut seen, &line)?;
        if let Err(rejection) = result {
            error_count += 1;
            if errors.len() < MAX_REPORTED_ERRORS {
                let id = serde_json::from_slice::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string));
                errors.push(LineError {
                    line: line_no,
                    id,
                    rejection,
                });
            }
        }
    }
    bar.finish_and_clear();
    drop(seen);
    if let Some(first) = errors.first() {
        let code = first.rejection.code;
        if output::json_mode() {
            for e in &errors {
                println!(
                    "{}",
                    json!({"line": e.line, "id": e.id, "code": e.rejection.code, "path": e.rejection.path, "reason": e.rejection.reason})
                );
            }
        } else {
            for e in &errors {
                eprintln!("{}:{}: {}", path.display(), e.line, e.rejection);
            }
        }
        let more = if error_count as usize > errors.len() {
            format!(" ({} listed)", errors.len())
        } else {
            String::new()
        };
        return Err(Exit::error(
            u8::try_from(code.exit_code()).unwrap_or(1),
            code.as_str(),
            format!(
                "{error_count} of {events_total} events in {} are invalid{more}; nothing was imported; fix the lines above and re-run",
                path.display()
            ),
        ));
    }

    // Pass 2: append in atomic batches, validating the next batch on another core meanwhile.
    // All events of one import share its recorded_at.
    let recorded_at = now_rfc3339();
    let (len, iter) = lines(path)?;
    let bar = output::progress_bytes(len, "import");
    let (mut committed, mut duplicates) = (0u64, 0u64);
    let numbered = (1u64..).zip(iter).map(|(n, line)| line.map(|l| (n, l)));
    let batches = pipeline::validate_in_background(numbered, validator, batch_size);
    for batch in batches {
        let batch = batch.map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (the file changed during the import?)",
                path.display()
            )
        })?;
        let outcomes = ledger.append_batch(&batch.events, &recorded_at)?;
        for (event, outcome) in batch.events.iter().zip(&outcomes) {
            match outcome {
                AppendOutcome::Committed { .. } => committed += 1,
                AppendOutcome::Duplicate { .. } => duplicates += 1,
                AppendOutcome::Conflict { existing_seq } => anyhow::bail!(
                    "id {:?} conflicts with seq {existing_seq} although it validated; another writer?",
                    event.id
                ),
                AppendOutcome::Oversized { entry_bytes } => anyhow::bail!(
                    "id {:?}: its entry of {entry_bytes} bytes is too large although it validated",
                    event.id
                ),
            }
        }
        // Printed only after the batch is fsynced: a consumer may treat these lines as durable.
        if output::json_mode() {
            println!(
                "{}",
                json!({"progress": {"last_line": batch.last_line, "committed": committed,
                                    "duplicates": duplicates, "size": ledger.head().size}})
            );
        }
        bar.inc(batch.bytes);
    }
    bar.finish_and_clear();
    let signed = if ledger.head().size > 0 {
        Some(ledger.checkpoint()?)
    } else {
        None
    };
    let head = ledger.head();
    emit(
        &json!({"imported": committed, "duplicates": duplicates, "size": head.size, "root": ledger.root(),
                "checkpoint": signed.as_ref().map(|s| &s.note)}),
        || {
            format!(
                "imported {committed} events ({duplicates} duplicates skipped) from {}\nledger size {}, root {}",
                path.display(),
                head.size,
                ledger.root()
            )
        },
    );
    Ok(())
}
