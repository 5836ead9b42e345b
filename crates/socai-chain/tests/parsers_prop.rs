//! Property tests of every parser an attacker's bytes reach (issue 11): entries, proof JSON,
//! export bundles, entry bundles and tile paths, hash tiles, signed notes and verifier keys.
//!
//! For each: arbitrary bytes and structured mutations of valid inputs never panic; a rejection
//! is an error with a clear (non-empty, bounded) message; an acceptance is canonical (the input
//! is exactly what the writer would have produced) or, for proofs and bundles, only ever of
//! the genuine content.

mod common;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::LazyLock;

use common::{Log, ORIGIN, SALT_KEY, personal, signer};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};
use socai_chain::bundle::{BUNDLE_FORMAT, Bundle, PersonalDisclosure};
use socai_chain::checkpoint::{Checkpoint, CheckpointSigner, CheckpointVerifier};
use socai_chain::entry::{Entry, EntryError, personal_salt};
use socai_chain::merkle::{
    HashReader, frontier_indexes, prove_consistency, prove_inclusion, tree_root,
};
use socai_chain::tiles::{
    TILE_WIDTH, Tile, TileKind, TiledVerifier, hash_tile, push_bundle_entry, split_entry_bundle,
    split_hash_tile,
};
use socai_chain::verify::verify_chunk;
use socai_chain::{ChainVerifier, ConsistencyProof, Hash, InclusionProof, leaf_hash};

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Longest error message we accept for a rejection (errors travel in headers and logs).
const MAX_MESSAGE: usize = 1024;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Regressions are reported with their input; no files next to the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A rejection must say something, and not an unbounded echo of the input.
fn clear(e: &impl Display) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(!text.trim().is_empty(), "empty error message");
    prop_assert!(
        text.chars().count() <= MAX_MESSAGE,
        "error message of {} chars: {}…",
        text.chars().count(),
        text.chars().take(200).collect::<String>()
    );
    Ok(())
}

/// Bytes that tend to matter to JSON, UTF-8 and the line-based note format.
const SPECIAL: &[u8] =
    b"\"\\{}[],:-+.eE0123456789 \t\r\ntfnu/=\x00\x01\x7f\x80\xbf\xc0\xc3\xed\xf0\xff";

/// Snippets whose insertion makes structurally interesting documents.
const SNIPPETS: &[&str] = &[
    " ",
    "\n",
    "\u{feff}",
    "\"a\":1,",
    "\"seq\":0,",
    "\"v\":1,",
    "\"data\":{},",
    "1e0",
    ".0",
    "-0",
    "e400",
    "\\u0041",
    "\\ud800",
    "99999999999999999999999",
    "18446744073709551616",
    "[",
    "{",
    "]",
    "}",
    "null",
    "{\"\":0}",
    ",",
    "\"",
    "\n\n",
    "— k AAAA\n",
    "=",
];

/// One random edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Set(Index, u8),
    Delete(Index),
    InsertSpecial(Index, Index),
    InsertSnippet(Index, Index),
    Truncate(Index),
    Duplicate(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        (any::<Index>(), any::<Index>()).prop_map(|(i, s)| Mutation::InsertSpecial(i, s)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, s)| Mutation::InsertSnippet(i, s)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        // An index into the bytes (for edits) or between them (for insertions).
        let at = |i: &Index| i.index(len.max(1)).min(len.saturating_sub(1));
        let gap = |i: &Index| i.index(len + 1);
        match m {
            Mutation::FlipBit(i, b) if len > 0 => bytes[at(i)] ^= 1 << (b % 8),
            Mutation::Set(i, b) if len > 0 => bytes[at(i)] = *b,
            Mutation::Delete(i) if len > 0 => drop(bytes.remove(at(i))),
            Mutation::InsertSpecial(i, s) => bytes.insert(gap(i), SPECIAL[s.index(SPECIAL.len())]),
            Mutation::InsertSnippet(i, s) => {
                let at = gap(i);
                let snippet = SNIPPETS[s.index(SNIPPETS.len())].as_bytes();
                bytes.splice(at..at, snippet.iter().copied());
            }
            Mutation::Truncate(i) => bytes.truncate(gap(i)),
            Mutation::Duplicate(i, n) if len > 0 => {
                let start = at(i);
                let end = (start + 1 + usize::from(*n % 24)).min(len);
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
            _ => {}
        }
    }
    bytes
}

/// Arbitrary input: raw bytes, valid UTF-8, or JSON-ish text.
fn junk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        any::<String>().prop_map(String::into_bytes),
        prop::collection::vec(prop::sample::select(SPECIAL.to_vec()), 0..200),
        prop::collection::vec(prop::sample::select(SNIPPETS.to_vec()), 0..40)
            .prop_map(|parts| parts.concat().into_bytes()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Entries: `Entry::decode`, `Entry::decode_header` (what `verify` and bundles call),
// `Entry::decode_canonical` (what inclusion proofs call), `Entry::from_value`, `verify_chunk`.

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_.:+-]{0,12}",
        any::<String>(),
        prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
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
        any_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any_string(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

prop_compose! {
    fn any_entry()(
        seq in prop_oneof![0u64..1000, 0u64..1 << 53],
        prev in any::<[u8; 32]>(),
        commitment in any::<Option<[u8; 32]>>(),
        strings in prop::collection::vec(any_string(), 7),
        schema in prop_oneof![Just(1i64), any::<i64>()],
        data in prop::collection::btree_map(any_string(), any_json(), 0..5),
    ) -> Entry {
        Entry {
            seq,
            prev: Hash(prev),
            recorded_at: strings[6].clone(),
            event: json!({"id": strings[0], "type": strings[1], "agency": strings[2],
                "procedure": strings[3], "dossier": strings[4], "occurred_at": strings[5],
                "schema": schema, "data": Value::Object(data.into_iter().collect())}),
            personal_commitment: commitment.map(Hash),
        }
    }
}

/// A realistic entry (the ledger's own shape), with or without a commitment.
fn typical_entry(seq: u64) -> Entry {
    common::entry(seq, Hash([0x5a; 32]))
}

/// Runs every entry decoder on `bytes`: none may panic, every error is clear, and whatever is
/// accepted is consistent across decoders. Returns whether `decode_header` (the `verify` path)
/// accepted.
fn check_entry_decoders(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let full = Entry::decode(bytes);
    let header = Entry::decode_header(bytes);
    let canonical = Entry::decode_canonical(bytes);
    for e in [
        full.as_ref().err(),
        header.as_ref().err(),
        canonical.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        clear(e)?;
        if let EntryError::Field { field, .. } = e {
            prop_assert!(field.starts_with('/'), "field path {field:?}");
        }
    }
    // The full decoder and the verification hot path agree on every input.
    prop_assert_eq!(
        full.as_ref()
            .ok()
            .map(|e| (e.seq, e.prev, e.personal_commitment)),
        header
            .as_ref()
            .ok()
            .map(|h| (h.seq, h.prev, h.personal_commitment)),
        "decode and decode_header disagree on {}",
        String::from_utf8_lossy(bytes)
    );
    if let Ok(entry) = &canonical {
        // Canonical acceptance: re-encoding gives back exactly the input, and every other
        // decoder reads the same entry.
        prop_assert_eq!(entry.to_canonical(), bytes.to_vec());
        prop_assert_eq!(full.as_ref().ok(), Some(entry));
        prop_assert_eq!(
            Entry::decode_canonical(&entry.to_canonical()),
            Ok(entry.clone())
        );
    }
    // The error path's re-reader, on whatever JSON the bytes hold.
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        // `from_value` checks structure only: it cannot see repeated keys (a `Value` merges
        // them) nor the spelling, so it may accept what the strict decoders refuse, but only
        // for those reasons.
        match (Entry::from_value(value), &full) {
            (Ok(_), Err(e)) => prop_assert!(
                matches!(e, EntryError::NotCanonical) || e.to_string().contains("duplicate"),
                "from_value accepts, decode refuses with {e}"
            ),
            (Err(e), _) => clear(&e)?,
            (Ok(_), Ok(_)) => {}
        }
    }
    Ok(header.is_ok())
}

/// Whether `decode_header` accepting `bytes` is an auditor-grade acceptance: the bytes are the
/// canonical encoding of the entry they decode to.
fn accepted_only_canonical(bytes: &[u8]) -> Result<(), TestCaseError> {
    if Entry::decode_header(bytes).is_ok() {
        prop_assert!(
            Entry::decode_canonical(bytes).is_ok(),
            "decode_header (the verify path) accepts non-canonical bytes {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    Ok(())
}

/// Textual variants of a canonical entry that a decoder must refuse (each differs from the
/// canonical bytes): repeated keys, other number spellings, whitespace, escapes, key order,
/// uppercase hex, invalid UTF-8, deep nesting, huge numbers.
fn non_canonical_variants(entry: &Entry) -> Vec<(String, Vec<u8>)> {
    let canonical = String::from_utf8(entry.to_canonical()).expect("canonical entries are UTF-8");
    let seq = format!("\"seq\":{}", entry.seq);
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut extra: Vec<(String, Vec<u8>)> = Vec::new();
    let mut replace = |name: &str, from: &str, to: &str| {
        if canonical.contains(from) {
            out.push((
                name.to_owned(),
                canonical.replacen(from, to, 1).into_bytes(),
            ));
        }
    };
    // Repeated keys, at every level.
    replace("repeated top-level seq", &seq, &format!("{seq},{seq}"));
    replace("repeated top-level v", ",\"v\":1}", ",\"v\":1,\"v\":1}");
    replace(
        "repeated event agency",
        "{\"event\":{",
        "{\"event\":{\"agency\":\"x\",",
    );
    replace(
        "repeated key in data",
        ",\"data\":{",
        ",\"data\":{\"k\":1,\"k\":2,",
    );
    replace(
        "repeated key in data, same value",
        ",\"data\":{",
        ",\"data\":{\"k\":1,\"k\":1,",
    );
    replace(
        "repeated key nested in data",
        ",\"data\":{",
        ",\"data\":{\"n\":{\"k\":true,\"k\":false},",
    );
    // Number spellings.
    for (name, spelled) in [
        ("seq as n.0", format!("\"seq\":{}.0", entry.seq)),
        ("seq as ne0", format!("\"seq\":{}e0", entry.seq)),
        ("seq as nE0", format!("\"seq\":{}E0", entry.seq)),
        ("seq with leading zero", format!("\"seq\":0{}", entry.seq)),
        ("seq as -0", "\"seq\":-0".to_owned()),
        ("seq huge", "\"seq\":18446744073709551616".to_owned()),
        ("seq 1e400", "\"seq\":1e400".to_owned()),
    ] {
        replace(name, &seq, &spelled);
    }
    replace("v as 1.0", ",\"v\":1}", ",\"v\":1.0}");
    replace("v as 1e0", ",\"v\":1}", ",\"v\":1e0}");
    replace("v as 10e-1", ",\"v\":1}", ",\"v\":10e-1}");
    if let Some(schema) = entry.event.get("schema").and_then(Value::as_i64) {
        let from = format!("\"schema\":{schema}");
        replace("schema as n.0", &from, &format!("\"schema\":{schema}.0"));
        replace("schema as ne0", &from, &format!("\"schema\":{schema}e0"));
        replace("schema as -0", &from, "\"schema\":-0");
    }
    replace(
        "data number as 50000.0",
        "\"fee_vnd\":50000",
        "\"fee_vnd\":50000.0",
    );
    replace("data number as 5e4", "\"fee_vnd\":50000", "\"fee_vnd\":5e4");
    replace(
        "data number as 5E+4",
        "\"fee_vnd\":50000",
        "\"fee_vnd\":5E+4",
    );
    replace(
        "data number beyond 2^53",
        "\"fee_vnd\":50000",
        "\"fee_vnd\":9007199254740993",
    );
    replace("data number -0", "\"fee_vnd\":50000", "\"fee_vnd\":-0");
    replace("data number -0.0", "\"fee_vnd\":50000", "\"fee_vnd\":-0.0");
    // Whitespace.
    replace("space after {", "{\"event\"", "{ \"event\"");
    replace("space after :", "\"prev\":", "\"prev\": ");
    replace("newline before }", ",\"v\":1}", ",\"v\":1\n}");
    replace("tab after ,", ",\"prev\"", ",\t\"prev\"");
    extra.push((
        "trailing newline".into(),
        format!("{canonical}\n").into_bytes(),
    ));
    extra.push((
        "leading BOM".into(),
        format!("\u{feff}{canonical}").into_bytes(),
    ));
    extra.push(("leading space".into(), format!(" {canonical}").into_bytes()));
    // Escapes and hex.
    replace("escaped letter", "\"agency\":\"G", "\"agency\":\"\\u0047");
    replace("escaped slash", "\"G09.20\"", "\"G09\\/20\"");
    let prev_hex = entry.prev.to_hex();
    replace("uppercase prev", &prev_hex, &prev_hex.to_uppercase());
    // Key order.
    replace(
        "v before seq",
        &format!("{seq},\"v\":1}}"),
        &format!("\"v\":1,{seq}}}"),
    );
    // Invalid UTF-8 inside a string.
    for (name, bad) in [
        ("lone continuation byte", &[0x80u8][..]),
        ("overlong slash", &[0xc0, 0xaf]),
        ("encoded surrogate", &[0xed, 0xa0, 0x80]),
        ("0xff", &[0xff]),
    ] {
        let at = canonical.find("G09.20").expect("typical entry") + 1;
        let mut bytes = canonical.clone().into_bytes();
        bytes.splice(at..at, bad.iter().copied());
        extra.push((format!("invalid UTF-8: {name}"), bytes));
    }
    // Lone surrogate escape.
    replace(
        "lone surrogate escape",
        "\"agency\":\"G",
        "\"agency\":\"\\ud800G",
    );
    // Deep nesting (beyond every recursion limit).
    for depth in [17usize, 127, 129, 4096, 100_000] {
        let deep = format!("\"deep\":{}1{},", "[".repeat(depth), "]".repeat(depth));
        replace(
            &format!("nesting {depth}"),
            ",\"data\":{",
            &format!(",\"data\":{{{deep}"),
        );
    }
    out.extend(extra);
    out
}

/// `verify_chunk` / `ChainVerifier` (the `verify` command's core) on arbitrary and damaged
/// entries: never a panic; an error names a seq inside the chunk.
fn check_chunk(first: u64, entries: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    match verify_chunk(first, &refs) {
        Ok(chunk) => {
            prop_assert!(chunk.leaves.len() <= refs.len());
            if let Some(e) = &chunk.error {
                clear(e)?;
            }
            let mut chain = ChainVerifier::new();
            if let Err(e) = chain.push_chunk(&chunk) {
                clear(&e)?;
            }
        }
        Err(e) => {
            clear(&e)?;
            prop_assert_eq!(e.seq, first);
        }
    }
    let mut chain = ChainVerifier::new();
    for bytes in &refs {
        if let Err(e) = chain.push(bytes) {
            clear(&e)?;
            break;
        }
    }
    Ok(())
}

fn chunk_entries() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        prop_oneof![
            junk(),
            ((0u64..8), mutations())
                .prop_map(|(seq, m)| apply(typical_entry(seq).to_canonical(), &m)),
        ],
        0..4,
    )
}

proptest! {
    #![proptest_config(config(1024))]

    /// Arbitrary bytes: no decoder panics; errors are clear; acceptance is consistent.
    #[test]
    fn entry_decoders_survive_arbitrary_bytes(bytes in junk()) {
        check_entry_decoders(&bytes)?;
    }

    /// Random damage to canonical entries (also realistic ones), applied in 1 to 3 edits.
    #[test]
    fn entry_decoders_survive_damaged_entries(
        entry in prop_oneof![any_entry(), (0u64..400).prop_map(typical_entry)],
        edits in mutations(),
    ) {
        let bytes = apply(entry.to_canonical(), &edits);
        check_entry_decoders(&bytes)?;
    }

    /// Every canonical entry is accepted by the canonical decoder, whatever its data (no false
    /// rejection of numbers, strings or nesting the writer produces).
    #[test]
    fn canonical_entries_are_accepted(entry in any_entry()) {
        let bytes = entry.to_canonical();
        let decoded = Entry::decode_canonical(&bytes);
        prop_assert!(decoded.is_ok(), "{:?} for {}", decoded, String::from_utf8_lossy(&bytes));
        prop_assert!(check_entry_decoders(&bytes)?);
    }

    /// Chunks anywhere below the top of the `u64` range.
    #[test]
    fn chain_verifier_survives_damaged_chunks(
        first in prop_oneof![Just(0u64), 0u64..1 << 53, Just(u64::MAX - 8), 0..u64::MAX - 8],
        entries in chunk_entries(),
    ) {
        check_chunk(first, &entries)?;
    }

    /// A chunk that reaches `u64::MAX`.
    #[test]
    fn chain_verifier_survives_chunks_at_u64_max(
        back in 0u64..4,
        entries in chunk_entries(),
    ) {
        check_chunk(u64::MAX - back, &entries)?;
    }
}

/// The textual variants never panic any decoder and are never accepted canonically.
#[test]
fn entry_decoders_survive_non_canonical_variants() {
    for entry in [typical_entry(0), typical_entry(3), typical_entry(7)] {
        for (name, bytes) in non_canonical_variants(&entry) {
            let result = std::panic::catch_unwind(|| check_entry_decoders(&bytes));
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("{name}: {e}"),
                Err(_) => panic!("{name}: a decoder panicked"),
            }
            assert!(
                Entry::decode_canonical(&bytes).is_err(),
                "{name}: decode_canonical accepts {}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

/// Issue 11: "every entry must be in canonical form with no duplicate keys anywhere". The
/// verification path (`Entry::decode_header`, called by `verify_chunk`, hence by `socai verify`,
/// bundles and tiles) must refuse every non-canonical spelling of an entry.
#[test]
fn verify_path_refuses_non_canonical_entries() {
    let mut accepted = Vec::new();
    for entry in [typical_entry(0), typical_entry(3)] {
        for (name, bytes) in non_canonical_variants(&entry) {
            if Entry::decode_header(&bytes).is_ok() || verify_chunk(entry.seq, &[&bytes]).is_ok() {
                accepted.push(format!("{name}: {}", String::from_utf8_lossy(&bytes)));
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "the verify path accepts {} non-canonical entries:\n{}",
        accepted.len(),
        accepted.join("\n")
    );
}

proptest! {
    #![proptest_config(config(1024))]

    /// The same, on random damage: whatever the verify path accepts is canonical.
    #[test]
    fn verify_path_accepts_only_canonical_entries(
        entry in prop_oneof![any_entry(), (0u64..400).prop_map(typical_entry)],
        edits in mutations(),
    ) {
        accepted_only_canonical(&apply(entry.to_canonical(), &edits))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Proof JSON: `InclusionProof` / `ConsistencyProof` as `socai proof verify` reads them
// (`serde_json::from_str::<Value>` then `from_value`) and as a typed reader would
// (`serde_json::from_slice::<InclusionProof>`), then `verify`.

const N: u64 = 37;

static LOG: LazyLock<Log> = LazyLock::new(|| Log::new(N));
static SIGNER: LazyLock<CheckpointSigner> = LazyLock::new(signer);
static TRUSTED: LazyLock<CheckpointVerifier> =
    LazyLock::new(|| CheckpointVerifier::from_vkey(&SIGNER.vkey()).expect("own key"));

fn signed_note(size: u64) -> String {
    let root = tree_root(size, &LOG.hashes).expect("root");
    SIGNER
        .sign(&Checkpoint {
            origin: ORIGIN.into(),
            size,
            root,
        })
        .expect("sign")
        .note
}

fn inclusion(index: u64, tree_size: u64) -> InclusionProof {
    let entry = LOG.entries[index as usize].clone();
    InclusionProof {
        leaf_index: index,
        tree_size,
        leaf_hash: leaf_hash(&entry),
        entry,
        path: prove_inclusion(tree_size, index, &LOG.hashes).expect("prove"),
        checkpoint: signed_note(tree_size),
    }
}

fn consistency(old_size: u64, new_size: u64) -> ConsistencyProof {
    ConsistencyProof {
        old_size,
        new_size,
        old_root: tree_root(old_size, &LOG.hashes).expect("root"),
        new_root: tree_root(new_size, &LOG.hashes).expect("root"),
        path: prove_consistency(old_size, new_size, &LOG.hashes).expect("prove"),
    }
}

prop_compose! {
    fn inclusion_case()(tree_size in 1..=N)(index in 0..tree_size, tree_size in Just(tree_size)) -> (u64, u64) {
        (index, tree_size)
    }
}

prop_compose! {
    fn consistency_case()(new_size in 1..=N)(old_size in 1..=new_size, new_size in Just(new_size)) -> (u64, u64) {
        (old_size, new_size)
    }
}

/// Renders a JSON object with a chosen spelling: `members` in order, one member possibly
/// repeated (with its own or another value), numbers respelled, whitespace between tokens.
#[derive(Debug, Clone)]
struct Spelling {
    /// Repeat member `i` (mod len) with value `alt` (None: the same value).
    repeat: Option<(Index, Option<String>)>,
    /// Respell the first number of member `i` (mod len) with variant `v`.
    number: Option<(Index, u8)>,
    /// Whitespace between tokens.
    pretty: bool,
    /// Reverse the member order.
    reverse: bool,
}

fn spelling() -> impl Strategy<Value = Spelling> {
    (
        prop::option::of((
            any::<Index>(),
            prop::option::of(prop_oneof![
                Just("0".to_owned()),
                Just("null".to_owned()),
                Just("\"\"".to_owned()),
                Just("[]".to_owned()),
                Just("18446744073709551615".to_owned()),
            ]),
        )),
        prop::option::of((any::<Index>(), any::<u8>())),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(repeat, number, pretty, reverse)| Spelling {
            repeat,
            number,
            pretty,
            reverse,
        })
}

fn respell_number(text: &str, variant: u8) -> String {
    match variant % 10 {
        0 => format!("{text}.0"),
        1 => format!("{text}e0"),
        2 => format!("{text}E+0"),
        3 => format!("0{text}"),
        4 => format!("-{text}"),
        5 => format!("\"{text}\""),
        6 => "1e400".to_owned(),
        7 => "18446744073709551616".to_owned(),
        8 => "-0".to_owned(),
        _ => format!("{text}0"),
    }
}

fn render(value: &Value, spelling: &Spelling) -> Vec<u8> {
    let Value::Object(map) = value else {
        return serde_json::to_vec(value).expect("json");
    };
    let mut members: Vec<(String, String)> = map
        .iter()
        .map(|(k, v)| {
            (
                serde_json::to_string(k).expect("json"),
                serde_json::to_string(v).expect("json"),
            )
        })
        .collect();
    if spelling.reverse {
        members.reverse();
    }
    if let Some((i, variant)) = spelling.number {
        let i = i.index(members.len());
        let v = &mut members[i].1;
        if let Some(start) = v.find(|c: char| c.is_ascii_digit()) {
            let end = v[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(v.len(), |e| start + e);
            let respelled = respell_number(&v[start..end], variant);
            v.replace_range(start..end, &respelled);
        }
    }
    if let Some((i, alt)) = &spelling.repeat {
        let i = i.index(members.len());
        let (key, value) = members[i].clone();
        members.push((key, alt.clone().unwrap_or(value)));
    }
    let (sep, colon, open, close) = if spelling.pretty {
        (",\n  ", " : ", "{\n  ", "\n}\n")
    } else {
        (",", ":", "{", "}")
    };
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{k}{colon}{v}"))
        .collect();
    format!("{open}{}{close}", body.join(sep)).into_bytes()
}

/// What `socai proof verify FILE` does with the file's text (audit.rs): any JSON, then the
/// inclusion proof when it has `leaf_index`, else the consistency proof.
enum CliProof {
    Inclusion(InclusionProof),
    Consistency(ConsistencyProof),
}

fn cli_parse(bytes: &[u8]) -> Result<CliProof, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if value.get("leaf_index").is_some() {
        serde_json::from_value(value)
            .map(CliProof::Inclusion)
            .map_err(|e| e.to_string())
    } else {
        serde_json::from_value(value)
            .map(CliProof::Consistency)
            .map_err(|e| e.to_string())
    }
}

/// Parses and verifies `bytes` both ways; an accepted inclusion proof must be `original` in
/// every field that matters (the entry, its position, the signed tree).
fn check_inclusion_text(bytes: &[u8], original: &InclusionProof) -> Result<(), TestCaseError> {
    let typed = serde_json::from_slice::<InclusionProof>(bytes);
    let proofs = [
        typed.map_err(|e| e.to_string()),
        match cli_parse(bytes) {
            Ok(CliProof::Inclusion(p)) => Ok(p),
            Ok(CliProof::Consistency(p)) => {
                if let Err(e) = p.verify() {
                    clear(&e)?;
                }
                Err("consistency".to_owned())
            }
            Err(e) => Err(e),
        },
    ];
    for proof in proofs {
        let proof = match proof {
            Ok(proof) => proof,
            Err(e) => {
                clear(&e)?;
                continue;
            }
        };
        match proof.verify(&TRUSTED) {
            Ok((entry, signed)) => {
                prop_assert_eq!(&proof.entry, &original.entry);
                prop_assert_eq!(entry.to_canonical(), original.entry.clone());
                prop_assert_eq!(proof.leaf_index, original.leaf_index);
                prop_assert_eq!(proof.tree_size, original.tree_size);
                prop_assert_eq!(&proof.path, &original.path);
                prop_assert_eq!(proof.leaf_hash, original.leaf_hash);
                prop_assert_eq!(signed.checkpoint.size, original.tree_size);
                prop_assert_eq!(
                    signed.checkpoint.root,
                    tree_root(original.tree_size, &LOG.hashes).expect("root")
                );
                check_note_canonical(&signed.note, &signed.checkpoint)?;
            }
            Err(e) => clear(&e)?,
        }
    }
    Ok(())
}

/// Parses and verifies `bytes`; an accepted consistency proof must be `original`, except that
/// the sizes are not bound by the hashes (see `consistency_sizes_are_bound_only_by_checkpoints`).
fn check_consistency_text(bytes: &[u8], original: &ConsistencyProof) -> Result<(), TestCaseError> {
    let typed = serde_json::from_slice::<ConsistencyProof>(bytes).map_err(|e| e.to_string());
    let cli = match cli_parse(bytes) {
        Ok(CliProof::Consistency(p)) => Ok(p),
        Ok(CliProof::Inclusion(p)) => {
            if let Err(e) = p.verify(&TRUSTED) {
                clear(&e)?;
            }
            Err("inclusion".to_owned())
        }
        Err(e) => Err(e),
    };
    for proof in [typed, cli] {
        let proof = match proof {
            Ok(proof) => proof,
            Err(e) => {
                clear(&e)?;
                continue;
            }
        };
        match proof.verify() {
            Ok(()) => {
                prop_assert_eq!(proof.old_root, original.old_root);
                prop_assert_eq!(proof.new_root, original.new_root);
                prop_assert_eq!(&proof.path, &original.path);
                if (proof.old_size, proof.new_size) != (original.old_size, original.new_size) {
                    // Accepted with other sizes: only where the same hashes combine the same way.
                    prop_assert_eq!(proof.old_size, original.old_size);
                    prop_assert_eq!(proof.path.len(), original.path.len());
                }
            }
            Err(e) => clear(&e)?,
        }
    }
    Ok(())
}

/// A structural edit of a proof's value (before rendering).
fn edit_value(value: &mut Value, key: Index, how: u8, hash_byte: Index) {
    let Value::Object(map) = value else { return };
    let keys: Vec<String> = map.keys().cloned().collect();
    let key = &keys[key.index(keys.len())];
    let v = map.get_mut(key).expect("key");
    match (how % 8, &mut *v) {
        (0, Value::Number(n)) => {
            let n = n.as_u64().unwrap_or(0).wrapping_add(1);
            *v = json!(n);
        }
        (1, Value::Number(n)) => {
            let n = n.as_u64().unwrap_or(0).wrapping_sub(1);
            *v = json!(n);
        }
        (2, Value::Number(_)) => *v = json!(u64::MAX),
        (3, Value::Array(items)) if !items.is_empty() => {
            let i = hash_byte.index(items.len());
            items.remove(i);
        }
        (4, Value::Array(items)) => {
            let dup = items.first().cloned().unwrap_or(json!(Hash::ZERO));
            items.push(dup);
        }
        (5, Value::Array(items)) if items.len() > 1 => items.swap(0, 1),
        (_, Value::String(s)) if !s.is_empty() => {
            // Damage one character of a hash, base64 or note text.
            let i = hash_byte.index(s.len());
            if s.is_char_boundary(i) && s.is_char_boundary(i + 1) {
                let c = s.as_bytes()[i];
                let swapped = match c {
                    b'0'..=b'8' | b'a'..=b'e' | b'A'..=b'Y' => c + 1,
                    _ => b'0',
                };
                s.replace_range(i..i + 1, std::str::from_utf8(&[swapped]).expect("ascii"));
            }
        }
        (_, Value::Array(items)) if !items.is_empty() => {
            let i = hash_byte.index(items.len());
            items[i] = json!(Hash([0x11; 32]));
        }
        _ => {
            map.remove(key);
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes as proof JSON: both readers, no panic, clear errors.
    #[test]
    fn proof_json_survives_arbitrary_bytes(bytes in junk()) {
        check_inclusion_text(&bytes, &inclusion(0, 1))?;
        check_consistency_text(&bytes, &consistency(1, 1))?;
    }

    /// Valid inclusion proofs, respelled (repeated keys, number formats, whitespace, order) and
    /// damaged (structurally and byte-wise): accepted only when the content is the genuine one.
    #[test]
    fn inclusion_proofs_verify_only_when_genuine(
        (index, tree_size) in inclusion_case(),
        spelling in spelling(),
        edit in prop::option::of((any::<Index>(), any::<u8>(), any::<Index>())),
        bytes_edits in prop::option::of(mutations()),
    ) {
        let original = inclusion(index, tree_size);
        let mut value = serde_json::to_value(&original).expect("json");
        if let Some((key, how, at)) = edit {
            edit_value(&mut value, key, how, at);
        }
        let mut bytes = render(&value, &spelling);
        if let Some(m) = &bytes_edits {
            bytes = apply(bytes, m);
        }
        check_inclusion_text(&bytes, &original)?;
        // The untouched proof does verify.
        prop_assert!(original.verify(&TRUSTED).is_ok());
    }

    /// Valid consistency proofs, respelled and damaged.
    #[test]
    fn consistency_proofs_verify_only_when_genuine(
        (old_size, new_size) in consistency_case(),
        spelling in spelling(),
        edit in prop::option::of((any::<Index>(), any::<u8>(), any::<Index>())),
        bytes_edits in prop::option::of(mutations()),
    ) {
        let original = consistency(old_size, new_size);
        let mut value = serde_json::to_value(&original).expect("json");
        if let Some((key, how, at)) = edit {
            edit_value(&mut value, key, how, at);
        }
        let mut bytes = render(&value, &spelling);
        if let Some(m) = &bytes_edits {
            bytes = apply(bytes, m);
        }
        check_consistency_text(&bytes, &original)?;
        prop_assert!(original.verify().is_ok());
    }

    /// Proof verification on arbitrary numbers and paths (sizes near u64::MAX, empty and long
    /// paths): errors, never a panic or an overflow.
    #[test]
    fn proof_verifiers_survive_arbitrary_sizes(
        a in prop_oneof![0u64..64, Just(u64::MAX), Just(u64::MAX - 1), Just(1 << 63), any::<u64>()],
        b in prop_oneof![0u64..64, Just(u64::MAX), Just(u64::MAX - 1), Just(1 << 63), any::<u64>()],
        path in prop::collection::vec(any::<[u8; 32]>().prop_map(Hash), 0..70),
        entry in 0..N,
    ) {
        let p = ConsistencyProof {
            old_size: a,
            new_size: b,
            old_root: Hash([1; 32]),
            new_root: Hash([2; 32]),
            path: path.clone(),
        };
        if let Err(e) = p.verify() {
            clear(&e)?;
        }
        let mut proof = inclusion(entry, N);
        proof.leaf_index = a;
        proof.tree_size = b;
        proof.path = path;
        match proof.verify(&TRUSTED) {
            Ok(_) => prop_assert_eq!((a, b), (entry, N)),
            Err(e) => clear(&e)?,
        }
    }
}

/// An observation, not a parser bug: a consistency proof's sizes are not bound by its hashes.
/// `(2 → 3)` with path `[leaf 2]` also verifies as `(2 → 4)`, since both compute
/// `new_root = node(old_root, path[0])`. Only signed checkpoints (which sign size and root
/// together) bind the sizes; `socai proof verify` compares them when given `--checkpoint`.
#[test]
fn consistency_sizes_are_bound_only_by_checkpoints() {
    let genuine = consistency(2, 3);
    let relabelled = ConsistencyProof {
        new_size: 4,
        ..genuine.clone()
    };
    assert!(genuine.verify().is_ok());
    assert!(relabelled.verify().is_ok());
    assert_ne!(relabelled.new_root, tree_root(4, &LOG.hashes).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Export bundles: `serde_json::from_slice::<Bundle>` (as `socai audit bundle` reads a file),
// then `Bundle::verify`.

fn export(from: u64, to: u64, tree_size: u64) -> Bundle {
    let consistency = if to == tree_size || to == 0 {
        vec![]
    } else {
        prove_consistency(to, tree_size, &LOG.hashes).expect("prove")
    };
    let personal = (from..to)
        .filter_map(|seq| {
            let id = Entry::decode(&LOG.entries[seq as usize])
                .expect("entry")
                .event_id()
                .to_owned();
            personal(seq).map(|p| PersonalDisclosure {
                seq,
                salt: hex::encode(personal_salt(SALT_KEY, &id)),
                personal: p,
            })
        })
        .collect();
    Bundle {
        format: BUNDLE_FORMAT.into(),
        vkey: SIGNER.vkey(),
        checkpoint: signed_note(tree_size),
        tree_size,
        from,
        to,
        frontier: LOG
            .hashes
            .read_hashes(&frontier_indexes(from))
            .expect("frontier"),
        entries: LOG.entries[from as usize..to as usize].to_vec(),
        consistency,
        personal,
    }
}

prop_compose! {
    fn bundle_case()(tree_size in 1..=N)(
        from in 0..=tree_size, len in 0..=tree_size, tree_size in Just(tree_size),
    ) -> (u64, u64, u64) {
        (from, (from + len).min(tree_size), tree_size)
    }
}

fn check_bundle_bytes(bytes: &[u8], original: &Bundle) -> Result<(), TestCaseError> {
    let bundle = match serde_json::from_slice::<Bundle>(bytes) {
        Ok(bundle) => bundle,
        Err(e) => return clear(&e),
    };
    check_bundle(&bundle, original)
}

fn check_bundle(bundle: &Bundle, original: &Bundle) -> Result<(), TestCaseError> {
    for trusted in [Some(&*TRUSTED), None] {
        match bundle.verify(trusted) {
            Ok(report) => {
                prop_assert_eq!(
                    (bundle.from, bundle.to, bundle.tree_size),
                    (original.from, original.to, original.tree_size)
                );
                prop_assert_eq!(&bundle.entries, &original.entries);
                prop_assert_eq!(&bundle.frontier, &original.frontier);
                prop_assert_eq!(&bundle.consistency, &original.consistency);
                for p in &bundle.personal {
                    prop_assert!(original.personal.contains(p), "disclosure {p:?}");
                }
                prop_assert_eq!(report.personal_checked, bundle.personal.len());
                prop_assert_eq!(
                    report.root,
                    tree_root(original.tree_size, &LOG.hashes).expect("root")
                );
                if trusted.is_some() {
                    let signed = TRUSTED.verify(&bundle.checkpoint).expect("verified");
                    check_note_canonical(&bundle.checkpoint, &signed.checkpoint)?;
                }
            }
            // Without a trusted key, a bundle's own (damaged) key may verify it: that case is
            // reported as untrusted and is covered by `self_signed_bundles_survive_any_sizes`.
            Err(e) => clear(&e)?,
        }
    }
    Ok(())
}

/// A bundle signed by its own key (verified with `trusted = None`): the attacker picks every
/// number. Never a panic; accepted only as untrusted.
fn check_self_signed_bundle(
    tree_size: u64,
    from_back: u64,
    len: u64,
    seq_offset: u64,
    frontier_len: Option<usize>,
    consistency_len: usize,
) -> Result<(), TestCaseError> {
    let (key, _, vkey) = CheckpointSigner::generate("attacker.example/log").expect("key");
    let from = tree_size.saturating_sub(from_back);
    let to = from.saturating_add(len).min(tree_size);
    let entries: Vec<Vec<u8>> = (from..to)
        .map(|seq| {
            // Entries whose `seq` the serde path reads exactly (not canonical beyond 2^53).
            let text = String::from_utf8(typical_entry(0).to_canonical()).expect("utf8");
            let seq = format!("\"seq\":{}", seq.wrapping_add(seq_offset));
            text.replacen("\"seq\":0", &seq, 1).into_bytes()
        })
        .collect();
    let frontier = vec![Hash([3; 32]); frontier_len.unwrap_or(from.count_ones() as usize)];
    let checkpoint = key
        .sign(&Checkpoint {
            origin: key.name().to_owned(),
            size: tree_size,
            root: Hash([4; 32]),
        })
        .expect("sign")
        .note;
    let bundle = Bundle {
        format: BUNDLE_FORMAT.into(),
        vkey,
        checkpoint,
        tree_size,
        from,
        to,
        frontier,
        entries,
        consistency: vec![Hash([5; 32]); consistency_len],
        personal: vec![],
    };
    match bundle.verify(None) {
        Ok(report) => prop_assert!(!report.key_trusted),
        Err(e) => clear(&e)?,
    }
    // And through JSON, as a file would arrive.
    let text = serde_json::to_vec(&bundle).expect("json");
    let parsed: Bundle = serde_json::from_slice(&text).expect("round trip");
    prop_assert_eq!(&parsed, &bundle);
    Ok(())
}

proptest! {
    #![proptest_config(config(384))]

    /// Arbitrary bytes as a bundle file.
    #[test]
    fn bundle_json_survives_arbitrary_bytes(bytes in junk()) {
        check_bundle_bytes(&bytes, &export(0, 1, 1))?;
    }

    /// Valid bundles, respelled and damaged: accepted only with the genuine entries and range.
    #[test]
    fn bundles_verify_only_when_genuine(
        (from, to, tree_size) in bundle_case(),
        spelling in spelling(),
        edit in prop::option::of((any::<Index>(), any::<u8>(), any::<Index>())),
        bytes_edits in prop::option::of(mutations()),
    ) {
        let original = export(from, to, tree_size);
        prop_assert!(original.verify(Some(&TRUSTED)).is_ok());
        let mut value = serde_json::to_value(&original).expect("json");
        if let Some((key, how, at)) = edit {
            edit_value(&mut value, key, how, at);
        }
        let mut bytes = render(&value, &spelling);
        if let Some(m) = &bytes_edits {
            bytes = apply(bytes, m);
        }
        check_bundle_bytes(&bytes, &original)?;
    }

    /// Damage inside the bundle's entries, frontier and disclosures (below the JSON level).
    #[test]
    fn bundles_with_damaged_entries_fail(
        (from, to, tree_size) in bundle_case(),
        which in any::<Index>(),
        edits in mutations(),
        frontier_edit in prop::option::of((any::<Index>(), any::<[u8; 32]>())),
        personal_edit in prop::option::of((any::<Index>(), any_json())),
    ) {
        let original = export(from, to, tree_size);
        let mut bundle = original.clone();
        if !bundle.entries.is_empty() {
            let i = which.index(bundle.entries.len());
            bundle.entries[i] = apply(bundle.entries[i].clone(), &edits);
        }
        if let Some((i, h)) = frontier_edit
            && !bundle.frontier.is_empty()
        {
            let i = i.index(bundle.frontier.len());
            bundle.frontier[i] = Hash(h);
        }
        if let Some((i, v)) = personal_edit
            && !bundle.personal.is_empty()
        {
            let i = i.index(bundle.personal.len());
            bundle.personal[i].personal = v;
        }
        check_bundle(&bundle, &original)?;
    }

    /// A bundle signed by its own key (verified with `trusted = None`): the attacker picks every
    /// number (sizes up to `u64::MAX - 1`; `u64::MAX` itself: `self_signed_bundles_of_size_u64_max`).
    #[test]
    fn self_signed_bundles_survive_any_sizes(
        tree_size in prop_oneof![0u64..8, Just(u64::MAX - 1), Just(1 << 63), 0..u64::MAX],
        from_back in prop_oneof![0u64..4, any::<u64>()],
        len in 0u64..3,
        seq_offset in 0u64..2,
        frontier_len in prop_oneof![Just(None), (0usize..70).prop_map(Some)],
        consistency_len in 0usize..3,
    ) {
        check_self_signed_bundle(tree_size, from_back, len, seq_offset, frontier_len, consistency_len)?;
    }

    /// The same at the very top of the `u64` range.
    #[test]
    fn self_signed_bundles_of_size_u64_max(
        from_back in 0u64..4,
        len in 0u64..3,
        seq_offset in 0u64..2,
        frontier_len in prop_oneof![Just(None), (0usize..70).prop_map(Some)],
        consistency_len in 0usize..3,
    ) {
        check_self_signed_bundle(u64::MAX, from_back, len, seq_offset, frontier_len, consistency_len)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Entry bundles, hash tiles and tile paths (tlog-tiles): `split_entry_bundle`,
// `split_hash_tile`, `Tile::parse`, `TiledVerifier::{push_bundle, check_hash_tile, finish}`.

fn bundle_bytes(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (seq, e) in entries.iter().enumerate() {
        push_bundle_entry(&mut out, seq as u64, e).expect("small entry");
    }
    out
}

/// A path as a client might send it: canonical ones, near misses and junk.
fn tile_path() -> impl Strategy<Value = String> {
    let group = prop_oneof![
        "[0-9]{3}",
        "x[0-9]{3}",
        "[0-9]{1,4}",
        "x?[0-9x]{0,4}",
        Just("x000".to_owned()),
        Just("x999".to_owned()),
    ];
    let head = prop_oneof![
        "[0-7]",
        "[0-9]{1,3}",
        Just("entries".to_owned()),
        Just("".to_owned()),
        "[a-z.]{0,8}",
    ];
    let width = prop_oneof![
        Just(String::new()),
        "\\.p/[0-9]{1,4}",
        Just(".p/".to_owned()),
        Just(".p/256".to_owned()),
        Just(".p/0".to_owned()),
        "\\.p/[0-9a-z/.]{0,5}",
    ];
    // Canonical paths of arbitrary tiles (any level byte, index, width), possibly edited.
    let kind = prop_oneof![
        Just(TileKind::Entries),
        (0u8..8).prop_map(|level| TileKind::Hashes { level }),
        any::<u8>().prop_map(|level| TileKind::Hashes { level }),
    ];
    let index = prop_oneof![
        0u64..2000,
        any::<u64>(),
        Just(u64::MAX),
        Just(u64::MAX / 256)
    ];
    let canonical = (kind, index, 1..=TILE_WIDTH, prop::option::of(mutations())).prop_map(
        |(kind, index, width, edits)| {
            let path = Tile { kind, index, width }.path();
            let path = path.strip_prefix("tile/").unwrap_or(&path).to_owned();
            match edits {
                Some(m) => String::from_utf8_lossy(&apply(path.into_bytes(), &m)).into_owned(),
                None => path,
            }
        },
    );
    prop_oneof![
        2 => canonical,
        1 => (head, prop::collection::vec(group, 0..9), width)
            .prop_map(|(h, groups, w)| format!("{h}/{}{w}", groups.join("/"))),
        1 => any::<String>(),
        1 => "[0-9x./pentris]{0,40}",
    ]
}

/// A log large enough for a full entry bundle, a partial one and a level-1 hash tile.
static BIG: LazyLock<Log> = LazyLock::new(|| Log::new(300));

fn serve(tile: &Tile) -> Vec<u8> {
    match tile.kind {
        TileKind::Hashes { .. } => hash_tile(tile, &BIG.hashes).expect("hash tile"),
        TileKind::Entries => {
            let first = tile.first_leaf() as usize;
            bundle_bytes(&BIG.entries[first..first + tile.width as usize])
        }
    }
}

/// Verifies the first `size` entries of `BIG` from tiles, with `damage` applied to the
/// `target`-th tile served. Returns the verifier's verdict and whether anything was changed.
fn verify_tiles(
    size: u64,
    target: usize,
    damage: &dyn Fn(Vec<u8>) -> Vec<u8>,
) -> Result<(bool, bool), TestCaseError> {
    let root = tree_root(size, &BIG.hashes).expect("root");
    let pinned: BTreeMap<u64, Hash> = [size / 2, size]
        .into_iter()
        .filter(|s| *s > 0)
        .map(|s| (s, tree_root(s, &BIG.hashes).expect("root")))
        .collect();
    let mut v = TiledVerifier::new(size, root, pinned);
    let served = std::cell::Cell::new(0usize);
    let changed = std::cell::Cell::new(false);
    let next = |tile: &Tile| {
        let honest = serve(tile);
        let bytes = if served.get() == target {
            damage(honest.clone())
        } else {
            honest.clone()
        };
        served.set(served.get() + 1);
        changed.set(changed.get() || bytes != honest);
        bytes
    };
    for bundle in v.bundles() {
        let entries = next(&bundle);
        // Re-joining the split entries gives back the bundle.
        if let Ok(split) = split_entry_bundle(&entries) {
            let owned: Vec<Vec<u8>> = split.iter().map(|e| e.to_vec()).collect();
            prop_assert_eq!(bundle_bytes(&owned), entries.clone());
        }
        let level0 = next(&Tile {
            kind: TileKind::Hashes { level: 0 },
            ..bundle
        });
        if let Err(e) = v.push_bundle(&bundle, &entries, &level0) {
            clear(&e)?;
            return Ok((false, changed.get()));
        }
    }
    for tile in v.hash_tiles() {
        let bytes = next(&tile);
        if let Err(e) = v.check_hash_tile(&tile, &bytes) {
            clear(&e)?;
            return Ok((false, changed.get()));
        }
    }
    match v.finish() {
        Ok(report) => {
            prop_assert_eq!(report.entries, size);
            Ok((true, changed.get()))
        }
        Err(e) => {
            clear(&e)?;
            Ok((false, changed.get()))
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Entry bundles from arbitrary bytes: no panic; an accepted bundle re-joins to the input.
    #[test]
    fn entry_bundles_rejoin_or_fail(
        bytes in prop_oneof![
            junk(),
            (prop::collection::vec(junk(), 0..5), prop::option::of(mutations()))
                .prop_map(|(entries, m)| {
                    let b = bundle_bytes(&entries);
                    match m { Some(m) => apply(b, &m), None => b }
                }),
            // Overlong and short length prefixes.
            (prop::collection::vec(junk(), 1..4), any::<Index>(), any::<u16>()).prop_map(|(entries, i, len)| {
                let mut b = bundle_bytes(&entries);
                let mut offsets = vec![];
                let mut at = 0;
                for e in &entries {
                    offsets.push(at);
                    at += 2 + e.len();
                }
                let o = offsets[i.index(offsets.len())];
                b[o..o + 2].copy_from_slice(&len.to_be_bytes());
                b
            }),
        ],
    ) {
        match split_entry_bundle(&bytes) {
            Ok(entries) => {
                let owned: Vec<Vec<u8>> = entries.iter().map(|e| e.to_vec()).collect();
                prop_assert_eq!(bundle_bytes(&owned), bytes.clone());
            }
            Err(e) => clear(&e)?,
        }
        match split_hash_tile(&bytes) {
            Some(hashes) => {
                let joined: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
                prop_assert_eq!(joined, bytes);
            }
            None => prop_assert!(!bytes.len().is_multiple_of(32)),
        }
    }

    /// Tile paths: no panic; an accepted path is the tile's one canonical spelling, within the
    /// spec's bounds, and its size arithmetic never overflows.
    #[test]
    fn tile_paths_are_canonical_or_refused(path in tile_path()) {
        match Tile::parse(&path) {
            Ok(tile) => {
                prop_assert_eq!(tile.path(), format!("tile/{path}"));
                prop_assert!((1..=TILE_WIDTH).contains(&tile.width));
                if let TileKind::Hashes { level } = tile.kind {
                    prop_assert!(level <= 7);
                }
                prop_assert_eq!(Tile::parse(&path), Ok(tile));
                let _ = tile.is_full();
                let _ = tile.tree_level();
                // The server's guard: only tiles of a real tree size go further.
                if tile.tree_size_needed().is_some() {
                    let _ = tile.first_leaf();
                }
            }
            Err(e) => clear(&e)?,
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// A tiled audit of served tiles with one tile damaged: it passes only if nothing changed.
    #[test]
    fn tiled_verifier_accepts_only_genuine_tiles(
        size in prop_oneof![1u64..=300, Just(256u64), Just(257u64), Just(300u64)],
        target in 0usize..6,
        edits in mutations(),
    ) {
        let (ok, changed) = verify_tiles(size, target, &|bytes| apply(bytes, &edits))?;
        prop_assert!(!(ok && changed), "a damaged tile was accepted");
    }

    /// The same with a tile replaced by arbitrary bytes.
    #[test]
    fn tiled_verifier_survives_arbitrary_tiles(
        size in 1u64..=300,
        target in 0usize..6,
        junk in junk(),
    ) {
        let (ok, changed) = verify_tiles(size, target, &|_| junk.clone())?;
        prop_assert!(!(ok && changed), "a replaced tile was accepted");
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Any parsed tile (the coordinates, too, come from outside: a server's path, a client's
    /// list) handed to the accessors and the tiled verifier: errors, never a panic.
    #[test]
    fn tiled_verifier_survives_any_parsed_tile(path in tile_path(), bytes in junk()) {
        if let Ok(tile) = Tile::parse(&path) {
            let _ = tile.first_leaf();
            let root = tree_root(1, &BIG.hashes).expect("root");
            let mut v = TiledVerifier::new(1, root, BTreeMap::new());
            if let Err(e) = v.check_hash_tile(&tile, &bytes) {
                clear(&e)?;
            }
            let mut v = TiledVerifier::new(1, root, BTreeMap::new());
            if let Err(e) = v.push_bundle(&tile, &bytes, &bytes) {
                clear(&e)?;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signed notes and verifier keys: `CheckpointVerifier::from_vkey`, `CheckpointVerifier::verify`
// (signed-note parsing, the checkpoint body, signature lines).

/// An accepted note is the canonical note of its checkpoint: the body exactly as
/// `Checkpoint::body` writes it, a blank line, and signature lines that re-serialize to
/// themselves.
fn check_note_canonical(note: &str, checkpoint: &Checkpoint) -> Result<(), TestCaseError> {
    let (body, sigs) = note
        .split_once("\n\n")
        .ok_or_else(|| TestCaseError::fail("accepted note without a blank line"))?;
    prop_assert_eq!(format!("{body}\n"), checkpoint.body(), "note {:?}", note);
    let parsed = signed_note::Note::from_bytes(note.as_bytes())
        .map_err(|e| TestCaseError::fail(format!("accepted note does not reparse: {e}")))?;
    prop_assert_eq!(
        String::from_utf8(parsed.to_bytes()).expect("utf8"),
        note.to_owned()
    );
    prop_assert!(sigs.ends_with('\n'));
    Ok(())
}

fn check_note(note: &str, original: &Checkpoint) -> Result<(), TestCaseError> {
    match TRUSTED.verify(note) {
        Ok(signed) => {
            prop_assert_eq!(&signed.checkpoint, original);
            prop_assert_eq!(&signed.note, note);
            check_note_canonical(note, &signed.checkpoint)?;
        }
        Err(e) => clear(&e)?,
    }
    Ok(())
}

/// An accepted verifier key is the one it was made from (`vkey()`), names the same key id, and
/// (with `canonical`) is spelled `<name>+<8 lowercase hex>+<base64>`.
fn check_vkey(text: &str, canonical: bool) -> Result<(), TestCaseError> {
    match CheckpointVerifier::from_vkey(text) {
        Ok(v) => {
            prop_assert_eq!(v.vkey(), text);
            let mut parts = text.splitn(3, '+');
            prop_assert_eq!(parts.next(), Some(v.name()));
            let id = parts.next().unwrap_or_default();
            prop_assert_eq!(u32::from_str_radix(id, 16), Ok(v.key_id()));
            if canonical {
                let key = parts.next().unwrap_or_default();
                prop_assert_eq!(
                    format!("{}+{:08x}+{}", v.name(), v.key_id(), key),
                    text,
                    "accepted a non-canonical verifier key"
                );
            }
        }
        Err(e) => clear(&e)?,
    }
    Ok(())
}

/// Signature lines other keys may add (unknown to the verifier, so ignored by it).
fn other_signature() -> impl Strategy<Value = String> {
    ("[a-z.]{1,10}", prop::collection::vec(any::<u8>(), 5..80)).prop_map(|(name, sig)| {
        use base64::Engine;
        format!(
            "— {name} {}\n",
            base64::engine::general_purpose::STANDARD.encode(sig)
        )
    })
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary text as a note and as a verifier key.
    #[test]
    fn notes_and_keys_survive_arbitrary_text(bytes in junk()) {
        let text = String::from_utf8_lossy(&bytes);
        check_note(&text, &Checkpoint { origin: ORIGIN.into(), size: 0, root: Hash::ZERO })?;
        check_vkey(&text, false)?;
    }

    /// Valid notes, damaged: accepted only with the genuine checkpoint, in canonical form.
    #[test]
    fn damaged_notes_verify_only_when_genuine(
        size in 0..=N,
        extra in prop::collection::vec(other_signature(), 0..3),
        extra_first in any::<bool>(),
        edits in prop::option::of(mutations()),
    ) {
        let note = signed_note(size);
        let (body, own) = note.split_once("\n\n").expect("note");
        let extra = extra.concat();
        let note = if extra_first {
            format!("{body}\n\n{extra}{own}")
        } else {
            format!("{body}\n\n{own}{extra}")
        };
        let original = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: tree_root(size, &LOG.hashes).expect("root"),
        };
        if edits.is_none() {
            prop_assert!(TRUSTED.verify(&note).is_ok());
        }
        let bytes = match &edits {
            Some(m) => apply(note.into_bytes(), m),
            None => note.into_bytes(),
        };
        check_note(&String::from_utf8_lossy(&bytes), &original)?;
    }

    /// A key holder signing a body of their own making (as in a self-signed bundle): only the
    /// canonical body of a checkpoint is accepted (no size `01` or `+1`, no extension lines,
    /// no other base64 spelling of the root).
    #[test]
    fn only_canonical_bodies_verify(
        size in prop_oneof![0u64..1000, Just(u64::MAX)],
        root in any::<[u8; 32]>(),
        edits in mutations(),
    ) {
        let (skey, verifier) = &*OWN_KEY;
        let signer = signed_note::StandardSigner::new(skey).expect("skey");
        let checkpoint = Checkpoint { origin: ORIGIN.into(), size, root: Hash(root) };
        let body = apply(checkpoint.body().into_bytes(), &edits);
        if let Ok(mut note) = signed_note::Note::new(&body, &[]) {
            note.add_sigs(&[&signer]).expect("sign");
            let text = String::from_utf8(note.to_bytes()).expect("utf8");
            match verifier.verify(&text) {
                Ok(signed) => {
                    prop_assert_eq!(
                        signed.checkpoint.body().into_bytes(),
                        body,
                        "accepted a non-canonical checkpoint body"
                    );
                    check_note_canonical(&text, &signed.checkpoint)?;
                }
                Err(e) => clear(&e)?,
            }
        }
    }

    /// Valid verifier keys, damaged: refused with a clear error, or the same key.
    #[test]
    fn damaged_verifier_keys_are_refused_or_the_same_key(edits in prop::option::of(mutations()), upper in any::<bool>()) {
        check_vkey(&damaged_vkey(&edits, upper), false)?;
    }

    /// The same, and an accepted key text is in its one canonical spelling.
    #[test]
    fn damaged_verifier_keys_are_refused_or_canonical(edits in prop::option::of(mutations()), upper in any::<bool>()) {
        check_vkey(&damaged_vkey(&edits, upper), true)?;
    }
}

/// `SIGNER`'s verifier key, its id possibly in uppercase hex, then damaged.
fn damaged_vkey(edits: &Option<Vec<Mutation>>, upper: bool) -> String {
    let vkey = SIGNER.vkey();
    let vkey = if upper {
        let mut parts: Vec<String> = vkey.splitn(3, '+').map(str::to_owned).collect();
        parts[1] = parts[1].to_uppercase();
        parts.join("+")
    } else {
        vkey
    };
    String::from_utf8_lossy(&apply(
        vkey.into_bytes(),
        edits.as_deref().unwrap_or_default(),
    ))
    .into_owned()
}

/// A key whose private text we hold (signed_note's own signer signs arbitrary bodies with it).
static OWN_KEY: LazyLock<(String, CheckpointVerifier)> = LazyLock::new(|| {
    let (_, skey, vkey) = CheckpointSigner::generate(ORIGIN).expect("key");
    (skey, CheckpointVerifier::from_vkey(&vkey).expect("own key"))
});

/// The individual panics behind `tiled_verifier_survives_any_parsed_tile`, each on a path that
/// `Tile::parse` accepts.
#[test]
fn tile_functions_survive_extreme_parsed_tiles() {
    let root = tree_root(1, &BIG.hashes).expect("root");
    type Call = Box<dyn Fn(Tile)>;
    let cases: Vec<(&str, &str, Call)> = vec![
        (
            "Tile::first_leaf",
            "entries/x072/x057/x594/x037/x927/936.p/1",
            Box::new(|t: Tile| {
                let _ = t.first_leaf();
            }),
        ),
        (
            "TiledVerifier::push_bundle",
            "entries/x072/x057/x594/x037/x927/936.p/1",
            Box::new(move |t: Tile| {
                drop(TiledVerifier::new(1, root, BTreeMap::new()).push_bundle(&t, b"", b""))
            }),
        ),
        (
            "TiledVerifier::check_hash_tile (level 0)",
            "0/000.p/1",
            Box::new(move |t: Tile| {
                drop(TiledVerifier::new(1, root, BTreeMap::new()).check_hash_tile(&t, &[0; 32]))
            }),
        ),
        (
            "TiledVerifier::check_hash_tile (huge index)",
            "1/x072/x057/x594/x037/x927/936.p/1",
            Box::new(move |t: Tile| {
                drop(TiledVerifier::new(1, root, BTreeMap::new()).check_hash_tile(&t, &[0; 32]))
            }),
        ),
    ];
    let mut panics = Vec::new();
    for (function, path, call) in cases {
        let Ok(tile) = Tile::parse(path) else {
            continue;
        };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(tile))).is_err() {
            panics.push(format!("{function} on Tile::parse({path:?})"));
        }
    }
    assert!(panics.is_empty(), "panics:\n{}", panics.join("\n"));
}

/// The panics behind `chain_verifier_survives_chunks_at_u64_max` and
/// `self_signed_bundles_of_size_u64_max`, minimal.
#[test]
fn verify_chunk_survives_the_top_of_the_range() {
    let mut panics = Vec::new();
    let at_max = format!(
        "{{\"event\":{{\"agency\":\"a\",\"data\":{{}},\"dossier\":\"d\",\"id\":\"i\",\"occurred_at\":\"o\",\"procedure\":\"p\",\"schema\":1,\"type\":\"t\"}},\"prev\":\"{}\",\"recorded_at\":\"r\",\"seq\":{},\"v\":1}}",
        Hash::ZERO,
        u64::MAX - 1
    );
    let cases: Vec<(String, u64, Vec<&[u8]>)> = vec![
        ("verify_chunk(u64::MAX, &[])".into(), u64::MAX, vec![]),
        (
            format!("verify_chunk(u64::MAX - 1, &[{at_max:?}])"),
            u64::MAX - 1,
            vec![at_max.as_bytes()],
        ),
    ];
    for (name, first, entries) in cases {
        if std::panic::catch_unwind(|| verify_chunk(first, &entries)).is_err() {
            panics.push(name);
        }
    }
    // Through a self-signed bundle of tree size u64::MAX (`Bundle::verify(None)`).
    let (key, _, vkey) = CheckpointSigner::generate("attacker.example/log").expect("key");
    let checkpoint = key
        .sign(&Checkpoint {
            origin: key.name().to_owned(),
            size: u64::MAX,
            root: Hash::ZERO,
        })
        .expect("sign")
        .note;
    let bundle = Bundle {
        format: BUNDLE_FORMAT.into(),
        vkey,
        checkpoint,
        tree_size: u64::MAX,
        from: u64::MAX,
        to: u64::MAX,
        frontier: vec![Hash::ZERO; 64],
        entries: vec![],
        consistency: vec![],
        personal: vec![],
    };
    if std::panic::catch_unwind(|| bundle.verify(None)).is_err() {
        panics.push(
            "Bundle::verify(None) of a self-signed bundle with tree_size = from = to = u64::MAX"
                .into(),
        );
    }
    assert!(panics.is_empty(), "panics:\n{}", panics.join("\n"));
}

/// The minimal input behind `damaged_verifier_keys_are_refused_or_canonical`: a verifier key
/// whose id is spelled in uppercase hex is accepted, and `vkey()` then hands that spelling on
/// (into bundles and reports), so one key has several texts.
#[test]
fn verifier_key_ids_have_one_spelling() {
    // A key whose id has a hex letter in it.
    let vkey = std::iter::repeat_with(|| CheckpointSigner::generate(ORIGIN).expect("key").2)
        .find(|v| {
            v.split('+')
                .nth(1)
                .is_some_and(|id| id.bytes().any(|b| b.is_ascii_alphabetic()))
        })
        .expect("some key id has a letter");
    let mut parts: Vec<String> = vkey.splitn(3, '+').map(str::to_owned).collect();
    parts[1] = parts[1].to_uppercase();
    let upper = parts.join("+");
    assert!(
        CheckpointVerifier::from_vkey(&upper).is_err(),
        "from_vkey accepts {upper:?}, the non-canonical spelling of {vkey:?}"
    );
}
