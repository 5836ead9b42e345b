//! The event envelope (schema version 1) and the event catalogue.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// The envelope schema version this crate reads and writes (`"schema": 1`).
pub const SCHEMA_VERSION: u64 = 1;

/// Prefix of the ids of `ledger.redacted` events (`redaction:<target id>`); agencies may not use it.
pub const REDACTION_ID_PREFIX: &str = "redaction:";

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
        let mut map = Map::new();
        map.insert("id".into(), Value::String(self.id.clone()));
        map.insert("type".into(), Value::String(self.event_type.clone()));
        map.insert("agency".into(), Value::String(self.agency.clone()));
        map.insert("procedure".into(), Value::String(self.procedure.clone()));
        map.insert("dossier".into(), Value::String(self.dossier.clone()));
        map.insert(
            "occurred_at".into(),
            Value::String(self.occurred_at.clone()),
        );
        map.insert("schema".into(), Value::from(self.schema));
        map.insert("data".into(), self.data.clone());
        Value::Object(map)
    }

    /// The `ledger.redacted` event recording that `target`'s personal data was erased.
    /// id = "redaction:<target id>"; agency/procedure/dossier copied from the target;
    /// data = {"target_id","target_seq","reason","redacted_by"}; occurred_at = `at` (RFC 3339).
    pub fn redaction(
        target: &Event,
        target_seq: u64,
        reason: &str,
        redacted_by: &str,
        at: &str,
    ) -> Event {
        let mut data = Map::new();
        data.insert("target_id".into(), Value::String(target.id.clone()));
        data.insert("target_seq".into(), Value::from(target_seq));
        data.insert("reason".into(), Value::String(reason.to_owned()));
        data.insert("redacted_by".into(), Value::String(redacted_by.to_owned()));
        Event {
            id: format!("{REDACTION_ID_PREFIX}{}", target.id),
            event_type: REDACTION_TYPE.to_owned(),
            agency: target.agency.clone(),
            procedure: target.procedure.clone(),
            dossier: target.dossier.clone(),
            occurred_at: at.to_owned(),
            schema: SCHEMA_VERSION,
            data: Value::Object(data),
            personal: None,
        }
    }

    /// `occurred_at` as an instant. Infallible for a validated event: the schema admits only
    /// RFC 3339 date-times with an offset.
    pub fn occurred_at_timestamp(&self) -> Result<jiff::Timestamp, jiff::Error> {
        self.occurred_at.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Event {
        Event {
            id: "01JD9Q4W8G3N6V2P5X7K1M0ZTR".into(),
            event_type: "dossier.submitted".into(),
            agency: "G09.20".into(),
            procedure: "1.004227".into(),
            dossier: "G09.20-20260609-0092637".into(),
            occurred_at: "2026-06-09T08:15:00+07:00".into(),
            schema: 1,
            data: json!({"channel": "online"}),
            personal: Some(json!({"citizen_id": "001203012345"})),
        }
    }

    #[test]
    fn public_json_never_holds_personal() {
        let public = sample().public_json();
        assert_eq!(
            public,
            json!({"id": "01JD9Q4W8G3N6V2P5X7K1M0ZTR", "type": "dossier.submitted",
                   "agency": "G09.20", "procedure": "1.004227",
                   "dossier": "G09.20-20260609-0092637",
                   "occurred_at": "2026-06-09T08:15:00+07:00", "schema": 1,
                   "data": {"channel": "online"}})
        );
    }

    #[test]
    fn serde_round_trip_keeps_personal_and_omits_it_when_absent() {
        let event = sample();
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), event);
        let mut bare = event;
        bare.personal = None;
        assert!(!serde_json::to_string(&bare).unwrap().contains("personal"));
    }

    #[test]
    fn redaction_names_its_target() {
        let target = sample();
        let r = Event::redaction(
            &target,
            42,
            "erasure request",
            "dpo@G09.20",
            "2026-07-01T00:00:00Z",
        );
        assert_eq!(r.id, "redaction:01JD9Q4W8G3N6V2P5X7K1M0ZTR");
        assert_eq!(r.event_type, REDACTION_TYPE);
        assert_eq!(
            (r.agency.as_str(), r.procedure.as_str()),
            ("G09.20", "1.004227")
        );
        assert_eq!(r.dossier, target.dossier);
        assert_eq!(r.occurred_at, "2026-07-01T00:00:00Z");
        assert_eq!(r.schema, 1);
        assert_eq!(r.personal, None);
        assert_eq!(
            r.data,
            json!({"target_id": target.id, "target_seq": 42, "reason": "erasure request",
                   "redacted_by": "dpo@G09.20"})
        );
    }

    #[test]
    fn occurred_at_parses_with_offset() {
        let ts = sample().occurred_at_timestamp().unwrap();
        assert_eq!(ts.to_string(), "2026-06-09T01:15:00Z");
    }
}
