//! MediaJobs as the watch delivers them, parsed without `metadata.managedFields`.
//!
//! Every write to a MediaJob comes back through the watch as the whole object, and managedFields
//! is most of it: one entry per field manager, each a tree of the fields it owns. k8s-openapi
//! parses that tree into `serde_json::Value`s, only for the store to drop them
//! (`projection.rs`). Here the same object is parsed with managedFields skipped by serde, which
//! reads past it without building anything.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use kube::runtime::watcher;
use serde::{Deserialize, Deserializer};

use crate::crd::{MediaJob, MediaJobSpec, MediaJobStatus};

/// A MediaJob whose managedFields were never read. Same resource, same URL, same JSON.
#[derive(Clone, Debug)]
pub struct WatchedMediaJob(pub MediaJob);

impl WatchedMediaJob {
    /// The watcher's event, with the MediaJob inside.
    pub fn unwrap_event(event: watcher::Event<Self>) -> watcher::Event<MediaJob> {
        use watcher::Event;
        match event {
            Event::Apply(job) => Event::Apply(job.0),
            Event::Delete(job) => Event::Delete(job.0),
            Event::Init => Event::Init,
            Event::InitApply(job) => Event::InitApply(job.0),
            Event::InitDone => Event::InitDone,
        }
    }
}

impl Resource for WatchedMediaJob {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        MediaJob::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        MediaJob::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        MediaJob::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        MediaJob::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

impl<'de> Deserialize<'de> for WatchedMediaJob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            metadata: MetadataWithoutManagedFields,
            spec: MediaJobSpec,
            status: Option<MediaJobStatus>,
        }
        let wire = Wire::deserialize(deserializer)?;
        Ok(Self(MediaJob {
            metadata: wire.metadata.into(),
            spec: wire.spec,
            status: wire.status,
        }))
    }
}

/// `ObjectMeta`'s fields but managedFields: an unknown field to serde, so skipped unparsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataWithoutManagedFields {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

// No `..Default::default()`: a field k8s-openapi adds to ObjectMeta stops this compiling instead
// of being dropped silently.
impl From<MetadataWithoutManagedFields> for ObjectMeta {
    fn from(m: MetadataWithoutManagedFields) -> Self {
        ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored_job() -> serde_json::Value {
        json!({
            "apiVersion": "mediajob.io/v1alpha1",
            "kind": "MediaJob",
            "metadata": {
                "name": "ep1", "namespace": "media", "uid": "u-1", "generation": 2,
                "resourceVersion": "41", "creationTimestamp": "2026-12-02T10:00:00Z",
                "labels": {"team": "audio"},
                "annotations": {"note": "x"},
                "finalizers": ["mediajob.io/cleanup"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "u-0"}],
                "managedFields": [
                    {"manager": "kubectl", "operation": "Apply", "apiVersion": "mediajob.io/v1alpha1",
                     "time": "2026-12-02T10:00:00Z", "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:spec": {"f:operation": {}, "f:input": {"f:url": {}}}}},
                    {"manager": "mediajob-operator", "operation": "Apply", "subresource": "status",
                     "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:phase": {}}}}
                ]
            },
            "spec": {"operation": "enhance", "input": {"url": "s3://in/a.wav"}, "output": {"url": "s3://out/a.wav"},
                     "credentials": {"secretRef": {"name": "s3"}}},
            "status": {"phase": "Running", "observedGeneration": 2}
        })
    }

    #[test]
    fn a_watched_job_is_the_whole_job_without_managed_fields() {
        let value = stored_job();
        let mut whole: MediaJob = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(
            whole.metadata.managed_fields.as_ref().map(Vec::len),
            Some(2)
        );
        let watched: WatchedMediaJob = serde_json::from_value(value).unwrap();
        whole.metadata.managed_fields = None;
        assert_eq!(watched.0, whole);
    }

    #[test]
    fn a_job_without_status_parses() {
        let mut value = stored_job();
        value.as_object_mut().unwrap().remove("status");
        let watched: WatchedMediaJob = serde_json::from_value(value).unwrap();
        assert_eq!(watched.0.status, None);
    }

    #[test]
    fn it_is_the_same_resource() {
        assert_eq!(
            WatchedMediaJob::url_path(&(), Some("media")),
            MediaJob::url_path(&(), Some("media"))
        );
        assert_eq!(
            WatchedMediaJob::api_version(&()),
            MediaJob::api_version(&())
        );
    }
}
