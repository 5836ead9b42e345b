//! What the writer checks beyond the schemas (the subject and the clock), and how a rejection
//! travels on the REJECTED stream.

use async_nats::HeaderMap;
use socai_model::{ErrorCode, Event, Rejection, Validator};
use socai_wire::header;
use socai_wire::subject::parse_event_subject;

/// Validates one message as the writer does: the schemas, then the subject against the event,
/// then `occurred_at` against the time JetStream stored it (`published`, never a clock read).
pub fn check_message(
    validator: &Validator,
    subject: &str,
    payload: &[u8],
    published: jiff::Timestamp,
    max_future_skew: jiff::SignedDuration,
) -> Result<Event, Rejection> {
    let event = validator.validate(payload)?;
    let Some((agency, event_type)) = parse_event_subject(subject) else {
        return Err(Rejection::new(
            ErrorCode::SubjectMismatch,
            "",
            format!("subject {subject:?} is not dvc.events.<agency>.<type>"),
        ));
    };
    if agency != event.agency {
        return Err(Rejection::new(
            ErrorCode::SubjectMismatch,
            "/agency",
            format!(
                "event agency {:?} differs from agency {agency:?} of subject {subject:?}",
                event.agency
            ),
        ));
    }
    if event_type != event.event_type {
        return Err(Rejection::new(
            ErrorCode::SubjectMismatch,
            "/type",
            format!(
                "event type {:?} differs from type {event_type:?} of subject {subject:?}",
                event.event_type
            ),
        ));
    }
    let occurred = event.occurred_at_timestamp().map_err(|e| {
        Rejection::new(
            ErrorCode::SchemaViolation,
            "/occurred_at",
            format!("{:?} is not an RFC 3339 time: {e}", event.occurred_at),
        )
    })?;
    let limit = published
        .checked_add(max_future_skew)
        .unwrap_or(jiff::Timestamp::MAX);
    if occurred > limit {
        return Err(Rejection::new(
            ErrorCode::FutureTimestamp,
            "/occurred_at",
            format!(
                "occurred_at {} is more than {} after the event was published ({published})",
                event.occurred_at,
                humanize(max_future_skew)
            ),
        ));
    }
    Ok(event)
}

fn humanize(d: jiff::SignedDuration) -> String {
    let s = d.as_secs();
    if s % 3600 == 0 {
        format!("{} h", s / 3600)
    } else {
        format!("{s} s")
    }
}

/// A header value: one line, at most `max` bytes (cut on a char boundary).
pub(crate) fn header_value(value: &str, max: usize) -> String {
    let mut line: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > max {
        let mut cut = max;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

/// The headers of the REJECTED copy of a message, or (`part`: its key) of a part of a sync body.
pub fn rejection_headers(
    rejection: &Rejection,
    subject: &str,
    stream_seq: u64,
    part: Option<&str>,
    event_id: Option<&str>,
    published: &str,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // One REJECTED copy per EVENTS message (per part of a sync body), even when a crash makes
    // the ledger reject it again; with its time, since nats-server may reuse a seq after losing
    // acknowledged writes.
    let msg_id = match part {
        None => format!("events-{stream_seq}-{published}"),
        Some(key) => {
            use sha2::Digest;
            let digest = hex::encode(sha2::Sha256::digest(key.as_bytes()));
            format!("events-{stream_seq}-{published}-{}", &digest[..16])
        }
    };
    headers.insert("Nats-Msg-Id", msg_id.as_str());
    headers.insert(header::CODE, rejection.code.as_str());
    headers.insert(header::PATH, header_value(&rejection.path, 1024).as_str());
    headers.insert(
        header::REASON,
        header_value(&rejection.reason, 1024).as_str(),
    );
    headers.insert(header::SUBJECT, header_value(subject, 1024).as_str());
    headers.insert(header::STREAM_SEQ, stream_seq.to_string().as_str());
    headers.insert(header::PUBLISHED_AT, published);
    if let Some(id) = event_id {
        headers.insert(header::EVENT_ID, header_value(id, 256).as_str());
    }
    headers
}

/// The event id of a payload, if it is JSON with a string `id`: named in REJECTED headers even
/// when the rest of the event is wrong.
pub fn event_id_of(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_slice::<Id>(payload).ok().map(|v| v.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_json(agency: &str, event_type: &str, occurred_at: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": "e1", "type": event_type, "agency": agency, "procedure": "1.004227",
            "dossier": "D-1", "occurred_at": occurred_at, "schema": 1,
            "data": {"channel": "online"}
        }))
        .unwrap()
    }

    fn check(subject: &str, payload: &[u8]) -> Result<Event, Rejection> {
        let published: jiff::Timestamp = "2026-06-09T01:00:00Z".parse().unwrap();
        let validator = Validator::new(Default::default());
        check_message(
            &validator,
            subject,
            payload,
            published,
            jiff::SignedDuration::from_hours(24),
        )
    }

    #[test]
    fn subject_and_clock_rules() {
        let ok = event_json("G09.20", "dossier.submitted", "2026-06-09T08:15:00+07:00");
        assert!(check("dvc.events.G09-20.dossier.submitted", &ok).is_ok());
        let cases: &[(&str, Vec<u8>, ErrorCode, &str)] = &[
            (
                "dvc.events.G09-21.dossier.submitted",
                ok.clone(),
                ErrorCode::SubjectMismatch,
                "/agency",
            ),
            (
                "dvc.events.G09-20.dossier.accepted",
                ok.clone(),
                ErrorCode::SubjectMismatch,
                "/type",
            ),
            (
                "dvc.events.G09-20.dossier.submitted",
                event_json("G09.20", "dossier.submitted", "2026-06-10T08:15:01+07:00"),
                ErrorCode::FutureTimestamp,
                "/occurred_at",
            ),
            (
                "dvc.events.G09-20.dossier.submitted",
                b"{".to_vec(),
                ErrorCode::MalformedJson,
                "",
            ),
        ];
        for (subject, payload, code, path) in cases {
            let rejection = check(subject, payload).unwrap_err();
            assert_eq!(
                (rejection.code, rejection.path.as_str()),
                (*code, *path),
                "{subject}"
            );
        }
        // Exactly at the limit is still accepted.
        let edge = event_json("G09.20", "dossier.submitted", "2026-06-10T08:00:00+07:00");
        assert!(check("dvc.events.G09-20.dossier.submitted", &edge).is_ok());
    }

    #[test]
    fn header_values_are_one_bounded_line() {
        assert_eq!(header_value("a\nb\r\tc", 100), "a b  c");
        assert_eq!(header_value("ồồồ", 4), "ồ");
        let r = Rejection::new(ErrorCode::Conflict, "/id", "x".repeat(5000));
        let h = rejection_headers(&r, "dvc.events.A.b.c", 7, None, Some("e1"), "t");
        assert_eq!(h.get(header::CODE).unwrap().as_str(), "conflict");
        assert_eq!(h.get(header::REASON).unwrap().as_str().len(), 1024);
        assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), "events-7-t");
    }
}
