//! Reading COMMITTED: one message per commit of the ledger (or part of one), each carrying
//! entries `Socai-Seq .. Socai-Seq + Socai-Count` as a C2SP entry bundle (every entry as a
//! 2-byte big-endian length, then its bytes). A message without `Socai-Count` is a single entry
//! whose payload is the entry itself (what socai wrote before batches; such messages come first
//! in a stream that holds both). Messages are consecutive: the next one starts at this one's
//! `Socai-Seq + Socai-Count`, so an entry's stream seq is found by a binary search over the
//! stream's seqs ([`locate`]), not computed.
//!
//! Workers may only ask for COMMITTED's stream info and direct gets (`deploy/nats/users.conf`,
//! PROJECTORS): everything here is made of those two requests.

use async_nats::jetstream;
use socai_client::js::{BatchRequest, StoredMessage, direct_get_batch};
use socai_wire::header::{COUNT as H_COUNT, SEQ as H_SEQ};
use socai_wire::stream::COMMITTED;

use crate::ProjectorError;

/// The entries a message of COMMITTED carries: `first .. first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: u64,
    pub count: u64,
}

impl Span {
    /// The seq of the entry after the message's last.
    pub fn end(&self) -> u64 {
        self.first + self.count
    }
    pub fn contains(&self, seq: u64) -> bool {
        self.first <= seq && seq < self.end()
    }
}

/// The entries `msg` says it carries, from its headers alone (`Socai-Seq`, and `Socai-Count`,
/// 1 when absent).
pub fn message_span(msg: &StoredMessage) -> Result<Span, ProjectorError> {
    let first = msg
        .header(H_SEQ)
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| {
            ProjectorError::Diverged(format!(
                "message {} of COMMITTED has no {H_SEQ} header: only the ledger may publish there",
                msg.seq
            ))
        })?;
    let count = match msg.header(H_COUNT) {
        None => 1,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n >= 1 && first.checked_add(n).is_some() => n,
            _ => {
                return Err(ProjectorError::Diverged(format!(
                    "message {} of COMMITTED has a bad {H_COUNT} header {v:?} (a count of entries, at least 1): only the ledger may publish there",
                    msg.seq
                )));
            }
        },
    };
    Ok(Span { first, count })
}

/// The entries of `msg`, with its span: the payload itself for a message without
/// `Socai-Count`, else the entry bundle split, which must hold exactly `Socai-Count` entries.
pub fn message_entries(msg: &StoredMessage) -> Result<(Span, Vec<&[u8]>), ProjectorError> {
    let span = message_span(msg)?;
    if msg.header(H_COUNT).is_none() {
        return Ok((span, vec![&msg.payload[..]]));
    }
    let malformed = |why: String| {
        ProjectorError::Diverged(format!(
            "message {} of COMMITTED (entries {} to {}) is not a well-formed entry bundle: {why}; only the ledger may publish there",
            msg.seq,
            span.first,
            span.end() - 1
        ))
    };
    let entries = socai_chain::tiles::split_entry_bundle(&msg.payload)
        .map_err(|e| malformed(e.to_string()))?;
    if entries.len() as u64 != span.count {
        return Err(malformed(format!(
            "it holds {} entries, its {H_COUNT} header says {}",
            entries.len(),
            span.count
        )));
    }
    Ok((span, entries))
}

/// Where reading COMMITTED starts for a fold at `tree_size` (entry `tree_size` is the next to
/// apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// The stream seq of the message holding entry `tree_size`; or the seq after the stream's
    /// last message when COMMITTED holds no entry at or after it yet; or the stream's first
    /// message when the fold is empty or the stream starts after the entry (the fold then
    /// reports the gap).
    pub stream_seq: u64,
    /// The entries COMMITTED holds (the seq after the last message's last entry; 0 when empty).
    pub committed_size: u64,
    /// Messages read to find it (the binary search's direct gets).
    pub reads: u32,
}

/// The COMMITTED stream's first and last seqs and its message count (`STREAM.INFO`).
async fn stream_bounds(js: &jetstream::Context) -> Result<(u64, u64, u64), ProjectorError> {
    let stream = js
        .get_stream(COMMITTED)
        .await
        .map_err(|e| ProjectorError::Nats(format!("reading stream {COMMITTED}'s info: {e}")))?;
    let state = &stream.cached_info().state;
    Ok((state.first_sequence, state.last_sequence, state.messages))
}

/// The span of COMMITTED's message at stream seq `seq`, one direct get.
///
/// Stream info comes from the stream's leader, but on a cluster any replica may answer a direct
/// get (nats-server prefers one on the server the client is connected to), and a replica back
/// from a restart answers while it is still catching up. So the request is a batch of one from
/// `seq` on: a replica that answers with a later message lacks `seq` although it holds what
/// follows (a gap: the message was deleted, an error naming it); one that answers with nothing
/// does not hold `seq` yet (behind its leader, worth retrying).
async fn span_at(
    js: &jetstream::Context,
    seq: u64,
    bounds: (u64, u64),
) -> Result<Span, ProjectorError> {
    let request = BatchRequest {
        seq,
        batch: 1,
        ..Default::default()
    };
    let batch = direct_get_batch(js, COMMITTED, &request)
        .await
        .map_err(|e| ProjectorError::Nats(format!("reading COMMITTED's message {seq}: {e}")))?;
    match batch.messages.first() {
        Some(msg) if msg.seq == seq => message_span(msg),
        Some(msg) => Err(ProjectorError::Diverged(format!(
            "COMMITTED has no message at stream seq {seq} (the next is {}), although its messages run from {} to {}: messages were deleted from the stream; restore COMMITTED from the ledger (purge it, `nats stream purge COMMITTED` as the NATS admin, once the ledger's /readyz shows committed_stalled: the ledger then publishes every entry again), then restart the worker",
            msg.seq, bounds.0, bounds.1
        ))),
        None => Err(ProjectorError::Nats(format!(
            "the replica of COMMITTED that answered does not hold message {seq} yet (its leader's messages run from {} to {}): it is catching up after a restart or a partition; if this goes on for minutes, the message was deleted: restore COMMITTED from the ledger (purge it, `nats stream purge COMMITTED` as the NATS admin, once the ledger's /readyz shows committed_stalled: the ledger then publishes every entry again)",
            bounds.0, bounds.1
        ))),
    }
}

/// The entries COMMITTED holds: the seq after its last message's last entry (0 when empty).
/// One stream info and at most one direct get.
pub async fn committed_size(js: &jetstream::Context) -> Result<u64, ProjectorError> {
    let (first, last, messages) = stream_bounds(js).await?;
    if messages == 0 {
        return Ok(0);
    }
    Ok(span_at(js, last, (first, last)).await?.end())
}

/// Finds where a fold at `tree_size` resumes COMMITTED (see [`Located`]): a binary search over
/// the stream's seqs by direct gets of single messages, O(log n) of them. Every message carries
/// at least one entry, so the message holding entry `tree_size` is at most `tree_size - first
/// entry` messages after the first one: that bound is tried first, and it is the answer at once
/// on a stream of single-entry messages.
///
/// Errors: [`ProjectorError::Nats`] when the stream cannot be read (yet), worth retrying;
/// [`ProjectorError::Diverged`] when a message is missing or not the ledger's.
pub async fn locate(js: &jetstream::Context, tree_size: u64) -> Result<Located, ProjectorError> {
    let (first, last, messages) = stream_bounds(js).await?;
    if messages == 0 || last < first {
        return Ok(Located {
            stream_seq: last + 1,
            committed_size: 0,
            reads: 0,
        });
    }
    let bounds = (first, last);
    let mut reads = 1;
    let last_span = span_at(js, last, bounds).await?;
    let committed_size = last_span.end();
    let found = |stream_seq: u64, reads: u32| {
        Ok(Located {
            stream_seq,
            committed_size,
            reads,
        })
    };
    if tree_size >= last_span.first {
        // In the last message, or after it.
        return found(
            if tree_size < committed_size {
                last
            } else {
                last + 1
            },
            reads,
        );
    }
    if tree_size == 0 || first == last {
        return found(first, reads);
    }
    reads += 1;
    let first_span = span_at(js, first, bounds).await?;
    if tree_size < first_span.end() {
        // In the first message, or before the stream's first entry (the fold reports the gap).
        return found(first, reads);
    }
    // Invariant: message `lo` starts at or before the entry, message `hi` after it. The first
    // probe is the bound, then the middle.
    let (mut lo, mut lo_span, mut hi) = (first, first_span, last);
    let mut probe = first.saturating_add(tree_size - first_span.first);
    while hi - lo > 1 {
        if probe <= lo || probe >= hi {
            probe = lo + (hi - lo) / 2;
        }
        reads += 1;
        let s = span_at(js, probe, bounds).await?;
        if s.contains(tree_size) {
            return found(probe, reads);
        }
        if s.first <= tree_size {
            (lo, lo_span) = (probe, s);
        } else {
            hi = probe;
        }
        probe = 0;
    }
    // Message `lo` holds the entry, or the stream skips it and the next message starts after
    // it (the fold reports the gap).
    found(if lo_span.contains(tree_size) { lo } else { hi }, reads)
}
