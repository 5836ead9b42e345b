//! Ledger replicas: a second ledger on another machine that reads the same EVENTS and must
//! hold byte-identical entries (`socai serve --replica-of ORIGIN`).
//!
//! A replica runs the same writer as the primary on its own data dir (a copy of the primary's
//! keys: the salt key makes the personal-data commitments, and so the entries, identical; the
//! signing key lets it be promoted). It sends nothing agencies or workers read: no receipts, no
//! REJECTED copies, no COMMITTED, no checkpoints on `dvc.ledger.checkpoint`, no erasure on NATS.
//! Redactions reach it as they reach the primary, in EVENTS (`dvc.ledger.redactions`), so both
//! apply each at the same place.
//!
//! Here:
//! - [`check_primary`] (on a replica) reads every checkpoint the primary published on
//!   CHECKPOINTS, verifies its signature, and compares its root with this ledger's root at the
//!   same size once this ledger has reached it. A different root raises the alarm (log,
//!   `/readyz`, Prometheus, and a file in the data dir that refuses promotion) naming the first
//!   differing size, found by comparing this ledger's entries with the primary's on COMMITTED
//!   between the last size that agreed and the one that did not.
//! - It also reports this replica's state every [`REPORT_EVERY`] on
//!   `dvc.ledger.replicas.<name>` ([`ReplicaReport`]).
//! - [`listen`] (on the primary) keeps the latest report of each replica: the primary erases an
//!   EVENTS copy of a redacted event only once every replica it was told about
//!   (`socai serve --replica NAME`) has stored a cursor past it, or that replica would find a
//!   hole where the event was and its entries would differ.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use socai_chain::checkpoint::CheckpointVerifier;
use socai_chain::{Hash, tiles::split_entry_bundle};
use socai_store::{LedgerReader, SledStorage, Storage};
use socai_wire::header::SEQ as H_SEQ;
use socai_wire::stream::{CHECKPOINTS, COMMITTED};
use socai_wire::subject::{REPLICAS_PREFIX, replica_subject};
use tokio::sync::watch;

use crate::Counters;

/// How often a replica reports its state (and looks for new checkpoints of the primary).
pub const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Checkpoints read from CHECKPOINTS per round.
const ROUND_MAX: u64 = 1000;

/// What makes a ledger a replica.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Its name on `dvc.ledger.replicas.<name>` (and in the primary's `--replica NAME`).
    pub name: String,
    /// The origin (log name) of the primary's checkpoints.
    pub origin: String,
    /// A file written when the replica diverges: its presence refuses promotion.
    pub diverged_marker: Option<PathBuf>,
}

/// A replica's state, as it reports it on `dvc.ledger.replicas.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaReport {
    pub replica: String,
    pub origin: String,
    /// Entries in the replica's ledger.
    pub size: u64,
    /// Its root at `size`, hex.
    pub root: String,
    /// The EVENTS cursor the replica has stored: it has read every EVENTS message up to it.
    pub events_cursor: u64,
    /// The largest size of a primary checkpoint whose root this replica has the same.
    pub agreed_size: u64,
    /// Checkpoints of the primary compared so far (since the replica started).
    pub checked: u64,
    /// The primary's largest checkpoint size seen.
    pub primary_size: u64,
    /// The first size at which this replica's tree differs from the primary's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_at: Option<u64>,
    /// What differs, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence: Option<String>,
}

/// Replica state shared with the HTTP API (`/readyz`, `/metrics`).
#[derive(Debug, Default)]
pub struct ReplicaBoard {
    /// On a replica: its own latest state.
    pub own: Mutex<Option<ReplicaReport>>,
    /// On a primary: the replicas it waits for before erasing EVENTS copies.
    pub expected: Mutex<Vec<String>>,
    /// On a primary: each replica's latest report, by name.
    pub reports: Mutex<BTreeMap<String, ReplicaReport>>,
}

impl ReplicaBoard {
    /// This replica's divergence alarm, if raised.
    pub fn divergence(&self) -> Option<(u64, String)> {
        let own = self.own.lock().ok()?;
        let own = own.as_ref()?;
        Some((own.diverged_at?, own.divergence.clone()?))
    }

    /// The EVENTS seq up to which every expected replica has stored its cursor, with the name
    /// of the replica furthest behind, or why none can be given yet (a replica that has not
    /// reported).
    pub fn erasure_floor(&self) -> Result<Option<(u64, String)>, String> {
        let expected = self.expected.lock().map_err(|e| e.to_string())?.clone();
        if expected.is_empty() {
            return Ok(None);
        }
        let reports = self.reports.lock().map_err(|e| e.to_string())?;
        let mut floor: Option<(u64, String)> = None;
        for name in &expected {
            match reports.get(name) {
                Some(r) if floor.as_ref().is_none_or(|(f, _)| r.events_cursor < *f) => {
                    floor = Some((r.events_cursor, name.clone()));
                }
                Some(_) => {}
                None => {
                    return Err(format!(
                        "replica {name} has not reported on {} since this ledger started (is it running? `socai serve --replica-of` with --replica-name {name})",
                        replica_subject(name)
                    ));
                }
            }
        }
        Ok(floor)
    }
}

/// The primary side: keeps each replica's latest report (only those of this log).
pub(crate) async fn listen(client: async_nats::Client, origin: String, counters: Arc<Counters>) {
    let mut sub = loop {
        match client.subscribe(format!("{REPLICAS_PREFIX}.*")).await {
            Ok(sub) => break sub,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to the replicas' reports; trying again");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    while let Some(msg) = sub.next().await {
        let Ok(report) = serde_json::from_slice::<ReplicaReport>(&msg.payload) else {
            tracing::warn!(subject = %msg.subject, "a replica report that does not parse: ignored");
            continue;
        };
        if report.origin != origin {
            continue;
        }
        let expected = counters
            .replicas
            .expected
            .lock()
            .map(|e| e.contains(&report.replica))
            .unwrap_or(true);
        let mut reports = counters.replicas.reports.lock().expect("replica reports");
        if !expected && !reports.contains_key(&report.replica) {
            tracing::warn!(
                replica = %report.replica,
                "a ledger replica reports that this ledger was not told about: EVENTS copies of redacted events will not wait for it, and it will find holes where they were; add it to [ingest] replicas (or --replica {})",
                report.replica
            );
        }
        let before = reports.get(&report.replica).and_then(|r| r.diverged_at);
        if report.diverged_at.is_some() && before.is_none() {
            tracing::error!(
                replica = %report.replica,
                first_differing_size = report.diverged_at,
                divergence = report.divergence.as_deref().unwrap_or(""),
                "a ledger replica's entries differ from this ledger's: find out which is wrong before anything else (README, \"Ledger replicas\")"
            );
        }
        reports.insert(report.replica.clone(), report);
    }
}

/// A checkpoint of the primary: its size and root.
type Seen = BTreeMap<u64, Hash>;

/// The replica side: compares the primary's checkpoints with this ledger and reports, until
/// the task is dropped.
pub(crate) async fn check_primary(
    js: jetstream::Context,
    reader: LedgerReader<SledStorage>,
    config: ReplicaConfig,
    counters: Arc<Counters>,
    mut head: watch::Receiver<u64>,
) {
    let mut state = Checker {
        js,
        verifier: reader.verifier().clone(),
        reader,
        config,
        counters,
        next: 0,
        pending: Seen::new(),
        agreed: 0,
        checked: 0,
        primary_size: 0,
        diverged: None,
    };
    // A divergence found before a restart stays: entries are never rewritten.
    if let Some(marker) = &state.config.diverged_marker
        && let Ok(text) = std::fs::read_to_string(marker)
    {
        let at = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(1);
        state.diverged = Some((at, text.lines().skip(1).collect::<Vec<_>>().join(" ")));
    }
    let mut tick = tokio::time::interval(REPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The same reason is logged once, not every round.
    let mut failing: Option<String> = None;
    loop {
        // New checkpoints are read and the report sent on the timer; a commit only triggers
        // the comparison of what is pending (no NATS request per commit).
        let ticked = tokio::select! {
            _ = tick.tick() => true,
            changed = head.changed() => {
                if changed.is_err() {
                    return;
                }
                false
            }
        };
        let mut result = Ok(());
        if ticked {
            result = state.read_checkpoints().await;
        }
        if result.is_ok() {
            result = state.compare().await;
        }
        match result {
            Err(e) if failing.as_ref() != Some(&e) => {
                tracing::warn!(error = %e, "cannot compare with the primary's checkpoints yet; trying again");
                failing = Some(e);
            }
            Err(_) => {}
            // Only a full round (checkpoints read too) says the trouble is over.
            Ok(()) if ticked => failing = None,
            Ok(()) => {}
        }
        if ticked {
            state.report().await;
        }
    }
}

struct Checker {
    js: jetstream::Context,
    reader: LedgerReader<SledStorage>,
    verifier: CheckpointVerifier,
    config: ReplicaConfig,
    counters: Arc<Counters>,
    /// The next CHECKPOINTS stream seq to read (0: not started; then the newest
    /// [`ROUND_MAX`] are read).
    next: u64,
    /// The primary's checkpoints this ledger has not reached yet.
    pending: Seen,
    agreed: u64,
    checked: u64,
    primary_size: u64,
    /// (first differing size, what differs).
    diverged: Option<(u64, String)>,
}

/// Stream `name`, its first and last seq.
async fn open_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<(jetstream::stream::Stream, u64, u64), String> {
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|e| format!("stream {name}: {e}"))?;
    let state = &stream
        .info()
        .await
        .map_err(|e| format!("stream {name}: {e}"))?
        .state;
    let (first, last) = (state.first_sequence, state.last_sequence);
    Ok((stream, first, last))
}

impl Checker {
    /// Reads the checkpoints the primary published since the last round.
    async fn read_checkpoints(&mut self) -> Result<(), String> {
        let (_, first, last) = open_stream(&self.js, CHECKPOINTS).await?;
        if last == 0 {
            return Ok(()); // nothing published yet
        }
        if self.next == 0 {
            // At start, the newest checkpoints only: roots are cumulative, so one that agrees
            // vouches for every entry below it.
            self.next = last.saturating_sub(ROUND_MAX - 1);
        }
        self.next = self.next.max(first);
        let to = last.min(self.next.saturating_add(ROUND_MAX - 1));
        if self.next > to {
            return Ok(());
        }
        // One batch of at most ROUND_MAX from `next`: any replica of the stream may answer, and
        // one still catching up holds only a prefix. The seqs it passes over before a message it
        // returns were deleted; those past the last one it returns are asked again next round,
        // never taken for gone.
        let request = socai_client::js::BatchRequest {
            seq: self.next,
            batch: (to - self.next + 1) as usize,
            ..Default::default()
        };
        let batch = socai_client::js::direct_get_batch(&self.js, CHECKPOINTS, &request)
            .await
            .map_err(|e| format!("reading {CHECKPOINTS} from message {}: {e}", self.next))?;
        for msg in &batch.messages {
            let text = String::from_utf8_lossy(&msg.payload);
            match self.verifier.verify(&text) {
                Ok(signed) => {
                    let c = signed.checkpoint;
                    self.primary_size = self.primary_size.max(c.size);
                    // Once diverged, nothing more is compared.
                    if self.diverged.is_none() {
                        self.pending.insert(c.size, c.root);
                    }
                }
                Err(e) => {
                    // Not the log's key: another log's checkpoints, or a forgery. Not a
                    // divergence of this replica, but an operator must look.
                    tracing::error!(
                        stream_seq = msg.seq,
                        error = %e,
                        origin = %self.config.origin,
                        "a message on {CHECKPOINTS} does not verify with this ledger's key: is this replica's data dir a copy of the primary's keys, and only the primary publishing to dvc.ledger.checkpoint?"
                    );
                }
            }
            self.next = self.next.max(msg.seq + 1);
        }
        Ok(())
    }

    /// Compares every pending checkpoint this ledger has reached.
    async fn compare(&mut self) -> Result<(), String> {
        let head = self.reader.head().size;
        while let Some((&size, &root)) = self.pending.first_key_value() {
            if size > head || self.diverged.is_some() {
                break;
            }
            let reader = self.reader.clone();
            let ours = tokio::task::spawn_blocking(move || reader.tree_root(size))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("this ledger's root at {size}: {e}"))?;
            self.pending.pop_first();
            self.checked += 1;
            if ours == root {
                self.agreed = self.agreed.max(size);
                continue;
            }
            let from = self.agreed;
            let (at, what) = match self.first_difference(from, size).await {
                Ok(Some((seq, why))) => (seq + 1, why),
                Ok(None) => (
                    size,
                    format!(
                        "the roots at {size} differ but every entry from {from} to {size} on COMMITTED equals this ledger's"
                    ),
                ),
                Err(e) => (
                    size,
                    format!(
                        "the first differing entry is between seq {from} and {} (COMMITTED cannot tell which: {e}), so the first differing size is at most {size}",
                        size - 1
                    ),
                ),
            };
            let message = format!(
                "this replica's tree differs from the primary's ({}) at size {size}: primary root {}, this replica's {}; first differing size {at}: {what}",
                self.config.origin,
                root.to_hex(),
                ours.to_hex()
            );
            tracing::error!(
                first_differing_size = at,
                "{message}. Do not promote this replica; find out which ledger is wrong (README, \"Ledger replicas\")"
            );
            if let Some(marker) = &self.config.diverged_marker
                && let Err(e) = write_durable(marker, &format!("{at}\n{message}\n"))
            {
                tracing::error!(error = %e, path = %marker.display(), "cannot record the divergence in the data dir");
            }
            self.diverged = Some((at, message));
        }
        Ok(())
    }

    /// The first seq below `to` whose entry on COMMITTED differs from this ledger's, with both
    /// entries' leaf hashes; `None` if none does. Each entry names its predecessor's leaf hash
    /// (`prev`), so an entry that is the same implies every one before it is: "differs" only
    /// switches once along the seqs, and a binary search over COMMITTED's messages (by their last
    /// entry) finds the message, then the entry, in O(log n) reads. `from` (a size known to
    /// agree) only words the answer when COMMITTED no longer holds the start.
    async fn first_difference(&self, from: u64, to: u64) -> Result<Option<(u64, String)>, String> {
        let (stream, first, last) = open_stream(&self.js, COMMITTED).await?;
        if first == 0 || last < first {
            return Err(format!("{COMMITTED} is empty"));
        }
        // A message's first entry seq and its entries.
        let read = |stream_seq: u64| {
            let stream = &stream;
            async move {
                let msg = stream
                    .direct_get(stream_seq)
                    .await
                    .map_err(|e| format!("{COMMITTED} message {stream_seq}: {e}"))?;
                let start = msg
                    .headers
                    .get(H_SEQ)
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .ok_or_else(|| format!("{COMMITTED} message {stream_seq} has no {H_SEQ}"))?;
                let entries: Vec<Vec<u8>> = split_entry_bundle(&msg.payload)
                    .map_err(|e| format!("{COMMITTED} message {stream_seq}: {e}"))?
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect();
                if entries.is_empty() {
                    return Err(format!("{COMMITTED} message {stream_seq} holds no entry"));
                }
                Ok::<_, String>((start, entries))
            }
        };
        // The first entry (seq, theirs) of `entries` from `start` that differs from ours, or
        // lies at or beyond `to`.
        let differing =
            |start: u64, entries: &[Vec<u8>]| -> Result<Option<(u64, Vec<u8>)>, String> {
                for (k, theirs) in entries.iter().enumerate() {
                    let seq = start + k as u64;
                    if seq >= to {
                        return Ok(Some((seq, theirs.clone())));
                    }
                    let ours = self
                        .reader
                        .storage()
                        .entry(seq)
                        .map_err(|e| e.to_string())?;
                    if ours.as_deref() != Some(theirs.as_slice()) {
                        return Ok(Some((seq, theirs.clone())));
                    }
                }
                Ok(None)
            };
        // Binary search for the first message whose last entry differs (or reaches `to`).
        let (mut lo, mut hi) = (first, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (start, entries) = read(mid).await?;
            let last_seq = start + (entries.len() as u64).saturating_sub(1);
            let same = match entries.last() {
                Some(theirs) if last_seq < to => {
                    self.reader
                        .storage()
                        .entry(last_seq)
                        .map_err(|e| e.to_string())?
                        .as_deref()
                        == Some(theirs.as_slice())
                }
                _ => false,
            };
            if same {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo > last {
            // Every message agrees: COMMITTED ends before the roots' difference.
            return Err(format!(
                "{COMMITTED} holds no entry that differs (it ends before entry {})",
                to - 1
            ));
        }
        let (start, entries) = read(lo).await?;
        let Some((seq, theirs)) = differing(start, &entries)? else {
            return Ok(None);
        };
        if seq >= to {
            return Err(format!(
                "no entry below {to} on {COMMITTED} differs, from its first held entry on"
            ));
        }
        if lo == first && seq == start && start > from {
            return Err(format!(
                "{COMMITTED} starts at entry {start}, which already differs; it no longer holds entries {from}..{start}"
            ));
        }
        let ours = self
            .reader
            .storage()
            .entry(seq)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        Ok(Some((
            seq,
            format!(
                "entry {seq}: the primary's has leaf hash {}, this replica's {}",
                socai_chain::hash::leaf_hash(&theirs).to_hex(),
                socai_chain::hash::leaf_hash(&ours).to_hex()
            ),
        )))
    }

    /// Publishes this replica's state and keeps it for `/readyz` and `/metrics`.
    async fn report(&self) {
        let size = self.reader.head().size;
        let reader = self.reader.clone();
        let root = tokio::task::spawn_blocking(move || reader.tree_root(size))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let report = ReplicaReport {
            replica: self.config.name.clone(),
            origin: self.config.origin.clone(),
            size,
            root: root.to_hex(),
            events_cursor: self
                .reader
                .storage()
                .source_cursor()
                .ok()
                .flatten()
                .unwrap_or(0),
            agreed_size: self.agreed,
            checked: self.checked,
            primary_size: self.primary_size,
            diverged_at: self.diverged.as_ref().map(|d| d.0),
            divergence: self.diverged.as_ref().map(|d| d.1.clone()),
        };
        if let Ok(mut own) = self.counters.replicas.own.lock() {
            *own = Some(report.clone());
        }
        let body = serde_json::to_vec(&report).expect("JSON");
        if let Err(e) = self
            .js
            .client()
            .publish(replica_subject(&self.config.name), body.into())
            .await
        {
            tracing::debug!(error = %e, "cannot publish this replica's report");
        }
    }
}

/// Writes `text` to `path` durably (file, then its directory): the replica's marker files.
pub fn write_durable(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
