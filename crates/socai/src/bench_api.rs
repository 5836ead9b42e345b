//! `socai bench api`: the HTTP API under load (see `BenchKind::Api`).
//!
//! One process hosts the ledger service as `socai serve` does (the writer consuming EVENTS, the
//! COMMITTED publisher, the HTTP API with its SSE hub) next to a real nats-server. A second
//! runtime in the same process (threads named `bench-load`, so their CPU is told apart) plays
//! the clients: keep-alive HTTP clients over a random mix of proofs and entries, first against
//! the idle ledger (the baseline), then while a publisher feeds EVENTS at a fixed rate. Each
//! is run twice: closed loop (each client sends its next request when the last is answered: the
//! most the API serves, latency ≈ clients / throughput) and open loop (the clients ask half the
//! idle closed-loop throughput in all, latency counted from the scheduled send). A breakdown
//! gives the service time of one client alone and the throughput without gzip. Last, SSE
//! subscribers on `/v1/metrics/stream` while live metric messages are published on NATS, beside a
//! plain NATS subscriber of the same messages. Benchmarks print; they never assert a time.

use crate::cli::Global;
use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rand_core::{RngCore, SeedableRng};
use socai_client::publisher::{NatsConfig, Outgoing, Publisher};
use socai_store::LedgerConfig;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct ApiBench {
    pub events: u64,
    pub clients: usize,
    pub rate: u64,
    pub seconds: u64,
    pub subscribers: usize,
    /// Requests per second of the open-loop runs (default: half the idle closed-loop rate).
    pub request_rate: Option<f64>,
}

/// The request kinds of the mix, in the order of the table.
const KINDS: [&str; 4] = [
    "inclusion proof",
    "consistency proof",
    "single entry",
    "page of 100 entries",
];

/// Live metric messages per second in the SSE run.
const SSE_PER_S: u64 = 20;

/// Threads of the load runtime (clients, publisher) carry this name, so their CPU can be told
/// apart from the server's.
const LOAD_THREAD: &str = "bench-load";

/// One line of the figures table: our figure, the in-run baseline (if any), their ratio, the target.
fn row(figure: &str, socai: String, baseline: &str, ratio: Option<f64>, target: &str) {
    crate::bench_report::record_row(figure, &socai, baseline, ratio, target);
    let ratio = ratio.map(|r| format!("{r:.2}")).unwrap_or_default();
    println!("{figure:<38} {socai:>16} {baseline:>16} {ratio:>6}  {target}");
}

use crate::bench::{per_s, rate};

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

fn p50_p99(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "n/a".into();
    }
    format!("{:.2}/{:.2} ms", ms(h, 0.5), ms(h, 0.99))
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).expect("3 significant figures is a valid histogram")
}

/// The soft and hard limits on open files of this process (`/proc/self/limits`).
fn open_files_limit() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |s: &str| {
        if s == "unlimited" {
            Some(u64::MAX)
        } else {
            s.parse().ok()
        }
    };
    Some((parse(fields.next()?)?, parse(fields.next()?)?))
}

/// (command name, user + system CPU seconds) from a `/proc/.../stat` file.
fn stat_cpu(path: &Path) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the ")" that closes the command name: utime is the 12th field, stime the 13th.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Some((comm, (ticks(11) + ticks(12)) / 100.0))
}

/// CPU seconds used so far: by this process, by its load-generator threads, by nats-server, by
/// the whole machine.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    process: f64,
    load: f64,
    nats: f64,
    machine: f64,
}

/// CPU used over a run, in per cent of one core.
#[derive(Debug, Clone, Copy, Default)]
struct CpuUse {
    /// This process minus its load-generator threads: HTTP, reads, writer, sled.
    server: f64,
    load: f64,
    nats: f64,
    /// Everything else on the machine (other processes).
    other: f64,
}

/// Busy CPU seconds of the whole machine (`/proc/stat`: all but idle and iowait).
fn machine_cpu() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (total - idle) / 100.0
}

impl Cpu {
    fn now(nats_pid: Option<u32>) -> Cpu {
        let process = stat_cpu(Path::new("/proc/self/stat")).map_or(0.0, |(_, s)| s);
        let mut load = 0.0;
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for task in tasks.flatten() {
                if let Some((comm, secs)) = stat_cpu(&task.path().join("stat"))
                    && comm.starts_with(LOAD_THREAD)
                {
                    load += secs;
                }
            }
        }
        let nats = nats_pid
            .and_then(|p| stat_cpu(Path::new(&format!("/proc/{p}/stat"))))
            .map_or(0.0, |(_, s)| s);
        Cpu {
            process,
            load,
            nats,
            machine: machine_cpu(),
        }
    }

    fn since(self, before: Cpu, secs: f64) -> CpuUse {
        let pct = |d: f64| (100.0 * d / secs.max(1e-9)).max(0.0);
        let process = self.process - before.process;
        let load = self.load - before.load;
        let nats = self.nats - before.nats;
        CpuUse {
            server: pct(process - load),
            load: pct(load),
            nats: pct(nats),
            other: pct(self.machine - before.machine - process - nats),
        }
    }
}

/// The most threads this process had while it ran (sampled every 20 ms on a thread of its own).
struct ThreadPeak {
    stop: Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl ThreadPeak {
    fn start() -> ThreadPeak {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Relaxed) {
                let threads = std::fs::read_to_string("/proc/self/status")
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("Threads:"))
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                    .unwrap_or(0);
                peak = peak.max(threads);
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        ThreadPeak { stop, sampler }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Relaxed);
        self.sampler.join().unwrap_or(0)
    }
}

/// What one run of HTTP clients saw.
struct Load {
    /// Latency of successful requests per kind, µs.
    hists: Vec<Histogram<u64>>,
    errors: [u64; 4],
    samples: Vec<String>,
    secs: f64,
    cpu: CpuUse,
    /// Most threads this process had during the run.
    threads: u64,
}

impl Load {
    fn new() -> Load {
        Load {
            hists: KINDS.iter().map(|_| histogram()).collect(),
            errors: [0; 4],
            samples: Vec::new(),
            secs: 0.0,
            cpu: CpuUse::default(),
            threads: 0,
        }
    }

    fn merge(&mut self, other: Load) {
        for (a, b) in self.hists.iter_mut().zip(&other.hists) {
            a.add(b).expect("histograms with the same bounds");
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        for s in other.samples {
            if self.samples.len() < 5 && !self.samples.contains(&s) {
                self.samples.push(s);
            }
        }
    }

    fn all(&self) -> Histogram<u64> {
        let mut all = histogram();
        for h in &self.hists {
            all.add(h).expect("histograms with the same bounds");
        }
        all
    }

    fn requests(&self) -> u64 {
        self.hists.iter().map(Histogram::len).sum::<u64>() + self.errors.iter().sum::<u64>()
    }

    fn errors(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// Where the HTTP clients go.
#[derive(Clone)]
struct Target {
    http: reqwest::Client,
    base: String,
    /// Seqs and tree sizes are drawn below this (covered by the signed checkpoint).
    size: u64,
    nats_pid: Option<u32>,
}

impl Target {
    /// A random request of the mix: (kind, url).
    fn request(&self, rng: &mut impl RngCore) -> (usize, String) {
        let (base, size) = (&self.base, self.size);
        let kind = (rng.next_u64() % 4) as usize;
        let url = match kind {
            0 => format!("{base}/v1/proofs/inclusion?seq={}", rng.next_u64() % size),
            1 => format!(
                "{base}/v1/proofs/consistency?from={}",
                1 + rng.next_u64() % size
            ),
            2 => format!("{base}/v1/entries/{}", rng.next_u64() % size),
            _ => format!(
                "{base}/v1/entries?from={}&limit=100",
                rng.next_u64() % size.saturating_sub(100).max(1)
            ),
        };
        (kind, url)
    }
}

/// A keep-alive client for up to `clients` connections; `gzip`: sends `Accept-Encoding: gzip` (as
/// browsers and socai's own `--api` client do) and inflates the answers.
fn http_client(clients: usize, gzip: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(30));
    if gzip { builder } else { builder.no_gzip() }.build()
}

/// `clients` keep-alive clients over the mix for `run`. Closed loop when `pace` is `None` (each
/// sends its next request when the last is answered); else open loop at `pace` requests/s in
/// all, each client on its own schedule, latency counted from the scheduled send time (a client
/// still waiting for its last answer sends late, and that lateness counts).
async fn http_load(
    target: &Target,
    clients: usize,
    run: Duration,
    seed: u64,
    pace: Option<f64>,
) -> anyhow::Result<Load> {
    let start = tokio::time::Instant::now();
    let deadline = start + run;
    let cpu0 = Cpu::now(target.nats_pid);
    let threads = ThreadPeak::start();
    let started = Instant::now();
    let interval = pace.map(|p| Duration::from_secs_f64(clients as f64 / p.max(1e-3)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        let target = target.clone();
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let mut load = Load::new();
            // Open loop: a random phase, then one request per interval.
            let mut next = interval
                .map(|every| start + every.mul_f64((rng.next_u64() % 1_000_000) as f64 / 1e6));
            loop {
                let t = match (next, interval) {
                    (Some(at), Some(every)) => {
                        if at >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(at).await;
                        next = Some(at + every);
                        at.into_std()
                    }
                    _ => {
                        if tokio::time::Instant::now() >= deadline {
                            break;
                        }
                        Instant::now()
                    }
                };
                let (kind, url) = target.request(&mut rng);
                let result = async {
                    let response = target.http.get(&url).send().await?;
                    let status = response.status();
                    let body = response.bytes().await?;
                    Ok::<_, reqwest::Error>((status, body))
                }
                .await;
                let us = t.elapsed().as_micros() as u64;
                let error = match result {
                    Ok((status, _)) if status.is_success() => {
                        load.hists[kind].record(us.max(1)).ok();
                        continue;
                    }
                    Ok((status, body)) => format!(
                        "{} {status}: {}",
                        KINDS[kind],
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ),
                    Err(e) => format!("{}: {e}", KINDS[kind]),
                };
                load.errors[kind] += 1;
                if load.samples.len() < 5 {
                    load.samples.push(error);
                }
            }
            load
        });
    }
    let mut total = Load::new();
    while let Some(load) = tasks.join_next().await {
        total.merge(load?);
    }
    total.secs = started.elapsed().as_secs_f64();
    total.cpu = Cpu::now(target.nats_pid).since(cpu0, total.secs);
    total.threads = threads.finish();
    Ok(total)
}

/// Publishes `events` in order at `rate` per second (a slice every 10 ms, each slice's PubAcks
/// awaited before the next; a late tick catches up) until `stop`, counting the stored ones in
/// `acked`. Returns the number that failed.
async fn publish_paced(
    publisher: Publisher,
    mut events: impl Iterator<Item = socai_model::Event>,
    rate: u64,
    acked: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let started = Instant::now();
    let (mut next, mut failed) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        if due > next {
            let slice: Vec<Outgoing> = events
                .by_ref()
                .take((due - next) as usize)
                .map(|e| Outgoing::event(&e))
                .collect();
            let n = slice.len() as u64;
            let mut ok = 0;
            failed += publisher
                .publish_all(slice, 256, |r| ok += u64::from(r.is_ok()))
                .await;
            acked.fetch_add(ok, Release);
            next += n;
        }
    }
    failed
}

/// What one SSE subscriber saw: delivery latency per message (µs, 0 = never received).
struct Subscriber {
    latency: Vec<u64>,
    resets: u64,
    error: Option<String>,
}

/// The clock shared by the SSE publisher and its subscribers: `sent[k]` holds when message k was
/// published, in µs since `clock` plus one (0 = not yet).
#[derive(Clone)]
struct SentAt {
    clock: Instant,
    sent: Arc<Vec<AtomicU64>>,
    /// `tree_size` of message 0.
    base: u64,
}

impl SentAt {
    fn mark(&self, k: usize) {
        let now = self.clock.elapsed().as_micros() as u64 + 1;
        self.sent[k].store(now, Release);
    }

    /// Latency of the message with this tree size received at `now_us`, with its index.
    fn latency(&self, tree_size: u64, now_us: u64) -> Option<(usize, u64)> {
        let k = usize::try_from(tree_size.checked_sub(self.base)?).ok()?;
        let sent = self.sent.get(k)?.load(Acquire);
        (sent > 0).then(|| (k, (now_us + 1).saturating_sub(sent).max(1)))
    }
}

#[derive(serde::Deserialize)]
struct TreeSize {
    tree_size: u64,
}

/// One client of `/v1/metrics/stream`: connects, says so, then reads events until it has every
/// message or `stop`.
async fn sse_subscriber(
    http: reqwest::Client,
    url: String,
    sent: SentAt,
    connected: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Subscriber {
    let m = sent.sent.len();
    let mut me = Subscriber {
        latency: vec![0; m],
        resets: 0,
        error: None,
    };
    let response = match http.get(&url).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            me.error = Some(format!(
                "{status}: {}",
                body.chars().take(200).collect::<String>()
            ));
            failed.fetch_add(1, Relaxed);
            return me;
        }
        Err(e) => {
            me.error = Some(e.to_string());
            failed.fetch_add(1, Relaxed);
            return me;
        }
    };
    connected.fetch_add(1, Relaxed);
    let mut body = response.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut received = 0;
    while received < m {
        let chunk = tokio::select! {
            c = body.next() => c,
            _ = stop.wait_for(|s| *s) => break,
        };
        let now_us = sent.clock.elapsed().as_micros() as u64;
        let chunk = match chunk {
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                me.error = Some(e.to_string());
                break;
            }
            None => {
                me.error = Some("the stream ended".into());
                break;
            }
        };
        buf.extend_from_slice(&chunk);
        // Frames end with a blank line; each line is `field: value` (comments start with ':').
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let (mut event, mut data) = ("message", String::new());
            for line in frame.split(|b| *b == b'\n') {
                let line = std::str::from_utf8(line).unwrap_or_default();
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" if value == "metric" => event = "metric",
                    "event" if value == "reset" => event = "reset",
                    "data" => {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(value);
                    }
                    _ => {}
                }
            }
            match event {
                "reset" => me.resets += 1,
                "metric" => {
                    if let Ok(v) = serde_json::from_str::<TreeSize>(&data)
                        && let Some((k, lat)) = sent.latency(v.tree_size, now_us)
                        && me.latency[k] == 0
                    {
                        me.latency[k] = lat;
                        received += 1;
                    }
                }
                _ => {}
            }
        }
    }
    me
}

/// The bare NATS round trip: a plain subscriber of the same subject.
async fn nats_subscriber(
    client: async_nats::Client,
    subject: String,
    sent: SentAt,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Vec<u64>> {
    let mut sub = client.subscribe(subject).await?;
    client.flush().await?;
    let m = sent.sent.len();
    let mut latency = vec![0; m];
    let mut received = 0;
    while received < m {
        let msg = tokio::select! {
            msg = sub.next() => msg,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Some(msg) = msg else { break };
        let now_us = sent.clock.elapsed().as_micros() as u64;
        if let Ok(v) = serde_json::from_slice::<TreeSize>(&msg.payload)
            && let Some((k, lat)) = sent.latency(v.tree_size, now_us)
            && latency[k] == 0
        {
            latency[k] = lat;
            received += 1;
        }
    }
    Ok(latency)
}

/// What the SSE run saw.
struct SseRun {
    subscribers: usize,
    connected: usize,
    connect_secs: f64,
    messages: usize,
    /// Every delivery to every subscriber, µs.
    all: Histogram<u64>,
    /// Per message, until the last subscriber had it, µs.
    last: Histogram<u64>,
    bare: Histogram<u64>,
    bare_received: u64,
    delivered: u64,
    short: usize,
    resets: u64,
    errors: Vec<String>,
    cpu: CpuUse,
    secs: f64,
}

async fn sse_run(
    base: &str,
    nats_url: &str,
    subscribers: usize,
    messages: usize,
    tree_size: u64,
    nats_pid: Option<u32>,
) -> anyhow::Result<SseRun> {
    let subject =
        socai_wire::subject::metrics_subject(socai_metrics::Metric::OnTimeRate.name(), "national");
    let sent = SentAt {
        clock: Instant::now(),
        sent: Arc::new((0..messages).map(|_| AtomicU64::new(0)).collect()),
        base: tree_size,
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let connected = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let bar = crate::output::progress(subscribers as u64, "connect");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..subscribers {
        tasks.spawn(sse_subscriber(
            http.clone(),
            format!("{base}/v1/metrics/stream"),
            sent.clone(),
            connected.clone(),
            failed.clone(),
            stop_rx.clone(),
        ));
    }
    while connected.load(Relaxed) + failed.load(Relaxed) < subscribers
        && started.elapsed() < Duration::from_secs(60)
    {
        bar.set_position(connected.load(Relaxed) as u64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
    let connect_secs = started.elapsed().as_secs_f64();
    let connected = connected.load(Relaxed);

    // The baseline subscriber, then the messages.
    let (nats_sub, _) = socai_client::publisher::connect(&NatsConfig::new(nats_url)).await?;
    let bare = tokio::spawn(nats_subscriber(
        nats_sub,
        subject.clone(),
        sent.clone(),
        stop_rx.clone(),
    ));
    let (live, _) = socai_client::publisher::connect(&NatsConfig::new(nats_url)).await?;
    live.flush().await?;
    // Let the subscription reach the server before the first message.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu0 = Cpu::now(nats_pid);
    let run_started = Instant::now();
    let bar = crate::output::progress(messages as u64, "sse");
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / SSE_PER_S));
    let root = "0".repeat(64);
    for k in 0..messages {
        tick.tick().await;
        let update = socai_projector::LiveUpdate {
            tree_size: tree_size + k as u64,
            root: root.clone(),
            values: Vec::new(),
        };
        let payload = serde_json::to_vec(&update)?;
        sent.mark(k);
        live.publish(subject.clone(), payload.into()).await?;
        live.flush().await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Whoever has everything has returned; the rest get 5 s more.
    let mut results = Vec::with_capacity(subscribers);
    let grace = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(grace, tasks.join_next()).await {
            Ok(Some(r)) => results.push(r?),
            Ok(None) => break,
            Err(_) => {
                let _ = stop_tx.send(true);
                while let Some(r) = tasks.join_next().await {
                    results.push(r?);
                }
                break;
            }
        }
    }
    let _ = stop_tx.send(true);
    let secs = run_started.elapsed().as_secs_f64();
    let cpu = Cpu::now(nats_pid).since(cpu0, secs);
    let bare_latency = bare.await??;

    let mut run = SseRun {
        subscribers,
        connected,
        connect_secs,
        messages,
        all: histogram(),
        last: histogram(),
        bare: histogram(),
        bare_received: 0,
        delivered: 0,
        short: 0,
        resets: 0,
        errors: Vec::new(),
        cpu,
        secs,
    };
    for &lat in bare_latency.iter().filter(|l| **l > 0) {
        run.bare.record(lat).ok();
        run.bare_received += 1;
    }
    let mut last = vec![0u64; messages];
    let mut complete = vec![true; messages];
    for s in &results {
        run.resets += s.resets;
        if let Some(e) = &s.error
            && run.errors.len() < 5
            && !run.errors.contains(e)
        {
            run.errors.push(e.clone());
        }
        if s.error.is_some() && s.latency.iter().all(|l| *l == 0) {
            // Never connected (or lost before the first message): counted as short.
            run.short += 1;
            continue;
        }
        let mut got = 0;
        for (k, &lat) in s.latency.iter().enumerate() {
            if lat > 0 {
                run.all.record(lat).ok();
                last[k] = last[k].max(lat);
                got += 1;
            } else {
                complete[k] = false;
            }
        }
        run.delivered += got;
        if got < messages as u64 {
            run.short += 1;
        }
    }
    for (lat, complete) in last.into_iter().zip(complete) {
        if complete && lat > 0 {
            run.last.record(lat).ok();
        }
    }
    Ok(run)
}

/// The writer's counters at one moment.
#[derive(Debug, Clone, Copy)]
struct Ingest {
    committed: u64,
    batches: u64,
    commit_us: u64,
    /// Events stored in EVENTS the writer had not finished yet.
    lag: u64,
    secs: f64,
}

impl Ingest {
    fn snapshot(c: &socai_ingest::Counters, behind: u64) -> Ingest {
        Ingest {
            committed: c.committed.load(Relaxed),
            batches: c.batches.load(Relaxed),
            commit_us: c.commit_us.load(Relaxed),
            lag: behind,
            secs: 0.0,
        }
    }

    /// What happened between `before` and this snapshot, over `secs`.
    fn since(self, before: Ingest, secs: f64) -> Ingest {
        Ingest {
            committed: self.committed - before.committed,
            batches: self.batches - before.batches,
            commit_us: self.commit_us - before.commit_us,
            lag: self.lag,
            secs,
        }
    }
}

/// The rows of one loaded run beside its idle baseline.
fn table(loaded: &Load, idle: &Load, ingest: &Ingest, asked: u64) {
    for (i, kind) in KINDS.iter().enumerate() {
        let (l, b) = (&loaded.hists[i], &idle.hists[i]);
        row(
            &format!("  {kind} p50/p99"),
            p50_p99(l),
            &p50_p99(b),
            Some(ms(l, 0.99) / ms(b, 0.99).max(1e-9)),
            "p99 <= 10 ms",
        );
    }
    let (la, ia) = (loaded.all(), idle.all());
    row(
        "  all requests p50/p99",
        p50_p99(&la),
        &p50_p99(&ia),
        Some(ms(&la, 0.99) / ms(&ia, 0.99).max(1e-9)),
        "p99 <= 10 ms",
    );
    row(
        "  all requests max",
        format!("{:.1} ms", ms(&la, 1.0)),
        &format!("{:.1} ms", ms(&ia, 1.0)),
        None,
        "",
    );
    let (lr, ir) = (
        rate(loaded.requests(), loaded.secs),
        rate(idle.requests(), idle.secs),
    );
    row(
        "  requests/s (all kinds)",
        per_s(lr),
        &per_s(ir),
        Some(lr / ir.max(1e-9)),
        &format!(
            "mean in flight: {:.0} loaded, {:.0} idle",
            la.mean() / 1e6 * lr,
            ia.mean() / 1e6 * ir
        ),
    );
    row(
        "  errors (non-2xx or failed)",
        loaded.errors().to_string(),
        &idle.errors().to_string(),
        None,
        &format!("of {} and {} requests", loaded.requests(), idle.requests()),
    );
    let committed = rate(ingest.committed, ingest.secs);
    row(
        "  ingest during the run (committed/s)",
        per_s(committed),
        &per_s(asked as f64),
        Some(committed / asked.max(1) as f64),
        &format!(
            "baseline: the rate asked; {} commits of {:.0} events, {:.1} ms each; {} behind at the end",
            ingest.batches,
            ingest.committed as f64 / ingest.batches.max(1) as f64,
            ingest.commit_us as f64 / ingest.batches.max(1) as f64 / 1000.0,
            ingest.lag
        ),
    );
    let pct = |v: f64| format!("{v:.0} %");
    row(
        "  CPU: API + ledger (this process)",
        pct(loaded.cpu.server),
        &pct(idle.cpu.server),
        None,
        "HTTP, reads, writer, COMMITTED, sled",
    );
    row(
        "  CPU: clients + publisher",
        pct(loaded.cpu.load),
        &pct(idle.cpu.load),
        None,
        "the load generator (same process)",
    );
    row(
        "  CPU: nats-server",
        pct(loaded.cpu.nats),
        &pct(idle.cpu.nats),
        None,
        "",
    );
    row(
        "  CPU: other processes",
        pct(loaded.cpu.other),
        &pct(idle.cpu.other),
        None,
        "not this bench: sharing the machine",
    );
    row(
        "  threads in this process (peak)",
        loaded.threads.to_string(),
        &idle.threads.to_string(),
        None,
        "mostly tokio's blocking pool (reads, commits)",
    );
}

pub fn run(
    g: &Global,
    bench: &ApiBench,
    nats_server: Option<&Path>,
    dir: Option<&Path>,
) -> anyhow::Result<()> {
    use socai_testkit::{LocalNats, LocalNatsOptions, find_nats_server};
    let _ = g;
    anyhow::ensure!(bench.events >= 200, "--events must be at least 200");
    anyhow::ensure!(bench.seconds >= 1, "--seconds must be at least 1");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clients = bench.clients.max(1);

    // Sockets: each HTTP client and SSE subscriber holds one, and the server its other end.
    let mut subscribers = bench.subscribers;
    if let Some((soft, hard)) = open_files_limit() {
        let needed = 2 * (clients + subscribers) as u64 + 256;
        if soft < needed {
            let room = soft.saturating_sub(2 * clients as u64 + 256) / 2;
            subscribers = subscribers.min(room as usize);
            eprintln!(
                "warning: this process may open {soft} files (ulimit -n; hard limit {hard}) and the run needs about {needed}: SSE subscribers capped at {subscribers}. For all {}, run `ulimit -n 65536` (at most the hard limit) in this shell first.",
                bench.subscribers
            );
        }
    }

    let max_sse = socai_api::ApiConfig::default().max_sse_clients;
    if subscribers > max_sse {
        eprintln!(
            "warning: the API takes at most {max_sse} SSE clients (max_sse_clients); the {} beyond get 503 and count as short",
            subscribers - max_sse
        );
    }

    let tmp = tempfile::Builder::new()
        .prefix("socai-bench-api-")
        .tempdir_in(dir.unwrap_or(&std::env::temp_dir()))?;
    let n = bench.events as usize;

    // 1. The ledger: N simulated events imported, a checkpoint signed.
    eprintln!("building a ledger of {n} simulated events...");
    let data = socai_store::DataDir::new(tmp.path().join("socai"));
    data.init("bench.socai/ledger")?;
    let mut ledger = data.open_ledger(LedgerConfig::default())?;
    let mut generator = socai_sim::Generator::new(socai_sim::SimConfig::default());
    let bar = crate::output::progress(n as u64, "append");
    let mut appended = 0;
    while appended < n {
        let batch: Vec<_> = generator.by_ref().take((n - appended).min(5000)).collect();
        appended += batch.len();
        ledger.append_batch(&batch, "2026-11-22T00:00:00.000Z")?;
        bar.set_position(appended as u64);
    }
    bar.finish_and_clear();
    ledger.checkpoint()?;
    let size = ledger.head().size;

    // 2. nats-server and the ledger service, wired as `socai serve` wires them.
    let binary = find_nats_server(nats_server)?;
    let server = LocalNats::start(LocalNatsOptions {
        binary: binary.clone(),
        dir: tmp.path().join("nats"),
        ..Default::default()
    })?;
    let url = server.url();
    let nats_pid = server.pid();
    let rt = crate::cmd::nats::runtime()?;
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(LOAD_THREAD)
        .build()
        .context("starting the load generator's runtime")?;
    let counters = Arc::new(socai_ingest::Counters::default());
    let reader = ledger.reader();
    let (stop_writer, writer_stopped) = tokio::sync::watch::channel(false);
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, writer, http) = rt.block_on(async {
        let (client, _) = socai_client::publisher::connect(&NatsConfig::new(&url)).await?;
        let js = async_nats::jetstream::new(client.clone());
        let mut registry = prometheus_client::registry::Registry::default();
        socai_ingest::telemetry::register(&counters, &mut registry);
        let (commands, commands_rx) = tokio::sync::mpsc::channel(16);
        let state = socai_api::AppState::new(
            reader,
            socai_api::ApiConfig::default(),
            Some(socai_api::Nats {
                client: client.clone(),
                js: js.clone(),
            }),
            Some(commands),
            Some(counters.clone()),
            registry,
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let http = tokio::spawn(socai_api::serve(listener, state, async move {
            let _ = http_stopped.await;
        }));
        let mut stopped = writer_stopped;
        let writer = tokio::spawn(socai_ingest::serve(
            js,
            ledger,
            socai_ingest::WriterConfig::default(),
            counters.clone(),
            Some(commands_rx),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
            Duration::from_secs(10),
        ));
        anyhow::Ok((addr, writer, http))
    })?;
    let base = format!("http://{addr}");

    // The COMMITTED publisher starts by publishing the imported entries: wait for it, so the
    // idle run is idle.
    let bar = crate::output::progress(size, "COMMITTED");
    let started = Instant::now();
    while counters.published.load(Relaxed) < size
        || counters.status() != socai_ingest::WriterStatus::Running
    {
        anyhow::ensure!(
            !writer.is_finished(),
            "the ledger writer stopped during startup"
        );
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the ledger did not publish its {size} entries to COMMITTED within 600 s"
        );
        bar.set_position(counters.published.load(Relaxed));
        std::thread::sleep(Duration::from_millis(50));
    }
    bar.finish_and_clear();
    std::thread::sleep(Duration::from_millis(500));

    println!(
        "socai bench api: a ledger of {size} simulated events, {clients} HTTP clients (keep-alive, gzip accepted) over a random mix of {}; {} s per run",
        KINDS.join(", "),
        bench.seconds
    );
    println!(
        "loaded = while {} events/s are published to EVENTS and committed; idle = the same requests, nothing published. {} ({url}), API on {base}",
        bench.rate,
        binary.display()
    );
    println!(
        "everything (nats-server, the ledger writer, the HTTP API, the clients and publishers) shares this machine's {cores} cores; CPU in % of one core"
    );
    let run = Duration::from_secs(bench.seconds);
    let result = load_rt.block_on(async {
        let target = Target {
            http: http_client(clients, true)?,
            base: base.clone(),
            size,
            nats_pid,
        };
        // Warm-up: connections, caches.
        eprintln!("warm-up...");
        http_load(&target, clients, Duration::from_secs(2), 1, None).await?;
        let single_secs = bench.seconds.min(5);
        eprintln!("one client, idle ({single_secs} s)...");
        let single = http_load(&target, 1, Duration::from_secs(single_secs), 2, None).await?;
        eprintln!("{clients} clients, closed loop, idle ({} s)...", bench.seconds);
        let idle = http_load(&target, clients, run, 3, None).await?;
        eprintln!("{clients} clients, closed loop, idle, without gzip ({single_secs} s)...");
        let plain_target = Target {
            http: http_client(clients, false)?,
            ..target.clone()
        };
        let plain = http_load(
            &plain_target,
            clients,
            Duration::from_secs(single_secs),
            7,
            None,
        )
        .await?;
        drop(plain_target);
        // The open-loop runs ask for --request-rate, or half of what the idle ledger answered
        // in closed loop.
        let pace = bench
            .request_rate
            .unwrap_or_else(|| rate(idle.requests(), idle.secs) / 2.0)
            .max(1.0);
        eprintln!(
            "{clients} clients, open loop at {pace:.0} requests/s, idle ({} s)...",
            bench.seconds
        );
        let idle_paced = http_load(&target, clients, run, 4, Some(pace)).await?;

        // Loaded: the publisher first, 1 s to settle, then the same clients.
        // The simulation goes on where the import ended.
        let publisher = Publisher::connect(&NatsConfig::new(&url)).await?;
        let (stop_pub, pub_stopped) = tokio::sync::watch::channel(false);
        let acked = Arc::new(AtomicU64::new(0));
        let pacing = tokio::spawn(publish_paced(
            publisher,
            generator,
            bench.rate,
            acked.clone(),
            pub_stopped,
        ));
        // Events stored in EVENTS that the writer has not finished yet.
        let behind = || {
            let done = counters.committed.load(Relaxed)
                + counters.duplicates.load(Relaxed)
                + counters.rejected.load(Relaxed);
            acked.load(Acquire).saturating_sub(done)
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        eprintln!(
            "{clients} clients, closed loop, while {} events/s are published ({} s)...",
            bench.rate, bench.seconds
        );
        let before = Ingest::snapshot(&counters, behind());
        let loaded = http_load(&target, clients, run, 5, None).await?;
        let loaded_ingest = Ingest::snapshot(&counters, behind()).since(before, loaded.secs);
        // The next run starts with the writer caught up.
        let catching_up = Instant::now();
        if behind() > bench.rate / 10 {
            eprintln!("waiting for the writer to catch up ({} events behind)...", behind());
        }
        while behind() > bench.rate / 10 && catching_up.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let catch_up_secs = catching_up.elapsed().as_secs_f64();
        eprintln!(
            "{clients} clients, open loop at {pace:.0} requests/s, while {} events/s are published ({} s)...",
            bench.rate, bench.seconds
        );
        let before = Ingest::snapshot(&counters, behind());
        let loaded_paced = http_load(&target, clients, run, 6, Some(pace)).await?;
        let paced_ingest = Ingest::snapshot(&counters, behind()).since(before, loaded_paced.secs);
        let _ = stop_pub.send(true);
        let pub_failed = pacing.await?;
        let published = acked.load(Acquire);
        drop(target);

        println!(
            "{:<38} {:>16} {:>16} {:>6}  target",
            "figure", "loaded", "idle (baseline)", "ratio"
        );
        println!(
            "closed loop: {clients} clients, each sends its next request as soon as the last is answered (the most the API serves; latency ≈ clients / rate)"
        );
        table(&loaded, &idle, &loaded_ingest, bench.rate);
        row(
            "  writer caught up after the run in",
            format!("{catch_up_secs:.1} s"),
            "",
            None,
            &format!("{} events behind when the clients stopped", loaded_ingest.lag),
        );
        println!(
            "open loop: {clients} clients asking {pace:.0} requests/s in all ({}), latency from the scheduled send",
            if bench.request_rate.is_some() {
                "--request-rate"
            } else {
                "half the idle closed-loop rate"
            }
        );
        table(&loaded_paced, &idle_paced, &paced_ingest, bench.rate);
        println!(
            "breakdown, idle: 1 client (service time, no queueing), and {clients} clients without gzip (Accept-Encoding: identity), {single_secs} s each"
        );
        for (i, kind) in KINDS.iter().enumerate() {
            row(
                &format!("  1 client: {kind} p50/p99"),
                p50_p99(&single.hists[i]),
                "",
                None,
                "",
            );
        }
        row(
            "  1 client: requests/s",
            per_s(rate(single.requests(), single.secs)),
            "",
            None,
            &format!(
                "{} errors; CPU: API + ledger {:.0} %, client {:.0} %",
                single.errors(),
                single.cpu.server,
                single.cpu.load
            ),
        );
        let (pa, ia) = (plain.all(), idle.all());
        row(
            &format!("  {clients} clients, no gzip: p50/p99"),
            p50_p99(&pa),
            &p50_p99(&ia),
            Some(ms(&pa, 0.99) / ms(&ia, 0.99).max(1e-9)),
            "baseline: with gzip (closed loop, idle)",
        );
        let (pr, ir) = (
            rate(plain.requests(), plain.secs),
            rate(idle.requests(), idle.secs),
        );
        row(
            &format!("  {clients} clients, no gzip: requests/s"),
            per_s(pr),
            &per_s(ir),
            Some(pr / ir.max(1e-9)),
            &format!(
                "{} errors; CPU: API + ledger {:.0} %, clients {:.0} %",
                plain.errors(),
                plain.cpu.server,
                plain.cpu.load
            ),
        );
        for (what, load) in [
            ("closed loop, loaded", &loaded),
            ("closed loop, idle", &idle),
            ("open loop, loaded", &loaded_paced),
            ("open loop, idle", &idle_paced),
            ("1 client", &single),
            ("without gzip", &plain),
        ] {
            for s in &load.samples {
                println!("  error ({what}): {s}");
            }
        }
        if pub_failed > 0 {
            println!("  {pub_failed} publishes failed");
        }

        // Let the writer finish what was published before the SSE run.
        let settle = Instant::now();
        while counters.committed.load(Relaxed) < published
            && settle.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let head = counters.head_size.load(Relaxed);

        // SSE.
        let m = (SSE_PER_S * bench.seconds.clamp(1, 10)) as usize;
        if subscribers == 0 {
            println!("SSE: no subscribers, skipped");
            return anyhow::Ok(());
        }
        eprintln!("SSE: {subscribers} subscribers, {m} messages...");
        let sse = sse_run(&base, &url, subscribers, m, head, nats_pid).await?;
        println!(
            "SSE: {} subscribers on /v1/metrics/stream ({} connected in {:.1} s), {} messages at {SSE_PER_S}/s published on NATS {}, nothing else running; baseline: one plain NATS subscriber of the same messages",
            sse.subscribers,
            sse.connected,
            sse.connect_secs,
            sse.messages,
            socai_wire::subject::metrics_subject(
                socai_metrics::Metric::OnTimeRate.name(),
                "national"
            ),
        );
        let lat = |h: &Histogram<u64>, q: f64| format!("{:.2} ms", ms(h, q));
        row(
            "  delivery p50 (publish → client)",
            lat(&sse.all, 0.5),
            &lat(&sse.bare, 0.5),
            None,
            "",
        );
        row(
            "  delivery p99",
            lat(&sse.all, 0.99),
            &lat(&sse.bare, 0.99),
            Some(ms(&sse.all, 0.99) / ms(&sse.bare, 0.99).max(1e-9)),
            "p99 <= 250 ms",
        );
        row(
            "  delivery max",
            lat(&sse.all, 1.0),
            &lat(&sse.bare, 1.0),
            None,
            "",
        );
        row(
            "  last subscriber served p50/p99",
            format!("{:.1}/{:.1} ms", ms(&sse.last, 0.5), ms(&sse.last, 0.99)),
            "",
            None,
            &format!("per message, when all {} had it", sse.connected),
        );
        let expected = (sse.subscribers * sse.messages) as u64;
        row(
            "  deliveries",
            format!("{} of {expected}", sse.delivered),
            &format!("{} of {}", sse.bare_received, sse.messages),
            None,
            &format!(
                "all; {} subscribers short, {} resets",
                sse.short, sse.resets
            ),
        );
        row(
            "  CPU: API + ledger (this process)",
            format!("{:.0} %", sse.cpu.server),
            "",
            None,
            &format!(
                "subscribers {:.0} %, nats-server {:.0} %, other processes {:.0} %, over {:.1} s",
                sse.cpu.load, sse.cpu.nats, sse.cpu.other, sse.secs
            ),
        );
        for e in &sse.errors {
            println!("  SSE error: {e}");
        }
        anyhow::Ok(())
    });
    drop(load_rt);

    // 3. Clean shutdown: the writer (the batch in hand committed), then the HTTP API.
    let stopped = rt.block_on(async {
        let _ = stop_writer.send(true);
        let written = writer.await?;
        let _ = stop_http.send(());
        match tokio::time::timeout(Duration::from_secs(5), http).await {
            Ok(Ok(Err(e))) => eprintln!("warning: the HTTP API failed: {e}"),
            Err(_) => eprintln!("warning: the HTTP API did not stop within 5 s"),
            _ => {}
        }
        anyhow::Ok(written?)
    });
    drop(rt);
    drop(server);
    result?;
    stopped
}
