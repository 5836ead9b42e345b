//! The NATS-facing commands: `serve` (the ledger writer) and `publish` (an agency's CLI, which
//! waits for the ledger's receipts).

use crate::cli::Global;
use crate::output::{EXIT_FAILURE, Exit, emit, progress_bytes};
use anyhow::Context;
use serde_json::json;
use socai_client::publisher::{NatsConfig, Outgoing, Publisher};
use socai_client::subject::event_subject;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

pub fn nats_config(g: &Global, name: &str) -> NatsConfig {
    NatsConfig {
        url: g.nats.clone().unwrap_or_else(|| DEFAULT_NATS_URL.into()),
        user: g.nats_user.clone(),
        password: g.nats_password.clone(),
        name: name.into(),
        retry_initial_connect: false,
        ping_interval: Duration::from_secs(g.nats_ping_interval),
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Resolves on SIGINT or SIGTERM (or after `limit`). The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives during startup is kept.
pub(crate) fn shutdown_signal(
    limit: Option<Duration>,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        let limit = async {
            match limit {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT: finishing the batch in hand"),
            _ = term.recv() => tracing::info!("SIGTERM: finishing the batch in hand"),
            _ = limit => tracing::info!("time limit reached: finishing the batch in hand"),
        }
    })
}

/// What `socai serve` runs as: a primary (which replicas it waits for), a replica, or a
/// replica being promoted.
#[derive(Debug, Clone, Default)]
pub struct Role {
    pub replica_of: Option<String>,
    pub replica_name: Option<String>,
    pub promote: bool,
    pub replicas: Vec<String>,
}

/// A replica's name: a NATS subject token and part of a consumer name.
fn check_replica_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "replica name {name:?}: use 1 to 32 letters, digits, '-' or '_' (it is a NATS subject token)"
    );
    Ok(())
}

/// Settles the role against the data dir's replica marker and fills the writer's settings.
fn apply_role(
    g: &Global,
    origin: &str,
    role: &Role,
    writer: &mut socai_ingest::WriterConfig,
) -> anyhow::Result<()> {
    let dir = super::data_dir(g);
    let marker = dir.replica_marker_path();
    let diverged = dir.diverged_marker_path();
    let promoting = dir.promoting_marker_path();
    // A promotion not yet finished (the ledger had not caught up with COMMITTED when it
    // stopped): this start goes on with it.
    if promoting.exists() {
        anyhow::ensure!(
            role.replica_of.is_none(),
            "this data dir is being promoted to primary ({} exists): start it without --replica-of",
            promoting.display()
        );
        writer.catch_up = true;
        writer.promoting_marker = Some(promoting.clone());
    }
    let marked = match std::fs::read_to_string(&marker) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", marker.display())),
    };
    for name in &role.replicas {
        check_replica_name(name)?;
    }
    writer.replicas.extend(role.replicas.iter().cloned());
    writer.replicas.sort();
    writer.replicas.dedup();
    match (&role.replica_of, role.promote, marked) {
        (Some(_), _, _) if marker.with_file_name("promoted").exists() => anyhow::bail!(
            "this data dir was promoted to primary (it has a `promoted` file): it must never run as a replica; to make this machine a replica, give it a new data dir made from a copy of the primary's, taken while the primary was stopped (README, \"Ledger replicas\")"
        ),
        (Some(of), _, marked) => {
            let name = role.replica_name.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "--replica-of needs --replica-name NAME, unique among this log's replicas (the primary's [ingest] replicas lists it)"
                )
            })?;
            check_replica_name(&name)?;
            anyhow::ensure!(
                of == origin,
                "--replica-of {of:?}, but this data dir's keys are those of log {origin:?}: a replica needs a copy of its primary's keys (`socai init --data-dir DIR --keys-from PRIMARY_DATA_DIR`, or copy checkpoint.key, checkpoint.vkey and salt.key into an empty data dir)"
            );
            if let Some(marked) = marked {
                anyhow::ensure!(
                    &marked == of,
                    "{} says this data dir is a replica of {marked:?}, not {of:?}",
                    marker.display()
                );
            } else {
                socai_ingest::replica::write_durable(&marker, &format!("{of}\n"))
                    .with_context(|| format!("writing {}", marker.display()))?;
            }
            writer.streams.consumer = format!("{}-replica-{name}", writer.streams.consumer);
            writer.replicas.clear();
            writer.replica = Some(socai_ingest::ReplicaConfig {
                name,
                origin: of.clone(),
                diverged_marker: Some(diverged),
            });
        }
        (None, true, Some(of)) => {
            if let Ok(text) = std::fs::read_to_string(&diverged) {
                anyhow::bail!(
                    "cannot promote: this replica's entries differ from its primary's ({}: {}). Promote another replica, or find out which ledger is wrong first and rebuild this one from a copy of a good ledger's data dir (README, \"Ledger replicas\")",
                    diverged.display(),
                    text.lines().skip(1).collect::<Vec<_>>().join(" ")
                );
            }
            // `replica-of` becomes `promoting`, in one rename, until COMMITTED has been
            // checked against this ledger (a stop before then resumes the promotion).
            std::fs::rename(&marker, &promoting).with_context(|| {
                format!("renaming {} to {}", marker.display(), promoting.display())
            })?;
            if let Some(dir) = marker.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            writer.promoting_marker = Some(promoting);
            tracing::warn!(
                primary = %of,
                "promoting: once this ledger has read as far as COMMITTED and found COMMITTED's last entry is its own, it is the primary (COMMITTED, checkpoints, receipts, erasure of NATS copies); the old primary must never run again on its data dir"
            );
            writer.catch_up = true;
        }
        (None, true, None) if writer.catch_up => {}
        (None, true, None) => anyhow::bail!(
            "--promote: this data dir is not a ledger replica (it has no replica-of file); a primary needs no promotion"
        ),
        (None, false, Some(of)) => anyhow::bail!(
            "this data dir is a replica of {of:?} ({}): run it with `socai serve --replica-of {of}`, or, once the primary has stopped for good, make it the primary with `socai serve --promote` (README, \"Ledger replicas\")",
            marker.display()
        ),
        (None, false, None) => {}
    }
    Ok(())
}

/// `SOCAI_TEST_FORGE_EVENTS_SEQ`: the replicas' divergence test makes a ledger forge the event
/// of one EVENTS seq (debug builds only).
fn forge_fault() -> anyhow::Result<Option<u64>> {
    match std::env::var("SOCAI_TEST_FORGE_EVENTS_SEQ") {
        Err(_) => Ok(None),
        Ok(text) => {
            anyhow::ensure!(
                cfg!(debug_assertions),
                "SOCAI_TEST_FORGE_EVENTS_SEQ={text:?} is set, but this is a release build: test faults exist only in debug builds (the tests'); unset it"
            );
            let seq = text.trim().parse().with_context(|| {
                format!("SOCAI_TEST_FORGE_EVENTS_SEQ={text:?}: expected an EVENTS seq")
            })?;
            tracing::warn!(
                seq,
                "SOCAI_TEST_FORGE_EVENTS_SEQ is set: this ledger forges an event on purpose (tests only)"
            );
            Ok(Some(seq))
        }
    }
}

pub fn serve(
    g: &Global,
    for_seconds: Option<u64>,
    http: Option<&str>,
    witnesses: &[String],
    role: &Role,
) -> anyhow::Result<()> {
    let (ledger, config) = super::open_ledger(g)?;
    let witnesses = config.witness_targets(witnesses)?;
    let mut writer = config.writer();
    apply_role(g, ledger.origin(), role, &mut writer)?;
    anyhow::ensure!(
        writer.replica.is_none() || witnesses.is_empty(),
        "a ledger replica sends nothing to witnesses (they cosign the primary's checkpoints): remove [[witnesses]] from this replica's socai.toml and --witness (give them back when it is promoted)"
    );
    writer.forge_source_seq = forge_fault()?;
    let api_config = config.api()?;
    let listen = http.unwrap_or(&config.http.listen).to_owned();
    let reader = ledger.reader();
    let rt = runtime()?;
    let mut nats = nats_config(g, "socai-ledger");
    nats.retry_initial_connect = true;
    let size = ledger.head().size;
    let counters = Arc::new(socai_ingest::Counters::default());
    rt.block_on(async {
        let shutdown = shutdown_signal(for_seconds.map(Duration::from_secs))?;
        tokio::pin!(shutdown);
        tracing::info!(url = %nats.url, user = nats.user.as_deref().unwrap_or(""), "connecting to nats");
        let (client, _errors) = socai_client::publisher::connect(&nats).await?;
        let js = async_nats::jetstream::new(client.clone());
        // The HTTP API first: auditors can read the ledger even while nats-server is away. It
        // has a NATS connection of its own (metric reads, the live relay), apart from the writer's.
        let mut api_nats = nats.clone();
        api_nats.name = "socai-ledger-api".into();
        let (api_client, _api_errors) = socai_client::publisher::connect(&api_nats).await?;
        let mut registry = prometheus_client::registry::Registry::default();
        socai_ingest::telemetry::register(&counters, &mut registry);
        let board = Arc::new(socai_witness::WitnessBoard::default());
        board.register(&mut registry);
        // Witnesses get every signed checkpoint, whether or not nats-server is up.
        let _collector = if witnesses.is_empty() {
            None
        } else {
            for w in &witnesses {
                if w.verifier.is_key_of(&reader.verifier_vkey()) {
                    anyhow::bail!(
                        "witness {} has this log's own key: a log is no witness of itself; give each witness's key (what `socai witness init` printed)",
                        w.verifier.name()
                    );
                }
                match &w.url {
                    Some(_) => tracing::info!(witness = %w.verifier.name(), "sending checkpoints to witness"),
                    None => tracing::info!(witness = %w.verifier.name(), "taking the cosignatures a following witness posts"),
                }
            }
            Some(
                socai_witness::Collector::start(reader.clone(), witnesses.clone(), board.clone())
                    .map_err(anyhow::Error::msg)?,
            )
        };
        let (commands, commands_rx) = tokio::sync::mpsc::channel(16);
        let state = socai_api::AppState::new(
            reader,
            api_config,
            Some(socai_api::Nats {
                js: async_nats::jetstream::new(api_client.clone()),
                client: api_client,
            }),
            Some(commands),
            Some(counters.clone()),
            registry,
        );
        let state = if witnesses.is_empty() {
            state
        } else {
            state.with_witnesses(board)
        };
        let listener = tokio::net::TcpListener::bind(&listen).await.with_context(|| {
            format!("cannot listen on {listen} for the HTTP API; choose another address with --http ADDR or [http] listen in socai.toml")
        })?;
        let addr = listener.local_addr()?;
        tracing::info!(addr = %addr, "http api listening on http://{addr}");
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let http = tokio::spawn(socai_api::serve(listener, state, async move {
            let _ = http_stopped.await;
        }));
        // With retry_initial_connect, connect returns at once: wait for the server, saying so.
        let mut waited_ms: u64 = 0;
        let mut result = Ok(());
        while client.connection_state() != async_nats::connection::State::Connected {
            if waited_ms % 10_000 == 5_000 {
                tracing::warn!(url = %nats.url, waited_s = waited_ms / 1000, "waiting for nats-server; is it running there?");
            }
            tokio::select! {
                _ = &mut shutdown => {
                    waited_ms = u64::MAX;
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => waited_ms += 100,
            }
        }
        if waited_ms != u64::MAX {
            match &writer.replica {
                Some(r) => tracing::info!(ledger_size = size, consumer = %writer.streams.consumer, replica = %r.name, primary = %r.origin, "serving as a replica"),
                None => tracing::info!(ledger_size = size, consumer = %writer.streams.consumer, replicas = ?writer.replicas, "serving"),
            }
            let stats = tokio::spawn(log_stats(counters.clone()));
            result = socai_ingest::serve(
                js,
                ledger,
                writer,
                counters.clone(),
                Some(commands_rx),
                &mut shutdown,
                Duration::from_secs(10),
            )
            .await
            .map_err(anyhow::Error::from);
            stats.abort();
        }
        // Requests in progress get a moment; live streams end now.
        let _ = stop_http.send(());
        match tokio::time::timeout(Duration::from_secs(5), http).await {
            Ok(Ok(Err(e))) => tracing::warn!(cause = %e, "the HTTP API failed"),
            Err(_) => tracing::warn!("the HTTP API did not stop within 5 s"),
            _ => {}
        }
        result
    })?;
    let c = &counters;
    emit(
        &json!({
            "committed": c.committed.load(Relaxed),
            "duplicates": c.duplicates.load(Relaxed),
            "rejected": c.rejected.load(Relaxed),
            "published_to": c.published.load(Relaxed),
        }),
        || {
            format!(
                "stopped: {} committed, {} duplicates, {} rejected this run; COMMITTED holds seq < {}",
                c.committed.load(Relaxed),
                c.duplicates.load(Relaxed),
                c.rejected.load(Relaxed),
                c.published.load(Relaxed)
            )
        },
    );
    Ok(())
}

/// One log line every 10 s while events flow.
async fn log_stats(c: Arc<socai_ingest::Counters>) {
    let mut last = (0, 0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let now = (
            c.committed.load(Relaxed),
            c.duplicates.load(Relaxed),
            c.rejected.load(Relaxed),
        );
        if now != last {
            tracing::info!(
                committed = now.0,
                duplicates = now.1,
                rejected = now.2,
                committed_per_s = (now.0 - last.0) / 10,
                published_to = c.published.load(Relaxed),
                checkpoint = c.checkpoints.load(Relaxed),
                "ingest"
            );
            last = now;
        }
    }
}

/// What `publish` needs of a line to route it: the id (msg-id) and the subject's agency and type.
#[derive(serde::Deserialize)]
struct Route {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    agency: String,
}

/// `socai publish`'s options.
#[derive(Debug, Clone)]
pub struct PublishArgs {
    pub file: PathBuf,
    /// PubAcks awaited at once (with receipts, most events await none; 1 = every one does).
    pub in_flight: usize,
    /// Append every receipt accepted to this file, one JSON per line, as received.
    pub receipts_out: Option<PathBuf>,
    /// Verify every receipt with this key file (the log's published checkpoint.vkey).
    pub vkey: Option<PathBuf>,
    /// Publish again after this long without a receipt (doubling, up to 5 min).
    pub receipt_timeout: Duration,
    /// Report "no receipt" after this long.
    pub give_up_after: Duration,
    /// PubAcks only: nothing is confirmed committed.
    pub no_receipts: bool,
    /// Events, or the portal's sync bodies.
    pub format: crate::cli::PublishFormat,
    /// The agency of sync bodies (else each body's `madonvi`).
    pub agency: Option<String>,
}

/// What `publish --format dvc-sync` reads of a body to route it.
#[derive(serde::Deserialize)]
struct SyncRoute {
    madonvi: Option<serde_json::Value>,
}

/// Most "no receipt" lines printed one by one (the rest are counted).
const NO_RECEIPT_LISTED: usize = 100;
/// Most rejections kept for `--json` and the final message.
const REJECTIONS_KEPT: usize = 100;

/// The file's lines as messages, streamed: each routable line becomes (message, line number);
/// an unroutable one is reported on stderr and counted; a read error ends the stream.
struct Lines<'a> {
    file: &'a Path,
    format: crate::cli::PublishFormat,
    agency: Option<&'a str>,
    bar: &'a indicatif::ProgressBar,
    unroutable: std::cell::RefCell<Vec<usize>>,
    read_error: std::cell::RefCell<Option<String>>,
}

impl<'a> Lines<'a> {
    fn messages(
        &'a self,
        reader: impl std::io::BufRead + 'a,
    ) -> impl Iterator<Item = (Outgoing, usize)> + 'a {
        reader
            .split(b'\n')
            .enumerate()
            .map_while(|(i, line)| match line {
                Ok(line) => Some((i + 1, line)),
                Err(e) => {
                    *self.read_error.borrow_mut() = Some(format!(
                        "reading {} at line {}: {e}",
                        self.file.display(),
                        i + 1
                    ));
                    None
                }
            })
            .filter_map(|(line_no, mut line)| {
                self.bar.inc(line.len() as u64 + 1);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                if self.format == crate::cli::PublishFormat::DvcSync {
                    return self.sync_message(line_no, line);
                }
                let why = match serde_json::from_slice::<Route>(&line) {
                    Ok(r) if !r.agency.is_empty() && !r.event_type.is_empty() => {
                        return Some((
                            Outgoing {
                                subject: event_subject(&r.agency, &r.event_type),
                                id: r.id,
                                payload: bytes::Bytes::from(line),
                            },
                            line_no,
                        ));
                    }
                    Ok(_) => "empty agency or type".to_string(),
                    Err(e) => e.to_string(),
                };
                self.bar.suspend(|| {
                    eprintln!(
                        "{}:{line_no}: not sent: cannot read id, type and agency to route it ({why})",
                        self.file.display()
                    )
                });
                self.unroutable.borrow_mut().push(line_no);
                None
            })
    }
}

impl Lines<'_> {
    /// A sync body, on its agency's `dvc.sync.<agency>` (`--agency`, else its `madonvi`).
    fn sync_message(&self, line_no: usize, line: Vec<u8>) -> Option<(Outgoing, usize)> {
        let madonvi = serde_json::from_slice::<SyncRoute>(&line)
            .ok()
            .and_then(|r| r.madonvi)
            .and_then(|m| match m {
                serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        match self.agency.map(str::to_owned).or(madonvi) {
            Some(agency) => Some((Outgoing::sync(&agency, bytes::Bytes::from(line)), line_no)),
            None => {
                self.bar.suspend(|| {
                    eprintln!(
                        "{}:{line_no}: not sent: the body names no agency (madonvi); pass --agency MADONVI",
                        self.file.display()
                    )
                });
                self.unroutable.borrow_mut().push(line_no);
                None
            }
        }
    }
}

/// `socai publish FILE`: streams the file's events to EVENTS and, unless `--no-receipts`, keeps
/// each until the ledger's receipt names it (re-publishing what has none in time), then reports
/// what the ledger did with every event.
impl PublishArgs {
    /// `give_up_after` in seconds, as a run takes it (a wait past a year counts as a year).
    fn give_up_secs(&self) -> u64 {
        self.give_up_after
            .min(socai_client::receipts::LONGEST_WAIT)
            .as_secs()
    }
}

pub fn publish(g: &Global, args: &PublishArgs) -> anyhow::Result<()> {
    let file = args.file.as_path();
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let verifier = match &args.vkey {
        Some(path) => Some(super::audit::read_vkey(path)?),
        None => None,
    };
    // Lines are read as they are sent: memory stays bounded by the windows.
    let bar = progress_bytes(len, "publish");
    let lines = Lines {
        file,
        format: args.format,
        agency: args.agency.as_deref(),
        bar: &bar,
        unroutable: Default::default(),
        read_error: Default::default(),
    };
    let messages = lines.messages(std::io::BufReader::new(f));
    let result = if args.no_receipts {
        publish_acked(g, args, messages.map(|(m, _)| m), &bar)
    } else {
        publish_receipted(g, args, verifier, messages, &bar)
    };
    bar.finish_and_clear();
    let tally = result?;
    if let Some(e) = lines.read_error.into_inner() {
        anyhow::bail!("{e}; the lines before it were published, publishing the file again is safe");
    }
    tally.finish(args, &lines.unroutable.into_inner())
}

/// What happened to the file's events.
#[derive(Default)]
struct Tally {
    /// PubAck'ed (--no-receipts) or committed.
    committed: u64,
    duplicates: u64,
    rejected: u64,
    /// Sync bodies answered, the events they yielded, and their parts refused.
    synced: u64,
    sync_events: u64,
    sync_rejected: u64,
    no_receipt: u64,
    /// Not stored on EVENTS (refused, or no PubAck with --no-receipts).
    failed: u64,
    receipts: u64,
    bad_receipts: u64,
    republished: u64,
    /// Times an event was held back unsent (nats-server unreachable, or not taking messages).
    held: u64,
    /// (line, id, code, path, reason) of the first rejections.
    rejections: Vec<(usize, String, String, String, String)>,
    receipts_write_error: Option<String>,
    receipts_mode: bool,
    verified: bool,
}

/// PubAcks only (the behaviour before receipts).
fn publish_acked(
    g: &Global,
    args: &PublishArgs,
    messages: impl Iterator<Item = Outgoing>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    runtime()?.block_on(async {
        let publisher = Publisher::connect(&nats_config(g, "socai-publish")).await?;
        publisher
            .publish_all(messages, args.in_flight, |result| match result {
                Ok(p) if p.duplicate => tally.duplicates += 1,
                Ok(_) => tally.committed += 1,
                Err(e) => {
                    bar.suspend(|| eprintln!("error: {e}"));
                    tally.failed += 1;
                }
            })
            .await;
        anyhow::Ok(())
    })?;
    Ok(tally)
}

/// Publishes and waits for the ledger's receipts.
fn publish_receipted(
    g: &Global,
    args: &PublishArgs,
    verifier: Option<socai_chain::CheckpointVerifier>,
    messages: impl Iterator<Item = (Outgoing, usize)>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Tally> {
    use socai_client::receipts::{Outcome, ReceiptOptions, Report};
    use std::io::Write;
    let file = args.file.display().to_string();
    let mut tally = Tally {
        receipts_mode: true,
        verified: verifier.is_some(),
        ..Tally::default()
    };
    let mut receipts_out = match &args.receipts_out {
        Some(path) => Some((
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {} to append receipts", path.display()))?,
            path.clone(),
        )),
        None => None,
    };
    let options = ReceiptOptions {
        receipt_timeout: args.receipt_timeout,
        give_up_after: args.give_up_after,
        max_in_flight: args.in_flight,
        verifier,
        ..ReceiptOptions::default()
    };
    let give_up_s = args.give_up_secs();
    // Once the file is read, what is left is waiting for receipts.
    let messages = messages.chain(std::iter::from_fn(|| {
        bar.set_message("receipts");
        None
    }));
    let mut listed_no_receipt = 0usize;
    runtime()?.block_on(async {
        let publisher = Publisher::connect(&nats_config(g, "socai-publish"))
            .await?
            .with_receipts(options);
        let summary = publisher
            .publish_all(messages, |report| match report {
                Report::Receipt { raw, .. } => {
                    if let Some((out, path)) = &mut receipts_out
                        && tally.receipts_write_error.is_none()
                    {
                        let written = out
                            .write_all(&raw)
                            .and_then(|()| out.write_all(b"\n"))
                            .and_then(|()| out.flush());
                        if let Err(e) = written {
                            let message = format!("appending a receipt to {}: {e}", path.display());
                            bar.suspend(|| eprintln!("error: {message}"));
                            tally.receipts_write_error = Some(message);
                        }
                    }
                }
                Report::BadReceipt {
                    subject,
                    error,
                    raw,
                } => bar.suspend(|| {
                    eprintln!(
                        "error: a receipt on {subject} was not accepted: {error}; it answers nothing (received: {})",
                        String::from_utf8_lossy(&raw[..raw.len().min(300)])
                    )
                }),
                Report::Republished {
                    agency,
                    id,
                    publishes,
                    after,
                    reason,
                } => tracing::info!(
                    %agency, %id, publishes, after_s = after.as_secs(), %reason,
                    "published again"
                ),
                Report::Event(e) => match e.outcome {
                    Outcome::Committed { .. } | Outcome::Duplicate { .. } => {}
                    Outcome::Synced {
                        events,
                        rejected,
                        more,
                        more_rejected,
                        ..
                    } => {
                        tally.sync_rejected += more_rejected;
                        if more + more_rejected > 0 {
                            bar.suspend(|| {
                                eprintln!(
                                    "{file}:{}: body {}: {more} more events and {more_rejected} more refusals left out of the receipt (COMMITTED holds every event, REJECTED every part refused)",
                                    e.tag, e.id
                                )
                            });
                        }
                        tally.sync_events += events.len() as u64;
                        tally.sync_rejected += rejected.len() as u64;
                        for r in rejected {
                            let what = if r.id.is_empty() {
                                "the body".to_owned()
                            } else {
                                format!("{:?}", r.id)
                            };
                            bar.suspend(|| {
                                eprintln!(
                                    "{file}:{}: body {}: {what} not taken by the ledger: {} at {:?}: {}",
                                    e.tag, e.id, r.code, r.path, r.reason
                                )
                            });
                            if tally.rejections.len() < REJECTIONS_KEPT {
                                tally.rejections.push((e.tag, r.id, r.code, r.path, r.reason));
                            }
                        }
                    }
                    Outcome::Rejected {
                        code, path, reason, ..
                    } => {
                        bar.suspend(|| {
                            eprintln!(
                                "{file}:{}: event {:?} rejected by the ledger: {code} at {path:?}: {reason}",
                                e.tag, e.id
                            )
                        });
                        if tally.rejections.len() < REJECTIONS_KEPT {
                            tally.rejections.push((e.tag, e.id, code, path, reason));
                        }
                    }
                    Outcome::NoReceipt { last_error } => {
                        listed_no_receipt += 1;
                        if listed_no_receipt <= NO_RECEIPT_LISTED {
                            bar.suspend(|| {
                                eprintln!(
                                    "{file}:{}: event {:?}: no receipt within {give_up_s} s ({} publishes){}",
                                    e.tag,
                                    e.id,
                                    e.publishes,
                                    last_error
                                        .map(|l| format!("; last publish error: {l}"))
                                        .unwrap_or_default()
                                )
                            });
                        }
                    }
                    Outcome::NotPublished(error) => {
                        bar.suspend(|| eprintln!("{file}:{}: not stored: {error}", e.tag));
                    }
                },
            })
            .await
            .map_err(|e| Exit::error(EXIT_FAILURE, "no_receipt", e.to_string()))?;
        tally.committed = summary.committed;
        tally.duplicates = summary.duplicates;
        tally.rejected = summary.rejected;
        tally.synced = summary.synced;
        tally.no_receipt = summary.no_receipt;
        tally.failed = summary.not_published;
        tally.receipts = summary.receipts;
        tally.bad_receipts = summary.bad_receipts;
        tally.republished = summary.republished;
        tally.held = summary.held;
        anyhow::Ok(())
    })?;
    if listed_no_receipt > NO_RECEIPT_LISTED {
        eprintln!(
            "... and {} more events with no receipt",
            listed_no_receipt - NO_RECEIPT_LISTED
        );
    }
    Ok(tally)
}

impl Tally {
    /// Prints the summary; an error (exit status 1) unless every event is in the ledger.
    fn finish(mut self, args: &PublishArgs, unroutable: &[usize]) -> anyhow::Result<()> {
        // In file order: the receipts of two commits may arrive in either order (each is sent
        // once its batch's rejections are on REJECTED, in the background).
        self.rejections.sort_by_key(|r| r.0);
        let not_stored = self.failed + unroutable.len() as u64;
        let total = self.committed
            + self.duplicates
            + self.rejected
            + self.synced
            + self.no_receipt
            + not_stored;
        if !self.receipts_mode {
            emit(
                &json!({
                    "published": self.committed,
                    "duplicates": self.duplicates,
                    "failed": self.failed,
                    "unroutable": unroutable.len(),
                    "confirmed": false,
                }),
                || {
                    format!(
                        "{} published, {} already in the stream (same id), {} failed, {} unroutable lines; PubAcks only (--no-receipts): nothing is confirmed committed, the ledger's verdicts are on the COMMITTED and REJECTED streams",
                        self.committed,
                        self.duplicates,
                        self.failed,
                        unroutable.len()
                    )
                },
            );
            if not_stored > 0 {
                return Err(Exit::error(
                    EXIT_FAILURE,
                    "publish_failed",
                    format!(
                        "{not_stored} of {total} events were not stored; publishing the same file again is safe (same ids)"
                    ),
                ));
            }
            return Ok(());
        }
        let rejections: Vec<_> = self
            .rejections
            .iter()
            .map(|(line, id, code, path, reason)| {
                json!({"line": line, "id": id, "code": code, "path": path, "reason": reason})
            })
            .collect();
        emit(
            &json!({
                "committed": self.committed,
                "duplicates": self.duplicates,
                "rejected": self.rejected,
                "synced": self.synced,
                "sync_events": self.sync_events,
                "sync_rejected": self.sync_rejected,
                "no_receipt": self.no_receipt,
                "failed": self.failed,
                "unroutable": unroutable.len(),
                "receipts": self.receipts,
                "bad_receipts": self.bad_receipts,
                "republished": self.republished,
                "held": self.held,
                "verified": self.verified,
                "receipts_file": args.receipts_out,
                "rejections": rejections,
            }),
            || {
                let synced = if self.synced > 0 || args.format == crate::cli::PublishFormat::DvcSync
                {
                    format!(
                        "{} sync bodies answered ({} events yielded, {} parts not taken); ",
                        self.synced, self.sync_events, self.sync_rejected
                    )
                } else {
                    String::new()
                };
                format!(
                    "{synced}{} committed, {} already in the ledger (duplicate), {} rejected, {} with no receipt, {} not published, {} unroutable lines; {} receipts{}{}{}",
                    self.committed,
                    self.duplicates,
                    self.rejected,
                    self.no_receipt,
                    self.failed,
                    unroutable.len(),
                    self.receipts,
                    if self.verified {
                        " verified with the log's key"
                    } else {
                        " (signatures not checked: pass --vkey checkpoint.vkey)"
                    },
                    if self.republished > 0 {
                        format!(", {} re-publishes", self.republished)
                    } else {
                        String::new()
                    },
                    if self.held > 0 {
                        format!(
                            ", {} times an event was held back unsent (nats-server unreachable or not taking messages)",
                            self.held
                        )
                    } else {
                        String::new()
                    }
                )
            },
        );
        let mut problems = Vec::new();
        let mut kind = None;
        if not_stored > 0 {
            kind.get_or_insert("publish_failed");
            problems.push(format!(
                "{not_stored} of {total} events were not stored; publishing the same file again is safe (same ids)"
            ));
        }
        if self.no_receipt > 0 {
            kind.get_or_insert("no_receipt");
            problems.push(format!(
                "{} of {total} events got no receipt within {} s, so the ledger may not hold them: is `socai serve` running and connected to this nats-server? Publishing the same file again is safe (same ids): the ledger answers what it already holds as duplicates",
                self.no_receipt,
                args.give_up_secs()
            ));
        }
        if self.bad_receipts > 0 {
            kind.get_or_insert("bad_receipt");
            problems.push(format!(
                "{} receipts were not accepted (see above){}",
                self.bad_receipts,
                if self.verified {
                    ": they do not verify with --vkey, so they are not the log's"
                } else {
                    ""
                }
            ));
        }
        if let Some(e) = &self.receipts_write_error {
            kind.get_or_insert("publish_failed");
            problems.push(format!("{e}: the receipts file is incomplete"));
        }
        if self.rejected > 0 {
            kind.get_or_insert("rejected");
            let mut shown: Vec<String> = self
                .rejections
                .iter()
                .take(20)
                .map(|(line, id, code, ..)| format!("line {line} ({id}: {code})"))
                .collect();
            if self.rejected > shown.len() as u64 {
                shown.push(format!("{} more", self.rejected - shown.len() as u64));
            }
            problems.push(format!(
                "{} of {total} events were rejected by the ledger: {}; the REJECTED stream holds them with their reasons (dvc.rejected.<agency>.>): fix those lines and publish them again",
                self.rejected,
                shown.join(", ")
            ));
        }
        if self.sync_rejected > 0 {
            kind.get_or_insert("rejected");
            problems.push(format!(
                "{} parts of sync bodies were not taken by the ledger (see above); REJECTED holds each with its reason (dvc.rejected.<agency>.sync): fix those dossiers and send them again",
                self.sync_rejected
            ));
        }
        match kind {
            None => Ok(()),
            Some(kind) => Err(Exit::error(EXIT_FAILURE, kind, problems.join("; "))),
        }
    }
}
