//! NATS accounts as shipped (deploy/nats/users.conf), on a real nats-server: nobody outside the
//! ledger's account can create, change or delete a consumer or a stream (nats-server#8274: a
//! push consumer's deliver subject is not checked, so a consumer would let a reader deliver into
//! dvc.ledger.committed, dvc.metrics.* or dvc.events.*), and every role still does its work:
//! agencies publish their own events (PubAcks) and read their own rejections, projection
//! workers fold COMMITTED and write METRICS, dashboards read METRICS and the live values.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use socai_client::js::{DEFAULT_API_PREFIX, IMPORTED_API_PREFIX};
use socai_client::publisher::{Outgoing, PublishError, RetryPolicy};
use socai_e2e::Ledger;
use socai_e2e::nats::*;
use socai_model::Event;
use socai_projector::{self as projector, Published};
use socai_wire::kv::{METRICS_BUCKET, METRICS_STREAM};
use socai_wire::stream::{CHECKPOINTS, COMMITTED, EVENTS, REJECTED};

/// A hang guard for waits, far above what any run here takes; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(300);

const H01: &str = "000.00.12.H01";
const H02: &str = "000.00.12.H02";

fn event_of(agency: &str, id: &str) -> Event {
    serde_json::from_value(serde_json::json!({
        "id": id, "type": "dossier.submitted", "agency": agency, "procedure": "1.004227",
        "dossier": format!("{agency}-20260609-{id}"), "occurred_at": "2026-06-09T08:15:00+07:00",
        "schema": 1, "data": {"channel": "online"}
    }))
    .expect("event")
}

/// What the ledger's account sees of its JetStream: every stream with its message and consumer
/// counts.
async fn jetstream_state(js: &jetstream::Context) -> BTreeMap<String, (u64, usize)> {
    let mut names: Vec<String> = js
        .stream_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|n| n.expect("stream name"))
        .collect();
    names.sort();
    let mut out = BTreeMap::new();
    for name in names {
        let mut stream = js.get_stream(&name).await.expect("stream");
        let info = stream.info().await.expect("stream info");
        // The ledger signs checkpoints on its own schedule.
        let messages = if name == CHECKPOINTS {
            0
        } else {
            info.state.messages
        };
        out.insert(name, (messages, info.state.consumer_count));
    }
    out
}

/// A JetStream API request sent raw: the answer's JSON, or why there was none.
async fn request(client: &async_nats::Client, subject: String, body: serde_json::Value) -> String {
    let sent = tokio::time::timeout(
        Duration::from_secs(4),
        client.request(subject, serde_json::to_vec(&body).expect("json").into()),
    )
    .await;
    match sent {
        Err(_) => "refused: no answer".into(),
        Ok(Err(e)) => format!("refused: {e}"),
        Ok(Ok(m)) => String::from_utf8_lossy(&m.payload).into_owned(),
    }
}

/// Whether an API answer says the request was carried out.
fn succeeded(answer: &str) -> bool {
    match serde_json::from_str::<serde_json::Value>(answer) {
        Ok(v) => v.get("error").is_none(),
        Err(_) => false,
    }
}

/// Every way of asking for a consumer that delivers into a subject of the ledger, and of
/// creating, changing or deleting a stream, under both API prefixes.
fn attacks() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let streams = [
        (METRICS_STREAM, "$KV.METRICS.>"),
        (COMMITTED, "dvc.ledger.committed"),
        (EVENTS, "dvc.events.>"),
    ];
    let targets = [
        "dvc.ledger.committed",
        "dvc.metrics.on_time_rate.national",
        "dvc.events.000-00-12-H01.dossier.submitted",
    ];
    for prefix in [DEFAULT_API_PREFIX, IMPORTED_API_PREFIX] {
        for (stream, filter) in streams {
            for (i, deliver) in targets.iter().enumerate() {
                let name = format!("attack{i}");
                let config = |durable: bool| {
                    let mut c = serde_json::json!({
                        "deliver_subject": deliver,
                        "deliver_policy": "all",
                        "ack_policy": "none",
                        "name": name,
                    });
                    if durable {
                        c["durable_name"] = serde_json::json!(name);
                    }
                    serde_json::json!({"stream_name": stream, "config": c})
                };
                // Legacy ephemeral, named, named with a filter, legacy durable.
                out.push((
                    format!("{prefix}.CONSUMER.CREATE.{stream}"),
                    serde_json::json!({"stream_name": stream, "config": {
                        "deliver_subject": deliver, "deliver_policy": "all", "ack_policy": "none"
                    }}),
                ));
                out.push((
                    format!("{prefix}.CONSUMER.CREATE.{stream}.{name}"),
                    config(false),
                ));
                out.push((
                    format!("{prefix}.CONSUMER.CREATE.{stream}.{name}.{filter}"),
                    config(false),
                ));
                out.push((
                    format!("{prefix}.CONSUMER.DURABLE.CREATE.{stream}.{name}"),
                    config(true),
                ));
            }
        }
        for stream in [METRICS_STREAM, COMMITTED, EVENTS, REJECTED, CHECKPOINTS] {
            out.push((
                format!("{prefix}.STREAM.UPDATE.{stream}"),
                serde_json::json!({"name": stream, "subjects": ["attack.>"], "max_msgs": 1}),
            ));
            out.push((
                format!("{prefix}.STREAM.PURGE.{stream}"),
                serde_json::json!({}),
            ));
            out.push((
                format!("{prefix}.STREAM.MSG.DELETE.{stream}"),
                serde_json::json!({"seq": 1}),
            ));
            out.push((
                format!("{prefix}.STREAM.DELETE.{stream}"),
                serde_json::json!({}),
            ));
        }
        out.push((
            format!("{prefix}.CONSUMER.DELETE.{EVENTS}.ledger"),
            serde_json::json!({}),
        ));
        out.push((
            format!("{prefix}.STREAM.CREATE.ATTACK"),
            serde_json::json!({"name": "ATTACK", "subjects": ["dvc.attack.>"]}),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reader_projector_or_agency_can_create_a_consumer_or_touch_a_stream() {
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let ledger = Ledger::new();
    let nats = start_nats(&ledger.path("nats"), true);
    let url = nats.url();
    let mut serve = ledger.serve(&url, Some("ledger"));
    let (ledger_client, _) = connect(&url, Some("ledger")).await;
    let js = jetstream::new(ledger_client.clone());
    wait_for_streams(&js).await;
    // Something in every stream the attacks aim at.
    let gateway = publisher(&url, Some("gateway")).await;
    for i in 0..3 {
        gateway
            .publish(&event_of(H01, &format!("before-{i}")))
            .await
            .expect("the gateway publishes");
    }
    wait_committed(&js, 3, PATIENCE).await;
    let (projector_client, _) = connect(&url, Some("projector")).await;
    let pjs = socai_client::jetstream(projector_client.clone()).await;
    pjs.get_key_value(METRICS_BUCKET)
        .await
        .expect("the projector opens METRICS")
        .put("attack.probe", "{}".into())
        .await
        .expect("the projector writes METRICS");
    let before = jetstream_state(&js).await;
    phase("ledger serving, streams filled");
    assert_eq!(before[EVENTS].1, 1, "the ledger's own consumer: {before:?}");

    // Anything delivered into the ledger's live subjects would show here.
    let mut ledger_metrics = ledger_client
        .subscribe("dvc.metrics.>")
        .await
        .expect("ledger subscribes");
    let (dashboard, _) = connect(&url, Some("dashboard")).await;
    let mut dashboard_metrics = dashboard
        .subscribe("dvc.metrics.>")
        .await
        .expect("dashboard subscribes");
    ledger_client.flush().await.expect("flush");
    dashboard.flush().await.expect("flush");

    let (h01, _) = connect(&url, Some(H01)).await;
    let attackers = [
        ("dashboard", dashboard.clone()),
        ("projector", projector_client.clone()),
        (H01, h01.clone()),
    ];
    // Raw API requests, every form, all at once.
    let mut attempts = futures::stream::FuturesUnordered::new();
    for (user, client) in &attackers {
        for (subject, body) in attacks() {
            let client = client.clone();
            attempts.push(async move {
                let answer = request(&client, subject.clone(), body).await;
                (*user, subject, answer)
            });
        }
    }
    let mut tried = 0;
    let mut carried_out = Vec::new();
    while let Some((user, subject, answer)) = attempts.next().await {
        tried += 1;
        if succeeded(&answer) {
            carried_out.push(format!("{user}: {subject}: {answer}"));
        }
    }
    assert!(tried > 300, "{tried} attempts");
    phase(&format!("{tried} raw API requests refused"));
    assert!(
        carried_out.is_empty(),
        "requests that must be refused were carried out:\n{}",
        carried_out.join("\n")
    );

    // Through the client library, with the context each role gets, and with the other prefix,
    // all at once (a refusal is often a timeout).
    let patience = Duration::from_secs(4);
    let mut attempts = futures::stream::FuturesUnordered::new();
    for (user, client) in &attackers {
        for prefix in [DEFAULT_API_PREFIX, IMPORTED_API_PREFIX] {
            let ctx = socai_client::js::with_prefix(client.clone(), prefix);
            for stream_name in [METRICS_STREAM, COMMITTED, EVENTS] {
                let ctx = ctx.clone();
                attempts.push(Box::pin(async move {
                    // Stream info may be readable (METRICS and COMMITTED, for the roles that
                    // read them): creating a consumer through it is not.
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(patience, ctx.get_stream(stream_name)).await
                    else {
                        return None;
                    };
                    let created = tokio::time::timeout(
                        patience,
                        stream.create_consumer(consumer::push::Config {
                            deliver_subject: "dvc.ledger.committed".into(),
                            ..Default::default()
                        }),
                    )
                    .await;
                    matches!(created, Ok(Ok(_))).then(|| {
                        format!("{user} ({prefix}) created a push consumer on {stream_name}")
                    })
                })
                    as std::pin::Pin<
                        Box<dyn std::future::Future<Output = Option<String>> + Send>,
                    >);
            }
            let delete = ctx.clone();
            attempts.push(Box::pin(async move {
                let deleted = tokio::time::timeout(patience, delete.delete_stream(EVENTS)).await;
                matches!(deleted, Ok(Ok(_))).then(|| format!("{user} ({prefix}) deleted EVENTS"))
            }));
            attempts.push(Box::pin(async move {
                let created = tokio::time::timeout(
                    patience,
                    ctx.create_stream(jetstream::stream::Config {
                        name: "ATTACK".into(),
                        subjects: vec!["dvc.attack.>".into()],
                        ..Default::default()
                    }),
                )
                .await;
                matches!(created, Ok(Ok(_))).then(|| format!("{user} ({prefix}) created a stream"))
            }));
        }
    }
    let mut carried_out = Vec::new();
    while let Some(done) = attempts.next().await {
        carried_out.extend(done);
    }
    assert!(carried_out.is_empty(), "{carried_out:?}");
    phase("library attempts refused");
    // A KV watch is a consumer: a reader cannot start one (it reads with get and the live
    // subjects instead).
    let djs = socai_client::jetstream(dashboard.clone()).await;
    let kv = djs
        .get_key_value(METRICS_BUCKET)
        .await
        .expect("the dashboard opens METRICS");
    let watch = tokio::time::timeout(patience, kv.watch_all()).await;
    assert!(
        !matches!(watch, Ok(Ok(_))),
        "the dashboard started a KV watch"
    );

    // A projector may write values, but never purge the history auditors read: a put with
    // `Nats-Rollup: all` is refused by the bucket (rollups are off) and stores nothing.
    let mut rollup = async_nats::HeaderMap::new();
    rollup.insert("Nats-Rollup", "all");
    let purge = pjs
        .send_publish(
            "$KV.METRICS.attack.probe",
            jetstream::message::PublishMessage::build()
                .headers(rollup)
                .payload("{}".into()),
        )
        .await;
    let purged = match purge {
        Ok(ack) => tokio::time::timeout(patience, ack.into_future())
            .await
            .is_ok_and(|r| r.is_ok()),
        Err(_) => false,
    };
    assert!(!purged, "a projector rolled up (purged) METRICS");

    // Nothing changed on the server, and nothing was delivered anywhere.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = jetstream_state(&js).await;
    assert_eq!(
        before, after,
        "streams, their messages and consumers are as before"
    );
    for (who, sub) in [
        ("ledger", &mut ledger_metrics),
        ("dashboard", &mut dashboard_metrics),
    ] {
        let got = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(
            got.is_err(),
            "{who} received {:?} on dvc.metrics.>",
            got.ok().flatten().map(|m| m.subject)
        );
    }
    serve.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_still_does_its_work_across_accounts() {
    let ledger = Ledger::new();
    ledger.configure("[ingest]\ncheckpoint_interval_s = 1\n");
    let nats = start_nats(&ledger.path("nats"), true);
    let url = nats.url();

    // A projection worker started before the ledger waits for it, saying why.
    let mut worker = ledger.spawn(
        &ledger.path("worker"),
        &["project", "--name", "p0", "--shard", "0/1"],
        &url,
        Some("projector"),
        "projector resuming",
    );
    wait_until(PATIENCE, "the worker to say it waits", || async {
        std::fs::read_to_string(&worker.log)
            .unwrap_or_default()
            .contains("does not exist yet: `socai serve` creates it")
    })
    .await;
    assert!(worker.running(), "the worker waits rather than fails");

    // The roles' JetStream contexts are found by themselves.
    for (user, prefix) in [
        ("ledger", DEFAULT_API_PREFIX),
        ("projector", IMPORTED_API_PREFIX),
        ("dashboard", IMPORTED_API_PREFIX),
    ] {
        let (client, _) = connect(&url, Some(user)).await;
        assert_eq!(
            socai_client::js::api_prefix(&client).await,
            prefix,
            "{user}"
        );
    }

    let mut serve = ledger.serve(&url, Some("ledger"));
    let (client, _) = connect(&url, Some("ledger")).await;
    let js = jetstream::new(client);
    wait_for_streams(&js).await;

    // A dashboard follows the live values and checkpoints from the start.
    let (dashboard, dashboard_errors) = connect(&url, Some("dashboard")).await;
    let mut live = dashboard
        .subscribe("dvc.metrics.>")
        .await
        .expect("subscribe");
    let mut checkpoints = dashboard
        .subscribe(socai_wire::subject::CHECKPOINT_SUBJECT)
        .await
        .expect("subscribe");
    dashboard.flush().await.expect("flush");

    // An agency publishes its own events and gets its PubAcks...
    let quick = RetryPolicy {
        give_up_after: Duration::from_secs(10),
        ..Default::default()
    };
    let agency = publisher(&url, Some(H01)).await.with_retry(quick);
    let (h01_client, _) = (agency.client(), ());
    let mut own_rejections = h01_client
        .subscribe("dvc.rejected.000-00-12-H01.>")
        .await
        .expect("subscribe");
    h01_client.flush().await.expect("flush");
    let mut seqs = Vec::new();
    for i in 0..3 {
        let published = agency
            .publish(&event_of(H01, &format!("h01-{i}")))
            .await
            .expect("an agency publishes its own events");
        assert!(!published.duplicate);
        seqs.push(published.stream_seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // ... and receives its own rejections, live.
    agency
        .publish_outgoing(Outgoing {
            subject: socai_wire::subject::event_subject(H01, "dossier.submitted"),
            id: "h01-bad".into(),
            payload: r#"{"id":"h01-bad","type":"dossier.submitted"#.into(),
        })
        .await
        .expect("its own subject takes anything; the ledger judges");
    let rejection = tokio::time::timeout(PATIENCE, own_rejections.next())
        .await
        .expect("the agency receives its rejection")
        .expect("subscription open");
    assert!(
        rejection
            .subject
            .as_str()
            .starts_with("dvc.rejected.000-00-12-H01."),
        "{}",
        rejection.subject
    );
    assert!(
        rejection
            .headers
            .as_ref()
            .and_then(|h| h.get(socai_wire::header::CODE))
            .is_some(),
        "a rejection says why"
    );

    // It cannot publish as another agency: refused by the server, nothing stored.
    wait_committed(&js, 3, PATIENCE).await;
    let events_before = stream_messages(&js, EVENTS).await;
    match agency.publish(&event_of(H02, "h01-as-h02")).await {
        Err(PublishError::Refused { reason, .. }) => {
            assert!(reason.contains("Permissions Violation"), "{reason}")
        }
        other => panic!("publishing as another agency must be refused, got {other:?}"),
    }
    // Nor can another agency read its rejections.
    let (h02, h02_errors) = connect(&url, Some(H02)).await;
    let mut stolen = h02
        .subscribe("dvc.rejected.000-00-12-H01.>")
        .await
        .expect("subscribe call");
    let mut h02_own = h02
        .subscribe("dvc.rejected.000-00-12-H02.>")
        .await
        .expect("subscribe");
    h02.flush().await.expect("flush");
    wait_until(
        Duration::from_secs(10),
        "the server to refuse H02's subscription",
        || async {
            h02_errors.recent().iter().any(|e| {
                e.contains(
                    "Permissions Violation for Subscription to \"dvc.rejected.000-00-12-H01.>\"",
                )
            })
        },
    )
    .await;
    agency
        .publish_outgoing(Outgoing {
            subject: socai_wire::subject::event_subject(H01, "dossier.submitted"),
            id: "h01-bad-2".into(),
            payload: "not json".into(),
        })
        .await
        .expect("published");
    tokio::time::timeout(PATIENCE, own_rejections.next())
        .await
        .expect("H01 receives its second rejection")
        .expect("open");
    for (what, sub) in [("H01's", &mut stolen), ("its own", &mut h02_own)] {
        let got = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(
            !matches!(got, Ok(Some(_))),
            "H02 received {what} rejections"
        );
    }
    assert_eq!(stream_messages(&js, EVENTS).await, events_before + 1);

    // The gateway publishes for every agency.
    let gateway = publisher(&url, Some("gateway")).await;
    let workload: Vec<Outgoing> = socai_e2e::workload(400, 3)
        .iter()
        .map(Outgoing::event)
        .collect();
    let n = workload.len() as u64 + 3;
    assert_eq!(gateway.publish_all(workload, 128, |_| {}).await, 0);
    wait_committed(&js, n, PATIENCE).await;

    // The worker (started first) folded COMMITTED and wrote METRICS: the dashboard reads it.
    let djs = socai_client::jetstream(dashboard.clone()).await;
    wait_until(PATIENCE, "the worker's mark at the final size", || {
        let djs = djs.clone();
        async move {
            projector::read_published(&djs, false, "_workers.>")
                .await
                .expect("the dashboard reads marks")
                .iter()
                .any(|(_, p)| matches!(p, Published::Mark(m) if m.tree_size == n))
        }
    })
    .await;
    let values = projector::read_published(&djs, false, ">")
        .await
        .expect("the dashboard reads METRICS");
    let (key, value) = values
        .iter()
        .find_map(|(k, p)| match p {
            Published::Value(v) if !v.is_no_data() => Some((k.clone(), v.clone())),
            _ => None,
        })
        .expect("a metric value");
    let kv = djs
        .get_key_value(METRICS_BUCKET)
        .await
        .expect("the dashboard opens METRICS");
    let got = kv.get(&key).await.expect("kv get").expect("the key exists");
    let read: socai_metrics::MetricValue = serde_json::from_slice(&got).expect("a value");
    assert!(read.same_figures(&value), "{key}: {read:?} vs {value:?}");
    // Every revision, as the auditor reads them, includes the latest.
    let history = projector::read_published(&djs, true, ">")
        .await
        .expect("history");
    assert!(
        history.len() >= values.len(),
        "{} < {}",
        history.len(),
        values.len()
    );
    // Live values and checkpoints reached the dashboard.
    let update = tokio::time::timeout(Duration::from_secs(30), live.next())
        .await
        .expect("a live value")
        .expect("open");
    let update: projector::LiveUpdate = serde_json::from_slice(&update.payload).expect("update");
    assert!(!update.values.is_empty());
    tokio::time::timeout(Duration::from_secs(30), checkpoints.next())
        .await
        .expect("a checkpoint")
        .expect("open");
    // The dashboard writes nothing (its KV put is refused by name).
    let put = tokio::time::timeout(Duration::from_secs(10), kv.put(&key, "{}".into())).await;
    assert!(!matches!(put, Ok(Ok(_))), "the dashboard wrote METRICS");
    wait_until(Duration::from_secs(10), "the refused put", || async {
        dashboard_errors.recent().iter().any(|e| {
            e.contains("Permissions Violation for Publish to \"$JS.ledger.API.$KV.METRICS.")
        })
    })
    .await;

    worker.stop();
    serve.stop();
}
