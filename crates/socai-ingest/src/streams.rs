//! The JetStream streams: names, configs, creation (and the removal of the durable consumer older
//! socai versions read EVENTS with).
//!
//! The ledger's account is the only one with JetStream (`deploy/nats/users.conf`), so the
//! ledger also creates the METRICS bucket the projection workers write into. Every stream
//! allows direct gets: readers and workers in other accounts read them that way, without a
//! consumer (they may not create one: nats-server#8274).

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use socai_wire::kv::{METRICS_BUCKET, METRICS_STREAM, kv_subject};
use socai_wire::stream::{CHECKPOINTS, COMMITTED, EVENTS, REJECTED};
use socai_wire::subject::{
    CHECKPOINT_SUBJECT, COMMITTED_SUBJECT, EVENTS_PREFIX, REDACTIONS_SUBJECT, REJECTED_PREFIX,
    SYNC_PREFIX,
};

use crate::IngestError;

/// Room kept in a message for the headers of its REJECTED copy (they are at most ~4 KiB).
pub const REJECTION_HEADROOM_BYTES: i32 = 64 * 1024;

/// Revisions the METRICS bucket keeps per key: what `socai audit metrics --at SIZE` can look
/// back on (the same as `socai_projector::METRICS_HISTORY`).
pub const METRICS_HISTORY: i64 = 64;

/// Largest metric value stored in METRICS.
pub const METRICS_MAX_VALUE_BYTES: i32 = 64 * 1024;

/// Stream and consumer settings (socai.toml `[ingest]`).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// 1 on a single node, 3 on a production cluster (R3).
    pub replicas: usize,
    /// JetStream drops a message whose Nats-Msg-Id it saw within this window.
    pub duplicate_window: Duration,
    /// Largest message the EVENTS stream stores; bigger ones are refused to the publisher (at most
    /// the server's max_payload minus [`REJECTION_HEADROOM_BYTES`], so every stored message fits
    /// on REJECTED). The ledger's own `max_event_bytes` (smaller) sends events between the two to
    /// REJECTED as `oversized`.
    pub max_msg_bytes: i32,
    /// EVENTS keeps messages this long (the ledger must consume them before).
    pub events_max_age: Duration,
    /// EVENTS refuses new messages beyond this many bytes (discard new: never drops unconsumed
    /// events); -1 = no limit.
    pub events_max_bytes: i64,
    /// REJECTED keeps messages this long.
    pub rejected_max_age: Duration,
    /// Prefix of the names of the ledger's (ephemeral, ordered) consumers on EVENTS; a ledger
    /// replica on another machine uses its own. Also the name of the durable consumer older
    /// socai versions used, removed at start.
    pub consumer: String,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_msg_bytes: 1024 * 1024 - REJECTION_HEADROOM_BYTES,
            events_max_age: Duration::from_secs(30 * 24 * 3600),
            events_max_bytes: -1,
            rejected_max_age: Duration::from_secs(365 * 24 * 3600),
            consumer: "ledger".into(),
        }
    }
}

impl StreamSettings {
    pub fn events(&self) -> stream::Config {
        stream::Config {
            name: EVENTS.into(),
            description: Some(
                "agency dossier events, dvc.events.<agency>.<type>, portal sync bodies, dvc.sync.<agency>, and the ledger's redaction requests, dvc.ledger.redactions"
                    .into(),
            ),
            subjects: vec![
                format!("{EVENTS_PREFIX}.*.>"),
                format!("{SYNC_PREFIX}.*"),
                REDACTIONS_SUBJECT.into(),
            ],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::New,
            max_age: self.events_max_age,
            max_bytes: self.events_max_bytes,
            max_message_size: self.max_msg_bytes,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            allow_direct: true,
            ..Default::default()
        }
    }

    pub fn rejected(&self) -> stream::Config {
        stream::Config {
            name: REJECTED.into(),
            description: Some(
                "rejected events: original bytes, Socai-Error-* headers name code, field, reason"
                    .into(),
            ),
            subjects: vec![format!("{REJECTED_PREFIX}.>")],
            storage: stream::StorageType::File,
            max_age: self.rejected_max_age,
            // Room for the largest original plus its headers.
            max_message_size: self.max_msg_bytes.saturating_add(REJECTION_HEADROOM_BYTES),
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            allow_direct: true,
            ..Default::default()
        }
    }

    pub fn committed(&self) -> stream::Config {
        stream::Config {
            name: COMMITTED.into(),
            description: Some(
                "committed ledger entries in seq order: one entry bundle per commit (Socai-Seq, Socai-Count)".into(),
            ),
            subjects: vec![COMMITTED_SUBJECT.into()],
            storage: stream::StorageType::File,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            allow_direct: true,
            ..Default::default()
        }
    }

    pub fn checkpoints(&self) -> stream::Config {
        stream::Config {
            name: CHECKPOINTS.into(),
            description: Some("signed checkpoints (C2SP tlog-checkpoint notes)".into()),
            subjects: vec![CHECKPOINT_SUBJECT.into()],
            storage: stream::StorageType::File,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// The METRICS bucket's stream as async-nats makes a KV bucket (history per subject,
    /// rollups, direct gets), plus asynchronous persistence: its values are derived from the
    /// ledger and can be republished at any time, so it does not wait for an fsync per value
    /// (`persist_mode: async`, nats-server 2.12+); under `sync_interval: always` (a deployment's choice) a
    /// per-value fsync would starve the ledger's own streams of disk.
    pub fn metrics(&self) -> stream::Config {
        stream::Config {
            name: METRICS_STREAM.into(),
            description: Some(
                "socai: latest value of every (metric, scope, window); keys <metric>.<scope>.<window>"
                    .into(),
            ),
            subjects: vec![kv_subject(">")],
            max_messages_per_subject: METRICS_HISTORY,
            max_message_size: METRICS_MAX_VALUE_BYTES,
            storage: stream::StorageType::File,
            // Nobody outside the ledger's account may wipe the history `socai audit metrics`
            // reads (a projector's put with `Nats-Rollup: all` would purge every key).
            allow_rollup: false,
            deny_delete: true,
            allow_direct: true,
            num_replicas: self.replicas.max(1),
            discard: stream::DiscardPolicy::New,
            persist_mode: Some(stream::PersistenceMode::Async),
            ..Default::default()
        }
    }
}

/// Creates the four streams, or updates their configs to these settings; then creates the
/// METRICS bucket if it is missing.
pub async fn ensure_streams(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<(), IngestError> {
    if let Some(cluster) = js.client().server_info().cluster
        && settings.replicas < 3
    {
        return Err(IngestError::Nats(format!(
            "nats-server is part of cluster {cluster:?} but streams would have {} replica(s): set `[ingest] stream_replicas = 3` in socai.toml so a node's loss loses nothing",
            settings.replicas
        )));
    }
    // A REJECTED copy carries the original plus headers: it must fit the server's max_payload.
    let max_payload = i32::try_from(js.client().server_info().max_payload).unwrap_or(i32::MAX);
    let mut settings = settings.clone();
    // (0: not known yet, the client has not heard from the server.)
    if max_payload > 0 && settings.max_msg_bytes > max_payload - REJECTION_HEADROOM_BYTES {
        settings.max_msg_bytes = (max_payload - REJECTION_HEADROOM_BYTES).max(4096);
        tracing::info!(
            max_payload,
            events_max_msg_bytes = settings.max_msg_bytes,
            "EVENTS stores messages up to the server's max_payload minus room for rejection headers"
        );
    }
    for config in [
        settings.events(),
        settings.rejected(),
        settings.committed(),
        settings.checkpoints(),
    ] {
        let name = config.name.clone();
        js.create_or_update_stream(config).await.map_err(|e| {
            let reason = format!("cannot create or update stream {name}: {e}");
            if unavailable(&e.kind()) {
                IngestError::NatsUnavailable(reason)
            } else {
                IngestError::Nats(reason)
            }
        })?;
    }
    ensure_metrics_bucket(js, &settings).await
}

/// Whether a stream request failed because JetStream is not answering yet (no reply in time, no
/// responders on a node that has just come back, a cluster without a meta leader or without
/// enough peers up), rather than because of what was asked. "Insufficient resources" (a stream
/// larger than the server allows) is not among them. No responders can also mean JetStream off
/// for this account, and a timeout can hide a permissions violation: the retries are bounded
/// and each one is logged with its reason.
fn unavailable(kind: &jetstream::context::CreateStreamErrorKind) -> bool {
    use jetstream::ErrorCode;
    use jetstream::context::CreateStreamErrorKind as K;
    /// No suitable peers for placement (a node down).
    const NO_SUITABLE_PEERS: ErrorCode = ErrorCode(10005);
    match kind {
        K::TimedOut | K::JetStreamUnavailable => true,
        K::JetStream(e) => matches!(
            e.error_code(),
            ErrorCode::CLUSTER_NOT_AVAILABLE
                | ErrorCode::CLUSTER_PEER_NOT_MEMBER
                | NO_SUITABLE_PEERS
        ),
        _ => false,
    }
}

/// Creates the METRICS bucket (stream KV_METRICS) if missing; the projection workers (in an
/// account without JetStream) write into it and cannot create it.
async fn ensure_metrics_bucket(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<(), IngestError> {
    match js.get_stream(METRICS_STREAM).await {
        Ok(mut stream) => {
            if let Ok(info) = stream.info().await
                && info.config.allow_rollup
            {
                let config = stream::Config {
                    allow_rollup: false,
                    ..info.config.clone()
                };
                if let Err(e) = js.update_stream(config).await {
                    tracing::warn!(cause = %e, "cannot forbid rollups on {METRICS_STREAM} (made by an older socai): a projection worker could purge its history");
                }
            }
            if let Ok(info) = stream.info().await
                && info.config.persist_mode != Some(stream::PersistenceMode::Async)
            {
                tracing::warn!(
                    "the {METRICS_STREAM} stream waits for an fsync per value (it was made without persist_mode async); under sync_interval: always that slows the ledger: stop the projection workers, delete it (`nats stream rm {METRICS_STREAM}`; its history goes with it), restart `socai serve` (it recreates it) and the workers (they publish every value again)"
                );
            }
            return Ok(());
        }
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) => {}
        Err(e) => {
            let reason = format!("cannot read stream {METRICS_STREAM}: {e}");
            // No answer in time, or a cluster without a meta leader yet.
            let unavailable = match e.kind() {
                jetstream::context::GetStreamErrorKind::Request => true,
                jetstream::context::GetStreamErrorKind::JetStream(j) => {
                    j.error_code() == jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE
                }
                _ => false,
            };
            return Err(if unavailable {
                IngestError::NatsUnavailable(reason)
            } else {
                IngestError::Nats(reason)
            });
        }
    }
    if let Err(e) = js.create_stream(settings.metrics()).await {
        if unavailable(&e.kind()) {
            return Err(IngestError::NatsUnavailable(format!(
                "cannot create the KV bucket {METRICS_BUCKET} (stream {METRICS_STREAM}): {e}"
            )));
        }
        tracing::warn!(cause = %e, "creating {METRICS_STREAM} with persist_mode async failed (nats-server older than 2.12?); creating a plain bucket, whose values wait for the server's sync policy");
        let plain = stream::Config {
            persist_mode: None,
            ..settings.metrics()
        };
        js.create_stream(plain).await.map_err(|e| {
            IngestError::Nats(format!(
                "cannot create the KV bucket {METRICS_BUCKET} (stream {METRICS_STREAM}): {e}"
            ))
        })?;
    }
    Ok(())
}

/// Deletes the durable consumer that socai before receipts used on EVENTS (named like
/// `[ingest] consumer`): the ledger now reads with an ordered consumer from its own cursor, and
/// a durable consumer left behind would keep its pending state on the server forever.
pub async fn remove_legacy_consumer(js: &jetstream::Context, settings: &StreamSettings) {
    let Ok(stream) = js.get_stream_no_info(EVENTS).await else {
        return;
    };
    match stream.consumer_info(&settings.consumer).await {
        Ok(info) if info.config.durable_name.is_some() => {
            match stream.delete_consumer(&settings.consumer).await {
                Ok(_) => tracing::info!(
                    consumer = %settings.consumer,
                    "removed the durable EVENTS consumer of an older socai (the ledger reads from its own cursor now)"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, consumer = %settings.consumer, "cannot remove the durable EVENTS consumer of an older socai; remove it by hand (`nats consumer rm EVENTS {}`)", settings.consumer)
                }
            }
        }
        _ => {}
    }
}
