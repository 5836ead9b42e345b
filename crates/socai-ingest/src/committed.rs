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
use socai_store::{SledStorage, Storage};
use socai_wire::header::{SEQ as H_SEQ, TREE_SIZE as H_TREE_SIZE};
use socai_wire::stream::{CHECKPOINTS, COMMITTED};
use socai_wire::subject::{CHECKPOINT_SUBJECT, COMMITTED_SUBJECT};
use tokio::sync::watch;

use crate::{Counters, IngestError};

/// Entries read and published per round.
const ROUND_MAX_ENTRIES: u64 = 1000;

pub(crate) struct CommittedPublisher {
    pub js: jetstream::Context,
    pub storage: SledStorage,
    pub head: watch::Receiver<u64>,
    pub counters: Arc<Counters>,
}

/// The last message on `subject` of `stream`: its header `name` parsed, and its payload; `None`
/// if the stream has no message there.
async fn last_message(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
    name: &str,
) -> Result<Option<(u64, Bytes)>, IngestError> {
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
                    IngestError::Diverged(format!(
                        "the last message on {subject} (stream seq {}) has no {name} header: something other than socai publishes there; only the ledger user may publish to dvc.ledger.>",
                        msg.sequence
                    ))
                })?;
            Ok(Some((value, msg.payload)))
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
    /// Fails only when COMMITTED does not continue this ledger (another ledger's stream, or a
    /// ledger restored from an older backup): then nothing more can be published safely.
    pub async fn run(mut self, drain_timeout: Duration) -> Result<(), IngestError> {
        let mut writer_gone = false;
        let mut give_up_at: Option<tokio::time::Instant> = None;
        let mut cursor: Option<(u64, u64)> = None; // (next seq, last checkpoint size published)
        loop {
            let head = *self.head.borrow_and_update();
            let (next, checkpoint) = match cursor {
                Some(c) => c,
                None => match self.resume(head).await {
                    Ok(c) => c,
                    Err(e @ IngestError::Diverged(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot resume publishing committed entries; retrying");
                        if pause(give_up_at).await {
                            return Ok(());
                        }
                        continue;
                    }
                },
            };
            if next < head {
                let to = head.min(next + ROUND_MAX_ENTRIES);
                match self.publish_entries(next, to).await {
                    Ok(()) => cursor = Some((to, checkpoint)),
                    Err(e) => {
                        tracing::warn!(error = %e, from = next, to, "publishing committed entries failed; retrying");
                        cursor = None;
                        if pause(give_up_at).await {
                            return Ok(());
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
                        return Ok(());
                    }
                    continue;
                }
            }
            if writer_gone {
                return Ok(());
            }
            if self.head.changed().await.is_err() {
                // The writer stopped: publish what is left, then stop.
                writer_gone = true;
                give_up_at = Some(tokio::time::Instant::now() + drain_timeout);
            }
        }
    }

    /// Where COMMITTED and CHECKPOINTS stand: the next seq to publish and the size of the last
    /// checkpoint published. COMMITTED's last entry must be this ledger's entry at that seq.
    async fn resume(&self, head: u64) -> Result<(u64, u64), IngestError> {
        let last = last_message(&self.js, COMMITTED, COMMITTED_SUBJECT, H_SEQ).await?;
        let next = match last {
            None => 0,
            Some((seq, payload)) => {
                let storage = self.storage.clone();
                let ours = tokio::task::spawn_blocking(move || storage.entry(seq))
                    .await
                    .map_err(|e| IngestError::Ledger(format!("reading entry {seq} failed: {e}")))?
                    .map_err(|e| IngestError::Ledger(format!("reading entry {seq}: {e}")))?;
                match ours {
                    Some(entry) if entry.as_slice() == payload.as_ref() => seq + 1,
                    Some(_) => {
                        return Err(IngestError::Diverged(format!(
                            "COMMITTED's entry {seq} differs from this ledger's entry {seq}: the stream belongs to another ledger; give this ledger its own NATS account or streams, or delete COMMITTED and CHECKPOINTS if this ledger replaces the old one"
                        )));
                    }
                    None => {
                        return Err(IngestError::Diverged(format!(
                            "COMMITTED holds entry {seq} but this ledger has {head} entries: was the data dir restored from an older backup, or replaced? restore the newest backup, or delete COMMITTED and CHECKPOINTS if this ledger replaces the old one"
                        )));
                    }
                }
            }
        };
        let checkpoint = last_message(&self.js, CHECKPOINTS, CHECKPOINT_SUBJECT, H_TREE_SIZE)
            .await?
            .map_or(0, |(size, _)| size);
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
            // The server stores entry seq only right after entry seq-1: COMMITTED never has a gap,
            // even if an earlier publish of this round is lost and a later one is not.
            let msg = if seq == 0 {
                msg.expected_last_sequence(0)
            } else {
                msg.expected_last_message_id((seq - 1).to_string())
            };
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

    /// Publishes, in order, every signed checkpoint newer than `published` that COMMITTED covers
    /// (`size <= next`); returns the size of the last one now published.
    async fn publish_checkpoint(&self, next: u64, published: u64) -> Result<u64, IngestError> {
        let storage = self.storage.clone();
        let due = tokio::task::spawn_blocking(move || -> Result<Vec<(u64, String)>, String> {
            let newer = |c: &(u64, String)| c.0 > published && c.0 <= next;
            match storage.latest_checkpoint().map_err(|e| e.to_string())? {
                Some(latest) if newer(&latest) => Ok(storage
                    .checkpoints()
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .filter(newer)
                    .collect()),
                _ => Ok(Vec::new()),
            }
        })
        .await
        .map_err(|e| IngestError::Ledger(format!("reading checkpoints failed: {e}")))?
        .map_err(IngestError::Ledger)?;
        let mut done = published;
        for (size, note) in due {
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
            done = size;
        }
        Ok(done)
    }
}
