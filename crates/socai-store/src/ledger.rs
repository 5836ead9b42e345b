//! The ledger: one writer owns the chain head and appends batches of validated events as single
//! atomic, fsynced commits; readers look entries up, build proofs, export bundles and verify.

use crate::reader::{LedgerReader, View};
use crate::storage::{
    CommitBatch, EventKey, Head, IdRecord, PersonalRecord, Storage, StorageError, StoredHashes,
};
use socai_chain::checkpoint::{
    Checkpoint, CheckpointError, CheckpointSigner, CheckpointVerifier, SignedCheckpoint,
};
use socai_chain::entry::{Entry, personal_commitment, personal_salt};
use socai_chain::merkle::{self, CompactRange, MerkleError};
use socai_chain::{Hash, leaf_hash};
use socai_model::Event;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("merkle: {0}")]
    Merkle(#[from] MerkleError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("no event with id {0:?} in the ledger")]
    UnknownId(String),
    #[error(
        "event id {id:?} was published by {} agencies ({}); name one as AGENCY/ID, e.g. {}/{id}",
        agencies.len(), agencies.join(", "), agencies[0]
    )]
    AmbiguousId { id: String, agencies: Vec<String> },
    #[error("invalid redaction: {0}")]
    InvalidRedaction(String),
    #[error("seq {seq} is beyond the ledger's {size} entries")]
    UnknownSeq { seq: u64, size: u64 },
    #[error(
        "no signed checkpoint yet; run `socai checkpoint` (a running `socai serve` signs one within [ingest] checkpoint_interval_s)"
    )]
    NoCheckpoint,
    #[error(
        "seq {seq} is not covered by a signed checkpoint (the latest covers {checkpoint_size} entries); run `socai checkpoint` (a running `socai serve` signs one within [ingest] checkpoint_interval_s)"
    )]
    NotCovered { seq: u64, checkpoint_size: u64 },
    #[error(
        "no signed checkpoint at tree size {0}; sizes with checkpoints are listed by `socai checkpoint --list`"
    )]
    NoCheckpointAt(u64),
    #[error("invalid range: {0}")]
    Range(String),
    #[error("event {id:?} (seq {seq}) has no personal data to redact{}", if *already { " (it was already redacted)" } else { "" })]
    NothingToRedact { id: String, seq: u64, already: bool },
    #[error(
        "ledger invariant violated: {0}; stop writing and run `socai verify` (while `socai serve` runs: `socai --api URL verify --vkey checkpoint.vkey`)"
    )]
    Invariant(String),
    #[error(
        "an earlier commit failed, so this writer stopped; restart it to reopen the ledger from disk"
    )]
    Poisoned,
    /// Not possible now (NATS did not answer, or this ledger is a replica); the message says
    /// what to do.
    #[error("{0}")]
    Unavailable(String),
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// What happened to one event of an appended batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AppendOutcome {
    Committed {
        seq: u64,
    },
    /// Same id and same content as an already committed event: nothing written.
    Duplicate {
        seq: u64,
    },
    /// Same id, different content: rejected, nothing written for this event.
    Conflict {
        existing_seq: u64,
    },
    /// Its ledger entry would be larger than an entry bundle can carry
    /// ([`socai_chain::tiles::MAX_ENTRY_BYTES`]): rejected, nothing written for this event.
    Oversized {
        entry_bytes: usize,
    },
}

impl AppendOutcome {
    /// Why an event with this outcome was refused, if it was (`Committed` and `Duplicate` are
    /// accepted).
    pub fn refusal(&self, id: &str) -> Option<socai_model::Rejection> {
        use socai_model::{ErrorCode, Rejection};
        match self {
            AppendOutcome::Committed { .. } | AppendOutcome::Duplicate { .. } => None,
            AppendOutcome::Conflict { existing_seq } => Some(Rejection::new(
                ErrorCode::Conflict,
                "/id",
                format!(
                    "event id {id:?} is already committed at seq {existing_seq} with different content"
                ),
            )),
            AppendOutcome::Oversized { entry_bytes } => Some(Rejection::new(
                ErrorCode::Oversized,
                "",
                format!(
                    "its ledger entry could be {entry_bytes} bytes, more than the {} an entry bundle (C2SP tlog-tiles) can hold; make `data` smaller",
                    socai_chain::tiles::MAX_ENTRY_BYTES
                ),
            )),
        }
    }
}

/// Whether the ledger refuses `event` as `oversized` (its entry could exceed the largest entry
/// a tile may hold), as [`Ledger::classify`] says, without the ledger's keys: the bound depends
/// on the commitment's presence only.
pub fn entry_too_large(event: &Event) -> bool {
    let commitment = event.personal.as_ref().map(|_| Hash::ZERO);
    entry_size_bound(&public_canonical(event), commitment.as_ref())
        > socai_chain::tiles::MAX_ENTRY_BYTES
}

/// An upper bound of the entry size of an event with this public canonical JSON and personal
/// commitment: the entry's own fields at their longest.
fn entry_size_bound(public: &[u8], commitment: Option<&Hash>) -> usize {
    // An entry holds the event's bytes as they are: the bound is their length and the rest at
    // its longest, measured once (without, and with, a commitment).
    static AROUND: std::sync::OnceLock<[usize; 2]> = std::sync::OnceLock::new();
    let around = AROUND.get_or_init(|| [None, Some(&Hash::ZERO)].map(|c| longest_entry(b"", c)));
    public.len() + around[usize::from(commitment.is_some())]
}

/// The entry of an event with this public canonical JSON and personal commitment, its own
/// fields at their longest: its length.
fn longest_entry(public: &[u8], commitment: Option<&Hash>) -> usize {
    Entry::encode(
        u64::MAX >> 11, // 2^53: the largest seq a JSON number holds exactly
        &Hash::ZERO,
        "9999-12-31T23:59:59.999999999Z",
        public,
        commitment,
    )
    .len()
}

#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Sign a checkpoint inside the commit that takes the log this many entries past the last one.
    pub checkpoint_every_events: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            checkpoint_every_events: 100_000,
        }
    }
}

/// The ledger over a storage engine. Appending needs `&mut self`: there is one writer. Every
/// read of [`LedgerReader`] is available on it too (it dereferences to its reader), and
/// [`Ledger::reader`] hands out readers that other threads can use while it appends.
pub struct Ledger<S: Storage> {
    reader: LedgerReader<S>,
    signer: Arc<CheckpointSigner>,
    salt_key: Vec<u8>,
    config: LedgerConfig,
    head: Head,
    range: CompactRange,
    /// The latest signed checkpoint (verified at open, or signed by this writer since).
    latest: Option<SignedCheckpoint>,
    /// Set when a commit failed: sled may or may not hold that batch, so the in-memory head can no
    /// longer be trusted and the writer refuses to go on until the ledger is reopened.
    poisoned: bool,
    /// The source cursor of the batch being appended (see `append_batch_recorded`).
    cursor: Option<u64>,
    /// Its source timestamp (see [`SourceCursor`]).
    cursor_time: Option<i64>,
    /// The last source seq noted as dealt with, stored by the next commit (see
    /// [`Ledger::note_read_through`]).
    read_through: Option<u64>,
    /// Computes the source cursor from the batch's outcomes (see
    /// [`Ledger::append_batch_sourced`]).
    cursor_of: Option<CursorOf>,
    /// The EVENTS stream seq of each event of the batch being appended, if known (see
    /// [`Ledger::append_batch_sourced`]).
    sources: Vec<u64>,
    /// More outside copies of held events, recorded in the next append's commit (see
    /// [`Ledger::note_copies`]).
    more_copies: Vec<(EventKey, u64)>,
    /// Sync bodies decided by the next append (see [`Ledger::note_sync_marks`]).
    sync_marks: Vec<(u64, i64, Vec<u8>)>,
    /// The event whose outside copies the redaction being appended marks for erasure.
    pending_erasure: Option<EventKey>,
}

/// Where the last message a batch dealt with is in its source (for NATS: its EVENTS stream seq
/// and JetStream timestamp), stored in the batch's commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceCursor {
    pub seq: u64,
    /// The source's timestamp of that message, ns since the epoch.
    pub time_ns: i64,
}

/// See [`Ledger::append_batch_sourced`].
type CursorOf = Box<dyn FnOnce(&[AppendOutcome]) -> Option<SourceCursor> + Send + Sync>;

/// Content digest for the id index: SHA-256(JCS(public event) ‖ personal commitment if any).
/// `verify` recomputes it from each entry's event bytes.
pub fn content_digest(public_canonical: &[u8], commitment: Option<&Hash>) -> Hash {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    digest.update(public_canonical);
    if let Some(c) = commitment {
        digest.update(c.0);
    }
    Hash(digest.finalize().into())
}

/// `canonical_json(&event.public_json())`, written straight from the event (the append hot path).
pub fn public_canonical(event: &Event) -> Vec<u8> {
    use socai_chain::entry::{Field, canonical_object};
    canonical_object(&mut [
        ("id", Field::Str(&event.id)),
        ("type", Field::Str(&event.event_type)),
        ("agency", Field::Str(&event.agency)),
        ("procedure", Field::Str(&event.procedure)),
        ("dossier", Field::Str(&event.dossier)),
        ("occurred_at", Field::Str(&event.occurred_at)),
        ("schema", Field::Num(event.schema)),
        ("data", Field::Json(&event.data)),
    ])
}

/// When the events of a batch were recorded: all at once, or each at its own time.
#[derive(Clone, Copy)]
enum RecordedAt<'a> {
    Batch(&'a str),
    Each(&'a [String]),
}

impl<'a> RecordedAt<'a> {
    fn of(self, i: usize) -> &'a str {
        match self {
            RecordedAt::Batch(at) => at,
            RecordedAt::Each(each) => &each[i],
        }
    }
}

/// An event's personal-data salt and commitment.
type Salted = ([u8; 16], Hash);

impl<S: Storage> Ledger<S> {
    /// Opens the ledger and checks the stored head against the stored entries and Merkle state.
    pub fn open(
        storage: S,
        signer: CheckpointSigner,
        salt_key: Vec<u8>,
        config: LedgerConfig,
    ) -> Result<Self> {
        let verifier = CheckpointVerifier::from_vkey(&signer.vkey())?;
        let head = storage.head()?;
        // Invariant: the head names the last entry, and nothing follows it.
        if head.size > 0 {
            let last = storage.entry(head.size - 1)?.ok_or_else(|| {
                LedgerError::Invariant(format!(
                    "head says {} entries but the last is missing",
                    head.size
                ))
            })?;
            if leaf_hash(&last) != head.leaf {
                return Err(LedgerError::Invariant(format!(
                    "head leaf hash differs from entry {}",
                    head.size - 1
                )));
            }
        }
        if storage.entry(head.size)?.is_some() {
            return Err(LedgerError::Invariant(format!(
                "an entry exists past the head at seq {}",
                head.size
            )));
        }
        let frontier = storage.read_hashes(&merkle::frontier_indexes(head.size))?;
        let range = CompactRange::from_frontier(head.size, frontier)?;
        let latest = match storage.latest_checkpoint()? {
            Some((size, note)) => {
                let signed = verifier.verify(&note)?;
                let root = merkle::tree_root(size, &StoredHashes(&storage))?;
                if signed.checkpoint.root != root
                    || signed.checkpoint.size != size
                    || size > head.size
                {
                    return Err(LedgerError::Invariant(format!(
                        "latest signed checkpoint (size {size}) does not match the stored tree"
                    )));
                }
                Some(signed)
            }
            None => None,
        };
        let reader = LedgerReader::new(
            storage,
            verifier,
            View {
                head,
                latest: latest.clone(),
            },
        );
        Ok(Ledger {
            reader,
            signer: Arc::new(signer),
            salt_key,
            config,
            head,
            range,
            latest,
            poisoned: false,
            cursor: None,
            cursor_time: None,
            read_through: None,
            cursor_of: None,
            sources: Vec::new(),
            more_copies: Vec::new(),
            sync_marks: Vec::new(),
            pending_erasure: None,
        })
    }

    pub fn storage(&self) -> &S {
        self.reader.storage()
    }
    /// A reader that sees every commit of this writer once it is durable.
    pub fn reader(&self) -> LedgerReader<S>
    where
        S: Clone,
    {
        self.reader.clone()
    }
    pub fn head(&self) -> Head {
        self.head
    }
    pub fn root(&self) -> Hash {
        self.range.root()
    }

    /// The event's canonical public JSON, the salt and commitment of its personal data (if any),
    /// and its content digest.
    fn digest(&self, event: &Event) -> (Vec<u8>, Option<Salted>, Hash) {
        let public = public_canonical(event);
        let salted = event.personal.as_ref().map(|p| {
            let salt = personal_salt(&self.salt_key, &event.id);
            (salt, personal_commitment(&salt, p))
        });
        let digest = content_digest(&public, salted.as_ref().map(|(_, c)| c));
        (public, salted, digest)
    }

    /// What appending `event` now would do, unless it would be committed as new (`None`):
    /// Duplicate or Conflict if its id is known, Oversized if its entry could be too large.
    pub fn classify(&self, event: &Event) -> Result<Option<AppendOutcome>> {
        let (public, salted, digest) = self.digest(event);
        let Some(rec) = self.storage().id_if_known(&event.agency, &event.id)? else {
            let bound = entry_size_bound(&public, salted.as_ref().map(|(_, c)| c));
            return Ok((bound > socai_chain::tiles::MAX_ENTRY_BYTES)
                .then_some(AppendOutcome::Oversized { entry_bytes: bound }));
        };
        Ok(Some(if rec.digest == digest {
            AppendOutcome::Duplicate { seq: rec.seq }
        } else {
            AppendOutcome::Conflict {
                existing_seq: rec.seq,
            }
        }))
    }

    /// Appends a batch of validated events as one atomic, fsynced commit. `recorded_at` is the
    /// RFC 3339 UTC time the batch is recorded with (passed in: the writer never reads a clock).
    /// Duplicates and conflicts (also within the batch) write nothing.
    pub fn append_batch(
        &mut self,
        events: &[Event],
        recorded_at: &str,
    ) -> Result<Vec<AppendOutcome>> {
        self.append_inner(events, RecordedAt::Batch(recorded_at), Vec::new())
    }

    /// Like [`Ledger::append_batch`], with each event's own `recorded_at` (e.g. the JetStream
    /// timestamp of its message), so entries do not depend on how events were batched.
    /// `source_cursor` (e.g. the EVENTS stream seq of the batch's last message) is stored in the
    /// same commit when the batch commits anything; [`Ledger::source_cursor`] reads it back.
    pub fn append_batch_recorded(
        &mut self,
        events: &[Event],
        recorded_at: &[String],
        source_cursor: Option<u64>,
    ) -> Result<Vec<AppendOutcome>> {
        if events.len() != recorded_at.len() {
            return Err(LedgerError::Invariant(format!(
                "{} events but {} recorded_at times",
                events.len(),
                recorded_at.len()
            )));
        }
        self.cursor = source_cursor;
        let outcomes = self.append_inner(events, RecordedAt::Each(recorded_at), Vec::new());
        self.cursor = None;
        outcomes
    }

    /// Like [`Ledger::append_batch_recorded`], also given where each event's message is kept
    /// outside the ledger (`sources[i]`: the EVENTS stream seq of `events[i]`). For events that
    /// carry personal data those places are recorded in the same commit, so that a redaction can
    /// erase every copy; a copy of an already redacted event is marked for erasure at once.
    /// `source_cursor` is given the outcomes and says which source cursor the commit stores
    /// (e.g. not past a refused event whose rejection is not recorded elsewhere yet); it is
    /// stored only when the batch commits anything (see [`Ledger::set_source_cursor`]).
    pub fn append_batch_sourced(
        &mut self,
        events: &[Event],
        recorded_at: &[String],
        sources: &[u64],
        source_cursor: impl FnOnce(&[AppendOutcome]) -> Option<SourceCursor> + Send + Sync + 'static,
    ) -> Result<Vec<AppendOutcome>> {
        if sources.len() != events.len() {
            return Err(LedgerError::Invariant(format!(
                "{} events but {} sources",
                events.len(),
                sources.len()
            )));
        }
        self.sources = sources.to_vec();
        self.cursor_of = Some(Box::new(source_cursor));
        let outcomes = self.append_batch_recorded(events, recorded_at, None);
        self.sources.clear();
        self.cursor_of = None;
        self.cursor_time = None;
        outcomes
    }

    /// Records, in the next append's commit, that the EVENTS messages at these stream seqs hold
    /// personal data of these events although they are not the events themselves (a portal sync
    /// body that repeats a dossier's personal data after its submission is held): a redaction of
    /// the event erases them too; one of an event already redacted is marked for erasure at once.
    pub fn note_copies(&mut self, copies: Vec<(EventKey, u64)>) {
        self.more_copies.extend(copies);
    }

    /// Records, in the next append's commit, that these sync bodies (EVENTS seq, JetStream time)
    /// were decided, with what the ledger refused of each: read again (after a crash or a
    /// rewind) a body is answered from its mark, never compared with entries that came after it.
    pub fn note_sync_marks(&mut self, marks: Vec<(u64, i64, Vec<u8>)>) {
        self.sync_marks.extend(marks);
    }

    /// Records, with the next commit, that every source message up to `seq` was dealt with
    /// (committed, or answered as a duplicate or a rejection): a source cursor held back before
    /// an unconfirmed rejection then does not make a later start take what lies between for lost
    /// ([`Ledger::source_read_through`]).
    pub fn note_read_through(&mut self, seq: u64) {
        // The last note wins: the source is read in order, except after a rewind that reuses
        // seqs, when the lower seq is the truth.
        self.read_through = Some(seq);
    }

    /// The last source seq a commit recorded as dealt with (see
    /// [`Ledger::note_read_through`]).
    pub fn source_read_through(&self) -> Result<Option<u64>> {
        Ok(self.storage().source_read_through()?)
    }

    fn append_inner(
        &mut self,
        events: &[Event],
        recorded_at: RecordedAt<'_>,
        erase_personal: Vec<u64>,
    ) -> Result<Vec<AppendOutcome>> {
        let mut batch = CommitBatch {
            hashes_from: merkle::stored_hash_count(self.head.size),
            ..CommitBatch::default()
        };
        batch.sync_marks = std::mem::take(&mut self.sync_marks);
        for (key, stream_seq) in std::mem::take(&mut self.more_copies) {
            if self.is_redacted(&key)? {
                batch.erasures_pending.push(key.clone());
            }
            batch.copies.push((key, stream_seq));
        }
        let mut outcomes = Vec::with_capacity(events.len());
        let mut in_batch: HashMap<(&str, &str), IdRecord, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(events.len(), Default::default());
        let mut range = self.range.clone();
        let mut head = self.head;
        for (i, event) in events.iter().enumerate() {
            let (public, salted, digest) = self.digest(event);
            let existing = match in_batch.get(&(event.agency.as_str(), event.id.as_str())) {
                Some(rec) => Some(*rec),
                None => self.storage().id_if_known(&event.agency, &event.id)?,
            };
            if let (Some(&stream_seq), Some(_)) = (self.sources.get(i), &event.personal) {
                let key = EventKey::new(&event.agency, &event.id);
                if existing.is_some() && self.is_redacted(&key)? {
                    batch.erasures_pending.push(key.clone());
                }
                batch.copies.push((key, stream_seq));
            }
            if let Some(rec) = existing {
                outcomes.push(if rec.digest == digest {
                    AppendOutcome::Duplicate { seq: rec.seq }
                } else {
                    AppendOutcome::Conflict {
                        existing_seq: rec.seq,
                    }
                });
                continue;
            }
            let commitment = salted.map(|(_, c)| c);
            // A function of the event alone (not of its seq or time), so import and ingest
            // refuse exactly the same events; the bound is never below the real size.
            let bound = entry_size_bound(&public, commitment.as_ref());
            if bound > socai_chain::tiles::MAX_ENTRY_BYTES {
                outcomes.push(AppendOutcome::Oversized { entry_bytes: bound });
                continue;
            }
            let seq = head.size;
            let entry = Entry::encode(
                seq,
                &head.leaf,
                recorded_at.of(i),
                &public,
                commitment.as_ref(),
            );

            let leaf = leaf_hash(&entry);
            range.push_stored(leaf, &mut batch.hashes);
            let rec = IdRecord { seq, digest };
            in_batch.insert((&event.agency, &event.id), rec);
            batch
                .ids
                .push((EventKey::new(&event.agency, &event.id), rec));
            batch.dossiers.push((event.dossier.clone(), seq));
            if let (Some((salt, _)), Some(personal)) = (salted, &event.personal) {
                batch.personal.push((
                    seq,
                    PersonalRecord {
                        salt: hex::encode(salt),
                        personal: personal.clone(),
                    },
                ));
            }
            batch.entries.push(entry);
            head = Head {
                size: seq + 1,
                leaf,
            };
            outcomes.push(AppendOutcome::Committed { seq });
        }
        if let Some(cursor_of) = self.cursor_of.take() {
            let cursor = cursor_of(&outcomes);
            self.cursor = cursor.map(|c| c.seq);
            self.cursor_time = cursor.map(|c| c.time_ns);
        }
        if batch.entries.is_empty()
            && erase_personal.is_empty()
            && batch.copies.is_empty()
            && batch.sync_marks.is_empty()
        {
            return Ok(outcomes);
        }
        // Invariant, checked before the write: the hashes continue the stored array exactly.
        if batch.hashes_from + batch.hashes.len() as u64 != merkle::stored_hash_count(head.size) {
            return Err(LedgerError::Invariant(
                "stored hash count does not match the new head".into(),
            ));
        }
        let signed = if head.size - self.latest_size() >= self.config.checkpoint_every_events {
            let signed = self.signer.sign(&Checkpoint {
                origin: self.origin().to_string(),
                size: head.size,
                root: range.root(),
            })?;
            batch.checkpoints.push((head.size, signed.note.clone()));
            Some(signed)
        } else {
            None
        };
        // A redaction erases personal data only together with a newly committed redaction entry.
        if !erase_personal.is_empty()
            && !outcomes
                .iter()
                .all(|o| matches!(o, AppendOutcome::Committed { .. }))
        {
            return Err(LedgerError::Invariant(format!(
                "redaction entry was not committed ({outcomes:?}); nothing erased"
            )));
        }
        batch.erase_personal = erase_personal;
        batch.erasures_pending.extend(self.pending_erasure.take());
        batch.source_cursor = self.cursor;
        batch.source_cursor_time = self.cursor.and(self.cursor_time);
        batch.new_head = head;
        self.commit(batch)?;
        self.head = head;
        self.range = range;
        if signed.is_some() {
            self.latest = signed;
        }
        self.publish();
        Ok(outcomes)
    }

    /// Signs a checkpoint for the current head unless the latest already covers it; returns the
    /// latest signed checkpoint. Errors on an empty ledger.
    pub fn checkpoint(&mut self) -> Result<SignedCheckpoint> {
        if self.head.size == 0 {
            return Err(LedgerError::Range(
                "the ledger is empty: nothing to checkpoint".into(),
            ));
        }
        if let Some(latest) = &self.latest
            && latest.checkpoint.size == self.head.size
        {
            return Ok(latest.clone());
        }
        let signed = self.signer.sign(&Checkpoint {
            origin: self.origin().to_string(),
            size: self.head.size,
            root: self.range.root(),
        })?;
        let batch = CommitBatch {
            hashes_from: merkle::stored_hash_count(self.head.size),
            checkpoints: vec![(self.head.size, signed.note.clone())],
            new_head: self.head,
            ..CommitBatch::default()
        };
        self.commit(batch)?;
        self.latest = Some(signed.clone());
        self.publish();
        Ok(signed)
    }

    /// The one place the writer commits: a failure poisons the writer (see `poisoned`).
    fn commit(&mut self, mut batch: CommitBatch) -> Result<()> {
        if self.poisoned {
            return Err(LedgerError::Poisoned);
        }
        batch.source_read_through = self.read_through.take();
        self.reader.storage().commit(batch).map_err(|e| {
            self.poisoned = true;
            LedgerError::from(e)
        })
    }

    /// Shows readers the head and checkpoint of the commit just finished (durable).
    fn publish(&self) {
        self.reader.publish(View {
            head: self.head,
            latest: self.latest.clone(),
        });
    }

    /// Whether an earlier commit failed (the writer then refuses to go on until reopened).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The last source cursor committed (see [`Ledger::append_batch_recorded`]).
    pub fn source_cursor(&self) -> Result<Option<u64>> {
        Ok(self.storage().source_cursor()?)
    }

    /// The last source cursor committed, with the source's timestamp of that message when it
    /// was stored with one (see [`Ledger::append_batch_sourced`]).
    pub fn source_position(&self) -> Result<Option<(u64, Option<i64>)>> {
        let Some(seq) = self.storage().source_cursor()? else {
            return Ok(None);
        };
        Ok(Some((seq, self.storage().source_cursor_time()?)))
    }

    /// Stores a new source cursor alone (e.g. when a batch committed nothing new but the
    /// messages up to `cursor` are all dealt with), in a commit of its own. Nothing is written
    /// when the stored cursor is already there or beyond.
    pub fn set_source_cursor(&mut self, cursor: SourceCursor) -> Result<()> {
        if self
            .source_cursor()?
            .is_some_and(|stored| stored >= cursor.seq)
        {
            return Ok(());
        }
        let batch = CommitBatch {
            hashes_from: merkle::stored_hash_count(self.head.size),
            source_cursor: Some(cursor.seq),
            source_cursor_time: Some(cursor.time_ns),
            new_head: self.head,
            ..CommitBatch::default()
        };
        self.commit(batch)
    }

    /// The leaf hash of each entry `seqs` names (each below the head), from the stored Merkle
    /// hashes: what a receipt names beside the seq.
    pub fn leaf_hashes(&self, seqs: &[u64]) -> Result<Vec<Hash>> {
        if let Some(&seq) = seqs.iter().find(|&&s| s >= self.head.size) {
            return Err(LedgerError::Range(format!(
                "seq {seq} is beyond the ledger's {} entries",
                self.head.size
            )));
        }
        let indexes: Vec<u64> = seqs
            .iter()
            .map(|&s| merkle::stored_hash_index(0, s))
            .collect();
        Ok(socai_chain::HashReader::read_hashes(
            &self.hashes(),
            &indexes,
        )?)
    }

    /// The key that signs checkpoints, receipts and tree heads, to share with other threads.
    pub fn signer(&self) -> Arc<CheckpointSigner> {
        self.signer.clone()
    }

    /// Whether the head has moved past the latest signed checkpoint.
    pub fn checkpoint_due(&self) -> bool {
        self.head.size > self.latest_size()
    }

    fn latest_size(&self) -> u64 {
        self.latest.as_ref().map_or(0, |c| c.checkpoint.size)
    }

    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>> {
        Ok(self.latest.clone())
    }

    /// Whether the event's redaction entry exists.
    pub fn is_redacted(&self, event: &EventKey) -> Result<bool> {
        let redaction_id = format!("{}{}", socai_model::event::REDACTION_ID_PREFIX, event.id);
        Ok(self
            .storage()
            .id_if_known(&event.agency, &redaction_id)?
            .is_some())
    }

    /// Erases an event's personal data and salt, and appends a `ledger.redacted` entry, in one
    /// atomic commit. Every hash, proof and metric stays valid: entries hold only the commitment.
    /// The event's copies outside the store (EVENTS, REJECTED) are marked for erasure in the same
    /// commit ([`Storage::erasures_pending`]; the ingest side erases them and then calls
    /// [`Ledger::mark_erased`]). `target` is an id or AGENCY/ID. Returns (target seq, redaction
    /// entry seq).
    pub fn redact(
        &mut self,
        target: &str,
        reason: &str,
        redacted_by: &str,
        at: &str,
    ) -> Result<(u64, u64)> {
        crate::storage::redaction_read_fault()?;
        let (seq, key, redaction) = self.prepare_redaction(target, reason, redacted_by, at)?;
        self.pending_erasure = Some(key);
        let outcome = self.append_inner(
            std::slice::from_ref(&redaction),
            RecordedAt::Batch(at),
            vec![seq],
        );
        self.pending_erasure = None;
        match outcome?.first() {
            Some(AppendOutcome::Committed { seq: r }) => Ok((seq, *r)),
            other => Err(LedgerError::Invariant(format!(
                "redaction entry not written: {other:?}"
            ))),
        }
    }

    /// Whether [`Ledger::redact`] would accept this redaction at `at` (the target exists and has
    /// personal data, the reason and author fit the public entry), without writing anything.
    pub fn check_redaction(
        &self,
        target: &str,
        reason: &str,
        redacted_by: &str,
        at: &str,
    ) -> Result<()> {
        self.prepare_redaction(target, reason, redacted_by, at)
            .map(|_| ())
    }

    /// The target's seq and key, and the redaction event, checked.
    fn prepare_redaction(
        &self,
        target: &str,
        reason: &str,
        redacted_by: &str,
        at: &str,
    ) -> Result<(u64, EventKey, Event)> {
        let seq = self.seq_of(target)?;
        let entry = self.entry(seq)?;
        let target: Event = serde_json::from_value(entry.event.clone()).map_err(|e| {
            LedgerError::Invariant(format!("stored event {seq} does not parse: {e}"))
        })?;
        let key = EventKey::new(&target.agency, &target.id);
        let already = self.is_redacted(&key)?;
        if self.storage().personal(seq)?.is_none() {
            return Err(LedgerError::NothingToRedact {
                id: target.id.clone(),
                seq,
                already,
            });
        }
        let redaction = Event::redaction(&target, seq, reason, redacted_by, at);
        static VALIDATOR: std::sync::OnceLock<socai_model::Validator> = std::sync::OnceLock::new();
        VALIDATOR
            .get_or_init(|| socai_model::Validator::new(socai_model::Limits::default()))
            .validate_ledger_event(&redaction)
            .map_err(|r| {
                LedgerError::InvalidRedaction(format!(
                    "{} ({}): {}",
                    r.path,
                    r.code.as_str(),
                    r.reason
                ))
            })?;
        Ok((seq, key, redaction))
    }

    /// Marks `events` (already redacted) for erasure of their outside copies, e.g. a copy that
    /// arrived after the redaction and was refused before it reached the ledger.
    pub fn mark_for_erasure(&mut self, events: Vec<EventKey>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let batch = CommitBatch {
            hashes_from: merkle::stored_hash_count(self.head.size),
            erasures_pending: events,
            new_head: self.head,
            ..CommitBatch::default()
        };
        self.commit(batch)
    }

    /// Records that the outside copies of `events` were erased (see [`Ledger::redact`]).
    pub fn mark_erased(&mut self, events: Vec<EventKey>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let batch = CommitBatch {
            hashes_from: merkle::stored_hash_count(self.head.size),
            erasures_done: events,
            new_head: self.head,
            ..CommitBatch::default()
        };
        self.commit(batch)
    }
}

impl<S: Storage> std::ops::Deref for Ledger<S> {
    type Target = LedgerReader<S>;
    fn deref(&self) -> &LedgerReader<S> {
        &self.reader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_size_bound_is_the_length_of_the_events_longest_entry() {
        let long = vec![b'x'; 5000];
        for public in [
            &b"{}"[..],
            "{\"agency\":\"a\",\"data\":{\"x\":\"é\\n\"},\"id\":\"e\"}".as_bytes(),
            &long,
        ] {
            for commitment in [None, Some(&Hash([7; 32]))] {
                assert_eq!(
                    entry_size_bound(public, commitment),
                    longest_entry(public, commitment)
                );
            }
        }
    }

    #[test]
    fn the_content_digest_is_sha256_of_the_public_json_then_the_commitment() {
        let public = br#"{"id":"e"}"#;
        let commitment = Hash([9; 32]);
        let mut both = public.to_vec();
        both.extend_from_slice(&commitment.0);
        assert_eq!(
            content_digest(public, Some(&commitment)),
            socai_chain::hash::sha256(&both)
        );
        assert_eq!(
            content_digest(public, None),
            socai_chain::hash::sha256(public)
        );
    }
}
