//! The fold: committed entries in seq order → dossier states → per-(scope, day) counts → metric
//! values for any window.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The fold's hash maps: foldhash (hashbrown's hasher, seeded at random per process) instead of
/// SipHash, which was a fifth of the fold's time; dossier codes come from agencies, so the seed
/// keeps anyone from choosing colliding ones in advance.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use serde::{Deserialize, Serialize};

use crate::compact::{DossierMemory, Dossiers, Fingerprint, fingerprint, put_record, split_record};
use crate::dossier::{Contribution, Dossier, Offering, ProcedureFacts, Return, earliest};
use crate::metric::{
    Bucket, Counts, FIELDS, Field, GAUGE_MASK, METRICS, Metric, MetricValue, WindowSums, bit,
    figures,
};
use crate::scope::{Scope, ScopeKind, province_of};
use crate::time::{Day, Window, parse_timestamp};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    /// The cursor: entries must come exactly once, in seq order.
    #[error(
        "expected entry seq {expected}, got {got}: entries must be applied once each, in order"
    )]
    Sequence { expected: u64, got: u64 },
    #[error("entry {seq} cannot be read: {reason}")]
    Entry { seq: u64, reason: String },
    #[error("snapshot cannot be read: {0}")]
    Snapshot(String),
}

/// Events the fold met that do not fit a dossier's lifecycle. They are counted, applied where
/// their time says, and never stop the fold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomalies {
    /// An event whose predecessor had not been committed yet (accepted before submitted,
    /// resolved before accepted, a rating before the resolution, ...).
    pub missing_predecessor: u64,
    /// An event whose time is earlier than an event of the same dossier committed before it.
    pub out_of_order: u64,
    /// Processing after the dossier was resolved, refused, withdrawn or stopped.
    pub after_end: u64,
    /// A second submission, acceptance, payment, resolution or ending: the earliest counts.
    pub repeated: u64,
    /// A dossier of an (agency, procedure) not published in the catalogue when it started.
    pub unknown_procedure: u64,
    /// An event naming another agency or procedure than the dossier's first event.
    pub inconsistent_dossier: u64,
    /// Entry types this build does not project (future types). Their `data` is not read, so
    /// data of any shape never stops the fold.
    pub unknown_type: u64,
    /// An event dated before 2000 or more than a day after it was recorded: not projected (it
    /// would move "now"). Due dates outside 2000–2199 are clamped into that range.
    #[serde(default)]
    pub time_out_of_range: u64,
}

/// Event times the projection accepts: from 2000-01-01 to 2200-01-01 (UTC).
const TIME_MIN: i64 = 946_684_800;
const TIME_MAX: i64 = 7_258_118_400;
/// How far an event may be dated after its entry's `recorded_at` (the ingest rule's default).
const FUTURE_SKEW_SECS: i64 = 86_400;

/// A due date from event data: clamped into the accepted range; one beyond any calendar
/// (`9999-12-31...`) is "no deadline", the range's end.
fn due_time(text: &str) -> i64 {
    parse_timestamp(text).map_or(TIME_MAX, |t| t.clamp(TIME_MIN, TIME_MAX))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum ScopeId {
    National,
    Province(u32),
    Agency(u32),
    Procedure(u32),
}

#[derive(Debug, Clone, Default)]
struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }
    fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

#[derive(Deserialize)]
struct WireEntry<'a, D = WireData<'a>> {
    seq: u64,
    #[serde(borrow)]
    recorded_at: Cow<'a, str>,
    #[serde(borrow)]
    event: WireEvent<'a, D>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WireEvent<'a, D = WireData<'a>> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    agency: Cow<'a, str>,
    #[serde(borrow)]
    procedure: Cow<'a, str>,
    #[serde(borrow)]
    dossier: Cow<'a, str>,
    #[serde(borrow)]
    occurred_at: Cow<'a, str>,
    /// [`WireData`], or `IgnoredAny` for an entry of a future type ([`future_type`]).
    data: D,
}

/// The data fields the metrics read, across all event types (schemas/events/).
#[derive(Deserialize, Default)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct WireData<'a> {
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    due_at: Option<Cow<'a, str>>,
    digitized_inputs: Option<bool>,
    #[serde(borrow)]
    new_due_at: Option<Cow<'a, str>>,
    online: Option<bool>,
    electronic_result: Option<bool>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    satisfied: Option<bool>,
    #[serde(borrow)]
    service_level: Option<Cow<'a, str>>,
    #[serde(borrow)]
    result_kind: Option<Cow<'a, str>>,
}

impl<'a> WireData<'a> {
    /// The fields from `data` as [`socai_chain::Entry::scan`] found it (canonical JSON), without
    /// serde; `None` where serde would say more (a field of another type: serde names it).
    fn scan(data: &'a [u8]) -> Option<WireData<'a>> {
        fn text<'a>(value: &'a [u8], slot: &mut Option<Cow<'a, str>>) -> bool {
            *slot = match value {
                b"null" => None,
                _ => match socai_chain::entry::string_value(value) {
                    Some(text) => Some(text),
                    None => return false,
                },
            };
            true
        }
        fn flag(value: &[u8], slot: &mut Option<bool>) -> bool {
            *slot = match value {
                b"true" => Some(true),
                b"false" => Some(false),
                b"null" => None,
                _ => return false,
            };
            true
        }
        let mut d = WireData::default();
        let mut ok = true;
        socai_chain::entry::for_each_member(data, |key, value| {
            ok &= match key {
                "channel" => text(value, &mut d.channel),
                "due_at" => text(value, &mut d.due_at),
                "digitized_inputs" => flag(value, &mut d.digitized_inputs),
                "new_due_at" => text(value, &mut d.new_due_at),
                "online" => flag(value, &mut d.online),
                "electronic_result" => flag(value, &mut d.electronic_result),
                "method" => text(value, &mut d.method),
                "satisfied" => flag(value, &mut d.satisfied),
                "service_level" => text(value, &mut d.service_level),
                "result_kind" => text(value, &mut d.result_kind),
                _ => true,
            };
        })?;
        ok.then_some(d)
    }
}

/// The event types (the first [`KNOWN_TYPES`]) and the enumerated data values the fold reads
/// (schemas/), most frequent first.
const KNOWN_WORDS: &[&str] = &[
    "dossier.processing_step",
    "dossier.submitted",
    "dossier.accepted",
    "dossier.resolved",
    "dossier.result_returned",
    "dossier.result_signed",
    "dossier.fee_requested",
    "dossier.fee_paid",
    "dossier.rated",
    "dossier.supplement_requested",
    "dossier.supplement_received",
    "dossier.deadline_extended",
    "dossier.refused",
    "dossier.withdrawn",
    "dossier.stopped",
    "procedure.published",
    "ledger.redacted",
    "online",
    "counter",
    "postal",
    "electronic",
    "full_online",
    "partial_online",
    "offline",
    "document",
    "none",
];

/// How many of [`KNOWN_WORDS`] are event types: every type of schemas/events (a test checks).
const KNOWN_TYPES: usize = 17;

/// A committed entry decoded for the fold: what the fold reads of it, its times parsed. Decoding
/// is a function of the entry alone, so it can run on another thread than the fold (a rebuild's
/// two readers decode while one thread folds); each entry is decoded once.
pub struct Decoded<'a> {
    seq: u64,
    /// The event's time (Unix seconds).
    at: i64,
    /// The entry's `recorded_at` (Unix seconds).
    recorded: i64,
    event: WireEvent<'a>,
    /// The dossier's fingerprint, computed where the entry is decoded (a rebuild's reader
    /// thread), not on the fold's.
    fingerprint: Fingerprint,
}

/// An entry of a type this build does not know (a future type) whose `data` does not read as
/// [`WireData`] (a key the fold knows, with another type, or no object at all): its data is
/// never read (the type is counted in [`Anomalies::unknown_type`]), so it is decoded without it
/// rather than stop the fold. It is read as a [`WireEntry`] whose data is `IgnoredAny`: every
/// other field as strictly (a repeated one refused). `None` for a known type: the schemas give
/// every key of its data one type, so there a mismatch is an error.
fn future_type(entry: &[u8]) -> Option<WireEntry<'_>> {
    let wire: WireEntry<'_, serde::de::IgnoredAny> = serde_json::from_slice(entry).ok()?;
    let event = wire.event;
    if KNOWN_WORDS[..KNOWN_TYPES].contains(&event.kind.as_ref()) {
        return None;
    }
    Some(WireEntry {
        seq: wire.seq,
        recorded_at: wire.recorded_at,
        event: WireEvent {
            kind: event.kind,
            agency: event.agency,
            procedure: event.procedure,
            dossier: event.dossier,
            occurred_at: event.occurred_at,
            data: WireData::default(),
        },
    })
}

impl<'a> Decoded<'a> {
    /// Decodes entry `seq` (its canonical bytes), borrowing from them where it can.
    pub fn decode(seq: u64, entry: &'a [u8]) -> Result<Decoded<'a>, FoldError> {
        let bad = |reason: String| FoldError::Entry { seq, reason };
        // Entries as the ledger writes them: the chain's byte scanner and `WireData::scan`, no
        // serde; anything else, and every error, the whole entry through serde.
        let scanned = socai_chain::Entry::scan(entry).and_then(|view| {
            Some(WireEntry {
                seq: view.header.seq,
                recorded_at: view.recorded_at,
                event: WireEvent {
                    kind: view.kind,
                    agency: view.agency,
                    procedure: view.procedure,
                    dossier: view.dossier,
                    occurred_at: view.occurred_at,
                    data: WireData::scan(view.data)?,
                },
            })
        });
        let wire: WireEntry<'a> = match scanned {
            Some(wire) => wire,
            None => match serde_json::from_slice(entry) {
                Ok(wire) => wire,
                Err(e) => {
                    future_type(entry).ok_or_else(|| bad(format!("not a ledger entry: {e}")))?
                }
            },
        };
        if wire.seq != seq {
            return Err(bad(format!("it says it is entry {}", wire.seq)));
        }
        let at = parse_timestamp(&wire.event.occurred_at).map_err(&bad)?;
        let recorded = parse_timestamp(&wire.recorded_at).map_err(&bad)?;
        let fingerprint = if wire.event.kind.starts_with("dossier.") {
            fingerprint(&wire.event.dossier)
        } else {
            Fingerprint::default()
        };
        Ok(Decoded {
            seq,
            at,
            recorded,
            event: wire.event,
            fingerprint,
        })
    }

    /// The same, owning its text (to send it to another thread).
    pub fn into_owned(self) -> Decoded<'static> {
        fn own(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        // Types and enumerated values (schemas/) are borrowed from a table: no allocation.
        fn known(c: Cow<'_, str>) -> Cow<'static, str> {
            match KNOWN_WORDS.iter().find(|&&w| w == c) {
                Some(&w) => Cow::Borrowed(w),
                None => own(c),
            }
        }
        fn own_opt(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            c.map(own)
        }
        fn known_opt(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
            c.map(known)
        }
        let WireEvent {
            kind,
            agency,
            procedure,
            dossier: _,     // known by its fingerprint
            occurred_at: _, // parsed into `at` already
            data,
        } = self.event;
        Decoded {
            seq: self.seq,
            at: self.at,
            recorded: self.recorded,
            fingerprint: self.fingerprint,
            event: WireEvent {
                kind: known(kind),
                agency: own(agency),
                procedure: own(procedure),
                dossier: Cow::Borrowed(""),
                occurred_at: Cow::Borrowed(""),
                data: WireData {
                    channel: known_opt(data.channel),
                    due_at: own_opt(data.due_at),
                    digitized_inputs: data.digitized_inputs,
                    new_due_at: own_opt(data.new_due_at),
                    online: data.online,
                    electronic_result: data.electronic_result,
                    method: known_opt(data.method),
                    satisfied: data.satisfied,
                    service_level: known_opt(data.service_level),
                    result_kind: known_opt(data.result_kind),
                },
            },
        }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// The windows whose values changed, per scope, as taken from a projection's change log.
#[derive(Debug, Clone)]
pub struct Changes {
    now: Option<Day>,
    plans: Vec<(ScopeId, BTreeMap<Window, u32>)>,
}

impl Changes {
    /// Scopes with changed values.
    pub fn scopes(&self) -> usize {
        self.plans.len()
    }
}

/// The projection of a ledger prefix: everything needed to give any metric value, and the
/// keys whose values changed since they were last taken.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    next_seq: u64,
    watermark: Option<i64>,
    agencies: Interner,
    procedures: Interner,
    provinces: Interner,
    agency_province: Vec<Option<u32>>,
    dossiers: Dossiers,
    /// Dossiers that were finished when last changed, by their latest event time then: the
    /// candidates for compaction, oldest first (see [`Projection::compact_some`]).
    finished: VecDeque<(i64, Fingerprint)>,
    /// Compact a finished dossier once the watermark is this many seconds past its latest
    /// event; `None`: never.
    compact_after: Option<i64>,
    /// Looked up on every dossier event: hashed, not a B-tree (snapshots sort them).
    offerings: HashMap<(u32, u32), Offering>,
    offering_dossiers: HashMap<(u32, u32), u64>,
    buckets: HashMap<ScopeId, BTreeMap<Day, Bucket>>,
    anomalies: Anomalies,
    track_changes: bool,
    dirty: BTreeMap<ScopeId, BTreeMap<Day, u32>>,
    published_now: Option<Day>,
    /// Dossiers and offerings changed, and how many names were known, at the last snapshot
    /// or delta (recorded only with `track_changes`).
    changed: HashSet<Fingerprint>,
    changed_offerings: BTreeSet<(u32, u32)>,
    names_saved: (usize, usize),
    /// `next_seq` at the last snapshot or delta: where the next delta starts.
    seq_saved: u64,
    /// Too much changed to record since the last full snapshot: the next must be one.
    delta_lost: bool,
    old: Vec<Contribution>,
    new: Vec<Contribution>,
    /// Scratch of [`Projection::apply_diff`].
    diff: Vec<(Contribution, i64)>,
}

/// A snapshot of format 1: all of it JSON, dossiers by id.
#[derive(Deserialize)]
struct SnapshotV1 {
    next_seq: u64,
    watermark: Option<i64>,
    published_now: Option<Day>,
    agencies: Vec<String>,
    procedures: Vec<String>,
    dossiers: Vec<(String, Dossier)>,
    offerings: Vec<((u32, u32), Offering)>,
    anomalies: Anomalies,
}

/// The JSON line that starts a snapshot of format 2 (or a delta after one); the dossiers follow
/// it in binary, each as fingerprint (16 bytes), varint length, [`Dossier::encode`].
#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    format: u32,
    /// A delta: `agencies` and `procedures` are the names from `*_from` on, `offerings` and the
    /// dossiers those that changed.
    #[serde(default)]
    delta: bool,
    /// A delta: the tree size of the state it continues.
    #[serde(default)]
    from_seq: u64,
    next_seq: u64,
    watermark: Option<i64>,
    published_now: Option<Day>,
    #[serde(default)]
    agencies_from: usize,
    agencies: Vec<String>,
    #[serde(default)]
    procedures_from: usize,
    procedures: Vec<String>,
    offerings: Vec<((u32, u32), Offering)>,
    anomalies: Anomalies,
    dossiers: u64,
}

const SNAPSHOT_FORMAT: u32 = 2;

/// The default of [`Projection::set_compaction`]: a week of event time after a dossier's last
/// event. Late events on finished dossiers (a rating, the result's return) mostly come within
/// days; one that comes later takes its dossier out of the arena again.
pub const COMPACT_AFTER_SECS: i64 = 7 * 86_400;
/// Dossiers a delta may always record (beyond it, at most an eighth of those known).
const CHANGED_MIN: usize = 1 << 16;
/// Queue items looked at after each entry (at most one is queued per entry).
const COMPACT_PER_ENTRY: usize = 4;

impl Projection {
    /// An empty projection that records which values change, for publication.
    pub fn new() -> Projection {
        Projection {
            track_changes: true,
            ..Projection::untracked()
        }
    }

    /// An empty projection for one-off computation (audits, `socai metrics`): no change log.
    pub fn untracked() -> Projection {
        Projection {
            compact_after: Some(COMPACT_AFTER_SECS),
            ..Projection::default()
        }
    }

    /// When finished dossiers are compacted: once the watermark (the latest event time) is
    /// `after` seconds past their latest event (default [`COMPACT_AFTER_SECS`]), or never
    /// (`None`). Compaction is lossless: it changes memory, never a value.
    pub fn set_compaction(&mut self, after: Option<i64>) {
        self.compact_after = after;
        if after.is_none() {
            self.finished.clear();
        }
    }

    /// What the dossiers take in memory, open and compacted.
    pub fn dossier_memory(&self) -> DossierMemory {
        self.dossiers.memory()
    }

    /// Entries applied so far: the ledger tree size the values are computed at.
    pub fn tree_size(&self) -> u64 {
        self.next_seq
    }

    pub fn anomalies(&self) -> &Anomalies {
        &self.anomalies
    }

    pub fn dossiers(&self) -> usize {
        self.dossiers.len()
    }

    /// The current day: the day of the latest event time applied (the event-time watermark).
    /// Rolling windows end on it; calendar windows under way stop at it.
    pub fn now(&self) -> Option<Day> {
        self.watermark.map(Day::of)
    }

    /// Applies committed entry `seq` (its canonical bytes). Entries must come in seq order,
    /// each exactly once: anything else is refused and changes nothing.
    pub fn apply(&mut self, seq: u64, entry: &[u8]) -> Result<(), FoldError> {
        self.expect(seq)?;
        self.apply_decoded(Decoded::decode(seq, entry)?)
    }

    fn expect(&self, seq: u64) -> Result<(), FoldError> {
        if seq != self.next_seq {
            return Err(FoldError::Sequence {
                expected: self.next_seq,
                got: seq,
            });
        }
        Ok(())
    }

    /// [`Projection::apply`] of an entry already decoded (e.g. on another thread, see
    /// [`Decoded::into_owned`]): the same checks, the same state.
    pub fn apply_decoded(&mut self, decoded: Decoded<'_>) -> Result<(), FoldError> {
        let Decoded {
            seq,
            at,
            recorded,
            event,
            fingerprint,
        } = decoded;
        self.expect(seq)?;
        let bad = |reason: String| FoldError::Entry { seq, reason };
        let event = &event;
        let kind = event.kind.as_ref();
        if kind != "ledger.redacted" && !(TIME_MIN..=recorded + FUTURE_SKEW_SECS).contains(&at) {
            self.anomalies.time_out_of_range += 1;
            self.next_seq += 1;
            return Ok(());
        }
        if kind == "procedure.published" {
            self.apply_procedure(seq, at, event)
                .map_err(|reason| bad(format!("{kind}: {reason}")))?;
        } else if let Some(step) = kind.strip_prefix("dossier.") {
            self.apply_dossier(step, at, event, fingerprint)
                .map_err(|reason| bad(format!("{kind}: {reason}")))?;
        } else if kind != "ledger.redacted" {
            self.anomalies.unknown_type += 1;
        }
        if kind != "ledger.redacted" {
            self.watermark = Some(self.watermark.map_or(at, |w| w.max(at)));
        }
        self.next_seq += 1;
        self.compact_some();
        Ok(())
    }

    /// Compacts a few of the finished dossiers whose time has come: called after every entry,
    /// so the work is spread evenly and the queue drains faster than it fills.
    fn compact_some(&mut self) {
        let (Some(after), Some(watermark)) = (self.compact_after, self.watermark) else {
            return;
        };
        let due = |t: i64| t.saturating_add(after) <= watermark;
        for _ in 0..COMPACT_PER_ENTRY {
            match self.finished.front() {
                Some(&(t, fp)) if due(t) => {
                    self.finished.pop_front();
                    // Changed since it was queued: its later queue item decides.
                    if self
                        .dossiers
                        .open_get(&fp)
                        .is_some_and(|d| d.finished() && due(d.latest))
                    {
                        self.dossiers.compact(&fp);
                    }
                }
                _ => break,
            }
        }
    }

    fn scopes(&self, agency: u32, procedure: u32) -> [Option<ScopeId>; 4] {
        [
            Some(ScopeId::National),
            self.agency_province[agency as usize].map(ScopeId::Province),
            Some(ScopeId::Agency(agency)),
            Some(ScopeId::Procedure(procedure)),
        ]
    }

    fn intern_agency(&mut self, agency: &str) -> u32 {
        Self::intern_agency_in(
            &mut self.agencies,
            &mut self.provinces,
            &mut self.agency_province,
            agency,
        )
    }

    /// [`Projection::intern_agency`] on the fields it changes (so a dossier can be held meanwhile).
    fn intern_agency_in(
        agencies: &mut Interner,
        provinces: &mut Interner,
        agency_province: &mut Vec<Option<u32>>,
        agency: &str,
    ) -> u32 {
        let id = agencies.intern(agency);
        if id as usize == agency_province.len() {
            let province = province_of(agency).map(|p| provinces.intern(&p));
            agency_province.push(province);
        }
        id
    }

    fn apply_procedure(&mut self, seq: u64, at: i64, event: &WireEvent<'_>) -> Result<(), String> {
        let agency = self.intern_agency(&event.agency);
        let procedure = self.procedures.intern(&event.procedure);
        let level = event
            .data
            .service_level
            .as_deref()
            .ok_or("no service_level")?;
        let kind = event.data.result_kind.as_deref().ok_or("no result_kind")?;
        if self.track_changes {
            self.changed_offerings.insert((agency, procedure));
        }
        let offering = self.offerings.entry((agency, procedure)).or_default();
        let facts_before = offering.facts();
        offering.contributions(&mut self.old);
        offering.add(at, seq, level == "full_online", kind == "document");
        offering.contributions(&mut self.new);
        let facts_after = offering.facts();
        self.apply_diff(self.scopes(agency, procedure));
        let had_dossiers = self
            .offering_dossiers
            .get(&(agency, procedure))
            .is_some_and(|&n| n > 0);
        if had_dossiers && facts_before.unwrap_or(UNKNOWN) != facts_after.unwrap_or(UNKNOWN) {
            // The catalogue changed what this offering's dossiers count for: recount them. Rare
            // (a procedure republished with another result kind), so a scan is fine.
            let mut keys = Vec::new();
            self.dossiers.for_each(|fp, d| {
                if (d.agency, d.procedure) == (agency, procedure) {
                    keys.push(*fp);
                }
            });
            let before = facts_before.unwrap_or(UNKNOWN);
            let after = facts_after.unwrap_or(UNKNOWN);
            let scopes = self.scopes(agency, procedure);
            for key in keys {
                let dossier = self.dossiers.get(&key).expect("listed above");
                dossier.contributions(before, &mut self.old);
                dossier.contributions(after, &mut self.new);
                self.apply_diff(scopes);
            }
        }
        Ok(())
    }

    fn facts(&self, agency: u32, procedure: u32) -> ProcedureFacts {
        self.offerings
            .get(&(agency, procedure))
            .and_then(Offering::facts)
            .unwrap_or(UNKNOWN)
    }

    fn apply_dossier(
        &mut self,
        step: &str,
        at: i64,
        event: &WireEvent<'_>,
        fp: Fingerprint,
    ) -> Result<(), String> {
        let (dossier, created) = self.dossiers.get_or_create(&fp, || Dossier {
            agency: u32::MAX, // set below
            procedure: u32::MAX,
            latest: at,
            ..Dossier::default()
        });
        // A dossier's agency and procedure are interned when it is created: a later event that
        // names the same ones (all but anomalies) needs no lookup of either name.
        if created
            || self.agencies.name(dossier.agency) != event.agency
            || self.procedures.name(dossier.procedure) != event.procedure
        {
            let agency = Self::intern_agency_in(
                &mut self.agencies,
                &mut self.provinces,
                &mut self.agency_province,
                &event.agency,
            );
            let procedure = self.procedures.intern(&event.procedure);
            if created {
                (dossier.agency, dossier.procedure) = (agency, procedure);
            }
        }
        if created {
            let key = (dossier.agency, dossier.procedure);
            if !self.offerings.contains_key(&key) {
                self.anomalies.unknown_procedure += 1;
            }
            *self.offering_dossiers.entry(key).or_default() += 1;
        }
        let data = &event.data;
        let time = |field: &str, value: &Option<Cow<'_, str>>| -> Result<i64, String> {
            Ok(due_time(value.as_deref().ok_or(format!("no {field}"))?))
        };
        let (agency, procedure) = (dossier.agency, dossier.procedure);
        let facts = self
            .offerings
            .get(&(agency, procedure))
            .and_then(Offering::facts)
            .unwrap_or(UNKNOWN);
        if (self.agencies.name(agency), self.procedures.name(procedure))
            != (event.agency.as_ref(), event.procedure.as_ref())
        {
            self.anomalies.inconsistent_dossier += 1;
        }
        if at < dossier.latest {
            self.anomalies.out_of_order += 1;
        }
        dossier.latest = dossier.latest.max(at);
        let ended = dossier.ended.is_some() || dossier.resolved.is_some();
        let accepted = dossier.accepted.is_some();
        let resolved = dossier.resolved.is_some();
        let a = &mut self.anomalies;
        let mut need = |present: bool| {
            if !present {
                a.missing_predecessor += 1;
            }
        };
        match step {
            "submitted" | "rated" | "result_returned" => {}
            "accepted" => need(dossier.submitted.is_some()),
            "supplement_received" => need(!dossier.supplement_requested.is_empty()),
            _ => need(accepted),
        }
        match step {
            "rated" | "result_returned" => need(resolved),
            "submitted"
            | "accepted"
            | "processing_step"
            | "supplement_requested"
            | "supplement_received"
            | "fee_requested"
            | "fee_paid"
            | "deadline_extended"
            | "resolved"
            | "refused"
            | "withdrawn"
            | "stopped"
                if ended =>
            {
                a.after_end += 1
            }
            _ => {}
        }
        dossier.contributions(facts, &mut self.old);
        let repeated = match step {
            "submitted" => {
                let online = data.channel.as_deref() == Some("online");
                !earliest(&mut dossier.submitted, (at, online), |s| s.0)
            }
            "accepted" => {
                let due = time("due_at", &data.due_at)?;
                let digitized = data.digitized_inputs.unwrap_or(false);
                !earliest(&mut dossier.accepted, (at, due, digitized), |s| s.0)
            }
            "supplement_requested" => {
                dossier.supplement_requested.push(at);
                false
            }
            "supplement_received" => {
                let new_due = match &data.new_due_at {
                    Some(_) => Some(time("new_due_at", &data.new_due_at)?),
                    None => None,
                };
                dossier.supplement_received.push((at, new_due));
                false
            }
            "deadline_extended" => {
                dossier
                    .extended
                    .push((at, time("new_due_at", &data.new_due_at)?));
                false
            }
            "fee_requested" => {
                dossier.fee_requested = true;
                false
            }
            "fee_paid" => {
                let online = data.online.ok_or("no online")?;
                !earliest(&mut dossier.paid, (at, online), |s| s.0)
            }
            "result_signed" => {
                dossier.signed = true;
                false
            }
            "resolved" => {
                let electronic = data.electronic_result.ok_or("no electronic_result")?;
                !earliest(&mut dossier.resolved, (at, electronic), |s| s.0)
            }
            "result_returned" => {
                let method = match data.method.as_deref() {
                    Some("electronic") => Return::Electronic,
                    Some("postal") => Return::Postal,
                    Some("counter") => Return::Counter,
                    other => return Err(format!("method {other:?}")),
                };
                !earliest(&mut dossier.returned, (at, method), |s| s.0)
            }
            "refused" | "withdrawn" | "stopped" => !earliest(&mut dossier.ended, at, |&t| t),
            "rated" => {
                let satisfied = data.satisfied.ok_or("no satisfied")?;
                // The latest rating stands (a citizen may change their mind).
                if dossier.rated.is_none_or(|(t, _)| t <= at) {
                    dossier.rated = Some((at, satisfied));
                }
                false
            }
            "processing_step" => false,
            _ => {
                self.anomalies.unknown_type += 1;
                false
            }
        };
        if repeated {
            self.anomalies.repeated += 1;
        }
        dossier.contributions(facts, &mut self.new);
        if self.compact_after.is_some() && dossier.finished() {
            self.finished.push_back((dossier.latest, fp));
        }
        if self.track_changes && !self.delta_lost {
            self.changed.insert(fp);
            // A delta as large as a good part of the state is worth less than a full snapshot
            // (a long hold, a fold from the start): stop recording until the next full one.
            if self.changed.len() > CHANGED_MIN && self.changed.len() > self.dossiers.len() / 8 {
                self.changed = HashSet::default();
                self.delta_lost = true;
            }
        }
        if self.old != self.new {
            self.apply_diff(self.scopes(agency, procedure));
        }
        Ok(())
    }

    /// Retracts `self.old` and adds `self.new` in every scope given.
    fn apply_diff(&mut self, scopes: [Option<ScopeId>; 4]) {
        let (old, new) = (std::mem::take(&mut self.old), std::mem::take(&mut self.new));
        let (mut i, mut j) = (0, 0);
        let mut changes = std::mem::take(&mut self.diff);
        changes.clear();
        while i < old.len() || j < new.len() {
            match (old.get(i), new.get(j)) {
                (Some(a), Some(b)) if a == b => {
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) if a < b => {
                    changes.push((*a, -1));
                    i += 1;
                }
                (Some(a), None) => {
                    changes.push((*a, -1));
                    i += 1;
                }
                (_, Some(b)) => {
                    changes.push((*b, 1));
                    j += 1;
                }
                (None, None) => unreachable!(),
            }
        }
        for scope in scopes.into_iter().flatten() {
            let days = self.buckets.entry(scope).or_default();
            for &(change, sign) in &changes {
                // A bucket can only become empty where what this change touched became zero.
                let (day, field, zeroed) = match change {
                    Contribution::Count(day, field, delta) => {
                        let bucket = days.entry(day).or_default();
                        let count = &mut bucket.counts[field as usize];
                        *count += sign * delta;
                        (day, field, *count == 0 && bucket.is_empty())
                    }
                    Contribution::Minutes(day, minutes) => {
                        let bucket = days.entry(day).or_default();
                        let count = bucket.minutes.entry(minutes).or_default();
                        *count = count.wrapping_add_signed(sign as i32);
                        let zero = *count == 0;
                        if zero {
                            bucket.minutes.remove(&minutes);
                        }
                        (day, Field::TimedMinutes, zero && bucket.is_empty())
                    }
                };
                if zeroed {
                    days.remove(&day);
                }
                if self.track_changes {
                    *self.dirty.entry(scope).or_default().entry(day).or_default() |= bit(field);
                }
            }
        }
        (self.old, self.new, self.diff) = (old, new, changes);
    }

    fn scope(&self, id: ScopeId) -> Scope {
        let (kind, code) = match id {
            ScopeId::National => return Scope::national(),
            ScopeId::Province(p) => (ScopeKind::Province, self.provinces.name(p)),
            ScopeId::Agency(a) => (ScopeKind::Agency, self.agencies.name(a)),
            ScopeId::Procedure(p) => (ScopeKind::Procedure, self.procedures.name(p)),
        };
        Scope {
            kind,
            code: code.to_owned(),
        }
    }

    /// Every value the projection holds, sorted by scope, metric and window.
    pub fn values(&self, root: &str) -> Vec<MetricValue> {
        let Some(now) = self.now() else {
            return Vec::new();
        };
        let mut ids: Vec<ScopeId> = self.buckets.keys().copied().collect();
        ids.sort_unstable();
        let mut out = Vec::new();
        for id in ids {
            let days = &self.buckets[&id];
            let Some(first) = days.keys().next().copied() else {
                continue;
            };
            let mut windows: BTreeSet<Window> = days
                .keys()
                .filter(|&&d| d <= now)
                .map(|&d| Window::Day(d))
                .collect();
            windows.extend(Window::periods_between(first.min(now), now));
            windows.extend([Window::Rolling7, Window::Rolling30]);
            let all = METRICS
                .iter()
                .fold(0u32, |m, &metric| m | 1 << metric as u32);
            let plan: BTreeMap<Window, u32> = windows.into_iter().map(|w| (w, all)).collect();
            self.evaluate(id, &plan, now, root, false, &mut out);
        }
        out
    }

    /// The values changed since the last call, including "no data" values for keys that went
    /// away. The caller publishes them, then takes a snapshot.
    pub fn take_changes(&mut self, root: &str) -> Vec<MetricValue> {
        let changes = self.take_change_plan();
        (0..changes.scopes())
            .flat_map(|i| self.changed_values(&changes, i, root))
            .collect()
    }

    /// The values of the `i`-th scope of `changes` (scopes come national first, then
    /// provinces, agencies, procedures), so a publisher can send each scope as soon as it is
    /// computed.
    pub fn changed_values(&self, changes: &Changes, i: usize, root: &str) -> Vec<MetricValue> {
        let mut out = Vec::new();
        if let (Some(now), Some((id, plan))) = (changes.now, changes.plans.get(i)) {
            self.evaluate(*id, plan, now, root, true, &mut out);
        }
        out
    }

    /// Takes the change log: which windows of which scopes changed since the last call.
    pub fn take_change_plan(&mut self) -> Changes {
        let Some(now) = self.now() else {
            return Changes {
                now: None,
                plans: Vec::new(),
            };
        };
        let dirty = std::mem::take(&mut self.dirty);
        let moved_from = match self.published_now {
            Some(before) if before < now => Some(before),
            _ => None,
        };
        self.published_now = Some(now);
        let mut plans: BTreeMap<ScopeId, BTreeMap<Window, u32>> = BTreeMap::new();
        if let Some(before) = moved_from {
            let all = METRICS
                .iter()
                .fold(0u32, |m, &metric| m | 1 << metric as u32);
            for (&id, days) in &self.buckets {
                let plan = plans.entry(id).or_default();
                for w in Window::periods_between(before, now)
                    .into_iter()
                    .chain([Window::Rolling7, Window::Rolling30])
                {
                    *plan.entry(w).or_default() |= all;
                }
                for (&day, bucket) in days.range(before.plus(1)..=now) {
                    for metric in METRICS.into_iter().filter(|m| m.is_gauge()) {
                        if active(bucket, metric) {
                            *plan.entry(Window::Day(day)).or_default() |= 1 << metric as u32;
                        }
                    }
                }
            }
        }
        for (id, days) in dirty {
            let plan = plans.entry(id).or_default();
            let buckets = self.buckets.get(&id);
            for (day, fields) in days {
                // Which metrics changed, and which of them as gauges (their level from `day` on).
                let (mut flow_bits, mut gauge_bits) = (0u32, 0u32);
                for metric in METRICS {
                    let mask = metric.mask();
                    if mask & fields == 0 {
                        continue;
                    }
                    if mask & fields & GAUGE_MASK != 0 {
                        gauge_bits |= 1 << metric as u32;
                    } else {
                        flow_bits |= 1 << metric as u32;
                    }
                }
                let all_bits = flow_bits | gauge_bits;
                if day <= now {
                    for w in Window::calendar_containing(day) {
                        *plan.entry(w).or_default() |= all_bits;
                    }
                    for (w, length) in [(Window::Rolling7, 7), (Window::Rolling30, 30)] {
                        let bits = if day > now.plus(-length) {
                            all_bits
                        } else {
                            gauge_bits
                        };
                        if bits != 0 {
                            *plan.entry(w).or_default() |= bits;
                        }
                    }
                }
                if gauge_bits != 0 {
                    for w in Window::periods_between(day, now) {
                        *plan.entry(w).or_default() |= gauge_bits;
                    }
                    let later = buckets
                        .filter(|_| day < now)
                        .into_iter()
                        .flat_map(|b| b.range(day.plus(1)..=now));
                    for (&later_day, bucket) in later {
                        let mut bits = 0;
                        for metric in METRICS {
                            if gauge_bits & (1 << metric as u32) != 0 && active(bucket, metric) {
                                bits |= 1 << metric as u32;
                            }
                        }
                        if bits != 0 {
                            *plan.entry(Window::Day(later_day)).or_default() |= bits;
                        }
                    }
                }
            }
        }
        Changes {
            now: Some(now),
            plans: plans.into_iter().collect(),
        }
    }

    /// Values of the planned (window → metric bits) for one scope. With `with_no_data`, an
    /// absent value is given as "no data" (for publication), otherwise left out.
    fn evaluate(
        &self,
        id: ScopeId,
        plan: &BTreeMap<Window, u32>,
        now: Day,
        root: &str,
        with_no_data: bool,
        out: &mut Vec<MetricValue>,
    ) {
        let scope = self.scope(id);
        let empty = BTreeMap::new();
        let days = self.buckets.get(&id).unwrap_or(&empty);
        // Cumulative counts by day, and the first day each count is nonzero.
        let mut prefix: Vec<(Day, Counts)> = Vec::with_capacity(days.len());
        let mut first_nonzero = [None::<Day>; FIELDS];
        let mut running = [0i64; FIELDS];
        for (&day, bucket) in days {
            for f in 0..FIELDS {
                running[f] += bucket.counts[f];
                if bucket.counts[f] != 0 && first_nonzero[f].is_none() {
                    first_nonzero[f] = Some(day);
                }
            }
            prefix.push((day, running));
        }
        let upto = |day: Day| -> Counts {
            let i = prefix.partition_point(|(d, _)| *d <= day);
            if i == 0 { [0; FIELDS] } else { prefix[i - 1].1 }
        };
        for (&window, &metric_bits) in plan {
            let Some((from, to)) = window.bounds(now) else {
                continue;
            };
            let end = upto(to);
            let before = upto(from.plus(-1));
            let mut flows = [0i64; FIELDS];
            for f in 0..FIELDS {
                flows[f] = end[f] - before[f];
            }
            let mut sums = WindowSums {
                flows,
                levels: end,
                gauge_seen: false,
                days: Vec::new(),
            };
            for metric in METRICS {
                if metric_bits & (1 << metric as u32) == 0 || !metric.applies_to(&scope) {
                    continue;
                }
                if metric == Metric::ResolutionTime && sums.days.is_empty() {
                    sums.days = days.range(from..=to).map(|(_, b)| b).collect();
                }
                let gauge_fields = metric.mask() & GAUGE_MASK;
                sums.gauge_seen = (0..FIELDS).any(|f| {
                    gauge_fields & (1 << f) != 0 && first_nonzero[f].is_some_and(|d| d <= to)
                });
                let mut figures = figures(metric, &sums);
                // A day window shows a metric only on a day that counted something for it.
                if let Window::Day(day) = window
                    && !days.get(&day).is_some_and(|b| active(b, metric))
                {
                    figures = None;
                }
                let (numerator, denominator, value, detail) = match figures {
                    Some(f) => f,
                    None if with_no_data => (0, None, None, None),
                    None => continue,
                };
                out.push(MetricValue {
                    metric,
                    scope: scope.clone(),
                    window: crate::metric::WindowBounds {
                        id: window.id(),
                        from: from.to_string(),
                        to: to.to_string(),
                    },
                    numerator,
                    denominator,
                    value,
                    detail,
                    tree_size: self.next_seq,
                    root: root.to_owned(),
                });
            }
        }
    }

    /// The state as bytes, to resume from after a restart. Take it after
    /// [`Projection::take_changes`] has been published: pending changes are not kept.
    pub fn snapshot(&self) -> Vec<u8> {
        let header = SnapshotHeader {
            format: SNAPSHOT_FORMAT,
            delta: false,
            from_seq: 0,
            next_seq: self.next_seq,
            watermark: self.watermark,
            published_now: self.published_now,
            agencies_from: 0,
            agencies: self.agencies.names.clone(),
            procedures_from: 0,
            procedures: self.procedures.names.clone(),
            offerings: {
                let mut offerings: Vec<_> = self
                    .offerings
                    .iter()
                    .map(|(k, v)| (*k, v.clone()))
                    .collect();
                offerings.sort_unstable_by_key(|(k, _)| *k);
                offerings
            },
            anomalies: self.anomalies.clone(),
            dossiers: self.dossiers.len() as u64,
        };
        let mut bytes = serde_json::to_vec(&header).expect("a snapshot header serializes");
        bytes.push(b'\n');
        self.dossiers
            .for_each_encoded(|fp, encoding| put_record(&mut bytes, fp, encoding));
        bytes
    }

    /// [`Projection::snapshot`], and the start of the next [`Projection::take_delta`].
    pub fn take_snapshot(&mut self) -> Vec<u8> {
        self.changed.clear();
        self.delta_lost = false;
        self.changed_offerings.clear();
        self.names_saved = (self.agencies.names.len(), self.procedures.names.len());
        self.seq_saved = self.next_seq;
        self.snapshot()
    }

    /// What changed since the last [`Projection::take_snapshot`] or `take_delta`: the dossiers
    /// and offerings an entry touched, the names first seen, and the counters. Restored on top
    /// of that snapshot and the deltas before it ([`Projection::restore_chain`]), it gives the
    /// state now. Only a projection made by [`Projection::new`] records what changed; `None`
    /// when so much changed that it stopped recording (take a full snapshot instead).
    pub fn take_delta(&mut self) -> Option<Vec<u8>> {
        if self.delta_lost || !self.track_changes {
            return None;
        }
        let (agencies_from, procedures_from) = self.names_saved;
        let header = SnapshotHeader {
            format: SNAPSHOT_FORMAT,
            delta: true,
            from_seq: self.seq_saved,
            next_seq: self.next_seq,
            watermark: self.watermark,
            published_now: self.published_now,
            agencies_from,
            agencies: self.agencies.names[agencies_from..].to_vec(),
            procedures_from,
            procedures: self.procedures.names[procedures_from..].to_vec(),
            offerings: std::mem::take(&mut self.changed_offerings)
                .into_iter()
                .map(|k| (k, self.offerings[&k].clone()))
                .collect(),
            anomalies: self.anomalies.clone(),
            dossiers: self.changed.len() as u64,
        };
        let mut bytes = serde_json::to_vec(&header).expect("a snapshot header serializes");
        bytes.push(b'\n');
        let mut encoding = Vec::new();
        for fp in std::mem::take(&mut self.changed) {
            let dossier = self.dossiers.get(&fp).expect("a changed dossier is known");
            encoding.clear();
            dossier.encode(&mut encoding);
            put_record(&mut bytes, &fp, &encoding);
        }
        self.names_saved = (self.agencies.names.len(), self.procedures.names.len());
        self.seq_saved = self.next_seq;
        Some(bytes)
    }

    /// A projection resumed from [`Projection::snapshot`] (or a snapshot of format 1): the
    /// counts are recomputed from the dossier states, so they are exactly what the fold had.
    pub fn restore(bytes: &[u8]) -> Result<Projection, FoldError> {
        Projection::restore_chain(bytes, &[])
    }

    /// A projection resumed from a snapshot and the deltas taken after it, in order.
    pub fn restore_chain(base: &[u8], deltas: &[&[u8]]) -> Result<Projection, FoldError> {
        let bad = |why: String| FoldError::Snapshot(why);
        let (mut header, base_records) = parse_snapshot(base)?;
        if header.delta {
            return Err(bad("the first snapshot of a chain is a delta".into()));
        }
        let mut offerings: BTreeMap<(u32, u32), Offering> =
            std::mem::take(&mut header.offerings).into_iter().collect();
        // The latest encoding of each dossier the deltas hold (borrowed: a long log of a large
        // state stays in its bytes until used).
        let mut newer: HashMap<Fingerprint, &[u8]> = HashMap::default();
        for (i, delta) in deltas.iter().enumerate() {
            let (d, records) = parse_snapshot(delta)?;
            let records = match records {
                Records::Binary(records) if d.delta => records,
                _ => return Err(bad(format!("delta {i} is not a delta"))),
            };
            if (d.agencies_from, d.procedures_from)
                != (header.agencies.len(), header.procedures.len())
                || d.from_seq != header.next_seq
                || d.next_seq < d.from_seq
            {
                return Err(bad(format!(
                    "delta {i} does not continue the state before it"
                )));
            }
            header.agencies.extend(d.agencies);
            header.procedures.extend(d.procedures);
            offerings.extend(d.offerings);
            header.next_seq = d.next_seq;
            header.watermark = d.watermark;
            header.published_now = d.published_now;
            header.anomalies = d.anomalies;
            let mut rest = records;
            for j in 0..d.dossiers {
                let (fp, encoding) = next_record(&mut rest)
                    .ok_or_else(|| bad(format!("delta {i}: dossier {j} is malformed")))?;
                newer.insert(fp, encoding);
            }
            if !rest.is_empty() {
                return Err(bad(format!("delta {i}: bytes after the last dossier")));
            }
        }
        header.offerings = offerings.into_iter().collect();
        let mut p = Projection::new();
        for agency in &header.agencies {
            p.intern_agency(agency);
        }
        for procedure in &header.procedures {
            p.procedures.intern(procedure);
        }
        let (agencies, procedures) = (header.agencies.len(), header.procedures.len());
        p.names_saved = (agencies, procedures);
        p.seq_saved = header.next_seq;
        let known = |a: u32, pr: u32| (a as usize) < agencies && (pr as usize) < procedures;
        for ((agency, procedure), offering) in std::mem::take(&mut header.offerings) {
            if !known(agency, procedure) {
                return Err(bad("offering of an unknown agency".into()));
            }
            offering.contributions(&mut p.new);
            p.old.clear();
            p.apply_diff(p.scopes(agency, procedure));
            p.offerings.insert((agency, procedure), offering);
        }
        p.watermark = header.watermark;
        let add = |p: &mut Projection, fp: Fingerprint, dossier: Dossier| {
            if !known(dossier.agency, dossier.procedure) {
                return Err(bad(format!("dossier {} of an unknown agency", hex(&fp))));
            }
            let facts = p.facts(dossier.agency, dossier.procedure);
            dossier.contributions(facts, &mut p.new);
            p.old.clear();
            p.apply_diff(p.scopes(dossier.agency, dossier.procedure));
            *p.offering_dossiers
                .entry((dossier.agency, dossier.procedure))
                .or_default() += 1;
            if !p.place_restored(fp, dossier) {
                return Err(bad(format!("dossier {} is listed twice", hex(&fp))));
            }
            Ok(())
        };
        let mut base_count = 0u64;
        match base_records {
            Records::V1(dossiers) => {
                for (fp, dossier) in dossiers {
                    base_count += 1;
                    let dossier = newer.remove(&fp).map_or(Some(dossier), Dossier::decode);
                    add(&mut p, fp, dossier.expect("checked by next_record"))?;
                }
            }
            Records::Binary(mut rest) => {
                for i in 0..header.dossiers {
                    let (fp, encoding) = next_record(&mut rest)
                        .ok_or_else(|| bad(format!("dossier {i} is malformed")))?;
                    base_count += 1;
                    let encoding = newer.remove(&fp).unwrap_or(encoding);
                    let dossier = Dossier::decode(encoding).expect("checked by next_record");
                    add(&mut p, fp, dossier)?;
                }
                if !rest.is_empty() {
                    return Err(bad(format!("{} bytes after the last dossier", rest.len())));
                }
            }
        }
        let new = newer.len() as u64;
        for (fp, encoding) in newer {
            let dossier = Dossier::decode(encoding).expect("checked by next_record");
            add(&mut p, fp, dossier)?;
        }
        if p.dossiers.len() as u64 != base_count + new {
            return Err(bad("a dossier is listed twice".into()));
        }
        let mut queued: Vec<(i64, Fingerprint)> = p.finished.drain(..).collect();
        queued.sort_unstable();
        p.finished = queued.into();
        p.dirty.clear();
        p.next_seq = header.next_seq;
        p.published_now = header.published_now;
        p.anomalies = header.anomalies;
        Ok(p)
    }

    /// Where a restored dossier goes: compacted if its time has come, else open (and queued if
    /// finished).
    fn place_restored(&mut self, fp: Fingerprint, dossier: Dossier) -> bool {
        let compact = match (self.compact_after, self.watermark) {
            (Some(after), Some(watermark)) if dossier.finished() => {
                if dossier.latest.saturating_add(after) <= watermark {
                    true
                } else {
                    self.finished.push_back((dossier.latest, fp));
                    false
                }
            }
            _ => false,
        };
        self.dossiers.restore(fp, dossier, compact)
    }
}

/// Reads the dossier record at the front of `rest`, advancing it: its fingerprint and an
/// encoding checked to decode.
fn next_record<'a>(rest: &mut &'a [u8]) -> Option<(Fingerprint, &'a [u8])> {
    let (fp, encoding, end) = split_record(rest)?;
    Dossier::decode(encoding)?;
    let fp = *fp;
    *rest = &rest[end..];
    Some((fp, encoding))
}

/// The dossiers of a snapshot, as its format holds them.
enum Records<'a> {
    V1(Vec<(Fingerprint, Dossier)>),
    Binary(&'a [u8]),
}

/// A snapshot's (or delta's) header and its dossier records.
fn parse_snapshot(bytes: &[u8]) -> Result<(SnapshotHeader, Records<'_>), FoldError> {
    let bad = |why: String| FoldError::Snapshot(why);
    let (header, rest) = match bytes.iter().position(|&b| b == b'\n') {
        Some(split) => (&bytes[..split], &bytes[split + 1..]),
        None => (bytes, &[][..]),
    };
    #[derive(Deserialize)]
    struct Format {
        format: u32,
    }
    let format: Format = serde_json::from_slice(header).map_err(|e| bad(e.to_string()))?;
    match format.format {
        1 => {
            let v1: SnapshotV1 = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
            let dossiers: Vec<(Fingerprint, Dossier)> = v1
                .dossiers
                .into_iter()
                .map(|(id, d)| (fingerprint(&id), d))
                .collect();
            let header = SnapshotHeader {
                format: 1,
                delta: false,
                from_seq: 0,
                next_seq: v1.next_seq,
                watermark: v1.watermark,
                published_now: v1.published_now,
                agencies_from: 0,
                agencies: v1.agencies,
                procedures_from: 0,
                procedures: v1.procedures,
                offerings: v1.offerings,
                anomalies: v1.anomalies,
                dossiers: dossiers.len() as u64,
            };
            Ok((header, Records::V1(dossiers)))
        }
        SNAPSHOT_FORMAT => {
            let header: SnapshotHeader =
                serde_json::from_slice(header).map_err(|e| bad(e.to_string()))?;
            Ok((header, Records::Binary(rest)))
        }
        other => Err(bad(format!(
            "format {other} (this build reads 1 and {SNAPSHOT_FORMAT})"
        ))),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const UNKNOWN: ProcedureFacts = ProcedureFacts {
    yields_document: true,
};

/// Whether a day's bucket counted anything for `metric`.
fn active(bucket: &Bucket, metric: Metric) -> bool {
    let mask = metric.mask();
    (0..FIELDS).any(|f| mask & (1 << f) != 0 && bucket.counts[f] != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Values for `data`'s members: of the type the fold reads, of another, or null; strings
    /// with escapes and non-ASCII.
    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-z_]{0,8}".prop_map(Value::from),
            "(\\PC|[\"\\\\\n\u{1}é])*".prop_map(Value::from),
            Just(json!({"x": [1, "y"]})),
        ]
    }

    fn any_data() -> impl Strategy<Value = Value> {
        let keys = prop_oneof![
            Just("channel".to_owned()),
            Just("due_at".to_owned()),
            Just("digitized_inputs".to_owned()),
            Just("new_due_at".to_owned()),
            Just("online".to_owned()),
            Just("electronic_result".to_owned()),
            Just("method".to_owned()),
            Just("satisfied".to_owned()),
            Just("service_level".to_owned()),
            Just("result_kind".to_owned()),
            "[a-z_]{1,12}",
        ];
        prop::collection::btree_map(keys, any_value(), 0..8)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    #[test]
    fn a_future_type_is_read_as_strictly_as_any_entry_but_its_data() {
        let entry = |event_tail: &str| {
            format!(
                r#"{{"event":{{"agency":"A","data":{{"online":"yes"}},"dossier":"d","id":"E","occurred_at":"2026-05-31T08:00:00+07:00","procedure":"p","schema":1,{event_tail}}},"prev":"{}","recorded_at":"2026-06-01T00:00:00Z","seq":0}}"#,
                "0".repeat(64)
            )
        };
        let future = entry(r#""type":"x.y""#);
        let decoded = Decoded::decode(0, future.as_bytes()).unwrap();
        assert_eq!(decoded.event.kind, "x.y");
        assert_eq!(decoded.event.data, WireData::default());
        // A repeated key is refused, as serde refuses it for any entry: a known type hidden
        // behind a future one is not counted away as unknown.
        for tail in [
            r#""type":"dossier.submitted","type":"x.y""#,
            r#""type":"x.y","type":"x.y""#,
        ] {
            assert!(
                Decoded::decode(0, entry(tail).as_bytes()).is_err(),
                "{tail}"
            );
        }
        // A known type whose data does not read stays an error.
        assert!(Decoded::decode(0, entry(r#""type":"dossier.fee_paid""#).as_bytes()).is_err());
        // So does a future type's entry without its fields or with another seq.
        assert!(Decoded::decode(1, future.as_bytes()).is_err());
        let no_agency = future.replacen(r#""agency":"A","#, "", 1);
        assert!(Decoded::decode(0, no_agency.as_bytes()).is_err());
    }

    #[test]
    fn the_known_types_are_the_schemas_types() {
        let mut known = KNOWN_WORDS[..KNOWN_TYPES].to_vec();
        let mut schemas = socai_model::event::EVENT_TYPES.to_vec();
        schemas.push(socai_model::REDACTION_TYPE);
        known.sort_unstable();
        schemas.sort_unstable();
        assert_eq!(known, schemas);
        assert!(KNOWN_WORDS[KNOWN_TYPES..].iter().all(|w| !w.contains('.')));
    }

    proptest! {
        /// The scanner's reading of `data` is serde's wherever it gives one, and it gives one
        /// wherever serde reads the data without error, but for escaped keys (left to serde).
        /// Keys here are unescaped and values at most two deep: `decode_is_the_serde_path` and the
        /// chain's tests cover the rest.
        #[test]
        fn wire_data_scan_is_serde(data in any_data()) {
            let bytes = socai_chain::canonical_json(&data);
            let serde = serde_json::from_slice::<WireData<'_>>(&bytes);
            match WireData::scan(&bytes) {
                Some(scanned) => prop_assert_eq!(Some(scanned), serde.ok()),
                None => prop_assert!(serde.is_err(), "{}", String::from_utf8_lossy(&bytes)),
            }
        }

        /// A type this build does not know never stops the fold, whatever its data holds (a
        /// known key with another type included); a known type whose data serde cannot read
        /// still does, with serde's words.
        #[test]
        fn future_types_never_stop_the_fold(
            data in any_data(),
            future in "dossier\\.transferred|agency\\.renamed",
            known in "dossier\\.(fee_paid|processing_step|refused)|procedure\\.published",
        ) {
            let entry = |kind: &str| socai_chain::Entry {
                seq: 0,
                prev: socai_chain::Hash::ZERO,
                recorded_at: "2026-06-01T00:00:00Z".into(),
                event: json!({"id": "E", "type": kind, "agency": "A", "procedure": "p", "dossier": "d",
                    "occurred_at": "2026-05-31T08:00:00+07:00", "schema": 1, "data": data}),
                personal_commitment: None,
            }
            .to_canonical();
            let mut p = Projection::new();
            prop_assert!(p.apply(0, &entry(&future)).is_ok());
            prop_assert_eq!(p.anomalies().unknown_type, 1);
            prop_assert_eq!(p.tree_size(), 1);
            let known_entry = entry(&known);
            let wire = serde_json::from_slice::<WireEntry<'_>>(&known_entry);
            match Decoded::decode(0, &known_entry) {
                Ok(_) => prop_assert!(wire.is_ok()),
                Err(e) => {
                    let serde = wire.err().map(|e| e.to_string()).unwrap_or_default();
                    prop_assert!(!serde.is_empty() && e.to_string().contains(&serde), "{e} / {serde}");
                }
            }
        }

        /// A whole entry decodes to the same as the serde path.
        #[test]
        fn decode_is_the_serde_path(data in any_data(), kind in "dossier\\.(submitted|accepted)|procedure\\.published", agency in "\\PC{0,6}") {
            let entry = socai_chain::Entry {
                seq: 7,
                prev: socai_chain::Hash([1; 32]),
                recorded_at: "2026-06-01T00:00:00Z".into(),
                event: json!({"id": "E", "type": kind, "agency": agency, "procedure": "p\"1", "dossier": "d",
                    "occurred_at": "2026-05-31T08:00:00+07:00", "schema": 1, "data": data}),
                personal_commitment: None,
            }
            .to_canonical();
            let serde = serde_json::from_slice::<WireEntry<'_>>(&entry).ok();
            // The fast path is the one taken, and it falls back exactly where serde fails.
            let view = socai_chain::Entry::scan(&entry);
            prop_assert!(view.is_some());
            let data = view.unwrap().data;
            prop_assert_eq!(
                WireData::scan(data).is_some(),
                serde_json::from_slice::<WireData<'_>>(data).is_ok()
            );
            match Decoded::decode(7, &entry) {
                Ok(decoded) => {
                    let serde = serde.expect("serde reads what decode reads");
                    prop_assert_eq!(decoded.event, serde.event);
                    prop_assert_eq!(decoded.recorded, parse_timestamp(&serde.recorded_at).unwrap());
                }
                Err(_) => prop_assert!(serde.is_none()),
            }
        }
    }
}
