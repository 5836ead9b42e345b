//! The canonical bytes of numbers do not depend on how the crate was built: tests/run.sh runs this
//! file in the chain crate's own build (`cargo test -p socai-chain --test number_canon`, features
//! of socai-chain's dependency tree alone) and again in the workspace build (`cargo test
//! --workspace`), where serde_json's features are unified across every crate as in the `socai`
//! binary (socai-metrics enables `float_roundtrip` there).

use serde_json::Value;
use socai_chain::entry::canonical_json;

/// (JSON text of a number, its RFC 8785 form). Random doubles printed with 17 significant digits
/// catch a parser that is not correctly rounded (serde_json without `float_roundtrip`).
fn vectors() -> Vec<(String, String)> {
    let text = include_str!("number_vectors.json");
    let list: Vec<Value> = serde_json::from_str(text).expect("vectors are JSON");
    list.iter()
        .map(|v| {
            (
                v["json"].as_str().unwrap().to_owned(),
                v["canonical"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn numbers_canonicalise_the_same_in_every_build() {
    let mut wrong = Vec::new();
    let vectors = vectors();
    assert!(vectors.len() > 400);
    for (json, canonical) in &vectors {
        let value: Value = serde_json::from_str(json).unwrap();
        let got = String::from_utf8(canonical_json(&value)).unwrap();
        if &got != canonical {
            wrong.push(format!("{json} → {got}, expected {canonical}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {}:\n{}",
        wrong.len(),
        vectors.len(),
        wrong.join("\n")
    );
}

#[test]
fn numbers_beyond_f64_are_refused_not_kept_exactly() {
    // With serde_json's `arbitrary_precision` (which changes every Number) this would parse.
    assert!(serde_json::from_str::<Value>("1e400").is_err());
}
