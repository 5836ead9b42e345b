//! Data-driven validation tests: every case is one `check(input, expected_code, expected_path)`.

use std::sync::LazyLock;

use serde_json::{Value, json};
use socai_model::{ErrorCode, Event, Limits, Rejection, Validator, schema};

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| Validator::new(Limits::default()));

/// Validates `input`; `expected` is `None` for a valid event, else the code and JSON pointer.
/// Every rejection must read like the project's error messages: lowercase start, no trailing
/// period, and the offending value or rule named.
#[track_caller]
fn check(input: impl AsRef<[u8]>, expected: Option<(ErrorCode, &str)>) {
    let input = input.as_ref();
    let result = VALIDATOR.validate(input);
    let shown = String::from_utf8_lossy(&input[..input.len().min(300)]).into_owned();
    match (&result, expected) {
        (Ok(event), None) => {
            // The event read back is the document: serializing it again gives the same value.
            let original: Value = serde_json::from_slice(input).unwrap();
            let mut again = serde_json::to_value(event).unwrap();
            again["schema"] = original["schema"].clone();
            assert_eq!(again, original, "round trip of {shown}");
        }
        (Err(rejection), Some((code, path))) => {
            assert_eq!(
                (rejection.code, rejection.path.as_str()),
                (code, path),
                "{rejection} for {shown}"
            );
            assert_reason_style(rejection);
        }
        _ => panic!("expected {expected:?}, got {result:?} for {shown}"),
    }
}

fn assert_reason_style(rejection: &Rejection) {
    let reason = &rejection.reason;
    assert!(!reason.is_empty());
    assert!(
        !reason.starts_with(|c: char| c.is_uppercase()),
        "reason starts uppercase: {reason}"
    );
    assert!(
        !reason.ends_with('.'),
        "reason ends with a period: {reason}"
    );
    assert!(reason.chars().count() <= 401, "reason too long: {reason}");
}

fn envelope(event_type: &str, data: Value) -> Value {
    json!({
        "id": "01JD9Q4W8G3N6V2P5X7K1M0ZTR",
        "type": event_type,
        "agency": "G09.20",
        "procedure": "1.004227",
        "dossier": "G09.20-20260609-0092637",
        "occurred_at": "2026-06-09T08:15:00+07:00",
        "schema": 1,
        "data": data,
    })
}

/// A valid dossier.submitted event.
fn submitted() -> Value {
    envelope(
        "dossier.submitted",
        json!({"channel": "online", "vneid_authenticated": true, "applicant_kind": "citizen"}),
    )
}

/// `submitted()` with `edit` applied.
fn submitted_with(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut event = submitted();
    edit(&mut event);
    serde_json::to_vec(&event).unwrap()
}

fn event(event_type: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&envelope(event_type, data)).unwrap()
}

/// One valid `data` per catalogue type, fully populated.
fn valid_data(event_type: &str) -> Value {
    match event_type {
        "procedure.published" => json!({
            "name": "Đăng ký khai sinh", "field": "Hộ tịch", "service_level": "full_online",
            "fee_bearing": false, "result_kind": "document",
            "legal_duration": {"value": 1, "unit": "working_days"}}),
        "dossier.submitted" => {
            json!({"channel": "counter", "vneid_authenticated": false, "applicant_kind": "business"})
        }
        "dossier.accepted" => {
            json!({"due_at": "2026-06-12T17:00:00+07:00", "digitized_inputs": true, "reused_data": false,
            "handler_unit": "Bộ phận Tiếp nhận và Trả kết quả"})
        }
        "dossier.refused" => json!({"reason": "Hồ sơ không thuộc thẩm quyền giải quyết"}),
        "dossier.processing_step" => {
            json!({"step_no": 2, "step": "Thẩm định hồ sơ", "handler_unit": "Phòng Hộ tịch",
            "handler_role": "Chuyên viên thụ lý", "due_at": "2026-06-11T10:00:00+07:00"})
        }
        "dossier.supplement_requested" => {
            json!({"reason": "Thiếu bản sao giấy tờ tùy thân\nđề nghị bổ sung"})
        }
        "dossier.supplement_received" => json!({"new_due_at": "2026-06-15T17:00:00+07:00"}),
        "dossier.fee_requested" => {
            json!({"amount_vnd": 50000, "fee_name": "Lệ phí đăng ký cư trú"})
        }
        "dossier.fee_paid" => {
            json!({"online": true, "gateway": "paygov", "amount_vnd": 50000, "receipt_number": "BL12-0000001"})
        }
        "dossier.withdrawn" => json!({"reason": "Người nộp rút hồ sơ"}),
        "dossier.stopped" => json!({"reason": "Dừng xử lý theo đề nghị của cơ quan thuế"}),
        "dossier.deadline_extended" => {
            json!({"new_due_at": "2026-06-19T17:00:00+07:00", "reason": "Cần xác minh thêm"})
        }
        "dossier.result_signed" => {
            json!({"signer": "Phó Giám đốc Sở Tư pháp", "certificate_serial": "5403A1F0C2D4E6B8", "algorithm": "RSA-SHA256"})
        }
        "dossier.resolved" => json!({"electronic_result": true, "decision": "approved",
            "result_documents": [{"name": "Giấy khai sinh", "number": "123/GKS"}]}),
        "dossier.result_returned" => json!({"method": "electronic"}),
        "dossier.rated" => json!({"satisfied": true, "level": 5}),
        other => panic!("no sample data for {other}"),
    }
}

/// The smallest valid `data` per catalogue type (only the required fields).
fn minimal_data(event_type: &str) -> Value {
    match event_type {
        "procedure.published" => {
            json!({"name": "Cấp phiếu lý lịch tư pháp", "service_level": "offline",
            "fee_bearing": true, "result_kind": "none", "legal_duration": {"value": 0.5, "unit": "hours"}})
        }
        "dossier.submitted" => json!({"channel": "postal"}),
        "dossier.accepted" => json!({"due_at": "2026-06-12T10:00:00Z"}),
        "dossier.processing_step" => json!({"step": "Phê duyệt"}),
        "dossier.supplement_received" => json!({}),
        "dossier.fee_paid" => json!({"online": false}),
        "dossier.fee_requested" => json!({"amount_vnd": 0}),
        "dossier.resolved" => json!({"electronic_result": false}),
        "dossier.rated" => json!({"satisfied": false}),
        other => valid_data(other),
    }
}

#[test]
fn a_valid_example_of_every_event_type_passes() {
    for event_type in socai_model::EVENT_TYPES {
        check(event(event_type, valid_data(event_type)), None);
        check(event(event_type, minimal_data(event_type)), None);
    }
}

#[test]
fn valid_envelopes() {
    check(serde_json::to_vec(&submitted()).unwrap(), None);
    // personal data is optional and free-form
    check(
        submitted_with(
            |e| e["personal"] = json!({"citizen_id": "001203012345", "full_name": "Nguyễn Văn An", "phone": "0912345678"}),
        ),
        None,
    );
    check(submitted_with(|e| e["personal"] = json!({})), None);
    // offsets: Z, negative, fractional seconds
    check(
        submitted_with(|e| e["occurred_at"] = json!("2026-06-09T01:15:00Z")),
        None,
    );
    check(
        submitted_with(|e| e["occurred_at"] = json!("2026-06-09T01:15:00.123456789-03:30")),
        None,
    );
    // codes in the national formats
    check(
        submitted_with(|e| e["agency"] = json!("000.00.12.H56")),
        None,
    );
    check(
        submitted_with(|e| e["procedure"] = json!("1.001612.000.00.00.H56")),
        None,
    );
    check(submitted_with(|e| e["id"] = json!("a")), None);
    check(
        submitted_with(|e| e["id"] = json!("G09.20:evt_2026-06-09.1")),
        None,
    );
    check(submitted_with(|e| e["id"] = json!("x".repeat(128))), None);
    // schema 1.0 is the number 1
    check(br#"{"id":"e1","type":"dossier.submitted","agency":"G09.20","procedure":"1.004227","dossier":"D1","occurred_at":"2026-06-09T08:15:00+07:00","schema":1.0,"data":{"channel":"online"}}"#, None);
    // whitespace and key order do not matter
    check(b" \n{ \"data\" : {\"channel\":\"online\"}, \"schema\":1, \"occurred_at\":\"2026-06-09T08:15:00+07:00\",\n \"dossier\":\"D1\", \"procedure\":\"1.004227\", \"agency\":\"G09.20\", \"type\":\"dossier.submitted\", \"id\":\"e1\" }\n", None);
}

#[test]
fn malformed_json() {
    use ErrorCode::MalformedJson as M;
    check(b"", Some((M, "")));
    check(b"{", Some((M, "")));
    check(b"{\"id\":", Some((M, "")));
    check(b"{\"id\" \"x\"}", Some((M, "")));
    check(b"{'id': 'x'}", Some((M, "")));
    check(b"{\"id\":\"x\",}", Some((M, "")));
    check(b"{} {}", Some((M, "")));
    check(b"\xff\xfe{}", Some((M, "")));
    check(b"{\"id\":\"\xc3\x28\"}", Some((M, "")));
    check(b"{\"id\":\"\\ud800\"}", Some((M, "")));
    check(b"NaN", Some((M, "")));
    // not an object
    check(b"[]", Some((M, "")));
    check(b"[{\"id\":\"x\"}]", Some((M, "")));
    check(b"\"dossier.submitted\"", Some((M, "")));
    check(b"42", Some((M, "")));
    check(b"null", Some((M, "")));
    check(b"true", Some((M, "")));
    // numbers JSON cannot carry, nesting beyond the parser's limit
    check(br#"{"schema":1e400}"#, Some((M, "")));
    check(
        format!("{{\"personal\":{}1{}}}", "[".repeat(200), "]".repeat(200)),
        Some((M, "")),
    );
    // duplicate keys, at the top and nested
    check(br#"{"id":"a","id":"b"}"#, Some((M, "")));
    check(
        br#"{"data":{"channel":"online","channel":"counter"}}"#,
        Some((M, "")),
    );
}

#[test]
fn malformed_json_reasons_name_line_and_column() {
    let reason = |input: &[u8]| VALIDATOR.validate(input).unwrap_err().reason;
    assert_eq!(
        reason(b"{\n  \"id\": }"),
        "invalid json: expected value at line 2 column 9"
    );
    assert_eq!(
        reason(b"{\n\"a\":\"\xff\"}"),
        "invalid utf-8 at line 2 column 6 (byte offset 7)"
    );
    assert!(
        reason(br#"{"id":"a","id":"b"}"#)
            .starts_with("invalid json: duplicate key \"id\" at line 1 column")
    );
    assert_eq!(
        reason(b"[1]"),
        "expected a json object at line 1 column 1, found an array"
    );
}

#[test]
fn oversized() {
    let small = Validator::new(Limits {
        max_event_bytes: 300,
    });
    assert_eq!(
        small.limits(),
        Limits {
            max_event_bytes: 300
        }
    );
    let fits = serde_json::to_vec(&submitted()).unwrap();
    assert!(fits.len() <= 300);
    assert!(small.validate(&fits).is_ok());
    let big = submitted_with(|e| e["personal"] = json!({"note": "x".repeat(300)}));
    let rejection = small.validate(&big).unwrap_err();
    assert_eq!(
        (rejection.code, rejection.path.as_str()),
        (ErrorCode::Oversized, "")
    );
    assert_eq!(
        rejection.reason,
        format!(
            "event is {} bytes, more than the limit of 300 bytes",
            big.len()
        )
    );
    // the size check comes first, even for garbage
    assert_eq!(
        small.validate(&[b'x'; 301]).unwrap_err().code,
        ErrorCode::Oversized
    );
    check(vec![b' '; 64 * 1024 + 1], Some((ErrorCode::Oversized, "")));
}

#[test]
fn missing_envelope_fields() {
    for field in [
        "id",
        "type",
        "agency",
        "procedure",
        "dossier",
        "occurred_at",
        "schema",
        "data",
    ] {
        let path = format!("/{field}");
        check(
            submitted_with(|e| drop(e.as_object_mut().unwrap().remove(field))),
            Some((ErrorCode::SchemaViolation, &path)),
        );
    }
    check(b"{}", Some((ErrorCode::SchemaViolation, "/id")));
}

#[test]
fn envelope_violations() {
    use ErrorCode::SchemaViolation as S;
    let cases: Vec<(&str, Value, &str)> = vec![
        // wrong types
        ("id", json!(42), "/id"),
        ("type", json!(["dossier.submitted"]), "/type"),
        ("agency", json!(null), "/agency"),
        ("procedure", json!(1.004227), "/procedure"),
        ("dossier", json!({}), "/dossier"),
        ("occurred_at", json!(1781000000), "/occurred_at"),
        ("data", json!("channel=online"), "/data"),
        ("data", json!([]), "/data"),
        ("personal", json!("001203012345"), "/personal"),
        ("personal", json!(null), "/personal"),
        // schema version
        ("schema", json!(2), "/schema"),
        ("schema", json!(0), "/schema"),
        ("schema", json!("1"), "/schema"),
        ("schema", json!(true), "/schema"),
        // ids
        ("id", json!(""), "/id"),
        ("id", json!("x".repeat(129)), "/id"),
        ("id", json!(" leading-space"), "/id"),
        ("id", json!("-starts-with-dash"), "/id"),
        ("id", json!("has space"), "/id"),
        ("id", json!("line\nbreak"), "/id"),
        ("id", json!("redaction:01JD9Q4W8G3N6V2P5X7K1M0ZTR"), "/id"),
        // codes
        ("agency", json!(""), "/agency"),
        ("agency", json!("G09..20"), "/agency"),
        ("agency", json!(".G09"), "/agency"),
        ("agency", json!("G09.20."), "/agency"),
        ("agency", json!("G09-20"), "/agency"),
        ("agency", json!("A".repeat(65)), "/agency"),
        ("procedure", json!(""), "/procedure"),
        ("procedure", json!("1.004227\u{0}"), "/procedure"),
        ("procedure", json!("x".repeat(65)), "/procedure"),
        ("dossier", json!("G09.20 20260609"), "/dossier"),
        ("dossier", json!("D\t1"), "/dossier"),
        ("dossier", json!("d".repeat(129)), "/dossier"),
        ("type", json!("Dossier.Submitted"), "/type"),
        ("type", json!("submitted"), "/type"),
        ("type", json!(""), "/type"),
        // occurred_at
        ("occurred_at", json!("2026-06-09T08:15:00"), "/occurred_at"),
        (
            "occurred_at",
            json!("2026-06-09 08:15:00+07:00"),
            "/occurred_at",
        ),
        ("occurred_at", json!("2026-06-09"), "/occurred_at"),
        ("occurred_at", json!("08:15:00+07:00"), "/occurred_at"),
        ("occurred_at", json!("yesterday"), "/occurred_at"),
        (
            "occurred_at",
            json!("2026-13-09T08:15:00+07:00"),
            "/occurred_at",
        ),
        (
            "occurred_at",
            json!("2026-02-30T08:15:00+07:00"),
            "/occurred_at",
        ),
        (
            "occurred_at",
            json!("2026-06-09T24:15:00+07:00"),
            "/occurred_at",
        ),
        (
            "occurred_at",
            json!("2026-06-09T08:15:00+0700"),
            "/occurred_at",
        ),
        (
            "occurred_at",
            json!("2026-06-09T08:15:00+07"),
            "/occurred_at",
        ),
        ("occurred_at", json!("2026-06-09t08:15:00z"), "/occurred_at"),
        ("occurred_at", json!("2026-06-09T08:15:60Z"), "/occurred_at"),
        (
            "occurred_at",
            json!("2026-06-09T08:15:00.1234567890Z"),
            "/occurred_at",
        ),
        ("occurred_at", json!("1781000000"), "/occurred_at"),
        // extra fields
        ("extra", json!(1), "/extra"),
        ("Personal", json!({}), "/Personal"),
    ];
    for (field, value, path) in cases {
        check(submitted_with(|e| e[field] = value), Some((S, path)));
    }
}

#[test]
fn reserved_and_unknown_types() {
    check(
        event("ledger.redacted", json!({})),
        Some((ErrorCode::ReservedType, "/type")),
    );
    check(
        event(
            "ledger.redacted",
            json!({"target_id": "x", "target_seq": 1, "reason": "r", "redacted_by": "dpo"}),
        ),
        Some((ErrorCode::ReservedType, "/type")),
    );
    check(
        event("dossier.approved", json!({})),
        Some((ErrorCode::UnknownType, "/type")),
    );
    check(
        event("procedure.unpublished", json!({})),
        Some((ErrorCode::UnknownType, "/type")),
    );
    check(
        event("ledger.checkpoint", json!({})),
        Some((ErrorCode::UnknownType, "/type")),
    );
    let rejection = VALIDATOR
        .validate(&event("dossier.approved", json!({})))
        .unwrap_err();
    assert_eq!(
        rejection.reason,
        "unknown event type \"dossier.approved\": not one of the 16 catalogue types"
    );
    // the envelope is checked before the type
    let mut bad = envelope("dossier.approved", json!({}));
    bad["occurred_at"] = json!("soon");
    check(
        serde_json::to_vec(&bad).unwrap(),
        Some((ErrorCode::SchemaViolation, "/occurred_at")),
    );
}

#[test]
fn per_type_data_violations() {
    use ErrorCode::SchemaViolation as S;
    let cases: Vec<(&str, Value, &str)> = vec![
        // dossier.submitted
        ("dossier.submitted", json!({}), "/data/channel"),
        (
            "dossier.submitted",
            json!({"channel": "fax"}),
            "/data/channel",
        ),
        (
            "dossier.submitted",
            json!({"channel": "Online"}),
            "/data/channel",
        ),
        ("dossier.submitted", json!({"channel": 2}), "/data/channel"),
        (
            "dossier.submitted",
            json!({"channel": "online", "vneid_authenticated": "yes"}),
            "/data/vneid_authenticated",
        ),
        (
            "dossier.submitted",
            json!({"channel": "online", "applicant_kind": "robot"}),
            "/data/applicant_kind",
        ),
        (
            "dossier.submitted",
            json!({"channel": "online", "citizen_id": "001203012345"}),
            "/data/citizen_id",
        ),
        // dossier.accepted
        (
            "dossier.accepted",
            json!({"digitized_inputs": true}),
            "/data/due_at",
        ),
        (
            "dossier.accepted",
            json!({"due_at": "2026-06-12"}),
            "/data/due_at",
        ),
        (
            "dossier.accepted",
            json!({"due_at": "2026-06-12T17:00:00"}),
            "/data/due_at",
        ),
        (
            "dossier.accepted",
            json!({"due_at": "2026-06-12T17:00:00+07:00", "reused_data": 1}),
            "/data/reused_data",
        ),
        // fees
        ("dossier.fee_requested", json!({}), "/data/amount_vnd"),
        (
            "dossier.fee_requested",
            json!({"amount_vnd": -1}),
            "/data/amount_vnd",
        ),
        (
            "dossier.fee_requested",
            json!({"amount_vnd": 10.5}),
            "/data/amount_vnd",
        ),
        (
            "dossier.fee_requested",
            json!({"amount_vnd": "50000"}),
            "/data/amount_vnd",
        ),
        (
            "dossier.fee_requested",
            json!({"amount_vnd": 9007199254740992u64}),
            "/data/amount_vnd",
        ),
        (
            "dossier.fee_paid",
            json!({"gateway": "paygov"}),
            "/data/online",
        ),
        (
            "dossier.fee_paid",
            json!({"online": "true"}),
            "/data/online",
        ),
        (
            "dossier.fee_paid",
            json!({"online": true, "gateway": "pay gov"}),
            "/data/gateway",
        ),
        (
            "dossier.fee_paid",
            json!({"online": true, "amount_vnd": -5}),
            "/data/amount_vnd",
        ),
        // rated
        (
            "dossier.rated",
            json!({"satisfied": true, "level": 6}),
            "/data/level",
        ),
        (
            "dossier.rated",
            json!({"satisfied": true, "level": 0}),
            "/data/level",
        ),
        (
            "dossier.rated",
            json!({"satisfied": true, "level": 4.5}),
            "/data/level",
        ),
        ("dossier.rated", json!({"level": 5}), "/data/satisfied"),
        // procedure.published
        (
            "procedure.published",
            json!({"name": "X", "service_level": "level4", "fee_bearing": false, "result_kind": "document", "legal_duration": {"value": 1, "unit": "hours"}}),
            "/data/service_level",
        ),
        (
            "procedure.published",
            json!({"name": "X", "service_level": "offline", "fee_bearing": false, "result_kind": "document", "legal_duration": {"value": 0, "unit": "hours"}}),
            "/data/legal_duration/value",
        ),
        (
            "procedure.published",
            json!({"name": "X", "service_level": "offline", "fee_bearing": false, "result_kind": "document", "legal_duration": {"value": 1, "unit": "days"}}),
            "/data/legal_duration/unit",
        ),
        (
            "procedure.published",
            json!({"name": "X", "service_level": "offline", "fee_bearing": false, "result_kind": "document", "legal_duration": {"value": 1}}),
            "/data/legal_duration/unit",
        ),
        (
            "procedure.published",
            json!({"name": "X", "service_level": "offline", "fee_bearing": false, "result_kind": "paper", "legal_duration": {"value": 1, "unit": "hours"}}),
            "/data/result_kind",
        ),
        (
            "procedure.published",
            json!({"name": "", "service_level": "offline", "fee_bearing": false, "result_kind": "none", "legal_duration": {"value": 1, "unit": "hours"}}),
            "/data/name",
        ),
        (
            "procedure.published",
            json!({"service_level": "offline", "fee_bearing": false, "result_kind": "none", "legal_duration": {"value": 1, "unit": "hours"}}),
            "/data/name",
        ),
        // reasons
        ("dossier.refused", json!({}), "/data/reason"),
        ("dossier.refused", json!({"reason": ""}), "/data/reason"),
        (
            "dossier.refused",
            json!({"reason": "bad\u{0}byte"}),
            "/data/reason",
        ),
        ("dossier.withdrawn", json!({"reason": 7}), "/data/reason"),
        (
            "dossier.stopped",
            json!({"reason": "x".repeat(2001)}),
            "/data/reason",
        ),
        (
            "dossier.supplement_requested",
            json!({"why": "x"}),
            "/data/why",
        ),
        ("dossier.supplement_requested", json!({}), "/data/reason"),
        (
            "dossier.supplement_received",
            json!({"new_due_at": "next week"}),
            "/data/new_due_at",
        ),
        (
            "dossier.deadline_extended",
            json!({"reason": "x"}),
            "/data/new_due_at",
        ),
        (
            "dossier.deadline_extended",
            json!({"new_due_at": "2026-06-19T17:00:00+07:00"}),
            "/data/reason",
        ),
        // steps, signatures, results
        (
            "dossier.processing_step",
            json!({"handler_unit": "Phòng Hộ tịch"}),
            "/data/step",
        ),
        (
            "dossier.processing_step",
            json!({"step": "line\nbreak"}),
            "/data/step",
        ),
        (
            "dossier.result_signed",
            json!({"signer": "GĐ", "certificate_serial": "XYZ", "algorithm": "RSA-SHA256"}),
            "/data/certificate_serial",
        ),
        (
            "dossier.result_signed",
            json!({"signer": "GĐ", "certificate_serial": "0A"}),
            "/data/algorithm",
        ),
        (
            "dossier.resolved",
            json!({"result_documents": []}),
            "/data/electronic_result",
        ),
        (
            "dossier.resolved",
            json!({"electronic_result": true, "result_documents": [{"number": "1/GKS"}]}),
            "/data/result_documents/0/name",
        ),
        (
            "dossier.resolved",
            json!({"electronic_result": true, "result_documents": [{"name": "A"}, {"name": "B", "pdf": "..."}]}),
            "/data/result_documents/1/pdf",
        ),
        (
            "dossier.resolved",
            json!({"electronic_result": true, "result_documents": "Giấy khai sinh"}),
            "/data/result_documents",
        ),
        (
            "dossier.resolved",
            json!({"electronic_result": true, "decision": "maybe"}),
            "/data/decision",
        ),
        (
            "dossier.processing_step",
            json!({"step": "Phê duyệt", "step_no": 0}),
            "/data/step_no",
        ),
        (
            "dossier.processing_step",
            json!({"step": "Phê duyệt", "due_at": "2026-06-11"}),
            "/data/due_at",
        ),
        (
            "dossier.fee_paid",
            json!({"online": true, "receipt_number": "BL 1"}),
            "/data/receipt_number",
        ),
        (
            "dossier.result_returned",
            json!({"method": "email"}),
            "/data/method",
        ),
        ("dossier.result_returned", json!({}), "/data/method"),
    ];
    for (event_type, data, path) in cases {
        check(event(event_type, data), Some((S, path)));
    }
    // an extra field in any type's data is rejected
    for event_type in socai_model::EVENT_TYPES {
        let mut data = valid_data(event_type);
        data["unexpected/field~"] = json!(true);
        check(
            event(event_type, data),
            Some((S, "/data/unexpected~1field~0")),
        );
    }
}

#[test]
fn reasons_name_the_rule_and_the_value() {
    let reason = |input: Vec<u8>| VALIDATOR.validate(&input).unwrap_err().reason;
    assert_eq!(
        reason(event("dossier.submitted", json!({"channel": "fax"}))),
        r#"enum: "fax" is not one of "online", "counter", "postal""#
    );
    assert_eq!(
        reason(event(
            "dossier.rated",
            json!({"satisfied": true, "level": 6})
        )),
        "maximum: 6 is greater than 5"
    );
    assert_eq!(
        reason(event("dossier.fee_requested", json!({"amount_vnd": -1}))),
        "minimum: -1 is less than 0"
    );
    assert_eq!(
        reason(event("dossier.submitted", json!({}))),
        r#"required: missing property "channel""#
    );
    assert_eq!(
        reason(event(
            "dossier.submitted",
            json!({"channel": "online", "x": 1, "y": 2})
        )),
        r#"additionalProperties: property "x" not allowed"#
    );
    assert_eq!(
        reason(submitted_with(|e| e["schema"] = json!(2))),
        "const: expected 1, found 2"
    );
    assert_eq!(
        reason(submitted_with(|e| e["id"] = json!(7))),
        "type: expected string, found a number 7"
    );
    let no_offset = reason(submitted_with(|e| {
        e["occurred_at"] = json!("2026-06-09T08:15:00")
    }));
    assert!(no_offset.contains("\"2026-06-09T08:15:00\""), "{no_offset}");
    assert!(
        no_offset.starts_with("format: ") || no_offset.starts_with("pattern: "),
        "{no_offset}"
    );
    let not_a_date = reason(submitted_with(|e| {
        e["occurred_at"] = json!("2026-02-30T08:15:00+07:00")
    }));
    assert_eq!(
        not_a_date,
        r#"format: "2026-02-30T08:15:00+07:00" is not a valid date-time"#
    );
    // a huge offending value is cut short
    let long = reason(submitted_with(|e| e["id"] = json!("x".repeat(5000))));
    assert!(long.len() < 200 && long.contains('…'), "{long}");
    // the Display of a rejection
    let rejection = VALIDATOR.validate(b"[]").unwrap_err();
    assert_eq!(
        rejection.to_string(),
        "malformed_json at /: expected a json object at line 1 column 1, found an array"
    );
}

#[test]
fn validated_event_fields() {
    let mut doc = submitted();
    doc["personal"] = json!({"citizen_id": "001203012345"});
    let event = VALIDATOR
        .validate(&serde_json::to_vec(&doc).unwrap())
        .unwrap();
    assert_eq!(event.id, "01JD9Q4W8G3N6V2P5X7K1M0ZTR");
    assert_eq!(event.event_type, "dossier.submitted");
    assert_eq!(event.agency, "G09.20");
    assert_eq!(event.procedure, "1.004227");
    assert_eq!(event.dossier, "G09.20-20260609-0092637");
    assert_eq!(event.occurred_at, "2026-06-09T08:15:00+07:00");
    assert_eq!(event.schema, 1);
    assert_eq!(event.data["channel"], "online");
    assert_eq!(event.personal, Some(json!({"citizen_id": "001203012345"})));
    assert!(event.public_json().get("personal").is_none());
    assert_eq!(VALIDATOR.validate_event(&event), Ok(()));
}

#[test]
fn in_memory_events_and_the_ledgers_own_redactions() {
    let target = VALIDATOR
        .validate(&serde_json::to_vec(&submitted()).unwrap())
        .unwrap();
    let redaction = Event::redaction(
        &target,
        7,
        "yêu cầu xóa dữ liệu cá nhân",
        "dpo@G09.20",
        "2026-07-01T09:00:00+07:00",
    );
    assert_eq!(VALIDATOR.validate_ledger_event(&redaction), Ok(()));
    let rejected = VALIDATOR.validate_event(&redaction).unwrap_err();
    assert_eq!(
        (rejected.code, rejected.path.as_str()),
        (ErrorCode::ReservedType, "/type")
    );
    // the same bytes from an agency are rejected too
    let bytes = serde_json::to_vec(&redaction).unwrap();
    assert_eq!(
        VALIDATOR.validate(&bytes).unwrap_err().code,
        ErrorCode::ReservedType
    );
    // a redaction of a target with the longest allowed id is still valid
    let mut long_target = target.clone();
    long_target.id = "x".repeat(128);
    let long = Event::redaction(&long_target, 0, "r", "dpo", "2026-07-01T09:00:00Z");
    assert_eq!(VALIDATOR.validate_ledger_event(&long), Ok(()));
    // a broken redaction is caught by its schema
    let mut broken = redaction.clone();
    broken.data["target_seq"] = json!(-1);
    let rejected = VALIDATOR.validate_ledger_event(&broken).unwrap_err();
    assert_eq!(
        (rejected.code, rejected.path.as_str()),
        (ErrorCode::SchemaViolation, "/data/target_seq")
    );
    // in-memory events follow the same rules as bytes
    let mut bad = target;
    bad.data = json!({"channel": "fax"});
    assert_eq!(
        VALIDATOR.validate_event(&bad).unwrap_err().path,
        "/data/channel"
    );
}

#[test]
fn every_schema_file_is_embedded_and_every_type_has_a_schema() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/events");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = socai_model::EVENT_TYPES
        .iter()
        .chain([&socai_model::REDACTION_TYPE])
        .map(|t| format!("{t}.json"))
        .collect();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "schemas/events/ and EVENT_TYPES + ledger.redacted disagree"
    );
    for event_type in socai_model::EVENT_TYPES
        .iter()
        .chain([&socai_model::REDACTION_TYPE])
    {
        assert!(
            schema::event_schema(event_type).is_some(),
            "{event_type} has no embedded schema"
        );
    }
    // the embedded text is the file's text
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    for (path, text) in schema::files() {
        assert_eq!(
            std::fs::read_to_string(root.join(&path)).unwrap(),
            text,
            "{path} is stale"
        );
    }
}

#[test]
fn every_schema_declares_itself() {
    for (path, text) in schema::files() {
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            value["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{path}"
        );
        assert_eq!(
            value["$id"],
            format!("{}{path}", schema::BASE_URI),
            "{path}"
        );
        assert!(
            value["title"].is_string() && value["description"].is_string(),
            "{path}"
        );
        if path.starts_with("events/") {
            assert_eq!(value["type"], "object", "{path}");
            assert_eq!(value["additionalProperties"], false, "{path}");
            let title = value["title"].as_str().unwrap();
            let event_type = path.trim_start_matches("events/").trim_end_matches(".json");
            assert!(title.starts_with(event_type), "{path}: title {title:?}");
        }
    }
}

#[test]
fn accepted_timestamps_parse_as_instants() {
    for at in [
        "2026-06-09T08:15:00+07:00",
        "2026-06-09T01:15:00Z",
        "2026-06-09T01:15:00.123456789-03:30",
        "2024-02-29T23:59:59+14:00",
    ] {
        let event = VALIDATOR
            .validate(&submitted_with(|e| e["occurred_at"] = json!(at)))
            .unwrap();
        assert!(event.occurred_at_timestamp().is_ok(), "{at}");
    }
}

#[test]
fn validator_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Validator>();
    assert_send_sync::<Rejection>();
}
