//! Commands against a running ledger's HTTP API (`--api URL`): the same answers as the local
//! commands, read from `socai serve` instead of a stopped store. `verify --api` checks a remote
//! ledger from its C2SP tiles alone, with nothing but the URL and the published key.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use socai_chain::checkpoint::CheckpointVerifier;
use socai_chain::cosign::CosignatureVerifier;
use socai_chain::tiles::{Tile, TileKind, TiledVerifier};

use super::nats::runtime;
use crate::cli::{Global, ProofKind};
use crate::output::{self, EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_VERIFY, Exit, emit};

/// Fetches in flight while verifying from tiles.
const TILES_IN_FLIGHT: usize = 16;

pub struct Remote {
    base: reqwest::Url,
    token: Option<String>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// The status and problem details of a failed request, as an error with the CLI's exit status.
fn problem(url: &str, status: reqwest::StatusCode, body: &[u8]) -> anyhow::Error {
    let detail = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let code_of = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned));
    let (code, kind) = match status.as_u16() {
        // A receipt that is not this ledger's: what `proof verify` calls a failed verification.
        409 if code_of.as_deref() == Some("receipt_mismatch") => {
            (EXIT_VERIFY, "verification_failed")
        }
        404 => (EXIT_NOT_FOUND, "not_found"),
        400 => (2, "usage"),
        401 | 403 => (EXIT_FAILURE, "unauthorized"),
        _ => (EXIT_FAILURE, "api_error"),
    };
    Exit::error(code, kind, format!("{url} answered {status}: {detail}"))
}

impl Remote {
    /// `None` without `--api`.
    pub fn from(g: &Global) -> anyhow::Result<Option<Remote>> {
        let Some(api) = &g.api else {
            return Ok(None);
        };
        let mut base = reqwest::Url::parse(api).map_err(|e| {
            Exit::error(
                2,
                "usage",
                format!("--api {api:?} is not a URL ({e}); give e.g. http://127.0.0.1:8080"),
            )
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Exit::error(
                2,
                "usage",
                format!(
                    "--api {api:?} is not an http:// or https:// URL; give e.g. http://127.0.0.1:8080"
                ),
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("socai/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .context("making the HTTP client")?;
        Ok(Some(Remote {
            base,
            token: g.api_token.clone(),
            http,
            rt: runtime()?,
        }))
    }

    /// `base` + path segments (each percent-encoded) + query.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> reqwest::Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("an http(s) URL has a path");
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(|e| {
            let url = e.url().map(|u| u.to_string()).unwrap_or_default();
            anyhow::anyhow!(
                "cannot reach the ledger's HTTP API at {url}: {e}; is `socai serve` running there (its --http address)?"
            )
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let url = response.url().to_string();
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        Err(problem(&url, status, &body))
    }

    async fn fetch(&self, url: reqwest::Url) -> anyhow::Result<Vec<u8>> {
        let response = self.send(self.http.get(url.clone())).await?;
        Ok(response
            .bytes()
            .await
            .with_context(|| format!("reading {url}"))?
            .to_vec())
    }

    pub fn get(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<Vec<u8>> {
        self.rt.block_on(self.fetch(self.url(segments, query)))
    }

    pub fn get_json(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<Value> {
        let url = self.url(segments, query);
        let bytes = self.get(segments, query)?;
        serde_json::from_slice(&bytes).with_context(|| format!("{url} did not answer JSON"))
    }

    /// `socai show --api`: by event id, or by seq when no event has that id.
    pub fn show(&self, id_or_seq: &str, personal: bool) -> anyhow::Result<()> {
        let query: Vec<(&str, String)> = if personal {
            vec![("personal", "true".into())]
        } else {
            Vec::new()
        };
        let value = match self.get_json(&["v1", "events", id_or_seq], &query) {
            Err(e) if id_or_seq.parse::<u64>().is_ok() && super::is_not_found(&e) => {
                self.get_json(&["v1", "entries", id_or_seq], &query)?
            }
            other => other?,
        };
        emit(&value, || {
            serde_json::to_string_pretty(&value).unwrap_or_default()
        });
        Ok(())
    }

    /// `socai history --api`.
    pub fn history(&self, dossier: &str) -> anyhow::Result<Value> {
        self.get_json(&["v1", "dossiers", dossier], &[])
    }

    /// `socai checkpoint --list --api`: every page.
    pub fn checkpoints(&self) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut from = 0u64;
        loop {
            let page = self.get_json(&["v1", "checkpoints"], &[("from", from.to_string())])?;
            if let Some(items) = page["checkpoints"].as_array() {
                all.extend(items.iter().cloned());
            }
            match page["next"].as_u64() {
                Some(next) => from = next,
                None => return Ok(all),
            }
        }
    }

    /// `socai proof inclusion|consistency --api`: the proof JSON as served.
    pub fn proof(&self, kind: &ProofKind) -> anyhow::Result<()> {
        let bytes = match kind {
            ProofKind::Inclusion {
                id, seq, tree_size, ..
            } => {
                let mut query = Vec::new();
                match (id, seq) {
                    (Some(id), _) => query.push(("id", id.clone())),
                    (None, Some(seq)) => query.push(("seq", seq.to_string())),
                    (None, None) => return Err(Exit::error(2, "usage", "give --id ID or --seq N")),
                }
                if let Some(size) = tree_size {
                    query.push(("tree_size", size.to_string()));
                }
                self.get(&["v1", "proofs", "inclusion"], &query)?
            }
            ProofKind::Consistency { from, to } => {
                let mut query = vec![("from", from.to_string())];
                if let Some(to) = to {
                    query.push(("to", to.to_string()));
                }
                self.get(&["v1", "proofs", "consistency"], &query)?
            }
            ProofKind::Verify { .. } => unreachable!("proof verify is offline"),
        };
        super::print_proof_bytes(&bytes)
    }

    /// `socai proof inclusion --receipt FILE --api`: the running ledger's proof for the
    /// receipt's event (`POST /v1/proofs/receipt`), printed as the local command prints it.
    pub fn receipt_proof(
        &self,
        receipt: &socai_chain::Receipt,
        id: Option<&str>,
    ) -> anyhow::Result<()> {
        let query: Vec<(&str, String)> = id.map(|id| ("id", id.to_owned())).into_iter().collect();
        let url = self.url(&["v1", "proofs", "receipt"], &query);
        let bytes = self.rt.block_on(async {
            let request = self
                .http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(receipt.to_json());
            let response = self.send(request).await?;
            anyhow::Ok(
                response
                    .bytes()
                    .await
                    .with_context(|| format!("reading {url}"))?
                    .to_vec(),
            )
        })?;
        super::print_proof_bytes(&bytes)
    }

    /// `socai export --api`: the bundle streamed into `out` (or standard output).
    pub fn export(
        &self,
        from: u64,
        to: Option<u64>,
        out: Option<&Path>,
        with_personal: bool,
    ) -> anyhow::Result<()> {
        let mut query = vec![("from", from.to_string())];
        if let Some(to) = to {
            query.push(("to", to.to_string()));
        }
        if with_personal {
            query.push(("personal", "true".into()));
        }
        let url = self.url(&["v1", "export"], &query);
        let mut sink: Box<dyn Write> = match out {
            Some(path) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        let bar = output::progress_bytes(0, "export");
        let written = self.rt.block_on(async {
            let response = self.send(self.http.get(url.clone())).await?;
            let mut body = response.bytes_stream();
            let mut written = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk =
                    chunk.with_context(|| format!("reading {url}; the export is incomplete"))?;
                sink.write_all(&chunk)?;
                written += chunk.len() as u64;
                bar.set_position(written);
            }
            anyhow::Ok(written)
        })?;
        bar.finish_and_clear();
        // A bundle ends with its closing brace: anything else was cut short.
        if out.is_none() {
            sink.write_all(b"\n")?;
        }
        sink.flush()?;
        drop(sink);
        if let Some(path) = out {
            let text = std::fs::read(path)?;
            let bundle: socai_chain::bundle::Bundle =
                serde_json::from_slice(&text).with_context(|| {
                    format!(
                        "{} is not a whole bundle: the export was cut short",
                        path.display()
                    )
                })?;
            let message = format!(
                "exported entries {}..{} ({written} bytes) bound to the signed checkpoint of size {} into {}",
                bundle.from,
                bundle.to,
                bundle.tree_size,
                path.display()
            );
            if output::json_mode() {
                println!(
                    "{}",
                    json!({"file": path, "from": bundle.from, "to": bundle.to, "tree_size": bundle.tree_size, "bytes": written})
                );
            } else {
                eprintln!("{message}");
            }
        }
        Ok(())
    }

    /// `socai redact --api`: executed by the running writer; `redacted_by` is the token's holder.
    pub fn redact(&self, id: &str, reason: &str) -> anyhow::Result<()> {
        let url = self.url(&["v1", "redactions"], &[]);
        let body = json!({"id": id, "reason": reason});
        let done: Value = self.rt.block_on(async {
            let response = self.send(self.http.post(url.clone()).json(&body)).await?;
            response
                .json::<Value>()
                .await
                .with_context(|| format!("{url} did not answer JSON"))
        })?;
        emit(&done, || {
            format!(
                "redacted personal data of {id} (seq {}); redaction recorded at seq {}, covered by the checkpoint of size {}",
                done["target_seq"], done["redaction_seq"], done["tree_size"]
            )
        });
        Ok(())
    }

    /// `socai verify --api URL --vkey FILE`: the latest checkpoint (signed by the key), then every
    /// entry bundle and every hash tile, checked against each other and the signed root.
    pub fn verify(&self, vkey: &Path, pinned: &[PathBuf]) -> anyhow::Result<()> {
        let trusted = super::audit::read_vkey(vkey)?;
        let note = self.get(&["checkpoint"], &[])?;
        let note = String::from_utf8(note).context("the served checkpoint is not text")?;
        let signed = trusted.verify(&note).map_err(|e| {
            Exit::error(
                EXIT_VERIFY,
                "verification_failed",
                format!("verification failed: the served checkpoint: {e}"),
            )
        })?;
        self.verify_to(&trusted, signed, pinned, Vec::new())
    }

    /// `socai verify --api URL --vkey FILE --witness W... [--witnesses K]`: the newest checkpoint
    /// signed by the log and cosigned by at least `required` of the trusted witnesses, then
    /// everything up to it as [`Remote::verify`] does.
    pub fn verify_witnessed(
        &self,
        vkey: &Path,
        pinned: &[PathBuf],
        witness_files: &[PathBuf],
        required: usize,
    ) -> anyhow::Result<()> {
        let trusted = super::audit::read_vkey(vkey)?;
        let witnesses = witness_files
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading witness key {}", path.display()))?;
                CosignatureVerifier::from_vkey(&text)
                    .with_context(|| format!("witness key {}", path.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some(w) = witnesses.iter().find(|w| w.is_key_of(trusted.vkey())) {
            return Err(Exit::error(
                2,
                "usage",
                format!(
                    "--witness {} is the log's own key: a log is no witness of itself",
                    w.name()
                ),
            ));
        }
        if required > witnesses.len() {
            return Err(Exit::error(
                2,
                "usage",
                format!(
                    "--witnesses {required} is more than the {} --witness keys given",
                    witnesses.len()
                ),
            ));
        }
        // Only the trusted witnesses' cosignatures count, on the server as here.
        let keys = witnesses
            .iter()
            .map(|w| format!("{}+{:08x}", w.name(), w.key_id()))
            .collect::<Vec<_>>()
            .join(",");
        let answer = match self.get_json(
            &["v1", "checkpoints", "witnessed"],
            &[("min", required.to_string()), ("key", keys)],
        ) {
            Ok(answer) => answer,
            Err(e) if super::is_not_found(&e) => {
                return Err(Exit::error(
                    EXIT_VERIFY,
                    "verification_failed",
                    format!(
                        "verification failed: the log serves no checkpoint cosigned by {required} witnesses: {e:#}"
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        let note = answer["note"]
            .as_str()
            .context("/v1/checkpoints/witnessed answered without a note")?;
        let witnessed = socai_chain::cosign::verify_witnessed(note, &trusted, &witnesses, required)
            .map_err(|e| {
                Exit::error(
                    EXIT_VERIFY,
                    "verification_failed",
                    format!("verification failed: the witnessed checkpoint: {e}"),
                )
            })?;
        self.verify_to(&trusted, witnessed.signed, pinned, witnessed.cosigned_by)
    }

    /// Verifies everything up to `signed` (already checked against `trusted`), and reports the
    /// witnesses that cosigned it.
    fn verify_to(
        &self,
        trusted: &CheckpointVerifier,
        signed: socai_chain::SignedCheckpoint,
        pinned: &[PathBuf],
        cosigned_by: Vec<(String, u64)>,
    ) -> anyhow::Result<()> {
        let size = signed.checkpoint.size;
        let pinned = pinned_roots(trusted, pinned, size)?;
        let bar = output::progress(size, "verify");
        let started = Instant::now();
        let result =
            self.rt
                .block_on(self.verify_tiles(size, signed.checkpoint.root, pinned, &bar));
        bar.finish_and_clear();
        let secs = started.elapsed().as_secs_f64();
        let witnesses: Vec<Value> = cosigned_by
            .iter()
            .map(|(name, time)| json!({"name": name, "time": time}))
            .collect();
        match result? {
            Ok(report) => {
                let rate = report.entries as f64 / secs.max(1e-9);
                emit(
                    &json!({"ok": true, "report": report, "url": self.base.as_str(), "seconds": secs, "entries_per_second": rate, "witnesses": witnesses}),
                    || {
                        let mut text = format!(
                            "ok: {} entries of {} verified from its tiles ({} tiles, {} pinned checkpoints) in {secs:.2}s ({rate:.0}/s)\nroot {}",
                            report.entries,
                            self.base,
                            report.tiles_checked,
                            report.pinned_checked,
                            report.root
                        );
                        if !cosigned_by.is_empty() {
                            let names: Vec<String> = cosigned_by
                                .iter()
                                .map(|(name, time)| {
                                    let at = jiff::Timestamp::from_second(*time as i64)
                                        .map_or_else(|_| time.to_string(), |t| t.to_string());
                                    format!("{name} at {at}")
                                })
                                .collect();
                            text.push_str(&format!(
                                "\ncosigned at size {size} by {}",
                                names.join(", ")
                            ));
                        }
                        text
                    },
                );
                Ok(())
            }
            Err(e) => {
                if output::json_mode() {
                    println!(
                        "{}",
                        json!({"ok": false, "seq": e.seq(), "reason": e.to_string()})
                    );
                }
                Err(Exit::error(
                    EXIT_VERIFY,
                    "verification_failed",
                    format!("verification failed: {e}"),
                ))
            }
        }
    }

    async fn verify_tiles(
        &self,
        size: u64,
        root: socai_chain::Hash,
        pinned: BTreeMap<u64, socai_chain::Hash>,
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<Result<socai_chain::tiles::TiledReport, socai_chain::tiles::TiledError>>
    {
        let mut verifier = TiledVerifier::new(size, root, pinned);
        let bundles = verifier.bundles();
        let mut fetched = futures::stream::iter(bundles.into_iter().map(|bundle| {
            let level0 = Tile {
                kind: TileKind::Hashes { level: 0 },
                ..bundle
            };
            async move {
                let (entries, hashes) = futures::try_join!(self.tile(&bundle), self.tile(&level0))?;
                anyhow::Ok((bundle, entries, hashes))
            }
        }))
        .buffered(TILES_IN_FLIGHT);
        while let Some(item) = fetched.next().await {
            let (bundle, entries, hashes) = item?;
            if let Err(e) = verifier.push_bundle(&bundle, &entries, &hashes) {
                return Ok(Err(e));
            }
            bar.set_position(bundle.first_leaf() + bundle.width);
        }
        let upper = verifier.hash_tiles();
        let mut fetched = futures::stream::iter(upper.into_iter().map(|tile| async move {
            let bytes = self.tile(&tile).await?;
            anyhow::Ok((tile, bytes))
        }))
        .buffered(TILES_IN_FLIGHT);
        while let Some(item) = fetched.next().await {
            let (tile, bytes) = item?;
            if let Err(e) = verifier.check_hash_tile(&tile, &bytes) {
                return Ok(Err(e));
            }
        }
        Ok(verifier.finish())
    }

    /// The running ledger's size (durable entries).
    pub fn size(&self) -> anyhow::Result<u64> {
        let log = self.get_json(&["v1", "log"], &[])?;
        log["size"]
            .as_u64()
            .context("/v1/log has no size: is this a socai ledger?")
    }

    /// Calls `visit` with every entry `0..to` of the running ledger, in seq order, each checked
    /// against its predecessor (`prev`): entry bundles (tiles) up to the latest signed checkpoint,
    /// then pages of `/v1/entries` (entries rebuilt from their JSON must hash to their
    /// `leaf_hash`). Returns the root of `[0, to)`; `roots_at` gets the root at each of its sizes.
    pub fn fold_entries(
        &self,
        to: u64,
        roots_at: &mut BTreeMap<u64, Option<socai_chain::Hash>>,
        visit: &mut dyn FnMut(u64, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<socai_chain::Hash> {
        let covered = self.get_json(&["v1", "log"], &[])?["checkpoint_size"]
            .as_u64()
            .unwrap_or(0)
            .min(to);
        let mut chain = socai_chain::ChainVerifier::new();
        let mut push = |chain: &mut socai_chain::ChainVerifier,
                        seq: u64,
                        entry: &[u8],
                        roots_at: &mut BTreeMap<u64, Option<socai_chain::Hash>>|
         -> anyhow::Result<()> {
            chain
                .push(entry)
                .map_err(|e| anyhow::anyhow!("the served entries do not chain: {e}"))?;
            visit(seq, entry)?;
            if let Some(slot) = roots_at.get_mut(&chain.size()) {
                *slot = Some(chain.root());
            }
            Ok(())
        };
        let bundles: Vec<Tile> = (0..covered.div_ceil(256))
            .map(|index| Tile {
                kind: TileKind::Entries,
                index,
                width: (covered - index * 256).min(256),
            })
            .collect();
        let bar = output::progress(to, "ledger");
        self.rt.block_on(async {
            let mut fetched = futures::stream::iter(
                bundles
                    .into_iter()
                    .map(|t| async move { anyhow::Ok((t, self.tile(&t).await?)) }),
            )
            .buffered(TILES_IN_FLIGHT);
            while let Some(item) = fetched.next().await {
                let (tile, bytes) = item?;
                let entries = socai_chain::tiles::split_entry_bundle(&bytes)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", tile.path()))?;
                for (i, entry) in entries.iter().enumerate() {
                    push(&mut chain, tile.first_leaf() + i as u64, entry, roots_at)?;
                }
                bar.set_position(chain.size());
            }
            anyhow::Ok(())
        })?;
        // Past the latest checkpoint: the entries' JSON, rebuilt to their canonical bytes.
        while chain.size() < to {
            let from = chain.size();
            let page = self.get_json(
                &["v1", "entries"],
                &[
                    ("from", from.to_string()),
                    ("limit", (to - from).min(1000).to_string()),
                ],
            )?;
            let items = page["entries"].as_array().cloned().unwrap_or_default();
            anyhow::ensure!(
                !items.is_empty(),
                "the running ledger has {from} entries, fewer than the {to} asked for"
            );
            for mut item in items {
                let claimed = item
                    .as_object_mut()
                    .and_then(|o| o.remove("leaf_hash"))
                    .and_then(|h| h.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let bytes = socai_chain::canonical_json(&item);
                anyhow::ensure!(
                    socai_chain::leaf_hash(&bytes).to_hex() == claimed,
                    "entry {} as served does not hash to its leaf_hash",
                    chain.size()
                );
                let seq = chain.size();
                push(&mut chain, seq, &bytes, roots_at)?;
                if chain.size() == to {
                    break;
                }
            }
            bar.set_position(chain.size());
        }
        bar.finish_and_clear();
        if let Some(slot) = roots_at.get_mut(&0) {
            *slot = Some(socai_chain::merkle::CompactRange::new().root());
        }
        Ok(chain.root())
    }

    async fn tile(&self, tile: &Tile) -> anyhow::Result<Vec<u8>> {
        let path = tile.path();
        let segments: Vec<&str> = path.split('/').collect();
        self.fetch(self.url(&segments, &[])).await
    }
}

/// Roots of the checkpoints an auditor kept, each signed by the trusted key and within `size`.
fn pinned_roots(
    trusted: &CheckpointVerifier,
    pinned: &[PathBuf],
    size: u64,
) -> anyhow::Result<BTreeMap<u64, socai_chain::Hash>> {
    let mut roots = BTreeMap::new();
    for path in pinned {
        let note = std::fs::read_to_string(path)
            .with_context(|| format!("reading checkpoint note {}", path.display()))?;
        let signed = trusted.verify(&note).map_err(|e| {
            Exit::error(
                EXIT_VERIFY,
                "verification_failed",
                format!(
                    "verification failed: pinned checkpoint {}: {e}",
                    path.display()
                ),
            )
        })?;
        let c = signed.checkpoint;
        if c.size > size {
            return Err(Exit::error(
                EXIT_VERIFY,
                "verification_failed",
                format!(
                    "verification failed: pinned checkpoint {} is of size {}, but the log now serves a checkpoint of size {size}: it went back (rollback)",
                    path.display(),
                    c.size
                ),
            ));
        }
        if let Some(other) = roots.insert(c.size, c.root)
            && other != c.root
        {
            return Err(Exit::error(
                EXIT_VERIFY,
                "verification_failed",
                format!(
                    "verification failed: two pinned checkpoints of size {} sign different roots: the log forked",
                    c.size
                ),
            ));
        }
    }
    Ok(roots)
}
