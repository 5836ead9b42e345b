//! The shipped 3-node JetStream cluster under fire (issue 15): `deploy/nats/cluster/` run on
//! loopback with its authenticated routes, R3 streams, the real `socai serve`, two `socai
//! project` shards and a publisher that waits for receipts, all given the three nodes as one seed
//! list. Nodes are killed with kill -9 and brought back under load, the EVENTS and COMMITTED
//! stream leaders among them, and the ledger is killed and restarted while a node is down. Every
//! published event must end committed exactly once, COMMITTED must hold the ledger's entries with
//! no gap, `socai verify` must pass and the published metrics must match the ledger.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use socai_client::publisher::Outgoing;
use socai_client::receipts::{Outcome, ReceiptOptions, Report};
use socai_e2e::nats::*;
use socai_e2e::{Ledger, stderr, stdout};
use socai_testkit::LocalNats;
use socai_wire::stream::{CHECKPOINTS, COMMITTED, EVENTS, REJECTED};

/// A hang guard for waits, far above what any run here takes; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(600);

fn project(ledger: &Ledger, seeds: &str, shard: usize) -> Serve {
    let dir = ledger.path(&format!("worker-{shard}"));
    let name = format!("p{shard}");
    let shard = format!("{shard}/2");
    ledger.spawn(
        &dir,
        &["project", "--name", &name, "--shard", &shard],
        seeds,
        Some("projector"),
        "projector resuming",
    )
}

/// The node (index into the cluster) that leads `stream` now, once it has a leader.
async fn leader_of(js: &async_nats::jetstream::Context, stream: &str) -> usize {
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
            return node - 1;
        }
        assert!(started.elapsed() < PATIENCE, "{stream} never got a leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// kill -9 of one node, a pause under load, then the node back on its port and store.
async fn kill_and_restore(nodes: &mut [LocalNats], i: usize, phase: &dyn Fn(&str)) {
    nodes[i].kill();
    phase(&format!("node {} killed", i + 1));
    tokio::time::sleep(Duration::from_secs(2)).await;
    nodes[i]
        .restart()
        .unwrap_or_else(|e| panic!("node {} restarts: {e}", i + 1));
    phase(&format!("node {} back", i + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_leaders_killed_under_load_lose_and_double_nothing() {
    let n = 6_000usize;
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let ledger = Ledger::new();
    ledger.configure("[ingest]\nstream_replicas = 3\ncheckpoint_interval_s = 1\n");
    let mut nodes = start_cluster(&ledger.path("cluster"));
    let seeds = seed_list(&nodes);
    let mut serve = ledger.serve(&seeds, Some("ledger"));
    let (client, _) = connect(&seeds, Some("ledger")).await;
    let js = async_nats::jetstream::new(client);
    wait_for_streams(&js).await;
    for name in [EVENTS, COMMITTED, CHECKPOINTS, REJECTED] {
        let replicas = js
            .get_stream(name)
            .await
            .expect("stream")
            .info()
            .await
            .expect("stream info")
            .config
            .num_replicas;
        assert_eq!(replicas, 3, "{name} is R3");
    }
    let mut workers = [project(&ledger, &seeds, 0), project(&ledger, &seeds, 1)];
    phase("three nodes, serve and two workers started");

    // The workload, in parts that each wait for their receipts, so the kills below land while
    // events flow. The gateway publishes for every agency and receives all their receipts.
    let events: Vec<Outgoing> = socai_sim::Generator::new(socai_sim::SimConfig {
        seed: 15,
        provinces: 3,
        communes_per_province: 2,
        procedures_per_agency: 5,
        ..Default::default()
    })
    .take(n)
    .map(|e| Outgoing::event(&e))
    .collect();
    let published_ids: BTreeSet<(String, String)> = events
        .iter()
        .map(|o| {
            let agency = o
                .subject
                .split('.')
                .nth(2)
                .expect("dvc.events.<agency>.<type>")
                .replace('-', ".");
            (agency, o.id.clone())
        })
        .collect();
    assert_eq!(published_ids.len(), n, "the simulator gives distinct ids");
    let gateway = publisher(&seeds, Some("gateway"))
        .await
        .with_receipts(ReceiptOptions {
            receipt_timeout: Duration::from_secs(5),
            max_receipt_timeout: Duration::from_secs(20),
            verifier: Some(ledger.verifier()),
            ..ReceiptOptions::default()
        });
    // The last sixth waits until every kill is over, so the ledger's reading after the last
    // one is exercised too.
    let (kills_done, mut after_kills) = tokio::sync::watch::channel(false);
    let publishing = tokio::spawn(async move {
        let mut seqs: HashMap<(String, String), u64> = HashMap::new();
        let (mut committed, mut duplicates, mut republished) = (0u64, 0u64, 0u64);
        let last_part = n - n / 6;
        for (i, part) in events.chunks(200).enumerate() {
            if i * 200 >= last_part {
                after_kills
                    .wait_for(|done| *done)
                    .await
                    .expect("the kills end");
            }
            let summary = gateway
                .publish_all(part.iter().cloned().map(|m| (m, ())), |report| {
                    if let Report::Event(e) = report {
                        let seq = match e.outcome {
                            Outcome::Committed { seq, .. } | Outcome::Duplicate { seq, .. } => seq,
                            other => panic!("{} {}: {other:?}", e.agency, e.id),
                        };
                        // An event answered twice (a receipt, then a duplicate answer to a
                        // re-publish) has one seq.
                        let key = (e.agency.clone(), e.id.clone());
                        assert_eq!(*seqs.entry(key).or_insert(seq), seq, "{}", e.id);
                    }
                })
                .await
                .expect("receipts can be received");
            assert_eq!(
                (
                    summary.rejected,
                    summary.no_receipt,
                    summary.not_published,
                    summary.bad_receipts
                ),
                (0, 0, 0, 0),
                "{summary:?}"
            );
            committed += summary.committed;
            duplicates += summary.duplicates;
            republished += summary.republished;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        (seqs, committed, duplicates, republished)
    });

    let at = |sixth: u64| sixth * n as u64 / 6;
    let committed_past = |target: u64| {
        let js = js.clone();
        async move {
            wait_until(PATIENCE, &format!("{target} entries on COMMITTED"), || {
                let js = js.clone();
                async move { committed_entries(&js).await >= target }
            })
            .await;
        }
    };
    // 1. A node that leads nothing of EVENTS.
    committed_past(at(1)).await;
    let leader = leader_of(&js, EVENTS).await;
    kill_and_restore(&mut nodes, (leader + 1) % 3, &phase).await;
    // 2. The EVENTS leader.
    committed_past(at(2)).await;
    let leader = leader_of(&js, EVENTS).await;
    phase(&format!("EVENTS is led by node {}", leader + 1));
    kill_and_restore(&mut nodes, leader, &phase).await;
    // 3. The ledger killed, a node lost, the ledger restarted on the other side of the loss
    // (its seed list still names the dead node), then the node back.
    committed_past(at(3)).await;
    serve.kill();
    let lost = leader_of(&js, COMMITTED).await;
    nodes[lost].kill();
    phase(&format!(
        "ledger and node {} (COMMITTED's leader) killed",
        lost + 1
    ));
    serve = ledger.serve(&seeds, Some("ledger"));
    let before = committed_entries(&js).await;
    committed_past(before + 300).await;
    phase("the restarted ledger commits with a node down");
    nodes[lost]
        .restart()
        .unwrap_or_else(|e| panic!("node {} restarts: {e}", lost + 1));
    phase(&format!("node {} back", lost + 1));
    // 4. The COMMITTED leader again, wherever it is now.
    committed_past(at(4)).await;
    let leader = leader_of(&js, COMMITTED).await;
    kill_and_restore(&mut nodes, leader, &phase).await;
    kills_done.send(true).expect("the publisher waits");

    let (seqs, committed, duplicates, republished) = publishing.await.expect("publisher");
    phase(&format!(
        "every event answered: {committed} committed, {duplicates} duplicates, {republished} re-published"
    ));
    assert_eq!(seqs.len(), n, "every event has its seq");
    assert_eq!(committed + duplicates, n as u64);
    committed_past(n as u64).await;
    wait_processed(&mut serve, &js, PATIENCE).await;
    wait_until(PATIENCE, "both workers published at the final size", || {
        let seeds = seeds.clone();
        async move {
            let (client, _) = connect(&seeds, Some("dashboard")).await;
            let js = socai_client::jetstream(client).await;
            let marks: Vec<u64> = socai_projector::read_published(&js, false, "_workers.>")
                .await
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(_, p)| match p {
                    socai_projector::Published::Mark(m) => Some(m.tree_size),
                    _ => None,
                })
                .collect();
            marks.len() == 2 && marks.iter().all(|&size| size == n as u64)
        }
    })
    .await;
    phase("both workers published at the final size");

    // COMMITTED: every message continues the one before, and together they are the ledger's
    // entries, byte for byte.
    let mut on_committed: Vec<Vec<u8>> = Vec::new();
    for kept in stream_contents(&js, COMMITTED).await {
        let seq: u64 = kept
            .header("Socai-Seq")
            .expect("Socai-Seq")
            .parse()
            .unwrap();
        assert_eq!(seq, on_committed.len() as u64, "COMMITTED continues");
        let entries =
            socai_chain::tiles::split_entry_bundle(&kept.payload).expect("an entry bundle");
        on_committed.extend(entries.iter().map(|e| e.to_vec()));
    }
    assert_eq!(stream_messages(&js, REJECTED).await, 0);
    for w in &mut workers {
        w.stop();
    }
    serve.stop();
    let entries = ledger_entries(&ledger);
    assert_eq!(
        entries.len(),
        n,
        "exactly once: one entry per published event"
    );
    assert!(
        on_committed == entries,
        "COMMITTED holds the ledger's entries"
    );
    let in_ledger: BTreeSet<(String, String)> = ledger_events(&ledger)
        .into_iter()
        .map(|(id, agency, _)| (agency, id))
        .collect();
    assert!(
        in_ledger == published_ids,
        "the ledger holds what was published"
    );
    for ((agency, id), seq) in &seqs {
        let v: serde_json::Value =
            serde_json::from_slice(&entries[*seq as usize]).expect("entry json");
        assert_eq!(
            (v["event"]["agency"].as_str(), v["event"]["id"].as_str()),
            (Some(agency.as_str()), Some(id.as_str())),
            "the receipt's seq {seq} holds its event"
        );
    }
    assert_eq!(ledger.verified_size(), n as u64);

    // The auditor, over the cluster: every published value matches the ledger.
    let out = ledger
        .cmd(&["--json", "--nats", &seeds, "audit", "metrics"])
        .env("SOCAI_NATS_USER", "dashboard")
        .env("SOCAI_NATS_PASSWORD", password("dashboard"))
        .output()
        .expect("socai audit metrics runs");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let report: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().unwrap_or(b"null"))
            .expect("audit json");
    assert_eq!(report["at"], n as u64);
    assert_eq!(report["checked"], report["matched"]);
    assert_eq!(
        report["complete_for_workers"],
        serde_json::json!(["p0", "p1"])
    );
    phase("verified and audited");
}

/// The monitoring port of a node started by LocalNats (`-m -1`), from its log.
fn monitor_port(dir: &std::path::Path) -> u16 {
    let log = std::fs::read_to_string(dir.join("nats-server.log")).unwrap_or_default();
    log.lines()
        .find_map(|l| l.split("Starting http monitor on ").nth(1))
        .and_then(|addr| addr.trim().rsplit(':').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no monitor port in the log:\n{log}"))
}

/// The server names a node has routes to (its `/routez`).
async fn routed_to(port: u16) -> BTreeSet<String> {
    let routez: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/routez"))
        .await
        .and_then(|r| r.error_for_status())
        .expect("/routez answers")
        .json()
        .await
        .expect("/routez json");
    routez["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["remote_name"].as_str().map(String::from))
        .collect()
}

/// Routes authenticate: a node dialing with the wrong route password is refused, while one with
/// the right password joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_route_password_is_refused() {
    let ledger = Ledger::new();
    let socai_testkit::ShippedCluster {
        nodes,
        route_env: routes,
        ..
    } = socai_testkit::shipped_cluster_in(
        &repo_root().join("deploy/nats"),
        &ledger.path("cluster"),
        ROUTE_PASSWORD,
    )
    .expect("copy the shipped cluster configs");
    let users = || {
        USERS
            .iter()
            .map(|(user, var)| (var.to_string(), password(user)))
    };
    let start = |i: usize, env: Vec<(String, String)>| {
        socai_testkit::LocalNats::start(socai_testkit::LocalNatsOptions {
            binary: nats_server_binary(),
            dir: nodes[i].dir.clone(),
            config: Some(nodes[i].config.clone()),
            env,
            port: 0,
        })
        .expect("node starts")
    };
    let _one = start(0, users().chain(routes.clone()).collect());
    // Node 2 holds another password: it dials with it and accepts only it.
    let wrong: Vec<(String, String)> = routes
        .iter()
        .map(|(k, v)| (k.clone(), v.replace(ROUTE_PASSWORD, "not-the-password")))
        .collect();
    let _two = start(1, users().chain(wrong).collect());
    let _three = start(2, users().chain(routes.clone()).collect());
    let port = monitor_port(&nodes[0].dir);
    wait_until(PATIENCE, "node 1 to route to node 3", || async {
        routed_to(port).await.contains("socai-nats-3")
    })
    .await;
    let log = |i: usize| {
        std::fs::read_to_string(nodes[i].dir.join("nats-server.log")).unwrap_or_default()
    };
    wait_until(PATIENCE, "node 1 to refuse node 2's route", || async {
        log(0).contains("Authorization Violation")
    })
    .await;
    assert!(
        !routed_to(port).await.contains("socai-nats-2"),
        "node 1 took a route from node 2 with the wrong password:\n{}",
        log(0)
    );
}
