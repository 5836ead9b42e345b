//! Error codes: the same code names a rejection on the REJECTED stream, in HTTP bodies and in the
//! CLI's exit status.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not UTF-8 / not JSON / not an object.
    MalformedJson,
    /// Violates the envelope or per-type JSON Schema (path + rule given).
    SchemaViolation,
    /// `type` is not in the catalogue.
    UnknownType,
    /// `type` is reserved for the ledger itself (e.g. ledger.redacted).
    ReservedType,
    /// Larger than the configured `max_event_bytes`.
    Oversized,
    /// Same id already committed with different content.
    Conflict,
    /// Subject's agency/type differs from the event's.
    SubjectMismatch,
    /// occurred_at too far in the future.
    FutureTimestamp,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::MalformedJson,
        ErrorCode::SchemaViolation,
        ErrorCode::UnknownType,
        ErrorCode::ReservedType,
        ErrorCode::Oversized,
        ErrorCode::Conflict,
        ErrorCode::SubjectMismatch,
        ErrorCode::FutureTimestamp,
    ];

    /// snake_case name, e.g. "schema_violation".
    pub fn as_str(self) -> &'static str {
        todo!()
    }

    /// Process exit status for a CLI command that failed with this code: 10 + position in ALL.
    /// (0 success, 1 generic failure, 2 usage, 3 verification failure are reserved.)
    pub fn exit_code(self) -> i32 {
        todo!()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
