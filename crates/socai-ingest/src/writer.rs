//! The ledger writer: the one task that owns the chain head.
//!
//! A source task reads EVENTS in stream order from the ledger's own cursor (`crate::source`) and
//! validates each chunk on a blocking thread while the writer commits the previous one. The
//! writer appends a validated batch in one atomic, fsynced commit that also stores the EVENTS
//! cursor; only then does anything leave the ledger about it: in the background (while the next
//! batch commits) bad events are copied to REJECTED with their reason, and each publishing agency
//! gets one signed receipt naming which of its event ids got which seq (duplicates with their
//! original seq, rejections with their reason) under the commit's signed tree head.
//!
//! The stored cursor never passes a rejected message whose REJECTED copy is not confirmed yet:
//! after a crash the ledger reads again from there, what it already holds comes back as
//! duplicates, and the rejection is made again (REJECTED dedups its copy by EVENTS seq).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use socai_chain::receipt::ReceiptSync;
use socai_chain::receipt::{RECEIPT_VERSION, Receipt, ReceiptEvent, ReceiptRejection};
use socai_chain::{Checkpoint, CheckpointSigner, Hash};
use socai_dvc::KnownEvent;
use socai_model::{ErrorCode, Event, Limits, Rejection, Validator};
use socai_store::{
    AppendOutcome, Ledger, LedgerError, LedgerReader, SledStorage, SourceCursor, Storage,
};
use socai_wire::subject::{
    REDACTIONS_SUBJECT, event_subject, parse_event_subject, parse_sync_subject, receipts_subject,
    rejected_subject,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::check::{check_message, event_id_of, rejection_headers};
use crate::source::{EventsSource, Input, Position, WriterProgress};
use crate::streams::StreamSettings;
use crate::{Counters, IngestError};

/// Writer settings (socai.toml `[ingest]` and the ledger's limits).
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub streams: StreamSettings,
    /// At most this many events per commit.
    pub batch_max_events: usize,
    /// A batch short of `batch_max_events` waits up to this long for more events while the
    /// writer is still busy with earlier ones, none while it is idle (group commit, see
    /// [`crate::source::EventsSource::linger`]). A fixed wait, `socai bench ingest --events 100000` with
    /// receipts, one run each: no wait 120 events per commit, 82 µs of CPU per event in the
    /// ledger and publisher, 15.6k events/s; 5 ms 209 events, 74.9 µs, 16.9k/s; 15 ms 450
    /// events, 69.8 µs, 17.6k/s.
    pub linger: Duration,
    pub limits: Limits,
    /// `occurred_at` later than the JetStream timestamp plus this is `future_timestamp`.
    pub max_future_skew: jiff::SignedDuration,
    /// Sign a checkpoint at least this often while new entries arrive.
    pub checkpoint_interval: Duration,
    /// How long a rejection's copy to REJECTED is tried before it is left for the next start
    /// (counted in [`crate::Counters::rejections_unstored`], shown by `/readyz`).
    pub rejected_retry: Duration,
    /// Run as a replica of another ledger (see [`crate::replica`]): send nothing.
    pub replica: Option<crate::ReplicaConfig>,
    /// On a primary: the replicas (by name) that must have read an EVENTS message before the
    /// erasure of a redacted event may delete it.
    pub replicas: Vec<String>,
    /// A promoted replica's first run: COMMITTED may be ahead of this ledger for a while.
    pub catch_up: bool,
    /// The promotion's marker file, removed once COMMITTED was found to continue this ledger.
    pub promoting_marker: Option<std::path::PathBuf>,
    /// Test only (debug builds): the event read from this EVENTS seq is altered before it is
    /// appended, as a bug or a tampered machine would (the replicas' divergence test).
    pub forge_source_seq: Option<u64>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            streams: StreamSettings::default(),
            batch_max_events: 1000,
            linger: Duration::from_millis(5),
            limits: Limits::default(),
            max_future_skew: jiff::SignedDuration::from_hours(24),
            checkpoint_interval: Duration::from_secs(10),
            rejected_retry: Duration::from_secs(60),
            replica: None,
            replicas: Vec::new(),
            catch_up: false,
            promoting_marker: None,
            forge_source_seq: None,
        }
    }
}

/// Batches whose rejections and receipts may be in flight while the next batch is committed.
const SETTLING_MAX_BATCHES: usize = 4;

/// A receipt's answers take at most about this many bytes; an agency with more in one commit gets
/// several receipts (each under the commit's one signature), so none nears NATS's `max_payload`
/// (1 MiB by default) whatever the batch size, ids and rejection reasons.
const RECEIPT_MAX_BYTES: usize = 256 * 1024;

/// A sync body's answer in a receipt takes at most about this many bytes; what does not fit is
/// counted (`more`), not listed.
const SYNC_ANSWER_MAX_BYTES: usize = 128 * 1024;

/// Longest wait at shutdown for the rejections and receipts of committed batches.
const SHUTDOWN_SETTLE_MAX: Duration = Duration::from_secs(30);

/// Longest pause between two tries of a REJECTED copy.
const REJECT_RETRY_MAX: Duration = Duration::from_secs(5);

/// Work for the writer besides EVENTS, executed between two batches in a commit of its own.
#[derive(Debug)]
pub enum WriterCommand {
    /// Erase the personal data of event `id` and record why and by whom (see
    /// `Ledger::redact`), then sign a checkpoint covering the redaction entry. The request goes
    /// through EVENTS (`dvc.ledger.redactions`) and is applied where it lands there, with that
    /// message's time as the redaction's: every ledger reading EVENTS (replicas too) applies it
    /// at the same place.
    Redact {
        id: String,
        reason: String,
        by: String,
        reply: oneshot::Sender<Result<Redacted, LedgerError>>,
    },
}

/// A redaction request as it travels in EVENTS.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RedactionRequest {
    id: String,
    reason: String,
    by: String,
}

/// What the source hands the writer, in stream order.
enum Work {
    Batch(Validated),
    /// A redaction request read from EVENTS: applied alone, between the batches around it.
    Redaction(Input),
}

/// How long the writer waits for EVENTS to store a redaction request.
const REDACTION_PUBLISH_WAIT: Duration = Duration::from_secs(10);

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

/// A chunk of EVENTS, validated (by the source task, while the previous batch commits). A
/// portal sync body becomes several inputs (one per event it yields, one per part that could not
/// be mapped), all with its stream seq and time.
struct Validated {
    inputs: Vec<Input>,
    /// Per input: which part of its EVENTS message it is.
    parts: Vec<Part>,
    events: Vec<Event>,
    recorded: Vec<String>,
    sources: Vec<u64>,
    /// Per input: Ok(index into `events`) or its rejection.
    checked: Vec<Result<usize, Rejection>>,
    /// The sync bodies of the chunk, to answer in receipts.
    syncs: Vec<SyncBody>,
    /// Held events whose personal data a sync body of the chunk carries again, with the body's
    /// EVENTS seq: recorded as copies to erase with them.
    copies: Vec<(socai_store::EventKey, u64)>,
    /// The sync bodies decided in this chunk: (EVENTS seq, JetStream time, their refused parts),
    /// recorded in the commit (see [`Ledger::note_sync_marks`]).
    marks: Vec<(u64, i64, Vec<u8>)>,
    /// The chunk's last EVENTS message (a sync body may yield no input at all).
    last: Option<SourceCursor>,
}

/// A part of a sync body the ledger refused, as recorded in the body's mark.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct MarkedRefusal {
    path: String,
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dossier: Option<String>,
}

/// A refused part of the sync body `body` as an input of its own (its bytes for REJECTED), its
/// part and its rejection.
fn refused_part(body: &Input, bytes: Vec<u8>, r: MarkedRefusal) -> (Input, Part, Rejection) {
    let input = (body.0.clone(), bytes.into(), body.2, body.3);
    let part = Part {
        key: Some(r.path.clone()),
        event_id: r.event_id,
        dossier: r.dossier,
    };
    let rejection = Rejection::new(ErrorCode::UnmappableSync, r.path, r.reason);
    (input, part, rejection)
}

/// Which part of an EVENTS message an input is: none for an event as published; for a sync
/// body, the part's key (a derived event's id, a refused part's path: the same whichever of the
/// body's events the ledger already holds when it reads the body again after a crash, so
/// REJECTED dedups the copy), and the event id a REJECTED copy is filed under.
#[derive(Debug, Clone, Default)]
struct Part {
    key: Option<String>,
    event_id: Option<String>,
    /// The dossier a refused part of a sync body concerns (none: the whole body).
    dossier: Option<String>,
}

impl Part {
    /// The event id this input is answered and filed under: the one validation (or the sync
    /// mapping) found, else whatever id its JSON carries (an event refused before it parsed).
    fn id_of(&self, payload: &[u8]) -> Option<String> {
        self.event_id.clone().or_else(|| event_id_of(payload))
    }
}

/// A sync body of a chunk: its agency, its id, and its inputs.
#[derive(Debug, Clone)]
struct SyncBody {
    agency: String,
    id: String,
    inputs: std::ops::Range<usize>,
}

/// What a sync body is compared with: the ledger's last durable commit (which, when a chunk
/// holds a sync body, includes every earlier chunk: the source waits for them) plus the events
/// validated earlier in the same chunk that the ledger will append (not those it will refuse as
/// duplicates, conflicts or oversized: the state must not depend on where chunks end).
struct SyncHistory<'a> {
    reader: &'a LedgerReader<SledStorage>,
    chunk: HashMap<(String, String), Vec<KnownEvent>>,
    /// (agency, id) of every event noted in `chunk`.
    ids: std::collections::HashSet<(String, String)>,
}

impl SyncHistory<'_> {
    fn held(&self, agency: &str, dossier: &str) -> Result<Vec<KnownEvent>, String> {
        let mut known = Vec::new();
        for seq in self.reader.history(dossier).map_err(|e| e.to_string())? {
            let entry = self.reader.entry(seq).map_err(|e| e.to_string())?;
            if let Some(event) = KnownEvent::from_envelope(&entry.event)
                && event.agency == agency
            {
                known.push(event);
            }
        }
        if let Some(more) = self.chunk.get(&(agency.to_owned(), dossier.to_owned())) {
            known.extend(more.iter().cloned());
        }
        Ok(known)
    }

    fn note(&mut self, event: &Event) -> Result<(), String> {
        let key = (event.agency.clone(), event.id.clone());
        if self.ids.contains(&key)
            || socai_store::ledger::entry_too_large(event)
            || self
                .reader
                .storage()
                .id_if_known(&event.agency, &event.id)
                .map_err(|e| e.to_string())?
                .is_some()
        {
            return Ok(());
        }
        self.ids.insert(key);
        self.chunk
            .entry((event.agency.clone(), event.dossier.clone()))
            .or_default()
            .push(KnownEvent {
                id: event.id.clone(),
                event_type: event.event_type.clone(),
                agency: event.agency.clone(),
                procedure: event.procedure.clone(),
                data: event.data.clone(),
            });
        Ok(())
    }
}

/// Validates a chunk; a sync body is first turned into the events it implies. Fails only when
/// the ledger's own history cannot be read to map a body (nothing of the chunk is decided).
fn validate(
    validator: &Validator,
    skew: jiff::SignedDuration,
    raw: Vec<Input>,
    reader: Option<&LedgerReader<SledStorage>>,
) -> Result<Validated, String> {
    let mut v = Validated {
        events: Vec::with_capacity(raw.len()),
        recorded: Vec::with_capacity(raw.len()),
        sources: Vec::with_capacity(raw.len()),
        checked: Vec::with_capacity(raw.len()),
        parts: Vec::with_capacity(raw.len()),
        inputs: Vec::with_capacity(raw.len()),
        syncs: Vec::new(),
        copies: Vec::new(),
        marks: Vec::new(),
        last: raw.last().map(cursor_of),
    };
    let has_sync = raw.iter().any(|i| parse_sync_subject(&i.0).is_some());
    let mut history = match (has_sync, reader) {
        (true, Some(reader)) => Some(SyncHistory {
            reader,
            chunk: HashMap::new(),
            ids: Default::default(),
        }),
        (true, None) => return Err("no reader of the ledger to map sync bodies with".into()),
        _ => None,
    };
    let check = |v: &mut Validated,
                 history: &mut Option<SyncHistory>,
                 input: Input,
                 mut part: Part,
                 checked: Result<Event, Rejection>|
     -> Result<(), String> {
        let checked = match checked {
            Ok(event) => {
                // Known now: receipts name the event without parsing its JSON again.
                if part.event_id.is_none() {
                    part.event_id = Some(event.id.clone());
                }
                if let Some(h) = history.as_mut() {
                    h.note(&event)?;
                }
                v.events.push(event);
                v.recorded.push(input.3.to_string());
                v.sources.push(input.2);
                Ok(v.events.len() - 1)
            }
            Err(r) => Err(r),
        };
        v.checked.push(checked);
        v.parts.push(part);
        v.inputs.push(input);
        Ok(())
    };
    for input in raw {
        let (subject, payload, stream_seq, published) = &input;
        let Some(agency) = parse_sync_subject(subject) else {
            let checked = check_message(validator, subject, payload, *published, skew);
            check(&mut v, &mut history, input, Part::default(), checked)?;
            continue;
        };
        let first = v.inputs.len();
        let h = history
            .as_mut()
            .expect("a chunk with a sync body has a history");
        let time_ns = cursor_of(&input).time_ns;
        // Decided before (read again after a crash or a rewind): answered from its mark, never
        // compared with entries that came after it. Its events are in the ledger already.
        if let Some(mark) = h
            .reader
            .storage()
            .sync_mark(*stream_seq, time_ns)
            .map_err(|e| e.to_string())?
        {
            let refused: Vec<MarkedRefusal> = serde_json::from_slice(&mark)
                .map_err(|e| format!("sync body mark {stream_seq} is not readable: {e}"))?;
            for r in refused {
                let bytes = socai_dvc::refused_bytes(payload, &agency, &r.path);
                let (rejected, part, rejection) = refused_part(&input, bytes, r);
                check(&mut v, &mut history, rejected, part, Err(rejection))?;
            }
            v.syncs.push(SyncBody {
                agency,
                id: socai_dvc::sync_id(payload),
                inputs: first..v.inputs.len(),
            });
            continue;
        }
        // Each implied event is checked as the writer checks a published one, before its
        // dossier is taken: a dossier is never half taken.
        let mut event_check = |event: &serde_json::Value| {
            let event_type = event["type"].as_str().unwrap_or_default();
            let bytes = serde_json::to_vec(event).map_err(|e| (String::new(), e.to_string()))?;
            let event = check_message(
                validator,
                &event_subject(&agency, event_type),
                &bytes,
                *published,
                skew,
            )
            .map_err(|r| (r.path, format!("{}: {}", r.code.as_str(), r.reason)))?;
            if socai_store::ledger::entry_too_large(&event) {
                return Err((
                    String::new(),
                    "oversized: its entry would exceed the largest entry the ledger holds".into(),
                ));
            }
            Ok(())
        };
        let derived = socai_dvc::derive(
            payload,
            &agency,
            *published,
            &mut |a: &str, d: &str| h.held(a, d),
            &mut event_check,
        )
        .map_err(|e| e.to_string())?;
        v.copies.extend(
            derived
                .copies
                .iter()
                .map(|id| (socai_store::EventKey::new(&agency, id), *stream_seq)),
        );
        let refused: Vec<MarkedRefusal> = derived
            .rejections()
            .map(|r| MarkedRefusal {
                path: r.path.clone(),
                reason: r.reason.clone(),
                event_id: r.event_id.clone(),
                dossier: r.dossier.clone(),
            })
            .collect();
        v.marks.push((
            *stream_seq,
            time_ns,
            serde_json::to_vec(&refused).expect("JSON"),
        ));
        for item in derived.items {
            match item {
                socai_dvc::Item::Event(event) => {
                    let bytes = serde_json::to_vec(&event).expect("JSON");
                    let event_type = event["type"].as_str().unwrap_or_default();
                    let id = event["id"].as_str().map(str::to_owned);
                    let derived: Input = (
                        event_subject(&agency, event_type),
                        bytes.into(),
                        *stream_seq,
                        *published,
                    );
                    let checked =
                        check_message(validator, &derived.0, &derived.1, *published, skew);
                    let part = Part {
                        key: id.clone(),
                        event_id: id,
                        dossier: None,
                    };
                    check(&mut v, &mut history, derived, part, checked)?;
                }
                socai_dvc::Item::Rejected(r) => {
                    let bytes = r.raw.clone();
                    let marked = MarkedRefusal {
                        path: r.path,
                        reason: r.reason,
                        event_id: r.event_id,
                        dossier: r.dossier,
                    };
                    let (rejected, part, rejection) = refused_part(&input, bytes, marked);
                    check(&mut v, &mut history, rejected, part, Err(rejection))?;
                }
            }
        }
        v.syncs.push(SyncBody {
            agency,
            id: derived.id,
            inputs: first..v.inputs.len(),
        });
    }
    Ok(v)
}

/// Whether `e` refuses a redaction request for what it asks and what the ledger holds (no such
/// event, nothing left to redact, an invalid request), so that every ledger holding the same
/// entries refuses it alike.
fn refused_by_content(e: &LedgerError) -> bool {
    matches!(
        e,
        LedgerError::UnknownId(_)
            | LedgerError::AmbiguousId { .. }
            | LedgerError::InvalidRedaction(_)
            | LedgerError::NothingToRedact { .. }
    )
}

fn cursor_of(input: &Input) -> SourceCursor {
    SourceCursor {
        seq: input.2,
        time_ns: input
            .3
            .as_nanosecond()
            .clamp(i64::MIN as i128, i64::MAX as i128) as i64,
    }
}

/// The earlier of two cursors, `None` (nothing settled) being earliest.
fn earlier(a: Option<SourceCursor>, b: Option<SourceCursor>) -> Option<SourceCursor> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if a.seq <= b.seq { a } else { b }),
        _ => None,
    }
}

/// Rejections whose REJECTED copy is not confirmed yet: (EVENTS seq, JetStream time in ns; seqs
/// can be reused after nats-server lost writes) → the message before it, and how many copies of
/// that message are awaited (a sync body may have several parts refused). The stored cursor
/// stays at or before the earliest one's predecessor.
type Unsettled = Arc<Mutex<BTreeMap<(u64, i128), (Option<SourceCursor>, u32)>>>;

/// One more REJECTED copy of `input` awaited before the cursor may pass it.
fn hold(
    unsettled: &mut BTreeMap<(u64, i128), (Option<SourceCursor>, u32)>,
    input: &Input,
    pred: Option<SourceCursor>,
) {
    unsettled.entry(unsettled_key(input)).or_insert((pred, 0)).1 += 1;
}

/// An input's key in [`Unsettled`].
fn unsettled_key((_, _, stream_seq, published): &Input) -> (u64, i128) {
    (*stream_seq, published.as_nanosecond())
}

/// What became of one message of a batch.
enum Verdict {
    /// Committed now (or before: duplicate) at `seq`.
    Held { seq: u64, duplicate: bool },
    /// Copy to REJECTED; the cursor waits for it.
    Reject(Rejection),
}

/// What the settle stage needs to answer a committed batch.
struct Answer {
    inputs: Vec<Input>,
    parts: Vec<Part>,
    verdicts: Vec<Verdict>,
    syncs: Vec<SyncBody>,
    /// Leaf hash of every seq a verdict names.
    leaves: HashMap<u64, Hash>,
    /// The commit's tree head.
    size: u64,
    root: Hash,
}

pub(crate) struct Writer {
    pub js: jetstream::Context,
    /// The ledger's last durable commit, for mapping sync bodies on the source task.
    pub reader: Option<LedgerReader<SledStorage>>,
    /// How many chunks the writer has finished (committed, or refused whole).
    pub finished: watch::Sender<u64>,
    pub ledger: Option<Ledger<SledStorage>>,
    pub validator: Arc<Validator>,
    pub config: WriterConfig,
    pub counters: Arc<Counters>,
    pub head: watch::Sender<u64>,
    /// Rejections and receipts of committed batches, settling while the next batch commits.
    pub settling: tokio::task::JoinSet<()>,
    pub commands: Option<mpsc::Receiver<WriterCommand>>,
    /// Rejected copies of already redacted events (not seen by the ledger's append): marked for
    /// erasure at the next erasure pass, once their REJECTED copies are stored.
    pub late_copies: Vec<socai_store::EventKey>,
    pub unsettled: Unsettled,
    /// The last message of the last batch committed: the first predecessor of the next batch.
    pub last_input: Option<SourceCursor>,
    /// Redaction requests this writer put into EVENTS, by EVENTS seq: answered when read back.
    pub redactions: HashMap<u64, oneshot::Sender<Result<Redacted, LedgerError>>>,
    /// The last reason erasing NATS copies failed, logged once.
    pub erase_error: Option<String>,
}

/// How long to wait before retrying after NATS failed us.
const NATS_RETRY: Duration = Duration::from_secs(1);

impl Writer {
    /// A writer of `ledger`, between batches, owning nothing in flight.
    pub fn new(
        js: jetstream::Context,
        ledger: Ledger<SledStorage>,
        config: WriterConfig,
        counters: Arc<Counters>,
        head: watch::Sender<u64>,
        commands: Option<mpsc::Receiver<WriterCommand>>,
    ) -> Writer {
        Writer {
            js,
            reader: Some(ledger.reader()),
            finished: watch::channel(0).0,
            ledger: Some(ledger),
            validator: Arc::new(Validator::new(config.limits)),
            config,
            counters,
            head,
            settling: tokio::task::JoinSet::new(),
            commands,
            late_copies: Vec::new(),
            unsettled: Default::default(),
            last_input: None,
            redactions: Default::default(),
            erase_error: None,
        }
    }

    /// Runs until `shutdown` resolves (the batch in hand is finished first, and a checkpoint is
    /// signed for what it committed) or the ledger fails.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), IngestError> {
        let pumped = self.pump(shutdown).await;
        // Requests put into EVENTS but not read back yet are applied by the next start.
        for (_, reply) in std::mem::take(&mut self.redactions) {
            let _ = reply.send(Err(LedgerError::Unavailable(
                "the ledger stopped before it read this redaction request back from EVENTS; the request is stored there and is applied once `socai serve` runs again: look for the event's redaction entry then, rather than asking again".into(),
            )));
        }
        // Bounded: NATS may be down. What is not settled is not past the stored cursor, so the
        // next start reads it again.
        if tokio::time::timeout(SHUTDOWN_SETTLE_MAX, self.settled())
            .await
            .is_err()
        {
            tracing::warn!(
                "stopping with rejections or receipts not sent; the next start reads those messages again"
            );
            self.settling.abort_all();
        }
        pumped?;
        self.store_settled_cursor().await?;
        self.checkpoint_if_due().await
    }

    /// Waits until every committed batch's rejections and receipts are out.
    async fn settled(&mut self) {
        while self.settling.join_next().await.is_some() {}
    }

    /// Where the source starts: right after the cursor the ledger stored; and the highest seq
    /// the ledger recorded as dealt with (the cursor may lag it).
    fn start_position(&self) -> Result<(Position, u64), IngestError> {
        let ledger = self
            .ledger
            .as_ref()
            .ok_or_else(|| IngestError::Ledger("the ledger was lost by a failed task".into()))?;
        let position = ledger
            .source_position()
            .map_err(|e| IngestError::Ledger(e.to_string()))?;
        let read_through = ledger
            .source_read_through()
            .map_err(|e| IngestError::Ledger(e.to_string()))?
            .unwrap_or(0);
        let position = position.map_or(Position::default(), |(seq, time_ns)| Position {
            seq,
            time_ns,
        });
        Ok((position, read_through))
    }

    /// Reads and validates EVENTS ahead of the writer (one validated batch waits at most). A
    /// chunk holding a sync body waits until the writer has finished every chunk before it: a
    /// body is compared with exactly what comes before it in the stream (and, read again after
    /// a crash or a rewind, answered from the mark its commit recorded).
    fn spawn_source(
        &self,
        (position, read_through): (Position, u64),
    ) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<Work>) {
        let (tx, rx) = mpsc::channel::<Work>(1);
        let mut finished = self.finished.subscribe();
        // Chunks handed to the writer (redactions included), as `finished` counts them.
        let sent = Arc::new(AtomicU64::new(*finished.borrow()));
        let mut source = EventsSource::new(
            self.js.clone(),
            self.config.streams.consumer.clone(),
            self.config.batch_max_events,
            self.counters.clone(),
            position,
        )
        .read_through(read_through)
        .linger(self.config.linger)
        .writer_progress(WriterProgress {
            finished: finished.clone(),
            sent: sent.clone(),
        });
        let validator = self.validator.clone();
        let skew = self.config.max_future_skew;
        let counters = self.counters.clone();
        let reader = self.reader.clone();
        let task = tokio::spawn(async move {
            loop {
                let chunk = match source.next_chunk().await {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read EVENTS; retrying");
                        counters.set_status(crate::WriterStatus::Starting);
                        tokio::time::sleep(NATS_RETRY).await;
                        continue;
                    }
                };
                // A redaction request splits the chunk: it is applied alone, after everything
                // before it in the stream and before everything after.
                let mut segments: Vec<Result<Vec<Input>, Input>> = Vec::new();
                for input in chunk {
                    if input.0 == REDACTIONS_SUBJECT {
                        segments.push(Err(input));
                    } else if let Some(Ok(last)) = segments.last_mut() {
                        last.push(input);
                    } else {
                        segments.push(Ok(vec![input]));
                    }
                }
                for segment in segments {
                    let chunk = match segment {
                        Ok(chunk) => chunk,
                        Err(redaction) => {
                            sent.fetch_add(1, Relaxed);
                            if tx.send(Work::Redaction(redaction)).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    };
                    if chunk.iter().any(|i| parse_sync_subject(&i.0).is_some())
                        && finished
                            .wait_for(|&done| done >= sent.load(Relaxed))
                            .await
                            .is_err()
                    {
                        return;
                    }
                    sent.fetch_add(1, Relaxed);
                    let validator = validator.clone();
                    let reader = reader.clone();
                    let validated = match tokio::task::spawn_blocking(move || {
                        validate(&validator, skew, chunk, reader.as_ref())
                    })
                    .await
                    {
                        Ok(Ok(validated)) => validated,
                        Ok(Err(e)) => {
                            // Nothing of the chunk is decided; the writer stops and the next start
                            // reads it again.
                            tracing::error!(error = %e, "cannot map a sync body: the ledger's own history cannot be read; stopping the EVENTS reader (check the data dir's disk, then restart `socai serve`)");
                            return;
                        }
                        Err(_) => {
                            tracing::error!(
                                "validating a batch failed (a bug); stopping the EVENTS reader"
                            );
                            return;
                        }
                    };
                    if tx.send(Work::Batch(validated)).await.is_err() {
                        return;
                    }
                }
            }
        });
        (task, rx)
    }

    async fn pump(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), IngestError> {
        let mut shutdown = pin!(shutdown);
        let mut checkpoint_tick = tokio::time::interval(self.config.checkpoint_interval);
        checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Copies of redacted events left by a crash or a redaction made without NATS.
        self.erase_copies_now().await?;
        if self.config.replica.is_none() {
            crate::streams::remove_legacy_consumer(&self.js, &self.config.streams).await;
        }
        let (source, mut batches) = self.spawn_source(self.start_position()?);
        let source = AbortOnDrop(source);
        let result = loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break Ok(()),
                // Commands: a redaction request is put into EVENTS at once (it is applied
                // when read back there, after what is queued before it).
                cmd = next_command(&mut self.commands) => {
                    if let Err(e) = self.execute(cmd).await {
                        break Err(e);
                    }
                }
                work = batches.recv() => {
                    let done = match work {
                        None => break Err(IngestError::Nats("the EVENTS reader stopped".into())),
                        Some(Work::Batch(batch)) => self.process(batch).await,
                        Some(Work::Redaction(input)) => self.apply_redaction(input).await,
                    };
                    if let Err(e) = done {
                        break Err(e);
                    }
                }
                _ = checkpoint_tick.tick() => {
                    let ticked = async {
                        self.checkpoint_if_due().await?;
                        self.erase_copies_now().await?;
                        self.store_settled_cursor().await
                    };
                    if let Err(e) = ticked.await {
                        break Err(e);
                    }
                }
            }
        };
        drop(source);
        result
    }

    /// Stores the cursor of everything settled when the last commits could not (a batch of
    /// duplicates only, or rejections confirmed after their batch's commit): a restart then
    /// reads less again.
    async fn store_settled_cursor(&mut self) -> Result<(), IngestError> {
        let cursor = {
            let unsettled = self.unsettled.lock().expect("unsettled");
            match unsettled.first_key_value() {
                Some((_, (before, _))) => *before,
                None => self.last_input,
            }
        };
        let Some(cursor) = cursor else {
            return Ok(());
        };
        if self
            .ledger
            .as_ref()
            .and_then(|l| l.source_cursor().ok().flatten())
            .is_some_and(|stored| stored >= cursor.seq)
        {
            return Ok(());
        }
        self.commit_marks(move |l| l.set_source_cursor(cursor))
            .await
    }

    fn ledger(&mut self) -> Result<Ledger<SledStorage>, IngestError> {
        self.ledger
            .take()
            .ok_or_else(|| IngestError::Ledger("the ledger was lost by a failed task".into()))
    }

    /// Runs a command. A redaction is checked against the ledger, then put into EVENTS
    /// (`dvc.ledger.redactions`); it is applied, and answered, when the source reads it back
    /// ([`Writer::apply_redaction`]).
    async fn execute(&mut self, cmd: WriterCommand) -> Result<(), IngestError> {
        match cmd {
            WriterCommand::Redact {
                id,
                reason,
                by,
                reply,
            } => {
                if self.config.replica.is_some() {
                    let _ = reply.send(Err(LedgerError::Unavailable(
                        "this ledger is a replica: redact on the primary (the redaction reaches every replica through EVENTS)".into(),
                    )));
                    return Ok(());
                }
                // What can be refused now is refused now, without a message in EVENTS.
                if let Err(e) = self
                    .ledger
                    .as_ref()
                    .ok_or_else(|| {
                        LedgerError::Unavailable("the ledger was lost by a failed task".into())
                    })
                    .and_then(|l| {
                        let now = format!("{:.3}", jiff::Timestamp::now());
                        l.check_redaction(&id, &reason, &by, &now)
                    })
                {
                    let _ = reply.send(Err(e));
                    return Ok(());
                }
                // A random message id: one nobody else can take first (JetStream dedups ids
                // across the whole stream, agencies' messages included). A request asked again
                // after a lost PubAck is stored twice; the second finds the event redacted and
                // leaves no entry, on every ledger alike.
                let msg_id = {
                    use rand_core::RngCore;
                    let mut nonce = [0u8; 16];
                    rand_core::OsRng.fill_bytes(&mut nonce);
                    format!("socai-redaction-{}", hex::encode(nonce))
                };
                let body = serde_json::to_vec(&RedactionRequest { id, reason, by }).expect("JSON");
                let msg = PublishMessage::build()
                    .payload(body.into())
                    .message_id(msg_id);
                let stored = tokio::time::timeout(REDACTION_PUBLISH_WAIT, async {
                    self.js
                        .send_publish(REDACTIONS_SUBJECT, msg)
                        .await
                        .map_err(|e| e.to_string())?
                        .await
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|_| Err("no answer".into()));
                match stored {
                    Ok(ack) if ack.duplicate => {
                        let _ = reply.send(Err(LedgerError::Unavailable(format!(
                            "a redaction request for this event is already in EVENTS (seq {}), stored within the stream's duplicate window: look for the event's redaction entry, or ask again after the window",
                            ack.sequence
                        ))));
                    }
                    Ok(ack) => {
                        self.redactions.insert(ack.sequence, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(LedgerError::Unavailable(format!(
                            "EVENTS did not confirm the redaction request ({e}); it may still be stored and applied: look for the event's redaction entry before asking again"
                        ))));
                    }
                }
                Ok(())
            }
        }
    }

    /// Applies a redaction request read from EVENTS, in a commit of its own, at its place in the
    /// stream and with its message's time (so every ledger reading EVENTS writes the same
    /// entry), signs a checkpoint covering it and, on a primary, erases NATS's copies of the
    /// event; then answers the request if this writer made it. A request the ledger cannot
    /// apply (read again after a crash: already redacted) leaves no entry, on every ledger
    /// alike. A failed commit poisons the ledger and stops the writer; any other failure (a read
    /// of the store failed) stops it too, before the cursor passes the request, so the restarted
    /// writer applies it where every replica does.
    async fn apply_redaction(&mut self, input: Input) -> Result<(), IngestError> {
        let (_, payload, stream_seq, published) = &input;
        let stream_seq = *stream_seq;
        let reply = self.redactions.remove(&stream_seq);
        let at = format!("{published:.3}");
        let mut poisoned = false;
        // The redaction entry's seq, once committed (its checkpoint may still fail).
        let mut applied = None;
        let mut result = match serde_json::from_slice::<RedactionRequest>(payload) {
            Err(e) => Err(LedgerError::InvalidRedaction(format!(
                "the redaction request at EVENTS seq {stream_seq} does not parse: {e}"
            ))),
            Ok(request) => {
                let mut ledger = self.ledger()?;
                let (ledger, result, entry) = tokio::task::spawn_blocking(move || {
                    let mut entry = None;
                    let result = ledger
                        .redact(&request.id, &request.reason, &request.by, &at)
                        .and_then(|(target_seq, redaction_seq)| {
                            entry = Some(redaction_seq);
                            let signed = ledger.checkpoint()?;
                            Ok(Redacted {
                                id: request.id,
                                target_seq,
                                redaction_seq,
                                tree_size: signed.checkpoint.size,
                                copies_erased: 0,
                                copies_pending: true,
                            })
                        });
                    (ledger, result, entry)
                })
                .await
                .map_err(|e| IngestError::Ledger(format!("redaction task failed: {e}")))?;
                applied = entry;
                poisoned = ledger.is_poisoned();
                self.after_commit(&ledger);
                self.ledger = Some(ledger);
                result
            }
        };
        // Only a refusal that follows from the request and the entries finishes the request
        // unapplied: every ledger holding the same entries refuses it alike. Passing it over for
        // a failed read would leave this ledger without the entry its replicas write.
        if let Err(e) = &result
            && !poisoned
            && !refused_by_content(e)
        {
            let answer = match applied {
                Some(seq) => format!(
                    "the redaction was applied (entry {seq}) but no checkpoint covering it was signed ({e}); the ledger stopped: restart `socai serve` (it signs one)"
                ),
                None => format!(
                    "the ledger could not apply the redaction ({e}) and stopped: restart `socai serve` once it can read its store; it reads the request again from EVENTS and applies it (if it stops here again, run `socai verify` or restore the data dir from a backup); look for the event's redaction entry then"
                ),
            };
            tracing::error!(stream_seq, error = %e, "a redaction request in EVENTS: {answer}");
            if let Some(reply) = reply {
                let _ = reply.send(Err(LedgerError::Unavailable(answer)));
            }
            return Err(IngestError::Ledger(format!(
                "applying the redaction request at EVENTS seq {stream_seq} failed: {e}"
            )));
        }
        // The message is finished: the cursor may pass it once what comes before is settled.
        self.last_input = Some(cursor_of(&input));
        self.counters.events_cursor.store(stream_seq, Relaxed);
        // Dealt with (applied, or refused for what it asks): stored by the next commit.
        if let Some(ledger) = self.ledger.as_mut() {
            ledger.note_read_through(stream_seq);
        }
        self.finished.send_modify(|n| *n += 1);
        if poisoned {
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
            return Err(IngestError::Ledger("the redaction's commit failed".into()));
        }
        self.store_settled_cursor().await?;
        let mut erase_failed = None;
        match &mut result {
            Ok(done) => {
                // Erase NATS's copies before answering: once told "redacted", nothing socai or
                // its nats-server controls holds the plaintext (unless a replica has yet to read
                // a copy: then it goes once the replica has). The redaction is committed either
                // way, so it is answered even if this fails.
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
                    stream_seq,
                    copies_erased = erased,
                    copies_pending = done.copies_pending,
                    "personal data redacted"
                );
            }
            Err(e) => {
                tracing::warn!(stream_seq, error = %e, "a redaction request in EVENTS was not applied");
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
        match erase_failed {
            Some(e) => Err(e),
            None => Ok(()),
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
        // Nothing to erase (the usual tick): do not drain the settling pipeline for nothing.
        if self.late_copies.is_empty()
            && self.ledger.as_ref().is_none_or(|l| {
                l.storage()
                    .erasures_pending()
                    .is_ok_and(|pending| pending.is_empty())
            })
        {
            return Ok((0, 0));
        }
        // A replica erases nothing on NATS (the primary does, once every replica has read the
        // copies); its marks stay for a promotion, and it does not drain its pipeline for them.
        // Nor does a promoted replica until COMMITTED was found to continue it.
        if self.config.replica.is_some() || self.counters.promotion_pending.load(Relaxed) {
            if !self.late_copies.is_empty() {
                let late = std::mem::take(&mut self.late_copies);
                self.commit_marks(move |l| l.mark_for_erasure(late)).await?;
            }
            let pending = self.ledger.as_ref().map_or(0, |l| {
                l.storage()
                    .erasures_pending()
                    .map_or(0, |pending| pending.len())
            });
            return Ok((0, pending));
        }
        // Rejections still being copied to REJECTED must be there before it is scanned; then
        // the cursor is stored past everything read, so that no erased EVENTS message lies
        // ahead of it (a restart would take the hole for data loss).
        self.settled().await;
        self.store_settled_cursor().await?;
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
        let own = storage
            .source_cursor()
            .map_err(|e| IngestError::Ledger(e.to_string()))?
            .unwrap_or(0);
        let (read_up_to, bound) = match self.counters.replicas.erasure_floor() {
            Ok(Some((floor, name))) if floor < own => {
                (floor, format!("the cursor replica {name} has stored"))
            }
            Ok(_) => (own, "the ledger's stored cursor".to_owned()),
            Err(why) => (0, why),
        };
        let mut work = Vec::with_capacity(pending.len());
        for event in pending {
            let copies = storage
                .copies(&event)
                .map_err(|e| IngestError::Ledger(e.to_string()))?;
            // Its dossier: a sync body holding a copy is recognised by naming it.
            let dossier = match storage
                .id_if_known(&event.agency, &event.id)
                .map_err(|e| IngestError::Ledger(e.to_string()))?
            {
                Some(rec) => Some(
                    ledger
                        .reader()
                        .entry(rec.seq)
                        .map_err(|e| IngestError::Ledger(e.to_string()))?
                        .dossier()
                        .to_owned(),
                ),
                None => None,
            };
            work.push((event, copies, dossier));
        }
        let mut done = Vec::new();
        let mut erased = 0;
        let total = work.len();
        for (event, copies, dossier) in work {
            match crate::erase::erase_copies(
                &self.js,
                &event,
                dossier.as_deref(),
                &copies,
                read_up_to,
                &bound,
            )
            .await
            {
                Ok(n) => {
                    erased += n;
                    done.push(event);
                }
                Err(crate::erase::EraseError::NotYet(e)) => {
                    // Not read yet by this ledger or a replica: the next event may be. Said
                    // once per event and bound (the cursor in the text moves every tick).
                    let key = format!("{}/{}: {bound}", event.agency, event.id);
                    self.warn_erase_once(key, &e, &event);
                }
                Err(crate::erase::EraseError::Nats(e)) => {
                    self.warn_erase_once(e.clone(), &e, &event);
                    // NATS is likely down or slow: leave the rest for the next try too.
                    break;
                }
            }
        }
        let left = total - done.len();
        if left == 0 {
            self.erase_error = None;
        }
        if !done.is_empty() {
            tracing::info!(
                events = done.len(),
                messages = erased,
                "erased the NATS copies of redacted events"
            );
            self.commit_marks(move |l| l.mark_erased(done)).await?;
        }
        Ok((erased, left))
    }

    /// Logs why erasing `event`'s copies must wait, unless `key` was the last reason logged.
    fn warn_erase_once(&mut self, key: String, error: &str, event: &socai_store::EventKey) {
        if self.erase_error.as_ref() != Some(&key) {
            tracing::warn!(
                error,
                agency = %event.agency,
                id = %event.id,
                "cannot erase a redacted event's copies on NATS yet; retrying at every checkpoint interval"
            );
            self.erase_error = Some(key);
        }
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

    /// Commits (fsync) a validated batch, then settles it in the background.
    async fn process(&mut self, batch: Validated) -> Result<(), IngestError> {
        let Validated {
            inputs,
            parts,
            events,
            recorded,
            sources,
            checked,
            syncs,
            copies,
            marks,
            last,
        } = batch;
        // Each input's predecessor in the stream (the message before its own: a sync body's
        // parts share one message): how far the cursor may go while it is not settled.
        let mut preds: Vec<Option<SourceCursor>> = Vec::with_capacity(inputs.len());
        for (k, input) in inputs.iter().enumerate() {
            let pred = match k.checked_sub(1).map(|j| &inputs[j]) {
                None => self.last_input,
                Some(before) if unsettled_key(before) == unsettled_key(input) => preds[k - 1],
                Some(before) => Some(cursor_of(before)),
            };
            preds.push(pred);
        }
        let mut event_preds = Vec::with_capacity(events.len());
        let upper = {
            let mut unsettled = self.unsettled.lock().expect("unsettled");
            for (k, c) in checked.iter().enumerate() {
                match c {
                    Ok(_) => event_preds.push(preds[k]),
                    Err(_) => hold(&mut unsettled, &inputs[k], preds[k]),
                }
            }
            unsettled.first_key_value().map(|(_, (before, _))| *before)
        };
        let read_through = last.map(|c| c.seq);
        let cursor = move |outcomes: &[AppendOutcome]| {
            let mut cursor = match upper {
                Some(before) => before,
                None => last,
            };
            if let Some(i) = outcomes.iter().position(|o| o.refusal("").is_some()) {
                cursor = earlier(cursor, event_preds[i]);
            }
            cursor
        };
        let mut events = events;
        if let Some(n) = self.config.forge_source_seq {
            for (event, _) in events.iter_mut().zip(&sources).filter(|(_, s)| **s == n) {
                tracing::warn!(id = %event.id, stream_seq = n, "test fault: forging the event");
                if let Some(data) = event.data.as_object_mut() {
                    data.insert("forged".into(), serde_json::Value::Bool(true));
                }
            }
        }
        let mut ledger = self.ledger()?;
        let started = std::time::Instant::now();
        let (ledger, events, outcomes) = tokio::task::spawn_blocking(move || {
            ledger.note_copies(copies);
            ledger.note_sync_marks(marks);
            if let Some(seq) = read_through {
                ledger.note_read_through(seq);
            }
            let outcomes = ledger
                .append_batch_sourced(&events, &recorded, &sources, cursor)
                .and_then(|outcomes| {
                    // The leaf hash of every seq a receipt will name (stored hashes: cheap).
                    let seqs: Vec<u64> = outcomes
                        .iter()
                        .filter_map(|o| match o {
                            AppendOutcome::Committed { seq } | AppendOutcome::Duplicate { seq } => {
                                Some(*seq)
                            }
                            _ => None,
                        })
                        .collect();
                    let leaves = ledger.leaf_hashes(&seqs)?;
                    Ok((
                        outcomes,
                        seqs.into_iter().zip(leaves).collect::<HashMap<_, _>>(),
                    ))
                });
            (ledger, events, outcomes)
        })
        .await
        .map_err(|e| IngestError::Ledger(format!("commit task failed: {e}")))?;
        let elapsed = started.elapsed();
        self.after_commit(&ledger);
        let (size, root) = (ledger.head().size, ledger.root());
        self.ledger = Some(ledger);
        // The reader sees this commit now: a chunk with a sync body may be compared with it.
        self.finished.send_modify(|n| *n += 1);
        // The batch is fsynced (or nothing of it is): only now may anything leave the ledger.
        let (outcomes, leaves) = outcomes.map_err(|e| IngestError::Ledger(e.to_string()))?;
        self.last_input = last.or(self.last_input);
        self.counters.batches.fetch_add(1, Relaxed);
        self.counters
            .commit_us
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
        let telemetry = &self.counters.telemetry;
        telemetry.commit_seconds.observe(elapsed.as_secs_f64());
        telemetry.batch_events.observe(inputs.len() as f64);
        if let Some(last) = last {
            // The seq of the last message finished (after a rewind it may go down).
            self.counters.events_cursor.store(last.seq, Relaxed);
        }

        // A copy of a redacted event refused before the ledger saw it (e.g. a bad field): its
        // REJECTED copy and EVENTS message must be erased too.
        if let Some(ledger) = self.ledger.as_ref() {
            for ((c, (subject, payload, _, _)), part) in
                checked.iter().zip(inputs.iter()).zip(parts.iter())
            {
                if c.is_ok() {
                    continue;
                }
                // A refused part of a sync body is filed under its dossier's submission.
                let (Some(agency), Some(id)) = (
                    socai_wire::subject::agency_of_subject(subject),
                    part.id_of(payload),
                ) else {
                    continue;
                };
                let key = socai_store::EventKey::new(agency, id);
                if ledger
                    .is_redacted(&key)
                    .map_err(|e| IngestError::Ledger(e.to_string()))?
                {
                    self.late_copies.push(key);
                }
            }
        }
        let mut verdicts = Vec::with_capacity(inputs.len());
        {
            let mut unsettled = self.unsettled.lock().expect("unsettled");
            for (k, c) in checked.into_iter().enumerate() {
                verdicts.push(match c {
                    Err(rejection) => Verdict::Reject(rejection),
                    Ok(i) => match (&outcomes[i], outcomes[i].refusal(&events[i].id)) {
                        (_, Some(rejection)) => {
                            hold(&mut unsettled, &inputs[k], preds[k]);
                            Verdict::Reject(rejection)
                        }
                        (AppendOutcome::Committed { seq }, None) => {
                            self.counters.committed.fetch_add(1, Relaxed);
                            Verdict::Held {
                                seq: *seq,
                                duplicate: false,
                            }
                        }
                        (AppendOutcome::Duplicate { seq }, None) => {
                            self.counters.duplicates.fetch_add(1, Relaxed);
                            Verdict::Held {
                                seq: *seq,
                                duplicate: true,
                            }
                        }
                        (other, None) => unreachable!("{other:?} is neither held nor refused"),
                    },
                });
            }
        }
        // The batch is durable: settle it in the background while the next one commits.
        while self.settling.len() >= SETTLING_MAX_BATCHES {
            self.settling.join_next().await;
        }
        let settler = Settler {
            replica: self.config.replica.is_some(),
            js: self.js.clone(),
            counters: self.counters.clone(),
            unsettled: self.unsettled.clone(),
            signer: self
                .ledger
                .as_ref()
                .map(Ledger::signer)
                .ok_or_else(|| IngestError::Ledger("the ledger was lost".into()))?,
            retry_for: self.config.rejected_retry,
        };
        let answer = Answer {
            inputs,
            parts,
            verdicts,
            syncs,
            leaves,
            size,
            root,
        };
        self.settling.spawn(settler.settle(answer));
        Ok(())
    }
}

/// Aborts a task when dropped (the source reader stops with the writer).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the settle stage needs: a handle on NATS, the counters, the unsettled rejections, the
/// log's key.
struct Settler {
    /// A replica sends nothing: no REJECTED copies, no receipts.
    replica: bool,
    js: jetstream::Context,
    counters: Arc<Counters>,
    unsettled: Unsettled,
    signer: Arc<CheckpointSigner>,
    /// How long a REJECTED copy is tried before it is left for the next start.
    retry_for: Duration,
}

impl Settler {
    /// Copies what is rejected to REJECTED (trying until REJECTED has it, for at most
    /// `retry_for`), then sends each publishing agency its receipt.
    async fn settle(self, answer: Answer) {
        let rejections = answer
            .inputs
            .iter()
            .zip(&answer.parts)
            .zip(&answer.verdicts)
            .filter_map(|((input, part), v)| match v {
                Verdict::Reject(r) => Some(self.reject(input, part, r)),
                Verdict::Held { .. } => None,
            });
        futures::future::join_all(rejections).await;
        if let Err(e) = self.send_receipts(&answer).await {
            tracing::warn!(error = %e, "cannot send receipts for a commit; agencies re-publish what has none and get a duplicate receipt");
        }
    }

    /// Signs and sends the commit's receipts (see [`receipts_of`]).
    async fn send_receipts(&self, answer: &Answer) -> Result<(), String> {
        // A replica answers nobody; a promoted one only once COMMITTED was found to continue it
        // (until then agencies re-publish and get a duplicate answer).
        if self.replica || self.counters.promotion_pending.load(Relaxed) {
            return Ok(());
        }
        let receipts = receipts_of(answer, || {
            self.signer
                .sign(&Checkpoint {
                    origin: self.signer.name().to_owned(),
                    size: answer.size,
                    root: answer.root,
                })
                .map(|signed| signed.note)
                .map_err(|e| e.to_string())
        })?;
        // One signature for the commit's receipts (each carries its place in their tree).
        let json = Receipt::sign_all_json(&receipts, &self.signer).map_err(|e| e.to_string())?;
        let client = self.js.client();
        let mut failed = None;
        for (receipt, json) in receipts.iter().zip(json) {
            let agency = &receipt.agency;
            // Core NATS, fire and forget: a receipt lost in transit is asked for again by the
            // client's re-publish. One agency's failure must not hold back the others'.
            match client.publish(receipts_subject(agency), json.into()).await {
                Ok(()) => {
                    self.counters.receipts.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    failed.get_or_insert(format!("receipt for {agency}: {e}"));
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Stores the rejection on REJECTED, trying again until it is there (for at most
    /// `retry_for`, then it is left for the next start); then the cursor may pass the message.
    async fn reject(
        &self,
        (subject, payload, stream_seq, published): &Input,
        part: &Part,
        rejection: &Rejection,
    ) {
        let id = part.id_of(payload);
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
            rejection,
            subject,
            *stream_seq,
            part.key.as_deref(),
            id.as_deref(),
            &published.to_string(),
        );
        // A replica keeps no REJECTED copies (the primary does).
        if !self.replica {
            let mut pause = Duration::from_millis(100);
            let give_up = tokio::time::Instant::now() + self.retry_for;
            loop {
                let copy = PublishMessage::build()
                    .payload(payload.clone())
                    .headers(headers.clone());
                let stored = match self.js.send_publish(rejected_subject(subject), copy).await {
                    Ok(ack) => ack
                        .into_future()
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match stored {
                    Ok(()) => break,
                    Err(e) if tokio::time::Instant::now() >= give_up => {
                        // Left unsettled: the stored cursor stays before this message, so the next
                        // start reads and rejects it again.
                        self.counters.rejections_unstored.fetch_add(1, Relaxed);
                        tracing::error!(error = %e, stream_seq, "cannot store a rejection on REJECTED; giving up for this run (the EVENTS cursor stays before it, so the next start rejects it again): check REJECTED's limits and nats-server, then restart `socai serve`");
                        return;
                    }
                    Err(e) => {
                        self.counters.rejection_retries.fetch_add(1, Relaxed);
                        tracing::warn!(error = %e, stream_seq, "cannot store a rejection on REJECTED yet; trying again");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(REJECT_RETRY_MAX);
                    }
                }
            }
        }
        self.counters.rejected.fetch_add(1, Relaxed);
        self.counters
            .telemetry
            .rejected
            .get_or_create(&crate::telemetry::CodeLabel {
                code: rejection.code.as_str().to_owned(),
            })
            .inc();
        let mut unsettled = self.unsettled.lock().expect("unsettled");
        let key = (*stream_seq, published.as_nanosecond());
        if let Some((_, waiting)) = unsettled.get_mut(&key) {
            *waiting -= 1;
            if *waiting == 0 {
                unsettled.remove(&key);
            }
        }
    }
}

/// The commit's receipts, unsigned: one per agency that published in the batch, more when one
/// would take more than [`RECEIPT_MAX_BYTES`]; `tree_head` signs the commit's tree head (asked
/// once, and only if there is something to answer).
fn receipts_of(
    answer: &Answer,
    mut tree_head: impl FnMut() -> Result<String, String>,
) -> Result<Vec<Receipt>, String> {
    // Per agency: its receipts, the last one being filled, and that one's size so far.
    let mut receipts: BTreeMap<String, (Vec<Receipt>, usize)> = BTreeMap::new();
    let mut head: Option<String> = None;
    debug_assert_eq!(answer.parts.len(), answer.inputs.len(), "a part per input");
    for (((subject, payload, _, _), verdict), part) in answer
        .inputs
        .iter()
        .zip(&answer.verdicts)
        .zip(&answer.parts)
    {
        let Some((agency, _)) = parse_event_subject(subject) else {
            continue;
        };
        let Some(id) = part.id_of(payload) else {
            continue;
        };
        if id.len() > 256 {
            // Not an id the ledger could hold (the schema bounds ids): nothing to answer.
            continue;
        }
        let checkpoint: &str = match &mut head {
            Some(note) => note,
            None => head.insert(tree_head()?),
        };
        // What this answer adds to the receipt's JSON, generously (names, quotes, escapes of
        // the bounded strings below).
        let adds = match verdict {
            Verdict::Held { .. } => 2 * id.len() + 140,
            Verdict::Reject(r) => {
                2 * (id.len() + r.path.len().min(1024) + r.reason.len().min(1024)) + 120
            }
        };
        let new_receipt = || Receipt {
            v: RECEIPT_VERSION,
            agency: agency.clone(),
            checkpoint: checkpoint.to_owned(),
            events: Vec::new(),
            rejected: Vec::new(),
            syncs: Vec::new(),
            batch: Default::default(),
            signature: String::new(),
        };
        let (parts, size) = receipts
            .entry(agency.clone())
            .or_insert_with(|| (vec![new_receipt()], 0));
        if *size > 0 && *size + adds > RECEIPT_MAX_BYTES {
            parts.push(new_receipt());
            *size = 0;
        }
        *size += adds;
        let receipt = parts.last_mut().expect("one receipt at least");
        match verdict {
            Verdict::Held { seq, duplicate } => {
                let leaf = answer
                    .leaves
                    .get(seq)
                    .ok_or_else(|| format!("no leaf hash for seq {seq}"))?;
                receipt.events.push(ReceiptEvent {
                    id,
                    seq: *seq,
                    leaf_hash: leaf.to_string(),
                    duplicate: *duplicate,
                });
            }
            // Bounded as in REJECTED's headers: one agency's odd ids or field names must not
            // make its receipt too large for NATS.
            Verdict::Reject(r) => receipt.rejected.push(ReceiptRejection {
                id: crate::check::header_value(&id, 256),
                code: r.code.as_str().to_owned(),
                path: crate::check::header_value(&r.path, 1024),
                reason: crate::check::header_value(&r.reason, 1024),
            }),
        }
    }
    // Each sync body, answered in its agency's receipt: the events it yielded (each also
    // answered above), those refused, and its parts that could not be mapped; at most
    // SYNC_ANSWER_MAX_BYTES of them, the rest counted in `more` (REJECTED and COMMITTED hold all).
    for body in &answer.syncs {
        let checkpoint: &str = match &mut head {
            Some(note) => note,
            None => head.insert(tree_head()?),
        };
        let mut answered = ReceiptSync {
            id: body.id.clone(),
            events: Vec::new(),
            rejected: Vec::new(),
            more: 0,
            more_rejected: 0,
        };
        let mut adds = 2 * body.id.len() + 80;
        let mut events = Vec::new();
        let mut refused = Vec::new();
        for k in body.inputs.clone() {
            let (subject, payload, _, _) = &answer.inputs[k];
            let refusal = |id: &str, r: &Rejection| ReceiptRejection {
                id: crate::check::header_value(id, 256),
                code: r.code.as_str().to_owned(),
                path: crate::check::header_value(&r.path, 1024),
                reason: crate::check::header_value(&r.reason, 1024),
            };
            match (&answer.verdicts[k], parse_event_subject(subject)) {
                (Verdict::Held { .. }, Some(_)) => events.extend(answer.parts[k].id_of(payload)),
                (Verdict::Reject(r), Some(_)) => {
                    let id = answer.parts[k].event_id.clone().unwrap_or_default();
                    refused.push(refusal(&id, r));
                }
                (Verdict::Reject(r), None) => {
                    refused.push(refusal(answer.parts[k].dossier.as_deref().unwrap_or(""), r))
                }
                (Verdict::Held { .. }, None) => {}
            }
        }
        // Refusals first: they are what an agency must act on; what does not fit is counted.
        for r in refused {
            let size = 2 * (r.id.len() + r.path.len() + r.reason.len()) + 120;
            if adds + size > SYNC_ANSWER_MAX_BYTES {
                answered.more_rejected += 1;
            } else {
                adds += size;
                answered.rejected.push(r);
            }
        }
        for id in events {
            let size = 2 * id.len() + 4;
            if adds + size > SYNC_ANSWER_MAX_BYTES {
                answered.more += 1;
            } else {
                adds += size;
                answered.events.push(id);
            }
        }
        let (parts, size) = receipts.entry(body.agency.clone()).or_insert_with(|| {
            (
                vec![Receipt {
                    v: RECEIPT_VERSION,
                    agency: body.agency.clone(),
                    checkpoint: checkpoint.to_owned(),
                    events: Vec::new(),
                    rejected: Vec::new(),
                    syncs: Vec::new(),
                    batch: Default::default(),
                    signature: String::new(),
                }],
                0,
            )
        });
        if *size > 0 && *size + adds > RECEIPT_MAX_BYTES {
            parts.push(Receipt {
                v: RECEIPT_VERSION,
                agency: body.agency.clone(),
                checkpoint: checkpoint.to_owned(),
                events: Vec::new(),
                rejected: Vec::new(),
                syncs: Vec::new(),
                batch: Default::default(),
                signature: String::new(),
            });
            *size = 0;
        }
        *size += adds;
        parts
            .last_mut()
            .expect("one receipt at least")
            .syncs
            .push(answered);
    }
    Ok(receipts.into_values().flat_map(|(r, _)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use socai_model::ErrorCode;

    fn input(agency_token: &str, id: &str, seq: u64) -> Input {
        let payload = serde_json::to_vec(&serde_json::json!({ "id": id })).unwrap();
        (
            format!("dvc.events.{agency_token}.dossier.submitted"),
            Bytes::from(payload),
            seq,
            jiff::Timestamp::UNIX_EPOCH,
        )
    }

    #[test]
    fn receipts_are_split_by_size_and_each_answer_is_in_exactly_one() {
        let long = |i: usize| format!("{i:0>250}");
        let mut inputs = Vec::new();
        let mut verdicts = Vec::new();
        let mut leaves = HashMap::new();
        // 1000 answers for one agency: held events with the longest ids, and rejections with
        // the longest reasons; and one event of another agency.
        for i in 0..1000usize {
            inputs.push(input("H01", &long(i), i as u64 + 1));
            if i % 2 == 0 {
                verdicts.push(Verdict::Held {
                    seq: i as u64,
                    duplicate: i % 4 == 0,
                });
                leaves.insert(i as u64, Hash([i as u8; 32]));
            } else {
                verdicts.push(Verdict::Reject(Rejection::new(
                    ErrorCode::SchemaViolation,
                    "/data/".to_owned() + &"p".repeat(2000),
                    "\"".repeat(3000),
                )));
            }
        }
        inputs.push(input("G09-20", "other", 1001));
        verdicts.push(Verdict::Held {
            seq: 1000,
            duplicate: false,
        });
        leaves.insert(1000, Hash([7; 32]));
        let answer = Answer {
            parts: vec![Part::default(); inputs.len()],
            inputs,
            verdicts,
            syncs: Vec::new(),
            leaves,
            size: 1001,
            root: Hash([1; 32]),
        };
        let mut heads = 0;
        let mut receipts = receipts_of(&answer, || {
            heads += 1;
            Ok("tree head".to_owned())
        })
        .unwrap();
        assert_eq!(heads, 1, "the tree head is signed once per commit");
        let (signer, _, _) = CheckpointSigner::generate("test.socai/log").unwrap();
        Receipt::sign_all(&mut receipts, &signer).unwrap();
        let h01: Vec<&Receipt> = receipts.iter().filter(|r| r.agency == "H01").collect();
        assert!(h01.len() > 1, "{} receipts", h01.len());
        for r in &receipts {
            let bytes = r.to_json().len();
            assert!(bytes < 512 * 1024, "a receipt of {bytes} bytes");
        }
        let mut answered: Vec<&str> = h01
            .iter()
            .flat_map(|r| {
                r.events
                    .iter()
                    .map(|e| e.id.as_str())
                    .chain(r.rejected.iter().map(|e| e.id.as_str()))
            })
            .collect();
        answered.sort_unstable();
        let mut expected: Vec<String> = (0..1000).map(long).collect();
        expected.sort_unstable();
        assert_eq!(answered, expected);
        let other: Vec<&Receipt> = receipts.iter().filter(|r| r.agency == "G09.20").collect();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].events[0].seq, 1000);
    }

    /// The lines of a portal sync fixture (crates/socai-dvc/fixtures/NAME.jsonl).
    fn fixture(name: &str) -> Vec<String> {
        let path = format!(
            "{}/../socai-dvc/fixtures/{name}.jsonl",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// An empty ledger in `dir`.
    fn empty_ledger(dir: &std::path::Path) -> Ledger<SledStorage> {
        let (_, skey, _) = CheckpointSigner::generate("test.socai/w").unwrap();
        Ledger::open(
            SledStorage::open(dir).unwrap(),
            CheckpointSigner::from_skey(&skey).unwrap(),
            vec![1; 32],
            Default::default(),
        )
        .unwrap()
    }

    /// A sync body's events and refused parts, chunked in with other messages: validated,
    /// answered under the body's id, each REJECTED copy keyed by its part.
    #[test]
    fn a_sync_body_becomes_its_events_and_parts_and_is_answered_under_its_id() {
        let validator = Validator::new(Limits::default());
        let t: jiff::Timestamp = "2026-11-10T01:00:00Z".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ledger = empty_ledger(dir.path());
        let reader = ledger.reader();
        let counter = fixture("counter")[0].clone();
        let bad = fixture("bad")[0].clone();
        let raw: Vec<Input> = vec![
            input("000-00-12-H01", "native-1", 1),
            (
                "dvc.sync.000-00-12-H01".into(),
                Bytes::from(counter.clone()),
                2,
                t,
            ),
            (
                "dvc.sync.000-00-12-H01".into(),
                Bytes::from(bad.clone()),
                3,
                t,
            ),
        ];
        let v = validate(
            &validator,
            jiff::SignedDuration::from_hours(24),
            raw,
            Some(&reader),
        )
        .unwrap();
        // native (schema-invalid here: only an id), 4 events of the counter body, 2 refused
        // dossiers and 1 event of the bad body.
        assert_eq!(v.inputs.len(), 1 + 4 + 3);
        assert_eq!(v.events.len(), 5);
        assert_eq!(v.syncs.len(), 2);
        assert_eq!(v.syncs[0].inputs, 1..5);
        assert_eq!(v.syncs[1].inputs, 5..8);
        assert_eq!(v.last.map(|c| c.seq), Some(3));
        assert!(
            v.inputs[1..5]
                .iter()
                .all(|i| i.2 == 2 && i.0.starts_with("dvc.events."))
        );
        let keys: Vec<Option<&str>> = v.parts.iter().map(|p| p.key.as_deref()).collect();
        assert_eq!(
            keys,
            [
                None,
                Some("H01-261102-0002:submitted"),
                Some("H01-261102-0002:accepted"),
                Some("H01-261102-0002:resolved"),
                Some("H01-261102-0002:returned"),
                Some("/data/0/NgayHenTra"),
                Some("/data/1/TrangThaiHoSo"),
                Some("H01-261102-0008:submitted"),
            ]
        );
        let refused: Vec<&Part> = v.parts.iter().filter(|p| p.dossier.is_some()).collect();
        assert_eq!(refused.len(), 2);
        assert_eq!(
            refused[0].event_id.as_deref(),
            Some("H01-261102-0009:submitted"),
            "filed under the dossier's submission, for erasure"
        );
        // Answered: the events in the agency's receipt, each body under its id.
        let verdicts: Vec<Verdict> = v
            .checked
            .iter()
            .map(|c| match c {
                Ok(i) => Verdict::Held {
                    seq: *i as u64,
                    duplicate: false,
                },
                Err(r) => Verdict::Reject(r.clone()),
            })
            .collect();
        let leaves = (0..5u64).map(|s| (s, Hash([s as u8; 32]))).collect();
        let answer = Answer {
            inputs: v.inputs,
            parts: v.parts,
            verdicts,
            syncs: v.syncs,
            leaves,
            size: 5,
            root: Hash([1; 32]),
        };
        let receipts = receipts_of(&answer, || Ok("head".to_owned())).unwrap();
        assert_eq!(receipts.len(), 1);
        let r = &receipts[0];
        assert_eq!(r.agency, "000.00.12.H01");
        assert_eq!(r.events.len(), 5);
        assert_eq!(r.syncs.len(), 2);
        assert_eq!(r.syncs[0].id, socai_dvc::sync_id(counter.as_bytes()));
        assert_eq!(r.syncs[0].events.len(), 4);
        assert!(r.syncs[0].rejected.is_empty());
        assert_eq!(r.syncs[1].events, ["H01-261102-0008:submitted"]);
        let paths: Vec<&str> = r.syncs[1]
            .rejected
            .iter()
            .map(|x| x.path.as_str())
            .collect();
        assert_eq!(paths, ["/data/0/NgayHenTra", "/data/1/TrangThaiHoSo"]);
        assert_eq!(r.syncs[1].rejected[0].id, "H01-261102-0009");
        assert_eq!(r.syncs[1].rejected[0].code, "unmappable_sync");
        // A REJECTED copy per part, dedup'd by the part's key.
        let id = |key| {
            rejection_headers(
                &Rejection::new(ErrorCode::UnmappableSync, "/x", "y"),
                "dvc.sync.000-00-12-H01",
                3,
                key,
                None,
                "t",
            )
            .get("Nats-Msg-Id")
            .unwrap()
            .as_str()
            .to_owned()
        };
        assert_eq!(id(None), "events-3-t");
        assert!(id(Some("/data/0/NgayHenTra")).starts_with("events-3-t-"));
        assert_ne!(
            id(Some("/data/0/NgayHenTra")),
            id(Some("/data/1/TrangThaiHoSo"))
        );
    }

    /// A commit with many sync bodies, each with many long refusals: every receipt stays well
    /// under NATS's max_payload, every body is answered once, and what is left out is counted.
    #[test]
    fn sync_answers_keep_receipts_small() {
        let mut inputs = Vec::new();
        let mut parts = Vec::new();
        let mut verdicts = Vec::new();
        let mut syncs = Vec::new();
        for b in 0..40u64 {
            let first = inputs.len();
            for d in 0..200u64 {
                inputs.push((
                    "dvc.sync.000-00-12-H01".to_owned(),
                    Bytes::from_static(b"{}"),
                    b + 1,
                    jiff::Timestamp::UNIX_EPOCH,
                ));
                parts.push(Part {
                    key: Some(format!("/data/{d}")),
                    event_id: None,
                    dossier: Some(format!("{d:0>120}")),
                });
                verdicts.push(Verdict::Reject(Rejection::new(
                    ErrorCode::UnmappableSync,
                    format!("/data/{d}/NgayHenTra"),
                    "x".repeat(900),
                )));
            }
            syncs.push(SyncBody {
                agency: "000.00.12.H01".into(),
                id: format!("sync-{b}"),
                inputs: first..inputs.len(),
            });
        }
        let answer = Answer {
            inputs,
            parts,
            verdicts,
            syncs,
            leaves: HashMap::new(),
            size: 1,
            root: Hash([1; 32]),
        };
        let receipts = receipts_of(&answer, || Ok("head".to_owned())).unwrap();
        assert!(receipts.len() > 1);
        let mut answered = Vec::new();
        for r in &receipts {
            assert!(
                r.to_json().len() < 512 * 1024,
                "{} bytes",
                r.to_json().len()
            );
            for s in &r.syncs {
                answered.push(s.id.clone());
                assert_eq!(s.rejected.len() as u64 + s.more_rejected, 200);
                assert!(
                    s.more_rejected > 0,
                    "200 long refusals do not fit in one answer"
                );
            }
        }
        assert_eq!(answered.len(), 40, "each body answered once");
    }

    /// A body read again (after a crash, or a rewind) is answered from the mark its commit
    /// recorded, not compared with what the ledger holds now: a progress body refused while its
    /// dossier was unknown stays refused, although the dossier is known by then.
    #[test]
    fn a_body_read_again_is_answered_from_its_mark() {
        let validator = Validator::new(Limits::default());
        let skew = jiff::SignedDuration::from_hours(24);
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = empty_ledger(dir.path());
        let reader = ledger.reader();
        let t: jiff::Timestamp = "2026-11-10T01:00:00Z".parse().unwrap();
        let progress: Input = (
            "dvc.sync.000-00-12-H01".into(),
            Bytes::from(fixture("progress")[0].clone()),
            5,
            t,
        );
        let commit = |ledger: &mut Ledger<SledStorage>, v: Validated| {
            ledger.note_sync_marks(v.marks);
            ledger
                .append_batch_recorded(&v.events, &v.recorded, None)
                .unwrap();
        };
        // First reading: both of its dossiers are unknown, both refused.
        let v = validate(&validator, skew, vec![progress.clone()], Some(&reader)).unwrap();
        assert_eq!(v.events.len(), 0);
        let first: Vec<String> = v
            .checked
            .iter()
            .map(|c| c.as_ref().unwrap_err().reason.clone())
            .collect();
        assert_eq!(first.len(), 2);
        commit(&mut ledger, v);
        // Then the dossier the body's first record names becomes known.
        let snapshot: Input = (
            "dvc.sync.000-00-12-H01".into(),
            Bytes::from(fixture("supplement")[0].clone()),
            6,
            t,
        );
        let v = validate(&validator, skew, vec![snapshot], Some(&reader)).unwrap();
        assert_eq!(v.events.len(), 2);
        commit(&mut ledger, v);
        // Read again: the same answer, from the mark; and the same bytes kept for REJECTED.
        let again = validate(&validator, skew, vec![progress.clone()], Some(&reader)).unwrap();
        assert_eq!(again.events.len(), 0, "nothing derived again");
        assert!(again.marks.is_empty());
        let reasons: Vec<String> = again
            .checked
            .iter()
            .map(|c| c.as_ref().unwrap_err().reason.clone())
            .collect();
        assert_eq!(reasons, first);
        let kept: serde_json::Value = serde_json::from_slice(&again.inputs[0].1).unwrap();
        assert_eq!(
            kept["data"].as_array().unwrap().len(),
            1,
            "the dossier alone"
        );
        assert_eq!(again.syncs[0].id, socai_dvc::sync_id(&progress.1));
        // The same body as another message (another time) is a new body: it maps now.
        let later: Input = (
            progress.0.clone(),
            progress.1.clone(),
            7,
            t + jiff::SignedDuration::from_secs(1),
        );
        let fresh = validate(&validator, skew, vec![later], Some(&reader)).unwrap();
        assert_eq!(
            fresh.events.len(),
            1,
            "the step, now that its dossier is known"
        );
    }
}
