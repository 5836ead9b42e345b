//! Prints what a stream looks like and how fast it is made:
//! `cargo run --release -p socai-sim --example sim_stats [events]`.

use std::collections::BTreeMap;
use std::time::Instant;

use socai_model::{Limits, Validator};
use socai_sim::{Generator, SimConfig};

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |n| n.parse().expect("a number of events"));
    let config = SimConfig::default();

    // Generation alone.
    let started = Instant::now();
    let mut generator = Generator::new(config.clone());
    let catalogue = generator.catalogue_len();
    let mut last = None;
    for event in generator.by_ref().take(count) {
        last = Some(event);
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "generate: {count} events in {elapsed:.2}s = {:.0} events/s",
        count as f64 / elapsed
    );
    println!(
        "open dossiers at the end: {}, turned away: {}",
        generator.open_dossiers(),
        generator.turned_away()
    );
    println!(
        "last event at {}",
        last.map(|e| e.occurred_at).unwrap_or_default()
    );

    // Serialization and the mix.
    let events: Vec<Vec<u8>> = Generator::new(config)
        .take(count)
        .map(|e| serde_json::to_vec(&e).unwrap())
        .collect();
    let bytes: usize = events.iter().map(Vec::len).sum();
    let lifecycle: usize = events[catalogue..].iter().map(Vec::len).sum();
    println!(
        "size: {:.0} bytes/event on average ({:.0} after the {catalogue}-event catalogue), max {}",
        bytes as f64 / count as f64,
        lifecycle as f64 / (count - catalogue) as f64,
        events.iter().map(Vec::len).max().unwrap_or(0)
    );
    let mut types: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut channels: BTreeMap<String, usize> = BTreeMap::new();
    let mut paid: BTreeMap<bool, usize> = BTreeMap::new();
    for bytes in &events {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        let t = types
            .entry(v["type"].as_str().unwrap().to_owned())
            .or_default();
        t.0 += 1;
        t.1 += bytes.len();
        if v["type"] == "dossier.submitted" {
            *channels
                .entry(v["data"]["channel"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        if v["type"] == "dossier.fee_paid" {
            *paid
                .entry(v["data"]["online"].as_bool().unwrap())
                .or_default() += 1;
        }
    }
    for (t, (n, b)) in &types {
        println!(
            "  {t:30} {n:8} {:5.1}%  {:4.0} bytes",
            *n as f64 * 100.0 / count as f64,
            *b as f64 / *n as f64
        );
    }
    let submitted: usize = channels.values().sum();
    for (c, n) in &channels {
        println!(
            "  channel {c:8} {:5.1}%",
            *n as f64 * 100.0 / submitted as f64
        );
    }
    let fees: usize = paid.values().sum();
    println!(
        "  fee paid online {:5.1}%",
        paid.get(&true).copied().unwrap_or(0) as f64 * 100.0 / fees.max(1) as f64
    );

    // Validation of the same bytes.
    let validator = Validator::new(Limits::default());
    let started = Instant::now();
    let mut valid = 0usize;
    for bytes in &events {
        valid += usize::from(validator.validate(bytes).is_ok());
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "validate: {valid}/{count} valid in {elapsed:.2}s = {:.0} events/s (one thread)",
        count as f64 / elapsed
    );

    // The same on two threads sharing one validator.
    let started = Instant::now();
    let (left, right) = events.split_at(events.len() / 2);
    let valid: usize = std::thread::scope(|scope| {
        let validator = &validator;
        let workers: Vec<_> = [left, right]
            .into_iter()
            .map(|half| {
                scope.spawn(move || {
                    half.iter()
                        .filter(|b| validator.validate(b).is_ok())
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "validate: {valid}/{count} valid in {elapsed:.2}s = {:.0} events/s (two threads)",
        count as f64 / elapsed
    );
}
