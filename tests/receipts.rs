//! Receipts end to end, on a real nats-server with the shipped config and users and the real
//! `socai serve`: after each commit's fsync the ledger tells each publishing agency, on
//! `dvc.receipts.<agency>`, which of its event ids got which seq, under a signed tree head. An
//! agency receives only its own receipts; a receipt verifies with the log's published key and
//! turns into an inclusion proof (locally and over HTTP) that `socai proof verify` and an
//! independent RFC 9162 check accept; a publisher that gets no receipt publishes again and is
//! answered with the original seq; `socai publish` reports every event and fails unless all are
//! in the ledger; events sent without a PubAck to a subject the server refuses end at once, as do
//! events on a subject no one can publish to (never sent, the run going on), and a publisher
//! whose nats-server dies ends every event rather than hang.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures::StreamExt;
use socai_chain::Receipt;
use socai_client::publisher::{Outgoing, PublishError};
use socai_client::receipts::{
    EventOutcome, Outcome, ReceiptOptions, ReceiptPublisher, Report, Summary,
};
use socai_client::subject::{event_subject, receipts_subject};
use socai_e2e::nats::*;
use socai_e2e::openapi::OpenApi;
use socai_e2e::rfc6962::check_inclusion_proof;
use socai_e2e::{Ledger, stderr, stdout};
use socai_model::Event;
use socai_wire::stream::EVENTS;

/// A hang guard for waits, far above what any run here takes; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(90);

const H01: &str = "000.00.12.H01";
const H02: &str = "000.00.12.H02";

fn event_json(agency: &str, id: &str, channel: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "type": "dossier.submitted", "agency": agency, "procedure": "1.004227",
        "dossier": format!("{agency}-20261109-{id}"), "occurred_at": "2026-11-09T08:15:00+07:00",
        "schema": 1, "data": {"channel": channel}
    })
}

fn event_of(agency: &str, id: &str) -> Event {
    serde_json::from_value(event_json(agency, id, "online")).expect("event")
}

/// An event the ledger rejects: `schema_violation` at `/data/channel`.
fn bad_event(agency: &str, id: &str) -> Outgoing {
    Outgoing {
        subject: event_subject(agency, "dossier.submitted"),
        id: id.into(),
        payload: serde_json::to_vec(&event_json(agency, id, "pigeon"))
            .expect("json")
            .into(),
    }
}

/// What one run of a [`ReceiptPublisher`] reported.
#[derive(Debug, Default)]
struct Collected {
    summary: Summary,
    outcomes: Vec<EventOutcome<usize>>,
    receipts: Vec<Arc<Receipt>>,
    raw_receipts: Vec<Vec<u8>>,
    bad: Vec<String>,
}

impl Collected {
    fn outcome(&self, id: &str) -> &Outcome {
        &self
            .outcomes
            .iter()
            .find(|o| o.id == id)
            .unwrap_or_else(|| panic!("no outcome for {id}"))
            .outcome
    }
}

/// Publishes `messages` and collects everything reported; `republished` counts re-publishes as
/// they happen.
async fn run(
    publisher: ReceiptPublisher,
    messages: Vec<Outgoing>,
    republished: Arc<AtomicU64>,
) -> Collected {
    let mut c = Collected::default();
    let summary = publisher
        .publish_all(
            messages.into_iter().enumerate().map(|(i, m)| (m, i)),
            |report| match report {
                Report::Receipt { receipt, raw } => {
                    c.receipts.push(receipt);
                    c.raw_receipts.push(raw.to_vec());
                }
                Report::BadReceipt { error, .. } => c.bad.push(error),
                Report::Republished { .. } => {
                    republished.fetch_add(1, Relaxed);
                }
                Report::Event(e) => c.outcomes.push(e),
            },
        )
        .await
        .expect("receipts can be received");
    c.summary = summary;
    c
}

async fn receipt_publisher(url: &str, user: &str, options: ReceiptOptions) -> ReceiptPublisher {
    publisher(url, Some(user)).await.with_receipts(options)
}

/// `POST /v1/proofs/receipt` with `body`, its answer checked against the OpenAPI document:
/// (status, body).
async fn post_receipt(openapi: &OpenApi, base: &str, query: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/proofs/receipt{query}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the API answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.bytes().await.expect("body").to_vec();
    openapi.check("POST", "/v1/proofs/receipt", status, &content_type, &body);
    (status, body)
}

/// Waits until the running ledger's API says it holds `size` entries.
async fn wait_for_size(api: &str, size: u64) {
    let http = reqwest::Client::new();
    wait_until(
        PATIENCE,
        &format!("{size} entries in the ledger"),
        || async {
            let log: serde_json::Value = match http.get(format!("{api}/v1/log")).send().await {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(_) => return false,
            };
            log["size"].as_u64() == Some(size)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_receives_only_its_own_receipts_and_proves_its_events_with_them() {
    let ledger = Ledger::new();
    ledger.configure("[ingest]\ncheckpoint_interval_s = 1\n");
    let nats = start_nats(&ledger.path("nats"), true);
    let url = nats.url();
    let mut serve = ledger.serve(&url, Some("ledger"));
    let api = serve.http_url();
    let (client, _) = connect(&url, Some("ledger")).await;
    wait_for_streams(&async_nats::jetstream::new(client)).await;
    let key = ledger.verifier();

    // H01 listens to its own receipts subject, and tries H02's: the server refuses that one.
    let (h01_raw, h01_errors) = connect(&url, Some(H01)).await;
    let mut own = h01_raw
        .subscribe(receipts_subject(H01))
        .await
        .expect("subscribe");
    let mut stolen = h01_raw
        .subscribe(receipts_subject(H02))
        .await
        .expect("subscribe call");
    h01_raw.flush().await.expect("flush");
    wait_until(
        Duration::from_secs(10),
        "the server to refuse H01's subscription to H02's receipts",
        || async {
            h01_errors.recent().iter().any(|e| {
                e.contains(
                    "Permissions Violation for Subscription to \"dvc.receipts.000-00-12-H02\"",
                )
            })
        },
    )
    .await;

    // Both agencies publish at the same time, each waiting for its receipts (verified with the
    // log's published key); H01 also sends an event the ledger rejects.
    let options = ReceiptOptions {
        verifier: Some(key.clone()),
        ..ReceiptOptions::default()
    };
    let h01_ids: Vec<String> = (0..12).map(|i| format!("h01-{i}")).collect();
    let h02_ids: Vec<String> = (0..12).map(|i| format!("h02-{i}")).collect();
    let mut h01_msgs: Vec<Outgoing> = h01_ids
        .iter()
        .map(|id| Outgoing::event(&event_of(H01, id)))
        .collect();
    h01_msgs.insert(5, bad_event(H01, "h01-bad"));
    let h02_msgs: Vec<Outgoing> = h02_ids
        .iter()
        .map(|id| Outgoing::event(&event_of(H02, id)))
        .collect();
    let count = Arc::new(AtomicU64::new(0));
    let (h01, h02) = tokio::join!(
        async {
            let p = receipt_publisher(&url, H01, options.clone()).await;
            run(p, h01_msgs, count.clone()).await
        },
        async {
            let p = receipt_publisher(&url, H02, options.clone()).await;
            run(p, h02_msgs, count.clone()).await
        },
    );
    for (c, agency, ids) in [(&h01, H01, &h01_ids), (&h02, H02, &h02_ids)] {
        assert_eq!(
            c.bad,
            Vec::<String>::new(),
            "{agency}: receipts not accepted"
        );
        assert_eq!(
            c.summary.committed,
            ids.len() as u64,
            "{agency}: {:?}",
            c.summary
        );
        assert_eq!(
            c.summary.no_receipt + c.summary.not_published,
            0,
            "{agency}"
        );
        let own_ids: HashSet<&str> = c.outcomes.iter().map(|o| o.id.as_str()).collect();
        for r in &c.receipts {
            // Each agency's receipts are about its own events only, and verify with the key.
            assert_eq!(r.agency, agency);
            r.verify(&key)
                .expect("a receipt verifies with checkpoint.vkey");
            for name in r
                .events
                .iter()
                .map(|e| e.id.as_str())
                .chain(r.rejected.iter().map(|j| j.id.as_str()))
            {
                assert!(
                    own_ids.contains(name),
                    "{agency} got a receipt naming {name}"
                );
            }
        }
        for id in ids.iter() {
            match c.outcome(id) {
                Outcome::Committed { seq, receipt, .. } => {
                    assert!(receipt.events.iter().any(|e| &e.id == id && e.seq == *seq))
                }
                other => panic!("{agency}/{id}: {other:?}"),
            }
        }
    }
    match h01.outcome("h01-bad") {
        Outcome::Rejected { code, path, .. } => {
            assert_eq!(
                (code.as_str(), path.as_str()),
                ("schema_violation", "/data/channel")
            )
        }
        other => panic!("h01-bad: {other:?}"),
    }
    assert_eq!(h01.summary.rejected, 1);
    // The seqs of both agencies are distinct entries of one ledger.
    let mut seqs: Vec<u64> = [&h01, &h02]
        .iter()
        .flat_map(|c| c.outcomes.iter())
        .filter_map(|o| match o.outcome {
            Outcome::Committed { seq, .. } => Some(seq),
            _ => None,
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..24).collect::<Vec<u64>>());

    // What H01's own subscription saw: its receipts only; the refused one saw nothing.
    let mut seen = HashSet::new();
    while seen.len() < h01_ids.len() + 1 {
        let m = tokio::time::timeout(PATIENCE, own.next())
            .await
            .expect("H01's receipts arrive on its subject")
            .expect("subscription open");
        let r = Receipt::from_json(&m.payload).expect("a receipt");
        assert_eq!(r.agency, H01);
        for name in r
            .events
            .iter()
            .map(|e| e.id.clone())
            .chain(r.rejected.iter().map(|j| j.id.clone()))
        {
            assert!(name.starts_with("h01-"), "H01 saw a receipt naming {name}");
            seen.insert(name);
        }
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stolen.next())
            .await
            .is_err(),
        "nothing arrives on a refused subscription"
    );

    // A receipt turns into an inclusion proof: over HTTP (the route, checked against the OpenAPI
    // document, and `socai proof inclusion --receipt --api`), then locally: the same bytes.
    let id = "h01-7";
    let (seq, receipt) = match h01.outcome(id) {
        Outcome::Committed { seq, receipt, .. } => (*seq, receipt.clone()),
        other => panic!("{other:?}"),
    };
    let all = ledger.path("h01-receipts.jsonl");
    let mut lines = Vec::new();
    for raw in &h01.raw_receipts {
        lines.extend_from_slice(raw);
        lines.push(b'\n');
    }
    std::fs::write(&all, lines).expect("write receipts");
    let one = ledger.path("one-receipt.json");
    std::fs::write(&one, receipt.to_json()).expect("write receipt");
    let all_arg = all.to_str().expect("utf-8");
    let openapi = OpenApi::load();
    let (status, served) =
        post_receipt(&openapi, &api, &format!("?id={id}"), receipt.to_json()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&served));
    let over_api = ledger.run(&[
        "--json",
        "--api",
        &api,
        "proof",
        "inclusion",
        "--receipt",
        all_arg,
        "--id",
        id,
    ]);
    assert!(over_api.status.success(), "{}", stderr(&over_api));
    assert_eq!(stdout(&over_api).trim_end().as_bytes(), served.as_slice());

    // Not a receipt: 400 naming the body. An id the receipt does not name: 400 naming `id`.
    let (status, body) = post_receipt(&openapi, &api, "", b"{\"v\":1}".to_vec()).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = post_receipt(&openapi, &api, "?id=nope", receipt.to_json()).await;
    assert_eq!(status, 400);

    // A receipt with a changed seq: its signature fails, and the ledger refuses to prove it.
    let mut tampered = (*receipt).clone();
    let event = tampered
        .events
        .iter_mut()
        .find(|e| e.id == id)
        .expect("named");
    event.seq = if seq == 0 { 1 } else { seq - 1 };
    assert!(
        tampered.verify(&key).is_err(),
        "a changed seq must not verify"
    );
    let (status, body) =
        post_receipt(&openapi, &api, &format!("?id={id}"), tampered.to_json()).await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem json");
    assert_eq!(problem["code"], "receipt_mismatch");
    let tampered_file = ledger.path("tampered.json");
    std::fs::write(&tampered_file, tampered.to_json()).expect("write");
    let tampered_arg = tampered_file.to_str().expect("utf-8");
    let refused = ledger.run(&[
        "--api",
        &api,
        "proof",
        "inclusion",
        "--receipt",
        tampered_arg,
        "--id",
        id,
    ]);
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("does not match this ledger"),
        "{}",
        stderr(&refused)
    );

    serve.stop();
    let local = ledger.run(&[
        "--json",
        "proof",
        "inclusion",
        "--receipt",
        all_arg,
        "--id",
        id,
    ]);
    assert!(local.status.success(), "{}", stderr(&local));
    assert_eq!(
        stdout(&local),
        stdout(&over_api),
        "local and --api print the same bytes"
    );
    // One receipt naming one event needs no --id... this one names several: the ids are listed.
    let several = ledger.run(&[
        "proof",
        "inclusion",
        "--receipt",
        one.to_str().expect("utf-8"),
    ]);
    if receipt.events.len() + receipt.rejected.len() > 1 {
        assert_eq!(several.status.code(), Some(2), "{}", stderr(&several));
        assert!(stderr(&several).contains(id), "{}", stderr(&several));
    } else {
        assert!(several.status.success(), "{}", stderr(&several));
    }
    let refused = ledger.run(&["proof", "inclusion", "--receipt", tampered_arg, "--id", id]);
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));

    // The proof: `socai proof verify --vkey` accepts it, and so does the independent check; it
    // proves this event's entry at the receipt's seq, under the receipt's own tree head.
    let proof_file = ledger.path("proof.json");
    std::fs::write(&proof_file, stdout(&local)).expect("write proof");
    let checked = ledger.run(&[
        "proof",
        "verify",
        proof_file.to_str().expect("utf-8"),
        "--vkey",
        ledger
            .dir()
            .join("checkpoint.vkey")
            .to_str()
            .expect("utf-8"),
    ]);
    assert!(checked.status.success(), "{}", stderr(&checked));
    let proof: serde_json::Value = serde_json::from_str(&stdout(&local)).expect("proof json");
    let (size, _root) = check_inclusion_proof(&proof);
    assert_eq!(proof["leaf_index"], seq);
    assert_eq!(
        proof["checkpoint"].as_str(),
        Some(receipt.checkpoint.as_str())
    );
    assert_eq!(
        size,
        key.verify(&receipt.checkpoint)
            .expect("the receipt's tree head verifies")
            .checkpoint
            .size
    );
    let event = receipt.events.iter().find(|e| e.id == id).expect("named");
    assert_eq!(proof["leaf_hash"].as_str(), Some(event.leaf_hash.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_without_receipts_publishes_again_and_is_answered_with_the_original_seq() {
    // JetStream's duplicate window is the default (120 s): every re-publish after the receipt
    // timeout has a msg-id of its own round and is stored again, so the ledger, not nats-server,
    // must make it exactly once.
    let ledger = Ledger::new();
    ledger.configure("[ingest]\ncheckpoint_interval_s = 1\n");
    let nats = start_nats(&ledger.path("nats"), true);
    let url = nats.url();
    let mut serve = ledger.serve(&url, Some("ledger"));
    let api = serve.http_url();
    let (client, _) = connect(&url, Some("ledger")).await;
    let js = async_nats::jetstream::new(client);
    wait_for_streams(&js).await;

    let options = ReceiptOptions {
        receipt_timeout: Duration::from_secs(1),
        max_receipt_timeout: Duration::from_secs(2),
        give_up_after: PATIENCE,
        ..ReceiptOptions::default()
    };
    let publisher = receipt_publisher(&url, H01, options).await;
    let events: Vec<Event> = (0..20)
        .map(|i| event_of(H01, &format!("again-{i}")))
        .collect();

    // The first five were published before and committed, but their receipts never reached
    // this publisher (published with PubAcks only, same msg-ids).
    let failed = publisher
        .publisher()
        .publish_all(events[..5].iter().map(Outgoing::event), 16, |r| {
            r.expect("stored");
        })
        .await;
    assert_eq!(failed, 0);
    wait_for_size(&api, 5).await;
    serve.stop();
    let original: HashMap<String, u64> = ledger_events(&ledger)
        .into_iter()
        .enumerate()
        .map(|(seq, (id, _, _))| (id, seq as u64))
        .collect();
    let stored_before = stream_messages(&js, EVENTS).await;

    // The ledger is down: all twenty are published, get no receipt, and are published again
    // (the timeout doubling up to 2 s) while it stays down.
    let republished = Arc::new(AtomicU64::new(0));
    let running = tokio::spawn(run(
        publisher,
        events.iter().map(Outgoing::event).collect(),
        republished.clone(),
    ));
    wait_until(PATIENCE, "every event published again", || async {
        republished.load(Relaxed) >= 2 * events.len() as u64
    })
    .await;
    let stored_down = stream_messages(&js, EVENTS).await;
    assert!(
        stored_down > stored_before + events.len() as u64,
        "re-publishes inside JetStream's duplicate window are stored again: {stored_before} → {stored_down}"
    );
    assert!(
        !running.is_finished(),
        "nothing can be answered while the ledger is down"
    );

    // The ledger comes back: every event ends with a receipt; the five it already held are
    // answered as duplicates of their original seq.
    let mut serve = ledger.serve(&url, Some("ledger"));
    let done = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("every event answered")
        .expect("the publisher task");
    serve.stop();
    assert_eq!(done.bad, Vec::<String>::new());
    assert_eq!(done.summary.no_receipt + done.summary.not_published, 0);
    assert_eq!(done.outcomes.len(), events.len());
    let in_ledger = ledger_events(&ledger);
    let seq_of: HashMap<&str, u64> = in_ledger
        .iter()
        .enumerate()
        .map(|(seq, (id, _, _))| (id.as_str(), seq as u64))
        .collect();
    assert_eq!(in_ledger.len(), events.len(), "each event exactly once");
    assert_eq!(seq_of.len(), events.len(), "each event exactly once");
    for o in &done.outcomes {
        assert!(
            o.publishes >= 2,
            "{} was published {} times",
            o.id,
            o.publishes
        );
        match &o.outcome {
            Outcome::Duplicate { seq, .. } if original.contains_key(&o.id) => {
                assert_eq!(*seq, original[&o.id], "{}: the original seq", o.id)
            }
            Outcome::Committed { seq, .. } | Outcome::Duplicate { seq, .. }
                if !original.contains_key(&o.id) =>
            {
                assert_eq!(*seq, seq_of[o.id.as_str()], "{}", o.id)
            }
            other => panic!("{}: {other:?}", o.id),
        }
    }
    assert!(done.summary.duplicates >= 5, "{:?}", done.summary);
}

/// `socai publish FILE` as `user`, with `extra` arguments: the process output.
fn socai_publish(
    ledger: &Ledger,
    url: &str,
    user: &str,
    file: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "--json",
        "publish",
        file.to_str().expect("utf-8"),
        "--nats",
        url,
    ];
    args.extend_from_slice(extra);
    ledger
        .cmd(&args)
        .env("SOCAI_NATS_USER", user)
        .env("SOCAI_NATS_PASSWORD", password(user))
        .output()
        .expect("socai publish runs")
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).lines().next().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

/// The `{"error": {"code", "message"}}` a failed `socai --json` command prints last.
fn failure(out: &std::process::Output) -> (String, String) {
    let last: serde_json::Value =
        serde_json::from_str(stdout(out).lines().last().unwrap_or("null")).unwrap_or_default();
    (
        last["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        last["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

fn write_lines(path: &std::path::Path, lines: &[serde_json::Value]) {
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(path, text.join("\n") + "\n").expect("write events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socai_publish_fails_unless_every_event_is_in_the_ledger() {
    let ledger = Ledger::new();
    ledger.configure("[ingest]\ncheckpoint_interval_s = 1\n");
    let nats = start_nats(&ledger.path("nats"), true);
    let url = nats.url();
    let mut serve = ledger.serve(&url, Some("ledger"));
    let (client, _) = connect(&url, Some("ledger")).await;
    wait_for_streams(&async_nats::jetstream::new(client)).await;
    let vkey_path = ledger.dir().join("checkpoint.vkey");
    let vkey_arg = vkey_path.to_str().expect("utf-8");
    let key = ledger.verifier();

    // Every event committed: exit 0, every receipt appended to --receipts and verified.
    let first = ledger.path("first.jsonl");
    write_lines(
        &first,
        &(0..5)
            .map(|i| event_json(H01, &format!("cli-{i}"), "online"))
            .collect::<Vec<_>>(),
    );
    let receipts = ledger.path("receipts.jsonl");
    let receipts_arg = receipts.to_str().expect("utf-8");
    let out = socai_publish(
        &ledger,
        &url,
        H01,
        &first,
        &["--receipts", receipts_arg, "--vkey", vkey_arg],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["committed"], 5, "{s}");
    assert_eq!(s["verified"], true, "{s}");
    assert_eq!(
        (s["rejected"].as_u64(), s["no_receipt"].as_u64()),
        (Some(0), Some(0))
    );
    let mut named = HashSet::new();
    let kept = std::fs::read_to_string(&receipts).expect("receipts file");
    for line in kept.lines() {
        let r = Receipt::from_json(line.as_bytes()).expect("one receipt per line");
        r.verify(&key).expect("verifies");
        named.extend(r.events.iter().map(|e| e.id.clone()));
    }
    assert_eq!(named.len(), 5, "{kept}");
    assert_eq!(s["receipts"].as_u64(), Some(kept.lines().count() as u64));

    // The ledger is down: no receipt within --give-up-after, exit 1 saying so.
    serve.stop();
    let second = ledger.path("second.jsonl");
    let later: Vec<serde_json::Value> = (0..3)
        .map(|i| event_json(H01, &format!("late-{i}"), "online"))
        .collect();
    write_lines(&second, &later);
    let out = socai_publish(
        &ledger,
        &url,
        H01,
        &second,
        &["--receipt-timeout", "1", "--give-up-after", "3"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["no_receipt"], 3, "{s}");
    assert!(
        stderr(&out).contains("second.jsonl:1: event \"late-0\": no receipt"),
        "{}",
        stderr(&out)
    );
    let (code, message) = failure(&out);
    assert_eq!(code, "no_receipt", "{message}");
    assert!(message.contains("is `socai serve` running"), "{message}");

    // Back up, it commits what waited on EVENTS; publishing those again is answered as
    // duplicates; rejected lines are reported with their line, id and code, and fail the run.
    let mut serve = ledger.serve(&url, Some("ledger"));
    let api = serve.http_url();
    wait_for_size(&api, 8).await;
    let third = ledger.path("third.jsonl");
    let mut lines = later.clone();
    lines.push(event_json(H01, "bad-1", "pigeon"));
    lines.push(event_json(H01, "new-1", "counter"));
    lines.push(event_json(H01, "bad-2", "pigeon"));
    write_lines(&third, &lines);
    let out = socai_publish(&ledger, &url, H01, &third, &["--vkey", vkey_arg]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let s = summary(&out);
    assert_eq!(
        (
            s["committed"].as_u64(),
            s["duplicates"].as_u64(),
            s["rejected"].as_u64(),
            s["no_receipt"].as_u64()
        ),
        (Some(1), Some(3), Some(2), Some(0)),
        "{s}"
    );
    assert_eq!(s["rejections"][0]["line"], 4, "{s}");
    assert_eq!(s["rejections"][0]["code"], "schema_violation", "{s}");
    assert!(
        err.contains("third.jsonl:4: event \"bad-1\" rejected by the ledger: schema_violation"),
        "{err}"
    );
    assert!(err.contains("third.jsonl:6: event \"bad-2\""), "{err}");
    let (code, message) = failure(&out);
    assert_eq!(code, "rejected", "{message}");
    assert!(
        message.contains("line 4 (bad-1: schema_violation)"),
        "{message}"
    );
    assert!(message.contains("REJECTED stream holds them"), "{message}");

    // --no-receipts: PubAcks only, and the summary says nothing is confirmed.
    let fourth = ledger.path("fourth.jsonl");
    write_lines(&fourth, &[event_json(H01, "acked-1", "online")]);
    let out = socai_publish(&ledger, &url, H01, &fourth, &["--no-receipts"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["confirmed"], false);
    serve.stop();
}

/// `--nats` takes a comma-separated list of seed servers, as NATS clients do (issue 15): the
/// ledger and a publisher given a list holding a server that is down reach the one that is up
/// (async-nats tries the seeds in random order), and a list with a bad member is refused naming
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_takes_a_list_of_seed_servers() {
    let ledger = Ledger::new();
    let nats = start_nats(&ledger.path("nats"), true);
    // A port nothing listens on.
    let dead = socai_testkit::free_port().expect("a free port");
    let seeds = format!("nats://127.0.0.1:{dead}, {}", nats.url());
    let _serve = ledger.serve(&seeds, Some("ledger"));
    let (client, _) = connect(&seeds, Some("ledger")).await;
    wait_for_streams(&async_nats::jetstream::new(client)).await;

    let file = ledger.path("seeded.jsonl");
    write_lines(
        &file,
        &(0..3)
            .map(|i| event_json(H01, &format!("seeded-{i}"), "online"))
            .collect::<Vec<_>>(),
    );
    let out = socai_publish(&ledger, &seeds, H01, &file, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["committed"], 3, "{}", stdout(&out));

    let bad = format!("{},nats://127.0.0.1:notaport", nats.url());
    let out = socai_publish(&ledger, &bad, H01, &file, &[]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let (_, message) = failure(&out);
    assert!(
        message.contains("server 2 of 2 (\"nats://127.0.0.1:notaport\")"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_without_a_puback_to_a_refused_subject_end_not_published_at_once() {
    // H01's user may here also receive H02's receipts, but still publish only as H01: its H02
    // events are refused by the server's permissions, most of them sent without awaiting a
    // PubAck. The receipt timeout is far past the hang guard, so the run can end only if the
    // refusals end them.
    let ledger = Ledger::new();
    ledger.configure("[ingest]\ncheckpoint_interval_s = 1\n");
    let (own, other) = (receipts_subject(H01), receipts_subject(H02));
    let nats = start_nats_with(&ledger.path("nats"), true, |users| {
        let allow = format!("\"{own}\"] }}");
        let import = format!("{{ stream: {{ account: LEDGER, subject: \"{own}\" }} }}");
        assert!(users.matches(&allow).count() == 1 && users.matches(&import).count() == 1);
        users
            .replace(&allow, &format!("\"{own}\", \"{other}\"] }}"))
            .replace(
                &import,
                &format!(
                    "{import}\n      {{ stream: {{ account: LEDGER, subject: \"{other}\" }} }}"
                ),
            )
    });
    let url = nats.url();
    let mut serve = ledger.serve(&url, Some("ledger"));
    let (client, _) = connect(&url, Some("ledger")).await;
    let js = async_nats::jetstream::new(client);
    wait_for_streams(&js).await;

    let options = ReceiptOptions {
        receipt_timeout: 4 * PATIENCE,
        max_receipt_timeout: 4 * PATIENCE,
        give_up_after: 8 * PATIENCE,
        verifier: Some(ledger.verifier()),
        ..ReceiptOptions::default()
    };
    let publisher = receipt_publisher(&url, H01, options).await;
    // 60 H02 events: their refusals stay well inside async-nats's burst of 128 server errors.
    let messages: Vec<Outgoing> = (0..120)
        .map(|i| {
            let agency = if i % 2 == 0 { H01 } else { H02 };
            Outgoing::event(&event_of(agency, &format!("mixed-{i}")))
        })
        .collect();
    let republished = Arc::new(AtomicU64::new(0));
    let done = tokio::time::timeout(PATIENCE, run(publisher, messages, republished.clone()))
        .await
        .expect("the refusals end the run, long before any receipt timeout");
    serve.stop();

    assert_eq!(done.bad, Vec::<String>::new());
    assert_eq!(done.outcomes.len(), 120);
    let mut sent_again = 0;
    for o in &done.outcomes {
        match (&o.outcome, o.agency.as_str()) {
            (Outcome::Committed { .. }, H01) => {}
            (Outcome::NotPublished(e), H02) => {
                assert!(
                    e.to_string().contains("Permissions Violation"),
                    "{}: {e}",
                    o.id
                );
                // Awaiting its PubAck from the start (sampled), or sent without one and then
                // again, awaiting one, once the server's refusal was seen.
                assert!(matches!(o.publishes, 1 | 2), "{}: {}", o.id, o.publishes);
                sent_again += u64::from(o.publishes == 2);
            }
            (other, agency) => panic!("{} ({agency}): {other:?}", o.id),
        }
    }
    assert!(
        sent_again >= 50,
        "most H02 events were sent without a PubAck: {sent_again}"
    );
    assert_eq!(republished.load(Relaxed), sent_again);
    assert_eq!(done.summary.committed, 60, "{:?}", done.summary);
    assert_eq!(done.summary.not_published, 60, "{:?}", done.summary);
    assert_eq!(done.summary.no_receipt, 0, "{:?}", done.summary);
    let in_ledger = ledger_events(&ledger);
    assert_eq!(in_ledger.len(), 60);
    assert!(in_ledger.iter().all(|(_, agency, _)| agency == H01));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_whose_nats_server_dies_ends_every_event_instead_of_hanging() {
    // nats-server is killed mid-run and stays down: nothing more can be sent, and what is read
    // from then on is held. Every event must still end (committed before the kill, or no
    // receipt by its give-up time), the ones never sent saying so.
    let ledger = Ledger::new();
    ledger.configure("[ingest]\ncheckpoint_interval_s = 1\n");
    let mut nats = start_nats(&ledger.path("nats"), false);
    let url = nats.url();
    let serve = ledger.serve(&url, None);
    let (client, _) = connect(&url, None).await;
    let js = async_nats::jetstream::new(client);
    wait_for_streams(&js).await;

    let options = ReceiptOptions {
        receipt_timeout: Duration::from_secs(2),
        max_receipt_timeout: Duration::from_secs(2),
        give_up_after: Duration::from_secs(5),
        ..ReceiptOptions::default()
    };
    let publisher = publisher(&url, None).await.with_receipts(options);
    let events = socai_e2e::workload(25_000, 23);
    let running = tokio::spawn(run(
        publisher,
        events.iter().map(Outgoing::event).collect(),
        Arc::new(AtomicU64::new(0)),
    ));
    wait_until(PATIENCE, "some events committed", || async {
        committed_entries(&js).await >= 2000
    })
    .await;
    nats.kill();
    let done = tokio::time::timeout(PATIENCE, running)
        .await
        .expect("every event ends while nats-server stays down")
        .expect("the publisher task");
    drop(serve);

    assert_eq!(done.outcomes.len(), events.len());
    let s = &done.summary;
    assert_eq!(
        s.committed + s.duplicates + s.no_receipt,
        events.len() as u64,
        "{s:?}"
    );
    assert!(s.committed > 0, "{s:?}");
    assert!(s.no_receipt > 0, "{s:?}");
    let mut never_sent = 0;
    for o in &done.outcomes {
        if let Outcome::NoReceipt { last_error } = &o.outcome
            && o.publishes == 0
        {
            let why = last_error.as_deref().unwrap_or_default();
            assert!(
                why.contains("connection to nats-server"),
                "{}: {why:?}",
                o.id
            );
            never_sent += 1;
        }
    }
    assert!(
        never_sent > 0,
        "events read after the kill are held, never sent: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_one_can_publish_ends_not_published_and_the_run_goes_on() {
    // Subjects async-nats or nats-server refuse, or whose receipts subject would be a wildcard:
    // a space in the agency once ended the whole run (its receipts subscription was refused),
    // and a space in the type, sent awaiting its PubAck, was retried as a passing fault.
    let ledger = Ledger::new();
    ledger.configure("[ingest]\ncheckpoint_interval_s = 1\n");
    let nats = start_nats(&ledger.path("nats"), false);
    let url = nats.url();
    let mut serve = ledger.serve(&url, None);
    let (client, _) = connect(&url, None).await;
    wait_for_streams(&async_nats::jetstream::new(client)).await;

    let good = |i: usize| Outgoing::event(&event_of(H01, &format!("fine-{i}")));
    let unpublishable = |subject: &str, id: &str| Outgoing {
        subject: subject.to_owned(),
        id: id.into(),
        payload: serde_json::to_vec(&event_json(H01, id, "online"))
            .expect("json")
            .into(),
    };
    let bad = [
        (
            "dvc.events.000-00-12-H 01.dossier.submitted",
            "space-agency",
        ),
        ("dvc.events.*.dossier.submitted", "wildcard-agency"),
        ("dvc.events.000-00-12-H01.dossier submitted", "space-type"),
        ("dvc.events.000-00-12-H01.dossier..submitted", "empty-token"),
    ];
    // Between good ones; every publish awaits its PubAck (max_in_flight 1), where one bad
    // subject once held up the whole run.
    let mut messages = Vec::new();
    for (i, (subject, id)) in bad.iter().enumerate() {
        messages.push(unpublishable(subject, id));
        messages.push(good(i));
    }
    let options = ReceiptOptions {
        receipt_timeout: 4 * PATIENCE,
        max_receipt_timeout: 4 * PATIENCE,
        give_up_after: 8 * PATIENCE,
        verifier: Some(ledger.verifier()),
        max_in_flight: 1,
        ..ReceiptOptions::default()
    };
    let done = tokio::time::timeout(
        PATIENCE,
        run(
            receipt_publisher(&url, H01, options).await,
            messages,
            Arc::new(AtomicU64::new(0)),
        ),
    )
    .await
    .expect("the bad subjects end at once, long before any receipt timeout");
    assert_eq!(done.bad, Vec::<String>::new());
    assert_eq!(done.outcomes.len(), 8, "{:?}", done.outcomes);
    for o in &done.outcomes {
        match &o.outcome {
            Outcome::Committed { .. } => assert!(o.id.starts_with("fine-"), "{}", o.id),
            Outcome::NotPublished(e) => {
                let why = e.to_string();
                let expected = match o.id.as_str() {
                    "space-agency" | "space-type" => "' '",
                    "wildcard-agency" => "wildcard token \"*\"",
                    "empty-token" => "empty token",
                    other => panic!("{other} not published: {why}"),
                };
                assert!(why.contains(expected), "{}: {why}", o.id);
                assert_eq!(o.publishes, 0, "{}", o.id);
            }
            other => panic!("{}: {other:?}", o.id),
        }
    }
    assert_eq!(done.summary.committed, 4, "{:?}", done.summary);
    assert_eq!(done.summary.not_published, 4, "{:?}", done.summary);

    // The publisher without receipts (`socai publish --no-receipts`) refuses it at once too,
    // rather than retrying it for two minutes as if the server were away.
    let plain = publisher(&url, None).await;
    let mut results = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        plain.publish_all(
            [
                unpublishable(bad[2].0, "space-type-plain"),
                unpublishable(bad[3].0, "empty-token-plain"),
                good(9),
            ],
            1,
            |r| results.push(r),
        ),
    )
    .await
    .expect("an invalid subject is refused at once");
    serve.stop();
    match &results[..] {
        [
            Err(space @ PublishError::Refused { .. }),
            Err(empty @ PublishError::Refused { .. }),
            Ok(_),
        ] => {
            assert!(space.to_string().contains("' '"), "{space}");
            assert!(empty.to_string().contains("empty token"), "{empty}");
        }
        other => panic!("{other:?}"),
    }
    // The good ones only (the last one may not be committed yet).
    let ids: HashSet<String> = ledger_events(&ledger)
        .into_iter()
        .map(|(id, _, _)| id)
        .filter(|id| id != "fine-9")
        .collect();
    let fine: HashSet<String> = (0..4).map(|i| format!("fine-{i}")).collect();
    assert_eq!(ids, fine);
}
