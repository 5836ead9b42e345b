//! The national portal's dossier sync bodies (issue 14): the same lifecycles published as native
//! events and as sync payloads give identical metrics and entries; over NATS with the shipped
//! configs an agency's bodies reach the ledger, and another agency's code is refused.

use serde_json::{Value, json};
use socai_chain::{CheckpointSigner, Entry};
use socai_dvc::{KnownEvent, derive};
use socai_model::{Event, Limits, Validator};
use socai_store::{Ledger, LedgerConfig, SledStorage};

const H01: &str = "000.00.12.H01";

fn fixture(name: &str) -> Vec<String> {
    let path = format!(
        "{}/../crates/socai-dvc/fixtures/{name}.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/socai-dvc/fixtures")
        .join(format!("{name}.jsonl"))
}

fn open_ledger(dir: &std::path::Path, skey: &str) -> Ledger<SledStorage> {
    Ledger::open(
        SledStorage::open(dir).unwrap(),
        CheckpointSigner::from_skey(skey).unwrap(),
        vec![7; 32],
        LedgerConfig::default(),
    )
    .unwrap()
}

/// The time the body on line `i` of a lifecycle reached the ledger (its JetStream time).
fn received(lifecycle: usize, i: usize) -> jiff::Timestamp {
    let t: jiff::Timestamp = "2026-11-10T01:00:00Z".parse().unwrap();
    t.checked_add(jiff::SignedDuration::from_mins(
        (lifecycle * 60 + i * 7) as i64,
    ))
    .unwrap()
}

/// The same instant as the adapter writes a time the body has no date for.
fn vn(t: jiff::Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

const PERSONAL: &str = r#"{"full_name":"Nguyễn Văn An","phone":"0912345678","email":"an.nguyen@example.vn","summary":"Đăng ký khai sinh cho Nguyễn Thị Bình"}"#;

/// A native event, as an agency system speaking socai's catalogue would publish it.
fn native(dossier: &str, procedure: &str, event_type: &str, at: &str, data: Value) -> Event {
    // The applicant's data goes with the submission; the official's note on what to supplement
    // may name people, so it is personal too.
    let personal = match event_type {
        "dossier.submitted" => Some(serde_json::from_str(PERSONAL).unwrap()),
        "dossier.supplement_requested" => {
            Some(json!({"note": "Thiếu bản sao giấy chứng nhận kết hôn"}))
        }
        _ => None,
    };
    Event {
        id: format!("native-{dossier}-{event_type}-{}", at.replace('+', "p")),
        event_type: event_type.into(),
        agency: H01.into(),
        procedure: procedure.into(),
        dossier: dossier.into(),
        occurred_at: at.into(),
        schema: 1,
        data,
        personal,
    }
}

const UNIT: &str = "UBND xã Tân Lập";

/// Each fixture lifecycle as native events, grouped by the body (line) that carries the same
/// change. Times the sync format has no field for (fees asked and paid, an extension) are the
/// time the body arrived: the native agency published them then.
fn native_lifecycles() -> Vec<(&'static str, Vec<Vec<Event>>)> {
    let due = "2026-11-05T17:00:00+07:00";
    let filed = "2026-11-02T08:15:00+07:00";
    let sub = |d: &str, p: &str, channel: &str, kind: &str| {
        native(
            d,
            p,
            "dossier.submitted",
            filed,
            json!({"channel": channel, "applicant_kind": kind}),
        )
    };
    let acc = |d: &str, p: &str, extra: Value| {
        let mut data = json!({"due_at": due, "handler_unit": UNIT});
        for (k, v) in extra.as_object().unwrap() {
            data[k] = v.clone();
        }
        native(d, p, "dossier.accepted", filed, data)
    };
    let (d1, p1) = ("H01-261102-0001", "2.000720");
    let p = "1.004227";
    let fee = "Lệ phí đăng ký kinh doanh";
    vec![
        (
            "online",
            vec![
                vec![sub(d1, p1, "online", "business")],
                vec![acc(d1, p1, json!({"digitized_inputs": true}))],
                vec![native(
                    d1,
                    p1,
                    "dossier.fee_requested",
                    &vn(received(0, 2)),
                    json!({"amount_vnd": 50000, "fee_name": fee}),
                )],
                vec![native(
                    d1,
                    p1,
                    "dossier.fee_paid",
                    &vn(received(0, 3)),
                    json!({"online": true, "gateway": "dvcqg", "amount_vnd": 50000}),
                )],
                vec![native(
                    d1,
                    p1,
                    "dossier.resolved",
                    "2026-11-04T10:00:00+07:00",
                    json!({"electronic_result": true, "result_documents": [{"name": "Giấy chứng nhận đăng ký hộ kinh doanh"}]}),
                )],
                vec![native(
                    d1,
                    p1,
                    "dossier.result_returned",
                    "2026-11-04T10:30:00+07:00",
                    json!({"method": "electronic"}),
                )],
            ],
        ),
        (
            "counter",
            vec![vec![
                sub("H01-261102-0002", p, "counter", "citizen"),
                acc("H01-261102-0002", p, json!({})),
                native(
                    "H01-261102-0002",
                    p,
                    "dossier.resolved",
                    "2026-11-05T09:00:00+07:00",
                    json!({"electronic_result": false, "result_documents": [{"name": "Trích lục khai sinh"}]}),
                ),
                native(
                    "H01-261102-0002",
                    p,
                    "dossier.result_returned",
                    "2026-11-05T14:30:00+07:00",
                    json!({"method": "counter"}),
                ),
            ]],
        ),
        (
            "postal",
            vec![
                vec![
                    sub("H01-261102-0003", p, "postal", "citizen"),
                    acc("H01-261102-0003", p, json!({})),
                ],
                vec![
                    native(
                        "H01-261102-0003",
                        p,
                        "dossier.resolved",
                        "2026-11-05T08:00:00+07:00",
                        json!({"electronic_result": false}),
                    ),
                    native(
                        "H01-261102-0003",
                        p,
                        "dossier.result_returned",
                        "2026-11-07T10:00:00+07:00",
                        json!({"method": "postal"}),
                    ),
                ],
            ],
        ),
        (
            "supplement",
            vec![
                vec![
                    sub("H01-261102-0004", p, "online", "citizen"),
                    acc("H01-261102-0004", p, json!({})),
                ],
                vec![native(
                    "H01-261102-0004",
                    p,
                    "dossier.supplement_requested",
                    "2026-11-03T09:00:00+07:00",
                    json!({"reason": "Yêu cầu bổ sung hồ sơ (DanhSachHoSoBoSung, DongBoHoSoMC)"}),
                )],
                vec![native(
                    "H01-261102-0004",
                    p,
                    "dossier.supplement_received",
                    "2026-11-04T08:00:00+07:00",
                    json!({"new_due_at": "2026-11-07T17:00:00+07:00"}),
                )],
                vec![native(
                    "H01-261102-0004",
                    p,
                    "dossier.resolved",
                    "2026-11-06T16:00:00+07:00",
                    json!({"electronic_result": false}),
                )],
            ],
        ),
        (
            "extension",
            vec![
                vec![
                    sub("H01-261102-0005", p, "counter", "citizen"),
                    acc("H01-261102-0005", p, json!({})),
                ],
                vec![native(
                    "H01-261102-0005",
                    p,
                    "dossier.deadline_extended",
                    &vn(received(4, 1)),
                    json!({"new_due_at": "2026-11-10T17:00:00+07:00", "reason": "Ngày hẹn trả mới (NgayHenTra, DongBoHoSoMC)"}),
                )],
                vec![native(
                    "H01-261102-0005",
                    p,
                    "dossier.resolved",
                    "2026-11-09T11:00:00+07:00",
                    json!({"electronic_result": false}),
                )],
            ],
        ),
        (
            "refused",
            vec![
                vec![sub("H01-261102-0006", p, "online", "citizen")],
                vec![native(
                    "H01-261102-0006",
                    p,
                    "dossier.refused",
                    "2026-11-02T15:00:00+07:00",
                    json!({"reason": "Không được tiếp nhận (TrangThaiHoSo 3, DongBoHoSoMC)"}),
                )],
            ],
        ),
        (
            "withdrawn",
            vec![
                vec![
                    sub("H01-261102-0007", p, "online", "citizen"),
                    acc("H01-261102-0007", p, json!({})),
                ],
                vec![native(
                    "H01-261102-0007",
                    p,
                    "dossier.withdrawn",
                    "2026-11-03T10:00:00+07:00",
                    json!({"reason": "Công dân yêu cầu rút hồ sơ (TrangThaiHoSo 7, DongBoHoSoMC)"}),
                )],
            ],
        ),
    ]
}

/// Every metric value a projection of the ledger computes (scope, metric, window, counts).
fn metrics_of(ledger: &Ledger<SledStorage>) -> Vec<Value> {
    let reader = ledger.reader();
    let mut projection = socai_metrics::Projection::new();
    for item in reader.entries(0, ledger.head().size) {
        let (seq, bytes) = item.unwrap();
        projection.apply(seq, &bytes).unwrap();
    }
    projection
        .values("root")
        .into_iter()
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

/// An entry's event without its id, and whether it carries a personal commitment.
fn entry_without_id(ledger: &Ledger<SledStorage>, seq: u64) -> (Value, bool, String) {
    let entry: Entry = ledger.reader().entry(seq).unwrap();
    let mut event = entry.event.clone();
    event.as_object_mut().unwrap().remove("id");
    (
        event,
        entry.personal_commitment.is_some(),
        entry.recorded_at,
    )
}

#[test]
fn the_same_lifecycles_native_and_synced_give_identical_metrics_and_entries() {
    let validator = Validator::new(Limits::default());
    let tmp = tempfile::tempdir().unwrap();
    let (_, skey, _) = CheckpointSigner::generate("test.socai/dvc").unwrap();
    let mut natives = open_ledger(&tmp.path().join("native"), &skey);
    let mut synced = open_ledger(&tmp.path().join("synced"), &skey);
    for (l, (name, lifecycle)) in native_lifecycles().into_iter().enumerate() {
        let bodies = fixture(name);
        assert_eq!(
            bodies.len(),
            lifecycle.len(),
            "{name}: one native group per body"
        );
        for (i, (body, group)) in bodies.iter().zip(lifecycle).enumerate() {
            let at = received(l, i);
            let recorded = vec![at.to_string(); group.len()];
            for e in &group {
                validator.validate_event(e).unwrap();
            }
            let outcomes = natives
                .append_batch_recorded(&group, &recorded, None)
                .unwrap();
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, socai_store::AppendOutcome::Committed { .. })),
                "{name}:{i}: {outcomes:?}"
            );

            let reader = synced.reader();
            let mut history = |agency: &str, dossier: &str| -> Result<Vec<KnownEvent>, String> {
                let seqs = reader.history(dossier).map_err(|e| e.to_string())?;
                Ok(seqs
                    .into_iter()
                    .filter_map(|s| KnownEvent::from_envelope(&reader.entry(s).unwrap().event))
                    .filter(|e| e.agency == agency)
                    .collect())
            };
            let mut check = |e: &Value| {
                validator
                    .validate(&serde_json::to_vec(e).unwrap())
                    .map(|_| ())
                    .map_err(|r| (r.path, r.reason))
            };
            let derived = derive(body.as_bytes(), H01, at, &mut history, &mut check).unwrap();
            assert_eq!(derived.rejections().count(), 0, "{name}:{i}");
            let events: Vec<Event> = derived
                .events()
                .map(|e| validator.validate(&serde_json::to_vec(e).unwrap()).unwrap())
                .collect();
            assert_eq!(
                events.iter().map(|e| &e.event_type).collect::<Vec<_>>(),
                group.iter().map(|e| &e.event_type).collect::<Vec<_>>(),
                "{name} line {}",
                i + 1
            );
            synced
                .append_batch_recorded(&events, &recorded, None)
                .unwrap();
        }
        // Every body again, later: the synced ledger gains nothing.
        let size = synced.head().size;
        for body in &bodies {
            let reader = synced.reader();
            let mut history = |_: &str, dossier: &str| -> Result<Vec<KnownEvent>, String> {
                Ok(reader
                    .history(dossier)
                    .unwrap()
                    .into_iter()
                    .filter_map(|s| KnownEvent::from_envelope(&reader.entry(s).unwrap().event))
                    .collect())
            };
            let again = derive(
                body.as_bytes(),
                H01,
                received(l, 9),
                &mut history,
                &mut |_: &Value| Ok(()),
            )
            .unwrap();
            assert!(again.items.is_empty(), "{name}: {:?}", again.items);
        }
        assert_eq!(synced.head().size, size);
    }
    let size = natives.head().size;
    assert_eq!(size, synced.head().size);
    assert!(size >= 25, "{size} entries");
    for seq in 0..size {
        assert_eq!(
            entry_without_id(&natives, seq),
            entry_without_id(&synced, seq),
            "entry {seq}"
        );
    }
    let (a, b) = (metrics_of(&natives), metrics_of(&synced));
    assert!(a.len() > 100, "{} values", a.len());
    // Same values for every metric, scope and window (roots differ: the ids do).
    let strip = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .map(|v| {
                let mut v = v.clone();
                v.as_object_mut().unwrap().remove("root");
                v
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
    let online = a
        .iter()
        .filter(|v| {
            v["metric"] == "online_payment_rate" && v["denominator"].as_i64().unwrap_or(0) > 0
        })
        .count();
    assert!(online > 0, "online payment was measured");
}

mod over_nats {
    use super::*;
    use socai_e2e::nats::*;
    use socai_e2e::{Ledger as DataDir, stderr};
    use std::time::Duration;

    /// A hang guard for waits, far above what any run here takes; never a timing assertion.
    const PATIENCE: Duration = Duration::from_secs(90);
    const TOKEN: &str = "socai_test_auditor_token";
    const LIFECYCLES: [&str; 7] = [
        "online",
        "counter",
        "postal",
        "supplement",
        "extension",
        "refused",
        "withdrawn",
    ];

    /// `socai --json publish --format dvc-sync FILE` as `user`; (exit status, summary, stderr).
    fn publish_sync(
        ledger: &DataDir,
        url: &str,
        user: &str,
        file: &std::path::Path,
        extra: &[&str],
    ) -> (i32, Value, String) {
        let mut args = vec![
            "--json",
            "publish",
            "--format",
            "dvc-sync",
            file.to_str().unwrap(),
            "--nats",
            url,
            "--give-up-after",
            "60",
        ];
        args.extend_from_slice(extra);
        let out = ledger
            .cmd(&args)
            .env("SOCAI_NATS_USER", user)
            .env("SOCAI_NATS_PASSWORD", password(user))
            .output()
            .expect("socai publish runs");
        // The summary (an error follows it on a failed run).
        let summary = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get("error").is_none())
            .unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), summary, stderr(&out))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_agencys_sync_bodies_reach_the_ledger_and_another_agencys_code_is_refused() {
        let ledger = DataDir::new();
        ledger.configure(&format!(
            "[[http.tokens]]\nname = \"inspector\"\nrole = \"auditor\"\nsha256 = \"{}\"\n",
            socai_api::token_digest(TOKEN)
        ));
        let nats = start_nats(&ledger.path("nats"), true);
        let url = nats.url();
        let mut serve = ledger.serve(&url, Some("ledger"));
        let (client, _) = connect(&url, Some("ledger")).await;
        let js = async_nats::jetstream::new(client);
        wait_for_streams(&js).await;

        // Every lifecycle, as the agency's system sends it, one body per line.
        let all = ledger.path("lifecycles.jsonl");
        let bodies: Vec<String> = LIFECYCLES.iter().flat_map(|n| fixture(n)).collect();
        std::fs::write(&all, bodies.join("\n") + "\n").unwrap();
        let (status, summary, err) = publish_sync(&ledger, &url, H01, &all, &[]);
        assert_eq!(status, 0, "{summary}\n{err}");
        assert_eq!(summary["synced"], bodies.len(), "{summary}");
        assert_eq!(summary["sync_rejected"], 0, "{summary}");
        let yielded = summary["sync_events"].as_u64().unwrap();
        assert_eq!(yielded, 28, "{summary}");

        // The same file again: every body answered, nothing new.
        let (status, summary, err) = publish_sync(&ledger, &url, H01, &all, &[]);
        assert_eq!(status, 0, "{summary}\n{err}");
        assert_eq!(summary["synced"], bodies.len(), "{summary}");
        assert_eq!(summary["sync_events"], 0, "{summary}");

        // Bad bodies: a malformed date and an unknown status refuse their dossiers (the good one
        // beside them goes through), another agency's madonvi and a broken body refuse the
        // whole body. Each part is on REJECTED with its reason, under the agency's subject.
        let (status, summary, err) =
            publish_sync(&ledger, &url, H01, &fixture_path("bad"), &["--agency", H01]);
        assert_eq!(status, 1, "{summary}\n{err}");
        assert_eq!(summary["synced"], 3, "{summary}");
        assert_eq!(summary["sync_events"], 1, "{summary}");
        assert_eq!(summary["sync_rejected"], 4, "{summary}");
        assert!(
            err.contains("H01-261102-0009") && err.contains("NgayHenTra"),
            "{err}"
        );
        assert!(
            err.contains("/madonvi") && err.contains("000.00.12.H02"),
            "{err}"
        );

        // Without --agency, a body naming another agency goes to that agency's subject, which
        // this agency may not publish to: refused by the server, never stored.
        let other = ledger.path("other.jsonl");
        std::fs::write(&other, &fixture("bad")[1]).unwrap();
        let (status, summary, err) = publish_sync(&ledger, &url, H01, &other, &[]);
        assert_eq!(status, 1, "{summary}\n{err}");
        assert!(
            err.contains("Permissions Violation") && err.contains("000-00-12-H02"),
            "{err}"
        );
        let events = stream_contents(&js, socai_wire::stream::EVENTS).await;
        assert!(events.iter().all(|k| k.subject != "dvc.sync.000-00-12-H02"));
        assert!(events.iter().any(|k| k.subject == "dvc.sync.000-00-12-H01"));

        let rejected = stream_contents(&js, socai_wire::stream::REJECTED).await;
        let sync_copies: Vec<_> = rejected
            .iter()
            .filter(|k| k.subject == "dvc.rejected.000-00-12-H01.sync")
            .collect();
        assert_eq!(sync_copies.len(), 4, "one copy per part refused");
        for copy in &sync_copies {
            assert_eq!(
                copy.header(socai_wire::header::CODE).as_deref(),
                Some("unmappable_sync")
            );
        }
        let madonvi = sync_copies
            .iter()
            .find(|k| k.header(socai_wire::header::PATH).as_deref() == Some("/madonvi"))
            .expect("the other agency's body");
        assert_eq!(
            madonvi.payload,
            fixture("bad")[1].as_bytes(),
            "the raw body is kept"
        );
        let dated = sync_copies
            .iter()
            .find(|k| k.header(socai_wire::header::PATH).as_deref() == Some("/data/0/NgayHenTra"))
            .expect("the malformed date");
        assert!(
            String::from_utf8_lossy(&dated.payload).contains("H01-261102-0009"),
            "the dossier's own JSON is kept"
        );

        // A progress body, published while the ledger is down (kill -9): it waits on EVENTS and
        // is mapped against the history once the ledger is back.
        serve.kill();
        let progress = fixture_path("progress");
        let (status, summary, err) =
            publish_sync(&ledger, &url, H01, &progress, &["--no-receipts"]);
        assert_eq!(status, 0, "{summary}\n{err}");
        let mut serve = ledger.serve(&url, Some("ledger"));
        wait_processed(&mut serve, &js, PATIENCE).await;

        // Redacting a synced dossier's submission erases every body on EVENTS that carried its
        // applicant's data: the one it came from, the later ones and the repeats.
        let holds_0001 = |events: &[Kept]| {
            events
                .iter()
                .filter(|k| {
                    k.subject == "dvc.sync.000-00-12-H01"
                        && String::from_utf8_lossy(&k.payload).contains("H01-261102-0001")
                })
                .count()
        };
        let before = holds_0001(&stream_contents(&js, socai_wire::stream::EVENTS).await);
        assert_eq!(before, 12, "six bodies, published twice");
        let api = serve.http_url();
        let redacted = ledger.json(&[
            "--api",
            &api,
            "--api-token",
            TOKEN,
            "redact",
            "H01-261102-0001:submitted",
            "--reason",
            "citizen request (Decree 13)",
        ]);
        assert_eq!(redacted["copies_erased"], 12, "{redacted}");
        assert_eq!(redacted["copies_pending"], false, "{redacted}");
        assert_eq!(
            holds_0001(&stream_contents(&js, socai_wire::stream::EVENTS).await),
            0
        );
        serve.stop();

        let held = ledger_events(&ledger);
        assert_eq!(
            held.len() as u64,
            yielded + 3,
            "the good bad-file dossier, one step and the redaction record"
        );
        let mut ids: Vec<&String> = held.iter().map(|(id, _, _)| id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), held.len(), "every event once");
        assert!(held.iter().all(|(_, agency, _)| agency == H01));
        assert!(
            held.iter()
                .any(|(id, _, t)| id.starts_with("H01-261102-0004:step:")
                    && t == "dossier.processing_step")
        );
        assert!(
            held.iter()
                .any(|(id, _, _)| id == "H01-261102-0008:submitted")
        );
        let vkey = ledger.dir().join("checkpoint.vkey");
        let verified = ledger.run(&["verify", "--vkey", vkey.to_str().unwrap()]);
        assert!(verified.status.success(), "{}", stderr(&verified));
    }

    /// Two ledgers with the same keys read the same EVENTS stream (native events, sync bodies
    /// that depend on them, a conflicting event, bodies refused then mapped) in chunks of 1000
    /// and of 1 message: byte-identical entries, whatever the chunk boundaries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_ledgers_reading_the_same_stream_in_different_chunks_write_the_same_entries() {
        let a = DataDir::new();
        let b = a.copy();
        a.configure("[ingest]\nbatch_max_events = 1000\n");
        b.configure("[ingest]\nbatch_max_events = 1\n");
        let nats = start_nats(&a.path("nats"), true);
        let url = nats.url();
        // The streams exist once a ledger has started (a throwaway one): then everything is
        // published before either ledger reads.
        let bootstrap = a.copy();
        let mut first = bootstrap.serve(&url, Some("ledger"));
        let (client, _) = connect(&url, Some("ledger")).await;
        let js = async_nats::jetstream::new(client);
        wait_for_streams(&js).await;
        first.stop();

        let dossier = "H01-261103-0101";
        let native = |id: &str, t: &str, data: Value| {
            json!({
                "id": id, "type": t, "agency": H01, "procedure": "1.004227", "dossier": dossier,
                "occurred_at": "2026-11-03T08:00:00+07:00", "schema": 1, "data": data,
            })
            .to_string()
        };
        let events = a.path("native.jsonl");
        std::fs::write(
            &events,
            [
                native("n-sub", "dossier.submitted", json!({"channel": "online"})),
                native(
                    "n-acc",
                    "dossier.accepted",
                    json!({"due_at": "2026-11-06T17:00:00+07:00"}),
                ),
            ]
            .join("\n")
                + "\n",
        )
        .unwrap();
        // The same id with another due date (another run, so JetStream keeps it): a conflict,
        // refused by the ledger.
        let conflict = a.path("conflict.jsonl");
        std::fs::write(
            &conflict,
            native(
                "n-acc",
                "dossier.accepted",
                json!({"due_at": "2026-11-09T17:00:00+07:00"}),
            ) + "\n",
        )
        .unwrap();
        let publish = |file: &std::path::Path, format: &str| {
            let out = a
                .cmd(&[
                    "--json",
                    "publish",
                    "--format",
                    format,
                    file.to_str().unwrap(),
                    "--nats",
                    &url,
                    "--no-receipts",
                    "--in-flight",
                    "1",
                ])
                .env("SOCAI_NATS_USER", "gateway")
                .env("SOCAI_NATS_PASSWORD", password("gateway"))
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        };
        publish(&events, "events");
        publish(&conflict, "events");
        // A body about the natively published dossier: its due date is the conflicting one's.
        let body = json!({"service": "DongBoHoSoMC", "madonvi": H01, "isUpdating": true, "data": [{
            "MaHoSo": dossier, "MaTTHC": "1.004227", "KenhThucHien": "2", "TrangThaiHoSo": "4",
            "NgayTiepNhan": "20261103080000", "NgayHenTra": "20261109170000"}]});
        let progress = fixture("progress")[0].clone();
        let sync = a.path("sync.jsonl");
        let mut lines = vec![body.to_string(), progress.clone()];
        lines.extend(LIFECYCLES.iter().flat_map(|n| fixture(n)));
        std::fs::write(&sync, lines.join("\n") + "\n").unwrap();
        publish(&sync, "dvc-sync");
        // Again, by another run (a run's own repeats are dropped by JetStream's dedup window):
        // the progress body (now about a known dossier), a bad body, every lifecycle.
        let mut lines = vec![progress, fixture("bad")[0].clone()];
        lines.extend(LIFECYCLES.iter().flat_map(|n| fixture(n)));
        std::fs::write(&sync, lines.join("\n") + "\n").unwrap();
        publish(&sync, "dvc-sync");
        let events = stream_contents(&js, socai_wire::stream::EVENTS).await;
        assert_eq!(events.len(), 3 + 2 * (2 + 20), "every message stored");

        for ledger in [&a, &b] {
            let mut serve = ledger.serve(&url, Some("ledger"));
            wait_processed(&mut serve, &js, PATIENCE).await;
            serve.stop();
            // The next ledger publishes its own COMMITTED and CHECKPOINTS (replicas that share
            // them are issue 15's); EVENTS, with its JetStream times, is the same.
            for name in ["COMMITTED", "CHECKPOINTS"] {
                js.delete_stream(name).await.expect("delete stream");
            }
        }
        let (ea, eb) = (ledger_entries(&a), ledger_entries(&b));
        assert!(ea.len() > 30, "{} entries", ea.len());
        assert_eq!(ea.len(), eb.len());
        for (seq, (x, y)) in ea.iter().zip(&eb).enumerate() {
            assert_eq!(
                String::from_utf8_lossy(x),
                String::from_utf8_lossy(y),
                "entry {seq}"
            );
        }
        let held = ledger_events(&a);
        // The conflicting native event changed nothing: the body's later date is an extension.
        assert!(
            held.iter()
                .any(|(id, _, t)| id.starts_with(&format!("{dossier}:extended:"))
                    && t == "dossier.deadline_extended")
        );
        // The progress body, refused while its dossier was unknown, maps once it is known.
        assert!(
            held.iter()
                .any(|(id, _, _)| id.starts_with("H01-261102-0004:step:"))
        );
    }
}
