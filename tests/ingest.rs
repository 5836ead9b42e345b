//! Ingestion end to end: real nats-server processes (ephemeral ports, temp store dirs), the real
//! `socai serve` binary, real publishers; kill -9 of the ledger and of nats-server.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use socai_client::publisher::Outgoing;
use socai_e2e::Ledger;
use socai_e2e::nats::*;
use socai_model::Event;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A hang guard for waits, far above what any run here takes; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(600);

fn workload(n: usize, seed: u64) -> Vec<Event> {
    socai_sim::Generator::new(socai_sim::SimConfig {
        seed,
        provinces: 3,
        procedures_per_agency: 5,
        ..Default::default()
    })
    .take(n)
    .collect()
}

/// Splits events between `k` publishers by agency, so every subject has one publisher and one
/// publish order.
fn split_by_agency(events: &[Event], k: usize) -> Vec<Vec<Outgoing>> {
    let mut agencies: Vec<&str> = events.iter().map(|e| e.agency.as_str()).collect();
    agencies.sort_unstable();
    agencies.dedup();
    let owner: HashMap<&str, usize> = agencies.iter().enumerate().map(|(i, a)| (*a, i % k)).collect();
    let mut shares = vec![Vec::new(); k];
    for e in events {
        shares[owner[e.agency.as_str()]].push(Outgoing::event(e));
    }
    shares
}

/// Publishes each share from its own connection, concurrently; panics on any failure.
async fn publish_shares(url: &str, user: Option<&str>, shares: Vec<Vec<Outgoing>>, in_flight: usize) {
    let mut tasks = Vec::new();
    for share in shares {
        let publisher = publisher(url, user).await;
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            publisher
                .publish_all(share, in_flight, |r| {
                    if let Err(e) = r {
                        errors.push(e.to_string());
                    }
                })
                .await;
            errors
        }));
    }
    for t in tasks {
        let errors = t.await.expect("publisher task");
        assert!(errors.is_empty(), "publish failures: {:?}", &errors[..errors.len().min(5)]);
    }
}

/// Every event exactly once in the ledger, and for every subject (agency, type) the ledger's
/// order is the publish order.
fn assert_exactly_once_in_order(ledger: &Ledger, events: &[Event]) {
    let committed = ledger_events(ledger);
    let mut seen = HashSet::new();
    for (id, _, _) in &committed {
        assert!(seen.insert(id.clone()), "event {id} is in the ledger twice");
    }
    let expected: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(committed.len(), expected.len(), "ledger size");
    for (id, _, _) in &committed {
        assert!(expected.contains(id.as_str()), "the ledger holds {id}, which was never published");
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_events_from_four_publishers_exactly_once_in_subject_order() {
    let ledger = Ledger::new();
    // A 1 s JetStream dedup window, so the re-published events below reach the ledger, whose own
    // id index must answer "duplicate".
    ledger.configure("[ingest]\nduplicate_window_s = 1\ncheckpoint_interval_s = 1\n");
    let nats = start_nats(&ledger.path("nats"), false);
    let url = nats.url();
    let mut serve = ledger.serve(&url, None);
    let (client, _) = connect(&url, None).await;
    let js = async_nats::jetstream::new(client);
    wait_for_streams(&js).await;

    let events = workload(100_000, 11);
    publish_shares(&url, None, split_by_agency(&events, 4), 256).await;
    wait_committed(&js, events.len() as u64, PATIENCE).await;

    // Retries after the dedup window: 2 000 events again, from two publishers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut picked: Vec<usize> = (0..events.len()).collect();
    picked.shuffle(&mut rng);
    picked.truncate(2000);
    picked.sort_unstable();
    let again: Vec<Event> = picked.iter().map(|&i| events[i].clone()).collect();
    publish_shares(&url, None, split_by_agency(&again, 2), 64).await;
    wait_until(PATIENCE, "the re-published events to be acked", || async {
        let s = js.get_stream(socai_ingest::EVENTS).await.expect("EVENTS");
        let info = s.consumer_info("ledger").await.expect("consumer");
        info.ack_floor.stream_sequence >= 102_000 && info.num_ack_pending == 0
    })
    .await;
    assert_eq!(stream_messages(&js, socai_ingest::COMMITTED).await, 100_000);
    assert_eq!(stream_messages(&js, socai_ingest::REJECTED).await, 0);
    serve.stop();
    let summary = serve.summary();
    assert_eq!(summary["committed"], 100_000, "{summary}");
    assert_eq!(summary["duplicates"], 2000, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");

    assert_exactly_once_in_order(&ledger, &events);
    assert_eq!(ledger.verified_size(), 100_000);
}
