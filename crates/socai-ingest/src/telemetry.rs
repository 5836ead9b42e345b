//! What the ledger service tells Prometheus: events committed, rejected by code and duplicated,
//! commit latency and batch size, consumer lag, checkpoint age, the writer's state. The binary
//! registers it; the HTTP API serves it at `/metrics`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::{Counters, WriterStatus};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CodeLabel {
    /// The rejection code (`socai_model::ErrorCode::as_str`).
    pub code: String,
}

/// The distributions and labelled counts the writer records.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub rejected: Family<CodeLabel, Counter>,
    /// Validate + append + fsync of one batch.
    pub commit_seconds: Histogram,
    /// Events per committed batch.
    pub batch_events: Histogram,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            rejected: Family::default(),
            // 0.5 ms .. ~16 s
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            // 1 .. 2048 events
            batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
        }
    }
}

/// Registers the writer's figures under `socai_`.
pub fn register(counters: &Arc<Counters>, registry: &mut Registry) {
    let t = &counters.telemetry;
    registry.register(
        "socai_events_rejected",
        "Events copied to REJECTED, by rejection code",
        t.rejected.clone(),
    );
    registry.register(
        "socai_commit_latency_seconds",
        "Time to validate, append and fsync one batch",
        t.commit_seconds.clone(),
    );
    registry.register(
        "socai_batch_size_events",
        "Events per committed batch",
        t.batch_events.clone(),
    );
    registry.register_collector(Box::new(CountersCollector(counters.clone())));
}

/// The running totals of [`Counters`], read at each scrape.
#[derive(Debug)]
struct CountersCollector(Arc<Counters>);

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReplicaLabel {
    replica: String,
}

/// One gauge per replica (on a primary), labelled with its name.
fn replica_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(String, f64)],
) -> Result<(), std::fmt::Error> {
    if values.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (replica, value) in values {
        let label = ReplicaLabel {
            replica: replica.clone(),
        };
        ConstGauge::new(*value).encode(family.encode_family(&label)?)?;
    }
    Ok(())
}

impl CountersCollector {
    /// A replica's own comparison, or (on a primary) what each replica reported.
    fn encode_replicas(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let board = &self.0.replicas;
        if let Some(own) = board.own.lock().ok().and_then(|o| o.clone()) {
            gauge(
                e,
                "socai_replica_agreed_size",
                "Largest size of a primary checkpoint whose root this replica has the same",
                own.agreed_size as f64,
            )?;
            gauge(
                e,
                "socai_replica_primary_size",
                "Largest size of a checkpoint the primary published",
                own.primary_size as f64,
            )?;
            gauge(
                e,
                "socai_replica_checked_checkpoints",
                "Checkpoints of the primary compared with this replica since it started",
                own.checked as f64,
            )?;
            gauge(
                e,
                "socai_replica_diverged_size",
                "First size at which this replica differs from the primary (0: none; anything else needs an operator, see /readyz)",
                own.diverged_at.unwrap_or(0) as f64,
            )?;
        }
        let reports: Vec<_> = board
            .reports
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        let each = |f: &dyn Fn(&crate::ReplicaReport) -> f64| -> Vec<(String, f64)> {
            reports.iter().map(|r| (r.replica.clone(), f(r))).collect()
        };
        replica_gauge(
            e,
            "socai_replica_events_cursor",
            "The EVENTS cursor each ledger replica last reported having stored",
            &each(&|r| r.events_cursor as f64),
        )?;
        replica_gauge(
            e,
            "socai_replica_entries",
            "Entries in each ledger replica, as it last reported",
            &each(&|r| r.size as f64),
        )?;
        replica_gauge(
            e,
            "socai_replica_reported_diverged_size",
            "First size at which a replica found itself different from this ledger (0: none)",
            &each(&|r| r.diverged_at.unwrap_or(0) as f64),
        )
    }
}

impl Collector for CountersCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_replicas(&mut e)?;
        let c = &self.0;
        counter(
            &mut e,
            "socai_events_committed",
            "Events newly committed since start",
            c.committed.load(Relaxed),
        )?;
        counter(
            &mut e,
            "socai_events_duplicate",
            "Events already in the ledger (same id, same content), acknowledged again",
            c.duplicates.load(Relaxed),
        )?;
        counter(
            &mut e,
            "socai_receipts_sent",
            "Receipts sent to agencies (one per publishing agency per commit)",
            c.receipts.load(Relaxed),
        )?;
        counter(
            &mut e,
            "socai_rejection_retries",
            "Copies to REJECTED that failed and were tried again",
            c.rejection_retries.load(Relaxed),
        )?;
        counter(
            &mut e,
            "socai_rejections_unstored",
            "Rejections REJECTED did not take within [ingest] rejected_retry_s, left for the next start (any value above 0 needs an operator: check REJECTED and nats-server, then restart socai serve)",
            c.rejections_unstored.load(Relaxed),
        )?;
        counter(
            &mut e,
            "socai_events_lost",
            "EVENTS messages gone from the stream before the ledger read them (data-loss alarm: any value above 0 needs an operator)",
            c.events_lost.load(Relaxed),
        )?;
        counter(
            &mut e,
            "socai_events_rewinds",
            "Times EVENTS was found rewound: nats-server lost messages it had acknowledged (the ledger read again from the last message's time)",
            c.events_rewinds.load(Relaxed),
        )?;
        gauge(
            &mut e,
            "socai_data_loss_alarm",
            "1 once a data-loss or rewind alarm was raised since the ledger started (see /readyz and the log), else 0",
            f64::from(u8::from(
                c.data_loss.lock().map(|a| a.is_some()).unwrap_or(true),
            )),
        )?;
        counter(
            &mut e,
            "socai_commits",
            "Batches committed (one fsync each)",
            c.batches.load(Relaxed),
        )?;
        gauge(
            &mut e,
            "socai_ledger_entries",
            "Entries in the ledger (durable)",
            c.head_size.load(Relaxed) as f64,
        )?;
        gauge(
            &mut e,
            "socai_committed_published_entries",
            "COMMITTED holds every entry below this seq",
            c.published.load(Relaxed) as f64,
        )?;
        gauge(
            &mut e,
            "socai_committed_stalled",
            "1 while publishing to COMMITTED waits for an operator (messages were deleted from it: see /readyz and the log), else 0",
            f64::from(u8::from(
                c.committed_stalled
                    .lock()
                    .map(|a| a.is_some())
                    .unwrap_or(true),
            )),
        )?;
        gauge(
            &mut e,
            "socai_checkpoint_size",
            "Tree size of the latest signed checkpoint",
            c.checkpoint_size.load(Relaxed) as f64,
        )?;
        let signed_ms = c.checkpoint_signed_ms.load(Relaxed);
        let age = if signed_ms == 0 {
            0.0
        } else {
            (now_ms().saturating_sub(signed_ms)) as f64 / 1000.0
        };
        gauge(
            &mut e,
            "socai_checkpoint_age_seconds",
            "Seconds since the latest checkpoint was signed (or since this process started, for one signed before)",
            age,
        )?;
        gauge(
            &mut e,
            "socai_events_processed_seq",
            "EVENTS stream seq of the last message the writer finished (committed, duplicate or rejected)",
            c.events_cursor.load(Relaxed) as f64,
        )?;
        gauge(
            &mut e,
            "socai_consumer_lag_events",
            "EVENTS messages not yet processed by the writer: the stream's last seq minus the writer's cursor",
            c.consumer_lag.load(Relaxed) as f64,
        )?;
        gauge(
            &mut e,
            "socai_writer_up",
            "1 while the writer consumes EVENTS, 0 while it starts, waits or has stopped",
            f64::from(u8::from(c.status() == WriterStatus::Running)),
        )?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (for ages only; nothing in the ledger reads it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
