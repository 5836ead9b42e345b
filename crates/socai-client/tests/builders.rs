//! The typed builders against the schemas: every type builds a valid event, the structs cover
//! every schema property and enum value, and invalid input is refused with the offending path.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socai_client::events::*;
use socai_model::{EVENT_TYPES, ErrorCode, Event, Limits, Validator};

const AGENCY: &str = "G09.20";
const PROCEDURE: &str = "1.004227";
const DOSSIER: &str = "G09.20-20260609-0092637";
const AT: &str = "2026-06-09T08:15:00+07:00";
const DUE: &str = "2026-06-23T17:00:00+07:00";

/// An independent validator, so the tests do not only trust the builder's own.
fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| Validator::new(Limits::default()))
}

fn builder() -> EventBuilder {
    EventBuilder::new(AGENCY, PROCEDURE, DOSSIER).occurred_at(AT)
}

/// Builds an event carrying `data`, checks it is valid and carries exactly `data`.
fn build_valid<D: EventData + Clone + Debug>(data: D) -> Event {
    let expected = serde_json::to_value(&data).unwrap();
    let event = builder()
        .build(data.clone())
        .unwrap_or_else(|err| panic!("{} {data:?}: {err}", D::TYPE));
    assert_eq!(event.event_type, D::TYPE);
    assert_eq!(event.schema, socai_model::SCHEMA_VERSION);
    assert_eq!(event.data, expected);
    assert_eq!(
        (
            event.agency.as_str(),
            event.procedure.as_str(),
            event.dossier.as_str()
        ),
        (AGENCY, PROCEDURE, DOSSIER)
    );
    assert_eq!(event.occurred_at, AT);
    validator()
        .validate_event(&event)
        .unwrap_or_else(|err| panic!("{}: {err}", D::TYPE));
    event
}

fn schema_of(event_type: &str) -> Value {
    let (_, text) = socai_model::schema::EVENT_SCHEMAS
        .iter()
        .find(|(name, _)| *name == event_type)
        .unwrap_or_else(|| panic!("no schema for {event_type}"));
    serde_json::from_str(text).unwrap()
}

/// The object `value` sets every property `schema` declares and no other, at every level.
fn assert_covers(schema: &Value, value: &Value, path: &str) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("{path}: expected an object, found {value}"));
        let declared: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        let set: BTreeSet<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(set, declared, "{path}: properties set vs schema");
        for (name, property) in properties {
            assert_covers(property, &object[name], &format!("{path}/{name}"));
        }
    }
    if let Some(items) = schema.get("items") {
        let array = value
            .as_array()
            .unwrap_or_else(|| panic!("{path}: expected an array, found {value}"));
        assert!(!array.is_empty(), "{path}: set at least one item");
        for (i, item) in array.iter().enumerate() {
            assert_covers(items, item, &format!("{path}/{i}"));
        }
    }
}

/// With every optional field set: valid, covers the schema, and round-trips through serde.
fn check_full<D: EventData + DeserializeOwned + Clone + PartialEq + Debug>(data: D) {
    let event = build_valid(data.clone());
    assert_covers(&schema_of(D::TYPE), &event.data, D::TYPE);
    let text = serde_json::to_string(&data).unwrap();
    let back: D = serde_json::from_str(&text).unwrap();
    assert_eq!(back, data, "{}: {text}", D::TYPE);
    assert_eq!(serde_json::from_value::<D>(event.data).unwrap(), data);
}

fn rejected<D: EventData>(builder: EventBuilder, data: D) -> socai_model::Rejection {
    match builder.build(data) {
        Ok(event) => panic!("expected a rejection, built {event:?}"),
        Err(BuildError(rejection)) => rejection,
    }
}

fn refused() -> DossierRefused {
    DossierRefused {
        reason: "Thiếu giấy tờ".into(),
    }
}

#[test]
fn every_type_builds_a_typical_valid_event() {
    let typical_types = [
        build_valid(ProcedurePublished {
            name: "Đăng ký khai sinh".into(),
            field: None,
            service_level: ServiceLevel::FullOnline,
            fee_bearing: false,
            result_kind: ResultKind::Document,
            legal_duration: LegalDuration {
                value: 1.0,
                unit: DurationUnit::WorkingDays,
            },
        }),
        build_valid(DossierSubmitted {
            channel: Channel::Online,
            vneid_authenticated: Some(true),
            applicant_kind: None,
        }),
        build_valid(DossierAccepted {
            due_at: DUE.into(),
            digitized_inputs: None,
            reused_data: None,
            handler_unit: None,
        }),
        build_valid(refused()),
        build_valid(DossierProcessingStep {
            step_no: None,
            step: "Thẩm định hồ sơ".into(),
            handler_unit: None,
            handler_role: None,
            due_at: None,
        }),
        build_valid(DossierSupplementRequested {
            reason: "Bổ sung bản sao giấy chứng nhận kết hôn".into(),
        }),
        build_valid(DossierSupplementReceived::default()),
        build_valid(DossierFeeRequested {
            amount_vnd: 8_000,
            fee_name: None,
        }),
        build_valid(DossierFeePaid {
            online: true,
            gateway: None,
            amount_vnd: None,
            receipt_number: None,
        }),
        build_valid(DossierWithdrawn {
            reason: "Người nộp không còn nhu cầu".into(),
        }),
        build_valid(DossierStopped {
            reason: "Quá hạn bổ sung hồ sơ".into(),
        }),
        build_valid(DossierDeadlineExtended {
            new_due_at: DUE.into(),
            reason: "Chờ kết quả xác minh\nliên thông".into(),
        }),
        build_valid(DossierResultSigned {
            signer: "Phó Giám đốc Sở Tư pháp".into(),
            certificate_serial: "540101A1B2C3D4E5".into(),
            algorithm: "RSA-SHA256".into(),
        }),
        build_valid(DossierResolved {
            electronic_result: true,
            decision: None,
            result_documents: None,
        }),
        build_valid(DossierResultReturned {
            method: ReturnMethod::Electronic,
        }),
        build_valid(DossierRated {
            satisfied: true,
            level: None,
        }),
    ]
    .map(|event| event.event_type);
    assert_eq!(typical_types.as_slice(), EVENT_TYPES);
}

#[test]
fn type_constants_are_the_catalogue() {
    let types = [
        ProcedurePublished::TYPE,
        DossierSubmitted::TYPE,
        DossierAccepted::TYPE,
        DossierRefused::TYPE,
        DossierProcessingStep::TYPE,
        DossierSupplementRequested::TYPE,
        DossierSupplementReceived::TYPE,
        DossierFeeRequested::TYPE,
        DossierFeePaid::TYPE,
        DossierWithdrawn::TYPE,
        DossierStopped::TYPE,
        DossierDeadlineExtended::TYPE,
        DossierResultSigned::TYPE,
        DossierResolved::TYPE,
        DossierResultReturned::TYPE,
        DossierRated::TYPE,
    ];
    let ours: BTreeSet<&str> = types.into_iter().collect();
    let catalogue: BTreeSet<&str> = EVENT_TYPES.iter().copied().collect();
    assert_eq!(ours.len(), types.len(), "a TYPE is used twice");
    assert_eq!(ours, catalogue);
}

#[test]
fn full_instances_are_valid_cover_the_schema_and_round_trip() {
    check_full(ProcedurePublished {
        name: "Đăng ký thường trú".into(),
        field: Some("Đăng ký, quản lý cư trú".into()),
        service_level: ServiceLevel::PartialOnline,
        fee_bearing: true,
        result_kind: ResultKind::None,
        legal_duration: LegalDuration {
            value: 0.5,
            unit: DurationUnit::Hours,
        },
    });
    check_full(DossierSubmitted {
        channel: Channel::Postal,
        vneid_authenticated: Some(false),
        applicant_kind: Some(ApplicantKind::Organization),
    });
    check_full(DossierAccepted {
        due_at: DUE.into(),
        digitized_inputs: Some(true),
        reused_data: Some(true),
        handler_unit: Some("Bộ phận Tiếp nhận và Trả kết quả".into()),
    });
    check_full(refused());
    check_full(DossierProcessingStep {
        step_no: Some(2),
        step: "Phê duyệt".into(),
        handler_unit: Some("Phòng Hộ tịch".into()),
        handler_role: Some("Lãnh đạo phòng".into()),
        due_at: Some("2026-06-12T17:00:00.5+07:00".into()),
    });
    check_full(DossierSupplementRequested {
        reason: "Thiếu bản sao".into(),
    });
    check_full(DossierSupplementReceived {
        new_due_at: Some("2026-06-25T10:00:00Z".into()),
    });
    check_full(DossierFeeRequested {
        amount_vnd: 9_007_199_254_740_991,
        fee_name: Some("Lệ phí đăng ký cư trú".into()),
    });
    check_full(DossierFeePaid {
        online: false,
        gateway: Some("vietqr".into()),
        amount_vnd: Some(0),
        receipt_number: Some("BL-2026.000123".into()),
    });
    check_full(DossierWithdrawn {
        reason: "Rút hồ sơ".into(),
    });
    check_full(DossierStopped {
        reason: "Dừng xử lý".into(),
    });
    check_full(DossierDeadlineExtended {
        new_due_at: DUE.into(),
        reason: "Gia hạn".into(),
    });
    check_full(DossierResultSigned {
        signer: "Con dấu Sở Tư pháp".into(),
        certificate_serial: "ff".into(),
        algorithm: "ECDSA-SHA256".into(),
    });
    check_full(DossierResolved {
        electronic_result: false,
        decision: Some(Decision::Denied),
        result_documents: Some(vec![ResultDocument {
            name: "Văn bản từ chối".into(),
            number: Some("123/TB-UBND".into()),
        }]),
    });
    check_full(DossierResultReturned {
        method: ReturnMethod::Counter,
    });
    check_full(DossierRated {
        satisfied: false,
        level: Some(1),
    });
}

/// Asserts that `variants` serialize to exactly the schema's enum at `pointer`, in order.
fn assert_enum<E: Serialize>(event_type: &str, pointer: &str, variants: &[E]) {
    let schema = schema_of(event_type);
    let allowed = schema
        .pointer(pointer)
        .unwrap_or_else(|| panic!("{event_type}: no {pointer}"));
    assert_eq!(
        &serde_json::to_value(variants).unwrap(),
        allowed,
        "{event_type} {pointer}"
    );
}

#[test]
fn enums_have_exactly_the_schema_values() {
    use ApplicantKind::*;
    use Channel::*;
    assert_enum(
        "dossier.submitted",
        "/properties/channel/enum",
        &[Online, Counter, Postal],
    );
    assert_enum(
        "dossier.submitted",
        "/properties/applicant_kind/enum",
        &[Citizen, Business, Organization],
    );
    assert_enum(
        "procedure.published",
        "/properties/service_level/enum",
        &[
            ServiceLevel::FullOnline,
            ServiceLevel::PartialOnline,
            ServiceLevel::Offline,
        ],
    );
    assert_enum(
        "procedure.published",
        "/properties/result_kind/enum",
        &[ResultKind::Document, ResultKind::None],
    );
    assert_enum(
        "procedure.published",
        "/properties/legal_duration/properties/unit/enum",
        &[DurationUnit::Hours, DurationUnit::WorkingDays],
    );
    assert_enum(
        "dossier.resolved",
        "/properties/decision/enum",
        &[Decision::Approved, Decision::Denied],
    );
    assert_enum(
        "dossier.result_returned",
        "/properties/method/enum",
        &[
            ReturnMethod::Electronic,
            ReturnMethod::Counter,
            ReturnMethod::Postal,
        ],
    );
}

#[test]
fn absent_options_are_omitted_and_whole_durations_are_integers() {
    let data = serde_json::to_value(DossierSubmitted {
        channel: Channel::Counter,
        vneid_authenticated: None,
        applicant_kind: None,
    })
    .unwrap();
    assert_eq!(data, json!({"channel": "counter"}));
    let duration = |value| {
        serde_json::to_value(LegalDuration {
            value,
            unit: DurationUnit::WorkingDays,
        })
        .unwrap()
    };
    assert_eq!(duration(15.0), json!({"value": 15, "unit": "working_days"}));
    assert_eq!(duration(0.5), json!({"value": 0.5, "unit": "working_days"}));
}

#[test]
fn defaults_are_a_fresh_ulid_and_now_in_vietnam() {
    let before = jiff::Timestamp::now();
    let first = EventBuilder::new(AGENCY, PROCEDURE, DOSSIER)
        .build(refused())
        .unwrap();
    let second = EventBuilder::new(AGENCY, PROCEDURE, DOSSIER)
        .build(refused())
        .unwrap();
    let after = jiff::Timestamp::now();
    for event in [&first, &second] {
        assert_eq!(event.id.len(), 26, "{}", event.id);
        ulid::Ulid::from_string(&event.id).unwrap();
        assert!(
            event.occurred_at.ends_with("+07:00"),
            "{}",
            event.occurred_at
        );
        let at = event.occurred_at_timestamp().unwrap();
        assert!(
            before <= at && at <= after,
            "{at} not in [{before}, {after}]"
        );
        assert_eq!(event.personal, None);
    }
    assert_ne!(first.id, second.id);
    assert_ne!(new_event_id(), new_event_id());
}

#[test]
fn explicit_id_time_and_personal_are_kept() {
    let personal = json!({"citizen_id": "001203012345", "full_name": "Nguyễn Văn A"});
    let event = builder()
        .id("hs-0092637:submitted")
        .occurred_at("2026-06-09T01:15:00Z")
        .personal(personal.clone())
        .build(DossierSubmitted {
            channel: Channel::Online,
            vneid_authenticated: None,
            applicant_kind: Some(ApplicantKind::Citizen),
        })
        .unwrap();
    assert_eq!(event.id, "hs-0092637:submitted");
    assert_eq!(event.occurred_at, "2026-06-09T01:15:00Z");
    assert_eq!(event.personal, Some(personal));
}

#[test]
fn vietnam_time_is_rfc3339_at_plus_seven() {
    let at: jiff::Timestamp = "2026-06-09T01:15:00Z".parse().unwrap();
    assert_eq!(vietnam_time(at), "2026-06-09T08:15:00+07:00");
    let at: jiff::Timestamp = "2026-12-31T17:30:00.25Z".parse().unwrap();
    assert_eq!(vietnam_time(at), "2027-01-01T00:30:00.25+07:00");
}

#[test]
fn invalid_envelopes_are_refused_with_their_path() {
    let cases = [
        (
            EventBuilder::new("G09 20", PROCEDURE, DOSSIER).occurred_at(AT),
            "/agency",
        ),
        (builder().occurred_at("2026-06-09T08:15:00"), "/occurred_at"),
        (
            builder().occurred_at("2026-06-09T08:15:60+07:00"),
            "/occurred_at",
        ),
        (builder().id("redaction:01JD9Q4W8G3N6V2P5X7K1M0ZTR"), "/id"),
        (builder().id(""), "/id"),
        (
            EventBuilder::new(AGENCY, "1.004227 ", DOSSIER).occurred_at(AT),
            "/procedure",
        ),
        (builder().personal(json!("001203012345")), "/personal"),
    ];
    for (builder, path) in cases {
        let rejection = rejected(builder, refused());
        assert_eq!(rejection.code, ErrorCode::SchemaViolation, "{rejection}");
        assert_eq!(rejection.path, path, "{rejection}");
    }
}

#[test]
fn invalid_data_is_refused_with_its_path() {
    let check = |rejection: socai_model::Rejection, path: &str, rule: &str| {
        assert_eq!(rejection.code, ErrorCode::SchemaViolation, "{rejection}");
        assert_eq!(rejection.path, path, "{rejection}");
        assert!(rejection.reason.starts_with(rule), "{rejection}");
    };
    check(
        rejected(builder(), DossierRefused { reason: "".into() }),
        "/data/reason",
        "minLength",
    );
    check(
        rejected(
            builder(),
            DossierStopped {
                reason: "a\u{0}b".into(),
            },
        ),
        "/data/reason",
        "pattern",
    );
    check(
        rejected(
            builder(),
            DossierAccepted {
                due_at: "2026-06-23".into(),
                digitized_inputs: None,
                reused_data: None,
                handler_unit: None,
            },
        ),
        "/data/due_at",
        "pattern",
    );
    check(
        rejected(
            builder(),
            DossierFeeRequested {
                amount_vnd: 9_007_199_254_740_992,
                fee_name: None,
            },
        ),
        "/data/amount_vnd",
        "maximum",
    );
    check(
        rejected(
            builder(),
            DossierRated {
                satisfied: true,
                level: Some(6),
            },
        ),
        "/data/level",
        "maximum",
    );
    check(
        rejected(
            builder(),
            DossierProcessingStep {
                step_no: Some(3),
                step: "Thẩm định".into(),
                handler_unit: None,
                handler_role: Some("Chuyên viên\nthụ lý".into()),
                due_at: None,
            },
        ),
        "/data/handler_role",
        "pattern",
    );
    check(
        rejected(
            builder(),
            DossierProcessingStep {
                step_no: Some(0),
                step: "Thẩm định".into(),
                handler_unit: None,
                handler_role: None,
                due_at: None,
            },
        ),
        "/data/step_no",
        "minimum",
    );
    check(
        rejected(
            builder(),
            DossierResultSigned {
                signer: "Giám đốc".into(),
                certificate_serial: "not-hex".into(),
                algorithm: "RSA-SHA256".into(),
            },
        ),
        "/data/certificate_serial",
        "pattern",
    );
    let published = |value: f64| ProcedurePublished {
        name: "Đăng ký khai sinh".into(),
        field: None,
        service_level: ServiceLevel::Offline,
        fee_bearing: false,
        result_kind: ResultKind::Document,
        legal_duration: LegalDuration {
            value,
            unit: DurationUnit::Hours,
        },
    };
    check(
        rejected(builder(), published(0.0)),
        "/data/legal_duration/value",
        "exclusiveMinimum",
    );
    check(
        rejected(builder(), published(f64::NAN)),
        "/data/legal_duration/value",
        "type",
    );
    check(
        rejected(
            builder(),
            DossierResolved {
                electronic_result: true,
                decision: None,
                result_documents: Some(vec![
                    ResultDocument {
                        name: "Giấy khai sinh".into(),
                        number: None,
                    };
                    21
                ]),
            },
        ),
        "/data/result_documents",
        "maxItems",
    );
}

#[test]
fn build_error_names_the_path() {
    let err = EventBuilder::new("G09 20", PROCEDURE, DOSSIER)
        .build(refused())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("event would be rejected: schema_violation at /agency: pattern"),
        "{text}"
    );
}

#[test]
fn oversized_events_are_refused() {
    let big = "x".repeat(Limits::default().max_event_bytes);
    let rejection = rejected(builder().personal(json!({ "note": big })), refused());
    assert_eq!(rejection.code, ErrorCode::Oversized, "{rejection}");
}

/// A hand-made `EventData` cannot smuggle in a reserved or unknown type.
#[test]
fn foreign_types_are_refused() {
    #[derive(Serialize)]
    struct Redacted {
        target_id: &'static str,
        target_seq: u64,
        reason: &'static str,
        redacted_by: &'static str,
    }
    impl EventData for Redacted {
        const TYPE: &'static str = socai_model::REDACTION_TYPE;
    }
    #[derive(Serialize)]
    struct Unknown {}
    impl EventData for Unknown {
        const TYPE: &'static str = "dossier.teleported";
    }
    let redacted = Redacted {
        target_id: "01JD9Q4W8G3N6V2P5X7K1M0ZTR",
        target_seq: 1,
        reason: "erasure request",
        redacted_by: "dpo@G09.20",
    };
    let rejection_of = rejected(builder(), redacted);
    assert_eq!(rejection_of.code, ErrorCode::ReservedType);
    assert_eq!(rejection_of.path, "/type");
    let rejection_of = rejected(builder(), Unknown {});
    assert_eq!(rejection_of.code, ErrorCode::UnknownType);
    assert_eq!(rejection_of.path, "/type");
}
