//! The adapter on fixtures built from the portal's field lists (`fixtures/*.jsonl`, one body
//! per line), against an in-memory ledger that holds what each body yielded.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::Value;
use socai_model::{Limits, Validator};

use super::*;

const AGENCY: &str = "000.00.12.H01";

fn fixture(name: &str) -> Vec<String> {
    let path = format!("{}/fixtures/{name}.jsonl", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn at(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// What the ledger holds, per (agency, dossier); every derived event is schema-checked before it
/// is "committed".
struct Ledger {
    held: HashMap<(String, String), Vec<KnownEvent>>,
    validator: Validator,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger {
            held: HashMap::new(),
            validator: Validator::new(Limits::default()),
        }
    }

    fn feed(&mut self, body: &str, received: &str) -> Derived {
        let held = &self.held;
        let mut history = |agency: &str, dossier: &str| -> Result<Vec<KnownEvent>, String> {
            Ok(held
                .get(&(agency.to_owned(), dossier.to_owned()))
                .cloned()
                .unwrap_or_default())
        };
        let validator = &self.validator;
        let mut check = |event: &Value| {
            validator
                .validate(&serde_json::to_vec(event).unwrap())
                .map(|_| ())
                .map_err(|r| (r.path, r.reason))
        };
        let derived = derive(
            body.as_bytes(),
            AGENCY,
            at(received),
            &mut history,
            &mut check,
        )
        .expect("the history is readable");
        for event in derived.events() {
            let bytes = serde_json::to_vec(event).unwrap();
            if let Err(r) = self.validator.validate(&bytes) {
                panic!("derived event fails the schemas: {r:?}\n{event:#}");
            }
            let known = KnownEvent::from_envelope(event).unwrap();
            self.held
                .entry((
                    AGENCY.to_owned(),
                    event["dossier"].as_str().unwrap().to_owned(),
                ))
                .or_default()
                .push(known);
        }
        derived
    }

    /// Feeds a fixture's bodies a minute apart; the types each yielded.
    fn run(&mut self, name: &str) -> Vec<Vec<String>> {
        fixture(name)
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let d = self.feed(body, &format!("2026-11-10T0{}:00:00Z", i.min(9)));
                assert_eq!(
                    d.rejections().count(),
                    0,
                    "{name} line {}: {:?}",
                    i + 1,
                    d.rejections().collect::<Vec<_>>()
                );
                types(&d)
            })
            .collect()
    }
}

fn types(d: &Derived) -> Vec<String> {
    d.events()
        .map(|e| {
            e["type"]
                .as_str()
                .unwrap()
                .trim_start_matches("dossier.")
                .to_owned()
        })
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn online_with_online_payment_and_electronic_result() {
    let mut ledger = Ledger::new();
    let steps = ledger.run("online");
    assert_eq!(
        steps,
        vec![
            strs(&["submitted"]),
            strs(&["accepted"]),
            strs(&["fee_requested"]),
            strs(&["fee_paid"]),
            strs(&["resolved"]),
            strs(&["result_returned"]),
        ]
    );
    let events = &ledger.held[&(AGENCY.to_owned(), "H01-261102-0001".to_owned())];
    assert_eq!(events[0].data["channel"], "online");
    assert_eq!(events[0].data["applicant_kind"], "business");
    assert_eq!(events[0].procedure, "2.000720");
    assert_eq!(events[1].data["due_at"], "2026-11-05T17:00:00+07:00");
    assert_eq!(events[1].data["digitized_inputs"], true);
    assert_eq!(events[2].data["amount_vnd"], 50000);
    assert_eq!(events[3].data["online"], true);
    assert_eq!(events[4].data["electronic_result"], true);
    assert_eq!(events[5].data["method"], "electronic");
    // The same bodies again: nothing new; each is one more copy of the applicant's data, held
    // by the submission.
    for body in fixture("online") {
        let d = ledger.feed(&body, "2026-11-11T00:00:00Z");
        assert!(d.items.is_empty(), "{:?}", d.items);
        assert_eq!(d.copies, ["H01-261102-0001:submitted"]);
    }
}

#[test]
fn the_submission_carries_the_personal_data_and_only_it() {
    let mut ledger = Ledger::new();
    let d = ledger.feed(&fixture("online")[0], "2026-11-10T00:00:00Z");
    let event = d.events().next().unwrap();
    assert_eq!(event["id"], "H01-261102-0001:submitted");
    assert_eq!(event["occurred_at"], "2026-11-02T08:15:00+07:00");
    let personal = event["personal"].as_object().unwrap();
    assert_eq!(personal["full_name"], "Nguyễn Văn An");
    assert_eq!(personal["phone"], "0912345678");
    assert_eq!(personal["email"], "an.nguyen@example.vn");
    assert_eq!(personal["summary"], "Đăng ký khai sinh cho Nguyễn Thị Bình");
    let public = serde_json::to_string(&event["data"]).unwrap();
    for secret in ["Nguyễn", "0912345678", "example.vn"] {
        assert!(!public.contains(secret), "{secret} in public data {public}");
    }
}

#[test]
fn a_body_that_skips_states_yields_the_missing_events_in_order() {
    let mut ledger = Ledger::new();
    let steps = ledger.run("counter");
    assert_eq!(
        steps,
        vec![strs(&[
            "submitted",
            "accepted",
            "resolved",
            "result_returned"
        ])]
    );
    let d = &ledger.held[&(AGENCY.to_owned(), "H01-261102-0002".to_owned())];
    assert_eq!(d[0].data["channel"], "counter");
    assert_eq!(d[2].data["electronic_result"], false);
    assert_eq!(
        d[2].data["result_documents"][0]["name"],
        "Trích lục khai sinh"
    );
    assert_eq!(d[3].data["method"], "counter");
}

#[test]
fn postal() {
    let mut ledger = Ledger::new();
    assert_eq!(
        ledger.run("postal"),
        vec![
            strs(&["submitted", "accepted"]),
            strs(&["resolved", "result_returned"])
        ]
    );
    let d = &ledger.held[&(AGENCY.to_owned(), "H01-261102-0003".to_owned())];
    assert_eq!(d[0].data["channel"], "postal");
    assert_eq!(d[3].data["method"], "postal");
}

#[test]
fn supplement_requested_and_received() {
    let mut ledger = Ledger::new();
    assert_eq!(
        ledger.run("supplement"),
        vec![
            strs(&["submitted", "accepted"]),
            strs(&["supplement_requested"]),
            strs(&["supplement_received"]),
            strs(&["resolved"]),
        ]
    );
    let d = &ledger.held[&(AGENCY.to_owned(), "H01-261102-0004".to_owned())];
    // The official's text may name people: personal; the public reason is fixed.
    assert_eq!(
        d[2].data["reason"],
        "Yêu cầu bổ sung hồ sơ (DanhSachHoSoBoSung, DongBoHoSoMC)"
    );
    assert_eq!(d[3].data["new_due_at"], "2026-11-07T17:00:00+07:00");
    // The new date came with the supplement: no extension.
    assert!(
        d.iter()
            .all(|e| e.event_type != "dossier.deadline_extended")
    );
}

#[test]
fn extension() {
    let mut ledger = Ledger::new();
    assert_eq!(
        ledger.run("extension"),
        vec![
            strs(&["submitted", "accepted"]),
            strs(&["deadline_extended"]),
            strs(&["resolved"]),
        ]
    );
    let d = &ledger.held[&(AGENCY.to_owned(), "H01-261102-0005".to_owned())];
    assert_eq!(d[2].data["new_due_at"], "2026-11-10T17:00:00+07:00");
    // A stale body with the earlier date changes nothing.
    let stale = fixture("extension")[0].clone();
    assert!(ledger.feed(&stale, "2026-11-12T00:00:00Z").items.is_empty());
}

#[test]
fn refused_and_withdrawn() {
    let mut ledger = Ledger::new();
    assert_eq!(
        ledger.run("refused"),
        vec![strs(&["submitted"]), strs(&["refused"])]
    );
    assert_eq!(
        ledger.run("withdrawn"),
        vec![strs(&["submitted", "accepted"]), strs(&["withdrawn"])]
    );
}

#[test]
fn bodies_out_of_order_yield_only_what_they_add() {
    let mut ledger = Ledger::new();
    let bodies = fixture("online");
    // The last state first: the whole lifecycle at once.
    let d = ledger.feed(&bodies[5], "2026-11-10T00:00:00Z");
    assert_eq!(
        types(&d),
        strs(&[
            "submitted",
            "accepted",
            "fee_requested",
            "fee_paid",
            "resolved",
            "result_returned"
        ])
    );
    // Then the older ones, late: nothing new.
    for body in &bodies[..5] {
        assert!(ledger.feed(body, "2026-11-10T01:00:00Z").items.is_empty());
    }
}

#[test]
fn an_is_updating_correction_of_a_committed_fact_is_reported_and_the_rest_recorded() {
    let mut ledger = Ledger::new();
    let bodies = fixture("online");
    ledger.feed(&bodies[0], "2026-11-10T00:00:00Z");
    // The agency corrects the channel (online → counter) in its next update.
    let corrected = bodies[1].replace("\"KenhThucHien\": 2", "\"KenhThucHien\": 1");
    assert_ne!(corrected, bodies[1]);
    let d = ledger.feed(&corrected, "2026-11-10T01:00:00Z");
    assert_eq!(types(&d), strs(&["accepted"]));
    let r: Vec<_> = d.rejections().collect();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].dossier.as_deref(), Some("H01-261102-0001"));
    assert_eq!(r[0].path, "/data/0/KenhThucHien");
    assert!(r[0].reason.contains("\"online\""), "{}", r[0].reason);
    // Filed under the submission, which a redaction of the applicant's data erases with it.
    assert_eq!(r[0].event_id.as_deref(), Some("H01-261102-0001:submitted"));
    // A correction of the procedure refuses the dossier.
    let other = bodies[2].replace("2.000720", "2.000721");
    let d = ledger.feed(&other, "2026-11-10T02:00:00Z");
    assert_eq!(d.events().count(), 0);
    assert_eq!(d.rejections().next().unwrap().path, "/data/0/MaTTHC");
}

#[test]
fn malformed_dates_and_unknown_statuses_refuse_their_dossier_only() {
    let mut ledger = Ledger::new();
    let bad = fixture("bad");
    let d = ledger.feed(&bad[0], "2026-11-10T00:00:00Z");
    let r: Vec<_> = d.rejections().collect();
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0].dossier.as_deref(), Some("H01-261102-0009"));
    assert_eq!(r[0].path, "/data/0/NgayHenTra");
    assert!(r[0].reason.contains("yyyyMMddHHmmss"), "{}", r[0].reason);
    assert!(r[0].reason.contains("H01-261102-0009"), "{}", r[0].reason);
    // What is kept can be sent again once fixed: the dossier alone, as sent, in a body.
    let kept: Value = serde_json::from_slice(&r[0].raw).unwrap();
    assert_eq!(kept["service"], "DongBoHoSoMC");
    assert_eq!(kept["madonvi"], AGENCY);
    assert_eq!(kept["data"].as_array().unwrap().len(), 1);
    assert_eq!(kept["data"][0]["MaHoSo"], "H01-261102-0009");
    assert!(String::from_utf8_lossy(&r[0].raw).contains("{\"MaHoSo\": \"H01-261102-0009\""));
    assert_eq!(r[0].event_id.as_deref(), Some("H01-261102-0009:submitted"));
    assert_eq!(r[1].path, "/data/1/TrangThaiHoSo");
    assert!(r[1].reason.contains("\"11\""), "{}", r[1].reason);
    // The good dossier beside them went through.
    assert_eq!(types(&d), strs(&["submitted"]));
    assert_eq!(d.events().next().unwrap()["dossier"], "H01-261102-0008");
}

#[test]
fn another_agencys_code_or_no_body_refuses_the_whole_body() {
    let mut ledger = Ledger::new();
    let bad = fixture("bad");
    let d = ledger.feed(&bad[1], "2026-11-10T00:00:00Z");
    assert_eq!(d.events().count(), 0);
    let r = d.rejections().next().unwrap();
    assert_eq!((r.dossier.as_deref(), r.path.as_str()), (None, "/madonvi"));
    assert!(r.reason.contains("000.00.12.H02"), "{}", r.reason);
    assert_eq!(r.raw, bad[1].as_bytes());
    let d = ledger.feed(&bad[2], "2026-11-10T00:00:00Z");
    assert_eq!(d.rejections().next().unwrap().path, "");
    let d = ledger.feed(
        r#"{"service":"LayThuTuc","data":[]}"#,
        "2026-11-10T00:00:00Z",
    );
    assert!(d.rejections().next().unwrap().reason.contains("LayThuTuc"));
}

#[test]
fn progress_records_a_step_for_known_dossiers() {
    let mut ledger = Ledger::new();
    ledger.feed(&fixture("supplement")[0], "2026-11-10T00:00:00Z");
    let body = &fixture("progress")[0];
    let d = ledger.feed(body, "2026-11-10T01:00:00Z");
    assert_eq!(types(&d), strs(&["processing_step"]));
    let step = d.events().next().unwrap();
    assert_eq!(step["procedure"], "1.004227");
    assert_eq!(step["occurred_at"], "2026-11-02T10:00:00+07:00");
    assert_eq!(step["data"]["handler_role"], "Chuyên viên thụ lý");
    assert_eq!(step["data"]["due_at"], "2026-11-04T17:00:00+07:00");
    assert_eq!(step["personal"]["handler_name"], "Lê Thị Dung");
    // The unknown dossier is refused, naming it.
    let r: Vec<_> = d.rejections().collect();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].dossier.as_deref(), Some("H01-999999-0000"));
    assert!(
        r[0].reason.contains("DongBoHoSoMC first"),
        "{}",
        r[0].reason
    );
    // Again: nothing new (the unknown one is refused again); the step holds the handler's name.
    let d = ledger.feed(body, "2026-11-10T02:00:00Z");
    assert_eq!(d.events().count(), 0);
    assert_eq!(d.copies, ["H01-261102-0004:step:20261102100000-4"]);
}

#[test]
fn a_native_history_is_respected() {
    // The ledger already holds the submission and acceptance, published natively.
    let mut ledger = Ledger::new();
    let key = (AGENCY.to_owned(), "H01-261102-0002".to_owned());
    ledger.held.insert(
        key.clone(),
        vec![
            KnownEvent {
                id: "native-1".into(),
                event_type: "dossier.submitted".into(),
                agency: AGENCY.into(),
                procedure: "1.004227".into(),
                data: serde_json::json!({"channel": "counter"}),
            },
            KnownEvent {
                id: "native-2".into(),
                event_type: "dossier.accepted".into(),
                agency: AGENCY.into(),
                procedure: "1.004227".into(),
                data: serde_json::json!({"due_at": "2026-11-05T17:00:00+07:00"}),
            },
        ],
    );
    let d = ledger.feed(&fixture("counter")[0], "2026-11-10T00:00:00Z");
    assert_eq!(types(&d), strs(&["resolved", "result_returned"]));
    assert_eq!(
        d.copies,
        ["native-1"],
        "the native submission holds the personal data"
    );
}

#[test]
fn portal_times() {
    assert_eq!(
        parse_portal_time("20261231235959").unwrap(),
        "2026-12-31T23:59:59+07:00"
    );
    for bad in [
        "20261301000000",
        "20260230000000",
        "2026-11-05",
        "2026110517000",
        "202611051700001",
    ] {
        assert!(parse_portal_time(bad).is_err(), "{bad}");
    }
    assert_eq!(
        vn_time(at("2026-11-10T20:30:00.9Z")),
        "2026-11-11T03:30:00+07:00"
    );
}

fn id_ok(id: &str) -> bool {
    dossier_code_ok(id) && id.len() <= 128
}

proptest! {
    /// Any dossier code and key make an id an agency may use.
    #[test]
    fn ids_are_valid(dossier in "[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", key in ".{0,80}") {
        let id = event_id(&dossier, &format!("fee:{}:paid", id_part(&key)));
        prop_assert!(id_ok(&id), "{}", id);
    }

    /// Whatever the order a lifecycle's bodies arrive in, and however often, the ledger ends up
    /// with the same events (ids and types), each once.
    #[test]
    fn any_order_any_repeats_same_events(order in proptest::collection::vec(0usize..6, 1..20)) {
        let bodies = fixture("online");
        let mut reference = Ledger::new();
        reference.feed(&bodies[5], "2026-11-10T00:00:00Z");
        let mut ledger = Ledger::new();
        for (n, &i) in order.iter().enumerate() {
            ledger.feed(&bodies[i], &format!("2026-11-10T00:{:02}:00Z", n));
        }
        ledger.feed(&bodies[5], "2026-11-10T01:00:00Z");
        let ids = |l: &Ledger| {
            let mut v: Vec<(String, String)> = l.held.values().flatten().map(|e| (e.id.clone(), e.event_type.clone())).collect();
            v.sort();
            v
        };
        let got = ids(&ledger);
        let mut dedup = got.clone();
        dedup.dedup();
        prop_assert_eq!(&got, &dedup);
        prop_assert_eq!(got, ids(&reference));
    }
}

#[test]
fn a_dossier_yields_the_same_events_alone_or_beside_others() {
    let other: Value = serde_json::from_str(&fixture("bad")[0]).unwrap();
    for name in [
        "online",
        "counter",
        "postal",
        "supplement",
        "extension",
        "refused",
        "withdrawn",
    ] {
        let (mut alone, mut beside) = (Ledger::new(), Ledger::new());
        for body in fixture(name) {
            let mut joined: Value = serde_json::from_str(&body).unwrap();
            let mut data = other["data"].as_array().unwrap().clone();
            data.insert(1, joined["data"][0].clone());
            joined["data"] = data.into();
            let a = alone.feed(&body, "2026-11-10T00:00:00Z");
            let b = beside.feed(&joined.to_string(), "2026-11-10T00:00:00Z");
            let mine = |d: &Derived| -> Vec<Value> {
                d.events()
                    .filter(|e| e["dossier"] != "H01-261102-0008")
                    .cloned()
                    .collect()
            };
            assert_eq!(mine(&a), mine(&b), "{name}");
            assert!(a.events().all(|e| e["agency"] == AGENCY));
            assert_eq!(
                b.rejections().count(),
                2,
                "{name}: the other dossiers' refusals only"
            );
        }
    }
}

#[test]
fn a_dossier_listed_twice_in_one_body_is_taken_once() {
    let mut ledger = Ledger::new();
    let first: Value = serde_json::from_str(&fixture("extension")[0]).unwrap();
    let later: Value = serde_json::from_str(&fixture("extension")[1]).unwrap();
    let body = serde_json::json!({
        "service": "DongBoHoSoMC", "madonvi": AGENCY, "isUpdating": false,
        "data": [first["data"][0], later["data"][0]]
    });
    let d = ledger.feed(&body.to_string(), "2026-11-10T00:00:00Z");
    assert_eq!(d.rejections().count(), 0, "{:?}", d.items);
    assert_eq!(
        types(&d),
        strs(&["submitted", "accepted", "deadline_extended"])
    );
}

#[test]
fn a_record_that_contradicts_the_ledger_is_refused_and_a_stale_one_is_not() {
    let mut ledger = Ledger::new();
    ledger.run("withdrawn");
    // Resolved after the withdrawal the ledger holds: refused, naming the status.
    let resolved =
        fixture("withdrawn")[1].replace("\"TrangThaiHoSo\": \"7\"", "\"TrangThaiHoSo\": \"9\"");
    let d = ledger.feed(&resolved, "2026-11-11T00:00:00Z");
    assert_eq!(d.events().count(), 0);
    let r = d.rejections().next().expect("refused");
    assert_eq!(r.path, "/data/0/TrangThaiHoSo");
    assert!(r.reason.contains("dossier.withdrawn"), "{}", r.reason);
    // The older body (status 2), late: nothing, and no complaint.
    assert!(
        ledger
            .feed(&fixture("withdrawn")[0], "2026-11-11T00:00:00Z")
            .items
            .is_empty()
    );
    // Not received (3) after the acceptance the ledger holds: refused.
    let mut other = Ledger::new();
    other.run("postal");
    let refused =
        fixture("postal")[0].replace("\"TrangThaiHoSo\": \"2\"", "\"TrangThaiHoSo\": \"3\"");
    let d = other.feed(&refused, "2026-11-11T00:00:00Z");
    assert_eq!(d.events().count(), 0);
    assert!(d.rejections().next().unwrap().reason.contains("acceptance"));
}

#[test]
fn a_dossier_with_an_event_the_caller_refuses_is_refused_whole() {
    let held = HashMap::<(String, String), Vec<KnownEvent>>::new();
    let mut history = |_: &str, _: &str| -> Result<Vec<KnownEvent>, String> { Ok(Vec::new()) };
    // The caller refuses results returned in the future (as the ledger does with its clock
    // check); the counter body's resolution and return are in November 2026.
    let mut check = |event: &Value| {
        if event["type"] == "dossier.result_returned" {
            Err((
                "/occurred_at".to_owned(),
                "too far in the future".to_owned(),
            ))
        } else {
            Ok(())
        }
    };
    let body = fixture("counter")[0].clone();
    let d = derive(
        body.as_bytes(),
        AGENCY,
        at("2026-11-10T00:00:00Z"),
        &mut history,
        &mut check,
    )
    .unwrap();
    assert_eq!(d.events().count(), 0, "nothing of the dossier is taken");
    let r = d.rejections().next().unwrap();
    assert_eq!(r.dossier.as_deref(), Some("H01-261102-0002"));
    assert!(
        r.reason.contains("dossier.result_returned") && r.reason.contains("/occurred_at"),
        "{}",
        r.reason
    );
    assert!(held.is_empty());
}

#[test]
fn an_unreadable_history_decides_nothing() {
    let mut history =
        |_: &str, _: &str| -> Result<Vec<KnownEvent>, String> { Err("disk on fire".into()) };
    let mut check = |_: &Value| Ok(());
    let body = fixture("counter")[0].clone();
    let e = derive(
        body.as_bytes(),
        AGENCY,
        at("2026-11-10T00:00:00Z"),
        &mut history,
        &mut check,
    )
    .unwrap_err();
    assert!(e.to_string().contains("disk on fire"));
}

#[test]
fn a_refusal_is_filed_under_the_submission_the_ledger_holds() {
    let mut ledger = Ledger::new();
    let key = (AGENCY.to_owned(), "H01-261102-0009".to_owned());
    ledger.held.insert(
        key,
        vec![KnownEvent {
            id: "native-sub".into(),
            event_type: "dossier.submitted".into(),
            agency: AGENCY.into(),
            procedure: "1.004227".into(),
            data: serde_json::json!({"channel": "online"}),
        }],
    );
    let d = ledger.feed(&fixture("bad")[0], "2026-11-10T00:00:00Z");
    let r = d.rejections().next().unwrap();
    assert_eq!(r.dossier.as_deref(), Some("H01-261102-0009"));
    assert_eq!(r.event_id.as_deref(), Some("native-sub"));
}

#[test]
fn identical_fees_without_codes_are_each_asked_once_whatever_their_order() {
    let mut ledger = Ledger::new();
    let body = |fees: Value| {
        let mut b: Value = serde_json::from_str(&fixture("online")[2]).unwrap();
        b["data"][0]["DanhSachLePhi"] = fees;
        b.to_string()
    };
    let fee = |name: &str, gia: &str| serde_json::json!({"TenPhiLePhi": name, "Gia": gia});
    let d = ledger.feed(
        &body(serde_json::json!([
            fee("Bản sao", "10000"),
            fee("Bản sao", "10000"),
            fee("Lệ phí", "50000")
        ])),
        "2026-11-10T00:00:00Z",
    );
    let fees = d
        .events()
        .filter(|e| e["type"] == "dossier.fee_requested")
        .count();
    assert_eq!(fees, 3, "two identical fees are two fees");
    // The same fees listed in another order: nothing new.
    let d = ledger.feed(
        &body(serde_json::json!([
            fee("Lệ phí", "50000"),
            fee("Bản sao", "10000"),
            fee("Bản sao", "10000")
        ])),
        "2026-11-10T01:00:00Z",
    );
    assert!(d.items.is_empty(), "{:?}", d.items);
}
