//! Validation of real HTTP responses against `schemas/openapi.json`: the operation exists, the
//! status and content type are documented for it, and a JSON body (`application/json` or
//! `application/problem+json`) validates against the documented schema (OpenAPI 3.1 schemas are
//! JSON Schema 2020-12; `#/components/schemas/...` references resolve inside the document).
//!
//! ```ignore
//! let api = OpenApi::load();
//! api.check("GET", "/v1/entries/{seq}", status, content_type, &body);
//! api.check_schema("LiveUpdate", &sse_data); // a named schema, e.g. for SSE event data
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// The HTTP methods an OpenAPI path item may describe, in its key spelling.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Media types whose bodies are validated as JSON.
const JSON_TYPES: [&str; 2] = ["application/json", "application/problem+json"];

/// How much of a body a failure message shows.
const BODY_SHOWN: usize = 600;

/// Most validation errors a failure message lists.
const ERRORS_SHOWN: usize = 20;

/// Which compiled validator: (method, template, status key, media type), or ("SCHEMA", name, "", "").
type ValidatorKey = (String, String, String, String);

/// The parsed OpenAPI document, with compiled validators cached per
/// (method, template, status key, media type).
pub struct OpenApi {
    doc: Value,
    validators: Mutex<HashMap<ValidatorKey, Arc<jsonschema::Validator>>>,
}

impl std::fmt::Debug for OpenApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenApi({} operations)", self.operations().len())
    }
}

impl OpenApi {
    /// Where the document lives: `schemas/openapi.json` at the repository root.
    pub fn path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi.json")
    }

    /// Loads schemas/openapi.json (path from `env!("CARGO_MANIFEST_DIR")/../schemas/openapi.json`).
    pub fn load() -> OpenApi {
        let path = OpenApi::path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        OpenApi::from_value(doc)
    }

    /// A document already parsed (e.g. the body of `GET /v1/openapi.json`).
    pub fn from_value(doc: Value) -> OpenApi {
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1.")),
            "not an OpenAPI 3.1 document: openapi = {}",
            doc["openapi"]
        );
        assert!(
            doc["paths"].is_object(),
            "the OpenAPI document has no paths"
        );
        OpenApi {
            doc,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The whole document.
    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// Every (METHOD, path template) the document describes, e.g. ("GET", "/v1/entries/{seq}"),
    /// sorted by template then method.
    pub fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Some(paths) = self.doc["paths"].as_object() else {
            return out;
        };
        for (template, item) in paths {
            let item = self.resolve(item);
            for method in METHODS {
                if item.get(method).is_some_and(Value::is_object) {
                    out.push((method.to_ascii_uppercase(), template.clone()));
                }
            }
        }
        out.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        out
    }

    /// The operation object of (method, template), if documented.
    pub fn operation(&self, method: &str, template: &str) -> Option<&Value> {
        let item = self.resolve(self.doc["paths"].get(template)?);
        item.get(method.to_ascii_lowercase().as_str())
            .filter(|op| op.is_object())
    }

    /// The response object of an operation for `status`: its exact code, else its range
    /// (`4XX`), else `default`; with the key it was found under.
    pub fn response<'a>(
        &'a self,
        operation: &'a Value,
        status: u16,
    ) -> Option<(String, &'a Value)> {
        let responses = self.resolve(&operation["responses"]).as_object()?;
        let exact = status.to_string();
        let range = format!("{}XX", status / 100);
        [exact, range, "default".to_owned()]
            .into_iter()
            .find_map(|key| {
                let found = responses
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                    .map(|(_, v)| self.resolve(v));
                found.map(|v| (key, v))
            })
    }

    /// Checks a real response: the operation exists for (method, template), `status` is one of
    /// its documented responses, the content type (ignoring parameters like charset) is
    /// documented for that status, and a JSON body (application/json or
    /// application/problem+json) validates against the documented schema. Panics with a clear
    /// message naming the operation, status and the validation errors (and a shortened body) on
    /// any mismatch.
    pub fn check(
        &self,
        method: &str,
        template: &str,
        status: u16,
        content_type: &str,
        body: &[u8],
    ) {
        let method = method.to_ascii_uppercase();
        let what = format!("{method} {template} -> {status} ({content_type})");
        let fail = |why: String| -> ! {
            panic!(
                "OpenAPI check failed for {what}:\n{why}\nbody ({} bytes): {}",
                body.len(),
                shorten(body)
            )
        };
        let Some(operation) = self.operation(&method, template) else {
            let known: Vec<String> = self
                .operations()
                .into_iter()
                .filter(|(_, t)| t == template)
                .map(|(m, _)| m)
                .collect();
            fail(if known.is_empty() {
                format!("{template} is not a path of the document")
            } else {
                format!("{template} documents only {}", known.join(", "))
            });
        };
        let Some((key, response)) = self.response(operation, status) else {
            let documented: Vec<&String> = self
                .resolve(&operation["responses"])
                .as_object()
                .map(|r| r.keys().collect())
                .unwrap_or_default();
            fail(format!(
                "status {status} is not documented; documented: {documented:?}"
            ));
        };
        let media = base_media_type(content_type);
        let content = response.get("content").and_then(Value::as_object);
        let documented: BTreeMap<String, &Value> = content
            .map(|c| c.iter().map(|(k, v)| (base_media_type(k), v)).collect())
            .unwrap_or_default();
        if documented.is_empty() {
            if body.is_empty() {
                return;
            }
            fail(format!(
                "response {key} documents no content, but the response has a body"
            ));
        }
        let Some(media_object) = documented.get(&media).copied().or_else(|| {
            documented
                .iter()
                .find(|(k, _)| media_range_matches(k, &media))
                .map(|(_, v)| *v)
        }) else {
            fail(format!(
                "content type {media:?} is not documented for {key}; documented: {:?}",
                documented.keys().collect::<Vec<_>>()
            ));
        };
        if !JSON_TYPES.contains(&media.as_str()) {
            return;
        }
        let instance: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => fail(format!("the body is not JSON: {e}")),
        };
        let Some(schema) = media_object.get("schema") else {
            return;
        };
        let cache_key = (
            method.clone(),
            template.to_owned(),
            key.clone(),
            media.clone(),
        );
        let validator = self.validator(cache_key, schema);
        let errors = collect_errors(&validator, &instance);
        if !errors.is_empty() {
            fail(format!(
                "the body does not match the schema of response {key} {media}:\n{}",
                errors.join("\n")
            ));
        }
    }

    /// Validation errors of `instance` against `components/schemas/<name>` (empty when it
    /// validates), e.g. for the data of SSE events (`LiveUpdate`, `StreamReset`).
    pub fn schema_errors(&self, name: &str, instance: &Value) -> Vec<String> {
        assert!(
            self.doc["components"]["schemas"].get(name).is_some(),
            "components/schemas has no {name}"
        );
        let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        let key = (
            "SCHEMA".to_owned(),
            name.to_owned(),
            String::new(),
            String::new(),
        );
        let validator = self.validator(key, &schema);
        collect_errors(&validator, instance)
    }

    /// Panics unless `instance` validates against `components/schemas/<name>`.
    pub fn check_schema(&self, name: &str, instance: &Value) {
        let errors = self.schema_errors(name, instance);
        if !errors.is_empty() {
            panic!(
                "OpenAPI schema {name} does not match:\n{}\nvalue: {}",
                errors.join("\n"),
                shorten(instance.to_string().as_bytes())
            );
        }
    }

    /// Every `$ref` in the document that does not resolve (empty when all do).
    pub fn unresolved_refs(&self) -> Vec<String> {
        let mut bad = Vec::new();
        collect_refs(&self.doc, "", &mut |at, reference| {
            if self.pointer(reference).is_none() {
                bad.push(format!("{at}: {reference}"));
            }
        });
        bad
    }

    /// The value a local reference (`#/components/...`) points at.
    fn pointer(&self, reference: &str) -> Option<&Value> {
        let pointer = reference.strip_prefix('#')?;
        self.doc.pointer(pointer)
    }

    /// Follows `$ref` chains of OpenAPI objects (responses, parameters, path items).
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        for _ in 0..32 {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                return value;
            };
            value = self.pointer(reference).unwrap_or_else(|| {
                panic!("the OpenAPI document's $ref {reference:?} does not resolve")
            });
        }
        panic!("the OpenAPI document's $refs loop")
    }

    /// A validator of `schema` in the context of the document's components (cached).
    fn validator(&self, key: ValidatorKey, schema: &Value) -> Arc<jsonschema::Validator> {
        let mut cache = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cache.get(&key) {
            return v.clone();
        }
        // The schema under `allOf` of a root that carries the components, so that
        // `#/components/schemas/X` resolves against this root.
        let wrapped = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": { "schemas": self.doc["components"]["schemas"].clone() },
            "allOf": [schema],
        });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&wrapped)
            .unwrap_or_else(|e| {
                panic!(
                    "the OpenAPI schema for {key:?} does not compile: {e}\nschema: {}",
                    shorten(schema.to_string().as_bytes())
                )
            });
        let validator = Arc::new(validator);
        cache.insert(key, validator.clone());
        validator
    }
}

fn collect_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    let mut errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_owned() } else { at };
            format!(
                "  at {at} (schema {}): {}",
                e.schema_path(),
                shorten(e.to_string().as_bytes())
            )
        })
        .collect();
    if errors.len() > ERRORS_SHOWN {
        let more = errors.len() - ERRORS_SHOWN;
        errors.truncate(ERRORS_SHOWN);
        errors.push(format!("  ... and {more} more"));
    }
    errors
}

/// Calls `found(location, reference)` for every `$ref` string under `value`.
fn collect_refs(value: &Value, at: &str, found: &mut dyn FnMut(&str, &str)) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => found(at, r),
                    _ => collect_refs(v, &here, found),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_refs(v, &format!("{at}/{i}"), found);
            }
        }
        _ => {}
    }
}

/// `text/plain; charset=utf-8` → `text/plain`.
fn base_media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a documented media range (`text/*`, `*/*`) covers `media`.
fn media_range_matches(range: &str, media: &str) -> bool {
    match range.split_once('/') {
        Some(("*", "*")) => true,
        Some((kind, "*")) => media.split_once('/').is_some_and(|(k, _)| k == kind),
        _ => false,
    }
}

/// A body for a message: lossy UTF-8, at most [`BODY_SHOWN`] characters.
fn shorten(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut chars = text.chars();
    let shown: String = chars.by_ref().take(BODY_SHOWN).collect();
    if chars.next().is_some() {
        format!("{shown}… ({} bytes in all)", body.len())
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Value {
        json!({
            "event": {
                "agency": "000.00.15.H01",
                "data": {"channel": "online", "vneid_authenticated": true, "applicant_kind": "citizen"},
                "dossier": "000.00.15.H01-20260105-0000001",
                "id": "01KE5TP1M0YJYW184WHCJ3GSWZ",
                "occurred_at": "2026-01-05T08:00:00+07:00",
                "procedure": "1.002809",
                "schema": 1,
                "type": "dossier.submitted"
            },
            "leaf_hash": "afd51266c6107cf8db2e76e0e8d5b5bea1e11a54723e976bdc132e4cccfb1f0a",
            "personal_commitment": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "prev": "576dcffba5a26e2dbf1427bcf115c4061775c7124cf5ecdbbd2e9449149d0441",
            "recorded_at": "2026-12-01T05:56:35.327Z",
            "seq": 5,
            "v": 1
        })
    }

    fn body(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    fn panics(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("the check should fail");
        err.downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    }

    #[test]
    fn the_document_is_complete_and_consistent() {
        let api = OpenApi::load();
        assert_eq!(
            api.unresolved_refs(),
            Vec::<String>::new(),
            "unresolved $refs"
        );

        let ops = api.operations();
        for expected in [
            ("GET", "/v1/log"),
            ("GET", "/v1/checkpoints"),
            ("GET", "/v1/checkpoints/latest"),
            ("GET", "/v1/checkpoints/{size}"),
            ("GET", "/v1/entries"),
            ("GET", "/v1/entries/{seq}"),
            ("GET", "/v1/events/{id}"),
            ("GET", "/v1/dossiers/{dossier}"),
            ("GET", "/v1/proofs/inclusion"),
            ("GET", "/v1/proofs/consistency"),
            ("GET", "/v1/export"),
            ("POST", "/v1/redactions"),
            ("GET", "/v1/metrics"),
            ("GET", "/v1/metrics/stream"),
            ("GET", "/v1/openapi.json"),
            ("GET", "/checkpoint"),
            ("GET", "/tile/{path}"),
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/metrics"),
        ] {
            assert!(
                ops.iter().any(|(m, t)| m == expected.0 && t == expected.1),
                "{expected:?} is not documented"
            );
        }

        for (method, template) in &ops {
            let op = api.operation(method, template).unwrap();
            let responses = api.resolve(&op["responses"]).as_object().unwrap();
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {template} documents no 2xx response"
            );
            let problem_4xx = responses.iter().any(|(k, r)| {
                k.starts_with('4')
                    && api.resolve(r)["content"]
                        .get("application/problem+json")
                        .is_some()
            });
            let exempt = ["/healthz", "/metrics", "/v1/openapi.json"].contains(&template.as_str());
            assert!(
                exempt || problem_4xx,
                "{method} {template} documents no application/problem+json 4xx response"
            );
            // Every schema of every response compiles.
            for (status, r) in responses {
                let r = api.resolve(r);
                for (media, m) in r["content"].as_object().into_iter().flatten() {
                    if let Some(schema) = m.get("schema") {
                        let key = (
                            method.clone(),
                            template.clone(),
                            status.clone(),
                            media.clone(),
                        );
                        api.validator(key, schema);
                    }
                }
            }
        }

        // Examples given in the components validate against their own schemas.
        for (name, schema) in api.doc["components"]["schemas"].as_object().unwrap() {
            for example in schema["examples"].as_array().into_iter().flatten() {
                assert_eq!(
                    api.schema_errors(name, example),
                    Vec::<String>::new(),
                    "example of {name}"
                );
            }
        }
    }

    #[test]
    fn entries_are_checked() {
        let api = OpenApi::load();
        let good = entry();
        api.check(
            "GET",
            "/v1/entries/{seq}",
            200,
            "application/json",
            &body(&good),
        );
        api.check(
            "get",
            "/v1/events/{id}",
            200,
            "application/json; charset=utf-8",
            &body(&good),
        );

        // An auditor's view: `personal` is a record or null.
        let mut with_personal = good.clone();
        with_personal["personal"] = json!({
            "salt": "34dbeff965a60eb6257491fde6e0a6d0",
            "personal": {"full_name": "Vũ Minh Hạnh"}
        });
        api.check(
            "GET",
            "/v1/entries/{seq}",
            200,
            "application/json",
            &body(&with_personal),
        );
        with_personal["personal"] = Value::Null;
        api.check(
            "GET",
            "/v1/entries/{seq}",
            200,
            "application/json",
            &body(&with_personal),
        );

        // Missing leaf_hash.
        let mut bad = good.clone();
        bad.as_object_mut().unwrap().remove("leaf_hash");
        let msg = panics(|| {
            api.check(
                "GET",
                "/v1/entries/{seq}",
                200,
                "application/json",
                &body(&bad),
            )
        });
        assert!(msg.contains("GET /v1/entries/{seq} -> 200"), "{msg}");
        assert!(msg.contains("leaf_hash"), "{msg}");
        assert!(!api.schema_errors("Entry", &bad).is_empty());

        // An unknown member, an uppercase hash, a personal record without a commitment.
        let mut extra = good.clone();
        extra["extra"] = json!(1);
        assert!(!api.schema_errors("Entry", &extra).is_empty());
        let mut upper = good.clone();
        upper["prev"] = json!("576DCFFBA5A26E2DBF1427BCF115C4061775C7124CF5ECDBBD2E9449149D0441");
        assert!(!api.schema_errors("Entry", &upper).is_empty());
        let mut uncommitted = good.clone();
        uncommitted
            .as_object_mut()
            .unwrap()
            .remove("personal_commitment");
        uncommitted["personal"] =
            json!({"salt": "34dbeff965a60eb6257491fde6e0a6d0", "personal": {}});
        assert!(!api.schema_errors("Entry", &uncommitted).is_empty());

        // Pages hold entries too.
        let page = json!({"entries": [good], "from": 5, "next": null, "tree_size": 6});
        api.check("GET", "/v1/entries", 200, "application/json", &body(&page));
        let page = json!({"entries": [bad], "from": 5, "next": null, "tree_size": 6});
        panics(|| api.check("GET", "/v1/entries", 200, "application/json", &body(&page)));
    }

    #[test]
    fn statuses_content_types_and_problems_are_checked() {
        let api = OpenApi::load();
        let problem = json!({
            "type": "urn:socai:problem:not_found",
            "title": "Not found",
            "status": 404,
            "detail": "entry 9 is beyond the ledger's 5 entries",
            "code": "not_found"
        });
        api.check(
            "GET",
            "/v1/entries/{seq}",
            404,
            "application/problem+json",
            &body(&problem),
        );
        // A problem served as application/json, or a status the operation does not document.
        panics(|| {
            api.check(
                "GET",
                "/v1/entries/{seq}",
                404,
                "application/json",
                &body(&problem),
            )
        });
        panics(|| {
            api.check(
                "GET",
                "/v1/entries/{seq}",
                418,
                "application/problem+json",
                &body(&problem),
            )
        });
        // A problem whose status member disagrees with the response.
        panics(|| {
            api.check(
                "GET",
                "/v1/entries/{seq}",
                400,
                "application/problem+json",
                &body(&problem),
            )
        });
        // Unknown operations.
        panics(|| {
            api.check(
                "DELETE",
                "/v1/entries/{seq}",
                200,
                "application/json",
                b"{}",
            )
        });
        panics(|| api.check("GET", "/v1/nope", 200, "application/json", b"{}"));
        // Text, bytes and event streams: the content type only.
        api.check("GET", "/healthz", 200, "text/plain; charset=utf-8", b"ok\n");
        api.check(
            "GET",
            "/checkpoint",
            200,
            "text/plain; charset=utf-8",
            b"origin\n1\n...",
        );
        api.check(
            "GET",
            "/tile/{path}",
            200,
            "application/octet-stream",
            &[0u8; 32],
        );
        api.check("GET", "/v1/metrics/stream", 200, "text/event-stream", b"");
        api.check(
            "GET",
            "/metrics",
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            b"# EOF\n",
        );
        panics(|| api.check("GET", "/healthz", 200, "application/json", b"{}"));
        // readyz: the same JSON body at 200 and 503.
        let ready =
            json!({"ready": false, "store": "open", "nats": null, "writer": "stopped", "size": 3});
        api.check("GET", "/readyz", 503, "application/json", &body(&ready));
    }

    #[test]
    fn metric_values_and_live_updates_are_checked() {
        let api = OpenApi::load();
        let root = "3dd33c052107083708f00d71b8b353da58ff5491e1beaeee3121e88c8ca0500b";
        let rate = json!({
            "metric": "online_submission_rate",
            "scope": {"kind": "national"},
            "window": {"id": "day.2026-01-05", "from": "2026-01-05", "to": "2026-01-05"},
            "numerator": 79, "denominator": 145, "value": 0.5448275862068965,
            "tree_size": 800, "root": root
        });
        let no_data = json!({
            "metric": "backlog",
            "scope": {"kind": "province", "code": "H01"},
            "window": {"id": "rolling7", "from": "2025-12-30", "to": "2026-01-05"},
            "numerator": 0, "denominator": null, "value": null,
            "tree_size": 800, "root": root
        });
        let timing = json!({
            "metric": "resolution_time",
            "scope": {"kind": "national"},
            "window": {"id": "rolling30", "from": "2025-12-07", "to": "2026-01-05"},
            "numerator": 1823, "denominator": 6, "value": 303.8333333333333,
            "detail": {"mean_minutes": 303.8333333333333, "p50_minutes": 297, "p90_minutes": 411},
            "tree_size": 800, "root": root
        });
        let values = json!({"values": [rate, no_data, timing]});
        api.check(
            "GET",
            "/v1/metrics",
            200,
            "application/json",
            &body(&values),
        );
        api.check_schema(
            "LiveUpdate",
            &json!({"tree_size": 800, "root": root, "values": [rate]}),
        );
        api.check_schema(
            "StreamReset",
            &json!({"reason": "missed", "reload": "/v1/metrics"}),
        );

        let mut national_with_code = rate.clone();
        national_with_code["scope"]["code"] = json!("H01");
        assert!(
            !api.schema_errors("MetricValue", &national_with_code)
                .is_empty()
        );
        let mut missing_value = rate.clone();
        missing_value.as_object_mut().unwrap().remove("value");
        assert!(!api.schema_errors("MetricValue", &missing_value).is_empty());
        let mut rate_with_detail = rate.clone();
        rate_with_detail["detail"] = timing["detail"].clone();
        assert!(
            !api.schema_errors("MetricValue", &rate_with_detail)
                .is_empty()
        );
    }

    #[test]
    fn validators_are_shareable() {
        fn sync<T: Send + Sync>() {}
        sync::<OpenApi>();
    }
}
