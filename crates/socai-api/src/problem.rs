//! Errors as RFC 9457 problem details (`application/problem+json`): what went wrong, which
//! parameter, and what to do. One place maps ledger errors to HTTP statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use socai_store::LedgerError;
use socai_store::reader::ReceiptProofError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A failed request.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Machine-readable kind, also the last part of the problem `type`.
    pub code: &'static str,
    pub detail: String,
    /// The query or path parameter (or body field) at fault.
    pub parameter: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            parameter: None,
        }
    }

    /// 400: `parameter` is wrong, and why.
    pub fn bad_param(parameter: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            parameter: Some(parameter.to_owned()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", detail)
        }
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }

    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    pub fn with_param(mut self, parameter: &str) -> ApiError {
        self.parameter = Some(parameter.to_owned());
        self
    }

    fn title(&self) -> &'static str {
        match self.code {
            "invalid_parameter" => "A request parameter is invalid",
            "not_found" => "Not found",
            "no_checkpoint" => "No signed checkpoint",
            "not_covered" => "Not covered by a signed checkpoint",
            "nothing_to_redact" => "Nothing to redact",
            "receipt_mismatch" => "The receipt does not match this ledger",
            "unauthorized" => "Authentication required",
            "forbidden" => "Not allowed for this token",
            "unknown_witness" => "Not a witness of this log",
            "bad_cosignature" => "The cosignature does not verify",
            "too_many" => "Too many results",
            "too_busy" => "Too many clients",
            "unavailable" => "Temporarily unavailable",
            "timeout" => "Request took too long",
            "payload_too_large" => "Request body too large",
            "method_not_allowed" => "Method not allowed",
            _ => "Internal error",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.detail)
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match &e {
            LedgerError::UnknownId(_) | LedgerError::UnknownSeq { .. } => {
                ApiError::not_found(e.to_string())
            }
            LedgerError::NoCheckpointAt(_) => ApiError::not_found(e.to_string()),
            LedgerError::NoCheckpoint => ApiError::new(
                StatusCode::NOT_FOUND,
                "no_checkpoint",
                "the ledger has no signed checkpoint yet; one is signed within seconds of the first events",
            ),
            LedgerError::NotCovered {
                seq,
                checkpoint_size,
            } => ApiError::new(
                StatusCode::CONFLICT,
                "not_covered",
                format!(
                    "seq {seq} is not covered by a signed checkpoint yet (the latest covers {checkpoint_size} entries); the ledger signs one within seconds: retry then"
                ),
            ),
            LedgerError::Range(msg) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", msg.clone())
            }
            LedgerError::NothingToRedact { .. } => {
                ApiError::new(StatusCode::CONFLICT, "nothing_to_redact", e.to_string())
            }
            LedgerError::AmbiguousId { .. } => {
                ApiError::new(StatusCode::CONFLICT, "ambiguous_id", e.to_string())
            }
            LedgerError::InvalidRedaction(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_redaction", e.to_string())
            }
            LedgerError::Unavailable(msg) => ApiError::unavailable(msg.clone()),
            _ => {
                tracing::error!(cause = %e, "ledger read failed");
                ApiError::internal(format!("the ledger failed: {e}"))
            }
        }
    }
}

impl From<ReceiptProofError> for ApiError {
    fn from(e: ReceiptProofError) -> ApiError {
        match e {
            ReceiptProofError::Choice(_) | ReceiptProofError::Rejected { .. } => {
                ApiError::bad_param("id", e.to_string())
            }
            ReceiptProofError::NotThisLog { .. } => {
                ApiError::new(StatusCode::CONFLICT, "receipt_mismatch", e.to_string())
            }
            ReceiptProofError::Ledger(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "type": format!("urn:socai:problem:{}", self.code),
            "title": self.title(),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        if let Some(p) = &self.parameter {
            body["parameter"] = serde_json::Value::String(p.clone());
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"socai\""),
            );
        }
        response
    }
}
