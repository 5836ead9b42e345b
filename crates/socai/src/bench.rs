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
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// One line of the figures table: our figure, the in-run baseline (if any), their ratio, the target.
pub(crate) fn row(figure: &str, socai: String, baseline: &str, ratio: Option<f64>, target: &str) {
    crate::bench_report::record_row(figure, &socai, baseline, ratio, target);
    let ratio = ratio.map(|r| format!("{r:.2}")).unwrap_or_default();
    println!("{figure:<40} {socai:>14} {baseline:>14} {ratio:>8}  {target}");
}

/// The head of the figures table.
pub(crate) fn header() {
    println!(
        "{:<40} {:>14} {:>14} {:>8}  target",
        "figure", "socai", "baseline", "ratio"
    );
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
    header();

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

    // 1b. baseline: the same records as plain sled batch inserts, in the straightforward layout
    // (entry bundles, partial bundles rewritten per batch; a key per entry for its id and one for
    // its dossier, the layout socai used before its indexes became runs), with an fsync per
    // batch; no validation, hashing, Merkle state, personal data or dedup reads.
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
    // Each side five times, each in turn first (verify, SHA, batched; SHA, batched, verify; ...),
    // and the median of each: one pass is ~0.2 s at 300k, a single one swung by ±10 % with what
    // else the machine did, and the first two verify passes after the append ran 5-20 % slower
    // than the rest (the slowest is shown too). (The read above is a single pass, for the
    // breakdown.)
    let trusted = ledger.verifier();
    // The third side, for information: the same entries' leaves hashed many at a time, as verify
    // hashes them.
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let mut leaves = Vec::with_capacity(refs.len());
    let (mut verify_runs, mut sha_runs, mut many_runs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..5 {
        for side in (0..3).map(|k| (round + k) % 3) {
            let started = Instant::now();
            if side == 2 {
                leaves.clear();
                for range in refs.chunks(VerifyOptions::default().chunk_entries.max(1)) {
                    socai_chain::hash::leaf_hashes(range, &mut leaves);
                }
                many_runs.push(started.elapsed().as_secs_f64());
                std::hint::black_box(&leaves);
            } else if side == 0 {
                let report = verify_ledger(
                    ledger.storage(),
                    trusted,
                    &VerifyOptions::default(),
                    &|_| {},
                )?;
                verify_runs.push(started.elapsed().as_secs_f64());
                anyhow::ensure!(
                    report.entries == n as u64,
                    "verify saw {} entries, expected {n}",
                    report.entries
                );
            } else {
                let mut acc = 0u8;
                for e in &entries {
                    acc ^= socai_chain::hash::sha256(e).0[0];
                }
                sha_runs.push(started.elapsed().as_secs_f64());
                std::hint::black_box(acc);
            }
        }
    }
    let median = |runs: &mut Vec<f64>| {
        runs.sort_by(f64::total_cmp);
        runs[runs.len() / 2]
    };
    let slowest = verify_runs.iter().copied().fold(0.0, f64::max);
    let (verify_secs, sha_secs) = (median(&mut verify_runs), median(&mut sha_runs));
    let many = rate(n as u64, median(&mut many_runs));
    let (v, s) = (rate(n as u64, verify_secs), rate(n as u64, sha_secs));
    row(
        "  read entries from sled, 1 core",
        per_s(rate(n as u64, read_secs)),
        "",
        None,
        "(part of verify)",
    );
    row(
        "  verify, slowest of 5 passes",
        per_s(rate(n as u64, slowest)),
        &per_s(s),
        Some(rate(n as u64, slowest) / s),
        "(part of verify)",
    );
    row(
        "verify (entries/s)",
        per_s(v),
        &per_s(s),
        Some(v / s),
        ">= 1M/s and >= 0.5x",
    );
    row(
        "  verify vs SHA-256 many at once, 1 core",
        per_s(v),
        &per_s(many),
        Some(v / many),
        "(informational: the batched hashing verify uses)",
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

/// PubAcks awaited at once by the publisher of every run.
const IN_FLIGHT: usize = 512;

/// What one run of `socai bench ingest` measured.
struct Measured {
    /// Publish start → every event committed (and, with receipts, answered).
    secs: f64,
    /// CPU seconds of this process (publisher + consumer/ledger) and of nats-server.
    cpu_self: f64,
    cpu_nats: f64,
    rss: Option<f64>,
    /// Commits (one fsync each).
    batches: u64,
    /// Publish → receipt, in µs (runs with receipts).
    receipt_latency: Option<Histogram<u64>>,
    summary: Option<socai_client::receipts::Summary>,
    /// The ledger's counters (socai runs).
    counters: Option<std::sync::Arc<socai_ingest::Counters>>,
    /// Seconds from the start to the last event's send, and the publisher's stalls.
    sent_secs: f64,
    sending: Sending,
}

/// When the publisher took the events (each just before sending it): the last one, and the
/// pauses of more than [`STALL`] between two.
#[derive(Debug, Clone, Copy, Default)]
struct Sending {
    last: Option<Instant>,
    stalls: u64,
    stalled_secs: f64,
}

/// A pause between two sends longer than this is counted as a publisher stall.
const STALL: std::time::Duration = std::time::Duration::from_millis(10);

impl Sending {
    /// Notes that the publisher takes an event now; returns now.
    fn take(sending: &std::sync::Mutex<Sending>) -> Instant {
        let now = Instant::now();
        let mut s = sending.lock().expect("never poisoned");
        if let Some(last) = s.last {
            let gap = now.duration_since(last);
            if gap > STALL {
                s.stalls += 1;
                s.stalled_secs += gap.as_secs_f64();
            }
        }
        s.last = Some(now);
        now
    }
}

/// How a socai run's publisher knows it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// `ReceiptPublisher`: every event waits for its receipt.
    Receipts,
    /// `Publisher::publish_all`: PubAcks only; the clock stops when the ledger committed all.
    PubAcks,
}

/// A nats-server of its own (fresh store dir), with JetStream's default sync or
/// `sync_interval: always`.
fn start_nats(
    binary: &Path,
    dir: &Path,
    sync_always: bool,
) -> anyhow::Result<socai_testkit::LocalNats> {
    use socai_testkit::{LocalNats, LocalNatsOptions};
    let config = if sync_always {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("nats-server.conf");
        let store = dir.join("jetstream").display().to_string();
        std::fs::write(
            &path,
            format!("jetstream {{\n  store_dir: {store:?}\n  sync_interval: always\n}}\n"),
        )?;
        Some(path)
    } else {
        None
    };
    LocalNats::start(LocalNatsOptions {
        binary: binary.to_path_buf(),
        dir: dir.to_path_buf(),
        config,
        ..Default::default()
    })
    .with_context(|| format!("starting nats-server in {}", dir.display()))
}

/// CPU seconds of this process and of `server` so far.
fn cpu_now(server: &socai_testkit::LocalNats) -> (f64, f64) {
    let nats = server
        .pid()
        .map(|p| cpu_secs(&p.to_string()))
        .unwrap_or(0.0);
    (cpu_secs("self"), nats)
}

/// The upper bounds of the buckets holding the `qs` quantiles of the ledger's commit latency
/// (validate + append + fsync of one batch), in seconds, read from its Prometheus histogram.
pub(crate) fn commit_quantiles(
    counters: &std::sync::Arc<socai_ingest::Counters>,
    qs: &[f64],
) -> Vec<f64> {
    let mut registry = prometheus_client::registry::Registry::default();
    socai_ingest::telemetry::register(counters, &mut registry);
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        return Vec::new();
    }
    // Cumulative counts: `socai_commit_latency_seconds_bucket{le="0.004"} 17`.
    let buckets: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("socai_commit_latency_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last().map(|b| b.1).unwrap_or(0);
    qs.iter()
        .map(|q| {
            let want = (q * total as f64).ceil() as u64;
            buckets
                .iter()
                .find(|b| b.1 >= want.max(1))
                .map(|b| b.0)
                .unwrap_or(f64::NAN)
        })
        .collect()
}

/// `socai bench ingest`: publish → committed (fsynced) through a real nats-server, runs of four
/// kinds on the same generated events, each with a fresh nats-server store and a fresh store:
/// 1. bare: the same bytes, publisher → JetStream → one consumer → sled, one fsync and one ack
///    per batch (AckPolicy::All, the batch's last message acked); default sync;
/// 2. socai with receipts (every event waits for its receipt), default sync;
///    1 and 2 run as `rounds` pairs, alternating which goes first; the pair of the median ratio
///    (the lower middle one for an even count) is the one reported;
/// 3. socai with PubAcks only, until the ledger committed everything, default sync;
/// 4. socai with receipts on `sync_interval: always`.
pub fn ingest(
    g: &crate::cli::Global,
    events: u64,
    nats_server: Option<&Path>,
    dir: Option<&Path>,
    rounds: usize,
) -> anyhow::Result<()> {
    use socai_client::publisher::Outgoing;
    let _ = g;
    let rounds = rounds.max(1);

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
    let agencies = messages
        .iter()
        .filter_map(|m| socai_wire::subject::parse_event_subject(&m.subject))
        .map(|(agency, _)| agency)
        .collect::<std::collections::HashSet<_>>()
        .len();
    let binary = socai_testkit::find_nats_server(nats_server)?;
    let batch = socai_ingest::WriterConfig::default().batch_max_events;
    let receipt_pending = socai_client::receipts::ReceiptOptions::default().max_pending;
    let ack_every = socai_client::receipts::ACK_EVERY;
    let pace = socai_client::receipts::PACE;
    println!(
        "socai bench ingest: {n} events from {agencies} agencies, {:.0} bytes/event; 1 publisher, {IN_FLIGHT} PubAcks in flight (with receipts: up to {receipt_pending} events awaiting theirs, receipts verified, a PubAck awaited only for each agency's first event, one in {ack_every} of each agency's and the {ack_every}th plain publish in a row, at most {pace} sends past the oldest PubAck awaited); batches of up to {batch}, fsync per batch; a fresh {} and a fresh store per run; {rounds} rounds of bare and receipts",
        bytes as f64 / n as f64,
        binary.display(),
    );
    let rt = crate::cmd::nats::runtime()?;

    // 1 and 2, `rounds` times, alternating which goes first: the bare pipeline and socai with
    // receipts, each on a fresh nats-server and store. This machine's speed drifts by a fifth
    // within minutes, so one pair of ~5 s runs says little; the pair of the median ratio (the
    // lower middle one for an even count) is the one reported, every pair is printed. Each
    // run's stores are removed as soon as it is measured.
    let mut backlog_bare = None;
    let mut pairs: Vec<(Measured, Measured)> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let suffix = if round == 0 {
            String::new()
        } else {
            format!("-{}", round + 1)
        };
        let bare_run = |backlog: bool| -> anyhow::Result<(Measured, Option<(f64, u64)>)> {
            eprintln!("1/4 bare pipeline (round {} of {rounds})...", round + 1);
            let server = start_nats(
                &binary,
                &tmp.path().join(format!("nats-bare{suffix}")),
                false,
            )?;
            let url = server.url();
            reset_peak_rss();
            let cpu0 = cpu_now(&server);
            let (secs, batches) = rt.block_on(bare_pipeline(
                &url,
                &messages,
                batch,
                &tmp.path().join(format!("bare{suffix}")),
            ))?;
            let cpu1 = cpu_now(&server);
            let rss = peak_rss_mib();
            // Its backlog catch-up, outside the measured window, on the same server.
            let caught_up = if backlog {
                Some(rt.block_on(async {
                    let (client, _) = socai_client::publisher::connect(
                        &socai_client::publisher::NatsConfig::new(&url),
                    )
                    .await?;
                    let js = async_nats::jetstream::new(client);
                    let stream = js.get_stream("BARE").await?;
                    let bar = crate::output::progress(n as u64, "bare backlog");
                    let backlog = bare_consume(
                        &stream,
                        "bare-backlog",
                        n,
                        batch,
                        &tmp.path().join("bare-backlog"),
                        &bar,
                    )
                    .await?;
                    bar.finish_and_clear();
                    anyhow::Ok(backlog)
                })?)
            } else {
                None
            };
            let measured = Measured {
                secs,
                cpu_self: cpu1.0 - cpu0.0,
                cpu_nats: cpu1.1 - cpu0.1,
                rss,
                batches,
                receipt_latency: None,
                summary: None,
                counters: None,
                sent_secs: 0.0,
                sending: Sending::default(),
            };
            drop(server);
            for dir in [
                format!("nats-bare{suffix}"),
                format!("bare{suffix}"),
                "bare-backlog".into(),
            ] {
                let _ = std::fs::remove_dir_all(tmp.path().join(dir));
            }
            Ok((measured, caught_up))
        };
        let socai_receipts = || -> anyhow::Result<Measured> {
            eprintln!(
                "2/4 socai, receipts, default sync (round {} of {rounds})...",
                round + 1
            );
            let (receipts, server) = socai_run(
                &rt,
                &binary,
                tmp.path(),
                &format!("receipts{suffix}"),
                &messages,
                Wait::Receipts,
                RunOpts {
                    sync_always: false,
                    chart: (round == 0).then_some("receipts (round 1)"),
                },
            )?;
            drop(server);
            for dir in ["nats-receipts", "ledger-receipts"] {
                let _ = std::fs::remove_dir_all(tmp.path().join(format!("{dir}{suffix}")));
            }
            Ok(receipts)
        };
        let (bare, receipts) = if round.is_multiple_of(2) {
            let (bare, caught_up) = bare_run(round == 0)?;
            backlog_bare = caught_up.or(backlog_bare);
            (bare, socai_receipts()?)
        } else {
            let receipts = socai_receipts()?;
            (bare_run(false)?.0, receipts)
        };
        pairs.push((bare, receipts));
    }
    // `bench all`'s chart shows the first pair (its receipts run is the one that recorded).
    let bare_rate = rate(n as u64, pairs[0].0.secs);
    for x in [0.0, pairs[0].0.secs] {
        crate::bench_report::record_point(
            "ingest rate: bare pipeline (round 1, its average)",
            x,
            bare_rate,
        );
    }
    let (backlog_bare_secs, backlog_bare_batches) =
        backlog_bare.expect("the first round measures the bare backlog");
    let ratio_of = |(bare, receipts): &(Measured, Measured)| bare.secs / receipts.secs;
    let round_ratios: Vec<f64> = pairs.iter().map(ratio_of).collect();
    let median = {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by(|&a, &b| round_ratios[a].total_cmp(&round_ratios[b]));
        order[(order.len() - 1) / 2]
    };
    let (bare, receipts) = pairs.swap_remove(median);

    eprintln!("3/4 socai, PubAcks only, default sync...");
    let (pubacks, server) = socai_run(
        &rt,
        &binary,
        tmp.path(),
        "pubacks",
        &messages,
        Wait::PubAcks,
        RunOpts {
            sync_always: false,
            chart: Some("pubacks"),
        },
    )?;
    // Backlog: EVENTS holds the N events; a new ledger (new store, COMMITTED and CHECKPOINTS
    // from scratch, as a new deployment) catches up with no publisher running.
    let (backlog_socai_secs, backlog_counters) = rt.block_on(socai_backlog(
        &server.url(),
        &tmp.path().join("ledger-backlog"),
        n as u64,
    ))?;
    drop(server);

    eprintln!("4/4 socai, receipts, sync_interval: always...");
    let (always, server) = socai_run(
        &rt,
        &binary,
        tmp.path(),
        "always",
        &messages,
        Wait::Receipts,
        RunOpts {
            sync_always: true,
            chart: Some("always"),
        },
    )?;
    drop(server);

    // The table.
    header();
    let r = |m: &Measured| rate(events, m.secs);
    row(
        "ingest end to end with receipts",
        per_s(r(&receipts)),
        &per_s(r(&bare)),
        Some(r(&receipts) / r(&bare)),
        ">= 0.8x bare",
    );
    if round_ratios.len() > 1 {
        let each: Vec<String> = round_ratios.iter().map(|x| format!("{x:.2}")).collect();
        row(
            &format!("  the {} rounds' ratios", round_ratios.len()),
            each.join(", "),
            "",
            None,
            &format!(
                "in run order, the 1st, 3rd, ... with the bare pipeline first; the bare and receipts figures above and below are of the median pair ({:.2}), but for the backlog rows' bare consumer (round 1's)",
                round_ratios[median]
            ),
        );
    }
    row(
        "receipts vs PubAck only (default sync)",
        per_s(r(&receipts)),
        &per_s(r(&pubacks)),
        Some(r(&receipts) / r(&pubacks)),
        ">= 0.8x",
    );
    row(
        "receipts on sync_interval: always",
        per_s(r(&always)),
        &per_s(r(&receipts)),
        Some(r(&always) / r(&receipts)),
        "beside receipts on default sync (informational)",
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
        "the ledger's own capacity, beside the bare consumer's",
    );
    let us = |secs: f64| secs * 1e6 / events as f64;
    let cpu_row = |figure: &str, socai: f64, bare: f64, note: &str| {
        row(
            figure,
            format!("{socai:.1} µs"),
            &format!("{bare:.1} µs"),
            Some(socai / bare),
            note,
        );
    };
    for (i, (name, m)) in [
        ("receipts", &receipts),
        ("PubAck only", &pubacks),
        ("always", &always),
    ]
    .into_iter()
    .enumerate()
    {
        cpu_row(
            &format!("  CPU/event, socai process: {name}"),
            us(m.cpu_self),
            us(bare.cpu_self),
            if i == 0 {
                "publisher + ledger share this process (bare: publisher + consumer)"
            } else {
                ""
            },
        );
    }
    for (name, m) in [
        ("receipts", &receipts),
        ("PubAck only", &pubacks),
        ("always", &always),
    ] {
        cpu_row(
            &format!("  CPU/event, nats-server: {name}"),
            us(m.cpu_nats),
            us(bare.cpu_nats),
            "",
        );
    }
    // What the CPU per event allows at most, were the machine's cores all the run's.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let bound = |m: &Measured| cores * 1e6 / (us(m.cpu_self) + us(m.cpu_nats)).max(1e-9);
    for (i, (name, m)) in [
        ("receipts", &receipts),
        ("PubAck only", &pubacks),
        ("always", &always),
    ]
    .into_iter()
    .enumerate()
    {
        row(
            &format!("  CPU ceiling: {name}"),
            per_s(bound(m)),
            &per_s(bound(&bare)),
            Some(bound(m) / bound(&bare)),
            &if i == 0 {
                format!("{cores} cores / CPU per event of both processes")
            } else {
                String::new()
            },
        );
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (name, m) in [("receipts", &receipts), ("always", &always)] {
        if let Some(h) = &m.receipt_latency {
            row(
                &format!("  publish → receipt p50/p99: {name}"),
                format!("{:.0}/{:.0} ms", ms(h, 0.5), ms(h, 0.99)),
                "",
                None,
                &format!("max {:.0} ms", ms(h, 1.0)),
            );
        }
    }
    for (name, m) in [
        ("receipts", &receipts),
        ("PubAck only", &pubacks),
        ("always", &always),
    ] {
        row(
            &format!("  last event sent at: {name}"),
            format!("{:.2} s", m.sent_secs),
            "",
            None,
            &format!(
                "of {:.2} s; {} pauses > {} ms between two sends, {:.2} s in all",
                m.secs,
                m.sending.stalls,
                STALL.as_millis(),
                m.sending.stalled_secs
            ),
        );
    }
    let commits = |name: &str,
                   c: &std::sync::Arc<socai_ingest::Counters>,
                   bare_batches: u64,
                   secs: f64| {
        let batches = c.batches.load(Relaxed).max(1);
        let q = commit_quantiles(c, &[0.5, 0.99]);
        row(
            &format!("  commits: {name}"),
            format!(
                "{batches} × {:.0} ev",
                c.committed.load(Relaxed) as f64 / batches as f64
            ),
            &format!(
                "{bare_batches} × {:.0} ev",
                events as f64 / bare_batches.max(1) as f64
            ),
            None,
            &format!(
                "validate+append+fsync mean {:.1} ms, p50 <= {:.0} ms, p99 <= {:.0} ms; {:.0}% of the run",
                c.commit_us.load(Relaxed) as f64 / batches as f64 / 1000.0,
                q.first().copied().unwrap_or(f64::NAN) * 1000.0,
                q.get(1).copied().unwrap_or(f64::NAN) * 1000.0,
                c.commit_us.load(Relaxed) as f64 / 1e6 / secs * 100.0,
            ),
        );
    };
    for (name, m) in [
        ("receipts", &receipts),
        ("PubAck only", &pubacks),
        ("always", &always),
    ] {
        if let Some(c) = &m.counters {
            commits(name, c, bare.batches, m.secs);
        }
    }
    commits(
        "backlog",
        &backlog_counters,
        backlog_bare_batches,
        backlog_socai_secs,
    );
    for (name, m) in [
        ("receipts", &receipts),
        ("PubAck only", &pubacks),
        ("always", &always),
    ] {
        row(
            &format!("peak RSS (whole process): {name}"),
            mib(m.rss),
            &mib(bare.rss),
            None,
            "bounded",
        );
    }
    for (name, m) in [
        ("receipts", &receipts),
        ("PubAck only", &pubacks),
        ("always", &always),
    ] {
        let Some(c) = &m.counters else { continue };
        let mut line = format!(
            "{name}: committed {} duplicates {} rejected {}; receipts sent {}",
            c.committed.load(Relaxed),
            c.duplicates.load(Relaxed),
            c.rejected.load(Relaxed),
            c.receipts.load(Relaxed),
        );
        if let Some(s) = &m.summary {
            line.push_str(&format!(
                "; publisher: {} receipts accepted, {} committed, {} duplicates, {} rejected, {} re-published, {} without receipt",
                s.receipts, s.committed, s.duplicates, s.rejected, s.republished, s.no_receipt
            ));
        }
        println!("{line}");
    }
    Ok(())
}

/// How a socai run is set up beside its publisher's wait.
#[derive(Debug, Clone, Copy)]
struct RunOpts {
    /// nats-server on `sync_interval: always` (an fsync per message), not its default.
    sync_always: bool,
    /// The name its commit rate has in `bench all`'s chart, if it goes there.
    chart: Option<&'static str>,
}

/// One socai run on a nats-server of its own: the real ledger (`socai_ingest::serve`) on a fresh
/// store and one publisher, waiting as `wait` says. Returns the figures and the server (still
/// running, with its streams).
fn socai_run(
    rt: &tokio::runtime::Runtime,
    binary: &Path,
    root: &Path,
    name: &str,
    messages: &[socai_client::publisher::Outgoing],
    wait: Wait,
    RunOpts { sync_always, chart }: RunOpts,
) -> anyhow::Result<(Measured, socai_testkit::LocalNats)> {
    use socai_client::publisher::{NatsConfig, Publisher};
    use socai_client::receipts::{Outcome, ReceiptOptions, Report};
    use std::sync::Arc;
    use std::time::Duration;

    let n = messages.len() as u64;
    let server = start_nats(binary, &root.join(format!("nats-{name}")), sync_always)?;
    let url = server.url();
    let data = socai_store::DataDir::new(root.join(format!("ledger-{name}")));
    data.init("bench.socai/ledger")?;
    let verifier = data.verifier()?;
    let ledger = data.open_ledger(LedgerConfig::default())?;
    let counters = Arc::new(socai_ingest::Counters::default());
    reset_peak_rss();
    let cpu0 = cpu_now(&server);
    let (secs, receipt_latency, summary, sent_secs, sending) = rt.block_on(async {
        let nats = NatsConfig::new(&url);
        let (client, _) = socai_client::publisher::connect(&nats).await?;
        let js = async_nats::jetstream::new(client);
        socai_ingest::ensure_streams(&js, &socai_ingest::StreamSettings::default()).await?;
        let publisher = Publisher::connect(&nats).await?;
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let bar = crate::output::progress(n, name);
        // The publisher runs as a task of its own on the runtime's workers, as the bare
        // pipeline's does, not on the thread that waits for the run.
        let owned: Vec<_> = messages.to_vec();
        let started = Instant::now();
        // For `bench all`'s chart: the commit rate every 250 ms.
        let sampler = chart.filter(|_| crate::bench_report::recording()).map(|label| {
            let (counters, series) = (counters.clone(), format!("ingest rate: socai, {label}"));
            tokio::spawn(async move {
                let mut last = (0.0f64, 0u64);
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let (t, c) = (started.elapsed().as_secs_f64(), counters.committed.load(Relaxed));
                    if t > last.0 + 0.1 {
                        let rate = c.saturating_sub(last.1) as f64 / (t - last.0);
                        crate::bench_report::record_point(&series, t, rate);
                        last = (t, c);
                    }
                }
            })
        });
        let mut writer = tokio::spawn(socai_ingest::serve(
            js,
            ledger,
            socai_ingest::WriterConfig::default(),
            counters.clone(),
            None,
            async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            },
            Duration::from_secs(30),
        ));
        let stopped = |r: Result<Result<(), socai_ingest::IngestError>, tokio::task::JoinError>| {
            anyhow::anyhow!(
                "the ledger stopped during the run: {}",
                match r {
                    Ok(Ok(())) => "without an error".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                }
            )
        };
        let mut latency = None;
        let mut summary = None;
        let sending = Arc::new(std::sync::Mutex::new(Sending::default()));
        match wait {
            Wait::Receipts => {
                let publisher = publisher.with_receipts(ReceiptOptions {
                    max_in_flight: IN_FLIGHT,
                    verifier: Some(verifier),
                    ..ReceiptOptions::default()
                });
                let (bar, sending) = (bar.clone(), sending.clone());
                let mut run = tokio::spawn(async move {
                    let mut hist = Histogram::<u64>::new(3).context("histogram")?;
                    let mut bad = 0u64;
                    // Each event's tag is the moment the publisher took it (just before sending).
                    let s = publisher
                        .publish_all(
                            owned.into_iter().map(|m| (m, Sending::take(&sending))),
                            |report| {
                                if let Report::Event(e) = report {
                                    hist.record(e.tag.elapsed().as_micros() as u64).ok();
                                    if !matches!(e.outcome, Outcome::Committed { .. }) {
                                        bad += 1;
                                    }
                                    bar.inc(1);
                                }
                            },
                        )
                        .await?;
                    anyhow::Ok((s, hist, bad))
                });
                let (s, hist, bad) = tokio::select! {
                    s = &mut run => s??,
                    r = &mut writer => {
                        run.abort();
                        return Err(stopped(r));
                    }
                };
                anyhow::ensure!(
                    bad == 0 && s.committed == n,
                    "{name}: {} of {n} events committed ({} duplicates, {} rejected, {} without receipt, {} not published)",
                    s.committed,
                    s.duplicates,
                    s.rejected,
                    s.no_receipt,
                    s.not_published
                );
                latency = Some(hist);
                summary = Some(s);
            }
            Wait::PubAcks => {
                let sending = sending.clone();
                let mut run = tokio::spawn(async move {
                    publisher
                        .publish_all(
                            owned.into_iter().inspect(|_| {
                                Sending::take(&sending);
                            }),
                            IN_FLIGHT,
                            |_| {},
                        )
                        .await
                });
                let failed = tokio::select! {
                    f = &mut run => f?,
                    r = &mut writer => {
                        run.abort();
                        return Err(stopped(r));
                    }
                };
                anyhow::ensure!(failed == 0, "{name}: {failed} publishes failed");
                bar.set_message(format!("{name} (commits)"));
                loop {
                    let committed = counters.committed.load(Relaxed);
                    bar.set_position(committed);
                    if committed >= n {
                        break;
                    }
                    if writer.is_finished() {
                        return Err(stopped((&mut writer).await));
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        if let Some(sampler) = sampler {
            sampler.abort();
        }
        bar.finish_and_clear();
        let _ = stop_tx.send(true);
        writer.await??;
        let sending = *sending.lock().expect("never poisoned");
        let sent_secs = sending
            .last
            .map(|l| l.duration_since(started).as_secs_f64())
            .unwrap_or(0.0);
        anyhow::Ok((secs, latency, summary, sent_secs, sending))
    })?;
    let cpu1 = cpu_now(&server);
    let rss = peak_rss_mib();
    anyhow::ensure!(
        counters.committed.load(Relaxed) == n,
        "{name}: the ledger committed {} of {n} events",
        counters.committed.load(Relaxed)
    );
    let measured = Measured {
        secs,
        cpu_self: cpu1.0 - cpu0.0,
        cpu_nats: cpu1.1 - cpu0.1,
        rss,
        batches: counters.batches.load(Relaxed),
        receipt_latency,
        summary,
        counters: Some(counters),
        sent_secs,
        sending,
    };
    Ok((measured, server))
}

/// A new ledger (new store; COMMITTED and CHECKPOINTS deleted, as for a new deployment) reads the
/// `n` events EVENTS already holds, with no publisher. Returns the seconds it took and the
/// ledger's counters.
async fn socai_backlog(
    url: &str,
    path: &Path,
    n: u64,
) -> anyhow::Result<(f64, std::sync::Arc<socai_ingest::Counters>)> {
    use std::sync::Arc;
    let (client, _) =
        socai_client::publisher::connect(&socai_client::publisher::NatsConfig::new(url)).await?;
    let js = async_nats::jetstream::new(client);
    js.delete_stream(socai_wire::stream::COMMITTED).await?;
    js.delete_stream(socai_wire::stream::CHECKPOINTS).await?;
    let data = socai_store::DataDir::new(path);
    data.init("bench.socai/ledger")?;
    let ledger = data.open_ledger(LedgerConfig::default())?;
    let mut config = socai_ingest::WriterConfig::default();
    config.streams.consumer = "ledger-backlog".into();
    let counters = Arc::new(socai_ingest::Counters::default());
    let done = counters.clone();
    let bar = crate::output::progress(n, "backlog");
    let progress = bar.clone();
    let finished = async move {
        loop {
            let committed = done.committed.load(Relaxed);
            progress.set_position(committed);
            if committed >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    let started = Instant::now();
    socai_ingest::serve(
        js,
        ledger,
        config,
        counters.clone(),
        None,
        finished,
        std::time::Duration::from_secs(30),
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    anyhow::ensure!(
        counters.committed.load(Relaxed) == n,
        "backlog: the ledger committed {} of {n} events",
        counters.committed.load(Relaxed)
    );
    Ok((secs, counters))
}

/// The bare pipeline: publish the same payloads to a plain stream while one consumer writes them
/// into sled (see [`bare_consume`]). Returns the seconds it took and the number of batches.
async fn bare_pipeline(
    url: &str,
    messages: &[socai_client::publisher::Outgoing],
    batch: usize,
    path: &Path,
) -> anyhow::Result<(f64, u64)> {
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
    let bar = crate::output::progress(total as u64, "bare");
    let started = Instant::now();
    let publish = tokio::spawn(async move {
        publisher
            .publish_all(bare_messages, IN_FLIGHT, |_| {})
            .await
    });
    // The consumer runs as a task of its own on the runtime's workers, as the ledger does in
    // the socai runs.
    let consume = {
        let (bare, path, bar) = (bare.clone(), path.to_owned(), bar.clone());
        tokio::spawn(async move { bare_consume(&bare, "bare", total, batch, &path, &bar).await })
    };
    let consumed = consume.await.map_err(anyhow::Error::from).and_then(|r| r);
    if consumed.is_err() {
        publish.abort();
    }
    let (_, batches) = consumed?;
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    anyhow::ensure!(publish.await? == 0, "bare publishes failed");
    Ok((secs, batches))
}

/// The bare consumer: `total` messages of `stream` through a new durable pull consumer `name`
/// (AckPolicy::All), each ready chunk (everything delivered, ≤ `batch`) written to a sled at `path` in one batch (keyed
/// by stream seq) + one fsync, then ONE ack, of the chunk's last message, which acks the whole
/// chunk. Returns the seconds it took and the number of batches.
async fn bare_consume(
    stream: &async_nats::jetstream::stream::Stream,
    name: &str,
    total: usize,
    batch: usize,
    path: &Path,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<(f64, u64)> {
    use async_nats::jetstream::consumer;
    use futures::StreamExt;
    let started = Instant::now();
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.into()),
            ack_policy: consumer::AckPolicy::All,
            // Room for the batch being written and the next ones already pulled.
            max_ack_pending: (batch * 20) as i64,
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
    let (mut done, mut batches) = (0, 0);
    while done < total {
        // Unconstrained: under tokio's cooperative budget a task's channel reads return
        // Pending after ~128 items, which would cap every chunk near 127 messages.
        let Some(chunk) = tokio::task::unconstrained(chunks.next()).await else {
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
        if let Some(last) = msgs.last() {
            last.ack().await.map_err(anyhow::Error::msg)?;
        }
        done += msgs.len();
        batches += 1;
        bar.inc(msgs.len() as u64);
    }
    Ok((started.elapsed().as_secs_f64(), batches))
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
        "socai bench metrics: rebuild from a {size}-entry ledger (34 provinces, simulated), then freshness at {rate_per_s} events/s for {seconds} s"
    );
    header();
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
    let rss_before = crate::bench_report::rss_now_mib();
    let projection = crate::cmd::metrics::rebuild_with(&ledger, size, &mut |p| {
        if let (Some(mib), Some(before)) = (crate::bench_report::rss_now_mib(), rss_before) {
            let grown = mib - before;
            crate::bench_report::record_point(
                "memory: the rebuild's growth",
                p.dossiers() as f64,
                grown,
            );
        }
    })?;
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
    dossier_memory_rows(&projection.dossier_memory());
    drop((projection, values));
    snapshot_rows(&ledger, size)?;
    drop(ledger);

    // 2. freshness.
    freshness(tmp.path(), rate_per_s, seconds, nats_server)
}

/// A worker's snapshot every 10 s at 5k events/s: the delta of the last 50k entries beside a
/// full snapshot of the state before them (what every snapshot cost before deltas).
fn snapshot_rows(
    ledger: &socai_store::Ledger<socai_store::SledStorage>,
    size: u64,
) -> anyhow::Result<()> {
    let tail = 50_000.min(size / 2);
    let mut p = socai_metrics::Projection::new();
    for item in ledger.storage().entries(0, size) {
        let (seq, entry) = item?;
        if seq == size - tail {
            let started = Instant::now();
            let full = p.take_snapshot();
            let full_secs = started.elapsed().as_secs_f64();
            let mut tail_entries = Vec::new();
            tail_entries.push((seq, entry));
            for item in ledger.storage().entries(seq + 1, size) {
                tail_entries.push(item?);
            }
            for (seq, entry) in &tail_entries {
                p.apply(*seq, entry)?;
            }
            let started = Instant::now();
            let delta = p.take_delta().context("the delta stopped recording")?;
            let delta_secs = started.elapsed().as_secs_f64();
            row(
                &format!("snapshot: delta of {tail} entries"),
                format!("{} KiB, {:.1} ms", delta.len() / 1024, delta_secs * 1e3),
                &format!("{} KiB, {:.1} ms", full.len() / 1024, full_secs * 1e3),
                Some(delta.len() as f64 / full.len() as f64),
                &format!(
                    "incremental; baseline: a full snapshot at {} entries ({} dossiers)",
                    size - tail,
                    p.dossiers()
                ),
            );
            return Ok(());
        }
        p.apply(seq, &entry)?;
    }
    Ok(())
}

/// What the dossiers of a fold take: per compacted (finished) dossier against the target, and
/// per open one.
pub fn dossier_memory_rows(m: &socai_metrics::DossierMemory) {
    let per = |bytes: u64, n: u64| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{:.1} B", bytes as f64 / n as f64)
        }
    };
    row(
        "memory per finished (compacted) dossier",
        per(m.compacted_bytes, m.compacted),
        "",
        None,
        &format!(
            "<= 64 B; {} compacted, {} taken back out by a late event",
            m.compacted, m.taken_back
        ),
    );
    row(
        "memory per open dossier",
        per(m.open_bytes, m.open),
        "",
        None,
        &format!(
            "{} open or finished within {} days",
            m.open,
            socai_metrics::COMPACT_AFTER_SECS / 86_400
        ),
    );
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
        communes_per_province: 2,
        ..Default::default()
    };
    let catalogue = socai_sim::catalogue_len(&config);
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
        let watch_start = Instant::now();
        for subject in [
            socai_wire::subject::COMMITTED_SUBJECT.to_owned(),
            socai_wire::subject::metrics_subject("*", "national"),
            socai_wire::subject::metrics_subject("*", "procedure.>"),
        ] {
            let (sub_client, _) = connect().await?;
            let mut values = sub_client.subscribe(subject.clone()).await?;
            sub_client.flush().await?;
            let sent_at = sent_at.clone();
            // For `bench all`'s chart: the worst latency each message resolved.
            let series = if subject.starts_with("dvc.metrics") {
                format!(
                    "freshness: {} values",
                    if subject.ends_with("national") {
                        "national"
                    } else {
                        "procedure"
                    }
                )
            } else {
                "freshness: COMMITTED (the ledger's part)".to_owned()
            };
            watchers.push(tokio::spawn(async move {
                #[derive(serde::Deserialize)]
                struct Sized {
                    tree_size: u64,
                }
                let _keep = sub_client;
                let mut hist = Histogram::<u64>::new(3).expect("histogram");
                let mut seen = catalogue as u64;
                let end = (catalogue + measured) as u64;
                let (mut worst, mut last_point) = (None::<u64>, f64::NEG_INFINITY);
                while seen < end {
                    let Ok(Some(msg)) =
                        tokio::time::timeout(Duration::from_secs(10), values.next()).await
                    else {
                        break;
                    };
                    let now = Instant::now();
                    // A COMMITTED message carries one commit's entries: its first seq and their
                    // count (tree size = seq + count; no count: one entry); values their size.
                    let headers = msg.headers.as_ref();
                    let size = match headers.and_then(|h| h.get(socai_wire::header::SEQ)) {
                        Some(seq) => {
                            let count = headers
                                .and_then(|h| h.get(socai_wire::header::COUNT))
                                .and_then(|c| c.as_str().parse::<u64>().ok())
                                .unwrap_or(1);
                            match seq.as_str().parse::<u64>() {
                                Ok(seq) => seq + count,
                                Err(_) => continue,
                            }
                        }
                        None => match serde_json::from_slice::<Sized>(&msg.payload) {
                            Ok(v) => v.tree_size,
                            Err(_) => continue,
                        },
                    };
                    let sent = sent_at.lock().expect("lock");
                    while seen < size.min(end) {
                        if let Some(t) = sent[seen as usize] {
                            let us = now.duration_since(t).as_micros() as u64;
                            hist.record(us).ok();
                            worst = worst.max(Some(us));
                        }
                        seen += 1;
                    }
                    drop(sent); // the publisher takes this lock too
                    // One point per 100 ms at most: the worst latency since the last one.
                    let at = now.duration_since(watch_start).as_secs_f64();
                    if let Some(us) = worst.filter(|_| at - last_point >= 0.1) {
                        crate::bench_report::record_point(&series, at, us as f64 / 1000.0);
                        (worst, last_point) = (None, at);
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
