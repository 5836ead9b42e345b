//! The ledger record (DESIGN.md "The ledger record and its hashes") and its canonical bytes.
//!
//! Entry `n` is the RFC 8785 (JCS) canonical JSON of
//! `{"v":1,"seq":n,"prev":"<hex>","recorded_at":"<RFC 3339 UTC>","event":{...},"personal_commitment":"<hex>"}`
//! (`personal_commitment` only when the event carried `personal`).

use crate::hash::Hash;
use serde_json::Value;

/// Format version of entries written by this code.
pub const ENTRY_VERSION: u64 = 1;

/// A decoded ledger entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub prev: Hash,
    /// RFC 3339 UTC timestamp, kept as the exact string that was hashed.
    pub recorded_at: String,
    /// `{id,type,agency,procedure,dossier,occurred_at,schema,data}`; exactly these keys.
    pub event: Value,
    pub personal_commitment: Option<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry is not valid JSON: {0}")]
    Json(String),
    /// A required field is missing or has the wrong type/format. `field` is a JSON path like `/prev`.
    #[error("entry field {field}: {reason}")]
    Field { field: String, reason: String },
    #[error("entry has unsupported version {0} (this build reads v1)")]
    Version(u64),
    #[error("entry bytes are not RFC 8785 canonical JSON")]
    NotCanonical,
}

impl Entry {
    /// The canonical (JCS) bytes: the exact bytes that are stored and hashed.
    pub fn to_canonical(&self) -> Vec<u8> {
        todo!()
    }

    /// Parses and checks structure: valid JSON object with exactly the keys v, seq, prev,
    /// recorded_at, event, optional personal_commitment; v == 1; hashes are 64 hex; event is an
    /// object with string id/type/agency/procedure/dossier/occurred_at, integer schema, object data.
    /// Does not check canonical form (see [`Entry::decode_canonical`]).
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        todo!()
    }

    /// [`Entry::decode`] plus: re-encoding gives back exactly `bytes`.
    pub fn decode_canonical(bytes: &[u8]) -> Result<Entry, EntryError> {
        todo!()
    }

    /// The event id (`event.id`). Panics never: returns "" if absent (decode guarantees presence).
    pub fn event_id(&self) -> &str {
        todo!()
    }

    /// `event.type`, `event.dossier`: same conventions as [`Entry::event_id`].
    pub fn event_type(&self) -> &str {
        todo!()
    }
    pub fn dossier(&self) -> &str {
        todo!()
    }
}

/// RFC 8785 canonical JSON of any value.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    todo!()
}

/// The per-event salt: the first 16 bytes of HMAC-SHA-256(salt_key, event_id).
pub fn personal_salt(salt_key: &[u8], event_id: &str) -> [u8; 16] {
    todo!()
}

/// `SHA-256(salt ‖ JCS(personal))`.
pub fn personal_commitment(salt: &[u8; 16], personal: &Value) -> Hash {
    todo!()
}

/// Checks disclosed personal data against an entry's commitment.
pub fn check_personal(commitment: &Hash, salt: &[u8; 16], personal: &Value) -> bool {
    todo!()
}
