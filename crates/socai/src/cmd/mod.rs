//! Subcommands. Each opens what it needs from the data dir, does one thing, and prints the result
//! (text or `--json`).

mod audit;
mod demo;
mod import;
pub mod metrics;
pub mod nats;

use crate::cli::{AuditKind, BenchKind, Cli, Command, Global};
use crate::config::{self, Config};
use crate::output::{EXIT_NOT_FOUND, Exit, emit};
use anyhow::Context;
use serde_json::json;
use socai_store::{DataDir, Ledger, LedgerError, SledStorage, Storage};
use std::io::Write;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init { origin } => init(g, &origin),
        Command::Import { file, batch_size } => import::run(g, &file, batch_size),
        Command::Verify {
            vkey,
            threads,
            pinned,
        } => audit::verify(g, vkey.as_deref(), threads, &pinned),
        Command::Checkpoint { list } => checkpoint(g, list),
        Command::Proof { kind } => audit::proof(g, kind),
        Command::Export {
            from,
            to,
            out,
            with_personal,
        } => audit::export(g, from, to, out.as_deref(), with_personal),
        Command::VerifyBundle { file, vkey } => audit::verify_bundle(&file, &vkey),
        Command::History { dossier } => history(g, &dossier),
        Command::Show {
            id_or_seq,
            personal,
        } => show(g, &id_or_seq, personal),
        Command::Redact { id, reason, by } => redact(g, &id, &reason, &by),
        Command::Simulate {
            events,
            seed,
            provinces,
            procedures_per_agency,
            out,
        } => {
            let config = socai_sim::SimConfig {
                seed,
                provinces,
                procedures_per_agency,
                ..Default::default()
            };
            simulate(events, config, out.as_deref())
        }
        Command::Serve { for_seconds } => nats::serve(g, for_seconds),
        Command::Publish { file, in_flight } => nats::publish(g, &file, in_flight),
        Command::Demo { events } => demo::run(g, events),
        Command::Project {
            name,
            shard,
            for_seconds,
        } => metrics::project(g, &name, &shard, for_seconds),
        Command::Metrics {
            metric,
            scope,
            window,
        } => metrics::show(
            g,
            &metrics::Filter::parse(&metric, scope.as_deref(), window.as_deref())?,
        ),
        Command::Audit {
            kind: AuditKind::Metrics { at },
        } => metrics::audit(g, at),
        Command::Bench {
            kind:
                BenchKind::Metrics {
                    events,
                    rate,
                    seconds,
                    nats_server,
                    dir,
                },
        } => crate::bench::metrics(
            g,
            events,
            rate,
            seconds,
            nats_server.as_deref(),
            dir.as_deref(),
        ),
        Command::Bench {
            kind:
                BenchKind::Store {
                    events,
                    batch_size,
                    dir,
                },
        } => crate::bench::store(events, batch_size, dir.as_deref()),
        Command::Bench {
            kind:
                BenchKind::Ingest {
                    events,
                    nats_server,
                    dir,
                },
        } => crate::bench::ingest(g, events, nats_server.as_deref(), dir.as_deref()),
    }
}

/// The current time as the RFC 3339 UTC string entries record (millisecond precision).
pub fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

pub fn data_dir(g: &Global) -> DataDir {
    DataDir::new(&g.data_dir)
}

pub fn open_ledger(g: &Global) -> anyhow::Result<(Ledger<SledStorage>, Config)> {
    let config = Config::load(&g.data_dir)?;
    let ledger = data_dir(g).open_ledger(config.ledger())?;
    Ok((ledger, config))
}

/// Maps "not found" ledger errors to exit status 4.
pub fn not_found(err: LedgerError) -> anyhow::Error {
    match err {
        LedgerError::UnknownId(_)
        | LedgerError::UnknownSeq { .. }
        | LedgerError::NoCheckpointAt(_) => {
            Exit::error(EXIT_NOT_FOUND, "not_found", err.to_string())
        }
        other => other.into(),
    }
}

fn init(g: &Global, origin: &str) -> anyhow::Result<()> {
    let dir = data_dir(g);
    let vkey = dir.init(origin)?;
    let config_path = g.data_dir.join(config::FILE_NAME);
    if !config_path.exists() {
        std::fs::write(&config_path, Config::default_text())
            .with_context(|| format!("writing {}", config_path.display()))?;
    }
    // Create the store now so later commands find a complete data dir.
    drop(dir.open_storage()?);
    emit(
        &json!({"data_dir": g.data_dir, "origin": origin, "vkey": vkey, "vkey_file": dir.vkey_path()}),
        || {
            format!(
                "initialised {}\norigin:       {origin}\nverifier key: {vkey}\n              (in {}; give this file to auditors)",
                g.data_dir.display(),
                dir.vkey_path().display()
            )
        },
    );
    Ok(())
}

fn checkpoint(g: &Global, list: bool) -> anyhow::Result<()> {
    let (mut ledger, _) = open_ledger(g)?;
    if list {
        let all = ledger.storage().checkpoints()?;
        emit(
            &json!(
                all.iter()
                    .map(|(s, n)| json!({"size": s, "note": n}))
                    .collect::<Vec<_>>()
            ),
            || {
                if all.is_empty() {
                    "no signed checkpoints yet; run `socai checkpoint`".to_string()
                } else {
                    all.iter()
                        .map(|(s, _)| format!("{s}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            },
        );
        return Ok(());
    }
    let signed = ledger.checkpoint()?;
    emit(
        &json!({"size": signed.checkpoint.size, "root": signed.checkpoint.root, "note": signed.note}),
        || signed.note.clone(),
    );
    Ok(())
}

fn resolve_seq(ledger: &Ledger<SledStorage>, id_or_seq: &str) -> anyhow::Result<u64> {
    match ledger.seq_of(id_or_seq) {
        Ok(seq) => Ok(seq),
        Err(LedgerError::UnknownId(_)) if id_or_seq.parse::<u64>().is_ok() => {
            Ok(id_or_seq.parse::<u64>()?)
        }
        Err(e) => Err(not_found(e)),
    }
}

fn entry_json(
    ledger: &Ledger<SledStorage>,
    seq: u64,
    with_personal: bool,
) -> anyhow::Result<serde_json::Value> {
    let bytes = ledger.entry_bytes(seq).map_err(not_found)?;
    let mut value: serde_json::Value =
        serde_json::from_slice(&bytes).context("stored entry is not JSON; run `socai verify`")?;
    let leaf = socai_chain::leaf_hash(&bytes);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("leaf_hash".into(), json!(leaf));
        if with_personal {
            let personal = ledger.personal(seq)?;
            obj.insert("personal".into(), json!(personal));
        }
    }
    Ok(value)
}

fn show(g: &Global, id_or_seq: &str, with_personal: bool) -> anyhow::Result<()> {
    let (ledger, _) = open_ledger(g)?;
    let seq = resolve_seq(&ledger, id_or_seq)?;
    let value = entry_json(&ledger, seq, with_personal)?;
    emit(&value, || {
        serde_json::to_string_pretty(&value).unwrap_or_default()
    });
    Ok(())
}

fn history(g: &Global, dossier: &str) -> anyhow::Result<()> {
    let (ledger, _) = open_ledger(g)?;
    let seqs = ledger.history(dossier)?;
    if seqs.is_empty() {
        return Err(Exit::error(
            EXIT_NOT_FOUND,
            "not_found",
            format!("no events for dossier {dossier:?}"),
        ));
    }
    let mut rows = Vec::with_capacity(seqs.len());
    for seq in seqs {
        rows.push(entry_json(&ledger, seq, false)?);
    }
    emit(&json!({"dossier": dossier, "entries": rows}), || {
        let mut out = format!(
            "{:>10}  {:<26}  {:<30}  {}\n",
            "seq", "occurred_at", "type", "id"
        );
        for r in &rows {
            let e = &r["event"];
            out.push_str(&format!(
                "{:>10}  {:<26}  {:<30}  {}\n",
                r["seq"],
                e["occurred_at"].as_str().unwrap_or(""),
                e["type"].as_str().unwrap_or(""),
                e["id"].as_str().unwrap_or("")
            ));
        }
        out.trim_end().to_string()
    });
    Ok(())
}

fn redact(g: &Global, id: &str, reason: &str, by: &str) -> anyhow::Result<()> {
    let (mut ledger, _) = open_ledger(g)?;
    let (target, redaction) = ledger
        .redact(id, reason, by, &now_rfc3339())
        .map_err(not_found)?;
    let signed = ledger.checkpoint()?;
    emit(
        &json!({"id": id, "target_seq": target, "redaction_seq": redaction, "tree_size": signed.checkpoint.size}),
        || {
            format!(
                "redacted personal data of {id} (seq {target}); redaction recorded at seq {redaction}"
            )
        },
    );
    Ok(())
}

fn simulate(
    events: u64,
    config: socai_sim::SimConfig,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut w: Box<dyn Write> = match out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut w);
    for event in socai_sim::Generator::new(config).take(events as usize) {
        serde_json::to_writer(&mut w, &event)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}
