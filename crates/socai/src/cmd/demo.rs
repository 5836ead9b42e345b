//! `socai demo`: the whole story on one machine, in a fresh data dir: a realistic workload is
//! imported, verified, proven, exported and verified offline, then personal data is redacted and
//! everything still verifies. (The NATS-fed demo replaces this once ingestion lands.)

use super::{audit, import};
use crate::cli::{Global, ProofKind};
use anyhow::Context;
use socai_store::DataDir;

fn step(title: &str) {
    println!("\n== {title}");
}

pub fn run(g: &Global, events: u64) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("socai-demo-")
        .tempdir()?
        .keep();
    let mut g = g.clone();
    g.data_dir = work.join("data");
    let dir = DataDir::new(&g.data_dir);
    let data = g.data_dir.display().to_string();

    step("1. init: a data dir with an Ed25519 checkpoint key and a salt key");
    super::init(&g, "demo.socai.vn/ledger")?;

    step(&format!(
        "2. simulate {events} realistic dossier events (63 provinces) and import them in two parts"
    ));
    let first = work.join("events-part1.jsonl");
    let second = work.join("events-part2.jsonl");
    let all = work.join("events.jsonl");
    super::simulate(events, socai_sim::SimConfig::default(), Some(&all))?;
    let text = std::fs::read_to_string(&all)?;
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines.len() * 4 / 5;
    std::fs::write(&first, lines[..cut].join("\n"))?;
    std::fs::write(&second, lines[cut..].join("\n"))?;
    import::run(&g, &first, None)?;
    let old_size = cut as u64;
    import::run(&g, &second, None)?;
    println!("re-importing part 2 is safe (same ids, same content → duplicates):");
    import::run(&g, &second, None)?;

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

    println!("\nthe demo data dir is {data}; try:");
    let dossier = sample["dossier"].as_str().unwrap_or_default();
    println!("  socai --data-dir {data} history {dossier}");
    println!("  socai --data-dir {data} show {id}");
    println!("  socai --data-dir {data} verify");
    Ok(())
}
