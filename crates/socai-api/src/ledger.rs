//! `/v1/…` routes over the ledger: checkpoints, entries, events, dossiers, proofs, export,
//! redaction. Each answer is the JSON the matching CLI command prints with `--json`.

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use socai_chain::SignedCheckpoint;
use socai_ingest::{Redacted, WriterCommand};
use tokio::sync::oneshot;

use crate::AppState;
use crate::auth::Role;
use crate::params::Params;
use crate::problem::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/log", get(log_info))
        .route("/v1/checkpoints", get(checkpoints))
        .route("/v1/checkpoints/latest", get(latest_checkpoint))
        .route("/v1/checkpoints/witnessed", get(witnessed_checkpoint))
        .route("/v1/witnesses", get(witnesses))
        .route(
            "/v1/checkpoints/{size}/cosignatures",
            post(add_cosignatures),
        )
        .route("/v1/checkpoints/{size}", get(checkpoint_at))
        .route("/v1/entries", get(entries))
        .route("/v1/entries/{seq}", get(entry))
        .route("/v1/events/{id}", get(event))
        .route("/v1/dossiers/{dossier}", get(dossier))
        .route("/v1/proofs/inclusion", get(inclusion))
        .route("/v1/proofs/consistency", get(consistency))
        .route(
            "/v1/proofs/receipt",
            post(receipt_proof).layer(DefaultBodyLimit::max(RECEIPT_MAX_BYTES)),
        )
        .route("/v1/export", get(export))
}

/// Routes that wait for the writer (not under the request time limit: a redaction waits for
/// the batch in hand, at most `REDACT_WAIT`).
pub fn writer_routes() -> Router<AppState> {
    Router::new().route("/v1/redactions", post(redact))
}

/// A 200 answer of `content_type` that caches as `cache`.
pub(crate) fn answer(
    content_type: &'static str,
    cache: &'static str,
    body: impl IntoResponse,
) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

/// A JSON body with these exact bytes.
pub(crate) fn json_bytes(bytes: Vec<u8>, cache: &'static str) -> Response {
    answer("application/json", cache, bytes)
}

/// 503 `too_busy`: a bounded resource is full (refused, not queued).
pub(crate) fn too_busy(detail: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too_busy", detail)
}

pub(crate) fn json<T: Serialize>(value: &T, cache: &'static str) -> Result<Response, ApiError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| ApiError::internal(format!("encoding the answer: {e}")))?;
    Ok(json_bytes(bytes, cache))
}

/// What may be cached: immutable ledger facts for long, anything about the head briefly, and
/// personal data never.
pub(crate) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub(crate) const FRESH: &str = "public, max-age=2";
pub(crate) const PRIVATE: &str = "private, no-store";

fn path_u64(name: &str, value: &str) -> Result<u64, ApiError> {
    value.parse::<u64>().map_err(|_| {
        ApiError::bad_param(
            name,
            format!("{name} {value:?} is not a non-negative integer"),
        )
    })
}

/// `personal=true` needs an auditor's token.
fn personal_allowed(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<bool, ApiError> {
    let wanted = params.bool("personal")?;
    if wanted {
        state
            .config()
            .tokens
            .require(headers, Role::Auditor, "read personal data")?;
    }
    Ok(wanted)
}

/// A checkpoint as `socai checkpoint --json` prints it, with the witnesses' cosignature lines
/// the log holds for it (C2SP tlog-cosignature; the note itself carries the log's signature).
#[derive(Serialize)]
struct CheckpointJson<'a> {
    size: u64,
    root: String,
    note: &'a str,
    cosignatures: Vec<String>,
}

fn checkpoint_json(signed: &SignedCheckpoint, cosignatures: Vec<String>) -> CheckpointJson<'_> {
    CheckpointJson {
        size: signed.checkpoint.size,
        root: signed.checkpoint.root.to_hex(),
        note: &signed.note,
        cosignatures,
    }
}

/// The cosignature lines held for the checkpoint of size `size` (none without witnesses).
pub(crate) fn cosignatures(state: &AppState, size: u64) -> Result<Vec<String>, ApiError> {
    if state.witnesses().is_none() {
        return Ok(Vec::new());
    }
    Ok(state
        .reader()
        .storage()
        .cosignatures(size)
        .map_err(socai_store::LedgerError::from)?)
}

/// A note with cosignature lines appended (a C2SP signed note with more signatures).
pub(crate) fn with_cosignatures(note: &str, lines: &[String]) -> String {
    let mut out = note.to_owned();
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

async fn log_info(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let reader = state.reader();
    let view = reader.view();
    json(
        &serde_json::json!({
            "origin": reader.origin(),
            "vkey": reader.verifier_vkey(),
            "size": view.head.size,
            "checkpoint_size": view.latest.as_ref().map_or(0, |c| c.checkpoint.size),
        }),
        FRESH,
    )
}

/// The latest signed checkpoint, or 404 `no_checkpoint`.
pub(crate) fn latest(state: &AppState) -> Result<SignedCheckpoint, ApiError> {
    Ok(state
        .reader()
        .latest_checkpoint()?
        .ok_or(socai_store::LedgerError::NoCheckpoint)?)
}

async fn latest_checkpoint(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let mut signed = latest(&state)?;
    if state.config().fault == Some(crate::TestFault::ForeignKey) {
        // Test only: the same checkpoint, signed by another key of the same name.
        let (other, _, _) = socai_chain::CheckpointSigner::generate(state.reader().origin())
            .map_err(|e| ApiError::internal(format!("test fault: {e}")))?;
        signed = other
            .sign(&signed.checkpoint)
            .map_err(|e| ApiError::internal(format!("test fault: {e}")))?;
    }
    let lines = cosignatures(&state, signed.checkpoint.size)?;
    json(&checkpoint_json(&signed, lines), FRESH)
}

/// How many cosigned checkpoints `/v1/checkpoints/witnessed` looks back through at most.
const WITNESSED_SCAN: usize = 10_000;

/// The newest signed checkpoint cosigned by at least `min` witnesses (default: every witness
/// configured), its note carrying their cosignature lines.
async fn witnessed_checkpoint(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["min", "key"])?;
    let min = match params.u64("min")? {
        Some(0) => return Err(ApiError::bad_param("min", "min must be at least 1")),
        other => other,
    };
    // The witness keys the client trusts (`<name>+<hex key id>`): only their lines count.
    let keys = params
        .list("key")
        .iter()
        .map(|k| {
            k.rsplit_once('+')
                .and_then(|(name, id)| {
                    (id.len() == 8)
                        .then(|| u32::from_str_radix(id, 16).ok())
                        .flatten()
                        .map(|id| (name.to_owned(), id))
                })
                .ok_or_else(|| {
                    ApiError::bad_param(
                        "key",
                        format!("key {k:?} is not <witness name>+<8 hex digits of its key id>"),
                    )
                })
        })
        .collect::<Result<std::collections::HashSet<_>, _>>()?;
    let keys = (!keys.is_empty()).then_some(keys);
    let Some(board) = state.witnesses() else {
        return Err(ApiError::not_found(
            "this log has no witnesses configured ([[witnesses]] in socai.toml, or socai serve --witness URL=VKEY)",
        ));
    };
    let configured = board.reports().len();
    // Default: every witness named by `key`, else every witness configured.
    let min = min.map_or(keys.as_ref().map_or(configured, |k| k.len()), |n| {
        n as usize
    });
    let reader = state.reader().clone();
    let wanted = keys.clone();
    let found = state
        .blocking(move || {
            let Some((size, lines)) = reader
                .storage()
                .newest_cosigned(min, wanted.as_ref(), WITNESSED_SCAN)
                .map_err(socai_store::LedgerError::from)?
            else {
                return Ok(None);
            };
            Ok(Some((reader.checkpoint_at(size)?, lines)))
        })
        .await?;
    let Some((signed, lines)) = found else {
        let among = keys.as_ref().map_or(String::new(), |k| {
            let mut names: Vec<String> = k.iter().map(|(n, id)| format!("{n}+{id:08x}")).collect();
            names.sort();
            format!(" of the {} named ({})", k.len(), names.join(", "))
        });
        return Err(ApiError::not_found(format!(
            "no checkpoint is cosigned by {min} witnesses{among} yet ({configured} configured on this log); /v1/witnesses says what each answered"
        )));
    };
    let note = with_cosignatures(&signed.note, &lines);
    json(
        &serde_json::json!({
            "size": signed.checkpoint.size,
            "root": signed.checkpoint.root.to_hex(),
            "note": note,
            "cosignatures": lines,
        }),
        FRESH,
    )
}

/// A witness that follows the log (`socai witness serve --follow`) posts its cosignature lines
/// of the checkpoint of `size`: each must be by a configured witness key and verify over that
/// checkpoint; they are kept as the log's own collector keeps them.
async fn add_cosignatures(
    State(state): State<AppState>,
    Path(size): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let size = path_u64("size", &size)?;
    let Some(board) = state.witnesses().cloned() else {
        return Err(ApiError::not_found(
            "this log has no witnesses configured ([[witnesses]] in socai.toml, with no url for one that follows the log)",
        ));
    };
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_param("body", "the body is not UTF-8 text"))?
        .to_owned();
    let reader = state.reader().clone();
    let signed = state
        .blocking(move || Ok(reader.checkpoint_at(size)?))
        .await?;
    let body_text = socai_chain::cosign::note_body(&signed.note)
        .unwrap_or_default()
        .to_owned();
    let witnesses: Vec<socai_chain::cosign::CosignatureVerifier> = board
        .reports()
        .iter()
        .filter_map(|r| socai_chain::cosign::CosignatureVerifier::from_vkey(&r.vkey).ok())
        .collect();
    let mut lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines.dedup();
    // A witness sends one line; a few per witness is already generous.
    if lines.len() > 4 * witnesses.len().max(1) {
        return Err(ApiError::bad_param(
            "body",
            format!(
                "{} lines for {} witnesses: send each witness's cosignature line once",
                lines.len(),
                witnesses.len()
            ),
        ));
    }
    // Ed25519 checks off the async workers.
    let valid = state
        .blocking(move || {
            let mut valid = Vec::new();
            for line in &lines {
                let mut known = false;
                for w in &witnesses {
                    match w.verify_line(&body_text, line) {
                        Ok(Some(at)) => {
                            valid.push((line.clone(), w.vkey().to_owned(), at));
                            known = true;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            return Err(ApiError::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "bad_cosignature",
                                format!("{e} over the checkpoint of size {size}"),
                            ));
                        }
                    }
                }
                if !known {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "unknown_witness",
                        format!(
                            "{:?} is not a signature line of a witness configured for this log ([[witnesses]] vkey in its socai.toml)",
                            line.chars().take(120).collect::<String>()
                        ),
                    ));
                }
            }
            Ok(valid)
        })
        .await?;
    if valid.is_empty() {
        return Err(ApiError::bad_param(
            "body",
            "no cosignature line: send the witness's `— <name> <base64>` lines",
        ));
    }
    let storage = state.reader().storage().clone();
    let lines: Vec<String> = valid.iter().map(|(l, _, _)| l.clone()).collect();
    state
        .blocking(move || {
            storage
                .add_cosignatures(size, &lines)
                .map_err(socai_store::LedgerError::from)?;
            Ok(())
        })
        .await?;
    for (_, vkey, at) in &valid {
        board.record(vkey, size, *at);
    }
    json(
        &serde_json::json!({"size": size, "stored": valid.len()}),
        "no-store",
    )
}

/// The witnesses this log sends its checkpoints to, and what each last answered.
async fn witnesses(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let reports = state.witnesses().map(|b| b.reports()).unwrap_or_default();
    json(&serde_json::json!({ "witnesses": reports }), FRESH)
}

async fn checkpoint_at(
    State(state): State<AppState>,
    Path(size): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let size = path_u64("size", &size)?;
    let reader = state.reader().clone();
    let signed = state
        .blocking(move || Ok(reader.checkpoint_at(size)?))
        .await?;
    let lines = cosignatures(&state, size)?;
    // Witnesses may still add cosignatures to a checkpoint.
    let cache = if state.witnesses().is_some() {
        FRESH
    } else {
        IMMUTABLE
    };
    json(&checkpoint_json(&signed, lines), cache)
}

async fn checkpoints(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["from", "limit"])?;
    let from = params.u64("from")?.unwrap_or(0);
    let limit = page_limit(&state, &params)?;
    let reader = state.reader().clone();
    let page = state
        .blocking(move || Ok(reader.checkpoints(from, limit + 1)?))
        .await?;
    let next = page.get(limit).map(|(size, _)| *size);
    let items: Vec<_> = page
        .iter()
        .take(limit)
        .map(|(size, note)| serde_json::json!({"size": size, "note": note}))
        .collect();
    json(
        &serde_json::json!({"checkpoints": items, "next": next}),
        FRESH,
    )
}

fn page_limit(state: &AppState, params: &Params) -> Result<usize, ApiError> {
    let max = state.config().max_page;
    match params.u64("limit")? {
        None => Ok(max),
        Some(0) => Err(ApiError::bad_param("limit", "limit must be at least 1")),
        Some(n) if n as usize > max => Err(ApiError::bad_param(
            "limit",
            format!("limit {n} is more than the {max} a page holds"),
        )),
        Some(n) => Ok(n as usize),
    }
}

async fn entry(
    State(state): State<AppState>,
    Path(seq): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["personal"])?;
    let seq = path_u64("seq", &seq)?;
    let personal = personal_allowed(&state, &headers, &params)?;
    let reader = state.reader().clone();
    let value = state
        .blocking(move || Ok(reader.entry_json(seq, personal)?))
        .await?;
    json(&value, if personal { PRIVATE } else { IMMUTABLE })
}

async fn event(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["personal"])?;
    let personal = personal_allowed(&state, &headers, &params)?;
    let reader = state.reader().clone();
    let value = state
        .blocking(move || {
            let seq = reader.seq_of(&id)?;
            Ok(reader.entry_json(seq, personal)?)
        })
        .await?;
    json(&value, if personal { PRIVATE } else { FRESH })
}

async fn entries(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["from", "limit", "personal"])?;
    let from = params.u64("from")?.unwrap_or(0);
    let limit = page_limit(&state, &params)? as u64;
    let personal = personal_allowed(&state, &headers, &params)?;
    let reader = state.reader().clone();
    let value = state
        .blocking(move || {
            let size = reader.head().size;
            let to = from.saturating_add(limit).min(size);
            let mut items = Vec::with_capacity(to.saturating_sub(from) as usize);
            for seq in from..to {
                items.push(reader.entry_json(seq, personal)?);
            }
            let next = (to < size).then_some(to);
            Ok(serde_json::json!({"entries": items, "from": from, "next": next, "tree_size": size}))
        })
        .await?;
    json(&value, if personal { PRIVATE } else { FRESH })
}

async fn dossier(
    State(state): State<AppState>,
    Path(dossier): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let reader = state.reader().clone();
    let shown = dossier.clone();
    let value = state
        .blocking(move || Ok(reader.history_json(&dossier)?))
        .await?;
    if value["entries"].as_array().is_none_or(Vec::is_empty) {
        return Err(ApiError::not_found(format!(
            "no events for dossier {shown:?}"
        )));
    }
    json(&value, FRESH)
}

async fn inclusion(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["id", "seq", "tree_size"])?;
    let id = params.str("id")?.map(str::to_owned);
    let seq = params.u64("seq")?;
    let tree_size = params.u64("tree_size")?;
    if id.is_some() == seq.is_some() {
        return Err(ApiError::bad_param("id", "give exactly one of id and seq"));
    }
    let reader = state.reader().clone();
    let proof = state
        .blocking(move || {
            let seq = match (id, seq) {
                (Some(id), _) => reader.seq_of(&id)?,
                (None, Some(seq)) => seq,
                (None, None) => unreachable!("checked above"),
            };
            Ok(reader.inclusion_proof(seq, tree_size)?)
        })
        .await?;
    json(&proof, FRESH)
}

async fn consistency(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["from", "to"])?;
    let from = params
        .u64("from")?
        .ok_or_else(|| ApiError::bad_param("from", "from (the old tree size) is required"))?;
    let to = params.u64("to")?;
    // Only within the signed tree: sizes up to the latest signed checkpoint (any root below it
    // follows from the tiles it attests anyway).
    let signed = latest(&state)?.checkpoint.size;
    let new = to.unwrap_or(signed);
    if new > signed {
        return Err(ApiError::bad_param(
            "to",
            format!("to {new} is beyond the latest signed checkpoint ({signed} entries)"),
        ));
    }
    if from == 0 || from > new {
        return Err(ApiError::bad_param(
            "from",
            format!("need 1 <= from <= to ({new}), got from {from}"),
        ));
    }
    let reader = state.reader().clone();
    let mut proof = state
        .blocking(move || Ok(reader.consistency_proof(from, Some(new))?))
        .await?;
    if state.config().fault == Some(crate::TestFault::ForgedConsistency) {
        // Test only: one hash of the path changed (or one added where there was none).
        match proof.path.first_mut() {
            Some(hash) => hash.0[0] ^= 1,
            None => proof.path.push(socai_chain::Hash([7; 32])),
        }
    }
    json(&proof, FRESH)
}

/// The largest receipt `POST /v1/proofs/receipt` takes: a receipt is one NATS message, at most
/// the server's `max_payload` (1 MiB in deploy/nats), whatever `[http] max_body_bytes` says.
pub const RECEIPT_MAX_BYTES: usize = 1024 * 1024;

/// The inclusion proof of an event a receipt names, under the receipt's own tree head.
async fn receipt_proof(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["id"])?;
    let id = params.str("id")?.map(str::to_owned);
    let receipt = socai_chain::Receipt::from_json(&body).map_err(|e| {
        ApiError::bad_param(
            "body",
            format!("expected a receipt (the JSON of a dvc.receipts.<agency> message): {e}"),
        )
    })?;
    let reader = state.reader().clone();
    let proof = state
        .blocking(move || Ok(reader.receipt_inclusion_proof(&receipt, id.as_deref())?))
        .await?;
    json(&proof, FRESH)
}

/// Streams the bundle through a bounded channel: a slow client slows only its own export, and
/// one that stops reading for `EXPORT_STALL` ends it (and frees its export slot).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    runtime: tokio::runtime::Handle,
    buf: Vec<u8>,
}

const EXPORT_CHUNK: usize = 64 * 1024;

/// Longest an export waits for its client to take the next chunk.
const EXPORT_STALL: Duration = Duration::from_secs(60);

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= EXPORT_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(EXPORT_STALL, self.tx.send(Ok(chunk))));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client left",
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took nothing for 60 s",
            )),
        }
    }
}

async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["from", "to", "personal"])?;
    let from = params.u64("from")?.unwrap_or(0);
    let to = params.u64("to")?;
    let personal = personal_allowed(&state, &headers, &params)?;
    let (_, to) = state
        .reader()
        .export_bounds(from, to)
        .map_err(|e| match e {
            // `to` past the signed tree is `to`'s fault; anything else is `from` past the end.
            socai_store::LedgerError::Range(msg) => {
                let covered = state
                    .reader()
                    .latest_checkpoint()
                    .ok()
                    .flatten()
                    .map_or(0, |c| c.checkpoint.size);
                let blame = if to.is_some_and(|t| t > covered) {
                    "to"
                } else {
                    "from"
                };
                ApiError::bad_param(blame, msg)
            }
            other => other.into(),
        })?;
    let permit = state
        .inner
        .export_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            too_busy(format!(
                "{} exports are running; retry when one has finished",
                state.config().max_exports
            ))
        })?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let reader = state.reader().clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut w = ChannelWriter {
            tx: tx.clone(),
            runtime,
            buf: Vec::with_capacity(EXPORT_CHUNK),
        };
        let result = reader
            .export_to(&mut w, from, Some(to), personal, &|_| {})
            .map_err(|e| e.to_string())
            .and_then(|_| w.flush().map_err(|e| e.to_string()));
        if let Err(e) = result {
            tracing::warn!(cause = %e, from, to, "export ended early");
            let _ = tx.try_send(Err(std::io::Error::other(e)));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    // The same range is bound to a newer checkpoint tomorrow: never cached as immutable.
    let cache = if personal { PRIVATE } else { "no-cache" };
    Ok(answer("application/json", cache, body))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RedactRequest {
    id: String,
    reason: String,
}

/// Longest a redaction may wait for the writer.
const REDACT_WAIT: Duration = Duration::from_secs(30);

async fn redact(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let by = state
        .config()
        .tokens
        .require(&headers, Role::Auditor, "redact personal data")?;
    let request: RedactRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_param(
            "body",
            format!("expected {{\"id\": <event id>, \"reason\": <why>}}: {e}"),
        )
    })?;
    if request.id.is_empty() || request.id.len() > 256 {
        return Err(ApiError::bad_param("id", "id must be 1 to 256 bytes"));
    }
    let reason = request.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_param(
            "reason",
            "reason must be 1 to 500 printable characters (it is kept in a public ledger entry: no personal data)",
        ));
    }
    let Some(writer) = state.inner.writer.clone() else {
        return Err(ApiError::unavailable(
            "this server has no ledger writer; redact with the `socai serve` that owns the ledger",
        ));
    };
    let (reply, answer) = oneshot::channel();
    let command = WriterCommand::Redact {
        id: request.id,
        reason: reason.to_owned(),
        by,
        reply,
    };
    writer
        .send_timeout(command, REDACT_WAIT)
        .await
        .map_err(|_| {
            ApiError::unavailable("the ledger writer is not taking commands; retry shortly")
        })?;
    let done: Redacted = match tokio::time::timeout(REDACT_WAIT, answer).await {
        Ok(Ok(result)) => result?,
        Ok(Err(_)) => {
            return Err(ApiError::unavailable(
                "the ledger writer stopped before the redaction; retry once it is back",
            ));
        }
        Err(_) => {
            return Err(ApiError::unavailable(
                "the ledger writer did not run the redaction within 30 s (is it waiting for nats-server?); it may still run it: check /v1/events/redaction:<id>",
            ));
        }
    };
    let mut response = json(&done, PRIVATE)?;
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}
