//! Erasing what NATS still holds of a redacted event (DESIGN.md, "Redaction and personal data").
//!
//! The store records, in the commit of each batch, the EVENTS stream seq of every message that
//! carried personal data (`Storage::copies`); a redaction marks its event in the same commit as
//! the redaction entry (`Storage::erasures_pending`). The writer then erases here, through
//! JetStream (`STREAM.MSG.DELETE` without `no_erase`: nats-server overwrites the message in its
//! files): every recorded EVENTS copy, and every REJECTED copy of the event (found by the
//! `Socai-Event-Id` header among the agency's rejections) together with the EVENTS message it was
//! copied from. Only then is the mark removed; until then a restart erases again (idempotent:
//! a message already gone counts as erased).

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream::DeleteMessageErrorKind};
use futures::StreamExt;
use socai_store::EventKey;
use socai_wire::{header, stream, subject};

/// JetStream's error codes for a message that is already gone: 10057 (the delete found no
/// message, e.g. erased before) and 10043 (no such sequence).
const GONE: [u64; 2] = [10057, 10043];

/// Erases stream `name`'s message `seq`; a message already gone is fine.
async fn erase_message(js: &jetstream::Context, name: &str, seq: u64) -> Result<(), String> {
    let s = js
        .get_stream_no_info(name)
        .await
        .map_err(|e| format!("stream {name}: {e}"))?;
    match s.delete_message(seq).await {
        Ok(_) => Ok(()),
        Err(e) => match e.kind() {
            DeleteMessageErrorKind::JetStream(err) if GONE.contains(&err.error_code().0) => Ok(()),
            _ => Err(format!("erasing {name} message {seq}: {e}")),
        },
    }
}

/// Erases EVENTS message `seq` if it is still a copy of `event` (same agency and id): after
/// nats-server lost acknowledged writes its seqs may have been reused by other events, which
/// must not be erased. A message already gone, or another event's, is fine.
async fn erase_event_copy(
    js: &jetstream::Context,
    event: &EventKey,
    dossier: Option<&str>,
    seq: u64,
) -> Result<(), String> {
    let s = js
        .get_stream_no_info(stream::EVENTS)
        .await
        .map_err(|e| format!("stream {}: {e}", stream::EVENTS))?;
    // Read from the stream's leader (STREAM.MSG.GET), not by direct get: on a cluster any
    // replica answers a direct get, and one still catching up would say "not found" for a copy
    // the others hold, which would then never be erased.
    match s.get_raw_message(seq).await {
        Ok(msg) => {
            let agency = subject::parse_event_subject(&msg.subject).map(|(a, _)| a);
            let id = crate::check::event_id_of(&msg.payload);
            let copy = match subject::parse_sync_subject(&msg.subject) {
                // A sync body that carries the event's personal data (the one it came from, or a
                // later one about its dossier): it names the dossier. The whole body goes.
                Some(sync_agency) => {
                    sync_agency == event.agency
                        && dossier.is_some_and(|d| names_dossier(&msg.payload, d))
                }
                None => {
                    agency.as_deref() == Some(event.agency.as_str())
                        && id.as_deref() == Some(event.id.as_str())
                }
            };
            if !copy {
                tracing::warn!(
                    seq,
                    subject = %msg.subject,
                    "EVENTS message {seq} is no longer a copy of the redacted event (its seq was reused after nats-server lost writes): left alone"
                );
                return Ok(());
            }
        }
        Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
            return Ok(());
        }
        Err(e) => return Err(format!("reading EVENTS message {seq}: {e}")),
    }
    erase_message(js, stream::EVENTS, seq).await
}

/// Whether a sync body lists `dossier` (a record's `MaHoSo`, a string or a number).
fn names_dossier(body: &[u8], dossier: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        data: Vec<serde_json::Value>,
    }
    serde_json::from_slice::<Body>(body).is_ok_and(|b| {
        b.data.iter().any(|r| match r.get("MaHoSo") {
            Some(serde_json::Value::String(s)) => s.trim() == dossier,
            Some(serde_json::Value::Number(n)) => n.to_string() == dossier,
            _ => false,
        })
    })
}

/// The REJECTED seqs (and the EVENTS seqs they were copied from) of `event`'s rejections.
async fn rejected_copies(
    js: &jetstream::Context,
    event: &EventKey,
) -> Result<Vec<(u64, Option<u64>)>, String> {
    let rejected = js
        .get_stream(stream::REJECTED)
        .await
        .map_err(|e| format!("stream {}: {e}", stream::REJECTED))?;
    // The leader's last seq as the scan starts: every copy to find is at or below it.
    let last = rejected.cached_info().state.last_sequence;
    let filter = subject::agency_rejected_wildcard(&event.agency);
    let consumer = rejected
        .create_consumer(pull::Config {
            filter_subject: filter.clone(),
            headers_only: true,
            ack_policy: jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("scanning {}: {e}", stream::REJECTED))?;
    let mut pending = consumer.cached_info().num_pending;
    let mut found = Vec::new();
    // The last message the scan saw (every one matches the filter).
    let mut seen = 0;
    while pending > 0 {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|e| format!("scanning {}: {e}", stream::REJECTED))?;
        let mut got = 0;
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| format!("scanning {}: {e}", stream::REJECTED))?;
            got += 1;
            let info = msg.info().map_err(|e| e.to_string())?;
            pending = info.pending;
            let stream_seq = info.stream_sequence;
            seen = seen.max(stream_seq);
            let headers = msg.headers.as_ref();
            let id = headers.and_then(|h| h.get(header::EVENT_ID));
            if id.map(|v| v.as_str()) == Some(event.id.as_str()) {
                let source = headers
                    .and_then(|h| h.get(header::STREAM_SEQ))
                    .and_then(|v| v.as_str().parse().ok());
                found.push((stream_seq, source));
            }
        }
        if got == 0 {
            // Not the end (messages are pending): a scan that came back short must not count as
            // complete, or the mark would be cleared with copies left. Retried later.
            let _ = rejected.delete_consumer(&consumer.cached_info().name).await;
            return Err(format!(
                "scanning {} timed out with {pending} messages left",
                stream::REJECTED
            ));
        }
    }
    let _ = rejected.delete_consumer(&consumer.cached_info().name).await;
    // On a cluster the consumer lives on one replica, which may still be catching up after a
    // restart: it then ends its scan short of the leader's messages. Complete only if the
    // leader holds no message of the agency's after the last one seen, up to `last`.
    match rejected
        .get_first_raw_message_by_subject(&filter, seen + 1)
        .await
    {
        Ok(msg) if msg.sequence <= last => Err(format!(
            "scanning {} ended at message {seen}, but the stream's leader holds message {} of {filter} (the scan ran on a replica still catching up); retried later",
            stream::REJECTED,
            msg.sequence
        )),
        Ok(_) => Ok(found),
        Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
            Ok(found)
        }
        Err(e) => Err(format!(
            "checking the scan of {} with its leader: {e}",
            stream::REJECTED
        )),
    }
}

/// Why copies could not be erased yet.
#[derive(Debug)]
pub enum EraseError {
    /// A copy lies beyond what this ledger (or a replica) has stored a cursor past.
    NotYet(String),
    /// NATS failed.
    Nats(String),
}

/// Erases every copy NATS holds of `event`: the recorded EVENTS seqs `copies` and its REJECTED
/// copies. Returns how many messages were erased (or were already gone).
///
/// EVENTS messages above `read_up_to` (the EVENTS cursor the ledger stored, or a replica's if
/// lower: `bound` says which) are not erased yet: the ledger (or that replica) reads them again
/// after a restart, and a hole there would look like data loss.
/// Then the event stays marked and this is an error (retried at the next pass).
pub async fn erase_copies(
    js: &jetstream::Context,
    event: &EventKey,
    dossier: Option<&str>,
    copies: &[u64],
    read_up_to: u64,
    bound: &str,
) -> Result<usize, EraseError> {
    let mut events: Vec<u64> = copies.to_vec();
    let rejected = rejected_copies(js, event).await.map_err(EraseError::Nats)?;
    events.extend(rejected.iter().filter_map(|(_, source)| *source));
    events.sort_unstable();
    events.dedup();
    if let Some(seq) = events.iter().find(|&&s| s > read_up_to) {
        return Err(EraseError::NotYet(format!(
            "EVENTS message {seq} is beyond {bound} ({read_up_to}): erased once it has passed it"
        )));
    }
    // Every copy is tried even if one fails: a REJECTED copy erased now is not found by the
    // next scan, so its EVENTS source must not wait behind another copy's failure. The event
    // stays marked (and is retried) unless all went.
    let mut erased = 0;
    let mut first_error = None;
    for (name, seq) in events
        .iter()
        .map(|&s| (stream::EVENTS, s))
        .chain(rejected.iter().map(|&(s, _)| (stream::REJECTED, s)))
    {
        let erased_now = if name == stream::EVENTS {
            erase_event_copy(js, event, dossier, seq).await
        } else {
            erase_message(js, name, seq).await
        };
        match erased_now {
            Ok(()) => erased += 1,
            Err(e) => {
                tracing::warn!(error = %e, "erasing a copy of a redacted event failed; retrying later");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        None => Ok(erased),
        Some(e) => Err(EraseError::Nats(e)),
    }
}
