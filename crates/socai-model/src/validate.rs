//! Validation against the embedded JSON Schemas (envelope + one schema per event type).

use crate::code::ErrorCode;
use crate::event::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events larger than this (raw bytes) are rejected as `oversized`.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_event_bytes: 64 * 1024 }
    }
}

/// Why an event was rejected: a code, where (a JSON pointer such as "/data/channel", "" for the
/// whole document) and why (the violated rule, with the offending value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} at {}: {reason}", if path.is_empty() { "/" } else { path.as_str() })]
pub struct Rejection {
    pub code: ErrorCode,
    pub path: String,
    pub reason: String,
}

pub struct Validator {/* private: compiled schemas */}

impl Validator {
    pub fn new(limits: Limits) -> Validator {
        todo!()
    }

    pub fn limits(&self) -> Limits {
        todo!()
    }

    /// Size limit, JSON syntax, envelope schema, known/reserved type, per-type schema,
    /// occurred_at is RFC 3339 with an offset. Returns the first violation.
    pub fn validate(&self, bytes: &[u8]) -> Result<Event, Rejection> {
        todo!()
    }
}
