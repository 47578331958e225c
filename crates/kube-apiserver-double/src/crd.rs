//! CustomResourceDefinitions as objects: what a real server checks when one is created or
//! updated (its name, its CEL rules parse, their estimated cost), and the status it reports.

use serde_json::{Value, json};

use super::cel_cost;
use super::store::now;

pub const GROUP: &str = "apiextensions.k8s.io";
pub const VERSION: &str = "v1";
pub const PLURAL: &str = "customresourcedefinitions";
pub const KIND: &str = "CustomResourceDefinition";

/// (field path, message) pairs, as they appear in a 422 Status.
pub type Causes = Vec<(String, String)>;

/// The causes of refusal of a CRD on create (`old` = None) or update; empty = valid.
pub fn validate(new: &Value, old: Option<&Value>) -> Causes {
    let mut causes = Causes::new();
    let spec = &new["spec"];
    let name = new["metadata"]["name"].as_str().unwrap_or("");
    let required = format!(
        "{}.{}",
        spec["names"]["plural"].as_str().unwrap_or(""),
        spec["group"].as_str().unwrap_or("")
    );
    if name != required {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    for (path, schema, per_expression) in schemas(new, old) {
        causes.extend(cel_cost::check_schema(schema, &path, per_expression).causes);
    }
    causes
}

/// Each schema to check, with the path the real server reports it at and whether the
/// per-expression limit applies. v1 CRDs whose versions all share one schema are converted to
/// the internal form with that schema hoisted to `spec.validation`, so the real server names
/// that path; otherwise `spec.versions[i].schema`. On an update, a schema that did not change
/// is spared the per-expression limit (so a control-plane upgrade that costs rules higher does
/// not lock a CRD), but not the total.
pub(crate) fn schemas<'a>(new: &'a Value, old: Option<&Value>) -> Vec<(String, &'a Value, bool)> {
    let versions: Vec<(&str, Option<&Value>)> = new["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let schema = v["schema"].get("openAPIV3Schema").filter(|s| s.is_object());
            (v["name"].as_str().unwrap_or(""), schema)
        })
        .collect();
    let old_schema = |version: &str| -> Option<&Value> {
        old?["spec"]["versions"]
            .as_array()?
            .iter()
            .find(|v| v["name"].as_str() == Some(version))?["schema"]
            .get("openAPIV3Schema")
    };
    let unchanged = |version: &str, schema: &Value| old_schema(version) == Some(schema);
    let hoisted = match versions.first() {
        Some((_, Some(first))) => versions.iter().all(|(_, s)| *s == Some(*first)),
        _ => false,
    };
    if hoisted {
        let schema = versions[0].1.unwrap_or(&Value::Null);
        let all_unchanged = versions.iter().all(|(v, _)| unchanged(v, schema));
        return vec![(
            "spec.validation.openAPIV3Schema".into(),
            schema,
            !all_unchanged,
        )];
    }
    versions
        .iter()
        .enumerate()
        .filter_map(|(i, (version, schema))| {
            let schema = (*schema)?;
            Some((
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                schema,
                !unchanged(version, schema),
            ))
        })
        .collect()
}

/// The status a real server's controllers give an accepted CRD at once: names accepted,
/// established, the storage version recorded. Condition times are kept across updates so a
/// no-op write stays a no-op.
pub fn accepted_status(new: &Value, old: Option<&Value>) -> Value {
    let spec = &new["spec"];
    let mut names = spec["names"].clone();
    let kind = names["kind"].as_str().unwrap_or("").to_string();
    if names.get("singular").is_none() {
        names["singular"] = json!(kind.to_lowercase());
    }
    if names.get("listKind").is_none() {
        names["listKind"] = json!(format!("{kind}List"));
    }
    let mut stored: Vec<Value> = old
        .and_then(|o| o["status"]["storedVersions"].as_array().cloned())
        .unwrap_or_default();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["storage"] == Value::Bool(true) && !stored.contains(&v["name"]) {
            stored.push(v["name"].clone());
        }
    }
    let since = |ty: &str| {
        old.and_then(|o| o["status"]["conditions"].as_array())
            .into_iter()
            .flatten()
            .find(|c| c["type"] == ty)
            .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
            .unwrap_or_else(now)
    };
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted",
             "lastTransitionTime": since("Established")},
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(versions: Value) -> Value {
        json!({"metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"},
                "scope": "Namespaced", "versions": versions}})
    }

    fn version(name: &str, rule: &str) -> Value {
        json!({"name": name, "served": true, "storage": name == "v1", "schema": {
            "openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
                "properties": {"name": {"type": "string"}},
                "x-kubernetes-validations": [{"rule": rule}]}}}}})
    }

    /// 3.1M (an unbounded string) × a 200-character regex: over the per-expression limit.
    fn expensive() -> String {
        format!("self.name.matches('{}')", "a".repeat(200))
    }

    fn fields(c: &Causes) -> Vec<&str> {
        c.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn names_must_be_plural_dot_group() {
        let mut c = crd(json!([version("v1", "true")]));
        assert!(validate(&c, None).is_empty());
        c["metadata"]["name"] = json!("widget.example.com");
        assert_eq!(fields(&validate(&c, None)), ["metadata.name"]);
    }

    #[test]
    fn one_shared_schema_is_reported_at_spec_validation() {
        let c = crd(json!([
            version("v1", &expensive()),
            version("v2", &expensive())
        ]));
        assert_eq!(
            fields(&validate(&c, None)),
            ["spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"]
        );
        let c = crd(json!([version("v1", "true"), version("v2", &expensive())]));
        assert_eq!(
            fields(&validate(&c, None)),
            ["spec.versions[1].schema.openAPIV3Schema.properties[spec].\
              x-kubernetes-validations[0].rule"]
        );
    }

    #[test]
    fn an_update_that_keeps_an_expensive_schema_is_allowed() {
        let old = crd(json!([version("v1", &expensive())]));
        let mut new = old.clone();
        new["spec"]["names"]["shortNames"] = json!(["w"]);
        assert!(validate(&new, Some(&old)).is_empty());
        let cheap = crd(json!([version("v1", "true")]));
        assert_eq!(
            validate(&old, Some(&cheap)).len(),
            1,
            "a changed schema is checked"
        );
    }

    #[test]
    fn the_accepted_status_records_names_and_storage() {
        let c = crd(json!([version("v1", "true"), version("v2", "true")]));
        let s = accepted_status(&c, None);
        assert_eq!(s["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(s["acceptedNames"]["singular"], "widget");
        assert_eq!(s["storedVersions"], json!(["v1"]));
        assert_eq!(s["conditions"][1]["type"], "Established");
        let mut old = c.clone();
        old["status"] = s.clone();
        assert_eq!(accepted_status(&c, Some(&old)), s, "stable across updates");
    }
}
