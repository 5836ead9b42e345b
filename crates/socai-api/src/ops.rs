//! Operations: `/healthz`, `/readyz`, `/metrics` (Prometheus), the OpenAPI document, request
//! latency by route, the per-request time limit, and the 404 of unknown routes.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use socai_ingest::WriterStatus;
use socai_store::Storage;

use crate::AppState;
use crate::params::Params;
use crate::problem::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .route("/v1/openapi.json", get(openapi))
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// Request latency by route, method and status.
#[derive(Clone)]
pub struct HttpMetrics {
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> HttpMetrics {
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| {
                // 0.1 ms .. ~3.3 s
                Histogram::new(exponential_buckets(0.0001, 2.0, 16))
            });
        registry.register(
            "socai_http_request_duration_seconds",
            "HTTP request latency until the response head, by route, method and status",
            latency.clone(),
        );
        HttpMetrics { latency }
    }
}

/// Records each request's latency under its route template (never the raw path: bounded
/// label values); refuses an `Authorization` header that names no known token on every route
/// (a wrong token is never taken for the public); turns the framework's own plain-text
/// rejections (a path segment that does not decode, a body too large, a wrong method) into
/// problems like every other error.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = match state.config().tokens.caller(request.headers()) {
        Err(e) => e.into_response(),
        Ok(_) => as_problem(next.run(request).await).await,
    };
    state
        .inner
        .http
        .latency
        .get_or_create(&RouteLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// A request that outlasts the time limit gets a 503 problem (the live stream is not under it).
pub async fn timed_out(_: tower::BoxError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "the request took longer than this server allows; narrow it or retry",
    )
}

/// A plain-text (or empty) error response of the framework, as a problem.
async fn as_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem_or_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with(crate::problem::PROBLEM_JSON) || ct.starts_with("application/json")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_problem_or_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let problem = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "payload_too_large",
            format!("the request body is larger than this server takes ({text})"),
        )
        .with_param("body"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            "this route does not take that method; see /v1/openapi.json",
        ),
        StatusCode::BAD_REQUEST => {
            ApiError::bad_param("path", format!("the request does not parse: {text}"))
        }
        _ => ApiError::new(
            status,
            "internal",
            if text.is_empty() {
                status.to_string()
            } else {
                text
            },
        ),
    };
    let mut out = problem.into_response();
    // Keep what the framework said beyond the body (e.g. `Allow` on a 405).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

pub async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} {} is not a route (other methods are); see /v1/openapi.json",
            request.method(),
            request.uri().path()
        ),
    )
}

pub async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {} {}; see /v1/openapi.json",
        request.method(),
        request.uri().path()
    ))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the store is open (it is, or this server would not run), nats-server is connected,
/// and the writer is consuming (not starting, stopped or failed).
async fn readyz(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let store = state.reader().storage().head().is_ok();
    let nats = state
        .inner
        .nats
        .as_ref()
        .map(|n| n.client.connection_state() == async_nats::connection::State::Connected);
    let writer = state.inner.counters.as_ref().map(|c| c.status());
    // The data-loss alarm stays until the ledger restarts: an operator must look.
    let data_loss = state
        .inner
        .counters
        .as_ref()
        .and_then(|c| c.data_loss.lock().ok().and_then(|a| a.clone()));
    let replicas = state.inner.counters.as_ref().map(|c| &c.replicas);
    // A replica that differs from its primary stays unready: it must never be promoted.
    let diverged = replicas.and_then(|r| r.divergence());
    let ready = store
        && nats != Some(false)
        && writer.is_none_or(|w| w == WriterStatus::Running)
        && data_loss.is_none()
        && diverged.is_none();
    let writer_text = writer.map(|w| match w {
        WriterStatus::Starting => "starting (waiting for nats-server or the EVENTS consumer)",
        WriterStatus::Running => "running",
        WriterStatus::Stopped => "stopped",
        WriterStatus::Failed => "failed: a commit failed; restart `socai serve`",
    });
    let body = serde_json::json!({
        "ready": ready,
        "store": if store { "open" } else { "unreadable" },
        "nats": nats.map(|c| if c { "connected" } else { "disconnected" }),
        "writer": writer_text,
        "size": state.reader().head().size,
    });
    let mut body = body;
    if let Some(board) = replicas {
        if let Some(own) = board.own.lock().ok().and_then(|o| o.clone()) {
            body["replica"] = serde_json::json!(own);
        }
        let reports: Vec<_> = board
            .reports
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        let expected = board.expected.lock().map(|e| e.clone()).unwrap_or_default();
        if !expected.is_empty() || !reports.is_empty() {
            body["replicas"] = serde_json::json!(reports);
            let silent: Vec<_> = expected
                .iter()
                .filter(|n| !reports.iter().any(|r| &r.replica == *n))
                .collect();
            if !silent.is_empty() {
                body["replicas_silent"] = serde_json::json!(silent);
            }
        }
    }
    if let Some((at, what)) = diverged {
        body["replica_diverged"] = serde_json::Value::String(format!(
            "first differing size {at}: {what} (do not promote this replica; README, \"Ledger replicas\")"
        ));
    }
    if let Some(alarm) = data_loss {
        let alarms = state.inner.counters.as_ref().map_or(1, |c| {
            c.data_loss_alarms
                .load(std::sync::atomic::Ordering::Relaxed)
        });
        let later = match alarms {
            0 | 1 => String::new(),
            2 => "; one later alarm is in the log".into(),
            n => format!("; {} later alarms are in the log", n - 1),
        };
        body["data_loss"] = serde_json::Value::String(format!(
            "{alarm} (this alarm stays until `socai serve` restarts{later})"
        ));
    }
    // Not lost (the next start rejects them again), so the ledger stays ready; but REJECTED
    // lacks them until then, and the stored cursor cannot pass them.
    let unstored = state.inner.counters.as_ref().map_or(0, |c| {
        c.rejections_unstored
            .load(std::sync::atomic::Ordering::Relaxed)
    });
    if unstored > 0 {
        body["rejections_unstored"] = serde_json::Value::String(format!(
            "{unstored} {} could not be stored on REJECTED within [ingest] rejected_retry_s this run: check REJECTED (its limits, whether it exists) and nats-server, then restart `socai serve` soon; the next start reads and rejects them again from EVENTS, as long as EVENTS still holds them (max_age, 30 days). Until then the stored EVENTS cursor stays before them, and NATS copies of redacted events after them wait to be erased",
            if unstored == 1 {
                "rejection"
            } else {
                "rejections"
            }
        ));
    }
    // Ingest and receipts go on, so the ledger stays ready; but the projection workers get
    // nothing new until the operator has done what this says.
    let stalled = state
        .inner
        .counters
        .as_ref()
        .and_then(|c| c.committed_stalled.lock().ok().and_then(|s| s.clone()));
    if let Some(why) = stalled {
        body["committed_stalled"] = serde_json::Value::String(why);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.to_string(),
    )
        .into_response())
}

async fn prometheus(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.inner.registry)
        .map_err(|e| ApiError::internal(format!("encoding metrics: {e}")))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response())
}

async fn openapi() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            ),
        ],
        crate::OPENAPI,
    )
        .into_response()
}
