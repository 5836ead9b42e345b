//! Follows the ledger head and publishes the committed entries to COMMITTED, one message per
//! commit (a backlog is merged, up to [`MESSAGE_MAX_BYTES`] a message): an entry bundle (each
//! entry with a 2-byte length, as C2SP tlog-tiles entry bundles) of `Socai-Count` entries from
//! seq `Socai-Seq` (msg-id `<that seq>@<the stream's last seq before it>`); after each round,
//! the signed checkpoints those entries complete to `dvc.ledger.checkpoint` (also while it is
//! still behind the head).
//!
//! The cursor is the stream itself: at start, after any failure and at least every
//! [`HOLES_CHECK_EVERY`] the publisher reads COMMITTED's last message and goes on after its last
//! entry, so a crash between commit and publish loses nothing and publishes nothing twice. Each
//! message is published with the stream's expected last sequence, so the server stores it only
//! right after its predecessor: COMMITTED never has a gap or a repeat of its own making.
//! Messages deleted from it by hand hold the publisher until the operator purges it (see
//! [`holes`]). A checkpoint is published only once every entry it covers is on COMMITTED.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use async_nats::jetstream::{
    self,
    message::PublishMessage,
    stream::{LastRawMessageErrorKind, RawMessageErrorKind},
};
use bytes::Bytes;
use socai_store::{SledStorage, Storage};
use socai_wire::header::{COUNT as H_COUNT, SEQ as H_SEQ, TREE_SIZE as H_TREE_SIZE};
use socai_wire::stream::{CHECKPOINTS, COMMITTED};
use socai_wire::subject::{CHECKPOINT_SUBJECT, COMMITTED_SUBJECT};
use tokio::sync::watch;

use crate::{Counters, IngestError};

/// Entries read per round.
const ROUND_MAX_ENTRIES: u64 = 4096;

/// A round ends early once the entries it read reach this many bytes (entries of large events
/// would otherwise make a round of 4096 hundreds of MiB).
const ROUND_MAX_BYTES: usize = 8 << 20;

/// How often a running publisher reads where COMMITTED stands again (and looks for messages
/// deleted from it).
const HOLES_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Checkpoints read from the store at a time.
const CHECKPOINTS_PER_READ: usize = 256;

/// Largest COMMITTED message (payload): well under nats-server's default max_payload (1 MiB).
pub const MESSAGE_MAX_BYTES: usize = 512 * 1024;

pub(crate) struct CommittedPublisher {
    pub js: jetstream::Context,
    pub storage: SledStorage,
    pub head: watch::Receiver<u64>,
    pub counters: Arc<Counters>,
    /// A promoted replica: COMMITTED may hold entries this ledger has not read from EVENTS yet.
    /// Wait for them (then compare) instead of failing.
    pub catch_up: bool,
    /// Removed once COMMITTED was found to continue this ledger (the promotion is done).
    pub promoting_marker: Option<std::path::PathBuf>,
}

/// The last message of a stream: the header the caller named, `Socai-Count` if present, its
/// stream seq, its payload.
struct Last {
    value: u64,
    count: Option<u64>,
    stream_seq: u64,
    payload: Bytes,
}

/// Header `name` of the `which` ("first", "last") message on `subject`, a number: a message
/// without it was not published by socai.
fn number_header(
    msg: &jetstream::message::StreamMessage,
    name: &str,
    which: &str,
    subject: &str,
) -> Result<u64, IngestError> {
    msg.headers
        .get(name)
        .and_then(|v| v.as_str().parse::<u64>().ok())
        .ok_or_else(|| {
            IngestError::Diverged(format!(
                "the {which} message on {subject} (stream seq {}) has no {name} header: something other than socai publishes there; only the ledger user may publish to dvc.ledger.>",
                msg.sequence
            ))
        })
}

/// The last message on `subject` of `stream`, with its header `name` parsed; `None` if the
/// stream has no message there.
async fn last_message(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
    name: &str,
) -> Result<Option<Last>, IngestError> {
    let stream = js
        .get_stream_no_info(stream)
        .await
        .map_err(|e| IngestError::Nats(format!("cannot open stream {stream}: {e}")))?;
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(msg) => {
            let value = number_header(&msg, name, "last", subject)?;
            let count = msg
                .headers
                .get(H_COUNT)
                .and_then(|v| v.as_str().parse::<u64>().ok());
            Ok(Some(Last {
                value,
                count,
                stream_seq: msg.sequence,
                payload: msg.payload,
            }))
        }
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(IngestError::Nats(format!(
            "cannot read the last message on {subject}: {e}"
        ))),
    }
}

/// A stream's state: its first and last seq (the last stays after a purge) and how many
/// messages it holds.
async fn stream_state(
    js: &jetstream::Context,
    name: &str,
) -> Result<jetstream::stream::State, IngestError> {
    // Opening the stream reads its info: one request.
    let stream = js
        .get_stream(name)
        .await
        .map_err(|e| IngestError::Nats(format!("cannot read stream {name}: {e}")))?;
    Ok(stream.cached_info().state.clone())
}

/// The first message of COMMITTED: its stream seq and the first entry it holds (`Socai-Seq`);
/// `None` if the stream holds none. Asked of the stream leader.
async fn first_message(js: &jetstream::Context) -> Result<Option<(u64, u64)>, IngestError> {
    let stream = js
        .get_stream_no_info(COMMITTED)
        .await
        .map_err(|e| IngestError::Nats(format!("cannot open stream {COMMITTED}: {e}")))?;
    match stream
        .get_first_raw_message_by_subject(COMMITTED_SUBJECT, 1)
        .await
    {
        Ok(msg) => {
            let first = number_header(&msg, H_SEQ, "first", COMMITTED_SUBJECT)?;
            Ok(Some((msg.sequence, first)))
        }
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(IngestError::Nats(format!(
            "cannot read the first message on {COMMITTED_SUBJECT}: {e}"
        ))),
    }
}

/// Why COMMITTED cannot be continued, if messages were deleted from it: at its start (`first`,
/// its first message's stream seq and first entry, does not hold entry 0), inside it (its
/// stream seqs span more than its messages), or at its end (`last_message_seq`, the stream seq
/// of its last message, is below its last seq). Only the ledger publishes there and nothing
/// else may delete; a hole stops every projection worker that reaches it, and publishing after
/// it would only bury it. An empty COMMITTED (never used, or purged) has none: the ledger
/// publishes every entry again after its last seq.
fn holes(
    state: &jetstream::stream::State,
    first: Option<(u64, u64)>,
    last_message_seq: u64,
) -> Option<String> {
    if state.messages == 0 {
        return None;
    }
    let mut found = Vec::new();
    if let Some((stream_seq, entry)) = first
        && entry > 0
    {
        found.push(format!(
            "its first message (stream seq {stream_seq}) begins at entry {entry}, not 0"
        ));
    }
    let span = (state.last_sequence + 1).saturating_sub(state.first_sequence);
    let missing = span.saturating_sub(state.messages);
    if missing > 0 {
        found.push(format!(
            "{missing} of its stream seqs {}..{} hold no message",
            state.first_sequence, state.last_sequence
        ));
    }
    if last_message_seq < state.last_sequence {
        found.push(format!(
            "its last message is stream seq {last_message_seq}, below its last seq {}",
            state.last_sequence
        ));
    }
    if found.is_empty() {
        return None;
    }
    Some(format!(
        "messages were deleted from COMMITTED outside the ledger, or lost by nats-server ({}): publishing after them would leave a hole where projection workers stop, so COMMITTED and CHECKPOINTS wait. Purge COMMITTED (`nats stream purge {COMMITTED}`, as the NATS admin) while this is shown: the ledger then publishes every entry again by itself (receipts and ingest go on meanwhile), and workers find their place in it once restarted",
        found.join("; ")
    ))
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

/// Where the publisher stands: the next entry seq to publish, the size of the last checkpoint
/// published, COMMITTED's last stream seq.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    next: u64,
    checkpoint: u64,
    stream_seq: u64,
    /// CHECKPOINTS' last stream seq as last seen (read at resume, then each PubAck's): part of
    /// a checkpoint's msg-id, so the same checkpoint published again after CHECKPOINTS was
    /// purged is stored, not dropped as a duplicate of the purged one.
    checkpoint_seq: u64,
}

impl CommittedPublisher {
    /// Runs until the writer is gone (its head sender dropped) and everything is published, or
    /// `drain_timeout` after the writer is gone while NATS keeps failing.
    /// Fails only when COMMITTED does not continue this ledger (another ledger's stream, or a
    /// ledger restored from an older backup): then nothing more can be published safely.
    pub async fn run(mut self, drain_timeout: Duration) -> Result<(), IngestError> {
        let mut writer_gone = false;
        let mut give_up_at: Option<tokio::time::Instant> = None;
        let mut cursor: Option<Cursor> = None;
        let mut resumed_at = tokio::time::Instant::now();
        loop {
            // Also noticed while failing, not only when idle: the drain's deadline must start.
            if !writer_gone && self.head.has_changed().is_err() {
                writer_gone = true;
                give_up_at = Some(tokio::time::Instant::now() + drain_timeout);
            }
            let head = *self.head.borrow_and_update();
            // Messages deleted while it runs: found within this long, before they are buried
            // deeper (a publish after a deleted last message still meets the expected last seq).
            if resumed_at.elapsed() >= HOLES_CHECK_EVERY {
                cursor = None;
            }
            let mut at = match cursor {
                Some(c) => c,
                None => match self.resume(head).await {
                    Ok(c) => {
                        resumed_at = tokio::time::Instant::now();
                        self.counters.published.store(c.next, Relaxed);
                        self.counters.checkpoints.store(c.checkpoint, Relaxed);
                        self.stalled(None);
                        if let Some(marker) = self.promoting_marker.take() {
                            // `promoting` becomes `promoted`: this data dir is a primary now
                            // and refuses to run as a replica again.
                            let done = marker.with_file_name("promoted");
                            match std::fs::rename(&marker, &done) {
                                Ok(()) => tracing::info!(
                                    "promotion done: COMMITTED continues this ledger; receipts and erasure resume"
                                ),
                                Err(e) => {
                                    tracing::warn!(error = %e, path = %marker.display(), "cannot mark the promotion done; rename the file to `promoted` by hand")
                                }
                            }
                            self.counters.promotion_pending.store(false, Relaxed);
                        }
                        c
                    }
                    Err(e @ IngestError::Diverged(_)) => return Err(e),
                    Err(IngestError::CommittedHoles(why)) => {
                        self.stalled(Some(why));
                        if writer_gone {
                            // Nothing to drain: only the operator can make COMMITTED go on.
                            tracing::warn!(
                                "stopping with COMMITTED held where it is; the next start publishes once it is purged"
                            );
                            return Ok(());
                        }
                        if pause(give_up_at).await {
                            return Ok(());
                        }
                        continue;
                    }
                    Err(e) => {
                        // An idle publisher looks every 10 s: quiet while nothing waits for it
                        // (entries, or a checkpoint the writer signed on its tick).
                        let waiting = head > self.counters.published.load(Relaxed)
                            || self.counters.checkpoint_size.load(Relaxed)
                                > self.counters.checkpoints.load(Relaxed);
                        if !waiting {
                            if writer_gone {
                                return Ok(());
                            }
                            tracing::debug!(error = %e, "cannot read where COMMITTED stands; retrying");
                        } else {
                            tracing::warn!(error = %e, "cannot resume publishing committed entries; retrying");
                        }
                        if pause(give_up_at).await {
                            return Ok(());
                        }
                        continue;
                    }
                },
            };
            let round_from = at.next;
            if at.next < head {
                let to = head.min(at.next + ROUND_MAX_ENTRIES);
                match self.publish_entries(at, to).await {
                    // Kept as the cursor by the checkpoint step below.
                    Ok(published) => at = published,
                    Err(e) => {
                        tracing::warn!(error = %e, from = at.next, to, "publishing committed entries failed; retrying");
                        cursor = None;
                        if pause(give_up_at).await {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
            // After every round, not only once caught up: a writer that commits faster than
            // COMMITTED answers would otherwise keep every checkpoint off CHECKPOINTS.
            match self.publish_checkpoint(at).await {
                Ok(published) => {
                    at = published;
                    cursor = Some(at);
                }
                Err(e) => {
                    cursor = None;
                    // Entries keep going out at full speed while CHECKPOINTS refuses: the warning,
                    // the pause and the drain's deadline only once a round moved none.
                    if at.next > round_from {
                        tracing::debug!(error = %e, "publishing a checkpoint failed; entries go on");
                        continue;
                    }
                    tracing::warn!(error = %e, "publishing a checkpoint failed; retrying");
                    if pause(give_up_at).await {
                        return Ok(());
                    }
                    continue;
                }
            }
            if at.next < head {
                continue;
            }
            if writer_gone {
                return Ok(());
            }
            // Idle, it still looks at COMMITTED now and then (the check above).
            let until_check = HOLES_CHECK_EVERY.saturating_sub(resumed_at.elapsed());
            if let Ok(Err(_)) = tokio::time::timeout(until_check, self.head.changed()).await {
                // The writer stopped: publish what is left, then stop.
                writer_gone = true;
                give_up_at = Some(tokio::time::Instant::now() + drain_timeout);
            }
        }
    }

    /// Keeps why publishing waits for the operator (`None`: it does not), logging each change.
    fn stalled(&self, why: Option<String>) {
        let Ok(mut stalled) = self.counters.committed_stalled.lock() else {
            return;
        };
        if *stalled == why {
            return;
        }
        match &why {
            Some(why) => tracing::error!("{why}"),
            None => tracing::info!(
                "COMMITTED has no hole any more: publishing committed entries resumes"
            ),
        }
        *stalled = why;
    }

    /// Where COMMITTED and CHECKPOINTS stand. COMMITTED's last entry must be this ledger's entry
    /// at that seq.
    async fn resume(&self, head: u64) -> Result<Cursor, IngestError> {
        // The state first, then the messages: a publish of ours whose PubAck was lost (the
        // only writer here) or a purge landing in between shows as a mismatch, read again.
        let state = stream_state(&self.js, COMMITTED).await?;
        let last = last_message(&self.js, COMMITTED, COMMITTED_SUBJECT, H_SEQ).await?;
        let first = match state.messages {
            0 => None,
            _ => first_message(&self.js).await?,
        };
        let last_seq = last.as_ref().map(|l| l.stream_seq);
        if last_seq.is_some_and(|seq| seq > state.last_sequence)
            || (state.messages > 0) != last.is_some()
            || (state.messages > 0) != first.is_some()
        {
            return Err(IngestError::Nats(format!(
                "COMMITTED changed while it was read (its state: {} messages up to stream seq {}; its last message now at {last_seq:?}); reading it again",
                state.messages, state.last_sequence
            )));
        }
        let (next, stream_seq) = match last {
            // Empty, or purged: the next message goes after the stream's last seq.
            None => (0, state.last_sequence),
            Some(Last {
                value: first,
                count,
                stream_seq,
                payload,
            }) => {
                // Messages of older socai versions carry one entry, as it is, and no count.
                let legacy = count.is_none();
                let count = count.unwrap_or(1).max(1);
                let seq = first.checked_add(count - 1).ok_or_else(|| {
                    IngestError::Diverged(format!(
                        "COMMITTED's last message (stream seq {stream_seq}) names entries {first} + {count}: only the ledger may publish to dvc.ledger.committed"
                    ))
                })?;
                let theirs: Vec<u8> = if legacy {
                    payload.to_vec()
                } else {
                    let entries = socai_chain::tiles::split_entry_bundle(&payload).map_err(|e| {
                        IngestError::Diverged(format!(
                            "COMMITTED's last message (stream seq {stream_seq}) is not an entry bundle ({e}): only the ledger may publish to dvc.ledger.committed"
                        ))
                    })?;
                    if entries.len() as u64 != count {
                        return Err(IngestError::Diverged(format!(
                            "COMMITTED's last message (stream seq {stream_seq}) holds {} entries but says {count}: only the ledger may publish to dvc.ledger.committed",
                            entries.len()
                        )));
                    }
                    entries.last().map(|e| e.to_vec()).unwrap_or_default()
                };
                let storage = self.storage.clone();
                let ours = tokio::task::spawn_blocking(move || storage.entry(seq))
                    .await
                    .map_err(|e| IngestError::Ledger(format!("reading entry {seq} failed: {e}")))?
                    .map_err(|e| IngestError::Ledger(format!("reading entry {seq}: {e}")))?;
                match ours {
                    Some(entry) if entry == theirs => (seq + 1, stream_seq),
                    Some(_) => {
                        return Err(IngestError::Diverged(format!(
                            "COMMITTED's entry {seq} differs from this ledger's entry {seq}: the stream belongs to another ledger; give this ledger its own NATS account or streams, or delete COMMITTED and CHECKPOINTS if this ledger replaces the old one"
                        )));
                    }
                    None if self.catch_up => {
                        return Err(IngestError::Nats(format!(
                            "COMMITTED holds entry {seq} but this ledger (a promoted replica) has {head} entries: publishing once it has read that far in EVENTS"
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
        // Only once COMMITTED's last entry is known to be this ledger's: to another ledger's
        // stream, or one ahead of a data dir restored from an older backup, a purge would be
        // the wrong advice.
        if let Some(why) = holes(&state, first, last_seq.unwrap_or(0)) {
            return Err(IngestError::CommittedHoles(why));
        }
        // The state first: a late publish of ours landing between the two reads only makes the
        // seq older than the last message, which keeps the msg-ids apart all the same.
        let checkpoint_seq = stream_state(&self.js, CHECKPOINTS).await?.last_sequence;
        let checkpoint = last_message(&self.js, CHECKPOINTS, CHECKPOINT_SUBJECT, H_TREE_SIZE)
            .await?
            .map_or(0, |last| last.value);
        Ok(Cursor {
            next,
            checkpoint,
            stream_seq,
            checkpoint_seq,
        })
    }

    /// Publishes entries `at.next..to` (or fewer: those of the first [`ROUND_MAX_BYTES`]) as
    /// entry bundles of at most [`MESSAGE_MAX_BYTES`] (one message for a commit of ordinary
    /// size), each only right after its predecessor.
    async fn publish_entries(&self, at: Cursor, to: u64) -> Result<Cursor, IngestError> {
        let from = at.next;
        let storage = self.storage.clone();
        let entries = tokio::task::spawn_blocking(move || {
            let mut entries = Vec::new();
            let mut bytes = 0;
            for entry in storage.entries(from, to) {
                let entry = entry?;
                bytes += entry.1.len();
                entries.push(entry);
                if bytes >= ROUND_MAX_BYTES {
                    break;
                }
            }
            Ok::<_, socai_store::StorageError>(entries)
        })
        .await
        .map_err(|e| IngestError::Ledger(format!("reading entries failed: {e}")))?
        .map_err(|e| IngestError::Ledger(format!("reading entries {from}..{to}: {e}")))?;
        let mut at = at;
        let mut rest = &entries[..];
        while !rest.is_empty() {
            let first = rest[0].0;
            let mut bundle = Vec::new();
            let mut count = 0;
            for (seq, entry) in rest {
                if count > 0 && bundle.len() + 2 + entry.len() > MESSAGE_MAX_BYTES {
                    break;
                }
                socai_chain::tiles::push_bundle_entry(&mut bundle, *seq, entry).map_err(|e| {
                    IngestError::Ledger(format!("entry {seq} cannot go on COMMITTED: {e}"))
                })?;
                count += 1;
            }
            rest = &rest[count..];
            let msg = PublishMessage::build()
                .payload(Bytes::from(bundle))
                // A retry of this very publish is a duplicate; the same entries published again
                // after a purge of COMMITTED (a later last seq) are not, even inside the window.
                .message_id(format!("{first}@{}", at.stream_seq))
                .header(H_SEQ, first.to_string().as_str())
                .header(H_COUNT, count.to_string().as_str())
                // The server stores it only right after the message this publisher saw last:
                // COMMITTED never has a gap or a repeat.
                .expected_last_sequence(at.stream_seq);
            let ack = self
                .js
                .send_publish(COMMITTED_SUBJECT, msg)
                .await
                .map_err(|e| IngestError::Nats(format!("publishing entries from {first}: {e}")))?
                .into_future()
                .await
                .map_err(|e| {
                    IngestError::Nats(format!("COMMITTED did not store entries from {first}: {e}"))
                })?;
            // nats-server answers a msg-id it has seen (checked before the expected last
            // sequence) with the first message's seq: this bundle was not stored, and that one
            // may hold fewer entries (an earlier try whose PubAck was lost). Read the stream
            // again rather than skip entries.
            if ack.duplicate {
                return Err(IngestError::Nats(format!(
                    "COMMITTED already holds a message for entries from {first} (stream seq {}); reading where it stands",
                    ack.sequence
                )));
            }
            at.next = first + count as u64;
            at.stream_seq = ack.sequence;
            self.counters.published.store(at.next, Relaxed);
        }
        Ok(at)
    }

    /// Whether CHECKPOINTS still holds a message at stream seq `seq`.
    async fn checkpoints_hold(&self, seq: u64) -> Result<bool, IngestError> {
        let stream = self
            .js
            .get_stream_no_info(CHECKPOINTS)
            .await
            .map_err(|e| IngestError::Nats(format!("cannot open stream {CHECKPOINTS}: {e}")))?;
        match stream.get_raw_message(seq).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(IngestError::Nats(format!(
                "cannot read {CHECKPOINTS}'s message at seq {seq}: {e}"
            ))),
        }
    }

    /// Publishes, in order, every signed checkpoint newer than `at.checkpoint` that COMMITTED
    /// covers (`size <= at.next`), reading them [`CHECKPOINTS_PER_READ`] at a time; returns the
    /// cursor past the last one published.
    async fn publish_checkpoint(&self, mut at: Cursor) -> Result<Cursor, IngestError> {
        let next = at.next;
        while at.checkpoint < next {
            let (storage, from) = (self.storage.clone(), at.checkpoint + 1);
            // Only the newer ones are read: a year of checkpoints is millions of notes.
            let (due, more) = tokio::task::spawn_blocking(move || {
                let page = storage.checkpoints_from(from, CHECKPOINTS_PER_READ)?;
                let more = page.len() == CHECKPOINTS_PER_READ;
                let due: Vec<_> = page.into_iter().filter(|c| c.0 <= next).collect();
                Ok::<_, socai_store::StorageError>((due, more))
            })
            .await
            .map_err(|e| IngestError::Ledger(format!("reading checkpoints failed: {e}")))?
            .map_err(|e| IngestError::Ledger(format!("reading checkpoints: {e}")))?;
            let whole = more && due.len() == CHECKPOINTS_PER_READ;
            for (size, note) in due {
                // A retry of this publish (same size, same seq) is a duplicate; the same
                // checkpoint after a purge is not (the seq only grows).
                let note = Bytes::from(note);
                let mut id = format!("checkpoint-{size}@{}", at.checkpoint_seq);
                let mut tries = 0;
                let ack = loop {
                    let msg = PublishMessage::build()
                        .payload(note.clone())
                        .message_id(id.as_str())
                        .header(H_TREE_SIZE, size.to_string().as_str());
                    let ack = self
                        .js
                        .send_publish(CHECKPOINT_SUBJECT, msg)
                        .await
                        .map_err(|e| {
                            IngestError::Nats(format!("publishing checkpoint {size}: {e}"))
                        })?
                        .into_future()
                        .await
                        .map_err(|e| {
                            IngestError::Nats(format!("CHECKPOINTS did not store {size}: {e}"))
                        })?;
                    tries += 1;
                    // A duplicate stands for the copy stored first under this msg-id. If
                    // CHECKPOINTS no longer holds it (a publish stored after this cursor read
                    // CHECKPOINTS' last seq, its PubAck lost, then a purge; or a copy someone
                    // else published under this msg-id), publish again under a msg-id no
                    // publish used before; else nothing would store it before the duplicate
                    // window ran out.
                    if !ack.duplicate || self.checkpoints_hold(ack.sequence).await? {
                        break ack;
                    }
                    if tries == 3 {
                        // The caller logs it and starts again from where CHECKPOINTS stands.
                        return Err(IngestError::Nats(format!(
                            "CHECKPOINTS answered checkpoint {size} {tries} times as a duplicate of a copy it no longer holds (stream seq {}): is something else publishing on {CHECKPOINT_SUBJECT} under the ledger's msg-ids?",
                            ack.sequence
                        )));
                    }
                    id = format!("checkpoint-{size}@{}-{}", at.checkpoint_seq, ack.sequence);
                };
                self.counters.checkpoints.store(size, Relaxed);
                at.checkpoint = size;
                at.checkpoint_seq = at.checkpoint_seq.max(ack.sequence);
            }
            // A page cut short (by its end, or by `next`) was the last.
            if !whole {
                break;
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// COMMITTED's state as nats-server reports it.
    fn state(first: u64, last: u64, messages: u64) -> jetstream::stream::State {
        serde_json::from_value(serde_json::json!({
            "messages": messages,
            "bytes": messages * 100,
            "first_seq": first,
            "first_ts": "2026-12-06T00:00:00Z",
            "last_seq": last,
            "last_ts": "2026-12-06T00:00:00Z",
            "consumer_count": 0,
        }))
        .expect("a stream state")
    }

    #[test]
    fn only_messages_deleted_from_committed_stop_the_publisher() {
        // Whole: from the start, or after a purge (first seq past the old ones).
        assert_eq!(holes(&state(1, 7, 7), Some((1, 0)), 7), None);
        assert_eq!(holes(&state(41, 47, 7), Some((41, 0)), 47), None);
        // Empty, or purged: every entry goes out again after the last seq.
        assert_eq!(holes(&state(48, 47, 0), None, 0), None);
        let holes = |s, first, last| holes(&s, first, last).expect("a hole");
        // One deleted inside.
        let why = holes(state(1, 7, 6), Some((1, 0)), 7);
        assert!(
            why.starts_with("messages were deleted from COMMITTED outside the ledger, or lost by nats-server (1 of its stream seqs 1..7 hold no message): publishing after them would leave a hole")
                && why.contains("nats stream purge COMMITTED"),
            "{why}"
        );
        // The last two deleted.
        let why = holes(state(1, 7, 5), Some((1, 0)), 5);
        assert!(
            why.starts_with("messages were deleted from COMMITTED outside the ledger, or lost by nats-server (2 of its stream seqs 1..7 hold no message; its last message is stream seq 5, below its last seq 7)"),
            "{why}"
        );
        // The first one deleted: its seqs start after it, as after a purge, but not at entry 0.
        let why = holes(state(2, 7, 6), Some((2, 3)), 7);
        assert!(
            why.starts_with("messages were deleted from COMMITTED outside the ledger, or lost by nats-server (its first message (stream seq 2) begins at entry 3, not 0)"),
            "{why}"
        );
    }
}
