//! socai-wire: the wire contract of Sổ Cái on NATS, in one place. Every crate that publishes,
//! consumes or reads anything on NATS names it through this crate: subjects, JetStream stream
//! and KV bucket names, message headers, KV keys.
//!
//! ```text
//! dvc.events.<agency token>.<type>    agencies → stream EVENTS          (Nats-Msg-Id = event id)
//! dvc.rejected.<agency token>.<type>  ledger → stream REJECTED          (H_CODE, H_PATH, H_REASON, ...)
//! dvc.ledger.committed                ledger → stream COMMITTED         (one message per commit: an
//!                                     entry bundle of H_COUNT entries from H_SEQ;
//!                                     msg-id = H_SEQ@<the last seq before it>)
//! dvc.receipts.<agency token>         ledger → each agency, after the fsync (signed receipts)
//! dvc.ledger.checkpoint               ledger → stream CHECKPOINTS       (H_TREE_SIZE; msg-id =
//!                                     checkpoint-<H_TREE_SIZE>@<the last seq seen>, then
//!                                     -<seq of its purged first copy> if one was answered)
//! dvc.metrics.<metric>.<scope token>  projection workers → live subscribers
//! dvc.workers.<name>                   each projection worker's heartbeat (every 5 s)
//! $KV.METRICS.<metric>.<scope token>.<window>   KV bucket METRICS (stream KV_METRICS)
//! $KV.METRICS._workers.<name>         each worker's last flush (its mark)
//! ```
//!
//! No dependencies: agencies, dashboards and auditors can link it alone.

pub mod subject;

/// JetStream streams owned by the ledger.
pub mod stream {
    /// Agencies' events, `dvc.events.<agency token>.<type>`.
    pub const EVENTS: &str = "EVENTS";
    /// Rejected events with their reasons, `dvc.rejected.<agency token>.<type>`.
    pub const REJECTED: &str = "REJECTED";
    /// Committed entries in seq order, `dvc.ledger.committed`.
    pub const COMMITTED: &str = "COMMITTED";
    /// Signed checkpoints, `dvc.ledger.checkpoint`.
    pub const CHECKPOINTS: &str = "CHECKPOINTS";
}

/// Message headers socai sets (beyond NATS's own `Nats-Msg-Id`).
pub mod header {
    /// REJECTED: the rejection code (`socai_model::ErrorCode::as_str`).
    pub const CODE: &str = "Socai-Error-Code";
    /// REJECTED: the JSON pointer of the offending field ("" for the whole event).
    pub const PATH: &str = "Socai-Error-Path";
    /// REJECTED: why, in words.
    pub const REASON: &str = "Socai-Error-Reason";
    /// REJECTED: the subject the event arrived on.
    pub const SUBJECT: &str = "Socai-Subject";
    /// REJECTED: the EVENTS stream seq of the original.
    pub const STREAM_SEQ: &str = "Socai-Stream-Seq";
    /// REJECTED: the event id, when the payload has one.
    pub const EVENT_ID: &str = "Socai-Event-Id";
    /// REJECTED: when JetStream stored the original (RFC 3339).
    pub const PUBLISHED_AT: &str = "Socai-Published-At";
    /// COMMITTED: the seq of the message's first entry.
    pub const SEQ: &str = "Socai-Seq";
    /// COMMITTED: how many entries the message carries (seqs `SEQ .. SEQ + COUNT`).
    pub const COUNT: &str = "Socai-Count";
    /// CHECKPOINTS: the checkpoint's tree size.
    pub const TREE_SIZE: &str = "Socai-Tree-Size";
}

/// The METRICS key-value bucket the projection workers keep.
pub mod kv {
    /// The bucket: latest value of every (metric, scope, window).
    pub const METRICS_BUCKET: &str = "METRICS";
    /// Its JetStream stream.
    pub const METRICS_STREAM: &str = "KV_METRICS";
    /// Keys `_workers.<name>`: each worker's last flush (tree size and root).
    pub const WORKER_KEY_PREFIX: &str = "_workers";

    /// The subject under which the bucket stores `key`.
    pub fn kv_subject(key: &str) -> String {
        format!("$KV.{METRICS_BUCKET}.{key}")
    }

    /// The key of a value: `<metric>.<scope token>.<window>`.
    pub fn value_key(metric: &str, scope_token: &str, window: &str) -> String {
        format!("{metric}.{scope_token}.{window}")
    }

    /// The key of a worker's mark: `_workers.<name>`.
    pub fn worker_key(name: &str) -> String {
        format!("{WORKER_KEY_PREFIX}.{name}")
    }

    /// The key a `$KV.METRICS.<key>` subject names.
    pub fn key_of_subject(subject: &str) -> Option<&str> {
        subject
            .strip_prefix("$KV.")?
            .strip_prefix(METRICS_BUCKET)?
            .strip_prefix('.')
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kv_keys_and_subjects() {
        let key = super::kv::value_key("on_time_rate", "province.H01", "month.2026-03");
        assert_eq!(key, "on_time_rate.province.H01.month.2026-03");
        let subject = super::kv::kv_subject(&key);
        assert_eq!(
            subject,
            "$KV.METRICS.on_time_rate.province.H01.month.2026-03"
        );
        assert_eq!(super::kv::key_of_subject(&subject), Some(key.as_str()));
        assert_eq!(super::kv::key_of_subject("$KV.OTHER.x"), None);
        assert_eq!(super::kv::worker_key("p0"), "_workers.p0");
    }
}
