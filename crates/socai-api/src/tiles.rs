//! The C2SP tlog-tiles read API, served from the store as it is: the latest signed checkpoint,
//! hash tiles (the stored Merkle hashes at levels 0, 8, 16, …) and entry bundles. Only what the
//! latest signed checkpoint covers is served, so every tile a client can fetch is attested, and
//! every partial tile of every earlier checkpoint stays available.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use socai_chain::tiles::{Tile, TileKind, hash_tile, push_bundle_entry};

use crate::AppState;
use crate::ledger::{FRESH, IMMUTABLE, answer};
use crate::params::Params;
use crate::problem::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
}

async fn checkpoint(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let signed = crate::ledger::latest(&state)?;
    // With the witnesses' cosignatures held for it (C2SP tlog-cosignature: more signature lines).
    let lines = crate::ledger::cosignatures(&state, signed.checkpoint.size)?;
    let note = crate::ledger::with_cosignatures(&signed.note, &lines);
    // The spec: mutable, cached a few seconds at most.
    Ok(answer("text/plain; charset=utf-8", FRESH, note))
}

async fn tile(
    State(state): State<AppState>,
    Path(path): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let tile = Tile::parse(&path).map_err(|e| ApiError::bad_param("path", e.to_string()))?;
    let reader = state.reader().clone();
    let covered = reader.latest_checkpoint()?.map_or(0, |c| c.checkpoint.size);
    if tile.tree_size_needed().is_none_or(|n| n > covered) {
        return Err(ApiError::not_found(format!(
            "{} is not covered by the latest signed checkpoint (tree size {covered})",
            tile.path()
        )));
    }
    let bytes = state
        .blocking(move || match tile.kind {
            TileKind::Hashes { .. } => hash_tile(&tile, &reader.hashes())
                .map_err(|e| ApiError::internal(format!("reading {}: {e}", tile.path()))),
            TileKind::Entries => {
                let first = tile.first_leaf();
                let mut bundle = Vec::with_capacity(tile.width as usize * 512);
                for item in reader.entries(first, first + tile.width) {
                    let (seq, entry) = item?;
                    push_bundle_entry(&mut bundle, seq, &entry)
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                }
                Ok(bundle)
            }
        })
        .await?;
    // Full and partial tiles alike never change once served.
    Ok(answer("application/octet-stream", IMMUTABLE, bytes))
}
