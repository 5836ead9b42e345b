//! The ledger writer: the one task that owns the chain head. It pulls batches from the durable
//! consumer, validates them, appends them in one atomic, fsynced commit, and only then acks each
//! message (waiting for the server to confirm the ack). Bad events are copied to REJECTED with
//! their reason and then terminated.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, message::PublishMessage};
use bytes::Bytes;
use futures::StreamExt;
use socai_model::{Event, Limits, Rejection, Validator};
use socai_store::{AppendOutcome, Ledger, LedgerError, SledStorage, Storage};
use socai_wire::subject::rejected_subject;
use tokio::sync::{mpsc, oneshot, watch};

use crate::check::{check_message, event_id_of, rejection_headers};
use crate::streams::{StreamSettings, ledger_consumer};
use crate::{Counters, IngestError};

/// Writer settings (socai.toml `[ingest]` and the ledger's limits).
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub streams: StreamSettings,
    /// At most this many events per commit.
    pub batch_max_events: usize,
    pub limits: Limits,
    /// `occurred_at` later than the JetStream timestamp plus this is `future_timestamp`.
    pub max_future_skew: jiff::SignedDuration,
    /// Sign a checkpoint at least this often while new entries arrive.
    pub checkpoint_interval: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            streams: StreamSettings::default(),
            batch_max_events: 1000,
            limits: Limits::default(),
            max_future_skew: jiff::SignedDuration::from_hours(24),
            checkpoint_interval: Duration::from_secs(10),
        }
    }
}

/// A message's subject, payload, EVENTS stream seq and JetStream timestamp.
type Input = (String, Bytes, u64, jiff::Timestamp);

/// Longest a batch's acks and rejections may take.
const SETTLE_MAX: Duration = Duration::from_secs(30);

/// Batches whose acks and rejections may be in flight while the next batch is committed.
const SETTLING_MAX_BATCHES: usize = 4;

/// The messages of a pulled chunk that can be committed in order: up to the first pull error, or
/// the first gap in the consumer's delivery sequence (a message lost in transit, e.g. in a
/// reconnect, would otherwise come back after ack_wait behind newer messages of its subject).
/// Returns them and whether the consumer must be reopened at its ack floor.
fn in_order(
    items: Vec<Result<jetstream::Message, jetstream::consumer::pull::MessagesError>>,
    last_consumer_seq: &mut u64,
) -> (Vec<jetstream::Message>, bool) {
    let mut batch = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Ok(msg) => {
                let consumer_seq = msg.info().map(|i| i.consumer_sequence).unwrap_or(0);
                if consumer_seq != *last_consumer_seq + 1 {
                    tracing::warn!(
                        expected = *last_consumer_seq + 1,
                        got = consumer_seq,
                        "a delivery went missing; reopening the consumer at its ack floor"
                    );
                    return (batch, true);
                }
                *last_consumer_seq = consumer_seq;
                batch.push(msg);
            }
            Err(e) => {
                tracing::warn!(error = %e, "pulling from the ledger consumer failed");
                return (batch, true);
            }
        }
    }
    (batch, false)
}

/// Work for the writer besides EVENTS, executed between two batches in a commit of its own.
#[derive(Debug)]
pub enum WriterCommand {
    /// Erase the personal data of event `id` and record why and by whom (see
    /// `Ledger::redact`), then sign a checkpoint covering the redaction entry.
    Redact {
        id: String,
        reason: String,
        by: String,
        /// When the redaction was asked for (RFC 3339 UTC): the redaction entry's time.
        at: String,
        reply: oneshot::Sender<Result<Redacted, LedgerError>>,
    },
}

/// A redaction done: which event, and where its record is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Redacted {
    pub id: String,
    pub target_seq: u64,
    pub redaction_seq: u64,
    /// Size of the signed checkpoint that covers the redaction entry.
    pub tree_size: u64,
    /// Messages erased from EVENTS and REJECTED (the event's copies there).
    pub copies_erased: usize,
    /// Whether erasing those copies is still to be done (NATS failed; retried until done).
    pub copies_pending: bool,
}

/// The next command, or never when there is no command channel (or it closed).
async fn next_command(commands: &mut Option<mpsc::Receiver<WriterCommand>>) -> WriterCommand {
    if let Some(rx) = commands {
        if let Some(cmd) = rx.recv().await {
            return cmd;
        }
        *commands = None;
    }
    std::future::pending().await
}

/// What became of one message of a batch.
enum Verdict {
    /// Committed now or before (duplicate): ack.
    Ack { duplicate: bool },
    /// Copy to REJECTED, then terminate.
    Reject(Rejection),
}

pub(crate) struct Writer {
    pub js: jetstream::Context,
    pub ledger: Option<Ledger<SledStorage>>,
    pub validator: Arc<Validator>,
    pub config: WriterConfig,
    pub counters: Arc<Counters>,
    pub head: watch::Sender<u64>,
    /// Acks and rejections of committed batches, settling while the next batch commits.
    pub settling: tokio::task::JoinSet<()>,
    pub commands: Option<mpsc::Receiver<WriterCommand>>,
    /// Rejected copies of already redacted events (not seen by the ledger's append): marked for
    /// erasure at the next erasure pass, once their REJECTED copies are stored.
    pub late_copies: Vec<socai_store::EventKey>,
}

/// How long to wait before retrying after NATS failed us.
const NATS_RETRY: Duration = Duration::from_secs(1);

impl Writer {
    /// Runs until `shutdown` resolves (the batch in hand is finished first, and a checkpoint is
    /// signed for what it committed) or the ledger fails.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), IngestError> {
        let pumped = self.pump(shutdown).await;
        self.settled().await;
        pumped?;
        self.checkpoint_if_due().await
    }

    /// Waits until every committed batch is acked or rejected.
    async fn settled(&mut self) {
        while self.settling.join_next().await.is_some() {}
    }

    async fn pump(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), IngestError> {
        let mut shutdown = pin!(shutdown);
        let mut checkpoint_tick = tokio::time::interval(self.config.checkpoint_interval);
        checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Copies of redacted events left by a crash or a redaction made without NATS.
        self.erase_copies_now().await?;
        'consumer: loop {
            // Not raced against shutdown: a reset must never stop between delete and create.
            // Where to start if the consumer is gone (e.g. a reset interrupted by a crash): after
            // the last EVENTS message this ledger committed, not from the stream's beginning.
            let committed_up_to = match self.ledger.as_ref().map(Ledger::source_cursor) {
                Some(Ok(cursor)) => cursor,
                Some(Err(e)) => return Err(IngestError::Ledger(e.to_string())),
                None => None,
            };
            let consumer = ledger_consumer(&self.js, &self.config.streams, committed_up_to).await;
            let (messages, mut last_consumer_seq) = match consumer {
                Ok(c) => {
                    let delivered = c.cached_info().delivered.consumer_sequence;
                    let messages = c
                        .stream()
                        .max_messages_per_batch(self.config.batch_max_events)
                        .heartbeat(Duration::from_secs(5))
                        .messages()
                        .await;
                    (messages, delivered)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the ledger consumer; retrying");
                    self.counters.set_status(crate::WriterStatus::Starting);
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        cmd = next_command(&mut self.commands) => {
                            self.execute(cmd).await?;
                            continue 'consumer;
                        }
                        _ = tokio::time::sleep(NATS_RETRY) => continue 'consumer,
                    }
                }
            };
            let messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot pull from the ledger consumer; retrying");
                    self.settled().await;
                    tokio::time::sleep(NATS_RETRY).await;
                    continue 'consumer;
                }
            };
            let mut chunks = messages.ready_chunks(self.config.batch_max_events);
            self.counters.set_status(crate::WriterStatus::Running);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut shutdown => return Ok(()),
                    // Commands (a redaction) between two batches, even while a backlog drains.
                    cmd = next_command(&mut self.commands) => self.execute(cmd).await?,
                    chunk = chunks.next() => {
                        let Some(items) = chunk else {
                            tracing::warn!("the pull subscription ended; reopening the consumer");
                            self.settled().await;
                            continue 'consumer;
                        };
                        let (batch, broken) = in_order(items, &mut last_consumer_seq);
                        if !batch.is_empty() {
                            self.process(batch).await?;
                        }
                        if broken {
                            self.settled().await;
                            // What was skipped stays pending on the server; reopening the
                            // consumer at its ack floor delivers it again, in stream order.
                            continue 'consumer;
                        }
                    }
                    _ = checkpoint_tick.tick() => {
                        self.checkpoint_if_due().await?;
                        self.erase_copies_now().await?;
                    }
                }
            }
        }
    }

    fn ledger(&mut self) -> Result<Ledger<SledStorage>, IngestError> {
        self.ledger
            .take()
            .ok_or_else(|| IngestError::Ledger("the ledger was lost by a failed task".into()))
    }

    /// Runs a command in a commit of its own. A failed commit poisons the ledger: the command
    /// is answered with the error and the writer stops.
    async fn execute(&mut self, cmd: WriterCommand) -> Result<(), IngestError> {
        match cmd {
            WriterCommand::Redact {
                id,
                reason,
                by,
                at,
                reply,
            } => {
                let mut ledger = self.ledger()?;
                let (ledger, result) = tokio::task::spawn_blocking(move || {
                    let result = ledger.redact(&id, &reason, &by, &at).and_then(
                        |(target_seq, redaction_seq)| {
                            let signed = ledger.checkpoint()?;
                            Ok(Redacted {
                                id,
                                target_seq,
                                redaction_seq,
                                tree_size: signed.checkpoint.size,
                                copies_erased: 0,
                                copies_pending: true,
                            })
                        },
                    );
                    (ledger, result)
                })
                .await
                .map_err(|e| IngestError::Ledger(format!("redaction task failed: {e}")))?;
                let poisoned = ledger.is_poisoned();
                self.after_commit(&ledger);
                self.ledger = Some(ledger);
                let mut result = result;
                let mut erase_failed = None;
                if let Ok(done) = &mut result {
                    // Erase NATS's copies before answering: once told "redacted", nothing
                    // socai or its nats-server controls holds the plaintext. The redaction is
                    // committed either way, so it is answered even if this fails.
                    let (erased, left) = match self.erase_copies_now().await {
                        Ok(counts) => counts,
                        Err(e) => {
                            erase_failed = Some(e);
                            (0, 1)
                        }
                    };
                    done.copies_erased = erased;
                    done.copies_pending = left > 0;
                    tracing::info!(
                        target_seq = done.target_seq,
                        redaction_seq = done.redaction_seq,
                        copies_erased = erased,
                        copies_pending = done.copies_pending,
                        "personal data redacted"
                    );
                }
                let _ = reply.send(result);
                if let Some(e) = erase_failed {
                    return Err(e);
                }
                if poisoned {
                    return Err(IngestError::Ledger("the redaction's commit failed".into()));
                }
                Ok(())
            }
        }
    }

    /// Tells the committed publisher and the telemetry where the ledger stands now.
    fn after_commit(&self, ledger: &Ledger<SledStorage>) {
        let head = ledger.head().size;
        self.head.send_replace(head);
        self.counters.head_size.store(head, Relaxed);
        let size = ledger
            .latest_checkpoint()
            .ok()
            .flatten()
            .map_or(0, |c| c.checkpoint.size);
        if self.counters.checkpoint_size.swap(size, Relaxed) != size {
            self.counters
                .checkpoint_signed_ms
                .store(crate::telemetry::now_ms(), Relaxed);
        }
    }

    /// Commits erasure marks (`f` on the ledger) in a blocking task.
    async fn commit_marks(
        &mut self,
        f: impl FnOnce(&mut Ledger<SledStorage>) -> Result<(), LedgerError> + Send + 'static,
    ) -> Result<(), IngestError> {
        let mut ledger = self.ledger()?;
        let (ledger, marked) = tokio::task::spawn_blocking(move || {
            let marked = f(&mut ledger);
            (ledger, marked)
        })
        .await
        .map_err(|e| IngestError::Ledger(format!("erasure task failed: {e}")))?;
        self.ledger = Some(ledger);
        marked.map_err(|e| IngestError::Ledger(e.to_string()))
    }

    /// Erases the NATS copies of every event a redaction marked, then records which are done.
    /// Returns (messages erased, events still pending). A NATS failure leaves the mark for the
    /// next try (every checkpoint interval and at start).
    async fn erase_copies_now(&mut self) -> Result<(usize, usize), IngestError> {
        // Rejections still being copied to REJECTED must be there before it is scanned.
        self.settled().await;
        if !self.late_copies.is_empty() {
            let late = std::mem::take(&mut self.late_copies);
            self.commit_marks(move |l| l.mark_for_erasure(late)).await?;
        }
        let Some(ledger) = self.ledger.as_ref() else {
            return Ok((0, 0));
        };
        let storage = ledger.storage();
        let pending = storage
            .erasures_pending()
            .map_err(|e| IngestError::Ledger(e.to_string()))?;
        if pending.is_empty() {
            return Ok((0, 0));
        }
        let mut work = Vec::with_capacity(pending.len());
        for event in pending {
            let copies = storage
                .copies(&event)
                .map_err(|e| IngestError::Ledger(e.to_string()))?;
            work.push((event, copies));
        }
        let mut done = Vec::new();
        let mut erased = 0;
        let total = work.len();
        for (event, copies) in work {
            match crate::erase::erase_copies(&self.js, &event, &copies).await {
                Ok(n) => {
                    erased += n;
                    done.push(event);
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        agency = %event.agency,
                        id = %event.id,
                        "cannot erase a redacted event's copies on NATS yet; retrying at the next checkpoint interval"
                    );
                    // NATS is likely down or slow: leave the rest for the next try too.
                    break;
                }
            }
        }
        let left = total - done.len();
        if !done.is_empty() {
            self.commit_marks(move |l| l.mark_erased(done)).await?;
        }
        Ok((erased, left))
    }

    async fn checkpoint_if_due(&mut self) -> Result<(), IngestError> {
        let mut ledger = self.ledger()?;
        if !ledger.checkpoint_due() {
            self.ledger = Some(ledger);
            return Ok(());
        }
        let (ledger, result) = tokio::task::spawn_blocking(move || {
            let result = ledger.checkpoint();
            (ledger, result)
        })
        .await
        .map_err(|e| IngestError::Ledger(format!("checkpoint task failed: {e}")))?;
        self.after_commit(&ledger);
        self.ledger = Some(ledger);
        result.map_err(|e| IngestError::Ledger(e.to_string()))?;
        Ok(())
    }

    /// Validate, commit (fsync), then settle every message of the batch.
    async fn process(&mut self, batch: Vec<jetstream::Message>) -> Result<(), IngestError> {
        let mut inputs: Vec<Input> = Vec::with_capacity(batch.len());
        for msg in &batch {
            let (stream_seq, published) = match msg.info() {
                Ok(info) => (
                    info.stream_sequence,
                    jiff::Timestamp::from_nanosecond(info.published.unix_timestamp_nanos())
                        .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                ),
                Err(e) => {
                    return Err(IngestError::Nats(format!(
                        "message on {} has no JetStream metadata: {e}",
                        msg.subject
                    )));
                }
            };
            inputs.push((
                msg.subject.to_string(),
                msg.payload.clone(),
                stream_seq,
                published,
            ));
        }
        let mut ledger = self.ledger()?;
        let validator = self.validator.clone();
        let skew = self.config.max_future_skew;
        let inputs = Arc::new(inputs);
        let task_inputs = inputs.clone();
        let started = std::time::Instant::now();
        let task = tokio::task::spawn_blocking(move || {
            let mut events: Vec<Event> = Vec::with_capacity(task_inputs.len());
            let mut recorded: Vec<String> = Vec::with_capacity(task_inputs.len());
            let mut sources: Vec<u64> = Vec::with_capacity(task_inputs.len());
            // Per message: Ok(index into events) or the rejection.
            let mut checked: Vec<Result<usize, Rejection>> = Vec::with_capacity(task_inputs.len());
            for (subject, payload, stream_seq, published) in task_inputs.iter() {
                checked.push(
                    check_message(&validator, subject, payload, *published, skew).map(|event| {
                        events.push(event);
                        recorded.push(published.to_string());
                        sources.push(*stream_seq);
                        events.len() - 1
                    }),
                );
            }
            let last_stream_seq = task_inputs.iter().map(|i| i.2).max();
            let outcomes =
                ledger.append_batch_sourced(&events, &recorded, &sources, last_stream_seq);
            (ledger, events, checked, outcomes)
        });
        // A long commit must not let ack_wait expire: tell the server we are still at it.
        let mut task = pin!(task);
        let every = self.config.streams.ack_wait / 3;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let joined = loop {
            tokio::select! {
                joined = &mut task => break joined,
                _ = progress.tick() => {
                    for msg in &batch {
                        let _ = msg.ack_with(AckKind::Progress).await;
                    }
                }
            }
        };
        let (ledger, events, checked, outcomes) =
            joined.map_err(|e| IngestError::Ledger(format!("commit task failed: {e}")))?;
        let elapsed = started.elapsed();
        self.after_commit(&ledger);
        self.ledger = Some(ledger);
        self.counters.batches.fetch_add(1, Relaxed);
        self.counters
            .commit_us
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
        // The batch is fsynced (or nothing of it is): only now may anything be acked.
        let outcomes = outcomes.map_err(|e| IngestError::Ledger(e.to_string()))?;
        let telemetry = &self.counters.telemetry;
        telemetry.commit_seconds.observe(elapsed.as_secs_f64());
        telemetry.batch_events.observe(batch.len() as f64);
        if let Some(last) = inputs.iter().map(|i| i.2).max() {
            self.counters.events_cursor.fetch_max(last, Relaxed);
        }

        // A copy of a redacted event refused before the ledger saw it (e.g. a bad field): its
        // REJECTED copy and EVENTS message must be erased too.
        if let Some(ledger) = self.ledger.as_ref() {
            for (c, (subject, payload, _, _)) in checked.iter().zip(inputs.iter()) {
                if c.is_ok() {
                    continue;
                }
                let (Some((agency, _)), Some(id)) = (
                    socai_wire::subject::parse_event_subject(subject),
                    event_id_of(payload),
                ) else {
                    continue;
                };
                let key = socai_store::EventKey::new(agency, id);
                if ledger.is_redacted(&key).unwrap_or(false) {
                    self.late_copies.push(key);
                }
            }
        }
        let verdicts: Vec<Verdict> = checked
            .into_iter()
            .map(|c| match c {
                Err(rejection) => Verdict::Reject(rejection),
                Ok(i) => match outcomes[i].refusal(&events[i].id) {
                    None => Verdict::Ack {
                        duplicate: matches!(outcomes[i], AppendOutcome::Duplicate { .. }),
                    },
                    Some(rejection) => Verdict::Reject(rejection),
                },
            })
            .collect();
        // The batch is durable: settle it in the background while the next one commits.
        while self.settling.len() >= SETTLING_MAX_BATCHES {
            self.settling.join_next().await;
        }
        let settler = Settler {
            js: self.js.clone(),
            counters: self.counters.clone(),
        };
        self.settling.spawn(async move {
            // NATS may be down: unconfirmed acks come back as duplicates and unterminated
            // rejections are rejected again, so neither may hold the writer forever.
            let settle = settler.settle(batch, inputs, verdicts);
            if tokio::time::timeout(SETTLE_MAX, settle).await.is_err() {
                tracing::warn!(
                    "settling a committed batch timed out; its messages come back as duplicates"
                );
            }
        });
        Ok(())
    }
}

/// What the settle stage needs: a handle on NATS and the counters.
#[derive(Clone)]
struct Settler {
    js: jetstream::Context,
    counters: Arc<Counters>,
}

impl Settler {
    /// Acks what is committed; copies what is rejected to REJECTED and then terminates it.
    async fn settle(
        self,
        batch: Vec<jetstream::Message>,
        inputs: Arc<Vec<Input>>,
        verdicts: Vec<Verdict>,
    ) {
        let mut acks = Vec::new();
        let mut rejects = Vec::new();
        for ((msg, input), verdict) in batch.iter().zip(inputs.iter()).zip(verdicts) {
            match verdict {
                Verdict::Ack { duplicate } => {
                    let counter = if duplicate {
                        &self.counters.duplicates
                    } else {
                        &self.counters.committed
                    };
                    counter.fetch_add(1, Relaxed);
                    acks.push(msg.double_ack());
                }
                Verdict::Reject(rejection) => rejects.push(self.reject(msg, input, rejection)),
            }
        }
        let (acked, _) = futures::join!(
            futures::future::join_all(acks),
            futures::future::join_all(rejects)
        );
        let failed = acked.iter().filter(|r| r.is_err()).count();
        if failed > 0 {
            // Not lost: the server redelivers them and the ledger answers "duplicate".
            self.counters.ack_failures.fetch_add(failed as u64, Relaxed);
            tracing::warn!(
                failed,
                "acks not confirmed by the server; those messages will come back as duplicates"
            );
        }
    }

    async fn reject(
        &self,
        msg: &jetstream::Message,
        (subject, payload, stream_seq, published): &Input,
        rejection: Rejection,
    ) {
        let id = event_id_of(payload);
        tracing::info!(
            code = rejection.code.as_str(),
            path = %rejection.path,
            reason = %rejection.reason,
            subject = %subject,
            stream_seq,
            id = id.as_deref().unwrap_or(""),
            "event rejected"
        );
        let headers = rejection_headers(
            &rejection,
            subject,
            *stream_seq,
            id.as_deref(),
            &published.to_string(),
        );
        let copy = PublishMessage::build()
            .payload(payload.clone())
            .headers(headers);
        let stored = match self.js.send_publish(rejected_subject(subject), copy).await {
            Ok(ack) => ack
                .into_future()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => {
                self.counters.rejected.fetch_add(1, Relaxed);
                self.counters
                    .telemetry
                    .rejected
                    .get_or_create(&crate::telemetry::CodeLabel {
                        code: rejection.code.as_str().to_owned(),
                    })
                    .inc();
                if let Err(e) = msg.double_ack_with(AckKind::Term).await {
                    // Redelivered later, rejected again; REJECTED dedups its copy by stream seq.
                    tracing::warn!(error = %e, stream_seq, "terminating a rejected message failed");
                }
            }
            Err(e) => {
                // Never terminate what REJECTED does not hold: let it come back and try again.
                tracing::warn!(error = %e, stream_seq, "cannot store a rejection on REJECTED; it will be retried");
                let _ = msg.ack_with(AckKind::Nak(Some(NATS_RETRY))).await;
            }
        }
    }
}
