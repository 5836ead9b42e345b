//! Witnesses (C2SP tlog-witness and tlog-cosignature), end to end with the real binary:
//! `socai witness serve` processes cosign the checkpoints a running `socai serve` sends them;
//! the API serves the cosignatures; `socai verify --api --witness` requires k of n. A witness
//! refuses a fork (another log signing with the same key) and a rollback (an older copy of the
//! log), and still refuses after kill -9 and a restart.

use std::path::Path;
use std::time::Duration;

use socai_e2e::nats::*;
use socai_e2e::witness::WitnessProcess;
use socai_e2e::{Ledger, stderr};

/// A hang guard for waits, far above what any run here takes; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(90);

/// Imports `n` simulated events (from `seed`) into `l` and signs a checkpoint over them.
fn grow(l: &Ledger, file: &str, n: u64, seed: u64) {
    l.ok(&["import", l.simulate(file, n, seed).to_str().unwrap()]);
    l.ok(&["checkpoint"]);
}

/// The ledger's latest signed checkpoint size and root (hex), from its API.
async fn latest(api: &str) -> (u64, String) {
    let (status, v) = get_json(&format!("{api}/v1/checkpoints/latest")).await;
    assert_eq!(status, 200, "{v}");
    (
        v["size"].as_u64().unwrap(),
        v["root"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn witnesses_cosign_a_running_ledger_and_verify_requires_k_of_n() {
    let l = Ledger::new();
    let nats = start_nats(&l.path("nats"), false);
    let log_vkey = l.dir().join("checkpoint.vkey");
    let w1_vkey = WitnessProcess::init(&l.path("w1"), "w1.test/witness");
    let w2_vkey = WitnessProcess::init(&l.path("w2"), "w2.test/witness");
    let w3_vkey = WitnessProcess::init(&l.path("w3"), "w3.test/witness");
    let mut w1 = WitnessProcess::start(&l.path("w1"), &log_vkey, "127.0.0.1:0");
    let w2 = WitnessProcess::start(&l.path("w2"), &log_vkey, "127.0.0.1:0");
    // w1 from socai.toml, w2 from the command line.
    l.configure(&format!(
        "[ingest]\ncheckpoint_interval_s = 1\n\n[[witnesses]]\nurl = \"{}\"\nvkey = \"{w1_vkey}\"\n",
        w1.url()
    ));
    let w2_spec = format!("{}={w2_vkey}", w2.url());
    let mut serve = l.spawn(
        &l.dir(),
        &["serve", "--http", "127.0.0.1:0", "--witness", &w2_spec],
        &nats.url(),
        None,
        "serving",
    );
    let api = serve.http_url();
    let events = l.simulate("events.jsonl", 300, 1);
    let publish = |file: &Path| {
        l.ok(&["publish", file.to_str().unwrap(), "--nats", &nats.url()]);
    };
    publish(&events);

    // Both witnesses cosign the checkpoint that covers every event.
    wait_until(
        PATIENCE,
        "a checkpoint of 300 cosigned by both witnesses",
        || {
            let api = api.clone();
            async move {
                let (status, v) = get_json(&format!("{api}/v1/checkpoints/witnessed?min=2")).await;
                status == 200 && v["size"].as_u64() == Some(300)
            }
        },
    )
    .await;
    let (_, witnessed) = get_json(&format!("{api}/v1/checkpoints/witnessed?min=2")).await;
    let openapi = socai_e2e::openapi::OpenApi::load();
    openapi.check_schema("WitnessedCheckpoint", &witnessed);
    let (_, latest_json) = get_json(&format!("{api}/v1/checkpoints/latest")).await;
    openapi.check_schema("Checkpoint", &latest_json);
    assert_eq!(latest_json["cosignatures"], witnessed["cosignatures"]);
    let (size, root) = latest(&api).await;
    assert_eq!(
        (size, root.as_str()),
        (300, witnessed["root"].as_str().unwrap())
    );
    assert_eq!(witnessed["cosignatures"].as_array().unwrap().len(), 2);
    assert_eq!(w1.cosigned().await, Some((300, root.clone())));
    assert_eq!(w2.cosigned().await, Some((300, root.clone())));
    // The C2SP checkpoint carries the log's signature and both cosignatures, and each
    // cosignature verifies with its witness's key over that very note.
    let note = reqwest::get(format!("{api}/checkpoint"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let witnesses: Vec<_> = [&w1_vkey, &w2_vkey]
        .iter()
        .map(|v| socai_chain::cosign::CosignatureVerifier::from_vkey(v).unwrap())
        .collect();
    let checked = socai_chain::cosign::verify_witnessed(&note, &l.verifier(), &witnesses, 2)
        .expect("cosigned");
    assert_eq!(checked.signed.checkpoint.size, 300);
    assert_eq!(note.matches("\n— ").count(), 3, "{note}");
    let (_, reports) = get_json(&format!("{api}/v1/witnesses")).await;
    openapi.check_schema("Witnesses", &reports);
    let reports = reports["witnesses"].as_array().unwrap().clone();
    assert_eq!(reports.len(), 2);
    for r in &reports {
        assert_eq!(r["cosigned_size"], 300, "{r}");
        assert!(r["error"].is_null(), "{r}");
    }
    let metrics = reqwest::get(format!("{api}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("socai_witness_cosigned_size{witness=\"w1.test/witness\"} 300"),
        "{metrics}"
    );

    // verify: both witnesses required (the default), one of two, and a witness that never
    // cosigned this log.
    let key_file = |name: &str, vkey: &str| {
        let path = l.path(name);
        std::fs::write(&path, format!("{vkey}\n")).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (k1, k2, k3) = (
        key_file("w1.vkey", &w1_vkey),
        key_file("w2.vkey", &w2_vkey),
        key_file("w3.vkey", &w3_vkey),
    );
    let vkey = log_vkey.to_str().unwrap();
    let v = l.json(&[
        "--api",
        &api,
        "verify",
        "--vkey",
        vkey,
        "--witness",
        &k1,
        "--witness",
        &k2,
    ]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["report"]["entries"], 300);
    let names: Vec<_> = v["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["w1.test/witness", "w2.test/witness"]);
    let one_of_two = l.json(&[
        "--api",
        &api,
        "verify",
        "--vkey",
        vkey,
        "--witness",
        &k1,
        "--witness",
        &k3,
        "--witnesses",
        "1",
    ]);
    assert_eq!(one_of_two["ok"], true);
    let out = l.run(&[
        "--api",
        &api,
        "verify",
        "--vkey",
        vkey,
        "--witness",
        &k1,
        "--witness",
        &k3,
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no checkpoint is cosigned by 2 witnesses of the 2 named"),
        "{}",
        stderr(&out)
    );
    let out = l.run(&[
        "--api",
        &api,
        "verify",
        "--vkey",
        vkey,
        "--witness",
        &k1,
        "--witnesses",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("more than the 1 --witness keys given"));

    // w1 killed -9 while the log grows, then restarted on its directory: it picks up from the
    // size it had recorded, and both cosign the new checkpoint.
    w1.kill();
    publish(&l.simulate("more.jsonl", 200, 2));
    wait_until(PATIENCE, "the log reports w1 failing", || {
        let api = api.clone();
        async move {
            let (_, v) = get_json(&format!("{api}/v1/witnesses")).await;
            v["witnesses"][0]["error"].is_string()
        }
    })
    .await;
    // What it recorded, read while w1 is down: the collector retries w1 on its
    // own schedule, so once w1 is back it may cosign a newer checkpoint (up to 500) before the
    // test asks.
    let state = std::fs::read_dir(l.path("w1").join("logs"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "checkpoint"))
        .expect("w1's state file");
    let state = std::fs::read_to_string(state.path()).unwrap();
    assert_eq!(state.lines().nth(1), Some("300"), "{state}");
    w1.kill_and_restart();
    match w1.cosigned().await {
        Some((300, r)) => assert_eq!(r, root),
        Some((size, _)) if (301..=500).contains(&size) => {}
        other => panic!("w1 after its restart holds {other:?}, expected 300 (or up to 500)"),
    }
    wait_until(
        PATIENCE,
        "a checkpoint of 500 cosigned by both witnesses",
        || {
            let api = api.clone();
            async move {
                let (status, v) = get_json(&format!("{api}/v1/checkpoints/witnessed?min=2")).await;
                status == 200 && v["size"].as_u64() == Some(500)
            }
        },
    )
    .await;
    let (_, reports) = get_json(&format!("{api}/v1/witnesses")).await;
    assert!(reports["witnesses"][0]["error"].is_null(), "{reports}");
    // Restarted, w1 went on from 300 (a witness that lost its state would have told a smaller
    // size, which the log reports).
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(log.contains("witness: no cosignature"), "{log}");
    assert!(!log.contains("lost its state"), "{log}");
    serve.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_witness_refuses_a_fork_and_a_rollback_and_still_does_after_kill_9() {
    // Three data dirs with one key: the honest log, a rollback (a copy of it taken earlier) and
    // a fork (the same key, other events). No nats-server: `socai serve` sends its checkpoints
    // to witnesses while it waits for one.
    let honest = Ledger::new();
    let fork = honest.copy();
    grow(&honest, "a1.jsonl", 120, 1);
    let rollback = honest.copy();
    grow(&honest, "a2.jsonl", 80, 2);
    grow(&fork, "b.jsonl", 260, 3);
    let log_vkey = honest.dir().join("checkpoint.vkey");
    let w_vkey = WitnessProcess::init(&honest.path("w"), "w.test/witness");
    let mut witness = WitnessProcess::start(&honest.path("w"), &log_vkey, "127.0.0.1:0");
    let spec = format!("{}={w_vkey}", witness.url());
    let no_nats = "nats://127.0.0.1:1";
    let serve = |l: &Ledger| -> (Serve, String) {
        let mut s = l.spawn(
            &l.dir(),
            &["serve", "--http", "127.0.0.1:0", "--witness", &spec],
            no_nats,
            None,
            "serving",
        );
        let api = s.http_url();
        (s, api)
    };
    let witness_error = |api: String| async move {
        let error = |api: String| async move {
            let (_, v) = get_json(&format!("{api}/v1/witnesses")).await;
            v["witnesses"][0]["error"].as_str().unwrap_or("").to_owned()
        };
        wait_until(PATIENCE, "the log reports the witness's refusal", || {
            let api = api.clone();
            async move { !error(api).await.is_empty() }
        })
        .await;
        let (status, _) = get_json(&format!("{api}/v1/checkpoints/witnessed")).await;
        assert_eq!(status, 404);
        error(api).await
    };

    // The honest log of 200 is cosigned.
    let (mut s, api) = serve(&honest);
    let (size, root) = latest(&api).await;
    assert_eq!(size, 200);
    wait_until(PATIENCE, "the honest checkpoint cosigned", || {
        let api = api.clone();
        async move { get_json(&format!("{api}/v1/checkpoints/witnessed")).await.0 == 200 }
    })
    .await;
    assert_eq!(witness.cosigned().await, Some((200, root.clone())));
    s.kill();

    for round in ["before", "after"] {
        // A fork of 260 entries signed with the same key: refused as inconsistent (422).
        let (mut s, api) = serve(&fork);
        assert_eq!(latest(&api).await.0, 260);
        let error = witness_error(api).await;
        assert!(
            error.contains("not consistent") && error.contains("422"),
            "{round} the restart: {error}"
        );
        s.kill();
        // The log as it was at 120 entries: refused as a rollback.
        let (mut s, api) = serve(&rollback);
        assert_eq!(latest(&api).await.0, 120);
        let error = witness_error(api).await;
        assert!(
            error.contains("cosigned size 200 of this log, more than its latest checkpoint (120)"),
            "{round} the restart: {error}"
        );
        s.kill();
        assert_eq!(witness.cosigned().await, Some((200, root.clone())));
        // The witness logged the fork's checkpoint as evidence.
        let log = std::fs::read_to_string(&witness.log).unwrap_or_default();
        assert!(
            log.contains("refused: inconsistent") && log.contains("260"),
            "{log}"
        );
        witness.kill_and_restart();
        assert_eq!(witness.cosigned().await, Some((200, root.clone())));
    }

    // The honest log goes on and is cosigned again.
    grow(&honest, "a3.jsonl", 30, 4);
    let (mut s, api) = serve(&honest);
    wait_until(PATIENCE, "the honest log's 230 cosigned", || {
        let api = api.clone();
        async move {
            let (status, v) = get_json(&format!("{api}/v1/checkpoints/witnessed")).await;
            status == 200 && v["size"].as_u64() == Some(230)
        }
    })
    .await;
    assert_eq!(witness.cosigned().await.map(|c| c.0), Some(230));
    s.kill();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_witness_that_follows_the_log_cosigns_it_and_refuses_a_fork_it_is_served() {
    // The witness reads the log's API itself (`--follow`) and posts its cosignatures; the log
    // lists it with no url. The ledger serves on one fixed address across restarts, as a
    // production log would; no nats-server.
    let honest = Ledger::new();
    let fork = honest.copy();
    grow(&honest, "a1.jsonl", 100, 1);
    grow(&fork, "b.jsonl", 150, 3);
    let log_vkey = honest.dir().join("checkpoint.vkey");
    let w_vkey = WitnessProcess::init(&honest.path("w"), "follower.test/witness");
    let config = format!("[[witnesses]]\nvkey = \"{w_vkey}\"\n");
    honest.configure(&config);
    fork.configure(&config);
    let port = socai_testkit::free_port().unwrap();
    let addr = format!("127.0.0.1:{port}");
    let api = format!("http://{addr}");
    let serve = |l: &Ledger| -> Serve {
        let mut s = l.spawn(
            &l.dir(),
            &["serve", "--http", &addr],
            "nats://127.0.0.1:1",
            None,
            "serving",
        );
        assert_eq!(s.http_url(), api);
        s
    };
    let cosigned = |want: u64| {
        let api = api.clone();
        async move {
            wait_until(
                PATIENCE,
                &format!("size {want} cosigned by the follower"),
                || {
                    let api = api.clone();
                    async move {
                        let (status, v) =
                            get_json(&format!("{api}/v1/checkpoints/witnessed")).await;
                        status == 200 && v["size"].as_u64() == Some(want)
                    }
                },
            )
            .await;
        }
    };
    let mut s = serve(&honest);
    let witness = WitnessProcess::start_with(
        &honest.path("w"),
        &log_vkey,
        "127.0.0.1:0",
        &["--follow", &api, "--follow-every", "1"],
    );
    cosigned(100).await;
    let (_, reports) = get_json(&format!("{api}/v1/witnesses")).await;
    assert_eq!(reports["witnesses"][0]["cosigned_size"], 100, "{reports}");
    assert!(reports["witnesses"][0]["url"].is_null(), "{reports}");
    let (size, root) = latest(&api).await;
    assert_eq!(witness.cosigned().await, Some((size, root)));
    s.kill();

    // A fork signed with the same key, served at the same address: the follower refuses it,
    // and the fork gets no cosignature.
    let mut s = serve(&fork);
    wait_until(PATIENCE, "the follower refusing the fork", || {
        let log = witness.log.clone();
        async move {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("refused: inconsistent with what this witness cosigned")
        }
    })
    .await;
    let (status, _) = get_json(&format!("{api}/v1/checkpoints/witnessed")).await;
    assert_eq!(status, 404);
    assert_eq!(witness.cosigned().await.map(|c| c.0), Some(100));
    s.kill();

    // The honest log grows: the follower proves it consistent with what it cosigned and goes on.
    grow(&honest, "a2.jsonl", 40, 2);
    let mut s = serve(&honest);
    cosigned(140).await;
    s.kill();
    // A cosignature of a key the log does not list is refused (403), and one that does not
    // verify (422).
    let (other, ..) = socai_chain::cosign::Cosigner::generate("stranger.test").unwrap();
    let s2 = serve(&honest);
    // The log was killed -9 before its cosignatures reached the disk: the follower sees the
    // served checkpoint without its line and posts it again.
    cosigned(140).await;
    let (_, cp) = get_json(&format!("{api}/v1/checkpoints/latest")).await;
    let note = cp["note"].as_str().unwrap();
    let body = socai_chain::cosign::note_body(note).unwrap();
    let post = |line: String| {
        let api = api.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{api}/v1/checkpoints/140/cosignatures"))
                .body(line)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(other.cosign(body, 1)).await, 403);
    // The witness's own line for size 140, posted as if for 100: its key, a signature that does
    // not hold over that checkpoint.
    let line = cp["cosignatures"][0].as_str().unwrap().to_owned();
    let status = reqwest::Client::new()
        .post(format!("{api}/v1/checkpoints/100/cosignatures"))
        .body(line)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(status, 422);
    drop(s2);
}
