//! `socai bench store`: figures for the sled ledger, each beside a baseline measured in the same
//! run on the same bytes. Benchmarks print; they never assert a time.

use anyhow::Context;
use hdrhistogram::Histogram;
use rand_core::{RngCore, SeedableRng};
use socai_chain::checkpoint::CheckpointSigner;
use socai_model::{Limits, Validator};
use socai_store::storage::{ENTRY_BUNDLE, join_bundle};
use socai_store::{Ledger, LedgerConfig, SledStorage, Storage, VerifyOptions, verify_ledger};
use std::path::Path;
use std::time::Instant;

/// One line of the figures table: our figure, the in-run baseline (if any), their ratio, the target.
fn row(figure: &str, socai: String, baseline: &str, ratio: Option<f64>, target: &str) {
    let ratio = ratio.map(|r| format!("{r:.2}")).unwrap_or_default();
    println!("{figure:<34} {socai:>14} {baseline:>14} {ratio:>8}  {target}");
}

pub(crate) fn per_s(rate: f64) -> String {
    format!("{rate:.0}/s")
}

pub(crate) fn rate(n: u64, secs: f64) -> f64 {
    n as f64 / secs.max(1e-9)
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

pub fn store(events: u64, batch_size: usize, dir: Option<&Path>) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("socai-bench-")
        .tempdir_in(dir.unwrap_or(&std::env::temp_dir()))?;
    let n = events as usize;
    let batch_size = batch_size.max(1);
    eprintln!("generating {n} events...");
    let raw: Vec<Vec<u8>> = socai_sim::Generator::new(socai_sim::SimConfig::default())
        .take(n)
        .map(|e| serde_json::to_vec(&e))
        .collect::<Result<_, _>>()?;
    let raw_bytes: u64 = raw.iter().map(|r| r.len() as u64).sum();
    println!(
        "socai bench store: {n} events, {:.0} bytes/event published, batches of {batch_size}, fsync per batch",
        raw_bytes as f64 / n as f64
    );
    println!(
        "{:<34} {:>14} {:>14} {:>8}  target",
        "figure", "socai", "baseline", "ratio"
    );

    // 1. socai: validate + hash + chain + Merkle + indexes + one atomic batch + fsync.
    let (signer, _, _) = CheckpointSigner::generate("bench.socai/ledger")?;
    let ledger_path = tmp.path().join("ledger");
    let storage = SledStorage::open(&ledger_path)?;
    let mut ledger = Ledger::open(storage, signer, vec![7u8; 32], LedgerConfig::default())?;
    let validator = Validator::new(Limits::default());
    // Validation alone, one core, for the breakdown.
    let started = Instant::now();
    for r in &raw {
        std::hint::black_box(validator.validate(r)?);
    }
    let validate_secs = started.elapsed().as_secs_f64();
    // The pipeline the CLI and ingest use: validation on one thread, the single writer on another.
    let raw = std::sync::Arc::new(raw);
    let items = {
        let raw = std::sync::Arc::clone(&raw);
        (0..raw.len()).map(move |i| Ok((i as u64 + 1, raw[i].clone())))
    };
    let bar = crate::output::progress(n as u64, "append");
    let mut append_only_secs = 0.0;
    let started = Instant::now();
    for batch in crate::pipeline::validate_in_background(items, validator, batch_size) {
        let batch = batch.map_err(anyhow::Error::msg)?;
        let t = Instant::now();
        ledger.append_batch(&batch.events, "2026-11-22T00:00:00.000Z")?;
        append_only_secs += t.elapsed().as_secs_f64();
        bar.inc(batch.events.len() as u64);
    }
    ledger.checkpoint()?;
    let append_secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    // The same records and index keys, read back, for the baselines.
    let entries: Vec<Vec<u8>> = ledger
        .storage()
        .entries(0, n as u64)
        .map(|r| r.map(|(_, e)| e))
        .collect::<Result<_, _>>()?;
    let canonical_bytes: u64 = entries.iter().map(|e| e.len() as u64).sum();
    let keys: Vec<(Vec<u8>, Vec<u8>)> = raw
        .iter()
        .enumerate()
        .map(|(seq, r)| {
            let v: serde_json::Value = serde_json::from_slice(r).unwrap_or_default();
            let id = SledStorage::id_key(
                v["agency"].as_str().unwrap_or_default(),
                v["id"].as_str().unwrap_or_default(),
            );
            let dossier =
                SledStorage::dossier_key(v["dossier"].as_str().unwrap_or_default(), seq as u64);
            (id, dossier)
        })
        .collect();

    // 1b. baseline: the same records in the same layout (entry bundles, partial bundles rewritten
    // per batch; id and dossier index keys) as plain sled batch inserts with an fsync per batch; no
    // validation, hashing, Merkle state or dedup reads.
    let base_db = sled::Config::new()
        .path(tmp.path().join("baseline"))
        .flush_every_ms(None)
        .open()?;
    let base = base_db.open_tree("ledger")?;
    let bundle = ENTRY_BUNDLE as usize;
    let started = Instant::now();
    for start in (0..n).step_by(batch_size) {
        let end = (start + batch_size).min(n);
        let mut b = sled::Batch::default();
        for first in (start / bundle * bundle..end).step_by(bundle) {
            let refs: Vec<&[u8]> = entries[first..(first + bundle).min(end)]
                .iter()
                .map(Vec::as_slice)
                .collect();
            b.insert(&SledStorage::bundle_key(first as u64).0, join_bundle(&refs));
        }
        for (seq, (id, dossier)) in keys.iter().enumerate().take(end).skip(start) {
            b.insert(id.as_slice(), &(seq as u64).to_be_bytes()[..]);
            b.insert(dossier.as_slice(), &[][..]);
        }
        base.apply_batch(b)?;
        base_db.flush()?;
    }
    let base_secs = started.elapsed().as_secs_f64();
    let (a, b) = (rate(n as u64, append_secs), rate(n as u64, base_secs));
    let part = "(part of append)";
    row(
        "  validate only, 1 core (events/s)",
        per_s(rate(n as u64, validate_secs)),
        "",
        None,
        part,
    );
    row(
        "  append_batch only (events/s)",
        per_s(rate(n as u64, append_only_secs)),
        "",
        None,
        part,
    );
    row(
        "validate+append, 2 threads (ev/s)",
        per_s(a),
        &per_s(b),
        Some(a / b),
        ">= 40k/s and >= 0.8x",
    );
    drop(base);
    drop(base_db);

    // 2. verify vs bare SHA-256 over the same entries (in memory, one core).
    let started = Instant::now();
    let mut read_bytes = 0u64;
    for item in ledger.storage().entries(0, n as u64) {
        read_bytes += item?.1.len() as u64;
    }
    std::hint::black_box(read_bytes);
    let read_secs = started.elapsed().as_secs_f64();
    let trusted = ledger.verifier();
    let started = Instant::now();
    let report = verify_ledger(
        ledger.storage(),
        trusted,
        &VerifyOptions::default(),
        &|_| {},
    )?;
    let verify_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.entries == n as u64,
        "verify saw {} entries, expected {n}",
        report.entries
    );
    let started = Instant::now();
    let mut acc = 0u8;
    for e in &entries {
        acc ^= socai_chain::hash::sha256(e).0[0];
    }
    let sha_secs = started.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    let (v, s) = (rate(n as u64, verify_secs), rate(n as u64, sha_secs));
    row(
        "  read entries from sled, 1 core",
        per_s(rate(n as u64, read_secs)),
        "",
        None,
        "(part of verify)",
    );
    row(
        "verify (entries/s)",
        per_s(v),
        &per_s(s),
        Some(v / s),
        ">= 1M/s and >= 0.5x",
    );

    // 3. proof latency at the end size.
    let size = ledger.head().size;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut incl = Histogram::<u64>::new(3).context("histogram")?;
    let mut cons = Histogram::<u64>::new(3).context("histogram")?;
    let mut path_len = 0;
    for _ in 0..10_000 {
        let seq = rng.next_u64() % size;
        let t = Instant::now();
        let p = ledger.inclusion_proof(seq, None)?;
        incl.record(t.elapsed().as_nanos() as u64)?;
        path_len = path_len.max(p.path.len());
        let old = 1 + rng.next_u64() % size;
        let t = Instant::now();
        ledger.consistency_proof(old, None)?;
        cons.record(t.elapsed().as_nanos() as u64)?;
    }
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let p50_p99 = |h: &Histogram<u64>| format!("{:.1}/{:.1} µs", us(h, 0.5), us(h, 0.99));
    row(
        "inclusion proof p50/p99",
        p50_p99(&incl),
        "",
        None,
        "p99 <= 1000 µs",
    );
    row(
        "consistency proof p50/p99",
        p50_p99(&cons),
        "",
        None,
        "p99 <= 1000 µs",
    );
    let log2 = 64 - (size - 1).leading_zeros();
    let bytes = |b: f64| format!("{b:.0} B");
    row(
        "inclusion proof size (max)",
        bytes((path_len * 32) as f64),
        &bytes(f64::from(log2 * 32)),
        None,
        "32 x ceil(log2 n)",
    );

    // 4. disk.
    drop(ledger);
    let disk = dir_size(&ledger_path);
    row(
        "disk per event (vs canonical)",
        bytes(disk as f64 / n as f64),
        &bytes(canonical_bytes as f64 / n as f64),
        Some(disk as f64 / canonical_bytes as f64),
        "<= 1.5x canonical",
    );
    Ok(())
}

/// Peak resident memory of this process since the last [`reset_peak_rss`], in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// Resets the kernel's peak-RSS mark (Linux: "5" to clear_refs), so each phase has its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat.
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn mib(v: Option<f64>) -> String {
    v.map(|m| format!("{m:.0} MiB"))
        .unwrap_or_else(|| "n/a".into())
}

/// `socai bench ingest`: publish → committed, fsynced, acked, through a real nats-server, beside a
/// bare pipeline that moves the same payloads through JetStream into sled (no validation, hashing
/// or indexes) with the same batch size, fsync per batch and acks.
pub fn ingest(
    g: &crate::cli::Global,
    events: u64,
    nats_server: Option<&Path>,
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    use socai_client::publisher::{NatsConfig, Outgoing, Publisher};
    use socai_testkit::{LocalNats, LocalNatsOptions, find_nats_server};

    let tmp = tempfile::Builder::new()
        .prefix("socai-bench-ingest-")
        .tempdir_in(dir.unwrap_or(&std::env::temp_dir()))?;
    let n = events as usize;
    eprintln!("generating {n} events...");
    let messages: Vec<Outgoing> = socai_sim::Generator::new(socai_sim::SimConfig::default())
        .take(n)
        .map(|e| Outgoing::event(&e))
        .collect();
    let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
    let binary = find_nats_server(nats_server)?;
    let server = LocalNats::start(LocalNatsOptions {
        binary: binary.clone(),
        dir: tmp.path().join("nats"),
        ..Default::default()
    })?;
    let batch = socai_ingest::WriterConfig::default().batch_max_events;
    println!(
        "socai bench ingest: {n} events, {:.0} bytes/event, 1 publisher with 512 in flight, batches of {batch}, fsync per batch, {} ({})",
        bytes as f64 / n as f64,
        binary.display(),
        server.url()
    );
    println!(
        "{:<34} {:>14} {:>14} {:>8}  target",
        "figure", "socai", "baseline", "ratio"
    );
    let rt = crate::cmd::nats::runtime()?;
    let url = server.url();
    let _ = g;

    let nats_pid = server.pid().map(|p| p.to_string()).unwrap_or_default();
    let cpu = || (cpu_secs("self"), cpu_secs(&nats_pid));

    // 1. baseline: JetStream → sled, no validation, hashing or indexes.
    reset_peak_rss();
    let bare_path = tmp.path().join("bare");
    let cpu0 = cpu();
    let bare_secs = rt.block_on(bare_pipeline(&url, &messages, batch, &bare_path))?;
    let bare_cpu = (cpu().0 - cpu0.0, cpu().1 - cpu0.1);
    let bare_rss = peak_rss_mib();

    // 2. socai: the real writer (socai_ingest::serve) on a fresh ledger.
    reset_peak_rss();
    let data = socai_store::DataDir::new(tmp.path().join("socai"));
    data.init("bench.socai/ledger")?;
    let ledger = data.open_ledger(LedgerConfig::default())?;
    let counters = std::sync::Arc::new(socai_ingest::Counters::default());
    let cpu0 = cpu();
    let (socai_secs, publish_secs) = rt.block_on(async {
        let (client, _) = socai_client::publisher::connect(&NatsConfig::new(&url)).await?;
        let js = async_nats::jetstream::new(client);
        socai_ingest::ensure_streams(&js, &socai_ingest::StreamSettings::default()).await?;
        let done = counters.clone();
        let target = n as u64;
        let finished = async move {
            while done.committed.load(std::sync::atomic::Ordering::Relaxed) < target {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        };
        let publisher = Publisher::connect(&NatsConfig::new(&url)).await?;
        let started = Instant::now();
        let writer = tokio::spawn(socai_ingest::serve(
            js,
            ledger,
            socai_ingest::WriterConfig::default(),
            counters.clone(),
            None,
            finished,
            std::time::Duration::from_secs(30),
        ));
        let bar = crate::output::progress(target, "publish");
        let failed = publisher
            .publish_all(messages.iter().cloned(), 512, |_| bar.inc(1))
            .await;
        bar.finish_and_clear();
        anyhow::ensure!(failed == 0, "{failed} publishes failed");
        let publish_secs = started.elapsed().as_secs_f64();
        writer.await??;
        anyhow::Ok((started.elapsed().as_secs_f64(), publish_secs))
    })?;
    let socai_cpu = (cpu().0 - cpu0.0, cpu().1 - cpu0.1);
    let socai_rss = peak_rss_mib();

    // 3. backlog: both streams now hold the N events; a new consumer and a new store each catch
    // up on them with no publisher running (the ledger's capacity, and the bare one's).
    let (backlog_bare_secs, backlog_socai_secs) = rt.block_on(async {
        let (client, _) = socai_client::publisher::connect(&NatsConfig::new(&url)).await?;
        let js = async_nats::jetstream::new(client);
        let bare = js.get_stream("BARE").await?;
        let bare_secs = bare_consume(
            &bare,
            "bare-backlog",
            n,
            batch,
            &tmp.path().join("bare-backlog"),
        )
        .await?;
        // A new ledger starts COMMITTED and CHECKPOINTS from scratch, as a new deployment would.
        js.delete_stream(socai_wire::stream::COMMITTED).await?;
        js.delete_stream(socai_wire::stream::CHECKPOINTS).await?;
        let data = socai_store::DataDir::new(tmp.path().join("socai-backlog"));
        data.init("bench.socai/ledger")?;
        let ledger = data.open_ledger(LedgerConfig::default())?;
        let mut config = socai_ingest::WriterConfig::default();
        config.streams.consumer = "ledger-backlog".into();
        let counters = std::sync::Arc::new(socai_ingest::Counters::default());
        let done = counters.clone();
        let target = n as u64;
        let finished = async move {
            while done.committed.load(std::sync::atomic::Ordering::Relaxed) < target {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        };
        let started = Instant::now();
        socai_ingest::serve(
            js,
            ledger,
            config,
            counters,
            None,
            finished,
            std::time::Duration::from_secs(30),
        )
        .await?;
        anyhow::Ok((bare_secs, started.elapsed().as_secs_f64()))
    })?;
    let socai_rate = rate(events, socai_secs);
    let bare_rate = rate(events, bare_secs);
    row(
        "ingest end to end",
        per_s(socai_rate),
        &per_s(bare_rate),
        Some(socai_rate / bare_rate),
        ">= 40k/s and >= 0.8x bare",
    );
    let (backlog_socai, backlog_bare) = (
        rate(events, backlog_socai_secs),
        rate(events, backlog_bare_secs),
    );
    row(
        "catching up a backlog (no publisher)",
        per_s(backlog_socai),
        &per_s(backlog_bare),
        Some(backlog_socai / backlog_bare),
        "(the ledger's own capacity)",
    );
    row(
        "  publishing alone (PubAcks)",
        per_s(rate(events, publish_secs)),
        "",
        None,
        "",
    );
    let us_per_event = |secs: f64| format!("{:.1} µs", secs * 1e6 / events as f64);
    row(
        "  CPU per event: socai process",
        us_per_event(socai_cpu.0),
        &us_per_event(bare_cpu.0),
        None,
        "publisher + ledger, one process",
    );
    row(
        "  CPU per event: nats-server",
        us_per_event(socai_cpu.1),
        &us_per_event(bare_cpu.1),
        None,
        "",
    );
    row(
        "peak RSS (whole process)",
        mib(socai_rss),
        &mib(bare_rss),
        None,
        "bounded",
    );
    let c = &counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let batches = load(&c.batches).max(1);
    println!(
        "committed {} duplicates {} rejected {} ack failures {}; {} commits of {:.0} events on average, validate + commit {:.1} ms each ({:.0}% of the run)",
        load(&c.committed),
        load(&c.duplicates),
        load(&c.rejected),
        load(&c.ack_failures),
        batches,
        load(&c.committed) as f64 / batches as f64,
        load(&c.commit_us) as f64 / batches as f64 / 1000.0,
        load(&c.commit_us) as f64 / 1e6 / socai_secs * 100.0,
    );
    drop(server);
    Ok(())
}

/// The bare pipeline: publish the same payloads to a plain stream; a pull consumer writes each
/// ready chunk (≤ `batch`) into sled with one batch + fsync, then double-acks every message.
async fn bare_pipeline(
    url: &str,
    messages: &[socai_client::publisher::Outgoing],
    batch: usize,
    path: &Path,
) -> anyhow::Result<f64> {
    use async_nats::jetstream::stream;
    use socai_client::publisher::{NatsConfig, Outgoing, Publisher};

    let (client, _) = socai_client::publisher::connect(&NatsConfig::new(url)).await?;
    let js = async_nats::jetstream::new(client);
    let bare = js
        .create_stream(stream::Config {
            name: "BARE".into(),
            subjects: vec!["bare.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let total = messages.len();
    let publisher = Publisher::connect(&NatsConfig::new(url)).await?;
    let bare_messages: Vec<Outgoing> = messages
        .iter()
        .map(|m| Outgoing {
            subject: m
                .subject
                .replacen(socai_wire::subject::EVENTS_PREFIX, "bare", 1),
            id: m.id.clone(),
            payload: m.payload.clone(),
        })
        .collect();
    let started = Instant::now();
    let publish =
        tokio::spawn(async move { publisher.publish_all(bare_messages, 512, |_| {}).await });
    bare_consume(&bare, "bare", total, batch, path).await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(publish.await? == 0, "bare publishes failed");
    Ok(secs)
}

/// The bare consumer: `total` messages of `stream` through a new durable consumer `name`, each
/// ready chunk (≤ `batch`) written to a sled at `path` with one batch + fsync, then double-acked.
/// Returns the seconds it took.
async fn bare_consume(
    stream: &async_nats::jetstream::stream::Stream,
    name: &str,
    total: usize,
    batch: usize,
    path: &Path,
) -> anyhow::Result<f64> {
    use async_nats::jetstream::consumer;
    use futures::StreamExt;
    let started = Instant::now();
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await?;
    let db = sled::Config::new()
        .path(path)
        .flush_every_ms(None)
        .cache_capacity(256 << 20)
        .open()?;
    let tree = db.open_tree("bare")?;
    let mut chunks = consumer
        .stream()
        .max_messages_per_batch(batch)
        .heartbeat(std::time::Duration::from_secs(5))
        .messages()
        .await?
        .ready_chunks(batch);
    let mut done = 0;
    while done < total {
        let Some(chunk) = chunks.next().await else {
            anyhow::bail!("bare consumer ended after {done} of {total}");
        };
        let msgs: Vec<_> = chunk.into_iter().collect::<Result<_, _>>()?;
        let mut write = sled::Batch::default();
        for m in &msgs {
            let seq = m.info().map_err(anyhow::Error::msg)?.stream_sequence;
            write.insert(&seq.to_be_bytes(), m.payload.as_ref());
        }
        let (t, d) = (tree.clone(), db.clone());
        tokio::task::spawn_blocking(move || -> sled::Result<()> {
            t.apply_batch(write)?;
            d.flush()?;
            Ok(())
        })
        .await??;
        for r in futures::future::join_all(msgs.iter().map(|m| m.double_ack())).await {
            r.map_err(anyhow::Error::msg)?;
        }
        done += msgs.len();
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `socai bench metrics`: (1) projection rebuild rate from a ledger of `events` entries, beside
/// reading the same entries alone; (2) freshness, publish → a subscriber of
/// `dvc.metrics.*.national` sees a value computed at a tree size that includes the event, at
/// `rate` events/s through the real writer and projector, beside the bare NATS round trip
/// (core publish → subscriber) measured in the same run at the same rate.
pub fn metrics(
    g: &crate::cli::Global,
    events: u64,
    rate_per_s: u64,
    seconds: u64,
    nats_server: Option<&Path>,
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    let _ = g;
    let tmp = tempfile::Builder::new()
        .prefix("socai-bench-metrics-")
        .tempdir_in(dir.unwrap_or(&std::env::temp_dir()))?;
    let n = events as usize;

    // 1. rebuild.
    eprintln!("building a ledger of {n} simulated events...");
    let data = socai_store::DataDir::new(tmp.path().join("rebuild"));
    data.init("bench.socai/ledger")?;
    let mut ledger = data.open_ledger(LedgerConfig::default())?;
    let bar = crate::output::progress(n as u64, "append");
    let mut generator = socai_sim::Generator::new(socai_sim::SimConfig::default());
    let mut appended = 0;
    while appended < n {
        let batch: Vec<_> = generator.by_ref().take((n - appended).min(5000)).collect();
        appended += batch.len();
        ledger.append_batch(&batch, "2026-11-22T00:00:00.000Z")?;
        bar.set_position(appended as u64);
    }
    bar.finish_and_clear();
    let size = ledger.head().size;
    println!(
        "socai bench metrics: rebuild from a {size}-entry ledger (63 provinces, simulated), then freshness at {rate_per_s} events/s for {seconds} s"
    );
    println!(
        "{:<34} {:>14} {:>14} {:>8}  target",
        "figure", "socai", "baseline", "ratio"
    );
    // Baseline: read every entry (what any rebuild must do).
    let started = Instant::now();
    let mut bytes = 0u64;
    for item in ledger.storage().entries(0, size) {
        bytes += item?.1.len() as u64;
    }
    let read_secs = started.elapsed().as_secs_f64();
    std::hint::black_box(bytes);
    // The fold alone, on entries already in memory (the first 200k), for the breakdown.
    let sample: Vec<Vec<u8>> = ledger
        .storage()
        .entries(0, size.min(200_000))
        .map(|r| r.map(|(_, e)| e))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut alone = socai_metrics::Projection::untracked();
    for (seq, entry) in sample.iter().enumerate() {
        alone.apply(seq as u64, entry)?;
    }
    let alone_secs = started.elapsed().as_secs_f64();
    drop((alone, sample));
    reset_peak_rss();
    let started = Instant::now();
    let projection = crate::cmd::metrics::rebuild(&ledger, size)?;
    let fold_secs = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    let started = Instant::now();
    let values = projection.values(&ledger.root().to_hex());
    let values_secs = started.elapsed().as_secs_f64();
    row(
        "rebuild (read + fold), events/s",
        per_s(rate(size, fold_secs)),
        &per_s(rate(size, read_secs)),
        Some(read_secs / fold_secs),
        ">= 500000/s",
    );
    row(
        "fold alone (entries in memory)",
        per_s(rate(size.min(200_000), alone_secs)),
        "",
        None,
        "parse + state + counts, one core",
    );
    row(
        "every value, computed once",
        format!("{:.2} s", values_secs),
        "",
        None,
        &format!("{} values", values.len()),
    );
    row(
        "peak RSS during the fold",
        mib(rss),
        "",
        None,
        &format!("{} dossiers", projection.dossiers()),
    );
    drop((projection, values, ledger));

    // 2. freshness.
    freshness(tmp.path(), rate_per_s, seconds, nats_server)
}

fn freshness(
    dir: &Path,
    rate_per_s: u64,
    seconds: u64,
    nats_server: Option<&Path>,
) -> anyhow::Result<()> {
    use async_nats::jetstream::message::PublishMessage as Publish;
    use futures::StreamExt;
    use socai_client::publisher::{NatsConfig, Outgoing};
    use socai_projector::{self as projector, ProjectorConfig, ProjectorCounters};
    use socai_testkit::{LocalNats, LocalNatsOptions, find_nats_server};
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::Duration;

    let binary = find_nats_server(nats_server)?;
    let server = LocalNats::start(LocalNatsOptions {
        binary,
        dir: dir.join("nats"),
        ..Default::default()
    })?;
    let url = server.url();
    // A smaller country than the rebuild (8 provinces) keeps the catalogue warm-up short.
    let config = socai_sim::SimConfig {
        provinces: 8,
        ..Default::default()
    };
    let catalogue = 8 * socai_sim::AGENCIES_PER_PROVINCE * config.procedures_per_agency;
    let measured = (rate_per_s * seconds) as usize;
    let messages: Vec<Outgoing> = socai_sim::Generator::new(config)
        .take(catalogue + measured)
        .map(|e| Outgoing::event(&e))
        .collect();
    let rt = crate::cmd::nats::runtime()?;
    rt.block_on(async {
        let nats = NatsConfig::new(&url);
        let connect = || socai_client::publisher::connect(&nats);
        let (client, _) = connect().await?;
        let js = async_nats::jetstream::new(client.clone());
        socai_ingest::ensure_streams(&js, &socai_ingest::StreamSettings::default()).await?;
        let data = socai_store::DataDir::new(dir.join("fresh"));
        data.init("bench.socai/ledger")?;
        let ledger = data.open_ledger(LedgerConfig::default())?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let counters = Arc::new(socai_ingest::Counters::default());
        let writer = tokio::spawn(socai_ingest::serve(
            js.clone(),
            ledger,
            socai_ingest::WriterConfig::default(),
            counters.clone(),
            None,
            stopped(stop_rx.clone()),
            Duration::from_secs(10),
        ));
        let pcounters = Arc::new(ProjectorCounters::default());
        let (pclient, _) = connect().await?;
        let (plive, _) = connect().await?;
        let worker = tokio::spawn(projector::run(
            async_nats::jetstream::new(pclient),
            plive,
            ProjectorConfig::new("bench", &dir.join("fresh").join("metrics")),
            pcounters.clone(),
            stopped(stop_rx.clone()),
        ));

        // Warm-up: the catalogue, as fast as it goes, then wait for the projector.
        let (pub_client, _) = connect().await?;
        let pub_js = async_nats::jetstream::new(pub_client);
        let mut acks = futures::stream::FuturesUnordered::new();
        for m in &messages[..catalogue] {
            let publish = Publish::build()
                .payload(m.payload.clone())
                .message_id(&m.id);
            acks.push(
                pub_js
                    .send_publish(m.subject.clone(), publish)
                    .await?
                    .into_future(),
            );
            if acks.len() >= 512 {
                acks.next().await.transpose()?;
            }
        }
        while acks.next().await.transpose()?.is_some() {}
        while pcounters.published_size.load(Relaxed) < catalogue as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Subscribers: every value says which tree size it was computed at. One follows the
        // national values, one the procedure values (the last scopes of each flush).
        let sent_at: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
            Arc::new(std::sync::Mutex::new(vec![None; catalogue + measured]));
        let mut watchers = Vec::new();
        for subject in [
            socai_wire::subject::COMMITTED_SUBJECT.to_owned(),
            socai_wire::subject::metrics_subject("*", "national"),
            socai_wire::subject::metrics_subject("*", "procedure.>"),
        ] {
            let (sub_client, _) = connect().await?;
            let mut values = sub_client.subscribe(subject).await?;
            sub_client.flush().await?;
            let sent_at = sent_at.clone();
            watchers.push(tokio::spawn(async move {
                #[derive(serde::Deserialize)]
                struct Sized {
                    tree_size: u64,
                }
                let _keep = sub_client;
                let mut hist = Histogram::<u64>::new(3).expect("histogram");
                let mut seen = catalogue as u64;
                let end = (catalogue + measured) as u64;
                while seen < end {
                    let Ok(Some(msg)) =
                        tokio::time::timeout(Duration::from_secs(10), values.next()).await
                    else {
                        break;
                    };
                    let now = Instant::now();
                    // A COMMITTED entry carries its seq (tree size = seq + 1); values their size.
                    let size = match msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(socai_wire::header::SEQ))
                    {
                        Some(seq) => seq.as_str().parse::<u64>().map(|s| s + 1).unwrap_or(0),
                        None => match serde_json::from_slice::<Sized>(&msg.payload) {
                            Ok(v) => v.tree_size,
                            Err(_) => continue,
                        },
                    };
                    let sent = sent_at.lock().expect("lock");
                    while seen < size.min(end) {
                        if let Some(t) = sent[seen as usize] {
                            hist.record(now.duration_since(t).as_micros() as u64).ok();
                        }
                        seen += 1;
                    }
                }
                hist
            }));
        }
        // Paced publishing: every 10 ms, rate/100 events. Entry seq = publish order (one
        // publisher, one connection, a fresh ledger). The PubAcks are awaited by their own
        // task, so a slow ack never holds the pace (nor the client's in-flight permits).
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
        let acker = tokio::spawn(async move {
            let mut pending = futures::stream::FuturesUnordered::new();
            loop {
                tokio::select! {
                    next = ack_rx.recv() => match next {
                        Some(ack) => pending.push(ack),
                        None => break,
                    },
                    Some(result) = pending.next(), if !pending.is_empty() => {
                        result?;
                    }
                }
            }
            while let Some(result) = pending.next().await {
                result?;
            }
            anyhow::Ok(())
        });
        let per_tick = (rate_per_s / 100).max(1) as usize;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let cpu0 = cpu_secs("self");
        let started = Instant::now();
        let mut next = catalogue;
        while next < catalogue + measured {
            tick.tick().await;
            let end = (next + per_tick).min(catalogue + measured);
            for (i, m) in messages.iter().enumerate().take(end).skip(next) {
                sent_at.lock().expect("lock")[i] = Some(Instant::now());
                let publish = Publish::build()
                    .payload(m.payload.clone())
                    .message_id(&m.id);
                let ack = pub_js.send_publish(m.subject.clone(), publish).await?;
                let _ = ack_tx.send(ack.into_future());
            }
            next = end;
        }
        drop(ack_tx);
        acker.await??;
        let publish_secs = started.elapsed().as_secs_f64();
        let procedure_hist = watchers.pop().expect("three watchers").await?;
        let hist = watchers.pop().expect("three watchers").await?;
        let committed_hist = watchers.pop().expect("three watchers").await?;
        let cpu = cpu_secs("self") - cpu0;

        // Baseline: the bare NATS round trip at the same rate (core publish → subscriber).
        let (a, _) = connect().await?;
        let (b, _) = connect().await?;
        let mut sub = b.subscribe("bench.roundtrip").await?;
        b.flush().await?;
        let n_rt = (rate_per_s * 2) as usize;
        let probe = tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            for _ in 0..n_rt {
                let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), sub.next()).await
                else {
                    break;
                };
                let sent: u128 = std::str::from_utf8(&msg.payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros())
                    .unwrap_or(0);
                hist.record(now.saturating_sub(sent) as u64).ok();
            }
            hist
        });
        let mut sent = 0;
        while sent < n_rt {
            tick.tick().await;
            for _ in 0..per_tick.min(n_rt - sent) {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)?
                    .as_micros();
                a.publish("bench.roundtrip", now.to_string().into()).await?;
                sent += 1;
            }
            a.flush().await?;
        }
        let bare = probe.await?;

        let _ = stop_tx.send(true);
        writer.await??;
        worker.await??;
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        row(
            "freshness p50, national (publish → value)",
            format!("{:.1} ms", ms(&hist, 0.5)),
            &format!("{:.2} ms", ms(&bare, 0.5)),
            None,
            "",
        );
        row(
            "freshness p99, national",
            format!("{:.1} ms", ms(&hist, 0.99)),
            &format!("{:.2} ms", ms(&bare, 0.99)),
            None,
            "p99 <= 250 ms",
        );
        row(
            "of which publish → COMMITTED p50/p99",
            format!(
                "{:.0}/{:.0} ms",
                ms(&committed_hist, 0.5),
                ms(&committed_hist, 0.99)
            ),
            "",
            None,
            "the ledger's part",
        );
        row(
            "freshness p50/p99, procedure scopes",
            format!(
                "{:.0}/{:.0} ms",
                ms(&procedure_hist, 0.5),
                ms(&procedure_hist, 0.99)
            ),
            "",
            None,
            "the last scopes of each flush",
        );
        row(
            "freshness max",
            format!("{:.1} ms", ms(&hist, 1.0)),
            &format!("{:.2} ms", ms(&bare, 1.0)),
            None,
            &format!("{} of {measured} events seen", hist.len()),
        );
        row(
            "publishing rate achieved",
            per_s(rate(measured as u64, publish_secs)),
            &per_s(rate_per_s as f64),
            None,
            "",
        );
        row(
            "values stored in KV, per second",
            per_s(rate(pcounters.values.load(Relaxed), publish_secs)),
            "",
            None,
            &format!("{} flushes", pcounters.flushes.load(Relaxed)),
        );
        row(
            "CPU of this process (all parts)",
            format!("{:.0} %", 100.0 * cpu / publish_secs),
            "",
            None,
            "publisher + ledger + projector",
        );
        anyhow::Ok(())
    })
}
