//! socai-client: what an agency system needs to publish events to the ledger.
//!
//! - [`events`]: typed builders for every event type of the catalogue;
//! - [`subject`]: the NATS subjects of the ledger (from `socai-wire`);
//! - [`publisher`]: publish with `Nats-Msg-Id` = event id, wait for the JetStream PubAck, retry
//!   transient failures with backoff;
//! - [`receipts`]: publish and keep every event until the ledger's signed receipt names it
//!   (re-publishing what has no receipt in time): an event is safe when its receipt arrives;
//! - [`js`]: the JetStream context for the caller's account ([`jetstream`]: the ledger's API
//!   imported under a prefix in the accounts without JetStream) and reading streams by batched
//!   direct gets, without a consumer.
//!
//! Knows nothing of the ledger's storage.

pub mod events;
pub mod js;
pub mod publisher;
pub mod receipts;
pub use js::jetstream;
/// The NATS subjects of the ledger (the wire contract, re-exported for agencies).
pub use socai_wire::subject;
