//! Subcommands. Each opens what it needs from the data dir, does one thing, and prints the result
//! (text or `--json`).

mod audit;
mod demo;
mod import;
pub mod metrics;
pub mod nats;
mod remote;
mod witness;

use crate::cli::{AuditKind, BenchKind, Cli, Command, Global, ProofKind, TokenKind};
use crate::config::{self, Config};
use crate::output::{EXIT_NOT_FOUND, EXIT_VERIFY, Exit, emit};
use anyhow::Context;
use serde_json::json;
use socai_store::{DataDir, Ledger, LedgerError, SledStorage, Storage};
use std::io::Write;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Init { origin, keys_from } => {
            local_only(g, "init")?;
            init(g, &origin, keys_from.as_deref())
        }
        Command::Import { file, batch_size } => {
            local_only(g, "import")?;
            import::run(g, &file, batch_size)
        }
        Command::Verify {
            vkey,
            no_indexes,
            threads,
            pinned,
            witnesses,
            required_witnesses,
        } => {
            if witnesses.is_empty() {
                audit::verify_with(g, vkey.as_deref(), threads, &pinned, !no_indexes)
            } else {
                let Some(remote) = remote::Remote::from(g)? else {
                    return Err(Exit::error(
                        2,
                        "usage",
                        "verify --witness works with --api URL: the cosignatures are the running ledger's",
                    ));
                };
                let vkey = vkey.as_deref().unwrap_or(std::path::Path::new(""));
                let required = required_witnesses.map_or(witnesses.len(), |k| k as usize);
                remote.verify_witnessed(vkey, &pinned, &witnesses, required)
            }
        }
        Command::Checkpoint { list } => checkpoint(g, list),
        Command::Proof {
            kind:
                ProofKind::Inclusion {
                    receipt: Some(file),
                    id,
                    ..
                },
        } => receipt_proof(g, &file, id.as_deref()),
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
        Command::Token { kind } => token(kind),
        Command::Simulate {
            events,
            seed,
            provinces,
            communes_per_province,
            procedures_per_agency,
            out,
        } => {
            let config = socai_sim::SimConfig {
                seed,
                provinces: usize::from(provinces),
                procedures_per_agency,
                communes_per_province,
                ..Default::default()
            };
            simulate(events, config, out.as_deref())
        }
        Command::Serve {
            for_seconds,
            http,
            witnesses,
            replica_of,
            replica_name,
            promote,
            replicas,
        } => nats::serve(
            g,
            for_seconds,
            http.as_deref(),
            &witnesses,
            &nats::Role {
                replica_of,
                replica_name,
                promote,
                replicas,
            },
        ),
        Command::Witness { action } => witness::run(action),
        Command::Publish {
            file,
            in_flight,
            receipts,
            vkey,
            receipt_timeout,
            give_up_after,
            no_receipts,
            format,
            agency,
        } => nats::publish(
            g,
            &nats::PublishArgs {
                file,
                in_flight,
                receipts_out: receipts,
                vkey,
                receipt_timeout: std::time::Duration::from_secs(receipt_timeout),
                give_up_after: std::time::Duration::from_secs(give_up_after),
                no_receipts,
                format,
                agency,
            },
        ),
        Command::Demo {
            once,
            events,
            dir,
            rate,
            http,
        } => demo::run(g, once, events, dir, rate, http),
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
            &metrics::parse_filter(&metric, scope.as_deref(), window.as_deref())?,
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
                BenchKind::Api {
                    events,
                    clients,
                    rate,
                    seconds,
                    subscribers,
                    request_rate,
                    nats_server,
                    dir,
                },
        } => crate::bench_api::run(
            g,
            &crate::bench_api::ApiBench {
                events,
                clients,
                rate,
                seconds,
                subscribers,
                request_rate: (request_rate > 0.0).then_some(request_rate),
            },
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
                    rounds,
                },
        } => crate::bench::ingest(
            g,
            events,
            nats_server.as_deref(),
            dir.as_deref(),
            rounds as usize,
        ),
        Command::Bench {
            kind:
                BenchKind::Cluster {
                    events,
                    kills,
                    nats_server,
                    dir,
                },
        } => crate::bench_cluster::run(
            events,
            kills as usize,
            nats_server.as_deref(),
            dir.as_deref(),
        ),
        Command::Bench {
            kind:
                BenchKind::Scale {
                    entries,
                    dossiers,
                    per_year,
                    dir,
                },
        } => crate::bench_scale::run(entries, dossiers, per_year, dir.as_deref()),
        Command::Bench {
            kind:
                BenchKind::All {
                    out,
                    quick,
                    nats_server,
                    dir,
                },
        } => crate::bench_report::all(&out, quick, nats_server.as_deref(), dir.as_deref()),
    }
}

/// The current time as the RFC 3339 UTC string entries record (millisecond precision).
pub fn now_rfc3339() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

pub fn data_dir(g: &Global) -> DataDir {
    DataDir::new(&g.data_dir)
}

/// The repository: the first of the current dir, its parents and the binary's parents that has
/// `deploy/nats/single.conf` (the shipped nats-server configs the demo and the cluster benchmark run).
pub(crate) fn repo_root() -> anyhow::Result<std::path::PathBuf> {
    let marker = std::path::Path::new("deploy/nats/single.conf");
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(std::path::Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(std::path::Path::to_path_buf));
    }
    candidates
        .into_iter()
        .find(|d| d.join(marker).is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "deploy/nats/single.conf not found in the current dir, its parents or beside the socai binary: run it from the repository (deploy/demo.sh does)"
            )
        })
}

pub fn open_ledger(g: &Global) -> anyhow::Result<(Ledger<SledStorage>, Config)> {
    let config = Config::load(&g.data_dir)?;
    let ledger = data_dir(g).open_ledger(config.ledger())?;
    Ok((ledger, config))
}

/// Whether a command failed with "not found" (exit status 4).
pub fn is_not_found(err: &anyhow::Error) -> bool {
    crate::output::exit_code(err) == EXIT_NOT_FOUND
}

/// A proof as JSON: compact with --json (the bytes the HTTP API serves), indented otherwise.
pub fn print_proof_bytes(bytes: &[u8]) -> anyhow::Result<()> {
    if crate::output::json_mode() {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.write_all(b"\n")?;
    } else {
        let value: serde_json::Value = serde_json::from_slice(bytes)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(())
}

/// The receipts of a file: one receipt JSON (possibly indented), or JSON Lines of receipts.
fn read_receipts(path: &std::path::Path) -> anyhow::Result<Vec<socai_chain::Receipt>> {
    use socai_chain::Receipt;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading receipts from {}", path.display()))?;
    if let Ok(one) = Receipt::from_json(text.trim().as_bytes()) {
        return Ok(vec![one]);
    }
    let mut all = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        all.push(Receipt::from_json(line.as_bytes()).map_err(|e| {
            Exit::error(
                2,
                "usage",
                format!(
                    "{}:{}: {e}; --receipt takes one receipt JSON or JSON Lines of receipts (what `socai publish --receipts FILE` writes)",
                    path.display(),
                    i + 1
                ),
            )
        })?);
    }
    if all.is_empty() {
        return Err(Exit::error(
            2,
            "usage",
            format!("{} holds no receipt", path.display()),
        ));
    }
    Ok(all)
}

/// The receipt of `receipts` that answers the event `id` names (`ID` or `AGENCY/ID`): the first
/// that lists it as held by the ledger, else the first that lists it as rejected. Without `id`,
/// the one receipt there is, or the one receipt naming the only event named.
fn choose_receipt<'r>(
    path: &std::path::Path,
    receipts: &'r [socai_chain::Receipt],
    id: Option<&str>,
) -> anyhow::Result<&'r socai_chain::Receipt> {
    let names = |r: &socai_chain::Receipt| -> Vec<(String, String)> {
        r.events
            .iter()
            .map(|e| (r.agency.clone(), e.id.clone()))
            .chain(r.rejected.iter().map(|j| (r.agency.clone(), j.id.clone())))
            .collect()
    };
    let listing = || {
        let mut all: Vec<String> = receipts
            .iter()
            .flat_map(&names)
            .map(|(agency, id)| format!("{agency}/{id}"))
            .collect();
        all.sort();
        all.dedup();
        let n = all.len();
        all.truncate(20);
        format!(
            "{}{}",
            all.join(", "),
            if n > 20 {
                format!(" and {} more", n - 20)
            } else {
                String::new()
            }
        )
    };
    let Some(spec) = id else {
        if let [only] = receipts {
            return Ok(only);
        }
        let mut named: Vec<(String, String)> = receipts.iter().flat_map(&names).collect();
        named.sort();
        named.dedup();
        if named.len() == 1 {
            return Ok(&receipts[0]);
        }
        return Err(Exit::error(
            2,
            "usage",
            format!(
                "{} holds {} receipts naming several events; choose one with --id: {}",
                path.display(),
                receipts.len(),
                listing()
            ),
        ));
    };
    let (agency, id) = match spec.split_once('/') {
        Some((agency, id)) => (Some(agency), id),
        None => (None, spec),
    };
    let ours = |r: &&socai_chain::Receipt| agency.is_none_or(|a| a == r.agency);
    receipts
        .iter()
        .filter(ours)
        .find(|r| r.events.iter().any(|e| e.id == id))
        .or_else(|| {
            receipts
                .iter()
                .filter(ours)
                .find(|r| r.rejected.iter().any(|j| j.id == id))
        })
        .ok_or_else(|| {
            Exit::error(
                EXIT_NOT_FOUND,
                "not_found",
                format!(
                    "no receipt in {} names event {spec:?}; its receipts name: {}",
                    path.display(),
                    listing()
                ),
            )
        })
}

/// `socai proof inclusion --receipt FILE [--id ID]`: the inclusion proof of the receipt's event
/// at the receipt's tree size, with the receipt's tree head as its checkpoint (locally, or with
/// --api from the running ledger: the same bytes).
fn receipt_proof(g: &Global, path: &std::path::Path, id: Option<&str>) -> anyhow::Result<()> {
    let receipts = read_receipts(path)?;
    let receipt = choose_receipt(path, &receipts, id)?;
    if let Some(remote) = remote::Remote::from(g)? {
        return remote.receipt_proof(receipt, id);
    }
    let (ledger, _) = open_ledger(g)?;
    let proof = ledger
        .receipt_inclusion_proof(receipt, id)
        .map_err(|e| receipt_proof_error(path, e))?;
    print_proof_bytes(&serde_json::to_vec(&proof)?)
}

/// A receipt that gives no proof: which exit status.
fn receipt_proof_error(
    path: &std::path::Path,
    e: socai_store::reader::ReceiptProofError,
) -> anyhow::Error {
    use socai_store::reader::ReceiptProofError;
    match e {
        ReceiptProofError::Choice(_) | ReceiptProofError::Rejected { .. } => {
            Exit::error(2, "usage", format!("{}: {e}", path.display()))
        }
        ReceiptProofError::NotThisLog { .. } => Exit::error(
            EXIT_VERIFY,
            "verification_failed",
            format!("{}: {e}", path.display()),
        ),
        ReceiptProofError::Ledger(e) => not_found(e),
    }
}

/// A command that needs the store itself, given --api.
fn local_only(g: &Global, what: &str) -> anyhow::Result<()> {
    if g.api.is_some() {
        return Err(Exit::error(
            2,
            "usage",
            format!("{what} works on the data dir only; drop --api (or stop `socai serve` first)"),
        ));
    }
    Ok(())
}

/// Maps "not found" ledger errors to exit status 4.
pub fn not_found(err: LedgerError) -> anyhow::Error {
    match err {
        LedgerError::UnknownId(_)
        | LedgerError::AmbiguousId { .. }
        | LedgerError::UnknownSeq { .. }
        | LedgerError::NoCheckpointAt(_) => {
            Exit::error(EXIT_NOT_FOUND, "not_found", err.to_string())
        }
        other => other.into(),
    }
}

fn init(g: &Global, origin: &str, keys_from: Option<&std::path::Path>) -> anyhow::Result<()> {
    let dir = data_dir(g);
    let (vkey, origin) = match keys_from {
        Some(primary) => {
            let primary = socai_store::DataDir::new(primary);
            let vkey = dir.init_from(&primary)?;
            (vkey, primary.signer()?.name().to_owned())
        }
        None => (dir.init(origin)?, origin.to_owned()),
    };
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
    if let Some(remote) = remote::Remote::from(g)? {
        if !list {
            return Err(Exit::error(
                2,
                "usage",
                "a running ledger signs its own checkpoints (every [ingest] checkpoint_interval_s); with --api only --list works",
            ));
        }
        let all = remote.checkpoints()?;
        emit(&json!(all), || {
            if all.is_empty() {
                "no signed checkpoints yet".to_string()
            } else {
                all.iter()
                    .map(|c| c["size"].to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        });
        return Ok(());
    }
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

fn show(g: &Global, id_or_seq: &str, with_personal: bool) -> anyhow::Result<()> {
    if let Some(remote) = remote::Remote::from(g)? {
        return remote.show(id_or_seq, with_personal);
    }
    let (ledger, _) = open_ledger(g)?;
    let seq = resolve_seq(&ledger, id_or_seq)?;
    let value = ledger.entry_json(seq, with_personal).map_err(not_found)?;
    emit(&value, || {
        serde_json::to_string_pretty(&value).unwrap_or_default()
    });
    Ok(())
}

fn history(g: &Global, dossier: &str) -> anyhow::Result<()> {
    let value = match remote::Remote::from(g)? {
        Some(remote) => remote.history(dossier)?,
        None => open_ledger(g)?.0.history_json(dossier)?,
    };
    let rows = value["entries"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return Err(Exit::error(
            EXIT_NOT_FOUND,
            "not_found",
            format!("no events for dossier {dossier:?}"),
        ));
    }
    emit(&value, || {
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
    if let Some(remote) = remote::Remote::from(g)? {
        if by != "operator" {
            eprintln!(
                "note: with --api the redaction is recorded as made by the --api-token's holder, not {by:?}"
            );
        }
        return remote.redact(id, reason);
    }
    let (mut ledger, _) = open_ledger(g)?;
    let (target, redaction) = ledger
        .redact(id, reason, by, &now_rfc3339())
        .map_err(|e| match e {
            LedgerError::InvalidRedaction(why) => Exit::error(
                2,
                "usage",
                format!(
                    "--reason or --by is not allowed in the public redaction entry: {why} (/data/reason is --reason, 1-2000 characters; /data/redacted_by is --by, 1-500 characters on one line)"
                ),
            ),
            other => not_found(other),
        })?;
    let signed = ledger.checkpoint()?;
    let pending = ledger.storage().erasures_pending()?.len();
    emit(
        &json!({"id": id, "target_seq": target, "redaction_seq": redaction, "tree_size": signed.checkpoint.size, "copies_pending": pending}),
        || {
            format!(
                "redacted personal data of {id} (seq {target}); redaction recorded at seq {redaction}"
            )
        },
    );
    if pending > 0 {
        eprintln!(
            "note: the event's copies on NATS (EVENTS, REJECTED) are erased when `socai serve` next starts on this data dir; until then they still hold the personal data (redact through a running ledger with --api to erase them at once)"
        );
    }
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

/// `socai token new|hash`.
fn token(kind: TokenKind) -> anyhow::Result<()> {
    match kind {
        TokenKind::New { name, role } => {
            let role: socai_api::Role = serde_json::from_value(json!(role)).map_err(|_| {
                Exit::error(
                    2,
                    "usage",
                    format!("--role {role:?}: the only role is auditor"),
                )
            })?;
            let mut raw = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
            let token = format!("socai_{}", hex::encode(raw));
            let digest = socai_api::token_digest(&token);
            let role_text = serde_json::to_value(role)?;
            let block = format!(
                "[[http.tokens]]\nname = {}\nrole = {role_text}\nsha256 = \"{digest}\"",
                json!(name)
            );
            emit(
                &json!({"token": token, "name": name, "role": role, "sha256": digest}),
                || {
                    format!(
                        "token (give it to {name}; it is not stored anywhere): {token}\n\nadd to socai.toml and restart `socai serve`:\n{block}"
                    )
                },
            );
            Ok(())
        }
        TokenKind::Hash => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
            let digest = socai_api::token_digest(text.trim());
            emit(&json!({"sha256": digest}), || digest.clone());
            Ok(())
        }
    }
}
