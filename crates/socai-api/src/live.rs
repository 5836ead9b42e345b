//! Metric values: `/v1/metrics` reads the METRICS bucket; `/v1/metrics/stream` relays the
//! projection workers' live messages (`dvc.metrics.<metric>.<scope>`) as Server-Sent Events.
//!
//! The hub keeps the last events in a ring buffer; each has the id `<epoch>-<n>` (`epoch`: when
//! this server started, `n`: a counter). A client that reconnects with `Last-Event-ID` gets what
//! it missed if the buffer still holds it; otherwise (another epoch, or too old) it gets a
//! `reset` event and should re-read `/v1/metrics`. A client too slow to keep up gets `reset` too:
//! the hub never waits for anyone.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use socai_metrics::{Filter, MetricValue};
use socai_projector::{Published, read_published_bounded};
use tokio::sync::broadcast;

use crate::ledger::{FRESH, json};
use crate::params::Params;
use crate::problem::ApiError;
use crate::{AppState, Nats};

pub fn value_routes() -> Router<AppState> {
    Router::new().route("/v1/metrics", get(values))
}

pub fn stream_routes() -> Router<AppState> {
    Router::new().route("/v1/metrics/stream", get(stream))
}

fn filter(params: &Params, default_window: &str) -> Result<Filter, ApiError> {
    let metrics = params.list("metric");
    let scope = params.str("scope")?;
    let window = params.str("window")?;
    Filter::parse(&metrics, scope, window, default_window)
        .map_err(|e| ApiError::bad_param(e.param, e.to_string()))
}

pub(crate) fn nats(state: &AppState) -> Result<&Nats, ApiError> {
    state.inner.nats.as_ref().ok_or_else(|| {
        ApiError::unavailable("this server has no NATS connection: metric values come from the METRICS bucket of `socai serve`")
    })
}

/// `GET /v1/metrics?metric=&scope=&window=`: the values the workers published (latest revision
/// of each key), "no data" ones included (`value: null`).
async fn values(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["metric", "scope", "window"])?;
    let filter = filter(&params, "all")?;
    let nats = nats(&state)?;
    if nats.client.connection_state() != async_nats::connection::State::Connected {
        return Err(ApiError::unavailable(
            "not connected to nats-server; retry shortly",
        ));
    }
    let max = state.config().max_metric_values;
    let _slot = state.metric_slot().await?;
    let published = read_published_bounded(&nats.js, &filter.key_filter(), max)
        .await
        .map_err(|e| match e {
            socai_projector::ReadError::TooMany { matching } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "too_many",
                format!(
                    "{matching} values match; at most {max} are returned at once: narrow it with metric, scope (e.g. province:H01) or window (e.g. month.2026-03)"
                ),
            )
            ,
            socai_projector::ReadError::Other(e) => {
                ApiError::unavailable(format!("reading the METRICS bucket: {e}"))
            }
        })?;
    let mut values: Vec<MetricValue> = published
        .into_iter()
        .filter_map(|(_, p)| match p {
            Published::Value(v) if filter.matches(&v) => Some(v),
            _ => None,
        })
        .collect();
    values.sort_by(|a, b| a.display_order().cmp(&b.display_order()));
    json(&serde_json::json!({"values": values}), FRESH)
}

/// One live message of a projection worker.
#[derive(Debug)]
pub struct LiveEvent {
    n: u64,
    /// A worker's heartbeat (`dvc.workers.<name>`), not metric values.
    worker: bool,
    metric: String,
    scope: String,
    /// `{"tree_size", "root", "values": [...]}` as published.
    data: Bytes,
}

/// Relays `dvc.metrics.>` (and the workers' heartbeats, `dvc.workers.>`) to every SSE client,
/// keeping the last events for resumption.
pub struct LiveHub {
    epoch: String,
    next: AtomicU64,
    capacity: usize,
    buffer: Mutex<VecDeque<Arc<LiveEvent>>>,
    tx: broadcast::Sender<Arc<LiveEvent>>,
    closed: tokio::sync::watch::Sender<bool>,
    clients: Gauge,
    relayed: Counter,
    resets: Counter,
}

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveHub(epoch {})", self.epoch)
    }
}

impl LiveHub {
    /// Subscribes to `dvc.metrics.>` and `dvc.workers.>` on `client` (the subscriptions survive
    /// reconnects).
    pub fn start(client: async_nats::Client, capacity: usize) -> Arc<LiveHub> {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
            .to_string();
        let (tx, _) = broadcast::channel(capacity.max(16));
        let hub = Arc::new(LiveHub {
            epoch,
            next: AtomicU64::new(1),
            capacity: capacity.max(1),
            buffer: Mutex::new(VecDeque::new()),
            tx,
            closed: tokio::sync::watch::channel(false).0,
            clients: Gauge::default(),
            relayed: Counter::default(),
            resets: Counter::default(),
        });
        tokio::spawn(hub.clone().relay(client));
        hub
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "socai_sse_clients",
            "Clients connected to /v1/metrics/stream",
            self.clients.clone(),
        );
        registry.register(
            "socai_sse_relayed_events",
            "Live metric messages relayed to SSE clients",
            self.relayed.clone(),
        );
        registry.register(
            "socai_sse_resets",
            "reset events sent (resume point lost, or a client too slow)",
            self.resets.clone(),
        );
    }

    /// Ends every stream (at shutdown).
    pub fn close(&self) {
        let _ = self.closed.send(true);
    }

    async fn relay(self: Arc<Self>, client: async_nats::Client) {
        let subscribe = |subject: String| {
            let client = client.clone();
            async move {
                loop {
                    match client.subscribe(subject.clone()).await {
                        Ok(sub) => break sub,
                        Err(e) => {
                            tracing::warn!(cause = %e, "cannot subscribe to {subject} yet; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        };
        let values = subscribe(format!("{}.>", socai_wire::subject::METRICS_PREFIX)).await;
        let beats = subscribe(format!("{}.>", socai_wire::subject::WORKERS_PREFIX)).await;
        let mut sub = futures::stream::select(values, beats);
        while let Some(msg) = sub.next().await {
            let worker = msg
                .subject
                .strip_prefix(socai_wire::subject::WORKERS_PREFIX)
                .and_then(|rest| rest.strip_prefix('.'));
            let (metric, scope) = match worker {
                Some(name) => ("", name),
                None => match socai_wire::subject::parse_metrics_subject(&msg.subject) {
                    Some(parsed) => parsed,
                    None => continue,
                },
            };
            let event = Arc::new(LiveEvent {
                n: self.next.fetch_add(1, Relaxed),
                worker: worker.is_some(),
                metric: metric.to_owned(),
                scope: scope.to_owned(),
                data: msg.payload,
            });
            {
                let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
                if buffer.len() == self.capacity {
                    buffer.pop_front();
                }
                buffer.push_back(event.clone());
            }
            self.relayed.inc();
            let _ = self.tx.send(event);
        }
    }

    /// Where a client resumes: the events after `last_event_id` still buffered, or `None` when
    /// the resume point is lost.
    fn resume(&self, last_event_id: &str) -> Option<Vec<Arc<LiveEvent>>> {
        let (epoch, n) = last_event_id.rsplit_once('-')?;
        let n: u64 = n.parse().ok()?;
        if epoch != self.epoch {
            return None;
        }
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = buffer.front().map_or(self.next.load(Relaxed), |e| e.n);
        // Everything after n must still be here.
        if n.saturating_add(1) < oldest || n >= self.next.load(Relaxed) {
            return None;
        }
        Some(buffer.iter().filter(|e| e.n > n).cloned().collect())
    }

    fn id(&self, n: u64) -> String {
        format!("{}-{n}", self.epoch)
    }
}

/// The SSE event for `event` under `filter`, or `None` if nothing in it matches.
fn sse_event(hub: &LiveHub, event: &LiveEvent, filter: &Filter) -> Option<Event> {
    if event.worker {
        // A worker's heartbeat goes to every client, whatever it filters: it says the figures
        // are being computed, not what they are.
        return Some(
            Event::default()
                .id(hub.id(event.n))
                .event("worker")
                .data(&*String::from_utf8_lossy(&event.data)),
        );
    }
    if !filter.matches_subject(&event.metric, &event.scope) {
        return None;
    }
    let data = match filter.window.as_deref() {
        None | Some("all") => String::from_utf8_lossy(&event.data).into_owned(),
        Some(_) => {
            // Only the windows asked for.
            let mut message: serde_json::Value = serde_json::from_slice(&event.data).ok()?;
            let values = message.get_mut("values")?.as_array_mut()?;
            values.retain(|v| {
                serde_json::from_value::<MetricValue>(v.clone()).is_ok_and(|v| filter.matches(&v))
            });
            if values.is_empty() {
                return None;
            }
            message.to_string()
        }
    };
    Some(
        Event::default()
            .id(hub.id(event.n))
            .event("metric")
            .data(data),
    )
}

fn reset(hub: &LiveHub, reason: &str) -> Event {
    hub.resets.inc();
    Event::default()
        .event("reset")
        .data(serde_json::json!({ "reason": reason, "reload": "/v1/metrics" }).to_string())
}

/// Counts a connected client while it lives.
struct ClientGuard {
    hub: Arc<LiveHub>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.hub.clients.dec();
    }
}

/// `GET /v1/metrics/stream?metric=&scope=&window=`: Server-Sent Events `metric` (one per
/// changed metric and scope: `{"tree_size","root","values":[...]}`), and `reset` when events were
/// missed. Resumable with `Last-Event-ID` (header, or the `last_event_id` parameter).
async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(
        q.as_deref(),
        &["metric", "scope", "window", "last_event_id"],
    )?;
    let filter = filter(&params, "all")?;
    let Some(hub) = state.inner.hub.clone() else {
        return Err(ApiError::unavailable(
            "this server has no NATS connection: live metric values come from `socai serve`",
        ));
    };
    let permit = state
        .inner
        .sse_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            crate::ledger::too_busy(format!(
                "{} live clients are connected, the most this server takes; retry later",
                state.config().max_sse_clients
            ))
        })?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(params.str("last_event_id")?.map(str::to_owned));
    hub.clients.inc();
    let guard = ClientGuard {
        hub: hub.clone(),
        _permit: permit,
    };
    // Subscribe first, then replay: nothing falls between the two.
    let rx = hub.tx.subscribe();
    // Where this client resumes: after its Last-Event-ID when this server still holds what
    // followed it, else from now on, after a `reset`.
    let (replay, mut first, mut replayed_up_to): (Vec<Arc<LiveEvent>>, Vec<Event>, u64) =
        match last_event_id.as_deref() {
            None => (Vec::new(), Vec::new(), 0),
            Some(id) => match hub.resume(id) {
                Some(events) => {
                    let after = id
                        .rsplit_once('-')
                        .and_then(|(_, n)| n.parse::<u64>().ok())
                        .unwrap_or(0);
                    (events, Vec::new(), after)
                }
                None => (
                    Vec::new(),
                    vec![reset(
                        &hub,
                        &format!(
                            "cannot resume after {id:?}: this server no longer holds the events after it"
                        ),
                    )],
                    0,
                ),
            },
        };
    for event in &replay {
        replayed_up_to = replayed_up_to.max(event.n);
        if let Some(e) = sse_event(&hub, event, &filter) {
            first.push(e);
        }
    }
    // Live events newer than the replay, until the client leaves or the server stops.
    let mut closed = hub.closed.subscribe();
    let live = futures::stream::unfold(
        (rx, guard, filter, replayed_up_to),
        move |(mut rx, guard, filter, mut seen)| async move {
            loop {
                let hub = guard.hub.clone();
                match rx.recv().await {
                    Ok(event) if event.n <= seen => continue,
                    Ok(event) => {
                        seen = event.n;
                        if let Some(e) = sse_event(&hub, &event, &filter) {
                            return Some((e, (rx, guard, filter, seen)));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let e = reset(
                            &hub,
                            &format!("this client fell {missed} events behind and missed them"),
                        );
                        return Some((e, (rx, guard, filter, seen)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    )
    .take_until(async move {
        let _ = closed.wait_for(|c| *c).await;
    });
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(futures::stream::iter(first).chain(live).map(Ok));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
