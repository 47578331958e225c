//! `MediaJobSet`: every object under an S3 prefix, one child MediaJob each.
//!
//! Semantics from `batch/v1` Indexed Jobs where they fit (parallelism, each child's own retry
//! budget, a limit on failed items, suspend), plus an inbox mode that lists again on an interval.
//! The set only creates MediaJobs; submission and exactly-once stay with each MediaJob.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::spec::{
    AccessMode, DeletionPolicy, InputLocation, MediaApiCredentialsRef, MediaJobSpec,
    OutputLocation, RetryPolicy, S3CredentialsRef, S3Settings, UrlPolicy,
};
use crate::operation::Operation;

/// Child MediaJobs in flight at once when `parallelism` is not set.
pub const DEFAULT_PARALLELISM: i32 = 10;

/// Every object under an S3 prefix, processed once each by a child MediaJob.
// The printer columns repeat `type_` (one per column), which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mediajob.io",
    version = "v1alpha1",
    kind = "MediaJobSet",
    plural = "mediajobsets",
    shortname = "mjs",
    category = "media",
    doc = "Every object under an S3 prefix, each processed once by a child MediaJob; optionally keeps processing what arrives.",
    namespaced,
    status = "MediaJobSetStatus",
    derive = "PartialEq",
    cel,
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Found", type_ = "integer", json_path = ".status.found"),
    printcolumn(name = "Succeeded", type_ = "integer", json_path = ".status.succeeded"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.failed"),
    printcolumn(name = "Running", type_ = "integer", json_path = ".status.running"),
    printcolumn(
        name = "Skipped",
        type_ = "integer",
        json_path = ".status.skipped",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MediaJobSetSpec {
    /// Which objects the set processes.
    pub source: SetSource,

    /// The MediaJob each object gets: its input is the object; output URLs are templates over
    /// the object's key ({key}, {dir}, {name}, {stem}, {ext}, {set}).
    pub template: MediaJobTemplate,

    /// Child MediaJobs in flight at once. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub parallelism: Option<i32>,

    /// Stop starting new objects once more than this many have failed for good (each child
    /// keeps its own retry.limit); the set then ends Failed. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_failed: Option<i32>,

    /// An object whose outputs all exist already is counted as skipped, not processed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_existing: Option<bool>,

    /// While true, nothing new starts; the set still lists and shows its plan (objects, bytes,
    /// sample input and output pairs) in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// Inbox mode: list the prefix again every interval and process the objects that arrived.
    /// Without it the set ends once every object is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<SetWatch>,

    /// A completion report: one JSON line per object, written to S3 with the set's credentials
    /// when the set ends and, in inbox mode, after each listing that found work done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<SetReport>,
}

/// Where the completion report goes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetReport {
    /// `s3://BUCKET/KEY` of the report (JSON Lines). Its parts are kept beside it, under
    /// `KEY.parts/`, and the report is put together from them.
    #[schemars(regex(pattern = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s#]*[^\s#/]$"))]
    pub url: String,
}

/// An S3 prefix and the globs that pick objects under it. It cannot change: the set's cursor and
/// its children's names are keys below this prefix, selected by these globs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self == oldSelf")
        .message("source cannot change once the set exists (its progress is a position in this listing); create a new MediaJobSet")
        .reason(Reason::FieldValueForbidden),
)]
pub struct SetSource {
    /// `s3://BUCKET/PREFIX/` (or `s3://BUCKET/` for the whole bucket).
    #[schemars(regex(pattern = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s#]*$"))]
    pub prefix: String,

    /// Globs on the key below the prefix, as `aws s3 cp --include` (`*` crosses `/`). An object
    /// must match one of them; all objects when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub include: Option<Vec<String>>,

    /// Globs on the key below the prefix; an object matching any of them is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub exclude: Option<Vec<String>>,
}

/// How often an inbox set lists again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetWatch {
    /// A Go-style duration, at least 10s: `30s`, `5m`, `1h`.
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    pub interval: String,
}

/// A MediaJob spec without its input (each object is one) and without the fields the set owns
/// (suspend; the children's lifetime: a child deleted before the set counted it would make its
/// object look new).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.operation != 'diagnose' || (!has(self.output) && !has(self.outputs))")
        .message("diagnose returns its result in status and takes no output"),
    validation = Rule::new("self.operation == 'diagnose' || (has(self.output) != has(self.outputs))")
        .message("set exactly one of output or outputs"),
)]
pub struct MediaJobTemplate {
    /// The Media API job to run for each object.
    pub operation: Operation,

    /// Media API parameters of each input (`input.parameters` of the children).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::free_form_object")]
    pub input_parameters: Option<Map<String, Value>>,

    /// Where each object's result goes: a URL template over the object's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Box<OutputLocation>>,

    /// Several outputs per object (transcode, mastering), each a URL template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 10))]
    pub outputs: Option<Vec<OutputLocation>>,

    /// The Secret with the S3 credentials: for the children, and for the set's own listing,
    /// output checks and report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Box<S3CredentialsRef>>,

    /// How the Media API reaches the objects. Default presign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessMode>,

    /// Expiry policy for pre-signed URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Box<UrlPolicy>>,

    /// Where the S3 objects live, for S3-compatible stores and non-default regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<Box<S3Settings>>,

    /// Passed through into each Media API request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::free_form_object")]
    pub parameters: Option<Map<String, Value>>,

    /// How often each child submits a failed remote job again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,

    /// Each child gives up this long after its first submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2592000))]
    pub active_deadline_seconds: Option<i64>,

    /// What happens to a child's remote job when the child (or the set) is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,

    /// A Secret with Media API app credentials, instead of the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_api_credentials: Option<Box<MediaApiCredentialsRef>>,
}

impl MediaJobTemplate {
    /// The URL templates of the outputs, in order.
    pub fn output_templates(&self) -> Vec<String> {
        match (&self.output, &self.outputs) {
            (Some(output), _) => vec![output.url.clone()],
            (None, Some(outputs)) => outputs.iter().map(|o| o.url.clone()).collect(),
            (None, None) => vec![],
        }
    }

    /// The spec of the child for one object: its input, and its outputs rendered.
    pub fn child_spec(&self, input_url: String, outputs: Vec<String>) -> MediaJobSpec {
        let location = |(url, template): (String, &OutputLocation)| OutputLocation {
            url,
            parameters: template.parameters.clone(),
        };
        let (output, outputs) = match (&self.output, &self.outputs) {
            (Some(template), _) => (
                outputs
                    .into_iter()
                    .next()
                    .map(|url| Box::new(location((url, template)))),
                None,
            ),
            (None, Some(templates)) => (
                None,
                Some(outputs.into_iter().zip(templates).map(location).collect()),
            ),
            (None, None) => (None, None),
        };
        MediaJobSpec {
            operation: self.operation,
            input: InputLocation {
                url: input_url,
                parameters: self.input_parameters.clone(),
            },
            output,
            outputs,
            credentials: self.credentials.clone(),
            access: self.access,
            urls: self.urls.clone(),
            s3: self.s3.clone(),
            parameters: self.parameters.clone(),
            retry: self.retry.clone(),
            active_deadline_seconds: self.active_deadline_seconds,
            ttl_seconds_after_finished: None,
            suspend: None,
            deletion_policy: self.deletion_policy,
            media_api_credentials: self.media_api_credentials.clone(),
        }
    }
}

impl MediaJobSetSpec {
    pub fn effective_parallelism(&self) -> usize {
        self.parallelism.unwrap_or(DEFAULT_PARALLELISM).max(1) as usize
    }
}

/// Where a set is in its life.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SetPhase {
    /// Suspended: listed and checked, nothing started (see `plan`).
    Planned,
    /// Objects are being processed.
    Running,
    /// Inbox mode: every object listed so far is done; listing again on the interval.
    Watching,
    /// Every object is done, none failed beyond `maxFailed`.
    Succeeded,
    /// More than `maxFailed` objects failed, or the set's spec cannot be used.
    Failed,
}

/// What the set has done and is doing. Counts cover every object, including those whose
/// children are gone: the set keeps a cursor, not a list of keys.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaJobSetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SetPhase>,
    /// Objects the last full listing selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<i64>,
    /// Selected objects not started yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
    /// Children in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<i64>,
    /// Objects whose child failed for good (its retry budget spent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<i64>,
    /// Objects whose outputs existed already (`skipExisting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<i64>,
    /// Every selected key up to this one (below the prefix, in S3's listing order) is done and
    /// counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// When the last full listing began: in inbox mode, objects written after it are new even
    /// if their keys sort before the cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_listed_at: Option<Time>,
    /// Children of objects written after a listing began whose keys sort before the cursor
    /// (inbox mode), counted already and kept until the next full listing has begun after them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_late: Option<Vec<String>>,
    /// Late objects counted as skipped (`skipExisting`: their outputs existed, so they have no
    /// child), kept, like `countedLate`, until a full listing has begun after them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_late: Option<Vec<SkippedLate>>,
    /// The first keys (at most 20) that failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_keys: Option<Vec<String>>,
    /// What the set will do: counted on every full listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<SetPlan>,
    /// The completion report: what is written of it (`spec.report`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<SetReportStatus>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (with `Reconciling`/`Stalled` for kstatus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::conditions")]
    pub conditions: Vec<Condition>,
}

/// A late object counted as skipped, and when it was written (the store's `LastModified`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkippedLate {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<Time>,
}

/// How far the completion report is written. Each status write that counts objects follows
/// the part holding their lines (part `parts - 1`), so every counted object has exactly one line.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetReportStatus {
    /// The report these parts are of (`spec.report.url`); another URL starts a new report.
    pub url: String,
    /// Parts written (`KEY.parts/<set uid>/00000000.jsonl` on).
    pub parts: i64,
    /// Lines in those parts: objects counted since the report was asked for.
    pub lines: i64,
    /// Bytes in those parts.
    pub bytes: i64,
    /// The parts the report object holds, as last put together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_parts: Option<i64>,
    /// When the report object was last put together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_at: Option<Time>,
}

/// A set's listing, before anything is spent: how much there is and where it goes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetPlan {
    pub objects: i64,
    pub bytes: i64,
    /// A few objects and the outputs they would get.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<SetSample>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetSample {
    pub input: String,
    pub outputs: Vec<String>,
}

/// Checks an inbox interval: a Go duration of at least ten seconds.
pub fn watch_interval(watch: &SetWatch) -> Result<std::time::Duration, String> {
    let interval = super::defaults::parse_duration(&watch.interval)
        .map_err(|e| format!("watch.interval: {e}"))?;
    if interval < std::time::Duration::from_secs(10) {
        return Err(format!(
            "watch.interval {:?} is under the 10s minimum",
            watch.interval
        ));
    }
    Ok(interval)
}
