//! Typed builders for every event type of the catalogue.
//!
//! One struct per type describes its `data` (mirroring `schemas/events/<type>.json`, the single
//! source of truth); [`EventBuilder`] wraps it in the envelope and validates the result against
//! the same embedded schemas the ledger uses, so a builder never hands out an event the ledger
//! would reject.
//!
//! ```
//! use socai_client::events::{Channel, DossierSubmitted, EventBuilder};
//!
//! let event = EventBuilder::new("G09.20", "1.004227", "G09.20-20260609-0092637")
//!     .occurred_at("2026-06-09T08:15:00+07:00")
//!     .build(DossierSubmitted {
//!         channel: Channel::Online,
//!         vneid_authenticated: Some(true),
//!         applicant_kind: None,
//!     })?;
//! assert_eq!(event.event_type, "dossier.submitted");
//! # Ok::<(), socai_client::events::BuildError>(())
//! ```
//!
//! Timestamps inside `data` (`due_at`, `new_due_at`) are RFC 3339 strings with an offset, e.g.
//! `"2026-06-23T17:00:00+07:00"`; [`vietnam_time`] formats a [`jiff::Timestamp`] that way.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use socai_model::{ErrorCode, Event, Limits, Rejection, SCHEMA_VERSION, Validator};

/// The offset of Vietnam (Asia/Ho_Chi_Minh, no daylight saving time): +07:00.
pub const VIETNAM_OFFSET: jiff::tz::Offset = jiff::tz::offset(7);

/// A fresh event id: a ULID (26 characters, sortable by creation time).
pub fn new_event_id() -> String {
    ulid::Ulid::new().to_string()
}

/// `at` as an RFC 3339 date-time at +07:00, e.g. `"2026-06-09T08:15:00+07:00"`.
pub fn vietnam_time(at: jiff::Timestamp) -> String {
    at.display_with_offset(VIETNAM_OFFSET).to_string()
}

/// The `data` of one event type.
pub trait EventData: Serialize {
    /// The event type, as named in [`socai_model::EVENT_TYPES`].
    const TYPE: &'static str;
}

/// The event would be rejected by the ledger; the rejection names the path and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event would be rejected: {0}")]
pub struct BuildError(pub Rejection);

impl From<Rejection> for BuildError {
    fn from(rejection: Rejection) -> BuildError {
        BuildError(rejection)
    }
}

/// Builds one validated [`Event`] for a dossier (or, for `procedure.published`, a procedure:
/// by convention its `dossier` is the procedure code).
#[derive(Debug, Clone)]
#[must_use]
pub struct EventBuilder {
    agency: String,
    procedure: String,
    dossier: String,
    id: Option<String>,
    occurred_at: Option<String>,
    personal: Option<Value>,
}

impl EventBuilder {
    /// An event of agency `agency` (MaDonVi, e.g. `"G09.20"`), procedure `procedure` (MaTTHC,
    /// e.g. `"1.004227"`) and dossier `dossier` (MaHoSo).
    pub fn new(
        agency: impl Into<String>,
        procedure: impl Into<String>,
        dossier: impl Into<String>,
    ) -> EventBuilder {
        EventBuilder {
            agency: agency.into(),
            procedure: procedure.into(),
            dossier: dossier.into(),
            id: None,
            occurred_at: None,
            personal: None,
        }
    }

    /// The event id, the idempotency key (default: a fresh ULID, see [`new_event_id`]). Set it
    /// to republish the same event after a failure.
    pub fn id(mut self, id: impl Into<String>) -> EventBuilder {
        self.id = Some(id.into());
        self
    }

    /// When the event happened, RFC 3339 with an offset (default: now at +07:00).
    pub fn occurred_at(mut self, occurred_at: impl Into<String>) -> EventBuilder {
        self.occurred_at = Some(occurred_at.into());
        self
    }

    /// Personal data (an object, e.g. `{"citizen_id": ...}`): stored beside the ledger, erasable,
    /// never in `data`.
    pub fn personal(mut self, personal: Value) -> EventBuilder {
        self.personal = Some(personal);
        self
    }

    /// The event carrying `data`, checked as the ledger checks what it receives: size (default
    /// [`Limits`]), envelope and per-type schema. What only the ledger can know (an id already
    /// committed with other content, an `occurred_at` too far in its future) is left to it.
    pub fn build<D: EventData>(self, data: D) -> Result<Event, BuildError> {
        let data = serde_json::to_value(&data).map_err(|err| {
            Rejection::new(
                ErrorCode::MalformedJson,
                "/data",
                format!("data does not serialize: {err}"),
            )
        })?;
        let event = Event {
            id: self.id.unwrap_or_else(new_event_id),
            event_type: D::TYPE.to_owned(),
            agency: self.agency,
            procedure: self.procedure,
            dossier: self.dossier,
            occurred_at: self
                .occurred_at
                .unwrap_or_else(|| vietnam_time(jiff::Timestamp::now())),
            schema: SCHEMA_VERSION,
            data,
            personal: self.personal,
        };
        let bytes = serde_json::to_vec(&event).map_err(|err| {
            Rejection::new(
                ErrorCode::MalformedJson,
                "",
                format!("event does not serialize: {err}"),
            )
        })?;
        validator().validate(&bytes)?;
        Ok(event)
    }
}

/// Compiling the schemas is slow: once per process.
fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| Validator::new(Limits::default()))
}

macro_rules! event_data {
    ($($data:ty => $name:literal),* $(,)?) => {
        $(impl EventData for $data {
            const TYPE: &'static str = $name;
        })*
    };
}

event_data! {
    ProcedurePublished => "procedure.published",
    DossierSubmitted => "dossier.submitted",
    DossierAccepted => "dossier.accepted",
    DossierRefused => "dossier.refused",
    DossierProcessingStep => "dossier.processing_step",
    DossierSupplementRequested => "dossier.supplement_requested",
    DossierSupplementReceived => "dossier.supplement_received",
    DossierFeeRequested => "dossier.fee_requested",
    DossierFeePaid => "dossier.fee_paid",
    DossierWithdrawn => "dossier.withdrawn",
    DossierStopped => "dossier.stopped",
    DossierDeadlineExtended => "dossier.deadline_extended",
    DossierResultSigned => "dossier.result_signed",
    DossierResolved => "dossier.resolved",
    DossierResultReturned => "dossier.result_returned",
    DossierRated => "dossier.rated",
}

// ---------------------------------------------------------------------------------------------
// procedure.published

/// `procedure.published` (công bố thủ tục hành chính): an agency publishes a procedure it
/// handles, with the facts the metrics need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcedurePublished {
    /// TenTTHC: procedure name, e.g. "Đăng ký khai sinh".
    pub name: String,
    /// LinhVuc: the procedure's field, e.g. "Hộ tịch".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// MucDoDVC: service level (Decree 42/2022 Art. 11).
    pub service_level: ServiceLevel,
    /// CoPhiLePhi: whether a fee or charge (phí, lệ phí) is collected.
    pub fee_bearing: bool,
    /// Whether the procedure yields a result document.
    pub result_kind: ResultKind,
    /// ThoiHanGiaiQuyet: legal processing time.
    pub legal_duration: LegalDuration,
}

/// MucDoDVC: how much of a procedure can be done online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceLevel {
    /// Toàn trình: entirely online.
    FullOnline,
    /// Một phần: partly online.
    PartialOnline,
    /// Not online.
    Offline,
}

/// What a procedure yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    /// A result document (giấy tờ, may be electronic).
    Document,
    /// No result document.
    None,
}

/// ThoiHanGiaiQuyet: a legal processing time, more than 0 and at most 3650 units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LegalDuration {
    /// How many units, e.g. 15 or 0.5.
    #[serde(serialize_with = "whole_as_integer")]
    pub value: f64,
    /// The unit of `value`.
    pub unit: DurationUnit,
}

/// Unit of a [`LegalDuration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurationUnit {
    /// Clock hours.
    Hours,
    /// Working days (ngày làm việc).
    WorkingDays,
}

/// Writes a whole number as an integer (`15`, not `15.0`), as hand-written and canonical JSON
/// have it.
fn whole_as_integer<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    const MAX_EXACT: f64 = 9_007_199_254_740_991.0;
    if value.fract() == 0.0 && value.abs() <= MAX_EXACT {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

// ---------------------------------------------------------------------------------------------
// Dossier lifecycle

/// `dossier.submitted` (nộp hồ sơ, TrangThaiHoSo 1): a dossier reached the agency. Who
/// submitted it goes in the envelope's `personal`, never here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DossierSubmitted {
    /// KenhThucHien: how the dossier was submitted.
    pub channel: Channel,
    /// The applicant signed in with VNeID (level-2 electronic identity); absent = false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vneid_authenticated: Option<bool>,
    /// DoiTuongThucHien: who applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applicant_kind: Option<ApplicantKind>,
}

/// KenhThucHien: submission channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Trực tuyến (2).
    Online,
    /// Trực tiếp (1).
    Counter,
    /// Bưu chính công ích (3).
    Postal,
}

/// DoiTuongThucHien: kind of applicant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicantKind {
    /// Công dân.
    Citizen,
    /// Doanh nghiệp.
    Business,
    /// Tổ chức.
    Organization,
}

/// `dossier.accepted` (tiếp nhận hồ sơ, TrangThaiHoSo 2): the dossier is complete and valid;
/// the processing clock starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DossierAccepted {
    /// NgayHenTra: the promised result date (RFC 3339 with offset).
    pub due_at: String,
    /// The dossier's components were digitised on acceptance; absent = false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digitized_inputs: Option<bool>,
    /// Data already held by the state was reused instead of asked for again; absent = false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_data: Option<bool>,
    /// DonViTiepNhan: the unit that received the dossier (a unit, not a person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_unit: Option<String>,
}

/// `dossier.refused` (từ chối tiếp nhận, TrangThaiHoSo 3): the agency refused the dossier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierRefused {
    /// LyDo: why (1-2000 characters, no personal data).
    pub reason: String,
}

/// `dossier.processing_step` (đang xử lý, TrangThaiHoSo 4): a workflow step started or was
/// handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierProcessingStep {
    /// Position of the step in the workflow, 1 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_no: Option<u8>,
    /// BuocXuLy: name of the step, e.g. "Thẩm định hồ sơ".
    pub step: String,
    /// DonViXuLy: the unit handling the step (not a person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_unit: Option<String>,
    /// VaiTroXuLy: the role handling the step, e.g. "Chuyên viên thụ lý" (not a person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_role: Option<String>,
    /// HanXuLy: deadline of this step (RFC 3339 with offset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
}

/// `dossier.supplement_requested` (yêu cầu bổ sung, TrangThaiHoSo 5): the applicant must
/// supplement or correct the dossier; the processing clock pauses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierSupplementRequested {
    /// LyDo: why.
    pub reason: String,
}

/// `dossier.supplement_received` (nhận hồ sơ bổ sung, TrangThaiHoSo 5): the applicant supplied
/// what was asked for; the processing clock resumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierSupplementReceived {
    /// NgayHenTraMoi: the new promised result date, when the agency set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_due_at: Option<String>,
}

/// `dossier.fee_requested` (yêu cầu thanh toán phí, lệ phí, TrangThaiHoSo 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierFeeRequested {
    /// SoTien: the amount due, in đồng (at most 2^53-1).
    pub amount_vnd: u64,
    /// TenPhiLePhi: what the fee is for, e.g. "Lệ phí đăng ký cư trú".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_name: Option<String>,
}

/// `dossier.fee_paid` (đã thanh toán phí, lệ phí, TrangThaiHoSo 6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierFeePaid {
    /// ThanhToanTrucTuyen: paid online rather than in cash or at a counter.
    pub online: bool,
    /// Payment channel code, e.g. "paygov", "vietqr", "cash".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// SoTien: the amount paid, in đồng.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_vnd: Option<u64>,
    /// SoBienLai: number of the (electronic) receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_number: Option<String>,
}

/// `dossier.withdrawn` (rút hồ sơ, TrangThaiHoSo 7): the applicant withdrew the dossier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierWithdrawn {
    /// LyDo: why.
    pub reason: String,
}

/// `dossier.stopped` (dừng xử lý, TrangThaiHoSo 8): the agency stopped processing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierStopped {
    /// LyDo: why.
    pub reason: String,
}

/// `dossier.deadline_extended` (gia hạn): the agency extended the due date, with an apology and
/// extension form sent to the applicant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierDeadlineExtended {
    /// NgayHenTraMoi: the new promised result date (RFC 3339 with offset).
    pub new_due_at: String,
    /// LyDo: why the deadline was missed.
    pub reason: String,
}

/// `dossier.result_signed` (ký số kết quả): the result document was digitally signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierResultSigned {
    /// NguoiKy: the signing capacity (title and unit) or the agency's seal certificate; a
    /// personal name belongs in `personal`.
    pub signer: String,
    /// SoSerial: serial number of the signing certificate, hexadecimal.
    pub certificate_serial: String,
    /// Signature algorithm, e.g. "RSA-SHA256".
    pub algorithm: String,
}

/// `dossier.resolved` (đã giải quyết, TrangThaiHoSo 9): processing finished and the result is
/// ready to be returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierResolved {
    /// CoKetQuaDienTu: the result was issued as an electronic document with legal value.
    pub electronic_result: bool,
    /// KetQuaGiaiQuyet: granted or refused in writing; absent = approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The result documents issued, at most 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_documents: Option<Vec<ResultDocument>>,
}

/// KetQuaGiaiQuyet: the outcome of a resolved dossier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The request is granted.
    Approved,
    /// The request is answered with a written refusal.
    Denied,
}

/// A result document of [`DossierResolved`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultDocument {
    /// TenGiayTo: kind of document, e.g. "Giấy khai sinh".
    pub name: String,
    /// SoKyHieu: number and symbol, e.g. "123/GKS-UBND".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
}

/// `dossier.result_returned` (đã trả kết quả, TrangThaiHoSo 10): the result reached the
/// applicant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierResultReturned {
    /// HinhThucTraKetQua: how the result was returned.
    pub method: ReturnMethod,
}

/// HinhThucTraKetQua: how a result is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnMethod {
    /// Trực tuyến.
    Electronic,
    /// Trực tiếp.
    Counter,
    /// Bưu chính công ích.
    Postal,
}

/// `dossier.rated` (đánh giá mức độ hài lòng): the applicant rated the service (Decision 766
/// §5.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DossierRated {
    /// HaiLong: the applicant was satisfied.
    pub satisfied: bool,
    /// MucDoHaiLong: 1 (very dissatisfied) to 5 (very satisfied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
}
