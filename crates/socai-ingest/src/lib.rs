//! socai-ingest: agencies' events from JetStream into the ledger, exactly once.
//!
//! ```text
//! EVENTS (dvc.events.<agency>.<type>) ─ durable pull consumer "ledger", explicit ack
//!   └─► writer: validate + subject + clock ─bad─► REJECTED (original bytes + Socai-Error-*) → Term
//!        └─ good ─► one sled commit + fsync ─► ack each message (server-confirmed)
//!             └─► committed publisher: COMMITTED (msg-id = seq) ─► CHECKPOINTS (dvc.ledger.checkpoint)
//! ```
//!
//! Knows nothing of HTTP. The binary wires it (`socai serve`).

pub mod check;
mod committed;
pub mod local;
pub mod projector;
pub mod streams;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_nats::jetstream;
use socai_model::Validator;
use socai_store::{Ledger, SledStorage};
use tokio::sync::watch;

pub use streams::{CHECKPOINTS, COMMITTED, EVENTS, REJECTED, StreamSettings, ensure_streams};
pub use writer::WriterConfig;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("nats: {0}")]
    Nats(String),
    #[error(
        "ledger: {0}; nothing of the batch in hand was acked: restart `socai serve` (it reopens the ledger and the messages come again)"
    )]
    Ledger(String),
    /// COMMITTED does not continue this ledger; the message says what to do.
    #[error("{0}")]
    Diverged(String),
}

/// Running totals since start, readable while the writer runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events newly committed.
    pub committed: AtomicU64,
    /// Events already in the ledger (redeliveries, republished ids), acked.
    pub duplicates: AtomicU64,
    /// Events copied to REJECTED and terminated.
    pub rejected: AtomicU64,
    /// Commits (batches) made.
    pub batches: AtomicU64,
    /// Time spent validating and committing (fsync included), in microseconds.
    pub commit_us: AtomicU64,
    /// Acks the server did not confirm (those messages come back as duplicates).
    pub ack_failures: AtomicU64,
    /// COMMITTED holds every entry below this seq.
    pub published: AtomicU64,
    /// Tree size of the last checkpoint published.
    pub checkpoints: AtomicU64,
}

/// The ledger service: ensures the streams, then runs the writer and the committed publisher
/// until `shutdown` resolves. On shutdown the batch in hand is committed and acked, and the
/// committed publisher gets `drain_timeout` to catch up. Returns the ledger for a clean close.
pub async fn serve(
    js: jetstream::Context,
    ledger: Ledger<SledStorage>,
    config: WriterConfig,
    counters: Arc<Counters>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> Result<(), IngestError> {
    ensure_streams(&js, &config.streams).await?;
    let (head_tx, head_rx) = watch::channel(ledger.head().size);
    let publisher = committed::CommittedPublisher {
        js: js.clone(),
        storage: ledger.storage().clone(),
        head: head_rx,
        counters: counters.clone(),
    };
    let publisher = tokio::spawn(publisher.run(drain_timeout));
    let validator = Arc::new(Validator::new(config.limits));
    let writer = writer::Writer {
        js,
        ledger: Some(ledger),
        validator,
        config,
        counters,
        head: head_tx,
        settling: tokio::task::JoinSet::new(),
    };
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
