//! Projection workers end to end: a real nats-server with the shipped users, the real `socai
//! serve` and two `socai project` shards (killed -9, stopped, restarted, one losing its state
//! file), a dashboard reading the METRICS bucket and the live subjects, and the auditor's
//! recomputation from the ledger.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use socai_client::publisher::Outgoing;
use socai_e2e::Ledger;
use socai_e2e::nats::*;
use socai_metrics::MetricValue;
use socai_projector::{self as projector, Published};

/// A hang guard for waits, far above what any run here takes; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(600);

fn project(ledger: &Ledger, url: &str, shard: usize) -> Serve {
    let dir = ledger.path(&format!("worker-{shard}"));
    let name = format!("p{shard}");
    let shard = format!("{shard}/2");
    ledger.spawn(
        &dir,
        &["project", "--name", &name, "--shard", &shard],
        url,
        Some("projector"),
        "projector resuming",
    )
}

/// The latest published value of every key (no-data values dropped) and the workers' marks.
async fn published(url: &str) -> (BTreeMap<String, MetricValue>, BTreeMap<String, u64>) {
    let (client, _) = connect(url, Some("dashboard")).await;
    let js = socai_client::jetstream(client).await;
    let mut values = BTreeMap::new();
    let mut marks = BTreeMap::new();
    for (key, p) in projector::read_published(&js, false, ">")
        .await
        .expect("the dashboard reads the METRICS bucket")
    {
        match p {
            Published::Value(v) if !v.is_no_data() => {
                values.insert(key, v);
            }
            Published::Value(_) => {}
            Published::Mark(m) => {
                marks.insert(m.worker, m.tree_size);
            }
        }
    }
    (values, marks)
}

async fn committed(js: &async_nats::jetstream::Context) -> u64 {
    committed_entries(js).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_killed_and_restarted_publish_exactly_what_the_ledger_recomputes() {
    let n = 20_000usize;
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let ledger = Ledger::new();
    let nats = start_nats(&ledger.path("nats"), true);
    let url = nats.url();
    let mut serve = ledger.serve(&url, Some("ledger"));
    let (client, _) = connect(&url, Some("ledger")).await;
    let js = async_nats::jetstream::new(client);
    wait_for_streams(&js).await;
    let mut workers = [project(&ledger, &url, 0), project(&ledger, &url, 1)];
    phase("nats-server, serve and two workers started");

    // A dashboard follows the live values from the start.
    let (dashboard, _) = connect(&url, Some("dashboard")).await;
    let mut live = dashboard
        .subscribe("dvc.metrics.>")
        .await
        .expect("the dashboard subscribes to dvc.metrics.>");
    dashboard.flush().await.expect("flush");
    let (stop_live, mut live_stopped) = tokio::sync::oneshot::channel::<()>();
    let live_values = tokio::spawn(async move {
        let mut last: BTreeMap<String, MetricValue> = BTreeMap::new();
        loop {
            // Messages first: what arrived before the stop is all taken in.
            tokio::select! {
                biased;
                Some(msg) = live.next() => {
                    let update: projector::LiveUpdate =
                        serde_json::from_slice(&msg.payload).expect("a live update");
                    assert!(!update.values.is_empty());
                    for v in update.values {
                        assert_eq!(msg.subject.as_str(), projector::metrics_subject(&v));
                        assert_eq!(v.tree_size, update.tree_size);
                        last.insert(v.key(), v);
                    }
                }
                _ = &mut live_stopped => break,
            }
        }
        last
    });

    // The workload, paced so the workers are killed and restarted while it flows.
    let events: Vec<Outgoing> = socai_e2e::workload(n, 11)
        .iter()
        .map(Outgoing::event)
        .collect();
    let gateway = publisher(&url, Some("gateway")).await;
    let publishing = tokio::spawn(async move {
        for part in events.chunks(500) {
            let failed = gateway.publish_all(part.to_vec(), 256, |_| {}).await;
            assert_eq!(failed, 0, "publish failures");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    let at = |fraction: u64| fraction * n as u64 / 8;
    for step in 1..=3u64 {
        let target = at(2 * step);
        wait_until(PATIENCE, "entries committed", || {
            let js = js.clone();
            async move { committed(&js).await >= target }
        })
        .await;
        phase(&format!("{target} entries committed"));
        match step {
            // kill -9 mid-stream: the restart resumes after its last state file.
            1 | 3 => {
                workers[0].kill();
                tokio::time::sleep(Duration::from_millis(300)).await;
                workers[0] = project(&ledger, &url, 0);
            }
            // A clean stop, then the state file is lost: the restart folds COMMITTED from its
            // first entry and publishes every value again.
            _ => {
                workers[1].stop();
                let state = ledger.path("worker-1").join("metrics").join("p1.state");
                std::fs::remove_file(&state).expect("p1 saved its state at stop");
                workers[1] = project(&ledger, &url, 1);
            }
        }
    }
    phase("workers restarted three times");
    publishing.await.expect("publisher");
    wait_committed(&js, n as u64, PATIENCE).await;
    wait_until(PATIENCE, "both workers published at the final size", || {
        let url = url.clone();
        async move {
            let (_, marks) = published(&url).await;
            marks.len() == 2 && marks.values().all(|&size| size == n as u64)
        }
    })
    .await;
    phase("both workers published at the final size");
    // Derived values never cost an fsync each (async persistence), whatever the server's
    // sync_interval.
    let mut bucket = js
        .get_stream(socai_wire::kv::METRICS_STREAM)
        .await
        .expect("the METRICS bucket's stream");
    let config = bucket.info().await.expect("stream info").config.clone();
    assert_eq!(
        config.persist_mode,
        Some(async_nats::jetstream::stream::PersistenceMode::Async)
    );
    assert_eq!(config.max_messages_per_subject, projector::METRICS_HISTORY);
    for w in &mut workers {
        w.stop();
    }
    serve.stop();
    phase("stopped");

    // An independent recomputation: one pass over the ledger, by the CLI.
    let out = ledger.ok(&["--json", "metrics", "--window", "all"]);
    let recomputed: Vec<MetricValue> = serde_json::from_str(out.trim()).expect("metrics json");
    let recomputed: BTreeMap<String, MetricValue> =
        recomputed.into_iter().map(|v| (v.key(), v)).collect();
    let (kv, _) = published(&url).await;
    phase("recomputed and read back");
    assert!(recomputed.len() > 1000, "{} values", recomputed.len());
    let only_kv: Vec<&String> = kv.keys().filter(|k| !recomputed.contains_key(*k)).collect();
    let only_ledger: Vec<&String> = recomputed.keys().filter(|k| !kv.contains_key(*k)).collect();
    assert!(
        only_kv.is_empty() && only_ledger.is_empty(),
        "published but not recomputed: {:?}; recomputed but not published: {:?}",
        &only_kv[..only_kv.len().min(5)],
        &only_ledger[..only_ledger.len().min(5)]
    );
    for (key, v) in &kv {
        assert!(
            v.same_figures(&recomputed[key]),
            "{key}: published {v:?}, recomputed {:?}",
            recomputed[key]
        );
    }
    // Every metric of DESIGN.md is there, for every kind of scope.
    for metric in socai_metrics::METRICS {
        for kind in socai_metrics::SCOPE_KINDS {
            let applies = metric != socai_metrics::Metric::Score766
                || matches!(
                    kind,
                    socai_metrics::ScopeKind::Agency | socai_metrics::ScopeKind::Province
                );
            let found = kv
                .values()
                .any(|v| v.metric == metric && v.scope.kind == kind);
            assert_eq!(found, applies, "{} for {kind:?} scopes", metric.name());
        }
    }

    // Each change was also on dvc.metrics.<metric>.<scope>: the last live value of a key is
    // the one in the bucket.
    dashboard.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop_live.send(());
    let live = live_values.await.expect("live subscriber");
    for (key, v) in &kv {
        let seen = live
            .get(key)
            .unwrap_or_else(|| panic!("{key} never came on dvc.metrics.>"));
        assert!(seen.same_figures(v), "{key}: live {seen:?}, bucket {v:?}");
    }
    for (key, v) in &live {
        assert!(
            kv.contains_key(key) || v.is_no_data(),
            "{key} came live but is not in the bucket"
        );
    }

    // The auditor: every published value matches the ledger at the final size.
    let audit = |extra: &[&str]| {
        let mut cmd = ledger.cmd(&["--json", "--nats", &url]);
        cmd.args(["audit", "metrics"])
            .args(extra)
            .env("SOCAI_NATS_USER", "dashboard")
            .env("SOCAI_NATS_PASSWORD", password("dashboard"));
        cmd.output().expect("socai audit metrics runs")
    };
    let out = audit(&[]);
    phase("audited");
    let report: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap_or(b"null"))
            .unwrap_or_else(|e| {
                panic!("audit json: {e}: {}", String::from_utf8_lossy(&out.stdout))
            });
    assert!(out.status.success(), "audit failed: {report}");
    assert_eq!(report["at"], n as u64);
    assert_eq!(report["checked"], report["matched"]);
    // Checked: every value in the bucket, "no data" ones included.
    assert!(
        report["checked"].as_u64() >= Some(kv.len() as u64),
        "{report}"
    );
    assert_eq!(
        report["complete_for_workers"],
        serde_json::json!(["p0", "p1"])
    );

    // A value altered in the bucket (here by the projector's own user) is caught, by key.
    let (victim_key, victim) = kv
        .iter()
        .find(|(k, _)| k.starts_with("on_time_rate.national.month."))
        .expect("a national on_time_rate month");
    let mut forged = victim.clone();
    forged.numerator += 1;
    let (writer, _) = connect(&url, Some("projector")).await;
    async_nats::jetstream::new(writer)
        .publish(
            socai_wire::kv::kv_subject(victim_key),
            serde_json::to_vec(&forged).expect("json").into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    let out = audit(&[]);
    assert_eq!(out.status.code(), Some(3), "a forged value fails the audit");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(victim_key.as_str()) && text.contains("differs"),
        "the audit names the forged key: {text}"
    );
    // At a size nobody published at, nothing can be checked: the audit says so and fails.
    let out = audit(&["--at", "7"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("\"complete_for_workers\":[]"), "{text}");
    assert!(text.contains("\"checked\":0"), "{text}");
}
