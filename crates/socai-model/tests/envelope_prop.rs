//! Property tests of the envelope parser an agency's bytes reach (issue 11): `Validator::validate`
//! on a NATS message body, and `validate_event` / `validate_ledger_event` on events in memory.
//!
//! Arbitrary bytes and structured mutations of valid events never panic; a rejection is clear
//! (a code, a JSON pointer, a short lowercase reason); an acceptance is canonical: the event read
//! back is the document, validating it again gives the same event, its time parses, and the
//! ledger entry made from it is one the chain's canonical decoder accepts.

use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use socai_chain::Hash;
use socai_chain::entry::{Entry, canonical_json, personal_commitment};
use socai_model::{EVENT_TYPES, ErrorCode, Event, Limits, Rejection, Validator};

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| Validator::new(Limits::default()));

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A rejection reads like the project's errors: a pointer, a short lowercase reason.
fn clear(r: &Rejection) -> Result<(), TestCaseError> {
    prop_assert!(
        r.path.is_empty() || r.path.starts_with('/'),
        "path {:?}",
        r.path
    );
    prop_assert!(!r.reason.trim().is_empty(), "empty reason for {r:?}");
    prop_assert!(
        r.reason.chars().count() <= 401,
        "reason of {} chars",
        r.reason.chars().count()
    );
    prop_assert!(
        !r.reason.starts_with(|c: char| c.is_uppercase()),
        "reason starts uppercase: {}",
        r.reason
    );
    prop_assert!(!r.to_string().is_empty());
    prop_assert!(ErrorCode::ALL.contains(&r.code));
    Ok(())
}

/// Everything that must hold of an accepted message body.
fn check_accepted(bytes: &[u8], event: &Event) -> Result<(), TestCaseError> {
    // The event read back is the document (numbers compared as JSON values; `schema` may be
    // spelled 1.0, which the model stores as the integer 1).
    let original: Value = serde_json::from_slice(bytes).expect("accepted bytes are JSON");
    let mut again = serde_json::to_value(event).expect("event serializes");
    prop_assert_eq!(original["schema"].as_f64(), Some(1.0));
    again["schema"] = original["schema"].clone();
    prop_assert_eq!(&again, &original);
    // Validating the event's own serialization gives the same event (a fixpoint).
    let text = serde_json::to_vec(event).expect("event serializes");
    prop_assert_eq!(VALIDATOR.validate(&text), Ok(event.clone()));
    prop_assert_eq!(VALIDATOR.validate_event(event), Ok(()));
    prop_assert_eq!(event.schema, 1);
    prop_assert!(EVENT_TYPES.contains(&event.event_type.as_str()));
    // The entry the ledger writes for it decodes canonically, with the same event.
    let public = event.public_json();
    let commitment = event
        .personal
        .as_ref()
        .map(|p| personal_commitment(&[7; 16], p));
    let bytes = Entry::encode(
        0,
        &Hash::ZERO,
        "2026-06-09T01:00:00.123Z",
        &canonical_json(&public),
        commitment.as_ref(),
    );
    let entry = Entry::decode_canonical(&bytes);
    prop_assert!(
        entry.is_ok(),
        "{:?} for {}",
        entry,
        String::from_utf8_lossy(&bytes)
    );
    prop_assert!(Entry::decode_header(&bytes).is_ok());
    prop_assert_eq!(
        canonical_json(&entry.expect("checked").event),
        canonical_json(&public)
    );
    Ok(())
}

/// "Infallible for a validated event" (event.rs): an accepted `occurred_at` is an instant.
fn check_time(event: &Event) -> Result<(), TestCaseError> {
    prop_assert!(
        event.occurred_at_timestamp().is_ok(),
        "accepted occurred_at {:?} does not parse: {:?}",
        event.occurred_at,
        event.occurred_at_timestamp()
    );
    Ok(())
}

fn check(bytes: &[u8]) -> Result<Option<Event>, TestCaseError> {
    match VALIDATOR.validate(bytes) {
        Ok(event) => {
            check_accepted(bytes, &event)?;
            Ok(Some(event))
        }
        Err(r) => {
            clear(&r)?;
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Valid events

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

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Timestamps the schema's pattern admits, valid or not as dates (Feb 30, hour 24, offset
/// +99:99, year 0000, ...), and a few realistic ones.
fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "(0000|0001|1969|1970|2026|9999)-(01|02|12|13)-(01|28|29|30|31)T(00|23|24):(00|59):(00|59)(\\.[0-9]{1,9})?(Z|[+-](00|07|14|23|24|25|26|99):(00|59|60))",
        Just("2026-06-09T08:15:00+07:00".to_owned()),
        Just("2026-06-09T08:15:00Z".to_owned()),
    ]
}

prop_compose! {
    /// A valid-looking event of any catalogue type, with random ids, times and personal data.
    fn event_value()(
        event_type in prop::sample::select(EVENT_TYPES.to_vec()),
        id in prop_oneof!["[A-Za-z0-9][A-Za-z0-9._:-]{0,30}", Just("01JD9Q4W8G3N6V2P5X7K1M0ZTR".to_owned()), any::<String>()],
        agency in prop_oneof!["[A-Za-z0-9]{1,4}(\\.[A-Za-z0-9]{1,4}){0,3}", Just("G09.20".to_owned())],
        procedure in prop_oneof!["[A-Za-z0-9][A-Za-z0-9._-]{0,12}", Just("1.004227".to_owned())],
        dossier in prop_oneof!["[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", any::<String>()],
        occurred_at in timestamp(),
        personal in prop::option::of(prop::collection::btree_map(any::<String>(), any_json(), 0..4)),
    ) -> Value {
        let mut v = json!({
            "id": id, "type": event_type, "agency": agency, "procedure": procedure,
            "dossier": dossier, "occurred_at": occurred_at, "schema": 1,
            "data": valid_data(event_type),
        });
        if let Some(p) = personal {
            v["personal"] = Value::Object(p.into_iter().collect());
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// Bytes that tend to matter to JSON and UTF-8.
const SPECIAL: &[u8] =
    b"\"\\{}[],:-+.eE0123456789 \t\r\ntfnu/\x00\x01\x7f\x80\xbf\xc0\xc3\xed\xf0\xff";

const SNIPPETS: &[&str] = &[
    " ",
    "\n",
    "\u{feff}",
    "\"id\":\"x\",",
    "\"schema\":1,",
    "\"data\":{},",
    "\"personal\":{},",
    "\"a\":1,",
    "1e0",
    ".0",
    "-0",
    "e400",
    "\\u0041",
    "\\ud800",
    "99999999999999999999999",
    "[",
    "{",
    "]",
    "}",
    "null",
    ",",
    "\"",
];

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Set(Index, u8),
    Delete(Index),
    InsertSpecial(Index, Index),
    InsertSnippet(Index, Index),
    Truncate(Index),
    Duplicate(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), any::<Index>()).prop_map(|(i, s)| Mutation::InsertSpecial(i, s)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, s)| Mutation::InsertSnippet(i, s)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        let at = |i: &Index| i.index(len.max(1)).min(len.saturating_sub(1));
        let gap = |i: &Index| i.index(len + 1);
        match m {
            Mutation::FlipBit(i, b) if len > 0 => bytes[at(i)] ^= 1 << (b % 8),
            Mutation::Set(i, b) if len > 0 => bytes[at(i)] = *b,
            Mutation::Delete(i) if len > 0 => drop(bytes.remove(at(i))),
            Mutation::InsertSpecial(i, s) => bytes.insert(gap(i), SPECIAL[s.index(SPECIAL.len())]),
            Mutation::InsertSnippet(i, s) => {
                let at = gap(i);
                let snippet = SNIPPETS[s.index(SNIPPETS.len())].as_bytes();
                bytes.splice(at..at, snippet.iter().copied());
            }
            Mutation::Truncate(i) => bytes.truncate(gap(i)),
            Mutation::Duplicate(i, n) if len > 0 => {
                let start = at(i);
                let end = (start + 1 + usize::from(*n % 24)).min(len);
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
            _ => {}
        }
    }
    bytes
}

fn junk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        any::<String>().prop_map(String::into_bytes),
        prop::collection::vec(prop::sample::select(SPECIAL.to_vec()), 0..200),
        prop::collection::vec(prop::sample::select(SNIPPETS.to_vec()), 0..40)
            .prop_map(|parts| parts.concat().into_bytes()),
    ]
}

/// Renders the top-level object member by member: `members` in order or reversed, `pretty`
/// whitespace, the `schema` number respelled.
fn render(value: &Value, reverse: bool, pretty: bool, schema: &str) -> Vec<u8> {
    let Value::Object(map) = value else {
        return serde_json::to_vec(value).expect("json");
    };
    let mut members: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            let v = if k == "schema" {
                schema.to_owned()
            } else if pretty {
                serde_json::to_string_pretty(v).expect("json")
            } else {
                serde_json::to_string(v).expect("json")
            };
            format!("{}:{v}", serde_json::to_string(k).expect("json"))
        })
        .collect();
    if reverse {
        members.reverse();
    }
    if pretty {
        format!("{{\n  {}\n}}\n", members.join(",\n  ")).into_bytes()
    } else {
        format!("{{{}}}", members.join(",")).into_bytes()
    }
}

/// Spellings of `"schema": 1`, accepted or not: the model stores the integer either way.
const SCHEMA_SPELLINGS: &[&str] = &[
    "1",
    "1.0",
    "1e0",
    "1E0",
    "10e-1",
    "0.1e1",
    "1.00000000000000000001",
    "01",
    "-1",
    "2",
    "\"1\"",
    "true",
    "null",
    "1e400",
    "-0",
    "18446744073709551617",
];

/// Where to repeat a key: top level, inside `data`, inside `personal`, deeper inside `data`.
fn with_repeated_key(value: &Value, site: u8, same: bool) -> Option<Vec<u8>> {
    let text = serde_json::to_string(value).expect("json");
    let dup = |key: &str, v: &str| {
        let other = if same {
            v.to_owned()
        } else {
            "null".to_owned()
        };
        format!("\"{key}\":{v},\"{key}\":{other},")
    };
    let (from, to) = match site % 5 {
        0 => ("{".to_owned(), format!("{{{}", dup("id", "\"x\""))),
        1 => (
            "\"data\":{".to_owned(),
            format!("\"data\":{{{}", dup("channel", "\"online\"")),
        ),
        2 if value.get("personal").is_some() => (
            "\"personal\":{".to_owned(),
            format!("\"personal\":{{{}", dup("citizen_id", "\"001\"")),
        ),
        3 => (
            "\"data\":{".to_owned(),
            format!("\"data\":{{\"nested\":[{{{}\"z\":0}}],", dup("k", "1")),
        ),
        _ => (
            "\"type\":".to_owned(),
            format!("{}\"type\":", dup("type", "\"dossier.submitted\"")),
        ),
    };
    text.contains(&from)
        .then(|| text.replacen(&from, &to, 1).into_bytes())
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary bytes: never a panic; a clear rejection or a canonical acceptance.
    #[test]
    fn arbitrary_bytes_are_rejected_clearly(bytes in junk()) {
        check(&bytes)?;
    }

    /// Generated events of every type: accepted ones are canonical; rejected ones (random ids,
    /// impossible dates) are rejected clearly.
    #[test]
    fn generated_events_are_accepted_canonically(value in event_value()) {
        let bytes = serde_json::to_vec(&value).expect("json");
        check(&bytes)?;
    }

    /// The same events: every accepted `occurred_at` converts to an instant.
    #[test]
    fn accepted_times_are_instants(value in event_value()) {
        let bytes = serde_json::to_vec(&value).expect("json");
        if let Some(event) = check(&bytes)? {
            check_time(&event)?;
        }
    }

    /// Valid events with 1 to 3 random byte edits.
    #[test]
    fn damaged_events_never_panic(value in event_value(), edits in prop::collection::vec(mutation(), 1..4)) {
        let bytes = apply(serde_json::to_vec(&value).expect("json"), &edits);
        check(&bytes)?;
    }

    /// Respelled events (member order, whitespace, `schema` number formats).
    #[test]
    fn respelled_events_are_read_as_the_same_event(
        value in event_value(),
        reverse in any::<bool>(),
        pretty in any::<bool>(),
        schema in prop::sample::select(SCHEMA_SPELLINGS.to_vec()),
    ) {
        let plain = VALIDATOR.validate(&serde_json::to_vec(&value).expect("json"));
        let bytes = render(&value, reverse, pretty, schema);
        if let Some(event) = check(&bytes)? {
            // The same event as the plain spelling, whatever the spelling.
            prop_assert_eq!(Ok(&event), plain.as_ref());
            prop_assert!(
                matches!(schema, "1" | "1.0" | "1e0" | "1E0" | "10e-1" | "0.1e1" | "1.00000000000000000001"),
                "schema spelled {} accepted", schema
            );
        }
    }

    /// A repeated key anywhere (same or different value) is `malformed_json`, never a silent
    /// choice of one of the values.
    #[test]
    fn repeated_keys_are_malformed(value in event_value(), site in any::<u8>(), same in any::<bool>()) {
        if let Some(bytes) = with_repeated_key(&value, site, same) {
            match VALIDATOR.validate(&bytes) {
                Ok(event) => prop_assert!(false, "accepted {event:?} from {}", String::from_utf8_lossy(&bytes)),
                Err(r) => {
                    clear(&r)?;
                    prop_assert_eq!(r.code, ErrorCode::MalformedJson, "{}", r);
                    prop_assert!(r.reason.contains("duplicate"), "{}", r);
                }
            }
        }
    }

    /// Deep nesting in `data` or `personal` and huge numbers: clear errors, no stack overflow.
    #[test]
    fn deep_and_huge_values_are_rejected_clearly(
        value in event_value(),
        depth in prop_oneof![1usize..20, 100usize..140, Just(10_000usize)],
        in_personal in any::<bool>(),
        number in prop::sample::select(vec!["1e400", "-1e400", "18446744073709551616", "1e-400", "123456789012345678901234567890", "-0", "0.0000000000000000000000001"]),
    ) {
        let text = serde_json::to_string(&value).expect("json");
        let nested = format!("{}{number}{}", "[".repeat(depth), "]".repeat(depth));
        let site = if in_personal { "\"personal\":{" } else { "\"data\":{" };
        let text = if text.contains(site) {
            text.replacen(site, &format!("{site}\"deep\":{nested},"), 1)
        } else {
            text.replacen("{", &format!("{{\"personal\":{{\"deep\":{nested}}},"), 1)
        };
        check(text.as_bytes())?;
    }

    /// Events already in memory (the simulator's path, and the ledger's own redactions):
    /// `validate_event` / `validate_ledger_event` never panic and agree with `validate`.
    #[test]
    fn in_memory_events_never_panic(
        value in event_value(),
        event_type in prop_oneof![Just("ledger.redacted".to_owned()), any::<String>(), prop::sample::select(EVENT_TYPES.to_vec()).prop_map(str::to_owned)],
        data in any_json(),
        reason in any::<String>(),
    ) {
        let mut event: Event = serde_json::from_value(value).expect("event");
        let checked = VALIDATOR.validate_event(&event);
        let bytes = serde_json::to_vec(&event).expect("json");
        prop_assert_eq!(checked.is_ok(), VALIDATOR.validate(&bytes).is_ok());
        let redaction = Event::redaction(&event, 7, &reason, "dpo@G09.20", "2026-07-01T00:00:00Z");
        if let Err(r) = VALIDATOR.validate_ledger_event(&redaction) {
            clear(&r)?;
        }
        // An agency may never publish it.
        prop_assert!(VALIDATOR.validate_event(&redaction).is_err());
        event.event_type = event_type;
        event.data = data;
        for result in [VALIDATOR.validate_event(&event), VALIDATOR.validate_ledger_event(&event)] {
            if let Err(r) = result {
                clear(&r)?;
            }
        }
    }
}

/// The minimal input behind `accepted_times_are_instants`, and its neighbours.
#[test]
fn accepted_edge_times_are_instants() {
    let mut bad = Vec::new();
    for at in [
        "9999-12-31T00:00:00Z",
        "9999-12-30T22:00:01Z",
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00+23:59",
        "0000-01-01T00:00:00Z",
    ] {
        let value = json!({
            "id": "e1", "type": "dossier.submitted", "agency": "G09.20", "procedure": "1.004227",
            "dossier": "D-1", "occurred_at": at, "schema": 1, "data": {"channel": "online"}
        });
        if let Ok(event) = VALIDATOR.validate(&serde_json::to_vec(&value).unwrap())
            && let Err(e) = event.occurred_at_timestamp()
        {
            bad.push(format!("{at}: {e}"));
        }
    }
    assert!(
        bad.is_empty(),
        "accepted but not an instant:\n{}",
        bad.join("\n")
    );
}

/// Every size around the limit: `oversized` exactly above it, never a panic.
#[test]
fn the_size_limit_is_exact() {
    let small = Validator::new(Limits {
        max_event_bytes: 300,
    });
    let base = serde_json::to_vec(&json!({
        "id": "e1", "type": "dossier.submitted", "agency": "G09.20", "procedure": "1.004227",
        "dossier": "D-1", "occurred_at": "2026-06-09T08:15:00+07:00", "schema": 1,
        "data": {"channel": "online"}, "personal": {"note": ""}
    }))
    .unwrap();
    for pad in 0..200 {
        let mut text = String::from_utf8(base.clone()).unwrap();
        text = text.replacen(
            "\"note\":\"\"",
            &format!("\"note\":\"{}\"", "x".repeat(pad)),
            1,
        );
        let result = small.validate(text.as_bytes());
        if text.len() > 300 {
            assert_eq!(result.unwrap_err().code, ErrorCode::Oversized, "{pad}");
        } else {
            assert!(result.is_ok(), "{pad}: {result:?}");
        }
    }
}
