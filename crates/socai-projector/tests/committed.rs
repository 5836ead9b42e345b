//! Reading COMMITTED's batch messages (entry bundles of `Socai-Count` entries from `Socai-Seq`)
//! mixed with older single-entry messages, against a real nats-server: locating an entry's
//! message, a worker resuming inside a batch, and malformed bundles and gaps.
//!
//! nats-server: $SOCAI_NATS_SERVER, else `.tools/nats/bin/nats-server` at the repository root,
//! else `nats-server` on PATH. A missing server fails the tests; it never skips them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use socai_chain::tiles::push_bundle_entry;
use socai_chain::{Entry, Hash, leaf_hash};
use socai_client::js::{StoredMessage, StreamReader};
use socai_projector::committed::{self, Located, Span};
use socai_projector::{
    FoldState, ProjectorConfig, ProjectorCounters, ProjectorError, apply_committed,
};
use socai_wire::header::{COUNT, SEQ};
use socai_wire::stream::COMMITTED;
use socai_wire::subject::COMMITTED_SUBJECT;

/// A nats-server with JetStream on an ephemeral port and a store dir of its own; killed and
/// removed on drop.
struct Nats {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Nats {
    fn start(name: &str) -> Nats {
        let binary = std::env::var_os("SOCAI_NATS_SERVER")
            .map(PathBuf::from)
            .or_else(|| {
                let tools =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/nats/bin/nats-server");
                tools.is_file().then_some(tools)
            })
            .unwrap_or_else(|| PathBuf::from("nats-server"));
        let dir = std::env::temp_dir().join(format!(
            "socai-projector-{name}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let log = dir.join("nats-server.log");
        let child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-sd"])
            .arg(dir.join("jetstream"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} ({e}): set SOCAI_NATS_SERVER, or install it with deploy/install-nats.sh",
                    binary.display()
                )
            });
        let mut nats = Nats {
            child,
            dir,
            url: String::new(),
        };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let port = text
                .lines()
                .find_map(|l| l.split("Listening for client connections on ").nth(1))
                .and_then(|addr| addr.trim().rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok());
            if let Some(port) = port
                && text.contains("Server is ready")
            {
                nats.url = format!("nats://127.0.0.1:{port}");
                return nats;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "nats-server did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A temp dir, removed on drop (a failed test leaves nothing behind).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!(
            "socai-projector-{name}-{}-{}",
            std::process::id(),
            rand_suffix()
        )))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

async fn connect(nats: &Nats) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let js = jetstream::new(client.clone());
    (client, js)
}

/// COMMITTED as the ledger makes it (direct gets allowed, no limits).
async fn create_committed(js: &jetstream::Context) {
    js.create_stream(stream::Config {
        name: COMMITTED.into(),
        subjects: vec![COMMITTED_SUBJECT.into()],
        allow_direct: true,
        ..Default::default()
    })
    .await
    .expect("create COMMITTED");
}

/// A chain of `n` entries: dossiers submitted, accepted and resolved, a day apart.
fn chain(n: u64) -> Vec<Vec<u8>> {
    let kinds = [
        (
            "dossier.submitted",
            serde_json::json!({"channel": "online"}),
        ),
        (
            "dossier.accepted",
            serde_json::json!({"due_at": "2026-02-20T17:00:00+07:00"}),
        ),
        (
            "dossier.resolved",
            serde_json::json!({"electronic_result": true}),
        ),
    ];
    let mut prev = Hash::ZERO;
    (0..n)
        .map(|seq| {
            let (kind, data) = &kinds[(seq % 3) as usize];
            let event = serde_json::json!({
                "id": format!("e{seq}"), "type": kind, "agency": "000.00.12.H01",
                "procedure": "1.000001", "dossier": format!("D-{}", seq / 3),
                "occurred_at": format!("2026-01-{:02}T08:00:00+07:00", 1 + (seq / 3 + seq % 3) % 28),
                "schema": 1, "data": data,
            });
            let jcs = socai_chain::canonical_json(&event);
            let entry = Entry::encode(seq, &prev, "2026-11-22T00:00:00Z", &jcs, None);
            prev = leaf_hash(&entry);
            entry
        })
        .collect()
}

/// Publishes `entries` (from entry `first`) as one message: a batch (entry bundle with
/// `Socai-Count`), or, with `single`, an older ledger's single-entry message.
async fn publish(js: &jetstream::Context, first: u64, entries: &[Vec<u8>], single: bool) {
    let (headers, payload) = if single {
        assert_eq!(entries.len(), 1);
        message(first, None, entries[0].clone())
    } else {
        let mut bundle = Vec::new();
        for (seq, entry) in (first..).zip(entries) {
            push_bundle_entry(&mut bundle, seq, entry).expect("entries fit a bundle");
        }
        message(first, Some(&entries.len().to_string()), bundle)
    };
    publish_raw(js, headers, payload).await;
}

fn message(first: u64, count: Option<&str>, payload: Vec<u8>) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert(SEQ, first.to_string().as_str());
    if let Some(count) = count {
        headers.insert(COUNT, count);
    }
    (headers, payload)
}

async fn publish_raw(js: &jetstream::Context, headers: HeaderMap, payload: Vec<u8>) {
    js.publish_with_headers(COMMITTED_SUBJECT, headers, Bytes::from(payload))
        .await
        .expect("publish")
        .await
        .expect("stored");
}

/// Publishes `entries` following `layout`: (count, single) per message, in order.
async fn publish_layout(js: &jetstream::Context, entries: &[Vec<u8>], layout: &[(usize, bool)]) {
    let mut next = 0;
    for &(count, single) in layout {
        publish(js, next as u64, &entries[next..next + count], single).await;
        next += count;
    }
    assert_eq!(next, entries.len(), "the layout covers every entry");
}

/// Singles 0..5 (stream seqs 1-5), then batches [5, 12) (6), [12, 13) (7), [13, 23) (8),
/// [23, 40) (9).
const LAYOUT: &[(usize, bool)] = &[
    (1, true),
    (1, true),
    (1, true),
    (1, true),
    (1, true),
    (7, false),
    (1, false),
    (10, false),
    (17, false),
];

/// Which stream seq holds entry `t` under `layout` (the seq after the last when none does).
fn expected_seq(layout: &[(usize, bool)], t: u64) -> u64 {
    let mut end = 0;
    for (i, &(count, _)) in layout.iter().enumerate() {
        end += count as u64;
        if t < end {
            return i as u64 + 1;
        }
    }
    layout.len() as u64 + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_finds_the_message_holding_each_entry() {
    let nats = Nats::start("locate");
    let (_client, js) = connect(&nats).await;
    create_committed(&js).await;

    // An empty stream: start at its first seq, whatever the fold holds.
    for t in [0, 7] {
        let at = committed::locate(&js, t).await.expect("locate");
        assert_eq!(
            at,
            Located {
                stream_seq: 1,
                committed_size: 0,
                reads: 0
            }
        );
    }
    assert_eq!(committed::committed_size(&js).await.unwrap(), 0);

    let entries = chain(40);
    publish_layout(&js, &entries, LAYOUT).await;
    assert_eq!(committed::committed_size(&js).await.unwrap(), 40);
    // Every entry: singles, a batch's first entry (5, 13, 23), middle (16), last (22, 39), a
    // one-entry batch (12); the end of the stream (40) and beyond it (41: the fold is ahead).
    for t in 0..=41 {
        let at = committed::locate(&js, t).await.expect("locate");
        assert_eq!(at.stream_seq, expected_seq(LAYOUT, t), "entry {t}");
        assert_eq!(at.committed_size, 40);
        // The last and first messages, the bound, then halvings of 9 seqs.
        assert!(at.reads <= 7, "entry {t}: {} reads", at.reads);
    }

    // The message read back is the one holding the entry.
    let at = committed::locate(&js, 16).await.unwrap();
    let msg = read_at(&js, at.stream_seq).await;
    let (span, bundle) = committed::message_entries(&msg).unwrap();
    assert_eq!(
        span,
        Span {
            first: 13,
            count: 10
        }
    );
    assert_eq!(bundle[3], &entries[16][..]);

    // A message deleted from the middle is a clear error, not a wrong answer.
    js.get_stream(COMMITTED)
        .await
        .unwrap()
        .delete_message(6)
        .await
        .expect("delete a message");
    match committed::locate(&js, 9).await {
        Err(ProjectorError::Diverged(m)) => {
            assert!(
                m.contains("no message at stream seq 6 (the next is 7)"),
                "{m}"
            )
        }
        other => panic!("expected Diverged, got {other:?}"),
    }

    // A message the answering replica does not hold, nor anything after it, while the leader's
    // stream info counts it: what a replica still catching up answers on a cluster (here the
    // last message, deleted, on one server). Worth retrying, not a divergence.
    let last = js
        .get_stream(COMMITTED)
        .await
        .unwrap()
        .cached_info()
        .state
        .last_sequence;
    js.get_stream(COMMITTED)
        .await
        .unwrap()
        .delete_message(last)
        .await
        .expect("delete the last message");
    for result in [
        committed::locate(&js, 9).await.map(|l| l.stream_seq),
        committed::committed_size(&js).await,
    ] {
        match result {
            Err(ProjectorError::Nats(m)) => assert!(
                m.contains(&format!("does not hold message {last} yet")),
                "{m}"
            ),
            other => panic!("expected a retryable error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_reads_logarithmically_many_messages() {
    let nats = Nats::start("locate-log");
    let (_client, js) = connect(&nats).await;
    create_committed(&js).await;
    // 1000 messages of 1 to 7 entries (locating reads headers only: the entries are dummies).
    let counts: Vec<u64> = (0..1000u64).map(|i| (i * 5 + i / 7) % 7 + 1).collect();
    let mut acks = Vec::new();
    let mut first = 0;
    for &count in &counts {
        let mut bundle = Vec::new();
        for seq in first..first + count {
            push_bundle_entry(&mut bundle, seq, b"{}").unwrap();
        }
        let (headers, payload) = message(first, Some(&count.to_string()), bundle);
        acks.push(
            js.publish_with_headers(COMMITTED_SUBJECT, headers, payload.into())
                .await
                .unwrap(),
        );
        first += count;
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let total = first;
    let layout: Vec<(usize, bool)> = counts.iter().map(|&c| (c as usize, false)).collect();
    let mut most = 0;
    for t in (0..=total + 1)
        .step_by(37)
        .chain([1, total - 1, total, total + 1])
    {
        let at = committed::locate(&js, t).await.expect("locate");
        assert_eq!(at.stream_seq, expected_seq(&layout, t), "entry {t}");
        assert_eq!(at.committed_size, total);
        most = most.max(at.reads);
    }
    // ⌈log2 1000⌉ = 10 halvings, plus the last and first messages and the first probe.
    assert!(most <= 13, "{most} reads");
}

async fn read_at(js: &jetstream::Context, seq: u64) -> StoredMessage {
    let mut reader = StreamReader::new(js.clone(), COMMITTED, seq).batch(1, 1 << 20);
    let msg = reader.next().await.unwrap().expect("a message");
    assert_eq!(msg.seq, seq);
    msg
}

fn fold(entries: &[Vec<u8>]) -> FoldState {
    let mut state = FoldState::default();
    for (seq, entry) in (0..).zip(entries) {
        state.apply(seq, entry).unwrap();
    }
    state
}

/// The same entries applied (tree size and Merkle root), the same metric values and anomalies.
fn assert_same(state: &FoldState, expected: &FoldState, what: &str) {
    assert_eq!(state.tree_size(), expected.tree_size(), "{what}");
    assert_eq!(state.root(), expected.root(), "{what}");
    let root = expected.root().to_hex();
    let values = expected.projection.values(&root);
    assert!(!values.is_empty());
    assert!(state.projection.values(&root) == values, "{what}: values");
    assert_eq!(
        state.projection.anomalies(),
        expected.projection.anomalies(),
        "{what}"
    );
}

fn config(name: &str, dir: &Path) -> ProjectorConfig {
    ProjectorConfig {
        flush_interval: Duration::from_millis(20),
        kv_interval: Duration::from_millis(20),
        poll_interval: Duration::from_millis(20),
        ..ProjectorConfig::new(name, dir)
    }
}

/// Runs a worker until KV holds every value up to `size`, then calls `more` (which may publish
/// more), waits for `final_size`, and stops the worker (which saves its state).
async fn run_worker(
    nats: &Nats,
    config: ProjectorConfig,
    size: u64,
    more: impl AsyncFnOnce(),
    final_size: u64,
) -> Arc<ProjectorCounters> {
    let (client, js) = connect(nats).await;
    let counters = Arc::new(ProjectorCounters::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut worker = tokio::spawn(socai_projector::run(
        js,
        client,
        config,
        counters.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let started = Instant::now();
    let mut more = Some(more);
    for size in [size, final_size] {
        while counters.published_size.load(Relaxed) < size {
            if worker.is_finished() {
                panic!("the worker stopped: {:?}", (&mut worker).await);
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the worker reached {} of {size} entries",
                counters.published_size.load(Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(more) = more.take() {
            more().await;
        }
    }
    let _ = stop.send(());
    worker.await.unwrap().expect("the worker stops cleanly");
    counters
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_resumes_inside_a_batch_and_applies_each_entry_once() {
    let nats = Nats::start("resume");
    let (_client, js) = connect(&nats).await;
    create_committed(&js).await;
    js.create_key_value(kv::Config {
        bucket: socai_wire::kv::METRICS_BUCKET.into(),
        history: socai_projector::METRICS_HISTORY,
        ..Default::default()
    })
    .await
    .expect("the METRICS bucket");
    let entries = chain(45);
    publish_layout(&js, &entries[..40], LAYOUT).await;

    let scratch = Scratch::new("state");
    let dir = &scratch.0;
    // A state file at tree size 16: inside the batch [13, 23), neither its first nor its last.
    let resumed = config("resumed", dir);
    fold(&entries[..16]).save(&resumed.state_file()).unwrap();
    // Once it caught up, a batch more: the worker follows the stream.
    let publish_more = async || publish(&js, 40, &entries[40..45], false).await;
    let counters = run_worker(&nats, resumed.clone(), 40, publish_more, 45).await;
    assert_eq!(counters.applied.load(Relaxed), 45);
    let expected = fold(&entries);
    let state = FoldState::load(&resumed.state_file()).unwrap().unwrap();
    assert_same(&state, &expected, "a worker resumed at entry 16");

    // From scratch, over the mixed stream: the same state.
    let fresh = config("fresh", dir);
    run_worker(&nats, fresh.clone(), 45, async || {}, 45).await;
    let state = FoldState::load(&fresh.state_file()).unwrap().unwrap();
    assert_same(&state, &expected, "a worker from COMMITTED's start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bundles_and_gaps_are_diverged() {
    let nats = Nats::start("diverged");
    let (client, js) = connect(&nats).await;
    create_committed(&js).await;
    let entries = chain(8);
    let bundle = |range: std::ops::Range<usize>| {
        let mut b = Vec::new();
        for seq in range {
            push_bundle_entry(&mut b, seq as u64, &entries[seq]).unwrap();
        }
        b
    };
    // 1, 2: entries 0 and 1 (singles).
    publish_layout(&js, &entries[..2], &[(1, true), (1, true)]).await;
    let bad = [
        // 3: says 3 entries, holds 2.
        (message(2, Some("3"), bundle(2..4)), "holds 2 entries"),
        // 4: says 2, holds 3.
        (message(2, Some("2"), bundle(2..5)), "holds 3 entries"),
        // 5: truncated (the second entry's length runs past the end).
        (
            message(2, Some("2"), {
                let mut b = bundle(2..4);
                b.truncate(b.len() - 5);
                b
            }),
            "not a well-formed entry bundle",
        ),
        // 6: a count of 0.
        (message(2, Some("0"), bundle(2..2)), "bad Socai-Count"),
        // 7: no Socai-Seq.
        (
            {
                let mut h = HeaderMap::new();
                h.insert(COUNT, "2");
                (h, bundle(2..4))
            },
            "no Socai-Seq",
        ),
        // 8: a gap: entries 4.. after entry 1.
        (
            message(4, Some("2"), bundle(4..6)),
            "COMMITTED jumps from entry 1 to entry 4 (stream seq 8)",
        ),
        // 9: entries 2, 3 of another chain (entry 2's prev is not entry 1's leaf hash).
        (
            message(2, Some("2"), {
                let mut b = Vec::new();
                let forged = Entry::encode(2, &Hash([7; 32]), "2026-11-22T00:00:00Z", b"{}", None);
                push_bundle_entry(&mut b, 2, &forged).unwrap();
                push_bundle_entry(&mut b, 3, &entries[3]).unwrap();
                b
            }),
            "stream seq 9",
        ),
    ];
    for ((headers, payload), _) in &bad {
        publish_raw(&js, headers.clone(), payload.clone()).await;
    }
    let path = Path::new("/nonexistent/state");
    let mut state = FoldState::default();
    apply_committed(&mut state, &read_at(&js, 1).await, path).unwrap();
    apply_committed(&mut state, &read_at(&js, 2).await, path).unwrap();
    assert_eq!(state.tree_size(), 2);
    for (i, (_, why)) in bad.iter().enumerate() {
        let seq = i as u64 + 3;
        match apply_committed(&mut state, &read_at(&js, seq).await, path) {
            Err(ProjectorError::Diverged(m)) => {
                assert!(m.contains(why), "message {seq}: {m}");
                assert!(
                    m.contains(&format!("stream seq {seq}"))
                        || m.contains(&format!("message {seq} of COMMITTED")),
                    "message {seq} is named: {m}"
                );
            }
            other => panic!("message {seq}: expected Diverged, got {other:?}"),
        }
        assert_eq!(state.tree_size(), 2, "message {seq} applied nothing");
    }

    // A worker stops at the first of them with the same error.
    js.create_key_value(kv::Config {
        bucket: socai_wire::kv::METRICS_BUCKET.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let scratch = Scratch::new("diverged");
    let dir = &scratch.0;
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        socai_projector::run(
            js.clone(),
            client,
            config("diverged", dir),
            Arc::new(ProjectorCounters::default()),
            std::future::pending(),
        ),
    )
    .await
    .expect("the worker stops by itself");
    match result {
        Err(ProjectorError::Diverged(m)) => assert!(m.contains("holds 2 entries"), "{m}"),
        other => panic!("expected Diverged, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_older_definitions_are_published_again_and_ended_provinces_purged() {
    let nats = Nats::start("redefined");
    let (_client, js) = connect(&nats).await;
    create_committed(&js).await;
    let store = js
        .create_key_value(kv::Config {
            bucket: socai_wire::kv::METRICS_BUCKET.into(),
            history: socai_projector::METRICS_HISTORY,
            ..Default::default()
        })
        .await
        .expect("the METRICS bucket");
    let entries = chain(30);
    publish(&js, 0, &entries, false).await;
    let scratch = Scratch::new("state");
    let worker = config("w", &scratch.0);
    run_worker(&nats, worker.clone(), 30, async || {}, 30).await;
    let key = "on_time_rate.province.H01.month.2026-01";
    let read = async |filter: &str| {
        socai_projector::read_published(&js, false, filter)
            .await
            .expect("read METRICS")
    };
    let right = read(key).await;
    assert_eq!(right.len(), 1, "the worker published {key}");

    // As an older version left the bucket: its mark without definitions, a value of a
    // province that has since merged (H02 into H05), and a value its definitions made other.
    let mut mark: serde_json::Value = serde_json::from_slice(
        &store
            .get(socai_wire::kv::worker_key("w"))
            .await
            .unwrap()
            .expect("a mark"),
    )
    .unwrap();
    assert_eq!(mark["definitions"], socai_metrics::definitions());
    mark.as_object_mut().unwrap().remove("definitions");
    store
        .put(socai_wire::kv::worker_key("w"), mark.to_string().into())
        .await
        .unwrap();
    let socai_projector::Published::Value(mut stale) = right[0].1.clone() else {
        panic!("a value");
    };
    stale.numerator += 7;
    store
        .put(key, serde_json::to_vec(&stale).unwrap().into())
        .await
        .unwrap();
    stale.scope.code = "H02".into();
    store
        .put(stale.key(), serde_json::to_vec(&stale).unwrap().into())
        .await
        .unwrap();
    assert_eq!(read("*.province.H02.>").await.len(), 1);

    // The same worker, started again with today's definitions.
    run_worker(&nats, worker, 30, async || {}, 30).await;
    assert_eq!(
        read("*.province.H02.>").await.len(),
        0,
        "the merged province's values are gone"
    );
    let again = read(key).await;
    let (socai_projector::Published::Value(a), socai_projector::Published::Value(b)) =
        (&again[0].1, &right[0].1)
    else {
        panic!("values");
    };
    assert_eq!(a.numerator, b.numerator, "the value is published again");
    let mark: serde_json::Value = serde_json::from_slice(
        &store
            .get(socai_wire::kv::worker_key("w"))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(mark["definitions"], socai_metrics::definitions());
}

/// Snapshots between two full ones are deltas appended to the log: a state loaded from the base
/// and its deltas is the fold's; a record cut short by a crash is left out (the state of the
/// delta before it) and cut off by the next append; a log of an older base is ignored.
#[test]
fn deltas_extend_the_base_and_a_torn_or_stale_log_is_never_misread() {
    let scratch = Scratch::new("deltas");
    std::fs::create_dir_all(&scratch.0).unwrap();
    let path = scratch.0.join("w.state");
    let log = socai_projector::log_path(&path);
    let entries = chain(700);
    let mut state = fold(&entries[..600]);
    state.save(&path).unwrap();
    assert!(!log.exists());
    let mut sizes = Vec::new();
    for (seq, entry) in (600..).zip(&entries[600..630]) {
        state.apply(seq, entry).unwrap();
        if seq % 10 == 9 {
            let pending = state.take_snapshot();
            state.write_snapshot(&path, pending).unwrap();
            sizes.push(std::fs::metadata(&log).map_or(0, |m| m.len()));
        }
    }
    // Three deltas, each smaller than the base: none rewrote it.
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    let (base, logged) = state.files_bytes();
    assert_eq!(logged, sizes[2]);
    assert!(logged < base, "{logged} < {base}");
    let loaded = FoldState::load(&path).unwrap().unwrap();
    assert_same(&loaded, &fold(&entries[..630]), "base and three deltas");

    // A crash while appending: the last record cut short. The state is the one before it.
    let whole = std::fs::read(&log).unwrap();
    std::fs::write(&log, &whole[..whole.len() - 5]).unwrap();
    let mut loaded = FoldState::load(&path).unwrap().unwrap();
    assert_same(&loaded, &fold(&entries[..620]), "the last delta torn");
    // Garbage after good records is cut off by the next append, which then reads back.
    for (seq, entry) in (620..).zip(&entries[620..640]) {
        loaded.apply(seq, entry).unwrap();
    }
    let pending = loaded.take_snapshot();
    loaded.write_snapshot(&path, pending).unwrap();
    let reloaded = FoldState::load(&path).unwrap().unwrap();
    assert_same(
        &reloaded,
        &fold(&entries[..640]),
        "appended after a torn record",
    );

    // A new base drops the log; an old log put back (a crash before it was removed) is not
    // applied to the new base.
    let old_log = std::fs::read(&log).unwrap();
    let mut state = reloaded;
    for (seq, entry) in (640..).zip(&entries[640..650]) {
        state.apply(seq, entry).unwrap();
    }
    state.save(&path).unwrap();
    assert!(!log.exists());
    std::fs::write(&log, &old_log).unwrap();
    let mut loaded = FoldState::load(&path).unwrap().unwrap();
    assert_same(&loaded, &fold(&entries[..650]), "a stale log ignored");

    // A snapshot taken and never written (dropped): the next one is a full one, not a delta
    // that would not continue the log.
    let pending = loaded.take_snapshot();
    loaded.write_snapshot(&path, pending).unwrap();
    assert!(!log.exists(), "a base after a stale log");
    for (seq, entry) in (650..).zip(&entries[650..660]) {
        loaded.apply(seq, entry).unwrap();
    }
    let pending = loaded.take_snapshot();
    loaded.write_snapshot(&path, pending).unwrap();
    assert!(log.exists(), "a delta after the base");
    drop(loaded.take_snapshot());
    for (seq, entry) in (660..).zip(&entries[660..670]) {
        loaded.apply(seq, entry).unwrap();
    }
    let pending = loaded.take_snapshot();
    loaded.write_snapshot(&path, pending).unwrap();
    assert!(!log.exists(), "a new base, the log gone");
    assert_same(
        &FoldState::load(&path).unwrap().unwrap(),
        &fold(&entries[..670]),
        "after a dropped snapshot",
    );

    // A log cut behind the worker's back is not extended (zeros would fill the gap).
    let pending = loaded.take_snapshot();
    loaded.write_snapshot(&path, pending).unwrap();
    for (seq, entry) in (670..).zip(&entries[670..680]) {
        loaded.apply(seq, entry).unwrap();
    }
    let pending = loaded.take_snapshot();
    loaded.write_snapshot(&path, pending).unwrap();
    std::fs::write(&log, b"").unwrap();
    for (seq, entry) in (680..).zip(&entries[680..690]) {
        loaded.apply(seq, entry).unwrap();
    }
    let pending = loaded.take_snapshot();
    let err = loaded.write_snapshot(&path, pending).unwrap_err();
    assert!(err.contains("was it moved or cut"), "{err}");

    // Only the latest snapshot taken may be written.
    let mut state = fold(&entries[..600]);
    state.save(&path).unwrap();
    let older = state.take_snapshot();
    let _newer = state.take_snapshot();
    let err = state.write_snapshot(&path, older).unwrap_err();
    assert!(err.contains("not the latest"), "{err}");

    // A delta that does not say what it continues (or continues another size) ends the chain:
    // the state is the base's, and the next snapshot is a full one.
    let mut state = fold(&entries[..600]);
    state.save(&path).unwrap();
    for (seq, entry) in (600..).zip(&entries[600..610]) {
        state.apply(seq, entry).unwrap();
    }
    let pending = state.take_snapshot();
    state.write_snapshot(&path, pending).unwrap();
    let record = std::fs::read(&log).unwrap();
    let payload = &record[40..];
    let split = payload.iter().position(|&b| b == b'\n').unwrap();
    let mut header: serde_json::Value = serde_json::from_slice(&payload[..split]).unwrap();
    header.as_object_mut().unwrap().remove("from_size");
    let mut rewritten = serde_json::to_vec(&header).unwrap();
    rewritten.extend_from_slice(&payload[split..]);
    let mut bytes = (rewritten.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(&rewritten));
    bytes.extend_from_slice(&rewritten);
    std::fs::write(&log, &bytes).unwrap();
    let mut loaded = FoldState::load(&path).unwrap().unwrap();
    assert_same(
        &loaded,
        &fold(&entries[..600]),
        "a delta without from_size ignored",
    );
    let pending = loaded.take_snapshot();
    loaded.write_snapshot(&path, pending).unwrap();
    assert!(!log.exists(), "a full snapshot replaced base and log");
}
