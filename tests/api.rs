//! The HTTP API of a running ledger, end to end: the real `socai serve` (with its API on an
//! ephemeral port) on a real nats-server with the shipped users, publishers and a projection
//! worker running, and clients that know nothing but the URL (and, for auditors, the published
//! key or a bearer token). Every answer is validated against schemas/openapi.json.

use std::collections::HashMap;
use std::time::Duration;

use socai_chain::tiles::{Tile, TileKind, split_entry_bundle, split_hash_tile};
use socai_chain::{ConsistencyProof, Hash, InclusionProof, leaf_hash, node_hash};
use socai_client::publisher::Outgoing;
use socai_e2e::nats::*;
use socai_e2e::openapi::OpenApi;
use socai_e2e::{Ledger, workload};
use socai_model::Event;

/// A hang guard for waits, far above what any run here takes; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(600);

const TOKEN: &str = "socai_test_auditor_token";
const OTHER_TOKEN: &str = "socai_test_not_a_known_token";

/// socai.toml for these tests: an auditor token, small limits so every limit can be hit, and
/// frequent checkpoints.
fn config(extra: &str) -> String {
    format!(
        "[ingest]\ncheckpoint_interval_s = 1\n\n[http]\nmax_page = 50\nmax_metric_values = 200\nmax_sse_clients = 4\n\n[[http.tokens]]\nname = \"inspector-7\"\nrole = \"auditor\"\nsha256 = \"{}\"\n{extra}",
        socai_api::token_digest(TOKEN)
    )
}

/// An HTTP client of the API that checks every answer against the OpenAPI document.
struct Api {
    base: String,
    http: reqwest::Client,
    openapi: OpenApi,
}

/// An answer: status, content type (without parameters), body.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Api {
    fn new(base: String) -> Api {
        Api {
            base,
            http: reqwest::Client::new(),
            openapi: OpenApi::load(),
        }
    }

    async fn send(
        &self,
        method: &str,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url),
            other => panic!("method {other}"),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let body = response.bytes().await.expect("body").to_vec();
        self.openapi
            .check(method, template, status, &content_type, &body);
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// An event as the auditor sees it (`personal=true` with the auditor's token).
    async fn auditor_event(&self, id: &str) -> serde_json::Value {
        let path = format!("/v1/events/{id}?personal=true");
        let a = self
            .send("GET", "/v1/events/{id}", &path, Some(TOKEN), None)
            .await;
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        a.json()
    }

    async fn get(&self, template: &str, path: &str) -> Answer {
        self.send("GET", template, path, None, None).await
    }

    /// GET that must succeed with JSON.
    async fn ok(&self, template: &str, path: &str) -> serde_json::Value {
        let a = self.get(template, path).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.text());
        a.json()
    }

    /// A request that must fail with `status` and a problem naming `parameter` (if given).
    #[allow(clippy::too_many_arguments)] // the request's parts and the expected problem
    async fn problem(
        &self,
        method: &str,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
        status: u16,
        parameter: Option<&str>,
    ) -> serde_json::Value {
        let a = self.send(method, template, path, token, body).await;
        assert_eq!(a.status, status, "{method} {path}: {}", a.text());
        assert_eq!(
            a.content_type, "application/problem+json",
            "{method} {path}"
        );
        let p = a.json();
        assert_eq!(p["status"], status, "{p}");
        assert!(
            !p["detail"].as_str().unwrap_or("").is_empty(),
            "{method} {path}: a problem says what is wrong: {p}"
        );
        if let Some(parameter) = parameter {
            assert_eq!(p["parameter"], parameter, "{method} {path}: {p}");
        }
        p
    }
}

/// The events the ledger holds, through the API (pages of `max_page`).
async fn api_ids(api: &Api, size: u64) -> Vec<String> {
    let mut ids = Vec::new();
    let mut from = 0;
    while from < size {
        let page = api
            .ok("/v1/entries", &format!("/v1/entries?from={from}&limit=50"))
            .await;
        for e in page["entries"].as_array().expect("entries") {
            ids.push(e["event"]["id"].as_str().expect("id").to_owned());
        }
        from = page["next"].as_u64().unwrap_or(size);
    }
    ids
}

/// Live clients connected, from the server's own gauge.
async fn sse_clients(api: &Api) -> u64 {
    let text = api.get("/metrics", "/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix("socai_sse_clients "))
        .and_then(|v| v.trim().parse().ok())
        .expect("socai_sse_clients in /metrics")
}

async fn latest_size(api: &Api) -> u64 {
    api.ok("/v1/checkpoints/latest", "/v1/checkpoints/latest")
        .await["size"]
        .as_u64()
        .expect("size")
}

/// Waits until a signed checkpoint covers at least `n` entries.
async fn wait_checkpoint(api: &Api, n: u64) {
    wait_until(
        PATIENCE,
        &format!("a checkpoint of {n} entries"),
        || async {
            let a = api
                .get("/v1/checkpoints/latest", "/v1/checkpoints/latest")
                .await;
            a.status == 200 && a.json()["size"].as_u64().unwrap_or(0) >= n
        },
    )
    .await;
}

/// Publishes `events` as the gateway (on the secured server), `chunk` at a time with `pause`
/// between chunks.
fn publish_paced(
    url: &str,
    secured: bool,
    events: Vec<Event>,
    chunk: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    let url = url.to_owned();
    tokio::spawn(async move {
        let gateway = publisher(&url, secured.then_some("gateway")).await;
        let outgoing: Vec<Outgoing> = events.iter().map(Outgoing::event).collect();
        for part in outgoing.chunks(chunk) {
            let failed = gateway.publish_all(part.to_vec(), 256, |_| {}).await;
            assert_eq!(failed, 0, "publish failures");
            tokio::time::sleep(pause).await;
        }
    })
}

thread_local! {
    static OPENAPI: OpenApi = OpenApi::load();
}

/// Reads Server-Sent Events frames (`id`, `event`, `data`) from a streaming response.
struct Sse {
    response: reqwest::Response,
    buf: String,
}

#[derive(Debug, Default)]
struct Frame {
    id: Option<String>,
    event: String,
    data: String,
}

impl Sse {
    async fn open(api: &Api, query: &str, last_event_id: Option<&str>) -> Sse {
        let mut request = api
            .http
            .get(format!("{}/v1/metrics/stream{query}", api.base));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("SSE request");
        assert_eq!(response.status(), 200, "SSE status");
        let ct = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Sse {
            response,
            buf: String::new(),
        }
    }

    /// The next frame with data (comments and keep-alives skipped), or None after `within`;
    /// its data is checked against the OpenAPI document's `LiveUpdate` or `StreamReset`.
    /// Workers' heartbeats (`worker`) are checked against `WorkerHeartbeat` and skipped.
    async fn next(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self.next_raw(left).await?;
            let data: serde_json::Value = serde_json::from_str(&frame.data)
                .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {}", frame.data));
            let schema = match frame.event.as_str() {
                "metric" => "LiveUpdate",
                "reset" => "StreamReset",
                "worker" => "WorkerHeartbeat",
                other => panic!("unexpected SSE event {other:?}"),
            };
            OPENAPI.with(|o| o.check_schema(schema, &data));
            if frame.event != "worker" {
                return Some(frame);
            }
        }
    }

    async fn next_raw(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut frame = Frame::default();
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        frame.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        frame.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        frame.data.push_str(v.trim_start());
                    }
                }
                if !frame.data.is_empty() {
                    return Some(frame);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return None,
            }
        }
    }
}

/// RFC 6962 over a tree served as C2SP tiles, written here from the RFC and the tiles spec alone
/// (nothing of socai's Merkle code): the auditor's independent check.
mod tiled {
    use super::*;

    /// Every hash tile (all levels) and entry bundle of the tree of `size` entries.
    pub struct Tree {
        /// (level, index) → hashes.
        tiles: HashMap<(u8, u64), Vec<Hash>>,
        pub entries: Vec<Vec<u8>>,
    }

    fn largest_power_of_two_below(n: u64) -> u64 {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    impl Tree {
        pub async fn fetch(api: &Api, size: u64) -> Tree {
            let mut tree = Tree {
                tiles: HashMap::new(),
                entries: Vec::new(),
            };
            for level in 0u8..8 {
                let hashes = size >> (8 * u32::from(level));
                if hashes == 0 {
                    break;
                }
                for index in 0..hashes.div_ceil(256) {
                    let width = (hashes - index * 256).min(256);
                    let tile = Tile {
                        kind: TileKind::Hashes { level },
                        index,
                        width,
                    };
                    let a = api.get("/tile/{path}", &format!("/{}", tile.path())).await;
                    assert_eq!(a.status, 200, "{}: {}", tile.path(), a.text());
                    let hashes = split_hash_tile(&a.body).expect("whole hashes");
                    assert_eq!(hashes.len() as u64, width, "{}", tile.path());
                    tree.tiles.insert((level, index), hashes);
                }
            }
            for index in 0..size.div_ceil(256) {
                let width = (size - index * 256).min(256);
                let tile = Tile {
                    kind: TileKind::Entries,
                    index,
                    width,
                };
                let a = api.get("/tile/{path}", &format!("/{}", tile.path())).await;
                assert_eq!(a.status, 200, "{}: {}", tile.path(), a.text());
                let bundle = split_entry_bundle(&a.body).expect("an entry bundle");
                assert_eq!(bundle.len() as u64, width, "{}", tile.path());
                tree.entries.extend(bundle.into_iter().map(<[u8]>::to_vec));
            }
            tree
        }

        /// The hash at tree level `l` (0 = leaves), position `i`, read from the tiles.
        fn stored(&self, l: u32, i: u64) -> Hash {
            let (tile_level, within) = (l / 8, l % 8);
            if within == 0 {
                return self.tiles[&(tile_level as u8, i / 256)][(i % 256) as usize];
            }
            // A level between tile levels: hash up the 2^within hashes of the tile below.
            let width = 1u64 << within;
            let first = i * width;
            let hashes: Vec<Hash> = (first..first + width)
                .map(|j| self.stored(tile_level * 8, j))
                .collect();
            mth_of(&hashes)
        }

        /// MTH(D[lo:hi]).
        pub fn mth(&self, lo: u64, hi: u64) -> Hash {
            let n = hi - lo;
            assert!(n > 0);
            if n.is_power_of_two() && lo.is_multiple_of(n) {
                return self.stored(n.trailing_zeros(), lo / n);
            }
            let k = largest_power_of_two_below(n);
            node_hash(&self.mth(lo, lo + k), &self.mth(lo + k, hi))
        }

        /// RFC 6962 §2.1.1 PATH(m, D[lo:hi]).
        pub fn path(&self, m: u64, lo: u64, hi: u64) -> Vec<Hash> {
            let n = hi - lo;
            if n == 1 {
                return Vec::new();
            }
            let k = largest_power_of_two_below(n);
            if m < lo + k {
                let mut p = self.path(m, lo, lo + k);
                p.push(self.mth(lo + k, hi));
                p
            } else {
                let mut p = self.path(m, lo + k, hi);
                p.push(self.mth(lo, lo + k));
                p
            }
        }

        /// RFC 6962 §2.1.2 SUBPROOF(m, D[lo:hi], b).
        pub fn subproof(&self, m: u64, lo: u64, hi: u64, b: bool) -> Vec<Hash> {
            let n = hi - lo;
            if m == n {
                return if b {
                    Vec::new()
                } else {
                    vec![self.mth(lo, hi)]
                };
            }
            let k = largest_power_of_two_below(n);
            if m <= k {
                let mut p = self.subproof(m, lo, lo + k, b);
                p.push(self.mth(lo + k, hi));
                p
            } else {
                let mut p = self.subproof(m - k, lo + k, hi, false);
                p.push(self.mth(lo, lo + k));
                p
            }
        }

        pub fn leaves_match_the_entries(&self) {
            for (i, entry) in self.entries.iter().enumerate() {
                assert_eq!(
                    self.stored(0, i as u64),
                    leaf_hash(entry),
                    "level-0 hash {i}"
                );
            }
        }
    }

    fn mth_of(hashes: &[Hash]) -> Hash {
        if hashes.len() == 1 {
            return hashes[0];
        }
        let k = largest_power_of_two_below(hashes.len() as u64) as usize;
        node_hash(&mth_of(&hashes[..k]), &mth_of(&hashes[k..]))
    }
}

/// A test's world: a data dir served by `socai serve` (API on an ephemeral port) on the shipped
/// secured nats-server, a projection worker, and a workload of which the first `committed`
/// events are published, committed and covered by a signed checkpoint.
struct World {
    ledger: Ledger,
    nats: socai_testkit::LocalNats,
    url: String,
    serve: Serve,
    api: Api,
    worker: Serve,
    events: Vec<Event>,
}

async fn world(n: usize, seed: u64, committed: usize) -> World {
    let ledger = Ledger::new();
    ledger.configure(&config(""));
    let nats = start_nats(&ledger.path("nats"), true);
    let url = nats.url();
    let mut serve = ledger.serve(&url, Some("ledger"));
    let api = Api::new(serve.http_url());
    let worker = ledger.spawn(
        &ledger.path("worker"),
        &["project", "--name", "p0"],
        &url,
        Some("projector"),
        "projector resuming",
    );
    let events = workload(n, seed);
    publish_paced(
        &url,
        true,
        events[..committed].to_vec(),
        committed,
        Duration::ZERO,
    )
    .await
    .expect("publisher");
    wait_checkpoint(&api, committed as u64).await;
    World {
        ledger,
        nats,
        url,
        serve,
        api,
        worker,
        events,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_documented_and_as_the_cli_does() {
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let World {
        ledger,
        nats: _nats,
        url,
        mut serve,
        api,
        mut worker,
        events,
    } = world(4000, 21, 2500).await;
    let rest = &events[2500..];
    phase("2500 entries committed and checkpointed");

    // From here on, events keep coming while every route is exercised.
    let publishing = publish_paced(&url, true, rest.to_vec(), 20, Duration::from_millis(200));
    let key = ledger.verifier();

    // Health, readiness, Prometheus.
    let a = api.get("/healthz", "/healthz").await;
    assert_eq!((a.status, a.text().trim()), (200, "ok"));
    let ready = api.ok("/readyz", "/readyz").await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(ready["nats"], "connected");
    assert_eq!(ready["writer"], "running");
    let a = api.get("/v1/openapi.json", "/v1/openapi.json").await;
    assert_eq!(a.json()["openapi"], "3.1.0");

    // Metric values (the worker's) and their live stream, resumable.
    wait_until(PATIENCE, "the worker's first values", || async {
        let a = api
            .get(
                "/v1/metrics",
                "/v1/metrics?metric=on_time_rate&scope=national&window=all",
            )
            .await;
        a.status == 200 && !a.json()["values"].as_array().unwrap().is_empty()
    })
    .await;
    let values = api
        .ok(
            "/v1/metrics",
            "/v1/metrics?metric=on_time_rate,backlog&scope=province:H01&window=rolling30",
        )
        .await;
    for v in values["values"].as_array().expect("values") {
        assert!(
            ["on_time_rate", "backlog"].contains(&v["metric"].as_str().unwrap()),
            "{v}"
        );
        assert_eq!(v["scope"]["code"], "H01", "{v}");
        assert_eq!(v["window"]["id"], "rolling30", "{v}");
    }
    let mut sse = Sse::open(&api, "?scope=national", None).await;
    let first_live = sse
        .next(Duration::from_secs(60))
        .await
        .expect("a live change while events are published");
    assert_eq!(first_live.event, "metric");
    let live: serde_json::Value = serde_json::from_str(&first_live.data).expect("JSON data");
    assert!(live["tree_size"].as_u64().unwrap() > 0);
    for v in live["values"].as_array().expect("values") {
        assert_eq!(v["scope"]["kind"], "national", "{v}");
    }
    let resume_from = first_live.id.clone().expect("an event id");
    let second = sse
        .next(Duration::from_secs(60))
        .await
        .expect("another change");
    drop(sse);
    // Resuming after the first event replays the second (the server still holds it).
    let mut resumed = Sse::open(&api, "?scope=national", Some(&resume_from)).await;
    let replayed = resumed.next(Duration::from_secs(10)).await.expect("replay");
    assert_eq!(replayed.id, second.id);
    assert_eq!(replayed.data, second.data);
    drop(resumed);
    // A resume point this server never gave: reset, re-read /v1/metrics.
    let mut lost = Sse::open(&api, "", Some("123-4")).await;
    let reset = lost.next(Duration::from_secs(10)).await.expect("reset");
    assert_eq!(reset.event, "reset");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&reset.data).unwrap()["reload"],
        "/v1/metrics"
    );
    drop(lost);
    phase("metrics and the live stream");

    // The log and its checkpoints.
    let log = api.ok("/v1/log", "/v1/log").await;
    assert_eq!(log["origin"], "test.socai/ledger");
    assert_eq!(log["vkey"], key.vkey());
    let a = api.get("/checkpoint", "/checkpoint").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "text/plain");
    let signed = key
        .verify(&a.text())
        .expect("the served checkpoint is signed by the log's key");
    let cp_size = signed.checkpoint.size;
    assert!(cp_size >= 2500);
    let at = api
        .ok(
            "/v1/checkpoints/{size}",
            &format!("/v1/checkpoints/{cp_size}"),
        )
        .await;
    assert_eq!(at["root"], signed.checkpoint.root.to_hex());
    assert_eq!(at["note"], a.text());
    // No witnesses configured here (tests/witness.rs runs them): no cosignatures, an empty
    // list of witnesses, and no witnessed checkpoint.
    assert_eq!(at["cosignatures"], serde_json::json!([]));
    let witnesses = api.ok("/v1/witnesses", "/v1/witnesses").await;
    assert_eq!(witnesses, serde_json::json!({"witnesses": []}));
    let p = api
        .problem(
            "GET",
            "/v1/checkpoints/witnessed",
            "/v1/checkpoints/witnessed",
            None,
            None,
            404,
            None,
        )
        .await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("no witnesses configured"),
        "{p}"
    );
    api.problem(
        "GET",
        "/v1/checkpoints/witnessed",
        "/v1/checkpoints/witnessed?min=0",
        None,
        None,
        400,
        Some("min"),
    )
    .await;
    let mut listed = Vec::new();
    let mut from = 0;
    loop {
        let page = api
            .ok(
                "/v1/checkpoints",
                &format!("/v1/checkpoints?from={from}&limit=2"),
            )
            .await;
        for c in page["checkpoints"].as_array().expect("checkpoints") {
            let size = c["size"].as_u64().expect("size");
            let note = c["note"].as_str().expect("note");
            assert_eq!(key.verify(note).expect("signed").checkpoint.size, size);
            listed.push(size);
        }
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => break,
        }
    }
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "{listed:?}");
    assert!(listed.contains(&cp_size), "{listed:?}");
    phase("log, checkpoints");

    // Entries, events, dossiers.
    let e7 = api.ok("/v1/entries/{seq}", "/v1/entries/7").await;
    assert_eq!(e7["seq"], 7);
    let id7 = e7["event"]["id"].as_str().expect("id").to_owned();
    let by_id = api
        .ok("/v1/events/{id}", &format!("/v1/events/{id7}"))
        .await;
    assert_eq!(by_id, e7);
    let page = api.ok("/v1/entries", "/v1/entries?from=5&limit=3").await;
    let page_entries = page["entries"].as_array().expect("entries");
    assert_eq!(page_entries.len(), 3);
    assert_eq!(page_entries[2], e7);
    assert_eq!(page["next"], 8);
    let accepted = events[..2500]
        .iter()
        .find(|e| e.event_type == "dossier.accepted")
        .expect("an accepted dossier");
    let dossier = accepted.dossier.clone();
    let history = api
        .ok("/v1/dossiers/{dossier}", &format!("/v1/dossiers/{dossier}"))
        .await;
    let entries = history["entries"].as_array().expect("entries");
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "ledger order: {seqs:?}"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["event"]["dossier"] == dossier.as_str())
    );
    let ids: Vec<&str> = entries
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = events[..2500]
        .iter()
        .filter(|e| e.dossier == dossier)
        .map(|e| e.id.as_str())
        .collect();
    for id in &expected {
        assert!(
            ids.contains(id),
            "{id} of dossier {dossier} is missing from its history"
        );
    }

    // Proofs verify with the log's key alone.
    for seq in [0, 7, 1234, cp_size - 1] {
        let proof: InclusionProof = serde_json::from_value(
            api.ok(
                "/v1/proofs/inclusion",
                &format!("/v1/proofs/inclusion?seq={seq}&tree_size={cp_size}"),
            )
            .await,
        )
        .expect("an inclusion proof");
        let (entry, _) = proof.verify(&key).expect("the inclusion proof verifies");
        assert_eq!(entry.seq, seq);
    }
    let proof: InclusionProof = serde_json::from_value(
        api.ok(
            "/v1/proofs/inclusion",
            &format!("/v1/proofs/inclusion?id={id7}"),
        )
        .await,
    )
    .expect("an inclusion proof");
    assert_eq!(proof.leaf_index, 7);
    proof
        .verify(&key)
        .expect("verifies against the latest checkpoint");
    let consistency: ConsistencyProof = serde_json::from_value(
        api.ok(
            "/v1/proofs/consistency",
            &format!("/v1/proofs/consistency?from=100&to={cp_size}"),
        )
        .await,
    )
    .expect("a consistency proof");
    consistency
        .verify()
        .expect("the consistency proof verifies");
    assert_eq!(consistency.new_root, signed.checkpoint.root);

    // An export bundle verifies offline with the log's key.
    let a = api.get("/v1/export", "/v1/export?from=10&to=300").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let bundle: socai_chain::bundle::Bundle = serde_json::from_slice(&a.body).expect("a bundle");
    let report = bundle.verify(Some(&key)).expect("the bundle verifies");
    assert_eq!((report.from, report.to), (10, 300));
    phase("entries, events, dossier, proofs, export");

    // Tiles: what the checkpoint covers, full and partial; nothing beyond it.
    let full = Tile {
        kind: TileKind::Hashes { level: 0 },
        index: 0,
        width: 256,
    };
    let a = api.get("/tile/{path}", &format!("/{}", full.path())).await;
    assert_eq!((a.status, a.body.len()), (200, 8192));
    assert_eq!(a.content_type, "application/octet-stream");
    let bundle0 = api.get("/tile/{path}", "/tile/entries/000").await;
    let entries0 = split_entry_bundle(&bundle0.body).expect("bundle");
    assert_eq!(entries0.len(), 256);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(entries0[7]).unwrap()["event"]["id"],
        id7.as_str()
    );
    let beyond = Tile {
        kind: TileKind::Entries,
        index: cp_size / 256 + 4,
        width: 256,
    };
    api.problem(
        "GET",
        "/tile/{path}",
        &format!("/{}", beyond.path()),
        None,
        None,
        404,
        None,
    )
    .await;
    phase("tiles");

    // Every error path names what is wrong (and the parameter).
    let e = |template: &'static str, path: String, status: u16, param: Option<&'static str>| {
        (template, path, status, param)
    };
    let errors = [
        e(
            "/v1/entries/{seq}",
            "/v1/entries/99999999".into(),
            404,
            None,
        ),
        e(
            "/v1/entries/{seq}",
            "/v1/entries/x".into(),
            400,
            Some("seq"),
        ),
        e(
            "/v1/entries/{seq}",
            "/v1/entries/7?verbose=1".into(),
            400,
            Some("verbose"),
        ),
        e(
            "/v1/entries",
            "/v1/entries?limit=51".into(),
            400,
            Some("limit"),
        ),
        e(
            "/v1/entries",
            "/v1/entries?limit=0".into(),
            400,
            Some("limit"),
        ),
        e(
            "/v1/entries",
            "/v1/entries?from=-1".into(),
            400,
            Some("from"),
        ),
        e(
            "/v1/entries",
            "/v1/entries?from=1&from=2".into(),
            400,
            Some("from"),
        ),
        e("/v1/events/{id}", "/v1/events/no-such-id".into(), 404, None),
        e(
            "/v1/dossiers/{dossier}",
            "/v1/dossiers/no-such-dossier".into(),
            404,
            None,
        ),
        e(
            "/v1/checkpoints/{size}",
            "/v1/checkpoints/3".into(),
            404,
            None,
        ),
        e(
            "/v1/checkpoints/{size}",
            "/v1/checkpoints/big".into(),
            400,
            Some("size"),
        ),
        e(
            "/v1/checkpoints",
            "/v1/checkpoints?limit=1000".into(),
            400,
            Some("limit"),
        ),
        e(
            "/v1/proofs/inclusion",
            "/v1/proofs/inclusion".into(),
            400,
            Some("id"),
        ),
        e(
            "/v1/proofs/inclusion",
            "/v1/proofs/inclusion?id=a&seq=1".into(),
            400,
            Some("id"),
        ),
        e(
            "/v1/proofs/inclusion",
            "/v1/proofs/inclusion?id=no-such-id".into(),
            404,
            None,
        ),
        e(
            "/v1/proofs/inclusion",
            format!(
                "/v1/proofs/inclusion?seq={}&tree_size={}",
                listed[0], listed[0]
            ),
            409,
            None,
        ),
        e(
            "/v1/proofs/inclusion",
            "/v1/proofs/inclusion?seq=1&tree_size=5".into(),
            404,
            None,
        ),
        e(
            "/v1/proofs/consistency",
            "/v1/proofs/consistency".into(),
            400,
            Some("from"),
        ),
        e(
            "/v1/proofs/consistency",
            "/v1/proofs/consistency?from=0".into(),
            400,
            Some("from"),
        ),
        e(
            "/v1/proofs/consistency",
            "/v1/proofs/consistency?from=10&to=5".into(),
            400,
            Some("from"),
        ),
        e(
            "/v1/proofs/consistency",
            "/v1/proofs/consistency?from=1&to=99999999".into(),
            400,
            Some("to"),
        ),
        e(
            "/v1/proofs/inclusion",
            "/v1/proofs/inclusion?seq=99999999".into(),
            404,
            None,
        ),
        e(
            "/v1/events/{id}",
            "/v1/events/%FF".into(),
            400,
            Some("path"),
        ),
        e(
            "/v1/export",
            "/v1/export?from=10&to=5".into(),
            400,
            Some("from"),
        ),
        e(
            "/v1/export",
            "/v1/export?from=99999999".into(),
            400,
            Some("from"),
        ),
        e(
            "/v1/export",
            "/v1/export?to=99999999".into(),
            400,
            Some("to"),
        ),
        e(
            "/v1/export",
            "/v1/export?personal=yes".into(),
            400,
            Some("personal"),
        ),
        e(
            "/v1/metrics",
            "/v1/metrics?metric=speed".into(),
            400,
            Some("metric"),
        ),
        e(
            "/v1/metrics",
            "/v1/metrics?scope=county:1".into(),
            400,
            Some("scope"),
        ),
        e(
            "/v1/metrics",
            "/v1/metrics?window=week".into(),
            400,
            Some("window"),
        ),
        e("/v1/metrics", "/v1/metrics?window=all".into(), 400, None),
        e(
            "/v1/metrics",
            "/v1/metrics?scope=province:%3E".into(),
            400,
            Some("scope"),
        ),
        e(
            "/v1/metrics/stream",
            "/v1/metrics/stream?scope=agency:a%20b".into(),
            400,
            Some("scope"),
        ),
        e(
            "/v1/metrics/stream",
            "/v1/metrics/stream?metric=speed".into(),
            400,
            Some("metric"),
        ),
        e("/tile/{path}", "/tile/0/5".into(), 400, Some("path")),
        e(
            "/tile/{path}",
            "/tile/entries/000.p/0".into(),
            400,
            Some("path"),
        ),
        e("/tile/{path}", "/tile/9/000".into(), 400, Some("path")),
        e("/checkpoint", "/checkpoint?x=1".into(), 400, Some("x")),
        e("/readyz", "/readyz?x=1".into(), 400, Some("x")),
    ];
    for (template, path, status, param) in &errors {
        api.problem("GET", template, path, None, None, *status, *param)
            .await;
    }
    let a = api
        .http
        .get(format!("{}/v2/nothing", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 404);
    assert_eq!(a.headers()["content-type"], "application/problem+json");
    let a = api
        .http
        .post(format!("{}/v1/entries/7", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 405);
    assert_eq!(a.headers()["content-type"], "application/problem+json");
    // A token nobody issued is refused on public routes too, never taken for the public.
    api.problem(
        "GET",
        "/v1/log",
        "/v1/log",
        Some(OTHER_TOKEN),
        None,
        401,
        None,
    )
    .await;
    // A body larger than [http] max_body_bytes.
    let big = serde_json::json!({"id": id7, "reason": "x".repeat(20_000)});
    api.problem(
        "POST",
        "/v1/redactions",
        "/v1/redactions",
        Some(TOKEN),
        Some(big),
        413,
        Some("body"),
    )
    .await;
    // The auditor role.
    api.problem(
        "GET",
        "/v1/entries/{seq}",
        "/v1/entries/7?personal=true",
        None,
        None,
        401,
        None,
    )
    .await;
    api.problem(
        "GET",
        "/v1/entries/{seq}",
        "/v1/entries/7?personal=true",
        Some(OTHER_TOKEN),
        None,
        401,
        None,
    )
    .await;
    let redact = Some(serde_json::json!({"id": id7, "reason": "test"}));
    api.problem(
        "POST",
        "/v1/redactions",
        "/v1/redactions",
        None,
        redact.clone(),
        401,
        None,
    )
    .await;
    api.problem(
        "POST",
        "/v1/redactions",
        "/v1/redactions",
        Some(OTHER_TOKEN),
        redact,
        401,
        None,
    )
    .await;
    api.problem(
        "POST",
        "/v1/redactions",
        "/v1/redactions",
        Some(TOKEN),
        Some(serde_json::json!({"id": id7})),
        400,
        Some("body"),
    )
    .await;
    api.problem(
        "POST",
        "/v1/redactions",
        "/v1/redactions",
        Some(TOKEN),
        Some(serde_json::json!({"id": id7, "reason": ""})),
        400,
        Some("reason"),
    )
    .await;
    api.problem(
        "POST",
        "/v1/redactions",
        "/v1/redactions",
        Some(TOKEN),
        Some(serde_json::json!({"id": "no-such-id", "reason": "test"})),
        404,
        None,
    )
    .await;
    // A published procedure carries no personal data: nothing to redact.
    let procedure = events
        .iter()
        .find(|e| e.event_type == "procedure.published")
        .expect("a procedure");
    let nothing = Some(serde_json::json!({"id": procedure.id, "reason": "test"}));
    api.problem(
        "POST",
        "/v1/redactions",
        "/v1/redactions",
        Some(TOKEN),
        nothing,
        409,
        None,
    )
    .await;
    // Live clients are bounded: the fifth of four is refused, not queued. (The clients above
    // are gone once the server has noticed.)
    wait_until(PATIENCE, "the earlier live clients to be gone", || async {
        sse_clients(&api).await == 0
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(Sse::open(&api, "", None).await);
    }
    api.problem(
        "GET",
        "/v1/metrics/stream",
        "/v1/metrics/stream",
        None,
        None,
        503,
        None,
    )
    .await;
    drop(held);
    phase("error paths");

    // Prometheus figures of the writer and the API.
    let a = api.get("/metrics", "/metrics").await;
    assert_eq!(a.status, 200);
    let text = a.text();
    for name in [
        "socai_events_committed_total",
        "socai_events_duplicate_total",
        "socai_commit_latency_seconds_bucket",
        "socai_batch_size_events_bucket",
        "socai_consumer_lag_events",
        "socai_checkpoint_age_seconds",
        "socai_ledger_entries",
        "socai_writer_up 1",
        "socai_sse_clients",
        "route=\"/v1/entries/{seq}\",method=\"GET\",status=\"200\"",
        "route=\"/v1/entries/{seq}\",method=\"GET\",status=\"404\"",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }

    // Everything published is committed, exactly once, in the order the API serves.
    publishing.await.expect("publisher");
    let total = events.len() as u64;
    wait_checkpoint(&api, total).await;
    let ids = api_ids(&api, total).await;
    assert_eq!(ids.len() as u64, total);
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len() as u64,
        total,
        "an event is in the ledger twice"
    );
    phase("all events committed");

    // The metrics: with the worker stopped (its last values stored), `socai metrics --api` shows
    // what /v1/metrics serves, and `socai audit metrics --api` recomputes them all from the
    // running ledger's entries and finds every one right.
    worker.stop();
    let served = api
        .ok("/v1/metrics", "/v1/metrics?scope=national&window=all")
        .await["values"]
        .as_array()
        .unwrap()
        .clone();
    let shown: Vec<serde_json::Value> = serde_json::from_str(
        ledger
            .ok(&[
                "--json", "--api", &api.base, "metrics", "--scope", "national", "--window", "all",
            ])
            .trim(),
    )
    .unwrap();
    assert!(!shown.is_empty());
    for v in &shown {
        assert!(
            served.contains(v),
            "socai metrics --api shows {v}, which /v1/metrics does not serve"
        );
    }
    let out = ledger
        .cmd(&[
            "--json", "--api", &api.base, "--nats", &url, "audit", "metrics",
        ])
        .env("SOCAI_NATS_USER", "dashboard")
        .env("SOCAI_NATS_PASSWORD", password("dashboard"))
        .output()
        .expect("socai audit metrics runs");
    let text = socai_e2e::stdout(&out);
    assert!(out.status.success(), "{text}{}", socai_e2e::stderr(&out));
    let audit: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(audit["ok"], true, "{audit}");
    assert_eq!(audit["at"], total, "{audit}");
    assert_eq!(audit["complete_for_workers"][0], "p0", "{audit}");
    assert!(audit["matched"].as_u64().unwrap() > 100, "{audit}");
    phase("metrics and their audit through --api");

    // The same answers as the CLI's: first through --api, then from the stopped store.
    let size = latest_size(&api).await;
    let old = listed[0];
    assert!(old >= 1);
    let remote = |args: &[&str]| -> String {
        let mut all = vec!["--json", "--api", api.base.as_str(), "--api-token", TOKEN];
        all.extend_from_slice(args);
        ledger.ok(&all)
    };
    let id_last = ids[(size - 1) as usize].clone();
    let via_api: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["proof", "inclusion", "--seq", "7"],
            "/v1/proofs/inclusion?seq=7".to_string(),
        ),
        (
            vec!["proof", "inclusion", "--id", &id_last],
            format!("/v1/proofs/inclusion?id={id_last}"),
        ),
        (
            vec!["proof", "consistency", "--from", "100"],
            "/v1/proofs/consistency?from=100".into(),
        ),
        (vec!["show", "7"], "/v1/entries/7".into()),
        (
            vec!["show", &id7, "--personal"],
            format!("/v1/events/{id7}?personal=true"),
        ),
        (vec!["history", &dossier], format!("/v1/dossiers/{dossier}")),
    ];
    let old_text = old.to_string();
    let old_proof = vec![
        "proof",
        "inclusion",
        "--seq",
        "0",
        "--tree-size",
        old_text.as_str(),
    ];
    let mut answers = Vec::new();
    for (args, path) in &via_api {
        let template = if path.starts_with("/v1/proofs/inclusion") {
            "/v1/proofs/inclusion"
        } else if path.starts_with("/v1/proofs/consistency") {
            "/v1/proofs/consistency"
        } else if path.starts_with("/v1/entries") {
            "/v1/entries/{seq}"
        } else if path.starts_with("/v1/events") {
            "/v1/events/{id}"
        } else {
            "/v1/dossiers/{dossier}"
        };
        let a = api.send("GET", template, path, Some(TOKEN), None).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        // The CLI's --json prints the API's bytes (proofs byte for byte; JSON values equal).
        let cli = remote(args);
        if args[0] == "proof" {
            assert_eq!(cli.trim_end().as_bytes(), a.body.as_slice(), "{args:?}");
        } else {
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(cli.trim_end()).unwrap(),
                a.json(),
                "{args:?}"
            );
        }
        answers.push((args.clone(), cli));
    }
    answers.push((old_proof.clone(), remote(&old_proof)));
    let list_api = remote(&["checkpoint", "--list"]);
    let export_api = ledger.path("export-api.json");
    remote(&[
        "export",
        "--from",
        "5",
        "--to",
        "777",
        "--out",
        export_api.to_str().unwrap(),
    ]);
    let export_http = api.get("/v1/export", "/v1/export?from=5&to=777").await;
    assert_eq!(std::fs::read(&export_api).unwrap(), export_http.body);
    phase("CLI through --api");

    serve.stop();
    for (args, via) in &answers {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let local = ledger.ok(&all);
        assert_eq!(
            &local, via,
            "socai {args:?} differs from the same through --api"
        );
    }
    assert_eq!(ledger.ok(&["--json", "checkpoint", "--list"]), list_api);
    let export_local = ledger.path("export-local.json");
    ledger.ok(&[
        "export",
        "--from",
        "5",
        "--to",
        "777",
        "--out",
        export_local.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(&export_local).unwrap(),
        std::fs::read(&export_api).unwrap(),
        "the API's export differs from `socai export`"
    );
    ledger.verified_size();
    phase("the stopped store's CLI gives the same answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_with_only_the_url_and_the_key_verifies_a_hundred_thousand_entries() {
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let ledger = Ledger::new();
    ledger.configure(&config(""));
    let file = ledger.simulate("events.jsonl", 100_000, 5);
    ledger.ok(&["import", file.to_str().unwrap()]);
    phase("100 000 events imported");
    let mut nats = start_nats(&ledger.path("nats"), false);
    let url = nats.url();
    let mut serve = ledger.serve(&url, None);
    let api = Api::new(serve.http_url());

    // The auditor's own dir: the published key, the checkpoints it keeps, nothing else.
    let auditor = tempfile::tempdir().expect("auditor dir");
    let key_file = auditor.path().join("log.vkey");
    std::fs::copy(ledger.dir().join("checkpoint.vkey"), &key_file).expect("copy the key");
    let key = ledger.verifier();
    let audit = |args: &[&str]| {
        let out = std::process::Command::new(socai_e2e::socai_bin())
            .arg("--data-dir")
            .arg(auditor.path().join("no-data-dir"))
            .args(args)
            .env_remove("SOCAI_DATA_DIR")
            .output()
            .expect("socai runs");
        (
            out.status.code(),
            socai_e2e::stdout(&out),
            socai_e2e::stderr(&out),
        )
    };
    let keep = |name: &str, text: &str| {
        let path = auditor.path().join(name);
        std::fs::write(&path, text).expect("keep");
        path
    };
    let old_note = api.get("/checkpoint", "/checkpoint").await.text();
    let old = key.verify(&old_note).expect("signed").checkpoint;
    assert_eq!(old.size, 100_000);
    let old_file = keep("old.note", &old_note);

    // The log grows; the auditor keeps the new checkpoint too.
    publish_paced(
        &url,
        false,
        workload(100_300, 5)[100_000..].to_vec(),
        300,
        Duration::ZERO,
    )
    .await
    .expect("publisher");
    wait_checkpoint(&api, 100_300).await;
    let new_note = api.get("/checkpoint", "/checkpoint").await.text();
    let new = key.verify(&new_note).expect("signed").checkpoint;
    assert_eq!(new.size, 100_300);
    let new_file = keep("new.note", &new_note);
    phase("grown to 100 300");

    // An inclusion proof, checked offline with the key alone.
    let a = api
        .get("/v1/proofs/inclusion", "/v1/proofs/inclusion?seq=54321")
        .await;
    let proof_file = keep("inclusion.json", &a.text());
    let (code, out, err) = audit(&[
        "proof",
        "verify",
        proof_file.to_str().unwrap(),
        "--vkey",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("is entry 54321 of the signed tree of size 100300"),
        "{out}"
    );
    // A consistency proof between the two checkpoints it kept.
    let a = api
        .get(
            "/v1/proofs/consistency",
            "/v1/proofs/consistency?from=100000&to=100300",
        )
        .await;
    let consistency_file = keep("consistency.json", &a.text());
    let checkpoints = [
        "--checkpoint",
        old_file.to_str().unwrap(),
        "--checkpoint",
        new_file.to_str().unwrap(),
    ];
    let mut args = vec![
        "proof",
        "verify",
        consistency_file.to_str().unwrap(),
        "--vkey",
        key_file.to_str().unwrap(),
    ];
    args.extend_from_slice(&checkpoints);
    let (code, out, err) = audit(&args);
    assert_eq!(code, Some(0), "{out}{err}");
    // A doctored path fails.
    let mut doctored: serde_json::Value = a.json();
    doctored["path"][0] = serde_json::json!(Hash([1; 32]).to_hex());
    let bad_file = keep("bad.json", &doctored.to_string());
    args[2] = bad_file.to_str().unwrap();
    let (code, _, err) = audit(&args);
    assert_eq!(code, Some(3), "{err}");

    // The whole ledger from its tiles, pinned to the checkpoint kept earlier.
    let (code, out, err) = audit(&[
        "--json",
        "--api",
        &api.base,
        "verify",
        "--vkey",
        key_file.to_str().unwrap(),
        "--checkpoint",
        old_file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["report"]["entries"], 100_300, "{report}");
    assert_eq!(report["report"]["pinned_checked"], 1, "{report}");
    assert_eq!(report["report"]["root"], new.root.to_hex());
    phase("verify --api of 100 300 entries");
    // Another log's key, and a checkpoint of another log, fail (exit 3).
    let other = Ledger::new();
    let (code, _, err) = audit(&[
        "--api",
        &api.base,
        "verify",
        "--vkey",
        other.dir().join("checkpoint.vkey").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("the served checkpoint"), "{err}");
    let (code, _, err) = audit(&["--api", &api.base, "verify"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--vkey"), "{err}");
    let bare = api.base.trim_start_matches("http://").to_owned();
    let (code, _, err) = audit(&["--api", &bare, "show", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("http://"), "{err}");

    // An independent RFC 6962 implementation over the served tiles: the same roots as the
    // signed checkpoints, and the same proofs as the API's.
    let tree = tiled::Tree::fetch(&api, new.size).await;
    tree.leaves_match_the_entries();
    assert_eq!(tree.mth(0, new.size), new.root, "root of the tiles");
    assert_eq!(tree.mth(0, old.size), old.root, "old root from the tiles");
    for m in [0u64, 1, 255, 256, 54_321, 65_535, 65_536, 99_999, 100_299] {
        let served: InclusionProof = serde_json::from_value(
            api.ok(
                "/v1/proofs/inclusion",
                &format!("/v1/proofs/inclusion?seq={m}&tree_size={}", new.size),
            )
            .await,
        )
        .unwrap();
        assert_eq!(
            served.path,
            tree.path(m, 0, new.size),
            "inclusion path of {m}"
        );
        assert_eq!(served.entry, tree.entries[m as usize]);
    }
    for (m, n) in [
        (1u64, 2u64),
        (255, 100_300),
        (65_536, 100_300),
        (old.size, new.size),
    ] {
        let served: ConsistencyProof = serde_json::from_value(
            api.ok(
                "/v1/proofs/consistency",
                &format!("/v1/proofs/consistency?from={m}&to={n}"),
            )
            .await,
        )
        .unwrap();
        // Every subtree of the first n leaves is a subtree of the fetched tree too.
        let ours = tree.subproof(m, 0, n, true);
        assert_eq!(served.path, ours, "consistency {m} → {n}");
        assert_eq!(served.old_root, tree.mth(0, m));
        assert_eq!(served.new_root, tree.mth(0, n));
    }
    phase("proofs rebuilt from the tiles alone");

    // Reads go on while nats-server is away; readiness says why it is not ready.
    nats.kill();
    wait_until(PATIENCE, "readyz to report nats down", || async {
        let a = api.get("/readyz", "/readyz").await;
        a.status == 503 && a.json()["nats"] == "disconnected"
    })
    .await;
    let e = api.ok("/v1/entries/{seq}", "/v1/entries/99999").await;
    assert_eq!(e["seq"], 99_999);
    let p = api
        .problem(
            "GET",
            "/v1/metrics",
            "/v1/metrics?scope=national",
            None,
            None,
            503,
            None,
        )
        .await;
    assert!(p["detail"].as_str().unwrap().contains("nats"), "{p}");
    nats.restart().expect("nats-server restarts");
    wait_until(PATIENCE, "readyz to recover", || async {
        api.get("/readyz", "/readyz").await.status == 200
    })
    .await;
    serve.stop();
}

/// Every personal value of `events` (citizen ids and phone numbers are unique enough to search
/// for in any answer).
fn personal_values(events: &[Event]) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        if let Some(p) = &e.personal {
            for field in ["citizen_id", "phone"] {
                if let Some(v) = p[field].as_str() {
                    out.push(v.to_owned());
                }
            }
        }
    }
    out
}

fn contains_any(body: &[u8], needles: &[String]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    needles.iter().find(|n| text.contains(n.as_str())).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_only_to_auditors_and_redaction_while_publishers_run() {
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let World {
        ledger,
        nats: _nats,
        url,
        mut serve,
        api,
        mut worker,
        events,
    } = world(3000, 31, 1500).await;
    let (first, rest) = events.split_at(1500);
    // Metric values exist, so the probes below of /v1/metrics and the stream see real answers.
    wait_until(PATIENCE, "the worker's values", || async {
        let a = api.get("/v1/metrics", "/v1/metrics?scope=national").await;
        a.status == 200 && !a.json()["values"].as_array().unwrap().is_empty()
    })
    .await;
    let personal = personal_values(first);
    assert!(personal.len() > 100, "the workload carries personal data");
    let with_personal: Vec<&Event> = first.iter().filter(|e| e.personal.is_some()).collect();
    let (victim, keeper) = (with_personal[3], with_personal[4]);
    let victim_seq = api
        .ok("/v1/events/{id}", &format!("/v1/events/{}", victim.id))
        .await["seq"]
        .as_u64()
        .unwrap();
    phase("1500 entries, some with personal data");

    // Without the auditor token no route returns personal data: every route of the OpenAPI
    // document, with the parameters that would include it.
    let cp = latest_size(&api).await;
    let mut probes: Vec<(&str, String)> = vec![
        ("/v1/log", "/v1/log".into()),
        ("/v1/checkpoints", "/v1/checkpoints".into()),
        ("/v1/checkpoints/latest", "/v1/checkpoints/latest".into()),
        ("/v1/checkpoints/{size}", format!("/v1/checkpoints/{cp}")),
        (
            "/v1/checkpoints/witnessed",
            "/v1/checkpoints/witnessed".into(),
        ),
        ("/v1/witnesses", "/v1/witnesses".into()),
        ("/v1/entries", "/v1/entries?from=0&limit=50".into()),
        (
            "/v1/entries",
            format!("/v1/entries?from={}&limit=50", victim_seq - victim_seq % 50),
        ),
        ("/v1/entries/{seq}", format!("/v1/entries/{victim_seq}")),
        ("/v1/events/{id}", format!("/v1/events/{}", victim.id)),
        (
            "/v1/dossiers/{dossier}",
            format!("/v1/dossiers/{}", victim.dossier),
        ),
        (
            "/v1/proofs/inclusion",
            format!("/v1/proofs/inclusion?id={}", victim.id),
        ),
        (
            "/v1/proofs/consistency",
            "/v1/proofs/consistency?from=1".into(),
        ),
        ("/v1/export", "/v1/export".into()),
        ("/v1/metrics", "/v1/metrics?scope=national".into()),
        ("/v1/dashboard", "/v1/dashboard".into()),
        (
            "/v1/dashboard/view",
            format!(
                "/v1/dashboard/view?scope=agency:{}&window=day",
                victim.agency
            ),
        ),
        (
            "/v1/dashboard/series",
            format!(
                "/v1/dashboard/series?scope=agency:{}&metric=backlog&kind=day",
                victim.agency
            ),
        ),
        ("/dashboard", "/dashboard".into()),
        (
            "/dashboard/assets/{file}",
            "/dashboard/assets/app.js".into(),
        ),
        ("/v1/openapi.json", "/v1/openapi.json".into()),
        ("/checkpoint", "/checkpoint".into()),
        ("/healthz", "/healthz".into()),
        ("/readyz", "/readyz".into()),
        ("/metrics", "/metrics".into()),
    ];
    for index in 0..cp / 256 {
        probes.push(("/tile/{path}", format!("/tile/entries/{:03}", index)));
    }
    let covered: std::collections::BTreeSet<&str> = probes.iter().map(|(t, _)| *t).collect();
    for (method, template) in api.openapi.operations() {
        assert!(
            method != "GET"
                || covered.contains(template.as_str())
                || template == "/v1/metrics/stream",
            "GET {template} is not probed for personal data"
        );
    }
    for (template, path) in &probes {
        let a = api.get(template, path).await;
        assert!(a.status < 500, "{path}: {}", a.text());
        assert_eq!(
            contains_any(&a.body, &personal),
            None,
            "{path} shows personal data"
        );
    }
    for (template, path) in [
        ("/v1/entries", "/v1/entries?personal=true".to_owned()),
        (
            "/v1/entries/{seq}",
            format!("/v1/entries/{victim_seq}?personal=true"),
        ),
        (
            "/v1/events/{id}",
            format!("/v1/events/{}?personal=true", victim.id),
        ),
        ("/v1/export", "/v1/export?personal=true".to_owned()),
    ] {
        for token in [None, Some(OTHER_TOKEN)] {
            let p = api
                .problem("GET", template, &path, token, None, 401, None)
                .await;
            assert_eq!(contains_any(p.to_string().as_bytes(), &personal), None);
        }
    }
    // A conflicting copy of the victim (same id, other content, same personal data) published
    // without a message id: the ledger rejects it, so REJECTED and EVENTS both hold its personal
    // data until the redaction erases them.
    let (client, _) = connect(&url, Some("gateway")).await;
    let gw = async_nats::jetstream::new(client);
    let mut conflicting = victim.clone();
    conflicting.occurred_at = "2026-11-21T08:00:00+07:00".into();
    gw.publish(
        socai_wire::subject::event_subject(&victim.agency, &victim.event_type),
        serde_json::to_vec(&conflicting).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .expect("EVENTS stores the conflicting copy");
    let (client, _) = connect(&url, Some("ledger")).await;
    let ljs = async_nats::jetstream::new(client);
    wait_until(PATIENCE, "the conflicting copy on REJECTED", || async {
        stream_messages(&ljs, "REJECTED").await == 1
    })
    .await;
    let mut sse = Sse::open(&api, "", None).await;
    // The auditor sees it.
    let shown = api.auditor_event(&victim.id).await;
    assert_eq!(
        shown["personal"]["personal"],
        victim.personal.clone().unwrap()
    );
    phase("no personal data without the token, on every route");

    // Redaction over HTTP while publishers run.
    let publishing = publish_paced(&url, true, rest.to_vec(), 100, Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = api
        .send(
            "POST",
            "/v1/redactions",
            "/v1/redactions",
            Some(TOKEN),
            Some(serde_json::json!({"id": victim.id, "reason": "citizen request (Decree 13)"})),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let done = a.json();
    assert_eq!(done["target_seq"], victim_seq);
    // The original on EVENTS, the conflicting copy there and its REJECTED copy.
    assert_eq!(done["copies_erased"], 3, "{done}");
    assert_eq!(done["copies_pending"], false);
    let redaction_seq = done["redaction_seq"].as_u64().unwrap();
    assert!(done["tree_size"].as_u64().unwrap() > redaction_seq);
    // Again: nothing left to redact.
    api.problem(
        "POST",
        "/v1/redactions",
        "/v1/redactions",
        Some(TOKEN),
        Some(serde_json::json!({"id": victim.id, "reason": "again"})),
        409,
        None,
    )
    .await;
    // The CLI does the same against the running ledger.
    let with_rest: Vec<&Event> = rest.iter().filter(|e| e.personal.is_some()).collect();
    let second = with_personal[5];
    ledger.ok(&[
        "--api",
        &api.base,
        "--api-token",
        TOKEN,
        "redact",
        &second.id,
        "--reason",
        "citizen request",
    ]);
    publishing.await.expect("publisher");
    let total = events.len() as u64 + 2;
    wait_checkpoint(&api, total).await;
    phase("two redactions while 1500 more events arrived");

    // A copy of the redacted event arriving afterwards, refused before the ledger sees it (a bad
    // field): its REJECTED copy and its EVENTS message are erased too, at the next erasure pass.
    let mut late = victim.clone();
    late.occurred_at = "yesterday".into();
    gw.publish(
        socai_wire::subject::event_subject(&victim.agency, &victim.event_type),
        serde_json::to_vec(&late).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .expect("EVENTS stores the late copy");
    wait_until(PATIENCE, "the late copy rejected, then erased", || async {
        let mut rejected = ljs.get_stream("REJECTED").await.unwrap();
        let state = &rejected.info().await.unwrap().state;
        state.last_sequence >= 2 && state.messages == 0
    })
    .await;

    // Nothing lost, nothing twice.
    let ids = api_ids(&api, total).await;
    let mut expected: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    expected.push(format!("redaction:{}", victim.id));
    expected.push(format!("redaction:{}", second.id));
    let mut got = ids.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    assert_eq!(
        ids[redaction_seq as usize],
        format!("redaction:{}", victim.id)
    );

    // The redaction entry names what, why and by whom (the token's holder).
    let record = api
        .ok(
            "/v1/events/{id}",
            &format!("/v1/events/redaction:{}", victim.id),
        )
        .await;
    assert_eq!(record["event"]["type"], "ledger.redacted");
    assert_eq!(record["event"]["data"]["target_id"], victim.id.as_str());
    assert_eq!(record["event"]["data"]["redacted_by"], "inspector-7");
    // Gone from every route, for the auditor too; the other records are intact.
    let gone: Vec<String> = personal_values(&[victim.clone(), second.clone()]);
    for (template, path) in [
        (
            "/v1/entries/{seq}",
            format!("/v1/entries/{victim_seq}?personal=true"),
        ),
        (
            "/v1/events/{id}",
            format!("/v1/events/{}?personal=true", victim.id),
        ),
        (
            "/v1/entries",
            format!(
                "/v1/entries?from={}&limit=50&personal=true",
                victim_seq - victim_seq % 50
            ),
        ),
        ("/v1/export", "/v1/export?personal=true".to_owned()),
        (
            "/v1/dossiers/{dossier}",
            format!("/v1/dossiers/{}", victim.dossier),
        ),
    ] {
        let a = api.send("GET", template, &path, Some(TOKEN), None).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text());
        assert_eq!(
            contains_any(&a.body, &gone),
            None,
            "{path} still shows redacted data"
        );
    }
    let entry = api.auditor_event(&victim.id).await;
    assert!(entry["personal"].is_null(), "{entry}");
    let kept = api.auditor_event(&keeper.id).await;
    assert_eq!(
        kept["personal"]["personal"],
        keeper.personal.clone().unwrap()
    );
    let later = with_rest[0];
    let kept = api.auditor_event(&later.id).await;
    assert_eq!(
        kept["personal"]["personal"],
        later.personal.clone().unwrap()
    );
    let export = api
        .send(
            "GET",
            "/v1/export",
            "/v1/export?personal=true",
            Some(TOKEN),
            None,
        )
        .await;
    let bundle: socai_chain::bundle::Bundle = serde_json::from_slice(&export.body).unwrap();
    let report = bundle
        .verify(Some(&ledger.verifier()))
        .expect("the auditor's export verifies");
    assert!(report.personal_checked > 100);
    assert!(bundle.personal.iter().all(|d| d.seq != victim_seq));
    // Proofs still verify, for the redacted event too.
    let proof: InclusionProof = serde_json::from_value(
        api.ok(
            "/v1/proofs/inclusion",
            &format!("/v1/proofs/inclusion?id={}", victim.id),
        )
        .await,
    )
    .unwrap();
    proof
        .verify(&ledger.verifier())
        .expect("the redacted event's proof verifies");
    // The live stream carried changes, and no personal data.
    let mut frames = 0;
    while let Some(frame) = sse.next(Duration::from_millis(500)).await {
        assert_eq!(contains_any(frame.data.as_bytes(), &personal), None);
        frames += 1;
    }
    assert!(
        frames > 0,
        "no live change arrived while 1500 events were committed"
    );
    worker.stop();
    serve.stop();
    assert_eq!(ledger.verified_size(), total);
    phase("verified after stopping");

    // Real erasure: no file socai or its nats-server wrote (data dir, key file, JetStream store,
    // every log) holds the redacted values any more; the kept ones are still there (sealed in the
    // store, plain in EVENTS), so the scan does see what it looks for.
    let elsewhere: std::collections::BTreeSet<String> = personal_values(
        &events
            .iter()
            .filter(|e| e.id != victim.id && e.id != second.id)
            .cloned()
            .collect::<Vec<_>>(),
    )
    .into_iter()
    .collect();
    let gone: Vec<String> = gone
        .into_iter()
        .filter(|v| !elsewhere.contains(v))
        .collect();
    assert!(
        gone.len() >= 2,
        "the redacted events had personal values of their own"
    );
    let hits = files_containing(ledger.tmp.path(), &gone);
    assert!(
        hits.is_empty(),
        "redacted personal data still on disk: {hits:?}"
    );
    let kept_value = personal_values(std::slice::from_ref(keeper));
    assert!(
        !files_containing(&ledger.path("nats"), &kept_value).is_empty(),
        "the scan finds personal data that was not redacted"
    );
    phase("redacted values in no file");
}

/// Files under `dir` (recursively) that contain any of `needles`, with the needle found.
fn files_containing(
    dir: &std::path::Path,
    needles: &[String],
) -> Vec<(std::path::PathBuf, String)> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                for n in needles {
                    if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                        hits.push((p.clone(), n.clone()));
                    }
                }
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ledger_says_it_has_nothing_signed_yet() {
    let ledger = Ledger::new();
    let nats = start_nats(&ledger.path("nats"), false);
    let mut serve = ledger.serve(&nats.url(), None);
    let api = Api::new(serve.http_url());
    for (template, path, status, code) in [
        ("/checkpoint", "/checkpoint", 404, "no_checkpoint"),
        (
            "/v1/checkpoints/latest",
            "/v1/checkpoints/latest",
            404,
            "no_checkpoint",
        ),
        ("/v1/export", "/v1/export", 404, "no_checkpoint"),
        (
            "/v1/proofs/consistency",
            "/v1/proofs/consistency?from=1",
            404,
            "no_checkpoint",
        ),
        (
            "/v1/proofs/inclusion",
            "/v1/proofs/inclusion?seq=0",
            404,
            "no_checkpoint",
        ),
        ("/v1/entries/{seq}", "/v1/entries/0", 404, "not_found"),
        ("/tile/{path}", "/tile/entries/000.p/1", 404, "not_found"),
    ] {
        let p = api
            .problem("GET", template, path, None, None, status, None)
            .await;
        assert_eq!(p["code"], code, "{path}: {p}");
    }
    let page = api.ok("/v1/entries", "/v1/entries").await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 0);
    assert_eq!(page["tree_size"], 0);
    let log = api.ok("/v1/log", "/v1/log").await;
    assert_eq!(
        (log["size"].as_u64(), log["checkpoint_size"].as_u64()),
        (Some(0), Some(0))
    );
    let page = api.ok("/v1/checkpoints", "/v1/checkpoints").await;
    assert_eq!(page["checkpoints"].as_array().unwrap().len(), 0);
    serve.stop();
}
