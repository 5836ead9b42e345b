//! Validation against the embedded JSON Schemas (envelope + one schema per event type).
//!
//! Order of checks, the first failure wins (so a rejection is deterministic):
//! 1. size > `max_event_bytes` → `oversized`
//! 2. not UTF-8, not JSON, duplicate object keys (RFC 7493 I-JSON, required by RFC 8785), not an
//!    object → `malformed_json` (with line and column)
//! 3. `schemas/envelope.json` → `schema_violation`
//! 4. `type` reserved for the ledger (`ledger.redacted`) → `reserved_type`
//! 5. `type` not in the catalogue → `unknown_type`
//! 6. `schemas/events/<type>.json` on `data` → `schema_violation` under `/data/...`
//!
//! A `schema_violation` path is the JSON pointer of the offending value; for a missing required
//! property or a property that is not allowed it is the pointer of that property
//! (e.g. `/data/channel`), for a value that breaks a rule it is the value's own pointer.

use std::fmt::Write as _;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, PatternOptions, Registry, ValidationError};
use serde::de::{self, DeserializeSeed as _, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::code::ErrorCode;
use crate::event::{EVENT_TYPES, Event, REDACTION_TYPE};
use crate::schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events larger than this (raw bytes) are rejected as `oversized`.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 64 * 1024,
        }
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

impl Rejection {
    pub fn new(code: ErrorCode, path: impl Into<String>, reason: impl Into<String>) -> Rejection {
        Rejection {
            code,
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Longest rendering of an offending value inside a reason, in characters.
const VALUE_SHOWN_MAX_CHARS: usize = 80;
/// Longest reason, in characters (a reason travels in NATS headers and HTTP bodies).
const REASON_MAX_CHARS: usize = 400;
/// How many unexpected property names an `additionalProperties` reason lists.
const UNEXPECTED_SHOWN_MAX: usize = 5;

/// Compiled schemas: cheap to call, `Send + Sync`; build once and share.
pub struct Validator {
    limits: Limits,
    envelope: jsonschema::Validator,
    /// `data` schema of `EVENT_TYPES[i]`.
    data: Vec<jsonschema::Validator>,
    /// `data` schema of `ledger.redacted`.
    redaction: jsonschema::Validator,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Validator {
    /// Compiles the embedded schemas. Panics only if the embedded schema files themselves are
    /// broken, which the crate's tests rule out.
    pub fn new(limits: Limits) -> Validator {
        let defs = parse_schema("defs.json", schema::DEFS);
        let envelope = parse_schema("envelope.json", schema::ENVELOPE);
        let events: Vec<(&str, Value)> = schema::EVENT_SCHEMAS
            .iter()
            .map(|(name, text)| (*name, parse_schema(name, text)))
            .collect();
        let mut resources = vec![
            (schema_id(&defs), defs.clone()),
            (schema_id(&envelope), envelope.clone()),
        ];
        resources.extend(
            events
                .iter()
                .map(|(_, value)| (schema_id(value), value.clone())),
        );
        let registry = Registry::new()
            .draft(Draft::Draft202012)
            .extend(resources)
            .and_then(|builder| builder.prepare())
            .unwrap_or_else(|err| panic!("embedded schemas do not form a registry: {err}"));
        let options = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .should_validate_formats(true)
            // Linear-time matching: no backtracking engine on untrusted input.
            .with_pattern_options(PatternOptions::regex())
            .with_registry(&registry);
        let compile = |name: &str, value: &Value| {
            options
                .build(value)
                .unwrap_or_else(|err| panic!("embedded schema {name} does not compile: {err}"))
        };
        let data_for = |event_type: &str| {
            let (name, value) = events
                .iter()
                .find(|(name, _)| *name == event_type)
                .unwrap_or_else(|| panic!("no embedded schema for event type {event_type}"));
            compile(name, value)
        };
        Validator {
            limits,
            envelope: compile("envelope.json", &envelope),
            data: EVENT_TYPES.iter().map(|t| data_for(t)).collect(),
            redaction: data_for(REDACTION_TYPE),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Size limit, JSON syntax, envelope schema, known/reserved type, per-type schema,
    /// occurred_at is RFC 3339 with an offset. Returns the first violation.
    pub fn validate(&self, bytes: &[u8]) -> Result<Event, Rejection> {
        if bytes.len() > self.limits.max_event_bytes {
            return Err(Rejection::new(
                ErrorCode::Oversized,
                "",
                format!(
                    "event is {} bytes, more than the limit of {} bytes",
                    bytes.len(),
                    self.limits.max_event_bytes
                ),
            ));
        }
        let document = parse_object(bytes)?;
        self.check(&document, Publisher::Agency)?;
        into_event(document)
    }

    /// The same rules as [`Validator::validate`] minus size and syntax, for an event already in
    /// memory (e.g. built by the simulator). The reserved `ledger.redacted` is rejected.
    pub fn validate_event(&self, event: &Event) -> Result<(), Rejection> {
        self.check_event(event, Publisher::Agency)
    }

    /// Like [`Validator::validate_event`], for events the ledger writes itself: also accepts
    /// `ledger.redacted` (see [`Event::redaction`]) against its schema.
    pub fn validate_ledger_event(&self, event: &Event) -> Result<(), Rejection> {
        self.check_event(event, Publisher::Ledger)
    }

    fn check_event(&self, event: &Event, publisher: Publisher) -> Result<(), Rejection> {
        let document = serde_json::to_value(event).map_err(|err| {
            Rejection::new(
                ErrorCode::MalformedJson,
                "",
                format!("event does not serialize: {err}"),
            )
        })?;
        self.check(&document, publisher)
    }

    /// Steps 3 to 6 on a parsed document (a JSON object).
    fn check(&self, document: &Value, publisher: Publisher) -> Result<(), Rejection> {
        if !self.envelope.is_valid(document) {
            return Err(first_violation(&self.envelope, document, ""));
        }
        // The pattern admits a few instants past the end of the representable range (e.g.
        // 9999-12-31T23:00:00Z): the event must be a point in time the ledger can compute with.
        if let Some(at) = document.get("occurred_at").and_then(Value::as_str)
            && at.parse::<jiff::Timestamp>().is_err()
        {
            return Err(Rejection::new(
                ErrorCode::SchemaViolation,
                "/occurred_at",
                format!(
                    "format: {at:?} is not an instant between 0001-01-01 and 9999-12-30T22:00:00Z"
                ),
            ));
        }
        let event_type = document
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let data_schema = if event_type == REDACTION_TYPE {
            match publisher {
                Publisher::Ledger => &self.redaction,
                Publisher::Agency => {
                    return Err(Rejection::new(
                        ErrorCode::ReservedType,
                        "/type",
                        format!("type \"{REDACTION_TYPE}\" is reserved: only the ledger writes it"),
                    ));
                }
            }
        } else {
            match EVENT_TYPES.iter().position(|t| *t == event_type) {
                Some(index) => &self.data[index],
                None => {
                    return Err(Rejection::new(
                        ErrorCode::UnknownType,
                        "/type",
                        format!(
                            "unknown event type \"{event_type}\": not one of the {} catalogue types",
                            EVENT_TYPES.len()
                        ),
                    ));
                }
            }
        };
        let data = document.get("data").unwrap_or(&Value::Null);
        if !data_schema.is_valid(data) {
            return Err(first_violation(data_schema, data, "/data"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Publisher {
    Agency,
    Ledger,
}

fn parse_schema(name: &str, text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|err| panic!("embedded schema {name} is not JSON: {err}"))
}

fn schema_id(value: &Value) -> String {
    value["$id"]
        .as_str()
        .expect("every embedded schema has an $id")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Step 2: strict JSON parsing.

/// Parses `bytes` as one JSON object with unique keys at every level.
fn parse_object(bytes: &[u8]) -> Result<Value, Rejection> {
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let (line, column) = line_column(&bytes[..err.valid_up_to()]);
        Rejection::new(
            ErrorCode::MalformedJson,
            "",
            format!(
                "invalid utf-8 at line {line} column {column} (byte offset {})",
                err.valid_up_to()
            ),
        )
    })?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = StrictValue
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|err| {
            Rejection::new(ErrorCode::MalformedJson, "", format!("invalid json: {err}"))
        })?;
    match value {
        Value::Object(_) => Ok(value),
        other => Err(Rejection::new(
            ErrorCode::MalformedJson,
            "",
            format!(
                "expected a json object at line 1 column 1, found {}",
                kind_of(&other)
            ),
        )),
    }
}

/// 1-based line and column (in bytes) of the position just after `prefix`.
fn line_column(prefix: &[u8]) -> (usize, usize) {
    let line = prefix.iter().filter(|b| **b == b'\n').count() + 1;
    let column = prefix.len()
        - prefix
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, column)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deserializes a `serde_json::Value`, rejecting duplicate keys (which `Value` would silently
/// resolve to the last one, so two readers of the same bytes could disagree).
struct StrictValue;

impl<'de> de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a json value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(StrictValue)?;
            match map.entry(key) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate key {}",
                        shown(&Value::String(slot.key().clone()))
                    )));
                }
            }
        }
        Ok(Value::Object(map))
    }
}

// ---------------------------------------------------------------------------------------------
// Turning a valid document into an Event, and schema errors into rejections.

fn into_event(document: Value) -> Result<Event, Rejection> {
    let Value::Object(mut map) = document else {
        unreachable!("parse_object returns objects only");
    };
    let mut string = |key: &str| match map.remove(key) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(Rejection::new(
            ErrorCode::SchemaViolation,
            format!("/{key}"),
            "type: expected a string",
        )),
    };
    let id = string("id")?;
    let event_type = string("type")?;
    let agency = string("agency")?;
    let procedure = string("procedure")?;
    let dossier = string("dossier")?;
    let occurred_at = string("occurred_at")?;
    // The schema says `"const": 1`, which 1.0 also satisfies; the model stores the integer.
    let schema = match map.remove("schema") {
        Some(Value::Number(n)) if n.as_f64() == Some(crate::event::SCHEMA_VERSION as f64) => {
            crate::event::SCHEMA_VERSION
        }
        _ => {
            return Err(Rejection::new(
                ErrorCode::SchemaViolation,
                "/schema",
                "const: expected 1",
            ));
        }
    };
    let data = map.remove("data").unwrap_or(Value::Null);
    let personal = map.remove("personal");
    Ok(Event {
        id,
        event_type,
        agency,
        procedure,
        dossier,
        occurred_at,
        schema,
        data,
        personal,
    })
}

/// The first violation of `schema` by `instance` (known invalid), as a rejection whose path is
/// prefixed with `prefix` (the instance's own location in the event).
fn first_violation(schema: &jsonschema::Validator, instance: &Value, prefix: &str) -> Rejection {
    match schema.validate(instance) {
        Err(err) => schema_rejection(&err, prefix),
        Ok(()) => Rejection::new(ErrorCode::SchemaViolation, prefix, "schema: invalid"),
    }
}

fn schema_rejection(err: &ValidationError<'_>, prefix: &str) -> Rejection {
    let mut path = String::with_capacity(prefix.len() + 32);
    path.push_str(prefix);
    path.push_str(err.instance_path().as_str());
    let instance = err.instance();
    // A rejection's reason is logged and kept on REJECTED in headers: never quote personal data.
    let value = if path == "/personal" || path.starts_with("/personal/") {
        "(a personal value, not shown)".to_owned()
    } else {
        shown(instance)
    };
    let reason = match err.kind() {
        ValidationErrorKind::Required { property } => {
            push_pointer_token(&mut path, property.as_str().unwrap_or_default());
            format!("required: missing property {property}")
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            if let Some(first) = unexpected.first() {
                push_pointer_token(&mut path, first);
            }
            let mut names = String::new();
            for (i, name) in unexpected.iter().take(UNEXPECTED_SHOWN_MAX).enumerate() {
                if i > 0 {
                    names.push_str(", ");
                }
                names.push_str(&shown(&Value::String(name.clone())));
            }
            if unexpected.len() > UNEXPECTED_SHOWN_MAX {
                let _ = write!(
                    names,
                    " and {} more",
                    unexpected.len() - UNEXPECTED_SHOWN_MAX
                );
            }
            let noun = if unexpected.len() == 1 {
                "property"
            } else {
                "properties"
            };
            format!("additionalProperties: {noun} {names} not allowed")
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!(
                "type: expected {expected}, found {} {value}",
                kind_of(instance)
            )
        }
        ValidationErrorKind::Enum { options } => {
            let allowed = match options.as_ref() {
                Value::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(", "),
                other => shown(other),
            };
            format!("enum: {value} is not one of {allowed}")
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!("const: expected {}, found {value}", shown(expected_value))
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!("pattern: {value} does not match {pattern}")
        }
        ValidationErrorKind::Format { format } => {
            format!("format: {value} is not a valid {format}")
        }
        ValidationErrorKind::MinLength { limit } => {
            format!(
                "minLength: {value} is shorter than {limit} character{}",
                plural(*limit)
            )
        }
        ValidationErrorKind::MaxLength { limit } => {
            let length = instance.as_str().map_or(0, |s| s.chars().count());
            format!("maxLength: {value} is {length} characters, longer than {limit}")
        }
        ValidationErrorKind::Minimum { limit } => format!("minimum: {value} is less than {limit}"),
        ValidationErrorKind::Maximum { limit } => {
            format!("maximum: {value} is greater than {limit}")
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!("exclusiveMinimum: {value} is not greater than {limit}")
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            format!("exclusiveMaximum: {value} is not less than {limit}")
        }
        ValidationErrorKind::MaxItems { limit } => {
            let length = instance.as_array().map_or(0, Vec::len);
            format!("maxItems: {length} items, more than {limit}")
        }
        ValidationErrorKind::Not { schema } => {
            format!("not: {value} must not match {}", shown(schema))
        }
        ValidationErrorKind::FalseSchema => format!("false schema: {value} is not allowed"),
        other => {
            let text = err.to_string();
            let mut chars = text.chars();
            let first = chars
                .next()
                .map(|c| c.to_lowercase().collect::<String>())
                .unwrap_or_default();
            format!("{}: {first}{}", other.keyword(), chars.as_str())
        }
    };
    Rejection::new(
        ErrorCode::SchemaViolation,
        path,
        truncate(reason, REASON_MAX_CHARS),
    )
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Appends `/token` to a JSON pointer, escaping `~` and `/` (RFC 6901).
fn push_pointer_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// A value as compact JSON, cut to `VALUE_SHOWN_MAX_CHARS` characters.
fn shown(value: &Value) -> String {
    let text = match value {
        Value::Object(map) if map.len() > 8 => format!("an object of {} properties", map.len()),
        Value::Array(items) if items.len() > 8 => format!("an array of {} items", items.len()),
        other => other.to_string(),
    };
    truncate(text, VALUE_SHOWN_MAX_CHARS)
}

fn truncate(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
        text.push('…');
    }
    text
}
