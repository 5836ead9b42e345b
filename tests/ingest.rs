//! Ingestion end to end: real nats-server processes (ports of their own, temp store dirs), the real
//! `socai serve` binary, real publishers; kill -9 of the ledger and of nats-server.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use socai_client::publisher::Outgoing;
use socai_e2e::nats::*;
use socai_e2e::{Ledger, workload};
use socai_model::Event;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// A hang guard for waits, far above what any run here takes; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(600);

/// Splits events between `k` publishers by agency, so every subject has one publisher and one
/// publish order.
fn split_by_agency(events: &[Event], k: usize) -> Vec<Vec<Outgoing>> {
    let mut agencies: Vec<&str> = events.iter().map(|e| e.agency.as_str()).collect();
    agencies.sort_unstable();
    agencies.dedup();
    let owner: HashMap<&str, usize> = agencies
        .iter()
        .enumerate()
        .map(|(i, a)| (*a, i % k))
        .collect();
    let mut shares = vec![Vec::new(); k];
    for e in events {
        shares[owner[e.agency.as_str()]].push(Outgoing::event(e));
    }
    shares
}

/// Publishes each share from its own connection, concurrently, in chunks of `chunk` with a pause
/// after each (so publishing can go on while the test kills things); panics on any failure.
async fn publish_shares(
    url: String,
    user: Option<&'static str>,
    shares: Vec<Vec<Outgoing>>,
    in_flight: usize,
    pacing: (usize, Duration),
) {
    publish_shares_gated(url, user, shares, in_flight, pacing, None).await;
}

/// [`publish_shares`], where each chunk first takes (for good) a permit of `gate` per event,
/// waiting for them: whoever adds permits decides how far publishing may go. Once `gate` is
/// closed, the rest goes through.
async fn publish_shares_gated(
    url: String,
    user: Option<&'static str>,
    shares: Vec<Vec<Outgoing>>,
    in_flight: usize,
    (chunk, pause): (usize, Duration),
    gate: Option<Arc<Semaphore>>,
) {
    let mut tasks = Vec::new();
    for share in shares {
        let publisher = publisher(&url, user).await;
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for part in share.chunks(chunk) {
                if let Some(gate) = &gate
                    && let Ok(permits) = gate
                        .acquire_many(u32::try_from(part.len()).expect("a chunk fits a gate"))
                        .await
                {
                    permits.forget();
                }
                publisher
                    .publish_all(part.to_vec(), in_flight, |r| {
                        if let Err(e) = r {
                            errors.push(e.to_string());
                        }
                    })
                    .await;
                tokio::time::sleep(pause).await;
            }
            errors
        }));
    }
    for t in tasks {
        let errors = t.await.expect("publisher task");
        assert!(
            errors.is_empty(),
            "publish failures: {:?}",
            &errors[..errors.len().min(5)]
        );
    }
}

/// Publishes `share` with `receipts` on a task of its own: (events, the run's summary).
fn spawn_receipt_publisher(
    receipts: socai_client::receipts::ReceiptPublisher,
    share: Vec<Outgoing>,
) -> tokio::task::JoinHandle<(u64, socai_client::receipts::Summary)> {
    tokio::spawn(async move {
        let n = share.len() as u64;
        let summary = receipts
            .publish_all(share.into_iter().map(|m| (m, ())), |_| {})
            .await
            .expect("receipts can be received");
        (n, summary)
    })
}

/// No pacing: everything in one go.
const UNPACED: (usize, Duration) = (usize::MAX, Duration::ZERO);

/// One test's world: a data dir, a nats-server, `socai serve` on it, and a JetStream context
/// (as `serve_as`) once the streams exist.
struct Rig {
    ledger: Ledger,
    nats: socai_testkit::LocalNats,
    url: String,
    serve: Serve,
    js: async_nats::jetstream::Context,
}

/// Starts a [`Rig`]: `toml` for socai.toml (if any), the shipped secured config when
/// `serve_as` names a user.
async fn rig(toml: Option<&str>, serve_as: Option<&str>) -> Rig {
    let ledger = Ledger::new();
    if let Some(toml) = toml {
        ledger.configure(toml);
    }
    let nats = start_nats(&ledger.path("nats"), serve_as.is_some());
    let url = nats.url();
    let serve = ledger.serve(&url, serve_as);
    let (client, _) = connect(&url, serve_as).await;
    let js = async_nats::jetstream::new(client);
    wait_for_streams(&js).await;
    Rig {
        ledger,
        nats,
        url,
        serve,
        js,
    }
}

/// Sends `sig` (e.g. "-STOP", "-CONT") to the running nats-server, as `kill` does.
fn signal_nats(nats: &socai_testkit::LocalNats, sig: &str) {
    let pid = nats.pid().expect("nats-server runs").to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Whether `socai serve`'s log shows its writer's NATS connection (`socai-ledger`) dropped.
fn ledger_dropped_its_connection(log: &str) -> bool {
    log.lines().any(|l| {
        l.contains("disconnected from nats") && l.contains(r#""connection":"socai-ledger""#)
    })
}

/// Every event exactly once in the ledger, and for every subject (agency, type) the ledger's
/// order is the publish order.
fn assert_exactly_once_in_order(ledger: &Ledger, events: &[Event]) {
    let committed = assert_exactly_once(ledger, events);
    let mut published: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for e in events {
        published
            .entry((e.agency.as_str(), e.event_type.as_str()))
            .or_default()
            .push(e.id.as_str());
    }
    let mut in_ledger: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    for (id, agency, event_type) in &committed {
        in_ledger
            .entry((agency.as_str(), event_type.as_str()))
            .or_default()
            .push(id.as_str());
    }
    for (subject, ids) in &published {
        assert!(
            in_ledger.get(subject) == Some(ids),
            "subject {subject:?}: the ledger's order differs from the publish order"
        );
    }
}

/// Every event exactly once in the ledger, nothing else in it; returns the ledger's
/// (id, agency, type) in seq order.
fn assert_exactly_once(ledger: &Ledger, events: &[Event]) -> Vec<(String, String, String)> {
    let committed = ledger_events(ledger);
    let mut seen = HashSet::new();
    for (id, _, _) in &committed {
        assert!(seen.insert(id.clone()), "event {id} is in the ledger twice");
    }
    let expected: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(committed.len(), expected.len(), "ledger size");
    for (id, _, _) in &committed {
        assert!(
            expected.contains(id.as_str()),
            "the ledger holds {id}, which was never published"
        );
    }
    committed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_events_from_four_publishers_exactly_once_in_subject_order() {
    // A 1 s JetStream dedup window, so the re-published events below reach the ledger, whose own
    // id index must answer "duplicate".
    let toml = "[ingest]\nduplicate_window_s = 1\ncheckpoint_interval_s = 1\n";
    let Rig {
        ledger,
        nats: _nats,
        url,
        mut serve,
        js,
    } = rig(Some(toml), None).await;

    let events = workload(100_000, 11);
    publish_shares(url.clone(), None, split_by_agency(&events, 4), 256, UNPACED).await;
    wait_committed(&js, events.len() as u64, PATIENCE).await;

    // Retries after the dedup window: 2 000 events again, from two publishers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut picked: Vec<usize> = (0..events.len()).collect();
    picked.shuffle(&mut rng);
    picked.truncate(2000);
    picked.sort_unstable();
    let again: Vec<Event> = picked.iter().map(|&i| events[i].clone()).collect();
    publish_shares(url.clone(), None, split_by_agency(&again, 2), 64, UNPACED).await;
    assert_eq!(
        stream_messages(&js, socai_wire::stream::EVENTS).await,
        102_000
    );
    wait_processed(&mut serve, &js, PATIENCE).await;
    serve.stop();
    assert_eq!(committed_entries(&js).await, 100_000);
    assert_eq!(stream_messages(&js, socai_wire::stream::REJECTED).await, 0);
    let summary = serve.summary();
    assert_eq!(summary["committed"], 100_000, "{summary}");
    assert_eq!(summary["duplicates"], 2000, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");

    assert_exactly_once_in_order(&ledger, &events);
    assert_eq!(ledger.verified_size(), 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_publishers_commit_every_event_exactly_once_in_subject_order() {
    use socai_client::receipts::{ReceiptOptions, ReceiptPublisher};
    // Publishers that wait for receipts send most events without awaiting a PubAck, paced only
    // by the sampled ones. Nothing fails here, so nothing may need publishing again: a plain
    // publish dropped on the way (e.g. by nats-server's stream ingest queue) would show as a
    // re-publish after the receipt timeout, and out of order.
    let Rig {
        ledger,
        nats: _nats,
        url,
        mut serve,
        js,
    } = rig(Some("[ingest]\ncheckpoint_interval_s = 1\n"), None).await;
    let vkey = ledger.verifier();
    let events = workload(30_000, 19);
    let mut publishing = Vec::new();
    for share in split_by_agency(&events, 2) {
        let receipts = ReceiptPublisher::new(
            publisher(&url, None).await,
            ReceiptOptions {
                verifier: Some(vkey.clone()),
                // Far past any commit's delay, even on a loaded machine.
                receipt_timeout: Duration::from_secs(300),
                ..ReceiptOptions::default()
            },
        );
        publishing.push(spawn_receipt_publisher(receipts, share));
    }
    for task in publishing {
        let (n, s) = task.await.expect("publisher");
        assert_eq!(s.committed, n, "{s:?}");
        assert_eq!(s.republished, 0, "{s:?}");
        assert_eq!(
            s.duplicates + s.rejected + s.no_receipt + s.not_published + s.bad_receipts,
            0,
            "{s:?}"
        );
    }
    wait_processed(&mut serve, &js, PATIENCE).await;
    serve.stop();
    assert_exactly_once_in_order(&ledger, &events);
    assert_eq!(ledger.verified_size(), 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_publisher_holds_what_it_reads_while_nats_server_is_down_and_sends_it_in_order() {
    use socai_client::receipts::{Outcome, ReceiptOptions, ReceiptPublisher, Report};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    // One publisher in strict order (`--in-flight 1`) is fed in three parts: A while nats-server
    // is up (all committed before it goes down), B while it is down (held, never sent, one
    // agency new to the run among them), C once it is back. Held events go first, in order:
    // every subject's order in the ledger is the order fed.
    let Rig {
        ledger,
        mut nats,
        url,
        mut serve,
        js,
    } = rig(Some("[ingest]\ncheckpoint_interval_s = 1\n"), None).await;
    let events = workload(1500, 29);
    let newcomer = events
        .iter()
        .map(|e| e.agency.clone())
        .max()
        .expect("agencies");
    let a: Vec<&Event> = events
        .iter()
        .filter(|e| e.agency != newcomer)
        .take(300)
        .collect();
    let in_a: HashSet<&str> = a.iter().map(|e| e.id.as_str()).collect();
    let rest: Vec<&Event> = events
        .iter()
        .filter(|e| !in_a.contains(e.id.as_str()))
        .collect();
    let (b, c) = (&rest[..200], &rest[200..400]);
    assert!(
        b.iter().any(|e| e.agency == newcomer),
        "B brings a new agency"
    );
    assert!(
        b.iter().any(|e| c
            .iter()
            .any(|x| x.agency == e.agency && x.event_type == e.event_type)),
        "B and C share a subject"
    );

    let receipts = ReceiptPublisher::new(
        publisher(&url, None).await,
        ReceiptOptions {
            max_in_flight: 1,
            ..ReceiptOptions::default()
        },
    );
    let client = receipts.publisher().client();
    // A rendezvous: feeding returns once the publisher has read the event.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Outgoing>(0);
    let answered = Arc::new(AtomicU64::new(0));
    let counted = answered.clone();
    // Its own thread: the input iterator blocks until the test feeds it.
    let publishing = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(receipts.publish_all(rx.into_iter().map(|m| (m, ())), |r| {
                // A duplicate: one of A whose receipt the kill took, published again.
                if let Report::Event(e) = r {
                    assert!(
                        matches!(
                            e.outcome,
                            Outcome::Committed { .. } | Outcome::Duplicate { .. }
                        ),
                        "{}: {:?}",
                        e.id,
                        e.outcome
                    );
                    counted.fetch_add(1, Relaxed);
                }
            }))
            .expect("receipts can be received")
    });
    let feed = |part: &[&Event]| {
        for e in part {
            tx.send(Outgoing::event(e)).expect("the publisher reads");
        }
    };
    let state = || client.connection_state();
    use async_nats::connection::State;

    feed(&a);
    wait_committed(&js, a.len() as u64, PATIENCE).await;
    nats.kill();
    wait_until(
        PATIENCE,
        "the publisher sees the connection down",
        || async { state() != State::Connected },
    )
    .await;
    feed(b);
    nats.restart().expect("nats-server restarts");
    wait_until(PATIENCE, "the publisher is connected again", || async {
        state() == State::Connected
    })
    .await;
    feed(c);
    drop(tx);
    let summary = tokio::task::spawn_blocking(move || publishing.join())
        .await
        .expect("join")
        .expect("the publisher thread");
    assert_eq!(answered.load(Relaxed), 700);
    assert_eq!(summary.committed + summary.duplicates, 700, "{summary:?}");
    assert_eq!(summary.no_receipt, 0, "{summary:?}");
    assert!(summary.held >= 200, "all of B was held: {summary:?}");
    wait_processed(&mut serve, &js, PATIENCE).await;
    serve.stop();
    let fed: Vec<Event> = a.iter().chain(b).chain(c).map(|&e| e.clone()).collect();
    assert_exactly_once_in_order(&ledger, &fed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_publisher_rides_out_a_nats_server_that_stops_answering() {
    use socai_client::publisher::{PING_INTERVAL, SEND_TIMEOUT};
    use socai_client::receipts::{ReceiptOptions, ReceiptPublisher};
    use std::sync::atomic::Ordering::Relaxed;
    // nats-server is frozen (SIGSTOP) mid-run: the connection stays open and the client still
    // counts it connected, but nothing it sends is read and no PubAck comes (the sampled ones
    // time out and are retried). Pacing stops plain publishes within PACE sends of the oldest
    // PubAck awaited, so the client's queue never fills; once nats-server answers again every
    // event is committed, in order, exactly once, none published again.
    let Rig {
        ledger,
        nats,
        url,
        mut serve,
        js,
    } = rig(Some("[ingest]\ncheckpoint_interval_s = 1\n"), None).await;
    let events = workload(30_000, 31);
    let receipts = ReceiptPublisher::new(
        publisher(&url, None).await,
        ReceiptOptions {
            // Far past the freeze: nothing is published again for want of a receipt.
            receipt_timeout: Duration::from_secs(120),
            ..ReceiptOptions::default()
        },
    );
    let stats = receipts.publisher().client().statistics();
    let messages: Vec<Outgoing> = events.iter().map(Outgoing::event).collect();
    let publishing = tokio::spawn(async move {
        receipts
            .publish_all(messages.into_iter().map(|m| (m, ())), |_| {})
            .await
            .expect("receipts can be received")
    });
    wait_committed(&js, 2000, PATIENCE).await;
    let signal = |sig: &str| signal_nats(&nats, sig);
    // Longer than a PubAck's timeout, and nats-server then has 9 s to answer before the
    // heartbeat drops a connection (3 × PING_INTERVAL after its last read, which came before the
    // freeze): the client never sees the connection as lost.
    let freeze = SEND_TIMEOUT + Duration::from_secs(1);
    assert!(
        PING_INTERVAL * 3 >= freeze + Duration::from_secs(9),
        "the freeze fits the heartbeat"
    );
    signal("-STOP");
    tokio::time::sleep(freeze).await;
    signal("-CONT");
    let summary = tokio::time::timeout(PATIENCE, publishing)
        .await
        .expect("every event answered")
        .expect("the publisher task");
    assert_eq!(
        stats.connects.load(Relaxed),
        1,
        "the connection was dropped during the freeze"
    );
    assert_eq!(summary.committed, events.len() as u64, "{summary:?}");
    assert_eq!(
        summary.republished + summary.no_receipt + summary.duplicates,
        0,
        "{summary:?}"
    );
    wait_processed(&mut serve, &js, PATIENCE).await;
    serve.stop();
    assert_exactly_once_in_order(&ledger, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_publisher_and_the_ledger_reconnect_to_a_nats_server_frozen_past_the_heartbeat() {
    use socai_client::publisher::PING_INTERVAL;
    use socai_client::receipts::{Again, ReceiptOptions, ReceiptPublisher, Report};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    // nats-server is frozen (SIGSTOP) for longer than three heartbeats: the sockets stay open,
    // so only the PINGs nobody answers show the server is gone. Both the publisher's connection
    // and the ledger's are dropped and made again once nats-server answers (async-nats's
    // default heartbeat of 60 s would count them connected for up to three minutes). What
    // async-nats had not yet written to a dropped socket is lost with it: the sends nats-server
    // had not confirmed go again once the new connection is made (here surely the samples
    // sent into the frozen connection, whose PubAcks are awaited through the freeze), but
    // sends still in async-nats's command queue go out on it first, so this asserts exactly
    // once, not order.
    let Rig {
        ledger,
        nats,
        url,
        mut serve,
        js,
    } = rig(Some("[ingest]\ncheckpoint_interval_s = 1\n"), None).await;
    let events = workload(20_000, 37);
    // The first part is committed before the freeze; the rest is fed once nats-server is
    // frozen, so the publisher sends into the frozen connection (it still counts it up).
    const BEFORE: usize = 5_000;
    let receipts = ReceiptPublisher::new(
        publisher(&url, None).await,
        ReceiptOptions {
            receipt_timeout: Duration::from_secs(15),
            ..ReceiptOptions::default()
        },
    );
    let stats = receipts.publisher().client().statistics();
    let connects = || stats.connects.load(Relaxed);
    // The input ends only once nats-server answers again, so the publisher (and its
    // connection) is still there through the freeze however fast the machine.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Outgoing>(0);
    let (go, gone) = std::sync::mpsc::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let input: Vec<Outgoing> = events.iter().map(Outgoing::event).collect();
    let feeding = std::thread::spawn(move || {
        let mut input = input.into_iter();
        for m in input.by_ref().take(BEFORE) {
            tx.send(m).expect("the publisher reads");
        }
        if gone.recv().is_err() {
            return;
        }
        for m in input {
            tx.send(m).expect("the publisher reads");
        }
        let _ = released.recv();
    });
    // Its own thread: the input iterator blocks. Its summary comes back on a channel, so a
    // publisher that never ends fails the test instead of hanging it.
    let (done, summary) = tokio::sync::oneshot::channel();
    let resent = Arc::new(AtomicU64::new(0));
    let counted = resent.clone();
    std::thread::spawn(move || {
        let _ = done.send(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(receipts.publish_all(rx.into_iter().map(|m| (m, ())), |r| {
                    if let Report::Republished {
                        reason: Again::Reconnected,
                        ..
                    } = r
                    {
                        counted.fetch_add(1, Relaxed);
                    }
                }))
                .expect("receipts can be received"),
        );
    });
    wait_until(PATIENCE, "the first part committed", || async {
        committed_entries(&js).await >= BEFORE as u64
    })
    .await;
    assert_eq!(connects(), 1, "the publisher connected once so far");
    let signal = |sig: &str| signal_nats(&nats, sig);
    signal("-STOP");
    go.send(()).expect("the feeder waits");
    // The heartbeat drops a connection within 3 × PING_INTERVAL of its last read (its third
    // tick, two PINGs unanswered); two more intervals of slack for a loaded machine.
    tokio::time::sleep(PING_INTERVAL * 5).await;
    signal("-CONT");
    release.send(()).expect("the feeder waits");
    let summary = tokio::time::timeout(PATIENCE, summary)
        .await
        .expect("every event answered")
        .expect("the publisher thread ended with a summary");
    tokio::task::spawn_blocking(move || feeding.join())
        .await
        .expect("join")
        .expect("the feeder thread");
    assert!(
        connects() >= 2,
        "the publisher's connection was never dropped and made again: {} connects",
        connects()
    );
    // Mid-run at the freeze, it had sent events nats-server never confirmed (plain publishes
    // without their receipt yet, PubAcks awaited): sent again once connected, not after the
    // receipt timeout.
    assert!(
        resent.load(Relaxed) > 0,
        "nothing was sent again after the reconnect: {summary:?}"
    );
    assert_eq!(
        summary.committed + summary.duplicates,
        events.len() as u64,
        "{summary:?}"
    );
    assert_eq!(
        summary.no_receipt + summary.not_published + summary.rejected,
        0,
        "{summary:?}"
    );
    wait_processed(&mut serve, &js, PATIENCE).await;
    serve.stop();
    let log = std::fs::read_to_string(&serve.log).expect("serve log");
    assert!(
        ledger_dropped_its_connection(&log),
        "the ledger's writer never saw its connection dropped; log:\n{log}"
    );
    assert_exactly_once(&ledger, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_ping_interval_sets_how_soon_a_frozen_nats_server_is_noticed() {
    use socai_client::publisher::{NatsConfig, PING_INTERVAL};
    use socai_client::receipts::{Outcome, ReceiptOptions, ReceiptPublisher};
    // With a heartbeat of 1 s (SOCAI_NATS_PING_INTERVAL for `socai serve`, `ping_interval` for
    // the client library) a frozen nats-server is noticed within 3 s of the last message read.
    // The default of 5 s takes at least 10 s after the freeze (two PINGs sent 5 s apart, the
    // third tick drops), so the deadline below fails if the setting is not applied.
    const INTERVAL: Duration = Duration::from_secs(1);
    let deadline = PING_INTERVAL * 2 - Duration::from_secs(2);
    assert!(INTERVAL * 3 + Duration::from_secs(3) <= deadline);
    let ledger = Ledger::new();
    let nats = start_nats(&ledger.path("nats"), false);
    let url = nats.url();
    let mut serve = ledger.serve_env(&url, None, &[("SOCAI_NATS_PING_INTERVAL", "1")]);
    let (client, _) = connect(&url, None).await;
    let js = async_nats::jetstream::new(client);
    wait_for_streams(&js).await;
    let (watched, _) = socai_client::publisher::connect(&NatsConfig {
        name: "watched".into(),
        ping_interval: INTERVAL,
        ..NatsConfig::new(&url)
    })
    .await
    .expect("connects");
    let connected =
        |c: &async_nats::Client| c.connection_state() == async_nats::connection::State::Connected;
    assert!(connected(&watched));
    let log = || std::fs::read_to_string(&serve.log).expect("serve log");
    assert!(
        !ledger_dropped_its_connection(&log()),
        "dropped before the freeze:\n{}",
        log()
    );
    signal_nats(&nats, "-STOP");
    let frozen = std::time::Instant::now();
    let (mut client_after, mut ledger_after) = (None, None);
    while frozen.elapsed() < deadline && (client_after.is_none() || ledger_after.is_none()) {
        if client_after.is_none() && !connected(&watched) {
            client_after = Some(frozen.elapsed());
        }
        if ledger_after.is_none() && ledger_dropped_its_connection(&log()) {
            ledger_after = Some(frozen.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal_nats(&nats, "-CONT");
    eprintln!("noticed the freeze after: client {client_after:?}, ledger {ledger_after:?}");
    assert!(
        client_after.is_some(),
        "a client with a heartbeat of {INTERVAL:?} still counted a frozen nats-server connected after {deadline:?}"
    );
    assert!(
        ledger_after.is_some(),
        "`socai serve` with SOCAI_NATS_PING_INTERVAL=1 did not drop its connection to a frozen nats-server within {deadline:?}; log:\n{}",
        log()
    );
    // Both connect again, and the ledger commits what comes next.
    wait_until(PATIENCE, "the client connected again", || async {
        connected(&watched)
    })
    .await;
    let event = workload(1, 41).remove(0);
    let receipts = ReceiptPublisher::new(publisher(&url, None).await, ReceiptOptions::default());
    let outcome = tokio::time::timeout(PATIENCE, receipts.publish(&event))
        .await
        .expect("the ledger answers once nats-server is back")
        .expect("receipts")
        .outcome;
    assert!(
        matches!(outcome, Outcome::Committed { seq: 0, .. }),
        "{outcome:?}"
    );
    serve.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_killed_twenty_times_while_publishing_loses_and_duplicates_nothing() {
    let Rig {
        ledger,
        nats: _nats,
        url,
        mut serve,
        js,
    } = rig(Some("[ingest]\ncheckpoint_interval_s = 1\n"), None).await;

    let events = workload(30_000, 12);
    // Publishing is gated by the kill loop: each of its 20 rounds lets a twentieth of the events
    // through shortly before its kill, so every kill comes while a slice is being published,
    // however fast the machine. Ungated, publishers were done within a few seconds, well before
    // the last kills, and a ledger that restarts and catches up quickly had nothing left to do.
    const ROUNDS: usize = 20;
    let slice = events.len() / ROUNDS;
    let gate = Arc::new(Semaphore::new(0));
    let publishing = tokio::spawn(publish_shares_gated(
        url.clone(),
        None,
        split_by_agency(&events, 2),
        32,
        (50, Duration::ZERO),
        Some(gate.clone()),
    ));
    let seed: u64 = std::env::var("SOCAI_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill moments from SOCAI_KILL_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills_with_work_left = 0;
    for kill in 0..ROUNDS {
        // The kill comes `round` after the last restart (the ledger may still be starting, or
        // done with what it had), `lead` after the round's slice went out.
        let round = Duration::from_millis(rand::Rng::gen_range(&mut rng, 150..700));
        let lead = Duration::from_millis(rand::Rng::gen_range(&mut rng, 20..60));
        tokio::time::sleep(round - lead).await;
        gate.add_permits(slice);
        tokio::time::sleep(lead).await;
        let s = js
            .get_stream(socai_wire::stream::EVENTS)
            .await
            .expect("EVENTS");
        let published = stream_messages(&js, socai_wire::stream::EVENTS).await;
        if published > committed_entries(&js).await {
            kills_with_work_left += 1;
        }
        if kill == 10 {
            // Not a kill: the ledger's consumer disappears under it (as a nats-server restart
            // drops an in-memory consumer); the ledger opens a new one at its own position.
            let mut names = s.consumer_names();
            let mut deleted = 0;
            while let Some(Ok(name)) = futures::StreamExt::next(&mut names).await {
                if name.starts_with("ledger") && s.delete_consumer(&name).await.is_ok() {
                    deleted += 1;
                }
            }
            assert!(
                deleted >= 1,
                "the ledger reads EVENTS through a consumer named ledger-…"
            );
            continue;
        }
        serve.kill();
        if kill % 5 == 4 {
            // Whatever the moment of the kill, the store verifies.
            let size = ledger.verified_size();
            eprintln!("kill {kill}: ledger verifies at {size} entries");
        }
        serve = ledger.serve(&url, None);
    }
    // The slices add up to every event; closing the gate lets through any rest all the same.
    gate.close();
    publishing.await.expect("publishers");
    wait_committed(&js, events.len() as u64, PATIENCE).await;
    serve.stop();
    eprintln!("{kills_with_work_left} of {ROUNDS} kills hit a ledger with work left");
    assert!(
        kills_with_work_left >= 10,
        "only {kills_with_work_left} of 20 kills hit a ledger with work left (SOCAI_KILL_SEED={seed})"
    );
    assert_eq!(stream_messages(&js, socai_wire::stream::REJECTED).await, 0);
    assert_eq!(committed_entries(&js).await, 30_000);
    // COMMITTED took each entry once, in order (each message is stored only right after the one
    // before), and its last one is the ledger's last entry.
    let last = js
        .get_stream(socai_wire::stream::COMMITTED)
        .await
        .expect("COMMITTED")
        .get_last_raw_message_by_subject("dvc.ledger.committed")
        .await
        .expect("last message");
    let first: u64 = last
        .headers
        .get("Socai-Seq")
        .expect("Socai-Seq")
        .as_str()
        .parse()
        .unwrap();
    let count: u64 = last
        .headers
        .get("Socai-Count")
        .expect("Socai-Count")
        .as_str()
        .parse()
        .unwrap();
    assert_eq!(first + count, 30_000);
    let entries = socai_chain::tiles::split_entry_bundle(&last.payload).expect("an entry bundle");
    assert_eq!(entries.len() as u64, count);
    let entry: serde_json::Value =
        serde_json::from_slice(entries.last().expect("entries")).expect("entry json");
    assert_eq!(entry["seq"], 29_999);
    assert_committed_whole(&js, 30_000).await;
    assert_exactly_once_in_order(&ledger, &events);
    assert_eq!(ledger.verified_size(), 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_killed_and_restarted_mid_stream_loses_and_duplicates_nothing() {
    // The shipped single-node config: auth and nats-server's default sync. A kill -9 of the
    // process leaves what it wrote in the page cache, so PubAcks are enough here; losing unsynced
    // writes (a machine crash) is the receipts test below.
    let Rig {
        ledger,
        mut nats,
        url,
        mut serve,
        js,
    } = rig(
        Some("[ingest]\ncheckpoint_interval_s = 1\n"),
        Some("ledger"),
    )
    .await;

    let events = workload(20_000, 13);
    let publishing = tokio::spawn(publish_shares(
        url.clone(),
        Some("gateway"),
        split_by_agency(&events, 2),
        32,
        (200, Duration::from_millis(40)),
    ));
    wait_until(PATIENCE, "some entries on COMMITTED", || async {
        committed_entries(&js).await >= 2000
    })
    .await;
    let before = committed_entries(&js).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.restart().expect("nats-server restarts");
    publishing.await.expect("publishers");
    wait_committed(&js, events.len() as u64, PATIENCE).await;
    assert!(
        serve.running(),
        "socai serve must ride out a nats-server restart"
    );
    serve.stop();
    // Reopening found the message the ledger read last where it was, with the same timestamp:
    // no false alarm of lost writes (a kill -9 leaves nats-server's writes in the page cache).
    let log = std::fs::read_to_string(&serve.log).unwrap_or_default();
    let reopened = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            let f = &l["fields"];
            f["message"] == "reading EVENTS after the ledger's position"
                && f["rewound"] == false
                && f["position"].as_u64().is_some_and(|p| p > 0)
        })
        .count();
    assert!(
        reopened > 0,
        "the ledger never reopened EVENTS at a position it had read; log:\n{log}"
    );
    assert!(
        !log.contains("EVENTS no longer holds the message"),
        "a restart without loss was taken for lost writes; log:\n{log}"
    );
    assert!(
        before < 20_000,
        "the restart must happen mid-stream ({before} committed before)"
    );
    assert_eq!(stream_messages(&js, socai_wire::stream::REJECTED).await, 0);
    assert_eq!(committed_entries(&js).await, 20_000);
    let committed = ledger_events(&ledger);
    let ids: HashSet<&str> = committed.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        ids.len(),
        committed.len(),
        "an event is in the ledger twice"
    );
    assert!(
        events.iter().all(|e| ids.contains(e.id.as_str())),
        "an event is missing"
    );
    assert_eq!(committed.len(), 20_000);
    assert_eq!(ledger.verified_size(), 20_000);
}

/// A valid event of `event_type` for agency G09.20, as JSON.
fn valid(id: &str, event_type: &str, data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "id": id, "type": event_type, "agency": "G09.20", "procedure": "1.004227",
        "dossier": "G09.20-20260609-0092637", "occurred_at": "2026-06-09T08:15:00+07:00",
        "schema": 1, "data": data
    })
}

fn submitted(id: &str) -> serde_json::Value {
    valid(
        id,
        "dossier.submitted",
        serde_json::json!({"channel": "online"}),
    )
}

fn to_bytes(v: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

/// [`valid`] as bytes.
fn valid_bytes(id: &str, event_type: &str, data: serde_json::Value) -> Vec<u8> {
    to_bytes(&valid(id, event_type, data))
}

fn with(mut v: serde_json::Value, pointer: &str, value: serde_json::Value) -> Vec<u8> {
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer}")) = value;
    serde_json::to_vec(&v).expect("json")
}

fn without(mut v: serde_json::Value, field: &str) -> Vec<u8> {
    v.as_object_mut().expect("object").remove(field);
    to_bytes(&v)
}

const SUBMITTED: &str = "dvc.events.G09-20.dossier.submitted";

/// (name, subject, payload, expected code, expected path)
fn bad_corpus() -> Vec<(&'static str, String, Vec<u8>, &'static str, &'static str)> {
    use serde_json::json;
    let s = SUBMITTED.to_string();
    let on = |t: &str| format!("dvc.events.G09-20.{t}");
    let far_future = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(72))
        .expect("time")
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(7)))
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    vec![
        (
            "not json",
            s.clone(),
            b"{\"id\": ".to_vec(),
            "malformed_json",
            "",
        ),
        ("empty payload", s.clone(), Vec::new(), "malformed_json", ""),
        ("array", s.clone(), b"[1,2]".to_vec(), "malformed_json", ""),
        (
            "not utf-8",
            s.clone(),
            b"{\"id\":\"\xff\xfe\"}".to_vec(),
            "malformed_json",
            "",
        ),
        (
            "duplicate key",
            s.clone(),
            br#"{"id":"a1","id":"a2","type":"dossier.submitted"}"#.to_vec(),
            "malformed_json",
            "",
        ),
        (
            "missing id",
            s.clone(),
            without(submitted("x"), "id"),
            "schema_violation",
            "/id",
        ),
        (
            "missing data",
            s.clone(),
            without(submitted("bad-nodata"), "data"),
            "schema_violation",
            "/data",
        ),
        (
            "schema 2",
            s.clone(),
            with(submitted("bad-schema2"), "/schema", json!(2)),
            "schema_violation",
            "/schema",
        ),
        (
            "occurred_at without offset",
            s.clone(),
            with(
                submitted("bad-time"),
                "/occurred_at",
                json!("2026-06-09T08:15:00"),
            ),
            "schema_violation",
            "/occurred_at",
        ),
        (
            "agency is a number",
            s.clone(),
            with(submitted("bad-agency"), "/agency", json!(12)),
            "schema_violation",
            "/agency",
        ),
        (
            "channel fax",
            s.clone(),
            with(submitted("bad-channel"), "/data/channel", json!("fax")),
            "schema_violation",
            "/data/channel",
        ),
        (
            "extra data property",
            s.clone(),
            with(
                submitted("bad-extra"),
                "/data",
                json!({"channel": "online", "citizen_id": "001"}),
            ),
            "schema_violation",
            "/data/citizen_id",
        ),
        (
            "extra envelope property",
            s.clone(),
            {
                let mut v = submitted("bad-envelope");
                v["extra"] = json!(1);
                to_bytes(&v)
            },
            "schema_violation",
            "/extra",
        ),
        (
            "personal not an object",
            s.clone(),
            {
                let mut v = submitted("bad-personal");
                v["personal"] = json!("Nguyễn Văn A");
                to_bytes(&v)
            },
            "schema_violation",
            "/personal",
        ),
        (
            "fee_paid without online",
            on("dossier.fee_paid"),
            valid_bytes(
                "bad-fee",
                "dossier.fee_paid",
                json!({"gateway": "payment-platform"}),
            ),
            "schema_violation",
            "/data/online",
        ),
        (
            "negative fee",
            on("dossier.fee_requested"),
            valid_bytes(
                "bad-amount",
                "dossier.fee_requested",
                json!({"amount_vnd": -5}),
            ),
            "schema_violation",
            "/data/amount_vnd",
        ),
        (
            "rating level 9",
            on("dossier.rated"),
            valid_bytes(
                "bad-level",
                "dossier.rated",
                json!({"satisfied": true, "level": 9}),
            ),
            "schema_violation",
            "/data/level",
        ),
        (
            "empty refusal reason",
            on("dossier.refused"),
            valid_bytes("bad-reason", "dossier.refused", json!({"reason": ""})),
            "schema_violation",
            "/data/reason",
        ),
        (
            "unknown type",
            on("dossier.teleported"),
            valid_bytes("bad-type", "dossier.teleported", json!({})),
            "unknown_type",
            "/type",
        ),
        (
            "reserved type",
            on("ledger.redacted"),
            valid_bytes("bad-reserved", "ledger.redacted", json!({})),
            "reserved_type",
            "/type",
        ),
        (
            "redaction id prefix",
            s.clone(),
            with(
                submitted("x"),
                "/id",
                json!("redaction:01JD9Q4W8G3N6V2P5X7K1M0ZTR"),
            ),
            "schema_violation",
            "/id",
        ),
        (
            "oversized",
            s.clone(),
            with(
                submitted("bad-big"),
                "/data",
                json!({"channel": "online", "note": "x".repeat(70_000)}),
            ),
            "oversized",
            "",
        ),
        (
            "agency differs from subject",
            "dvc.events.G09-21.dossier.submitted".to_string(),
            to_bytes(&submitted("bad-subject-agency")),
            "subject_mismatch",
            "/agency",
        ),
        (
            "type differs from subject",
            on("dossier.accepted"),
            to_bytes(&submitted("bad-subject-type")),
            "subject_mismatch",
            "/type",
        ),
        (
            "occurred_at three days ahead",
            s.clone(),
            with(submitted("bad-future"), "/occurred_at", json!(far_future)),
            "future_timestamp",
            "/occurred_at",
        ),
        (
            "same id, other content",
            s.clone(),
            with(submitted("good-1"), "/data/channel", json!("counter")),
            "conflict",
            "/id",
        ),
    ]
}

/// Restarts `socai serve` and waits until it has reopened EVENTS after `position` without taking
/// it for lost writes, and without a data-loss alarm or an error reading the message there.
async fn restart_and_reopen_at(
    ledger: &Ledger,
    mut serve: Serve,
    url: &str,
    js: &async_nats::jetstream::Context,
    position: u64,
    what: &str,
) -> Serve {
    serve.stop();
    let mut serve = ledger.serve(url, None);
    // The position is the stream's last message (or past it), so the ledger counts as caught up
    // at once: wait for its log instead.
    let opened = |log: &str| {
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|l| {
                let f = &l["fields"];
                f["message"] == "reading EVENTS after the ledger's position"
                    && f["rewound"] == false
                    && f["position"] == position
            })
    };
    let started = std::time::Instant::now();
    let log = loop {
        let log = std::fs::read_to_string(&serve.log).unwrap_or_default();
        if opened(&log) {
            break log;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: the ledger did not reopen EVENTS after seq {position}; log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    wait_processed(&mut serve, js, PATIENCE).await;
    for bad in [
        "no longer holds",
        "is not a time",
        "cannot read EVENTS",
        "are gone from the stream",
    ] {
        assert!(!log.contains(bad), "{what}: {bad:?} in the log:\n{log}");
    }
    serve
}

/// Reopening EVENTS at the ledger's position is not misled by what the stream holds there:
/// - a publisher's own `Nats-Time-Stamp` and `Nats-Sequence` headers on the event (nats-server
///   keeps them and appends its own after them): the check for lost writes reads the server's,
///   so it neither stalls on a malformed one nor raises a false alarm;
/// - the event at the position erased, with nothing after it (the direct get finds nothing; the
///   leader says it is gone): no rewind, no retrying until someone publishes;
/// - every message erased (the stream's first seq past its last): no alarm either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_events_is_misled_neither_by_forged_nats_headers_nor_by_an_erased_tail() {
    use async_nats::jetstream::message::PublishMessage;
    let Rig {
        ledger,
        nats: _nats,
        url,
        mut serve,
        js,
    } = rig(None, None).await;
    for (i, (stamp, seq)) in [("yesterday", "x"), ("2001-01-01T00:00:00Z", "1")]
        .into_iter()
        .enumerate()
    {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Time-Stamp", stamp);
        headers.insert("Nats-Sequence", seq);
        let msg = PublishMessage::build()
            .payload(
                serde_json::to_vec(&submitted(&format!("forged-{i}")))
                    .expect("json")
                    .into(),
            )
            .headers(headers)
            .message_id(format!("forged-{i}"));
        js.send_publish(SUBMITTED.to_string(), msg)
            .await
            .expect("publish")
            .await
            .expect("PubAck");
        wait_committed(&js, i as u64 + 1, PATIENCE).await;
        let what = format!("forged headers on event {}", i + 1);
        serve = restart_and_reopen_at(&ledger, serve, &url, &js, i as u64 + 1, &what).await;
    }
    let events = js
        .get_stream(socai_wire::stream::EVENTS)
        .await
        .expect("EVENTS");
    // The ledger's position (seq 2) erased, seq 1 still there.
    assert!(events.delete_message(2).await.expect("delete EVENTS 2"));
    serve = restart_and_reopen_at(&ledger, serve, &url, &js, 2, "an erased tail").await;
    // Nothing left: the stream's first seq is past its last.
    assert!(events.delete_message(1).await.expect("delete EVENTS 1"));
    serve = restart_and_reopen_at(&ledger, serve, &url, &js, 2, "an emptied stream").await;
    serve.stop();
    assert_eq!(ledger_events(&ledger).len(), 2);
}

/// A figure from the Prometheus text of `socai serve`'s `/metrics`.
async fn metric(api: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{api}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
}

/// Publishes `payload` on [`SUBMITTED`] and waits until EVENTS stores it; returns its seq there.
async fn store_on_events(
    js: &async_nats::jetstream::Context,
    payload: impl Into<bytes::Bytes>,
) -> u64 {
    js.publish(SUBMITTED, payload.into())
        .await
        .expect("publish")
        .await
        .expect("EVENTS stores it")
        .sequence
}

/// Waits until the ledger's `/readyz` (at `api`) answers 200.
async fn wait_ready(api: &str) {
    wait_until(PATIENCE, "the ledger to be ready", || async {
        get_json(&format!("{api}/readyz")).await.0 == 200
    })
    .await;
}

/// Waits (up to `limit`) until the ledger's `/readyz` (at `api`) says it holds `size` entries.
async fn wait_size(api: &str, size: u64, limit: Duration) {
    wait_until(limit, &format!("{size} entries in the ledger"), || async {
        get_json(&format!("{api}/readyz")).await.1["size"] == size
    })
    .await;
}

/// The ids of the events `ledger` holds, in seq order.
fn held_ids(ledger: &Ledger) -> Vec<String> {
    ledger_events(ledger).into_iter().map(|e| e.0).collect()
}

/// Messages gone from EVENTS before the ledger read them are never skipped silently: they raise
/// the data-loss alarm (an error in the log, `/readyz` unready and naming the seqs,
/// `socai_events_lost`, `socai_data_loss_alarm`), whether found while reading (one deleted
/// between two others) or when EVENTS is (re)opened (the stream's first seq past the ledger's
/// cursor). A reopen that finds the same gap again (nats-server restarted) neither alarms nor
/// counts it twice, and once an event after the gap is committed the next start is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_gone_before_the_ledger_read_them_raise_the_data_loss_alarm_once() {
    let Rig {
        ledger,
        mut nats,
        url,
        mut serve,
        js,
    } = rig(None, None).await;
    serve.stop();
    let publish = |id: &'static str| store_on_events(&js, to_bytes(&submitted(id)));
    let events = js
        .get_stream(socai_wire::stream::EVENTS)
        .await
        .expect("EVENTS");
    for id in ["kept-1", "deleted-2", "kept-3", "deleted-4", "kept-5"] {
        publish(id).await;
    }
    for seq in [2, 4] {
        assert!(
            events
                .delete_message(seq)
                .await
                .expect("delete from EVENTS")
        );
    }

    // Found while reading: seq 3 follows seq 1, seq 5 follows seq 3. The first alarm is shown,
    // the second counted beside it.
    let mut serve = ledger.serve(&url, None);
    wait_processed(&mut serve, &js, PATIENCE).await;
    let api = serve.http_url();
    let (status, ready) = get_json(&format!("{api}/readyz")).await;
    assert_eq!(status, 503, "{ready}");
    socai_e2e::openapi::OpenApi::load().check_schema("Readiness", &ready);
    let alarm = ready["data_loss"].as_str().unwrap_or_default();
    assert!(
        alarm.starts_with("EVENTS seqs 2..2 (1 message) are gone")
            && alarm.ends_with("until `socai serve` restarts; one later alarm is in the log)"),
        "{ready}"
    );
    assert_eq!(metric(&api, "socai_events_lost_total").await, 2.0);
    assert_eq!(metric(&api, "socai_data_loss_alarm").await, 1.0);
    serve.stop();
    assert!(
        std::fs::read_to_string(&serve.log)
            .unwrap_or_default()
            .contains("\"level\":\"ERROR\",\"fields\":{\"message\":\"EVENTS seqs 4..4"),
        "each alarm is logged as an error"
    );

    // Found when opening EVENTS: everything after the cursor was removed while it was stopped.
    for id in ["purged-6", "purged-7"] {
        publish(id).await;
    }
    events
        .purge()
        .sequence(8)
        .await
        .expect("purge EVENTS below 8");
    let mut serve = ledger.serve(&url, None);
    let api = serve.http_url();
    wait_until(PATIENCE, "the alarm for seqs 6..7", || async {
        get_json(&format!("{api}/readyz")).await.1["data_loss"]
            .as_str()
            .is_some_and(|a| a.starts_with("EVENTS seqs 6..7 (2 messages) are gone"))
    })
    .await;
    assert_eq!(metric(&api, "socai_events_lost_total").await, 2.0);
    // A reopen finds the same gap: nothing is reported twice (it says so in its log, after the
    // restart).
    let logged = std::fs::read_to_string(&serve.log)
        .unwrap_or_default()
        .len();
    nats.kill();
    nats.restart().expect("nats-server restarts");
    wait_until(
        PATIENCE,
        "the ledger to reopen EVENTS at the same gap",
        || async {
            std::fs::read_to_string(&serve.log)
                .unwrap_or_default()
                .get(logged..)
                .is_some_and(|since| {
                    since.contains("EVENTS seqs up to 7 are still gone, as reported")
                })
        },
    )
    .await;
    assert_eq!(metric(&api, "socai_events_lost_total").await, 2.0);
    let (_, ready) = get_json(&format!("{api}/readyz")).await;
    let alarm = ready["data_loss"].as_str().unwrap_or_default();
    assert!(
        alarm.starts_with("EVENTS seqs 6..7") && !alarm.contains("later alarm"),
        "{ready}"
    );

    // An event after the gap moves the cursor past it: the next start raises no alarm.
    assert_eq!(publish("after-the-gap").await, 8);
    wait_processed(&mut serve, &js, PATIENCE).await;
    serve.stop();
    let mut serve = ledger.serve(&url, None);
    let api = serve.http_url();
    wait_ready(&api).await;
    assert_eq!(metric(&api, "socai_events_lost_total").await, 0.0);
    serve.stop();
    let held = held_ids(&ledger);
    assert_eq!(held, ["kept-1", "kept-3", "kept-5", "after-the-gap"]);
}

/// A stored cursor held back before a rejection REJECTED never took (it stays there while the
/// ledger commits what follows) does not make a later start take the messages after it for lost
/// once EVENTS no longer holds them (aged out past `max_age`: a purge here): the ledger recorded
/// how far it had read, so there is no data-loss alarm, only a warning that the rejection's copy
/// is gone with them; and nothing committed is committed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_ledger_read_past_a_held_cursor_are_not_taken_for_lost() {
    let Rig {
        ledger,
        nats: _nats,
        url,
        mut serve,
        js,
    } = rig(Some("[ingest]\nrejected_retry_s = 1\n"), None).await;
    let api = serve.http_url();
    wait_ready(&api).await;
    let publish = |payload: Vec<u8>| store_on_events(&js, payload);
    // Seq 1 committed: the stored cursor is there.
    publish(to_bytes(&submitted("before"))).await;
    wait_size(&api, 1, PATIENCE).await;
    js.delete_stream(socai_wire::stream::REJECTED)
        .await
        .expect("delete REJECTED");
    // Seq 2 rejected with nowhere to go; seqs 3 and 4 committed after it.
    publish(b"not an event".to_vec()).await;
    publish(to_bytes(&submitted("after-1"))).await;
    let last = publish(to_bytes(&submitted("after-2"))).await;
    wait_size(&api, 3, PATIENCE).await;
    wait_until(
        Duration::from_secs(60),
        "/readyz to report the unstored rejection",
        || async { get_json(&format!("{api}/readyz")).await.1["rejections_unstored"].is_string() },
    )
    .await;
    serve.stop();

    // EVENTS loses seqs 2..4 before the next start, as if they aged out.
    let events = js
        .get_stream(socai_wire::stream::EVENTS)
        .await
        .expect("EVENTS");
    events
        .purge()
        .sequence(last + 1)
        .await
        .expect("purge EVENTS");
    let mut serve = ledger.serve(&url, None);
    let api = serve.http_url();
    publish(to_bytes(&submitted("next"))).await;
    let limit = Duration::from_secs(120);
    wait_size(&api, 4, limit).await;
    let (status, ready) = get_json(&format!("{api}/readyz")).await;
    assert_eq!(status, 200, "no data-loss alarm: {ready}");
    assert_eq!(metric(&api, "socai_events_lost_total").await, 0.0);
    serve.stop();
    let log = std::fs::read_to_string(&serve.log).unwrap_or_default();
    assert!(
        log.contains("EVENTS seqs 2..4 are gone from the stream")
            && log.contains("after the ledger had read past them"),
        "the lost rejection's copy is warned of:\n{log}"
    );
    let held = held_ids(&ledger);
    assert_eq!(held, ["before", "after-1", "after-2", "next"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_ends_on_rejected_with_its_code_and_nothing_else_does() {
    use async_nats::jetstream::message::PublishMessage;
    let Rig {
        ledger,
        nats: _nats,
        url: _,
        mut serve,
        js,
    } = rig(None, None).await;

    // Two good events first (the conflict case reuses the first's id).
    let good = [submitted("good-1"), submitted("good-2")];
    let corpus = bad_corpus();
    assert!(corpus.len() >= 25, "the corpus has {} cases", corpus.len());
    let mut sent = Vec::new();
    for g in &good {
        sent.push((
            SUBMITTED.to_string(),
            serde_json::to_vec(g).expect("json"),
            None,
        ));
    }
    for (name, subject, payload, code, path) in &corpus {
        sent.push((
            subject.clone(),
            payload.clone(),
            Some((*name, *code, *path)),
        ));
    }
    // A republished good event under another msg-id: a duplicate, acked, never rejected.
    sent.push((
        SUBMITTED.to_string(),
        serde_json::to_vec(&good[1]).expect("json"),
        None,
    ));
    let mut stream_seq_of = HashMap::new();
    for (i, (subject, payload, case)) in sent.iter().enumerate() {
        let msg = PublishMessage::build()
            .payload(payload.clone().into())
            .message_id(format!("corpus-{i}"));
        let ack = js
            .send_publish(subject.clone(), msg)
            .await
            .expect("publish")
            .await
            .expect("stored on EVENTS");
        if let Some((name, _, _)) = case {
            stream_seq_of.insert(ack.sequence.to_string(), *name);
        }
    }
    wait_until(PATIENCE, "every case on REJECTED", || async {
        stream_messages(&js, socai_wire::stream::REJECTED).await >= corpus.len() as u64
    })
    .await;
    wait_committed(&js, 2, PATIENCE).await;

    let rejected = stream_contents(&js, socai_wire::stream::REJECTED).await;
    assert_eq!(
        rejected.len(),
        corpus.len(),
        "one REJECTED message per bad input"
    );
    let by_name: HashMap<&str, &socai_e2e::nats::Kept> = rejected
        .iter()
        .map(|k| {
            let seq = k.header("Socai-Stream-Seq").expect("Socai-Stream-Seq");
            (stream_seq_of[&seq], k)
        })
        .collect();
    for (name, subject, payload, code, path) in &corpus {
        let kept = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{name}: not on REJECTED"));
        assert_eq!(
            kept.header("Socai-Error-Code").as_deref(),
            Some(*code),
            "{name}"
        );
        assert_eq!(
            kept.header("Socai-Error-Path").as_deref(),
            Some(*path),
            "{name}"
        );
        let reason = kept.header("Socai-Error-Reason").unwrap_or_default();
        assert!(!reason.trim().is_empty(), "{name}: no reason");
        assert_eq!(
            kept.payload.as_ref(),
            payload.as_slice(),
            "{name}: original bytes kept"
        );
        assert_eq!(
            kept.header("Socai-Subject").as_deref(),
            Some(subject.as_str()),
            "{name}"
        );
        assert_eq!(
            kept.subject,
            subject.replacen("dvc.events", "dvc.rejected", 1),
            "{name}: REJECTED subject"
        );
    }
    serve.stop();
    let summary = serve.summary();
    assert_eq!(summary["committed"], 2, "{summary}");
    assert_eq!(summary["duplicates"], 1, "{summary}");
    assert_eq!(summary["rejected"], corpus.len(), "{summary}");
    let ids = held_ids(&ledger);
    assert_eq!(ids, ["good-1", "good-2"]);
}

/// A rejection REJECTED does not take within `[ingest] rejected_retry_s` (here REJECTED is gone)
/// is left for the next start: the ledger goes on committing, `/readyz` (still ready) and the
/// Prometheus counter say so, and the next start, which makes REJECTED again, rejects the
/// message again onto it. Nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_rejected_does_not_take_is_reported_and_the_next_start_stores_it() {
    let Rig {
        ledger,
        nats: _nats,
        url,
        mut serve,
        js,
    } = rig(Some("[ingest]\nrejected_retry_s = 1\n"), None).await;
    let api = serve.http_url();
    // Ready once the writer runs, which is after it made every stream: REJECTED stays deleted.
    wait_ready(&api).await;
    js.delete_stream(socai_wire::stream::REJECTED)
        .await
        .expect("delete REJECTED");
    for payload in [
        b"not an event".to_vec(),
        to_bytes(&submitted("after-the-bad-one")),
    ] {
        store_on_events(&js, payload).await;
    }
    // REJECTED is tried for a second: a minute is plenty.
    wait_until(
        Duration::from_secs(60),
        "/readyz to report the unstored rejection",
        || async { get_json(&format!("{api}/readyz")).await.1["rejections_unstored"].is_string() },
    )
    .await;
    let (status, ready) = get_json(&format!("{api}/readyz")).await;
    assert_eq!(
        (status, &ready["ready"]),
        (200, &serde_json::json!(true)),
        "{ready}"
    );
    socai_e2e::openapi::OpenApi::load().check_schema("Readiness", &ready);
    let says = ready["rejections_unstored"].as_str().unwrap_or_default();
    assert!(
        says.starts_with("1 rejection could not") && says.contains("restart `socai serve`"),
        "{ready}"
    );
    let metrics = reqwest::get(format!("{api}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    assert!(
        metrics.contains("socai_rejections_unstored_total 1"),
        "{metrics}"
    );
    // The good event behind it is committed all the same.
    wait_size(&api, 1, PATIENCE).await;
    serve.stop();

    // The next start makes REJECTED again and rejects the message again onto it.
    let mut serve = ledger.serve(&url, None);
    wait_until(PATIENCE, "REJECTED to hold the rejection", || async {
        stream_messages(&js, socai_wire::stream::REJECTED).await == 1
    })
    .await;
    let api = serve.http_url();
    let (_, ready) = get_json(&format!("{api}/readyz")).await;
    assert!(ready.get("rejections_unstored").is_none(), "{ready}");
    serve.stop();
    let held = ledger_events(&ledger);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].0, "after-the-bad-one");
}

/// A backlog of near-1 MiB messages (EVENTS takes them; the ledger rejects them as `oversized`)
/// is read a few MiB at a time: the ledger's memory grows by far less than the backlog. Before,
/// it pulled and held up to `batch_max_events` messages whatever their size (here all 200, about
/// 180 MiB, several copies of which were alive at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_large_messages_is_read_a_few_mib_at_a_time() {
    const MESSAGES: usize = 200;
    const SIZE: usize = 900 << 10;
    let Rig {
        ledger,
        nats: _nats,
        url,
        mut serve,
        js,
    } = rig(None, None).await;
    let api = serve.http_url();
    wait_ready(&api).await;
    // What the same ledger holds at most when it has nothing to read.
    let idle_kib = serve.peak_rss_kib();
    serve.stop();
    let payload = bytes::Bytes::from(vec![b'x'; SIZE]);
    for _ in 0..MESSAGES {
        store_on_events(&js, payload.clone()).await;
    }
    let mut serve = ledger.serve(&url, None);
    // Minutes at most (seconds here); a hang is a failure, not a reason to wait ten minutes.
    let limit = Duration::from_secs(180);
    wait_processed(&mut serve, &js, limit).await;
    // Held a few at a time, their REJECTED copies go out (a whole backlog's at once timed out
    // and was tried again until the retries gave up).
    wait_until(limit, "REJECTED to hold every message", || async {
        stream_messages(&js, socai_wire::stream::REJECTED).await == MESSAGES as u64
    })
    .await;
    // The peak so far: the copies are out, nothing of the backlog is held any more.
    let peak_kib = serve.peak_rss_kib();
    let grew_mib = peak_kib.saturating_sub(idle_kib) / 1024;
    let backlog_mib = (MESSAGES * SIZE) >> 20;
    eprintln!(
        "a {backlog_mib} MiB backlog: peak {} MiB, {} MiB idle",
        peak_kib / 1024,
        idle_kib / 1024
    );
    assert!(
        grew_mib < 120,
        "reading a {backlog_mib} MiB backlog took the ledger from {} to {} MiB",
        idle_kib / 1024,
        peak_kib / 1024
    );
    let kept = stream_contents(&js, socai_wire::stream::REJECTED).await;
    assert!(
        kept.iter()
            .all(|k| k.header("Socai-Error-Code").as_deref() == Some("oversized")),
        "every message is rejected as oversized"
    );
    serve.stop();
    assert!(ledger_events(&ledger).is_empty());
}

/// Checkpoints stored before `socai serve` started (an import that signed one every 2 entries:
/// more than the publisher reads from the store at a time) all go out on CHECKPOINTS, in order,
/// with nothing new committed to prompt them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_checkpoint_reaches_checkpoints_however_many_there_are() {
    let ledger = Ledger::new();
    ledger.configure("checkpoint_every_events = 2\nimport_batch_events = 2\n");
    let file = ledger.simulate("events.jsonl", 700, 8);
    ledger.ok(&["import", file.to_str().expect("path")]);
    let stored: Vec<u64> = {
        use socai_store::Storage;
        let storage = socai_store::DataDir::new(ledger.dir())
            .open_storage()
            .expect("open the ledger store");
        storage
            .checkpoints()
            .expect("checkpoints")
            .into_iter()
            .map(|(size, _)| size)
            .collect()
    };
    assert!(stored.len() > 300, "{} checkpoints stored", stored.len());
    let nats = start_nats(&ledger.path("nats"), false);
    let url = nats.url();
    let mut serve = ledger.serve(&url, None);
    let (client, _) = connect(&url, None).await;
    let js = async_nats::jetstream::new(client);
    wait_for_streams(&js).await;
    let total = stored.len() as u64;
    wait_until(
        Duration::from_secs(120),
        &format!("CHECKPOINTS to hold all {total} checkpoints"),
        || async { stream_messages(&js, socai_wire::stream::CHECKPOINTS).await >= total },
    )
    .await;
    serve.stop();
    let stream = js
        .get_stream(socai_wire::stream::CHECKPOINTS)
        .await
        .expect("CHECKPOINTS");
    let mut sizes = Vec::new();
    for seq in 1..=total {
        let m = stream.get_raw_message(seq).await.expect("a checkpoint");
        let size = m
            .headers
            .get(socai_wire::header::TREE_SIZE)
            .expect("a tree size header")
            .as_str()
            .parse::<u64>()
            .expect("a number");
        sizes.push(size);
    }
    assert_eq!(
        sizes, stored,
        "CHECKPOINTS holds every stored checkpoint, in order"
    );
}

/// Every message of COMMITTED continues the one before it, from entry 0 to entry `size - 1`:
/// no gap, no repeat, and none of its stream seqs missing.
async fn assert_committed_whole(js: &async_nats::jetstream::Context, size: u64) {
    let mut stream = js
        .get_stream(socai_wire::stream::COMMITTED)
        .await
        .expect("COMMITTED");
    let state = stream.info().await.expect("COMMITTED's info").state.clone();
    assert_eq!(
        state.messages,
        (state.last_sequence + 1).saturating_sub(state.first_sequence),
        "no stream seq missing inside COMMITTED: {state:?}"
    );
    let mut next = 0;
    for kept in stream_contents(js, socai_wire::stream::COMMITTED).await {
        let seq: u64 = kept
            .header("Socai-Seq")
            .expect("Socai-Seq")
            .parse()
            .unwrap();
        let count: u64 = kept
            .header("Socai-Count")
            .expect("Socai-Count")
            .parse()
            .unwrap();
        assert_eq!(seq, next, "COMMITTED continues at entry {next}");
        next = seq + count;
    }
    assert_eq!(next, size, "COMMITTED ends with the ledger's last entry");
}

/// Deletes the message at `stream`'s last seq, by hand; returns that seq.
async fn delete_last_message(stream: &mut async_nats::jetstream::stream::Stream) -> u64 {
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    assert!(
        stream.delete_message(last).await.expect("delete a message"),
        "message {last} deleted"
    );
    last
}

/// A message deleted by hand from COMMITTED (here its last one, while the ledger was stopped)
/// is never buried under new ones, which would leave a hole where projection workers stop: the
/// ledger holds COMMITTED where it is and says what to do (an error logged once, `/readyz`
/// naming the missing messages while staying ready, `socai_committed_stalled`), ingest goes on,
/// and once the operator purges COMMITTED the ledger publishes every entry again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_deleted_from_committed_hold_it_until_the_operator_purges_it() {
    let Rig {
        ledger,
        nats: _nats,
        url,
        mut serve,
        js,
    } = rig(Some("[ingest]\ncheckpoint_interval_s = 1\n"), None).await;
    let api = serve.http_url();
    // One commit, and one COMMITTED message, each.
    for (n, id) in ["c-1", "c-2", "c-3"].into_iter().enumerate() {
        store_on_events(&js, to_bytes(&submitted(id))).await;
        wait_until(PATIENCE, &format!("entry {n} on COMMITTED"), || async {
            metric(&api, "socai_committed_published_entries").await == n as f64 + 1.0
        })
        .await;
    }
    wait_last_checkpoint(&js, 3, PATIENCE).await;
    serve.stop();
    let mut committed = js
        .get_stream(socai_wire::stream::COMMITTED)
        .await
        .expect("COMMITTED");
    let last_seq = delete_last_message(&mut committed).await;
    assert_eq!(last_seq, 3, "one message per commit");

    let mut serve = ledger.serve(&url, None);
    let api = serve.http_url();
    wait_until(PATIENCE, "/readyz to say COMMITTED is stalled", || async {
        get_json(&format!("{api}/readyz")).await.1["committed_stalled"].is_string()
    })
    .await;
    // Ingest goes on, so the ledger stays ready.
    wait_ready(&api).await;
    let (_, ready) = get_json(&format!("{api}/readyz")).await;
    socai_e2e::openapi::OpenApi::load().check_schema("Readiness", &ready);
    let why = ready["committed_stalled"].as_str().unwrap_or_default();
    assert!(
        why.starts_with(&format!(
            "messages were deleted from COMMITTED outside the ledger, or lost by nats-server (1 of its stream seqs 1..{last_seq} hold no message; its last message is stream seq {}, below its last seq {last_seq})",
            last_seq - 1
        )) && why.contains("nats stream purge COMMITTED"),
        "{ready}"
    );
    assert_eq!(metric(&api, "socai_committed_stalled").await, 1.0);
    // Ingest and receipts go on; COMMITTED stays as it was.
    store_on_events(&js, to_bytes(&submitted("c-4"))).await;
    wait_size(&api, 4, PATIENCE).await;
    // Long enough for a few tries (one a second): the error is logged once, not on each.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = std::fs::read_to_string(&serve.log).unwrap_or_default();
    let errors = log
        .lines()
        .filter(|l| {
            l.contains("\"level\":\"ERROR\"") && l.contains("messages were deleted from COMMITTED")
        })
        .count();
    assert_eq!(errors, 1, "the stall is logged once:\n{log}");
    assert_eq!(
        stream_messages(&js, socai_wire::stream::COMMITTED).await,
        last_seq - 1
    );

    // The operator purges COMMITTED: every entry goes out again, with no hole. CHECKPOINTS
    // too, purged while the publisher is held (nothing asks for that; nothing is lost by it
    // either): every checkpoint goes out again, not dropped as a duplicate of its purged copy.
    let before = checkpoint_sizes(&js).await;
    assert_eq!(before.last(), Some(&3), "nothing went out while held");
    js.get_stream(socai_wire::stream::CHECKPOINTS)
        .await
        .expect("CHECKPOINTS")
        .purge()
        .await
        .expect("purge CHECKPOINTS");
    committed.purge().await.expect("purge COMMITTED");
    wait_until(PATIENCE, "every entry on COMMITTED again", || async {
        metric(&api, "socai_committed_published_entries").await == 4.0
            && stream_messages(&js, socai_wire::stream::COMMITTED).await > 0
    })
    .await;
    wait_last_checkpoint(&js, 4, PATIENCE).await;
    let after = checkpoint_sizes(&js).await;
    assert!(
        before.iter().all(|size| after.contains(size)) && after.is_sorted(),
        "CHECKPOINTS holds again, in order, every checkpoint it held (before {before:?}, after {after:?})"
    );
    let (status, ready) = get_json(&format!("{api}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready.get("committed_stalled").is_none(), "{ready}");
    assert_eq!(metric(&api, "socai_committed_stalled").await, 0.0);
    assert!(
        std::fs::read_to_string(&serve.log)
            .unwrap_or_default()
            .contains("COMMITTED has no hole any more: publishing committed entries resumes")
    );
    assert_committed_whole(&js, 4).await;

    // Deleted while the ledger runs: found within seconds, even once a new message went out
    // after it (it still met the expected last seq).
    store_on_events(&js, to_bytes(&submitted("c-5"))).await;
    wait_until(PATIENCE, "entry 4 on COMMITTED", || async {
        metric(&api, "socai_committed_published_entries").await == 5.0
    })
    .await;
    delete_last_message(&mut committed).await;
    store_on_events(&js, to_bytes(&submitted("c-6"))).await;
    wait_size(&api, 6, PATIENCE).await;
    wait_until(
        PATIENCE,
        "/readyz to say COMMITTED is stalled again",
        || async {
            get_json(&format!("{api}/readyz")).await.1["committed_stalled"]
                .as_str()
                .is_some_and(|why| why.contains("(1 of its stream seqs "))
        },
    )
    .await;
    serve.stop();
}

/// A checkpoint's publish answered as a duplicate of a copy that CHECKPOINTS no longer holds
/// (stored, then purged, inside the duplicate window) is published again under a new msg-id.
/// The copy here is planted by the test under the msg-id the ledger will use; in the field it
/// is a copy someone else published under that msg-id, or the ledger's own publish stored after
/// it last read CHECKPOINTS' last seq, whose PubAck was lost, with a purge before the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_answered_as_a_duplicate_of_a_purged_copy_goes_out_again() {
    use async_nats::jetstream::message::PublishMessage;
    let Rig {
        ledger,
        nats: _nats,
        url,
        mut serve,
        js,
    } = rig(Some("[ingest]\ncheckpoint_interval_s = 1\n"), None).await;
    store_on_events(&js, to_bytes(&submitted("d-1"))).await;
    wait_last_checkpoint(&js, 1, PATIENCE).await;
    serve.stop();
    let mut checkpoints = js
        .get_stream(socai_wire::stream::CHECKPOINTS)
        .await
        .expect("CHECKPOINTS");
    let state = checkpoints
        .info()
        .await
        .expect("CHECKPOINTS' info")
        .state
        .clone();
    let (held, last) = (state.messages, state.last_sequence);
    // Restarted on a purged CHECKPOINTS, the ledger publishes the `held` checkpoints it stored
    // again, one after the planted copy (seq `last + 1`), then checkpoint 2 under the msg-id
    // made of the seq before it: `last + 1 + held`.
    let planted = format!("checkpoint-2@{}", last + 1 + held);
    let ack = js
        .send_publish(
            socai_wire::subject::CHECKPOINT_SUBJECT,
            PublishMessage::build()
                .payload("planted".into())
                .message_id(planted.as_str())
                .header(socai_wire::header::TREE_SIZE, "2"),
        )
        .await
        .expect("publish the copy")
        .await
        .expect("CHECKPOINTS stores the copy");
    assert_eq!(ack.sequence, last + 1);
    checkpoints.purge().await.expect("purge CHECKPOINTS");
    store_on_events(&js, to_bytes(&submitted("d-2"))).await;
    let mut serve = ledger.serve(&url, None);
    wait_size(&serve.http_url(), 2, PATIENCE).await;
    // Well inside the duplicate window (120 s): not only once the planted copy's msg-id expired.
    wait_last_checkpoint(&js, 2, Duration::from_secs(45)).await;
    let sizes = checkpoint_sizes(&js).await;
    assert!(
        sizes.contains(&1) && sizes.is_sorted(),
        "every checkpoint, in order: {sizes:?}"
    );
    // Stored by the path under test: answered as a duplicate of the planted copy (seq
    // `last + 1`), then published under a msg-id of its own.
    let stored = stream_contents(&js, socai_wire::stream::CHECKPOINTS).await;
    let id = stored.last().and_then(|kept| kept.header("Nats-Msg-Id"));
    assert_eq!(id, Some(format!("{planted}-{}", last + 1)));
    serve.stop();
}

/// Waits up to `limit` for CHECKPOINTS' last checkpoint to be of tree size `size`.
async fn wait_last_checkpoint(js: &async_nats::jetstream::Context, size: u64, limit: Duration) {
    wait_until(
        limit,
        &format!("checkpoint {size} last on CHECKPOINTS"),
        || async { checkpoint_sizes(js).await.last() == Some(&size) },
    )
    .await;
}

/// The tree sizes of the checkpoints on CHECKPOINTS, in stream order.
async fn checkpoint_sizes(js: &async_nats::jetstream::Context) -> Vec<u64> {
    stream_contents(js, socai_wire::stream::CHECKPOINTS)
        .await
        .iter()
        .map(|kept| {
            kept.header(socai_wire::header::TREE_SIZE)
                .and_then(|size| size.parse().ok())
                .expect("a checkpoint's tree size")
        })
        .collect()
}

/// A valid event of agency `agency`.
fn event_of(agency: &str, id: &str) -> Event {
    let mut v = submitted(id);
    v["agency"] = serde_json::json!(agency);
    serde_json::from_value(v).expect("event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agencies_publish_only_as_themselves_and_dashboards_publish_nothing() {
    use socai_client::publisher::{PublishError, RetryPolicy};
    let ledger = Ledger::new();
    ledger.configure("[ingest]\ncheckpoint_interval_s = 1\n");
    let nats = start_nats(&ledger.path("nats"), true);
    let url = nats.url();

    // No password, or a wrong one: refused at connect.
    let anonymous =
        socai_client::publisher::connect(&socai_client::publisher::NatsConfig::new(&url)).await;
    assert!(anonymous.is_err(), "an anonymous client must be refused");
    let mut wrong = nats_config(&url, Some("000.00.12.H01"));
    wrong.password = Some("not-the-password".into());
    let err = socai_client::publisher::connect(&wrong)
        .await
        .expect_err("wrong password refused");
    assert!(err.to_string().contains("000.00.12.H01"), "{err}");

    let mut serve = ledger.serve(&url, Some("ledger"));
    let (client, _) = connect(&url, Some("ledger")).await;
    let js = async_nats::jetstream::new(client);
    wait_for_streams(&js).await;

    // The dashboard can subscribe to checkpoints (and sees the next one).
    let (dashboard, dashboard_errors) = connect(&url, Some("dashboard")).await;
    let mut checkpoints = dashboard
        .subscribe(socai_wire::subject::CHECKPOINT_SUBJECT)
        .await
        .expect("dashboard subscribes to checkpoints");
    dashboard.flush().await.expect("flush");

    // An agency publishes its own events (with the CLI, as an agency would).
    let h01 = "000.00.12.H01";
    let file = ledger.path("h01.jsonl");
    let own: Vec<String> = (0..3)
        .map(|i| serde_json::to_string(&event_of(h01, &format!("h01-{i}"))).expect("json"))
        .collect();
    // A last line that cannot be routed: reported by line number, the others still published.
    std::fs::write(&file, own.join("\n") + "\nnot an event\n").expect("write");
    let out = ledger
        .cmd(&["publish", file.to_str().expect("path"), "--nats", &url])
        .env("SOCAI_NATS_USER", h01)
        .env("SOCAI_NATS_PASSWORD", password(h01))
        .output()
        .expect("socai publish");
    let err = socai_e2e::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("h01.jsonl:4: not sent"), "{err}");
    assert!(err.contains("1 of 4 events were not stored"), "{err}");
    wait_committed(&js, 3, PATIENCE).await;
    // The checkpoint of all three (one of fewer may come first: a commit of the first event
    // alone can meet the checkpoint tick).
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let note = futures::StreamExt::next(&mut checkpoints)
                .await
                .expect("subscription open");
            if String::from_utf8_lossy(&note.payload).contains("test.socai/ledger\n3\n") {
                break;
            }
        }
    })
    .await
    .expect("the checkpoint of size 3 reaches the dashboard");

    // ... but not as another agency: the server refuses the subject, the publisher says so.
    let quick = RetryPolicy {
        give_up_after: Duration::from_secs(10),
        ..Default::default()
    };
    let agency = publisher(&url, Some(h01)).await.with_retry(quick);
    let events_before = stream_messages(&js, socai_wire::stream::EVENTS).await;
    let as_other = event_of("000.00.12.H02", "h01-as-h02");
    match agency.publish(&as_other).await {
        Err(PublishError::Refused { reason, .. }) => {
            assert!(reason.contains("Permissions Violation"), "{reason}")
        }
        other => panic!("publishing as another agency must be refused, got {other:?}"),
    }
    // Raw, to any other subject of the ledger: the server refuses each one by name.
    let (h01_client, h01_errors) = connect(&url, Some(h01)).await;
    for subject in [
        "dvc.events.000-00-12-H02.dossier.submitted",
        "dvc.ledger.committed",
        "dvc.rejected.000-00-12-H01.dossier.submitted",
        "$JS.API.STREAM.DELETE.EVENTS",
    ] {
        assert_refused(&h01_client, &h01_errors, subject).await;
    }
    // And its own subject carrying another agency's event: stored, then rejected by the ledger.
    let disguised = Outgoing {
        subject: socai_wire::subject::event_subject(h01, "dossier.submitted"),
        id: "h02-in-h01-subject".into(),
        payload: serde_json::to_vec(&event_of("000.00.12.H02", "h02-in-h01-subject"))
            .expect("json")
            .into(),
    };
    agency
        .publish_outgoing(disguised)
        .await
        .expect("own subject is allowed");
    wait_until(PATIENCE, "the disguised event on REJECTED", || async {
        stream_messages(&js, socai_wire::stream::REJECTED).await == 1
    })
    .await;
    let rejected = stream_contents(&js, socai_wire::stream::REJECTED).await;
    assert_eq!(
        rejected[0].header("Socai-Error-Code").as_deref(),
        Some("subject_mismatch")
    );
    assert_eq!(
        stream_messages(&js, socai_wire::stream::EVENTS).await,
        events_before + 1
    );

    // An agency cannot read another agency's rejections.
    let (h02, h02_errors) = connect(&url, Some("000.00.12.H02")).await;
    let _sub = h02
        .subscribe("dvc.rejected.000-00-12-H01.>")
        .await
        .expect("subscribe call");
    h02.flush().await.expect("flush");
    wait_until(
        Duration::from_secs(10),
        "the server to refuse the subscription",
        || async {
            h02_errors.recent().iter().any(|e| {
                e.contains(
                    "Permissions Violation for Subscription to \"dvc.rejected.000-00-12-H01.>\"",
                )
            })
        },
    )
    .await;

    // The dashboard publishes nothing: not events, not metrics, not stream admin requests.
    for subject in [
        "dvc.events.000-00-12-H01.dossier.submitted",
        "dvc.metrics.on_time_rate.national",
        "dvc.ledger.checkpoint",
        "$JS.API.STREAM.DELETE.EVENTS",
        "$KV.METRICS.on_time_rate",
    ] {
        assert_refused(&dashboard, &dashboard_errors, subject).await;
    }
    assert!(
        js.get_stream(socai_wire::stream::EVENTS).await.is_ok(),
        "EVENTS still exists"
    );
    assert_eq!(
        stream_messages(&js, socai_wire::stream::EVENTS).await,
        events_before + 1
    );

    // Squatting: H02 publishes, on its own subject, an event under H01's next id, and even sets
    // the JetStream message id H01's own publish would carry. H01's event is still stored and
    // committed (ids are unique per agency; a message id is nobody's to claim), and nothing H01
    // is told names H02's event.
    let squat = event_of("000.00.12.H02", "h01-3");
    let h02_js = async_nats::jetstream::new(h02.clone());
    for msg_id in ["h01-3", "000-00-12-H01/h01-3"] {
        h02_js
            .send_publish(
                socai_wire::subject::event_subject("000.00.12.H02", "dossier.submitted"),
                async_nats::jetstream::message::PublishMessage::build()
                    .payload(serde_json::to_vec(&squat).expect("json").into())
                    .message_id(msg_id),
            )
            .await
            .expect("H02 publishes on its own subject")
            .await
            .expect("stored");
    }
    let own_next = event_of(h01, "h01-3");
    let ack = agency
        .publish(&own_next)
        .await
        .expect("H01 publishes its own id");
    assert!(!ack.duplicate, "H01's event was taken for H02's: {ack:?}");
    wait_committed(&js, 5, PATIENCE).await;
    let rejected = stream_contents(&js, socai_wire::stream::REJECTED).await;
    assert_eq!(rejected.len(), 1, "only the disguised event was rejected");

    serve.stop();
    let events: Vec<(String, String)> = ledger_events(&ledger)
        .into_iter()
        .map(|e| (e.0, e.1))
        .collect();
    let h01_owned = |id: &str| (id.to_string(), h01.to_string());
    assert_eq!(
        events,
        [
            h01_owned("h01-0"),
            h01_owned("h01-1"),
            h01_owned("h01-2"),
            ("h01-3".to_string(), "000.00.12.H02".to_string()),
            h01_owned("h01-3"),
        ],
        "H02's squat and H01's own event are both committed, each as its agency's"
    );
}

/// Publishes to `subject` and waits for the server to refuse exactly that subject to this user.
async fn assert_refused(
    client: &async_nats::Client,
    errors: &socai_client::publisher::ServerErrors,
    subject: &'static str,
) {
    client
        .publish(subject, "{}".into())
        .await
        .expect("the client sends");
    client.flush().await.expect("flush");
    let refusal = format!("Permissions Violation for Publish to \"{subject}\"");
    wait_until(
        Duration::from_secs(10),
        &format!("the server to refuse {subject}"),
        || async { errors.recent().iter().any(|e| e.contains(&refusal)) },
    )
    .await;
}

#[test]
fn shipped_nats_configs_are_valid() {
    let root = repo_root();
    for config in [
        "deploy/nats/single.conf",
        "deploy/nats/cluster/node-1.conf",
        "deploy/nats/cluster/node-2.conf",
        "deploy/nats/cluster/node-3.conf",
    ] {
        let mut cmd = std::process::Command::new(nats_server_binary());
        cmd.args(["-t", "-c"]).arg(root.join(config));
        for (user, var) in USERS {
            cmd.env(var, password(user));
        }
        // The cluster's routes: their password and the three route URLs (deploy/nats/cluster).
        cmd.env("SOCAI_NATS_ROUTE_PASSWORD", ROUTE_PASSWORD);
        for n in 1..=3 {
            cmd.env(
                format!("SOCAI_NATS_ROUTE_{n}"),
                format!("nats-route://route:{ROUTE_PASSWORD}@nats-{n}:6222"),
            );
        }
        let out = cmd.output().expect("nats-server -t");
        assert!(
            out.status.success(),
            "{config}: {}",
            socai_e2e::stderr(&out)
        );
        // Without a password variable, the server refuses to start, naming it.
        let out = std::process::Command::new(nats_server_binary())
            .args(["-t", "-c"])
            .arg(root.join(config))
            .env_clear()
            .output()
            .expect("nats-server -t");
        assert!(
            !out.status.success(),
            "{config} must need its password variables"
        );
        assert!(
            socai_e2e::stderr(&out).contains("SOCAI_NATS_"),
            "{}",
            socai_e2e::stderr(&out)
        );
    }
}

/// Receipts received on `dvc.receipts.>` so far: (agency, id) → (seq, duplicate), parsed and
/// checked with the ledger's published key.
async fn collect_receipts(
    sub: &mut async_nats::Subscriber,
    vkey: &socai_chain::CheckpointVerifier,
    into: &mut HashMap<(String, String), Vec<(u64, bool)>>,
    wait: Duration,
) {
    while let Ok(Some(msg)) = tokio::time::timeout(wait, futures::StreamExt::next(sub)).await {
        let receipt = socai_chain::Receipt::from_json(&msg.payload).expect("a receipt");
        receipt.verify(vkey).expect("the receipt verifies");
        assert_eq!(
            msg.subject.as_str(),
            socai_wire::subject::receipts_subject(&receipt.agency),
            "a receipt goes to its own agency's subject"
        );
        for e in &receipt.events {
            into.entry((receipt.agency.clone(), e.id.clone()))
                .or_default()
                .push((e.seq, e.duplicate));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_receipt_is_sent_for_an_event_the_ledger_had_not_fsynced() {
    let ledger = Ledger::new();
    let nats = start_nats(&ledger.path("nats"), false);
    let url = nats.url();
    let (client, _) = connect(&url, None).await;
    let js = async_nats::jetstream::new(client.clone());
    let mut receipts = client.subscribe("dvc.receipts.>").await.expect("subscribe");
    client.flush().await.expect("flush");
    // The fault point: the third commit that carries entries stalls a second after sled took
    // the batch and before the fsync (a receipt sent too early would reach us meanwhile), then
    // aborts the process. The commits before it are fsynced and answered: receipts flow up to
    // the crash.
    let mut serve = ledger.serve_env(&url, None, &[("SOCAI_FAULT", "abort-before-fsync:3")]);
    wait_for_streams(&js).await;
    let vkey = ledger.verifier();
    let events = workload(300, 21);
    let publisher = publisher(&url, None).await;
    let answered = |got: &HashMap<(String, String), Vec<(u64, bool)>>, e: &Event| {
        got.contains_key(&(e.agency.clone(), e.id.clone()))
    };
    let mut got = HashMap::new();
    // In waves of 30, each once the one before is answered, until the ledger stops.
    let mut published = 0;
    for wave in events.chunks(30) {
        if !serve.running() {
            break;
        }
        let failed = publisher
            .publish_all(wave.iter().map(Outgoing::event), 64, |_| {})
            .await;
        assert_eq!(failed, 0);
        published += wave.len();
        let started = std::time::Instant::now();
        while serve.running() && !wave.iter().all(|e| answered(&got, e)) {
            assert!(
                started.elapsed() < PATIENCE,
                "a wave was not answered and the ledger did not stop"
            );
            collect_receipts(&mut receipts, &vkey, &mut got, Duration::from_millis(100)).await;
        }
    }
    let started = std::time::Instant::now();
    while serve.running() {
        assert!(
            started.elapsed() < PATIENCE,
            "the ledger did not stop at the fault point"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        std::fs::read_to_string(&serve.log)
            .unwrap_or_default()
            .contains("abort-before-fsync"),
        "the ledger stopped at the fault point"
    );
    collect_receipts(&mut receipts, &vkey, &mut got, Duration::from_millis(500)).await;
    assert!(
        !got.is_empty(),
        "the fault came after receipts for earlier commits (none of {published} published was answered)"
    );
    let fsynced: HashSet<String> = ledger_events(&ledger)
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let early: Vec<_> = got
        .keys()
        .filter(|(_, id)| !fsynced.contains(id))
        .take(3)
        .collect();
    assert!(
        early.is_empty(),
        "receipts were sent for events never fsynced: {early:?}"
    );
    // The rest of the workload, published while the ledger is down.
    let failed = publisher
        .publish_all(events[published..].iter().map(Outgoing::event), 64, |_| {})
        .await;
    assert_eq!(failed, 0);

    // Back without the fault: every event gets its receipt, and the ledger holds each once.
    let mut serve = ledger.serve(&url, None);
    let started = std::time::Instant::now();
    while got.len() < events.len() {
        assert!(
            started.elapsed() < PATIENCE,
            "only {} of {} events got a receipt",
            got.len(),
            events.len()
        );
        collect_receipts(&mut receipts, &vkey, &mut got, Duration::from_millis(200)).await;
    }
    serve.stop();
    let committed = ledger_events(&ledger);
    assert_eq!(committed.len(), events.len());
    let seqs: HashMap<&str, u64> = committed
        .iter()
        .enumerate()
        .map(|(seq, (id, _, _))| (id.as_str(), seq as u64))
        .collect();
    for e in &events {
        let answers = &got[&(e.agency.clone(), e.id.clone())];
        assert!(
            answers.iter().all(|(seq, _)| *seq == seqs[e.id.as_str()]),
            "event {} was answered with seqs {answers:?}, the ledger holds it at {}",
            e.id,
            seqs[e.id.as_str()]
        );
    }
    assert_exactly_once_in_order(&ledger, &events);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Simulates nats-server losing its unsynced writes in a crash (with its default sync, a
/// PubAck'ed message may sit in the page cache until the next sync): the last message block of
/// EVENTS loses its second half, and the stream's index goes too, as neither had been synced.
/// Returns the bytes cut.
fn lose_unsynced_events(store: &std::path::Path) -> u64 {
    let files = files_under(store);
    let in_events = |p: &std::path::Path| {
        p.components()
            .any(|c| c.as_os_str() == socai_wire::stream::EVENTS)
    };
    let mut blocks: Vec<(u64, &std::path::PathBuf)> = files
        .iter()
        .filter(|p| in_events(p) && p.extension().is_some_and(|e| e == "blk"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.parse().ok()?, p)))
        .collect();
    blocks.sort();
    let (_, last) = blocks.last().expect("EVENTS has a message block");
    let len = std::fs::metadata(last).expect("block").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .expect("open block");
    file.set_len(len / 2).expect("truncate block");
    for p in &files {
        if in_events(p) && p.file_name().is_some_and(|n| n == "index.db") {
            std::fs::remove_file(p).expect("remove index.db");
        }
    }
    len - len / 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_losing_unsynced_writes_loses_no_event_an_agency_waits_a_receipt_for() {
    use socai_client::receipts::{ReceiptOptions, ReceiptPublisher};
    // The shipped single-node config: auth, and nats-server's default sync (no fsync per
    // message); publishers wait for receipts and re-publish what has none.
    let Rig {
        ledger,
        mut nats,
        url,
        mut serve,
        js,
    } = rig(
        Some("[ingest]\ncheckpoint_interval_s = 1\n"),
        Some("ledger"),
    )
    .await;
    let vkey = ledger.verifier();
    let events = workload(12_000, 17);
    let mut publishing = Vec::new();
    for share in split_by_agency(&events, 2) {
        let receipts = ReceiptPublisher::new(
            publisher(&url, Some("gateway")).await,
            ReceiptOptions {
                receipt_timeout: Duration::from_secs(2),
                max_receipt_timeout: Duration::from_secs(4),
                give_up_after: Duration::from_secs(400),
                max_pending: 1500,
                max_in_flight: 64,
                verifier: Some(vkey.clone()),
            },
        );
        publishing.push(spawn_receipt_publisher(receipts, share));
    }
    wait_until(PATIENCE, "a third of the events committed", || async {
        committed_entries(&js).await >= 4000
    })
    .await;
    // The ledger pauses (SIGSTOP) while the publishers go on: the newest messages, the ones
    // the cut takes, are stored on EVENTS (sent without a PubAck, or PubAck'ed for the sampled
    // ones) but not committed, whatever the machine's speed.
    serve.signal("STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut events_stream = js
        .get_stream(socai_wire::stream::EVENTS)
        .await
        .expect("EVENTS");
    nats.kill();
    let before = events_stream.cached_info().state.last_sequence;
    let cut = lose_unsynced_events(&ledger.path("nats").join("jetstream"));
    nats.restart().expect("nats-server restarts");
    serve.signal("CONT");
    eprintln!("cut {cut} bytes of EVENTS (last seq {before} seen before the kill)");

    let mut republished = 0;
    for task in publishing {
        let (n, summary) = task.await.expect("publisher");
        assert_eq!(summary.no_receipt, 0, "{summary:?}");
        assert_eq!(summary.rejected + summary.not_published, 0, "{summary:?}");
        assert_eq!(summary.committed + summary.duplicates, n, "{summary:?}");
        assert_eq!(summary.bad_receipts, 0, "{summary:?}");
        republished += summary.republished;
    }
    assert!(
        republished > 0,
        "the cut must have taken stored events the ledger had not committed"
    );
    wait_processed(&mut serve, &js, PATIENCE).await;
    let log = std::fs::read_to_string(&serve.log).unwrap_or_default();
    assert!(
        serve.running(),
        "socai serve must ride out the loss; log:\n{log}"
    );
    serve.stop();
    // The cut took messages the ledger had read: it noticed, and read again from their time.
    assert!(
        log.contains("EVENTS no longer holds the message"),
        "the ledger did not notice EVENTS rewound; log:\n{log}"
    );
    let info = events_stream.info().await.expect("EVENTS info");
    eprintln!(
        "EVENTS: {} messages, last seq {} (was {before} before the kill)",
        info.state.messages, info.state.last_sequence
    );
    let committed = ledger_events(&ledger);
    let ids: HashSet<&str> = committed.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        ids.len(),
        committed.len(),
        "an event is in the ledger twice"
    );
    assert!(
        events.iter().all(|e| ids.contains(e.id.as_str())),
        "an event is missing"
    );
    assert_eq!(committed.len(), events.len());
    assert_eq!(ledger.verified_size(), events.len() as u64);
}

/// Group commit lingers for more events only while the writer is busy: with `linger_ms` far
/// beyond this test's patience, events published one at a time (each finding the writer idle)
/// are each committed at once, and a burst (the writer busy, so batches linger) is committed
/// without ever waiting the full linger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_writer_commits_at_once_and_a_busy_one_lingers_only_while_it_commits() {
    let toml = "[ingest]\nlinger_ms = 3600000\n";
    let Rig {
        ledger,
        nats: _nats,
        url,
        mut serve,
        js,
    } = rig(Some(toml), None).await;
    // Far below the linger: a chunk that waited for it could not be committed in time.
    let patience = Duration::from_secs(120);
    let events = workload(2003, 21);
    for (i, event) in events[..3].iter().enumerate() {
        let one = split_by_agency(std::slice::from_ref(event), 1);
        tokio::time::timeout(patience, publish_shares(url.clone(), None, one, 1, UNPACED))
            .await
            .expect("a lone event's receipt came without waiting for the linger");
        wait_committed(&js, i as u64 + 1, patience).await;
    }
    let burst = split_by_agency(&events[3..], 2);
    tokio::time::timeout(
        patience,
        publish_shares(url.clone(), None, burst, 256, UNPACED),
    )
    .await
    .expect("a burst's receipts came without waiting for the linger");
    wait_committed(&js, events.len() as u64, patience).await;
    wait_processed(&mut serve, &js, patience).await;
    serve.stop();
    assert_exactly_once_in_order(&ledger, &events);
}
