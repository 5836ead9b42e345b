//! The National Public Service Portal's dossier sync bodies, turned into Sổ Cái events.
//!
//! Agency one-stop-shop systems push their dossiers to the portal's integration service in two
//! bodies (as the OpenCPS platform builds them for the DVCQG integration):
//! `{"service":"DongBoHoSoMC","madonvi":…,"isUpdating":…,"data":[dossier…]}`, a snapshot of each
//! dossier (status `TrangThaiHoSo` 1–10, dates, fees, supplements, results), and
//! `{"service":"CapNhatTienDoHoSoMC","data":[progress…]}`, one processing step each.
//!
//! A snapshot says where a dossier is, not what happened since the last one. [`derive`] compares
//! each dossier with what the ledger already holds for it (its entries, given by the caller) and
//! emits the events implied by what changed, in lifecycle order, with deterministic ids
//! (`<MaHoSo>:<what>`): the same body twice yields nothing new, a body that skips states yields
//! the missing events, a stale body (out of order) yields nothing it does not add. The mapping,
//! field by field, is `schemas/dvc-sync.md`.
//!
//! Pure: no clock (the time a fact has no date for is the message's JetStream time, given by the
//! caller), no storage, no NATS. The ledger calls it while validating, in stream order, so two
//! replicas derive byte-identical events.

use std::collections::HashSet;

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// `service` of a dossier snapshot body.
pub const SERVICE_SYNC: &str = "DongBoHoSoMC";
/// `service` of a processing-progress body.
pub const SERVICE_PROGRESS: &str = "CapNhatTienDoHoSoMC";

/// The dossier states of the portal (TrangThaiHoSo), as DESIGN.md maps them to event types.
pub const STATUS_NAMES: [&str; 10] = [
    "Mới đăng ký",
    "Được tiếp nhận",
    "Không được tiếp nhận",
    "Đang xử lý",
    "Yêu cầu bổ sung giấy tờ",
    "Yêu cầu thực hiện nghĩa vụ tài chính",
    "Công dân yêu cầu rút hồ sơ",
    "Dừng xử lý",
    "Đã xử lý xong",
    "Đã trả kết quả",
];

/// The id a body is answered under in receipts: `sync-` and the first 32 hex digits of the
/// SHA-256 of its bytes (the publisher computes it the same way).
pub fn sync_id(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("sync-{}", &hex::encode(digest)[..32])
}

/// An event the ledger already holds for a dossier (from its entry: no personal data).
#[derive(Debug, Clone, PartialEq)]
pub struct KnownEvent {
    pub id: String,
    pub event_type: String,
    pub agency: String,
    pub procedure: String,
    pub data: Value,
}

impl KnownEvent {
    /// From an event envelope (`{id,type,agency,procedure,dossier,occurred_at,schema,data}`).
    pub fn from_envelope(event: &Value) -> Option<KnownEvent> {
        let s = |k: &str| event.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(KnownEvent {
            id: s("id")?,
            event_type: s("type")?,
            agency: s("agency")?,
            procedure: s("procedure")?,
            data: event.get("data").cloned().unwrap_or(Value::Null),
        })
    }
}

/// One result of a body: an event to append, or a part that could not be mapped.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An event envelope (with `personal` when the body carried personal data), to be validated
    /// and appended like any published event.
    Event(Value),
    Rejected(SyncRejection),
}

/// Why (part of) a body was not mapped, and its bytes as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRejection {
    /// The dossier (MaHoSo) concerned; `None` when the whole body is refused.
    pub dossier: Option<String>,
    /// JSON pointer into the body, e.g. `/data/3/NgayHenTra`.
    pub path: String,
    pub reason: String,
    /// What can be sent again once fixed: the whole body as sent, or, for one dossier, a body
    /// of the same service and agency whose `data` holds that dossier's JSON object exactly as
    /// sent.
    pub raw: Vec<u8>,
    /// The event this refusal is filed under on REJECTED: the dossier's submission as the
    /// ledger holds it (else `<MaHoSo>:submitted`), which holds its personal data, so that
    /// redacting it erases this copy too. `None` for a whole body.
    pub event_id: Option<String>,
}

/// The ledger's history could not be read: nothing of the body may be decided (the caller
/// stops and reads the body again later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryError(pub String);

impl std::fmt::Display for HistoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the ledger's history could not be read: {}", self.0)
    }
}

impl std::error::Error for HistoryError {}

/// What a body yields.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// [`sync_id`] of the body.
    pub id: String,
    pub items: Vec<Item>,
    /// Ids of events the ledger already holds whose personal data this body carries again (a
    /// dossier's submission, a processing step): the body is one more copy of it, to erase when
    /// that event is redacted.
    pub copies: Vec<String>,
}

impl Derived {
    pub fn events(&self) -> impl Iterator<Item = &Value> {
        self.items.iter().filter_map(|i| match i {
            Item::Event(e) => Some(e),
            Item::Rejected(_) => None,
        })
    }

    pub fn rejections(&self) -> impl Iterator<Item = &SyncRejection> {
        self.items.iter().filter_map(|i| match i {
            Item::Rejected(r) => Some(r),
            Item::Event(_) => None,
        })
    }
}

/// Where [`derive`] learns what the ledger holds: a dossier's events, in ledger order, including
/// those derived earlier in the same stream but not committed yet. An `Err` stops [`derive`]
/// with a [`HistoryError`].
pub trait History {
    fn events_of(&mut self, agency: &str, dossier: &str) -> Result<Vec<KnownEvent>, String>;
}

impl<F> History for F
where
    F: FnMut(&str, &str) -> Result<Vec<KnownEvent>, String>,
{
    fn events_of(&mut self, agency: &str, dossier: &str) -> Result<Vec<KnownEvent>, String> {
        self(agency, dossier)
    }
}

/// What the caller checks of each event a dossier implies before the dossier is taken (its
/// schemas, its subject, its time against the message's): `Err((path, reason))` refuses the
/// whole dossier, so a dossier is never half taken.
pub type Check<'a> = dyn FnMut(&Value) -> Result<(), (String, String)> + 'a;

/// A [`History`] that also holds what this body yielded so far (a dossier listed twice in one
/// body is compared with what its first record yielded) and remembers a read failure.
struct Tracking<'h> {
    inner: &'h mut dyn History,
    body: std::collections::HashMap<String, Vec<KnownEvent>>,
    failed: Option<String>,
}

impl History for Tracking<'_> {
    fn events_of(&mut self, agency: &str, dossier: &str) -> Result<Vec<KnownEvent>, String> {
        let mut known = match self.inner.events_of(agency, dossier) {
            Ok(known) => known,
            Err(e) => {
                self.failed.get_or_insert(e.clone());
                return Err(e);
            }
        };
        if let Some(more) = self.body.get(dossier) {
            known.extend(more.iter().cloned());
        }
        Ok(known)
    }
}

/// Turns one body received on `dvc.sync.<agency>` at `received` (its JetStream time) into
/// events. Each dossier is mapped whole or not at all: a dossier with a field that cannot be
/// mapped, or an event that `check` refuses, gives one rejection naming it, and the body's
/// other dossiers still go through. The whole body is refused only when it is not a body at all
/// (not JSON, an unknown `service`, no `data` list) or names another agency in `madonvi`.
pub fn derive(
    body: &[u8],
    agency: &str,
    received: jiff::Timestamp,
    history: &mut dyn History,
    check: &mut Check<'_>,
) -> Result<Derived, HistoryError> {
    let id = sync_id(body);
    let refuse = |path: &str, reason: String| {
        Ok(Derived {
            id: id.clone(),
            items: vec![Item::Rejected(SyncRejection {
                dossier: None,
                path: path.to_owned(),
                reason,
                raw: body.to_vec(),
                event_id: None,
            })],
            copies: Vec::new(),
        })
    };
    let parsed: Body = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                "",
                format!(
                    "not a portal sync body ({e}); expected {{\"service\":\"{SERVICE_SYNC}\" or \"{SERVICE_PROGRESS}\",\"madonvi\":…,\"data\":[…]}}"
                ),
            );
        }
    };
    let service = match parsed.service.as_deref() {
        Some(s @ (SERVICE_SYNC | SERVICE_PROGRESS)) => s,
        Some(other) => {
            return refuse(
                "/service",
                format!(
                    "service {other:?} is not mapped: socai takes {SERVICE_SYNC} and {SERVICE_PROGRESS}"
                ),
            );
        }
        None => {
            return refuse(
                "/service",
                format!("no service: expected {SERVICE_SYNC} or {SERVICE_PROGRESS}"),
            );
        }
    };
    if let Some(madonvi) = parsed.madonvi.as_ref().and_then(code_of)
        && madonvi != agency
    {
        return refuse(
            "/madonvi",
            format!(
                "madonvi {madonvi:?} is another agency's code: this body came on agency {agency:?}'s subject, and an agency may only send its own dossiers"
            ),
        );
    }
    let Some(data) = parsed.data else {
        return refuse("/data", "no data list of dossiers".to_owned());
    };
    let now = vn_time(received);
    let is_updating = parsed.is_updating.unwrap_or(Value::Bool(false));
    let mut history = Tracking {
        inner: history,
        body: std::collections::HashMap::new(),
        failed: None,
    };
    let mut items = Vec::new();
    let mut copies = Vec::new();
    for (i, raw) in data.iter().enumerate() {
        // The dossier alone, as a body that can be sent again once fixed.
        let resend = resend(service, agency, &is_updating, raw.get());
        let mut out = Out {
            items: Vec::new(),
            copies: Vec::new(),
            base: format!("/data/{i}"),
            raw: resend.as_bytes(),
        };
        let mapped = match serde_json::from_str::<Map<String, Value>>(raw.get()) {
            Err(_) => Err(out.fail(None, "", "not a JSON object".to_owned())),
            Ok(record) => {
                let dossier = Dossier {
                    record: &record,
                    agency,
                    now: &now,
                };
                if service == SERVICE_SYNC {
                    dossier.snapshot(&mut history, &mut out)
                } else {
                    dossier.progress(&mut history, &mut out)
                }
            }
        };
        if let Some(e) = history.failed.take() {
            return Err(HistoryError(e));
        }
        // Every event the dossier implies must pass the caller's checks, or none is taken.
        let mapped = mapped.and_then(|()| {
            for item in &out.items {
                if let Item::Event(event) = item
                    && let Err((path, reason)) = check(event)
                {
                    let dossier = event["dossier"].as_str().unwrap_or_default();
                    let event_type = event["type"].as_str().unwrap_or_default();
                    return Err(out.fail(
                        Some(dossier),
                        "",
                        format!("the {event_type} it implies is not valid: {path}: {reason}"),
                    ));
                }
            }
            Ok(())
        });
        match mapped {
            Ok(()) => {
                // A correction refused beside the dossier's events is filed like a refusal.
                for item in out.items.iter_mut() {
                    if let Item::Rejected(r) = item
                        && let (Some(d), None) = (r.dossier.clone(), &r.event_id)
                    {
                        r.event_id = Some(filing_id(&mut history, agency, &d)?);
                    }
                }
                for item in &out.items {
                    if let Item::Event(event) = item
                        && let (Some(known), Some(dossier)) =
                            (KnownEvent::from_envelope(event), event["dossier"].as_str())
                    {
                        history
                            .body
                            .entry(dossier.to_owned())
                            .or_default()
                            .push(known);
                    }
                }
                items.append(&mut out.items);
                copies.append(&mut out.copies);
            }
            Err(mut rejection) => {
                if let Some(d) = rejection.dossier.clone() {
                    rejection.event_id = Some(filing_id(&mut history, agency, &d)?);
                }
                items.push(Item::Rejected(rejection));
            }
        }
    }
    Ok(Derived { id, items, copies })
}

/// The event a refusal about dossier `d` is filed under: its submission as the ledger holds it
/// (it holds the personal data a redaction erases), else `<MaHoSo>:submitted`.
fn filing_id(history: &mut Tracking, agency: &str, d: &str) -> Result<String, HistoryError> {
    let held = history
        .events_of(agency, d)
        .map_err(HistoryError)?
        .into_iter()
        .find(|e| e.agency == agency && e.event_type == "dossier.submitted");
    Ok(held.map_or_else(|| event_id(d, "submitted"), |e| e.id))
}

/// A body as [`derive`] reads it.
#[derive(serde::Deserialize)]
struct Body<'a> {
    service: Option<String>,
    madonvi: Option<Value>,
    #[serde(rename = "isUpdating")]
    is_updating: Option<Value>,
    #[serde(borrow)]
    data: Option<Vec<&'a RawValue>>,
}

/// One dossier of a body as a body of its own, its JSON exactly as sent.
fn resend(service: &str, agency: &str, is_updating: &Value, dossier: &str) -> String {
    format!(
        "{{\"service\":{},\"madonvi\":{},\"isUpdating\":{},\"data\":[{}]}}",
        Value::from(service),
        Value::from(agency),
        is_updating,
        dossier
    )
}

/// The bytes [`derive`] keeps for a part refused at `path` of `body` (see
/// [`SyncRejection::raw`]): the dossier at `/data/<i>…` as a body of its own, else the whole
/// body. A ledger answering a body again from what it recorded uses this.
pub fn refused_bytes(body: &[u8], agency: &str, path: &str) -> Vec<u8> {
    let index = path
        .strip_prefix("/data/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|i| i.parse::<usize>().ok());
    let parsed = serde_json::from_slice::<Body>(body).ok();
    match (index, parsed) {
        (Some(i), Some(b)) => {
            match (b.service.as_deref(), b.data.as_ref().and_then(|d| d.get(i))) {
                (Some(service), Some(raw)) => resend(
                    service,
                    agency,
                    &b.is_updating.unwrap_or(Value::Bool(false)),
                    raw.get(),
                )
                .into_bytes(),
                _ => body.to_vec(),
            }
        }
        _ => body.to_vec(),
    }
}

/// Collects one dossier's items; a hard failure replaces them with one rejection.
struct Out<'a> {
    items: Vec<Item>,
    copies: Vec<String>,
    base: String,
    raw: &'a [u8],
}

impl Out<'_> {
    fn fail(&self, dossier: Option<&str>, field: &str, reason: String) -> SyncRejection {
        let path = if field.is_empty() {
            self.base.clone()
        } else {
            format!("{}/{field}", self.base)
        };
        let what = match dossier {
            Some(d) => format!("dossier {d:?}"),
            None => format!("the dossier at {}", self.base),
        };
        let field = if field.is_empty() {
            String::new()
        } else {
            format!(", field {field}")
        };
        SyncRejection {
            dossier: dossier.map(str::to_owned),
            path,
            reason: format!("{what}{field}: {reason}"),
            raw: self.raw.to_vec(),
            event_id: None,
        }
    }
}

/// A code that may arrive as a string or a number (`"2"` or `2`); `None` when absent or empty.
fn code_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        _ => None,
    }
}

/// RFC 3339 in Vietnam's offset (+07:00, no daylight saving), whole seconds.
fn vn_time(t: jiff::Timestamp) -> String {
    let offset = jiff::tz::Offset::constant(7);
    let dt = offset.to_datetime(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+07:00",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// `yyyyMMddHHmmss` (Asia/Ho_Chi_Minh) → RFC 3339 `+07:00`.
fn parse_portal_time(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{s:?} is not a portal time (yyyyMMddHHmmss, 14 digits, Asia/Ho_Chi_Minh)"
        ));
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<i16>().expect("digits");
    let (y, mo, d, h, mi, se) = (n(0..4), n(4..6), n(6..8), n(8..10), n(10..12), n(12..14));
    jiff::civil::DateTime::new(y, mo as i8, d as i8, h as i8, mi as i8, se as i8, 0)
        .map_err(|e| format!("{s:?} is not a valid date and time: {e}"))?;
    Ok(format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}+07:00"
    ))
}

/// A portal time as written in ids: `2026-11-10T17:00:00+07:00` → `20261110170000` (the times
/// the adapter writes are all +07:00).
fn compact(rfc3339: &str) -> String {
    rfc3339
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .collect()
}

fn instant(rfc3339: &str) -> Option<jiff::Timestamp> {
    rfc3339.parse().ok()
}

/// A piece of an event id: kept when it is a short code, else 16 hex digits of its SHA-256.
fn id_part(s: &str) -> String {
    let ok = !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        s.to_owned()
    } else {
        format!("h{}", &hex::encode(Sha256::digest(s.as_bytes()))[..16])
    }
}

/// The deterministic id of a derived event: `<MaHoSo>:<what>` (the dossier hashed when the id
/// would be longer than the 128 characters an agency's id may have), e.g.
/// `G09.20-20260609-0092637:submitted`.
pub fn event_id(dossier: &str, what: &str) -> String {
    let id = format!("{dossier}:{what}");
    if id.len() <= 128 {
        id
    } else {
        format!(
            "h{}:{what}",
            &hex::encode(Sha256::digest(dossier.as_bytes()))[..24]
        )
    }
}

fn dossier_code_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn procedure_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A single-line label of at most 500 characters (the schemas' `label`), or `None`.
fn label(s: &str) -> Option<String> {
    let line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    (!line.is_empty()).then(|| line.chars().take(500).collect())
}

/// What the ledger holds for a dossier, as far as deriving needs it.
#[derive(Debug, Default)]
struct State {
    procedure: Option<String>,
    ids: HashSet<String>,
    channel: Option<String>,
    submitted: bool,
    /// The id of the dossier's submission, which holds its applicant's personal data.
    submitted_id: Option<String>,
    accepted: bool,
    refused: bool,
    withdrawn: bool,
    stopped: bool,
    resolved: bool,
    returned: bool,
    /// The current promised date.
    due: Option<jiff::Timestamp>,
}

impl State {
    fn of(events: &[KnownEvent]) -> State {
        let mut state = State::default();
        for e in events {
            state.apply(&e.id, &e.event_type, &e.procedure, &e.data);
        }
        state
    }

    fn apply(&mut self, id: &str, event_type: &str, procedure: &str, data: &Value) {
        self.ids.insert(id.to_owned());
        if self.procedure.is_none() {
            self.procedure = Some(procedure.to_owned());
        }
        let time = |k: &str| data.get(k).and_then(Value::as_str).and_then(instant);
        match event_type {
            "dossier.submitted" => {
                self.submitted = true;
                self.submitted_id = Some(id.to_owned());
                self.channel = data
                    .get("channel")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            "dossier.accepted" => {
                self.accepted = true;
                self.due = time("due_at").or(self.due);
            }
            "dossier.deadline_extended" | "dossier.supplement_received" => {
                self.due = time("new_due_at").or(self.due);
            }
            "dossier.refused" => self.refused = true,
            "dossier.withdrawn" => self.withdrawn = true,
            "dossier.stopped" => self.stopped = true,
            "dossier.resolved" => self.resolved = true,
            "dossier.result_returned" => self.returned = true,
            _ => {}
        }
    }

    /// Whether an event of this type and id adds anything (one-off types count once, whatever
    /// their id: a dossier published natively and then synced is not submitted twice).
    fn adds(&self, event_type: &str, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        !match event_type {
            "dossier.submitted" => self.submitted,
            "dossier.accepted" => self.accepted,
            "dossier.refused" => self.refused,
            "dossier.withdrawn" => self.withdrawn,
            "dossier.stopped" => self.stopped,
            "dossier.resolved" => self.resolved,
            "dossier.result_returned" => self.returned,
            _ => false,
        }
    }
}

/// What the ledger held before a record: enough to tell a record that contradicts it (a
/// lifecycle that cannot be: events after a refusal, withdrawal or stop; a refusal after an
/// acceptance; a withdrawal or stop after a resolution). A stale record (out of order) adds
/// nothing and contradicts nothing.
struct Before {
    ended: Option<&'static str>,
    accepted: bool,
    resolved: bool,
}

impl Before {
    fn of(state: &State) -> Before {
        Before {
            ended: [
                (state.refused, "dossier.refused"),
                (state.withdrawn, "dossier.withdrawn"),
                (state.stopped, "dossier.stopped"),
            ]
            .into_iter()
            .find_map(|(held, t)| held.then_some(t)),
            accepted: state.accepted,
            resolved: state.resolved,
        }
    }

    fn contradicted_by(&self, status: u8, new: &[Item]) -> Option<String> {
        let types: Vec<&str> = new
            .iter()
            .filter_map(|i| match i {
                Item::Event(e) => e["type"].as_str(),
                Item::Rejected(_) => None,
            })
            .collect();
        // Steps and fees may still be reported after an end; the lifecycle may not go on.
        let lifecycle: Vec<&str> = types
            .iter()
            .copied()
            .filter(|t| {
                !matches!(
                    *t,
                    "dossier.processing_step" | "dossier.fee_requested" | "dossier.fee_paid"
                )
            })
            .collect();
        if let Some(end) = self.ended
            && !lifecycle.is_empty()
        {
            return Some(format!(
                "status {status} would add {} after the {end} the ledger holds for this dossier; an ended dossier cannot go on (a committed fact cannot be corrected by a sync body)",
                lifecycle.join(", ")
            ));
        }
        if types.contains(&"dossier.refused") && self.accepted {
            return Some(format!(
                "status {status} (not received) contradicts the acceptance the ledger holds for this dossier"
            ));
        }
        if (types.contains(&"dossier.withdrawn") || types.contains(&"dossier.stopped"))
            && self.resolved
        {
            return Some(format!(
                "status {status} (withdrawn or stopped) comes after the resolution the ledger holds for this dossier"
            ));
        }
        None
    }
}

/// One dossier record of a body.
struct Dossier<'a> {
    record: &'a Map<String, Value>,
    agency: &'a str,
    /// The message's time in +07:00: the time of a fact the body gives no date for.
    now: &'a str,
}

/// Events of one dossier being built: checked against and added to the state in order.
struct Emitter<'a> {
    agency: &'a str,
    dossier: &'a str,
    procedure: String,
    state: State,
    items: Vec<Item>,
    /// Held events whose personal data the body carries again.
    copies: Vec<String>,
}

impl<'a> Emitter<'a> {
    fn new(agency: &'a str, dossier: &'a str, procedure: String, state: State) -> Emitter<'a> {
        Emitter {
            agency,
            dossier,
            procedure,
            state,
            items: Vec::new(),
            copies: Vec::new(),
        }
    }

    fn emit(
        &mut self,
        event_type: &str,
        what: &str,
        occurred_at: &str,
        data: Value,
        personal: Option<Map<String, Value>>,
    ) {
        let id = event_id(self.dossier, what);
        if !self.state.adds(event_type, &id) {
            if personal.as_ref().is_some_and(|p| !p.is_empty()) {
                let held = match event_type {
                    "dossier.submitted" => self.state.submitted_id.clone(),
                    _ => Some(id),
                };
                self.copies.extend(held);
            }
            return;
        }
        self.state
            .apply(&id, event_type, &self.procedure.clone(), &data);
        let mut event = json!({
            "id": id,
            "type": event_type,
            "agency": self.agency,
            "procedure": self.procedure,
            "dossier": self.dossier,
            "occurred_at": occurred_at,
            "schema": 1,
            "data": data,
        });
        if let Some(p) = personal.filter(|p| !p.is_empty()) {
            event["personal"] = Value::Object(p);
        }
        self.items.push(Item::Event(event));
    }
}

/// Portal fields that identify a person, and the `personal` key each goes to.
const PERSONAL_FIELDS: [(&str, &str); 12] = [
    ("ChuHoSo", "full_name"),
    ("SoGiayToChuHoSo", "citizen_id"),
    ("SoCMND", "citizen_id"),
    ("SoDinhDanh", "citizen_id"),
    ("DiaChiChuHoSo", "address"),
    ("DiaChi", "address"),
    ("SoDienThoai", "phone"),
    ("Email", "email"),
    ("Fax", "fax"),
    ("MaDoiTuong", "portal_applicant_id"),
    ("TrichYeuHoSo", "summary"),
    ("GhiChu", "note"),
];

impl Dossier<'_> {
    fn text(&self, field: &str) -> Option<String> {
        self.record.get(field).and_then(code_of)
    }

    fn code(
        &self,
        out: &Out,
        dossier: Option<&str>,
        field: &str,
    ) -> Result<Option<String>, SyncRejection> {
        match self.record.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match code_of(v) {
                Some(c) => Ok(Some(c)),
                None if matches!(v, Value::String(_)) => Ok(None),
                None => Err(out.fail(dossier, field, format!("{v} is not a code"))),
            },
        }
    }

    /// A portal time field, `None` when absent or empty.
    fn time(&self, out: &Out, dossier: &str, field: &str) -> Result<Option<String>, SyncRejection> {
        match self.code(out, Some(dossier), field)? {
            None => Ok(None),
            Some(s) => parse_portal_time(&s)
                .map(Some)
                .map_err(|e| out.fail(Some(dossier), field, e)),
        }
    }

    /// MaHoSo, checked.
    fn dossier_code(&self, out: &Out) -> Result<String, SyncRejection> {
        let code = self.text("MaHoSo").ok_or_else(|| {
            out.fail(
                None,
                "MaHoSo",
                "missing: every dossier needs its code".into(),
            )
        })?;
        if !dossier_code_ok(&code) {
            return Err(out.fail(
                None,
                "MaHoSo",
                format!(
                    "{code:?} is not a dossier code (1-128 letters, digits, '.', '_', ':', '-')"
                ),
            ));
        }
        Ok(code)
    }

    fn load(
        &self,
        history: &mut dyn History,
        out: &Out,
        dossier: &str,
    ) -> Result<State, SyncRejection> {
        // A read failure is remembered by `Tracking`: `derive` returns it, this rejection is
        // never used.
        let known = history
            .events_of(self.agency, dossier)
            .map_err(|e| out.fail(Some(dossier), "", e))?;
        Ok(State::of(
            &known
                .into_iter()
                .filter(|e| e.agency == self.agency)
                .collect::<Vec<_>>(),
        ))
    }

    /// A DongBoHoSoMC dossier: the events its status, dates and lists imply that the ledger
    /// does not hold yet, in lifecycle order.
    fn snapshot(&self, history: &mut dyn History, out: &mut Out) -> Result<(), SyncRejection> {
        let d = self.dossier_code(out)?;
        let d = d.as_str();
        let procedure = self.text("MaTTHC").ok_or_else(|| {
            out.fail(
                Some(d),
                "MaTTHC",
                "missing: the procedure code is needed for every event".into(),
            )
        })?;
        if !procedure_ok(&procedure) {
            return Err(out.fail(
                Some(d),
                "MaTTHC",
                format!("{procedure:?} is not a procedure code"),
            ));
        }
        let status = self.status(out, d, "TrangThaiHoSo")?.ok_or_else(|| {
            out.fail(
                Some(d),
                "TrangThaiHoSo",
                "missing: the dossier's status (1-10) is needed".into(),
            )
        })?;
        let state = self.load(history, out, d)?;
        let before = Before::of(&state);
        if let Some(known) = &state.procedure
            && *known != procedure
        {
            return Err(out.fail(
                Some(d),
                "MaTTHC",
                format!("{procedure:?} differs from procedure {known:?} the ledger holds for this dossier; a committed fact cannot be corrected by a sync body"),
            ));
        }
        let received_at = self.time(out, d, "NgayTiepNhan")?;
        let due = self.time(out, d, "NgayHenTra")?;
        let returned_at = self.time(out, d, "NgayTra")?;
        let finished_at = self.time(out, d, "NgayKetThucXuLy")?;
        let channel = match self.code(out, Some(d), "KenhThucHien")?.as_deref() {
            None => None,
            Some("1") => Some("counter"),
            Some("2") => Some("online"),
            Some("3") => Some("postal"),
            Some(other) => {
                return Err(out.fail(
                    Some(d),
                    "KenhThucHien",
                    format!("{other:?} is not a channel (1 counter, 2 online, 3 postal)"),
                ));
            }
        };
        let applicant = match self.code(out, Some(d), "LoaiDoiTuong")?.as_deref() {
            None => None,
            Some("1") => Some("citizen"),
            Some("2") => Some("business"),
            Some("3") => Some("organization"),
            Some(other) => {
                return Err(out.fail(
                    Some(d),
                    "LoaiDoiTuong",
                    format!(
                        "{other:?} is not an applicant kind (1 citizen, 2 business, 3 organization)"
                    ),
                ));
            }
        };
        let flag = |field: &str| -> Result<Option<bool>, SyncRejection> {
            match self.code(out, Some(d), field)?.as_deref() {
                None => Ok(None),
                Some("1" | "true" | "True") => Ok(Some(true)),
                Some("0" | "false" | "False") => Ok(Some(false)),
                Some(other) => Err(out.fail(Some(d), field, format!("{other:?} is not 0 or 1"))),
            }
        };
        let paid_online = flag("DuocThanhToanTrucTuyen")?;
        let digitized = flag("HoSoCoThanhPhanSoHoa")?;
        let return_method = match self.code(out, Some(d), "HinhThuc")?.as_deref() {
            None => None,
            Some("0") => Some("counter"),
            Some("1") => Some("postal"),
            Some("2") => Some("electronic"),
            Some(other) => {
                return Err(out.fail(Some(d), "HinhThuc", format!("{other:?} is not a way of returning the result (0 counter, 1 postal, 2 electronic)")));
            }
        };
        let supplements = self.supplements(out, d)?;
        let fees = self.fees(out, d)?;
        let results = self.results(out, d)?;
        let personal: Map<String, Value> = PERSONAL_FIELDS
            .iter()
            .filter_map(|(field, key)| Some(((*key).to_owned(), Value::String(self.text(field)?))))
            .collect();

        // A committed channel is not rewritten (a correction is reported, the rest goes on).
        let mut corrections = Vec::new();
        if let (Some(held), Some(now)) = (&state.channel, channel)
            && held != now
        {
            corrections.push(out.fail(
                Some(d),
                "KenhThucHien",
                format!("{now:?} differs from channel {held:?} the ledger holds for this dossier; a committed fact cannot be corrected by a sync body (the dossier's other changes were recorded)"),
            ));
        }
        let mut e = Emitter::new(self.agency, d, procedure, state);
        let at = |t: &Option<String>| t.clone().unwrap_or_else(|| self.now.to_owned());

        // 1 submitted.
        if e.state.adds("dossier.submitted", &event_id(d, "submitted")) {
            let Some(channel) = channel else {
                return Err(out.fail(Some(d), "KenhThucHien", "missing: the channel (1 counter, 2 online, 3 postal) is needed to record the submission; portal versions without KenhThucHien cannot say it".into()));
            };
            let mut data = json!({ "channel": channel });
            if let Some(kind) = applicant {
                data["applicant_kind"] = kind.into();
            }
            e.emit(
                "dossier.submitted",
                "submitted",
                &at(&received_at),
                data,
                Some(personal),
            );
        } else if !personal.is_empty() {
            // Held already: this body is one more copy of its applicant's personal data.
            e.copies.extend(e.state.submitted_id.clone());
        }
        // 3 refused: nothing else follows.
        if status == 3 {
            e.emit("dossier.refused", "refused", &at(&finished_at), json!({ "reason": format!("Không được tiếp nhận (TrangThaiHoSo 3, {SERVICE_SYNC})") }), None);
            return self.finish(out, e, corrections, &before, status);
        }
        // 2 accepted: any status past acceptance, or a withdrawal/stop with a due date set.
        let accepted =
            matches!(status, 2 | 4 | 5 | 6 | 9 | 10) || (matches!(status, 7 | 8) && due.is_some());
        if accepted && e.state.adds("dossier.accepted", &event_id(d, "accepted")) {
            let first_due = supplements
                .first()
                .and_then(|s| s.due_before.clone())
                .or_else(|| due.clone());
            let Some(first_due) = first_due else {
                return Err(out.fail(Some(d), "NgayHenTra", "missing: the promised date is needed to record the acceptance (TrangThaiHoSo 2 and later)".into()));
            };
            let mut data = json!({ "due_at": first_due });
            if digitized == Some(true) {
                data["digitized_inputs"] = true.into();
            }
            if let Some(unit) = self.text("DonViXuLy").as_deref().and_then(label) {
                data["handler_unit"] = unit.into();
            }
            e.emit(
                "dossier.accepted",
                "accepted",
                &at(&received_at),
                data,
                None,
            );
        }
        // 6 fees asked (the body has no date for them: the message's time).
        for fee in &fees {
            let mut data = json!({ "amount_vnd": fee.amount });
            if let Some(name) = &fee.name {
                data["fee_name"] = name.clone().into();
            }
            e.emit(
                "dossier.fee_requested",
                &format!("fee:{}:requested", fee.key),
                self.now,
                data,
                None,
            );
        }
        // 5 supplements asked and received (the clock pauses between them).
        for s in &supplements {
            let note: Map<String, Value> = s
                .note
                .iter()
                .map(|n| ("note".to_owned(), Value::String(n.clone())))
                .collect();
            e.emit(
                "dossier.supplement_requested",
                &format!("supplement:{}:requested", s.key),
                &s.asked_at,
                json!({ "reason": format!("Yêu cầu bổ sung hồ sơ (DanhSachHoSoBoSung, {SERVICE_SYNC})") }),
                Some(note),
            );
            if let Some(received) = &s.received_at {
                let mut data = json!({});
                if let Some(due) = &s.due_after {
                    data["new_due_at"] = due.clone().into();
                }
                e.emit(
                    "dossier.supplement_received",
                    &format!("supplement:{}:received", s.key),
                    received,
                    data,
                    None,
                );
            }
        }
        // A later promised date than the ledger's, not explained by a supplement: an extension.
        // (An earlier one, from a stale body, changes nothing.) The body has no date for it: the
        // message's time, or the end of processing if that came first (it was extended before).
        if let (Some(new_due), Some(current)) = (&due, e.state.due)
            && e.state.accepted
            && instant(new_due).is_some_and(|t| t > current)
        {
            let at = match &finished_at {
                Some(end) if instant(end) < instant(self.now) => end.clone(),
                _ => self.now.to_owned(),
            };
            e.emit(
                "dossier.deadline_extended",
                &format!("extended:{}", compact(new_due)),
                &at,
                json!({ "new_due_at": new_due, "reason": format!("Ngày hẹn trả mới (NgayHenTra, {SERVICE_SYNC})") }),
                None,
            );
        }
        // Fees paid: online when the portal says so; otherwise by the time the result is out.
        let fees_settled = paid_online == Some(true) || matches!(status, 9 | 10);
        if fees_settled {
            for fee in &fees {
                let mut data = json!({ "online": paid_online == Some(true) || fee.online });
                if fee.online || paid_online == Some(true) {
                    data["gateway"] = "dvcqg".into();
                }
                data["amount_vnd"] = fee.amount.into();
                e.emit(
                    "dossier.fee_paid",
                    &format!("fee:{}:paid", fee.key),
                    self.now,
                    data,
                    None,
                );
            }
        }
        match status {
            7 => e.emit("dossier.withdrawn", "withdrawn", &at(&finished_at), json!({ "reason": format!("Công dân yêu cầu rút hồ sơ (TrangThaiHoSo 7, {SERVICE_SYNC})") }), None),
            8 => e.emit("dossier.stopped", "stopped", &at(&finished_at), json!({ "reason": format!("Dừng xử lý (TrangThaiHoSo 8, {SERVICE_SYNC})") }), None),
            9 | 10 => {
                let electronic = results.iter().any(|r| r.electronic);
                let mut data = json!({ "electronic_result": electronic });
                let docs: Vec<Value> = results.iter().filter_map(|r| r.name.clone()).take(20).map(|n| json!({ "name": n })).collect();
                if !docs.is_empty() {
                    data["result_documents"] = docs.into();
                }
                e.emit("dossier.resolved", "resolved", &at(&finished_at), data, None);
                if status == 10 {
                    let Some(method) = return_method else {
                        return Err(out.fail(Some(d), "HinhThuc", "missing: how the result was returned (0 counter, 1 postal, 2 electronic) is needed for TrangThaiHoSo 10".into()));
                    };
                    e.emit("dossier.result_returned", "returned", &at(&returned_at), json!({ "method": method }), None);
                }
            }
            _ => {}
        }
        self.finish(out, e, corrections, &before, status)
    }

    fn finish(
        &self,
        out: &mut Out,
        e: Emitter,
        corrections: Vec<SyncRejection>,
        before: &Before,
        status: u8,
    ) -> Result<(), SyncRejection> {
        if let Some(reason) = before.contradicted_by(status, &e.items) {
            return Err(out.fail(Some(e.dossier), "TrangThaiHoSo", reason));
        }
        out.items.extend(e.items);
        out.copies.extend(e.copies);
        out.items
            .extend(corrections.into_iter().map(Item::Rejected));
        Ok(())
    }

    /// TrangThaiHoSo / TrangThai: 1–10.
    fn status(&self, out: &Out, d: &str, field: &str) -> Result<Option<u8>, SyncRejection> {
        match self.code(out, Some(d), field)? {
            None => Ok(None),
            Some(s) => match s.parse::<u8>() {
                Ok(n @ 1..=10) => Ok(Some(n)),
                _ => Err(out.fail(
                    Some(d),
                    field,
                    format!("{s:?} is not a portal dossier status (1-10)"),
                )),
            },
        }
    }

    fn list(
        &self,
        out: &Out,
        d: &str,
        field: &str,
    ) -> Result<Vec<&Map<String, Value>>, SyncRejection> {
        match self.record.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_object().ok_or_else(|| {
                        out.fail(Some(d), &format!("{field}/{i}"), "not an object".into())
                    })
                })
                .collect(),
            Some(_) => Err(out.fail(Some(d), field, "not a list".into())),
        }
    }

    fn supplements(&self, out: &Out, d: &str) -> Result<Vec<Supplement>, SyncRejection> {
        let mut all = Vec::new();
        for (i, item) in self
            .list(out, d, "DanhSachHoSoBoSung")?
            .into_iter()
            .enumerate()
        {
            let sub = Dossier {
                record: item,
                agency: self.agency,
                now: self.now,
            };
            let field = |f: &str| format!("DanhSachHoSoBoSung/{i}/{f}");
            let time = |f: &str| -> Result<Option<String>, SyncRejection> {
                match sub.code(out, Some(d), f).map_err(|mut r| {
                    r.path = format!("{}/{}", out.base, field(f));
                    r
                })? {
                    None => Ok(None),
                    Some(s) => parse_portal_time(&s)
                        .map(Some)
                        .map_err(|e| out.fail(Some(d), &field(f), e)),
                }
            };
            let asked_at = time("NgayBoSung")?.ok_or_else(|| {
                out.fail(
                    Some(d),
                    &field("NgayBoSung"),
                    "missing: when the supplement was asked for".into(),
                )
            })?;
            let key = sub
                .text("HoSoBoSungId")
                .map_or_else(|| compact(&asked_at), |k| id_part(&k));
            all.push(Supplement {
                key,
                note: sub.text("NoiDungBoSung"),
                asked_at,
                received_at: time("NgayTiepNhanBoSung")?,
                due_before: time("NgayHenTraTruoc")?,
                due_after: time("NgayHenTraMoi")?,
            });
        }
        all.sort_by_key(|s| instant(&s.asked_at));
        Ok(all)
    }

    fn fees(&self, out: &Out, d: &str) -> Result<Vec<Fee>, SyncRejection> {
        let mut all = Vec::new();
        let mut unnamed: std::collections::HashMap<(String, u64), u32> = Default::default();
        for (i, item) in self.list(out, d, "DanhSachLePhi")?.into_iter().enumerate() {
            let sub = Dossier {
                record: item,
                agency: self.agency,
                now: self.now,
            };
            let amount = match item.get("Gia") {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
                    out.fail(
                        Some(d),
                        &format!("DanhSachLePhi/{i}/Gia"),
                        format!("{n} is not a whole number of đồng"),
                    )
                })?,
                Some(Value::String(s)) if s.trim().is_empty() => 0,
                Some(Value::String(s)) => s.trim().parse::<u64>().map_err(|_| {
                    out.fail(
                        Some(d),
                        &format!("DanhSachLePhi/{i}/Gia"),
                        format!("{s:?} is not a whole number of đồng"),
                    )
                })?,
                Some(other) => {
                    return Err(out.fail(
                        Some(d),
                        &format!("DanhSachLePhi/{i}/Gia"),
                        format!("{other} is not an amount"),
                    ));
                }
            };
            if amount == 0 {
                continue;
            }
            if amount > 9_007_199_254_740_991 {
                return Err(out.fail(
                    Some(d),
                    &format!("DanhSachLePhi/{i}/Gia"),
                    format!("{amount} is larger than any fee"),
                ));
            }
            all.push(Fee {
                // Without a code, the fee's name and amount (not its place in the list, which
                // the sender may reorder).
                key: id_part(&sub.text("MaPhiLePhi").unwrap_or_else(|| {
                    let name = sub.text("TenPhiLePhi").unwrap_or_default();
                    // Identical fees (same name and amount) are told apart by their count.
                    let same = unnamed.entry((name.clone(), amount)).or_insert(0u32);
                    *same += 1;
                    format!("{name}-{amount}-{same}")
                })),
                name: sub.text("TenPhiLePhi").as_deref().and_then(label),
                amount,
                online: sub.text("HinhThucThu").as_deref() == Some("2"),
            });
        }
        Ok(all)
    }

    fn results(&self, out: &Out, d: &str) -> Result<Vec<ResultDoc>, SyncRejection> {
        Ok(self
            .list(out, d, "DanhSachGiayToKetQua")?
            .into_iter()
            .map(|item| {
                let sub = Dossier {
                    record: item,
                    agency: self.agency,
                    now: self.now,
                };
                ResultDoc {
                    name: sub.text("TenGiayTo").as_deref().and_then(label),
                    electronic: sub.text("DuongDanTepTinKetQua").is_some(),
                }
            })
            .collect())
    }

    /// A CapNhatTienDoHoSoMC record: a processing step (and the end of the dossier when its
    /// status says refused, withdrawn or stopped). The dossier must be known to the ledger: the
    /// record names no procedure.
    fn progress(&self, history: &mut dyn History, out: &mut Out) -> Result<(), SyncRejection> {
        let d = self.dossier_code(out)?;
        let d = d.as_str();
        let at = self.time(out, d, "ThoiDiemXuLy")?.ok_or_else(|| {
            out.fail(
                Some(d),
                "ThoiDiemXuLy",
                "missing: when the step happened".into(),
            )
        })?;
        let status = self.status(out, d, "TrangThai")?;
        let due = self.time(out, d, "NgayKetThucTheoQuyDinh")?;
        let state = self.load(history, out, d)?;
        let before = Before::of(&state);
        let Some(procedure) = state.procedure.clone() else {
            return Err(out.fail(Some(d), "MaHoSo", format!("the ledger holds no event of this dossier, and {SERVICE_PROGRESS} names no procedure: send the dossier's {SERVICE_SYNC} first")));
        };
        let mut e = Emitter::new(self.agency, d, procedure, state);
        let step = match status {
            Some(n) => format!("{} (TrangThai {n})", STATUS_NAMES[n as usize - 1]),
            None => "Xử lý hồ sơ".to_owned(),
        };
        let mut data = json!({ "step": step });
        if let Some(unit) = self.text("PhongBanXuLy").as_deref().and_then(label) {
            data["handler_unit"] = unit.into();
        }
        if let Some(role) = self.text("ChucDanh").as_deref().and_then(label) {
            data["handler_role"] = role.into();
        }
        if let Some(due) = due {
            data["due_at"] = due.into();
        }
        let personal: Map<String, Value> = [("NguoiXuLy", "handler_name"), ("NoiDungXuLy", "note")]
            .iter()
            .filter_map(|(f, k)| Some(((*k).to_owned(), Value::String(self.text(f)?))))
            .collect();
        // Two steps in the same second differ by status.
        let key = format!("{}-{}", compact(&at), status.unwrap_or(0));
        e.emit(
            "dossier.processing_step",
            &format!("step:{key}"),
            &at,
            data,
            Some(personal),
        );
        match status {
            Some(3) => e.emit("dossier.refused", "refused", &at, json!({ "reason": format!("Không được tiếp nhận (TrangThai 3, {SERVICE_PROGRESS})") }), None),
            Some(7) => e.emit("dossier.withdrawn", "withdrawn", &at, json!({ "reason": format!("Công dân yêu cầu rút hồ sơ (TrangThai 7, {SERVICE_PROGRESS})") }), None),
            Some(8) => e.emit("dossier.stopped", "stopped", &at, json!({ "reason": format!("Dừng xử lý (TrangThai 8, {SERVICE_PROGRESS})") }), None),
            _ => {}
        }
        self.finish(out, e, Vec::new(), &before, status.unwrap_or(4))
    }
}

struct Supplement {
    key: String,
    /// NoiDungBoSung: an official's free text, which may name people: personal.
    note: Option<String>,
    asked_at: String,
    received_at: Option<String>,
    due_before: Option<String>,
    due_after: Option<String>,
}

struct Fee {
    key: String,
    name: Option<String>,
    amount: u64,
    online: bool,
}

struct ResultDoc {
    name: Option<String>,
    electronic: bool,
}

#[cfg(test)]
mod tests;
