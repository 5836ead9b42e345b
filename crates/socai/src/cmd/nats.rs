//! The NATS-facing commands: `serve` (the ledger writer) and `publish` (an agency's CLI).

use crate::cli::Global;
use crate::output::{EXIT_FAILURE, Exit, emit, progress_bytes};
use anyhow::Context;
use serde_json::json;
use socai_client::publisher::{NatsConfig, Outgoing, Publisher};
use socai_client::subject::event_subject;
use std::path::Path;
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

pub fn serve(g: &Global, for_seconds: Option<u64>, http: Option<&str>) -> anyhow::Result<()> {
    let (ledger, config) = super::open_ledger(g)?;
    let writer = config.writer();
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
            tracing::info!(ledger_size = size, consumer = %writer.streams.consumer, "serving");
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

pub fn publish(g: &Global, file: &Path, in_flight: usize) -> anyhow::Result<()> {
    use std::io::BufRead;
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // Lines are read as they are sent: memory stays bounded by the in-flight window.
    let bar = progress_bytes(len, "publish");
    let unroutable = std::cell::RefCell::new(Vec::new());
    let read_error = std::cell::RefCell::new(None);
    let messages = std::io::BufReader::new(f)
        .split(b'\n')
        .enumerate()
        .map_while(|(i, line)| match line {
            Ok(line) => Some((i + 1, line)),
            Err(e) => {
                *read_error.borrow_mut() =
                    Some(format!("reading {} at line {}: {e}", file.display(), i + 1));
                None
            }
        })
        .filter_map(|(line_no, mut line)| {
            bar.inc(line.len() as u64 + 1);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                return None;
            }
            let why = match serde_json::from_slice::<Route>(&line) {
                Ok(r) if !r.agency.is_empty() && !r.event_type.is_empty() => {
                    return Some(Outgoing {
                        subject: event_subject(&r.agency, &r.event_type),
                        id: r.id,
                        payload: bytes::Bytes::from(line),
                    });
                }
                Ok(_) => "empty agency or type".to_string(),
                Err(e) => e.to_string(),
            };
            bar.suspend(|| {
                eprintln!(
                    "{}:{line_no}: not sent: cannot read id, type and agency to route it ({why})",
                    file.display()
                )
            });
            unroutable.borrow_mut().push(line_no);
            None
        });
    let (mut published, mut duplicates, mut failures) = (0u64, 0u64, Vec::new());
    runtime()?.block_on(async {
        let publisher = Publisher::connect(&nats_config(g, "socai-publish")).await?;
        publisher
            .publish_all(messages, in_flight, |result| match result {
                Ok(p) if p.duplicate => duplicates += 1,
                Ok(_) => published += 1,
                Err(e) => {
                    bar.suspend(|| eprintln!("error: {e}"));
                    failures.push(e.to_string());
                }
            })
            .await;
        anyhow::Ok(())
    })?;
    bar.finish_and_clear();
    if let Some(e) = read_error.into_inner() {
        anyhow::bail!("{e}; the lines before it were published, publishing the file again is safe");
    }
    let unroutable = unroutable.into_inner();
    let total = published + duplicates + failures.len() as u64;
    emit(
        &json!({
            "published": published,
            "duplicates": duplicates,
            "failed": failures.len(),
            "unroutable": unroutable.len(),
        }),
        || {
            format!(
                "{published} published, {duplicates} already in the stream (same id), {} failed, {} unroutable lines; the ledger's verdicts: COMMITTED and REJECTED streams",
                failures.len(),
                unroutable.len()
            )
        },
    );
    if !failures.is_empty() || !unroutable.is_empty() {
        return Err(Exit::error(
            EXIT_FAILURE,
            "publish_failed",
            format!(
                "{} of {} events were not stored; publishing the same file again is safe (same ids)",
                failures.len() + unroutable.len(),
                total + unroutable.len() as u64
            ),
        ));
    }
    Ok(())
}
