//! The JSON Schema files of the repository's `schemas/` directory, embedded at build time.
//!
//! The files are the single source of truth; this module only carries their text (so the HTTP API
//! can serve them and the validator can compile them) and never restates a rule.

/// Base URI of every schema's `$id` (schema version 1).
pub const BASE_URI: &str = "https://example.invalid/socai/schemas/v1/";

/// `schemas/defs.json`: shared definitions referenced by the other files.
pub const DEFS: &str = include_str!("../../../schemas/defs.json");

/// `schemas/envelope.json`: the whole event.
pub const ENVELOPE: &str = include_str!("../../../schemas/envelope.json");

/// `schemas/events/<type>.json` (the `data` object of each type): every type of
/// [`crate::EVENT_TYPES`] in catalogue order, then [`crate::REDACTION_TYPE`].
pub const EVENT_SCHEMAS: &[(&str, &str)] = &[
    (
        "procedure.published",
        include_str!("../../../schemas/events/procedure.published.json"),
    ),
    (
        "dossier.submitted",
        include_str!("../../../schemas/events/dossier.submitted.json"),
    ),
    (
        "dossier.accepted",
        include_str!("../../../schemas/events/dossier.accepted.json"),
    ),
    (
        "dossier.refused",
        include_str!("../../../schemas/events/dossier.refused.json"),
    ),
    (
        "dossier.processing_step",
        include_str!("../../../schemas/events/dossier.processing_step.json"),
    ),
    (
        "dossier.supplement_requested",
        include_str!("../../../schemas/events/dossier.supplement_requested.json"),
    ),
    (
        "dossier.supplement_received",
        include_str!("../../../schemas/events/dossier.supplement_received.json"),
    ),
    (
        "dossier.fee_requested",
        include_str!("../../../schemas/events/dossier.fee_requested.json"),
    ),
    (
        "dossier.fee_paid",
        include_str!("../../../schemas/events/dossier.fee_paid.json"),
    ),
    (
        "dossier.withdrawn",
        include_str!("../../../schemas/events/dossier.withdrawn.json"),
    ),
    (
        "dossier.stopped",
        include_str!("../../../schemas/events/dossier.stopped.json"),
    ),
    (
        "dossier.deadline_extended",
        include_str!("../../../schemas/events/dossier.deadline_extended.json"),
    ),
    (
        "dossier.result_signed",
        include_str!("../../../schemas/events/dossier.result_signed.json"),
    ),
    (
        "dossier.resolved",
        include_str!("../../../schemas/events/dossier.resolved.json"),
    ),
    (
        "dossier.result_returned",
        include_str!("../../../schemas/events/dossier.result_returned.json"),
    ),
    (
        "dossier.rated",
        include_str!("../../../schemas/events/dossier.rated.json"),
    ),
    (
        "ledger.redacted",
        include_str!("../../../schemas/events/ledger.redacted.json"),
    ),
];

/// The text of `schemas/events/<event_type>.json`, if the type has a schema.
pub fn event_schema(event_type: &str) -> Option<&'static str> {
    EVENT_SCHEMAS
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, text)| *text)
}

/// Every embedded file as (path relative to `schemas/`, text), e.g. `("events/dossier.rated.json", ..)`.
pub fn files() -> impl Iterator<Item = (String, &'static str)> {
    [
        ("defs.json".to_owned(), DEFS),
        ("envelope.json".to_owned(), ENVELOPE),
    ]
    .into_iter()
    .chain(
        EVENT_SCHEMAS
            .iter()
            .map(|(name, text)| (format!("events/{name}.json"), *text)),
    )
}
