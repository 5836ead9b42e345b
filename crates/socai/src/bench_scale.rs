//! `socai bench scale`: the national-year scale run (not in CI; see docs/BENCHMARKS.md).
//!
//! 1. A fold of `--dossiers` simulated dossiers by one projection, entries streamed straight from
//!    the simulator (not stored): rate and resident memory as it grows (first, so that the
//!    ledger's sled cache does not blur the memory figures).
//! 2. A ledger of `--entries` simulated events built with the writer (batches of 1000, an fsync
//!    per batch; the simulator's events are valid, so validation is left out), with restart to
//!    ready measured half-way and at the end (the append rate leaves the restart out), then a
//!    full `verify`, proof latency and disk use at that size.

use crate::bench::{header, per_s, rate, row};
use crate::bench_report::{record_point, rss_now_mib};
use anyhow::Context;
use hdrhistogram::Histogram;
use rand_core::{RngCore, SeedableRng};
use socai_store::{DataDir, LedgerConfig, Storage, VerifyOptions, verify_ledger};
use std::path::Path;
use std::time::Instant;

const BATCH: usize = 1000;

pub fn run(entries: u64, dossiers: u64, per_year: u64, dir: Option<&Path>) -> anyhow::Result<()> {
    let root = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let tmp = tempfile::Builder::new()
        .prefix("socai-bench-scale-")
        .tempdir_in(&root)
        .with_context(|| format!("creating a scratch dir in {}", root.display()))?;
    println!(
        "socai bench scale: a ledger of {entries} simulated events (batches of {BATCH}, fsync per batch, in {}), then {dossiers} simulated dossiers folded by one projection (entries streamed from the simulator)",
        tmp.path().display()
    );
    header();
    if dossiers > 0 {
        fold_part(dossiers, per_year)?;
    }
    if entries > 0 {
        ledger_part(entries, tmp.path())?;
    }
    Ok(())
}

/// Opens the ledger and reports how long it took to be ready to append.
fn timed_open(
    data: &DataDir,
    at: u64,
) -> anyhow::Result<socai_store::Ledger<socai_store::SledStorage>> {
    let t = Instant::now();
    let ledger = data.open_ledger(LedgerConfig::default())?;
    let secs = t.elapsed().as_secs_f64();
    // Ready to append; the new-id filter then fills in the background (appends read the id
    // index until it is full).
    row(
        &format!("restart to ready at {at} entries"),
        format!("{:.3} s", secs),
        "",
        None,
        "<= 1 s at 10M",
    );
    Ok(ledger)
}

fn ledger_part(entries: u64, dir: &Path) -> anyhow::Result<()> {
    let data = DataDir::new(dir.join("ledger"));
    data.init("bench.socai/scale")?;
    let mut ledger = data.open_ledger(LedgerConfig::default())?;
    let bar = crate::output::progress(entries, "append");
    let mut generator = socai_sim::Generator::new(socai_sim::SimConfig::default());
    let (started, mut appended, mut reopened) = (Instant::now(), 0u64, false);
    // The half-way restart is measured on its own, not in the append rate.
    let mut restart_secs = 0.0;
    let mut last = (0.0f64, 0u64);
    while appended < entries {
        let batch: Vec<_> = generator
            .by_ref()
            .take((entries - appended).min(BATCH as u64) as usize)
            .collect();
        anyhow::ensure!(!batch.is_empty(), "the simulator ran dry");
        appended += batch.len() as u64;
        // Recorded after every simulated event, so a projection over this ledger counts them all.
        ledger.append_batch(&batch, "2099-01-01T00:00:00.000Z")?;
        bar.set_position(appended);
        let t = started.elapsed().as_secs_f64() - restart_secs;
        if t - last.0 >= 5.0 {
            record_point(
                "scale: append rate",
                t,
                (appended - last.1) as f64 / (t - last.0),
            );
            last = (t, appended);
        }
        if !reopened && appended >= entries / 2 {
            let paused = Instant::now();
            ledger.checkpoint()?;
            drop(ledger);
            ledger = timed_open(&data, appended)?;
            restart_secs += paused.elapsed().as_secs_f64();
            reopened = true;
        }
    }
    ledger.checkpoint()?;
    let append_secs = started.elapsed().as_secs_f64() - restart_secs;
    bar.finish_and_clear();
    row(
        "append, 1 thread (events/s)",
        per_s(rate(entries, append_secs)),
        "",
        None,
        &format!("{entries} entries in {append_secs:.0} s, the restart left out"),
    );
    drop(ledger);
    let ledger = timed_open(&data, entries)?;

    // Verify, everything (as `socai verify` does).
    let started = Instant::now();
    let report = verify_ledger(
        ledger.storage(),
        ledger.verifier(),
        &VerifyOptions::default(),
        &|_| {},
    )?;
    let verify_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.entries == entries,
        "verify saw {} entries",
        report.entries
    );
    row(
        "verify, all checks (entries/s)",
        per_s(rate(entries, verify_secs)),
        "",
        None,
        ">= 1M/s",
    );

    // Proofs at this size.
    let size = ledger.head().size;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut incl, mut cons) = (Histogram::<u64>::new(3)?, Histogram::<u64>::new(3)?);
    for _ in 0..10_000 {
        let seq = rng.next_u64() % size;
        let t = Instant::now();
        ledger.inclusion_proof(seq, None)?;
        incl.record(t.elapsed().as_nanos() as u64)?;
        let old = 1 + rng.next_u64() % size;
        let t = Instant::now();
        ledger.consistency_proof(old, None)?;
        cons.record(t.elapsed().as_nanos() as u64)?;
    }
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    for (name, h) in [("inclusion", &incl), ("consistency", &cons)] {
        row(
            &format!("{name} proof p50/p99 at {size}"),
            format!("{:.1}/{:.1} µs", us(h, 0.5), us(h, 0.99)),
            "",
            None,
            "p99 <= 1000 µs",
        );
    }
    let disk = ledger.storage().size_on_disk()?;
    row(
        "disk per entry",
        format!("{:.0} B", disk as f64 / entries as f64),
        "",
        None,
        &format!("{:.1} GB in all", disk as f64 / 1e9),
    );
    Ok(())
}

/// Dossiers a year the simulator files at `SimConfig::scale` 1 (measured: 1M dossiers from
/// 2026-01-05 to 2027-11-10).
const SIM_DOSSIERS_PER_YEAR: u64 = 540_000;

fn fold_part(dossiers: u64, per_year: u64) -> anyhow::Result<()> {
    use socai_chain::{Entry, Hash};
    let bar = crate::output::progress(dossiers, "fold");
    let mut projection = socai_metrics::Projection::untracked();
    let scale = per_year
        .div_ceil(SIM_DOSSIERS_PER_YEAR)
        .clamp(1, u64::from(u32::MAX)) as u32;
    let mut generator = socai_sim::Generator::new(socai_sim::SimConfig {
        scale,
        ..socai_sim::SimConfig::default()
    });
    let rss_start = rss_now_mib().unwrap_or(0.0);
    let started = Instant::now();
    let (mut seq, mut next_mark) = (0u64, 1_000_000u64);
    let mut first_at = None;
    let mut marks = Vec::new();
    while (projection.dossiers() as u64) < dossiers {
        let event = generator.next().context("the simulator ran dry")?;
        let public = socai_store::ledger::public_canonical(&event);
        // Recorded long after the events, so that none is "from the future".
        if first_at.is_none() && event.event_type.starts_with("dossier.") {
            first_at = socai_metrics::parse_timestamp(&event.occurred_at).ok();
        }
        let entry = Entry::encode(seq, &Hash::ZERO, "2099-01-01T00:00:00Z", &public, None);
        projection.apply(seq, &entry)?;
        seq += 1;
        let folded = projection.dossiers() as u64;
        if folded >= next_mark {
            let rss = rss_now_mib().unwrap_or(0.0) - rss_start;
            let t = started.elapsed().as_secs_f64();
            record_point("memory: scale fold, resident growth", folded as f64, rss);
            marks.push((next_mark, seq, t, rss));
            next_mark += 1_000_000;
            bar.set_position(folded);
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let rss = rss_now_mib().unwrap_or(0.0) - rss_start;
    let folded = projection.dossiers() as u64;
    row(
        "fold from the simulator (events/s)",
        per_s(rate(seq, secs)),
        "",
        None,
        &format!(
            "{seq} events, {folded} dossiers, one core (generate + encode + fold); event days {} to {} (the simulator at {scale} × its base rate, {per_year} dossiers a year)",
            socai_metrics::Day::of(first_at.unwrap_or_default()),
            projection.now().map(|d| d.to_string()).unwrap_or_default()
        ),
    );
    for &(at, events, t, mib) in marks
        .iter()
        .filter(|m| m.0 % 10_000_000 == 0 || Some(m.0) == marks.last().map(|l| l.0))
    {
        row(
            &format!("resident growth at {at} dossiers"),
            format!("{mib:.0} MiB"),
            "",
            None,
            &format!(
                "{:.0} B per dossier; {events} events in {t:.0} s",
                mib * 1048576.0 / at as f64
            ),
        );
    }
    crate::bench::dossier_memory_rows(&projection.dossier_memory());
    let anomalies = projection.anomalies();
    // (Every value of a year at once would be tens of millions: a worker publishes changes.)
    println!("fold: {folded} dossiers, {rss:.0} MiB above the start; anomalies: {anomalies:?}");
    Ok(())
}
