//! `socai project` (a projection worker), `socai metrics` (read or compute values) and
//! `socai audit metrics` (recompute at a tree size and compare with what was published).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use socai_metrics::{Detail, Filter, Metric, MetricValue, Projection};
use socai_projector::{
    self as projector, ProjectorConfig, ProjectorCounters, Published, WorkerMark,
};
use socai_store::{Ledger, SledStorage, Storage};

use super::nats::{nats_config, runtime};
use crate::cli::Global;
use crate::output::{EXIT_VERIFY, Exit, emit, progress};

/// Folds entries `[0, size)` of the ledger, with a progress bar on a terminal.
pub fn rebuild(ledger: &Ledger<SledStorage>, size: u64) -> anyhow::Result<Projection> {
    rebuild_with(ledger, size, &mut |_| {})
}

/// [`rebuild`], calling `on_progress` with the projection every 8192 entries.
pub fn rebuild_with(
    ledger: &Ledger<SledStorage>,
    size: u64,
    on_progress: &mut dyn FnMut(&Projection),
) -> anyhow::Result<Projection> {
    let bar = progress(size, "metrics");
    let mut projection = Projection::untracked();
    // Both cores: two readers take turns, chunk by chunk, at reading and decoding entries (each
    // entry is decoded once, by its reader) while this thread folds the chunks in seq order. The
    // three threads share two cores, so whichever side is slower gets more of them.
    const CHUNK: u64 = 2048;
    const READERS: u64 = 2;
    /// A chunk's entries, decoded; with the error that ended it early, if one did.
    type Chunk = (Vec<socai_metrics::Decoded<'static>>, Option<anyhow::Error>);
    let read_chunk = |from: u64| -> Chunk {
        let to = (from + CHUNK).min(size);
        let mut chunk = Vec::with_capacity((to - from) as usize);
        for item in ledger.storage().entries(from, to) {
            let decoded = item.context("reading the ledger").and_then(|(seq, entry)| {
                Ok(socai_metrics::Decoded::decode(seq, &entry)?.into_owned())
            });
            match decoded {
                Ok(d) => chunk.push(d),
                Err(e) => return (chunk, Some(e)),
            }
        }
        (chunk, None)
    };
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut readers = Vec::new();
        for first in 0..READERS {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(2);
            let read_chunk = &read_chunk;
            s.spawn(move || {
                for from in (first * CHUNK..size).step_by((READERS * CHUNK) as usize) {
                    let chunk = read_chunk(from);
                    let failed = chunk.1.is_some();
                    if tx.send(chunk).is_err() || failed {
                        return; // the fold stopped, or this reader did
                    }
                }
            });
            readers.push(rx);
        }
        // Chunk k comes from reader k mod READERS; a reader that stopped closes its channel.
        for rx in readers.iter().cycle() {
            let Ok((chunk, error)) = rx.recv() else { break };
            for decoded in chunk {
                let seq = decoded.seq();
                projection.apply_decoded(decoded)?;
                if seq % 8192 == 0 {
                    bar.set_position(seq);
                    on_progress(&projection);
                }
            }
            if let Some(e) = error {
                return Err(e);
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    // A reader stops early only on an error, which the fold returned above.
    anyhow::ensure!(
        projection.tree_size() == size,
        "the ledger gave {} of its {size} entries; run `socai verify`",
        projection.tree_size()
    );
    Ok(projection)
}

/// `--shard INDEX/COUNT`.
fn parse_shard(text: &str) -> anyhow::Result<(u32, u32)> {
    let parsed = text
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<u32>().ok()?, n.parse::<u32>().ok()?)));
    match parsed {
        Some((i, n)) if n >= 1 && i < n => Ok((i, n)),
        _ => anyhow::bail!(
            "--shard {text:?}: expected INDEX/COUNT with INDEX < COUNT, e.g. 0/2 and 1/2 for two workers"
        ),
    }
}

pub fn project(
    g: &Global,
    name: &str,
    shard: &str,
    for_seconds: Option<u64>,
) -> anyhow::Result<()> {
    let (shard_index, shard_count) = parse_shard(shard)?;
    anyhow::ensure!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "--name {name:?}: use letters, digits, - and _ (it names a KV key and a file)"
    );
    let config = crate::config::Config::load(&g.data_dir)?;
    let mut worker = ProjectorConfig::new(name, &g.data_dir.join("metrics"));
    worker.shard_index = shard_index;
    worker.shard_count = shard_count;
    worker.flush_interval = Duration::from_millis(config.metrics.flush_interval_ms);
    worker.kv_interval = Duration::from_millis(config.metrics.kv_interval_ms);
    worker.snapshot_interval = Duration::from_secs(config.metrics.snapshot_interval_s);
    let mut nats = nats_config(g, &format!("socai-{name}"));
    nats.retry_initial_connect = true;
    let counters = Arc::new(ProjectorCounters::default());
    runtime()?.block_on(async {
        let shutdown = super::nats::shutdown_signal(for_seconds.map(Duration::from_secs))?;
        let mut shutdown = Box::pin(shutdown);
        let (client, _errors) = socai_client::publisher::connect(&nats).await?;
        // A second connection for the live values, so they never queue behind KV writes.
        let (live, _) = socai_client::publisher::connect(&nats).await?;
        // Workers run in an account without JetStream: the ledger's API under its prefix
        // (known once nats-server answers).
        let js = tokio::select! {
            js = socai_client::jetstream(client) => js,
            _ = &mut shutdown => return Ok(()),
        };
        let stats = tokio::spawn(log_stats(counters.clone()));
        let result = projector::run(js, live, worker, counters.clone(), shutdown).await;
        stats.abort();
        result.map_err(anyhow::Error::from)
    })?;
    emit(
        &json!({
            "applied": counters.applied.load(Relaxed),
            "published_size": counters.published_size.load(Relaxed),
            "values": counters.values.load(Relaxed),
        }),
        || {
            format!(
                "stopped: {} entries applied, values published up to tree size {} ({} values this run)",
                counters.applied.load(Relaxed),
                counters.published_size.load(Relaxed),
                counters.values.load(Relaxed)
            )
        },
    );
    Ok(())
}

async fn log_stats(c: Arc<ProjectorCounters>) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let applied = c.applied.load(Relaxed);
        if applied != last {
            tracing::info!(
                applied,
                applied_per_s = (applied - last) / 10,
                published_size = c.published_size.load(Relaxed),
                values = c.values.load(Relaxed),
                "projector"
            );
            last = applied;
        }
    }
}

/// What `socai metrics` shows (`--window` defaults to rolling30).
pub fn parse_filter(
    metrics: &[String],
    scope: Option<&str>,
    window: Option<&str>,
) -> anyhow::Result<Filter> {
    Filter::parse(metrics, scope, window, "rolling30").map_err(|e| anyhow::anyhow!("--{e}"))
}

/// The query of `GET /v1/metrics` for `filter`.
fn api_query(filter: &Filter) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if !filter.metrics.is_empty() {
        let names: Vec<&str> = filter.metrics.iter().map(|m| m.name()).collect();
        query.push(("metric", names.join(",")));
    }
    match &filter.scope {
        Some((kind, Some(code))) => query.push(("scope", format!("{}:{code}", kind.as_str()))),
        Some((kind, None)) => query.push(("scope", kind.as_str().to_owned())),
        None => {}
    }
    if let Some(window) = &filter.window {
        query.push(("window", window.clone()));
    }
    query
}

pub fn show(g: &Global, filter: &Filter) -> anyhow::Result<()> {
    let remote = super::remote::Remote::from(g)?;
    let (values, source) = match (&g.nats, remote) {
        (_, Some(remote)) => {
            let answer = remote.get_json(&["v1", "metrics"], &api_query(filter))?;
            let values: Vec<MetricValue> = serde_json::from_value(answer["values"].clone())
                .context("the API's /v1/metrics did not answer metric values")?;
            (
                values.into_iter().filter(|v| !v.is_no_data()).collect(),
                "published (the running ledger's /v1/metrics)".to_owned(),
            )
        }
        (Some(_), None) => {
            let nats = nats_config(g, "socai-metrics");
            let published = runtime()?.block_on(async {
                let (client, _errors) = socai_client::publisher::connect(&nats).await?;
                let js = socai_client::jetstream(client).await;
                anyhow::Ok(projector::read_published(&js, false, &filter.key_filter()).await?)
            })?;
            let values: Vec<MetricValue> = published
                .into_iter()
                .filter_map(|(_, p)| match p {
                    Published::Value(v) if !v.is_no_data() => Some(v),
                    _ => None,
                })
                .collect();
            (
                values,
                format!("published in {} (KV)", socai_wire::kv::METRICS_BUCKET),
            )
        }
        (None, None) => {
            let (ledger, _) = super::open_ledger(g)?;
            let size = ledger.head().size;
            let projection = rebuild(&ledger, size)?;
            let root = ledger.root().to_hex();
            (
                projection.values(&root),
                format!("computed from the ledger at tree size {size}"),
            )
        }
    };
    let mut shown: Vec<&MetricValue> = values.iter().filter(|v| filter.matches(v)).collect();
    shown.sort_by(|a, b| a.display_order().cmp(&b.display_order()));
    if crate::output::json_mode() {
        println!("{}", serde_json::to_string(&shown)?);
        return Ok(());
    }
    let mut rows = vec![[
        "METRIC".to_string(),
        "SCOPE".into(),
        "WINDOW".into(),
        "FROM..TO".into(),
        "VALUE".into(),
        "NUMERATOR/DENOMINATOR".into(),
        "TREE SIZE".into(),
    ]];
    for v in &shown {
        rows.push([
            v.metric.name().into(),
            scope_label(&v.scope),
            v.window.id.clone(),
            format!("{}..{}", v.window.from, v.window.to),
            format_value(v),
            match v.denominator {
                Some(d) => format!("{}/{}", v.numerator, d),
                None => v.numerator.to_string(),
            },
            v.tree_size.to_string(),
        ]);
    }
    print_table(&rows);
    println!(
        "{} values ({source}); filter with --metric, --scope, --window (default rolling30; `all` for every window)",
        shown.len()
    );
    Ok(())
}

/// A scope with its unit's name beside its code (`province:H05 Tuyên Quang`, `agency:000.01.01.H01
/// Phường Ba Đình`), from the administrative units file; the code alone when it names no unit.
fn scope_label(scope: &socai_metrics::Scope) -> String {
    use socai_metrics::ScopeKind;
    match scope.kind {
        ScopeKind::Province | ScopeKind::Agency => {
            match socai_metrics::units().name_of_scope(scope) {
                Some((name, _)) => format!("{scope} {name}"),
                None => scope.to_string(),
            }
        }
        ScopeKind::National | ScopeKind::Procedure => scope.to_string(),
    }
}

fn format_value(v: &MetricValue) -> String {
    let Some(value) = v.value else {
        return "no data".into();
    };
    match (&v.detail, v.metric) {
        (
            Some(Detail::ResolutionTime {
                p50_minutes,
                p90_minutes,
                ..
            }),
            _,
        ) => format!(
            "mean {} (p50 {}, p90 {})",
            duration(value),
            duration(*p50_minutes as f64),
            duration(*p90_minutes as f64)
        ),
        (
            Some(Detail::Score {
                points, max_points, ..
            }),
            _,
        ) => {
            format!("{value:.1}/100 ({points:.2} of {max_points} points)")
        }
        (_, Metric::Backlog) => format!("{value}"),
        _ => format!("{:.1}%", value * 100.0),
    }
}

fn duration(minutes: f64) -> String {
    let m = minutes.round() as u64;
    match m {
        m if m >= 1440 => format!("{}d {}h", m / 1440, m % 1440 / 60),
        m if m >= 60 => format!("{}h {}m", m / 60, m % 60),
        m => format!("{m}m"),
    }
}

fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    print!("{out}");
}

/// One published value that does not match the recomputation.
#[derive(serde::Serialize)]
struct Difference {
    key: String,
    problem: &'static str,
    published: Option<MetricValue>,
    recomputed: Option<MetricValue>,
}

pub fn audit(g: &Global, at: Option<u64>) -> anyhow::Result<()> {
    anyhow::ensure!(
        g.nats.is_some(),
        "audit metrics compares the published values with the ledger: give --nats URL (and a user allowed to read the {} bucket, e.g. dashboard)",
        socai_wire::kv::METRICS_BUCKET
    );
    let nats = nats_config(g, "socai-audit");
    let published = runtime()?.block_on(async {
        let (client, _errors) = socai_client::publisher::connect(&nats).await?;
        let js = socai_client::jetstream(client).await;
        anyhow::Ok(projector::read_published(&js, true, ">").await?)
    })?;
    let mut marks: Vec<WorkerMark> = Vec::new();
    let mut revisions: Vec<(String, MetricValue)> = Vec::new();
    for (key, p) in published {
        match p {
            Published::Mark(m) => marks.push(m),
            Published::Value(v) => revisions.push((key, v)),
        }
    }
    anyhow::ensure!(
        !marks.is_empty() || !revisions.is_empty(),
        "the {} bucket holds no values yet: is a projection worker (`socai project`) running?",
        socai_wire::kv::METRICS_BUCKET
    );
    let remote = super::remote::Remote::from(g)?;
    let local = match &remote {
        Some(_) => None,
        None => Some(super::open_ledger(g)?.0),
    };
    let head = match (&local, &remote) {
        (Some(ledger), _) => ledger.head().size,
        (None, Some(remote)) => remote.size()?,
        (None, None) => unreachable!("one of the two is open"),
    };
    let at = match at {
        Some(at) => at,
        None => marks.iter().map(|m| m.tree_size).max().unwrap_or(0),
    };
    if at > head {
        return Err(Exit::error(
            EXIT_VERIFY,
            "ledger_behind",
            format!(
                "values were published at tree size {at}, but this ledger holds {head} entries: audit with a data dir that has caught up (or --at {head} or less)"
            ),
        ));
    }
    // The ledger's roots at every size a value or mark claims, and the fold up to `at`: from the
    // store, or from the running ledger's entries (--api).
    let claimed_sizes: Vec<u64> = revisions
        .iter()
        .map(|(_, v)| v.tree_size)
        .chain(marks.iter().map(|m| m.tree_size))
        .chain(std::iter::once(at))
        .filter(|s| *s <= head)
        .collect();
    let (projection, roots) = match (&local, &remote) {
        (Some(ledger), _) => {
            let mut roots = BTreeMap::new();
            for size in claimed_sizes {
                if let std::collections::btree_map::Entry::Vacant(slot) = roots.entry(size) {
                    slot.insert(ledger.tree_root(size)?.to_hex());
                }
            }
            (rebuild(ledger, at)?, roots)
        }
        (None, Some(remote)) => {
            let mut wanted: BTreeMap<u64, Option<socai_chain::Hash>> =
                claimed_sizes.iter().map(|s| (*s, None)).collect();
            let to = wanted.keys().next_back().copied().unwrap_or(at).max(at);
            let mut projection = Projection::untracked();
            remote.fold_entries(to, &mut wanted, &mut |seq, entry| {
                if seq < at {
                    projection.apply(seq, entry)?;
                }
                Ok(())
            })?;
            let roots = wanted
                .into_iter()
                .map(|(size, root)| {
                    root.map(|r| (size, r.to_hex()))
                        .with_context(|| format!("no root at size {size} from the running ledger"))
                })
                .collect::<anyhow::Result<BTreeMap<_, _>>>()?;
            (projection, roots)
        }
        (None, None) => unreachable!("one of the two is open"),
    };
    // Every root a value or mark claims must be this ledger's root at that size.
    let mut bad_roots = Vec::new();
    let claims = revisions
        .iter()
        .map(|(k, v)| (k.clone(), v.tree_size, v.root.clone()))
        .chain(marks.iter().map(|m| {
            (
                socai_wire::kv::worker_key(&m.worker),
                m.tree_size,
                m.root.clone(),
            )
        }));
    for (key, size, root) in claims {
        if size > head {
            continue;
        }
        let ours = roots.get(&size).cloned().unwrap_or_default();
        if ours != root {
            bad_roots.push(
                json!({"key": key, "tree_size": size, "published_root": root, "ledger_root": ours}),
            );
        }
    }
    let root = roots.get(&at).cloned().unwrap_or_default();
    let recomputed: BTreeMap<String, MetricValue> = projection
        .values(&root)
        .into_iter()
        .map(|v| (v.key(), v))
        .collect();
    // Workers that flushed exactly at `at`: everything they own must match there.
    let complete: Vec<&WorkerMark> = marks.iter().filter(|m| m.tree_size == at).collect();
    let owned = |v: &MetricValue| {
        complete
            .iter()
            .any(|m| projector::owns(m.shard_index, m.shard_count, &v.scope))
    };
    let mut image: BTreeMap<String, MetricValue> = BTreeMap::new();
    let mut exact = 0u64;
    for (key, v) in &revisions {
        if v.tree_size == at {
            exact += 1;
        }
        // The newest revision at or below `at` (a restarted worker may have stored older
        // sizes after newer ones).
        if v.tree_size <= at
            && (v.tree_size == at || owned(v))
            && image
                .get(key)
                .is_none_or(|old| old.tree_size <= v.tree_size)
        {
            image.insert(key.clone(), v.clone());
        }
    }
    let mut differences = Vec::new();
    let mut matched = 0u64;
    for (key, published) in &image {
        let ours = recomputed.get(key);
        let same = match ours {
            Some(ours) => published.same_figures(ours),
            None => published.is_no_data(),
        };
        if same {
            matched += 1;
        } else {
            differences.push(Difference {
                key: key.clone(),
                problem: if ours.is_some() {
                    "differs"
                } else {
                    "no such value"
                },
                published: Some(published.clone()),
                recomputed: ours.cloned(),
            });
        }
    }
    for (key, ours) in &recomputed {
        if owned(ours) && !image.contains_key(key) {
            differences.push(Difference {
                key: key.clone(),
                problem: "missing",
                published: None,
                recomputed: Some(ours.clone()),
            });
        }
    }
    let ok = differences.is_empty() && bad_roots.is_empty() && !image.is_empty();
    let mut workers: Vec<&str> = complete.iter().map(|m| m.worker.as_str()).collect();
    workers.sort_unstable();
    workers.dedup();
    emit(
        &json!({
            "ok": ok,
            "at": at,
            "root": root,
            "checked": image.len(),
            "matched": matched,
            "published_at_exactly_this_size": exact,
            "complete_for_workers": workers,
            "differences": differences,
            "bad_roots": bad_roots,
        }),
        || {
            let mut text = format!(
                "audit of metrics at tree size {at} (root {root}): {} published values checked, {matched} match the recomputation\n",
                image.len()
            );
            if workers.is_empty() {
                text.push_str(&format!(
                    "no worker flushed exactly at {at}: only the {exact} values published at that size were compared (workers' last flushes: {})\n",
                    marks.iter().map(|m| format!("{} at {}", m.worker, m.tree_size)).collect::<Vec<_>>().join(", ")
                ));
            } else {
                text.push_str(&format!(
                    "complete for worker(s) {}: every value they publish was compared, and none is missing\n",
                    workers.join(", ")
                ));
            }
            for d in differences.iter().take(20) {
                let show = |v: &Option<MetricValue>| match v {
                    Some(v) => format!(
                        "{}/{} = {}",
                        v.numerator,
                        v.denominator.map_or("-".into(), |d| d.to_string()),
                        format_value(v)
                    ),
                    None => "absent".into(),
                };
                text.push_str(&format!(
                    "  {}: {} (published {}, recomputed {})\n",
                    d.key,
                    d.problem,
                    show(&d.published),
                    show(&d.recomputed)
                ));
            }
            if differences.len() > 20 {
                text.push_str(&format!(
                    "  ... and {} more (--json lists all)\n",
                    differences.len() - 20
                ));
            }
            for r in &bad_roots {
                text.push_str(&format!("  root mismatch: {r}\n"));
            }
            text.push_str(if ok {
                "OK"
            } else {
                "FAILED: published metrics do not match this ledger"
            });
            text
        },
    );
    if !ok {
        return Err(Exit::error(
            EXIT_VERIFY,
            "metrics_differ",
            format!(
                "{} published values differ from the ledger, {} roots are not this ledger's, {} values checked",
                differences.len(),
                bad_roots.len(),
                image.len()
            ),
        ));
    }
    Ok(())
}
