//! The log's side of C2SP tlog-witness: each configured witness gets every new signed
//! checkpoint (the latest one, when several were signed while it was away) with a consistency
//! proof from the size it cosigned last; its cosignature lines are checked against its key and
//! kept in the store (`SledStorage::add_cosignatures`).
//!
//! The collector does not know a witness's size at start: it asks with `old 0` and learns it
//! from the 409, as the protocol intends. A witness that holds a size larger than this log's
//! latest checkpoint (this data dir is older than the log the witness saw, or another log signs
//! with this key) is reported and asked again later; it is never sent anything it could take
//! for a rollback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use socai_chain::cosign::{AddCheckpoint, CosignatureVerifier, note_body};
use socai_store::{LedgerReader, SledStorage};

/// How many of the newest cosigned checkpoints are looked through for a witness's last line at
/// start.
const SEED_SCAN: usize = 1000;

/// How often the collector looks for a new signed checkpoint.
const POLL: Duration = Duration::from_millis(500);
/// Longest an `add-checkpoint` request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed request, doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A witness of the log: one the log sends its checkpoints to (with a URL), or one that follows
/// the log itself and posts its cosignatures to the log's API (`socai witness serve --follow`;
/// no URL).
#[derive(Debug, Clone)]
pub struct WitnessTarget {
    /// The witness's submission prefix (`<url>/add-checkpoint` is posted to).
    pub url: Option<reqwest::Url>,
    pub verifier: CosignatureVerifier,
}

impl WitnessTarget {
    /// A witness at submission prefix `url` (none: it follows the log and posts its
    /// cosignatures) with verifier key text `vkey`.
    pub fn new(url: Option<&str>, vkey: &str) -> Result<WitnessTarget, String> {
        let url = match url {
            None => None,
            Some(url) => {
                let mut url = reqwest::Url::parse(url.trim())
                    .map_err(|e| format!("witness URL {url:?} is invalid: {e}"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(format!("witness URL {url} is not http:// or https://"));
                }
                if !url.path().ends_with('/') {
                    url.set_path(&format!("{}/", url.path()));
                }
                Some(url)
            }
        };
        let verifier = CosignatureVerifier::from_vkey(vkey).map_err(|e| e.to_string())?;
        Ok(WitnessTarget { url, verifier })
    }

    /// Parses `URL=VKEY` (`socai serve --witness`): the witness's submission prefix, '=', its
    /// verifier key text. The URL may itself hold '=' (a query): the split is at the first '='
    /// after which a verifier key follows.
    pub fn parse(spec: &str) -> Result<WitnessTarget, String> {
        let mut last = None;
        for (i, _) in spec.match_indices('=') {
            let (url, vkey) = (&spec[..i], &spec[i + 1..]);
            if CosignatureVerifier::from_vkey(vkey).is_ok() {
                return WitnessTarget::new(Some(url), vkey);
            }
            last = Some((url, vkey));
        }
        match last {
            // Name the key's problem, as split at the first '='.
            Some(_) => {
                let (url, vkey) = spec.split_once('=').unwrap_or_default();
                WitnessTarget::new(Some(url), vkey)
            }
            None => Err(format!(
                "witness {spec:?} is not URL=VKEY (its submission URL, '=', its verifier key)"
            )),
        }
    }
}

/// What the collector knows of each witness, for the API (`/v1/witnesses`, the dashboard) and
/// `/metrics`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WitnessReport {
    pub name: String,
    pub vkey: String,
    /// Where the log sends its checkpoints; none for a witness that follows the log itself.
    pub url: Option<String>,
    /// Size of the latest checkpoint the witness cosigned for this log, when known.
    pub cosigned_size: Option<u64>,
    /// The witness's time on that cosignature (seconds since the epoch).
    pub cosigned_at: Option<u64>,
    /// The last failure, until a request succeeds.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WitnessLabels {
    witness: String,
}

/// Shared reports, one per witness in configuration order, and their Prometheus gauges.
#[derive(Debug, Default)]
pub struct WitnessBoard {
    reports: Mutex<Vec<WitnessReport>>,
    cosigned_size: Family<WitnessLabels, Gauge>,
    failing: Family<WitnessLabels, Gauge>,
}

impl WitnessBoard {
    /// Adds `socai_witness_cosigned_size` and `socai_witness_failing` to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "socai_witness_cosigned_size",
            "Size of the latest checkpoint of this log the witness cosigned",
            self.cosigned_size.clone(),
        );
        registry.register(
            "socai_witness_failing",
            "1 while the last request to the witness failed (see /v1/witnesses and the log)",
            self.failing.clone(),
        );
    }

    /// Records a cosignature of the checkpoint of `size` made at `at` by the witness whose
    /// (cosignature/v1) key text is `vkey`, as a following witness posts it.
    pub fn record(&self, vkey: &str, size: u64, at: u64) {
        let index = self.reports().iter().position(|r| r.vkey == vkey);
        if let Some(i) = index {
            self.update(i, |r| {
                if r.cosigned_size.is_none_or(|s| s <= size) {
                    r.cosigned_size = Some(size);
                    r.cosigned_at = Some(at);
                }
                // A posted line says nothing of a witness the log sends to (anyone may post
                // a genuine old line of it).
                if r.url.is_none() {
                    r.error = None;
                }
            });
        }
    }

    pub fn reports(&self) -> Vec<WitnessReport> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut WitnessReport)) {
        if let Some(r) = self
            .reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(i)
        {
            f(r);
            let labels = WitnessLabels {
                witness: r.name.clone(),
            };
            self.failing
                .get_or_create(&labels)
                .set(i64::from(r.error.is_some()));
            if let Some(size) = r.cosigned_size {
                self.cosigned_size
                    .get_or_create(&labels)
                    .set(i64::try_from(size).unwrap_or(i64::MAX));
            }
        }
    }
}

/// Sends the log's checkpoints to its witnesses until dropped (each witness in a task of its own:
/// a slow or absent witness holds up no other).
pub struct Collector {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Collector {
    pub fn start(
        reader: LedgerReader<SledStorage>,
        witnesses: Vec<WitnessTarget>,
        board: Arc<WitnessBoard>,
    ) -> Result<Collector, String> {
        *board.reports.lock().unwrap_or_else(|e| e.into_inner()) = witnesses
            .iter()
            .map(|w| WitnessReport {
                name: w.verifier.name().to_owned(),
                vkey: w.verifier.vkey().to_owned(),
                url: w.url.as_ref().map(redacted),
                cosigned_size: None,
                cosigned_at: None,
                error: None,
            })
            .collect();
        // What each witness cosigned before this start, from the store: a witness that follows
        // the log posts nothing while the log holds its line, and an idle log signs nothing new.
        for (i, w) in witnesses.iter().enumerate() {
            let key = (w.verifier.name().to_owned(), w.verifier.key_id());
            if let Ok(Some((size, line))) = reader.storage().newest_cosignature_by(&key, SEED_SCAN)
                && let Some(at) = socai_chain::cosign::line_time(&line)
            {
                board.update(i, |r| {
                    r.cosigned_size = Some(size);
                    r.cosigned_at = Some(at);
                });
            }
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| format!("making the HTTP client for the witnesses: {}", causes(&e)))?;
        let tasks = witnesses
            .into_iter()
            .enumerate()
            .filter_map(|(i, target)| Some((i, target.url.clone()?, target)))
            .map(|(i, url, target)| {
                let follower = Follower {
                    index: i,
                    url,
                    target,
                    reader: reader.clone(),
                    http: http.clone(),
                    board: board.clone(),
                    witness_size: None,
                    cosigned: None,
                    conflicts: 0,
                };
                tokio::spawn(follower.run())
            })
            .collect();
        Ok(Collector { tasks })
    }
}

struct Follower {
    index: usize,
    /// The witness's submission prefix.
    url: reqwest::Url,
    target: WitnessTarget,
    reader: LedgerReader<SledStorage>,
    http: reqwest::Client,
    board: Arc<WitnessBoard>,
    /// The size of the latest checkpoint the witness cosigned, as it last told this log (a 409
    /// or a cosignature); `None` until it said.
    witness_size: Option<u64>,
    /// The size whose cosignature this log holds from this witness (in this run).
    cosigned: Option<u64>,
    /// 409s in a row: a witness that keeps changing its answer is paused like a failing one.
    conflicts: u32,
}

/// The outcome of one `add-checkpoint`.
enum Sent {
    /// Cosigned: the valid lines, and the latest cosignature time among them.
    Cosigned(Vec<String>, u64),
    /// 409: the witness's size.
    Size(u64),
}

/// 409s in a row before the follower backs off.
const MAX_CONFLICTS: u32 = 3;

/// What one step did.
enum Step {
    /// Nothing to send: this log holds the witness's cosignature of its latest checkpoint.
    Idle,
    /// The witness told its size (a 409): send again at once.
    Learned,
    /// A new cosignature.
    Cosigned,
}

impl Follower {
    async fn run(mut self) {
        let name = self.target.verifier.name().to_owned();
        let mut pause = RETRY_MIN;
        loop {
            match self.step().await {
                // Only a cosignature ends a backoff: a witness answering 409 again and again
                // backs off more each time (after MAX_CONFLICTS in a row).
                Ok(Step::Cosigned) => pause = RETRY_MIN,
                Ok(Step::Learned) => {}
                Ok(Step::Idle) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    tracing::warn!(witness = %name, url = %redacted(&self.url), error = %e, retry_in_s = pause.as_secs(), "witness: no cosignature");
                    self.board.update(self.index, |r| r.error = Some(e));
                    // The next MAX_CONFLICTS 409s are allowed again, after a longer pause.
                    self.conflicts = 0;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Sends the latest checkpoint unless this log holds the witness's cosignature of it.
    async fn step(&mut self) -> Result<Step, String> {
        let Some(latest) = self
            .reader
            .latest_checkpoint()
            .map_err(|e| format!("reading the latest checkpoint: {e}"))?
        else {
            return Ok(Step::Idle);
        };
        let size = latest.checkpoint.size;
        if self.cosigned == Some(size) {
            return Ok(Step::Idle);
        }
        let old = self.witness_size.unwrap_or(0);
        if old > size {
            return Err(format!(
                "the witness cosigned size {old} of this log, more than its latest checkpoint ({size}): this data dir is older than the log the witness saw (restored from a backup?) or another log signs with this key. Find out which before going on: the witness will not cosign this log until it passes size {old} consistently"
            ));
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            let reader = self.reader.clone();
            tokio::task::spawn_blocking(move || reader.consistency_proof(old, Some(size)))
                .await
                .map_err(|e| format!("proof task failed: {e}"))?
                .map_err(|e| format!("consistency proof {old} → {size}: {e}"))?
                .path
        };
        let request = AddCheckpoint {
            old_size: old,
            proof,
            note: latest.note.clone(),
        };
        match self.send(&request).await? {
            Sent::Size(theirs) => {
                self.conflicts += 1;
                if old == size && theirs == size {
                    // Sent as its own size, with an empty proof: only another root is refused.
                    return Err(format!(
                        "the witness holds another root for size {size} than this log's {}: another log signs with this key (a fork). Stop and find out which log is genuine",
                        latest.checkpoint.root.to_hex()
                    ));
                }
                let went_back = self.witness_size.filter(|&w| theirs < w);
                self.witness_size = Some(theirs);
                if let Some(before) = went_back {
                    let e = format!(
                        "the witness now says it cosigned size {theirs} of this log, less than the {before} it said before: it lost its state or was restored from an older copy, and could now cosign a fork. Tell its operator"
                    );
                    // At error: the next cosignature clears the board's error within a second.
                    tracing::error!(witness = %self.target.verifier.name(), "{e}");
                    return Err(e);
                }
                if self.conflicts > MAX_CONFLICTS {
                    return Err(format!(
                        "the witness answered 409 {} times in a row (its size now {theirs})",
                        self.conflicts
                    ));
                }
                tracing::debug!(witness = %self.target.verifier.name(), size = theirs, "the witness's size");
                Ok(Step::Learned)
            }
            Sent::Cosigned(lines, at) => {
                let storage = self.reader.storage().clone();
                let stored = lines.clone();
                tokio::task::spawn_blocking(move || storage.add_cosignatures(size, &stored))
                    .await
                    .map_err(|e| format!("store task failed: {e}"))?
                    .map_err(|e| format!("storing the cosignature: {e}"))?;
                self.witness_size = Some(size);
                self.cosigned = Some(size);
                self.conflicts = 0;
                self.board.update(self.index, |r| {
                    r.cosigned_size = Some(size);
                    r.cosigned_at = Some(at);
                    r.error = None;
                });
                tracing::debug!(witness = %self.target.verifier.name(), size, "cosigned");
                Ok(Step::Cosigned)
            }
        }
    }

    async fn send(&self, request: &AddCheckpoint) -> Result<Sent, String> {
        let target = self
            .url
            .join("add-checkpoint")
            .map_err(|e| format!("witness URL: {e}"))?;
        let url = redacted(&target);
        let response = self
            .http
            .post(target)
            .body(request.body())
            .send()
            .await
            .map_err(|e| format!("POST {url}: {}", causes(&e)))?;
        let status = response.status().as_u16();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(format!(
                "{url} answered {status} with more than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer of {url}: {}", causes(&e)))?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "{url} answered {status} with more than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match status {
            200 => {
                let body = note_body(&request.note).unwrap_or_default();
                let mut valid = Vec::new();
                let mut at = 0;
                for line in text.lines().filter(|l| !l.is_empty()) {
                    match self.target.verifier.verify_line(body, line) {
                        Ok(Some(time)) => {
                            valid.push(line.to_owned());
                            at = at.max(time);
                        }
                        Ok(None) => {}
                        Err(e) => return Err(format!("{url} answered 200 with {e}")),
                    }
                }
                if valid.is_empty() {
                    return Err(format!(
                        "{url} answered 200 without a cosignature by the configured key {}",
                        self.target.verifier.vkey()
                    ));
                }
                Ok(Sent::Cosigned(valid, at))
            }
            409 => text.trim().parse().map(Sent::Size).map_err(|_| {
                format!(
                    "{url} answered 409 with {:?}, not a tree size",
                    short(&text)
                )
            }),
            404 => Err(format!(
                "{url} does not follow this log (404): give the witness this log's verifier key"
            )),
            403 => Err(format!(
                "{url} does not trust this log's key (403: {}): give the witness this log's current verifier key",
                short(&text)
            )),
            422 => Err(format!(
                "{url} refused: this log's checkpoint of size {} is not consistent with the one the witness cosigned (422: {}). This log or the one the witness saw was forked or rolled back: stop and find out which",
                request_size(request),
                short(&text)
            )),
            _ => Err(format!("{url} answered {status}: {}", short(&text))),
        }
    }
}

/// Largest answer read from a witness (cosignature lines are ~130 bytes each).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A URL without its user and password, for logs and `/v1/witnesses`.
fn redacted(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// An error and its causes (reqwest's own text leaves out "connection refused" and the like).
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn request_size(request: &AddCheckpoint) -> String {
    request.note.lines().nth(1).unwrap_or("?").to_owned()
}

fn short(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= 300 {
        s.to_owned()
    } else {
        s.chars().take(300).collect::<String>() + "…"
    }
}
