//! Reading EVENTS in stream order from the ledger's own cursor.
//!
//! The ledger keeps its cursor itself (the EVENTS seq and JetStream timestamp of the last message
//! it dealt with, stored in the same sled commit as the entries), so it reads EVENTS with an
//! ephemeral, ordered consumer (no acks, in memory, one replica) created at cursor + 1, and
//! recreates that consumer itself at its own position after anything unexpected: a pull error, a
//! missed heartbeat, a delivery that skips a number, a message at or before one already read
//! (async-nats' own ordered consumer falls back to the stream's beginning in one case; this
//! reader never relies on the library to recreate anything).
//!
//! Every (re)open checks the stream against the position first:
//! - **Lost before the ledger read them**: the stream's first seq is past the position's next one
//!   (messages aged out, or deleted by someone other than the ledger's erasure path, which only
//!   ever deletes what the ledger committed): a data-loss alarm (log, `/readyz`, Prometheus),
//!   then reading goes on at the first seq there is.
//! - **Rewound**: the stream no longer holds the message at the position (its seq is beyond the
//!   stream's last, or the message there has another timestamp): nats-server lost writes it had
//!   acknowledged (a crash under its default sync) and new messages may have reused those seqs.
//!   Reading restarts from the position's timestamp (DeliverPolicy by start time), so every
//!   message stored since is read; those the ledger already holds come back as duplicates.
//!   The message at the position is read with a batch of one from its seq (any replica answers a
//!   direct get, one catching up holds nothing from there on) and by its server-set headers (a
//!   publisher's own `Nats-*` headers come first); when nothing is found, the stream's leader
//!   says whether it was erased. An erased position is not a rewind.
//! - A seq that skips numbers while reading is a data-loss alarm too.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// The ledger's EVENTS consumer asks nats-server for a heartbeat this often while idle; two
/// missed (async-nats' rule) mean its stream leader is gone and the consumer is recreated. 1 s
/// rather than 5: with 5 s, `socai bench cluster` measured p50 14 s from the loss of EVENTS'
/// leader to the next commit (two missed heartbeats, then a reopen that waited out the
/// JetStream context's timeout while EVENTS had no leader).
const CONSUMER_HEARTBEAT: Duration = Duration::from_secs(1);

/// How long reopening the consumer waits for each answer of EVENTS before asking again. A request
/// sent while EVENTS has no leader is never answered, so short waits find a new leader soonest;
/// after [`REOPEN_ASK_PATIENT`] timeouts in a row the wait doubles, up to [`REOPEN_ASK_MAX`], so
/// a server that is merely slow is still heard. (`socai bench cluster`: doubling from the first
/// timeout made half of the failovers 11 s instead of 6.)
const REOPEN_ASK: Duration = Duration::from_secs(2);
const REOPEN_ASK_PATIENT: u32 = 5;
const REOPEN_ASK_MAX: Duration = Duration::from_secs(16);

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::StreamExt;
use socai_wire::stream::EVENTS;

use crate::{Counters, IngestError};

/// A message's subject, payload, EVENTS stream seq and JetStream timestamp.
pub(crate) type Input = (String, Bytes, u64, jiff::Timestamp);

/// The last message read: its EVENTS seq (0: none) and its JetStream timestamp (ns), if known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Position {
    pub seq: u64,
    pub time_ns: Option<i64>,
}

/// How far before the last message's time reading starts again after a rewind.
const REWIND_MARGIN: Duration = Duration::from_secs(60);

/// How long to wait before reopening after a failure.
const REOPEN_PAUSE: Duration = Duration::from_secs(1);

/// A chunk ends once its messages' subjects and payloads reach this many bytes (it may hold one
/// message more than that): what the reader, the validator and the writer hold at a time is
/// bounded by bytes, not only by `batch_max_events` (EVENTS takes messages of up to ~1 MiB, a
/// thousand of which would be a gigabyte).
const CHUNK_MAX_BYTES: usize = 2 << 20;

/// What a pull asks nats-server for at most, beyond the largest message EVENTS may hold: room for
/// its subject and headers (a pull's byte limit below one message's size would never deliver it).
const PULL_HEADROOM_BYTES: usize = 64 << 10;

/// The byte limit of each pull from EVENTS: a chunk's worth, and never less than the largest
/// message EVENTS may hold plus its subject and headers: the larger of the stream's
/// `max_msg_size` and the connected server's `max_payload` (a message stored before the stream's
/// limit was lowered may exceed that limit). A smaller limit would never deliver such a message:
/// nats-server answers 409 and async-nats pulls again, forever, with no error and no missed
/// heartbeat, so reading would stop there without an alarm. Not covered: a message stored before
/// the server's own `max_payload` was lowered below its size, or a cluster whose servers set
/// different ones.
/// async-nats keeps at most about one and a half pulls' worth of messages buffered.
fn pull_max_bytes(stream_max_msg_size: i32, server_max_payload: usize) -> usize {
    let largest = usize::try_from(stream_max_msg_size)
        .unwrap_or(0)
        .max(server_max_payload);
    CHUNK_MAX_BYTES.max(largest.saturating_add(PULL_HEADROOM_BYTES))
}

/// The pull stream of the current consumer, and its last consumer sequence.
struct Open {
    messages: consumer::pull::Stream,
    consumer_seq: u64,
}

pub(crate) struct EventsSource {
    js: jetstream::Context,
    /// Prefix of the ephemeral consumers' names (a replica uses its own).
    name: String,
    batch_max: usize,
    counters: Arc<Counters>,
    position: Position,
    open: Option<Open>,
    serial: u64,
    /// The consumer was opened after an alarm (by time after a rewind, or past lost messages):
    /// its first message may be at any seq.
    accept_any: bool,
    /// Reopens in a row that got no answer from EVENTS in time (see [`REOPEN_ASK`]).
    unanswered: u32,
    /// The highest seq already reported lost: a reopen (or a skip) that finds the same gap
    /// again, while no message after it has been read, neither alarms nor counts it twice.
    lost_through: u64,
    /// The last seq the ledger recorded as dealt with before this start (see
    /// [`EventsSource::read_through`]): gone from EVENTS, those were read, not lost.
    read_through: u64,
    /// The position whose rewind was reported: found again by a reopen before any message moved
    /// the position, it is not reported again (cleared by the next message read).
    rewind_reported: Option<Position>,
    /// How long a chunk short of `batch_max` waits for more (see [`EventsSource::linger`]).
    linger: std::time::Duration,
    /// The writer this source feeds, if it said so: then a chunk lingers only while it is busy.
    writer: Option<WriterProgress>,
}

/// How far the writer fed by an [`EventsSource`] has got: the source lingers for more events only
/// while the writer is still busy with chunks it was given (see [`EventsSource::linger`]).
pub struct WriterProgress {
    /// Chunks the writer has finished.
    pub finished: tokio::sync::watch::Receiver<u64>,
    /// Chunks handed to the writer so far.
    pub sent: Arc<std::sync::atomic::AtomicU64>,
}

/// Raises the data-loss alarm: logged, and kept for `/readyz` until restart. The first alarm's
/// reason stays there (later ones are counted beside it: the first is usually the cause).
fn raise_alarm(counters: &Counters, what: String) {
    tracing::error!("{what}");
    counters.data_loss_alarms.fetch_add(1, Relaxed);
    if let Ok(mut alarm) = counters.data_loss.lock() {
        alarm.get_or_insert(what);
    }
}

/// Why EVENTS no longer holds messages the ledger has not read.
const GONE_WHY: &str = "aged out past the stream's max_age while the ledger was behind, or deleted outside the ledger, whose own erasure deletes only what it committed";

fn nanos(ts: jiff::Timestamp) -> i64 {
    ts.as_nanosecond().clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// When nats-server stored a message a direct get returned (its `Nats-Time-Stamp`, RFC 3339 to the
/// nanosecond), as [`nanos`] counts it.
fn stored_time_ns(msg: &socai_client::js::StoredMessage) -> Result<i64, IngestError> {
    let stamp = msg.header("Nats-Time-Stamp").unwrap_or_default();
    stamp.parse::<jiff::Timestamp>().map(nanos).map_err(|e| {
        IngestError::Nats(format!(
            "EVENTS message {}: its Nats-Time-Stamp {stamp:?} is not a time ({e})",
            msg.seq
        ))
    })
}

impl EventsSource {
    pub fn new(
        js: jetstream::Context,
        name: String,
        batch_max: usize,
        counters: Arc<Counters>,
        position: Position,
    ) -> EventsSource {
        EventsSource {
            js,
            name,
            batch_max: batch_max.max(1),
            counters,
            position,
            open: None,
            serial: 0,
            accept_any: false,
            unanswered: 0,
            lost_through: 0,
            read_through: 0,
            rewind_reported: None,
            linger: std::time::Duration::ZERO,
            writer: None,
        }
    }

    /// Once a chunk has its first messages, waits up to this long for more before returning it
    /// when it is short of `batch_max` (group commit): under load each commit then takes more
    /// events, and its fixed costs (the fsync's round, the COMMITTED message, the receipts'
    /// signature) are shared by more. It adds at most this much to each event's latency. With
    /// [`EventsSource::writer_progress`] the wait ends as soon as the writer has finished what it
    /// was given, and there is none while it is idle (a lone event is committed at once); the
    /// chunk is then validated while the writer waits for it (no longer overlapped with a
    /// commit, ~0.8 ms per 200 events).
    pub fn linger(mut self, linger: std::time::Duration) -> EventsSource {
        self.linger = linger;
        self
    }

    /// The last seq the ledger recorded as dealt with (committed, or answered as a duplicate
    /// or a rejection). The stored cursor can lag it, held before a rejection REJECTED never
    /// took; messages between the two that aged out of EVENTS since were read, not lost, and
    /// raise no data-loss alarm (only a warning: such a rejection's copy is lost with them).
    pub fn read_through(mut self, seq: u64) -> EventsSource {
        self.read_through = seq;
        self
    }

    /// The writer's progress, so that [`EventsSource::linger`] waits only while it is busy.
    pub fn writer_progress(mut self, writer: WriterProgress) -> EventsSource {
        self.writer = Some(writer);
        self
    }

    /// Creates a consumer that delivers what follows the position, after checking the stream
    /// against it (see the module docs).
    async fn open(&mut self) -> Result<Open, IngestError> {
        let ask = match self.unanswered.checked_sub(REOPEN_ASK_PATIENT) {
            None => REOPEN_ASK,
            Some(n) => REOPEN_ASK
                .saturating_mul(2u32.saturating_pow(n + 1))
                .min(REOPEN_ASK_MAX),
        };
        let opened = self.open_within(ask).await;
        match &opened {
            Err(IngestError::Nats(e)) if e.contains("no answer within") => self.unanswered += 1,
            _ => self.unanswered = 0,
        }
        opened
    }

    /// [`EventsSource::open`], each request to EVENTS bounded by `ask`.
    async fn open_within(&mut self, ask: Duration) -> Result<Open, IngestError> {
        let nats =
            |what: &str, e: &dyn std::fmt::Display| IngestError::Nats(format!("{what}: {e}"));
        // Bounded well below the context's own timeout: right after a node's loss EVENTS may have
        // no leader yet and nobody answers; asking again soon finds the new leader sooner.
        let asked = |what: &str| {
            IngestError::Nats(format!(
                "{what}: no answer within {ask:?} (EVENTS without a leader?)"
            ))
        };
        let mut stream = tokio::time::timeout(ask, self.js.get_stream(EVENTS))
            .await
            .map_err(|_| asked("cannot open stream EVENTS"))?
            .map_err(|e| nats("cannot open stream EVENTS", &e))?;
        let info = tokio::time::timeout(ask, stream.info())
            .await
            .map_err(|_| asked("cannot read stream EVENTS"))?
            .map_err(|e| nats("cannot read stream EVENTS", &e))?;
        let state = info.state.clone();
        let pull_bytes = pull_max_bytes(
            info.config.max_message_size,
            self.js.client().server_info().max_payload,
        );
        let Position { seq, time_ns } = self.position;
        self.accept_any = false;
        if self.read_through > state.last_sequence {
            // The stream rewound below what the ledger had read: those seqs are reused now, and
            // a gap among them is a loss like any other.
            self.read_through = 0;
        }
        let rewound = if seq == 0 {
            false
        } else if seq > state.last_sequence {
            true
        } else if seq < state.first_sequence {
            // Gone by the leader's own account (aged out, or erased): not a rewind.
            false
        } else if let Some(expected) = time_ns {
            // A batch of one from `seq`, not a get of `seq`: any replica may answer, and one still
            // catching up holds nothing from `seq` on, which a plain get cannot tell from a
            // message that is gone.
            let request = socai_client::js::BatchRequest {
                seq,
                batch: 1,
                ..Default::default()
            };
            let batch = tokio::time::timeout(
                ask,
                socai_client::js::direct_get_batch(&self.js, EVENTS, &request),
            )
            .await
            .map_err(|_| asked(&format!("cannot read EVENTS message {seq}")))?
            .map_err(|e| nats(&format!("cannot read EVENTS message {seq}"), &e))?;
            match batch.messages.first() {
                Some(msg) if msg.seq == seq => stored_time_ns(msg)? != expected,
                // Erased by the ledger itself (it held personal data).
                Some(_) => false,
                // Nothing from `seq` on: the answering replica lags, or the stream's tail from
                // `seq` was erased. Only the leader can tell.
                None => match tokio::time::timeout(ask, stream.get_raw_message(seq))
                    .await
                    .map_err(|_| {
                        asked(&format!(
                            "cannot read EVENTS message {seq} from the stream's leader (a ledger replica's NATS user needs $JS.API.STREAM.MSG.GET.EVENTS, see deploy/nats/users.conf)"
                        ))
                    })? {
                    Ok(msg) => msg.time.unix_timestamp_nanos() as i64 != expected,
                    Err(e)
                        if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound =>
                    {
                        false
                    }
                    Err(e) => {
                        return Err(nats(
                            &format!("cannot read EVENTS message {seq} from the stream's leader"),
                            &e,
                        ));
                    }
                },
            }
        } else {
            false
        };
        let deliver = if rewound {
            let what = format!(
                "EVENTS no longer holds the message at seq {seq} that the ledger read last (the stream's last seq is {}): nats-server lost messages it had acknowledged (a crash under its default sync?). Reading again from that message's time, so everything stored since is read; events whose receipt never came are re-published by their agencies' clients. Check nats-server's logs and disk",
                state.last_sequence
            );
            // Found again by a reopen before any message came: reported once.
            if self.rewind_reported != Some(self.position) {
                self.rewind_reported = Some(self.position);
                raise_alarm(&self.counters, what);
                self.counters.events_rewinds.fetch_add(1, Relaxed);
                // Seqs are reused from here on: a gap among them is a new loss.
                self.lost_through = 0;
                self.read_through = 0;
            } else {
                tracing::info!(
                    position = seq,
                    "EVENTS is still rewound as reported; reading again from the position's time"
                );
            }
            self.accept_any = true;
            // A margin before that time: nats-server's clock may have stepped back (another
            // node's, after a leader change). What is read twice comes back as duplicates.
            let margin = REWIND_MARGIN.as_nanos() as i64;
            match time_ns.and_then(|t| {
                jiff::Timestamp::from_nanosecond(t.saturating_sub(margin).into()).ok()
            }) {
                Some(t) => consumer::DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond())
                        .map_err(|e| IngestError::Nats(format!("bad cursor time: {e}")))?,
                },
                // A cursor stored without its time (older socai): everything after what is left.
                None => consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: seq.min(state.last_sequence) + 1,
                },
            }
        } else {
            let next = seq + 1;
            if next < state.first_sequence {
                Self::lost(
                    &self.counters,
                    &mut self.lost_through,
                    self.read_through,
                    next,
                    state.first_sequence - 1,
                    &format!("reading on from seq {}", state.first_sequence),
                );
                self.accept_any = true;
            }
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: next.max(state.first_sequence).max(1),
            }
        };
        self.serial += 1;
        let config: consumer::pull::Config = consumer::pull::OrderedConfig {
            name: Some(format!(
                "{}-{}-{}",
                self.name,
                std::process::id(),
                self.serial
            )),
            description: Some("the ledger writer (ordered, from its own cursor)".into()),
            deliver_policy: deliver,
            max_batch: self.batch_max as i64,
            ..Default::default()
        }
        .into();
        let consumer = tokio::time::timeout(ask, stream.create_consumer(config))
            .await
            .map_err(|_| asked("cannot create the ledger's consumer on EVENTS"))?
            .map_err(|e| nats("cannot create the ledger's consumer on EVENTS", &e))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(self.batch_max)
            .max_bytes_per_batch(pull_bytes)
            .heartbeat(CONSUMER_HEARTBEAT)
            .messages()
            .await
            .map_err(|e| nats("cannot pull from EVENTS", &e))?;
        tracing::info!(
            position = seq,
            rewound,
            stream_first = state.first_sequence,
            stream_last = state.last_sequence,
            "reading EVENTS after the ledger's position"
        );
        self.counters.set_status(crate::WriterStatus::Running);
        Ok(Open {
            messages,
            consumer_seq: 0,
        })
    }

    /// Reports EVENTS seqs `from..=to` as lost (the data-loss alarm, `events_lost`), except
    /// those reported before (up to `lost_through`, which it moves on) and those the ledger had
    /// dealt with (up to `read_through`: a warning only).
    fn lost(
        counters: &Counters,
        lost_through: &mut u64,
        read_through: u64,
        from: u64,
        to: u64,
        then: &str,
    ) {
        let from = from.max(*lost_through + 1);
        if from > to {
            tracing::info!("EVENTS seqs up to {to} are still gone, as reported");
            return;
        }
        *lost_through = to;
        if from <= read_through {
            let read = to.min(read_through);
            tracing::warn!(
                "EVENTS seqs {from}..{read} are gone from the stream ({GONE_WHY}) after the ledger had read past them (its stored cursor was held before them, most likely by a rejection REJECTED did not take: a run whose /readyz reported rejections_unstored): it committed or answered what it read of them, and any gap among them was alarmed in the run that read it; such a rejection's copy is lost with them"
            );
            if read == to {
                return;
            }
        }
        let from = from.max(read_through + 1);
        let lost = to - from + 1;
        counters.events_lost.fetch_add(lost, Relaxed);
        raise_alarm(
            counters,
            format!(
                "EVENTS seqs {from}..{to} ({lost} {}) are gone from the stream before the ledger committed them ({GONE_WHY}): those events are lost to the ledger unless their agencies re-publish them (clients waiting for receipts do); {then}. Find out who or what removed them",
                if lost == 1 { "message" } else { "messages" }
            ),
        );
    }

    /// Forgets the current consumer (the server removes it after its inactivity threshold).
    fn close(&mut self) {
        self.open = None;
    }

    /// The next messages in stream order (at least one, at most `batch_max`, and no more once
    /// they reach [`CHUNK_MAX_BYTES`]), waiting for them.
    /// Reopens the consumer by itself after any failure or anomaly; returns an error only when
    /// reopening failed (the caller waits and calls again).
    pub async fn next_chunk(&mut self) -> Result<Vec<Input>, IngestError> {
        loop {
            if self.open.is_none() {
                self.open = Some(self.open().await?);
            }
            let open = self.open.as_mut().expect("opened above");
            let mut chunk = Vec::new();
            let mut chunk_bytes = 0usize;
            let mut broken = false;
            let mut lingered = self.linger.is_zero();
            // Everything already delivered, without waiting once something is in hand; then,
            // once, what arrives during the linger.
            'drain: loop {
                loop {
                    let item = if chunk.is_empty() {
                        open.messages.next().await
                    } else {
                        // Unconstrained: tokio's cooperative budget (128 polls) would otherwise
                        // end the drain early and cap batches near 127 events.
                        let ready = tokio::task::unconstrained(open.messages.next());
                        match futures::FutureExt::now_or_never(ready) {
                            Some(item) => item,
                            None => break,
                        }
                    };
                    let Some(item) = item else {
                        tracing::warn!("the EVENTS pull subscription ended; reopening");
                        broken = true;
                        break;
                    };
                    let msg = match item {
                        Ok(msg) => msg,
                        Err(e) => {
                            tracing::warn!(error = %e, "pulling from EVENTS failed; reopening at the ledger's position");
                            broken = true;
                            break;
                        }
                    };
                    let info = match msg.info() {
                        Ok(info) => info,
                        Err(e) => {
                            tracing::warn!(error = %e, subject = %msg.subject, "a message without JetStream metadata; reopening");
                            broken = true;
                            break;
                        }
                    };
                    let (consumer_seq, stream_seq) = (info.consumer_sequence, info.stream_sequence);
                    let published =
                        jiff::Timestamp::from_nanosecond(info.published.unix_timestamp_nanos())
                            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                    if consumer_seq != open.consumer_seq + 1 {
                        tracing::warn!(
                            expected = open.consumer_seq + 1,
                            got = consumer_seq,
                            "a delivery went missing; reopening at the ledger's position"
                        );
                        broken = true;
                        break;
                    }
                    open.consumer_seq = consumer_seq;
                    let last = self.position.seq;
                    if stream_seq <= last && !self.accept_any {
                        tracing::warn!(
                            last,
                            got = stream_seq,
                            "EVENTS delivered a message at or before one already read; reopening at the ledger's position"
                        );
                        broken = true;
                        break;
                    }
                    if stream_seq > last + 1 && !self.accept_any {
                        Self::lost(
                            &self.counters,
                            &mut self.lost_through,
                            self.read_through,
                            last + 1,
                            stream_seq - 1,
                            &format!("EVENTS delivered seq {stream_seq} next"),
                        );
                    }
                    self.position = Position {
                        seq: stream_seq,
                        time_ns: Some(nanos(published)),
                    };
                    self.rewind_reported = None;
                    self.accept_any = false;
                    chunk_bytes += msg.subject.len() + msg.payload.len();
                    chunk.push((
                        msg.subject.to_string(),
                        msg.payload.clone(),
                        stream_seq,
                        published,
                    ));
                    if chunk.len() >= self.batch_max || chunk_bytes >= CHUNK_MAX_BYTES {
                        break;
                    }
                }
                let full = chunk.len() >= self.batch_max || chunk_bytes >= CHUNK_MAX_BYTES;
                if broken || lingered || full {
                    break 'drain;
                }
                lingered = true;
                let linger = self.linger;
                match &mut self.writer {
                    // Idle: nothing to share a commit with, waiting would only add latency.
                    Some(w) if *w.finished.borrow() >= w.sent.load(Relaxed) => break 'drain,
                    Some(w) => {
                        let sent = w.sent.load(Relaxed);
                        let done = w.finished.wait_for(|&done| done >= sent);
                        let _ = tokio::time::timeout(linger, done).await;
                    }
                    None => tokio::time::sleep(linger).await,
                }
            }
            if broken {
                self.close();
                if chunk.is_empty() {
                    tokio::time::sleep(REOPEN_PAUSE).await;
                    continue;
                }
            }
            if !chunk.is_empty() {
                return Ok(chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_asks_for_a_chunk_and_never_for_less_than_the_largest_message() {
        // Ordinary limits: a chunk's worth.
        assert_eq!(pull_max_bytes(64 << 10, 1 << 20), CHUNK_MAX_BYTES);
        // The stream's own limit when it is the larger, with room for subject and headers.
        assert_eq!(
            pull_max_bytes(8 << 20, 1 << 20),
            (8 << 20) + PULL_HEADROOM_BYTES
        );
        // The server's when it is: a message stored before the stream's limit was lowered.
        assert_eq!(
            pull_max_bytes(1 << 20, 16 << 20),
            (16 << 20) + PULL_HEADROOM_BYTES
        );
        // None set (-1 or 0): the server's max_payload bounds every message.
        for unset in [-1, 0] {
            assert_eq!(
                pull_max_bytes(unset, 16 << 20),
                (16 << 20) + PULL_HEADROOM_BYTES
            );
        }
    }
}
