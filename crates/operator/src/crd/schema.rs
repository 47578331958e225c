//! Schema pieces schemars cannot express on its own, and the CRD as YAML.

use kube::CustomResourceExt;
use schemars::{Schema, SchemaGenerator, json_schema};

use super::MediaJob;

/// An object whose fields we pass through untouched (Media API parameters, inline results).
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// `[]metav1.Condition`, keyed by type as in core Kubernetes types, so server-side apply merges
/// conditions by type instead of replacing the list.
pub fn conditions(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {"type": "string", "maxLength": 316,
                         "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "reason": {"type": "string", "minLength": 1, "maxLength": 1024,
                           "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"},
                "message": {"type": "string", "maxLength": 32768},
            },
        },
    })
}

/// The CRD as the YAML in `crds/`, which `mediajob-operator crd` prints.
pub fn crd_yaml() -> String {
    let crd = MediaJob::crd();
    let yaml = serde_saphyr::to_string(&crd).expect("the CRD serializes to YAML");
    format!("---\n{yaml}")
}
