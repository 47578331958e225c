//! Every write the operator makes to Kubernetes, in one place: status by server-side apply under
//! one field manager, the finalizer by merge patch guarded by resourceVersion, deletion after
//! ttlSecondsAfterFinished, and Events. The operator never writes `spec`.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Deserialize;
use serde_json::json;

use super::conditions::bounded;
use super::decide::FINALIZER;
use super::events::EventNote;
use crate::crd::{MediaJob, MediaJobStatus};

/// The field manager that owns `.status` (and nothing else).
pub const FIELD_MANAGER: &str = "mediajob-operator";

/// What the operator reads of a write's answer: the object's new resourceVersion. The answer is
/// the whole object, managedFields included; only this field is parsed (serde skips the rest
/// without building it).
#[derive(Debug, Deserialize)]
pub struct Written {
    metadata: WrittenMetadata,
}

#[derive(Debug, Deserialize)]
struct WrittenMetadata {
    #[serde(rename = "resourceVersion")]
    resource_version: Option<String>,
}

impl Written {
    pub fn resource_version(&self) -> Option<&str> {
        self.metadata.resource_version.as_deref()
    }
}

/// Sends a PATCH of `job` (or of its `subresource`) and reads back only what `Written` holds.
async fn patch_reading_version<P: serde::Serialize>(
    client: &Client,
    job: &MediaJob,
    subresource: Option<&str>,
    params: &PatchParams,
    patch: &Patch<P>,
) -> kube::Result<Written> {
    let request = kube::core::Request::new(MediaJob::url_path(&(), job.namespace().as_deref()));
    let name = job.name_any();
    let http = match subresource {
        Some(subresource) => request.patch_subresource(subresource, &name, params, patch),
        None => request.patch(&name, params, patch),
    }
    .map_err(kube::Error::BuildRequest)?;
    client.request::<Written>(http).await
}

/// Applies the whole status. Fields we no longer set are removed, because this manager owns them.
/// `resource_version` is a precondition: a pass that decided on a stale copy of the object (the
/// watch cache lags behind our own writes) is refused with 409 instead of overwriting newer status
/// or submitting a second job.
pub async fn apply_status(
    client: &Client,
    job: &MediaJob,
    status: &MediaJobStatus,
    resource_version: Option<&str>,
) -> kube::Result<Written> {
    let mut patch = json!({
        "apiVersion": MediaJob::api_version(&()),
        "kind": MediaJob::kind(&()),
        "status": status,
    });
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    patch_reading_version(client, job, Some("status"), &params, &Patch::Apply(&patch)).await
}

/// Adds our finalizer, keeping any others; refused with 409 if the object changed meanwhile.
pub async fn add_finalizer(client: &Client, job: &MediaJob) -> kube::Result<Written> {
    let mut finalizers = job.finalizers().to_vec();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        finalizers.push(FINALIZER.to_string());
    }
    patch_finalizers(client, job, finalizers).await
}

pub async fn remove_finalizer(client: &Client, job: &MediaJob) -> kube::Result<Written> {
    let finalizers: Vec<String> = job
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(client, job, finalizers).await
}

async fn patch_finalizers(
    client: &Client,
    job: &MediaJob,
    finalizers: Vec<String>,
) -> kube::Result<Written> {
    let patch = json!({
        "metadata": {
            "resourceVersion": job.resource_version(),
            "finalizers": finalizers,
        }
    });
    patch_reading_version(
        client,
        job,
        None,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
}

/// Deletes a finished job whose ttlSecondsAfterFinished has passed, only if it is still the
/// object we decided on: the same uid and the same resourceVersion, so an edit made just before
/// the TTL ran out (a retry, a new spec) is never deleted with it (the API server answers 409).
pub async fn delete_finished(client: &Client, job: &MediaJob) -> kube::Result<()> {
    let api: Api<MediaJob> = Api::namespaced(client.clone(), &job.namespace().unwrap_or_default());
    let mut params = DeleteParams::background();
    params.preconditions = Some(kube::api::Preconditions {
        uid: job.uid(),
        resource_version: job.resource_version(),
    });
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Who Events say published them (events.k8s.io `reportingController`, `reportingInstance`).
#[derive(Clone, Debug)]
pub struct EventReporter {
    pub controller: String,
    pub instance: String,
}

/// Publishes one Event about `job`. Failures are logged, not returned: an Event is never worth
/// failing a reconcile for.
///
/// Each Event is created as it is. kube-runtime's `Recorder` keeps every Event of the last six
/// minutes to count repeats into a series, and scans them all on every publish: with thousands of
/// jobs finishing that was the operator's largest CPU cost and megabytes of memory, while the
/// operator publishes only on transitions, which do not repeat.
pub async fn publish_event<K: Resource<DynamicType = ()>>(
    client: &Client,
    reporter: &EventReporter,
    job: &K,
    note: &EventNote,
    action: &str,
) {
    let reference: ObjectReference = job.object_ref(&());
    let now = jiff::Timestamp::now();
    let namespace = job.namespace().unwrap_or_else(|| "default".into());
    let event = Event {
        metadata: ObjectMeta {
            // Unique per job and moment, as `kubectl` and client-go name them.
            name: Some(format!("{}.{:x}", job.name_any(), now.as_nanosecond())),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        type_: Some(if note.warning { "Warning" } else { "Normal" }.into()),
        reason: Some(note.reason.clone()),
        // events.k8s.io/v1 refuses a note over 1 kB.
        note: Some(bounded(&note.note, 1000)),
        action: Some(action.to_string()),
        regarding: Some(reference),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        ..Default::default()
    };
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    if let Err(error) = api.create(&PostParams::default(), &event).await {
        tracing::warn!(job = %job.name_any(), %error, "could not publish an Event");
    }
}
