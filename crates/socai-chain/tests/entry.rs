//! Entries: canonical bytes, strict decoding (both paths agree), personal-data commitments.

mod common;

use serde_json::{Value, json};
use socai_chain::entry::{
    Entry, EntryError, EntryHeader, canonical_json, check_personal, personal_commitment,
    personal_salt,
};
use socai_chain::{Hash, leaf_hash};

const PREV: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn sample() -> Value {
    json!({
        "v": 1, "seq": 7, "prev": PREV, "recorded_at": "2026-06-09T01:15:00Z",
        "event": {"id": "E1", "type": "dossier.submitted", "agency": "G09.20", "procedure": "1.004227",
                  "dossier": "D1", "occurred_at": "2026-06-09T08:15:00+07:00", "schema": 1,
                  "data": {"channel": "online"}},
    })
}

/// `sample()` changed by `edit`, as JSON text.
fn edited(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = sample();
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn round_trip_is_canonical() {
    for seq in 0..30 {
        let e = common::entry(seq, leaf_hash(&seq.to_be_bytes()));
        let bytes = e.to_canonical();
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        assert_eq!(Entry::decode_canonical(&bytes).unwrap(), e);
        let header = Entry::decode_header(&bytes).unwrap();
        assert_eq!(
            header,
            EntryHeader {
                seq,
                prev: e.prev,
                personal_commitment: e.personal_commitment
            }
        );
        assert_eq!(
            canonical_json(&serde_json::from_slice(&bytes).unwrap()),
            bytes
        );
    }
}

#[test]
fn canonical_form_is_exact() {
    let e = Entry::decode(&serde_json::to_vec(&sample()).unwrap()).unwrap();
    let expected = concat!(
        r#"{"event":{"agency":"G09.20","data":{"channel":"online"},"dossier":"D1","id":"E1","#,
        r#""occurred_at":"2026-06-09T08:15:00+07:00","procedure":"1.004227","schema":1,"type":"dossier.submitted"},"#,
        r#""prev":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","#,
        r#""recorded_at":"2026-06-09T01:15:00Z","seq":7,"v":1}"#
    );
    assert_eq!(String::from_utf8(e.to_canonical()).unwrap(), expected);
    assert_eq!(
        (e.event_id(), e.event_type(), e.dossier()),
        ("E1", "dossier.submitted", "D1")
    );
    let with_commitment = Entry {
        personal_commitment: Some(Hash([0xab; 32])),
        ..e
    };
    let text = String::from_utf8(with_commitment.to_canonical()).unwrap();
    assert!(
        text.contains(&format!(
            r#""personal_commitment":"{}","prev""#,
            "ab".repeat(32)
        )),
        "{text}"
    );
}

#[test]
fn canonical_json_follows_rfc8785() {
    let check = |input: &str, expected: &str| {
        let v: Value = serde_json::from_str(input).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            expected,
            "{input}"
        );
    };
    check(
        r#"{"b": 1, "a": [true, null, "x"]}"#,
        r#"{"a":[true,null,"x"],"b":1}"#,
    );
    check(
        r#"{"n": 1.0, "m": 1e21, "k": 0.000001, "j": -0}"#,
        r#"{"j":0,"k":0.000001,"m":1e+21,"n":1}"#,
    );
    check(
        r#"{"s": "\u00e9\u20ac\n\u001f/"}"#,
        "{\"s\":\"é€\\n\\u001f/\"}",
    );
    // Keys sort by UTF-16 code units: U+1F600 (surrogates D83D DE00) before U+E000.
    check(
        r#"{"\ue000": 2, "\ud83d\ude00": 1, "a": 3}"#,
        "{\"a\":3,\"\u{1f600}\":1,\"\u{e000}\":2}",
    );
}

/// Every rejection, run through both decoders: they must agree, and name the field.
#[test]
fn decode_is_strict() {
    let check = |bytes: Vec<u8>, expected: EntryError| {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert_eq!(
            Entry::decode(&bytes),
            Err(expected.clone()),
            "decode {text}"
        );
        assert_eq!(
            Entry::decode_header(&bytes),
            Err(expected),
            "decode_header {text}"
        );
    };
    let field = |f: &str, reason: &str| EntryError::Field {
        field: f.into(),
        reason: reason.into(),
    };
    let remove = |k: &'static str| edited(move |v| drop(v.as_object_mut().unwrap().remove(k)));
    let set = |k: &'static str, x: Value| edited(move |v| v[k] = x);
    let set_event = |k: &'static str, x: Value| edited(move |v| v["event"][k] = x);
    let remove_event =
        |k: &'static str| edited(move |v| drop(v["event"].as_object_mut().unwrap().remove(k)));

    for key in ["v", "seq", "prev", "recorded_at", "event"] {
        check(remove(key), field(&format!("/{key}"), "missing"));
    }
    for key in [
        "id",
        "type",
        "agency",
        "procedure",
        "dossier",
        "occurred_at",
        "schema",
        "data",
    ] {
        check(
            remove_event(key),
            field(&format!("/event/{key}"), "missing"),
        );
    }
    check(set("extra", json!(1)), field("/extra", "unknown field"));
    check(set("a/b~", json!(1)), field("/a~1b~0", "unknown field"));
    check(
        set_event("personal", json!({"name": "x"})),
        field("/event/personal", "unknown field"),
    );
    check(set("v", json!(2)), EntryError::Version(2));
    check(
        edited(|v| {
            v["v"] = json!(2);
            v["new_field"] = json!(true)
        }),
        EntryError::Version(2),
    );
    check(
        set("v", json!("1")),
        field("/v", r#"expected an unsigned integer, found "1""#),
    );
    check(
        set("seq", json!(-1)),
        field("/seq", "expected an unsigned integer, found -1"),
    );
    check(
        set("seq", json!(1.5)),
        field("/seq", "expected an unsigned integer, found 1.5"),
    );
    check(
        set("prev", json!(PREV.to_uppercase())),
        field(
            "/prev",
            &format!(
                "expected 64 lowercase hex digits, found {:?}",
                PREV.to_uppercase()
            ),
        ),
    );
    check(
        set("prev", json!("abc")),
        field("/prev", r#"expected 64 lowercase hex digits, found "abc""#),
    );
    check(
        set("prev", json!(&PREV.replace('0', "g"))),
        field(
            "/prev",
            &format!(
                "expected 64 lowercase hex digits, found {:?}",
                PREV.replace('0', "g")
            ),
        ),
    );
    check(
        set("prev", json!(null)),
        field("/prev", "expected a string, found null"),
    );
    check(
        set("personal_commitment", json!(null)),
        field("/personal_commitment", "expected a string, found null"),
    );
    check(
        set("personal_commitment", json!("00")),
        field(
            "/personal_commitment",
            r#"expected 64 lowercase hex digits, found "00""#,
        ),
    );
    check(
        set("recorded_at", json!(5)),
        field("/recorded_at", "expected a string, found 5"),
    );
    check(
        set("event", json!([])),
        field("/event", "expected an object, found []"),
    );
    check(
        set_event("id", json!(12)),
        field("/event/id", "expected a string, found 12"),
    );
    check(
        set_event("type", json!(null)),
        field("/event/type", "expected a string, found null"),
    );
    check(
        set_event("schema", json!("1")),
        field("/event/schema", r#"expected an integer, found "1""#),
    );
    check(
        set_event("schema", json!(1.0)),
        field("/event/schema", "expected an integer, found 1.0"),
    );
    check(
        set_event("data", json!("x")),
        field("/event/data", r#"expected an object, found "x""#),
    );
    check(
        set_event("data", json!(null)),
        field("/event/data", "expected an object, found null"),
    );
    check(b"[1]".to_vec(), field("/", "expected an object, found [1]"));

    // Not JSON at all, or trailing garbage.
    for bad in [&b"{"[..], b"", b"{\"v\":1,}", b"{} {}", b"\xff"] {
        assert!(
            matches!(Entry::decode(bad), Err(EntryError::Json(_))),
            "{bad:?}"
        );
        assert!(
            matches!(Entry::decode_header(bad), Err(EntryError::Json(_))),
            "{bad:?}"
        );
    }
    // Numbers a Value cannot hold, and bytes that are not UTF-8, even inside `data`.
    let text = String::from_utf8(serde_json::to_vec(&sample()).unwrap()).unwrap();
    for bad in [
        text.replacen("\"online\"", "1e400", 1).into_bytes(),
        text.replacen("online", "onl\u{0}ne", 1).into_bytes(),
    ] {
        let err = Entry::decode(&bad).unwrap_err();
        assert!(matches!(err, EntryError::Json(_)), "{err}");
        assert_eq!(Entry::decode_header(&bad), Err(err));
    }
    let mut not_utf8 = text.clone().into_bytes();
    let at = text.find("online").unwrap();
    not_utf8[at] = 0xff;
    assert!(matches!(Entry::decode(&not_utf8), Err(EntryError::Json(_))));
    assert!(matches!(
        Entry::decode_header(&not_utf8),
        Err(EntryError::Json(_))
    ));

    // Repeated keys: a Value would silently keep one; both decoders refuse.
    let dup = String::from_utf8(serde_json::to_vec(&sample()).unwrap())
        .unwrap()
        .replacen("\"seq\":7", "\"seq\":7,\"seq\":8", 1);
    assert!(Entry::decode(dup.as_bytes()).is_err());
    assert!(Entry::decode_header(dup.as_bytes()).is_err());
    let dup_event = String::from_utf8(serde_json::to_vec(&sample()).unwrap())
        .unwrap()
        .replacen("\"id\":\"E1\"", "\"id\":\"E1\",\"id\":\"E2\"", 1);
    assert!(Entry::decode_header(dup_event.as_bytes()).is_err());
}

#[test]
fn decode_accepts_what_it_should() {
    // Negative and large integer schemas are integers; escaped strings borrow nothing.
    for bytes in [
        edited(|v| v["event"]["schema"] = json!(-3)),
        edited(|v| v["event"]["schema"] = json!(900_719_925_474_099_u64)),
        edited(|v| v["event"]["id"] = json!("tab\tquote\"é")),
        edited(|v| v["personal_commitment"] = json!(PREV)),
        edited(|v| v["event"]["data"] = json!({"nested": {"deep": [1, 2.5, {"x": null}]}})),
    ] {
        let e = Entry::decode(&bytes).unwrap();
        assert_eq!(Entry::decode_header(&bytes).unwrap().seq, e.seq);
    }
}

#[test]
fn decode_canonical_rejects_other_encodings() {
    let canonical = common::entry(3, Hash::ZERO).to_canonical();
    let text = String::from_utf8(canonical.clone()).unwrap();
    let pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&canonical).unwrap()).unwrap();
    for bad in [
        pretty,
        format!("{text}\n").into_bytes(),
        text.replacen("\"fee_vnd\":50000", "\"fee_vnd\":5e4", 1)
            .into_bytes(),
        text.replacen("G09.20", "G09\\u002e20", 1).into_bytes(),
        text.replacen("{\"event\":{\"agency\"", "{\"event\":{ \"agency\"", 1)
            .into_bytes(),
    ] {
        // Every decoder refuses them: two readers must never see different bytes as one entry.
        assert_eq!(
            Entry::decode(&bad),
            Err(EntryError::NotCanonical),
            "{}",
            String::from_utf8_lossy(&bad)
        );
        assert_eq!(
            Entry::decode_canonical(&bad),
            Err(EntryError::NotCanonical),
            "{}",
            String::from_utf8_lossy(&bad)
        );
    }
    // Unsorted keys.
    let unsorted = text
        .replacen("{\"event\":", "{\"v\":1,\"event\":", 1)
        .replacen(",\"v\":1}", "}", 1);
    assert_eq!(
        Entry::decode_canonical(unsorted.as_bytes()),
        Err(EntryError::NotCanonical)
    );
}

#[test]
fn personal_commitment_binds_salt_and_data() {
    let personal = json!({"name": "Nguyễn Văn A", "citizen_id": "001099012345"});
    let salt = personal_salt(b"key", "01JD9Q4W8G3N6V2P5X7K1M0ZTR");
    assert_eq!(salt, personal_salt(b"key", "01JD9Q4W8G3N6V2P5X7K1M0ZTR"));
    assert_ne!(
        salt,
        personal_salt(b"other key", "01JD9Q4W8G3N6V2P5X7K1M0ZTR")
    );
    assert_ne!(salt, personal_salt(b"key", "01JD9Q4W8G3N6V2P5X7K1M0ZTS"));

    // HMAC-SHA-256 (RFC 4231 test case 2), truncated to 16 bytes.
    assert_eq!(
        hex::encode(personal_salt(b"Jefe", "what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c7"
    );

    let c = personal_commitment(&salt, &personal);
    let mut input = salt.to_vec();
    input.extend(r#"{"citizen_id":"001099012345","name":"Nguyễn Văn A"}"#.as_bytes());
    assert_eq!(c, socai_chain::hash::sha256(&input));
    assert!(check_personal(&c, &salt, &personal));
    // Key order does not matter (JCS); any change of value or salt does.
    assert!(check_personal(
        &c,
        &salt,
        &json!({"citizen_id": "001099012345", "name": "Nguyễn Văn A"})
    ));
    assert!(!check_personal(
        &c,
        &salt,
        &json!({"name": "Nguyễn Văn B", "citizen_id": "001099012345"})
    ));
    assert!(!check_personal(&c, &[0; 16], &personal));
}
