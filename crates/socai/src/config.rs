//! `<data-dir>/socai.toml`: the operator's one config file. Every key is optional.
//!
//! ```toml
//! max_event_bytes = 65536          # larger events are rejected as `oversized`
//! import_batch_events = 1000       # events per atomic commit during import
//! checkpoint_every_events = 100000 # sign a checkpoint at least this often
//!
//! [ingest]                         # `socai serve`
//! batch_max_events = 1000          # events per commit
//! linger_ms = 5                    # a short batch waits up to this for more while a commit runs
//! checkpoint_interval_s = 10       # sign a checkpoint at least this often while events arrive
//! rejected_retry_s = 60            # a rejection's copy to REJECTED is tried this long (1..3600),
//!                                  # then left for the next start (/readyz says so); receipts of
//!                                  # its commit wait meanwhile, and the writer once 4 commits do
//! max_future_skew_s = 86400        # occurred_at later than publish time + this is rejected
//! stream_replicas = 1              # 3 on a JetStream cluster (R3)
//! duplicate_window_s = 120         # JetStream's msg-id dedup window
//! consumer = "ledger"              # name of the ledger's EVENTS consumers; a replica uses its own
//! replicas = []                    # ledger replicas' names (`serve --replica-of … --replica-name`):
//!                                  # a redacted event's EVENTS copies wait until each has read them
//!
//! [metrics]                        # `socai project`
//! flush_interval_ms = 100          # longest a changed value waits before it is published
//! kv_interval_ms = 1000            # METRICS bucket writes coalesce the changes of this long
//! snapshot_interval_s = 10         # the worker snapshots its state (a delta) at most this often
//!
//! [http]                           # the HTTP API inside `socai serve`
//! listen = "127.0.0.1:8080"        # address (`socai serve --http ADDR` overrides it)
//! request_timeout_ms = 10000       # longest a request may take (not the live stream)
//! max_page = 1000                  # entries or checkpoints per page
//! max_metric_values = 10000        # metric values per /v1/metrics answer
//! max_body_bytes = 16384           # largest request body
//! max_sse_clients = 2000           # concurrent /v1/metrics/stream clients
//! sse_buffer_events = 10000        # live events kept for clients resuming with Last-Event-ID
//! max_exports = 4                  # concurrent /v1/export streams
//! max_concurrent_reads = 0         # store reads at once (0: 4 per core); the rest wait
//! # [[http.tokens]]                # who may read personal data and redact (`socai token new`)
//! # name = "inspector-7"
//! # role = "auditor"
//! # sha256 = "<hex SHA-256 of the token>"
//!
//! [dashboard]                      # the page at /dashboard (socai serve)
//! stale_after_secs = 30            # warn when no live update arrived for this long
//! wall_rotate_secs = 20            # wall mode: seconds per province
//! # [[dashboard.tiles]]            # replaces the eight default tiles (all of them, in order)
//! # metric = "fully_online_rate"
//! # target = 0.8                   # green at or above (a fraction; score_766: points of 100)
//! # amber = 0.6                    # amber at or above, red below
//! # source = "Resolution 57-NQ/TW: 80% fully online"
//!
//! # [[witnesses]]                  # a witness that cosigns this log's checkpoints (C2SP tlog-witness)
//! # url = "https://witness.example.vn/w1/"     # its submission prefix (<url>add-checkpoint)
//! # vkey = "witness.example.vn/w1+1a2b3c4d+BA..." # what `socai witness init` printed
//! ```

use anyhow::Context;
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub max_event_bytes: usize,
    pub import_batch_events: usize,
    pub checkpoint_every_events: u64,
    pub ingest: Ingest,
    pub metrics: Metrics,
    pub http: Http,
    pub dashboard: Dashboard,
    /// `[[witnesses]]`: witnesses `socai serve` sends every signed checkpoint to.
    pub witnesses: Vec<WitnessEntry>,
}

/// `[[witnesses]]`: one witness of this log (C2SP tlog-witness).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    /// Its submission prefix: `<url>/add-checkpoint` is posted to. None for a witness that
    /// follows the log itself (`socai witness serve --follow`) and posts its cosignatures.
    #[serde(default)]
    pub url: Option<String>,
    /// Its verifier key text (what `socai witness init` printed).
    pub vkey: String,
}

/// `[dashboard]`: the page served at /dashboard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dashboard {
    pub stale_after_secs: u64,
    pub wall_rotate_secs: u64,
    /// Empty: the default tiles (socai_api::DashboardConfig::default()).
    pub tiles: Vec<socai_api::TileConfig>,
}

impl Default for Dashboard {
    fn default() -> Self {
        let d = socai_api::DashboardConfig::default();
        Dashboard {
            stale_after_secs: d.stale_after_secs,
            wall_rotate_secs: d.wall_rotate_secs,
            tiles: Vec::new(),
        }
    }
}

impl Dashboard {
    fn api(&self) -> socai_api::DashboardConfig {
        let default = socai_api::DashboardConfig::default();
        socai_api::DashboardConfig {
            stale_after_secs: self.stale_after_secs,
            wall_rotate_secs: self.wall_rotate_secs,
            tiles: if self.tiles.is_empty() {
                default.tiles
            } else {
                self.tiles.clone()
            },
        }
    }
}

/// `[http]`: the HTTP API inside `socai serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: String,
    pub request_timeout_ms: u64,
    pub max_page: usize,
    pub max_metric_values: usize,
    pub max_body_bytes: usize,
    pub max_sse_clients: usize,
    pub sse_buffer_events: usize,
    pub max_exports: usize,
    /// 0: 4 per core.
    pub max_concurrent_reads: usize,
    pub tokens: Vec<socai_api::TokenConfig>,
}

impl Default for Http {
    fn default() -> Self {
        let api = socai_api::ApiConfig::default();
        Http {
            listen: "127.0.0.1:8080".into(),
            request_timeout_ms: api.request_timeout.as_millis() as u64,
            max_page: api.max_page,
            max_metric_values: api.max_metric_values,
            max_body_bytes: api.max_body_bytes,
            max_sse_clients: api.max_sse_clients,
            sse_buffer_events: api.sse_buffer_events,
            max_exports: api.max_exports,
            max_concurrent_reads: 0,
            tokens: Vec::new(),
        }
    }
}

/// `[metrics]`: the projection workers behind `socai project`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    pub flush_interval_ms: u64,
    pub kv_interval_ms: u64,
    pub snapshot_interval_s: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            flush_interval_ms: 100,
            kv_interval_ms: 1000,
            snapshot_interval_s: 10,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_event_bytes: 64 * 1024,
            import_batch_events: 1000,
            checkpoint_every_events: 100_000,
            ingest: Ingest::default(),
            metrics: Metrics::default(),
            http: Http::default(),
            dashboard: Dashboard::default(),
            witnesses: Vec::new(),
        }
    }
}

/// `[ingest]`: the ledger writer behind `socai serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ingest {
    pub batch_max_events: usize,
    /// Group commit: a batch short of `batch_max_events` waits up to this long for more events
    /// while the writer is still committing earlier ones (never while it is idle).
    pub linger_ms: u64,
    pub checkpoint_interval_s: u64,
    /// How long a rejection's copy to REJECTED is tried before it is left for the next start.
    pub rejected_retry_s: u64,
    pub max_future_skew_s: i64,
    pub stream_replicas: usize,
    pub duplicate_window_s: u64,
    /// No longer used (the ledger reads EVENTS from its own cursor, without acks); accepted so
    /// that older config files still load.
    pub ack_wait_s: Option<u64>,
    pub consumer: String,
    /// The ledger replicas of this (primary) ledger, by name: an EVENTS copy of a redacted
    /// event is erased only once each has read past it.
    pub replicas: Vec<String>,
}

impl Default for Ingest {
    fn default() -> Self {
        let writer = socai_ingest::WriterConfig::default();
        Ingest {
            batch_max_events: writer.batch_max_events,
            linger_ms: writer.linger.as_millis() as u64,
            checkpoint_interval_s: writer.checkpoint_interval.as_secs(),
            rejected_retry_s: writer.rejected_retry.as_secs(),
            max_future_skew_s: writer.max_future_skew.as_secs(),
            stream_replicas: writer.streams.replicas,
            duplicate_window_s: writer.streams.duplicate_window.as_secs(),
            ack_wait_s: None,
            consumer: writer.streams.consumer,
            replicas: Vec::new(),
        }
    }
}

pub const FILE_NAME: &str = "socai.toml";

impl Config {
    pub fn load(data_dir: &Path) -> anyhow::Result<Config> {
        let path = data_dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let config: Config = toml::from_str(&text).with_context(|| {
                    format!(
                        "{}: invalid config; fix it or remove the file to use defaults",
                        path.display()
                    )
                })?;
                anyhow::ensure!(
                    config.import_batch_events >= 1,
                    "{}: import_batch_events must be at least 1",
                    path.display()
                );
                anyhow::ensure!(
                    config.max_event_bytes >= 256,
                    "{}: max_event_bytes must be at least 256",
                    path.display()
                );
                let i = &config.ingest;
                if i.ack_wait_s.is_some() {
                    tracing::warn!(
                        "{}: [ingest] ack_wait_s is no longer used (the ledger reads EVENTS from its own cursor, without acks); remove it",
                        path.display()
                    );
                }
                anyhow::ensure!(
                    i.batch_max_events >= 1
                        && i.checkpoint_interval_s >= 1
                        && (1..=3600).contains(&i.rejected_retry_s),
                    "{}: [ingest] needs batch_max_events >= 1, checkpoint_interval_s >= 1, rejected_retry_s from 1 to 3600",
                    path.display()
                );
                anyhow::ensure!(
                    matches!(i.stream_replicas, 1 | 3 | 5),
                    "{}: [ingest] stream_replicas must be 1, 3 or 5",
                    path.display()
                );
                anyhow::ensure!(
                    config.metrics.flush_interval_ms >= 1
                        && config.metrics.snapshot_interval_s >= 1,
                    "{}: [metrics] needs flush_interval_ms >= 1 and snapshot_interval_s >= 1",
                    path.display()
                );
                let h = &config.http;
                anyhow::ensure!(
                    h.request_timeout_ms >= 100
                        && h.max_page >= 1
                        && h.max_metric_values >= 1
                        && h.max_body_bytes >= 1024
                        && h.max_sse_clients >= 1
                        && h.sse_buffer_events >= 1
                        && h.max_exports >= 1,
                    "{}: [http] needs request_timeout_ms >= 100, max_body_bytes >= 1024, and every other limit >= 1",
                    path.display()
                );
                socai_api::Tokens::new(h.tokens.clone())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                config
                    .dashboard
                    .api()
                    .check()
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                config
                    .witness_targets(&[])
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn default_text() -> &'static str {
        "# socai configuration; every key is optional\n\
         max_event_bytes = 65536          # larger events are rejected as `oversized`\n\
         import_batch_events = 1000       # events per atomic commit during import\n\
         checkpoint_every_events = 100000 # sign a checkpoint at least this often\n\
         \n\
         [ingest]                         # socai serve\n\
         batch_max_events = 1000          # events per commit\n\
         linger_ms = 5                    # a short batch waits up to this for more while a commit runs\n\
         checkpoint_interval_s = 10       # sign a checkpoint at least this often while events arrive\n\
         rejected_retry_s = 60            # a rejection's copy to REJECTED is tried this long, then left for the next start\n\
         max_future_skew_s = 86400        # occurred_at later than publish time + this is rejected\n\
         stream_replicas = 1              # 3 on a JetStream cluster (R3)\n\
         duplicate_window_s = 120         # JetStream's msg-id dedup window\n\
         consumer = \"ledger\"              # name of the ledger's EVENTS consumers; a replica uses its own\n\
         replicas = []                    # this ledger's replicas (serve --replica-name): erasure waits for them\n\
         \n\
         [metrics]                        # socai project\n\
         flush_interval_ms = 100         # longest a changed value waits before it is published\n\
         kv_interval_ms = 1000            # METRICS bucket writes coalesce the changes of this long\n\
         snapshot_interval_s = 10         # the worker snapshots its state (a delta) at most this often\n\
         \n\
         [http]                           # the HTTP API inside socai serve\n\
         listen = \"127.0.0.1:8080\"        # address (socai serve --http ADDR overrides it)\n\
         request_timeout_ms = 10000       # longest a request may take (not the live stream)\n\
         max_page = 1000                  # entries or checkpoints per page\n\
         max_metric_values = 10000        # metric values per /v1/metrics answer\n\
         max_body_bytes = 16384           # largest request body\n\
         max_sse_clients = 2000           # concurrent /v1/metrics/stream clients\n\
         sse_buffer_events = 10000        # live events kept for clients resuming with Last-Event-ID\n\
         max_exports = 4                  # concurrent /v1/export streams\n\
         max_concurrent_reads = 0         # store reads at once (0: 4 per core); the rest wait\n\
         # Who may read personal data and redact: add one block per auditor (socai token new).\n\
         # [[http.tokens]]\n\
         # name = \"inspector-7\"\n\
         # role = \"auditor\"\n\
         # sha256 = \"<hex SHA-256 of the token>\"\n\
         \n\
         [dashboard]                      # the page at /dashboard (socai serve)\n\
         stale_after_secs = 30            # warn when no live update arrived for this long\n\
         wall_rotate_secs = 20            # wall mode: seconds per province\n\
         # The eight tiles and their targets are built in (each with its source); to change them,\n\
         # list all the tiles you want, in order:\n\
         # [[dashboard.tiles]]\n\
         # metric = \"fully_online_rate\"\n\
         # target = 0.8                   # green at or above (a fraction; score_766: points of 100)\n\
         # amber = 0.6                    # amber at or above, red below\n\
         # source = \"Resolution 57-NQ/TW: 80% fully online\"\n\
         \n\
         # Witnesses that cosign this log's checkpoints (C2SP tlog-witness), one block each:\n\
         # [[witnesses]]\n\
         # url = \"https://witness.example.vn/w1/\"   # its submission prefix (<url>add-checkpoint)\n\
         # vkey = \"witness.example.vn/w1+1a2b3c4d+BA...\" # what `socai witness init` printed\n\
         # (no url: a witness that follows this log itself and posts its cosignatures)\n"
    }

    /// The witnesses of `[[witnesses]]`, then those given as `URL=VKEY` (`serve --witness`).
    pub fn witness_targets(
        &self,
        extra: &[String],
    ) -> anyhow::Result<Vec<socai_witness::WitnessTarget>> {
        let mut targets = Vec::new();
        for (i, w) in self.witnesses.iter().enumerate() {
            let target = socai_witness::WitnessTarget::new(w.url.as_deref(), &w.vkey)
                .map_err(|e| anyhow::anyhow!("[[witnesses]] number {}: {e}", i + 1))?;
            targets.push(target);
        }
        for spec in extra {
            let target = socai_witness::WitnessTarget::parse(spec)
                .map_err(|e| anyhow::anyhow!("--witness {spec:?}: {e}"))?;
            targets.push(target);
        }
        let mut names = std::collections::HashSet::new();
        for t in &targets {
            anyhow::ensure!(
                names.insert(t.verifier.vkey().to_owned()),
                "witness {} is given twice",
                t.verifier.name()
            );
        }
        Ok(targets)
    }

    /// The API's limits and tokens (checked at load).
    pub fn api(&self) -> anyhow::Result<socai_api::ApiConfig> {
        let h = &self.http;
        Ok(socai_api::ApiConfig {
            max_page: h.max_page,
            max_metric_values: h.max_metric_values,
            request_timeout: Duration::from_millis(h.request_timeout_ms),
            max_body_bytes: h.max_body_bytes,
            max_sse_clients: h.max_sse_clients,
            sse_buffer_events: h.sse_buffer_events,
            max_exports: h.max_exports,
            max_concurrent_reads: match h.max_concurrent_reads {
                0 => socai_api::ApiConfig::default().max_concurrent_reads,
                n => n,
            },
            tokens: socai_api::Tokens::new(h.tokens.clone()).map_err(anyhow::Error::msg)?,
            dashboard: self.dashboard.api(),
            fault: test_fault()?,
        })
    }

    pub fn ledger(&self) -> socai_store::LedgerConfig {
        socai_store::LedgerConfig {
            checkpoint_every_events: self.checkpoint_every_events,
        }
    }

    pub fn writer(&self) -> socai_ingest::WriterConfig {
        let i = &self.ingest;
        let mut writer = socai_ingest::WriterConfig {
            batch_max_events: i.batch_max_events,
            linger: Duration::from_millis(i.linger_ms),
            limits: self.limits(),
            max_future_skew: jiff::SignedDuration::from_secs(i.max_future_skew_s),
            checkpoint_interval: Duration::from_secs(i.checkpoint_interval_s),
            rejected_retry: Duration::from_secs(i.rejected_retry_s),
            ..Default::default()
        };
        writer.streams.replicas = i.stream_replicas;
        writer.streams.duplicate_window = Duration::from_secs(i.duplicate_window_s);
        writer.streams.consumer = i.consumer.clone();
        writer.replicas = i.replicas.clone();
        writer
    }

    pub fn limits(&self) -> socai_model::Limits {
        socai_model::Limits {
            max_event_bytes: self.max_event_bytes,
        }
    }
}

/// `SOCAI_TEST_FAULT`: a fault the tests ask the API to inject (never set in production).
fn test_fault() -> anyhow::Result<Option<socai_api::TestFault>> {
    match std::env::var("SOCAI_TEST_FAULT") {
        Err(_) => Ok(None),
        Ok(text) => {
            anyhow::ensure!(
                cfg!(debug_assertions),
                "SOCAI_TEST_FAULT={text:?} is set, but this is a release build: test faults exist only in debug builds (the tests'); unset it"
            );
            let fault = socai_api::TestFault::parse(&text).ok_or_else(|| {
                anyhow::anyhow!(
                    "SOCAI_TEST_FAULT={text:?} is not a known test fault (forged-consistency, foreign-key); unset it"
                )
            })?;
            tracing::warn!(
                ?fault,
                "SOCAI_TEST_FAULT is set: this server serves forged data on purpose (tests only)"
            );
            Ok(Some(fault))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_defaults_are_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), Config::default_text()).unwrap();
        let written = Config::load(dir.path()).unwrap();
        let default = Config::default();
        assert_eq!(format!("{:?}", written), format!("{:?}", default));
        assert_eq!(written.http.listen, "127.0.0.1:8080");
        assert!(
            written
                .api()
                .unwrap()
                .tokens
                .caller(&Default::default())
                .is_ok()
        );
    }

    #[test]
    fn bad_http_settings_say_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        for (toml, says) in [
            ("[http]\nmax_page = 0\n", "[http] needs"),
            (
                "[[http.tokens]]\nname = \"a\"\nrole = \"auditor\"\nsha256 = \"xyz\"\n",
                "socai token new",
            ),
            (
                "[[http.tokens]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"00\"\n",
                "invalid config",
            ),
            ("[http]\nport = 1\n", "invalid config"),
        ] {
            std::fs::write(dir.path().join(FILE_NAME), toml).unwrap();
            let err = format!("{:#}", Config::load(dir.path()).unwrap_err());
            assert!(err.contains(says), "{toml}: {err}");
        }
    }

    #[test]
    fn a_rejected_retry_out_of_range_is_refused_and_one_in_range_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["0", "3601", "18446744073709551615"] {
            std::fs::write(
                dir.path().join(FILE_NAME),
                format!("[ingest]\nrejected_retry_s = {bad}\n"),
            )
            .unwrap();
            let err = format!("{:#}", Config::load(dir.path()).unwrap_err());
            assert!(
                err.contains("rejected_retry_s from 1 to 3600"),
                "{bad}: {err}"
            );
        }
        std::fs::write(
            dir.path().join(FILE_NAME),
            "[ingest]\nrejected_retry_s = 3600\n",
        )
        .unwrap();
        let config = Config::load(dir.path()).unwrap();
        assert_eq!(config.writer().rejected_retry, Duration::from_secs(3600));
    }
}
