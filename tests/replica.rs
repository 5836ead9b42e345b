//! Ledger replicas (`socai serve --replica-of`), end to end: real nats-server with the shipped
//! accounts, a primary `socai serve`, a replica `socai serve` on its own data dir with a copy of
//! the primary's keys. The replica must hold the primary's entries byte for byte (through a
//! kill -9 and a redaction), agree with every checkpoint the primary signed, raise its alarm at
//! the first differing size when it is made to forge an event, and be promotable.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use socai_e2e::nats::*;
use socai_e2e::rfc6962::{checkpoint_body, tree_hash};
use socai_e2e::{Ledger, socai_bin, stderr};
use socai_wire::stream::EVENTS;

const PATIENCE: Duration = Duration::from_secs(120);
const TOKEN: &str = "socai_test_auditor_token";
const ORIGIN: &str = "test.socai/ledger";

/// The primary's socai.toml: commits of at most 50 events, a checkpoint every 50 entries and
/// every second, an auditor token, replica `r1`.
fn primary_config() -> String {
    format!(
        "checkpoint_every_events = 50\n\n[ingest]\ncheckpoint_interval_s = 1\nbatch_max_events = 50\nreplicas = [\"r1\"]\n\n[[http.tokens]]\nname = \"inspector-7\"\nrole = \"auditor\"\nsha256 = \"{}\"\n",
        socai_api::token_digest(TOKEN)
    )
}

/// `socai init --data-dir DIR --keys-from <primary>`.
fn init_replica(primary: &Ledger, dir: &Path) {
    let out = std::process::Command::new(socai_bin())
        .arg("--data-dir")
        .arg(dir)
        .args(["init", "--keys-from"])
        .arg(primary.dir())
        .output()
        .expect("socai init runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let config = primary_config().replace("replicas = [\"r1\"]\n", "");
    std::fs::write(dir.join("socai.toml"), config).expect("replica config");
}

/// Starts the replica `socai serve` on `dir` (`env`: test faults).
fn serve_replica(ledger: &Ledger, dir: &Path, url: &str, env: &[(&str, &str)]) -> Serve {
    ledger.spawn_env(
        dir,
        &[
            "serve",
            "--http",
            "127.0.0.1:0",
            "--replica-of",
            ORIGIN,
            "--replica-name",
            "r1",
        ],
        url,
        Some("ledger_replica"),
        "serving as a replica",
        env,
    )
}

/// `socai --data-dir DIR serve ARGS` run to its end (it is expected to refuse).
fn serve_refused(dir: &Path, url: &str, args: &[&str]) -> Output {
    std::process::Command::new(socai_bin())
        .arg("--data-dir")
        .arg(dir)
        .arg("serve")
        .args(args)
        .args(["--http", "127.0.0.1:0", "--for-seconds", "1", "--nats", url])
        .env("SOCAI_NATS_USER", "ledger")
        .env("SOCAI_NATS_PASSWORD", password("ledger"))
        .output()
        .expect("socai serve runs")
}

/// `socai publish FILE` as the gateway, waiting for receipts; its exit status and stderr.
fn publish(ledger: &Ledger, url: &str, file: &Path) -> (Option<i32>, String) {
    let out = ledger
        .cmd(&[
            "publish",
            file.to_str().expect("path"),
            "--nats",
            url,
            "--receipt-timeout",
            "5",
            "--give-up-after",
            "180",
        ])
        .env("SOCAI_NATS_USER", "gateway")
        .env("SOCAI_NATS_PASSWORD", password("gateway"))
        .output()
        .expect("socai publish runs");
    (out.status.code(), stderr(&out))
}

async fn text(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

/// A Prometheus gauge's value (unlabelled).
async fn gauge(api: &str, name: &str) -> Option<f64> {
    text(&format!("{api}/metrics"))
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

async fn redact(api: &str, id: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{api}/v1/redactions"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"id": id, "reason": "Decree 13/2023: the citizen asked"}))
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// Every checkpoint a ledger's API lists: (size, note).
async fn checkpoints(api: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let (status, page) = get_json(&format!("{api}/v1/checkpoints?from={from}&limit=50")).await;
        assert_eq!(status, 200, "{page}");
        for c in page["checkpoints"].as_array().expect("checkpoints") {
            out.push((
                c["size"].as_u64().expect("size"),
                c["note"].as_str().expect("note").to_owned(),
            ));
        }
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => return out,
        }
    }
}

/// The latest checkpoint size a ledger's API serves.
async fn latest_size(api: &str) -> u64 {
    let (_, latest) = get_json(&format!("{api}/v1/checkpoints/latest")).await;
    latest["size"].as_u64().unwrap_or(0)
}

/// What a replica's /readyz says of it.
async fn replica_state(api: &str) -> serde_json::Value {
    get_json(&format!("{api}/readyz")).await.1["replica"].clone()
}

/// Waits until the replica has reached and agreed with the primary's latest checkpoint, and
/// both have signed the same final size.
async fn wait_in_step(primary: &str, replica: &str) -> u64 {
    let started = std::time::Instant::now();
    loop {
        let size = latest_size(primary).await;
        let (_, head) = get_json(&format!("{primary}/readyz")).await;
        let state = replica_state(replica).await;
        if size > 0
            && head["size"].as_u64() == Some(size)
            && state["agreed_size"].as_u64() == Some(size)
            && latest_size(replica).await == size
        {
            return size;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the replica did not agree with the primary's latest checkpoint ({size}); replica: {state}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The EVENTS seq of the message carrying event `id`, if EVENTS still holds it (an agency's
/// message: the redaction request on dvc.ledger.redactions names the id too).
async fn events_seq_of(js: &async_nats::jetstream::Context, id: &str) -> Option<u64> {
    let mut stream = js.get_stream(EVENTS).await.expect("EVENTS");
    let last = stream.info().await.expect("info").state.last_sequence;
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await
            && m.subject.starts_with("dvc.events.")
            && serde_json::from_slice::<serde_json::Value>(&m.payload)
                .is_ok_and(|v| v["id"].as_str() == Some(id))
        {
            return Some(seq);
        }
    }
    None
}

/// The id of the first event in a JSON-lines file that carries personal data.
fn first_with_personal_data(file: &Path) -> String {
    std::fs::read_to_string(file)
        .expect("events file")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("event"))
        .find(|e| e.get("personal").is_some())
        .expect("an event with personal data")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// A primary `socai serve` on the shipped accounts, with a replica data dir made beside it.
struct World {
    ledger: Ledger,
    replica_dir: std::path::PathBuf,
    _nats: socai_testkit::LocalNats,
    url: String,
    js: async_nats::jetstream::Context,
    primary: Serve,
    p_api: String,
}

async fn world() -> World {
    let ledger = Ledger::new();
    ledger.configure(&primary_config());
    let replica_dir = ledger.path("replica");
    init_replica(&ledger, &replica_dir);
    let nats = start_nats(&ledger.path("nats"), true);
    let url = nats.url();
    let (client, _errors) = connect(&url, Some("ledger")).await;
    let js = async_nats::jetstream::new(client);
    let mut primary = ledger.serve(&url, Some("ledger"));
    let p_api = primary.http_url();
    wait_for_streams(&js).await;
    World {
        ledger,
        replica_dir,
        _nats: nats,
        url,
        js,
        primary,
        p_api,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_holds_the_primarys_entries_through_kill_9_and_a_redaction_and_can_be_promoted() {
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let World {
        ledger,
        replica_dir,
        _nats,
        url,
        js,
        mut primary,
        p_api,
    } = world().await;
    let mut replica = serve_replica(&ledger, &replica_dir, &url, &[]);
    let r_api = replica.http_url();

    // A first batch: the replica follows.
    let first = ledger.simulate("first.jsonl", 800, 41);
    let (code, err) = publish(&ledger, &url, &first);
    assert_eq!(code, Some(0), "{err}");
    let size = wait_in_step(&p_api, &r_api).await;
    phase(&format!("replica in step at {size}"));
    let openapi = socai_e2e::openapi::OpenApi::load();
    let (_, ready) = get_json(&format!("{p_api}/readyz")).await;
    assert_eq!(ready["replicas"][0]["replica"], "r1", "{ready}");
    assert!(ready.get("replicas_silent").is_none(), "{ready}");
    openapi.check_schema("Readiness", &ready);
    openapi.check_schema("Readiness", &get_json(&format!("{r_api}/readyz")).await.1);

    // The replica dies (kill -9); events and a redaction of one of them arrive meanwhile.
    replica.kill();
    let second = ledger.simulate("second.jsonl", 800, 42);
    let (code, err) = publish(&ledger, &url, &second);
    assert_eq!(code, Some(0), "{err}");
    let victim = first_with_personal_data(&second);
    let victim_copy = events_seq_of(&js, &victim)
        .await
        .expect("EVENTS holds the victim");
    let (status, redacted) = redact(&p_api, &victim).await;
    assert_eq!(status, 201, "{redacted}");
    // The replica has not read the victim's EVENTS copy: it must stay until it has.
    assert_eq!(redacted["copies_pending"], true, "{redacted}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        events_seq_of(&js, &victim).await,
        Some(victim_copy),
        "the primary erased an EVENTS copy the replica had not read"
    );
    phase("redacted while the replica was down; its EVENTS copy waits for the replica");
    // More events after the redaction request: the replica reads them in the same chunk as the
    // request and must apply the redaction between them, where the primary did.
    let after = ledger.simulate("after.jsonl", 120, 45);
    let (code, err) = publish(&ledger, &url, &after);
    assert_eq!(code, Some(0), "{err}");

    let mut replica = serve_replica(&ledger, &replica_dir, &url, &[]);
    let r_api = replica.http_url();
    let size = wait_in_step(&p_api, &r_api).await;
    wait_until(
        PATIENCE,
        "the primary to erase the victim's EVENTS copy",
        || async { events_seq_of(&js, &victim).await.is_none() },
    )
    .await;
    phase(&format!("replica back in step at {size}; the copy erased"));

    // The replica takes no redaction, and reports no divergence anywhere.
    let (status, refused) = redact(&r_api, &victim).await;
    assert_eq!(status, 503, "{refused}");
    assert!(
        refused.to_string().contains("replica"),
        "the refusal says why: {refused}"
    );
    let (status, ready) = get_json(&format!("{r_api}/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    assert!(ready.get("replica_diverged").is_none(), "{ready}");
    assert!(
        ready["replica"]["checked"].as_u64().unwrap_or(0) > 0,
        "{ready}"
    );
    assert_eq!(
        gauge(&r_api, "socai_replica_diverged_size").await,
        Some(0.0)
    );
    assert_eq!(
        gauge(&r_api, "socai_replica_agreed_size").await,
        Some(size as f64)
    );
    let prometheus = text(&format!("{p_api}/metrics")).await;
    assert!(
        prometheus.contains("socai_replica_events_cursor{replica=\"r1\"}"),
        "{prometheus}"
    );
    // The replica sent nothing agencies read: no receipts counted.
    assert_eq!(gauge(&r_api, "socai_receipts_sent_total").await, Some(0.0));

    let p_checkpoints = checkpoints(&p_api).await;
    let r_checkpoints = checkpoints(&r_api).await;
    primary.stop();
    replica.stop();

    // Byte-identical entries, and every checkpoint the primary signed has the replica's root
    // (computed here from the replica's entries, from RFC 9162's definition).
    let p_entries = entries_in(&ledger.dir());
    let r_entries = entries_in(&replica_dir);
    assert_eq!(p_entries.len() as u64, size);
    assert_eq!(p_entries.len(), r_entries.len());
    if let Some(i) = (0..p_entries.len()).find(|&i| p_entries[i] != r_entries[i]) {
        panic!(
            "entry {i} differs:\nprimary {}\nreplica {}",
            String::from_utf8_lossy(&p_entries[i]),
            String::from_utf8_lossy(&r_entries[i])
        );
    }
    assert!(
        r_entries
            .iter()
            .any(|e| String::from_utf8_lossy(e).contains("ledger.redacted")),
        "the redaction entry reached the replica"
    );
    let leaves: Vec<socai_chain::Hash> = r_entries
        .iter()
        .map(|e| socai_chain::leaf_hash(e))
        .collect();
    assert!(p_checkpoints.len() > 20, "{p_checkpoints:?}");
    for (size, note) in &p_checkpoints {
        let (origin, body_size, root) = checkpoint_body(note).expect("a checkpoint note");
        assert_eq!((origin.as_str(), body_size), (ORIGIN, *size));
        assert_eq!(
            root,
            tree_hash(&leaves[..*size as usize]),
            "the replica's tree differs from the primary's checkpoint at {size}"
        );
    }
    // Where both signed the same size the notes are the same bytes (same key, same tree).
    let common: Vec<_> = r_checkpoints
        .iter()
        .filter(|c| p_checkpoints.contains(c))
        .collect();
    assert!(
        common.iter().any(|(s, _)| *s == size),
        "both signed the final size {size}"
    );
    for (s, note) in &r_checkpoints {
        if let Some((_, theirs)) = p_checkpoints.iter().find(|(ps, _)| ps == s) {
            assert_eq!(note, theirs, "checkpoint notes at {s}");
        }
    }
    phase(&format!(
        "{} entries identical; {} primary checkpoints hold on the replica",
        size,
        p_checkpoints.len()
    ));

    // Promotion. Without a role the replica's data dir refuses to start, saying what to do.
    let out = serve_refused(&replica_dir, &url, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--promote"), "{}", stderr(&out));
    // The primary runs on while the replica is stopped: COMMITTED gets ahead of the replica.
    let mut primary = ledger.serve(&url, Some("ledger"));
    let third = ledger.simulate("third.jsonl", 300, 43);
    let (code, err) = publish(&ledger, &url, &third);
    assert_eq!(code, Some(0), "{err}");
    wait_committed(&js, size + 300, PATIENCE).await;
    // Then the primary's machine is lost (kill -9) for good; events keep coming; the replica is
    // promoted: it reads what it missed from EVENTS, finds COMMITTED holds the same entries,
    // continues it, and answers the new events with receipts.
    primary.kill();
    let fourth = ledger.simulate("fourth.jsonl", 200, 44);
    let publishing = {
        let (url, fourth) = (url.clone(), fourth.clone());
        let ledger_dir = ledger.dir();
        std::thread::spawn(move || {
            let out = std::process::Command::new(socai_bin())
                .arg("--data-dir")
                .arg(ledger_dir)
                .args(["publish", fourth.to_str().expect("path"), "--nats", &url])
                .args(["--receipt-timeout", "5", "--give-up-after", "180"])
                .env("SOCAI_NATS_USER", "gateway")
                .env("SOCAI_NATS_PASSWORD", password("gateway"))
                .output()
                .expect("socai publish runs");
            (out.status.code(), stderr(&out))
        })
    };
    let mut promoted = ledger.spawn_env(
        &replica_dir,
        &["serve", "--http", "127.0.0.1:0", "--promote"],
        &url,
        Some("ledger"),
        "serving",
        &[],
    );
    let new_api = promoted.http_url();
    let (code, err) = tokio::task::spawn_blocking(move || publishing.join().expect("publisher"))
        .await
        .expect("join");
    assert_eq!(
        code,
        Some(0),
        "every event of the fourth batch got a receipt: {err}"
    );
    let head = size + 500;
    wait_committed(&js, head, PATIENCE).await;
    assert_eq!(committed_entries(&js).await, head);
    wait_until(PATIENCE, "the promotion to finish", || async {
        replica_dir.join("promoted").exists()
    })
    .await;
    assert!(!replica_dir.join("promoting").exists());
    assert!(!replica_dir.join("replica-of").exists());
    let vkey = ledger.dir().join("checkpoint.vkey");
    wait_until(PATIENCE, "a checkpoint of the promoted ledger", || async {
        latest_size(&new_api).await == head
    })
    .await;
    let out = std::process::Command::new(socai_bin())
        .args(["--api", &new_api, "verify", "--vkey"])
        .arg(&vkey)
        .output()
        .expect("socai verify runs");
    assert!(out.status.success(), "{}", stderr(&out));
    promoted.stop();
    // A promoted data dir never runs as a replica again.
    let out = serve_refused(
        &replica_dir,
        &url,
        &["--replica-of", ORIGIN, "--replica-name", "r1"],
    );
    assert!(stderr(&out).contains("was promoted"), "{}", stderr(&out));
    phase(&format!(
        "promoted: {head} entries, COMMITTED continued, verify ok"
    ));
}

/// A redaction request the primary fails to apply for a failed read of its store (a test-only
/// fault point) stops its writer before its cursor passes the request: restarted, the primary
/// applies it where the replica did, and the two agree. Passed over as if refused, it would
/// leave the primary without the entry the replica wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redaction_the_primary_cannot_read_for_stops_it_and_is_applied_once_it_restarts() {
    let World {
        ledger,
        replica_dir,
        _nats,
        url,
        js: _,
        mut primary,
        p_api: _,
    } = world().await;
    // The primary again, its first redaction armed to fail as a failed read of the store would.
    primary.stop();
    let mut primary = ledger.serve_env(
        &url,
        Some("ledger"),
        &[("SOCAI_FAULT", "redaction-read-error")],
    );
    let p_api = primary.http_url();
    let mut replica = serve_replica(&ledger, &replica_dir, &url, &[]);
    let r_api = replica.http_url();
    let events = ledger.simulate("events.jsonl", 200, 46);
    let (code, err) = publish(&ledger, &url, &events);
    assert_eq!(code, Some(0), "{err}");
    let size = wait_in_step(&p_api, &r_api).await;
    let victim = first_with_personal_data(&events);

    let (status, answer) = redact(&p_api, &victim).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer.to_string().contains("restart `socai serve`"),
        "the answer says the request is applied once the ledger is restarted: {answer}"
    );
    let started = std::time::Instant::now();
    while primary.running() {
        assert!(
            started.elapsed() < PATIENCE,
            "the primary's writer went on past a redaction it could not apply"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(&primary.log).expect("primary log");
    assert!(
        log.contains("redaction-read-error") && log.contains("restart `socai serve`"),
        "the primary says why it stopped and what to do:\n{log}"
    );
    // The replica read the same request and applied it.
    wait_until(PATIENCE, "the replica to apply the redaction", || async {
        get_json(&format!("{r_api}/readyz")).await.1["size"].as_u64() == Some(size + 1)
    })
    .await;

    // Restarted without the fault, the primary reads the request again and applies it.
    let mut primary = ledger.serve(&url, Some("ledger"));
    let p_api = primary.http_url();
    assert_eq!(wait_in_step(&p_api, &r_api).await, size + 1);
    let (status, entry) = get_json(&format!("{p_api}/v1/events/redaction:{victim}")).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["seq"], size, "{entry}");
    assert_eq!(entry["event"]["type"], "ledger.redacted", "{entry}");
    let (_, ready) = get_json(&format!("{r_api}/readyz")).await;
    assert!(ready.get("replica_diverged").is_none(), "{ready}");
    primary.stop();
    replica.stop();
    let (p_entries, r_entries) = (entries_in(&ledger.dir()), entries_in(&replica_dir));
    assert_eq!(p_entries.len() as u64, size + 1);
    assert!(
        p_entries == r_entries,
        "the primary's entries differ from the replica's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_forges_an_event_names_the_first_differing_size() {
    let World {
        ledger,
        replica_dir,
        _nats,
        url,
        js,
        mut primary,
        p_api,
    } = world().await;
    // The replica alters the event of EVENTS seq 300, as a bug or a tampered machine would.
    const FORGED: u64 = 300;
    let mut replica = serve_replica(
        &ledger,
        &replica_dir,
        &url,
        &[("SOCAI_TEST_FORGE_EVENTS_SEQ", &FORGED.to_string())],
    );
    let r_api = replica.http_url();
    let events = ledger.simulate("events.jsonl", 600, 44);
    let (code, err) = publish(&ledger, &url, &events);
    assert_eq!(code, Some(0), "{err}");

    // Where the primary put that event: the first size that must differ is its seq + 1.
    let msg = js
        .get_stream(EVENTS)
        .await
        .expect("EVENTS")
        .get_raw_message(FORGED)
        .await
        .expect("EVENTS message");
    let id = serde_json::from_slice::<serde_json::Value>(&msg.payload).expect("event")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, event) = get_json(&format!("{p_api}/v1/events/{id}")).await;
    let expected = event["seq"].as_u64().expect("seq") + 1;

    wait_until(PATIENCE, "the replica's divergence alarm", || async {
        replica_state(&r_api).await["diverged_at"].is_u64()
    })
    .await;
    let (status, ready) = get_json(&format!("{r_api}/readyz")).await;
    assert_eq!(status, 503, "a diverged replica is not ready: {ready}");
    socai_e2e::openapi::OpenApi::load().check_schema("Readiness", &ready);
    assert_eq!(ready["replica"]["diverged_at"], expected, "{ready}");
    let alarm = ready["replica_diverged"].as_str().expect("the alarm");
    assert!(
        alarm.contains(&format!("first differing size {expected}")),
        "{alarm}"
    );
    assert!(
        alarm.contains(&format!("entry {}", expected - 1)),
        "{alarm}"
    );
    assert_eq!(
        gauge(&r_api, "socai_replica_diverged_size").await,
        Some(expected as f64)
    );
    let log = std::fs::read_to_string(&replica.log).expect("replica log");
    assert!(
        log.contains(&format!("\"first_differing_size\":{expected}")),
        "the replica's log names the size"
    );
    // The primary hears of it too.
    wait_until(
        PATIENCE,
        "the primary to hear of the divergence",
        || async {
            let (_, ready) = get_json(&format!("{p_api}/readyz")).await;
            ready["replicas"][0]["diverged_at"] == expected
        },
    )
    .await;
    // Every checkpoint below it agreed: the alarm is not raised early, nor late.
    let below = checkpoints(&p_api)
        .await
        .into_iter()
        .map(|(size, _)| size)
        .filter(|&size| size < expected)
        .max()
        .expect("the primary signed a checkpoint below the forged entry");
    assert_eq!(
        replica_state(&r_api).await["agreed_size"].as_u64(),
        Some(below)
    );

    // A diverged replica is never promoted, even after a restart.
    replica.stop();
    let out = serve_refused(&replica_dir, &url, &["--promote"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("cannot promote"), "{err}");
    let mut replica = serve_replica(&ledger, &replica_dir, &url, &[]);
    let r_api = replica.http_url();
    wait_until(PATIENCE, "the alarm after a restart", || async {
        get_json(&format!("{r_api}/readyz")).await.0 == 503
            && replica_state(&r_api).await["diverged_at"] == expected
    })
    .await;
    replica.stop();
    primary.stop();
}
