//! `socai demo`: by default the system left running on a persistent dir with a live trickle of
//! events until Ctrl-C (`live`). `socai demo --once`: the whole story on one machine, in a fresh
//! data dir: a nats-server runs with the shipped config (per-agency users, nats-server's default
//! sync); the ledger writer consumes what an integration gateway publishes (a realistic workload,
//! a retry, a few bad events that land on REJECTED); then the ledger is verified, proven, exported
//! and verified offline, and personal data is redacted with everything still verifying.

/// `println!` that never panics: the live demo keeps stopping its children cleanly after its
/// terminal went away (SIGHUP: writes then fail with EIO, where `println!` would panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (see `say!`).
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod clock;
mod live;
mod procs;

use super::audit;
use crate::cli::{Global, ProofKind};
use anyhow::Context;
use socai_store::DataDir;

pub(crate) fn step(title: &str) {
    println!("\n== {title}");
}

/// The workload when `--events` is not given.
const DEFAULT_EVENTS: u64 = 200_000;

/// `socai demo [--once]`.
pub fn run(
    g: &Global,
    once: bool,
    events: Option<u64>,
    dir: Option<std::path::PathBuf>,
    rate: f64,
    http: Option<String>,
) -> anyhow::Result<()> {
    if once {
        return run_once(g, events.unwrap_or(DEFAULT_EVENTS));
    }
    live::run(
        g,
        &live::Options {
            events,
            dir,
            rate,
            http,
        },
    )
}

/// `socai demo --once`: every step in a fresh temporary dir, then exit.
fn run_once(g: &Global, events: u64) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("socai-demo-")
        .tempdir()?
        .keep();
    let mut g = g.clone();
    g.data_dir = work.join("data");
    let dir = DataDir::new(&g.data_dir);
    let data = g.data_dir.display().to_string();

    step("1. init: a data dir with an Ed25519 checkpoint key and a salt key");
    super::init(&g, "demo.socai.vn/ledger", None)?;

    step(&format!(
        "2. simulate {events} realistic dossier events (34 provinces and their communes); publish them over NATS; the ledger commits each once"
    ));
    let all = work.join("events.jsonl");
    super::simulate(events, socai_sim::SimConfig::default(), Some(&all))?;
    let text = std::fs::read_to_string(&all)?;
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines.len() * 4 / 5;
    let old_size = cut as u64;
    over_nats(&g, &work, &lines, cut)?;

    step("3. verify the whole ledger against the verifier key");
    audit::verify(&g, Some(&dir.vkey_path()), None, &[])?;

    let sample: serde_json::Value =
        serde_json::from_str(lines[lines.len() / 2]).context("sample event")?;
    let id = sample["id"].as_str().unwrap_or_default().to_string();
    step(&format!("4. inclusion proof for event {id}"));
    audit::proof(
        &g,
        ProofKind::Inclusion {
            id: Some(id.clone()),
            seq: None,
            tree_size: None,
            receipt: None,
        },
    )?;

    step(&format!(
        "5. consistency proof: the ledger today extends the ledger of size {old_size}"
    ));
    audit::proof(
        &g,
        ProofKind::Consistency {
            from: old_size,
            to: None,
        },
    )?;

    let bundle = work.join("bundle.json");
    step("6. export the last 1000 entries and verify the bundle offline (no data dir)");
    let size = lines.len() as u64;
    audit::export(&g, size.saturating_sub(1000), None, Some(&bundle), false)?;
    audit::verify_bundle(&bundle, &dir.vkey_path())?;

    let submitted = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("personal").is_some())
        .and_then(|v| v["id"].as_str().map(str::to_string));
    if let Some(target) = submitted {
        step(&format!(
            "7. redact the personal data of {target}; every hash and proof stays valid"
        ));
        super::redact(
            &g,
            &target,
            "citizen request under Decree 13/2023",
            "demo-operator",
        )?;
        audit::verify(&g, Some(&dir.vkey_path()), None, &[])?;
    }

    step(
        "8. the same ledger over HTTP, as `socai serve` serves it: an auditor with only the URL and checkpoint.vkey verifies it from its C2SP tiles and fetches a proof",
    );
    over_http(&g, &dir.vkey_path(), &id)?;

    println!("\nthe demo data dir is {data}; try:");
    let dossier = sample["dossier"].as_str().unwrap_or_default();
    println!("  socai --data-dir {data} history {dossier}");
    println!("  socai --data-dir {data} show {id}");
    println!("  socai --data-dir {data} verify");
    Ok(())
}

/// Step 8: the HTTP API on the final ledger (in this process, on a free port), read by the
/// `--api` commands.
fn over_http(g: &Global, vkey: &std::path::Path, id: &str) -> anyhow::Result<()> {
    let (ledger, config) = super::open_ledger(g)?;
    let state = socai_api::AppState::new(
        ledger.reader(),
        config.api()?,
        None,
        None,
        None,
        prometheus_client::registry::Registry::default(),
    );
    let rt = super::nats::runtime()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(socai_api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    println!("HTTP API at {url} (routes: {url}/v1/openapi.json)");
    let remote = Global {
        api: Some(url.clone()),
        ..g.clone()
    };
    let result = (|| {
        audit::verify(&remote, Some(vkey), None, &[])?;
        println!("GET {url}/v1/proofs/inclusion?id={id}:");
        audit::proof(
            &remote,
            ProofKind::Inclusion {
                id: Some(id.to_owned()),
                seq: None,
                tree_size: None,
                receipt: None,
            },
        )
    })();
    let _ = stop.send(());
    let _ = rt.block_on(server);
    drop(ledger);
    result
}

/// Step 2: nats-server with the shipped config, the ledger writer in this process (user
/// `ledger`), the workload published by the integration gateway (user `gateway`) in two parts,
/// a checkpoint kept between them for the consistency proof, a retry, and bad events.
fn over_nats(g: &Global, work: &std::path::Path, lines: &[&str], cut: usize) -> anyhow::Result<()> {
    use socai_client::publisher::{NatsConfig, Outgoing, Publisher};
    use socai_projector::{self as projector, ProjectorConfig, ProjectorCounters};
    use socai_testkit::{LocalNats, LocalNatsOptions, find_nats_server, shipped_config_in};
    use std::sync::atomic::Ordering::Relaxed;

    let shipped = std::path::Path::new("deploy/nats");
    anyhow::ensure!(
        shipped.join("single.conf").is_file(),
        "deploy/nats/single.conf not found: run the demo from the repository root (deploy/demo.sh does)"
    );
    let (config, vars) = shipped_config_in(shipped, &work.join("nats"))?;
    let secret = |var: &str| format!("demo-{}-{}", var.len(), rand::random::<u64>());
    let env: Vec<(String, String)> = vars.iter().map(|v| (v.clone(), secret(v))).collect();
    let password = |user: &str| {
        env.iter()
            .find(|(v, _)| socai_testkit::user_of_password_var(v).as_deref() == Some(user))
            .map(|(_, p)| p.clone())
    };
    let server = LocalNats::start(LocalNatsOptions {
        binary: find_nats_server(None)?,
        dir: work.join("nats"),
        config: Some(config),
        env: env.clone(),
        port: 0,
    })?;
    println!(
        "nats-server {} with deploy/nats/single.conf (users: {})",
        server.url(),
        vars.iter()
            .filter_map(|v| socai_testkit::user_of_password_var(v))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let as_user = |user: &str| NatsConfig {
        user: Some(user.to_string()),
        password: password(user),
        name: format!("socai-demo-{user}"),
        ping_interval: std::time::Duration::from_secs(g.nats_ping_interval),
        ..NatsConfig::new(server.url())
    };
    let messages = |part: &[&str]| -> Vec<Outgoing> {
        part.iter()
            .filter_map(|l| serde_json::from_str::<socai_model::Event>(l).ok())
            .map(|e| Outgoing::event(&e))
            .collect()
    };
    let (first, second) = (messages(&lines[..cut]), messages(&lines[cut..]));
    let (ledger, config) = super::open_ledger(g)?;
    let writer = config.writer();
    let rt = super::nats::runtime()?;
    rt.block_on(async {
        let (client, _) = socai_client::publisher::connect(&as_user("ledger")).await?;
        let js = async_nats::jetstream::new(client);
        socai_ingest::ensure_streams(&js, &writer.streams).await?;
        let gateway = Publisher::connect(&as_user("gateway")).await?;
        let vkey = socai_chain::CheckpointVerifier::from_vkey(
            std::fs::read_to_string(g.data_dir.join("checkpoint.vkey"))?.trim(),
        )?;
        // The projection worker (user `projector`) folds COMMITTED into the metrics while the
        // ledger commits; a dashboard (user `dashboard`) watches the live values.
        let (pclient, _) = socai_client::publisher::connect(&as_user("projector")).await?;
        let (plive, _) = socai_client::publisher::connect(&as_user("projector")).await?;
        let projected = std::sync::Arc::new(ProjectorCounters::default());
        let (stop_projector, projector_stopped) = tokio::sync::oneshot::channel::<()>();
        let projector = tokio::spawn(projector::run(
            socai_client::jetstream(pclient).await,
            plive,
            ProjectorConfig::new("projector", &g.data_dir.join("metrics")),
            projected.clone(),
            async move {
                let _ = projector_stopped.await;
            },
        ));
        let (dashboard, _) = socai_client::publisher::connect(&as_user("dashboard")).await?;
        let mut live = dashboard
            .subscribe(format!("{}.>", socai_wire::subject::METRICS_PREFIX)).await?;
        let live_count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let live_updates = tokio::spawn({
            let live_count = live_count.clone();
            async move {
                use futures::StreamExt;
                while live.next().await.is_some() {
                    live_count.fetch_add(1, Relaxed);
                }
            }
        });

        // Part 1, then a checkpoint at exactly its size (the auditor keeps it), then part 2.
        let started = std::time::Instant::now();
        let part1 = first.len() as u64;
        with_writer(&js, ledger, &writer, async {
            publish(&gateway, &vkey, first).await?;
            Ok(part1)
        })
        .await?;
        println!(
            "part 1: {part1} events published by the gateway and committed (receipts back) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let mut ledger = super::open_ledger(g)?.0;
        let kept = ledger.checkpoint()?;
        std::fs::write(work.join("checkpoint-part1.note"), &kept.note)?;
        println!(
            "signed checkpoint at size {} kept in checkpoint-part1.note",
            kept.checkpoint.size
        );

        let started = std::time::Instant::now();
        let part2 = second.len() as u64;
        // Bad events: each lands on REJECTED with its reason, nothing is lost.
        let bad = [
            ("dossier.submitted", r#"{"id":"demo-bad-1","type":"dossier.submitted"#.to_string()),
            ("dossier.submitted", lines[cut].replace("\"schema\":1", "\"schema\":7")),
            ("dossier.teleported", r#"{"id":"demo-bad-3","type":"dossier.teleported","agency":"000.00.12.H01","procedure":"1.0","dossier":"D1","occurred_at":"2026-06-09T08:15:00+07:00","schema":1,"data":{}}"#.to_string()),
        ];
        let counters = with_writer(&js, ledger, &writer, async {
            publish(&gateway, &vkey, second.clone()).await?;
            // A retry of 1000 events of part 2: JetStream's dedup window answers "duplicate".
            let mut duplicates = 0;
            let retry = second.iter().take(1000).cloned();
            gateway
                .publish_all(retry, 512, |r| duplicates += u32::from(r.is_ok_and(|p| p.duplicate)))
                .await;
            println!("retrying 1000 events of part 2: {duplicates} answered as duplicates by JetStream (same ids)");
            for (i, (event_type, payload)) in bad.iter().enumerate() {
                let subject = socai_wire::subject::event_subject("000.00.12.H01", event_type);
                let id = format!("demo-bad-{i}");
                let payload = payload.clone().into();
                gateway.publish_outgoing(Outgoing { subject, id, payload }).await?;
            }
            Ok(part2 + bad.len() as u64)
        })
        .await?;
        println!(
            "part 2: {} committed, {} rejected in {:.1} s",
            counters.committed.load(Relaxed),
            counters.rejected.load(Relaxed),
            started.elapsed().as_secs_f64()
        );
        let mut rejected = js.get_stream(socai_wire::stream::REJECTED).await?;
        let last = rejected.info().await?.state.last_sequence;
        for seq in 1..=last {
            let m = rejected.get_raw_message(seq).await?;
            let h = |name: &str| m.headers.get(name).map(|v| v.as_str().to_string()).unwrap_or_default();
            println!(
                "  REJECTED {}: {} at {:?}: {}",
                m.subject,
                h(socai_wire::header::CODE),
                h(socai_wire::header::PATH),
                h(socai_wire::header::REASON)
            );
        }
        // One message per commit: the entries are counted from the last message's headers.
        let committed = projector::committed::committed_size(&js).await?;
        println!("COMMITTED stream holds {committed} entries for the projection workers");
        let waited = std::time::Instant::now();
        while projected.published_size.load(Relaxed) < committed {
            anyhow::ensure!(
                !projector.is_finished(),
                "the projection worker stopped early: {:?}",
                projector.await
            );
            anyhow::ensure!(
                waited.elapsed() < std::time::Duration::from_secs(120),
                "the projection worker did not catch up with COMMITTED in 2 minutes"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = stop_projector.send(());
        projector.await??;
        dashboard.flush().await?;
        live_updates.abort();
        let live = live_count.load(Relaxed);
        println!(
            "projection worker: {} entries folded; {} metric values stored in the METRICS bucket; the dashboard received {live} live updates on dvc.metrics.>",
            projected.applied.load(Relaxed),
            projected.values.load(Relaxed),
        );
        anyhow::Ok(())
    })?;
    // The dashboard's view, then an auditor's recomputation, while nats-server still runs.
    let dashboard = Global {
        nats: Some(server.url()),
        nats_user: Some("dashboard".into()),
        nats_password: password("dashboard"),
        ..g.clone()
    };
    crate::cmd::demo::step(
        "2b. metrics as the dashboard reads them (national and per province, rolling 30 days)",
    );
    let filter = super::metrics::parse_filter(&[], Some("national"), Some("rolling30"))?;
    super::metrics::show(&dashboard, &filter)?;
    let filter = super::metrics::parse_filter(
        &["on_time_rate".into(), "score_766".into()],
        Some("province"),
        Some("ytd"),
    )?;
    super::metrics::show(&dashboard, &filter)?;
    crate::cmd::demo::step(
        "2c. audit: recompute every metric from the ledger and compare with every published value",
    );
    super::metrics::audit(&dashboard, None)?;
    drop(server);
    Ok(())
}

/// Publishes with a progress bar and waits for the ledger's receipts (each checked with the
/// log's published key); every event must be committed.
async fn publish(
    gateway: &socai_client::publisher::Publisher,
    vkey: &socai_chain::CheckpointVerifier,
    msgs: Vec<socai_client::publisher::Outgoing>,
) -> anyhow::Result<()> {
    use socai_client::receipts::{ReceiptOptions, ReceiptPublisher, Report};
    let n = msgs.len() as u64;
    let bar = crate::output::progress(n, "receipts");
    let receipts = ReceiptPublisher::new(
        gateway.clone(),
        ReceiptOptions {
            max_in_flight: 512,
            verifier: Some(vkey.clone()),
            ..Default::default()
        },
    );
    let summary = receipts
        .publish_all(msgs.into_iter().map(|m| (m, ())), |r| {
            if let Report::Event(_) = r {
                bar.inc(1);
            }
        })
        .await?;
    bar.finish_and_clear();
    anyhow::ensure!(
        summary.committed + summary.duplicates == n,
        "{} of {n} events have no receipt of the ledger: {summary:?}",
        n - summary.committed - summary.duplicates
    );
    println!(
        "  {} receipts (signed, checked with checkpoint.vkey) confirm {} events committed{}",
        summary.receipts,
        summary.committed,
        if summary.duplicates > 0 {
            format!(", {} already in the ledger", summary.duplicates)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Runs the ledger writer on `ledger` while `feed` publishes, until the writer has answered
/// (committed, duplicate or rejected) as many messages as `feed` says it sent; then stops it.
async fn with_writer(
    js: &async_nats::jetstream::Context,
    ledger: socai_store::Ledger<socai_store::SledStorage>,
    config: &socai_ingest::WriterConfig,
    feed: impl std::future::Future<Output = anyhow::Result<u64>>,
) -> anyhow::Result<std::sync::Arc<socai_ingest::Counters>> {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = std::sync::Arc::new(socai_ingest::Counters::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut writer = tokio::spawn(socai_ingest::serve(
        js.clone(),
        ledger,
        config.clone(),
        counters.clone(),
        None,
        async move {
            let _ = stop_rx.await;
        },
        std::time::Duration::from_secs(10),
    ));
    let expected = feed.await?;
    let c = counters.clone();
    let answered = async move {
        while c.committed.load(Relaxed) + c.duplicates.load(Relaxed) + c.rejected.load(Relaxed)
            < expected
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = answered => {}
        result = &mut writer => {
            result??;
            anyhow::bail!("the ledger writer stopped before answering all {expected} events");
        }
    }
    let _ = stop_tx.send(());
    writer.await??;
    Ok(counters)
}
