//! Hand-computed fixtures (tests/fixtures/metrics.json): small ledgers whose every expected
//! figure was worked out by hand from the metric definitions, folded the way the service folds
//! the real ledger (canonical entries, chained by `prev`, applied in seq order).
//!
//! Each case lists its events in commit order as `[dossier, type, occurred_at, data, overrides?]`:
//! `type` without the `dossier.` prefix (`procedure.published` and `ledger.redacted` in full),
//! agency and procedure from the case unless `overrides` names others. Fields the metrics do not
//! read but the event schemas require (reasons, signers, ...) are filled in here, and every event
//! is checked against the schemas before it is committed.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use socai_chain::{Entry, Hash, canonical_json, leaf_hash};
use socai_metrics::{Detail, METRICS, Metric, MetricValue, Projection, Scope, Window};
use socai_model::{Event, Limits, Validator};

const FIXTURES: &str = include_str!("fixtures/metrics.json");
const KINDS: [&str; 3] = ["typical", "pause_extension_late", "zero_denominator"];
const DEFAULT_AGENCY: &str = "000.00.12.H01";
const DEFAULT_PROCEDURE: &str = "1.000001";
const TOLERANCE: f64 = 1e-9;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixtures {
    #[serde(rename = "_about")]
    _about: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    metric: String,
    kind: String,
    why: String,
    agency: Option<String>,
    procedure: Option<String>,
    events: Vec<Value>,
    expect: Vec<Expect>,
}

/// `Some(None)` for an explicit `null`, `None` for a missing key.
fn explicit<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    metric: String,
    scope: String,
    window: String,
    #[serde(default)]
    absent: bool,
    numerator: Option<i64>,
    #[serde(default, deserialize_with = "explicit")]
    denominator: Option<Option<i64>>,
    #[serde(default, deserialize_with = "explicit")]
    value: Option<Option<f64>>,
    p50: Option<u64>,
    p90: Option<u64>,
    points: Option<f64>,
    from: Option<String>,
    to: Option<String>,
}

fn fixtures() -> Fixtures {
    serde_json::from_str(FIXTURES).expect("tests/fixtures/metrics.json parses")
}

/// Schema-required fields the metrics do not read.
fn fill_defaults(kind: &str, data: &mut Map<String, Value>, ids: &[String]) -> Result<(), String> {
    let defaults: Value = match kind {
        "dossier.supplement_requested" => json!({"reason": "Thiếu bản sao giấy tờ"}),
        "dossier.deadline_extended" => json!({"reason": "Cần xác minh thêm"}),
        "dossier.refused" | "dossier.withdrawn" | "dossier.stopped" => {
            json!({"reason": "Hồ sơ không đủ điều kiện"})
        }
        "dossier.fee_requested" => json!({"amount_vnd": 50000}),
        "dossier.processing_step" => json!({"step": "Thẩm định hồ sơ"}),
        "dossier.result_signed" => json!({
            "signer": "Phó Chủ tịch UBND",
            "certificate_serial": "5401A3F2",
            "algorithm": "RSA-SHA256"
        }),
        "procedure.published" => json!({
            "name": "Thủ tục hành chính",
            "fee_bearing": false,
            "result_kind": "document",
            "legal_duration": {"value": 5, "unit": "working_days"}
        }),
        "ledger.redacted" => {
            let seq = data
                .get("target_seq")
                .and_then(Value::as_u64)
                .ok_or("ledger.redacted needs target_seq")?;
            let target = ids
                .get(seq as usize)
                .ok_or(format!("target_seq {seq} is not an earlier event"))?;
            json!({
                "target_id": target,
                "reason": "Yêu cầu xóa dữ liệu cá nhân",
                "redacted_by": "dpo@000.00.12.H01"
            })
        }
        _ => json!({}),
    };
    for (key, value) in defaults.as_object().expect("an object") {
        data.entry(key.clone()).or_insert_with(|| value.clone());
    }
    Ok(())
}

/// The case's events as committed ledger entries, seq 0, 1, 2, ... in the listed order.
fn entries(case: &Case, validator: &Validator) -> Result<Vec<Vec<u8>>, String> {
    let mut ids: Vec<String> = Vec::new();
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut prev = Hash::ZERO;
    for (seq, raw) in case.events.iter().enumerate() {
        let bad = |why: String| format!("event {seq} {raw}: {why}");
        let fields = raw.as_array().ok_or_else(|| bad("not an array".into()))?;
        if !(4..=5).contains(&fields.len()) {
            return Err(bad(
                "expected [dossier, type, occurred_at, data, overrides?]".into(),
            ));
        }
        let text = |i: usize| {
            fields[i]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("item {i} is not a string")))
        };
        let dossier = text(0)?;
        let short = text(1)?;
        let kind = if short.contains('.') {
            short
        } else {
            format!("dossier.{short}")
        };
        let occurred_at = text(2)?;
        let mut data = fields[3]
            .as_object()
            .cloned()
            .ok_or_else(|| bad("data is not an object".into()))?;
        fill_defaults(&kind, &mut data, &ids).map_err(&bad)?;
        let overrides = fields.get(4).cloned().unwrap_or(json!({}));
        let pick = |key: &str, default: Option<&String>, fallback: &str| {
            overrides
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| default.cloned().unwrap_or_else(|| fallback.to_owned()))
        };
        let agency = pick("agency", case.agency.as_ref(), DEFAULT_AGENCY);
        let procedure = pick("procedure", case.procedure.as_ref(), DEFAULT_PROCEDURE);
        let id = if kind == "ledger.redacted" {
            format!(
                "redaction:{}",
                data["target_id"].as_str().unwrap_or_default()
            )
        } else {
            format!("{dossier}.{seq}")
        };
        let event = Event {
            id: id.clone(),
            event_type: kind,
            agency,
            procedure,
            dossier,
            occurred_at,
            schema: 1,
            data: Value::Object(data),
            personal: None,
        };
        validator
            .validate_ledger_event(&event)
            .map_err(|e| bad(format!("breaks the event schemas: {e}")))?;
        let entry = Entry::encode(
            seq as u64,
            &prev,
            "2027-01-01T00:00:00Z",
            &canonical_json(&event.public_json()),
            None,
        );
        prev = leaf_hash(&entry);
        ids.push(id);
        out.push(entry);
    }
    Ok(out)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE
}

fn shown(v: &MetricValue) -> String {
    let mut s = format!(
        "{}/{:?} = {:?} [{}..{}]",
        v.numerator, v.denominator, v.value, v.window.from, v.window.to
    );
    match &v.detail {
        Some(Detail::ResolutionTime {
            p50_minutes,
            p90_minutes,
            ..
        }) => s += &format!(" p50 {p50_minutes} p90 {p90_minutes}"),
        Some(Detail::Score { points, .. }) => s += &format!(" points {points}"),
        None => {}
    }
    s
}

/// Folds one case and compares every expected figure; the differences, one line each.
fn check(case: &Case, validator: &Validator) -> Result<(), Vec<String>> {
    let entries = entries(case, validator).map_err(|e| vec![e])?;
    let mut projection = Projection::untracked();
    for (seq, entry) in entries.iter().enumerate() {
        projection
            .apply(seq as u64, entry)
            .map_err(|e| vec![format!("apply: {e}")])?;
    }
    let values: BTreeMap<(String, String, String), MetricValue> = projection
        .values("root")
        .into_iter()
        .map(|v| {
            let key = (
                v.metric.name().to_owned(),
                v.scope.to_string(),
                v.window.id.clone(),
            );
            (key, v)
        })
        .collect();
    let mut diffs = Vec::new();
    for e in &case.expect {
        let label = format!("{} {} {}", e.metric, e.scope, e.window);
        if Metric::parse(&e.metric).is_none()
            || Scope::parse(&e.scope).is_none()
            || Window::parse(&e.window).is_none()
        {
            diffs.push(format!("{label}: not a metric, scope or window"));
            continue;
        }
        let got = values.get(&(e.metric.clone(), e.scope.clone(), e.window.clone()));
        if e.absent {
            if let Some(v) = got {
                diffs.push(format!("{label}: expected absent, got {}", shown(v)));
            }
            continue;
        }
        let (Some(numerator), Some(denominator), Some(value)) =
            (e.numerator, e.denominator, e.value)
        else {
            diffs.push(format!(
                "{label}: the fixture needs numerator, denominator and value"
            ));
            continue;
        };
        let Some(v) = got else {
            diffs.push(format!(
                "{label}: expected {numerator}/{denominator:?} = {value:?}, got absent"
            ));
            continue;
        };
        let mut wrong = v.numerator != numerator || v.denominator != denominator;
        wrong |= match (value, v.value) {
            (Some(a), Some(b)) => !close(a, b),
            (a, b) => a.is_some() || b.is_some(),
        };
        wrong |= e.from.as_ref().is_some_and(|f| *f != v.window.from);
        wrong |= e.to.as_ref().is_some_and(|t| *t != v.window.to);
        match &v.detail {
            Some(Detail::ResolutionTime {
                p50_minutes,
                p90_minutes,
                ..
            }) => {
                wrong |= e.p50.is_some_and(|p| p != *p50_minutes);
                wrong |= e.p90.is_some_and(|p| p != *p90_minutes);
            }
            _ => wrong |= e.p50.is_some() || e.p90.is_some(),
        }
        match &v.detail {
            Some(Detail::Score { points, .. }) => {
                wrong |= e.points.is_some_and(|p| !close(p, *points));
            }
            _ => wrong |= e.points.is_some(),
        }
        if wrong {
            let mut want = format!("{numerator}/{denominator:?} = {value:?}");
            if let (Some(from), Some(to)) = (&e.from, &e.to) {
                want += &format!(" [{from}..{to}]");
            }
            if let (Some(p50), Some(p90)) = (e.p50, e.p90) {
                want += &format!(" p50 {p50} p90 {p90}");
            }
            if let Some(points) = e.points {
                want += &format!(" points {points}");
            }
            diffs.push(format!("{label}: expected {want}, got {}", shown(v)));
        }
    }
    if diffs.is_empty() { Ok(()) } else { Err(diffs) }
}

#[test]
fn hand_computed_fixtures_hold() {
    let validator = Validator::new(Limits::default());
    let fixtures = fixtures();
    let mut failures = Vec::new();
    for case in &fixtures.cases {
        if let Err(diffs) = check(case, &validator) {
            failures.push(format!(
                "{} ({}, {}):\n    {}",
                case.name,
                case.metric,
                case.kind,
                diffs.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixture cases fail:\n{}",
        failures.len(),
        fixtures.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn every_metric_has_a_typical_a_late_and_a_zero_denominator_case() {
    let fixtures = fixtures();
    let mut names = std::collections::BTreeSet::new();
    let mut by_metric: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for case in &fixtures.cases {
        assert!(names.insert(&case.name), "case name {} repeats", case.name);
        assert!(
            Metric::parse(&case.metric).is_some(),
            "{}: no metric {}",
            case.name,
            case.metric
        );
        assert!(
            KINDS.contains(&case.kind.as_str()),
            "{}: kind {}",
            case.name,
            case.kind
        );
        assert!(!case.why.trim().is_empty(), "{}: no why", case.name);
        assert!(!case.expect.is_empty(), "{}: expects nothing", case.name);
        by_metric
            .entry(case.metric.as_str())
            .or_default()
            .push(case.kind.as_str());
    }
    for metric in METRICS {
        let kinds = by_metric.get(metric.name()).cloned().unwrap_or_default();
        assert!(
            kinds.len() >= 3,
            "{} has {} cases, fewer than 3",
            metric.name(),
            kinds.len()
        );
        for kind in KINDS {
            assert!(
                kinds.contains(&kind),
                "{} has no {kind} case",
                metric.name()
            );
        }
    }
}
