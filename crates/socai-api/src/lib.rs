//! socai-api: the running ledger over HTTP, hosted by `socai serve`.
//!
//! - `/v1/…` JSON: checkpoints, entries, events, dossier histories, inclusion and consistency
//!   proofs (the proof JSON of DESIGN.md, byte for byte the CLI's `--json`), export bundles
//!   (streamed, the bytes of `socai export`), redaction (auditor role, executed by the writer),
//!   metric values from the METRICS bucket and their Server-Sent Events.
//! - C2SP tlog-tiles: `/checkpoint`, `/tile/<L>/<N>[.p/<W>]`, `/tile/entries/<N>[.p/<W>]`.
//! - `/healthz`, `/readyz`, `/metrics` (Prometheus).
//!
//! Errors are RFC 9457 problem+json (`problem`). Reads go to the store through a
//! [`LedgerReader`], which sees each commit once it is durable and never blocks the writer; a
//! slow client holds nothing the writer needs. `schemas/openapi.json` describes every route.
//!
//! Knows nothing of sled's internals: it reads through `socai-store`'s reader.

pub mod auth;
mod dashboard;
mod ledger;
mod live;
mod ops;
mod params;
pub mod problem;
mod tiles;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use prometheus_client::registry::Registry;
use socai_ingest::{Counters, WriterCommand};
use socai_store::{LedgerReader, SledStorage};
use tokio::sync::{Semaphore, mpsc};
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};

pub use auth::{Caller, Role, TokenConfig, Tokens, token_digest};
pub use dashboard::{DashboardConfig, TestFault, TileConfig};
pub use live::LiveHub;

/// The OpenAPI 3.1 description of every route (also served at `/v1/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../schemas/openapi.json");

/// Limits and roles (socai.toml `[http]`).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Most entries (or checkpoints) per page.
    pub max_page: usize,
    /// Most metric values one `/v1/metrics` request returns (narrow the filter beyond).
    pub max_metric_values: usize,
    /// Longest a request may take (SSE streams and export bodies are exempt once started).
    pub request_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most concurrent `/v1/metrics/stream` clients.
    pub max_sse_clients: usize,
    /// Live events kept for clients resuming with `Last-Event-ID`.
    pub sse_buffer_events: usize,
    /// Most concurrent exports.
    pub max_exports: usize,
    /// Most store reads running at once (the rest wait as cheap tasks, not threads): bounds
    /// the threads readers take from the cores the writer needs.
    pub max_concurrent_reads: usize,
    pub tokens: Tokens,
    /// The dashboard's tiles, targets and timings (socai.toml `[dashboard]`).
    pub dashboard: DashboardConfig,
    /// Test only: a fault to inject (environment `SOCAI_TEST_FAULT`).
    pub fault: Option<TestFault>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_page: 1000,
            max_metric_values: 10_000,
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 16 * 1024,
            max_sse_clients: 2000,
            sse_buffer_events: 10_000,
            max_exports: 4,
            max_concurrent_reads: 4 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            tokens: Tokens::default(),
            dashboard: DashboardConfig::default(),
            fault: None,
        }
    }
}

/// Metric reads from the METRICS bucket running at once; the rest wait (within the request time
/// limit).
const METRIC_READS: usize = 8;

/// The NATS side, when the API runs inside `socai serve` (a connection of its own, so readers
/// never queue behind the writer's JetStream calls).
#[derive(Clone)]
pub struct Nats {
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
}

/// Everything a handler may use.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    reader: LedgerReader<SledStorage>,
    config: ApiConfig,
    nats: Option<Nats>,
    writer: Option<mpsc::Sender<WriterCommand>>,
    counters: Option<Arc<Counters>>,
    registry: Registry,
    http: ops::HttpMetrics,
    hub: Option<Arc<LiveHub>>,
    sse_slots: Arc<Semaphore>,
    export_slots: Arc<Semaphore>,
    read_slots: Arc<Semaphore>,
    /// Metric reads from the METRICS bucket at once (each makes a JetStream consumer).
    metric_slots: Arc<Semaphore>,
    /// Who runs what, learned from the ledger for the dashboard.
    directory: dashboard::SharedDirectory,
    /// Whether the directory's follower runs (from the first dashboard request on).
    directory_started: std::sync::Once,
    /// The witnesses this log sends its checkpoints to, and what each answered (none: the log
    /// has no witnesses configured).
    witnesses: Option<Arc<socai_witness::WitnessBoard>>,
}

impl AppState {
    /// `registry` holds the process's other metrics (e.g. the writer's); the API adds its own.
    /// With `nats`, metric values are read from the METRICS bucket and live changes relayed;
    /// with `writer`, redactions are executed by the writer.
    pub fn new(
        reader: LedgerReader<SledStorage>,
        config: ApiConfig,
        nats: Option<Nats>,
        writer: Option<mpsc::Sender<WriterCommand>>,
        counters: Option<Arc<Counters>>,
        mut registry: Registry,
    ) -> AppState {
        let http = ops::HttpMetrics::register(&mut registry);
        let hub = nats
            .as_ref()
            .map(|n| LiveHub::start(n.client.clone(), config.sse_buffer_events));
        if let Some(hub) = &hub {
            hub.register(&mut registry);
        }
        let directory = dashboard::SharedDirectory::default();
        AppState {
            inner: Arc::new(Inner {
                sse_slots: Arc::new(Semaphore::new(config.max_sse_clients)),
                export_slots: Arc::new(Semaphore::new(config.max_exports)),
                read_slots: Arc::new(Semaphore::new(config.max_concurrent_reads.max(1))),
                metric_slots: Arc::new(Semaphore::new(METRIC_READS)),
                directory,
                directory_started: std::sync::Once::new(),
                witnesses: None,
                reader,
                config,
                nats,
                writer,
                counters,
                registry,
                http,
                hub,
            }),
        }
    }

    /// The witnesses' board (`socai serve` with witnesses configured): their cosignatures are
    /// served with the checkpoints, their state at `/v1/witnesses`. Call before sharing the
    /// state.
    pub fn with_witnesses(mut self, board: Arc<socai_witness::WitnessBoard>) -> AppState {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.witnesses = Some(board),
            None => tracing::error!("AppState::with_witnesses called after the state was shared"),
        }
        self
    }

    pub(crate) fn witnesses(&self) -> Option<&Arc<socai_witness::WitnessBoard>> {
        self.inner.witnesses.as_ref()
    }

    pub fn reader(&self) -> &LedgerReader<SledStorage> {
        &self.inner.reader
    }
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// One of the METRICS reads allowed at once, held for the read.
    async fn metric_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, problem::ApiError> {
        self.inner
            .metric_slots
            .acquire()
            .await
            .map_err(|_| problem::ApiError::unavailable("the server is stopping"))
    }
}

/// Every route, with the limits of `state`'s config.
pub fn router(state: AppState) -> Router {
    let config = state.config().clone();
    // Bounded in time: everything but the live stream.
    let bounded = Router::new()
        .merge(ledger::routes())
        .merge(tiles::routes())
        .merge(live::value_routes())
        .merge(dashboard::routes())
        .merge(ops::routes())
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(ops::timed_out))
                .layer(tower::timeout::TimeoutLayer::new(config.request_timeout)),
        );
    Router::new()
        .merge(bounded)
        .merge(live::stream_routes())
        .merge(ledger::writer_routes())
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::observe,
        ))
        // Fast gzip, and only where it pays (a page of entries: 63 KB → 10 KB; a proof barely
        // shrinks): compressing every answer cost half the API's throughput in `bench api`.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest)
                .compress_when(
                    SizeAbove::new(4096)
                        .and(NotForContentType::GRPC)
                        .and(NotForContentType::IMAGES)
                        .and(NotForContentType::SSE),
                ),
        )
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves; open SSE streams are closed
/// then, and requests in progress get a moment to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let hub = state.inner.hub.clone();
    let app = router(state);
    // Small answers go out at once (no Nagle delay waiting for the client's ACK).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(cause = %e, "TCP_NODELAY not set");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            if let Some(hub) = hub {
                hub.close();
            }
        })
        .await
}

impl AppState {
    /// Runs a blocking store read off the async workers, at most `max_concurrent_reads` at once.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, problem::ApiError> + Send + 'static,
    ) -> Result<T, problem::ApiError> {
        let permit = self
            .inner
            .read_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| problem::ApiError::unavailable("the server is stopping"))?;
        // The permit goes with the read: a request that timed out still holds it until its read
        // is done, so the bound is real.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .map_err(|e| problem::ApiError::internal(format!("a read task failed: {e}")))?
    }
}
