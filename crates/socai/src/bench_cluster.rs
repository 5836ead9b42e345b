//! `socai bench cluster` (issue 15): what JetStream replication costs and how fast the ledger
//! recovers from a lost node, in one run on this machine.
//!
//! 1. Ingest with receipts through one node (the shipped `single.conf`, streams R1) and through
//!    the shipped 3-node cluster on loopback (`cluster/node-{1,2,3}.conf`, authenticated routes,
//!    streams R3): the same events, a fresh store each, the ledger in this process. Rate, and
//!    the latency an agency sees (publish → its signed receipt) p50/p99, beside the ledger's own
//!    commit latency (validate + append + fsync of a batch).
//! 2. Failover on the cluster: a steady trickle of events (one every [`PROBE_EVERY`], each
//!    waiting for its receipt) while the node leading EVENTS is killed with SIGKILL, `--kills`
//!    times (restarted and caught up in between). Failover time = kill → the first receipt of an
//!    event published after the kill (the ledger committing new events again), p50/p99/max.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::json;
use socai_client::publisher::{NatsConfig, Outgoing, Publisher};
use socai_client::receipts::{Outcome, ReceiptOptions, ReceiptPublisher, Report};
use socai_testkit::{LocalNats, LocalNatsOptions};

use crate::output::emit;

/// One probe event every this long during the failover part.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Longest a failover may take before the run calls it failed.
const FAILOVER_LIMIT: Duration = Duration::from_secs(120);
/// Route password of the loopback cluster (letters and digits, as the shipped files advise).
const ROUTE_PASSWORD: &str = "benchRoute7";

/// The nodes of one setup and the passwords of the users it runs as.
struct Setup {
    nodes: Vec<LocalNats>,
    /// (user, password) of `users.conf`.
    passwords: Pairs,
}

impl Setup {
    fn password(&self, user: &str) -> String {
        self.passwords
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }
    fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(LocalNats::url)
            .collect::<Vec<_>>()
            .join(",")
    }
    fn nats(&self, user: &str, name: &str) -> NatsConfig {
        NatsConfig {
            user: Some(user.into()),
            password: Some(self.password(user)),
            name: name.into(),
            ..NatsConfig::new(self.seeds())
        }
    }
}

/// (name, value) pairs: environment variables, or users and their passwords.
type Pairs = Vec<(String, String)>;

/// Random passwords for `users.conf`'s variables: (the servers' environment, user → password).
fn passwords_for(vars: &[String]) -> (Pairs, Pairs) {
    let mut env = Vec::new();
    let mut users = Vec::new();
    for var in vars {
        let password = format!("bench{:024x}", rand::random::<u128>() >> 32);
        if let Some(user) = socai_testkit::user_of_password_var(var) {
            users.push((user, password.clone()));
        }
        env.push((var.clone(), password));
    }
    (env, users)
}

fn single(binary: &Path, deploy: &Path, dir: &Path) -> anyhow::Result<Setup> {
    let (config, vars) = socai_testkit::shipped_config_in(deploy, dir)
        .context("preparing deploy/nats/single.conf")?;
    let (env, passwords) = passwords_for(&vars);
    let node = LocalNats::start(LocalNatsOptions {
        binary: binary.to_path_buf(),
        dir: dir.to_path_buf(),
        config: Some(config),
        env,
        port: 0,
    })
    .context("starting nats-server with single.conf")?;
    Ok(Setup {
        nodes: vec![node],
        passwords,
    })
}

fn cluster(binary: &Path, deploy: &Path, dir: &Path) -> anyhow::Result<Setup> {
    let shipped = socai_testkit::shipped_cluster_in(deploy, dir, ROUTE_PASSWORD)
        .context("preparing deploy/nats/cluster/")?;
    let (mut env, passwords) = passwords_for(&shipped.password_vars);
    env.extend(shipped.route_env);
    let nodes = shipped
        .nodes
        .iter()
        .map(|node| {
            LocalNats::start(LocalNatsOptions {
                binary: binary.to_path_buf(),
                dir: node.dir.clone(),
                config: Some(node.config.clone()),
                env: env.clone(),
                port: 0,
            })
            .with_context(|| format!("starting cluster node {}", node.config.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Setup { nodes, passwords })
}

/// What one ingest run measured.
struct Ingest {
    events_per_s: f64,
    receipt_p50_ms: f64,
    receipt_p99_ms: f64,
    commit_p50_ms: f64,
    commit_p99_ms: f64,
    republished: u64,
}

/// A ledger in this process against `setup`, with streams of `replicas`.
struct RunningLedger {
    writer: tokio::task::JoinHandle<Result<(), socai_ingest::IngestError>>,
    stop: tokio::sync::watch::Sender<bool>,
    counters: Arc<socai_ingest::Counters>,
    verifier: socai_chain::CheckpointVerifier,
}

async fn start_ledger(setup: &Setup, dir: &Path, replicas: usize) -> anyhow::Result<RunningLedger> {
    let data = socai_store::DataDir::new(dir.to_path_buf());
    data.init("bench.socai/ledger")?;
    let verifier = data.verifier()?;
    let ledger = data.open_ledger(socai_store::LedgerConfig::default())?;
    let (client, _) =
        socai_client::publisher::connect(&setup.nats("ledger", "bench-ledger")).await?;
    let js = async_nats::jetstream::new(client);
    let mut config = socai_ingest::WriterConfig::default();
    config.streams.replicas = replicas;
    let counters = Arc::new(socai_ingest::Counters::default());
    let (stop, mut stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(socai_ingest::serve(
        js,
        ledger,
        config,
        counters.clone(),
        None,
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
        Duration::from_secs(30),
    ));
    Ok(RunningLedger {
        writer,
        stop,
        counters,
        verifier,
    })
}

async fn gateway(
    setup: &Setup,
    verifier: &socai_chain::CheckpointVerifier,
) -> anyhow::Result<ReceiptPublisher> {
    let publisher = Publisher::connect(&setup.nats("gateway", "bench-gateway")).await?;
    Ok(publisher.with_receipts(ReceiptOptions {
        receipt_timeout: Duration::from_secs(5),
        max_receipt_timeout: Duration::from_secs(20),
        verifier: Some(verifier.clone()),
        ..ReceiptOptions::default()
    }))
}

async fn ingest(
    name: &str,
    setup: &Setup,
    ledger: &RunningLedger,
    messages: &[Outgoing],
) -> anyhow::Result<Ingest> {
    let (client, _) =
        socai_client::publisher::connect(&setup.nats("ledger", "bench-observer")).await?;
    let js = async_nats::jetstream::new(client);
    settled(&js, setup.nodes.len()).await?;
    let gateway = gateway(setup, &ledger.verifier).await?;
    let n = messages.len() as u64;
    let bar = crate::output::progress(n, name);
    let mut hist = Histogram::<u64>::new(3).context("histogram")?;
    let mut bad = 0u64;
    let started = Instant::now();
    let summary = gateway
        .publish_all(
            messages.iter().map(|m| (m.clone(), Instant::now())),
            |report| {
                if let Report::Event(e) = report {
                    hist.record(e.tag.elapsed().as_micros() as u64).ok();
                    if !matches!(
                        e.outcome,
                        Outcome::Committed { .. } | Outcome::Duplicate { .. }
                    ) {
                        bad += 1;
                    }
                    bar.inc(1);
                }
            },
        )
        .await?;
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    anyhow::ensure!(
        bad == 0 && summary.committed + summary.duplicates == n,
        "{name}: {} of {n} events committed ({} duplicates, {} rejected, {} without receipt)",
        summary.committed,
        summary.duplicates,
        summary.rejected,
        summary.no_receipt
    );
    let commit = crate::bench::commit_quantiles(&ledger.counters, &[0.5, 0.99]);
    Ok(Ingest {
        events_per_s: n as f64 / secs,
        receipt_p50_ms: hist.value_at_quantile(0.5) as f64 / 1000.0,
        receipt_p99_ms: hist.value_at_quantile(0.99) as f64 / 1000.0,
        commit_p50_ms: commit.first().copied().unwrap_or(f64::NAN) * 1000.0,
        commit_p99_ms: commit.get(1).copied().unwrap_or(f64::NAN) * 1000.0,
        republished: summary.republished,
    })
}

/// The node (index) that leads `stream` now.
async fn leader_of(js: &async_nats::jetstream::Context, stream: &str) -> anyhow::Result<usize> {
    let started = Instant::now();
    loop {
        if let Ok(mut s) = js.get_stream(stream).await
            && let Some(node) = s
                .info()
                .await
                .ok()
                .and_then(|i| i.cluster.clone())
                .and_then(|c| c.leader)
                .and_then(|name| name.strip_prefix("socai-nats-")?.parse::<usize>().ok())
        {
            return Ok(node - 1);
        }
        anyhow::ensure!(
            started.elapsed() < FAILOVER_LIMIT,
            "{stream} has no leader after {FAILOVER_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the ledger made every stream, and (on a cluster of `nodes`) each has a leader and
/// all its replicas are current.
async fn settled(js: &async_nats::jetstream::Context, nodes: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    'again: loop {
        anyhow::ensure!(
            started.elapsed() < FAILOVER_LIMIT,
            "the cluster did not settle within {FAILOVER_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        for name in [
            socai_wire::stream::EVENTS,
            socai_wire::stream::COMMITTED,
            socai_wire::stream::CHECKPOINTS,
            socai_wire::stream::REJECTED,
        ] {
            let Ok(mut s) = js.get_stream(name).await else {
                continue 'again;
            };
            let Ok(info) = s.info().await else {
                continue 'again;
            };
            if nodes == 1 {
                continue;
            }
            let Some(cluster) = info.cluster.clone() else {
                continue 'again;
            };
            if cluster.leader.is_none()
                || cluster.replicas.len() != nodes - 1
                || cluster.replicas.iter().any(|r| !r.current || r.offline)
            {
                continue 'again;
            }
        }
        return Ok(());
    }
}

/// Seconds from `killed` until EVENTS names a leader other than node `old`.
async fn elected(js: async_nats::jetstream::Context, old: usize, killed: Instant) -> Option<f64> {
    while killed.elapsed() < FAILOVER_LIMIT {
        let asked = tokio::time::timeout(Duration::from_millis(500), async {
            let mut s = js.get_stream(socai_wire::stream::EVENTS).await.ok()?;
            s.info().await.ok()?.cluster.clone()?.leader
        })
        .await;
        if let Ok(Some(name)) = asked
            && name != format!("socai-nats-{}", old + 1)
        {
            return Some(killed.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Per kill of EVENTS' leader under a steady trickle: seconds until a new event was committed,
/// and until EVENTS had a new leader.
async fn failover(
    setup: &mut Setup,
    ledger: &RunningLedger,
    probes: Vec<socai_model::Event>,
    kills: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, u64)> {
    let (client, _) =
        socai_client::publisher::connect(&setup.nats("ledger", "bench-observer")).await?;
    let js = async_nats::jetstream::new(client);
    settled(&js, setup.nodes.len()).await?;
    let gateway = Arc::new(gateway(setup, &ledger.verifier).await?);
    // (sent, answered) of every probe answered.
    let answered: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let trickle = {
        let (answered, failed) = (answered.clone(), failed.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            for event in probes {
                tick.tick().await;
                let (gateway, answered, failed) =
                    (gateway.clone(), answered.clone(), failed.clone());
                tokio::spawn(async move {
                    let sent = Instant::now();
                    match gateway.publish(&event).await {
                        Ok(o)
                            if matches!(
                                o.outcome,
                                Outcome::Committed { .. } | Outcome::Duplicate { .. }
                            ) =>
                        {
                            answered
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((sent, Instant::now()));
                        }
                        _ => {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        })
    };
    let bar = crate::output::progress(kills as u64, "failover");
    let mut times = Vec::new();
    let mut elections = Vec::new();
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let leader = leader_of(&js, socai_wire::stream::EVENTS).await?;
        setup.nodes[leader].kill();
        let killed = Instant::now();
        let election = tokio::spawn(elected(js.clone(), leader, killed));
        let recovered = loop {
            let first = answered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(sent, _)| *sent >= killed)
                .map(|(_, at)| *at)
                .min();
            if let Some(at) = first {
                break at;
            }
            anyhow::ensure!(
                killed.elapsed() < FAILOVER_LIMIT,
                "no event published after node {} was killed was committed within {FAILOVER_LIMIT:?}",
                leader + 1
            );
            anyhow::ensure!(
                !trickle.is_finished(),
                "the trickle of probe events ran out; use fewer --kills"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        times.push(recovered.duration_since(killed).as_secs_f64());
        elections.push(election.await.ok().flatten().unwrap_or(f64::NAN));
        setup.nodes[leader]
            .restart()
            .with_context(|| format!("restarting node {}", leader + 1))?;
        settled(&js, setup.nodes.len()).await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    trickle.abort();
    Ok((
        times,
        elections,
        failed.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn run(
    events: u64,
    kills: usize,
    nats_server: Option<&Path>,
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("socai-bench-cluster-")
        .tempdir_in(dir.unwrap_or(&std::env::temp_dir()))?;
    let root = tmp.path();
    let binary = socai_testkit::find_nats_server(nats_server)?;
    let deploy = crate::cmd::repo_root()?.join("deploy").join("nats");
    let n = events as usize;
    eprintln!("generating {n} events (and the failover probes)...");
    let mut sim = socai_sim::Generator::new(socai_sim::SimConfig::default());
    let messages: Vec<Outgoing> = sim.by_ref().take(n).map(|e| Outgoing::event(&e)).collect();
    let probe_count =
        (kills as u64 + 1) * (FAILOVER_LIMIT.as_millis() as u64 / PROBE_EVERY.as_millis() as u64);
    let probes: Vec<socai_model::Event> = sim.take(probe_count as usize).collect();
    println!(
        "socai bench cluster: {n} events with receipts through one node (single.conf, R1) and the 3-node cluster on loopback (cluster/node-*.conf, R3), then {kills} kills of EVENTS' leader under a trickle of one event every {} ms; {}",
        PROBE_EVERY.as_millis(),
        binary.display()
    );
    let rt = crate::cmd::nats::runtime()?;
    rt.block_on(async {
        eprintln!("1/3 one node, R1...");
        let r1_setup = single(&binary, &deploy, &root.join("r1"))?;
        let r1_ledger = start_ledger(&r1_setup, &root.join("ledger-r1"), 1).await?;
        let r1 = ingest("R1", &r1_setup, &r1_ledger, &messages).await?;
        let _ = r1_ledger.stop.send(true);
        r1_ledger.writer.await??;
        drop(r1_setup);

        eprintln!("2/3 three nodes, R3...");
        let mut r3_setup = cluster(&binary, &deploy, &root.join("r3"))?;
        let r3_ledger = start_ledger(&r3_setup, &root.join("ledger-r3"), 3).await?;
        let r3 = ingest("R3", &r3_setup, &r3_ledger, &messages).await?;

        eprintln!("3/3 failover, {kills} kills...");
        let (mut times, mut elections, unanswered) =
            failover(&mut r3_setup, &r3_ledger, probes, kills).await?;
        elections.sort_by(f64::total_cmp);
        let _ = r3_ledger.stop.send(true);
        r3_ledger.writer.await??;
        times.sort_by(f64::total_cmp);
        let (p50, p99, max) = (
            quantile(&times, 0.5),
            quantile(&times, 0.99),
            times.last().copied().unwrap_or(f64::NAN),
        );
        let row = |i: &Ingest| {
            json!({
                "events_per_s": i.events_per_s,
                "receipt_p50_ms": i.receipt_p50_ms,
                "receipt_p99_ms": i.receipt_p99_ms,
                "commit_p50_ms_bucket": i.commit_p50_ms,
                "commit_p99_ms_bucket": i.commit_p99_ms,
                "republished": i.republished,
            })
        };
        emit(
            &json!({
                "events": n,
                "r1": row(&r1),
                "r3": row(&r3),
                "r3_vs_r1": r3.events_per_s / r1.events_per_s,
                "failover_s": {"kills": kills, "p50": p50, "p99": p99, "max": max, "each": times},
                "events_leader_elected_s": {"p50": quantile(&elections, 0.5), "p99": quantile(&elections, 0.99), "each": elections},
                "probes_unanswered": unanswered,
            }),
            || {
                let line = |what: &str, a: String, b: String, ratio: String| {
                    format!("{what:<44} {a:>14} {b:>14} {ratio:>8}\n")
                };
                let mut out = line("", "R1 (1 node)".into(), "R3 (3 nodes)".into(), "R3/R1".into());
                out += &line(
                    "ingest with receipts, events/s",
                    format!("{:.0}", r1.events_per_s),
                    format!("{:.0}", r3.events_per_s),
                    format!("{:.2}", r3.events_per_s / r1.events_per_s),
                );
                out += &line(
                    "publish → receipt p50 / p99, ms",
                    format!("{:.1} / {:.1}", r1.receipt_p50_ms, r1.receipt_p99_ms),
                    format!("{:.1} / {:.1}", r3.receipt_p50_ms, r3.receipt_p99_ms),
                    format!("{:.2}", r3.receipt_p99_ms / r1.receipt_p99_ms),
                );
                out += &line(
                    "ledger commit p50 / p99, ms (bucket bound)",
                    format!("≤{} / ≤{}", r1.commit_p50_ms, r1.commit_p99_ms),
                    format!("≤{} / ≤{}", r3.commit_p50_ms, r3.commit_p99_ms),
                    String::new(),
                );
                out += &format!(
                    "failover (EVENTS' leader killed → a new event committed), {kills} kills: p50 {p50:.2} s, p99 {p99:.2} s, max {max:.2} s\n  each: {}",
                    times
                        .iter()
                        .map(|t| format!("{t:.2}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                out += &format!(
                    "\n  EVENTS' new leader seen by an observer (polling stream info, its own reconnect included: an upper bound on nats-server's election): p50 {:.2} s, p99 {:.2} s\n  probe events without an answer: {unanswered}",
                    quantile(&elections, 0.5),
                    quantile(&elections, 0.99)
                );
                out
            },
        );
        anyhow::Ok(())
    })
}
