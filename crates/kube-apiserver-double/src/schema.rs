//! Structural-schema validation and pruning of custom resources, then their
//! `x-kubernetes-validations` CEL rules (via kube's `cel` feature).
//!
//! Covers what our CRDs use: type, required, enum, pattern, minimum/maximum (and exclusive),
//! minLength/maxLength, minItems/maxItems, nullable, x-kubernetes-preserve-unknown-fields,
//! x-kubernetes-int-or-string, additionalProperties, and `default`s (applied after pruning, so
//! the stored object carries them). Not covered: format, oneOf/anyOf/allOf/not, list-type
//! uniqueness.

use kube::core::cel::CompiledSchema;
use serde_json::{Map, Value};

/// (field path, message) pairs, as they appear in a 422 Status.
pub type Causes = Vec<(String, String)>;

/// Prune unknown fields in place, then validate; returns the causes of refusal (empty = valid).
pub fn prune_and_validate(
    schema: &Value,
    compiled: &CompiledSchema,
    obj: &mut Value,
    old: Option<&Value>,
) -> Causes {
    let mut causes = Vec::new();
    if let (Some(props), Some(map)) = (schema.get("properties"), obj.as_object_mut()) {
        // Prune, then default (the stored object carries the defaults), then validate.
        // apiVersion, kind and metadata are the server's, never pruned by the CRD schema.
        for (key, value) in map.iter_mut() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(sub) = props.get(key) {
                prune(sub, value);
            }
        }
        map.retain(|k, _| {
            matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || props.get(k).is_some()
        });
        let defaulted = kube::core::cel::apply_defaults(schema, &Value::Object(map.clone()));
        if let Value::Object(d) = defaulted {
            *map = d;
        }
        for key in required(schema) {
            if !map.contains_key(key) {
                causes.push((key.to_string(), "Required value".to_string()));
            }
        }
        for (key, sub) in props.as_object().into_iter().flatten() {
            if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(value) = map.get(key) {
                validate(sub, value, key, &mut causes);
            }
        }
    }
    if causes.is_empty()
        && let Err(errors) = kube::core::cel::validate_compiled(compiled, obj, old)
    {
        for e in errors.into_iter() {
            let field = if e.field_path.is_empty() {
                "<root>".into()
            } else {
                e.field_path
            };
            causes.push((field, format!("Invalid value: \"object\": {}", e.message)));
        }
    }
    causes
}

fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
}

/// Drop fields the schema does not know and nulls it does not allow, as the real server does.
fn prune(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keep_unknown = preserves_unknown(schema) || additional.is_some();
            map.retain(|k, v| {
                let sub = props.and_then(|p| p.get(k)).or(additional);
                let allowed_null = sub.is_some_and(|s| s["nullable"] == Value::Bool(true));
                !(v.is_null() && sub.is_some() && !allowed_null)
                    && (keep_unknown || props.is_some_and(|p| p.contains_key(k)))
            });
            for (k, v) in map.iter_mut() {
                if let Some(sub) = props.and_then(|p| p.get(k)).or(additional) {
                    prune(sub, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                items.iter_mut().for_each(|v| prune(item_schema, v));
            }
        }
        _ => {}
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How the real server prints a value in "Invalid value: …".
fn shown(v: &Value) -> String {
    match v {
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

fn validate(schema: &Value, value: &Value, path: &str, causes: &mut Causes) {
    let mut bad = |msg: String| causes.push((path.to_string(), msg));
    if value.is_null() {
        if schema["nullable"] != Value::Bool(true) {
            bad(format!(
                "Invalid value: \"null\": {path} in body must be of type {}",
                schema["type"].as_str().unwrap_or("object")
            ));
        }
        return;
    }
    let actual = type_name(value);
    let int_or_string = schema["x-kubernetes-int-or-string"] == Value::Bool(true);
    if let Some(want) = schema["type"].as_str() {
        let ok = want == actual || (want == "number" && actual == "integer");
        if !ok {
            bad(format!(
                "Invalid value: \"{actual}\": {path} in body must be of type {want}: \"{actual}\""
            ));
            return;
        }
    } else if int_or_string && !matches!(actual, "integer" | "string") {
        bad(format!(
            "Invalid value: {}: must be an integer or a string",
            shown(value)
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        bad(format!(
            "Unsupported value: {}: supported values: {}",
            shown(value),
            list.join(", ")
        ));
    }
    match value {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema["minLength"].as_u64().filter(|m| len < *m) {
                bad(format!(
                    "Invalid value: {}: {path} in body should be at least {min} chars long",
                    shown(value)
                ));
            }
            if let Some(max) = schema["maxLength"].as_u64().filter(|m| len > *m) {
                bad(format!("Too long: may not be more than {max} bytes"));
            }
            if let Some(p) = schema["pattern"].as_str() {
                match regex::Regex::new(p) {
                    Ok(re) if !re.is_match(s) => {
                        bad(format!(
                            "Invalid value: {}: {path} in body should match '{p}'",
                            shown(value)
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => bad(format!("invalid pattern {p:?} in schema: {e}")),
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let excl_min = schema["exclusiveMinimum"] == Value::Bool(true);
            let excl_max = schema["exclusiveMaximum"] == Value::Bool(true);
            if let Some(min) = schema["minimum"].as_f64()
                && (x < min || (excl_min && x == min))
            {
                let rel = if excl_min {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                bad(format!(
                    "Invalid value: {n}: {path} in body should be {rel} {min}"
                ));
            }
            if let Some(max) = schema["maximum"].as_f64()
                && (x > max || (excl_max && x == max))
            {
                let rel = if excl_max {
                    "less than"
                } else {
                    "less than or equal to"
                };
                bad(format!(
                    "Invalid value: {n}: {path} in body should be {rel} {max}"
                ));
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema["minItems"].as_u64().filter(|m| len < *m) {
                bad(format!(
                    "Invalid value: {len}: {path} in body should have at least {min} items"
                ));
            }
            if let Some(max) = schema["maxItems"].as_u64().filter(|m| len > *m) {
                bad(format!("Too many: {len}: must have at most {max} items"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), causes);
                }
            }
        }
        Value::Object(map) => validate_object(schema, map, path, causes),
        _ => {}
    }
}

fn validate_object(schema: &Value, map: &Map<String, Value>, path: &str, causes: &mut Causes) {
    for key in required(schema) {
        if !map.contains_key(key) {
            causes.push((format!("{path}.{key}"), "Required value".into()));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, v) in map {
        if let Some(sub) = props.and_then(|p| p.get(k)).or(additional) {
            validate(sub, v, &format!("{path}.{k}"), causes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
        "spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
            "mode": {"type": "string", "enum": ["a", "b"]},
            "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
            "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "opt": {"type": "string", "nullable": true}
        }}}})
    }

    fn check(mut obj: Value) -> (Value, Vec<String>) {
        let s = schema();
        let compiled = kube::core::cel::compile_schema(&s);
        let causes = prune_and_validate(&s, &compiled, &mut obj, None);
        (
            obj,
            causes
                .into_iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect(),
        )
    }

    #[test]
    fn prunes_unknown_fields_but_keeps_preserved_ones() {
        let (obj, causes) = check(
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"},
            "junk": 1,
            "spec": {"size": 1, "extra": true, "free": {"any": {"thing": 1}}, "opt": null}}),
        );
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(obj["junk"], Value::Null);
        assert_eq!(obj["spec"].get("extra"), None);
        assert_eq!(obj["spec"]["free"]["any"]["thing"], 1);
        assert!(obj["spec"].get("opt").is_some(), "nullable null is kept");
    }

    #[test]
    fn reports_each_violation_with_its_field() {
        let (_, causes) = check(json!({"spec": {"size": 11, "mode": "c", "name": "ABCDEFG",
            "tags": ["a", "b", 3]}}));
        let all = causes.join("\n");
        assert!(
            all.contains(
                "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
            ),
            "{all}"
        );
        assert!(all.contains("spec.mode: Unsupported value: \"c\""), "{all}");
        assert!(all.contains("spec.name: Too long"), "{all}");
        assert!(
            all.contains("spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match"),
            "{all}"
        );
        assert!(all.contains("spec.tags: Too many: 3"), "{all}");
        assert!(
            all.contains("spec.tags[2]: Invalid value: \"integer\""),
            "{all}"
        );
        let (_, causes) = check(json!({"spec": {}}));
        assert_eq!(causes, vec!["spec.size: Required value".to_string()]);
    }
}
