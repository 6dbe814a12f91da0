//! Validation of JSON against the official Jellyfin OpenAPI specs, as carried in
//! `tests/fixtures/openapi/`: each spec cut down by `tests/fixtures/openapi/compact.py` to the
//! operations the tests validate and the schemas they reach, unchanged (`JD_TEST_OPENAPI_DIR`
//! points at another folder, e.g. the whole specs).
//!
//! The specs are OpenAPI 3.0, whose schema dialect differs from JSON Schema in two ways that
//! matter here, so each spec is converted once: `nullable: true` becomes a `null` alternative,
//! and an `enum` placed on an array (a generator bug on e.g. `TranscodeReasons`) is moved to its
//! items. `format` is not checked: Jellyfin's own GUIDs (32 hex digits, no dashes) are not in
//! the `uuid` format the spec names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value, json};

pub const VERSIONS: [&str; 4] = ["10.9.11", "10.10.7", "10.11.11", "12.0.0"];

fn dir() -> PathBuf {
    std::env::var_os("JD_TEST_OPENAPI_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi"))
}

pub struct Spec {
    pub version: String,
    root: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The converted spec of one server version (loaded once per test process).
pub fn spec(version: &str) -> &'static Spec {
    static SPECS: OnceLock<Mutex<HashMap<String, &'static Spec>>> = OnceLock::new();
    let map = SPECS.get_or_init(Default::default);
    if let Some(spec) = lock(map).get(version) {
        return spec;
    }
    // Loaded without the lock held: a spec that cannot be read fails the test that wants it,
    // with its own message, and leaves the others' lock unpoisoned.
    let path = dir().join(format!("jellyfin-openapi-{version}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read the OpenAPI spec {} ({e}); regenerate it with \
             tests/fixtures/openapi/compact.py, or set JD_TEST_OPENAPI_DIR",
            path.display()
        )
    });
    let mut root: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the OpenAPI spec {} is not JSON: {e}", path.display()));
    convert(&mut root);
    let loaded: &'static Spec = Box::leak(Box::new(Spec {
        version: version.to_string(),
        root,
        validators: Mutex::new(HashMap::new()),
    }));
    lock(map).entry(version.to_string()).or_insert(loaded)
}

/// A test that failed while holding one of these locks left nothing half-done in it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn convert(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for child in o.values_mut() {
                convert(child);
            }
            if o.get("type") == Some(&json!("array"))
                && let Some(e) = o.remove("enum")
                && let Some(items) = o.get_mut("items").and_then(Value::as_object_mut)
            {
                items.insert("enum".into(), e);
            }
            if o.remove("nullable") == Some(json!(true)) {
                let inner = Value::Object(std::mem::take(o));
                o.insert("anyOf".into(), json!([{"type": "null"}, inner]));
            }
        }
        Value::Array(a) => a.iter_mut().for_each(convert),
        _ => {}
    }
}

impl Spec {
    fn validator(&self, key: &str, schema: Value) -> Arc<jsonschema::Validator> {
        let mut g = lock(&self.validators);
        g.entry(key.to_string())
            .or_insert_with(|| {
                let mut doc = match schema {
                    Value::Object(o) => o,
                    other => {
                        let mut m = Map::new();
                        m.insert("allOf".into(), json!([other]));
                        m
                    }
                };
                doc.insert("components".into(), self.root["components"].clone());
                Arc::new(
                    jsonschema::options()
                        .with_draft(jsonschema::Draft::Draft4)
                        .should_validate_formats(false)
                        .build(&Value::Object(doc))
                        .unwrap_or_else(|e| panic!("schema {key}: {e}")),
                )
            })
            .clone()
    }

    fn check(&self, what: &str, validator: &jsonschema::Validator, instance: &Value) {
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .take(10)
            .collect();
        assert!(
            errors.is_empty(),
            "{what} does not validate against Jellyfin {}:\n{}",
            self.version,
            errors.join("\n")
        );
    }

    /// Validate against `components/schemas/<name>`.
    pub fn assert_schema(&self, name: &str, instance: &Value) {
        assert!(
            self.root["components"]["schemas"].get(name).is_some(),
            "no schema {name} in {}",
            self.version
        );
        let v = self.validator(
            &format!("schema:{name}"),
            json!({"$ref": format!("#/components/schemas/{name}")}),
        );
        self.check(name, &v, instance);
    }

    /// Validate a 200 response of `method path` (path as in the spec, e.g. `/Users/{userId}`).
    pub fn assert_response(&self, method: &str, path: &str, instance: &Value) {
        let op = &self.root["paths"][path][method.to_ascii_lowercase()];
        let schema = op["responses"]["200"]["content"]["application/json"]["schema"].clone();
        assert!(
            !schema.is_null(),
            "no JSON 200 response for {method} {path} in {}",
            self.version
        );
        let v = self.validator(&format!("{method} {path}"), schema);
        self.check(&format!("response of {method} {path}"), &v, instance);
    }

    /// Validate a request body of `method path`.
    pub fn assert_request(&self, method: &str, path: &str, instance: &Value) {
        let op = &self.root["paths"][path][method.to_ascii_lowercase()];
        let schema = op["requestBody"]["content"]["application/json"]["schema"].clone();
        assert!(
            !schema.is_null(),
            "no JSON request body for {method} {path} in {}",
            self.version
        );
        let v = self.validator(&format!("req {method} {path}"), schema);
        self.check(&format!("request body of {method} {path}"), &v, instance);
    }
}
