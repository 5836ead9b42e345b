//! The ledger record (DESIGN.md "The ledger record and its hashes") and its canonical bytes.
//!
//! Entry `n` is the RFC 8785 (JCS) canonical JSON of
//! `{"v":1,"seq":n,"prev":"<hex>","recorded_at":"<RFC 3339 UTC>","event":{...},"personal_commitment":"<hex>"}`
//! (`personal_commitment` only when the event carried `personal`).
//!
//! Every decoder is strict: an entry is accepted only if its bytes are exactly the canonical
//! encoding of what it says, so no key appears twice anywhere (two JSON readers can never see
//! different facts under one signed hash) and every spelling (whitespace, key order, numbers,
//! escapes) is the one RFC 8785 writes.
//!
//! Decoding follows one rule set along three paths. [`Entry::decode_header`], the verification hot
//! path, first tries a byte scanner that accepts only the exact canonical layout [`Entry::to_canonical`]
//! writes (everything the ledger stores: keys in order, canonical strings and numbers) and gives up
//! on anything else. The serde path then decides, with structs that reject unknown and repeated
//! keys and check every type, and compares the re-encoding with the input;
//! [`Entry::decode`] builds the whole entry that way. Only when they reject does
//! [`Entry::from_value`] re-read the input, to name the offending field, after a scan for repeated
//! keys (which a `Value` silently merges). Canonical bytes come from a small RFC 8785 writer,
//! checked against the `serde_json_canonicalizer` crate in tests.

use crate::hash::Hash;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

/// Format version of entries written by this code.
pub const ENTRY_VERSION: u64 = 1;

/// The keys of `event`, all required: six strings, the integer `schema` and the object `data`.
const EVENT_KEYS: [&str; 8] = [
    "id",
    "type",
    "agency",
    "procedure",
    "dossier",
    "occurred_at",
    "schema",
    "data",
];

/// A decoded ledger entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub prev: Hash,
    /// RFC 3339 UTC timestamp, kept as the exact string that was hashed.
    pub recorded_at: String,
    /// `{id,type,agency,procedure,dossier,occurred_at,schema,data}`; exactly these keys.
    pub event: Value,
    pub personal_commitment: Option<Hash>,
}

/// What chain verification needs from an entry, decoded with every check of [`Entry::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    pub seq: u64,
    pub prev: Hash,
    pub personal_commitment: Option<Hash>,
}

/// An entry's header and the fields the id and dossier indexes are keyed by, borrowed from the
/// entry bytes where possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryParts<'a> {
    pub header: EntryHeader,
    pub agency: Cow<'a, str>,
    pub id: Cow<'a, str>,
    pub dossier: Cow<'a, str>,
    /// The event's canonical JSON (`canonical_json(&entry.event)`), a slice of the entry.
    pub event: &'a [u8],
}

/// Every field of an entry laid out as the ledger writes it, borrowed from its bytes (strings
/// unescaped only where they hold an escape): what a projection reads, without a JSON tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView<'a> {
    pub header: EntryHeader,
    pub recorded_at: Cow<'a, str>,
    pub id: Cow<'a, str>,
    /// `event.type`.
    pub kind: Cow<'a, str>,
    pub agency: Cow<'a, str>,
    pub procedure: Cow<'a, str>,
    pub dossier: Cow<'a, str>,
    pub occurred_at: Cow<'a, str>,
    /// `event.data`: its canonical JSON, a slice of the entry.
    pub data: &'a [u8],
    /// The event's canonical JSON, a slice of the entry.
    pub event: &'a [u8],
}

/// Where the event object starts in a canonical entry: right after `{"event":`.
const EVENT_START: usize = 9;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry is not valid JSON: {0}")]
    Json(String),
    /// A required field is missing or has the wrong type/format. `field` is a JSON path like `/prev`.
    #[error("entry field {field}: {reason}")]
    Field { field: String, reason: String },
    #[error("entry has unsupported version {0} (this build reads v1)")]
    Version(u64),
    #[error("entry bytes are not RFC 8785 canonical JSON")]
    NotCanonical,
}

impl Entry {
    /// The canonical (JCS) bytes: the exact bytes that are stored and hashed.
    pub fn to_canonical(&self) -> Vec<u8> {
        Entry::encode(
            self.seq,
            &self.prev,
            &self.recorded_at,
            &canonical_json(&self.event),
            self.personal_commitment.as_ref(),
        )
    }

    /// The canonical bytes of an entry whose event is already canonical JSON (`event_jcs`, from
    /// [`canonical_json`]): the writer's path, which canonicalises each event once.
    pub fn encode(
        seq: u64,
        prev: &Hash,
        recorded_at: &str,
        event_jcs: &[u8],
        personal_commitment: Option<&Hash>,
    ) -> Vec<u8> {
        // The keys in RFC 8785 order (UTF-16 code units): event, personal_commitment, prev,
        // recorded_at, seq, v.
        let mut out = Vec::with_capacity(event_jcs.len() + 256);
        out.extend_from_slice(b"{\"event\":");
        out.extend_from_slice(event_jcs);
        if let Some(commitment) = personal_commitment {
            out.extend_from_slice(b",\"personal_commitment\":");
            write_hash(&mut out, commitment);
        }
        out.extend_from_slice(b",\"prev\":");
        write_hash(&mut out, prev);
        out.extend_from_slice(b",\"recorded_at\":");
        write_string(&mut out, recorded_at);
        out.extend_from_slice(b",\"seq\":");
        write_number(&mut out, seq as f64);
        out.extend_from_slice(b",\"v\":");
        write_number(&mut out, ENTRY_VERSION as f64);
        out.push(b'}');
        out
    }

    /// Parses and checks an entry: a JSON object with exactly the keys v, seq, prev, recorded_at,
    /// event, optional personal_commitment; v == 1; hashes are 64 lowercase hex digits; event is
    /// an object with string id/type/agency/procedure/dossier/occurred_at, integer schema, object
    /// data; and the bytes are exactly the RFC 8785 canonical encoding of all that (no whitespace,
    /// keys sorted, canonical numbers and escapes), so no key appears twice anywhere.
    ///
    /// Structural errors name the field and come first; then a repeated key is named
    /// (`entry field /event/data/k: duplicate key`); any other difference is
    /// [`EntryError::NotCanonical`] (see [`non_canonical_detail`] for where).
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        let entry = decode_structure(bytes)?;
        if entry.to_canonical() != bytes {
            return Err(explain_non_canonical(bytes));
        }
        Ok(entry)
    }

    /// The verification hot path: every check of [`Entry::decode`], without building the event.
    /// Canonical entries (all the ledger writes) take a byte scanner; anything else the serde path.
    pub fn decode_header(bytes: &[u8]) -> Result<EntryHeader, EntryError> {
        Entry::decode_parts(bytes).map(|parts| parts.header)
    }

    /// [`Entry::decode_header`] plus what an index check needs: the event's agency, id and
    /// dossier and its canonical JSON bytes (a slice of `bytes`).
    pub fn decode_parts(bytes: &[u8]) -> Result<EntryParts<'_>, EntryError> {
        if let Some(parts) = scan_canonical(bytes) {
            return Ok(parts);
        }
        let entry = Entry::decode(bytes)?;
        // Canonical: the event is the object right after `{"event":`, as the writer put it.
        let event_len = canonical_json(&entry.event).len();
        let event = &bytes[EVENT_START..EVENT_START + event_len];
        let text = |key: &str| Cow::Owned(entry.event_str(key).to_owned());
        Ok(EntryParts {
            header: EntryHeader {
                seq: entry.seq,
                prev: entry.prev,
                personal_commitment: entry.personal_commitment,
            },
            agency: text("agency"),
            id: text("id"),
            dossier: text("dossier"),
            event,
        })
    }

    /// Every field of an entry, read by the canonical byte scanner (no JSON tree) with the checks
    /// of [`Entry::decode`]; `None` where the scanner is not sure (any invalid entry, but also a
    /// valid one it leaves to serde: escaped keys or nesting deeper than 16 in `data`, a `seq` or
    /// `schema` of more than 15 digits). A projection's fast path, with its own fallback.
    pub fn scan(bytes: &[u8]) -> Option<EntryView<'_>> {
        let raw = scan_raw(bytes)?;
        Some(EntryView {
            header: raw.header,
            recorded_at: string_content(raw.recorded_at)?,
            id: string_content(raw.id)?,
            kind: string_content(raw.kind)?,
            agency: string_content(raw.agency)?,
            procedure: string_content(raw.procedure)?,
            dossier: string_content(raw.dossier)?,
            occurred_at: string_content(raw.occurred_at)?,
            data: raw.data,
            event: raw.event,
        })
    }

    /// The same as [`Entry::decode`]: every decoder accepts canonical bytes only.
    pub fn decode_canonical(bytes: &[u8]) -> Result<Entry, EntryError> {
        Entry::decode(bytes)
    }

    /// Checks an already parsed entry with the rules of [`Entry::decode`] and names the first
    /// offending field. A `Value` has no spelling and cannot repeat a key, so what is left of
    /// "canonical" is that the entry survives its own encoding: every number must be exactly an
    /// IEEE double (RFC 8785 writes `9007199254740993` as `9007199254740992`, another fact).
    pub fn from_value(value: Value) -> Result<Entry, EntryError> {
        let Value::Object(mut top) = value else {
            return Err(expected("", "an object", &value));
        };
        match top.get("v") {
            None => return Err(field("/v", "missing")),
            Some(v) => match v.as_u64() {
                Some(ENTRY_VERSION) => {}
                Some(other) => return Err(EntryError::Version(other)),
                None => return Err(expected("/v", "an unsigned integer", v)),
            },
        }
        let keys = ["v", "seq", "prev", "recorded_at", "event"];
        check_keys(&top, "", &keys, &["personal_commitment"])?;
        let seq = (top["seq"].as_u64())
            .ok_or_else(|| expected("/seq", "an unsigned integer", &top["seq"]))?;
        let prev = hash_value(&top["prev"], "/prev")?;
        let personal_commitment = top
            .get("personal_commitment")
            .map(|v| hash_value(v, "/personal_commitment"))
            .transpose()?;
        let fields = top["event"]
            .as_object()
            .ok_or_else(|| expected("/event", "an object", &top["event"]))?;
        check_keys(fields, "/event", &EVENT_KEYS, &[])?;
        for key in &EVENT_KEYS[..6] {
            if !fields[*key].is_string() {
                return Err(expected(
                    &format!("/event/{key}"),
                    "a string",
                    &fields[*key],
                ));
            }
        }
        if !(fields["schema"].is_i64() || fields["schema"].is_u64()) {
            return Err(expected("/event/schema", "an integer", &fields["schema"]));
        }
        if !fields["data"].is_object() {
            return Err(expected("/event/data", "an object", &fields["data"]));
        }
        if !top["recorded_at"].is_string() {
            return Err(expected("/recorded_at", "a string", &top["recorded_at"]));
        }
        exact_numbers(&top["seq"], "/seq")?;
        exact_numbers(&top["event"], "/event")?;
        let (Some(Value::String(recorded_at)), Some(event)) =
            (top.remove("recorded_at"), top.remove("event"))
        else {
            unreachable!("recorded_at and event were checked above");
        };
        Ok(Entry {
            seq,
            prev,
            recorded_at,
            event,
            personal_commitment,
        })
    }

    /// The event id (`event.id`). Panics never: returns "" if absent (decode guarantees presence).
    pub fn event_id(&self) -> &str {
        self.event_str("id")
    }

    /// `event.type`, `event.dossier`: same conventions as [`Entry::event_id`].
    pub fn event_type(&self) -> &str {
        self.event_str("type")
    }
    pub fn dossier(&self) -> &str {
        self.event_str("dossier")
    }

    fn event_str(&self, key: &str) -> &str {
        self.event.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

/// A member value for [`canonical_object`].
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    Str(&'a str),
    Num(u64),
    Json(&'a Value),
}

/// RFC 8785 canonical JSON of an object given as borrowed members (keys must be distinct):
/// the same bytes as [`canonical_json`] of the equivalent `Value`, without building it.
pub fn canonical_object(members: &mut [(&str, Field<'_>)]) -> Vec<u8> {
    members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(&mut out, key);
        out.push(b':');
        match value {
            Field::Str(s) => write_string(&mut out, s),
            Field::Num(n) => write_number(&mut out, *n as f64),
            Field::Json(v) => write_jcs(&mut out, v),
        }
    }
    out.push(b'}');
    out
}

/// RFC 8785 canonical JSON of any value.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_jcs(&mut out, value);
    out
}

/// The per-event salt: the first 16 bytes of HMAC-SHA-256(salt_key, event_id).
pub fn personal_salt(salt_key: &[u8], event_id: &str) -> [u8; 16] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(salt_key).expect("hmac accepts keys of any length");
    mac.update(event_id.as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&tag[..16]);
    salt
}

/// `SHA-256(salt ‖ JCS(personal))`.
pub fn personal_commitment(salt: &[u8; 16], personal: &Value) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(canonical_json(personal));
    Hash(h.finalize().into())
}

/// Checks disclosed personal data against an entry's commitment.
pub fn check_personal(commitment: &Hash, salt: &[u8; 16], personal: &Value) -> bool {
    personal_commitment(salt, personal) == *commitment
}

/// Where and how `bytes` (JSON without repeated keys) differ from their RFC 8785 encoding, for
/// error messages: `None` if they are canonical or not JSON at all.
pub fn non_canonical_detail(bytes: &[u8]) -> Option<String> {
    let canonical = canonical_json(&serde_json::from_slice::<Value>(bytes).ok()?);
    let at = bytes
        .iter()
        .zip(&canonical)
        .position(|(a, b)| a != b)
        .unwrap_or(bytes.len().min(canonical.len()));
    if at == bytes.len() && at == canonical.len() {
        return None;
    }
    let excerpt = |b: &[u8]| {
        let mut end = b.len().min(at + 24);
        // Whole characters only.
        while end < b.len() && b[end] & 0xc0 == 0x80 {
            end += 1;
        }
        let text = String::from_utf8_lossy(&b[at.min(end)..end]).into_owned();
        if text.is_empty() {
            "the end".to_owned()
        } else {
            format!("{text:?}")
        }
    };
    Some(format!(
        "at byte {at}: found {}, RFC 8785 writes {}",
        excerpt(bytes),
        excerpt(&canonical)
    ))
}

/// The structural half of [`Entry::decode`] (everything but canonical form).
fn decode_structure(bytes: &[u8]) -> Result<Entry, EntryError> {
    let wire = parse::<String, Map<String, Value>>(bytes)?;
    let event = wire.event;
    let mut map = Map::new();
    for (key, value) in EVENT_KEYS.iter().zip([
        event.id,
        event.kind,
        event.agency,
        event.procedure,
        event.dossier,
        event.occurred_at,
    ]) {
        map.insert((*key).to_owned(), Value::String(value));
    }
    map.insert("schema".to_owned(), Value::Number(event.schema.0));
    map.insert("data".to_owned(), Value::Object(event.data));
    Ok(Entry {
        seq: wire.seq,
        prev: wire.prev.0,
        recorded_at: wire.recorded_at,
        event: Value::Object(map),
        personal_commitment: wire.personal_commitment.map(|h| h.0),
    })
}

/// Why bytes that decode structurally are not the canonical entry: a repeated key (named), or
/// another spelling.
fn explain_non_canonical(bytes: &[u8]) -> EntryError {
    match find_duplicate_key(bytes) {
        Some(path) => field(&path, "duplicate key"),
        None => EntryError::NotCanonical,
    }
}

/// The JSON pointer of the first repeated key in `bytes` (at any depth), if any.
pub fn find_duplicate_key(bytes: &[u8]) -> Option<String> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let _ = de::DeserializeSeed::deserialize(
        DuplicateScan {
            path: String::new(),
            found: &found,
        },
        &mut de,
    );
    found.into_inner()
}

/// Walks any JSON value, stopping at the first object that repeats a key (its pointer goes to
/// `found`).
struct DuplicateScan<'f> {
    path: String,
    found: &'f RefCell<Option<String>>,
}

impl<'de> de::DeserializeSeed<'de> for DuplicateScan<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DuplicateScan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let path = format!("{}/{i}", self.path);
            let seed = DuplicateScan {
                path,
                found: self.found,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}/{}", self.path, pointer_token(&key));
            if !seen.insert(key) {
                *self.found.borrow_mut() = Some(path);
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(DuplicateScan {
                path,
                found: self.found,
            })?;
        }
        Ok(())
    }
}

// ---- RFC 8785 (JCS) writer ----
//
// Direct, allocation-light, and checked in tests against `serde_json_canonicalizer` (over ten
// times slower: it re-parses every key). Strings use serde_json's escaping, which is exactly
// JCS's (§3.2.2.2: `\"`, `\\`, `\b \f \n \r \t`, other controls as lowercase `\u00xx`, all else
// literal); numbers are IEEE doubles in ECMAScript form (§3.2.2.3) via `ryu-js`.

fn write_jcs(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        // Every JSON number is a double in JCS: integers beyond 2^53 round, as in JavaScript.
        // (`as_f64` is never None for a parsed number.)
        Value::Number(n) => write_number(out, n.as_f64().unwrap_or_default()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_jcs(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Map iterates in code point order; JCS sorts by UTF-16 code units, which differs
            // only between U+E000..U+FFFF and supplementary characters: keys below U+E000 (no
            // UTF-8 byte from 0xEE up) are in JCS order as they are, without a sorted copy.
            let member = |out: &mut Vec<u8>, i: usize, key: &str, item: &Value| {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_jcs(out, item);
            };
            out.push(b'{');
            if map.keys().all(|k| k.bytes().all(|b| b < 0xEE)) {
                for (i, (key, item)) in map.iter().enumerate() {
                    member(out, i, key, item);
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    member(out, i, key, item);
                }
            }
            out.push(b'}');
        }
    }
}

pub(crate) fn write_string(out: &mut Vec<u8>, s: &str) {
    // Most strings need no escape: copied as they are. The others go through serde_json, whose
    // escapes are RFC 8785's (`\b \f \n \r \t \" \\`, other controls as `\u00xx`).
    if plain_run(s.as_bytes()) == s.len() {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// ECMAScript `Number.prototype.toString` of a (always finite) JSON number.
pub(crate) fn write_number(out: &mut Vec<u8>, n: f64) {
    // An integer below 2^53 in magnitude prints as its digits (-0 as `0`); the cast is exact.
    const EXACT: f64 = (1u64 << 53) as f64;
    if n.fract() == 0.0 && n.abs() < EXACT {
        out.extend_from_slice(itoa::Buffer::new().format(n as i64).as_bytes());
        return;
    }
    out.extend_from_slice(ryu_js::Buffer::new().format(n).as_bytes());
}

/// A hash as the JSON string of its lowercase hex.
pub(crate) fn write_hash(out: &mut Vec<u8>, hash: &Hash) {
    let mut hex = [0u8; 66];
    hex[0] = b'"';
    hex[65] = b'"';
    // Exactly twice the input length: cannot fail.
    let _ = const_hex::encode_to_slice(hash.0, &mut hex[1..65]);
    out.extend_from_slice(&hex);
}

// ---- the wire structs: one rule set, two instantiations ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<S, D> {
    v: u64,
    seq: u64,
    prev: LowerHex,
    recorded_at: S,
    event: WireEvent<S, D>,
    #[serde(default, deserialize_with = "present")]
    personal_commitment: Option<LowerHex>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent<S, D> {
    id: S,
    #[serde(rename = "type")]
    kind: S,
    agency: S,
    procedure: S,
    dossier: S,
    occurred_at: S,
    schema: Integer,
    data: D,
}

/// Parses with the strict wire structs; on failure, finds the offending field for the error.
fn parse<'de, S, D>(bytes: &'de [u8]) -> Result<Wire<S, D>, EntryError>
where
    Wire<S, D>: Deserialize<'de>,
{
    // Validating UTF-8 once up front is cheaper than per string, and covers the strings inside
    // `data` that the fast path skips without reading.
    let text = std::str::from_utf8(bytes).map_err(|e| EntryError::Json(e.to_string()))?;
    match serde_json::from_str::<Wire<S, D>>(text) {
        Ok(wire) if wire.v == ENTRY_VERSION => Ok(wire),
        Ok(wire) => Err(EntryError::Version(wire.v)),
        Err(err) => Err(explain(bytes, &err)),
    }
}

/// The error path: a repeated key (which a `Value` would silently merge) is named first, then
/// the input is re-read as a `Value` to name the field.
fn explain(bytes: &[u8], err: &serde_json::Error) -> EntryError {
    if err.is_syntax() || err.is_eof() {
        return EntryError::Json(err.to_string());
    }
    if let Some(path) = find_duplicate_key(bytes) {
        return field(&path, "duplicate key");
    }
    match serde_json::from_slice::<Value>(bytes).map(Entry::from_value) {
        Err(e) => EntryError::Json(e.to_string()),
        Ok(Err(e)) => e,
        Ok(Ok(_)) => field("", err.to_string()),
    }
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LowerHex>, D::Error> {
    LowerHex::deserialize(d).map(Some)
}

/// A hash written as exactly 64 lowercase hex digits.
struct LowerHex(Hash);

impl<'de> Deserialize<'de> for LowerHex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LowerHex;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("64 lowercase hex digits")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LowerHex, E> {
                parse_lower_hex(s.as_bytes())
                    .map(LowerHex)
                    .ok_or_else(|| E::custom(bad_hash(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON integer (no fraction, no exponent), kept as a `Number`.
struct Integer(Number);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Integer;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Integer, E> {
                Ok(Integer(n.into()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Integer, E> {
                Ok(Integer(n.into()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---- the canonical fast path ----

/// Reads an entry laid out exactly as [`Entry::to_canonical`] writes it, or gives up (`None`) at
/// the first byte it is not sure of: it accepts only canonical bytes (keys in RFC 8785 order,
/// hence never repeated; canonical strings and numbers; no whitespace), which the serde path
/// accepts too, and leaves every rejection (and every unusual but canonical entry) to it.
fn scan_canonical(bytes: &[u8]) -> Option<EntryParts<'_>> {
    let raw = scan_raw(bytes)?;
    Some(EntryParts {
        header: raw.header,
        agency: string_content(raw.agency)?,
        id: string_content(raw.id)?,
        dossier: string_content(raw.dossier)?,
        event: raw.event,
    })
}

/// A canonical entry's fields as the scanner found them: strings are raw contents (between the
/// quotes, escapes not yet undone).
struct RawEntry<'a> {
    header: EntryHeader,
    recorded_at: &'a str,
    id: &'a str,
    kind: &'a str,
    agency: &'a str,
    procedure: &'a str,
    dossier: &'a str,
    occurred_at: &'a str,
    data: &'a [u8],
    event: &'a [u8],
}

/// The scanner behind [`scan_canonical`] and [`Entry::scan`].
fn scan_raw(bytes: &[u8]) -> Option<RawEntry<'_>> {
    // UTF-8 once for the whole entry (SIMD over ~500 bytes), so strings are scanned as bytes and
    // sliced as `str` without validating each again.
    let mut c = Scanner::new(bytes)?;
    c.lit(b"{\"event\":{\"agency\":")?;
    let agency = c.string()?;
    c.lit(b",\"data\":")?;
    let data_start = c.i;
    c.object(0)?;
    let data = &bytes[data_start..c.i];
    let mut fields = [""; 4];
    for (key, slot) in ["dossier", "id", "occurred_at", "procedure"]
        .iter()
        .zip(&mut fields)
    {
        c.lit(b",\"")?;
        c.lit(key.as_bytes())?;
        c.lit(b"\":")?;
        *slot = c.string()?;
    }
    c.lit(b",\"schema\":")?;
    c.integer()?;
    c.lit(b",\"type\":")?;
    let kind = c.string()?;
    c.lit(b"}")?;
    let event = &bytes[EVENT_START..c.i];
    c.lit(b",")?;
    let personal_commitment = if c.lit(b"\"personal_commitment\":").is_some() {
        let hash = c.hash()?;
        c.lit(b",")?;
        Some(hash)
    } else {
        None
    };
    c.lit(b"\"prev\":")?;
    let prev = c.hash()?;
    c.lit(b",\"recorded_at\":")?;
    let recorded_at = c.string()?;
    c.lit(b",\"seq\":")?;
    let (false, seq) = c.integer()? else {
        return None;
    };
    c.lit(b",\"v\":1}")?;
    if c.i != bytes.len() {
        return None;
    }
    let [dossier, id, occurred_at, procedure] = fields;
    Some(RawEntry {
        header: EntryHeader {
            seq,
            prev,
            personal_commitment,
        },
        recorded_at,
        id,
        kind,
        agency,
        procedure,
        dossier,
        occurred_at,
        data,
        event,
    })
}

/// Whether `bytes` are exactly one JSON value as RFC 8785 writes it, so that hashing them is
/// hashing its canonical form. Conservative, like the entry scanner: `false` may also mean a
/// canonical value it leaves to the slow path (nesting deeper than 16, escaped keys).
pub fn is_canonical_json(bytes: &[u8]) -> bool {
    let Some(mut c) = Scanner::new(bytes) else {
        return false;
    };
    c.value(0).is_some() && c.i == bytes.len()
}

/// Calls `f` with each member of a canonical JSON object, such as [`EntryView::data`]: the key
/// (without escapes: the scanner leaves escaped keys to serde) and the value's bytes, in order.
/// `None` if `object` is not one the scanner accepts, possibly after `f` was called for the
/// members before the first it could not read: discard what `f` gathered then.
pub fn for_each_member<'a>(object: &'a [u8], f: impl FnMut(&'a str, &'a [u8])) -> Option<()> {
    let mut c = Scanner::new(object)?;
    c.members(0, f)?; // the depth `scan_raw` reads `data` at
    (c.i == object.len()).then_some(())
}

/// The text of a canonical JSON string value (quotes included in `value`), escapes undone.
pub fn string_value(value: &[u8]) -> Option<Cow<'_, str>> {
    let mut c = Scanner::new(value)?;
    let raw = c.string()?;
    (c.i == value.len()).then_some(())?;
    string_content(raw)
}

/// The value of a canonical JSON string from its raw content (between the quotes).
fn string_content(raw: &str) -> Option<Cow<'_, str>> {
    if raw.contains('\\') {
        let mut quoted = String::with_capacity(raw.len() + 2);
        quoted.push('"');
        quoted.push_str(raw);
        quoted.push('"');
        serde_json::from_str::<String>(&quoted).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(raw))
    }
}

/// Whether `a < b` in RFC 8785 key order (UTF-16 code units) for raw canonical string contents
/// without escapes. UTF-8 byte order is code point order, which differs from UTF-16 order only
/// between U+E000..U+FFFF (lead bytes 0xEE, 0xEF) and supplementary characters (0xF0..).
fn key_less(a: &str, b: &str) -> bool {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    match x.iter().zip(y).position(|(p, q)| p != q) {
        Some(i) if x[i] >= 0xee || y[i] >= 0xee => a.encode_utf16().lt(b.encode_utf16()),
        Some(i) => x[i] < y[i],
        None => x.len() < y.len(),
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    /// `b` as text: validated once, so a string's content is sliced out without checking it again.
    t: &'a str,
    i: usize,
}

impl<'a> Scanner<'a> {
    /// Deeper `data` than this goes to the serde path (which has its own recursion limit).
    const MAX_DEPTH: u32 = 16;

    /// A scanner at the start of `b`, if it is UTF-8 (checked once, SIMD, for the whole input, so
    /// strings are scanned as bytes and sliced as `str` without validating each again).
    fn new(b: &'a [u8]) -> Option<Scanner<'a>> {
        let t = simdutf8::basic::from_utf8(b).ok()?;
        Some(Scanner { b, t, i: 0 })
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn lit(&mut self, s: &[u8]) -> Option<()> {
        let end = self.i.checked_add(s.len())?;
        (self.b.get(self.i..end)? == s).then(|| self.i = end)
    }

    /// A string as RFC 8785 writes it (serde_json's escaping): `\"`, `\\`, `\b \f \n \r \t`, other
    /// controls as lowercase `\u00xx`, everything else literal. Returns its raw content.
    fn string(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let start = self.i;
        loop {
            let rest = self.b.get(self.i..)?;
            let run = plain_run(rest);
            self.i += run + 1;
            match *rest.get(run)? {
                b'"' => break,
                b'\\' => match self.peek()? {
                    b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                    b'u' => {
                        // Only controls without a short form: \u0000-\u001f but \b \t \n \f \r.
                        let hex = self.b.get(self.i + 1..self.i + 5)?;
                        let (b'0', b'0', hi @ (b'0' | b'1'), lo) = (hex[0], hex[1], hex[2], hex[3])
                        else {
                            return None;
                        };
                        let lo = match lo {
                            b'0'..=b'9' => lo - b'0',
                            b'a'..=b'f' => lo - b'a' + 10,
                            _ => return None,
                        };
                        if hi == b'0' && matches!(lo, 8 | 9 | 0xa | 0xc | 0xd) {
                            return None;
                        }
                        self.i += 5;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
        // Both ends sit next to an ASCII quote, so they are character boundaries.
        self.t.get(start..self.i - 1)
    }

    fn hash(&mut self) -> Option<Hash> {
        self.lit(b"\"")?;
        let hash = parse_lower_hex(self.b.get(self.i..self.i + 64)?)?;
        self.i += 64;
        self.lit(b"\"")?;
        Some(hash)
    }

    /// A canonical integer of at most 15 digits (exact as a double, written as digits):
    /// `-?(0|[1-9][0-9]*)`, not `-0`, not followed by a fraction or exponent. As (negative,
    /// magnitude).
    fn integer(&mut self) -> Option<(bool, u64)> {
        let negative = self.lit(b"-").is_some();
        let digits = self.digits()?;
        let text = &self.b[self.i - digits..self.i];
        if digits > 15 || (digits > 1 && text[0] == b'0') || (negative && text == b"0") {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some((
            negative,
            text.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')),
        ))
    }

    fn digits(&mut self) -> Option<usize> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        (self.i > start).then_some(self.i - start)
    }

    /// A number exactly as RFC 8785 writes it (ECMAScript `Number.prototype.toString`): short
    /// integers directly, anything else by formatting the double it denotes and comparing.
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        if self.integer().is_some() {
            return Some(());
        }
        self.i = start;
        while self
            .peek()
            .is_some_and(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.i += 1;
        }
        let text = &self.b[start..self.i];
        if text.is_empty() || text.len() > 32 {
            return None;
        }
        let value: f64 = std::str::from_utf8(text).ok()?.parse().ok()?;
        if !value.is_finite() {
            return None;
        }
        let mut canonical = Vec::with_capacity(32);
        write_number(&mut canonical, value);
        (canonical == text).then_some(())
    }

    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(depth + 1),
            b'[' => {
                if depth >= Self::MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                if self.lit(b"]").is_some() {
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    if self.lit(b"]").is_some() {
                        return Some(());
                    }
                    self.lit(b",")?;
                }
            }
            b't' => self.lit(b"true"),
            b'f' => self.lit(b"false"),
            b'n' => self.lit(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object whose keys are in strictly increasing RFC 8785 order (so none repeats). Keys
    /// with escapes are left to the serde path.
    fn object(&mut self, depth: u32) -> Option<()> {
        self.members(depth, |_, _| {})
    }

    /// [`Scanner::object`], calling `f` with each member's key (raw content, no escapes) and
    /// value bytes as it goes.
    fn members(&mut self, depth: u32, mut f: impl FnMut(&'a str, &'a [u8])) -> Option<()> {
        if depth >= Self::MAX_DEPTH {
            return None;
        }
        self.lit(b"{")?;
        if self.lit(b"}").is_some() {
            return Some(());
        }
        let mut previous: Option<&str> = None;
        loop {
            let key = self.string()?;
            if key.contains('\\') || previous.is_some_and(|p| !key_less(p, key)) {
                return None;
            }
            previous = Some(key);
            self.lit(b":")?;
            let start = self.i;
            self.value(depth)?;
            f(key, &self.b[start..self.i]);
            if self.lit(b"}").is_some() {
                return Some(());
            }
            self.lit(b",")?;
        }
    }
}

/// The length of the leading run of bytes that need no attention inside a JSON string: anything
/// but `"`, `\\` and control characters (< 0x20); non-ASCII is plain (the whole entry was checked
/// as UTF-8 first).
/// Eight bytes at a time: in each flag word the lowest set bit marks the first such byte exactly
/// (borrows only run towards higher bytes, past a true match).
fn plain_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut words = b.chunks_exact(8);
    let mut done = 0;
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        let w = u64::from_le_bytes(w);
        let flags = zero_byte(w ^ (ONES * u64::from(b'"')))
            | zero_byte(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if flags != 0 {
            return done + (flags.trailing_zeros() / 8) as usize;
        }
        done += 8;
    }
    let tail = words.remainder();
    done + tail
        .iter()
        .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
        .unwrap_or(tail.len())
}

// ---- helpers for the error path ----

fn parse_lower_hex(s: &[u8]) -> Option<Hash> {
    /// Nibble value of each byte, 0xff for anything but `0-9a-f`.
    const NIBBLE: [u8; 256] = {
        let mut table = [0xff; 256];
        let mut c = 0;
        while c < 16 {
            table[b"0123456789abcdef"[c] as usize] = c as u8;
            c += 1;
        }
        table
    };
    let bytes: &[u8; 64] = s.try_into().ok()?;
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        bad |= hi | lo;
        *o = hi << 4 | lo;
    }
    // Valid nibbles are < 16, so any 0xff sets the high bits.
    (bad < 16).then_some(Hash(out))
}

fn bad_hash(s: &str) -> String {
    format!("expected 64 lowercase hex digits, found {:?}", truncate(s))
}

/// Every number in `v` is exactly an IEEE double, so its canonical spelling means the same.
fn exact_numbers(v: &Value, path: &str) -> Result<(), EntryError> {
    match v {
        Value::Number(n) => {
            let exact = if let Some(u) = n.as_u64() {
                let f = u as f64;
                f < 18_446_744_073_709_551_616.0 && f as u64 == u
            } else if let Some(i) = n.as_i64() {
                i as f64 as i64 == i
            } else {
                true
            };
            if exact {
                Ok(())
            } else {
                let mut canonical = Vec::new();
                write_number(&mut canonical, n.as_f64().unwrap_or_default());
                Err(field(
                    path,
                    format!(
                        "number {n} is not exactly an IEEE double (RFC 8785 writes it as {})",
                        String::from_utf8_lossy(&canonical)
                    ),
                ))
            }
        }
        Value::Array(items) => (items.iter().enumerate())
            .try_for_each(|(i, item)| exact_numbers(item, &format!("{path}/{i}"))),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, item)| exact_numbers(item, &format!("{path}/{}", pointer_token(k)))),
        _ => Ok(()),
    }
}

fn hash_value(v: &Value, path: &str) -> Result<Hash, EntryError> {
    match v {
        Value::String(s) => parse_lower_hex(s.as_bytes()).ok_or_else(|| field(path, bad_hash(s))),
        other => Err(expected(path, "a string", other)),
    }
}

fn check_keys(
    obj: &Map<String, Value>,
    path: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<(), EntryError> {
    let known = |k: &str| required.contains(&k) || optional.contains(&k);
    if let Some(extra) = obj.keys().find(|k| !known(k)) {
        return Err(field(
            &format!("{path}/{}", pointer_token(extra)),
            "unknown field",
        ));
    }
    match required.iter().find(|k| !obj.contains_key(**k)) {
        Some(missing) => Err(field(&format!("{path}/{missing}"), "missing")),
        None => Ok(()),
    }
}

fn expected(path: &str, what: &str, found: &Value) -> EntryError {
    field(path, format!("expected {what}, found {}", describe(found)))
}

fn field(path: &str, reason: impl Into<String>) -> EntryError {
    EntryError::Field {
        field: if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        },
        reason: reason.into(),
    }
}

/// A short rendering of an offending value for error messages.
fn describe(v: &Value) -> String {
    truncate(&v.to_string())
}

fn truncate(s: &str) -> String {
    const MAX_CHARS: usize = 80;
    if s.chars().count() <= MAX_CHARS {
        s.to_owned()
    } else {
        s.chars().take(MAX_CHARS).collect::<String>() + "…"
    }
}

/// RFC 6901 escaping of one path token.
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_.:+-]{0,12}",
            prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        ]
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            // Integral doubles around the bounds of the integer fast path.
            prop_oneof![
                -(1i64 << 54)..1i64 << 54,
                Just((1i64 << 53) - 1),
                Just(1i64 << 53),
                Just(-(1i64 << 53)),
            ]
            .prop_map(|i| Value::from(i as f64)),
            Just(Value::from(-0.0)),
            any_string().prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(any_string(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    prop_compose! {
        fn any_entry()(
            seq in 0u64..1 << 53, prev in any::<[u8; 32]>(), commitment in any::<Option<[u8; 32]>>(),
            strings in prop::collection::vec(any_string(), 7), schema in any::<i32>(),
            data in prop::collection::btree_map(any_string(), any_json(), 0..6),
        ) -> Entry {
            Entry {
                seq,
                prev: Hash(prev),
                recorded_at: strings[6].clone(),
                event: json!({"id": strings[0], "type": strings[1], "agency": strings[2], "procedure": strings[3],
                    "dossier": strings[4], "occurred_at": strings[5], "schema": schema,
                    "data": Value::Object(data.into_iter().collect())}),
                personal_commitment: commitment.map(Hash),
            }
        }
    }

    /// Whether some object in `v` has a key JSON writes with an escape (the scanner leaves those
    /// to serde).
    fn has_escaped_key(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, v)| {
                canonical_json(&Value::from(k.as_str())).contains(&b'\\') || has_escaped_key(v)
            }),
            Value::Array(items) => items.iter().any(has_escaped_key),
            _ => false,
        }
    }

    /// Ways to damage canonical bytes: flip a bit, drop a byte, or insert a JSON-ish byte.
    fn mutate(mut bytes: Vec<u8>, kind: u8, at: prop::sample::Index, byte: u8) -> Vec<u8> {
        let i = at.index(bytes.len());
        match kind % 3 {
            0 => bytes[i] ^= 1 << (byte % 8),
            1 => drop(bytes.remove(i)),
            _ => {
                const INSERTED: &[u8] = b"\"\\{}[],:-.e0123456789 tfn\x01\x7f\xc3";
                bytes.insert(i, INSERTED[usize::from(byte) % INSERTED.len()])
            }
        }
        bytes
    }

    /// The fast path accepts only what the serde path accepts, with the same header; and
    /// `decode_header` and `decode` agree on every input.
    fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
        let serde = decode_serde_parts(bytes);
        if let Some(fast) = scan_canonical(bytes) {
            prop_assert_eq!(
                Ok(fast),
                serde.clone(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        // `Entry::scan` reads every field alike, `data` as its canonical JSON.
        if let Some(view) = Entry::scan(bytes) {
            let entry = Entry::decode(bytes);
            prop_assert!(entry.is_ok(), "{}", String::from_utf8_lossy(bytes));
            let entry = entry.unwrap();
            let text = |key: &str| entry.event_str(key).to_owned();
            prop_assert_eq!(
                (
                    view.header,
                    view.recorded_at.to_string(),
                    view.id.to_string(),
                    view.kind.to_string(),
                    view.agency.to_string(),
                    view.procedure.to_string(),
                    view.dossier.to_string(),
                    view.occurred_at.to_string(),
                ),
                (
                    EntryHeader {
                        seq: entry.seq,
                        prev: entry.prev,
                        personal_commitment: entry.personal_commitment,
                    },
                    entry.recorded_at.clone(),
                    text("id"),
                    text("type"),
                    text("agency"),
                    text("procedure"),
                    text("dossier"),
                    text("occurred_at"),
                )
            );
            prop_assert_eq!(view.data.to_vec(), canonical_json(&entry.event["data"]));
            prop_assert_eq!(view.event.to_vec(), canonical_json(&entry.event));
        } else {
            prop_assert_eq!(scan_canonical(bytes), None);
        }
        let full = Entry::decode(bytes).map(|e| EntryHeader {
            seq: e.seq,
            prev: e.prev,
            personal_commitment: e.personal_commitment,
        });
        prop_assert_eq!(
            full.clone(),
            Entry::decode_header(bytes),
            "{}",
            String::from_utf8_lossy(bytes)
        );
        // Whatever is accepted is canonical.
        if let Ok(header) = full {
            let entry = Entry::decode(bytes).unwrap();
            prop_assert_eq!(entry.to_canonical(), bytes.to_vec());
            prop_assert_eq!(header.seq, entry.seq);
        }
        Ok(())
    }

    /// The serde path of [`Entry::decode_parts`] (without the scanner).
    fn decode_serde_parts(bytes: &[u8]) -> Result<EntryParts<'_>, EntryError> {
        let entry = Entry::decode(bytes)?;
        let event_len = canonical_json(&entry.event).len();
        Ok(EntryParts {
            header: EntryHeader {
                seq: entry.seq,
                prev: entry.prev,
                personal_commitment: entry.personal_commitment,
            },
            agency: Cow::Owned(entry.event_str("agency").to_owned()),
            id: Cow::Owned(entry.event_str("id").to_owned()),
            dossier: Cow::Owned(entry.event_str("dossier").to_owned()),
            event: &bytes[EVENT_START..EVENT_START + event_len],
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn fast_path_agrees_on_canonical_entries(entry in any_entry()) {
            let bytes = entry.to_canonical();
            agree(&bytes)?;
            // JCS writes numbers as IEEE doubles: integers beyond 2^53 round, so compare bytes.
            prop_assert_eq!(Entry::decode_canonical(&bytes).map(|e| e.to_canonical()), Ok(bytes));
        }

        #[test]
        fn fast_path_agrees_on_damaged_entries(
            entry in any_entry(), kinds in prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut bytes = entry.to_canonical();
            for (kind, at, byte) in kinds {
                bytes = mutate(bytes, kind, at, byte);
            }
            agree(&bytes)?;
        }

        #[test]
        fn is_canonical_json_accepts_only_canonical_bytes(
            value in any_json(), kinds in prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), any::<u8>()), 0..3),
        ) {
            let canonical = canonical_json(&value);
            // Escaped keys are left to the slow path; everything else canonical is accepted.
            if kinds.is_empty() && !has_escaped_key(&value) {
                prop_assert!(is_canonical_json(&canonical), "{}", String::from_utf8_lossy(&canonical));
            }
            let mut bytes = canonical;
            for (kind, at, byte) in kinds {
                if !bytes.is_empty() {
                    bytes = mutate(bytes, kind, at, byte);
                }
            }
            if is_canonical_json(&bytes) {
                let parsed: Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert_eq!(canonical_json(&parsed), bytes);
            }
        }

        #[test]
        fn for_each_member_reads_canonical_objects(
            object in prop::collection::btree_map(any_string(), any_json(), 0..6),
            kinds in prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), any::<u8>()), 0..3),
        ) {
            let object = Value::Object(object.into_iter().collect());
            let canonical = canonical_json(&object);
            let mut bytes = canonical.clone();
            for (kind, at, byte) in &kinds {
                bytes = mutate(bytes, *kind, *at, *byte);
            }
            let mut members = Vec::new();
            let read = for_each_member(&bytes, |key, value| members.push((key.to_owned(), value.to_vec())));
            if kinds.is_empty() && !has_escaped_key(&object) {
                prop_assert!(read.is_some(), "{}", String::from_utf8_lossy(&canonical));
            }
            if read.is_some() {
                // What it accepts is a canonical object, member for member.
                let parsed: Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert_eq!(canonical_json(&parsed), bytes.clone());
                let parsed = parsed.as_object().unwrap();
                prop_assert_eq!(members.len(), parsed.len());
                for (key, value) in &members {
                    prop_assert_eq!(value, &canonical_json(&parsed[key.as_str()]));
                    prop_assert_eq!(
                        string_value(value).map(Cow::into_owned),
                        parsed[key.as_str()].as_str().map(str::to_owned)
                    );
                }
            }
        }

        #[test]
        fn jcs_matches_the_reference_implementation(value in any_json()) {
            prop_assert_eq!(canonical_json(&value), serde_json_canonicalizer::to_vec(&value).unwrap());
        }

        #[test]
        fn to_canonical_matches_the_reference_implementation(entry in any_entry()) {
            let mut value = json!({"v": ENTRY_VERSION, "seq": entry.seq, "prev": entry.prev,
                "recorded_at": entry.recorded_at, "event": entry.event});
            if let Some(c) = entry.personal_commitment {
                value["personal_commitment"] = json!(c);
            }
            prop_assert_eq!(entry.to_canonical(), serde_json_canonicalizer::to_vec(&value).unwrap());
        }

        #[test]
        fn plain_run_finds_the_first_special_byte(bytes in prop::collection::vec(prop_oneof![32u8..127, any::<u8>()], 0..40)) {
            let naive = bytes.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\').unwrap_or(bytes.len());
            prop_assert_eq!(plain_run(&bytes), naive);
        }
    }

    #[test]
    fn json_objects_iterate_in_key_order() {
        // `write_jcs` writes an object's members in the map's order when no key needs UTF-16
        // ordering: serde_json's `preserve_order` (insertion order) must stay off.
        let map: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"b":1,"a":2,"c":3}"#).unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(
            canonical_json(&Value::Object(map)),
            br#"{"a":2,"b":1,"c":3}"#
        );
    }

    #[test]
    fn scanner_reads_typical_entries() {
        let entry = Entry {
            seq: 12,
            prev: Hash([7; 32]),
            recorded_at: "2026-06-09T01:00:00.123456Z".into(),
            event: json!({"id": "E", "type": "t", "agency": "a", "procedure": "p", "dossier": "d",
                "occurred_at": "o", "schema": 1, "data": {"x": [1, -2.5, "é\n\"", {"y": null}], "z": true}}),
            personal_commitment: Some(Hash([9; 32])),
        };
        let bytes = entry.to_canonical();
        assert_eq!(
            scan_canonical(&bytes),
            Some(decode_serde_parts(&bytes).unwrap())
        );
        // Hand-made inputs the random mutations rarely reach.
        let text = String::from_utf8(bytes.clone()).unwrap();
        for (from, to) in [
            ("\"schema\":1", "\"schema\":-0"),
            ("\"seq\":12", "\"seq\":-0"),
            ("[1,", "[-0,"),
            ("[1,", "[01,"),
            ("[1,", "[1.,"),
            ("[1,", "[1.0,"),
            ("[1,", "[1e0,"),
            ("[1,", "[1E+0,"),
            ("\"z\":true", "\"z\":tru"),
            ("\"z\":true", "\"z\":true,\"z\":true"),
            ("\"z\":true", "\"a\":true"),
            ("\"y\":null", "\"y\":\"\\/\""),
            ("\"y\":null", "\"y\":\"\\u0041\""),
            ("\"y\":null", "\"y\":\"\\u000a\""),
            ("\"y\":null", "\"y\":\"\\u001F\""),
        ] {
            let changed = text.replacen(from, to, 1);
            agree(changed.as_bytes()).unwrap();
            assert!(
                Entry::decode_header(changed.as_bytes()).is_err(),
                "{changed}"
            );
        }
        for (from, to) in [("\"schema\":1", "\"schema\":-1"), ("[1,", "[-0.5,")] {
            let changed = text.replacen(from, to, 1);
            agree(changed.as_bytes()).unwrap();
            assert!(scan_canonical(changed.as_bytes()).is_some(), "{changed}");
        }
        // Exponents, fractions and control escapes are canonical when RFC 8785 writes them so.
        for data in [
            json!({"x": 1e300}),
            json!({"x": 1e-7}),
            json!({"x": 0.1}),
            json!({"x": "\u{1}\u{1f}"}),
            json!({"\u{e000}": 1, "\u{1f600}": 2}),
        ] {
            let bytes = Entry { event: json!({"id": "E", "type": "t", "agency": "a", "procedure": "p", "dossier": "d",
                "occurred_at": "o", "schema": 1, "data": data}), ..entry.clone() }.to_canonical();
            assert_eq!(
                scan_canonical(&bytes).map(|p| p.header),
                Some(Entry::decode_header(&bytes).unwrap()),
                "{}",
                String::from_utf8_lossy(&bytes)
            );
        }
        // Deep nesting and escaped keys are valid but left to serde.
        let deep = (0..20).fold(json!(1), |v, _| json!([v]));
        for data in [json!({ "x": deep }), json!({"a\nb": 1})] {
            let bytes = Entry { event: json!({"id": "E", "type": "t", "agency": "a", "procedure": "p", "dossier": "d",
                "occurred_at": "o", "schema": 1, "data": data}), ..entry.clone() }.to_canonical();
            assert_eq!(
                scan_canonical(&bytes),
                None,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            assert!(Entry::decode_header(&bytes).is_ok());
        }
    }

    #[test]
    fn repeated_keys_are_named() {
        let entry = Entry {
            seq: 3,
            prev: Hash([7; 32]),
            recorded_at: "2026-06-09T01:00:00Z".into(),
            event: json!({"id": "E", "type": "t", "agency": "a", "procedure": "p", "dossier": "d",
                "occurred_at": "o", "schema": 1, "data": {"k": 1, "n": {"m": [1, {"z": 2}]}}}),
            personal_commitment: None,
        };
        let text = String::from_utf8(entry.to_canonical()).unwrap();
        for (from, to, path) in [
            ("\"k\":1", "\"k\":1,\"k\":2", "/event/data/k"),
            ("\"k\":1", "\"k\":1,\"k\":1", "/event/data/k"),
            ("\"z\":2", "\"z\":2,\"z\":3", "/event/data/n/m/1/z"),
            ("\"seq\":3", "\"seq\":3,\"seq\":3", "/seq"),
            ("\"id\":\"E\"", "\"id\":\"E\",\"id\":\"F\"", "/event/id"),
        ] {
            let bad = text.replacen(from, to, 1);
            let expected = field(path, "duplicate key");
            assert_eq!(
                Entry::decode(bad.as_bytes()),
                Err(expected.clone()),
                "{bad}"
            );
            assert_eq!(Entry::decode_header(bad.as_bytes()), Err(expected), "{bad}");
        }
        // The detail of other differences names the byte.
        let spaced = text.replacen("\"k\":1", "\"k\": 1", 1);
        assert_eq!(
            Entry::decode(spaced.as_bytes()),
            Err(EntryError::NotCanonical)
        );
        let detail = non_canonical_detail(spaced.as_bytes()).unwrap();
        assert!(detail.starts_with("at byte 35: found \" 1"), "{detail}");
    }

    #[test]
    fn from_value_refuses_numbers_that_are_not_doubles() {
        let mut value: Value = serde_json::from_slice(
            &Entry {
                seq: 3,
                prev: Hash([7; 32]),
                recorded_at: "r".into(),
                event: json!({"id": "E", "type": "t", "agency": "a", "procedure": "p", "dossier": "d",
                    "occurred_at": "o", "schema": 1, "data": {}}),
                personal_commitment: None,
            }
            .to_canonical(),
        )
        .unwrap();
        assert!(Entry::from_value(value.clone()).is_ok());
        value["event"]["data"]["n"] = json!(9_007_199_254_740_993u64);
        assert_eq!(
            Entry::from_value(value).unwrap_err().to_string(),
            "entry field /event/data/n: number 9007199254740993 is not exactly an IEEE double (RFC 8785 writes it as 9007199254740992)"
        );
    }
}
