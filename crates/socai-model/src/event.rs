//! The event envelope (schema version 1) and the event catalogue.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every type an agency may publish, in catalogue order (DESIGN.md).
pub const EVENT_TYPES: &[&str] = &[
    "procedure.published",
    "dossier.submitted",
    "dossier.accepted",
    "dossier.refused",
    "dossier.processing_step",
    "dossier.supplement_requested",
    "dossier.supplement_received",
    "dossier.fee_requested",
    "dossier.fee_paid",
    "dossier.withdrawn",
    "dossier.stopped",
    "dossier.deadline_extended",
    "dossier.result_signed",
    "dossier.resolved",
    "dossier.result_returned",
    "dossier.rated",
];

/// Written by the ledger itself when personal data is erased; agencies may not publish it.
pub const REDACTION_TYPE: &str = "ledger.redacted";

/// A validated event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub agency: String,
    pub procedure: String,
    pub dossier: String,
    pub occurred_at: String,
    pub schema: u64,
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal: Option<Value>,
}

impl Event {
    /// The public part that goes into a ledger entry:
    /// `{id,type,agency,procedure,dossier,occurred_at,schema,data}` (never `personal`).
    pub fn public_json(&self) -> Value {
        todo!()
    }

    /// The `ledger.redacted` event recording that `target`'s personal data was erased.
    /// id = "redaction:<target id>"; agency/procedure/dossier copied from the target;
    /// data = {"target_id","target_seq","reason","redacted_by"}; occurred_at = `at` (RFC 3339).
    pub fn redaction(target: &Event, target_seq: u64, reason: &str, redacted_by: &str, at: &str) -> Event {
        todo!()
    }
}
