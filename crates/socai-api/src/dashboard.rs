//! The operations-centre dashboard: the page (`/dashboard`, its embedded assets) and the JSON it
//! reads (`/v1/dashboard`, `/v1/dashboard/view`, `/v1/dashboard/series`).
//!
//! Figures come from the METRICS bucket, as the projection workers published them (each with
//! the tree size and root it was computed at); names from the administrative units file
//! (`schemas/units/vn.json`); who runs what from the ledger itself (the [`Directory`]: the
//! agencies that filed events, grouped under the province that exists today, and the
//! procedures each agency published). Nothing here computes a figure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use socai_metrics::{Filter, Metric, MetricValue, Scope, ScopeKind, Window, province_of};
use socai_projector::{Published, ReadError, read_published_any};

use crate::AppState;
use crate::ledger::{FRESH, json};
use crate::params::Params;
use crate::problem::ApiError;

/// One headline tile: its metric, target and amber band (socai.toml `[[dashboard.tiles]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileConfig {
    pub metric: String,
    /// Green at or above (a fraction for rates, points out of 100 for score_766).
    pub target: f64,
    /// Amber at or above, red below.
    pub amber: f64,
    /// Where the target comes from.
    pub source: String,
}

/// socai.toml `[dashboard]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    /// The page warns that its figures are stale when no live message arrived for this long.
    pub stale_after_secs: u64,
    /// Wall mode: seconds per province.
    pub wall_rotate_secs: u64,
    pub tiles: Vec<TileConfig>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        let tile = |metric: &str, target: f64, amber: f64, source: &str| TileConfig {
            metric: metric.into(),
            target,
            amber,
            source: source.into(),
        };
        DashboardConfig {
            stale_after_secs: 30,
            wall_rotate_secs: 20,
            tiles: vec![
                tile(
                    "fully_online_rate",
                    0.8,
                    0.6,
                    "Resolution 57-NQ/TW and Decision 06/QĐ-TTg: 80% of dossiers handled fully online (Cần Thơ's 2025 target: 80%); amber from 60%: this project's default",
                ),
                tile(
                    "online_submission_rate",
                    0.5,
                    0.3,
                    "Decision 766 indicator 3.3: full points at 50%; amber from 30%: this project's default",
                ),
                tile(
                    "on_time_rate",
                    0.95,
                    0.85,
                    "this project's default (Decision 766 indicator 2.1 gives full points only at 100%)",
                ),
                tile(
                    "online_payment_rate",
                    0.5,
                    0.3,
                    "Decision 766 indicator 3.6 (threshold as read in schemas/score-766.json); amber from 30%: this project's default",
                ),
                tile(
                    "digital_signature_rate",
                    0.9,
                    0.7,
                    "Resolution 57 reports (results must be digitally signed); 90% / 70%: this project's default",
                ),
                tile(
                    "digitization_rate",
                    0.8,
                    0.6,
                    "Decision 766 indicator 4.2: full points at 80%; amber from 60%: this project's default",
                ),
                tile(
                    "satisfaction_rate",
                    0.9,
                    0.8,
                    "Decision 766 indicator 5.4: full points at 90%; amber from 80%: this project's default",
                ),
                tile(
                    "score_766",
                    80.0,
                    60.0,
                    "this project's default (points earned out of the covered indicators' points, as a percentage)",
                ),
            ],
        }
    }
}

impl DashboardConfig {
    /// Every tile is one of the headline metrics the page can show, once, with
    /// 0 ≤ amber ≤ target (≤ 1 for rates, ≤ 100 for score_766); the stale warning waits for at
    /// least two worker heartbeats.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for tile in &self.tiles {
            let Some(metric) = Metric::parse(&tile.metric).filter(|m| HEADLINE.contains(m)) else {
                return Err(format!(
                    "[[dashboard.tiles]] metric {:?} is not a headline metric; one of: {}",
                    tile.metric,
                    HEADLINE.map(Metric::name).join(", ")
                ));
            };
            if !seen.insert(&tile.metric) {
                return Err(format!(
                    "[[dashboard.tiles]] metric {} is listed twice",
                    tile.metric
                ));
            }
            let top = if metric == Metric::Score766 {
                100.0
            } else {
                1.0
            };
            let ordered = 0.0 <= tile.amber && tile.amber <= tile.target && tile.target <= top;
            if !ordered {
                return Err(format!(
                    "[[dashboard.tiles]] {}: need 0 <= amber ({}) <= target ({}) <= {top}{}",
                    tile.metric,
                    tile.amber,
                    tile.target,
                    if top == 1.0 {
                        " (rates are fractions: 0.8 is 80%)"
                    } else {
                        " (points)"
                    }
                ));
            }
        }
        let beats = 2 * HEARTBEAT_SECS;
        if self.stale_after_secs < beats {
            return Err(format!(
                "[dashboard] stale_after_secs = {} is shorter than two worker heartbeats ({beats} s): the page would warn while workers run",
                self.stale_after_secs
            ));
        }
        if self.wall_rotate_secs == 0 {
            return Err("[dashboard] wall_rotate_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// The metrics a headline tile can show (the page has their labels and bands).
pub const HEADLINE: [Metric; 8] = [
    Metric::FullyOnlineRate,
    Metric::OnlineSubmissionRate,
    Metric::OnTimeRate,
    Metric::OnlinePaymentRate,
    Metric::DigitalSignatureRate,
    Metric::DigitizationRate,
    Metric::SatisfactionRate,
    Metric::Score766,
];

/// How often projection workers send their heartbeat.
pub use socai_projector::HEARTBEAT_SECS;

/// A fault a test asks `socai serve` to inject (environment `SOCAI_TEST_FAULT`), so the page's
/// Verify can be shown to turn red. Never set in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestFault {
    /// Consistency proofs are served with one hash changed.
    ForgedConsistency,
    /// The latest checkpoint is served signed by another key of the same name.
    ForeignKey,
}

impl TestFault {
    pub fn parse(text: &str) -> Option<TestFault> {
        match text {
            "forged-consistency" => Some(TestFault::ForgedConsistency),
            "foreign-key" => Some(TestFault::ForeignKey),
            _ => None,
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/assets/{file}", get(asset))
        .route("/v1/dashboard", get(config))
        .route("/v1/dashboard/view", get(view))
        .route("/v1/dashboard/series", get(series))
}

/// The page's files, embedded at build time (no build step, nothing fetched at run time).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/i18n.js"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/verify.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/uPlot.min.css"),
    ),
    (
        "LICENSE-uPlot",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/LICENSE-uPlot"),
    ),
];
const INDEX_HTML: &[u8] = include_bytes!("../assets/index.html");

const CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn with_headers(content_type: &'static str, cache: &'static str, body: &'static [u8]) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn page() -> Response {
    // Every view is this page; the view is in the query string (reload-safe, shareable).
    with_headers("text/html; charset=utf-8", "no-cache", INDEX_HTML)
}

async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no dashboard asset {file:?}"),
            )
        })?;
    // Assets change only with the binary; the page is revalidated each time.
    Ok(with_headers(content_type, "no-cache", body))
}

fn tile_metrics(config: &DashboardConfig) -> Vec<Metric> {
    config
        .tiles
        .iter()
        .filter_map(|t| Metric::parse(&t.metric))
        .collect()
}

/// `GET /v1/dashboard`: the log's key, the tiles with their targets, the score_766 table.
async fn config(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    Params::parse(q.as_deref(), &[])?;
    let reader = state.reader();
    let vkey = reader.verifier_vkey();
    // <name>+<hex id>+<base64(0x01 ‖ key)>: the raw key is what WebCrypto imports.
    let public_key = vkey
        // The base64 part may itself contain '+'.
        .splitn(3, '+')
        .nth(2)
        .and_then(|b64| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b64).ok()
        })
        .filter(|k| k.len() == 33 && k[0] == 1)
        .map(|k| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&k[1..])
        })
        .ok_or_else(|| ApiError::internal("the log's verifier key is not an Ed25519 key"))?;
    let dashboard = &state.config().dashboard;
    let tiles: Vec<serde_json::Value> = dashboard
        .tiles
        .iter()
        .map(|t| {
            serde_json::json!({
                "metric": t.metric,
                "target": t.target,
                "amber": t.amber,
                "unit": if t.metric == Metric::Score766.name() { "points" } else { "rate" },
                "source": t.source,
            })
        })
        .collect();
    json(
        &serde_json::json!({
            "log": {
                "origin": reader.origin(),
                "key_name": reader.origin(),
                "vkey": vkey,
                "public_key": public_key,
            },
            "stale_after_secs": dashboard.stale_after_secs,
            "wall_rotate_secs": dashboard.wall_rotate_secs,
            "tiles": tiles,
            "score_766": &*socai_metrics::SCORE_766,
        }),
        FRESH,
    )
}

/// Who runs what, learned from the ledger: agencies (under today's province) and the
/// procedures each published. Caught up with the store at each request (incrementally).
#[derive(Debug, Default)]
pub struct Directory {
    /// Entries read so far.
    scanned: u64,
    /// The store's size when the follower last looked (`scanned < size`: still reading).
    size: u64,
    /// Current province token → agencies that filed anything.
    agencies: BTreeMap<String, BTreeSet<String>>,
    /// Agency → procedures it published.
    procedures: BTreeMap<String, BTreeSet<String>>,
    /// Procedure → its name as last published.
    procedure_names: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct EntryHead<'a> {
    #[serde(borrow)]
    event: EventHead<'a>,
}

#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(borrow)]
    agency: &'a str,
    #[serde(borrow, default)]
    procedure: Option<&'a str>,
    /// Parsed only for `procedure.published` (its `name`).
    #[serde(borrow, default)]
    data: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct ProcedureName {
    #[serde(default)]
    name: Option<String>,
}

impl Directory {
    /// Adds what `other` (the next entries) learned.
    fn merge(&mut self, other: Directory) {
        for (province, agencies) in other.agencies {
            self.agencies.entry(province).or_default().extend(agencies);
        }
        for (agency, procedures) in other.procedures {
            self.procedures
                .entry(agency)
                .or_default()
                .extend(procedures);
        }
        self.procedure_names.extend(other.procedure_names);
    }

    fn learn(&mut self, entry: &[u8]) {
        let Ok(head) = serde_json::from_slice::<EntryHead<'_>>(entry) else {
            return;
        };
        let event = head.event;
        if !self.procedures.contains_key(event.agency) {
            // A ministry's own code (no province) is reachable by its URL only.
            if let Some(p) = province_of(event.agency) {
                self.agencies
                    .entry(p)
                    .or_default()
                    .insert(event.agency.to_owned());
            }
            self.procedures
                .insert(event.agency.to_owned(), BTreeSet::new());
        }
        if event.kind == "procedure.published"
            && let Some(code) = event.procedure
        {
            self.procedures
                .entry(event.agency.to_owned())
                .or_default()
                .insert(code.to_owned());
            if let Some(name) = event
                .data
                .and_then(|d| serde_json::from_str::<ProcedureName>(d.get()).ok())
                .and_then(|d| d.name)
            {
                self.procedure_names.insert(code.to_owned(), name);
            }
        }
    }
}

/// Entries the follower reads before it lets readers at the directory again.
const DIRECTORY_CHUNK: u64 = 20_000;

/// Keeps `directory` caught up with the store, on a thread of its own (started with the API):
/// it reads new entries in chunks, merging each under the lock for a moment, and sleeps a
/// second once caught up. Requests never wait for it (they see what it has read so far, and
/// say so), and it takes none of the read slots proofs and entries use. It ends once the API
/// is gone (it then holds the last reference).
pub(crate) fn follow_directory(
    reader: socai_store::LedgerReader<socai_store::SledStorage>,
    directory: SharedDirectory,
) {
    // Known at once: the request that started the follower already says it is behind.
    directory.lock().unwrap_or_else(|e| e.into_inner()).size = reader.head().size;
    let spawned = std::thread::Builder::new()
        .name("socai-directory".into())
        .spawn(move || {
            while Arc::strong_count(&directory) > 1 {
                let size = reader.head().size;
                let scanned = {
                    let mut d = directory.lock().unwrap_or_else(|e| e.into_inner());
                    // Known before reading: a view meanwhile says the directory is behind.
                    d.size = size;
                    d.scanned
                };
                if scanned >= size {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    continue;
                }
                let to = size.min(scanned + DIRECTORY_CHUNK);
                let mut chunk = Directory::default();
                let mut read = scanned;
                for item in reader.entries(scanned, to) {
                    match item {
                        Ok((seq, bytes)) => {
                            chunk.learn(&bytes);
                            read = seq + 1;
                        }
                        Err(e) => {
                            tracing::warn!(cause = %e, "the dashboard's directory cannot read entry {read}; retrying in 10 s");
                            std::thread::sleep(std::time::Duration::from_secs(10));
                            break;
                        }
                    }
                }
                let mut d = directory.lock().unwrap_or_else(|e| e.into_inner());
                d.merge(chunk);
                d.scanned = read;
                d.size = size;
            }
        });
    if let Err(e) = spawned {
        tracing::error!(cause = %e, "cannot start the dashboard's directory thread: provinces will list only their communes");
    }
}

/// Runs `f` on the directory as read so far (never waits for the follower to catch up). The
/// follower starts with the first dashboard request, so an API nobody opens the dashboard of
/// (a benchmark, an auditor's server) never reads the ledger for it.
fn with_directory<T>(state: &AppState, f: impl FnOnce(&Directory) -> T) -> T {
    state.inner.directory_started.call_once(|| {
        follow_directory(state.reader().clone(), state.inner.directory.clone());
    });
    let d = state
        .inner
        .directory
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    f(&d)
}

pub(crate) type SharedDirectory = Arc<std::sync::Mutex<Directory>>;

fn parse_scope(params: &Params) -> Result<Scope, ApiError> {
    let text = params.str("scope")?.unwrap_or("national");
    let scope = Scope::parse(text).ok_or_else(|| {
        ApiError::bad_param(
            "scope",
            format!("{text:?}: expected national, province:H01, agency:000.00.12.H01 or procedure:1.004227"),
        )
    })?;
    if !scope
        .code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(ApiError::bad_param(
            "scope",
            "a scope code has only letters, digits, '.', '-' and '_'",
        ));
    }
    Ok(scope)
}

fn names(scope: &Scope, directory_name: Option<&str>) -> (String, String) {
    if scope.kind == ScopeKind::National {
        return ("Việt Nam".into(), "Viet Nam".into());
    }
    if let Some(names) = socai_metrics::units().name_of_scope(scope) {
        return names;
    }
    match directory_name {
        Some(name) => (name.to_owned(), name.to_owned()),
        None => (scope.code.clone(), scope.code.clone()),
    }
}

fn scope_json(scope: &Scope, directory: Option<&Directory>) -> serde_json::Value {
    let procedure_name = directory.and_then(|d| {
        (scope.kind == ScopeKind::Procedure)
            .then(|| d.procedure_names.get(&scope.code).map(String::as_str))
            .flatten()
    });
    let (name, name_en) = names(scope, procedure_name);
    serde_json::json!({"scope": scope.to_string(), "name": name, "name_en": name_en})
}

fn read_error(e: ReadError, max: usize) -> ApiError {
    match e {
        ReadError::TooMany { matching } => ApiError::unavailable(format!(
            "{matching} metric values match this view, more than [http] max_metric_values ({max}); raise it"
        )),
        ReadError::Other(e) => ApiError::unavailable(format!("reading the METRICS bucket: {e}")),
    }
}

/// The latest published values under any of `filters` (METRICS keys).
async fn values(state: &AppState, filters: Vec<String>) -> Result<Vec<MetricValue>, ApiError> {
    let nats = crate::live::nats(state)?;
    let max = state.config().max_metric_values;
    let _slot = state.metric_slot().await?;
    let published = read_published_any(&nats.js, &filters, max)
        .await
        .map_err(|e| read_error(e, max))?;
    Ok(published
        .into_iter()
        .filter_map(|(_, p)| match p {
            Published::Value(v) => Some(v),
            Published::Mark(_) => None,
        })
        .collect())
}

/// The window before `window` of the same kind (none for rolling windows).
fn previous(window: &Window) -> Option<Window> {
    Some(match *window {
        Window::Day(day) => Window::Day(day.plus(-1)),
        Window::Month { year, month } if month > 1 => Window::Month {
            year,
            month: month - 1,
        },
        Window::Month { year, .. } => Window::Month {
            year: year - 1,
            month: 12,
        },
        Window::Quarter { year, quarter } if quarter > 1 => Window::Quarter {
            year,
            quarter: quarter - 1,
        },
        Window::Quarter { year, .. } => Window::Quarter {
            year: year - 1,
            quarter: 4,
        },
        Window::YearToDate(year) => Window::YearToDate(year - 1),
        Window::Rolling7 | Window::Rolling30 => return None,
    })
}

const VIEW_KINDS: [&str; 4] = ["day", "month", "quarter", "ytd"];

/// Exact keys per METRICS read (nats-server answers at most 1024 subjects per multi_last).
const KEYS_PER_READ: usize = 1000;

/// The window a view shows: an exact id, or the latest window of a kind that has national
/// figures (the projection's current period).
async fn current_window(state: &AppState, asked: &str) -> Result<Option<Window>, ApiError> {
    if let Some(window) = Window::parse(asked).filter(|w| VIEW_KINDS.contains(&w.kind())) {
        return Ok(Some(window));
    }
    if !VIEW_KINDS.contains(&asked) {
        return Err(ApiError::bad_param(
            "window",
            format!(
                "{asked:?}: expected day, month, quarter, ytd, or one such window (month.2026-03)"
            ),
        ));
    }
    // The projection's current day: where its rolling windows end (one exact key per metric,
    // whatever the ledger's age).
    let keys = [
        Metric::OnlineSubmissionRate,
        Metric::Backlog,
        Metric::ProceduresFullOnlineShare,
    ]
    .iter()
    .map(|m| format!("{}.national.rolling7", m.name()))
    .collect();
    let found = values(state, keys).await?;
    let Some(now) = found
        .iter()
        .filter_map(|v| socai_metrics::Day::parse(&v.window.to))
        .max()
    else {
        return Ok(None);
    };
    let [day, month, quarter, ytd] = Window::calendar_containing(now);
    Ok(Some(match asked {
        "day" => day,
        "month" => month,
        "quarter" => quarter,
        _ => ytd,
    }))
}

fn window_json(window: &Window) -> serde_json::Value {
    let bounds = window.bounds(socai_metrics::Day(i32::MAX / 4));
    serde_json::json!({
        "id": window.id(),
        "from": bounds.map(|(f, _)| f.to_string()),
        "to": bounds.map(|(_, t)| t.to_string()),
    })
}

/// Values by (metric, scope, window id).
type Found = std::collections::HashMap<(Metric, Scope, String), MetricValue>;

fn by_key(values: Vec<MetricValue>) -> Found {
    values
        .into_iter()
        .map(|v| ((v.metric, v.scope.clone(), v.window.id.clone()), v))
        .collect()
}

/// `GET /v1/dashboard/view?scope=&window=`: everything one view of the page shows.
async fn view(State(state): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["scope", "window", "via"])?;
    let scope = parse_scope(&params)?;
    let asked = params.str("window")?.unwrap_or("month").to_owned();
    // The agency a procedure was reached from (its breadcrumb goes through it).
    let via = match params.str("via")? {
        None => None,
        Some(text) => match Scope::parse(text) {
            Some(s) if s.kind == ScopeKind::Agency && scope.kind == ScopeKind::Procedure => Some(s),
            _ => {
                return Err(ApiError::bad_param(
                    "via",
                    format!(
                        "{text:?}: via names the agency a procedure view was reached from (agency:000.00.12.H01), only with scope=procedure:…"
                    ),
                ));
            }
        },
    };
    let window = current_window(&state, &asked).await?;
    let config = state.config().dashboard.clone();
    let mut metrics = tile_metrics(&config);
    metrics.extend([Metric::Backlog, Metric::Overdue]);

    // The ledger's size now (the head only grows): the follower learns it only when it wakes,
    // up to a second later.
    let ledger_size = state.reader().head().size;
    let (children_kind, children, directory_scope) = {
        let scope = scope.clone();
        with_directory(&state, move |d| {
            let (kind, children): (Option<ScopeKind>, Vec<Scope>) = match scope.kind {
                ScopeKind::National => (
                    Some(ScopeKind::Province),
                    socai_metrics::units()
                        .provinces()
                        .map(|u| Scope {
                            kind: ScopeKind::Province,
                            code: u.code.clone(),
                        })
                        .collect(),
                ),
                ScopeKind::Province => {
                    // Agencies that filed under it (those of merged units too), and every commune
                    // of it, silent ones included: they are the ones to chase.
                    let mut agencies: BTreeSet<String> =
                        d.agencies.get(&scope.code).cloned().unwrap_or_default();
                    agencies.extend(
                        socai_metrics::units()
                            .communes_of(&scope.code)
                            .filter_map(|c| c.agency.clone()),
                    );
                    (
                        Some(ScopeKind::Agency),
                        agencies
                            .into_iter()
                            .map(|code| Scope {
                                kind: ScopeKind::Agency,
                                code,
                            })
                            .collect(),
                    )
                }
                ScopeKind::Agency => (
                    Some(ScopeKind::Procedure),
                    d.procedures
                        .get(&scope.code)
                        .into_iter()
                        .flatten()
                        .map(|p| Scope {
                            kind: ScopeKind::Procedure,
                            code: p.clone(),
                        })
                        .collect(),
                ),
                ScopeKind::Procedure => (None, Vec::new()),
            };
            let known = match scope.kind {
                ScopeKind::National => true,
                ScopeKind::Province => socai_metrics::units()
                    .province(&scope.code)
                    .is_some_and(|u| u.is_current()),
                ScopeKind::Agency => {
                    d.procedures.contains_key(&scope.code)
                        || socai_metrics::units()
                            .commune_by_agency(&scope.code)
                            .is_some()
                }
                ScopeKind::Procedure => {
                    d.procedure_names.contains_key(&scope.code)
                        || d.procedures.values().any(|p| p.contains(&scope.code))
                }
            };
            let children_json: Vec<serde_json::Value> =
                children.iter().map(|c| scope_json(c, Some(d))).collect();
            let me = scope_json(&scope, Some(d));
            let behind = ledger_size.saturating_sub(d.scanned);
            (kind, (children, children_json, known, behind), me)
        })
    };
    let (children, children_json, known, behind) = children;
    if !known {
        let units = socai_metrics::units();
        let detail = match units.province(&scope.code) {
            Some(old) if scope.kind == ScopeKind::Province && !old.is_current() => {
                let now = units.current_province(&scope.code);
                format!(
                    "{scope} ({}) ended on {}: it merged into province:{} ({}), whose figures include everything filed under it",
                    old.short_name,
                    old.valid_to.as_deref().unwrap_or("?"),
                    now.map_or("?", |u| u.code.as_str()),
                    now.map_or("?", |u| u.short_name.as_str()),
                )
            }
            _ if behind > 0 => format!(
                "{scope}: not found yet; the dashboard is still reading the ledger ({behind} entries to go): retry shortly"
            ),
            _ => {
                format!("{scope}: no such unit today, and nothing in the ledger was filed under it")
            }
        };
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", detail));
    }

    let mut breadcrumb = vec![scope_json(&Scope::national(), None)];
    let province = match scope.kind {
        ScopeKind::Province => Some(scope.code.clone()),
        ScopeKind::Agency => province_of(&scope.code),
        ScopeKind::Procedure => via.as_ref().and_then(|a| province_of(&a.code)),
        ScopeKind::National => None,
    };
    if let Some(p) = &province {
        breadcrumb.push(scope_json(
            &Scope {
                kind: ScopeKind::Province,
                code: p.clone(),
            },
            None,
        ));
    }
    if let Some(agency) = &via {
        breadcrumb.push(with_directory(&state, |d| scope_json(agency, Some(d))));
    }
    if matches!(scope.kind, ScopeKind::Agency | ScopeKind::Procedure) {
        breadcrumb.push(directory_scope.clone());
    }
    let merged: Vec<serde_json::Value> = match scope.kind {
        ScopeKind::Province => socai_metrics::units()
            .merged_into(&scope.code)
            .into_iter()
            .map(|u| {
                serde_json::json!({
                    "code": u.code, "name": u.short_name, "name_en": u.name_en,
                    "until": u.valid_to,
                })
            })
            .collect(),
        _ => Vec::new(),
    };

    let Some(window) = window else {
        return json(
            &serde_json::json!({
                "scope": scope.to_string(), "kind": scope.kind.as_str(), "code": scope.code,
                "name": directory_scope["name"], "name_en": directory_scope["name_en"],
                "merged": merged, "breadcrumb": breadcrumb,
                "window": null, "previous": null, "tree_size": 0, "root": "",
                "tiles": [], "backlog": {"value": null, "previous": null},
                "overdue": {"value": null, "previous": null},
                "children": {"kind": children_kind.map(|k| k.as_str()), "rows": []},
                "workers": workers(&state).await?,
                "directory_behind": behind,
            }),
            FRESH,
        );
    };
    let before = previous(&window);
    let ids: Vec<String> = std::iter::once(window.id())
        .chain(before.iter().map(Window::id))
        .collect();
    // Exact keys: the shown metrics of this scope and its children, at both windows.
    let mut keys = Vec::new();
    let row_metrics = tile_metrics(&config);
    for id in &ids {
        for metric in &metrics {
            keys.push(socai_metrics::key(*metric, &scope, id));
        }
        for child in &children {
            for metric in &row_metrics {
                keys.push(socai_metrics::key(*metric, child, id));
            }
        }
    }
    let mut found = Found::new();
    // nats-server answers at most 1024 subjects per multi_last request.
    let per_read = KEYS_PER_READ.min(state.config().max_metric_values).max(1);
    for chunk in keys.chunks(per_read) {
        found.extend(by_key(values(&state, chunk.to_vec()).await?));
    }
    let current_id = window.id();
    let before_id = before.as_ref().map(Window::id).unwrap_or_default();
    let figure = |metric: Metric, of: &Scope| {
        let now = found
            .get(&(metric, of.clone(), current_id.clone()))
            .cloned();
        let then = found.get(&(metric, of.clone(), before_id.clone())).cloned();
        (now, then)
    };
    let mut newest: Option<(u64, String)> = None;
    let tiles: Vec<serde_json::Value> = tile_metrics(&config)
        .into_iter()
        .map(|metric| {
            let (now, then) = figure(metric, &scope);
            if let Some(v) = &now
                && newest.as_ref().is_none_or(|(size, _)| v.tree_size > *size)
            {
                newest = Some((v.tree_size, v.root.clone()));
            }
            serde_json::json!({
                "metric": metric.name(),
                "value": now.as_ref().and_then(|v| v.value),
                "numerator": now.as_ref().map(|v| v.numerator),
                "denominator": now.as_ref().and_then(|v| v.denominator),
                "previous": then.as_ref().and_then(|v| v.value),
                "tree_size": now.as_ref().map(|v| v.tree_size),
                "root": now.as_ref().map(|v| v.root.clone()),
                "detail": now.as_ref().and_then(|v| v.detail.clone()),
            })
        })
        .collect();
    let gauge = |metric: Metric| {
        let (now, then) = figure(metric, &scope);
        serde_json::json!({
            "value": now.and_then(|v| v.value),
            "previous": then.and_then(|v| v.value),
        })
    };
    let rows: Vec<serde_json::Value> = children
        .iter()
        .zip(children_json)
        .map(|(child, mut row)| {
            let values: serde_json::Map<String, serde_json::Value> = tile_metrics(&config)
                .into_iter()
                .map(|metric| {
                    let (now, then) = figure(metric, child);
                    (
                        metric.name().to_owned(),
                        serde_json::json!({
                            "value": now.and_then(|v| v.value),
                            "previous": then.and_then(|v| v.value),
                        }),
                    )
                })
                .collect();
            row["values"] = serde_json::Value::Object(values);
            row
        })
        .collect();
    let (tree_size, root) = newest.unwrap_or((0, String::new()));
    json(
        &serde_json::json!({
            "scope": scope.to_string(), "kind": scope.kind.as_str(), "code": scope.code,
            "name": directory_scope["name"], "name_en": directory_scope["name_en"],
            "merged": merged,
            "breadcrumb": breadcrumb,
            "window": window_json(&window),
            "previous": before.as_ref().map(window_json),
            "tree_size": tree_size, "root": root,
            "tiles": tiles,
            "backlog": gauge(Metric::Backlog),
            "overdue": gauge(Metric::Overdue),
            "children": {"kind": children_kind.map(|k| k.as_str()), "rows": rows},
            "workers": workers(&state).await?,
            "directory_behind": behind,
        }),
        FRESH,
    )
}

/// The workers' marks: who computes, up to which tree size.
async fn workers(state: &AppState) -> Result<Vec<serde_json::Value>, ApiError> {
    let nats = crate::live::nats(state)?;
    let filter = format!("{}.>", socai_wire::kv::WORKER_KEY_PREFIX);
    let marks = read_published_any(&nats.js, &[filter], 1000)
        .await
        .map_err(|e| read_error(e, 1000))?;
    Ok(marks
        .into_iter()
        .filter_map(|(_, p)| match p {
            Published::Mark(m) => Some(serde_json::json!({
                "worker": m.worker, "tree_size": m.tree_size, "root": m.root,
            })),
            Published::Value(_) => None,
        })
        .collect())
}

/// Most day points a series returns (the latest).
const SERIES_DAYS: usize = 90;

/// `GET /v1/dashboard/series?scope=&metric=&kind=`: one metric of one scope over every window
/// of a kind, oldest first.
async fn series(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::parse(q.as_deref(), &["scope", "metric", "kind"])?;
    let scope = parse_scope(&params)?;
    let metric_name = params
        .str("metric")?
        .ok_or_else(|| ApiError::bad_param("metric", "metric is required"))?;
    let metric = Metric::parse(metric_name)
        .ok_or_else(|| ApiError::bad_param("metric", format!("{metric_name:?} is not a metric")))?;
    let kind = params.str("kind")?.unwrap_or("day").to_owned();
    if !VIEW_KINDS.contains(&kind.as_str()) {
        return Err(ApiError::bad_param(
            "kind",
            format!("{kind:?}: expected day, month, quarter or ytd"),
        ));
    }
    // Checks the filter the same way /v1/metrics does.
    Filter::parse(
        &[metric_name.to_owned()],
        Some(&scope.to_string()),
        Some(&kind),
        "all",
    )
    .map_err(|e| ApiError::bad_param(e.param, e.to_string()))?;
    let mut found = values(
        &state,
        vec![format!("{}.{}.{kind}.*", metric.name(), scope.token())],
    )
    .await?;
    found.retain(|v| v.metric == metric && v.scope == scope);
    found.sort_by(|a, b| a.window.from.cmp(&b.window.from));
    if kind == "day" && found.len() > SERIES_DAYS {
        found.drain(..found.len() - SERIES_DAYS);
    }
    let points: Vec<serde_json::Value> = found
        .iter()
        .map(|v| {
            serde_json::json!({
                "window": v.window.id, "from": v.window.from, "to": v.window.to,
                "value": v.value, "numerator": v.numerator, "denominator": v.denominator,
                "tree_size": v.tree_size,
            })
        })
        .collect();
    json(
        &serde_json::json!({
            "scope": scope.to_string(), "metric": metric.name(), "kind": kind, "points": points,
        }),
        FRESH,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_windows_step_back_one_period() {
        let p = |id: &str| previous(&Window::parse(id).unwrap()).map(|w| w.id());
        assert_eq!(p("month.2026-03").as_deref(), Some("month.2026-02"));
        assert_eq!(p("month.2026-01").as_deref(), Some("month.2025-12"));
        assert_eq!(p("quarter.2026-Q1").as_deref(), Some("quarter.2025-Q4"));
        assert_eq!(p("quarter.2026-Q3").as_deref(), Some("quarter.2026-Q2"));
        assert_eq!(p("day.2026-03-01").as_deref(), Some("day.2026-02-28"));
        assert_eq!(p("ytd.2026").as_deref(), Some("ytd.2025"));
        assert_eq!(p("rolling7"), None);
    }

    #[test]
    fn the_default_tiles_are_the_eight_headline_metrics() {
        let config = DashboardConfig::default();
        config.check().unwrap();
        assert_eq!(
            tile_metrics(&config)
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>(),
            [
                "fully_online_rate",
                "online_submission_rate",
                "on_time_rate",
                "online_payment_rate",
                "digital_signature_rate",
                "digitization_rate",
                "satisfaction_rate",
                "score_766"
            ]
        );
        let mut bad = config.clone();
        bad.tiles[0].amber = 0.9;
        assert!(bad.check().unwrap_err().contains("amber"));
        let mut bad = config.clone();
        bad.tiles[0].target = 80.0;
        assert!(bad.check().unwrap_err().contains("0.8 is 80%"));
        let mut bad = config.clone();
        bad.tiles[0].metric = "resolution_time".into();
        assert!(bad.check().unwrap_err().contains("not a headline metric"));
        let mut bad = config.clone();
        bad.stale_after_secs = 4;
        assert!(bad.check().unwrap_err().contains("two worker heartbeats"));
        let mut bad = config;
        bad.tiles[1].metric = "fully_online_rate".into();
        assert!(bad.check().unwrap_err().contains("listed twice"));
    }

    #[test]
    fn the_directory_files_agencies_under_todays_province() {
        let mut d = Directory::default();
        let entry = |agency: &str, kind: &str, procedure: &str| {
            serde_json::json!({"event": {"type": kind, "agency": agency, "procedure": procedure,
                "data": {"name": "Cấp phiếu lý lịch tư pháp"}}})
            .to_string()
        };
        d.learn(entry("000.00.12.H02", "procedure.published", "1.001").as_bytes());
        d.learn(entry("000.00.12.H05", "dossier.submitted", "1.001").as_bytes());
        d.learn(entry("G09", "dossier.submitted", "1.002").as_bytes());
        // H02 (Hà Giang) merged into H05 (Tuyên Quang) on 2025-07-01.
        assert_eq!(
            d.agencies["H05"].iter().collect::<Vec<_>>(),
            ["000.00.12.H02", "000.00.12.H05"]
        );
        assert!(d.procedures.contains_key("G09"));
        assert!(d.procedures["000.00.12.H02"].contains("1.001"));
        assert!(d.procedures["000.00.12.H05"].is_empty());
        assert_eq!(d.procedure_names["1.001"], "Cấp phiếu lý lịch tư pháp");
    }
}
