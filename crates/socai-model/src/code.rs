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
    /// A portal sync body (or one of its dossiers) that cannot be turned into events: the path
    /// and reason name the dossier and the field.
    UnmappableSync,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::MalformedJson,
        ErrorCode::SchemaViolation,
        ErrorCode::UnknownType,
        ErrorCode::ReservedType,
        ErrorCode::Oversized,
        ErrorCode::Conflict,
        ErrorCode::SubjectMismatch,
        ErrorCode::FutureTimestamp,
        ErrorCode::UnmappableSync,
    ];

    /// snake_case name, e.g. "schema_violation".
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::SchemaViolation => "schema_violation",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::ReservedType => "reserved_type",
            ErrorCode::Oversized => "oversized",
            ErrorCode::Conflict => "conflict",
            ErrorCode::SubjectMismatch => "subject_mismatch",
            ErrorCode::FutureTimestamp => "future_timestamp",
            ErrorCode::UnmappableSync => "unmappable_sync",
        }
    }

    /// The code named by `name` (the inverse of [`ErrorCode::as_str`]), e.g. read back from a
    /// header of the REJECTED stream.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == name)
    }

    /// Process exit status for a CLI command that failed with this code: 10 + position in ALL.
    /// (0 success, 1 generic failure, 2 usage, 3 verification failure are reserved.)
    pub fn exit_code(self) -> i32 {
        let position = ErrorCode::ALL
            .iter()
            .position(|code| *code == self)
            .expect("every code is listed in ErrorCode::ALL");
        10 + position as i32
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn names_match_serde_and_round_trip() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(ErrorCode::from_name(code.as_str()), Some(code));
            assert_eq!(code.to_string(), code.as_str());
        }
        assert_eq!(ErrorCode::from_name("nope"), None);
    }

    #[test]
    fn exit_codes_are_distinct_and_clear_of_reserved_ones() {
        let codes: Vec<i32> = ErrorCode::ALL.iter().map(|c| c.exit_code()).collect();
        assert_eq!(codes, (10..19).collect::<Vec<i32>>());
        assert_eq!(ErrorCode::MalformedJson.exit_code(), 10);
        assert_eq!(ErrorCode::FutureTimestamp.exit_code(), 17);
        assert_eq!(ErrorCode::UnmappableSync.exit_code(), 18);
    }
}
