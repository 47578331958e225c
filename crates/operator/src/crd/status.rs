//! What the operator reports: `MediaJob.status`. Only the operator writes it, with server-side
//! apply under one field manager. Nothing here changes on every pass (no "last polled" stamps),
//! so an unchanged job produces no writes and no GitOps noise.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaJobStatus {
    /// Where the job is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// The Media API job id of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,

    /// The Media API job id of the last attempt that ended without success (failed, cancelled,
    /// refreshed), kept once `jobId` is cleared: the remote job a failed MediaJob names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job_id: Option<String>,

    /// Percent done (0-100), coarsened so long jobs do not write status on every poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<i32>,

    /// Remote jobs submitted so far (first submission, retries and URL refreshes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,

    /// Remote jobs that failed and were submitted again (counted against spec.retry.limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<i32>,

    /// Remote jobs cancelled and resubmitted because their URLs were about to expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_refreshes: Option<i32>,

    /// When the pre-signed URLs of the current attempt expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls_expire_at: Option<Time>,

    /// When a still unfinished job will be refreshed with new URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<Time>,

    /// The submission in flight, recorded before the request is sent so that after a crash the
    /// operator looks for the job it may already have created instead of submitting twice.
    // Boxed: every stored MediaJob carries this struct, most without a submission in flight
    // (see `a_stored_media_job_stays_in_its_allocation_class`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<Box<SubmissionRecord>>,

    /// When the first remote job was submitted (the start of activeDeadlineSeconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// When the job reached Succeeded, Failed or Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,

    /// Earliest time of the next attempt after a transient error; survives operator restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Time>,

    /// The outputs of a succeeded job, as S3 described them when the operator read their
    /// metadata (HEAD) after the Media API reported success.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "outputs_old_or_new"
    )]
    pub outputs: Option<Vec<OutputStatus>>,

    /// The inline result of jobs that return one (diagnose, mastering preview).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::free_form_object")]
    pub result: Option<serde_json::Map<String, Value>>,

    /// Ready, Submitted, Succeeded, Failed, ... (metav1.Condition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::conditions")]
    pub conditions: Vec<Condition>,

    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One output of a succeeded job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutputStatus {
    /// Where it was written (the URL without any query string).
    pub url: String,
    /// Whether the operator read the object's metadata after the job succeeded; when false,
    /// `message` says why it could not.
    pub verified: bool,
    /// Its size in bytes, as the store reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Its ETag, as the store reported it (quotes included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// When the store last wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<Time>,
    /// Why the output was not verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Reads `status.outputs` as written now (objects) or by earlier releases (bare URLs), so a job
/// finished before the upgrade still reads.
fn outputs_old_or_new<'de, D>(deserializer: D) -> Result<Option<Vec<OutputStatus>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Url(String),
        Output(OutputStatus),
    }
    let items: Option<Vec<Either>> = Option::deserialize(deserializer)?;
    Ok(items.map(|items| {
        items
            .into_iter()
            .map(|item| match item {
                Either::Output(output) => output,
                Either::Url(url) => OutputStatus {
                    url,
                    verified: false,
                    message: Some("recorded before outputs were verified".into()),
                    ..OutputStatus::default()
                },
            })
            .collect()
    }))
}

/// Lifecycle phase, shown by `kubectl get mediajobs`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    /// Accepted, not yet submitted (validating, reading credentials, waiting to retry).
    Pending,
    /// Waiting: suspended, or over the cluster's cap on jobs in flight.
    Queued,
    /// Submitted; the Media API has not started it yet.
    Submitted,
    /// The Media API is processing it.
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::Queued,
        Phase::Submitted,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Cancelled,
    ];

    /// The word status and `kubectl get mj` show.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Queued => "Queued",
            Phase::Submitted => "Submitted",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Cancelled => "Cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    }
}

/// A submission the operator is about to make or has made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmissionRecord {
    /// Which attempt this is (1 for the first submission).
    #[schemars(range(min = 1))]
    pub attempt: i32,
    /// When the request was about to be sent; `GET /media/jobs` is searched from here.
    pub intent_time: Time,
    /// A random name of this intent: the process that wrote it can tell it from another intent
    /// of the same attempt number (one written from a stale copy) when it knows it never sent
    /// this one's request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_id: Option<String>,
    /// When the URLs signed for this submission expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls_expire_at: Option<Time>,
    /// The remote job id, once the Media API answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The Media API account that submitted (a fingerprint of its app key, not the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// A fingerprint of the job submitted just before this one on the same account and
    /// operation: a search for this submission's job starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    /// When an answer that left the outcome unknown (5xx, timeout, reset) came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_time: Option<Time>,
    /// When the operator decided to cancel this submission's job (suspend, deadline, invalid
    /// spec), recorded before the cancel is sent: a job seen cancelled afterwards was cancelled by
    /// the operator, not outside it, even when the cancel's answer was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_at: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller's store keeps every MediaJob (10,000 at the design's scale) in an `Arc`:
    /// the struct and two counters in one allocation. jemalloc rounds it up to a size class:
    /// 896 bytes holds it now; past 1,024 the next class is 1,280. Adding `intentId` and
    /// `cancelRequestedAt` once pushed it from 1,024 to 1,280 bytes, 2.5 MB at 10,000 jobs, and
    /// the scale bench's restart peak went from 43 to 46 MiB. A new field in spec or status
    /// that fails this belongs in a box (as `submission` is) or in a smaller type.
    #[test]
    fn a_stored_media_job_stays_in_its_allocation_class() {
        let arc = std::mem::size_of::<crate::crd::MediaJob>() + 2 * std::mem::size_of::<usize>();
        assert!(arc <= 896, "an Arc<MediaJob> takes {arc} bytes");
    }

    #[test]
    fn outputs_read_as_written_now_and_as_bare_urls_of_earlier_releases() {
        let now: MediaJobStatus = serde_json::from_value(serde_json::json!({
            "outputs": [{"url": "s3://b/k", "verified": true, "size": 3, "etag": "\"e\""}]
        }))
        .unwrap();
        let output = &now.outputs.unwrap()[0];
        assert!(output.verified && output.size == Some(3));
        let earlier: MediaJobStatus =
            serde_json::from_value(serde_json::json!({"outputs": ["s3://b/k"]})).unwrap();
        let output = &earlier.outputs.unwrap()[0];
        assert_eq!(output.url, "s3://b/k");
        assert!(!output.verified && output.message.is_some());
        let none: MediaJobStatus = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(none.outputs.is_none());
    }
}
