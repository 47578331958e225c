//! Schema pieces schemars cannot express on its own, and the CRD as YAML.

use kube::CustomResourceExt;
use schemars::{Schema, SchemaGenerator, json_schema};

use super::{MediaApiAccountClaim, MediaJob, MediaJobSet};

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

/// The files in `crds/`, each with the CRD it holds, in the order `mediajob-operator crd` prints them.
pub const CRD_FILES: [&str; 3] = [
    "mediajob.io_mediajobs.yaml",
    "mediajob.io_mediajobsets.yaml",
    "mediajob.io_mediaapiaccountclaims.yaml",
];

/// One CRD as the YAML in `crds/`.
fn to_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> String {
    let yaml = serde_saphyr::to_string(crd).expect("the CRD serializes to YAML");
    format!("---\n{yaml}")
}

/// The MediaJob CRD as the YAML in `crds/mediajob.io_mediajobs.yaml`.
pub fn crd_yaml() -> String {
    to_yaml(&MediaJob::crd())
}

/// Every CRD, one YAML per file of [`CRD_FILES`]; `mediajob-operator crd` prints them in order.
pub fn crds_yaml() -> [String; 3] {
    [
        to_yaml(&MediaJob::crd()),
        to_yaml(&MediaJobSet::crd()),
        to_yaml(&MediaApiAccountClaim::crd()),
    ]
}
