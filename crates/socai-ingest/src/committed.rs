//! Follows the ledger head and publishes every committed entry to COMMITTED (msg-id = seq, in
//! seq order), then the latest signed checkpoint to `dvc.ledger.checkpoint`.
//!
//! The cursor is the stream itself: at start and after any failure the publisher reads the last
//! seq COMMITTED holds and goes on from there, so a crash between commit and publish loses
//! nothing and publishes nothing twice. A checkpoint is published only once every entry it
//! covers is on COMMITTED.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream::LastRawMessageErrorKind};
use bytes::Bytes;
use socai_client::subject::{CHECKPOINT_SUBJECT, COMMITTED_SUBJECT};
use socai_store::{SledStorage, Storage};
use tokio::sync::watch;

use crate::check::{H_SEQ, H_TREE_SIZE};
use crate::streams::{CHECKPOINTS, COMMITTED};
use crate::{Counters, IngestError};

/// Entries read and published per round.
const ROUND_MAX_ENTRIES: u64 = 1000;

pub(crate) struct CommittedPublisher {
    pub js: jetstream::Context,
    pub storage: SledStorage,
    pub head: watch::Receiver<u64>,
    pub counters: Arc<Counters>,
}

/// The value of header `name` of the last message on `subject` of `stream`, parsed; `None` if
/// the stream has no message there.
async fn last_header_u64(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
    name: &str,
) -> Result<Option<u64>, IngestError> {
    let stream = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| IngestError::Nats(format!("cannot open stream {stream}: {e}")))?;
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(msg) => {
            let value = msg
                .headers
                .get(name)
                .and_then(|v| v.as_str().parse::<u64>().ok())
                .ok_or_else(|| {
                    IngestError::Nats(format!(
                        "the last message on {subject} (stream seq {}) has no {name} header: was it published by something other than socai?",
                        msg.sequence
                    ))
                })?;
            Ok(Some(value))
        }
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(IngestError::Nats(format!(
            "cannot read the last message on {subject}: {e}"
        ))),
    }
}

/// Waits before a retry; `true` when it is time to give up (the writer is gone and the drain
/// deadline has passed).
async fn pause(give_up_at: Option<tokio::time::Instant>) -> bool {
    if give_up_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
        tracing::warn!(
            "stopping with committed entries not yet on COMMITTED; the next start publishes them"
        );
        return true;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    false
}

impl CommittedPublisher {
    /// Runs until the writer is gone (its head sender dropped) and everything is published, or
    /// `drain_timeout` after the writer is gone while NATS keeps failing.
    pub async fn run(mut self, drain_timeout: Duration) {
        let mut writer_gone = false;
        let mut give_up_at: Option<tokio::time::Instant> = None;
        let mut cursor: Option<(u64, u64)> = None; // (next seq, last checkpoint size published)
        loop {
            let head = *self.head.borrow_and_update();
            let (next, checkpoint) = match cursor {
                Some(c) => c,
                None => match self.resume().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot resume publishing committed entries; retrying");
                        if pause(give_up_at).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            if next > head {
                tracing::error!(
                    committed_stream_next = next,
                    ledger_size = head,
                    "COMMITTED holds entries the ledger does not: was the ledger restored from an older backup? not publishing until the ledger catches up"
                );
            }
            if next < head {
                let to = head.min(next + ROUND_MAX_ENTRIES);
                match self.publish_entries(next, to).await {
                    Ok(()) => cursor = Some((to, checkpoint)),
                    Err(e) => {
                        tracing::warn!(error = %e, from = next, to, "publishing committed entries failed; retrying");
                        cursor = None;
                        if pause(give_up_at).await {
                            return;
                        }
                    }
                }
                continue;
            }
            match self.publish_checkpoint(next, checkpoint).await {
                Ok(size) => cursor = Some((next, size)),
                Err(e) => {
                    tracing::warn!(error = %e, "publishing a checkpoint failed; retrying");
                    cursor = None;
                    if pause(give_up_at).await {
                        return;
                    }
                    continue;
                }
            }
            if writer_gone {
                return;
            }
            if self.head.changed().await.is_err() {
                // The writer stopped: publish what is left, then stop.
                writer_gone = true;
                give_up_at = Some(tokio::time::Instant::now() + drain_timeout);
            }
        }
    }

    async fn resume(&self) -> Result<(u64, u64), IngestError> {
        let next = last_header_u64(&self.js, COMMITTED, COMMITTED_SUBJECT, H_SEQ)
            .await?
            .map_or(0, |seq| seq + 1);
        let checkpoint = last_header_u64(&self.js, CHECKPOINTS, CHECKPOINT_SUBJECT, H_TREE_SIZE)
            .await?
            .unwrap_or(0);
        Ok((next, checkpoint))
    }

    async fn publish_entries(&self, from: u64, to: u64) -> Result<(), IngestError> {
        let storage = self.storage.clone();
        let entries = tokio::task::spawn_blocking(move || {
            storage.entries(from, to).collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| IngestError::Ledger(format!("reading entries failed: {e}")))?
        .map_err(|e| IngestError::Ledger(format!("reading entries {from}..{to}: {e}")))?;
        let mut acks = Vec::with_capacity(entries.len());
        for (seq, entry) in entries {
            let msg = PublishMessage::build()
                .payload(Bytes::from(entry))
                .message_id(seq.to_string())
                .header(H_SEQ, seq.to_string().as_str());
            let ack = self
                .js
                .send_publish(COMMITTED_SUBJECT, msg)
                .await
                .map_err(|e| IngestError::Nats(format!("publishing seq {seq}: {e}")))?;
            acks.push(ack.into_future());
        }
        for result in futures::future::join_all(acks).await {
            result
                .map_err(|e| IngestError::Nats(format!("COMMITTED did not store an entry: {e}")))?;
        }
        self.counters.published.store(to, Relaxed);
        Ok(())
    }

    /// Publishes the latest signed checkpoint if it is newer than `published` and covered by
    /// COMMITTED (`size <= next`); returns the size now published.
    async fn publish_checkpoint(&self, next: u64, published: u64) -> Result<u64, IngestError> {
        let storage = self.storage.clone();
        let latest = tokio::task::spawn_blocking(move || storage.latest_checkpoint())
            .await
            .map_err(|e| IngestError::Ledger(format!("reading checkpoints failed: {e}")))?
            .map_err(|e| IngestError::Ledger(e.to_string()))?;
        let Some((size, note)) = latest.filter(|(size, _)| *size > published && *size <= next)
        else {
            return Ok(published);
        };
        let msg = PublishMessage::build()
            .payload(Bytes::from(note))
            .message_id(format!("checkpoint-{size}"))
            .header(H_TREE_SIZE, size.to_string().as_str());
        self.js
            .send_publish(CHECKPOINT_SUBJECT, msg)
            .await
            .map_err(|e| IngestError::Nats(format!("publishing checkpoint {size}: {e}")))?
            .into_future()
            .await
            .map_err(|e| IngestError::Nats(format!("CHECKPOINTS did not store {size}: {e}")))?;
        self.counters.checkpoints.store(size, Relaxed);
        Ok(size)
    }
}
