//! The resource types the double serves: a few built-ins (CustomResourceDefinitions among them)
//! plus the CRDs it was started with or that were created through the API since.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::CompiledSchema;
use serde_json::{Value, json};

use super::crd;
use super::status::ApiError;

/// One served resource (one group/version/plural).
#[derive(Debug)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// Custom resources: generation, required resourceVersion on PUT, schema validation.
    pub custom: bool,
    /// The CRD version's `openAPIV3Schema` and its compiled CEL rules.
    pub schema: Option<(Value, CompiledSchemaBox)>,
}

/// `CompiledSchema` is not `Debug`; wrap it so `Resource` can be.
pub struct CompiledSchemaBox(pub CompiledSchema);

impl std::fmt::Debug for CompiledSchemaBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledSchema")
    }
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` as the real server names it in messages
    /// ("secrets", "leases.coordination.k8s.io").
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Resource {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
            status_subresource: plural == "namespaces",
            custom: false,
            schema: None,
        }
    }
}

/// All served resources.
#[derive(Debug)]
pub struct Registry {
    pub resources: Vec<Arc<Resource>>,
}

/// The resources one CRD serves: one per served version, with its schema and compiled rules.
fn crd_resources(crd: &CustomResourceDefinition) -> Result<Vec<Resource>, String> {
    let spec = &crd.spec;
    let mut out = Vec::new();
    for v in spec.versions.iter().filter(|v| v.served) {
        let schema = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| e.to_string())?;
        let schema = schema.map(|s| {
            let compiled = kube::core::cel::compile_schema(&s);
            (s, CompiledSchemaBox(compiled))
        });
        if let Some((_, c)) = &schema
            && c.0.has_errors()
        {
            let errs: Vec<String> =
                c.0.compilation_errors()
                    .iter()
                    .map(|e| e.to_string())
                    .collect();
            return Err(format!(
                "CRD {}: CEL rules do not compile: {errs:?}",
                spec.names.plural
            ));
        }
        out.push(Resource {
            group: spec.group.clone(),
            version: v.name.clone(),
            plural: spec.names.plural.clone(),
            kind: spec.names.kind.clone(),
            namespaced: spec.scope == "Namespaced",
            status_subresource: v.subresources.as_ref().is_some_and(|s| s.status.is_some()),
            custom: true,
            schema,
        });
    }
    Ok(out)
}

impl Registry {
    /// The built-ins plus `crds`, each checked as the real server checks a CRD on create
    /// (a refusal is the 422 message it would answer).
    pub fn new(crds: &[CustomResourceDefinition]) -> Result<Self, String> {
        let mut crd_resource =
            Resource::builtin(crd::GROUP, crd::VERSION, crd::PLURAL, crd::KIND, false);
        crd_resource.status_subresource = true;
        let mut resources = vec![
            Resource::builtin("", "v1", "namespaces", "Namespace", false),
            Resource::builtin("", "v1", "secrets", "Secret", true),
            Resource::builtin("events.k8s.io", "v1", "events", "Event", true),
            Resource::builtin("coordination.k8s.io", "v1", "leases", "Lease", true),
            crd_resource,
        ];
        for crd in crds {
            let value = serde_json::to_value(crd).map_err(|e| e.to_string())?;
            let causes = crd::validate(&value, None);
            if !causes.is_empty() {
                let name = crd.metadata.name.as_deref().unwrap_or("");
                return Err(ApiError::invalid(crd::KIND, crd::GROUP, name, &causes).message);
            }
            resources.extend(crd_resources(crd)?);
        }
        Ok(Registry {
            resources: resources.into_iter().map(Arc::new).collect(),
        })
    }

    /// Serve exactly the custom resources of `crds` (the stored CRD objects, after one was
    /// created, changed or deleted); returns the group resources no longer served.
    pub fn sync_crds(&mut self, crds: &[Value]) -> Vec<String> {
        let mut custom = Vec::new();
        for value in crds {
            let parsed = serde_json::from_value::<CustomResourceDefinition>(value.clone())
                .map_err(|e| e.to_string())
                .and_then(|crd| crd_resources(&crd));
            match parsed {
                Ok(rs) => custom.extend(rs.into_iter().map(Arc::new)),
                Err(e) => tracing::warn!(error = %e, "CustomResourceDefinition not served"),
            }
        }
        let before: Vec<String> = self
            .resources
            .iter()
            .filter(|r| r.custom)
            .map(|r| r.group_resource())
            .collect();
        self.resources.retain(|r| !r.custom);
        self.resources.extend(custom);
        let mut gone: Vec<String> = before
            .into_iter()
            .filter(|gr| !self.resources.iter().any(|r| r.group_resource() == *gr))
            .collect();
        gone.sort();
        gone.dedup();
        gone
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// `GET /api` body.
    pub fn core_versions(&self) -> Value {
        json!({"kind": "APIVersions", "versions": ["v1"],
               "serverAddressByClientCIDRs": [
                   {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
    }

    /// `GET /apis` body: one APIGroup per non-core group.
    pub fn group_list(&self) -> Value {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in self.resources.iter().filter(|r| !r.group.is_empty()) {
            match groups.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version.clone()),
                Some(_) => {}
                None => groups.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                json!({"name": g, "versions": versions.clone(), "preferredVersion": versions[0]})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /api/v1` or `/apis/{group}/{version}` body, or None for an unknown group/version.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let rs: Vec<&Arc<Resource>> = self
            .resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .collect();
        if rs.is_empty() {
            return None;
        }
        let verbs = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let mut list = Vec::new();
        for r in &rs {
            list.push(
                json!({"name": r.plural, "singularName": r.kind.to_lowercase(),
                "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs}),
            );
            if r.status_subresource {
                list.push(
                    json!({"name": format!("{}/status", r.plural), "singularName": "",
                    "namespaced": r.namespaced, "kind": r.kind,
                    "verbs": ["get", "patch", "update"]}),
                );
            }
        }
        Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": rs[0].api_version(), "resources": list}))
    }
}
