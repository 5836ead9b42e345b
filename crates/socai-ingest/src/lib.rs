//! socai-ingest: agencies' events from JetStream into the ledger, exactly once.
//!
//! ```text
//! EVENTS (dvc.events.<agency>.<type>) ─ ordered consumer from the ledger's own cursor (no acks)
//!   └─► source: in stream order, data-loss and rewind alarms ─► validate (while the previous
//!       batch commits): subject + schema + clock
//!        └─► writer: one sled commit + fsync (entries + the EVENTS cursor)
//!             ├─► bad: REJECTED (original bytes + Socai-Error-*), then the cursor may pass it
//!             ├─► receipts: dvc.receipts.<agency> (ids → seqs, under the commit's signed tree head)
//!             └─► committed publisher: COMMITTED (one entry bundle per commit) ─► CHECKPOINTS
//! ```
//!
//! Knows nothing of HTTP. The binary wires it (`socai serve`).

pub mod check;
mod committed;
pub mod erase;
pub mod replica;
mod source;
pub mod streams;
pub mod telemetry;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::time::Duration;

use async_nats::jetstream;
use socai_store::{Ledger, SledStorage};
use tokio::sync::{mpsc, watch};

pub use replica::{ReplicaBoard, ReplicaConfig, ReplicaReport};
pub use streams::{StreamSettings, ensure_streams};
pub use telemetry::Telemetry;
pub use writer::{Redacted, WriterCommand, WriterConfig};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("nats: {0}")]
    Nats(String),
    /// JetStream did not answer or is not available yet (a cluster electing leaders after a
    /// node's loss, a server restarting): worth trying again.
    #[error("nats: {0}")]
    NatsUnavailable(String),
    #[error(
        "ledger: {0}; nothing of the batch in hand was answered: restart `socai serve` (it reopens the ledger and reads those messages again)"
    )]
    Ledger(String),
    /// COMMITTED does not continue this ledger; the message says what to do.
    #[error("{0}")]
    Diverged(String),
    /// Messages were deleted from COMMITTED outside the ledger: it cannot go on without
    /// leaving a hole the projection workers stop at; the message says what to do. Publishing
    /// waits (and resumes by itself once the operator has purged the stream).
    #[error("{0}")]
    CommittedHoles(String),
}

/// Running totals since start, readable while the writer runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events newly committed.
    pub committed: AtomicU64,
    /// Events already in the ledger (messages read again, republished ids), answered as such.
    pub duplicates: AtomicU64,
    /// Events copied to REJECTED.
    pub rejected: AtomicU64,
    /// Commits (batches) made.
    pub batches: AtomicU64,
    /// Time spent validating and committing (fsync included), in microseconds.
    pub commit_us: AtomicU64,
    /// Receipts sent to agencies (one per agency per commit).
    pub receipts: AtomicU64,
    /// Rejections REJECTED did not take at the first try (retried for `rejected_retry`).
    pub rejection_retries: AtomicU64,
    /// Rejections REJECTED did not take within `[ingest] rejected_retry_s`, left for the next
    /// start (the stored EVENTS cursor stays before them); shown by `/readyz` until then.
    pub rejections_unstored: AtomicU64,
    /// EVENTS messages gone from the stream before the ledger read them (the data-loss alarm).
    pub events_lost: AtomicU64,
    /// Times EVENTS was found rewound (nats-server lost acknowledged messages).
    pub events_rewinds: AtomicU64,
    /// The first data-loss alarm of this run, kept for `/readyz` until the ledger restarts.
    pub data_loss: std::sync::Mutex<Option<String>>,
    /// Data-loss alarms raised this run (each names a loss not named before; all are logged).
    pub data_loss_alarms: AtomicU64,
    /// COMMITTED holds every entry below this seq.
    pub published: AtomicU64,
    /// Why publishing to COMMITTED waits for the operator (messages deleted from it by hand),
    /// while it does; for `/readyz`.
    pub committed_stalled: std::sync::Mutex<Option<String>>,
    /// Tree size of the last checkpoint published.
    pub checkpoints: AtomicU64,
    /// Entries in the ledger (durable).
    pub head_size: AtomicU64,
    /// Tree size of the latest signed checkpoint.
    pub checkpoint_size: AtomicU64,
    /// When this process saw that checkpoint signed (ms since the epoch; at start, the start).
    pub checkpoint_signed_ms: AtomicU64,
    /// The EVENTS stream seq of the last message the writer finished (committed, duplicate or
    /// rejected).
    pub events_cursor: AtomicU64,
    /// EVENTS' last seq minus `events_cursor`, polled.
    pub consumer_lag: AtomicU64,
    /// A [`WriterStatus`].
    pub status: AtomicU8,
    /// Ledger replicas: this one's comparison with the primary, or (on a primary) what each
    /// replica reported.
    pub replicas: ReplicaBoard,
    /// A promoted replica whose COMMITTED has not been checked against it yet: it sends no
    /// receipts and erases nothing until then.
    pub promotion_pending: std::sync::atomic::AtomicBool,
    pub telemetry: Telemetry,
}

/// What the writer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WriterStatus {
    /// Opening streams and the consumer (e.g. waiting for nats-server).
    Starting = 0,
    /// Consuming EVENTS.
    Running = 1,
    /// Stopped after a shutdown request.
    Stopped = 2,
    /// Stopped on an error (a failed commit poisons the ledger: restart `socai serve`).
    Failed = 3,
}

impl Counters {
    pub fn status(&self) -> WriterStatus {
        match self.status.load(Relaxed) {
            1 => WriterStatus::Running,
            2 => WriterStatus::Stopped,
            3 => WriterStatus::Failed,
            _ => WriterStatus::Starting,
        }
    }
    pub fn set_status(&self, status: WriterStatus) {
        self.status.store(status as u8, Relaxed);
    }
}

/// The ledger service: ensures the streams, then runs the writer and the committed publisher
/// until `shutdown` resolves. On shutdown the batch in hand is committed and answered, and the
/// committed publisher gets `drain_timeout` to catch up. `commands` (e.g. redactions from the
/// HTTP API) are executed by the writer between batches.
pub async fn serve(
    js: jetstream::Context,
    ledger: Ledger<SledStorage>,
    config: WriterConfig,
    counters: Arc<Counters>,
    commands: Option<mpsc::Receiver<WriterCommand>>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> Result<(), IngestError> {
    counters.set_status(WriterStatus::Starting);
    counters.head_size.store(ledger.head().size, Relaxed);
    if let Some(latest) = ledger.latest_checkpoint().ok().flatten() {
        counters
            .checkpoint_size
            .store(latest.checkpoint.size, Relaxed);
        counters
            .checkpoint_signed_ms
            .store(telemetry::now_ms(), Relaxed);
    }
    if let Ok(Some(cursor)) = ledger.source_cursor() {
        counters.events_cursor.store(cursor, Relaxed);
    }
    let result = serve_inner(
        js,
        ledger,
        config,
        counters.clone(),
        commands,
        shutdown,
        drain_timeout,
    )
    .await;
    counters.set_status(if result.is_ok() {
        WriterStatus::Stopped
    } else {
        WriterStatus::Failed
    });
    result
}

/// How long `serve` waits for JetStream to set up the streams at start (see `serve_inner`).
const STREAMS_PATIENCE: Duration = Duration::from_secs(300);

async fn serve_inner(
    js: jetstream::Context,
    ledger: Ledger<SledStorage>,
    config: WriterConfig,
    counters: Arc<Counters>,
    commands: Option<mpsc::Receiver<WriterCommand>>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> Result<(), IngestError> {
    tokio::pin!(shutdown);
    if let Some(replica) = config.replica.clone() {
        return serve_replica(js, ledger, config, replica, counters, commands, shutdown).await;
    }
    // Streams first. A cluster that lost a node may need a while to elect leaders again: wait
    // for it (saying so) rather than stop, so a ledger restarted during a node's loss comes up;
    // but not forever, and never on an answer that waiting cannot change.
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        let attempt = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            attempt = ensure_streams(&js, &config.streams) => attempt,
        };
        match attempt {
            Ok(()) => break,
            Err(IngestError::NatsUnavailable(reason)) if started.elapsed() < STREAMS_PATIENCE => {
                tracing::warn!(
                    %reason,
                    retry_in_ms = delay.as_millis() as u64,
                    "JetStream cannot set up the streams yet (a cluster electing leaders after a node's loss, or a server starting); trying again"
                );
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(IngestError::NatsUnavailable(reason)) => {
                return Err(IngestError::Nats(format!(
                    "{reason} (still, after {} s of trying): check that the JetStream cluster has a meta leader and enough nodes up for the streams' replicas (`nats server report jetstream`), and that this user may use JetStream",
                    started.elapsed().as_secs()
                )));
            }
            Err(e) => return Err(e),
        }
    }
    let lag = tokio::spawn(poll_lag(js.clone(), counters.clone()));
    counters
        .promotion_pending
        .store(config.promoting_marker.is_some(), Relaxed);
    if let Ok(mut expected) = counters.replicas.expected.lock() {
        expected.clone_from(&config.replicas);
    }
    // Always: a replica the primary was not told about is named in its log.
    let listener = Some(tokio::spawn(replica::listen(
        js.client(),
        ledger.origin().to_owned(),
        counters.clone(),
    )));
    let (head_tx, head_rx) = watch::channel(ledger.head().size);
    let publisher = committed::CommittedPublisher {
        js: js.clone(),
        storage: ledger.storage().clone(),
        head: head_rx,
        counters: counters.clone(),
        catch_up: config.catch_up,
        promoting_marker: config.promoting_marker.clone(),
    };
    let publisher = tokio::spawn(publisher.run(drain_timeout));
    let writer = writer::Writer::new(js, ledger, config, counters, head_tx, commands);
    // The writer stops on shutdown, or when the publisher fails (then nothing downstream is safe).
    let publisher_failed = Arc::new(tokio::sync::Notify::new());
    let stop = {
        let failed = publisher_failed.clone();
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = failed.notified() => {}
            }
        }
    };
    let watcher = {
        let failed = publisher_failed.clone();
        async move {
            let result = publisher.await;
            if !matches!(result, Ok(Ok(()))) {
                failed.notify_one();
            }
            result
        }
    };
    let (written, published) = tokio::join!(writer.run(stop), watcher);
    lag.abort();
    if let Some(listener) = listener {
        listener.abort();
    }
    match published {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => {
            return Err(IngestError::Ledger(format!(
                "the committed publisher failed: {e}"
            )));
        }
    }
    written
}

/// A replica: the writer alone on EVENTS (it sends nothing: see [`replica`]), beside the task
/// that compares this ledger with the primary's checkpoints. It does not create or change the
/// streams (the primary owns them); it waits for EVENTS as the writer waits for any outage.
async fn serve_replica(
    js: jetstream::Context,
    ledger: Ledger<SledStorage>,
    config: WriterConfig,
    replica: ReplicaConfig,
    counters: Arc<Counters>,
    commands: Option<mpsc::Receiver<WriterCommand>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), IngestError> {
    let lag = tokio::spawn(poll_lag(js.clone(), counters.clone()));
    let (head_tx, head_rx) = watch::channel(ledger.head().size);
    let checker = tokio::spawn(replica::check_primary(
        js.clone(),
        ledger.reader(),
        replica,
        counters.clone(),
        head_rx,
    ));
    let writer = writer::Writer::new(js, ledger, config, counters, head_tx, commands);
    let written = writer.run(shutdown).await;
    lag.abort();
    checker.abort();
    written
}

/// Every 5 s: how far the writer is behind EVENTS (its last seq minus the writer's cursor).
async fn poll_lag(js: jetstream::Context, counters: Arc<Counters>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let last = match js.get_stream(socai_wire::stream::EVENTS).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) => info.state.last_sequence,
                Err(_) => continue,
            },
            Err(_) => continue,
        };
        let cursor = counters.events_cursor.load(Relaxed);
        counters
            .consumer_lag
            .store(last.saturating_sub(cursor), Relaxed);
    }
}
