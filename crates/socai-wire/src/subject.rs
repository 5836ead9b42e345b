//! NATS subjects (DESIGN.md, data flow).
//!
//! An agency publishes to `dvc.events.<agency token>.<type>`. Agency codes contain dots
//! (`G09.20`), which NATS reads as token separators, so in a subject they are written with `-`
//! for `.` (`G09-20`). Event types contain one dot (`dossier.submitted`), so an event subject has
//! five tokens: `dvc.events.G09-20.dossier.submitted`.

/// Prefix of the subjects agencies publish events to.
pub const EVENTS_PREFIX: &str = "dvc.events";
/// Prefix of the subjects agencies publish the portal's dossier sync bodies to
/// (`dvc.sync.<agency token>`, captured by EVENTS like events are).
pub const SYNC_PREFIX: &str = "dvc.sync";
/// Prefix of the subjects rejected events are kept under (`dvc.rejected.<agency token>.<type>`).
pub const REJECTED_PREFIX: &str = "dvc.rejected";
/// Every committed entry, in seq order.
pub const COMMITTED_SUBJECT: &str = "dvc.ledger.committed";
/// Every new signed checkpoint note.
pub const CHECKPOINT_SUBJECT: &str = "dvc.ledger.checkpoint";
/// Redaction requests, captured by EVENTS so that every ledger reading the stream (the primary and
/// its replicas) applies each at the same place among the events, with the message's time as the
/// redaction's time. Only the ledger user may publish under `dvc.ledger.>`.
pub const REDACTIONS_SUBJECT: &str = "dvc.ledger.redactions";
/// Prefix of the ledger replicas' status messages, `dvc.ledger.replicas.<name>` (core NATS).
pub const REPLICAS_PREFIX: &str = "dvc.ledger.replicas";

/// `dvc.ledger.replicas.<name>`: a ledger replica's status every few seconds (its head, root,
/// EVENTS cursor and how far it agrees with the primary), read by the primary (which erases
/// EVENTS copies of redacted events only once every configured replica has read past them).
pub fn replica_subject(name: &str) -> String {
    format!("{REPLICAS_PREFIX}.{name}")
}

/// Prefix of the live metric values, `dvc.metrics.<metric>.<scope token>`.
pub const METRICS_PREFIX: &str = "dvc.metrics";
/// Prefix of the receipts the ledger sends each agency after a commit's fsync,
/// `dvc.receipts.<agency token>`.
pub const RECEIPTS_PREFIX: &str = "dvc.receipts";

/// `dvc.receipts.<agency token>`: where the ledger tells one agency which of its event ids got
/// which seq (a core NATS subject, not a stream: a receipt lost in transit is asked for again by
/// re-publishing, and the ledger answers a re-published event with a duplicate receipt).
pub fn receipts_subject(agency: &str) -> String {
    format!("{RECEIPTS_PREFIX}.{}", agency_token(agency))
}

/// `dvc.metrics.<metric>.<scope token>`: where a projection worker publishes the changed values
/// of one metric and scope.
pub fn metrics_subject(metric: &str, scope_token: &str) -> String {
    format!("{METRICS_PREFIX}.{metric}.{scope_token}")
}

/// Prefix of the projection workers' heartbeats, `dvc.workers.<name>`.
pub const WORKERS_PREFIX: &str = "dvc.workers";

/// `dvc.workers.<name>`: a projection worker's heartbeat (`{"worker", "tree_size", "root"}`),
/// every few seconds while it runs, so a dashboard can tell "nothing changed" from "nobody is
/// computing". Not under `dvc.metrics.>`, whose messages are all metric values.
pub fn worker_heartbeat_subject(name: &str) -> String {
    format!("{WORKERS_PREFIX}.{name}")
}

/// The metric and scope token of a `dvc.metrics.<metric>.<scope token>` subject.
pub fn parse_metrics_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix(METRICS_PREFIX)?.strip_prefix('.')?;
    let (metric, scope) = rest.split_once('.')?;
    (!metric.is_empty() && !scope.is_empty()).then_some((metric, scope))
}

/// Why socai publishes nothing to `subject`, or `None` if it does: it is empty, holds
/// whitespace or a control character (async-nats refuses spaces, tabs and line breaks, which
/// would break the protocol line; the schemas allow none in an agency or a type), has an empty
/// token (a leading, trailing or doubled `.`: no stream stores it), or a wildcard token (`*`,
/// `>`: a subscription to its receipts would take other agencies' too).
pub fn unpublishable(subject: &str) -> Option<String> {
    if subject.is_empty() {
        return Some("the subject is empty".into());
    }
    if let Some(c) = subject
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Some(format!(
            "the subject {subject:?} holds {c:?}: socai publishes to no subject with whitespace or control characters (check the agency and the event type)"
        ));
    }
    for token in subject.split('.') {
        if token.is_empty() {
            return Some(format!(
                "the subject {subject:?} has an empty token (a leading, trailing or doubled '.')"
            ));
        }
        if token == "*" || token == ">" {
            return Some(format!(
                "the subject {subject:?} has the wildcard token {token:?}: only subscriptions take wildcards"
            ));
        }
    }
    None
}

/// `G09.20` → `G09-20`.
pub fn agency_token(agency: &str) -> String {
    agency.replace('.', "-")
}

/// `G09-20` → `G09.20`.
pub fn agency_from_token(token: &str) -> String {
    token.replace('-', ".")
}

/// `dvc.events.<agency token>.<type>`.
pub fn event_subject(agency: &str, event_type: &str) -> String {
    format!("{EVENTS_PREFIX}.{}.{event_type}", agency_token(agency))
}

/// Everything one agency may publish to: `dvc.events.<agency token>.>`.
pub fn agency_events_wildcard(agency: &str) -> String {
    format!("{EVENTS_PREFIX}.{}.>", agency_token(agency))
}

/// Where one agency's rejections appear: `dvc.rejected.<agency token>.>`.
pub fn agency_rejected_wildcard(agency: &str) -> String {
    format!("{REJECTED_PREFIX}.{}.>", agency_token(agency))
}

/// `dvc.sync.<agency token>`: where an agency publishes its portal sync bodies (DongBoHoSoMC,
/// CapNhatTienDoHoSoMC), one body per message.
pub fn sync_subject(agency: &str) -> String {
    format!("{SYNC_PREFIX}.{}", agency_token(agency))
}

/// The agency a `dvc.sync.<agency token>` subject names (exactly one token after the prefix).
pub fn parse_sync_subject(subject: &str) -> Option<String> {
    let token = subject.strip_prefix(SYNC_PREFIX)?.strip_prefix('.')?;
    (!token.is_empty() && !token.contains('.')).then(|| agency_from_token(token))
}

/// The agency a message on EVENTS was published for: an event subject's or a sync subject's.
pub fn agency_of_subject(subject: &str) -> Option<String> {
    parse_event_subject(subject)
        .map(|(agency, _)| agency)
        .or_else(|| parse_sync_subject(subject))
}

/// The agency and type an event subject names, or `None` if it is not an event subject
/// (`dvc.events.<token>.<at least one more token>`).
pub fn parse_event_subject(subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix(EVENTS_PREFIX)?.strip_prefix('.')?;
    let (token, event_type) = rest.split_once('.')?;
    if token.is_empty() || event_type.is_empty() {
        return None;
    }
    Some((agency_from_token(token), event_type.to_string()))
}

/// The REJECTED subject for an event that arrived on `subject`: the same tail under
/// `dvc.rejected`, so an agency sees its own rejections. Anything else goes to
/// `dvc.rejected.unrouted`. A sync body's parts go to `dvc.rejected.<agency token>.sync`.
pub fn rejected_subject(subject: &str) -> String {
    if let Some(agency) = parse_sync_subject(subject) {
        return format!("{REJECTED_PREFIX}.{}.sync", agency_token(&agency));
    }
    match subject
        .strip_prefix(EVENTS_PREFIX)
        .and_then(|r| r.strip_prefix('.'))
    {
        Some(tail) if !tail.is_empty() => format!("{REJECTED_PREFIX}.{tail}"),
        _ => format!("{REJECTED_PREFIX}.unrouted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpublishable_subjects_say_why() {
        assert_eq!(
            unpublishable(&event_subject("000.00.12.H56", "dossier.submitted")),
            None
        );
        assert_eq!(unpublishable(&sync_subject("G09.20")), None);
        for (subject, why) in [
            ("", "empty"),
            ("dvc.events.H 01.dossier.submitted", "' '"),
            ("dvc.events.H01.dossier\tsubmitted", "'\\t'"),
            ("dvc.events.H01.dossier.submitted\r\n", "'\\r'"),
            ("dvc.events.H01.dossier\u{7f}", "'\\u{7f}'"),
            ("dvc.events..dossier.submitted", "empty token"),
            ("dvc.events.H01.dossier.", "empty token"),
            ("dvc.events.*.dossier.submitted", "wildcard token \"*\""),
            ("dvc.sync.>", "wildcard token \">\""),
        ] {
            let problem = unpublishable(subject).unwrap_or_else(|| panic!("{subject:?} passed"));
            assert!(problem.contains(why), "{subject:?}: {problem}");
        }
        // A '*' or '>' inside a token is an ordinary character to NATS.
        assert_eq!(unpublishable("dvc.events.H*1.a>b.c"), None);
    }

    #[test]
    fn subjects_round_trip() {
        let subject = event_subject("000.00.12.H56", "dossier.submitted");
        assert_eq!(subject, "dvc.events.000-00-12-H56.dossier.submitted");
        assert_eq!(
            parse_event_subject(&subject),
            Some(("000.00.12.H56".into(), "dossier.submitted".into()))
        );
        assert_eq!(
            rejected_subject(&subject),
            "dvc.rejected.000-00-12-H56.dossier.submitted"
        );
        assert_eq!(agency_events_wildcard("G09.20"), "dvc.events.G09-20.>");
        assert_eq!(agency_rejected_wildcard("G09.20"), "dvc.rejected.G09-20.>");
        let live = metrics_subject("on_time_rate", "province.H01");
        assert_eq!(live, "dvc.metrics.on_time_rate.province.H01");
        assert_eq!(
            parse_metrics_subject(&live),
            Some(("on_time_rate", "province.H01"))
        );
        assert_eq!(parse_metrics_subject("dvc.metrics.x"), None);
        let sync = sync_subject("000.00.12.H56");
        assert_eq!(sync, "dvc.sync.000-00-12-H56");
        assert_eq!(parse_sync_subject(&sync), Some("000.00.12.H56".into()));
        assert_eq!(agency_of_subject(&sync), Some("000.00.12.H56".into()));
        assert_eq!(agency_of_subject(&subject), Some("000.00.12.H56".into()));
        assert_eq!(rejected_subject(&sync), "dvc.rejected.000-00-12-H56.sync");
        for s in ["dvc.sync", "dvc.sync.", "dvc.sync.a.b", "dvc.syncX.a"] {
            assert_eq!(parse_sync_subject(s), None, "{s}");
        }
    }

    #[test]
    fn not_event_subjects() {
        for s in [
            "dvc.events",
            "dvc.events.",
            "dvc.events.G09-20",
            "dvc.eventsX.a.b",
            "x.y.z",
            "dvc.events..a",
        ] {
            assert_eq!(parse_event_subject(s), None, "{s}");
        }
        assert_eq!(rejected_subject("x.y"), "dvc.rejected.unrouted");
    }
}
